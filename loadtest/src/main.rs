//! `vpcflowd-loadtest`: generates flow-log traffic with vpcflowd's seeded generator (or replays
//! real flow-log files), delivers it through one of vpcflowd's real ingest paths exactly as AWS
//! would, verifies the resulting snapshots against its own exact computation, and reports
//! throughput and latency.
//!
//! ```text
//! vpcflowd-loadtest firehose --url http://127.0.0.1:8080/ --admin http://127.0.0.1:9464 \
//!     --access-key K --records 1000000 --batch 500 --gzip --concurrency 8 --verify
//! vpcflowd-loadtest kinesis --stream flows --endpoint-url http://127.0.0.1:4567 \
//!     --scenario late --package cloudwatch --rate 5000 --duration 60s --admin … --verify
//! ```

mod demo;
mod drive;
mod package;
mod report;
mod target;
mod traffic;
mod verify;

use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;
use vpcflowd::serve::status::StatusReport;

use anyhow::{Context, Result, bail};
use clap::{Args, Parser, Subcommand};
use vpcflowd::cli::window_args::WindowArgs;
use vpcflowd::generate::{GenRecord, GenStatus};
use vpcflowd::window::EngineConfig;

use crate::drive::{Batch, Pace};
use crate::package::Packaging;
use crate::target::{Backoff, Sender};
use crate::traffic::{Traffic, TrafficArgs};

#[derive(Parser)]
#[command(name = "vpcflowd-loadtest", version, about)]
struct Cli {
    #[command(subcommand)]
    target: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Send to a Firehose HTTP endpoint (vpcflowd serve's ingest listener) as Firehose does.
    Firehose(Box<FirehoseArgs>),
    /// PutRecordBatch to a Firehose delivery stream (e.g. moto's, delivering to vpcflowd).
    FirehoseApi(Box<FirehoseApiArgs>),
    /// PutRecords to a Kinesis data stream that vpcflowd reads (e.g. on kinesalite).
    Kinesis(Box<KinesisArgs>),
    /// Run vpcflowd serve fed live by generated traffic over the real HTTP path: results within
    /// a minute, no AWS account needed.
    Demo(demo::DemoArgs),
}

#[derive(Args)]
struct FirehoseArgs {
    /// The ingest URL.
    #[arg(long)]
    url: String,
    /// X-Amz-Firehose-Access-Key.
    #[arg(long)]
    access_key: Option<String>,
    /// Gzip the request bodies (Content-Encoding: gzip).
    #[arg(long)]
    gzip: bool,
    #[command(flatten)]
    run: RunArgs,
}

#[derive(Args)]
struct FirehoseApiArgs {
    /// The delivery stream's name.
    #[arg(long)]
    delivery_stream: String,
    #[command(flatten)]
    aws: AwsArgs,
    #[command(flatten)]
    run: RunArgs,
}

#[derive(Args)]
struct KinesisArgs {
    /// The stream's name or ARN.
    #[arg(long)]
    stream: String,
    #[command(flatten)]
    aws: AwsArgs,
    #[command(flatten)]
    run: RunArgs,
}

#[derive(Args)]
#[command(next_help_heading = "AWS")]
struct AwsArgs {
    /// AWS region [default: the standard AWS chain].
    #[arg(long)]
    aws_region: Option<String>,
    /// Endpoint override (an emulator such as moto or kinesalite, or a VPC endpoint).
    #[arg(long)]
    endpoint_url: Option<String>,
}

impl AwsArgs {
    async fn config(&self) -> Result<aws_config::SdkConfig> {
        target::aws_config(self.aws_region.as_deref(), self.endpoint_url.as_deref()).await
    }
}

/// What every target shares: the traffic, how it is sent, verification and the report.
#[derive(Args)]
struct RunArgs {
    #[command(flatten)]
    traffic: TrafficArgs,
    /// How lines become records.
    #[arg(long = "package", value_enum, default_value_t = Packaging::Message, help_heading = "Sending")]
    packaging: Packaging,
    /// Log events per CloudWatch Logs payload (with --package cloudwatch).
    #[arg(long, default_value_t = 100, help_heading = "Sending")]
    events_per_payload: usize,
    /// Flow-log lines per request (Firehose sends up to 10,000 records; 500 is typical and the
    /// most PutRecordBatch and PutRecords take).
    #[arg(long, default_value_t = 500, help_heading = "Sending")]
    batch: usize,
    /// Requests in flight at once.
    #[arg(long, default_value_t = 8, help_heading = "Sending")]
    concurrency: usize,
    /// Target rate in records per second; 0 sends flat out.
    #[arg(long, default_value_t = 0.0, help_heading = "Sending")]
    rate: f64,
    /// Stop sending after this long (what was sent is what is verified).
    #[arg(long, value_parser = humantime::parse_duration, help_heading = "Sending")]
    duration: Option<Duration>,
    /// Initial retry delay (Firehose uses 1 s).
    #[arg(long, default_value = "1s", value_parser = humantime::parse_duration, help_heading = "Sending")]
    retry_initial: Duration,
    /// Attempts per request before giving up.
    #[arg(long, default_value_t = 20, help_heading = "Sending")]
    max_attempts: u32,
    /// vpcflowd's admin URL (for --verify).
    #[arg(long, help_heading = "Verify")]
    admin: Option<String>,
    /// After sending, close the windows and compare every snapshot with the exact expectation
    /// (the window options must match the server's).
    #[arg(long, requires = "admin", help_heading = "Verify")]
    verify: bool,
    /// How long to wait for the server to close the last window.
    #[arg(long, default_value = "60s", value_parser = humantime::parse_duration, help_heading = "Verify")]
    verify_timeout: Duration,
    /// Windows the server keeps per interface (its admin.history).
    #[arg(long, default_value_t = 60, help_heading = "Verify")]
    history: usize,
    /// Deliberately expect one byte more on one record (to prove verification can fail).
    #[arg(long, hide = true)]
    wrong_expectation: bool,
    /// vpcflowd's process id, for its CPU time and peak RSS.
    #[arg(long, help_heading = "Report")]
    pid: Option<u32>,
    /// Print the report as JSON.
    #[arg(long, help_heading = "Report")]
    json: bool,
    #[command(flatten)]
    window: WindowArgs,
}

impl RunArgs {
    fn backoff(&self) -> Backoff {
        Backoff { initial: self.retry_initial, max_attempts: self.max_attempts.max(1) }
    }

    /// Records to prepare: `--records`, else rate × duration, else 100,000.
    fn limit(&self) -> usize {
        match (self.traffic.records, self.duration) {
            (Some(n), _) => n,
            (None, Some(d)) if self.rate > 0.0 => (self.rate * d.as_secs_f64()).ceil() as usize,
            _ => 100_000,
        }
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime =
        tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("tokio runtime");
    let result = runtime.block_on(async move {
        match cli.target {
            Command::Firehose(a) => {
                let sender = target::http::Sender {
                    client: reqwest::Client::builder()
                        .pool_max_idle_per_host(a.run.concurrency)
                        .build()?,
                    url: a.url,
                    access_key: a.access_key,
                    gzip: a.gzip,
                    // Sent in the common attributes, so expected in every snapshot.
                    region: a.run.window.region.clone().unwrap_or_else(|| "us-east-1".into()),
                    backoff: a.run.backoff(),
                };
                run(Sender::Http(sender), a.run).await
            }
            Command::FirehoseApi(a) => {
                let sender = target::firehose_api::Sender {
                    client: aws_sdk_firehose::Client::new(&a.aws.config().await?),
                    stream: a.delivery_stream,
                    backoff: a.run.backoff(),
                };
                run(Sender::FirehoseApi(sender), a.run).await
            }
            Command::Kinesis(a) => {
                let sender = target::kinesis::Sender {
                    client: aws_sdk_kinesis::Client::new(&a.aws.config().await?),
                    stream: a.stream,
                    backoff: a.run.backoff(),
                };
                run(Sender::Kinesis(sender), a.run).await
            }
            Command::Demo(args) => demo::run(args).await,
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("vpcflowd-loadtest: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Prepares the traffic, sends it, verifies it if asked, and prints the report.
async fn run(sender: Sender, args: RunArgs) -> Result<()> {
    let engine_config = args.window.settings().to_engine_config().map_err(anyhow::Error::msg)?;
    let limit = args.limit();
    let (traffic_args, config) = (args.traffic.clone(), engine_config.clone());
    let traffic =
        tokio::task::spawn_blocking(move || Traffic::build(&traffic_args, limit, &config))
            .await??;
    if traffic.custom_formats {
        let flags: Vec<String> =
            traffic.format_args().iter().map(|f| format!("--format '{f}'")).collect();
        eprintln!("vpcflowd-loadtest: the server must read these formats: {}", flags.join(" "));
    }
    if args.verify {
        // Requests racing each other reorder up to this much event time, on top of the
        // traffic's own disorder (half the lateness at most for the generated scenarios).
        let (first, last) = (traffic.times.iter().min(), traffic.times.iter().max());
        let span = last.zip(first).map_or(0, |(l, f)| l - f) as f64;
        let in_flight = span * (args.concurrency * args.batch) as f64 / traffic.lines.len() as f64;
        if in_flight >= engine_config.lateness_secs as f64 / 2.0 {
            eprintln!(
                "vpcflowd-loadtest: warning: {in_flight:.0} s of event time in flight against a \
                 lateness of {} s: racing requests may make records late and --verify fail; \
                 lower --concurrency or --batch, or raise --lateness",
                engine_config.lateness_secs
            );
        }
    }
    let sender = Arc::new(sender);
    let (batches, phases) = plan(&traffic, &sender, &args);
    let batches = Arc::new(batches);
    let pace = Pace {
        concurrency: args.concurrency,
        rate: args.rate,
        speed: args.traffic.speed,
        duration: args.duration,
    };

    let client = reqwest::Client::new();
    // Records the server had routed (and counted late) before this run: verification waits
    // for all of ours, and checks that only the expected ones were late.
    let (routed_before, late_before) = match (&args.admin, args.verify) {
        (Some(admin), true) => {
            let s = status(&client, admin).await?;
            (routed(&s), late(&s))
        }
        _ => (0, 0),
    };
    let cpu_before = args.pid.and_then(report::process_cpu);
    let own_cpu_before = report::process_cpu(std::process::id());
    let progress = report::progress(traffic.lines.len() as u64, args.json);
    let started = std::time::Instant::now();
    let (sent, elapsed) =
        drive::send(sender.clone(), batches.clone(), &phases, pace, &progress).await;
    progress.finish_and_clear();
    let cpu_after = args.pid.and_then(report::process_cpu);
    let own_cpu_after = report::process_cpu(std::process::id());

    let mut r = report::Report::new(elapsed);
    for (i, outcome) in &sent {
        let p = &batches[*i].prepared;
        r.add(p.lines, p.wire_bytes, p.raw_bytes, outcome);
    }
    r.harness_cpu_seconds = own_cpu_before.zip(own_cpu_after).map(|(a, b)| b - a);
    if let (Some(pid), Some(a), Some(b)) = (args.pid, cpu_before, cpu_after) {
        r.server_cpu_seconds = Some(b - a);
        r.server_peak_rss_bytes = report::peak_rss(pid);
    }

    if args.verify {
        let admin = args.admin.as_deref().expect("clap requires --admin with --verify");
        if r.rejected_requests > 0 {
            bail!(
                "{} requests were never accepted: nothing to verify against",
                r.rejected_requests
            );
        }
        // Kinesis consumers read after the acknowledgement: wait until every record is in,
        // or the flush record could overtake records of another shard.
        let want = routed_before + r.records;
        let what = format!("take in all {} records", r.records);
        wait_for_status(&client, admin, args.verify_timeout, &what, |s| routed(s) >= want).await?;
        r.taken_in = Some(started.elapsed());
        // What was sent, phase by phase: the batches with an outcome, in plan order.
        let mut expected_lines: Vec<String> = sent
            .iter()
            .flat_map(|(i, _)| traffic.lines[batches[*i].lines.clone()].iter().cloned())
            .collect();
        if args.wrong_expectation {
            expected_lines[0] = one_byte_more(&traffic, &expected_lines[0])?;
        }
        let mut config = engine_config.clone();
        // Records without a region get the transport's (Firehose's common attributes), else
        // the server's configured one.
        config.region = sender.region().map(str::to_owned).or_else(|| args.window.region.clone());
        let layouts = traffic.layouts.clone();
        // The engine's router blocks: run it off the async runtime.
        let (expected, expected_late) = tokio::task::spawn_blocking(move || {
            verify::expected(&expected_lines, &layouts, config)
        })
        .await??;
        let server_late = late(&status(&client, admin).await?).saturating_sub(late_before);
        verify::check_late(server_late, expected_late)?;
        let newest = sent.iter().flat_map(|(i, _)| &traffic.times[batches[*i].lines.clone()]).max();
        let closing =
            close_windows(&sender, &traffic, newest.copied().unwrap_or(0), &engine_config);
        let want = closing.await?;
        let what = format!("close window {want}");
        wait_for_status(&client, admin, args.verify_timeout, &what, |s| {
            s.latest_window.is_some_and(|w| w >= want)
        })
        .await?;
        r.verified_snapshots = Some(verify::compare(admin, &expected, args.history).await?);
    }
    if args.json {
        println!("{}", serde_json::to_string_pretty(&r.to_json())?);
    } else {
        print!("{r}");
    }
    Ok(())
}

/// The server's `/api/v1/status`.
async fn status(client: &reqwest::Client, admin: &str) -> Result<StatusReport> {
    let url = format!("{admin}/api/v1/status");
    client.get(&url).send().await?.json().await.with_context(|| url)
}

/// Records the server has routed into its engine (`ingest.records` of its status).
fn routed(status: &StatusReport) -> u64 {
    status.ingest.records
}

/// Records the server's engine has counted late (`engine.late_records` of its status).
fn late(status: &StatusReport) -> u64 {
    status.engine.late_records
}

/// Polls the server's status until `done` holds; fails with `what` after `timeout`.
async fn wait_for_status(
    client: &reqwest::Client,
    admin: &str,
    timeout: Duration,
    what: &str,
    done: impl Fn(&StatusReport) -> bool,
) -> Result<()> {
    let deadline = tokio::time::Instant::now() + timeout;
    while !done(&status(client, admin).await?) {
        if tokio::time::Instant::now() >= deadline {
            bail!("the server did not {what} within {timeout:?}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Ok(())
}

/// Cuts each phase into batches of `--batch` lines and packages them for the target. Returns
/// the batches and the phases as ranges of batch indices.
fn plan(
    traffic: &Traffic,
    sender: &Sender,
    args: &RunArgs,
) -> (Vec<Batch>, Vec<std::ops::Range<usize>>) {
    let mut batches = Vec::new();
    let mut phases = Vec::new();
    for phase in &traffic.phases {
        let first_batch = batches.len();
        let mut start = phase.start;
        while start < phase.end {
            let end = (start + args.batch.max(1)).min(phase.end);
            let records = package::package(
                &traffic.lines[start..end],
                &traffic.layouts,
                args.packaging,
                args.events_per_payload,
            );
            batches.push(Batch {
                lines: start..end,
                first_time: traffic.times[start],
                lines_before: start - phase.start,
                prepared: sender.prepare(records),
            });
            start = end;
        }
        phases.push(first_batch..batches.len());
    }
    (batches, phases)
}

/// `line` claiming one byte more than was sent.
fn one_byte_more(traffic: &Traffic, line: &str) -> Result<String> {
    let mut bumped = false;
    let line = traffic::rewrite_fields(&traffic.layouts, line, |field, token| {
        if field != vpcflowd::decode::Field::Bytes {
            return Ok(None);
        }
        bumped = true;
        Ok(Some((token.parse::<u64>().context("bytes")? + 1).to_string()))
    })?;
    if !bumped {
        bail!("--wrong-expectation needs a format with bytes");
    }
    Ok(line)
}

/// Sends one record far enough ahead of `newest` (the newest event time sent) to close every
/// window holding the traffic; returns the start of the last of them.
async fn close_windows(
    sender: &Sender,
    traffic: &Traffic,
    newest: u64,
    config: &EngineConfig,
) -> Result<u64> {
    let spec = config.spec;
    let last_window = spec.pane_of(newest);
    let flush_at = spec.window_end(last_window) + config.lateness_secs + spec.slide();
    // An interface of its own, in the traffic's first format (which the server reads).
    let flush = GenRecord {
        interface: 0xf_ffff_ffff,
        status: GenStatus::Ok,
        srcaddr: [10, 255, 255, 1].into(),
        dstaddr: [10, 255, 255, 2].into(),
        srcport: 1,
        dstport: 1,
        protocol: 6,
        packets: 1,
        bytes: 1,
        start: flush_at,
        end: flush_at + 1,
        reject: false,
        egress: false,
        pkt_srcaddr: [10, 255, 255, 1].into(),
        pkt_dstaddr: [10, 255, 255, 2].into(),
    };
    let mut line = String::new();
    flush.render(&traffic.layouts.layouts()[0], &mut line);
    let records = package::package(&[line], &traffic.layouts, Packaging::Message, 1);
    if !sender.send(&sender.prepare(records)).await.accepted {
        bail!("the flush record was not accepted");
    }
    Ok(spec.pane_start(last_window))
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_command_line_definition_is_consistent() {
        use clap::CommandFactory;
        super::Cli::command().debug_assert();
    }
}
