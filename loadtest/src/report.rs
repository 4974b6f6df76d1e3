//! The report: throughput, acknowledgement latency percentiles (hdrhistogram), responses and
//! retries by status, the server's CPU and peak RSS; as a table or JSON.

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use hdrhistogram::Histogram;
use indicatif::{ProgressBar, ProgressStyle};
use serde_json::{Value, json};

use crate::target::Outcome;

pub struct Report {
    pub elapsed: Duration,
    pub records: u64,
    pub requests: u64,
    pub body_bytes: u64,
    pub raw_bytes: u64,
    pub retries: u64,
    pub rejected_requests: u64,
    pub statuses: BTreeMap<String, u64>,
    latency: Histogram<u64>,
    pub server_cpu_seconds: Option<f64>,
    pub server_peak_rss_bytes: Option<u64>,
    /// The harness's own CPU while sending (it shares the machine with the server).
    pub harness_cpu_seconds: Option<f64>,
    pub verified_snapshots: Option<usize>,
    /// With --verify: from the first send until the server had taken in every record.
    pub taken_in: Option<Duration>,
}

impl Report {
    pub fn new(elapsed: Duration) -> Self {
        Report {
            elapsed,
            records: 0,
            requests: 0,
            body_bytes: 0,
            raw_bytes: 0,
            retries: 0,
            rejected_requests: 0,
            statuses: BTreeMap::new(),
            latency: Histogram::new_with_bounds(1, 600_000_000, 3).expect("histogram bounds"),
            server_cpu_seconds: None,
            server_peak_rss_bytes: None,
            harness_cpu_seconds: None,
            verified_snapshots: None,
            taken_in: None,
        }
    }

    pub fn add(&mut self, records: usize, body: usize, raw: usize, o: &Outcome) {
        self.requests += 1;
        for s in &o.statuses {
            *self.statuses.entry(s.clone()).or_default() += 1;
        }
        self.retries += o.statuses.len().saturating_sub(1) as u64;
        if o.accepted {
            self.records += records as u64;
            self.body_bytes += body as u64;
            self.raw_bytes += raw as u64;
            let _ = self.latency.record((o.latency.as_micros() as u64).max(1));
        } else {
            self.rejected_requests += 1;
        }
    }

    fn secs(&self) -> f64 {
        self.elapsed.as_secs_f64().max(1e-9)
    }

    fn percentile_ms(&self, q: f64) -> f64 {
        self.latency.value_at_quantile(q) as f64 / 1000.0
    }

    pub fn to_json(&self) -> Value {
        json!({
            "elapsed_secs": self.secs(),
            "records_accepted": self.records,
            "records_per_sec": self.records as f64 / self.secs(),
            "requests": self.requests,
            "requests_never_accepted": self.rejected_requests,
            "retries": self.retries,
            "wire_mb_per_sec": self.body_bytes as f64 / self.secs() / 1e6,
            "json_mb_per_sec": self.raw_bytes as f64 / self.secs() / 1e6,
            "ack_latency_ms": {"p50": self.percentile_ms(0.5), "p90": self.percentile_ms(0.9),
                               "p99": self.percentile_ms(0.99), "max": self.latency.max() as f64 / 1000.0},
            "responses": self.statuses.iter().map(|(k, v)| (k.clone(), json!(v))).collect::<serde_json::Map<_, _>>(),
            "server_cpu_seconds": self.server_cpu_seconds,
            "server_peak_rss_bytes": self.server_peak_rss_bytes,
            "harness_cpu_seconds": self.harness_cpu_seconds,
            "verified_snapshots": self.verified_snapshots,
            "taken_in_secs": self.taken_in.map(|d| d.as_secs_f64()),
            "taken_in_records_per_sec": self.taken_in.map(|d| self.records as f64 / d.as_secs_f64().max(1e-9)),
        })
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "records accepted     {:>12}  in {:.2} s", self.records, self.secs())?;
        writeln!(f, "throughput           {:>12.0}  records/s", self.records as f64 / self.secs())?;
        writeln!(
            f,
            "                     {:>12.1}  MB/s on the wire ({:.1} MB/s of JSON)",
            self.body_bytes as f64 / self.secs() / 1e6,
            self.raw_bytes as f64 / self.secs() / 1e6
        )?;
        writeln!(
            f,
            "ack latency (ms)     p50 {:.2}  p90 {:.2}  p99 {:.2}  max {:.2}",
            self.percentile_ms(0.5),
            self.percentile_ms(0.9),
            self.percentile_ms(0.99),
            self.latency.max() as f64 / 1000.0
        )?;
        let statuses: Vec<String> =
            self.statuses.iter().map(|(s, n)| format!("{s}: {n}")).collect();
        writeln!(
            f,
            "responses            {}  (retries {}, never accepted {})",
            statuses.join(", "),
            self.retries,
            self.rejected_requests
        )?;
        if let Some(cpu) = self.server_cpu_seconds {
            writeln!(
                f,
                "server CPU           {cpu:.2} s ({:.0} % of one core)",
                100.0 * cpu / self.secs()
            )?;
        }
        if let Some(rss) = self.server_peak_rss_bytes {
            writeln!(f, "server peak RSS      {:.1} MiB", rss as f64 / 1048576.0)?;
        }
        if let Some(cpu) = self.harness_cpu_seconds {
            writeln!(
                f,
                "harness CPU          {cpu:.2} s ({:.0} % of one core, while sending)",
                100.0 * cpu / self.secs()
            )?;
        }
        if let Some(d) = self.taken_in {
            writeln!(
                f,
                "taken in by server   {:>12.0}  records/s (all in after {:.2} s)",
                self.records as f64 / d.as_secs_f64().max(1e-9),
                d.as_secs_f64()
            )?;
        }
        if let Some(n) = self.verified_snapshots {
            writeln!(f, "verified             {n} snapshots identical to the expectation")?;
        }
        Ok(())
    }
}

/// A progress bar with the live rate (hidden for JSON output or when stderr is not a terminal).
pub fn progress(total: u64, hidden: bool) -> ProgressBar {
    if hidden {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new(total);
    bar.set_style(
        ProgressStyle::with_template("{bar:40} {pos}/{len} records  {per_sec}  eta {eta}")
            .expect("valid template"),
    );
    bar
}

/// User + system CPU seconds of a process, from /proc.
pub fn process_cpu(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command (which may contain spaces) start after the last ')'.
    let rest = stat.rsplit_once(')')?.1;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let utime: f64 = fields.get(11)?.parse().ok()?;
    let stime: f64 = fields.get(12)?.parse().ok()?;
    Some((utime + stime) / 100.0) // clock ticks; 100 per second on Linux
}

/// Peak resident set size of a process (VmHWM), from /proc.
pub fn peak_rss(pid: u32) -> Option<u64> {
    vpcflowd::serve::telemetry::process_status_bytes(&pid.to_string(), "VmHWM")
}
