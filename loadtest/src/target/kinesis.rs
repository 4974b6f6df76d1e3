//! `PutRecords` to a Kinesis data stream (aws-sdk-kinesis): up to 500 records and 5 MiB per
//! call, each record keyed by its interface so that an interface's records keep their order
//! within a shard; records the call reports failed (`ProvisionedThroughputExceededException`,
//! `InternalFailure`) are retried alone.

use aws_sdk_kinesis::error::ProvideErrorMetadata;
use aws_sdk_kinesis::primitives::Blob;
use aws_sdk_kinesis::types::PutRecordsRequestEntry;

use super::{Backoff, Outcome, PutResult, put_with_retries};
use crate::package::Record;

/// PutRecords' limits.
const MAX_RECORDS: usize = 500;
const MAX_BYTES: usize = 5 << 20;

pub struct Sender {
    pub client: aws_sdk_kinesis::Client,
    pub stream: String,
    pub backoff: Backoff,
}

impl Sender {
    pub async fn send(&self, records: &[Record]) -> Outcome {
        put_with_retries(records, MAX_RECORDS, MAX_BYTES, self.backoff, |call| async move {
            let entries = call
                .iter()
                .map(|&i| {
                    PutRecordsRequestEntry::builder()
                        .data(Blob::new(records[i].data.clone()))
                        .partition_key(&records[i].key)
                        .build()
                        .expect("data and key are set")
                })
                .collect();
            let put = self.client.put_records().set_records(Some(entries));
            let put = if self.stream.starts_with("arn:") {
                put.stream_arn(&self.stream)
            } else {
                put.stream_name(&self.stream)
            };
            match put.send().await {
                Ok(out) => PutResult::Done(out.records.into_iter().map(|r| r.error_code).collect()),
                Err(e) => PutResult::failed(e.code().unwrap_or("transport error")),
            }
        })
        .await
    }
}
