//! Provisional totals of the windows still open, read from the shards while they run, so that
//! a reader sees traffic within seconds of the first record rather than when its window
//! closes (a window, a lateness and a slide later).
//!
//! A read takes the interface's entry in its shard's map for as long as it sums the panes, which
//! holds back that shard's records of the same map segment for that long. It sums pane totals
//! and, for each window, its panes' sources, so it costs about what one source table of the
//! window does; it is meant for a person's page, not for polling every interface.

use std::net::IpAddr;
use std::sync::Arc;

use serde::Serialize;

use super::labels::InterfaceLabels;
use super::{EngineConfig, Shard, shard_of};
use crate::window::counters::DirectionTotals;
use crate::window::event::Names;
use crate::window::merge::{sum_by_key, top_n};
use crate::window::pane::{InterfacePanes, Pane};
use crate::window::time::PaneId;

/// Sources listed per provisional window.
pub const OPEN_SOURCES: usize = 10;

/// Reads open windows; cheap to clone.
#[derive(Clone)]
pub struct OpenWindows {
    config: Arc<EngineConfig>,
    shards: Vec<Arc<Shard>>,
    names: Names,
    /// Each interface's labels per pane, as the router writes them for the closer.
    labels: InterfaceLabels,
}

/// The running totals of one window that has not closed, as its snapshot would begin.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ProvisionalWindow {
    /// Always `true`: these numbers grow until the window closes.
    pub provisional: bool,
    pub window_start: u64,
    pub window_end: u64,
    pub interface_id: Arc<str>,
    pub account_id: Option<Arc<str>>,
    pub region: Option<Arc<str>>,
    /// The interface's VPC, subnet, instance and availability zone: each from the window's
    /// oldest pane whose records carry it so far, then as EC2 describes the interface
    /// (`[enrich.ec2]`), as its snapshot will carry them; absent from the JSON without them.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub vpc_id: Option<Arc<str>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub subnet_id: Option<Arc<str>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub instance_id: Option<Arc<str>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub az_id: Option<Arc<str>>,
    /// The interface's `Name` tag, type and description as EC2 describes them
    /// (`[enrich.ec2]`); absent without them.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<Arc<str>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub interface_type: Option<Arc<str>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub description: Option<Arc<str>>,
    pub packets: u64,
    pub bytes: u64,
    pub flows: u64,
    pub rejected_flows: u64,
    pub rejected_bytes: u64,
    pub ingress: DirectionTotals,
    pub egress: DirectionTotals,
    /// The sources with the most bytes so far (at most [`OPEN_SOURCES`]).
    pub sources: Vec<ProvisionalSource>,
}

/// One source of a provisional window.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ProvisionalSource {
    pub address: IpAddr,
    pub packets: u64,
    pub bytes: u64,
    pub flows: u64,
    pub rejected_flows: u64,
}

impl OpenWindows {
    pub(super) fn new(
        config: Arc<EngineConfig>,
        shards: Vec<Arc<Shard>>,
        (names, labels): (Names, InterfaceLabels),
    ) -> Self {
        OpenWindows { config, shards, names, labels }
    }

    /// The windows of `interface_id` that end after `watermark` and hold data, oldest first;
    /// `None` for an interface the engine has never seen.
    pub fn of(&self, interface_id: &str, watermark: Option<u64>) -> Option<Vec<ProvisionalWindow>> {
        let names: Vec<Arc<str>> = self.names.read().clone();
        let id = names.iter().position(|n| &**n == interface_id)? as u32;
        let shard = &self.shards[shard_of(id, self.shards.len())];
        let Some(state) = shard.interfaces.get(&id) else { return Some(Vec::new()) };
        Some(self.windows(&state, (id, &names), watermark.unwrap_or(0), OPEN_SOURCES))
    }

    /// Every interface's newest open window, without its sources, by interface id.
    pub fn newest_of_all(&self, watermark: Option<u64>) -> Vec<ProvisionalWindow> {
        let wm = watermark.unwrap_or(0);
        // A copy of the names (an `Arc` each), so that the router, which adds names under the
        // write lock, never waits for this walk over every interface.
        let names: Vec<Arc<str>> = self.names.read().clone();
        let mut all = Vec::new();
        for shard in &self.shards {
            for entry in shard.interfaces.iter() {
                let newest = self.windows(entry.value(), (*entry.key(), &names), wm, 0).pop();
                all.extend(newest);
            }
        }
        all.sort_by(|a, b| a.interface_id.cmp(&b.interface_id));
        all
    }

    fn windows(
        &self,
        state: &InterfacePanes,
        (id, names): (u32, &[Arc<str>]),
        wm: u64,
        sources: usize,
    ) -> Vec<ProvisionalWindow> {
        let spec = self.config.spec;
        let Some(name) = names.get(id as usize) else { return Vec::new() };
        let newest = state.panes.back().map(|(p, _)| *p);
        let oldest = state.panes.front().map(|(p, _)| *p);
        let (Some(newest), Some(oldest)) = (newest, oldest) else { return Vec::new() };
        let first = oldest.saturating_sub(spec.panes() - 1);
        (first..=newest)
            .filter(|&k| spec.window_end(k) > wm)
            .filter_map(|k| {
                let panes: Vec<&Pane> = state
                    .panes
                    .iter()
                    .filter(|(p, _)| (k..k + spec.panes()).contains(p))
                    .map(|(_, pane)| pane)
                    .collect();
                let bounds = (spec.pane_start(k), spec.window_end(k));
                let mut window = provisional(&panes, bounds, (name, names), sources)?;
                self.label(&mut window, (id, k), names);
                Some(window)
            })
            .collect()
    }

    /// Labels interface `id`'s window `k` as the closer will label its snapshot: the records'
    /// own fields first, then EC2's description of the interface.
    fn label(&self, window: &mut ProvisionalWindow, (id, k): (u32, PaneId), names: &[Arc<str>]) {
        let ids = self.labels.window(id, k, k + self.config.spec.panes() - 1);
        let [vpc, subnet, instance, az] =
            ids.map(|i| i.and_then(|i| names.get(i as usize)).cloned());
        let w = window;
        (w.vpc_id, w.subnet_id, w.instance_id, w.az_id) = (vpc, subnet, instance, az);
        if let Some(inventory) = &self.config.inventory {
            let records = [&mut w.vpc_id, &mut w.subnet_id, &mut w.instance_id, &mut w.az_id];
            let described = [&mut w.name, &mut w.interface_type, &mut w.description];
            inventory.fill(&w.interface_id, records, described);
        }
    }
}

/// The running totals of interface `name`'s window from `start` to `end` over its `panes`
/// (account and region named from `names`), with its `listed` largest sources, or `None` when
/// they hold no traffic.
fn provisional(
    panes: &[&Pane],
    (start, end): (u64, u64),
    (name, names): (&Arc<str>, &[Arc<str>]),
    listed: usize,
) -> Option<ProvisionalWindow> {
    let named = |id: Option<u32>| id.and_then(|i| names.get(i as usize)).cloned();
    let mut directions = [DirectionTotals::default(); 3];
    for pane in panes {
        for (sum, d) in directions.iter_mut().zip(&pane.directions) {
            sum.add(d);
        }
    }
    let mut total = DirectionTotals::default();
    for d in &directions {
        total.add(d);
    }
    if total.flows == 0 {
        return None;
    }
    let summed = if listed == 0 {
        Vec::new()
    } else {
        sum_by_key(
            panes
                .iter()
                .map(|p| (p.sources.len(), p.sources.iter().map(|(a, e)| (*a, e.traffic())))),
        )
    };
    let (top, _rest) = top_n(summed, listed);
    let sources = top
        .into_iter()
        .map(|(address, t)| ProvisionalSource {
            address,
            packets: t.packets,
            bytes: t.bytes,
            flows: t.flows,
            rejected_flows: t.rejected_flows,
        })
        .collect();
    Some(ProvisionalWindow {
        provisional: true,
        window_start: start,
        window_end: end,
        interface_id: name.clone(),
        account_id: named(panes.iter().find_map(|p| p.account)),
        region: named(panes.iter().find_map(|p| p.region)),
        vpc_id: None,
        subnet_id: None,
        instance_id: None,
        az_id: None,
        name: None,
        interface_type: None,
        description: None,
        packets: total.packets,
        bytes: total.bytes,
        flows: total.flows,
        rejected_flows: total.rejected_flows,
        rejected_bytes: total.rejected_bytes,
        ingress: directions[crate::window::direction::Direction::Ingress.index()],
        egress: directions[crate::window::direction::Direction::Egress.index()],
        sources,
    })
}
