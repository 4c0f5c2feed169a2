//! watchpost-ratelimit as wired into the server: with `WATCHPOST_RATE_LIMIT_MAX_REQUESTS=5` the sixth
//! request from one client is refused with the IETF headers and a problem body, probes are never
//! limited, and the denial is in the audit trail.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use watchpost_test_support::free_addr;

use crate::support::{ROOT_KEY, Reply, Server, over_socket};

fn get(addr: SocketAddr, path: &str, key: Option<&str>) -> Reply {
    let bearer = key.map(|k| format!("Bearer {k}"));
    let headers: Vec<(&str, &str)> = bearer
        .iter()
        .map(|b| ("Authorization", b.as_str()))
        .collect();
    over_socket(addr, "GET", path, &headers, "").expect("an HTTP answer")
}

/// The server on SQLite in a temporary data dir (dropped after the server) with the test root
/// key and `env`.
fn start(env: &[(&str, String)]) -> (Server, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let mut all = vec![
        ("WATCHPOST_DATA_DIR", dir.path().display().to_string()),
        ("WATCHPOST_ROOT_API_KEY", ROOT_KEY.to_owned()),
    ];
    all.extend(env.iter().cloned());
    (Server::start(&all), dir)
}

/// Asserts that `/metrics` holds `line` exactly.
fn assert_metric(server: &Server, line: &str) {
    let metrics = get(server.addr, "/metrics", None).body;
    assert!(
        metrics.lines().any(|l| l == line),
        "no line {line:?} in /metrics:\n{metrics}"
    );
}

#[test]
fn the_sixth_request_is_refused_with_the_right_headers() {
    let (server, _dir) = start(&[("WATCHPOST_RATE_LIMIT_MAX_REQUESTS", "5".to_owned())]);
    let addr = server.addr;

    for n in 1..=5u64 {
        let r = get(addr, "/openapi.json", None);
        assert_eq!(r.status, 200, "request {n}");
        assert_eq!(r.header("ratelimit-policy"), Some(r#""default";q=5;w=60"#));
        let remaining = format!(r#""default";r={}"#, 5 - n);
        assert!(
            r.header("ratelimit")
                .is_some_and(|v| v.starts_with(&remaining)),
            "request {n}: {:?}",
            r.header("ratelimit")
        );
    }
    let denied = get(addr, "/openapi.json", None);
    assert_eq!(denied.status, 429);
    assert_eq!(
        denied.header("content-type"),
        Some("application/problem+json")
    );
    let retry: u64 = denied
        .header("retry-after")
        .expect("Retry-After")
        .parse()
        .unwrap();
    assert!((1..=60).contains(&retry), "Retry-After {retry}");
    assert!(
        denied
            .header("ratelimit")
            .is_some_and(|v| v.starts_with(r#""default";r=0"#))
    );
    let body: serde_json::Value = serde_json::from_str(&denied.body).unwrap();
    assert_eq!(body["type"], "urn:watchpost:problem:quota-exceeded");
    assert_eq!(body["status"], 429);
    assert!(body["requestId"].is_string(), "{body}");

    // Probes and scrapes are never limited.
    for _ in 0..10 {
        assert_eq!(get(addr, "/health/live", None).status, 200);
        assert_eq!(get(addr, "/metrics", None).status, 200);
    }
    // The root key has its own budget, and sees the denial in the audit trail.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let trail = get(addr, "/audit/events?action=rate_limit", Some(ROOT_KEY));
        assert_eq!(trail.status, 200, "{}", trail.body);
        let v: serde_json::Value = serde_json::from_str(&trail.body).unwrap();
        if let Some(e) = v["items"].as_array().and_then(|items| items.first()) {
            assert_eq!(e["action"], "rate_limit");
            assert_eq!(e["resourceId"], "ip:127.0.0.1");
            assert_eq!(e["outcome"]["status"], 429);
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the denial never reached the audit trail: {}",
            trail.body
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_metric(
        &server,
        r#"watchpost_ratelimit_decisions_total{policy="default",decision="denied"} 1"#,
    );
}

/// Starts the server with rate limits shared through a Redis that is not there (a free port),
/// with `mode` as `WATCHPOST_RATE_LIMIT_FAILURE_MODE` when given.
fn with_dead_redis(mode: Option<&str>) -> (Server, tempfile::TempDir) {
    let mut env = vec![
        ("WATCHPOST_REDIS_URL", format!("redis://{}/0", free_addr())),
        ("WATCHPOST_RATE_LIMIT_REDIS_TIMEOUT_MS", "50".to_owned()),
    ];
    if let Some(mode) = mode {
        env.push(("WATCHPOST_RATE_LIMIT_FAILURE_MODE", mode.to_owned()));
    }
    start(&env)
}

#[test]
fn the_configured_failure_mode_decides_when_redis_is_gone() {
    // Default: fail-open. Every request passes, each counted as a degraded decision.
    let (server, dir) = with_dead_redis(None);
    for n in 0..3 {
        let r = get(server.addr, "/openapi.json", None);
        assert_eq!(r.status, 200, "request {n}: {}", r.body);
    }
    assert_metric(
        &server,
        r#"watchpost_ratelimit_decisions_total{policy="default",decision="fail_open"} 3"#,
    );
    drop((server, dir));

    // Fail-closed: refused with a problem body.
    let (server, _dir) = with_dead_redis(Some("closed"));
    let r = get(server.addr, "/openapi.json", None);
    assert_eq!(r.status, 429, "{}", r.body);
    assert_eq!(r.header("content-type"), Some("application/problem+json"));
    assert_metric(
        &server,
        r#"watchpost_ratelimit_decisions_total{policy="default",decision="fail_closed"} 1"#,
    );
}
