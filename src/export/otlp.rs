//! This module builds the OpenTelemetry SDK's OTLP exporters from [`ExportConfig`]: transport,
//! endpoint, headers, TLS, timeout, retries, and the resource every signal carries.
//!
//! The gRPC exporter must be built inside a Tokio runtime (tonic spawns its connection task
//! there); the HTTP exporter uses a blocking client and must be used off the runtime. Both are
//! driven from plain threads (the SDK's periodic reader, our export worker).

use std::collections::HashMap;
use std::time::Duration;

use opentelemetry::KeyValue;
use opentelemetry_otlp::{
    LogExporter, MetricExporter, RetryPolicy, WithExportConfig, WithHttpConfig, WithTonicConfig,
};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::metrics::Temporality;

use super::config::{ExportConfig, OtlpProtocol};
use super::error::ExportError;

/// The resource of every exported signal: `service.*` and `cloud.*`.
pub(crate) fn resource(config: &ExportConfig, default_region: Option<&str>) -> Resource {
    let instance = config.instance_id.clone().unwrap_or_else(|| {
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
            .map(|h| h.trim().to_string())
            .unwrap_or_else(|_| "localhost".into());
        format!("{host}-{}", std::process::id())
    });
    let mut attributes = vec![
        KeyValue::new("service.version", env!("CARGO_PKG_VERSION")),
        KeyValue::new("service.instance.id", instance),
        KeyValue::new("cloud.provider", "aws"),
    ];
    if let Some(region) = config.region.as_deref().or(default_region) {
        attributes.push(KeyValue::new("cloud.region", region.to_string()));
    }
    if let Some(account) = &config.account_id {
        attributes.push(KeyValue::new("cloud.account.id", account.clone()));
    }
    Resource::builder_empty().with_service_name("vpcflowd").with_attributes(attributes).build()
}

fn retry(config: &ExportConfig) -> RetryPolicy {
    RetryPolicy::recommended()
        .with_max_retries(config.otlp_max_retries)
        .with_initial_delay(Duration::from_millis(100))
        .with_max_delay(Duration::from_secs(5))
}

fn read(path: &std::path::Path, key: &'static str) -> Result<Vec<u8>, ExportError> {
    std::fs::read(path).map_err(|source| ExportError::ReadFile { key, path: path.into(), source })
}

fn tonic_tls(
    config: &ExportConfig,
) -> Result<Option<opentelemetry_otlp::tonic_types::transport::ClientTlsConfig>, ExportError> {
    use opentelemetry_otlp::tonic_types::transport::{Certificate, ClientTlsConfig, Identity};
    let endpoint = config.otlp_endpoint.as_deref().unwrap_or_default();
    if !endpoint.starts_with("https://") {
        return Ok(None);
    }
    let mut tls = ClientTlsConfig::new();
    tls = match &config.otlp_ca_cert {
        Some(ca) => tls.ca_certificate(Certificate::from_pem(read(ca, "otlp_ca_cert")?)),
        None => tls.with_native_roots(),
    };
    if let (Some(cert), Some(key)) = (&config.otlp_client_cert, &config.otlp_client_key) {
        tls = tls.identity(Identity::from_pem(
            read(cert, "otlp_client_cert")?,
            read(key, "otlp_client_key")?,
        ));
    }
    Ok(Some(tls))
}

fn metadata(
    config: &ExportConfig,
) -> Result<opentelemetry_otlp::tonic_types::metadata::MetadataMap, ExportError> {
    use std::str::FromStr;
    let mut map = opentelemetry_otlp::tonic_types::metadata::MetadataMap::new();
    for (k, v) in &config.otlp_headers {
        let key = tonic::metadata::MetadataKey::from_str(&k.to_ascii_lowercase())
            .map_err(|e| ExportError::Metadata { name: k.clone(), reason: e.to_string() })?;
        let value = v.parse().map_err(|e: tonic::metadata::errors::InvalidMetadataValue| {
            ExportError::Metadata { name: k.clone(), reason: e.to_string() }
        })?;
        map.insert(key, value);
    }
    Ok(map)
}

fn http_client(config: &ExportConfig) -> Result<reqwest::blocking::Client, ExportError> {
    let mut b = reqwest::blocking::Client::builder().timeout(config.otlp_timeout);
    if let Some(ca) = &config.otlp_ca_cert {
        let cert = reqwest::Certificate::from_pem(&read(ca, "otlp_ca_cert")?)
            .map_err(|source| ExportError::Tls { key: "otlp_ca_cert", source })?;
        b = b.tls_certs_only([cert]);
    }
    if let (Some(cert), Some(key)) = (&config.otlp_client_cert, &config.otlp_client_key) {
        let mut pem = read(cert, "otlp_client_cert")?;
        pem.extend(read(key, "otlp_client_key")?);
        let id = reqwest::Identity::from_pem(&pem)
            .map_err(|source| ExportError::Tls { key: "otlp_client_cert/key", source })?;
        b = b.identity(id);
    }
    b.build().map_err(ExportError::HttpClient)
}

fn endpoint(config: &ExportConfig) -> Result<&str, ExportError> {
    config.otlp_endpoint.as_deref().ok_or(ExportError::NoEndpoint)
}

/// Appends the signal path to an OTLP/HTTP endpoint.
fn http_url(base: &str, path: &str) -> String {
    format!("{}{path}", base.trim_end_matches('/'))
}

/// Applies the transport settings every gRPC exporter gets: endpoint, timeout, metadata,
/// retries, TLS.
fn grpc<B: WithExportConfig + WithTonicConfig>(
    b: B,
    config: &ExportConfig,
) -> Result<B, ExportError> {
    let b = b
        .with_endpoint(endpoint(config)?)
        .with_timeout(config.otlp_timeout)
        .with_metadata(metadata(config)?)
        .with_retry_policy(retry(config));
    Ok(match tonic_tls(config)? {
        Some(tls) => b.with_tls_config(tls),
        None => b,
    })
}

/// Applies the transport settings every HTTP exporter gets; `path` is the signal's
/// (`/v1/metrics`).
fn http<B: WithExportConfig + WithHttpConfig>(
    b: B,
    config: &ExportConfig,
    path: &str,
) -> Result<B, ExportError> {
    Ok(b.with_endpoint(http_url(endpoint(config)?, path))
        .with_timeout(config.otlp_timeout)
        .with_headers(headers(config))
        .with_http_client(http_client(config)?)
        .with_retry_policy(retry(config)))
}

/// Builds an OTLP metric exporter. Call it inside a Tokio runtime for gRPC, and off the runtime's
/// worker threads for HTTP.
pub(crate) fn metric_exporter(
    config: &ExportConfig,
    temporality: Temporality,
) -> Result<MetricExporter, ExportError> {
    let built = match config.otlp_protocol {
        OtlpProtocol::Grpc => grpc(MetricExporter::builder().with_tonic(), config)?
            .with_temporality(temporality)
            .build(),
        OtlpProtocol::Http => http(MetricExporter::builder().with_http(), config, "/v1/metrics")?
            .with_temporality(temporality)
            .build(),
    };
    built.map_err(|source| ExportError::Exporter { signal: "metric", source })
}

/// Builds an OTLP log exporter (under the same rules as [`metric_exporter`]).
pub(crate) fn log_exporter(config: &ExportConfig) -> Result<LogExporter, ExportError> {
    let built = match config.otlp_protocol {
        OtlpProtocol::Grpc => grpc(LogExporter::builder().with_tonic(), config)?.build(),
        OtlpProtocol::Http => http(LogExporter::builder().with_http(), config, "/v1/logs")?.build(),
    };
    built.map_err(|source| ExportError::Exporter { signal: "log", source })
}

fn headers(config: &ExportConfig) -> HashMap<String, String> {
    config.otlp_headers.iter().map(|(k, v)| (k.clone(), v.clone())).collect()
}
