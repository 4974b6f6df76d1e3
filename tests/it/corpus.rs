//! Golden tests: every line of the shared corpus through the real `vpcflowd parse`, compared with
//! `expected.jsonl` field by field; every transport sample through the envelope decoder.

use std::collections::BTreeMap;

use crate::common::{corpus_dir, corpus_file, gzip, json_lines, vpcflowd};
use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use serde_json::Value;
use vpcflowd::decode::{EnvelopeDecoder, EnvelopeKind, LayoutSet, RecordJson, parse_line};

/// expected.jsonl grouped by file, each file's entries by line number.
fn expected() -> BTreeMap<String, BTreeMap<u64, Value>> {
    let text = std::fs::read_to_string(corpus_dir().join("expected.jsonl")).unwrap();
    let mut by_file: BTreeMap<String, BTreeMap<u64, Value>> = BTreeMap::new();
    for line in text.lines() {
        let v: Value = serde_json::from_str(line).unwrap();
        by_file
            .entry(v["file"].as_str().unwrap().to_string())
            .or_default()
            .insert(v["line"].as_u64().unwrap(), v["fields"].clone());
    }
    by_file
}

#[test]
fn vendored_corpus_matches_shared() {
    let shared = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/corpus");
    if !shared.exists() {
        eprintln!("no ../shared/corpus beside the checkout: nothing to compare");
        return;
    }
    for entry in walk(&shared) {
        let rel = entry.strip_prefix(&shared).unwrap();
        let ours = std::fs::read(corpus_dir().join(rel))
            .unwrap_or_else(|e| panic!("tests/data/corpus/{} missing: {e}", rel.display()));
        assert_eq!(ours, std::fs::read(&entry).unwrap(), "{} differs", rel.display());
    }
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() { out.extend(walk(&p)) } else { out.push(p) }
    }
    out
}

#[test]
fn every_corpus_line_parses_to_its_expected_fields_through_the_cli() {
    let expected = expected();
    assert_eq!(expected.len(), 5, "files in expected.jsonl");
    for (file, lines) in &expected {
        let (format, body) = corpus_file(file);
        let stdin = body.join("\n") + "\n";
        let out = vpcflowd(&["parse", "--format", &format], stdin.as_bytes());
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{file}: {stderr}");
        assert!(stderr.contains(" 0 rejected (none)"), "{file}: {stderr}");
        let got = json_lines(&out.stdout);
        // Every line of these files must parse, so output i is file line i + 2.
        assert_eq!(got.len(), body.len(), "{file}");
        assert_eq!(lines.len(), body.len(), "{file}: expected.jsonl covers every line");
        for (i, record) in got.iter().enumerate() {
            let line_no = i as u64 + 2;
            assert_eq!(record, &lines[&line_no], "{file}:{line_no}");
        }
    }
}

#[test]
fn every_corpus_line_parses_in_process_with_the_fields_in_format_order() {
    for (file, lines) in expected() {
        let (format, body) = corpus_file(&file);
        let layouts = LayoutSet::from_formats(&[format.as_str()]).unwrap();
        let mut decoder = EnvelopeDecoder::default();
        for (line_no, fields) in lines {
            let raw = &body[line_no as usize - 2];
            let mut seen = 0;
            decoder
                .decode(raw.as_bytes(), |line, _| {
                    let parsed = parse_line(&layouts, line).unwrap();
                    let json = serde_json::to_string(&RecordJson(&parsed)).unwrap();
                    let value: Value = serde_json::from_str(&json).unwrap();
                    assert_eq!(value, fields, "{file}:{line_no}");
                    // Keys appear in format order in the printed line.
                    let positions: Vec<_> = parsed
                        .layout
                        .fields()
                        .iter()
                        .map(|f| json.find(&format!("\"{}\":", f.name())).unwrap())
                        .collect();
                    assert!(
                        positions.is_sorted(),
                        "{file}:{line_no}: keys out of format order: {json}"
                    );
                    seen += 1;
                })
                .unwrap();
            assert_eq!(seen, 1, "{file}:{line_no}");
        }
    }
}

fn envelope(name: &str) -> Vec<u8> {
    std::fs::read(corpus_dir().join("envelopes").join(name)).unwrap()
}

/// Decodes every record of a Firehose request body into parsed JSON records.
fn firehose_records(body: &[u8]) -> (Vec<Value>, Vec<EnvelopeKind>) {
    let request: Value = serde_json::from_slice(body).unwrap();
    let layouts = LayoutSet::default();
    let mut decoder = EnvelopeDecoder::default();
    let mut records = Vec::new();
    let mut kinds = Vec::new();
    for r in request["records"].as_array().unwrap() {
        let data = BASE64.decode(r["data"].as_str().unwrap()).unwrap();
        let decoded = decoder
            .decode(&data, |line, _| {
                let parsed = parse_line(&layouts, line).unwrap();
                records.push(serde_json::to_value(RecordJson(&parsed)).unwrap());
            })
            .unwrap();
        kinds.push(decoded.kind);
    }
    (records, kinds)
}

#[test]
fn firehose_direct_request_yields_the_wrapped_lines() {
    let expected = expected();
    let wrapped = &expected["firehose-direct-wrapped.txt"];
    let (records, kinds) = firehose_records(&envelope("firehose-request-direct.json"));
    assert_eq!(kinds, vec![EnvelopeKind::JsonWrapped; 4]);
    assert_eq!(records, wrapped.values().cloned().collect::<Vec<_>>());
}

#[test]
fn gzip_body_is_the_same_request() {
    let mut plain = Vec::new();
    std::io::Read::read_to_end(
        &mut flate2::read::GzDecoder::new(&envelope("firehose-request-direct.json.gz")[..]),
        &mut plain,
    )
    .unwrap();
    let a: Value = serde_json::from_slice(&plain).unwrap();
    let b: Value = serde_json::from_slice(&envelope("firehose-request-direct.json")).unwrap();
    assert_eq!(a, b);
}

#[test]
fn firehose_cloudwatch_request_yields_exactly_three_records() {
    let (records, kinds) = firehose_records(&envelope("firehose-request-cwl.json"));
    assert_eq!(kinds, [EnvelopeKind::CloudWatchData, EnvelopeKind::CloudWatchControl]);
    // The DATA_MESSAGE's three events, in order.
    let data: Value = serde_json::from_slice(&envelope("cwl-data-message.json")).unwrap();
    let messages: Vec<_> = data["logEvents"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["message"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(records.len(), 3);
    for (record, message) in records.iter().zip(&messages) {
        let interface = message.split(' ').nth(2).unwrap();
        assert_eq!(record["interface-id"], interface);
    }
    assert_eq!(records[1]["action"], "REJECT");
    assert_eq!(records[2]["log-status"], "NODATA");
}

#[test]
fn cloudwatch_payloads_keep_their_context() {
    let mut decoder = EnvelopeDecoder::default();
    let mut contexts = Vec::new();
    let d = decoder
        .decode(&gzip(&envelope("cwl-data-message.json")), |_, ctx| {
            contexts.push((
                ctx.owner.unwrap().to_string(),
                ctx.log_group.unwrap().to_string(),
                ctx.log_stream.unwrap().to_string(),
            ))
        })
        .unwrap();
    assert_eq!((d.kind, d.gzip, d.lines), (EnvelopeKind::CloudWatchData, true, 3));
    assert_eq!(
        contexts[0],
        ("123456789010".into(), "/vpc/flow-logs".into(), "eni-1235b8ca123456789-all".into())
    );
    let d = decoder.decode(&gzip(&envelope("cwl-control-message.json")), |_, _| panic!()).unwrap();
    assert_eq!((d.kind, d.lines), (EnvelopeKind::CloudWatchControl, 0));
}

#[test]
fn empty_record_yields_nothing() {
    let (records, kinds) = firehose_records(&envelope("firehose-request-empty-record.json"));
    assert!(records.is_empty());
    assert_eq!(kinds, [EnvelopeKind::Empty]);
}

#[test]
fn responses_in_the_corpus_have_numeric_timestamps() {
    for name in ["firehose-response-ok.json", "firehose-response-error.json"] {
        let v: Value = serde_json::from_slice(&envelope(name)).unwrap();
        assert!(v["timestamp"].is_u64() && v["requestId"].is_string(), "{name}");
    }
}
