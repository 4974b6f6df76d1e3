//! A checkpoint is a consistent cut of the router, every shard and the closer; this module takes
//! one and splits it up again for a restore.

use serde::Serialize;

use super::config::{EngineConfig, LatePolicy};
use super::router::EventRouter;
use super::shard::ShardMsg;
use super::shard_of;
use crate::window::baseline::SourceHistories;
use crate::window::direction::InterfaceLocals;
use crate::window::event::FlowEvent;
use crate::window::pane::InterfacePanes;
use crate::window::time::{PaneId, Watermark, WindowSpec};

/// A shard's part of a checkpoint: its interfaces, and the late events it holds.
#[derive(Debug, Default)]
pub(super) struct ShardCheckpoint {
    pub(super) interfaces: Vec<(u32, InterfacePanes)>,
    pub(super) held_late: Vec<FlowEvent>,
}

impl ShardCheckpoint {
    /// Takes the interfaces and held late events out of `state`, each to the shard of `shards`
    /// that owns it (the shard count may differ from the one the state was written with).
    pub(super) fn split(state: &mut EngineCheckpoint, shards: usize) -> Vec<ShardCheckpoint> {
        let mut parts: Vec<ShardCheckpoint> =
            (0..shards).map(|_| ShardCheckpoint::default()).collect();
        for (id, st) in std::mem::take(&mut state.interfaces) {
            parts[shard_of(id, shards)].interfaces.push((id, st));
        }
        for ev in std::mem::take(&mut state.held_late) {
            parts[shard_of(ev.interface, shards)].held_late.push(ev);
        }
        parts
    }
}

/// The closer's part of a checkpoint, published after every close.
#[derive(Debug, Clone, Default, Serialize, serde::Deserialize)]
pub struct CloserCheckpoint {
    pub live_panes: Vec<PaneId>,
    pub last_closed: Option<PaneId>,
    pub revisions: Vec<((u32, PaneId), u32)>,
    /// Each interface's recent top sources, for baselines.
    pub histories: SourceHistories,
}

/// One interface's labels in one pane: (interface, pane) and the interned label ids.
pub(crate) type PaneLabels = ((u32, PaneId), [Option<u32>; 4]);

/// Everything the engine needs to continue where it stopped: a consistent cut of the router,
/// every shard and the closer.
#[derive(Debug, Clone, Serialize, serde::Deserialize)]
pub struct EngineCheckpoint {
    /// The window spec and late policy the state was built with; restoring under different
    /// ones is refused.
    pub spec: WindowSpec,
    pub late: LatePolicy,
    pub lateness_secs: u64,
    pub names: Vec<String>,
    /// What each interface learned of its own addresses (interned id → learned state).
    pub learned: Vec<(u32, InterfaceLocals)>,
    pub watermark: Watermark,
    pub marked_slide: Option<u64>,
    pub seq: u64,
    pub known_panes: Vec<PaneId>,
    /// Panes seen since the last marker, not yet announced to the closer.
    pub new_panes: Vec<PaneId>,
    pub interfaces: Vec<(u32, InterfacePanes)>,
    pub held_late: Vec<FlowEvent>,
    pub closer: CloserCheckpoint,
    /// Arrival time of the last record, so that the idle timeout goes on after a restart.
    pub last_record_at: Option<u64>,
    /// The engine's counts of what the state holds.
    pub counted: EngineCounts,
    /// Each interface's labels per pane (last, so that a state file written before labels
    /// existed reads with none).
    #[serde(default)]
    pub labels: Vec<PaneLabels>,
    /// The AWS services records named per pane (last, read as none from older files).
    #[serde(default)]
    pub services: Vec<super::labels::PaneServices>,
}

/// The counts of [`super::EngineStats`] a restart continues from.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct EngineCounts {
    pub records: u64,
    pub late_records: u64,
    pub expired_late_records: u64,
    pub missing_interface: u64,
    /// Records dropped by `[filters]`, by reason (last, read as zeros from older files).
    #[serde(default)]
    pub filtered: [u64; 4],
}

impl EngineCounts {
    fn of(stats: &super::EngineStats) -> EngineCounts {
        use std::sync::atomic::Ordering::Relaxed;
        EngineCounts {
            records: stats.records.load(Relaxed),
            late_records: stats.late_records.load(Relaxed),
            expired_late_records: stats.expired_late_records.load(Relaxed),
            missing_interface: stats.missing_interface.load(Relaxed),
            filtered: stats.filtered.each_ref().map(|n| n.load(Relaxed)),
        }
    }

    pub(super) fn restore(&self, stats: &super::EngineStats) {
        use std::sync::atomic::Ordering::Relaxed;
        stats.records.store(self.records, Relaxed);
        stats.late_records.store(self.late_records, Relaxed);
        stats.expired_late_records.store(self.expired_late_records, Relaxed);
        stats.missing_interface.store(self.missing_interface, Relaxed);
        for (n, saved) in stats.filtered.iter().zip(self.filtered) {
            n.store(saved, Relaxed);
        }
    }
}

impl EngineCheckpoint {
    /// Why this state cannot continue under `config`, if it cannot.
    pub fn incompatibility(&self, config: &EngineConfig) -> Option<String> {
        if self.spec != config.spec
            || self.late != config.late
            || self.lateness_secs != config.lateness_secs
        {
            return Some(format!(
                "the state was written with window {}s, slide {}s, lateness {}s, late {:?}; \
                 the configuration now says window {}s, slide {}s, lateness {}s, late {:?}",
                self.spec.window(),
                self.spec.slide(),
                self.lateness_secs,
                self.late,
                config.spec.window(),
                config.spec.slide(),
                config.lateness_secs,
                config.late
            ));
        }
        None
    }
}

impl EventRouter {
    /// Takes a consistent copy of the whole engine, with everything routed so far applied and
    /// every marker closed. Blocks while the shards and the closer catch up.
    pub fn checkpoint(&mut self) -> EngineCheckpoint {
        for shard in 0..self.senders.len() {
            self.flush_shard(shard);
        }
        // The closer has finished every marker sent, so its state and the shards' agree.
        self.progress.wait_for(self.seq);
        let mut interfaces = Vec::new();
        let mut held_late = Vec::new();
        for tx in &self.senders {
            let (reply, answer) = tokio::sync::oneshot::channel();
            if tx.blocking_send(ShardMsg::Checkpoint(reply)).is_err() {
                continue;
            }
            if let Ok(part) = answer.blocking_recv() {
                interfaces.extend(part.interfaces);
                held_late.extend(part.held_late);
            }
        }
        interfaces.sort_by_key(|(id, _)| *id);
        let closer = self.closer_state.lock().unwrap_or_else(|e| e.into_inner()).clone();
        let names = self.interner.names().read().iter().map(|n| n.to_string()).collect();
        EngineCheckpoint {
            spec: self.config.spec,
            late: self.config.late,
            lateness_secs: self.config.lateness_secs,
            names,
            learned: self.directions.checkpoint(),
            watermark: self.watermark,
            marked_slide: self.marked_slide,
            seq: self.seq,
            known_panes: self.known_panes.iter().copied().collect(),
            new_panes: self.new_panes.clone(),
            interfaces,
            held_late,
            closer,
            last_record_at: self.last_record_at,
            counted: EngineCounts::of(&self.stats),
            labels: self.labels.table().entries(),
            services: self.services.table().entries(),
        }
    }
}
