//! The finding-threshold flags shared by `replay` and `serve`. Unset flags leave the setting to
//! the configuration file's `[diagnosis]` table, the environment or the default
//! ([`DiagnosisSettings`], whose doc comments describe each one).

use clap::Args;
use serde_json::{Map, Value};

use crate::settings::DiagnosisSettings;

#[derive(Debug, Clone, Default, Args)]
pub struct DiagnosisArgs {
    /// Distinct destination ports that make a port scan [default: 100].
    #[arg(long, help_heading = "Findings")]
    pub scan_ports: Option<u64>,

    /// Distinct remote addresses of rejected egress that make an outbound scan [default: 50].
    #[arg(long, help_heading = "Findings")]
    pub scan_hosts: Option<u64>,

    /// Rejected egress flows to a new destination that make a denied-outbound finding
    /// [default: 10].
    #[arg(long, help_heading = "Findings")]
    pub denied_flows: Option<u64>,

    /// A listed source's bytes over its baseline that make a spike [default: 5].
    #[arg(long, help_heading = "Findings")]
    pub spike_ratio: Option<f64>,

    /// The least bytes in the window for a spike [default: 10000000].
    #[arg(long, help_heading = "Findings")]
    pub spike_min_bytes: Option<u64>,

    /// Interfaces a source must be rejected on in one window to make a sweep [default: 10].
    #[arg(long, help_heading = "Findings")]
    pub sweep_interfaces: Option<u64>,
}

impl DiagnosisArgs {
    /// The settings: defaults with the given flags applied.
    pub fn settings(&self) -> DiagnosisSettings {
        let defaults = DiagnosisSettings::default();
        DiagnosisSettings {
            scan_ports: self.scan_ports.unwrap_or(defaults.scan_ports),
            scan_hosts: self.scan_hosts.unwrap_or(defaults.scan_hosts),
            denied_flows: self.denied_flows.unwrap_or(defaults.denied_flows),
            spike_ratio: self.spike_ratio.unwrap_or(defaults.spike_ratio),
            spike_min_bytes: self.spike_min_bytes.unwrap_or(defaults.spike_min_bytes),
            sweep_interfaces: self.sweep_interfaces.unwrap_or(defaults.sweep_interfaces),
        }
    }

    /// The flags that were given, keyed like [`DiagnosisSettings`]'s fields.
    pub fn overrides(&self) -> Map<String, Value> {
        let entries = [
            ("scan_ports", self.scan_ports.map(Value::from)),
            ("scan_hosts", self.scan_hosts.map(Value::from)),
            ("denied_flows", self.denied_flows.map(Value::from)),
            ("spike_ratio", self.spike_ratio.map(Value::from)),
            ("spike_min_bytes", self.spike_min_bytes.map(Value::from)),
            ("sweep_interfaces", self.sweep_interfaces.map(Value::from)),
        ];
        entries.into_iter().filter_map(|(k, v)| Some((k.to_string(), v?))).collect()
    }
}
