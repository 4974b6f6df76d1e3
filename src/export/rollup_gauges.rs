//! The window's roll-ups as OTLP gauges, sent by the export worker in a request of their own
//! after the window's interfaces (see [`crate::window::rollup`]).

use opentelemetry::metrics::{Gauge, Meter};
use opentelemetry::{KeyValue, StringValue, Value};

use super::measures;
use crate::window::Snapshot;
use crate::window::rollup::{Rollup, RollupKind, rollups};

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

    /// The window's roll-ups of every kind, in the gauges' order (computed once, then counted
    /// and recorded).
    pub(super) fn of(window: &[&Snapshot]) -> WindowRollups {
        WindowRollups(RollupKind::ALL.map(|k| rollups(k, window)))
    }

    pub(super) fn record(&self, window: &WindowRollups) {
        for ((kind, gauges), rolled) in self.0.iter().zip(&window.0) {
            let attribute = measures::rollup_label(*kind).0;
            for r in rolled {
                let attrs =
                    [KeyValue::new(attribute, Value::String(StringValue::from(r.id.clone())))];
                for (m, gauge) in measures::ROLLUP_MEASURES.iter().zip(gauges) {
                    gauge.record((m.value)(&r.totals), &attrs);
                }
            }
        }
    }
}

/// One window's roll-ups, by kind in [`RollupKind::ALL`]'s order.
pub(super) struct WindowRollups([Vec<Rollup>; 4]);

impl WindowRollups {
    /// The points recording them gives.
    pub(super) fn points(&self) -> usize {
        self.0.iter().map(Vec::len).sum::<usize>() * measures::ROLLUP_MEASURES.len()
    }
}
