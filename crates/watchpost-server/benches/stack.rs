//! Criterion benchmark: what each layer of the server's stack costs per request, in process (tower
//! `oneshot`, no sockets), next to the stack people assemble today in the same run.
//!
//! Run: `cargo bench -p watchpost-server --bench stack` (add `-- --quick` for a smoke run).
//!
//! Every stack serves the same handler at `GET /hello` to a request carrying the peer address (as
//! `axum::serve` with connect info adds it) and the root API key. The `layers/` group adds the
//! server's layers one at a time, outermost first, in the order `app::router_with` applies them,
//! so the difference between two neighbours is one layer's cost; `full` is `router_with` itself
//! (every route, the fallbacks and the problem-body rewriting). Logging goes through the server's
//! own JSON subscriber into a sink at `info`; `nolog` variants turn the correlation layer's request
//! line off, and the peer's `nolog` variant filters at `warn` (no span, no line), as
//! `examples/bench_stacks/main.rs` does for wrk.

use std::net::SocketAddr;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::{ConnectInfo, DefaultBodyLimit};
use axum::routing::get;
use criterion::{Criterion, criterion_group, criterion_main};
use http::Request;
use http_body_util::BodyExt;
use tower::{ServiceBuilder, ServiceExt};
use tower_http::body::Limited;
use tower_http::limit::RequestBodyLimitLayer;
use watchpost_correlation::{
    CorrelationConfig, CorrelationLayer, LoggingConfig, OtelConfig, Telemetry,
};
use watchpost_server::app::{self, AppState};
use watchpost_server::auth::AuthLayer;
use watchpost_server::config::Config;

#[path = "../examples/bench_stacks/peer.rs"]
mod peer;

const KEY: &str = "bench-root-key-0123456789abcdef";

async fn hello() -> &'static str {
    "Hello, World!"
}

fn hello_router() -> Router {
    Router::new().route("/hello", get(hello))
}

/// `app` as `axum::serve` runs it: handlers turned into routes once (`with_state`), not per request.
fn served(app: Router) -> Router {
    app.with_state(())
}

async fn one(app: &Router) {
    let mut req = Request::get("/hello")
        .header("authorization", format!("Bearer {KEY}"))
        .header("user-agent", "wrk")
        .body(Body::empty())
        .expect("request");
    req.extensions_mut()
        .insert(ConnectInfo(SocketAddr::from(([127, 0, 0, 1], 40_000))));
    let res = app.clone().oneshot(req).await.expect("infallible");
    let _ = res.into_body().collect().await;
}

fn state(rt: &tokio::runtime::Runtime, request_log: bool) -> AppState {
    let mut config = Config::for_tests();
    config.root_api_key = Some(KEY.to_owned());
    config.rate_limit_max_requests = 1_000_000_000;
    rt.block_on(async {
        let stores = watchpost_server::serve::open_stores(&config)
            .await
            .expect("memory stores");
        let mut state =
            AppState::new(config, stores, watchpost_core::SystemClock::shared()).expect("state");
        state.correlation = CorrelationLayer::new(CorrelationConfig {
            request_log,
            ..CorrelationConfig::default()
        });
        state
    })
}

/// The server's layers, outermost first, the first `n` of them around the hello route, composed
/// into one `Router::layer` as `app::router_with` composes them.
fn prefix(state: &AppState, n: usize) -> Router {
    let limit = state.config.body_limit_bytes;
    let app = hello_router();
    let correlation = state.correlation.clone();
    let metrics = state.metrics.layer();
    let body_limit = ServiceBuilder::new()
        .layer(RequestBodyLimitLayer::new(limit))
        .map_request(|request: Request<Limited<Body>>| request.map(Body::new))
        .layer(DefaultBodyLimit::disable());
    let auth = AuthLayer::new(state.auth.clone());
    let ratelimit = state.ratelimit.layer();
    let audit = watchpost_server::wiring::audit::layer(&state.config, &state.auditor);
    let base = ServiceBuilder::new().layer(correlation);
    match n {
        0 => app,
        1 => app.layer(base),
        2 => app.layer(base.layer(metrics)),
        3 => app.layer(base.layer(metrics).layer(body_limit)),
        4 => app.layer(base.layer(metrics).layer(body_limit).layer(auth)),
        5 => app.layer(
            base.layer(metrics)
                .layer(body_limit)
                .layer(auth)
                .layer(ratelimit),
        ),
        _ => app.layer(
            base.layer(metrics)
                .layer(body_limit)
                .layer(auth)
                .layer(ratelimit)
                .layer(audit),
        ),
    }
}

const LAYERS: [&str; 7] = [
    "0_bare",
    "1_correlation",
    "2_metrics",
    "3_body_limit",
    "4_auth",
    "5_ratelimit",
    "6_audit",
];

fn bench(c: &mut Criterion) {
    // One thread drives the requests and the server's background tasks alike: steadier figures.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let telemetry = Telemetry::start(&OtelConfig::disabled("bench")).expect("no export");
    let logging = LoggingConfig::default();
    let server_logs = || {
        watchpost_correlation::logging::subscriber(&logging, &telemetry, std::io::sink)
            .expect("subscriber")
    };

    let nolog = state(&rt, false);
    let mut group = c.benchmark_group("layers");
    tracing::subscriber::with_default(server_logs(), || {
        for (n, name) in LAYERS.iter().enumerate() {
            let app = served(prefix(&nolog, n));
            group.bench_function(*name, |b| b.to_async(&rt).iter(|| one(&app)));
        }
        let app = served(app::router_with(nolog.clone(), hello_router()));
        group.bench_function("7_full_router", |b| b.to_async(&rt).iter(|| one(&app)));
    });
    group.finish();

    let mut group = c.benchmark_group("stack");
    group.bench_function("bare", |b| {
        let app = served(hello_router());
        b.to_async(&rt).iter(|| one(&app));
    });
    tracing::subscriber::with_default(server_logs(), || {
        let app = served(app::router_with(nolog.clone(), hello_router()));
        group.bench_function("watchpost_nolog", |b| b.to_async(&rt).iter(|| one(&app)));
        let logged = state(&rt, true);
        let app = served(app::router_with(logged, hello_router()));
        group.bench_function("watchpost", |b| b.to_async(&rt).iter(|| one(&app)));
    });
    // axum-prometheus installs a global recorder: one peer stack serves both subscribers.
    let peer_app =
        rt.block_on(async { served(peer::layered(hello_router()).expect("peer stack")) });
    for logging in [false, true] {
        let name = if logging { "peer" } else { "peer_nolog" };
        tracing::subscriber::with_default(peer::subscriber(logging, std::io::sink), || {
            group.bench_function(name, |b| b.to_async(&rt).iter(|| one(&peer_app)));
        });
    }
    group.finish();
    rt.block_on(nolog.auditor.shutdown());
}

criterion_group! {
    name = benches;
    config = Criterion::default().measurement_time(Duration::from_secs(3)).warm_up_time(Duration::from_secs(1));
    targets = bench
}
criterion_main!(benches);
