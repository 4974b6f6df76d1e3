//! Replay of real flow-log files: plain or gzip, S3 objects with their header line, lines
//! wrapped as `{"message":…}` or CloudWatch Logs payloads, and directories of them (every file
//! under them, in path order). Reading goes through vpcflowd's own file reader, so the harness
//! accepts exactly what `vpcflowd replay` accepts; what it refuses is reported, not sent.
//!
//! Each record is sent as its flow-log line (envelopes unwrapped), so the server sees the lines
//! Firehose would deliver. The formats met (from headers or `--format`) are what the server
//! must be configured with.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use vpcflowd::decode::{Layout, LayoutSet};
use vpcflowd::source::file::{FileReader, Input};

use super::{Traffic, start_of};

/// Reads up to `limit` records from `paths`.
pub fn read(paths: &[PathBuf], formats: &[String], limit: usize) -> Result<Traffic> {
    let configured = LayoutSet::from_formats(formats).context("--format")?;
    let mut files = Vec::new();
    for p in paths {
        collect(p, &mut files)?;
    }
    let mut reader = FileReader::new(configured.clone());
    let mut lines = Vec::new();
    let mut times = Vec::new();
    let mut seen: Vec<Layout> = Vec::new();
    let mut refused = Vec::new();
    for file in &files {
        let input = Input::from_arg(file);
        let mut stream = input.open().with_context(|| format!("open {}", input.name()))?;
        reader
            .read(
                &mut stream,
                |parsed, _| {
                    if lines.len() < limit {
                        if !seen.contains(parsed.layout) {
                            seen.push(parsed.layout.clone());
                        }
                        lines.push(parsed.text.to_owned());
                        times.push(start_of(parsed.layout, parsed.text));
                    }
                    Ok(())
                },
                |rejection| {
                    if refused.len() < 5 {
                        refused.push(format!(
                            "{}:{}: {}",
                            input.name(),
                            rejection.line,
                            rejection.detail
                        ));
                    }
                },
            )
            .with_context(|| format!("read {}", input.name()))?;
        if lines.len() >= limit {
            break;
        }
    }
    if reader.stats.rejected > 0 {
        eprintln!(
            "vpcflowd-loadtest: {} input lines refused and not sent, e.g.\n  {}",
            reader.stats.rejected,
            refused.join("\n  ")
        );
    }
    if lines.is_empty() {
        bail!("no flow-log records in {}", paths_list(paths));
    }
    // The layouts met, which the server must tell apart by field count as the harness does.
    let defaults = LayoutSet::default();
    let custom_formats = seen.iter().any(|l| !defaults.layouts().contains(l));
    let layouts = LayoutSet::new(seen).context(
        "the files use two formats with the same number of fields: no receiver can tell \
         their lines apart; replay them separately",
    )?;
    let n = lines.len();
    Ok(Traffic { lines, times, phases: std::iter::once(0..n).collect(), layouts, custom_formats })
}

/// `path` itself, or every file under it when it is a directory (sorted, hidden files skipped).
fn collect(path: &Path, out: &mut Vec<PathBuf>) -> Result<()> {
    if path == Path::new("-") || !path.is_dir() {
        out.push(path.to_owned());
        return Ok(());
    }
    let mut entries: Vec<PathBuf> = std::fs::read_dir(path)
        .with_context(|| format!("list {}", path.display()))?
        .map(|e| e.map(|e| e.path()))
        .collect::<Result<_, _>>()
        .with_context(|| format!("list {}", path.display()))?;
    entries.sort();
    for e in entries {
        if e.file_name().is_some_and(|n| n.to_string_lossy().starts_with('.')) {
            continue;
        }
        collect(&e, out)?;
    }
    Ok(())
}

fn paths_list(paths: &[PathBuf]) -> String {
    paths.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(", ")
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;

    #[test]
    fn a_directory_of_plain_gzip_and_s3_files_reads_in_path_order() {
        let dir =
            std::env::temp_dir().join(format!("vpcflowd-loadtest-files-{}", std::process::id()));
        let sub = dir.join("b");
        std::fs::create_dir_all(&sub).unwrap();
        let default_line = "2 123456789012 eni-1 10.0.0.1 10.0.0.2 443 5000 6 10 840 1700000000 1700000060 ACCEPT OK";
        std::fs::write(dir.join("a.log"), format!("{default_line}\n")).unwrap();
        // An S3 object in a custom format, gzip'd, with its header line.
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        writeln!(gz, "interface-id srcaddr dstaddr bytes packets start end action log-status")
            .unwrap();
        writeln!(gz, "eni-2 10.0.0.3 10.0.0.4 100 1 1700000100 1700000110 REJECT OK").unwrap();
        std::fs::write(sub.join("c.log.gz"), gz.finish().unwrap()).unwrap();
        std::fs::write(dir.join(".hidden"), "not flow logs\n").unwrap();

        let t = read(std::slice::from_ref(&dir), &[], 100).unwrap();
        assert_eq!(
            t.lines,
            [default_line, "eni-2 10.0.0.3 10.0.0.4 100 1 1700000100 1700000110 REJECT OK"]
        );
        assert_eq!(t.times, [1_700_000_000, 1_700_000_100]);
        assert!(t.custom_formats);
        assert_eq!(t.layouts.layouts().len(), 2);
        // The limit stops reading.
        assert_eq!(read(std::slice::from_ref(&dir), &[], 1).unwrap().lines.len(), 1);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
