//! The export worker: a thread that takes closed windows from a bounded queue and pushes them
//! through the OpenTelemetry SDK.
//!
//! - **Metrics**: one synchronous gauge per [measure](super::measures), on a meter provider of
//!   its own with *delta* temporality and a periodic reader that only runs when flushed. For
//!   each window the worker records the gauges of a few whole interfaces (at most
//!   `max_points_per_request` points) and flushes: one OTLP request per chunk, holding exactly
//!   those points, after which the SDK forgets them (delta), so an interface that disappears
//!   is not re-sent with stale values.
//! - **Logs**: the largest flows of each interface as OTel log records, timestamped with the
//!   window end, handed straight to the OTLP log exporter in batches, so every failure is seen
//!   and counted.
//!
//! Ingest never waits: [`WindowExporter::offer`] drops a window (counted, logged) when the
//! queue is full. A failed request (after the exporter's retries) drops the rest of its window,
//! counted, so that a dead collector costs one timeout per window, not one per chunk.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, TrySendError, sync_channel};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use opentelemetry::logs::LoggerProvider;
use opentelemetry::metrics::{Gauge, Meter, MeterProvider};
use opentelemetry::{InstrumentationScope, KeyValue, StringValue, Value};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::logs::{LogBatch, SdkLogRecord, SdkLogger, SdkLoggerProvider};
use opentelemetry_sdk::metrics::{PeriodicReader, SdkMeterProvider, Stream, Temporality};

use super::ExportStats;
use super::config::ExportConfig;
use super::error::ExportError;
use super::log_records::{finding_record, findings_in, flow_record};
use super::measures::{self, ACCOUNT_ID, Get, Group, INTERFACE_ID, REGION, Visit, WINDOW};
use super::rollup_gauges::RollupGauges;
use crate::window::Snapshot;

/// Log records per OTLP logs request.
const LOGS_PER_REQUEST: usize = 2_000;

/// One window's snapshots.
type Batch = Vec<Arc<Snapshot>>;

/// See the module documentation.
pub struct WindowExporter {
    tx: SyncSender<Batch>,
    stats: Arc<ExportStats>,
    abandon: Arc<AtomicBool>,
    join: JoinHandle<()>,
}

/// What a [`WindowExporter`] needs beside its [`ExportConfig`].
#[derive(Debug, Clone)]
pub struct ExporterOptions {
    /// The resource's `cloud.region` when `export.region` is not set.
    pub default_region: Option<String>,
    /// How many sources and destinations each snapshot lists (it sizes the instruments).
    pub top_sources: usize,
    pub top_destinations: usize,
    /// The Tokio runtime an OTLP/gRPC exporter runs on; `None` takes the current one.
    pub runtime: Option<tokio::runtime::Handle>,
}

impl Default for ExporterOptions {
    fn default() -> Self {
        let top = crate::window::TopN::default();
        ExporterOptions {
            default_region: None,
            top_sources: top.sources,
            top_destinations: top.destinations,
            runtime: None,
        }
    }
}

impl WindowExporter {
    /// Builds the exporters (failing on a bad configuration) and starts the worker thread.
    /// Call inside a Tokio runtime when the protocol is gRPC.
    pub fn start(
        config: &ExportConfig,
        options: &ExporterOptions,
        stats: Arc<ExportStats>,
    ) -> Result<Self, ExportError> {
        let (tx, rx) = sync_channel::<Batch>(config.queue_windows);
        let (ready_tx, ready_rx) = sync_channel::<Result<(), ExportError>>(1);
        let abandon = Arc::new(AtomicBool::new(false));
        let resource = super::otlp::resource(config, options.default_region.as_deref());
        let config = config.clone();
        let runtime =
            options.runtime.clone().or_else(|| tokio::runtime::Handle::try_current().ok());
        let (top_sources, top_destinations) = (options.top_sources, options.top_destinations);
        let worker_stats = stats.clone();
        let worker_abandon = abandon.clone();
        // The most rows one instrument gets from one interface: its listed sources or
        // destinations, or its protocols (at most 256).
        let rows_per_interface = top_sources.max(top_destinations).max(256);
        let join = std::thread::Builder::new()
            .name("vpcflowd-export".into())
            .spawn(move || {
                let sink = Sink::new(
                    &config,
                    resource,
                    rows_per_interface,
                    runtime.as_ref(),
                    worker_stats,
                    worker_abandon,
                );
                let mut sink = match sink {
                    Ok(s) => {
                        let _ = ready_tx.send(Ok(()));
                        s
                    }
                    Err(e) => {
                        let _ = ready_tx.send(Err(e));
                        return;
                    }
                };
                sink.run(rx);
            })
            .map_err(ExportError::Spawn)?;
        ready_rx.recv().map_err(|_| ExportError::Thread("the export thread stopped"))??;
        Ok(WindowExporter { tx, stats, abandon, join })
    }

    /// Queues the windows of a batch of closed snapshots, one queue slot per window; never
    /// waits. A window that finds the queue full is dropped from export (counted, logged).
    /// Corrections (`revision` > 0) are not exported (see [`ExportStats::revisions_skipped`]).
    pub fn offer(&self, batch: &[Arc<Snapshot>]) {
        let mut windows: BTreeMap<u64, Batch> = BTreeMap::new();
        for s in batch {
            if s.revision == 0 {
                windows.entry(s.window_start).or_default().push(s.clone());
            } else {
                self.stats.revisions_skipped.fetch_add(1, Ordering::Relaxed);
            }
        }
        for (window_start, snapshots) in windows {
            self.stats.queue_depth.fetch_add(1, Ordering::Relaxed);
            if let Err(TrySendError::Full(w) | TrySendError::Disconnected(w)) =
                self.tx.try_send(snapshots)
            {
                self.stats.queue_depth.fetch_sub(1, Ordering::Relaxed);
                let points: usize = w.iter().map(|s| measures::points(s)).sum();
                self.stats.windows_dropped.fetch_add(1, Ordering::Relaxed);
                self.stats.points_dropped.fetch_add(points as u64, Ordering::Relaxed);
                tracing::warn!(
                    window_start,
                    points,
                    "export queue full (the collector is slow or unreachable): window dropped from export"
                );
            }
        }
    }

    /// Exports what is queued, waiting at most `deadline`; what is left then is dropped
    /// (counted). Call off the async runtime's worker threads (it blocks).
    pub fn finish(self, deadline: Duration) {
        let WindowExporter { tx, abandon, join, .. } = self;
        drop(tx);
        let done = Arc::new((Mutex::new(false), std::sync::Condvar::new()));
        let waiter = {
            let done = done.clone();
            std::thread::spawn(move || {
                let _ = join.join();
                let (lock, cv) = &*done;
                *lock.lock().unwrap_or_else(|e| e.into_inner()) = true;
                cv.notify_all();
            })
        };
        let (lock, cv) = &*done;
        let guard = lock.lock().unwrap_or_else(|e| e.into_inner());
        let (guard, timeout) = cv
            .wait_timeout_while(guard, deadline, |finished| !*finished)
            .unwrap_or_else(|e| e.into_inner());
        drop(guard);
        if timeout.timed_out() {
            tracing::warn!(?deadline, "export did not finish in time: dropping what is left");
            abandon.store(true, Ordering::Relaxed);
        }
        let _ = waiter.join();
    }
}

enum Instrument {
    U(Gauge<u64>),
    F(Gauge<f64>),
}

/// The instruments of every group, in [`measures::each_interface_group`] order.
struct Instruments(Vec<Vec<Instrument>>);

fn instruments_of<T>(meter: &Meter, g: &Group<T>) -> Vec<Instrument> {
    g.measures
        .iter()
        .map(|m| match m.get.is_float() {
            false => Instrument::U(
                meter.u64_gauge(m.name).with_unit(m.unit).with_description(m.description).build(),
            ),
            true => Instrument::F(
                meter.f64_gauge(m.name).with_unit(m.unit).with_description(m.description).build(),
            ),
        })
        .collect()
}

impl Instruments {
    fn new(meter: &Meter) -> Self {
        struct Make<'a>(&'a Meter, Vec<Vec<Instrument>>);
        impl Visit for Make<'_> {
            fn group<T>(&mut self, g: &'static Group<T>) {
                self.1.push(instruments_of(self.0, g));
            }
        }
        let mut m = Make(meter, Vec::new());
        measures::each_interface_group(&mut m);
        Instruments(m.1)
    }
}

fn record<T>(s: &Snapshot, row: &T, g: &Group<T>, gauges: &[Instrument], attrs: &[KeyValue]) {
    for (m, gauge) in g.measures.iter().zip(gauges) {
        match (&m.get, gauge) {
            (Get::Int(f), Instrument::U(gauge)) => gauge.record(f(s, row), attrs),
            (Get::Float(f), Instrument::F(gauge)) => gauge.record(f(s, row), attrs),
            (Get::OptionalInt(f), Instrument::U(gauge)) => {
                if let Some(v) = f(s, row) {
                    gauge.record(v, attrs);
                }
            }
            (Get::OptionalFloat(f), Instrument::F(gauge)) => {
                if let Some(v) = f(s, row) {
                    gauge.record(v, attrs);
                }
            }
            // Both are made from the same measure (see `instruments_of`).
            _ => debug_assert!(false, "instrument kind mismatch for {}", m.name),
        }
    }
}

/// Records one snapshot's gauges.
struct Record<'a> {
    snapshot: &'a Snapshot,
    base: Vec<KeyValue>,
    instruments: &'a Instruments,
    next: usize,
}

impl Visit for Record<'_> {
    fn group<T>(&mut self, g: &'static Group<T>) {
        let gauges = &self.instruments.0[self.next];
        self.next += 1;
        let s = self.snapshot;
        let mut attrs = self.base.clone();
        for row in (g.rows)(s) {
            attrs.truncate(self.base.len());
            if let Some(k) = &g.key {
                attrs.push(KeyValue::new(k.attribute, (k.value)(row)));
            }
            record(s, row, g, gauges, &attrs);
        }
    }
}

fn interface_attributes(s: &Snapshot) -> Vec<KeyValue> {
    let text = |a: &Arc<str>| Value::String(StringValue::from(a.clone()));
    let mut attrs = vec![KeyValue::new(INTERFACE_ID.0, text(&s.interface_id))];
    if let Some(a) = &s.account_id {
        attrs.push(KeyValue::new(ACCOUNT_ID.0, text(a)));
    }
    if let Some(r) = &s.region {
        attrs.push(KeyValue::new(REGION.0, text(r)));
    }
    let labels = [&s.vpc_id, &s.subnet_id, &s.instance_id, &s.az_id, &s.name, &s.interface_type];
    for (name, label) in measures::LABELS.iter().chain(&measures::INTERFACE_LABELS).zip(labels) {
        if let Some(l) = label {
            attrs.push(KeyValue::new(*name, text(l)));
        }
    }
    attrs
}

struct Logs {
    exporter: opentelemetry_otlp::LogExporter,
    logger: SdkLogger,
    scope: InstrumentationScope,
    _provider: SdkLoggerProvider,
}

struct Sink {
    meters: SdkMeterProvider,
    instruments: Instruments,
    window_gauges: Vec<Instrument>,
    rollup_gauges: RollupGauges,
    logs: Option<Logs>,
    flow_logs_per_interface: usize,
    max_points: usize,
    stats: Arc<ExportStats>,
    abandon: Arc<AtomicBool>,
}

impl Sink {
    fn new(
        config: &ExportConfig,
        resource: Resource,
        rows_per_interface: usize,
        runtime: Option<&tokio::runtime::Handle>,
        stats: Arc<ExportStats>,
        abandon: Arc<AtomicBool>,
    ) -> Result<Sink, ExportError> {
        let grpc = config.otlp_protocol == super::config::OtlpProtocol::Grpc;
        // tonic spawns its connection task on the current runtime; the HTTP client must not
        // see one.
        let _entered = match (grpc, runtime) {
            (true, Some(rt)) => Some(rt.enter()),
            (true, None) => return Err(ExportError::NoRuntime),
            (false, _) => None,
        };
        let metric_exporter = super::otlp::metric_exporter(config, Temporality::Delta)?;
        let mut log_exporter = if config.flow_logs_per_interface > 0 {
            Some(super::otlp::log_exporter(config)?)
        } else {
            None
        };
        drop(_entered);
        // Runs only when flushed: each window's chunks are flushed explicitly.
        let reader = PeriodicReader::builder(metric_exporter)
            .with_interval(Duration::from_secs(365 * 24 * 3600))
            .build();
        // A chunk holds whole interfaces and at most `max_points` points (or one interface
        // that is larger): no instrument can see more attribute sets than that in one
        // collection, so the SDK's overflow series is never used.
        let limit = config.max_points_per_request.max(rows_per_interface) + 1;
        let meters = SdkMeterProvider::builder()
            .with_resource(resource.clone())
            .with_reader(reader)
            .with_view(move |_: &opentelemetry_sdk::metrics::Instrument| {
                Stream::builder().with_cardinality_limit(limit).build().ok()
            })
            .build();
        let meter = meters.meter("vpcflowd");
        let instruments = Instruments::new(&meter);
        let window_gauges = instruments_of(&meter, &WINDOW);
        let rollup_gauges = RollupGauges::new(&meter);
        let logs = log_exporter.take().map(|mut exporter| {
            use opentelemetry_sdk::logs::LogExporter;
            exporter.set_resource(&resource);
            let provider = SdkLoggerProvider::builder().with_resource(resource.clone()).build();
            let scope = InstrumentationScope::builder("vpcflowd")
                .with_version(env!("CARGO_PKG_VERSION"))
                .build();
            let logger = provider.logger_with_scope(scope.clone());
            Logs { exporter, logger, scope, _provider: provider }
        });
        Ok(Sink {
            meters,
            instruments,
            window_gauges,
            rollup_gauges,
            logs,
            flow_logs_per_interface: config.flow_logs_per_interface,
            max_points: config.max_points_per_request,
            stats,
            abandon,
        })
    }

    fn run(&mut self, rx: Receiver<Batch>) {
        while let Ok(window) = rx.recv() {
            self.stats.queue_depth.fetch_sub(1, Ordering::Relaxed);
            let snapshots: Vec<&Snapshot> = window.iter().map(|s| &**s).collect();
            self.export_window(&snapshots);
        }
        if let Err(e) = self.meters.shutdown() {
            tracing::debug!("export: meter provider shutdown: {e}");
        }
    }

    fn export_window(&mut self, snapshots: &[&Snapshot]) {
        let started = Instant::now();
        let mut failed = false;
        let mut chunk: Vec<&Snapshot> = Vec::new();
        let mut points = 0;
        for &s in snapshots {
            let p = measures::points(s);
            if !chunk.is_empty() && points + p > self.max_points {
                self.export_chunk(&chunk, points, &mut failed);
                chunk.clear();
                points = 0;
            }
            chunk.push(s);
            points += p;
        }
        if !chunk.is_empty() {
            self.export_chunk(&chunk, points, &mut failed);
            self.export_rollups(snapshots, &mut failed);
        }
        let micros = started.elapsed().as_micros() as u64;
        self.stats.export_micros_total.fetch_add(micros, Ordering::Relaxed);
        self.stats.last_export_micros.store(micros, Ordering::Relaxed);
        if failed {
            self.stats.windows_failed.fetch_add(1, Ordering::Relaxed);
        } else {
            self.stats.windows_exported.fetch_add(1, Ordering::Relaxed);
        }
    }

    fn flow_logs(&self, chunk: &[&Snapshot]) -> usize {
        if self.logs.is_none() {
            return 0;
        }
        chunk.iter().map(|s| measures::largest_flows(s, self.flow_logs_per_interface).len()).sum()
    }

    /// Counts the chunk's finding records as dropped (with logs configured).
    fn drop_findings(&self, chunk: &[&Snapshot]) {
        if self.logs.is_some() {
            let n = findings_in(chunk) as u64;
            self.stats.finding_logs_dropped.fetch_add(n, Ordering::Relaxed);
        }
    }

    /// Sends the window's roll-ups in a request of their own (with the window's bounds).
    fn export_rollups(&mut self, window: &[&Snapshot], failed: &mut bool) {
        let rolled = RollupGauges::of(window);
        let rollups = rolled.points();
        if rollups == 0 {
            return;
        }
        let points = (rollups + WINDOW.measures.len()) as u64;
        if *failed || self.abandon.load(Ordering::Relaxed) {
            *failed = true;
            self.stats.points_dropped.fetch_add(points, Ordering::Relaxed);
            return;
        }
        self.rollup_gauges.record(&rolled);
        record(window[0], &(), &WINDOW, &self.window_gauges, &[]);
        if let Err(e) = self.flush(points) {
            tracing::warn!(window_start = window[0].window_start, error = %e, "OTLP export of the window's roll-ups failed");
            *failed = true;
        }
    }

    /// Sends what was recorded, counting its `points` exported or, on failure, dropped.
    fn flush(&mut self, points: u64) -> Result<(), opentelemetry_sdk::error::OTelSdkError> {
        let flushed = self.meters.force_flush();
        let counter = match flushed {
            Ok(()) => &self.stats.points_exported,
            Err(_) => {
                self.stats.metric_errors.fetch_add(1, Ordering::Relaxed);
                &self.stats.points_dropped
            }
        };
        counter.fetch_add(points, Ordering::Relaxed);
        flushed
    }

    fn export_chunk(&mut self, chunk: &[&Snapshot], points: usize, failed: &mut bool) {
        let points = (points + WINDOW.measures.len()) as u64;
        if *failed || self.abandon.load(Ordering::Relaxed) {
            *failed = true;
            self.stats.points_dropped.fetch_add(points, Ordering::Relaxed);
            self.stats.flow_logs_dropped.fetch_add(self.flow_logs(chunk) as u64, Ordering::Relaxed);
            self.drop_findings(chunk);
            return;
        }
        for s in chunk {
            let mut r = Record {
                snapshot: s,
                base: interface_attributes(s),
                instruments: &self.instruments,
                next: 0,
            };
            measures::each_interface_group(&mut r);
        }
        record(chunk[0], &(), &WINDOW, &self.window_gauges, &[]);
        match self.flush(points) {
            Ok(()) => {}
            Err(e) => {
                self.stats
                    .flow_logs_dropped
                    .fetch_add(self.flow_logs(chunk) as u64, Ordering::Relaxed);
                self.drop_findings(chunk);
                tracing::warn!(window_start = chunk[0].window_start, error = %e, "OTLP metric export failed: the rest of this window is dropped from export");
                *failed = true;
                return;
            }
        }
        if let Err(e) = self.export_logs(chunk) {
            tracing::warn!(window_start = chunk[0].window_start, error = %e, "OTLP log export failed: the rest of this window is dropped from export");
            *failed = true;
        }
    }

    /// Sends the chunk's flow log records, then its finding records; counts what was sent
    /// and what was not.
    fn export_logs(&self, chunk: &[&Snapshot]) -> Result<(), ExportError> {
        let Some(logs) = &self.logs else { return Ok(()) };
        let flows = chunk.iter().flat_map(|s| {
            measures::largest_flows(s, self.flow_logs_per_interface)
                .into_iter()
                .map(|(source, flow)| flow_record(&logs.logger, s, source, flow))
        });
        let flow_counts = (&self.stats.flow_logs_exported, &self.stats.flow_logs_dropped);
        let sent = self.send_all(logs, flows, self.flow_logs(chunk), flow_counts);
        let finding_counts = (&self.stats.finding_logs_exported, &self.stats.finding_logs_dropped);
        if let Err(e) = sent {
            finding_counts.1.fetch_add(findings_in(chunk) as u64, Ordering::Relaxed);
            return Err(e);
        }
        let findings = chunk
            .iter()
            .flat_map(|s| s.findings.iter().map(|f| finding_record(&logs.logger, s, f)));
        self.send_all(logs, findings, findings_in(chunk), finding_counts)
    }

    /// Sends `records` (`pending` of them) in requests of [`LOGS_PER_REQUEST`], counting them
    /// in `(exported, dropped)`; after a failed request the rest are dropped.
    fn send_all(
        &self,
        logs: &Logs,
        records: impl Iterator<Item = SdkLogRecord>,
        mut pending: usize,
        counts: (&AtomicU64, &AtomicU64),
    ) -> Result<(), ExportError> {
        let mut batch: Vec<SdkLogRecord> = Vec::new();
        for record in records {
            batch.push(record);
            if batch.len() == LOGS_PER_REQUEST {
                self.send_logs(logs, &batch, &mut pending, counts)?;
                batch.clear();
            }
        }
        if !batch.is_empty() {
            self.send_logs(logs, &batch, &mut pending, counts)?;
        }
        Ok(())
    }

    fn send_logs(
        &self,
        logs: &Logs,
        records: &[SdkLogRecord],
        pending: &mut usize,
        (exported, dropped): (&AtomicU64, &AtomicU64),
    ) -> Result<(), ExportError> {
        use opentelemetry_sdk::logs::LogExporter;
        let pairs: Vec<(&SdkLogRecord, &InstrumentationScope)> =
            records.iter().map(|r| (r, &logs.scope)).collect();
        match futures_executor::block_on(logs.exporter.export(LogBatch::new(&pairs))) {
            Ok(()) => {
                exported.fetch_add(records.len() as u64, Ordering::Relaxed);
                *pending -= records.len();
                Ok(())
            }
            Err(e) => {
                self.stats.log_errors.fetch_add(1, Ordering::Relaxed);
                dropped.fetch_add(*pending as u64, Ordering::Relaxed);
                *pending = 0;
                Err(ExportError::Request { signal: "log", message: e.to_string() })
            }
        }
    }
}
