//! A snapshot is what one closed window says about one interface.
//!
//! A snapshot is built by summing the window's panes. The lists are ranked by bytes (ties go to
//! more packets, then to the smaller address or flow) and cut to the configured top-N, and the
//! rest goes into `other_…` so that each list plus its remainder reconciles exactly with the
//! interface totals.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;

use serde::Serialize;

use super::direction::{Bases, Direction};
use super::pane::{
    DirectionTotals, FlowCounters, FlowKey, Pane, ProtocolTraffic, RecordCounts, SourceEntry,
    Traffic,
};
use super::table::{Measure, rank};
use crate::decode::Action;

/// How many entries each list keeps.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct TopN {
    pub sources: usize,
    pub destinations: usize,
    pub flows: usize,
}

impl Default for TopN {
    fn default() -> Self {
        TopN { sources: 15, destinations: 15, flows: 10 }
    }
}

/// One interface in one closed window.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Snapshot {
    pub window_start: u64,
    pub window_end: u64,
    pub interface_id: Arc<str>,
    pub account_id: Option<Arc<str>>,
    pub region: Option<Arc<str>>,
    pub packets: u64,
    pub bytes: u64,
    pub flows: u64,
    pub rejected_flows: u64,
    pub rejected_packets: u64,
    pub rejected_bytes: u64,
    pub nodata_records: u64,
    pub skipdata_records: u64,
    pub late_records: u64,
    /// The rule the window's records were decided on: `flow-direction`, `configured`,
    /// `inferred`, `off`, or `mixed` for several.
    pub direction_basis: &'static str,
    /// The interface's own addresses in the window's records, sorted.
    pub local_addresses: Vec<IpAddr>,
    /// Traffic to the interface, from it, and of unknown direction; they sum to the totals.
    pub ingress: DirectionTotals,
    pub egress: DirectionTotals,
    pub unknown_direction: DirectionTotals,
    /// Who sent the ingress traffic (every record's source with `--direction off`), with each
    /// one's share of it.
    pub sources: Vec<SourceSnapshot>,
    pub other_sources: Other,
    /// Where the egress traffic went (every record's destination with `--direction off`).
    pub destinations: Vec<DestinationSnapshot>,
    pub other_destinations: Other,
    pub protocols: Vec<ProtocolSnapshot>,
    /// 0 for the first emission; each correction by a late record (`--late update`) adds one.
    pub revision: u32,
    /// Whether a cap was exceeded in this window, so lists are heavy-hitter estimates.
    pub approximate: bool,
    pub approximation: Approximation,
}

/// Error bounds when caps were exceeded: a listed value may fall short of the truth by at most
/// the bound (in bytes); totals and remainders stay exact.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Approximation {
    pub source_bytes_error: u64,
    pub destination_bytes_error: u64,
    pub flow_bytes_error: u64,
    pub evicted_sources: u64,
    pub evicted_destinations: u64,
    pub evicted_flows: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SourceSnapshot {
    pub address: IpAddr,
    pub packets: u64,
    pub bytes: u64,
    pub flows: u64,
    pub rejected_flows: u64,
    pub rejected_bytes: u64,
    pub traffic_share_pct: f64,
    pub top_flows: Vec<FlowSnapshot>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FlowSnapshot {
    pub direction: Direction,
    pub srcaddr: IpAddr,
    /// The header address of the source where it differs from `srcaddr` (the packet-level
    /// one), as behind a NAT gateway.
    pub via: Option<IpAddr>,
    pub srcport: Option<u16>,
    pub dstaddr: Option<IpAddr>,
    pub dstport: Option<u16>,
    pub protocol: Option<u8>,
    pub action: Option<Action>,
    pub packets: u64,
    pub bytes: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DestinationSnapshot {
    pub address: IpAddr,
    pub packets: u64,
    pub bytes: u64,
    pub flows: u64,
    pub rejected_flows: u64,
    /// Percentage of the egress bytes (of all bytes with `--direction off`).
    pub traffic_share_pct: f64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ProtocolSnapshot {
    pub protocol: u8,
    pub packets: u64,
    pub bytes: u64,
    pub flows: u64,
    pub rejected_flows: u64,
    pub ingress_bytes: u64,
    pub egress_bytes: u64,
}

/// What is not listed: `count` distinct keys (tracked ones; evicted keys are counted in
/// `approximation`), and their traffic, including records without an address.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Other {
    pub count: u64,
    pub packets: u64,
    pub bytes: u64,
    pub flows: u64,
}

impl Other {
    fn add(&mut self, t: &Traffic) {
        self.packets = self.packets.saturating_add(t.packets);
        self.bytes = self.bytes.saturating_add(t.bytes);
        self.flows = self.flows.saturating_add(t.flows);
    }
}

/// The identity of a snapshot, known before building it.
#[derive(Debug, Clone)]
pub struct SnapshotKey {
    pub window_start: u64,
    pub window_end: u64,
    pub interface_id: Arc<str>,
    pub account_id: Option<Arc<str>>,
    pub region: Option<Arc<str>>,
    pub revision: u32,
}

/// Percentage of `part` in `whole`, 0 when the whole is 0.
pub fn share_pct(part: u64, whole: u64) -> f64 {
    if whole == 0 { 0.0 } else { 100.0 * part as f64 / whole as f64 }
}

/// Builds the snapshot of the given panes (those of one interface inside one window).
pub fn build(key: SnapshotKey, panes: &[&Pane], top: &TopN) -> Snapshot {
    let (records, mut approx) = window_records(panes);
    let directions = window_directions(panes);
    let mut totals = DirectionTotals::default();
    for t in &directions.totals {
        totals.add(t);
    }
    let (sources, other_sources) = ranked_sources(panes, top, &directions, &mut approx);
    let (destinations, other_destinations) = ranked_destinations(panes, top);
    let protocols = protocol_snapshots(panes);
    let approximate = approx != Approximation::default();
    Snapshot {
        window_start: key.window_start,
        window_end: key.window_end,
        interface_id: key.interface_id,
        account_id: key.account_id,
        region: key.region,
        packets: totals.packets,
        bytes: totals.bytes,
        flows: totals.flows,
        rejected_flows: totals.rejected_flows,
        rejected_packets: totals.rejected_packets,
        rejected_bytes: totals.rejected_bytes,
        nodata_records: records.nodata_records,
        skipdata_records: records.skipdata_records,
        late_records: records.late_records,
        direction_basis: directions.bases.name(),
        local_addresses: directions.local_addresses,
        ingress: directions.totals[Direction::Ingress.index()],
        egress: directions.totals[Direction::Egress.index()],
        unknown_direction: directions.totals[Direction::Unknown.index()],
        sources,
        other_sources,
        destinations,
        other_destinations,
        protocols,
        revision: key.revision,
        approximate,
        approximation: approx,
    }
}

/// The window's record counts, and the error bounds and evictions of its panes' tables.
fn window_records(panes: &[&Pane]) -> (RecordCounts, Approximation) {
    let mut records = RecordCounts::default();
    let mut approx = Approximation::default();
    for p in panes {
        records.add(&p.records);
        approx.source_bytes_error =
            approx.source_bytes_error.saturating_add(p.sources.error_bound());
        // A source evicted and seen again restarts its flows empty: a listed flow may be short
        // by what its source lost, on top of its own table's bound.
        approx.flow_bytes_error = approx.flow_bytes_error.saturating_add(p.sources.error_bound());
        approx.evicted_flows =
            approx.evicted_flows.saturating_add(p.sources.folded().evicted_flows());
        approx.evicted_sources = approx.evicted_sources.saturating_add(p.sources.evicted());
        approx.destination_bytes_error =
            approx.destination_bytes_error.saturating_add(p.destinations.error_bound());
        approx.evicted_destinations =
            approx.evicted_destinations.saturating_add(p.destinations.evicted());
    }
    (records, approx)
}

/// A window's traffic by direction, its bases and its local addresses.
struct WindowDirections {
    totals: [DirectionTotals; 3],
    bases: Bases,
    local_addresses: Vec<IpAddr>,
}

fn window_directions(panes: &[&Pane]) -> WindowDirections {
    let mut w = WindowDirections {
        totals: [DirectionTotals::default(); 3],
        bases: Bases::default(),
        local_addresses: Vec::new(),
    };
    for p in panes {
        for (sum, t) in w.totals.iter_mut().zip(&p.directions) {
            sum.add(t);
        }
        w.bases.union(p.bases);
        w.local_addresses.extend(&p.local_addresses);
    }
    w.local_addresses.sort_unstable();
    w.local_addresses.dedup();
    w
}

/// The bytes a list's shares are of: the traffic its entries and remainder add up to (ingress
/// for sources, egress for destinations, everything with `--direction off`).
fn listed_bytes<'a>(listed: impl Iterator<Item = &'a Traffic>, other: &Other) -> u64 {
    listed.fold(other.bytes, |sum, t| sum.saturating_add(t.bytes))
}

/// Sources summed across panes and ranked: the top N with their flows, and the rest.
fn ranked_sources(
    panes: &[&Pane],
    top: &TopN,
    directions: &WindowDirections,
    approx: &mut Approximation,
) -> (Vec<SourceSnapshot>, Other) {
    let mut other = Other::default();
    for p in panes {
        other.add(&p.sources.folded().traffic());
        other.add(&p.unattributed_sources);
    }
    let sources = sum_by_key(
        panes.iter().map(|p| (p.sources.len(), p.sources.iter().map(|(a, e)| (*a, e.traffic())))),
    );
    let (listed, rest) = top_n(sources, top.sources);
    for (_, t) in &rest {
        other.add(t);
    }
    other.count = rest.len() as u64;
    let whole = listed_bytes(listed.iter().map(|(_, t)| t), &other);
    // Sources hold ingress records only, unless no direction was decided.
    let direction = if directions.bases.is_off() { Direction::Unknown } else { Direction::Ingress };
    let listed = listed
        .into_iter()
        .map(|(addr, t)| {
            let (top_flows, flow_approx) = source_flows(addr, panes, top.flows, direction);
            approx.flow_bytes_error = approx.flow_bytes_error.saturating_add(flow_approx.0);
            approx.evicted_flows = approx.evicted_flows.saturating_add(flow_approx.1);
            SourceSnapshot {
                address: addr,
                packets: t.packets,
                bytes: t.bytes,
                flows: t.flows,
                rejected_flows: t.rejected_flows,
                rejected_bytes: t.rejected_bytes,
                traffic_share_pct: share_pct(t.bytes, whole),
                top_flows,
            }
        })
        .collect();
    (listed, other)
}

/// Destinations summed across panes and ranked: the top N, and the rest.
fn ranked_destinations(panes: &[&Pane], top: &TopN) -> (Vec<DestinationSnapshot>, Other) {
    let mut other = Other::default();
    for p in panes {
        other.add(p.destinations.folded());
        other.add(&p.unattributed_destinations);
    }
    let destinations = sum_by_key(
        panes.iter().map(|p| (p.destinations.len(), p.destinations.iter().map(|(a, t)| (*a, *t)))),
    );
    let (listed, rest) = top_n(destinations, top.destinations);
    for (_, t) in &rest {
        other.add(t);
    }
    other.count = rest.len() as u64;
    let whole = listed_bytes(listed.iter().map(|(_, t)| t), &other);
    let listed = listed
        .into_iter()
        .map(|(address, t)| DestinationSnapshot {
            address,
            packets: t.packets,
            bytes: t.bytes,
            flows: t.flows,
            rejected_flows: t.rejected_flows,
            traffic_share_pct: share_pct(t.bytes, whole),
        })
        .collect();
    (listed, other)
}

/// Every protocol of the window (a handful), ranked.
fn protocol_snapshots(panes: &[&Pane]) -> Vec<ProtocolSnapshot> {
    let mut protocols: Vec<(u8, ProtocolTraffic)> = Vec::new();
    for p in panes {
        for (proto, t) in &p.protocols {
            match protocols.iter_mut().find(|(q, _)| q == proto) {
                Some((_, sum)) => sum.absorb(t),
                None => protocols.push((*proto, *t)),
            }
        }
    }
    protocols.sort_by(rank);
    protocols
        .into_iter()
        .map(|(protocol, p)| ProtocolSnapshot {
            protocol,
            packets: p.traffic.packets,
            bytes: p.traffic.bytes,
            flows: p.traffic.flows,
            rejected_flows: p.traffic.rejected_flows,
            ingress_bytes: p.ingress_bytes,
            egress_bytes: p.egress_bytes,
        })
        .collect()
}

/// Listed entries (ranked) and the rest.
type Split<K, V> = (Vec<(K, V)>, Vec<(K, V)>);

/// Sums counters by key across parts (panes), each given with its length. Keys are distinct
/// within a part, so a single part needs no hashing; several are merged in a map sized for
/// the largest, so it rarely grows.
fn sum_by_key<K, V, I>(parts: impl Iterator<Item = (usize, I)>) -> Vec<(K, V)>
where
    K: std::hash::Hash + Eq,
    V: Measure,
    I: Iterator<Item = (K, V)>,
{
    let mut parts: Vec<(usize, I)> = parts.filter(|(len, _)| *len > 0).collect();
    if parts.len() <= 1 {
        return parts.pop().map(|(_, part)| part.collect()).unwrap_or_default();
    }
    let largest = parts.iter().map(|(len, _)| *len).max().unwrap_or(0);
    let mut map: HashMap<K, V, foldhash::fast::RandomState> =
        HashMap::with_capacity_and_hasher(largest * 2, Default::default());
    for (_, part) in parts {
        for (k, v) in part {
            map.entry(k).or_default().absorb(&v);
        }
    }
    map.into_iter().collect()
}

/// Ranks entries and splits them into the first `n` and the rest.
fn top_n<K: Ord, V: Measure>(mut all: Vec<(K, V)>, n: usize) -> Split<K, V> {
    if all.len() > n {
        all.select_nth_unstable_by(n, rank);
    }
    let rest = all.split_off(n.min(all.len()));
    all.sort_by(rank);
    (all, rest)
}

/// The top flows of one source across the panes, and (error bound, evictions) of its flows.
fn source_flows(
    addr: IpAddr,
    panes: &[&Pane],
    n: usize,
    direction: Direction,
) -> (Vec<FlowSnapshot>, (u64, u64)) {
    let entries: Vec<&SourceEntry> = panes.iter().filter_map(|p| p.sources.get(&addr)).collect();
    let mut bound = 0u64;
    let mut evicted = 0u64;
    for entry in &entries {
        bound = bound.saturating_add(entry.flow_error_bound());
        evicted = evicted.saturating_add(entry.evicted_flows());
    }
    let (listed, _) = top_n(window_flow_candidates(&entries, n, PRUNE_FROM), n);
    let snapshots = listed
        .into_iter()
        .map(|(k, c)| FlowSnapshot {
            direction,
            srcaddr: addr,
            via: k.via,
            srcport: k.srcport,
            dstaddr: k.dstaddr,
            dstport: k.dstport,
            protocol: k.protocol,
            action: k.action,
            packets: c.packets,
            bytes: c.bytes,
        })
        .collect();
    (snapshots, (bound, evicted))
}

/// The flow count from which [`window_flow_candidates`] prunes: small merges are cheap (the
/// default `--max-flows` is 64 per pane).
const PRUNE_FROM: usize = 256;

/// The flows of one source over a window's panes (`entries`, one per pane holding the source),
/// summed: all of them, or, when one pane alone holds `n` flows, only those that can still rank
/// among the window's top `n`.
///
/// Why the pruning is exact: if some pane holds `n` flows of at least `floor` bytes, those `n`
/// flows have window sums of at least `floor`, so every top-`n` flow has one too; a flow's sum
/// over `k` panes is at most `k` times its largest pane value, so each top-`n` flow has a pane
/// where `k × bytes ≥ floor`. Only such flows are summed, by looking them up in the other panes;
/// the rest are never hashed. The pruning matters with a large `--max-flows`, where a full merge
/// would be most of a window's close (every flow of every listed source, merged again for each of
/// the windows over its pane). Below `prune_from` flows, or when most flows stay candidates, one
/// hashed merge of all of them is cheaper.
fn window_flow_candidates(
    entries: &[&SourceEntry],
    n: usize,
    prune_from: usize,
) -> Vec<(FlowKey, FlowCounters)> {
    let all =
        || sum_by_key(entries.iter().map(|e| (e.flow_count(), e.flows().map(|(k, c)| (*k, *c)))));
    if entries.len() <= 1 || n == 0 {
        return all();
    }
    let total: usize = entries.iter().map(|e| e.flow_count()).sum();
    if total < prune_from {
        return all();
    }
    let mut floor = 0u64;
    let mut weights: Vec<u64> = Vec::new();
    for entry in entries.iter().filter(|e| e.flow_count() >= n) {
        weights.clear();
        weights.extend(entry.flows().map(|(_, c)| c.bytes));
        let (_, nth, _) = weights.select_nth_unstable_by(n - 1, |a, b| b.cmp(a));
        floor = floor.max(*nth);
    }
    if floor == 0 {
        return all();
    }
    let k = entries.len() as u128;
    let mut keys: Vec<FlowKey> = entries
        .iter()
        .flat_map(|e| e.flows())
        .filter(|(_, c)| u128::from(c.bytes) * k >= u128::from(floor))
        .map(|(key, _)| *key)
        .collect();
    if keys.len() * 2 > total {
        return all();
    }
    keys.sort_unstable();
    keys.dedup();
    keys.into_iter()
        .map(|key| {
            let mut sum = FlowCounters::default();
            for counters in entries.iter().filter_map(|e| e.flow(&key)) {
                sum.absorb(counters);
            }
            (key, sum)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decode::LogStatus;
    use crate::window::event::FlowEvent;
    use proptest::prelude::*;

    fn event(srcport: u16, packets: u64, bytes: u64) -> FlowEvent {
        FlowEvent {
            interface: 0,
            pane: 1,
            late: false,
            status: Some(LogStatus::Ok),
            action: Some(Action::Accept),
            direction: Direction::Ingress,
            basis: crate::window::direction::Basis::Inferred,
            srcaddr: Some("10.0.0.1".parse().unwrap()),
            dstaddr: Some("10.0.0.2".parse().unwrap()),
            via: None,
            local: None,
            srcport: Some(srcport),
            dstport: Some(443),
            protocol: Some(6),
            packets,
            bytes,
            account: None,
            region: None,
        }
    }

    /// At the bound's tie, a flow spread evenly over both panes reaches the floor exactly and
    /// outranks the floor's own flow on packets.
    #[test]
    fn a_flow_reaching_the_floor_exactly_is_kept() {
        let mut a = SourceEntry::default();
        a.record(&event(1, 1, 10), 1_000); // This is the floor, pane a's heaviest flow.
        a.record(&event(2, 1, 5), 1_000);
        let mut b = SourceEntry::default();
        b.record(&event(2, 1, 5), 1_000);
        for port in 100..110 {
            b.record(&event(port, 1, 1), 1_000); // These are never candidates: 2 × 1 < 10.
        }
        let flows = window_flow_candidates(&[&a, &b], 1, 0);
        assert_eq!(flows.len(), 2, "only the two candidates are summed: {flows:?}");
        let (top, _) = top_n(flows, 1);
        assert_eq!(top[0].0.srcport, Some(2));
        assert_eq!(top[0].1, FlowCounters { packets: 2, bytes: 10 });
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 2_000, ..ProptestConfig::default() })]

        /// The pruned merge lists exactly the flows (and sums) that merging every flow lists:
        /// few ports and small byte counts make many ties and flows shared between panes; a
        /// small cap adds evictions.
        #[test]
        fn pruned_top_flows_equal_the_full_merge(
            panes in prop::collection::vec(
                prop::collection::vec((0u16..12, 1u64..3, 0u64..40), 0..30), 1..6),
            n in 1usize..5,
            cap in prop_oneof![Just(4usize), Just(1_000)],
        ) {
            let entries: Vec<SourceEntry> = panes
                .iter()
                .map(|events| {
                    let mut e = SourceEntry::default();
                    for &(port, packets, bytes) in events {
                        e.record(&event(port, packets, bytes), cap);
                    }
                    e
                })
                .collect();
            let refs: Vec<&SourceEntry> = entries.iter().collect();
            let full = sum_by_key(
                refs.iter().map(|e| (e.flow_count(), e.flows().map(|(k, c)| (*k, *c)))),
            );
            let (want, _) = top_n(full, n);
            let (got, _) = top_n(window_flow_candidates(&refs, n, 0), n);
            prop_assert_eq!(got, want);
        }
    }
}
