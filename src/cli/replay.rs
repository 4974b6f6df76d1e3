//! `vpcflowd replay`: runs the window engine over files as fast as it can and prints each closed
//! snapshot, ordered by window_start then interface_id (corrections, with `--late update`, follow
//! when they are made).

use std::io::{self, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::UNIX_EPOCH;

use clap::{Args, ValueEnum};

use super::diagnosis_args::DiagnosisArgs;
use super::filter_args::FilterArgs;
use super::window_args::WindowArgs;
use super::{EXIT_IO, EXIT_USAGE};
use crate::decode::{Layout, LayoutSet, RejectReason, Rejects};
use crate::generate::{Generator, GeneratorConfig};
use crate::record::filter::FilterReason;
use crate::source::chunks::{ChunkConfig, Delivery, MISSING_INTERFACE, ParsedInputs, Source};
use crate::source::file::{FileReader, Input, ReadStats};
use crate::window::{Engine, EventRouter, Snapshot};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, ValueEnum)]
pub enum OutputFormat {
    /// One JSON object per snapshot per line.
    #[default]
    Json,
    /// A readable summary per snapshot.
    Table,
}

#[derive(Debug, Args)]
pub struct ReplayArgs {
    /// The flow log's format (see `vpcflowd parse --help`); repeat for mixed inputs.
    #[arg(long, short = 'f', value_name = "FMT")]
    pub format: Vec<String>,

    #[command(flatten)]
    pub window: WindowArgs,

    #[command(flatten)]
    pub diagnosis: DiagnosisArgs,

    #[command(flatten)]
    pub filters: FilterArgs,

    /// AWS's ip-ranges.json, to name the service of sources and destinations in AWS.
    #[arg(long, value_name = "FILE")]
    pub ip_ranges: Option<std::path::PathBuf>,

    /// Output format.
    #[arg(long, value_enum, default_value_t)]
    pub output: OutputFormat,

    /// Replay this many records from the built-in seeded generator instead of files (the
    /// generator's defaults: 50 interfaces, Zipf sources, rejects, NODATA, IPv6, disorder).
    #[arg(long, value_name = "N", conflicts_with = "files")]
    pub generate: Option<u64>,

    /// The generator's seed (with --generate).
    #[arg(long, default_value_t = 1, requires = "generate")]
    pub seed: u64,

    /// Files to replay, plain or gzip; `-` or nothing reads standard input.
    #[arg(value_name = "FILE")]
    pub files: Vec<PathBuf>,
}

pub(crate) fn run(args: &ReplayArgs) -> ExitCode {
    let layouts = match LayoutSet::from_formats(&args.format) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("vpcflowd replay: {e}");
            return ExitCode::from(EXIT_USAGE);
        }
    };
    let mut config = match args.window.settings().to_engine_config() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("vpcflowd replay: {e}");
            return ExitCode::from(EXIT_USAGE);
        }
    };
    config.thresholds = args.diagnosis.settings().thresholds();
    config.filters = args.filters.settings();
    let enrich = crate::settings::EnrichSettings { ip_ranges: args.ip_ranges.clone(), ec2: None };
    config.aws_ranges = match enrich.load() {
        Ok(ranges) => ranges,
        Err(e) => {
            eprintln!("vpcflowd replay: {e}");
            return ExitCode::from(EXIT_USAGE);
        }
    };
    let sources = sources_of(args);
    let engine = Engine::start(config);
    let stats = engine.stats.clone();
    let (router, mut snapshots, join) = engine.into_parts();

    // This thread routes parsed chunks in input order (the parse pool and the splitter run on
    // their own threads, see `source::chunks`); the main thread prints snapshots as windows
    // close.
    let n_inputs = sources.len();
    let router_thread = std::thread::spawn(move || route_inputs(router, sources, layouts));
    let (printed, written) = print_snapshots(&mut snapshots, args.output);
    join.join();
    let routed = router_thread.join().expect("router thread panicked");
    if let Err(e) = written {
        if e.kind() == io::ErrorKind::BrokenPipe {
            return ExitCode::SUCCESS;
        }
        eprintln!("vpcflowd replay: writing output: {e}");
        return ExitCode::from(EXIT_IO);
    }
    let ReadStats { lines, records, rejected, headers } = routed.read;
    let rejects = routed.rejects;
    let late = stats.late_records.load(std::sync::atomic::Ordering::Relaxed);
    let expired = stats.expired_late_records.load(std::sync::atomic::Ordering::Relaxed);
    eprintln!(
        "vpcflowd replay: {records} records from {lines} lines in {n_inputs} input(s); {headers} header line(s); \
         {rejected} rejected ({rejects}); {late} late ({expired} too late for any window); {printed} snapshots"
    );
    let filtered: Vec<String> = FilterReason::ALL
        .iter()
        .map(|r| (r, stats.filtered[r.index()].load(std::sync::atomic::Ordering::Relaxed)))
        .filter(|(_, n)| *n > 0)
        .map(|(r, n)| format!("{n} by {}", r.as_str()))
        .collect();
    if !filtered.is_empty() {
        eprintln!("vpcflowd replay: filtered out before windows: {}", filtered.join(", "));
    }
    if routed.io_failed { ExitCode::from(EXIT_IO) } else { ExitCode::SUCCESS }
}

/// The inputs to replay: the generator, the files named, or standard input.
fn sources_of(args: &ReplayArgs) -> Vec<Source> {
    let seed = args.seed;
    match args.generate {
        // Generated lines go through the same read, parse and route path as file lines.
        Some(n) => vec![Source {
            name: "<generated>".into(),
            open: Box::new(move || {
                Ok(Box::new(io::BufReader::with_capacity(1 << 16, GeneratedText::new(n, seed))))
            }),
            live: false,
        }],
        None if args.files.is_empty() => vec![Source::input(Input::Stdin)],
        None => args.files.iter().map(|f| Source::input(Input::from_arg(f))).collect(),
    }
}

/// What the router thread read: counts, rejections, and whether an input failed.
struct Routed {
    read: ReadStats,
    rejects: Rejects,
    io_failed: bool,
}

/// Reads, parses and routes every input in order, then closes every window.
fn route_inputs(mut router: EventRouter, sources: Vec<Source>, layouts: LayoutSet) -> Routed {
    // Chunks too large to hold parsed are read here a record at a time.
    let mut streaming = FileReader::new(layouts.clone());
    let mut inputs = ParsedInputs::start(sources, layouts, ChunkConfig::default());
    let (mut read, mut rejects, mut io_failed) = (ReadStats::default(), Rejects::new(), false);
    let mut clock = CoarseClock::default();
    let stderr = io::stderr();
    while let Some(delivery) = inputs.next_chunk() {
        let chunk = match delivery {
            Delivery::Chunk(chunk) => chunk,
            Delivery::Unparsed(chunk) => {
                let name = inputs.name(chunk.input);
                chunk.read(
                    &mut streaming,
                    |parsed, ctx| {
                        let now = clock.now();
                        router.push(&parsed.record, ctx, now).map_err(|_| MISSING_INTERFACE)
                    },
                    |r| {
                        let _ = writeln!(stderr.lock(), "{name}:{}: {}", r.line, r.detail);
                    },
                );
                continue;
            }
            Delivery::Failed { input, error } => {
                io_failed = true;
                let _ = writeln!(stderr.lock(), "vpcflowd replay: {}: {error}", inputs.name(input));
                continue;
            }
        };
        read.add(&chunk.stats);
        rejects.merge(&chunk.rejects);
        chunk.records.for_each_named(|record| router.push_record(record, clock.now()));
        // The router keeps its own count of records naming no interface.
        for _ in 0..chunk.rejects.count(RejectReason::MissingInterface) {
            router.refuse_missing_interface();
        }
        if !chunk.messages.is_empty() {
            let mut err = stderr.lock();
            for (line, message) in &chunk.messages {
                let _ = writeln!(err, "{}:{line}: {message}", inputs.name(chunk.input));
            }
        }
    }
    inputs.close();
    router.finish();
    read.add(&streaming.stats);
    rejects.merge(&streaming.rejects);
    Routed { read, rejects, io_failed }
}

/// Prints every snapshot batch as it arrives, until the engine is done; returns how many
/// were printed and the first write error. After an error it keeps draining, so that the
/// engine can finish.
fn print_snapshots(
    snapshots: &mut tokio::sync::mpsc::Receiver<Vec<Snapshot>>,
    format: OutputFormat,
) -> (u64, io::Result<()>) {
    let stdout = io::stdout();
    let mut out = io::BufWriter::with_capacity(1 << 16, stdout.lock());
    let mut write_failed = None;
    let mut printed = 0u64;
    while let Some(batch) = snapshots.blocking_recv() {
        if write_failed.is_some() {
            continue;
        }
        for s in &batch {
            let r = match format {
                OutputFormat::Json => serde_json::to_writer(&mut out, s)
                    .map_err(io::Error::from)
                    .and_then(|()| out.write_all(b"\n")),
                OutputFormat::Table => write_table(&mut out, s),
            };
            if let Err(e) = r {
                write_failed = Some(e);
                break;
            }
            printed += 1;
        }
    }
    let flushed = out.flush();
    (printed, write_failed.or(flushed.err()).map_or(Ok(()), Err))
}

/// Wall-clock seconds, read once per 4096 calls: arrival time for records without timestamps
/// does not need to be finer, and the hot loop should not ask the kernel per record.
#[derive(Default)]
struct CoarseClock {
    calls: u32,
    now: u64,
}

impl CoarseClock {
    fn now(&mut self) -> u64 {
        if self.calls.is_multiple_of(4096) {
            self.now = crate::clock::unix_secs();
        }
        self.calls = self.calls.wrapping_add(1);
        self.now
    }
}

/// The built-in generator's records as text lines in the default format, rendered as they are
/// read.
struct GeneratedText {
    generator: Generator,
    layout: Layout,
    remaining: u64,
    text: String,
    at: usize,
}

impl GeneratedText {
    fn new(records: u64, seed: u64) -> Self {
        GeneratedText {
            generator: Generator::new(GeneratorConfig { seed, ..GeneratorConfig::default() }),
            layout: Layout::default_format(),
            remaining: records,
            text: String::with_capacity(64 * 1024),
            at: 0,
        }
    }
}

impl io::Read for GeneratedText {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.at == self.text.len() {
            self.text.clear();
            self.at = 0;
            let n = self.remaining.min(512);
            for _ in 0..n {
                self.generator.next_record().render(&self.layout, &mut self.text);
                self.text.push('\n');
            }
            self.remaining -= n;
        }
        let rest = &self.text.as_bytes()[self.at..];
        let n = rest.len().min(buf.len());
        buf[..n].copy_from_slice(&rest[..n]);
        self.at += n;
        Ok(n)
    }
}

fn rfc3339(secs: u64) -> String {
    humantime::format_rfc3339_seconds(UNIX_EPOCH + std::time::Duration::from_secs(secs)).to_string()
}

fn write_table(out: &mut impl Write, s: &Snapshot) -> io::Result<()> {
    writeln!(
        out,
        "{} .. {}  {}{}  account {}  region {}",
        rfc3339(s.window_start),
        rfc3339(s.window_end),
        s.interface_id,
        if s.revision > 0 { format!(" (revision {})", s.revision) } else { String::new() },
        s.account_id.as_deref().unwrap_or("-"),
        s.region.as_deref().unwrap_or("-"),
    )?;
    writeln!(
        out,
        "  {} packets  {} bytes  {} flows  rejected: {} flows {} packets {} bytes  nodata {}  skipdata {}  late {}{}",
        s.packets,
        s.bytes,
        s.flows,
        s.rejected_flows,
        s.rejected_packets,
        s.rejected_bytes,
        s.nodata_records,
        s.skipdata_records,
        s.late_records,
        if s.approximate { "  (approximate)" } else { "" },
    )?;
    let locals: Vec<String> = s.local_addresses.iter().map(|a| a.to_string()).collect();
    writeln!(
        out,
        "  in {} bytes {} packets  out {} bytes {} packets  unknown {} bytes  local {}  ({})",
        s.ingress.bytes,
        s.ingress.packets,
        s.egress.bytes,
        s.egress.packets,
        s.unknown_direction.bytes,
        if locals.is_empty() { "-".to_string() } else { locals.join(",") },
        s.direction_basis,
    )?;
    let sources = s
        .sources
        .iter()
        .map(|x| (x.address, x.bytes, x.packets, x.flows, x.rejected_flows, x.traffic_share_pct));
    write_list(out, "source", sources.collect(), &s.other_sources, "other sources")?;
    let destinations = s
        .destinations
        .iter()
        .map(|x| (x.address, x.bytes, x.packets, x.flows, x.rejected_flows, x.traffic_share_pct));
    write_list(out, "destination", destinations.collect(), &s.other_destinations, "others")?;
    writeln!(out)
}

/// A table row: address, bytes, packets, flows, rejected flows, share.
type Row = (std::net::IpAddr, u64, u64, u64, u64, f64);

/// One ranked list of a snapshot, with its remainder.
fn write_list(
    out: &mut impl Write,
    title: &str,
    rows: Vec<Row>,
    other: &crate::window::snapshot::Other,
    other_name: &str,
) -> io::Result<()> {
    if rows.is_empty() && other.bytes == 0 {
        return Ok(());
    }
    writeln!(
        out,
        "  {:<40} {:>14} {:>12} {:>8} {:>9} {:>7}",
        title, "bytes", "packets", "flows", "rejected", "share%"
    )?;
    for (address, bytes, packets, flows, rejected, share) in rows {
        writeln!(
            out,
            "  {:<40} {bytes:>14} {packets:>12} {flows:>8} {rejected:>9} {share:>7.2}",
            address.to_string(),
        )?;
    }
    if other.count > 0 || other.bytes > 0 {
        writeln!(
            out,
            "  {:<40} {:>14} {:>12} {:>8}",
            format!("({} {other_name})", other.count),
            other.bytes,
            other.packets,
            other.flows
        )?;
    }
    Ok(())
}
