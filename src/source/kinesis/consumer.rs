//! One shard consumer: GetShardIterator, then GetRecords in a loop, each answer sent on as one
//! [`KinesisBatch`] carrying the position after it.
//!
//! - **Pacing**: at most one call per `min_poll_interval` (Kinesis allows 5 per second per
//!   shard), at most 2 MB/s (after an answer of `b` bytes the next call waits `b / 2 MB/s`),
//!   and `idle_poll_interval` after an empty answer.
//! - **ProvisionedThroughputExceeded** and other failures: exponential backoff with full
//!   jitter (250 ms doubling to 10 s), counted; the same iterator is used again.
//! - **ExpiredIterator**: a new iterator after the last position sent, so nothing is read
//!   twice or skipped.
//! - **The end of a closed shard** (no next iterator): a last batch with [`Position::ShardEnd`].
//! - **Stopping** (lease handed off or lost, shutdown) happens only between calls; a batch
//!   already sent is always waited for, so when [`ShardReader::run`] returns, everything it read
//!   has been applied.
//!
//! One batch is in flight at a time: the next call overlaps the application of the previous
//! answer, and the bounded sink holds the consumer back when the engine is busy.

use std::sync::Arc;
use std::time::{Duration, Instant};

use aws_sdk_kinesis::primitives::DateTime;
use aws_sdk_kinesis::types::ShardIteratorType;
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;

use super::client::describe;
use super::config::KinesisSourceConfig;
use super::message::{KinesisBatch, SourceMsg};
use super::position::{Position, ShardKey};
use super::status::KinesisStatus;

/// Why a consumer returned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ShardExit {
    /// The shard is closed and every record of it was applied.
    End,
    /// Asked to stop; everything read was applied up to the returned position.
    Stopped,
    /// The pipeline is gone (shutdown).
    SinkClosed,
}

/// Everything one consumer needs.
#[derive(Clone)]
pub struct ShardReader {
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
    /// Sleeps unless stopped first; false when stopped.
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

    /// Reads from `position` until the shard ends, a stop, or the pipeline closes; returns why
    /// and the position up to which everything read has been applied.
    pub async fn run(self, mut position: Position) -> (ShardExit, Position) {
        let counters = &self.status.counters;
        let mut backoff = Backoff(0);
        let mut in_flight: Option<oneshot::Receiver<()>> = None;
        // Applies `in_flight` before anything that ends the loop or re-reads.
        macro_rules! settle {
            () => {
                if let Some(rx) = in_flight.take() {
                    if rx.await.is_err() {
                        return (ShardExit::SinkClosed, position);
                    }
                }
            };
        }
        self.status.set_state(&self.key, "reading");
        let mut iterator: Option<String> = None;
        let mut next_call = Instant::now();
        loop {
            if self.stop.is_cancelled() {
                settle!();
                return (ShardExit::Stopped, position);
            }
            let it = match iterator.take() {
                Some(it) => it,
                None => match self.iterator(&position).await {
                    Ok(Some(it)) => it,
                    Ok(None) => {
                        settle!();
                        return (ShardExit::End, position);
                    }
                    Err(e) => {
                        KinesisStatus::count(&counters.errors, 1);
                        tracing::warn!(shard = %self.key, %position, "GetShardIterator: {e}");
                        self.status.set_error(&self.key, Some(e));
                        // Stopped or not, the loop's next turn decides.
                        let _ = self.pause(backoff.next()).await;
                        continue;
                    }
                },
            };
            let wait = next_call.saturating_duration_since(Instant::now());
            if !wait.is_zero() && !self.pause(wait).await {
                continue;
            }
            KinesisStatus::count(&counters.get_records_calls, 1);
            let call = self
                .client
                .get_records()
                .shard_iterator(&it)
                .limit(self.config.max_records_per_call)
                .send();
            let answer = tokio::select! {
                _ = self.stop.cancelled() => continue,
                a = call => a,
            };
            let out = match answer {
                Ok(out) => out,
                Err(e) => {
                    let service = e.as_service_error();
                    if service.is_some_and(|s| s.is_expired_iterator_exception()) {
                        KinesisStatus::count(&counters.expired_iterators, 1);
                        tracing::info!(shard = %self.key, %position, "iterator expired; a new one from the last position");
                        // The next loop asks for a new iterator after `position`.
                        settle!();
                        continue;
                    }
                    let throttled =
                        service.is_some_and(|s| s.is_provisioned_throughput_exceeded_exception());
                    let text = describe(&e);
                    if throttled {
                        KinesisStatus::count(&counters.throttled, 1);
                        tracing::debug!(shard = %self.key, "GetRecords throttled: {text}");
                    } else {
                        KinesisStatus::count(&counters.errors, 1);
                        tracing::warn!(shard = %self.key, "GetRecords: {text}");
                    }
                    self.status.set_error(&self.key, Some(text));
                    iterator = Some(it);
                    let _ = self.pause(backoff.next()).await;
                    continue;
                }
            };
            backoff = Backoff(0);
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
                settle!();
                let (tx, rx) = oneshot::channel();
                let batch = KinesisBatch {
                    shard: self.key.clone(),
                    source: self.source,
                    records: payloads,
                    position: after.clone(),
                    applied: tx,
                };
                if self.sink.send(SourceMsg::Batch(batch)).await.is_err() {
                    return (ShardExit::SinkClosed, position);
                }
                position = after;
                in_flight = Some(rx);
            }
            if end {
                settle!();
                self.status.set_state(&self.key, "finished");
                return (ShardExit::End, position);
            }
            iterator = out.next_shard_iterator;
            let pace = self
                .config
                .min_poll_interval
                .max(Duration::from_secs_f64(bytes as f64 / BYTES_PER_SEC));
            next_call = now + if n == 0 { self.config.idle_poll_interval.max(pace) } else { pace };
        }
    }
}
