//! [`IncidentStore`]: where incidents, alerts, seen alert events and the notification outbox live,
//! with a memory implementation and, behind features, SQLite and PostgreSQL.
//!
//! Every write runs the [`engine`](crate::engine) inside one transaction: the incident change,
//! the recorded event keys and the outbox entries commit together or not at all. Deduplication
//! across replicas rests on database constraints (primary keys on event keys, a unique open
//! incident per key, unique outbox rows per incident revision and channel), not process locks.

use std::fmt::Debug;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use watchpost_core::Severity;

use crate::alertmanager::WebhookPayload;
use crate::engine::{ApplyContext, Changes, IncidentOp, NewIncident};
use crate::error::IncidentError;
use crate::model::{Actor, AlertRecord, Incident, IncidentStatus};
use crate::outbox::{DeliveryResult, OutboxEntry};

pub mod memory;
#[cfg(feature = "postgres")]
pub mod postgres;
#[cfg(feature = "sqlite")]
pub mod sqlite;

pub use memory::MemoryStore;

/// A boxed, sendable future (the store trait is object safe).
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// A shared store.
pub type SharedStore = Arc<dyn IncidentStore>;

/// Filters and paging for [`IncidentStore::list`]; newest first.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct IncidentQuery {
    /// Only this status.
    pub status: Option<IncidentStatus>,
    /// Only this severity.
    pub severity: Option<Severity>,
    /// Only this service.
    pub service: Option<String>,
    /// Started at or after.
    pub since: Option<DateTime<Utc>>,
    /// Started before.
    pub until: Option<DateTime<Utc>>,
    /// Continue after this cursor.
    pub cursor: Option<Cursor>,
    /// Page size (1 to 500).
    pub limit: usize,
}

/// A position in the newest-first order: (started_at, id) of the last incident returned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cursor {
    /// Start time in milliseconds.
    pub started_ms: i64,
    /// Incident id.
    pub id: String,
}

impl Cursor {
    /// The cursor after `incident`.
    pub fn after(incident: &Incident) -> Self {
        Self {
            started_ms: incident.started_at.timestamp_millis(),
            id: incident.id.clone(),
        }
    }

    /// Opaque text for clients.
    pub fn encode(&self) -> String {
        base64::engine::general_purpose::URL_SAFE_NO_PAD
            .encode(format!("{}:{}", self.started_ms, self.id))
    }

    /// Parses [`Cursor::encode`] output.
    pub fn decode(s: &str) -> Option<Self> {
        let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(s)
            .ok()?;
        let raw = String::from_utf8(raw).ok()?;
        let (ms, id) = raw.split_once(':')?;
        Some(Self {
            started_ms: ms.parse().ok()?,
            id: id.to_owned(),
        })
    }

    /// Whether `incident` comes after this cursor in newest-first order.
    pub fn precedes(&self, incident: &Incident) -> bool {
        let ms = incident.started_at.timestamp_millis();
        ms < self.started_ms || (ms == self.started_ms && incident.id.as_str() < self.id.as_str())
    }
}

/// One page of incidents.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct IncidentPage {
    /// The incidents, newest first.
    pub items: Vec<Incident>,
    /// Pass as `cursor` for the next page; absent on the last page.
    pub next_cursor: Option<String>,
}

pub(crate) fn page_from(mut items: Vec<Incident>, limit: usize) -> IncidentPage {
    let next_cursor = if items.len() > limit {
        items.truncate(limit);
        items.last().map(|i| Cursor::after(i).encode())
    } else {
        None
    };
    IncidentPage { items, next_cursor }
}

/// A value bound to one placeholder of [`sql_list`].
#[cfg(any(feature = "sqlite", feature = "postgres"))]
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum SqlValue {
    Text(String),
    Integer(i64),
}

/// The SQL stores' list query: `SELECT {column} FROM incidents` with the query's filters, its
/// cursor, newest first, one row more than the page (so [`page_from`] knows whether another page
/// follows). `placeholder(n)` spells the n-th bind parameter, from 1 (`$1` or `?1`).
#[cfg(any(feature = "sqlite", feature = "postgres"))]
pub(crate) fn sql_list(
    column: &str,
    query: &IncidentQuery,
    placeholder: impl Fn(usize) -> String,
) -> (String, Vec<SqlValue>) {
    let mut sql = format!("SELECT {column} FROM incidents WHERE 1 = 1");
    let mut values = Vec::new();
    let mut filter = |clause: &str, value: SqlValue| {
        values.push(value);
        sql.push_str(&clause.replace('?', &placeholder(values.len())));
    };
    if let Some(s) = query.status {
        filter(" AND status = ?", SqlValue::Text(s.as_str().to_owned()));
    }
    if let Some(s) = query.severity {
        filter(" AND severity = ?", SqlValue::Text(s.as_str().to_owned()));
    }
    if let Some(s) = &query.service {
        filter(" AND service = ?", SqlValue::Text(s.clone()));
    }
    if let Some(t) = query.since {
        filter(" AND started_ms >= ?", SqlValue::Integer(ms(t)));
    }
    if let Some(t) = query.until {
        filter(" AND started_ms < ?", SqlValue::Integer(ms(t)));
    }
    if let Some(c) = &query.cursor {
        // A row-value comparison: both databases walk `incidents_by_start` with it.
        filter(
            " AND (started_ms, id) < (?",
            SqlValue::Integer(c.started_ms),
        );
        filter(", ?)", SqlValue::Text(c.id.clone()));
    }
    sql.push_str(&format!(
        " ORDER BY started_ms DESC, id DESC LIMIT {}",
        query.limit + 1
    ));
    (sql, values)
}

pub(crate) fn matches(query: &IncidentQuery, incident: &Incident) -> bool {
    query.status.is_none_or(|s| s == incident.status)
        && query.severity.is_none_or(|s| s == incident.severity)
        && query
            .service
            .as_ref()
            .is_none_or(|s| incident.service.as_ref() == Some(s))
        && query.since.is_none_or(|t| incident.started_at >= t)
        && query.until.is_none_or(|t| incident.started_at < t)
        && query.cursor.as_ref().is_none_or(|c| c.precedes(incident))
}

/// Storage of incidents and the outbox. Implementations: [`MemoryStore`], and behind features
/// `SqliteStore` and `PostgresStore`.
pub trait IncidentStore: Send + Sync + Debug + 'static {
    /// Applies a webhook delivery in one transaction; returns what changed (empty for a duplicate).
    fn apply_delivery(
        &self,
        payload: Arc<WebhookPayload>,
        ctx: ApplyContext,
    ) -> BoxFuture<'_, Result<Changes, IncidentError>>;

    /// Creates a manual incident with its outbox entries.
    fn create(
        &self,
        new: NewIncident,
        actor: Actor,
        ctx: ApplyContext,
    ) -> BoxFuture<'_, Result<(Incident, Changes), IncidentError>>;

    /// Applies an operation to one incident in one transaction.
    fn apply_op(
        &self,
        id: String,
        op: IncidentOp,
        actor: Actor,
        ctx: ApplyContext,
    ) -> BoxFuture<'_, Result<(Incident, Changes), IncidentError>>;

    /// One incident.
    fn get(&self, id: String) -> BoxFuture<'_, Result<Option<Incident>, IncidentError>>;

    /// Incidents matching `query`, newest first.
    fn list(&self, query: IncidentQuery) -> BoxFuture<'_, Result<IncidentPage, IncidentError>>;

    /// Number of open incidents per severity.
    fn open_counts(&self) -> BoxFuture<'_, Result<Vec<(Severity, u64)>, IncidentError>>;

    /// Alerts Watchpost believes are firing (in incidents or standalone), for reconciliation.
    fn firing_alerts(&self) -> BoxFuture<'_, Result<Vec<AlertRecord>, IncidentError>>;

    /// Claims up to `limit` due pending outbox entries for `lease` (other workers skip them until it ends).
    fn claim_outbox(
        &self,
        now: DateTime<Utc>,
        lease: Duration,
        limit: usize,
    ) -> BoxFuture<'_, Result<Vec<OutboxEntry>, IncidentError>>;

    /// Records the result of a delivery attempt; `Delivered` also adds `notified` to the incident's timeline, in the same transaction.
    fn complete_outbox(
        &self,
        entry: OutboxEntry,
        result: DeliveryResult,
        now: DateTime<Utc>,
    ) -> BoxFuture<'_, Result<(), IncidentError>>;

    /// Every outbox entry, oldest first (operations and tests).
    fn outbox(&self) -> BoxFuture<'_, Result<Vec<OutboxEntry>, IncidentError>>;

    /// Forgets alert event keys received before `before`; returns how many. Older redeliveries are
    /// still recognised by the engine (an event older than the stored alert state changes nothing).
    fn prune_events(&self, before: DateTime<Utc>) -> BoxFuture<'_, Result<u64, IncidentError>>;
}

#[cfg(any(feature = "sqlite", feature = "postgres"))]
pub(crate) fn ms(t: DateTime<Utc>) -> i64 {
    t.timestamp_millis()
}

pub(crate) fn lease_until(now: DateTime<Utc>, lease: Duration) -> DateTime<Utc> {
    now + chrono::Duration::from_std(lease).unwrap_or(chrono::Duration::seconds(60))
}
