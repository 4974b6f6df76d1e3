//! The Kinesis Data Streams source: a consumer per shard, checkpoints, resharding, and
//! scale-out over a DynamoDB lease table.
//!
//! ```text
//!  ListShards ─► coordinator (per stream) ─spawns─► shard consumer (per shard)
//!                 │ leases: renew, take,              GetShardIterator / GetRecords, paced,
//!                 │ balance, hand over                backoff; one batch in flight
//!                 ▼                                          │ SourceMsg::Batch
//!            LeaseBook ◄── commit (pipeline thread) ◄── pipeline: KPL → envelope → lines → engine
//! ```
//!
//! - [`config`]: the `sources.kinesis` entries of the configuration.
//! - [`client`]: the AWS clients (standard credential chain, endpoint overrides).
//! - [`discovery`]: ListShards and the parent graph.
//! - [`consumer`]: one shard's read loop.
//! - [`coordinator`]: which shards run here (alone, or by lease) and in what order.
//! - [`lease`], [`book`]: the DynamoDB lease table and this replica's leases.
//! - [`position`]: positions and sequence-number order.
//! - [`status`]: per-shard status and counters.
//!
//! The source never touches the engine: it hands batches to the pipeline, which owns the only
//! router and answers each batch once its records are routed. Positions therefore advance in
//! the same thread, and the same order, as the state file is written.

pub(crate) mod book;
pub(crate) mod client;
pub mod config;
pub(crate) mod consumer;
pub(crate) mod coordinator;
pub(crate) mod discovery;
mod error;
pub mod lease;
pub(crate) mod message;
pub(crate) mod position;
pub mod renewer;
pub(crate) mod status;

use std::collections::BTreeMap;
use std::sync::Arc;

use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

pub use self::book::LeaseBook;
pub use self::config::{KinesisSourceConfig, SourcesConfig, StartingPosition};
pub use self::error::{CommitError, KinesisError};
pub use self::message::{CheckpointFailure, KinesisBatch, SourceMsg};
pub use self::position::{Position, ShardKey};
pub use self::status::KinesisStatus;

/// The clients and lease book, ready before the state file is read (a lease-mode restart asks
/// the lease table which state generation was committed).
pub struct Connections {
    clients: Vec<client::Clients>,
    pub book: Option<Arc<LeaseBook>>,
    pub status: Arc<KinesisStatus>,
}

/// Builds every stream's clients and, with lease tables, opens the lease book (creating the
/// tables if needed).
pub async fn connect(config: &SourcesConfig) -> Result<Connections, KinesisError> {
    let status = Arc::new(KinesisStatus::default());
    let mut clients = Vec::new();
    for k in &config.kinesis {
        clients.push(client::build(k).await?);
    }
    let mut tables = BTreeMap::new();
    for (k, c) in config.kinesis.iter().zip(&clients) {
        if let Some(table) = &k.lease_table {
            tables.insert(
                Arc::from(k.stream_name()),
                lease::LeaseTable {
                    client: c.dynamodb.clone(),
                    table: table.clone(),
                    stream: k.stream_name().to_string(),
                },
            );
        }
    }
    let book = if tables.is_empty() {
        None
    } else {
        Some(Arc::new(LeaseBook::open(config.replica_id(), tables, status.clone()).await?))
    };
    Ok(Connections { clients, book, status })
}

/// The running coordinators.
pub struct RunningSources {
    stop: CancellationToken,
    tasks: JoinSet<()>,
    book: Option<Arc<LeaseBook>>,
}

/// Starts a coordinator per stream. `restored` holds the positions of the state file (used
/// by streams without a lease table).
pub fn start(
    config: &SourcesConfig,
    connections: &Connections,
    restored: &BTreeMap<ShardKey, Position>,
    sink: mpsc::Sender<SourceMsg>,
) -> RunningSources {
    let stop = CancellationToken::new();
    let mut tasks = JoinSet::new();
    for (i, (k, c)) in config.kinesis.iter().zip(&connections.clients).enumerate() {
        let stream = k.stream_name();
        let coordinator = coordinator::Coordinator {
            config: Arc::new(k.clone()),
            source: i,
            kinesis: c.kinesis.clone(),
            sink: sink.clone(),
            status: connections.status.clone(),
            restored: restored
                .iter()
                .filter(|(key, _)| &*key.stream == stream)
                .map(|(key, p)| (key.shard.to_string(), p.clone()))
                .collect(),
            book: k.lease_table.as_ref().and(connections.book.clone()),
            stop: stop.child_token(),
        };
        tracing::info!(stream = %k.stream, lease_table = ?k.lease_table, "reading Kinesis stream");
        tasks.spawn(coordinator.run());
    }
    RunningSources { stop, tasks, book: connections.book.clone() }
}

impl RunningSources {
    /// Stops every consumer and waits until everything they read has been applied; leases are
    /// then released at the final commit.
    pub async fn stop(mut self) {
        self.stop.cancel();
        while self.tasks.join_next().await.is_some() {}
        if let Some(book) = &self.book {
            book.release_all();
        }
    }
}
