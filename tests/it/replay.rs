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
/// Whether `list` plus `other` adds up to `whole`'s `field` (a direction, or the totals).
fn reconciles(s: &Value, list: &str, other: &str, whole: &str, field: &str) -> bool {
    let listed: u64 = s[list].as_array().unwrap().iter().map(|e| e[field].as_u64().unwrap()).sum();
    let whole = if whole.is_empty() { &s[field] } else { &s[whole][field] };
    listed + s[other][field].as_u64().unwrap() == whole.as_u64().unwrap()
}

/// Whether the three directions add up to the totals in `field`.
fn directions_add_up(s: &Value, field: &str) -> bool {
    let n = |d: &str| s[d][field].as_u64().unwrap();
    n("ingress") + n("egress") + n("unknown_direction") == s[field].as_u64().unwrap()
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
            let sources = reconciles(s, "sources", "other_sources", "ingress", field);
            assert!(sources, "sources/{field}: {s}");
            let destinations = reconciles(s, "destinations", "other_destinations", "egress", field);
            assert!(destinations, "destinations/{field}: {s}");
            assert!(directions_add_up(s, field), "directions/{field}: {s}");
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
    let dir = tempfile::tempdir().unwrap();
    let locals = dir.path().join("locals.json");
    std::fs::write(&locals, r#"{"eni-0a1b2c3d4e5f60718": ["10.0.0.0/24"]}"#).unwrap();
    let out = vpcflowd(
        &[
            "replay",
            "--output",
            "table",
            "--window",
            "1m",
            "--slide",
            "1m",
            "--local-addresses",
            locals.to_str().unwrap(),
            "-",
        ],
        line.as_bytes(),
    );
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.starts_with("2023-11-14T22:13:00Z .. 2023-11-14T22:14:00Z  eni-0a1b2c3d4e5f60718  account 123456789010"), "{text}");
    assert!(text.contains("rejected: 1 flows 10 packets 5000 bytes"), "{text}");
    assert!(text.contains("198.51.100.7"), "{text}");
    assert!(text.contains("100.00"), "{text}");
    assert!(text.contains("in 5000 bytes 10 packets  out 0 bytes"), "{text}");
    assert!(text.contains("local 10.0.0.5  (configured)"), "{text}");
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

/// On the generator's default mix, whose interfaces' own addresses are known, no interface
/// lists one of them as a source or destination, every address reported local is one, and
/// each list with its remainder is exactly its direction, its shares adding up to 100 %.
#[test]
fn no_interface_is_its_own_source_on_the_default_mix() {
    use vpcflowd::generate::Generator;
    let input = generate(&["--records", "200000", "--seed", "5", "--ipv6-ratio", "0.3"]);
    let out = vpcflowd(&["replay", "-"], &input);
    assert!(out.status.success());
    let snapshots = json_lines(&out.stdout);
    assert!(snapshots.len() > 100);
    let (mut secondary, mut v6, mut unknown_flows, mut all_flows) = (0, 0, 0, 0);
    for s in &snapshots {
        let id = s["interface_id"].as_str().unwrap();
        let iface = u64::from_str_radix(&id["eni-".len()..], 16).unwrap() - 0x0abc_0000_0000_0000;
        let truth: Vec<String> =
            Generator::local_addresses(iface).iter().map(|a| a.to_string()).collect();
        for list in ["sources", "destinations"] {
            for entry in s[list].as_array().unwrap() {
                let address = entry["address"].as_str().unwrap();
                assert!(!truth.iter().any(|t| t == address), "{id} lists {address} in {list}");
            }
        }
        for local in s["local_addresses"].as_array().unwrap() {
            let local = local.as_str().unwrap();
            assert!(truth.iter().any(|t| t == local), "{id}: {local} is not its own");
            secondary += usize::from(truth.len() == 3 && local == truth[2]);
            v6 += usize::from(local.contains(':'));
        }
        assert_eq!(s["direction_basis"], "inferred");
        for (list, other, direction) in [
            ("sources", "other_sources", "ingress"),
            ("destinations", "other_destinations", "egress"),
        ] {
            for field in ["packets", "bytes", "flows"] {
                assert!(reconciles(s, list, other, direction, field), "{list}/{field}: {s}");
            }
            let whole = s[direction]["bytes"].as_f64().unwrap();
            let listed: f64 = s[list]
                .as_array()
                .unwrap()
                .iter()
                .map(|e| e["traffic_share_pct"].as_f64().unwrap())
                .sum();
            let rest =
                if whole > 0.0 { 100.0 * s[other]["bytes"].as_f64().unwrap() / whole } else { 0.0 };
            assert!(
                whole == 0.0 || (listed + rest - 100.0).abs() < 1e-9,
                "{list}: {listed} + {rest}"
            );
        }
        for field in ["packets", "bytes", "flows"] {
            assert!(directions_add_up(s, field), "directions/{field}: {s}");
        }
        // Only an interface's first records are undecided while it learns its addresses (up
        // to three: IPv4, IPv6 and a secondary one).
        let unknown = s["unknown_direction"]["flows"].as_u64().unwrap();
        assert!(unknown <= 100, "{id}: {unknown} unknown");
        unknown_flows += unknown;
        all_flows += s["flows"].as_u64().unwrap();
    }
    assert!(unknown_flows * 100 <= all_flows, "{unknown_flows} of {all_flows} flows unknown");
    assert!(secondary > 0 && v6 > 0, "secondary {secondary}, IPv6 {v6}");
}

/// `--detail`: `off` keeps every listed source's measures but none of its lists; `on_finding`
/// keeps the lists of a port scanner only. The scanner sends more bytes than the other source
/// here, so both are listed.
#[test]
fn detail_leaves_out_lists_for_sources_without_a_finding() {
    let mut log = String::new();
    let t = 1_700_000_000;
    log.push_str(&format!(
        "2 111111111111 eni-0ddd 10.0.0.1 10.3.9.9 40001 443 6 10 1000 {t} {} ACCEPT OK\n",
        t + 30
    ));
    for port in 1..=150 {
        log.push_str(&format!(
            "2 111111111111 eni-0ddd 198.51.100.66 10.3.9.9 55000 {port} 6 1 40 {t} {} REJECT OK\n",
            t + 30
        ));
    }
    let locals = "tests/data/windows/local_addresses.json";
    let run = |detail: &str| {
        let args = ["replay", "--window", "1m", "--slide", "1m", "--lateness", "0s"];
        let mut args = args.to_vec();
        args.extend(["--local-addresses", locals, "--detail", detail, "-"]);
        let out = vpcflowd(&args, log.as_bytes());
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let snapshots = json_lines(&out.stdout);
        assert_eq!(snapshots.len(), 1);
        snapshots[0]["sources"].as_array().unwrap().clone()
    };
    let lists = |s: &Value| {
        ["top_flows", "pane_bytes", "top_destinations"].map(|l| s[l].as_array().unwrap().len())
    };
    let always = run("always");
    assert_eq!(always.len(), 2);
    assert_eq!(always[0]["address"], "198.51.100.66");
    assert!(always.iter().all(|s| lists(s).iter().all(|n| *n > 0)));
    let off = run("off");
    assert!(off.iter().all(|s| lists(s) == [0, 0, 0]));
    for (a, o) in always.iter().zip(&off) {
        for field in ["bytes", "reject_ratio_pct", "distinct_destination_ports", "active_panes"] {
            assert_eq!(a[field], o[field], "{field} is kept with --detail off");
        }
    }
    let on_finding = run("on_finding");
    assert_eq!(on_finding[0]["distinct_destination_ports"].as_u64().map(|p| p >= 100), Some(true));
    assert!(lists(&on_finding[0]).iter().all(|n| *n > 0), "the scanner keeps its lists");
    assert_eq!(lists(&on_finding[1]), [0, 0, 0], "the other source has no finding");
}
