//! Once every shard has acknowledged a marker, the closer builds the closing windows' snapshots
//! from the sealed panes and retires state no window needs.

use std::collections::{BTreeSet, HashMap};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};

use tokio::sync::mpsc;

use super::checkpoint::CloserCheckpoint;
use super::config::{EngineConfig, LatePolicy};
use super::labels::{AddressServices, InterfaceLabels};
use super::shard::Shard;
use super::{Ack, CloseProgress, EngineStats, MarkerInfo, shard_of};
use crate::window::baseline::{self, PaneRecord, SourceHistories, pane_record};
use crate::window::event::Names;
use crate::window::pane::InterfacePanes;
use crate::window::snapshot::{BuildOptions, Snapshot, SnapshotKey, build};
use crate::window::time::PaneId;

/// The closer's thread: closes windows at markers, in marker order.
pub(super) struct Closer {
    config: Arc<EngineConfig>,
    shards: Vec<Arc<Shard>>,
    names: Names,
    /// Each interface's labels, written by the router.
    labels: InterfaceLabels,
    /// The AWS services records name for addresses, written by the router.
    services: AddressServices,
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
    /// Each interface's recent top sources. They live in `published` between closes (nothing
    /// reads them there while a close runs: a checkpoint waits for the close to finish), so
    /// that publishing never copies them.
    histories: SourceHistories,
    /// A copy of the state above, for checkpoints.
    published: Arc<Mutex<CloserCheckpoint>>,
}

impl Closer {
    /// A closer that continues from `restored` (the default: from nothing).
    pub(super) fn restored(
        config: Arc<EngineConfig>,
        shards: Vec<Arc<Shard>>,
        (names, labels, services): (Names, InterfaceLabels, AddressServices),
        stats: Arc<EngineStats>,
        progress: Arc<CloseProgress>,
        restored: &CloserCheckpoint,
        published: Arc<Mutex<CloserCheckpoint>>,
    ) -> Closer {
        Closer {
            config,
            shards,
            names,
            labels,
            services,
            stats,
            progress,
            live_panes: restored.live_panes.iter().copied().collect(),
            last_closed: restored.last_closed,
            revisions: restored.revisions.iter().copied().collect(),
            histories: SourceHistories::default(),
            pending: HashMap::new(),
            published,
        }
    }

    pub(super) fn run(
        mut self,
        mut markers: mpsc::Receiver<MarkerInfo>,
        mut acks: mpsc::Receiver<Ack>,
        out: mpsc::Sender<Vec<Snapshot>>,
    ) {
        while let Some(marker) = markers.blocking_recv() {
            self.live_panes.extend(marker.new_panes.iter().copied());
            let Some(dirty) = self.wait_for_acks(marker.seq, &mut acks) else { return };
            let started = std::time::Instant::now();
            let histories = std::mem::take(&mut self.lock_published().histories);
            self.histories = histories;
            let snapshots = self.close(marker.watermark, dirty);
            let micros = started.elapsed().as_micros() as u64;
            self.stats.last_close_micros.store(micros, Ordering::Relaxed);
            self.stats.close_micros_total.fetch_add(micros, Ordering::Relaxed);
            let published = CloserCheckpoint {
                live_panes: self.live_panes.iter().copied().collect(),
                last_closed: self.last_closed,
                revisions: self.revisions.iter().map(|(k, v)| (*k, *v)).collect(),
                histories: std::mem::take(&mut self.histories),
            };
            *self.lock_published() = published;
            if !snapshots.is_empty() {
                self.stats.snapshot_batches.fetch_add(1, Ordering::Relaxed);
            }
            self.progress.set(marker.seq);
            if !snapshots.is_empty() && out.blocking_send(snapshots).is_err() {
                // Nobody reads snapshots any more; keep closing so that shards never wait.
            }
        }
    }

    fn lock_published(&self) -> std::sync::MutexGuard<'_, CloserCheckpoint> {
        self.published.lock().unwrap_or_else(|e| e.into_inner())
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

        // Windows that closed at earlier markers are corrected first (`--late update`).
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

        // Then the windows that end at or before the watermark and hold data close.
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
        self.labels.prune(keep_from);
        self.services.prune(keep_from);
        // A window can be corrected while its newest pane can still take a late record.
        let late_horizon = self.config.late_horizon(wm);
        self.revisions.retain(|&(_, k), _| k.saturating_add(n) > late_horizon);
        if let Some(last) = self.last_closed {
            let retain = self.config.history_panes();
            for history in self.histories.values_mut() {
                history.forget_if_older(last, retain);
            }
        }

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

    /// Builds the snapshots of every interface with data in window `k`, shard by shard in
    /// parallel, then records each interface's pane `k` in its history (no window still to
    /// close holds that pane).
    fn close_window(&mut self, k: PaneId) -> Vec<Snapshot> {
        let track_revisions = self.config.late == LatePolicy::Update;
        let keep = self.config.top.sources;
        let per_shard: Vec<Vec<ClosedInterface>> = std::thread::scope(|scope| {
            let handles: Vec<_> = self
                .shards
                .iter()
                .map(|shard| {
                    let this = &*self;
                    scope.spawn(move || {
                        let mut v = Vec::new();
                        for entry in shard.interfaces.iter() {
                            let (iface, state) = (*entry.key(), entry.value());
                            if let Some(snapshot) = this.build(iface, state, k, 0) {
                                let pane = state.panes_in(k, 1).next();
                                let record = pane.map(|p| pane_record(p, keep));
                                v.push(ClosedInterface { iface, snapshot, record });
                            }
                        }
                        v
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().expect("snapshot builder panicked")).collect()
        });
        let retain = self.config.history_panes();
        let mut out = Vec::new();
        for closed in per_shard.into_iter().flatten() {
            if track_revisions {
                self.revisions.insert((closed.iface, k), 0);
            }
            if let Some(record) = closed.record {
                self.histories.entry(closed.iface).or_default().record(k, record, retain);
            }
            out.push(closed.snapshot);
        }
        crate::window::findings::add_sweeps(&mut out, self.config.thresholds.sweep_interfaces);
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
        state: &InterfacePanes,
        k: PaneId,
        revision: u32,
    ) -> Option<Snapshot> {
        let spec = self.config.spec;
        let window = state.window(k, spec.panes());
        if window.panes.is_empty() {
            return None;
        }
        let panes = &window.panes;
        let account = panes.iter().find_map(|p| p.account).map(|a| self.names.get(a));
        let region = panes.iter().find_map(|p| p.region).map(|r| self.names.get(r));
        let labels = self.labels.window(iface, k, k + spec.panes() - 1);
        let key = SnapshotKey {
            window_start: spec.pane_start(k),
            window_end: spec.window_end(k),
            interface_id: self.names.get(iface),
            account_id: account,
            region,
            labels: labels.map(|id| id.map(|i| self.names.get(i))),
            revision,
        };
        let (n, b) = (spec.panes(), self.config.baseline_windows);
        let baseline = self.histories.get(&iface).and_then(|h| baseline::view(h, k, n, b));
        let options = BuildOptions {
            top: &self.config.top,
            detail: self.config.detail,
            thresholds: &self.config.thresholds,
            baseline: baseline.as_ref(),
        };
        let mut snapshot = build(key, &window, &options);
        if let Some(inventory) = &self.config.inventory {
            inventory.label(&mut snapshot);
        }
        if let Some(ranges) = &self.config.aws_ranges {
            ranges.label(&mut snapshot);
        }
        // A record's own `pkt-*-aws-service` says more than the published ranges.
        let named = self.services.window(iface, k, k + spec.panes() - 1);
        if !named.is_empty() {
            let service = |a: &std::net::IpAddr| {
                named.iter().find(|(n, _)| n == a).map(|(_, id)| self.names.get(*id))
            };
            for s in &mut snapshot.sources {
                s.aws_service = service(&s.address).or(s.aws_service.take());
            }
            for d in &mut snapshot.destinations {
                d.aws_service = service(&d.address).or(d.aws_service.take());
            }
        }
        Some(snapshot)
    }
}

/// What closing a window gave for one interface: its snapshot, and its pane's record.
struct ClosedInterface {
    iface: u32,
    snapshot: Snapshot,
    record: Option<PaneRecord>,
}
