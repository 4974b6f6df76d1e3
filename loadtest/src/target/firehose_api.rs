//! `PutRecordBatch` to a Firehose delivery stream (aws-sdk-firehose): up to 500 records and
//! 4 MiB per call; records the call reports failed (`ServiceUnavailableException`, throttling)
//! are retried alone. With moto, the stream's HTTP endpoint destination receives each call
//! synchronously, so what was acknowledged has reached vpcflowd.

use aws_sdk_firehose::error::ProvideErrorMetadata;
use aws_sdk_firehose::primitives::Blob;
use aws_sdk_firehose::types::Record as FirehoseRecord;

use super::{Backoff, Outcome, PutResult, put_with_retries};
use crate::package::Record;

/// PutRecordBatch's limits.
const MAX_RECORDS: usize = 500;
const MAX_BYTES: usize = 4 << 20;

pub struct Sender {
    pub client: aws_sdk_firehose::Client,
    pub stream: String,
    pub backoff: Backoff,
}

impl Sender {
    pub async fn send(&self, records: &[Record]) -> Outcome {
        put_with_retries(records, MAX_RECORDS, MAX_BYTES, self.backoff, |call| async move {
            let batch = call
                .iter()
                .map(|&i| {
                    FirehoseRecord::builder()
                        .data(Blob::new(records[i].data.clone()))
                        .build()
                        .expect("data is set")
                })
                .collect();
            let sent = self
                .client
                .put_record_batch()
                .delivery_stream_name(&self.stream)
                .set_records(Some(batch))
                .send()
                .await;
            match sent {
                Ok(out) => PutResult::Done(
                    out.request_responses.into_iter().map(|r| r.error_code).collect(),
                ),
                Err(e) => PutResult::failed(e.code().unwrap_or("transport error")),
            }
        })
        .await
    }
}
