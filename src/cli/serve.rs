//! `vpcflowd serve`: runs the engine live as a Firehose HTTP endpoint destination.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;
use serde_json::{Map, Value, json};

use super::diagnosis_args::DiagnosisArgs;
use super::filter_args::FilterArgs;
use super::window_args::WindowArgs;
use super::{EXIT_IO, EXIT_USAGE};
use crate::export::config::OtlpProtocol;
use crate::serve::config::ServeConfig;
use crate::source::kinesis::StartingPosition;

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// A TOML configuration file (see docs). Environment variables `VPCFLOWD_…` override it,
    /// and flags override both.
    #[arg(long, value_name = "FILE", env = "VPCFLOWD_CONFIG")]
    pub config: Option<PathBuf>,

    /// A TOML file of defaults read beneath `--config` (whose keys win over it). The container
    /// image names its own here (listen addresses, state directory), so that a mounted
    /// configuration file can still set those keys.
    #[arg(long, value_name = "FILE", env = "VPCFLOWD_BASE_CONFIG")]
    pub base_config: Option<PathBuf>,

    /// Print the effective configuration as TOML and exit.
    #[arg(long)]
    pub print_config: bool,

    /// Ingest (Firehose) listener address [default: 127.0.0.1:8080].
    #[arg(long, value_name = "ADDR")]
    pub listen: Option<SocketAddr>,

    /// Do not listen for Firehose deliveries (`ingest.enabled = false`): for a replica that
    /// only reads Kinesis streams.
    #[arg(long)]
    pub no_firehose: bool,

    /// Admin listener address [default: 127.0.0.1:9464].
    #[arg(long, value_name = "ADDR")]
    pub admin_listen: Option<SocketAddr>,

    /// PEM certificate chain for HTTPS on the ingest listener (with --tls-key).
    #[arg(long, value_name = "FILE")]
    pub tls_cert: Option<PathBuf>,

    /// PEM private key for --tls-cert.
    #[arg(long, value_name = "FILE")]
    pub tls_key: Option<PathBuf>,

    /// An accepted X-Amz-Firehose-Access-Key (repeatable).
    #[arg(long = "access-key", value_name = "KEY")]
    pub access_keys: Vec<String>,

    /// A file of accepted access keys, one per line, or `{"api_key": …}`.
    #[arg(long, value_name = "FILE")]
    pub access_keys_file: Option<PathBuf>,

    /// Directory of the state file kept across restarts.
    #[arg(long, value_name = "DIR")]
    pub state_dir: Option<PathBuf>,

    /// Start empty if the state file is corrupt or unusable (it is renamed aside).
    #[arg(long)]
    pub discard_bad_state: bool,

    /// How often the state is written while running [default: 1m].
    #[arg(long, value_parser = humantime::parse_duration, value_name = "DURATION")]
    pub checkpoint_interval: Option<std::time::Duration>,

    /// Also print every closed snapshot as a JSON line on standard output.
    #[arg(long)]
    pub print_snapshots: bool,

    /// The flow log's format (see `vpcflowd parse --help`); repeatable.
    #[arg(long = "format", short = 'f', value_name = "FMT")]
    pub formats: Vec<String>,

    /// OTLP collector endpoint for closed windows and self-metrics, e.g. http://collector:4317.
    #[arg(long, value_name = "URL")]
    pub otlp_endpoint: Option<String>,

    /// URL that receives one JSON POST per finding (Slack-compatible); see `[alerts]`. The URL
    /// is a secret: VPCFLOWD_ALERTS__WEBHOOK_URL keeps it out of the process list.
    #[arg(long, value_name = "URL")]
    pub webhook_url: Option<String>,

    /// OTLP transport [default: grpc].
    #[arg(long, value_enum, value_name = "PROTO")]
    pub otlp_protocol: Option<OtlpProtocol>,

    /// An extra header (gRPC metadata) on every OTLP export, NAME=VALUE; repeatable.
    #[arg(long = "otlp-header", value_name = "NAME=VALUE", value_parser = parse_header)]
    pub otlp_headers: Vec<(String, String)>,

    /// PEM CA bundle to verify the collector's TLS certificate.
    #[arg(long, value_name = "FILE")]
    pub otlp_ca_cert: Option<PathBuf>,

    /// PEM client certificate for mutual TLS to the collector (with --otlp-client-key).
    #[arg(long, value_name = "FILE")]
    pub otlp_client_cert: Option<PathBuf>,

    /// PEM private key of --otlp-client-cert.
    #[arg(long, value_name = "FILE")]
    pub otlp_client_key: Option<PathBuf>,

    /// How often self-metrics are pushed over OTLP [default: 30s].
    #[arg(long, value_parser = humantime::parse_duration, value_name = "DURATION")]
    pub otlp_interval: Option<std::time::Duration>,

    /// Top-flow log records per interface and window over OTLP (0: none) [default: 10].
    #[arg(long, value_name = "N")]
    pub flow_logs_per_interface: Option<usize>,

    /// Read this Kinesis Data Stream (a name or an ARN); repeatable. The --kinesis-* and
    /// --lease-* flags apply to every stream given here (use the TOML for per-stream settings).
    #[arg(long = "kinesis-stream", value_name = "STREAM")]
    pub kinesis_streams: Vec<String>,
    /// AWS region of the streams [default: the ARN's, else the standard AWS chain].
    #[arg(long, value_name = "REGION")]
    pub kinesis_region: Option<String>,
    /// Kinesis endpoint override (a VPC endpoint, or an emulator).
    #[arg(long, value_name = "URL")]
    pub kinesis_endpoint: Option<String>,
    /// Where shards without a checkpoint start [default: trim-horizon].
    #[arg(long, value_enum, value_name = "POS")]
    pub kinesis_start: Option<StartingPosition>,
    /// With --kinesis-start at-timestamp: an RFC 3339 time.
    #[arg(long, value_name = "TIME")]
    pub kinesis_start_timestamp: Option<String>,
    /// Records asked for per GetRecords call, 1–10000 [default: 10000].
    #[arg(long, value_name = "N")]
    pub kinesis_max_records: Option<i32>,
    /// Share the streams' shards with other replicas through this DynamoDB lease table
    /// (needs --state-dir).
    #[arg(long, value_name = "NAME")]
    pub lease_table: Option<String>,
    /// DynamoDB endpoint override for the lease table.
    #[arg(long, value_name = "URL")]
    pub lease_endpoint: Option<String>,
    /// How long an unrenewed lease lasts before another replica takes it [default: 10s].
    #[arg(long, value_parser = humantime::parse_duration, value_name = "DURATION")]
    pub lease_duration: Option<std::time::Duration>,
    /// This replica's unique, stable name in lease tables [default: the host name].
    #[arg(long, value_name = "ID")]
    pub replica_id: Option<String>,

    #[command(flatten)]
    pub window: WindowArgs,

    #[command(flatten)]
    pub diagnosis: DiagnosisArgs,

    #[command(flatten)]
    pub filters: FilterArgs,

    /// AWS's ip-ranges.json, to name the service of sources and destinations in AWS.
    #[arg(long, value_name = "FILE")]
    pub ip_ranges: Option<PathBuf>,

    /// Describe the network interfaces of these regions with EC2 ([enrich.ec2]; comma-separated,
    /// or "default" for the credential chain's region).
    #[arg(long, value_name = "REGIONS", value_delimiter = ',')]
    pub ec2_regions: Vec<String>,

    /// The EC2 endpoint of --ec2-regions (a VPC endpoint, or an emulator).
    #[arg(long, value_name = "URL", requires = "ec2_regions")]
    pub ec2_endpoint_url: Option<String>,
}

fn parse_header(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((k, v)) if !k.trim().is_empty() => Ok((k.trim().to_string(), v.to_string())),
        _ => Err(format!("{s:?} is not NAME=VALUE")),
    }
}

/// A path as the configuration spells it.
fn path_value(p: &Option<PathBuf>) -> Option<Value> {
    p.as_ref().map(|p| Value::from(p.to_string_lossy().into_owned()))
}

/// A duration as the configuration spells it (`1m 30s`).
fn duration_value(d: Option<std::time::Duration>) -> Option<Value> {
    d.map(|d| Value::from(humantime::format_duration(d).to_string()))
}

/// The keys whose flags were given: a table of the configuration.
fn table_of(pairs: impl IntoIterator<Item = (&'static str, Option<Value>)>) -> Map<String, Value> {
    pairs.into_iter().filter_map(|(k, v)| Some((k.to_string(), v?))).collect()
}

impl ServeArgs {
    /// The `[enrich]` flags that were given.
    fn enrich_overrides(&self) -> Map<String, Value> {
        let mut enrich = table_of([("ip_ranges", path_value(&self.ip_ranges))]);
        if !self.ec2_regions.is_empty() {
            let regions: Vec<&String> =
                self.ec2_regions.iter().filter(|r| *r != "default").collect();
            let mut ec2 =
                table_of([("endpoint_url", self.ec2_endpoint_url.clone().map(Value::from))]);
            ec2.insert("regions".into(), json!(regions));
            enrich.insert("ec2".into(), Value::Object(ec2));
        }
        enrich
    }

    /// The flags that were given, shaped like [`ServeConfig`].
    fn overrides(&self) -> Value {
        let mut root = Map::new();
        root.insert("ingest".into(), Value::Object(self.ingest_overrides()));
        if let Some(a) = self.admin_listen {
            root.insert("admin".into(), json!({"listen": a.to_string()}));
        }
        root.insert("window".into(), Value::Object(self.window.overrides()));
        root.insert("diagnosis".into(), Value::Object(self.diagnosis.overrides()));
        root.insert("filters".into(), Value::Object(self.filters.overrides()));
        root.insert("enrich".into(), Value::Object(self.enrich_overrides()));
        if !self.formats.is_empty() {
            root.insert("formats".into(), json!(self.formats));
        }
        let state = table_of([
            ("dir", path_value(&self.state_dir)),
            ("discard_bad_state", self.discard_bad_state.then_some(Value::Bool(true))),
            ("checkpoint_interval", duration_value(self.checkpoint_interval)),
        ]);
        root.insert("state".into(), Value::Object(state));
        root.insert("export".into(), Value::Object(self.export_overrides()));
        if let Some(url) = &self.webhook_url {
            root.insert("alerts".into(), json!({ "webhook_url": url }));
        }
        root.insert("sources".into(), Value::Object(self.sources_overrides()));
        if self.print_snapshots {
            root.insert("print_snapshots".into(), Value::Bool(true));
        }
        Value::Object(root)
    }

    /// The `[ingest]` flags.
    fn ingest_overrides(&self) -> Map<String, Value> {
        table_of([
            ("listen", self.listen.map(|a| Value::from(a.to_string()))),
            ("tls_cert", path_value(&self.tls_cert)),
            ("tls_key", path_value(&self.tls_key)),
            ("access_keys_file", path_value(&self.access_keys_file)),
            ("access_keys", (!self.access_keys.is_empty()).then(|| json!(self.access_keys))),
            ("enabled", self.no_firehose.then_some(Value::Bool(false))),
        ])
    }

    /// The `[export]` flags.
    fn export_overrides(&self) -> Map<String, Value> {
        let headers = (!self.otlp_headers.is_empty()).then(|| {
            Value::Object(
                self.otlp_headers
                    .iter()
                    .map(|(k, v)| (k.clone(), Value::from(v.clone())))
                    .collect(),
            )
        });
        table_of([
            ("otlp_endpoint", self.otlp_endpoint.clone().map(Value::from)),
            ("otlp_protocol", self.otlp_protocol.map(|p| json!(p))),
            ("otlp_ca_cert", path_value(&self.otlp_ca_cert)),
            ("otlp_client_cert", path_value(&self.otlp_client_cert)),
            ("otlp_client_key", path_value(&self.otlp_client_key)),
            ("otlp_interval", duration_value(self.otlp_interval)),
            ("flow_logs_per_interface", self.flow_logs_per_interface.map(Value::from)),
            ("otlp_headers", headers),
        ])
    }

    /// The `[sources]` flags: the replica id, and one `[[sources.kinesis]]` entry per
    /// `--kinesis-stream`, each with the stream flags.
    fn sources_overrides(&self) -> Map<String, Value> {
        let mut sources = Map::new();
        if let Some(id) = &self.replica_id {
            sources.insert("replica_id".into(), Value::from(id.clone()));
        }
        if !self.kinesis_streams.is_empty() {
            let streams: Vec<Value> = self
                .kinesis_streams
                .iter()
                .map(|stream| {
                    let mut k = table_of([
                        ("region", self.kinesis_region.clone().map(Value::from)),
                        ("endpoint", self.kinesis_endpoint.clone().map(Value::from)),
                        ("start", self.kinesis_start.map(|p| json!(p))),
                        ("start_timestamp", self.kinesis_start_timestamp.clone().map(Value::from)),
                        ("max_records_per_call", self.kinesis_max_records.map(Value::from)),
                        ("lease_table", self.lease_table.clone().map(Value::from)),
                        ("lease_endpoint", self.lease_endpoint.clone().map(Value::from)),
                        ("lease_duration", duration_value(self.lease_duration)),
                    ]);
                    k.insert("stream".into(), Value::from(stream.clone()));
                    Value::Object(k)
                })
                .collect();
            sources.insert("kinesis".into(), Value::Array(streams));
        }
        sources
    }
}

pub(crate) fn run(args: &ServeArgs) -> ExitCode {
    let stream_flags = [
        ("--kinesis-region", args.kinesis_region.is_some()),
        ("--kinesis-endpoint", args.kinesis_endpoint.is_some()),
        ("--kinesis-start", args.kinesis_start.is_some()),
        ("--kinesis-start-timestamp", args.kinesis_start_timestamp.is_some()),
        ("--kinesis-max-records", args.kinesis_max_records.is_some()),
        ("--lease-table", args.lease_table.is_some()),
        ("--lease-endpoint", args.lease_endpoint.is_some()),
        ("--lease-duration", args.lease_duration.is_some()),
    ];
    if args.kinesis_streams.is_empty()
        && let Some((flag, _)) = stream_flags.iter().find(|(_, given)| *given)
    {
        eprintln!(
            "vpcflowd serve: {flag} applies to the streams given with --kinesis-stream (none given; use [[sources.kinesis]] in the configuration file for per-stream settings)"
        );
        return ExitCode::from(EXIT_USAGE);
    }
    let files: Vec<_> =
        [&args.base_config, &args.config].into_iter().flatten().map(|p| p.as_path()).collect();
    let config = match ServeConfig::load(&files, args.overrides()) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("vpcflowd serve: invalid configuration: {e}");
            return ExitCode::from(EXIT_USAGE);
        }
    };
    if args.print_config {
        match toml::to_string_pretty(&config) {
            Ok(text) => {
                print!("{text}");
                return ExitCode::SUCCESS;
            }
            Err(e) => {
                eprintln!("vpcflowd serve: {e}");
                return ExitCode::from(EXIT_IO);
            }
        }
    }
    super::init_logging();
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("vpcflowd serve: {e}");
            return ExitCode::from(EXIT_IO);
        }
    };
    let result = runtime.block_on(async {
        // Handlers are installed before the listeners bind, so a SIGTERM sent as soon as the
        // addresses are printed is never missed.
        let shutdown = shutdown_signal().map_err(crate::serve::ServeError::Signals)?;
        crate::serve::run(config, shutdown, |bound| {
            // This line tells scripts and tests where to send traffic and where to look.
            match bound.ingest {
                Some(ingest) => {
                    eprintln!("vpcflowd serve: ingest on {ingest} admin on {}", bound.admin)
                }
                None => eprintln!("vpcflowd serve: ingest off admin on {}", bound.admin),
            }
        })
        .await
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("vpcflowd serve: {e}");
            ExitCode::from(EXIT_IO)
        }
    }
}

/// Resolves at SIGTERM (what container runtimes send) or SIGINT (Ctrl-C); both handlers are
/// installed when this is called.
#[cfg(unix)]
fn shutdown_signal() -> std::io::Result<impl std::future::Future<Output = ()>> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    Ok(async move {
        tokio::select! {
            _ = term.recv() => {},
            _ = int.recv() => {},
        }
    })
}

#[cfg(not(unix))]
fn shutdown_signal() -> std::io::Result<impl std::future::Future<Output = ()>> {
    Ok(async {
        let _ = tokio::signal::ctrl_c().await;
    })
}
