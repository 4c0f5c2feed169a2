//! Criterion benchmark: this crate's layer against tower-http `SetRequestIdLayer` + `TraceLayer` +
//! axum-tracing-opentelemetry's `OtelAxumLayer`, each with JSON logs to a sink and span export to an
//! in-process OTLP/HTTP collector, on a trivial handler; bare axum as the anchor.
//!
//! Run: `cargo bench -p watchpost-correlation --bench correlation` (add `-- --quick` for a smoke run).
//! The peer's spans are emitted at TRACE and TraceLayer's at DEBUG by default, so its filter enables
//! `otel::tracing=trace,tower_http=debug`; otherwise it would export and log nothing and the
//! comparison would be unfair. Both stacks export through the same bounded pipeline ([`Telemetry`]),
//! so the difference is the layers and the log formatting.

use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::response::IntoResponse;
use axum::routing::{get, post};
use criterion::{Criterion, criterion_group, criterion_main};
use http::Request;
use http_body_util::BodyExt;
use tower::ServiceExt;
use tracing_subscriber::layer::SubscriberExt;
use watchpost_correlation::logging::subscriber;
use watchpost_correlation::{
    CorrelationConfig, CorrelationLayer, LoggingConfig, OtelConfig, OtlpProtocol, Telemetry,
};

fn hello() -> Router {
    Router::new().route("/hello", get(|| async { "hi" }))
}

/// An OTLP/HTTP collector that accepts and discards, on 127.0.0.1.
async fn collector() -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind the collector");
    let addr = listener.local_addr().expect("address");
    let app = Router::new().route(
        "/v1/traces",
        post(|_body: bytes::Bytes| async {
            (
                [("content-type", "application/x-protobuf")],
                Vec::<u8>::new(),
            )
                .into_response()
        }),
    );
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    format!("http://{addr}")
}

async fn one(app: &Router) {
    let req = Request::get("/hello")
        .header("x-request-id", "bench-1")
        .header(
            "traceparent",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        )
        .body(Body::empty())
        .expect("request");
    let res = app.clone().oneshot(req).await.expect("infallible");
    let _ = res.into_body().collect().await;
}

fn bench(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("runtime");
    let endpoint = rt.block_on(collector());
    let mut group = c.benchmark_group("request_with_json_log_and_export");

    group.bench_function("bare_axum", |b| {
        let app = hello();
        b.to_async(&rt).iter(|| one(&app));
    });

    // This crate.
    {
        let config =
            OtelConfig::disabled("bench").with_endpoint(OtlpProtocol::HttpProtobuf, &endpoint);
        let telemetry = rt
            .block_on(async { Telemetry::start(&config) })
            .expect("telemetry");
        let sub =
            subscriber(&LoggingConfig::default(), &telemetry, std::io::sink).expect("subscriber");
        let layer = CorrelationLayer::new(CorrelationConfig::default());
        let app = hello().layer(layer);
        tracing::subscriber::with_default(sub, || {
            group.bench_function("watchpost_correlation", |b| {
                b.to_async(&rt).iter(|| one(&app));
            });
        });
        let _ = rt.block_on(telemetry.shutdown(Duration::from_secs(2)));
    }

    // The peer stack.
    {
        // The same bounded export pipeline as above, so the comparison measures the layers.
        let config =
            OtelConfig::disabled("bench-peer").with_endpoint(OtlpProtocol::HttpProtobuf, &endpoint);
        let telemetry = rt
            .block_on(async { Telemetry::start(&config) })
            .expect("telemetry");
        let tracer = telemetry.tracer().expect("export is on");
        let sub = tracing_subscriber::registry()
            .with(tracing_subscriber::EnvFilter::new(
                "info,tower_http=debug,otel::tracing=trace",
            ))
            .with(
                tracing_subscriber::fmt::layer()
                    .json()
                    .with_writer(std::io::sink),
            )
            .with(tracing_opentelemetry::layer().with_tracer(tracer));
        let app = hello()
            .layer(axum_tracing_opentelemetry::middleware::OtelAxumLayer::default())
            .layer(tower_http::trace::TraceLayer::new_for_http())
            .layer(tower_http::request_id::PropagateRequestIdLayer::x_request_id())
            .layer(tower_http::request_id::SetRequestIdLayer::x_request_id(
                tower_http::request_id::MakeRequestUuid,
            ));
        tracing::subscriber::with_default(sub, || {
            group.bench_function("tower_http_plus_otel_axum", |b| {
                b.to_async(&rt).iter(|| one(&app));
            });
        });
        let _ = rt.block_on(telemetry.shutdown(Duration::from_secs(2)));
    }
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .sample_size(20)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2));
    targets = bench
}
criterion_main!(benches);
