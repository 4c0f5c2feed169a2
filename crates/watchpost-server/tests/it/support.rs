//! Shared helpers: in-process apps over each store backend, and the built binary as a child process.

use std::path::Path;
use std::process::{Command, Stdio};

use axum::body::Body;
use http::Request;
use http_body_util::BodyExt;
use tower::ServiceExt;
use watchpost_server::app::{AppState, router};
use watchpost_server::config::{Config, StoreKind};
use watchpost_server::serve::open_stores;

pub(crate) const ROOT_KEY: &str = "root-key-for-tests-0123456789";

/// Config for the memory store with the test root key and no key cache.
pub(crate) fn memory_config() -> Config {
    let mut c = Config::for_tests();
    c.root_api_key = Some(ROOT_KEY.to_owned());
    c.auth_cache_ttl = std::time::Duration::ZERO;
    c
}

pub(crate) async fn app_state(config: Config) -> AppState {
    let stores = open_stores(&config).await.expect("stores open");
    AppState::new(config, stores, watchpost_core::SystemClock::shared()).expect("state builds")
}

pub(crate) fn sqlite_config(dir: &Path) -> Config {
    let mut c = memory_config();
    c.store = StoreKind::Sqlite;
    c.data_dir = dir.to_owned();
    c
}

/// PostgreSQL at `url`; the data dir (audit spool and signing key) goes to `dir`, never the crate folder.
pub(crate) fn postgres_config(url: String, dir: &Path) -> Config {
    let mut c = memory_config();
    c.store = StoreKind::Postgres;
    c.data_dir = dir.to_owned();
    c.database_url = Some(url);
    c.database_pool_size = 4;
    c
}

/// Sends one request through the app; returns status, headers and the body as JSON (or a JSON string).
pub(crate) async fn call(
    state: &AppState,
    request: Request<Body>,
) -> (http::StatusCode, http::HeaderMap, serde_json::Value) {
    let response = router(state.clone())
        .oneshot(request)
        .await
        .expect("infallible");
    let status = response.status();
    let headers = response.headers().clone();
    let bytes = response
        .into_body()
        .collect()
        .await
        .expect("body")
        .to_bytes();
    let json = serde_json::from_slice(&bytes).unwrap_or_else(|_| {
        serde_json::Value::String(String::from_utf8_lossy(&bytes).into_owned())
    });
    (status, headers, json)
}

pub(crate) fn get(path: &str, headers: &[(&str, &str)]) -> Request<Body> {
    let mut b = Request::builder().uri(path);
    for (k, v) in headers {
        b = b.header(*k, *v);
    }
    b.body(Body::empty()).expect("request")
}

pub(crate) fn post_json(path: &str, headers: &[(&str, &str)], body: &str) -> Request<Body> {
    let mut b = Request::builder()
        .method("POST")
        .uri(path)
        .header("content-type", "application/json");
    for (k, v) in headers {
        b = b.header(*k, *v);
    }
    b.body(Body::from(body.to_owned())).expect("request")
}

/// The built `watchpost` binary with a clean environment (only what the test sets).
pub(crate) fn watchpost() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_watchpost"));
    // A relative default data dir (`./data`) must never land in the source tree.
    c.current_dir(std::env::temp_dir())
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null());
    c
}
