//! The live view: `GET /` on the admin listener serves a page, and `/live/…` its script and
//! style, all compiled into the binary (`assets/live/`), so it works air-gapped.
//!
//! The page is plain HTML, CSS and JavaScript with its charts drawn as SVG: no framework, no
//! build step, nothing fetched from another host. Every response carries a
//! `Content-Security-Policy` that allows only this origin, so a browser refuses anything else
//! the page might ask for.

use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};

const INDEX: &str = include_str!("../../assets/live/index.html");
const SCRIPT: &str = include_str!("../../assets/live/app.js");
const STYLE: &str = include_str!("../../assets/live/style.css");

/// Only this origin: scripts, styles, fetches and the event stream.
const POLICY: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
    connect-src 'self'; img-src 'self' data:; base-uri 'none'; form-action 'none'; \
    frame-ancestors 'none'";

fn asset(body: &'static str, content_type: &'static str) -> Response {
    let mut response = body.into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    headers.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(POLICY));
    headers.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    headers.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    // The binary is the version: a restart with a new one must not be served a stale script.
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    response
}

/// `GET /`.
pub(super) async fn index() -> Response {
    asset(INDEX, "text/html; charset=utf-8")
}

/// `GET /live/app.js`.
pub(super) async fn script() -> Response {
    asset(SCRIPT, "text/javascript; charset=utf-8")
}

/// `GET /live/style.css`.
pub(super) async fn style() -> Response {
    asset(STYLE, "text/css; charset=utf-8")
}
