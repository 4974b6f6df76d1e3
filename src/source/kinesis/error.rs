//! [`KinesisError`]: why the Kinesis source could not be set up, or why a call to Kinesis or
//! to the lease table failed.

/// What went wrong in the Kinesis source. Each message names the stream, table or lease.
#[derive(Debug, Clone, thiserror::Error)]
pub enum KinesisError {
    /// The `[[sources.kinesis]]` or `[sources]` configuration is invalid.
    #[error("{0}")]
    Config(String),
    /// No AWS region could be found for a stream.
    #[error(
        "stream {stream}: no AWS region (set region in [[sources.kinesis]], AWS_REGION, or use an ARN)"
    )]
    NoRegion { stream: String },
    /// A call to Kinesis or DynamoDB failed: `call` says what it was for, `detail` is the
    /// service's code and message, or the transport's cause chain.
    #[error("{call}: {detail}")]
    Call { call: String, detail: String },
    /// A lease-table item cannot be read as a lease of this stream.
    #[error("{0}")]
    Item(String),
    /// The lease table did not become active in time.
    #[error("lease table {table}: not ACTIVE after 60 s")]
    TableNotActive { table: String },
    /// Another process commits as this replica: replica ids must be unique.
    #[error("another process commits as replica {replica:?}: replica ids must be unique")]
    DuplicateReplica { replica: String },
    /// A commit of the lease table failed.
    #[error(transparent)]
    Commit(#[from] CommitError),
}

impl KinesisError {
    /// A failed call: what it was for, and the error [`super::client::describe`] made of it.
    pub fn call(call: impl Into<String>, detail: impl Into<String>) -> KinesisError {
        KinesisError::Call { call: call.into(), detail: detail.into() }
    }
}

/// Why a commit of the lease table failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CommitError {
    /// These leases are not ours any more (their condition failed); nothing was written.
    #[error("committing leases: leases lost: {}", .0.join(", "))]
    Lost(Vec<String>),
    /// The marker moved: another process runs with this replica id. Nothing was written.
    #[error("committing leases: the replica's marker moved")]
    MarkerConflict,
    /// Leases were found lost on every attempt.
    #[error("committing leases: lost leases on every attempt")]
    LostOnEveryAttempt,
    /// The transaction failed for another reason (its message).
    #[error("committing leases: {0}")]
    Other(String),
}
