//! The snapshots the API serves: the most recent closed windows of every interface.
//!
//! The engine's snapshot stream feeds the store; a correction (`revision` > 0) replaces the
//! snapshot of its window. Each interface keeps its newest `history` windows, and the store
//! keeps the newest [`MAX_FINDINGS`] findings of every interface for `/api/v1/findings`.

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, RwLock};

use serde::Serialize;

use crate::window::Snapshot;
use crate::window::findings::WindowFinding;

/// Findings the store keeps, newest windows first.
pub(crate) const MAX_FINDINGS: usize = 10_000;

#[derive(Debug, Default)]
struct Inner {
    /// The newest window start among closed windows.
    latest_window: Option<u64>,
    by_interface: BTreeMap<Arc<str>, VecDeque<Arc<Snapshot>>>,
    /// Findings, newest window first (ties in arrival order).
    findings: VecDeque<Arc<WindowFinding>>,
}

/// What `/api/v1/findings` selects: windows starting at `since` or later, one kind, one
/// interface, at most `limit` findings.
#[derive(Debug, Clone, Default, serde::Deserialize)]
pub struct FindingQuery {
    pub since: Option<u64>,
    pub kind: Option<String>,
    pub interface: Option<String>,
    pub limit: Option<usize>,
}

/// See the module documentation.
#[derive(Debug)]
pub struct SnapshotStore {
    history: usize,
    inner: RwLock<Inner>,
}

/// One interface's latest totals, for `/api/v1/interfaces`.
#[derive(Debug, Clone, Serialize)]
pub struct InterfaceSummary {
    pub interface_id: Arc<str>,
    pub account_id: Option<Arc<str>>,
    pub region: Option<Arc<str>>,
    /// The newest window's EC2 name and type and its VPC (absent without them).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<Arc<str>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub interface_type: Option<Arc<str>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub vpc_id: Option<Arc<str>>,
    pub window_start: u64,
    pub window_end: u64,
    pub packets: u64,
    pub bytes: u64,
    pub flows: u64,
    pub rejected_flows: u64,
    pub rejected_bytes: u64,
    pub windows_kept: usize,
    /// The newest window's bytes to and from the interface.
    pub ingress_bytes: u64,
    pub egress_bytes: u64,
    /// The newest window's findings.
    pub findings: usize,
    /// The kept windows, oldest first, for a sparkline.
    pub recent: Vec<RecentWindow>,
}

/// One kept window of an interface, in brief.
#[derive(Debug, Clone, Serialize)]
pub struct RecentWindow {
    pub window_start: u64,
    pub bytes: u64,
    pub rejected_flows: u64,
}

impl SnapshotStore {
    pub fn new(history: usize) -> Self {
        SnapshotStore { history: history.max(1), inner: RwLock::default() }
    }

    /// Takes in one batch from the engine and returns the findings it raises for the first
    /// time (a correction's findings that its window already had are not raised again).
    pub fn insert(&self, batch: Vec<Arc<Snapshot>>) -> Vec<Arc<WindowFinding>> {
        let mut inner = self.inner.write().unwrap_or_else(|e| e.into_inner());
        let mut raised = Vec::new();
        for s in batch {
            if s.revision == 0 {
                inner.latest_window = inner.latest_window.max(Some(s.window_start));
            }
            // A correction of a window the store does not hold (closed before a restart, or
            // past `history`) cannot tell which findings are new: it raises none.
            let known = inner
                .by_interface
                .get(&s.interface_id)
                .is_some_and(|kept| kept.iter().any(|k| k.window_start == s.window_start));
            let newly = record_findings(&mut inner.findings, &s);
            if s.revision == 0 || known {
                raised.extend(newly);
            }
            let kept = inner.by_interface.entry(s.interface_id.clone()).or_default();
            match kept.iter().position(|k| k.window_start <= s.window_start) {
                Some(i) if kept[i].window_start == s.window_start => kept[i] = s,
                Some(i) => kept.insert(i, s),
                None => kept.push_back(s),
            }
            kept.truncate(self.history);
        }
        raised
    }

    /// Every kept snapshot, each interface's oldest window first (a base of the history
    /// journal).
    pub fn all(&self) -> Vec<Arc<Snapshot>> {
        let inner = self.inner.read().unwrap_or_else(|e| e.into_inner());
        inner.by_interface.values().flat_map(|kept| kept.iter().rev().cloned()).collect()
    }

    /// Every interface's snapshot of the most recent closed window, by interface id.
    pub fn latest(&self) -> Vec<Arc<Snapshot>> {
        let inner = self.inner.read().unwrap_or_else(|e| e.into_inner());
        let Some(w) = inner.latest_window else { return Vec::new() };
        inner
            .by_interface
            .values()
            .filter_map(|kept| kept.iter().find(|s| s.window_start == w).cloned())
            .collect()
    }

    /// Each interface with its newest window's totals.
    pub fn interfaces(&self) -> Vec<InterfaceSummary> {
        let inner = self.inner.read().unwrap_or_else(|e| e.into_inner());
        inner
            .by_interface
            .values()
            .filter_map(|kept| {
                let s = kept.front()?;
                Some(InterfaceSummary {
                    interface_id: s.interface_id.clone(),
                    account_id: s.account_id.clone(),
                    region: s.region.clone(),
                    name: s.name.clone(),
                    interface_type: s.interface_type.clone(),
                    vpc_id: s.vpc_id.clone(),
                    window_start: s.window_start,
                    window_end: s.window_end,
                    packets: s.packets,
                    bytes: s.bytes,
                    flows: s.flows,
                    rejected_flows: s.rejected_flows,
                    rejected_bytes: s.rejected_bytes,
                    windows_kept: kept.len(),
                    ingress_bytes: s.ingress.bytes,
                    egress_bytes: s.egress.bytes,
                    findings: s.findings.len(),
                    recent: kept
                        .iter()
                        .rev()
                        .map(|k| RecentWindow {
                            window_start: k.window_start,
                            bytes: k.bytes,
                            rejected_flows: k.rejected_flows,
                        })
                        .collect(),
                })
            })
            .collect()
    }

    /// An interface's newest `limit` windows, newest first; `None` for an unknown interface.
    pub fn interface(&self, id: &str, limit: usize) -> Option<Vec<Arc<Snapshot>>> {
        let inner = self.inner.read().unwrap_or_else(|e| e.into_inner());
        inner.by_interface.get(id).map(|kept| kept.iter().take(limit).cloned().collect())
    }

    /// The newest closed window's start.
    pub fn latest_window(&self) -> Option<u64> {
        self.inner.read().unwrap_or_else(|e| e.into_inner()).latest_window
    }

    /// The findings `q` selects, newest window first.
    pub fn findings(&self, q: &FindingQuery) -> Vec<Arc<WindowFinding>> {
        let inner = self.inner.read().unwrap_or_else(|e| e.into_inner());
        inner
            .findings
            .iter()
            .filter(|f| q.since.is_none_or(|since| f.window_start >= since))
            .filter(|f| q.kind.as_deref().is_none_or(|k| f.finding.kind == k))
            .filter(|f| q.interface.as_deref().is_none_or(|i| &*f.interface_id == i))
            .take(q.limit.unwrap_or(MAX_FINDINGS))
            .cloned()
            .collect()
    }
}

/// Puts a snapshot's findings in place (newest window first), replacing those of an earlier
/// revision of its window, and keeps the newest [`MAX_FINDINGS`]. Returns the findings that are
/// raised for the first time: all of a first revision's, and those of a correction whose kind and
/// subject its window's earlier revision did not have.
fn record_findings(
    findings: &mut VecDeque<Arc<WindowFinding>>,
    s: &Snapshot,
) -> Vec<Arc<WindowFinding>> {
    let same_window =
        |f: &WindowFinding| f.window_start == s.window_start && f.interface_id == s.interface_id;
    let mut earlier = Vec::new();
    if s.revision > 0 {
        findings.retain(|f| {
            let keep = !same_window(f);
            if !keep {
                earlier.push((f.finding.kind, f.finding.subject.clone()));
            }
            keep
        });
    }
    let at =
        findings.iter().position(|f| f.window_start <= s.window_start).unwrap_or(findings.len());
    let mut raised = Vec::new();
    for (i, finding) in s.findings.iter().enumerate() {
        let entry = Arc::new(WindowFinding::of(s, finding));
        findings.insert(at + i, entry.clone());
        if !earlier
            .iter()
            .any(|(kind, subject)| *kind == finding.kind && *subject == finding.subject)
        {
            raised.push(entry);
        }
    }
    findings.truncate(MAX_FINDINGS);
    raised
}
