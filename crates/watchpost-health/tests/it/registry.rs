//! The registry: timeouts, panics, criticality, single flight, caching, lifecycle, background
//! mode and staleness (paused time), metrics.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use prometheus_client::registry::Registry;
use watchpost_health::{
    Check, CheckOutcome, HealthConfig, HealthError, HealthRegistry, HealthStatus, LifecyclePhase,
    Probe, check_fn,
};

use crate::counting;

fn started() -> HealthRegistry {
    let r = HealthRegistry::new(HealthConfig::default());
    r.mark_started();
    r
}

#[tokio::test]
async fn a_slow_check_times_out_and_the_probe_answers_in_time() {
    let r = started();
    let hits = Arc::new(AtomicU64::new(0));
    r.register(
        Check::new(
            "slow",
            counting(hits.clone(), Duration::from_secs(30), CheckOutcome::pass()),
        )
        .timeout(Duration::from_millis(100)),
    )
    .unwrap();
    r.register(Check::new(
        "fast",
        check_fn(|| async { CheckOutcome::pass() }),
    ))
    .unwrap();
    let t = std::time::Instant::now();
    let report = r.probe(Probe::Readiness, &[]).await;
    assert!(
        t.elapsed() < Duration::from_millis(600),
        "took {:?}",
        t.elapsed()
    );
    assert_eq!(report.status, HealthStatus::Fail);
    let slow = report.checks.iter().find(|c| c.name == "slow").unwrap();
    assert_eq!(slow.status, HealthStatus::Fail);
    assert_eq!(slow.output.as_deref(), Some("timed out after 100 ms"));
    let fast = report.checks.iter().find(|c| c.name == "fast").unwrap();
    assert_eq!(
        fast.status,
        HealthStatus::Pass,
        "other checks are unaffected"
    );
}

#[tokio::test]
async fn a_panicking_check_fails_and_keeps_its_criticality() {
    let r = started();
    r.register(Check::new("boom", check_fn(|| async { panic!("kaboom") })))
        .unwrap();
    r.register(Check::new("soft-boom", check_fn(|| async { panic!("soft") })).non_critical())
        .unwrap();
    let boom = r.check("boom").await.unwrap();
    assert_eq!(boom.status, HealthStatus::Fail);
    assert_eq!(boom.output.as_deref(), Some("check panicked: kaboom"));
    let soft = r.check("soft-boom").await.unwrap();
    assert_eq!(soft.raw_status, HealthStatus::Fail);
    assert_eq!(soft.status, HealthStatus::Warn);
    assert!(!soft.critical);
    // The registry survives: the next run panics again, caught again.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert_eq!(r.check("boom").await.unwrap().status, HealthStatus::Fail);
}

#[tokio::test]
async fn a_non_critical_failure_degrades_to_warn() {
    let r = started();
    r.register(Check::new(
        "db",
        check_fn(|| async { CheckOutcome::pass() }),
    ))
    .unwrap();
    r.register(
        Check::new(
            "cache",
            check_fn(|| async { CheckOutcome::fail("refused") }),
        )
        .non_critical(),
    )
    .unwrap();
    let report = r.probe(Probe::Readiness, &[]).await;
    assert_eq!(report.status, HealthStatus::Warn);
    assert_eq!(report.status.http_status(), 200);
    let report = r
        .probe(Probe::Readiness, &["cache".to_owned(), "nope".to_owned()])
        .await;
    assert_eq!(report.status, HealthStatus::Pass);
    assert_eq!(report.checks.len(), 1);
    assert_eq!(report.unknown_excludes, ["nope"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_concurrent_probes_share_one_run() {
    let r = started();
    let hits = Arc::new(AtomicU64::new(0));
    r.register(
        Check::new(
            "dep",
            counting(
                hits.clone(),
                Duration::from_millis(200),
                CheckOutcome::pass(),
            ),
        )
        .cache_for(Duration::from_secs(30)),
    )
    .unwrap();
    let tasks: Vec<_> = (0..1000)
        .map(|_| {
            let r = r.clone();
            tokio::spawn(async move { r.probe(Probe::Readiness, &[]).await.status })
        })
        .collect();
    for t in tasks {
        assert_eq!(t.await.unwrap(), HealthStatus::Pass);
    }
    assert_eq!(
        hits.load(Ordering::SeqCst),
        1,
        "one dependency query for 1,000 probes"
    );
    assert_eq!(r.run_count("dep"), Some(1));
    // Cached: more probes within the lifetime cost nothing.
    r.probe(Probe::Readiness, &[]).await;
    assert_eq!(hits.load(Ordering::SeqCst), 1);
}

#[tokio::test(start_paused = true)]
async fn results_are_cached_for_their_lifetime() {
    let r = started();
    let hits = Arc::new(AtomicU64::new(0));
    r.register(
        Check::new(
            "dep",
            counting(hits.clone(), Duration::ZERO, CheckOutcome::pass()),
        )
        .cache_for(Duration::from_secs(5)),
    )
    .unwrap();
    r.probe(Probe::Readiness, &[]).await;
    tokio::time::advance(Duration::from_secs(4)).await;
    r.probe(Probe::Readiness, &[]).await;
    assert_eq!(hits.load(Ordering::SeqCst), 1);
    tokio::time::advance(Duration::from_secs(2)).await;
    r.probe(Probe::Readiness, &[]).await;
    assert_eq!(hits.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn lifecycle_gates_readiness_but_not_liveness() {
    let r = HealthRegistry::new(HealthConfig::default());
    let hits = Arc::new(AtomicU64::new(0));
    r.register(Check::new(
        "db",
        counting(hits.clone(), Duration::ZERO, CheckOutcome::pass()),
    ))
    .unwrap();
    let report = r.probe(Probe::Readiness, &[]).await;
    assert_eq!(report.status, HealthStatus::Fail);
    assert_eq!(report.phase, LifecyclePhase::Starting);
    assert_eq!(report.lifecycle_failure, Some("start-up is not complete"));
    assert_eq!(
        hits.load(Ordering::SeqCst),
        0,
        "no dependency is touched before start-up completes"
    );
    assert_eq!(
        r.probe(Probe::Liveness, &[]).await.status,
        HealthStatus::Pass
    );

    r.lifecycle().clone().mark_started();
    assert_eq!(
        r.probe(Probe::Readiness, &[]).await.status,
        HealthStatus::Pass
    );

    r.mark_shutting_down();
    let t = std::time::Instant::now();
    let report = r.probe(Probe::Readiness, &[]).await;
    assert!(t.elapsed() < Duration::from_millis(50));
    assert_eq!(report.status, HealthStatus::Fail);
    assert_eq!(
        report.lifecycle_failure,
        Some("the server is shutting down")
    );
    assert_eq!(
        r.probe(Probe::Liveness, &[]).await.status,
        HealthStatus::Pass
    );
    r.mark_started();
    assert_eq!(
        r.lifecycle().phase(),
        LifecyclePhase::ShuttingDown,
        "shutdown is final"
    );
}

#[tokio::test]
async fn liveness_runs_only_liveness_checks() {
    let r = started();
    r.register(Check::new(
        "db",
        check_fn(|| async { CheckOutcome::fail("down") }),
    ))
    .unwrap();
    r.register(
        Check::new("event-loop", check_fn(|| async { CheckOutcome::pass() }))
            .liveness(true)
            .readiness(false),
    )
    .unwrap();
    r.register(Check::new("audit", check_fn(|| async { CheckOutcome::pass() })).detailed_only())
        .unwrap();
    let live = r.probe(Probe::Liveness, &[]).await;
    assert_eq!(live.status, HealthStatus::Pass);
    assert_eq!(
        live.checks
            .iter()
            .map(|c| c.name.as_str())
            .collect::<Vec<_>>(),
        ["event-loop"]
    );
    let ready = r.probe(Probe::Readiness, &[]).await;
    assert_eq!(
        ready
            .checks
            .iter()
            .map(|c| c.name.as_str())
            .collect::<Vec<_>>(),
        ["db"]
    );
    assert_eq!(r.probe(Probe::Detailed, &[]).await.checks.len(), 3);
}

#[test]
fn names_are_validated_and_unique() {
    let r = HealthRegistry::new(HealthConfig::default());
    let ok = || check_fn(|| async { CheckOutcome::pass() });
    r.register(Check::new("db", ok())).unwrap();
    assert!(matches!(
        r.register(Check::new("db", ok())),
        Err(HealthError::DuplicateCheck(_))
    ));
    for bad in ["", "a:b", "a/b", "white space", &"x".repeat(65)] {
        let err = r.register(Check::new(bad, ok())).unwrap_err();
        assert!(matches!(err, HealthError::InvalidName(_)), "{bad:?}");
        assert!(err.to_string().contains("invalid"));
    }
}

#[tokio::test(start_paused = true)]
async fn background_mode_answers_from_last_results_and_turns_stale() {
    let r = started();
    let hits = Arc::new(AtomicU64::new(0));
    let hang = Arc::new(AtomicBool::new(false));
    let check = {
        let hits = hits.clone();
        let hang = hang.clone();
        check_fn(move || {
            let hits = hits.clone();
            let hang = hang.clone();
            async move {
                hits.fetch_add(1, Ordering::SeqCst);
                if hang.load(Ordering::SeqCst) {
                    tokio::time::sleep(Duration::from_secs(3600)).await;
                }
                CheckOutcome::pass()
            }
        })
    };
    r.register(Check::new("dep", check).timeout(Duration::from_secs(60)))
        .unwrap();
    r.register(Check::new(
        "other",
        check_fn(|| async { CheckOutcome::pass() }),
    ))
    .unwrap();
    assert!(matches!(
        r.start_background(Duration::ZERO),
        Err(HealthError::ZeroInterval)
    ));
    r.start_background(Duration::from_secs(10)).unwrap();
    assert!(matches!(
        r.start_background(Duration::from_secs(10)),
        Err(HealthError::BackgroundRunning)
    ));

    // Ticks at 0, 10 and 20 s.
    tokio::time::sleep(Duration::from_secs(25)).await;
    assert_eq!(hits.load(Ordering::SeqCst), 3);
    for _ in 0..50 {
        assert_eq!(
            r.probe(Probe::Readiness, &[]).await.status,
            HealthStatus::Pass
        );
    }
    assert_eq!(
        hits.load(Ordering::SeqCst),
        3,
        "probes answer from the background results"
    );

    // From the tick at 30 s the dependency hangs; the last result (20 s) ages.
    hang.store(true, Ordering::SeqCst);
    tokio::time::sleep(Duration::from_secs(20)).await; // now 45 s: age 25 s < 30 s
    assert_eq!(
        r.probe(Probe::Readiness, &[]).await.status,
        HealthStatus::Pass
    );
    tokio::time::sleep(Duration::from_secs(10)).await; // now 55 s: age 35 s > 30 s
    let before = tokio::time::Instant::now();
    let report = r.probe(Probe::Readiness, &[]).await;
    assert_eq!(
        before.elapsed(),
        Duration::ZERO,
        "a stale answer does not wait for the hung run"
    );
    assert_eq!(report.status, HealthStatus::Fail);
    let dep = report.checks.iter().find(|c| c.name == "dep").unwrap();
    assert!(
        dep.output.as_deref().unwrap().starts_with("stale:"),
        "{dep:?}"
    );
    let other = report.checks.iter().find(|c| c.name == "other").unwrap();
    assert_eq!(
        other.status,
        HealthStatus::Pass,
        "a hung check does not hold up the others"
    );

    // After shutdown no more runs happen; results already collected go stale.
    r.shutdown().await;
    let other_runs = r.run_count("other").unwrap();
    tokio::time::sleep(Duration::from_secs(40)).await;
    assert_eq!(r.run_count("other"), Some(other_runs));
    let report = r.probe(Probe::Readiness, &["dep".to_owned()]).await;
    assert_eq!(report.status, HealthStatus::Fail, "{report:?}");
}

#[tokio::test]
async fn metrics_record_the_last_run() {
    let r = started();
    r.register(Check::new(
        "db",
        check_fn(|| async { CheckOutcome::pass() }),
    ))
    .unwrap();
    r.register(Check::new("cache", check_fn(|| async { CheckOutcome::fail("x") })).non_critical())
        .unwrap();
    r.register(Check::new(
        "queue",
        check_fn(|| async { CheckOutcome::fail("x") }),
    ))
    .unwrap();
    let mut registry = Registry::default();
    r.register_metrics(&mut registry);
    r.probe(Probe::Readiness, &[]).await;
    let mut text = String::new();
    prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
    assert!(
        text.contains("# TYPE watchpost_health_check_status gauge"),
        "{text}"
    );
    assert!(
        text.contains("watchpost_health_check_status{check=\"db\"} 1.0"),
        "{text}"
    );
    assert!(
        text.contains("watchpost_health_check_status{check=\"cache\"} 0.5"),
        "{text}"
    );
    assert!(
        text.contains("watchpost_health_check_status{check=\"queue\"} 0.0"),
        "{text}"
    );
    assert!(
        text.contains("watchpost_health_check_duration_seconds{check=\"db\"}"),
        "{text}"
    );
}

#[tokio::test]
async fn observer_sees_every_run_and_logs_record_transitions_only() {
    let logs = watchpost_test_support::LogCapture::new();
    let _guard = logs.set_default();
    let r = started();
    let failing = Arc::new(AtomicBool::new(true));
    let check = {
        let failing = failing.clone();
        check_fn(move || {
            let failing = failing.load(Ordering::SeqCst);
            async move {
                if failing {
                    CheckOutcome::fail("refused")
                } else {
                    CheckOutcome::pass()
                }
            }
        })
    };
    r.register(Check::new("db", check).cache_for(Duration::ZERO))
        .unwrap();
    let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
    let sink = seen.clone();
    r.set_run_observer(Arc::new(move |name, status, _| {
        sink.lock().unwrap().push((name.to_owned(), status));
    }));
    for _ in 0..3 {
        r.check("db").await.unwrap();
    }
    failing.store(false, Ordering::SeqCst);
    for _ in 0..2 {
        r.check("db").await.unwrap();
    }
    let seen = seen.lock().unwrap().clone();
    assert_eq!(seen.len(), 5);
    assert_eq!(seen[0], ("db".to_owned(), HealthStatus::Fail));
    assert_eq!(seen[4], ("db".to_owned(), HealthStatus::Pass));

    let lines = logs.json_lines();
    let messages: Vec<&str> = lines
        .iter()
        .filter_map(|l| l["fields"]["message"].as_str())
        .collect();
    assert_eq!(
        messages,
        ["health check is not passing", "health check passes again"],
        "{lines:?}"
    );
    assert_eq!(lines[0]["fields"]["check"], "db");
    assert_eq!(lines[0]["fields"]["output"], "refused");
    assert_eq!(lines[0]["level"], "WARN");
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(64))]

    /// The probe's status is the worst status after criticality, and maps to 200 or 503.
    #[test]
    fn the_worst_status_wins(checks in proptest::collection::vec((0u8..3, proptest::bool::ANY), 0..8)) {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let r = started();
        let mut expected = HealthStatus::Pass;
        for (i, (code, critical)) in checks.iter().enumerate() {
            let status = [HealthStatus::Pass, HealthStatus::Warn, HealthStatus::Fail][*code as usize];
            let effective = if !critical && status == HealthStatus::Fail { HealthStatus::Warn } else { status };
            expected = expected.max(effective);
            r.register(
                Check::new(format!("c{i}"), check_fn(move || async move { CheckOutcome::with_status(status) }))
                    .critical(*critical),
            )
            .unwrap();
        }
        let report = rt.block_on(r.probe(Probe::Readiness, &[]));
        proptest::prop_assert_eq!(report.status, expected);
        let code = if expected == HealthStatus::Fail { 503 } else { 200 };
        proptest::prop_assert_eq!(report.status.http_status().as_u16(), code);
    }
}
