//! `vpcflowd generate`: writes seeded synthetic flow-log lines (see [`crate::generate`]).

use std::io::{self, Write};
use std::process::ExitCode;

use clap::Args;

use super::{EXIT_IO, EXIT_USAGE};
use crate::decode::Layout;
use crate::generate::{Generator, GeneratorConfig, ScanKind, ScanStorm};

#[derive(Debug, Args)]
pub struct GenerateArgs {
    /// How many records to write.
    #[arg(long, default_value_t = 100_000)]
    pub records: u64,
    /// The seed: the same seed and options always give the same output.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// The format to write (see `vpcflowd parse --help`).
    #[arg(long, short = 'f', default_value = "default", value_name = "FMT")]
    pub format: String,
    /// Write an S3-style header line naming the fields first.
    #[arg(long)]
    pub header: bool,
    /// Print the generated interfaces' own addresses as the JSON `--local-addresses` reads,
    /// instead of records (for a server and a harness that must decide directions alike).
    #[arg(long)]
    pub print_local_addresses: bool,
    /// Number of interfaces (traffic among them is Zipf-distributed).
    #[arg(long, default_value_t = 50)]
    pub interfaces: u64,
    /// Distinct sources per interface (Zipf-distributed).
    #[arg(long, default_value_t = 200)]
    pub sources: u64,
    /// Event time of the first record (Unix seconds).
    #[arg(long, default_value_t = 1_700_000_000)]
    pub start: u64,
    /// Records per second of event time.
    #[arg(long, default_value_t = 1000.0)]
    pub rate: f64,
    /// Largest backwards jump of a record's time (seconds).
    #[arg(long, default_value_t = 60)]
    pub disorder: u64,
    /// Share of rejected records.
    #[arg(long, default_value_t = 0.05)]
    pub reject_ratio: f64,
    /// Share of records from IPv6 sources.
    #[arg(long, default_value_t = 0.1)]
    pub ipv6_ratio: f64,
    /// Start a scan storm this many seconds after --start.
    #[arg(long)]
    pub scan_after: Option<u64>,
    /// How long the scan storm lasts (seconds).
    #[arg(long, default_value_t = 300)]
    pub scan_duration: u64,
    /// Share of records that belong to the storm while it lasts.
    #[arg(long, default_value_t = 0.5)]
    pub scan_share: f64,
}

pub(crate) fn run(args: &GenerateArgs) -> ExitCode {
    if args.print_local_addresses {
        println!("{}", Generator::local_addresses_json(args.interfaces));
        return ExitCode::SUCCESS;
    }
    let layout = match Layout::parse(&args.format) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("vpcflowd generate: {e}");
            return ExitCode::from(EXIT_USAGE);
        }
    };
    let config = GeneratorConfig {
        seed: args.seed,
        interfaces: args.interfaces,
        sources_per_interface: args.sources,
        start: args.start,
        records_per_second: args.rate,
        disorder_secs: args.disorder,
        reject_ratio: args.reject_ratio,
        ipv6_ratio: args.ipv6_ratio,
        scan: args.scan_after.map(|after| ScanStorm {
            start: args.start + after,
            duration: args.scan_duration,
            share: args.scan_share,
            kind: ScanKind::SourceStorm,
        }),
        ..GeneratorConfig::default()
    };
    let mut generator = Generator::new(config);
    let stdout = io::stdout();
    let mut out = io::BufWriter::with_capacity(1 << 16, stdout.lock());
    let mut line = String::with_capacity(512);
    let mut write = || -> io::Result<()> {
        if args.header {
            let names: Vec<_> = layout.fields().iter().map(|f| f.name()).collect();
            writeln!(out, "{}", names.join(" "))?;
        }
        for _ in 0..args.records {
            line.clear();
            generator.next_record().render(&layout, &mut line);
            line.push('\n');
            out.write_all(line.as_bytes())?;
        }
        out.flush()
    };
    match write() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) if e.kind() == io::ErrorKind::BrokenPipe => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("vpcflowd generate: {e}");
            ExitCode::from(EXIT_IO)
        }
    }
}
