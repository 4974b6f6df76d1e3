//! This module keeps what a pane needs to tell a security group from a network ACL and to list
//! denied outbound connections: the interface's rejected egress records by conversation, and
//! which conversations it sent out accepted.
//!
//! Security groups are stateful and network ACLs stateless, so a conversation accepted one way
//! and rejected the other way points at an ACL. Ingress flows are already in the sources' flow
//! tables (with their action); egress ones are kept here, rejected ones exactly under a cap (in
//! a [`BoundedTable`]) and accepted ones as 64-bit fingerprints up to
//! [`MAX_ACCEPTED_FINGERPRINTS`] per pane, past which accepted conversations are counted and not
//! kept (`accepted_overflow`), so a reply rejected to one of them may go unmatched.

use std::hash::{BuildHasher, Hash};
use std::net::IpAddr;

use serde::{Deserialize, Serialize};

use super::counters::Traffic;
use super::event::FlowEvent;
use super::table::BoundedTable;
use crate::decode::Action;

/// Accepted egress conversations a pane keeps, as fingerprints (8 bytes each).
pub const MAX_ACCEPTED_FINGERPRINTS: usize = 4096;

/// One direction of a conversation, seen from the interface.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Conversation {
    pub local_address: Option<IpAddr>,
    pub local_port: Option<u16>,
    pub remote_address: Option<IpAddr>,
    pub remote_port: Option<u16>,
    pub protocol: Option<u8>,
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

    /// A fixed-seed fingerprint, so that panes built apart agree on it.
    pub fn fingerprint(&self) -> u64 {
        foldhash::fast::FixedState::with_seed(0xc0_11_5e).hash_one(self)
    }
}

/// A set of fingerprints; each is its own hash. It is written out as a list.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(from = "Vec<u64>", into = "Vec<u64>")]
pub struct Fingerprints(hashbrown::HashTable<u64>);

impl Fingerprints {
    /// Adds `fp`; returns whether it was new.
    #[inline]
    fn insert(&mut self, fp: u64) -> bool {
        if self.contains(fp) {
            return false;
        }
        self.0.insert_unique(fp, fp, |&x| x);
        true
    }

    #[inline]
    fn contains(&self, fp: u64) -> bool {
        self.0.find(fp, |&x| x == fp).is_some()
    }

    fn len(&self) -> usize {
        self.0.len()
    }
}

impl From<Vec<u64>> for Fingerprints {
    fn from(list: Vec<u64>) -> Self {
        let mut set = Fingerprints::default();
        // A crafted state file cannot make the set larger than a pane keeps.
        for fp in list.into_iter().take(MAX_ACCEPTED_FINGERPRINTS) {
            set.insert(fp);
        }
        set
    }
}

impl From<Fingerprints> for Vec<u64> {
    fn from(set: Fingerprints) -> Self {
        set.0.into_iter().collect()
    }
}

/// A pane's egress conversations.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct EgressConversations {
    /// Rejected egress records by conversation.
    pub rejected: BoundedTable<Conversation, Traffic>,
    /// Fingerprints of the accepted egress conversations.
    accepted: Fingerprints,
    /// Last fingerprint added: runs of one conversation skip the set.
    last_accepted: Option<u64>,
    /// Accepted egress records whose conversation was not kept (the fingerprints were full).
    pub accepted_overflow: u64,
}

impl EgressConversations {
    pub fn new(cap: usize) -> EgressConversations {
        EgressConversations {
            rejected: BoundedTable::new(cap),
            accepted: Fingerprints::default(),
            last_accepted: None,
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
                if self.last_accepted == Some(fp) {
                    return;
                }
                self.last_accepted = Some(fp);
                if self.accepted.len() < MAX_ACCEPTED_FINGERPRINTS {
                    self.accepted.insert(fp);
                } else if !self.accepted.contains(fp) {
                    self.accepted_overflow = self.accepted_overflow.saturating_add(1);
                }
            }
            None => {}
        }
    }

    /// Whether the conversation was sent out accepted in this pane (as far as kept).
    pub fn accepted(&self, conversation: &Conversation) -> bool {
        self.accepted.contains(conversation.fingerprint())
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
        assert_eq!(c.accepted.len(), 1);
        for port in 0..(MAX_ACCEPTED_FINGERPRINTS as u16 + 10) {
            c.record(&egress(port, Action::Accept));
        }
        assert_eq!(c.accepted.len(), MAX_ACCEPTED_FINGERPRINTS);
        assert!(c.accepted_overflow > 0);
    }
}
