//! Log capture: every line inside a request carries the four ids; the request line has every field.

use watchpost_correlation::logging::subscriber;
use watchpost_correlation::{LoggingConfig, OtelConfig, Telemetry};
use watchpost_test_support::LogCapture;

use crate::support::{app, get_req, layer, send};

const TP: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

fn capture() -> (LogCapture, tracing::subscriber::DefaultGuard) {
    let cap = LogCapture::new();
    let telemetry = Telemetry::off(&OtelConfig::disabled("it"));
    let sub = subscriber(&LoggingConfig::default(), &telemetry, cap.clone()).expect("subscriber");
    let guard = tracing::subscriber::set_default(sub);
    (cap, guard)
}

#[tokio::test]
async fn every_line_inside_a_request_has_the_four_ids() {
    let (cap, _guard) = capture();
    let app = app(&layer());
    let (_, _) = send(
        &app,
        get_req(
            "/items/9",
            &[
                ("x-request-id", "log-1"),
                ("x-correlation-id", "corr-1"),
                ("traceparent", TP),
            ],
        ),
    )
    .await;
    let lines = cap.json_lines();
    let inside: Vec<_> = lines
        .iter()
        .filter(|l| {
            l["message"] == "looking the item up" || l["message"] == "inside a spawned task"
        })
        .collect();
    assert_eq!(inside.len(), 2, "{lines:#?}");
    for l in inside {
        assert_eq!(l["request_id"], "log-1", "{l}");
        assert_eq!(l["correlation_id"], "corr-1", "{l}");
        assert_eq!(l["trace_id"], "4bf92f3577b34da6a3ce929d0e0e4736", "{l}");
        let span_id = l["span_id"].as_str().expect("span id");
        assert_eq!(span_id.len(), 16);
        assert_ne!(
            span_id, "00f067aa0ba902b7",
            "the server span, not the caller's"
        );
    }
}

#[tokio::test]
async fn the_request_line_has_every_field() {
    let (cap, _guard) = capture();
    let app = app(&layer());
    send(&app, get_req("/tenant", &[("x-request-id", "line-1")])).await;
    send(&app, get_req("/limited", &[])).await;
    send(&app, get_req("/broken/3", &[])).await;
    send(&app, get_req("/nowhere/%0d%0a%1bx", &[])).await;

    let lines = cap.json_lines();
    let requests: Vec<_> = lines.iter().filter(|l| l["type"] == "request").collect();
    assert_eq!(requests.len(), 4, "{lines:#?}");
    for l in &requests {
        for key in [
            "method",
            "route",
            "path",
            "status",
            "durationMs",
            "apiKeyId",
            "tenantId",
            "requestId",
            "correlationId",
            "traceId",
            "spanId",
            "request_id",
            "correlation_id",
            "trace_id",
            "span_id",
        ] {
            assert!(l.get(key).is_some(), "{key} missing in {l}");
        }
    }
    let first = requests[0];
    assert_eq!(first["method"], "GET");
    assert_eq!(first["route"], "/tenant");
    assert_eq!(first["path"], "/tenant");
    assert_eq!(first["status"], 200);
    assert_eq!(first["level"], "INFO");
    assert_eq!(first["apiKeyId"], "key-7");
    assert_eq!(first["tenantId"], "acme");
    assert_eq!(first["requestId"], "line-1");
    assert_eq!(first["correlationId"], "line-1");
    assert!(first["durationMs"].as_f64().is_some());
    assert_eq!(first["traceId"].as_str().map(str::len), Some(32));
    assert_eq!(first["message"], "request completed");
    // The line's own ids and the request fields are written by different paths: they agree.
    assert_eq!(first["traceId"], first["trace_id"]);
    assert_eq!(first["spanId"], first["span_id"]);
    assert_eq!(first["spanId"].as_str().map(str::len), Some(16));
    assert_eq!(requests[1]["level"], "WARN");
    assert_eq!(requests[2]["level"], "ERROR");
    assert_eq!(requests[2]["route"], "/broken/{n}");
    assert_eq!(
        requests[3]["route"],
        serde_json::Value::Null,
        "no route matched: no template"
    );

    // Control characters never reach the raw text unescaped: every line is one JSON object.
    let text = cap.text();
    assert!(!text.contains('\u{1b}'));
    for raw in text.lines() {
        assert!(
            serde_json::from_str::<serde_json::Value>(raw).is_ok(),
            "{raw}"
        );
    }
}

#[tokio::test]
async fn request_logging_can_be_turned_off() {
    let (cap, _guard) = capture();
    let layer =
        watchpost_correlation::CorrelationLayer::new(watchpost_correlation::CorrelationConfig {
            request_log: false,
            ..Default::default()
        });
    send(&app(&layer), get_req("/hello", &[])).await;
    assert!(cap.json_lines().iter().all(|l| l["type"] != "request"));
}

#[tokio::test]
async fn pretty_output_carries_the_ids_as_span_fields() {
    let cap = LogCapture::new();
    let telemetry = Telemetry::off(&OtelConfig::disabled("it"));
    let logging = LoggingConfig {
        format: watchpost_correlation::LogFormat::Pretty,
        filter: "info".into(),
        ..LoggingConfig::default()
    };
    let _guard =
        tracing::subscriber::set_default(subscriber(&logging, &telemetry, cap.clone()).unwrap());
    send(
        &app(&layer()),
        get_req("/items/1", &[("x-request-id", "pretty-1")]),
    )
    .await;
    let text = cap.text();
    assert!(text.contains("looking the item up"), "{text}");
    // Pretty output may colour field names, so look for the names and the value separately.
    assert!(
        text.contains("request_id") && text.contains("pretty-1"),
        "{text}"
    );
    assert!(
        text.contains("trace_id") && text.contains("span_id"),
        "{text}"
    );
}
