//! A real Prometheus server (Debian's package) scrapes `/metrics`; its HTTP API must report
//! the known top talker's bytes of the latest closed window, and the self-metrics.

use crate::common;

use std::time::{Duration, Instant};

use crate::common::serve::{Firehose, Server};
use crate::common::tools::Prometheus;
use serde_json::Value;

/// Aligned to the one-minute slide.
const T0: u64 = 1_700_000_040;

fn line(iface: &str, src: &str, bytes: u64, start: u64) -> String {
    format!(
        "2 123456789012 {iface} {src} 10.0.1.1 55555 443 6 10 {bytes} {start} {} ACCEPT OK",
        start + 59
    )
}

/// Polls Prometheus's query API until `query` has a result (Prometheus scrapes every second;
/// there is no event to wait on across processes), for at most a minute.
async fn query(prom: &Prometheus, query: &str) -> f64 {
    let client = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let resp = client
            .get(format!("{}/api/v1/query", prom.url))
            .query(&[("query", query)])
            .send()
            .await;
        if let Ok(resp) = resp
            && let Ok(body) = resp.json::<Value>().await
            && let Some(v) = body["data"]["result"][0]["value"][1].as_str()
        {
            return v.parse().unwrap();
        }
        assert!(Instant::now() < deadline, "Prometheus never answered {query}");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prometheus_scrapes_the_latest_window_and_self_metrics() {
    // Both interfaces' own address, so that their sources are the senders.
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("vpcflowd.toml");
    let locals = "[window.local_addresses]\n\"eni-0top\" = [\"10.0.1.1\"]\n\"eni-0other\" = [\"10.0.1.0/24\"]\n";
    std::fs::write(&config, locals).unwrap();
    let server = Server::start(&["--lateness", "0s", "--config", config.to_str().unwrap()], &[]);
    // Twelve minutes: a top talker (1 MB a minute) and a small one on eni-0top, and another
    // interface whose source is bigger still (so the query must filter by interface).
    let mut lines = Vec::new();
    for k in 0..12 {
        let t = T0 + 60 * k;
        lines.push(line("eni-0top", "10.0.0.99", 1_000_000, t));
        lines.push(line("eni-0top", "10.0.0.7", 1_000, t));
        lines.push(line("eni-0other", "10.0.0.99", 9_000_000, t));
    }
    let firehose = Firehose::new(&server.ingest, None);
    for (i, chunk) in lines.chunks(6).enumerate() {
        let (status, _) = firehose.send(&format!("req-{i}"), &common::serve::wrapped(chunk)).await;
        assert_eq!(status, 200);
    }
    // The latest closed window is [T0+360, T0+660): minutes 6..=10 of the talker.
    let admin = server.admin.trim_start_matches("http://").to_string();
    // Windows close in the engine's closer thread after the requests are answered: wait for
    // the API to show the window (bounded).
    let deadline = Instant::now() + Duration::from_secs(30);
    let latest = loop {
        let latest: Value = reqwest::get(format!("{}/api/v1/snapshots/latest", server.admin))
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        if latest[0]["window_start"] == T0 + 360 {
            break latest;
        }
        assert!(Instant::now() < deadline, "the window never closed: {latest}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let top = latest
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["interface_id"] == "eni-0top")
        .expect("eni-0top in the latest window");
    assert_eq!(top["window_start"], T0 + 360);
    assert_eq!(top["sources"][0]["address"], "10.0.0.99");
    assert_eq!(top["sources"][0]["bytes"], 5_000_000);

    let prom = Prometheus::start(&[&admin]);
    let bytes = query(
        &prom,
        r#"vpcflowd_source_bytes{interface_id="eni-0top",source_address="10.0.0.99"}"#,
    )
    .await;
    assert_eq!(bytes, 5_000_000.0);
    let share = query(
        &prom,
        r#"vpcflowd_source_traffic_share_percent{interface_id="eni-0top",source_address="10.0.0.99"}"#,
    )
    .await;
    assert!((share - 100.0 * 5_000_000.0 / 5_005_000.0).abs() < 1e-9, "{share}");
    assert_eq!(
        query(&prom, r#"vpcflowd_interface_bytes{interface_id="eni-0top"}"#).await,
        5_005_000.0
    );
    assert_eq!(query(&prom, "vpcflowd_window_start_seconds").await, (T0 + 360) as f64);
    assert_eq!(query(&prom, "vpcflowd_ingest_records_total").await, lines.len() as f64);
    assert_eq!(
        query(&prom, r#"vpcflowd_ingest_requests_total{http_response_status_code="200"}"#).await,
        6.0
    );
    // vpcflowd's own memory: what the kernel reports for it now, within the drift of an idle
    // server between two readings (the kernel's RSS counters are themselves batched).
    let rss = query(&prom, r#"process_memory_usage_bytes{job="vpcflowd"}"#).await;
    let status = std::fs::read_to_string(format!("/proc/{}/status", server.pid())).unwrap();
    let now_kib: f64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap();
    let ratio = rss / (now_kib * 1024.0);
    assert!((0.8..1.25).contains(&ratio), "{rss} bytes reported, {now_kib} KiB now");
    drop(prom);
    server.stop();
}
