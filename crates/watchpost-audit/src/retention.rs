//! Retention on PostgreSQL: whole monthly partitions are dropped, and each drop is itself an audit event.
//!
//! Before a partition is dropped, one `system` event per (partition, up to 200 streams) is
//! recorded durably with resource type [`RETENTION_RESOURCE`]
//! and, for each stream in the partition, the last sequence number and hash it removes.
//! Verification accepts a stream that starts after such a declared boundary; anything else
//! missing at the start of a stream is still reported as a gap.

use chrono::{DateTime, Utc};
use serde_json::{Map, Value, json};

use crate::auditor::Auditor;
use crate::error::Result;
use crate::event::{Action, NewEvent};
use crate::store::postgres::PostgresStore;
use crate::verify::RETENTION_RESOURCE;

const STREAMS_PER_EVENT: usize = 200;

/// Drops every partition whose range ends at or before `cutoff`; returns the names dropped.
///
/// Needs the table owner's rights (run it from the migrating role, for example in a
/// maintenance job); the application role cannot drop partitions.
pub async fn apply_retention(
    auditor: &Auditor,
    store: &PostgresStore,
    cutoff: DateTime<Utc>,
) -> Result<Vec<String>> {
    let mut dropped = Vec::new();
    for (name, upper) in store.partitions_before(cutoff).await? {
        let heads = store.partition_heads(&name).await?;
        let chunks: Vec<&[(String, i64, String)]> = if heads.is_empty() {
            vec![&[]]
        } else {
            heads.chunks(STREAMS_PER_EVENT).collect()
        };
        for chunk in chunks {
            let mut streams = Map::new();
            for (stream, seq, hash) in chunk {
                streams.insert(stream.clone(), json!({"lastSeq": seq, "lastHash": hash}));
            }
            let event = NewEvent::new(Action::System)
                .resource(RETENTION_RESOURCE, name.clone())
                .payload(json!({
                    "partition": name,
                    "upperBound": crate::event::ts::format(&upper),
                    "streams": Value::Object(streams),
                }));
            auditor.record(event).await?;
        }
        store.drop_partition(&name).await?;
        tracing::info!(partition = %name, "dropped an audit partition past its retention");
        dropped.push(name);
    }
    Ok(dropped)
}
