//! Shard workers each own a set of interfaces and apply their events to their panes, in router
//! order, each on a thread of its own.

use std::sync::Arc;

use dashmap::DashMap;
use tokio::sync::mpsc;

use super::checkpoint::ShardCheckpoint;
use super::config::{EngineConfig, LatePolicy};
use super::{Ack, CloseProgress, Hasher};
use crate::window::event::FlowEvent;
use crate::window::pane::InterfacePanes;
use crate::window::time::PaneId;

/// What the router sends a shard, in order.
pub(super) enum ShardMsg {
    Batch(Vec<FlowEvent>),
    Marker {
        seq: u64,
    },
    /// Asks for a copy of the shard's state (with everything before this message applied).
    Checkpoint(tokio::sync::oneshot::Sender<ShardCheckpoint>),
}

/// One shard's state: interfaces by interned id.
#[derive(Debug, Default)]
pub struct Shard {
    pub interfaces: DashMap<u32, InterfacePanes, Hasher>,
}

/// The thread that applies one shard's events.
pub(super) struct ShardWorker {
    shard: Arc<Shard>,
    config: Arc<EngineConfig>,
    late: Vec<FlowEvent>,
    /// A batch's application order, reused: (interface << 32) | position.
    order: Vec<u64>,
    progress: Arc<CloseProgress>,
    ack: mpsc::Sender<Ack>,
    recycle: mpsc::Sender<Vec<FlowEvent>>,
}

impl ShardWorker {
    pub(super) fn new(
        shard: Arc<Shard>,
        config: Arc<EngineConfig>,
        late: Vec<FlowEvent>,
        progress: Arc<CloseProgress>,
        ack: mpsc::Sender<Ack>,
        recycle: mpsc::Sender<Vec<FlowEvent>>,
    ) -> ShardWorker {
        ShardWorker { shard, config, late, order: Vec::new(), progress, ack, recycle }
    }

    pub(super) fn run(mut self, mut rx: mpsc::Receiver<ShardMsg>) {
        while let Some(msg) = rx.blocking_recv() {
            match msg {
                ShardMsg::Batch(mut events) => {
                    self.apply_batch(&events);
                    events.clear();
                    let _ = self.recycle.try_send(events);
                }
                ShardMsg::Marker { seq } => {
                    let dirty = self.apply_late(seq);
                    if self.ack.blocking_send(Ack { seq, dirty }).is_err() {
                        return;
                    }
                }
                ShardMsg::Checkpoint(reply) => {
                    let interfaces = self
                        .shard
                        .interfaces
                        .iter()
                        .map(|e| (*e.key(), e.value().clone()))
                        .collect();
                    let _ =
                        reply.send(ShardCheckpoint { interfaces, held_late: self.late.clone() });
                }
            }
        }
    }

    /// Applies a batch grouped by interface, each interface's events in batch order: one map
    /// lookup per interface per batch, and an interface's tables stay in cache for its run.
    /// Interfaces share no state, so only each one's own order matters (and is kept).
    fn apply_batch(&mut self, events: &[FlowEvent]) {
        let caps = &self.config.caps;
        let order = &mut self.order;
        order.clear();
        order.extend(
            events.iter().enumerate().map(|(i, ev)| u64::from(ev.interface) << 32 | i as u64),
        );
        order.sort_unstable();
        let mut k = 0;
        while k < order.len() {
            let id = (order[k] >> 32) as u32;
            let mut state = self.shard.interfaces.entry(id).or_default();
            while k < order.len() && (order[k] >> 32) as u32 == id {
                let ev = &events[(order[k] & 0xffff_ffff) as usize];
                if ev.late {
                    self.late.push(*ev);
                } else {
                    state.pane_mut(ev.pane, caps).apply(ev, caps, true);
                }
                k += 1;
            }
        }
    }

    /// Applies the late records held since the previous marker, once the closer has finished
    /// that marker. Returns the panes they changed when they carry traffic (`--late update`).
    fn apply_late(&mut self, seq: u64) -> Vec<(u32, PaneId)> {
        if self.late.is_empty() {
            return Vec::new();
        }
        self.progress.wait_for(seq - 1);
        let caps = &self.config.caps;
        let update = self.config.late == LatePolicy::Update;
        let mut dirty = Vec::new();
        for ev in self.late.drain(..) {
            let mut state = self.shard.interfaces.entry(ev.interface).or_default();
            state.pane_mut(ev.pane, caps).apply(&ev, caps, update);
            dirty.push((ev.interface, ev.pane));
        }
        dirty.sort_unstable();
        dirty.dedup();
        dirty
    }
}
