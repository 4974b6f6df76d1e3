//! Findings end to end through `vpcflowd replay`: for each kind, a stream that must raise it and
//! a near miss that must not. Interface eni-0aaa's own address is 10.0.9.9
//! (`tests/data/windows/local_addresses.json`), so its direction is known.

use crate::common::{json_lines, vpcflowd};
use serde_json::Value;

pub(crate) const T0: u64 = 1_700_000_040;
pub(crate) const LOCAL: &str = "10.0.9.9";

/// A default-format record of eni-0aaa in minute `minute`.
pub(crate) fn line(
    minute: u64,
    src: &str,
    dst: &str,
    ports: (u16, u16),
    bytes: u64,
    action: &str,
) -> String {
    let t = T0 + 60 * minute;
    format!(
        "2 111111111111 eni-0aaa {src} {dst} {} {} 6 1 {bytes} {t} {} {action} OK\n",
        ports.0,
        ports.1,
        t + 30
    )
}

/// Every snapshot of a replay in one-minute windows.
fn replay(log: &str) -> Vec<Value> {
    let args = [
        "replay",
        "--window",
        "1m",
        "--slide",
        "1m",
        "--lateness",
        "0s",
        "--local-addresses",
        "tests/data/windows/local_addresses.json",
        "-",
    ];
    let out = vpcflowd(&args, log.as_bytes());
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let snapshots = json_lines(&out.stdout);
    // Findings, denied outbound and asymmetric flows read back as they were written.
    crate::common::assert_reads_back(&snapshots);
    snapshots
}

/// The findings of `kind` over every window.
fn found<'a>(snapshots: &'a [Value], kind: &str) -> Vec<&'a Value> {
    snapshots
        .iter()
        .flat_map(|s| s["findings"].as_array().unwrap())
        .filter(|f| f["kind"] == kind)
        .collect()
}

#[test]
fn a_port_scan_of_100_ports_is_found_and_99_is_not() {
    let scan = |ports: u16| -> String {
        (1..=ports).map(|p| line(0, "198.51.100.66", LOCAL, (55_000, p), 40, "REJECT")).collect()
    };
    let snapshots = replay(&scan(100));
    let f = found(&snapshots, "port_scan");
    assert_eq!(f.len(), 1, "{f:?}");
    assert_eq!(f[0]["subject"], "198.51.100.66");
    assert_eq!((f[0]["value"].as_f64(), f[0]["threshold"].as_f64()), (Some(100.0), Some(100.0)));
    assert!(found(&replay(&scan(99)), "port_scan").is_empty());
}

#[test]
fn denied_outbound_to_50_hosts_is_an_outbound_scan_and_49_is_not() {
    let sweep = |hosts: u8| -> String {
        (1..=hosts)
            .map(|h| line(0, LOCAL, &format!("203.0.113.{h}"), (40_000, 445), 60, "REJECT"))
            .collect()
    };
    let snapshots = replay(&sweep(50));
    let f = found(&snapshots, "outbound_scan");
    assert_eq!(f.len(), 1);
    assert_eq!((f[0]["subject"].as_str(), f[0]["value"].as_f64()), (Some("eni-0aaa"), Some(50.0)));
    assert_eq!(snapshots[0]["denied_outbound"].as_array().unwrap().len(), 15, "the top 15");
    assert!(found(&replay(&sweep(49)), "outbound_scan").is_empty());
}

#[test]
fn ten_denied_flows_to_a_new_destination_are_found_but_not_once_it_was_denied_before() {
    let denied = |minute: u64, flows: u16| -> String {
        (0..flows)
            .map(|i| line(minute, LOCAL, "203.0.113.9", (40_000 + i, 4444), 60, "REJECT"))
            .collect()
    };
    let snapshots = replay(&denied(0, 10));
    let f = found(&snapshots, "denied_outbound");
    assert_eq!(f.len(), 1);
    assert_eq!(f[0]["subject"], "203.0.113.9:4444/6");
    let entry = &snapshots[0]["denied_outbound"][0];
    assert_eq!((entry["flows"].as_u64(), entry["new"].as_bool()), (Some(10), Some(true)));
    assert!(found(&replay(&denied(0, 9)), "denied_outbound").is_empty());
    // Denied once in minute 0 (below the threshold), then 10 times in minute 1: not new.
    let again = replay(&(denied(0, 1) + &denied(1, 10)));
    let minute_1 = again.iter().find(|s| s["window_start"] == T0 + 60).unwrap();
    assert_eq!(minute_1["denied_outbound"][0]["new"], false);
    assert!(found(&again, "denied_outbound").is_empty());
}

/// A client that is also among the sources with the most rejected flows (whose every flow is
/// read) still has its accepted request and rejected reply found.
#[test]
fn a_rejected_source_whose_accepted_request_has_a_rejected_reply_is_found() {
    let probe = line(0, "198.51.100.5", LOCAL, (51_001, 22), 60, "REJECT");
    let request = line(0, "198.51.100.5", LOCAL, (51_000, 443), 500, "ACCEPT");
    let reply = line(0, LOCAL, "198.51.100.5", (443, 51_000), 4_000, "REJECT");
    let snapshots = replay(&(probe + &request + &reply));
    assert_eq!(snapshots[0]["rejected_sources"][0]["address"], "198.51.100.5");
    let f = found(&snapshots, "nacl_asymmetry");
    assert_eq!(f.len(), 1, "{:#}", snapshots[0]["asymmetric_flows"]);
    assert_eq!(f[0]["subject"], "10.0.9.9:443 <-> 198.51.100.5:51000/6");
}

#[test]
fn an_accepted_request_with_a_rejected_reply_points_at_a_network_acl() {
    let request = line(0, "198.51.100.5", LOCAL, (51_000, 443), 500, "ACCEPT");
    let reply = |action| line(0, LOCAL, "198.51.100.5", (443, 51_000), 4_000, action);
    let snapshots = replay(&(request.clone() + &reply("REJECT")));
    let flows = snapshots[0]["asymmetric_flows"].as_array().unwrap();
    assert_eq!(flows.len(), 1);
    let a = &flows[0];
    assert_eq!(
        (a["ingress_action"].as_str(), a["egress_action"].as_str()),
        (Some("ACCEPT"), Some("REJECT"))
    );
    assert_eq!(a["likely_cause"], "nacl");
    assert_eq!((a["local_port"].as_u64(), a["remote_port"].as_u64()), (Some(443), Some(51_000)));
    let f = found(&snapshots, "nacl_asymmetry");
    assert_eq!(f.len(), 1);
    assert_eq!(f[0]["subject"], "10.0.9.9:443 <-> 198.51.100.5:51000/6");
    // The reply accepted too: symmetric, nothing to find.
    let both = replay(&(request.clone() + &reply("ACCEPT")));
    assert!(both[0]["asymmetric_flows"].as_array().unwrap().is_empty());
    // A reply both rejected and accepted (a retry after a rule change): listed, but either
    // kind of rule may be the cause, so no finding.
    let mixed = replay(&(request + &reply("REJECT") + &reply("ACCEPT")));
    assert_eq!(mixed[0]["asymmetric_flows"][0]["likely_cause"], "sg_or_nacl");
    assert!(found(&mixed, "nacl_asymmetry").is_empty());
    // Outbound request accepted, inbound reply rejected: a network ACL as well.
    let outbound = line(0, LOCAL, "203.0.113.7", (40_100, 443), 300, "ACCEPT")
        + &line(0, "203.0.113.7", LOCAL, (443, 40_100), 3_000, "REJECT");
    let snapshots = replay(&outbound);
    let a = &snapshots[0]["asymmetric_flows"][0];
    assert_eq!(
        (a["ingress_action"].as_str(), a["egress_action"].as_str()),
        (Some("REJECT"), Some("ACCEPT"))
    );
    assert_eq!(found(&snapshots, "nacl_asymmetry").len(), 1);
}

#[test]
fn five_times_its_baseline_on_10_mb_is_a_spike_and_less_is_not() {
    // Four minutes of 2 MB, then `last` bytes: the baseline of minute 4 is 2 MB.
    let stream = |last: u64| -> String {
        let mut log: String = (0..4)
            .map(|m| line(m, "10.0.0.1", LOCAL, (40_000, 443), 2_000_000, "ACCEPT"))
            .collect();
        log.push_str(&line(4, "10.0.0.1", LOCAL, (40_000, 443), last, "ACCEPT"));
        log
    };
    let snapshots = replay(&stream(10_000_000));
    let f = found(&snapshots, "spike");
    assert_eq!(f.len(), 1, "{f:?}");
    assert_eq!((f[0]["subject"].as_str(), f[0]["value"].as_f64()), (Some("10.0.0.1"), Some(5.0)));
    assert!(found(&replay(&stream(9_800_000)), "spike").is_empty(), "4.9 times");
    // Five times a smaller baseline, but under 10 MB.
    let small: String = (0..4)
        .map(|m| line(m, "10.0.0.1", LOCAL, (40_000, 443), 1_000_000, "ACCEPT"))
        .chain([line(4, "10.0.0.1", LOCAL, (40_000, 443), 5_000_000, "ACCEPT")])
        .collect();
    assert!(found(&replay(&small), "spike").is_empty(), "5 MB is under spike_min_bytes");
}

/// The `serve` flags under which [`send_two_port_scans`] closes two windows with a finding each.
pub(crate) const ONE_MINUTE_WINDOWS: [&str; 8] = [
    "--lateness",
    "0s",
    "--window",
    "1m",
    "--slide",
    "1m",
    "--local-addresses",
    "tests/data/windows/local_addresses.json",
];

/// Sends, through Firehose, a port scan of eni-0aaa in each of two one-minute windows and a
/// record that closes both: under [`ONE_MINUTE_WINDOWS`] each window raises one `port_scan`.
pub(crate) async fn send_two_port_scans(server: &crate::common::serve::Server) {
    use crate::common::serve::{Firehose, wrapped};
    let mut lines: Vec<String> = Vec::new();
    for minute in 0..2 {
        for p in 1..=100 {
            lines.push(line(minute, "198.51.100.66", LOCAL, (55_000, p), 40, "REJECT"));
        }
    }
    // Minute 3 moves the watermark past both windows, so they close.
    lines.push(line(3, "10.0.0.1", LOCAL, (40_000, 443), 100, "ACCEPT"));
    let lines: Vec<String> = lines.iter().map(|l| l.trim_end().to_string()).collect();
    let firehose = Firehose::new(&server.ingest, None);
    for (i, chunk) in lines.chunks(50).enumerate() {
        let (status, _) = firehose.send(&format!("req-{i}"), &wrapped(chunk)).await;
        assert_eq!(status, 200);
    }
}

/// `GET /api/v1/findings` on a running server: newest first, filtered by kind, interface and
/// window start; a malformed filter is a 400.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_lists_findings_newest_first_and_filters_them() {
    let server = crate::common::serve::Server::start(&ONE_MINUTE_WINDOWS, &[]);
    send_two_port_scans(&server).await;
    let get = |query: &str| {
        let url = format!("{}/api/v1/findings{query}", server.admin);
        async move { reqwest::get(url).await.unwrap() }
    };
    // The closer answers after the requests: wait (bounded) for both windows' findings.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    let all: Vec<Value> = loop {
        let all: Vec<Value> = get("").await.json().await.unwrap();
        if all.len() >= 2 {
            break all;
        }
        assert!(std::time::Instant::now() < deadline, "no findings: {all:?}");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    };
    assert_eq!(all.len(), 2);
    assert_eq!(all[0]["window_start"], T0 + 60, "newest first");
    assert_eq!(all[1]["window_start"], T0);
    assert!(all.iter().all(|f| f["kind"] == "port_scan" && f["interface_id"] == "eni-0aaa"));
    let since: Vec<Value> = get(&format!("?since={}", T0 + 60)).await.json().await.unwrap();
    assert_eq!(since.len(), 1);
    let other_kind: Vec<Value> = get("?kind=spike").await.json().await.unwrap();
    assert!(other_kind.is_empty());
    let other_interface: Vec<Value> = get("?interface=eni-0bbb").await.json().await.unwrap();
    assert!(other_interface.is_empty());
    let limited: Vec<Value> =
        get("?kind=port_scan&interface=eni-0aaa&limit=1").await.json().await.unwrap();
    assert_eq!(limited.len(), 1);
    assert_eq!(get("?since=yesterday").await.status(), 400);
    server.stop();
}

/// A source rejected on 10 interfaces in one window is a sweep on each of them (none at 9), and
/// the finding does not depend on how interfaces are spread over shards.
#[test]
fn a_source_rejected_on_10_interfaces_is_a_sweep_whatever_the_shards() {
    let sweep = |interfaces: u32| -> String {
        (0..interfaces)
            .map(|i| {
                let t = T0;
                format!(
                    "2 111111111111 eni-{i:017x} 198.51.100.99 10.9.{i}.1 55000 22 6 1 40 {t} {} REJECT OK\n",
                    t + 30
                )
            })
            .collect()
    };
    let run = |log: &str, shards: &str| {
        let args = [
            "replay",
            "--window",
            "1m",
            "--slide",
            "1m",
            "--lateness",
            "0s",
            "--direction",
            "off",
            "--shards",
            shards,
            "-",
        ];
        let out = vpcflowd(&args, log.as_bytes());
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        json_lines(&out.stdout)
    };
    let one = run(&sweep(10), "1");
    assert_eq!(one.len(), 10);
    let sweeps = found(&one, "sweep");
    assert_eq!(sweeps.len(), 10, "found on each interface");
    assert!(sweeps.iter().all(|f| f["subject"] == "198.51.100.99" && f["value"] == 10.0));
    assert_eq!(run(&sweep(10), "4"), one, "the same with 4 shards");
    assert!(found(&run(&sweep(9), "2"), "sweep").is_empty());
}
