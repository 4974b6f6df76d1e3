//! `GET /api/v1/rollups/{kind}` and `GET /api/v1/rollups/{kind}/{id}`: the newest closed
//! window's interfaces summed by `region`, `account`, `vpc` or `subnet` (see
//! [`crate::window::rollup`]).

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

use super::http::ServeContext;
use crate::window::rollup::{RollupKind, rollups};

fn unknown_kind(kind: &str) -> Response {
    let message = format!("no roll-up kind {kind:?}: region, account, vpc or subnet\n");
    (StatusCode::NOT_FOUND, message).into_response()
}

/// Every roll-up of `kind`, by bytes.
pub(super) async fn list(
    State(state): State<Arc<ServeContext>>,
    Path(kind): Path<String>,
) -> Response {
    let Some(k) = RollupKind::parse(&kind) else { return unknown_kind(&kind) };
    axum::Json(rollups(k, &state.store.latest())).into_response()
}

/// The roll-up of `kind` named `id`.
pub(super) async fn one(
    State(state): State<Arc<ServeContext>>,
    Path((kind, id)): Path<(String, String)>,
) -> Response {
    let Some(k) = RollupKind::parse(&kind) else { return unknown_kind(&kind) };
    match rollups(k, &state.store.latest()).into_iter().find(|r| *r.id == *id) {
        Some(r) => axum::Json(r).into_response(),
        None => (StatusCode::NOT_FOUND, format!("no {kind} {id:?} in the newest window\n"))
            .into_response(),
    }
}
