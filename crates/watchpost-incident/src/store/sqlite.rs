//! [`SqliteStore`]: the incident store in SQLite (deadpool-sqlite, WAL), every transaction inside `interact`.
//!
//! Every write goes through one writer task that commits in groups: it takes the writes that
//! queued up while the previous commit was syncing, runs each in its own savepoint inside one
//! `BEGIN IMMEDIATE` transaction (so one failing write rolls back alone), commits once, and only
//! then answers each caller. With `synchronous = FULL` that commit is durable, so an answer still
//! means "on disk", but eight concurrent deliveries cost one fsync instead of eight, and they no
//! longer wait on each other's write lock. The read-decide-write of a delivery stays serialised;
//! the same unique constraints as PostgreSQL back it up.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use rusqlite::{OptionalExtension, params};
use watchpost_core::Severity;

use super::{BoxFuture, IncidentPage, IncidentQuery, IncidentStore, lease_until, ms, page_from};
use crate::alertmanager::WebhookPayload;
use crate::engine::{self, ApplyContext, Changes, IncidentOp, NewIncident, Snapshot};
use crate::error::IncidentError;
use crate::model::{Actor, AlertRecord, Channel, Incident, TimelineEvent};
use crate::outbox::{DeliveryResult, Notification, OutboxEntry, OutboxState};

mod embedded {
    refinery::embed_migrations!("migrations/sqlite");
}

/// The refinery history table of this crate.
pub const MIGRATION_TABLE: &str = "watchpost_incident_migrations";

fn unavailable(e: impl std::fmt::Display) -> IncidentError {
    IncidentError::Unavailable(format!("SQLite: {e}"))
}

/// Applies this crate's SQLite migrations (idempotent) and switches the database to WAL.
pub async fn migrate(pool: &deadpool_sqlite::Pool) -> Result<(), IncidentError> {
    let conn = pool.get().await.map_err(unavailable)?;
    conn.interact(|conn| {
        conn.pragma_update(None, "journal_mode", "WAL")
            .map_err(|e| IncidentError::Migration(e.to_string()))?;
        embedded::migrations::runner()
            .set_migration_table_name(MIGRATION_TABLE)
            .run(conn)
            .map(|_| ())
            .map_err(|e| IncidentError::Migration(e.to_string()))
    })
    .await
    .map_err(unavailable)?
}

/// Most writes committed together in one transaction.
const MAX_GROUP: usize = 128;

/// Called once the group's commit has ended: `Ok` when it is durable.
type Finish = Box<dyn FnOnce(Result<(), String>) + Send>;

/// One write: runs on the writer's connection inside the group transaction (or learns why it
/// could not), and returns how to answer its caller once the commit has ended.
type Job = Box<dyn FnOnce(Result<&rusqlite::Connection, &str>) -> Finish + Send>;

/// The queue into the group-commit writer; the task starts on first use (and again if the
/// runtime that ran it is gone).
#[derive(Debug, Clone, Default)]
struct Writer {
    queue: Arc<std::sync::Mutex<Option<tokio::sync::mpsc::UnboundedSender<Job>>>>,
}

impl Writer {
    fn submit(&self, pool: &deadpool_sqlite::Pool, job: Job) -> Result<(), IncidentError> {
        let mut queue = self.queue.lock().unwrap_or_else(|e| e.into_inner());
        let job = match queue.as_ref() {
            Some(q) => match q.send(job) {
                Ok(()) => return Ok(()),
                Err(tokio::sync::mpsc::error::SendError(job)) => job,
            },
            None => job,
        };
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        let runtime = tokio::runtime::Handle::try_current()
            .map_err(|_| unavailable("the SQLite writer needs a Tokio runtime"))?;
        runtime.spawn(write_groups(pool.clone(), rx));
        tx.send(job)
            .map_err(|_| unavailable("the SQLite writer stopped"))?;
        *queue = Some(tx);
        Ok(())
    }
}

/// The writer: one group per round, made of every write queued when the round starts.
async fn write_groups(
    pool: deadpool_sqlite::Pool,
    mut queue: tokio::sync::mpsc::UnboundedReceiver<Job>,
) {
    while let Some(first) = queue.recv().await {
        let mut jobs = vec![first];
        while jobs.len() < MAX_GROUP {
            match queue.try_recv() {
                Ok(job) => jobs.push(job),
                Err(_) => break,
            }
        }
        let conn = match pool.get().await {
            Ok(conn) => conn,
            Err(e) => {
                let why = format!("SQLite: {e}");
                for job in jobs {
                    job(Err(&why))(Err(why.clone()));
                }
                continue;
            }
        };
        let done = conn
            .interact(move |conn| {
                if !conn.is_autocommit() {
                    // A group that panicked left its transaction open on this connection.
                    let _ = conn.execute_batch("ROLLBACK");
                }
                if let Err(e) = conn.execute_batch("BEGIN IMMEDIATE") {
                    let why = e.to_string();
                    for job in jobs {
                        job(Err(&why))(Err(why.clone()));
                    }
                    return;
                }
                let finish: Vec<Finish> = jobs.into_iter().map(|job| job(Ok(conn))).collect();
                let committed = conn.execute_batch("COMMIT").map_err(|e| e.to_string());
                if committed.is_err() {
                    let _ = conn.execute_batch("ROLLBACK");
                }
                for f in finish {
                    f(committed.clone());
                }
            })
            .await;
        if let Err(e) = done {
            // The callers' answer channels were dropped with the group: they see the writer failed.
            tracing::error!(error = %e, "the SQLite incident writer lost a group");
        }
    }
}

/// The incident store in SQLite.
#[derive(Debug, Clone)]
pub struct SqliteStore {
    pool: deadpool_sqlite::Pool,
    writer: Writer,
}

/// WAL for concurrent readers; `synchronous = FULL` so a committed write survives a crash; a busy
/// timeout so other writers of the file queue instead of failing (the server sets the same).
fn configure(conn: &mut rusqlite::Connection) -> Result<(), rusqlite::Error> {
    conn.query_row("PRAGMA journal_mode = WAL", [], |_| Ok(()))?;
    conn.execute_batch("PRAGMA synchronous = FULL; PRAGMA busy_timeout = 5000;")
}

impl SqliteStore {
    /// A store over `pool` (call [`migrate`] first; connections should be in WAL mode with
    /// `synchronous = FULL`, as the server and [`SqliteStore::open`] make them).
    pub fn new(pool: deadpool_sqlite::Pool) -> Self {
        Self {
            pool,
            writer: Writer::default(),
        }
    }

    /// Opens (creating) the database file at `path` (WAL, `synchronous = FULL`), migrates it,
    /// and returns the store.
    pub async fn open(path: impl AsRef<Path>) -> Result<Self, IncidentError> {
        let path = path.as_ref();
        let fail = |e: String| {
            IncidentError::Unavailable(format!(
                "cannot open SQLite database {}: {e}; check WATCHPOST_DATA_DIR",
                path.display()
            ))
        };
        let pool = deadpool_sqlite::Config::new(path)
            .builder(deadpool_sqlite::Runtime::Tokio1)
            .map_err(|e| fail(e.to_string()))?
            .post_create(deadpool_sqlite::Hook::async_fn(|conn, _| {
                Box::pin(async move {
                    conn.interact(configure)
                        .await
                        .map_err(|e| deadpool_sqlite::HookError::message(e.to_string()))?
                        .map_err(deadpool_sqlite::HookError::Backend)
                })
            }))
            .build()
            .map_err(|e| fail(e.to_string()))?;
        migrate(&pool).await?;
        Ok(Self::new(pool))
    }

    /// Runs `f` in the next group transaction, inside its own savepoint; answers once the group
    /// has committed (durable) or failed.
    async fn write<T, F>(&self, f: F) -> Result<T, IncidentError>
    where
        T: Send + 'static,
        F: FnOnce(&rusqlite::Connection) -> Result<T, IncidentError> + Send + 'static,
    {
        let (answer, answered) = tokio::sync::oneshot::channel();
        let job: Job = Box::new(move |conn| {
            let result = match conn {
                Err(why) => Err(unavailable(why)),
                Ok(conn) => in_savepoint(conn, f),
            };
            Box::new(move |committed: Result<(), String>| {
                let _ = answer.send(match (result, committed) {
                    (Ok(v), Ok(())) => Ok(v),
                    (Err(e), _) => Err(e),
                    (Ok(_), Err(why)) => Err(unavailable(why)),
                });
            })
        });
        self.writer.submit(&self.pool, job)?;
        answered
            .await
            .map_err(|_| unavailable("the incident writer stopped before answering"))?
    }

    /// The pool.
    pub fn pool(&self) -> &deadpool_sqlite::Pool {
        &self.pool
    }

    async fn run<T, F>(&self, f: F) -> Result<T, IncidentError>
    where
        T: Send + 'static,
        F: FnOnce(&mut rusqlite::Connection) -> Result<T, IncidentError> + Send + 'static,
    {
        let conn = self.pool.get().await.map_err(unavailable)?;
        conn.interact(f).await.map_err(unavailable)?
    }
}

fn sql(e: rusqlite::Error) -> IncidentError {
    unavailable(e)
}

/// Runs `f` in a savepoint: its writes stay when it succeeds and are rolled back when it fails,
/// leaving the rest of the group untouched.
fn in_savepoint<T>(
    conn: &rusqlite::Connection,
    f: impl FnOnce(&rusqlite::Connection) -> Result<T, IncidentError>,
) -> Result<T, IncidentError> {
    conn.execute_batch("SAVEPOINT incident_write")
        .map_err(sql)?;
    match f(conn) {
        Ok(v) => {
            conn.execute_batch("RELEASE incident_write").map_err(sql)?;
            Ok(v)
        }
        Err(e) => {
            conn.execute_batch("ROLLBACK TO incident_write; RELEASE incident_write")
                .map_err(sql)?;
            Err(e)
        }
    }
}

fn load_incident(tx: &rusqlite::Connection, id: &str) -> Result<Option<Incident>, IncidentError> {
    let doc: Option<String> = tx
        .prepare_cached("SELECT doc FROM incidents WHERE id = ?1")
        .map_err(sql)?
        .query_row([id], |r| r.get(0))
        .optional()
        .map_err(sql)?;
    doc.map(|d| serde_json::from_str(&d).map_err(IncidentError::from))
        .transpose()
}

fn write_changes(
    tx: &rusqlite::Connection,
    changes: &Changes,
    now: DateTime<Utc>,
) -> Result<(), IncidentError> {
    for i in &changes.incidents {
        tx.prepare_cached(
            "INSERT INTO incidents (id, incident_key, status, severity, service, started_ms, updated_ms, doc) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8) ON CONFLICT (id) DO UPDATE SET status = excluded.status, \
             severity = excluded.severity, service = excluded.service, started_ms = excluded.started_ms, \
             updated_ms = excluded.updated_ms, doc = excluded.doc",
        )
        .map_err(sql)?
        .execute(params![
            i.id,
            i.key,
            i.status.as_str(),
            i.severity.as_str(),
            i.service,
            ms(i.started_at),
            ms(i.updated_at),
            serde_json::to_string(i)?
        ])
        .map_err(sql)?;
    }
    for a in &changes.alerts {
        tx.prepare_cached(
            "INSERT INTO incident_alerts (fingerprint, status, doc) VALUES (?1, ?2, ?3) \
             ON CONFLICT (fingerprint) DO UPDATE SET status = excluded.status, doc = excluded.doc",
        )
        .map_err(sql)?
        .execute(params![
            a.fingerprint,
            a.status.as_str(),
            serde_json::to_string(a)?
        ])
        .map_err(sql)?;
    }
    for e in &changes.events {
        tx.prepare_cached(
            "INSERT OR IGNORE INTO incident_alert_events (event_key, received_ms) VALUES (?1, ?2)",
        )
        .map_err(sql)?
        .execute(params![e.as_str(), ms(now)])
        .map_err(sql)?;
    }
    for o in &changes.outbox {
        let n = &o.notification;
        tx.prepare_cached(
            "INSERT OR IGNORE INTO incident_outbox (id, incident_id, revision, channel, state, attempts, \
             next_attempt_ms, last_error, created_ms, doc) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
        )
        .map_err(sql)?
        .execute(params![
            n.id,
            n.incident.id,
            o.revision as i64,
            n.channel.as_str(),
            o.state.as_str(),
            o.attempts,
            ms(o.next_attempt_at),
            o.last_error,
            ms(n.created_at),
            serde_json::to_string(n)?
        ])
        .map_err(sql)?;
    }
    Ok(())
}

fn from_ms(v: i64) -> DateTime<Utc> {
    DateTime::from_timestamp_millis(v).unwrap_or_default()
}

fn outbox_row(
    r: &rusqlite::Row<'_>,
) -> rusqlite::Result<(i64, u32, String, i64, Option<String>, String)> {
    Ok((
        r.get(0)?,
        r.get(1)?,
        r.get(2)?,
        r.get(3)?,
        r.get(4)?,
        r.get(5)?,
    ))
}

fn outbox_entry(
    row: (i64, u32, String, i64, Option<String>, String),
) -> Result<OutboxEntry, IncidentError> {
    let (revision, attempts, state, next, last_error, doc) = row;
    let notification: Notification = serde_json::from_str(&doc)?;
    Ok(OutboxEntry {
        notification,
        revision: revision as u64,
        attempts,
        state: OutboxState::parse(&state)
            .ok_or_else(|| IncidentError::Corrupt(format!("outbox state {state:?}")))?,
        next_attempt_at: from_ms(next),
        last_error,
    })
}

const OUTBOX_COLUMNS: &str = "revision, attempts, state, next_attempt_ms, last_error, doc";

impl IncidentStore for SqliteStore {
    fn apply_delivery(
        &self,
        payload: Arc<WebhookPayload>,
        ctx: ApplyContext,
    ) -> BoxFuture<'_, Result<Changes, IncidentError>> {
        Box::pin(self.write(move |tx| {
            let (keys, fingerprints, events) = engine::touched(&payload, &ctx.policy);
            let mut snapshot = Snapshot::default();
            for key in keys {
                let doc: Option<String> = tx
                    .prepare_cached(
                        "SELECT doc FROM incidents WHERE incident_key = ?1 ORDER BY id DESC LIMIT 1",
                    )
                    .map_err(sql)?
                    .query_row([&key], |r| r.get(0))
                    .optional()
                    .map_err(sql)?;
                if let Some(doc) = doc {
                    snapshot.incidents.insert(key, serde_json::from_str(&doc)?);
                }
            }
            for fp in fingerprints {
                let doc: Option<String> = tx
                    .prepare_cached("SELECT doc FROM incident_alerts WHERE fingerprint = ?1")
                    .map_err(sql)?
                    .query_row([&fp], |r| r.get(0))
                    .optional()
                    .map_err(sql)?;
                if let Some(doc) = doc {
                    snapshot.alerts.insert(fp, serde_json::from_str(&doc)?);
                }
            }
            for e in events {
                let seen = tx
                    .prepare_cached("SELECT 1 FROM incident_alert_events WHERE event_key = ?1")
                    .map_err(sql)?
                    .exists([e.as_str()])
                    .map_err(sql)?;
                if seen {
                    snapshot.seen.insert(e);
                }
            }
            let changes = engine::apply_delivery(&mut snapshot, &payload, &ctx);
            if !changes.is_empty() {
                write_changes(tx, &changes, ctx.now)?;
            }
            Ok(changes)
        }))
    }

    fn create(
        &self,
        new: NewIncident,
        actor: Actor,
        ctx: ApplyContext,
    ) -> BoxFuture<'_, Result<(Incident, Changes), IncidentError>> {
        Box::pin(self.write(move |tx| {
            let changes = engine::create_manual(&new, &actor, &ctx);
            write_changes(tx, &changes, ctx.now)?;
            Ok((changes.incidents[0].clone(), changes))
        }))
    }

    fn apply_op(
        &self,
        id: String,
        op: IncidentOp,
        actor: Actor,
        ctx: ApplyContext,
    ) -> BoxFuture<'_, Result<(Incident, Changes), IncidentError>> {
        Box::pin(self.write(move |tx| {
            let mut incident =
                load_incident(tx, &id)?.ok_or_else(|| IncidentError::NotFound(id.clone()))?;
            let changes = engine::apply_op(&mut incident, &op, &actor, &ctx)?;
            write_changes(tx, &changes, ctx.now)?;
            Ok((incident, changes))
        }))
    }

    fn get(&self, id: String) -> BoxFuture<'_, Result<Option<Incident>, IncidentError>> {
        Box::pin(self.run(move |conn| {
            let tx = conn.transaction().map_err(sql)?;
            load_incident(&tx, &id)
        }))
    }

    fn list(&self, query: IncidentQuery) -> BoxFuture<'_, Result<IncidentPage, IncidentError>> {
        Box::pin(self.run(move |conn| {
            use rusqlite::types::Value;
            let (sql_text, values) = super::sql_list("doc", &query, |n| format!("?{n}"));
            let args = values.into_iter().map(|v| match v {
                super::SqlValue::Text(t) => Value::Text(t),
                super::SqlValue::Integer(i) => Value::Integer(i),
            });
            let mut stmt = conn.prepare(&sql_text).map_err(sql)?;
            let docs = stmt
                .query_map(rusqlite::params_from_iter(args), |r| r.get::<_, String>(0))
                .map_err(sql)?
                .collect::<Result<Vec<_>, _>>()
                .map_err(sql)?;
            let items = docs
                .iter()
                .map(|d| serde_json::from_str(d).map_err(IncidentError::from))
                .collect::<Result<Vec<Incident>, _>>()?;
            Ok(page_from(items, query.limit))
        }))
    }

    fn open_counts(&self) -> BoxFuture<'_, Result<Vec<(Severity, u64)>, IncidentError>> {
        Box::pin(self.run(|conn| {
            let mut stmt = conn
                .prepare("SELECT severity, count(*) FROM incidents WHERE status <> 'resolved' GROUP BY severity")
                .map_err(sql)?;
            let rows = stmt
                .query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?)))
                .map_err(sql)?
                .collect::<Result<Vec<_>, _>>()
                .map_err(sql)?;
            let mut out = BTreeMap::new();
            for (s, n) in rows {
                if let Ok(s) = s.parse::<Severity>() {
                    out.insert(s, n as u64);
                }
            }
            Ok(out.into_iter().collect())
        }))
    }

    fn firing_alerts(&self) -> BoxFuture<'_, Result<Vec<AlertRecord>, IncidentError>> {
        Box::pin(self.run(|conn| {
            let mut out = Vec::new();
            let mut stmt = conn
                .prepare("SELECT doc FROM incident_alerts WHERE status = 'firing'")
                .map_err(sql)?;
            for doc in stmt.query_map([], |r| r.get::<_, String>(0)).map_err(sql)? {
                out.push(serde_json::from_str::<AlertRecord>(&doc.map_err(sql)?)?);
            }
            let mut stmt = conn
                .prepare("SELECT doc FROM incidents WHERE status <> 'resolved'")
                .map_err(sql)?;
            for doc in stmt.query_map([], |r| r.get::<_, String>(0)).map_err(sql)? {
                let incident: Incident = serde_json::from_str(&doc.map_err(sql)?)?;
                out.extend(
                    incident
                        .alerts
                        .into_iter()
                        .filter(|a| a.status == crate::alertmanager::AlertStatus::Firing),
                );
            }
            Ok(out)
        }))
    }

    fn claim_outbox(
        &self,
        now: DateTime<Utc>,
        lease: Duration,
        limit: usize,
    ) -> BoxFuture<'_, Result<Vec<OutboxEntry>, IncidentError>> {
        Box::pin(self.write(move |tx| {
            let until = ms(lease_until(now, lease));
            let mut entries = Vec::new();
            {
                let mut stmt = tx
                    .prepare_cached(&format!(
                        "UPDATE incident_outbox SET attempts = attempts + 1, next_attempt_ms = ?1 WHERE id IN \
                         (SELECT id FROM incident_outbox WHERE state = 'pending' AND next_attempt_ms <= ?2 \
                         ORDER BY next_attempt_ms LIMIT ?3) RETURNING {OUTBOX_COLUMNS}"
                    ))
                    .map_err(sql)?;
                for row in stmt.query_map(params![until, ms(now), limit as i64], outbox_row).map_err(sql)? {
                    entries.push(outbox_entry(row.map_err(sql)?)?);
                }
            }
            entries.sort_by(|a, b| a.next_attempt_at.cmp(&b.next_attempt_at).then_with(|| a.id().cmp(b.id())));
            Ok(entries)
        }))
    }

    fn complete_outbox(
        &self,
        entry: OutboxEntry,
        result: DeliveryResult,
        now: DateTime<Utc>,
    ) -> BoxFuture<'_, Result<(), IncidentError>> {
        Box::pin(self.write(move |tx| {
            let id = entry.id().to_owned();
            match result {
                DeliveryResult::Delivered => {
                    let changed = tx
                        .execute(
                            "UPDATE incident_outbox SET state = 'delivered', last_error = NULL WHERE id = ?1 AND state = 'pending'",
                            [&id],
                        )
                        .map_err(sql)?;
                    if changed == 1 {
                        notified(tx, &entry.notification.incident.id, entry.notification.channel, now)?;
                    }
                }
                DeliveryResult::Retry { at, error } => {
                    tx.prepare_cached("UPDATE incident_outbox SET next_attempt_ms = ?2, last_error = ?3 WHERE id = ?1 AND state = 'pending'")
                        .map_err(sql)?
                        .execute(
                        params![id, ms(at), error],
                    )
                    .map_err(sql)?;
                }
                DeliveryResult::Failed { error } => {
                    tx.prepare_cached("UPDATE incident_outbox SET state = 'failed', last_error = ?2 WHERE id = ?1 AND state = 'pending'")
                        .map_err(sql)?
                        .execute(
                        params![id, error],
                    )
                    .map_err(sql)?;
                }
            }
            Ok(())
        }))
    }

    fn prune_events(&self, before: DateTime<Utc>) -> BoxFuture<'_, Result<u64, IncidentError>> {
        Box::pin(self.write(move |conn| {
            conn.execute(
                "DELETE FROM incident_alert_events WHERE received_ms < ?1",
                [ms(before)],
            )
            .map(|n| n as u64)
            .map_err(sql)
        }))
    }

    fn outbox(&self) -> BoxFuture<'_, Result<Vec<OutboxEntry>, IncidentError>> {
        Box::pin(self.run(|conn| {
            let mut stmt = conn
                .prepare(&format!(
                    "SELECT {OUTBOX_COLUMNS} FROM incident_outbox ORDER BY id"
                ))
                .map_err(sql)?;
            let rows = stmt
                .query_map([], outbox_row)
                .map_err(sql)?
                .collect::<Result<Vec<_>, _>>()
                .map_err(sql)?;
            rows.into_iter().map(outbox_entry).collect()
        }))
    }
}

fn notified(
    tx: &rusqlite::Connection,
    incident_id: &str,
    channel: Channel,
    now: DateTime<Utc>,
) -> Result<(), IncidentError> {
    if let Some(mut incident) = load_incident(tx, incident_id)? {
        incident.push(
            now,
            Actor::system("outbox"),
            TimelineEvent::Notified { channel },
        );
        tx.prepare_cached("UPDATE incidents SET doc = ?2 WHERE id = ?1")
            .map_err(sql)?
            .execute(params![incident_id, serde_json::to_string(&incident)?])
            .map_err(sql)?;
    }
    Ok(())
}
