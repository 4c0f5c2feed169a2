//! The writer: durability, checkpoints (also when idle), spool and replay across a crash.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use watchpost_audit::{AuditConfig, AuditStore, Auditor, EventQuery, MemoryStore, verify};

use crate::support::{FlakyStore, new_event, trust};

#[tokio::test]
async fn records_redacts_checkpoints_and_verifies() {
    let store = Arc::new(MemoryStore::new());
    let auditor = Auditor::builder(store.clone())
        .config(AuditConfig {
            checkpoint_every: 10,
            redaction_key: Some(b"k".to_vec()),
            ..AuditConfig::default()
        })
        .start()
        .unwrap();
    let mut ids = Vec::new();
    for i in 0..25 {
        ids.push(auditor.record(new_event(i, "a")).await.unwrap());
    }
    auditor.shutdown().await;
    assert_eq!(store.len(), 25);
    let e = store.get(ids[3]).await.unwrap().unwrap();
    let want =
        watchpost_audit::Redactor::new(b"k".to_vec()).fingerprint(&serde_json::json!("hunter2"));
    assert_eq!(e.payload.as_ref().unwrap()["password"], want.as_str());
    let cps = store.checkpoints(auditor.stream()).await.unwrap();
    assert!(
        cps.len() >= 3,
        "every 10 events plus the final one: {cps:?}"
    );
    assert_eq!(cps.last().unwrap().to_seq, 25);
    let report = verify(&*store, &trust(&auditor)).await.unwrap();
    assert!(report.ok, "{report:#?}");
    assert!(
        auditor.record(new_event(0, "a")).await.is_err(),
        "a stopped writer refuses events"
    );
}

#[tokio::test(start_paused = true)]
async fn idle_checkpoints_keep_coming() {
    let store = Arc::new(MemoryStore::new());
    let auditor = Auditor::builder(store.clone())
        .config(AuditConfig {
            checkpoint_interval: Duration::from_secs(60),
            ..AuditConfig::default()
        })
        .start()
        .unwrap();
    auditor.record(new_event(1, "a")).await.unwrap();
    tokio::time::sleep(Duration::from_secs(181)).await;
    auditor.flush().await.unwrap();
    let cps = store.checkpoints(auditor.stream()).await.unwrap();
    assert_eq!(cps.len(), 3, "{cps:#?}");
    assert_eq!((cps[0].from_seq, cps[0].to_seq), (1, 1));
    assert_eq!(
        (cps[1].from_seq, cps[1].to_seq),
        (2, 1),
        "an idle checkpoint covers nothing new"
    );
    assert!(verify(&*store, &trust(&auditor)).await.unwrap().ok);
}

#[tokio::test]
async fn oversized_events_are_refused_and_big_payloads_truncated() {
    let auditor = Auditor::builder(Arc::new(MemoryStore::new()))
        .start()
        .unwrap();
    let huge = new_event(1, "a").payload(serde_json::json!({"blob": "x".repeat(200_000)}));
    let id = auditor.record(huge).await.unwrap();
    let e = auditor.store().get(id).await.unwrap().unwrap();
    assert_eq!(e.payload.unwrap()["$truncated"], true);
    let mut too_big = new_event(2, "a");
    too_big.user_agent = Some("y".repeat(1_100_000));
    assert!(matches!(
        auditor.record(too_big).await,
        Err(watchpost_audit::AuditError::EventTooLarge { .. })
    ));
}

#[tokio::test]
async fn without_spool_a_failing_store_refuses_and_leaves_no_gap() {
    let store = Arc::new(FlakyStore::default());
    let auditor = Auditor::builder(store.clone()).start().unwrap();
    auditor.record(new_event(1, "a")).await.unwrap();
    store.down.store(true, Ordering::SeqCst);
    assert!(auditor.record(new_event(2, "a")).await.is_err());
    store.down.store(false, Ordering::SeqCst);
    auditor.record(new_event(3, "a")).await.unwrap();
    auditor.shutdown().await;
    let report = verify(&*store, &trust(&auditor)).await.unwrap();
    assert!(report.ok, "{report:#?}");
    assert_eq!(report.events_checked, 2);
    assert_eq!(auditor.metrics().failed.get(), 1);
}

/// Events acknowledged from the spool survive the process dying (the runtime is dropped
/// mid-flight, no shutdown), and the next process replays them exactly once.
#[test]
fn spooled_events_survive_a_crash_and_replay_once() {
    let data = tempfile::tempdir().unwrap();
    let store = Arc::new(FlakyStore::default());
    store.down.store(true, Ordering::SeqCst);
    let config = AuditConfig {
        data_dir: Some(data.path().to_owned()),
        retry_interval: Duration::from_secs(3600),
        ..AuditConfig::default()
    };
    let acked = {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let acked = rt.block_on(async {
            let auditor = Auditor::builder(store.clone())
                .config(config.clone())
                .start()
                .unwrap();
            let mut acked = Vec::new();
            for i in 0..40 {
                acked.push(auditor.record(new_event(i, "a")).await.unwrap());
            }
            assert_eq!(auditor.metrics().spooled.get(), 40);
            acked
        });
        drop(rt); // the "SIGKILL": tasks vanish without shutdown
        acked
    };
    assert!(store.inner.is_empty());
    store.down.store(false, Ordering::SeqCst);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let auditor = Auditor::builder(store.clone())
            .config(config)
            .start()
            .unwrap();
        tokio::time::timeout(Duration::from_secs(10), async {
            while !auditor.replay_spool().await.unwrap() {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        })
        .await
        .expect("spool replays");
        auditor.shutdown().await;
        for id in &acked {
            assert!(
                store.get(*id).await.unwrap().is_some(),
                "acknowledged event {id} was lost"
            );
        }
        let all = crate::support::query_all(
            &*store,
            EventQuery {
                limit: 1000,
                ..EventQuery::default()
            },
        )
        .await;
        assert_eq!(all.len(), 40, "exactly once");
        let report = verify(&*store, &Default::default()).await.unwrap();
        assert_eq!(report.events_checked, 40);
        // The crashed writer's tail has no checkpoint, which verification may only flag as missing.
        assert!(
            report
                .streams
                .iter()
                .all(|s| s.first_broken_link.is_none() && s.gaps.is_empty()),
            "{report:#?}"
        );
    });
    assert_eq!(
        std::fs::read_dir(data.path().join("audit-spool"))
            .unwrap()
            .count(),
        0
    );
}

#[tokio::test]
async fn file_sink_gets_a_copy_of_every_batch() {
    let dir = tempfile::tempdir().unwrap();
    let sink = watchpost_audit::FileSink::new(
        watchpost_audit::FileSinkConfig {
            dir: dir.path().to_owned(),
            max_file_bytes: 1 << 20,
            retention_days: 7,
        },
        watchpost_core::SystemClock::shared(),
    )
    .unwrap();
    let auditor = Auditor::builder(Arc::new(MemoryStore::new()))
        .sink(Arc::new(sink.clone()))
        .start()
        .unwrap();
    for i in 0..12 {
        auditor.record_async(new_event(i, "a")).await.unwrap();
    }
    auditor.shutdown().await;
    let lines: usize = sink
        .files()
        .unwrap()
        .iter()
        .map(|p| std::fs::read_to_string(p).unwrap().lines().count())
        .sum();
    assert_eq!(lines, 12);
}
