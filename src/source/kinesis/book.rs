//! The lease book: the leases this replica holds, shared by the lease coordinators (which take,
//! renew and hand leases over) and the pipeline thread (which commits positions at each
//! checkpoint, see [`LeaseBook::commit`]).
//!
//! Invariant: a lease's `committed` position is what its DynamoDB item says, and the state
//! file of generation [`LeaseBook::generation`] holds exactly the records up to it.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use super::error::{CommitError, KinesisError};
use super::lease::{self, LeaseCommit, LeaseTable};
use super::position::{Position, ShardKey};
use super::status::{KinesisStatus, ShardPhase};

#[derive(Debug, Clone)]
struct Held {
    committed: Position,
    /// The position the pipeline has applied (the records up to it are in the engine).
    applied: Position,
    /// Records applied since the last commit (reported if the lease is lost).
    uncommitted_records: u64,
    /// Where the lease goes at the next commit: to a replica, or to nobody.
    transfer: Option<Option<String>>,
    /// The consumer has stopped, so the transfer may go out.
    ready: bool,
}

#[derive(Debug, Default)]
struct Inner {
    held: BTreeMap<ShardKey, Held>,
    /// The last committed generation per table (its marker).
    markers: BTreeMap<String, Option<u64>>,
    /// How many leases have left the book so far, lost or handed over (see
    /// [`LeaseBook::departures`]).
    departures: u64,
}

impl Inner {
    /// Takes a lease out of the book (lost or handed over), counting the departure.
    fn depart(&mut self, key: &ShardKey) -> Option<Held> {
        let held = self.held.remove(key)?;
        self.departures += 1;
        Some(held)
    }
}

/// See the module documentation.
#[derive(Debug)]
pub struct LeaseBook {
    pub me: String,
    /// Lease tables by stream name. All share one DynamoDB client (one region), so one
    /// transaction can cover them.
    tables: BTreeMap<Arc<str>, LeaseTable>,
    inner: Mutex<Inner>,
    status: Arc<KinesisStatus>,
    runtime: tokio::runtime::Handle,
}

/// What a commit did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Committed {
    /// Leases that turned out to be lost (their records since the last commit may be counted
    /// twice: the new owner reads them again).
    pub lost: Vec<ShardKey>,
    /// Leases handed over in this commit.
    pub transferred: Vec<ShardKey>,
}

impl LeaseBook {
    /// Opens a book over `tables` and reads each table's marker for this replica.
    pub async fn open(
        me: String,
        tables: BTreeMap<Arc<str>, LeaseTable>,
        status: Arc<KinesisStatus>,
    ) -> Result<LeaseBook, KinesisError> {
        let mut markers = BTreeMap::new();
        for t in tables.values() {
            t.ensure().await?;
            markers.insert(t.table.clone(), t.committed_generation(&me).await?);
        }
        Ok(LeaseBook {
            me,
            tables,
            inner: Mutex::new(Inner { held: BTreeMap::new(), markers, departures: 0 }),
            status,
            runtime: tokio::runtime::Handle::current(),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn table(&self, stream: &str) -> Option<&LeaseTable> {
        self.tables.get(stream)
    }

    /// The generation this replica last committed (the highest marker), if any.
    pub fn generation(&self) -> Option<u64> {
        self.lock().markers.values().flatten().max().copied()
    }

    /// Records a lease just taken (or found ours), committed at `checkpoint`.
    pub fn hold(&self, key: &ShardKey, checkpoint: Position) {
        self.status.set_owner(key, Some(&self.me));
        self.status.set_checkpoint(key, &checkpoint);
        self.lock().held.insert(
            key.clone(),
            Held {
                applied: checkpoint.clone(),
                committed: checkpoint,
                uncommitted_records: 0,
                transfer: None,
                ready: false,
            },
        );
    }

    pub fn holds(&self, key: &ShardKey) -> bool {
        self.lock().held.contains_key(key)
    }

    /// Leases held for `stream`, with whether each is being handed over.
    pub fn held(&self, stream: &str) -> Vec<(ShardKey, bool)> {
        self.lock()
            .held
            .iter()
            .filter(|(k, _)| &*k.stream == stream)
            .map(|(k, h)| (k.clone(), h.transfer.is_some()))
            .collect()
    }

    /// Forgets a lease that the renewal found gone, and counts what it held uncommitted.
    /// Returns whether the lease was forgotten. A lease whose transfer is planned is left to
    /// the commit that hands it over: a renewal that finds it gone may have raced that very
    /// commit (a handover, not a loss), and if it was really taken, the commit finds it lost
    /// and counts it then (its consumer has stopped, or stops before the transfer goes out).
    pub fn lose(&self, key: &ShardKey) -> bool {
        let mut inner = self.lock();
        if inner.held.get(key).is_none_or(|h| h.transfer.is_some()) {
            return false;
        }
        let h = inner.depart(key).expect("held");
        drop(inner);
        self.count_lost(key, &h);
        true
    }

    /// How many leases have left the book so far, lost or handed over. A coordinator compares
    /// it around a table scan: if it moved, the scan may still show a lease as ours that is not.
    pub fn departures(&self) -> u64 {
        self.lock().departures
    }

    fn count_lost(&self, key: &ShardKey, h: &Held) {
        let c = &self.status.counters;
        KinesisStatus::count(&c.leases_lost, 1);
        KinesisStatus::count(&c.lost_uncommitted_records, h.uncommitted_records);
        tracing::error!(
            shard = %key,
            uncommitted_records = h.uncommitted_records,
            "lease lost before its records were committed: the new owner reads them again"
        );
    }

    /// Counts and logs a batch of `records` Kinesis records left unapplied because the lease of
    /// its shard is no longer held.
    pub fn not_applied(&self, key: &ShardKey, records: usize) {
        let c = &self.status.counters;
        KinesisStatus::count(&c.records_of_lost_leases_not_applied, records as u64);
        tracing::warn!(
            shard = %key,
            records,
            "a batch arrived after its lease was lost: not applied, its new owner reads it"
        );
    }

    /// The lease should go to `to` (or to nobody) at the next commit once its consumer stopped.
    pub fn plan_transfer(&self, key: &ShardKey, to: Option<String>) {
        if let Some(h) = self.lock().held.get_mut(key) {
            h.transfer = Some(to);
        }
    }

    /// The shard's consumer has stopped: a planned transfer may go out.
    pub fn consumer_stopped(&self, key: &ShardKey) {
        if let Some(h) = self.lock().held.get_mut(key) {
            h.ready = true;
        }
    }

    /// Plans to release every lease at the next commit (shutdown, consumers stopped).
    pub fn release_all(&self) {
        for h in self.lock().held.values_mut() {
            h.transfer = Some(None);
            h.ready = true;
        }
    }

    /// A batch of a held shard is in the engine (called by the pipeline per batch, after it
    /// checked [`LeaseBook::holds`]). If the lease was lost in between, its new owner reads these
    /// records again: they are counted and logged as lost uncommitted records.
    pub fn applied(&self, key: &ShardKey, records: u64, position: &Position) {
        match self.lock().held.get_mut(key) {
            Some(h) => {
                h.uncommitted_records += records;
                h.applied = position.clone();
            }
            None => {
                KinesisStatus::count(&self.status.counters.lost_uncommitted_records, records);
                tracing::error!(
                    shard = %key,
                    records,
                    "lease lost while its batch was applied: the new owner reads it again"
                );
            }
        }
    }

    /// Commits the applied positions as generation `generation` in one transaction over every
    /// held lease that moved or is handed over, plus the markers. The pipeline thread (not a
    /// runtime thread) calls it, and it blocks on the DynamoDB call. A lease found lost is
    /// dropped and the commit retried once without it.
    pub fn commit(&self, generation: u64) -> Result<Committed, KinesisError> {
        let mut report = Committed::default();
        for _attempt in 0..3 {
            let (changes, markers) = {
                let inner = self.lock();
                let changes: Vec<(ShardKey, LeaseCommit)> = inner
                    .held
                    .iter()
                    .filter_map(|(k, h)| {
                        let applied = &h.applied;
                        let transfer = h.transfer.clone().filter(|_| h.ready);
                        (applied != &h.committed || transfer.is_some()).then(|| {
                            let commit = LeaseCommit {
                                shard: k.shard.to_string(),
                                checkpoint: applied.clone(),
                                transfer,
                            };
                            (k.clone(), commit)
                        })
                    })
                    .collect();
                (changes, inner.markers.clone())
            };
            let mut items = Vec::new();
            let mut names: Vec<Option<ShardKey>> = Vec::new();
            let mut client = None;
            for (stream, table) in &self.tables {
                let mine: Vec<&(ShardKey, LeaseCommit)> =
                    changes.iter().filter(|(k, _)| &k.stream == stream).collect();
                let commits: Vec<LeaseCommit> = mine.iter().map(|(_, c)| c.clone()).collect();
                let previous = markers.get(&table.table).copied().flatten();
                items.extend(table.commit_items(&self.me, generation, previous, &commits)?);
                names.extend(mine.iter().map(|(k, _)| Some(k.clone())));
                names.push(None);
                client.get_or_insert_with(|| table.client.clone());
            }
            let Some(client) = client else { return Ok(report) };
            let shard_names: Vec<Option<String>> =
                names.iter().map(|n| n.as_ref().map(|k| k.to_string())).collect();
            let outcome = self.runtime.block_on(lease::commit(&client, items, &shard_names));
            match outcome {
                Ok(()) => {
                    KinesisStatus::count(&self.status.counters.commits, 1);
                    let mut inner = self.lock();
                    for m in inner.markers.values_mut() {
                        *m = Some(generation);
                    }
                    for (k, c) in changes {
                        self.status.set_checkpoint(&k, &c.checkpoint);
                        if let Some(to) = &c.transfer {
                            inner.depart(&k);
                            self.status.set_owner(&k, to.as_deref());
                            let state = match c.checkpoint.is_end() {
                                true => ShardPhase::Finished,
                                false => ShardPhase::LeasedElsewhere,
                            };
                            self.status.set_state(&k, state);
                            KinesisStatus::count(&self.status.counters.leases_handed_off, 1);
                            report.transferred.push(k);
                        } else if let Some(h) = inner.held.get_mut(&k) {
                            h.committed = c.checkpoint;
                            h.uncommitted_records = 0;
                        }
                    }
                    return Ok(report);
                }
                Err(CommitError::Lost(lost)) => {
                    let mut inner = self.lock();
                    for name in lost {
                        let key = names.iter().flatten().find(|k| k.to_string() == name).cloned();
                        if let Some(key) = key
                            && let Some(h) = inner.depart(&key)
                        {
                            self.count_lost(&key, &h);
                            report.lost.push(key);
                        }
                    }
                }
                Err(CommitError::MarkerConflict) => {
                    KinesisStatus::count(&self.status.counters.commit_failures, 1);
                    return Err(KinesisError::DuplicateReplica { replica: self.me.clone() });
                }
                Err(e) => {
                    KinesisStatus::count(&self.status.counters.commit_failures, 1);
                    return Err(e.into());
                }
            }
        }
        KinesisStatus::count(&self.status.counters.commit_failures, 1);
        Err(CommitError::LostOnEveryAttempt.into())
    }
}
