//! Labels on snapshots: an interface's `vpc-id`, `subnet-id`, `instance-id` and `az-id` as its
//! records carry them, through replay's parse pool and serve's Firehose path alike, and absent
//! from the JSON when the records carry none.

use serde_json::Value;

use crate::common::{json_lines, vpcflowd};

const FORMAT: &str = "${version} ${account-id} ${interface-id} ${vpc-id} ${subnet-id} ${instance-id} ${az-id} ${srcaddr} ${dstaddr} ${srcport} ${dstport} ${protocol} ${packets} ${bytes} ${start} ${end} ${action} ${log-status}";

fn line(interface: &str, vpc: &str, subnet: &str, instance: &str, az: &str) -> String {
    format!(
        "5 111111111111 {interface} {vpc} {subnet} {instance} {az} 198.51.100.1 10.0.0.1 40000 443 6 1 100 1700000040 1700000050 ACCEPT OK"
    )
}

fn records() -> Vec<String> {
    vec![
        line("eni-0a01", "vpc-0aa", "subnet-01", "i-0001", "use1-az1"),
        line("eni-0a01", "vpc-0aa", "subnet-01", "i-0001", "use1-az1"),
        line("eni-0a02", "vpc-0aa", "subnet-02", "-", "use1-az2"),
        line("eni-0a03", "-", "-", "-", "-"),
    ]
}

fn check(snapshots: &[Value]) {
    let of = |id: &str| snapshots.iter().find(|s| s["interface_id"] == id).unwrap().clone();
    let a = of("eni-0a01");
    assert_eq!(
        (&a["vpc_id"], &a["subnet_id"], &a["instance_id"], &a["az_id"]),
        (
            &Value::from("vpc-0aa"),
            &Value::from("subnet-01"),
            &Value::from("i-0001"),
            &Value::from("use1-az1")
        )
    );
    let b = of("eni-0a02");
    assert_eq!(
        (b["vpc_id"].as_str(), b["subnet_id"].as_str()),
        (Some("vpc-0aa"), Some("subnet-02"))
    );
    assert!(b.get("instance_id").is_none(), "a requester-managed interface has no instance");
    let c = of("eni-0a03");
    for key in ["vpc_id", "subnet_id", "instance_id", "az_id"] {
        assert!(c.get(key).is_none(), "{key} is absent when no record carries it");
    }
}

#[test]
fn replay_labels_each_interface_with_what_its_records_carry() {
    let input = records().join("\n") + "\n";
    let out = vpcflowd(&["replay", "--lateness", "0s", "-f", FORMAT, "-"], input.as_bytes());
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    check(&json_lines(&out.stdout));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_labels_snapshots_of_firehose_records() {
    use crate::common::serve::{Firehose, Server, wrapped};
    let server = Server::start(&["--lateness", "0s", "-f", FORMAT], &[]);
    let (status, _) = Firehose::new(&server.ingest, None).send("r1", &wrapped(&records())).await;
    assert_eq!(status, 200);
    // A record ten minutes on closes the windows over the first ones.
    let later = vec![
        line("eni-0a09", "vpc-0bb", "subnet-09", "-", "-")
            .replace("1700000040 1700000050", "1700000640 1700000650"),
    ];
    let (status, _) = Firehose::new(&server.ingest, None).send("r2", &wrapped(&later)).await;
    assert_eq!(status, 200);
    let get = |path: String| async move { reqwest::get(path).await.unwrap() };
    let vpcs = server
        .wait_for_at("/api/v1/rollups/vpc", "the VPC roll-up", |v| {
            !v.as_array().unwrap().is_empty()
        })
        .await;
    assert_eq!(vpcs.as_array().unwrap().len(), 1, "{vpcs:#}");
    // The window still open carries the labels its records brought.
    let open = server
        .wait_for_at("/api/v1/interfaces/eni-0a09/open", "the open window", |o| {
            o[0]["bytes"] == 100
        })
        .await;
    assert_eq!(
        (
            open[0]["vpc_id"].as_str(),
            open[0]["subnet_id"].as_str(),
            open[0]["provisional"].as_bool()
        ),
        (Some("vpc-0bb"), Some("subnet-09"), Some(true))
    );
    for key in ["instance_id", "name", "description"] {
        assert!(open[0].get(key).is_none(), "{key} is absent: {open:#}");
    }
    let vpc = &vpcs[0];
    assert_eq!(
        (vpc["id"].as_str(), vpc["interfaces"].as_u64(), vpc["bytes"].as_u64()),
        (Some("vpc-0aa"), Some(2), Some(300))
    );
    assert_eq!(vpc["interface_ids"], serde_json::json!(["eni-0a01", "eni-0a02"]));
    let subnet = server.get("/api/v1/rollups/subnet/subnet-02").await;
    assert_eq!((subnet["bytes"].as_u64(), subnet["interfaces"].as_u64()), (Some(100), Some(1)));
    let region = server.get("/api/v1/rollups/region").await;
    assert_eq!(region[0]["interfaces"], 3, "the unlabeled interface is in its region's roll-up");
    let metrics = get(format!("{}/metrics", server.admin)).await.text().await.unwrap();
    assert!(metrics.contains("vpcflowd_vpc_bytes{aws_vpc_id=\"vpc-0aa\"} 300\n"), "{metrics}");
    assert!(metrics.contains("vpcflowd_subnet_interfaces{aws_subnet_id=\"subnet-01\"} 1\n"));
    assert!(metrics.contains("vpcflowd_region_interfaces{cloud_region=\"us-east-1\"} 3\n"));
    assert_eq!(get(format!("{}/api/v1/rollups/galaxy", server.admin)).await.status(), 404);
    assert_eq!(get(format!("{}/api/v1/rollups/vpc/vpc-none", server.admin)).await.status(), 404);
    let (_, snapshots, _) = server.stop();
    crate::common::assert_reads_back(&snapshots);
    check(&snapshots);
}

/// With AWS's `ip-ranges.json` (a fixture of its shape), listed sources and destinations in AWS
/// name their service and region by longest prefix; a prefix AWS lists as `AMAZON` only says
/// that; addresses outside AWS say nothing.
#[test]
fn sources_and_destinations_in_aws_name_their_service() {
    let line = |src: &str, dst: &str| {
        format!(
            "2 111111111111 eni-0aaa {src} {dst} 443 40000 6 1 100 1700000040 1700000050 ACCEPT OK\n"
        )
    };
    let locals = "tests/data/windows/local_addresses.json";
    let input = [
        line("52.217.10.1", "10.0.9.9"),
        line("3.5.64.9", "10.0.9.9"),
        line("3.5.1.1", "10.0.9.9"),
        line("198.51.100.1", "10.0.9.9"),
        line("10.0.9.9", "13.33.0.1"),
        line("2600:1f18:0abc::1", "2600:1f18:f000::1"),
    ]
    .concat();
    let args = [
        "replay",
        "--lateness",
        "0s",
        "--ip-ranges",
        "tests/data/ip-ranges.json",
        "--local-addresses",
        locals,
        "-",
    ];
    let out = vpcflowd(&args, input.as_bytes());
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let snapshots = json_lines(&out.stdout);
    crate::common::assert_reads_back(&snapshots);
    let snapshot = snapshots.into_iter().find(|s| s["interface_id"] == "eni-0aaa").unwrap();
    let service = |list: &str, address: &str| {
        let entry =
            snapshot[list].as_array().unwrap().iter().find(|e| e["address"] == address).cloned();
        let entry = entry.unwrap_or_else(|| panic!("{address} not in {list}: {snapshot:#}"));
        (
            entry["aws_service"].as_str().map(str::to_string),
            entry["aws_region"].as_str().map(str::to_string),
        )
    };
    let named = |s: &str, r: &str| (Some(s.to_string()), Some(r.to_string()));
    assert_eq!(service("sources", "52.217.10.1"), named("S3", "us-east-1"));
    assert_eq!(service("sources", "3.5.64.9"), named("EC2", "eu-west-1"), "the longest prefix");
    assert_eq!(service("sources", "3.5.1.1"), named("AMAZON", "eu-west-1"));
    assert_eq!(service("sources", "198.51.100.1"), (None, None));
    assert_eq!(service("destinations", "13.33.0.1"), named("CLOUDFRONT", "GLOBAL"));
    let bad = vpcflowd(&["replay", "--ip-ranges", "Cargo.toml", "-"], b"");
    assert_eq!(bad.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&bad.stderr).contains("enrich.ip_ranges: not AWS's ip-ranges.json")
    );
}

/// Records of one interface that carry different fields, over several panes, label its windows
/// alike whatever the shard count: each field from the oldest pane that has it, the first
/// record of the pane that carries it.
#[test]
fn labels_depend_on_the_records_only() {
    let at = |minute: u64, vpc: &str, az: &str| {
        line("eni-0a01", vpc, "subnet-01", "-", az).replace(
            "1700000040 1700000050",
            &format!("{} {}", 1_700_000_040 + 60 * minute, 1_700_000_050 + 60 * minute),
        )
    };
    let mut lines = Vec::new();
    for minute in 0..8 {
        lines.push(at(minute, "-", "use1-az1"));
        lines.push(at(minute, "vpc-0aa", "-"));
        lines.push(at(minute, "vpc-0bb", "use1-az9"));
    }
    let input = lines.join("\n") + "\n";
    let run = |shards: &str| {
        let args = ["replay", "--lateness", "0s", "--shards", shards, "-f", FORMAT, "-"];
        let out = vpcflowd(&args, input.as_bytes());
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        out.stdout
    };
    let one = run("1");
    assert_eq!(one, run("4"));
    for s in json_lines(&one) {
        assert_eq!(
            (s["vpc_id"].as_str(), s["az_id"].as_str()),
            (Some("vpc-0aa"), Some("use1-az1")),
            "{s}"
        );
    }
}

/// Labels are in the state file: a window whose records all came before a restart still has
/// them when it closes after it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn labels_survive_a_restart() {
    use crate::common::serve::{Firehose, Server, wrapped};
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().to_str().unwrap();
    let args = ["--lateness", "0s", "-f", FORMAT, "--state-dir", state];
    let server = Server::start(&args, &[]);
    let (status, _) = Firehose::new(&server.ingest, None).send("r1", &wrapped(&records())).await;
    assert_eq!(status, 200);
    let (exit, before, _) = server.stop();
    assert!(exit.success());
    assert!(before.is_empty(), "the windows stay open across the restart");
    let server = Server::start(&args, &[]);
    let later = vec![
        line("eni-0a09", "-", "-", "-", "-")
            .replace("1700000040 1700000050", "1700000640 1700000650"),
    ];
    let (status, _) = Firehose::new(&server.ingest, None).send("r2", &wrapped(&later)).await;
    assert_eq!(status, 200);
    let (_, snapshots, _) = server.stop();
    check(&snapshots);
}

/// A record's `pkt-src-aws-service` and `pkt-dst-aws-service` name the service of its packet's
/// source and destination, with or without `ip-ranges.json`, and win over the file's answer.
#[test]
fn records_naming_a_service_label_their_addresses() {
    let format = "${version} ${account-id} ${interface-id} ${srcaddr} ${dstaddr} ${srcport} ${dstport} ${protocol} ${packets} ${bytes} ${start} ${end} ${action} ${log-status} ${pkt-src-aws-service} ${pkt-dst-aws-service}";
    let line = |src: &str, dst: &str, src_service: &str, dst_service: &str| {
        format!(
            "5 111111111111 eni-0aaa {src} {dst} 443 40000 6 1 100 1700000040 1700000050 ACCEPT OK {src_service} {dst_service}\n"
        )
    };
    let input = [
        line("52.94.1.1", "10.0.9.9", "DYNAMODB", "-"),
        line("52.217.10.1", "10.0.9.9", "S3", "-"),
        line("198.51.100.1", "10.0.9.9", "-", "-"),
        line("10.0.9.9", "54.239.1.1", "-", "ROUTE53"),
    ]
    .concat();
    let locals = "tests/data/windows/local_addresses.json";
    for ranges in [None, Some("tests/data/ip-ranges.json")] {
        let mut args =
            vec!["replay", "--lateness", "0s", "-f", format, "--local-addresses", locals];
        if let Some(r) = ranges {
            args.extend(["--ip-ranges", r]);
        }
        args.push("-");
        let out = vpcflowd(&args, input.as_bytes());
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let s = json_lines(&out.stdout).into_iter().next().unwrap();
        let service = |list: &str, address: &str| {
            let entry =
                s[list].as_array().unwrap().iter().find(|e| e["address"] == address).unwrap();
            entry["aws_service"].as_str().map(str::to_string)
        };
        assert_eq!(service("sources", "52.94.1.1").as_deref(), Some("DYNAMODB"));
        assert_eq!(service("sources", "52.217.10.1").as_deref(), Some("S3"));
        assert_eq!(service("sources", "198.51.100.1"), None);
        assert_eq!(service("destinations", "54.239.1.1").as_deref(), Some("ROUTE53"));
    }
}
