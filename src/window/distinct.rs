//! This module counts a source's distinct destination ports and addresses past what its flow
//! tables hold exactly.
//!
//! A source's flows in a pane are exact up to `--max-flows`; a port scan has many more. A
//! source whose flow table is about to evict therefore starts two HyperLogLog++ sketches
//! ([`cardinality_estimator`], Cloudflare's), seeded with the flows the table holds and fed each
//! flow it takes in after: exact in all but name for up to 2 items (kept inline, no heap) and
//! nearly so up to 128 (an array of 32-bit hash codes), then 2^10 six-bit registers (768
//! bytes), whose standard error is 1.04 / √1024 ≈ 3.3 %. A snapshot counts from the flow keys
//! when none was evicted, and from the merged sketches (marked `distinct_approximate`)
//! otherwise.

use std::net::IpAddr;

use cardinality_estimator::CardinalityEstimator;
use serde::{Deserialize, Serialize};
use smallvec::SmallVec;

use super::pane::FlowKey;

/// The sketch's precision: 2^10 registers.
const PRECISION: usize = 10;
/// Bits per register (the crate's default).
const REGISTER_BITS: usize = 6;

/// A sketch of distinct values. WyHash is the crate's default hasher: fixed-seeded, so that
/// estimates are the same on every run for the same input.
pub type Sketch<T> = CardinalityEstimator<T, wyhash::WyHash, PRECISION, REGISTER_BITS>;

/// The distinct destination ports and addresses of a source's flows in one pane.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct DistinctDestinations {
    pub ports: Sketch<u16>,
    pub addresses: Sketch<IpAddr>,
}

impl DistinctDestinations {
    /// Adds a flow's destination port and address (those it has).
    #[inline]
    pub fn insert(&mut self, key: &FlowKey) {
        if let Some(port) = key.dstport {
            self.ports.insert(&port);
        }
        if let Some(address) = key.dstaddr {
            self.addresses.insert(&address);
        }
    }

    /// Adds everything `other` counted.
    pub fn merge(&mut self, other: &DistinctDestinations) {
        self.ports.merge(&other.ports);
        self.addresses.merge(&other.addresses);
    }
}

/// A source's distinct destinations over a window.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DistinctCounts {
    pub ports: u64,
    pub addresses: u64,
    /// Whether the counts are sketch estimates rather than exact.
    pub approximate: bool,
}

/// The distinct destination ports and addresses of `flows` (every flow of a source that no
/// table evicted), counted exactly.
pub fn exact_counts(flows: impl Iterator<Item = FlowKey>) -> DistinctCounts {
    // A listed source mostly has a handful of flows: inline buffers, deduplicated at the end.
    let mut ports: SmallVec<[u16; 16]> = SmallVec::new();
    let mut addresses: SmallVec<[IpAddr; 8]> = SmallVec::new();
    for key in flows {
        ports.extend(key.dstport);
        addresses.extend(key.dstaddr);
    }
    ports.sort_unstable();
    ports.dedup();
    addresses.sort_unstable();
    addresses.dedup();
    DistinctCounts {
        ports: ports.len() as u64,
        addresses: addresses.len() as u64,
        approximate: false,
    }
}

/// Estimates from a window's merged sketches.
pub fn estimated_counts(merged: &DistinctDestinations) -> DistinctCounts {
    DistinctCounts {
        ports: merged.ports.estimate() as u64,
        addresses: merged.addresses.estimate() as u64,
        approximate: true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(port: u16, address: u32) -> FlowKey {
        FlowKey {
            dstport: Some(port),
            dstaddr: Some(IpAddr::V4(std::net::Ipv4Addr::from_bits(address))),
            ..FlowKey::default()
        }
    }

    #[test]
    fn exact_counts_ignore_repeats_and_missing_fields() {
        let keys = [key(80, 1), key(80, 2), key(443, 1), FlowKey::default()];
        let counts = exact_counts(keys.into_iter());
        assert_eq!(counts, DistinctCounts { ports: 2, addresses: 2, approximate: false });
    }

    /// The sketch's error stays within four standard errors (4 × 3.3 %) across sizes, and a
    /// merge of two halves counts what one sketch of everything counts.
    #[test]
    fn sketches_estimate_within_their_stated_error_and_merge() {
        for n in [1u16, 2, 3, 100, 128, 129, 1_000, 20_000, 65_535] {
            let mut whole = DistinctDestinations::default();
            let mut low = DistinctDestinations::default();
            let mut high = DistinctDestinations::default();
            for port in 0..n {
                let k = key(port, u32::from(port) * 7);
                whole.insert(&k);
                if port % 2 == 0 { low.insert(&k) } else { high.insert(&k) }
            }
            low.merge(&high);
            let got = estimated_counts(&whole);
            assert_eq!(estimated_counts(&low), got, "n = {n}");
            let error = (got.ports as f64 - f64::from(n)).abs() / f64::from(n);
            assert!(error <= 4.0 * 0.033, "n = {n}: estimated {} ports", got.ports);
            let error = (got.addresses as f64 - f64::from(n)).abs() / f64::from(n);
            assert!(error <= 4.0 * 0.033, "n = {n}: estimated {} addresses", got.addresses);
        }
    }
}
