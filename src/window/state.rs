//! Per-interface window state: one [`Pane`] of counters per slide, and what one event adds.
//!
//! Counters saturate rather than wrap: a record may claim up to u64::MAX bytes, and a sum of
//! such claims must not come out small.
//!
//! A pane holds the interface's totals, its sources (each with its flows), its destinations and
//! its protocols for one slide. Sources, destinations and each source's flows are
//! [`BoundedTable`]s, so a pane's memory is capped however many distinct keys arrive.

use std::collections::VecDeque;
use std::net::IpAddr;

use serde::{Deserialize, Serialize};

use super::event::FlowEvent;
use super::table::{BoundedTable, Measure, SmallTable};
use super::time::PaneId;
use crate::decode::{Action, LogStatus};

/// Caps on distinct keys, per interface per pane.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Caps {
    /// Sources tracked exactly per interface per pane.
    pub sources: usize,
    /// Destinations tracked exactly per interface per pane.
    pub destinations: usize,
    /// Flows tracked exactly per source per pane.
    pub flows: usize,
}

impl Default for Caps {
    fn default() -> Self {
        Caps { sources: 10_000, destinations: 10_000, flows: 64 }
    }
}

/// Interface-wide counters of a pane.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Totals {
    pub packets: u64,
    pub bytes: u64,
    pub flows: u64,
    pub rejected_flows: u64,
    pub rejected_packets: u64,
    pub rejected_bytes: u64,
    pub nodata_records: u64,
    pub skipdata_records: u64,
    pub late_records: u64,
}

impl Totals {
    pub fn add(&mut self, o: &Totals) {
        self.packets = self.packets.saturating_add(o.packets);
        self.bytes = self.bytes.saturating_add(o.bytes);
        self.flows = self.flows.saturating_add(o.flows);
        self.rejected_flows = self.rejected_flows.saturating_add(o.rejected_flows);
        self.rejected_packets = self.rejected_packets.saturating_add(o.rejected_packets);
        self.rejected_bytes = self.rejected_bytes.saturating_add(o.rejected_bytes);
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
    fn record(&mut self, ev: &FlowEvent) {
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

/// A flow of one source: (srcport, dstaddr, dstport, protocol, action). The source address is
/// the key of the table the flow lives in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct FlowKey {
    pub srcport: Option<u16>,
    pub dstaddr: Option<IpAddr>,
    pub dstport: Option<u16>,
    pub protocol: Option<u8>,
    pub action: Option<Action>,
}

/// Packets and bytes of a flow.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FlowCounters {
    pub packets: u64,
    pub bytes: u64,
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

/// A source's counters and its flows (inline: most sources have one flow per pane).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct SourceEntry {
    pub traffic: Traffic,
    pub flows: SmallTable<FlowKey, FlowCounters>,
}

impl Measure for SourceEntry {
    fn weight(&self) -> u64 {
        self.traffic.bytes
    }
    fn tiebreak(&self) -> u64 {
        self.traffic.packets
    }
    /// Folding an evicted source keeps its traffic in the remainder; its flows go with it, and
    /// the remainder's (otherwise unused) flow table counts them as evicted.
    fn absorb(&mut self, o: &Self) {
        self.traffic.absorb(&o.traffic);
        self.flows.add_evicted((o.flows.len() as u64).saturating_add(o.flows.evicted()));
    }
}

/// One slide of one interface.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Pane {
    pub totals: Totals,
    pub sources: BoundedTable<IpAddr, SourceEntry>,
    /// Traffic of records without a source address.
    pub unattributed_sources: Traffic,
    pub destinations: BoundedTable<IpAddr, Traffic>,
    /// Traffic of records without a destination address.
    pub unattributed_destinations: Traffic,
    /// Few distinct values: a small list beats a map.
    pub protocols: Vec<(u8, Traffic)>,
    /// The first account and region seen in this pane (interned ids).
    pub account: Option<u32>,
    pub region: Option<u32>,
}

impl Pane {
    pub fn new(caps: &Caps) -> Self {
        Pane {
            totals: Totals::default(),
            sources: BoundedTable::new(caps.sources),
            unattributed_sources: Traffic::default(),
            destinations: BoundedTable::new(caps.destinations),
            unattributed_destinations: Traffic::default(),
            protocols: Vec::new(),
            account: None,
            region: None,
        }
    }

    /// Adds one event. `late` events only count as late unless `apply_traffic`.
    pub fn apply(&mut self, ev: &FlowEvent, caps: &Caps, apply_traffic: bool) {
        if ev.late {
            self.totals.late_records = self.totals.late_records.saturating_add(1);
        }
        if self.account.is_none() {
            self.account = ev.account;
        }
        if self.region.is_none() {
            self.region = ev.region;
        }
        if ev.late && !apply_traffic {
            return;
        }
        match ev.status {
            Some(LogStatus::NoData) => {
                self.totals.nodata_records = self.totals.nodata_records.saturating_add(1)
            }
            Some(LogStatus::SkipData) => self.totals.skipdata_records += 1,
            Some(LogStatus::Ok) | None => self.apply_traffic(ev, caps),
        }
    }

    #[inline]
    fn apply_traffic(&mut self, ev: &FlowEvent, caps: &Caps) {
        let t = &mut self.totals;
        t.packets = t.packets.saturating_add(ev.packets);
        t.bytes = t.bytes.saturating_add(ev.bytes);
        t.flows = t.flows.saturating_add(1);
        if ev.action == Some(Action::Reject) {
            t.rejected_flows = t.rejected_flows.saturating_add(1);
            t.rejected_packets = t.rejected_packets.saturating_add(ev.packets);
            t.rejected_bytes = t.rejected_bytes.saturating_add(ev.bytes);
        }
        match ev.srcaddr {
            Some(src) => {
                let entry = self.sources.entry(src);
                entry.traffic.record(ev);
                let key = FlowKey {
                    srcport: ev.srcport,
                    dstaddr: ev.dstaddr,
                    dstport: ev.dstport,
                    protocol: ev.protocol,
                    action: ev.action,
                };
                let flow = entry.flows.entry(key, caps.flows);
                flow.packets = flow.packets.saturating_add(ev.packets);
                flow.bytes = flow.bytes.saturating_add(ev.bytes);
            }
            None => self.unattributed_sources.record(ev),
        }
        match ev.dstaddr {
            Some(dst) => self.destinations.entry(dst).record(ev),
            None => self.unattributed_destinations.record(ev),
        }
        if let Some(p) = ev.protocol {
            match self.protocols.iter_mut().find(|(q, _)| *q == p) {
                Some((_, traffic)) => traffic.record(ev),
                None => {
                    let mut traffic = Traffic::default();
                    traffic.record(ev);
                    self.protocols.push((p, traffic));
                }
            }
        }
    }
}

/// An interface's panes, oldest first.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct InterfaceState {
    pub panes: VecDeque<(PaneId, Pane)>,
}

impl InterfaceState {
    /// The pane `id`, created if absent. Events mostly hit the newest pane: search from the back.
    #[inline]
    pub fn pane_mut(&mut self, id: PaneId, caps: &Caps) -> &mut Pane {
        let pos = self.panes.iter().rposition(|(p, _)| *p <= id);
        let index = match pos {
            Some(i) if self.panes[i].0 == id => i,
            Some(i) => {
                self.panes.insert(i + 1, (id, Pane::new(caps)));
                i + 1
            }
            None => {
                self.panes.push_front((id, Pane::new(caps)));
                0
            }
        };
        &mut self.panes[index].1
    }

    /// The panes in `[first, first + count)`.
    pub fn panes_in(&self, first: PaneId, count: u64) -> impl Iterator<Item = &Pane> {
        let end = first.saturating_add(count);
        self.panes.iter().filter(move |(p, _)| *p >= first && *p < end).map(|(_, pane)| pane)
    }

    /// Drops panes before `keep_from`; returns whether any pane is left.
    pub fn retire_before(&mut self, keep_from: PaneId) -> bool {
        while self.panes.front().is_some_and(|(p, _)| *p < keep_from) {
            self.panes.pop_front();
        }
        !self.panes.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(bytes: u64) -> FlowEvent {
        FlowEvent {
            interface: 0,
            pane: 1,
            late: false,
            status: Some(LogStatus::Ok),
            action: Some(Action::Reject),
            srcaddr: Some("10.0.0.1".parse().unwrap()),
            dstaddr: Some("10.0.0.2".parse().unwrap()),
            srcport: Some(1),
            dstport: Some(2),
            protocol: Some(6),
            packets: bytes,
            bytes,
            account: None,
            region: None,
        }
    }

    #[test]
    fn counters_saturate_instead_of_wrapping() {
        let caps = Caps::default();
        let mut pane = Pane::new(&caps);
        pane.apply(&event(u64::MAX / 2 + 1), &caps, true);
        pane.apply(&event(u64::MAX / 2 + 1), &caps, true);
        assert_eq!(pane.totals.bytes, u64::MAX);
        assert_eq!(pane.totals.rejected_packets, u64::MAX);
        let src = pane.sources.get(&"10.0.0.1".parse().unwrap()).unwrap();
        assert_eq!(src.traffic.bytes, u64::MAX);
        assert_eq!(src.flows.iter().next().unwrap().1.bytes, u64::MAX);
        let mut t = pane.totals;
        t.add(&pane.totals);
        assert_eq!(t.bytes, u64::MAX);
    }
}
