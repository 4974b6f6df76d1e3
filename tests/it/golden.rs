//! Golden window cases (`tests/data/windows`, whose README describes each): every `NAME.log`
//! replayed with the flags in `NAME.args` prints exactly `NAME.expected.jsonl`. With
//! `UPDATE_EXPECT=1` the test writes the expected files instead of comparing them.

use std::path::{Path, PathBuf};
use std::process::Command;

fn cases() -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/windows");
    let mut logs: Vec<PathBuf> = std::fs::read_dir(&dir)
        .expect("tests/data/windows")
        .map(|e| e.expect("a directory entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "log"))
        .collect();
    logs.sort();
    logs
}

/// What `vpcflowd replay` prints for a case.
fn replay(log: &Path) -> String {
    let args = std::fs::read_to_string(log.with_extension("args")).unwrap_or_default();
    let out = Command::new(env!("CARGO_BIN_EXE_vpcflowd"))
        .arg("replay")
        .args(args.split_whitespace())
        .arg(log)
        .output()
        .expect("run vpcflowd replay");
    assert!(out.status.success(), "{}: {}", log.display(), String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).expect("replay prints UTF-8")
}

#[test]
fn every_golden_case_replays_to_its_expected_snapshots() {
    let update = std::env::var_os("UPDATE_EXPECT").is_some();
    let cases = cases();
    assert!(cases.len() >= 5, "the golden cases are missing: {cases:?}");
    let mut failures = Vec::new();
    for log in &cases {
        let actual = replay(log);
        let expected_path = log.with_extension("expected.jsonl");
        if update {
            std::fs::write(&expected_path, &actual).expect("write the expected snapshots");
            continue;
        }
        let Ok(expected) = std::fs::read_to_string(&expected_path) else {
            failures.push(format!("{}: no expected file (UPDATE_EXPECT=1)", log.display()));
            continue;
        };
        if actual != expected {
            let (a, e): (Vec<&str>, Vec<&str>) =
                (actual.lines().collect(), expected.lines().collect());
            let at = a.iter().zip(&e).position(|(x, y)| x != y).unwrap_or(a.len().min(e.len()));
            failures.push(format!(
                "{}: line {} differs ({} lines, {} expected)\n  got:      {}\n  expected: {}",
                log.display(),
                at + 1,
                a.len(),
                e.len(),
                a.get(at).unwrap_or(&"<none>"),
                e.get(at).unwrap_or(&"<none>"),
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// The values a reader checks by eye in `three_sources_one_window`, spelled out here so that
/// the golden file cannot bless a wrong result.
#[test]
fn three_sources_share_one_window_by_bytes() {
    let log = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data/windows/three_sources_one_window.log");
    let out = replay(&log);
    let snapshots: Vec<serde_json::Value> =
        out.lines().map(|l| serde_json::from_str(l).expect("a JSON snapshot")).collect();
    assert_eq!(snapshots.len(), 1, "{out}");
    let s = &snapshots[0];
    assert_eq!(s["interface_id"], "eni-0aaa");
    assert_eq!(s["window_start"], 1_699_999_980u64);
    assert_eq!(s["window_end"], 1_700_000_040u64);
    assert_eq!(
        (s["packets"].as_u64(), s["bytes"].as_u64(), s["flows"].as_u64()),
        (Some(20), Some(10_000), Some(3))
    );
    assert_eq!(
        (s["rejected_flows"].as_u64(), s["rejected_bytes"].as_u64()),
        (Some(1), Some(2_000))
    );
    let sources: Vec<(&str, u64, f64)> = s["sources"]
        .as_array()
        .expect("sources")
        .iter()
        .map(|x| {
            let address = x["address"].as_str().expect("address");
            (
                address,
                x["bytes"].as_u64().expect("bytes"),
                x["traffic_share_pct"].as_f64().expect("share"),
            )
        })
        .collect();
    assert_eq!(
        sources,
        [("10.0.0.1", 5_000, 50.0), ("10.0.0.2", 3_000, 30.0), ("10.0.0.3", 2_000, 20.0)]
    );
}

/// `late_record_counted`: the late record adds 1 to `late_records` of the window still open
/// over its pane, and its traffic is not counted anywhere.
#[test]
fn a_late_record_is_counted_in_the_open_window_and_its_traffic_dropped() {
    let log =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/windows/late_record_counted.log");
    let out = replay(&log);
    let snapshots: Vec<serde_json::Value> =
        out.lines().map(|l| serde_json::from_str(l).expect("a JSON snapshot")).collect();
    let by_start: Vec<(u64, u64, u64)> = snapshots
        .iter()
        .map(|s| {
            let n = |k: &str| s[k].as_u64().unwrap_or_else(|| panic!("{k} in {s}"));
            (n("window_start"), n("bytes"), n("late_records"))
        })
        .collect();
    // Panes start at 1699999980 (the records at …000 and …005) and 1700000040 (…050); the
    // 2-minute windows start one pane earlier and at each pane.
    assert_eq!(
        by_start,
        [(1_699_999_920, 100, 0), (1_699_999_980, 300, 1), (1_700_000_040, 200, 0)]
    );
}

/// The one snapshot of a single-window case, as JSON.
fn only_snapshot(case: &str) -> serde_json::Value {
    let log = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/windows").join(case);
    let out = replay(&log);
    let mut snapshots: Vec<serde_json::Value> =
        out.lines().map(|l| serde_json::from_str(l).expect("a JSON snapshot")).collect();
    assert_eq!(snapshots.len(), 1, "{out}");
    snapshots.remove(0)
}

/// A list's (address, bytes, share rounded to 0.01 %).
fn listed(s: &serde_json::Value, list: &str) -> Vec<(String, u64, f64)> {
    s[list]
        .as_array()
        .expect("a list")
        .iter()
        .map(|x| {
            let share = x["traffic_share_pct"].as_f64().expect("share");
            (
                x["address"].as_str().expect("address").to_string(),
                x["bytes"].as_u64().expect("bytes"),
                (share * 100.0).round() / 100.0,
            )
        })
        .collect()
}

/// `inferred_direction`: 172.16.0.1 is learned at the fourth record, its fourth distinct peer;
/// the three records before it and the one between two remote addresses stay unknown.
#[test]
fn the_interface_address_is_learned_and_never_its_own_source() {
    let s = only_snapshot("inferred_direction.log");
    assert_eq!(s["direction_basis"], "inferred");
    assert_eq!(s["local_addresses"], serde_json::json!(["172.16.0.1"]));
    let bytes = |k: &str| s[k]["bytes"].as_u64().unwrap();
    assert_eq!((bytes("ingress"), bytes("egress"), bytes("unknown_direction")), (2700, 300, 2550));
    assert_eq!(s["bytes"], 5550);
    assert_eq!(
        listed(&s, "sources"),
        [("10.5.0.4".into(), 2000, 74.07), ("10.5.0.2".into(), 700, 25.93)]
    );
    assert_eq!(s["sources"][1]["rejected_flows"], 1);
    assert_eq!(listed(&s, "destinations"), [("10.5.0.1".into(), 300, 100.0)]);
}

/// `nat_gateway_flow_direction`: AWS's NAT gateway example with `flow-direction`. Sources are
/// packet-level senders, and the forwarded one names the header address it came through.
#[test]
fn a_nat_gateway_is_attributed_to_packet_level_addresses() {
    let s = only_snapshot("nat_gateway_flow_direction.log");
    assert_eq!(s["direction_basis"], "flow-direction");
    assert_eq!(s["local_addresses"], serde_json::json!(["10.0.0.220"]));
    assert_eq!(
        listed(&s, "sources"),
        [
            ("203.0.113.5".into(), 4000, 71.43),
            ("10.0.1.5".into(), 1000, 17.86),
            ("198.51.100.9".into(), 600, 10.71)
        ]
    );
    // The instance's packet goes on to the internet host, which the flow names.
    assert_eq!(s["sources"][1]["top_flows"][0]["dstaddr"], "203.0.113.5");
    assert_eq!(s["sources"][2]["top_flows"][0]["via"], "10.0.3.3");
    assert_eq!(s["sources"][0]["top_flows"][0]["direction"], "ingress");
    assert_eq!(
        listed(&s, "destinations"),
        [("10.0.1.5".into(), 4000, 80.0), ("203.0.113.5".into(), 1000, 20.0)]
    );
}

/// Every golden snapshot reads back as it was written (`common::assert_reads_back`), and a
/// name a snapshot never carries is refused, not made up.
#[test]
fn every_golden_snapshot_reads_back_as_it_was_written() {
    let mut read = 0;
    for log in cases() {
        let expected = std::fs::read_to_string(log.with_extension("expected.jsonl")).unwrap();
        let written: Vec<serde_json::Value> =
            expected.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
        crate::common::assert_reads_back(&written);
        read += written.len();
    }
    assert!(read > 20, "only {read} golden snapshots");
    let line = std::fs::read_to_string("tests/data/windows/inferred_direction.expected.jsonl")
        .unwrap()
        .lines()
        .next()
        .unwrap()
        .replace("\"direction_basis\":\"inferred\"", "\"direction_basis\":\"guessed\"");
    let refused = serde_json::from_str::<vpcflowd::window::Snapshot>(&line).unwrap_err();
    assert!(refused.to_string().contains("guessed"), "{refused}");
}
