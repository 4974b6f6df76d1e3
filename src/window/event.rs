//! Events: the owned, fixed-size form of a record that the router hands to a shard, and the
//! string interner that lets it be fixed-size.
//!
//! A [`FlowEvent`] is `Copy` and holds no heap data, so batches of them move between threads
//! without allocating per record; interface ids, accounts and regions travel as interned `u32`s.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, RwLock};

use super::time::PaneId;
use crate::decode::{Action, DefaultRecord, FlowRecord, LineContext, LogStatus};

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
    pub srcaddr: Option<IpAddr>,
    pub dstaddr: Option<IpAddr>,
    pub srcport: Option<u16>,
    pub dstport: Option<u16>,
    pub protocol: Option<u8>,
    pub packets: u64,
    pub bytes: u64,
    /// Interned account id and region, if known.
    pub account: Option<u32>,
    pub region: Option<u32>,
}

/// What the router reads of one record: its fields and its envelope's context, resolved. Built
/// from a parsed line ([`RouteInput::of`]) or from a request parsed on another thread.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RouteInput<'a> {
    /// See [`interface_of`]; `None` is a rejection.
    pub interface: Option<&'a str>,
    /// The record's `account-id`, else the envelope's owner.
    pub account: Option<&'a str>,
    /// The record's `region`, else the transport's.
    pub region: Option<&'a str>,
    pub fields: RouteFields,
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
}

/// The [`RouteFields`] of a record, read from any struct with the record's members.
macro_rules! route_fields {
    ($record:expr) => {
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
            fields: route_fields!(record),
        }
    }

    /// [`RouteInput::of`] for a line read by the plain-line shortcut
    /// ([`crate::decode::parse_plain_line`]): the same input as of the record that line
    /// parses to under the general path.
    #[inline]
    pub fn of_default(record: &DefaultRecord<'a>, ctx: &LineContext<'a>) -> RouteInput<'a> {
        RouteInput {
            interface: record.interface_id.or_else(|| stream_interface(ctx)),
            account: record.account_id.or(ctx.owner),
            region: ctx.region,
            fields: route_fields!(record),
        }
    }
}

/// The interface a record belongs to: `interface-id`; else, for records without one, the
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
