//! `[filters]` end to end: records of excluded regions, accounts and interfaces never reach a
//! window, and each is counted by reason (the predecessor's example pattern included).

use serde_json::Value;

use crate::common::{json_lines, vpcflowd};

const FORMAT: &str = "${version} ${account-id} ${interface-id} ${srcaddr} ${dstaddr} ${srcport} ${dstport} ${protocol} ${packets} ${bytes} ${start} ${end} ${action} ${log-status} ${region}";

/// One record of `interface` in `account` and `region` (`-` for none).
fn line(interface: &str, account: &str, region: &str) -> String {
    format!(
        "5 {account} {interface} 198.51.100.1 10.0.0.1 40000 443 6 1 100 1700000040 1700000050 ACCEPT OK {region}\n"
    )
}

fn records() -> String {
    [
        line("eni-0a01", "111111111111", "us-east-1"),
        line("eni-0a02", "111111111111", "us-west-2"),
        line("eni-0a03", "222222222222", "eu-west-1"),
        line("eni-0b04", "222222222222", "ap-south-1"),
        line("eni-0b05", "333333333333", "eu-central-1"),
        line("eni-0b06", "333333333333", "-"),
    ]
    .concat()
}

/// The interfaces of a replay's snapshots, and its stderr.
fn replay(flags: &[&str]) -> (Vec<String>, String) {
    let mut args = vec!["replay", "--lateness", "0s", "-f", FORMAT];
    args.extend_from_slice(flags);
    args.push("-");
    let out = vpcflowd(&args, records().as_bytes());
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let mut ids: Vec<String> = json_lines(&out.stdout)
        .iter()
        .map(|s: &Value| s["interface_id"].as_str().unwrap().to_string())
        .collect();
    ids.sort();
    ids.dedup();
    (ids, String::from_utf8_lossy(&out.stderr).into_owned())
}

#[test]
fn the_predecessors_example_excludes_east_and_west() {
    let (ids, stderr) = replay(&["--exclude-regions", "*east*,*west*"]);
    assert_eq!(ids, ["eni-0b04", "eni-0b05", "eni-0b06"], "an unknown region is kept");
    assert!(stderr.contains("filtered out before windows: 3 by region"), "{stderr}");
}

#[test]
fn includes_accounts_interfaces_and_unknown_regions_combine() {
    let (ids, _) = replay(&["--include-regions", "eu-*,ap-*"]);
    assert_eq!(ids, ["eni-0a03", "eni-0b04", "eni-0b05", "eni-0b06"]);
    let (ids, stderr) = replay(&["--exclude-accounts", "1111*", "--drop-unknown-region"]);
    assert_eq!(ids, ["eni-0a03", "eni-0b04", "eni-0b05"]);
    assert!(stderr.contains("1 by unknown_region, 2 by account"), "{stderr}");
    let (ids, stderr) = replay(&["--interfaces", "ENI-0B*", "--include-accounts", "3*"]);
    assert_eq!(ids, ["eni-0b05", "eni-0b06"], "globs ignore ASCII case");
    assert!(stderr.contains("4 by account"), "{stderr}");
    let (ids, _) = replay(&[]);
    assert_eq!(ids.len(), 6, "no filter keeps everything");
}

/// On `serve`, the counts are in the status and the filtered records in no snapshot.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_counts_what_it_filters_by_reason() {
    use crate::common::serve::{Firehose, Server, wrapped};
    let server = Server::start(
        &[
            "--lateness",
            "0s",
            "-f",
            FORMAT,
            "--exclude-regions",
            "*east*,*west*",
            "--interfaces",
            "eni-0a*,eni-0b04",
        ],
        &[],
    );
    let lines: Vec<String> = records().lines().map(str::to_string).collect();
    let (status, _) = Firehose::new(&server.ingest, None).send("r1", &wrapped(&lines)).await;
    assert_eq!(status, 200);
    // The record without a region takes the delivery's (the Firehose common attribute
    // `region`, us-east-1), so it is dropped by region too.
    let status = server
        .wait_for("the filtered records", |s| {
            s["ingest"]["filtered_region"].as_u64() == Some(4)
                && s["ingest"]["filtered_interface"].as_u64() == Some(1)
        })
        .await;
    assert_eq!(status["ingest"]["filtered_account"], 0);
    let (_, snapshots, _) = server.stop();
    let mut ids: Vec<&str> =
        snapshots.iter().map(|s| s["interface_id"].as_str().unwrap()).collect();
    ids.dedup();
    assert_eq!(ids, ["eni-0b04"], "one interface in every window over its record");
}

/// The counts of filtered records go on across a restart (they are in the state file).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn filtered_counts_survive_a_restart() {
    use crate::common::serve::{Firehose, Server, wrapped};
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().to_str().unwrap();
    let args =
        ["--lateness", "0s", "-f", FORMAT, "--exclude-accounts", "1111*", "--state-dir", state];
    let server = Server::start(&args, &[]);
    let lines: Vec<String> = records().lines().map(str::to_string).collect();
    let (status, _) = Firehose::new(&server.ingest, None).send("r1", &wrapped(&lines)).await;
    assert_eq!(status, 200);
    server.wait_for("two by account", |s| s["ingest"]["filtered_account"] == 2).await;
    let (exit, _, _) = server.stop();
    assert!(exit.success());
    let server = Server::start(&args, &[]);
    assert_eq!(server.status().await["ingest"]["filtered_account"], 2);
    server.stop();
}
