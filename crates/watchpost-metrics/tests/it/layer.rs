//! The HTTP layer: route labels from `MatchedPath`, the unmatched value, `_OTHER`, exclusions,
//! body sizes, legacy names and the in-flight gauge on disconnect.

use std::time::Duration;

use axum::body::Body;
use http::Request;
use watchpost_metrics::{HttpNaming, MetricsConfig};

use super::{app, get_req, metrics, metrics_with, samples, send, text};

#[tokio::test]
async fn ten_thousand_raw_paths_on_one_route_make_one_series() {
    let m = metrics();
    let app = app(&m);
    for i in 0..10_000 {
        send(&app, get_req(&format!("/items/{i}"))).await;
    }
    let counts = samples(&m, "http_server_request_duration_seconds_count");
    assert_eq!(
        counts,
        vec![
            r#"http_server_request_duration_seconds_count{http_request_method="GET",http_route="/items/{id}",http_response_status_code="200"} 10000"#
        ]
    );
}

#[tokio::test]
async fn ten_thousand_unmatched_paths_make_one_series() {
    let m = metrics();
    let app = app(&m);
    for i in 0..10_000 {
        let response = send(&app, get_req(&format!("/scanner/{i}/wp-login.php"))).await;
        assert_eq!(response.status(), 404);
    }
    let counts = samples(&m, "http_server_request_duration_seconds_count");
    assert_eq!(
        counts,
        vec![
            r#"http_server_request_duration_seconds_count{http_request_method="GET",http_route="unmatched",http_response_status_code="404"} 10000"#
        ]
    );
    assert!(
        !m.render(watchpost_metrics::Format::Prometheus)
            .contains("wp-login")
    );
}

#[tokio::test]
async fn unknown_methods_are_other_and_excluded_paths_are_not_recorded() {
    let m = metrics();
    let app = app(&m);
    let req = Request::builder()
        .method(http::Method::from_bytes(b"BREW").unwrap())
        .uri("/items/1")
        .body(Body::empty())
        .unwrap();
    assert_eq!(send(&app, req).await.status(), 405);
    send(&app, get_req("/health/live")).await;
    send(&app, get_req("/metrics")).await;
    let counts = samples(&m, "http_server_request_duration_seconds_count");
    assert_eq!(
        counts,
        vec![
            r#"http_server_request_duration_seconds_count{http_request_method="_OTHER",http_route="/items/{id}",http_response_status_code="405"} 1"#
        ]
    );
}

#[tokio::test]
async fn body_sizes_are_recorded() {
    let m = metrics();
    let app = app(&m);
    let req = Request::post("/echo")
        .header("content-type", "text/plain")
        .body(Body::from("x".repeat(300)))
        .unwrap();
    assert_eq!(text(send(&app, req).await).await.len(), 300);
    let labels = r#"http_request_method="POST",http_route="/echo",http_response_status_code="200""#;
    let req_sum = samples(&m, "http_server_request_body_size_bytes_sum");
    assert_eq!(
        req_sum,
        vec![format!(
            "http_server_request_body_size_bytes_sum{{{labels}}} 300"
        )]
    );
    let resp_bucket = samples(&m, "http_server_response_body_size_bytes_bucket");
    assert!(resp_bucket.contains(&format!(
        "http_server_response_body_size_bytes_bucket{{{labels},le=\"1024.0\"}} 1"
    )));
    assert!(resp_bucket.contains(&format!(
        "http_server_response_body_size_bytes_bucket{{{labels},le=\"256.0\"}} 0"
    )));
}

#[tokio::test]
async fn legacy_and_both_namings() {
    let m = metrics_with(MetricsConfig {
        naming: HttpNaming::Legacy,
        ..MetricsConfig::default()
    });
    let app = app(&m);
    send(&app, get_req("/status/503")).await;
    assert_eq!(
        samples(&m, "http_requests_total"),
        vec![r#"http_requests_total{method="GET",route="/status/{code}",status_code="503"} 1"#]
    );
    assert_eq!(
        samples(&m, "http_request_duration_seconds_count"),
        vec![
            r#"http_request_duration_seconds_count{method="GET",route="/status/{code}",status_code="503"} 1"#
        ]
    );
    assert!(samples(&m, "http_server_request_duration_seconds").is_empty());

    let both = metrics_with(MetricsConfig {
        naming: HttpNaming::Both,
        ..MetricsConfig::default()
    });
    send(&app_for(&both), get_req("/items/9")).await;
    assert_eq!(samples(&both, "http_requests_total").len(), 1);
    assert_eq!(
        samples(&both, "http_server_request_duration_seconds_count").len(),
        1
    );
}

fn app_for(m: &watchpost_metrics::Metrics) -> axum::Router {
    app(m)
}

#[tokio::test(start_paused = true)]
async fn duration_is_measured_with_the_runtime_clock() {
    let m = metrics();
    let app = app(&m);
    send(&app, get_req("/slow/300")).await;
    let sum = samples(&m, "http_server_request_duration_seconds_sum");
    assert_eq!(sum.len(), 1);
    let value: f64 = sum[0].rsplit(' ').next().unwrap().parse().unwrap();
    assert!((0.3..0.31).contains(&value), "{value}");
    let bucket = samples(&m, "http_server_request_duration_seconds_bucket");
    assert!(bucket.iter().any(|l| l.contains("le=\"0.25\"} 0")));
    assert!(bucket.iter().any(|l| l.contains("le=\"0.5\"} 1")));
}

#[tokio::test]
async fn dropped_request_future_decrements_the_active_gauge() {
    let m = metrics();
    let app = app(&m);
    let fut = tower::ServiceExt::oneshot(app.clone(), get_req("/hang"));
    let mut fut = Box::pin(fut);
    // Poll once so the layer has seen the request.
    assert!(
        tokio::time::timeout(Duration::from_millis(50), &mut fut)
            .await
            .is_err()
    );
    assert_eq!(m.active_requests(), 1);
    assert!(
        samples(&m, "http_server_active_requests")
            .contains(&"http_server_active_requests 1".to_owned())
    );
    drop(fut);
    assert_eq!(m.active_requests(), 0);
    // Nothing was observed for the abandoned request.
    assert!(samples(&m, "http_server_request_duration_seconds_count").is_empty());
}

#[tokio::test]
async fn client_disconnect_over_a_real_socket_decrements_the_active_gauge() {
    use tokio::io::AsyncWriteExt;

    let m = metrics();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = tokio::spawn(axum::serve(listener, app(&m)).into_future());

    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    stream
        .write_all(b"GET /hang HTTP/1.1\r\nhost: test\r\n\r\n")
        .await
        .unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while m.active_requests() != 1 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "request never arrived"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    drop(stream);
    while m.active_requests() != 0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "active gauge still {} after the client went away",
            m.active_requests()
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    server.abort();
}
