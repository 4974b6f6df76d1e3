//! This module computes sliding-window measures per interface, on event time, across shards.
//!
//! This module owns everything between a decoded record and a closed-window [`Snapshot`]:
//! event time and the watermark ([`time`]), each record's direction ([`direction`]), the owned
//! event a shard receives ([`event`]), the
//! per-interface panes ([`pane`]) and its capped tables ([`table`]), snapshot building
//! ([`snapshot`]) and the concurrent engine that ties them together ([`engine`]). It does no
//! I/O: sources push records into the [`EventRouter`]; consumers read snapshot batches.
//!
//! ```
//! use std::sync::Arc;
//! use std::time::Duration;
//! use vpcflowd::decode::{LayoutSet, LineContext, parse_line};
//! use vpcflowd::window::direction::LocalAddresses;
//! use vpcflowd::window::{Engine, EngineConfig, WindowSpec};
//!
//! let spec = WindowSpec::new(Duration::from_secs(300), Duration::from_secs(60)).unwrap();
//! let mut config = EngineConfig::new(spec);
//! config.shards = 2;
//! // The interface's own address, so that 10.0.0.1 is a source sending to it.
//! let own = ["10.0.0.2".to_string()];
//! config.direction.local_addresses = Arc::new(LocalAddresses::parse([("eni-1", &own[..])]).unwrap());
//! let Engine { router: mut router, snapshots: mut snapshots, .. } = Engine::start(config);
//! let layouts = LayoutSet::default();
//! let line = b"2 123456789010 eni-1 10.0.0.1 10.0.0.2 443 51000 6 10 8000 1700000000 1700000060 ACCEPT OK";
//! let parsed = parse_line(&layouts, line).unwrap();
//! router.push(&parsed.record, &LineContext::default(), 1_700_000_100).unwrap();
//! router.finish(); // end of input: every window closes
//! let mut windows = Vec::new();
//! while let Some(batch) = snapshots.blocking_recv() {
//!     windows.extend(batch);
//! }
//! // The record's pane (1699999980..1700000040) lies in five 5-minute windows.
//! assert_eq!(windows.len(), 5);
//! assert!(windows.iter().all(|s| s.ingress.bytes == 8000 && s.sources[0].traffic_share_pct == 100.0));
//! ```

pub(crate) mod asymmetry;
pub mod aws_ranges;
pub mod baseline;
pub mod conversation;
pub(crate) mod counters;
pub mod diagnosis;
pub mod direction;
pub mod distinct;
pub mod engine;
pub mod event;
pub mod findings;
pub mod inventory;
pub(crate) mod merge;
pub mod names;
pub mod pane;
pub mod rollup;
pub mod snapshot;
pub(crate) mod table;
pub(crate) mod time;

pub use engine::{Engine, EngineConfig, EngineStats, EventRouter, LatePolicy, RouteError};
pub use pane::Caps;
pub use snapshot::{Snapshot, TopN};
pub use time::{TimeField, TimeMode, Watermark, WindowSpec};
