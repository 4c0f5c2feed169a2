//! [`DbMetrics`]: `db_client_operation_duration_seconds{operation,table}`, with a timing guard,
//! a future wrapper, and a plain callback other crates can be handed without depending on this one.
//!
//! # Example
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")] async fn main() {
//! use watchpost_metrics::{Metrics, MetricsConfig};
//!
//! let metrics = Metrics::new(MetricsConfig::default()).unwrap();
//! let db = metrics.db();
//! {
//!     let _timer = db.start("select", "incidents"); // recorded when dropped
//! }
//! let rows = db.time("insert", "audit_events", async { 3 }).await;
//! assert_eq!(rows, 3);
//! assert_eq!(db.count("select", "incidents"), 1);
//! # }
//! ```

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use crate::error::MetricsError;
use crate::registry::{HistogramFamily, MetricsRegistry};

/// Buckets of `db_client_operation_duration_seconds` (the OpenTelemetry advice for database clients, plus 25 ms and 250 ms).
pub const DB_DURATION_BUCKETS: [f64; 12] = [
    0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// A callback recording one database operation: (operation, table, duration).
///
/// The server hands this to crates that run queries; they need no dependency on this crate.
pub type DbObserver = Arc<dyn Fn(&str, &str, Duration) + Send + Sync>;

/// Times database operations.
#[derive(Debug, Clone)]
pub struct DbMetrics {
    histogram: HistogramFamily<2>,
}

impl DbMetrics {
    pub(crate) fn register(registry: &MetricsRegistry) -> Result<Self, MetricsError> {
        Ok(Self {
            histogram: registry.histogram(
                "db_client_operation_duration_seconds",
                "Duration of database client operations.",
                ["operation", "table"],
                &DB_DURATION_BUCKETS,
            )?,
        })
    }

    /// Records one operation of `duration`. Use a small fixed set of operation and table names.
    pub fn observe(&self, operation: &str, table: &str, duration: Duration) {
        self.histogram
            .observe([operation, table], duration.as_secs_f64());
    }

    /// A guard that records the time until it is dropped (or [`DbTimer::finish`]ed).
    pub fn start(&self, operation: &'static str, table: &'static str) -> DbTimer {
        DbTimer {
            metrics: self.clone(),
            operation,
            table,
            start: tokio::time::Instant::now(),
            done: false,
        }
    }

    /// Runs `fut` and records how long it took.
    pub async fn time<F: Future>(
        &self,
        operation: &'static str,
        table: &'static str,
        fut: F,
    ) -> F::Output {
        let timer = self.start(operation, table);
        let out = fut.await;
        timer.finish();
        out
    }

    /// The same recording as a plain callback, to hand to other crates.
    pub fn observer(&self) -> DbObserver {
        let this = self.clone();
        Arc::new(move |operation: &str, table: &str, duration: Duration| {
            this.observe(operation, table, duration);
        })
    }

    /// How many operations were recorded for (operation, table).
    pub fn count(&self, operation: &str, table: &str) -> u64 {
        self.histogram.get([operation, table]).0
    }
}

/// Records the time since [`DbMetrics::start`] when dropped.
#[derive(Debug)]
#[must_use = "the operation is timed until this guard is dropped"]
pub struct DbTimer {
    metrics: DbMetrics,
    operation: &'static str,
    table: &'static str,
    start: tokio::time::Instant,
    done: bool,
}

impl DbTimer {
    /// Records now and returns the time measured.
    pub fn finish(mut self) -> Duration {
        self.record()
    }

    fn record(&mut self) -> Duration {
        let elapsed = self.start.elapsed();
        if !self.done {
            self.done = true;
            self.metrics.observe(self.operation, self.table, elapsed);
        }
        elapsed
    }
}

impl Drop for DbTimer {
    fn drop(&mut self) {
        self.record();
    }
}
