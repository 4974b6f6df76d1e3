//! The harness against a live vpcflowd (its `serve` run in-process on free loopback ports):
//! `--verify` passes on what it sent in every scenario, packaging and target mode, and a
//! deliberately wrong expectation fails.

#[path = "../../tests/it/common/tools.rs"]
mod tools;

#[path = "common/locals.rs"]
mod locals;

use locals::local_addresses_file;

use std::process::{Command, Output};

use serde_json::Value;
use vpcflowd::serve::config::ServeConfig;
use vpcflowd::serve::{Bound, RunningServe};

/// Windows short enough that 20,000 records at 200 records per second of event time span
/// several of them, on the server and in the harness alike. The lateness covers the scenarios'
/// disorder (half of it) plus the event time in flight (4 requests × 500 records = 10 s).
const WINDOW: [&str; 6] = ["--window", "30s", "--slide", "10s", "--lateness", "30s"];

/// The formats of the mixed-formats scenario (the harness prints them for the operator).
const MIXED_FORMATS: [&str; 4] = [
    "${version} ${account-id} ${interface-id} ${srcaddr} ${dstaddr} ${srcport} ${dstport} ${protocol} ${packets} ${bytes} ${start} ${end} ${action} ${log-status}",
    "${version} ${vpc-id} ${subnet-id} ${instance-id} ${interface-id} ${account-id} ${type} ${srcaddr} ${dstaddr} ${srcport} ${dstport} ${pkt-srcaddr} ${pkt-dstaddr} ${protocol} ${bytes} ${packets} ${start} ${end} ${action} ${tcp-flags} ${log-status}",
    "${version} ${account-id} ${interface-id} ${srcaddr} ${dstaddr} ${srcport} ${dstport} ${protocol} ${packets} ${bytes} ${start} ${end} ${action} ${log-status} ${vpc-id} ${subnet-id} ${instance-id} ${tcp-flags} ${type} ${pkt-srcaddr} ${pkt-dstaddr} ${region} ${az-id} ${sublocation-type} ${sublocation-id} ${pkt-src-aws-service} ${pkt-dst-aws-service} ${flow-direction} ${traffic-path}",
    "${interface-id} ${start} ${end} ${srcaddr} ${srcport} ${dstaddr} ${dstport} ${protocol} ${bytes} ${packets} ${action} ${log-status}",
];

/// Starts `serve` in this process on free ports, with caps above the test traffic and the
/// short windows; `tune` adjusts the rest.
async fn start_server(tune: impl FnOnce(&mut ServeConfig)) -> RunningServe {
    let mut config = ServeConfig::default();
    config.ingest.listen = "127.0.0.1:0".parse().unwrap();
    config.admin.listen = "127.0.0.1:0".parse().unwrap();
    config.ingest.access_keys = vec!["k".into()];
    config.window.window = std::time::Duration::from_secs(30);
    config.window.slide = std::time::Duration::from_secs(10);
    config.window.lateness = std::time::Duration::from_secs(30);
    config.window.max_flows = 1_000_000;
    config.window.max_sources = 1_000_000;
    config.window.local_addresses_file = Some(local_addresses_file().into());
    tune(&mut config);
    vpcflowd::serve::spawn(config).await.expect("serve started")
}

/// Runs the harness (off the async runtime) with the short windows and a small paced load.
async fn harness(args: Vec<String>) -> Output {
    tokio::task::spawn_blocking(move || {
        Command::new(env!("CARGO_BIN_EXE_vpcflowd-loadtest"))
            .args(&args)
            .args(WINDOW)
            .args([
                "--records",
                "20000",
                "--rate",
                "40000",
                "--event-rate",
                "200",
                "--concurrency",
                "4",
            ])
            .args(["--max-flows", "1000000", "--max-sources", "1000000", "--verify", "--json"])
            .args(["--local-addresses", local_addresses_file()])
            .envs(tools::AWS_ENV)
            .output()
            .expect("run the harness")
    })
    .await
    .unwrap()
}

fn http_target(bound: Bound, extra: &[&str]) -> Vec<String> {
    let mut a: Vec<String> = ["firehose", "--access-key", "k", "--gzip"].map(String::from).to_vec();
    a.extend(["--url".into(), format!("http://{}/", bound.ingest.unwrap())]);
    a.extend(["--admin".into(), format!("http://{}", bound.admin)]);
    a.extend(extra.iter().map(|s| s.to_string()));
    a
}

/// The report, after checking the run passed with every record accepted and verified.
fn passed(out: &Output, records: u64) -> Value {
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["records_accepted"], records, "{report:#}");
    assert_eq!(report["requests_never_accepted"], 0);
    assert!(report["verified_snapshots"].as_u64().unwrap() > 10, "{report:#}");
    report
}

async fn status(bound: Bound) -> Value {
    let url = format!("http://{}/api/v1/status", bound.admin);
    reqwest::get(url).await.unwrap().json().await.unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn verify_passes_on_what_was_sent_and_fails_on_a_wrong_expectation() {
    let server = start_server(|_| {}).await;
    let out = harness(http_target(server.bound, &[])).await;
    let report = passed(&out, 20_000);
    assert!(report["ack_latency_ms"]["p99"].as_f64().unwrap() > 0.0);
    assert!(report["responses"]["200"].as_u64().unwrap() >= 40);
    // The harness's own CPU while sending (read in 10 ms ticks, so possibly 0 for so small a
    // load), within what the run's wall time allows on a few cores.
    let harness_cpu = report["harness_cpu_seconds"].as_f64().unwrap();
    let elapsed = report["elapsed_secs"].as_f64().unwrap();
    assert!((0.0..elapsed * 4.0).contains(&harness_cpu), "{report:#}");
    // The same seeded traffic again: the server's watermark is past it, so every record is
    // late. The snapshots it serves are still the first run's (equal to the expectation), so
    // only the late count can tell; verification must fail, not pass on old results.
    let out = harness(http_target(server.bound, &[])).await;
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("the server counted 20000 late records")
            && stderr.contains("expectation 0"),
        "{stderr}"
    );
    server.stop().await.unwrap();

    // A fresh server: the same traffic, one byte more expected on one record.
    let server = start_server(|_| {}).await;
    let out = harness(http_target(server.bound, &["--wrong-expectation"])).await;
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("snapshots differ") && stderr.contains("at /bytes: expected"),
        "{stderr}"
    );
    server.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn scans_and_storms_verify_in_cloudwatch_payloads() {
    for scenario in ["port-scan", "source-storm"] {
        let server = start_server(|_| {}).await;
        let out = harness(http_target(
            server.bound,
            &["--scenario", scenario, "--package", "cloudwatch", "--events-per-payload", "50"],
        ))
        .await;
        passed(&out, 20_000);
        // The scan lands on the busiest interface as one source (port scan) or thousands.
        let latest = reqwest::get(format!(
            "http://{}/api/v1/interfaces/eni-00abc000000000000/snapshots?limit=1000",
            server.bound.admin
        ))
        .await
        .unwrap()
        .json::<Vec<Value>>()
        .await
        .unwrap();
        let most_sources = latest
            .iter()
            .map(|s| s["other_sources"]["count"].as_u64().unwrap() + 15)
            .max()
            .unwrap();
        let listed: Vec<&str> = latest
            .iter()
            .flat_map(|s| s["sources"].as_array().unwrap())
            .filter_map(|s| s["address"].as_str())
            .collect();
        match scenario {
            "port-scan" => assert!(listed.contains(&"198.51.100.7"), "the scanner is listed"),
            _ => assert!(most_sources > 1000, "a storm of sources: {most_sources}"),
        }
        server.stop().await.unwrap();
    }
}

/// The `sweep`, `denied-outbound`, `nacl-asymmetry` and `spike` scenarios raise their findings
/// on the server, and verify.
#[tokio::test(flavor = "multi_thread")]
async fn finding_scenarios_raise_their_findings_and_verify() {
    for (scenario, kind, subject) in [
        ("sweep", "sweep", "198.51.100.99"),
        ("denied-outbound", "denied_outbound", "203.0.113.66:4444/6"),
        ("nacl-asymmetry", "nacl_asymmetry", "198.51.100.44"),
        ("spike", "spike", "198.51.100.55"),
    ] {
        let server = start_server(|_| {}).await;
        let out = harness(http_target(server.bound, &["--scenario", scenario])).await;
        passed(&out, 20_000);
        let url = format!("http://{}/api/v1/findings?kind={kind}", server.bound.admin);
        let findings = reqwest::get(url).await.unwrap().json::<Vec<Value>>().await.unwrap();
        assert!(
            findings.iter().any(|f| f["subject"].as_str().unwrap().contains(subject)),
            "{scenario}: a {kind} finding about {subject}: {findings:?}"
        );
        server.stop().await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn late_deliveries_are_counted_and_corrected_identically() {
    let server = start_server(|c| c.window.late = vpcflowd::window::LatePolicy::Update).await;
    let out = harness(http_target(server.bound, &["--scenario", "late", "--late", "update"])).await;
    passed(&out, 20_000);
    let engine = &status(server.bound).await["engine"];
    // 2 % of the records were delivered after their windows had closed.
    assert_eq!(engine["late_records"], 400, "{engine:#}");
    server.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn mixed_formats_verify_when_the_server_reads_them() {
    let server =
        start_server(|c| c.formats = MIXED_FORMATS.iter().map(|f| f.to_string()).collect()).await;
    let out = harness(http_target(server.bound, &["--scenario", "mixed-formats"])).await;
    passed(&out, 20_000);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("the server must read these formats: --format '${version}"),
        "{stderr}"
    );
    server.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn replayed_files_are_shifted_to_now_and_verify() {
    let dir = std::env::temp_dir().join(format!("vpcflowd-harness-replay-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    // Two S3 objects with their header lines, one gzip'd, from September 2020.
    let lines = |from: u64| -> String {
        let mut s = String::from(
            "version account-id interface-id srcaddr dstaddr srcport dstport protocol packets bytes start end action log-status\n",
        );
        for i in 0..3000u64 {
            // 200 records a second: 4 requests of 500 in flight hold 10 s, inside the lateness.
            let t = 1_600_000_000 + from + i / 200;
            s += &format!(
                "2 123456789012 eni-{:017x} 10.0.{}.{} 172.16.0.1 40000 443 6 3 {} {t} {} ACCEPT OK\n",
                i % 7,
                i % 5,
                i % 200,
                100 + i,
                t + 30
            );
        }
        s
    };
    std::fs::write(dir.join("a.log"), lines(0)).unwrap();
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    std::io::Write::write_all(&mut gz, lines(300).as_bytes()).unwrap();
    std::fs::write(dir.join("b.log.gz"), gz.finish().unwrap()).unwrap();

    let server = start_server(|_| {}).await;
    let dir_arg = dir.to_string_lossy().to_string();
    let mut args = http_target(server.bound, &["--replay", &dir_arg, "--shift-to-now"]);
    args.retain(|a| a != "--gzip");
    let out = harness(args).await;
    // 6,000 records in the files, fewer than the 20,000 asked for.
    passed(&out, 6000);
    let latest = reqwest::get(format!("http://{}/api/v1/snapshots/latest", server.bound.admin))
        .await
        .unwrap()
        .json::<Vec<Value>>()
        .await
        .unwrap();
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
    let newest = latest.iter().filter_map(|s| s["window_start"].as_u64()).max().unwrap();
    assert!(newest + 3600 > now && newest < now + 3600, "shifted to now: {newest} vs {now}");
    server.stop().await.unwrap();
    std::fs::remove_dir_all(&dir).unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn put_record_batch_through_moto_verifies() {
    let moto = tools::Moto::start();
    // moto sends no access key (and no common attributes), so this server accepts any request
    // and gives records the region the harness expects.
    let server = start_server(|c| {
        c.ingest.access_keys.clear();
        c.window.region = Some("eu-west-1".into());
    })
    .await;
    moto.http_delivery_stream("flows", &format!("http://{}/", server.bound.ingest.unwrap())).await;

    let mut args: Vec<String> =
        ["firehose-api", "--delivery-stream", "flows", "--region", "eu-west-1"]
            .map(String::from)
            .to_vec();
    args.extend(["--endpoint-url".into(), moto.endpoint.clone()]);
    args.extend(["--admin".into(), format!("http://{}", server.bound.admin)]);
    let report = passed(&harness(args).await, 20_000);
    assert_eq!(report["responses"]["ok"], 40, "{report:#}");
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
    let first = stdout.lines().next().unwrap_or_default();
    assert!(
        first.starts_with("vpcflowd demo: open http://127.0.0.1:"),
        "the page comes first: {stdout}"
    );
    assert!(first.contains("/ in a browser"), "{first}");
    assert!(stdout.contains("curl http://127.0.0.1:"), "{stdout}");
    let windows = stdout.lines().filter(|l| l.starts_with("window ")).count();
    assert!(windows >= 2, "closed windows shown: {stdout}");
    assert!(stdout.contains("eni-00abc"), "{stdout}");
    // Each row's top source is a sender to the interface, never its own address.
    let mut rows = 0;
    for row in stdout.lines().filter(|l| l.trim_start().starts_with("eni-00abc")) {
        let cells: Vec<&str> = row.split_whitespace().collect();
        let iface =
            u64::from_str_radix(&cells[0]["eni-".len()..], 16).unwrap() - 0x0abc_0000_0000_0000;
        let own: Vec<String> = vpcflowd::generate::Generator::local_addresses(iface)
            .iter()
            .map(|a| a.to_string())
            .collect();
        assert!(!own.iter().any(|a| a == cells[4]), "{row}: its own address tops its sources");
        rows += 1;
    }
    assert!(rows > 0, "{stdout}");
}

/// `--verify` across a restart: `serve` with a state directory is stopped (as SIGTERM stops
/// it) while the harness sends, and started again on the same addresses. The harness retries
/// what got no answer; the counters it waits on continue from the state file, and the
/// snapshots it compares include those closed before the restart (the history journal).
#[tokio::test(flavor = "multi_thread")]
async fn verify_passes_across_a_restart() {
    let state = tempfile::tempdir().unwrap();
    let dir = state.path().to_path_buf();
    let with_state = |c: &mut ServeConfig| {
        c.state.dir = Some(dir.clone());
        c.state.checkpoint_interval = std::time::Duration::from_millis(300);
    };
    let server = start_server(with_state).await;
    let bound = server.bound;
    let args = http_target(bound, &[]);
    let sending = tokio::task::spawn_blocking(move || {
        Command::new(env!("CARGO_BIN_EXE_vpcflowd-loadtest"))
            .args(&args)
            .args(WINDOW)
            .args(["--records", "20000", "--rate", "4000", "--event-rate", "200"])
            .args(["--concurrency", "4", "--retry-initial", "200ms"])
            .args(["--max-flows", "1000000", "--max-sources", "1000000", "--verify", "--json"])
            .args(["--local-addresses", local_addresses_file()])
            .output()
            .expect("run the harness")
    });
    // Stop it once some windows have closed and records are still coming.
    let closed = |s: &Value| s["latest_window"].as_u64().is_some();
    let mut now = status(bound).await;
    while !closed(&now) {
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        now = status(bound).await;
    }
    let taken = now["ingest"]["records"].as_u64().unwrap();
    assert!(taken < 20_000, "the run ended before the restart: {now:#}");
    server.stop().await.unwrap();
    let server = start_server(|c| {
        with_state(c);
        c.ingest.listen = bound.ingest.unwrap();
        c.admin.listen = bound.admin;
    })
    .await;
    let restarted = status(bound).await;
    assert!(restarted["state"]["history_restored"].as_u64().unwrap() > 0, "{restarted:#}");
    let out = sending.await.unwrap();
    passed(&out, 20_000);
    // The counts went on from the state file: all the records, each once, and the one record
    // the harness sends to close the last windows.
    assert_eq!(status(bound).await["ingest"]["records"], 20_001);
    server.stop().await.unwrap();
}

/// A `vpcflowd serve` process (the binary `cargo test --workspace` builds beside the harness's),
/// which the kill -9 test kills as a crash would.
struct ServeProcess {
    child: std::process::Child,
    ingest: String,
    admin: String,
}

impl ServeProcess {
    /// Starts `serve` on `ingest` and `admin` (port 0 for free ones) with the state in `dir`
    /// and the harness's short windows, and waits for the line saying where it listens.
    fn start(dir: &std::path::Path, ingest: &str, admin: &str) -> ServeProcess {
        use std::io::BufRead;
        let exe = std::path::Path::new(env!("CARGO_BIN_EXE_vpcflowd-loadtest"))
            .with_file_name("vpcflowd");
        assert!(
            exe.exists(),
            "{} is not built: `cargo test --workspace` (the README's command) builds it",
            exe.display()
        );
        let mut child = Command::new(&exe)
            .args(["serve", "--listen", ingest, "--admin-listen", admin, "--access-key", "k"])
            .args(WINDOW)
            .args(["--max-flows", "1000000", "--max-sources", "1000000"])
            .args(["--local-addresses", local_addresses_file()])
            .arg("--state-dir")
            .arg(dir)
            .args(["--checkpoint-interval", "300ms"])
            .env("RUST_LOG", "warn")
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("start vpcflowd serve");
        let mut lines = std::io::BufReader::new(child.stderr.take().unwrap()).lines();
        let mut early = Vec::new();
        let (ingest, admin) = loop {
            let Some(Ok(line)) = lines.next() else {
                panic!("serve did not start: {early:#?}");
            };
            if let Some(rest) = line.strip_prefix("vpcflowd serve: ingest on ") {
                let (ingest, admin) = rest.split_once(" admin on ").unwrap();
                break (ingest.to_string(), admin.to_string());
            }
            early.push(line);
        };
        // Drains the rest, so that a full pipe never blocks the server's logging.
        std::thread::spawn(move || lines.map_while(Result::ok).for_each(drop));
        ServeProcess { child, ingest, admin }
    }

    async fn status(&self) -> Value {
        let url = format!("http://{}/api/v1/status", self.admin);
        reqwest::get(url).await.unwrap().json().await.unwrap()
    }

    /// Polls the status until `done` holds.
    async fn wait_for(&self, done: impl Fn(&Value) -> bool) -> Value {
        let mut now = self.status().await;
        while !done(&now) {
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
            now = self.status().await;
        }
        now
    }

    /// Kills the process with SIGKILL: nothing of it runs after the signal.
    fn kill_9(mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }
}

impl Drop for ServeProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A running harness, killed if dropped before its output is read.
struct HarnessProcess(Option<std::process::Child>);

impl HarnessProcess {
    async fn output(mut self) -> Output {
        let child = self.0.take().unwrap();
        tokio::task::spawn_blocking(move || child.wait_with_output().unwrap()).await.unwrap()
    }
}

impl Drop for HarnessProcess {
    fn drop(&mut self) {
        if let Some(child) = self.0.as_mut() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// `--verify` across two kill -9 restarts: `serve` runs as a process with a state directory
/// and a checkpoint every 300 ms, and is killed mid-load once a window has closed and again
/// 5,000 records later. What it acknowledged is in its write-ahead log or a checkpoint, and what
/// it closed is in the history journal, so the harness, retrying what got no answer, verifies
/// every snapshot and every record counted once.
#[tokio::test(flavor = "multi_thread")]
async fn verify_passes_across_kill_9_restarts() {
    let state = tempfile::tempdir().unwrap();
    let mut server = ServeProcess::start(state.path(), "127.0.0.1:0", "127.0.0.1:0");
    let (ingest, admin) = (server.ingest.clone(), server.admin.clone());
    let mut args: Vec<String> =
        ["firehose", "--access-key", "k", "--gzip"].map(String::from).to_vec();
    args.extend(["--url".into(), format!("http://{ingest}/"), "--admin".into()]);
    args.push(format!("http://{admin}"));
    // A child the guard kills if the test fails first: a harness left retrying would keep the
    // runtime (and the test) from ending.
    let sending = HarnessProcess(Some(
        Command::new(env!("CARGO_BIN_EXE_vpcflowd-loadtest"))
            .args(&args)
            .args(WINDOW)
            .args(["--records", "20000", "--rate", "3000", "--event-rate", "200"])
            .args(["--concurrency", "4", "--retry-initial", "200ms"])
            .args(["--max-flows", "1000000", "--max-sources", "1000000", "--verify", "--json"])
            .args(["--local-addresses", local_addresses_file()])
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("run the harness"),
    ));
    let closed = server.wait_for(|s| s["latest_window"].as_u64().is_some()).await;
    // A window in the store reaches the restored history once a checkpoint has cut the journal
    // after it; before that, replaying the log closes it again (and restores none).
    let cut = closed["state"]["checkpoints"].as_u64().unwrap();
    let first = server.wait_for(|s| s["state"]["checkpoints"].as_u64() > Some(cut)).await;
    let at_first = first["ingest"]["records"].as_u64().unwrap();
    assert!(at_first < 15_000, "the run came too far before the first kill: {first:#}");
    server.kill_9();
    server = ServeProcess::start(state.path(), &ingest, &admin);
    let restarted = server.status().await;
    assert!(restarted["state"]["history_restored"].as_u64().unwrap() > 0, "{restarted:#}");
    let second = server.wait_for(|s| s["ingest"]["records"].as_u64() >= Some(at_first + 5_000));
    let at_second = second.await["ingest"]["records"].as_u64().unwrap();
    assert!(at_second < 20_000, "the run ended before the second kill");
    server.kill_9();
    server = ServeProcess::start(state.path(), &ingest, &admin);
    let out = sending.output().await;
    passed(&out, 20_000);
    // Every acknowledged record once, and the one record the harness sends to close the last
    // windows: none lost with the killed processes, none counted twice when retried.
    assert_eq!(server.status().await["ingest"]["records"], 20_001);
}
