//! This module provides a seeded synthetic flow-log generator: its records have a realistic
//! shape and are fully reproducible.
//!
//! The same seed and configuration always give the same records. Interfaces carry heavy-tailed
//! traffic (a Zipf choice of interface), sources follow a Zipf law per interface, flows have
//! Pareto-distributed sizes, ports come from a service mix, and a configurable share of records
//! are rejects, NODATA, SKIPDATA or IPv6. Every interface has known local addresses
//! ([`Generator::local_addresses`]): an IPv4 and an IPv6 address, and on every third interface
//! a secondary IPv4 address; half the records are traffic to the interface and half from it,
//! and every sixteenth interface (from the fourth) is a NAT gateway whose records carry other
//! packet-level addresses. Event time advances at a given rate with bounded
//! disorder; a scan storm can be switched on for a time span, sending records from millions of
//! distinct sources to one interface. Records render in any [`Layout`].
//!
//! ```
//! use vpcflowd::generate::{Generator, GeneratorConfig};
//! let mut a = Generator::new(GeneratorConfig { seed: 7, ..Default::default() });
//! let mut b = Generator::new(GeneratorConfig { seed: 7, ..Default::default() });
//! let layout = vpcflowd::decode::Layout::default_format();
//! let (mut la, mut lb) = (String::new(), String::new());
//! for _ in 0..100 {
//!     a.next_record().render(&layout, &mut la);
//!     b.next_record().render(&layout, &mut lb);
//! }
//! assert_eq!(la, lb);
//! ```

use std::fmt::Write;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};
use rand_distr::{Distribution, Pareto, Zipf};

use crate::decode::{Field, Layout};

/// What to generate.
#[derive(Debug, Clone, PartialEq)]
pub struct GeneratorConfig {
    pub seed: u64,
    /// Number of interfaces; traffic among them is Zipf-distributed.
    pub interfaces: u64,
    /// Distinct sources per interface (Zipf-distributed).
    pub sources_per_interface: u64,
    /// Event time of the first record (Unix seconds).
    pub start: u64,
    /// Records per second of event time.
    pub records_per_second: f64,
    /// Largest backwards jump of a record's time behind the generator's clock (seconds).
    pub disorder_secs: u64,
    pub reject_ratio: f64,
    pub nodata_ratio: f64,
    pub skipdata_ratio: f64,
    pub ipv6_ratio: f64,
    /// An optional scan storm: from its `start`, for `duration` seconds, its `share` of the
    /// records are rejected scan probes to the most active interface (see [`ScanKind`]).
    pub scan: Option<ScanStorm>,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ScanStorm {
    pub start: u64,
    pub duration: u64,
    pub share: f64,
    pub kind: ScanKind,
}

/// Who probes during a [`ScanStorm`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ScanKind {
    /// Every probe comes from a fresh random source and goes to a random port: millions of
    /// distinct sources, the case that must not exhaust memory.
    #[default]
    SourceStorm,
    /// One source ([`SCANNER`]) walks the destination ports in order, so that one source has a
    /// huge number of distinct small flows.
    PortScan,
    /// One source ([`SWEEPER`]) probes port 22 of every interface in turn, rejected: a host scan
    /// that each interface sees only a little of.
    Sweep,
    /// The busiest interface keeps trying to reach one outside address ([`DENIED_DESTINATION`],
    /// port 4444) and is rejected: a misconfigured or compromised instance.
    DeniedOutbound,
    /// A client ([`NACL_CLIENT`]) connects to port 443 of the busiest interface and is
    /// accepted, and each reply is rejected going out: a network ACL that lacks the ephemeral
    /// ports (a stateful security group would let the replies out). Records come in pairs.
    NaclAsymmetry,
    /// One source ([`SPIKER`]) sends the busiest interface 20 kB per record, accepted, and
    /// 5 MB per record for `burst_secs` from `burst_start`: a spike against its own baseline.
    Spike { burst_start: u64, burst_secs: u64 },
}

/// The source address of a [`ScanKind::Sweep`].
pub const SWEEPER: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 99);

/// The destination of a [`ScanKind::DeniedOutbound`].
pub const DENIED_DESTINATION: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 66);

/// The client of a [`ScanKind::NaclAsymmetry`].
pub const NACL_CLIENT: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 44);

/// The source of a [`ScanKind::Spike`].
pub const SPIKER: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 55);

/// The source address of a [`ScanKind::PortScan`].
pub const SCANNER: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 7);

impl Default for GeneratorConfig {
    fn default() -> Self {
        GeneratorConfig {
            seed: 1,
            interfaces: 50,
            sources_per_interface: 200,
            start: 1_700_000_000,
            records_per_second: 1000.0,
            disorder_secs: 60,
            reject_ratio: 0.05,
            nodata_ratio: 0.01,
            skipdata_ratio: 0.002,
            ipv6_ratio: 0.1,
            scan: None,
        }
    }
}

/// A generated record, owning nothing on the heap.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct GenRecord {
    pub interface: u64,
    pub status: GenStatus,
    pub srcaddr: IpAddr,
    pub dstaddr: IpAddr,
    pub srcport: u16,
    pub dstport: u16,
    pub protocol: u8,
    pub packets: u64,
    pub bytes: u64,
    pub start: u64,
    pub end: u64,
    pub reject: bool,
    pub egress: bool,
    /// The packet-level addresses (`pkt-srcaddr`, `pkt-dstaddr`): the header ones, except on a
    /// NAT gateway, whose packets come from or go to a host behind the remote end.
    pub pkt_srcaddr: IpAddr,
    pub pkt_dstaddr: IpAddr,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GenStatus {
    Ok,
    NoData,
    SkipData,
}

/// The account id of every generated record.
pub const ACCOUNT: &str = "123456789012";
/// The region of every generated record (in layouts with `region`).
pub const REGION: &str = "us-east-1";

/// Service ports and their protocols, most common first.
const SERVICES: [(u16, u8); 10] = [
    (443, 6),
    (80, 6),
    (53, 17),
    (22, 6),
    (3306, 6),
    (5432, 6),
    (6379, 6),
    (123, 17),
    (8080, 6),
    (3389, 6),
];

/// See the module documentation.
pub struct Generator {
    config: GeneratorConfig,
    rng: StdRng,
    interfaces: Zipf<f64>,
    sources: Zipf<f64>,
    services: Zipf<f64>,
    flow_bytes: Pareto<f64>,
    clock: f64,
    /// The next destination port of a port scan.
    scan_port: u16,
    /// The client port of a [`ScanKind::NaclAsymmetry`] request whose reply comes next.
    pending_reply: Option<u16>,
}

impl Generator {
    pub fn new(config: GeneratorConfig) -> Self {
        let n = |x: u64| (x.max(1)) as f64;
        Generator {
            rng: StdRng::seed_from_u64(config.seed),
            interfaces: Zipf::new(n(config.interfaces), 1.1).expect("valid Zipf"),
            sources: Zipf::new(n(config.sources_per_interface), 1.2).expect("valid Zipf"),
            services: Zipf::new(SERVICES.len() as f64, 1.0).expect("valid Zipf"),
            // Flow sizes start at 60 bytes and have a heavy tail.
            flow_bytes: Pareto::new(60.0, 1.1).expect("valid Pareto"),
            clock: config.start as f64,
            scan_port: 1,
            pending_reply: None,
            config,
        }
    }

    /// The interface id of interface number `i`.
    pub fn interface_id(i: u64) -> String {
        format!("eni-{:017x}", 0x0abc_0000_0000_0000u64 + i)
    }

    /// The interface's own addresses: IPv4, IPv6, and on every third interface a secondary
    /// IPv4 address.
    pub fn local_addresses(iface: u64) -> Vec<IpAddr> {
        let mut addrs = vec![Self::interface_addr(iface, false), Self::interface_addr(iface, true)];
        if Self::has_secondary(iface) {
            addrs.push(Self::secondary_addr(iface));
        }
        addrs
    }

    /// The local addresses of interfaces `0..interfaces` as the JSON `--local-addresses` reads.
    pub fn local_addresses_json(interfaces: u64) -> String {
        let map: serde_json::Map<String, serde_json::Value> = (0..interfaces)
            .map(|i| {
                let addrs = Self::local_addresses(i).iter().map(|a| a.to_string().into()).collect();
                (Self::interface_id(i), serde_json::Value::Array(addrs))
            })
            .collect();
        serde_json::Value::Object(map).to_string()
    }

    fn has_secondary(iface: u64) -> bool {
        iface % 3 == 1
    }

    fn secondary_addr(iface: u64) -> IpAddr {
        IpAddr::V4(Ipv4Addr::from(0xac20_0000 | (iface as u32 & 0x000f_ffff)))
    }

    /// Whether interface `iface` is a NAT gateway's.
    pub fn is_nat_gateway(iface: u64) -> bool {
        iface % 16 == 3
    }

    /// The host behind a NAT gateway that a remote address's packets go to or come from.
    fn beyond_nat(remote: IpAddr) -> IpAddr {
        match remote {
            IpAddr::V4(a) => IpAddr::V4(Ipv4Addr::from(0xc612_0000 | (a.to_bits() & 0xffff))),
            IpAddr::V6(a) => IpAddr::V6(Ipv6Addr::from(a.to_bits() ^ (0x64 << 96))),
        }
    }

    /// The address of source number `i` of interface `iface` (v6 for some, by a fixed rule).
    fn source_addr(&self, iface: u64, i: u64, v6: bool) -> IpAddr {
        let h = splitmix(iface.wrapping_mul(1_000_003).wrapping_add(i));
        if v6 {
            IpAddr::V6(Ipv6Addr::new(
                0x2001,
                0x0db8,
                (iface & 0xffff) as u16,
                0,
                0,
                0,
                (h >> 16) as u16,
                h as u16,
            ))
        } else {
            IpAddr::V4(Ipv4Addr::from(0x0a00_0000 | ((h as u32) & 0x00ff_ffff)))
        }
    }

    fn interface_addr(iface: u64, v6: bool) -> IpAddr {
        if v6 {
            IpAddr::V6(Ipv6Addr::new(
                0x2001,
                0x0db8,
                0xffff,
                0,
                0,
                0,
                (iface >> 16) as u16,
                iface as u16,
            ))
        } else {
            IpAddr::V4(Ipv4Addr::from(0xac10_0000 | (iface as u32 & 0x000f_ffff)))
        }
    }

    /// One probe of a sweep (the next interface's port 22) or of a denied outbound connection
    /// (from the busiest interface), rejected.
    fn probe(&mut self, kind: ScanKind, start: u64, end: u64) -> GenRecord {
        let (iface, srcaddr, dstaddr, dstport, egress) = if kind == ScanKind::Sweep {
            let iface = u64::from(self.scan_port) % self.config.interfaces.max(1);
            self.scan_port = self.scan_port.wrapping_add(1);
            (iface, IpAddr::V4(SWEEPER), Self::interface_addr(iface, false), 22, false)
        } else {
            (0, Self::interface_addr(0, false), IpAddr::V4(DENIED_DESTINATION), 4444, true)
        };
        GenRecord {
            interface: iface,
            status: GenStatus::Ok,
            srcaddr,
            dstaddr,
            srcport: self.rng.random_range(1024..=65535),
            dstport,
            protocol: 6,
            packets: 1,
            bytes: 40,
            start,
            end,
            reject: true,
            egress,
            pkt_srcaddr: srcaddr,
            pkt_dstaddr: dstaddr,
        }
    }

    /// The next record of a [`ScanKind::NaclAsymmetry`]: a request from one of four client
    /// ports, accepted, then its reply, rejected.
    fn nacl_record(&mut self, start: u64, end: u64) -> GenRecord {
        let local = Self::interface_addr(0, false);
        let client = IpAddr::V4(NACL_CLIENT);
        let (srcaddr, dstaddr, srcport, dstport, reject) = match self.pending_reply.take() {
            Some(port) => (local, client, 443, port, true),
            None => {
                let port = 49_152 + self.rng.random_range(0..4u16);
                self.pending_reply = Some(port);
                (client, local, port, 443, false)
            }
        };
        GenRecord {
            interface: 0,
            status: GenStatus::Ok,
            srcaddr,
            dstaddr,
            srcport,
            dstport,
            protocol: 6,
            packets: 3,
            bytes: 180,
            start,
            end,
            reject,
            egress: reject,
            pkt_srcaddr: srcaddr,
            pkt_dstaddr: dstaddr,
        }
    }

    /// The next record of a [`ScanKind::Spike`] starting at `start`.
    fn spike_record(&mut self, burst: (u64, u64), start: u64, end: u64) -> GenRecord {
        let in_burst = start >= burst.0 && start < burst.0.saturating_add(burst.1);
        let bytes = if in_burst { 5_000_000 } else { 20_000 };
        let (srcaddr, dstaddr) = (IpAddr::V4(SPIKER), Self::interface_addr(0, false));
        GenRecord {
            interface: 0,
            status: GenStatus::Ok,
            srcaddr,
            dstaddr,
            srcport: self.rng.random_range(32768..=60999),
            dstport: 443,
            protocol: 6,
            packets: bytes / 1000,
            bytes,
            start,
            end,
            reject: false,
            egress: false,
            pkt_srcaddr: srcaddr,
            pkt_dstaddr: dstaddr,
        }
    }

    /// A record of a scan storm of `kind`.
    fn storm_record(&mut self, kind: ScanKind, start: u64, end: u64) -> GenRecord {
        let (srcaddr, dstport, v6) = match kind {
            ScanKind::Sweep | ScanKind::DeniedOutbound => return self.probe(kind, start, end),
            ScanKind::NaclAsymmetry => return self.nacl_record(start, end),
            ScanKind::Spike { burst_start, burst_secs } => {
                return self.spike_record((burst_start, burst_secs), start, end);
            }
            ScanKind::SourceStorm => {
                let v6 = self.rng.random_bool(self.config.ipv6_ratio.clamp(0.0, 1.0));
                let fresh = self.rng.random::<u64>();
                (self.source_addr(u64::MAX, fresh, v6), self.rng.random_range(1..=65535), v6)
            }
            ScanKind::PortScan => {
                let port = self.scan_port;
                self.scan_port = port.checked_add(1).unwrap_or(1);
                (IpAddr::V4(SCANNER), port, false)
            }
        };
        GenRecord {
            interface: 0,
            status: GenStatus::Ok,
            srcaddr,
            dstaddr: Self::interface_addr(0, v6),
            srcport: self.rng.random_range(1024..=65535),
            dstport,
            protocol: 6,
            packets: 1,
            bytes: 40 + u64::from(v6) * 20,
            start,
            end,
            reject: true,
            egress: false,
            pkt_srcaddr: srcaddr,
            pkt_dstaddr: Self::interface_addr(0, v6),
        }
    }

    /// The next record.
    pub fn next_record(&mut self) -> GenRecord {
        self.clock += 1.0 / self.config.records_per_second.max(1e-9);
        let now = self.clock as u64;
        let jitter = if self.config.disorder_secs > 0 {
            self.rng.random_range(0..=self.config.disorder_secs)
        } else {
            0
        };
        let start = now.saturating_sub(jitter);
        let end = start + self.rng.random_range(1..=60);
        // A pending reply comes next, so that a pair is never split by the storm's end.
        let storm = self.config.scan.filter(|s| {
            self.pending_reply.is_some()
                || (now >= s.start
                    && now < s.start + s.duration
                    && self.rng.random_bool(s.share.clamp(0.0, 1.0)))
        });
        if let Some(storm) = storm {
            return self.storm_record(storm.kind, start, end);
        }
        let iface = self.interfaces.sample(&mut self.rng) as u64 - 1;
        let roll: f64 = self.rng.random();
        let status = if roll < self.config.nodata_ratio {
            GenStatus::NoData
        } else if roll < self.config.nodata_ratio + self.config.skipdata_ratio {
            GenStatus::SkipData
        } else {
            GenStatus::Ok
        };
        let source = self.sources.sample(&mut self.rng) as u64 - 1;
        let v6 = splitmix(source ^ iface) % 1000 < (self.config.ipv6_ratio * 1000.0) as u64;
        let (port, protocol) = SERVICES[self.services.sample(&mut self.rng) as usize - 1];
        let bytes = (self.flow_bytes.sample(&mut self.rng) as u64).min(10_000_000_000);
        let packet_size = self.rng.random_range(40..=1500u64);
        let packets = bytes.div_ceil(packet_size).max(1);
        let egress = self.rng.random_bool(0.5);
        // A fixed share of a secondary address's sources talk to it instead of the primary.
        let local = if !v6 && Self::has_secondary(iface) && splitmix(source ^ 0x5ec0) % 10 < 3 {
            Self::secondary_addr(iface)
        } else {
            Self::interface_addr(iface, v6)
        };
        let (srcaddr, dstaddr, srcport, dstport) = if egress {
            (local, self.source_addr(iface, source, v6), self.rng.random_range(32768..=60999), port)
        } else {
            (self.source_addr(iface, source, v6), local, self.rng.random_range(32768..=60999), port)
        };
        // A NAT gateway forwards what it receives on to a host beyond it, and what it sends
        // comes from one.
        let (pkt_srcaddr, pkt_dstaddr) = match (Self::is_nat_gateway(iface), egress) {
            (false, _) => (srcaddr, dstaddr),
            (true, false) => (srcaddr, Self::beyond_nat(srcaddr)),
            (true, true) => (Self::beyond_nat(dstaddr), dstaddr),
        };
        GenRecord {
            interface: iface,
            status,
            srcaddr,
            dstaddr,
            srcport,
            dstport,
            protocol,
            packets,
            bytes,
            start,
            end,
            reject: self.rng.random_bool(self.config.reject_ratio.clamp(0.0, 1.0)),
            egress,
            pkt_srcaddr,
            pkt_dstaddr,
        }
    }
}

impl GenRecord {
    /// Appends the record as a line (no newline) in `layout`, `-` for fields it does not set.
    /// Every record has account [`ACCOUNT`] and region [`REGION`].
    pub fn render(&self, layout: &Layout, out: &mut String) {
        let ok = self.status == GenStatus::Ok;
        for (i, &field) in layout.fields().iter().enumerate() {
            if i > 0 {
                out.push(' ');
            }
            let _ = match field {
                Field::Version => write!(out, "{}", layout.version()),
                Field::AccountId => out.write_str(ACCOUNT),
                Field::InterfaceId => write!(out, "{}", Generator::interface_id(self.interface)),
                Field::Srcaddr if ok => write!(out, "{}", self.srcaddr),
                Field::Dstaddr if ok => write!(out, "{}", self.dstaddr),
                Field::PktSrcaddr if ok => write!(out, "{}", self.pkt_srcaddr),
                Field::PktDstaddr if ok => write!(out, "{}", self.pkt_dstaddr),
                Field::Srcport if ok => write!(out, "{}", self.srcport),
                Field::Dstport if ok => write!(out, "{}", self.dstport),
                Field::Protocol if ok => write!(out, "{}", self.protocol),
                Field::Packets if ok => write!(out, "{}", self.packets),
                Field::Bytes if ok => write!(out, "{}", self.bytes),
                Field::Start => write!(out, "{}", self.start),
                Field::End => write!(out, "{}", self.end),
                Field::Action if ok => out.write_str(if self.reject { "REJECT" } else { "ACCEPT" }),
                Field::LogStatus => out.write_str(match self.status {
                    GenStatus::Ok => "OK",
                    GenStatus::NoData => "NODATA",
                    GenStatus::SkipData => "SKIPDATA",
                }),
                Field::VpcId => write!(out, "vpc-{:017x}", 0xfeed_u64),
                Field::SubnetId => write!(out, "subnet-{:017x}", self.interface % 8),
                Field::InstanceId => write!(out, "i-{:017x}", self.interface),
                Field::TcpFlags if ok && self.protocol == 6 => {
                    out.write_str(if self.reject { "2" } else { "19" })
                }
                Field::Type if ok => {
                    out.write_str(if self.srcaddr.is_ipv6() { "IPv6" } else { "IPv4" })
                }
                Field::Region => out.write_str(REGION),
                Field::AzId => write!(out, "use1-az{}", self.interface % 6 + 1),
                Field::FlowDirection if ok => {
                    out.write_str(if self.egress { "egress" } else { "ingress" })
                }
                Field::TrafficPath if ok && self.egress => out.write_str("1"),
                _ => out.write_str("-"),
            };
        }
    }
}

/// A fixed 64-bit mix (SplitMix64's finaliser), for addresses derived from indices.
fn splitmix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decode::{LayoutSet, parse_line};

    #[test]
    fn generated_lines_parse_under_their_layout() {
        let v5 = "version srcaddr dstaddr srcport dstport protocol start end type packets bytes account-id vpc-id subnet-id instance-id interface-id region az-id sublocation-type sublocation-id action tcp-flags pkt-srcaddr pkt-dstaddr pkt-src-aws-service pkt-dst-aws-service traffic-path flow-direction log-status";
        for format in
            ["default", v5, "instance-id interface-id srcaddr dstaddr pkt-srcaddr pkt-dstaddr"]
        {
            let layouts = LayoutSet::from_formats(&[format]).unwrap();
            let layout = &layouts.layouts()[0];
            let mut g = Generator::new(GeneratorConfig {
                ipv6_ratio: 0.3,
                nodata_ratio: 0.1,
                ..Default::default()
            });
            for _ in 0..2000 {
                let mut line = String::new();
                g.next_record().render(layout, &mut line);
                parse_line(&layouts, line.as_bytes()).unwrap_or_else(|e| panic!("{line}: {e}"));
            }
        }
    }

    #[test]
    fn every_record_has_exactly_one_local_endpoint_and_nat_packets_go_beyond() {
        let mut g = Generator::new(GeneratorConfig { ipv6_ratio: 0.3, ..Default::default() });
        let (mut secondary, mut nat) = (0, 0);
        for _ in 0..20_000 {
            let r = g.next_record();
            if r.status != GenStatus::Ok {
                continue;
            }
            let locals = Generator::local_addresses(r.interface);
            let (src, dst) = (locals.contains(&r.srcaddr), locals.contains(&r.dstaddr));
            assert!(src != dst && src == r.egress, "{r:?}");
            secondary +=
                usize::from(r.srcaddr == locals[2.min(locals.len() - 1)] && locals.len() == 3);
            if Generator::is_nat_gateway(r.interface) {
                nat += 1;
                let remote = if r.egress { r.pkt_srcaddr } else { r.pkt_dstaddr };
                assert!(!locals.contains(&remote) && remote != r.srcaddr && remote != r.dstaddr);
            } else {
                assert_eq!((r.pkt_srcaddr, r.pkt_dstaddr), (r.srcaddr, r.dstaddr));
            }
        }
        assert!(secondary > 100 && nat > 100, "{secondary} {nat}");
    }

    #[test]
    fn traffic_is_heavy_tailed_and_disorder_bounded() {
        let mut g = Generator::new(GeneratorConfig { disorder_secs: 30, ..Default::default() });
        let mut per_iface = vec![0u64; 50];
        let mut max_seen = 0;
        for _ in 0..20_000 {
            let r = g.next_record();
            per_iface[r.interface as usize] += 1;
            assert!(r.start + 31 > max_seen, "disorder beyond 30 s");
            max_seen = max_seen.max(r.start);
        }
        per_iface.sort_unstable();
        assert!(
            per_iface[49] > 10 * per_iface[25],
            "top interface far above the median: {per_iface:?}"
        );
    }

    #[test]
    fn scan_storms_bring_fresh_sources() {
        let start = 1_700_000_000;
        let cfg = GeneratorConfig {
            scan: Some(ScanStorm { start, duration: 100, share: 0.9, kind: ScanKind::SourceStorm }),
            ..Default::default()
        };
        let mut g = Generator::new(cfg);
        let mut sources = std::collections::HashSet::new();
        for _ in 0..10_000 {
            let r = g.next_record();
            if r.interface == 0 && r.reject {
                sources.insert(r.srcaddr);
            }
        }
        assert!(sources.len() > 8000, "{}", sources.len());
    }

    #[test]
    fn a_port_scan_is_one_source_walking_the_ports() {
        let start = 1_700_000_000;
        let cfg = GeneratorConfig {
            scan: Some(ScanStorm { start, duration: 100, share: 0.5, kind: ScanKind::PortScan }),
            ..Default::default()
        };
        let mut g = Generator::new(cfg);
        let ports: Vec<u16> = (0..10_000)
            .map(|_| g.next_record())
            .filter(|r| r.srcaddr == IpAddr::V4(SCANNER))
            .map(|r| {
                assert!(r.reject && r.interface == 0 && r.packets == 1);
                r.dstport
            })
            .collect();
        assert!((4000..6000).contains(&ports.len()), "{}", ports.len());
        assert!(ports.iter().enumerate().all(|(i, &p)| usize::from(p) == i + 1));
    }

    #[test]
    fn a_nacl_asymmetry_is_accepted_requests_each_followed_by_its_rejected_reply() {
        let start = 1_700_000_000;
        let kind = ScanKind::NaclAsymmetry;
        let cfg = GeneratorConfig {
            scan: Some(ScanStorm { start, duration: 50, share: 0.3, kind }),
            ..Default::default()
        };
        let mut g = Generator::new(cfg);
        let client = IpAddr::V4(NACL_CLIENT);
        let records: Vec<GenRecord> = (0..100_000)
            .map(|_| g.next_record())
            .filter(|r| r.srcaddr == client || r.dstaddr == client)
            .collect();
        assert!(records.len() > 10_000, "{}", records.len());
        assert_eq!(records.len() % 2, 0, "no pair is split by the storm's end");
        for pair in records.chunks(2) {
            let (request, reply) = (&pair[0], &pair[1]);
            assert!(!request.reject && !request.egress && request.dstport == 443);
            assert!(reply.reject && reply.egress && reply.srcport == 443);
            assert_eq!((reply.dstaddr, reply.dstport), (request.srcaddr, request.srcport));
            assert_eq!(reply.srcaddr, request.dstaddr);
        }
    }

    #[test]
    fn a_spike_sends_5_mb_records_only_in_its_burst() {
        let start = 1_700_000_000;
        let kind = ScanKind::Spike { burst_start: start + 20, burst_secs: 10 };
        let cfg = GeneratorConfig {
            scan: Some(ScanStorm { start, duration: 100, share: 0.1, kind }),
            disorder_secs: 0,
            ..Default::default()
        };
        let mut g = Generator::new(cfg);
        let spiker: Vec<GenRecord> = (0..50_000)
            .map(|_| g.next_record())
            .filter(|r| r.srcaddr == IpAddr::V4(SPIKER))
            .collect();
        assert!(spiker.len() > 4000, "{}", spiker.len());
        for r in &spiker {
            let in_burst = (start + 20..start + 30).contains(&r.start);
            assert_eq!(r.bytes, if in_burst { 5_000_000 } else { 20_000 }, "{r:?}");
        }
        assert!(spiker.iter().any(|r| r.bytes == 5_000_000));
    }
}
