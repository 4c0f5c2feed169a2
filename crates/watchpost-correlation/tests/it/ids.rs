//! The layer's id, trace-context and problem-body behaviour through a real axum router.

use prometheus_client::registry::Registry;
use watchpost_correlation::{CorrelationConfig, CorrelationLayer, IdHeader};

use crate::support::{app, get_req, layer, send};

const TP: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

#[tokio::test]
async fn valid_ids_are_kept_and_echoed() {
    let layer = layer();
    let app = app(&layer);
    let (r, body) = send(
        &app,
        get_req(
            "/hello",
            &[
                ("x-request-id", "req.1:a_b-c"),
                ("x-correlation-id", "order-42"),
            ],
        ),
    )
    .await;
    assert_eq!(body, "hi");
    assert_eq!(r.headers()["x-request-id"], "req.1:a_b-c");
    assert_eq!(r.headers()["x-correlation-id"], "order-42");
    assert!(
        r.headers().get("traceparent").is_none(),
        "traceparent on responses is opt-in"
    );
}

#[tokio::test]
async fn missing_correlation_id_equals_the_request_id() {
    let app = app(&layer());
    let (r, _) = send(&app, get_req("/hello", &[])).await;
    let rid = r.headers()["x-request-id"].to_str().unwrap().to_owned();
    assert_eq!(rid.len(), 36, "a generated UUIDv7");
    assert_eq!(r.headers()["x-correlation-id"], rid.as_str());
}

#[tokio::test]
async fn bad_ids_are_replaced_never_echoed_and_counted() {
    let layer = layer();
    let app = app(&layer);
    let long = "a".repeat(129);
    for bad in [long.as_str(), "has space", "semi;colon", "ünï"] {
        let mut req = get_req("/hello", &[]);
        req.headers_mut().insert(
            "x-request-id",
            http::HeaderValue::from_bytes(bad.as_bytes()).unwrap(),
        );
        req.headers_mut().insert(
            "x-correlation-id",
            http::HeaderValue::from_bytes(bad.as_bytes()).unwrap(),
        );
        let (r, _) = send(&app, req).await;
        let rid = r.headers()["x-request-id"].to_str().unwrap();
        assert_ne!(rid.as_bytes(), bad.as_bytes());
        assert!(
            !rid.contains(&bad[..bad.len().min(10)]),
            "never truncated and echoed"
        );
        assert_eq!(rid.len(), 36);
        assert_eq!(r.headers()["x-correlation-id"], rid);
    }
    // Two values of an otherwise valid id are refused too.
    let mut req = get_req("/hello", &[]);
    req.headers_mut()
        .append("x-request-id", "a".parse().unwrap());
    req.headers_mut()
        .append("x-request-id", "b".parse().unwrap());
    let (r, _) = send(&app, req).await;
    assert!(!["a", "b"].contains(&r.headers()["x-request-id"].to_str().unwrap()));

    assert_eq!(layer.metrics().rejected_ids(IdHeader::RequestId), 5);
    assert_eq!(layer.metrics().rejected_ids(IdHeader::CorrelationId), 4);
    let mut registry = Registry::default();
    layer.register_metrics(&mut registry);
    let mut text = String::new();
    prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
    assert!(
        text.contains(r#"watchpost_correlation_rejected_ids_total{header="x-request-id"} 5"#),
        "{text}"
    );
    assert!(
        text.contains(r#"watchpost_correlation_rejected_ids_total{header="x-correlation-id"} 4"#),
        "{text}"
    );
}

#[tokio::test]
async fn traceparent_is_continued_and_returned_when_asked() {
    let layer = CorrelationLayer::new(CorrelationConfig {
        return_traceparent: true,
        ..CorrelationConfig::default()
    });
    let app = app(&layer);
    let (r, _) = send(&app, get_req("/hello", &[("traceparent", TP)])).await;
    let tp = r.headers()["traceparent"].to_str().unwrap();
    assert!(
        tp.starts_with("00-4bf92f3577b34da6a3ce929d0e0e4736-"),
        "{tp}"
    );
    assert!(
        !tp.contains("00f067aa0ba902b7"),
        "the server span is a new span: {tp}"
    );
    assert!(tp.ends_with("-01"), "sampled flag kept: {tp}");

    // Malformed: a new root trace.
    let (r, _) = send(&app, get_req("/hello", &[("traceparent", "00-1-1-01")])).await;
    let tp = r.headers()["traceparent"].to_str().unwrap();
    assert_eq!(tp.len(), 55);
    assert!(!tp.contains("4bf92f3577b34da6a3ce929d0e0e4736"));
}

#[tokio::test]
async fn tracecontext_can_be_turned_off() {
    let layer = CorrelationLayer::new(CorrelationConfig {
        return_traceparent: true,
        propagators: watchpost_correlation::Propagators {
            trace_context: false,
            baggage: false,
        },
        ..CorrelationConfig::default()
    });
    let (r, _) = send(&app(&layer), get_req("/hello", &[("traceparent", TP)])).await;
    assert!(
        !r.headers()["traceparent"]
            .to_str()
            .unwrap()
            .contains("4bf92f3577b34da6a3ce929d0e0e4736")
    );
}

#[tokio::test]
async fn problem_bodies_get_the_request_id() {
    let app = app(&layer());
    let (r, body) = send(&app, get_req("/limited", &[("x-request-id", "rid-429")])).await;
    assert_eq!(r.status(), 429);
    assert_eq!(r.headers()["content-type"], "application/problem+json");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["requestId"], "rid-429");
    assert_eq!(v["detail"], "slow down");
}

#[tokio::test]
async fn the_request_context_reaches_handlers_and_spawned_tasks() {
    let app = app(&layer());
    let (_, body) = send(&app, get_req("/items/7", &[("x-request-id", "ctx-1")])).await;
    assert_eq!(body, "item 7 ctx-1");
}

#[tokio::test]
async fn unmatched_routes_still_get_ids() {
    let app = app(&layer());
    let (r, _) = send(&app, get_req("/nowhere", &[])).await;
    assert_eq!(r.status(), 404);
    assert!(r.headers().contains_key("x-request-id"));
}
