//! The `vpcflowd` command line: one module per subcommand, each with its clap arguments (whose
//! doc comments are the `--help` text) and a `run` function returning the exit code.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

pub mod generate;
pub mod parse;
pub mod replay;
pub mod window_args;

/// Exit code for bad usage or a bad format/configuration (clap uses 2 as well).
pub const EXIT_USAGE: u8 = 2;
/// Exit code for I/O errors.
pub const EXIT_IO: u8 = 1;

/// vpcflowd: who is talking to each network interface, how much, and what is rejected.
#[derive(Debug, Parser)]
#[command(name = "vpcflowd", version, about, long_about = None)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Parse flow-log lines and print one JSON object per record.
    Parse(parse::ParseArgs),
    /// Run the window engine over flow-log files and print each closed snapshot.
    Replay(replay::ReplayArgs),
    /// Write seeded synthetic flow-log lines (for demos, benchmarks and tests).
    Generate(generate::GenerateArgs),
}

impl Cli {
    pub fn run(self) -> ExitCode {
        match self.command {
            Command::Parse(args) => parse::run(&args),
            Command::Replay(args) => replay::run(&args),
            Command::Generate(args) => generate::run(&args),
        }
    }
}
