//! The harness's Kinesis target: PutRecords into a kinesalite stream that an in-process
//! `vpcflowd serve` reads, with `--verify` passing, for CloudWatch Logs payloads (what a
//! subscription filter puts) and for direct records.
//!
//! The only test of this binary: it sets the AWS environment for the in-process server's
//! credential chain before any other thread exists.

#[path = "../../tests/it/common/tools.rs"]
mod tools;

#[path = "common/locals.rs"]
mod locals;

use std::process::Command;
use std::time::Duration;

use serde_json::Value;
use vpcflowd::serve::config::ServeConfig;
use vpcflowd::source::kinesis::KinesisSourceConfig;

#[test]
fn put_records_into_kinesalite_verifies() {
    for (k, v) in tools::AWS_ENV {
        // SAFETY: this binary's only test, before its runtime (or any other thread) starts.
        unsafe { std::env::set_var(k, v) };
    }
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let emu = tools::Kinesalite::start();
        let client = aws_sdk_kinesis::Client::new(&tools::sdk_config(&emu.endpoint));
        for (stream, package) in [("cwl", "cloudwatch"), ("direct", "message")] {
            tools::create_stream(&client, stream, 2).await;

            let mut config = ServeConfig::default();
            config.ingest.listen = "127.0.0.1:0".parse().unwrap();
            config.admin.listen = "127.0.0.1:0".parse().unwrap();
            // Shards are read independently, one GetRecords call holding a whole shard's
            // 50 s of event time here: the lateness must cover the skew between shards.
            config.window.window = Duration::from_secs(30);
            config.window.slide = Duration::from_secs(10);
            config.window.lateness = Duration::from_secs(600);
            config.window.max_flows = 1_000_000;
            config.window.local_addresses_file = Some(locals::local_addresses_file().into());
            config.sources.kinesis = vec![KinesisSourceConfig {
                stream: stream.into(),
                endpoint: Some(emu.endpoint.clone()),
                ..KinesisSourceConfig::default()
            }];
            let server = vpcflowd::serve::spawn(config).await.expect("serve started");
            let admin = format!("http://{}", server.bound.admin);
            let endpoint = emu.endpoint.clone();
            let out = tokio::task::spawn_blocking(move || {
                Command::new(env!("CARGO_BIN_EXE_vpcflowd-loadtest"))
                    .args(["kinesis", "--stream", stream, "--endpoint-url", &endpoint])
                    .args(["--package", package, "--admin", &admin, "--verify", "--json"])
                    .args(["--window", "30s", "--slide", "10s", "--lateness", "10m"])
                    .args(["--records", "10000", "--event-rate", "200", "--max-flows", "1000000"])
                    .args(["--local-addresses", locals::local_addresses_file()])
                    .envs(tools::AWS_ENV)
                    .output()
                    .expect("run the harness")
            })
            .await
            .unwrap();
            assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
            let report: Value = serde_json::from_slice(&out.stdout).unwrap();
            assert_eq!(report["records_accepted"], 10_000, "{report:#}");
            assert!(report["verified_snapshots"].as_u64().unwrap() > 10, "{report:#}");
            assert!(report["responses"]["ok"].as_u64().unwrap() >= 20, "{report:#}");
            server.stop().await.unwrap();
        }
    });
}
