//! This module builds the OpenTelemetry log records of a window: one per top flow (event
//! `vpcflowd.top_flow`, with its source's summary) and one per finding (event
//! `vpcflowd.finding`), each stamped with its window's end.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use opentelemetry::logs::{AnyValue, LogRecord, Logger, Severity};
use opentelemetry_sdk::logs::{SdkLogRecord, SdkLogger};

use super::measures::{self, ACCOUNT_ID, INTERFACE_ID, REGION};
use crate::window::Snapshot;
use crate::window::direction::Direction;
use crate::window::findings::Finding;
use crate::window::snapshot::SourceSnapshot;

/// The finding records of a chunk of snapshots.
pub(crate) fn findings_in(chunk: &[&Snapshot]) -> usize {
    chunk.iter().map(|s| s.findings.len()).sum()
}

/// The attributes every record of a window carries: its interface and, where known, account
/// and region.
fn add_interface(r: &mut SdkLogRecord, s: &Snapshot) {
    r.add_attribute(INTERFACE_ID.0, s.interface_id.to_string());
    if let Some(a) = &s.account_id {
        r.add_attribute(ACCOUNT_ID.0, a.to_string());
    }
    if let Some(reg) = &s.region {
        r.add_attribute(REGION.0, reg.to_string());
    }
}

/// One finding as a log record (severity WARN, the detail as its body).
pub(crate) fn finding_record(logger: &SdkLogger, s: &Snapshot, f: &Finding) -> SdkLogRecord {
    let mut r = logger.create_log_record();
    r.set_event_name("vpcflowd.finding");
    r.set_timestamp(UNIX_EPOCH + Duration::from_secs(s.window_end));
    r.set_observed_timestamp(SystemTime::now());
    r.set_severity_number(Severity::Warn);
    r.set_severity_text("WARN");
    r.set_body(AnyValue::from(f.detail.clone()));
    add_interface(&mut r, s);
    r.add_attribute("vpcflowd.finding.kind", f.kind);
    r.add_attribute("vpcflowd.finding.subject", f.subject.clone());
    r.add_attribute("vpcflowd.finding.value", f.value);
    r.add_attribute("vpcflowd.finding.threshold", f.threshold);
    r.add_attribute("vpcflowd.window.start", s.window_start as i64);
    r.add_attribute("vpcflowd.window.end", s.window_end as i64);
    r
}

/// One top flow as a log record: timestamped with its window's end, every flow attribute, its
/// source's destination summary, and the window bounds.
pub(crate) fn flow_record(
    logger: &SdkLogger,
    s: &Snapshot,
    source: &SourceSnapshot,
    f: &crate::window::snapshot::FlowSnapshot,
) -> SdkLogRecord {
    let mut r = logger.create_log_record();
    r.set_event_name("vpcflowd.top_flow");
    r.set_timestamp(UNIX_EPOCH + Duration::from_secs(s.window_end));
    r.set_observed_timestamp(SystemTime::now());
    r.set_severity_number(Severity::Info);
    r.set_severity_text("INFO");
    let action = f.action.map(|a| <&str>::from(a).to_string());
    let transport = f.protocol.map(measures::transport);
    r.set_body(AnyValue::from(format!(
        "{}:{} -> {}:{} {} {} {} bytes {} packets",
        f.srcaddr,
        f.srcport.map_or("-".into(), |p| p.to_string()),
        f.dstaddr.map_or("-".into(), |a| a.to_string()),
        f.dstport.map_or("-".into(), |p| p.to_string()),
        transport.as_deref().unwrap_or("-"),
        action.as_deref().unwrap_or("-"),
        f.bytes,
        f.packets,
    )));
    add_interface(&mut r, s);
    r.add_attribute("source.address", f.srcaddr.to_string());
    if let Some(p) = f.srcport {
        r.add_attribute("source.port", i64::from(p));
    }
    if let Some(a) = f.dstaddr {
        r.add_attribute("destination.address", a.to_string());
    }
    if let Some(p) = f.dstport {
        r.add_attribute("destination.port", i64::from(p));
    }
    if let Some(t) = transport {
        r.add_attribute("network.transport", t);
    }
    if let Some(p) = f.protocol {
        r.add_attribute("vpcflowd.flow.protocol", i64::from(p));
    }
    if let Some(a) = action {
        r.add_attribute("vpcflowd.flow.action", a);
    }
    match f.direction {
        Direction::Ingress => r.add_attribute("network.io.direction", "receive"),
        Direction::Egress => r.add_attribute("network.io.direction", "transmit"),
        Direction::Unknown => {}
    }
    if let Some(via) = f.via {
        r.add_attribute("vpcflowd.flow.via", via.to_string());
    }
    r.add_attribute("vpcflowd.flow.packets", f.packets as i64);
    r.add_attribute("vpcflowd.flow.bytes", f.bytes as i64);
    add_source_summary(&mut r, source);
    r.add_attribute("vpcflowd.window.start", s.window_start as i64);
    r.add_attribute("vpcflowd.window.end", s.window_end as i64);
    r
}

/// The flow's source at a glance: where most of its bytes went, how many ports and addresses it
/// reached, how often it was rejected, and how it compares with its baseline.
fn add_source_summary(r: &mut SdkLogRecord, source: &SourceSnapshot) {
    if let Some(top) = source.top_destinations.first() {
        r.add_attribute("vpcflowd.source.top_destination.address", top.address.to_string());
        r.add_attribute("vpcflowd.source.top_destination.share", top.share_pct);
    }
    let ports = source.distinct_destination_ports as i64;
    r.add_attribute("vpcflowd.source.distinct_destination_ports", ports);
    let addresses = source.distinct_destination_addresses as i64;
    r.add_attribute("vpcflowd.source.distinct_destination_addresses", addresses);
    r.add_attribute("vpcflowd.source.reject_ratio", source.reject_ratio_pct);
    if let Some(ratio) = source.spike_ratio {
        r.add_attribute("vpcflowd.source.spike_ratio", ratio);
    }
}
