//! Shard discovery: ListShards (all pages) is read into the stream's shard graph.
//!
//! Children are found from each shard's `ParentShardId` / `AdjacentParentShardId`, never from
//! `ChildShards` in GetRecords (emulators leave it out). A parent that is no longer listed has
//! aged out of the stream's retention: it counts as finished.

use std::collections::BTreeMap;

use super::client::describe;
use super::config::KinesisSourceConfig;
use super::error::KinesisError;

/// One shard of the stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ShardInfo {
    pub id: String,
    /// The shard(s) it was split or merged from.
    pub parents: Vec<String>,
    /// Whether it is closed (has an ending sequence number).
    pub closed: bool,
}

/// Lists every shard of the stream, keyed by shard id.
pub(crate) async fn list_shards(
    client: &aws_sdk_kinesis::Client,
    source: &KinesisSourceConfig,
) -> Result<BTreeMap<String, ShardInfo>, KinesisError> {
    let mut shards = BTreeMap::new();
    let mut next: Option<String> = None;
    loop {
        let mut req = client.list_shards();
        req = match &next {
            // With a token, the stream must not be named again.
            Some(token) => req.next_token(token),
            None if source.is_arn() => req.stream_arn(&source.stream),
            None => req.stream_name(&source.stream),
        };
        let out = req.send().await.map_err(|e| KinesisError::call("ListShards", describe(&e)))?;
        for s in out.shards.unwrap_or_default() {
            let closed = s
                .sequence_number_range
                .as_ref()
                .is_some_and(|r| r.ending_sequence_number.is_some());
            let parents =
                [s.parent_shard_id, s.adjacent_parent_shard_id].into_iter().flatten().collect();
            shards.insert(s.shard_id.clone(), ShardInfo { id: s.shard_id, parents, closed });
        }
        match out.next_token {
            Some(t) if !t.is_empty() => next = Some(t),
            _ => return Ok(shards),
        }
    }
}

/// Whether `shard` may be read: each of its parents is finished (`done`) or no longer listed.
pub(crate) fn parents_done(
    shard: &ShardInfo,
    shards: &BTreeMap<String, ShardInfo>,
    done: impl Fn(&str) -> bool,
) -> bool {
    shard.parents.iter().all(|p| !shards.contains_key(p) || done(p))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shard(id: &str, parents: &[&str], closed: bool) -> ShardInfo {
        ShardInfo {
            id: id.into(),
            parents: parents.iter().map(|p| p.to_string()).collect(),
            closed,
        }
    }

    #[test]
    fn children_wait_for_every_listed_parent() {
        let shards: BTreeMap<_, _> = [
            shard("a", &[], true),
            shard("b", &[], true),
            shard("m", &["a", "b"], false),
            shard("orphan", &["gone"], false),
        ]
        .into_iter()
        .map(|s| (s.id.clone(), s))
        .collect();
        assert!(!parents_done(&shards["m"], &shards, |p| p == "a"));
        assert!(parents_done(&shards["m"], &shards, |p| p == "a" || p == "b"));
        assert!(parents_done(&shards["orphan"], &shards, |_| false), "aged-out parents are done");
    }
}
