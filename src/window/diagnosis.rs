//! This module answers, per listed source, the three questions a network engineer opens a
//! source's detail for, and lists the sources with the most rejected flows.
//!
//! 1. Steady or a momentary spike? `pane_bytes` (the source's bytes per pane), `active_panes`
//!    and `peak_pane_share_pct` answer it within the window; `baseline_bytes` and `spike_ratio`
//!    against the interface's history ([`super::baseline`]).
//! 2. One destination far above the rest? `top_destinations`: the source's flows summed by
//!    destination address over ports, with each one's share of the source's bytes.
//! 3. How often rejected? `rejected_packets` and `reject_ratio_pct` beside the rejected flows
//!    and bytes, and per interface `rejected_sources`, ranked by rejected flows so that a
//!    scanner's probes are listed whatever their bytes.
//!
//! Distinct destination ports and addresses ([`super::distinct`]) and SYN-only flows give the
//! scan signals.

use std::net::IpAddr;

use serde::{Deserialize, Serialize};
use smallvec::SmallVec;

use super::baseline::spike_ratio;
use super::distinct::{DistinctCounts, DistinctDestinations, estimated_counts, exact_counts};
use super::findings::Thresholds;
use super::merge::top_n;
use super::pane::{SourceEntry, TcpFlagCounts, Traffic};
use super::snapshot::{BuildOptions, WindowPanes, share_pct};
use crate::decode::Action;

/// How much per-source detail snapshots give (the predecessor's "detailed diagnosis").
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Detail {
    /// Top flows, pane series and top destinations for every listed source.
    #[default]
    Always,
    /// Those lists only for a source with a finding: a port scan or a spike (see
    /// [`super::findings`]).
    OnFinding,
    /// No lists; every listed source keeps its scalar measures.
    Off,
}

impl Detail {
    /// Whether a source with this detail and traffic gets its lists.
    pub fn lists(self, detail: &SourceDetail, traffic: &Traffic, th: &Thresholds) -> bool {
        match self {
            Detail::Always => true,
            Detail::Off => false,
            Detail::OnFinding => {
                let scan = detail.distinct.ports >= th.scan_ports;
                let spike = traffic.bytes >= th.spike_min_bytes
                    && detail.spike_ratio.is_some_and(|r| r >= th.spike_ratio);
                scan || spike
            }
        }
    }
}

/// One destination of a source.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DestinationOfSource {
    pub address: IpAddr,
    pub packets: u64,
    pub bytes: u64,
    pub flows: u64,
    pub rejected_flows: u64,
    /// Percentage of the source's bytes.
    pub share_pct: f64,
}

/// A source listed by rejected flows.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RejectedSourceSnapshot {
    pub address: IpAddr,
    pub rejected_flows: u64,
    pub rejected_packets: u64,
    pub rejected_bytes: u64,
    pub flows: u64,
    pub distinct_destination_ports: u64,
    pub distinct_destination_addresses: u64,
    pub distinct_approximate: bool,
    /// Records with `tcp-flags` = 2 (a SYN scan's probes); `None` when none had the field.
    pub syn_only_flows: Option<u64>,
}

/// A source's entries in a window's panes, with each pane's position in the window.
#[derive(Debug, Default)]
pub struct SourcePanes<'a> {
    pub entries: Vec<&'a SourceEntry>,
    pub positions: Vec<usize>,
}

/// The entries of `address` in the window's panes.
pub fn entries_of<'a>(address: &IpAddr, window: &WindowPanes<'a>) -> SourcePanes<'a> {
    let mut found = SourcePanes::default();
    for (pane, &position) in window.panes.iter().zip(&window.positions) {
        if let Some(entry) = pane.sources.get(address) {
            found.entries.push(entry);
            found.positions.push(position);
        }
    }
    found
}

/// The per-source values a snapshot adds to a listed source's traffic.
#[derive(Debug, Clone, PartialEq)]
pub struct SourceDetail {
    pub pane_bytes: Vec<u64>,
    pub active_panes: u32,
    pub peak_pane_share_pct: f64,
    pub baseline_bytes: Option<u64>,
    pub spike_ratio: Option<f64>,
    pub top_destinations: Vec<DestinationOfSource>,
    pub distinct: DistinctCounts,
    pub syn_only_flows: Option<u64>,
}

impl SourceDetail {
    /// The detail of the source at `address` with window traffic `traffic`, over its entries in
    /// a window of `window_len` panes.
    pub fn of(
        address: &IpAddr,
        traffic: &Traffic,
        found: &SourcePanes,
        window_len: usize,
        options: &BuildOptions,
    ) -> SourceDetail {
        let mut pane_bytes = vec![0u64; window_len];
        let mut active_panes = 0u32;
        for (entry, &position) in found.entries.iter().zip(&found.positions) {
            let t = entry.traffic();
            if let Some(slot) = pane_bytes.get_mut(position) {
                *slot = t.bytes;
            }
            active_panes += u32::from(t.flows > 0);
        }
        let peak = pane_bytes.iter().copied().max().unwrap_or(0);
        let baseline_bytes = options.baseline.map(|b| b.baseline_bytes(address));
        SourceDetail {
            pane_bytes,
            active_panes,
            peak_pane_share_pct: share_pct(peak, traffic.bytes),
            baseline_bytes,
            spike_ratio: baseline_bytes.and_then(|b| spike_ratio(traffic.bytes, b)),
            top_destinations: top_destinations(&found.entries, traffic.bytes, options.top),
            distinct: distinct_counts(&found.entries),
            syn_only_flows: syn_only_flows(&found.entries),
        }
    }

    /// Empties the lists (`--detail` leaves them out for this source).
    pub fn drop_lists(&mut self) {
        self.pane_bytes = Vec::new();
        self.top_destinations = Vec::new();
    }
}

/// Records with a SYN alone among the entries' records, `None` if none carried `tcp-flags`.
fn syn_only_flows(entries: &[&SourceEntry]) -> Option<u64> {
    let mut flags = TcpFlagCounts::default();
    for entry in entries {
        flags.add(&entry.tcp_flags());
    }
    (flags.flagged > 0).then_some(flags.syn_only)
}

/// The source's flows summed by destination address, ranked, the top `top.source_destinations`.
fn top_destinations(
    entries: &[&SourceEntry],
    source_bytes: u64,
    top: &super::snapshot::TopN,
) -> Vec<DestinationOfSource> {
    // Most sources reach one or a few addresses: an inline list searched linearly.
    let mut by_address: SmallVec<[(IpAddr, Traffic); 4]> = SmallVec::new();
    for (key, counters) in entries.iter().flat_map(|e| e.flows()) {
        let Some(address) = key.dstaddr else { continue };
        let at = match by_address.iter().position(|(a, _)| *a == address) {
            Some(i) => i,
            None => {
                by_address.push((address, Traffic::default()));
                by_address.len() - 1
            }
        };
        let t = &mut by_address[at].1;
        t.packets = t.packets.saturating_add(counters.packets);
        t.bytes = t.bytes.saturating_add(counters.bytes);
        t.flows = t.flows.saturating_add(counters.flows);
        if key.action == Some(Action::Reject) {
            t.rejected_flows = t.rejected_flows.saturating_add(counters.flows);
        }
    }
    let (listed, _) = top_n(by_address.into_vec(), top.source_destinations);
    listed
        .into_iter()
        .map(|(address, t)| DestinationOfSource {
            address,
            packets: t.packets,
            bytes: t.bytes,
            flows: t.flows,
            rejected_flows: t.rejected_flows,
            share_pct: share_pct(t.bytes, source_bytes),
        })
        .collect()
}

/// The source's distinct destination ports and addresses: exact from its flows while no table
/// evicted one, from the merged sketches otherwise.
fn distinct_counts(entries: &[&SourceEntry]) -> DistinctCounts {
    if entries.iter().all(|e| e.evicted_flows() == 0) {
        return exact_counts(entries.iter().flat_map(|e| e.flows().map(|(k, _)| k)));
    }
    let mut merged = DistinctDestinations::default();
    for entry in entries {
        match entry.distinct() {
            Some(d) => merged.merge(d),
            None => {
                for (key, _) in entry.flows() {
                    merged.insert(&key);
                }
            }
        }
    }
    estimated_counts(&merged)
}

/// The `n` sources with the most rejected flows (then rejected packets, then the smaller
/// address), of the window's summed sources; none without a rejected flow.
pub fn most_rejected(sources: &[(IpAddr, Traffic)], n: usize) -> Vec<(IpAddr, Traffic)> {
    let mut candidates: Vec<(IpAddr, Traffic)> =
        sources.iter().filter(|(_, t)| t.rejected_flows > 0).copied().collect();
    let by_rejects = |a: &(IpAddr, Traffic), b: &(IpAddr, Traffic)| {
        b.1.rejected_flows
            .cmp(&a.1.rejected_flows)
            .then_with(|| b.1.rejected_packets.cmp(&a.1.rejected_packets))
            .then_with(|| a.0.cmp(&b.0))
    };
    if candidates.len() > n {
        candidates.select_nth_unstable_by(n, by_rejects);
        candidates.truncate(n);
    }
    candidates.sort_by(by_rejects);
    candidates
}

/// Sources ranked by [`most_rejected`] as snapshot entries.
pub fn rejected_sources(
    ranked: &[(IpAddr, Traffic)],
    window: &WindowPanes,
) -> Vec<RejectedSourceSnapshot> {
    ranked
        .iter()
        .map(|&(address, t)| {
            let entries = entries_of(&address, window).entries;
            let distinct = distinct_counts(&entries);
            RejectedSourceSnapshot {
                address,
                rejected_flows: t.rejected_flows,
                rejected_packets: t.rejected_packets,
                rejected_bytes: t.rejected_bytes,
                flows: t.flows,
                distinct_destination_ports: distinct.ports,
                distinct_destination_addresses: distinct.addresses,
                distinct_approximate: distinct.approximate,
                syn_only_flows: syn_only_flows(&entries),
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decode::LogStatus;
    use crate::window::direction::{Basis, Direction};
    use crate::window::event::FlowEvent;
    use proptest::prelude::*;
    use std::collections::BTreeSet;

    fn probe(port: u16, address: u8) -> FlowEvent {
        FlowEvent {
            interface: 0,
            pane: 0,
            late: false,
            status: Some(LogStatus::Ok),
            action: Some(Action::Reject),
            direction: Direction::Ingress,
            basis: Basis::Inferred,
            srcaddr: Some("198.51.100.66".parse().unwrap()),
            dstaddr: Some(IpAddr::V4(std::net::Ipv4Addr::new(10, 3, 9, address))),
            via: None,
            local: None,
            srcport: Some(55_000),
            dstport: Some(port),
            protocol: Some(6),
            syn_only: Some(true),
            packets: 1,
            bytes: 40,
            account: None,
            region: None,
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

        /// A source's distinct destinations over several panes, against the sets of what it
        /// sent: exact while no flow table evicted, and within four standard errors of the
        /// sketch (or 2, for tiny sets) once one did.
        #[test]
        fn distinct_counts_match_the_sets_under_and_over_the_cap(
            panes in prop::collection::vec(
                prop::collection::vec((0u16..3_000, 0u8..4), 0..400), 1..5),
            cap in prop_oneof![Just(2usize), Just(16), Just(64), Just(10_000)],
        ) {
            let mut ports = BTreeSet::new();
            let mut addresses = BTreeSet::new();
            let entries: Vec<SourceEntry> = panes
                .iter()
                .map(|probes| {
                    let mut e = SourceEntry::default();
                    for &(port, address) in probes {
                        e.record(&probe(port, address), cap);
                        ports.insert(port);
                        addresses.insert(address);
                    }
                    e
                })
                .collect();
            let refs: Vec<&SourceEntry> = entries.iter().collect();
            let got = distinct_counts(&refs);
            let evicted = refs.iter().any(|e| e.evicted_flows() > 0);
            prop_assert_eq!(got.approximate, evicted);
            for (estimate, truth) in [(got.ports, ports.len()), (got.addresses, addresses.len())] {
                let truth = truth as f64;
                let slack = if evicted { (4.0 * 0.033 * truth).max(2.0) } else { 0.0 };
                prop_assert!((estimate as f64 - truth).abs() <= slack, "{} of {}", estimate, truth);
            }
        }

        /// The rejected ranking against a sort of every source: rejected flows, then rejected
        /// packets, both descending, then the smaller address; sources without a reject are
        /// never listed. Small ranges make many ties.
        #[test]
        fn rejected_sources_rank_like_a_full_sort(
            sources in prop::collection::btree_map(0u8..40, (0u64..4, 0u64..3), 0..40),
            n in 0usize..6,
        ) {
            let summed: Vec<(IpAddr, Traffic)> = sources
                .iter()
                .map(|(&a, &(rejected_flows, rejected_packets))| {
                    let address = IpAddr::V4(std::net::Ipv4Addr::new(10, 0, 0, a));
                    let t = Traffic { flows: 5, rejected_flows, rejected_packets, ..Traffic::default() };
                    (address, t)
                })
                .collect();
            let mut want: Vec<(IpAddr, u64, u64)> = summed
                .iter()
                .filter(|(_, t)| t.rejected_flows > 0)
                .map(|(a, t)| (*a, t.rejected_flows, t.rejected_packets))
                .collect();
            want.sort_by(|x, y| (y.1, y.2, x.0).cmp(&(x.1, x.2, y.0)));
            want.truncate(n);
            let got: Vec<(IpAddr, u64, u64)> = rejected_sources(&most_rejected(&summed, n), &WindowPanes::default())
                .iter()
                .map(|r| (r.address, r.rejected_flows, r.rejected_packets))
                .collect();
            prop_assert_eq!(got, want);
        }
    }
}
