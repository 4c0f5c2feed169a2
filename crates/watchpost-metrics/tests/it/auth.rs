//! The optional bearer token on `/metrics`.

use axum::body::Body;
use http::Request;
use watchpost_core::{Principal, Role};
use watchpost_metrics::{Metrics, MetricsConfig, MetricsError};

use super::{app, get_req, metrics_with, send};

fn with_token() -> Metrics {
    metrics_with(MetricsConfig {
        token: Some("s3cret-scrape-token".into()),
        ..MetricsConfig::default()
    })
}

fn bearer(token: &str) -> Request<Body> {
    Request::get("/metrics")
        .header("authorization", format!("Bearer {token}"))
        .body(Body::empty())
        .unwrap()
}

#[tokio::test]
async fn token_is_required_when_configured() {
    let m = with_token();
    let app = app(&m);
    let response = send(&app, get_req("/metrics")).await;
    assert_eq!(response.status(), 401);
    assert_eq!(
        response.headers()["content-type"],
        "application/problem+json"
    );
    assert!(
        response.headers()["www-authenticate"]
            .to_str()
            .unwrap()
            .starts_with("Bearer")
    );

    assert_eq!(send(&app, bearer("wrong")).await.status(), 401);
    assert_eq!(
        send(&app, bearer("s3cret-scrape-token-longer"))
            .await
            .status(),
        401
    );
    assert_eq!(
        send(&app, bearer("s3cret-scrape-token")).await.status(),
        200
    );

    let mut req = get_req("/metrics");
    req.extensions_mut()
        .insert(Principal::new("root", "root", None, Role::Root));
    assert_eq!(send(&app, req).await.status(), 200);

    let mut req = get_req("/metrics");
    req.extensions_mut()
        .insert(Principal::new("t", "t", Some("acme".into()), Role::Tenant));
    assert_eq!(send(&app, req).await.status(), 401);
}

#[tokio::test]
async fn open_without_a_token() {
    let m = super::metrics();
    assert_eq!(send(&app(&m), get_req("/metrics")).await.status(), 200);
}

#[test]
fn empty_token_is_a_configuration_error() {
    let err = Metrics::new(MetricsConfig {
        token: Some("  ".into()),
        ..MetricsConfig::default()
    })
    .unwrap_err();
    assert!(matches!(err, MetricsError::InvalidConfig { .. }));
    assert!(err.to_string().contains("WATCHPOST_METRICS_TOKEN"));
}
