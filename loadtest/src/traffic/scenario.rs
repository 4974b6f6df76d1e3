//! Generated scenarios: the seeded generator of `vpcflowd::generate`, shaped for one question
//! each.
//!
//! Disorder is kept inside the server's lateness (half of it, at most a minute for `steady`),
//! so that no on-time record can become late by racing another batch; the `late` scenario's
//! late records go in a phase of their own, aimed so far behind the watermark that no window
//! over them is still open whatever the server's idle clock did meanwhile.

use anyhow::Result;
use clap::ValueEnum;
use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};
use vpcflowd::decode::{Layout, LayoutSet};
use vpcflowd::generate::{GenRecord, Generator, GeneratorConfig, ScanKind, ScanStorm};
use vpcflowd::window::EngineConfig;

use super::{Traffic, TrafficArgs, now_secs};

#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scenario {
    /// Heavy-tailed traffic over many interfaces, a little disorder.
    Steady,
    /// Steady traffic; through the middle half, 30 % of records are one source walking the
    /// ports of the busiest interface, rejected.
    PortScan,
    /// Steady traffic; through the middle half, half of all records come from fresh random
    /// sources to the busiest interface (millions of sources at scale: the caps' test).
    SourceStorm,
    /// Steady traffic; through the middle half, 20 % of records are one source probing port 22
    /// of every interface in turn, rejected (the `sweep` finding).
    Sweep,
    /// Steady traffic; through the middle half, 10 % of records are the busiest interface
    /// rejected connecting out to one address (the `denied_outbound` finding).
    DeniedOutbound,
    /// Steady traffic; through the middle half, 5 % of records are a client accepted into
    /// port 443 of the busiest interface whose replies are rejected going out (the
    /// `nacl_asymmetry` finding).
    NaclAsymmetry,
    /// Steady traffic; throughout, 5 % of records are one source sending the busiest interface
    /// 20 kB each, and 5 MB each through a tenth of the span from its middle (the `spike`
    /// finding).
    Spike,
    /// Out-of-order delivery up to half the lateness, then a second phase of late records
    /// (2 %) for windows that have already closed.
    Late,
    /// Records in four formats: the default (v2), a v3 custom, every v5 field, and a short
    /// reordered custom format. The server needs the same `--format` list.
    MixedFormats,
}

/// The formats of the mixed-formats scenario, each with its own field count.
const MIXED_FORMATS: [&str; 4] = [
    "${version} ${account-id} ${interface-id} ${srcaddr} ${dstaddr} ${srcport} ${dstport} ${protocol} ${packets} ${bytes} ${start} ${end} ${action} ${log-status}",
    "${version} ${vpc-id} ${subnet-id} ${instance-id} ${interface-id} ${account-id} ${type} ${srcaddr} ${dstaddr} ${srcport} ${dstport} ${pkt-srcaddr} ${pkt-dstaddr} ${protocol} ${bytes} ${packets} ${start} ${end} ${action} ${tcp-flags} ${log-status}",
    "${version} ${account-id} ${interface-id} ${srcaddr} ${dstaddr} ${srcport} ${dstport} ${protocol} ${packets} ${bytes} ${start} ${end} ${action} ${log-status} ${vpc-id} ${subnet-id} ${instance-id} ${tcp-flags} ${type} ${pkt-srcaddr} ${pkt-dstaddr} ${region} ${az-id} ${sublocation-type} ${sublocation-id} ${pkt-src-aws-service} ${pkt-dst-aws-service} ${flow-direction} ${traffic-path}",
    "${interface-id} ${start} ${end} ${srcaddr} ${srcport} ${dstaddr} ${dstport} ${protocol} ${bytes} ${packets} ${action} ${log-status}",
];

/// Share of the `late` scenario's records delivered late.
const LATE_SHARE: f64 = 0.02;

pub fn generate(args: &TrafficArgs, limit: usize, engine: &EngineConfig) -> Result<Traffic> {
    let start = if args.shift_to_now { now_secs() } else { args.start };
    let lateness = engine.lateness_secs;
    // Event-time seconds the traffic covers.
    let span = (limit as f64 / args.event_rate.max(1e-9)) as u64;
    let middle_half =
        |share, kind| ScanStorm { start: start + span / 4, duration: span / 2, share, kind };
    let mut config = GeneratorConfig {
        seed: args.seed,
        interfaces: args.interfaces,
        start,
        records_per_second: args.event_rate,
        disorder_secs: (lateness / 2).min(60),
        ..GeneratorConfig::default()
    };
    let mut formats = vec![Layout::default_format()];
    let mut late = 0;
    match args.scenario {
        Scenario::Steady => {}
        Scenario::PortScan => config.scan = Some(middle_half(0.3, ScanKind::PortScan)),
        Scenario::SourceStorm => config.scan = Some(middle_half(0.5, ScanKind::SourceStorm)),
        Scenario::Sweep => config.scan = Some(middle_half(0.2, ScanKind::Sweep)),
        Scenario::DeniedOutbound => config.scan = Some(middle_half(0.1, ScanKind::DeniedOutbound)),
        Scenario::NaclAsymmetry => config.scan = Some(middle_half(0.05, ScanKind::NaclAsymmetry)),
        Scenario::Spike => {
            let kind = ScanKind::Spike { burst_start: start + span / 2, burst_secs: span / 10 };
            config.scan = Some(ScanStorm { start, duration: span + 1, share: 0.05, kind });
        }
        Scenario::Late => {
            config.disorder_secs = lateness / 2;
            late = (limit as f64 * LATE_SHARE) as usize;
        }
        Scenario::MixedFormats => {
            formats = MIXED_FORMATS.iter().map(|f| Layout::parse(f)).collect::<Result<_, _>>()?;
        }
    }
    let layouts = LayoutSet::new(formats.clone())?;
    let mut generator = Generator::new(config);
    let on_time = limit - late;
    let mut lines = Vec::with_capacity(limit);
    let mut times = Vec::with_capacity(limit);
    let mut render = |r: &GenRecord, i: usize| {
        let mut line = String::with_capacity(160);
        r.render(&formats[i % formats.len()], &mut line);
        lines.push(line);
        times.push(r.start);
    };
    let (mut first, mut last) = (u64::MAX, 0);
    for i in 0..on_time {
        let r = generator.next_record();
        (first, last) = (first.min(r.start), last.max(r.start));
        render(&r, i);
    }
    if late > 0 {
        // Behind every window the watermark (last − lateness) has closed, with a window and a
        // slide to spare: no window over these panes can still be open on the server.
        let spec = engine.spec;
        let newest = (last + 1).saturating_sub(lateness + spec.window() + spec.slide());
        let oldest = first.min(newest);
        let mut rng = StdRng::seed_from_u64(args.seed ^ 0x1a7e);
        for i in 0..late {
            let mut r = generator.next_record();
            let length = r.end - r.start;
            r.start = rng.random_range(oldest..=newest);
            r.end = r.start + length;
            render(&r, on_time + i);
        }
    }
    let phases = if late > 0 {
        vec![0..on_time, on_time..limit]
    } else {
        std::iter::once(0..limit).collect()
    };
    Ok(Traffic {
        lines,
        times,
        phases,
        layouts,
        custom_formats: args.scenario == Scenario::MixedFormats,
    })
}
