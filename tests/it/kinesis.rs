//! The Kinesis source against kinesalite (started here on a free loopback port): a multi-shard
//! stream of CloudWatch envelopes, KPL aggregates and bare lines; split and merge while
//! consuming; injected throttling and iterator expiry; kill -9 and restart from the
//! checkpoint. Every test compares the real `serve`'s snapshots with `vpcflowd replay` over the
//! same lines (the data stays inside the lateness, so order cannot change results).

use crate::common;

use crate::common::kinesis::{self as k, AWS_ENV};
use crate::common::serve::Server;
use crate::common::tools::Kinesalite;
use serde_json::Value;
use vpcflowd::decode::kpl;

const T0: u64 = 1_700_000_040;
const WINDOW: [&str; 6] = ["--window", "2m", "--slide", "1m", "--lateness", "2h"];

/// One flow-log line of interface `iface` at time `t`.
fn line(iface: u32, src: u32, t: u64, bytes: u64) -> String {
    format!(
        "2 123456789012 eni-{iface:017x} 10.0.{}.{} 172.16.0.1 40000 443 6 3 {bytes} {t} {} ACCEPT OK",
        src / 250,
        src % 250,
        t + 30
    )
}

fn eni(iface: u32) -> String {
    format!("eni-{iface:017x}")
}

/// What `vpcflowd replay` makes of `lines`, sorted.
fn expected(lines: &[String]) -> Vec<Value> {
    let mut args = vec!["replay"];
    args.extend_from_slice(&WINDOW);
    let out = common::vpcflowd(&args, (lines.join("\n") + "\n").as_bytes());
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    sorted(common::json_lines(&out.stdout))
}

fn sorted(mut v: Vec<Value>) -> Vec<Value> {
    v.sort_by_key(|s| (s["window_start"].as_u64(), s["interface_id"].as_str().map(String::from)));
    v
}

fn serve_args<'a>(endpoint: &'a str, stream: &'a str, extra: &[&'a str]) -> Vec<&'a str> {
    let mut a = vec!["--kinesis-stream", stream, "--kinesis-endpoint", endpoint];
    a.extend_from_slice(&WINDOW);
    a.extend_from_slice(extra);
    a
}

fn records(status: &Value) -> u64 {
    status["ingest"]["records"].as_u64().unwrap_or(0)
}

/// Records of three kinds: a CloudWatch envelope of 4 lines, a KPL aggregate of 3 lines, a
/// bare line; each keyed by its interface. Returns (kinesis records, all lines).
fn mixed(n: u32, t0: u64) -> (Vec<(String, Vec<u8>)>, Vec<String>) {
    let mut out = Vec::new();
    let mut lines = Vec::new();
    for i in 0..n {
        let iface = i % 11;
        let t = t0 + u64::from(i % 100);
        match i % 3 {
            0 => {
                let ls: Vec<String> =
                    (0..4).map(|j| line(iface, i * 4 + j, t, 100 + u64::from(j))).collect();
                out.push((
                    eni(iface),
                    k::cloudwatch("123456789012", &format!("{}-all", eni(iface)), &ls),
                ));
                lines.extend(ls);
            }
            1 => {
                let ls: Vec<String> =
                    (0..3).map(|j| line(iface, i * 3 + j, t, 7 * u64::from(j + 1))).collect();
                let refs: Vec<&[u8]> = ls.iter().map(|l| l.as_bytes()).collect();
                out.push((eni(iface), kpl::aggregate(&eni(iface), &refs)));
                lines.extend(ls);
            }
            _ => {
                let l = line(iface, i, t, 1500);
                out.push((eni(iface), l.clone().into_bytes()));
                lines.push(l);
            }
        }
    }
    (out, lines)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_multi_shard_stream_of_every_envelope_gives_exact_snapshots() {
    let emu = Kinesalite::start();
    let kin = k::kinesis(&emu.endpoint);
    k::create_stream(&kin, "flows", 4).await;
    let (puts, lines) = mixed(600, T0);
    k::put(&kin, "flows", &puts).await;
    // A damaged aggregate is refused with its reason, not passed on as text.
    let mut bad = kpl::aggregate("eni-x", &[b"2 1 eni-1 - - - - - - - 1 2 - NODATA"]);
    bad[6] ^= 0x40;
    k::put(&kin, "flows", &[("eni-x".into(), bad)]).await;

    // A Kinesis-only replica: no Firehose listener; logs as JSON, chosen through the
    // environment as a container would.
    let env = [AWS_ENV.as_slice(), &[("VPCFLOWD_LOG_FORMAT", "json"), ("RUST_LOG", "info")]];
    let server =
        Server::start(&serve_args(&emu.endpoint, "flows", &["--no-firehose"]), &env.concat());
    assert_eq!(server.ingest, "", "serve said its Firehose listener is off");
    let status = server.wait_for("every record", |s| records(s) == lines.len() as u64).await;
    assert_eq!(status["kinesis"]["records"], puts.len() as u64 + 1);
    assert_eq!(status["kinesis"]["kpl_user_records"], 200 * 3);
    assert_eq!(status["rejects"]["kpl_checksum"]["count"], 1);
    let shards = status["kinesis"]["shards"].as_array().unwrap();
    assert_eq!(shards.len(), 4);
    for s in shards {
        assert_eq!(s["state"], "reading", "{s}");
        assert_eq!(s["lag_ms"], 0, "{s}");
    }
    let (exit, printed, stderr) = server.stop();
    assert!(exit.success(), "{stderr:#?}");
    assert_eq!(sorted(printed), expected(&lines));
    let json = |l: &String| serde_json::from_str::<Value>(l).ok();
    let reading =
        stderr.iter().filter_map(json).filter(|e| e["fields"]["message"] == "reading shard");
    assert_eq!(reading.count(), 4, "one JSON event per shard: {stderr:#?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn split_and_merge_while_consuming_reads_parents_first_and_everything_once() {
    let emu = Kinesalite::start();
    let kin = k::kinesis(&emu.endpoint);
    k::create_stream(&kin, "reshard", 2).await;
    let server = Server::start(
        &serve_args(&emu.endpoint, "reshard", &["--log-format", "json"]),
        &[AWS_ENV.as_slice(), &[("RUST_LOG", "info")]].concat(),
    );
    let mut all = Vec::new();
    let (a, lines) = mixed(300, T0);
    k::put(&kin, "reshard", &a).await;
    all.extend(lines);
    // Split the first shard in the middle of its range while the consumers read.
    let open = k::open_shards(&kin, "reshard").await;
    let mid = (u128::MAX / 4).to_string();
    kin.split_shard()
        .stream_name("reshard")
        .shard_to_split(&open[0].0)
        .new_starting_hash_key(mid)
        .send()
        .await
        .unwrap();
    k::wait_active(&kin, "reshard").await;
    let (b, lines) = mixed(300, T0 + 200);
    k::put(&kin, "reshard", &b).await;
    all.extend(lines);
    // Merge the split's upper child with the second original shard.
    let open = k::open_shards(&kin, "reshard").await;
    assert_eq!(open.len(), 3, "{open:?}");
    let mut by_start = open.clone();
    by_start.sort_by_key(|(_, start)| start.parse::<u128>().unwrap());
    kin.merge_shards()
        .stream_name("reshard")
        .shard_to_merge(&by_start[1].0)
        .adjacent_shard_to_merge(&by_start[2].0)
        .send()
        .await
        .unwrap();
    k::wait_active(&kin, "reshard").await;
    let (c, lines) = mixed(300, T0 + 400);
    k::put(&kin, "reshard", &c).await;
    all.extend(lines);

    let status = server.wait_for("every record", |s| records(s) == all.len() as u64).await;
    let shards = status["kinesis"]["shards"].as_array().unwrap();
    assert_eq!(shards.len(), 5, "2 + 2 children + 1 merged: {shards:#?}");
    let finished = shards.iter().filter(|s| s["state"] == "finished").count();
    assert_eq!(finished, 3, "the parents were read to their end: {shards:#?}");
    let (exit, printed, stderr) = server.stop();
    assert!(exit.success(), "{stderr:#?}");
    assert_eq!(sorted(printed), expected(&all), "nothing missed, nothing twice");
    // (Without a state dir, shutdown closed every window.)

    // Parents before children: each shard's "reading" comes after its parents' "end".
    let shards = kin.list_shards().stream_name("reshard").send().await.unwrap().shards.unwrap();
    let events: Vec<Value> =
        stderr.iter().filter_map(|l| serde_json::from_str::<Value>(l).ok()).collect();
    let at = |msg: &str, shard: &str| {
        events
            .iter()
            .position(|e| {
                e["fields"]["message"] == msg
                    && e["fields"]["shard"].as_str().is_some_and(|s| s.ends_with(shard))
            })
            .unwrap_or_else(|| panic!("no {msg:?} for {shard}"))
    };
    for s in &shards {
        for parent in [&s.parent_shard_id, &s.adjacent_parent_shard_id].into_iter().flatten() {
            assert!(
                at("shard read to its end", parent) < at("reading shard", &s.shard_id),
                "{} started before its parent {parent} ended",
                s.shard_id
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn throttling_and_expired_iterators_are_retried_without_loss() {
    let emu = Kinesalite::start();
    let kin = k::kinesis(&emu.endpoint);
    k::create_stream(&kin, "faults", 2).await;
    let (puts, lines) = mixed(900, T0);
    k::put(&kin, "faults", &puts).await;
    let proxy = k::FaultProxy::start(&emu.endpoint, |n| match n {
        3..=5 => Some("ProvisionedThroughputExceededException"),
        7 | 12 => Some("ExpiredIteratorException"),
        _ => None,
    })
    .await;
    let server = Server::start(
        &serve_args(&proxy.endpoint, "faults", &["--kinesis-max-records", "100"]),
        &AWS_ENV,
    );
    let status = server.wait_for("every record", |s| records(s) == lines.len() as u64).await;
    assert_eq!(status["kinesis"]["throttled"], 3);
    assert_eq!(status["kinesis"]["expired_iterators"], 2);
    assert_eq!(status["kinesis"]["records"], puts.len() as u64, "nothing read twice");
    let (exit, printed, _) = server.stop();
    assert!(exit.success());
    assert_eq!(sorted(printed), expected(&lines));
}

#[tokio::test(flavor = "multi_thread")]
async fn kill_9_then_restart_resumes_from_the_checkpoint_with_exact_counts() {
    let emu = Kinesalite::start();
    let kin = k::kinesis(&emu.endpoint);
    k::create_stream(&kin, "crash", 3).await;
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_str().unwrap();
    let args =
        serve_args(&emu.endpoint, "crash", &["--state-dir", d, "--checkpoint-interval", "300ms"]);
    let (first, mut all) = mixed(600, T0);
    k::put(&kin, "crash", &first).await;
    let server = Server::start(&args, &AWS_ENV);
    server.wait_for("the first half", |s| records(s) == all.len() as u64).await;
    let (second, lines) = mixed(900, T0 + 50);
    all.extend(lines);
    k::put(&kin, "crash", &second).await;
    // Mid-stream: after at least one checkpoint holding some of the second half.
    server
        .wait_for("a checkpoint mid-stream", |s| {
            records(s) > all.len() as u64 - 2000 && s["state"]["checkpoints"].as_u64() > Some(1)
        })
        .await;
    let killed =
        std::process::Command::new("kill").args(["-KILL", &server.pid().to_string()]).status();
    assert!(killed.unwrap().success());
    let (exit, printed, _) = server.wait();
    assert!(!exit.success());
    assert!(printed.is_empty(), "no window had closed");

    let server = Server::start(&args, &AWS_ENV);
    let (third, lines) = mixed(300, T0 + 100);
    all.extend(lines);
    k::put(&kin, "crash", &third).await;
    close_every_window(&server, &kin, "crash").await;
    let reread = server.status().await["kinesis"]["records"].as_u64().unwrap();
    let put = (first.len() + second.len() + third.len()) as u64;
    assert!(
        reread < put - 500,
        "resumed from the checkpoint: {reread} of {put} records read again"
    );
    let (exit, printed, stderr) = server.stop();
    assert!(exit.success(), "{stderr:#?}");
    assert_eq!(
        sorted(printed),
        expected(&all),
        "restored state + re-read records = every record once"
    );
}

/// Makes `server` close every window of the test data: a line it rejects at the end of each
/// open shard (once all are rejected, everything before them is read), then a record hours
/// later, whose watermark closes every earlier window.
async fn close_every_window(server: &Server, kin: &aws_sdk_kinesis::Client, stream: &str) {
    let rejected = |s: &Value| s["rejects"]["field_count"]["count"].as_u64().unwrap_or(0);
    let before = rejected(&server.status().await);
    let open = k::open_shards(kin, stream).await;
    for (_, hash_key) in &open {
        k::put_to(kin, stream, hash_key, b"end-of-test marker".to_vec()).await;
    }
    let n = open.len() as u64;
    server.wait_for("the end markers", |s| rejected(s) == before + n).await;
    let closed = server.status().await["engine"]["windows_closed"].as_u64().unwrap();
    k::put_to(kin, stream, &open[0].1, line(999, 1, T0 + 10 * 3600, 1).into_bytes()).await;
    server
        .wait_for("the windows to close", |s| {
            s["engine"]["windows_closed"].as_u64() > Some(closed)
                && s["engine"]["open_windows"].as_u64() <= Some(2)
        })
        .await;
}

#[test]
fn kinesis_usage_errors_are_clear() {
    let out = common::vpcflowd(&["serve", "--lease-table", "t"], b"");
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("--lease-table applies to the streams given with --kinesis-stream"),
        "{err}"
    );
    let out = common::vpcflowd(&["serve", "--no-firehose"], b"");
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("ingest.enabled is false and no sources.kinesis stream"), "{err}");
    let out = common::vpcflowd(&["serve", "--kinesis-stream", "s", "--lease-table", "t"], b"");
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("needs state.dir"), "{err}");
    let out = common::vpcflowd(
        &["serve", "--kinesis-stream", "s", "--kinesis-start", "at-timestamp"],
        b"",
    );
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("sources.kinesis[0]: start = \"at_timestamp\" needs start_timestamp"),
        "{err}"
    );
}
