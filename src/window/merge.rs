//! This module merges a window's panes: counters summed by key across panes, ranked and cut
//! to a top-N, and a source's top flows found without merging all of its flows.

use std::collections::HashMap;

use super::pane::{FlowCounters, FlowKey, SourceEntry};
use super::table::{Measure, rank};

/// Listed entries (ranked) and the rest.
pub(crate) type Split<K, V> = (Vec<(K, V)>, Vec<(K, V)>);

/// Sums counters by key across parts (panes), each given with its length. Keys are distinct
/// within a part, so a single part needs no hashing; several are merged in a map sized for
/// the largest, so it rarely grows.
pub(crate) fn sum_by_key<K, V, I>(parts: impl Iterator<Item = (usize, I)>) -> Vec<(K, V)>
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
pub(crate) fn top_n<K: Ord, V: Measure>(mut all: Vec<(K, V)>, n: usize) -> Split<K, V> {
    if all.len() > n {
        all.select_nth_unstable_by(n, rank);
    }
    let rest = all.split_off(n.min(all.len()));
    all.sort_by(rank);
    (all, rest)
}

/// The flow count from which [`window_flow_candidates`] prunes: small merges are cheap (the
/// default `--max-flows` is 64 per pane).
pub(crate) const PRUNE_FROM: usize = 256;

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
pub(crate) fn window_flow_candidates(
    entries: &[&SourceEntry],
    n: usize,
    prune_from: usize,
) -> Vec<(FlowKey, FlowCounters)> {
    let all = || sum_by_key(entries.iter().map(|e| (e.flow_count(), e.flows())));
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
        .map(|(key, _)| key)
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
                sum.absorb(&counters);
            }
            (key, sum)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decode::Action;
    use crate::decode::LogStatus;
    use crate::window::direction::Direction;
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
            syn_only: None,
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
        assert_eq!(top[0].1, FlowCounters { packets: 2, bytes: 10, flows: 2 });
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
                refs.iter().map(|e| (e.flow_count(), e.flows())),
            );
            let (want, _) = top_n(full, n);
            let (got, _) = top_n(window_flow_candidates(&refs, n, 0), n);
            prop_assert_eq!(got, want);
        }
    }
}
