//! This module keeps what a pane needs to tell a security group from a network ACL and to list
//! denied outbound connections: the interface's rejected egress records by conversation, and
//! which conversations it sent out accepted.
//!
//! Security groups are stateful and network ACLs stateless, so a conversation accepted one way
//! and rejected the other way points at an ACL. Ingress flows are already in the sources' flow
//! tables (with their action); egress ones are kept here, rejected ones exactly under a cap (in
//! a [`BoundedTable`]) and accepted ones as 32-bit fingerprints up to
//! [`MAX_ACCEPTED_FINGERPRINTS`] per pane, past which accepted conversations are counted and not
//! kept (`accepted_overflow`), so a reply rejected to one of them may go unmatched.

use std::hash::{BuildHasher, Hash};
use std::net::IpAddr;

use serde::{Deserialize, Serialize};

use super::counters::Traffic;
use super::event::FlowEvent;
use super::pane::{packed_port, packed_protocol, split_address};
use super::table::BoundedTable;
use crate::decode::Action;

/// Accepted egress conversations a pane keeps, as fingerprints (4 bytes each).
pub const MAX_ACCEPTED_FINGERPRINTS: usize = 4096;

/// One direction of a conversation, seen from the interface.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Conversation {
    pub local_address: Option<IpAddr>,
    pub local_port: Option<u16>,
    pub remote_address: Option<IpAddr>,
    pub remote_port: Option<u16>,
    pub protocol: Option<u8>,
}

impl Hash for Conversation {
    /// Hashes the key as a packed word and two addresses, as [`super::pane::FlowKey`] does:
    /// every egress record is fingerprinted. The packing is injective, so `Eq` stays right.
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        let port = packed_port;
        let protocol = packed_protocol(self.protocol);
        let (local_family, local) = split_address(self.local_address);
        let (remote_family, remote) = split_address(self.remote_address);
        state.write_u64(
            port(self.local_port)
                | port(self.remote_port) << 17
                | protocol << 34
                | local_family << 43
                | remote_family << 45,
        );
        state.write_u128(local);
        state.write_u128(remote);
    }
}

impl Conversation {
    /// The conversation of an egress event (the interface sent it).
    pub fn of_egress(ev: &FlowEvent) -> Conversation {
        Conversation {
            local_address: ev.srcaddr,
            local_port: ev.srcport,
            remote_address: ev.dstaddr,
            remote_port: ev.dstport,
            protocol: ev.protocol,
        }
    }

    /// A fixed-seed 32-bit fingerprint, so that panes built apart agree on it. Two of a
    /// pane's 4,096 collide with one asked about with odds of about one in a million.
    pub fn fingerprint(&self) -> u32 {
        (foldhash::fast::FixedState::with_seed(0xc0_11_5e).hash_one(self) >> 32) as u32
    }
}

/// A pane's egress conversations.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct EgressConversations {
    /// Rejected egress records by conversation.
    pub rejected: BoundedTable<Conversation, Traffic>,
    /// 32-bit fingerprints of the accepted egress conversations, in arrival order with runs
    /// of one collapsed. Appending costs next to nothing per record; the closer scans the
    /// list (vectorised) for the few conversations it asks about.
    #[serde(deserialize_with = "capped_fingerprints")]
    accepted: Vec<u32>,
    /// Accepted egress records whose conversation was not kept (the fingerprints were full).
    pub accepted_overflow: u64,
}

/// Reads a fingerprint list, keeping at most [`MAX_ACCEPTED_FINGERPRINTS`] (a crafted state
/// file cannot make a pane hold more than a running one does).
fn capped_fingerprints<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<u32>, D::Error> {
    let mut list = Vec::<u32>::deserialize(d)?;
    list.truncate(MAX_ACCEPTED_FINGERPRINTS);
    Ok(list)
}

impl EgressConversations {
    pub fn new(cap: usize) -> EgressConversations {
        EgressConversations {
            rejected: BoundedTable::new(cap),
            accepted: Vec::new(),
            accepted_overflow: 0,
        }
    }

    /// Adds an egress event.
    #[inline]
    pub fn record(&mut self, ev: &FlowEvent) {
        let conversation = Conversation::of_egress(ev);
        match ev.action {
            Some(Action::Reject) => self.rejected.entry(conversation).record(ev),
            Some(Action::Accept) => {
                let fp = conversation.fingerprint();
                if self.accepted.last() == Some(&fp) {
                    return;
                }
                if self.accepted.len() < MAX_ACCEPTED_FINGERPRINTS {
                    self.accepted.push(fp);
                } else {
                    self.accepted_overflow = self.accepted_overflow.saturating_add(1);
                }
            }
            None => {}
        }
    }

    /// Whether the conversation was sent out accepted in this pane (as far as kept).
    pub fn accepted(&self, conversation: &Conversation) -> bool {
        let fp = conversation.fingerprint();
        self.accepted.iter().fold(false, |found, &x| found | (x == fp))
    }

    /// The fingerprints of the conversations sent out accepted (see [`Conversation::fingerprint`]).
    pub fn accepted_fingerprints(&self) -> impl Iterator<Item = u32> + '_ {
        self.accepted.iter().copied()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decode::LogStatus;
    use crate::window::direction::{Basis, Direction};

    fn egress(dport: u16, action: Action) -> FlowEvent {
        FlowEvent {
            interface: 0,
            pane: 0,
            late: false,
            status: Some(LogStatus::Ok),
            action: Some(action),
            direction: Direction::Egress,
            basis: Basis::Configured,
            srcaddr: Some("10.0.9.9".parse().unwrap()),
            dstaddr: Some("198.51.100.1".parse().unwrap()),
            via: None,
            local: None,
            srcport: Some(40_000),
            dstport: Some(dport),
            protocol: Some(6),
            syn_only: None,
            packets: 1,
            bytes: 60,
            account: None,
            region: None,
        }
    }

    #[test]
    fn rejects_are_counted_and_accepts_remembered_up_to_the_cap() {
        let mut c = EgressConversations::new(100);
        c.record(&egress(443, Action::Reject));
        c.record(&egress(443, Action::Reject));
        c.record(&egress(80, Action::Accept));
        c.record(&egress(80, Action::Accept));
        let key = Conversation::of_egress(&egress(443, Action::Reject));
        assert_eq!(c.rejected.get(&key).map(|t| t.flows), Some(2));
        assert!(c.accepted(&Conversation::of_egress(&egress(80, Action::Accept))));
        assert!(!c.accepted(&key));
        assert_eq!(c.accepted.len(), 1, "a run of one conversation is kept once");
        for port in 0..(MAX_ACCEPTED_FINGERPRINTS as u16 + 10) {
            c.record(&egress(port, Action::Accept));
        }
        assert_eq!(c.accepted.len(), MAX_ACCEPTED_FINGERPRINTS);
        assert!(c.accepted_overflow > 0);
    }

    #[test]
    fn a_state_file_cannot_hold_more_fingerprints_than_a_pane_keeps() {
        let mut c = EgressConversations::new(100);
        c.accepted = (0..MAX_ACCEPTED_FINGERPRINTS as u32 + 500).collect();
        let bytes = rmp_serde::to_vec(&c).unwrap();
        let read: EgressConversations = rmp_serde::from_slice(&bytes).unwrap();
        assert_eq!(read.accepted.len(), MAX_ACCEPTED_FINGERPRINTS);
        assert_eq!(read.accepted[..3], [0, 1, 2], "the first ones are kept, in order");
    }
}
