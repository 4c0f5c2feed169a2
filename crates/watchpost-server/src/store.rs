//! The store backends the server opens and hands to the crates: embedded SQLite, pooled PostgreSQL, or memory.
//!
//! The server owns the pools; each crate owns its schema and migrations. [`Stores::migrate`] runs
//! every migration set in one place (at start and in `watchpost migrate`); on PostgreSQL it holds an
//! advisory lock so that replicas starting together do not race.

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::config::{Config, StoreKind, redact_url};

#[allow(unreachable_pub)] // refinery generates `pub` items inside this private module.
mod sqlite_migrations {
    refinery::embed_migrations!("migrations/sqlite");
}

#[allow(unreachable_pub)] // refinery generates `pub` items inside this private module.
mod postgres_migrations {
    refinery::embed_migrations!("migrations/postgres");
}

/// The history table of the server's own migrations (each crate uses its own table).
const MIGRATION_TABLE: &str = "watchpost_server_migrations";

/// An arbitrary, fixed key for `pg_advisory_lock` around migrations ("wpmigrat" in ASCII).
const MIGRATION_LOCK_KEY: i64 = 0x7770_6d69_6772_6174;

/// Why the stores could not be opened or migrated.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The data dir cannot be created or written.
    #[error(
        "WATCHPOST_DATA_DIR {path} is not usable: {reason}; point WATCHPOST_DATA_DIR at a writable directory"
    )]
    DataDir {
        /// The directory.
        path: PathBuf,
        /// What failed.
        reason: String,
    },
    /// The SQLite file cannot be opened.
    #[error("cannot open the SQLite store at {path}: {reason}")]
    Sqlite {
        /// The file.
        path: PathBuf,
        /// What failed.
        reason: String,
    },
    /// PostgreSQL cannot be reached.
    #[error(
        "cannot connect to PostgreSQL at {target}: {reason}; is it running? check DATABASE_URL"
    )]
    Postgres {
        /// The redacted URL.
        target: String,
        /// What failed.
        reason: String,
    },
    /// A migration failed.
    #[error("migration of the {backend} store failed: {reason}")]
    Migration {
        /// Which backend.
        backend: &'static str,
        /// What failed.
        reason: String,
    },
}

/// The opened store backend with its pool.
#[derive(Clone)]
pub struct Stores {
    /// Which backend is in use.
    pub kind: StoreKind,
    /// The SQLite pool, for the sqlite store.
    pub sqlite: Option<deadpool_sqlite::Pool>,
    /// The PostgreSQL pool, for the postgres store.
    pub postgres: Option<deadpool_postgres::Pool>,
    /// The data directory (always created for sqlite; created on demand otherwise).
    pub data_dir: PathBuf,
}

impl std::fmt::Debug for Stores {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Stores")
            .field("kind", &self.kind)
            .field("data_dir", &self.data_dir)
            .finish_non_exhaustive()
    }
}

/// Creates `dir` and proves it is writable.
pub fn ensure_data_dir(dir: &Path) -> Result<(), StoreError> {
    let fail = |reason: String| StoreError::DataDir {
        path: dir.to_owned(),
        reason,
    };
    std::fs::create_dir_all(dir).map_err(|e| fail(e.to_string()))?;
    let probe = dir.join(".watchpost-write-probe");
    std::fs::write(&probe, b"ok").map_err(|e| fail(format!("cannot write a file there: {e}")))?;
    std::fs::remove_file(&probe).map_err(|e| fail(e.to_string()))?;
    Ok(())
}

impl Stores {
    /// Opens the configured backend and checks that it answers.
    pub async fn open(config: &Config) -> Result<Self, StoreError> {
        match config.store {
            StoreKind::Memory => Ok(Self {
                kind: StoreKind::Memory,
                sqlite: None,
                postgres: None,
                data_dir: config.data_dir.clone(),
            }),
            StoreKind::Sqlite => {
                ensure_data_dir(&config.data_dir)?;
                let path = config.data_dir.join("watchpost.db");
                let pool = open_sqlite(&path, config.database_pool_size).await?;
                Ok(Self {
                    kind: StoreKind::Sqlite,
                    sqlite: Some(pool),
                    postgres: None,
                    data_dir: config.data_dir.clone(),
                })
            }
            StoreKind::Postgres => {
                let url = config
                    .database_url
                    .as_deref()
                    .expect("config validation requires DATABASE_URL for postgres");
                let pool = open_postgres(url, config.database_pool_size).await?;
                // The data dir holds the audit spool and signing key on this backend too.
                ensure_data_dir(&config.data_dir)?;
                Ok(Self {
                    kind: StoreKind::Postgres,
                    sqlite: None,
                    postgres: Some(pool),
                    data_dir: config.data_dir.clone(),
                })
            }
        }
    }

    /// Runs the server's migrations (idempotent; versioned by refinery).
    pub async fn migrate(&self) -> Result<(), StoreError> {
        if let Some(pool) = &self.sqlite {
            let conn = pool.get().await.map_err(|e| StoreError::Migration {
                backend: "sqlite",
                reason: e.to_string(),
            })?;
            conn.interact(|c| {
                sqlite_migrations::migrations::runner()
                    .set_migration_table_name(MIGRATION_TABLE)
                    .run(c)
                    .map(|_| ())
                    .map_err(|e| e.to_string())
            })
            .await
            .map_err(|e| e.to_string())
            .and_then(|r| r)
            .map_err(|reason| StoreError::Migration {
                backend: "sqlite",
                reason,
            })?;
            watchpost_audit::store::sqlite::migrate(pool)
                .await
                .map_err(|e| StoreError::Migration {
                    backend: "sqlite",
                    reason: format!("audit: {e}"),
                })?;
            watchpost_incident::store::sqlite::migrate(pool)
                .await
                .map_err(|e| StoreError::Migration {
                    backend: "sqlite",
                    reason: format!("incident: {e}"),
                })?;
        }
        if let Some(pool) = &self.postgres {
            let fail = |reason: String| StoreError::Migration {
                backend: "postgres",
                reason,
            };
            let mut conn = pool.get().await.map_err(|e| fail(e.to_string()))?;
            let client: &mut tokio_postgres::Client = &mut conn;
            client
                .execute("SELECT pg_advisory_lock($1)", &[&MIGRATION_LOCK_KEY])
                .await
                .map_err(|e| fail(e.to_string()))?;
            let mut result = postgres_migrations::migrations::runner()
                .set_migration_table_name(MIGRATION_TABLE)
                .run_async(client)
                .await
                .map(|_| ())
                .map_err(|e| fail(e.to_string()));
            // Each crate migrates its own schema, on its own connection, while this one holds the lock.
            if result.is_ok() {
                result = watchpost_audit::store::postgres::migrate(pool)
                    .await
                    .map_err(|e| fail(format!("audit: {e}")));
            }
            if result.is_ok() {
                result = watchpost_incident::store::postgres::migrate(pool)
                    .await
                    .map_err(|e| fail(format!("incident: {e}")));
            }
            let unlock = client
                .execute("SELECT pg_advisory_unlock($1)", &[&MIGRATION_LOCK_KEY])
                .await;
            result?;
            unlock.map_err(|e| fail(e.to_string()))?;
        }
        Ok(())
    }
}

async fn open_sqlite(path: &Path, pool_size: usize) -> Result<deadpool_sqlite::Pool, StoreError> {
    let fail = |reason: String| StoreError::Sqlite {
        path: path.to_owned(),
        reason,
    };
    let pool = deadpool_sqlite::Config::new(path)
        .builder(deadpool_sqlite::Runtime::Tokio1)
        .map_err(|e| fail(e.to_string()))?
        .max_size(pool_size)
        .post_create(deadpool_sqlite::Hook::async_fn(|conn, _| {
            Box::pin(async move {
                conn.interact(configure_sqlite)
                    .await
                    .map_err(|e| deadpool_sqlite::HookError::message(e.to_string()))?
                    .map_err(deadpool_sqlite::HookError::Backend)
            })
        }))
        .build()
        .map_err(|e| fail(e.to_string()))?;
    // Open one connection now so a bad file fails start-up, not the first request.
    let conn = pool.get().await.map_err(|e| fail(e.to_string()))?;
    conn.interact(|c| {
        c.query_row("SELECT count(*) FROM sqlite_master", [], |r| {
            r.get::<_, i64>(0)
        })
    })
    .await
    .map_err(|e| fail(e.to_string()))?
    .map_err(|e| fail(e.to_string()))?;
    Ok(pool)
}

/// WAL for concurrent readers; `synchronous = FULL` so an acknowledged write survives a crash;
/// a busy timeout so writers queue instead of failing.
fn configure_sqlite(c: &mut rusqlite::Connection) -> Result<(), rusqlite::Error> {
    c.query_row("PRAGMA journal_mode = WAL", [], |_| Ok(()))?;
    c.execute_batch(
        "PRAGMA synchronous = FULL; PRAGMA busy_timeout = 5000; PRAGMA foreign_keys = ON;",
    )
}

async fn open_postgres(url: &str, pool_size: usize) -> Result<deadpool_postgres::Pool, StoreError> {
    let fail = |reason: String| StoreError::Postgres {
        target: redact_url(url),
        reason,
    };
    let mut pg: tokio_postgres::Config = url
        .parse()
        .map_err(|e: tokio_postgres::Error| fail(e.to_string()))?;
    if pg.get_connect_timeout().is_none() {
        pg.connect_timeout(Duration::from_secs(5));
    }
    if pg.get_application_name().is_none() {
        pg.application_name("watchpost");
    }
    let manager = deadpool_postgres::Manager::from_config(
        pg,
        tokio_postgres::NoTls,
        deadpool_postgres::ManagerConfig {
            recycling_method: deadpool_postgres::RecyclingMethod::Fast,
        },
    );
    let pool = deadpool_postgres::Pool::builder(manager)
        .max_size(pool_size)
        .runtime(deadpool_postgres::Runtime::Tokio1)
        .wait_timeout(Some(Duration::from_secs(5)))
        .create_timeout(Some(Duration::from_secs(5)))
        .build()
        .map_err(|e| fail(e.to_string()))?;
    let conn = pool.get().await.map_err(|e| fail(pool_error_reason(&e)))?;
    conn.simple_query("SELECT 1")
        .await
        .map_err(|e| fail(e.to_string()))?;
    Ok(pool)
}

/// The innermost cause of a pool error ("connection refused" rather than "error occurred while creating a new object").
fn pool_error_reason(e: &deadpool_postgres::PoolError) -> String {
    let mut reason = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        reason = s.to_string();
        source = s.source();
    }
    reason
}
