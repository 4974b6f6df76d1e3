//! The field table lists every flow-log field, its AWS name, the version that introduced it and
//! its type. [`Field`] and [`FlowRecord`] are both generated from the one table below, so a field
//! cannot be known by name but missing from the record, or typed differently in two places.
//!
//! The table follows the VPC User Guide's *Flow log records* page (v2–v5, v7, v8), the Transit
//! Gateway guide (the v6 family), and, for the later fields, the list in `shared/reference`.

use std::net::IpAddr;

use super::enums::{
    Action, EncryptionStatus, FlowDirection, FlowType, LogStatus, ResourceType, SublocationType,
    TrafficPath,
};
use super::token::{FieldKind, FromToken, TokenError, Value};

macro_rules! flow_fields {
    ($( $(#[doc = $doc:literal])* $variant:ident, $member:ident: $ty:ty, $name:literal, $ver:literal; )*) => {
        /// A flow-log field, named as AWS names it in a format string (`${account-id}`).
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        #[repr(u8)]
        pub enum Field {
            $( $(#[doc = $doc])* $variant, )*
        }

        impl Field {
            /// Every field, in table order.
            pub const ALL: &'static [Field] = &[$(Field::$variant),*];

            /// The AWS name, hyphenated, without `${}`.
            pub const fn name(self) -> &'static str {
                match self { $(Field::$variant => $name,)* }
            }

            /// The flow-log version that introduced the field (6 is the transit-gateway family).
            pub const fn version(self) -> u8 {
                match self { $(Field::$variant => $ver,)* }
            }

            /// The field for an AWS name (`account-id`), `None` for an unknown name.
            pub fn from_name(name: &str) -> Option<Field> {
                match name { $($name => Some(Field::$variant),)* _ => None }
            }

            /// The kind of value the field holds.
            pub fn kind(self) -> FieldKind {
                // `'a` names the lifetime inside the table's types (`&'a str`).
                #[allow(clippy::extra_unused_lifetimes)]
                fn of<'a>(field: Field) -> FieldKind {
                    match field { $(Field::$variant => <$ty as FromToken<'a>>::KIND,)* }
                }
                of(self)
            }
        }

        /// One flow-log record, typed, borrowing its strings from the input line.
        ///
        /// Every field is an `Option`: `None` when the record's layout lacks the field or the
        /// record wrote `-` there. Building one allocates nothing.
        #[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
        pub struct FlowRecord<'a> {
            $( $(#[doc = $doc])* pub $member: Option<$ty>, )*
        }

        impl<'a> FlowRecord<'a> {
            /// Sets `field` from its token; `-` leaves it absent.
            #[inline]
            pub(crate) fn set(&mut self, field: Field, token: &'a str) -> Result<(), TokenError> {
                if token == "-" {
                    return Ok(());
                }
                match field {
                    $(Field::$variant => self.$member = Some(<$ty as FromToken<'a>>::from_token(token)?),)*
                }
                Ok(())
            }

            /// The value of `field`, `None` when absent.
            pub fn get(&self, field: Field) -> Option<Value<'a>> {
                match field {
                    $(Field::$variant => self.$member.map(FromToken::to_value),)*
                }
            }
        }
    };
}

flow_fields! {
    // ---- v2: the default format, in its order ----
    /// The flow-log version: 2 for the default format, else the highest version among the fields.
    Version, version: u8, "version", 2;
    /// The owner of the source interface: 12 digits (leading zeros kept) or `unknown`.
    AccountId, account_id: &'a str, "account-id", 2;
    /// The network interface that captured the record (`eni-…`).
    InterfaceId, interface_id: &'a str, "interface-id", 2;
    /// Source address; for incoming traffic to the interface, the remote address.
    Srcaddr, srcaddr: IpAddr, "srcaddr", 2;
    /// Destination address.
    Dstaddr, dstaddr: IpAddr, "dstaddr", 2;
    /// Source port (0 for ICMP).
    Srcport, srcport: u16, "srcport", 2;
    /// Destination port (0 for ICMP).
    Dstport, dstport: u16, "dstport", 2;
    /// IANA protocol number (6 TCP, 17 UDP, 1 ICMP, 58 ICMPv6).
    Protocol, protocol: u8, "protocol", 2;
    /// Packets in the flow during the interval, one direction.
    Packets, packets: u64, "packets", 2;
    /// Bytes in the flow during the interval, one direction.
    Bytes, bytes: u64, "bytes", 2;
    /// Start of the capture window in Unix seconds, kept raw (milliseconds occur in the wild).
    Start, start: u64, "start", 2;
    /// End of the capture window in Unix seconds, kept raw (milliseconds occur in the wild).
    End, end: u64, "end", 2;
    /// ACCEPT or REJECT; absent on NODATA and SKIPDATA records.
    Action, action: Action, "action", 2;
    /// OK, NODATA or SKIPDATA.
    LogStatus, log_status: LogStatus, "log-status", 2;
    // ---- v3 ----
    VpcId, vpc_id: &'a str, "vpc-id", 3;
    SubnetId, subnet_id: &'a str, "subnet-id", 3;
    /// Absent for requester-managed interfaces (NAT gateway, transit-gateway attachment).
    InstanceId, instance_id: &'a str, "instance-id", 3;
    /// TCP flags OR-ed over the interval: FIN 1, SYN 2, RST 4, SYN-ACK 18.
    TcpFlags, tcp_flags: u16, "tcp-flags", 3;
    /// IPv4, IPv6 or EFA.
    Type, flow_type: FlowType, "type", 3;
    /// The packet-level source address (differs from srcaddr behind NAT and for EKS pods).
    PktSrcaddr, pkt_srcaddr: IpAddr, "pkt-srcaddr", 3;
    /// The packet-level destination address.
    PktDstaddr, pkt_dstaddr: IpAddr, "pkt-dstaddr", 3;
    // ---- v4 ----
    Region, region: &'a str, "region", 4;
    AzId, az_id: &'a str, "az-id", 4;
    SublocationType, sublocation_type: SublocationType, "sublocation-type", 4;
    SublocationId, sublocation_id: &'a str, "sublocation-id", 4;
    // ---- v5 ----
    /// The ip-ranges.json subset of an AWS source address (an open set, so it is kept as text).
    PktSrcAwsService, pkt_src_aws_service: &'a str, "pkt-src-aws-service", 5;
    /// The ip-ranges.json subset of an AWS destination address.
    PktDstAwsService, pkt_dst_aws_service: &'a str, "pkt-dst-aws-service", 5;
    FlowDirection, flow_direction: FlowDirection, "flow-direction", 5;
    /// Egress only: the path the traffic takes (codes 1–8).
    TrafficPath, traffic_path: TrafficPath, "traffic-path", 5;
    // ---- v6: the transit-gateway record family ----
    ResourceType, resource_type: ResourceType, "resource-type", 6;
    TgwId, tgw_id: &'a str, "tgw-id", 6;
    TgwAttachmentId, tgw_attachment_id: &'a str, "tgw-attachment-id", 6;
    TgwSrcVpcAccountId, tgw_src_vpc_account_id: &'a str, "tgw-src-vpc-account-id", 6;
    TgwDstVpcAccountId, tgw_dst_vpc_account_id: &'a str, "tgw-dst-vpc-account-id", 6;
    TgwSrcVpcId, tgw_src_vpc_id: &'a str, "tgw-src-vpc-id", 6;
    TgwDstVpcId, tgw_dst_vpc_id: &'a str, "tgw-dst-vpc-id", 6;
    TgwSrcSubnetId, tgw_src_subnet_id: &'a str, "tgw-src-subnet-id", 6;
    TgwDstSubnetId, tgw_dst_subnet_id: &'a str, "tgw-dst-subnet-id", 6;
    TgwSrcEni, tgw_src_eni: &'a str, "tgw-src-eni", 6;
    TgwDstEni, tgw_dst_eni: &'a str, "tgw-dst-eni", 6;
    TgwSrcAzId, tgw_src_az_id: &'a str, "tgw-src-az-id", 6;
    TgwDstAzId, tgw_dst_az_id: &'a str, "tgw-dst-az-id", 6;
    TgwPairAttachmentId, tgw_pair_attachment_id: &'a str, "tgw-pair-attachment-id", 6;
    PacketsLostNoRoute, packets_lost_no_route: u64, "packets-lost-no-route", 6;
    PacketsLostBlackhole, packets_lost_blackhole: u64, "packets-lost-blackhole", 6;
    PacketsLostMtuExceeded, packets_lost_mtu_exceeded: u64, "packets-lost-mtu-exceeded", 6;
    PacketsLostTtlExpired, packets_lost_ttl_expired: u64, "packets-lost-ttl-expired", 6;
    // ---- v7: ECS ----
    EcsClusterArn, ecs_cluster_arn: &'a str, "ecs-cluster-arn", 7;
    EcsClusterName, ecs_cluster_name: &'a str, "ecs-cluster-name", 7;
    EcsContainerInstanceArn, ecs_container_instance_arn: &'a str, "ecs-container-instance-arn", 7;
    EcsContainerInstanceId, ecs_container_instance_id: &'a str, "ecs-container-instance-id", 7;
    EcsContainerId, ecs_container_id: &'a str, "ecs-container-id", 7;
    EcsSecondContainerId, ecs_second_container_id: &'a str, "ecs-second-container-id", 7;
    EcsServiceName, ecs_service_name: &'a str, "ecs-service-name", 7;
    EcsTaskDefinitionArn, ecs_task_definition_arn: &'a str, "ecs-task-definition-arn", 7;
    EcsTaskArn, ecs_task_arn: &'a str, "ecs-task-arn", 7;
    EcsTaskId, ecs_task_id: &'a str, "ecs-task-id", 7;
    // ---- v8 and later ----
    /// Why traffic was rejected (`BPA` for VPC Block Public Access); an open set.
    RejectReason, reject_reason: &'a str, "reject-reason", 8;
    /// The resource behind the record, e.g. a regional NAT gateway `nat-…`.
    ResourceId, resource_id: &'a str, "resource-id", 9;
    /// 0 not encrypted, 1 Nitro, 2 application, 3 both.
    EncryptionStatus, encryption_status: EncryptionStatus, "encryption-status", 10;
    InstanceTag, instance_tag: &'a str, "instance-tag", 11;
    InstanceTag2, instance_tag_2: &'a str, "instance-tag-2", 11;
    InterfaceTag, interface_tag: &'a str, "interface-tag", 11;
    InterfaceTag2, interface_tag_2: &'a str, "interface-tag-2", 11;
    AsgTag, asg_tag: &'a str, "asg-tag", 11;
    AsgTag2, asg_tag_2: &'a str, "asg-tag-2", 11;
    InterfaceType, interface_type: &'a str, "interface-type", 11;
    NextHopInterfaceId, next_hop_interface_id: &'a str, "next-hop-interface-id", 11;
    NextHopSubnetId, next_hop_subnet_id: &'a str, "next-hop-subnet-id", 11;
    NextHopAzId, next_hop_az_id: &'a str, "next-hop-az-id", 11;
    NextHopVpcId, next_hop_vpc_id: &'a str, "next-hop-vpc-id", 11;
    NextHopInterfaceType, next_hop_interface_type: &'a str, "next-hop-interface-type", 11;
}

/// The default format's fields alone, in its order: what a plain default-format line holds.
///
/// [`crate::decode::line::parse_plain_line`] reads such lines (nearly every line AWS writes)
/// into this rather than into a [`FlowRecord`]: every member is written by the parse, where a
/// whole record (nearly a kilobyte of optional fields) must first be cleared, which costs more
/// than reading some of the fields. Its members are the record's, name for name and type for
/// type ([`DefaultRecord::fill`] would not compile otherwise).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DefaultRecord<'a> {
    pub version: Option<u8>,
    pub account_id: Option<&'a str>,
    pub interface_id: Option<&'a str>,
    pub srcaddr: Option<IpAddr>,
    pub dstaddr: Option<IpAddr>,
    pub srcport: Option<u16>,
    pub dstport: Option<u16>,
    pub protocol: Option<u8>,
    pub packets: Option<u64>,
    pub bytes: Option<u64>,
    pub start: Option<u64>,
    pub end: Option<u64>,
    pub action: Option<Action>,
    pub log_status: Option<LogStatus>,
}

impl<'a> DefaultRecord<'a> {
    /// Writes the default format's fields into `record`, leaving the others as they are.
    #[inline]
    pub fn fill(&self, record: &mut FlowRecord<'a>) {
        let DefaultRecord {
            version,
            account_id,
            interface_id,
            srcaddr,
            dstaddr,
            srcport,
            dstport,
            protocol,
            packets,
            bytes,
            start,
            end,
            action,
            log_status,
        } = *self;
        record.version = version;
        record.account_id = account_id;
        record.interface_id = interface_id;
        record.srcaddr = srcaddr;
        record.dstaddr = dstaddr;
        record.srcport = srcport;
        record.dstport = dstport;
        record.protocol = protocol;
        record.packets = packets;
        record.bytes = bytes;
        record.start = start;
        record.end = end;
        record.action = action;
        record.log_status = log_status;
    }
}

impl Field {
    /// Whether the field's value is written as a JSON integer (else as a string).
    pub fn is_integer(self) -> bool {
        self.kind().is_integer()
    }

    /// The number of fields, the largest number of tokens any layout can have.
    pub const COUNT: usize = Field::ALL.len();

    /// The field for a name as a format string or header may spell it: `${account-id}`,
    /// `account-id`, or VRL's `account_id`.
    pub fn from_format_token(token: &str) -> Option<Field> {
        let bare = token.strip_prefix("${").and_then(|t| t.strip_suffix('}')).unwrap_or(token);
        Field::from_name(bare).or_else(|| {
            bare.contains('_')
                .then(|| bare.replace('_', "-"))
                .and_then(|hyphenated| Field::from_name(&hyphenated))
        })
    }
}

impl std::fmt::Display for Field {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_are_unique() {
        let mut seen = std::collections::HashSet::new();
        for &field in Field::ALL {
            assert_eq!(Field::from_name(field.name()), Some(field));
            assert!(seen.insert(field.name()), "duplicate name {}", field.name());
        }
        assert_eq!(Field::COUNT, 72);
    }

    #[test]
    fn format_tokens_accept_dollar_braces_and_underscores() {
        assert_eq!(Field::from_format_token("${tcp-flags}"), Some(Field::TcpFlags));
        assert_eq!(Field::from_format_token("tcp-flags"), Some(Field::TcpFlags));
        assert_eq!(Field::from_format_token("tcp_flags"), Some(Field::TcpFlags));
        assert_eq!(Field::from_format_token("${tcp-flags"), None);
        assert_eq!(Field::from_format_token("flags"), None);
    }

    #[test]
    fn json_integer_fields_match_the_corpus_convention() {
        let ints: Vec<_> = Field::ALL.iter().filter(|f| f.is_integer()).map(|f| f.name()).collect();
        assert_eq!(
            ints,
            [
                "version",
                "srcport",
                "dstport",
                "protocol",
                "packets",
                "bytes",
                "start",
                "end",
                "tcp-flags",
                "traffic-path",
                "packets-lost-no-route",
                "packets-lost-blackhole",
                "packets-lost-mtu-exceeded",
                "packets-lost-ttl-expired",
                "encryption-status"
            ]
        );
    }
}
