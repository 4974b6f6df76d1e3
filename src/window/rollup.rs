//! Roll-ups of one closed window: its interfaces' snapshots summed by region, account, VPC or
//! subnet. A roll-up's totals are the exact sums of the snapshots of the interfaces it lists;
//! an interface whose records carry no value for the kind (no `vpc-id`, say) is in no roll-up
//! of that kind. Its top sources are the sum of its interfaces' *listed* sources, so a source
//! listed on none of them is missing, and a source's bytes are a lower bound where it was not
//! listed on every interface.

use std::borrow::Borrow;
use std::collections::BTreeMap;
use std::net::IpAddr;
use std::sync::Arc;

use serde::Serialize;

use super::Snapshot;

/// What a roll-up groups by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RollupKind {
    Region,
    Account,
    Vpc,
    Subnet,
}

impl RollupKind {
    pub const ALL: [RollupKind; 4] =
        [RollupKind::Region, RollupKind::Account, RollupKind::Vpc, RollupKind::Subnet];

    /// The kind named in `/api/v1/rollups/{kind}`.
    pub fn parse(name: &str) -> Option<RollupKind> {
        RollupKind::ALL.into_iter().find(|k| k.as_str() == name)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            RollupKind::Region => "region",
            RollupKind::Account => "account",
            RollupKind::Vpc => "vpc",
            RollupKind::Subnet => "subnet",
        }
    }

    /// The snapshot's value for this kind.
    pub fn of(self, s: &Snapshot) -> Option<&Arc<str>> {
        match self {
            RollupKind::Region => s.region.as_ref(),
            RollupKind::Account => s.account_id.as_ref(),
            RollupKind::Vpc => s.vpc_id.as_ref(),
            RollupKind::Subnet => s.subnet_id.as_ref(),
        }
    }
}

/// Sources a roll-up lists.
pub const ROLLUP_SOURCES: usize = 15;

/// The totals of one interface's snapshot, as a roll-up adds them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct RollupTotals {
    pub interfaces: u64,
    pub packets: u64,
    pub bytes: u64,
    pub flows: u64,
    pub rejected_flows: u64,
    pub rejected_bytes: u64,
    pub ingress_bytes: u64,
    pub egress_bytes: u64,
}

impl RollupTotals {
    fn of(s: &Snapshot) -> RollupTotals {
        RollupTotals {
            interfaces: 1,
            packets: s.packets,
            bytes: s.bytes,
            flows: s.flows,
            rejected_flows: s.rejected_flows,
            rejected_bytes: s.rejected_bytes,
            ingress_bytes: s.ingress.bytes,
            egress_bytes: s.egress.bytes,
        }
    }

    fn add(&mut self, o: &RollupTotals) {
        let fields = [
            (&mut self.interfaces, o.interfaces),
            (&mut self.packets, o.packets),
            (&mut self.bytes, o.bytes),
            (&mut self.flows, o.flows),
            (&mut self.rejected_flows, o.rejected_flows),
            (&mut self.rejected_bytes, o.rejected_bytes),
            (&mut self.ingress_bytes, o.ingress_bytes),
            (&mut self.egress_bytes, o.egress_bytes),
        ];
        for (sum, v) in fields {
            *sum = sum.saturating_add(v);
        }
    }
}

/// One source of a roll-up: its bytes and flows summed over the interfaces that list it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RollupSource {
    pub address: IpAddr,
    pub bytes: u64,
    pub flows: u64,
    pub interfaces: u64,
}

/// One roll-up of a window.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Rollup {
    pub kind: RollupKind,
    pub id: Arc<str>,
    pub window_start: u64,
    pub window_end: u64,
    #[serde(flatten)]
    pub totals: RollupTotals,
    pub top_sources: Vec<RollupSource>,
    /// Its interfaces, by bytes (then id).
    pub interface_ids: Vec<Arc<str>>,
}

/// The roll-ups of `kind` over `snapshots` (one window's, one per interface), by bytes, then id.
pub fn rollups<S: Borrow<Snapshot>>(kind: RollupKind, snapshots: &[S]) -> Vec<Rollup> {
    let mut groups: BTreeMap<Arc<str>, Vec<&Snapshot>> = BTreeMap::new();
    for s in snapshots.iter().map(Borrow::borrow) {
        if let Some(id) = kind.of(s) {
            groups.entry(id.clone()).or_default().push(s);
        }
    }
    let mut out: Vec<Rollup> = groups
        .into_iter()
        .map(|(id, mut members)| {
            let mut totals = RollupTotals::default();
            let mut sources: BTreeMap<IpAddr, RollupSource> = BTreeMap::new();
            for s in &members {
                totals.add(&RollupTotals::of(s));
                for src in &s.sources {
                    let e = sources.entry(src.address).or_insert(RollupSource {
                        address: src.address,
                        bytes: 0,
                        flows: 0,
                        interfaces: 0,
                    });
                    e.bytes = e.bytes.saturating_add(src.bytes);
                    e.flows = e.flows.saturating_add(src.flows);
                    e.interfaces += 1;
                }
            }
            let mut top_sources: Vec<RollupSource> = sources.into_values().collect();
            top_sources.sort_by(|a, b| b.bytes.cmp(&a.bytes).then(a.address.cmp(&b.address)));
            top_sources.truncate(ROLLUP_SOURCES);
            members.sort_by(|a, b| b.bytes.cmp(&a.bytes).then(a.interface_id.cmp(&b.interface_id)));
            let first = members[0];
            Rollup {
                kind,
                id,
                window_start: first.window_start,
                window_end: first.window_end,
                totals,
                top_sources,
                interface_ids: members.iter().map(|s| s.interface_id.clone()).collect(),
            }
        })
        .collect();
    out.sort_by(|a, b| b.totals.bytes.cmp(&a.totals.bytes).then(a.id.cmp(&b.id)));
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::{RouteFields, RouteInput, RouteLabels};
    use crate::window::{Engine, EngineConfig, WindowSpec};
    use proptest::prelude::*;
    use std::time::Duration;

    /// Runs the real engine over `records` — (interface, source, bytes) — where interface `i`
    /// is in region `regions[i]`, account `accounts[i]`, VPC `vpcs[i]` (none when 0) and a
    /// subnet of its own VPC; returns the first window's snapshots.
    fn snapshots(records: &[(usize, u8, u64)], place: &[(u8, u8, u8)]) -> Vec<Arc<Snapshot>> {
        let mut config = EngineConfig::new(
            WindowSpec::new(Duration::from_secs(60), Duration::from_secs(60)).unwrap(),
        );
        config.lateness_secs = 0;
        config.shards = 2;
        // Every record's source is listed, so that roll-ups have sources to sum.
        config.direction.mode = crate::window::direction::DirectionMode::Off;
        let (mut router, mut rx, join) = Engine::start(config).into_parts();
        let names: Vec<[String; 4]> = place
            .iter()
            .map(|&(r, a, v)| {
                [
                    format!("region-{r}"),
                    format!("{a:012}"),
                    format!("vpc-{v}"),
                    format!("subnet-{v}-{r}"),
                ]
            })
            .collect();
        for &(iface, source, bytes) in records {
            let [region, account, vpc, subnet] = &names[iface];
            let interface = format!("eni-{iface}");
            let labeled = place[iface].2 != 0;
            let input = RouteInput {
                interface: Some(&interface),
                account: Some(account),
                region: Some(region),
                fields: RouteFields {
                    start: Some(1_700_000_040),
                    end: Some(1_700_000_050),
                    srcaddr: Some(IpAddr::from([198, 51, 100, source])),
                    dstaddr: Some(IpAddr::from([10, 0, 0, 1])),
                    bytes: Some(bytes),
                    packets: Some(1),
                    ..RouteFields::default()
                },
                labels: RouteLabels {
                    vpc_id: labeled.then_some(vpc.as_str()),
                    subnet_id: labeled.then_some(subnet.as_str()),
                    ..RouteLabels::default()
                },
            };
            router.push_input(&input, 0).unwrap();
        }
        router.finish();
        let mut out = Vec::new();
        while let Some(batch) = rx.blocking_recv() {
            out.extend(batch.into_iter().map(Arc::new));
        }
        join.join();
        out
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(24))]

        /// Every roll-up's totals are the sums of the interfaces it lists, each interface with
        /// a value is in exactly one roll-up of each kind, and one without is in none.
        #[test]
        fn rollups_are_the_sums_of_their_interfaces(
            place in proptest::collection::vec((0u8..3, 0u8..2, 0u8..3), 1..8),
            records in proptest::collection::vec((0usize..8, 0u8..20, 1u64..10_000), 1..200),
        ) {
            let records: Vec<_> = records.into_iter().map(|(i, s, b)| (i % place.len(), s, b)).collect();
            let snapshots = snapshots(&records, &place);
            let by_id: BTreeMap<&str, &Snapshot> =
                snapshots.iter().map(|s| (&*s.interface_id, &**s)).collect();
            prop_assert!(!snapshots.is_empty());
            prop_assert_eq!(by_id.len(), snapshots.len(), "one window");
            let labeled = place.iter().any(|p| p.2 != 0) && records.iter().any(|r| place[r.0].2 != 0);
            prop_assert_eq!(snapshots.iter().any(|s| s.vpc_id.is_some()), labeled);
            for kind in RollupKind::ALL {
                let rolled = rollups(kind, &snapshots);
                let mut seen = 0;
                for r in &rolled {
                    let mut sum = RollupTotals::default();
                    for id in &r.interface_ids {
                        let s = by_id[&**id];
                        prop_assert_eq!(kind.of(s), Some(&r.id));
                        sum.add(&RollupTotals::of(s));
                    }
                    prop_assert_eq!(sum, r.totals);
                    seen += r.interface_ids.len();
                    // Each listed source's bytes are its sum over the interfaces listing it.
                    for src in &r.top_sources {
                        let listed: u64 = r
                            .interface_ids
                            .iter()
                            .flat_map(|id| &by_id[&**id].sources)
                            .filter(|x| x.address == src.address)
                            .map(|x| x.bytes)
                            .sum();
                        prop_assert_eq!(listed, src.bytes);
                    }
                    prop_assert!(!r.top_sources.is_empty() || sum.bytes == 0);
                }
                let with_value = snapshots.iter().filter(|s| kind.of(s).is_some()).count();
                prop_assert_eq!(seen, with_value);
                let bytes: Vec<u64> = rolled.iter().map(|r| r.totals.bytes).collect();
                prop_assert!(bytes.windows(2).all(|w| w[0] >= w[1]), "by bytes");
            }
        }
    }
}
