//! This module holds the per-interface window state: one [`Pane`] of counters per slide, and
//! what one event adds to it.
//!
//! A pane holds the interface's totals, its sources (each with its flows), its destinations and
//! its protocols for one slide. Sources and destinations are [`BoundedTable`]s; a source's
//! flows are one inline flow or a capped [`SmallTable`] ([`SourceEntry`]), so a pane's memory
//! is capped however many distinct keys arrive.

use std::collections::VecDeque;
use std::net::IpAddr;

use serde::{Deserialize, Serialize};

use super::conversation::EgressConversations;
pub use super::counters::{
    DirectionTotals, FlowCounters, ProtocolTraffic, RecordCounts, TcpFlagCounts, Traffic,
};
use super::direction::{Bases, Basis, Direction, contains_address};
pub use super::distinct::DistinctDestinations;
use super::event::FlowEvent;
use super::snapshot::WindowPanes;
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

/// A flow of one source: (srcport, dstaddr, dstport, protocol, action). The source address is
/// the key of the table the flow lives in.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct FlowKey {
    pub srcport: Option<u16>,
    pub dstaddr: Option<IpAddr>,
    pub dstport: Option<u16>,
    pub protocol: Option<u8>,
    pub action: Option<Action>,
    /// The header address of the source where it differs from the packet-level one.
    pub via: Option<IpAddr>,
}

impl std::hash::Hash for FlowKey {
    /// Hashes the key in two writes, a packed word and the address, instead of the derive's
    /// dozen field by field: a window's top flows are merged from every pane's flows of each
    /// listed source, so with a large `--max-flows` this hashing is a noticeable part of the work.
    /// The packing is injective (each optional field gets a presence bit, and the address a
    /// family tag), so equal keys hash equal and the derived `Eq` stays right.
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        let (port, split) = (packed_port, split_address);
        let protocol = packed_protocol(self.protocol);
        let action: u64 = match self.action {
            None => 0,
            Some(Action::Accept) => 1,
            Some(Action::Reject) => 2,
        };
        let (family, address) = split(self.dstaddr);
        let (via_family, via) = split(self.via);
        state.write_u64(
            port(self.srcport)
                | port(self.dstport) << 17
                | protocol << 34
                | action << 43
                | family << 45
                | via_family << 47,
        );
        state.write_u128(address);
        if via_family != 0 {
            state.write_u128(via);
        }
    }
}

/// An optional port as 17 bits: a presence bit and the port (for packed key hashes).
#[inline]
pub(crate) fn packed_port(p: Option<u16>) -> u64 {
    p.map_or(0, |p| 0x1_0000 | u64::from(p))
}

/// An optional protocol as 9 bits: a presence bit and the number.
#[inline]
pub(crate) fn packed_protocol(p: Option<u8>) -> u64 {
    p.map_or(0, |p| 0x100 | u64::from(p))
}

/// An optional address as a family tag (0 none, 1 IPv4, 2 IPv6) and its bits.
#[inline]
pub(crate) fn split_address(addr: Option<IpAddr>) -> (u64, u128) {
    match addr {
        None => (0, 0),
        Some(IpAddr::V4(a)) => (1, u128::from(a.to_bits())),
        Some(IpAddr::V6(a)) => (2, a.to_bits()),
    }
}

/// A source's counters and its flows in one pane.
///
/// Most sources send one flow per pane, so that case is stored inline with nothing derived
/// kept twice (the source's traffic *is* the flow's); a second distinct flow moves everything
/// into a boxed [`ManyFlows`]. This keeps a tracked source and its key within 96 bytes (a test
/// checks the size).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum SourceEntry {
    /// No flow yet, or exactly one.
    One(OneFlow),
    /// Two or more flows (or a remainder that absorbed evicted sources).
    Many(Box<ManyFlows>),
}

/// A source with a single flow: the flow, how many records it had, and their TCP flags.
///
/// The record and flag counts are narrow so that the entry stays small; a source that would
/// overflow one moves to [`ManyFlows`], whose counters are u64.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize)]
pub struct OneFlow {
    pub key: FlowKey,
    /// Records (flows, in the snapshot's sense); 0 means the entry is still empty.
    pub records: u32,
    /// Records that carried `tcp-flags`, and those that were a SYN alone.
    pub flagged: u16,
    pub syn_only: u16,
    pub packets: u64,
    pub bytes: u64,
}

impl OneFlow {
    fn counters(&self) -> FlowCounters {
        FlowCounters { packets: self.packets, bytes: self.bytes, flows: u64::from(self.records) }
    }

    fn tcp_flags(&self) -> TcpFlagCounts {
        TcpFlagCounts { flagged: u64::from(self.flagged), syn_only: u64::from(self.syn_only) }
    }
}

/// A source with several flows: its traffic, TCP flag counts, its flows in a capped table, and,
/// once that table has had to evict, sketches of the distinct destinations of all its flows.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ManyFlows {
    pub traffic: Traffic,
    pub tcp_flags: TcpFlagCounts,
    pub flows: SmallTable<FlowKey, FlowCounters>,
    pub distinct: Option<Box<DistinctDestinations>>,
}

impl Default for SourceEntry {
    fn default() -> Self {
        SourceEntry::One(OneFlow::default())
    }
}

impl SourceEntry {
    /// Adds one event of this source (its flow table capped at `flow_cap`).
    #[inline]
    pub fn record(&mut self, ev: &FlowEvent, flow_cap: usize) {
        let key = FlowKey {
            srcport: ev.srcport,
            dstaddr: ev.dstaddr,
            dstport: ev.dstport,
            protocol: ev.protocol,
            action: ev.action,
            via: ev.via,
        };
        if let SourceEntry::One(one) = self {
            // A u32 of records per source per pane (a minute of one source) saturates at 4
            // billion, a u16 of flagged records at 65,535; a source that reaches either moves
            // to `Many`, whose counters are u64.
            if (one.records == 0 || one.key == key)
                && one.records < u32::MAX
                && one.flagged < u16::MAX
            {
                one.key = key;
                one.records += 1;
                one.packets = one.packets.saturating_add(ev.packets);
                one.bytes = one.bytes.saturating_add(ev.bytes);
                if let Some(syn_only) = ev.syn_only {
                    one.flagged += 1;
                    one.syn_only += u16::from(syn_only);
                }
                return;
            }
            self.spill();
        }
        if let SourceEntry::Many(many) = self {
            many.traffic.record(ev);
            many.tcp_flags.record(ev);
            many.record_flow(key, ev, flow_cap);
        }
    }

    /// Moves a single flow into a [`ManyFlows`].
    fn spill(&mut self) {
        if let SourceEntry::One(one) = *self {
            let mut many = ManyFlows {
                traffic: self.traffic(),
                tcp_flags: one.tcp_flags(),
                ..ManyFlows::default()
            };
            if one.records > 0 {
                // An empty table takes its first entry without compacting: any cap will do.
                *many.flows.entry(one.key, 2) = one.counters();
            }
            *self = SourceEntry::Many(Box::new(many));
        }
    }

    /// The source's traffic.
    pub fn traffic(&self) -> Traffic {
        match self {
            SourceEntry::One(one) => {
                let rejected = one.key.action == Some(Action::Reject);
                let when_rejected = |v: u64| if rejected { v } else { 0 };
                Traffic {
                    packets: one.packets,
                    bytes: one.bytes,
                    flows: u64::from(one.records),
                    rejected_flows: when_rejected(u64::from(one.records)),
                    rejected_packets: when_rejected(one.packets),
                    rejected_bytes: when_rejected(one.bytes),
                }
            }
            SourceEntry::Many(many) => many.traffic,
        }
    }

    /// The source's TCP flag counts.
    pub fn tcp_flags(&self) -> TcpFlagCounts {
        match self {
            SourceEntry::One(one) => one.tcp_flags(),
            SourceEntry::Many(many) => many.tcp_flags,
        }
    }

    /// The source's flows and their counters.
    pub fn flows(&self) -> impl Iterator<Item = (FlowKey, FlowCounters)> + '_ {
        let (one, many) = match self {
            SourceEntry::One(one) => (Some(one).filter(|o| o.records > 0), None),
            SourceEntry::Many(many) => (None, Some(&many.flows)),
        };
        one.map(|o| (o.key, o.counters()))
            .into_iter()
            .chain(many.into_iter().flat_map(|t| t.iter().map(|(k, c)| (*k, *c))))
    }

    /// The counters of one flow, if tracked.
    pub fn flow(&self, key: &FlowKey) -> Option<FlowCounters> {
        match self {
            SourceEntry::One(one) => (one.records > 0 && one.key == *key).then(|| one.counters()),
            SourceEntry::Many(many) => many.flows.get(key).copied(),
        }
    }

    /// The sketches of the source's distinct destinations, kept once its flow table evicted
    /// (until then its flows hold every destination).
    pub fn distinct(&self) -> Option<&DistinctDestinations> {
        match self {
            SourceEntry::One(_) => None,
            SourceEntry::Many(many) => many.distinct.as_deref(),
        }
    }

    /// Flows evicted from this source's table (or, for a remainder, with evicted sources).
    pub fn evicted_flows(&self) -> u64 {
        match self {
            SourceEntry::One(_) => 0,
            SourceEntry::Many(many) => many.flows.evicted(),
        }
    }

    /// By how much a listed flow's bytes may fall short of the truth.
    pub fn flow_error_bound(&self) -> u64 {
        match self {
            SourceEntry::One(_) => 0,
            SourceEntry::Many(many) => many.flows.error_bound(),
        }
    }

    /// How many flows the source holds.
    pub fn flow_count(&self) -> usize {
        match self {
            SourceEntry::One(one) => usize::from(one.records > 0),
            SourceEntry::Many(many) => many.flows.len(),
        }
    }
}

impl ManyFlows {
    /// Adds one event to its flow. A table about to evict (full, and the flow new) first puts
    /// every destination it holds into the sketches, which from then on take each flow the
    /// table takes in; so a source whose flows fit its table pays nothing for them.
    #[inline]
    fn record_flow(&mut self, key: FlowKey, ev: &FlowEvent, flow_cap: usize) {
        if self.distinct.is_none()
            && self.flows.len() >= flow_cap.max(2)
            && self.flows.get(&key).is_none()
        {
            let mut distinct = DistinctDestinations::default();
            for (k, _) in self.flows.iter() {
                distinct.insert(k);
            }
            self.distinct = Some(Box::new(distinct));
        }
        let flow = self.flows.entry(key, flow_cap);
        if flow.flows == 0
            && let Some(distinct) = &mut self.distinct
        {
            distinct.insert(&key);
        }
        flow.record(ev);
    }
}

impl Measure for SourceEntry {
    fn weight(&self) -> u64 {
        match self {
            SourceEntry::One(one) => one.bytes,
            SourceEntry::Many(many) => many.traffic.bytes,
        }
    }
    fn tiebreak(&self) -> u64 {
        match self {
            SourceEntry::One(one) => one.packets,
            SourceEntry::Many(many) => many.traffic.packets,
        }
    }
    /// Folding an evicted source keeps its traffic in the remainder; its flows go with it, and
    /// the remainder's (otherwise unused) flow table counts them as evicted.
    fn absorb(&mut self, o: &Self) {
        let traffic = o.traffic();
        let evicted = (o.flow_count() as u64).saturating_add(o.evicted_flows());
        if let SourceEntry::One(_) = self {
            let mut many = ManyFlows {
                traffic: self.traffic(),
                tcp_flags: self.tcp_flags(),
                ..ManyFlows::default()
            };
            many.flows.add_evicted(self.flow_count() as u64);
            *self = SourceEntry::Many(Box::new(many));
        }
        if let SourceEntry::Many(many) = self {
            many.traffic.absorb(&traffic);
            many.tcp_flags.add(&o.tcp_flags());
            many.flows.add_evicted(evicted);
        }
    }
}

/// One slide of one interface.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Pane {
    /// NODATA, SKIPDATA and late records.
    pub records: RecordCounts,
    pub sources: BoundedTable<IpAddr, SourceEntry>,
    /// Traffic of records without a source address.
    pub unattributed_sources: Traffic,
    pub destinations: BoundedTable<IpAddr, Traffic>,
    /// Traffic of records without a destination address.
    pub unattributed_destinations: Traffic,
    /// Protocols take few distinct values, so a small list beats a map.
    pub protocols: Vec<(u8, ProtocolTraffic)>,
    /// The first account and region seen in this pane (interned ids).
    pub account: Option<u32>,
    pub region: Option<u32>,
    /// Traffic by [`Direction`] (indexed by [`Direction::index`]).
    pub directions: [DirectionTotals; 3],
    /// The bases the pane's records were decided on.
    pub bases: Bases,
    /// The interface's own addresses in the pane's records, in order of appearance, at most
    /// [`MAX_PANE_LOCALS`].
    pub local_addresses: Vec<IpAddr>,
    /// Egress conversations: rejected ones counted, accepted ones remembered.
    pub egress: EgressConversations,
}

/// Local addresses a pane lists at most.
pub const MAX_PANE_LOCALS: usize = 16;

impl Pane {
    pub fn new(caps: &Caps) -> Self {
        Pane {
            records: RecordCounts::default(),
            sources: BoundedTable::new(caps.sources),
            unattributed_sources: Traffic::default(),
            destinations: BoundedTable::new(caps.destinations),
            unattributed_destinations: Traffic::default(),
            protocols: Vec::new(),
            account: None,
            region: None,
            directions: [DirectionTotals::default(); 3],
            bases: Bases::default(),
            local_addresses: Vec::new(),
            egress: EgressConversations::new(caps.destinations),
        }
    }

    /// Adds one event. `late` events only count as late unless `apply_traffic`.
    pub fn apply(&mut self, ev: &FlowEvent, caps: &Caps, apply_traffic: bool) {
        if ev.late {
            self.records.late_records = self.records.late_records.saturating_add(1);
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
        self.bases.insert(ev.basis);
        if let Some(local) = ev.local
            && !contains_address(&self.local_addresses, local)
            && self.local_addresses.len() < MAX_PANE_LOCALS
        {
            self.local_addresses.push(local);
        }
        match ev.status {
            Some(LogStatus::NoData) => {
                self.records.nodata_records = self.records.nodata_records.saturating_add(1)
            }
            Some(LogStatus::SkipData) => {
                self.records.skipdata_records = self.records.skipdata_records.saturating_add(1)
            }
            Some(LogStatus::Ok) | None => self.apply_traffic(ev, caps),
        }
    }

    #[inline]
    fn apply_traffic(&mut self, ev: &FlowEvent, caps: &Caps) {
        self.directions[ev.direction.index()].record(ev);
        // Sources are who sends to the interface and destinations where its traffic goes; with
        // `--direction off` every record counts on both sides.
        let off = ev.basis == Basis::Off;
        if off || ev.direction == Direction::Ingress {
            match ev.srcaddr {
                Some(src) => self.sources.entry(src).record(ev, caps.flows),
                None => self.unattributed_sources.record(ev),
            }
        }
        if off || ev.direction == Direction::Egress {
            match ev.dstaddr {
                Some(dst) => self.destinations.entry(dst).record(ev),
                None => self.unattributed_destinations.record(ev),
            }
        }
        if ev.direction == Direction::Egress {
            self.egress.record(ev);
        }
        if let Some(p) = ev.protocol {
            match self.protocols.iter_mut().find(|(q, _)| *q == p) {
                Some((_, traffic)) => traffic.record(ev),
                None => {
                    let mut traffic = ProtocolTraffic::default();
                    traffic.record(ev);
                    self.protocols.push((p, traffic));
                }
            }
        }
    }
}

/// An interface's panes, oldest first.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct InterfacePanes {
    pub panes: VecDeque<(PaneId, Pane)>,
}

impl InterfacePanes {
    /// The pane `id`, created if absent. Events mostly hit the newest pane, so the search runs
    /// from the back.
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

    /// The panes of the window of `count` panes from `first`, with their positions in it.
    pub fn window(&self, first: PaneId, count: u64) -> WindowPanes<'_> {
        let mut window = WindowPanes { len: count as usize, ..WindowPanes::default() };
        let end = first.saturating_add(count);
        for (id, pane) in self.panes.iter().filter(|(p, _)| *p >= first && *p < end) {
            window.panes.push(pane);
            window.positions.push((id - first) as usize);
        }
        window
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
            direction: Direction::Unknown,
            basis: Basis::Off,
            srcaddr: Some("10.0.0.1".parse().unwrap()),
            dstaddr: Some("10.0.0.2".parse().unwrap()),
            via: None,
            local: None,
            srcport: Some(1),
            dstport: Some(2),
            protocol: Some(6),
            syn_only: None,
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
        let unknown = pane.directions[Direction::Unknown.index()];
        assert_eq!(unknown.bytes, u64::MAX);
        assert_eq!(unknown.rejected_packets, u64::MAX);
        let src = pane.sources.get(&"10.0.0.1".parse().unwrap()).unwrap();
        assert_eq!(src.traffic().bytes, u64::MAX);
        assert_eq!(src.flows().next().unwrap().1.bytes, u64::MAX);
        let mut t = unknown;
        t.add(&unknown);
        assert_eq!(t.bytes, u64::MAX);
    }
}

#[cfg(test)]
mod source_entry_tests {
    use super::*;

    fn event(srcport: u16, action: Action, bytes: u64) -> FlowEvent {
        FlowEvent {
            interface: 0,
            pane: 1,
            late: false,
            status: Some(LogStatus::Ok),
            action: Some(action),
            direction: Direction::Ingress,
            basis: Basis::Inferred,
            srcaddr: Some("10.0.0.1".parse().unwrap()),
            dstaddr: Some("10.0.0.2".parse().unwrap()),
            via: None,
            local: None,
            srcport: Some(srcport),
            dstport: Some(443),
            protocol: Some(6),
            syn_only: None,
            packets: 2,
            bytes,
            account: None,
            region: None,
        }
    }

    fn flows(e: &SourceEntry) -> Vec<(Option<u16>, u64)> {
        let mut v: Vec<_> = e.flows().map(|(k, c)| (k.srcport, c.bytes)).collect();
        v.sort();
        v
    }

    #[test]
    fn one_flow_stays_inline_and_its_traffic_is_derived() {
        let mut e = SourceEntry::default();
        assert_eq!(flows(&e), []);
        e.record(&event(1, Action::Reject, 10), 64);
        e.record(&event(1, Action::Reject, 5), 64);
        assert!(matches!(e, SourceEntry::One(_)));
        let t = Traffic {
            packets: 4,
            bytes: 15,
            flows: 2,
            rejected_flows: 2,
            rejected_packets: 4,
            rejected_bytes: 15,
        };
        assert_eq!(e.traffic(), t);
        assert_eq!(flows(&e), [(Some(1), 15)]);
    }

    #[test]
    fn a_second_flow_moves_both_into_the_table_with_the_same_traffic() {
        let mut e = SourceEntry::default();
        e.record(&event(1, Action::Reject, 10), 64);
        e.record(&event(2, Action::Accept, 7), 64);
        e.record(&event(1, Action::Reject, 1), 64);
        assert!(matches!(e, SourceEntry::Many(_)));
        let t = Traffic {
            packets: 6,
            bytes: 18,
            flows: 3,
            rejected_flows: 2,
            rejected_packets: 4,
            rejected_bytes: 11,
        };
        assert_eq!(e.traffic(), t);
        assert_eq!(flows(&e), [(Some(1), 11), (Some(2), 7)]);
        assert_eq!(e.evicted_flows(), 0);
    }

    #[test]
    fn a_saturated_record_count_moves_to_u64_counters() {
        let mut e = SourceEntry::default();
        e.record(&event(1, Action::Accept, 10), 64);
        if let SourceEntry::One(one) = &mut e {
            one.records = u32::MAX;
        }
        e.record(&event(1, Action::Accept, 10), 64);
        assert_eq!(e.traffic().flows, u64::from(u32::MAX) + 1);
        assert_eq!(flows(&e), [(Some(1), 20)]);
    }

    #[test]
    fn a_remainder_keeps_traffic_and_counts_the_flows_it_absorbed() {
        let mut a = SourceEntry::default();
        a.record(&event(1, Action::Accept, 10), 64);
        let mut b = SourceEntry::default();
        b.record(&event(1, Action::Accept, 3), 64);
        b.record(&event(2, Action::Reject, 4), 64);
        let mut rest = SourceEntry::default();
        rest.absorb(&a);
        rest.absorb(&b);
        let t = Traffic {
            packets: 6,
            bytes: 17,
            flows: 3,
            rejected_flows: 1,
            rejected_packets: 2,
            rejected_bytes: 4,
        };
        assert_eq!(rest.traffic(), t);
        assert_eq!(rest.evicted_flows(), 3);
        assert_eq!(flows(&rest), []);
    }

    proptest::proptest! {
        /// Keys that differ hash differently (the packing loses nothing; a collision of the
        /// 64-bit hash itself is negligible at this sample size), and equal keys hash equal.
        #[test]
        fn flow_key_hash_tells_keys_apart(
            a in flow_key(), b in flow_key()
        ) {
            use std::hash::BuildHasher;
            let h = foldhash::fast::FixedState::with_seed(7);
            proptest::prop_assert_eq!(a == b, h.hash_one(a) == h.hash_one(b));
        }
    }

    fn flow_key() -> impl proptest::strategy::Strategy<Value = FlowKey> {
        use proptest::prelude::*;
        let addr = prop_oneof![
            Just(None),
            (0u32..4).prop_map(|a| Some(IpAddr::V4(std::net::Ipv4Addr::from_bits(a)))),
            (0u128..4).prop_map(|a| Some(IpAddr::V6(std::net::Ipv6Addr::from_bits(a)))),
        ];
        let action =
            prop_oneof![Just(None), Just(Some(Action::Accept)), Just(Some(Action::Reject))];
        (
            proptest::option::of(0u16..3),
            addr,
            proptest::option::of(0u16..3),
            proptest::option::of(0u8..3),
            action,
        )
            .prop_map(|(srcport, dstaddr, dstport, protocol, action)| FlowKey {
                srcport,
                dstaddr,
                dstport,
                protocol,
                action,
                via: dstaddr.filter(|_| srcport == Some(0)),
            })
    }

    /// Sketches start only when the flow table is about to evict, seeded with what it holds,
    /// so they count every port the source reached.
    #[test]
    fn distinct_sketches_start_at_the_first_eviction_and_count_every_port() {
        let scan = |ports: u16| {
            let mut e = SourceEntry::default();
            for port in 0..ports {
                let ev = FlowEvent { dstport: Some(port), ..event(1, Action::Reject, 1) };
                e.record(&ev, 64);
            }
            e
        };
        let fits = scan(64);
        assert!(fits.distinct().is_none());
        assert_eq!(fits.evicted_flows(), 0);
        let scanner = scan(2_000);
        assert!(scanner.evicted_flows() > 0);
        let estimate = crate::window::distinct::estimated_counts(scanner.distinct().unwrap());
        let error = (estimate.ports as f64 - 2_000.0).abs() / 2_000.0;
        assert!(error <= 0.132, "{estimate:?}");
        assert_eq!(estimate.addresses, 1);
    }

    #[test]
    fn a_one_flow_source_with_its_key_fits_in_96_bytes() {
        // This layout gives the bytes-per-key figure in BENCHMARKS.md ("Windows").
        let size = std::mem::size_of::<(std::net::IpAddr, SourceEntry)>();
        assert!(size <= 96, "{size}");
        // Batches of events cross threads by the thousand: a cache line and a half at most.
        let event = std::mem::size_of::<FlowEvent>();
        assert!(event <= 128, "{event}");
    }
}
