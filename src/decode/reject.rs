//! A rejection says why a record or a line was not used; rejections are counted by reason, with
//! a sample of each.
//!
//! Nothing the decoder refuses disappears silently: every refusal has a [`RejectReason`], is
//! counted in [`Rejects`], and the most recent offending input of each reason is kept (cut to
//! [`SAMPLE_BYTES`]) so that logs and the status API can show what went wrong.

use std::fmt;

use serde::Serialize;
use strum::{EnumCount, IntoStaticStr, VariantArray};

/// Why an input was rejected. The snake_case name is the label used in counters and metrics.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Hash,
    PartialOrd,
    Ord,
    IntoStaticStr,
    VariantArray,
    EnumCount,
    Serialize,
)]
#[strum(serialize_all = "snake_case")]
#[serde(rename_all = "snake_case")]
pub enum RejectReason {
    // ---- a line ----
    /// The line is not valid UTF-8.
    InvalidUtf8,
    /// The line holds a tab or another control character (fields are separated by spaces only).
    ControlCharacter,
    /// The line is empty or holds only spaces.
    BlankLine,
    /// The line has more or fewer fields than its layout (or than every configured layout).
    FieldCount,
    /// A numeric field holds something other than ASCII digits (a sign, decimal, exponent, comma…).
    InvalidNumber,
    /// A numeric field has too many digits for its width.
    NumberOutOfRange,
    /// An address field is not an IPv4 or IPv6 address.
    InvalidAddress,
    /// An enumerated field holds a value AWS does not write (enums are case-sensitive).
    InvalidEnumValue,
    // ---- an envelope ----
    /// The record starts with the gzip magic bytes, but the stream does not decompress.
    InvalidGzip,
    /// The decompressed record exceeds the configured limit.
    DecompressedTooLarge,
    /// The decompressed record is gzip again, which no AWS path produces.
    NestedGzip,
    /// The record starts like JSON but does not parse.
    InvalidJson,
    /// The record is valid JSON but neither a `{"message":…}` line nor a CloudWatch Logs payload.
    UnrecognisedJson,
    /// The record is a CloudWatch Logs payload whose `messageType` is neither DATA_MESSAGE nor
    /// CONTROL_MESSAGE.
    UnknownMessageType,
    /// The MD5 trailer of a KPL-aggregated Kinesis record does not match its body.
    KplChecksum,
    /// The body of a KPL-aggregated Kinesis record is not a valid `AggregatedRecord`.
    KplDecode,
    // ---- the engine ----
    /// The record has no interface-id (nor resource-id, tgw-attachment-id or ENI log stream), so
    /// it cannot be attributed to an interface.
    MissingInterface,
}

impl RejectReason {
    /// The counter label, e.g. `field_count`.
    pub fn as_str(self) -> &'static str {
        self.into()
    }
}

impl fmt::Display for RejectReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How much of an offending input a sample keeps.
pub(crate) const SAMPLE_BYTES: usize = 256;

/// The most recent rejection of one reason.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct RejectSample {
    /// What was wrong, e.g. "field srcport: `+80` is not an integer from 0 to 65535".
    pub detail: String,
    /// The start of the offending input, lossily decoded.
    pub input: String,
}

/// Rejection counts by reason, with the latest sample of each.
///
/// Recording reuses each sample's buffers, so a steady stream of bad input does not allocate once
/// the buffers have grown.
#[derive(Debug, Clone, Default)]
pub struct Rejects {
    counts: [u64; RejectReason::COUNT],
    samples: [Option<RejectSample>; RejectReason::COUNT],
}

impl Rejects {
    pub fn new() -> Self {
        Self::default()
    }

    /// Counts one rejection and keeps it as the reason's sample.
    pub fn record(&mut self, reason: RejectReason, detail: impl fmt::Display, input: &[u8]) {
        use fmt::Write;
        let i = reason as usize;
        self.counts[i] += 1;
        let sample = self.samples[i].get_or_insert_with(RejectSample::default);
        sample.detail.clear();
        let _ = write!(sample.detail, "{detail}");
        sample.input.clear();
        let cut = &input[..input.len().min(SAMPLE_BYTES)];
        sample.input.push_str(&String::from_utf8_lossy(cut));
    }

    /// Adds the counts of rejections recorded after this table's own; their samples, being
    /// later, replace this table's.
    pub fn merge(&mut self, later: &Rejects) {
        for (i, n) in later.counts.iter().enumerate() {
            self.counts[i] += n;
            if let Some(sample) = &later.samples[i] {
                self.samples[i] = Some(sample.clone());
            }
        }
    }

    pub fn count(&self, reason: RejectReason) -> u64 {
        self.counts[reason as usize]
    }

    pub fn total(&self) -> u64 {
        self.counts.iter().sum()
    }

    pub fn sample(&self, reason: RejectReason) -> Option<&RejectSample> {
        self.samples[reason as usize].as_ref()
    }

    /// The reasons with a non-zero count, in declaration order.
    pub fn iter(&self) -> impl Iterator<Item = (RejectReason, u64)> + '_ {
        RejectReason::VARIANTS.iter().map(|&r| (r, self.count(r))).filter(|&(_, n)| n > 0)
    }
}

impl fmt::Display for Rejects {
    /// Writes the non-zero counts as `field_count 3, invalid_number 1`, or `none` if all are zero.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut any = false;
        for (reason, n) in self.iter() {
            if any {
                f.write_str(", ")?;
            }
            write!(f, "{reason} {n}")?;
            any = true;
        }
        if !any {
            f.write_str("none")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_and_keeps_the_latest_sample() {
        let mut r = Rejects::new();
        r.record(RejectReason::FieldCount, "expected 14 fields, found 3", b"a b c");
        r.record(RejectReason::FieldCount, "expected 14 fields, found 1", b"x");
        r.record(RejectReason::InvalidUtf8, "bad", &[0xff; 1000]);
        assert_eq!(r.count(RejectReason::FieldCount), 2);
        assert_eq!(r.total(), 3);
        assert_eq!(r.sample(RejectReason::FieldCount).unwrap().input, "x");
        assert_eq!(
            r.sample(RejectReason::InvalidUtf8).unwrap().input.chars().count(),
            SAMPLE_BYTES
        );
        assert_eq!(r.to_string(), "invalid_utf8 1, field_count 2");
    }

    #[test]
    fn merging_a_later_table_adds_counts_and_keeps_its_samples() {
        let mut a = Rejects::new();
        a.record(RejectReason::FieldCount, "first", b"a");
        a.record(RejectReason::InvalidUtf8, "kept", b"b");
        let mut b = Rejects::new();
        b.record(RejectReason::FieldCount, "later", b"c");
        a.merge(&b);
        assert_eq!(a.count(RejectReason::FieldCount), 2);
        assert_eq!(a.sample(RejectReason::FieldCount).unwrap().detail, "later");
        assert_eq!(a.sample(RejectReason::InvalidUtf8).unwrap().detail, "kept");
        assert_eq!(a.total(), 3);
    }
}
