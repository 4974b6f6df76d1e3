//! The pipeline thread: the one owner of the engine's [`EventRouter`]. Requests accepted by the
//! ingest listener arrive here in order; each record is envelope-decoded, parsed and routed,
//! and the request is answered once all its records are in the engine.
//!
//! A 200 therefore means: every record of the request is in the engine's ordered pipeline, so
//! every later snapshot, checkpoint and shutdown includes it.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use serde::Serialize;
use tokio::sync::{mpsc, oneshot};

use std::path::PathBuf;

use super::dedup::Dedup;
use super::error::{CheckpointError, ServeError};
use super::request::{ParsedRequest, for_each_input};
use super::state_file::{self, IngestCounts, KinesisCheckpoint, StateFile};
use super::wal::{Syncer, Unanswered, Wal, WalEntry, WalError};
use crate::decode::kpl;
use crate::decode::{EnvelopeDecoder, LayoutSet, RejectReason, Rejects};
use crate::source::firehose::DecodedRequest;
use crate::source::kinesis::{
    CheckpointFailure, KinesisBatch, KinesisStatus, LeaseBook, Position, ShardKey,
};
use crate::window::{EventRouter, RouteError};

/// A request for the pipeline.
#[derive(Debug)]
pub struct IngestJob {
    pub request_id: String,
    /// Record bytes after base64 and body decompression.
    pub bytes: usize,
    pub records: JobRecords,
    /// When the request arrived (Unix milliseconds).
    pub arrival_ms: u64,
    /// The request's write-ahead log entry, encoded on the HTTP worker (with a state directory).
    pub logged: Option<Vec<u8>>,
    pub reply: oneshot::Sender<JobOutcome>,
}

/// A request's records: parsed on the HTTP worker, or (when their lines are too large to hold
/// parsed) left for the pipeline to decode and parse one line at a time.
#[derive(Debug)]
pub enum JobRecords {
    Parsed(ParsedRequest),
    Raw {
        request: DecodedRequest,
        /// From `X-Amz-Firehose-Common-Attributes`, for records that lack them.
        account: Option<String>,
        region: Option<String>,
    },
}

/// What became of a request's records.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct JobOutcome {
    /// Flow-log records routed into the engine.
    pub records: u64,
    /// Lines or envelopes rejected (counted by reason in [`IngestStats::rejects`]).
    pub rejected: u64,
}

pub enum PipelineMsg {
    Job(IngestJob),
    /// Records of one Kinesis GetRecords answer; answered once they are routed.
    Kinesis(KinesisBatch),
    /// Write a checkpoint now (and commit leases): a shard ended or a lease is handed over.
    Checkpoint(oneshot::Sender<Result<(), CheckpointFailure>>),
    /// Wakes an idle pipeline so that it can do its timed work (idle watermark, checkpoints).
    /// Sent with `try_send`: a full queue means the pipeline is busy and will do it anyway.
    Wake,
    /// Stop after everything queued before this message: write the state file and keep the
    /// windows open when there is a state directory, else close every window.
    Finish,
}

/// What the pipeline thread owns besides the router.
pub(crate) struct Pipeline {
    pub layouts: LayoutSet,
    /// The layouts of each `[[sources.kinesis]]` entry.
    pub kinesis_layouts: Vec<LayoutSet>,
    /// Shard positions applied so far (restored from the state file at start).
    pub positions: BTreeMap<ShardKey, Position>,
    /// With lease tables: where checkpoints are committed.
    pub book: Option<Arc<LeaseBook>>,
    /// The last state-file generation written (lease mode: committed).
    pub generation: u64,
    pub kinesis: Arc<KinesisStatus>,
    pub stats: Arc<IngestStats>,
    pub dedup: Arc<Dedup>,
    pub state_dir: Option<PathBuf>,
    pub checkpoint_interval: std::time::Duration,
    /// The write-ahead log of the current generation and the thread that syncs it (with a
    /// state directory).
    pub wal: Option<(Wal, Syncer)>,
    /// The snapshot store's journal (with a state directory).
    pub history: Option<Arc<super::history::History>>,
}

/// How long a checkpoint waits for the snapshot consumer to journal the windows closed before
/// it (it is a slide's batch or two behind at most, unless standard output blocks it).
const HISTORY_WAIT: std::time::Duration = std::time::Duration::from_secs(10);

/// Requests answered per log sync at most: a bound on the answer latency under a long queue.
const MAX_UNANSWERED: usize = 256;

/// Counters of the ingest path.
#[derive(Debug, Default)]
pub struct IngestStats {
    /// Responses by HTTP status.
    pub responses: Mutex<BTreeMap<u16, u64>>,
    pub records: AtomicU64,
    pub rejected: AtomicU64,
    /// Record bytes after base64 and body decompression.
    pub bytes: AtomicU64,
    pub rejects: Mutex<Rejects>,
    /// State files written, failures to write one, and when the last one was written.
    pub checkpoints: AtomicU64,
    pub checkpoint_failures: AtomicU64,
    pub last_checkpoint_ms: AtomicU64,
    /// The ingest listener's certificate or access keys swapped in after a change on disk, and
    /// changed files that could not be read or loaded (`serve::reload`).
    pub reloads: AtomicU64,
    pub reload_failures: AtomicU64,
    /// The write-ahead log: requests and bytes appended, syncs and the time they took
    /// (microseconds), requests replayed at start, torn bytes cut, and failures.
    pub wal_appends: AtomicU64,
    pub wal_bytes: AtomicU64,
    pub wal_syncs: AtomicU64,
    pub wal_sync_micros: AtomicU64,
    pub wal_replayed: AtomicU64,
    pub wal_cut_bytes: AtomicU64,
    pub wal_failures: AtomicU64,
    /// Requests whose body did not arrive within `ingest.body_read_timeout` (answered 408).
    pub slow_bodies: AtomicU64,
    /// Connections closed at once because `ingest.max_connections` were open.
    pub connections_refused: AtomicU64,
    /// Ingest connections open (each holds one of `ingest.max_connections`).
    pub connections_open: AtomicU64,
    /// Connections closed while a request's headers were still arriving.
    pub header_timeouts: AtomicU64,
}

impl IngestStats {
    /// The counts a state file keeps.
    pub(crate) fn counts(&self) -> IngestCounts {
        IngestCounts {
            records: self.records.load(Ordering::Relaxed),
            rejected: self.rejected.load(Ordering::Relaxed),
            bytes: self.bytes.load(Ordering::Relaxed),
        }
    }

    /// Continues the counts a state file holds.
    pub(crate) fn restore(&self, counts: &IngestCounts) {
        self.records.store(counts.records, Ordering::Relaxed);
        self.rejected.store(counts.rejected, Ordering::Relaxed);
        self.bytes.store(counts.bytes, Ordering::Relaxed);
    }

    pub fn count_response(&self, status: u16) {
        *self.responses.lock().unwrap_or_else(|e| e.into_inner()).entry(status).or_default() += 1;
    }

    fn reject(&self, reason: RejectReason, detail: &dyn std::fmt::Display, input: &[u8]) {
        let mut rejects = self.rejects.lock().unwrap_or_else(|e| e.into_inner());
        rejects.record(reason, detail, input);
        // The first of each reason is worth a warning; the rest are counted (and in /status).
        if rejects.count(reason) == 1 {
            tracing::warn!(%reason, %detail, "rejected input (further ones of this reason are counted, not logged)");
        } else {
            tracing::debug!(%reason, %detail, "rejected input");
        }
    }
}

/// Runs until [`PipelineMsg::Finish`] or until every sender is gone. Fails when the final
/// state file could not be written (every window is closed instead, so nothing is lost).
pub(crate) fn run(
    mut router: EventRouter,
    mut p: Pipeline,
    mut rx: mpsc::Receiver<PipelineMsg>,
) -> Result<(), ServeError> {
    use std::time::{Duration, Instant};
    let mut decoder = EnvelopeDecoder::default();
    let mut next_tick = Instant::now() + Duration::from_secs(1);
    let mut next_checkpoint = Instant::now() + p.checkpoint_interval;
    let mut unanswered: Unanswered = Vec::new();
    while let Some(msg) = rx.blocking_recv() {
        // EC2's changes to interfaces' addresses apply from the next message on (one check per
        // request or batch, not per record).
        router.follow_inventory();
        match msg {
            PipelineMsg::Job(job) => {
                apply_job(&mut router, &mut p, &mut decoder, job, &mut unanswered);
            }
            PipelineMsg::Kinesis(batch) => {
                // A lease lost while its batch was on the way (another replica took it as
                // expired): the new owner reads these records from the last committed
                // position, so they are counted and left, not applied a second time.
                if let Some(book) = &p.book
                    && !book.holds(&batch.shard)
                {
                    book.not_applied(&batch.shard, batch.records.len());
                } else {
                    let records = apply_kinesis(&mut router, &p, &mut decoder, &batch);
                    if let Some(book) = &p.book {
                        book.applied(&batch.shard, records, &batch.position);
                    }
                    p.positions.insert(batch.shard, batch.position);
                }
                let _ = batch.applied.send(());
            }
            PipelineMsg::Checkpoint(reply) => {
                let r =
                    if p.state_dir.is_some() { checkpoint(&mut router, &mut p) } else { Ok(()) };
                let _ = reply.send(r.map_err(CheckpointFailure::from));
                next_checkpoint = Instant::now() + p.checkpoint_interval;
            }
            PipelineMsg::Wake => {}
            PipelineMsg::Finish => break,
        }
        // A group commit: one sync answers every request applied while the queue was busy,
        // or while the previous sync ran.
        if !unanswered.is_empty() && (rx.is_empty() || unanswered.len() >= MAX_UNANSWERED) {
            hand_off(&mut p, &mut unanswered);
        }
        answer_failed_syncs(&mut router, &mut p);
        // Timed work, between requests: it never takes a queue slot from one.
        let now = Instant::now();
        if now >= next_tick {
            router.tick(crate::clock::unix_secs());
            next_tick = now + Duration::from_secs(1);
        }
        if p.state_dir.is_some() && now >= next_checkpoint {
            let _ = checkpoint(&mut router, &mut p);
            next_checkpoint = Instant::now() + p.checkpoint_interval;
        }
    }
    hand_off(&mut p, &mut unanswered);
    if let Some((_, syncer)) = p.wal.take() {
        // The final checkpoint below covers what a failed sync left unanswered (and a start
        // removes the log it covers).
        for (reply, outcome) in syncer.finish().into_iter().flatten() {
            let _ = reply.send(outcome);
        }
    }
    if p.state_dir.is_none() {
        router.finish();
        return Ok(());
    }
    match checkpoint(&mut router, &mut p) {
        Ok(()) => {
            router.stop();
            Ok(())
        }
        Err(e) if p.book.is_some() => {
            // Lease mode: the leases keep the last committed positions and other replicas read
            // on from there, so closing the windows here would count those records twice. The
            // state file of the last committed generation stays current.
            router.stop();
            Err(ServeError::FinalCommit(e))
        }
        Err(e) => {
            // The open windows cannot be kept: emit them rather than lose them.
            router.finish();
            Err(ServeError::FinalWrite(e))
        }
    }
}

fn checkpoint(router: &mut EventRouter, p: &mut Pipeline) -> Result<(), CheckpointError> {
    let Some(dir) = p.state_dir.clone() else { return Ok(()) };
    let started = std::time::Instant::now();
    let generation = p.generation + 1;
    let engine = router.checkpoint();
    if let Some(history) = &p.history {
        // The router waits here, so no window closes until the state file is written.
        history.cut(router.emitted_batches(), generation, HISTORY_WAIT);
    }
    let file = StateFile {
        written_at_ms: crate::clock::unix_millis(),
        engine,
        dedup: p.dedup.export(),
        kinesis: KinesisCheckpoint {
            generation,
            positions: p.positions.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
        },
        ingest: p.stats.counts(),
    };
    let written =
        match &p.book {
            None => state_file::write(&dir, &file).map_err(CheckpointError::from),
            // Lease mode: prepare the file, commit the leases with its generation, then make it
            // current; a crash in between is resolved at the next start by the committed marker.
            Some(book) => state_file::write_next(&dir, &file)
                .map_err(CheckpointError::from)
                .and_then(|()| match book.commit(generation) {
                    Ok(_) => state_file::promote_next(&dir).map_err(CheckpointError::from),
                    Err(e) => {
                        state_file::discard_next(&dir);
                        Err(e.into())
                    }
                }),
        };
    if written.is_ok() {
        p.generation = generation;
        if let Some(history) = &p.history {
            history.covered(generation);
        }
        // The state file covers everything logged so far: the next generation's log begins.
        if let Some((wal, _)) = &mut p.wal
            && let Err(e) = wal.rotate(generation)
        {
            p.stats.wal_failures.fetch_add(1, Ordering::Relaxed);
            tracing::error!("starting the next write-ahead log: {e}");
        }
    }
    match written {
        Ok(()) => {
            p.stats.checkpoints.fetch_add(1, Ordering::Relaxed);
            p.stats.last_checkpoint_ms.store(file.written_at_ms, Ordering::Relaxed);
            tracing::debug!(elapsed = ?started.elapsed(), interfaces = file.engine.interfaces.len(), "state written");
            Ok(())
        }
        Err(e) => {
            p.stats.checkpoint_failures.fetch_add(1, Ordering::Relaxed);
            tracing::error!("writing the state file: {e}");
            Err(e)
        }
    }
}

/// Routes one Kinesis batch: each record is de-aggregated (KPL), then envelope-decoded and
/// parsed like a Firehose record. Returns the flow-log records routed.
fn apply_kinesis(
    router: &mut EventRouter,
    p: &Pipeline,
    decoder: &mut EnvelopeDecoder,
    batch: &KinesisBatch,
) -> u64 {
    let now = crate::clock::unix_secs();
    let layouts = p.kinesis_layouts.get(batch.source).unwrap_or(&p.layouts);
    let stats = &p.stats;
    let mut outcome = JobOutcome::default();
    let mut unpacked_records = 0u64;
    for record in &batch.records {
        stats.bytes.fetch_add(record.len() as u64, Ordering::Relaxed);
        let unpacked = kpl::for_each_user_record(record, |user| {
            route_record(router, layouts, decoder, user, None, None, now, stats, &mut outcome);
        });
        match unpacked {
            Ok(n) if kpl::is_aggregated(record) => unpacked_records += n as u64,
            Ok(_) => {}
            Err(e) => {
                outcome.rejected += 1;
                stats.reject(e.reason, &e.detail, record);
            }
        }
    }
    KinesisStatus::count(&p.kinesis.counters.kpl_user_records, unpacked_records);
    stats.records.fetch_add(outcome.records, Ordering::Relaxed);
    stats.rejected.fetch_add(outcome.rejected, Ordering::Relaxed);
    outcome.records
}

/// One transport record: envelope-decoded, each line parsed and routed, refusals counted.
#[allow(clippy::too_many_arguments)]
fn route_record(
    router: &mut EventRouter,
    layouts: &LayoutSet,
    decoder: &mut EnvelopeDecoder,
    record: &[u8],
    account: Option<&str>,
    region: Option<&str>,
    now: u64,
    stats: &IngestStats,
    outcome: &mut JobOutcome,
) {
    for_each_input(decoder, layouts, record, account, region, |parsed, input| match parsed {
        Ok(route) => match router.push_input(route, now) {
            Ok(()) => outcome.records += 1,
            Err(e @ RouteError::MissingInterface) => {
                outcome.rejected += 1;
                stats.reject(RejectReason::MissingInterface, &e, input);
            }
        },
        Err((reason, detail)) => {
            outcome.rejected += 1;
            stats.reject(reason, detail, input);
        }
    });
}

/// Routes a request's records (arrived at `now`, Unix seconds) and counts them.
fn apply(
    router: &mut EventRouter,
    layouts: &LayoutSet,
    decoder: &mut EnvelopeDecoder,
    records: &JobRecords,
    now: u64,
    stats: &IngestStats,
) -> JobOutcome {
    let mut outcome = JobOutcome::default();
    match records {
        JobRecords::Parsed(parsed) => {
            parsed.for_each_named(|record| {
                router.push_record(record, now);
                outcome.records += 1;
            });
            for r in &parsed.rejects {
                if r.reason == RejectReason::MissingInterface {
                    router.refuse_missing_interface();
                }
                outcome.rejected += 1;
                stats.reject(r.reason, &r.detail, &r.input);
            }
        }
        JobRecords::Raw { request, account, region } => {
            for record in request.records() {
                let (account, region) = (account.as_deref(), region.as_deref());
                route_record(
                    router,
                    layouts,
                    decoder,
                    record,
                    account,
                    region,
                    now,
                    stats,
                    &mut outcome,
                );
            }
        }
    }
    stats.records.fetch_add(outcome.records, Ordering::Relaxed);
    stats.rejected.fetch_add(outcome.rejected, Ordering::Relaxed);
    outcome
}

/// Logs a request, routes it, and holds its answer for the next sync (with a log), or answers it.
fn apply_job(
    router: &mut EventRouter,
    p: &mut Pipeline,
    decoder: &mut EnvelopeDecoder,
    mut job: IngestJob,
    unanswered: &mut Unanswered,
) {
    if p.dedup.is_applied(&job.request_id) {
        // Replayed from the log at start while its retry waited in the queue.
        let _ = job.reply.send(JobOutcome::default());
        return;
    }
    let arrival_ms = job.arrival_ms;
    if let Some((wal, _)) = &mut p.wal {
        // With a log, the HTTP worker encodes every request for it (`ServeContext::write_ahead`).
        let logged = job.logged.take().ok_or_else(|| WalError::Unlogged(job.request_id.clone()));
        match logged.and_then(|bytes| wal.append_encoded(&bytes).map(|()| bytes.len())) {
            Ok(bytes) => {
                p.stats.wal_appends.fetch_add(1, Ordering::Relaxed);
                p.stats.wal_bytes.fetch_add(bytes as u64, Ordering::Relaxed);
            }
            Err(e) => {
                // Nothing is routed: dropping the reply answers 503, and Firehose retries.
                p.stats.wal_failures.fetch_add(1, Ordering::Relaxed);
                tracing::error!("{e}; the request is refused (503) and will be retried");
                return;
            }
        }
    }
    p.stats.bytes.fetch_add(job.bytes as u64, Ordering::Relaxed);
    let outcome = apply(router, &p.layouts, decoder, &job.records, arrival_ms / 1000, &p.stats);
    // Marked applied here, in the same thread as checkpoints, so that a state file never holds
    // the records of a request without its id (or the reverse).
    p.dedup.complete(&job.request_id, arrival_ms);
    if p.wal.is_some() {
        unanswered.push((job.reply, outcome));
    } else {
        let _ = job.reply.send(outcome);
    }
}

/// Hands the requests logged since the last hand-off to the syncer, which answers them once
/// the log is synced.
/// Without a log, requests are answered when applied and none wait here.
fn hand_off(p: &mut Pipeline, unanswered: &mut Unanswered) {
    if let Some((wal, syncer)) = &p.wal
        && !unanswered.is_empty()
    {
        syncer.submit(wal.file(), std::mem::take(unanswered));
    }
}

/// Answers the requests of a failed sync once a checkpoint holds them.
fn answer_failed_syncs(router: &mut EventRouter, p: &mut Pipeline) {
    let failed = p.wal.as_ref().and_then(|(_, syncer)| syncer.failed());
    if let Some(unanswered) = failed {
        answer_after_checkpoint(router, p, unanswered);
    }
}

/// Writes a checkpoint, which makes `unanswered` durable, and answers them. They are answered
/// 200 even if it fails, as they are routed and marked applied (a retry would not apply them
/// again); a failure of both the log and the checkpoint is logged and counted.
fn answer_after_checkpoint(router: &mut EventRouter, p: &mut Pipeline, unanswered: Unanswered) {
    if unanswered.is_empty() {
        return;
    }
    if checkpoint(router, p).is_err() {
        tracing::error!(
            requests = unanswered.len(),
            "neither the write-ahead log nor a checkpoint could be written: these requests are \
             answered 200 but would be lost in a crash"
        );
    }
    for (reply, outcome) in unanswered {
        let _ = reply.send(outcome);
    }
}

/// Routes the requests of the restored generation's write-ahead log again, marking their ids
/// applied, before the pipeline takes new requests.
pub(crate) fn replay_log(router: &mut EventRouter, p: &Pipeline, entries: Vec<WalEntry>) {
    let mut decoder = EnvelopeDecoder::default();
    for entry in entries {
        let request = match entry.decode() {
            Ok(request) => request,
            Err(e) => {
                // It was accepted once, so this is damage the checksum did not catch.
                p.stats.wal_failures.fetch_add(1, Ordering::Relaxed);
                let id = &entry.request_id;
                tracing::error!(request_id = %id, "a logged request does not decode: {e}");
                continue;
            }
        };
        let now = entry.arrival_ms / 1000;
        let (account, region) = (entry.account, entry.region);
        let records = JobRecords::Raw { request, account, region };
        apply(router, &p.layouts, &mut decoder, &records, now, &p.stats);
        p.dedup.complete(&entry.request_id, entry.arrival_ms);
        p.stats.wal_replayed.fetch_add(1, Ordering::Relaxed);
    }
}
