//! Logging setup: one [`init`] that installs JSON (default) or pretty output, `RUST_LOG` filtering and,
//! when configured, the OpenTelemetry span bridge.
//!
//! Every JSON line emitted while a request is served carries `request_id`, `correlation_id`,
//! `trace_id` and `span_id` at the top level (read from the request context), also when
//! export is off or the trace is not sampled. Pretty output shows them as fields of the
//! request span.

use std::fmt;
use std::str::FromStr;
use std::sync::OnceLock;
use std::time::Duration;

use tracing::field::{Field, Visit};
use tracing::{Event, Subscriber};
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields, MakeWriter};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::{EnvFilter, Layer, Registry};

use crate::error::TelemetryError;
use crate::otel::{OtelConfig, Telemetry};
use crate::output::{DEFAULT_FLUSH_INTERVAL, LogOutput, MAX_FLUSH_INTERVAL};
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
    /// How long a line may wait to be written with others (`WATCHPOST_LOG_FLUSH_MS`; zero writes
    /// every line at once); see [`crate::output`].
    pub flush_interval: Duration,
}

impl Default for LoggingConfig {
    fn default() -> Self {
        Self {
            format: LogFormat::Json,
            filter: "info".to_owned(),
            flush_interval: DEFAULT_FLUSH_INTERVAL,
        }
    }
}

impl LoggingConfig {
    /// Reads `WATCHPOST_LOG_FORMAT`, `WATCHPOST_LOG_FLUSH_MS` and `RUST_LOG` from the process
    /// environment.
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
        let flush_interval = match lookup("WATCHPOST_LOG_FLUSH_MS").filter(|v| !v.trim().is_empty())
        {
            Some(v) => parse_flush_ms(&v)?,
            None => DEFAULT_FLUSH_INTERVAL,
        };
        Ok(Self {
            format,
            filter,
            flush_interval,
        })
    }
}

/// `WATCHPOST_LOG_FLUSH_MS`: whole milliseconds from 0 (every line at once) to 10,000.
pub fn parse_flush_ms(value: &str) -> Result<Duration, TelemetryError> {
    match value.trim().parse::<u64>() {
        Ok(ms) if Duration::from_millis(ms) <= MAX_FLUSH_INTERVAL => Ok(Duration::from_millis(ms)),
        _ => Err(TelemetryError::InvalidVariable {
            variable: "WATCHPOST_LOG_FLUSH_MS",
            value: value.to_owned(),
            reason: format!(
                "accepted: whole milliseconds from 0 (every line at once) to {}",
                MAX_FLUSH_INTERVAL.as_millis()
            ),
        }),
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

/// The output [`init`] installed, for [`flush_logs`].
static INSTALLED: OnceLock<LogOutput> = OnceLock::new();

/// Writes the log lines [`init`]'s output still holds (see [`crate::output`]). Call before the
/// process exits; the panic hook calls it too. Does nothing when `init` did not run.
pub fn flush_logs() {
    if let Some(output) = INSTALLED.get() {
        output.flush();
    }
}

/// Starts OTLP export as `otel` says, installs the global subscriber writing to stdout (lines
/// batched every `logging.flush_interval`), installs the panic hook, and logs the effective
/// configuration once. Call once, inside the tokio runtime, and [`flush_logs`] before exiting.
pub fn init(logging: &LoggingConfig, otel: &OtelConfig) -> Result<Telemetry, TelemetryError> {
    let telemetry = Telemetry::start(otel)?;
    let output = LogOutput::stdout(logging.flush_interval);
    let subscriber = subscriber(logging, &telemetry, output.clone())?;
    tracing::subscriber::set_global_default(subscriber)
        .map_err(|_| TelemetryError::SubscriberAlreadySet)?;
    let _ = INSTALLED.set(output);
    crate::errors::install_panic_hook();
    tracing::info!(
        target: "watchpost_correlation",
        log_format = ?logging.format,
        rust_log = %logging.filter,
        log_flush_ms = logging.flush_interval.as_millis() as u64,
        otel = %otel.summary(),
        "telemetry configured"
    );
    Ok(telemetry)
}

/// The JSON line format: `timestamp`, `level`, `target`, the request ids, then the event's fields.
///
/// Written by hand for speed (one line per request is on the hot path): the line is built in a
/// reused per-thread buffer, the timestamp's date and time of day are formatted once per second,
/// strings without characters to escape (checked eight bytes at a time) are copied whole and
/// others in runs between those characters, trace and span ids are hex-encoded without a
/// formatter, numbers go through
/// `itoa` and `Display` into the buffer, and `Debug`/`Display` values are escaped as they are
/// written. Nothing is allocated per line once the buffer has grown to the longest line.
#[derive(Debug, Clone, Copy, Default)]
pub struct JsonLines;

/// The largest line buffer a thread keeps between lines, in bytes.
const MAX_KEPT_LINE_BUFFER: usize = 16 * 1024;

thread_local! {
    /// The line being built; reused so that a line costs no allocation.
    static LINE: std::cell::RefCell<String> = const { std::cell::RefCell::new(String::new()) };
    /// The second last formatted and its `YYYY-MM-DDTHH:MM:SS` text.
    static SECOND: std::cell::Cell<(u64, [u8; 19])> = const { std::cell::Cell::new((u64::MAX, [0; 19])) };
}

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
        LINE.with(|line| {
            // A field's `Debug` that logs while the line is being built finds the buffer taken:
            // that inner line gets a fresh one.
            let mut fresh = String::new();
            let mut kept = line.try_borrow_mut();
            let out = match kept.as_deref_mut() {
                Ok(buffer) => buffer,
                Err(_) => &mut fresh,
            };
            out.clear();
            write_line(out, event);
            let written = writer.write_str(out);
            if out.capacity() > MAX_KEPT_LINE_BUFFER {
                // One huge line (a long backtrace) does not pin its buffer for the thread's life.
                *out = String::new();
            }
            written
        })
    }
}

fn write_line(out: &mut String, event: &Event<'_>) {
    let meta = event.metadata();
    out.push_str("{\"timestamp\":\"");
    push_timestamp(out, std::time::SystemTime::now());
    out.push_str("\",\"level\":\"");
    out.push_str(meta.level().as_str());
    out.push('"');
    push_str_field(out, "target", meta.target());
    crate::context::with_current(|ctx| {
        if let Some(ctx) = ctx {
            push_str_field(out, "request_id", ctx.request_id.as_str());
            push_str_field(out, "correlation_id", ctx.correlation_id.as_str());
            if let Some(t) = ctx.trace_id {
                push_hex_field(out, "trace_id", t.encode_hex(&mut [0; 32]));
            }
            if let Some(s) = ctx.span_id {
                push_hex_field(out, "span_id", s.encode_hex(&mut [0; 32]));
            }
        }
    });
    let request_line = meta.target() == REQUEST_LOG_TARGET;
    let mut visitor = JsonVisitor {
        out,
        request_line,
        seen: 0,
    };
    event.record(&mut visitor);
    let seen = visitor.seen;
    if request_line {
        // Absent optional fields are written as null, so every request line has every field.
        for (i, key) in OPTIONAL_REQUEST_FIELDS.iter().enumerate() {
            if seen & (1 << i) == 0 {
                push_key(out, key);
                out.push_str("null");
            }
        }
    }
    out.push_str("}\n");
}

/// RFC 3339 in UTC with microseconds (`2026-11-24T09:30:01.123456Z`), as chrono's
/// `to_rfc3339_opts(Micros, true)` writes it; the part before the fraction is cached per second.
fn push_timestamp(out: &mut String, now: std::time::SystemTime) {
    let since = now
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    let secs = since.as_secs();
    let (cached, mut text) = SECOND.get();
    if cached != secs {
        let formatted = i64::try_from(secs)
            .ok()
            .and_then(|s| chrono::DateTime::from_timestamp(s, 0))
            .unwrap_or_default()
            .format("%Y-%m-%dT%H:%M:%S")
            .to_string();
        if formatted.len() == text.len() {
            text.copy_from_slice(formatted.as_bytes());
            SECOND.set((secs, text));
        } else {
            // A year outside 0000 to 9999: not cached.
            out.push_str(&formatted);
            push_micros(out, since.subsec_micros());
            return;
        }
    }
    out.push_str(std::str::from_utf8(&text).unwrap_or("1970-01-01T00:00:00"));
    push_micros(out, since.subsec_micros());
}

fn push_micros(out: &mut String, micros: u32) {
    let mut digits = [b'0'; 6];
    let mut n = micros;
    for d in digits.iter_mut().rev() {
        *d = b'0' + (n % 10) as u8;
        n /= 10;
    }
    out.push('.');
    out.push_str(std::str::from_utf8(&digits).unwrap_or("000000"));
    out.push('Z');
}

const OPTIONAL_REQUEST_FIELDS: [&str; 5] = ["route", "apiKeyId", "tenantId", "traceId", "spanId"];

fn push_key(out: &mut String, key: &str) {
    out.push_str(",\"");
    push_json_chars(out, key);
    out.push_str("\":");
}

fn push_str_field(out: &mut String, key: &str, value: &str) {
    push_key(out, key);
    push_json_string(out, value);
}

/// A trace or span id (already hex) as a JSON string.
fn push_hex_field(out: &mut String, key: &str, hex: &str) {
    push_key(out, key);
    out.push('"');
    out.push_str(hex);
    out.push('"');
}

/// Which bytes can be copied into a JSON string as they are: not the C0 controls, `"`, `\\`, DEL,
/// nor `0xC2` and `0xE2`, which lead the C1 controls (U+0080 to U+009F) and the line separators
/// U+2028 and U+2029 (the other characters they lead are copied after a closer look).
static PLAIN: [bool; 256] = {
    let mut table = [true; 256];
    let mut b = 0;
    while b < 0x20 {
        table[b] = false;
        b += 1;
    }
    table[b'"' as usize] = false;
    table[b'\\' as usize] = false;
    table[0x7f] = false;
    table[0xc2] = false;
    table[0xe2] = false;
    table
};

/// Writes `s` as a JSON string; control characters (C0, DEL and C1) and the Unicode line
/// separators are escaped, so a value can never split the line or drive a terminal.
fn push_json_string(out: &mut String, s: &str) {
    out.push('"');
    push_json_chars(out, s);
    out.push('"');
}

/// Whether all eight bytes of `w` are printable ASCII other than `"` and `\\` (so copied as
/// they are): no byte below 0x20, none equal to `"`, `\\` or DEL, none with the high bit set.
/// The classic word-at-a-time tests: `(v - 0x01..01 * n) & !v & 0x80..80` is non-zero exactly
/// when some byte of `v` is below `n` (for `n` up to 128), so with `v = w ^ pattern` and `n = 1`
/// it finds a byte equal to the pattern's.
#[inline]
fn plain_ascii_word(w: u64) -> bool {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    let below = |v: u64, n: u64| v.wrapping_sub(ONES * n) & !v & HIGH;
    let special = below(w, 0x20)
        | below(w ^ (ONES * u64::from(b'"')), 1)
        | below(w ^ (ONES * u64::from(b'\\')), 1)
        | below(w ^ (ONES * 0x7f), 1)
        | (w & HIGH);
    special == 0
}

/// The characters of `s` as they go between a JSON string's quotes. Most keys and values need no
/// escaping: they are checked eight bytes at a time and copied in one piece; anything else takes
/// [`push_json_chars_escaping`].
#[inline]
fn push_json_chars(out: &mut String, s: &str) {
    if copies_as_is(s.as_bytes()) {
        out.push_str(s);
    } else {
        push_json_chars_escaping(out, s);
    }
}

/// Whether every byte of `bytes` goes into a JSON string as it is: whole words of plain ASCII,
/// then the last few bytes by the [`PLAIN`] table. A word holding any non-ASCII byte is refused,
/// so this never passes a lead byte that [`PLAIN`] stops.
#[inline]
fn copies_as_is(bytes: &[u8]) -> bool {
    let mut words = bytes.chunks_exact(8);
    for word in &mut words {
        let word = <[u8; 8]>::try_from(word).unwrap_or([0; 8]);
        if !plain_ascii_word(u64::from_le_bytes(word)) {
            return false;
        }
    }
    words.remainder().iter().all(|&b| PLAIN[usize::from(b)])
}

/// [`push_json_chars`] for a string with something to escape: runs that need no escaping are
/// copied whole.
#[cold]
fn push_json_chars_escaping(out: &mut String, s: &str) {
    let bytes = s.as_bytes();
    let mut run = 0;
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        if PLAIN[usize::from(b)] {
            i += 1;
            continue;
        }
        // `i` is at an ASCII byte or at the lead byte 0xC2 or 0xE2: all character boundaries.
        out.push_str(&s[run..i]);
        let c = s[i..].chars().next().unwrap_or('\u{fffd}');
        push_escaped_char(out, c);
        i += c.len_utf8();
        run = i;
    }
    out.push_str(&s[run..]);
}

fn push_escaped_char(out: &mut String, c: char) {
    match c {
        '"' => out.push_str("\\\""),
        '\\' => out.push_str("\\\\"),
        '\n' => out.push_str("\\n"),
        '\r' => out.push_str("\\r"),
        '\t' => out.push_str("\\t"),
        c if c.is_control() || c == '\u{2028}' || c == '\u{2029}' => {
            use fmt::Write as _;
            let _ = write!(out, "\\u{:04x}", c as u32);
        }
        c => out.push(c),
    }
}

/// A `fmt::Write` that escapes what it is given for the inside of a JSON string.
struct Escaping<'a>(&'a mut String);

impl fmt::Write for Escaping<'_> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        push_json_chars(self.0, s);
        Ok(())
    }
}

/// Writes `args` as a JSON string, escaping as it is formatted (no intermediate `String`).
fn push_escaped(out: &mut String, args: fmt::Arguments<'_>) {
    use fmt::Write as _;
    out.push('"');
    let _ = Escaping(out).write_fmt(args);
    out.push('"');
}

struct JsonVisitor<'a> {
    out: &'a mut String,
    /// Whether the event is a request line (whose optional fields are tracked).
    request_line: bool,
    /// Which of [`OPTIONAL_REQUEST_FIELDS`] were written.
    seen: u8,
}

impl JsonVisitor<'_> {
    fn key(&mut self, field: &Field) {
        if self.request_line
            && let Some(i) = OPTIONAL_REQUEST_FIELDS
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
        use fmt::Write as _;
        self.key(field);
        match serde_json::Number::from_f64(value) {
            Some(n) => {
                let _ = write!(self.out, "{n}");
            }
            None => self.out.push_str("null"),
        }
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        self.key(field);
        self.out.push_str(itoa::Buffer::new().format(value));
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        self.key(field);
        self.out.push_str(itoa::Buffer::new().format(value));
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
        push_escaped(self.out, format_args!("{value}"));
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.key(field);
        push_escaped(self.out, format_args!("{value:?}"));
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

    proptest::proptest! {
        /// Any string, written as a JSON string, reads back unchanged and holds no control
        /// character or line separator; the same through the escaping `fmt::Write`.
        #[test]
        fn any_string_round_trips(s in ".*", pieces in proptest::collection::vec(".{0,8}", 0..6)) {
            let mut out = String::new();
            push_json_string(&mut out, &s);
            proptest::prop_assert!(!out.chars().any(|c| c.is_control() || c == '\u{2028}' || c == '\u{2029}'), "{:?}", out);
            let back: String = serde_json::from_str(&out).expect("valid JSON string");
            proptest::prop_assert_eq!(back, s);

            // Formatting hands the escaping writer one piece at a time.
            struct Pieces<'a>(&'a [String]);
            impl fmt::Display for Pieces<'_> {
                fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                    self.0.iter().try_for_each(|p| f.write_str(p))
                }
            }
            let mut out = String::new();
            push_escaped(&mut out, format_args!("{}", Pieces(&pieces)));
            let back: String = serde_json::from_str(&out).expect("valid JSON string");
            proptest::prop_assert_eq!(back, pieces.concat());
        }

        /// Mostly plain ASCII with a special character anywhere (so in every position of the
        /// eight-byte words the fast path reads): the same guarantees, and the plain text copied as it is.
        #[test]
        fn mostly_ascii_strings_round_trip(s in "[ -~]{0,12}[\\x00-\\x1f\"\\\\\\x7f\u{80}-\u{a0}\u{2028}\u{2029}é]?[ -~]{0,12}") {
            let mut out = String::new();
            push_json_string(&mut out, &s);
            proptest::prop_assert!(!out.chars().any(|c| c.is_control() || c == '\u{2028}' || c == '\u{2029}'), "{:?}", out);
            let back: String = serde_json::from_str(&out).expect("valid JSON string");
            proptest::prop_assert_eq!(&back, &s);
            if s.bytes().all(|b| (b' '..=b'~').contains(&b) && b != b'"' && b != b'\\') {
                proptest::prop_assert_eq!(&out[1..out.len() - 1], s.as_str());
            }
        }

        /// The cached timestamp is what chrono writes, to the microsecond.
        #[test]
        fn timestamps_match_chrono(secs in 0u64..253_402_300_799, micros in 0u32..1_000_000) {
            let at = std::time::UNIX_EPOCH + std::time::Duration::new(secs, micros * 1000);
            let mut out = String::new();
            push_timestamp(&mut out, at);
            let expected = chrono::DateTime::<chrono::Utc>::from(at)
                .to_rfc3339_opts(chrono::SecondsFormat::Micros, true);
            proptest::prop_assert_eq!(&out, &expected);
            // Twice in the same second: the cached prefix.
            out.clear();
            push_timestamp(&mut out, at);
            proptest::prop_assert_eq!(out, expected);
        }
    }

    #[test]
    fn ids_are_written_as_hex_strings() {
        let trace = watchpost_core::TraceId([
            0x0a, 0xf7, 0x65, 0x19, 0x16, 0xcd, 0x43, 0xdd, 0x84, 0x48, 0xeb, 0x21, 0x1c, 0x80,
            0x31, 0x9c,
        ]);
        let mut out = String::new();
        push_hex_field(&mut out, "trace_id", trace.encode_hex(&mut [0; 32]));
        assert_eq!(out, ",\"trace_id\":\"0af7651916cd43dd8448eb211c80319c\"");
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
        let c = LoggingConfig::from_lookup(|k| (k == "WATCHPOST_LOG_FLUSH_MS").then(|| "0".into()))
            .unwrap();
        assert_eq!(c.flush_interval, Duration::ZERO);
        for bad in ["-1", "10001", "0.5", "soon"] {
            let err =
                LoggingConfig::from_lookup(|k| (k == "WATCHPOST_LOG_FLUSH_MS").then(|| bad.into()))
                    .unwrap_err();
            assert!(
                err.to_string()
                    .starts_with("invalid WATCHPOST_LOG_FLUSH_MS="),
                "{err}"
            );
        }
    }
}
