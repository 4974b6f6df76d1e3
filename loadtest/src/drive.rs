//! Sending: batches in phases, `--concurrency` in flight, paced by a target rate and/or the
//! traffic's own clock, stopped by `--duration`.
//!
//! A phase starts when every batch of the one before it has its final answer. Within a phase,
//! a batch leaves no earlier than both its share of `--rate` (lines before it ÷ rate) and, with
//! `--speed`, its first record's event time (relative to the phase's first) ÷ speed. After the
//! deadline no batch leaves; what was sent is exactly the batches with an outcome.

use std::ops::Range;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use indicatif::ProgressBar;

use crate::target::{Outcome, Prepared, Sender};

/// One batch of the plan.
pub struct Batch {
    /// The traffic's lines it holds.
    pub lines: Range<usize>,
    /// Its first record's event time (0 if none).
    pub first_time: u64,
    /// Lines before it in its phase.
    pub lines_before: usize,
    pub prepared: Prepared,
}

/// How to send.
#[derive(Clone, Copy, Debug)]
pub struct Pace {
    pub concurrency: usize,
    /// Records per second; 0 is flat out.
    pub rate: f64,
    /// Event-time seconds per wall-clock second; 0 ignores event time.
    pub speed: f64,
    pub duration: Option<Duration>,
}

/// Sends `phases` (ranges of `batches`) one after another. Returns each sent batch's index and
/// outcome, and the time taken.
pub async fn send(
    sender: Arc<Sender>,
    batches: Arc<Vec<Batch>>,
    phases: &[Range<usize>],
    pace: Pace,
    progress: &ProgressBar,
) -> (Vec<(usize, Outcome)>, Duration) {
    let started = Instant::now();
    let deadline = pace.duration.map(|d| started + d);
    let mut sent = Vec::new();
    for phase in phases {
        let phase_started = Instant::now();
        let Some(first) = batches.get(phase.start) else { continue };
        let phase_t0 = first.first_time;
        let next = Arc::new(AtomicUsize::new(phase.start));
        let mut workers = Vec::new();
        for _ in 0..pace.concurrency.max(1) {
            let (sender, batches, next, progress) =
                (sender.clone(), batches.clone(), next.clone(), progress.clone());
            let end = phase.end;
            workers.push(tokio::spawn(async move {
                let mut outcomes = Vec::new();
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= end {
                        return outcomes;
                    }
                    let batch = &batches[i];
                    let mut due = Duration::ZERO;
                    if pace.rate > 0.0 {
                        due =
                            due.max(Duration::from_secs_f64(batch.lines_before as f64 / pace.rate));
                    }
                    if pace.speed > 0.0 {
                        let ahead = batch.first_time.saturating_sub(phase_t0) as f64;
                        due = due.max(Duration::from_secs_f64(ahead / pace.speed));
                    }
                    let due = phase_started + due;
                    if deadline.is_some_and(|d| due >= d || Instant::now() >= d) {
                        return outcomes;
                    }
                    tokio::time::sleep_until(due.into()).await;
                    let outcome = sender.send(&batch.prepared).await;
                    progress.inc(batch.prepared.lines as u64);
                    outcomes.push((i, outcome));
                }
            }));
        }
        for w in workers {
            sent.extend(w.await.expect("a sending task panicked"));
        }
        if deadline.is_some_and(|d| Instant::now() >= d) {
            break;
        }
    }
    sent.sort_by_key(|(i, _)| *i);
    (sent, started.elapsed())
}
