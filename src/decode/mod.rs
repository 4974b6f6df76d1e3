//! Decoding turns bytes into typed flow-log records.
//!
//! This module owns everything about the flow-log wire formats and nothing about what happens to
//! a record afterwards. It is pure (no I/O, no clocks, no globals) so that every path into
//! vpcflowd (Firehose HTTP, Kinesis, files) decodes identically, and so it can be fuzzed.
//!
//! - [`envelope`]: one transport record → zero or more lines (text, `{"message":…}`, gzip,
//!   CloudWatch Logs subscription payloads).
//! - [`layout`]: which fields a line holds (configured formats, S3 header lines, the defaults).
//! - [`line`](mod@line): one line + its layout → a typed [`FlowRecord`] borrowing from the line.
//! - [`field`], [`enums`], [`token`]: the field table and the per-field value types.
//! - [`kpl`]: KPL-aggregated Kinesis records → the user records they pack (MD5-checked).
//! - [`reject`]: why input was refused, counted by reason with samples.
//! - [`json`]: the JSON form that `vpcflowd parse` prints.
//!
//! The line path allocates nothing per record.

pub(crate) mod enums;
pub(crate) mod envelope;
pub(crate) mod field;
pub(crate) mod json;
pub mod kpl;
pub(crate) mod layout;
pub(crate) mod line;
pub(crate) mod reject;
pub(crate) mod token;

pub use enums::{
    Action, EncryptionStatus, FlowDirection, FlowType, LogStatus, ResourceType, SublocationType,
    TrafficPath,
};
pub use envelope::{Decoded, EnvelopeDecoder, EnvelopeError, EnvelopeKind, LineContext};
pub use field::{DefaultRecord, Field, FlowRecord};
pub use json::RecordJson;
pub use layout::{Layout, LayoutError, LayoutSet};
pub use line::{LineError, ParsedLine, PlainLine, parse_line, parse_line_with, parse_plain_line};
pub use reject::{RejectReason, RejectSample, Rejects};
pub use token::{FieldKind, Value};
