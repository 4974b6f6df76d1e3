//! The phases of [`super::run`]: bind the listeners, restore the state, start the engine and
//! its pipeline, start the listeners and sources, and shut everything down in order.
//!
//! Each phase is a function over the values the earlier phases produced, so the order that
//! shutdown depends on (stop taking requests, drain the pipeline, checkpoint, export, stop the
//! admin listener) is written in one place: [`Services::shut_down`].

use std::collections::BTreeMap;
use std::net::{SocketAddr, TcpListener};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_stream::StreamExt;
use tokio_stream::wrappers::ReceiverStream;

use super::config::ServeConfig;
use super::dedup::Dedup;
use super::error::{ConfigError, ServeError};
use super::history::History;
use super::http::ServeContext;
use super::listeners::{IngestLimits, serve_admin, serve_ingest};
use super::live::EventHub;
use super::pipeline::{self, IngestStats, PipelineMsg};
use super::store::SnapshotStore;
use super::{Bound, ec2, reload, restore, state_file, telemetry, wal};
use crate::decode::LayoutSet;
use crate::export::webhook::Webhook;
use crate::export::{ExportStats, ExporterOptions, WindowExporter};
use crate::source::kinesis::{self, Position, ShardKey, SourceMsg};
use crate::window::engine::{EngineCheckpoint, EngineJoin, EventRouter};
use crate::window::{Engine, EngineConfig, Snapshot};

fn bind(addr: SocketAddr, listener: &'static str) -> Result<TcpListener, ServeError> {
    let bound =
        TcpListener::bind(addr).map_err(|source| ServeError::Bind { listener, addr, source })?;
    bound.set_nonblocking(true).map_err(|source| ServeError::Listener { listener, source })?;
    Ok(bound)
}

/// The address `listener` is bound to.
fn address_of(bound: &TcpListener, listener: &'static str) -> Result<SocketAddr, ServeError> {
    bound.local_addr().map_err(|source| ServeError::Listener { listener, source })
}

/// What is read and bound before anything starts: a configuration that fails here starts
/// nothing.
pub(super) struct Listeners {
    ingest: Option<TcpListener>,
    admin: TcpListener,
    pub(super) bound: Bound,
    access_keys: Vec<String>,
    certificate: Option<reload::Certificate>,
    layouts: LayoutSet,
    engine_config: EngineConfig,
    ec2: Option<ec2::Enrichment>,
}

impl Listeners {
    /// Checks the configuration, loads the ingest listener's secrets and binds both listeners.
    pub(super) async fn bind(config: &ServeConfig) -> Result<Listeners, ServeError> {
        let ingest = config.ingest.enabled;
        let access_keys = match ingest {
            true => config.ingest.access_keys()?,
            false => Vec::new(),
        };
        if ingest && access_keys.is_empty() {
            tracing::warn!("no ingest access keys configured: every request is accepted");
        }
        config.export.validate()?;
        let layouts = LayoutSet::from_formats(&config.formats)
            .map_err(|source| ServeError::Formats { key: "formats", source })?;
        let mut engine_config = config
            .window
            .to_engine_config()
            .map_err(|e| ConfigError::Invalid(format!("window: {e}")))?;
        engine_config.thresholds = config.diagnosis.thresholds();
        engine_config.filters = config.filters.clone();
        engine_config.aws_ranges = config.enrich.load().map_err(ConfigError::Invalid)?;
        let ec2 = match &config.enrich.ec2 {
            Some(settings) => Some(
                ec2::Enrichment::prepare(settings, config.state.dir.as_deref())
                    .await
                    .map_err(ConfigError::Invalid)?,
            ),
            None => None,
        };
        engine_config.inventory = ec2.as_ref().map(ec2::Enrichment::inventory);
        let ingest_listener =
            if ingest { Some(bind(config.ingest.listen, "ingest")?) } else { None };
        let admin = bind(config.admin.listen, "admin")?;
        let bound = Bound {
            ingest: match &ingest_listener {
                Some(l) => Some(address_of(l, "ingest")?),
                None => None,
            },
            admin: address_of(&admin, "admin")?,
        };
        let certificate = match (&config.ingest.tls_cert, &config.ingest.tls_key) {
            (Some(cert), Some(key)) if ingest => {
                Some(reload::Certificate::load(cert.clone(), key.clone()).await?)
            }
            _ => None,
        };
        Ok(Listeners {
            ingest: ingest_listener,
            admin,
            bound,
            access_keys,
            certificate,
            layouts,
            engine_config,
            ec2,
        })
    }
}

/// What a restart continues from: the engine's state, the Kinesis positions and generation,
/// and the Kinesis clients and lease book.
struct Restored {
    engine: Option<EngineCheckpoint>,
    positions: BTreeMap<ShardKey, Position>,
    generation: u64,
    kinesis: Option<kinesis::Connections>,
    /// The ingest counts the state file holds.
    ingest: state_file::IngestCounts,
}

impl Restored {
    async fn load(
        config: &ServeConfig,
        engine_config: &EngineConfig,
        dedup: &Dedup,
    ) -> Result<Restored, ServeError> {
        let kinesis = match config.sources.kinesis.is_empty() {
            true => None,
            false => Some(kinesis::connect(&config.sources).await?),
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
                restore(dir, config, engine_config, dedup, committed)?
            }
            None => None,
        };
        let (engine, kinesis_state, ingest) = match restored {
            Some((engine, kinesis, ingest)) => (Some(engine), kinesis, ingest),
            None => (None, state_file::KinesisCheckpoint::default(), Default::default()),
        };
        let generation =
            kinesis_state.generation.max(book.as_ref().and_then(|b| b.generation()).unwrap_or(0));
        Ok(Restored {
            engine,
            positions: kinesis_state.positions.iter().cloned().collect(),
            generation,
            kinesis,
            ingest,
        })
    }
}

/// The engine and what feeds and drains it: the pipeline thread, the snapshot consumer and
/// the idle ticker.
struct Engineering {
    pipeline_tx: mpsc::Sender<PipelineMsg>,
    pipeline: std::thread::JoinHandle<Result<(), ServeError>>,
    engine_join: EngineJoin,
    consumer: JoinHandle<Outlets>,
    ticker: JoinHandle<()>,
}

/// Starts the pipeline thread that owns `router`.
fn start_pipeline(
    config: &ServeConfig,
    router: EventRouter,
    layouts: LayoutSet,
    restored: &Restored,
    parts: (Arc<IngestStats>, Arc<Dedup>, Arc<kinesis::KinesisStatus>, Option<Arc<History>>),
    queue: mpsc::Receiver<PipelineMsg>,
    replayed: tokio::sync::oneshot::Sender<()>,
) -> Result<std::thread::JoinHandle<Result<(), ServeError>>, ServeError> {
    let (stats, dedup, kinesis_status, history) = parts;
    let kinesis_layouts = config
        .sources
        .kinesis
        .iter()
        .map(|k| match k.formats.is_empty() {
            true => LayoutSet::from_formats(&config.formats),
            false => LayoutSet::from_formats(&k.formats),
        })
        .collect::<Result<Vec<_>, _>>()
        .map_err(|source| ServeError::Formats { key: "sources.kinesis formats", source })?;
    let mut p = pipeline::Pipeline {
        layouts,
        kinesis_layouts,
        positions: restored.positions.clone(),
        book: restored.kinesis.as_ref().and_then(|k| k.book.clone()),
        generation: restored.generation,
        kinesis: kinesis_status,
        stats,
        dedup,
        state_dir: config.state.dir.clone(),
        checkpoint_interval: config.state.checkpoint_interval,
        wal: None,
        history,
    };
    let mut logged = Vec::new();
    if let Some(dir) = &config.state.dir {
        // What was acknowledged after the restored state file is routed again first, on the
        // pipeline thread (the router blocks, which the runtime's threads must not).
        let recovered = wal::recover(dir, restored.generation)?;
        p.stats.wal_cut_bytes.fetch_add(recovered.cut_bytes, Ordering::Relaxed);
        if !recovered.entries.is_empty() {
            tracing::info!(
                requests = recovered.entries.len(),
                "replaying the requests acknowledged after the last state file"
            );
        }
        logged = recovered.entries;
        let syncer = wal::Syncer::start(p.stats.clone())
            .map_err(|source| ServeError::Spawn { thread: "write-ahead log sync", source })?;
        p.wal = Some((wal::Wal::open(dir, restored.generation)?, syncer));
    }
    std::thread::Builder::new()
        .name("vpcflowd-pipeline".into())
        .spawn(move || {
            let mut router = router;
            pipeline::replay_log(&mut router, &p, logged);
            let _ = replayed.send(());
            pipeline::run(router, p, queue)
        })
        .map_err(|source| ServeError::Spawn { thread: "pipeline", source })
}

/// Refills `store` from the state directory's history (before the log is replayed: the windows
/// it closes again go to the journal this starts).
fn restore_history(
    config: &ServeConfig,
    generation: u64,
    store: &Arc<SnapshotStore>,
) -> Result<Option<Arc<History>>, ServeError> {
    let Some(dir) = &config.state.dir else { return Ok(None) };
    let history = History::restore(dir, generation, store.clone())
        .map_err(|source| ServeError::StateDir { dir: dir.clone(), source })?;
    Ok(Some(Arc::new(history)))
}

/// Waits until the pipeline has routed what the write-ahead log holds, before anything is
/// served, so that the status and the API a client first sees already hold every acknowledged
/// request. A pipeline that stopped instead gives its error.
async fn replayed_log(
    pipeline: std::thread::JoinHandle<Result<(), ServeError>>,
    replay_done: tokio::sync::oneshot::Receiver<()>,
) -> Result<std::thread::JoinHandle<Result<(), ServeError>>, ServeError> {
    if replay_done.await.is_ok() {
        return Ok(pipeline);
    }
    Err(pipeline
        .join()
        .ok()
        .and_then(Result::err)
        .unwrap_or(ServeError::Thread("pipeline", "stopped while replaying the write-ahead log")))
}

/// Where closed windows go besides the store: the OTLP exporter and the findings webhook.
#[derive(Default)]
struct Outlets {
    exporter: Option<WindowExporter>,
    webhook: Option<Webhook>,
}

impl Outlets {
    /// Starts the exporter and the webhook that `config` asks for.
    fn start(config: &ServeConfig, stats: &Arc<ExportStats>) -> Result<Outlets, ServeError> {
        Ok(Outlets {
            exporter: start_exporter(config, stats.clone())?,
            webhook: Webhook::start(&config.alerts, stats.clone())?,
        })
    }
}

/// Hands each closed batch to the store (the API), to standard output if asked, to the
/// exporter, and the findings the store raises to the webhook; it returns the outlets at the end
/// for their last flush.
fn start_snapshot_consumer(
    snapshots: mpsc::Receiver<Vec<Snapshot>>,
    (store, events, history): (Arc<SnapshotStore>, Arc<EventHub>, Option<Arc<History>>),
    print: bool,
    outlets: Outlets,
) -> JoinHandle<Outlets> {
    tokio::spawn(async move {
        use tokio::io::AsyncWriteExt;
        let mut stdout = tokio::io::stdout();
        let mut stream = ReceiverStream::new(snapshots);
        while let Some(batch) = stream.next().await {
            let batch: Vec<Arc<Snapshot>> = batch.into_iter().map(Arc::new).collect();
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
            if let Some(exporter) = &outlets.exporter {
                exporter.offer(&batch);
            }
            let raised = store.insert(batch.clone());
            if let Some(history) = &history {
                // The append syncs a file, and waits while a checkpoint writes a base: off the
                // runtime's workers, which serve ingest. Awaiting it keeps the journal in order.
                let (journal, appended) = (history.clone(), batch.clone());
                let journaled = tokio::task::spawn_blocking(move || journal.append(&appended));
                if let Err(e) = journaled.await {
                    history.stats.failures.fetch_add(1, Ordering::Relaxed);
                    tracing::error!("appending closed windows to the history journal: {e}");
                }
            }
            events.publish_batch(&batch, &raised);
            if let Some(webhook) = &outlets.webhook {
                webhook.offer(&raised);
            }
        }
        outlets
    })
}

/// Watches the ingest listener's certificate and access-key files when the listener is on.
fn start_reloader(
    config: &ServeConfig,
    certificate: Option<reload::Certificate>,
    keys: Arc<reload::AccessKeys>,
    state: &ServeContext,
) -> Option<JoinHandle<()>> {
    let reloader = reload::Reloader {
        ingest: config.ingest.clone(),
        certificate,
        keys,
        stats: state.stats.clone(),
    };
    config.ingest.enabled.then(|| reloader.spawn()).flatten()
}

/// Wakes an idle pipeline every second for its timed work; never waits for a queue slot.
fn start_ticker(pipeline: mpsc::Sender<PipelineMsg>) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        loop {
            tick.tick().await;
            if let Err(mpsc::error::TrySendError::Closed(_)) = pipeline.try_send(PipelineMsg::Wake)
            {
                return;
            }
        }
    })
}

/// Starts the OTLP window exporter when an endpoint is configured.
fn start_exporter(
    config: &ServeConfig,
    stats: Arc<ExportStats>,
) -> Result<Option<WindowExporter>, ServeError> {
    let Some(endpoint) = &config.export.otlp_endpoint else { return Ok(None) };
    let options = ExporterOptions {
        default_region: config.window.region.clone(),
        top_sources: config.window.top_sources,
        top_destinations: config.window.top_destinations,
        runtime: None,
    };
    let exporter = WindowExporter::start(&config.export, &options, stats)?;
    tracing::info!(%endpoint, protocol = ?config.export.otlp_protocol, "exporting closed windows over OTLP");
    Ok(Some(exporter))
}

/// Everything `serve` runs, from the engine to the listeners, until [`Services::shut_down`].
pub(super) struct Services {
    config: ServeConfig,
    state: Arc<ServeContext>,
    engine: Engineering,
    telemetry: telemetry::Telemetry,
    reloader: Option<JoinHandle<()>>,
    ingest_handle: axum_server::Handle<SocketAddr>,
    admin_handle: axum_server::Handle<SocketAddr>,
    ingest_server: Option<JoinHandle<std::io::Result<()>>>,
    admin_server: JoinHandle<std::io::Result<()>>,
    kinesis: Option<kinesis::RunningSources>,
    /// The EC2 enrichment's task (`[enrich.ec2]`).
    ec2: Option<JoinHandle<()>>,
}

impl Services {
    /// Restores the state, starts the engine, the pipeline, the exporters, the listeners and
    /// the Kinesis sources.
    pub(super) async fn start(
        config: ServeConfig,
        listeners: Listeners,
    ) -> Result<Services, ServeError> {
        let Listeners {
            ingest,
            admin,
            bound,
            access_keys,
            certificate,
            layouts,
            engine_config,
            ec2,
        } = listeners;
        let dedup = Arc::new(Dedup::new(config.ingest.dedup_ttl, config.ingest.dedup_max_entries));
        let mut restored = Restored::load(&config, &engine_config, &dedup).await?;
        let engine = Engine::start_from(engine_config, restored.engine.take());
        let engine_stats = engine.stats.clone();
        let open = engine.open.clone();
        let (router, snapshots, engine_join) = engine.into_parts();
        let store = Arc::new(SnapshotStore::new(config.admin.history));
        let history = restore_history(&config, restored.generation, &store)?;
        let export_stats = Arc::new(ExportStats::default());
        let outlets = Outlets::start(&config, &export_stats)?;
        let stats = Arc::new(IngestStats::default());
        stats.restore(&restored.ingest);
        let kinesis_status =
            restored.kinesis.as_ref().map_or_else(Arc::default, |k| k.status.clone());
        let (pipeline_tx, pipeline_rx) = mpsc::channel(config.ingest.queue_requests);
        let firehose_layouts = Arc::new(layouts.clone());
        let parts = (stats.clone(), dedup.clone(), kinesis_status.clone(), history.clone());
        let (replayed, replay_done) = tokio::sync::oneshot::channel();
        let pipeline =
            start_pipeline(&config, router, layouts, &restored, parts, pipeline_rx, replayed)?;
        let pipeline = replayed_log(pipeline, replay_done).await?;
        let events = Arc::new(EventHub::new());
        let feeds = (store.clone(), events.clone(), history.clone());
        let consumer = start_snapshot_consumer(snapshots, feeds, config.print_snapshots, outlets);
        let ticker = start_ticker(pipeline_tx.clone());
        let engine = Engineering { pipeline_tx, pipeline, engine_join, consumer, ticker };

        let registry = prometheus::Registry::new();
        let access_keys = Arc::new(reload::AccessKeys::new(access_keys));
        let state = Arc::new(ServeContext {
            access_keys: access_keys.clone(),
            max_body_bytes: config.ingest.max_body_bytes,
            max_decompressed_bytes: config.ingest.max_decompressed_bytes,
            body_read_timeout: config.ingest.body_read_timeout,
            layouts: firehose_layouts,
            dedup,
            pipeline: engine.pipeline_tx.clone(),
            write_ahead: config.state.dir.is_some(),
            shutting_down: Default::default(),
            stats,
            engine: engine_stats,
            store,
            export: export_stats,
            kinesis: kinesis_status,
            registry: registry.clone(),
            open,
            events,
            ec2: ec2.as_ref().map_or_else(Arc::default, |e| e.status.clone()),
            history: history.as_ref().map_or_else(Arc::default, |h| h.stats.clone()),
        });
        let ec2 = ec2.map(ec2::Enrichment::start);
        let region = config.window.region.as_deref();
        let telemetry =
            telemetry::Telemetry::start(&config.export, region, &registry, state.clone())?;
        let tls = certificate.as_ref().map(|c| c.config.clone());
        let reloader = start_reloader(&config, certificate, access_keys, &state);
        let ingest_handle = axum_server::Handle::new();
        let admin_handle = axum_server::Handle::new();
        let limits = IngestLimits::of(&config, &state);
        let ingest_server =
            ingest.map(|l| serve_ingest(l, tls, ingest_handle.clone(), &state, limits));
        let admin_server = serve_admin(admin, admin_handle.clone(), &state);
        let kinesis = restored.kinesis.as_ref().map(|connections| {
            let sink = forward_to_pipeline(engine.pipeline_tx.clone());
            kinesis::start(&config.sources, connections, &restored.positions, sink)
        });
        let scheme = if config.ingest.tls_cert.is_some() { "https" } else { "http" };
        let ingest_url = bound.ingest.map_or("off".into(), |a| format!("{scheme}://{a}"));
        tracing::info!(ingest = %ingest_url, admin = %format!("http://{}", bound.admin), "listening");
        Ok(Services {
            config,
            state,
            engine,
            telemetry,
            reloader,
            ingest_handle,
            admin_handle,
            ingest_server,
            admin_server,
            kinesis,
            ec2,
        })
    }

    /// Stops taking requests, finishes those in flight, drains the pipeline (which writes the
    /// last checkpoint, or closes every window without a state directory), exports what closed
    /// and stops the admin listener. An error says what could not be finished in time.
    pub(super) async fn shut_down(self) -> Result<(), ServeError> {
        let Services { config, state, engine, telemetry, reloader, .. } = self;
        let started = std::time::Instant::now();
        tracing::info!("shutting down: refusing new requests, finishing those in flight, draining");
        state.shutting_down.store(true, Ordering::Relaxed);
        state.events.close();
        // Requests in flight get half the budget; connections still open then are closed (their
        // requests, if already queued, are still applied and their ids kept, so retries dedup).
        let http_grace = config.shutdown_timeout / 2;
        self.ingest_handle.graceful_shutdown(Some(http_grace));
        if let Some(server) = self.ingest_server {
            let _ = tokio::time::timeout(http_grace + Duration::from_secs(1), server).await;
        }
        engine.ticker.abort();
        if let Some(task) = self.ec2 {
            task.abort();
        }
        if let Some(r) = reloader {
            r.abort();
        }
        // Kinesis consumers stop between calls; what they read is applied before they return,
        // and the final checkpoint below commits it (and releases the leases).
        if let Some(k) = self.kinesis {
            k.stop().await;
        }
        // Always finish the pipeline, however long it takes: what it holds was acknowledged.
        // Its work is bounded by the queue (`queue_requests` requests) and one checkpoint.
        let _ = engine.pipeline_tx.send(PipelineMsg::Finish).await;
        drop(engine.pipeline_tx);
        drop(state);
        let (pipeline, engine_join) = (engine.pipeline, engine.engine_join);
        let stopped = tokio::task::spawn_blocking(move || {
            let result = match pipeline.join() {
                Ok(finished) => finished,
                Err(_) => Err(ServeError::Thread("pipeline", "panicked")),
            };
            engine_join.join();
            result
        })
        .await
        .unwrap_or_else(|e| Err(ServeError::Stopped(e.to_string())));
        // Export what closed during shutdown, within what is left of the budget.
        let Outlets { exporter, webhook } = engine.consumer.await.unwrap_or_default();
        let left =
            config.shutdown_timeout.saturating_sub(started.elapsed()).max(Duration::from_secs(1));
        if let Some(webhook) = webhook {
            webhook.finish(left / 2).await;
        }
        let _ = tokio::task::spawn_blocking(move || {
            if let Some(exporter) = exporter {
                exporter.finish(left);
            }
            telemetry.shutdown();
        })
        .await;
        self.admin_handle.graceful_shutdown(Some(Duration::from_secs(1)));
        let _ = self.admin_server.await;
        stopped?;
        if started.elapsed() <= config.shutdown_timeout {
            tracing::info!("shut down cleanly");
            Ok(())
        } else {
            Err(ServeError::SlowShutdown {
                took: started.elapsed(),
                budget: config.shutdown_timeout,
            })
        }
    }
}

/// A sink for the Kinesis sources whose messages a task forwards into the pipeline queue,
/// waiting for room: backpressure on the consumers, never a 503.
fn forward_to_pipeline(pipeline: mpsc::Sender<PipelineMsg>) -> mpsc::Sender<SourceMsg> {
    let (tx, mut rx) = mpsc::channel::<SourceMsg>(1);
    tokio::spawn(async move {
        while let Some(msg) = rx.recv().await {
            let msg = match msg {
                SourceMsg::Batch(b) => PipelineMsg::Kinesis(b),
                SourceMsg::Checkpoint(reply) => PipelineMsg::Checkpoint(reply),
            };
            if pipeline.send(msg).await.is_err() {
                return;
            }
        }
    });
    tx
}
