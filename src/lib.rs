//! vpcflowd is a stream processor for AWS VPC Flow Logs.
//!
//! It reads flow-log records from files, standard input, Amazon Data Firehose HTTP deliveries and
//! Kinesis Data Streams, keeps event-time sliding windows per network interface, and emits one
//! snapshot per closed window and interface. `replay` prints the snapshots as JSON; `serve` keeps
//! them for its admin API and `/metrics` and exports them over OTLP.
//!
//! Start reading at [`cli`], where each subcommand has its module: [`cli::replay`] drives the
//! window engine ([`window`]) from files or the generator, and [`cli::serve`] starts the server
//! ([`serve`]). `ARCHITECTURE.md` describes the data flow and gives the code map.

#![forbid(unsafe_code)]
// Module maps in the docs link to private modules too: `cargo doc --document-private-items`
// renders them for contributors, and the public docs show them as plain names.
#![allow(rustdoc::private_intra_doc_links)]
#![warn(unreachable_pub)]

pub mod cli;
pub mod clock;
pub mod decode;
pub mod export;
pub mod generate;
pub mod record;
pub(crate) mod schema;
pub mod serve;
pub mod settings;
pub mod source;
pub mod window;
