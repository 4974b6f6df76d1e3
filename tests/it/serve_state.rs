//! `vpcflowd serve` across restarts: state written at shutdown and periodically, restored at
//! start; kill -9 after a checkpoint; corrupt, unknown-version and incompatible state files.

use crate::common::serve::{Firehose, Server, total, wrapped};

const KEY: &str = "k";

fn state_dir(name: &str) -> std::path::PathBuf {
    let d = std::env::temp_dir().join(format!("vpcflowd-state-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

const T0: u64 = 1_700_000_040;

/// One record of `bytes` for interface `iface` at time `t`.
fn line(iface: u32, t: u64, bytes: u64) -> String {
    format!(
        "2 123456789012 eni-{iface:017x} 10.0.0.{} 172.16.0.1 40000 443 6 1 {bytes} {t} {} ACCEPT OK",
        iface % 200,
        t + 30
    )
}

fn args<'a>(dir: &'a str, extra: &[&'a str]) -> Vec<&'a str> {
    let mut a = vec![
        "--access-key",
        KEY,
        "--state-dir",
        dir,
        "--window",
        "2m",
        "--slide",
        "1m",
        "--lateness",
        "5m",
    ];
    a.extend_from_slice(extra);
    a
}

#[tokio::test(flavor = "multi_thread")]
async fn a_restart_continues_the_open_windows_and_remembers_request_ids() {
    let dir = state_dir("restart");
    let d = dir.to_str().unwrap();
    let first: Vec<String> = (0..50).map(|i| line(i % 5, T0 + (i as u64) % 90, 100)).collect();

    let server = Server::start(&args(d, &[]), &[]);
    let fh = Firehose::new(&server.ingest, Some(KEY));
    assert_eq!(fh.send("before-restart", &wrapped(&first)).await.0, 200);
    let (exit, printed, _) = server.stop();
    assert!(exit.success());
    assert!(printed.is_empty(), "with a state dir, shutdown keeps windows open: {printed:?}");
    assert!(dir.join("vpcflowd.state").exists());

    let server = Server::start(&args(d, &[]), &[]);
    let fh = Firehose::new(&server.ingest, Some(KEY));
    // Firehose retrying the first request after the restart: applied already.
    assert_eq!(fh.send("before-restart", &wrapped(&first)).await.0, 200);
    let status = server.status().await;
    assert_eq!(status["ingest"]["dedup_hits"], 1);
    // The counts continue from the state file.
    assert_eq!(
        (status["ingest"]["records"].as_u64(), status["engine"]["records"].as_u64()),
        (Some(50), Some(50))
    );
    let second: Vec<String> = (0..30).map(|i| line(i % 3, T0 + 30 + (i as u64) % 60, 10)).collect();
    assert_eq!(fh.send("after-restart", &wrapped(&second)).await.0, 200);
    // Far enough ahead to close every window holding the records above.
    assert_eq!(fh.send("closer", &wrapped(&[line(9, T0 + 7200, 1)])).await.0, 200);
    // Windows close in order: once the newest holding those records has, all have. They all
    // start in T0's minute (T0 + 0..=59; T0 is a minute boundary), so the newest window holding
    // them starts at T0. (This used to wait for `windows_closed >= 4`, which never came: only
    // two windows hold them, and it gave up after 5 s.)
    server.wait_for("the windows to close", |s| s["latest_window"].as_u64() >= Some(T0)).await;
    let (exit, printed, _) = server.stop();
    assert!(exit.success());
    // Windows of one minute's slide over two panes: every record is in two windows.
    let early: Vec<_> =
        printed.iter().filter(|s| s["window_start"].as_u64() < Some(T0 + 3600)).cloned().collect();
    assert_eq!(total(&early, "bytes"), 2 * (50 * 100 + 30 * 10));
    assert_eq!(total(&early, "flows"), 2 * 80);
    std::fs::remove_dir_all(dir).unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn kill_9_after_a_checkpoint_loses_nothing_it_holds() {
    let dir = state_dir("kill9");
    let d = dir.to_str().unwrap();
    let server = Server::start(&args(d, &["--checkpoint-interval", "200ms"]), &[]);
    let fh = Firehose::new(&server.ingest, Some(KEY));
    let records: Vec<String> = (0..40).map(|i| line(i % 4, T0 + (i as u64) % 50, 7)).collect();
    assert_eq!(fh.send("r1", &wrapped(&records)).await.0, 200);
    // The next checkpoint after the acknowledgement holds r1.
    let checkpoints = |s: &serde_json::Value| s["state"]["checkpoints"].as_u64().unwrap();
    let before = checkpoints(&server.status().await);
    server.wait_for("a checkpoint after r1", |s| checkpoints(s) > before).await;
    let pid = server.pid();
    assert!(
        std::process::Command::new("kill")
            .args(["-KILL", &pid.to_string()])
            .status()
            .unwrap()
            .success()
    );
    let (exit, _, _) = server.wait();
    assert!(!exit.success());

    let server = Server::start(&args(d, &[]), &[]);
    let fh = Firehose::new(&server.ingest, Some(KEY));
    assert_eq!(fh.send("r1", &wrapped(&records)).await.0, 200, "the retry is recognised");
    assert_eq!(server.status().await["ingest"]["dedup_hits"], 1);
    assert_eq!(fh.send("closer", &wrapped(&[line(9, T0 + 7200, 1)])).await.0, 200);
    // Closing at shutdown is not done with a state dir: wait for the windows to close now
    // (the newest holding the records starts at T0, a minute boundary).
    server.wait_for("the windows to close", |s| s["latest_window"].as_u64() >= Some(T0)).await;
    let (_, printed, _) = server.stop();
    let early: Vec<_> =
        printed.iter().filter(|s| s["window_start"].as_u64() < Some(T0 + 3600)).cloned().collect();
    assert_eq!(total(&early, "bytes"), 2 * 40 * 7);
    std::fs::remove_dir_all(dir).unwrap();
}

fn start_fails(args: &[&str]) -> String {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_vpcflowd"))
        .args(["serve", "--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0"])
        .args(args)
        .output()
        .unwrap();
    assert!(!out.status.success(), "serve must refuse to start");
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_state_files_stop_the_start_unless_discarded() {
    let dir = state_dir("bad");
    let d = dir.to_str().unwrap();
    let file = dir.join("vpcflowd.state");

    std::fs::write(&file, b"definitely not a state file").unwrap();
    let err = start_fails(&["--state-dir", d]);
    assert!(
        err.contains("not a vpcflowd state file") && err.contains("--discard-bad-state"),
        "{err}"
    );

    // A real file from a run, then damaged in three ways.
    let server = Server::start(&args(d, &["--discard-bad-state"]), &[]);
    assert!(
        dir.read_dir().unwrap().any(|e| e
            .unwrap()
            .file_name()
            .to_string_lossy()
            .starts_with("vpcflowd.state.bad-"))
    );
    let fh = Firehose::new(&server.ingest, Some(KEY));
    assert_eq!(fh.send("x", &wrapped(&[line(1, T0, 5)])).await.0, 200);
    assert!(server.stop().0.success());
    let good = std::fs::read(&file).unwrap();

    let mut flipped = good.clone();
    let last = flipped.len() - 1;
    flipped[last] ^= 0xff;
    std::fs::write(&file, &flipped).unwrap();
    let err = start_fails(&["--state-dir", d]);
    assert!(err.contains("corrupt state file: checksum mismatch"), "{err}");

    let mut future = good.clone();
    future[16] = 9;
    std::fs::write(&file, &future).unwrap();
    let err = start_fails(&["--state-dir", d]);
    assert!(err.contains("state file version 9 is not supported"), "{err}");

    std::fs::write(&file, &good).unwrap();
    let err = start_fails(&["--state-dir", d, "--window", "3m"]);
    assert!(err.contains("written with window 120s"), "{err}");

    // The good file still restores.
    let server = Server::start(&args(d, &[]), &[]);
    assert!(server.stop().0.success());
    std::fs::remove_dir_all(dir).unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn when_the_final_state_cannot_be_written_every_window_closes_instead() {
    let dir = state_dir("unwritable");
    let d = dir.to_str().unwrap();
    let server = Server::start(&args(d, &[]), &[]);
    let fh = Firehose::new(&server.ingest, Some(KEY));
    let records: Vec<String> = (0..25).map(|i| line(i % 5, T0 + (i as u64) % 50, 3)).collect();
    assert_eq!(fh.send("r", &wrapped(&records)).await.0, 200);
    // A directory where the temporary state file must go: the write fails, even for root.
    std::fs::create_dir_all(dir.join("vpcflowd.state.tmp")).unwrap();
    let (exit, printed, stderr) = server.stop();
    assert!(!exit.success(), "a failed final checkpoint is an error exit");
    assert!(stderr.iter().any(|l| l.contains("every window was closed instead")), "{stderr:?}");
    assert_eq!(total(&printed, "bytes"), 2 * 25 * 3, "nothing acknowledged is lost");
    std::fs::remove_dir_all(dir).unwrap();
}

/// Kills `server` with SIGKILL and waits for it.
fn kill_9(server: Server) {
    let pid = server.pid().to_string();
    let killed = std::process::Command::new("kill").args(["-KILL", &pid]).status().unwrap();
    assert!(killed.success());
    let (exit, _, _) = server.wait();
    assert!(!exit.success());
}

/// Firehose never resends a request answered 200. Requests are sent four at a time with no
/// checkpoint in sight, `serve` is killed mid-load, and, as Firehose would, only the requests
/// without a 200 are sent again after the restart: every request's records must be counted
/// exactly once, whether the write-ahead log or the retry brought them in.
#[tokio::test(flavor = "multi_thread")]
async fn kill_9_mid_load_loses_no_acknowledged_request_and_counts_none_twice() {
    kill_9_mid_load("kill9-wal", "1h", true).await;
}

/// The same with a checkpoint every 50 ms, so that the kill often lands while a state file is
/// written or the next log begins: what a state file holds and what its log holds must add up
/// to every request once.
#[tokio::test(flavor = "multi_thread")]
async fn kill_9_amid_checkpoints_loses_no_acknowledged_request_and_counts_none_twice() {
    kill_9_mid_load("kill9-checkpoints", "50ms", false).await;
}

/// Sends 120 requests four at a time with checkpoints every `interval`, kills `serve` after 40
/// acknowledgements, restarts it and resends what was not acknowledged; `only_log`: no
/// checkpoint can have run, so the log alone must hold every acknowledged request.
async fn kill_9_mid_load(name: &str, interval: &str, only_log: bool) {
    let dir = state_dir(name);
    let d = dir.to_str().unwrap();
    let requests: Vec<(String, Vec<String>)> = (0..120u64)
        .map(|r| {
            let lines = (0..25).map(|i| line((r % 7) as u32, T0 + (r + i) % 60, 100 + r)).collect();
            (format!("req-{r}"), lines)
        })
        .collect();
    let expected_bytes: u64 =
        requests.iter().enumerate().map(|(r, (_, l))| l.len() as u64 * (100 + r as u64)).sum();

    let server = Server::start(&args(d, &["--checkpoint-interval", interval]), &[]);
    if !only_log {
        // The first state file is written on the interval, traffic or not: wait for it, so that
        // the kill below comes amid checkpoints however fast the first acks are.
        let first = |s: &serde_json::Value| s["state"]["checkpoints"].as_u64() >= Some(1);
        server.wait_for("the first checkpoint", first).await;
    }
    let fh = std::sync::Arc::new(Firehose::new(&server.ingest, Some(KEY)));
    let acked = std::sync::Arc::new(std::sync::Mutex::new(std::collections::BTreeSet::new()));
    let (enough, got_enough) = tokio::sync::oneshot::channel::<()>();
    let enough = std::sync::Arc::new(std::sync::Mutex::new(Some(enough)));
    let mut senders = Vec::new();
    for worker in 0..4usize {
        let (fh, acked, enough) = (fh.clone(), acked.clone(), enough.clone());
        let mine: Vec<(String, Vec<String>)> =
            requests.iter().skip(worker).step_by(4).cloned().collect();
        senders.push(tokio::spawn(async move {
            for (id, lines) in mine {
                let Ok((status, _)) = tokio::time::timeout(
                    std::time::Duration::from_secs(5),
                    fh.send(&id, &wrapped(&lines)),
                )
                .await
                else {
                    return;
                };
                if status != 200 {
                    return;
                }
                let mut a = acked.lock().unwrap();
                a.insert(id);
                if a.len() >= 40
                    && let Some(tx) = enough.lock().unwrap().take()
                {
                    let _ = tx.send(());
                }
            }
        }));
    }
    got_enough.await.unwrap();
    kill_9(server);
    for s in senders {
        let _ = s.await;
    }
    let acked = acked.lock().unwrap().clone();
    assert!(acked.len() >= 40 && acked.len() < requests.len(), "{} acknowledged", acked.len());
    // With checkpoints running, the restart continues from a state file and its log.
    assert_eq!(dir.join("vpcflowd.state").exists(), !only_log);

    let server = Server::start(&args(d, &[]), &[]);
    let replayed = server.status().await["state"]["wal_replayed_requests"].as_u64().unwrap();
    if only_log {
        let acked = acked.len() as u64;
        assert!(replayed >= acked, "{replayed} replayed, {acked} acknowledged");
    }
    let fh = Firehose::new(&server.ingest, Some(KEY));
    for (id, lines) in requests.iter().filter(|(id, _)| !acked.contains(id)) {
        assert_eq!(fh.send(id, &wrapped(lines)).await.0, 200, "{id}");
    }
    // An acknowledged request sent again (a duplicate delivery) is recognised, not counted.
    let (id, lines) = requests.iter().find(|(id, _)| acked.contains(id)).unwrap();
    assert_eq!(fh.send(id, &wrapped(lines)).await.0, 200);
    assert!(server.status().await["ingest"]["dedup_hits"].as_u64() >= Some(1));
    assert_eq!(fh.send("closer", &wrapped(&[line(9, T0 + 7200, 1)])).await.0, 200);
    // The status counts one run: what the log brought back and what came after, once each.
    let status = server.status().await;
    assert_eq!(status["ingest"]["records"], 25 * requests.len() as u64 + 1, "{status}");
    assert_eq!(status["engine"]["records"], 25 * requests.len() as u64 + 1, "{status}");
    server.wait_for("the windows to close", |s| s["latest_window"].as_u64() >= Some(T0)).await;
    let (_, printed, _) = server.stop();
    let early: Vec<_> =
        printed.iter().filter(|s| s["window_start"].as_u64() < Some(T0 + 3600)).cloned().collect();
    // Each record lies in two windows (2-minute windows sliding by a minute).
    assert_eq!(total(&early, "bytes"), 2 * expected_bytes);
    assert_eq!(total(&early, "flows"), 2 * 25 * requests.len() as u64);
    std::fs::remove_dir_all(dir).unwrap();
}

/// `eni`'s snapshots as the API lists them.
async fn listed(server: &Server, eni: u32) -> serde_json::Value {
    let url = format!("{}/api/v1/interfaces/eni-{eni:017x}/snapshots", server.admin);
    reqwest::get(url).await.unwrap().json().await.unwrap()
}

/// The API's closed windows survive a SIGTERM restart and a kill -9 restart: those closed
/// before the last state file come back from the history journal, those closed after it are
/// closed again by replaying the write-ahead log, and none is listed twice.
#[tokio::test(flavor = "multi_thread")]
async fn the_apis_windows_survive_a_restart_and_a_kill_9() {
    let dir = state_dir("history");
    let d = dir.to_str().unwrap();
    let fast = args(d, &["--checkpoint-interval", "200ms"]);
    let server = Server::start(&fast, &[]);
    let fh = Firehose::new(&server.ingest, Some(KEY));
    let records: Vec<String> = (0..40).map(|i| line(i % 4, T0 + (i as u64) % 50, 7)).collect();
    assert_eq!(fh.send("r1", &wrapped(&records)).await.0, 200);
    assert_eq!(fh.send("c1", &wrapped(&[line(9, T0 + 600, 1)])).await.0, 200);
    server.wait_for("the windows to close", |s| s["latest_window"].as_u64() >= Some(T0)).await;
    let first = listed(&server, 1).await;
    assert_eq!(first.as_array().unwrap().len(), 2, "{first:#}");
    // A checkpoint after the close: those windows are in the history.
    let checkpoints = |s: &serde_json::Value| s["state"]["checkpoints"].as_u64().unwrap();
    let before = checkpoints(&server.status().await);
    server.wait_for("a checkpoint after the close", |s| checkpoints(s) > before).await;
    assert!(server.status().await["state"]["history_batches"].as_u64() >= Some(1));

    // SIGTERM: the windows come back from the journal.
    let (exit, _, _) = server.stop();
    assert!(exit.success());
    let server = Server::start(&fast, &[]);
    assert_eq!(listed(&server, 1).await, first);
    let restored = server.status().await["state"]["history_restored"].as_u64().unwrap();
    assert!(restored >= 8, "every interface's two windows: {restored}");

    // More windows close; the process is killed before or after the next checkpoint.
    let fh = Firehose::new(&server.ingest, Some(KEY));
    let later: Vec<String> = (0..8).map(|i| line(i % 4, T0 + 600 + i as u64, 3)).collect();
    assert_eq!(fh.send("r2", &wrapped(&later)).await.0, 200);
    assert_eq!(fh.send("c2", &wrapped(&[line(9, T0 + 1200, 1)])).await.0, 200);
    server.wait_for("the next windows", |s| s["latest_window"].as_u64() >= Some(T0 + 600)).await;
    let second = listed(&server, 1).await;
    assert_eq!(second.as_array().unwrap().len(), 4, "{second:#}");
    kill_9(server);

    let server = Server::start(&fast, &[]);
    // The windows closed after the last state file come back through the log's replay.
    server
        .wait_for("the replayed windows", |s| s["latest_window"].as_u64() >= Some(T0 + 600))
        .await;
    assert_eq!(listed(&server, 1).await, second, "no window lost or listed twice");
    let findings = format!("{}/api/v1/findings", server.admin);
    let findings: serde_json::Value = reqwest::get(findings).await.unwrap().json().await.unwrap();
    assert!(findings.as_array().unwrap().is_empty(), "{findings:#}");
    let (exit, _, _) = server.stop();
    assert!(exit.success());
    std::fs::remove_dir_all(dir).unwrap();
}
