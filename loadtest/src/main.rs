//! `vpcflowd-loadtest`: generates flow-log traffic with vpcflowd's seeded generator, sends it to
//! a running `vpcflowd serve` exactly as Amazon Data Firehose would, verifies the resulting
//! snapshots against its own exact computation, and reports throughput and latency.
//!
//! ```text
//! vpcflowd-loadtest firehose --url http://127.0.0.1:8080/ --admin http://127.0.0.1:9464 \
//!     --access-key K --records 1000000 --batch 500 --gzip --concurrency 8 --verify
//! ```

mod demo;
mod firehose;
mod report;
mod verify;

use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use clap::{Args, Parser, Subcommand};
use vpcflowd::cli::window_args::WindowArgs;
use vpcflowd::decode::Layout;
use vpcflowd::generate::{Generator, GeneratorConfig};

#[derive(Parser)]
#[command(name = "vpcflowd-loadtest", version, about)]
struct Cli {
    #[command(subcommand)]
    target: Target,
}

#[derive(Subcommand)]
enum Target {
    /// Send to a Firehose HTTP endpoint (vpcflowd serve's ingest listener).
    Firehose(Box<FirehoseArgs>),
    /// Run vpcflowd serve fed live by generated traffic over the real HTTP path: results within
    /// a minute, no AWS account needed.
    Demo(demo::DemoArgs),
}

#[derive(Args)]
struct FirehoseArgs {
    /// The ingest URL.
    #[arg(long)]
    url: String,
    /// vpcflowd's admin URL (for --verify and the final status).
    #[arg(long)]
    admin: Option<String>,
    /// X-Amz-Firehose-Access-Key.
    #[arg(long)]
    access_key: Option<String>,
    /// Records to send.
    #[arg(long, default_value_t = 100_000)]
    records: usize,
    /// Records per request (Firehose sends up to 10,000; 500 is typical).
    #[arg(long, default_value_t = 500)]
    batch: usize,
    /// Gzip the request bodies (Content-Encoding: gzip).
    #[arg(long)]
    gzip: bool,
    /// Requests in flight at once.
    #[arg(long, default_value_t = 8)]
    concurrency: usize,
    /// Target rate in records per second; 0 sends flat out.
    #[arg(long, default_value_t = 0.0)]
    rate: f64,
    /// Generator seed.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Interfaces in the generated traffic.
    #[arg(long, default_value_t = 50)]
    interfaces: u64,
    /// Records per second of event time in the generated traffic.
    #[arg(long, default_value_t = 20_000.0)]
    event_rate: f64,
    /// Initial retry delay (Firehose uses 1 s).
    #[arg(long, default_value = "1s", value_parser = humantime::parse_duration)]
    retry_initial: Duration,
    /// Attempts per request before giving up.
    #[arg(long, default_value_t = 20)]
    max_attempts: u32,
    /// After sending, close the windows and compare every snapshot with the exact expectation
    /// (the window options must match the server's).
    #[arg(long, requires = "admin")]
    verify: bool,
    /// Windows the server keeps per interface (its admin.history).
    #[arg(long, default_value_t = 60)]
    history: usize,
    /// Deliberately expect one byte more on one record (to prove verification can fail).
    #[arg(long, hide = true)]
    wrong_expectation: bool,
    /// vpcflowd's process id, for its CPU time and peak RSS.
    #[arg(long)]
    pid: Option<u32>,
    /// Print the report as JSON.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    window: WindowArgs,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime =
        tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("tokio runtime");
    let result = match cli.target {
        Target::Firehose(args) => runtime.block_on(run_firehose(*args)),
        Target::Demo(args) => runtime.block_on(demo::run(args)),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("vpcflowd-loadtest: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run_firehose(args: FirehoseArgs) -> Result<()> {
    let settings = args.window.settings();
    // Sent in the common attributes, so expected in every snapshot (`--region`, shared with the
    // window options).
    let region = args.window.region.clone().unwrap_or_else(|| "us-east-1".into());
    let engine_config = settings.to_engine_config().map_err(anyhow::Error::msg)?;
    // Generate every line and package every request before the clock starts: Firehose sends
    // data it already holds, so the measured work is the sending and the serving.
    let layout = Layout::default_format();
    let mut generator = Generator::new(GeneratorConfig {
        seed: args.seed,
        interfaces: args.interfaces,
        records_per_second: args.event_rate,
        ..GeneratorConfig::default()
    });
    let mut lines = Vec::with_capacity(args.records);
    for _ in 0..args.records {
        let mut l = String::with_capacity(128);
        generator.next_record().render(&layout, &mut l);
        lines.push(l);
    }
    let requests: Vec<firehose::Prepared> = lines
        .chunks(args.batch.max(1))
        .map(|chunk| {
            let records: Vec<Vec<u8>> = chunk
                .iter()
                .map(|l| serde_json::to_vec(&serde_json::json!({"message": l})).expect("JSON"))
                .collect();
            firehose::prepare(&records, args.gzip)
        })
        .collect();
    let sender = firehose::Sender {
        client: reqwest::Client::builder().pool_max_idle_per_host(args.concurrency).build()?,
        url: args.url.clone(),
        access_key: args.access_key.clone(),
        gzip: args.gzip,
        region: region.clone(),
        retry_initial: args.retry_initial,
        max_attempts: args.max_attempts,
    };
    let cpu_before = args.pid.and_then(report::process_cpu);

    let progress = report::progress(args.records as u64, args.json);
    let requests = Arc::new(requests);
    let next = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let mut workers = Vec::new();
    for _ in 0..args.concurrency.max(1) {
        let (requests, next, sender, progress) =
            (requests.clone(), next.clone(), sender.clone(), progress.clone());
        let (rate, batch) = (args.rate, args.batch);
        workers.push(tokio::spawn(async move {
            let mut outcomes = Vec::new();
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some(req) = requests.get(i) else { return outcomes };
                if rate > 0.0 {
                    // Pace: request i leaves no earlier than its share of the target rate.
                    let due = started + Duration::from_secs_f64((i * batch) as f64 / rate);
                    tokio::time::sleep_until(due.into()).await;
                }
                let outcome = sender.send(req).await;
                progress.inc(req.records as u64);
                outcomes.push((req.records, req.body.len(), req.raw_bytes, outcome));
            }
        }));
    }
    let mut results = Vec::new();
    for w in workers {
        results.extend(w.await?);
    }
    let elapsed = started.elapsed();
    progress.finish_and_clear();
    let cpu_after = args.pid.and_then(report::process_cpu);

    let mut r = report::Report::new(elapsed);
    for (records, body, raw, outcome) in &results {
        r.add(*records, *body, *raw, outcome);
    }
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
        let mut expected_lines = lines.clone();
        if args.wrong_expectation {
            // One record claims one byte more than was sent.
            let parts: Vec<&str> = expected_lines[0].split(' ').collect();
            let bytes: u64 = parts[9].parse()?;
            let bumped = (bytes + 1).to_string();
            let mut fixed = parts.clone();
            fixed[9] = &bumped;
            expected_lines[0] = fixed.join(" ");
        }
        let mut config = engine_config.clone();
        config.region = Some(region.clone());
        // The engine's router blocks: run it off the async runtime.
        let expected =
            tokio::task::spawn_blocking(move || verify::expected(&expected_lines, config))
                .await??;
        close_windows(&sender, admin, &lines, &engine_config).await?;
        r.verified_snapshots = Some(verify::compare(admin, &expected, args.history).await?);
    }
    if args.json {
        println!("{}", serde_json::to_string_pretty(&r.to_json())?);
    } else {
        print!("{r}");
    }
    Ok(())
}

/// Sends one record far enough ahead to close every window holding the generated records, then
/// waits until the server reports the last of them closed.
async fn close_windows(
    sender: &firehose::Sender,
    admin: &str,
    lines: &[String],
    config: &vpcflowd::window::EngineConfig,
) -> Result<()> {
    let spec = config.spec;
    let max_start: u64 =
        lines.iter().filter_map(|l| l.split(' ').nth(10)?.parse().ok()).max().unwrap_or(0);
    let last_window = spec.pane_of(max_start);
    let flush_at = spec.window_end(last_window) + config.lateness_secs + spec.slide();
    let flush = format!(
        "2 123456789012 eni-f1u5hf1u5hf1u5hf1 10.255.255.1 10.255.255.2 1 1 6 1 1 {flush_at} {} ACCEPT OK",
        flush_at + 1
    );
    let req = firehose::prepare(
        &[serde_json::to_vec(&serde_json::json!({"message": flush}))?],
        sender.gzip,
    );
    if !sender.send(&req).await.accepted {
        bail!("the flush record was not accepted");
    }
    let want = spec.pane_start(last_window);
    let client = reqwest::Client::new();
    for _ in 0..3000 {
        let status: serde_json::Value = client
            .get(format!("{admin}/api/v1/status"))
            .send()
            .await?
            .json()
            .await
            .context("status")?;
        if status["latest_window"].as_u64().is_some_and(|w| w >= want) {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    bail!("the server did not close window {want} within 30 s")
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_command_line_definition_is_consistent() {
        use clap::CommandFactory;
        super::Cli::command().debug_assert();
    }
}
