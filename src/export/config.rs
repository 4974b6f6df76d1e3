//! Export configuration: the `[export]` table of `serve`'s configuration (and its flags). The doc
//! comments are the reference documentation.

use super::error::ExportError;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// OTLP transport.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum, schemars::JsonSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum OtlpProtocol {
    /// OTLP/gRPC (default port 4317).
    Grpc,
    /// OTLP/HTTP with protobuf bodies (default port 4318; `/v1/metrics` and `/v1/logs` are
    /// appended to the endpoint).
    Http,
}

/// Where and how closed windows and vpcflowd's own metrics are exported.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct ExportConfig {
    /// OTLP collector endpoint, e.g. `http://collector:4317` (gRPC) or `http://collector:4318`
    /// (HTTP). `https://` uses TLS. Unset: nothing is pushed; `/metrics` still serves
    /// everything.
    pub otlp_endpoint: Option<String>,
    /// `grpc` or `http` (HTTP/protobuf).
    pub otlp_protocol: OtlpProtocol,
    /// Extra headers (gRPC metadata) on every export, e.g. `{ "api-key" = "…" }` for a vendor's
    /// intake or `authorization = "Bearer …"`.
    pub otlp_headers: BTreeMap<String, String>,
    /// PEM CA bundle to verify the collector's certificate (default: the system's roots).
    pub otlp_ca_cert: Option<PathBuf>,
    /// PEM client certificate for mutual TLS (with `otlp_client_key`).
    pub otlp_client_cert: Option<PathBuf>,
    /// PEM private key of `otlp_client_cert`.
    pub otlp_client_key: Option<PathBuf>,
    /// Timeout of one export request.
    #[serde(with = "humantime_serde")]
    #[schemars(with = "crate::schema::HumanDuration")]
    pub otlp_timeout: Duration,
    /// Retries of a failed export request (exponential backoff with jitter, from 100 ms up to
    /// 5 s). A request still failing after them is counted in `vpcflowd.export.errors` and its
    /// data dropped (counted in `vpcflowd.export.points{outcome="dropped"}` and
    /// `vpcflowd.export.flow_logs{outcome="dropped"}`).
    pub otlp_max_retries: usize,
    /// How often vpcflowd's own metrics (ingest, engine, export) are pushed. Window measures
    /// are pushed when their window closes, not on this interval.
    #[serde(with = "humantime_serde")]
    #[schemars(with = "crate::schema::HumanDuration")]
    pub otlp_interval: Duration,
    /// Closed windows waiting for export. When the exporter falls behind (a slow or unreachable
    /// collector) and this is full, a newly closed window is dropped from export (counted in
    /// `vpcflowd.export.windows{outcome="dropped"}` and logged); ingest never waits for export.
    /// A queued window shares its snapshots with the JSON API's store, so a slot costs little.
    pub queue_windows: usize,
    /// Most metric data points in one export request. A window is sent as several requests,
    /// whole interfaces in each, so requests stay under collectors' size limits (the
    /// OpenTelemetry Collector accepts 4 MiB per gRPC message by default; a point is about
    /// 60–100 bytes).
    pub max_points_per_request: usize,
    /// OTel log records per interface and window for its largest flows (taken from the top
    /// flows of its listed sources, largest bytes first). `0` sends none;
    /// `top_sources × top_flows` sends every listed flow.
    pub flow_logs_per_interface: usize,
    /// `service.instance.id` resource attribute (default: the host name and process id).
    pub instance_id: Option<String>,
    /// `cloud.account.id` resource attribute: the account vpcflowd runs in (each point also
    /// carries the account of its interface's records when known).
    pub account_id: Option<String>,
    /// `cloud.region` resource attribute (default: the window settings' `region`).
    pub region: Option<String>,
}

impl Default for ExportConfig {
    fn default() -> Self {
        ExportConfig {
            otlp_endpoint: None,
            otlp_protocol: OtlpProtocol::Grpc,
            otlp_headers: BTreeMap::new(),
            otlp_ca_cert: None,
            otlp_client_cert: None,
            otlp_client_key: None,
            otlp_timeout: Duration::from_secs(10),
            otlp_max_retries: 3,
            otlp_interval: Duration::from_secs(30),
            queue_windows: 64,
            max_points_per_request: 20_000,
            flow_logs_per_interface: 10,
            instance_id: None,
            account_id: None,
            region: None,
        }
    }
}

impl ExportConfig {
    /// Checks what serde cannot.
    pub fn validate(&self) -> Result<(), ExportError> {
        if let Some(e) = &self.otlp_endpoint
            && !(e.starts_with("http://") || e.starts_with("https://"))
        {
            return Err(ExportError::EndpointScheme(e.clone()));
        }
        if self.otlp_client_cert.is_some() != self.otlp_client_key.is_some() {
            return Err(ExportError::ClientCertWithoutKey);
        }
        if self.queue_windows == 0 {
            return Err(ExportError::NoQueue);
        }
        if self.max_points_per_request < 100 {
            return Err(ExportError::RequestTooSmall);
        }
        for name in self.otlp_headers.keys() {
            if name.is_empty()
                || !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
            {
                return Err(ExportError::HeaderName(name.clone()));
            }
        }
        Ok(())
    }
}
