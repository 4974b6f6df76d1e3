//! How flow-log lines become the records a delivery carries, as AWS packages them:
//!
//! - `message`: one record per line, `{"message":"<line>"}`, as a flow log publishing straight
//!   to Firehose does;
//! - `plain`: one record per line, the bare line (a producer of its own);
//! - `cloudwatch`: CloudWatch Logs subscription payloads: gzip'd `DATA_MESSAGE` JSON, one per
//!   log stream (a flow log's log stream is its interface, `eni-…-all`), up to
//!   `--events-per-payload` log events each.
//!
//! Each record carries a partition key (the interface) for Kinesis.

use std::collections::BTreeMap;
use std::io::Write;

use clap::ValueEnum;
use serde_json::json;
use vpcflowd::decode::{LayoutSet, parse_line};

#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum Packaging {
    Message,
    Plain,
    Cloudwatch,
}

/// One record of a delivery.
pub struct Record {
    pub data: Vec<u8>,
    /// The interface the record is about (Kinesis partition key).
    pub key: String,
    /// Flow-log lines inside.
    pub lines: usize,
}

/// The account that owns the CloudWatch Logs log group.
const OWNER: &str = "123456789012";

/// Packages `lines` (in formats `layouts`).
pub fn package(
    lines: &[String],
    layouts: &LayoutSet,
    packaging: Packaging,
    events_per_payload: usize,
) -> Vec<Record> {
    let key = |line: &str| match parse_line(layouts, line.as_bytes()) {
        Ok(p) => p.record.interface_id.unwrap_or("-").to_owned(),
        Err(_) => "-".to_owned(),
    };
    match packaging {
        Packaging::Message => lines
            .iter()
            .map(|l| Record {
                data: serde_json::to_vec(&json!({ "message": l })).expect("JSON"),
                key: key(l),
                lines: 1,
            })
            .collect(),
        Packaging::Plain => lines
            .iter()
            .map(|l| Record { data: l.as_bytes().to_vec(), key: key(l), lines: 1 })
            .collect(),
        Packaging::Cloudwatch => {
            let mut by_stream: BTreeMap<String, Vec<&str>> = BTreeMap::new();
            for l in lines {
                by_stream.entry(key(l)).or_default().push(l);
            }
            let mut out = Vec::new();
            let ms = vpcflowd::clock::unix_millis();
            for (interface, lines) in by_stream {
                for chunk in lines.chunks(events_per_payload.max(1)) {
                    out.push(Record {
                        data: cloudwatch(&interface, chunk, ms),
                        key: interface.clone(),
                        lines: chunk.len(),
                    });
                }
            }
            out
        }
    }
}

/// A gzip'd CloudWatch Logs `DATA_MESSAGE` for one log stream.
fn cloudwatch(interface: &str, lines: &[&str], ms: u64) -> Vec<u8> {
    let events: Vec<_> = lines
        .iter()
        .enumerate()
        // Event ids are 56-digit strings in the wild: too big for any integer type.
        .map(|(i, m)| json!({"id": format!("{ms:0>38}{i:0>18}"), "timestamp": ms, "message": m}))
        .collect();
    let body = json!({
        "messageType": "DATA_MESSAGE",
        "owner": OWNER,
        "logGroup": "vpc-flow-logs",
        "logStream": format!("{interface}-all"),
        "subscriptionFilters": ["vpcflowd"],
        "logEvents": events,
    });
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(body.to_string().as_bytes()).expect("in-memory gzip");
    gz.finish().expect("in-memory gzip")
}

#[cfg(test)]
mod tests {
    use vpcflowd::decode::{EnvelopeDecoder, LineContext};

    use super::*;

    fn lines() -> Vec<String> {
        ["eni-a", "eni-b", "eni-a"]
            .iter()
            .enumerate()
            .map(|(i, e)| {
                format!("2 123456789012 {e} 10.0.0.1 10.0.0.2 443 5000 6 10 {i} 1700000000 1700000060 ACCEPT OK")
            })
            .collect()
    }

    /// Every packaging decodes, through vpcflowd's own envelope decoder, to the same lines.
    #[test]
    fn every_packaging_decodes_back_to_the_lines() {
        let layouts = LayoutSet::default();
        for packaging in [Packaging::Message, Packaging::Plain, Packaging::Cloudwatch] {
            let records = package(&lines(), &layouts, packaging, 1);
            let mut decoder = EnvelopeDecoder::default();
            let mut got = Vec::new();
            for r in &records {
                decoder
                    .decode(&r.data, |line, ctx: &LineContext<'_>| {
                        let line = String::from_utf8(line.to_vec()).unwrap();
                        assert!(line.contains(&r.key), "{line} under key {}", r.key);
                        if packaging == Packaging::Cloudwatch {
                            assert_eq!(ctx.log_stream, Some(format!("{}-all", r.key).as_str()));
                        }
                        got.push(line);
                    })
                    .unwrap();
            }
            got.sort();
            let mut want = lines();
            want.sort();
            assert_eq!(got, want, "{packaging:?}");
            assert_eq!(records.iter().map(|r| r.lines).sum::<usize>(), 3);
        }
        // Two interfaces, up to two events per payload: one payload each.
        assert_eq!(package(&lines(), &layouts, Packaging::Cloudwatch, 2).len(), 2);
    }
}
