//! This module resolves what the router reads of one record ([`RouteInput`]) from a parsed line
//! and its envelope's context: which interface the record belongs to, its account and region,
//! and the fixed fields every window measure is computed from.

use std::net::IpAddr;

use crate::decode::{Action, DefaultRecord, FlowDirection, FlowRecord, LineContext, LogStatus};

/// What the router reads of one record: its fields and its envelope's context, resolved. It is
/// built from a parsed line ([`RouteInput::of`]) or from a request parsed on another thread.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RouteInput<'a> {
    /// See [`interface_of`]; `None` is a rejection.
    pub interface: Option<&'a str>,
    /// The record's `account-id`, else the envelope's owner.
    pub account: Option<&'a str>,
    /// The record's `region`, else the transport's.
    pub region: Option<&'a str>,
    pub fields: RouteFields,
    /// What the record says of its interface's place (v3+ fields), for the snapshot's labels.
    pub labels: RouteLabels<'a>,
}

/// What a record says of its interface's place (`vpc-id`, `subnet-id`, `instance-id`,
/// `az-id`) and of the AWS services its packets came from and went to
/// (`pkt-src-aws-service`, `pkt-dst-aws-service`), each `None` when the layout lacks it or the
/// record wrote `-`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RouteLabels<'a> {
    pub vpc_id: Option<&'a str>,
    pub subnet_id: Option<&'a str>,
    pub instance_id: Option<&'a str>,
    pub az_id: Option<&'a str>,
    pub src_service: Option<&'a str>,
    pub dst_service: Option<&'a str>,
}

/// A record that names its interface, borrowing its fields and labels from where they are
/// kept (a [`crate::record::ParsedRecords`] batch, or a [`RouteInput`]).
#[derive(Debug, Clone, Copy)]
pub struct NamedRecord<'a> {
    pub interface: &'a str,
    pub account: Option<&'a str>,
    pub region: Option<&'a str>,
    pub fields: &'a RouteFields,
    pub labels: &'a RouteLabels<'a>,
}

impl<'a> NamedRecord<'a> {
    /// `input`'s parts, for a record known to name `interface`.
    #[inline]
    pub fn of(interface: &'a str, input: &'a RouteInput<'a>) -> NamedRecord<'a> {
        NamedRecord {
            interface,
            account: input.account,
            region: input.region,
            fields: &input.fields,
            labels: &input.labels,
        }
    }
}

impl<'a> RouteLabels<'a> {
    /// No labels.
    pub const NONE: RouteLabels<'static> = RouteLabels {
        vpc_id: None,
        subnet_id: None,
        instance_id: None,
        az_id: None,
        src_service: None,
        dst_service: None,
    };

    /// Every field in a fixed order: VPC, subnet, instance, availability zone, source service,
    /// destination service.
    pub fn as_array(&self) -> [Option<&'a str>; 6] {
        [
            self.vpc_id,
            self.subnet_id,
            self.instance_id,
            self.az_id,
            self.src_service,
            self.dst_service,
        ]
    }

    pub fn from_array(a: [Option<&'a str>; 6]) -> RouteLabels<'a> {
        RouteLabels {
            vpc_id: a[0],
            subnet_id: a[1],
            instance_id: a[2],
            az_id: a[3],
            src_service: a[4],
            dst_service: a[5],
        }
    }

    /// The interface's own labels: VPC, subnet, instance, availability zone.
    pub fn interface_fields(&self) -> [Option<&'a str>; 4] {
        [self.vpc_id, self.subnet_id, self.instance_id, self.az_id]
    }

    /// Whether the record carries none.
    pub fn is_empty(&self) -> bool {
        self.as_array().iter().all(Option::is_none)
    }
}

/// The fixed-size fields routing reads (everything but the strings).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RouteFields {
    pub start: Option<u64>,
    pub end: Option<u64>,
    pub status: Option<LogStatus>,
    pub action: Option<Action>,
    pub srcaddr: Option<IpAddr>,
    pub dstaddr: Option<IpAddr>,
    pub srcport: Option<u16>,
    pub dstport: Option<u16>,
    pub protocol: Option<u8>,
    pub packets: Option<u64>,
    pub bytes: Option<u64>,
    /// The packet-level addresses (behind NAT gateways, load balancers, EKS pods).
    pub pkt_srcaddr: Option<IpAddr>,
    pub pkt_dstaddr: Option<IpAddr>,
    pub flow_direction: Option<FlowDirection>,
    pub tcp_flags: Option<u16>,
}

/// Reads the [`RouteFields`] of a record from any struct with the record's members; the
/// packet-level addresses, the flow direction and the TCP flags are given apart, as the
/// plain-line record has none.
macro_rules! route_fields {
    ($record:expr, $pkt_src:expr, $pkt_dst:expr, $direction:expr, $tcp_flags:expr) => {
        RouteFields {
            start: $record.start,
            end: $record.end,
            status: $record.log_status,
            action: $record.action,
            srcaddr: $record.srcaddr,
            dstaddr: $record.dstaddr,
            srcport: $record.srcport,
            dstport: $record.dstport,
            protocol: $record.protocol,
            packets: $record.packets,
            bytes: $record.bytes,
            pkt_srcaddr: $pkt_src,
            pkt_dstaddr: $pkt_dst,
            flow_direction: $direction,
            tcp_flags: $tcp_flags,
        }
    };
}

impl<'a> RouteInput<'a> {
    #[inline]
    pub fn of(record: &FlowRecord<'a>, ctx: &LineContext<'a>) -> RouteInput<'a> {
        RouteInput {
            interface: interface_of(record, ctx),
            account: record.account_id.or(ctx.owner),
            region: record.region.or(ctx.region),
            labels: RouteLabels {
                vpc_id: record.vpc_id,
                subnet_id: record.subnet_id,
                instance_id: record.instance_id,
                az_id: record.az_id,
                src_service: record.pkt_src_aws_service,
                dst_service: record.pkt_dst_aws_service,
            },
            fields: route_fields!(
                record,
                record.pkt_srcaddr,
                record.pkt_dstaddr,
                record.flow_direction,
                record.tcp_flags
            ),
        }
    }

    /// Resolves a line read by the plain-line shortcut ([`crate::decode::parse_plain_line`])
    /// exactly as [`RouteInput::of`] resolves the record that line parses to under the general
    /// path.
    #[inline]
    pub fn of_default(record: &DefaultRecord<'a>, ctx: &LineContext<'a>) -> RouteInput<'a> {
        RouteInput {
            interface: record.interface_id.or_else(|| stream_interface(ctx)),
            account: record.account_id.or(ctx.owner),
            region: ctx.region,
            labels: RouteLabels::default(),
            fields: route_fields!(record, None, None, None, None),
        }
    }
}

/// The interface a record belongs to: its `interface-id` or, for records without one, the
/// regional NAT gateway (`resource-id`), the transit-gateway attachment, or the ENI named by a
/// CloudWatch log stream (`eni-…-all`).
pub fn interface_of<'a>(record: &FlowRecord<'a>, ctx: &LineContext<'a>) -> Option<&'a str> {
    record
        .interface_id
        .or(record.resource_id)
        .or(record.tgw_attachment_id)
        .or_else(|| stream_interface(ctx))
}

/// The ENI a CloudWatch log stream is named after (`eni-…-all`), if it is one.
fn stream_interface<'a>(ctx: &LineContext<'a>) -> Option<&'a str> {
    ctx.log_stream.filter(|s| s.starts_with("eni-")).map(|s| s.strip_suffix("-all").unwrap_or(s))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::option::of as maybe;
    use proptest::prelude::{Just, prop_oneof};

    proptest::proptest! {
        /// A line read by the plain-line shortcut routes exactly as the record the general
        /// path reads from it, whatever the record lacks and whatever its envelope says.
        #[test]
        fn the_plain_line_shortcut_routes_as_the_record(
            interface in maybe(Just("eni-0a")),
            account in maybe(Just("123456789010")),
            owner in maybe(Just("999999999999")),
            region in maybe(Just("eu-west-1")),
            stream in maybe(prop_oneof![Just("eni-0b-all"), Just("eni-0c"), Just("vpc-1")]),
            numbers in proptest::array::uniform4(maybe(proptest::prelude::any::<u64>())),
            ports in proptest::array::uniform2(maybe(proptest::prelude::any::<u16>())),
            rejected in maybe(proptest::bool::ANY),
        ) {
            let plain = DefaultRecord {
                version: Some(2),
                account_id: account,
                interface_id: interface,
                srcaddr: Some("10.0.0.1".parse().unwrap()),
                dstaddr: None,
                srcport: ports[0],
                dstport: ports[1],
                protocol: Some(6),
                packets: numbers[0],
                bytes: numbers[1],
                start: numbers[2],
                end: numbers[3],
                action: rejected.map(|r| if r { Action::Reject } else { Action::Accept }),
                log_status: Some(LogStatus::Ok),
            };
            let mut record = FlowRecord::default();
            plain.fill(&mut record);
            let ctx = LineContext { owner, region, log_stream: stream, ..LineContext::default() };
            proptest::prop_assert_eq!(RouteInput::of_default(&plain, &ctx), RouteInput::of(&record, &ctx));
        }
    }
}
