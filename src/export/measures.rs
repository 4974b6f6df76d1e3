//! This module defines the window measures once: each instrument's OpenTelemetry name,
//! Prometheus name, unit, description and how it reads a [`Snapshot`]. The OTLP exporter and the
//! `/metrics` collector both walk these tables, so the two can never disagree; the README's
//! instrument reference lists the same rows.
//!
//! Every measure is a **gauge**: a window's total, as of its close. Sliding windows overlap
//! (a 5-minute window every minute counts each record in five windows), so a cumulative or
//! delta *sum* would count every byte `window / slide` times.

use std::net::IpAddr;

use crate::window::Snapshot;
use crate::window::direction::Direction;
use crate::window::pane::DirectionTotals;
use crate::window::rollup::RollupTotals;
use crate::window::snapshot::{
    DestinationSnapshot, FlowSnapshot, ProtocolSnapshot, SourceSnapshot,
};

pub use super::source_measures::{FINDINGS, OTHER_SOURCES, REJECTED_SOURCES, SOURCES};

/// How a measure reads its value. An optional value that is `None` (a source without a
/// baseline, a layout without `tcp-flags`) is not exported for that row.
pub enum Get<T: 'static> {
    Int(fn(&Snapshot, &T) -> u64),
    Float(fn(&Snapshot, &T) -> f64),
    OptionalInt(fn(&Snapshot, &T) -> Option<u64>),
    OptionalFloat(fn(&Snapshot, &T) -> Option<f64>),
}

impl<T> Get<T> {
    /// Whether the value is a float (so the instrument is an f64 gauge).
    pub fn is_float(&self) -> bool {
        matches!(self, Get::Float(_) | Get::OptionalFloat(_))
    }

    /// Whether the row has a value (is exported).
    pub fn is_present(&self, s: &Snapshot, row: &T) -> bool {
        match self {
            Get::Int(_) | Get::Float(_) => true,
            Get::OptionalInt(f) => f(s, row).is_some(),
            Get::OptionalFloat(f) => f(s, row).is_some(),
        }
    }
}

/// One instrument.
pub struct Measure<T: 'static> {
    /// OpenTelemetry instrument name.
    pub name: &'static str,
    /// Prometheus metric name (what the OpenTelemetry → Prometheus naming rules give).
    pub prometheus: &'static str,
    /// UCUM unit.
    pub unit: &'static str,
    pub description: &'static str,
    pub get: Get<T>,
}

/// The attribute that tells the rows of a group apart (none for interface-level groups).
pub struct Keyed<T: 'static> {
    /// OpenTelemetry attribute name.
    pub attribute: &'static str,
    /// Prometheus label name.
    pub label: &'static str,
    pub value: fn(&T) -> String,
}

/// Measures over the rows of one list of a snapshot (one row for interface-level groups).
pub struct Group<T: 'static> {
    pub rows: fn(&Snapshot) -> &[T],
    pub key: Option<Keyed<T>>,
    pub measures: &'static [Measure<T>],
}

/// Interface-level attribute names: (OpenTelemetry attribute, Prometheus label).
pub const INTERFACE_ID: (&str, &str) = ("interface.id", "interface_id");
pub const ACCOUNT_ID: (&str, &str) = ("cloud.account.id", "cloud_account_id");
pub const REGION: (&str, &str) = ("cloud.region", "cloud_region");
/// A roll-up value (`vpcflowd.{kind}.{name}`): its name's last part, description, unit, and
/// reader.
pub struct RollupMeasure {
    pub name: &'static str,
    pub description: &'static str,
    pub unit: &'static str,
    pub value: fn(&RollupTotals) -> u64,
}

pub const ROLLUP_MEASURES: [RollupMeasure; 3] = [
    RollupMeasure {
        name: "bytes",
        description: "Bytes of the interfaces",
        unit: "By",
        value: |t| t.bytes,
    },
    RollupMeasure {
        name: "rejected_flows",
        description: "Rejected flows of the interfaces",
        unit: "{flow}",
        value: |t| t.rejected_flows,
    },
    RollupMeasure {
        name: "interfaces",
        description: "Interfaces with traffic",
        unit: "{interface}",
        value: |t| t.interfaces,
    },
];

/// The attribute (OpenTelemetry, Prometheus) naming a roll-up of `kind`.
pub fn rollup_label(kind: crate::window::rollup::RollupKind) -> (&'static str, &'static str) {
    use crate::window::rollup::RollupKind;
    match kind {
        RollupKind::Region => REGION,
        RollupKind::Account => ACCOUNT_ID,
        RollupKind::Vpc => ("aws.vpc.id", "aws_vpc_id"),
        RollupKind::Subnet => ("aws.subnet.id", "aws_subnet_id"),
    }
}

/// The interface's labels (when its records carry them), on its OTLP points: one value per
/// interface, so they add no series.
pub const LABELS: [&str; 4] = ["aws.vpc.id", "aws.subnet.id", "aws.ec2.instance.id", "aws.az.id"];

/// The attributes of an interface's EC2 `Name` tag and type (`[enrich.ec2]`), in that order.
pub const INTERFACE_LABELS: [&str; 2] = ["vpcflowd.interface.name", "vpcflowd.interface.type"];

pub(crate) fn one(_: &Snapshot) -> &[()] {
    &[()]
}

pub(crate) fn address(a: &IpAddr) -> String {
    a.to_string()
}

fn share(part: u64, whole: u64) -> f64 {
    if whole == 0 { 0.0 } else { 100.0 * part as f64 / whole as f64 }
}

/// The `network.transport` value of an IP protocol number: the lowercase IANA keyword for
/// common ones, else the number.
pub fn transport(protocol: u8) -> String {
    match protocol {
        1 => "icmp".into(),
        6 => "tcp".into(),
        17 => "udp".into(),
        47 => "gre".into(),
        50 => "esp".into(),
        51 => "ah".into(),
        58 => "ipv6-icmp".into(),
        132 => "sctp".into(),
        n => n.to_string(),
    }
}

macro_rules! int {
    ($name:literal, $prom:literal, $unit:literal, $desc:literal, |$s:ident, $r:ident| $e:expr) => {
        Measure {
            name: $name,
            prometheus: $prom,
            unit: $unit,
            description: $desc,
            get: Get::Int(|$s, $r| $e),
        }
    };
}
pub(crate) use int;

/// The measures per interface.
pub static INTERFACE: Group<()> = Group {
    rows: one,
    key: None,
    measures: &[
        int!(
            "vpcflowd.interface.bytes",
            "vpcflowd_interface_bytes",
            "By",
            "Bytes of the interface's flows (log-status OK) in the window",
            |s, _r| s.bytes
        ),
        int!(
            "vpcflowd.interface.packets",
            "vpcflowd_interface_packets",
            "{packet}",
            "Packets of the interface's flows in the window",
            |s, _r| s.packets
        ),
        int!(
            "vpcflowd.interface.flows",
            "vpcflowd_interface_flows",
            "{flow}",
            "Flow records with log-status OK in the window",
            |s, _r| s.flows
        ),
        int!(
            "vpcflowd.interface.rejected_flows",
            "vpcflowd_interface_rejected_flows",
            "{flow}",
            "Flow records with action REJECT in the window",
            |s, _r| s.rejected_flows
        ),
        int!(
            "vpcflowd.interface.rejected_packets",
            "vpcflowd_interface_rejected_packets",
            "{packet}",
            "Packets of rejected flows in the window",
            |s, _r| s.rejected_packets
        ),
        int!(
            "vpcflowd.interface.rejected_bytes",
            "vpcflowd_interface_rejected_bytes",
            "By",
            "Bytes of rejected flows in the window",
            |s, _r| s.rejected_bytes
        ),
        int!(
            "vpcflowd.interface.nodata_records",
            "vpcflowd_interface_nodata_records",
            "{record}",
            "Records with log-status NODATA in the window",
            |s, _r| s.nodata_records
        ),
        int!(
            "vpcflowd.interface.skipdata_records",
            "vpcflowd_interface_skipdata_records",
            "{record}",
            "Records with log-status SKIPDATA in the window",
            |s, _r| s.skipdata_records
        ),
        int!(
            "vpcflowd.interface.late_records",
            "vpcflowd_interface_late_records",
            "{record}",
            "Records that arrived after their panes had closed",
            |s, _r| s.late_records
        ),
    ],
};

/// The traffic of one known direction of a snapshot.
fn direction_totals(s: &Snapshot, d: &Direction) -> DirectionTotals {
    match d {
        Direction::Ingress => s.ingress,
        Direction::Egress => s.egress,
        Direction::Unknown => s.unknown_direction,
    }
}

/// The measures per direction of the interface's traffic: `receive` (to it) and `transmit`
/// (from it), the OpenTelemetry `network.io.direction` values. Traffic of unknown direction is
/// the interface's totals less the two.
pub static DIRECTIONS: Group<Direction> = Group {
    rows: |_| &[Direction::Ingress, Direction::Egress],
    key: Some(Keyed {
        attribute: "network.io.direction",
        label: "network_io_direction",
        value: |d| if *d == Direction::Ingress { "receive".into() } else { "transmit".into() },
    }),
    measures: &[
        int!(
            "vpcflowd.interface.io.bytes",
            "vpcflowd_interface_io_bytes",
            "By",
            "Bytes to (receive) or from (transmit) the interface in the window",
            |s, d| direction_totals(s, d).bytes
        ),
        int!(
            "vpcflowd.interface.io.packets",
            "vpcflowd_interface_io_packets",
            "{packet}",
            "Packets to or from the interface in the window",
            |s, d| direction_totals(s, d).packets
        ),
        int!(
            "vpcflowd.interface.io.flows",
            "vpcflowd_interface_io_flows",
            "{flow}",
            "Flow records to or from the interface in the window",
            |s, d| direction_totals(s, d).flows
        ),
        int!(
            "vpcflowd.interface.io.rejected_flows",
            "vpcflowd_interface_io_rejected_flows",
            "{flow}",
            "Rejected flow records to or from the interface in the window",
            |s, d| direction_totals(s, d).rejected_flows
        ),
        int!(
            "vpcflowd.interface.io.rejected_packets",
            "vpcflowd_interface_io_rejected_packets",
            "{packet}",
            "Packets of rejected flows to or from the interface in the window",
            |s, d| direction_totals(s, d).rejected_packets
        ),
        int!(
            "vpcflowd.interface.io.rejected_bytes",
            "vpcflowd_interface_io_rejected_bytes",
            "By",
            "Bytes of rejected flows to or from the interface in the window",
            |s, d| direction_totals(s, d).rejected_bytes
        ),
    ],
};

/// The measures per listed destination (the top `top_destinations` by bytes): where the
/// interface's traffic went (every record's destination with `direction = "off"`).
pub static DESTINATIONS: Group<DestinationSnapshot> = Group {
    rows: |s| &s.destinations,
    key: Some(Keyed {
        attribute: "destination.address",
        label: "destination_address",
        value: |r| address(&r.address),
    }),
    measures: &[
        int!(
            "vpcflowd.destination.bytes",
            "vpcflowd_destination_bytes",
            "By",
            "Bytes the interface sent to the destination in the window",
            |_s, r| r.bytes
        ),
        int!(
            "vpcflowd.destination.packets",
            "vpcflowd_destination_packets",
            "{packet}",
            "Packets sent to the destination in the window",
            |_s, r| r.packets
        ),
        int!(
            "vpcflowd.destination.flows",
            "vpcflowd_destination_flows",
            "{flow}",
            "Flow records to the destination in the window",
            |_s, r| r.flows
        ),
        int!(
            "vpcflowd.destination.rejected_flows",
            "vpcflowd_destination_rejected_flows",
            "{flow}",
            "Rejected flow records to the destination in the window",
            |_s, r| r.rejected_flows
        ),
        Measure {
            name: "vpcflowd.destination.traffic_share",
            prometheus: "vpcflowd_destination_traffic_share_percent",
            unit: "%",
            description: "The destination's share of the bytes the interface sent in the window",
            get: Get::Float(|_s, r| r.traffic_share_pct),
        },
    ],
};

/// What the unlisted destinations add up to.
pub static OTHER_DESTINATIONS: Group<()> = Group {
    rows: one,
    key: None,
    measures: &[
        int!(
            "vpcflowd.other_destinations.count",
            "vpcflowd_other_destinations_count",
            "{destination}",
            "Destinations not listed (beyond top_destinations)",
            |s, _r| s.other_destinations.count
        ),
        int!(
            "vpcflowd.other_destinations.bytes",
            "vpcflowd_other_destinations_bytes",
            "By",
            "Bytes to the destinations not listed",
            |s, _r| s.other_destinations.bytes
        ),
        int!(
            "vpcflowd.other_destinations.packets",
            "vpcflowd_other_destinations_packets",
            "{packet}",
            "Packets to the destinations not listed",
            |s, _r| s.other_destinations.packets
        ),
        int!(
            "vpcflowd.other_destinations.flows",
            "vpcflowd_other_destinations_flows",
            "{flow}",
            "Flow records to the destinations not listed",
            |s, _r| s.other_destinations.flows
        ),
    ],
};

/// The measures per IP protocol seen on the interface (at most 256 rows; all of them are listed).
pub static PROTOCOLS: Group<ProtocolSnapshot> = Group {
    rows: |s| &s.protocols,
    key: Some(Keyed {
        attribute: "network.transport",
        label: "network_transport",
        value: |r| transport(r.protocol),
    }),
    measures: &[
        int!(
            "vpcflowd.protocol.bytes",
            "vpcflowd_protocol_bytes",
            "By",
            "Bytes of the protocol's flows in the window",
            |_s, r| r.bytes
        ),
        int!(
            "vpcflowd.protocol.packets",
            "vpcflowd_protocol_packets",
            "{packet}",
            "Packets of the protocol's flows in the window",
            |_s, r| r.packets
        ),
        int!(
            "vpcflowd.protocol.flows",
            "vpcflowd_protocol_flows",
            "{flow}",
            "Flow records of the protocol in the window",
            |_s, r| r.flows
        ),
        int!(
            "vpcflowd.protocol.rejected_flows",
            "vpcflowd_protocol_rejected_flows",
            "{flow}",
            "Rejected flow records of the protocol in the window",
            |_s, r| r.rejected_flows
        ),
        Measure {
            name: "vpcflowd.protocol.traffic_share",
            prometheus: "vpcflowd_protocol_traffic_share_percent",
            unit: "%",
            description: "The protocol's share of the interface's bytes in the window",
            get: Get::Float(|s, r| share(r.bytes, s.bytes)),
        },
    ],
};

/// The window the other measures of an export describe (no attributes).
pub static WINDOW: Group<()> = Group {
    rows: one,
    key: None,
    measures: &[
        int!(
            "vpcflowd.window.start",
            "vpcflowd_window_start_seconds",
            "s",
            "Start of the window the window measures describe (Unix time)",
            |s, _r| s.window_start
        ),
        int!(
            "vpcflowd.window.end",
            "vpcflowd_window_end_seconds",
            "s",
            "End of the window the window measures describe (Unix time)",
            |s, _r| s.window_end
        ),
    ],
};

/// A visitor over every group, with its row type.
pub trait Visit {
    fn group<T>(&mut self, group: &'static Group<T>);
}

/// Visits the groups measured per interface (every group but [`WINDOW`]).
pub fn each_interface_group(v: &mut impl Visit) {
    v.group(&INTERFACE);
    v.group(&DIRECTIONS);
    v.group(&SOURCES);
    v.group(&OTHER_SOURCES);
    v.group(&REJECTED_SOURCES);
    v.group(&FINDINGS);
    v.group(&DESTINATIONS);
    v.group(&OTHER_DESTINATIONS);
    v.group(&PROTOCOLS);
}

/// The number of data points one snapshot produces.
pub fn points(s: &Snapshot) -> usize {
    struct Count<'a>(&'a Snapshot, usize);
    impl Visit for Count<'_> {
        fn group<T>(&mut self, g: &'static Group<T>) {
            for row in (g.rows)(self.0) {
                self.1 += g.measures.iter().filter(|m| m.get.is_present(self.0, row)).count();
            }
        }
    }
    let mut c = Count(s, 0);
    each_interface_group(&mut c);
    c.1
}

/// The largest `n` flows of a snapshot's listed sources, each with its source: bytes, then
/// packets, descending.
pub fn largest_flows(s: &Snapshot, n: usize) -> Vec<(&SourceSnapshot, &FlowSnapshot)> {
    let mut flows: Vec<_> =
        s.sources.iter().flat_map(|src| src.top_flows.iter().map(move |f| (src, f))).collect();
    flows.sort_by(|(_, a), (_, b)| b.bytes.cmp(&a.bytes).then(b.packets.cmp(&a.packets)));
    flows.truncate(n);
    flows
}
