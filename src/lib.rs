//! vpcflowd: a stream processor for AWS VPC Flow Logs.
//!
//! See `ARCHITECTURE.md` for the data flow and the module map.

pub mod cli;
pub mod decode;
pub mod export;
pub mod generate;
pub mod record;
pub mod schema;
pub mod serve;
pub mod source;
pub mod window;
