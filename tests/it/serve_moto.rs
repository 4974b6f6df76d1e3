//! Smoke test through moto's Firehose: aws-sdk-firehose PutRecordBatch → moto → our endpoint.
//!
//! moto delivers synchronously, one POST per call, without the X-Amz-Firehose-* headers, without
//! gzip, with a timestamp in seconds (`shared/reference/emulators.md`): this proves that the
//! SDK's records reach the engine intact, not the finer protocol, which `tests/serve.rs` covers.

use crate::common::serve::{Server, total};
use crate::common::tools::Moto;
use aws_sdk_firehose::primitives::Blob;
use aws_sdk_firehose::types::Record;

#[tokio::test(flavor = "multi_thread")]
async fn put_record_batch_through_moto_reaches_the_windows() {
    let moto = Moto::start();
    // moto sends no access key, so this server accepts any request.
    let server = Server::start(
        &["--time", "processing", "--window", "1m", "--slide", "1m", "--lateness", "0s"],
        &[],
    );
    let client = moto.http_delivery_stream("flows", &server.ingest).await;

    let mut sent = 0u64;
    for batch in 0..3 {
        let records: Vec<Record> = (0..100)
            .map(|i| {
                let line = format!(
                    "2 123456789012 eni-{:017x} 10.0.{batch}.{i} 172.16.0.1 40000 443 6 1 {} 1700000000 1700000060 ACCEPT OK",
                    i % 4,
                    100 + i
                );
                sent += 1;
                Record::builder()
                    .data(Blob::new(serde_json::to_vec(&serde_json::json!({"message": line})).unwrap()))
                    .build()
                    .unwrap()
            })
            .collect();
        let out = client
            .put_record_batch()
            .delivery_stream_name("flows")
            .set_records(Some(records))
            .send()
            .await
            .expect("put a batch");
        assert_eq!(out.failed_put_count(), 0);
    }
    let status = server.status().await;
    assert_eq!(status["ingest"]["responses"]["200"], 3, "{status}");
    assert_eq!(status["ingest"]["records"], sent);
    let (exit, snapshots, _) = server.stop();
    assert!(exit.success());
    assert_eq!(total(&snapshots, "flows"), sent);
    assert_eq!(total(&snapshots, "bytes"), 3 * (0..100u64).map(|i| 100 + i).sum::<u64>());
}
