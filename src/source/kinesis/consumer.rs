//! One shard consumer: it calls GetShardIterator, then GetRecords in a loop, and sends each
//! answer on as one [`KinesisBatch`] carrying the position after it.
//!
//! - **Pacing**: the consumer makes at most one call per `min_poll_interval` (Kinesis allows 5
//!   per second per shard), reads at most 2 MB/s (after an answer of `b` bytes the next call
//!   waits `b / 2 MB/s`), and waits `idle_poll_interval` after an empty answer.
//! - **ProvisionedThroughputExceeded** and other failures are counted, and the consumer backs
//!   off exponentially with full jitter (250 ms doubling to 10 s), then uses the same iterator
//!   again.
//! - **ExpiredIterator**: the consumer gets a new iterator after the last position sent, so
//!   nothing is read twice or skipped.
//! - **The end of a closed shard** (no next iterator): the consumer sends a last batch with
//!   [`Position::ShardEnd`].
//! - **Stopping** (lease handed off or lost, shutdown) happens only between calls; a batch
//!   already sent is always waited for, so when [`ShardReader::run`] returns, everything it read
//!   has been applied.
//!
//! One batch is in flight at a time: the next call overlaps the application of the previous
//! answer, and the bounded sink holds the consumer back when the engine is busy.

use std::sync::Arc;
use std::time::{Duration, Instant};

use aws_sdk_kinesis::operation::get_records::{GetRecordsError, GetRecordsOutput};
use aws_sdk_kinesis::primitives::DateTime;
use aws_sdk_kinesis::types::ShardIteratorType;
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;

use super::client::describe;
use super::config::KinesisSourceConfig;
use super::message::{KinesisBatch, SourceMsg};
use super::position::{Position, ShardKey};
use super::status::{KinesisStatus, ShardPhase};

/// Why a consumer returned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum ShardExit {
    /// The shard is closed and every record of it was applied.
    End,
    /// The consumer was asked to stop; everything read was applied up to the returned position.
    Stopped,
    /// The pipeline is gone (shutdown).
    SinkClosed,
}

/// Everything one consumer needs.
#[derive(Clone)]
pub(crate) struct ShardReader {
    pub client: aws_sdk_kinesis::Client,
    pub config: Arc<KinesisSourceConfig>,
    pub key: ShardKey,
    pub source: usize,
    pub sink: mpsc::Sender<SourceMsg>,
    pub status: Arc<KinesisStatus>,
    pub stop: CancellationToken,
}

const BACKOFF_FIRST: Duration = Duration::from_millis(250);
const BACKOFF_MAX: Duration = Duration::from_secs(10);
/// Kinesis's read limit per shard.
const BYTES_PER_SEC: f64 = 2_000_000.0;

struct Backoff(u32);

impl Backoff {
    fn next(&mut self) -> Duration {
        let cap = BACKOFF_FIRST.saturating_mul(1 << self.0.min(6)).min(BACKOFF_MAX);
        self.0 += 1;
        // Full jitter: replicas throttled together do not retry together.
        cap.mul_f64(rand::random_range(0.5..=1.0))
    }
}

impl ShardReader {
    /// Sleeps unless stopped first; returns false when stopped.
    async fn pause(&self, d: Duration) -> bool {
        tokio::select! {
            _ = self.stop.cancelled() => false,
            _ = tokio::time::sleep(d) => true,
        }
    }

    async fn iterator(&self, from: &Position) -> Result<Option<String>, String> {
        let mut req = self.client.get_shard_iterator().shard_id(self.key.shard.as_ref());
        req = if self.config.is_arn() {
            req.stream_arn(&self.config.stream)
        } else {
            req.stream_name(&self.config.stream)
        };
        req = match from {
            Position::TrimHorizon => req.shard_iterator_type(ShardIteratorType::TrimHorizon),
            Position::Latest => req.shard_iterator_type(ShardIteratorType::Latest),
            Position::AtTimestamp(ms) => req
                .shard_iterator_type(ShardIteratorType::AtTimestamp)
                .timestamp(DateTime::from_millis(*ms)),
            Position::After(seq) => req
                .shard_iterator_type(ShardIteratorType::AfterSequenceNumber)
                .starting_sequence_number(seq),
            Position::ShardEnd => return Ok(None),
        };
        let out = req.send().await.map_err(|e| describe(&e))?;
        Ok(out.shard_iterator)
    }

    /// Reads from `position` until the shard ends, the consumer is stopped, or the pipeline
    /// closes; returns why and the position up to which everything read has been applied.
    pub(crate) async fn run(self, position: Position) -> (ShardExit, Position) {
        let mut read = ShardRead {
            position,
            in_flight: None,
            iterator: None,
            next_call: Instant::now(),
            backoff: Backoff(0),
        };
        self.status.set_state(&self.key, ShardPhase::Reading);
        loop {
            if let Step::Exit(exit) = self.step(&mut read).await {
                return (exit, read.position);
            }
        }
    }

    /// One turn of the read loop: at most one GetShardIterator and one GetRecords call.
    async fn step(&self, read: &mut ShardRead) -> Step {
        if self.stop.is_cancelled() {
            return Step::Exit(read.exit_after_settling(ShardExit::Stopped).await);
        }
        let it = match read.iterator.take() {
            Some(it) => it,
            None => match self.iterator(&read.position).await {
                Ok(Some(it)) => it,
                Ok(None) => return Step::Exit(read.exit_after_settling(ShardExit::End).await),
                Err(e) => {
                    KinesisStatus::count(&self.status.counters.errors, 1);
                    tracing::warn!(shard = %self.key, position = %read.position, "GetShardIterator: {e}");
                    self.status.set_error(&self.key, Some(e));
                    // Stopped or not, the loop's next turn decides.
                    let _ = self.pause(read.backoff.next()).await;
                    return Step::Continue;
                }
            },
        };
        let wait = read.next_call.saturating_duration_since(Instant::now());
        if !wait.is_zero() && !self.pause(wait).await {
            return Step::Continue;
        }
        KinesisStatus::count(&self.status.counters.get_records_calls, 1);
        let call = self
            .client
            .get_records()
            .shard_iterator(&it)
            .limit(self.config.max_records_per_call)
            .send();
        let answer = tokio::select! {
            _ = self.stop.cancelled() => return Step::Continue,
            a = call => a,
        };
        match answer {
            Ok(out) => self.take_answer(read, out).await,
            Err(e) => self.take_failure(read, it, &e).await,
        }
    }

    /// Handles a failed GetRecords call: after an expired iterator the next turn gets a new
    /// one, and after any other failure the consumer backs off and uses the same iterator again.
    async fn take_failure(
        &self,
        read: &mut ShardRead,
        it: String,
        e: &aws_sdk_kinesis::error::SdkError<GetRecordsError>,
    ) -> Step {
        let counters = &self.status.counters;
        let service = e.as_service_error();
        if service.is_some_and(|s| s.is_expired_iterator_exception()) {
            KinesisStatus::count(&counters.expired_iterators, 1);
            tracing::info!(shard = %self.key, position = %read.position, "iterator expired; a new one from the last position");
            // The next turn asks for a new iterator after `position`.
            return match read.settle().await {
                Settled::Applied => Step::Continue,
                Settled::SinkClosed => Step::Exit(ShardExit::SinkClosed),
            };
        }
        let throttled = service.is_some_and(|s| s.is_provisioned_throughput_exceeded_exception());
        let text = describe(e);
        if throttled {
            KinesisStatus::count(&counters.throttled, 1);
            tracing::debug!(shard = %self.key, "GetRecords throttled: {text}");
        } else {
            KinesisStatus::count(&counters.errors, 1);
            tracing::warn!(shard = %self.key, "GetRecords: {text}");
        }
        self.status.set_error(&self.key, Some(text));
        read.iterator = Some(it);
        let _ = self.pause(read.backoff.next()).await;
        Step::Continue
    }

    /// Sends an answer's records on as one batch (after the previous batch is applied) and
    /// paces the next call.
    async fn take_answer(&self, read: &mut ShardRead, out: GetRecordsOutput) -> Step {
        let counters = &self.status.counters;
        read.backoff = Backoff(0);
        let now = Instant::now();
        let n = out.records.len();
        let mut bytes = 0usize;
        let mut payloads = Vec::with_capacity(n);
        let mut last_seq = None;
        for r in out.records {
            bytes += r.data.as_ref().len();
            last_seq = Some(r.sequence_number);
            payloads.push(r.data.into_inner());
        }
        KinesisStatus::count(&counters.records, n as u64);
        KinesisStatus::count(&counters.bytes, bytes as u64);
        self.status.record_call(&self.key, n as u64, out.millis_behind_latest, now);
        let end = out.next_shard_iterator.is_none();
        let after = match (last_seq, end) {
            (_, true) => Some(Position::ShardEnd),
            (Some(seq), false) => Some(Position::After(seq)),
            (None, false) => None,
        };
        if let Some(after) = after {
            if let Settled::SinkClosed = read.settle().await {
                return Step::Exit(ShardExit::SinkClosed);
            }
            let (tx, rx) = oneshot::channel();
            let batch = KinesisBatch {
                shard: self.key.clone(),
                source: self.source,
                records: payloads,
                position: after.clone(),
                applied: tx,
            };
            if self.sink.send(SourceMsg::Batch(batch)).await.is_err() {
                return Step::Exit(ShardExit::SinkClosed);
            }
            read.position = after;
            read.in_flight = Some(rx);
        }
        if end {
            let exit = read.exit_after_settling(ShardExit::End).await;
            if exit == ShardExit::End {
                self.status.set_state(&self.key, ShardPhase::Finished);
            }
            return Step::Exit(exit);
        }
        read.iterator = out.next_shard_iterator;
        let pace = self
            .config
            .min_poll_interval
            .max(Duration::from_secs_f64(bytes as f64 / BYTES_PER_SEC));
        read.next_call = now + if n == 0 { self.config.idle_poll_interval.max(pace) } else { pace };
        Step::Continue
    }
}

/// A consumer's progress through its shard.
struct ShardRead {
    /// Everything read up to here has been sent (and, once `in_flight` settles, applied).
    position: Position,
    /// Answered once the last batch sent is applied.
    in_flight: Option<oneshot::Receiver<()>>,
    iterator: Option<String>,
    next_call: Instant,
    backoff: Backoff,
}

/// Whether the batch in flight was applied.
enum Settled {
    Applied,
    /// The pipeline is gone and will not apply it.
    SinkClosed,
}

/// What the read loop does after a step.
enum Step {
    Continue,
    Exit(ShardExit),
}

impl ShardRead {
    /// Waits until the batch in flight (if any) is applied. The loop calls it before anything
    /// that ends the loop or reads again from `position`.
    async fn settle(&mut self) -> Settled {
        let Some(rx) = self.in_flight.take() else { return Settled::Applied };
        match rx.await {
            Ok(()) => Settled::Applied,
            Err(_) => Settled::SinkClosed,
        }
    }

    /// Returns `exit` once the batch in flight is applied, or [`ShardExit::SinkClosed`] if it
    /// never is.
    async fn exit_after_settling(&mut self, exit: ShardExit) -> ShardExit {
        match self.settle().await {
            Settled::Applied => exit,
            Settled::SinkClosed => ShardExit::SinkClosed,
        }
    }
}
