//! watchpost-correlation in the server: the outermost layer (ids, trace context, server span, the
//! request log line, panics to 500 problems, error groups behind `GET /errors`), and telemetry
//! start-up from `WATCHPOST_LOG_FORMAT`, `WATCHPOST_LOG_FLUSH_MS`, `RUST_LOG` and the `OTEL_*` variables.

use watchpost_core::SharedClock;
use watchpost_correlation::{
    CorrelationConfig, CorrelationLayer, LoggingConfig, OtelConfig, Propagators, Telemetry,
};

use crate::config::Config;

/// The correlation layer for `config`.
pub fn layer(config: &Config, propagators: Propagators, clock: SharedClock) -> CorrelationLayer {
    CorrelationLayer::with_clock(
        CorrelationConfig {
            trusted_proxies: config.trusted_proxies.clone(),
            propagators,
            ..CorrelationConfig::default()
        },
        clock,
    )
}

/// Installs logging and (when configured) OTLP export; a bad `OTEL_*` value is an error naming it.
/// Must run inside the tokio runtime.
pub fn init_telemetry(config: &Config) -> Result<Telemetry, watchpost_correlation::TelemetryError> {
    let logging = LoggingConfig {
        format: config.log_format,
        filter: config.log_filter.clone(),
        flush_interval: config.log_flush_interval,
    };
    let otel = OtelConfig::from_env("watchpost")?;
    watchpost_correlation::init(&logging, &otel)
}
