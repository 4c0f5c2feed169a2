//! The one request log line written when a request completes.
//!
//! Fields: `type="request"`, `method`, `route`, `path`, `status`, `durationMs`, `apiKeyId`,
//! `tenantId`, `requestId`, `correlationId`, `traceId`, `spanId`. Level `error` for 5xx, `warn` for
//! 4xx, `info` otherwise; target `watchpost_correlation::request`, so `RUST_LOG` can silence it alone.
//! Values are recorded as structured fields, so the JSON formatter escapes control characters
//! (a path with `%0a` decoded by someone else can never split the line).

use watchpost_core::RequestContext;

/// The target of request log lines.
pub const REQUEST_LOG_TARGET: &str = "watchpost_correlation::request";

/// One completed request.
#[derive(Debug)]
pub(crate) struct RequestLine<'a> {
    pub(crate) method: &'a str,
    pub(crate) route: Option<&'a str>,
    pub(crate) path: &'a str,
    pub(crate) status: u16,
    pub(crate) duration_ms: f64,
    pub(crate) api_key_id: Option<&'a str>,
    pub(crate) tenant_id: Option<&'a str>,
    pub(crate) ctx: &'a RequestContext,
}

macro_rules! request_event {
    ($level:expr, $line:expr, $trace:expr, $span:expr) => {
        tracing::event!(
            target: "watchpost_correlation::request",
            $level,
            // The message as a plain field (first, where a format message goes): formatters and
            // the OpenTelemetry layer treat a field named `message` as the message, and a `&str`
            // is recorded without going through `fmt`.
            message = "request completed",
            method = $line.method,
            "type" = "request",
            route = $line.route,
            path = $line.path,
            status = $line.status,
            durationMs = $line.duration_ms,
            apiKeyId = $line.api_key_id,
            tenantId = $line.tenant_id,
            requestId = $line.ctx.request_id.as_str(),
            correlationId = $line.ctx.correlation_id.as_str(),
            traceId = $trace,
            spanId = $span
        )
    };
}

pub(crate) fn emit_request_line(line: &RequestLine<'_>) {
    // The ids as text in stack buffers, so they are recorded as strings.
    let (mut trace_hex, mut span_hex) = ([0; 32], [0; 32]);
    let trace = line.ctx.trace_id.map(|t| t.encode_hex(&mut trace_hex));
    let span = line.ctx.span_id.map(|s| s.encode_hex(&mut span_hex));
    match line.status {
        500.. => request_event!(tracing::Level::ERROR, line, trace, span),
        400..500 => request_event!(tracing::Level::WARN, line, trace, span),
        _ => request_event!(tracing::Level::INFO, line, trace, span),
    }
}
