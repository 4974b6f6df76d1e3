//! Emulators the tests run, installed on first use from the package registries and started
//! on a free 127.0.0.1 port; stopped (by process id) when dropped. See
//! `shared/reference/emulators.md` for what each does and does not emulate.
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::Duration;

static INSTALL: Mutex<()> = Mutex::new(());

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

/// A moto server (AWS API emulator) on a free loopback port.
pub struct Moto {
    child: Child,
    pub endpoint: String,
}

impl Moto {
    pub fn start() -> Moto {
        let mut child = Command::new(moto_server_bin())
            .args(["-H", "127.0.0.1", "-p", "0"])
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
