//! [`PostgresKeyStore`]: API keys in PostgreSQL, shared by every replica.

use chrono::{DateTime, Utc};
use futures_util::future::BoxFuture;

use super::{ApiKeyRecord, ApiKeyStore, KeyStoreError, RevokeOutcome, parse_role};

/// Keys in the `api_keys` table.
#[derive(Debug, Clone)]
pub struct PostgresKeyStore {
    pool: deadpool_postgres::Pool,
}

impl PostgresKeyStore {
    /// A store over `pool` (migrated by the server).
    pub fn new(pool: deadpool_postgres::Pool) -> Self {
        Self { pool }
    }
}

fn backend(e: impl std::fmt::Display) -> KeyStoreError {
    KeyStoreError::Backend {
        backend: "postgres",
        reason: e.to_string(),
    }
}

const COLUMNS: &str = "id, name, tenant_id, role, secret_hash, created_at, revoked_at";

fn row_to_record(row: &tokio_postgres::Row) -> ApiKeyRecord {
    let role: String = row.get(3);
    ApiKeyRecord {
        id: row.get(0),
        name: row.get(1),
        tenant_id: row.get(2),
        role: parse_role(&role),
        secret_hash: row.get(4),
        created_at: row.get(5),
        revoked_at: row.get(6),
    }
}

impl ApiKeyStore for PostgresKeyStore {
    fn insert(&self, record: ApiKeyRecord) -> BoxFuture<'_, Result<(), KeyStoreError>> {
        Box::pin(async move {
            let conn = self.pool.get().await.map_err(backend)?;
            conn.execute(
                &format!("INSERT INTO api_keys ({COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7)"),
                &[
                    &record.id,
                    &record.name,
                    &record.tenant_id,
                    &record.role.as_str(),
                    &record.secret_hash,
                    &record.created_at,
                    &record.revoked_at,
                ],
            )
            .await
            .map(|_| ())
            .map_err(|e| {
                if e.code() == Some(&tokio_postgres::error::SqlState::UNIQUE_VIOLATION) {
                    KeyStoreError::Duplicate(record.id.clone())
                } else {
                    backend(e)
                }
            })
        })
    }

    fn get<'a>(
        &'a self,
        id: &'a str,
    ) -> BoxFuture<'a, Result<Option<ApiKeyRecord>, KeyStoreError>> {
        Box::pin(async move {
            let conn = self.pool.get().await.map_err(backend)?;
            let row = conn
                .query_opt(
                    &format!("SELECT {COLUMNS} FROM api_keys WHERE id = $1"),
                    &[&id],
                )
                .await
                .map_err(backend)?;
            Ok(row.as_ref().map(row_to_record))
        })
    }

    fn list(&self) -> BoxFuture<'_, Result<Vec<ApiKeyRecord>, KeyStoreError>> {
        Box::pin(async move {
            let conn = self.pool.get().await.map_err(backend)?;
            let rows = conn
                .query(
                    &format!("SELECT {COLUMNS} FROM api_keys ORDER BY created_at, id"),
                    &[],
                )
                .await
                .map_err(backend)?;
            Ok(rows.iter().map(row_to_record).collect())
        })
    }

    fn revoke<'a>(
        &'a self,
        id: &'a str,
        at: DateTime<Utc>,
    ) -> BoxFuture<'a, Result<RevokeOutcome, KeyStoreError>> {
        Box::pin(async move {
            let conn = self.pool.get().await.map_err(backend)?;
            // One statement decides the outcome, so concurrent revokes cannot both report `Revoked`.
            let row = conn
                .query_one(
                    "WITH k AS (SELECT revoked_at FROM api_keys WHERE id = $1), \
                     u AS (UPDATE api_keys SET revoked_at = $2 WHERE id = $1 AND revoked_at IS NULL RETURNING 1) \
                     SELECT (SELECT count(*) FROM k), (SELECT count(*) FROM u)",
                    &[&id, &at],
                )
                .await
                .map_err(backend)?;
            let (exists, updated): (i64, i64) = (row.get(0), row.get(1));
            Ok(match (exists, updated) {
                (0, _) => RevokeOutcome::NotFound,
                (_, 1) => RevokeOutcome::Revoked,
                _ => RevokeOutcome::AlreadyRevoked,
            })
        })
    }
}
