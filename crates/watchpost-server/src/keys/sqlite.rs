//! [`SqliteKeyStore`]: API keys in the embedded SQLite store; every query runs inside `interact`
//! (a blocking thread), never on the async runtime.

use chrono::{DateTime, Utc};
use futures_util::future::BoxFuture;
use rusqlite::OptionalExtension;

use super::{ApiKeyRecord, ApiKeyStore, KeyStoreError, RevokeOutcome, parse_role};

/// Keys in the `api_keys` table of the SQLite file.
#[derive(Debug, Clone)]
pub struct SqliteKeyStore {
    pool: deadpool_sqlite::Pool,
}

impl SqliteKeyStore {
    /// A store over `pool` (migrated by the server).
    pub fn new(pool: deadpool_sqlite::Pool) -> Self {
        Self { pool }
    }

    async fn run<T, F>(&self, f: F) -> Result<T, KeyStoreError>
    where
        T: Send + 'static,
        F: FnOnce(&mut rusqlite::Connection) -> Result<T, KeyStoreError> + Send + 'static,
    {
        let conn = self.pool.get().await.map_err(backend)?;
        conn.interact(f).await.map_err(backend)?
    }
}

fn backend(e: impl std::fmt::Display) -> KeyStoreError {
    KeyStoreError::Backend {
        backend: "sqlite",
        reason: e.to_string(),
    }
}

const COLUMNS: &str = "id, name, tenant_id, role, secret_hash, created_at, revoked_at";

fn row_to_record(row: &rusqlite::Row<'_>) -> rusqlite::Result<ApiKeyRecord> {
    let role: String = row.get(3)?;
    Ok(ApiKeyRecord {
        id: row.get(0)?,
        name: row.get(1)?,
        tenant_id: row.get(2)?,
        role: parse_role(&role),
        secret_hash: row.get(4)?,
        created_at: row.get(5)?,
        revoked_at: row.get(6)?,
    })
}

impl ApiKeyStore for SqliteKeyStore {
    fn insert(&self, record: ApiKeyRecord) -> BoxFuture<'_, Result<(), KeyStoreError>> {
        Box::pin(self.run(move |c| {
            c.execute(
                &format!("INSERT INTO api_keys ({COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)"),
                rusqlite::params![
                    record.id,
                    record.name,
                    record.tenant_id,
                    record.role.as_str(),
                    record.secret_hash,
                    record.created_at,
                    record.revoked_at
                ],
            )
            .map(|_| ())
            .map_err(|e| match e {
                rusqlite::Error::SqliteFailure(f, _)
                    if f.code == rusqlite::ErrorCode::ConstraintViolation =>
                {
                    KeyStoreError::Duplicate(record.id.clone())
                }
                other => backend(other),
            })
        }))
    }

    fn get<'a>(
        &'a self,
        id: &'a str,
    ) -> BoxFuture<'a, Result<Option<ApiKeyRecord>, KeyStoreError>> {
        let id = id.to_owned();
        Box::pin(self.run(move |c| {
            c.query_row(
                &format!("SELECT {COLUMNS} FROM api_keys WHERE id = ?1"),
                [id],
                row_to_record,
            )
            .optional()
            .map_err(backend)
        }))
    }

    fn list(&self) -> BoxFuture<'_, Result<Vec<ApiKeyRecord>, KeyStoreError>> {
        Box::pin(self.run(|c| {
            let mut stmt = c
                .prepare(&format!(
                    "SELECT {COLUMNS} FROM api_keys ORDER BY created_at, id"
                ))
                .map_err(backend)?;
            let rows = stmt.query_map([], row_to_record).map_err(backend)?;
            rows.collect::<Result<Vec<_>, _>>().map_err(backend)
        }))
    }

    fn revoke<'a>(
        &'a self,
        id: &'a str,
        at: DateTime<Utc>,
    ) -> BoxFuture<'a, Result<RevokeOutcome, KeyStoreError>> {
        let id = id.to_owned();
        Box::pin(self.run(move |c| {
            let changed = c
                .execute(
                    "UPDATE api_keys SET revoked_at = ?2 WHERE id = ?1 AND revoked_at IS NULL",
                    rusqlite::params![id, at],
                )
                .map_err(backend)?;
            if changed == 1 {
                return Ok(RevokeOutcome::Revoked);
            }
            let exists: Option<i64> = c
                .query_row("SELECT 1 FROM api_keys WHERE id = ?1", [&id], |r| r.get(0))
                .optional()
                .map_err(backend)?;
            Ok(if exists.is_some() {
                RevokeOutcome::AlreadyRevoked
            } else {
                RevokeOutcome::NotFound
            })
        }))
    }
}
