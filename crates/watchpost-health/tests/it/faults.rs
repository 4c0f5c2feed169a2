//! Fault tests against real PostgreSQL and Redis through `FaultProxy`: pass, stall (timeout),
//! cut (fail), restore (pass again without a restart); criticality; single flight against a
//! real database.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use axum::Router;
use deadpool_postgres::tokio_postgres::NoTls;
use watchpost_health::checks::{PostgresCheck, RedisCheck};
use watchpost_health::{
    Check, CheckFuture, CheckOutcome, HealthCheck, HealthConfig, HealthRegistry, Probe, check_fn,
    router,
};
use watchpost_test_support::{FaultProxy, TestDatabase, TestRedis};

use crate::{get, root};

const TIMEOUT: Duration = Duration::from_millis(400);
/// What a probe may take beyond the check timeout on a busy 2-core machine.
const MARGIN: Duration = Duration::from_millis(600);

fn pool(url: &str) -> deadpool_postgres::Pool {
    let mut cfg = deadpool_postgres::Config::new();
    cfg.url = Some(url.to_owned());
    cfg.create_pool(Some(deadpool_postgres::Runtime::Tokio1), NoTls)
        .expect("a pool from a valid URL")
}

/// Counts the queries a wrapped check sends to its dependency.
struct Counted<C> {
    inner: C,
    queries: Arc<AtomicU64>,
}

impl<C: HealthCheck> HealthCheck for Counted<C> {
    fn run(&self) -> CheckFuture<'_> {
        self.queries.fetch_add(1, Ordering::SeqCst);
        self.inner.run()
    }
    fn component_type(&self) -> &'static str {
        self.inner.component_type()
    }
}

/// Polls readiness until it answers `want`, for at most `within`.
async fn ready_becomes(app: &Router, want: u16, within: Duration) -> crate::Answer {
    let deadline = Instant::now() + within;
    loop {
        let a = get(app, "/health/ready?verbose", Some(root())).await;
        if a.status == want || Instant::now() > deadline {
            return a;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn timed_probe(app: &Router) -> (crate::Answer, Duration) {
    let t = Instant::now();
    let a = get(app, "/health/ready?verbose", Some(root())).await;
    (a, t.elapsed())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_pass_stall_cut_restore() {
    let db = TestDatabase::create().await;
    let proxy = FaultProxy::start(db.socket_addr()).await;
    let r = HealthRegistry::new(HealthConfig::default());
    r.register(
        Check::new(
            "postgres",
            PostgresCheck::new(pool(&db.url_via(proxy.addr()))),
        )
        .timeout(TIMEOUT)
        .cache_for(Duration::ZERO),
    )
    .unwrap();
    r.register(Check::new(
        "other",
        check_fn(|| async { CheckOutcome::pass() }),
    ))
    .unwrap();
    r.mark_started();
    let app = router(r.clone());

    // Pass, with pool figures.
    let a = get(&app, "/health/ready?verbose", Some(root())).await;
    assert_eq!(a.status, 200, "{}", a.text());
    assert!(a.text().contains("[+]postgres ok"));
    let v = get(&app, "/health/detailed", Some(root())).await.json();
    let out = v["checks"]["postgres:responseTime"][0]["output"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(out.starts_with("Pool: 1 total, 1 idle, 0 waiting"), "{out}");
    assert_eq!(v["checks"]["postgres:connections"][0]["observedValue"], 1);
    assert_eq!(
        v["checks"]["postgres:responseTime"][0]["componentType"],
        "datastore"
    );

    // Stall: fails within the timeout; other checks unaffected; liveness stays.
    proxy.stall();
    let (a, took) = timed_probe(&app).await;
    assert_eq!(a.status, 503, "{}", a.text());
    assert!(took < TIMEOUT + MARGIN, "probe took {took:?}");
    assert!(
        a.text()
            .contains("[-]postgres failed: timed out after 400 ms"),
        "{}",
        a.text()
    );
    assert!(a.text().contains("[+]other ok"));
    assert!(a.text().ends_with("readyz check failed\n"));
    assert_eq!(get(&app, "/health/live", None).await.status, 200);

    // Restore: ready again without a restart.
    proxy.pass();
    let a = ready_becomes(&app, 200, Duration::from_secs(5)).await;
    assert_eq!(a.status, 200, "after the stall: {}", a.text());

    // Cut: fails (fast, or by the timeout); liveness stays.
    proxy.cut();
    let (a, took) = timed_probe(&app).await;
    assert_eq!(a.status, 503, "{}", a.text());
    assert!(took < TIMEOUT + MARGIN, "probe took {took:?}");
    assert!(a.text().contains("[-]postgres failed: "), "{}", a.text());
    assert_eq!(get(&app, "/health/live", None).await.status, 200);

    proxy.pass();
    let a = ready_becomes(&app, 200, Duration::from_secs(5)).await;
    assert_eq!(a.status, 200, "after the cut: {}", a.text());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_single_flight_under_a_thousand_probes() {
    let db = TestDatabase::create().await;
    let proxy = FaultProxy::start(db.socket_addr()).await;
    let queries = Arc::new(AtomicU64::new(0));
    let r = HealthRegistry::new(HealthConfig::default());
    r.register(
        Check::new(
            "postgres",
            Counted {
                inner: PostgresCheck::new(pool(&db.url_via(proxy.addr()))),
                queries: queries.clone(),
            },
        )
        .cache_for(Duration::from_secs(30)),
    )
    .unwrap();
    r.mark_started();
    let app = router(r);
    let tasks: Vec<_> = (0..1000)
        .map(|_| {
            let app = app.clone();
            tokio::spawn(async move { get(&app, "/health/ready", None).await.status })
        })
        .collect();
    for t in tasks {
        assert_eq!(t.await.unwrap(), 200);
    }
    assert_eq!(
        queries.load(Ordering::SeqCst),
        1,
        "PostgreSQL saw one SELECT 1 for 1,000 probes"
    );
    assert_eq!(proxy.connections_accepted(), 1, "and one connection");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_pass_stall_cut_restore_and_non_critical() {
    let redis_server = TestRedis::new().await;
    let proxy = FaultProxy::start(redis_server.socket_addr()).await;
    let client = redis::Client::open(redis_server.url_via(proxy.addr())).unwrap();
    let manager = tokio::time::timeout(
        Duration::from_secs(5),
        redis::aio::ConnectionManager::new(client.clone()),
    )
    .await
    .expect("connect in time")
    .expect("connect through the proxy");

    let r = HealthRegistry::new(HealthConfig::default());
    r.register(
        Check::new("redis", RedisCheck::new(manager))
            .timeout(TIMEOUT)
            .cache_for(Duration::ZERO),
    )
    .unwrap();
    // The same server through a per-run client, non-critical.
    r.register(
        Check::new("redis-client", RedisCheck::from_client(client))
            .timeout(TIMEOUT)
            .cache_for(Duration::ZERO)
            .non_critical(),
    )
    .unwrap();
    r.mark_started();
    let app = router(r.clone());

    let a = get(&app, "/health/ready?verbose", Some(root())).await;
    assert_eq!(a.status, 200, "{}", a.text());
    assert!(
        a.text().contains("[+]redis ok\n[+]redis-client ok\n"),
        "{}",
        a.text()
    );

    proxy.stall();
    let (a, took) = timed_probe(&app).await;
    assert_eq!(a.status, 503, "{}", a.text());
    assert!(took < TIMEOUT + MARGIN, "probe took {took:?}");
    assert!(
        a.text().contains("[-]redis failed: timed out after 400 ms"),
        "{}",
        a.text()
    );
    assert!(
        a.text().contains("[-]redis-client failed (non-critical): "),
        "{}",
        a.text()
    );

    // With only the non-critical check counted, a Redis outage is warn and 200.
    let a = get(&app, "/health/ready?exclude=redis", None).await;
    assert_eq!(a.status, 200);
    assert_eq!(a.json()["status"], "warn");

    proxy.pass();
    let a = ready_becomes(&app, 200, Duration::from_secs(8)).await;
    assert_eq!(a.status, 200, "after the stall: {}", a.text());

    proxy.cut();
    let (a, took) = timed_probe(&app).await;
    assert_eq!(a.status, 503, "{}", a.text());
    assert!(took < TIMEOUT + MARGIN, "probe took {took:?}");
    assert_eq!(get(&app, "/health/live", None).await.status, 200);
    let report = r.probe(Probe::Readiness, &["redis".to_owned()]).await;
    assert_eq!(report.status.as_str(), "warn", "{report:?}");

    proxy.pass();
    let a = ready_becomes(&app, 200, Duration::from_secs(8)).await;
    assert_eq!(a.status, 200, "after the cut: {}", a.text());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_cut_fails_readiness_within_one_cache_lifetime() {
    const LIFETIME: Duration = Duration::from_secs(1);
    let db = TestDatabase::create().await;
    let proxy = FaultProxy::start(db.socket_addr()).await;
    let r = HealthRegistry::new(
        HealthConfig::default()
            .store_backend("postgres")
            .db_check("postgres"),
    );
    r.register(
        Check::new(
            "postgres",
            PostgresCheck::new(pool(&db.url_via(proxy.addr()))),
        )
        .timeout(TIMEOUT)
        .cache_for(LIFETIME),
    )
    .unwrap();
    r.mark_started();
    let app = router(r);
    assert_eq!(get(&app, "/ready", None).await.status, 200);

    proxy.cut();
    let cut_at = Instant::now();
    let a = ready_becomes(&app, 503, LIFETIME + TIMEOUT + MARGIN).await;
    assert_eq!(a.status, 503, "{}", a.text());
    assert!(
        cut_at.elapsed() <= LIFETIME + TIMEOUT + MARGIN,
        "took {:?}",
        cut_at.elapsed()
    );
    assert_eq!(get(&app, "/health/live", None).await.status, 200);
    let seed = get(&app, "/ready", None).await;
    assert_eq!(seed.status, 503);
    assert_eq!(seed.json()["db"]["ok"], false);

    proxy.pass();
    let a = ready_becomes(&app, 200, LIFETIME + Duration::from_secs(3)).await;
    assert_eq!(a.status, 200, "{}", a.text());
    assert_eq!(get(&app, "/ready", None).await.json()["db"]["ok"], true);
}
