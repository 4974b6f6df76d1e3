//! The ingest listener over HTTPS (rustls), as Firehose requires, with a certificate made here.

mod common;

use common::serve::{Server, firehose_body, wrapped};

#[tokio::test(flavor = "multi_thread")]
async fn ingest_over_https_with_a_configured_certificate() {
    let dir = std::env::temp_dir().join(format!("vpcflowd-tls-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let cert = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
    let (cert_pem, key_pem) = (cert.cert.pem(), cert.signing_key.serialize_pem());
    let (cert_path, key_path) = (dir.join("cert.pem"), dir.join("key.pem"));
    std::fs::write(&cert_path, &cert_pem).unwrap();
    std::fs::write(&key_path, &key_pem).unwrap();

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
    let port = server.ingest.trim_end_matches('/').rsplit(':').next().unwrap().to_string();
    let client = reqwest::Client::builder()
        .tls_certs_only([reqwest::Certificate::from_pem(cert_pem.as_bytes()).unwrap()])
        .resolve("localhost", format!("127.0.0.1:{port}").parse().unwrap())
        .build()
        .unwrap();
    let line = "2 123456789012 eni-0a1b2c3d4e5f60718 10.0.0.1 10.0.0.2 1 443 6 1 100 1700000000 1700000060 ACCEPT OK".to_string();
    let resp = client
        .post(format!("https://localhost:{port}/"))
        .header("X-Amz-Firehose-Access-Key", "k")
        .header("X-Amz-Firehose-Request-Id", "tls-1")
        .body(firehose_body("tls-1", &wrapped(&[line])))
        .send()
        .await
        .unwrap();
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
