//! The engine's configuration: window, lateness, caps, shards, and the horizons they imply.

use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;

use super::super::diagnosis::Detail;
use super::super::direction::DirectionSettings;
use super::super::findings::Thresholds;
use super::super::pane::Caps;
use super::super::snapshot::TopN;
use super::super::time::{PaneId, TimeField, TimeMode, WindowSpec};

/// What to do with a record whose pane is already sealed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LatePolicy {
    /// Count it (in `late_records` of the windows still open over its pane) and drop its traffic.
    #[default]
    Drop,
    /// Apply it, and re-emit each already-closed window it changes with `revision` + 1.
    Update,
}

/// Everything the engine needs to know.
#[derive(Debug, Clone, Serialize)]
pub struct EngineConfig {
    #[serde(flatten)]
    pub spec: WindowSpec,
    pub lateness_secs: u64,
    pub idle_timeout: Duration,
    pub time: TimeMode,
    pub time_field: TimeField,
    pub late: LatePolicy,
    pub top: TopN,
    /// How much per-source detail snapshots give.
    pub detail: Detail,
    /// Window lengths of history in a source's baseline.
    pub baseline_windows: u64,
    /// The thresholds of findings.
    pub thresholds: Thresholds,
    pub caps: Caps,
    pub shards: usize,
    /// The region for records that do not carry one.
    pub region: Option<String>,
    /// What is dropped before windows.
    pub filters: crate::record::filter::FilterSettings,
    /// AWS's address ranges, to name the service of sources and destinations in AWS.
    #[serde(skip)]
    pub aws_ranges: Option<Arc<crate::window::aws_ranges::AwsRanges>>,
    /// What EC2 describes of each interface (`[enrich.ec2]`): labels for the closer, local
    /// addresses for the router.
    #[serde(skip)]
    pub inventory: Option<Arc<crate::window::inventory::Inventory>>,
    /// How each record's direction is decided.
    #[serde(skip)]
    pub direction: DirectionSettings,
    /// Events per batch sent to a shard.
    pub batch_size: usize,
    /// Batches queued per shard before the router waits.
    pub channel_capacity: usize,
}

impl EngineConfig {
    pub fn new(spec: WindowSpec) -> Self {
        EngineConfig {
            spec,
            lateness_secs: 600,
            idle_timeout: Duration::from_secs(30),
            time: TimeMode::Event,
            time_field: TimeField::Start,
            late: LatePolicy::Drop,
            top: TopN::default(),
            detail: Detail::Always,
            baseline_windows: 12,
            thresholds: Thresholds::default(),
            caps: Caps::default(),
            shards: std::thread::available_parallelism().map_or(2, |n| n.get()),
            region: None,
            filters: Default::default(),
            aws_ranges: None,
            inventory: None,
            direction: DirectionSettings::default(),
            // A shard applies a batch grouped by interface: with a thousand busy interfaces a
            // batch of 8192 gives each a run of several events on its pane's cache lines (see
            // BENCHMARKS.md). Four batches queued per shard hold 32,768 events (about 3 MiB).
            batch_size: 8192,
            channel_capacity: 4,
        }
    }

    /// The oldest pane that can still take a late record at watermark `wm`: one with a window
    /// still open, or with `--late update`, one sealed less than a lateness ago.
    pub fn late_horizon(&self, wm: u64) -> PaneId {
        let extra = match self.late {
            LatePolicy::Drop => 0,
            LatePolicy::Update => self.lateness_secs,
        };
        let horizon = self.spec.window().saturating_add(extra);
        match wm.checked_sub(horizon) {
            // Pane p is past the horizon once p·S + horizon <= wm.
            Some(x) => (x / self.spec.slide()).saturating_add(1),
            None => 0,
        }
    }

    /// The oldest pane whose state is kept at watermark `wm`. With `--late update`, the state
    /// covers every pane of a window that may still be corrected, so a correction is built from
    /// the whole window.
    pub fn state_horizon(&self, wm: u64) -> PaneId {
        let late = self.late_horizon(wm);
        match self.late {
            LatePolicy::Drop => late,
            LatePolicy::Update => late.saturating_sub(self.spec.panes() - 1),
        }
    }
}

impl EngineConfig {
    /// Panes of source history kept per interface before its newest: the baseline span, and
    /// with `--late update` the distance back to the oldest window a late record can still
    /// correct (a window and a lateness, and a pane each for rounding).
    pub fn history_panes(&self) -> u64 {
        let n = self.spec.panes();
        let corrections = match self.late {
            LatePolicy::Drop => 0,
            LatePolicy::Update => {
                n.saturating_add(self.lateness_secs.div_ceil(self.spec.slide())).saturating_add(2)
            }
        };
        n.saturating_mul(self.baseline_windows).saturating_add(corrections)
    }
}
