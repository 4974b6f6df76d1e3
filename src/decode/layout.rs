//! A layout says which fields a record line holds, and in which order.
//!
//! A flow-log record does not describe itself: its layout comes from the flow log's configured
//! format (`${version} ${account-id} …`), from the header line of an S3 text file, or is the
//! default format. A [`LayoutSet`] holds one or more layouts keyed by their field count, since
//! several flow logs with different formats may publish into one stream; two layouts with the
//! same field count cannot be told apart and are a configuration error.

use std::fmt;

use super::field::Field;
use super::token::Tokens;

/// An ordered list of distinct fields.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layout {
    fields: Box<[Field]>,
    /// Whether the fields are [`DEFAULT_FIELDS`], which the line parser reads on a path of
    /// its own.
    default: bool,
}

/// A format string that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LayoutError {
    #[error("the format names no fields")]
    Empty,
    #[error("unknown field `{0}` in the format (fields are named as in `${{account-id}}`)")]
    UnknownField(String),
    #[error("field `{0}` appears twice in the format")]
    DuplicateField(Field),
    #[error("formats `{0}` and `{1}` both have {2} fields, so their records cannot be told apart")]
    AmbiguousFieldCount(String, String, usize),
}

/// The VPC default format: the v2 fields in table order.
pub(crate) const DEFAULT_FORMAT: &str = "${version} ${account-id} ${interface-id} ${srcaddr} ${dstaddr} \
    ${srcport} ${dstport} ${protocol} ${packets} ${bytes} ${start} ${end} ${action} ${log-status}";

/// The transit-gateway default format: every v2–v6 transit-gateway field in table order.
pub(crate) const TGW_DEFAULT_FORMAT: &str = "${version} ${resource-type} ${account-id} ${tgw-id} \
    ${tgw-attachment-id} ${tgw-src-vpc-account-id} ${tgw-dst-vpc-account-id} ${tgw-src-vpc-id} \
    ${tgw-dst-vpc-id} ${tgw-src-subnet-id} ${tgw-dst-subnet-id} ${tgw-src-eni} ${tgw-dst-eni} \
    ${tgw-src-az-id} ${tgw-dst-az-id} ${tgw-pair-attachment-id} ${srcaddr} ${dstaddr} ${srcport} \
    ${dstport} ${protocol} ${packets} ${bytes} ${start} ${end} ${log-status} ${type} \
    ${packets-lost-no-route} ${packets-lost-blackhole} ${packets-lost-mtu-exceeded} \
    ${packets-lost-ttl-expired} ${tcp-flags} ${region} ${flow-direction} ${pkt-src-aws-service} \
    ${pkt-dst-aws-service}";

/// The default format's fields, in order ([`DEFAULT_FORMAT`]).
pub(crate) const DEFAULT_FIELDS: [Field; 14] = [
    Field::Version,
    Field::AccountId,
    Field::InterfaceId,
    Field::Srcaddr,
    Field::Dstaddr,
    Field::Srcport,
    Field::Dstport,
    Field::Protocol,
    Field::Packets,
    Field::Bytes,
    Field::Start,
    Field::End,
    Field::Action,
    Field::LogStatus,
];

impl Layout {
    fn new(fields: Vec<Field>) -> Layout {
        let default = fields == DEFAULT_FIELDS;
        Layout { fields: fields.into(), default }
    }

    /// Whether this is the default format (however it was written).
    pub fn is_default_format(&self) -> bool {
        self.default
    }

    /// Parses a format: `${field}` tokens or bare field names separated by spaces, or one of the
    /// keywords `default` (the VPC default format) and `tgw-default` (the transit-gateway one).
    ///
    /// ```
    /// use vpcflowd::decode::{Field, Layout};
    /// let layout = Layout::parse("${instance-id} ${interface-id} ${srcaddr} ${dstaddr}").unwrap();
    /// assert_eq!(layout.fields()[1], Field::InterfaceId);
    /// assert!(Layout::parse("${version} ${colour}").is_err());
    /// ```
    pub fn parse(format: &str) -> Result<Layout, LayoutError> {
        match format.trim() {
            "default" => return Ok(Layout::default_format()),
            "tgw-default" => return Ok(Layout::tgw_default_format()),
            _ => {}
        }
        let mut fields = Vec::new();
        for token in Tokens::new(format) {
            let field = Field::from_format_token(token)
                .ok_or_else(|| LayoutError::UnknownField(token.to_owned()))?;
            if fields.contains(&field) {
                return Err(LayoutError::DuplicateField(field));
            }
            fields.push(field);
        }
        if fields.is_empty() {
            return Err(LayoutError::Empty);
        }
        Ok(Layout::new(fields))
    }

    /// The VPC default format (14 v2 fields).
    pub fn default_format() -> Layout {
        Layout::parse(DEFAULT_FORMAT).expect("the default format is valid")
    }

    /// The transit-gateway default format (36 fields).
    pub fn tgw_default_format() -> Layout {
        Layout::parse(TGW_DEFAULT_FORMAT).expect("the transit-gateway default format is valid")
    }

    /// The layout named by an S3 header line (`version account-id interface-id …`, any order),
    /// or `None` if the line is not a header. The first token is checked first, which is cheap: a
    /// record line's first token is a value, never a field name.
    pub fn from_header(line: &str) -> Option<Layout> {
        let first = Tokens::new(line).next()?;
        Field::from_name(first)?;
        let mut fields = Vec::new();
        for token in Tokens::new(line) {
            let field = Field::from_name(token)?;
            if fields.contains(&field) {
                return None;
            }
            fields.push(field);
        }
        Some(Layout::new(fields))
    }

    pub fn fields(&self) -> &[Field] {
        &self.fields
    }

    pub fn len(&self) -> usize {
        self.fields.len()
    }

    pub fn is_empty(&self) -> bool {
        self.fields.is_empty()
    }

    pub fn contains(&self, field: Field) -> bool {
        self.fields.contains(&field)
    }

    /// The version AWS writes for this format: the highest among its fields (2 at least).
    pub fn version(&self) -> u8 {
        self.fields.iter().map(|f| f.version()).max().unwrap_or(2).max(2)
    }
}

impl fmt::Display for Layout {
    /// Writes the format as `CreateFlowLogs --log-format` takes it: `${a} ${b} …`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, field) in self.fields.iter().enumerate() {
            if i > 0 {
                f.write_str(" ")?;
            }
            write!(f, "${{{field}}}")?;
        }
        Ok(())
    }
}

/// One or more layouts, told apart by field count.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LayoutSet {
    layouts: Vec<Layout>,
    /// `by_count[n]` is the index in `layouts` of the layout with `n` fields.
    by_count: [Option<u8>; Field::COUNT + 1],
}

impl LayoutSet {
    /// A set of layouts; fails if two have the same field count.
    pub fn new(layouts: Vec<Layout>) -> Result<LayoutSet, LayoutError> {
        if layouts.is_empty() {
            return Err(LayoutError::Empty);
        }
        let mut by_count = [None; Field::COUNT + 1];
        for (i, layout) in layouts.iter().enumerate() {
            let slot = &mut by_count[layout.len()];
            if let Some(other) = *slot {
                let other: &Layout = &layouts[usize::from(other)];
                return Err(LayoutError::AmbiguousFieldCount(
                    other.to_string(),
                    layout.to_string(),
                    layout.len(),
                ));
            }
            *slot = Some(u8::try_from(i).expect("fewer layouts than fields"));
        }
        Ok(LayoutSet { layouts, by_count })
    }

    /// Parses each format; an empty list means [`LayoutSet::default`].
    pub fn from_formats<S: AsRef<str>>(formats: &[S]) -> Result<LayoutSet, LayoutError> {
        if formats.is_empty() {
            return Ok(LayoutSet::default());
        }
        let layouts =
            formats.iter().map(|f| Layout::parse(f.as_ref())).collect::<Result<Vec<_>, _>>()?;
        LayoutSet::new(layouts)
    }

    /// A set of one layout.
    pub fn single(layout: Layout) -> LayoutSet {
        LayoutSet::new(vec![layout]).expect("one layout is never ambiguous")
    }

    pub fn layouts(&self) -> &[Layout] {
        &self.layouts
    }

    /// The layout with `count` fields.
    #[inline]
    pub fn for_count(&self, count: usize) -> Option<&Layout> {
        let i = *self.by_count.get(count)?;
        i.map(|i| &self.layouts[usize::from(i)])
    }

    /// The first layout (a set is never empty).
    #[inline]
    pub fn first(&self) -> &Layout {
        &self.layouts[0]
    }

    /// The only layout, when there is one.
    #[inline]
    pub fn only(&self) -> Option<&Layout> {
        match self.layouts.as_slice() {
            [one] => Some(one),
            _ => None,
        }
    }
}

impl Default for LayoutSet {
    /// The default set holds the VPC default format and the transit-gateway default format, AWS's
    /// two fixed formats, which differ in field count (14 and 36).
    fn default() -> Self {
        LayoutSet::new(vec![Layout::default_format(), Layout::tgw_default_format()])
            .expect("the default formats differ in field count")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_fields_are_the_default_format_however_written() {
        assert_eq!(Layout::default_format().fields(), DEFAULT_FIELDS);
        assert!(Layout::default_format().is_default_format());
        let header = DEFAULT_FIELDS.map(Field::name).join(" ");
        assert!(Layout::from_header(&header).unwrap().is_default_format());
        assert!(!Layout::parse("${version} ${account-id}").unwrap().is_default_format());
        assert!(!Layout::tgw_default_format().is_default_format());
    }

    #[test]
    fn parses_dollar_and_bare_formats() {
        let a = Layout::parse("${version} ${srcaddr}").unwrap();
        let b = Layout::parse("version  srcaddr ").unwrap();
        assert_eq!(a, b);
        assert_eq!(a.to_string(), "${version} ${srcaddr}");
        assert_eq!(Layout::parse("default").unwrap().len(), 14);
        assert_eq!(Layout::tgw_default_format().len(), 36);
        assert_eq!(Layout::tgw_default_format().version(), 6);
    }

    #[test]
    fn bad_formats_name_the_problem() {
        assert_eq!(
            Layout::parse("${version} ${colour}"),
            Err(LayoutError::UnknownField("${colour}".into()))
        );
        assert_eq!(
            Layout::parse("srcaddr srcaddr"),
            Err(LayoutError::DuplicateField(Field::Srcaddr))
        );
        assert_eq!(Layout::parse("  "), Err(LayoutError::Empty));
        let err =
            LayoutSet::from_formats(&["srcaddr dstaddr", "${version} ${region}"]).unwrap_err();
        assert!(matches!(err, LayoutError::AmbiguousFieldCount(_, _, 2)));
    }

    #[test]
    fn headers_are_recognised_only_when_every_token_is_a_field() {
        let h = Layout::from_header("account-id action az-id bytes version").unwrap();
        assert_eq!(h.fields()[4], Field::Version);
        assert!(Layout::from_header("2 123456789010 eni-1 - - - - - - - 1 2 - NODATA").is_none());
        assert!(Layout::from_header("version account-id bogus").is_none());
        assert!(Layout::from_header("instance-id i-0123").is_none());
        assert!(Layout::from_header("").is_none());
    }

    #[test]
    fn sets_pick_by_field_count() {
        let set = LayoutSet::default();
        assert_eq!(set.for_count(14).unwrap().len(), 14);
        assert_eq!(set.for_count(36).unwrap().len(), 36);
        assert!(set.for_count(13).is_none());
        assert!(set.for_count(1000).is_none());
        assert!(set.only().is_none());
    }
}
