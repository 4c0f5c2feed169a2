//! [`AuditMetrics`]: the counters, gauges and histogram this crate keeps, registered into a handed-in registry.
//!
//! | name | type | meaning |
//! | --- | --- | --- |
//! | `watchpost_audit_events_recorded_total` | counter | events made durable (store or spool) |
//! | `watchpost_audit_events_failed_total` | counter | events refused: neither the store nor the spool took them |
//! | `watchpost_audit_events_spooled_total` | counter | events written to the spool because the store was unavailable |
//! | `watchpost_audit_spool_bytes` | gauge | bytes waiting in the spool |
//! | `watchpost_audit_spool_alarm` | gauge | 1 when the spool is over 80 % of its cap (or refusing), else 0 |
//! | `watchpost_audit_write_duration_seconds` | histogram | time to make one batch durable |
//! | `watchpost_audit_batch_size` | histogram | events per durable batch |
//! | `watchpost_audit_sink_errors_total` | counter | failed writes to extra sinks (console, file) |

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

/// The crate's metrics; clones share the same values.
#[derive(Debug, Clone)]
pub struct AuditMetrics {
    /// Events made durable.
    pub recorded: Counter,
    /// Events refused.
    pub failed: Counter,
    /// Events spooled.
    pub spooled: Counter,
    /// Spool size in bytes.
    pub spool_bytes: Gauge,
    /// Spool alarm (0 or 1).
    pub spool_alarm: Gauge,
    /// Batch write latency.
    pub write_duration: Histogram,
    /// Batch size.
    pub batch_size: Histogram,
    /// Extra-sink failures.
    pub sink_errors: Counter,
}

impl Default for AuditMetrics {
    fn default() -> Self {
        Self {
            recorded: Counter::default(),
            failed: Counter::default(),
            spooled: Counter::default(),
            spool_bytes: Gauge::default(),
            spool_alarm: Gauge::default(),
            write_duration: Histogram::new([
                0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
            ]),
            batch_size: Histogram::new([
                1.0, 2.0, 5.0, 10.0, 25.0, 50.0, 100.0, 250.0, 500.0, 1000.0, 2500.0,
            ]),
            sink_errors: Counter::default(),
        }
    }
}

impl AuditMetrics {
    /// Registers every metric into `registry` (names in the module docs).
    pub fn register(&self, registry: &mut Registry) {
        registry.register(
            "watchpost_audit_events_recorded",
            "Audit events made durable in the store or the spool",
            self.recorded.clone(),
        );
        registry.register(
            "watchpost_audit_events_failed",
            "Audit events refused because neither the store nor the spool could take them",
            self.failed.clone(),
        );
        registry.register(
            "watchpost_audit_events_spooled",
            "Audit events written to the durable spool while the store was unavailable",
            self.spooled.clone(),
        );
        registry.register(
            "watchpost_audit_spool_bytes",
            "Bytes waiting in the audit spool",
            self.spool_bytes.clone(),
        );
        registry.register(
            "watchpost_audit_spool_alarm",
            "1 when the audit spool is over 80% of its size cap or refusing events",
            self.spool_alarm.clone(),
        );
        registry.register(
            "watchpost_audit_write_duration_seconds",
            "Time to make one batch of audit events durable",
            self.write_duration.clone(),
        );
        registry.register(
            "watchpost_audit_batch_size",
            "Audit events per durable batch",
            self.batch_size.clone(),
        );
        registry.register(
            "watchpost_audit_sink_errors",
            "Failed writes to extra audit sinks (console, file)",
            self.sink_errors.clone(),
        );
    }
}
