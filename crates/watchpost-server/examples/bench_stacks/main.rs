//! The three HTTP stacks `cargo xtask bench` loads with wrk: one hello-world handler served bare,
//! behind the full watchpost stack, and behind the stack people assemble today.
//!
//! Run: `cargo run --release --example bench_stacks -p watchpost-server -- --stack full --listen 127.0.0.1:8080 --data-dir /tmp/wp-bench`
//!
//! | `--stack` | what serves `GET /admin/hello` (and the same handler at `GET /hello`) |
//! | --- | --- |
//! | `bare` | axum alone |
//! | `full` | the server's own router and layers ([`app::router_with`]): correlation with its JSON request log line, metrics, body limit, auth (send the root key `--api-key`), rate limit (a limit far above the load), audit (the default policy records `/admin` routes; reads asynchronously), on SQLite in `--data-dir` |
//! | `full-nolog` | the same with the correlation layer's request log line turned off (`CorrelationConfig::request_log`) |
//! | `peer` | (`peer.rs`) tower-http `SetRequestIdLayer` + `PropagateRequestIdLayer` + `TraceLayer` (one JSON line per request through tracing-subscriber's JSON formatter), axum-prometheus 0.10, tower_governor 0.8 (a limit far above the load) |
//! | `peer-nolog` | the same with the log filter at `warn`, so no line per request |
//!
//! Every stack logs to stdout, serves with `into_make_service_with_connect_info` and the default
//! multi-threaded tokio runtime, exactly as the `watchpost` binary does; under `taskset -c 0` that
//! runtime has one worker. The handler sits under `/admin` so the server's default audit policy
//! records it without a policy written for the benchmark; `GET /hello` is a read the default policy
//! does not record, so there the full stack's figure is the layers' own cost. Other `WATCHPOST_*` variables in the
//! environment apply to the full stack (for example `WATCHPOST_REDIS_URL` for shared limits).
#![allow(clippy::print_stderr)] // A command-line tool reports its usage errors on stderr.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use axum::Router;
use axum::routing::get;
use tokio::net::TcpListener;
use watchpost_correlation::{CorrelationConfig, CorrelationLayer};
use watchpost_server::app::{self, AppState};
use watchpost_server::config::{Config, FlagOverrides, RawValues};
use watchpost_server::serve::{self, Lifecycle};

mod peer;

/// The route every stack serves; the server's default audit policy records every request to it.
const HELLO_PATH: &str = "/admin/hello";

/// The same handler on a route the default audit policy does not record for reads, so the full
/// stack's figure there is the layers' own cost rather than the audit store's ingest rate.
const HELLO_READ_PATH: &str = "/hello";

/// The root key the full stack accepts when `--api-key` is not given.
const DEFAULT_API_KEY: &str = "bench-root-key-0123456789abcdef";

type BoxError = Box<dyn std::error::Error + Send + Sync>;

async fn hello() -> &'static str {
    "Hello, World!"
}

fn hello_router() -> Router {
    Router::new()
        .route(HELLO_PATH, get(hello))
        .route(HELLO_READ_PATH, get(hello))
}

#[derive(Debug)]
struct Args {
    stack: String,
    listen: SocketAddr,
    data_dir: Option<PathBuf>,
    store: String,
    api_key: String,
}

fn parse_args() -> Result<Args, String> {
    let mut args = std::env::args().skip(1);
    let mut stack = None;
    let mut listen = None;
    let mut data_dir = None;
    let mut store = "sqlite".to_owned();
    let mut api_key = DEFAULT_API_KEY.to_owned();
    while let Some(flag) = args.next() {
        let mut value = || args.next().ok_or(format!("{flag} needs a value"));
        match flag.as_str() {
            "--stack" => stack = Some(value()?),
            "--listen" => {
                let v = value()?;
                listen = Some(v.parse().map_err(|e| format!("--listen {v}: {e}"))?);
            }
            "--data-dir" => data_dir = Some(PathBuf::from(value()?)),
            "--store" => store = value()?,
            "--api-key" => api_key = value()?,
            other => return Err(format!("unknown argument {other}")),
        }
    }
    Ok(Args {
        stack: stack.ok_or("--stack is required")?,
        listen: listen.ok_or("--listen is required")?,
        data_dir,
        store,
        api_key,
    })
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let usage = "usage: bench_stacks --stack bare|full|full-nolog|peer|peer-nolog --listen ADDR [--data-dir DIR] [--store sqlite|memory|postgres] [--api-key KEY]";
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("{e}\n{usage}");
            return std::process::ExitCode::from(2);
        }
    };
    let result = match args.stack.as_str() {
        "bare" => bare(args.listen).await,
        "full" => full(&args, true).await,
        "full-nolog" => full(&args, false).await,
        "peer" => peer(args.listen, true).await,
        "peer-nolog" => peer(args.listen, false).await,
        other => Err(format!("unknown stack {other}\n{usage}").into()),
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("bench_stacks --stack {}: {e}", args.stack);
            std::process::ExitCode::FAILURE
        }
    }
}

/// Serves `app` as the `watchpost` binary does (connect info for client IPs), until SIGTERM.
async fn serve_plain(listen: SocketAddr, app: Router) -> Result<(), BoxError> {
    let listener = TcpListener::bind(listen).await?;
    axum::serve(
        listener,
        app.into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(serve::shutdown_signal())
    .await?;
    Ok(())
}

async fn bare(listen: SocketAddr) -> Result<(), BoxError> {
    serve_plain(listen, hello_router()).await
}

/// The server's configuration, read as `watchpost` reads it, with the benchmark's settings on top.
fn full_config(args: &Args) -> Result<Config, BoxError> {
    let data_dir = args
        .data_dir
        .clone()
        .ok_or("--data-dir is required for the full stack")?;
    let overrides: Vec<(&str, String)> = vec![
        ("WATCHPOST_LISTEN", args.listen.to_string()),
        ("WATCHPOST_STORE", args.store.clone()),
        ("WATCHPOST_DATA_DIR", data_dir.display().to_string()),
        ("WATCHPOST_ROOT_API_KEY", args.api_key.clone()),
        // Far above what one core can serve in a window: the limiter decides, it never denies.
        ("WATCHPOST_RATE_LIMIT_MAX_REQUESTS", "1000000000".to_owned()),
        ("WATCHPOST_AUDIT_MODE", "async".to_owned()),
        ("WATCHPOST_LOG_FORMAT", "json".to_owned()),
        ("RUST_LOG", "info".to_owned()),
    ];
    let raw = RawValues::collect_with(None, &FlagOverrides::default(), |name| {
        overrides
            .iter()
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v.clone())
            .or_else(|| std::env::var(name).ok())
    })?;
    Ok(Config::from_raw(&raw)?)
}

/// The full stack: the server's state and layers (see `serve::run`) with the hello route inside them.
async fn full(args: &Args, request_log: bool) -> Result<(), BoxError> {
    let config = full_config(args)?;
    let telemetry = watchpost_server::wiring::correlation::init_telemetry(&config)?;
    let stores = serve::open_stores(&config).await?;
    let clock = watchpost_core::SystemClock::shared();
    let mut state =
        AppState::with_propagators(config, stores, clock.clone(), telemetry.propagators())?;
    if !request_log {
        // `wiring::correlation::layer` with the request log line sampled away; nothing else differs.
        state.correlation = CorrelationLayer::with_clock(
            CorrelationConfig {
                trusted_proxies: state.config.trusted_proxies.clone(),
                propagators: telemetry.propagators(),
                request_log: false,
                ..CorrelationConfig::default()
            },
            clock,
        );
    }
    if let Err(e) = state.ratelimit.connect().await {
        tracing::warn!(error = %e, "cannot reach Redis for shared rate limits yet");
    }
    let health = state.health.clone();
    let auditor = state.auditor.clone();
    let app = app::router_with(state, hello_router());
    let listener = TcpListener::bind(args.listen).await?;
    let mut lifecycle = Lifecycle::default();
    lifecycle.on_flush(move || async move { auditor.shutdown().await });
    health.mark_started();
    serve::serve(
        listener,
        app,
        Duration::from_secs(5),
        lifecycle,
        serve::shutdown_signal(),
    )
    .await?;
    Ok(())
}

/// The stack people assemble today (see `peer.rs`), logging to stdout.
async fn peer(listen: SocketAddr, request_log: bool) -> Result<(), BoxError> {
    tracing::subscriber::set_global_default(peer::subscriber(request_log, std::io::stdout))?;
    serve_plain(listen, peer::layered(hello_router())?).await
}
