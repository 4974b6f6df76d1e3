//! Decoding throughput: `cargo bench --bench decode`. Results and commands: BENCHMARKS.md.

use std::hint::black_box;
use std::io::Write;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use vpcflowd::decode::{EnvelopeDecoder, LayoutSet, parse_line, parse_plain_line};

const N: usize = 10_000;

const V5_FORMAT: &str = "${version} ${srcaddr} ${dstaddr} ${srcport} ${dstport} ${protocol} ${start} ${end} ${type} ${packets} ${bytes} ${account-id} ${vpc-id} ${subnet-id} ${instance-id} ${interface-id} ${region} ${az-id} ${sublocation-type} ${sublocation-id} ${action} ${tcp-flags} ${pkt-srcaddr} ${pkt-dstaddr} ${pkt-src-aws-service} ${pkt-dst-aws-service} ${traffic-path} ${flow-direction} ${log-status}";

/// Default-format lines with varied addresses, ports and counters (about 100 bytes each).
fn default_lines() -> Vec<String> {
    (0..N)
        .map(|i| {
            format!(
                "2 123456789010 eni-{:017x} 10.{}.{}.{} 172.31.{}.{} {} {} 6 {} {} {} {} {} OK",
                i % 97,
                i % 256,
                (i / 7) % 256,
                (i / 3) % 256,
                i % 256,
                (i * 13) % 256,
                1024 + (i * 31) % 64000,
                [443, 22, 80, 3389, 53][i % 5],
                i % 1000 + 1,
                (i % 1000 + 1) * 512,
                1_700_000_000 + i,
                1_700_000_060 + i,
                if i % 9 == 0 { "REJECT" } else { "ACCEPT" }
            )
        })
        .collect()
}

fn v5_lines() -> Vec<String> {
    (0..N)
        .map(|i| {
            format!(
                "5 52.95.{}.{} 10.0.{}.{} {} {} 6 {} {} IPv4 {} {} 123456789012 vpc-abcdefab012345678 subnet-aaaaaaaa012345678 i-0c50d5961bcb2d47b eni-{:017x} ap-southeast-2 apse2-az3 - - ACCEPT 19 52.95.128.179 10.0.0.71 S3 - {} {} OK",
                i % 256,
                (i / 3) % 256,
                i % 256,
                (i / 5) % 256,
                [80, 443][i % 2],
                1024 + i % 60000,
                1_616_729_292 + i,
                1_616_729_349 + i,
                i % 100 + 1,
                (i % 100 + 1) * 1000,
                i % 50,
                if i % 2 == 0 { "-" } else { "8" },
                if i % 2 == 0 { "ingress" } else { "egress" },
            )
        })
        .collect()
}

fn parse_all(set: &LayoutSet, lines: &[String]) -> u64 {
    let mut bytes = 0;
    for l in lines {
        let p = parse_line(set, l.as_bytes()).unwrap();
        bytes += p.record.bytes.unwrap_or(0);
    }
    bytes
}

fn lines(c: &mut Criterion) {
    let mut g = c.benchmark_group("parse_line");
    g.throughput(Throughput::Elements(N as u64));
    let default = LayoutSet::default();
    let single = LayoutSet::from_formats(&["default"]).unwrap();
    let d = default_lines();
    g.bench_function("default_format", |b| b.iter(|| black_box(parse_all(&single, &d))));
    g.bench_function("default_format_multi_layout_set", |b| {
        b.iter(|| black_box(parse_all(&default, &d)))
    });
    // The plain-line shortcut replay's parse pool and serve's request preparation take.
    g.bench_function("plain_default_format", |b| {
        b.iter(|| {
            let mut bytes = 0;
            for l in &d {
                bytes +=
                    parse_plain_line(&default, l.as_bytes()).unwrap().record.bytes.unwrap_or(0);
            }
            black_box(bytes)
        })
    });
    let v5 = LayoutSet::from_formats(&[V5_FORMAT]).unwrap();
    let l5 = v5_lines();
    g.bench_function("v5_29_fields", |b| b.iter(|| black_box(parse_all(&v5, &l5))));
    g.finish();
}

fn envelopes(c: &mut Criterion) {
    let set = LayoutSet::from_formats(&["default"]).unwrap();
    let d = default_lines();

    // CloudWatch Logs subscription payloads as Kinesis/Firehose deliver them: gzip'd JSON,
    // 500 events each.
    let payloads: Vec<Vec<u8>> = d
        .chunks(500)
        .enumerate()
        .map(|(i, chunk)| {
            let events: Vec<_> = chunk
                .iter()
                .enumerate()
                .map(|(j, m)| {
                    serde_json::json!({"id": format!("{:056}", i * 500 + j), "timestamp": 1_700_000_000_000u64, "message": m})
                })
                .collect();
            let json = serde_json::json!({"messageType": "DATA_MESSAGE", "owner": "123456789010",
                "logGroup": "/vpc/flow-logs", "logStream": "eni-1-all",
                "subscriptionFilters": ["f"], "logEvents": events});
            let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::new(6));
            e.write_all(&serde_json::to_vec(&json).unwrap()).unwrap();
            e.finish().unwrap()
        })
        .collect();
    let compressed: usize = payloads.iter().map(Vec::len).sum();
    let mut g = c.benchmark_group("envelope");
    // Throughput in compressed bytes, as they arrive.
    g.throughput(Throughput::Bytes(compressed as u64));
    let mut decoder = EnvelopeDecoder::default();
    g.bench_function("cloudwatch_gzip_decode_and_parse", |b| {
        b.iter(|| {
            let mut n = 0u64;
            for p in &payloads {
                decoder
                    .decode(p, |line, _| {
                        n += parse_line(&set, line).unwrap().record.packets.unwrap()
                    })
                    .unwrap();
            }
            black_box(n)
        })
    });
    g.finish();

    let wrapped: Vec<String> = d.iter().map(|l| format!("{{\"message\":\"{l}\"}}")).collect();
    let mut g = c.benchmark_group("envelope");
    g.throughput(Throughput::Elements(N as u64));
    g.bench_function("json_wrapped_decode_and_parse", |b| {
        b.iter(|| {
            let mut n = 0u64;
            for w in &wrapped {
                decoder
                    .decode(w.as_bytes(), |line, _| {
                        n += parse_line(&set, line).unwrap().record.packets.unwrap()
                    })
                    .unwrap();
            }
            black_box(n)
        })
    });
    g.finish();
}

criterion_group!(benches, lines, envelopes);
criterion_main!(benches);
