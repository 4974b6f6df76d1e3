//! The window settings hold what `--window`, `--slide` … and the `[window]` table of `serve`'s
//! configuration file set. The doc comments on the fields are the reference documentation.
//!
//! This module is where the window configuration meets its JSON Schema (for the generated
//! reference), so that `window` itself derives neither schemars nor clap traits: the
//! enumerated settings' names are given here (`TimeModeName` and its kin) and their flags in
//! `cli::window_args`.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use crate::window::aws_ranges::AwsRanges;
use crate::window::diagnosis::Detail;
use crate::window::direction::{AddressMode, DirectionMode, DirectionSettings, LocalAddresses};
use crate::window::findings::Thresholds;
use crate::window::{Caps, EngineConfig, LatePolicy, TimeField, TimeMode, TopN, WindowSpec};

/// A window setting that no engine can run with.
#[derive(Debug, thiserror::Error)]
pub enum SettingsError {
    /// The window and slide do not fit together.
    #[error("{0}")]
    Windows(String),
    #[error("lateness must be whole seconds (got {0:?})")]
    FractionalLateness(Duration),
    #[error("shards must be at least 1")]
    NoShards,
    #[error("{name} must be at least 2 (got {value})")]
    CapTooSmall { name: &'static str, value: usize },
    #[error("{0}")]
    LocalAddresses(String),
    #[error("local_addresses_file {}: {detail}", path.display())]
    LocalAddressesFile { path: PathBuf, detail: String },
}

/// Sliding windows, lateness, list lengths and memory caps.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct WindowSettings {
    /// Window length (e.g. `5m`); a whole multiple of `slide`.
    #[serde(with = "humantime_serde")]
    #[schemars(with = "crate::schema::HumanDuration")]
    pub window: Duration,
    /// How often a window closes; windows are aligned to multiples of it since the Unix epoch.
    #[serde(with = "humantime_serde")]
    #[schemars(with = "crate::schema::HumanDuration")]
    pub slide: Duration,
    /// How far the watermark trails the newest event time. Flow-log records arrive up to 10
    /// minutes after capture, plus delivery delay.
    #[serde(with = "humantime_serde")]
    #[schemars(with = "crate::schema::HumanDuration")]
    pub lateness: Duration,
    /// With no record for this long, the watermark moves on with the wall clock so that the
    /// last windows of a live stream close.
    #[serde(with = "humantime_serde")]
    #[schemars(with = "crate::schema::HumanDuration")]
    pub idle_timeout: Duration,
    /// `event` (the record's own time) or `processing` (arrival time).
    #[schemars(with = "TimeModeName")]
    pub time: TimeMode,
    /// `start` or `end`: the record field that gives event time.
    #[schemars(with = "TimeFieldName")]
    pub time_field: TimeField,
    /// `drop` (count late records) or `update` (apply them and re-emit corrected snapshots).
    #[schemars(with = "LatePolicyName")]
    pub late: LatePolicy,
    /// Sources listed per snapshot; the rest is in `other_sources`.
    pub top_sources: usize,
    /// Destinations listed per snapshot; the rest is in `other_destinations`.
    pub top_destinations: usize,
    /// Largest flows listed per listed source.
    pub top_flows: usize,
    /// Destinations listed per listed source (`top_destinations` of a source: its flows
    /// summed by destination address over ports).
    pub top_source_destinations: usize,
    /// Sources listed per snapshot by rejected flows (`rejected_sources`), whatever their bytes.
    pub top_rejected_sources: usize,
    /// Window lengths of history a source's `baseline_bytes` is the mean over.
    pub baseline_windows: usize,
    /// Per-source lists (top flows, `pane_bytes`, `top_destinations`): `always` for every
    /// listed source, `on_finding` only for a source that scans ports or spikes, or `off`.
    #[schemars(with = "DetailName")]
    pub detail: Detail,
    /// Sources tracked exactly per interface per pane; beyond, heavy hitters with an error bound.
    pub max_sources: usize,
    /// Destinations tracked exactly per interface per pane.
    pub max_destinations: usize,
    /// Flows tracked exactly per source per pane.
    pub max_flows: usize,
    /// Worker shards; unset means the number of cores.
    pub shards: Option<usize>,
    /// The AWS region reported for records that carry no `region` field.
    pub region: Option<String>,
    /// `auto` decides whether each record is traffic to its interface or from it (by the
    /// record's `flow-direction`, else the interface's configured local addresses, else the
    /// addresses it learns from its records), so that sources are who send to the interface and
    /// destinations where its traffic goes. `off` lists every record's source and destination
    /// and computes shares of all traffic.
    #[schemars(with = "DirectionModeName")]
    pub direction: DirectionMode,
    /// `packet` attributes traffic to `pkt-srcaddr` / `pkt-dstaddr` where the layout has them
    /// (NAT gateways, load balancers, EKS pods); `header` always to `srcaddr` / `dstaddr`.
    #[schemars(with = "AddressModeName")]
    pub address: AddressMode,
    /// Each interface's own addresses and CIDR blocks, by interface id, e.g.
    /// `"eni-0a1b2c3d4e5f60718" = ["10.0.1.17", "2600:1f18::/64"]`. A configured interface's
    /// direction is decided by them rather than learned.
    pub local_addresses: BTreeMap<String, Vec<String>>,
    /// A JSON file of more local addresses, of the same shape as `local_addresses`
    /// (`{"eni-…": ["10.0.1.17"]}`); its entries replace the table's for the interfaces both name.
    pub local_addresses_file: Option<PathBuf>,
}

impl Default for WindowSettings {
    fn default() -> Self {
        WindowSettings {
            window: Duration::from_secs(300),
            slide: Duration::from_secs(60),
            lateness: Duration::from_secs(600),
            idle_timeout: Duration::from_secs(30),
            time: TimeMode::Event,
            time_field: TimeField::Start,
            late: LatePolicy::Drop,
            top_sources: 15,
            top_destinations: 15,
            top_flows: 10,
            top_source_destinations: 5,
            top_rejected_sources: 15,
            baseline_windows: 12,
            detail: Detail::Always,
            max_sources: 10_000,
            max_destinations: 10_000,
            max_flows: 64,
            shards: None,
            region: None,
            direction: DirectionMode::Auto,
            address: AddressMode::Packet,
            local_addresses: BTreeMap::new(),
            local_addresses_file: None,
        }
    }
}

impl WindowSettings {
    /// The engine configuration, or an error naming the bad setting.
    pub fn to_engine_config(&self) -> Result<EngineConfig, SettingsError> {
        let spec = WindowSpec::new(self.window, self.slide)
            .map_err(|e| SettingsError::Windows(e.to_string()))?;
        if self.lateness.subsec_nanos() != 0 {
            return Err(SettingsError::FractionalLateness(self.lateness));
        }
        if self.shards == Some(0) {
            return Err(SettingsError::NoShards);
        }
        for (name, v) in [
            ("max_sources", self.max_sources),
            ("max_destinations", self.max_destinations),
            ("max_flows", self.max_flows),
        ] {
            if v < 2 {
                return Err(SettingsError::CapTooSmall { name, value: v });
            }
        }
        let mut c = EngineConfig::new(spec);
        c.lateness_secs = self.lateness.as_secs();
        c.idle_timeout = self.idle_timeout;
        c.time = self.time;
        c.time_field = self.time_field;
        c.late = self.late;
        c.top = TopN {
            sources: self.top_sources,
            destinations: self.top_destinations,
            flows: self.top_flows,
            source_destinations: self.top_source_destinations,
            rejected_sources: self.top_rejected_sources,
        };
        c.baseline_windows = self.baseline_windows as u64;
        c.detail = self.detail;
        c.caps = Caps {
            sources: self.max_sources,
            destinations: self.max_destinations,
            flows: self.max_flows,
        };
        if let Some(n) = self.shards {
            c.shards = n;
        }
        c.region = self.region.clone();
        c.direction = DirectionSettings {
            mode: self.direction,
            address: self.address,
            local_addresses: Arc::new(self.local_addresses()?),
        };
        Ok(c)
    }

    /// The configured local addresses: the table's, then the file's.
    fn local_addresses(&self) -> Result<LocalAddresses, SettingsError> {
        let entries = self.local_addresses.iter().map(|(k, v)| (k.as_str(), v.as_slice()));
        let mut locals = LocalAddresses::parse(entries).map_err(SettingsError::LocalAddresses)?;
        if let Some(path) = &self.local_addresses_file {
            let file_error =
                |detail: String| SettingsError::LocalAddressesFile { path: path.clone(), detail };
            let text = std::fs::read_to_string(path).map_err(|e| file_error(e.to_string()))?;
            locals.extend(LocalAddresses::parse_json(&text).map_err(file_error)?);
        }
        Ok(locals)
    }
}

/// The names `time` takes, for the configuration's JSON Schema.
#[derive(schemars::JsonSchema)]
#[schemars(rename_all = "lowercase")]
#[allow(dead_code, reason = "only its JSON Schema is used")]
enum TimeModeName {
    Event,
    Processing,
}

/// The names `time_field` takes, for the configuration's JSON Schema.
#[derive(schemars::JsonSchema)]
#[schemars(rename_all = "lowercase")]
#[allow(dead_code, reason = "only its JSON Schema is used")]
enum TimeFieldName {
    Start,
    End,
}

/// The names `late` takes, for the configuration's JSON Schema.
#[derive(schemars::JsonSchema)]
#[schemars(rename_all = "lowercase")]
#[allow(dead_code, reason = "only its JSON Schema is used")]
enum LatePolicyName {
    Drop,
    Update,
}

/// The names `direction` takes, for the configuration's JSON Schema.
#[derive(schemars::JsonSchema)]
#[schemars(rename_all = "lowercase")]
#[allow(dead_code, reason = "only its JSON Schema is used")]
enum DirectionModeName {
    Auto,
    Off,
}

/// The names `address` takes, for the configuration's JSON Schema.
#[derive(schemars::JsonSchema)]
#[schemars(rename_all = "lowercase")]
#[allow(dead_code, reason = "only its JSON Schema is used")]
enum AddressModeName {
    Packet,
    Header,
}

/// The names `detail` takes, for the configuration's JSON Schema.
#[derive(schemars::JsonSchema)]
#[schemars(rename_all = "snake_case")]
#[allow(dead_code, reason = "only its JSON Schema is used")]
enum DetailName {
    Always,
    OnFinding,
    Off,
}

/// What snapshots are enriched with (`[enrich]`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct EnrichSettings {
    /// AWS's `ip-ranges.json` (download it from `https://ip-ranges.amazonaws.com/ip-ranges.json`;
    /// it is never fetched at run time). Listed sources and destinations inside AWS then carry
    /// `aws_service` (`S3`, `EC2`, …) and `aws_region`.
    pub ip_ranges: Option<PathBuf>,
    /// Describe the network interfaces with EC2 (`serve` only; the table's presence turns it
    /// on).
    pub ec2: Option<Ec2Settings>,
}

/// EC2 enrichment (`[enrich.ec2]`): `serve` describes the network interfaces of each region
/// with `DescribeNetworkInterfaces`, using the standard credential chain (the IAM permission
/// `ec2:DescribeNetworkInterfaces`). Snapshots then carry each interface's `name` (its `Name`
/// tag), `interface_type` and `description`, and its VPC, subnet, instance and availability
/// zone where the records carry none. An interface's private, IPv6 and public addresses become
/// its configured local addresses (unless `[window.local_addresses]` names it), which decide
/// the direction of its records. The interfaces are kept in the state directory
/// (`ec2-interfaces.json`), so a restart has them before EC2 answers. When EC2 fails, the last
/// answer stays in use and snapshots fall back to the records' own fields; the failures are
/// counted (status `enrich`) and logged.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct Ec2Settings {
    /// The regions to describe; empty means the region of the standard chain (`AWS_REGION`,
    /// the profile).
    pub regions: Vec<String>,
    /// How often every region is described again.
    #[serde(with = "humantime_serde")]
    #[schemars(with = "crate::schema::HumanDuration")]
    pub refresh: Duration,
    /// The least time between two lookups of interfaces that records name and the inventory
    /// lacks (an interface created since the last refresh).
    #[serde(with = "humantime_serde")]
    #[schemars(with = "crate::schema::HumanDuration")]
    pub lookup_interval: Duration,
    /// `DescribeNetworkInterfaces` calls per second at most, pages included (EC2 throttles
    /// an account's describe calls together).
    pub max_calls_per_second: f64,
    /// Whether an interface's addresses are its configured local addresses.
    pub local_addresses: bool,
    /// An EC2 endpoint other than AWS's (a VPC endpoint, or an emulator in tests).
    pub endpoint_url: Option<String>,
}

impl Default for Ec2Settings {
    fn default() -> Self {
        Ec2Settings {
            regions: Vec::new(),
            refresh: Duration::from_secs(300),
            lookup_interval: Duration::from_secs(10),
            max_calls_per_second: 5.0,
            local_addresses: true,
            endpoint_url: None,
        }
    }
}

impl Ec2Settings {
    /// Checks the values that have limits.
    pub fn validate(&self) -> Result<(), String> {
        if !(self.max_calls_per_second > 0.0 && self.max_calls_per_second.is_finite()) {
            return Err(format!(
                "enrich.ec2.max_calls_per_second must be a positive number, not {}",
                self.max_calls_per_second
            ));
        }
        if self.refresh < Duration::from_secs(1) {
            return Err("enrich.ec2.refresh must be at least 1s".into());
        }
        Ok(())
    }
}

impl EnrichSettings {
    /// Reads what the settings name.
    pub fn load(&self) -> Result<Option<Arc<AwsRanges>>, String> {
        let Some(path) = &self.ip_ranges else { return Ok(None) };
        let ranges = AwsRanges::load(path).map_err(|e| format!("enrich.ip_ranges: {e}"))?;
        tracing::info!(prefixes = ranges.len(), path = %path.display(), "AWS address ranges read");
        Ok(Some(Arc::new(ranges)))
    }
}

/// The thresholds of findings (see `vpcflowd::window::findings` for each rule).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct DiagnosisSettings {
    /// `port_scan`: distinct destination ports of this interface one remote source reaches in
    /// a window; also `outbound_scan`'s count of distinct remote ports of rejected egress.
    pub scan_ports: u64,
    /// `outbound_scan`: distinct remote addresses this interface's rejected egress reaches.
    pub scan_hosts: u64,
    /// `denied_outbound`: rejected egress flows to a destination, port and protocol not denied
    /// in the interface's history.
    pub denied_flows: u64,
    /// `spike`: a listed source's bytes over its baseline.
    pub spike_ratio: f64,
    /// `spike`: the least bytes in the window for a spike to count.
    pub spike_min_bytes: u64,
    /// `sweep`: interfaces one source must be among the `rejected_sources` of in one window.
    pub sweep_interfaces: u64,
}

impl Default for DiagnosisSettings {
    fn default() -> Self {
        let t = Thresholds::default();
        DiagnosisSettings {
            scan_ports: t.scan_ports,
            scan_hosts: t.scan_hosts,
            denied_flows: t.denied_flows,
            spike_ratio: t.spike_ratio,
            spike_min_bytes: t.spike_min_bytes,
            sweep_interfaces: t.sweep_interfaces,
        }
    }
}

impl DiagnosisSettings {
    /// The engine's thresholds.
    pub fn thresholds(&self) -> Thresholds {
        Thresholds {
            scan_ports: self.scan_ports,
            scan_hosts: self.scan_hosts,
            denied_flows: self.denied_flows,
            spike_ratio: self.spike_ratio,
            spike_min_bytes: self.spike_min_bytes,
            sweep_interfaces: self.sweep_interfaces,
        }
    }
}
