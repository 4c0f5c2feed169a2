//! `PostgresStore`: monthly-partitioned, append-only tables written with binary `COPY` and durable commits.
//!
//! Writes go through [`copy_events`]: one transaction with `synchronous_commit = on`, one
//! binary `COPY` of the whole batch. A batch that collides with stored ids (a replay after an
//! unknown commit outcome) is retried without the ids already present. The application role
//! should hold only `SELECT` and `INSERT` ([`grant_append_only`]); triggers refuse `UPDATE`,
//! `DELETE` and `TRUNCATE` even to the owner.

use std::collections::HashSet;

use chrono::{DateTime, Datelike, Months, NaiveDate, Utc};
use deadpool_postgres::Pool;
use futures_util::pin_mut;
use tokio_postgres::Row;
use tokio_postgres::binary_copy::BinaryCopyInWriter;
use tokio_postgres::error::SqlState;
use tokio_postgres::types::{Json, ToSql, Type};
use uuid::Uuid;

use super::{AuditStore, EventQuery, Page, StoreFuture, check_limit, page_from};
use crate::checkpoint::Checkpoint;
use crate::error::{AuditError, Result};
use crate::event::{Action, Actor, AuditEvent, Outcome, OutcomeResult};

mod embedded {
    refinery::embed_migrations!("migrations/postgres");
}

/// The refinery history table this crate uses.
pub const MIGRATION_TABLE: &str = "watchpost_audit_migrations";

const BACKEND: &str = "postgres";

/// The columns of `audit_events`, in `COPY` order.
pub const COLUMNS: &str = "id, stream, seq, prev_hash, hash, occurred_at, recorded_at, actor_api_key_id, \
    actor_key_name, tenant_id, actor_role, method, route, path, action, resource_type, resource_id, outcome, \
    status, request_id, correlation_id, trace_id, source_ip, user_agent, payload";

const TYPES: [Type; 25] = [
    Type::UUID,
    Type::TEXT,
    Type::INT8,
    Type::TEXT,
    Type::TEXT,
    Type::TIMESTAMPTZ,
    Type::TIMESTAMPTZ,
    Type::TEXT,
    Type::TEXT,
    Type::TEXT,
    Type::TEXT,
    Type::TEXT,
    Type::TEXT,
    Type::TEXT,
    Type::TEXT,
    Type::TEXT,
    Type::TEXT,
    Type::TEXT,
    Type::INT4,
    Type::TEXT,
    Type::TEXT,
    Type::TEXT,
    Type::TEXT,
    Type::TEXT,
    Type::JSON,
];

fn err(e: impl std::fmt::Display) -> AuditError {
    AuditError::store(BACKEND, e)
}

fn pg_err(e: tokio_postgres::Error) -> AuditError {
    match e.as_db_error() {
        Some(db) => err(format!("{}: {}", db.code().code(), db.message())),
        None => err(format!("{e}; is PostgreSQL reachable? check DATABASE_URL")),
    }
}

async fn client(pool: &Pool) -> Result<deadpool_postgres::Object> {
    pool.get().await.map_err(|e| {
        err(format!(
            "cannot get a PostgreSQL connection: {e}; is it running? check DATABASE_URL"
        ))
    })
}

/// Applies this crate's migrations (history in [`MIGRATION_TABLE`]) and creates partitions for
/// last month, this month and the next three.
pub async fn migrate(pool: &Pool) -> Result<()> {
    let mut obj = client(pool).await?;
    let c: &mut tokio_postgres::Client = &mut obj;
    let mut runner = embedded::migrations::runner();
    runner.set_migration_table_name(MIGRATION_TABLE);
    runner
        .run_async(c)
        .await
        .map_err(|e| AuditError::Migration {
            backend: BACKEND,
            message: e.to_string(),
        })?;
    ensure_partitions(pool, Utc::now(), 3).await?;
    Ok(())
}

/// Creates monthly partitions from last month to `months_ahead` months after `now`; returns their names.
pub async fn ensure_partitions(
    pool: &Pool,
    now: DateTime<Utc>,
    months_ahead: u32,
) -> Result<Vec<String>> {
    let c = client(pool).await?;
    let first = NaiveDate::from_ymd_opt(now.year(), now.month(), 1).unwrap_or_default();
    let mut names = Vec::new();
    for i in 0..=months_ahead + 1 {
        let Some(day) = (first - Months::new(1)).checked_add_months(Months::new(i)) else {
            continue;
        };
        let row = c
            .query_one("SELECT watchpost_audit_ensure_partition($1)", &[&day])
            .await
            .map_err(pg_err)?;
        names.push(row.get(0));
    }
    Ok(names)
}

/// Gives `role` what the application needs and nothing more: `SELECT` and `INSERT`, never
/// `UPDATE`, `DELETE` or `TRUNCATE`. Run as the owner after [`migrate`].
pub async fn grant_append_only(pool: &Pool, role: &str) -> Result<()> {
    if !role.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') || role.is_empty() {
        return Err(AuditError::Config(format!(
            "{role:?} is not a plain role name"
        )));
    }
    let c = client(pool).await?;
    c.batch_execute(&format!(
        "GRANT SELECT, INSERT ON audit_events, audit_checkpoints TO {role};
         REVOKE UPDATE, DELETE, TRUNCATE ON audit_events, audit_checkpoints FROM {role};"
    ))
    .await
    .map_err(pg_err)
}

/// One `COPY ... FROM STDIN BINARY` of `events` inside `tx`.
pub async fn copy_events(
    tx: &tokio_postgres::Transaction<'_>,
    events: &[AuditEvent],
) -> std::result::Result<u64, tokio_postgres::Error> {
    let copy = tx
        .prepare(&format!("COPY audit_events ({COLUMNS}) FROM STDIN BINARY"))
        .await?;
    write_copy(tx.client(), &copy, events).await
}

/// A connection inside a transaction this store opened by hand.
struct OpenTransaction(Option<deadpool_postgres::Object>);

impl OpenTransaction {
    /// The transaction ended cleanly: the connection goes back to the pool.
    fn release(mut self) {
        self.0.take();
    }
}

impl Drop for OpenTransaction {
    fn drop(&mut self) {
        if let Some(obj) = self.0.take() {
            // Detached from the pool and dropped: the connection closes, the server rolls back.
            drop(deadpool_postgres::Object::take(obj));
        }
    }
}

/// Streams `events` through the prepared `COPY` statement `copy`.
async fn write_copy(
    client: &tokio_postgres::Client,
    copy: &tokio_postgres::Statement,
    events: &[AuditEvent],
) -> std::result::Result<u64, tokio_postgres::Error> {
    let sink = client.copy_in(copy).await?;
    let writer = BinaryCopyInWriter::new(sink, &TYPES);
    pin_mut!(writer);
    write_rows(writer.as_mut(), events).await?;
    writer.finish().await
}

/// Writes one `COPY` row per event, in [`COLUMNS`] order.
async fn write_rows(
    mut writer: std::pin::Pin<&mut BinaryCopyInWriter>,
    events: &[AuditEvent],
) -> std::result::Result<(), tokio_postgres::Error> {
    for e in events {
        let role = e.actor.role.map(|r| r.as_str());
        let status = e.outcome.status.map(i32::from);
        let payload = e.payload.as_ref().map(Json);
        let row: [&(dyn ToSql + Sync); 25] = [
            &e.id,
            &e.stream,
            &e.seq,
            &e.prev_hash,
            &e.hash,
            &e.occurred_at,
            &e.recorded_at,
            &e.actor.api_key_id,
            &e.actor.key_name,
            &e.actor.tenant_id,
            &role,
            &e.method,
            &e.route,
            &e.path,
            &e.action.as_str(),
            &e.resource_type,
            &e.resource_id,
            &e.outcome.result.as_str(),
            &status,
            &e.request_id,
            &e.correlation_id,
            &e.trace_id,
            &e.source_ip,
            &e.user_agent,
            &payload,
        ];
        writer.as_mut().write(&row).await?;
    }
    Ok(())
}

fn decode(row: &Row) -> Result<AuditEvent> {
    let role: Option<String> = row.get(10);
    let outcome: String = row.get(17);
    let status: Option<i32> = row.get(18);
    let payload: Option<Json<serde_json::Value>> = row.get(24);
    Ok(AuditEvent {
        id: row.get(0),
        stream: row.get(1),
        seq: row.get(2),
        prev_hash: row.get(3),
        hash: row.get(4),
        occurred_at: row.get(5),
        recorded_at: row.get(6),
        actor: Actor {
            api_key_id: row.get(7),
            key_name: row.get(8),
            tenant_id: row.get(9),
            role: role
                .map(|r| r.parse().map_err(|e| AuditError::Corrupt(format!("{e}"))))
                .transpose()?,
        },
        method: row.get(11),
        route: row.get(12),
        path: row.get(13),
        action: Action::parse(row.get(14)),
        resource_type: row.get(15),
        resource_id: row.get(16),
        outcome: Outcome {
            result: OutcomeResult::parse(&outcome)
                .ok_or_else(|| AuditError::Corrupt(format!("unknown outcome {outcome:?}")))?,
            status: status.and_then(|s| u16::try_from(s).ok()),
        },
        request_id: row.get(19),
        correlation_id: row.get(20),
        trace_id: row.get(21),
        source_ip: row.get(22),
        user_agent: row.get(23),
        payload: payload.map(|j| j.0),
    })
}

fn decode_checkpoint(row: &Row) -> Checkpoint {
    Checkpoint {
        stream: row.get(0),
        number: row.get(1),
        from_seq: row.get(2),
        to_seq: row.get(3),
        head_hash: row.get(4),
        prev_signature: row.get(5),
        created_at: row.get(6),
        public_key: row.get(7),
        signature: row.get(8),
    }
}

/// Audit events in PostgreSQL.
#[derive(Debug, Clone)]
pub struct PostgresStore {
    pool: Pool,
}

impl PostgresStore {
    /// A store over `pool`; call [`migrate`] first.
    pub fn new(pool: Pool) -> Self {
        Self { pool }
    }

    /// The pool.
    pub fn pool(&self) -> &Pool {
        &self.pool
    }

    /// One durable transaction holding one binary `COPY`, in two round trips: `BEGIN` and
    /// `SET LOCAL` pipelined with the start of the `COPY` (its statement prepared once per
    /// connection), then the end of the data pipelined with `COMMIT`. A failed `COPY` leaves the
    /// transaction aborted, so the pipelined `COMMIT` rolls back; the `COPY`'s own result decides.
    async fn copy_once(&self, events: &[AuditEvent]) -> std::result::Result<(), CopyError> {
        let obj = self.pool.get().await.map_err(|e| match e {
            deadpool_postgres::PoolError::Backend(e) => CopyError::Pg(e),
            other => CopyError::Pool(other.to_string()),
        })?;
        // Until the transaction ends cleanly the connection may hold an open transaction: if
        // this future fails or is dropped (write timeout), the guard closes the connection
        // instead of returning it to the pool.
        let guard = OpenTransaction(Some(obj));
        if let Some(c) = &guard.0 {
            let copy = c
                .prepare_cached(&format!("COPY audit_events ({COLUMNS}) FROM STDIN BINARY"))
                .await?;
            let (begun, sink) = futures_util::future::join(
                c.batch_execute("BEGIN; SET LOCAL synchronous_commit TO on"),
                c.copy_in(&copy),
            )
            .await;
            begun?;
            let writer = BinaryCopyInWriter::new(sink?, &TYPES);
            pin_mut!(writer);
            write_rows(writer.as_mut(), events).await?;
            let (copied, committed) =
                futures_util::future::join(writer.finish(), c.batch_execute("COMMIT")).await;
            copied?;
            committed?;
        }
        guard.release();
        Ok(())
    }

    /// Partitions whose whole range ends at or before `cutoff`, oldest first: `(name, upper bound)`.
    pub async fn partitions_before(
        &self,
        cutoff: DateTime<Utc>,
    ) -> Result<Vec<(String, DateTime<Utc>)>> {
        let c = client(&self.pool).await?;
        let rows = c
            .query(
                "SELECT c.relname::text, pg_get_expr(c.relpartbound, c.oid) FROM pg_inherits i \
                 JOIN pg_class c ON c.oid = i.inhrelid WHERE i.inhparent = 'audit_events'::regclass \
                 ORDER BY 1",
                &[],
            )
            .await
            .map_err(pg_err)?;
        let mut out = Vec::new();
        for r in rows {
            let name: String = r.get(0);
            let bound: String = r.get(1);
            // FOR VALUES FROM ('2026-01-01 00:00:00+00') TO ('2026-02-01 00:00:00+00')
            let upper = bound
                .rsplit("TO ('")
                .next()
                .and_then(|s| s.split('\'').next())
                .and_then(|s| {
                    DateTime::parse_from_str(&format!("{s}00"), "%Y-%m-%d %H:%M:%S%z").ok()
                })
                .map(|d| d.to_utc());
            if let Some(upper) = upper
                && upper <= cutoff
            {
                out.push((name, upper));
            }
        }
        Ok(out)
    }

    /// For each stream in partition `name`: its last sequence number and hash there.
    pub async fn partition_heads(&self, name: &str) -> Result<Vec<(String, i64, String)>> {
        let c = client(&self.pool).await?;
        let rows = c
            .query(
                &format!(
                    "SELECT DISTINCT ON (stream) stream, seq, hash FROM \"{}\" ORDER BY stream, seq DESC",
                    name.replace('"', "")
                ),
                &[],
            )
            .await
            .map_err(pg_err)?;
        Ok(rows
            .iter()
            .map(|r| (r.get(0), r.get(1), r.get(2)))
            .collect())
    }

    /// Detaches and drops one partition (needs the table owner's rights).
    pub async fn drop_partition(&self, name: &str) -> Result<()> {
        let c = client(&self.pool).await?;
        let name = name.replace('"', "");
        c.batch_execute(&format!(
            "ALTER TABLE audit_events DETACH PARTITION \"{name}\"; DROP TABLE \"{name}\";"
        ))
        .await
        .map_err(pg_err)
    }
}

/// Why one COPY attempt failed.
enum CopyError {
    Pool(String),
    Pg(tokio_postgres::Error),
}

impl From<tokio_postgres::Error> for CopyError {
    fn from(e: tokio_postgres::Error) -> Self {
        CopyError::Pg(e)
    }
}

impl CopyError {
    fn code(&self) -> Option<&SqlState> {
        match self {
            CopyError::Pg(e) => e.code(),
            CopyError::Pool(_) => None,
        }
    }

    fn into_audit(self) -> AuditError {
        match self {
            CopyError::Pg(e) => pg_err(e),
            CopyError::Pool(e) => err(format!(
                "cannot get a PostgreSQL connection: {e}; is it running? check DATABASE_URL"
            )),
        }
    }
}

impl AuditStore for PostgresStore {
    fn backend(&self) -> &'static str {
        BACKEND
    }

    fn is_durable(&self) -> bool {
        true
    }

    fn append<'a>(&'a self, events: &'a [AuditEvent]) -> StoreFuture<'a, ()> {
        Box::pin(async move {
            if events.is_empty() {
                return Ok(());
            }
            match self.copy_once(events).await {
                Ok(()) => Ok(()),
                Err(e) if e.code() == Some(&SqlState::UNIQUE_VIOLATION) => {
                    let ids: Vec<Uuid> = events.iter().map(|e| e.id).collect();
                    let have = self.existing_ids(&ids).await?;
                    let rest: Vec<AuditEvent> = events
                        .iter()
                        .filter(|e| !have.contains(&e.id))
                        .cloned()
                        .collect();
                    if rest.is_empty() {
                        return Ok(());
                    }
                    self.copy_once(&rest).await.map_err(CopyError::into_audit)
                }
                Err(e) if e.code() == Some(&SqlState::CHECK_VIOLATION) => {
                    // No partition for this month yet: create it (needs CREATE rights) and retry once.
                    for e in events {
                        ensure_partitions(&self.pool, e.recorded_at, 1).await?;
                    }
                    self.copy_once(events).await.map_err(CopyError::into_audit)
                }
                Err(e) => Err(e.into_audit()),
            }
        })
    }

    fn append_checkpoint<'a>(&'a self, cp: &'a Checkpoint) -> StoreFuture<'a, ()> {
        Box::pin(async move {
            let c = client(&self.pool).await?;
            c.execute(
                "INSERT INTO audit_checkpoints (stream, number, from_seq, to_seq, head_hash, prev_signature, \
                 created_at, public_key, signature) VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9) \
                 ON CONFLICT (stream, number) DO NOTHING",
                &[
                    &cp.stream,
                    &cp.number,
                    &cp.from_seq,
                    &cp.to_seq,
                    &cp.head_hash,
                    &cp.prev_signature,
                    &cp.created_at,
                    &cp.public_key,
                    &cp.signature,
                ],
            )
            .await
            .map_err(pg_err)?;
            Ok(())
        })
    }

    fn get(&self, id: Uuid) -> StoreFuture<'_, Option<AuditEvent>> {
        Box::pin(async move {
            let c = client(&self.pool).await?;
            let row = c
                .query_opt(
                    &format!("SELECT {COLUMNS} FROM audit_events WHERE id = $1"),
                    &[&id],
                )
                .await
                .map_err(pg_err)?;
            row.as_ref().map(decode).transpose()
        })
    }

    fn query<'a>(&'a self, q: &'a EventQuery) -> StoreFuture<'a, Page> {
        Box::pin(async move {
            let limit = check_limit(q.limit)?;
            let mut sql = format!("SELECT {COLUMNS} FROM audit_events WHERE true");
            let mut args: Vec<Box<dyn ToSql + Sync + Send>> = Vec::new();
            let mut add = |clause: &str, v: Box<dyn ToSql + Sync + Send>, sql: &mut String| {
                args.push(v);
                sql.push_str(&format!(" AND {clause} ${}", args.len()));
            };
            if let Some(f) = q.from {
                add("recorded_at >=", Box::new(f), &mut sql);
            }
            if let Some(t) = q.to {
                add("recorded_at <", Box::new(t), &mut sql);
            }
            for (col, v) in [
                ("actor_api_key_id =", &q.api_key_id),
                ("tenant_id =", &q.tenant_id),
                ("action =", &q.action),
                ("resource_type =", &q.resource_type),
                ("resource_id =", &q.resource_id),
                ("correlation_id =", &q.correlation_id),
            ] {
                if let Some(v) = v {
                    add(col, Box::new(v.clone()), &mut sql);
                }
            }
            if let Some(o) = q.outcome {
                add("outcome =", Box::new(o.as_str().to_owned()), &mut sql);
            }
            if let Some(c) = q.cursor {
                args.push(Box::new(c.recorded_at()));
                args.push(Box::new(c.id));
                sql.push_str(&format!(
                    " AND (recorded_at, id) < (${}, ${})",
                    args.len() - 1,
                    args.len()
                ));
            }
            sql.push_str(&format!(
                " ORDER BY recorded_at DESC, id DESC LIMIT {}",
                limit + 1
            ));
            let c = client(&self.pool).await?;
            let params: Vec<&(dyn ToSql + Sync)> = args
                .iter()
                .map(|a| a.as_ref() as &(dyn ToSql + Sync))
                .collect();
            let rows = c.query(&sql, &params).await.map_err(pg_err)?;
            let events = rows.iter().map(decode).collect::<Result<Vec<_>>>()?;
            Ok(page_from(events, limit))
        })
    }

    fn stream_events<'a>(
        &'a self,
        stream: &'a str,
        after_seq: i64,
        limit: usize,
    ) -> StoreFuture<'a, Vec<AuditEvent>> {
        Box::pin(async move {
            let c = client(&self.pool).await?;
            let rows = c
                .query(
                    &format!(
                        "SELECT {COLUMNS} FROM audit_events WHERE stream = $1 AND seq > $2 ORDER BY seq LIMIT $3"
                    ),
                    &[&stream, &after_seq, &(limit as i64)],
                )
                .await
                .map_err(pg_err)?;
            rows.iter().map(decode).collect()
        })
    }

    fn streams(&self) -> StoreFuture<'_, Vec<String>> {
        Box::pin(async move {
            let c = client(&self.pool).await?;
            let rows = c
                .query(
                    "SELECT stream FROM audit_events UNION SELECT stream FROM audit_checkpoints ORDER BY 1",
                    &[],
                )
                .await
                .map_err(pg_err)?;
            Ok(rows.iter().map(|r| r.get(0)).collect())
        })
    }

    fn checkpoints<'a>(&'a self, stream: &'a str) -> StoreFuture<'a, Vec<Checkpoint>> {
        Box::pin(async move {
            let c = client(&self.pool).await?;
            let rows = c
                .query(
                    "SELECT stream, number, from_seq, to_seq, head_hash, prev_signature, created_at, public_key, \
                     signature FROM audit_checkpoints WHERE stream = $1 ORDER BY number",
                    &[&stream],
                )
                .await
                .map_err(pg_err)?;
            Ok(rows.iter().map(decode_checkpoint).collect())
        })
    }

    fn maintain(&self, now: DateTime<Utc>) -> StoreFuture<'_, ()> {
        Box::pin(async move { ensure_partitions(&self.pool, now, 3).await.map(|_| ()) })
    }

    fn existing_ids<'a>(&'a self, ids: &'a [Uuid]) -> StoreFuture<'a, HashSet<Uuid>> {
        Box::pin(async move {
            let c = client(&self.pool).await?;
            let rows = c
                .query("SELECT id FROM audit_events WHERE id = ANY($1)", &[&ids])
                .await
                .map_err(pg_err)?;
            Ok(rows.iter().map(|r| r.get(0)).collect())
        })
    }
}
