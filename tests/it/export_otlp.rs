//! OTLP export against an in-process receiver (gRPC and HTTP/protobuf) built on
//! opentelemetry-proto's generated services: every exported value must equal the snapshot's.
//!
//! The expected points are written out here from the snapshot JSON and the README's instrument
//! list, independently of the exporter's own measure table.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

use crate::common::otlp::{self, Num, Receiver};
use serde_json::Value;
use vpcflowd::decode::{LayoutSet, LineContext, parse_line};
use vpcflowd::export::config::OtlpProtocol;
use vpcflowd::export::{ExportConfig, ExportStats, ExporterOptions, WindowExporter};
use vpcflowd::generate::{Generator, GeneratorConfig};
use vpcflowd::settings::WindowSettings;
use vpcflowd::window::{Engine, Snapshot};

const REGION: &str = "eu-west-1";

/// Closed snapshots of the real engine over generated traffic (several windows, ~30
/// interfaces, more sources than are listed).
fn snapshots(records: usize) -> Vec<Snapshot> {
    let settings = WindowSettings {
        region: Some(REGION.into()),
        lateness: Duration::from_secs(0),
        ..WindowSettings::default()
    };
    let (mut router, mut rx, join) =
        Engine::start(settings.to_engine_config().unwrap()).into_parts();
    let collector = std::thread::spawn(move || {
        let mut out = Vec::new();
        while let Some(batch) = rx.blocking_recv() {
            out.extend(batch);
        }
        out
    });
    let mut g = Generator::new(GeneratorConfig {
        seed: 7,
        interfaces: 30,
        sources_per_interface: 40,
        records_per_second: 100.0,
        disorder_secs: 0,
        ..GeneratorConfig::default()
    });
    let layouts = LayoutSet::default();
    let layout = vpcflowd::decode::Layout::default_format();
    let mut line = String::new();
    for _ in 0..records {
        line.clear();
        g.next_record().render(&layout, &mut line);
        let p = parse_line(&layouts, line.as_bytes()).unwrap();
        router.push(&p.record, &LineContext::default(), 0).unwrap();
    }
    router.finish();
    join.join();
    collector.join().unwrap()
}

type Key = (u64, String, BTreeMap<String, String>);

fn attrs(pairs: &[(&str, String)]) -> BTreeMap<String, String> {
    pairs.iter().map(|(k, v)| (k.to_string(), v.clone())).collect()
}

fn int(v: &Value) -> Num {
    Num::Int(v.as_u64().unwrap() as i64)
}

/// The traffic fields of an interface and of each of its directions.
const TRAFFIC: [&str; 6] =
    ["bytes", "packets", "flows", "rejected_flows", "rejected_packets", "rejected_bytes"];

fn share(part: &Value, whole: &Value) -> Num {
    let whole = whole.as_u64().unwrap();
    Num::Float(if whole == 0 { 0.0 } else { 100.0 * part.as_u64().unwrap() as f64 / whole as f64 })
}

fn transport(p: u64) -> String {
    match p {
        1 => "icmp".into(),
        6 => "tcp".into(),
        17 => "udp".into(),
        58 => "ipv6-icmp".into(),
        n => n.to_string(),
    }
}

/// Every point the README says a snapshot produces, keyed by (window start, name, attributes).
fn expected(snapshots: &[Snapshot]) -> BTreeMap<Key, Num> {
    let mut out = BTreeMap::new();
    for s in snapshots {
        let j = serde_json::to_value(s).unwrap();
        let w = s.window_start;
        let mut base = vec![("interface.id", j["interface_id"].as_str().unwrap().to_string())];
        if let Some(r) = j["region"].as_str() {
            base.push(("cloud.region", r.to_string()));
        }
        if let Some(a) = j["account_id"].as_str() {
            base.push(("cloud.account.id", a.to_string()));
        }
        let labels = [
            ("vpc_id", "aws.vpc.id"),
            ("subnet_id", "aws.subnet.id"),
            ("instance_id", "aws.ec2.instance.id"),
            ("az_id", "aws.az.id"),
        ];
        for (field, attribute) in labels {
            if let Some(v) = j[field].as_str() {
                base.push((attribute, v.to_string()));
            }
        }
        let mut put = |name: &str, extra: Option<(&str, String)>, v: Num| {
            let mut a = base.clone();
            a.extend(extra);
            assert!(out.insert((w, name.to_string(), attrs(&a)), v).is_none(), "{name} twice");
        };
        let records = ["nodata_records", "skipdata_records", "late_records"];
        for f in TRAFFIC.iter().chain(&records) {
            put(&format!("vpcflowd.interface.{f}"), None, int(&j[f]));
        }
        for (direction, value) in [("ingress", "receive"), ("egress", "transmit")] {
            let key = Some(("network.io.direction", value.to_string()));
            for f in TRAFFIC {
                put(&format!("vpcflowd.interface.io.{f}"), key.clone(), int(&j[direction][f]));
            }
        }
        for src in j["sources"].as_array().unwrap() {
            let key = Some(("source.address", src["address"].as_str().unwrap().to_string()));
            for f in ["bytes", "packets", "flows", "rejected_flows", "rejected_bytes"] {
                put(&format!("vpcflowd.source.{f}"), key.clone(), int(&src[f]));
            }
            put(
                "vpcflowd.source.traffic_share",
                key.clone(),
                Num::Float(src["traffic_share_pct"].as_f64().unwrap()),
            );
            let ints = [
                ("rejected_packets", "rejected_packets"),
                ("active_panes", "active_panes"),
                ("distinct_destination_ports", "distinct_destination_ports"),
                ("distinct_destination_addresses", "distinct_destination_addresses"),
            ];
            for (name, field) in ints {
                put(&format!("vpcflowd.source.{name}"), key.clone(), int(&src[field]));
            }
            for (name, field) in
                [("reject_ratio", "reject_ratio_pct"), ("peak_pane_share", "peak_pane_share_pct")]
            {
                put(
                    &format!("vpcflowd.source.{name}"),
                    key.clone(),
                    Num::Float(src[field].as_f64().unwrap()),
                );
            }
            // Values a source may lack are not exported for it.
            for (name, field) in
                [("baseline_bytes", "baseline_bytes"), ("syn_only_flows", "syn_only_flows")]
            {
                if !src[field].is_null() {
                    put(&format!("vpcflowd.source.{name}"), key.clone(), int(&src[field]));
                }
            }
            if let Some(ratio) = src["spike_ratio"].as_f64() {
                put("vpcflowd.source.spike_ratio", key.clone(), Num::Float(ratio));
            }
            if let Some(share) = src["top_destinations"][0]["share_pct"].as_f64() {
                put("vpcflowd.source.top_destination_share", key, Num::Float(share));
            }
        }
        let kinds =
            ["port_scan", "outbound_scan", "denied_outbound", "nacl_asymmetry", "spike", "sweep"];
        for kind in kinds {
            let n = j["findings"].as_array().unwrap().iter().filter(|f| f["kind"] == kind).count();
            let key = Some(("vpcflowd.finding.kind", kind.to_string()));
            put("vpcflowd.findings", key, Num::Int(n as i64));
        }
        for src in j["rejected_sources"].as_array().unwrap() {
            let key = Some(("source.address", src["address"].as_str().unwrap().to_string()));
            let fields = [
                "rejected_flows",
                "rejected_packets",
                "rejected_bytes",
                "flows",
                "distinct_destination_ports",
                "distinct_destination_addresses",
            ];
            for f in fields {
                put(&format!("vpcflowd.rejected_source.{f}"), key.clone(), int(&src[f]));
            }
            if !src["syn_only_flows"].is_null() {
                put("vpcflowd.rejected_source.syn_only_flows", key, int(&src["syn_only_flows"]));
            }
        }
        for dst in j["destinations"].as_array().unwrap() {
            let key = Some(("destination.address", dst["address"].as_str().unwrap().to_string()));
            for f in ["bytes", "packets", "flows", "rejected_flows"] {
                put(&format!("vpcflowd.destination.{f}"), key.clone(), int(&dst[f]));
            }
            put(
                "vpcflowd.destination.traffic_share",
                key,
                share(&dst["bytes"], &j["egress"]["bytes"]),
            );
        }
        for p in j["protocols"].as_array().unwrap() {
            let key = Some(("network.transport", transport(p["protocol"].as_u64().unwrap())));
            for f in ["bytes", "packets", "flows", "rejected_flows"] {
                put(&format!("vpcflowd.protocol.{f}"), key.clone(), int(&p[f]));
            }
            put("vpcflowd.protocol.traffic_share", key, share(&p["bytes"], &j["bytes"]));
        }
        for (group, field) in
            [("other_sources", "other_sources"), ("other_destinations", "other_destinations")]
        {
            for f in ["count", "bytes", "packets", "flows"] {
                put(&format!("vpcflowd.{group}.{f}"), None, int(&j[field][f]));
            }
        }
    }
    // Each window's roll-ups: its interfaces summed by region, account, VPC and subnet.
    let kinds = [
        ("region", "region", "cloud.region"),
        ("account", "account_id", "cloud.account.id"),
        ("vpc", "vpc_id", "aws.vpc.id"),
        ("subnet", "subnet_id", "aws.subnet.id"),
    ];
    let mut sums: BTreeMap<(u64, &str, &str, String), [i64; 3]> = BTreeMap::new();
    for s in snapshots {
        let j = serde_json::to_value(s).unwrap();
        for (kind, field, attribute) in kinds {
            let Some(id) = j[field].as_str() else { continue };
            let sum = sums.entry((s.window_start, kind, attribute, id.to_string())).or_default();
            sum[0] += j["bytes"].as_i64().unwrap();
            sum[1] += j["rejected_flows"].as_i64().unwrap();
            sum[2] += 1;
        }
    }
    for ((w, kind, attribute, id), sum) in sums {
        for (name, v) in ["bytes", "rejected_flows", "interfaces"].into_iter().zip(sum) {
            let key = (w, format!("vpcflowd.{kind}.{name}"), attrs(&[(attribute, id.clone())]));
            assert!(out.insert(key, Num::Int(v)).is_none());
        }
    }
    out
}

/// Every received point keyed like [`expected`], with the window start its request declares;
/// also checks each request's own invariants.
fn received(r: &Receiver, max_points: usize) -> (BTreeMap<Key, Num>, usize) {
    let got = r.inbox.received.lock().unwrap();
    let mut out = BTreeMap::new();
    let mut total = 0;
    for req in &got.metrics {
        let points = otlp::points(req);
        let find =
            |name: &str| points.iter().find(|((n, _), _)| n == name).map(|(_, v)| *v).expect(name);
        let (Num::Int(start), Num::Int(end)) =
            (find("vpcflowd.window.start"), find("vpcflowd.window.end"))
        else {
            panic!("window bounds are integers")
        };
        assert_eq!(end - start, 300, "the request's window is 5 minutes");
        let interfaces: BTreeSet<&str> = points
            .iter()
            .filter_map(|((_, a), _)| a.get("interface.id").map(String::as_str))
            .collect();
        assert!(
            points.len() <= max_points + 2 || interfaces.len() == 1,
            "a request holds at most max_points_per_request points or one interface ({} points, {} interfaces)",
            points.len(),
            interfaces.len()
        );
        for ((name, a), v) in points {
            total += 1;
            if name.starts_with("vpcflowd.window.") {
                continue;
            }
            assert!(
                out.insert((start as u64, name.clone(), a.clone()), v).is_none(),
                "{name} {a:?} sent twice"
            );
        }
        let resource = otlp::resource(req);
        assert_eq!(resource["service.name"], "vpcflowd");
        assert_eq!(resource["service.version"], env!("CARGO_PKG_VERSION"));
        assert_eq!(resource["service.instance.id"], "test-instance");
        assert_eq!(resource["cloud.provider"], "aws");
        assert_eq!(resource["cloud.region"], REGION);
        assert_eq!(resource["cloud.account.id"], "111122223333");
    }
    (out, total)
}

/// The flows every snapshot should send as log records (all of them: the limit is above
/// top_sources × top_flows), as (interface, window end, flow attributes).
fn expected_flows(snapshots: &[Snapshot]) -> BTreeSet<(String, u64, BTreeMap<String, String>)> {
    let mut out = BTreeSet::new();
    for s in snapshots {
        let j = serde_json::to_value(s).unwrap();
        for src in j["sources"].as_array().unwrap() {
            for f in src["top_flows"].as_array().unwrap() {
                let mut a = BTreeMap::new();
                a.insert("source.address".to_string(), f["srcaddr"].as_str().unwrap().to_string());
                for (k, field) in [("source.port", "srcport"), ("destination.port", "dstport")] {
                    if let Some(p) = f[field].as_u64() {
                        a.insert(k.to_string(), p.to_string());
                    }
                }
                if let Some(d) = f["dstaddr"].as_str() {
                    a.insert("destination.address".into(), d.into());
                }
                if let Some(p) = f["protocol"].as_u64() {
                    a.insert("network.transport".into(), transport(p));
                }
                if let Some(act) = f["action"].as_str() {
                    a.insert("vpcflowd.flow.action".into(), act.into());
                }
                match f["direction"].as_str() {
                    Some("ingress") => a.insert("network.io.direction".into(), "receive".into()),
                    Some("egress") => a.insert("network.io.direction".into(), "transmit".into()),
                    _ => None,
                };
                if let Some(via) = f["via"].as_str() {
                    a.insert("vpcflowd.flow.via".into(), via.into());
                }
                a.insert("vpcflowd.flow.bytes".into(), f["bytes"].to_string());
                a.insert("vpcflowd.flow.packets".into(), f["packets"].to_string());
                source_summary(src, &mut a);
                out.insert((s.interface_id.to_string(), s.window_end, a));
            }
        }
    }
    out
}

/// The attributes a flow's log record carries about its source.
fn source_summary(src: &Value, a: &mut BTreeMap<String, String>) {
    let mut put = |k: &str, v: String| a.insert(format!("vpcflowd.source.{k}"), v);
    if let Some(top) = src["top_destinations"].get(0) {
        put("top_destination.address", top["address"].as_str().unwrap().to_string());
        put("top_destination.share", top["share_pct"].as_f64().unwrap().to_string());
    }
    put("distinct_destination_ports", src["distinct_destination_ports"].to_string());
    put("distinct_destination_addresses", src["distinct_destination_addresses"].to_string());
    put("reject_ratio", src["reject_ratio_pct"].as_f64().unwrap().to_string());
    if let Some(ratio) = src["spike_ratio"].as_f64() {
        put("spike_ratio", ratio.to_string());
    }
}

fn received_flows(r: &Receiver) -> Vec<(String, u64, BTreeMap<String, String>)> {
    let got = r.inbox.received.lock().unwrap();
    let mut out = Vec::new();
    for req in &got.logs {
        for rl in &req.resource_logs {
            for sl in &rl.scope_logs {
                for rec in sl.log_records.iter().filter(|r| r.event_name != "vpcflowd.finding") {
                    let mut a = otlp::attributes(&rec.attributes);
                    assert_eq!(rec.event_name, "vpcflowd.top_flow");
                    let iface = a.remove("interface.id").unwrap();
                    let end: u64 = a.remove("vpcflowd.window.end").unwrap().parse().unwrap();
                    let start: u64 = a.remove("vpcflowd.window.start").unwrap().parse().unwrap();
                    assert_eq!(end - start, 300);
                    assert_eq!(
                        rec.time_unix_nano,
                        end * 1_000_000_000,
                        "stamped with the window end"
                    );
                    a.remove("cloud.region");
                    a.remove("cloud.account.id");
                    a.remove("vpcflowd.flow.protocol");
                    out.push((iface, end, a));
                }
            }
        }
    }
    out
}

/// Every finding record received, as (interface, window end, kind, subject, value, body).
fn received_findings(r: &Receiver) -> Vec<(String, u64, String, String, String, String)> {
    let got = r.inbox.received.lock().unwrap();
    let mut out = Vec::new();
    for req in &got.logs {
        for rl in &req.resource_logs {
            for sl in &rl.scope_logs {
                for rec in sl.log_records.iter().filter(|r| r.event_name == "vpcflowd.finding") {
                    let a = otlp::attributes(&rec.attributes);
                    let end: u64 = a["vpcflowd.window.end"].parse().unwrap();
                    assert_eq!(
                        rec.time_unix_nano,
                        end * 1_000_000_000,
                        "stamped with the window end"
                    );
                    out.push((
                        a["interface.id"].clone(),
                        end,
                        a["vpcflowd.finding.kind"].clone(),
                        a["vpcflowd.finding.subject"].clone(),
                        a["vpcflowd.finding.value"].clone(),
                        otlp::text(&rec.body),
                    ));
                }
            }
        }
    }
    out.sort();
    out
}

/// The finding records the snapshots should send, as [`received_findings`] gives them.
fn expected_findings(snapshots: &[Snapshot]) -> Vec<(String, u64, String, String, String, String)> {
    let mut out: Vec<_> = snapshots
        .iter()
        .flat_map(|s| {
            s.findings.iter().map(move |f| {
                let value = f.value.to_string();
                let (kind, subject, detail) =
                    (f.kind.to_string(), f.subject.clone(), f.detail.clone());
                (s.interface_id.to_string(), s.window_end, kind, subject, value, detail)
            })
        })
        .collect();
    out.sort();
    out
}

fn config(r: &Receiver, protocol: OtlpProtocol) -> ExportConfig {
    ExportConfig {
        otlp_endpoint: Some(r.endpoint.clone()),
        otlp_protocol: protocol,
        max_points_per_request: 1_000,
        flow_logs_per_interface: 1_000,
        instance_id: Some("test-instance".into()),
        account_id: Some("111122223333".into()),
        ..ExportConfig::default()
    }
}

async fn export_equals_snapshots(r: Receiver, protocol: OtlpProtocol) {
    let snapshots = tokio::task::spawn_blocking(|| snapshots(60_000)).await.unwrap();
    let windows: BTreeSet<u64> = snapshots.iter().map(|s| s.window_start).collect();
    assert!(windows.len() >= 5, "several windows ({})", windows.len());
    let config = config(&r, protocol);
    let stats = Arc::new(ExportStats::default());
    let exporter = WindowExporter::start(
        &config,
        &ExporterOptions { default_region: Some(REGION.into()), ..ExporterOptions::default() },
        stats.clone(),
    )
    .unwrap();
    let batch: Vec<Arc<Snapshot>> = snapshots.iter().cloned().map(Arc::new).collect();
    // Two batches, split between windows as the engine sends them (whole windows per close).
    let middle = batch[batch.len() / 2].window_start;
    let (a, b) = batch.split_at(batch.iter().position(|s| s.window_start == middle).unwrap());
    exporter.offer(a);
    exporter.offer(b);
    tokio::task::spawn_blocking(move || exporter.finish(Duration::from_secs(60))).await.unwrap();

    let want = expected(&snapshots);
    let (got, total) = received(&r, config.max_points_per_request);
    let per_name = |keys: Vec<&Key>| {
        let mut counts: BTreeMap<String, usize> = BTreeMap::new();
        for (_, name, _) in keys {
            *counts.entry(name.clone()).or_default() += 1;
        }
        counts
    };
    let (got_names, want_names) = (per_name(got.keys().collect()), per_name(want.keys().collect()));
    assert_eq!(got_names, want_names, "points per instrument");
    assert_eq!(got.len(), want.len(), "as many points as the snapshots hold");
    for (k, v) in &want {
        assert_eq!(got.get(k), Some(v), "{k:?}");
    }
    assert_eq!(stats.points_exported.load(Relaxed), total as u64);
    let want_findings = expected_findings(&snapshots);
    assert!(!want_findings.is_empty(), "the generated traffic raises findings");
    assert_eq!(received_findings(&r), want_findings, "one log record per finding");
    assert_eq!(stats.finding_logs_exported.load(Relaxed), want_findings.len() as u64);
    assert_eq!(stats.points_dropped.load(Relaxed), 0);
    assert_eq!(stats.windows_exported.load(Relaxed), windows.len() as u64);
    assert!(
        r.inbox.received.lock().unwrap().metrics.len() > windows.len(),
        "windows were split into requests"
    );

    let want_flows = expected_flows(&snapshots);
    let got_flows = received_flows(&r);
    assert_eq!(got_flows.len(), want_flows.len(), "one log record per listed flow, none twice");
    let got_flows: BTreeSet<_> = got_flows.into_iter().collect();
    let missing: Vec<_> = want_flows.difference(&got_flows).take(3).collect();
    let extra: Vec<_> = got_flows.difference(&want_flows).take(3).collect();
    assert!(missing.is_empty() && extra.is_empty(), "missing {missing:?}, unexpected {extra:?}");
    assert_eq!(stats.flow_logs_exported.load(Relaxed), want_flows.len() as u64);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_export_equals_the_snapshots() {
    let r = otlp::grpc().await;
    export_equals_snapshots(r, OtlpProtocol::Grpc).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_export_equals_the_snapshots() {
    let r = otlp::http().await;
    export_equals_snapshots(r, OtlpProtocol::Http).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flow_logs_are_the_largest_flows_of_each_interface() {
    let r = otlp::grpc().await;
    let snapshots = tokio::task::spawn_blocking(|| snapshots(20_000)).await.unwrap();
    let config = ExportConfig { flow_logs_per_interface: 3, ..config(&r, OtlpProtocol::Grpc) };
    let stats = Arc::new(ExportStats::default());
    let exporter =
        WindowExporter::start(&config, &ExporterOptions::default(), stats.clone()).unwrap();
    let batch: Vec<Arc<Snapshot>> = snapshots.iter().cloned().map(Arc::new).collect();
    exporter.offer(&batch);
    tokio::task::spawn_blocking(move || exporter.finish(Duration::from_secs(60))).await.unwrap();
    let got = received_flows(&r);
    for s in &snapshots {
        let mut all: Vec<u64> =
            s.sources.iter().flat_map(|src| src.top_flows.iter().map(|f| f.bytes)).collect();
        all.sort_unstable_by(|a, b| b.cmp(a));
        all.truncate(3);
        let mut sent: Vec<u64> = got
            .iter()
            .filter(|(i, end, _)| **i == *s.interface_id && *end == s.window_end)
            .map(|(_, _, a)| a["vpcflowd.flow.bytes"].parse().unwrap())
            .collect();
        sent.sort_unstable_by(|a, b| b.cmp(a));
        assert_eq!(sent, all, "{} {}", s.interface_id, s.window_start);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_collector_drops_and_counts_without_blocking() {
    let endpoint = crate::common::unreachable_url();
    let snapshots = tokio::task::spawn_blocking(|| snapshots(20_000)).await.unwrap();
    let windows: BTreeSet<u64> = snapshots.iter().map(|s| s.window_start).collect();
    let config = ExportConfig {
        otlp_endpoint: Some(endpoint),
        otlp_timeout: Duration::from_secs(2),
        otlp_max_retries: 0,
        queue_windows: 1,
        max_points_per_request: 1_000,
        ..ExportConfig::default()
    };
    let stats = Arc::new(ExportStats::default());
    let exporter =
        WindowExporter::start(&config, &ExporterOptions::default(), stats.clone()).unwrap();
    // One batch per window, offered as fast as possible: the queue (1) fills while the worker
    // waits on the dead endpoint, and offer never blocks.
    let mut offered_points = 0;
    for w in &windows {
        let batch: Vec<Arc<Snapshot>> =
            snapshots.iter().filter(|s| s.window_start == *w).cloned().map(Arc::new).collect();
        offered_points +=
            batch.iter().map(|s| vpcflowd::export::measures::points(s) as u64).sum::<u64>();
        exporter.offer(&batch);
    }
    tokio::task::spawn_blocking(move || exporter.finish(Duration::from_secs(60))).await.unwrap();
    let failed = stats.windows_failed.load(Relaxed);
    let dropped = stats.windows_dropped.load(Relaxed);
    assert_eq!(stats.windows_exported.load(Relaxed), 0);
    assert_eq!(
        failed + dropped,
        windows.len() as u64,
        "every window is failed or dropped, counted"
    );
    assert!(failed >= 1 && stats.metric_errors.load(Relaxed) == failed);
    assert_eq!(stats.points_exported.load(Relaxed), 0);
    // Every point is accounted for (plus the two window-bound points of each failed request).
    assert!(stats.points_dropped.load(Relaxed) >= offered_points);
}

/// Flow-log lines for `serve`: eleven minutes of two interfaces, so that windows close while it
/// runs (`--lateness 0s`).
fn serve_lines() -> Vec<String> {
    const T0: u64 = 1_700_000_040;
    let mut lines = Vec::new();
    for k in 0..11 {
        let t = T0 + 60 * k;
        for (iface, src, bytes) in
            [("eni-0a", "10.0.0.1", 5_000), ("eni-0a", "10.0.0.2", 700), ("eni-0b", "10.0.0.3", 42)]
        {
            lines.push(format!(
                "2 123456789012 {iface} {src} 10.0.1.1 55555 443 6 10 {bytes} {t} {} ACCEPT OK",
                t + 59
            ));
        }
    }
    lines
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_exports_every_closed_window_and_its_self_metrics() {
    use crate::common::serve::{Firehose, Server, wrapped};
    let r = otlp::grpc().await;
    let server = Server::start(
        &["--lateness", "0s", "--otlp-endpoint", &r.endpoint, "--otlp-interval", "1h"],
        &[],
    );
    let lines = serve_lines();
    let firehose = Firehose::new(&server.ingest, None);
    for (i, chunk) in lines.chunks(9).enumerate() {
        assert_eq!(firehose.send(&format!("r{i}"), &wrapped(chunk)).await.0, 200);
    }
    // A graceful stop closes the remaining windows, exports them and pushes the self-metrics.
    let (status, snapshots, stderr) =
        tokio::task::spawn_blocking(move || server.stop()).await.unwrap();
    assert!(status.success(), "{stderr:?}");
    assert!(stderr.iter().all(|l| !l.contains("WARN") || l.contains("access keys")), "{stderr:#?}");
    let mut want = BTreeMap::new();
    for s in &snapshots {
        let w = s["window_start"].as_u64().unwrap();
        let iface = s["interface_id"].as_str().unwrap().to_string();
        want.insert((w, iface.clone(), "vpcflowd.interface.bytes"), s["bytes"].as_u64().unwrap());
        for src in s["sources"].as_array().unwrap() {
            want.insert(
                (
                    w,
                    format!("{iface}/{}", src["address"].as_str().unwrap()),
                    "vpcflowd.source.bytes",
                ),
                src["bytes"].as_u64().unwrap(),
            );
        }
    }
    assert!(want.len() > 20, "several windows closed");
    let got = r.inbox.received.lock().unwrap();
    let mut seen = BTreeMap::new();
    let mut self_records = None;
    for req in &got.metrics {
        let points = otlp::points(req);
        if let Some((_, Num::Int(v))) =
            points.iter().find(|((n, _), _)| n == "vpcflowd.ingest.records")
        {
            self_records = Some(*v);
        }
        let Some((_, Num::Int(w))) = points.iter().find(|((n, _), _)| n == "vpcflowd.window.start")
        else {
            continue;
        };
        for ((name, a), v) in &points {
            let Num::Int(v) = v else { continue };
            let key = match (name.as_str(), a.get("source.address")) {
                ("vpcflowd.interface.bytes", _) => a["interface.id"].clone(),
                ("vpcflowd.source.bytes", Some(src)) => format!("{}/{src}", a["interface.id"]),
                _ => continue,
            };
            let name = if name == "vpcflowd.interface.bytes" {
                "vpcflowd.interface.bytes"
            } else {
                "vpcflowd.source.bytes"
            };
            assert!(seen.insert((*w as u64, key, name), *v as u64).is_none());
        }
    }
    let diff: Vec<_> = want.iter().filter(|(k, v)| seen.get(k) != Some(v)).take(5).collect();
    let extra: Vec<_> = seen.keys().filter(|k| !want.contains_key(k)).take(5).collect();
    assert!(
        diff.is_empty() && extra.is_empty(),
        "not as snapshots: {diff:?}; unexpected {extra:?}"
    );
    assert_eq!(self_records, Some(lines.len() as i64), "self-metrics pushed at shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_keeps_ingesting_when_the_collector_is_unreachable() {
    use crate::common::serve::{Firehose, Server, wrapped};
    let dead = crate::common::unreachable_url();
    let server = Server::start(
        &["--lateness", "0s", "--otlp-endpoint", &dead, "--otlp-protocol", "http"],
        &[("VPCFLOWD_EXPORT__OTLP_MAX_RETRIES", "0"), ("VPCFLOWD_EXPORT__OTLP_TIMEOUT", "2s")],
    );
    let lines = serve_lines();
    let firehose = Firehose::new(&server.ingest, None);
    for (i, chunk) in lines.chunks(3).enumerate() {
        assert_eq!(firehose.send(&format!("r{i}"), &wrapped(chunk)).await.0, 200, "ingest goes on");
    }
    // Windows up to the watermark close and fail to export; wait for the counters (bounded).
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    let status = loop {
        let status = server.status().await;
        let e = &status["export"];
        let closed = status["engine"]["windows_closed"].as_u64().unwrap();
        let accounted =
            e["windows_failed"].as_u64().unwrap() + e["windows_dropped"].as_u64().unwrap();
        if closed > 0 && accounted == closed && e["queue_depth"] == 0 {
            break status;
        }
        assert!(std::time::Instant::now() < deadline, "export never gave up: {status}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(status["ingest"]["records"], lines.len() as u64);
    assert_eq!(status["export"]["windows_exported"], 0);
    assert!(status["export"]["metric_errors"].as_u64().unwrap() >= 1);
    assert!(status["export"]["points_dropped"].as_u64().unwrap() > 0);
    let metrics =
        reqwest::get(format!("{}/metrics", server.admin)).await.unwrap().text().await.unwrap();
    assert!(
        metrics.lines().any(|l| l.starts_with("vpcflowd_export_errors_total{signal=\"metrics\"}")
            && !l.ends_with(" 0")),
        "the failures show on /metrics"
    );
    let (status, _, _) = tokio::task::spawn_blocking(move || server.stop()).await.unwrap();
    assert!(status.success(), "shutdown stays within its budget");
}
