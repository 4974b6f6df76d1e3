//! Lease renewal: one task per leased stream that bumps the counter of every lease this
//! replica holds, every third of `lease_duration`, and nothing else.
//!
//! The renewals run on a task of their own because other replicas take a lease whose counter
//! has not moved for `lease_duration`. Renewals that waited behind the coordinator's
//! ListShards, table scans and checkpoints (which wait for the pipeline) could go a whole lease
//! duration without running on a loaded machine, and a live replica would then lose a lease it
//! is reading. Here nothing but the renewals themselves (issued concurrently, each given at
//! most one interval) stands between two rounds.
//!
//! The renewer updates the [`LeaseBook`] itself (a lost lease is forgotten at once, so the
//! pipeline stops applying its batches) and tells the coordinator, which owns the consumers,
//! what to stop.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use super::book::LeaseBook;
use super::error::KinesisError;
use super::lease::LeaseTable;
use super::position::ShardKey;
use super::status::{KinesisStatus, ShardPhase};

/// What a renewal found that the coordinator must act on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Renewal {
    /// Another replica asked for the lease: its transfer is planned; stop the consumer (or, if
    /// none runs, mark it stopped) and checkpoint so the transfer goes out.
    HandOver(ShardKey),
    /// The lease is no longer ours (the book has forgotten it): stop its consumer.
    Lost(ShardKey),
}

/// Renews the leases of one stream until `stop`.
pub struct Renewer {
    pub book: Arc<LeaseBook>,
    pub table: LeaseTable,
    pub stream: Arc<str>,
    pub status: Arc<KinesisStatus>,
    pub every: Duration,
    pub events: mpsc::UnboundedSender<Renewal>,
    pub stop: CancellationToken,
}

impl Renewer {
    pub async fn run(self) {
        let mut tick = tokio::time::interval(self.every);
        // A late round is followed by a full interval, not by a burst of catch-up rounds.
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = self.stop.cancelled() => return,
                _ = tick.tick() => {}
            }
            // Stopping drops a round in flight (and aborts its calls): the final commit that
            // releases the leases should not meet renewals of the same items.
            tokio::select! {
                _ = self.stop.cancelled() => return,
                _ = self.round() => {}
            }
        }
    }

    /// Renews every held lease, all at once (one slow call must not delay the others).
    async fn round(&self) {
        let mut calls = JoinSet::new();
        for (key, handing_over) in self.book.held(&self.stream) {
            let table = self.table.clone();
            let me = self.book.me.clone();
            let every = self.every;
            calls.spawn(async move {
                // A call that hangs must not hold back the next round (the SDK's own timeout
                // can be as long as a lease).
                let outcome = match tokio::time::timeout(every, table.renew(&key.shard, &me)).await
                {
                    Ok(outcome) => outcome,
                    Err(_) => Err(KinesisError::call(
                        format!("renewing lease {key}"),
                        format!("no answer within {every:?}"),
                    )),
                };
                (key, handing_over, outcome)
            });
        }
        while let Some(joined) = calls.join_next().await {
            let (key, handing_over, outcome) = match joined {
                Ok(done) => done,
                Err(e) => {
                    tracing::error!(stream = %self.stream, "a lease renewal failed: {e}");
                    continue;
                }
            };
            match outcome {
                Ok(Some(lease)) => {
                    if let Some(to) = lease.pending_owner.filter(|_| !handing_over) {
                        tracing::info!(shard = %key, to = %to, "handing the lease over");
                        self.book.plan_transfer(&key, Some(to));
                        let _ = self.events.send(Renewal::HandOver(key));
                    }
                }
                Ok(None) => {
                    if self.book.lose(&key) {
                        self.status.set_state(&key, ShardPhase::LeasedElsewhere);
                        let _ = self.events.send(Renewal::Lost(key));
                    }
                }
                Err(e) => {
                    KinesisStatus::count(&self.status.counters.errors, 1);
                    tracing::warn!(shard = %key, "{e}");
                }
            }
        }
    }
}
