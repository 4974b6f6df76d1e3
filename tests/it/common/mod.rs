//! Helpers shared by the integration tests.
#![allow(dead_code)]

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

/// The vendored copy of `shared/corpus`.
pub fn corpus_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/corpus")
}

/// Runs the real `vpcflowd` binary with `args`, feeding `stdin`.
pub fn vpcflowd(args: &[&str], stdin: &[u8]) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_vpcflowd"))
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start vpcflowd");
    let mut input = child.stdin.take().unwrap();
    let stdin = stdin.to_vec();
    let writer = std::thread::spawn(move || {
        let _ = input.write_all(&stdin);
    });
    let out = child.wait_with_output().expect("wait for vpcflowd");
    writer.join().unwrap();
    out
}

pub fn gzip(data: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    e.write_all(data).unwrap();
    e.finish().unwrap()
}

/// One JSON value per stdout line.
pub fn json_lines(out: &[u8]) -> Vec<serde_json::Value> {
    String::from_utf8_lossy(out)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("bad JSON line {l}: {e}")))
        .collect()
}

/// The `# format: …` line of a corpus file, and its other lines.
pub fn corpus_file(name: &str) -> (String, Vec<String>) {
    let text = std::fs::read_to_string(corpus_dir().join(name)).unwrap();
    let mut lines = text.lines();
    let format = lines.next().unwrap().strip_prefix("# format: ").unwrap().to_string();
    (format, lines.map(str::to_string).collect())
}
/// An `http://127.0.0.1:<port>` URL that nothing listens on: the port was free a moment ago
/// and its listener is closed, so a connection to it is refused.
pub fn unreachable_url() -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    format!("http://{}", listener.local_addr().unwrap())
}

pub mod browser;
pub mod kinesis;
pub mod otlp;
pub mod serve;
pub mod tools;

/// Checks that each snapshot reads back into a `vpcflowd::window::Snapshot` (as a store
/// restored from disk reads it) that writes the same JSON, through JSON and MessagePack alike.
pub fn assert_reads_back(snapshots: &[serde_json::Value]) {
    use vpcflowd::window::Snapshot;
    for written in snapshots {
        let snapshot: Snapshot =
            serde_json::from_value(written.clone()).unwrap_or_else(|e| panic!("{e}: {written}"));
        assert_eq!(&serde_json::to_value(&snapshot).unwrap(), written);
        let packed = rmp_serde::to_vec_named(&snapshot).unwrap();
        let unpacked: Snapshot = rmp_serde::from_slice(&packed).unwrap();
        assert_eq!(unpacked, snapshot);
    }
}
