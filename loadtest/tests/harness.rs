//! The harness against a live vpcflowd (its `serve` run in-process on free loopback ports):
//! `--verify` passes on what it sent, and a deliberately wrong expectation fails.

use std::process::Command;

use vpcflowd::serve::Bound;
use vpcflowd::serve::config::ServeConfig;

/// Starts `serve` in this process on free ports, with caps above the test traffic.
async fn start_server() -> vpcflowd::serve::Running {
    let mut config = ServeConfig::default();
    config.ingest.listen = "127.0.0.1:0".parse().unwrap();
    config.admin.listen = "127.0.0.1:0".parse().unwrap();
    config.ingest.access_keys = vec!["k".into()];
    config.window.max_flows = 1_000_000;
    vpcflowd::serve::spawn(config).await.expect("serve started")
}

fn harness(bound: Bound, extra: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_vpcflowd-loadtest"))
        .args([
            "firehose",
            "--url",
            &format!("http://{}/", bound.ingest),
            "--admin",
            &format!("http://{}", bound.admin),
        ])
        .args([
            "--access-key",
            "k",
            "--records",
            "20000",
            "--rate",
            "40000",
            "--gzip",
            "--verify",
            "--max-flows",
            "1000000",
        ])
        .args(extra)
        .output()
        .expect("run the harness")
}

#[tokio::test(flavor = "multi_thread")]
async fn verify_passes_on_what_was_sent_and_fails_on_a_wrong_expectation() {
    let server = start_server().await;
    let bound = server.bound;
    let out = tokio::task::spawn_blocking(move || harness(bound, &["--json"])).await.unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["records_accepted"], 20_000);
    assert_eq!(report["requests_never_accepted"], 0);
    assert!(report["verified_snapshots"].as_u64().unwrap() > 0);
    assert!(report["ack_latency_ms"]["p99"].as_f64().unwrap() > 0.0);
    server.stop().await.unwrap();

    // A fresh server: the same traffic, one byte more expected on one record.
    let server = start_server().await;
    let bound = server.bound;
    let out = tokio::task::spawn_blocking(move || harness(bound, &["--wrong-expectation"]))
        .await
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("snapshots differ") && stderr.contains("at /bytes: expected"),
        "{stderr}"
    );
    server.stop().await.unwrap();
}

#[test]
fn the_demo_shows_closed_windows_within_its_run() {
    let out = Command::new(env!("CARGO_BIN_EXE_vpcflowd-loadtest"))
        .args(["demo", "--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0"])
        .args([
            "--window",
            "2s",
            "--slide",
            "1s",
            "--lateness",
            "1s",
            "--rate",
            "2000",
            "--duration",
            "8s",
        ])
        .output()
        .expect("run the demo");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("look at:  curl http://127.0.0.1:"), "{stdout}");
    let windows = stdout.lines().filter(|l| l.starts_with("window ")).count();
    assert!(windows >= 2, "closed windows shown: {stdout}");
    assert!(stdout.contains("eni-00abc"), "{stdout}");
}
