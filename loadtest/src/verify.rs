//! Verification: the exact snapshots of what was sent, computed by running vpcflowd's own
//! window engine over the generated lines, compared with what the server's JSON API serves.
//!
//! Window sums do not depend on arrival order within a phase as long as no record of it is
//! late and no cap is exceeded, which the harness's scenarios keep (disorder within half the
//! lateness, late records in a phase of their own; caps are the operator's to set above the
//! traffic); so the server, receiving batches concurrently, must agree exactly.

use std::collections::BTreeMap;

use anyhow::{Context, Result, bail};
use serde_json::Value;
use vpcflowd::decode::{LayoutSet, LineContext, parse_line};
use vpcflowd::window::{Engine, EngineConfig};

/// (interface, window_start) → snapshot JSON.
pub type Expected = BTreeMap<(String, u64), Value>;

/// Runs the engine over `lines` and returns every snapshot, and how many records were late.
pub fn expected(
    lines: &[String],
    layouts: &LayoutSet,
    mut config: EngineConfig,
) -> Result<(Expected, u64)> {
    config.shards = 1;
    let engine = Engine::start(config);
    let stats = engine.stats.clone();
    let (mut router, mut rx, join) = engine.into_parts();
    let collector = std::thread::spawn(move || {
        let mut out = Vec::new();
        while let Some(batch) = rx.blocking_recv() {
            out.extend(batch);
        }
        out
    });
    for l in lines {
        let p = parse_line(layouts, l.as_bytes())
            .map_err(|e| anyhow::anyhow!("generated line {l}: {e}"))?;
        router.push(&p.record, &LineContext::default(), 0).map_err(|e| anyhow::anyhow!("{e}"))?;
    }
    router.finish();
    join.join();
    let mut out = Expected::new();
    for s in collector.join().map_err(|_| anyhow::anyhow!("collector panicked"))? {
        let v = serde_json::to_value(&s)?;
        out.insert((s.interface_id.to_string(), s.window_start), v);
    }
    Ok((out, stats.late_records.load(std::sync::atomic::Ordering::Relaxed)))
}

/// Fails unless the server counted exactly the late records the expectation did while it took
/// in this run's traffic. Without this check, traffic that a server had already windowed (the
/// same seeded run sent twice) would all be late and dropped, and the snapshots of the first
/// run would still compare equal.
pub fn check_late(server_late: u64, expected_late: u64) -> Result<()> {
    if server_late != expected_late {
        bail!(
            "the server counted {server_late} late records while taking in this traffic, the \
             expectation {expected_late}: its watermark was already past this traffic's windows \
             (did it take this seeded traffic before? start it afresh, or send with --shift-to-now)"
        );
    }
    Ok(())
}

/// Compares the server's snapshots (via `/api/v1/interfaces/{id}/snapshots`) with `expected`.
/// Returns the number of snapshots compared, or a readable diff.
/// Only each interface's newest `history` windows are compared (what the server keeps).
pub async fn compare(admin: &str, expected: &Expected, history: usize) -> Result<usize> {
    let client = reqwest::Client::new();
    let mut by_interface: BTreeMap<&str, Vec<(&u64, &Value)>> = BTreeMap::new();
    for ((iface, start), v) in expected {
        by_interface.entry(iface).or_default().push((start, v));
    }
    let mut diffs = Vec::new();
    let mut compared = 0;
    for (iface, windows) in by_interface {
        let url = format!("{admin}/api/v1/interfaces/{iface}/snapshots?limit=100000");
        let got: Vec<Value> =
            client.get(&url).send().await?.json().await.with_context(|| url.clone())?;
        let got: BTreeMap<u64, &Value> =
            got.iter().filter_map(|s| Some((s["window_start"].as_u64()?, s))).collect();
        let skip = windows.len().saturating_sub(history);
        for (start, want) in windows.into_iter().skip(skip) {
            compared += 1;
            match got.get(start) {
                None => diffs.push(format!("{iface} window {start}: missing on the server")),
                Some(have) if *have != want => {
                    let (path, w, h) = first_difference(want, have, String::new());
                    diffs.push(format!(
                        "{iface} window {start}: at {path}: expected {w}, served {h}"
                    ));
                }
                Some(_) => {}
            }
        }
    }
    if !diffs.is_empty() {
        let shown: Vec<_> = diffs.iter().take(20).cloned().collect();
        bail!("{} of {compared} snapshots differ:\n{}", diffs.len(), shown.join("\n"));
    }
    Ok(compared)
}

/// The first place where two JSON values differ: (JSON pointer, expected, served).
fn first_difference(want: &Value, have: &Value, path: String) -> (String, String, String) {
    match (want, have) {
        (Value::Object(a), Value::Object(b)) => {
            for (k, v) in a {
                let other = b.get(k).unwrap_or(&Value::Null);
                if v != other {
                    return first_difference(v, other, format!("{path}/{k}"));
                }
            }
            let extra = b.keys().find(|k| !a.contains_key(*k)).cloned().unwrap_or_default();
            (format!("{path}/{extra}"), "nothing".into(), b[&extra].to_string())
        }
        (Value::Array(a), Value::Array(b)) if a.len() == b.len() => {
            let i = a.iter().zip(b).position(|(x, y)| x != y).unwrap_or(0);
            first_difference(&a[i], &b[i], format!("{path}/{i}"))
        }
        _ => (if path.is_empty() { "/".into() } else { path }, want.to_string(), have.to_string()),
    }
}
