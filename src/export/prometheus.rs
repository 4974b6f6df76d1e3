//! This module renders the `/metrics` endpoint's window measures: the latest closed window from
//! the snapshot store, written at each scrape in the Prometheus text format.
//!
//! Values are the latest closed window's totals, without sample timestamps: a scrape at time T
//! shows the newest window closed by T (whose bounds are `vpcflowd_window_start_seconds` and
//! `vpcflowd_window_end_seconds`). An interface absent from that window has no series, so
//! nothing stale lingers. Timestamps are left out on purpose: a window closes `lateness` after
//! its end, so samples stamped with the window end would be older than Prometheus's 5-minute
//! lookback and invisible to instant queries.
//!
//! The window part is written straight into the response text, one line per series: the
//! `prometheus` crate's data model (which renders the self-metrics) allocates several times the
//! text's size, which is too much for a large window (see BENCHMARKS.md).

use std::fmt::Write as _;
use std::sync::Arc;

use super::error::ExportError;
use super::measures::{self, ACCOUNT_ID, Get, Group, INTERFACE_ID, REGION, Visit, WINDOW};
use crate::window::Snapshot;
use crate::window::rollup::{RollupKind, rollups};

/// Writes a label value with the exposition format's escapes (`\\`, `\"`, `\n`).
fn escaped(out: &mut String, value: &str) {
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
}

fn family_header(out: &mut String, name: &str, description: &str, unit: &str) {
    let _ = writeln!(out, "# HELP {name} {description} ({unit})\n# TYPE {name} gauge");
}

struct Render<'a> {
    snapshots: &'a [Arc<Snapshot>],
    out: &'a mut String,
}

impl Visit for Render<'_> {
    fn group<T>(&mut self, g: &'static Group<T>) {
        for m in g.measures {
            family_header(self.out, m.prometheus, m.description, m.unit);
            for s in self.snapshots {
                for row in (g.rows)(s) {
                    let value = match m.get {
                        Get::Int(f) => f(s, row).to_string(),
                        Get::Float(f) => f(s, row).to_string(),
                        Get::OptionalInt(f) => match f(s, row) {
                            Some(v) => v.to_string(),
                            None => continue,
                        },
                        Get::OptionalFloat(f) => match f(s, row) {
                            Some(v) => v.to_string(),
                            None => continue,
                        },
                    };
                    let out = &mut *self.out;
                    out.push_str(m.prometheus);
                    out.push('{');
                    for (label, value) in [
                        (INTERFACE_ID.1, &*s.interface_id),
                        (ACCOUNT_ID.1, s.account_id.as_deref().unwrap_or_default()),
                        (REGION.1, s.region.as_deref().unwrap_or_default()),
                    ] {
                        out.push_str(label);
                        out.push_str("=\"");
                        escaped(out, value);
                        out.push_str("\",");
                    }
                    if let Some(k) = &g.key {
                        out.push_str(k.label);
                        out.push_str("=\"");
                        escaped(out, &(k.value)(row));
                        out.push_str("\",");
                    }
                    out.pop();
                    let _ = writeln!(out, "}} {value}");
                }
            }
        }
    }
}

/// Appends the window measures of `snapshots` (one closed window) to `out`.
pub fn render_window(snapshots: &[Arc<Snapshot>], out: &mut String) {
    let Some(first) = snapshots.first() else { return };
    measures::each_interface_group(&mut Render { snapshots, out: &mut *out });
    for m in WINDOW.measures {
        if let Get::Int(f) = m.get {
            family_header(out, m.prometheus, m.description, m.unit);
            let _ = writeln!(out, "{} {}", m.prometheus, f(first, &()));
        }
    }
    render_rollups(snapshots, out);
}

/// The window's roll-ups (`vpcflowd.{kind}.bytes`, `.rejected_flows`, `.interfaces`), one series
/// per region, account, VPC and subnet: exact sums of the interface series above.
fn render_rollups(snapshots: &[Arc<Snapshot>], out: &mut String) {
    for kind in RollupKind::ALL {
        let rolled = rollups(kind, snapshots);
        if rolled.is_empty() {
            continue;
        }
        let label = measures::rollup_label(kind).1;
        let k = kind.as_str();
        for measures::RollupMeasure { name, description, unit, value } in measures::ROLLUP_MEASURES
        {
            let family = format!("vpcflowd_{k}_{name}");
            family_header(out, &family, &format!("{description} of each {k}"), unit);
            for r in &rolled {
                out.push_str(&family);
                out.push('{');
                out.push_str(label);
                out.push_str("=\"");
                escaped(out, &r.id);
                let _ = writeln!(out, "\"}} {}", value(&r.totals));
            }
        }
    }
}

/// The whole `/metrics` text: the registry's metrics (self-metrics) and the latest window.
pub fn render(
    registry: &prometheus::Registry,
    latest: &[Arc<Snapshot>],
) -> Result<String, ExportError> {
    let mut text = prometheus::TextEncoder::new().encode_to_string(&registry.gather())?;
    render_window(latest, &mut text);
    Ok(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_values_are_escaped() {
        let mut out = String::new();
        escaped(&mut out, "a\"b\\c\nd");
        assert_eq!(out, r#"a\"b\\c\nd"#);
    }

    #[test]
    fn an_empty_window_renders_nothing() {
        let mut out = String::new();
        render_window(&[], &mut out);
        assert_eq!(out, "");
    }
}
