//! watchpost-incident as wired into the server: an Alertmanager delivery opens one incident (once,
//! however often it is redelivered), acknowledging it is audited, the status page shows it, the
//! webhook's token is its own (no auth failure, never rate limited), and notifications carry the
//! correlation id of the request that caused them, signed, to a local receiver.

use std::sync::{Arc, Mutex};

use axum::body::Body;
use serde_json::Value;

use crate::support::{ROOT_KEY, app_state, call, get, memory_config, post_json};

const AM_TOKEN: &str = "alertmanager-token-0123456789";
const FIRE: &str =
    include_str!("../../../watchpost-incident/tests/fixtures/alertmanager/fire.json");

#[tokio::test]
async fn alert_to_incident_to_status_page() {
    let received: Arc<Mutex<Vec<(http::HeaderMap, Value)>>> = Arc::default();
    let sink = received.clone();
    let receiver = axum::Router::new().route(
        "/hook",
        axum::routing::post(move |headers: http::HeaderMap, body: axum::body::Bytes| {
            let sink = sink.clone();
            async move {
                let v: Value = serde_json::from_slice(&body).expect("notification JSON");
                sink.lock().unwrap().push((headers, v));
                "ok"
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let hook_addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, receiver).await });

    let mut config = memory_config();
    config.incident.alertmanager_token = Some(AM_TOKEN.to_owned());
    config.incident.webhook = Some((
        format!("http://{hook_addr}/hook"),
        "webhook-secret-0123456789".to_owned(),
    ));
    config.rate_limit_max_requests = 10;
    let state = app_state(config).await;
    let am = format!("Bearer {AM_TOKEN}");

    // Redelivered twelve times (more than the rate limit of 10 allows): one incident, never a 429.
    for n in 0..12 {
        let (s, _, body) = call(
            &state,
            post_json(
                "/webhooks/alertmanager",
                &[("authorization", &am), ("x-request-id", "am-delivery-1")],
                FIRE,
            ),
        )
        .await;
        assert!(s.is_success(), "delivery {n}: {s} {body}");
    }
    let (s, _, _) = call(
        &state,
        post_json(
            "/webhooks/alertmanager",
            &[("authorization", "Bearer wrong-token-00000000000")],
            FIRE,
        ),
    )
    .await;
    assert_eq!(s, 401);
    assert_eq!(
        state.auth.counters().snapshot()[1],
        ("malformed", 0),
        "the webhook token is not an API key"
    );

    let root = format!("Bearer {ROOT_KEY}");
    let (s, _, page) = call(&state, get("/incidents", &[("authorization", &root)])).await;
    assert_eq!(s, 200, "{page}");
    let items = page["items"].as_array().unwrap();
    assert_eq!(items.len(), 1, "{page}");
    let id = items[0]["id"].as_str().unwrap().to_owned();
    let (s, _, _) = call(&state, get("/incidents", &[])).await;
    assert_eq!(s, 401, "the incident API needs a key");

    let ack = http::Request::post(format!("/incidents/{id}/acknowledge"))
        .header("authorization", &root)
        .header("content-type", "application/json")
        .body(Body::from("{}"))
        .unwrap();
    let (s, _, acked) = call(&state, ack).await;
    assert_eq!(s, 200, "{acked}");
    assert_eq!(acked["status"], "acknowledged");

    // The acknowledgement is in the audit trail (detached write: poll briefly).
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    loop {
        let (_, _, trail) = call(
            &state,
            get(
                "/audit/events?action=incident_acknowledged",
                &[("authorization", &root)],
            ),
        )
        .await;
        if let Some(e) = trail["items"].as_array().and_then(|i| i.first()) {
            assert_eq!(e["resourceId"], id.as_str());
            assert_eq!(e["actor"]["apiKeyId"], "root");
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "acknowledgement not audited: {trail}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    }

    let (s, h, html) = call(&state, get("/status", &[])).await;
    assert_eq!(s, 200);
    assert!(h["content-type"].to_str().unwrap().starts_with("text/html"));
    let html = html.as_str().unwrap().to_owned();
    assert!(
        html.contains("ApiDown on a"),
        "the open incident is on the status page"
    );
    let (s, _, summary) = call(&state, get("/status/summary.json", &[])).await;
    assert_eq!(s, 200);
    assert_eq!(summary["status"]["indicator"], "critical", "{summary}");
    assert!(
        summary["components"]
            .as_array()
            .unwrap()
            .iter()
            .any(|c| c["name"] == "api" && c["status"] == "major_outage"),
        "{summary}"
    );

    // The generic webhook got the trigger once, signed, with the delivery's correlation id.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while received.lock().unwrap().is_empty() {
        assert!(
            std::time::Instant::now() < deadline,
            "no notification arrived"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let got = received.lock().unwrap().clone();
    let triggers: Vec<_> = got
        .iter()
        .filter(|(_, v)| v.to_string().contains("trigger"))
        .collect();
    assert_eq!(
        triggers.len(),
        1,
        "notified once for twelve deliveries: {got:?}"
    );
    let (headers, _) = triggers[0];
    assert!(headers.contains_key("x-watchpost-signature"));
    assert_eq!(headers["x-correlation-id"], "am-delivery-1");
}
