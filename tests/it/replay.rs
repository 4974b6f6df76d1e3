//! `vpcflowd replay` end to end: determinism across shard counts, bounded memory with exact
//! reconciliation, and the readable output.

use crate::common::{json_lines, vpcflowd};
use serde_json::Value;

fn generate(args: &[&str]) -> Vec<u8> {
    let mut full = vec!["generate"];
    full.extend_from_slice(args);
    let out = vpcflowd(&full, b"");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    out.stdout
}

/// Sum of a list's field plus the remainder's.
fn reconciles(s: &Value, list: &str, other: &str, field: &str) -> bool {
    let listed: u64 = s[list].as_array().unwrap().iter().map(|e| e[field].as_u64().unwrap()).sum();
    listed + s[other][field].as_u64().unwrap() == s[field].as_u64().unwrap()
}

#[test]
fn output_is_identical_with_1_and_8_shards_under_disorder_late_data_and_a_scan() {
    // Disorder (120 s) beyond the lateness (60 s): some records are late, some too late.
    let input = generate(&[
        "--records",
        "60000",
        "--seed",
        "11",
        "--rate",
        "50",
        "--disorder",
        "120",
        "--scan-after",
        "300",
        "--scan-duration",
        "120",
        "--scan-share",
        "0.5",
    ]);
    let run = |shards: &str, late: &str| {
        let out = vpcflowd(
            &[
                "replay",
                "--shards",
                shards,
                "--lateness",
                "1m",
                "--late",
                late,
                "--max-sources",
                "500",
                "-",
            ],
            &input,
        );
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        (out.stdout, String::from_utf8_lossy(&out.stderr).into_owned())
    };
    for late in ["drop", "update"] {
        let (one, summary) = run("1", late);
        let (eight, _) = run("8", late);
        assert!(!one.is_empty());
        assert_eq!(one, eight, "--late {late}: output differs between 1 and 8 shards");
        let snapshots = json_lines(&one);
        let late_total: u64 = snapshots.iter().map(|s| s["late_records"].as_u64().unwrap()).sum();
        assert!(late_total > 0, "the stream must exercise late records: {summary}");
        if late == "update" {
            assert!(
                snapshots.iter().any(|s| s["revision"].as_u64() > Some(0)),
                "corrections expected"
            );
        }
        // First emissions come ordered by window_start then interface_id.
        let firsts: Vec<(u64, String)> = snapshots
            .iter()
            .filter(|s| s["revision"] == 0)
            .map(|s| {
                (
                    s["window_start"].as_u64().unwrap(),
                    s["interface_id"].as_str().unwrap().to_string(),
                )
            })
            .collect();
        assert!(firsts.is_sorted());
    }
}

#[test]
fn beyond_the_caps_lists_are_approximate_but_totals_reconcile_exactly() {
    // A scan storm: thousands of distinct sources on one interface, against a cap of 100.
    let input = generate(&[
        "--records",
        "20000",
        "--seed",
        "5",
        "--interfaces",
        "3",
        "--rate",
        "200",
        "--disorder",
        "0",
        "--scan-after",
        "0",
        "--scan-duration",
        "100",
        "--scan-share",
        "0.8",
    ]);
    let out = vpcflowd(
        &[
            "replay",
            "--max-sources",
            "100",
            "--max-destinations",
            "100",
            "--max-flows",
            "4",
            "--top-sources",
            "5",
            "-",
        ],
        &input,
    );
    assert!(out.status.success());
    let snapshots = json_lines(&out.stdout);
    let mut approximate = 0;
    for s in &snapshots {
        for field in ["packets", "bytes", "flows"] {
            assert!(reconciles(s, "sources", "other_sources", field), "sources/{field}: {s}");
            assert!(
                reconciles(s, "destinations", "other_destinations", field),
                "destinations/{field}: {s}"
            );
        }
        if s["approximate"] == true {
            approximate += 1;
            let a = &s["approximation"];
            let evicted = |k: &str| a[format!("evicted_{k}")].as_u64().unwrap();
            let error = |k: &str| a[format!("{k}_bytes_error")].as_u64().unwrap();
            assert!(evicted("sources") + evicted("destinations") + evicted("flows") > 0, "{a}");
            for (kind, bound) in
                [("sources", "source"), ("destinations", "destination"), ("flows", "flow")]
            {
                assert_eq!(evicted(kind) > 0, error(bound) > 0, "{kind}: {a}");
            }
        } else {
            assert_eq!(s["approximation"]["evicted_sources"], 0);
        }
        let share: f64 = s["sources"]
            .as_array()
            .unwrap()
            .iter()
            .map(|x| x["traffic_share_pct"].as_f64().unwrap())
            .sum();
        assert!(share <= 100.0 + 1e-9);
    }
    assert!(approximate > 0, "the storm must exceed the cap");
    let storm = snapshots
        .iter()
        .filter(|s| s["approximation"]["evicted_sources"].as_u64() > Some(0))
        .count();
    assert!(storm > 0, "the storm's interface must evict sources");
}

#[test]
fn table_output_names_the_window_interface_and_top_sources() {
    let line = "2 123456789010 eni-0a1b2c3d4e5f60718 198.51.100.7 10.0.0.5 51000 443 6 10 5000 1700000000 1700000030 REJECT OK\n";
    let out = vpcflowd(
        &["replay", "--output", "table", "--window", "1m", "--slide", "1m", "-"],
        line.as_bytes(),
    );
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.starts_with("2023-11-14T22:13:00Z .. 2023-11-14T22:14:00Z  eni-0a1b2c3d4e5f60718  account 123456789010"), "{text}");
    assert!(text.contains("rejected: 1 flows 10 packets 5000 bytes"), "{text}");
    assert!(text.contains("198.51.100.7"), "{text}");
    assert!(text.contains("100.00"), "{text}");
}

#[test]
fn bad_window_options_are_usage_errors() {
    for args in [
        ["--window", "5m", "--slide", "7m"],
        ["--window", "5m", "--slide", "0s"],
        ["--lateness", "1.5s", "--slide", "1m"],
    ] {
        let mut full = vec!["replay"];
        full.extend_from_slice(&args);
        let out = vpcflowd(&full, b"");
        assert_eq!(out.status.code(), Some(2), "{args:?}");
    }
}

#[test]
fn records_without_an_interface_are_rejected_and_counted() {
    let input = "srcaddr dstaddr bytes\n10.0.0.1 10.0.0.2 100\n";
    let out = vpcflowd(&["replay", "-"], input.as_bytes());
    assert!(out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("<stdin>:2: the record names no interface"), "{stderr}");
    assert!(stderr.contains("1 rejected (missing_interface 1)"), "{stderr}");
}
