//! [`ServeError`]: why `serve` could not start, or did not stop cleanly.

use std::net::SocketAddr;
use std::time::Duration;

use crate::decode::LayoutError;
use crate::export::ExportError;

/// Why `serve` could not start, or did not stop cleanly. Each message says what to fix.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// The configuration is invalid (its message names the key).
    #[error("{0}")]
    Config(String),
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
    #[error("{0}")]
    Secrets(String),
    /// The OTLP exporters or the self-metrics could not be set up.
    #[error(transparent)]
    Export(#[from] ExportError),
    /// The Kinesis sources could not be prepared (clients, lease tables).
    #[error("{0}")]
    Kinesis(String),
    /// The state file could not be restored, or the last one not written.
    #[error("{0}")]
    State(String),
    /// A thread of `serve`'s could not be started, or panicked.
    #[error("the {0} thread {1}")]
    Thread(&'static str, &'static str),
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
