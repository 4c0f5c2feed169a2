//! The Redis store against a real Redis: the same decisions as the local store for the
//! same sequence (property test), and faults through the test-support proxy (stall, cut):
//! every decision within the timeout, the failure mode honoured and counted, recovery
//! without a restart, refused keys answered locally.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Body;
use axum::routing::get;
use proptest::prelude::*;
use tower::ServiceExt;
use watchpost_ratelimit::{
    FailureMode, MonotonicClock, RateLimitKey, RateLimiter, RedisConfig, RedisStore, requests_per,
};
use watchpost_test_support::{FaultProxy, TestRedis};

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

static CASE: AtomicU64 = AtomicU64::new(0);

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    #[test]
    fn local_and_redis_decide_alike(
        steps in proptest::collection::vec((0usize..3, 0u64..2_500, 1u64..4), 1..60),
        start in 0u64..10_000_000,
    ) {
        let rt = runtime();
        rt.block_on(async {
            let redis = TestRedis::new().await;
            let clock = MonotonicClock::manual();
            let local = RateLimiter::builder()
                .policies([
                    requests_per(5, Duration::from_millis(2_000)).named("short"),
                    requests_per(9, Duration::from_millis(7_000)).named("long"),
                ])
                .clock(clock.clone())
                .build()
                .unwrap();
            let set = local.default_policies().clone();
            let mut cfg = RedisConfig::new(redis.url());
            cfg.key_prefix = redis.prefix().to_owned();
            cfg.timeout = Duration::from_secs(5);
            let store = RedisStore::new(cfg, clock.clone()).unwrap();
            let case = CASE.fetch_add(1, Ordering::Relaxed);
            let keys: Vec<RateLimitKey> = (0..3).map(|k| RateLimitKey::Custom(format!("c{case}-{k}"))).collect();
            let mut now = start;
            for (k, dt, cost) in steps {
                now += dt;
                clock.set_ms(now);
                let a = local.try_check_now(&keys[k], &set, cost).unwrap();
                let b = store.decide_raw(&keys[k], &set, cost, Some(now)).await.unwrap();
                prop_assert_eq!(a, b, "at {} ms, key {}, cost {}", now, k, cost);
            }
            Ok(())
        })?;
    }
}

fn app(limiter: &RateLimiter) -> Router {
    Router::new()
        .route("/", get(|| async { "ok" }))
        .layer(limiter.layer())
}

fn req(client: &str) -> http::Request<Body> {
    let mut r = http::Request::get("/").body(Body::empty()).unwrap();
    r.extensions_mut().insert(watchpost_core::Principal::new(
        client,
        "t",
        None,
        watchpost_core::Role::Tenant,
    ));
    r
}

fn metrics_text(registry: &prometheus_client::registry::Registry) -> String {
    let mut text = String::new();
    prometheus_client::encoding::text::encode(&mut text, registry).unwrap();
    text
}

fn limiter_via(proxy: &FaultProxy, redis: &TestRedis, mode: FailureMode) -> RateLimiter {
    let mut cfg = RedisConfig::new(redis.url_via(proxy.addr()));
    cfg.key_prefix = redis.prefix().to_owned();
    cfg.failure_mode = mode;
    cfg.breaker_cooldown = Duration::from_millis(300);
    RateLimiter::builder()
        .policies([requests_per(2, Duration::from_secs(60))])
        .clock(MonotonicClock::system())
        .redis(cfg)
        .build()
        .unwrap()
}

/// Sends a request and checks it was answered within the 20 ms timeout (plus scheduling slack).
async fn timed(app: &Router, client: &str) -> (u16, Duration) {
    let t = Instant::now();
    let r = tokio::time::timeout(Duration::from_secs(2), app.clone().oneshot(req(client)))
        .await
        .expect("a decision never waits for Redis past the timeout")
        .unwrap();
    (r.status().as_u16(), t.elapsed())
}

async fn until_healthy(app: &Router, client: &str) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let r = app.clone().oneshot(req(client)).await.unwrap();
        if r.headers().get("ratelimit").is_some() {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "the Redis store did not recover after the fault ended"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn stalled_redis_fails_open_within_the_timeout_and_recovers() {
    let redis = TestRedis::new().await;
    let proxy = FaultProxy::start(redis.socket_addr()).await;
    let limiter = limiter_via(&proxy, &redis, FailureMode::FailOpen);
    let mut registry = prometheus_client::registry::Registry::default();
    limiter.register_metrics(&mut registry);
    limiter
        .connect()
        .await
        .expect("Redis answers through the proxy");
    let app = app(&limiter);

    // Healthy: shared counts, a refusal, then the refused key answered locally.
    assert_eq!(timed(&app, "a").await.0, 200);
    assert_eq!(timed(&app, "a").await.0, 200);
    assert_eq!(timed(&app, "a").await.0, 429);

    proxy.stall();
    for i in 0..6 {
        let (status, took) = timed(&app, "b").await;
        assert_eq!(status, 200, "fail-open lets request {i} through");
        assert!(
            took < Duration::from_millis(250),
            "request {i} took {took:?}"
        );
    }
    // The refused key needs no Redis call until its reset.
    let (status, took) = timed(&app, "a").await;
    assert_eq!(status, 429);
    assert!(
        took < Duration::from_millis(5),
        "answered locally in {took:?}"
    );
    // The breaker is open: no waiting at all.
    assert!(limiter_breaker_open(&limiter));
    let (_, took) = timed(&app, "c").await;
    assert!(
        took < Duration::from_millis(5),
        "open circuit answers at once, took {took:?}"
    );

    let text = metrics_text(&registry);
    let errors = counter(&text, "watchpost_ratelimit_store_errors_total");
    assert!(errors >= 3.0, "{text}");
    assert!(
        counter(
            &text,
            r#"watchpost_ratelimit_decisions_total{policy="default",decision="fail_open"}"#
        ) >= 6.0
    );

    proxy.pass();
    until_healthy(&app, "d").await;
}

#[tokio::test]
async fn cut_redis_fails_closed_when_configured_and_recovers() {
    let redis = TestRedis::new().await;
    let proxy = FaultProxy::start(redis.socket_addr()).await;
    let limiter = limiter_via(&proxy, &redis, FailureMode::FailClosed);
    let mut registry = prometheus_client::registry::Registry::default();
    limiter.register_metrics(&mut registry);
    limiter
        .connect()
        .await
        .expect("Redis answers through the proxy");
    let app = app(&limiter);
    // A healthy decision first. Fail-closed turns a first round trip slower than the 20 ms timeout
    // (a loaded machine) into a 429, so wait for one answered by Redis rather than assert the first.
    let deadline = Instant::now() + Duration::from_secs(10);
    for attempt in 0.. {
        if timed(&app, &format!("x{attempt}")).await.0 == 200 {
            break;
        }
        assert!(Instant::now() < deadline, "Redis never answered in time");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    proxy.cut();
    for i in 0..5 {
        let (status, took) = timed(&app, "y").await;
        assert_eq!(status, 429, "fail-closed refuses request {i}");
        assert!(
            took < Duration::from_millis(250),
            "request {i} took {took:?}"
        );
    }
    let text = metrics_text(&registry);
    assert!(
        counter(&text, "watchpost_ratelimit_store_errors_total") >= 1.0,
        "{text}"
    );
    assert!(
        counter(
            &text,
            r#"watchpost_ratelimit_decisions_total{policy="default",decision="fail_closed"}"#
        ) >= 5.0
    );

    proxy.pass();
    until_healthy(&app, "z").await;
}

fn limiter_breaker_open(l: &RateLimiter) -> bool {
    l.redis_store().is_some_and(RedisStore::circuit_open)
}

fn counter(text: &str, name: &str) -> f64 {
    text.lines()
        .find_map(|l| {
            l.strip_prefix(name)
                .and_then(|rest| rest.trim().parse().ok())
        })
        .unwrap_or(0.0)
}
