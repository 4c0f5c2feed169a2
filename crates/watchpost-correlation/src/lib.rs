//! Request and correlation ids, strict W3C trace context, one JSON log line per request, OTLP export and error grouping.
//!
//! [`CorrelationLayer`] is the outermost layer of a Watchpost service. For every request it
//! validates or generates `X-Request-ID` and `X-Correlation-ID`, parses `traceparent`
//! strictly, opens the server span (INFO, named `{method} {route}`, HTTP semantic-convention
//! attributes), puts a [`watchpost_core::RequestContext`] into the request extensions and a
//! task-local, turns a handler panic into a 500 problem, fills `requestId` into problem bodies,
//! and writes one request log line at completion. [`init`] sets up JSON or pretty logging
//! with `RUST_LOG`, and OTLP export from the `OTEL_*` variables through a bounded queue.
//!
//! # Example
//!
//! ```
//! use axum::{Router, routing::get};
//! use prometheus_client::registry::Registry;
//! use watchpost_correlation::{CorrelationConfig, CorrelationLayer};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! let correlation = CorrelationLayer::new(CorrelationConfig::default());
//! let mut registry = Registry::default();
//! correlation.register_metrics(&mut registry);
//!
//! let app: Router = Router::new()
//!     .route("/hello", get(|| async { "hi" }))
//!     .merge(correlation.router()) // GET /errors (root only)
//!     .layer(correlation.clone());
//!
//! use tower::ServiceExt;
//! let response = app
//!     .oneshot(http::Request::get("/hello").body(axum::body::Body::empty()).unwrap())
//!     .await
//!     .unwrap();
//! assert!(response.headers().contains_key("x-request-id"));
//! # }
//! ```
//!
//! # Feature flags
//!
//! | feature | default | what it adds |
//! | --- | --- | --- |
//! | `otlp` | yes | OTLP span export over gRPC (tonic) or HTTP/protobuf |
//! | `openapi` | no | `openapi()` describing `GET /errors` (utoipa) |
//!
//! # Modules
//!
//! | module | what lives there |
//! | --- | --- |
//! | [`layer`] | [`CorrelationLayer`], [`Correlation`], [`CorrelationConfig`] |
//! | [`ids`] | the id header rule |
//! | [`traceparent`] | the strict W3C Trace Context parser |
//! | [`context`] | the task-local request context, spawning with it, outgoing header injection |
//! | [`logging`] | [`init`], [`LoggingConfig`], the JSON line format, [`flush_logs`] |
//! | [`output`] | [`LogOutput`]: log lines batched into one write per interval |
//! | [`otel`] | [`OtelConfig`] from `OTEL_*`, [`Telemetry`] with the bounded export queue |
//! | [`errors`] | [`ErrorGroups`] and `GET /errors` |
//! | [`metrics`] | the counters and their registration |

pub mod context;
pub mod error;
pub mod errors;
pub mod ids;
pub mod layer;
pub mod logging;
pub mod metrics;
pub mod otel;
pub mod output;
pub mod request_log;
pub mod traceparent;

pub use context::{current, in_current_request, inject_current, inject_headers, spawn};
pub use error::TelemetryError;
pub use errors::{ErrorGroup, ErrorGroups, install_panic_hook};
pub use layer::{Correlation, CorrelationConfig, CorrelationLayer, ResponseFuture};
pub use logging::{LogFormat, LoggingConfig, flush_logs, init};
pub use metrics::{CorrelationMetrics, ErrorKind, IdHeader};
pub use otel::{OtelConfig, OtlpProtocol, Propagators, SamplerConfig, Telemetry, TracesExporter};
pub use output::LogOutput;

#[cfg(feature = "openapi")]
pub use errors::openapi;
