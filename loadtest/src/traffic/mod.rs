//! What the harness sends: flow-log lines from a generated scenario or from replayed files,
//! prepared in full before the clock starts (Firehose sends data it already holds, so the
//! measured work is the sending and the serving, not the generating).
//!
//! Traffic comes in *phases* sent one after another, each fully acknowledged before the next
//! starts. Within a phase, batches race each other; this is what keeps `--verify` exact: a
//! record's lateness is decided by the phases before it, never by a race inside its own.

mod files;
mod scenario;

use std::ops::Range;
use std::path::PathBuf;

use anyhow::{Result, bail};
use clap::Args;
use vpcflowd::decode::{Field, Layout, LayoutSet};
use vpcflowd::window::EngineConfig;

pub use scenario::Scenario;

/// Where the traffic comes from and when it says it happened.
#[derive(Args, Debug, Clone)]
#[command(next_help_heading = "Traffic")]
pub struct TrafficArgs {
    /// A generated scenario.
    #[arg(long, value_enum, default_value_t = Scenario::Steady)]
    pub scenario: Scenario,
    /// Replay these flow-log files instead (plain or .gz, S3 objects with their header line,
    /// `{"message":…}` or CloudWatch Logs lines; a directory means every file under it).
    #[arg(long, value_name = "PATH", num_args = 1.., conflicts_with = "scenario")]
    pub replay: Vec<PathBuf>,
    /// Formats of replayed files without a header line (as `vpcflowd parse --format`);
    /// repeatable [default: the VPC and transit-gateway default formats].
    #[arg(long = "format", value_name = "FMT", requires = "replay")]
    pub formats: Vec<String>,
    /// Records to send at most [default: 100000, or --rate × --duration when both are given].
    #[arg(long)]
    pub records: Option<usize>,
    /// Generator seed.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Interfaces in the generated traffic.
    #[arg(long, default_value_t = 50)]
    pub interfaces: u64,
    /// Records per second of event time in the generated traffic.
    #[arg(long, default_value_t = 20_000.0)]
    pub event_rate: f64,
    /// Event time of the first generated record, Unix seconds [default: 1700000000, fixed so
    /// that runs are reproducible].
    #[arg(long, default_value_t = 1_700_000_000)]
    pub start: u64,
    /// Move event times so that the traffic starts now: generated traffic starts at the wall
    /// clock, replayed files are shifted by (now − their earliest start).
    #[arg(long)]
    pub shift_to_now: bool,
    /// Send at the traffic's own pace times this factor (records in event-time order, a batch
    /// leaving when its first record's time has come); 0 sends as fast as --rate allows.
    #[arg(long, default_value_t = 0.0)]
    pub speed: f64,
}

/// The lines to send, in phases.
pub struct Traffic {
    /// Flow-log lines, phase after phase.
    pub lines: Vec<String>,
    /// The event time (`start`, seconds) of each line; 0 when it has none.
    pub times: Vec<u64>,
    /// The phases, as ranges of `lines`, in sending order.
    pub phases: Vec<Range<usize>>,
    /// The formats of the lines: the server must be configured with the same (`--format`).
    pub layouts: LayoutSet,
    /// Whether `layouts` differ from the server's defaults (so the operator must pass them).
    pub custom_formats: bool,
}

impl Traffic {
    /// Builds the traffic; `engine` is the window configuration the server runs with (the late
    /// scenario aims behind its lateness).
    pub fn build(args: &TrafficArgs, limit: usize, engine: &EngineConfig) -> Result<Traffic> {
        let mut traffic = if args.replay.is_empty() {
            scenario::generate(args, limit, engine)?
        } else {
            files::read(&args.replay, &args.formats, limit)?
        };
        if !args.replay.is_empty() && args.shift_to_now {
            traffic.shift_to_now()?;
        }
        if args.speed > 0.0 {
            traffic.sort_by_time();
        }
        Ok(traffic)
    }

    /// The layouts as `--format` values, for the operator's command line.
    pub fn format_args(&self) -> Vec<String> {
        self.layouts.layouts().iter().map(ToString::to_string).collect()
    }

    /// Shifts every start and end so that the earliest start is now.
    fn shift_to_now(&mut self) -> Result<()> {
        let Some(earliest) = self.times.iter().copied().filter(|&t| t > 0).min() else {
            return Ok(());
        };
        let offset = now_secs().saturating_sub(earliest);
        for (line, time) in self.lines.iter_mut().zip(&mut self.times) {
            *line = shift_line(&self.layouts, line, offset)?;
            if *time > 0 {
                *time += offset;
            }
        }
        Ok(())
    }

    /// Orders each phase by event time (stable), for pacing at the traffic's own speed.
    fn sort_by_time(&mut self) {
        for phase in &self.phases {
            let mut order: Vec<usize> = phase.clone().collect();
            order.sort_by_key(|&i| self.times[i]);
            let lines: Vec<String> =
                order.iter().map(|&i| std::mem::take(&mut self.lines[i])).collect();
            let times: Vec<u64> = order.iter().map(|&i| self.times[i]).collect();
            for (k, (l, t)) in lines.into_iter().zip(times).enumerate() {
                self.lines[phase.start + k] = l;
                self.times[phase.start + k] = t;
            }
        }
    }
}

/// Whole seconds since the Unix epoch: the library's clock.
pub use vpcflowd::clock::unix_secs as now_secs;

/// The line with `offset` seconds added to its start and end (milliseconds when the value is
/// in milliseconds, as some producers write).
fn shift_line(layouts: &LayoutSet, line: &str, offset: u64) -> Result<String> {
    rewrite_fields(layouts, line, |field, token| {
        Ok(match (field, token.parse::<u64>()) {
            (Field::Start | Field::End, Ok(t)) if t >= 100_000_000_000 => {
                Some((t + offset * 1000).to_string())
            }
            (Field::Start | Field::End, Ok(t)) => Some((t + offset).to_string()),
            _ => None,
        })
    })
}

/// `line` (in the layout of its field count) with each token for which `replace` gives a new
/// value replaced by it.
pub fn rewrite_fields(
    layouts: &LayoutSet,
    line: &str,
    mut replace: impl FnMut(Field, &str) -> Result<Option<String>>,
) -> Result<String> {
    let tokens: Vec<&str> = line.split(' ').collect();
    let Some(layout) = layouts.for_count(tokens.len()) else {
        bail!("a line with {} fields matches none of the formats: {line}", tokens.len());
    };
    let mut out = String::with_capacity(line.len() + 4);
    for (i, (token, &field)) in tokens.iter().zip(layout.fields()).enumerate() {
        if i > 0 {
            out.push(' ');
        }
        match replace(field, token)? {
            Some(new) => out.push_str(&new),
            None => out.push_str(token),
        }
    }
    Ok(out)
}

/// The event time (start, in seconds) of a line in `layout`.
fn start_of(layout: &Layout, line: &str) -> u64 {
    let Some(pos) = layout.fields().iter().position(|f| *f == Field::Start) else { return 0 };
    match line.split(' ').nth(pos).and_then(|t| t.parse::<u64>().ok()) {
        Some(t) if t >= 100_000_000_000 => t / 1000,
        Some(t) => t,
        None => 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shifting_moves_start_and_end_only_in_seconds_or_milliseconds() {
        let layouts = LayoutSet::default();
        let line = "2 123456789012 eni-1 10.0.0.1 10.0.0.2 443 5000 6 10 840 1700000000 1700000060 ACCEPT OK";
        assert_eq!(
            shift_line(&layouts, line, 100).unwrap(),
            "2 123456789012 eni-1 10.0.0.1 10.0.0.2 443 5000 6 10 840 1700000100 1700000160 ACCEPT OK"
        );
        let ms = "2 123456789012 eni-1 10.0.0.1 10.0.0.2 443 5000 6 10 840 1700000000000 1700000060000 ACCEPT OK";
        assert_eq!(
            shift_line(&layouts, ms, 1).unwrap(),
            "2 123456789012 eni-1 10.0.0.1 10.0.0.2 443 5000 6 10 840 1700000001000 1700000061000 ACCEPT OK"
        );
        assert_eq!(start_of(&Layout::default_format(), ms), 1_700_000_000);
        assert!(shift_line(&layouts, "2 too few", 1).is_err());
    }
}
