//! What the Kinesis source sends to the pipeline: batches of records with the shard position
//! after them, and requests for a checkpoint.

use tokio::sync::oneshot;

use super::position::{Position, ShardKey};

/// Records of one GetRecords answer, for the pipeline.
#[derive(Debug)]
pub struct KinesisBatch {
    pub shard: ShardKey,
    /// Which `[[sources.kinesis]]` entry (its formats).
    pub source: usize,
    /// Kinesis record payloads, in shard order (KPL aggregates not yet unpacked).
    pub records: Vec<Vec<u8>>,
    /// The shard's position once these records are applied.
    pub position: Position,
    /// Answered once every record is in the engine.
    pub applied: oneshot::Sender<()>,
}

/// What the sources send to the pipeline.
#[derive(Debug)]
pub enum SourceMsg {
    Batch(KinesisBatch),
    /// Write a checkpoint (and commit leases) now: a shard ended or a lease is handed over.
    Checkpoint(oneshot::Sender<Result<(), CheckpointFailure>>),
}

/// Why a checkpoint the source asked for failed; the source only logs it, so it needs no more
/// than the error itself.
pub type CheckpointFailure = Box<dyn std::error::Error + Send + Sync>;
