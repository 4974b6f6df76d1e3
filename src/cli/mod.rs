//! The `vpcflowd` command line: one module per subcommand, each with its clap arguments (whose
//! doc comments are the `--help` text) and a `run` function returning the exit code.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

pub(crate) mod config_reference;
pub mod diagnosis_args;
pub mod filter_args;
pub(crate) mod generate;
pub(crate) mod healthcheck;
pub(crate) mod parse;
pub(crate) mod replay;
pub(crate) mod serve;
pub mod window_args;

/// Exit code for bad usage or a bad format/configuration (clap uses 2 as well).
pub const EXIT_USAGE: u8 = 2;
/// Exit code for I/O errors.
pub const EXIT_IO: u8 = 1;

/// vpcflowd: who is talking to each network interface, how much, and what is rejected.
#[derive(Debug, Parser)]
#[command(name = "vpcflowd", version, about, long_about = None)]
pub struct Cli {
    /// Log format on standard error: `pretty` for people, `json` (one object per line) for log
    /// pipelines. The level comes from RUST_LOG (default `info`).
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Pretty, env = "VPCFLOWD_LOG_FORMAT")]
    pub log_format: LogFormat,

    #[command(subcommand)]
    pub command: Command,
}

/// See [`Cli::log_format`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    Pretty,
    Json,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Parse flow-log lines and print one JSON object per record.
    Parse(parse::ParseArgs),
    /// Run the window engine over flow-log files and print each closed snapshot.
    Replay(Box<replay::ReplayArgs>),
    /// Write seeded synthetic flow-log lines (for demos, benchmarks and tests).
    Generate(generate::GenerateArgs),
    /// Run the engine live as an Amazon Data Firehose HTTP endpoint destination, with the
    /// admin API.
    Serve(Box<serve::ServeArgs>),
    /// Print the reference of every `serve` configuration key (Markdown), generated from the
    /// configuration structs' doc comments and defaults.
    ConfigReference,
    /// Ask a running `serve` whether it is alive (exit 0) or not (exit 1): a container health
    /// check that needs no shell or HTTP client in the image.
    Healthcheck(healthcheck::HealthcheckArgs),
}

impl Cli {
    pub fn run(self) -> ExitCode {
        LOG_FORMAT.store(self.log_format == LogFormat::Json, std::sync::atomic::Ordering::Relaxed);
        match self.command {
            Command::Parse(args) => parse::run(&args),
            Command::Replay(args) => replay::run(&args),
            Command::Generate(args) => generate::run(&args),
            Command::Serve(args) => serve::run(&args),
            Command::ConfigReference => config_reference::run(),
            Command::Healthcheck(args) => healthcheck::run(&args),
        }
    }
}

static LOG_FORMAT: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Logs to stderr through `tracing`, filtered by `RUST_LOG` (default `info`), in the format of
/// `--log-format`.
pub fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    let _ = if LOG_FORMAT.load(std::sync::atomic::Ordering::Relaxed) {
        builder.json().with_current_span(false).try_init()
    } else {
        builder.try_init()
    };
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_command_line_definition_is_consistent() {
        use clap::CommandFactory;
        super::Cli::command().debug_assert();
    }
}
