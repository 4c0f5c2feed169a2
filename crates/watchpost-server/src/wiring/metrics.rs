//! watchpost-metrics in the server: the registry and HTTP layer, `/metrics` (with the optional
//! token) and `/metrics/summary`, the health check metrics, and `watchpost_auth_attempts_total`.

use std::sync::Arc;

use watchpost_metrics::{BuildInfo, Metrics, MetricsConfig, MetricsError};

use crate::auth::{AttemptObserver, AuthResult};
use crate::config::Config;

/// The process's metrics for `config`.
pub fn metrics(config: &Config) -> Result<Metrics, MetricsError> {
    Metrics::new(MetricsConfig {
        naming: config.metrics_naming,
        max_series_per_family: config.metrics_max_series,
        token: config.metrics_token.clone(),
        build_info: Some(BuildInfo {
            version: env!("CARGO_PKG_VERSION").to_owned(),
            revision: env!("WATCHPOST_BUILD_REVISION").to_owned(),
            rustc: env!("WATCHPOST_BUILD_RUSTC").to_owned(),
        }),
        ..MetricsConfig::default()
    })
}

/// Exports what `register` puts into a fresh `prometheus_client` registry through `metrics`
/// (how every feature crate hands its metrics over without depending on watchpost-metrics).
pub fn export(
    metrics: &Metrics,
    register: impl FnOnce(&mut prometheus_client::registry::Registry),
) {
    let mut registry = prometheus_client::registry::Registry::default();
    register(&mut registry);
    metrics.add_registry(registry);
}

/// Exports the health registry's check metrics through `metrics`.
pub fn export_health(metrics: &Metrics, health: &watchpost_health::HealthRegistry) {
    export(metrics, |registry| health.register_metrics(registry));
}

/// A callback counting authentication attempts as `watchpost_auth_attempts_total{result}`.
pub fn auth_attempts(metrics: &Metrics) -> Result<AttemptObserver, MetricsError> {
    let family = metrics.registry().counter(
        "watchpost_auth_attempts_total",
        "API key authentication attempts by result (success, malformed, unknown, revoked, error).",
        ["result"],
    )?;
    // One handle per result, resolved now: a request then adds to its series directly (no label
    // text to write and look up), and every result is exported from the start, at 0.
    let counters = AuthResult::ALL.map(|result| family.with([result.label()]));
    Ok(Arc::new(move |result: AuthResult| {
        counters[result.index()].inc();
    }))
}
