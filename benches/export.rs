//! Export cost of one closed window of 10,000 interfaces × 15 listed sources (each with 10 top
//! flows, 15 destinations and 3 protocols): OTLP/gRPC to an in-process receiver (metrics and
//! the default 10 flow log records per interface), and one `/metrics` render.
//!
//! `cargo bench --bench export` prints, per run: wall time, data points and requests sent, and
//! the peak heap the export added above what the snapshots already hold (a counting global
//! allocator). Best of three runs.

use std::alloc::{GlobalAlloc, Layout, System};
use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
use std::time::{Duration, Instant};

use opentelemetry_proto::tonic::collector::logs::v1::logs_service_server::{
    LogsService, LogsServiceServer,
};
use opentelemetry_proto::tonic::collector::logs::v1::{
    ExportLogsServiceRequest, ExportLogsServiceResponse,
};
use opentelemetry_proto::tonic::collector::metrics::v1::metrics_service_server::{
    MetricsService, MetricsServiceServer,
};
use opentelemetry_proto::tonic::collector::metrics::v1::{
    ExportMetricsServiceRequest, ExportMetricsServiceResponse,
};
use vpcflowd::decode::Action;
use vpcflowd::export::{ExportConfig, ExportStats, ExporterOptions, WindowExporter};
use vpcflowd::window::Snapshot;
use vpcflowd::window::diagnosis::DestinationOfSource;
use vpcflowd::window::direction::Direction;
use vpcflowd::window::pane::DirectionTotals;
use vpcflowd::window::snapshot::{
    Approximation, DestinationSnapshot, FlowSnapshot, Other, ProtocolSnapshot, SourceSnapshot,
};

struct Peak;
static CURRENT: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

unsafe impl GlobalAlloc for Peak {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        let now = CURRENT.fetch_add(l.size(), Relaxed) + l.size();
        PEAK.fetch_max(now, Relaxed);
        unsafe { System.alloc(l) }
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        CURRENT.fetch_sub(l.size(), Relaxed);
        unsafe { System.dealloc(p, l) }
    }
    unsafe fn realloc(&self, p: *mut u8, l: Layout, new: usize) -> *mut u8 {
        if new >= l.size() {
            let now = CURRENT.fetch_add(new - l.size(), Relaxed) + new - l.size();
            PEAK.fetch_max(now, Relaxed);
        } else {
            CURRENT.fetch_sub(l.size() - new, Relaxed);
        }
        unsafe { System.realloc(p, l, new) }
    }
}

#[global_allocator]
static GLOBAL: Peak = Peak;

/// Heap added above the level at the start of `f`, at its peak.
fn peak_during<T>(f: impl FnOnce() -> T) -> (T, usize) {
    let base = CURRENT.load(Relaxed);
    PEAK.store(base, Relaxed);
    let out = f();
    (out, PEAK.load(Relaxed).saturating_sub(base))
}

const INTERFACES: u32 = 10_000;
const SOURCES: u32 = 15;

fn ip(a: u32) -> IpAddr {
    IpAddr::V4(Ipv4Addr::from(a))
}

fn totals(bytes: u64) -> DirectionTotals {
    DirectionTotals {
        packets: bytes / 1000,
        bytes,
        flows: bytes / 10_000,
        rejected_flows: 25,
        rejected_packets: 30,
        rejected_bytes: 2500,
    }
}

fn window() -> Vec<Arc<Snapshot>> {
    (0..INTERFACES)
        .map(|i| {
            let sources: Vec<SourceSnapshot> = (0..SOURCES)
                .map(|s| SourceSnapshot {
                    aws_service: None,
                    aws_region: None,
                    address: ip(0x0a00_0000 + i * 64 + s),
                    packets: 1000 - u64::from(s),
                    bytes: 1_000_000 - u64::from(s) * 1000,
                    flows: 100,
                    rejected_flows: 3,
                    rejected_bytes: 300,
                    traffic_share_pct: 5.0,
                    rejected_packets: 3,
                    reject_ratio_pct: 3.0,
                    pane_bytes: vec![200_000; 5],
                    active_panes: 5,
                    peak_pane_share_pct: 20.0,
                    baseline_bytes: Some(900_000),
                    spike_ratio: Some(1.1),
                    top_destinations: vec![DestinationOfSource {
                        address: ip(0xac10_0000 + i),
                        packets: 1000,
                        bytes: 1_000_000,
                        flows: 100,
                        rejected_flows: 3,
                        share_pct: 100.0,
                    }],
                    distinct_destination_ports: 1,
                    distinct_destination_addresses: 1,
                    distinct_approximate: false,
                    syn_only_flows: None,
                    top_flows: (0..10)
                        .map(|f| FlowSnapshot {
                            direction: Direction::Ingress,
                            srcaddr: ip(0x0a00_0000 + i * 64 + s),
                            via: None,
                            srcport: Some(40_000 + f),
                            dstaddr: Some(ip(0xac10_0000 + i)),
                            dstport: Some(443),
                            protocol: Some(6),
                            action: Some(Action::Accept),
                            packets: 10,
                            bytes: 10_000 - u64::from(f),
                        })
                        .collect(),
                })
                .collect();
            Arc::new(Snapshot {
                window_start: 1_700_000_040,
                window_end: 1_700_000_340,
                interface_id: format!("eni-{i:017x}").into(),
                account_id: Some("123456789012".into()),
                region: Some("eu-west-1".into()),
                vpc_id: Some("vpc-0123456789abcdef0".into()),
                subnet_id: Some("subnet-0123456789abcdef0".into()),
                instance_id: None,
                az_id: Some("euw1-az1".into()),
                name: None,
                interface_type: None,
                description: None,
                packets: 20_000,
                bytes: 20_000_000,
                flows: 2000,
                rejected_flows: 50,
                rejected_packets: 60,
                rejected_bytes: 5000,
                nodata_records: 1,
                skipdata_records: 0,
                late_records: 0,
                direction_basis: "inferred",
                local_addresses: vec![ip(0xac10_0000 + i)],
                ingress: totals(10_000_000),
                egress: totals(9_000_000),
                unknown_direction: totals(1_000_000),
                sources,
                rejected_sources: Vec::new(),
                denied_outbound: Vec::new(),
                asymmetric_flows: Vec::new(),
                findings: Vec::new(),
                finding_counts: Vec::new(),
                other_sources: Other { count: 5, packets: 100, bytes: 100_000, flows: 10 },
                destinations: (0..SOURCES)
                    .map(|d| DestinationSnapshot {
                        aws_service: None,
                        aws_region: None,
                        address: ip(0xac10_0000 + i * 64 + d),
                        packets: 900,
                        bytes: 900_000,
                        flows: 90,
                        rejected_flows: 1,
                        traffic_share_pct: 4.5,
                    })
                    .collect(),
                other_destinations: Other { count: 2, packets: 10, bytes: 10_000, flows: 1 },
                protocols: [6u8, 17, 1]
                    .iter()
                    .map(|&p| ProtocolSnapshot {
                        protocol: p,
                        packets: 100,
                        bytes: 100_000,
                        flows: 10,
                        rejected_flows: 0,
                        ingress_bytes: 50_000,
                        egress_bytes: 50_000,
                    })
                    .collect(),
                revision: 0,
                approximate: false,
                approximation: Approximation::default(),
            })
        })
        .collect()
}

#[derive(Clone, Default)]
struct Sink {
    requests: Arc<AtomicUsize>,
}

#[tonic::async_trait]
impl MetricsService for Sink {
    async fn export(
        &self,
        _: tonic::Request<ExportMetricsServiceRequest>,
    ) -> Result<tonic::Response<ExportMetricsServiceResponse>, tonic::Status> {
        self.requests.fetch_add(1, Relaxed);
        Ok(tonic::Response::new(ExportMetricsServiceResponse::default()))
    }
}

#[tonic::async_trait]
impl LogsService for Sink {
    async fn export(
        &self,
        _: tonic::Request<ExportLogsServiceRequest>,
    ) -> Result<tonic::Response<ExportLogsServiceResponse>, tonic::Status> {
        self.requests.fetch_add(1, Relaxed);
        Ok(tonic::Response::new(ExportLogsServiceResponse::default()))
    }
}

fn main() {
    let rt =
        tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap();
    let sink = Sink::default();
    let listener = rt.block_on(tokio::net::TcpListener::bind("127.0.0.1:0")).unwrap();
    let addr = listener.local_addr().unwrap();
    rt.spawn(
        tonic::transport::Server::builder()
            .add_service(
                MetricsServiceServer::new(sink.clone()).max_decoding_message_size(64 << 20),
            )
            .add_service(LogsServiceServer::new(sink.clone()).max_decoding_message_size(64 << 20))
            .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener)),
    );
    let snapshots = window();
    let points: usize = snapshots.iter().map(|s| vpcflowd::export::measures::points(s)).sum();
    println!("window: {INTERFACES} interfaces × {SOURCES} sources = {points} data points");

    for run in 1..=3 {
        let stats = Arc::new(ExportStats::default());
        let config = ExportConfig {
            otlp_endpoint: Some(format!("http://{addr}")),
            ..ExportConfig::default()
        };
        let before = sink.requests.load(Relaxed);
        let exporter = WindowExporter::start(
            &config,
            &ExporterOptions { runtime: Some(rt.handle().clone()), ..ExporterOptions::default() },
            stats.clone(),
        )
        .unwrap();
        let started = Instant::now();
        let ((), peak) = peak_during(|| {
            exporter.offer(&snapshots);
            exporter.finish(Duration::from_secs(600));
        });
        let elapsed = started.elapsed();
        println!(
            "otlp/grpc run {run}: {:.2} s, {} points + {} flow logs in {} requests, peak heap +{:.1} MiB, dropped {}",
            elapsed.as_secs_f64(),
            stats.points_exported.load(Relaxed),
            stats.flow_logs_exported.load(Relaxed),
            sink.requests.load(Relaxed) - before,
            peak as f64 / (1 << 20) as f64,
            stats.points_dropped.load(Relaxed),
        );
    }

    let registry = prometheus::Registry::new();
    for run in 1..=3 {
        let started = Instant::now();
        let (text, peak) =
            peak_during(|| vpcflowd::export::prometheus::render(&registry, &snapshots).unwrap());
        println!(
            "/metrics run {run}: {:.2} s, {:.1} MiB of text, peak heap +{:.1} MiB",
            started.elapsed().as_secs_f64(),
            text.len() as f64 / (1 << 20) as f64,
            peak as f64 / (1 << 20) as f64,
        );
    }
}
