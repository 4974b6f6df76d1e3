//! Which shards this replica reads, and their consumers' lives: one coordinator task per
//! stream.
//!
//! - **Alone** (no lease table): the replica reads every shard. A shard starts when each of its
//!   parents has been read to its end (its `SHARD_END` applied), from the restored position,
//!   else from `start` for the shards of the first listing and `TRIM_HORIZON` for shards that
//!   appear later (children of a reshard hold only new records).
//! - **With a lease table**: a [`Renewer`] task renews the leases held every third of
//!   `lease_duration`, apart from everything else here. On the same beat the coordinator
//!   takes leases whose counter has not moved for `lease_duration` (their owner is gone; never
//!   one it holds itself), and balances: while it holds fewer than ⌈leases / live replicas⌉ it
//!   takes expired leases, else asks the busiest replica to hand one over. A replica asked for
//!   a lease stops that consumer and transfers the lease in its next commit, with the final
//!   position, so no record is read twice. A lease's consumer starts once its parents' leases
//!   say `SHARD_END`.
//!
//! ListShards runs every `shard_discovery_interval` and whenever a shard ends.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;
use std::time::Instant;

use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use super::book::LeaseBook;
use super::config::{KinesisSourceConfig, StartingPosition};
use super::consumer::{ShardExit, ShardReader};
use super::discovery::{self, ShardInfo};
use super::lease::{Lease, LeaseTable};
use super::message::SourceMsg;
use super::position::{Position, ShardKey};
use super::renewer::{Renewal, Renewer};
use super::status::{KinesisStatus, ShardPhase};

/// One stream's coordinator.
pub(crate) struct Coordinator {
    pub config: Arc<KinesisSourceConfig>,
    pub source: usize,
    pub kinesis: aws_sdk_kinesis::Client,
    pub sink: mpsc::Sender<SourceMsg>,
    pub status: Arc<KinesisStatus>,
    /// Positions restored from the state file (alone).
    pub restored: BTreeMap<String, Position>,
    /// The lease book (with a lease table).
    pub book: Option<Arc<LeaseBook>>,
    /// Stops consumers and the coordinator.
    pub stop: CancellationToken,
}

struct RunningConsumer {
    stop: CancellationToken,
}

/// What a leased coordinator keeps from one round of its loop to the next.
struct LeasedRounds {
    book: Arc<LeaseBook>,
    table: LeaseTable,
    /// A round's length: a third of the lease duration.
    tick: std::time::Duration,
    tasks: JoinSet<(String, ShardExit, Position)>,
    running: HashMap<String, RunningConsumer>,
    /// Each lease's counter and when this replica first saw that value.
    seen: HashMap<String, (u64, Instant)>,
    listed: BTreeMap<String, ShardInfo>,
    discover_at: Instant,
    /// The lease last asked for in a handoff, and when.
    asked: Option<(String, Instant)>,
}

/// How a round of the leased loop ended.
enum RoundEnd {
    /// The next round is due.
    Due,
    /// The coordinator was stopped, or the pipeline is gone.
    Stopped,
}

/// Turns the configured start into the position of an unstarted shard of the first listing.
fn initial_position(config: &KinesisSourceConfig, shard: &ShardInfo) -> Position {
    match config.start {
        StartingPosition::TrimHorizon => Position::TrimHorizon,
        StartingPosition::Latest if shard.closed => Position::ShardEnd,
        StartingPosition::Latest => Position::Latest,
        StartingPosition::AtTimestamp => {
            Position::AtTimestamp(config.start_timestamp_ms().ok().flatten().unwrap_or(0))
        }
    }
}

impl Coordinator {
    fn key(&self, shard: &str) -> ShardKey {
        ShardKey::new(self.config.stream_name(), shard)
    }

    fn spawn(
        &self,
        tasks: &mut JoinSet<(String, ShardExit, Position)>,
        running: &mut HashMap<String, RunningConsumer>,
        shard: &str,
        from: Position,
    ) {
        let stop = self.stop.child_token();
        let reader = ShardReader {
            client: self.kinesis.clone(),
            config: self.config.clone(),
            key: self.key(shard),
            source: self.source,
            sink: self.sink.clone(),
            status: self.status.clone(),
            stop: stop.clone(),
        };
        tracing::info!(shard = %reader.key, from = %from, "reading shard");
        let id = shard.to_string();
        tasks.spawn(async move {
            let (exit, at) = reader.run(from).await;
            (id, exit, at)
        });
        running.insert(shard.to_string(), RunningConsumer { stop });
    }

    async fn list(&self) -> Option<BTreeMap<String, ShardInfo>> {
        match discovery::list_shards(&self.kinesis, &self.config).await {
            Ok(s) => Some(s),
            Err(e) => {
                KinesisStatus::count(&self.status.counters.errors, 1);
                tracing::warn!(stream = %self.config.stream, "{e}");
                None
            }
        }
    }

    /// Asks the pipeline for a checkpoint now (and waits for it).
    async fn checkpoint_now(&self) {
        let (tx, rx) = oneshot::channel();
        if self.sink.send(SourceMsg::Checkpoint(tx)).await.is_ok()
            && let Ok(Err(e)) = rx.await
        {
            tracing::warn!(stream = %self.config.stream, "checkpoint: {e}");
        }
    }

    /// Runs until stopped; returns once every consumer has stopped (everything read is applied).
    pub(crate) async fn run(self) {
        match self.book.clone() {
            None => self.run_alone().await,
            Some(book) => self.run_leased(book).await,
        }
    }

    async fn run_alone(self) {
        let mut tasks = JoinSet::new();
        let mut running: HashMap<String, RunningConsumer> = HashMap::new();
        let mut done: BTreeSet<String> = BTreeSet::new();
        let mut listed_once = false;
        let mut positions = self.restored.clone();
        // Without restored positions, the first listing starts at `start`.
        let fresh = positions.is_empty();
        let mut discover_at = Instant::now();
        loop {
            if Instant::now() >= discover_at
                && let Some(shards) = self.list().await
            {
                let first = !listed_once;
                for s in shards.values() {
                    let pos = positions.entry(s.id.clone()).or_insert_with(|| {
                        if first && fresh {
                            initial_position(&self.config, s)
                        } else {
                            Position::TrimHorizon
                        }
                    });
                    if pos.is_end() {
                        done.insert(s.id.clone());
                    }
                }
                for s in shards.values() {
                    let key = self.key(&s.id);
                    if running.contains_key(&s.id) || done.contains(&s.id) {
                        continue;
                    }
                    if discovery::parents_done(s, &shards, |p| done.contains(p)) {
                        let from = positions[&s.id].clone();
                        self.status.set_owner(&key, None);
                        self.spawn(&mut tasks, &mut running, &s.id, from);
                    } else {
                        self.status.set_state(&key, ShardPhase::WaitingForParents);
                    }
                }
                listed_once = true;
                discover_at = Instant::now() + self.config.shard_discovery_interval;
            }
            let wait = discover_at.saturating_duration_since(Instant::now());
            tokio::select! {
                _ = self.stop.cancelled() => break,
                _ = tokio::time::sleep(wait) => {}
                Some(Ok((shard, exit, at))) = tasks.join_next(), if !tasks.is_empty() => {
                    running.remove(&shard);
                    positions.insert(shard.clone(), at);
                    match exit {
                        ShardExit::End => {
                            tracing::info!(shard = %self.key(&shard), "shard read to its end");
                            done.insert(shard);
                            discover_at = Instant::now();
                        }
                        ShardExit::Stopped | ShardExit::SinkClosed => break,
                    }
                }
            }
        }
        self.stop.cancel();
        while tasks.join_next().await.is_some() {}
    }

    async fn run_leased(self, book: Arc<LeaseBook>) {
        let Some(table) = book.table(self.config.stream_name()).cloned() else {
            tracing::error!(stream = %self.config.stream, "no lease table for this stream");
            return;
        };
        let tick = self.config.lease_duration / 3;
        // Renewals run on their own task (see `renewer`), so nothing here can delay them.
        let (renewals_tx, mut renewals) = mpsc::unbounded_channel();
        let renewer = Renewer {
            book: book.clone(),
            table: table.clone(),
            stream: self.config.stream_name().into(),
            status: self.status.clone(),
            every: tick,
            events: renewals_tx,
            stop: self.stop.child_token(),
        };
        let _stop_renewer = renewer.stop.clone().drop_guard();
        tokio::spawn(renewer.run());
        let mut round = LeasedRounds {
            book,
            table,
            tick,
            tasks: JoinSet::new(),
            running: HashMap::new(),
            seen: HashMap::new(),
            listed: BTreeMap::new(),
            discover_at: Instant::now(),
            asked: None,
        };
        loop {
            self.commit_stopped_handovers(&round).await;
            self.discover_leases(&mut round).await;
            self.take_balance_and_start(&mut round).await;
            if let RoundEnd::Stopped = self.wait_for_next_round(&mut round, &mut renewals).await {
                return;
            }
        }
    }

    /// Step 1: a lease being handed over whose consumer has stopped goes out in a commit.
    async fn commit_stopped_handovers(&self, round: &LeasedRounds) {
        if round
            .book
            .held(self.config.stream_name())
            .iter()
            .any(|(k, t)| *t && !round.running.contains_key(&*k.shard))
        {
            self.checkpoint_now().await;
        }
    }

    /// Step 2 runs every `shard_discovery_interval` and creates a lease for every listed shard
    /// that has none.
    async fn discover_leases(&self, round: &mut LeasedRounds) {
        if Instant::now() < round.discover_at {
            return;
        }
        let Some(shards) = self.list().await else { return };
        let existing = round.table.scan().await.unwrap_or_default();
        let initial = existing.is_empty();
        let have: BTreeSet<&str> = existing.iter().map(|l| l.shard.as_str()).collect();
        for s in shards.values().filter(|s| !have.contains(s.id.as_str())) {
            let from =
                if initial { initial_position(&self.config, s) } else { Position::TrimHorizon };
            if let Err(e) = round.table.create(&s.id, &s.parents, &from).await {
                tracing::warn!(stream = %self.config.stream, "{e}");
            }
        }
        round.listed = shards;
        round.discover_at = Instant::now() + self.config.shard_discovery_interval;
    }

    /// Step 3 takes leases, balances them and starts consumers. A lease lost or handed over
    /// while the table was read may still show this replica as its owner in the scan: taking
    /// that view would hold the lease again and restart its consumer, so the step waits for a
    /// fresh scan.
    async fn take_balance_and_start(&self, round: &mut LeasedRounds) {
        let departures = round.book.departures();
        let leases = match round.table.scan().await {
            Ok(_) if round.book.departures() != departures => return,
            Ok(leases) => leases,
            Err(e) => {
                tracing::warn!(stream = %self.config.stream, "{e}");
                return;
            }
        };
        let LeasedRounds { book, table, seen, listed, asked, .. } = &mut *round;
        self.balance(book, table, &leases, seen, listed, asked).await;
        let by_shard: HashMap<&str, &Lease> =
            leases.iter().map(|l| (l.shard.as_str(), l)).collect();
        for (key, handing_over) in round.book.held(self.config.stream_name()) {
            if handing_over || round.running.contains_key(&*key.shard) {
                continue;
            }
            let Some(lease) = by_shard.get(&*key.shard) else { continue };
            if lease.checkpoint.is_end() {
                continue;
            }
            let parents_done = lease.parents.iter().all(|p| match by_shard.get(p.as_str()) {
                Some(parent) => parent.checkpoint.is_end(),
                None => !round.listed.contains_key(p),
            });
            if parents_done {
                let from = lease.checkpoint.clone();
                self.spawn(&mut round.tasks, &mut round.running, &key.shard, from);
            } else {
                self.status.set_state(&key, ShardPhase::WaitingForParents);
            }
        }
    }

    /// Step 4: until the next round is due, acts on renewals (handovers asked for, leases
    /// lost) and on consumers that stop.
    async fn wait_for_next_round(
        &self,
        round: &mut LeasedRounds,
        renewals: &mut mpsc::UnboundedReceiver<Renewal>,
    ) -> RoundEnd {
        let next = Instant::now() + round.tick;
        loop {
            tokio::select! {
                _ = self.stop.cancelled() => {
                    for r in round.running.values() { r.stop.cancel(); }
                    while let Some(Ok((shard, _, _))) = round.tasks.join_next().await {
                        round.book.consumer_stopped(&self.key(&shard));
                    }
                    return RoundEnd::Stopped;
                }
                _ = tokio::time::sleep_until(next.into()) => return RoundEnd::Due,
                Some(renewal) = renewals.recv() => match renewal {
                    Renewal::HandOver(key) => match round.running.get(&*key.shard) {
                        Some(r) => r.stop.cancel(),
                        None => {
                            round.book.consumer_stopped(&key);
                            self.checkpoint_now().await;
                        }
                    },
                    Renewal::Lost(key) => {
                        if let Some(r) = round.running.get(&*key.shard) {
                            r.stop.cancel();
                        }
                    }
                },
                Some(Ok((shard, exit, _))) = round.tasks.join_next(), if !round.tasks.is_empty() => {
                    if let Some(end) = self.consumer_stopped(round, &shard, exit).await {
                        return end;
                    }
                }
            }
        }
    }

    /// Handles a consumer of this replica that returned: it commits what the consumer read and
    /// lets a finished shard's lease go. A `Some` result ends the round early.
    async fn consumer_stopped(
        &self,
        round: &mut LeasedRounds,
        shard: &str,
        exit: ShardExit,
    ) -> Option<RoundEnd> {
        round.running.remove(shard);
        let key = self.key(shard);
        round.book.consumer_stopped(&key);
        match exit {
            ShardExit::End => {
                tracing::info!(shard = %key, "shard read to its end");
                // Commit SHARD_END (children may start) and let the lease go in the same
                // write: a finished lease is nobody's share.
                round.book.plan_transfer(&key, None);
                round.discover_at = Instant::now();
                self.checkpoint_now().await;
                Some(RoundEnd::Due)
            }
            ShardExit::Stopped => {
                if round.book.holds(&key) {
                    self.checkpoint_now().await;
                }
                None
            }
            ShardExit::SinkClosed => Some(RoundEnd::Stopped),
        }
    }

    /// Takes expired leases, and asks for one when this replica holds fewer than its share.
    async fn balance(
        &self,
        book: &LeaseBook,
        table: &LeaseTable,
        leases: &[Lease],
        seen: &mut HashMap<String, (u64, Instant)>,
        listed: &BTreeMap<String, ShardInfo>,
        asked: &mut Option<(String, Instant)>,
    ) {
        let me = &book.me;
        let now = Instant::now();
        let duration = self.config.lease_duration;
        let mut expired = Vec::new();
        let mut live: BTreeMap<&str, Vec<&Lease>> = BTreeMap::new();
        for l in leases {
            let entry = seen.entry(l.shard.clone()).or_insert((l.counter, now));
            if entry.0 != l.counter {
                *entry = (l.counter, now);
            }
            if l.checkpoint.is_end() {
                continue;
            }
            let key = self.key(&l.shard);
            self.status.set_owner(&key, l.owner.as_deref());
            // The lease is ours but not in the book: its owner handed it to us, or it was ours
            // before a restart (the restored state file holds exactly the records up to its
            // checkpoint).
            if l.owner.as_deref() == Some(me.as_str()) && !book.holds(&key) {
                tracing::info!(shard = %key, checkpoint = %l.checkpoint, "holding lease");
                book.hold(&key, l.checkpoint.clone());
            }
            if l.owner.as_deref() != Some(me.as_str()) {
                self.status.set_checkpoint(&key, &l.checkpoint);
                self.status.set_state(&key, ShardPhase::LeasedElsewhere);
            }
            match &l.owner {
                // Our own lease is live to us even if its renewals have been failing: taking
                // it again would reset what the book knows of it under a running consumer.
                Some(o) if o == me && book.holds(&key) => {
                    live.entry(o.as_str()).or_default().push(l)
                }
                Some(o) if now.duration_since(entry.1) < duration => {
                    live.entry(o.as_str()).or_default().push(l)
                }
                _ => expired.push(l),
            }
        }
        let mine = book.held(self.config.stream_name()).len();
        let replicas = live.keys().filter(|o| *o != me).count() + 1;
        let open = leases.iter().filter(|l| !l.checkpoint.is_end()).count();
        let target = open.div_ceil(replicas).min(self.config.max_leases);
        let mut have = mine;
        // The expired leases whose parents are done are taken first.
        expired.sort_by_key(|l| !l.parents.iter().all(|p| !listed.contains_key(p)));
        for l in expired {
            if have >= target {
                break;
            }
            match table.take(l, me).await {
                Ok(Some(taken)) => {
                    let key = self.key(&l.shard);
                    tracing::info!(shard = %key, from = ?l.owner, checkpoint = %taken.checkpoint, "took an expired lease");
                    KinesisStatus::count(&self.status.counters.leases_taken, 1);
                    book.hold(&key, taken.checkpoint);
                    have += 1;
                }
                Ok(None) => {}
                Err(e) => tracing::warn!("{e}"),
            }
        }
        if have >= target {
            return;
        }
        if let Some((_, at)) = asked
            && now.duration_since(*at) < duration
        {
            return;
        }
        let busiest = live
            .iter()
            .filter(|(o, _)| **o != me.as_str())
            .max_by_key(|(o, ls)| (ls.len(), std::cmp::Reverse(**o)));
        if let Some((owner, ls)) = busiest
            && ls.len() > target
            && let Some(l) = ls.iter().find(|l| l.pending_owner.is_none())
        {
            match table.request_handoff(l, me).await {
                Ok(true) => {
                    tracing::info!(shard = %self.key(&l.shard), from = %owner, "asked for a lease");
                    *asked = Some((l.shard.clone(), now));
                }
                Ok(false) => {}
                Err(e) => tracing::warn!("{e}"),
            }
        }
    }
}
