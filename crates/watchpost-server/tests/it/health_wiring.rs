//! watchpost-health as wired into the server: the seed shapes, the store check, readiness that
//! follows start-up, root-only details, and SIGTERM failing readiness before the drain.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use serde_json::json;
use watchpost_test_support::TestDatabase;

use crate::support::{
    ROOT_KEY, Server, app_state, call, get, memory_config, over_socket, postgres_config,
    sqlite_config,
};

#[tokio::test]
async fn sqlite_server_reports_its_store_and_becomes_ready_after_start_up() {
    let dir = tempfile::tempdir().unwrap();
    let state = app_state(sqlite_config(dir.path())).await;
    let (s, _, body) = call(&state, get("/health", &[])).await;
    assert_eq!(s, 200);
    assert_eq!(
        body,
        json!({"status": "ok", "service": "watchpost", "storeBackend": "sqlite"})
    );

    let (s, _, _) = call(&state, get("/health/ready", &[])).await;
    assert_eq!(s, 503, "not ready before start-up completes");
    let (s, _, _) = call(&state, get("/health/live", &[])).await;
    assert_eq!(s, 200);
    state.health.mark_started();
    let (s, _, body) = call(&state, get("/ready", &[])).await;
    assert_eq!(s, 200);
    assert_eq!(
        body,
        json!({"ok": true, "storeBackend": "sqlite", "db": {"ok": true}})
    );
    let (s, _, text) = call(&state, get("/health/ready?verbose", &[])).await;
    assert_eq!(s, 200);
    let text = text.as_str().unwrap().to_owned();
    assert!(text.contains("[+]sqlite ok"), "{text}");
    assert_eq!(
        text.trim_end().lines().last(),
        Some("readyz check passed"),
        "{text}"
    );

    // Details only for root.
    let (_, h, anon) = call(&state, get("/health/detailed", &[])).await;
    assert!(
        h["content-type"]
            .to_str()
            .unwrap()
            .starts_with("application/health+json")
    );
    let (_, _, root) = call(
        &state,
        get(
            "/health/detailed",
            &[("authorization", &format!("Bearer {ROOT_KEY}"))],
        ),
    )
    .await;
    assert!(
        root["checks"]["sqlite:responseTime"][0]["observedValue"].is_number(),
        "{root}"
    );
    assert!(
        anon["checks"]["sqlite:responseTime"][0]
            .get("observedValue")
            .is_none(),
        "{anon}"
    );
}

#[tokio::test]
async fn postgres_server_checks_postgres() {
    let db = TestDatabase::create().await;
    let dir = tempfile::tempdir().unwrap();
    let state = app_state(postgres_config(db.url(), dir.path())).await;
    state.health.mark_started();
    let (s, _, body) = call(&state, get("/ready", &[])).await;
    assert_eq!(s, 200);
    assert_eq!(
        body,
        json!({"ok": true, "storeBackend": "postgres", "db": {"ok": true}})
    );
    let (s, _, one) = call(&state, get("/health/ready/postgres", &[])).await;
    assert_eq!(s, 200, "{one}");
    let (s, h, _) = call(&state, get("/health/ready/nope", &[])).await;
    assert_eq!(s, 404);
    assert_eq!(h["content-type"], "application/problem+json");
}

#[tokio::test]
async fn memory_server_has_no_database_check() {
    let state = app_state(memory_config()).await;
    state.health.mark_started();
    let (s, _, body) = call(&state, get("/health", &[])).await;
    assert_eq!((s.as_u16(), &body["storeBackend"]), (200, &json!("memory")));
    let (s, _, _) = call(&state, get("/health/ready", &[])).await;
    assert_eq!(s, 200);
}

fn status_of(addr: SocketAddr, path: &str) -> Option<u16> {
    over_socket(addr, "GET", path, &[], "").map(|r| r.status)
}

#[test]
fn sigterm_fails_readiness_before_the_drain_while_liveness_stays_up() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&[
        ("WATCHPOST_DATA_DIR", dir.path().display().to_string()),
        ("WATCHPOST_SHUTDOWN_DELAY_MS", "1500".to_owned()),
    ]);
    let addr = server.addr;
    let deadline = Instant::now() + Duration::from_secs(20);
    while status_of(addr, "/health/ready") != Some(200) {
        assert!(Instant::now() < deadline, "never became ready");
        std::thread::sleep(Duration::from_millis(50));
    }
    server.signal(Signal::SIGTERM);
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(
        status_of(addr, "/health/ready"),
        Some(503),
        "readiness fails at once after SIGTERM"
    );
    assert_eq!(
        status_of(addr, "/health/live"),
        Some(200),
        "liveness stays up"
    );
    assert_eq!(status_of(addr, "/ready"), Some(503));
    // After the delay the listener closes and the process exits cleanly.
    assert_eq!(server.exit_code(Duration::from_secs(15)), Some(0));
    assert_eq!(
        status_of(addr, "/health/live"),
        None,
        "nothing listens any more"
    );
}
