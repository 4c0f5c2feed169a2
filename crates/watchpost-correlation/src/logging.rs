//! Logging setup: one [`init`] that installs JSON (default) or pretty output, `RUST_LOG` filtering and,
//! when configured, the OpenTelemetry span bridge.
//!
//! Every JSON line emitted while a request is served carries `request_id`, `correlation_id`,
//! `trace_id` and `span_id` at the top level (read from the request context), also when
//! export is off or the trace is not sampled. Pretty output shows them as fields of the
//! request span.

use std::fmt;
use std::str::FromStr;

use serde_json::{Map, Value};
use tracing::field::{Field, Visit};
use tracing::{Event, Subscriber};
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields, MakeWriter};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::{EnvFilter, Layer, Registry};

use crate::error::TelemetryError;
use crate::otel::{OtelConfig, Telemetry};
use crate::request_log::REQUEST_LOG_TARGET;

/// The log output format (`WATCHPOST_LOG_FORMAT`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LogFormat {
    /// One JSON object per line.
    #[default]
    Json,
    /// Human-readable, multi-line.
    Pretty,
}

impl FromStr for LogFormat {
    type Err = TelemetryError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "json" => Ok(LogFormat::Json),
            "pretty" => Ok(LogFormat::Pretty),
            _ => Err(TelemetryError::InvalidVariable {
                variable: "WATCHPOST_LOG_FORMAT",
                value: s.to_owned(),
                reason: "accepted: json, pretty".to_owned(),
            }),
        }
    }
}

/// Logging configuration; plain fields the server maps its configuration onto.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoggingConfig {
    /// JSON or pretty.
    pub format: LogFormat,
    /// `RUST_LOG` directives; `info` when empty.
    pub filter: String,
}

impl Default for LoggingConfig {
    fn default() -> Self {
        Self {
            format: LogFormat::Json,
            filter: "info".to_owned(),
        }
    }
}

impl LoggingConfig {
    /// Reads `WATCHPOST_LOG_FORMAT` and `RUST_LOG` from the process environment.
    pub fn from_env() -> Result<Self, TelemetryError> {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    /// Reads the variables through `lookup`.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, TelemetryError> {
        let format = match lookup("WATCHPOST_LOG_FORMAT").filter(|v| !v.trim().is_empty()) {
            Some(v) => v.parse()?,
            None => LogFormat::Json,
        };
        let filter = lookup("RUST_LOG")
            .filter(|v| !v.trim().is_empty())
            .unwrap_or_else(|| "info".to_owned());
        env_filter(&filter)?;
        Ok(Self { format, filter })
    }
}

fn env_filter(directives: &str) -> Result<EnvFilter, TelemetryError> {
    EnvFilter::builder()
        .parse(directives)
        .map_err(|e| TelemetryError::Filter {
            value: directives.to_owned(),
            message: e.to_string(),
        })
}

/// A subscriber as [`init`] would install it, writing to `writer` (tests pass a log capture).
pub fn subscriber<W>(
    logging: &LoggingConfig,
    telemetry: &Telemetry,
    writer: W,
) -> Result<impl Subscriber + Send + Sync + 'static, TelemetryError>
where
    W: for<'a> MakeWriter<'a> + Send + Sync + 'static,
{
    let fmt_layer: Box<dyn Layer<Registry> + Send + Sync> = match logging.format {
        LogFormat::Json => tracing_subscriber::fmt::layer()
            .event_format(JsonLines)
            .with_writer(writer)
            .with_filter(env_filter(&logging.filter)?)
            .boxed(),
        LogFormat::Pretty => tracing_subscriber::fmt::layer()
            .pretty()
            .with_writer(writer)
            .with_filter(env_filter(&logging.filter)?)
            .boxed(),
    };
    let mut layers = vec![fmt_layer];
    if let Some(tracer) = telemetry.tracer() {
        layers.push(
            tracing_opentelemetry::layer()
                .with_tracer(tracer)
                .with_filter(env_filter(&logging.filter)?)
                .boxed(),
        );
    }
    Ok(Registry::default().with(layers))
}

/// Starts OTLP export as `otel` says, installs the global subscriber writing to stdout, installs the
/// panic hook, and logs the effective configuration once. Call once, inside the tokio runtime.
pub fn init(logging: &LoggingConfig, otel: &OtelConfig) -> Result<Telemetry, TelemetryError> {
    let telemetry = Telemetry::start(otel)?;
    let subscriber = subscriber(logging, &telemetry, std::io::stdout)?;
    tracing::subscriber::set_global_default(subscriber)
        .map_err(|_| TelemetryError::SubscriberAlreadySet)?;
    crate::errors::install_panic_hook();
    tracing::info!(
        target: "watchpost_correlation",
        log_format = ?logging.format,
        rust_log = %logging.filter,
        otel = %otel.summary(),
        "telemetry configured"
    );
    Ok(telemetry)
}

/// The JSON line format: `timestamp`, `level`, `target`, the request ids, then the event's fields.
#[derive(Debug, Clone, Copy, Default)]
pub struct JsonLines;

impl<S, N> FormatEvent<S, N> for JsonLines
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        _ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        let meta = event.metadata();
        let mut map = Map::with_capacity(16);
        map.insert(
            "timestamp".into(),
            Value::String(chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Micros, true)),
        );
        map.insert(
            "level".into(),
            Value::String(meta.level().as_str().to_owned()),
        );
        map.insert("target".into(), Value::String(meta.target().to_owned()));
        crate::context::with_current(|ctx| {
            if let Some(ctx) = ctx {
                map.insert(
                    "request_id".into(),
                    Value::String(ctx.request_id.to_string()),
                );
                map.insert(
                    "correlation_id".into(),
                    Value::String(ctx.correlation_id.to_string()),
                );
                if let Some(t) = ctx.trace_id {
                    map.insert("trace_id".into(), Value::String(t.to_string()));
                }
                if let Some(s) = ctx.span_id {
                    map.insert("span_id".into(), Value::String(s.to_string()));
                }
            }
        });
        event.record(&mut JsonVisitor(&mut map));
        if meta.target() == REQUEST_LOG_TARGET {
            // Absent optional fields are written as null, so every request line has every field.
            for key in ["route", "apiKeyId", "tenantId", "traceId", "spanId"] {
                map.entry(key).or_insert(Value::Null);
            }
        }
        let line = serde_json::to_string(&map).map_err(|_| fmt::Error)?;
        writeln!(writer, "{line}")
    }
}

struct JsonVisitor<'a>(&'a mut Map<String, Value>);

impl Visit for JsonVisitor<'_> {
    fn record_f64(&mut self, field: &Field, value: f64) {
        let v = serde_json::Number::from_f64(value).map_or(Value::Null, Value::Number);
        self.0.insert(field.name().to_owned(), v);
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        self.0.insert(field.name().to_owned(), Value::from(value));
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        self.0.insert(field.name().to_owned(), Value::from(value));
    }

    fn record_bool(&mut self, field: &Field, value: bool) {
        self.0.insert(field.name().to_owned(), Value::from(value));
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        self.0.insert(field.name().to_owned(), Value::from(value));
    }

    fn record_error(&mut self, field: &Field, value: &(dyn std::error::Error + 'static)) {
        self.0
            .insert(field.name().to_owned(), Value::from(value.to_string()));
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.0
            .insert(field.name().to_owned(), Value::from(format!("{value:?}")));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn format_and_filter_are_checked() {
        let c = LoggingConfig::from_lookup(|_| None).unwrap();
        assert_eq!(c, LoggingConfig::default());
        let err =
            LoggingConfig::from_lookup(|k| (k == "WATCHPOST_LOG_FORMAT").then(|| "xml".into()))
                .unwrap_err();
        assert!(err.to_string().starts_with("invalid WATCHPOST_LOG_FORMAT="));
        let err =
            LoggingConfig::from_lookup(|k| (k == "RUST_LOG").then(|| "info,[".into())).unwrap_err();
        assert!(err.to_string().starts_with("invalid RUST_LOG="), "{err}");
    }
}
