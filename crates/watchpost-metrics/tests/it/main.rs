//! Integration tests of watchpost-metrics: one binary, one module per concern.

mod auth;
mod cardinality;
mod exposition;
mod layer;
#[cfg(feature = "openapi")]
mod openapi;
mod summary;

use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::routing::{get, post};
use http::{Request, Response};
use http_body_util::BodyExt;
use tower::ServiceExt;
use watchpost_metrics::{Format, Metrics, MetricsConfig};

/// Metrics with the default configuration plus build info.
pub(crate) fn metrics() -> Metrics {
    metrics_with(MetricsConfig::default())
}

/// Metrics with `config` plus build info.
pub(crate) fn metrics_with(mut config: MetricsConfig) -> Metrics {
    config.build_info = Some(watchpost_metrics::BuildInfo {
        version: "0.1.0".into(),
        revision: "abc123".into(),
        rustc: "1.95.0".into(),
    });
    Metrics::new(config).expect("valid configuration")
}

/// The application every test drives: a few routes under the layer, plus the metrics router.
pub(crate) fn app(metrics: &Metrics) -> Router {
    Router::new()
        .route("/items/{id}", get(|| async { "an item" }))
        .route(
            "/slow/{ms}",
            get(
                |axum::extract::Path(ms): axum::extract::Path<u64>| async move {
                    tokio::time::sleep(Duration::from_millis(ms)).await;
                    "slept"
                },
            ),
        )
        .route(
            "/status/{code}",
            get(
                |axum::extract::Path(code): axum::extract::Path<u16>| async move {
                    http::StatusCode::from_u16(code).unwrap_or(http::StatusCode::IM_A_TEAPOT)
                },
            ),
        )
        .route("/echo", post(|body: String| async move { body }))
        .route("/health/live", get(|| async { "ok" }))
        .route("/hang", get(std::future::pending::<&'static str>))
        // A fallback set before `layer` is wrapped too, so unmatched requests are recorded.
        .fallback(|| async { http::StatusCode::NOT_FOUND })
        .layer(metrics.layer())
        .merge(metrics.router())
}

/// Sends `req` through `app` with a timeout.
pub(crate) async fn send(app: &Router, req: Request<Body>) -> Response<Body> {
    tokio::time::timeout(Duration::from_secs(10), app.clone().oneshot(req))
        .await
        .expect("request timed out")
        .expect("infallible")
}

/// A GET request.
pub(crate) fn get_req(uri: &str) -> Request<Body> {
    Request::get(uri)
        .body(Body::empty())
        .expect("valid request")
}

/// The body as text.
pub(crate) async fn text(response: Response<Body>) -> String {
    let bytes = response
        .into_body()
        .collect()
        .await
        .expect("body")
        .to_bytes();
    String::from_utf8(bytes.to_vec()).expect("utf-8 body")
}

/// Lines of the Prometheus text rendering whose sample name starts with `prefix`.
pub(crate) fn samples(metrics: &Metrics, prefix: &str) -> Vec<String> {
    metrics
        .render(Format::Prometheus)
        .lines()
        .filter(|l| l.starts_with(prefix))
        .map(str::to_owned)
        .collect()
}
