//! Criterion benchmarks, peers measured in the same run: per-request recording cost (our layer,
//! axum-prometheus's layer, a bare handler; tower `oneshot`), and rendering 10,000 series
//! (ours, prometheus-client's encoder, metrics-exporter-prometheus's render).
//!
//! Run: `cargo bench -p watchpost-metrics --bench metrics` (add `-- --quick` for a smoke run).

use std::hint::black_box;

use axum::Router;
use axum::body::Body;
use axum::routing::get;
use criterion::{Criterion, criterion_group, criterion_main};
use http::Request;
use tower::ServiceExt;
use watchpost_metrics::{DURATION_BUCKETS, Format, Metrics, MetricsConfig, MetricsRegistry};

/// 9,000 counter series and 1,000 histogram series.
const COUNTER_SERIES: usize = 9_000;
const HISTOGRAM_SERIES: usize = 1_000;

fn hello_router() -> Router {
    Router::new().route("/users/{id}", get(|| async { "hello" }))
}

fn request() -> Request<Body> {
    Request::get("/users/42")
        .body(Body::empty())
        .expect("valid request")
}

fn bench_recording(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let bare = hello_router();
    let metrics = Metrics::new(MetricsConfig {
        process_metrics: false,
        ..MetricsConfig::default()
    })
    .expect("valid configuration");
    let ours = hello_router().layer(metrics.layer());
    // axum-prometheus installs a global recorder (once per process) and spawns its upkeep task.
    let _enter = rt.enter();
    let (prometheus_layer, _handle) = axum_prometheus::PrometheusMetricLayer::pair();
    let peer = hello_router().layer(prometheus_layer);

    let mut group = c.benchmark_group("record_request");
    for (name, app) in [
        ("bare", bare),
        ("watchpost", ours),
        ("axum_prometheus", peer),
    ] {
        group.bench_function(name, |b| {
            b.to_async(&rt).iter(|| {
                let app = app.clone();
                async move { black_box(app.oneshot(request()).await.expect("infallible")) }
            });
        });
    }
    group.finish();
}

fn label(i: usize) -> String {
    format!("/route/{i}")
}

fn bench_rendering(c: &mut Criterion) {
    // Ours.
    let ours = MetricsRegistry::new(COUNTER_SERIES + HISTOGRAM_SERIES);
    let counters = ours
        .counter("bench_requests", "Requests.", ["route"])
        .expect("new family");
    let histograms = ours
        .histogram(
            "bench_latency_seconds",
            "Latency.",
            ["route"],
            &DURATION_BUCKETS,
        )
        .expect("new family");
    for i in 0..COUNTER_SERIES {
        counters.inc_by([&label(i)], i as u64);
    }
    for i in 0..HISTOGRAM_SERIES {
        histograms.observe([&label(i)], 0.03);
    }

    // prometheus-client.
    use prometheus_client::metrics::counter::Counter;
    use prometheus_client::metrics::family::Family;
    use prometheus_client::metrics::histogram::Histogram;
    let mut pc = prometheus_client::registry::Registry::default();
    let pc_counters = Family::<Vec<(String, String)>, Counter>::default();
    let pc_histograms = Family::<Vec<(String, String)>, Histogram, _>::new_with_constructor(|| {
        Histogram::new(DURATION_BUCKETS)
    });
    for i in 0..COUNTER_SERIES {
        pc_counters
            .get_or_create(&vec![("route".to_owned(), label(i))])
            .inc_by(i as u64);
    }
    for i in 0..HISTOGRAM_SERIES {
        pc_histograms
            .get_or_create(&vec![("route".to_owned(), label(i))])
            .observe(0.03);
    }
    pc.register("bench_requests", "Requests.", pc_counters);
    pc.register("bench_latency_seconds", "Latency.", pc_histograms);

    // metrics-exporter-prometheus.
    let recorder = metrics_exporter_prometheus::PrometheusBuilder::new()
        .set_buckets(&DURATION_BUCKETS)
        .expect("valid buckets")
        .build_recorder();
    let handle = recorder.handle();
    metrics::with_local_recorder(&recorder, || {
        for i in 0..COUNTER_SERIES {
            metrics::counter!("bench_requests_total", "route" => label(i)).increment(i as u64);
        }
        for i in 0..HISTOGRAM_SERIES {
            metrics::histogram!("bench_latency_seconds", "route" => label(i)).record(0.03);
        }
    });

    let mut group = c.benchmark_group("render_10k_series");
    group.sample_size(20);
    let mut buf = String::new();
    group.bench_function("watchpost_prometheus_text", |b| {
        b.iter(|| {
            buf.clear();
            ours.render_into(&mut buf, Format::Prometheus);
            black_box(buf.len())
        });
    });
    group.bench_function("watchpost_openmetrics", |b| {
        b.iter(|| {
            buf.clear();
            ours.render_into(&mut buf, Format::OpenMetrics);
            black_box(buf.len())
        });
    });
    group.bench_function("prometheus_client", |b| {
        b.iter(|| {
            buf.clear();
            prometheus_client::encoding::text::encode(&mut buf, &pc).expect("encodes");
            black_box(buf.len())
        });
    });
    group.bench_function("metrics_exporter_prometheus", |b| {
        b.iter(|| black_box(handle.render().len()));
    });
    group.finish();
}

criterion_group!(benches, bench_recording, bench_rendering);
criterion_main!(benches);
