//! The window flags shared by `replay` and `serve`. Each is optional: unset flags leave the
//! setting to the configuration file, the environment or the default ([`WindowSettings`], whose
//! doc comments describe each setting).

use std::time::Duration;

use clap::Args;
use clap::builder::{PossibleValue, PossibleValuesParser, TypedValueParser};
use serde_json::{Map, Value};

use crate::settings::WindowSettings;
use crate::window::diagnosis::Detail;
use crate::window::direction::{AddressMode, DirectionMode};
use crate::window::{LatePolicy, TimeField, TimeMode};

#[derive(Debug, Clone, Default, Args)]
pub struct WindowArgs {
    /// Window length, a whole multiple of --slide [default: 5m].
    #[arg(long, value_parser = humantime::parse_duration, help_heading = "Windows")]
    pub window: Option<Duration>,

    /// How often a window closes; windows align to multiples of it [default: 1m].
    #[arg(long, value_parser = humantime::parse_duration, help_heading = "Windows")]
    pub slide: Option<Duration>,

    /// How far the watermark trails the newest event time [default: 10m].
    #[arg(long, value_parser = humantime::parse_duration, help_heading = "Windows")]
    pub lateness: Option<Duration>,

    /// After this long without records the watermark follows the wall clock [default: 30s].
    #[arg(long, value_parser = humantime::parse_duration, help_heading = "Windows")]
    pub idle_timeout: Option<Duration>,

    /// Window on the record's time or on arrival [default: event].
    #[arg(long, value_parser = time_mode(), help_heading = "Windows")]
    pub time: Option<TimeMode>,

    /// The record field that gives event time [default: start].
    #[arg(long, value_parser = time_field(), help_heading = "Windows")]
    pub time_field: Option<TimeField>,

    /// Late records: count and drop, or apply and re-emit corrected snapshots [default: drop].
    #[arg(long, value_parser = late_policy(), help_heading = "Windows")]
    pub late: Option<LatePolicy>,

    /// Decide each record's direction, or list every record's source and destination
    /// [default: auto].
    #[arg(long, value_parser = direction_mode(), help_heading = "Measures")]
    pub direction: Option<DirectionMode>,

    /// Attribute traffic to packet-level or header addresses [default: packet].
    #[arg(long, value_parser = address_mode(), help_heading = "Measures")]
    pub address: Option<AddressMode>,

    /// A JSON file of each interface's own addresses: {"eni-…": ["10.0.1.17", "10.0.2.0/24"]}.
    #[arg(long, help_heading = "Measures")]
    pub local_addresses: Option<std::path::PathBuf>,

    /// Sources listed per snapshot [default: 15].
    #[arg(long, help_heading = "Measures")]
    pub top_sources: Option<usize>,

    /// Destinations listed per snapshot [default: 15].
    #[arg(long, help_heading = "Measures")]
    pub top_destinations: Option<usize>,

    /// Largest flows listed per listed source [default: 10].
    #[arg(long, help_heading = "Measures")]
    pub top_flows: Option<usize>,

    /// Destinations listed per listed source, summed over ports [default: 5].
    #[arg(long, help_heading = "Measures")]
    pub top_source_destinations: Option<usize>,

    /// Sources listed by rejected flows, whatever their bytes [default: 15].
    #[arg(long, help_heading = "Measures")]
    pub top_rejected_sources: Option<usize>,

    /// Window lengths of history a source's baseline is the mean over [default: 12].
    #[arg(long, help_heading = "Measures")]
    pub baseline_windows: Option<usize>,

    /// Per-source top flows, pane series and destinations: for every listed source, only
    /// for one with a finding, or for none [default: always].
    #[arg(long, value_parser = detail_mode(), help_heading = "Measures")]
    pub detail: Option<Detail>,

    /// Sources tracked exactly per interface per pane [default: 10000].
    #[arg(long, help_heading = "Memory")]
    pub max_sources: Option<usize>,

    /// Destinations tracked exactly per interface per pane [default: 10000].
    #[arg(long, help_heading = "Memory")]
    pub max_destinations: Option<usize>,

    /// Flows tracked exactly per source per pane [default: 64].
    #[arg(long, help_heading = "Memory")]
    pub max_flows: Option<usize>,

    /// Worker shards [default: the number of cores].
    #[arg(long, help_heading = "Engine")]
    pub shards: Option<usize>,

    /// The AWS region reported for records that carry no `region` field.
    #[arg(long, help_heading = "Engine")]
    pub region: Option<String>,
}

impl WindowArgs {
    /// The settings: defaults with the given flags applied.
    pub fn settings(&self) -> WindowSettings {
        let defaults = serde_json::to_value(WindowSettings::default()).expect("settings serialize");
        let mut merged = defaults.as_object().cloned().unwrap_or_default();
        merged.extend(self.overrides());
        serde_json::from_value(Value::Object(merged)).expect("flags are typed like the settings")
    }

    /// The flags that were given, keyed like [`WindowSettings`]'s fields.
    pub fn overrides(&self) -> Map<String, Value> {
        let dur = |d: &Option<Duration>| {
            d.map(|d| Value::from(humantime::format_duration(d).to_string()))
        };
        let mut m = Map::new();
        let entries = [
            ("window", dur(&self.window)),
            ("slide", dur(&self.slide)),
            ("lateness", dur(&self.lateness)),
            ("idle_timeout", dur(&self.idle_timeout)),
            ("time", enum_value(self.time)),
            ("time_field", enum_value(self.time_field)),
            ("late", enum_value(self.late)),
            ("top_sources", self.top_sources.map(Value::from)),
            ("top_destinations", self.top_destinations.map(Value::from)),
            ("top_flows", self.top_flows.map(Value::from)),
            ("top_source_destinations", self.top_source_destinations.map(Value::from)),
            ("top_rejected_sources", self.top_rejected_sources.map(Value::from)),
            ("baseline_windows", self.baseline_windows.map(Value::from)),
            ("detail", enum_value(self.detail)),
            ("max_sources", self.max_sources.map(Value::from)),
            ("max_destinations", self.max_destinations.map(Value::from)),
            ("max_flows", self.max_flows.map(Value::from)),
            ("shards", self.shards.map(Value::from)),
            ("region", self.region.clone().map(Value::from)),
            ("direction", enum_value(self.direction)),
            ("address", enum_value(self.address)),
            (
                "local_addresses_file",
                self.local_addresses.as_ref().map(|p| Value::from(p.display().to_string())),
            ),
        ];
        for (k, v) in entries {
            if let Some(v) = v {
                m.insert(k.to_string(), v);
            }
        }
        m
    }
}

/// `--time`'s values, each with its help.
fn time_mode() -> impl TypedValueParser<Value = TimeMode> {
    PossibleValuesParser::new([
        PossibleValue::new("event")
            .help("The record's own time (`start`, or `end` with `--time-field end`)"),
        PossibleValue::new("processing").help("The time the record arrived"),
    ])
    .map(|v| if v == "processing" { TimeMode::Processing } else { TimeMode::Event })
}

/// `--time-field`'s values.
fn time_field() -> impl TypedValueParser<Value = TimeField> {
    PossibleValuesParser::new(["start", "end"])
        .map(|v| if v == "end" { TimeField::End } else { TimeField::Start })
}

/// `--late`'s values, each with its help.
fn late_policy() -> impl TypedValueParser<Value = LatePolicy> {
    PossibleValuesParser::new([
        PossibleValue::new("drop").help(
            "Count it (in `late_records` of the windows still open over its pane) and drop its \
             traffic",
        ),
        PossibleValue::new("update").help(
            "Apply it, and re-emit each already-closed window it changes with `revision` + 1",
        ),
    ])
    .map(|v| if v == "update" { LatePolicy::Update } else { LatePolicy::Drop })
}

/// `--direction`'s values, each with its help.
fn direction_mode() -> impl TypedValueParser<Value = DirectionMode> {
    PossibleValuesParser::new([
        PossibleValue::new("auto").help(
            "By `flow-direction`, else configured local addresses, else learned ones: sources \
             send to the interface, destinations receive from it",
        ),
        PossibleValue::new("off").help("Every record's source and destination, shares of all"),
    ])
    .map(|v| if v == "off" { DirectionMode::Off } else { DirectionMode::Auto })
}

/// `--address`'s values, each with its help.
fn address_mode() -> impl TypedValueParser<Value = AddressMode> {
    PossibleValuesParser::new([
        PossibleValue::new("packet")
            .help("`pkt-srcaddr` / `pkt-dstaddr` where the layout has them"),
        PossibleValue::new("header").help("Always `srcaddr` / `dstaddr`"),
    ])
    .map(|v| if v == "header" { AddressMode::Header } else { AddressMode::Packet })
}

/// `--detail`'s values, each with its help.
fn detail_mode() -> impl TypedValueParser<Value = Detail> {
    PossibleValuesParser::new([
        PossibleValue::new("always").help("Every listed source"),
        PossibleValue::new("on_finding")
            .help("Only a source that scans ports (100 or more) or spikes (5x its baseline)"),
        PossibleValue::new("off").help("No source: scalar measures only"),
    ])
    .map(|v| match v.as_str() {
        "on_finding" => Detail::OnFinding,
        "off" => Detail::Off,
        _ => Detail::Always,
    })
}

/// An enumerated setting as the settings serialize it (`"update"`, `"end"`, …).
fn enum_value<T: serde::Serialize>(v: Option<T>) -> Option<Value> {
    v.map(|t| serde_json::to_value(t).expect("a unit enum serializes"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unset_flags_keep_the_defaults_and_set_ones_win() {
        assert_eq!(WindowArgs::default().settings(), WindowSettings::default());
        let args = WindowArgs {
            window: Some(Duration::from_secs(120)),
            late: Some(LatePolicy::Update),
            top_flows: Some(3),
            ..Default::default()
        };
        let s = args.settings();
        assert_eq!(s.window, Duration::from_secs(120));
        assert_eq!(s.late, LatePolicy::Update);
        assert_eq!(s.top_flows, 3);
        assert_eq!(s.slide, Duration::from_secs(60));
    }
}
