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
pub mod dedup;
pub mod http;
pub mod pipeline;
pub mod prepared;
pub mod reload;
pub mod state;
pub mod store;
pub mod telemetry;

use std::net::{SocketAddr, TcpListener};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio_stream::StreamExt;
use tokio_stream::wrappers::ReceiverStream;

use self::config::ServeConfig;
use self::dedup::Dedup;
use self::http::ServeState;
use self::pipeline::{IngestStats, PipelineMsg};
use self::store::SnapshotStore;
use crate::decode::LayoutSet;
use crate::source::kinesis::SourceMsg;
use crate::window::Engine;

/// The addresses the listeners bound (a configured port 0 picks a free one).
#[derive(Debug, Clone, Copy)]
pub struct Bound {
    /// The Firehose listener's address; `None` when `ingest.enabled` is off.
    pub ingest: Option<SocketAddr>,
    pub admin: SocketAddr,
}

fn bind(addr: SocketAddr, what: &str) -> Result<TcpListener, String> {
    let listener =
        TcpListener::bind(addr).map_err(|e| format!("{what}: cannot listen on {addr}: {e}"))?;
    listener.set_nonblocking(true).map_err(|e| format!("{what}: {e}"))?;
    Ok(listener)
}

/// A `serve` running in this process (see [`spawn`]).
pub struct Running {
    pub bound: Bound,
    stop: tokio::sync::oneshot::Sender<()>,
    task: tokio::task::JoinHandle<Result<(), String>>,
}

impl Running {
    /// Shuts it down gracefully (as SIGTERM would) and waits for the end.
    pub async fn stop(self) -> Result<(), String> {
        let _ = self.stop.send(());
        self.task.await.map_err(|e| e.to_string())?
    }
}

/// Starts `serve` inside this process (for tests, the demo, or embedding), returning once the
/// listeners are bound.
///
/// ```no_run
/// # async fn demo() -> Result<(), String> {
/// let mut config = vpcflowd::serve::config::ServeConfig::default();
/// config.ingest.listen = "127.0.0.1:0".parse().unwrap();
/// config.admin.listen = "127.0.0.1:0".parse().unwrap();
/// let running = vpcflowd::serve::spawn(config).await?;
/// println!("POST Firehose requests to http://{}/", running.bound.ingest.unwrap());
/// running.stop().await
/// # }
/// ```
pub async fn spawn(config: ServeConfig) -> Result<Running, String> {
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
        Ok(bound) => Ok(Running { bound, stop, task }),
        // It stopped before binding: its error says why.
        Err(_) => Err(task
            .await
            .map_err(|e| e.to_string())?
            .err()
            .unwrap_or_else(|| "serve stopped".into())),
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
) -> Result<Option<(crate::window::engine::EngineState, state::KinesisState)>, String> {
    std::fs::create_dir_all(dir).map_err(|e| format!("state.dir {}: {e}", dir.display()))?;
    if let Some(committed) = committed {
        // A crash between preparing a state file and committing its leases left it beside the
        // current one: the lease table says which of the two is true.
        if let Some(what) = state::resolve_next(dir, committed).map_err(|e| e.to_string())? {
            tracing::warn!("{what}");
        }
    }
    let problem = match state::read(dir) {
        Ok(None) => return Ok(None),
        Ok(Some(file)) => match file.engine.incompatibility(engine_config) {
            None => {
                let now = crate::source::firehose::now_millis();
                tracing::info!(
                    interfaces = file.engine.interfaces.len(),
                    request_ids = file.dedup.len(),
                    age_ms = now.saturating_sub(file.written_at_ms),
                    "restored state"
                );
                dedup.import(file.dedup, now);
                return Ok(Some((file.engine, file.kinesis)));
            }
            Some(why) => format!("{}: {why}", state::path_in(dir).display()),
        },
        Err(e) => e.to_string(),
    };
    if config.state.discard_bad_state {
        let aside = state::set_aside(dir, crate::source::firehose::now_millis())
            .map_err(|e| format!("{problem}; and it could not be set aside: {e}"))?;
        tracing::warn!("{problem}; starting empty (the file is now {})", aside.display());
        Ok(None)
    } else {
        Err(format!("{problem} (start with --discard-bad-state to set it aside and start empty)"))
    }
}

/// Runs until `shutdown` resolves, then shuts down gracefully. `on_bound` learns the addresses.
pub async fn run(
    config: ServeConfig,
    shutdown: impl std::future::Future<Output = ()>,
    on_bound: impl FnOnce(Bound),
) -> Result<(), String> {
    let ingest = config.ingest.enabled;
    let access_keys = if ingest { config.ingest.access_keys()? } else { Vec::new() };
    if ingest && access_keys.is_empty() {
        tracing::warn!("no ingest access keys configured: every request is accepted");
    }
    config.export.validate()?;
    let layouts = LayoutSet::from_formats(&config.formats).map_err(|e| format!("formats: {e}"))?;
    let firehose_layouts = Arc::new(layouts.clone());
    let engine_config = config.window.to_engine_config().map_err(|e| format!("window: {e}"))?;
    let ingest_listener = if ingest { Some(bind(config.ingest.listen, "ingest")?) } else { None };
    let admin_listener = bind(config.admin.listen, "admin")?;
    let bound = Bound {
        ingest: match &ingest_listener {
            Some(l) => Some(l.local_addr().map_err(|e| e.to_string())?),
            None => None,
        },
        admin: admin_listener.local_addr().map_err(|e| e.to_string())?,
    };
    let certificate = match (&config.ingest.tls_cert, &config.ingest.tls_key) {
        (Some(cert), Some(key)) if ingest => {
            Some(reload::Certificate::load(cert.clone(), key.clone()).await?)
        }
        _ => None,
    };
    let tls = certificate.as_ref().map(|c| c.config.clone());

    let dedup = Arc::new(Dedup::new(config.ingest.dedup_ttl, config.ingest.dedup_max_entries));
    let kinesis = match config.sources.kinesis.is_empty() {
        true => None,
        false => Some(crate::source::kinesis::prepare(&config.sources).await?),
    };
    let book = kinesis.as_ref().and_then(|k| k.book.clone());
    if !config.sources.kinesis.is_empty() && config.state.dir.is_none() {
        tracing::warn!(
            "no state.dir: Kinesis positions are not kept, a restart reads from `start` again"
        );
    }
    let restored = match &config.state.dir {
        Some(dir) => {
            let committed = book.as_ref().map(|b| b.generation());
            restore(dir, &config, &engine_config, &dedup, committed)?
        }
        None => None,
    };
    let (restored, kinesis_state) = match restored {
        Some((engine, kinesis)) => (Some(engine), kinesis),
        None => (None, state::KinesisState::default()),
    };
    let positions: std::collections::BTreeMap<_, _> =
        kinesis_state.positions.iter().cloned().collect();
    let engine = Engine::start_from(engine_config, restored);
    let engine_stats = engine.stats.clone();
    let (router, snapshots, engine_join) = engine.into_parts();
    let store = Arc::new(SnapshotStore::new(config.admin.history));
    let export_stats = Arc::new(crate::export::ExportStats::default());
    let region = config.window.region.clone();
    let exporter = match &config.export.otlp_endpoint {
        Some(endpoint) => {
            let e = crate::export::WindowExporter::start(
                &config.export,
                region.as_deref(),
                config.window.top_sources,
                config.window.top_destinations,
                None,
                export_stats.clone(),
            )?;
            tracing::info!(%endpoint, protocol = ?config.export.otlp_protocol, "exporting closed windows over OTLP");
            Some(e)
        }
        None => None,
    };
    let registry = prometheus::Registry::new();
    let stats = Arc::new(IngestStats::default());
    let kinesis_status = kinesis.as_ref().map_or_else(Arc::default, |k| k.status.clone());
    let (pipeline_tx, pipeline_rx) = mpsc::channel(config.ingest.queue_requests);
    let pipeline = {
        let kinesis_layouts = config
            .sources
            .kinesis
            .iter()
            .map(|k| match k.formats.is_empty() {
                true => LayoutSet::from_formats(&config.formats),
                false => LayoutSet::from_formats(&k.formats),
            })
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| format!("sources.kinesis formats: {e}"))?;
        let p = pipeline::Pipeline {
            layouts,
            kinesis_layouts,
            positions: positions.clone(),
            book: book.clone(),
            generation: kinesis_state
                .generation
                .max(book.as_ref().and_then(|b| b.generation()).unwrap_or(0)),
            kinesis: kinesis_status.clone(),
            stats: stats.clone(),
            dedup: dedup.clone(),
            state_dir: config.state.dir.clone(),
            checkpoint_interval: config.state.checkpoint_interval,
        };
        std::thread::Builder::new()
            .name("vpcflowd-pipeline".into())
            .spawn(move || pipeline::run(router, p, pipeline_rx))
            .map_err(|e| e.to_string())?
    };
    let consumer = {
        let store = store.clone();
        let print = config.print_snapshots;
        tokio::spawn(async move {
            use tokio::io::AsyncWriteExt;
            let mut stdout = tokio::io::stdout();
            let mut stream = ReceiverStream::new(snapshots);
            while let Some(batch) = stream.next().await {
                let batch: Vec<Arc<crate::window::Snapshot>> =
                    batch.into_iter().map(Arc::new).collect();
                if print {
                    let mut lines = Vec::new();
                    for s in &batch {
                        if serde_json::to_writer(&mut lines, s).is_ok() {
                            lines.push(b'\n');
                        }
                    }
                    if let Err(e) = stdout.write_all(&lines).await {
                        tracing::warn!("printing snapshots: {e}");
                    }
                    let _ = stdout.flush().await;
                }
                if let Some(exporter) = &exporter {
                    exporter.offer(&batch);
                }
                store.insert(batch);
            }
            exporter
        })
    };
    // Wakes an idle pipeline every second for its timed work; never waits for a queue slot.
    let ticker = {
        let tx = pipeline_tx.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(1));
            loop {
                tick.tick().await;
                if let Err(mpsc::error::TrySendError::Closed(_)) = tx.try_send(PipelineMsg::Wake) {
                    return;
                }
            }
        })
    };

    let access_keys = Arc::new(reload::AccessKeys::new(access_keys));
    let state = Arc::new(ServeState {
        access_keys: access_keys.clone(),
        max_body_bytes: config.ingest.max_body_bytes,
        max_decompressed_bytes: config.ingest.max_decompressed_bytes,
        layouts: firehose_layouts,
        dedup,
        pipeline: pipeline_tx.clone(),
        shutting_down: Default::default(),
        stats,
        engine: engine_stats,
        store,
        export: export_stats,
        kinesis: kinesis_status.clone(),
        registry: registry.clone(),
    });
    let telemetry =
        telemetry::Telemetry::start(&config.export, region.as_deref(), &registry, state.clone())?;

    let reloader = ingest
        .then(|| {
            reload::Reloader {
                ingest: config.ingest.clone(),
                certificate,
                keys: access_keys,
                stats: state.stats.clone(),
            }
            .spawn()
        })
        .flatten();
    let ingest_handle = axum_server::Handle::new();
    let admin_handle = axum_server::Handle::new();
    let ingest_app = http::ingest_router(state.clone()).into_make_service();
    let ingest_server = ingest_listener.map(|listener| {
        let handle = ingest_handle.clone();
        tokio::spawn(async move {
            match tls {
                Some(tls) => {
                    axum_server::from_tcp_rustls(listener, tls)?
                        .handle(handle)
                        .serve(ingest_app)
                        .await
                }
                None => axum_server::from_tcp(listener)?.handle(handle).serve(ingest_app).await,
            }
        })
    });
    let admin_server = {
        let handle = admin_handle.clone();
        let app = http::admin_router(state.clone()).into_make_service();
        tokio::spawn(async move {
            axum_server::from_tcp(admin_listener)?.handle(handle).serve(app).await
        })
    };
    // Kinesis: coordinators and shard consumers, their batches forwarded into the pipeline
    // queue (waiting for room: backpressure on the consumers, never a 503).
    let kinesis_running = kinesis.as_ref().map(|prepared| {
        let (tx, mut rx) = mpsc::channel::<SourceMsg>(1);
        let forward_to = pipeline_tx.clone();
        tokio::spawn(async move {
            while let Some(msg) = rx.recv().await {
                let msg = match msg {
                    SourceMsg::Batch(b) => PipelineMsg::Kinesis(b),
                    SourceMsg::Checkpoint(reply) => PipelineMsg::Checkpoint(reply),
                };
                if forward_to.send(msg).await.is_err() {
                    return;
                }
            }
        });
        crate::source::kinesis::start(&config.sources, prepared, &positions, tx)
    });
    let scheme = if config.ingest.tls_cert.is_some() { "https" } else { "http" };
    let ingest_url = bound.ingest.map_or("off".into(), |a| format!("{scheme}://{a}"));
    tracing::info!(ingest = %ingest_url, admin = %format!("http://{}", bound.admin), "listening");
    on_bound(bound);

    shutdown.await;
    let started = std::time::Instant::now();
    tracing::info!("shutting down: refusing new requests, finishing those in flight, draining");
    state.shutting_down.store(true, Ordering::Relaxed);
    // Requests in flight get half the budget; connections still open then are closed (their
    // requests, if already queued, are still applied and their ids kept, so retries dedup).
    let http_grace = config.shutdown_timeout / 2;
    ingest_handle.graceful_shutdown(Some(http_grace));
    if let Some(server) = ingest_server {
        let _ = tokio::time::timeout(http_grace + Duration::from_secs(1), server).await;
    }
    ticker.abort();
    if let Some(r) = reloader {
        r.abort();
    }
    // Kinesis consumers stop between calls; what they read is applied before they return, and
    // the final checkpoint below commits it (and releases the leases).
    if let Some(k) = kinesis_running {
        k.stop().await;
    }
    // Always finish the pipeline, however long it takes: what it holds was acknowledged. Its
    // work is bounded by the queue (`queue_requests` requests) and one checkpoint.
    let _ = pipeline_tx.send(PipelineMsg::Finish).await;
    drop(pipeline_tx);
    let stopped = tokio::task::spawn_blocking(move || {
        let result = pipeline.join().unwrap_or_else(|_| Err("the pipeline thread panicked".into()));
        engine_join.join();
        result
    })
    .await
    .unwrap_or_else(|e| Err(e.to_string()));
    // Export what closed during shutdown, within what is left of the budget.
    let exporter = consumer.await.ok().flatten();
    let left =
        config.shutdown_timeout.saturating_sub(started.elapsed()).max(Duration::from_secs(1));
    let _ = tokio::task::spawn_blocking(move || {
        if let Some(exporter) = exporter {
            exporter.finish(left);
        }
        telemetry.shutdown();
    })
    .await;
    admin_handle.graceful_shutdown(Some(Duration::from_secs(1)));
    let _ = admin_server.await;
    stopped?;
    let finished = started.elapsed() <= config.shutdown_timeout;
    if finished {
        tracing::info!("shut down cleanly");
        Ok(())
    } else {
        Err(format!(
            "shutdown took {:?}, longer than {:?} (nothing acknowledged was lost)",
            started.elapsed(),
            config.shutdown_timeout
        ))
    }
}
