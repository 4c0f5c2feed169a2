//! [`MetricsError`]: what can go wrong when registering metrics or configuring the crate.

/// An error from this crate; every message says what to change.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum MetricsError {
    /// A metric name outside `[a-zA-Z_:][a-zA-Z0-9_:]*`.
    #[error(
        "invalid metric name {name:?}: use letters, digits, `_` and `:`, not starting with a digit"
    )]
    InvalidMetricName {
        /// The name given.
        name: String,
    },
    /// A label name that is malformed, reserved or repeated.
    #[error(
        "invalid label name {label:?} on metric {metric:?}: use letters, digits and `_`, not starting with a digit or `__`, not `le`, `quantile` or `otel_metric_overflow`, each once"
    )]
    InvalidLabelName {
        /// The metric.
        metric: String,
        /// The label name given.
        label: String,
    },
    /// Two families with one name.
    #[error("metric {name:?} is registered twice: pick another name or reuse the family you have")]
    DuplicateMetric {
        /// The name given.
        name: String,
    },
    /// Histogram buckets that are empty, not finite or not increasing.
    #[error("invalid buckets for histogram {metric:?}: {reason}")]
    InvalidBuckets {
        /// The metric.
        metric: String,
        /// What is wrong.
        reason: &'static str,
    },
    /// A configuration value that cannot work.
    #[error("invalid metrics configuration {field}: {reason}")]
    InvalidConfig {
        /// The field (and the environment variable the server maps onto it).
        field: &'static str,
        /// What is wrong and what to set instead.
        reason: String,
    },
}
