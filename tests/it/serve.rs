//! `vpcflowd serve` over real HTTP on loopback: every protocol case of the reference and of the
//! corpus envelopes, auth, limits, a gzip bomb, malformed requests, retried ids, a flooded queue,
//! SIGTERM with requests in flight, and the admin API.

use crate::common;

use std::sync::Arc;

use crate::common::corpus_dir;
use crate::common::serve::{Firehose, Server, firehose_body, total, wrapped};
use serde_json::Value;

const KEY: &str = "test-access-key";

/// Processing-time one-minute windows: every accepted record lands in exactly one window, and
/// shutdown closes them all, so totals over the printed snapshots count records exactly.
const COUNTING: &[&str] = &[
    "--access-key",
    KEY,
    "--time",
    "processing",
    "--window",
    "1m",
    "--slide",
    "1m",
    "--lateness",
    "0s",
];

fn envelope(name: &str) -> Vec<u8> {
    std::fs::read(corpus_dir().join("envelopes").join(name)).unwrap()
}

fn request_id(body: &[u8]) -> String {
    let v: Value = serde_json::from_slice(body).unwrap();
    v["requestId"].as_str().unwrap().to_string()
}

fn lines(n: usize, tag: usize) -> Vec<String> {
    (0..n)
        .map(|i| {
            format!(
                "2 123456789012 eni-{:017x} 10.0.{}.{} 172.16.0.1 {} 443 6 2 {} 1700000000 1700000060 ACCEPT OK",
                tag % 7,
                (i / 250) % 250,
                i % 250,
                1024 + i % 60000,
                100 + i
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn corpus_envelopes_are_accepted_and_counted_exactly() {
    let server = Server::start(COUNTING, &[]);
    let fh = Firehose::new(&server.ingest, Some(KEY));
    // The corpus requests, as Firehose sends them.
    for name in [
        "firehose-request-direct.json",
        "firehose-request-cwl.json",
        "firehose-request-empty-record.json",
    ] {
        let body = envelope(name);
        let id = request_id(&body);
        let (status, json) = fh.post(&id, body).await;
        assert_eq!(status, 200, "{name}: {json}");
        assert_eq!(json["requestId"], id);
        let ts = json["timestamp"].as_u64().expect("a numeric timestamp");
        assert!(ts > 1_700_000_000_000, "milliseconds");
        assert!(json.get("errorMessage").is_none());
    }
    // The gzip body of the direct request, sent under a fresh id so that it counts again.
    let mut gz = Firehose::new(&server.ingest, Some(KEY));
    gz.gzip = true;
    let direct: Value = serde_json::from_slice(&envelope("firehose-request-direct.json")).unwrap();
    let mut again = direct.clone();
    again["requestId"] = "direct-again".into();
    let (status, _) = gz.post("direct-again", serde_json::to_vec(&again).unwrap()).await;
    assert_eq!(status, 200);
    // And the shared .gz file itself, exactly as stored (same id as the plain one: a retry).
    let mut raw = reqwest::Client::new()
        .post(&server.ingest)
        .header("Content-Type", "application/json")
        .header("Content-Encoding", "gzip")
        .header("X-Amz-Firehose-Access-Key", KEY)
        .body(envelope("firehose-request-direct.json.gz"))
        .send()
        .await
        .unwrap();
    assert_eq!(raw.status(), 200);
    let _ = raw.chunk().await;
    let status = server.status().await;
    assert_eq!(status["ingest"]["dedup_hits"], 1, "{status}");

    let (exit, snapshots, _) = server.stop();
    assert!(exit.success());
    // direct: 3 OK + 1 NODATA, twice; CloudWatch: 2 OK + 1 NODATA; control and empty: nothing.
    assert_eq!(total(&snapshots, "flows"), 3 + 3 + 2);
    assert_eq!(total(&snapshots, "nodata_records"), 3);
    assert_eq!(total(&snapshots, "rejected_flows"), 2 + 1);
    // Region from the common attributes fills records that have none.
    assert!(snapshots.iter().all(|s| s["region"] == "us-east-1"), "{snapshots:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn auth_methods_and_health_checks() {
    let server = Server::start(&["--access-key", KEY, "--access-key", "second-key"], &[]);
    let body = firehose_body("r1", &wrapped(&lines(1, 0)));
    let (status, json) =
        Firehose::new(&server.ingest, Some("wrong")).post("r1", body.clone()).await;
    assert_eq!(status, 401);
    assert_eq!(json["requestId"], "r1");
    assert!(json["errorMessage"].as_str().unwrap().contains("Access-Key"));
    assert_eq!(Firehose::new(&server.ingest, None).post("r1", body.clone()).await.0, 401);
    assert_eq!(Firehose::new(&server.ingest, Some("second-key")).post("r1", body).await.0, 200);
    let client = reqwest::Client::new();
    assert_eq!(client.get(&server.ingest).send().await.unwrap().status(), 200);
    assert_eq!(client.head(&server.ingest).send().await.unwrap().status(), 200);
    assert_eq!(client.get(format!("{}health", server.ingest)).send().await.unwrap().status(), 200);
    assert_eq!(client.put(&server.ingest).send().await.unwrap().status(), 405);
    assert_eq!(client.get(format!("{}/healthz", server.admin)).send().await.unwrap().status(), 200);
    assert_eq!(client.get(format!("{}/readyz", server.admin)).send().await.unwrap().status(), 200);
    let status = server.status().await;
    assert_eq!(status["ingest"]["responses"]["401"], 2);
    let (exit, _, _) = server.stop();
    assert!(exit.success());
}

#[tokio::test(flavor = "multi_thread")]
async fn size_limits_gzip_bombs_and_malformed_requests() {
    let env = [
        ("VPCFLOWD_INGEST__MAX_BODY_BYTES", "200000"),
        ("VPCFLOWD_INGEST__MAX_DECOMPRESSED_BYTES", "300000"),
    ];
    let server = Server::start(COUNTING, &env);
    let fh = Firehose::new(&server.ingest, Some(KEY));
    // Over the body limit as sent.
    let big = firehose_body("big", &wrapped(&lines(3000, 1)));
    assert!(big.len() > 200_000);
    let (status, json) = fh.post("big", big).await;
    assert_eq!((status, json["requestId"].as_str()), (413, Some("big")));
    // A gzip bomb: 50 MB of zeros in about 50 kB.
    let bomb = {
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
        std::io::Write::write_all(&mut e, &vec![0u8; 50_000_000]).unwrap();
        e.finish().unwrap()
    };
    assert!(bomb.len() < 200_000);
    let resp = reqwest::Client::new()
        .post(&server.ingest)
        .header("X-Amz-Firehose-Access-Key", KEY)
        .header("X-Amz-Firehose-Request-Id", "bomb")
        .header("Content-Encoding", "gzip")
        .body(bomb)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 413);
    // Malformed: JSON, base64, missing requestId, gzip, protocol version.
    let post = |body: &'static [u8], enc: Option<&'static str>, version: &'static str| {
        let mut r = reqwest::Client::new()
            .post(&server.ingest)
            .header("X-Amz-Firehose-Access-Key", KEY)
            .header("X-Amz-Firehose-Request-Id", "bad")
            .header("X-Amz-Firehose-Protocol-Version", version)
            .body(body);
        if let Some(e) = enc {
            r = r.header("Content-Encoding", e);
        }
        async move { r.send().await.unwrap().status().as_u16() }
    };
    assert_eq!(post(b"{not json", None, "1.0").await, 400);
    assert_eq!(
        post(br#"{"requestId":"x","timestamp":1,"records":[{"data":"@@@"}]}"#, None, "1.0").await,
        400
    );
    assert_eq!(post(br#"{"timestamp":1,"records":[]}"#, None, "1.0").await, 400);
    assert_eq!(post(b"\x1f\x8bnot really gzip", Some("gzip"), "1.0").await, 400);
    assert_eq!(post(br#"{"requestId":"x","records":[]}"#, None, "2.0").await, 400);
    // Bad flow-log lines inside a good request: 200, counted by reason.
    let mut records = wrapped(&lines(2, 2));
    records.push(
        br#"{"message":"2 123456789012 eni-1 10.0.0.1 10.0.0.2 +80 443 6 1 1 1 2 ACCEPT OK"}"#
            .to_vec(),
    );
    records.push(b"not a flow log".to_vec());
    let (status, _) = fh.send("mixed", &records).await;
    assert_eq!(status, 200);
    // The server still works after all that.
    assert_eq!(fh.send("after", &wrapped(&lines(3, 3))).await.0, 200);
    let status = server.status().await;
    assert_eq!(status["ingest"]["responses"]["413"], 2, "{status}");
    assert_eq!(status["ingest"]["responses"]["400"], 5, "{status}");
    assert_eq!(status["rejects"]["invalid_number"]["count"], 1, "{status}");
    assert_eq!(status["rejects"]["field_count"]["count"], 1, "{status}");
    assert!(
        status["rejects"]["invalid_number"]["latest"]["detail"].as_str().unwrap().contains("+80")
    );
    let (exit, snapshots, _) = server.stop();
    assert!(exit.success());
    assert_eq!(total(&snapshots, "flows"), 5);
}

#[tokio::test(flavor = "multi_thread")]
async fn retried_request_ids_count_once() {
    let server = Server::start(COUNTING, &[]);
    let fh = Firehose::new(&server.ingest, Some(KEY));
    let records = wrapped(&lines(10, 4));
    for _ in 0..3 {
        let (status, json) = fh.send("same-id", &records).await;
        assert_eq!((status, json["requestId"].as_str()), (200, Some("same-id")));
    }
    assert_eq!(server.status().await["ingest"]["dedup_hits"], 2);
    let (exit, snapshots, _) = server.stop();
    assert!(exit.success());
    assert_eq!(total(&snapshots, "flows"), 10);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_flooded_queue_answers_503_and_each_retry_counts_exactly_once() {
    let server = Server::start(
        COUNTING,
        &[("VPCFLOWD_INGEST__QUEUE_REQUESTS", "1"), ("VPCFLOWD_WINDOW__SHARDS", "1")],
    );
    let fh = Arc::new(Firehose::new(&server.ingest, Some(KEY)));
    let per_request = 5000;
    let requests = 24;
    let mut tasks = Vec::new();
    for r in 0..requests {
        let fh = fh.clone();
        tasks.push(tokio::spawn(async move {
            let body = firehose_body(&format!("flood-{r}"), &wrapped(&lines(per_request, r)));
            let mut refused = 0;
            // Retry like Firehose does, with a short backoff, until accepted.
            for attempt in 0..2000 {
                let (status, _) = fh.post(&format!("flood-{r}"), body.clone()).await;
                match status {
                    200 => return refused,
                    503 => refused += 1,
                    other => panic!("unexpected {other}"),
                }
                tokio::time::sleep(std::time::Duration::from_millis(5 + attempt % 20)).await;
            }
            panic!("never accepted");
        }));
    }
    let mut refused = 0;
    for t in tasks {
        refused += t.await.unwrap();
    }
    assert!(
        refused > 0,
        "a queue of one request must overflow under {requests} concurrent senders"
    );
    let status = server.status().await;
    assert_eq!(status["ingest"]["responses"]["503"], refused, "{status}");
    let (exit, snapshots, _) = server.stop();
    assert!(exit.success());
    assert_eq!(total(&snapshots, "flows"), (per_request * requests) as u64);
}

#[tokio::test(flavor = "multi_thread")]
async fn sigterm_with_requests_in_flight_loses_nothing_acknowledged() {
    let server = Server::start(COUNTING, &[]);
    let fh = Arc::new(Firehose::new(&server.ingest, Some(KEY)));
    let acked = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let (started_tx, mut started_rx) = tokio::sync::mpsc::channel::<()>(64);
    let mut tasks = Vec::new();
    for sender in 0..8 {
        let (fh, acked, started) = (fh.clone(), acked.clone(), started_tx.clone());
        tasks.push(tokio::spawn(async move {
            for r in 0.. {
                let n = 200 + (r % 5) * 100;
                let id = format!("term-{sender}-{r}");
                let body = firehose_body(&id, &wrapped(&lines(n, sender)));
                let result = reqwest::Client::new()
                    .post(fh_url(&fh))
                    .header("X-Amz-Firehose-Access-Key", KEY)
                    .header("X-Amz-Firehose-Request-Id", &id)
                    .body(body)
                    .send()
                    .await;
                match result {
                    Ok(resp) if resp.status() == 200 => {
                        acked.fetch_add(n as u64, std::sync::atomic::Ordering::SeqCst);
                        let _ = started.try_send(());
                    }
                    // 503 while shutting down, or the listener gone: not acknowledged.
                    Ok(resp) if resp.status() == 503 => return,
                    Ok(resp) => panic!("unexpected {}", resp.status()),
                    Err(_) => return,
                }
            }
        }));
    }
    // Let some requests through, then stop the server while the senders keep going.
    for _ in 0..20 {
        started_rx.recv().await.unwrap();
    }
    server.sigterm();
    for t in tasks {
        t.await.unwrap();
    }
    let (exit, snapshots, _) = server.wait();
    assert!(exit.success(), "{exit:?}");
    let acked = acked.load(std::sync::atomic::Ordering::SeqCst);
    assert!(acked > 0);
    assert_eq!(total(&snapshots, "flows"), acked, "every acknowledged record, and nothing else");
}

async fn get_json<T: serde::de::DeserializeOwned>(url: String) -> T {
    reqwest::get(url).await.unwrap().json().await.unwrap()
}

fn fh_url(fh: &Firehose) -> String {
    // The sender's URL (kept private in Firehose); the ingest URL it was built with.
    fh.url().to_string()
}

#[tokio::test(flavor = "multi_thread")]
async fn the_admin_api_serves_closed_windows() {
    // Event time with no lateness: a record an hour later closes the earlier windows.
    // Every interface's own address is 10.0.0.5, so its sources are who send to it.
    let dir = tempfile::tempdir().unwrap();
    let locals = dir.path().join("locals.json");
    let json = r#"{"eni-0000000000000000a": ["10.0.0.5"], "eni-0000000000000000b": ["10.0.0.5"]}"#;
    std::fs::write(&locals, json).unwrap();
    let server = Server::start(
        &[
            "--access-key",
            KEY,
            "--lateness",
            "0s",
            "--window",
            "2m",
            "--slide",
            "1m",
            "--local-addresses",
            locals.to_str().unwrap(),
        ],
        &[],
    );
    let fh = Firehose::new(&server.ingest, Some(KEY));
    let line = |iface: &str, src: &str, bytes: u64, t: u64, action: &str| {
        format!(
            "2 123456789012 {iface} {src} 10.0.0.5 40000 443 6 3 {bytes} {t} {} {action} OK",
            t + 30
        )
    };
    let t0 = 1_700_000_040; // a multiple of 60
    let first = vec![
        line("eni-0000000000000000a", "198.51.100.1", 5000, t0, "ACCEPT"),
        line("eni-0000000000000000a", "198.51.100.2", 1000, t0 + 10, "REJECT"),
        line("eni-0000000000000000b", "198.51.100.3", 700, t0 + 20, "ACCEPT"),
    ];
    assert_eq!(fh.send("w1", &wrapped(&first)).await.0, 200);
    let later = vec![line("eni-0000000000000000a", "198.51.100.9", 1, t0 + 3600, "ACCEPT")];
    assert_eq!(fh.send("w2", &wrapped(&later)).await.0, 200);
    // Wait until the closer has published the windows (the status says which is newest).
    let newest_closed = t0; // windows [t0-60, t0+60) and [t0, t0+120) close; the newest starts at t0
    let status = server
        .wait_for("the windows to close", |s| s["latest_window"].as_u64() == Some(newest_closed))
        .await;
    let latest: Vec<Value> = get_json(format!("{}/api/v1/snapshots/latest", server.admin)).await;
    assert_eq!(latest.len(), 2);
    assert_eq!(latest[0]["interface_id"], "eni-0000000000000000a");
    assert_eq!(latest[0]["window_start"], t0);
    assert_eq!(latest[0]["bytes"], 6000);
    assert_eq!(latest[0]["rejected_bytes"], 1000);
    assert_eq!(latest[0]["sources"][0]["address"], "198.51.100.1");
    assert_eq!(
        latest[0]["sources"][0]["traffic_share_pct"].as_f64(),
        Some(100.0 * 5000.0 / 6000.0)
    );
    let interfaces: Vec<Value> = get_json(format!("{}/api/v1/interfaces", server.admin)).await;
    assert_eq!(interfaces.len(), 2);
    assert_eq!(interfaces[1]["interface_id"], "eni-0000000000000000b");
    assert_eq!(interfaces[1]["bytes"], 700);
    let history: Vec<Value> = get_json(format!(
        "{}/api/v1/interfaces/eni-0000000000000000a/snapshots?limit=5",
        server.admin
    ))
    .await;
    assert_eq!(
        history.iter().map(|s| s["window_start"].as_u64().unwrap()).collect::<Vec<_>>(),
        [t0, t0 - 60]
    );
    let limited: Vec<Value> = get_json(format!(
        "{}/api/v1/interfaces/eni-0000000000000000a/snapshots?limit=1",
        server.admin
    ))
    .await;
    assert_eq!(limited.len(), 1);
    let missing = reqwest::get(format!("{}/api/v1/interfaces/eni-none/snapshots", server.admin))
        .await
        .unwrap();
    assert_eq!(missing.status(), 404);
    assert_eq!(status["engine"]["records"], 4);
    let (exit, _, _) = server.stop();
    assert!(exit.success());
}

#[test]
fn the_config_file_comes_from_the_flag_or_vpcflowd_config() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("vpcflowd.toml");
    std::fs::write(&file, "[window]\ntop_sources = 7\ntop_flows = 3\n").unwrap();
    let print = |args: &[&str], env: &[(&str, &str)]| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_vpcflowd"))
            .args(["serve", "--print-config"])
            .args(args)
            .envs(env.iter().copied())
            .output()
            .unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).to_string(),
            String::from_utf8_lossy(&out.stderr).to_string(),
        )
    };
    let path = file.to_str().unwrap();
    for (args, env) in [(vec!["--config", path], vec![]), (vec![], vec![("VPCFLOWD_CONFIG", path)])]
    {
        let (code, stdout, stderr) = print(&args, &env);
        assert_eq!(code, Some(0), "{stderr}");
        assert!(stdout.contains("top_sources = 7") && stdout.contains("top_flows = 3"), "{stdout}");
    }
    // Environment keys beat the file, flags beat both, and the flag beats VPCFLOWD_CONFIG.
    let (_, stdout, _) = print(
        &["--top-flows", "9"],
        &[("VPCFLOWD_CONFIG", path), ("VPCFLOWD_WINDOW__TOP_SOURCES", "8")],
    );
    assert!(stdout.contains("top_sources = 8") && stdout.contains("top_flows = 9"), "{stdout}");
    let (code, _, stderr) = print(&["--config", path], &[("VPCFLOWD_CONFIG", "/nonexistent.toml")]);
    assert_eq!(code, Some(0), "{stderr}");
    // A missing file named by the variable is an error naming it.
    let (code, _, stderr) = print(&[], &[("VPCFLOWD_CONFIG", "/nonexistent.toml")]);
    assert_ne!(code, Some(0));
    assert!(stderr.contains("/nonexistent.toml"), "{stderr}");
    // The image's defaults file (VPCFLOWD_BASE_CONFIG) sits beneath the configuration file,
    // which may set the same keys; the environment still beats both.
    let base = dir.path().join("image-defaults.toml");
    std::fs::write(&base, "[window]\ntop_sources = 2\n[admin]\nhistory = 5\n").unwrap();
    let base = base.to_str().unwrap();
    let (code, stdout, stderr) =
        print(&[], &[("VPCFLOWD_BASE_CONFIG", base), ("VPCFLOWD_CONFIG", path)]);
    assert_eq!(code, Some(0), "{stderr}");
    assert!(stdout.contains("top_sources = 7") && stdout.contains("history = 5"), "{stdout}");
    let (_, stdout, _) = print(&["--base-config", base], &[("VPCFLOWD_ADMIN__HISTORY", "6")]);
    assert!(stdout.contains("top_sources = 2") && stdout.contains("history = 6"), "{stdout}");
    // The image's own file loads, and says what the image's ports and volume expect.
    let image = concat!(env!("CARGO_MANIFEST_DIR"), "/deploy/image-defaults.toml");
    let (code, stdout, stderr) = print(&["--base-config", image], &[]);
    assert_eq!(code, Some(0), "{stderr}");
    for key in
        ["listen = \"0.0.0.0:8080\"", "listen = \"0.0.0.0:9464\"", "dir = \"/var/lib/vpcflowd\""]
    {
        assert!(stdout.contains(key), "{key} in {stdout}");
    }
}

#[test]
fn healthcheck_answers_for_a_running_server_and_fails_without_one() {
    let check = |url: &str| {
        std::process::Command::new(env!("CARGO_BIN_EXE_vpcflowd"))
            .args(["healthcheck", "--url", url, "--timeout", "2s"])
            .output()
            .unwrap()
    };
    let server = Server::start(&[], &[]);
    for path in ["healthz", "readyz"] {
        let out = check(&format!("{}/{path}", server.admin));
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    }
    // A path that answers 404 is not healthy.
    let out = check(&format!("{}/nothing-here", server.admin));
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("404"));
    let admin = server.admin.clone();
    let (exit, _, _) = server.stop();
    assert!(exit.success());
    // Nobody listening any more.
    let out = check(&format!("{admin}/healthz"));
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("vpcflowd healthcheck:"));
}

/// A gzip'd CloudWatch payload whose lines come to more than the body limit is parsed by the
/// pipeline a line at a time rather than held parsed: every record still counts, once.
#[tokio::test(flavor = "multi_thread")]
async fn records_that_expand_past_the_body_limit_are_parsed_by_the_pipeline() {
    let server = Server::start(COUNTING, &[("VPCFLOWD_INGEST__MAX_DECOMPRESSED_BYTES", "4000")]);
    let fh = Firehose::new(&server.ingest, Some(KEY));
    // One line 200 times: it compresses to a small record (each is still a flow of its own).
    let lines = vec![lines(1, 3).remove(0); 200];
    let record = common::kinesis::cloudwatch("123456789012", "eni-3-all", &lines);
    let raw: usize = lines.iter().map(String::len).sum();
    assert!(raw > 4000 && record.len() * 2 < 4000, "lines {raw}, record {}", record.len());
    let (status, _) = fh.send("expands", &[record]).await;
    assert_eq!(status, 200);
    let status = server.status().await;
    assert_eq!(status["ingest"]["records"], 200, "{status}");
    let (exit, snapshots, _) = server.stop();
    assert!(exit.success());
    assert_eq!(total(&snapshots, "flows"), 200);
}

/// `/api/v1/status` is exactly the typed `StatusReport` (what a client such as the harness
/// reads), every self-metric defined over it names a key that the status has, and each of
/// those instruments is on `/metrics`.
#[tokio::test(flavor = "multi_thread")]
async fn the_status_is_the_typed_report_and_every_instrument_is_served() {
    use vpcflowd::serve::status::{StatusReport, instruments};
    let server = Server::start(COUNTING, &[]);
    let fh = Firehose::new(&server.ingest, Some(KEY));
    let mut records = wrapped(&lines(3, 7));
    records.push(br#"{"message":"2 not a flow log"}"#.to_vec());
    assert_eq!(fh.send("status-1", &records).await.0, 200);
    let status = server.wait_for("the records", |s| s["ingest"]["records"] == 3).await;
    let typed: StatusReport = serde_json::from_value(status.clone()).expect("a StatusReport");
    assert_eq!(typed.ingest.records, 3);
    assert_eq!(typed.ingest.rejected, 1);
    assert_eq!(typed.ingest.responses.get(&200), Some(&1));
    assert_eq!(typed.rejects.values().map(|r| r.count).sum::<u64>(), 1);
    // Nothing of the status is lost or added by the typed form.
    assert_eq!(serde_json::to_value(&typed).unwrap(), status);
    let metrics = reqwest::get(format!("{}/metrics", server.admin)).await.unwrap();
    let metrics = metrics.text().await.unwrap();
    let defs = instruments();
    assert!(defs.len() >= 30, "{}", defs.len());
    for d in &defs {
        let (section, key) = d.status;
        assert!(status[section].get(key).is_some(), "{} names {section}.{key}", d.name);
        let prometheus = d.name.replace('.', "_");
        assert!(metrics.contains(&prometheus), "{prometheus} is not on /metrics");
    }
    assert_eq!(status["ingest"]["records"], typed.ingest.records);
    let (exit, _, _) = server.stop();
    assert!(exit.success());
}

/// A client that trickles its headers in (slowloris: a header line every 200 ms) is cut off
/// after the header read timeout, and one whose body stalls is answered 408 and counted.
#[tokio::test(flavor = "multi_thread")]
async fn slow_headers_and_bodies_are_cut_off() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let env = [
        ("VPCFLOWD_INGEST__HEADER_READ_TIMEOUT", "1s"),
        ("VPCFLOWD_INGEST__BODY_READ_TIMEOUT", "1s"),
    ];
    let server = Server::start(&["--access-key", KEY], &env);
    let addr = server.ingest.trim_start_matches("http://").trim_end_matches('/').to_string();

    let started = std::time::Instant::now();
    let mut slow = tokio::net::TcpStream::connect(&addr).await.unwrap();
    slow.write_all(b"POST / HTTP/1.1\r\nHost: x\r\n").await.unwrap();
    let mut buf = [0u8; 512];
    let closed = loop {
        // The attack itself: one more header line now and then, never the end of the headers.
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        if slow.write_all(b"X-Slow: 1\r\n").await.is_err() {
            break true;
        }
        match tokio::time::timeout(std::time::Duration::from_millis(1), slow.read(&mut buf)).await {
            Ok(Ok(0) | Err(_)) => break true,
            _ if started.elapsed() > std::time::Duration::from_secs(20) => break false,
            _ => {}
        }
    };
    assert!(closed, "the slow connection stayed open for 20 s");
    assert!(started.elapsed() < std::time::Duration::from_secs(10), "{:?}", started.elapsed());
    server.wait_for("the cut to be counted", |s| s["ingest"]["header_timeouts"] == 1).await;

    let mut stalled = tokio::net::TcpStream::connect(&addr).await.unwrap();
    let head = format!(
        "POST / HTTP/1.1\r\nHost: x\r\nX-Amz-Firehose-Protocol-Version: 1.0\r\n\
         X-Amz-Firehose-Request-Id: stalled\r\nX-Amz-Firehose-Access-Key: {KEY}\r\n\
         Content-Type: application/json\r\nContent-Length: 1000\r\n\r\n{{\"requestId\""
    );
    stalled.write_all(head.as_bytes()).await.unwrap();
    let mut response = Vec::new();
    let _ = stalled.read_to_end(&mut response).await;
    let text = String::from_utf8_lossy(&response);
    assert!(text.starts_with("HTTP/1.1 408"), "{text}");
    let status = server.status().await;
    assert_eq!(status["ingest"]["slow_bodies"], 1);
    assert_eq!(status["ingest"]["header_timeouts"], 1, "a stalled body is not a header timeout");
    // A client that hangs up inside its headers is no timeout either.
    let mut quitter = tokio::net::TcpStream::connect(&addr).await.unwrap();
    quitter.write_all(b"POST / HTTP/1.1\r\nHost: x\r\n").await.unwrap();
    drop(quitter);
    let fh = Firehose::new(&server.ingest, Some(KEY));
    assert_eq!(fh.send("after", &[]).await.0, 200);
    drop(fh);
    // A connection leaves `connections_open` only after its close is counted, so once none is
    // open the quitter's hang-up and the client's idle close have both been seen.
    drop((slow, stalled));
    let status = server
        .wait_for("every connection to close", |s| s["ingest"]["connections_open"] == 0)
        .await;
    assert_eq!(status["ingest"]["header_timeouts"], 1, "a hang-up is no timeout: {status:#}");
}

/// Past `ingest.max_connections` open connections a new one is closed at once and counted; one
/// closing makes room again.
#[tokio::test(flavor = "multi_thread")]
async fn connections_past_the_limit_are_refused_and_counted() {
    use tokio::io::AsyncReadExt;
    let env = [("VPCFLOWD_INGEST__MAX_CONNECTIONS", "2")];
    let server = Server::start(&["--access-key", KEY], &env);
    let addr = server.ingest.trim_start_matches("http://").trim_end_matches('/').to_string();
    let refused = |s: &Value| s["ingest"]["connections_refused"].as_u64().unwrap_or(0);
    // Two of three idle connections hold the permits (which two depends on the order the
    // server's tasks run in); the third is closed without a byte.
    let mut conns = Vec::new();
    for _ in 0..3 {
        conns.push(tokio::net::TcpStream::connect(&addr).await.unwrap());
    }
    let mut reads = tokio::task::JoinSet::new();
    for (i, mut c) in conns.into_iter().enumerate() {
        reads.spawn(async move {
            let mut buf = [0u8; 16];
            (i, c.read(&mut buf).await.map(|n| n == 0).unwrap_or(true), c)
        });
    }
    let first = tokio::time::timeout(std::time::Duration::from_secs(10), reads.join_next()).await;
    let (closed, was_closed, _) = first.expect("one connection is closed").unwrap().unwrap();
    assert!(was_closed, "connection {closed} got bytes instead of being closed");
    server.wait_for("the refusal to be counted", |s| refused(s) >= 1).await;
    let status = server.status().await;
    assert_eq!(refused(&status), 1);
    assert_eq!(status["ingest"]["connections_open"], 2, "the refused one never counts as open");
    // One idle connection goes.
    reads.abort_all();
    while reads.join_next().await.is_some() {}
    // Once the server has seen the idle connection go, a delivery gets through again.
    let fh = Firehose::new(&server.ingest, Some(KEY));
    let line =
        "2 123456789012 eni-0a 10.0.0.1 10.0.0.2 1 2 6 1 100 1700000000 1700000060 ACCEPT OK";
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let body = firehose_body("after-room", &wrapped(&[line.to_string()]));
        let sent = reqwest::Client::new()
            .post(fh.url())
            .header("X-Amz-Firehose-Protocol-Version", "1.0")
            .header("X-Amz-Firehose-Request-Id", "after-room")
            .header("X-Amz-Firehose-Access-Key", KEY)
            .header("Content-Type", "application/json")
            .body(body)
            .send()
            .await;
        if sent.is_ok_and(|r| r.status() == 200) {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "no room after a connection closed");
    }
}
