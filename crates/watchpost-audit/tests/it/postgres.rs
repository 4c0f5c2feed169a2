//! PostgreSQL faults and tampering: an outage under load, rows altered by a superuser, and the
//! application role's refused UPDATE, DELETE and TRUNCATE.

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use tokio_postgres::NoTls;
use watchpost_audit::store::postgres::{PostgresStore, grant_append_only, migrate};
use watchpost_audit::{AuditConfig, AuditStore, Auditor, verify};
use watchpost_test_support::{FaultProxy, TestDatabase};

use crate::support::{new_event, pg_pool, pg_store, trust};

async fn superuser(db: &TestDatabase) -> tokio_postgres::Client {
    let (c, conn) = tokio_postgres::connect(&db.url(), NoTls)
        .await
        .expect("connect as superuser");
    tokio::spawn(conn);
    c
}

fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn database_cut_for_20s_under_load_loses_nothing() {
    let db = TestDatabase::create().await;
    migrate(&pg_pool(&db.url())).await.unwrap();
    let proxy = FaultProxy::start(db.socket_addr()).await;
    let store = Arc::new(PostgresStore::new(pg_pool(&db.url_via(proxy.addr()))));
    let data = tempfile::tempdir().unwrap();
    let auditor = Auditor::builder(store.clone())
        .config(AuditConfig {
            data_dir: Some(data.path().to_owned()),
            queue_capacity: 256,
            write_timeout: Duration::from_millis(800),
            retry_interval: Duration::from_millis(250),
            checkpoint_every: 500,
            checkpoint_interval: Duration::from_secs(2),
            ..AuditConfig::default()
        })
        .start()
        .unwrap();

    let stop = Arc::new(AtomicBool::new(false));
    let mut producers = Vec::new();
    for p in 0..4 {
        let (a, stop) = (auditor.clone(), stop.clone());
        producers.push(tokio::spawn(async move {
            let mut acked = Vec::new();
            let mut i = 0;
            while !stop.load(Ordering::Relaxed) {
                let e = new_event(p * 1_000_000 + i, if p % 2 == 0 { "a" } else { "b" });
                // Half blocking, half async: both must arrive.
                let id = if p < 2 {
                    a.record(e).await
                } else {
                    a.record_async(e).await
                };
                acked.push(id.expect("the spool takes what the database cannot"));
                i += 1;
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
            acked
        }));
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    let rss_before = rss_kib();
    proxy.cut();
    let cut_at = Instant::now();
    tokio::time::sleep(Duration::from_secs(20)).await;
    assert!(
        auditor.metrics().spooled.get() > 0,
        "events were spooled during the outage"
    );
    let rss_during = rss_kib();
    proxy.pass();
    tokio::time::sleep(Duration::from_secs(1)).await;
    stop.store(true, Ordering::Relaxed);
    let mut acked = Vec::new();
    for p in producers {
        acked.extend(p.await.unwrap());
    }
    auditor.flush().await.unwrap();
    tokio::time::timeout(Duration::from_secs(20), async {
        while !auditor.replay_spool().await.unwrap() {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await
    .expect("the spool drains once the database is back");
    auditor.shutdown().await;
    assert!(cut_at.elapsed() < Duration::from_secs(45));

    let su = superuser(&db).await;
    let row = su
        .query_one("SELECT count(*), count(DISTINCT id) FROM audit_events", &[])
        .await
        .unwrap();
    let (rows, distinct): (i64, i64) = (row.get(0), row.get(1));
    assert_eq!(rows, distinct, "no event is stored twice");
    assert_eq!(
        rows as usize,
        acked.len(),
        "every acknowledged event is stored"
    );
    let stored: HashSet<uuid::Uuid> = su
        .query("SELECT id FROM audit_events", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert!(acked.iter().all(|id| stored.contains(id)));
    let report = verify(&*store, &trust(&auditor)).await.unwrap();
    assert!(report.ok, "{report:#?}");
    assert_eq!(auditor.metrics().spool_bytes.get(), 0);
    // Memory is bounded by the queue and batch sizes, not by the outage length.
    assert!(
        rss_during < rss_before + 64 * 1024,
        "resident memory grew from {rss_before} KiB to {rss_during} KiB during the outage"
    );
    drop(proxy);
}

#[tokio::test]
async fn altered_and_deleted_rows_are_named_by_verify() {
    let (store, db) = pg_store().await;
    let auditor = Auditor::builder(store.clone())
        .config(AuditConfig {
            checkpoint_every: 20,
            ..AuditConfig::default()
        })
        .start()
        .unwrap();
    for i in 0..50 {
        auditor.record(new_event(i, "a")).await.unwrap();
    }
    auditor.shutdown().await;
    assert!(verify(&*store, &trust(&auditor)).await.unwrap().ok);

    let su = superuser(&db).await;
    // The triggers refuse even the superuser...
    let err = su
        .execute(
            "UPDATE audit_events SET resource_id = 'x' WHERE seq = 17",
            &[],
        )
        .await
        .unwrap_err();
    assert!(
        err.to_string().contains("append-only") || format!("{err:?}").contains("append-only"),
        "{err:?}"
    );
    // ...until it switches them off, as an attacker with superuser rights would.
    su.batch_execute(
        "SET session_replication_role = replica;
         UPDATE audit_events SET resource_id = 'forged' WHERE seq = 17;
         DELETE FROM audit_events WHERE seq = 33;",
    )
    .await
    .unwrap();
    let report = verify(&*store, &trust(&auditor)).await.unwrap();
    assert!(!report.ok);
    let s = &report.streams[0];
    assert_eq!(s.stream, auditor.stream());
    let broken = s.first_broken_link.as_ref().expect("a broken link");
    assert_eq!(broken.seq, 17, "{s:#?}");
    assert!(broken.reason.contains("altered"));
    assert_eq!(s.gaps.len(), 1);
    assert_eq!((s.gaps[0].from_seq, s.gaps[0].to_seq), (33, 33));

    // Deleting the newest row shows up as a checkpoint whose head is missing.
    su.batch_execute(
        "SET session_replication_role = replica; DELETE FROM audit_events WHERE seq = 50;",
    )
    .await
    .unwrap();
    let report = verify(&*store, &trust(&auditor)).await.unwrap();
    let s = &report.streams[0];
    assert_eq!(s.last_seq, Some(49));
    assert!(
        s.checkpoint_problems
            .iter()
            .any(|p| p.kind == "head_mismatch" && p.detail.contains("50")),
        "{s:#?}"
    );
}

#[tokio::test]
async fn application_role_cannot_update_delete_or_truncate() {
    let (store, db) = pg_store().await;
    let auditor = Auditor::builder(store.clone()).start().unwrap();
    auditor.record(new_event(1, "a")).await.unwrap();
    auditor.shutdown().await;

    let role = format!("wp_audit_app_{}", watchpost_test_support::unique_suffix());
    let su = superuser(&db).await;
    su.batch_execute(&format!(
        "CREATE ROLE {role} LOGIN; GRANT CONNECT ON DATABASE {} TO {role}; GRANT USAGE ON SCHEMA public TO {role};",
        db.name()
    ))
    .await
    .unwrap();
    grant_append_only(store.pool(), &role).await.unwrap();

    let app_url = db
        .url()
        .replacen("postgres://postgres", &format!("postgres://{role}"), 1);
    let (app, conn) = tokio_postgres::connect(&app_url, NoTls)
        .await
        .expect("connect as the app role");
    let conn = tokio::spawn(conn);
    let n: i64 = app
        .query_one("SELECT count(*) FROM audit_events", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(n, 1, "the app role can read");
    for sql in [
        "UPDATE audit_events SET resource_id = 'x'",
        "DELETE FROM audit_events",
        "TRUNCATE audit_events",
        "UPDATE audit_checkpoints SET to_seq = 0",
        "DELETE FROM audit_checkpoints",
    ] {
        let err = app.batch_execute(sql).await.expect_err(sql);
        let code = err.code().cloned();
        assert_eq!(
            code,
            Some(tokio_postgres::error::SqlState::INSUFFICIENT_PRIVILEGE),
            "{sql}: {err:?}"
        );
    }
    // The writer's path works for the app role: COPY into the partitioned table.
    let app_store = Arc::new(PostgresStore::new(pg_pool(&app_url)));
    let a2 = Auditor::builder(app_store.clone()).start().unwrap();
    a2.record(new_event(2, "a")).await.unwrap();
    a2.shutdown().await;
    assert!(verify(&*app_store, &Default::default()).await.unwrap().ok);

    drop(app);
    conn.abort();
    drop(app_store);
    drop(su);
    db.drop_now().await;
    let (admin, conn) =
        tokio_postgres::connect(&watchpost_test_support::postgres::admin_url(), NoTls)
            .await
            .unwrap();
    tokio::spawn(conn);
    admin
        .batch_execute(&format!("DROP ROLE IF EXISTS {role}"))
        .await
        .unwrap();
}

#[tokio::test]
async fn retention_drops_partitions_and_records_it() {
    let (store, _db) = pg_store().await;
    let old = chrono::DateTime::parse_from_rfc3339("2025-06-15T12:00:00Z")
        .unwrap()
        .to_utc();
    watchpost_audit::store::postgres::ensure_partitions(store.pool(), old, 0)
        .await
        .unwrap();
    let clock = watchpost_core::ManualClock::new(old);
    let auditor = Auditor::builder(store.clone())
        .clock(Arc::new(clock.clone()))
        .config(AuditConfig {
            checkpoint_every: 5,
            ..AuditConfig::default()
        })
        .start()
        .unwrap();
    for i in 0..10 {
        auditor.record(new_event(i, "a")).await.unwrap();
    }
    clock.set(chrono::Utc::now());
    for i in 10..20 {
        auditor.record(new_event(i, "a")).await.unwrap();
    }
    let cutoff = chrono::DateTime::parse_from_rfc3339("2025-07-01T00:00:00Z")
        .unwrap()
        .to_utc();
    let dropped = watchpost_audit::retention::apply_retention(&auditor, &store, cutoff)
        .await
        .unwrap();
    assert!(
        dropped.contains(&"audit_events_y2025m06".to_owned()),
        "{dropped:?}"
    );
    auditor.shutdown().await;
    let report = verify(&*store, &trust(&auditor)).await.unwrap();
    assert!(report.ok, "{report:#?}");
    let s = &report.streams[0];
    assert_eq!(s.retained_from, Some(11));
    assert_eq!(s.first_seq, Some(11));
    let recorded = store
        .query(&watchpost_audit::EventQuery {
            resource_id: Some("audit_events_y2025m06".into()),
            limit: 10,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(recorded.items.len(), 1, "the drop is an audit event");
}
