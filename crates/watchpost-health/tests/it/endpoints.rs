//! The endpoints: shapes (seed `/health` and `/ready`, probes, `?verbose`, `?exclude=`, one check,
//! health+json field by field), root-only details and cache headers.

use std::time::Duration;

use axum::Router;
use watchpost_health::{
    Check, CheckOutcome, HealthConfig, HealthRegistry, ShowDetails, check_fn, router,
};

use crate::{get, root, tenant};

fn registry(config: HealthConfig) -> HealthRegistry {
    let r = HealthRegistry::new(config);
    r.register(
        Check::new(
            "postgres",
            check_fn(|| async {
                CheckOutcome::pass()
                    .with_output("Pool: 10 total, 5 idle, 0 waiting")
                    .observe("connections", 10, Some("connections"))
            }),
        )
        .component_type("datastore")
        .cache_for(Duration::from_secs(7)),
    )
    .unwrap();
    r.register(
        Check::new(
            "redis",
            check_fn(|| async { CheckOutcome::fail("connection refused at 10.0.0.5:6379") }),
        )
        .non_critical()
        .cache_for(Duration::from_secs(3)),
    )
    .unwrap();
    r
}

fn make_app(config: HealthConfig) -> (HealthRegistry, Router) {
    let r = registry(config);
    (r.clone(), router(r))
}

#[tokio::test]
async fn health_has_the_seed_shape() {
    let (_, app) = make_app(HealthConfig::new("watchpost").store_backend("sqlite"));
    let a = get(&app, "/health", None).await;
    assert_eq!(a.status, 200);
    assert_eq!(
        a.json(),
        serde_json::json!({"status": "ok", "service": "watchpost", "storeBackend": "sqlite"})
    );
    let (_, app) = make_app(HealthConfig::new("orders"));
    assert_eq!(
        get(&app, "/health", None).await.json(),
        serde_json::json!({"status": "ok", "service": "orders"})
    );
}

#[tokio::test]
async fn readiness_json_verbose_exclude_and_cache_control() {
    let (r, app) = make_app(HealthConfig::default());
    let a = get(&app, "/health/ready", None).await;
    assert_eq!(a.status, 503, "not started yet");
    assert_eq!(a.json()["reason"], "start-up is not complete");
    let a = get(&app, "/health/ready?verbose", None).await;
    assert_eq!(
        a.text(),
        "[-]lifecycle failed: start-up is not complete\nreadyz check failed\n"
    );

    r.mark_started();
    let a = get(&app, "/health/ready", None).await;
    assert_eq!(a.status, 200);
    assert_eq!(a.header("content-type"), "application/json");
    assert_eq!(a.header("cache-control"), "max-age=3");
    let v = a.json();
    assert_eq!(v["status"], "warn");
    assert_eq!(v["health"], "degraded");
    assert_eq!(v["phase"], "started");
    assert_eq!(
        v["checks"]["postgres"],
        serde_json::json!({"status": "pass", "critical": true})
    );
    assert_eq!(
        v["checks"]["redis"],
        serde_json::json!({"status": "warn", "critical": false})
    );

    let a = get(&app, "/health/ready?verbose", None).await;
    assert_eq!(a.status, 200);
    assert!(a.header("content-type").starts_with("text/plain"));
    assert_eq!(
        a.text(),
        "[+]lifecycle ok\n[+]postgres ok\n[-]redis failed (non-critical): reason withheld\nreadyz check passed\n"
    );
    let a = get(&app, "/health/ready?verbose", Some(root())).await;
    assert!(
        a.text()
            .contains("[-]redis failed (non-critical): connection refused at 10.0.0.5:6379\n")
    );

    let a = get(
        &app,
        "/health/ready?verbose&exclude=redis&exclude=ghost",
        None,
    )
    .await;
    assert_eq!(
        a.text(),
        "[+]lifecycle ok\n[+]postgres ok\nwarn: some health checks cannot be excluded: no matches for \"ghost\"\nreadyz check passed\n"
    );
    assert_eq!(a.header("cache-control"), "max-age=7");
    let v = get(&app, "/health/ready?exclude=redis&exclude=ghost", None)
        .await
        .json();
    assert_eq!(v["status"], "pass");
    assert_eq!(v["unknownExcludes"], serde_json::json!(["ghost"]));

    r.mark_shutting_down();
    let a = get(&app, "/health/ready?verbose", None).await;
    assert_eq!(a.status, 503);
    assert_eq!(
        a.text(),
        "[-]lifecycle failed: the server is shutting down\nreadyz check failed\n"
    );
    let a = get(&app, "/health/live?verbose", None).await;
    assert_eq!(a.status, 200, "liveness stays up while draining");
    assert_eq!(a.text(), "livez check passed\n");
}

#[tokio::test]
async fn one_check_and_unknown_check() {
    let (r, app) = make_app(HealthConfig::default());
    r.mark_started();
    let a = get(&app, "/health/ready/postgres", None).await;
    assert_eq!(a.status, 200);
    assert_eq!(a.json()["checks"]["postgres"]["status"], "pass");
    let a = get(&app, "/health/ready/postgres?verbose", None).await;
    assert_eq!(a.text(), "[+]postgres ok\nreadyz check passed\n");
    let a = get(&app, "/health/ready/redis", None).await;
    assert_eq!(a.status, 200, "a non-critical failure is warn");
    assert_eq!(a.json()["status"], "warn");

    let a = get(&app, "/health/ready/ghost", None).await;
    assert_eq!(a.status, 404);
    assert_eq!(a.header("content-type"), "application/problem+json");
    let v = a.json();
    assert_eq!(v["type"], "urn:watchpost:problem:not-found");
    assert_eq!(v["status"], 404);
    assert_eq!(v["instance"], "/health/ready/ghost");
    assert!(v["detail"].as_str().unwrap().contains("\"ghost\""));
}

#[tokio::test]
async fn seed_ready_shape() {
    let config = HealthConfig::new("watchpost")
        .store_backend("postgres")
        .db_check("postgres");
    let (r, app) = make_app(config);
    let a = get(&app, "/ready", None).await;
    assert_eq!(a.status, 503);
    assert_eq!(a.json()["ok"], false);
    r.mark_started();
    let a = get(&app, "/ready", None).await;
    assert_eq!(a.status, 200);
    assert_eq!(
        a.json(),
        serde_json::json!({"ok": true, "storeBackend": "postgres", "db": {"ok": true}})
    );

    // A failing database: 503, the reason for root only.
    let r = HealthRegistry::new(
        HealthConfig::new("w")
            .store_backend("postgres")
            .db_check("postgres"),
    );
    r.register(Check::new(
        "postgres",
        check_fn(|| async { CheckOutcome::fail("refused") }),
    ))
    .unwrap();
    r.mark_started();
    let app = router(r);
    let a = get(&app, "/ready", None).await;
    assert_eq!(a.status, 503);
    assert_eq!(
        a.json(),
        serde_json::json!({"ok": false, "storeBackend": "postgres", "db": {"ok": false}})
    );
    let a = get(&app, "/ready", Some(root())).await;
    assert_eq!(
        a.json()["db"],
        serde_json::json!({"ok": false, "error": "refused"})
    );

    // The memory backend has no database.
    let r = HealthRegistry::new(HealthConfig::new("w").store_backend("memory"));
    r.mark_started();
    let a = get(&router(r), "/ready", None).await;
    assert_eq!(
        a.json(),
        serde_json::json!({"ok": true, "storeBackend": "memory"})
    );
}

fn assert_rfc3339(v: &serde_json::Value) {
    let s = v.as_str().unwrap_or_else(|| panic!("{v} is not a string"));
    chrono::DateTime::parse_from_rfc3339(s).unwrap_or_else(|e| panic!("{s}: {e}"));
}

#[tokio::test]
async fn detailed_is_health_json_field_by_field_for_root() {
    let config = HealthConfig::new("watchpost")
        .version("1.2.3")
        .release_id("1.2.3-abc")
        .service_id("wp-1")
        .description("operations server");
    let (r, app) = make_app(config);
    r.mark_started();
    r.set_open_connections(std::sync::Arc::new(|| Some(12)));
    let a = get(&app, "/health/detailed", Some(root())).await;
    assert_eq!(a.status, 200);
    assert_eq!(a.header("content-type"), "application/health+json");
    assert_eq!(a.header("cache-control"), "max-age=3");
    let v = a.json();
    assert_eq!(v["status"], "warn");
    assert_eq!(v["health"], "degraded");
    assert_eq!(v["version"], "1.2.3");
    assert_eq!(v["releaseId"], "1.2.3-abc");
    assert_eq!(v["serviceId"], "wp-1");
    assert_eq!(v["description"], "operations server");
    assert_eq!(v["phase"], "started");
    assert!(v["uptime"].as_f64().unwrap() >= 0.0);
    assert_rfc3339(&v["timestamp"]);
    assert!(v["process"]["residentMemoryMb"].as_f64().unwrap() > 0.0);
    assert_eq!(v["process"]["openConnections"], 12);

    let checks = v["checks"].as_object().unwrap();
    let mut keys: Vec<&str> = checks.keys().map(String::as_str).collect();
    keys.sort_unstable();
    assert_eq!(
        keys,
        [
            "postgres:connections",
            "postgres:responseTime",
            "redis:responseTime"
        ]
    );

    let rt = &checks["postgres:responseTime"].as_array().unwrap()[0];
    assert_eq!(rt["componentType"], "datastore");
    assert!(rt["observedValue"].as_f64().unwrap() >= 0.0);
    assert_eq!(rt["observedUnit"], "ms");
    assert_eq!(rt["status"], "pass");
    assert_rfc3339(&rt["time"]);
    assert_eq!(rt["output"], "Pool: 10 total, 5 idle, 0 waiting");

    let conns = &checks["postgres:connections"].as_array().unwrap()[0];
    assert_eq!(conns["observedValue"], 10);
    assert_eq!(conns["observedUnit"], "connections");
    assert_eq!(conns["status"], "pass");

    let redis = &checks["redis:responseTime"].as_array().unwrap()[0];
    assert_eq!(redis["componentType"], "component");
    assert_eq!(redis["status"], "warn");
    assert_eq!(redis["output"], "connection refused at 10.0.0.5:6379");
}

#[tokio::test]
async fn details_are_root_only_unless_always() {
    let (r, app) = make_app(HealthConfig::default());
    r.mark_started();
    for who in [None, Some(tenant())] {
        let v = get(&app, "/health/detailed", who.clone()).await.json();
        assert!(v.get("process").is_none(), "{who:?}: {v}");
        for (key, entries) in v["checks"].as_object().unwrap() {
            for e in entries.as_array().unwrap() {
                let fields: Vec<&str> = e.as_object().unwrap().keys().map(String::as_str).collect();
                assert_eq!(
                    fields,
                    ["componentType", "status", "time"],
                    "{who:?} sees {key}: {e}"
                );
            }
        }
        let v = get(&app, "/health/ready", who.clone()).await.json();
        assert!(v["checks"]["redis"].get("output").is_none());
    }
    let v = get(&app, "/health/ready", Some(root())).await.json();
    assert_eq!(
        v["checks"]["redis"]["output"],
        "connection refused at 10.0.0.5:6379"
    );
    assert!(v["checks"]["redis"]["durationMs"].is_number());

    let (r, app) = make_app(HealthConfig::default().show_details(ShowDetails::Always));
    r.mark_started();
    let v = get(&app, "/health/detailed", None).await.json();
    assert_eq!(
        v["checks"]["redis:responseTime"][0]["output"],
        "connection refused at 10.0.0.5:6379"
    );
    assert!(v["process"].is_object());

    let (r, app) = make_app(HealthConfig::default().show_details(ShowDetails::Never));
    r.mark_started();
    let v = get(&app, "/health/detailed", Some(root())).await.json();
    assert!(v.get("process").is_none());
}

#[tokio::test]
async fn mounts_under_a_prefix() {
    let r = registry(HealthConfig::default());
    r.mark_started();
    let app = Router::new().nest("/ops", r.router());
    assert_eq!(get(&app, "/ops/health/live", None).await.status, 200);
    assert_eq!(
        get(&app, "/ops/health/ready/postgres", None).await.status,
        200
    );
    assert_eq!(get(&app, "/health/live", None).await.status, 404);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn over_a_real_socket_shutdown_flips_readiness_while_liveness_stays() {
    let r = registry(HealthConfig::default());
    r.mark_started();
    let app = Router::new().nest("/ops", r.router());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(async move {
        axum::serve(listener, app)
            .with_graceful_shutdown(async {
                let _ = stop_rx.await;
            })
            .await
    });
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()
        .unwrap();
    let url = |p: &str| format!("http://{addr}/ops{p}");
    let ready = client.get(url("/health/ready")).send().await.unwrap();
    assert_eq!(ready.status(), 200);
    assert_eq!(ready.headers()["cache-control"], "max-age=3");

    // What the server does on SIGTERM: readiness first, then the drain.
    r.mark_shutting_down();
    let ready = client
        .get(url("/health/ready?verbose"))
        .send()
        .await
        .unwrap();
    assert_eq!(ready.status(), 503);
    assert!(
        ready
            .text()
            .await
            .unwrap()
            .contains("[-]lifecycle failed: the server is shutting down")
    );
    assert_eq!(
        client
            .get(url("/health/live"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    let missing = client.get(url("/health/ready/ghost")).send().await.unwrap();
    assert_eq!(missing.status(), 404);
    let problem: serde_json::Value = missing.json().await.unwrap();
    assert_eq!(problem["instance"], "/ops/health/ready/ghost");

    stop_tx.send(()).unwrap();
    tokio::time::timeout(Duration::from_secs(5), server)
        .await
        .expect("the server drains and stops")
        .unwrap()
        .unwrap();
}
