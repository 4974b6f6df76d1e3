//! vpcflowd's own counters, each defined once: `/api/v1/status` ([`StatusReport`]), the
//! self-metric instruments (`serve::telemetry`) and their reference (`docs/config-reference.md`,
//! "Self-metrics") are all made from the sections below.
//!
//! A section is one struct of the status, declared with `status_section!`: each field gives
//! its type, how it is read from the running server, its description (its doc comment) and,
//! when it is exported, its instrument (name, kind, unit, and an attribute when several fields
//! make one instrument). Instruments whose attributes come from the data (responses by status
//! code, rejections by reason, Kinesis lag by shard) are listed in [`LABELED_INSTRUMENTS`] and
//! registered by `serve::telemetry` itself.
//!
//! The status is plain data, so a client deserialises it as it is served:
//!
//! ```
//! let text = r#"{"ingest": {"records": 7}, "engine": {"late_records": 2}}"#;
//! let status: vpcflowd::serve::status::StatusReport = serde_json::from_str(text).unwrap();
//! assert_eq!((status.ingest.records, status.engine.late_records), (7, 2));
//! ```

use std::collections::BTreeMap;
use std::sync::atomic::Ordering::Relaxed;

use serde::{Deserialize, Serialize};

use crate::record::filter::FilterReason;

use super::http::ServeContext;

mod labeled;
pub use self::labeled::{LABELED_INSTRUMENTS, LabeledInstrument};
use crate::decode::RejectSample;

/// Whether an instrument only grows or goes up and down.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InstrumentKind {
    /// A cumulative count (`_total` in Prometheus).
    Counter,
    /// A level read when exported.
    Gauge,
}

/// One instrument over one field of a section: how `serve::telemetry` registers it and how
/// the reference documents it.
#[derive(Debug, Clone, Copy)]
pub struct InstrumentDef {
    pub name: &'static str,
    pub kind: InstrumentKind,
    pub unit: &'static str,
    /// The field's doc comment.
    pub description: &'static str,
    /// The instrument's own description, when several fields make it (else the field's).
    pub about: Option<&'static str>,
    /// An attribute that tells this field apart from the others of the same instrument.
    pub attribute: Option<(&'static str, &'static str)>,
    /// Where the value is in the status: section and key.
    pub status: (&'static str, &'static str),
    /// Whether the value is scaled to the instrument's unit (then a counter counts in `f64`).
    pub scaled: bool,
    /// The value to export (`None` reports no point), in the instrument's unit.
    pub value: fn(&ServeContext) -> Option<Point>,
}

impl InstrumentDef {
    /// The field's description as one line.
    pub fn description_line(&self) -> String {
        one_line(self.description)
    }
}

/// `text` with its line breaks and runs of spaces as single spaces.
pub fn one_line(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// One value an instrument exports: a count stays a whole number, so that a `u64` counter
/// reports it exactly, and only a value scaled to another unit is fractional.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Point {
    Whole(u64),
    Real(f64),
}

impl Point {
    pub fn as_u64(self) -> u64 {
        match self {
            Point::Whole(v) => v,
            Point::Real(v) => v as u64,
        }
    }

    pub fn as_f64(self) -> f64 {
        match self {
            Point::Whole(v) => v as f64,
            Point::Real(v) => v,
        }
    }
}

/// A status value as an instrument's point.
pub trait AsPoint {
    fn as_point(&self) -> Option<Point>;
}

impl AsPoint for u64 {
    fn as_point(&self) -> Option<Point> {
        Some(Point::Whole(*self))
    }
}

impl AsPoint for usize {
    fn as_point(&self) -> Option<Point> {
        Some(Point::Whole(*self as u64))
    }
}

impl AsPoint for Option<u64> {
    fn as_point(&self) -> Option<Point> {
        self.map(Point::Whole)
    }
}

impl AsPoint for bool {
    fn as_point(&self) -> Option<Point> {
        Some(Point::Whole(u64::from(*self)))
    }
}

/// Declares one section of the status: the struct, how each field is read, and the
/// instruments over its fields (see the module documentation).
macro_rules! status_section {
    (
        $(#[doc = $sdoc:literal])*
        pub struct $name:ident ($section:literal) from |$ctx:ident| {
            $(
                $(#[doc = $doc:literal])*
                $field:ident: $ty:ty = $read:expr
                $(=> $iname:literal ($kind:ident, $unit:literal
                    $(, divide $scale:literal)? $(, attribute $akey:literal = $aval:literal)?
                    $(, about $about:literal)?))?
                ;
            )*
        }
    ) => {
        $(#[doc = $sdoc])*
        #[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
        #[serde(default)]
        pub struct $name {
            $($(#[doc = $doc])* pub $field: $ty,)*
        }

        impl $name {
            /// Reads the section from the running server.
            pub(crate) fn read($ctx: &ServeContext) -> $name {
                $name { $($field: $read,)* }
            }

            /// The instruments over this section's fields.
            pub fn instruments() -> Vec<InstrumentDef> {
                let mut defs = Vec::new();
                $(status_section!(@push defs, $section, $field, $ty, |$ctx| $read, [$($doc),*]
                    $({ $iname, $kind, $unit, [$($scale)?], [$($akey, $aval)?], [$($about)?] })?);)*
                defs
            }
        }
    };
    (@push $defs:ident, $section:literal, $field:ident, $ty:ty, |$ctx:ident| $read:expr,
        [$($doc:literal),*]
        { $iname:literal, $kind:ident, $unit:literal, [$($scale:literal)?],
          [$($akey:literal, $aval:literal)?], [$($about:literal)?] }) => {
        $defs.push(InstrumentDef {
            name: $iname,
            kind: InstrumentKind::$kind,
            unit: $unit,
            description: concat!($($doc),*),
            about: status_section!(@about $($about)?),
            attribute: status_section!(@attribute $($akey, $aval)?),
            status: ($section, stringify!($field)),
            scaled: status_section!(@scaled $($scale)?),
            value: |$ctx| {
                let value: $ty = $read;
                AsPoint::as_point(&value)$(.map(|p| Point::Real(p.as_f64() / $scale)))?
            },
        })
    };
    (@push $defs:ident, $section:literal, $field:ident, $ty:ty, |$ctx:ident| $read:expr,
        [$($doc:literal),*]) => {};
    (@attribute $key:literal, $value:literal) => { Some(($key, $value)) };
    (@attribute) => { None };
    (@scaled $scale:literal) => { true };
    (@scaled) => { false };
    (@about $about:literal) => { Some($about) };
    (@about) => { None };
}

status_section! {
    /// `ingest`: the Firehose listener and what it took in.
    pub struct IngestReport ("ingest") from |c| {
        /// Responses by HTTP status code.
        responses: BTreeMap<u16, u64> =
            c.stats.responses.lock().unwrap_or_else(|e| e.into_inner()).clone();
        /// Flow-log records accepted into the engine.
        records: u64 = c.stats.records.load(Relaxed)
            => "vpcflowd.ingest.records" (Counter, "{record}");
        /// Lines or envelopes rejected (by reason in vpcflowd.ingest.rejects).
        rejected: u64 = c.stats.rejected.load(Relaxed)
            => "vpcflowd.ingest.rejected" (Counter, "{record}");
        /// Record bytes received (after base64 and body decompression).
        bytes: u64 = c.stats.bytes.load(Relaxed)
            => "vpcflowd.ingest.bytes" (Counter, "By");
        /// Retried Firehose requests answered from the dedup memory.
        dedup_hits: u64 = c.dedup.hits.load(Relaxed)
            => "vpcflowd.ingest.dedup_hits" (Counter, "{request}");
        /// Request ids remembered for dedup.
        dedup_remembered: usize = c.dedup.len();
        /// Requests being parsed for the pipeline or waiting for it.
        queue_depth: usize = c.pipeline.max_capacity() - c.pipeline.capacity()
            => "vpcflowd.ingest.queue.depth" (Gauge, "{request}");
        /// Requests the pipeline queue holds at most.
        queue_capacity: usize = c.pipeline.max_capacity();
        /// Whether shutdown has begun (new requests get 503).
        shutting_down: bool = c.shutting_down.load(Relaxed);
        /// Requests whose body did not arrive within `ingest.body_read_timeout` (answered 408).
        slow_bodies: u64 = c.stats.slow_bodies.load(Relaxed)
            => "vpcflowd.ingest.slow_bodies" (Counter, "{request}");
        /// Connections closed at once because `ingest.max_connections` were open.
        connections_refused: u64 = c.stats.connections_refused.load(Relaxed)
            => "vpcflowd.ingest.connections_refused" (Counter, "{connection}");
        /// Ingest connections open when the status is read, of at most
        /// `ingest.max_connections`. A connection's close is counted (in `header_timeouts`,
        /// when it was cut) before the connection leaves this number.
        connections_open: u64 = c.stats.connections_open.load(std::sync::atomic::Ordering::Acquire)
            => "vpcflowd.ingest.connections_open" (Gauge, "{connection}");
        /// Connections closed while a request's headers were still arriving: at
        /// `ingest.header_read_timeout` (a slowloris client), or cut at shutdown.
        header_timeouts: u64 = c.stats.header_timeouts.load(Relaxed)
            => "vpcflowd.ingest.header_timeouts" (Counter, "{connection}");
        /// Records dropped before windows by `[filters]`: their region.
        filtered_region: u64 = c.engine.filtered[FilterReason::Region.index()].load(Relaxed)
            => "vpcflowd.ingest.filtered" (Counter, "{record}", attribute "reason" = "region",
                about "Records dropped before windows by [filters], by reason");
        /// Records dropped because their region is unknown (`drop_unknown_region`).
        filtered_unknown_region: u64 =
            c.engine.filtered[FilterReason::UnknownRegion.index()].load(Relaxed)
            => "vpcflowd.ingest.filtered" (Counter, "{record}", attribute "reason" = "unknown_region");
        /// Records dropped by `[filters]`: their account.
        filtered_account: u64 = c.engine.filtered[FilterReason::Account.index()].load(Relaxed)
            => "vpcflowd.ingest.filtered" (Counter, "{record}", attribute "reason" = "account");
        /// Records dropped by `[filters]`: their interface.
        filtered_interface: u64 = c.engine.filtered[FilterReason::Interface.index()].load(Relaxed)
            => "vpcflowd.ingest.filtered" (Counter, "{record}", attribute "reason" = "interface");
        /// The ingest listener's certificate or access keys replaced after a change on disk.
        reloads: u64 = c.stats.reloads.load(Relaxed)
            => "vpcflowd.ingest.reloads" (Counter, "{reload}");
        /// Changed or unreadable certificate, key or access-key files that were not swapped in.
        reload_failures: u64 = c.stats.reload_failures.load(Relaxed)
            => "vpcflowd.ingest.reload_failures" (Counter, "{reload}");
    }
}

status_section! {
    /// `state`: the state file.
    pub struct StateReport ("state") from |c| {
        /// State files written.
        checkpoints: u64 = c.stats.checkpoints.load(Relaxed)
            => "vpcflowd.state.checkpoints" (Counter, "{checkpoint}");
        /// State files that could not be written.
        checkpoint_failures: u64 = c.stats.checkpoint_failures.load(Relaxed)
            => "vpcflowd.state.checkpoint_failures" (Counter, "{checkpoint}");
        /// When the last state file was written (Unix milliseconds; 0 before the first).
        last_checkpoint_ms: u64 = c.stats.last_checkpoint_ms.load(Relaxed);
        /// Firehose requests appended to the write-ahead log.
        wal_appends: u64 = c.stats.wal_appends.load(Relaxed)
            => "vpcflowd.state.wal.appends" (Counter, "{request}");
        /// Bytes appended to the write-ahead log.
        wal_bytes: u64 = c.stats.wal_bytes.load(Relaxed)
            => "vpcflowd.state.wal.bytes" (Counter, "By");
        /// Syncs of the write-ahead log; each answers every request appended before it.
        wal_syncs: u64 = c.stats.wal_syncs.load(Relaxed)
            => "vpcflowd.state.wal.syncs" (Counter, "{sync}");
        /// Time spent in those syncs (microseconds).
        wal_sync_micros: u64 = c.stats.wal_sync_micros.load(Relaxed)
            => "vpcflowd.state.wal.sync_time" (Counter, "us");
        /// Requests routed again from the write-ahead log at start.
        wal_replayed_requests: u64 = c.stats.wal_replayed.load(Relaxed)
            => "vpcflowd.state.wal.replayed_requests" (Counter, "{request}");
        /// Bytes of a torn or corrupt log tail cut at start.
        wal_cut_bytes: u64 = c.stats.wal_cut_bytes.load(Relaxed)
            => "vpcflowd.state.wal.cut_bytes" (Counter, "By");
        /// Appends or syncs that failed (see the log).
        wal_failures: u64 = c.stats.wal_failures.load(Relaxed)
            => "vpcflowd.state.wal.failures" (Counter, "{failure}");
        /// Batches of closed windows appended to the history journal (the API's snapshots
        /// across restarts; `serve::history`).
        history_batches: u64 = c.history.batches.load(Relaxed)
            => "vpcflowd.state.history.batches" (Counter, "{batch}");
        /// Snapshots read back from the history at start.
        history_restored: u64 = c.history.restored.load(Relaxed);
        /// Bytes cut from a torn or corrupt history tail at start.
        history_cut_bytes: u64 = c.history.cut_bytes.load(Relaxed);
        /// History appends or cuts that failed (see the log).
        history_failures: u64 = c.history.failures.load(Relaxed)
            => "vpcflowd.state.history.failures" (Counter, "{failure}");
    }
}

status_section! {
    /// `engine`: the window engine.
    pub struct EngineReport ("engine") from |c| {
        /// Records the engine took in.
        records: u64 = c.engine.records.load(Relaxed)
            => "vpcflowd.engine.records" (Counter, "{record}");
        /// Records for panes already closed.
        late_records: u64 = c.engine.late_records.load(Relaxed)
            => "vpcflowd.engine.late_records" (Counter, "{record}");
        /// Late records too old for any kept pane (counted only).
        expired_late_records: u64 = c.engine.expired_late_records.load(Relaxed)
            => "vpcflowd.engine.expired_late_records" (Counter, "{record}");
        /// Records refused for naming no interface.
        missing_interface: u64 = c.engine.missing_interface.load(Relaxed);
        /// The watermark (Unix time): windows ending at or before it are closed.
        watermark: Option<u64> = Some(c.engine.watermark.load(Relaxed)).filter(|&w| w != 0);
        /// Windows with data not closed yet.
        open_windows: u64 = c.engine.open_windows.load(Relaxed)
            => "vpcflowd.engine.open_windows" (Gauge, "{window}");
        /// Windows closed.
        windows_closed: u64 = c.engine.windows_closed.load(Relaxed)
            => "vpcflowd.engine.windows_closed" (Counter, "{window}");
        /// Snapshots emitted (one per window and interface).
        snapshots: u64 = c.engine.snapshots.load(Relaxed)
            => "vpcflowd.engine.snapshots" (Counter, "{snapshot}");
        /// Corrected snapshots emitted (--late update).
        revisions: u64 = c.engine.revisions.load(Relaxed)
            => "vpcflowd.engine.revisions" (Counter, "{snapshot}");
        /// Time the last window close took
        last_close_micros: u64 = c.engine.last_close_micros.load(Relaxed)
            => "vpcflowd.engine.window_close.last_duration" (Gauge, "s", divide 1e6);
        /// Time spent closing windows (divide by vpcflowd.engine.windows_closed for the mean)
        close_micros_total: u64 = c.engine.close_micros_total.load(Relaxed)
            => "vpcflowd.engine.window_close.time" (Counter, "s", divide 1e6);
        /// Events lost because their shard's worker had stopped (only after a worker panic).
        events_lost_to_stopped_shard: u64 = c.engine.events_lost_to_stopped_shard.load(Relaxed);
    }
}

status_section! {
    /// `export`: the OTLP window exporter.
    pub struct ExportReport ("export") from |c| {
        /// Closed windows exported: every request of theirs succeeded.
        windows_exported: u64 = c.export.windows_exported.load(Relaxed)
            => "vpcflowd.export.windows" (Counter, "{window}", attribute "outcome" = "exported",
                about "Closed windows by export outcome (exported, failed, dropped: queue full)");
        /// Closed windows with a failed request (the rest of such a window is dropped).
        windows_failed: u64 = c.export.windows_failed.load(Relaxed)
            => "vpcflowd.export.windows" (Counter, "{window}", attribute "outcome" = "failed");
        /// Closed windows dropped from export because the queue was full.
        windows_dropped: u64 = c.export.windows_dropped.load(Relaxed)
            => "vpcflowd.export.windows" (Counter, "{window}", attribute "outcome" = "dropped");
        /// Corrected snapshots not exported (served by the JSON API).
        revisions_skipped: u64 = c.export.revisions_skipped.load(Relaxed)
            => "vpcflowd.export.revisions_skipped" (Counter, "{snapshot}");
        /// Window metric data points exported.
        points_exported: u64 = c.export.points_exported.load(Relaxed)
            => "vpcflowd.export.points" (Counter, "{point}", attribute "outcome" = "exported",
                about "Window metric data points by outcome");
        /// Window metric data points dropped.
        points_dropped: u64 = c.export.points_dropped.load(Relaxed)
            => "vpcflowd.export.points" (Counter, "{point}", attribute "outcome" = "dropped");
        /// Top-flow log records exported.
        flow_logs_exported: u64 = c.export.flow_logs_exported.load(Relaxed)
            => "vpcflowd.export.flow_logs" (Counter, "{record}", attribute "outcome" = "exported",
                about "Top-flow log records by outcome");
        /// Top-flow log records dropped.
        flow_logs_dropped: u64 = c.export.flow_logs_dropped.load(Relaxed)
            => "vpcflowd.export.flow_logs" (Counter, "{record}", attribute "outcome" = "dropped");
        /// Finding log records exported.
        finding_logs_exported: u64 = c.export.finding_logs_exported.load(Relaxed)
            => "vpcflowd.export.finding_logs" (Counter, "{record}", attribute "outcome" = "exported",
                about "Finding log records by outcome");
        /// Finding log records dropped.
        finding_logs_dropped: u64 = c.export.finding_logs_dropped.load(Relaxed)
            => "vpcflowd.export.finding_logs" (Counter, "{record}", attribute "outcome" = "dropped");
        /// OTLP metric export requests that failed after retries.
        metric_errors: u64 = c.export.metric_errors.load(Relaxed)
            => "vpcflowd.export.errors" (Counter, "{request}", attribute "signal" = "metrics",
                about "OTLP export requests that failed after retries, by signal");
        /// OTLP log export requests that failed after retries.
        log_errors: u64 = c.export.log_errors.load(Relaxed)
            => "vpcflowd.export.errors" (Counter, "{request}", attribute "signal" = "logs");
        /// Closed windows waiting for export.
        queue_depth: u64 = c.export.queue_depth.load(Relaxed)
            => "vpcflowd.export.queue.depth" (Gauge, "{window}");
        /// Time the last window's export took
        last_export_micros: u64 = c.export.last_export_micros.load(Relaxed)
            => "vpcflowd.export.last_duration" (Gauge, "s", divide 1e6);
    }
}

status_section! {
    /// `alerts`: the findings webhook (`[alerts]`).
    pub struct AlertsReport ("alerts") from |c| {
        /// Findings the webhook receiver accepted (2xx).
        webhook_delivered: u64 = c.export.webhook.delivered.load(Relaxed)
            => "vpcflowd.alerts.webhook" (Counter, "{finding}", attribute "outcome" = "delivered",
                about "Findings posted to the webhook by outcome (delivered, failed, dropped)");
        /// Findings given up on: out of attempts, or refused with a 4xx other than 429.
        webhook_failed: u64 = c.export.webhook.failed.load(Relaxed)
            => "vpcflowd.alerts.webhook" (Counter, "{finding}", attribute "outcome" = "failed");
        /// Findings dropped: the queue was full, or shutdown ran out of time.
        webhook_dropped: u64 = c.export.webhook.dropped.load(Relaxed)
            => "vpcflowd.alerts.webhook" (Counter, "{finding}", attribute "outcome" = "dropped");
        /// Webhook posts retried.
        webhook_retries: u64 = c.export.webhook.retries.load(Relaxed)
            => "vpcflowd.alerts.webhook.retries" (Counter, "{request}");
        /// Findings waiting for the webhook.
        webhook_queue_depth: u64 = c.export.webhook.queue_depth.load(Relaxed)
            => "vpcflowd.alerts.webhook.queue.depth" (Gauge, "{finding}");
    }
}

status_section! {
    /// `enrich`: the EC2 enrichment (`[enrich.ec2]`; zeros without it).
    pub struct EnrichReport ("enrich") from |c| {
        /// Interfaces EC2 described, in the inventory.
        ec2_interfaces: usize = c.ec2.inventory.as_ref().map_or(0, |i| i.len())
            => "vpcflowd.enrich.ec2.interfaces" (Gauge, "{interface}");
        /// `DescribeNetworkInterfaces` calls answered (pages included).
        ec2_calls: u64 = c.ec2.stats.calls.load(Relaxed)
            => "vpcflowd.enrich.ec2.calls" (Counter, "{call}", attribute "outcome" = "ok",
                about "DescribeNetworkInterfaces calls by outcome (ok, failed)");
        /// Calls that failed after the SDK's retries: the inventory kept its last answer.
        ec2_failures: u64 = c.ec2.stats.failures.load(Relaxed)
            => "vpcflowd.enrich.ec2.calls" (Counter, "{call}", attribute "outcome" = "failed");
        /// Regions described in full.
        ec2_refreshes: u64 = c.ec2.stats.refreshes.load(Relaxed);
        /// When a region was last described in full (Unix milliseconds; 0 before).
        ec2_last_refresh_ms: u64 = c.ec2.stats.last_refresh_ms.load(Relaxed);
        /// Interfaces that records named and the inventory lacked.
        ec2_unknown_interfaces: u64 = c.ec2.inventory.as_ref().map_or(0, |i| i.reported_unknown())
            => "vpcflowd.enrich.ec2.unknown_interfaces" (Counter, "{interface}");
        /// Lookups of such interfaces between refreshes.
        ec2_lookups: u64 = c.ec2.stats.lookups.load(Relaxed);
        /// Interfaces EC2 did not know when looked up (asked again at the next refresh).
        ec2_not_found: u64 = c.ec2.stats.not_found.load(Relaxed);
        /// Interfaces read from the cache file at start.
        ec2_cached_interfaces: u64 = c.ec2.stats.cached_interfaces.load(Relaxed);
        /// Cache files that could not be read or written.
        ec2_cache_errors: u64 = c.ec2.stats.cache_errors.load(Relaxed);
    }
}

status_section! {
    /// `kinesis`: the Kinesis source's counters (beside its `shards`).
    pub struct KinesisReport ("kinesis") from |c| {
        /// GetRecords calls.
        get_records_calls: u64 = c.kinesis.counters.get_records_calls.load(Relaxed)
            => "vpcflowd.kinesis.get_records" (Counter, "{call}");
        /// GetRecords calls answered ProvisionedThroughputExceeded (backed off).
        throttled: u64 = c.kinesis.counters.throttled.load(Relaxed)
            => "vpcflowd.kinesis.throttled" (Counter, "{call}");
        /// ExpiredIterator answers (a new iterator from the last applied position).
        expired_iterators: u64 = c.kinesis.counters.expired_iterators.load(Relaxed);
        /// Failed Kinesis calls other than throttling (retried with backoff).
        errors: u64 = c.kinesis.counters.errors.load(Relaxed)
            => "vpcflowd.kinesis.errors" (Counter, "{call}");
        /// Kinesis records read (before KPL de-aggregation).
        records: u64 = c.kinesis.counters.records.load(Relaxed)
            => "vpcflowd.kinesis.records" (Counter, "{record}");
        /// Bytes of Kinesis records read.
        bytes: u64 = c.kinesis.counters.bytes.load(Relaxed);
        /// User records unpacked from KPL aggregates.
        kpl_user_records: u64 = c.kinesis.counters.kpl_user_records.load(Relaxed);
        /// Leases taken over from an expired owner.
        leases_taken: u64 = c.kinesis.counters.leases_taken.load(Relaxed);
        /// Leases handed to another replica.
        leases_handed_off: u64 = c.kinesis.counters.leases_handed_off.load(Relaxed);
        /// Leases lost with records not yet committed.
        leases_lost: u64 = c.kinesis.counters.leases_lost.load(Relaxed)
            => "vpcflowd.kinesis.leases_lost" (Counter, "{lease}");
        /// Records of lost leases applied here but not committed (the new owner reads them
        /// again).
        lost_uncommitted_records: u64 = c.kinesis.counters.lost_uncommitted_records.load(Relaxed);
        /// Kinesis records that arrived after their lease was lost: left to the new owner.
        records_of_lost_leases_not_applied: u64 =
            c.kinesis.counters.records_of_lost_leases_not_applied.load(Relaxed)
            => "vpcflowd.kinesis.records_of_lost_leases_not_applied" (Counter, "{record}");
        /// Lease-table commits (one transaction each).
        commits: u64 = c.kinesis.counters.commits.load(Relaxed);
        /// Lease-table commits that failed.
        commit_failures: u64 = c.kinesis.counters.commit_failures.load(Relaxed)
            => "vpcflowd.kinesis.commit_failures" (Counter, "{commit}");
    }
}

/// The `kinesis` section: the counters and every shard this replica knows.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct KinesisSection {
    #[serde(flatten)]
    pub counters: KinesisReport,
    /// One entry per shard (`stream`, `shard`, `state`, `lag_ms`, `records`, …).
    pub shards: Vec<serde_json::Value>,
}

/// A rejection reason's count and its latest sample.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct RejectReport {
    pub count: u64,
    pub latest: Option<RejectSample>,
}

/// `/api/v1/status`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct StatusReport {
    pub ingest: IngestReport,
    pub state: StateReport,
    /// Rejections by reason, with the latest sample of each.
    pub rejects: BTreeMap<String, RejectReport>,
    pub engine: EngineReport,
    pub export: ExportReport,
    pub alerts: AlertsReport,
    pub enrich: EnrichReport,
    pub kinesis: KinesisSection,
    /// The newest closed window's start (Unix seconds).
    pub latest_window: Option<u64>,
}

impl StatusReport {
    /// Reads the whole status from the running server.
    pub(crate) fn read(c: &ServeContext) -> StatusReport {
        let rejects = {
            let r = c.stats.rejects.lock().unwrap_or_else(|e| e.into_inner());
            r.iter()
                .map(|(reason, count)| {
                    let latest = r.sample(reason).cloned();
                    (reason.as_str().to_string(), RejectReport { count, latest })
                })
                .collect()
        };
        let shards = c.kinesis.shards().into_iter().filter_map(|s| serde_json::to_value(s).ok());
        let kinesis = KinesisSection { counters: KinesisReport::read(c), shards: shards.collect() };
        StatusReport {
            ingest: IngestReport::read(c),
            state: StateReport::read(c),
            rejects,
            engine: EngineReport::read(c),
            export: ExportReport::read(c),
            alerts: AlertsReport::read(c),
            enrich: EnrichReport::read(c),
            kinesis,
            latest_window: c.store.latest_window(),
        }
    }
}

/// Every instrument over a status field, section by section.
pub fn instruments() -> Vec<InstrumentDef> {
    let mut defs = IngestReport::instruments();
    defs.extend(EngineReport::instruments());
    defs.extend(StateReport::instruments());
    defs.extend(ExportReport::instruments());
    defs.extend(AlertsReport::instruments());
    defs.extend(EnrichReport::instruments());
    defs.extend(KinesisReport::instruments());
    defs
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Fields that make one instrument agree on its kind, unit and scaling, and are told apart
    /// by their attributes; no status key is named twice.
    #[test]
    fn the_instrument_table_is_consistent() {
        let defs = instruments();
        let mut seen_keys = std::collections::BTreeSet::new();
        let mut seen_points = std::collections::BTreeSet::new();
        for d in &defs {
            assert!(seen_keys.insert(d.status), "{:?} twice", d.status);
            assert!(
                seen_points.insert((d.name, d.attribute)),
                "{} {:?} twice",
                d.name,
                d.attribute
            );
            let first = defs.iter().find(|e| e.name == d.name).unwrap();
            assert_eq!(
                (first.kind, first.unit, first.scaled),
                (d.kind, d.unit, d.scaled),
                "{}",
                d.name
            );
            let group = defs.iter().filter(|e| e.name == d.name).count();
            assert_eq!(
                group > 1,
                d.attribute.is_some(),
                "{}: attributes tell a group apart",
                d.name
            );
            assert!(!d.description.trim().is_empty(), "{} has no description", d.name);
        }
        for l in LABELED_INSTRUMENTS {
            assert!(defs.iter().all(|d| d.name != l.name), "{} is defined twice", l.name);
        }
    }
}
