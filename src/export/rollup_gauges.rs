//! The window's roll-ups as OTLP gauges, sent by the export worker in a request of their own
//! after the window's interfaces (see [`crate::window::rollup`]).

use opentelemetry::metrics::{Gauge, Meter};
use opentelemetry::{KeyValue, StringValue, Value};

use super::measures;
use crate::window::Snapshot;
use crate::window::rollup::{RollupKind, rollups};

/// The window's roll-ups as gauges (`vpcflowd.{kind}.{bytes,rejected_flows,interfaces}`), one
/// point per region, account, VPC and subnet.
pub(super) struct RollupGauges(Vec<(RollupKind, Vec<Gauge<u64>>)>);

impl RollupGauges {
    pub(super) fn new(meter: &Meter) -> RollupGauges {
        let gauges = RollupKind::ALL.map(|kind| {
            let of_kind = measures::ROLLUP_MEASURES.iter().map(|m| {
                let name = format!("vpcflowd.{}.{}", kind.as_str(), m.name);
                let description = format!("{} of each {}", m.description, kind.as_str());
                meter.u64_gauge(name).with_unit(m.unit).with_description(description).build()
            });
            (kind, of_kind.collect())
        });
        RollupGauges(gauges.into())
    }

    /// The points [`RollupGauges::record`] gives for `window`.
    pub(super) fn points(window: &[&Snapshot]) -> usize {
        let per_rollup = measures::ROLLUP_MEASURES.len();
        RollupKind::ALL.iter().map(|&k| rollups(k, window).len() * per_rollup).sum()
    }

    pub(super) fn record(&self, window: &[&Snapshot]) {
        for (kind, gauges) in &self.0 {
            let attribute = measures::rollup_label(*kind).0;
            for r in rollups(*kind, window) {
                let attrs =
                    [KeyValue::new(attribute, Value::String(StringValue::from(r.id.clone())))];
                for (m, gauge) in measures::ROLLUP_MEASURES.iter().zip(gauges) {
                    gauge.record((m.value)(&r.totals), &attrs);
                }
            }
        }
    }
}
