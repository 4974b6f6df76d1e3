use std::process::ExitCode;

use clap::Parser;
use vpcflowd::cli::Cli;

fn main() -> ExitCode {
    Cli::parse().run()
}
