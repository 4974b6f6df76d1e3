//! Each interface's labels (`vpc-id`, `subnet-id`, `instance-id`, `az-id`) as its records last
//! carried them. The router writes an interface's entry when its records' labels change (they
//! come in runs, so that is rare); the closer puts them on the interface's snapshots.
//!
//! The labels are not in the state file: after a restart an interface's snapshots carry them
//! again from its first record with labels.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use super::Hasher;
use crate::record::RouteLabels;
use crate::window::event::{Interner, LastInterned};

/// An interface's labels as interned ids, in [`RouteLabels::as_array`]'s order.
pub(crate) type LabelIds = [Option<u32>; 4];

/// The table the router writes and the closer reads.
#[derive(Debug, Clone, Default)]
pub(crate) struct InterfaceLabels(Arc<RwLock<HashMap<u32, LabelIds, Hasher>>>);

impl InterfaceLabels {
    pub(crate) fn get(&self, interface: u32) -> Option<LabelIds> {
        self.0.read().unwrap_or_else(|e| e.into_inner()).get(&interface).copied()
    }

    fn set(&self, interface: u32, ids: LabelIds) {
        self.0.write().unwrap_or_else(|e| e.into_inner()).insert(interface, ids);
    }
}

/// The router's side: interns a record's labels and writes the table when they change.
#[derive(Debug, Default)]
pub(super) struct LabelRecorder {
    table: InterfaceLabels,
    last: Option<(u32, LabelIds)>,
    interned: [LastInterned; 4],
}

impl LabelRecorder {
    pub(super) fn new(table: InterfaceLabels) -> LabelRecorder {
        LabelRecorder { table, ..LabelRecorder::default() }
    }

    /// Takes in the labels of a record of `interface`.
    #[inline]
    pub(super) fn record(&mut self, interner: &mut Interner, interface: u32, labels: &RouteLabels) {
        if labels.is_empty() {
            return;
        }
        let mut ids: LabelIds = [None; 4];
        for ((id, label), last) in ids.iter_mut().zip(labels.as_array()).zip(&mut self.interned) {
            *id = label.map(|l| last.intern(interner, l));
        }
        if self.last != Some((interface, ids)) {
            self.last = Some((interface, ids));
            self.table.set(interface, ids);
        }
    }
}
