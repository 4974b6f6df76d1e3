//! `vpcflowd healthcheck`: asks a running `serve`'s admin listener whether it is alive, for
//! container health checks in images that have nothing else to ask with (the scratch image has
//! no shell, curl or wget). It exits with 0 on a 2xx answer, and otherwise with 1 and the reason
//! on stderr.

use std::process::ExitCode;
use std::time::Duration;

use clap::Args;

use super::EXIT_IO;

#[derive(Debug, Args)]
pub struct HealthcheckArgs {
    /// What to ask: `/healthz` (alive) or `/readyz` (alive and taking deliveries).
    #[arg(long, default_value = "http://127.0.0.1:9464/healthz", value_name = "URL")]
    pub url: String,
    /// How long to wait for the answer.
    #[arg(long, default_value = "5s", value_parser = humantime::parse_duration)]
    pub timeout: Duration,
}

pub(crate) fn run(args: &HealthcheckArgs) -> ExitCode {
    let answer = reqwest::blocking::Client::builder()
        .timeout(args.timeout)
        .build()
        .and_then(|c| c.get(&args.url).send());
    match answer {
        Ok(r) if r.status().is_success() => ExitCode::SUCCESS,
        Ok(r) => {
            eprintln!("vpcflowd healthcheck: {} answered {}", args.url, r.status());
            ExitCode::from(EXIT_IO)
        }
        Err(e) => {
            eprintln!("vpcflowd healthcheck: {}: {e}", args.url);
            ExitCode::from(EXIT_IO)
        }
    }
}
