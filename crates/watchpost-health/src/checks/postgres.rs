//! [`PostgresCheck`]: `SELECT 1` over a `deadpool_postgres::Pool`, with the pool's figures.

use deadpool_postgres::Pool;

use crate::check::{CheckFuture, CheckOutcome, HealthCheck};

/// Runs `SELECT 1` on a pooled PostgreSQL connection.
///
/// Observed values: `connections` (pool size), `idleConnections`, `maxConnections`,
/// `waitingClients`; output `Pool: 10 total, 5 idle, 0 waiting`.
#[derive(Clone)]
pub struct PostgresCheck {
    pool: Pool,
}

impl std::fmt::Debug for PostgresCheck {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostgresCheck")
            .field("pool", &self.pool.status())
            .finish()
    }
}

impl PostgresCheck {
    /// A check over `pool`.
    pub fn new(pool: Pool) -> Self {
        Self { pool }
    }
}

impl HealthCheck for PostgresCheck {
    fn run(&self) -> CheckFuture<'_> {
        Box::pin(async move {
            let result = async {
                let client = self.pool.get().await.map_err(|e| {
                    format!("cannot get a PostgreSQL connection from the pool: {e}; is PostgreSQL running and DATABASE_URL right?")
                })?;
                client
                    .simple_query("SELECT 1")
                    .await
                    .map_err(|e| format!("SELECT 1 failed on PostgreSQL: {e}"))?;
                Ok::<(), String>(())
            }
            .await;
            let status = self.pool.status();
            let figures = format!(
                "Pool: {} total, {} idle, {} waiting",
                status.size, status.available, status.waiting
            );
            let outcome = match result {
                Ok(()) => CheckOutcome::pass().with_output(figures),
                Err(e) => CheckOutcome::fail(format!("{e} ({figures})")),
            };
            outcome
                .observe("connections", status.size, Some("connections"))
                .observe("idleConnections", status.available, Some("connections"))
                .observe("maxConnections", status.max_size, Some("connections"))
                .observe("waitingClients", status.waiting, Some("clients"))
        })
    }

    fn component_type(&self) -> &'static str {
        "datastore"
    }
}
