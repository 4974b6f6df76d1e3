//! The engine: a router, N shard workers and a closer, connected by bounded channels.
//!
//! ```text
//!   records ──► Router ──batches, markers──► shard worker ×N ──► DashMap<interface, state>
//!                 │                               │ acks                    ▲ reads sealed panes
//!                 └──────── markers ────────────► Closer ───────────────────┘
//!                                                   └──► snapshots (ordered)
//! ```
//!
//! **Determinism.** Everything that decides what a snapshot contains is sequenced by the
//! router, in input order: the watermark, which records are late, and where the markers fall.
//! A marker is sent in-band to every shard whenever the watermark crosses a slide boundary.
//! A shard acknowledges a marker once every record before it is applied; when all shards have,
//! the closer reads the sealed panes (which no on-time record can touch any more) while the
//! shards go on with newer records. Late records are held by their shard and applied only once
//! the closer has finished the previous marker, so each one lands in the same close whatever
//! the timing. Routing keeps each interface on one shard, so per-interface state sees its
//! records in input order. Replay output is therefore identical for any number of shards.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use dashmap::DashMap;
use serde::Serialize;
use tokio::sync::mpsc;

use super::event::{FlowEvent, Interner, LastInterned, Names, RouteInput};
use super::snapshot::{Snapshot, SnapshotKey, TopN, build};
use super::state::{Caps, InterfaceState, Pane};
use super::time::{PaneId, TimeField, TimeMode, Watermark, WindowSpec, event_time_of};
use crate::decode::{FlowRecord, LineContext};

/// What to do with a record whose pane is already sealed.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Default,
    clap::ValueEnum,
    Serialize,
    serde::Deserialize,
    schemars::JsonSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum LatePolicy {
    /// Count it (in `late_records` of the windows still open over its pane) and drop its traffic.
    #[default]
    Drop,
    /// Apply it, and re-emit each already-closed window it changes with `revision` + 1.
    Update,
}

/// Everything the engine needs to know.
#[derive(Debug, Clone, Serialize)]
pub struct EngineConfig {
    #[serde(flatten)]
    pub spec: WindowSpec,
    pub lateness_secs: u64,
    pub idle_timeout: Duration,
    pub time: TimeMode,
    pub time_field: TimeField,
    pub late: LatePolicy,
    pub top: TopN,
    pub caps: Caps,
    pub shards: usize,
    /// The region for records that do not carry one.
    pub region: Option<String>,
    /// Events per batch sent to a shard.
    pub batch_size: usize,
    /// Batches queued per shard before the router waits.
    pub channel_capacity: usize,
}

impl EngineConfig {
    pub fn new(spec: WindowSpec) -> Self {
        EngineConfig {
            spec,
            lateness_secs: 600,
            idle_timeout: Duration::from_secs(30),
            time: TimeMode::Event,
            time_field: TimeField::Start,
            late: LatePolicy::Drop,
            top: TopN::default(),
            caps: Caps::default(),
            shards: std::thread::available_parallelism().map_or(2, |n| n.get()),
            region: None,
            // A shard applies a batch grouped by interface: with a thousand busy interfaces a
            // batch of 8192 gives each a run of several events on its pane's cache lines (a
            // tenth less CPU than 1024 on the 10 M-record benchmark). Four batches queued per
            // shard hold 32,768 events (about 3 MiB), twice the sixteen of 1024 before.
            batch_size: 8192,
            channel_capacity: 4,
        }
    }

    /// The oldest pane that can still take a late record at watermark `wm`: one with a window
    /// still open, or with `--late update`, one sealed less than a lateness ago.
    pub fn late_horizon(&self, wm: u64) -> PaneId {
        let extra = match self.late {
            LatePolicy::Drop => 0,
            LatePolicy::Update => self.lateness_secs,
        };
        let horizon = self.spec.window().saturating_add(extra);
        match wm.checked_sub(horizon) {
            // Pane p is past the horizon once p·S + horizon <= wm.
            Some(x) => (x / self.spec.slide()).saturating_add(1),
            None => 0,
        }
    }

    /// The oldest pane whose state is kept at watermark `wm`. With `--late update`, every pane
    /// of a window that may still be corrected, so a correction is built from the whole window.
    pub fn state_horizon(&self, wm: u64) -> PaneId {
        let late = self.late_horizon(wm);
        match self.late {
            LatePolicy::Drop => late,
            LatePolicy::Update => late.saturating_sub(self.spec.panes() - 1),
        }
    }
}

/// Counters the engine keeps about itself.
#[derive(Debug, Default)]
pub struct EngineStats {
    pub records: AtomicU64,
    pub late_records: AtomicU64,
    /// Late records too old for any kept pane: counted here only.
    pub expired_late_records: AtomicU64,
    pub missing_interface: AtomicU64,
    pub snapshots: AtomicU64,
    pub revisions: AtomicU64,
    pub windows_closed: AtomicU64,
    /// The watermark (0 before the first record; u64::MAX once finished).
    pub watermark: AtomicU64,
    pub last_close_micros: AtomicU64,
    /// Time spent closing windows, in total.
    pub close_micros_total: AtomicU64,
    /// Windows with data that have not closed yet.
    pub open_windows: AtomicU64,
    /// Events that could not be handed to their shard because its worker had stopped (only
    /// after a worker panic): counted so that /status shows it, never silent.
    pub events_lost_to_stopped_shard: AtomicU64,
}

/// A record the router refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum RouteError {
    #[error("the record names no interface (no interface-id, resource-id or tgw-attachment-id)")]
    MissingInterface,
}

enum ShardMsg {
    Batch(Vec<FlowEvent>),
    Marker {
        seq: u64,
    },
    /// Reply with a copy of the shard's state (everything before this message applied).
    Checkpoint(tokio::sync::oneshot::Sender<ShardState>),
}

/// A shard's part of a checkpoint: its interfaces, and the late events it holds.
type ShardState = (Vec<(u32, InterfaceState)>, Vec<FlowEvent>);

/// The closer's part of a checkpoint, published after every close.
#[derive(Debug, Clone, Default, Serialize, serde::Deserialize)]
pub struct CloserState {
    pub live_panes: Vec<PaneId>,
    pub last_closed: Option<PaneId>,
    pub revisions: Vec<((u32, PaneId), u32)>,
}

/// Everything the engine needs to continue where it stopped: a consistent cut of the router,
/// every shard and the closer.
#[derive(Debug, Clone, Serialize, serde::Deserialize)]
pub struct EngineState {
    /// The window spec and late policy the state was built with; restoring under different
    /// ones is refused.
    pub spec: WindowSpec,
    pub late: LatePolicy,
    pub lateness_secs: u64,
    pub names: Vec<String>,
    pub watermark: Watermark,
    pub marked_slide: Option<u64>,
    pub seq: u64,
    pub known_panes: Vec<PaneId>,
    /// Panes seen since the last marker, not yet announced to the closer.
    pub new_panes: Vec<PaneId>,
    pub interfaces: Vec<(u32, InterfaceState)>,
    pub held_late: Vec<FlowEvent>,
    pub closer: CloserState,
    /// Arrival time of the last record, so that the idle timeout goes on after a restart.
    pub last_record_at: Option<u64>,
}

impl EngineState {
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

struct MarkerInfo {
    seq: u64,
    watermark: u64,
    new_panes: Vec<PaneId>,
}

struct Ack {
    seq: u64,
    /// (interface, pane) pairs changed by late records (`--late update`).
    dirty: Vec<(u32, PaneId)>,
}

type Hasher = foldhash::fast::RandomState;

/// One shard's state: interfaces by interned id.
#[derive(Debug, Default)]
pub struct Shard {
    pub interfaces: DashMap<u32, InterfaceState, Hasher>,
}

/// The last marker the closer has finished, for shards holding late records.
#[derive(Default)]
struct CloseProgress {
    done: Mutex<u64>,
    changed: Condvar,
}

impl CloseProgress {
    fn set(&self, seq: u64) {
        *self.done.lock().unwrap_or_else(|e| e.into_inner()) = seq;
        self.changed.notify_all();
    }

    fn wait_for(&self, seq: u64) {
        let mut done = self.done.lock().unwrap_or_else(|e| e.into_inner());
        while *done < seq {
            done = self.changed.wait(done).unwrap_or_else(|e| e.into_inner());
        }
    }
}

/// A running engine: push records through [`Router`], read snapshots from `snapshots`.
pub struct Engine {
    pub router: Router,
    /// Snapshot batches, one per close, each ordered by window_start, interface_id, revision.
    pub snapshots: mpsc::Receiver<Vec<Snapshot>>,
    pub stats: Arc<EngineStats>,
    pub shards: Vec<Arc<Shard>>,
    pub names: Names,
    threads: Vec<JoinHandle<()>>,
}

impl Engine {
    /// Starts the shard workers and the closer on their own threads.
    pub fn start(config: EngineConfig) -> Engine {
        Engine::start_from(config, None)
    }

    /// Starts from a checkpoint (see [`Router::checkpoint`]); check
    /// [`EngineState::incompatibility`] first.
    pub fn start_from(config: EngineConfig, state: Option<EngineState>) -> Engine {
        let config = Arc::new(config);
        let n = config.shards.max(1);
        let stats = Arc::new(EngineStats::default());
        let progress = Arc::new(CloseProgress::default());
        let mut state = state;
        let interner = match &mut state {
            Some(s) => Interner::from_names(std::mem::take(&mut s.names)),
            None => Interner::default(),
        };
        let names = interner.names();
        // Restored interfaces and held late events go to the shard that now owns them.
        let mut restored: Vec<ShardState> = (0..n).map(|_| (Vec::new(), Vec::new())).collect();
        if let Some(s) = &mut state {
            for (id, st) in std::mem::take(&mut s.interfaces) {
                restored[shard_of(id, n)].0.push((id, st));
            }
            for ev in std::mem::take(&mut s.held_late) {
                restored[shard_of(ev.interface, n)].1.push(ev);
            }
            progress.set(s.seq);
        }
        let closer_state =
            Arc::new(Mutex::new(state.as_ref().map(|s| s.closer.clone()).unwrap_or_default()));
        let (ack_tx, ack_rx) = mpsc::channel::<Ack>(n * 4);
        let (marker_tx, marker_rx) = mpsc::channel::<MarkerInfo>(64);
        let (snap_tx, snap_rx) = mpsc::channel::<Vec<Snapshot>>(64);
        let (recycle_tx, recycle_rx) = mpsc::channel::<Vec<FlowEvent>>(n * config.channel_capacity);

        let mut shards = Vec::with_capacity(n);
        let mut senders = Vec::with_capacity(n);
        let mut threads = Vec::new();
        for (i, (interfaces, late)) in restored.into_iter().enumerate() {
            let shard = Arc::new(Shard::default());
            for (id, st) in interfaces {
                shard.interfaces.insert(id, st);
            }
            let (tx, rx) = mpsc::channel::<ShardMsg>(config.channel_capacity);
            senders.push(tx);
            let worker = Worker {
                shard: shard.clone(),
                config: config.clone(),
                late,
                order: Vec::new(),
                progress: progress.clone(),
                ack: ack_tx.clone(),
                recycle: recycle_tx.clone(),
            };
            threads.push(
                std::thread::Builder::new()
                    .name(format!("vpcflowd-shard-{i}"))
                    .spawn(move || worker.run(rx))
                    .expect("spawn shard worker"),
            );
            shards.push(shard);
        }
        drop(ack_tx);

        let restored_closer = state.as_ref().map(|s| s.closer.clone()).unwrap_or_default();
        let closer = Closer {
            config: config.clone(),
            shards: shards.clone(),
            names: names.clone(),
            stats: stats.clone(),
            progress: progress.clone(),
            live_panes: restored_closer.live_panes.iter().copied().collect(),
            last_closed: restored_closer.last_closed,
            revisions: restored_closer.revisions.iter().copied().collect(),
            pending: HashMap::new(),
            published: closer_state.clone(),
        };
        threads.push(
            std::thread::Builder::new()
                .name("vpcflowd-closer".into())
                .spawn(move || closer.run(marker_rx, ack_rx, snap_tx))
                .expect("spawn closer"),
        );

        let router = Router {
            watermark: state.as_ref().map_or(Watermark::new(config.lateness_secs), |s| s.watermark),
            batches: (0..n).map(|_| Vec::with_capacity(config.batch_size)).collect(),
            config,
            senders,
            markers: marker_tx,
            recycle: recycle_rx,
            interner,
            seq: state.as_ref().map_or(0, |s| s.seq),
            marked_slide: state.as_ref().and_then(|s| s.marked_slide),
            known_panes: state
                .as_ref()
                .map(|s| s.known_panes.iter().copied().collect())
                .unwrap_or_default(),
            new_panes: state.as_ref().map(|s| s.new_panes.clone()).unwrap_or_default(),
            progress,
            closer_state,
            stopped: false,
            default_region: None,
            stats: stats.clone(),
            unpublished_records: 0,
            last_record_at: state.as_ref().and_then(|s| s.last_record_at),
            last_interface: LastInterned::default(),
            last_account: LastInterned::default(),
            last_region: LastInterned::default(),
            last_pane: None,
            last_marked_watermark: None,
        };
        let mut router = router;
        router.default_region = router.config.region.clone().map(|r| router.interner.intern(&r));
        Engine { router, snapshots: snap_rx, stats, shards, names, threads }
    }

    /// Splits the engine into its router and a handle that joins the threads.
    pub fn into_parts(self) -> (Router, mpsc::Receiver<Vec<Snapshot>>, EngineJoin) {
        (self.router, self.snapshots, EngineJoin { threads: self.threads })
    }
}

/// Joins an engine's threads.
pub struct EngineJoin {
    threads: Vec<JoinHandle<()>>,
}

impl EngineJoin {
    pub fn join(self) {
        for t in self.threads {
            let _ = t.join();
        }
    }
}

/// The single sequencer of the engine's input. Not `Sync`: one owner pushes records in order.
pub struct Router {
    config: Arc<EngineConfig>,
    senders: Vec<mpsc::Sender<ShardMsg>>,
    markers: mpsc::Sender<MarkerInfo>,
    recycle: mpsc::Receiver<Vec<FlowEvent>>,
    batches: Vec<Vec<FlowEvent>>,
    watermark: Watermark,
    interner: Interner,
    seq: u64,
    /// The slide (watermark / slide) of the last marker.
    marked_slide: Option<u64>,
    known_panes: HashSet<PaneId, Hasher>,
    new_panes: Vec<PaneId>,
    default_region: Option<u32>,
    stats: Arc<EngineStats>,
    /// Counts not yet added to `stats` (published with each batch, not per record).
    unpublished_records: u64,
    /// Arrival time (seconds) of the last record, for the idle timeout.
    last_record_at: Option<u64>,
    progress: Arc<CloseProgress>,
    closer_state: Arc<Mutex<CloserState>>,
    /// Set by [`Router::stop`]: dropping does not close the windows.
    stopped: bool,
    last_interface: LastInterned,
    last_account: LastInterned,
    last_region: LastInterned,
    last_pane: Option<PaneId>,
    /// The watermark `mark_if_advanced` last looked at: most records leave it where it was,
    /// and then there is nothing to divide.
    last_marked_watermark: Option<u64>,
}

impl Router {
    /// Routes one record that arrived at `arrival` (Unix seconds).
    ///
    /// Blocks while the target shard's queue is full (backpressure).
    #[inline]
    pub fn push(
        &mut self,
        record: &FlowRecord<'_>,
        ctx: &LineContext<'_>,
        arrival: u64,
    ) -> Result<(), RouteError> {
        self.push_input(&RouteInput::of(record, ctx), arrival)
    }

    /// Counts a record refused for naming no interface, also when that was found off the
    /// router's thread (a request parsed on an HTTP worker).
    pub fn refuse_missing_interface(&self) -> RouteError {
        self.stats.missing_interface.fetch_add(1, Ordering::Relaxed);
        RouteError::MissingInterface
    }

    /// [`Router::push`] for a record already resolved into what routing reads.
    #[inline]
    pub fn push_input(&mut self, input: &RouteInput<'_>, arrival: u64) -> Result<(), RouteError> {
        let Some(interface) = input.interface else {
            return Err(self.refuse_missing_interface());
        };
        self.push_named(interface, input, arrival);
        Ok(())
    }

    /// [`Router::push_input`] for a record whose interface is known to be `interface` (its
    /// `input.interface` is not read again): the records of a
    /// [`crate::window::prepared::PreparedRecords`], which keeps only records that name one.
    #[inline]
    pub fn push_named(&mut self, interface: &str, input: &RouteInput<'_>, arrival: u64) {
        self.last_record_at = Some(arrival);
        let cfg = &self.config;
        let f = &input.fields;
        let t = event_time_of(f.start, f.end, cfg.time, cfg.time_field, arrival);
        let pane = cfg.spec.pane_of(t);
        let wm = self.watermark.get();
        let late = cfg.spec.is_sealed(pane, wm);
        self.unpublished_records += 1;
        if late {
            self.stats.late_records.fetch_add(1, Ordering::Relaxed);
            if pane < cfg.late_horizon(wm.unwrap_or(0)) {
                self.stats.expired_late_records.fetch_add(1, Ordering::Relaxed);
                return;
            }
        }
        self.watermark.observe(t);
        let id = self.last_interface.intern(&mut self.interner, interface);
        let account = input.account.map(|a| self.last_account.intern(&mut self.interner, a));
        let region = match input.region {
            Some(r) => Some(self.last_region.intern(&mut self.interner, r)),
            None => self.default_region,
        };
        let event = FlowEvent {
            interface: id,
            pane,
            late,
            status: f.status,
            action: f.action,
            srcaddr: f.srcaddr,
            dstaddr: f.dstaddr,
            srcport: f.srcport,
            dstport: f.dstport,
            protocol: f.protocol,
            packets: f.packets.unwrap_or(0),
            bytes: f.bytes.unwrap_or(0),
            account,
            region,
        };
        if self.last_pane != Some(pane) {
            self.last_pane = Some(pane);
            if self.known_panes.insert(pane) {
                self.new_panes.push(pane);
            }
        }
        let shard = shard_of(id, self.senders.len());
        self.batches[shard].push(event);
        if self.batches[shard].len() >= self.config.batch_size {
            self.flush_shard(shard);
        }
        self.mark_if_advanced();
    }

    /// Lets the watermark move on with the wall clock when no record has arrived for the idle
    /// timeout. Call it periodically with the current time (Unix seconds).
    pub fn tick(&mut self, now: u64) {
        let Some(last) = self.last_record_at else { return };
        let idle = now.saturating_sub(last);
        if idle >= self.config.idle_timeout.as_secs() {
            self.watermark.idle_for(idle);
            self.mark_if_advanced();
        }
    }

    /// The current watermark.
    pub fn watermark(&self) -> Option<u64> {
        self.watermark.get()
    }

    /// Closes every window and stops the engine's threads once they have drained.
    pub fn finish(mut self) {
        self.watermark.finish();
        self.mark_if_advanced();
    }

    /// Stops the engine's threads once they have drained, without closing open windows (after
    /// a [`Router::checkpoint`] that will be restored).
    pub fn stop(mut self) {
        for shard in 0..self.senders.len() {
            self.flush_shard(shard);
        }
        self.stopped = true;
    }

    /// A consistent copy of the whole engine: everything routed so far applied, every marker
    /// closed. Blocks while the shards and the closer catch up.
    pub fn checkpoint(&mut self) -> EngineState {
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
            if let Ok((i, l)) = answer.blocking_recv() {
                interfaces.extend(i);
                held_late.extend(l);
            }
        }
        interfaces.sort_by_key(|(id, _)| *id);
        let closer = self.closer_state.lock().unwrap_or_else(|e| e.into_inner()).clone();
        let names = self.interner.names().read().iter().map(|n| n.to_string()).collect();
        EngineState {
            spec: self.config.spec,
            late: self.config.late,
            lateness_secs: self.config.lateness_secs,
            names,
            watermark: self.watermark,
            marked_slide: self.marked_slide,
            seq: self.seq,
            known_panes: self.known_panes.iter().copied().collect(),
            new_panes: self.new_panes.clone(),
            interfaces,
            held_late,
            closer,
            last_record_at: self.last_record_at,
        }
    }

    fn flush_shard(&mut self, shard: usize) {
        if self.unpublished_records > 0 {
            self.stats.records.fetch_add(self.unpublished_records, Ordering::Relaxed);
            self.unpublished_records = 0;
        }
        if self.batches[shard].is_empty() {
            return;
        }
        let fresh =
            self.recycle.try_recv().unwrap_or_else(|_| Vec::with_capacity(self.config.batch_size));
        let batch = std::mem::replace(&mut self.batches[shard], fresh);
        let n = batch.len() as u64;
        if self.senders[shard].blocking_send(ShardMsg::Batch(batch)).is_err() {
            self.stats.events_lost_to_stopped_shard.fetch_add(n, Ordering::Relaxed);
        }
    }

    fn mark_if_advanced(&mut self) {
        let Some(wm) = self.watermark.get() else { return };
        if self.last_marked_watermark == Some(wm) {
            return;
        }
        self.last_marked_watermark = Some(wm);
        let slide = wm / self.config.spec.slide();
        if self.marked_slide.is_some_and(|s| s >= slide) {
            return;
        }
        self.marked_slide = Some(slide);
        self.stats.watermark.store(wm, Ordering::Relaxed);
        for shard in 0..self.senders.len() {
            self.flush_shard(shard);
        }
        self.seq += 1;
        let horizon = self.config.late_horizon(wm);
        self.known_panes.retain(|&p| p >= horizon);
        self.last_pane = None;
        let new_panes = std::mem::take(&mut self.new_panes);
        let _ = self.markers.blocking_send(MarkerInfo { seq: self.seq, watermark: wm, new_panes });
        for tx in &self.senders {
            let _ = tx.blocking_send(ShardMsg::Marker { seq: self.seq });
        }
    }
}

impl Drop for Router {
    /// A router dropped without [`Router::finish`] still closes every window.
    fn drop(&mut self) {
        if !self.stopped && self.watermark.get() != Some(u64::MAX) {
            self.watermark.finish();
            self.mark_if_advanced();
        }
    }
}

/// Which shard owns an interface. Fibonacci hashing of the interned id.
#[inline]
fn shard_of(interface: u32, shards: usize) -> usize {
    let h = u64::from(interface).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    ((h >> 32) as usize) % shards
}

struct Worker {
    shard: Arc<Shard>,
    config: Arc<EngineConfig>,
    late: Vec<FlowEvent>,
    /// A batch's application order, reused: (interface << 32) | position.
    order: Vec<u64>,
    progress: Arc<CloseProgress>,
    ack: mpsc::Sender<Ack>,
    recycle: mpsc::Sender<Vec<FlowEvent>>,
}

impl Worker {
    fn run(mut self, mut rx: mpsc::Receiver<ShardMsg>) {
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
                    let _ = reply.send((interfaces, self.late.clone()));
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

struct Closer {
    config: Arc<EngineConfig>,
    shards: Vec<Arc<Shard>>,
    names: Names,
    stats: Arc<EngineStats>,
    progress: Arc<CloseProgress>,
    /// Panes that hold data and are not retired.
    live_panes: BTreeSet<PaneId>,
    /// The newest window (by first pane) that has closed.
    last_closed: Option<PaneId>,
    /// The revision last emitted for (interface, window) while corrections can still land.
    revisions: HashMap<(u32, PaneId), u32>,
    /// Acks received for markers not yet closed: (count, dirty panes).
    pending: HashMap<u64, (usize, Vec<(u32, PaneId)>)>,
    /// A copy of the state above, for checkpoints.
    published: Arc<Mutex<CloserState>>,
}

impl Closer {
    fn run(
        mut self,
        mut markers: mpsc::Receiver<MarkerInfo>,
        mut acks: mpsc::Receiver<Ack>,
        out: mpsc::Sender<Vec<Snapshot>>,
    ) {
        while let Some(marker) = markers.blocking_recv() {
            self.live_panes.extend(marker.new_panes.iter().copied());
            let Some(dirty) = self.wait_for_acks(marker.seq, &mut acks) else { return };
            let started = std::time::Instant::now();
            let snapshots = self.close(marker.watermark, dirty);
            let micros = started.elapsed().as_micros() as u64;
            self.stats.last_close_micros.store(micros, Ordering::Relaxed);
            self.stats.close_micros_total.fetch_add(micros, Ordering::Relaxed);
            *self.published.lock().unwrap_or_else(|e| e.into_inner()) = CloserState {
                live_panes: self.live_panes.iter().copied().collect(),
                last_closed: self.last_closed,
                revisions: self.revisions.iter().map(|(k, v)| (*k, *v)).collect(),
            };
            self.progress.set(marker.seq);
            if !snapshots.is_empty() && out.blocking_send(snapshots).is_err() {
                // Nobody reads snapshots any more; keep closing so that shards never wait.
            }
        }
    }

    /// Collects one ack per shard for `seq`; `None` if the shards are gone.
    fn wait_for_acks(
        &mut self,
        seq: u64,
        acks: &mut mpsc::Receiver<Ack>,
    ) -> Option<Vec<(u32, PaneId)>> {
        let n = self.shards.len();
        loop {
            if let Some((count, _)) = self.pending.get(&seq)
                && *count == n
            {
                return self.pending.remove(&seq).map(|(_, dirty)| dirty);
            }
            let ack = acks.blocking_recv()?;
            let entry = self.pending.entry(ack.seq).or_default();
            entry.0 += 1;
            entry.1.extend(ack.dirty);
        }
    }

    fn close(&mut self, wm: u64, dirty: Vec<(u32, PaneId)>) -> Vec<Snapshot> {
        let spec = self.config.spec;
        let n = spec.panes();
        let mut out = Vec::new();

        // Corrections to windows that closed at earlier markers (`--late update`).
        if self.config.late == LatePolicy::Update
            && let Some(last) = self.last_closed
        {
            let mut windows: BTreeSet<(PaneId, u32)> = BTreeSet::new();
            for (iface, pane) in dirty {
                for k in spec.windows_containing(pane) {
                    if k <= last {
                        windows.insert((k, iface));
                    }
                }
            }
            for (k, iface) in windows {
                let revision = self.revisions.get(&(iface, k)).map_or(0, |r| r + 1);
                if let Some(s) = self.snapshot(iface, k, revision) {
                    self.revisions.insert((iface, k), revision);
                    self.stats.revisions.fetch_add(1, Ordering::Relaxed);
                    out.push(s);
                }
            }
        }

        // Windows closing now: those ending at or before the watermark, with data.
        if let Some(limit) = spec.last_closed_window(wm) {
            loop {
                let from = self.last_closed.map_or(0, |l| l + 1);
                let Some(&p) = self.live_panes.range(from..).next() else { break };
                let k = from.max(p.saturating_sub(n - 1));
                if k > limit {
                    break;
                }
                let mut closed = self.close_window(k);
                self.stats.windows_closed.fetch_add(1, Ordering::Relaxed);
                out.append(&mut closed);
                self.last_closed = Some(k);
            }
        }

        // Retire what no window (or correction) can need any more.
        let keep_from = self.config.state_horizon(wm);
        self.live_panes = self.live_panes.split_off(&keep_from);
        for shard in &self.shards {
            shard.interfaces.retain(|_, state| state.retire_before(keep_from));
        }
        // A window can be corrected while its newest pane can still take a late record.
        let late_horizon = self.config.late_horizon(wm);
        self.revisions.retain(|&(_, k), _| k.saturating_add(n) > late_horizon);

        let open = match (self.live_panes.first(), self.live_panes.last()) {
            (Some(&lo), Some(&hi)) => {
                let first = self
                    .last_closed
                    .map_or(lo.saturating_sub(n - 1), |l| (l + 1).max(lo.saturating_sub(n - 1)));
                hi.saturating_add(1).saturating_sub(first)
            }
            _ => 0,
        };
        self.stats.open_windows.store(open, Ordering::Relaxed);
        out.sort_by(|a, b| {
            (a.window_start, &a.interface_id, a.revision).cmp(&(
                b.window_start,
                &b.interface_id,
                b.revision,
            ))
        });
        self.stats.snapshots.fetch_add(out.len() as u64, Ordering::Relaxed);
        out
    }

    /// Snapshots of every interface with data in window `k`, built shard by shard in parallel.
    fn close_window(&mut self, k: PaneId) -> Vec<Snapshot> {
        let track_revisions = self.config.late == LatePolicy::Update;
        let per_shard: Vec<Vec<(u32, Snapshot)>> = std::thread::scope(|scope| {
            let handles: Vec<_> = self
                .shards
                .iter()
                .map(|shard| {
                    let this = &*self;
                    scope.spawn(move || {
                        let mut v = Vec::new();
                        for entry in shard.interfaces.iter() {
                            if let Some(s) = this.build(*entry.key(), entry.value(), k, 0) {
                                v.push((*entry.key(), s));
                            }
                        }
                        v
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().expect("snapshot builder panicked")).collect()
        });
        let mut out = Vec::new();
        for (iface, s) in per_shard.into_iter().flatten() {
            if track_revisions {
                self.revisions.insert((iface, k), 0);
            }
            out.push(s);
        }
        out
    }

    fn snapshot(&self, iface: u32, k: PaneId, revision: u32) -> Option<Snapshot> {
        let shard = &self.shards[shard_of(iface, self.shards.len())];
        let state = shard.interfaces.get(&iface)?;
        self.build(iface, &state, k, revision)
    }

    fn build(
        &self,
        iface: u32,
        state: &InterfaceState,
        k: PaneId,
        revision: u32,
    ) -> Option<Snapshot> {
        let spec = self.config.spec;
        let panes: Vec<&Pane> = state.panes_in(k, spec.panes()).collect();
        if panes.is_empty() {
            return None;
        }
        let account = panes.iter().find_map(|p| p.account).map(|a| self.names.get(a));
        let region = panes.iter().find_map(|p| p.region).map(|r| self.names.get(r));
        let key = SnapshotKey {
            window_start: spec.pane_start(k),
            window_end: spec.window_end(k),
            interface_id: self.names.get(iface),
            account_id: account,
            region,
            revision,
        };
        Some(build(key, &panes, &self.config.top))
    }
}
