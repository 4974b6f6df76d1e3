//! `vpcflowd-loadtest demo`: vpcflowd serve, fed live over the real Firehose HTTP path by the
//! generator, with short windows so that results show within a minute and no AWS account is
//! needed. Prints where to look, then each closed window's busiest interfaces.

use std::net::SocketAddr;
use std::time::{Duration, UNIX_EPOCH};

use anyhow::{Context, Result};
use clap::Args;
use vpcflowd::decode::{Layout, LayoutSet};
use vpcflowd::generate::{Generator, GeneratorConfig};
use vpcflowd::serve::config::ServeConfig;

use crate::package::{Packaging, package};
use crate::target::{Backoff, http};
use crate::traffic::now_secs;

#[derive(Args)]
pub struct DemoArgs {
    /// Records per second fed to vpcflowd.
    #[arg(long, default_value_t = 5000)]
    rate: u64,
    /// Interfaces in the generated traffic.
    #[arg(long, default_value_t = 20)]
    interfaces: u64,
    /// Ingest listener (0 picks a free port).
    #[arg(long, default_value = "127.0.0.1:8080")]
    listen: SocketAddr,
    /// Admin listener (0 picks a free port).
    #[arg(long, default_value = "127.0.0.1:9464")]
    admin_listen: SocketAddr,
    /// Window length (short, for a demo).
    #[arg(long, default_value = "30s", value_parser = humantime::parse_duration)]
    window: Duration,
    /// Slide.
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    slide: Duration,
    /// Lateness.
    #[arg(long, default_value = "5s", value_parser = humantime::parse_duration)]
    lateness: Duration,
    /// Stop after this long (default: until Ctrl-C).
    #[arg(long, value_parser = humantime::parse_duration)]
    duration: Option<Duration>,
}

pub async fn run(args: DemoArgs) -> Result<()> {
    let mut config = ServeConfig::default();
    config.ingest.listen = args.listen;
    config.admin.listen = args.admin_listen;
    config.ingest.access_keys = vec!["demo-access-key".into()];
    config.window.window = args.window;
    config.window.slide = args.slide;
    config.window.lateness = args.lateness;
    config.window.idle_timeout = args.slide;
    config.window.region = Some("us-east-1".into());
    config.validate().map_err(anyhow::Error::msg)?;

    let running = vpcflowd::serve::spawn(config).await?;
    let bound = running.bound;
    let admin = format!("http://{}", bound.admin);
    let ingest = bound.ingest.context("the demo's Firehose listener is on")?;
    println!("vpcflowd demo: open {admin}/ in a browser: the live view, numbers within seconds");
    println!("  Firehose HTTP endpoint on http://{ingest} (access key demo-access-key)");
    println!(
        "  fed {} records/s of generated flow logs ({} interfaces) as Firehose sends them",
        args.rate, args.interfaces
    );
    println!(
        "  windows of {:?} every {:?}; the first closes in about {:?}",
        args.window,
        args.slide,
        args.window + args.lateness + args.slide
    );
    println!("  the JSON behind it:  curl {admin}/api/v1/snapshots/latest");
    println!("                       curl {admin}/api/v1/interfaces");
    println!("                       curl {admin}/api/v1/status");
    println!("  (Ctrl-C stops)\n");

    let sender = http::Sender {
        client: reqwest::Client::new(),
        url: format!("http://{ingest}/"),
        access_key: Some("demo-access-key".into()),
        gzip: true,
        region: "us-east-1".into(),
        backoff: Backoff { initial: Duration::from_millis(200), max_attempts: 10 },
    };
    // Event time follows the wall clock: the generator starts now at the feeding rate.
    let mut generator = Generator::new(GeneratorConfig {
        seed: now_secs(),
        interfaces: args.interfaces,
        start: now_secs(),
        records_per_second: args.rate as f64,
        disorder_secs: 2,
        ..GeneratorConfig::default()
    });
    let feeder = tokio::spawn(async move {
        let layouts = LayoutSet::default();
        let layout = Layout::default_format();
        let per_tick = (args.rate / 10).max(1) as usize;
        let mut tick = tokio::time::interval(Duration::from_millis(100));
        loop {
            tick.tick().await;
            let lines: Vec<String> = (0..per_tick)
                .map(|_| {
                    let mut line = String::with_capacity(128);
                    generator.next_record().render(&layout, &mut line);
                    line
                })
                .collect();
            let records = package(&lines, &layouts, Packaging::Message, 1);
            let data: Vec<Vec<u8>> = records.into_iter().map(|r| r.data).collect();
            let request = http::prepare(&data, true);
            if !sender.send(&request).await.accepted {
                eprintln!("vpcflowd demo: a request was not accepted");
            }
        }
    });

    let printer = tokio::spawn(async move {
        let client = reqwest::Client::new();
        let mut shown = None;
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        loop {
            tick.tick().await;
            let Ok(resp) = client.get(format!("{admin}/api/v1/snapshots/latest")).send().await
            else {
                continue;
            };
            let Ok(latest) = resp.json::<Vec<serde_json::Value>>().await else { continue };
            let Some(start) = latest.first().and_then(|s| s["window_start"].as_u64()) else {
                continue;
            };
            if shown == Some(start) {
                continue;
            }
            shown = Some(start);
            print_window(&latest);
        }
    });

    match args.duration {
        Some(d) => tokio::time::sleep(d).await,
        None => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
    feeder.abort();
    printer.abort();
    Ok(running.stop().await?)
}

fn print_window(latest: &[serde_json::Value]) {
    let mut by_bytes: Vec<&serde_json::Value> = latest.iter().collect();
    by_bytes.sort_by_key(|s| std::cmp::Reverse(s["bytes"].as_u64().unwrap_or(0)));
    let (start, end) = (
        latest[0]["window_start"].as_u64().unwrap_or(0),
        latest[0]["window_end"].as_u64().unwrap_or(0),
    );
    let clock =
        |t: u64| humantime::format_rfc3339_seconds(UNIX_EPOCH + Duration::from_secs(t)).to_string();
    println!("window {} .. {}: {} interfaces", clock(start), clock(end), latest.len());
    println!(
        "  {:<24} {:>12} {:>12} {:>9}  top source (share of received)",
        "interface", "received B", "sent B", "rejected"
    );
    for s in by_bytes.iter().take(5) {
        let top = &s["sources"][0];
        println!(
            "  {:<24} {:>12} {:>12} {:>9}  {} ({:.1} %)",
            s["interface_id"].as_str().unwrap_or("?"),
            s["ingress"]["bytes"].as_u64().unwrap_or(0),
            s["egress"]["bytes"].as_u64().unwrap_or(0),
            s["rejected_flows"].as_u64().unwrap_or(0),
            top["address"].as_str().unwrap_or("-"),
            top["traffic_share_pct"].as_f64().unwrap_or(0.0)
        );
    }
    println!();
}
