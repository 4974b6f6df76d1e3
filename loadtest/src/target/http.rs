//! The Firehose HTTP endpoint sender: requests exactly as Amazon Data Firehose sends them.
//!
//! Headers `X-Amz-Firehose-Request-Id`, `-Protocol-Version: 1.0`, `-Access-Key`, `-Source-Arn`,
//! `-Common-Attributes`; `Content-Type: application/json`; optionally `Content-Encoding: gzip`;
//! the body `{"requestId", "timestamp" (ms), "records": [{"data": base64}]}`. Anything but 200
//! is retried with the same request id, with Firehose's backoff (see [`super::Backoff`]).
//! 413 is not retried.

use std::io::Write;
use std::time::Instant;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use serde_json::json;

use super::{Backoff, Outcome};

/// A request ready to send: its id, its body (compressed if gzip is on) and its size before
/// compression.
pub struct Request {
    pub id: String,
    pub body: Vec<u8>,
    pub raw_bytes: usize,
}

/// Builds the request for `records` (already packaged: `{"message":…}` or CloudWatch gzip).
pub fn prepare(records: &[Vec<u8>], gzip: bool) -> Request {
    let id = uuid::Uuid::new_v4().to_string();
    let ts = vpcflowd::clock::unix_millis();
    let data: Vec<_> = records.iter().map(|r| json!({"data": BASE64.encode(r)})).collect();
    let raw = serde_json::to_vec(&json!({"requestId": id, "timestamp": ts, "records": data}))
        .expect("JSON");
    let raw_bytes = raw.len();
    let body = if gzip {
        let mut e = flate2::write::GzEncoder::new(
            Vec::with_capacity(raw.len() / 4),
            flate2::Compression::fast(),
        );
        e.write_all(&raw).expect("in-memory gzip");
        e.finish().expect("in-memory gzip")
    } else {
        raw
    };
    Request { id, body, raw_bytes }
}

/// Where and how to send.
#[derive(Clone)]
pub struct Sender {
    pub client: reqwest::Client,
    pub url: String,
    pub access_key: Option<String>,
    pub gzip: bool,
    pub region: String,
    pub backoff: Backoff,
}

impl Sender {
    /// Sends until a 200, a 413, or the last attempt.
    pub async fn send(&self, req: &Request) -> Outcome {
        let started = Instant::now();
        let mut statuses = Vec::new();
        let mut delays = self.backoff.delays();
        loop {
            let status = self.attempt(req).await;
            statuses.push(if status == 0 {
                "transport error".to_owned()
            } else {
                status.to_string()
            });
            if status == 200 {
                return Outcome { statuses, latency: started.elapsed(), accepted: true };
            }
            match delays.next() {
                Some(delay) if status != 413 => tokio::time::sleep(delay).await,
                _ => return Outcome { statuses, latency: started.elapsed(), accepted: false },
            }
        }
    }

    async fn attempt(&self, req: &Request) -> u16 {
        let mut r = self
            .client
            .post(&self.url)
            .header("Content-Type", "application/json")
            .header("X-Amz-Firehose-Protocol-Version", "1.0")
            .header("X-Amz-Firehose-Request-Id", &req.id)
            .header(
                "X-Amz-Firehose-Source-Arn",
                "arn:aws:firehose:us-east-1:123456789012:deliverystream/vpcflowd-loadtest",
            )
            .header(
                "X-Amz-Firehose-Common-Attributes",
                json!({"commonAttributes": {"region": self.region}}).to_string(),
            )
            .body(req.body.clone());
        if self.gzip {
            r = r.header("Content-Encoding", "gzip");
        }
        if let Some(k) = &self.access_key {
            r = r.header("X-Amz-Firehose-Access-Key", k);
        }
        match r.send().await {
            Ok(resp) => {
                let status = resp.status().as_u16();
                // Firehose reads the answer; so do we (and check it is the required JSON).
                match resp.json::<serde_json::Value>().await {
                    Ok(v) if v["requestId"] == req.id.as_str() && v["timestamp"].is_u64() => status,
                    _ if status == 200 => 500, // a 200 with a bad body is a failure to Firehose
                    _ => status,
                }
            }
            Err(_) => 0,
        }
    }
}
