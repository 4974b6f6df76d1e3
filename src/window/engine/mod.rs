//! The engine is a router, N shard workers and a closer, connected by bounded channels.
//!
//! ```text
//!   records ──► EventRouter ──batches, markers──► shard worker ×N ──► DashMap<interface, state>
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

mod checkpoint;
mod closer;
mod config;
mod labels;
mod open;
mod router;
mod shard;

use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;

use tokio::sync::mpsc;

use self::checkpoint::ShardCheckpoint;
pub use self::checkpoint::{CloserCheckpoint, EngineCheckpoint};
use self::closer::Closer;
pub use self::config::{EngineConfig, LatePolicy};
pub use self::open::{OPEN_SOURCES, OpenWindows, ProvisionalSource, ProvisionalWindow};
pub use self::router::EventRouter;
use self::router::RouterLinks;
pub use self::shard::Shard;
use self::shard::{ShardMsg, ShardWorker};
use super::event::{FlowEvent, Interner, Names};
use super::snapshot::Snapshot;
use super::time::PaneId;

/// Counters the engine keeps about itself.
#[derive(Debug, Default)]
pub struct EngineStats {
    pub records: AtomicU64,
    pub late_records: AtomicU64,
    /// Late records too old for any kept pane, which are counted here only.
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
    /// Records dropped by `[filters]`, by [`crate::record::filter::FilterReason::index`].
    pub filtered: [AtomicU64; 4],
    /// Events that could not be handed to their shard because its worker had stopped (only
    /// after a worker panic). They are counted so that `/api/v1/status` shows the loss, which is
    /// never silent.
    pub events_lost_to_stopped_shard: AtomicU64,
    /// Batches of snapshots the closer emitted in this process, counted before the marker's
    /// close is published, so a checkpoint knows how many its consumer must have taken.
    pub snapshot_batches: AtomicU64,
}

/// A record the router refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum RouteError {
    #[error("the record names no interface (no interface-id, resource-id or tgw-attachment-id)")]
    MissingInterface,
}

/// What the router tells the closer at a marker.
struct MarkerInfo {
    seq: u64,
    watermark: u64,
    new_panes: Vec<PaneId>,
}

/// A shard's acknowledgement of a marker: everything routed before it is applied.
struct Ack {
    seq: u64,
    /// (interface, pane) pairs changed by late records (`--late update`).
    dirty: Vec<(u32, PaneId)>,
}

type Hasher = foldhash::fast::RandomState;

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

/// A running engine: push records through [`EventRouter`], read snapshots from `snapshots`.
pub struct Engine {
    pub router: EventRouter,
    /// Snapshot batches, one per close, each ordered by window_start, interface_id, revision.
    pub snapshots: mpsc::Receiver<Vec<Snapshot>>,
    pub stats: Arc<EngineStats>,
    pub shards: Vec<Arc<Shard>>,
    pub names: Names,
    /// Reads the windows still open (provisional totals).
    pub open: OpenWindows,
    threads: Vec<JoinHandle<()>>,
}

/// The channels between the engine's threads.
struct Wiring {
    acks: (mpsc::Sender<Ack>, mpsc::Receiver<Ack>),
    markers: (mpsc::Sender<MarkerInfo>, mpsc::Receiver<MarkerInfo>),
    snapshots: (mpsc::Sender<Vec<Snapshot>>, mpsc::Receiver<Vec<Snapshot>>),
    /// Emptied batches going back from the shards to the router.
    recycle: (mpsc::Sender<Vec<FlowEvent>>, mpsc::Receiver<Vec<FlowEvent>>),
}

impl Wiring {
    fn new(shards: usize, config: &EngineConfig) -> Wiring {
        Wiring {
            acks: mpsc::channel(shards * 4),
            markers: mpsc::channel(64),
            snapshots: mpsc::channel(64),
            recycle: mpsc::channel(shards * config.channel_capacity),
        }
    }
}

impl Engine {
    /// Starts the shard workers and the closer on their own threads.
    pub fn start(config: EngineConfig) -> Engine {
        Engine::start_from(config, None)
    }

    /// Starts from a checkpoint (see [`EventRouter::checkpoint`]); check
    /// [`EngineCheckpoint::incompatibility`] first.
    pub fn start_from(config: EngineConfig, state: Option<EngineCheckpoint>) -> Engine {
        let config = Arc::new(config);
        let n = config.shards.max(1);
        let stats = Arc::new(EngineStats::default());
        if let Some(s) = &state {
            // A restart continues the counts of what the state holds, so that a reader of the
            // status (the harness's `--verify`) sees one run.
            s.counted.restore(&stats);
        }
        let progress = Arc::new(CloseProgress::default());
        let mut state = state;
        let interner = match &mut state {
            Some(s) => Interner::from_names(std::mem::take(&mut s.names)),
            None => Interner::default(),
        };
        let names = interner.names();
        let restored = match &mut state {
            Some(s) => {
                progress.set(s.seq);
                ShardCheckpoint::split(s, n)
            }
            None => (0..n).map(|_| ShardCheckpoint::default()).collect(),
        };
        let restored_closer = state.as_ref().map(|s| s.closer.clone()).unwrap_or_default();
        let closer_state = Arc::new(Mutex::new(restored_closer.clone()));
        let Wiring { acks, markers, snapshots, recycle } = Wiring::new(n, &config);

        let mut shards = Vec::with_capacity(n);
        let mut senders = Vec::with_capacity(n);
        let mut threads = Vec::new();
        for (i, restored) in restored.into_iter().enumerate() {
            let shard = Arc::new(Shard::default());
            for (id, st) in restored.interfaces {
                shard.interfaces.insert(id, st);
            }
            let (tx, rx) = mpsc::channel::<ShardMsg>(config.channel_capacity);
            senders.push(tx);
            let worker = ShardWorker::new(
                shard.clone(),
                config.clone(),
                restored.held_late,
                progress.clone(),
                acks.0.clone(),
                recycle.0.clone(),
            );
            threads.push(spawn_named(format!("vpcflowd-shard-{i}"), move || worker.run(rx)));
            shards.push(shard);
        }
        drop(acks.0);

        let labels = labels::InterfaceLabels::restored(
            state.as_ref().map_or(&[][..], |s| s.labels.as_slice()).iter().copied(),
        );
        let services = labels::AddressServices::restored(labels::capped(
            state.as_ref().map_or(&[][..], |s| s.services.as_slice()),
        ));
        let closer = Closer::restored(
            config.clone(),
            shards.clone(),
            (names.clone(), labels.clone(), services.clone()),
            stats.clone(),
            progress.clone(),
            &restored_closer,
            closer_state.clone(),
        );
        let (marker_rx, ack_rx, snap_tx) = (markers.1, acks.1, snapshots.0);
        threads.push(spawn_named("vpcflowd-closer".into(), move || {
            closer.run(marker_rx, ack_rx, snap_tx)
        }));

        let links = RouterLinks {
            senders,
            markers: markers.0,
            recycle: recycle.1,
            progress,
            closer_state,
            stats: stats.clone(),
            labels: labels.clone(),
            services,
        };
        let open = OpenWindows::new(config.clone(), shards.clone(), (names.clone(), labels));
        let router = EventRouter::restored(config, links, interner, state.as_ref());
        Engine { router, snapshots: snapshots.1, stats, shards, names, open, threads }
    }

    /// Splits the engine into its router and a handle that joins the threads.
    pub fn into_parts(self) -> (EventRouter, mpsc::Receiver<Vec<Snapshot>>, EngineJoin) {
        (self.router, self.snapshots, EngineJoin { threads: self.threads })
    }
}

/// Spawns one of the engine's threads. A thread that cannot be started leaves the engine
/// unable to run at all, so it panics, as `std::thread::spawn` does.
fn spawn_named(name: String, body: impl FnOnce() + Send + 'static) -> JoinHandle<()> {
    let what = name.clone();
    std::thread::Builder::new()
        .name(name)
        .spawn(body)
        .unwrap_or_else(|e| panic!("cannot start thread {what}: {e}"))
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

/// Which shard owns an interface, by Fibonacci hashing of the interned id.
#[inline]
fn shard_of(interface: u32, shards: usize) -> usize {
    let h = u64::from(interface).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    ((h >> 32) as usize) % shards
}
