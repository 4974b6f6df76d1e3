//! The enumerated flow-log fields, spelled exactly as AWS writes them.
//!
//! Values are case-sensitive (`accept` is not `ACCEPT`): AWS writes one spelling, so anything
//! else is junk rather than a variant. Open sets such as `pkt-src-aws-service` and
//! `reject-reason` are kept as strings, not enums, so new AWS values do not break parsing.

use serde::{Deserialize, Serialize};
use strum::{EnumString, IntoStaticStr, VariantArray, VariantNames};

/// `action`: whether the security group or network ACL let the traffic through.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Hash,
    PartialOrd,
    Ord,
    EnumString,
    IntoStaticStr,
    VariantArray,
    VariantNames,
    Serialize,
    Deserialize,
)]
pub enum Action {
    #[strum(serialize = "ACCEPT")]
    #[serde(rename = "ACCEPT")]
    Accept,
    /// Also covers packets that arrived after the connection was closed.
    #[strum(serialize = "REJECT")]
    #[serde(rename = "REJECT")]
    Reject,
}

/// `log-status`: whether the record carries traffic.
#[derive(
    Serialize,
    Deserialize,
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Hash,
    EnumString,
    IntoStaticStr,
    VariantArray,
    VariantNames,
)]
pub enum LogStatus {
    /// Data is logging normally.
    #[strum(serialize = "OK")]
    Ok,
    /// No traffic went to or from the interface during the aggregation interval.
    #[strum(serialize = "NODATA")]
    NoData,
    /// Records were skipped (internal capacity or error); one SKIPDATA can stand for many flows.
    #[strum(serialize = "SKIPDATA")]
    SkipData,
}

/// `type`: the traffic's address family.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, EnumString, IntoStaticStr, VariantArray, VariantNames,
)]
pub enum FlowType {
    #[strum(serialize = "IPv4")]
    IPv4,
    #[strum(serialize = "IPv6")]
    IPv6,
    /// Elastic Fabric Adapter.
    #[strum(serialize = "EFA")]
    Efa,
}

/// `flow-direction`, relative to the interface that captured the record.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, EnumString, IntoStaticStr, VariantArray, VariantNames,
)]
pub enum FlowDirection {
    #[strum(serialize = "ingress")]
    Ingress,
    #[strum(serialize = "egress")]
    Egress,
}

/// `sublocation-type`: where the traffic came from when not from an Availability Zone.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, EnumString, IntoStaticStr, VariantArray, VariantNames,
)]
pub enum SublocationType {
    #[strum(serialize = "wavelength")]
    Wavelength,
    #[strum(serialize = "outpost")]
    Outpost,
    #[strum(serialize = "localzone")]
    LocalZone,
}

/// `resource-type` of transit-gateway flow logs.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, EnumString, IntoStaticStr, VariantArray, VariantNames,
)]
pub enum ResourceType {
    #[strum(serialize = "TransitGateway")]
    TransitGateway,
    #[strum(serialize = "TransitGatewayAttachment")]
    TransitGatewayAttachment,
}

/// `traffic-path` (egress only): the path egress traffic takes to its destination.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, IntoStaticStr, VariantArray)]
#[repr(u8)]
pub enum TrafficPath {
    /// Through another resource in the same VPC.
    SameVpc = 1,
    /// Through an internet gateway or a gateway VPC endpoint.
    InternetGatewayOrGatewayEndpoint = 2,
    /// Through a virtual private gateway.
    VirtualPrivateGateway = 3,
    /// Through an intra-region VPC peering connection.
    IntraRegionPeering = 4,
    /// Through an inter-region VPC peering connection.
    InterRegionPeering = 5,
    /// Through a local gateway.
    LocalGateway = 6,
    /// Through a gateway VPC endpoint (Nitro-based instances only).
    GatewayVpcEndpoint = 7,
    /// Through an internet gateway (Nitro-based instances only).
    InternetGateway = 8,
}

impl TrafficPath {
    /// The variant for a documented code, `None` for any other number.
    pub fn from_code(code: u8) -> Option<Self> {
        Self::VARIANTS.iter().copied().find(|v| *v as u8 == code)
    }
}

/// `encryption-status` (v10): how the traffic was encrypted in transit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, IntoStaticStr, VariantArray)]
#[repr(u8)]
pub enum EncryptionStatus {
    NotEncrypted = 0,
    /// Encrypted by the Nitro system.
    Nitro = 1,
    /// Encrypted by the application (TLS to an endpoint that requires it).
    Application = 2,
    /// Both Nitro and application encryption.
    Both = 3,
}

impl EncryptionStatus {
    /// The variant for a documented code, `None` for any other number.
    pub fn from_code(code: u8) -> Option<Self> {
        Self::VARIANTS.iter().copied().find(|v| *v as u8 == code)
    }
}
