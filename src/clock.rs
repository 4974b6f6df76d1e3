//! The wall clock, read in the units the rest of the crate uses. Every reading of the current
//! time goes through here, so that a clock before the Unix epoch reads as 0 in one place.

use std::time::{SystemTime, UNIX_EPOCH};

/// Whole seconds since the Unix epoch.
pub fn unix_secs() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

/// Milliseconds since the Unix epoch.
pub fn unix_millis() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}

/// Seconds since the Unix epoch, with their fraction.
pub fn unix_secs_f64() -> f64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0.0, |d| d.as_secs_f64())
}
