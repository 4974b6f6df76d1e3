//! KPL de-aggregation unpacks one Kinesis record written by the Kinesis Producer Library's
//! aggregation into the user records it packs.
//!
//! The format (amazon-kinesis-producer `aggregation-format.md`) is the 4 magic bytes
//! `F3 89 9A C2`, a protobuf `AggregatedRecord`, then the 16-byte MD5 of that protobuf body.
//!
//! ```text
//! message AggregatedRecord {
//!   repeated string partition_key_table     = 1;
//!   repeated string explicit_hash_key_table = 2;
//!   repeated Record records                 = 3;
//! }
//! message Record {
//!   required uint64 partition_key_index     = 1;
//!   optional uint64 explicit_hash_key_index = 2;
//!   required bytes  data                    = 3;
//!   repeated Tag    tags                    = 4;
//! }
//! ```
//!
//! A record without the magic prefix is not aggregated and is its own single user record. One
//! with the prefix must carry a matching MD5 trailer and a decodable body, or it is refused
//! ([`RejectReason::KplChecksum`], [`RejectReason::KplDecode`]). It is never passed on as text,
//! since its bytes are not a flow-log line either way.
//!
//! CloudWatch Logs subscriptions never aggregate; producers of bare or JSON-wrapped lines may.
//!
//! ```
//! use vpcflowd::decode::kpl;
//! let mut user_records = Vec::new();
//! kpl::for_each_user_record(b"2 123 eni-1 - - - - - - - 1 2 - NODATA", |data| {
//!     user_records.push(data.to_vec())
//! })
//! .unwrap();
//! assert_eq!(user_records.len(), 1);
//! ```

use md5::{Digest, Md5};
use prost::Message;

use super::reject::RejectReason;

/// The prefix of an aggregated record.
pub const MAGIC: [u8; 4] = [0xF3, 0x89, 0x9A, 0xC2];
const DIGEST: usize = 16;

/// `AggregatedRecord`, as protobuf. De-aggregation reads the records' data and checks their key
/// indices; the tags and the key tables' entries are parsed (so a malformed body is refused) but
/// not used.
#[derive(Clone, PartialEq, Message)]
pub struct AggregatedRecord {
    #[prost(string, repeated, tag = "1")]
    pub partition_key_table: Vec<String>,
    #[prost(string, repeated, tag = "2")]
    pub explicit_hash_key_table: Vec<String>,
    #[prost(message, repeated, tag = "3")]
    pub records: Vec<UserRecord>,
}

/// One packed user record.
#[derive(Clone, PartialEq, Message)]
pub struct UserRecord {
    #[prost(uint64, tag = "1")]
    pub partition_key_index: u64,
    #[prost(uint64, optional, tag = "2")]
    pub explicit_hash_key_index: Option<u64>,
    #[prost(bytes = "vec", tag = "3")]
    pub data: Vec<u8>,
    #[prost(message, repeated, tag = "4")]
    pub tags: Vec<Tag>,
}

#[derive(Clone, PartialEq, Message)]
pub struct Tag {
    #[prost(string, tag = "1")]
    pub key: String,
    #[prost(string, optional, tag = "2")]
    pub value: Option<String>,
}

/// Why an aggregated record was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{reason}: {detail}")]
pub struct KplError {
    pub reason: RejectReason,
    pub detail: String,
}

/// Whether `record` starts with the aggregation magic.
pub fn is_aggregated(record: &[u8]) -> bool {
    record.starts_with(&MAGIC)
}

/// Calls `f` with each user record of `record` (the record itself when it is not aggregated);
/// returns how many there were.
pub fn for_each_user_record(record: &[u8], mut f: impl FnMut(&[u8])) -> Result<usize, KplError> {
    if !is_aggregated(record) {
        f(record);
        return Ok(1);
    }
    let error = |reason, detail: String| KplError { reason, detail };
    if record.len() < MAGIC.len() + DIGEST {
        return Err(error(
            RejectReason::KplDecode,
            format!("{} bytes: too short for the magic prefix and the MD5 trailer", record.len()),
        ));
    }
    let (body, digest) = record[MAGIC.len()..].split_at(record.len() - MAGIC.len() - DIGEST);
    let computed = Md5::digest(body);
    if computed.as_slice() != digest {
        return Err(error(
            RejectReason::KplChecksum,
            format!("the MD5 trailer does not match the {}-byte body", body.len()),
        ));
    }
    let aggregated = AggregatedRecord::decode(body)
        .map_err(|e| error(RejectReason::KplDecode, format!("protobuf body: {e}")))?;
    let keys = aggregated.partition_key_table.len() as u64;
    if let Some(bad) = aggregated.records.iter().find(|r| r.partition_key_index >= keys) {
        return Err(error(
            RejectReason::KplDecode,
            format!(
                "a user record's partition_key_index {} is outside the {keys}-entry key table",
                bad.partition_key_index
            ),
        ));
    }
    for r in &aggregated.records {
        f(&r.data);
    }
    Ok(aggregated.records.len())
}

/// Packs `records` (with one partition key) the way the KPL does. Tests, benchmarks and the
/// load-test harness use it.
pub fn aggregate(partition_key: &str, records: &[&[u8]]) -> Vec<u8> {
    let body = AggregatedRecord {
        partition_key_table: vec![partition_key.to_string()],
        explicit_hash_key_table: Vec::new(),
        records: records
            .iter()
            .map(|d| UserRecord {
                partition_key_index: 0,
                explicit_hash_key_index: None,
                data: d.to_vec(),
                tags: Vec::new(),
            })
            .collect(),
    }
    .encode_to_vec();
    let mut out = Vec::with_capacity(MAGIC.len() + body.len() + DIGEST);
    out.extend_from_slice(&MAGIC);
    out.extend_from_slice(&body);
    out.extend_from_slice(Md5::digest(&body).as_slice());
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn collect(record: &[u8]) -> Result<Vec<Vec<u8>>, KplError> {
        let mut out = Vec::new();
        for_each_user_record(record, |d| out.push(d.to_vec()))?;
        Ok(out)
    }

    #[test]
    fn unaggregated_records_pass_through_whole() {
        assert_eq!(collect(b"abc").unwrap(), [b"abc".to_vec()]);
        assert_eq!(collect(b"").unwrap(), [Vec::<u8>::new()]);
    }

    #[test]
    fn aggregated_records_unpack_in_order() {
        let packed = aggregate("eni-1", &[b"one", b"", b"three"]);
        assert!(is_aggregated(&packed));
        assert_eq!(collect(&packed).unwrap(), [b"one".to_vec(), Vec::new(), b"three".to_vec()]);
    }

    /// The test builds a record field by field from the published format, not with our encoder.
    #[test]
    fn reads_a_hand_built_record() {
        // partition_key_table: "k"; records: { partition_key_index: 0, data: "hi" }
        let body = [0x0a, 0x01, b'k', 0x1a, 0x06, 0x08, 0x00, 0x1a, 0x02, b'h', b'i'];
        let mut record = MAGIC.to_vec();
        record.extend_from_slice(&body);
        record.extend_from_slice(Md5::digest(body).as_slice());
        assert_eq!(collect(&record).unwrap(), [b"hi".to_vec()]);
    }

    #[test]
    fn damage_is_refused_with_a_reason() {
        let packed = aggregate("eni-1", &[b"one"]);
        let mut flipped = packed.clone();
        flipped[6] ^= 0x40;
        assert_eq!(collect(&flipped).unwrap_err().reason, RejectReason::KplChecksum);
        assert_eq!(collect(&packed[..10]).unwrap_err().reason, RejectReason::KplDecode);
        // The trailer is valid, but the body is not protobuf.
        let body = [0xff, 0xff, 0xff];
        let mut bad = MAGIC.to_vec();
        bad.extend_from_slice(&body);
        bad.extend_from_slice(Md5::digest(body).as_slice());
        assert_eq!(collect(&bad).unwrap_err().reason, RejectReason::KplDecode);
        // A user record points outside the key table.
        let body = [0x1a, 0x04, 0x08, 0x05, 0x1a, 0x00];
        let mut bad = MAGIC.to_vec();
        bad.extend_from_slice(&body);
        bad.extend_from_slice(Md5::digest(body).as_slice());
        let e = collect(&bad).unwrap_err();
        assert_eq!(e.reason, RejectReason::KplDecode);
        assert!(e.detail.contains("partition_key_index 5"), "{e}");
    }
}
