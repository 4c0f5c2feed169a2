//! [`SqliteCheck`]: `SELECT 1` over a `deadpool_sqlite::Pool`, run inside `interact` so the
//! async runtime never blocks.

use deadpool_sqlite::Pool;

use crate::check::{CheckFuture, CheckOutcome, HealthCheck};

/// Runs `SELECT 1` on a pooled SQLite connection.
#[derive(Clone)]
pub struct SqliteCheck {
    pool: Pool,
}

impl std::fmt::Debug for SqliteCheck {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteCheck")
            .field("pool", &self.pool.status())
            .finish()
    }
}

impl SqliteCheck {
    /// A check over `pool`.
    pub fn new(pool: Pool) -> Self {
        Self { pool }
    }
}

impl HealthCheck for SqliteCheck {
    fn run(&self) -> CheckFuture<'_> {
        Box::pin(async move {
            let result = async {
                let conn = self
                    .pool
                    .get()
                    .await
                    .map_err(|e| format!("cannot open the SQLite database: {e}; check WATCHPOST_DATA_DIR and its permissions"))?;
                conn.interact(|c| c.query_row("SELECT 1", [], |row| row.get::<_, i64>(0)))
                    .await
                    .map_err(|e| format!("the SQLite worker failed: {e}"))?
                    .map_err(|e| format!("SELECT 1 failed on SQLite: {e}"))?;
                Ok::<(), String>(())
            }
            .await;
            let status = self.pool.status();
            let outcome = match result {
                Ok(()) => CheckOutcome::pass(),
                Err(e) => CheckOutcome::fail(e),
            };
            outcome
                .observe("connections", status.size, Some("connections"))
                .observe("idleConnections", status.available, Some("connections"))
        })
    }

    fn component_type(&self) -> &'static str {
        "datastore"
    }
}
