//! EC2 enrichment (`[enrich.ec2]`) against moto's EC2 in server mode: labels and local
//! addresses from `DescribeNetworkInterfaces`, the lookup of an interface created after the
//! last refresh, the cache across a restart with EC2 down, and the records' own fields when
//! EC2 never answers.

use serde_json::Value;

use crate::common::serve::{Firehose, Server, wrapped};
use crate::common::tools::{AWS_ENV, Moto, sdk_config};

/// A v2 record on `interface` from `src` to `dst`, starting at `start`.
fn line(interface: &str, src: &str, dst: &str, bytes: u64, start: u64) -> String {
    let end = start + 10;
    format!("2 123456789012 {interface} {src} {dst} 40000 443 6 2 {bytes} {start} {end} ACCEPT OK")
}

/// Creates an interface with `address` in `subnet`, tagged `Name` = `name`; returns its id.
async fn create_interface(
    ec2: &aws_sdk_ec2::Client,
    subnet: &str,
    address: &str,
    description: &str,
    name: &str,
) -> String {
    let created = ec2
        .create_network_interface()
        .subnet_id(subnet)
        .private_ip_address(address)
        .description(description)
        .send()
        .await
        .expect("create an interface");
    let id = created.network_interface.unwrap().network_interface_id.unwrap();
    let tag = aws_sdk_ec2::types::Tag::builder().key("Name").value(name).build();
    ec2.create_tags().resources(&id).tags(tag).send().await.expect("tag it");
    id
}

/// A VPC with one subnet in us-east-1a; returns (vpc, subnet).
async fn create_subnet(ec2: &aws_sdk_ec2::Client) -> (String, String) {
    let vpc = ec2.create_vpc().cidr_block("10.0.0.0/16").send().await.expect("create a VPC");
    let vpc = vpc.vpc.unwrap().vpc_id.unwrap();
    let subnet = ec2
        .create_subnet()
        .vpc_id(&vpc)
        .cidr_block("10.0.1.0/24")
        .availability_zone("us-east-1a")
        .send()
        .await
        .expect("create a subnet");
    (vpc, subnet.subnet.unwrap().subnet_id.unwrap())
}

/// What EC2 itself says of `id`: its availability zone's id (moto may give none).
async fn az_id_of(ec2: &aws_sdk_ec2::Client, id: &str) -> Option<String> {
    let out = ec2.describe_network_interfaces().network_interface_ids(id).send().await.unwrap();
    out.network_interfaces()[0].availability_zone_id().map(str::to_string)
}

fn snapshot<'a>(snapshots: &'a [Value], interface: &str, start: u64) -> &'a Value {
    snapshots
        .iter()
        .find(|s| s["interface_id"] == interface && s["window_start"] == start)
        .unwrap_or_else(|| panic!("no snapshot of {interface} at {start}"))
}

fn serve_args<'a>(state: &'a str, endpoint: &'a str) -> Vec<&'a str> {
    vec![
        "--window",
        "1m",
        "--slide",
        "1m",
        "--lateness",
        "0s",
        "--state-dir",
        state,
        "--ec2-regions",
        "us-east-1",
        "--ec2-endpoint-url",
        endpoint,
    ]
}

/// Refreshes are an hour apart, so an interface created after the start is found only by
/// the lookup its records trigger.
const ENV: [(&str, &str); 2] =
    [("VPCFLOWD_ENRICH__EC2__REFRESH", "1h"), ("VPCFLOWD_ENRICH__EC2__LOOKUP_INTERVAL", "1s")];

fn env() -> Vec<(&'static str, &'static str)> {
    AWS_ENV.iter().chain(&ENV).copied().collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ec2_labels_interfaces_decides_their_direction_and_is_cached_across_a_restart() {
    let moto = Moto::start();
    let ec2 = aws_sdk_ec2::Client::new(&sdk_config(&moto.endpoint));
    let (vpc, subnet) = create_subnet(&ec2).await;
    let web = create_interface(&ec2, &subnet, "10.0.1.10", "web frontend", "web-1").await;
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().to_str().unwrap();
    let endpoint = moto.endpoint.clone();
    let server = Server::start(&serve_args(state, &endpoint), &env());
    server.wait_for("the first refresh", |s| s["enrich"]["ec2_interfaces"] == 1).await;

    // Created after the refresh: only a lookup finds it. No region knows the third.
    let db = create_interface(&ec2, &subnet, "10.0.1.20", "", "db-1").await;
    let ghost = "eni-0000000000000dead";
    let t0 = 1_700_000_040;
    let first = vec![
        line(&web, "198.51.100.7", "10.0.1.10", 700, t0),
        line(&web, "10.0.1.10", "203.0.113.9", 300, t0),
        line(&db, "10.0.1.10", "10.0.1.20", 50, t0),
        line(ghost, "192.0.2.1", "192.0.2.2", 10, t0),
    ];
    let firehose = Firehose::new(&server.ingest, None);
    assert_eq!(firehose.send("r1", &wrapped(&first)).await.0, 200);
    let status = server
        .wait_for("the lookup", |s| {
            s["enrich"]["ec2_interfaces"] == 2 && s["enrich"]["ec2_not_found"] == 1
        })
        .await;
    assert!(status["enrich"]["ec2_lookups"].as_u64() >= Some(1), "{status:#}");
    assert_eq!(status["enrich"]["ec2_failures"], 0);
    // The next window's records of the looked-up interface are decided on its address.
    let t1 = t0 + 600;
    let later =
        vec![line(&db, "10.0.1.10", "10.0.1.20", 80, t1), line(ghost, "-", "-", 0, t1 + 600)];
    assert_eq!(firehose.send("r2", &wrapped(&later)).await.0, 200);
    server.wait_for("the windows to close", |s| s["latest_window"].as_u64() >= Some(t1)).await;
    // The overview's list names each interface as EC2 does.
    let url = format!("{}/api/v1/interfaces", server.admin);
    let listed: Vec<Value> = reqwest::get(url).await.unwrap().json().await.unwrap();
    let entry = listed.iter().find(|i| i["interface_id"] == web.as_str()).unwrap();
    assert_eq!(
        (entry["name"].as_str(), entry["vpc_id"].as_str()),
        (Some("web-1"), Some(vpc.as_str()))
    );
    let (exit, snapshots, _) = server.stop();
    assert!(exit.success());
    crate::common::assert_reads_back(&snapshots);

    let w = snapshot(&snapshots, &web, t0);
    assert_eq!(
        (w["vpc_id"].as_str(), w["subnet_id"].as_str(), w["name"].as_str()),
        (Some(vpc.as_str()), Some(subnet.as_str()), Some("web-1"))
    );
    assert_eq!(
        (w["interface_type"].as_str(), w["description"].as_str()),
        (Some("interface"), Some("web frontend"))
    );
    assert_eq!(w["az_id"].as_str().map(str::to_string), az_id_of(&ec2, &web).await);
    assert_eq!(w["direction_basis"], "configured");
    assert_eq!(
        (w["ingress"]["bytes"].as_u64(), w["egress"]["bytes"].as_u64()),
        (Some(700), Some(300))
    );
    assert_eq!(w["sources"][0]["address"], "198.51.100.7");
    let d = snapshot(&snapshots, &db, t1);
    assert_eq!(
        (d["name"].as_str(), d["direction_basis"].as_str()),
        (Some("db-1"), Some("configured"))
    );
    assert_eq!(d["ingress"]["bytes"], 80, "10.0.1.20 is db's own address");
    assert!(d.get("description").is_none(), "an empty description is none");
    let g = snapshot(&snapshots, ghost, t0);
    assert!(g.get("name").is_none() && g.get("vpc_id").is_none(), "{g:#}");

    // EC2 goes away; the restart labels from the cache and counts the failures.
    drop(moto);
    let server = Server::start(&serve_args(state, &endpoint), &env());
    let status = server.status().await;
    assert_eq!(
        (&status["enrich"]["ec2_cached_interfaces"], &status["enrich"]["ec2_interfaces"]),
        (&Value::from(2), &Value::from(2))
    );
    let t2 = t1 + 1200;
    let t3 = t2 + 600;
    let after = vec![
        line(&web, "198.51.100.8", "10.0.1.10", 900, t2),
        line(ghost, "-", "-", 0, t3),
        line(&web, "198.51.100.9", "10.0.1.10", 40, t3),
    ];
    assert_eq!(Firehose::new(&server.ingest, None).send("r3", &wrapped(&after)).await.0, 200);
    server.wait_for("a failed refresh", |s| s["enrich"]["ec2_failures"].as_u64() >= Some(1)).await;
    // The window still open carries the labels its snapshot will carry, from the cache.
    let path = format!("/api/v1/interfaces/{web}/open");
    let open = server.wait_for_at(&path, "web's open window", |o| o[0]["bytes"] == 40).await;
    let o = &open[0];
    assert_eq!(
        (o["window_start"].as_u64(), o["provisional"].as_bool(), o["name"].as_str()),
        (Some(t3), Some(true), Some("web-1"))
    );
    assert_eq!(
        (o["vpc_id"].as_str(), o["subnet_id"].as_str(), o["description"].as_str()),
        (Some(vpc.as_str()), Some(subnet.as_str()), Some("web frontend"))
    );
    let all = server.get("/api/v1/open").await;
    let newest = all.as_array().unwrap().iter().find(|o| o["interface_id"] == web.as_str());
    assert_eq!(newest.and_then(|o| o["name"].as_str()), Some("web-1"), "{all:#}");
    let (exit, snapshots, _) = server.stop();
    assert!(exit.success());
    let w = snapshot(&snapshots, &web, t2);
    assert_eq!(
        (w["name"].as_str(), w["direction_basis"].as_str()),
        (Some("web-1"), Some("configured"))
    );
    assert_eq!(w["sources"][0]["address"], "198.51.100.8");
}

/// With EC2 unreachable from the start and no cache, snapshots carry the records' own
/// fields, the server runs on, and the failures are counted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_ec2_snapshots_keep_the_records_own_fields() {
    const FORMAT: &str = "${version} ${account-id} ${interface-id} ${vpc-id} ${srcaddr} ${dstaddr} ${srcport} ${dstport} ${protocol} ${packets} ${bytes} ${start} ${end} ${action} ${log-status}";
    let endpoint = crate::common::unreachable_url();
    let args = [
        "--lateness",
        "0s",
        "-f",
        FORMAT,
        "--ec2-regions",
        "us-east-1",
        "--ec2-endpoint-url",
        &endpoint,
    ];
    let server = Server::start(&args, &AWS_ENV);
    let lines = [
        "5 123456789012 eni-0a01 vpc-0aa 198.51.100.1 10.0.0.1 40000 443 6 1 100 1700000040 1700000050 ACCEPT OK",
        "5 123456789012 eni-0a09 - 198.51.100.1 10.0.0.9 40000 443 6 1 100 1700000640 1700000650 ACCEPT OK",
    ]
    .map(String::from);
    assert_eq!(Firehose::new(&server.ingest, None).send("r1", &wrapped(&lines)).await.0, 200);
    let status = server
        .wait_for("a failed refresh", |s| s["enrich"]["ec2_failures"].as_u64() >= Some(1))
        .await;
    assert_eq!(status["enrich"]["ec2_interfaces"], 0);
    let (exit, snapshots, _) = server.stop();
    assert!(exit.success());
    let a = snapshots.iter().find(|s| s["interface_id"] == "eni-0a01").unwrap();
    assert_eq!(a["vpc_id"], "vpc-0aa");
    assert!(a.get("name").is_none());
}
