//! This module turns a window's measures into the security signals its users watch for:
//! denied outbound connections, conversations accepted one way and rejected the other (a
//! network ACL, as security groups are stateful), and findings with their thresholds.
//!
//! The rules, with the thresholds of [`Thresholds`] (`[diagnosis]`, and flags):
//!
//! - `port_scan`: a remote source reached at least `scan_ports` distinct destination ports of
//!   this interface in the window (a listed source, or one of `rejected_sources`).
//! - `outbound_scan`: this interface's rejected egress reached at least `scan_hosts` distinct
//!   remote addresses, or at least `scan_ports` distinct remote ports.
//! - `denied_outbound`: at least `denied_flows` rejected egress flows to one (address, port,
//!   protocol) that the interface's history does not hold (`new`).
//! - `nacl_asymmetry`: a conversation accepted one way and only rejected the other way.
//! - `spike`: a listed source with a `spike_ratio` of at least `spike_ratio` on at least
//!   `spike_min_bytes` bytes.
//! - `sweep`, across interfaces: a source among the `rejected_sources` of at least
//!   `sweep_interfaces` interfaces in one window (a host scan no single interface can see),
//!   found on each of them. The closer adds it when a window first closes; a correction of the
//!   window (`--late update`) does not repeat it.

use std::collections::HashMap;
use std::net::IpAddr;

use serde::{Deserialize, Serialize};

pub use super::asymmetry::{AsymmetricFlow, asymmetric_flows};
use super::baseline::BaselineView;
use super::conversation::Conversation;
use super::diagnosis::RejectedSourceSnapshot;
use super::pane::Traffic;
use super::snapshot::{SourceSnapshot, WindowPanes};

/// Entries `denied_outbound` and `asymmetric_flows` list at most.
pub const LISTED: usize = 15;

/// Sources, by rejected flows, whose flows `asymmetric_flows` reads.
pub const INGRESS_SEEDS: usize = 16;
/// Denied (address, port, protocol) groups, by flows, whose conversations `asymmetric_flows`
/// reads (a bound on its work under an outbound scan).
pub const EGRESS_SEEDS: usize = 64;

// `denied_outbound` lists the first groups, which `EgressRejects` ranks only that far.
const _: () = assert!(LISTED <= EGRESS_SEEDS);

pub(super) type Map<K, V> = HashMap<K, V, foldhash::fast::RandomState>;

/// The thresholds findings are raised at.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Thresholds {
    pub scan_ports: u64,
    pub scan_hosts: u64,
    pub denied_flows: u64,
    pub spike_ratio: f64,
    pub spike_min_bytes: u64,
    pub sweep_interfaces: u64,
}

impl Default for Thresholds {
    fn default() -> Self {
        Thresholds {
            scan_ports: 100,
            scan_hosts: 50,
            denied_flows: 10,
            spike_ratio: 5.0,
            spike_min_bytes: 10_000_000,
            sweep_interfaces: 10,
        }
    }
}

/// The (remote address, remote port, protocol) a denied outbound entry groups by.
pub type DeniedKey = (Option<IpAddr>, Option<u16>, Option<u8>);

/// Rejected egress to one destination, port and protocol.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeniedOutbound {
    pub address: Option<IpAddr>,
    pub port: Option<u16>,
    pub protocol: Option<u8>,
    pub flows: u64,
    pub packets: u64,
    pub bytes: u64,
    /// Not seen rejected from this interface in the baseline history.
    pub new: bool,
}

/// One finding of a window.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Finding {
    /// `port_scan`, `outbound_scan`, `denied_outbound`, `nacl_asymmetry` or `spike`.
    #[serde(deserialize_with = "super::names::finding_kind")]
    pub kind: super::names::Name,
    /// What the finding is about: a source address, a destination, a conversation or the
    /// interface.
    pub subject: String,
    pub value: f64,
    pub threshold: f64,
    pub detail: String,
}

/// A finding with the window and interface it was found in: what the findings API lists and
/// the webhook posts.
#[derive(Debug, Clone, Serialize)]
pub struct WindowFinding {
    pub window_start: u64,
    pub window_end: u64,
    pub interface_id: std::sync::Arc<str>,
    pub account_id: Option<std::sync::Arc<str>>,
    pub region: Option<std::sync::Arc<str>>,
    #[serde(flatten)]
    pub finding: Finding,
}

impl WindowFinding {
    /// `finding` of the snapshot `s`.
    pub fn of(s: &super::Snapshot, finding: &Finding) -> WindowFinding {
        WindowFinding {
            window_start: s.window_start,
            window_end: s.window_end,
            interface_id: s.interface_id.clone(),
            account_id: s.account_id.clone(),
            region: s.region.clone(),
            finding: finding.clone(),
        }
    }
}

/// A window's rejected egress grouped by (address, port, protocol), the first
/// [`EGRESS_SEEDS`] groups ranked by flows (then packets, then the key).
pub struct EgressRejects {
    /// Every group; the first `min(len, EGRESS_SEEDS)` in rank order, the rest in any order.
    groups: Vec<(DeniedKey, Traffic)>,
}

impl EgressRejects {
    pub fn of(window: &WindowPanes) -> EgressRejects {
        let kept: usize = window.panes.iter().map(|p| p.egress.rejected.len()).max().unwrap_or(0);
        let mut groups: Map<DeniedKey, Traffic> =
            Map::with_capacity_and_hasher(kept, Default::default());
        for pane in &window.panes {
            for (c, t) in pane.egress.rejected.iter() {
                let g = groups.entry(denied_key(c)).or_default();
                *g = add(*g, t);
            }
        }
        let mut groups: Vec<(DeniedKey, Traffic)> = groups.into_iter().collect();
        let rank = |a: &(DeniedKey, Traffic), b: &(DeniedKey, Traffic)| {
            (b.1.flows, b.1.packets, a.0).cmp(&(a.1.flows, a.1.packets, b.0))
        };
        if groups.len() > EGRESS_SEEDS {
            groups.select_nth_unstable_by(EGRESS_SEEDS - 1, rank);
        }
        let ranked = groups.len().min(EGRESS_SEEDS);
        groups[..ranked].sort_unstable_by(rank);
        EgressRejects { groups }
    }

    /// The ranked groups, whose conversations `asymmetric_flows` looks up the reverse of.
    pub(super) fn ranked(&self) -> &[(DeniedKey, Traffic)] {
        &self.groups[..self.groups.len().min(EGRESS_SEEDS)]
    }

    /// The top [`LISTED`] groups, each `new` unless `seen`, and the distinct counts.
    pub fn denied_outbound(
        &self,
        seen: impl Fn(&DeniedKey) -> bool,
    ) -> (Vec<DeniedOutbound>, DeniedCounts) {
        let counts = DeniedCounts {
            addresses: distinct(self.groups.iter().filter_map(|(k, _)| k.0)),
            ports: distinct(self.groups.iter().filter_map(|(k, _)| k.1)),
        };
        let listed = self
            .groups
            .iter()
            .take(LISTED)
            .map(|(key, t)| DeniedOutbound {
                address: key.0,
                port: key.1,
                protocol: key.2,
                flows: t.flows,
                packets: t.packets,
                bytes: t.bytes,
                new: !seen(key),
            })
            .collect();
        (listed, counts)
    }
}

fn denied_key(c: &Conversation) -> DeniedKey {
    (c.remote_address, c.remote_port, c.protocol)
}

/// Distinct remote addresses and ports of the window's rejected egress.
#[derive(Debug, Clone, Copy, Default)]
pub struct DeniedCounts {
    pub addresses: u64,
    pub ports: u64,
}

fn distinct<T: Ord>(values: impl Iterator<Item = T>) -> u64 {
    let mut v: Vec<T> = values.collect();
    v.sort_unstable();
    v.dedup();
    v.len() as u64
}

pub(super) fn add(a: Traffic, b: &Traffic) -> Traffic {
    use super::table::Measure;
    let mut sum = a;
    sum.absorb(b);
    sum
}

/// What a window's findings are read from.
pub struct FindingInputs<'a> {
    pub sources: &'a [SourceSnapshot],
    pub rejected_sources: &'a [RejectedSourceSnapshot],
    pub denied_outbound: &'a [DeniedOutbound],
    pub denied_counts: DeniedCounts,
    pub asymmetric_flows: &'a [AsymmetricFlow],
    pub interface_id: &'a str,
}

/// The window's findings, by kind (in the order of the module's rules), then subject.
pub fn findings(inputs: &FindingInputs, th: &Thresholds) -> Vec<Finding> {
    let mut out = Vec::new();
    let finding = |kind, subject: String, value: f64, threshold: f64, detail: String| Finding {
        kind,
        subject,
        value,
        threshold,
        detail,
    };
    let mut scanners: Vec<(IpAddr, u64, u64)> = Vec::new();
    let listed =
        inputs.sources.iter().map(|s| (s.address, s.distinct_destination_ports, s.rejected_flows));
    let rejected = inputs
        .rejected_sources
        .iter()
        .map(|s| (s.address, s.distinct_destination_ports, s.rejected_flows));
    for (address, ports, rejected_flows) in listed.chain(rejected) {
        if ports >= th.scan_ports && !scanners.iter().any(|s| s.0 == address) {
            scanners.push((address, ports, rejected_flows));
        }
    }
    scanners.sort_by_key(|s| s.0);
    for (address, ports, rejected_flows) in scanners {
        let detail = format!(
            "{address} reached {ports} ports of the interface ({rejected_flows} rejected flows)"
        );
        out.push(finding(
            "port_scan",
            address.to_string(),
            ports as f64,
            th.scan_ports as f64,
            detail,
        ));
    }
    let id = inputs.interface_id;
    let c = inputs.denied_counts;
    if c.addresses >= th.scan_hosts {
        let detail = format!("{id} was denied connecting out to {} addresses", c.addresses);
        out.push(finding(
            "outbound_scan",
            id.to_string(),
            c.addresses as f64,
            th.scan_hosts as f64,
            detail,
        ));
    } else if c.ports >= th.scan_ports {
        let detail = format!("{id} was denied connecting out to {} ports", c.ports);
        out.push(finding(
            "outbound_scan",
            id.to_string(),
            c.ports as f64,
            th.scan_ports as f64,
            detail,
        ));
    }
    for d in inputs.denied_outbound.iter().filter(|d| d.new && d.flows >= th.denied_flows) {
        let subject = endpoint(d.address, d.port, d.protocol);
        let detail = format!("{} denied outbound flows to {subject}, not denied before", d.flows);
        out.push(finding(
            "denied_outbound",
            subject,
            d.flows as f64,
            th.denied_flows as f64,
            detail,
        ));
    }
    for a in inputs.asymmetric_flows.iter().filter(|a| a.likely_cause == "nacl") {
        let subject = format!(
            "{} <-> {}",
            endpoint(a.local_address, a.local_port, None),
            endpoint(a.remote_address, a.remote_port, a.protocol)
        );
        let detail = format!(
            "ingress {}, egress {}: a network ACL, as a security group would let the reply through",
            a.ingress_action, a.egress_action
        );
        out.push(finding("nacl_asymmetry", subject, a.rejected_flows as f64, 1.0, detail));
    }
    for s in inputs.sources {
        if let Some(ratio) = s.spike_ratio
            && ratio >= th.spike_ratio
            && s.bytes >= th.spike_min_bytes
        {
            let detail =
                format!("{} sent {} bytes, {ratio:.1} times its baseline", s.address, s.bytes);
            out.push(finding("spike", s.address.to_string(), ratio, th.spike_ratio, detail));
        }
    }
    out
}

/// Every kind of finding, in the order findings are listed.
pub const KINDS: [&str; 6] =
    ["port_scan", "outbound_scan", "denied_outbound", "nacl_asymmetry", "spike", "sweep"];

/// Adds `sweep` findings to the snapshots of one closing window (every interface's): a source
/// in the `rejected_sources` of at least `threshold` of them is found on each.
pub fn add_sweeps(snapshots: &mut [super::Snapshot], threshold: u64) {
    let mut interfaces: Map<IpAddr, u64> = Map::default();
    for s in snapshots.iter() {
        for r in &s.rejected_sources {
            *interfaces.entry(r.address).or_default() += 1;
        }
    }
    interfaces.retain(|_, n| *n >= threshold.max(1));
    if interfaces.is_empty() {
        return;
    }
    for s in snapshots.iter_mut() {
        let mut sweepers: Vec<(IpAddr, u64)> = s
            .rejected_sources
            .iter()
            .filter_map(|r| interfaces.get(&r.address).map(|n| (r.address, *n)))
            .collect();
        if sweepers.is_empty() {
            continue;
        }
        sweepers.sort_unstable();
        for (address, n) in sweepers {
            s.findings.push(Finding {
                kind: "sweep",
                subject: address.to_string(),
                value: n as f64,
                threshold: threshold as f64,
                detail: format!("{address} was rejected on {n} interfaces in the window"),
            });
        }
        s.finding_counts = counts(&s.findings);
    }
}

/// How many of `findings` there are of each kind, every kind listed.
pub fn counts(findings: &[Finding]) -> Vec<(&'static str, u64)> {
    KINDS
        .iter()
        .map(|kind| (*kind, findings.iter().filter(|f| f.kind == *kind).count() as u64))
        .collect()
}

/// `address:port/protocol`, with `-` for what a record lacks.
fn endpoint(address: Option<IpAddr>, port: Option<u16>, protocol: Option<u8>) -> String {
    let address = address.map_or("-".to_string(), |a| a.to_string());
    let port = port.map_or("-".to_string(), |p| p.to_string());
    match protocol {
        Some(p) => format!("{address}:{port}/{p}"),
        None => format!("{address}:{port}"),
    }
}

/// Whether `key` was denied from the interface in the history the baseline covers.
pub fn seen_in(baseline: Option<&BaselineView>, key: &DeniedKey) -> bool {
    baseline.is_some_and(|b| b.denied_before(key))
}
