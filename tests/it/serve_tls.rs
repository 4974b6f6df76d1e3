//! The ingest listener over HTTPS (rustls), as Firehose requires, with a certificate made here.

use crate::common::serve::{Server, firehose_body, wrapped};

/// A self-signed certificate for `localhost`: (certificate PEM, key PEM).
fn self_signed() -> (String, String) {
    let cert = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
    (cert.cert.pem(), cert.signing_key.serialize_pem())
}

/// Replaces `path`'s contents at once (written aside, then renamed), as a secret mount does.
fn replace(path: &std::path::Path, contents: &str) {
    let aside = path.with_extension("new");
    std::fs::write(&aside, contents).unwrap();
    std::fs::rename(aside, path).unwrap();
}

/// The port of the server's ingest listener.
fn ingest_port(server: &Server) -> String {
    server.ingest.trim_end_matches('/').rsplit(':').next().unwrap().to_string()
}

/// One Firehose request of one record to `https://localhost:{port}/`, trusting only `cert`,
/// with access key `key`: the answer, or an error (a handshake that fails).
async fn post(port: &str, cert: &str, key: &str, id: &str) -> reqwest::Result<reqwest::Response> {
    let client = reqwest::Client::builder()
        .tls_certs_only([reqwest::Certificate::from_pem(cert.as_bytes()).unwrap()])
        .resolve("localhost", format!("127.0.0.1:{port}").parse().unwrap())
        .build()
        .unwrap();
    let line = "2 123456789012 eni-0a1b2c3d4e5f60718 10.0.0.1 10.0.0.2 1 443 6 1 100 1700000000 1700000060 ACCEPT OK".to_string();
    client
        .post(format!("https://localhost:{port}/"))
        .header("X-Amz-Firehose-Access-Key", key)
        .header("X-Amz-Firehose-Request-Id", id)
        .body(firehose_body(id, &wrapped(&[line])))
        .send()
        .await
}

/// The status of [`post`]'s answer, or the error.
async fn post_status(port: &str, cert: &str, key: &str, id: &str) -> reqwest::Result<u16> {
    post(port, cert, key, id).await.map(|r| r.status().as_u16())
}

#[tokio::test(flavor = "multi_thread")]
async fn ingest_over_https_with_a_configured_certificate() {
    let dir = std::env::temp_dir().join(format!("vpcflowd-tls-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let (cert_pem, key_pem) = self_signed();
    let (cert_path, key_path) = (dir.join("cert.pem"), dir.join("key.pem"));
    replace(&cert_path, &cert_pem);
    replace(&key_path, &key_pem);

    let server = Server::start(
        &[
            "--tls-cert",
            cert_path.to_str().unwrap(),
            "--tls-key",
            key_path.to_str().unwrap(),
            "--access-key",
            "k",
        ],
        &[],
    );
    let port = ingest_port(&server);
    let resp = post(&port, &cert_pem, "k", "tls-1").await.unwrap();
    assert_eq!(resp.status(), 200);
    let json: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(json["requestId"], "tls-1");
    // Plain HTTP to the TLS port gets no HTTP answer.
    assert!(reqwest::get(format!("http://127.0.0.1:{port}/")).await.is_err());
    let status = server.status().await;
    assert_eq!(status["ingest"]["records"], 1);
    assert!(server.stop().0.success());
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn a_certificate_without_its_key_is_a_configuration_error() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_vpcflowd"))
        .args(["serve", "--tls-cert", "/nonexistent.pem"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&out.stderr)
            .contains("tls_cert and ingest.tls_key must be set together")
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_rotated_certificate_and_access_keys_take_effect_without_a_restart() {
    let dir = std::env::temp_dir().join(format!("vpcflowd-tls-rotate-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let (cert_path, key_path, keys_path) =
        (dir.join("cert.pem"), dir.join("key.pem"), dir.join("keys"));
    let (a_cert, a_key) = self_signed();
    replace(&cert_path, &a_cert);
    replace(&key_path, &a_key);
    replace(&keys_path, "k1\n");
    let server = Server::start(
        &[
            "--tls-cert",
            cert_path.to_str().unwrap(),
            "--tls-key",
            key_path.to_str().unwrap(),
            "--access-keys-file",
            keys_path.to_str().unwrap(),
        ],
        &[("VPCFLOWD_INGEST__RELOAD_INTERVAL", "100ms")],
    );
    let port = ingest_port(&server);
    assert_eq!(post_status(&port, &a_cert, "k1", "r1").await.unwrap(), 200);

    // Rotation: a new certificate and key, and a new access key instead of the old one.
    let (b_cert, b_key) = self_signed();
    replace(&key_path, &b_key);
    replace(&cert_path, &b_cert);
    replace(&keys_path, "k2\n");
    server
        .wait_for("the new certificate and keys", |s| s["ingest"]["reloads"].as_u64() >= Some(2))
        .await;
    // The certificate may have been read between the two files' replacements: the next check
    // loads the pair, so wait until the new one is served.
    let mut served = post_status(&port, &b_cert, "k2", "r2").await;
    for _ in 0..100 {
        if served.as_ref().is_ok_and(|&s| s == 200) {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        served = post_status(&port, &b_cert, "k2", "r2").await;
    }
    assert_eq!(served.unwrap(), 200);
    assert_eq!(post_status(&port, &b_cert, "k1", "r3").await.unwrap(), 401, "the old key is gone");
    assert!(post_status(&port, &a_cert, "k2", "r4").await.is_err(), "the old certificate is gone");

    // What does not load is not swapped in: a broken certificate, then a key file with no key
    // (which would accept any request).
    let failures = |s: &serde_json::Value| s["ingest"]["reload_failures"].as_u64().unwrap();
    let before = failures(&server.status().await);
    replace(&cert_path, "not a certificate\n");
    server.wait_for("the broken certificate", |s| failures(s) > before).await;
    assert_eq!(post_status(&port, &b_cert, "k2", "r5").await.unwrap(), 200);
    let before = failures(&server.status().await);
    replace(&keys_path, "\n");
    server.wait_for("the empty key file", |s| failures(s) > before).await;
    assert_eq!(post_status(&port, &b_cert, "k2", "r6").await.unwrap(), 200);
    assert_eq!(post_status(&port, &b_cert, "", "r7").await.unwrap(), 401);

    let status = server.status().await;
    assert_eq!(status["ingest"]["records"], 4);
    assert!(server.stop().0.success());
    std::fs::remove_dir_all(dir).unwrap();
}
