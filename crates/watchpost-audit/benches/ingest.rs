//! Audit benchmarks in one run against the audit table in PostgreSQL: the writer's group-commit binary COPY
//! with durable commits, one INSERT per event in its own transaction, raw COPY of the same rows,
//! async enqueue and blocking-mode latency percentiles, and the verification rate over a trail of
//! 100,000 events.
//!
//! Run: `cargo bench -p watchpost-audit --bench ingest` (add `-- --quick` for a smoke run).
//! Needs the test PostgreSQL (`WATCHPOST_TEST_DATABASE_URL`, default 127.0.0.1:5432).
#![allow(clippy::print_stdout)] // the latency percentiles are printed next to criterion's report

use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput};
use watchpost_audit::store::postgres::{PostgresStore, copy_events, migrate};
use watchpost_audit::{
    Action, AuditConfig, AuditEvent, Auditor, ChainHead, NewEvent, VerifyOptions, verify,
};
use watchpost_test_support::TestDatabase;

const BATCH: usize = 2000;

/// Alternating writer / raw COPY rounds (`WATCHPOST_BENCH_ROUNDS`, default 9).
static ROUNDS: std::sync::LazyLock<usize> = std::sync::LazyLock::new(|| {
    std::env::var("WATCHPOST_BENCH_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(9)
});

fn pool(url: &str) -> deadpool_postgres::Pool {
    let mut cfg = deadpool_postgres::Config::new();
    cfg.url = Some(url.to_owned());
    cfg.pool = Some(deadpool_postgres::PoolConfig::new(4));
    cfg.create_pool(
        Some(deadpool_postgres::Runtime::Tokio1),
        tokio_postgres::NoTls,
    )
    .expect("pool")
}

fn event(i: usize) -> NewEvent {
    let mut e = NewEvent::new(Action::Update)
        .resource("incident", format!("inc-{i}"))
        .payload(
            serde_json::json!({"field": "status", "from": "open", "to": "acknowledged", "i": i}),
        );
    e.actor.api_key_id = Some(format!("key-{}", i % 50));
    e.actor.tenant_id = Some(format!("tenant-{}", i % 10));
    e.method = Some("PATCH".into());
    e.route = Some("/incidents/{id}".into());
    e.path = Some(format!("/incidents/inc-{i}"));
    e.request_id = Some(uuid::Uuid::now_v7().to_string());
    e
}

fn sealed(n: usize, stream: &str) -> Vec<AuditEvent> {
    let mut head = ChainHead::genesis(stream);
    (0..n)
        .map(|i| {
            let mut e = event(i).into_event(chrono::Utc::now());
            head.seal(&mut e);
            e
        })
        .collect()
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

fn report(name: &str, mut samples: Vec<Duration>) {
    samples.sort();
    println!(
        "{name}: n={} p50={:?} p99={:?} max={:?}",
        samples.len(),
        percentile(&samples, 0.5),
        percentile(&samples, 0.99),
        samples[samples.len() - 1]
    );
}

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let db = rt.block_on(TestDatabase::create());
    let pool = pool(&db.url());
    rt.block_on(migrate(&pool)).expect("migrate");
    let store = Arc::new(PostgresStore::new(pool.clone()));
    let auditor = rt.block_on(async {
        Auditor::builder(store.clone())
            .config(AuditConfig {
                queue_capacity: 20_000,
                checkpoint_every: 100_000,
                ..AuditConfig::default()
            })
            .start()
            .unwrap()
    });

    let mut c = Criterion::default()
        .sample_size(10)
        .measurement_time(Duration::from_secs(5))
        .configure_from_args();
    let mut g = c.benchmark_group("audit_ingest_postgres");
    g.throughput(Throughput::Elements(BATCH as u64));
    g.bench_function("writer_group_commit_copy_durable", |b| {
        b.to_async(&rt).iter_custom(|iters| {
            let auditor = auditor.clone();
            async move {
                // Sustained: one stream of events, durable at the end (the queue bounds what waits).
                let start = Instant::now();
                for _ in 0..iters {
                    for i in 0..BATCH {
                        auditor.record_async(event(i)).await.unwrap();
                    }
                }
                auditor.flush().await.unwrap();
                start.elapsed()
            }
        })
    });
    g.bench_function("raw_copy_same_rows", |b| {
        b.to_async(&rt).iter_custom(|iters| {
            let pool = pool.clone();
            async move {
                let mut total = Duration::ZERO;
                for it in 0..iters {
                    let rows = sealed(BATCH, &format!("raw-{it}-{}", uuid::Uuid::now_v7()));
                    let start = Instant::now();
                    let mut c = pool.get().await.unwrap();
                    let tx = c.transaction().await.unwrap();
                    tx.batch_execute("SET LOCAL synchronous_commit TO on")
                        .await
                        .unwrap();
                    copy_events(&tx, &rows).await.unwrap();
                    tx.commit().await.unwrap();
                    total += start.elapsed();
                }
                total
            }
        })
    });
    // One INSERT per event, each in its own durable transaction: a smaller batch, it is slow.
    const SLOW: usize = 200;
    g.throughput(Throughput::Elements(SLOW as u64));
    g.bench_function("one_insert_per_event_per_transaction", |b| {
        b.to_async(&rt).iter_custom(|iters| {
            let pool = pool.clone();
            async move {
                let mut total = Duration::ZERO;
                for it in 0..iters {
                    let rows = sealed(SLOW, &format!("ins-{it}-{}", uuid::Uuid::now_v7()));
                    let c = pool.get().await.unwrap();
                    let st = c
                        .prepare(
                            "INSERT INTO audit_events (id, stream, seq, prev_hash, hash, occurred_at, recorded_at, \
                             actor_api_key_id, tenant_id, method, route, path, action, resource_type, resource_id, \
                             outcome, request_id, payload) VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11,$12,$13,$14,$15,$16,$17,$18)",
                        )
                        .await
                        .unwrap();
                    let start = Instant::now();
                    for e in &rows {
                        let payload = e.payload.as_ref().map(tokio_postgres::types::Json);
                        c.execute(
                            &st,
                            &[
                                &e.id,
                                &e.stream,
                                &e.seq,
                                &e.prev_hash,
                                &e.hash,
                                &e.occurred_at,
                                &e.recorded_at,
                                &e.actor.api_key_id,
                                &e.actor.tenant_id,
                                &e.method,
                                &e.route,
                                &e.path,
                                &e.action.as_str(),
                                &e.resource_type,
                                &e.resource_id,
                                &e.outcome.result.as_str(),
                                &e.request_id,
                                &payload,
                            ],
                        )
                        .await
                        .unwrap();
                    }
                    total += start.elapsed();
                }
                total
            }
        })
    });
    g.finish();

    // Verification over a trail of its own with a fixed number of events, written by the writer
    // (chain and checkpoints as in production): the ingest runs above leave behind as many events
    // as criterion chose to write, and verifying all of those took most of a minute per iteration.
    const VERIFY_EVENTS: usize = 100_000;
    let verify_db = rt.block_on(TestDatabase::create());
    let verify_pool = crate::pool(&verify_db.url());
    rt.block_on(migrate(&verify_pool)).expect("migrate");
    let verify_store = Arc::new(PostgresStore::new(verify_pool));
    let events = rt.block_on(async {
        let writer = Auditor::builder(verify_store.clone())
            .config(AuditConfig {
                queue_capacity: 20_000,
                checkpoint_every: 10_000,
                ..AuditConfig::default()
            })
            .start()
            .unwrap();
        for i in 0..VERIFY_EVENTS {
            writer.record_async(event(i)).await.unwrap();
        }
        writer.flush().await.unwrap();
        writer.shutdown().await;
        let report = verify(verify_store.as_ref(), &VerifyOptions::default())
            .await
            .unwrap();
        assert_eq!(
            report.events_checked, VERIFY_EVENTS as u64,
            "every event verified"
        );
        report.events_checked
    });
    let mut g = c.benchmark_group("audit_verify");
    g.throughput(Throughput::Elements(events));
    g.bench_function("verify_100k_events", |b| {
        b.to_async(&rt).iter(|| async {
            verify(verify_store.as_ref(), &VerifyOptions::default())
                .await
                .unwrap()
        })
    });
    g.finish();

    // The same comparison in alternating rounds, so that load from elsewhere on the machine
    // hits both sides alike: the writer's rate over raw COPY's, round by round.
    rt.block_on(async {
        const ROUND: usize = 5 * BATCH;
        let mut ratios = Vec::new();
        let (mut writer_rates, mut copy_rates) = (Vec::new(), Vec::new());
        for r in 0..*ROUNDS {
            let start = Instant::now();
            for i in 0..ROUND {
                auditor.record_async(event(i)).await.unwrap();
            }
            auditor.flush().await.unwrap();
            let writer = ROUND as f64 / start.elapsed().as_secs_f64();
            let chunks: Vec<Vec<AuditEvent>> = (0..ROUND / BATCH)
                .map(|k| sealed(BATCH, &format!("round-{r}-{k}-{}", uuid::Uuid::now_v7())))
                .collect();
            let start = Instant::now();
            for rows in &chunks {
                let mut c = pool.get().await.unwrap();
                let tx = c.transaction().await.unwrap();
                tx.batch_execute("SET LOCAL synchronous_commit TO on")
                    .await
                    .unwrap();
                copy_events(&tx, rows).await.unwrap();
                tx.commit().await.unwrap();
            }
            let copy = ROUND as f64 / start.elapsed().as_secs_f64();
            writer_rates.push(writer);
            copy_rates.push(copy);
            ratios.push(writer / copy);
        }
        let median = |v: &mut Vec<f64>| {
            v.sort_by(f64::total_cmp);
            v[v.len() / 2]
        };
        println!(
            "alternating rounds of {ROUND} events: writer/COPY median {:.2}x (min {:.2}x, max {:.2}x); \
             writer median {:.0} events/s, raw COPY median {:.0} rows/s",
            median(&mut ratios.clone()),
            ratios.iter().copied().fold(f64::INFINITY, f64::min),
            ratios.iter().copied().fold(0.0, f64::max),
            median(&mut writer_rates),
            median(&mut copy_rates),
        );
    });

    // The floor under blocking mode: one durable commit (a one-row INSERT in its own transaction).
    rt.block_on(async {
        let rows = sealed(300, &format!("floor-{}", uuid::Uuid::now_v7()));
        let c = pool.get().await.unwrap();
        let st = c
            .prepare("INSERT INTO audit_events (id, stream, seq, prev_hash, hash, occurred_at, recorded_at, action, outcome) \
                      VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9)")
            .await
            .unwrap();
        let mut commits = Vec::with_capacity(rows.len());
        for e in &rows {
            let start = Instant::now();
            c.execute(
                &st,
                &[&e.id, &e.stream, &e.seq, &e.prev_hash, &e.hash, &e.occurred_at, &e.recorded_at, &e.action.as_str(), &e.outcome.result.as_str()],
            )
            .await
            .unwrap();
            commits.push(start.elapsed());
        }
        report("one durable commit (the floor under blocking mode)", commits);
    });

    // Latency percentiles: async enqueue, and what blocking mode adds to a request (record until durable).
    rt.block_on(async {
        let mut enqueue = Vec::with_capacity(10_000);
        for i in 0..10_000 {
            let start = Instant::now();
            auditor.record_async(event(i)).await.unwrap();
            enqueue.push(start.elapsed());
            if i % 1000 == 999 {
                auditor.flush().await.unwrap();
            }
        }
        report("async enqueue latency", enqueue);
        let mut blocking = Vec::with_capacity(500);
        for i in 0..500 {
            let start = Instant::now();
            auditor.record(event(i)).await.unwrap();
            blocking.push(start.elapsed());
        }
        report("blocking-mode added latency (sequential)", blocking);
        let concurrent: Vec<Duration> = {
            let mut tasks = Vec::new();
            for t in 0..16 {
                let a = auditor.clone();
                tasks.push(tokio::spawn(async move {
                    let mut v = Vec::with_capacity(100);
                    for i in 0..100 {
                        let start = Instant::now();
                        a.record(event(t * 100 + i)).await.unwrap();
                        v.push(start.elapsed());
                    }
                    v
                }));
            }
            let mut all = Vec::new();
            for t in tasks {
                all.extend(t.await.unwrap());
            }
            all
        };
        report(
            "blocking-mode added latency (16 concurrent requests)",
            concurrent,
        );
        auditor.shutdown().await;
    });
    c.final_summary();
    drop(store);
    drop(pool);
    rt.block_on(db.drop_now());
}
