//! Export sends closed windows to OpenTelemetry (OTLP metrics and logs) and serves them to
//! Prometheus (`/metrics`).
//!
//! This module owns the measure definitions ([`measures`]), the OTLP exporters ([`otlp`]), the
//! export worker with its bounded queue ([`worker`]) and the `/metrics` window collector
//! ([`prometheus`]). It reads snapshots and never calls back into ingest or the engine.
//!
//! ```text
//! engine ─► snapshot batches ─► SnapshotStore ◄── /metrics (WindowCollector, at each scrape)
//!                     │
//!                     └─ try_send ─► export queue ─► worker thread ─► OTLP gauges (a request
//!                        (full: the window is      per ≤ max_points_per_request points, whole
//!                         dropped and counted)      interfaces) + OTLP log records (top flows)
//! ```
//!
//! A minimal export of one window to an OTLP/HTTP collector:
//!
//! ```no_run
//! use std::sync::Arc;
//! use vpcflowd::export::{ExportConfig, ExportStats, ExporterOptions, WindowExporter};
//! use vpcflowd::export::config::OtlpProtocol;
//! # fn demo(snapshots: Vec<Arc<vpcflowd::window::Snapshot>>) -> Result<(), vpcflowd::export::ExportError> {
//! let config = ExportConfig {
//!     otlp_endpoint: Some("http://127.0.0.1:4318".into()),
//!     otlp_protocol: OtlpProtocol::Http,
//!     ..ExportConfig::default()
//! };
//! let stats = Arc::new(ExportStats::default());
//! let exporter = WindowExporter::start(&config, &ExporterOptions::default(), stats.clone())?;
//! exporter.offer(&snapshots);
//! exporter.finish(std::time::Duration::from_secs(30));
//! println!("{} points exported", stats.points_exported.load(std::sync::atomic::Ordering::Relaxed));
//! # Ok(()) }
//! ```

pub mod config;
mod error;
pub(crate) mod log_records;
pub mod measures;
pub(crate) mod otlp;
pub mod prometheus;
mod rollup_gauges;
pub mod source_measures;
pub mod webhook;
pub(crate) mod worker;

use std::sync::atomic::AtomicU64;

pub use config::ExportConfig;
pub use error::ExportError;
pub use worker::{ExporterOptions, WindowExporter};

/// Counters of the export path (shown as `vpcflowd.export.*` self-metrics and in
/// `/api/v1/status`).
#[derive(Debug, Default)]
pub struct ExportStats {
    /// Windows whose every request succeeded.
    pub windows_exported: AtomicU64,
    /// Windows with at least one failed request (the rest of such a window is dropped at
    /// once, so a dead collector does not hold the queue).
    pub windows_failed: AtomicU64,
    /// Windows never exported because the queue was full.
    pub windows_dropped: AtomicU64,
    /// Corrections (`revision` > 0) not exported: a gauge holds the newest window, so an old
    /// window's correction would overwrite it; corrections are served by the JSON API.
    pub revisions_skipped: AtomicU64,
    pub points_exported: AtomicU64,
    pub points_dropped: AtomicU64,
    pub flow_logs_exported: AtomicU64,
    pub flow_logs_dropped: AtomicU64,
    pub finding_logs_exported: AtomicU64,
    pub finding_logs_dropped: AtomicU64,
    /// Failed export requests, by signal.
    pub metric_errors: AtomicU64,
    pub log_errors: AtomicU64,
    /// Windows waiting in the queue.
    pub queue_depth: AtomicU64,
    /// Time spent exporting windows, in microseconds (total, and the last window's).
    pub export_micros_total: AtomicU64,
    pub last_export_micros: AtomicU64,
    /// The findings webhook's counters.
    pub webhook: webhook::WebhookStats,
}
