//! What the Kinesis side shows in `/api/v1/status` and in self-metrics: one entry per shard
//! this replica knows, and the source's counters.
//!
//! Consumers write their own shard's entry once per GetRecords call; readers take a copy.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use serde::Serialize;

use super::position::{Position, ShardKey};

/// Where a shard stands for this replica, as `/api/v1/status` spells it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ShardPhase {
    /// A consumer of this replica reads it.
    Reading,
    /// Its parents have not been read to their ends yet.
    WaitingForParents,
    /// It was read to its end.
    Finished,
    /// Another replica holds its lease.
    LeasedElsewhere,
}

/// One shard as this replica sees it.
#[derive(Debug, Clone, Serialize)]
pub struct ShardStatus {
    pub stream: String,
    pub shard: String,
    pub state: ShardPhase,
    /// MillisBehindLatest of the last GetRecords answer.
    pub lag_ms: Option<i64>,
    /// Kinesis records read from this shard by this replica.
    pub records: u64,
    /// Records per second over the last few seconds.
    pub records_per_sec: f64,
    /// The lease owner (lease mode), else this replica.
    pub lease_owner: Option<String>,
    /// The last position written to the state file or committed to the lease.
    pub last_checkpoint: Option<Position>,
    /// The last error, if the latest call failed.
    pub last_error: Option<String>,
    #[serde(skip)]
    rate_since: Option<(Instant, u64)>,
}

/// Counters of every Kinesis source of the process (`serve::status` shows them by field name).
#[derive(Debug, Default)]
pub struct KinesisCounters {
    pub get_records_calls: AtomicU64,
    /// ProvisionedThroughputExceeded answers (backed off and retried).
    pub throttled: AtomicU64,
    /// ExpiredIterator answers (a new iterator from the last applied position).
    pub expired_iterators: AtomicU64,
    /// Other failed calls (retried with backoff).
    pub errors: AtomicU64,
    /// Kinesis records read (before KPL de-aggregation).
    pub records: AtomicU64,
    pub bytes: AtomicU64,
    /// User records unpacked from KPL aggregates.
    pub kpl_user_records: AtomicU64,
    /// Leases taken over from an expired owner, handed to another replica, and lost (renewal
    /// refused) while this replica held records of them not yet committed.
    pub leases_taken: AtomicU64,
    pub leases_handed_off: AtomicU64,
    pub leases_lost: AtomicU64,
    /// Records of lost leases that were applied here but not committed: the new owner reads
    /// them again, so they may be counted twice (see ARCHITECTURE.md, scale-out).
    pub lost_uncommitted_records: AtomicU64,
    /// Kinesis records of a batch that arrived after its lease was lost (taken as expired by
    /// another replica while the batch was on its way): not applied here, since the new owner
    /// reads them from the last committed position; applying them too would count them twice.
    pub records_of_lost_leases_not_applied: AtomicU64,
    /// Lease-table commits (one transaction each) and failed ones.
    pub commits: AtomicU64,
    pub commit_failures: AtomicU64,
}

/// See the module documentation.
#[derive(Debug, Default)]
pub struct KinesisStatus {
    shards: Mutex<BTreeMap<ShardKey, ShardStatus>>,
    pub counters: KinesisCounters,
}

impl KinesisStatus {
    fn with<R>(&self, key: &ShardKey, f: impl FnOnce(&mut ShardStatus) -> R) -> R {
        let mut shards = self.shards.lock().unwrap_or_else(|e| e.into_inner());
        let entry = shards.entry(key.clone()).or_insert_with(|| ShardStatus {
            stream: key.stream.to_string(),
            shard: key.shard.to_string(),
            state: ShardPhase::WaitingForParents,
            lag_ms: None,
            records: 0,
            records_per_sec: 0.0,
            lease_owner: None,
            last_checkpoint: None,
            last_error: None,
            rate_since: None,
        });
        f(entry)
    }

    pub fn set_state(&self, key: &ShardKey, state: ShardPhase) {
        self.with(key, |s| {
            s.state = state;
            if state != ShardPhase::Reading {
                s.records_per_sec = 0.0;
                s.rate_since = None;
            }
        });
    }

    pub fn set_owner(&self, key: &ShardKey, owner: Option<&str>) {
        self.with(key, |s| s.lease_owner = owner.map(str::to_string));
    }

    pub fn set_checkpoint(&self, key: &ShardKey, position: &Position) {
        self.with(key, |s| s.last_checkpoint = Some(position.clone()));
    }

    pub fn set_error(&self, key: &ShardKey, error: Option<String>) {
        self.with(key, |s| s.last_error = error);
    }

    /// One successful GetRecords answer.
    pub fn record_call(&self, key: &ShardKey, records: u64, lag_ms: Option<i64>, now: Instant) {
        self.with(key, |s| {
            s.records += records;
            s.lag_ms = lag_ms;
            s.last_error = None;
            match s.rate_since {
                None => s.rate_since = Some((now, s.records)),
                Some((since, at)) => {
                    let elapsed = now.duration_since(since).as_secs_f64();
                    // A rate over at least 5 s, so one large batch is not a spike.
                    if elapsed >= 5.0 {
                        s.records_per_sec = (s.records - at) as f64 / elapsed;
                        s.rate_since = Some((now, s.records));
                    }
                }
            }
        });
    }

    /// Every shard, ordered by stream and shard id.
    pub fn shards(&self) -> Vec<ShardStatus> {
        self.shards.lock().unwrap_or_else(|e| e.into_inner()).values().cloned().collect()
    }

    /// (stream, shard, MillisBehindLatest) of shards being read.
    pub fn lags(&self) -> Vec<(String, String, i64)> {
        self.shards
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .values()
            .filter(|s| s.state == ShardPhase::Reading)
            .filter_map(|s| Some((s.stream.clone(), s.shard.clone(), s.lag_ms?)))
            .collect()
    }

    pub fn count(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }
}
