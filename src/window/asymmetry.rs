//! This module finds the conversations accepted one way and rejected the other in a window
//! (`asymmetric_flows`): security groups are stateful and network ACLs stateless, so an
//! accepted request whose reply is rejected points at an ACL.
//!
//! Ingress flows live in the sources' flow tables, rejected egress in each pane's
//! [`super::conversation::EgressConversations`]. The work per window is bounded: every flow of
//! the [`INGRESS_SEEDS`] sources with the most rejected flows is read, and for the
//! [`super::findings::EGRESS_SEEDS`] largest groups of rejected egress the conversations are
//! found from the remote's side (its flows from the group's port), so a window never walks
//! every rejected conversation of its panes.

use std::net::IpAddr;

use serde::{Deserialize, Serialize};

use super::conversation::Conversation;
use super::diagnosis::entries_of;
use super::findings::{EgressRejects, INGRESS_SEEDS, LISTED, Map};
use super::pane::{FlowKey, Traffic};
use super::snapshot::WindowPanes;
use crate::decode::Action;

/// A conversation with different actions in its two directions.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AsymmetricFlow {
    pub local_address: Option<IpAddr>,
    pub local_port: Option<u16>,
    pub remote_address: Option<IpAddr>,
    pub remote_port: Option<u16>,
    pub protocol: Option<u8>,
    /// `ACCEPT`, `REJECT`, `ACCEPT+REJECT` (both in the window) or `-` (not seen).
    #[serde(deserialize_with = "super::names::action")]
    pub ingress_action: super::names::Name,
    #[serde(deserialize_with = "super::names::action")]
    pub egress_action: super::names::Name,
    /// `nacl` when one direction was only accepted and the other only rejected: a stateful
    /// security group would have let the reply through. Otherwise `sg_or_nacl`.
    #[serde(deserialize_with = "super::names::cause")]
    pub likely_cause: super::names::Name,
    pub rejected_flows: u64,
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
/// `seeds` are the sources with the most rejected flows (`diagnosis::most_rejected`); at most
/// [`INGRESS_SEEDS`] of them are read.
pub fn asymmetric_flows(
    window: &WindowPanes,
    seeds: &[(IpAddr, Traffic)],
    egress: &EgressRejects,
) -> Vec<AsymmetricFlow> {
    // Ingress flows live in their sources' tables. Every flow of the [`INGRESS_SEEDS`] sources
    // with the most rejected flows is read (a bound: reading every source's flows each window
    // would cost as much as merging them all); for the other conversations rejected going out,
    // only the reverse flow is looked up.
    let seeds = &seeds[..seeds.len().min(INGRESS_SEEDS)];
    let is_seed = |a: &IpAddr| seeds.iter().any(|(s, _)| s == a);
    let mut conversations: Map<Conversation, Actions> = Map::default();
    let seed_entries: Vec<(IpAddr, Vec<&super::pane::SourceEntry>)> =
        seeds.iter().map(|(a, _)| (*a, entries_of(a, window).entries)).collect();
    // A seed's rejected flows make its conversations; the accepted flow of the same
    // conversation is looked up directly (the same key but for the action), so that accepted
    // flows are never hashed into a map.
    let mut accepted_in: Map<Conversation, u64> = Map::default();
    for (address, entries) in &seed_entries {
        for (key, counters) in entries.iter().flat_map(|e| e.flows()) {
            if key.action != Some(Action::Reject) {
                continue;
            }
            let c = ingress_conversation(address, &key);
            conversations.entry(c).or_default().ingress_rejected += counters.flows;
            // Each pane's entry holds the key once; the lookup covers them all, once.
            if !accepted_in.contains_key(&c) {
                let accepted = FlowKey { action: Some(Action::Accept), ..key };
                let flows: u64 =
                    entries.iter().filter_map(|e| e.flow(&accepted)).map(|f| f.flows).sum();
                if flows > 0 {
                    *accepted_in.entry(c).or_default() += flows;
                }
            }
        }
    }
    add_egress_candidates(&mut conversations, &accepted_in, window, egress, is_seed);
    let mut found: Vec<AsymmetricFlow> = Vec::new();
    let accepted_out: std::cell::OnceCell<AcceptedOut> = std::cell::OnceCell::new();
    for (c, mut a) in conversations {
        // A seed's accepted ingress flows are in `accepted_in` (or were added with its egress
        // flows), the others' were added by `add_egress_candidates`.
        a.ingress_accepted += accepted_in.get(&c).copied().unwrap_or(0);
        // Whether it went out accepted matters to a conversation rejected coming in, and to
        // naming the egress action of one accepted coming in and rejected going out.
        if a.ingress_rejected > 0 || (a.ingress_accepted > 0 && a.egress_rejected > 0) {
            a.egress_accepted =
                accepted_out.get_or_init(|| AcceptedOut::of(window)).has(window, &c);
        }
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

/// Which conversations a window sent out accepted. Panes keep accepted egress as lists of
/// fingerprints, cheap to append to and to scan for a few conversations but not for the
/// thousands a window can ask about; a bitmap of the window's fingerprints (made on the first
/// question, 128 KiB) answers most questions with one bit, and only a set bit has the panes'
/// lists scanned.
struct AcceptedOut(Vec<u64>);

/// log2 of the bitmap's bits: 20,480 fingerprints (five full panes) set under 2 % of them.
const ACCEPTED_OUT_BITS: u32 = 20;

impl AcceptedOut {
    fn of(window: &WindowPanes) -> AcceptedOut {
        let mut bits = vec![0u64; 1 << (ACCEPTED_OUT_BITS - 6)];
        for fp in window.panes.iter().flat_map(|p| p.egress.accepted_fingerprints()) {
            let bit = fp >> (32 - ACCEPTED_OUT_BITS);
            bits[(bit >> 6) as usize] |= 1 << (bit & 63);
        }
        AcceptedOut(bits)
    }

    fn has(&self, window: &WindowPanes, c: &Conversation) -> bool {
        let bit = c.fingerprint() >> (32 - ACCEPTED_OUT_BITS);
        self.0[(bit >> 6) as usize] & (1 << (bit & 63)) != 0
            && window.panes.iter().any(|p| p.egress.accepted(c))
    }
}

/// Adds to `conversations` the window's rejected egress conversations in the ranked groups
/// that have a reverse flow (either action), with their flows both ways. Only those can be
/// asymmetric, and they are found from the remote's side: a group's remote sent the reverse
/// flows from the group's port, so its flows are scanned (at most a flow table a pane) and only
/// the conversations they answer are looked up, never every rejected conversation.
///
/// A seed's ingress side is already in `conversations`: its rejected flows, and in `accepted_in`
/// the accepted ones of the same conversations. For a seed's conversation only the egress
/// flows are added, and its accepted ingress flows where `accepted_in` lacks them.
fn add_egress_candidates(
    conversations: &mut Map<Conversation, Actions>,
    accepted_in: &Map<Conversation, u64>,
    window: &WindowPanes,
    egress: &EgressRejects,
    is_seed: impl Fn(&IpAddr) -> bool,
) {
    let mut seen: Map<Conversation, ()> = Map::default();
    for ((remote, remote_port, protocol), _) in egress.ranked() {
        let Some(remote) = *remote else { continue };
        let entries = entries_of(&remote, window).entries;
        let answers = entries
            .iter()
            .flat_map(|e| e.flows())
            .filter(|(k, _)| k.srcport == *remote_port && k.protocol == *protocol);
        for (key, _) in answers {
            let c = Conversation {
                local_address: key.dstaddr,
                local_port: key.dstport,
                remote_address: Some(remote),
                remote_port: *remote_port,
                protocol: *protocol,
            };
            if seen.insert(c, ()).is_some() {
                continue;
            }
            let rejected_out: u64 = window
                .panes
                .iter()
                .filter_map(|p| p.egress.rejected.get(&c))
                .map(|t| t.flows)
                .sum();
            if rejected_out == 0 {
                continue;
            }
            let ingress = |action| -> u64 {
                entries
                    .iter()
                    .filter_map(|e| e.flow(&reverse_of(&c, action)))
                    .map(|f| f.flows)
                    .sum()
            };
            let a = conversations.entry(c).or_default();
            a.egress_rejected += rejected_out;
            if !is_seed(&remote) {
                a.ingress_rejected += ingress(Action::Reject);
                a.ingress_accepted += ingress(Action::Accept);
            } else if !accepted_in.contains_key(&c) {
                a.ingress_accepted += ingress(Action::Accept);
            }
        }
    }
}

/// The ingress flow that answers an egress conversation, with `action`.
fn reverse_of(c: &Conversation, action: Action) -> FlowKey {
    FlowKey {
        srcport: c.remote_port,
        dstaddr: c.local_address,
        dstport: c.local_port,
        protocol: c.protocol,
        action: Some(action),
        via: None,
    }
}

/// The conversation of an ingress flow of `source`, seen from the interface.
fn ingress_conversation(source: &IpAddr, key: &FlowKey) -> Conversation {
    Conversation {
        local_address: key.dstaddr,
        local_port: key.dstport,
        remote_address: Some(*source),
        remote_port: key.srcport,
        protocol: key.protocol,
    }
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
