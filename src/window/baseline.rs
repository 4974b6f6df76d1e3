//! This module keeps each interface's recent history of its top sources, against which a
//! window's sources are compared (`baseline_bytes`, `spike_ratio`).
//!
//! When window `k` closes, pane `k` leaves every window still to close, so the closer records
//! that pane's top sources by bytes (at most `--top-sources` of them, ranked as the snapshot
//! ranks) in the interface's [`SourceHistory`]. Panes therefore enter the history in pane
//! order, once each, whatever the markers' timing, which makes baselines deterministic for a
//! given input and shard count alike.
//!
//! The baseline of a source in window `k` (panes `k … k+n-1`, with `B` = `--baseline-windows`)
//! is its mean bytes per window length over the history span `[max(k − B·n, f), k)`, where `f`
//! is the first pane recorded for the interface (kept while the engine runs and across
//! restarts): the sum of its recorded bytes in the span, times `n`, divided by the span's
//! length in panes. It is `null` when the span is empty (an interface's first windows). A
//! source the interface never recorded has a baseline of 0, and a source missing from a
//! recorded pane's top list counts 0 there, so the baseline is a lower bound once an interface
//! has more sources than a pane's list holds. Every term depends on the panes' contents only,
//! not on the order records arrived in.

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;

use serde::{Deserialize, Serialize};

use super::findings::DeniedKey;
use super::pane::Pane;
use super::table::Measure;
use super::time::PaneId;

/// One interface's recorded panes.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SourceHistory {
    /// The first pane ever recorded for the interface.
    first: Option<PaneId>,
    /// Each recorded pane, oldest first.
    panes: VecDeque<(PaneId, PaneRecord)>,
}

/// The histories of every interface, by interned interface id.
pub type SourceHistories = HashMap<u32, SourceHistory>;

/// The top sources of one pane, as the history records them.
pub type PaneSources = Box<[(IpAddr, u64)]>;

/// What the history keeps of one pane: its top sources with their bytes, and the
/// destinations its egress was denied to (at most [`DENIED_PER_PANE`], by flows).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PaneRecord {
    pub sources: PaneSources,
    pub denied: Box<[DeniedKey]>,
}

/// Denied destinations a recorded pane keeps.
pub const DENIED_PER_PANE: usize = 64;

/// What the history records of `pane`.
pub fn pane_record(pane: &Pane, keep: usize) -> PaneRecord {
    let mut all: Vec<(DeniedKey, u64)> = pane
        .egress
        .rejected
        .iter()
        .map(|(c, t)| ((c.remote_address, c.remote_port, c.protocol), t.flows))
        .collect();
    // Conversations to one destination differ by local address and port: merge them.
    all.sort_unstable_by_key(|(k, _)| *k);
    let mut denied: Vec<(DeniedKey, u64)> = Vec::with_capacity(all.len());
    for (key, flows) in all {
        match denied.last_mut() {
            Some((last, sum)) if *last == key => *sum += flows,
            _ => denied.push((key, flows)),
        }
    }
    if denied.len() > DENIED_PER_PANE {
        denied.select_nth_unstable_by(DENIED_PER_PANE, |a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
        denied.truncate(DENIED_PER_PANE);
    }
    // Sorted by key, for `denied_before`'s binary search.
    let mut denied: Box<[DeniedKey]> = denied.into_iter().map(|(k, _)| k).collect();
    denied.sort_unstable();
    PaneRecord { sources: pane_sources(pane, keep), denied }
}

/// The `keep` sources of `pane` with the most bytes (ties to more packets, then the smaller
/// address), with their bytes.
pub fn pane_sources(pane: &Pane, keep: usize) -> PaneSources {
    // Ranking reads only bytes and packets, so those are all that is copied.
    let mut all: Vec<(IpAddr, (u64, u64))> =
        pane.sources.iter().map(|(a, e)| (*a, (e.weight(), e.tiebreak()))).collect();
    let heaviest = |a: &(IpAddr, (u64, u64)), b: &(IpAddr, (u64, u64))| {
        b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0))
    };
    if all.len() > keep {
        all.select_nth_unstable_by(keep, heaviest);
        all.truncate(keep);
    }
    all.sort_by(heaviest);
    all.into_iter().filter(|(_, (bytes, _))| *bytes > 0).map(|(a, (bytes, _))| (a, bytes)).collect()
}

impl SourceHistory {
    /// Records pane `id`'s top sources, then forgets panes older than `retain` panes before it.
    /// Panes come in increasing order; a pane already recorded is ignored.
    pub fn record(&mut self, id: PaneId, record: PaneRecord, retain: u64) {
        let empty = record.sources.is_empty() && record.denied.is_empty();
        if empty || self.panes.back().is_some_and(|(last, _)| *last >= id) {
            return;
        }
        self.first.get_or_insert(id);
        self.panes.push_back((id, record));
        let oldest = id.saturating_sub(retain);
        while self.panes.front().is_some_and(|(p, _)| *p < oldest) {
            self.panes.pop_front();
        }
    }

    /// Forgets the recorded panes, if the newest is more than `retain` panes before `last`,
    /// keeping where the history began (a few bytes per interface, as the interner keeps its
    /// name).
    pub fn forget_if_older(&mut self, last: PaneId, retain: u64) {
        if self.panes.back().is_some_and(|(p, _)| p.saturating_add(retain) < last) {
            self.panes = VecDeque::new();
        }
    }

    /// The recorded panes in `[from, to)`.
    fn span(&self, from: PaneId, to: PaneId) -> impl Iterator<Item = &PaneRecord> {
        self.panes.iter().filter(move |(p, _)| *p >= from && *p < to).map(|(_, r)| r)
    }

    /// The sums of the sources recorded in panes `[from, to)`.
    fn sums(&self, from: PaneId, to: PaneId) -> Sums {
        let mut sums = Sums::default();
        for record in self.span(from, to) {
            for (address, bytes) in record.sources.iter() {
                *sums.entry(*address).or_default() += u128::from(*bytes);
            }
        }
        sums
    }
}

type Sums = HashMap<IpAddr, u128, foldhash::fast::RandomState>;

/// The baseline view of window `first` (of `window_panes` panes) over `baseline_windows`
/// window lengths before it, given the interface's history; `None` when that span is empty.
pub fn view(
    history: &SourceHistory,
    first: PaneId,
    window_panes: u64,
    baseline_windows: u64,
) -> Option<BaselineView<'_>> {
    let span_start = first.saturating_sub(window_panes.saturating_mul(baseline_windows));
    let covered_from = span_start.max(history.first?);
    let covered = first.checked_sub(covered_from).filter(|c| *c > 0)?;
    let sums = history.sums(covered_from, first);
    Some(BaselineView { sums, history, from: covered_from, to: first, window_panes, covered })
}

/// A source's baseline for one window: built once per interface and window, read per source.
#[derive(Debug)]
pub struct BaselineView<'a> {
    sums: Sums,
    /// The history and the span, for `denied_before`.
    history: &'a SourceHistory,
    from: PaneId,
    to: PaneId,
    window_panes: u64,
    covered: u64,
}

impl BaselineView<'_> {
    /// Whether egress to `key` was denied in the span.
    pub fn denied_before(&self, key: &DeniedKey) -> bool {
        self.history.span(self.from, self.to).any(|r| r.denied.binary_search(key).is_ok())
    }

    /// The source's mean bytes per window length over the covered span (rounded down).
    pub fn baseline_bytes(&self, address: &IpAddr) -> u64 {
        let sum = self.sums.get(address).copied().unwrap_or(0);
        let mean = sum * u128::from(self.window_panes) / u128::from(self.covered);
        u64::try_from(mean).unwrap_or(u64::MAX)
    }
}

/// `bytes / baseline`, or `None` against a baseline of 0 (a source new to the interface).
pub fn spike_ratio(bytes: u64, baseline: u64) -> Option<f64> {
    (baseline > 0).then(|| bytes as f64 / baseline as f64)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(n: u8) -> IpAddr {
        IpAddr::V4(std::net::Ipv4Addr::new(10, 0, 0, n))
    }

    fn sources(list: &[(u8, u64)]) -> PaneRecord {
        PaneRecord {
            sources: list.iter().map(|&(a, b)| (ip(a), b)).collect(),
            denied: Box::new([]),
        }
    }

    #[test]
    fn an_interfaces_first_windows_have_no_baseline() {
        let mut h = SourceHistory::default();
        assert!(view(&h, 100, 5, 12).is_none());
        h.record(100, sources(&[]), 65);
        assert!(view(&h, 101, 5, 12).is_none(), "an empty pane starts no history");
        h.record(100, sources(&[(1, 10)]), 65);
        assert!(view(&h, 100, 5, 12).is_none());
        assert_eq!(view(&h, 101, 5, 12).unwrap().baseline_bytes(&ip(1)), 50);
        assert_eq!(view(&h, 101, 5, 12).unwrap().baseline_bytes(&ip(2)), 0);
    }

    #[test]
    fn the_mean_is_over_the_recorded_span_only() {
        let mut h = SourceHistory::default();
        for p in 10..20 {
            h.record(p, sources(&[(1, 100), (2, if p == 15 { 1_000 } else { 0 })]), 65);
        }
        // Window 20 of 5 panes, 2 window lengths back: span 10..20, all recorded.
        let v = view(&h, 20, 5, 2).unwrap();
        assert_eq!(v.baseline_bytes(&ip(1)), 500);
        assert_eq!(v.baseline_bytes(&ip(2)), 500);
        assert_eq!(v.baseline_bytes(&ip(3)), 0);
        // With 12 window lengths the span starts at 0, but the history begins at pane 10.
        assert_eq!(view(&h, 20, 5, 12).unwrap().baseline_bytes(&ip(1)), 500);
        // Panes after the history's newest count as zeros.
        assert_eq!(view(&h, 40, 5, 12).unwrap().baseline_bytes(&ip(1)), 10 * 100 * 5 / 30);
        // Forgetting the panes keeps where the history began.
        h.forget_if_older(100, 65);
        assert_eq!(view(&h, 100, 5, 12).unwrap().baseline_bytes(&ip(1)), 0);
        assert!(view(&h, 10, 5, 12).is_none());
    }

    #[test]
    fn recording_forgets_old_panes_and_ignores_repeats() {
        let mut h = SourceHistory::default();
        for p in 0..100 {
            h.record(p, sources(&[(1, 1)]), 10);
        }
        h.record(50, sources(&[(1, 1_000)]), 10);
        assert_eq!(h.panes.len(), 11);
        h.forget_if_older(109, 10);
        assert_eq!(h.panes.len(), 11, "the newest is 10 panes before");
        assert_eq!(view(&h, 100, 5, 2).unwrap().baseline_bytes(&ip(1)), 5);
    }

    #[test]
    fn spike_ratio_needs_a_baseline() {
        assert_eq!(spike_ratio(500, 100), Some(5.0));
        assert_eq!(spike_ratio(500, 0), None);
    }
}
