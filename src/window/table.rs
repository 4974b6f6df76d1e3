//! This module provides a capped table of counters that stays exact under its cap and keeps the
//! heavy hitters beyond it.
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

use std::hash::{BuildHasher, Hash};

use hashbrown::HashTable;
use smallvec::SmallVec;

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
///
/// The entries live in a dense `Vec` in insertion order, found through a hash table of
/// `u32` indices. A hashed map of the entries themselves would carry its load-factor slack
/// (up to half its buckets empty) on every entry's full size; here the slack costs 5 bytes per
/// bucket, and the entries grow by a quarter at a time, which is what keeps a tracked source
/// near 100 bytes (BENCHMARKS.md, "Windows"). Iteration walks the dense entries.
#[derive(Debug, Clone)]
pub struct BoundedTable<K, V> {
    index: HashTable<u32>,
    rows: Vec<(K, V)>,
    hasher: Hasher,
    cap: usize,
    folded: V,
    evicted: u64,
    error_bound: u64,
}

/// The serialized form of a [`BoundedTable`]: its entries, remainder and bounds (the index is
/// rebuilt on reading).
#[derive(serde::Serialize, serde::Deserialize)]
struct BoundedTableData<R, V> {
    entries: R,
    cap: usize,
    folded: V,
    evicted: u64,
    error_bound: u64,
}

impl<K: serde::Serialize, V: serde::Serialize> serde::Serialize for BoundedTable<K, V> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        BoundedTableData {
            entries: &self.rows,
            cap: self.cap,
            folded: &self.folded,
            evicted: self.evicted,
            error_bound: self.error_bound,
        }
        .serialize(s)
    }
}

impl<'de, K, V> serde::Deserialize<'de> for BoundedTable<K, V>
where
    K: serde::Deserialize<'de> + Hash + Eq + Ord + Clone,
    V: serde::Deserialize<'de> + Measure,
{
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let data = BoundedTableData::<Vec<(K, V)>, V>::deserialize(d)?;
        let mut table = BoundedTable::new(data.cap);
        table.folded = data.folded;
        table.evicted = data.evicted;
        table.error_bound = data.error_bound;
        // The entries go through `entry`, so that a crafted file's cap holds; a duplicate key
        // (only in a crafted file) is folded in as an evicted entry would be.
        for (k, v) in data.entries {
            let fresh = table.get(&k).is_none();
            let slot = table.entry(k);
            if fresh {
                *slot = v;
            } else {
                slot.absorb(&v);
            }
        }
        Ok(table)
    }
}

impl<K: Hash + Eq + Ord + Clone, V: Measure> BoundedTable<K, V> {
    /// A table holding at most `cap` entries (at least 2, at most 2^32 - 1).
    pub fn new(cap: usize) -> Self {
        BoundedTable {
            index: HashTable::new(),
            rows: Vec::new(),
            hasher: Hasher::default(),
            cap: cap.clamp(2, u32::MAX as usize),
            folded: V::default(),
            evicted: 0,
            error_bound: 0,
        }
    }

    /// The counters of `key`, inserted empty if absent (compacting first if the table is full).
    #[inline]
    pub fn entry(&mut self, key: K) -> &mut V {
        let hash = self.hasher.hash_one(&key);
        let rows = &self.rows;
        if let Some(&i) = self.index.find(hash, |&i| rows[i as usize].0 == key) {
            return &mut self.rows[i as usize].1;
        }
        if self.rows.len() >= self.cap {
            self.compact();
        }
        self.insert_new(hash, key)
    }

    #[inline]
    fn insert_new(&mut self, hash: u64, key: K) -> &mut V {
        if self.rows.len() == self.rows.capacity() {
            // The rows grow by a quarter (at least 4), never past the cap: see the type's docs.
            let more = (self.rows.len() / 4).max(4).min(self.cap - self.rows.len()).max(1);
            self.rows.reserve_exact(more);
        }
        let i = self.rows.len();
        self.rows.push((key, V::default()));
        let (rows, hasher) = (&self.rows, &self.hasher);
        self.index.insert_unique(hash, i as u32, |&j| hasher.hash_one(&rows[j as usize].0));
        &mut self.rows[i].1
    }

    fn compact(&mut self) {
        let keep = self.cap.div_ceil(2);
        let (n, heaviest) = evict_lightest(&mut self.rows, keep, |v| self.folded.absorb(v));
        self.rows.truncate(keep);
        self.evicted += n;
        self.error_bound = self.error_bound.saturating_add(heaviest);
        self.index.clear();
        let (rows, hasher) = (&self.rows, &self.hasher);
        for (i, (k, _)) in rows.iter().enumerate() {
            self.index.insert_unique(hasher.hash_one(k), i as u32, |&j| {
                hasher.hash_one(&rows[j as usize].0)
            });
        }
    }

    pub fn len(&self) -> usize {
        self.rows.len()
    }

    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    pub fn iter(&self) -> impl Iterator<Item = (&K, &V)> {
        self.rows.iter().map(|(k, v)| (k, v))
    }

    pub fn get(&self, key: &K) -> Option<&V> {
        let hash = self.hasher.hash_one(key);
        let i = *self.index.find(hash, |&i| self.rows[i as usize].0 == *key)?;
        Some(&self.rows[i as usize].1)
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

    /// Whether anything was evicted, which makes the table approximate.
    pub fn is_approximate(&self) -> bool {
        self.evicted > 0
    }
}

/// Moves the `keep` heaviest entries of `items` to the front (by [`rank`], so the result depends
/// only on the content) and hands each of the others to `fold`; the caller truncates.
/// Returns (evicted, heaviest evicted weight).
fn evict_lightest<K: Ord, V: Measure>(
    items: &mut [(K, V)],
    keep: usize,
    mut fold: impl FnMut(&V),
) -> (u64, u64) {
    if items.len() <= keep {
        return (0, 0);
    }
    items.select_nth_unstable_by(keep, rank);
    let mut heaviest = 0;
    for (_, v) in &items[keep..] {
        heaviest = heaviest.max(v.weight());
        fold(v);
    }
    ((items.len() - keep) as u64, heaviest)
}

/// Entries a [`SmallTable`] scans linearly; with a larger cap it moves them into a hashed
/// [`BoundedTable`] when it grows past this (64 fingerprints are four vector compares).
const SPILL: usize = 64;

/// A capped table for usually-few keys. Its entries live inline in a small vector (the first
/// without any allocation) and are found by a linear scan over 16-bit fingerprints kept in a
/// parallel array, so a miss reads a few cache lines rather than every entry. Past `SPILL`
/// entries (when the cap allows more) they move into a hashed [`BoundedTable`], so a large cap
/// never makes inserts linear. The table gives the same guarantees as [`BoundedTable`], except
/// that the remainder's counters are not kept (only how much was evicted), and the cap is passed
/// in so that millions of these tables do not each store it.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
#[serde(bound(
    serialize = "K: serde::Serialize + Hash + Eq, V: serde::Serialize",
    deserialize = "K: serde::Deserialize<'de> + Hash + Eq + Ord + Clone, V: serde::Deserialize<'de> + Measure"
))]
// The table is read through `SmallTableData`: its Vec caps what a declared length can
// pre-allocate (a SmallVec reserves whatever a state file claims), and the fingerprints are
// rebuilt from the items rather than trusted.
#[serde(from = "SmallTableData<K, V>")]
pub struct SmallTable<K, V> {
    #[serde(skip)]
    fingerprints: SmallVec<[u16; 4]>,
    items: SmallVec<[(K, V); 1]>,
    big: Option<Box<BoundedTable<K, V>>>,
    evicted: u32,
    error_bound: u64,
}

/// The serialized form of a [`SmallTable`] (field names as the table serializes them).
#[derive(serde::Deserialize)]
#[serde(bound(
    deserialize = "K: serde::Deserialize<'de> + Hash + Eq + Ord + Clone, V: serde::Deserialize<'de> + Measure"
))]
struct SmallTableData<K, V> {
    items: Vec<(K, V)>,
    big: Option<Box<BoundedTable<K, V>>>,
    evicted: u32,
    error_bound: u64,
}

impl<K: Hash + Eq + Ord + Clone, V: Measure> From<SmallTableData<K, V>> for SmallTable<K, V> {
    fn from(d: SmallTableData<K, V>) -> Self {
        // Fingerprints only index inline items; a spilled table has none.
        let mut table = SmallTable {
            fingerprints: SmallVec::new(),
            items: SmallVec::new(),
            big: d.big,
            evicted: d.evicted,
            error_bound: d.error_bound,
        };
        match &mut table.big {
            // A spilled table keeps nothing inline; fold any stray items into its map.
            Some(big) => {
                for (k, v) in d.items {
                    big.entry(k).absorb(&v);
                }
            }
            None => {
                table.fingerprints = d.items.iter().map(|(k, _)| fingerprint(k)).collect();
                table.items = SmallVec::from_vec(d.items);
            }
        }
        table
    }
}

impl<K, V> Default for SmallTable<K, V> {
    fn default() -> Self {
        SmallTable {
            fingerprints: SmallVec::new(),
            items: SmallVec::new(),
            big: None,
            evicted: 0,
            error_bound: 0,
        }
    }
}

#[inline]
fn fingerprint<K: Hash>(key: &K) -> u16 {
    use std::hash::BuildHasher;
    (foldhash::fast::FixedState::with_seed(0x5eed).hash_one(key) >> 48) as u16
}

impl<K: Hash + Eq + Ord + Clone, V: Measure> SmallTable<K, V> {
    /// The counters of `key`, inserted empty if absent (compacting first at `cap` entries).
    #[inline]
    pub fn entry(&mut self, key: K, cap: usize) -> &mut V {
        match self.big {
            Some(ref mut big) => big.entry(key),
            None => self.small_entry(key, cap),
        }
    }

    #[inline]
    fn small_entry(&mut self, key: K, cap: usize) -> &mut V {
        let fp = fingerprint(&key);
        if let Some(i) = self.find(fp, &key) {
            return &mut self.items[i].1;
        }
        let cap = cap.max(2);
        if self.items.len() >= SPILL && cap > SPILL {
            let mut big = BoundedTable::new(cap);
            for (k, v) in self.items.drain(..) {
                *big.entry(k) = v;
            }
            self.fingerprints = SmallVec::new();
            return self.big.insert(Box::new(big)).entry(key);
        }
        if self.items.len() >= cap {
            let keep = cap.div_ceil(2);
            let (n, heaviest) = evict_lightest(&mut self.items, keep, |_| {});
            self.items.truncate(keep);
            self.fingerprints.clear();
            self.fingerprints.extend(self.items.iter().map(|(k, _)| fingerprint(k)));
            self.evicted = self.evicted.saturating_add(n as u32);
            self.error_bound = self.error_bound.saturating_add(heaviest);
        }
        self.fingerprints.push(fp);
        self.items.push((key, V::default()));
        let last = self.items.len() - 1;
        &mut self.items[last].1
    }

    /// Finds the index of `key`: the fingerprints are compared 16 at a time into a bit mask
    /// (branch-free, so it vectorises), and keys only where a fingerprint matches.
    #[inline]
    fn find(&self, fp: u16, key: &K) -> Option<usize> {
        for (c, chunk) in self.fingerprints.chunks(16).enumerate() {
            let mut mask =
                chunk.iter().enumerate().fold(0u32, |m, (j, &f)| m | (u32::from(f == fp) << j));
            while mask != 0 {
                let i = c * 16 + mask.trailing_zeros() as usize;
                if self.items[i].0 == *key {
                    return Some(i);
                }
                mask &= mask - 1;
            }
        }
        None
    }

    pub fn iter(&self) -> impl Iterator<Item = (&K, &V)> {
        self.items.iter().map(|(k, v)| (k, v)).chain(self.big.iter().flat_map(|b| b.iter()))
    }

    /// The counters of `key`, if tracked.
    pub fn get(&self, key: &K) -> Option<&V> {
        match &self.big {
            Some(big) => big.get(key),
            None => self.find(fingerprint(key), key).map(|i| &self.items[i].1),
        }
    }

    pub fn len(&self) -> usize {
        self.items.len() + self.big.as_ref().map_or(0, |b| b.len())
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn evicted(&self) -> u64 {
        u64::from(self.evicted) + self.big.as_ref().map_or(0, |b| b.evicted())
    }

    /// Counts `n` more entries as evicted (a remainder recording what it absorbed).
    pub fn add_evicted(&mut self, n: u64) {
        self.evicted = self.evicted.saturating_add(u32::try_from(n).unwrap_or(u32::MAX));
    }

    pub fn error_bound(&self) -> u64 {
        self.error_bound.saturating_add(self.big.as_ref().map_or(0, |b| b.error_bound()))
    }
}

/// Heaviest first: weight, then tiebreak, both descending; then key ascending.
pub(crate) fn rank<K: Ord, V: Measure>(a: &(K, V), b: &(K, V)) -> std::cmp::Ordering {
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

    #[derive(Debug, Default, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
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

    #[test]
    fn small_table_has_the_bounded_table_guarantees() {
        let small = same_as_bounded(12, (0..100u32).map(|i| (i * 7 % 31, u64::from(i * 13 % 17))));
        assert!(small.evicted() > 0);
    }

    #[test]
    fn small_table_spills_past_64_entries_and_keeps_the_guarantees() {
        // The table spills at 64 entries, then compacts as a BoundedTable does.
        let small =
            same_as_bounded(150, (0..2000u32).map(|i| (i * 7 % 401, u64::from(i * 13 % 17))));
        assert!(small.big.is_some());
    }

    #[test]
    fn small_tables_round_trip_through_messagepack_with_working_lookups() {
        for n in [0u32, 1, 5, 100] {
            let mut t = SmallTable::<u32, W>::default();
            for k in 0..n {
                t.entry(k, 1000).absorb(&W(u64::from(k), 1));
            }
            let bytes = rmp_serde::to_vec(&t).unwrap();
            let mut back: SmallTable<u32, W> = rmp_serde::from_slice(&bytes).unwrap();
            assert_eq!(back.len(), t.len());
            for k in 0..n {
                back.entry(k, 1000).absorb(&W(1, 0));
            }
            assert_eq!(back.len(), t.len(), "existing keys are found after a restore (n = {n})");
        }
        // A declared length far beyond the input is refused, not reserved.
        let huge = [0x83, 0xa5, b'i', b't', b'e', b'm', b's', 0xdd, 0xff, 0xff, 0xff, 0xf0];
        assert!(rmp_serde::from_slice::<SmallTable<u32, W>>(&huge).is_err());
    }

    #[test]
    fn small_table_matches_the_bounded_table() {
        same_as_bounded(4, [(1, 10), (2, 1), (3, 30), (4, 2), (5, 7), (1, 3), (6, 1), (7, 9)]);
    }

    /// Feeds the same updates to a `BoundedTable` and a `SmallTable` of the same cap, asserts
    /// that they hold the same entries, evictions and bound, and returns the `SmallTable`.
    fn same_as_bounded(
        cap: usize,
        ops: impl IntoIterator<Item = (u32, u64)>,
    ) -> SmallTable<u32, W> {
        let mut big = BoundedTable::<u32, W>::new(cap);
        let mut small = SmallTable::<u32, W>::default();
        for (k, w) in ops {
            big.entry(k).absorb(&W(w, 1));
            small.entry(k, cap).absorb(&W(w, 1));
        }
        let mut a: Vec<_> = big.iter().map(|(k, v)| (*k, *v)).collect();
        let mut b: Vec<_> = small.iter().map(|(k, v)| (*k, *v)).collect();
        a.sort_by_key(|e| e.0);
        b.sort_by_key(|e| e.0);
        assert_eq!(a, b);
        assert_eq!((big.evicted(), big.error_bound()), (small.evicted(), small.error_bound()));
        small
    }

    proptest! {
        /// Checked against an exact model, the table reconciles with the totals, its weights are
        /// lower bounds within the error bound, it keeps the heavy hitters, and its size stays
        /// capped.
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
