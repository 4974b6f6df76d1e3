//! vpcflowd's own metrics: ingest, engine, state and export counters, read from the atomics
//! the components already keep (observable instruments: nothing is added to the hot path).
//!
//! One meter provider with two readers: the Prometheus exporter behind `/metrics` (always) and
//! an OTLP periodic reader every `export.otlp_interval` (when an endpoint is set). Counters are
//! cumulative, as Prometheus expects. The instrument list is in the README.

use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;

use opentelemetry::KeyValue;
use opentelemetry::metrics::{Meter, MeterProvider};
use opentelemetry_sdk::metrics::{PeriodicReader, SdkMeterProvider, Temporality};

use super::http::ServeContext;
use super::status::{self, InstrumentDef, InstrumentKind, LabeledInstrument, Point};
use crate::export::config::OtlpProtocol;
use crate::export::{ExportConfig, ExportError};

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

/// Registers every self-metric: one instrument per name of the status's instrument table
/// (fields that share a name are told apart by their attribute), then those whose attributes
/// come from the data.
fn register(meter: &Meter, ctx: Arc<ServeContext>) {
    let defs = status::instruments();
    let mut names: Vec<&'static str> = Vec::new();
    for d in &defs {
        if !names.contains(&d.name) {
            names.push(d.name);
        }
    }
    for name in names {
        let group: Vec<InstrumentDef> = defs.iter().filter(|d| d.name == name).copied().collect();
        register_group(meter, &ctx, group);
    }
    register_labeled(meter, &ctx);
}

/// The description an instrument is registered with (its own, else its first field's), as
/// one line without a closing period.
fn description_of(def: &InstrumentDef) -> String {
    let text = status::one_line(def.about.unwrap_or(def.description));
    text.trim_end_matches('.').to_string()
}

/// One observable instrument over the fields of `group` (one name, one kind and unit).
fn register_group(meter: &Meter, ctx: &Arc<ServeContext>, group: Vec<InstrumentDef>) {
    let first = group[0];
    let description = description_of(&first);
    let points = {
        let ctx = ctx.clone();
        move || -> Vec<(Point, Vec<KeyValue>)> {
            group
                .iter()
                .filter_map(|d| {
                    let attributes =
                        d.attribute.map(|(k, v)| KeyValue::new(k, v)).into_iter().collect();
                    (d.value)(&ctx).map(|v| (v, attributes))
                })
                .collect()
        }
    };
    // The three builders have different types, so one macro spells the chain for each.
    macro_rules! observable {
        ($builder:ident, $as:ident) => {{
            let _ = meter
                .$builder(first.name)
                .with_unit(first.unit)
                .with_description(description)
                .with_callback(move |o| {
                    for (v, attributes) in points() {
                        o.observe(v.$as(), &attributes);
                    }
                })
                .build();
        }};
    }
    match (first.kind, first.scaled) {
        (InstrumentKind::Counter, false) => observable!(u64_observable_counter, as_u64),
        (InstrumentKind::Counter, true) => observable!(f64_observable_counter, as_f64),
        (InstrumentKind::Gauge, _) => observable!(f64_observable_gauge, as_f64),
    }
}

/// The description of a labeled instrument, from [`status::LABELED_INSTRUMENTS`].
fn labeled(name: &str) -> &'static LabeledInstrument {
    status::LABELED_INSTRUMENTS
        .iter()
        .find(|i| i.name == name)
        .unwrap_or_else(|| panic!("{name} is not in status::LABELED_INSTRUMENTS"))
}

/// The instruments whose attributes come from the data (see [`status::LABELED_INSTRUMENTS`]).
fn register_labeled(meter: &Meter, ctx: &Arc<ServeContext>) {
    let def = labeled("vpcflowd.ingest.requests");
    let c = ctx.clone();
    let _ = meter
        .u64_observable_counter(def.name)
        .with_unit(def.unit)
        .with_description(def.description)
        .with_callback(move |o| {
            let responses = c.stats.responses.lock().unwrap_or_else(|e| e.into_inner()).clone();
            for (status, n) in responses {
                o.observe(n, &[KeyValue::new("http.response.status_code", i64::from(status))]);
            }
        })
        .build();
    let def = labeled("vpcflowd.ingest.rejects");
    let c = ctx.clone();
    let _ = meter
        .u64_observable_counter(def.name)
        .with_unit(def.unit)
        .with_description(def.description)
        .with_callback(move |o| {
            let rejects = c.stats.rejects.lock().unwrap_or_else(|e| e.into_inner());
            for (reason, n) in rejects.iter() {
                o.observe(n, &[KeyValue::new("vpcflowd.reject.reason", reason.as_str())]);
            }
        })
        .build();
    let def = labeled("vpcflowd.engine.watermark");
    let c = ctx.clone();
    gauge(meter, def, move || live_watermark(&c).map(|w| w as f64));
    let def = labeled("vpcflowd.engine.watermark.lag");
    let c = ctx.clone();
    gauge(meter, def, move || {
        live_watermark(&c).map(|w| (crate::clock::unix_secs_f64() - w as f64).max(0.0))
    });
    // The process, named by the OpenTelemetry semantic conventions (`/metrics`:
    // `process_memory_usage_bytes`).
    gauge(meter, labeled("process.memory.usage"), resident_bytes);
    let def = labeled("vpcflowd.kinesis.shard.lag");
    let c = ctx.clone();
    let _ = meter
        .u64_observable_gauge(def.name)
        .with_unit(def.unit)
        .with_description(def.description)
        .with_callback(move |o| {
            for (stream, shard, lag) in c.kinesis.lags() {
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

/// The watermark while it is a time: not before the first record (0), nor once every window
/// has closed (`u64::MAX`).
fn live_watermark(c: &ServeContext) -> Option<u64> {
    let w = c.engine.watermark.load(Relaxed);
    (w != 0 && w != u64::MAX).then_some(w)
}

/// A gauge without attributes.
fn gauge(
    meter: &Meter,
    def: &'static LabeledInstrument,
    value: impl Fn() -> Option<f64> + Send + Sync + 'static,
) {
    let _ = meter
        .f64_observable_gauge(def.name)
        .with_unit(def.unit)
        .with_description(def.description)
        .with_callback(move |o| {
            if let Some(v) = value() {
                o.observe(v, &[]);
            }
        })
        .build();
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
