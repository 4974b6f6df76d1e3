//! The window options shared by `replay` and `serve`. Their doc comments are the `--help` text.

use std::time::Duration;

use clap::Args;

use crate::window::{Caps, EngineConfig, LatePolicy, TimeField, TimeMode, TopN, WindowSpec};

#[derive(Debug, Clone, Args)]
pub struct WindowArgs {
    /// Window length (e.g. 5m, 300s); a whole multiple of --slide.
    #[arg(long, default_value = "5m", value_parser = humantime::parse_duration, help_heading = "Windows")]
    pub window: Duration,

    /// How often a window closes; windows are aligned to multiples of it since the Unix epoch.
    #[arg(long, default_value = "1m", value_parser = humantime::parse_duration, help_heading = "Windows")]
    pub slide: Duration,

    /// How far behind the newest event time the watermark trails. Flow-log records arrive up
    /// to 10 minutes after capture, plus delivery delay.
    #[arg(long, default_value = "10m", value_parser = humantime::parse_duration, help_heading = "Windows")]
    pub lateness: Duration,

    /// With no record for this long, the watermark moves on with the wall clock so that the
    /// last windows of a live stream close.
    #[arg(long, default_value = "30s", value_parser = humantime::parse_duration, help_heading = "Windows")]
    pub idle_timeout: Duration,

    /// Window on event time (the record's own time) or processing time (arrival).
    #[arg(long, value_enum, default_value_t, help_heading = "Windows")]
    pub time: TimeMode,

    /// The record field that gives event time (records without it use the other, then arrival).
    #[arg(long, value_enum, default_value_t, help_heading = "Windows")]
    pub time_field: TimeField,

    /// Late records (for panes already closed): count and drop them, or apply them and
    /// re-emit corrected snapshots with a higher `revision`.
    #[arg(long, value_enum, default_value_t, help_heading = "Windows")]
    pub late: LatePolicy,

    /// Sources listed per snapshot (the rest is in `other_sources`).
    #[arg(long, default_value_t = 15, help_heading = "Measures")]
    pub top_sources: usize,

    /// Destinations listed per snapshot (the rest is in `other_destinations`).
    #[arg(long, default_value_t = 15, help_heading = "Measures")]
    pub top_destinations: usize,

    /// Largest flows listed per listed source.
    #[arg(long, default_value_t = 10, help_heading = "Measures")]
    pub top_flows: usize,

    /// Sources tracked exactly per interface per pane; beyond, heavy hitters are kept and the
    /// snapshot reports its error bound.
    #[arg(long, default_value_t = 10_000, help_heading = "Memory")]
    pub max_sources: usize,

    /// Destinations tracked exactly per interface per pane.
    #[arg(long, default_value_t = 10_000, help_heading = "Memory")]
    pub max_destinations: usize,

    /// Flows tracked exactly per source per pane.
    #[arg(long, default_value_t = 64, help_heading = "Memory")]
    pub max_flows: usize,

    /// Worker shards (default: the number of cores).
    #[arg(long, help_heading = "Engine")]
    pub shards: Option<usize>,

    /// The AWS region reported for records that carry no `region` field.
    #[arg(long, help_heading = "Engine")]
    pub region: Option<String>,
}

impl WindowArgs {
    /// The engine configuration, or a message naming the bad option.
    pub fn to_config(&self) -> Result<EngineConfig, String> {
        let spec = WindowSpec::new(self.window, self.slide).map_err(|e| e.to_string())?;
        if self.lateness.subsec_nanos() != 0 {
            return Err(format!("--lateness must be whole seconds (got {:?})", self.lateness));
        }
        if self.shards == Some(0) {
            return Err("--shards must be at least 1".into());
        }
        for (name, v) in [
            ("--max-sources", self.max_sources),
            ("--max-destinations", self.max_destinations),
            ("--max-flows", self.max_flows),
        ] {
            if v < 2 {
                return Err(format!("{name} must be at least 2 (got {v})"));
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
        };
        c.caps = Caps {
            sources: self.max_sources,
            destinations: self.max_destinations,
            flows: self.max_flows,
        };
        if let Some(n) = self.shards {
            c.shards = n;
        }
        c.region = self.region.clone();
        Ok(c)
    }
}
