//! Shared helpers: in-process apps over each store backend, and the built binary as a child process.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

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

/// The built binary as a running server: `WATCHPOST_LISTEN` on a free port plus `env`, output
/// discarded. Killed and reaped when dropped, so a failing assertion cleans up too.
pub(crate) struct Server {
    child: std::process::Child,
    pub(crate) addr: std::net::SocketAddr,
}

impl Server {
    /// Starts the server and waits until it accepts connections; panics if it exits first or
    /// does not listen within 30 s.
    pub(crate) fn start<V: AsRef<std::ffi::OsStr>>(env: &[(&str, V)]) -> Self {
        let addr = watchpost_test_support::free_addr();
        let mut command = watchpost();
        command
            .env("WATCHPOST_LISTEN", addr.to_string())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        for (k, v) in env {
            command.env(k, v);
        }
        let mut child = command.spawn().expect("spawn watchpost");
        let limit = Duration::from_secs(30);
        let deadline = std::time::Instant::now() + limit;
        while std::net::TcpStream::connect(addr).is_err() {
            if let Some(status) = child.try_wait().expect("wait") {
                panic!("watchpost exited ({status}) before it listened on {addr}");
            }
            assert!(
                std::time::Instant::now() < deadline,
                "watchpost did not listen on {addr} within {limit:?}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        Self { child, addr }
    }

    /// Sends `signal` to the server.
    pub(crate) fn signal(&self, signal: nix::sys::signal::Signal) {
        let pid = nix::unistd::Pid::from_raw(self.child.id() as i32);
        nix::sys::signal::kill(pid, signal).expect("signal");
    }

    /// Kills the server with SIGKILL and reaps it.
    pub(crate) fn sigkill(mut self) {
        self.signal(nix::sys::signal::Signal::SIGKILL);
        let status = self.child.wait().expect("wait");
        assert!(!status.success(), "killed, not exited: {status:?}");
    }

    /// The exit code once the server exits; panics (and kills it) if that takes over `limit`.
    pub(crate) fn exit_code(mut self, limit: Duration) -> Option<i32> {
        let deadline = std::time::Instant::now() + limit;
        loop {
            if let Some(status) = self.child.try_wait().expect("wait") {
                return status.code();
            }
            assert!(
                std::time::Instant::now() < deadline,
                "watchpost did not exit within {limit:?}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A response read over a real socket.
pub(crate) struct Reply {
    pub(crate) status: u16,
    pub(crate) headers: Vec<(String, String)>,
    pub(crate) body: String,
}

impl Reply {
    pub(crate) fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// One HTTP/1.1 exchange on a fresh connection (`Connection: close`); `None` when the connection
/// cannot be made or the answer is not HTTP (a refused or cut connection).
pub(crate) fn over_socket(
    addr: std::net::SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> Option<Reply> {
    exchange(addr, method, path, headers, body).ok()
}

/// [`over_socket`], saying what went wrong: for tests that expect an answer.
pub(crate) fn exchange(
    addr: std::net::SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> Result<Reply, String> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(2))
        .map_err(|e| format!("connect to {addr}: {e}"))?;
    s.set_read_timeout(Some(Duration::from_secs(10)))
        .map_err(|e| format!("read timeout: {e}"))?;
    let mut request = format!("{method} {path} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n");
    for (k, v) in headers {
        request.push_str(&format!("{k}: {v}\r\n"));
    }
    if !body.is_empty() {
        request.push_str(&format!(
            "Content-Type: application/json\r\nContent-Length: {}\r\n",
            body.len()
        ));
    }
    request.push_str("\r\n");
    request.push_str(body);
    s.write_all(request.as_bytes())
        .map_err(|e| format!("send {method} {path} to {addr}: {e}"))?;
    let mut raw = String::new();
    s.read_to_string(&mut raw).map_err(|e| {
        format!(
            "read the answer to {method} {path} from {addr} ({} bytes so far): {e}",
            raw.len()
        )
    })?;
    let (head, body) = raw.split_once("\r\n\r\n").unwrap_or((&raw, ""));
    let mut lines = head.lines();
    let status = lines
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| format!("not an HTTP answer from {addr}: {raw:?}"))?;
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
        .collect();
    Ok(Reply {
        status,
        headers,
        body: body.to_owned(),
    })
}
