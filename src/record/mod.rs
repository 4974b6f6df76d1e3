//! This module holds records on their way from a source to the engine: what every ingest path
//! hands the router.
//!
//! A source parses lines (`decode`) and resolves each record into a [`RouteInput`]: the
//! interface it belongs to, its account and region, and the fixed fields the windows measure.
//! Paths that parse off the router's thread keep their records in a [`ParsedRecords`] until
//! the router takes them in order. Both `source` and `window` use this module, and it uses
//! neither: sources never reach into the engine, and the engine never knows where a record
//! came from.

pub mod filter;
mod parsed;
mod route;

pub use parsed::ParsedRecords;
pub use route::{NamedRecord, RouteFields, RouteInput, RouteLabels, interface_of};
