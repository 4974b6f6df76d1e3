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

use std::collections::HashMap;
use std::net::IpAddr;

use serde::{Deserialize, Serialize};

use super::baseline::BaselineView;
use super::conversation::Conversation;
use super::diagnosis::{RejectedSourceSnapshot, entries_of};
use super::pane::Traffic;
use super::snapshot::{SourceSnapshot, WindowPanes};
use crate::decode::Action;

/// Entries `denied_outbound` and `asymmetric_flows` list at most.
pub const LISTED: usize = 15;

/// The thresholds findings are raised at.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Thresholds {
    pub scan_ports: u64,
    pub scan_hosts: u64,
    pub denied_flows: u64,
    pub spike_ratio: f64,
    pub spike_min_bytes: u64,
}

impl Default for Thresholds {
    fn default() -> Self {
        Thresholds {
            scan_ports: 100,
            scan_hosts: 50,
            denied_flows: 10,
            spike_ratio: 5.0,
            spike_min_bytes: 10_000_000,
        }
    }
}

/// The (remote address, remote port, protocol) a denied outbound entry groups by.
pub type DeniedKey = (Option<IpAddr>, Option<u16>, Option<u8>);

/// Rejected egress to one destination, port and protocol.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
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

/// A conversation with different actions in its two directions.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AsymmetricFlow {
    pub local_address: Option<IpAddr>,
    pub local_port: Option<u16>,
    pub remote_address: Option<IpAddr>,
    pub remote_port: Option<u16>,
    pub protocol: Option<u8>,
    /// `ACCEPT`, `REJECT`, `ACCEPT+REJECT` (both in the window) or `-` (not seen).
    pub ingress_action: &'static str,
    pub egress_action: &'static str,
    /// `nacl` when one direction was only accepted and the other only rejected: a stateful
    /// security group would have let the reply through. Otherwise `sg_or_nacl`.
    pub likely_cause: &'static str,
    pub rejected_flows: u64,
}

/// One finding of a window.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Finding {
    /// `port_scan`, `outbound_scan`, `denied_outbound`, `nacl_asymmetry` or `spike`.
    pub kind: &'static str,
    /// What the finding is about: a source address, a destination, a conversation or the
    /// interface.
    pub subject: String,
    pub value: f64,
    pub threshold: f64,
    pub detail: String,
}

/// The rejected egress of the window grouped by (address, port, protocol), ranked by flows
/// (then packets, then the key), with whether each is new against `seen`.
pub fn denied_outbound(
    window: &WindowPanes,
    seen: impl Fn(&DeniedKey) -> bool,
) -> (Vec<DeniedOutbound>, DeniedCounts) {
    let mut groups: HashMap<DeniedKey, Traffic> = HashMap::new();
    for pane in &window.panes {
        for (c, t) in pane.egress.rejected.iter() {
            let g = groups.entry((c.remote_address, c.remote_port, c.protocol)).or_default();
            *g = add(*g, t);
        }
    }
    let counts = DeniedCounts {
        addresses: distinct(groups.keys().filter_map(|k| k.0)),
        ports: distinct(groups.keys().filter_map(|k| k.1)),
    };
    let mut all: Vec<(DeniedKey, Traffic)> = groups.into_iter().collect();
    all.sort_by(|a, b| (b.1.flows, b.1.packets, a.0).cmp(&(a.1.flows, a.1.packets, b.0)));
    all.truncate(LISTED);
    let listed = all
        .into_iter()
        .map(|(key, t)| DeniedOutbound {
            address: key.0,
            port: key.1,
            protocol: key.2,
            flows: t.flows,
            packets: t.packets,
            bytes: t.bytes,
            new: !seen(&key),
        })
        .collect();
    (listed, counts)
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

fn add(a: Traffic, b: &Traffic) -> Traffic {
    use super::table::Measure;
    let mut sum = a;
    sum.absorb(b);
    sum
}

/// Flows of one conversation by direction and action.
#[derive(Debug, Clone, Copy, Default)]
struct Actions {
    ingress_accepted: u64,
    ingress_rejected: u64,
    egress_accepted: bool,
    egress_rejected: u64,
}

/// Conversations accepted one way and rejected the other, ranked by rejected flows (then the
/// conversation), at most [`LISTED`].
pub fn asymmetric_flows(
    window: &WindowPanes,
    sources: &[(IpAddr, Traffic)],
) -> Vec<AsymmetricFlow> {
    let mut conversations: HashMap<Conversation, Actions> = HashMap::new();
    for pane in &window.panes {
        for (c, t) in pane.egress.rejected.iter() {
            conversations.entry(*c).or_default().egress_rejected += t.flows;
        }
    }
    // Ingress flows live in their sources' tables: those of sources with rejects, or that an
    // egress reject went to, can take part. Accepted ones count only for a conversation that
    // has a reject, which is known once every flow has been read.
    let remotes: std::collections::HashSet<IpAddr> =
        conversations.keys().filter_map(|c| c.remote_address).collect();
    let mut accepted_in: HashMap<Conversation, u64> = HashMap::new();
    for (address, t) in sources {
        if t.rejected_flows == 0 && !remotes.contains(address) {
            continue;
        }
        for entry in entries_of(address, window).entries {
            for (key, counters) in entry.flows() {
                let c = Conversation {
                    local_address: key.dstaddr,
                    local_port: key.dstport,
                    remote_address: Some(*address),
                    remote_port: key.srcport,
                    protocol: key.protocol,
                };
                match key.action {
                    Some(Action::Reject) => {
                        conversations.entry(c).or_default().ingress_rejected += counters.flows
                    }
                    Some(Action::Accept) => *accepted_in.entry(c).or_default() += counters.flows,
                    None => {}
                }
            }
        }
    }
    let mut found: Vec<AsymmetricFlow> = Vec::new();
    for (c, mut a) in conversations {
        a.ingress_accepted = accepted_in.get(&c).copied().unwrap_or(0);
        a.egress_accepted = window.panes.iter().any(|p| p.egress.accepted(&c));
        let one_way = a.ingress_accepted > 0 && a.egress_rejected > 0;
        let other_way = a.egress_accepted && a.ingress_rejected > 0;
        if one_way || other_way {
            found.push(asymmetric(c, a));
        }
    }
    found.sort_by(|x, y| y.rejected_flows.cmp(&x.rejected_flows).then_with(|| key(x).cmp(&key(y))));
    found.truncate(LISTED);
    found
}

fn key(f: &AsymmetricFlow) -> Conversation {
    Conversation {
        local_address: f.local_address,
        local_port: f.local_port,
        remote_address: f.remote_address,
        remote_port: f.remote_port,
        protocol: f.protocol,
    }
}

fn asymmetric(c: Conversation, a: Actions) -> AsymmetricFlow {
    let name = |accepted: bool, rejected: bool| match (accepted, rejected) {
        (true, true) => "ACCEPT+REJECT",
        (true, false) => "ACCEPT",
        (false, true) => "REJECT",
        (false, false) => "-",
    };
    let ingress = name(a.ingress_accepted > 0, a.ingress_rejected > 0);
    let egress = name(a.egress_accepted, a.egress_rejected > 0);
    let nacl = matches!((ingress, egress), ("ACCEPT", "REJECT") | ("REJECT", "ACCEPT"));
    AsymmetricFlow {
        local_address: c.local_address,
        local_port: c.local_port,
        remote_address: c.remote_address,
        remote_port: c.remote_port,
        protocol: c.protocol,
        ingress_action: ingress,
        egress_action: egress,
        likely_cause: if nacl { "nacl" } else { "sg_or_nacl" },
        rejected_flows: a.ingress_rejected.saturating_add(a.egress_rejected),
    }
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
