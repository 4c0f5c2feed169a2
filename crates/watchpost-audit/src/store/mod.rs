//! [`AuditStore`]: where sealed events and checkpoints live, and how they are queried.
//!
//! Three implementations: [`MemoryStore`], `SqliteStore` (feature `sqlite`) and
//! `PostgresStore` (feature `postgres`). Every store is append-only: appending an event
//! whose id is already stored (or a checkpoint whose stream and number are) is a no-op,
//! which is what makes spool replay safe after an unknown commit outcome.

use std::collections::HashSet;
use std::fmt::Debug;

use base64::Engine;
use chrono::{DateTime, Utc};
use futures_util::future::BoxFuture;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::checkpoint::Checkpoint;
use crate::error::{AuditError, Result};
use crate::event::{AuditEvent, OutcomeResult};

mod memory;
#[cfg(feature = "postgres")]
pub mod postgres;
#[cfg(feature = "sqlite")]
pub mod sqlite;

pub use memory::MemoryStore;

/// Most events one query page may return.
pub const MAX_PAGE: usize = 1000;

/// Filters for [`AuditStore::query`]; all optional, combined with AND.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EventQuery {
    /// Recorded at or after.
    pub from: Option<DateTime<Utc>>,
    /// Recorded before.
    pub to: Option<DateTime<Utc>>,
    /// Actor key id.
    pub api_key_id: Option<String>,
    /// Tenant.
    pub tenant_id: Option<String>,
    /// Action word.
    pub action: Option<String>,
    /// Resource kind.
    pub resource_type: Option<String>,
    /// Resource id.
    pub resource_id: Option<String>,
    /// Outcome.
    pub outcome: Option<OutcomeResult>,
    /// Correlation id.
    pub correlation_id: Option<String>,
    /// Continue after this position (from a previous page).
    pub cursor: Option<Cursor>,
    /// Page size, 1 to [`MAX_PAGE`].
    pub limit: usize,
}

impl EventQuery {
    /// Whether `e` passes every filter except the cursor.
    pub fn matches(&self, e: &AuditEvent) -> bool {
        fn eq(want: &Option<String>, have: Option<&str>) -> bool {
            want.as_deref().is_none_or(|w| have == Some(w))
        }
        self.from.is_none_or(|f| e.recorded_at >= f)
            && self.to.is_none_or(|t| e.recorded_at < t)
            && eq(&self.api_key_id, e.actor.api_key_id.as_deref())
            && eq(&self.tenant_id, e.actor.tenant_id.as_deref())
            && eq(&self.action, Some(e.action.as_str()))
            && eq(&self.resource_type, e.resource_type.as_deref())
            && eq(&self.resource_id, e.resource_id.as_deref())
            && self.outcome.is_none_or(|o| e.outcome.result == o)
            && eq(&self.correlation_id, e.correlation_id.as_deref())
    }
}

/// A position in the newest-first order `(recordedAt, id)`; opaque to clients.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Cursor {
    /// Microseconds since the epoch.
    #[serde(rename = "t")]
    pub recorded_at_micros: i64,
    /// The event id.
    #[serde(rename = "i")]
    pub id: Uuid,
}

impl Cursor {
    /// The cursor just past `e`.
    pub fn after(e: &AuditEvent) -> Self {
        Self {
            recorded_at_micros: e.recorded_at.timestamp_micros(),
            id: e.id,
        }
    }

    /// Whether `e` comes after this cursor in newest-first order.
    pub fn precedes(&self, e: &AuditEvent) -> bool {
        (e.recorded_at.timestamp_micros(), e.id) < (self.recorded_at_micros, self.id)
    }

    /// The opaque text form.
    pub fn encode(&self) -> String {
        let json = serde_json::to_vec(self).unwrap_or_default();
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(json)
    }

    /// Reads the opaque text form.
    pub fn decode(s: &str) -> Option<Self> {
        let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(s)
            .ok()?;
        serde_json::from_slice(&bytes).ok()
    }

    /// The timestamp part.
    pub fn recorded_at(&self) -> DateTime<Utc> {
        DateTime::from_timestamp_micros(self.recorded_at_micros).unwrap_or_default()
    }
}

/// One page of results, newest first.
#[derive(Debug, Clone, PartialEq)]
pub struct Page {
    /// The events.
    pub items: Vec<AuditEvent>,
    /// Where the next page starts, when there may be one.
    pub next: Option<Cursor>,
}

/// A boxed future returned by store methods.
pub type StoreFuture<'a, T> = BoxFuture<'a, Result<T>>;

/// Storage for sealed audit events and checkpoints.
pub trait AuditStore: Send + Sync + Debug + 'static {
    /// `memory`, `sqlite` or `postgres`.
    fn backend(&self) -> &'static str;

    /// Whether a commit survives a crash of this process.
    fn is_durable(&self) -> bool;

    /// Appends events atomically; events whose id is already stored are skipped.
    fn append<'a>(&'a self, events: &'a [AuditEvent]) -> StoreFuture<'a, ()>;

    /// Appends a checkpoint; one already stored (same stream and number) is skipped.
    fn append_checkpoint<'a>(&'a self, checkpoint: &'a Checkpoint) -> StoreFuture<'a, ()>;

    /// One event by id.
    fn get(&self, id: Uuid) -> StoreFuture<'_, Option<AuditEvent>>;

    /// Events matching `query`, newest first (`recordedAt`, then id, descending).
    fn query<'a>(&'a self, query: &'a EventQuery) -> StoreFuture<'a, Page>;

    /// Events of `stream` with `seq > after_seq`, in sequence order, at most `limit`.
    fn stream_events<'a>(
        &'a self,
        stream: &'a str,
        after_seq: i64,
        limit: usize,
    ) -> StoreFuture<'a, Vec<AuditEvent>>;

    /// Every stream name that has events or checkpoints.
    fn streams(&self) -> StoreFuture<'_, Vec<String>>;

    /// A stream's checkpoints in number order.
    fn checkpoints<'a>(&'a self, stream: &'a str) -> StoreFuture<'a, Vec<Checkpoint>>;

    /// Which of `ids` are stored.
    fn existing_ids<'a>(&'a self, ids: &'a [Uuid]) -> StoreFuture<'a, HashSet<Uuid>>;

    /// Periodic upkeep the writer runs at start and every few hours (PostgreSQL creates the
    /// monthly partitions ahead). Does nothing by default.
    fn maintain(&self, now: DateTime<Utc>) -> StoreFuture<'_, ()> {
        let _ = now;
        Box::pin(async { Ok(()) })
    }
}

/// Checks a page size.
pub(crate) fn check_limit(limit: usize) -> Result<usize> {
    if (1..=MAX_PAGE).contains(&limit) {
        Ok(limit)
    } else {
        Err(AuditError::Config(format!(
            "limit must be 1 to {MAX_PAGE}, got {limit}"
        )))
    }
}

/// The page plus cursor from up to `limit + 1` rows.
pub(crate) fn page_from(mut rows: Vec<AuditEvent>, limit: usize) -> Page {
    let next = if rows.len() > limit {
        rows.truncate(limit);
        rows.last().map(Cursor::after)
    } else {
        None
    };
    Page { items: rows, next }
}
