//! [`HttpMetricsLayer`]: the tower middleware that records every HTTP request.
//!
//! It reads the route template from axum's [`MatchedPath`] (so add it with `Router::layer`,
//! where the router has already matched), falls back to the `route` of the core
//! [`RequestContext`], and uses the fixed value [`UNMATCHED_ROUTE`] for requests that matched
//! no route: the raw path never becomes a label. The duration is measured until the response
//! head is ready; when the request carries a sampled trace, the observation keeps an exemplar.
//! The in-flight gauge is decremented when the response future completes *or* is dropped
//! (a client that disconnects mid-request).
//!
//! # Example
//!
//! ```
//! use axum::{Router, routing::get};
//! use watchpost_metrics::{Metrics, MetricsConfig};
//!
//! let metrics = Metrics::new(MetricsConfig::default()).unwrap();
//! let app: Router = Router::new()
//!     .route("/hello", get(|| async { "hi" }))
//!     .layer(metrics.layer());
//! ```

use std::cell::RefCell;
use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, RwLock};
use std::task::{Context, Poll, ready};
use std::time::Duration;

use axum::extract::MatchedPath;
use http::{Request, Response};
use http_body::Body;
use pin_project_lite::pin_project;
use tower_layer::Layer;
use tower_service::Service;
use watchpost_core::{RequestContext, SpanId, TraceId};

use crate::encode;
use crate::error::MetricsError;
use crate::family::{
    Buckets, CounterValue, Family, GaugeValue, HistogramValue, Kind, Series, SeriesValue,
};
use crate::registry::{CounterFamily, MetricsRegistry};
use crate::summary::{METHODS, RequestSummary, method_index};

/// The `http_route` (or `route`) value of requests that matched no route.
pub const UNMATCHED_ROUTE: &str = "unmatched";

/// The duration buckets of the OpenTelemetry HTTP semantic conventions, seconds.
pub const DURATION_BUCKETS: [f64; 14] = [
    0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0,
];

/// Body size buckets, bytes (`le="0"` counts empty bodies).
pub const BODY_SIZE_BUCKETS: [f64; 11] = [
    0.0,
    64.0,
    256.0,
    1024.0,
    4096.0,
    16384.0,
    65536.0,
    262_144.0,
    1_048_576.0,
    4_194_304.0,
    16_777_216.0,
];

/// Which names the HTTP families use.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum HttpNaming {
    /// OpenTelemetry HTTP semantic conventions: `http_server_request_duration_seconds{http_request_method,http_route,http_response_status_code}`.
    #[default]
    OpenTelemetry,
    /// The common Node conventions: `http_request_duration_seconds` and `http_requests_total` with `method`, `route`, `status_code`.
    Legacy,
    /// Both sets, for moving dashboards from one to the other.
    Both,
}

/// The HTTP instruments and the request summary, shared by every clone of the layer.
#[derive(Debug)]
pub(crate) struct HttpInstruments {
    exclude: Vec<String>,
    otel: Option<OtelFamilies>,
    legacy: Option<LegacyFamilies>,
    active: Arc<Series<GaugeValue>>,
    pub(crate) summary: Arc<RequestSummary>,
    /// The series each (method, status, route) records into, resolved on its first request, so
    /// that a request hashes one short key once instead of writing and hashing its label text
    /// in every family. Only series the families kept are cached: a label set folded into the
    /// overflow series takes the uncached path, which counts every fold.
    resolved: RwLock<HashMap<Box<str>, ResolvedSeries, foldhash::fast::RandomState>>,
}

/// The most (method, status, route) combinations [`HttpInstruments`] caches; past it, requests
/// take the uncached path. Routes are templates, so a real router stays far below it.
const MAX_RESOLVED: usize = 4096;

type Histogram = Arc<Series<HistogramValue>>;

/// The series of one (method, status, route), resolved once.
#[derive(Debug)]
struct ResolvedSeries {
    /// Duration, request size, response size.
    otel: Option<[Histogram; 3]>,
    /// Duration, total.
    legacy: Option<(Histogram, Arc<Series<CounterValue>>)>,
}

impl ResolvedSeries {
    fn observe(&self, r: &Recording, secs: f64, resp_size: Option<u64>) {
        if let Some([duration, request_size, response_size]) = &self.otel {
            duration.value.observe(secs, r.exemplar);
            if let Some(n) = r.request_size {
                request_size.value.observe(n as f64, None);
            }
            if let Some(n) = resp_size {
                response_size.value.observe(n as f64, None);
            }
        }
        if let Some((duration, total)) = &self.legacy {
            duration.value.observe(secs, r.exemplar);
            total.value.inc_by(1);
        }
    }
}

#[derive(Debug)]
struct OtelFamilies {
    label_names: Box<[String]>,
    duration: Arc<Family<HistogramValue>>,
    request_size: Arc<Family<HistogramValue>>,
    response_size: Arc<Family<HistogramValue>>,
}

#[derive(Debug)]
struct LegacyFamilies {
    label_names: Box<[String]>,
    duration: Arc<Family<HistogramValue>>,
    total: CounterFamily<3>,
}

fn histogram(
    registry: &MetricsRegistry,
    name: &str,
    help: &str,
    labels: &[&str],
    bounds: &[f64],
) -> Result<Arc<Family<HistogramValue>>, MetricsError> {
    let buckets = Buckets::new(bounds);
    registry.family(name, help, Kind::Histogram, labels, move || {
        HistogramValue::new(buckets.clone())
    })
}

impl HttpInstruments {
    pub(crate) fn register(
        registry: &MetricsRegistry,
        naming: HttpNaming,
        exclude: Vec<String>,
        summary: Arc<RequestSummary>,
    ) -> Result<Self, MetricsError> {
        let otel_labels = [
            "http_request_method",
            "http_route",
            "http_response_status_code",
        ];
        let legacy_labels = ["method", "route", "status_code"];
        let otel = if matches!(naming, HttpNaming::OpenTelemetry | HttpNaming::Both) {
            Some(OtelFamilies {
                label_names: otel_labels.iter().map(|s| (*s).to_owned()).collect(),
                duration: histogram(
                    registry,
                    "http_server_request_duration_seconds",
                    "Duration of HTTP server requests, until the response head is ready.",
                    &otel_labels,
                    &DURATION_BUCKETS,
                )?,
                request_size: histogram(
                    registry,
                    "http_server_request_body_size_bytes",
                    "Size of HTTP server request bodies (when the length is known up front).",
                    &otel_labels,
                    &BODY_SIZE_BUCKETS,
                )?,
                response_size: histogram(
                    registry,
                    "http_server_response_body_size_bytes",
                    "Size of HTTP server response bodies (when the length is known up front).",
                    &otel_labels,
                    &BODY_SIZE_BUCKETS,
                )?,
            })
        } else {
            None
        };
        let legacy = if matches!(naming, HttpNaming::Legacy | HttpNaming::Both) {
            Some(LegacyFamilies {
                label_names: legacy_labels.iter().map(|s| (*s).to_owned()).collect(),
                duration: histogram(
                    registry,
                    "http_request_duration_seconds",
                    "Duration of HTTP requests in seconds.",
                    &legacy_labels,
                    &DURATION_BUCKETS,
                )?,
                total: registry.counter(
                    "http_requests_total",
                    "Total number of HTTP requests.",
                    legacy_labels,
                )?,
            })
        } else {
            None
        };
        let active = registry
            .family(
                "http_server_active_requests",
                "Number of HTTP server requests in flight.",
                Kind::Gauge,
                &[],
                GaugeValue::default,
            )?
            .series(&[]);
        Ok(Self {
            exclude,
            otel,
            legacy,
            active,
            summary,
            resolved: RwLock::new(HashMap::default()),
        })
    }

    fn excluded(&self, path: &str) -> bool {
        self.exclude.iter().any(|p| match p.strip_suffix('*') {
            Some(prefix) => path.starts_with(prefix),
            None => path == p,
        })
    }

    /// In-flight requests now.
    pub(crate) fn active(&self) -> i64 {
        self.active.value.get()
    }

    fn record(
        &self,
        r: &Recording,
        status: http::StatusCode,
        elapsed: Duration,
        resp_size: Option<u64>,
    ) {
        let method = METHODS[r.method];
        let route = match &r.route {
            Route::Matched(m) => m.as_str(),
            Route::Context(s) => s,
            Route::Unmatched => UNMATCHED_ROUTE,
        };
        let secs = elapsed.as_secs_f64();
        with_key_buffer(|key| {
            // The cache key: the method's index as one character, the three status digits, the route.
            key.clear();
            key.push(char::from(u8::try_from(r.method).unwrap_or(u8::MAX)));
            key.push_str(status.as_str());
            key.push_str(route);
            let full = {
                let resolved = self.resolved.read().unwrap_or_else(|e| e.into_inner());
                if let Some(series) = resolved.get(key.as_str()) {
                    series.observe(r, secs, resp_size);
                    return;
                }
                resolved.len() >= MAX_RESOLVED
            };
            let values = [method, route, status.as_str()];
            // Once the cache is full, no write lock per request: straight to the folding lookup.
            let kept = if full {
                None
            } else {
                self.resolve(values, false)
            };
            match kept {
                Some(series) => {
                    series.observe(r, secs, resp_size);
                    let mut resolved = self.resolved.write().unwrap_or_else(|e| e.into_inner());
                    if resolved.len() < MAX_RESOLVED {
                        resolved.entry(Box::from(key.as_str())).or_insert(series);
                    }
                }
                None => {
                    if let Some(series) = self.resolve(values, true) {
                        series.observe(r, secs, resp_size);
                    }
                }
            }
        });
        self.summary.record(r.method, status.as_u16(), elapsed);
    }

    /// The series of `values` in every family. Without `fold`, only when every family keeps
    /// them (under its cap), for the cache; with `fold`, a family past its cap gives its overflow
    /// series and counts the fold, so the result is always there.
    fn resolve(&self, values: [&str; 3], fold: bool) -> Option<ResolvedSeries> {
        fn pick<V: SeriesValue>(
            family: &Family<V>,
            labels: &str,
            fold: bool,
        ) -> Option<Arc<Series<V>>> {
            if fold {
                Some(family.lookup(labels))
            } else {
                family.kept(labels)
            }
        }
        let mut labels = String::new();
        let otel = match &self.otel {
            Some(otel) => {
                encode::push_label_pairs(&mut labels, &otel.label_names, values);
                Some([
                    pick(&otel.duration, &labels, fold)?,
                    pick(&otel.request_size, &labels, fold)?,
                    pick(&otel.response_size, &labels, fold)?,
                ])
            }
            None => None,
        };
        let legacy = match &self.legacy {
            Some(legacy) => {
                labels.clear();
                encode::push_label_pairs(&mut labels, &legacy.label_names, values);
                Some((
                    pick(&legacy.duration, &labels, fold)?,
                    pick(legacy.total.family(), &labels, fold)?,
                ))
            }
            None => None,
        };
        Some(ResolvedSeries { otel, legacy })
    }
}

thread_local! {
    static KEY: RefCell<String> = const { RefCell::new(String::new()) };
}

fn with_key_buffer(f: impl FnOnce(&mut String)) {
    KEY.with(|cell| match cell.try_borrow_mut() {
        Ok(mut buf) => f(&mut buf),
        Err(_) => f(&mut String::new()),
    });
}

/// Records HTTP server metrics for every request; made by [`Metrics::layer`](crate::Metrics::layer).
#[derive(Debug, Clone)]
pub struct HttpMetricsLayer {
    instruments: Arc<HttpInstruments>,
}

impl HttpMetricsLayer {
    pub(crate) fn new(instruments: Arc<HttpInstruments>) -> Self {
        Self { instruments }
    }
}

impl<S> Layer<S> for HttpMetricsLayer {
    type Service = HttpMetrics<S>;

    fn layer(&self, inner: S) -> Self::Service {
        HttpMetrics {
            inner,
            instruments: self.instruments.clone(),
        }
    }
}

/// The service made by [`HttpMetricsLayer`].
#[derive(Debug, Clone)]
pub struct HttpMetrics<S> {
    inner: S,
    instruments: Arc<HttpInstruments>,
}

impl<S> HttpMetrics<S> {
    /// The wrapped service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// The wrapped service, mutably.
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }

    /// Unwraps the service.
    pub fn into_inner(self) -> S {
        self.inner
    }
}

#[derive(Debug)]
enum Route {
    Matched(MatchedPath),
    Context(std::sync::Arc<str>),
    Unmatched,
}

/// Decrements the in-flight gauge when dropped, whether the request finished or not.
#[derive(Debug)]
struct ActiveGuard(Arc<Series<GaugeValue>>);

impl Drop for ActiveGuard {
    fn drop(&mut self) {
        self.0.value.add(-1);
    }
}

/// What the layer learned from the request, kept until the response is ready.
#[derive(Debug)]
struct Recording {
    instruments: Arc<HttpInstruments>,
    method: usize,
    route: Route,
    exemplar: Option<(TraceId, SpanId)>,
    request_size: Option<u64>,
    start: tokio::time::Instant,
    _active: ActiveGuard,
}

fn content_length(headers: &http::HeaderMap) -> Option<u64> {
    headers
        .get(http::header::CONTENT_LENGTH)?
        .to_str()
        .ok()?
        .parse()
        .ok()
}

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for HttpMetrics<S>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>>,
    ReqBody: Body,
    ResBody: Body,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<ReqBody>) -> Self::Future {
        if self.instruments.excluded(req.uri().path()) {
            return ResponseFuture {
                inner: self.inner.call(req),
                recording: None,
            };
        }
        let extensions = req.extensions();
        let context = extensions.get::<RequestContext>();
        let route = match (
            extensions.get::<MatchedPath>(),
            context.and_then(|c| c.route.as_ref()),
        ) {
            (Some(m), _) => Route::Matched(m.clone()),
            (None, Some(r)) => Route::Context(r.clone()),
            (None, None) => Route::Unmatched,
        };
        let exemplar = context.and_then(|c| match (c.sampled, c.trace_id, c.span_id) {
            (true, Some(t), Some(s)) => Some((t, s)),
            _ => None,
        });
        let request_size = content_length(req.headers()).or_else(|| req.body().size_hint().exact());
        let active = self.instruments.active.clone();
        active.value.add(1);
        let recording = Recording {
            instruments: self.instruments.clone(),
            method: method_index(req.method()),
            route,
            exemplar,
            request_size,
            start: tokio::time::Instant::now(),
            _active: ActiveGuard(active),
        };
        ResponseFuture {
            inner: self.inner.call(req),
            recording: Some(recording),
        }
    }
}

pin_project! {
    /// The response future of [`HttpMetrics`].
    #[derive(Debug)]
    pub struct ResponseFuture<F> {
        #[pin]
        inner: F,
        recording: Option<Recording>,
    }
}

impl<F, ResBody, E> Future for ResponseFuture<F>
where
    F: Future<Output = Result<Response<ResBody>, E>>,
    ResBody: Body,
{
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let result = ready!(this.inner.poll(cx));
        // Dropping the recording decrements the in-flight gauge, also when the service failed.
        if let Some(recording) = this.recording.take()
            && let Ok(response) = &result
        {
            let elapsed = recording.start.elapsed();
            let size = response
                .body()
                .size_hint()
                .exact()
                .or_else(|| content_length(response.headers()));
            recording
                .instruments
                .record(&recording, response.status(), elapsed, size);
        }
        Poll::Ready(result)
    }
}
