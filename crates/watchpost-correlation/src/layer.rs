//! [`CorrelationLayer`]: the outermost tower layer: ids, trace context, the server span, the request
//! context, the request log line, problem bodies with the request id, and panics turned into 500s.
//!
//! # Example
//!
//! ```
//! use axum::{Router, routing::get};
//! use watchpost_correlation::{CorrelationConfig, CorrelationLayer};
//!
//! let correlation = CorrelationLayer::new(CorrelationConfig::default());
//! let app: Router = Router::new()
//!     .route("/hello", get(|| async { "hi" }))
//!     .merge(correlation.router())
//!     // `Router::layer` so the route template (`MatchedPath`) is known to the layer.
//!     .layer(correlation.clone());
//! ```

use std::any::Any;
use std::fmt;
use std::future::Future;
use std::net::SocketAddr;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use axum::body::Body;
use axum::extract::{ConnectInfo, MatchedPath};
use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Method, Request, Response, StatusCode};
use opentelemetry::trace::{TraceContextExt, TraceFlags, TraceState};
use pin_project_lite::pin_project;
use prometheus_client::registry::Registry;
use tokio::task::futures::TaskLocalFuture;
use tracing::field::Empty;
use tracing_opentelemetry::OpenTelemetrySpanExt;
use watchpost_core::{
    CorrelationId, Principal, Problem, RequestContext, RequestId, SharedClock, SpanId, SystemClock,
    TraceId, TrustedProxies,
};

use crate::errors::{ErrorGroups, ErrorOccurrence, take_panic_report};
use crate::ids::{CORRELATION_ID_HEADER, REQUEST_ID_HEADER, ReceivedId, received_id};
use crate::metrics::{CorrelationMetrics, ErrorKind, IdHeader};
use crate::otel::Propagators;
use crate::request_log::{RequestLine, emit_request_line};
use crate::traceparent::{
    BAGGAGE, FLAG_RANDOM, FLAG_SAMPLED, TRACEPARENT, TraceParent, format_traceparent,
    tracestate_from_headers,
};

/// How the correlation layer behaves; plain fields the server maps its configuration onto.
#[derive(Debug, Clone)]
pub struct CorrelationConfig {
    /// Proxies whose `Forwarded`/`X-Forwarded-For` are believed for `client.address`.
    pub trusted_proxies: TrustedProxies,
    /// Whether responses carry a `traceparent` naming the server span (off by default).
    pub return_traceparent: bool,
    /// Which incoming headers continue a trace (`OTEL_PROPAGATORS`).
    pub propagators: Propagators,
    /// Whether the one request log line is written (turn off to sample request logging away).
    pub request_log: bool,
    /// Bound on the number of error groups kept.
    pub max_error_groups: usize,
}

impl Default for CorrelationConfig {
    fn default() -> Self {
        Self {
            trusted_proxies: TrustedProxies::none(),
            return_traceparent: false,
            propagators: Propagators::default(),
            request_log: true,
            max_error_groups: crate::errors::DEFAULT_MAX_GROUPS,
        }
    }
}

#[derive(Debug)]
struct Shared {
    config: CorrelationConfig,
    metrics: CorrelationMetrics,
    errors: ErrorGroups,
}

/// The correlation layer; clones share metrics and error groups.
#[derive(Debug, Clone)]
pub struct CorrelationLayer {
    shared: Arc<Shared>,
}

impl CorrelationLayer {
    /// A layer with `config`, timestamping error groups with the system clock.
    pub fn new(config: CorrelationConfig) -> Self {
        Self::with_clock(config, SystemClock::shared())
    }

    /// A layer whose error groups are timestamped by `clock`.
    pub fn with_clock(config: CorrelationConfig, clock: SharedClock) -> Self {
        let errors = ErrorGroups::new(config.max_error_groups, clock);
        Self {
            shared: Arc::new(Shared {
                config,
                metrics: CorrelationMetrics::default(),
                errors,
            }),
        }
    }

    /// The router serving `GET /errors` (root only) over this layer's error groups.
    pub fn router(&self) -> axum::Router {
        crate::errors::router(self.shared.errors.clone())
    }

    /// The error groups this layer records into.
    pub fn errors(&self) -> &ErrorGroups {
        &self.shared.errors
    }

    /// The layer's counters.
    pub fn metrics(&self) -> &CorrelationMetrics {
        &self.shared.metrics
    }

    /// Registers `watchpost_correlation_rejected_ids_total` and `watchpost_errors_total` into `registry`.
    pub fn register_metrics(&self, registry: &mut Registry) {
        self.shared.metrics.register(registry);
    }
}

impl<S> tower_layer::Layer<S> for CorrelationLayer {
    type Service = Correlation<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Correlation {
            inner,
            shared: self.shared.clone(),
        }
    }
}

/// The service made by [`CorrelationLayer`].
#[derive(Clone)]
pub struct Correlation<S> {
    inner: S,
    shared: Arc<Shared>,
}

impl<S> fmt::Debug for Correlation<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Correlation")
            .field("config", &self.shared.config)
            .finish_non_exhaustive()
    }
}

impl<S> Correlation<S> {
    /// The inner service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// The inner service, mutably.
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }

    /// Unwraps the inner service.
    pub fn into_inner(self) -> S {
        self.inner
    }
}

/// The HTTP method as the semantic conventions name it: known methods as they are, others `_OTHER`.
fn semconv_method(method: &Method) -> (&'static str, bool) {
    match *method {
        Method::GET => ("GET", true),
        Method::HEAD => ("HEAD", true),
        Method::POST => ("POST", true),
        Method::PUT => ("PUT", true),
        Method::DELETE => ("DELETE", true),
        Method::CONNECT => ("CONNECT", true),
        Method::OPTIONS => ("OPTIONS", true),
        Method::TRACE => ("TRACE", true),
        Method::PATCH => ("PATCH", true),
        _ => ("_OTHER", false),
    }
}

struct HeaderExtractor<'a>(&'a HeaderMap);

impl opentelemetry::propagation::Extractor for HeaderExtractor<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|v| v.to_str().ok())
    }

    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(http::HeaderName::as_str).collect()
    }
}

/// What the response future needs to finish the request.
struct Finish {
    shared: Arc<Shared>,
    span: tracing::Span,
    ctx: RequestContext,
    flags: u8,
    method: &'static str,
    method_original: Option<String>,
    uri: http::Uri,
    start: tokio::time::Instant,
}

impl<S, ReqBody, ResBody> tower_service::Service<Request<ReqBody>> for Correlation<S>
where
    S: tower_service::Service<Request<ReqBody>, Response = Response<ResBody>>,
    ResBody: http_body::Body<Data = Bytes> + Send + 'static,
    ResBody::Error: Into<axum::BoxError>,
{
    type Response = Response<Body>;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request<ReqBody>) -> Self::Future {
        let start = tokio::time::Instant::now();
        let shared = self.shared.clone();
        let config = &shared.config;
        let headers = req.headers();

        let request_id = match received_id(headers, &REQUEST_ID_HEADER) {
            ReceivedId::Valid(v) => RequestId::parse(&v).unwrap_or_else(|_| RequestId::generate()),
            ReceivedId::Absent => RequestId::generate(),
            ReceivedId::Rejected => {
                shared.metrics.reject(IdHeader::RequestId);
                RequestId::generate()
            }
        };
        let correlation_id = match received_id(headers, &CORRELATION_ID_HEADER) {
            ReceivedId::Valid(v) => {
                CorrelationId::parse(&v).unwrap_or_else(|_| CorrelationId::from(&request_id))
            }
            ReceivedId::Absent => CorrelationId::from(&request_id),
            ReceivedId::Rejected => {
                shared.metrics.reject(IdHeader::CorrelationId);
                CorrelationId::from(&request_id)
            }
        };

        let (method, known) = semconv_method(req.method());
        let method_original = (!known).then(|| req.method().as_str().to_owned());
        let route = req
            .extensions()
            .get::<MatchedPath>()
            .map(|m| Arc::<str>::from(m.as_str()));
        // A clone of the parsed URI shares hyper's buffer: no copy of the path.
        let uri = req.uri().clone();
        let span_name = SpanName {
            method: if known { method } else { "HTTP" },
            route: route.as_deref(),
        };
        let host = headers
            .get(http::header::HOST)
            .and_then(|h| h.to_str().ok())
            .or_else(|| req.uri().host())
            .map(strip_port);
        let user_agent = headers
            .get(http::header::USER_AGENT)
            .and_then(|h| h.to_str().ok());
        let client_ip = req
            .extensions()
            .get::<ConnectInfo<SocketAddr>>()
            .map(|ConnectInfo(peer)| config.trusted_proxies.client_ip(peer.ip(), headers));
        // Everything known now is recorded at creation: each later `record` costs a dispatch per layer.
        let span = tracing::info_span!(
            target: "watchpost_correlation",
            "request",
            otel.name = %span_name,
            otel.kind = "server",
            otel.status_code = Empty,
            http.request.method = method,
            http.request.method_original = method_original.as_deref(),
            url.path = uri.path(),
            url.scheme = req.uri().scheme_str().unwrap_or("http"),
            http.route = route.as_deref(),
            http.response.status_code = Empty,
            "error.type" = Empty,
            server.address = host,
            client.address = client_ip.map(tracing::field::display),
            user_agent.original = user_agent,
            request_id = %request_id,
            correlation_id = %correlation_id,
            trace_id = Empty,
            span_id = Empty,
        );

        // Trace context: strict parse, then let the OpenTelemetry layer (when installed) open the span under it.
        let parent = config
            .propagators
            .trace_context
            .then(|| TraceParent::from_headers(headers))
            .flatten();
        let mut otel_parent: Option<opentelemetry::Context> = None;
        if let Some(p) = &parent {
            let state = tracestate_from_headers(headers)
                .and_then(|s| s.parse::<TraceState>().ok())
                .unwrap_or_default();
            let remote = opentelemetry::trace::SpanContext::new(
                opentelemetry::trace::TraceId::from_bytes(p.trace_id.0),
                opentelemetry::trace::SpanId::from_bytes(p.parent_id.0),
                TraceFlags::new(p.flags),
                true,
                state,
            );
            otel_parent = Some(opentelemetry::Context::new().with_remote_span_context(remote));
        }
        if config.propagators.baggage && headers.contains_key(BAGGAGE) {
            use opentelemetry::propagation::TextMapPropagator;
            let base = otel_parent.take().unwrap_or_default();
            let propagator = opentelemetry_sdk::propagation::BaggagePropagator::new();
            otel_parent = Some(propagator.extract_with_context(&base, &HeaderExtractor(headers)));
        }
        if let Some(cx) = otel_parent {
            // Fails only when no OpenTelemetry layer is installed; the ids below are then our own.
            let _ = span.set_parent(cx);
        }
        let otel_cx = span.context();
        let otel_span = otel_cx.span();
        let sc = otel_span.span_context();
        let (trace_id, span_id, sampled) = if sc.is_valid() {
            (
                TraceId(sc.trace_id().to_bytes()),
                SpanId(sc.span_id().to_bytes()),
                sc.is_sampled(),
            )
        } else {
            (
                parent.map(|p| p.trace_id).unwrap_or_else(random_trace_id),
                random_span_id(),
                parent.is_some_and(|p| p.sampled()),
            )
        };
        let random = parent.map_or(FLAG_RANDOM, |p| p.flags & FLAG_RANDOM);
        let flags = random | if sampled { FLAG_SAMPLED } else { 0 };
        span.record("trace_id", tracing::field::display(trace_id));
        span.record("span_id", tracing::field::display(span_id));

        let mut ctx = RequestContext::with_ids(request_id, correlation_id)
            .with_trace(trace_id, span_id, sampled);
        ctx.client_ip = client_ip;
        ctx.route = route;
        ctx.principal = req.extensions().get::<Principal>().cloned();
        req.extensions_mut().insert(ctx.clone());

        let finish = Finish {
            shared: self.shared.clone(),
            span: span.clone(),
            ctx: ctx.clone(),
            flags,
            method,
            method_original,
            uri,
            start,
        };
        let inner = &mut self.inner;
        let called = {
            let _entered = span.enter();
            std::panic::catch_unwind(AssertUnwindSafe(|| inner.call(req)))
        };
        let state = match called {
            Ok(future) => State::Running {
                future: crate::context::task_local_future(ctx, future),
            },
            Err(payload) => State::Panicked {
                payload: Some(payload),
            },
        };
        ResponseFuture {
            state,
            finish: Some(Box::new(finish)),
        }
    }
}

/// The server span's name, `{method} {route}` (or the method alone): formatted only when a
/// subscriber records the span, so a span nobody wants costs no allocation.
struct SpanName<'a> {
    method: &'a str,
    route: Option<&'a str>,
}

impl fmt::Display for SpanName<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.method)?;
        if let Some(route) = self.route {
            write!(f, " {route}")?;
        }
        Ok(())
    }
}

fn strip_port(host: &str) -> &str {
    if host.starts_with('[') {
        return host.split(']').next().map_or(host, |h| &h[1..]);
    }
    host.rsplit_once(':').map_or(host, |(h, _)| h)
}

fn random_trace_id() -> TraceId {
    loop {
        let bytes: [u8; 16] = rand::random();
        if bytes != [0; 16] {
            return TraceId(bytes);
        }
    }
}

fn random_span_id() -> SpanId {
    loop {
        let bytes: [u8; 8] = rand::random();
        if bytes != [0; 8] {
            return SpanId(bytes);
        }
    }
}

pin_project! {
    #[project = StateProj]
    enum State<F> {
        Running { #[pin] future: TaskLocalFuture<RequestContext, F> },
        Panicked { payload: Option<Box<dyn Any + Send>> },
    }
}

pin_project! {
    /// The response future of [`Correlation`].
    pub struct ResponseFuture<F> {
        #[pin]
        state: State<F>,
        finish: Option<Box<Finish>>,
    }
}

impl<F> fmt::Debug for ResponseFuture<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResponseFuture").finish_non_exhaustive()
    }
}

impl<F, ResBody, E> Future for ResponseFuture<F>
where
    F: Future<Output = Result<Response<ResBody>, E>>,
    ResBody: http_body::Body<Data = Bytes> + Send + 'static,
    ResBody::Error: Into<axum::BoxError>,
{
    type Output = Result<Response<Body>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let payload = match this.state.project() {
            StateProj::Running { future } => {
                let polled = {
                    let _entered = this.finish.as_ref().map(|f| f.span.enter());
                    std::panic::catch_unwind(AssertUnwindSafe(|| future.poll(cx)))
                };
                match polled {
                    Ok(Poll::Pending) => return Poll::Pending,
                    Ok(Poll::Ready(result)) => {
                        let Some(finish) = this.finish.take() else {
                            return Poll::Pending;
                        };
                        return Poll::Ready(match result {
                            Ok(response) => Ok(finish.complete(response.map(Body::new), false)),
                            Err(error) => {
                                finish.failed();
                                Err(error)
                            }
                        });
                    }
                    Err(payload) => payload,
                }
            }
            StateProj::Panicked { payload } => match payload.take() {
                Some(payload) => payload,
                None => return Poll::Pending,
            },
        };
        let Some(finish) = this.finish.take() else {
            return Poll::Pending;
        };
        Poll::Ready(Ok(finish.panicked(payload.as_ref())))
    }
}

impl Finish {
    fn panicked(self, payload: &(dyn Any + Send)) -> Response<Body> {
        let report = take_panic_report(payload);
        let shared = self.shared.clone();
        shared.metrics.error(ErrorKind::Panic);
        let fingerprint = shared.errors.record(&ErrorOccurrence {
            kind: ErrorKind::Panic,
            error_type: "panic",
            message: &report.message,
            location: &report.location,
            request_id: Some(self.ctx.request_id.as_str()),
        });
        if !report.logged {
            crate::context::sync_scope(self.ctx.clone(), || {
                let _entered = self.span.enter();
                tracing::event!(
                    target: "watchpost_correlation",
                    tracing::Level::ERROR,
                    exception.message = %report.message,
                    "exception.type" = "panic",
                    exception.stacktrace = %report.backtrace,
                    code.location = %report.location,
                    error.fingerprint = %fingerprint,
                    "exception"
                );
            });
        }
        let problem = Problem::internal()
            .with_request_id(self.ctx.request_id.as_str())
            .with_instance(self.uri.path());
        let response = problem.to_http_response().map(Body::from);
        self.complete(response, true)
    }

    fn failed(self) {
        let status = StatusCode::INTERNAL_SERVER_ERROR;
        self.record_status(status);
        self.span.record("error.type", "service_error");
        self.log(status, None);
    }

    fn record_status(&self, status: StatusCode) {
        self.span
            .record("http.response.status_code", status.as_u16());
        if status.is_server_error() {
            self.span.record("error.type", status.as_str());
            self.span.record("otel.status_code", "ERROR");
        }
    }

    fn complete(self, mut response: Response<Body>, from_panic: bool) -> Response<Body> {
        let status = response.status();
        self.record_status(status);

        // Every problem body carries the request id, even when the inner layer did not know it.
        let problem = response.extensions().get::<Problem>().cloned();
        if let Some(problem) = &problem
            && problem.request_id.is_none()
        {
            let filled = problem
                .clone()
                .with_request_id(self.ctx.request_id.as_str());
            response.headers_mut().remove(http::header::CONTENT_LENGTH);
            *response.body_mut() = Body::from(filled.to_json());
            response.extensions_mut().insert(filled);
        }

        if status.is_server_error() && !from_panic {
            self.shared.metrics.error(ErrorKind::ServerError);
            let error_type = problem
                .as_ref()
                .map(|p| p.type_.clone())
                .unwrap_or_else(|| format!("http_{}", status.as_u16()));
            let message = problem
                .as_ref()
                .map(|p| p.title.clone())
                .unwrap_or_else(|| status.canonical_reason().unwrap_or("error").to_owned());
            self.shared.errors.record(&ErrorOccurrence {
                kind: ErrorKind::ServerError,
                error_type: &error_type,
                message: &message,
                location: self.ctx.route.as_deref().unwrap_or("unmatched"),
                request_id: Some(self.ctx.request_id.as_str()),
            });
        }

        let headers = response.headers_mut();
        if let Ok(v) = HeaderValue::from_str(self.ctx.request_id.as_str()) {
            headers.insert(REQUEST_ID_HEADER, v);
        }
        if let Ok(v) = HeaderValue::from_str(self.ctx.correlation_id.as_str()) {
            headers.insert(CORRELATION_ID_HEADER, v);
        }
        if self.shared.config.return_traceparent
            && let (Some(t), Some(s)) = (self.ctx.trace_id, self.ctx.span_id)
            && let Ok(v) = HeaderValue::from_str(&format_traceparent(t, s, self.flags))
        {
            headers.insert(TRACEPARENT, v);
        }

        let principal = response
            .extensions()
            .get::<Principal>()
            .cloned()
            .or_else(|| self.ctx.principal.clone());
        self.log(status, principal.as_ref());
        response
    }

    fn log(self, status: StatusCode, principal: Option<&Principal>) {
        if !self.shared.config.request_log {
            return;
        }
        let duration_ms = self.start.elapsed().as_secs_f64() * 1000.0;
        let Finish {
            ctx,
            method,
            method_original,
            uri,
            ..
        } = self;
        // The context moves into the scope (no clone); the JSON formatter reads the ids from there.
        crate::context::sync_scope(ctx, || {
            crate::context::with_current(|ctx| {
                if let Some(ctx) = ctx {
                    // Emitted outside the server span on purpose: it carries every id itself, and inside
                    // the span the OpenTelemetry bridge would copy all its fields into a span event.
                    emit_request_line(&RequestLine {
                        method: method_original.as_deref().unwrap_or(method),
                        route: ctx.route.as_deref(),
                        path: uri.path(),
                        status: status.as_u16(),
                        duration_ms,
                        api_key_id: principal.map(|p| &*p.key_id),
                        tenant_id: principal.and_then(|p| p.tenant_id.as_deref()),
                        ctx,
                    });
                }
            });
        });
    }
}
