//! A real `vpcflowd serve` process on free loopback ports, and a Firehose sender that sends what
//! Firehose sends (headers, access key, ms timestamp, base64 records, optional gzip body).
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use serde_json::{Value, json};

pub struct Server {
    child: Child,
    pub ingest: String,
    pub admin: String,
    stderr: mpsc::Receiver<String>,
    /// Reads stdout as it is written, so that a full pipe never blocks the server's snapshot
    /// printer (and with it the API's store); [`Server::wait`] takes what it read.
    stdout: Option<std::thread::JoinHandle<String>>,
    /// What it wrote to stderr before the line saying where it listens (its tasks log from
    /// the start: Kinesis consumers may already be reading).
    early_stderr: Vec<String>,
    /// One HTTP client for every status poll: `reqwest::get` builds a client (and loads its TLS
    /// roots) per call, which, polling three servers every 50 ms, took most of a core from the
    /// servers under test on a 2-core machine. One per server, not one per process: a client's
    /// pooled connections belong to the runtime of the test that opened them.
    http: reqwest::Client,
}

impl Server {
    /// Starts `vpcflowd serve` with `args` (listeners on port 0) and `env`.
    pub fn start(args: &[&str], env: &[(&str, &str)]) -> Server {
        Server::start_with(Command::new(env!("CARGO_BIN_EXE_vpcflowd")), args, env)
    }

    /// Like [`Server::start`], with the admin listener on `admin` (to restart on the same
    /// address, as a browser reconnecting expects).
    pub fn start_at(admin: &str, args: &[&str], env: &[(&str, &str)]) -> Server {
        Server::launch(Command::new(env!("CARGO_BIN_EXE_vpcflowd")), admin, args, env)
    }

    /// Like [`Server::start`], with `cmd` running the `vpcflowd` binary (e.g. in a chroot).
    pub fn start_with(cmd: Command, args: &[&str], env: &[(&str, &str)]) -> Server {
        Server::launch(cmd, "127.0.0.1:0", args, env)
    }

    fn launch(mut cmd: Command, admin: &str, args: &[&str], env: &[(&str, &str)]) -> Server {
        cmd.args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--admin-listen",
            admin,
            "--print-snapshots",
        ])
        .args(args)
        .env("RUST_LOG", std::env::var("TEST_SERVE_LOG").unwrap_or_else(|_| "warn".into()))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().expect("start vpcflowd serve");
        let stderr = child.stderr.take().unwrap();
        let mut stdout_pipe = child.stdout.take().unwrap();
        let stdout = Some(std::thread::spawn(move || {
            let mut out = String::new();
            stdout_pipe.read_to_string(&mut out).ok();
            out
        }));
        let (tx, rx) = mpsc::channel();
        let pid = child.id();
        std::thread::spawn(move || {
            let echo = std::env::var_os("TEST_ECHO_SERVE_STDERR").is_some();
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if echo {
                    eprintln!("[serve {pid}] {line}");
                }
                if tx.send(line).is_err() {
                    return;
                }
            }
        });
        // From here the Server owns the child: dropping it (also on a panic) kills and reaps it.
        let (ingest, admin, http) = (String::new(), String::new(), reqwest::Client::new());
        let mut server =
            Server { child, ingest, admin, stderr: rx, stdout, early_stderr: Vec::new(), http };
        loop {
            let Ok(line) = server.stderr.recv_timeout(Duration::from_secs(60)) else {
                panic!("serve did not start; stderr: {:#?}", server.early_stderr);
            };
            if let Some(rest) = line.strip_prefix("vpcflowd serve: ingest ") {
                let (ingest, admin) = rest.split_once(" admin on ").unwrap();
                // `on ADDR`, or `off` (no Firehose listener: `ingest` stays empty).
                if let Some(ingest) = ingest.strip_prefix("on ") {
                    server.ingest = format!("http://{ingest}/");
                }
                server.admin = format!("http://{admin}");
                return server;
            }
            server.early_stderr.push(line);
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends SIGTERM.
    pub fn sigterm(&self) {
        let ok = Command::new("kill").args(["-TERM", &self.pid().to_string()]).status().unwrap();
        assert!(ok.success());
    }

    /// Waits for the process to exit; returns its status, the snapshots it printed, and its
    /// stderr (all of it, but for the line saying where it listens).
    pub fn wait(mut self) -> (ExitStatus, Vec<Value>, Vec<String>) {
        let status = self.child.wait().unwrap();
        let out = self.stdout.take().unwrap().join().unwrap();
        let snapshots = out.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
        let mut stderr = std::mem::take(&mut self.early_stderr);
        // Every line: the reader thread ends (and the channel with it) at the pipe's end, which
        // the exit has come to; `try_iter` could stop short of lines still being forwarded.
        stderr.extend(self.stderr.iter());
        (status, snapshots, stderr)
    }

    /// SIGTERM, then [`Server::wait`].
    pub fn stop(self) -> (ExitStatus, Vec<Value>, Vec<String>) {
        self.sigterm();
        self.wait()
    }

    pub async fn status(&self) -> Value {
        self.get("/api/v1/status").await
    }

    /// The JSON the admin listener answers at `path`.
    pub async fn get(&self, path: &str) -> Value {
        let url = format!("{}{path}", self.admin);
        self.http.get(url).send().await.unwrap().json().await.unwrap()
    }

    /// Polls the status until `done` holds (or fails after 60 s, showing the last status).
    pub async fn wait_for(&self, what: &str, done: impl Fn(&Value) -> bool) -> Value {
        self.wait_for_at("/api/v1/status", what, done).await
    }

    /// Polls the admin listener's `path` until `done` holds (or fails after 60 s, showing the
    /// last answer).
    pub async fn wait_for_at(
        &self,
        path: &str,
        what: &str,
        done: impl Fn(&Value) -> bool,
    ) -> Value {
        let mut answer = self.get(path).await;
        for _ in 0..1200 {
            if done(&answer) {
                return answer;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
            answer = self.get(path).await;
        }
        panic!("timed out waiting for {what}; {path} answered: {answer:#}");
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The JSON body Firehose sends: request id, timestamp in ms, base64 records.
pub fn firehose_body(request_id: &str, records: &[Vec<u8>]) -> Vec<u8> {
    let ts = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis()
        as u64;
    let records: Vec<Value> = records.iter().map(|r| json!({"data": BASE64.encode(r)})).collect();
    serde_json::to_vec(&json!({"requestId": request_id, "timestamp": ts, "records": records}))
        .unwrap()
}

/// `{"message":"…"}` records, as a flow log publishing straight to Firehose sends them.
pub fn wrapped(lines: &[String]) -> Vec<Vec<u8>> {
    lines.iter().map(|l| serde_json::to_vec(&json!({"message": l})).unwrap()).collect()
}

/// Sends like Firehose: every X-Amz-Firehose-* header, optional gzip body.
pub struct Firehose {
    client: reqwest::Client,
    url: String,
    pub key: Option<String>,
    pub gzip: bool,
}

impl Firehose {
    pub fn new(url: &str, key: Option<&str>) -> Firehose {
        Firehose {
            client: reqwest::Client::new(),
            url: url.to_string(),
            key: key.map(String::from),
            gzip: false,
        }
    }

    pub fn url(&self) -> &str {
        &self.url
    }

    /// Posts a body for `request_id`; returns the status and the JSON response, or status 0 and
    /// the error when no answer came (the server died, as the kill -9 tests make it).
    pub async fn post(&self, request_id: &str, body: Vec<u8>) -> (u16, Value) {
        let mut req = self
            .client
            .post(&self.url)
            .header("Content-Type", "application/json")
            .header("X-Amz-Firehose-Protocol-Version", "1.0")
            .header("X-Amz-Firehose-Request-Id", request_id)
            .header(
                "X-Amz-Firehose-Source-Arn",
                "arn:aws:firehose:us-east-1:123456789012:deliverystream/flows",
            )
            .header(
                "X-Amz-Firehose-Common-Attributes",
                r#"{"commonAttributes":{"region":"us-east-1"}}"#,
            );
        if let Some(k) = &self.key {
            req = req.header("X-Amz-Firehose-Access-Key", k);
        }
        let body = if self.gzip {
            req = req.header("Content-Encoding", "gzip");
            super::gzip(&body)
        } else {
            body
        };
        let resp = match req.body(body).send().await {
            Ok(resp) => resp,
            Err(e) => return (0, Value::String(e.to_string())),
        };
        let status = resp.status().as_u16();
        assert_eq!(
            resp.headers()["content-type"],
            "application/json",
            "Firehose requires JSON answers"
        );
        let json: Value = resp.json().await.expect("a JSON answer");
        (status, json)
    }

    /// Posts records as one request.
    pub async fn send(&self, request_id: &str, records: &[Vec<u8>]) -> (u16, Value) {
        self.post(request_id, firehose_body(request_id, records)).await
    }
}

/// Sum of a numeric field over snapshots.
pub fn total(snapshots: &[Value], field: &str) -> u64 {
    snapshots.iter().map(|s| s[field].as_u64().unwrap()).sum()
}
