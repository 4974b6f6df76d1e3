//! `vpcflowd parse`: reads flow-log lines and prints one JSON object per record.
//!
//! Rejected lines go to stderr as `FILE:LINE: reason`, followed by a summary. The exit code is 0
//! when every input was read (even with rejected lines), 2 for a usage or format error and 1 for
//! an I/O error.

use std::io::{self, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;

use super::{EXIT_IO, EXIT_USAGE};
use crate::decode::{LayoutSet, RecordJson};
use crate::source::file::{FileReader, Input, Rejection};

#[derive(Debug, Args)]
pub struct ParseArgs {
    /// The flow log's format: `${field} ${field} …` as given to `CreateFlowLogs --log-format`,
    /// bare field names, or `default` / `tgw-default`. Repeat it for inputs that mix formats
    /// with different field counts. Without it, the VPC and transit-gateway default formats.
    /// An S3 header line in a file overrides it for the rest of that file.
    #[arg(long, short = 'f', value_name = "FMT")]
    pub format: Vec<String>,

    /// Files to read, plain or gzip; `-` or nothing reads standard input.
    #[arg(value_name = "FILE")]
    pub files: Vec<PathBuf>,
}

pub(crate) fn run(args: &ParseArgs) -> ExitCode {
    let layouts = match LayoutSet::from_formats(&args.format) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("vpcflowd parse: {e}");
            return ExitCode::from(EXIT_USAGE);
        }
    };
    let inputs: Vec<Input> = if args.files.is_empty() {
        vec![Input::Stdin]
    } else {
        args.files.iter().map(|f| Input::from_arg(f)).collect()
    };

    let mut reader = FileReader::new(layouts);
    let stdout = io::stdout();
    let mut out = io::BufWriter::with_capacity(1 << 16, stdout.lock());
    let stderr = io::stderr();
    let mut err = io::BufWriter::new(stderr.lock());
    let mut io_failed = false;

    for input in &inputs {
        let name = input.name();
        let mut write_error: Option<io::Error> = None;
        let result = input.open().and_then(|mut r| {
            reader.read(
                &mut r,
                |parsed, _ctx| {
                    if write_error.is_some() {
                        return Ok(());
                    }
                    let written = serde_json::to_writer(&mut out, &RecordJson(parsed))
                        .map_err(io::Error::from)
                        .and_then(|()| out.write_all(b"\n"));
                    if let Err(e) = written {
                        write_error = Some(e);
                    }
                    Ok(())
                },
                |r: &Rejection<'_>| {
                    let _ = if r.sub_line > 0 {
                        writeln!(
                            err,
                            "{name}:{} (line {} of the envelope): {}",
                            r.line,
                            r.sub_line + 1,
                            r.detail
                        )
                    } else {
                        writeln!(err, "{name}:{}: {}", r.line, r.detail)
                    };
                },
            )
        });
        if let Some(e) = write_error {
            // A closed pipe (`| head`) is the reader's choice, not a failure.
            if e.kind() == io::ErrorKind::BrokenPipe {
                return ExitCode::SUCCESS;
            }
            let _ = writeln!(err, "vpcflowd parse: writing output: {e}");
            let _ = err.flush();
            return ExitCode::from(EXIT_IO);
        }
        if let Err(e) = result {
            io_failed = true;
            let _ = writeln!(err, "vpcflowd parse: {name}: {e}");
        }
    }
    if let Err(e) = out.flush() {
        if e.kind() == io::ErrorKind::BrokenPipe {
            return ExitCode::SUCCESS;
        }
        let _ = writeln!(err, "vpcflowd parse: writing output: {e}");
        io_failed = true;
    }
    let s = reader.stats;
    let _ = writeln!(
        err,
        "vpcflowd parse: {} records from {} lines in {} input(s); {} header line(s); {} rejected ({})",
        s.records,
        s.lines,
        inputs.len(),
        s.headers,
        s.rejected,
        reader.rejects
    );
    let _ = err.flush();
    if io_failed { ExitCode::from(EXIT_IO) } else { ExitCode::SUCCESS }
}
