//! The DynamoDB lease table: which replica reads which shard, and how far it has committed.
//!
//! Each shard has one item (`lease_key` = shard id) with `owner`, `counter` (bumped at each
//! renewal, so other replicas can tell a live lease from a dead one without trusting clocks),
//! `checkpoint` (a [`Position`]), `parent_shards`, `stream`, and `pending_owner` (a replica
//! asking for the lease, see [`LeaseTable::request_handoff`]). Every change is a conditional
//! write.
//!
//! One more item per replica, `lease_key` = `replica#<id>`, holds `committed_gen`: the
//! generation of that replica's state file whose positions were committed. A commit is one
//! `TransactWriteItems` that writes every changed lease's checkpoint (each conditioned on this
//! replica still owning it) and the marker. So the leases' checkpoints and the state file that
//! holds the same records change together or not at all; see `serve::pipeline` for the file
//! side.

use std::collections::HashMap;
use std::time::Duration;

use aws_sdk_dynamodb::types::{
    AttributeDefinition, AttributeValue, BillingMode, KeySchemaElement, KeyType,
    ScalarAttributeType, TableStatus, TransactWriteItem, Update,
};

use super::client::describe;
pub use super::config::REPLICA_PREFIX;
pub use super::error::CommitError;
use super::error::KinesisError;
use super::position::Position;

const KEY: &str = "lease_key";

/// One shard's lease.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lease {
    pub shard: String,
    pub stream: String,
    pub owner: Option<String>,
    pub counter: u64,
    pub checkpoint: Position,
    pub parents: Vec<String>,
    pub pending_owner: Option<String>,
}

/// One lease's part of a commit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaseCommit {
    pub shard: String,
    pub checkpoint: Position,
    /// Whether to hand the lease over in the same write: `Some(Some(r))` hands it to replica
    /// `r`, `Some(None)` to nobody (shutdown).
    pub transfer: Option<Option<String>>,
}

/// A lease table of one stream.
#[derive(Debug, Clone)]
pub struct LeaseTable {
    pub client: aws_sdk_dynamodb::Client,
    pub table: String,
    pub stream: String,
}

fn s(v: impl Into<String>) -> AttributeValue {
    AttributeValue::S(v.into())
}

fn n(v: u64) -> AttributeValue {
    AttributeValue::N(v.to_string())
}

fn conditional_failed<E: aws_sdk_dynamodb::error::ProvideErrorMetadata>(e: &E) -> bool {
    e.code() == Some("ConditionalCheckFailedException")
}

impl LeaseTable {
    /// Creates the table (on-demand billing) if it does not exist, and waits until it is active.
    pub async fn ensure(&self) -> Result<(), KinesisError> {
        let ctx = |e: String| KinesisError::call(format!("lease table {}", self.table), e);
        match self.client.describe_table().table_name(&self.table).send().await {
            Ok(_) => {}
            Err(e) if e.as_service_error().is_some_and(|e| e.is_resource_not_found_exception()) => {
                let created = self
                    .client
                    .create_table()
                    .table_name(&self.table)
                    .billing_mode(BillingMode::PayPerRequest)
                    .attribute_definitions(
                        AttributeDefinition::builder()
                            .attribute_name(KEY)
                            .attribute_type(ScalarAttributeType::S)
                            .build()
                            .map_err(|e| ctx(e.to_string()))?,
                    )
                    .key_schema(
                        KeySchemaElement::builder()
                            .attribute_name(KEY)
                            .key_type(KeyType::Hash)
                            .build()
                            .map_err(|e| ctx(e.to_string()))?,
                    )
                    .send()
                    .await;
                match created {
                    Ok(_) => tracing::info!(table = %self.table, "created the lease table"),
                    // Another replica created it first.
                    Err(e)
                        if e.as_service_error()
                            .is_some_and(|e| e.is_resource_in_use_exception()) => {}
                    Err(e) => return Err(ctx(describe(&e))),
                }
            }
            Err(e) => return Err(ctx(describe(&e))),
        }
        for _ in 0..120 {
            let out = self
                .client
                .describe_table()
                .table_name(&self.table)
                .send()
                .await
                .map_err(|e| ctx(describe(&e)))?;
            if out.table.and_then(|t| t.table_status) == Some(TableStatus::Active) {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        Err(KinesisError::TableNotActive { table: self.table.clone() })
    }

    fn parse(&self, item: &HashMap<String, AttributeValue>) -> Result<Option<Lease>, KinesisError> {
        let text = |k: &str| item.get(k).and_then(|v| v.as_s().ok()).cloned();
        let Some(shard) = text(KEY) else {
            return Err(KinesisError::Item("an item without lease_key".into()));
        };
        if shard.starts_with(REPLICA_PREFIX) {
            return Ok(None);
        }
        let stream = text("stream").unwrap_or_default();
        if stream != self.stream {
            return Err(KinesisError::Item(format!(
                "lease {shard} belongs to stream {stream:?}, not {:?}: one lease table per stream",
                self.stream
            )));
        }
        let checkpoint = text("checkpoint").and_then(|c| Position::parse(&c)).ok_or_else(|| {
            KinesisError::Item(format!("lease {shard}: missing or unreadable checkpoint"))
        })?;
        let counter = item
            .get("counter")
            .and_then(|v| v.as_n().ok())
            .and_then(|c| c.parse().ok())
            .ok_or_else(|| {
                KinesisError::Item(format!("lease {shard}: missing or unreadable counter"))
            })?;
        let parents = item
            .get("parent_shards")
            .and_then(|v| v.as_l().ok())
            .map(|l| l.iter().filter_map(|p| p.as_s().ok().cloned()).collect())
            .unwrap_or_default();
        Ok(Some(Lease {
            shard,
            stream,
            owner: text("owner"),
            counter,
            checkpoint,
            parents,
            pending_owner: text("pending_owner"),
        }))
    }

    /// Reads every lease (a consistent scan; replica markers are skipped).
    pub async fn scan(&self) -> Result<Vec<Lease>, KinesisError> {
        let mut leases = Vec::new();
        let mut start: Option<HashMap<String, AttributeValue>> = None;
        loop {
            let out = self
                .client
                .scan()
                .table_name(&self.table)
                .consistent_read(true)
                .set_exclusive_start_key(start.take())
                .send()
                .await
                .map_err(|e| {
                    KinesisError::call(format!("scanning lease table {}", self.table), describe(&e))
                })?;
            for item in out.items.unwrap_or_default() {
                if let Some(lease) = self.parse(&item)? {
                    leases.push(lease);
                }
            }
            match out.last_evaluated_key {
                Some(k) if !k.is_empty() => start = Some(k),
                _ => return Ok(leases),
            }
        }
    }

    /// Creates the lease of a shard unless it exists; returns true if this call created it.
    pub async fn create(
        &self,
        shard: &str,
        parents: &[String],
        checkpoint: &Position,
    ) -> Result<bool, KinesisError> {
        let out = self
            .client
            .put_item()
            .table_name(&self.table)
            .item(KEY, s(shard))
            .item("stream", s(&self.stream))
            .item("counter", n(0))
            .item("checkpoint", s(checkpoint.to_string()))
            .item("parent_shards", AttributeValue::L(parents.iter().map(s).collect()))
            .condition_expression("attribute_not_exists(lease_key)")
            .send()
            .await;
        match out {
            Ok(_) => Ok(true),
            Err(e) if e.as_service_error().is_some_and(conditional_failed) => Ok(false),
            Err(e) => Err(KinesisError::call(format!("creating lease {shard}"), describe(&e))),
        }
    }

    /// Renews our lease: the counter goes up if we still own it. `Ok(None)` means we do not.
    pub async fn renew(&self, shard: &str, me: &str) -> Result<Option<Lease>, KinesisError> {
        let out = self
            .client
            .update_item()
            .table_name(&self.table)
            .key(KEY, s(shard))
            .update_expression("SET #c = #c + :one")
            .condition_expression("#o = :me")
            .expression_attribute_names("#c", "counter")
            .expression_attribute_names("#o", "owner")
            .expression_attribute_values(":one", n(1))
            .expression_attribute_values(":me", s(me))
            .return_values(aws_sdk_dynamodb::types::ReturnValue::AllNew)
            .send()
            .await;
        match out {
            Ok(out) => match out.attributes {
                Some(item) => self.parse(&item),
                None => Err(KinesisError::call(
                    format!("renewing lease {shard}"),
                    "no attributes returned",
                )),
            },
            Err(e) if e.as_service_error().is_some_and(conditional_failed) => Ok(None),
            Err(e) => Err(KinesisError::call(format!("renewing lease {shard}"), describe(&e))),
        }
    }

    /// Takes a lease whose owner stopped renewing it (or that has none): succeeds only if its
    /// counter is still the one observed. Returns the lease as taken.
    pub async fn take(&self, lease: &Lease, me: &str) -> Result<Option<Lease>, KinesisError> {
        let out = self
            .client
            .update_item()
            .table_name(&self.table)
            .key(KEY, s(&lease.shard))
            .update_expression("SET #o = :me, #c = #c + :one REMOVE pending_owner")
            .condition_expression("#c = :seen")
            .expression_attribute_names("#c", "counter")
            .expression_attribute_names("#o", "owner")
            .expression_attribute_values(":one", n(1))
            .expression_attribute_values(":me", s(me))
            .expression_attribute_values(":seen", n(lease.counter))
            .return_values(aws_sdk_dynamodb::types::ReturnValue::AllNew)
            .send()
            .await;
        match out {
            Ok(out) => {
                out.attributes.as_ref().map(|i| self.parse(i)).transpose().map(Option::flatten)
            }
            Err(e) if e.as_service_error().is_some_and(conditional_failed) => Ok(None),
            Err(e) => {
                Err(KinesisError::call(format!("taking lease {}", lease.shard), describe(&e)))
            }
        }
    }

    /// Asks the live owner of `lease` to hand it to us: it commits its position and transfers
    /// the lease in one write (see [`LeaseCommit::transfer`]), so nothing is read twice.
    pub async fn request_handoff(&self, lease: &Lease, me: &str) -> Result<bool, KinesisError> {
        let Some(owner) = &lease.owner else { return Ok(false) };
        let out = self
            .client
            .update_item()
            .table_name(&self.table)
            .key(KEY, s(&lease.shard))
            .update_expression("SET pending_owner = :me")
            .condition_expression("#o = :owner AND attribute_not_exists(pending_owner)")
            .expression_attribute_names("#o", "owner")
            .expression_attribute_values(":me", s(me))
            .expression_attribute_values(":owner", s(owner))
            .send()
            .await;
        match out {
            Ok(_) => Ok(true),
            Err(e) if e.as_service_error().is_some_and(conditional_failed) => Ok(false),
            Err(e) => {
                Err(KinesisError::call(format!("asking for lease {}", lease.shard), describe(&e)))
            }
        }
    }

    /// The generation `replica` last committed, if it ever did.
    pub async fn committed_generation(&self, replica: &str) -> Result<Option<u64>, KinesisError> {
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .key(KEY, s(format!("{REPLICA_PREFIX}{replica}")))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| {
                KinesisError::call(format!("reading lease table {}", self.table), describe(&e))
            })?;
        Ok(out
            .item
            .and_then(|i| i.get("committed_gen").and_then(|v| v.as_n().ok()).cloned())
            .and_then(|g| g.parse().ok()))
    }

    /// The transaction items of a commit in this table.
    pub fn commit_items(
        &self,
        me: &str,
        generation: u64,
        previous: Option<u64>,
        leases: &[LeaseCommit],
    ) -> Result<Vec<TransactWriteItem>, KinesisError> {
        let mut items = Vec::with_capacity(leases.len() + 1);
        for l in leases {
            let mut update = Update::builder()
                .table_name(&self.table)
                .key(KEY, s(&l.shard))
                .condition_expression("#o = :me")
                .expression_attribute_names("#o", "owner")
                .expression_attribute_names("#c", "counter")
                .expression_attribute_values(":me", s(me))
                .expression_attribute_values(":cp", s(l.checkpoint.to_string()))
                .expression_attribute_values(":one", n(1));
            update = match &l.transfer {
                None => update.update_expression("SET checkpoint = :cp, #c = #c + :one"),
                Some(Some(to)) => update
                    .update_expression(
                        "SET checkpoint = :cp, #c = #c + :one, #o = :to REMOVE pending_owner",
                    )
                    .expression_attribute_values(":to", s(to)),
                Some(None) => update.update_expression(
                    "SET checkpoint = :cp, #c = #c + :one REMOVE #o, pending_owner",
                ),
            };
            items.push(
                TransactWriteItem::builder()
                    .update(update.build().map_err(|e| {
                        KinesisError::call("building a lease-table request", e.to_string())
                    })?)
                    .build(),
            );
        }
        let mut marker = Update::builder()
            .table_name(&self.table)
            .key(KEY, s(format!("{REPLICA_PREFIX}{me}")))
            .update_expression("SET committed_gen = :g")
            .expression_attribute_values(":g", n(generation));
        marker = match previous {
            Some(p) => marker
                .condition_expression("committed_gen = :p")
                .expression_attribute_values(":p", n(p)),
            None => marker.condition_expression("attribute_not_exists(committed_gen)"),
        };
        items.push(
            TransactWriteItem::builder()
                .update(marker.build().map_err(|e| {
                    KinesisError::call("building a lease-table request", e.to_string())
                })?)
                .build(),
        );
        Ok(items)
    }
}

/// Runs one commit transaction over `items` built by [`LeaseTable::commit_items`] (possibly of
/// several tables); `shards[i]` names item `i` when it is a lease (None for markers).
pub async fn commit(
    client: &aws_sdk_dynamodb::Client,
    items: Vec<TransactWriteItem>,
    shards: &[Option<String>],
) -> Result<(), CommitError> {
    let out = client.transact_write_items().set_transact_items(Some(items)).send().await;
    let e = match out {
        Ok(_) => return Ok(()),
        Err(e) => e,
    };
    if let Some(aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError::TransactionCanceledException(t)) =
        e.as_service_error()
    {
        let failed: Vec<usize> = t
            .cancellation_reasons()
            .iter()
            .enumerate()
            .filter(|(_, r)| r.code.as_deref() == Some("ConditionalCheckFailed"))
            .map(|(i, _)| i)
            .collect();
        let lost: Vec<String> =
            failed.iter().filter_map(|&i| shards.get(i).cloned().flatten()).collect();
        if !lost.is_empty() {
            return Err(CommitError::Lost(lost));
        }
        if !failed.is_empty() {
            return Err(CommitError::MarkerConflict);
        }
    }
    Err(CommitError::Other(describe(&e)))
}
