//! The router is the engine's one sequencer. It assigns each record its event time and pane,
//! decides lateness against the watermark, batches the record to the shard that owns its
//! interface, and sends a marker whenever the watermark crosses a slide boundary.

use std::collections::HashSet;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};

use tokio::sync::mpsc;

use super::checkpoint::{CloserCheckpoint, EngineCheckpoint};
use super::config::EngineConfig;
use super::shard::ShardMsg;
use super::{CloseProgress, EngineStats, Hasher, MarkerInfo, RouteError, shard_of};
use crate::decode::{FlowRecord, LineContext};
use crate::record::filter::RecordFilter;
use crate::record::{NamedRecord, RouteInput};
use crate::window::counters::SYN_ONLY;
use crate::window::direction::DirectionBook;
use crate::window::event::{FlowEvent, Interner, LastInterned};
use crate::window::time::{PaneId, Watermark, event_time_of};

/// The channels and shared state a router is started with (see [`super::Engine::start_from`]).
pub(super) struct RouterLinks {
    pub(super) senders: Vec<mpsc::Sender<ShardMsg>>,
    pub(super) markers: mpsc::Sender<MarkerInfo>,
    pub(super) recycle: mpsc::Receiver<Vec<FlowEvent>>,
    pub(super) progress: Arc<CloseProgress>,
    pub(super) closer_state: Arc<Mutex<CloserCheckpoint>>,
    pub(super) stats: Arc<EngineStats>,
    pub(super) labels: super::labels::InterfaceLabels,
    pub(super) services: super::labels::AddressServices,
}

/// The single sequencer of the engine's input. It is not `Sync`: one owner pushes records in
/// order.
pub struct EventRouter {
    pub(super) config: Arc<EngineConfig>,
    pub(super) senders: Vec<mpsc::Sender<ShardMsg>>,
    markers: mpsc::Sender<MarkerInfo>,
    recycle: mpsc::Receiver<Vec<FlowEvent>>,
    batches: Vec<Vec<FlowEvent>>,
    pub(super) watermark: Watermark,
    pub(super) interner: Interner,
    /// Each interface's direction state (what it learned of its own addresses).
    pub(super) directions: DirectionBook,
    pub(super) seq: u64,
    /// The slide (watermark / slide) of the last marker.
    pub(super) marked_slide: Option<u64>,
    pub(super) known_panes: HashSet<PaneId, Hasher>,
    pub(super) new_panes: Vec<PaneId>,
    default_region: Option<u32>,
    /// `[filters]`, when any is set.
    filter: Option<RecordFilter>,
    /// Each interface's labels, for the closer.
    pub(super) labels: super::labels::LabelRecorder,
    /// The AWS services records name for their addresses, for the closer.
    pub(super) services: super::labels::ServiceRecorder,
    pub(super) stats: Arc<EngineStats>,
    /// Counts not yet added to `stats` (published with each batch, not per record).
    unpublished_records: u64,
    /// Arrival time (seconds) of the last record, for the idle timeout.
    pub(super) last_record_at: Option<u64>,
    pub(super) progress: Arc<CloseProgress>,
    pub(super) closer_state: Arc<Mutex<CloserCheckpoint>>,
    /// Set by [`EventRouter::stop`]: dropping does not close the windows.
    stopped: bool,
    last_interface: LastInterned,
    last_account: LastInterned,
    last_region: LastInterned,
    last_pane: Option<PaneId>,
    /// The watermark `mark_if_advanced` last looked at: most records leave it where it was,
    /// and then there is nothing to divide.
    last_marked_watermark: Option<u64>,
}

impl EventRouter {
    /// A router that continues from `state`, or starts afresh without one.
    pub(super) fn restored(
        config: Arc<EngineConfig>,
        links: RouterLinks,
        mut interner: Interner,
        state: Option<&EngineCheckpoint>,
    ) -> EventRouter {
        let default_region = config.region.clone().map(|r| interner.intern(&r));
        let filter = RecordFilter::new(&config.filters);
        let learned = state.map(|s| s.learned.clone()).unwrap_or_default();
        let directions = DirectionBook::restored(config.direction.clone(), learned)
            .with_inventory(config.inventory.clone());
        EventRouter {
            directions,
            watermark: state.map_or(Watermark::new(config.lateness_secs), |s| s.watermark),
            batches: (0..links.senders.len())
                .map(|_| Vec::with_capacity(config.batch_size))
                .collect(),
            config,
            senders: links.senders,
            markers: links.markers,
            recycle: links.recycle,
            interner,
            seq: state.map_or(0, |s| s.seq),
            marked_slide: state.and_then(|s| s.marked_slide),
            known_panes: state.map(|s| s.known_panes.iter().copied().collect()).unwrap_or_default(),
            new_panes: state.map(|s| s.new_panes.clone()).unwrap_or_default(),
            progress: links.progress,
            closer_state: links.closer_state,
            stopped: false,
            default_region,
            filter,
            labels: super::labels::LabelRecorder::new(links.labels),
            services: super::labels::ServiceRecorder::new(links.services),
            stats: links.stats,
            unpublished_records: 0,
            last_record_at: state.and_then(|s| s.last_record_at),
            last_interface: LastInterned::default(),
            last_account: LastInterned::default(),
            last_region: LastInterned::default(),
            last_pane: None,
            last_marked_watermark: None,
        }
    }

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

    /// Routes a record already resolved into what routing reads, as [`EventRouter::push`] does.
    #[inline]
    pub fn push_input(&mut self, input: &RouteInput<'_>, arrival: u64) -> Result<(), RouteError> {
        let Some(interface) = input.interface else {
            return Err(self.refuse_missing_interface());
        };
        self.push_named(interface, input, arrival);
        Ok(())
    }

    /// Routes a record whose interface is known to be `interface`, as [`EventRouter::push_input`]
    /// does (its `input.interface` is not read again). The records of a
    /// [`crate::record::ParsedRecords`], which keeps only records that name one, go this way.
    #[inline]
    pub fn push_named(&mut self, interface: &str, input: &RouteInput<'_>, arrival: u64) {
        self.push_record(NamedRecord::of(interface, input), arrival);
    }

    /// Routes a record that names its interface, as [`EventRouter::push_named`] does, borrowing
    /// its parts ([`crate::record::ParsedRecords::for_each_named`]).
    #[inline]
    pub fn push_record(&mut self, input: NamedRecord<'_>, arrival: u64) {
        let interface = input.interface;
        if let Some(filter) = &mut self.filter {
            let region = input.region.or(self.config.region.as_deref());
            if let Some(reason) = filter.check(interface, input.account, region) {
                self.stats.filtered[reason.index()].fetch_add(1, Ordering::Relaxed);
                return;
            }
        }
        self.last_record_at = Some(arrival);
        let cfg = &self.config;
        let f = input.fields;
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
        // A late record's labels are left out: shards apply late records after the closer's
        // next close, and labels written now would race it.
        if !late && !input.labels.is_empty() {
            self.labels.record(&mut self.interner, (id, pane), input.labels);
            self.services.record(&mut self.interner, (id, pane), f, input.labels);
        }
        let account = input.account.map(|a| self.last_account.intern(&mut self.interner, a));
        let region = match input.region {
            Some(r) => Some(self.last_region.intern(&mut self.interner, r)),
            None => self.default_region,
        };
        let decided = self.directions.decide(id, interface, f);
        let event = FlowEvent {
            interface: id,
            pane,
            late,
            status: f.status,
            action: f.action,
            direction: decided.direction,
            basis: decided.basis,
            srcaddr: decided.srcaddr,
            dstaddr: decided.dstaddr,
            via: decided.via,
            local: decided.local,
            srcport: f.srcport,
            dstport: f.dstport,
            protocol: f.protocol,
            syn_only: f.tcp_flags.map(|flags| flags == SYN_ONLY),
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
    /// timeout, and sends each shard its partial batch, so that the open windows' provisional
    /// totals ([`super::OpenWindows`]) trail light traffic by a tick at most. Call it
    /// periodically (every second) with the current time (Unix seconds).
    pub fn tick(&mut self, now: u64) {
        self.follow_inventory();
        for shard in 0..self.senders.len() {
            self.flush_shard(shard);
        }
        let Some(last) = self.last_record_at else { return };
        let idle = now.saturating_sub(last);
        if idle >= self.config.idle_timeout.as_secs() {
            self.watermark.idle_for(idle);
            self.mark_if_advanced();
        }
    }

    /// Looks interfaces' addresses up again in EC2's inventory (`[enrich.ec2]`) if it changed:
    /// what the inventory held before this call decides the records routed after it.
    pub fn follow_inventory(&mut self) {
        self.directions.follow_inventory();
    }

    /// Batches of snapshots the closer has emitted in this process (after a
    /// [`EventRouter::checkpoint`], every batch of the windows it closed).
    pub fn emitted_batches(&self) -> u64 {
        self.stats.snapshot_batches.load(Ordering::Relaxed)
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
    /// a [`EventRouter::checkpoint`] that will be restored).
    pub fn stop(mut self) {
        for shard in 0..self.senders.len() {
            self.flush_shard(shard);
        }
        self.stopped = true;
    }

    /// Sends the shard its batch so far (and publishes the record count).
    pub(super) fn flush_shard(&mut self, shard: usize) {
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

impl Drop for EventRouter {
    /// A router dropped without [`EventRouter::finish`] still closes every window.
    fn drop(&mut self) {
        if !self.stopped && self.watermark.get() != Some(u64::MAX) {
            self.watermark.finish();
            self.mark_if_advanced();
        }
    }
}
