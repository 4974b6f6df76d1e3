//! vpcflowd's own metrics: ingest, engine, state and export counters, read from the atomics
//! the components already keep (observable instruments: nothing is added to the hot path).
//!
//! One meter provider with two readers: the Prometheus exporter behind `/metrics` (always) and
//! an OTLP periodic reader every `export.otlp_interval` (when an endpoint is set). Counters are
//! cumulative, as Prometheus expects. The instrument list is in the README.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use opentelemetry::KeyValue;
use opentelemetry::metrics::{Meter, MeterProvider};
use opentelemetry_sdk::metrics::{PeriodicReader, SdkMeterProvider, Temporality};

use super::http::ServeContext;
use crate::export::config::OtlpProtocol;
use crate::export::{ExportConfig, ExportError, ExportStats};

/// The self-metrics meter provider; shut it down at exit so the last values are pushed.
pub struct Telemetry {
    provider: SdkMeterProvider,
}

impl Telemetry {
    /// Registers every instrument and the Prometheus reader in `registry`. Call inside the
    /// Tokio runtime (the OTLP/gRPC exporter needs it).
    pub fn start(
        config: &ExportConfig,
        default_region: Option<&str>,
        registry: &prometheus::Registry,
        state: Arc<ServeContext>,
    ) -> Result<Telemetry, ExportError> {
        let prometheus = opentelemetry_prometheus::exporter()
            .with_registry(registry.clone())
            .scope_info_enabled(false)
            .build()
            .map_err(ExportError::Prometheus)?;
        let mut builder = SdkMeterProvider::builder()
            .with_resource(crate::export::otlp::resource(config, default_region))
            .with_reader(prometheus);
        if config.otlp_endpoint.is_some() {
            let exporter = match config.otlp_protocol {
                OtlpProtocol::Grpc => {
                    crate::export::otlp::metric_exporter(config, Temporality::Cumulative)?
                }
                // Its blocking HTTP client must be made (and dropped) outside the runtime.
                OtlpProtocol::Http => {
                    let config = config.clone();
                    std::thread::spawn(move || {
                        crate::export::otlp::metric_exporter(&config, Temporality::Cumulative)
                    })
                    .join()
                    .map_err(|_| ExportError::Thread("building the OTLP exporter panicked"))??
                }
            };
            builder = builder.with_reader(
                PeriodicReader::builder(exporter).with_interval(config.otlp_interval).build(),
            );
        }
        let provider = builder.build();
        register(&provider.meter("vpcflowd"), state);
        Ok(Telemetry { provider })
    }

    /// Pushes the last values and stops (blocks: call from a blocking thread).
    pub fn shutdown(self) {
        if let Err(e) = self.provider.shutdown() {
            tracing::debug!("self-metrics shutdown: {e}");
        }
    }
}

fn counter(
    meter: &Meter,
    name: &'static str,
    unit: &'static str,
    desc: &'static str,
    value: impl Fn() -> u64 + Send + Sync + 'static,
) {
    let _ = meter
        .u64_observable_counter(name)
        .with_unit(unit)
        .with_description(desc)
        .with_callback(move |o| o.observe(value(), &[]))
        .build();
}

/// A memory field of `/proc/<process>/status` (`VmRSS`, `VmHWM`, …; written in KiB) in
/// bytes; `process` is a pid or `self`. None off Linux or for a process that is gone.
pub fn process_status_bytes(process: &str, field: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{process}/status")).ok()?;
    let kib: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))?
        .split_whitespace()
        .next()?
        .parse()
        .ok()?;
    Some(kib * 1024)
}

/// This process's resident set size.
fn resident_bytes() -> Option<f64> {
    process_status_bytes("self", "VmRSS").map(|b| b as f64)
}

fn gauge(
    meter: &Meter,
    name: &'static str,
    unit: &'static str,
    desc: &'static str,
    value: impl Fn() -> Option<f64> + Send + Sync + 'static,
) {
    let _ = meter
        .f64_observable_gauge(name)
        .with_unit(unit)
        .with_description(desc)
        .with_callback(move |o| {
            if let Some(v) = value() {
                o.observe(v, &[]);
            }
        })
        .build();
}

fn now_secs() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

/// A cumulative counter over one of the state's atomics.
macro_rules! atomic {
    ($meter:ident, $state:ident, $name:literal, $unit:literal, $desc:literal, |$s:ident| $e:expr) => {{
        let $s = $state.clone();
        counter($meter, $name, $unit, $desc, move || ($e as &AtomicU64).load(Relaxed));
    }};
}

/// A gauge over a value read from the state.
macro_rules! gauge {
    ($meter:ident, $state:ident, $name:literal, $unit:literal, $desc:literal, |$s:ident| $e:expr) => {{
        let $s = $state.clone();
        gauge($meter, $name, $unit, $desc, move || $e);
    }};
}

fn register(meter: &Meter, state: Arc<ServeContext>) {
    register_ingest(meter, &state);
    register_engine(meter, &state);
    // The process, named by the OpenTelemetry semantic conventions (`/metrics`:
    // `process_memory_usage_bytes`).
    gauge(meter, "process.memory.usage", "By", "Resident set size of this process", resident_bytes);
    register_reloads_and_state(meter, &state);
    register_export(meter, state.export.clone());
    register_kinesis(meter, &state);
}

/// The ingest path's counters.
fn register_ingest(meter: &Meter, state: &Arc<ServeContext>) {
    atomic!(
        meter,
        state,
        "vpcflowd.ingest.records",
        "{record}",
        "Flow-log records accepted into the engine",
        |s| &s.stats.records
    );
    atomic!(
        meter,
        state,
        "vpcflowd.ingest.rejected",
        "{record}",
        "Lines or envelopes rejected (by reason in vpcflowd.ingest.rejects)",
        |s| &s.stats.rejected
    );
    atomic!(
        meter,
        state,
        "vpcflowd.ingest.bytes",
        "By",
        "Record bytes received (after base64 and body decompression)",
        |s| &s.stats.bytes
    );
    atomic!(
        meter,
        state,
        "vpcflowd.ingest.dedup_hits",
        "{request}",
        "Retried Firehose requests answered from the dedup memory",
        |s| &s.dedup.hits
    );
    {
        let s = state.clone();
        let _ = meter
            .u64_observable_counter("vpcflowd.ingest.requests")
            .with_unit("{request}")
            .with_description("Ingest responses by HTTP status code")
            .with_callback(move |o| {
                let responses = s.stats.responses.lock().unwrap_or_else(|e| e.into_inner()).clone();
                for (status, n) in responses {
                    o.observe(n, &[KeyValue::new("http.response.status_code", i64::from(status))]);
                }
            })
            .build();
    }
    {
        let s = state.clone();
        let _ = meter
            .u64_observable_counter("vpcflowd.ingest.rejects")
            .with_unit("{record}")
            .with_description("Rejected input by reason")
            .with_callback(move |o| {
                let rejects = s.stats.rejects.lock().unwrap_or_else(|e| e.into_inner());
                for (reason, n) in rejects.iter() {
                    o.observe(n, &[KeyValue::new("vpcflowd.reject.reason", reason.as_str())]);
                }
            })
            .build();
    }
    gauge!(
        meter,
        state,
        "vpcflowd.ingest.queue.depth",
        "{request}",
        "Requests being parsed for the pipeline or waiting for it",
        |s| { Some((s.pipeline.max_capacity() - s.pipeline.capacity()) as f64) }
    );
}

/// The window engine's counters and gauges.
fn register_engine(meter: &Meter, state: &Arc<ServeContext>) {
    atomic!(
        meter,
        state,
        "vpcflowd.engine.records",
        "{record}",
        "Records the engine took in",
        |s| &s.engine.records
    );
    atomic!(
        meter,
        state,
        "vpcflowd.engine.late_records",
        "{record}",
        "Records for panes already closed",
        |s| &s.engine.late_records
    );
    atomic!(
        meter,
        state,
        "vpcflowd.engine.expired_late_records",
        "{record}",
        "Late records too old for any kept pane (counted only)",
        |s| &s.engine.expired_late_records
    );
    atomic!(meter, state, "vpcflowd.engine.windows_closed", "{window}", "Windows closed", |s| &s
        .engine
        .windows_closed);
    atomic!(
        meter,
        state,
        "vpcflowd.engine.snapshots",
        "{snapshot}",
        "Snapshots emitted (one per window and interface)",
        |s| &s.engine.snapshots
    );
    atomic!(
        meter,
        state,
        "vpcflowd.engine.revisions",
        "{snapshot}",
        "Corrected snapshots emitted (--late update)",
        |s| &s.engine.revisions
    );
    {
        let s = state.clone();
        let _ = meter
            .f64_observable_counter("vpcflowd.engine.window_close.time")
            .with_unit("s")
            .with_description("Time spent closing windows (divide by vpcflowd.engine.windows_closed for the mean)")
            .with_callback(move |o| o.observe(s.engine.close_micros_total.load(Relaxed) as f64 / 1e6, &[]))
            .build();
    }
    gauge!(
        meter,
        state,
        "vpcflowd.engine.window_close.last_duration",
        "s",
        "Time the last window close took",
        |s| Some(s.engine.last_close_micros.load(Relaxed) as f64 / 1e6)
    );
    gauge!(
        meter,
        state,
        "vpcflowd.engine.open_windows",
        "{window}",
        "Windows with data not closed yet",
        |s| { Some(s.engine.open_windows.load(Relaxed) as f64) }
    );
    gauge!(
        meter,
        state,
        "vpcflowd.engine.watermark",
        "s",
        "The watermark (Unix time): windows ending at or before it are closed",
        |s| {
            let w = s.engine.watermark.load(Relaxed);
            (w != 0 && w != u64::MAX).then_some(w as f64)
        }
    );
    gauge!(
        meter,
        state,
        "vpcflowd.engine.watermark.lag",
        "s",
        "Wall clock minus the watermark: how far behind real time results are",
        |s| {
            let w = s.engine.watermark.load(Relaxed);
            (w != 0 && w != u64::MAX).then(|| (now_secs() - w as f64).max(0.0))
        }
    );
}

/// The ingest listener's secrets and the state file's counters.
fn register_reloads_and_state(meter: &Meter, state: &Arc<ServeContext>) {
    atomic!(
        meter,
        state,
        "vpcflowd.ingest.reloads",
        "{reload}",
        "The ingest listener's certificate or access keys replaced after a change on disk",
        |s| &s.stats.reloads
    );
    atomic!(
        meter,
        state,
        "vpcflowd.ingest.reload_failures",
        "{reload}",
        "Changed or unreadable certificate, key or access-key files that were not swapped in",
        |s| &s.stats.reload_failures
    );
    // State.
    atomic!(
        meter,
        state,
        "vpcflowd.state.checkpoints",
        "{checkpoint}",
        "State files written",
        |s| &s.stats.checkpoints
    );
    atomic!(
        meter,
        state,
        "vpcflowd.state.checkpoint_failures",
        "{checkpoint}",
        "State files that could not be written",
        |s| &s.stats.checkpoint_failures
    );
}

/// The Kinesis sources' counters and per-shard lag.
fn register_kinesis(meter: &Meter, state: &Arc<ServeContext>) {
    {
        let s = state.clone();
        let _ = meter
            .u64_observable_gauge("vpcflowd.kinesis.shard.lag")
            .with_unit("ms")
            .with_description("MillisBehindLatest of each Kinesis shard being read")
            .with_callback(move |o| {
                for (stream, shard, lag) in s.kinesis.lags() {
                    o.observe(
                        lag.max(0) as u64,
                        &[
                            KeyValue::new("aws.kinesis.stream_name", stream),
                            KeyValue::new("vpcflowd.kinesis.shard_id", shard),
                        ],
                    );
                }
            })
            .build();
    }
    atomic!(
        meter,
        state,
        "vpcflowd.kinesis.records",
        "{record}",
        "Kinesis records read (before KPL de-aggregation)",
        |s| &s.kinesis.counters.records
    );
    atomic!(meter, state, "vpcflowd.kinesis.get_records", "{call}", "GetRecords calls", |s| &s
        .kinesis
        .counters
        .get_records_calls);
    atomic!(
        meter,
        state,
        "vpcflowd.kinesis.throttled",
        "{call}",
        "GetRecords calls answered ProvisionedThroughputExceeded (backed off)",
        |s| &s.kinesis.counters.throttled
    );
    atomic!(
        meter,
        state,
        "vpcflowd.kinesis.errors",
        "{call}",
        "Failed Kinesis calls other than throttling (retried with backoff)",
        |s| &s.kinesis.counters.errors
    );
    atomic!(
        meter,
        state,
        "vpcflowd.kinesis.leases_lost",
        "{lease}",
        "Leases lost with records not yet committed",
        |s| &s.kinesis.counters.leases_lost
    );
    atomic!(
        meter,
        state,
        "vpcflowd.kinesis.records_of_lost_leases_not_applied",
        "{record}",
        "Kinesis records that arrived after their lease was lost: left to the new owner",
        |s| &s.kinesis.counters.records_of_lost_leases_not_applied
    );
    atomic!(
        meter,
        state,
        "vpcflowd.kinesis.commit_failures",
        "{commit}",
        "Lease-table commits that failed",
        |s| &s.kinesis.counters.commit_failures
    );
}

fn register_export(meter: &Meter, x: Arc<ExportStats>) {
    let outcome = |o: &'static str| [KeyValue::new("outcome", o)];
    let by_outcome = |name: &'static str,
                      unit: &'static str,
                      desc: &'static str,
                      pairs: fn(&ExportStats) -> Vec<(&'static str, u64)>| {
        let x = x.clone();
        let _ = meter
            .u64_observable_counter(name)
            .with_unit(unit)
            .with_description(desc)
            .with_callback(move |o| {
                for (what, n) in pairs(&x) {
                    o.observe(n, &outcome(what));
                }
            })
            .build();
    };
    by_outcome(
        "vpcflowd.export.windows",
        "{window}",
        "Closed windows by export outcome (exported, failed, dropped: queue full)",
        |x| {
            vec![
                ("exported", x.windows_exported.load(Relaxed)),
                ("failed", x.windows_failed.load(Relaxed)),
                ("dropped", x.windows_dropped.load(Relaxed)),
            ]
        },
    );
    by_outcome("vpcflowd.export.points", "{point}", "Window metric data points by outcome", |x| {
        vec![
            ("exported", x.points_exported.load(Relaxed)),
            ("dropped", x.points_dropped.load(Relaxed)),
        ]
    });
    by_outcome("vpcflowd.export.flow_logs", "{record}", "Top-flow log records by outcome", |x| {
        vec![
            ("exported", x.flow_logs_exported.load(Relaxed)),
            ("dropped", x.flow_logs_dropped.load(Relaxed)),
        ]
    });
    {
        let x = x.clone();
        let _ = meter
            .u64_observable_counter("vpcflowd.export.errors")
            .with_unit("{request}")
            .with_description("OTLP export requests that failed after retries, by signal")
            .with_callback(move |o| {
                o.observe(x.metric_errors.load(Relaxed), &[KeyValue::new("signal", "metrics")]);
                o.observe(x.log_errors.load(Relaxed), &[KeyValue::new("signal", "logs")]);
            })
            .build();
    }
    {
        let x = x.clone();
        counter(
            meter,
            "vpcflowd.export.revisions_skipped",
            "{snapshot}",
            "Corrected snapshots not exported (served by the JSON API)",
            move || x.revisions_skipped.load(Relaxed),
        );
    }
    {
        let x = x.clone();
        gauge(
            meter,
            "vpcflowd.export.queue.depth",
            "{window}",
            "Closed windows waiting for export",
            move || Some(x.queue_depth.load(Relaxed) as f64),
        );
    }
    {
        let x = x.clone();
        gauge(
            meter,
            "vpcflowd.export.last_duration",
            "s",
            "Time the last window's export took",
            move || Some(x.last_export_micros.load(Relaxed) as f64 / 1e6),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::process_status_bytes;

    #[test]
    fn status_fields_are_read_whole_and_in_bytes() {
        let rss = process_status_bytes("self", "VmRSS").expect("Linux reports VmRSS");
        let peak = process_status_bytes("self", "VmHWM").expect("Linux reports VmHWM");
        assert!(rss > 0 && rss.is_multiple_of(1024) && peak >= rss, "{rss} {peak}");
        // A prefix of a field name is not that field.
        assert_eq!(process_status_bytes("self", "VmRS"), None);
        assert_eq!(process_status_bytes("0", "VmRSS"), None);
    }
}
