//! [`ExportError`]: why an exporter could not be configured or started, or why one window's
//! export failed.

use std::path::PathBuf;

/// What went wrong in `export`. Each message names the configuration key at fault.
#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    /// `export.otlp_endpoint` is not an `http://` or `https://` URL.
    #[error("export.otlp_endpoint {0:?} must start with http:// or https://")]
    EndpointScheme(String),
    /// An exporter was asked for without `export.otlp_endpoint`.
    #[error("export.otlp_endpoint is not set")]
    NoEndpoint,
    /// A configured header name is not one.
    #[error("export.otlp_headers: {0:?} is not a header name")]
    HeaderName(String),
    /// A configured header cannot be sent as gRPC metadata.
    #[error("export.otlp_headers {name:?}: {reason}")]
    Metadata { name: String, reason: String },
    /// Only one of the client certificate and its key is configured.
    #[error("export.otlp_client_cert and export.otlp_client_key go together")]
    ClientCertWithoutKey,
    /// `export.queue_windows` is 0.
    #[error("export.queue_windows must be at least 1")]
    NoQueue,
    /// `export.max_points_per_request` is below 100.
    #[error("export.max_points_per_request must be at least 100")]
    RequestTooSmall,
    /// OTLP over gRPC was configured with no Tokio runtime to run it on.
    #[error("export: OTLP/gRPC needs a Tokio runtime")]
    NoRuntime,
    /// A certificate or key file could not be read.
    #[error("export.{key} {}: {source}", path.display())]
    ReadFile {
        key: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A certificate or key file could be read but not used.
    #[error("export.{key}: {source}")]
    Tls {
        key: &'static str,
        #[source]
        source: reqwest::Error,
    },
    /// The HTTP client for OTLP/HTTP could not be built.
    #[error("export: HTTP client: {0}")]
    HttpClient(#[source] reqwest::Error),
    /// The SDK refused to build an exporter.
    #[error("export: OTLP {signal} exporter: {source}")]
    Exporter {
        signal: &'static str,
        #[source]
        source: opentelemetry_otlp::ExporterBuildError,
    },
    /// The Prometheus exporter could not be registered.
    #[error("prometheus exporter: {0}")]
    Prometheus(#[source] opentelemetry_sdk::error::OTelSdkError),
    /// An export thread could not be started, stopped before it was ready, or panicked.
    #[error("{0}")]
    Thread(&'static str),
    /// The export thread could not be started (the system's reason).
    #[error("cannot start the export thread: {0}")]
    Spawn(#[source] std::io::Error),
    /// An OTLP request failed after the SDK's retries.
    #[error("OTLP {signal} export: {message}")]
    Request { signal: &'static str, message: String },
    /// Rendering the latest window as Prometheus text failed.
    #[error("{0}")]
    Render(#[from] prometheus::Error),
}
