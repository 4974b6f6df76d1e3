//! This module defines the event, the owned, fixed-size form of a record that the router hands
//! to a shard, and the string interner that lets it be fixed-size.
//!
//! A [`FlowEvent`] is `Copy` and holds no heap data, so batches of them move between threads
//! without allocating per record; interface ids, accounts and regions travel as interned `u32`s.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, RwLock};

use super::direction::{Basis, Direction};
use super::time::PaneId;
use crate::decode::{Action, LogStatus};

/// One record as a shard sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct FlowEvent {
    /// Interned interface id.
    pub interface: u32,
    pub pane: PaneId,
    /// Set by the router when the pane was already sealed on arrival.
    pub late: bool,
    pub status: Option<LogStatus>,
    pub action: Option<Action>,
    /// The record's direction, and the rule that decided it (see [`super::direction`]).
    pub direction: Direction,
    pub basis: Basis,
    /// The attributed addresses: packet-level where the record has them (`--address packet`).
    pub srcaddr: Option<IpAddr>,
    pub dstaddr: Option<IpAddr>,
    /// The header address of the remote endpoint where it differs from the attributed one.
    pub via: Option<IpAddr>,
    /// The interface's own (header) address, when the direction is known.
    pub local: Option<IpAddr>,
    pub srcport: Option<u16>,
    pub dstport: Option<u16>,
    pub protocol: Option<u8>,
    /// Whether the record's `tcp-flags` was a SYN alone ([`super::counters::SYN_ONLY`]);
    /// `None` where the layout has no `tcp-flags`. One byte, so that the event stays 128.
    pub syn_only: Option<bool>,
    pub packets: u64,
    pub bytes: u64,
    /// Interned account id and region, if known.
    pub account: Option<u32>,
    pub region: Option<u32>,
}

/// Interns strings to `u32`s. The router writes; closers and the API read by id.
#[derive(Debug, Default)]
pub struct Interner {
    ids: HashMap<Box<str>, u32, foldhash::fast::RandomState>,
    names: Arc<RwLock<Vec<Arc<str>>>>,
}

/// Remembers the last string interned through it: records come in runs of one interface (a
/// CloudWatch stream is one interface) and nearly always of one account, so comparing with the
/// last one skips the hash lookup.
#[derive(Debug, Default)]
pub struct LastInterned {
    text: String,
    id: Option<u32>,
}

impl LastInterned {
    #[inline]
    pub fn intern(&mut self, interner: &mut Interner, s: &str) -> u32 {
        match self.id {
            Some(id) if self.text == s => id,
            _ => {
                let id = interner.intern(s);
                self.text.clear();
                self.text.push_str(s);
                self.id = Some(id);
                id
            }
        }
    }
}

/// The read side of an [`Interner`].
#[derive(Debug, Clone, Default)]
pub struct Names(Arc<RwLock<Vec<Arc<str>>>>);

impl Names {
    pub fn get(&self, id: u32) -> Arc<str> {
        let names = self.0.read().unwrap_or_else(|e| e.into_inner());
        names[id as usize].clone()
    }

    /// Read access to all names at once (for building many snapshots).
    pub fn read(&self) -> std::sync::RwLockReadGuard<'_, Vec<Arc<str>>> {
        self.0.read().unwrap_or_else(|e| e.into_inner())
    }
}

impl Interner {
    pub fn names(&self) -> Names {
        Names(self.names.clone())
    }

    /// The id of `s`, assigning the next one if new. Allocates only for new strings.
    #[inline]
    pub fn intern(&mut self, s: &str) -> u32 {
        if let Some(&id) = self.ids.get(s) {
            return id;
        }
        let mut names = self.names.write().unwrap_or_else(|e| e.into_inner());
        let id = u32::try_from(names.len()).expect("fewer than 2^32 distinct names");
        names.push(Arc::from(s));
        self.ids.insert(Box::from(s), id);
        id
    }

    /// An interner holding `names` with ids 0, 1, … in order (restoring a checkpoint).
    pub fn from_names(names: Vec<String>) -> Interner {
        let mut interner = Interner::default();
        for n in names {
            interner.intern(&n);
        }
        interner
    }

    pub fn len(&self) -> usize {
        self.ids.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }
}
