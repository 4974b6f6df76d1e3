//! This module decides whether a record is traffic to its interface (`ingress`), from it
//! (`egress`) or neither can be told (`unknown`), and which rule decided it ([`Basis`]).
//!
//! The router decides every record's direction before it batches the record to a shard, so the
//! decision depends only on the order of the input, never on the shard count. The rules, in
//! order (ARCHITECTURE.md states them with the inference's constants):
//!
//! 1. A record with a `flow-direction` value takes it ([`Basis::FlowDirection`]).
//! 2. An interface with configured local addresses ([`LocalAddresses`]) is the receiver of a
//!    record whose destination is local and whose source is not, and the sender of the reverse
//!    ([`Basis::Configured`]).
//! 3. Otherwise the interface's own addresses are learned from its records ([`Basis::Inferred`])
//!    and used as in rule 2.
//!
//! A record with both or neither endpoint local stays `unknown`.
//!
//! ```
//! use vpcflowd::window::direction::{Direction, DirectionBook, DirectionSettings};
//! use vpcflowd::record::RouteFields;
//! let mut book = DirectionBook::new(DirectionSettings::default());
//! let local = "172.16.0.1".parse().unwrap();
//! let mut seen = Direction::Unknown;
//! // Four remote peers are enough to learn the interface's address.
//! for peer in ["10.0.0.1", "10.0.0.2", "10.0.0.3", "10.0.0.4", "10.0.0.5"] {
//!     let fields = RouteFields {
//!         srcaddr: Some(peer.parse().unwrap()),
//!         dstaddr: Some(local),
//!         ..RouteFields::default()
//!     };
//!     seen = book.decide(0, "eni-1", &fields).direction;
//! }
//! assert_eq!(seen, Direction::Ingress);
//! ```

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::decode::FlowDirection;
use crate::record::RouteFields;
use crate::window::inventory::Inventory;

/// Whether a record is traffic to its interface or from it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Direction {
    /// Traffic to the interface.
    Ingress,
    /// Traffic from the interface.
    Egress,
    /// Neither could be told.
    #[default]
    Unknown,
}

impl Direction {
    /// The index of the direction in per-direction arrays.
    pub fn index(self) -> usize {
        self as usize
    }
}

/// The rule that decided (or failed to decide) a record's direction.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Basis {
    /// The record's `flow-direction` field.
    FlowDirection,
    /// The interface's configured local addresses.
    Configured,
    /// The interface's addresses learned from its records.
    Inferred,
    /// `--direction off`: no direction is decided.
    #[default]
    Off,
}

impl Basis {
    const ALL: [Basis; 4] = [Basis::FlowDirection, Basis::Configured, Basis::Inferred, Basis::Off];

    /// The basis as the snapshot names it.
    pub fn name(self) -> &'static str {
        match self {
            Basis::FlowDirection => "flow-direction",
            Basis::Configured => "configured",
            Basis::Inferred => "inferred",
            Basis::Off => "off",
        }
    }
}

/// The set of bases a window's records were decided on.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Bases(u8);

impl Bases {
    pub fn insert(&mut self, basis: Basis) {
        self.0 |= 1 << basis as u8;
    }

    pub fn union(&mut self, other: Bases) {
        self.0 |= other.0;
    }

    pub fn contains(&self, basis: Basis) -> bool {
        self.0 & (1 << basis as u8) != 0
    }

    /// Whether no record was decided on any basis but `off` (or there was none).
    pub fn is_off(&self) -> bool {
        self.0 & !(1 << Basis::Off as u8) == 0
    }

    /// The one basis, `"mixed"` for several, and `"off"` for none (a window without records
    /// is never emitted).
    pub fn name(&self) -> &'static str {
        let mut present = Basis::ALL.iter().filter(|b| self.contains(**b));
        match (present.next(), present.next()) {
            (Some(b), None) => b.name(),
            (Some(_), Some(_)) => "mixed",
            (None, _) => Basis::Off.name(),
        }
    }
}

/// Whether directions are decided at all (`--direction`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DirectionMode {
    /// Decide each record's direction by the rules of this module.
    #[default]
    Auto,
    /// Decide nothing: sources are every record's source address, destinations every record's
    /// destination address, and shares are of all traffic.
    Off,
}

/// Which addresses a record is attributed to (`--address`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AddressMode {
    /// The packet-level `pkt-srcaddr` / `pkt-dstaddr` where the layout has them, so that traffic
    /// through a NAT gateway, a load balancer or an EKS pod is attributed to its real endpoint.
    #[default]
    Packet,
    /// Always the header `srcaddr` / `dstaddr`.
    Header,
}

/// An address or a CIDR block.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    network: IpAddr,
    prefix: u8,
}

impl Cidr {
    pub fn contains(&self, addr: &IpAddr) -> bool {
        match (self.network, addr) {
            (IpAddr::V4(n), IpAddr::V4(a)) => {
                let mask = u32::MAX.checked_shl(32 - u32::from(self.prefix)).unwrap_or(0);
                n.to_bits() & mask == a.to_bits() & mask
            }
            (IpAddr::V6(n), IpAddr::V6(a)) => {
                let mask = u128::MAX.checked_shl(128 - u32::from(self.prefix)).unwrap_or(0);
                n.to_bits() & mask == a.to_bits() & mask
            }
            _ => false,
        }
    }
}

impl std::str::FromStr for Cidr {
    type Err = String;

    fn from_str(s: &str) -> Result<Cidr, String> {
        let (addr, prefix) = match s.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (s, None),
        };
        let network: IpAddr =
            addr.parse().map_err(|_| format!("{s:?} is not an address or CIDR block"))?;
        let max = if network.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            None => max,
            Some(p) => match p.parse::<u8>() {
                Ok(n) if n <= max && p.bytes().all(|b| b.is_ascii_digit()) => n,
                _ => return Err(format!("{s:?}: the prefix length must be 0 to {max}")),
            },
        };
        Ok(Cidr { network, prefix })
    }
}

/// Configured local addresses: interface id → its addresses and CIDR blocks.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LocalAddresses {
    by_interface: HashMap<String, Arc<[Cidr]>>,
}

impl LocalAddresses {
    /// Parses `interface id → ["10.0.0.5", "10.0.1.0/24", …]`, naming the bad entry on error.
    pub fn parse<'a>(
        entries: impl IntoIterator<Item = (&'a str, &'a [String])>,
    ) -> Result<LocalAddresses, String> {
        let mut by_interface = HashMap::new();
        for (interface, blocks) in entries {
            let cidrs: Vec<Cidr> = blocks
                .iter()
                .map(|b| b.parse().map_err(|e| format!("local_addresses.{interface}: {e}")))
                .collect::<Result<_, _>>()?;
            by_interface.insert(interface.to_owned(), Arc::from(cidrs));
        }
        Ok(LocalAddresses { by_interface })
    }

    /// Reads a JSON object of the same shape as the `[window.local_addresses]` table.
    pub fn parse_json(text: &str) -> Result<LocalAddresses, String> {
        let map: HashMap<String, Vec<String>> = serde_json::from_str(text)
            .map_err(|e| format!("not {{\"eni-…\": [\"10.0.0.5\", …]}}: {e}"))?;
        LocalAddresses::parse(map.iter().map(|(k, v)| (k.as_str(), v.as_slice())))
    }

    /// Adds `other`'s interfaces, replacing ones both name.
    pub fn extend(&mut self, other: LocalAddresses) {
        self.by_interface.extend(other.by_interface);
    }

    pub fn get(&self, interface: &str) -> Option<&Arc<[Cidr]>> {
        self.by_interface.get(interface)
    }

    pub fn is_empty(&self) -> bool {
        self.by_interface.is_empty()
    }
}

/// How directions are decided: the engine's part of the configuration.
#[derive(Debug, Clone, Default)]
pub struct DirectionSettings {
    pub mode: DirectionMode,
    pub address: AddressMode,
    pub local_addresses: Arc<LocalAddresses>,
}

/// One record's direction and what the shard needs with it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decision {
    pub direction: Direction,
    pub basis: Basis,
    /// The interface's own (header) address in the record, when the direction is known.
    pub local: Option<IpAddr>,
    /// The source and destination the record is attributed to.
    pub srcaddr: Option<IpAddr>,
    pub dstaddr: Option<IpAddr>,
    /// The header address of the remote endpoint where it differs from the attributed one.
    pub via: Option<IpAddr>,
}

/// Distinct peers an address needs among records of no learned local address to be learned as
/// local. A remote address meets only the interface's own addresses on it, and an interface
/// rarely has four unlearned addresses at once.
pub const PEERS_TO_LEARN: u32 = 4;
/// Addresses learned per interface at most; after that nothing more is learned.
pub const MAX_LEARNED: usize = 16;
/// Candidate addresses tracked per interface while learning.
pub const CANDIDATES: usize = 16;

/// What an interface has learned about its own addresses.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct InterfaceLocals {
    /// Learned local addresses, in the order they were learned.
    learned: Vec<IpAddr>,
    /// Endpoints of records neither of whose endpoints is learned.
    candidates: Vec<Candidate>,
}

/// An endpoint of records with no learned address: how many such records, and its first
/// distinct peers (one fewer than [`PEERS_TO_LEARN`]: the next distinct one makes it local).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
struct Candidate {
    addr: IpAddr,
    records: u32,
    peers: [Option<IpAddr>; PEERS_TO_LEARN as usize - 1],
}

impl InterfaceLocals {
    pub fn learned(&self) -> &[IpAddr] {
        &self.learned
    }

    /// Whether `addr` is learned.
    #[inline]
    fn is_local(&self, addr: Option<IpAddr>) -> bool {
        addr.is_some_and(|a| contains_address(&self.learned, a))
    }

    /// Adds an address known to be local (from `flow-direction`), if there is room.
    fn learn(&mut self, addr: IpAddr) {
        if !contains_address(&self.learned, addr) && self.learned.len() < MAX_LEARNED {
            self.learned.push(addr);
            self.candidates.clear();
        }
    }

    /// Counts a record between `src` and `dst`, neither of them learned, and learns the first of
    /// them whose distinct peers reach [`PEERS_TO_LEARN`].
    fn observe(&mut self, src: IpAddr, dst: IpAddr) {
        if self.learned.len() >= MAX_LEARNED || src == dst {
            return;
        }
        let src_peers = self.count(src, dst);
        let dst_peers = self.count(dst, src);
        if src_peers >= PEERS_TO_LEARN {
            self.learn(src);
        } else if dst_peers >= PEERS_TO_LEARN {
            self.learn(dst);
        }
    }

    /// Counts `addr` as an endpoint of one more record with `peer`; returns its distinct peers
    /// (at most [`PEERS_TO_LEARN`]).
    fn count(&mut self, addr: IpAddr, peer: IpAddr) -> u32 {
        let fresh = Candidate { addr, records: 0, peers: [None; PEERS_TO_LEARN as usize - 1] };
        let i = match self.candidates.iter().position(|c| c.addr == addr) {
            Some(i) => i,
            None if self.candidates.len() < CANDIDATES => {
                self.candidates.push(fresh);
                self.candidates.len() - 1
            }
            None => {
                // The table is full: the candidate of fewest records (the first of them) gives
                // way, as a local address is an endpoint of nearly every record.
                let (i, _) = self
                    .candidates
                    .iter()
                    .enumerate()
                    .min_by_key(|(i, c)| (c.records, *i))
                    .expect("a full table");
                self.candidates[i] = fresh;
                i
            }
        };
        let c = &mut self.candidates[i];
        c.records = c.records.saturating_add(1);
        let known = c.peers.iter().flatten().count() as u32;
        if c.peers.contains(&Some(peer)) {
            return known;
        }
        match c.peers.iter_mut().find(|p| p.is_none()) {
            Some(slot) => {
                *slot = Some(peer);
                known + 1
            }
            None => PEERS_TO_LEARN,
        }
    }
}

/// An address as one integer pair: its bits and whether it is IPv6.
#[inline]
fn address_key(addr: IpAddr) -> (u128, bool) {
    match addr {
        IpAddr::V4(a) => (u128::from(a.to_bits()), false),
        IpAddr::V6(a) => (a.to_bits(), true),
    }
}

/// Whether `addrs` holds `addr`. Addresses compare as integers, which is cheaper than
/// `IpAddr`'s byte-wise equality on the router's and the shards' per-record paths.
#[inline]
pub(crate) fn contains_address(addrs: &[IpAddr], addr: IpAddr) -> bool {
    let key = address_key(addr);
    addrs.iter().any(|a| address_key(*a) == key)
}

/// The direction of a record whose source is local (`src`) or destination is (`dst`).
fn direction_of(src: bool, dst: bool) -> Direction {
    match (src, dst) {
        (false, true) => Direction::Ingress,
        (true, false) => Direction::Egress,
        _ => Direction::Unknown,
    }
}

/// Interface `id`'s state, created (with those of lower ids not seen yet) on first sight.
fn slot(interfaces: &mut Vec<InterfaceDirection>, id: u32) -> &mut InterfaceDirection {
    let i = id as usize;
    if i >= interfaces.len() {
        interfaces.resize_with(i + 1, InterfaceDirection::default);
    }
    &mut interfaces[i]
}

/// One interface's direction state in the router.
#[derive(Debug, Clone, Default)]
struct InterfaceDirection {
    /// Whether `configured` has been looked up for this interface.
    resolved: bool,
    configured: Option<Arc<[Cidr]>>,
    locals: InterfaceLocals,
}

/// The router's direction state of every interface, indexed by interned interface id.
#[derive(Debug, Clone, Default)]
pub struct DirectionBook {
    settings: DirectionSettings,
    interfaces: Vec<InterfaceDirection>,
    /// EC2's interfaces, whose addresses count as configured where the settings name none.
    inventory: Option<Arc<Inventory>>,
    /// The inventory's version when the interfaces' addresses were last looked up.
    inventory_version: u64,
}

impl DirectionBook {
    pub fn new(settings: DirectionSettings) -> DirectionBook {
        DirectionBook { settings, interfaces: Vec::new(), inventory: None, inventory_version: 0 }
    }

    /// A book that also takes an interface's addresses from `inventory` when the settings
    /// configure none for it.
    pub fn with_inventory(mut self, inventory: Option<Arc<Inventory>>) -> DirectionBook {
        self.inventory_version = inventory.as_ref().map_or(0, |i| i.version());
        self.inventory = inventory;
        self
    }

    /// Looks the interfaces' addresses up again when the inventory changed since. The router
    /// calls it between inputs (every request, batch and tick), not per record.
    pub fn follow_inventory(&mut self) {
        let Some(inventory) = &self.inventory else { return };
        let version = inventory.version();
        if version != self.inventory_version {
            self.inventory_version = version;
            self.interfaces.iter_mut().for_each(|s| s.resolved = false);
        }
    }

    /// A book that continues from a checkpoint's learned addresses.
    pub fn restored(settings: DirectionSettings, learned: Vec<(u32, InterfaceLocals)>) -> Self {
        let mut book = DirectionBook::new(settings);
        for (id, locals) in learned {
            slot(&mut book.interfaces, id).locals = locals;
        }
        book
    }

    /// What a checkpoint keeps: the learned state of every interface that has some.
    pub fn checkpoint(&self) -> Vec<(u32, InterfaceLocals)> {
        (0..)
            .zip(&self.interfaces)
            .filter(|(_, s)| s.locals != InterfaceLocals::default())
            .map(|(id, s)| (id, s.locals.clone()))
            .collect()
    }

    /// Decides the direction of a record on interface `id` (named `name`).
    #[inline]
    pub fn decide(&mut self, id: u32, name: &str, f: &RouteFields) -> Decision {
        let (header_src, header_dst) = (f.srcaddr, f.dstaddr);
        let DirectionBook { settings, interfaces, inventory, .. } = self;
        let slot = slot(interfaces, id);
        if !slot.resolved {
            // The configuration is looked up once per interface (and per inventory change),
            // not per record. The inventory learns of every interface it lacks, whatever the
            // direction mode.
            let ec2 = inventory.as_ref().and_then(|i| i.addresses(name));
            slot.configured = settings.local_addresses.get(name).cloned().or(ec2);
            slot.resolved = true;
        }
        if settings.mode == DirectionMode::Off {
            return Decision {
                direction: Direction::Unknown,
                basis: Basis::Off,
                local: None,
                srcaddr: header_src,
                dstaddr: header_dst,
                via: None,
            };
        }
        let packet = settings.address == AddressMode::Packet;
        let (basis, direction) = if let Some(fd) = f.flow_direction {
            let (direction, local) = match fd {
                FlowDirection::Ingress => (Direction::Ingress, header_dst),
                FlowDirection::Egress => (Direction::Egress, header_src),
            };
            if let Some(addr) = local {
                slot.locals.learn(addr);
            }
            (Basis::FlowDirection, direction)
        } else if let Some(cidrs) = &slot.configured {
            let local = |a: Option<IpAddr>| a.is_some_and(|a| cidrs.iter().any(|c| c.contains(&a)));
            (Basis::Configured, direction_of(local(header_src), local(header_dst)))
        } else {
            let locals = &mut slot.locals;
            let (mut s, mut d) = (locals.is_local(header_src), locals.is_local(header_dst));
            if let (false, false, Some(src), Some(dst)) = (s, d, header_src, header_dst) {
                locals.observe(src, dst);
                (s, d) = (locals.is_local(header_src), locals.is_local(header_dst));
            }
            (Basis::Inferred, direction_of(s, d))
        };
        let local = match direction {
            Direction::Ingress => header_dst,
            Direction::Egress => header_src,
            Direction::Unknown => None,
        };
        if !packet || (f.pkt_srcaddr.is_none() && f.pkt_dstaddr.is_none()) {
            // Most layouts have no packet-level addresses: nothing to compare.
            return Decision {
                direction,
                basis,
                local,
                srcaddr: header_src,
                dstaddr: header_dst,
                via: None,
            };
        }
        let srcaddr = f.pkt_srcaddr.or(header_src);
        let dstaddr = f.pkt_dstaddr.or(header_dst);
        let via = match direction {
            Direction::Ingress => header_src.filter(|h| Some(*h) != srcaddr),
            Direction::Egress => header_dst.filter(|h| Some(*h) != dstaddr),
            Direction::Unknown => None,
        };
        Decision { direction, basis, local, srcaddr, dstaddr, via }
    }
}

#[cfg(test)]
#[path = "direction_tests.rs"]
mod tests;
