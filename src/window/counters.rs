//! This module holds the counters a pane keeps: its record counts, its traffic per direction,
//! and the traffic of a source, destination, protocol or flow.
//!
//! Counters saturate rather than wrap: a record may claim up to u64::MAX bytes, and a sum of
//! such claims must not come out small.

use serde::{Deserialize, Serialize};

use super::direction::Direction;
use super::event::FlowEvent;
use super::table::Measure;
use crate::decode::Action;

/// The records of a pane that carry no traffic, or whose traffic was dropped. The pane's
/// traffic is in its per-direction [`DirectionTotals`], whose sum is the interface's.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecordCounts {
    pub nodata_records: u64,
    pub skipdata_records: u64,
    pub late_records: u64,
}

impl RecordCounts {
    pub fn add(&mut self, o: &RecordCounts) {
        self.nodata_records = self.nodata_records.saturating_add(o.nodata_records);
        self.skipdata_records = self.skipdata_records.saturating_add(o.skipdata_records);
        self.late_records = self.late_records.saturating_add(o.late_records);
    }
}

/// Traffic counters of a source, destination or protocol.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Traffic {
    pub packets: u64,
    pub bytes: u64,
    pub flows: u64,
    pub rejected_flows: u64,
    pub rejected_bytes: u64,
}

impl Traffic {
    #[inline]
    pub(crate) fn record(&mut self, ev: &FlowEvent) {
        self.packets = self.packets.saturating_add(ev.packets);
        self.bytes = self.bytes.saturating_add(ev.bytes);
        self.flows = self.flows.saturating_add(1);
        if ev.action == Some(Action::Reject) {
            self.rejected_flows = self.rejected_flows.saturating_add(1);
            self.rejected_bytes = self.rejected_bytes.saturating_add(ev.bytes);
        }
    }
}

impl Measure for Traffic {
    fn weight(&self) -> u64 {
        self.bytes
    }
    fn tiebreak(&self) -> u64 {
        self.packets
    }
    fn absorb(&mut self, o: &Self) {
        self.packets = self.packets.saturating_add(o.packets);
        self.bytes = self.bytes.saturating_add(o.bytes);
        self.flows = self.flows.saturating_add(o.flows);
        self.rejected_flows = self.rejected_flows.saturating_add(o.rejected_flows);
        self.rejected_bytes = self.rejected_bytes.saturating_add(o.rejected_bytes);
    }
}

/// Packets and bytes of a flow.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FlowCounters {
    pub packets: u64,
    pub bytes: u64,
}

impl FlowCounters {
    #[inline]
    pub(crate) fn record(&mut self, ev: &FlowEvent) {
        self.packets = self.packets.saturating_add(ev.packets);
        self.bytes = self.bytes.saturating_add(ev.bytes);
    }
}

impl Measure for FlowCounters {
    fn weight(&self) -> u64 {
        self.bytes
    }
    fn tiebreak(&self) -> u64 {
        self.packets
    }
    fn absorb(&mut self, o: &Self) {
        self.packets = self.packets.saturating_add(o.packets);
        self.bytes = self.bytes.saturating_add(o.bytes);
    }
}

/// The traffic of one direction in a pane or window.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DirectionTotals {
    pub packets: u64,
    pub bytes: u64,
    pub flows: u64,
    pub rejected_flows: u64,
    pub rejected_packets: u64,
    pub rejected_bytes: u64,
}

impl DirectionTotals {
    #[inline]
    pub(crate) fn record(&mut self, ev: &FlowEvent) {
        self.packets = self.packets.saturating_add(ev.packets);
        self.bytes = self.bytes.saturating_add(ev.bytes);
        self.flows = self.flows.saturating_add(1);
        if ev.action == Some(Action::Reject) {
            self.rejected_flows = self.rejected_flows.saturating_add(1);
            self.rejected_packets = self.rejected_packets.saturating_add(ev.packets);
            self.rejected_bytes = self.rejected_bytes.saturating_add(ev.bytes);
        }
    }

    pub fn add(&mut self, o: &DirectionTotals) {
        self.packets = self.packets.saturating_add(o.packets);
        self.bytes = self.bytes.saturating_add(o.bytes);
        self.flows = self.flows.saturating_add(o.flows);
        self.rejected_flows = self.rejected_flows.saturating_add(o.rejected_flows);
        self.rejected_packets = self.rejected_packets.saturating_add(o.rejected_packets);
        self.rejected_bytes = self.rejected_bytes.saturating_add(o.rejected_bytes);
    }
}

/// A protocol's traffic, with its bytes to and from the interface.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProtocolTraffic {
    pub traffic: Traffic,
    pub ingress_bytes: u64,
    pub egress_bytes: u64,
}

impl ProtocolTraffic {
    #[inline]
    pub(crate) fn record(&mut self, ev: &FlowEvent) {
        self.traffic.record(ev);
        match ev.direction {
            Direction::Ingress => self.ingress_bytes = self.ingress_bytes.saturating_add(ev.bytes),
            Direction::Egress => self.egress_bytes = self.egress_bytes.saturating_add(ev.bytes),
            Direction::Unknown => {}
        }
    }
}

impl Measure for ProtocolTraffic {
    fn weight(&self) -> u64 {
        self.traffic.bytes
    }
    fn tiebreak(&self) -> u64 {
        self.traffic.packets
    }
    fn absorb(&mut self, o: &Self) {
        self.traffic.absorb(&o.traffic);
        self.ingress_bytes = self.ingress_bytes.saturating_add(o.ingress_bytes);
        self.egress_bytes = self.egress_bytes.saturating_add(o.egress_bytes);
    }
}
