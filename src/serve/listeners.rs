//! Serving the listeners: the ingest listener (TLS, the header timeout, the connection bound)
//! and the admin listener.

use std::net::{SocketAddr, TcpListener};
use std::sync::Arc;
use std::time::Duration;

use tokio::task::JoinHandle;

use super::config::ServeConfig;
use super::connections::{ConnectionLimit, HeaderWatch};
use super::http::ServeContext;
use super::pipeline::IngestStats;

/// Closes an HTTP/1 connection whose request headers take longer than `timeout` (hyper applies
/// a header timeout only with a timer).
fn limit_header_time(
    builder: &mut hyper_util::server::conn::auto::Builder<hyper_util::rt::TokioExecutor>,
    timeout: Duration,
) {
    builder.http1().timer(hyper_util::rt::TokioTimer::new()).header_read_timeout(timeout);
}

/// What bounds the ingest listener's clients.
pub(super) struct IngestLimits {
    header_read_timeout: Duration,
    connections: ConnectionLimit,
    stats: Arc<IngestStats>,
}

impl IngestLimits {
    pub(super) fn of(config: &ServeConfig, state: &ServeContext) -> IngestLimits {
        IngestLimits {
            header_read_timeout: config.ingest.header_read_timeout,
            connections: ConnectionLimit::new(config.ingest.max_connections, state.stats.clone()),
            stats: state.stats.clone(),
        }
    }
}

/// Serves the Firehose endpoint on `listener`, over TLS when `tls` is set.
pub(super) fn serve_ingest(
    listener: TcpListener,
    tls: Option<axum_server::tls_rustls::RustlsConfig>,
    handle: axum_server::Handle<SocketAddr>,
    state: &Arc<ServeContext>,
    limits: IngestLimits,
) -> JoinHandle<std::io::Result<()>> {
    let app = super::http::ingest_router(state.clone()).into_make_service();
    let IngestLimits { header_read_timeout, connections, stats } = limits;
    tokio::spawn(async move {
        // The header watch wraps TLS, so that it reads the requests' plain bytes.
        match tls {
            Some(tls) => {
                let server = axum_server::from_tcp_rustls(listener, tls)?;
                let mut server =
                    server.map(|tls| HeaderWatch::new(tls.acceptor(connections), stats));
                limit_header_time(server.http_builder(), header_read_timeout);
                server.handle(handle).serve(app).await
            }
            None => {
                let mut server =
                    axum_server::from_tcp(listener)?.acceptor(HeaderWatch::new(connections, stats));
                limit_header_time(server.http_builder(), header_read_timeout);
                server.handle(handle).serve(app).await
            }
        }
    })
}

/// Serves the admin API, `/metrics` and the health checks on `listener`.
pub(super) fn serve_admin(
    listener: TcpListener,
    handle: axum_server::Handle<SocketAddr>,
    state: &Arc<ServeContext>,
) -> JoinHandle<std::io::Result<()>> {
    let app = super::http::admin_router(state.clone()).into_make_service();
    tokio::spawn(async move { axum_server::from_tcp(listener)?.handle(handle).serve(app).await })
}
