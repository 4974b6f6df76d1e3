//! The two HTTP listeners' routes: the Firehose ingest endpoint and the admin API.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use axum::Json;
use axum::body::{Body, to_bytes};
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get};
use serde::Deserialize;
use tokio::sync::{mpsc, oneshot};

use super::dedup::{Claim, Dedup};
use super::pipeline::{IngestJob, IngestStats, JobRecords, PipelineMsg};
use super::request::ParsedRequest;
use super::store::SnapshotStore;
use crate::decode::LayoutSet;
use crate::export::ExportStats;
use crate::source::firehose::{self, RequestError, respond};
use crate::window::EngineStats;

/// What the handlers share.
pub struct ServeContext {
    /// The accepted access keys, swapped by `serve::reload` when their file changes.
    pub access_keys: Arc<super::reload::AccessKeys>,
    pub max_body_bytes: usize,
    pub max_decompressed_bytes: usize,
    /// How long a request's body may take to arrive.
    pub body_read_timeout: std::time::Duration,
    /// The formats Firehose records are parsed under.
    pub layouts: Arc<LayoutSet>,
    pub dedup: Arc<Dedup>,
    pub pipeline: mpsc::Sender<PipelineMsg>,
    /// Whether requests go to the write-ahead log (with a state directory): they are then
    /// encoded for it here, in parallel, rather than on the pipeline thread.
    pub write_ahead: bool,
    /// Set at SIGTERM/SIGINT: new requests are answered 503, `/readyz` fails.
    pub shutting_down: AtomicBool,
    pub stats: Arc<IngestStats>,
    pub engine: Arc<EngineStats>,
    pub store: Arc<SnapshotStore>,
    pub export: Arc<ExportStats>,
    /// Kinesis shards and counters (empty without Kinesis sources).
    pub kinesis: Arc<crate::source::kinesis::KinesisStatus>,
    /// What `/metrics` renders: the latest window's measures and the self-metrics.
    pub registry: prometheus::Registry,
    /// The provisional totals of the windows still open.
    pub open: crate::window::engine::OpenWindows,
    /// The live feed (`/api/v1/events`).
    pub events: Arc<super::live::EventHub>,
    /// The EC2 enrichment's inventory and counters (empty without `[enrich.ec2]`).
    pub ec2: Arc<super::ec2::Ec2Status>,
    /// The snapshot store's journal (zeros without a state directory).
    pub history: Arc<super::history::HistoryStats>,
}

/// The ingest listener: Firehose POSTs to the configured URL (any path); load balancers and
/// Firehose's own checks GET or HEAD it.
pub(crate) fn ingest_router(state: Arc<ServeContext>) -> axum::Router {
    axum::Router::new().route("/", any(ingest)).fallback(ingest).with_state(state)
}

async fn ingest(
    State(state): State<Arc<ServeContext>>,
    method: Method,
    headers: HeaderMap,
    body: Body,
) -> Response {
    if method == Method::GET || method == Method::HEAD {
        state.stats.count_response(200);
        return StatusCode::OK.into_response();
    }
    let header_id = firehose::header_request_id(&headers);
    if method != Method::POST {
        state.stats.count_response(405);
        return respond(
            StatusCode::METHOD_NOT_ALLOWED,
            &header_id,
            Some(format!("{method} is not supported")),
        );
    }
    match handle(&state, &headers, &header_id, body).await {
        Ok(id) => {
            state.stats.count_response(200);
            respond(StatusCode::OK, &id, None)
        }
        Err((id, e)) => {
            let status = e.status();
            state.stats.count_response(status.as_u16());
            tracing::debug!(%status, request_id = %id, error = %e, "request refused");
            respond(status, if id.is_empty() { &header_id } else { &id }, Some(e.to_string()))
        }
    }
}

/// Accepts one request; returns its id, or the id and why it was refused.
async fn handle(
    state: &ServeContext,
    headers: &HeaderMap,
    header_id: &str,
    body: Body,
) -> Result<String, (String, RequestError)> {
    let fail = |e: RequestError| (header_id.to_string(), e);
    if state.shutting_down.load(Ordering::Relaxed) {
        return Err(fail(RequestError::Unavailable("shutting down")));
    }
    firehose::check_access_key(headers, &state.access_keys.get()).map_err(fail)?;
    firehose::check_protocol_version(headers).map_err(fail)?;
    let read = tokio::time::timeout(state.body_read_timeout, to_bytes(body, state.max_body_bytes));
    let Ok(read) = read.await else {
        state.stats.slow_bodies.fetch_add(1, Ordering::Relaxed);
        return Err(fail(RequestError::SlowBody(state.body_read_timeout)));
    };
    let sent = read.map_err(|e| {
        // The only error with a limit in play is the limit (or a broken connection).
        fail(RequestError::TooLarge(format!("body over {} bytes ({e})", state.max_body_bytes)))
    })?;
    let decoded =
        firehose::decode_body(headers, &sent, state.max_decompressed_bytes).map_err(fail)?;
    let request = firehose::decode_request(&decoded).map_err(fail)?;
    drop(decoded);
    let id = request.request_id.clone();
    let now = crate::clock::unix_millis();
    match state.dedup.claim(&id, now) {
        Claim::Applied => return Ok(id),
        Claim::InFlight => {
            return Err((id, RequestError::Unavailable("the same request id is being applied")));
        }
        Claim::New => {}
    }
    // A queue slot first, so that a full queue is a 503 before any parsing, and the requests
    // held (queued or being parsed) stay bounded by the queue's size.
    let Ok(slot) = state.pipeline.try_reserve() else {
        state.dedup.abandon(&id);
        return Err((id, RequestError::Unavailable("ingest queue full, retry later")));
    };
    let (account, region) = firehose::common_attributes(headers);
    // Parsed here, on the HTTP workers, in parallel: the pipeline thread only routes. Records
    // whose lines outgrow the body limit (gzip'd CloudWatch payloads) are left to the pipeline,
    // which parses them a line at a time instead of holding them all parsed.
    let bytes = request.data.len();
    let (account_or, region_or) = (account.as_deref(), region.as_deref());
    // The write-ahead log keeps the body as sent (compressed, if it was): a copy, here in
    // parallel, and the least to write.
    let arrival_ms = now;
    let logged = state.write_ahead.then(|| {
        let encoding =
            headers.get(axum::http::header::CONTENT_ENCODING).and_then(|v| v.to_str().ok());
        let sent = super::wal::SentRequest {
            body: &sent,
            encoding,
            account: account_or,
            region: region_or,
        };
        super::wal::encode_entry(&id, arrival_ms, &sent)
    });
    let limit = state.max_decompressed_bytes;
    let records =
        match ParsedRequest::prepare(&request, &state.layouts, account_or, region_or, limit) {
            Some(parsed) => JobRecords::Parsed(parsed),
            None => JobRecords::Raw { request, account, region },
        };
    let (reply, outcome) = oneshot::channel();
    let job = IngestJob { request_id: id.clone(), bytes, records, arrival_ms, logged, reply };
    slot.send(PipelineMsg::Job(job));
    match outcome.await {
        // The pipeline marked the id applied before answering.
        Ok(_) => Ok(id),
        Err(_) => {
            state.dedup.abandon(&id);
            Err((id, RequestError::Unavailable("engine stopped")))
        }
    }
}

/// The admin listener's routes.
pub(crate) fn admin_router(state: Arc<ServeContext>) -> axum::Router {
    axum::Router::new()
        .route("/", get(super::page::index))
        .route("/live/app.js", get(super::page::script))
        .route("/live/style.css", get(super::page::style))
        .route("/api/v1/events", get(super::live::events))
        .route("/api/v1/open", get(super::live::open_all))
        .route("/api/v1/interfaces/{id}/open", get(super::live::open_interface))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .route("/api/v1/snapshots/latest", get(latest))
        .route("/api/v1/interfaces", get(interfaces))
        .route("/api/v1/interfaces/{id}/snapshots", get(interface_snapshots))
        .route("/api/v1/findings", get(findings))
        .route("/api/v1/rollups/{kind}", get(super::rollups::list))
        .route("/api/v1/rollups/{kind}/{id}", get(super::rollups::one))
        .route("/api/v1/status", get(status))
        .route("/metrics", get(metrics))
        .with_state(state)
}

async fn readyz(State(state): State<Arc<ServeContext>>) -> Response {
    if state.shutting_down.load(Ordering::Relaxed) {
        (StatusCode::SERVICE_UNAVAILABLE, "shutting down\n").into_response()
    } else {
        (StatusCode::OK, "ready\n").into_response()
    }
}

/// The Prometheus scrape endpoint. Rendering walks every series of the latest window, so it
/// runs on a blocking thread.
async fn metrics(State(state): State<Arc<ServeContext>>) -> Response {
    let registry = state.registry.clone();
    let latest = state.store.latest();
    match tokio::task::spawn_blocking(move || crate::export::prometheus::render(&registry, &latest))
        .await
    {
        Ok(Ok(text)) => {
            ([(axum::http::header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")], text)
                .into_response()
        }
        Ok(Err(e)) => (StatusCode::INTERNAL_SERVER_ERROR, format!("{e}\n")).into_response(),
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, format!("{e}\n")).into_response(),
    }
}

async fn latest(State(state): State<Arc<ServeContext>>) -> Response {
    Json(state.store.latest()).into_response()
}

async fn interfaces(State(state): State<Arc<ServeContext>>) -> Response {
    Json(state.store.interfaces()).into_response()
}

#[derive(Deserialize)]
struct Limit {
    limit: Option<usize>,
}

async fn interface_snapshots(
    State(state): State<Arc<ServeContext>>,
    Path(id): Path<String>,
    Query(q): Query<Limit>,
) -> Response {
    match state.store.interface(&id, q.limit.unwrap_or(usize::MAX)) {
        Some(snapshots) => Json(snapshots).into_response(),
        None => (
            StatusCode::NOT_FOUND,
            Json(serde_json::json!({"error": format!("unknown interface {id}")})),
        )
            .into_response(),
    }
}

/// `GET /api/v1/findings?since=&kind=&interface=&limit=`: the newest findings first.
async fn findings(
    State(state): State<Arc<ServeContext>>,
    Query(q): Query<super::store::FindingQuery>,
) -> Response {
    Json(state.store.findings(&q)).into_response()
}

/// `GET /api/v1/status`: every counter of the server ([`super::status::StatusReport`]).
async fn status(State(state): State<Arc<ServeContext>>) -> Response {
    // Through a `Value`, whose maps are sorted, so the keys come out in the order they always
    // have (alphabetical), not in the structs' field order.
    let report = serde_json::to_value(super::status::StatusReport::read(&state));
    Json(report.unwrap_or_default()).into_response()
}
