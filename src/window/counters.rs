//! This module holds the counters a pane keeps: its record counts, its traffic per direction,
//! the traffic of a source, destination, protocol or flow, and a source's TCP flag counts.
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
    pub rejected_packets: u64,
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
            self.rejected_packets = self.rejected_packets.saturating_add(ev.packets);
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
        self.rejected_packets = self.rejected_packets.saturating_add(o.rejected_packets);
        self.rejected_bytes = self.rejected_bytes.saturating_add(o.rejected_bytes);
    }
}

/// Packets, bytes and records of a flow.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FlowCounters {
    pub packets: u64,
    pub bytes: u64,
    /// Records of the flow; 0 only in an entry just created.
    pub flows: u64,
}

impl FlowCounters {
    #[inline]
    pub(crate) fn record(&mut self, ev: &FlowEvent) {
        self.packets = self.packets.saturating_add(ev.packets);
        self.bytes = self.bytes.saturating_add(ev.bytes);
        self.flows = self.flows.saturating_add(1);
    }
}

/// How many of a source's records carried `tcp-flags`, and how many of those were a SYN alone
/// (flags = 2: a connection attempt that saw no SYN-ACK in the interval).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TcpFlagCounts {
    pub flagged: u64,
    pub syn_only: u64,
}

/// The `tcp-flags` value of a SYN with nothing else.
pub(crate) const SYN_ONLY: u16 = 2;

impl TcpFlagCounts {
    #[inline]
    pub(crate) fn record(&mut self, ev: &FlowEvent) {
        if let Some(syn_only) = ev.syn_only {
            self.flagged = self.flagged.saturating_add(1);
            self.syn_only = self.syn_only.saturating_add(u64::from(syn_only));
        }
    }

    pub fn add(&mut self, o: &TcpFlagCounts) {
        self.flagged = self.flagged.saturating_add(o.flagged);
        self.syn_only = self.syn_only.saturating_add(o.syn_only);
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
        self.flows = self.flows.saturating_add(o.flows);
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
