//! [`ServeError`]: why `serve` could not start, or did not stop cleanly.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use super::state_file::StateError;
use crate::decode::LayoutError;
use crate::export::ExportError;
use crate::source::kinesis::KinesisError;

/// Why `serve` could not start, or did not stop cleanly. Each message says what to fix.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// The write-ahead log could not be read or opened at start.
    #[error(transparent)]
    Wal(#[from] super::wal::WalError),
    /// The configuration is invalid (its message names the key).
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// A `formats` entry is not a flow-log format.
    #[error("{key}: {source}")]
    Formats {
        key: &'static str,
        #[source]
        source: LayoutError,
    },
    /// A listener's address could not be bound.
    #[error("{listener}: cannot listen on {addr}: {source}")]
    Bind {
        listener: &'static str,
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    /// A bound listener could not be set up.
    #[error("{listener}: {source}")]
    Listener {
        listener: &'static str,
        #[source]
        source: std::io::Error,
    },
    /// The ingest listener's certificate or access keys could not be loaded.
    #[error(transparent)]
    Secrets(#[from] SecretsError),
    /// The OTLP exporters or the self-metrics could not be set up.
    #[error(transparent)]
    Export(#[from] ExportError),
    /// The findings webhook could not be set up.
    #[error(transparent)]
    Alerts(#[from] crate::export::webhook::AlertsError),
    /// The Kinesis sources could not connect (clients, lease tables).
    #[error(transparent)]
    Kinesis(#[from] KinesisError),
    /// The state directory could not be created.
    #[error("state.dir {}: {source}", dir.display())]
    StateDir {
        dir: std::path::PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The state file could not be read or resolved.
    #[error(transparent)]
    State(#[from] StateError),
    /// The state file cannot be used, and `discard_bad_state` is off.
    #[error("{problem} (start with --discard-bad-state to set it aside and start empty)")]
    BadState { problem: String },
    /// The state file cannot be used, and it could not be set aside either.
    #[error("{problem}; and it could not be set aside: {source}")]
    SetAside {
        problem: String,
        #[source]
        source: std::io::Error,
    },
    /// In lease mode, the last checkpoint could not be committed at shutdown.
    #[error(
        "the final checkpoint could not be committed ({0}); the last committed state file stays"
    )]
    FinalCommit(#[source] CheckpointError),
    /// The last state file could not be written at shutdown.
    #[error("the final state file could not be written ({0}); every window was closed instead")]
    FinalWrite(#[source] CheckpointError),
    /// A thread of `serve`'s panicked.
    #[error("the {0} thread {1}")]
    Thread(&'static str, &'static str),
    /// A thread of `serve`'s could not be started (the system's reason).
    #[error("cannot start the {thread} thread: {source}")]
    Spawn {
        thread: &'static str,
        #[source]
        source: std::io::Error,
    },
    /// The signal handlers for a graceful shutdown could not be installed.
    #[error("cannot handle signals: {0}")]
    Signals(#[source] std::io::Error),
    /// Shutting down took longer than `shutdown_timeout`.
    #[error("shutdown took {took:?}, longer than {budget:?} (nothing acknowledged was lost)")]
    SlowShutdown { took: Duration, budget: Duration },
    /// `serve`'s task ended before its listeners were bound, or could not be joined.
    #[error("serve stopped: {0}")]
    Stopped(String),
}

/// Why a checkpoint was not written.
#[derive(Debug, thiserror::Error)]
pub enum CheckpointError {
    /// The state file could not be written.
    #[error(transparent)]
    Write(#[from] StateError),
    /// The lease table did not take the commit.
    #[error(transparent)]
    Commit(#[from] KinesisError),
}

/// Why the configuration cannot be used. Each message names the key at fault.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// A configuration file named on the command line or in the environment is missing.
    #[error("configuration file {} does not exist", .0.display())]
    NoFile(PathBuf),
    /// A file, variable or flag does not fit the configuration's types (each of figment's
    /// messages, joined).
    #[error("{0}")]
    Parse(String),
    /// The values fit the types but not each other, or are out of range.
    #[error("{0}")]
    Invalid(String),
    /// A `formats` entry is not a flow-log format.
    #[error("formats: {0}")]
    Formats(#[source] LayoutError),
    /// A `[[sources.kinesis]]` entry or `[sources]` is invalid.
    #[error(transparent)]
    Kinesis(#[from] KinesisError),
}

/// Why the ingest listener's certificate or access keys could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum SecretsError {
    /// An inline access key is blank.
    #[error("ingest.access_keys holds an empty key")]
    EmptyKey,
    /// The access-key file could not be read.
    #[error("ingest.access_keys_file {}: {source}", path.display())]
    ReadKeys {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The access-key file looks like a Secrets Manager secret but is not one.
    #[error("ingest.access_keys_file {}: not {{\"api_key\": …}}: {source}", path.display())]
    NotASecret {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    /// The access-key file holds no key: it would accept any request.
    #[error(
        "ingest.access_keys_file {}: holds no key (refused rather than accepting any request)",
        path.display()
    )]
    NoKey { path: PathBuf },
    /// The certificate or key could not be read or used.
    #[error("ingest TLS ({}, {}): {source}", cert.display(), key.display())]
    Tls {
        cert: PathBuf,
        key: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// Reading the access-key file off the runtime failed.
    #[error("reading the access keys: {0}")]
    Task(String),
}
