//! Sources are where flow-log bytes come from.
//!
//! - [`file`](mod@file): flow-log files and standard input (plain or gzip, S3 header lines), for `parse`
//!   and `replay`.
//! - [`chunks`]: `replay`'s parallel reading, which cuts inputs into chunks of whole lines, parses
//!   them on a pool of threads and hands them back in input order.
//! - [`firehose`]: the Firehose HTTP endpoint delivery protocol (requests, answers, auth).
//! - [`kinesis`]: Kinesis Data Streams: shard consumers, checkpoints, resharding, DynamoDB
//!   leases.
//!
//! A source owns reading and framing; it hands records to the decoder and never interprets
//! fields itself.

pub(crate) mod chunks;
pub mod file;
pub mod firehose;
pub mod kinesis;
