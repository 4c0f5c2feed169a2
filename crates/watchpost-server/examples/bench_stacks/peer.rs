//! The stack people assemble today around an axum router, as the crates' READMEs show it:
//! tower-http `SetRequestIdLayer` + `PropagateRequestIdLayer` + `TraceLayer` (one JSON line per
//! request through tracing-subscriber's JSON formatter), axum-prometheus 0.10 and tower_governor
//! 0.8 with a limit far above any load. Shared by `bench_stacks` (wrk) and `benches/stack.rs`
//! (in process), so both measure the same peer.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::routing::get;
use http::Request;
use tower_governor::GovernorLayer;
use tower_governor::governor::GovernorConfigBuilder;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::trace::{DefaultOnResponse, TraceLayer};
use tracing::Level;
use tracing_subscriber::fmt::MakeWriter;

/// The peer's subscriber: tracing-subscriber's JSON formatter writing to `writer`, at `info` when
/// `request_log` (one span and one line per request), else at `warn` (neither).
pub(crate) fn subscriber<W>(request_log: bool, writer: W) -> impl tracing::Subscriber + Send + Sync
where
    W: for<'a> MakeWriter<'a> + Send + Sync + 'static,
{
    tracing_subscriber::fmt()
        .json()
        .with_writer(writer)
        .with_env_filter(tracing_subscriber::EnvFilter::new(if request_log {
            "info"
        } else {
            "warn"
        }))
        .finish()
}

/// `app` behind the peer layers, with axum-prometheus's `/metrics`. Call inside a tokio runtime:
/// it spawns tower_governor's README sweep of its per-IP table.
pub(crate) fn layered(app: Router) -> Result<Router, &'static str> {
    let (prometheus, handle) = axum_prometheus::PrometheusMetricLayer::pair();
    let governor = Arc::new(
        GovernorConfigBuilder::default()
            // One token per nanosecond and the largest burst: the limiter decides, it never denies.
            .per_nanosecond(1)
            .burst_size(u32::MAX)
            .finish()
            .ok_or("invalid governor configuration")?,
    );
    let limiter = governor.limiter().clone();
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(60));
        loop {
            tick.tick().await;
            limiter.retain_recent();
        }
    });
    let trace = TraceLayer::new_for_http()
        // The request id in the span, so the JSON line carries it (tower-http's request-id example).
        .make_span_with(|request: &Request<Body>| {
            let request_id = request
                .headers()
                .get("x-request-id")
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default();
            tracing::info_span!(
                "request",
                method = %request.method(),
                uri = %request.uri(),
                version = ?request.version(),
                request_id,
            )
        })
        .on_response(DefaultOnResponse::new().level(Level::INFO));
    Ok(app
        .route("/metrics", get(move || async move { handle.render() }))
        .layer(GovernorLayer::new(governor))
        .layer(prometheus)
        .layer(trace)
        .layer(PropagateRequestIdLayer::x_request_id())
        .layer(SetRequestIdLayer::x_request_id(MakeRequestUuid)))
}
