//! The filters applied before windows (`[filters]`, and the flags of the same names): a record
//! of an excluded region, account or interface is dropped before it reaches a window or moves
//! the watermark, and counted by reason.
//!
//! Each filter is a list of glob patterns (`*` any run of characters, `?` one character,
//! matched without regard to ASCII case): `include_*` keeps only what matches one of its
//! patterns (an empty list keeps everything), `exclude_*` drops what matches one. A record
//! whose region is unknown (no `region` field, none from the transport, no default) is kept
//! unless `drop_unknown_region`; a record without an account is kept.
//!
//! ```
//! use vpcflowd::record::filter::{FilterReason, FilterSettings, RecordFilter};
//!
//! let settings = FilterSettings {
//!     exclude_regions: vec!["*east*".into(), "*west*".into()],
//!     ..FilterSettings::default()
//! };
//! let mut filter = RecordFilter::new(&settings).expect("a filter is set");
//! assert_eq!(filter.check("eni-1", None, Some("us-east-1")), Some(FilterReason::Region));
//! assert_eq!(filter.check("eni-1", None, Some("ap-south-1")), None);
//! ```

use serde::{Deserialize, Serialize};

/// What `[filters]` drops.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct FilterSettings {
    /// Keep only records of a region matching one of these patterns, e.g. `["us-*"]`.
    pub include_regions: Vec<String>,
    /// Drop records of a region matching one of these patterns, e.g. `["*east*", "*west*"]`.
    pub exclude_regions: Vec<String>,
    /// Keep only records of an account matching one of these patterns.
    pub include_accounts: Vec<String>,
    /// Drop records of an account matching one of these patterns.
    pub exclude_accounts: Vec<String>,
    /// Keep only the interfaces whose id matches one of these patterns, e.g. `["eni-0a1b*"]`.
    pub interfaces: Vec<String>,
    /// Drop records whose region is unknown instead of keeping them.
    pub drop_unknown_region: bool,
}

impl FilterSettings {
    /// Whether any filter is set.
    pub fn is_empty(&self) -> bool {
        *self == FilterSettings::default()
    }
}

/// Why a record was filtered out, the `reason` of `vpcflowd.ingest.filtered`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FilterReason {
    Region,
    UnknownRegion,
    Account,
    Interface,
}

impl FilterReason {
    pub const ALL: [FilterReason; 4] = [
        FilterReason::Region,
        FilterReason::UnknownRegion,
        FilterReason::Account,
        FilterReason::Interface,
    ];

    /// The reason's place in [`FilterReason::ALL`] (and in the engine's counts).
    pub fn index(self) -> usize {
        self as usize
    }

    pub fn as_str(self) -> &'static str {
        match self {
            FilterReason::Region => "region",
            FilterReason::UnknownRegion => "unknown_region",
            FilterReason::Account => "account",
            FilterReason::Interface => "interface",
        }
    }
}

/// A compiled [`FilterSettings`]; it remembers its last answer for each dimension, since
/// records come in runs of one interface, account and region.
#[derive(Debug, Clone)]
pub struct RecordFilter {
    regions: Dimension,
    accounts: Dimension,
    interfaces: Dimension,
    drop_unknown_region: bool,
}

/// One dimension's patterns and its last answer.
#[derive(Debug, Clone, Default)]
struct Dimension {
    include: Vec<String>,
    exclude: Vec<String>,
    last: Option<(String, bool)>,
}

impl Dimension {
    fn new(include: &[String], exclude: &[String]) -> Dimension {
        let lower = |v: &[String]| v.iter().map(|p| p.to_ascii_lowercase()).collect();
        Dimension { include: lower(include), exclude: lower(exclude), last: None }
    }

    fn is_empty(&self) -> bool {
        self.include.is_empty() && self.exclude.is_empty()
    }

    /// Whether `value` is kept.
    fn keeps(&mut self, value: &str) -> bool {
        if let Some((last, kept)) = &self.last
            && last == value
        {
            return *kept;
        }
        let any = |patterns: &[String]| patterns.iter().any(|p| glob_matches(p, value));
        let kept = (self.include.is_empty() || any(&self.include)) && !any(&self.exclude);
        self.last = Some((value.to_string(), kept));
        kept
    }
}

impl RecordFilter {
    /// The filter of `settings`, `None` when they set nothing (so the router checks nothing).
    pub fn new(settings: &FilterSettings) -> Option<RecordFilter> {
        (!settings.is_empty()).then(|| RecordFilter {
            regions: Dimension::new(&settings.include_regions, &settings.exclude_regions),
            accounts: Dimension::new(&settings.include_accounts, &settings.exclude_accounts),
            interfaces: Dimension::new(&settings.interfaces, &[]),
            drop_unknown_region: settings.drop_unknown_region,
        })
    }

    /// Why a record of `interface`, `account` and `region` is dropped, or `None` to keep it.
    pub fn check(
        &mut self,
        interface: &str,
        account: Option<&str>,
        region: Option<&str>,
    ) -> Option<FilterReason> {
        match region {
            None if self.drop_unknown_region => return Some(FilterReason::UnknownRegion),
            Some(r) if !self.regions.is_empty() && !self.regions.keeps(r) => {
                return Some(FilterReason::Region);
            }
            _ => {}
        }
        if let Some(a) = account
            && !self.accounts.is_empty()
            && !self.accounts.keeps(a)
        {
            return Some(FilterReason::Account);
        }
        if !self.interfaces.is_empty() && !self.interfaces.keeps(interface) {
            return Some(FilterReason::Interface);
        }
        None
    }
}

/// Whether `value` matches the lower-case glob `pattern` (`*`, `?`), ASCII case aside. The
/// match backtracks only to the last `*`, so it is linear in practice.
fn glob_matches(pattern: &str, value: &str) -> bool {
    let (p, v) = (pattern.as_bytes(), value.as_bytes());
    let (mut i, mut j) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while j < v.len() {
        if i < p.len() && p[i] == b'*' {
            star = Some((i, j));
            i += 1;
        } else if i < p.len() && (p[i] == b'?' || p[i] == v[j].to_ascii_lowercase()) {
            i += 1;
            j += 1;
        } else if let Some((si, sj)) = star {
            i = si + 1;
            j = sj + 1;
            star = Some((si, sj + 1));
        } else {
            return false;
        }
    }
    p[i..].iter().all(|&c| c == b'*')
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn the_predecessors_example_drops_east_and_west() {
        let settings = FilterSettings {
            exclude_regions: vec!["*east*".into(), "*west*".into()],
            ..FilterSettings::default()
        };
        let mut f = RecordFilter::new(&settings).unwrap();
        for (region, dropped) in [
            ("us-east-1", true),
            ("us-west-2", true),
            ("eu-west-1", true),
            ("ap-northeast-1", true),
            ("ap-south-1", false),
            ("eu-central-1", false),
            ("sa-east-1", true),
            ("US-EAST-1", true),
        ] {
            let got = f.check("eni-1", Some("1"), Some(region));
            assert_eq!(got.is_some(), dropped, "{region}");
        }
        assert_eq!(f.check("eni-1", None, None), None, "an unknown region is kept");
    }

    #[test]
    fn includes_excludes_and_interfaces_combine() {
        let settings = FilterSettings {
            include_regions: vec!["us-*".into()],
            include_accounts: vec!["1111*".into(), "2222?2222222".into()],
            exclude_accounts: vec!["111100000000".into()],
            interfaces: vec!["eni-0a*".into()],
            drop_unknown_region: true,
            ..FilterSettings::default()
        };
        let mut f = RecordFilter::new(&settings).unwrap();
        let r = Some("us-east-1");
        assert_eq!(f.check("eni-0a1", Some("111122223333"), r), None);
        assert_eq!(f.check("eni-0a1", Some("222202222222"), r), None);
        assert_eq!(f.check("eni-0a1", Some("111100000000"), r), Some(FilterReason::Account));
        assert_eq!(f.check("eni-0a1", Some("333333333333"), r), Some(FilterReason::Account));
        assert_eq!(f.check("eni-0a1", None, r), None, "a record without an account is kept");
        assert_eq!(f.check("eni-0b1", Some("111122223333"), r), Some(FilterReason::Interface));
        assert_eq!(f.check("eni-0a1", None, Some("eu-west-1")), Some(FilterReason::Region));
        assert_eq!(f.check("eni-0a1", None, None), Some(FilterReason::UnknownRegion));
        assert!(RecordFilter::new(&FilterSettings::default()).is_none());
    }

    #[test]
    fn a_star_in_the_pattern_is_a_wildcard_even_against_a_star() {
        assert!(glob_matches("*b", "*xb"));
        assert!(glob_matches("a*", "a*"));
        assert!(!glob_matches("a?c", "ac"));
    }

    /// A simple reference: a regex-free recursive matcher.
    fn reference(p: &[u8], v: &[u8]) -> bool {
        match (p.first(), v.first()) {
            (None, None) => true,
            (Some(b'*'), _) => reference(&p[1..], v) || (!v.is_empty() && reference(p, &v[1..])),
            (Some(b'?'), Some(_)) => reference(&p[1..], &v[1..]),
            (Some(&c), Some(&d)) => c == d.to_ascii_lowercase() && reference(&p[1..], &v[1..]),
            _ => false,
        }
    }

    proptest! {
        #[test]
        fn globs_match_as_the_reference_does(p in "[ab*?]{0,8}", v in "[abAB*]{0,10}") {
            prop_assert_eq!(glob_matches(&p, &v), reference(p.as_bytes(), v.as_bytes()));
        }
    }
}
