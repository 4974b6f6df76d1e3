//! This module defines the measures of a window's sources: the listed ones with the answers to
//! their three questions (steady or a spike, one destination above the rest, how often
//! rejected), the unlisted remainder, the sources listed by rejected flows, and the count of
//! the window's findings by kind.

use super::measures::{Get, Group, Keyed, Measure, address, int, one};
use crate::window::diagnosis::RejectedSourceSnapshot;
use crate::window::snapshot::SourceSnapshot;

/// The measures per listed source (the top `top_sources` by bytes): who sent traffic to the
/// interface (every record's source with `direction = "off"`).
pub static SOURCES: Group<SourceSnapshot> = Group {
    rows: |s| &s.sources,
    key: Some(Keyed {
        attribute: "source.address",
        label: "source_address",
        value: |r| address(&r.address),
    }),
    measures: &[
        int!(
            "vpcflowd.source.bytes",
            "vpcflowd_source_bytes",
            "By",
            "Bytes the source sent to the interface in the window",
            |_s, r| r.bytes
        ),
        int!(
            "vpcflowd.source.packets",
            "vpcflowd_source_packets",
            "{packet}",
            "Packets the source sent in the window",
            |_s, r| r.packets
        ),
        int!(
            "vpcflowd.source.flows",
            "vpcflowd_source_flows",
            "{flow}",
            "Flow records of the source in the window",
            |_s, r| r.flows
        ),
        int!(
            "vpcflowd.source.rejected_flows",
            "vpcflowd_source_rejected_flows",
            "{flow}",
            "Rejected flow records of the source in the window",
            |_s, r| r.rejected_flows
        ),
        int!(
            "vpcflowd.source.rejected_bytes",
            "vpcflowd_source_rejected_bytes",
            "By",
            "Bytes of the source's rejected flows in the window",
            |_s, r| r.rejected_bytes
        ),
        Measure {
            name: "vpcflowd.source.traffic_share",
            prometheus: "vpcflowd_source_traffic_share_percent",
            unit: "%",
            description: "The source's share of the bytes sent to the interface in the window",
            get: Get::Float(|_s, r| r.traffic_share_pct),
        },
        int!(
            "vpcflowd.source.rejected_packets",
            "vpcflowd_source_rejected_packets",
            "{packet}",
            "Packets of the source's rejected flows in the window",
            |_s, r| r.rejected_packets
        ),
        Measure {
            name: "vpcflowd.source.reject_ratio",
            prometheus: "vpcflowd_source_reject_ratio_percent",
            unit: "%",
            description: "The percentage of the source's flow records that were rejected",
            get: Get::Float(|_s, r| r.reject_ratio_pct),
        },
        int!(
            "vpcflowd.source.active_panes",
            "vpcflowd_source_active_panes",
            "{pane}",
            "Slides of the window in which the source sent (all of them for a steady sender)",
            |_s, r| u64::from(r.active_panes)
        ),
        Measure {
            name: "vpcflowd.source.peak_pane_share",
            prometheus: "vpcflowd_source_peak_pane_share_percent",
            unit: "%",
            description: "The share of the source's bytes sent in its busiest slide (100 for a spike)",
            get: Get::Float(|_s, r| r.peak_pane_share_pct),
        },
        Measure {
            name: "vpcflowd.source.baseline_bytes",
            prometheus: "vpcflowd_source_baseline_bytes",
            unit: "By",
            description: "The source's mean bytes per window over the windows before this one",
            get: Get::OptionalInt(|_s, r| r.baseline_bytes),
        },
        Measure {
            name: "vpcflowd.source.spike_ratio",
            prometheus: "vpcflowd_source_spike_ratio",
            unit: "1",
            description: "The source's bytes in the window over its baseline",
            get: Get::OptionalFloat(|_s, r| r.spike_ratio),
        },
        Measure {
            name: "vpcflowd.source.top_destination_share",
            prometheus: "vpcflowd_source_top_destination_share_percent",
            unit: "%",
            description: "The share of the source's bytes that went to its largest destination",
            get: Get::OptionalFloat(|_s, r| r.top_destinations.first().map(|d| d.share_pct)),
        },
        int!(
            "vpcflowd.source.distinct_destination_ports",
            "vpcflowd_source_distinct_destination_ports",
            "{port}",
            "Distinct destination ports of the source's flows (estimated past the flow cap)",
            |_s, r| r.distinct_destination_ports
        ),
        int!(
            "vpcflowd.source.distinct_destination_addresses",
            "vpcflowd_source_distinct_destination_addresses",
            "{address}",
            "Distinct destination addresses of the source's flows",
            |_s, r| r.distinct_destination_addresses
        ),
        Measure {
            name: "vpcflowd.source.syn_only_flows",
            prometheus: "vpcflowd_source_syn_only_flows",
            unit: "{flow}",
            description: "The source's flow records whose tcp-flags were a SYN alone",
            get: Get::OptionalInt(|_s, r| r.syn_only_flows),
        },
    ],
};

/// What the unlisted sources add up to, so that listed + other = the interface's ingress.
pub static OTHER_SOURCES: Group<()> = Group {
    rows: one,
    key: None,
    measures: &[
        int!(
            "vpcflowd.other_sources.count",
            "vpcflowd_other_sources_count",
            "{source}",
            "Sources not listed (beyond top_sources)",
            |s, _r| s.other_sources.count
        ),
        int!(
            "vpcflowd.other_sources.bytes",
            "vpcflowd_other_sources_bytes",
            "By",
            "Bytes of the sources not listed",
            |s, _r| s.other_sources.bytes
        ),
        int!(
            "vpcflowd.other_sources.packets",
            "vpcflowd_other_sources_packets",
            "{packet}",
            "Packets of the sources not listed",
            |s, _r| s.other_sources.packets
        ),
        int!(
            "vpcflowd.other_sources.flows",
            "vpcflowd_other_sources_flows",
            "{flow}",
            "Flow records of the sources not listed",
            |s, _r| s.other_sources.flows
        ),
    ],
};

/// The measures per source listed by rejected flows (`top_rejected_sources`), whatever its bytes:
/// a scanner's probes show here.
pub static REJECTED_SOURCES: Group<RejectedSourceSnapshot> = Group {
    rows: |s| &s.rejected_sources,
    key: Some(Keyed {
        attribute: "source.address",
        label: "source_address",
        value: |r| address(&r.address),
    }),
    measures: &[
        int!(
            "vpcflowd.rejected_source.rejected_flows",
            "vpcflowd_rejected_source_rejected_flows",
            "{flow}",
            "Rejected flow records of the source in the window",
            |_s, r| r.rejected_flows
        ),
        int!(
            "vpcflowd.rejected_source.rejected_packets",
            "vpcflowd_rejected_source_rejected_packets",
            "{packet}",
            "Packets of the source's rejected flows",
            |_s, r| r.rejected_packets
        ),
        int!(
            "vpcflowd.rejected_source.rejected_bytes",
            "vpcflowd_rejected_source_rejected_bytes",
            "By",
            "Bytes of the source's rejected flows",
            |_s, r| r.rejected_bytes
        ),
        int!(
            "vpcflowd.rejected_source.flows",
            "vpcflowd_rejected_source_flows",
            "{flow}",
            "Flow records of the source, rejected or not",
            |_s, r| r.flows
        ),
        int!(
            "vpcflowd.rejected_source.distinct_destination_ports",
            "vpcflowd_rejected_source_distinct_destination_ports",
            "{port}",
            "Distinct destination ports the source tried",
            |_s, r| r.distinct_destination_ports
        ),
        int!(
            "vpcflowd.rejected_source.distinct_destination_addresses",
            "vpcflowd_rejected_source_distinct_destination_addresses",
            "{address}",
            "Distinct destination addresses the source tried",
            |_s, r| r.distinct_destination_addresses
        ),
        Measure {
            name: "vpcflowd.rejected_source.syn_only_flows",
            prometheus: "vpcflowd_rejected_source_syn_only_flows",
            unit: "{flow}",
            description: "The source's flow records whose tcp-flags were a SYN alone",
            get: Get::OptionalInt(|_s, r| r.syn_only_flows),
        },
    ],
};

/// The findings of the window by kind (every kind, 0 included, so that an alert on it clears).
pub static FINDINGS: Group<(&'static str, u64)> = Group {
    rows: |s| &s.finding_counts,
    key: Some(Keyed {
        attribute: "vpcflowd.finding.kind",
        label: "vpcflowd_finding_kind",
        value: |r| r.0.to_string(),
    }),
    measures: &[int!(
        "vpcflowd.findings",
        "vpcflowd_findings",
        "{finding}",
        "Findings of the kind in the window (port_scan, outbound_scan, denied_outbound, nacl_asymmetry, spike, sweep)",
        |_s, r| r.1
    )],
};
