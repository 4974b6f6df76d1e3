//! Emulators the tests run, installed on first use from the package registries and started
//! on a free 127.0.0.1 port; stopped (by process id) when dropped. See
//! `shared/reference/emulators.md` for what each does and does not emulate.
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::Duration;

pub(crate) static INSTALL: Mutex<()> = Mutex::new(());

/// Where installed tools live: `target/tmp/tools` (`.ci/run` installs there too).
pub fn tools_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("tools")
}

/// The `moto_server` executable, installed into a virtualenv if missing.
pub fn moto_server_bin() -> PathBuf {
    let _guard = INSTALL.lock().unwrap_or_else(|e| e.into_inner());
    let venv = tools_dir().join("venv");
    let bin = venv.join("bin/moto_server");
    if bin.exists() {
        return bin;
    }
    std::fs::create_dir_all(tools_dir()).unwrap();
    let ok = Command::new("python3").args(["-m", "venv"]).arg(&venv).status().expect("python3");
    assert!(ok.success(), "python3 -m venv failed");
    let ok = Command::new(venv.join("bin/pip"))
        .args(["install", "--quiet", "moto[server]==5.2.5"])
        .status()
        .expect("pip");
    assert!(ok.success(), "pip install moto[server] failed");
    bin
}

/// Environment for a process (`vpcflowd serve`, the load-test harness) talking to emulators.
pub const AWS_ENV: [(&str, &str); 4] = [
    ("AWS_ACCESS_KEY_ID", "test"),
    ("AWS_SECRET_ACCESS_KEY", "test"),
    ("AWS_REGION", "us-east-1"),
    ("AWS_EC2_METADATA_DISABLED", "true"),
];

/// SDK configuration for an emulator at `endpoint`: static test credentials, us-east-1.
pub fn sdk_config(endpoint: &str) -> aws_config::SdkConfig {
    aws_config::SdkConfig::builder()
        .behavior_version(aws_config::BehaviorVersion::latest())
        .region(aws_config::Region::new("us-east-1"))
        .credentials_provider(aws_sdk_kinesis::config::SharedCredentialsProvider::new(
            aws_sdk_kinesis::config::Credentials::new("test", "test", None, None, "static"),
        ))
        .endpoint_url(endpoint)
        .build()
}

/// Creates a stream of `shards` shards and waits until it is ACTIVE.
pub async fn create_stream(k: &aws_sdk_kinesis::Client, name: &str, shards: i32) {
    k.create_stream().stream_name(name).shard_count(shards).send().await.unwrap();
    wait_active(k, name).await;
}

pub async fn wait_active(k: &aws_sdk_kinesis::Client, name: &str) {
    for _ in 0..200 {
        let d = k.describe_stream_summary().stream_name(name).send().await.unwrap();
        let status = d.stream_description_summary.unwrap().stream_status;
        if status == aws_sdk_kinesis::types::StreamStatus::Active {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("stream {name} did not become ACTIVE");
}

/// Starts moto's server with one request at a time inside its backends.
///
/// moto serves each connection on its own thread, and its conditional writes check and then
/// write with no lock between: two replicas taking the same free lease at once could both
/// succeed (measured with boto3: 2 of 200 three-way races on moto 5.2.5), where DynamoDB lets
/// exactly one win. `kinesis_leases` then saw a live replica lose a lease at start-up about one
/// run in two on a loaded machine, for the emulator's sake (0 in 5 with the lock). A lock
/// around the application restores DynamoDB's atomicity; everything else is moto's own.
const MOTO_SERIALIZED: &str = r#"
import sys, threading
import moto.server
from moto.moto_server.werkzeug_app import DomainDispatcherApplication
lock = threading.Lock()
dispatch = DomainDispatcherApplication.__call__
def serialized(self, environ, start_response):
    with lock:
        return dispatch(self, environ, start_response)
DomainDispatcherApplication.__call__ = serialized
moto.server.main(sys.argv[1:])
"#;

/// A moto server (AWS API emulator) on a free loopback port.
pub struct Moto {
    child: Child,
    pub endpoint: String,
}

impl Moto {
    pub fn start() -> Moto {
        let python = moto_server_bin().with_file_name("python");
        let mut child = Command::new(python)
            .args(["-c", MOTO_SERIALIZED, "-H", "127.0.0.1", "-p", "0"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start moto_server");
        let stderr = child.stderr.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        let mut moto = Moto { child, endpoint: String::new() };
        loop {
            let Ok(line) = rx.recv_timeout(Duration::from_secs(60)) else {
                panic!("moto_server did not start");
            };
            if let Some(url) = line.split("Running on ").nth(1) {
                moto.endpoint = url.trim().to_string();
                return moto;
            }
        }
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = Command::new("kill").args(["-TERM", &self.child.id().to_string()]).status();
        let _ = self.child.wait();
    }
}

impl Moto {
    /// A client for moto's Firehose.
    pub fn firehose(&self) -> aws_sdk_firehose::Client {
        aws_sdk_firehose::Client::new(&sdk_config(&self.endpoint))
    }

    /// Creates delivery stream `name` with an HTTP endpoint destination at `url`; returns a
    /// client for it.
    pub async fn http_delivery_stream(&self, name: &str, url: &str) -> aws_sdk_firehose::Client {
        use aws_sdk_firehose::types::{
            HttpEndpointConfiguration, HttpEndpointDestinationConfiguration,
            S3DestinationConfiguration,
        };
        let client = self.firehose();
        client
            .create_delivery_stream()
            .delivery_stream_name(name)
            .http_endpoint_destination_configuration(
                HttpEndpointDestinationConfiguration::builder()
                    .endpoint_configuration(
                        HttpEndpointConfiguration::builder()
                            .url(url)
                            .name("vpcflowd")
                            .build()
                            .expect("url is set"),
                    )
                    .s3_configuration(
                        S3DestinationConfiguration::builder()
                            .role_arn("arn:aws:iam::123456789012:role/firehose")
                            .bucket_arn("arn:aws:s3:::failed-deliveries")
                            .build()
                            .expect("role and bucket are set"),
                    )
                    .build(),
            )
            .send()
            .await
            .expect("create the delivery stream");
        client
    }
}

/// The `prometheus` server executable: Debian's package (`.ci/run` installs it; installed here
/// with apt-get if missing).
pub fn prometheus_bin() -> PathBuf {
    let _guard = INSTALL.lock().unwrap_or_else(|e| e.into_inner());
    let bin = PathBuf::from("/usr/bin/prometheus");
    if !bin.exists() {
        let ok = Command::new("apt-get")
            .args(["install", "-y", "--no-install-recommends", "prometheus"])
            .env("DEBIAN_FRONTEND", "noninteractive")
            .status()
            .expect("apt-get");
        assert!(ok.success(), "apt-get install prometheus failed");
    }
    bin
}

/// A Prometheus server on a free loopback port scraping `targets` every second; its data
/// lives in a temporary directory.
pub struct Prometheus {
    child: Child,
    pub url: String,
    _dir: tempfile::TempDir,
}

impl Prometheus {
    pub fn start(targets: &[&str]) -> Prometheus {
        let dir = tempfile::tempdir().unwrap();
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let targets: Vec<String> = targets.iter().map(|t| format!("'{t}'")).collect();
        let config = format!(
            "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\nscrape_configs:\n  - job_name: vpcflowd\n    static_configs:\n      - targets: [{}]\n",
            targets.join(", ")
        );
        let config_path = dir.path().join("prometheus.yml");
        std::fs::write(&config_path, config).unwrap();
        let child = Command::new(prometheus_bin())
            .arg(format!("--config.file={}", config_path.display()))
            .arg(format!("--storage.tsdb.path={}", dir.path().join("data").display()))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start prometheus");
        Prometheus { child, url: format!("http://127.0.0.1:{port}"), _dir: dir }
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = Command::new("kill").args(["-TERM", &self.child.id().to_string()]).status();
        let _ = self.child.wait();
    }
}

/// The kinesalite package directory, installed with npm if missing.
pub fn kinesalite_dir() -> PathBuf {
    let _guard = INSTALL.lock().unwrap_or_else(|e| e.into_inner());
    let dir = tools_dir().join("node");
    if !dir.join("node_modules/kinesalite").exists() {
        std::fs::create_dir_all(&dir).unwrap();
        let ok = Command::new("npm")
            .args(["install", "--silent", "--no-audit", "--no-fund", "--prefix"])
            .arg(&dir)
            .arg("kinesalite@3.3.3")
            .status()
            .expect("npm");
        assert!(ok.success(), "npm install kinesalite failed");
    }
    // Its CLI listens on every interface and keeps streams CREATING for 500 ms; this wrapper
    // binds loopback, picks a free port and makes state changes instant.
    std::fs::write(
        dir.join("kinesalite-local.js"),
        "const kinesalite = require('kinesalite');\n\
         const [port = 0, createMs = 0, updateMs = 0, shardLimit = 100] = process.argv.slice(2).map(Number);\n\
         const server = kinesalite({ createStreamMs: createMs, deleteStreamMs: 0, updateStreamMs: updateMs, shardLimit });\n\
         server.listen(port, '127.0.0.1', () => console.log('READY ' + server.address().port));\n\
         process.on('SIGTERM', () => process.exit(0));\n",
    )
    .unwrap();
    dir
}

/// A kinesalite server (Kinesis Data Streams emulator) on a free loopback port.
pub struct Kinesalite {
    child: Child,
    pub endpoint: String,
}

impl Kinesalite {
    /// Starts kinesalite, trying again if node exits before it listens: once in a full
    /// `.ci/run`, beside the browser tests, it printed nothing and exited (its error is shown).
    pub fn start() -> Kinesalite {
        let mut failures = Vec::new();
        for _ in 0..3 {
            match Kinesalite::try_start() {
                Ok(k) => return k,
                Err(why) => failures.push(why),
            }
        }
        panic!("kinesalite did not start: {failures:#?}");
    }

    fn try_start() -> Result<Kinesalite, String> {
        let dir = kinesalite_dir();
        let mut child = Command::new("node")
            .arg(dir.join("kinesalite-local.js"))
            .current_dir(&dir)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start kinesalite");
        let stdout = child.stdout.take().unwrap();
        let mut lines = BufReader::new(stdout).lines();
        let line = lines.next().and_then(Result::ok).unwrap_or_default();
        let Some(port) = line.strip_prefix("READY ") else {
            // It printed something else, or exited: stop it, and say how it ended and why.
            let status = child_status(&mut child);
            let _ = child.kill();
            let _ = child.wait();
            let mut stderr = String::new();
            let _ = std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut stderr);
            return Err(format!("printed {line:?}, then {status}; stderr: {stderr}"));
        };
        // Keep draining its stdout and stderr so it never blocks on a full pipe.
        std::thread::spawn(move || for _ in lines {});
        let stderr = child.stderr.take().unwrap();
        std::thread::spawn(move || for _ in BufReader::new(stderr).lines() {});
        Ok(Kinesalite { endpoint: format!("http://127.0.0.1:{}", port.trim()), child })
    }
}

/// How a child that stopped ended.
fn child_status(child: &mut Child) -> String {
    match child.try_wait() {
        Ok(Some(status)) => status.to_string(),
        Ok(None) => "still running".into(),
        Err(e) => e.to_string(),
    }
}

impl Drop for Kinesalite {
    fn drop(&mut self) {
        let _ = Command::new("kill").args(["-TERM", &self.child.id().to_string()]).status();
        let _ = self.child.wait();
    }
}
