//! Logging setup: one [`init`] that installs JSON (default) or pretty output, `RUST_LOG` filtering and,
//! when configured, the OpenTelemetry span bridge.
//!
//! Every JSON line emitted while a request is served carries `request_id`, `correlation_id`,
//! `trace_id` and `span_id` at the top level (read from the request context), also when
//! export is off or the trace is not sampled. Pretty output shows them as fields of the
//! request span.

use std::fmt;
use std::str::FromStr;

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

/// A global filter that turns every span off: installed when nothing reads spans (JSON lines and
/// no OpenTelemetry export), so a span callsite is disabled once and `info_span!` costs one check.
type SpansOff = tracing_subscriber::filter::FilterFn<fn(&tracing::Metadata<'_>) -> bool>;

type Filtered = tracing_subscriber::layer::Layered<
    Option<SpansOff>,
    tracing_subscriber::layer::Layered<EnvFilter, Registry>,
>;

fn events_only(meta: &tracing::Metadata<'_>) -> bool {
    meta.is_event()
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
    let tracer = telemetry.tracer();
    // JSON lines take the request ids from the request context: they need neither span fields
    // nor spans. Pretty output shows spans; export sends them.
    let spans_off = (logging.format == LogFormat::Json && tracer.is_none()).then(|| {
        tracing_subscriber::filter::filter_fn(events_only as fn(&tracing::Metadata<'_>) -> bool)
    });
    let fmt_layer: Box<dyn Layer<Filtered> + Send + Sync> = match logging.format {
        LogFormat::Json => tracing_subscriber::fmt::layer()
            .fmt_fields(NoSpanFields)
            .event_format(JsonLines)
            .with_writer(writer)
            .boxed(),
        LogFormat::Pretty => tracing_subscriber::fmt::layer()
            .pretty()
            .with_writer(writer)
            .boxed(),
    };
    let mut layers = vec![fmt_layer];
    if let Some(tracer) = tracer {
        layers.push(tracing_opentelemetry::layer().with_tracer(tracer).boxed());
    }
    // One global filter: RUST_LOG applies to logs and exported spans alike.
    Ok(Registry::default()
        .with(env_filter(&logging.filter)?)
        .with(spans_off)
        .with(layers))
}

/// Span fields are not rendered by the JSON format; skipping them saves work on every span.
#[derive(Debug, Clone, Copy, Default)]
struct NoSpanFields;

impl<'writer> FormatFields<'writer> for NoSpanFields {
    fn format_fields<R: tracing_subscriber::field::RecordFields>(
        &self,
        _writer: Writer<'writer>,
        _fields: R,
    ) -> fmt::Result {
        Ok(())
    }
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
        let mut out = String::with_capacity(512);
        out.push_str("{\"timestamp\":\"");
        out.push_str(&chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Micros, true));
        out.push_str("\",\"level\":\"");
        out.push_str(meta.level().as_str());
        out.push('"');
        push_str_field(&mut out, "target", meta.target());
        crate::context::with_current(|ctx| {
            if let Some(ctx) = ctx {
                push_str_field(&mut out, "request_id", ctx.request_id.as_str());
                push_str_field(&mut out, "correlation_id", ctx.correlation_id.as_str());
                if let Some(t) = ctx.trace_id {
                    push_display_field(&mut out, "trace_id", t);
                }
                if let Some(s) = ctx.span_id {
                    push_display_field(&mut out, "span_id", s);
                }
            }
        });
        let mut visitor = JsonVisitor {
            out: &mut out,
            seen: 0,
        };
        event.record(&mut visitor);
        let seen = visitor.seen;
        if meta.target() == REQUEST_LOG_TARGET {
            // Absent optional fields are written as null, so every request line has every field.
            for (i, key) in OPTIONAL_REQUEST_FIELDS.iter().enumerate() {
                if seen & (1 << i) == 0 {
                    push_key(&mut out, key);
                    out.push_str("null");
                }
            }
        }
        out.push_str("}\n");
        writer.write_str(&out)
    }
}

const OPTIONAL_REQUEST_FIELDS: [&str; 5] = ["route", "apiKeyId", "tenantId", "traceId", "spanId"];

fn push_key(out: &mut String, key: &str) {
    out.push(',');
    push_json_string(out, key);
    out.push(':');
}

fn push_str_field(out: &mut String, key: &str, value: &str) {
    push_key(out, key);
    push_json_string(out, value);
}

fn push_display_field(out: &mut String, key: &str, value: impl fmt::Display) {
    push_key(out, key);
    push_json_string(out, &value.to_string());
}

/// Writes `s` as a JSON string; control characters are escaped, so a value can never split the line.
fn push_json_string(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 || c == '\u{7f}' || c == '\u{2028}' || c == '\u{2029}' => {
                use fmt::Write as _;
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

struct JsonVisitor<'a> {
    out: &'a mut String,
    /// Which of [`OPTIONAL_REQUEST_FIELDS`] were written.
    seen: u8,
}

impl JsonVisitor<'_> {
    fn key(&mut self, field: &Field) {
        if let Some(i) = OPTIONAL_REQUEST_FIELDS
            .iter()
            .position(|k| *k == field.name())
        {
            self.seen |= 1 << i;
        }
        push_key(self.out, field.name());
    }
}

impl Visit for JsonVisitor<'_> {
    fn record_f64(&mut self, field: &Field, value: f64) {
        self.key(field);
        match serde_json::Number::from_f64(value) {
            Some(n) => self.out.push_str(&n.to_string()),
            None => self.out.push_str("null"),
        }
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        self.key(field);
        self.out.push_str(&value.to_string());
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        self.key(field);
        self.out.push_str(&value.to_string());
    }

    fn record_bool(&mut self, field: &Field, value: bool) {
        self.key(field);
        self.out.push_str(if value { "true" } else { "false" });
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        self.key(field);
        push_json_string(self.out, value);
    }

    fn record_error(&mut self, field: &Field, value: &(dyn std::error::Error + 'static)) {
        self.key(field);
        push_json_string(self.out, &value.to_string());
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.key(field);
        push_json_string(self.out, &format!("{value:?}"));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_strings_escape_control_characters() {
        let nasty = "a\"b\\c\nd\re\tf\u{1b}[31mg\u{0}h\u{7f}i\u{2028}j é";
        let mut out = String::new();
        push_json_string(&mut out, nasty);
        assert!(!out.chars().any(|c| c.is_control() && c != ' '), "{out:?}");
        let back: String = serde_json::from_str(&out).expect("valid JSON string");
        assert_eq!(back, nasty);
    }

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
