//! The per-check metric families the registry records on every run, handed to a
//! `prometheus_client` registry by [`HealthRegistry::register_metrics`](crate::HealthRegistry::register_metrics).

use std::sync::atomic::AtomicU64;

use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use watchpost_core::HealthStatus;

type Labels = Vec<(&'static str, String)>;

/// The gauge value of a status: 1 pass, 0.5 warn, 0 fail.
pub(crate) fn status_value(status: HealthStatus) -> f64 {
    match status {
        HealthStatus::Pass => 1.0,
        HealthStatus::Warn => 0.5,
        HealthStatus::Fail => 0.0,
    }
}

#[derive(Debug, Clone, Default)]
pub(crate) struct CheckMetrics {
    status: Family<Labels, Gauge<f64, AtomicU64>>,
    duration: Family<Labels, Gauge<f64, AtomicU64>>,
}

impl CheckMetrics {
    pub(crate) fn record(&self, check: &str, status: HealthStatus, seconds: f64) {
        let labels = vec![("check", check.to_owned())];
        self.status.get_or_create(&labels).set(status_value(status));
        self.duration.get_or_create(&labels).set(seconds);
    }

    pub(crate) fn register(&self, registry: &mut Registry) {
        registry.register(
            "watchpost_health_check_status",
            "Result of the last run of each health check: 1 pass, 0.5 warn (a non-critical failure), 0 fail",
            self.status.clone(),
        );
        registry.register(
            "watchpost_health_check_duration_seconds",
            "Duration of the last run of each health check, in seconds",
            self.duration.clone(),
        );
    }
}
