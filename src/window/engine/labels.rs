//! Each interface's labels (`vpc-id`, `subnet-id`, `instance-id`, `az-id`) per pane, as its
//! records carry them. For each pane and field the first record that carries the field wins,
//! and a window takes each field from its oldest pane that has it: like a snapshot's account
//! and region, the labels depend on the records and their order only, never on timing or the
//! shard count.
//!
//! The router writes an entry when a record brings a field its pane lacks (records come in runs,
//! so that is rare); the closer reads a window's panes when it builds the snapshot and drops
//! the entries of panes no window can need any more. The table is part of the state file.

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};

use std::net::IpAddr;

use crate::record::{RouteFields, RouteLabels};
use crate::window::event::{Interner, LastInterned};
use crate::window::time::PaneId;

/// Labels as interned ids, in [`RouteLabels::as_array`]'s order.
pub(crate) type LabelIds = [Option<u32>; 4];

/// A table by (interface, pane) that the router writes and the closer reads and prunes: the
/// shape both the labels and the named services keep.
#[derive(Debug)]
pub(crate) struct PaneTable<V>(Arc<RwLock<BTreeMap<(u32, PaneId), V>>>);

impl<V> Clone for PaneTable<V> {
    fn clone(&self) -> Self {
        PaneTable(self.0.clone())
    }
}

impl<V> Default for PaneTable<V> {
    fn default() -> Self {
        PaneTable(Arc::default())
    }
}

impl<V: Clone> PaneTable<V> {
    /// A table holding `entries` (from a state file).
    pub(crate) fn restored(entries: impl IntoIterator<Item = ((u32, PaneId), V)>) -> Self {
        PaneTable(Arc::new(RwLock::new(entries.into_iter().collect())))
    }

    /// Every entry, for the state file.
    pub(crate) fn entries(&self) -> Vec<((u32, PaneId), V)> {
        let table = self.0.read().unwrap_or_else(|e| e.into_inner());
        table.iter().map(|(k, v)| (*k, v.clone())).collect()
    }

    /// Drops the entries of panes before `oldest`.
    pub(crate) fn prune(&self, oldest: PaneId) {
        let mut table = self.0.write().unwrap_or_else(|e| e.into_inner());
        table.retain(|(_, pane), _| *pane >= oldest);
    }

    /// Folds `interface`'s entries for the panes `first..=last`, oldest first.
    fn fold<T>(
        &self,
        (interface, first, last): (u32, PaneId, PaneId),
        init: T,
        f: impl Fn(T, &V) -> T,
    ) -> T {
        let table = self.0.read().unwrap_or_else(|e| e.into_inner());
        table.range((interface, first)..=(interface, last)).fold(init, |acc, (_, v)| f(acc, v))
    }

    /// Changes (or creates) the entry of `key` and returns what `f` returns.
    fn update<T>(&self, key: (u32, PaneId), f: impl FnOnce(&mut V) -> T) -> T
    where
        V: Default,
    {
        let mut table = self.0.write().unwrap_or_else(|e| e.into_inner());
        f(table.entry(key).or_default())
    }
}

/// Each interface's labels per pane.
pub(crate) type InterfaceLabels = PaneTable<LabelIds>;

impl PaneTable<LabelIds> {
    /// The labels of `interface` over the panes `first..=last`: each field from the oldest pane
    /// that has it.
    pub(crate) fn window(&self, interface: u32, first: PaneId, last: PaneId) -> LabelIds {
        self.fold((interface, first, last), [None; 4], |mut ids: LabelIds, pane| {
            for (id, p) in ids.iter_mut().zip(pane) {
                *id = id.or(*p);
            }
            ids
        })
    }

    /// Fills the fields `ids` has and the pane's entry lacks; returns the entry.
    fn merge(&self, key: (u32, PaneId), ids: LabelIds) -> LabelIds {
        self.update(key, |entry| {
            for (kept, id) in entry.iter_mut().zip(ids) {
                *kept = kept.or(id);
            }
            *entry
        })
    }
}

/// The router's side: interns a record's labels and writes what its pane lacks.
#[derive(Debug, Default)]
pub(super) struct LabelRecorder {
    table: InterfaceLabels,
    /// The last (interface, pane) written and its entry, to skip records that add nothing.
    last: Option<((u32, PaneId), LabelIds)>,
    interned: [LastInterned; 4],
}

impl LabelRecorder {
    pub(super) fn new(table: InterfaceLabels) -> LabelRecorder {
        LabelRecorder { table, ..LabelRecorder::default() }
    }

    pub(super) fn table(&self) -> &InterfaceLabels {
        &self.table
    }

    /// Takes in the labels of a record of `interface` in `pane`.
    #[inline]
    pub(super) fn record(
        &mut self,
        interner: &mut Interner,
        (interface, pane): (u32, PaneId),
        labels: &RouteLabels,
    ) {
        let fields = labels.interface_fields();
        if fields.iter().all(Option::is_none) {
            return;
        }
        if let Some((key, kept)) = &self.last
            && *key == (interface, pane)
            && fields.iter().zip(kept).all(|(f, k)| f.is_none() || k.is_some())
        {
            return;
        }
        let mut ids: LabelIds = [None; 4];
        for ((id, field), last) in ids.iter_mut().zip(fields).zip(&mut self.interned) {
            *id = field.map(|f| last.intern(interner, f));
        }
        let entry = self.table.merge((interface, pane), ids);
        self.last = Some(((interface, pane), entry));
    }
}

/// The AWS services that records name for their addresses (`pkt-src-aws-service` for the
/// packet's source, `pkt-dst-aws-service` for its destination), per (interface, pane): the
/// first record naming an address wins, at most [`SERVICES_PER_PANE`] addresses a pane. A
/// window takes each address's service from its oldest pane that names one.
pub(crate) type AddressServices = PaneTable<Vec<NamedAddress>>;

/// An address and the interned name of the service a record said it is.
pub(crate) type NamedAddress = (IpAddr, u32);

/// One pane's entry of [`AddressServices`], as the state file keeps it.
pub(crate) type PaneServices = ((u32, PaneId), Vec<NamedAddress>);

/// Addresses a pane keeps services for.
pub(crate) const SERVICES_PER_PANE: usize = 64;

/// The entries of a state file, each held to [`SERVICES_PER_PANE`] (a crafted file cannot
/// make a pane hold more than a running one does).
pub(crate) fn capped(entries: &[PaneServices]) -> impl Iterator<Item = PaneServices> + '_ {
    entries.iter().map(|(k, v)| (*k, v.iter().take(SERVICES_PER_PANE).copied().collect()))
}

impl PaneTable<Vec<NamedAddress>> {
    /// The services named in `interface`'s panes `first..=last`, by address.
    pub(crate) fn window(&self, interface: u32, first: PaneId, last: PaneId) -> Vec<NamedAddress> {
        self.fold((interface, first, last), Vec::new(), |mut found: Vec<NamedAddress>, pane| {
            for &(address, service) in pane {
                if !found.iter().any(|(a, _)| *a == address) {
                    found.push((address, service));
                }
            }
            found
        })
    }

    fn note(&self, key: (u32, PaneId), address: IpAddr, service: u32) {
        self.update(key, |pane| {
            if pane.len() < SERVICES_PER_PANE && !pane.iter().any(|(a, _)| *a == address) {
                pane.push((address, service));
            }
        });
    }
}

/// The router's side of [`AddressServices`].
#[derive(Debug, Default)]
pub(super) struct ServiceRecorder {
    table: AddressServices,
    /// The last (interface, pane, address) noted, to skip a run of the same.
    last: Option<(u32, PaneId, IpAddr)>,
    interned: LastInterned,
}

impl ServiceRecorder {
    pub(super) fn new(table: AddressServices) -> ServiceRecorder {
        ServiceRecorder { table, ..ServiceRecorder::default() }
    }

    pub(super) fn table(&self) -> &AddressServices {
        &self.table
    }

    /// Notes the services a record of `interface` in `pane` names for its packet's addresses.
    #[inline]
    pub(super) fn record(
        &mut self,
        interner: &mut Interner,
        (interface, pane): (u32, PaneId),
        fields: &RouteFields,
        labels: &RouteLabels,
    ) {
        let named = [
            (labels.src_service, fields.pkt_srcaddr.or(fields.srcaddr)),
            (labels.dst_service, fields.pkt_dstaddr.or(fields.dstaddr)),
        ];
        for (service, address) in named {
            let (Some(service), Some(address)) = (service, address) else { continue };
            if self.last == Some((interface, pane, address)) {
                continue;
            }
            self.last = Some((interface, pane, address));
            let id = self.interned.intern(interner, service);
            self.table.note((interface, pane), address, id);
        }
    }
}
