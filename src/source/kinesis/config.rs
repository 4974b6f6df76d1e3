//! `[[sources.kinesis]]`: one Kinesis Data Stream to read. The doc comments are the reference.
//!
//! ```toml
//! [sources]
//! replica_id = "vpcflowd-0"          # default: the host name
//!
//! [[sources.kinesis]]
//! stream = "flow-logs"                # a name or an ARN
//! region = "eu-west-1"
//! start = "trim_horizon"              # or "latest", or "at_timestamp" with start_timestamp
//! lease_table = "vpcflowd-flow-logs"  # share the shards among replicas (optional)
//! ```

use super::error::KinesisError;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// The key prefix of replica markers in a lease table; no replica id may start with it.
pub const REPLICA_PREFIX: &str = "replica#";

/// Where a shard with no checkpoint starts.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Default,
    Serialize,
    Deserialize,
    clap::ValueEnum,
    schemars::JsonSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum StartingPosition {
    /// The oldest record still in the stream (parents before children).
    #[default]
    TrimHorizon,
    /// Only records written after the consumer starts; closed shards are skipped.
    Latest,
    /// Records written at or after `start_timestamp`.
    AtTimestamp,
}

/// Process-wide settings of the sources.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default, schemars::JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct SourcesConfig {
    /// Kinesis Data Streams to read, each with its own consumers.
    pub kinesis: Vec<KinesisSourceConfig>,
    /// This replica's name in lease tables: must be unique among the replicas sharing a stream
    /// and stable across restarts (a StatefulSet pod name). Default: the host name.
    pub replica_id: Option<String>,
}

/// One Kinesis Data Stream.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct KinesisSourceConfig {
    /// Stream name, or its ARN (`arn:aws:kinesis:REGION:ACCOUNT:stream/NAME`; its region is
    /// then the default region).
    pub stream: String,
    /// AWS region; default: the ARN's, else the standard chain (`AWS_REGION`, profile, IMDS).
    pub region: Option<String>,
    /// Kinesis endpoint override (e.g. a VPC endpoint or an emulator).
    pub endpoint: Option<String>,
    /// Where shards without a checkpoint start.
    pub start: StartingPosition,
    /// With `start = "at_timestamp"`: RFC 3339 time, e.g. `2026-11-23T08:00:00Z`.
    pub start_timestamp: Option<String>,
    /// Flow-log formats of this stream's records; empty: the top-level `formats`.
    pub formats: Vec<String>,
    /// Records asked for per GetRecords call (1–10000).
    pub max_records_per_call: i32,
    /// How long a consumer waits after a call that returned no records. Kinesis allows 5
    /// GetRecords calls per second per shard across all consumers.
    #[serde(with = "humantime_serde")]
    #[schemars(with = "crate::schema::HumanDuration")]
    pub idle_poll_interval: Duration,
    /// The least time between two GetRecords calls on one shard (Kinesis's limit is 5/s).
    #[serde(with = "humantime_serde")]
    #[schemars(with = "crate::schema::HumanDuration")]
    pub min_poll_interval: Duration,
    /// How often ListShards runs to find new shards (after a reshard). A shard that ends also
    /// triggers a discovery.
    #[serde(with = "humantime_serde")]
    #[schemars(with = "crate::schema::HumanDuration")]
    pub shard_discovery_interval: Duration,
    /// DynamoDB table of shard leases, shared by the replicas reading this stream (created
    /// on-demand if missing). Without it, this replica reads every shard and keeps its
    /// checkpoints in the state directory.
    pub lease_table: Option<String>,
    /// DynamoDB endpoint override for the lease table.
    pub lease_endpoint: Option<String>,
    /// A lease not renewed for this long is taken over by another replica. Leases are renewed
    /// every third of it.
    #[serde(with = "humantime_serde")]
    #[schemars(with = "crate::schema::HumanDuration")]
    pub lease_duration: Duration,
    /// At most this many leases per replica. One checkpoint commits every lease's position in
    /// one DynamoDB transaction (100 items at most, one of them the replica's marker).
    pub max_leases: usize,
}

impl Default for KinesisSourceConfig {
    fn default() -> Self {
        KinesisSourceConfig {
            stream: String::new(),
            region: None,
            endpoint: None,
            start: StartingPosition::TrimHorizon,
            start_timestamp: None,
            formats: Vec::new(),
            max_records_per_call: 10_000,
            idle_poll_interval: Duration::from_secs(1),
            min_poll_interval: Duration::from_millis(200),
            shard_discovery_interval: Duration::from_secs(30),
            lease_table: None,
            lease_endpoint: None,
            lease_duration: Duration::from_secs(10),
            max_leases: MAX_LEASES,
        }
    }
}

/// DynamoDB transactions hold at most 100 items; one is the replica's commit marker.
pub const MAX_LEASES: usize = 99;

impl KinesisSourceConfig {
    /// The stream's name (from an ARN too).
    pub fn stream_name(&self) -> &str {
        match self.stream.rsplit_once(":stream/") {
            Some((_, name)) => name,
            None => &self.stream,
        }
    }

    /// Whether `stream` is an ARN (then calls pass it as `StreamARN`).
    pub fn is_arn(&self) -> bool {
        self.stream.starts_with("arn:")
    }

    /// The region an ARN names.
    pub fn arn_region(&self) -> Option<&str> {
        self.is_arn().then(|| self.stream.split(':').nth(3)).flatten().filter(|r| !r.is_empty())
    }

    /// `start_timestamp` in Unix milliseconds.
    pub fn start_timestamp_ms(&self) -> Result<Option<i64>, KinesisError> {
        match (&self.start, &self.start_timestamp) {
            (StartingPosition::AtTimestamp, None) => {
                Err(KinesisError::Config("start = \"at_timestamp\" needs start_timestamp".into()))
            }
            (_, Some(t)) => humantime::parse_rfc3339_weak(t)
                .map_err(|e| {
                    KinesisError::Config(format!("start_timestamp {t:?}: {e} (expected RFC 3339)"))
                })
                .map(|t| {
                    Some(
                        t.duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64),
                    )
                }),
            _ => Ok(None),
        }
    }

    /// Checks what types alone cannot; `i` names the entry in messages.
    pub fn validate(&self, i: usize) -> Result<(), KinesisError> {
        let at = format!("sources.kinesis[{i}]");
        if self.stream.trim().is_empty() {
            return Err(KinesisError::Config(format!("{at}.stream is required")));
        }
        if self.is_arn() && !self.stream.contains(":stream/") {
            return Err(KinesisError::Config(format!(
                "{at}.stream {:?} is not a Kinesis stream ARN",
                self.stream
            )));
        }
        if !(1..=10_000).contains(&self.max_records_per_call) {
            return Err(KinesisError::Config(format!("{at}.max_records_per_call must be 1–10000")));
        }
        if self.min_poll_interval.is_zero() || self.idle_poll_interval.is_zero() {
            return Err(KinesisError::Config(format!("{at}: poll intervals must be positive")));
        }
        if self.shard_discovery_interval.is_zero() {
            return Err(KinesisError::Config(format!(
                "{at}.shard_discovery_interval must be positive"
            )));
        }
        if self.lease_duration < Duration::from_secs(1) {
            return Err(KinesisError::Config(format!("{at}.lease_duration must be at least 1s")));
        }
        if !(1..=MAX_LEASES).contains(&self.max_leases) {
            return Err(KinesisError::Config(format!("{at}.max_leases must be 1–{MAX_LEASES}")));
        }
        self.start_timestamp_ms().map_err(|e| KinesisError::Config(format!("{at}: {e}")))?;
        crate::decode::LayoutSet::from_formats(&self.formats)
            .map_err(|e| KinesisError::Config(format!("{at}.formats: {e}")))?;
        Ok(())
    }
}

impl SourcesConfig {
    /// Checks every stream, and that no lease table or stream is configured twice.
    pub fn validate(&self) -> Result<(), KinesisError> {
        let mut seen = std::collections::BTreeSet::new();
        let mut tables = std::collections::BTreeSet::new();
        for (i, k) in self.kinesis.iter().enumerate() {
            k.validate(i)?;
            if !seen.insert(k.stream_name()) {
                return Err(KinesisError::Config(format!(
                    "sources.kinesis: stream {:?} is listed twice",
                    k.stream
                )));
            }
            if let Some(t) = &k.lease_table
                && !tables.insert(t.as_str())
            {
                return Err(KinesisError::Config(format!(
                    "sources.kinesis: lease table {t:?} is used by two streams (a lease is keyed by shard id)"
                )));
            }
        }
        // One commit transaction covers every lease table, so they must share one DynamoDB
        // client.
        let mut leased = self.kinesis.iter().filter(|k| k.lease_table.is_some());
        if let Some(first) = leased.next()
            && let Some(other) = leased.find(|k| {
                (k.region.as_deref().or(k.arn_region()), &k.lease_endpoint)
                    != (first.region.as_deref().or(first.arn_region()), &first.lease_endpoint)
            })
        {
            return Err(KinesisError::Config(format!(
                "sources.kinesis: the lease tables of {:?} and {:?} must be in one region and endpoint (one commit transaction covers them)",
                first.stream, other.stream
            )));
        }
        if let Some(id) = &self.replica_id
            && (id.is_empty() || id.starts_with(REPLICA_PREFIX))
        {
            return Err(KinesisError::Config(format!(
                "sources.replica_id {id:?} is empty or reserved"
            )));
        }
        Ok(())
    }

    /// Whether some stream shares its shards through a lease table.
    pub fn uses_leases(&self) -> bool {
        self.kinesis.iter().any(|k| k.lease_table.is_some())
    }

    /// `replica_id`, else the host name.
    pub fn replica_id(&self) -> String {
        self.replica_id.clone().unwrap_or_else(|| {
            std::env::var("HOSTNAME")
                .ok()
                .filter(|h| !h.is_empty())
                .or_else(|| {
                    std::fs::read_to_string("/etc/hostname").ok().map(|h| h.trim().to_string())
                })
                .filter(|h| !h.is_empty())
                .unwrap_or_else(|| "vpcflowd".into())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_regions_and_timestamps() {
        let mut k = KinesisSourceConfig {
            stream: "arn:aws:kinesis:eu-west-1:123456789012:stream/flows".into(),
            ..Default::default()
        };
        assert_eq!(k.stream_name(), "flows");
        assert_eq!(k.arn_region(), Some("eu-west-1"));
        assert!(k.validate(0).is_ok());
        k.stream = "flows".into();
        assert_eq!(k.arn_region(), None);
        k.start = StartingPosition::AtTimestamp;
        assert!(k.validate(0).unwrap_err().to_string().contains("start_timestamp"));
        k.start_timestamp = Some("2026-11-23T08:00:00Z".into());
        assert_eq!(k.start_timestamp_ms().unwrap(), Some(1_795_420_800_000));
        k.start_timestamp = Some("yesterday".into());
        assert!(k.validate(3).unwrap_err().to_string().starts_with("sources.kinesis[3]"));
    }

    #[test]
    fn refuses_shared_tables_and_bad_limits() {
        let a = KinesisSourceConfig {
            stream: "a".into(),
            lease_table: Some("t".into()),
            ..Default::default()
        };
        let b = KinesisSourceConfig { stream: "b".into(), ..a.clone() };
        let s = SourcesConfig { kinesis: vec![a.clone(), b], replica_id: None };
        assert!(s.validate().unwrap_err().to_string().contains("lease table"));
        let s = SourcesConfig { kinesis: vec![a.clone(), a.clone()], replica_id: None };
        assert!(s.validate().unwrap_err().to_string().contains("twice"));
        let bad = KinesisSourceConfig { max_leases: 100, ..a };
        assert!(bad.validate(0).unwrap_err().to_string().contains("max_leases"));
    }
}
