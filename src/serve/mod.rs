//! Serving: the engine run live behind the Firehose HTTP endpoint, with the admin API.
//!
//! This module owns the process's life: listeners, the pipeline thread, the snapshot store, the
//! idle ticker and graceful shutdown.
//!
//! ```text
//! Firehose ──POST──► ingest listener ──reserve──► pipeline thread ──► engine ──► snapshots
//!                     (auth, limits, gzip,          (route in order)                 │
//!                      base64, dedup, 503                                            ▼
//!                      when the queue is full,                         SnapshotStore ◄── admin API
//!                      decode + parse)
//! ```
//!
//! Shutdown (SIGTERM or SIGINT): new requests get 503 and `/readyz` fails; the ingest listener
//! stops accepting and finishes the requests in flight; the pipeline applies everything queued;
//! then, with a state directory, the state file is written (open windows, watermark, request
//! ids) and the next start continues from it, or without one every window closes so that every
//! acknowledged record reaches the results. The process exits 0, or 1 if that took longer than
//! `shutdown_timeout`. With a state directory the state is also written every
//! `checkpoint_interval`, so a crash loses at most that much.

pub mod config;
mod connections;
pub(crate) mod dedup;
pub(crate) mod ec2;
mod error;
pub mod history;
pub(crate) mod http;
mod listeners;
pub(crate) mod live;
mod page;
pub(crate) mod pipeline;
pub(crate) mod reload;
pub(crate) mod request;
mod rollups;
mod services;
pub mod state_file;
pub mod status;
pub(crate) mod store;
pub mod telemetry;
pub mod wal;

use std::net::SocketAddr;

use self::config::ServeConfig;
use self::dedup::Dedup;
pub use self::error::{CheckpointError, ConfigError, SecretsError, ServeError};

/// The addresses the listeners bound (a configured port 0 picks a free one).
#[derive(Debug, Clone, Copy)]
pub struct Bound {
    /// The Firehose listener's address; `None` when `ingest.enabled` is off.
    pub ingest: Option<SocketAddr>,
    pub admin: SocketAddr,
}

/// A `serve` running in this process (see [`spawn`]).
pub struct RunningServe {
    pub bound: Bound,
    stop: tokio::sync::oneshot::Sender<()>,
    task: tokio::task::JoinHandle<Result<(), ServeError>>,
}

impl RunningServe {
    /// Shuts it down gracefully (as SIGTERM would) and waits for the end.
    pub async fn stop(self) -> Result<(), ServeError> {
        let _ = self.stop.send(());
        self.task.await.map_err(|e| ServeError::Stopped(e.to_string()))?
    }
}

/// Starts `serve` inside this process (for tests, the demo, or embedding), returning once the
/// listeners are bound.
///
/// ```no_run
/// # async fn demo() -> Result<(), vpcflowd::serve::ServeError> {
/// let mut config = vpcflowd::serve::config::ServeConfig::default();
/// config.ingest.listen = "127.0.0.1:0".parse().unwrap();
/// config.admin.listen = "127.0.0.1:0".parse().unwrap();
/// let running = vpcflowd::serve::spawn(config).await?;
/// println!("POST Firehose requests to http://{}/", running.bound.ingest.unwrap());
/// running.stop().await
/// # }
/// ```
pub async fn spawn(config: ServeConfig) -> Result<RunningServe, ServeError> {
    let (stop, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let (bound_tx, bound_rx) = tokio::sync::oneshot::channel();
    let task = tokio::spawn(run(
        config,
        async {
            let _ = stop_rx.await;
        },
        move |b| {
            let _ = bound_tx.send(b);
        },
    ));
    match bound_rx.await {
        Ok(bound) => Ok(RunningServe { bound, stop, task }),
        // It stopped before binding: its error says why.
        Err(_) => Err(task
            .await
            .map_err(|e| ServeError::Stopped(e.to_string()))?
            .err()
            .unwrap_or_else(|| ServeError::Stopped("before binding its listeners".into()))),
    }
}

/// Reads the state file in `dir` for a restart. An unusable file is an error, or with
/// `discard_bad_state` is renamed aside. With lease tables, `committed` is the generation the
/// lease table committed for this replica.
fn restore(
    dir: &std::path::Path,
    config: &ServeConfig,
    engine_config: &crate::window::EngineConfig,
    dedup: &Dedup,
    committed: Option<Option<u64>>,
) -> Result<
    Option<(
        crate::window::engine::EngineCheckpoint,
        state_file::KinesisCheckpoint,
        state_file::IngestCounts,
    )>,
    ServeError,
> {
    std::fs::create_dir_all(dir)
        .map_err(|source| ServeError::StateDir { dir: dir.to_path_buf(), source })?;
    if let Some(committed) = committed {
        // A crash between preparing a state file and committing its leases left it beside the
        // current one: the lease table says which of the two is true.
        if let Some(what) = state_file::resolve_next(dir, committed)? {
            tracing::warn!("{what}");
        }
    }
    let problem = match state_file::read(dir) {
        Ok(None) => return Ok(None),
        Ok(Some(file)) => match file.engine.incompatibility(engine_config) {
            None => {
                let now = crate::clock::unix_millis();
                tracing::info!(
                    interfaces = file.engine.interfaces.len(),
                    request_ids = file.dedup.len(),
                    age_ms = now.saturating_sub(file.written_at_ms),
                    "restored state"
                );
                dedup.import(file.dedup, now);
                return Ok(Some((file.engine, file.kinesis, file.ingest)));
            }
            Some(why) => format!("{}: {why}", state_file::path_in(dir).display()),
        },
        Err(e) => e.to_string(),
    };
    if config.state.discard_bad_state {
        let aside = state_file::set_aside(dir, crate::clock::unix_millis())
            .map_err(|source| ServeError::SetAside { problem: problem.clone(), source })?;
        tracing::warn!("{problem}; starting empty (the file is now {})", aside.display());
        Ok(None)
    } else {
        Err(ServeError::BadState { problem })
    }
}

/// Runs until `shutdown` resolves, then shuts down gracefully. `on_bound` learns the addresses.
pub async fn run(
    config: ServeConfig,
    shutdown: impl std::future::Future<Output = ()>,
    on_bound: impl FnOnce(Bound),
) -> Result<(), ServeError> {
    let listeners = services::Listeners::bind(&config).await?;
    let bound = listeners.bound;
    let services = services::Services::start(config, listeners).await?;
    on_bound(bound);
    shutdown.await;
    services.shut_down().await
}
