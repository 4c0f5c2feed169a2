//! Prometheus and OpenMetrics for axum: an HTTP metrics layer with OpenTelemetry names, a
//! cardinality cap, trace exemplars, process metrics and a fast `/metrics`.
//!
//! [`Metrics`] owns everything: [`Metrics::layer`] records each request
//! (`http_server_request_duration_seconds` and friends, route from axum's `MatchedPath`,
//! never the raw path), [`Metrics::router`] serves `GET /metrics` (Prometheus text 0.0.4, or
//! OpenMetrics 1.0 with exemplars when asked, gzip when asked, optional bearer token) and
//! `GET /metrics/summary` (root only), [`Metrics::registry`] gives the typed application-metrics
//! API, [`Metrics::add_registry`] adds the `prometheus_client` registries other crates filled,
//! and [`Metrics::db`] times database operations.
//!
//! # Example
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")] async fn main() {
//! use axum::{Router, body::Body, routing::get};
//! use http::Request;
//! use tower::ServiceExt;
//! use watchpost_metrics::{Metrics, MetricsConfig};
//!
//! let metrics = Metrics::new(MetricsConfig::default()).unwrap();
//! let app = Router::new()
//!     .route("/orders/{id}", get(|| async { "an order" }))
//!     .layer(metrics.layer())
//!     .merge(metrics.router());
//!
//! let response = app.clone()
//!     .oneshot(Request::get("/orders/42").body(Body::empty()).unwrap())
//!     .await
//!     .unwrap();
//! assert_eq!(response.status(), 200);
//!
//! let text = metrics.render(watchpost_metrics::Format::Prometheus);
//! assert!(text.contains(
//!     r#"http_server_request_duration_seconds_count{http_request_method="GET",http_route="/orders/{id}",http_response_status_code="200"} 1"#
//! ));
//! # }
//! ```
//!
//! # Feature flags
//!
//! | feature | default | what it adds |
//! | --- | --- | --- |
//! | `gzip` | on | gzip-compressed `/metrics` when `Accept-Encoding` allows it (flate2) |
//! | `openapi` | off | utoipa annotations on the handlers and [`openapi()`] |
//!
//! # Metrics written
//!
//! | name | type | labels |
//! | --- | --- | --- |
//! | `http_server_request_duration_seconds` | histogram | `http_request_method`, `http_route`, `http_response_status_code` |
//! | `http_server_request_body_size_bytes` | histogram | same |
//! | `http_server_response_body_size_bytes` | histogram | same |
//! | `http_server_active_requests` | gauge | none |
//! | `http_request_duration_seconds` (legacy naming) | histogram | `method`, `route`, `status_code` |
//! | `http_requests_total` (legacy naming) | counter | `method`, `route`, `status_code` |
//! | `db_client_operation_duration_seconds` | histogram | `operation`, `table` |
//! | `watchpost_metrics_overflow_total` | counter | `metric` |
//! | `watchpost_build_info` | gauge (OpenMetrics: info) | `version`, `revision`, `rustc` |
//! | `process_cpu_seconds_total`, `process_resident_memory_bytes`, `process_virtual_memory_bytes`, `process_open_fds`, `process_max_fds`, `process_start_time_seconds`, `process_threads` | counter / gauges | none (Linux only) |
//!
//! [`Metrics::describe`] returns the list from the live registry.
//!
//! # Hand-written parts
//!
//! The exposition writer for Watchpost's own families is written by hand (see the `encode`
//! module): label text is escaped once per series and copied at scrape time, the same storage
//! is written in both formats, and the cardinality cap needs our own storage. Registries of
//! `prometheus_client` handed in by other crates are encoded by prometheus-client (OpenMetrics)
//! and rewritten line by line to Prometheus text 0.0.4 by [`openmetrics_to_prometheus`].
//! Process metrics are read from `/proc` by hand (no libc, no `unsafe`).

mod db;
mod encode;
mod endpoint;
mod error;
mod family;
mod layer;
mod process;
mod registry;
mod summary;

use std::collections::BTreeMap;
use std::sync::Arc;

use watchpost_core::{SharedClock, SystemClock};

pub use db::{DB_DURATION_BUCKETS, DbMetrics, DbObserver, DbTimer};
pub use encode::{Format, openmetrics_to_prometheus};
pub use endpoint::{accepts_gzip, negotiate};
pub use error::MetricsError;
pub use layer::{
    BODY_SIZE_BUCKETS, DURATION_BUCKETS, HttpMetrics, HttpMetricsLayer, HttpNaming, ResponseFuture,
    UNMATCHED_ROUTE,
};
pub use process::{BuildInfo, ProcessStats};
pub use registry::{
    Counter, CounterFamily, Gauge, GaugeFamily, Histogram, HistogramFamily, MetricsRegistry,
    OVERFLOW_METRIC,
};
pub use summary::{RequestSummary, SummarySnapshot};

/// The default series limit of each family.
pub const DEFAULT_MAX_SERIES: usize = 2_000;

/// Configuration with plain fields (the server maps environment variables onto them).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(default)]
pub struct MetricsConfig {
    /// Which HTTP family names to write.
    pub naming: HttpNaming,
    /// Request paths the layer does not record: exact, or a prefix when ending in `*`.
    /// Default: `/metrics`, `/health*`.
    pub exclude_paths: Vec<String>,
    /// Series limit of each family (default 2,000).
    pub max_series_per_family: usize,
    /// Series limits for particular families, by name (`http_requests_total` or `http_requests`).
    pub series_limits: BTreeMap<String, usize>,
    /// When set, `/metrics` answers only requests bearing `Authorization: Bearer <token>`
    /// (or a root principal). The server maps `WATCHPOST_METRICS_TOKEN` here.
    pub token: Option<String>,
    /// What `watchpost_build_info` says; `None` leaves the family out.
    pub build_info: Option<BuildInfo>,
    /// Whether to write the `process_*` families (Linux).
    pub process_metrics: bool,
}

impl Default for MetricsConfig {
    fn default() -> Self {
        Self {
            naming: HttpNaming::OpenTelemetry,
            exclude_paths: vec!["/metrics".to_owned(), "/health*".to_owned()],
            max_series_per_family: DEFAULT_MAX_SERIES,
            series_limits: BTreeMap::new(),
            token: None,
            build_info: None,
            process_metrics: true,
        }
    }
}

/// The metrics of one process: registry, HTTP layer, endpoints. Clones share everything.
#[derive(Debug, Clone)]
pub struct Metrics {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    registry: MetricsRegistry,
    http: Arc<layer::HttpInstruments>,
    db: DbMetrics,
    token: Option<String>,
}

impl Metrics {
    /// Metrics with the system clock (for the summary's `since`).
    pub fn new(config: MetricsConfig) -> Result<Self, MetricsError> {
        Self::with_clock(config, SystemClock::shared())
    }

    /// Metrics with an injected clock.
    pub fn with_clock(config: MetricsConfig, clock: SharedClock) -> Result<Self, MetricsError> {
        if config.token.as_deref().is_some_and(|t| t.trim().is_empty()) {
            return Err(MetricsError::InvalidConfig {
                field: "token (WATCHPOST_METRICS_TOKEN)",
                reason:
                    "the scrape token is empty; unset it to leave /metrics open, or set a secret"
                        .into(),
            });
        }
        if config.max_series_per_family == 0 {
            return Err(MetricsError::InvalidConfig {
                field: "max_series_per_family",
                reason: "must be at least 1".into(),
            });
        }
        let registry = MetricsRegistry::new(config.max_series_per_family);
        for (name, limit) in &config.series_limits {
            registry.set_series_limit(name, *limit);
        }
        let summary = Arc::new(RequestSummary::new(clock.now()));
        let http = Arc::new(layer::HttpInstruments::register(
            &registry,
            config.naming,
            config.exclude_paths.clone(),
            summary,
        )?);
        let db = DbMetrics::register(&registry)?;
        if let Some(info) = &config.build_info {
            registry.claim_name("watchpost_build_info")?;
            registry.push_collector(Arc::new(process::BuildInfoCollector::new(info)));
        }
        if config.process_metrics && cfg!(target_os = "linux") {
            for name in process::PROCESS_FAMILY_NAMES {
                registry.claim_name(name.trim_end_matches("_total"))?;
            }
            registry.push_collector(Arc::new(process::ProcessCollector));
        }
        Ok(Self {
            inner: Arc::new(Inner {
                registry,
                http,
                db,
                token: config.token.map(|t| t.trim().to_owned()),
            }),
        })
    }

    /// The tower layer recording HTTP metrics; add it with `Router::layer` so it sees `MatchedPath`.
    pub fn layer(&self) -> HttpMetricsLayer {
        HttpMetricsLayer::new(self.inner.http.clone())
    }

    /// `GET /metrics` and `GET /metrics/summary`, to merge into the application's router.
    pub fn router(&self) -> axum::Router {
        endpoint::router(self.clone())
    }

    /// The registry, for application metrics ([`MetricsRegistry::counter`] and friends).
    pub fn registry(&self) -> &MetricsRegistry {
        &self.inner.registry
    }

    /// Adds a `prometheus_client` registry another crate registered its metrics into.
    pub fn add_registry(&self, registry: prometheus_client::registry::Registry) {
        self.inner.registry.add_registry(registry);
    }

    /// Database operation timing (`db_client_operation_duration_seconds`).
    pub fn db(&self) -> &DbMetrics {
        &self.inner.db
    }

    /// Every metric, in `format`.
    pub fn render(&self, format: Format) -> String {
        self.inner.registry.render(format)
    }

    /// The figures of `GET /metrics/summary`.
    pub fn summary(&self) -> SummarySnapshot {
        self.inner.http.summary.snapshot()
    }

    /// HTTP requests in flight now.
    pub fn active_requests(&self) -> i64 {
        self.inner.http.active()
    }

    /// Every family Watchpost itself writes, as (name, label names), sorted.
    pub fn describe(&self) -> Vec<(String, Vec<String>)> {
        self.inner.registry.describe()
    }

    pub(crate) fn token(&self) -> Option<&str> {
        self.inner.token.as_deref()
    }
}

/// The OpenAPI document of [`Metrics::router`]'s routes.
#[cfg(feature = "openapi")]
pub fn openapi() -> utoipa::openapi::OpenApi {
    <endpoint::ApiDoc as utoipa::OpenApi>::openapi()
}
