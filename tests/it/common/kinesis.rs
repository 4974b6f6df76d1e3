//! Kinesis and DynamoDB test helpers: SDK clients for the emulators, streams, puts aimed at a
//! shard, CloudWatch Logs envelopes, and a fault-injecting proxy (no emulator throttles).
#![allow(dead_code)]

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use aws_sdk_kinesis::primitives::Blob;
use aws_sdk_kinesis::types::PutRecordsRequestEntry;

use super::tools::sdk_config;
// Not every test binary that includes this module uses them.
#[allow(unused_imports)]
pub use super::tools::{AWS_ENV, create_stream, wait_active};

pub fn kinesis(endpoint: &str) -> aws_sdk_kinesis::Client {
    aws_sdk_kinesis::Client::new(&sdk_config(endpoint))
}

pub fn dynamodb(endpoint: &str) -> aws_sdk_dynamodb::Client {
    aws_sdk_dynamodb::Client::new(&sdk_config(endpoint))
}

/// (shard id, starting hash key) of the open shards.
pub async fn open_shards(k: &aws_sdk_kinesis::Client, name: &str) -> Vec<(String, String)> {
    let out = k.list_shards().stream_name(name).send().await.unwrap();
    out.shards
        .unwrap_or_default()
        .into_iter()
        .filter(|s| s.sequence_number_range.as_ref().unwrap().ending_sequence_number.is_none())
        .map(|s| (s.shard_id, s.hash_key_range.unwrap().starting_hash_key))
        .collect()
}

/// Puts `records` (partition key, payload), 500 per call, in order.
pub async fn put(k: &aws_sdk_kinesis::Client, name: &str, records: &[(String, Vec<u8>)]) {
    for chunk in records.chunks(500) {
        let entries = chunk
            .iter()
            .map(|(key, data)| {
                PutRecordsRequestEntry::builder()
                    .partition_key(key)
                    .data(Blob::new(data.clone()))
                    .build()
                    .unwrap()
            })
            .collect();
        let out =
            k.put_records().stream_name(name).set_records(Some(entries)).send().await.unwrap();
        assert_eq!(out.failed_record_count, Some(0));
    }
}

/// Puts one record into the shard whose range starts at `hash_key`.
pub async fn put_to(k: &aws_sdk_kinesis::Client, name: &str, hash_key: &str, data: Vec<u8>) {
    k.put_record()
        .stream_name(name)
        .partition_key("x")
        .explicit_hash_key(hash_key)
        .data(Blob::new(data))
        .send()
        .await
        .unwrap();
}

/// A CloudWatch Logs subscription payload (gzip JSON) carrying `lines` of one log stream.
pub fn cloudwatch(owner: &str, log_stream: &str, lines: &[String]) -> Vec<u8> {
    let events: Vec<_> = lines
        .iter()
        .enumerate()
        .map(|(i, m)| serde_json::json!({"id": i.to_string(), "timestamp": 0, "message": m}))
        .collect();
    let body = serde_json::json!({
        "messageType": "DATA_MESSAGE",
        "owner": owner,
        "logGroup": "vpc-flow-logs",
        "logStream": log_stream,
        "subscriptionFilters": ["all"],
        "logEvents": events,
    });
    super::gzip(body.to_string().as_bytes())
}

/// A proxy in front of kinesalite that answers chosen GetRecords calls (1-based, counted across
/// all shards) with a Kinesis error instead of forwarding them.
pub struct FaultProxy {
    pub endpoint: String,
    pub get_records: Arc<AtomicU64>,
    task: tokio::task::JoinHandle<()>,
}

impl FaultProxy {
    /// `fault(n)` names the error for the n-th GetRecords call, or None to forward it.
    pub async fn start(
        upstream: &str,
        fault: impl Fn(u64) -> Option<&'static str> + Send + Sync + 'static,
    ) -> FaultProxy {
        use axum::body::Bytes;
        use axum::http::{HeaderMap, StatusCode};
        use axum::response::IntoResponse;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let endpoint = format!("http://{}", listener.local_addr().unwrap());
        let calls = Arc::new(AtomicU64::new(0));
        let client = reqwest::Client::new();
        let upstream = upstream.to_string();
        let fault = Arc::new(fault);
        let counter = calls.clone();
        let handler = move |headers: HeaderMap, body: Bytes| {
            let (client, upstream, fault, counter) =
                (client.clone(), upstream.clone(), fault.clone(), counter.clone());
            async move {
                let target = headers
                    .get("x-amz-target")
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or_default()
                    .to_string();
                if target.ends_with(".GetRecords") {
                    let n = counter.fetch_add(1, Ordering::SeqCst) + 1;
                    if let Some(error) = fault(n) {
                        let body = serde_json::json!({"__type": error, "message": "injected by the test proxy"});
                        return (
                            StatusCode::BAD_REQUEST,
                            [("content-type", "application/x-amz-json-1.1")],
                            body.to_string(),
                        )
                            .into_response();
                    }
                }
                let mut req = client.post(&upstream).body(body);
                for (k, v) in &headers {
                    if k != "host" && k != "content-length" {
                        req = req.header(k, v);
                    }
                }
                let resp = req.send().await.unwrap();
                let status = StatusCode::from_u16(resp.status().as_u16()).unwrap();
                let ct = resp
                    .headers()
                    .get("content-type")
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("application/x-amz-json-1.1")
                    .to_string();
                let bytes = resp.bytes().await.unwrap();
                (status, [("content-type", ct)], bytes).into_response()
            }
        };
        let app = axum::Router::new().fallback(handler);
        let task = tokio::spawn(async move {
            axum::serve(listener, app).await.unwrap();
        });
        FaultProxy { endpoint, get_records: calls, task }
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}
