//! `GET /metrics/summary`: figures checked against a known request mix, and root-only access.

use std::sync::Arc;

use axum::body::Body;
use chrono::{DateTime, Utc};
use http::Request;
use watchpost_core::{AuthFailure, ManualClock, Principal, Role};
use watchpost_metrics::{Metrics, MetricsConfig};

use super::{app, get_req, send, text};

fn root() -> Principal {
    Principal::new("root", "root", None, Role::Root)
}

fn summary_req(principal: Option<Principal>) -> Request<Body> {
    let mut req = get_req("/metrics/summary");
    if let Some(p) = principal {
        req.extensions_mut().insert(p);
    }
    req
}

#[tokio::test(start_paused = true)]
async fn figures_match_a_known_request_mix() {
    let start: DateTime<Utc> = "2026-01-01T00:00:00Z".parse().unwrap();
    let m =
        Metrics::with_clock(MetricsConfig::default(), Arc::new(ManualClock::new(start))).unwrap();
    let app = app(&m);
    // 10 requests of 10 ms .. 100 ms (GET 200), 2 of 500 (GET), 1 POST 200, 1 unmatched 404.
    for i in 1..=10u64 {
        send(&app, get_req(&format!("/slow/{}", i * 10))).await;
    }
    send(&app, get_req("/status/500")).await;
    send(&app, get_req("/status/503")).await;
    send(&app, Request::post("/echo").body(Body::from("x")).unwrap()).await;
    send(&app, get_req("/missing")).await;

    let response = send(&app, summary_req(Some(root()))).await;
    assert_eq!(response.status(), 200);
    let v: serde_json::Value = serde_json::from_str(&text(response).await).unwrap();
    assert_eq!(v["totalRequests"], 14);
    assert_eq!(v["totalErrors"], 2);
    assert_eq!(
        v["requestsByStatus"],
        serde_json::json!({"200": 11, "404": 1, "500": 1, "503": 1})
    );
    assert_eq!(
        v["requestsByMethod"],
        serde_json::json!({"GET": 13, "POST": 1})
    );
    // 550 ms over 14 requests; the others took no (paused) time.
    let avg = v["averageDurationMs"].as_f64().unwrap();
    assert!((avg - 550.0 / 14.0).abs() < 0.01, "{avg}");
    let p50 = v["p50DurationMs"].as_f64().unwrap();
    let p95 = v["p95DurationMs"].as_f64().unwrap();
    let p99 = v["p99DurationMs"].as_f64().unwrap();
    // Sorted: 4 zeros, then 10..100 ms. Rank 7 of 14 is 30 ms; ranks 14 are 100 ms.
    assert!((p50 - 30.0).abs() <= 1.0, "p50 {p50}");
    assert!((p95 - 100.0).abs() <= 3.0, "p95 {p95}");
    assert!((p99 - 100.0).abs() <= 3.0, "p99 {p99}");
    assert_eq!(v["since"], "2026-01-01T00:00:00Z");
    // The metrics router is merged after the layer, so reading the summary is not counted.
    assert_eq!(m.summary().total_requests, 14);
}

#[tokio::test]
async fn summary_is_root_only() {
    let m = super::metrics();
    let app = app(&m);

    let response = send(&app, summary_req(None)).await;
    assert_eq!(response.status(), 401);
    assert_eq!(
        response.headers()["content-type"],
        "application/problem+json"
    );
    let body: serde_json::Value = serde_json::from_str(&text(response).await).unwrap();
    assert_eq!(body["status"], 401);

    let mut req = summary_req(None);
    req.extensions_mut().insert(AuthFailure::Revoked);
    let response = send(&app, req).await;
    assert_eq!(response.status(), 401);
    let body: serde_json::Value = serde_json::from_str(&text(response).await).unwrap();
    assert_eq!(body["reason"], "revoked");

    let tenant = Principal::new("k1", "ci", Some("acme".into()), Role::Tenant);
    let mut req = summary_req(Some(tenant));
    let ctx = watchpost_core::RequestContext::new();
    let request_id = ctx.request_id.to_string();
    req.extensions_mut().insert(ctx);
    let response = send(&app, req).await;
    assert_eq!(response.status(), 403);
    let body: serde_json::Value = serde_json::from_str(&text(response).await).unwrap();
    assert_eq!(body["requestId"], request_id.as_str());

    assert_eq!(send(&app, summary_req(Some(root()))).await.status(), 200);
}
