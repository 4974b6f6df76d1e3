//! The delivery targets, each sending exactly as its AWS counterpart does:
//!
//! - [`http`]: the Firehose HTTP endpoint protocol, straight to vpcflowd's ingest listener;
//! - [`firehose_api`]: `PutRecordBatch` to a Firehose delivery stream (e.g. moto's, delivering
//!   to vpcflowd);
//! - [`kinesis`]: `PutRecords` to a Kinesis data stream (e.g. kinesalite's, read by vpcflowd).
//!
//! Every target retries what was not accepted with Firehose's backoff (1 s doubling, ±15 %
//! jitter, capped at 120 × the initial delay); the SDK targets retry only the records a call
//! reports failed, as the Kinesis Producer Library and Firehose agents do.

pub mod firehose_api;
pub mod http;
pub mod kinesis;

use std::future::Future;
use std::time::{Duration, Instant};

use crate::package::Record;

/// What one batch went through.
pub struct Outcome {
    /// What each attempt got, in order: an HTTP status, `ok`, an AWS error code, or
    /// `partial: <code>` when some records of a call failed.
    pub statuses: Vec<String>,
    /// Time from the first attempt to the final answer.
    pub latency: Duration,
    pub accepted: bool,
}

/// A batch ready to send.
pub struct Prepared {
    /// Flow-log lines inside.
    pub lines: usize,
    /// Bytes on the wire (compressed if compression is on).
    pub wire_bytes: usize,
    /// Bytes before compression.
    pub raw_bytes: usize,
    payload: Payload,
}

enum Payload {
    Http(http::Request),
    Records(Vec<Record>),
}

/// A configured target.
pub enum Sender {
    Http(http::Sender),
    FirehoseApi(firehose_api::Sender),
    Kinesis(kinesis::Sender),
}

impl Sender {
    /// Packs `records` into one batch for this target.
    pub fn prepare(&self, records: Vec<Record>) -> Prepared {
        let lines = records.iter().map(|r| r.lines).sum();
        match self {
            Sender::Http(s) => {
                let data: Vec<Vec<u8>> = records.into_iter().map(|r| r.data).collect();
                let request = http::prepare(&data, s.gzip);
                Prepared {
                    lines,
                    wire_bytes: request.body.len(),
                    raw_bytes: request.raw_bytes,
                    payload: Payload::Http(request),
                }
            }
            Sender::FirehoseApi(_) | Sender::Kinesis(_) => {
                let bytes = records.iter().map(|r| r.data.len() + r.key.len()).sum();
                Prepared {
                    lines,
                    wire_bytes: bytes,
                    raw_bytes: bytes,
                    payload: Payload::Records(records),
                }
            }
        }
    }

    /// The region the target tells the server for records without one (only the Firehose
    /// HTTP endpoint protocol carries one, in its common attributes).
    pub fn region(&self) -> Option<&str> {
        match self {
            Sender::Http(s) => Some(&s.region),
            Sender::FirehoseApi(_) | Sender::Kinesis(_) => None,
        }
    }

    /// Sends one batch until it is accepted or the attempts run out.
    pub async fn send(&self, batch: &Prepared) -> Outcome {
        match (self, &batch.payload) {
            (Sender::Http(s), Payload::Http(r)) => s.send(r).await,
            (Sender::FirehoseApi(s), Payload::Records(r)) => s.send(r).await,
            (Sender::Kinesis(s), Payload::Records(r)) => s.send(r).await,
            _ => unreachable!("a batch is sent by the target that prepared it"),
        }
    }
}

/// Firehose's retry schedule.
#[derive(Clone, Copy, Debug)]
pub struct Backoff {
    pub initial: Duration,
    pub max_attempts: u32,
}

impl Backoff {
    /// The delays before attempts 2, 3, …: doubling from `initial`, capped at 120 × `initial`
    /// (2 minutes for Firehose's 1 s), each with ±15 % jitter.
    pub fn delays(self) -> impl Iterator<Item = Duration> {
        let cap = self.initial * 120;
        std::iter::successors(Some(self.initial), move |d| Some((*d * 2).min(cap)))
            .map(jitter)
            .take(self.max_attempts.saturating_sub(1) as usize)
    }
}

/// ±15 % jitter, as Firehose applies.
fn jitter(d: Duration) -> Duration {
    let r = (uuid::Uuid::new_v4().as_u128() % 3001) as f64 / 10_000.0; // 0 .. 0.3
    d.mul_f64(0.85 + r)
}

/// What one SDK call did with the records it carried.
pub enum PutResult {
    /// The call succeeded; per record, the error code of those that failed.
    Done(Vec<Option<String>>),
    /// The whole call failed with this code; `retry` says whether trying again can help.
    Failed { code: String, retry: bool },
}

impl PutResult {
    /// A whole call failed with `code`. Retrying helps with capacity and transport trouble, not
    /// with a missing stream, a malformed call or missing permissions.
    pub fn failed(code: &str) -> PutResult {
        let retry = !matches!(
            code,
            "ResourceNotFoundException"
                | "InvalidArgumentException"
                | "ValidationException"
                | "AccessDeniedException"
                | "KMSAccessDeniedException"
        );
        PutResult::Failed { code: code.to_owned(), retry }
    }
}

/// Sends `records` through an SDK call taking at most `max_records` records and `max_bytes`
/// bytes each, retrying the failed records with `backoff`. `put` gets the indices of the
/// records of one call.
pub async fn put_with_retries<F, Fut>(
    records: &[Record],
    max_records: usize,
    max_bytes: usize,
    backoff: Backoff,
    mut put: F,
) -> Outcome
where
    F: FnMut(Vec<usize>) -> Fut,
    Fut: Future<Output = PutResult>,
{
    let started = Instant::now();
    let mut statuses = Vec::new();
    let mut pending: Vec<usize> = (0..records.len()).collect();
    let mut delays = backoff.delays();
    loop {
        let mut failed = Vec::new();
        let mut hopeless = false;
        for call in calls(&pending, records, max_records, max_bytes) {
            match put(call.clone()).await {
                PutResult::Done(errors) => {
                    let mut first_error = None;
                    for (i, e) in call.iter().zip(errors) {
                        if let Some(code) = e {
                            first_error.get_or_insert(code);
                            failed.push(*i);
                        }
                    }
                    statuses.push(match first_error {
                        None => "ok".to_owned(),
                        Some(code) => format!("partial: {code}"),
                    });
                }
                PutResult::Failed { code, retry } => {
                    statuses.push(code);
                    hopeless |= !retry;
                    failed.extend(call);
                }
            }
        }
        if failed.is_empty() {
            return Outcome { statuses, latency: started.elapsed(), accepted: true };
        }
        match delays.next() {
            Some(delay) if !hopeless => tokio::time::sleep(delay).await,
            _ => return Outcome { statuses, latency: started.elapsed(), accepted: false },
        }
        pending = failed;
    }
}

/// Splits `pending` into calls within the limits (a record over `max_bytes` goes alone, for
/// the service to refuse).
fn calls(
    pending: &[usize],
    records: &[Record],
    max_records: usize,
    max_bytes: usize,
) -> Vec<Vec<usize>> {
    let mut out: Vec<Vec<usize>> = Vec::new();
    let mut bytes = 0;
    for &i in pending {
        let size = records[i].data.len() + records[i].key.len();
        match out.last_mut() {
            Some(call) if call.len() < max_records && bytes + size <= max_bytes => {
                call.push(i);
                bytes += size;
            }
            _ => {
                out.push(vec![i]);
                bytes = size;
            }
        }
    }
    out
}

/// The SDK targets' AWS configuration: credentials from the standard chain, the region given
/// or the chain's, an optional endpoint (an emulator, a VPC endpoint). The SDK's own retries
/// are off: the harness retries, and counts every attempt.
pub async fn aws_config(
    region: Option<&str>,
    endpoint: Option<&str>,
) -> anyhow::Result<aws_config::SdkConfig> {
    let mut loader = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .retry_config(aws_config::retry::RetryConfig::disabled());
    if let Some(r) = region {
        loader = loader.region(aws_config::Region::new(r.to_owned()));
    }
    if let Some(e) = endpoint {
        loader = loader.endpoint_url(e);
    }
    let config = loader.load().await;
    if config.region().is_none() {
        anyhow::bail!("no AWS region: pass --aws-region or set AWS_REGION");
    }
    Ok(config)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(n: usize) -> Record {
        Record { data: vec![0; n], key: "k".into(), lines: 1 }
    }

    #[test]
    fn calls_respect_both_limits() {
        let records: Vec<Record> = [10, 10, 10, 30, 5].into_iter().map(record).collect();
        let all: Vec<usize> = (0..5).collect();
        assert_eq!(calls(&all, &records, 2, 100), vec![vec![0, 1], vec![2, 3], vec![4]]);
        assert_eq!(calls(&all, &records, 10, 25), vec![vec![0, 1], vec![2], vec![3], vec![4]]);
    }

    #[test]
    fn backoff_doubles_with_jitter_up_to_its_cap() {
        let b = Backoff { initial: Duration::from_secs(1), max_attempts: 10 };
        let delays: Vec<Duration> = b.delays().collect();
        assert_eq!(delays.len(), 9);
        for (i, d) in delays.iter().enumerate() {
            let nominal = Duration::from_secs(1 << i).min(Duration::from_secs(120));
            assert!(*d >= nominal.mul_f64(0.85) && *d <= nominal.mul_f64(1.15), "{i}: {d:?}");
        }
    }

    #[tokio::test]
    async fn only_failed_records_are_retried_and_hopeless_errors_stop() {
        let records: Vec<Record> = (0..4).map(|_| record(1)).collect();
        let backoff = Backoff { initial: Duration::from_millis(1), max_attempts: 5 };
        let mut seen = Vec::new();
        let outcome = put_with_retries(&records, 500, 1 << 20, backoff, |call| {
            seen.push(call.clone());
            let errors = call
                .iter()
                .map(|&i| (i % 2 == 1 && seen.len() == 1).then(|| "Throttled".to_owned()));
            let result = PutResult::Done(errors.collect());
            async move { result }
        })
        .await;
        assert!(outcome.accepted);
        assert_eq!(seen, vec![vec![0, 1, 2, 3], vec![1, 3]]);
        assert_eq!(outcome.statuses, ["partial: Throttled", "ok"]);

        let outcome = put_with_retries(&records, 500, 1 << 20, backoff, |_| async {
            PutResult::Failed { code: "ResourceNotFoundException".into(), retry: false }
        })
        .await;
        assert!(!outcome.accepted);
        assert_eq!(outcome.statuses, ["ResourceNotFoundException"]);
    }
}
