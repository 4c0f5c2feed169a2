//! A panicking handler: 500 problem with the request id (never the panic message), an exception log
//! line with the backtrace, error groups and `GET /errors`, and a real server that keeps serving.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use watchpost_core::{Principal, Role};
use watchpost_correlation::logging::subscriber;
use watchpost_correlation::{ErrorKind, LoggingConfig, OtelConfig, Telemetry};
use watchpost_test_support::LogCapture;

use crate::support::{app, get_req, layer, send};

#[tokio::test]
async fn a_panic_becomes_a_500_problem_and_an_error_group() {
    watchpost_correlation::install_panic_hook();
    let cap = LogCapture::new();
    let telemetry = Telemetry::off(&OtelConfig::disabled("it"));
    let _guard = tracing::subscriber::set_default(
        subscriber(&LoggingConfig::default(), &telemetry, cap.clone()).unwrap(),
    );
    let layer = layer();
    let app = app(&layer);

    let (r, body) = send(&app, get_req("/panic/1", &[("x-request-id", "boom-1")])).await;
    assert_eq!(r.status(), 500);
    assert_eq!(r.headers()["content-type"], "application/problem+json");
    assert_eq!(r.headers()["x-request-id"], "boom-1");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["requestId"], "boom-1");
    assert_eq!(v["status"], 500);
    assert!(
        !body.contains("secret"),
        "the panic message never reaches the client: {body}"
    );

    let (r, _) = send(&app, get_req("/panic/2", &[("x-request-id", "boom-2")])).await;
    assert_eq!(r.status(), 500);
    let (r, _) = send(&app, get_req("/hello", &[])).await;
    assert_eq!(r.status(), 200, "the service keeps serving");

    let groups = layer.errors().list();
    assert_eq!(groups.len(), 1, "{groups:#?}");
    let g = &groups[0];
    assert_eq!(g.kind, ErrorKind::Panic);
    assert_eq!(g.count, 2, "same template and location: one group");
    assert_eq!(g.last_request_id.as_deref(), Some("boom-2"));
    assert!(g.location.contains("support.rs"), "{}", g.location);
    assert_eq!(layer.metrics().errors(ErrorKind::Panic), 2);

    let lines = cap.json_lines();
    let exception = lines
        .iter()
        .find(|l| l["message"] == "exception" && l["request_id"] == "boom-1")
        .unwrap_or_else(|| panic!("no exception line in {lines:#?}"));
    assert_eq!(exception["level"], "ERROR");
    assert_eq!(exception["exception.type"], "panic");
    assert!(
        exception["exception.message"]
            .as_str()
            .unwrap()
            .contains("secret value 1")
    );
    assert!(
        !exception["exception.stacktrace"]
            .as_str()
            .unwrap()
            .is_empty()
    );
    let request_line = lines
        .iter()
        .find(|l| l["type"] == "request" && l["requestId"] == "boom-1")
        .expect("request line for the panic");
    assert_eq!(request_line["status"], 500);
}

#[tokio::test]
async fn server_errors_are_grouped_by_route_and_listed_for_root_only() {
    let layer = layer();
    let app = app(&layer);
    for n in 1..=3 {
        let (r, body) = send(&app, get_req(&format!("/broken/{n}"), &[])).await;
        assert_eq!(r.status(), 503);
        assert!(body.contains("requestId"));
    }
    assert_eq!(layer.metrics().errors(ErrorKind::ServerError), 3);

    let (r, body) = send(&app, get_req("/errors", &[])).await;
    assert_eq!(r.status(), 401);
    assert!(body.contains("requestId"), "{body}");

    let mut req = get_req("/errors", &[]);
    req.extensions_mut().insert(Principal::new(
        "t1",
        "tenant",
        Some("acme".into()),
        Role::Tenant,
    ));
    assert_eq!(send(&app, req).await.0.status(), 403);

    let mut req = get_req("/errors", &[]);
    req.extensions_mut()
        .insert(Principal::new("root", "root", None, Role::Root));
    let (r, body) = send(&app, req).await;
    assert_eq!(r.status(), 200);
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    let groups = v["groups"].as_array().unwrap();
    assert_eq!(groups.len(), 1, "{body}");
    assert_eq!(groups[0]["count"], 3);
    assert_eq!(groups[0]["kind"], "server_error");
    assert_eq!(groups[0]["location"], "/broken/{n}");
    assert_eq!(
        groups[0]["errorType"],
        "urn:watchpost:problem:service-unavailable"
    );
    assert!(groups[0]["firstSeen"].is_string() && groups[0]["lastSeen"].is_string());
}

#[tokio::test]
async fn a_panic_in_a_spawned_task_is_logged_with_the_request_ids() {
    watchpost_correlation::install_panic_hook();
    let cap = LogCapture::new();
    let telemetry = Telemetry::off(&OtelConfig::disabled("it"));
    let _guard = tracing::subscriber::set_default(
        subscriber(&LoggingConfig::default(), &telemetry, cap.clone()).unwrap(),
    );
    let app = app(&layer());
    let (r, body) = send(
        &app,
        get_req("/background-panic", &[("x-request-id", "bg-1")]),
    )
    .await;
    assert_eq!((r.status().as_u16(), body.as_str()), (200, "task failed"));
    let lines = cap.json_lines();
    let line = lines
        .iter()
        .find(|l| l["message"] == "exception" && l["request_id"] == "bg-1")
        .unwrap_or_else(|| panic!("the background panic must not be silent: {lines:#?}"));
    assert!(
        line["exception.message"]
            .as_str()
            .unwrap()
            .contains("background job 17")
    );
}

async fn raw_get(addr: SocketAddr, path: &str) -> String {
    let mut s = tokio::net::TcpStream::connect(addr).await.expect("connect");
    s.write_all(format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes())
        .await
        .expect("write");
    let mut out = String::new();
    tokio::time::timeout(Duration::from_secs(10), s.read_to_string(&mut out))
        .await
        .expect("answer within 10 s")
        .expect("read");
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_real_server_keeps_serving_after_panics() {
    watchpost_correlation::install_panic_hook();
    let layer = layer();
    let app = app(&layer);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = tokio::spawn(async move {
        let _ = axum::serve(
            listener,
            app.into_make_service_with_connect_info::<SocketAddr>(),
        )
        .await;
    });
    for n in 0..5 {
        let answer = raw_get(addr, &format!("/panic/{n}")).await;
        assert!(answer.starts_with("HTTP/1.1 500"), "{answer}");
        assert!(answer.contains("\"requestId\""), "{answer}");
        assert!(!answer.contains("secret"), "{answer}");
    }
    let answer = raw_get(addr, "/hello").await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert_eq!(layer.errors().list()[0].count, 5);
    server.abort();
}
