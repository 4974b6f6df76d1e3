//! The `/metrics` endpoint's window measures: a Prometheus collector that renders the latest
//! closed window from the snapshot store at each scrape.
//!
//! Values are the latest closed window's totals, without sample timestamps: a scrape at time T
//! shows the newest window closed by T (whose bounds are `vpcflowd_window_start_seconds` and
//! `vpcflowd_window_end_seconds`). An interface absent from that window has no series, so
//! nothing stale lingers. Timestamps are left out on purpose: a window closes `lateness` after
//! its end, so samples stamped with the window end would be older than Prometheus's 5-minute
//! lookback and invisible to instant queries.

use std::sync::Arc;

use prometheus::core::{Collector, Desc};
use prometheus::proto::{Gauge, LabelPair, Metric, MetricFamily, MetricType};

use super::measures::{self, ACCOUNT_ID, Get, Group, INTERFACE_ID, REGION, Visit, WINDOW};
use crate::window::Snapshot;

/// Where the collector reads the latest closed window's snapshots.
pub type Latest = Arc<dyn Fn() -> Vec<Arc<Snapshot>> + Send + Sync>;

/// See the module documentation.
pub struct WindowCollector {
    latest: Latest,
    descs: Vec<Desc>,
}

fn help(description: &str, unit: &str) -> String {
    format!("{description} ({unit})")
}

impl WindowCollector {
    pub fn new(latest: Latest) -> Result<Self, String> {
        struct Descs(Vec<Desc>, Result<(), String>);
        impl Visit for Descs {
            fn group<T>(&mut self, g: &'static Group<T>) {
                let mut labels: Vec<String> =
                    [INTERFACE_ID.1, ACCOUNT_ID.1, REGION.1].map(String::from).to_vec();
                if let Some(k) = &g.key {
                    labels.push(k.label.into());
                }
                for m in g.measures {
                    match Desc::new(
                        m.prometheus.into(),
                        help(m.description, m.unit),
                        labels.clone(),
                        Default::default(),
                    ) {
                        Ok(d) => self.0.push(d),
                        Err(e) => self.1 = Err(format!("{}: {e}", m.prometheus)),
                    }
                }
            }
        }
        let mut d = Descs(Vec::new(), Ok(()));
        measures::each_interface_group(&mut d);
        for m in WINDOW.measures {
            d.0.push(
                Desc::new(
                    m.prometheus.into(),
                    help(m.description, m.unit),
                    vec![],
                    Default::default(),
                )
                .map_err(|e| e.to_string())?,
            );
        }
        d.1?;
        Ok(WindowCollector { latest, descs: d.0 })
    }
}

fn label(name: &str, value: &str) -> LabelPair {
    let mut l = LabelPair::default();
    l.set_name(name.into());
    l.set_value(value.into());
    l
}

fn gauge(labels: Vec<LabelPair>, value: f64) -> Metric {
    let mut g = Gauge::default();
    g.set_value(value);
    let mut m = Metric::default();
    m.set_label(labels);
    m.set_gauge(g);
    m
}

fn family(name: &str, description: &str, unit: &str, metrics: Vec<Metric>) -> MetricFamily {
    let mut f = MetricFamily::default();
    f.set_name(name.into());
    f.set_help(help(description, unit));
    f.set_field_type(MetricType::GAUGE);
    f.set_metric(metrics);
    f
}

/// Renders the groups of every snapshot.
struct Render<'a> {
    snapshots: &'a [Arc<Snapshot>],
    families: Vec<MetricFamily>,
}

impl Visit for Render<'_> {
    fn group<T>(&mut self, g: &'static Group<T>) {
        let mut per_measure: Vec<Vec<Metric>> = g.measures.iter().map(|_| Vec::new()).collect();
        for s in self.snapshots {
            let base = [
                label(INTERFACE_ID.1, &s.interface_id),
                label(ACCOUNT_ID.1, s.account_id.as_deref().unwrap_or_default()),
                label(REGION.1, s.region.as_deref().unwrap_or_default()),
            ];
            for row in (g.rows)(s) {
                let mut labels = base.to_vec();
                if let Some(k) = &g.key {
                    labels.push(label(k.label, &(k.value)(row)));
                }
                for (m, out) in g.measures.iter().zip(per_measure.iter_mut()) {
                    let value = match m.get {
                        Get::Int(f) => f(s, row) as f64,
                        Get::Float(f) => f(s, row),
                    };
                    out.push(gauge(labels.clone(), value));
                }
            }
        }
        for (m, metrics) in g.measures.iter().zip(per_measure) {
            self.families.push(family(m.prometheus, m.description, m.unit, metrics));
        }
    }
}

impl Collector for WindowCollector {
    fn desc(&self) -> Vec<&Desc> {
        self.descs.iter().collect()
    }

    fn collect(&self) -> Vec<MetricFamily> {
        let snapshots = (self.latest)();
        let Some(first) = snapshots.first() else { return Vec::new() };
        let mut r = Render { snapshots: &snapshots, families: Vec::new() };
        measures::each_interface_group(&mut r);
        for m in WINDOW.measures {
            let Get::Int(f) = m.get else { continue };
            let value = f(first, &()) as f64;
            r.families.push(family(
                m.prometheus,
                m.description,
                m.unit,
                vec![gauge(vec![], value)],
            ));
        }
        r.families
    }
}

/// Renders a registry in the Prometheus text exposition format.
pub fn render(registry: &prometheus::Registry) -> Result<String, String> {
    prometheus::TextEncoder::new().encode_to_string(&registry.gather()).map_err(|e| e.to_string())
}
