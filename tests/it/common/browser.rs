//! Headless Chromium driven over WebDriver: Debian's `chromium` and `chromium-driver` (installed
//! by `.ci/run`, and here with apt-get when missing), a `chromedriver` on a free loopback port
//! stopped by process id, and sessions through fantoccini.

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fantoccini::{Client, ClientBuilder};
use serde_json::{Value, json};

const CHROMEDRIVER: &str = "/usr/bin/chromedriver";

/// Installs Chromium and its driver with apt-get unless both are there.
fn ensure_installed() {
    let _guard = super::tools::INSTALL.lock().unwrap_or_else(|e| e.into_inner());
    if Path::new(CHROMEDRIVER).exists() && Path::new("/usr/bin/chromium").exists() {
        return;
    }
    let ok = Command::new("apt-get")
        .args(["install", "-y", "--no-install-recommends", "chromium", "chromium-driver"])
        .env("DEBIAN_FRONTEND", "noninteractive")
        .status()
        .expect("apt-get");
    assert!(ok.success(), "apt-get install chromium chromium-driver failed");
}

/// A running chromedriver, in a process group of its own with the browsers it starts, so
/// that dropping it (also on a failed assertion) leaves no browser behind.
pub struct Driver {
    child: Child,
    pub url: String,
}

impl Driver {
    pub async fn start() -> Driver {
        ensure_installed();
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let child = Command::new(CHROMEDRIVER)
            .args([format!("--port={port}"), "--allowed-ips=127.0.0.1".into()])
            .process_group(0)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start chromedriver");
        let driver = Driver { child, url: format!("http://127.0.0.1:{port}") };
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let ready = reqwest::get(format!("{}/status", driver.url)).await.ok();
            if let Some(r) = ready {
                let status: Value = r.json().await.unwrap_or_default();
                if status["value"]["ready"] == true {
                    return driver;
                }
            }
            assert!(Instant::now() < deadline, "chromedriver did not get ready");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// A new headless browser of `width` × `height` CSS pixels that keeps its console log.
    pub async fn browser(&self, width: u32, height: u32) -> Client {
        let mut caps = serde_json::Map::new();
        caps.insert(
            "goog:chromeOptions".into(),
            json!({"args": ["--headless=new", "--no-sandbox", "--disable-gpu",
                "--disable-dev-shm-usage", format!("--window-size={width},{height}")]}),
        );
        caps.insert("goog:loggingPrefs".into(), json!({"browser": "ALL"}));
        let connector = hyper_util::client::legacy::connect::HttpConnector::new();
        ClientBuilder::new(connector)
            .capabilities(caps)
            .connect(&self.url)
            .await
            .expect("a Chromium session")
    }

    /// What the page logged to its console at level SEVERE (errors, failed loads).
    pub async fn console_errors(&self, client: &Client) -> Vec<String> {
        let id = client.session_id().await.unwrap().expect("a session id");
        let url = format!("{}/session/{id}/se/log", self.url);
        let log: Value = reqwest::Client::new()
            .post(url)
            .json(&json!({"type": "browser"}))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        log["value"]
            .as_array()
            .unwrap_or(&Vec::new())
            .iter()
            .filter(|e| e["level"] == "SEVERE")
            .map(|e| e["message"].as_str().unwrap_or_default().to_string())
            .collect()
    }
}

impl Drop for Driver {
    /// Kills the process group: chromedriver and every browser it started, also those a test
    /// that failed midway left open.
    fn drop(&mut self) {
        let group = format!("-{}", self.child.id());
        let _ = Command::new("kill").args(["-KILL", "--", &group]).status();
        let _ = self.child.wait();
    }
}

/// Where screenshots go: `target/screenshots/`, for a person to open.
pub fn screenshot_dir() -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/screenshots");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Saves the browser's viewport as `target/screenshots/NAME.png`.
pub async fn screenshot(client: &Client, name: &str) {
    let png = client.screenshot().await.expect("a screenshot");
    std::fs::write(screenshot_dir().join(format!("{name}.png")), png).unwrap();
}

/// Polls `script` (JavaScript returning a value) until `done` holds, for up to 30 s.
pub async fn wait_for(
    client: &Client,
    what: &str,
    script: &str,
    done: impl Fn(&Value) -> bool,
) -> Value {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let v = client.execute(script, Vec::new()).await.unwrap_or(Value::Null);
        if done(&v) {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}; last: {v}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
