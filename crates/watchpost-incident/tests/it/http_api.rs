//! The router: webhook authentication (401), malformed (400) and oversize (413) bodies, storage
//! failure (503), the incident API with its mutation hook, the status endpoints, and the OpenAPI document.

use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::Body;
use axum::http::{Request, StatusCode};
use http_body_util::BodyExt;
use tower::ServiceExt;
use watchpost_incident::engine::{ApplyContext, Changes, IncidentOp, NewIncident};
use watchpost_incident::model::{Actor, AlertRecord, Incident};
use watchpost_incident::outbox::{DeliveryResult, OutboxEntry};
use watchpost_incident::service::IncidentMutation;
use watchpost_incident::store::{
    BoxFuture, IncidentPage, IncidentQuery, IncidentStore, MemoryStore,
};
use watchpost_incident::{IncidentError, router};

use super::*;

fn app_with(config: IncidentConfig) -> (axum::Router, Arc<Mutex<Vec<IncidentMutation>>>) {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = seen.clone();
    let svc = IncidentService::builder(Arc::new(MemoryStore::new()))
        .config(config)
        .clock(Arc::new(watchpost_core::ManualClock::new(at(60))))
        .on_mutation(Arc::new(move |m: &IncidentMutation| {
            log.lock().unwrap().push(m.clone())
        }))
        .build();
    (router(svc), seen)
}

fn webhook(body: impl Into<Body>, auth: Option<&str>) -> Request<Body> {
    let mut b = Request::post("/webhooks/alertmanager").header("content-type", "application/json");
    if let Some(a) = auth {
        b = b.header("authorization", a);
    }
    b.body(body.into()).unwrap()
}

/// Sends `request` through `app`: status, content type and body as JSON.
async fn send(app: &Router, request: Request<Body>) -> (StatusCode, String, serde_json::Value) {
    json(app.clone().oneshot(request).await.unwrap()).await
}

async fn json(response: axum::response::Response) -> (StatusCode, String, serde_json::Value) {
    let status = response.status();
    let ct = response
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default();
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    (
        status,
        ct,
        serde_json::from_slice(&bytes).unwrap_or(serde_json::Value::Null),
    )
}

fn body_of(p: &WebhookPayload) -> String {
    serde_json::to_string(p).unwrap()
}

#[tokio::test]
async fn webhook_auth_is_required_and_checked() {
    let p = body_of(&delivery(vec![firing("A", "critical", "api", at(0))]));
    // No token configured: closed to everyone.
    let (app, _) = app_with(IncidentConfig::default());
    let (s, ct, v) = json(
        app.oneshot(webhook(p.clone(), Some(&format!("Bearer {TOKEN}"))))
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    assert_eq!(ct, "application/problem+json");
    assert!(
        v["detail"]
            .as_str()
            .unwrap()
            .contains("WATCHPOST_ALERTMANAGER_TOKEN")
    );

    let (app, _) = app_with(IncidentConfig {
        alertmanager_basic_auth: Some(("am".into(), "pw".into())),
        ..config()
    });
    for auth in [
        None,
        Some("Bearer wrong"),
        Some("Bearer "),
        Some("Token x"),
        Some("Basic bm9wZTpub3Bl"),
    ] {
        let r = app.clone().oneshot(webhook(p.clone(), auth)).await.unwrap();
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED, "{auth:?}");
    }
    let r = app
        .clone()
        .oneshot(webhook(p.clone(), Some(&format!("Bearer {TOKEN}"))))
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    use base64::Engine as _;
    let basic = base64::engine::general_purpose::STANDARD.encode("am:pw");
    let (s, _, v) = json(
        app.oneshot(webhook(p, Some(&format!("Basic {basic}"))))
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(v["status"], "duplicate");
}

#[tokio::test]
async fn malformed_and_oversize_bodies() {
    let (app, _) = app_with(config());
    let auth = format!("Bearer {TOKEN}");
    for bad in [
        "not json",
        "{}",
        r#"{"version":"4","status":"firing"}"#,
        r#"{"version":"9","status":"firing","alerts":[]}"#,
    ] {
        let (s, ct, v) = send(&app, webhook(bad, Some(&auth))).await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "{bad}");
        assert_eq!(ct, "application/problem+json");
        assert_eq!(v["status"], 400);
    }
    let big = format!("{{\"pad\":\"{}\"}}", "x".repeat(1024 * 1024 + 10));
    let (s, ct, v) = send(&app, webhook(big.clone(), Some(&auth))).await;
    assert_eq!(
        (s, ct.as_str()),
        (StatusCode::PAYLOAD_TOO_LARGE, "application/problem+json")
    );
    assert_eq!(v["limitBytes"], 1024 * 1024);
    // Without Content-Length (a streamed body) the limit still holds.
    let stream = Body::from_stream(futures_util::stream::iter(
        big.into_bytes()
            .chunks(64 * 1024)
            .map(|c| Ok::<_, std::io::Error>(bytes::Bytes::copy_from_slice(c)))
            .collect::<Vec<_>>(),
    ));
    let r = app.oneshot(webhook(stream, Some(&auth))).await.unwrap();
    assert_eq!(r.status(), StatusCode::PAYLOAD_TOO_LARGE);
}

/// A store whose every call fails, as a database outage would.
#[derive(Debug)]
struct BrokenStore;

fn down<T>() -> Result<T, IncidentError> {
    Err(IncidentError::Unavailable("connection refused".into()))
}

impl IncidentStore for BrokenStore {
    fn apply_delivery(
        &self,
        _: Arc<WebhookPayload>,
        _: ApplyContext,
    ) -> BoxFuture<'_, Result<Changes, IncidentError>> {
        Box::pin(async { down() })
    }
    fn create(
        &self,
        _: NewIncident,
        _: Actor,
        _: ApplyContext,
    ) -> BoxFuture<'_, Result<(Incident, Changes), IncidentError>> {
        Box::pin(async { down() })
    }
    fn apply_op(
        &self,
        _: String,
        _: IncidentOp,
        _: Actor,
        _: ApplyContext,
    ) -> BoxFuture<'_, Result<(Incident, Changes), IncidentError>> {
        Box::pin(async { down() })
    }
    fn get(&self, _: String) -> BoxFuture<'_, Result<Option<Incident>, IncidentError>> {
        Box::pin(async { down() })
    }
    fn list(&self, _: IncidentQuery) -> BoxFuture<'_, Result<IncidentPage, IncidentError>> {
        Box::pin(async { down() })
    }
    fn open_counts(
        &self,
    ) -> BoxFuture<'_, Result<Vec<(watchpost_core::Severity, u64)>, IncidentError>> {
        Box::pin(async { down() })
    }
    fn firing_alerts(&self) -> BoxFuture<'_, Result<Vec<AlertRecord>, IncidentError>> {
        Box::pin(async { down() })
    }
    fn claim_outbox(
        &self,
        _: chrono::DateTime<chrono::Utc>,
        _: std::time::Duration,
        _: usize,
    ) -> BoxFuture<'_, Result<Vec<OutboxEntry>, IncidentError>> {
        Box::pin(async { down() })
    }
    fn complete_outbox(
        &self,
        _: OutboxEntry,
        _: DeliveryResult,
        _: chrono::DateTime<chrono::Utc>,
    ) -> BoxFuture<'_, Result<(), IncidentError>> {
        Box::pin(async { down() })
    }
    fn outbox(&self) -> BoxFuture<'_, Result<Vec<OutboxEntry>, IncidentError>> {
        Box::pin(async { down() })
    }
    fn prune_events(
        &self,
        _: chrono::DateTime<chrono::Utc>,
    ) -> BoxFuture<'_, Result<u64, IncidentError>> {
        Box::pin(async { down() })
    }
}

#[tokio::test]
async fn storage_failure_is_503_so_alertmanager_retries() {
    let svc = IncidentService::builder(Arc::new(BrokenStore))
        .config(config())
        .build();
    let p = body_of(&delivery(vec![firing("A", "critical", "api", at(0))]));
    let (s, ct, v) = json(
        router(svc)
            .oneshot(webhook(p, Some(&format!("Bearer {TOKEN}"))))
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(s, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(ct, "application/problem+json");
    assert!(
        !v["detail"].as_str().unwrap().contains("refused"),
        "no internals leak: {v}"
    );
}

fn api(method: &str, uri: &str, body: Option<serde_json::Value>, with_key: bool) -> Request<Body> {
    let mut r = Request::builder().method(method).uri(uri);
    if body.is_some() {
        r = r.header("content-type", "application/json");
    }
    let mut req = r
        .body(body.map(|b| Body::from(b.to_string())).unwrap_or_default())
        .unwrap();
    if with_key {
        req.extensions_mut().insert(principal());
    }
    req
}

#[tokio::test]
async fn incident_api_lifecycle_and_mutation_hook() {
    let (app, seen) = app_with(config());
    let auth = format!("Bearer {TOKEN}");
    let p = body_of(&delivery(vec![firing("ApiDown", "critical", "api", at(0))]));
    let (s, _, v) = send(&app, webhook(p, Some(&auth))).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(v["status"], "accepted");
    assert_eq!(v["notificationsQueued"], 3);

    let r = app
        .clone()
        .oneshot(api("GET", "/incidents", None, false))
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    let (s, _, list) = send(
        &app,
        api(
            "GET",
            "/incidents?status=triggered&severity=critical",
            None,
            true,
        ),
    )
    .await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(list["items"].as_array().unwrap().len(), 1);
    let id = list["items"][0]["id"].as_str().unwrap().to_owned();
    let (s, _, _) = send(&app, api("GET", "/incidents?status=bogus", None, true)).await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    let (s, _, _) = send(&app, api("GET", "/incidents?cursor=%%%", None, true)).await;
    assert_eq!(s, StatusCode::BAD_REQUEST);

    let (s, _, one) = send(&app, api("GET", &format!("/incidents/{id}"), None, true)).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(one["timeline"][0]["event"]["type"], "triggered");
    assert_eq!(one["alerts"][0]["labels"]["alertname"], "ApiDown");
    let (s, ct, _) = send(&app, api("GET", "/incidents/none", None, true)).await;
    assert_eq!(
        (s, ct.as_str()),
        (StatusCode::NOT_FOUND, "application/problem+json")
    );

    let (s, _, acked) = send(
        &app,
        api("POST", &format!("/incidents/{id}/acknowledge"), None, true),
    )
    .await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(acked["status"], "acknowledged");
    assert_eq!(
        acked["timeline"].as_array().unwrap().last().unwrap()["actor"]["id"],
        "k1"
    );
    let update = serde_json::json!({"status": "identified", "note": "upstream DNS"});
    let (s, _, _) = send(
        &app,
        api(
            "POST",
            &format!("/incidents/{id}/updates"),
            Some(update),
            true,
        ),
    )
    .await;
    assert_eq!(s, StatusCode::OK);
    let (s, _, _) = send(
        &app,
        api(
            "POST",
            &format!("/incidents/{id}/updates"),
            Some(serde_json::json!({"status": "fixed"})),
            true,
        ),
    )
    .await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    let (s, _, done) = send(
        &app,
        api("POST", &format!("/incidents/{id}/resolve"), None, true),
    )
    .await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(done["status"], "resolved");
    let (s, _, _) = send(
        &app,
        api("POST", &format!("/incidents/{id}/acknowledge"), None, true),
    )
    .await;
    assert_eq!(s, StatusCode::CONFLICT);

    let new = serde_json::json!({"title": "Checkout errors", "severity": "warning", "service": "checkout"});
    let (s, _, created) = send(&app, api("POST", "/incidents", Some(new.clone()), true)).await;
    assert_eq!(s, StatusCode::CREATED);
    assert_eq!(created["source"], "manual");
    let r = app
        .clone()
        .oneshot(api("POST", "/incidents", Some(new), false))
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);

    let actions: Vec<(&str, u16)> = seen
        .lock()
        .unwrap()
        .iter()
        .map(|m| (m.action, m.status))
        .collect();
    assert_eq!(
        actions,
        vec![
            ("incident.acknowledge", 200),
            ("incident.update", 200),
            ("incident.update", 400),
            ("incident.resolve", 200),
            ("incident.acknowledge", 409),
            ("incident.create", 201),
        ]
    );
    assert!(
        seen.lock()
            .unwrap()
            .iter()
            .all(|m| m.principal.as_ref().is_some_and(|p| &*p.key_id == "k1"))
    );

    // Status endpoints are public.
    let (s, _, summary) = send(&app, api("GET", "/status/summary.json", None, false)).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(summary["status"]["indicator"], "minor");
    assert_eq!(summary["components"].as_array().unwrap().len(), 2);
    assert_eq!(summary["incidents"][0]["name"], "Checkout errors");
    let r = app
        .oneshot(api("GET", "/status", None, false))
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert!(
        r.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/html")
    );
    let html =
        String::from_utf8(r.into_body().collect().await.unwrap().to_bytes().to_vec()).unwrap();
    assert!(html.contains("Checkout errors") && html.contains("http-equiv=\"refresh\""));
    assert!(
        !html.contains("<script") && !html.contains("src=\"http"),
        "no scripts, no external assets"
    );
}

#[tokio::test]
async fn metrics_register_and_count_webhook_outcomes() {
    let svc = IncidentService::builder(Arc::new(MemoryStore::new()))
        .config(config())
        .build();
    let mut registry = prometheus_client::registry::Registry::default();
    svc.register_metrics(&mut registry);
    let app = router(svc);
    let p = body_of(&delivery(vec![firing("A", "critical", "api", at(0))]));
    app.clone()
        .oneshot(webhook(p.clone(), Some(&format!("Bearer {TOKEN}"))))
        .await
        .unwrap();
    app.clone()
        .oneshot(webhook(p.clone(), Some(&format!("Bearer {TOKEN}"))))
        .await
        .unwrap();
    app.oneshot(webhook(p, None)).await.unwrap();
    let mut text = String::new();
    prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
    for line in [
        "watchpost_incident_webhook_requests_total{outcome=\"accepted\"} 1",
        "watchpost_incident_webhook_requests_total{outcome=\"duplicate\"} 1",
        "watchpost_incident_webhook_requests_total{outcome=\"unauthorized\"} 1",
        "watchpost_incidents_open{severity=\"critical\"} 1",
        "# TYPE watchpost_incident_time_to_resolve_seconds histogram",
    ] {
        assert!(text.contains(line), "missing {line} in\n{text}");
    }
}

#[test]
fn openapi_lists_exactly_the_served_routes() {
    let doc = watchpost_incident::openapi();
    let mut documented: Vec<String> = doc.paths.paths.keys().cloned().collect();
    documented.sort();
    let mut served = vec![
        "/incidents",
        "/incidents/{id}",
        "/incidents/{id}/acknowledge",
        "/incidents/{id}/resolve",
        "/incidents/{id}/updates",
        "/status",
        "/status/summary.json",
        "/webhooks/alertmanager",
    ];
    served.sort();
    assert_eq!(documented, served);
    // Every documented path answers something other than 404/405 on the router.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let app = router(IncidentService::builder(Arc::new(MemoryStore::new())).build());
    for (path, item) in &doc.paths.paths {
        let concrete = path.replace("{id}", "x");
        let methods: Vec<&str> = [("GET", item.get.is_some()), ("POST", item.post.is_some())]
            .into_iter()
            .filter(|(_, present)| *present)
            .map(|(m, _)| m)
            .collect();
        assert!(!methods.is_empty(), "{path}");
        for m in methods {
            let r = rt
                .block_on(
                    app.clone().oneshot(
                        Request::builder()
                            .method(m)
                            .uri(&concrete)
                            .body(Body::empty())
                            .unwrap(),
                    ),
                )
                .unwrap();
            assert!(
                r.status() != StatusCode::NOT_FOUND
                    || r.headers()["content-type"] == "application/problem+json",
                "{m} {path}"
            );
            assert_ne!(r.status(), StatusCode::METHOD_NOT_ALLOWED, "{m} {path}");
        }
    }
}
