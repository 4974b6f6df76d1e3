//! Where a shard is read up to: the value checkpoints and leases hold.
//!
//! A position is written as text in the state file and in lease items: `TRIM_HORIZON`,
//! `LATEST`, `AT_TIMESTAMP:<unix ms>` (not started yet), a sequence number (every record up to
//! and including it is applied), or `SHARD_END` (the shard is closed and fully applied).
//! Sequence numbers are opaque decimal strings of varying length; they are compared as numbers
//! (length first, then digits), never parsed into a fixed-width integer.

#[cfg(test)]
use std::cmp::Ordering;
use std::fmt;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

/// A shard of a stream.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct ShardKey {
    pub stream: Arc<str>,
    pub shard: Arc<str>,
}

impl ShardKey {
    pub fn new(stream: &str, shard: &str) -> Self {
        ShardKey { stream: stream.into(), shard: shard.into() }
    }
}

impl fmt::Display for ShardKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.stream, self.shard)
    }
}

/// See the module documentation.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Position {
    TrimHorizon,
    Latest,
    AtTimestamp(i64),
    /// Every record up to and including this sequence number is applied.
    After(String),
    /// The shard is closed and every record of it is applied.
    ShardEnd,
}

impl Position {
    pub fn is_end(&self) -> bool {
        matches!(self, Position::ShardEnd)
    }

    /// Whether no record of the shard has been applied yet.
    pub fn is_unstarted(&self) -> bool {
        matches!(self, Position::TrimHorizon | Position::Latest | Position::AtTimestamp(_))
    }

    /// Parses the text form; returns `None` for text that is none of them.
    pub fn parse(s: &str) -> Option<Position> {
        Some(match s {
            "TRIM_HORIZON" => Position::TrimHorizon,
            "LATEST" => Position::Latest,
            "SHARD_END" => Position::ShardEnd,
            _ => match s.strip_prefix("AT_TIMESTAMP:") {
                Some(ms) => Position::AtTimestamp(ms.parse().ok()?),
                None if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) => {
                    Position::After(s.to_string())
                }
                None => return None,
            },
        })
    }
}

impl fmt::Display for Position {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Position::TrimHorizon => f.write_str("TRIM_HORIZON"),
            Position::Latest => f.write_str("LATEST"),
            Position::AtTimestamp(ms) => write!(f, "AT_TIMESTAMP:{ms}"),
            Position::After(seq) => f.write_str(seq),
            Position::ShardEnd => f.write_str("SHARD_END"),
        }
    }
}

impl Serialize for Position {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Position {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Position::parse(&s)
            .ok_or_else(|| serde::de::Error::custom(format!("{s:?} is not a shard position")))
    }
}

#[cfg(test)]
/// Compares two sequence numbers as the decimal numbers they are.
pub(crate) fn compare_sequence(a: &str, b: &str) -> Ordering {
    let (a, b) = (a.trim_start_matches('0'), b.trim_start_matches('0'));
    a.len().cmp(&b.len()).then_with(|| a.cmp(b))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn text_round_trips() {
        for p in [
            Position::TrimHorizon,
            Position::Latest,
            Position::AtTimestamp(1_795_420_800_000),
            Position::After("49590338271490256608559692538361571095921575989136588898".into()),
            Position::ShardEnd,
        ] {
            assert_eq!(Position::parse(&p.to_string()), Some(p.clone()));
            let json = serde_json::to_string(&p).unwrap();
            assert_eq!(serde_json::from_str::<Position>(&json).unwrap(), p);
        }
        assert_eq!(Position::parse(""), None);
        assert_eq!(Position::parse("12a"), None);
        assert_eq!(Position::parse("AT_TIMESTAMP:x"), None);
    }

    proptest! {
        #[test]
        fn sequence_order_is_numeric(a in 0u128..u128::MAX, b in 0u128..u128::MAX, pad in 0usize..3) {
            let padded = format!("{}{a}", "0".repeat(pad));
            prop_assert_eq!(compare_sequence(&padded, &b.to_string()), a.cmp(&b));
        }
    }
}
