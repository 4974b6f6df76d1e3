//! A capped table of counters that stays exact under its cap and keeps the heavy hitters beyond.
//!
//! Under the cap it is a plain hash map. When a new key arrives at the cap, the table
//! **compacts**: it keeps the heaviest half (by weight, ties broken by a second measure and then
//! the key, so the result depends only on the content) and folds the rest into an exact
//! remainder. This is the batched form of Space-Saving / Misra–Gries used by Apache DataSketches'
//! frequent-items sketch, but folding evicted counters into a remainder rather than into the
//! newcomer, so that:
//!
//! - listed entries plus the remainder always equal the totals exactly;
//! - every entry's weight is a lower bound of its true weight, short by at most
//!   [`BoundedTable::error_bound`] (the sum, over compactions, of the heaviest entry evicted);
//! - any key whose true weight exceeds that bound is still in the table.
//!
//! Compaction costs O(cap) once per cap/2 new keys: O(1) amortised per insert.

use std::collections::HashMap;
use std::hash::Hash;

/// Counters a table can hold: a weight to rank by, a tiebreak, and addition.
pub trait Measure: Default {
    /// What "heavy" means (bytes).
    fn weight(&self) -> u64;
    /// The second ranking key (packets).
    fn tiebreak(&self) -> u64;
    /// Adds `other`'s counters to `self` (used to fold evicted entries into the remainder).
    fn absorb(&mut self, other: &Self);
}

type Hasher = foldhash::fast::RandomState;

/// See the module documentation.
#[derive(Debug, Clone)]
pub struct BoundedTable<K, V> {
    entries: HashMap<K, V, Hasher>,
    cap: usize,
    folded: V,
    evicted: u64,
    error_bound: u64,
}

impl<K: Hash + Eq + Ord + Clone, V: Measure> BoundedTable<K, V> {
    /// A table holding at most `cap` entries (at least 2).
    pub fn new(cap: usize) -> Self {
        BoundedTable {
            entries: HashMap::with_hasher(Hasher::default()),
            cap: cap.max(2),
            folded: V::default(),
            evicted: 0,
            error_bound: 0,
        }
    }

    /// The counters of `key`, inserted empty if absent (compacting first if the table is full).
    #[inline]
    pub fn entry(&mut self, key: K) -> &mut V {
        if self.entries.len() >= self.cap && !self.entries.contains_key(&key) {
            self.compact();
        }
        self.entries.entry(key).or_default()
    }

    fn compact(&mut self) {
        let keep = self.cap.div_ceil(2);
        let mut all: Vec<(K, V)> = self.entries.drain().collect();
        if all.len() > keep {
            all.select_nth_unstable_by(keep, |a, b| rank(a, b));
            let mut heaviest_evicted = 0;
            for (_, v) in all.drain(keep..) {
                heaviest_evicted = heaviest_evicted.max(v.weight());
                self.folded.absorb(&v);
                self.evicted += 1;
            }
            self.error_bound = self.error_bound.saturating_add(heaviest_evicted);
        }
        self.entries.extend(all);
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub fn iter(&self) -> impl Iterator<Item = (&K, &V)> {
        self.entries.iter()
    }

    pub fn get(&self, key: &K) -> Option<&V> {
        self.entries.get(key)
    }

    /// The exact sum of every evicted entry's counters.
    pub fn folded(&self) -> &V {
        &self.folded
    }

    /// How many entries have been evicted.
    pub fn evicted(&self) -> u64 {
        self.evicted
    }

    /// By how much any entry's weight may fall short of its true weight.
    pub fn error_bound(&self) -> u64 {
        self.error_bound
    }

    /// Whether anything was evicted (the table is no longer exact).
    pub fn is_approximate(&self) -> bool {
        self.evicted > 0
    }
}

/// Heaviest first: weight, then tiebreak, both descending; then key ascending.
pub fn rank<K: Ord, V: Measure>(a: &(K, V), b: &(K, V)) -> std::cmp::Ordering {
    b.1.weight()
        .cmp(&a.1.weight())
        .then_with(|| b.1.tiebreak().cmp(&a.1.tiebreak()))
        .then_with(|| a.0.cmp(&b.0))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::BTreeMap;

    #[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
    struct W(u64, u64);
    impl Measure for W {
        fn weight(&self) -> u64 {
            self.0
        }
        fn tiebreak(&self) -> u64 {
            self.1
        }
        fn absorb(&mut self, o: &Self) {
            self.0 += o.0;
            self.1 += o.1;
        }
    }

    #[test]
    fn exact_under_the_cap() {
        let mut t = BoundedTable::<u32, W>::new(4);
        for (k, w) in [(1, 5), (2, 3), (1, 1), (3, 9), (4, 2)] {
            t.entry(k).absorb(&W(w, 1));
        }
        assert_eq!(t.len(), 4);
        assert_eq!(t.get(&1), Some(&W(6, 2)));
        assert!(!t.is_approximate());
    }

    #[test]
    fn compaction_keeps_the_heaviest_half_and_folds_the_rest() {
        let mut t = BoundedTable::<u32, W>::new(4);
        for (k, w) in [(1, 10), (2, 1), (3, 30), (4, 2)] {
            t.entry(k).absorb(&W(w, 1));
        }
        t.entry(5).absorb(&W(7, 1));
        let mut keys: Vec<_> = t.iter().map(|(k, _)| *k).collect();
        keys.sort();
        assert_eq!(keys, [1, 3, 5]);
        assert_eq!(*t.folded(), W(3, 2));
        assert_eq!((t.evicted(), t.error_bound()), (2, 2));
    }

    proptest! {
        /// Against an exact model: reconciliation, lower bounds within the error bound, heavy
        /// hitters retained, size capped.
        #[test]
        fn model(cap in 2usize..12, ops in proptest::collection::vec((0u32..40, 0u64..1000), 0..400)) {
            let mut t = BoundedTable::<u32, W>::new(cap);
            let mut exact: BTreeMap<u32, W> = BTreeMap::new();
            for &(k, w) in &ops {
                t.entry(k).absorb(&W(w, 1));
                exact.entry(k).or_default().absorb(&W(w, 1));
                prop_assert!(t.len() <= cap);
            }
            let mut sum = *t.folded();
            for (_, v) in t.iter() { sum.absorb(v); }
            let mut total = W::default();
            for v in exact.values() { total.absorb(v); }
            prop_assert_eq!(sum, total);
            for (k, truth) in &exact {
                let got = t.get(k).map_or(0, |v| v.0);
                prop_assert!(got <= truth.0);
                prop_assert!(truth.0 - got <= t.error_bound(), "key {} true {} got {} bound {}", k, truth.0, got, t.error_bound());
                if truth.0 > t.error_bound() {
                    prop_assert!(t.get(k).is_some(), "heavy key {} lost", k);
                }
            }
            if exact.len() <= cap {
                prop_assert!(!t.is_approximate());
            }
        }
    }
}
