//! The layer end to end: window edges under paused time, exact headers and 429 body,
//! keys, exemptions, overrides, shadow mode, hooks and metrics.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::routing::get;
use http::{Request, StatusCode};
use http_body_util::BodyExt;
use tower::ServiceExt;
use watchpost_core::{Principal, Role, TrustedProxies};
use watchpost_ratelimit::{MonotonicClock, RateLimitKey, RateLimiter, requests_per};

fn app(limiter: &RateLimiter) -> Router {
    Router::new()
        .route("/", get(|| async { "ok" }))
        .route("/items/{id}", get(|| async { "item" }))
        .route("/health/live", get(|| async { "live" }))
        .route("/metrics", get(|| async { "m" }))
        .layer(limiter.layer())
}

fn req(path: &str, peer: &str) -> Request<Body> {
    let mut r = Request::get(path).body(Body::empty()).unwrap();
    r.extensions_mut()
        .insert(ConnectInfo(peer.parse::<SocketAddr>().unwrap()));
    r
}

/// The status `app` answers `request` with.
async fn status(app: &Router, request: Request<Body>) -> StatusCode {
    app.clone().oneshot(request).await.unwrap().status()
}

async fn body_json(r: axum::response::Response) -> serde_json::Value {
    let bytes = r.into_body().collect().await.unwrap().to_bytes();
    serde_json::from_slice(&bytes).unwrap()
}

fn limiter(limit: u64, secs: u64) -> RateLimiter {
    RateLimiter::builder()
        .policies([requests_per(limit, Duration::from_secs(secs))])
        .clock(MonotonicClock::tokio())
        .build()
        .unwrap()
}

#[tokio::test(start_paused = true)]
async fn window_edges_headers_and_body_are_exact() {
    let l = limiter(3, 10);
    let app = app(&l);
    let peer = "203.0.113.1:5000";
    let r = app.clone().oneshot(req("/", peer)).await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.headers()["ratelimit-policy"], r#""default";q=3;w=10"#);
    assert_eq!(r.headers()["ratelimit"], r#""default";r=2;t=10"#);
    assert!(
        r.headers().get("x-ratelimit-limit").is_none(),
        "legacy headers are opt-in"
    );
    app.clone().oneshot(req("/", peer)).await.unwrap();
    let r = app.clone().oneshot(req("/", peer)).await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    // No unit left: t is the first moment one passes again, 10.001 s away, rounded up.
    assert_eq!(r.headers()["ratelimit"], r#""default";r=0;t=11"#);

    let r = app.clone().oneshot(req("/", peer)).await.unwrap();
    assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(r.headers()["content-type"], "application/problem+json");
    assert_eq!(r.headers()["retry-after"], "11");
    assert_eq!(r.headers()["ratelimit"], r#""default";r=0;t=11"#);
    assert_eq!(r.headers()["ratelimit-policy"], r#""default";q=3;w=10"#);
    assert_eq!(
        body_json(r).await,
        serde_json::json!({
            "type": "urn:watchpost:problem:quota-exceeded",
            "title": "Too Many Requests",
            "status": 429,
            "detail": "rate limit exceeded (default); retry in 11 s",
            "violatedPolicies": [{"policy": "default", "limit": 3, "windowSeconds": 10, "retryAfterSeconds": 11}],
            "retryAfter": 11
        })
    );

    // Another client is not affected.
    let r = app
        .clone()
        .oneshot(req("/", "203.0.113.2:5000"))
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);

    // At exactly 10 s the three requests still weigh 3 (floor(3 · 10000/10000)); one ms later 2.
    tokio::time::advance(Duration::from_millis(10_000)).await;
    let r = app.clone().oneshot(req("/", peer)).await.unwrap();
    assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(r.headers()["retry-after"], "1");
    tokio::time::advance(Duration::from_millis(1)).await;
    let r = app.clone().oneshot(req("/", peer)).await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    // Half-way through the next window the old window weighs floor(3 · 0.5) = 1, plus 1 counted:
    // no unit left, and one frees up when the old window weighs 0 (at 16.667 s): t=2.
    tokio::time::advance(Duration::from_millis(4_999)).await;
    let r = app.clone().oneshot(req("/", peer)).await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.headers()["ratelimit"], r#""default";r=0;t=2"#);
    // Two idle windows later the key is fresh again.
    tokio::time::advance(Duration::from_secs(20)).await;
    let r = app.clone().oneshot(req("/", peer)).await.unwrap();
    assert_eq!(r.headers()["ratelimit"], r#""default";r=2;t=5"#);
}

#[tokio::test(start_paused = true)]
async fn several_policies_and_legacy_headers() {
    let l = RateLimiter::builder()
        .policies([
            requests_per(2, Duration::from_secs(1)).named("burst"),
            requests_per(3, Duration::from_secs(60)).named("minute"),
        ])
        .legacy_headers(true)
        .clock(MonotonicClock::tokio())
        .build()
        .unwrap();
    let app = app(&l);
    let p = "198.51.100.7:1";
    let r = app.clone().oneshot(req("/", p)).await.unwrap();
    assert_eq!(
        r.headers()["ratelimit-policy"],
        r#""burst";q=2;w=1, "minute";q=3;w=60"#
    );
    assert_eq!(
        r.headers()["ratelimit"],
        r#""burst";r=1;t=1, "minute";r=2;t=60"#
    );
    assert_eq!(r.headers()["x-ratelimit-limit"], "2");
    assert_eq!(r.headers()["x-ratelimit-remaining"], "1");
    app.clone().oneshot(req("/", p)).await.unwrap();
    let r = app.clone().oneshot(req("/", p)).await.unwrap();
    assert_eq!(r.status(), 429);
    let body = body_json(r).await;
    assert_eq!(body["violatedPolicies"][0]["policy"], "burst");
    tokio::time::advance(Duration::from_millis(2_000)).await;
    assert_eq!(status(&app, req("/", p)).await, 200);
    // The minute policy is now spent although the burst one has room.
    tokio::time::advance(Duration::from_millis(2_000)).await;
    let r = app.clone().oneshot(req("/", p)).await.unwrap();
    assert_eq!(r.status(), 429);
    let body = body_json(r).await;
    assert_eq!(body["violatedPolicies"].as_array().unwrap().len(), 1);
    assert_eq!(body["violatedPolicies"][0]["policy"], "minute");
}

#[tokio::test]
async fn exemptions_routes_and_overrides() {
    let l = RateLimiter::builder()
        .policies([requests_per(1, Duration::from_secs(60))])
        .route(
            "/items/{id}",
            [requests_per(2, Duration::from_secs(60)).named("items")],
        )
        .role_override(
            Role::Root,
            [requests_per(5, Duration::from_secs(60)).named("root")],
        )
        .tenant_override(
            "big",
            [requests_per(4, Duration::from_secs(60)).named("big")],
        )
        .build()
        .unwrap();
    let app = app(&l);
    let p = "192.0.2.1:9";
    for _ in 0..5 {
        assert_eq!(status(&app, req("/health/live", p)).await, 200);
        let r = app.clone().oneshot(req("/metrics", p)).await.unwrap();
        assert!(
            r.headers().get("ratelimit").is_none(),
            "exempt routes carry no fields"
        );
    }
    // The route's own policy and counts.
    assert_eq!(status(&app, req("/", p)).await, 200);
    assert_eq!(status(&app, req("/", p)).await, 429);
    let r = app.clone().oneshot(req("/items/1", p)).await.unwrap();
    assert_eq!(r.headers()["ratelimit-policy"], r#""items";q=2;w=60"#);
    assert_eq!(status(&app, req("/items/2", p)).await, 200);
    assert_eq!(status(&app, req("/items/3", p)).await, 429);

    // Principals are keyed by API key and get their role's or tenant's policies; root is not exempt.
    let with = |path: &str, pr: Principal| {
        let mut r = req(path, p);
        r.extensions_mut().insert(pr);
        r
    };
    let root = Principal::new("root-key", "root", None, Role::Root);
    for _ in 0..5 {
        assert_eq!(status(&app, with("/", root.clone())).await, 200);
    }
    assert_eq!(status(&app, with("/", root.clone())).await, 429);
    let big = Principal::new("k-big", "b", Some("big".into()), Role::Tenant);
    let r = app.clone().oneshot(with("/items/1", big)).await.unwrap();
    assert_eq!(r.headers()["ratelimit-policy"], r#""big";q=4;w=60"#);
    let small = Principal::new("k-small", "s", Some("small".into()), Role::Tenant);
    let r = app.clone().oneshot(with("/", small)).await.unwrap();
    assert_eq!(r.status(), 200, "another key has its own count");
}

#[tokio::test]
async fn spoofed_forwarded_for_from_untrusted_peer_is_ignored() {
    let l = RateLimiter::builder()
        .policies([requests_per(1, Duration::from_secs(60))])
        .trusted_proxies(TrustedProxies::parse_list("10.0.0.0/8").unwrap())
        .build()
        .unwrap();
    let app = app(&l);
    let spoof = |peer: &str, xff: &str| {
        let mut r = req("/", peer);
        r.headers_mut()
            .insert("x-forwarded-for", xff.parse().unwrap());
        r
    };
    assert_eq!(status(&app, spoof("203.0.113.50:1", "1.1.1.1")).await, 200);
    // A new spoofed address does not buy a new budget.
    assert_eq!(status(&app, spoof("203.0.113.50:1", "2.2.2.2")).await, 429);
    // Through the trusted proxy, the forwarded client counts.
    assert_eq!(status(&app, spoof("10.0.0.1:1", "198.51.100.1")).await, 200);
    assert_eq!(status(&app, spoof("10.0.0.1:1", "198.51.100.2")).await, 200);
    assert_eq!(status(&app, spoof("10.0.0.1:1", "198.51.100.1")).await, 429);
    // IPv6 clients in one /56 share a budget.
    assert_eq!(status(&app, req("/", "[2001:db8:1:100::1]:1")).await, 200);
    assert_eq!(status(&app, req("/", "[2001:db8:1:1ff::9]:1")).await, 429);
}

#[tokio::test(start_paused = true)]
async fn shadow_mode_hook_metrics_and_custom_key() {
    let denials = Arc::new(Mutex::new(Vec::new()));
    let seen = denials.clone();
    let l = RateLimiter::builder()
        .policies([requests_per(1, Duration::from_secs(60)).named("tight")])
        .shadow(true)
        .clock(MonotonicClock::tokio())
        .key_fn(|parts| {
            parts
                .headers
                .get("x-client")
                .and_then(|v| v.to_str().ok())
                .map(|s| RateLimitKey::Custom(s.to_owned()))
        })
        .on_deny(move |e| {
            seen.lock().unwrap().push((
                e.key.to_string(),
                e.policy.name().to_owned(),
                e.route.map(str::to_owned),
                e.shadow,
            ));
        })
        .build()
        .unwrap();
    let mut registry = prometheus_client::registry::Registry::default();
    l.register_metrics(&mut registry);
    let app = app(&l);
    let mk = || {
        let mut r = req("/items/7", "192.0.2.9:1");
        r.headers_mut().insert("x-client", "acme".parse().unwrap());
        r
    };
    assert_eq!(status(&app, mk()).await, 200);
    let r = app.clone().oneshot(mk()).await.unwrap();
    assert_eq!(r.status(), 200, "shadow mode never refuses");
    assert_eq!(r.headers()["ratelimit"], r#""tight";r=0;t=61"#);
    assert_eq!(
        denials.lock().unwrap().as_slice(),
        &[(
            "custom:acme".to_owned(),
            "tight".to_owned(),
            Some("/items/{id}".to_owned()),
            true
        )]
    );
    let mut text = String::new();
    prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
    assert!(
        text.contains(
            r#"watchpost_ratelimit_decisions_total{policy="tight",decision="allowed"} 1"#
        ),
        "{text}"
    );
    assert!(
        text.contains(
            r#"watchpost_ratelimit_decisions_total{policy="tight",decision="shadow_denied"} 1"#
        ),
        "{text}"
    );
    assert!(text.contains("watchpost_ratelimit_keys 1"), "{text}");
    assert!(
        text.contains("watchpost_ratelimit_store_errors_total 0"),
        "{text}"
    );
}

#[tokio::test]
async fn disabled_limiter_passes_everything_untouched() {
    let config = watchpost_ratelimit::RateLimitConfig {
        enabled: false,
        default_policies: vec![requests_per(1, Duration::from_secs(60))],
        ..Default::default()
    };
    let l = RateLimiter::builder().config(config).build().unwrap();
    let app = app(&l);
    for _ in 0..3 {
        let r = app.clone().oneshot(req("/", "192.0.2.1:1")).await.unwrap();
        assert_eq!(r.status(), 200);
        assert!(r.headers().get("ratelimit").is_none());
    }
}

#[test]
fn bad_policies_are_refused_with_a_reason() {
    let e = RateLimiter::builder()
        .policies([requests_per(0, Duration::from_secs(1))])
        .build()
        .unwrap_err();
    assert!(e.to_string().contains("at least 1"), "{e}");
    let e = RateLimiter::builder().policies([]).build().unwrap_err();
    assert!(e.to_string().contains("1 to 4"), "{e}");
}
