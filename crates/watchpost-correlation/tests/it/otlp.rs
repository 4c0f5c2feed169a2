//! OTLP export to real in-test receivers (tonic gRPC and HTTP/protobuf), export switched off by
//! `OTEL_SDK_DISABLED` and `OTEL_TRACES_EXPORTER=none`, a bad sampler argument, and a stalled or
//! cut collector that must not slow requests.

use std::collections::HashMap;
use std::time::Duration;

use opentelemetry_proto::tonic::trace::v1::span::SpanKind;
use watchpost_correlation::logging::subscriber;
use watchpost_correlation::{LoggingConfig, OtelConfig, OtlpProtocol, Telemetry};
use watchpost_test_support::{FaultProxy, LogCapture};

use crate::support::{app, attr, get_req, grpc_receiver, http_receiver, layer, send};

const TP: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

fn fast(config: OtelConfig) -> OtelConfig {
    OtelConfig {
        schedule_delay: Duration::from_millis(50),
        timeout: Duration::from_secs(2),
        ..config
    }
}

fn lookup(vars: &[(&str, String)]) -> Result<OtelConfig, watchpost_correlation::TelemetryError> {
    let map: HashMap<String, String> = vars
        .iter()
        .map(|(k, v)| ((*k).to_owned(), v.clone()))
        .collect();
    OtelConfig::from_lookup("it", |k| map.get(k).cloned())
}

async fn exports_the_server_span(config: OtelConfig, received: crate::support::Received) {
    let telemetry = Telemetry::start(&config).expect("export starts");
    let cap = LogCapture::new();
    let _guard = tracing::subscriber::set_default(
        subscriber(&LoggingConfig::default(), &telemetry, cap.clone()).unwrap(),
    );
    let app = app(&layer());
    let (r, _) = send(
        &app,
        get_req(
            "/items/5",
            &[
                ("traceparent", TP),
                ("x-request-id", "otlp-1"),
                ("x-correlation-id", "c-9"),
            ],
        ),
    )
    .await;
    assert_eq!(r.status(), 200);
    send(&app, get_req("/broken/1", &[])).await;
    send(&app, get_req("/nowhere", &[])).await;
    let purge = http::Request::builder()
        .method("PURGE")
        .uri("/nowhere")
        .body(axum::body::Body::empty())
        .unwrap();
    send(&app, purge).await;
    watchpost_correlation::install_panic_hook();
    let (r, _) = send(&app, get_req("/panic/3", &[])).await;
    assert_eq!(r.status(), 500);
    telemetry
        .flush(Duration::from_secs(5))
        .await
        .expect("flush");

    let (service, span) = received.wait_for("GET /items/{id}").await;
    assert_eq!(service, config.service_name);
    assert_eq!(span.kind, SpanKind::Server as i32);
    assert_eq!(hex(&span.trace_id), "4bf92f3577b34da6a3ce929d0e0e4736");
    assert_eq!(hex(&span.parent_span_id), "00f067aa0ba902b7");
    for (key, want) in [
        ("http.request.method", "GET"),
        ("url.path", "/items/5"),
        ("url.scheme", "http"),
        ("http.route", "/items/{id}"),
        ("http.response.status_code", "200"),
        ("server.address", "api.example.com"),
        ("client.address", "203.0.113.9"),
        ("user_agent.original", "it/1.0"),
        ("request_id", "otlp-1"),
        ("correlation_id", "c-9"),
    ] {
        assert_eq!(
            attr(&span, key).as_deref(),
            Some(want),
            "{key} in {span:#?}"
        );
    }
    assert_eq!(attr(&span, "error.type"), None);

    // The log lines name the exported span.
    let line = cap
        .json_lines()
        .into_iter()
        .find(|l| l["type"] == "request" && l["requestId"] == "otlp-1")
        .expect("request line");
    assert_eq!(line["spanId"], hex(&span.span_id));

    let (_, failed) = received.wait_for("GET /broken/{n}").await;
    assert_eq!(attr(&failed, "error.type").as_deref(), Some("503"));
    assert_eq!(
        attr(&failed, "http.response.status_code").as_deref(),
        Some("503")
    );
    // No route matched: the span is named by the method alone; unknown methods are `_OTHER`, named `HTTP`.
    let (_, unmatched) = received.wait_for("GET").await;
    assert_eq!(attr(&unmatched, "http.route"), None);
    assert_eq!(
        attr(&unmatched, "http.response.status_code").as_deref(),
        Some("404")
    );
    let (_, other) = received.wait_for("HTTP").await;
    assert_eq!(
        attr(&other, "http.request.method").as_deref(),
        Some("_OTHER")
    );
    assert_eq!(
        attr(&other, "http.request.method_original").as_deref(),
        Some("PURGE")
    );

    let (_, panicked) = received.wait_for("GET /panic/{n}").await;
    assert_eq!(attr(&panicked, "error.type").as_deref(), Some("500"));
    let exception = panicked
        .events
        .iter()
        .find(|e| e.name == "exception")
        .unwrap_or_else(|| panic!("no exception event in {panicked:#?}"));
    let has = |k: &str| exception.attributes.iter().any(|a| a.key == k);
    assert!(has("exception.type") && has("exception.message") && has("exception.stacktrace"));
    assert!(telemetry.spans_exported() >= 3);
    telemetry
        .shutdown(Duration::from_secs(5))
        .await
        .expect("shutdown flushes");
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[tokio::test]
async fn grpc_receiver_gets_the_server_span() {
    let (addr, received) = grpc_receiver().await;
    let config = fast(
        OtelConfig::disabled("it-grpc")
            .with_endpoint(OtlpProtocol::Grpc, &format!("http://{addr}")),
    );
    exports_the_server_span(config, received).await;
}

#[tokio::test]
async fn http_protobuf_receiver_gets_the_server_span() {
    let (addr, received) = http_receiver().await;
    let config = lookup(&[
        ("OTEL_EXPORTER_OTLP_ENDPOINT", format!("http://{addr}")),
        ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf".into()),
        ("OTEL_SERVICE_NAME", "it-http".into()),
        ("OTEL_BSP_SCHEDULE_DELAY", "50".into()),
    ])
    .expect("valid configuration");
    exports_the_server_span(config, received).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn disabled_sdk_and_exporter_none_export_nothing() {
    let (addr, received) = http_receiver().await;
    for off in [
        ("OTEL_SDK_DISABLED", "true"),
        ("OTEL_TRACES_EXPORTER", "none"),
    ] {
        let config = lookup(&[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", format!("http://{addr}")),
            (off.0, off.1.into()),
        ])
        .unwrap();
        let telemetry = Telemetry::start(&config).unwrap();
        assert!(telemetry.tracer().is_none(), "{off:?}");
        let cap = LogCapture::new();
        let _guard = tracing::subscriber::set_default(
            subscriber(&LoggingConfig::default(), &telemetry, cap.clone()).unwrap(),
        );
        send(&app(&layer()), get_req("/hello", &[("traceparent", TP)])).await;
        telemetry.shutdown(Duration::from_secs(1)).await.unwrap();
        // Ids still reach the logs with export off.
        let line = cap
            .json_lines()
            .into_iter()
            .find(|l| l["type"] == "request")
            .expect("line");
        assert_eq!(line["traceId"], "4bf92f3577b34da6a3ce929d0e0e4736");
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(received.spans().is_empty(), "nothing may be exported");
}

#[tokio::test]
async fn a_bad_sampler_argument_fails_start_up() {
    let err = lookup(&[
        (
            "OTEL_EXPORTER_OTLP_ENDPOINT",
            "http://127.0.0.1:4318".into(),
        ),
        ("OTEL_TRACES_SAMPLER", "parentbased_traceidratio".into()),
        ("OTEL_TRACES_SAMPLER_ARG", "1.5".into()),
    ])
    .expect_err("a ratio above 1 is refused");
    let line = err.to_string();
    assert!(
        line.starts_with("invalid OTEL_TRACES_SAMPLER_ARG=\"1.5\""),
        "{line}"
    );
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

async fn latencies(app: &axum::Router, n: usize) -> Vec<Duration> {
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        let start = std::time::Instant::now();
        let (r, _) = send(app, get_req("/hello", &[])).await;
        assert_eq!(r.status(), 200);
        out.push(start.elapsed());
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_or_cut_collector_never_slows_requests() {
    let (addr, _received) = http_receiver().await;
    let proxy = FaultProxy::start(addr).await;
    let app = app(&layer());

    // Baseline: export disabled, same app, same test.
    let off = Telemetry::off(&OtelConfig::disabled("it"));
    let baseline = {
        let _g = tracing::subscriber::set_default(
            subscriber(&LoggingConfig::default(), &off, std::io::sink).unwrap(),
        );
        median(latencies(&app, 200).await)
    };

    let config = OtelConfig {
        max_queue_size: 8,
        max_export_batch_size: 4,
        schedule_delay: Duration::from_millis(20),
        timeout: Duration::from_millis(500),
        ..OtelConfig::disabled("it-fault").with_endpoint(
            OtlpProtocol::HttpProtobuf,
            &format!("http://{}", proxy.addr()),
        )
    };
    let telemetry = Telemetry::start(&config).unwrap();
    let _g = tracing::subscriber::set_default(
        subscriber(&LoggingConfig::default(), &telemetry, std::io::sink).unwrap(),
    );

    proxy.stall();
    let stalled = median(latencies(&app, 200).await);
    assert!(
        stalled < baseline * 5 + Duration::from_millis(3),
        "stalled collector: median {stalled:?} vs {baseline:?} with export off"
    );
    assert!(
        telemetry.spans_dropped() > 0,
        "a full queue drops and counts spans"
    );

    proxy.cut();
    let dropped_before = telemetry.spans_dropped();
    let cut = median(latencies(&app, 200).await);
    assert!(
        cut < baseline * 5 + Duration::from_millis(3),
        "collector down: median {cut:?} vs {baseline:?} with export off"
    );
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while telemetry.spans_dropped() <= dropped_before {
        assert!(
            tokio::time::Instant::now() < deadline,
            "drops keep being counted while the collector is down"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    let mut registry = prometheus_client::registry::Registry::default();
    telemetry.register_metrics(&mut registry);
    let mut text = String::new();
    prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
    assert!(
        text.contains("watchpost_otlp_spans_dropped_total{reason=\"queue_full\"}"),
        "{text}"
    );

    // Shutdown honours its deadline even with the collector unreachable.
    proxy.stall();
    let start = std::time::Instant::now();
    let _ = telemetry.shutdown(Duration::from_millis(300)).await;
    assert!(start.elapsed() < Duration::from_secs(2));
}
