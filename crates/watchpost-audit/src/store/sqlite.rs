//! `SqliteStore`: events in an SQLite file (WAL mode), every call inside `deadpool_sqlite`'s `interact`.

use std::collections::HashSet;

use deadpool_sqlite::Pool;
use rusqlite::{OptionalExtension, params, params_from_iter, types::Value as SqlValue};
use uuid::Uuid;

use super::{AuditStore, EventQuery, Page, StoreFuture, check_limit, page_from};
use crate::checkpoint::Checkpoint;
use crate::error::{AuditError, Result};
use crate::event::AuditEvent;

mod embedded {
    refinery::embed_migrations!("migrations/sqlite");
}

/// The refinery history table this crate uses.
pub const MIGRATION_TABLE: &str = "watchpost_audit_migrations";

const BACKEND: &str = "sqlite";

fn err(e: impl std::fmt::Display) -> AuditError {
    AuditError::store(BACKEND, e)
}

async fn run<T: Send + 'static>(
    pool: &Pool,
    f: impl FnOnce(&mut rusqlite::Connection) -> rusqlite::Result<T> + Send + 'static,
) -> Result<T> {
    let conn = pool
        .get()
        .await
        .map_err(|e| err(format!("cannot open the SQLite database: {e}")))?;
    conn.interact(f)
        .await
        .map_err(|e| err(format!("SQLite worker failed: {e}")))?
        .map_err(err)
}

/// Applies this crate's migrations (history in [`MIGRATION_TABLE`]) and turns on WAL mode.
pub async fn migrate(pool: &Pool) -> Result<()> {
    let conn = pool
        .get()
        .await
        .map_err(|e| err(format!("cannot open the SQLite database: {e}")))?;
    conn.interact(|c| {
        c.pragma_update(None, "journal_mode", "WAL")
            .map_err(|e| e.to_string())?;
        let mut runner = embedded::migrations::runner();
        runner.set_migration_table_name(MIGRATION_TABLE);
        runner.run(c).map(|_| ()).map_err(|e| e.to_string())
    })
    .await
    .map_err(|e| AuditError::Migration {
        backend: BACKEND,
        message: e.to_string(),
    })?
    .map_err(|message| AuditError::Migration {
        backend: BACKEND,
        message,
    })
}

/// Audit events in SQLite.
#[derive(Debug, Clone)]
pub struct SqliteStore {
    pool: Pool,
}

impl SqliteStore {
    /// A store over `pool`; call [`migrate`] first.
    pub fn new(pool: Pool) -> Self {
        Self { pool }
    }

    /// Opens (creating when absent) the database file at `path` with WAL mode and runs the migrations.
    pub async fn open(path: impl AsRef<std::path::Path>) -> Result<Self> {
        let cfg = deadpool_sqlite::Config::new(path.as_ref());
        let pool = cfg
            .create_pool(deadpool_sqlite::Runtime::Tokio1)
            .map_err(|e| err(format!("cannot open {}: {e}", path.as_ref().display())))?;
        migrate(&pool).await?;
        Ok(Self::new(pool))
    }

    /// The pool.
    pub fn pool(&self) -> &Pool {
        &self.pool
    }
}

fn decode(body: &str) -> rusqlite::Result<AuditEvent> {
    serde_json::from_str(body).map_err(|e| {
        rusqlite::Error::FromSqlConversionFailure(0, rusqlite::types::Type::Text, Box::new(e))
    })
}

impl AuditStore for SqliteStore {
    fn backend(&self) -> &'static str {
        BACKEND
    }

    fn is_durable(&self) -> bool {
        true
    }

    fn append<'a>(&'a self, events: &'a [AuditEvent]) -> StoreFuture<'a, ()> {
        let rows: Vec<(AuditEvent, String)> = events
            .iter()
            .map(|e| (e.clone(), serde_json::to_string(e).unwrap_or_default()))
            .collect();
        Box::pin(run(&self.pool, move |c| {
            let tx = c.transaction()?;
            {
                let mut st = tx.prepare_cached(
                    "INSERT OR IGNORE INTO audit_events (id, stream, seq, recorded_at, tenant_id, api_key_id, action, \
                     resource_type, resource_id, outcome, correlation_id, body) \
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)",
                )?;
                for (e, body) in &rows {
                    st.execute(params![
                        e.id.to_string(),
                        e.stream,
                        e.seq,
                        e.recorded_at.timestamp_micros(),
                        e.actor.tenant_id,
                        e.actor.api_key_id,
                        e.action.as_str(),
                        e.resource_type,
                        e.resource_id,
                        e.outcome.result.as_str(),
                        e.correlation_id,
                        body,
                    ])?;
                }
            }
            tx.commit()
        }))
    }

    fn append_checkpoint<'a>(&'a self, cp: &'a Checkpoint) -> StoreFuture<'a, ()> {
        let (stream, number) = (cp.stream.clone(), cp.number);
        let body = serde_json::to_string(cp).unwrap_or_default();
        Box::pin(run(&self.pool, move |c| {
            c.execute(
                "INSERT OR IGNORE INTO audit_checkpoints (stream, number, body) VALUES (?1, ?2, ?3)",
                params![stream, number, body],
            )
            .map(|_| ())
        }))
    }

    fn get(&self, id: Uuid) -> StoreFuture<'_, Option<AuditEvent>> {
        Box::pin(run(&self.pool, move |c| {
            let body: Option<String> = c
                .query_row(
                    "SELECT body FROM audit_events WHERE id = ?1",
                    [id.to_string()],
                    |r| r.get(0),
                )
                .optional()?;
            body.as_deref().map(decode).transpose()
        }))
    }

    fn query<'a>(&'a self, q: &'a EventQuery) -> StoreFuture<'a, Page> {
        let q = q.clone();
        Box::pin(async move {
            let limit = check_limit(q.limit)?;
            let mut sql = String::from("SELECT body FROM audit_events WHERE 1=1");
            let mut args: Vec<SqlValue> = Vec::new();
            let mut add = |clause: &str, v: SqlValue| {
                args.push(v);
                sql.push_str(&format!(" AND {clause} ?{}", args.len()));
            };
            if let Some(f) = q.from {
                add("recorded_at >=", SqlValue::Integer(f.timestamp_micros()));
            }
            if let Some(t) = q.to {
                add("recorded_at <", SqlValue::Integer(t.timestamp_micros()));
            }
            for (col, v) in [
                ("api_key_id =", &q.api_key_id),
                ("tenant_id =", &q.tenant_id),
                ("action =", &q.action),
                ("resource_type =", &q.resource_type),
                ("resource_id =", &q.resource_id),
                ("correlation_id =", &q.correlation_id),
            ] {
                if let Some(v) = v {
                    add(col, SqlValue::Text(v.clone()));
                }
            }
            if let Some(o) = q.outcome {
                add("outcome =", SqlValue::Text(o.as_str().to_owned()));
            }
            if let Some(c) = q.cursor {
                args.push(SqlValue::Integer(c.recorded_at_micros));
                args.push(SqlValue::Text(c.id.to_string()));
                sql.push_str(&format!(
                    " AND (recorded_at < ?{a} OR (recorded_at = ?{a} AND id < ?{b}))",
                    a = args.len() - 1,
                    b = args.len()
                ));
            }
            sql.push_str(&format!(
                " ORDER BY recorded_at DESC, id DESC LIMIT {}",
                limit + 1
            ));
            let rows = run(&self.pool, move |c| {
                let mut st = c.prepare(&sql)?;
                let rows = st.query_map(params_from_iter(args), |r| r.get::<_, String>(0))?;
                rows.map(|r| r.and_then(|b| decode(&b)))
                    .collect::<rusqlite::Result<Vec<_>>>()
            })
            .await?;
            Ok(page_from(rows, limit))
        })
    }

    fn stream_events<'a>(
        &'a self,
        stream: &'a str,
        after_seq: i64,
        limit: usize,
    ) -> StoreFuture<'a, Vec<AuditEvent>> {
        let stream = stream.to_owned();
        Box::pin(run(&self.pool, move |c| {
            let mut st = c.prepare_cached(
                "SELECT body FROM audit_events WHERE stream = ?1 AND seq > ?2 ORDER BY seq LIMIT ?3",
            )?;
            let rows = st.query_map(params![stream, after_seq, limit as i64], |r| {
                r.get::<_, String>(0)
            })?;
            rows.map(|r| r.and_then(|b| decode(&b))).collect()
        }))
    }

    fn streams(&self) -> StoreFuture<'_, Vec<String>> {
        Box::pin(run(&self.pool, |c| {
            let mut st = c.prepare(
                "SELECT stream FROM audit_events UNION SELECT stream FROM audit_checkpoints ORDER BY 1",
            )?;
            let rows = st.query_map([], |r| r.get(0))?;
            rows.collect()
        }))
    }

    fn checkpoints<'a>(&'a self, stream: &'a str) -> StoreFuture<'a, Vec<Checkpoint>> {
        let stream = stream.to_owned();
        Box::pin(async move {
            let bodies: Vec<String> = run(&self.pool, move |c| {
                let mut st = c.prepare_cached(
                    "SELECT body FROM audit_checkpoints WHERE stream = ?1 ORDER BY number",
                )?;
                let rows = st.query_map([stream], |r| r.get(0))?;
                rows.collect()
            })
            .await?;
            bodies
                .iter()
                .map(|b| {
                    serde_json::from_str(b)
                        .map_err(|e| AuditError::Corrupt(format!("checkpoint: {e}")))
                })
                .collect()
        })
    }

    fn existing_ids<'a>(&'a self, ids: &'a [Uuid]) -> StoreFuture<'a, HashSet<Uuid>> {
        let ids: Vec<String> = ids.iter().map(Uuid::to_string).collect();
        Box::pin(run(&self.pool, move |c| {
            let mut st = c.prepare_cached("SELECT 1 FROM audit_events WHERE id = ?1")?;
            let mut found = HashSet::new();
            for id in ids {
                if st.exists([&id])? {
                    found.insert(Uuid::parse_str(&id).unwrap_or_default());
                }
            }
            Ok(found)
        }))
    }
}
