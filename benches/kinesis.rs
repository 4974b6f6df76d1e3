//! Kinesis source throughput against kinesalite: records/s of one shard consumer and of a
//! whole 4-shard stream through the real `serve` (in this process), the emulator's own
//! GetRecords ceiling measured with a bare SDK loop, and this process's CPU per million
//! records. Streams are filled before the clock starts.
//!
//! `cargo bench --bench kinesis` (kinesalite is installed with npm on first use).

#[path = "../tests/it/common/tools.rs"]
mod tools;

use std::io::Write;
use std::time::{Duration, Instant};

use aws_sdk_kinesis::primitives::Blob;
use aws_sdk_kinesis::types::{PutRecordsRequestEntry, ShardIteratorType};
use flate2::write::GzEncoder;

const T0: u64 = 1_700_000_040;

fn line(i: u64) -> String {
    format!(
        "2 123456789012 eni-{:017x} 10.0.{}.{} 172.16.0.1 40000 443 6 3 {} {} {} ACCEPT OK",
        i % 97,
        (i / 250) % 250,
        i % 250,
        100 + i % 1000,
        T0 + i % 600,
        T0 + i % 600 + 30
    )
}

/// A CloudWatch Logs subscription payload of `n` lines starting at `first`.
fn cloudwatch(first: u64, n: u64) -> Vec<u8> {
    let events: Vec<_> = (first..first + n)
        .map(|i| serde_json::json!({"id": i.to_string(), "timestamp": 0, "message": line(i)}))
        .collect();
    let body = serde_json::json!({"messageType": "DATA_MESSAGE", "owner": "123456789012",
        "logGroup": "flows", "logStream": format!("eni-{:017x}-all", first % 97),
        "subscriptionFilters": ["all"], "logEvents": events});
    let mut gz = GzEncoder::new(Vec::new(), flate2::Compression::new(6));
    gz.write_all(body.to_string().as_bytes()).unwrap();
    gz.finish().unwrap()
}

fn client(endpoint: &str) -> aws_sdk_kinesis::Client {
    let config = aws_config::SdkConfig::builder()
        .behavior_version(aws_config::BehaviorVersion::latest())
        .region(aws_config::Region::new("us-east-1"))
        .credentials_provider(aws_sdk_kinesis::config::SharedCredentialsProvider::new(
            aws_sdk_kinesis::config::Credentials::new("test", "test", None, None, "static"),
        ))
        .endpoint_url(endpoint)
        .build();
    aws_sdk_kinesis::Client::new(&config)
}

async fn fill(k: &aws_sdk_kinesis::Client, stream: &str, shards: i32, records: &[Vec<u8>]) {
    k.create_stream().stream_name(stream).shard_count(shards).send().await.unwrap();
    loop {
        let d = k.describe_stream_summary().stream_name(stream).send().await.unwrap();
        if d.stream_description_summary.unwrap().stream_status
            == aws_sdk_kinesis::types::StreamStatus::Active
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    for chunk in records.chunks(500).enumerate() {
        let entries = chunk
            .1
            .iter()
            .enumerate()
            .map(|(j, d)| {
                PutRecordsRequestEntry::builder()
                    .partition_key(format!("k{}", chunk.0 * 500 + j))
                    .data(Blob::new(d.clone()))
                    .build()
                    .unwrap()
            })
            .collect();
        k.put_records().stream_name(stream).set_records(Some(entries)).send().await.unwrap();
    }
}

/// User + system CPU time of this process.
fn cpu() -> Duration {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap();
    let fields: Vec<&str> = stat.rsplit_once(')').unwrap().1.split_whitespace().collect();
    let ticks: u64 = fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap();
    Duration::from_secs_f64(ticks as f64 / 100.0)
}

/// GetRecords as fast as the emulator answers, no processing: its ceiling.
async fn raw_ceiling(k: &aws_sdk_kinesis::Client, stream: &str, expected: usize) -> f64 {
    let shards = k.list_shards().stream_name(stream).send().await.unwrap().shards.unwrap();
    let started = Instant::now();
    let mut n = 0;
    for s in shards {
        let mut it = k
            .get_shard_iterator()
            .stream_name(stream)
            .shard_id(s.shard_id)
            .shard_iterator_type(ShardIteratorType::TrimHorizon)
            .send()
            .await
            .unwrap()
            .shard_iterator;
        while let Some(i) = it {
            let out = k.get_records().shard_iterator(i).limit(10_000).send().await.unwrap();
            n += out.records.len();
            if out.records.is_empty() {
                break;
            }
            it = out.next_shard_iterator;
        }
    }
    assert_eq!(n, expected);
    n as f64 / started.elapsed().as_secs_f64()
}

/// Runs `serve` on `stream` until it has routed `lines` flow-log lines; returns (seconds, CPU).
async fn through_serve(endpoint: &str, stream: &str, lines: u64) -> (f64, Duration) {
    let mut config = vpcflowd::serve::config::ServeConfig::default();
    config.ingest.listen = "127.0.0.1:0".parse().unwrap();
    config.admin.listen = "127.0.0.1:0".parse().unwrap();
    config.window.lateness = Duration::from_secs(3600);
    config.sources.kinesis.push(vpcflowd::source::kinesis::KinesisSourceConfig {
        stream: stream.into(),
        endpoint: Some(endpoint.into()),
        region: Some("us-east-1".into()),
        ..Default::default()
    });
    let cpu0 = cpu();
    let started = Instant::now();
    let running = vpcflowd::serve::spawn(config).await.unwrap();
    let url = format!("http://{}/api/v1/status", running.bound.admin);
    loop {
        let s: serde_json::Value = reqwest::get(&url).await.unwrap().json().await.unwrap();
        if s["ingest"]["records"].as_u64() >= Some(lines) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let elapsed = started.elapsed().as_secs_f64();
    let used = cpu() - cpu0;
    running.stop().await.unwrap();
    (elapsed, used)
}

fn main() {
    // SAFETY: set before any thread starts.
    unsafe {
        std::env::set_var("AWS_ACCESS_KEY_ID", "test");
        std::env::set_var("AWS_SECRET_ACCESS_KEY", "test");
        std::env::set_var("AWS_EC2_METADATA_DISABLED", "true");
        std::env::set_var("RUST_LOG", "error");
    }
    let rt = tokio::runtime::Runtime::new().unwrap();
    let emu = tools::Kinesalite::start();
    rt.block_on(async {
        let k = client(&emu.endpoint);
        let bare: Vec<Vec<u8>> = (0..60_000u64).map(|i| line(i).into_bytes()).collect();
        let cw: Vec<Vec<u8>> = (0..3_000u64).map(|i| cloudwatch(i * 20, 20)).collect();
        println!("| case | Kinesis records | flow-log lines | records/s | lines/s | CPU s per M lines | emulator ceiling (records/s) |");
        println!("|---|---|---|---|---|---|---|");
        for (name, stream, shards, records, per) in [
            ("bare lines, 1 shard", "bare1", 1, &bare, 1u64),
            ("CloudWatch envelopes of 20 lines, 1 shard", "cw1", 1, &cw, 20),
            ("bare lines, 4 shards", "bare4", 4, &bare, 1),
        ] {
            fill(&k, stream, shards, records).await;
            let ceiling = raw_ceiling(&k, stream, records.len()).await;
            let lines = records.len() as u64 * per;
            let (secs, cpu) = through_serve(&emu.endpoint, stream, lines).await;
            println!(
                "| {name} | {} | {lines} | {:.0} | {:.0} | {:.2} | {:.0} |",
                records.len(),
                records.len() as f64 / secs,
                lines as f64 / secs,
                cpu.as_secs_f64() / (lines as f64 / 1e6),
                ceiling
            );
        }
    });
}
