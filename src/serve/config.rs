//! `vpcflowd serve` configuration: a TOML file, `VPCFLOWD_…` environment variables, then flags,
//! later sources winning. The doc comments on these structs are the reference documentation.
//!
//! Environment variables name a key path with `__` between levels:
//! `VPCFLOWD_INGEST__LISTEN=0.0.0.0:8443`, `VPCFLOWD_WINDOW__LATENESS=15m`,
//! `VPCFLOWD_INGEST__ACCESS_KEYS='["k1","k2"]'`.

use super::error::{ConfigError, SecretsError};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use figment::Figment;
use figment::providers::{Env, Format, Serialized, Toml};
use serde::{Deserialize, Serialize};

use crate::export::ExportConfig;
use crate::export::webhook::AlertsConfig;
use crate::settings::{DiagnosisSettings, WindowSettings};
use crate::source::kinesis::SourcesConfig;

/// Whether an environment key (prefix stripped) is one of the variables Kubernetes injects for
/// every Service in the namespace (`<NAME>_SERVICE_HOST`, `<NAME>_PORT_8080_TCP_ADDR`, …): a
/// Service called `vpcflowd` gives `VPCFLOWD_SERVICE_HOST`, which is not configuration.
fn is_service_link(key: &str) -> bool {
    let key = key.to_ascii_uppercase();
    let parts: Vec<&str> = key.split('_').collect();
    parts.windows(2).any(|w| w == ["SERVICE", "HOST"] || w == ["SERVICE", "PORT"])
        || parts.iter().position(|p| *p == "PORT").is_some_and(|i| {
            let rest = &parts[i + 1..];
            rest.is_empty()
                || (rest.len() >= 2
                    && rest[0].bytes().all(|b| b.is_ascii_digit())
                    && matches!(rest[1], "TCP" | "UDP" | "SCTP"))
        })
}

/// Everything `vpcflowd serve` reads.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct ServeConfig {
    /// The Firehose HTTP endpoint listener.
    pub ingest: IngestConfig,
    /// The admin listener: health checks and the JSON API.
    pub admin: AdminConfig,
    /// Windows, lateness, list lengths and memory caps.
    pub window: WindowSettings,
    /// The thresholds of findings.
    pub diagnosis: DiagnosisSettings,
    /// Records dropped before windows, by region, account or interface (glob patterns).
    pub filters: crate::record::filter::FilterSettings,
    /// What snapshots are enriched with.
    pub enrich: crate::settings::EnrichSettings,
    /// Where state is kept across restarts.
    pub state: StateConfig,
    /// OpenTelemetry (OTLP) export of closed windows and of vpcflowd's own metrics.
    pub export: ExportConfig,
    /// Where findings are pushed as they are raised (a webhook).
    pub alerts: AlertsConfig,
    /// Kinesis Data Streams to read besides the Firehose listener.
    pub sources: SourcesConfig,
    /// Flow-log formats of the records (see `vpcflowd parse --help`); empty means the VPC and
    /// transit-gateway default formats.
    pub formats: Vec<String>,
    /// How long a graceful shutdown (SIGTERM, SIGINT) may take before the process exits anyway.
    #[serde(with = "humantime_serde")]
    #[schemars(with = "crate::schema::HumanDuration")]
    pub shutdown_timeout: Duration,
    /// Also print every closed snapshot as one JSON line on standard output (as `replay` does).
    pub print_snapshots: bool,
}

/// The Firehose HTTP endpoint destination.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct IngestConfig {
    /// Listen for Firehose deliveries. Turn it off on a replica that only reads Kinesis
    /// streams (`sources.kinesis`): then nothing listens on `listen`, and the TLS files and
    /// access keys are not read. With it off and no stream to read, `serve` refuses to start.
    pub enabled: bool,
    /// Address to listen on. Firehose delivers only to HTTPS on port 443: terminate TLS here
    /// (`tls_cert`, `tls_key`) or at a load balancer in front.
    pub listen: SocketAddr,
    /// PEM certificate chain; with `tls_key`, the listener speaks HTTPS.
    pub tls_cert: Option<PathBuf>,
    /// PEM private key for `tls_cert`.
    pub tls_key: Option<PathBuf>,
    /// Accepted `X-Amz-Firehose-Access-Key` values. Empty (and no `access_keys_file`) accepts
    /// any request: only for trusted networks.
    pub access_keys: Vec<String>,
    /// A file with one accepted access key per line (e.g. a mounted secret), read at start and
    /// again every `reload_interval`. A Secrets Manager style JSON `{"api_key": "…"}` is
    /// accepted too.
    pub access_keys_file: Option<PathBuf>,
    /// Largest request body accepted as sent (compressed or not); larger is answered 413.
    pub max_body_bytes: usize,
    /// Largest request body after gzip decompression; larger is answered 413. Decompression is
    /// streamed and stops at this size. A request whose records' lines (after their own gzip,
    /// as CloudWatch payloads have) come to more than this is not held parsed: the pipeline
    /// parses it a line at a time.
    pub max_decompressed_bytes: usize,
    /// How long a client may take to send a request's headers; a connection that trickles them
    /// in (slowloris) is closed after this.
    #[serde(with = "humantime_serde")]
    #[schemars(with = "crate::schema::HumanDuration")]
    pub header_read_timeout: Duration,
    /// How long a client may take to send a request's body after its headers; a slower one is
    /// answered 408 and counted (`ingest.slow_bodies`). Firehose sends at most 64 MiB at once.
    #[serde(with = "humantime_serde")]
    #[schemars(with = "crate::schema::HumanDuration")]
    pub body_read_timeout: Duration,
    /// Open ingest connections at most; past it, a new connection is closed at once and counted
    /// (`ingest.connections_refused`). Firehose opens a few per delivery stream.
    pub max_connections: usize,
    /// Requests queued for the engine, counting those being parsed for it; when full, requests
    /// are answered 503 at once (before any parsing) so that Firehose retries later.
    pub queue_requests: usize,
    /// How long a request id is remembered to answer Firehose's retries without counting them
    /// twice. Firehose retries for up to its retry duration (at most 2 hours).
    #[serde(with = "humantime_serde")]
    #[schemars(with = "crate::schema::HumanDuration")]
    pub dedup_ttl: Duration,
    /// At most this many request ids are remembered (the oldest are forgotten first).
    pub dedup_max_entries: usize,
    /// How often `tls_cert`, `tls_key` and `access_keys_file` are read again: a rotated
    /// certificate or secret takes effect within this, without a restart. A file that cannot
    /// be read or does not load leaves the one in use in place (logged, and counted in
    /// `vpcflowd.ingest.reload_failures`), as does an `access_keys_file` that holds no key
    /// (which would accept any request; at start, such a file stops the start). `0s` reads
    /// them at start only.
    #[serde(with = "humantime_serde")]
    #[schemars(with = "crate::schema::HumanDuration")]
    pub reload_interval: Duration,
}

impl IngestConfig {
    /// The accepted access keys: `access_keys` plus the lines of `access_keys_file` (read
    /// now: at start, and again at each reload).
    ///
    /// An empty key, or a key file that holds none (emptied, or caught while being written), is
    /// an error: an empty key would accept requests that send none, and a file with no key
    /// where keys were meant would leave every request accepted.
    pub fn access_keys(&self) -> Result<Vec<String>, SecretsError> {
        if self.access_keys.iter().any(|k| k.trim().is_empty()) {
            return Err(SecretsError::EmptyKey);
        }
        let mut keys = self.access_keys.clone();
        if let Some(path) = &self.access_keys_file {
            let text = std::fs::read_to_string(path)
                .map_err(|source| SecretsError::ReadKeys { path: path.clone(), source })?;
            let trimmed = text.trim();
            let before = keys.len();
            if trimmed.starts_with('{') {
                #[derive(Deserialize)]
                struct Secret {
                    api_key: String,
                }
                let secret: Secret = serde_json::from_str(trimmed)
                    .map_err(|source| SecretsError::NotASecret { path: path.clone(), source })?;
                let key = secret.api_key.trim();
                if !key.is_empty() {
                    keys.push(key.to_string());
                }
            } else {
                keys.extend(
                    trimmed.lines().map(str::trim).filter(|l| !l.is_empty()).map(String::from),
                );
            }
            if keys.len() == before {
                return Err(SecretsError::NoKey { path: path.clone() });
            }
        }
        Ok(keys)
    }
}

/// State across restarts.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct StateConfig {
    /// Directory of the state file (`vpcflowd.state`). With it, shutdown writes the open
    /// windows and the dedup memory there and the next start continues from them; without it,
    /// nothing is kept and shutdown closes every window.
    pub dir: Option<PathBuf>,
    /// How often the state is also written while running: a crash loses at most this much of
    /// acknowledged data (Firehose re-delivers only what it was not answered 200 for).
    #[serde(with = "humantime_serde")]
    #[schemars(with = "crate::schema::HumanDuration")]
    pub checkpoint_interval: Duration,
    /// Start empty when the state file is corrupt, of an unknown version or written under other
    /// window settings (it is renamed aside to `vpcflowd.state.bad-<ms>`); without this such a
    /// file stops the start with an error.
    pub discard_bad_state: bool,
}

impl Default for StateConfig {
    fn default() -> Self {
        StateConfig {
            dir: None,
            checkpoint_interval: Duration::from_secs(60),
            discard_bad_state: false,
        }
    }
}

/// The admin listener.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct AdminConfig {
    /// Address of `/healthz`, `/readyz`, `/metrics` (Prometheus) and `/api/v1/…`.
    pub listen: SocketAddr,
    /// Closed windows kept per interface for `/api/v1/interfaces/{id}/snapshots`.
    pub history: usize,
}

impl Default for ServeConfig {
    fn default() -> Self {
        ServeConfig {
            ingest: IngestConfig::default(),
            admin: AdminConfig::default(),
            window: WindowSettings::default(),
            diagnosis: DiagnosisSettings::default(),
            filters: Default::default(),
            enrich: Default::default(),
            formats: Vec::new(),
            state: StateConfig::default(),
            export: ExportConfig::default(),
            alerts: AlertsConfig::default(),
            sources: SourcesConfig::default(),
            shutdown_timeout: Duration::from_secs(60),
            print_snapshots: false,
        }
    }
}

impl Default for IngestConfig {
    fn default() -> Self {
        IngestConfig {
            enabled: true,
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            tls_cert: None,
            tls_key: None,
            access_keys: Vec::new(),
            access_keys_file: None,
            reload_interval: Duration::from_secs(60),
            max_body_bytes: 64 * 1024 * 1024,
            max_decompressed_bytes: 64 * 1024 * 1024,
            header_read_timeout: Duration::from_secs(10),
            body_read_timeout: Duration::from_secs(60),
            max_connections: 1024,
            queue_requests: 64,
            dedup_ttl: Duration::from_secs(3 * 3600),
            dedup_max_entries: 200_000,
        }
    }
}

impl Default for AdminConfig {
    fn default() -> Self {
        AdminConfig { listen: SocketAddr::from(([127, 0, 0, 1], 9464)), history: 60 }
    }
}

/// The prefix of environment variables.
pub const ENV_PREFIX: &str = "VPCFLOWD_";

impl ServeConfig {
    /// Loads the configuration: defaults, then each of `files` in order (a later file's keys
    /// win: the image's base file, then the user's), then the environment, then `overrides`
    /// (the flags that were given, shaped like this struct). Errors name the offending key.
    pub fn load(files: &[&Path], overrides: serde_json::Value) -> Result<ServeConfig, ConfigError> {
        let mut figment = Figment::from(Serialized::defaults(ServeConfig::default()));
        for path in files {
            if !path.exists() {
                return Err(ConfigError::NoFile(path.to_path_buf()));
            }
            figment = figment.merge(Toml::file_exact(path));
        }
        figment = figment
            .merge(
                Env::prefixed(ENV_PREFIX)
                    // The files' paths (`VPCFLOWD_CONFIG`, `VPCFLOWD_BASE_CONFIG`, read by
                    // `--config` and `--base-config`) and the log settings
                    // (`VPCFLOWD_LOG_FORMAT`, read by `--log-format`) are not keys of the file.
                    .ignore(&["LOG", "LOG_FORMAT", "CONFIG", "BASE_CONFIG"])
                    .filter(|key| !is_service_link(key.as_str()))
                    .split("__"),
            )
            .merge(Serialized::defaults(overrides));
        let config: ServeConfig = figment.extract().map_err(|e| {
            ConfigError::Parse(e.into_iter().map(|e| e.to_string()).collect::<Vec<_>>().join("; "))
        })?;
        config.validate()?;
        Ok(config)
    }

    /// Checks what types alone cannot.
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.window.to_engine_config().map_err(|e| ConfigError::Invalid(format!("window: {e}")))?;
        if self.ingest.tls_cert.is_some() != self.ingest.tls_key.is_some() {
            return Err(ConfigError::Invalid(
                "ingest.tls_cert and ingest.tls_key must be set together".into(),
            ));
        }
        if self.state.checkpoint_interval.is_zero() {
            return Err(ConfigError::Invalid("state.checkpoint_interval must be positive".into()));
        }
        if self.ingest.queue_requests == 0 {
            return Err(ConfigError::Invalid("ingest.queue_requests must be at least 1".into()));
        }
        if self.ingest.max_body_bytes == 0 || self.ingest.max_decompressed_bytes == 0 {
            return Err(ConfigError::Invalid(
                "ingest.max_body_bytes and ingest.max_decompressed_bytes must be positive".into(),
            ));
        }
        crate::decode::LayoutSet::from_formats(&self.formats).map_err(ConfigError::Formats)?;
        self.sources.validate()?;
        self.alerts.validate().map_err(|e| ConfigError::Invalid(e.to_string()))?;
        if let Some(ec2) = &self.enrich.ec2 {
            ec2.validate().map_err(ConfigError::Invalid)?;
        }
        if !self.ingest.enabled && self.sources.kinesis.is_empty() {
            return Err(ConfigError::Invalid("ingest.enabled is false and no sources.kinesis stream is configured: nothing to read (enable the Firehose listener or add a stream)".into()));
        }
        if self.sources.uses_leases() && self.state.dir.is_none() {
            return Err(ConfigError::Invalid("a Kinesis lease table needs state.dir (--state-dir): lease checkpoints commit the state file".into()));
        }
        Ok(())
    }
}

#[cfg(test)]
// figment's Jail API returns its large error type; that is its signature, not ours.
#[allow(clippy::result_large_err)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn layers_base_file_file_env_and_flags_in_order() {
        figment::Jail::expect_with(|jail| {
            // What the container image names with VPCFLOWD_BASE_CONFIG.
            jail.create_file(
                "image.toml",
                "[ingest]\nlisten = \"0.0.0.0:8080\"\n[admin]\nlisten = \"0.0.0.0:9464\"\n",
            )?;
            jail.create_file(
                "vpcflowd.toml",
                "formats = [\"default\"]\n[ingest]\nlisten = \"127.0.0.1:9000\"\nqueue_requests = 5\n[window]\nlateness = \"15m\"\ntop_sources = 3\n",
            )?;
            jail.set_env("VPCFLOWD_INGEST__QUEUE_REQUESTS", "7");
            jail.set_env("VPCFLOWD_WINDOW__TOP_SOURCES", "4");
            jail.set_env("VPCFLOWD_BASE_CONFIG", "image.toml");
            let c = ServeConfig::load(
                &[Path::new("image.toml"), Path::new("vpcflowd.toml")],
                json!({"window": {"top_sources": 5}}),
            )
            .map_err(|e| figment::Error::from(e.to_string()))?;
            assert_eq!(
                c.ingest.listen,
                "127.0.0.1:9000".parse().unwrap(),
                "the file beats the base"
            );
            assert_eq!(c.admin.listen, "0.0.0.0:9464".parse().unwrap(), "the base beats defaults");
            assert_eq!(c.ingest.queue_requests, 7, "env beats file");
            assert_eq!(c.window.top_sources, 5, "flags beat env");
            assert_eq!(c.window.lateness, Duration::from_secs(900));
            assert_eq!(c.window.slide, Duration::from_secs(60), "defaults fill the rest");
            Ok(())
        });
    }

    #[test]
    fn kubernetes_service_links_are_not_configuration() {
        figment::Jail::expect_with(|jail| {
            // What Kubernetes injects for Services named `vpcflowd` and `vpcflowd-admin`.
            for (k, v) in [
                ("VPCFLOWD_SERVICE_HOST", "10.0.0.1"),
                ("VPCFLOWD_SERVICE_PORT", "8080"),
                ("VPCFLOWD_SERVICE_PORT_INGEST", "8080"),
                ("VPCFLOWD_PORT", "tcp://10.0.0.1:8080"),
                ("VPCFLOWD_PORT_8080_TCP", "tcp://10.0.0.1:8080"),
                ("VPCFLOWD_PORT_8080_TCP_ADDR", "10.0.0.1"),
                ("VPCFLOWD_ADMIN_SERVICE_HOST", "10.0.0.2"),
                ("VPCFLOWD_ADMIN_PORT_9464_TCP_PROTO", "tcp"),
            ] {
                jail.set_env(k, v);
            }
            jail.set_env("VPCFLOWD_INGEST__QUEUE_REQUESTS", "7");
            let c = ServeConfig::load(&[], json!({}))
                .map_err(|e| figment::Error::from(e.to_string()))?;
            assert_eq!(c.ingest.queue_requests, 7);
            // A misspelt key is still an error.
            jail.set_env("VPCFLOWD_INGEST__QUEUE_REQUEST", "7");
            assert!(
                ServeConfig::load(&[], json!({}))
                    .unwrap_err()
                    .to_string()
                    .contains("queue_request")
            );
            Ok(())
        });
    }

    #[test]
    fn bad_values_name_their_key() {
        figment::Jail::expect_with(|jail| {
            jail.create_file("bad.toml", "[ingest]\nqueue_requests = \"many\"\n")?;
            let e = ServeConfig::load(&[Path::new("bad.toml")], json!({})).unwrap_err().to_string();
            assert!(e.contains("ingest.queue_requests"), "{e}");
            jail.create_file("bad2.toml", "[window]\nwindow = \"7m\"\nslide = \"2m\"\n")?;
            let e =
                ServeConfig::load(&[Path::new("bad2.toml")], json!({})).unwrap_err().to_string();
            assert!(e.starts_with("window:"), "{e}");
            jail.create_file("bad3.toml", "[ingest]\nlisten_on = \"x\"\n")?;
            let e =
                ServeConfig::load(&[Path::new("bad3.toml")], json!({})).unwrap_err().to_string();
            assert!(e.contains("listen_on"), "{e}");
            Ok(())
        });
    }

    #[test]
    fn the_firehose_listener_may_be_off_only_when_a_stream_is_read() {
        figment::Jail::expect_with(|jail| {
            jail.create_file(
                "kinesis.toml",
                "[ingest]\nenabled = false\n[[sources.kinesis]]\nstream = \"s\"\n",
            )?;
            let c = ServeConfig::load(&[Path::new("kinesis.toml")], json!({}))
                .map_err(|e| figment::Error::from(e.to_string()))?;
            assert!(!c.ingest.enabled);
            jail.set_env("VPCFLOWD_INGEST__ENABLED", "false");
            let e = ServeConfig::load(&[], json!({})).unwrap_err().to_string();
            assert!(e.contains("ingest.enabled is false and no sources.kinesis"), "{e}");
            assert!(ServeConfig::default().ingest.enabled);
            Ok(())
        });
    }

    #[test]
    fn access_keys_come_from_config_and_a_secret_file() {
        let dir = std::env::temp_dir().join(format!("vpcflowd-keys-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let lines = dir.join("keys");
        std::fs::write(&lines, "k2\n\n k3 \n").unwrap();
        let json_secret = dir.join("secret.json");
        std::fs::write(&json_secret, "{\"api_key\": \"k4\"}").unwrap();
        let mut c = ServeConfig::default();
        c.ingest.access_keys = vec!["k1".into()];
        c.ingest.access_keys_file = Some(lines.clone());
        assert_eq!(c.ingest.access_keys().unwrap(), ["k1", "k2", "k3"]);
        c.ingest.access_keys_file = Some(json_secret.clone());
        assert_eq!(c.ingest.access_keys().unwrap(), ["k1", "k4"]);
        // No key where keys were meant is an error, never "accept any request": an emptied
        // file, a secret with an empty key, an empty key in the list.
        for (file, text) in [(&lines, "\n \n"), (&json_secret, "{\"api_key\": \" \"}")] {
            std::fs::write(file, text).unwrap();
            c.ingest.access_keys_file = Some(file.clone());
            let e = c.ingest.access_keys().unwrap_err().to_string();
            assert!(e.contains("holds no key"), "{e}");
        }
        c.ingest.access_keys_file = None;
        c.ingest.access_keys = vec!["k1".into(), "".into()];
        assert!(c.ingest.access_keys().unwrap_err().to_string().contains("empty key"));
        std::fs::remove_dir_all(dir).unwrap();
    }
}
