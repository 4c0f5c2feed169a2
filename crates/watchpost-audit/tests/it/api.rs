//! The HTTP API and the layer, through `tower::ServiceExt::oneshot` on the router.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use axum::Router;
use axum::body::Body;
use axum::routing::post;
use http::{Request, StatusCode};
use http_body_util::BodyExt;
use serde_json::{Value, json};
use tower::ServiceExt;
use watchpost_audit::{
    AuditConfig, AuditLayer, AuditStore, Auditor, DeliveryMode, MemoryStore, router,
};
use watchpost_core::{Principal, Role};

use crate::support::FlakyStore;

/// Puts the principal named by the `x-test-key` header into the extensions, as the server's auth would.
async fn fake_auth(
    mut req: Request<Body>,
    next: axum::middleware::Next,
) -> axum::response::Response {
    let p = match req
        .headers()
        .get("x-test-key")
        .and_then(|v| v.to_str().ok())
    {
        Some("root") => Some(Principal::new("key-root", "root", None, Role::Root)),
        Some("a") => Some(Principal::new(
            "key-a",
            "tenant a",
            Some("a".into()),
            Role::Tenant,
        )),
        Some("b") => Some(Principal::new(
            "key-b",
            "tenant b",
            Some("b".into()),
            Role::Tenant,
        )),
        _ => None,
    };
    if let Some(p) = p {
        req.extensions_mut().insert(p);
    }
    next.run(req).await
}

fn app(auditor: Auditor, handler_runs: Arc<AtomicUsize>, mode: DeliveryMode) -> Router {
    Router::new()
        .route(
            "/things",
            post(move || {
                handler_runs.fetch_add(1, Ordering::SeqCst);
                async { (StatusCode::CREATED, "made") }
            })
            .get(|| async { "list" }),
        )
        .layer(AuditLayer::new(auditor.clone()).mutating_mode(mode))
        .merge(router(auditor))
        .layer(axum::middleware::from_fn(fake_auth))
}

async fn call(
    app: &Router,
    method: &str,
    uri: &str,
    key: Option<&str>,
    body: Body,
) -> (StatusCode, String, Value) {
    let mut req = Request::builder()
        .method(method)
        .uri(uri)
        .header("content-type", "application/json");
    if let Some(k) = key {
        req = req.header("x-test-key", k);
    }
    let resp = app.clone().oneshot(req.body(body).unwrap()).await.unwrap();
    let status = resp.status();
    let ct = resp
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default();
    let bytes = resp.into_body().collect().await.unwrap().to_bytes();
    let json = serde_json::from_slice(&bytes)
        .unwrap_or(Value::String(String::from_utf8_lossy(&bytes).into_owned()));
    (status, ct, json)
}

fn setup() -> (Router, Auditor, Arc<AtomicUsize>) {
    let auditor = Auditor::builder(Arc::new(MemoryStore::new()))
        .start()
        .unwrap();
    let runs = Arc::new(AtomicUsize::new(0));
    (
        app(auditor.clone(), runs.clone(), DeliveryMode::Blocking),
        auditor,
        runs,
    )
}

#[tokio::test]
async fn posted_events_take_the_caller_as_actor() {
    let (app, _, _) = setup();
    let body = json!({
        "action": "config_change", "resourceType": "policy", "resourceId": "p1",
        "actor": {"apiKeyId": "key-root", "tenantId": "b", "role": "root"},
        "apiKeyId": "key-root", "tenantId": "b", "payload": {"token": "s3cret", "x": 1}
    });
    let (s, _, v) = call(
        &app,
        "POST",
        "/audit/events",
        Some("a"),
        Body::from(body.to_string()),
    )
    .await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    let id = v["id"].as_str().unwrap().to_owned();
    let (s, _, e) = call(
        &app,
        "GET",
        &format!("/audit/events/{id}"),
        Some("a"),
        Body::empty(),
    )
    .await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(e["actor"]["apiKeyId"], "key-a");
    assert_eq!(e["actor"]["tenantId"], "a");
    assert_eq!(e["actor"]["role"], "tenant");
    assert_eq!(e["action"], "config_change");
    assert!(
        e["payload"]["token"]
            .as_str()
            .unwrap()
            .starts_with("hmac-sha256:")
    );
    let (s, ct, _) = call(
        &app,
        "POST",
        "/audit/events",
        None,
        Body::from(body.to_string()),
    )
    .await;
    assert_eq!(
        (s, ct.as_str()),
        (StatusCode::UNAUTHORIZED, "application/problem+json")
    );
}

#[tokio::test]
async fn bad_input_gets_problem_json() {
    let (app, _, _) = setup();
    for (method, uri, body) in [
        ("POST", "/audit/events", "{not json"),
        ("POST", "/audit/events", r#"{"resourceType":"x"}"#),
        (
            "POST",
            "/audit/events",
            r#"{"action":"create","outcome":"maybe"}"#,
        ),
        ("GET", "/audit/events?colour=red", ""),
        ("GET", "/audit/events?outcome=maybe", ""),
        ("GET", "/audit/events?from=yesterday", ""),
        ("GET", "/audit/events?limit=1001", ""),
        ("GET", "/audit/events?cursor=zzz", ""),
        ("GET", "/audit/events/not-a-uuid", ""),
    ] {
        let (s, ct, v) = call(&app, method, uri, Some("root"), Body::from(body)).await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "{method} {uri} {body}: {v}");
        assert_eq!(ct, "application/problem+json");
        assert_eq!(v["status"], 400);
    }
    let big = json!({"action": "create", "payload": {"blob": "x".repeat(1024 * 1024)}}).to_string();
    let (s, ct, v) = call(&app, "POST", "/audit/events", Some("a"), Body::from(big)).await;
    assert_eq!(
        (s, ct.as_str()),
        (StatusCode::PAYLOAD_TOO_LARGE, "application/problem+json"),
        "{v}"
    );
}

#[tokio::test]
async fn tenants_see_only_their_own_events() {
    let (app, _, _) = setup();
    let mut ids = Vec::new();
    for (key, n) in [("a", 3), ("b", 2)] {
        for i in 0..n {
            let body = json!({"action": "create", "resourceId": format!("{key}{i}")}).to_string();
            let (s, _, v) = call(&app, "POST", "/audit/events", Some(key), Body::from(body)).await;
            assert_eq!(s, StatusCode::CREATED);
            ids.push((key, v["id"].as_str().unwrap().to_owned()));
        }
    }
    let (_, _, page) = call(&app, "GET", "/audit/events", Some("b"), Body::empty()).await;
    assert_eq!(page["items"].as_array().unwrap().len(), 2);
    assert!(
        page["items"]
            .as_array()
            .unwrap()
            .iter()
            .all(|e| e["actor"]["tenantId"] == "b")
    );
    let (s, _, _) = call(
        &app,
        "GET",
        "/audit/events?tenantId=a",
        Some("b"),
        Body::empty(),
    )
    .await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    let a_id = &ids[0].1;
    let (s, ct, _) = call(
        &app,
        "GET",
        &format!("/audit/events/{a_id}"),
        Some("b"),
        Body::empty(),
    )
    .await;
    assert_eq!(
        (s, ct.as_str()),
        (StatusCode::NOT_FOUND, "application/problem+json")
    );

    // Root sees all, page by page.
    let mut seen = Vec::new();
    let mut uri = "/audit/events?limit=2".to_owned();
    loop {
        let (s, _, page) = call(&app, "GET", &uri, Some("root"), Body::empty()).await;
        assert_eq!(s, StatusCode::OK);
        seen.extend(
            page["items"]
                .as_array()
                .unwrap()
                .iter()
                .map(|e| e["id"].as_str().unwrap().to_owned()),
        );
        match page["nextCursor"].as_str() {
            Some(c) => uri = format!("/audit/events?limit=2&cursor={c}"),
            None => break,
        }
    }
    assert_eq!(seen.len(), 5);
    let newest_first: Vec<String> = ids.iter().rev().map(|(_, id)| id.clone()).collect();
    assert_eq!(seen, newest_first);

    // Export streams NDJSON, confined the same way.
    let (s, ct, body) = call(&app, "GET", "/audit/export", Some("a"), Body::empty()).await;
    assert_eq!((s, ct.as_str()), (StatusCode::OK, "application/x-ndjson"));
    let lines: Vec<Value> = body
        .as_str()
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 3);
    assert!(lines.iter().all(|e| e["actor"]["tenantId"] == "a"));
}

#[tokio::test]
async fn verify_is_root_only() {
    let (app, _, _) = setup();
    call(
        &app,
        "POST",
        "/audit/events",
        Some("a"),
        Body::from(r#"{"action":"login"}"#),
    )
    .await;
    let (s, ct, _) = call(&app, "GET", "/audit/verify", Some("a"), Body::empty()).await;
    assert_eq!(
        (s, ct.as_str()),
        (StatusCode::FORBIDDEN, "application/problem+json")
    );
    let (s, _, _) = call(&app, "GET", "/audit/verify", None, Body::empty()).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    let (s, _, report) = call(&app, "GET", "/audit/verify", Some("root"), Body::empty()).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(report["ok"], true, "{report}");
    assert_eq!(report["eventsChecked"], 1);
}

#[tokio::test]
async fn layer_records_writes_with_their_outcome() {
    let (app, auditor, runs) = setup();
    let (s, _, _) = call(&app, "POST", "/things", Some("a"), Body::from("{}")).await;
    assert_eq!(s, StatusCode::CREATED);
    call(&app, "GET", "/things", Some("a"), Body::empty()).await;
    assert_eq!(runs.load(Ordering::SeqCst), 1);
    auditor.flush().await.unwrap();
    let page = auditor
        .store()
        .query(&watchpost_audit::EventQuery {
            limit: 10,
            ..Default::default()
        })
        .await
        .unwrap();
    let recorded: Vec<_> = page
        .items
        .iter()
        .filter(|e| e.route.as_deref() == Some("/things"))
        .collect();
    assert_eq!(recorded.len(), 1, "GET is not recorded by default");
    let e = recorded[0];
    assert_eq!(e.method.as_deref(), Some("POST"));
    assert_eq!(e.outcome.status, Some(201));
    assert_eq!(e.actor.api_key_id.as_deref(), Some("key-a"));
}

#[tokio::test]
async fn fail_closed_refuses_to_run_the_handler_when_nothing_is_durable() {
    let store = Arc::new(FlakyStore::default());
    let auditor = Auditor::builder(store.clone())
        .config(AuditConfig::default())
        .start()
        .unwrap();
    let runs = Arc::new(AtomicUsize::new(0));
    let app = app(auditor.clone(), runs.clone(), DeliveryMode::FailClosed);
    let (s, _, _) = call(&app, "POST", "/things", Some("a"), Body::from("{}")).await;
    assert_eq!(s, StatusCode::CREATED);
    assert_eq!(runs.load(Ordering::SeqCst), 1);
    let page = store
        .query(&watchpost_audit::EventQuery {
            limit: 10,
            ..Default::default()
        })
        .await
        .unwrap();
    let outcomes: Vec<_> = page
        .items
        .iter()
        .map(|e| e.outcome.result.as_str())
        .collect();
    assert_eq!(
        outcomes,
        ["success", "pending"],
        "pending before, completion after"
    );

    store.down.store(true, Ordering::SeqCst);
    let (s, ct, v) = call(&app, "POST", "/things", Some("a"), Body::from("{}")).await;
    assert_eq!(
        (s, ct.as_str()),
        (StatusCode::SERVICE_UNAVAILABLE, "application/problem+json"),
        "{v}"
    );
    assert_eq!(runs.load(Ordering::SeqCst), 1, "the handler did not run");
}

#[tokio::test]
async fn metrics_are_registered() {
    let (app, auditor, _) = setup();
    call(
        &app,
        "POST",
        "/audit/events",
        Some("a"),
        Body::from(r#"{"action":"login"}"#),
    )
    .await;
    let mut registry = prometheus_client::registry::Registry::default();
    auditor.register_metrics(&mut registry);
    let mut text = String::new();
    prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
    for name in [
        "watchpost_audit_events_recorded_total 1",
        "watchpost_audit_events_failed_total 0",
        "watchpost_audit_events_spooled_total 0",
        "watchpost_audit_spool_bytes 0",
        "watchpost_audit_spool_alarm 0",
        "watchpost_audit_write_duration_seconds_count 1",
    ] {
        assert!(text.contains(name), "{name} missing from:\n{text}");
    }
}

#[tokio::test]
async fn openapi_lists_exactly_the_served_paths() {
    let doc = watchpost_audit::openapi();
    let mut documented: Vec<String> = doc.paths.paths.keys().cloned().collect();
    documented.sort();
    assert_eq!(
        documented,
        [
            "/audit/events",
            "/audit/events/{id}",
            "/audit/export",
            "/audit/verify"
        ]
    );
    let (app, _, _) = setup();
    for path in documented {
        let uri = path.replace("{id}", &uuid::Uuid::now_v7().to_string());
        let (s, ct, _) = call(&app, "GET", &uri, Some("root"), Body::empty()).await;
        // Served routes answer with JSON of their own (a 404 for the unknown id is a problem body);
        // an unserved path would get axum's empty fallback.
        assert!(ct.starts_with("application/"), "{path} is not served: {s}");
    }
    let (s, ct, _) = call(&app, "GET", "/audit/nothing", Some("root"), Body::empty()).await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    assert!(
        ct.is_empty(),
        "an unserved path has no problem body from this router"
    );
}
