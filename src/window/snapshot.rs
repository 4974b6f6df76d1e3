//! A snapshot is what one closed window says about one interface.
//!
//! A snapshot is built by summing the window's panes. The lists are ranked by bytes (ties go to
//! more packets, then to the smaller address or flow) and cut to the configured top-N, and the
//! rest goes into `other_…` so that each list plus its remainder reconciles exactly with the
//! interface totals.

use std::net::IpAddr;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::baseline::BaselineView;
use super::diagnosis::{self, DestinationOfSource, Detail, RejectedSourceSnapshot, SourceDetail};
use super::direction::{Bases, Direction};
use super::findings::{self, AsymmetricFlow, DeniedOutbound, Finding, Thresholds};
use super::merge::{PRUNE_FROM, sum_by_key, top_n, window_flow_candidates};
use super::pane::{DirectionTotals, Pane, ProtocolTraffic, RecordCounts, SourceEntry, Traffic};
use super::table::{Measure, rank};
use crate::decode::Action;

/// How many entries each list keeps.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct TopN {
    pub sources: usize,
    pub destinations: usize,
    pub flows: usize,
    /// Destinations listed per listed source.
    pub source_destinations: usize,
    /// Sources listed by rejected flows.
    pub rejected_sources: usize,
}

impl Default for TopN {
    fn default() -> Self {
        TopN {
            sources: 15,
            destinations: 15,
            flows: 10,
            source_destinations: 5,
            rejected_sources: 15,
        }
    }
}

/// What a snapshot is built with beyond its panes: the list lengths, how much per-source detail
/// to give, and the interface's baseline for the window.
#[derive(Debug, Clone, Copy)]
pub struct BuildOptions<'a> {
    pub top: &'a TopN,
    pub detail: Detail,
    pub thresholds: &'a Thresholds,
    pub baseline: Option<&'a BaselineView<'a>>,
}

/// The panes of one interface inside one window, oldest first.
#[derive(Debug, Clone, Default)]
pub struct WindowPanes<'a> {
    /// The panes that hold data.
    pub panes: Vec<&'a Pane>,
    /// Each one's position in the window (0 for the window's first pane).
    pub positions: Vec<usize>,
    /// The window's length in panes.
    pub len: usize,
}

impl<'a> WindowPanes<'a> {
    /// A window of one pane.
    pub fn single(pane: &'a Pane) -> WindowPanes<'a> {
        WindowPanes { panes: vec![pane], positions: vec![0], len: 1 }
    }
}

/// One interface in one closed window.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Snapshot {
    pub window_start: u64,
    pub window_end: u64,
    pub interface_id: Arc<str>,
    pub account_id: Option<Arc<str>>,
    pub region: Option<Arc<str>>,
    /// The interface's VPC, subnet, instance and availability zone (`vpc-id`, `subnet-id`,
    /// `instance-id`, `az-id`): each from the window's oldest pane whose records carry it (see
    /// `window::engine::labels`); absent from the JSON when
    /// they carry none.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub vpc_id: Option<Arc<str>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub subnet_id: Option<Arc<str>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub instance_id: Option<Arc<str>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub az_id: Option<Arc<str>>,
    /// The interface's `Name` tag, type and description as EC2 describes them
    /// (`[enrich.ec2]`, see [`super::inventory::InterfaceInfo`]); absent without them.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<Arc<str>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub interface_type: Option<Arc<str>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub description: Option<Arc<str>>,
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
    #[serde(deserialize_with = "super::names::basis")]
    pub direction_basis: super::names::Name,
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
    /// The sources with the most rejected flows, whatever their bytes (a scanner's probes).
    pub rejected_sources: Vec<RejectedSourceSnapshot>,
    /// Rejected egress by destination, port and protocol (see [`super::findings`]).
    pub denied_outbound: Vec<DeniedOutbound>,
    /// Conversations accepted one way and rejected the other.
    pub asymmetric_flows: Vec<AsymmetricFlow>,
    pub findings: Vec<Finding>,
    /// How many findings of each kind (every kind, 0 included), for the `vpcflowd.findings`
    /// gauge; the JSON carries the findings themselves, so a snapshot read back has this empty
    /// until `findings::counts` fills it again.
    #[serde(skip)]
    pub finding_counts: Vec<(&'static str, u64)>,
    /// 0 for the first emission; each correction by a late record (`--late update`) adds one.
    pub revision: u32,
    /// Whether a cap was exceeded in this window, so lists are heavy-hitter estimates.
    pub approximate: bool,
    pub approximation: Approximation,
}

/// Error bounds when caps were exceeded: a listed value may fall short of the truth by at most
/// the bound (in bytes); totals and remainders stay exact.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Approximation {
    pub source_bytes_error: u64,
    pub destination_bytes_error: u64,
    pub flow_bytes_error: u64,
    pub evicted_sources: u64,
    pub evicted_destinations: u64,
    pub evicted_flows: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SourceSnapshot {
    pub address: IpAddr,
    /// The AWS service and region of the address (`[enrich] ip_ranges`); absent outside AWS
    /// or without the file.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub aws_service: Option<Arc<str>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub aws_region: Option<Arc<str>>,
    pub packets: u64,
    pub bytes: u64,
    pub flows: u64,
    pub rejected_flows: u64,
    pub rejected_bytes: u64,
    pub traffic_share_pct: f64,
    /// The rejected packets, and the percentage of the source's flows that were rejected.
    pub rejected_packets: u64,
    pub reject_ratio_pct: f64,
    /// The source's bytes in each pane of the window, oldest first (empty with `--detail off`
    /// or, with `on_finding`, for a source without a finding).
    pub pane_bytes: Vec<u64>,
    /// The panes the source sent in, and the largest pane's share of its bytes: a steady
    /// sender is active in every pane, a spike has one pane near 100 %.
    pub active_panes: u32,
    pub peak_pane_share_pct: f64,
    /// The source's mean bytes per window before this one, and this window's bytes over it
    /// (see [`super::baseline`]).
    pub baseline_bytes: Option<u64>,
    pub spike_ratio: Option<f64>,
    /// Where the source's traffic went, by bytes summed over ports.
    pub top_destinations: Vec<DestinationOfSource>,
    pub distinct_destination_ports: u64,
    pub distinct_destination_addresses: u64,
    /// Whether the distinct counts are sketch estimates (see [`super::distinct`]).
    pub distinct_approximate: bool,
    /// Records with `tcp-flags` = 2 (SYN with no SYN-ACK); `None` when none carried the field.
    pub syn_only_flows: Option<u64>,
    pub top_flows: Vec<FlowSnapshot>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
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

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DestinationSnapshot {
    pub address: IpAddr,
    /// As [`SourceSnapshot::aws_service`].
    #[serde(skip_serializing_if = "Option::is_none")]
    pub aws_service: Option<Arc<str>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub aws_region: Option<Arc<str>>,
    pub packets: u64,
    pub bytes: u64,
    pub flows: u64,
    pub rejected_flows: u64,
    /// Percentage of the egress bytes (of all bytes with `--direction off`).
    pub traffic_share_pct: f64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
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
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
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
    /// `vpc-id`, `subnet-id`, `instance-id`, `az-id` as the interface's records carry them.
    pub labels: [Option<Arc<str>>; 4],
    pub revision: u32,
}

/// Percentage of `part` in `whole`, 0 when the whole is 0.
pub fn share_pct(part: u64, whole: u64) -> f64 {
    if whole == 0 { 0.0 } else { 100.0 * part as f64 / whole as f64 }
}

/// Builds the snapshot of the given panes (those of one interface inside one window).
pub fn build(key: SnapshotKey, window: &WindowPanes, options: &BuildOptions) -> Snapshot {
    let [vpc_id, subnet_id, instance_id, az_id] = &key.labels;
    let panes = &window.panes[..];
    let top = options.top;
    let (records, mut approx) = window_records(panes);
    let directions = window_directions(panes);
    let mut totals = DirectionTotals::default();
    for t in &directions.totals {
        totals.add(t);
    }
    let summed = sum_by_key(
        panes.iter().map(|p| (p.sources.len(), p.sources.iter().map(|(a, e)| (*a, e.traffic())))),
    );
    // One ranking by rejected flows serves both lists: a prefix of it is the top of any length.
    let longest = top.rejected_sources.max(findings::INGRESS_SEEDS);
    let by_rejects = diagnosis::most_rejected(&summed, longest);
    let listed = &by_rejects[..by_rejects.len().min(top.rejected_sources)];
    let rejected = diagnosis::rejected_sources(listed, window);
    let egress = findings::EgressRejects::of(window);
    let asymmetric_flows = findings::asymmetric_flows(window, &by_rejects, &egress);
    let (denied_outbound, denied_counts) =
        egress.denied_outbound(|k| findings::seen_in(options.baseline, k));
    let ranked = ranked_sources(window, options, &directions, &mut approx, summed);
    let findings = findings::findings(
        &findings::FindingInputs {
            sources: &ranked.sources,
            rejected_sources: &rejected,
            denied_outbound: &denied_outbound,
            denied_counts,
            asymmetric_flows: &asymmetric_flows,
            interface_id: &key.interface_id,
        },
        options.thresholds,
    );
    let (destinations, other_destinations) = ranked_destinations(panes, top);
    let protocols = protocol_snapshots(panes);
    let approximate = approx != Approximation::default();
    Snapshot {
        window_start: key.window_start,
        window_end: key.window_end,
        interface_id: key.interface_id,
        account_id: key.account_id,
        region: key.region,
        vpc_id: vpc_id.clone(),
        subnet_id: subnet_id.clone(),
        instance_id: instance_id.clone(),
        az_id: az_id.clone(),
        name: None,
        interface_type: None,
        description: None,
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
        sources: ranked.sources,
        other_sources: ranked.other,
        destinations,
        other_destinations,
        protocols,
        rejected_sources: rejected,
        denied_outbound,
        asymmetric_flows,
        finding_counts: findings::counts(&findings),
        findings,
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

/// A window's sources: the listed ones and the rest.
struct RankedSources {
    sources: Vec<SourceSnapshot>,
    other: Other,
}

/// Sources summed across panes (`sources`) and ranked: the top N with their detail, and the
/// rest.
fn ranked_sources(
    window: &WindowPanes,
    options: &BuildOptions,
    directions: &WindowDirections,
    approx: &mut Approximation,
    sources: Vec<(IpAddr, Traffic)>,
) -> RankedSources {
    let panes = &window.panes[..];
    let top = options.top;
    let mut other = Other::default();
    for p in panes {
        other.add(&p.sources.folded().traffic());
        other.add(&p.unattributed_sources);
    }
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
            let entries = diagnosis::entries_of(&addr, window);
            let mut detail = SourceDetail::of(&addr, &t, &entries, window.len, options);
            let lists = options.detail.lists(&detail, &t, options.thresholds);
            let top_flows = if lists {
                let (flows, flow_approx) =
                    source_flows(addr, &entries.entries, top.flows, direction);
                approx.flow_bytes_error = approx.flow_bytes_error.saturating_add(flow_approx.0);
                approx.evicted_flows = approx.evicted_flows.saturating_add(flow_approx.1);
                flows
            } else {
                detail.drop_lists();
                Vec::new()
            };
            SourceSnapshot {
                address: addr,
                aws_service: None,
                aws_region: None,
                packets: t.packets,
                bytes: t.bytes,
                flows: t.flows,
                rejected_flows: t.rejected_flows,
                rejected_bytes: t.rejected_bytes,
                traffic_share_pct: share_pct(t.bytes, whole),
                rejected_packets: t.rejected_packets,
                reject_ratio_pct: share_pct(t.rejected_flows, t.flows),
                pane_bytes: detail.pane_bytes,
                active_panes: detail.active_panes,
                peak_pane_share_pct: detail.peak_pane_share_pct,
                baseline_bytes: detail.baseline_bytes,
                spike_ratio: detail.spike_ratio,
                top_destinations: detail.top_destinations,
                distinct_destination_ports: detail.distinct.ports,
                distinct_destination_addresses: detail.distinct.addresses,
                distinct_approximate: detail.distinct.approximate,
                syn_only_flows: detail.syn_only_flows,
                top_flows,
            }
        })
        .collect();
    RankedSources { sources: listed, other }
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
            aws_service: None,
            aws_region: None,
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

/// The top flows of one source across the panes (`entries`, one per pane holding it), and
/// (error bound, evictions) of its flows.
fn source_flows(
    addr: IpAddr,
    entries: &[&SourceEntry],
    n: usize,
    direction: Direction,
) -> (Vec<FlowSnapshot>, (u64, u64)) {
    let mut bound = 0u64;
    let mut evicted = 0u64;
    for entry in entries {
        bound = bound.saturating_add(entry.flow_error_bound());
        evicted = evicted.saturating_add(entry.evicted_flows());
    }
    let (listed, _) = top_n(window_flow_candidates(entries, n, PRUNE_FROM), n);
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
