//! What the container image promises, as far as this machine allows (it has no container
//! engine): the statically linked `vpcflowd` runs in an otherwise empty root filesystem, holding
//! only the binary and a CA bundle as `deploy/Dockerfile`'s scratch image does, and serves a
//! Firehose delivery end to end.
//!
//! The binary is this test build's own `vpcflowd` when it is static (`.ci/run` builds the tests
//! with `+crt-static` for `x86_64-unknown-linux-gnu`); otherwise the test builds one the same way
//! into `target/tmp/static` first (once, a few minutes), so that `cargo test` alone runs it too.

use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::common::serve::{Firehose, Server, total, wrapped};

const TARGET: &str = "x86_64-unknown-linux-gnu";
const CA_BUNDLE: &str = "etc/ssl/certs/ca-certificates.crt";

/// Whether `bin` is an ELF executable without an interpreter (`PT_INTERP`): a static or
/// static-pie executable, which needs no file besides itself.
fn is_static(bin: &Path) -> bool {
    let Ok(elf) = std::fs::read(bin) else { return false };
    let u16_at = |o: usize| u16::from_le_bytes([elf[o], elf[o + 1]]) as usize;
    if elf.len() < 64 || &elf[..4] != b"\x7fELF" || elf[4] != 2 {
        return false;
    }
    let phoff = u64::from_le_bytes(elf[0x20..0x28].try_into().unwrap()) as usize;
    let (size, count) = (u16_at(0x36), u16_at(0x38));
    (0..count).all(|i| {
        let at = phoff + i * size;
        elf.get(at..at + 4).is_some_and(|t| u32::from_le_bytes(t.try_into().unwrap()) != 3)
    })
}

/// A statically linked `vpcflowd`: this build's, or one built here.
fn static_binary() -> PathBuf {
    let own = PathBuf::from(env!("CARGO_BIN_EXE_vpcflowd"));
    if is_static(&own) {
        return own;
    }
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("static");
    eprintln!("building a static vpcflowd into {} (once)", dir.display());
    let status = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
        .args(["build", "--locked", "-p", "vpcflowd", "--bin", "vpcflowd", "--target", TARGET])
        .arg("--target-dir")
        .arg(&dir)
        .env("CARGO_TARGET_X86_64_UNKNOWN_LINUX_GNU_RUSTFLAGS", "-C target-feature=+crt-static")
        .env_remove("RUSTFLAGS")
        .env_remove("CARGO_ENCODED_RUSTFLAGS")
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .status()
        .expect("run cargo");
    assert!(status.success(), "the static build failed");
    let bin = dir.join(TARGET).join("debug/vpcflowd");
    assert!(is_static(&bin), "{} is not statically linked", bin.display());
    bin
}

#[tokio::test(flavor = "multi_thread")]
async fn the_static_binary_serves_a_delivery_in_an_empty_root() {
    let bin = static_binary();
    assert!(!is_static(Path::new("/bin/sh")), "the ELF check tells dynamic executables apart");

    // The image's root: the binary and the CA bundle, nothing else (no libc, no /etc/hosts).
    let root = tempfile::tempdir().unwrap();
    std::fs::copy(&bin, root.path().join("vpcflowd")).unwrap();
    let ca = root.path().join(CA_BUNDLE);
    std::fs::create_dir_all(ca.parent().unwrap()).unwrap();
    std::fs::copy(Path::new("/").join(CA_BUNDLE), &ca).unwrap();
    let mut files: Vec<_> = walk(root.path());
    files.sort();
    assert_eq!(files, [CA_BUNDLE, "vpcflowd"]);

    // chroot(2) and chdir(2) in the child, with their paths prepared before the fork.
    let dir = CString::new(root.path().as_os_str().as_bytes()).unwrap();
    let mut cmd = Command::new("/vpcflowd");
    cmd.env_clear().env("SSL_CERT_FILE", format!("/{CA_BUNDLE}"));
    // SAFETY: chroot and chdir are async-signal-safe system calls on memory prepared above.
    unsafe {
        cmd.pre_exec(move || {
            if libc::chroot(dir.as_ptr()) != 0 || libc::chdir(c"/".as_ptr()) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let server = Server::start_with(
        cmd,
        &["--access-key", "k", "--time", "processing", "--window", "1m", "--slide", "1m"],
        &[],
    );

    let mut firehose = Firehose::new(&server.ingest, Some("k"));
    firehose.gzip = true;
    let mut sent = 0u64;
    for request in 0..3u64 {
        let lines: Vec<String> = (0..200u64)
            .map(|i| {
                format!(
                    "2 123456789012 eni-{:017x} 10.0.{request}.{} 172.16.0.1 40000 443 6 2 {} 1700000000 1700000060 ACCEPT OK",
                    i % 5,
                    i % 250,
                    100 + i
                )
            })
            .collect();
        let (status, answer) = firehose.send(&format!("req-{request}"), &wrapped(&lines)).await;
        assert_eq!(status, 200, "{answer}");
        sent += lines.len() as u64;
    }
    assert_eq!(server.status().await["ingest"]["records"], sent);
    let (exit, snapshots, stderr) = server.stop();
    assert!(exit.success(), "{stderr:#?}");
    assert_eq!(total(&snapshots, "flows"), sent);
    assert_eq!(total(&snapshots, "bytes"), 3 * (0..200u64).map(|i| 100 + i).sum::<u64>());
    assert!(snapshots.iter().all(|s| s["region"] == "us-east-1"));
}

/// Every file under `dir`, relative to it.
fn walk(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let path = e.unwrap().path();
        if path.is_dir() {
            let name = path.file_name().unwrap().to_string_lossy().to_string();
            out.extend(walk(&path).into_iter().map(|f| format!("{name}/{f}")));
        } else {
            out.push(path.file_name().unwrap().to_string_lossy().to_string());
        }
    }
    out
}
