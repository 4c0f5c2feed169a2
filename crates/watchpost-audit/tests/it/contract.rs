//! The store contract: one suite, run against memory, SQLite and PostgreSQL.

use std::sync::Arc;

use chrono::Duration;
use watchpost_audit::store::MemoryStore;
use watchpost_audit::{
    AuditStore, CheckpointSigner, EventQuery, OutcomeResult, VerifyOptions, compute_hash, verify,
};

use crate::support::{chained, query_all, t0};

async fn contract(store: Arc<dyn AuditStore>) {
    let a = chained("w1", 25, t0());
    let b = chained("w2", 7, t0() + Duration::milliseconds(500));
    store.append(&a[..10]).await.unwrap();
    store.append(&a[5..]).await.unwrap(); // overlapping replay: ids already stored are skipped
    store.append(&b).await.unwrap();
    store.append(&[]).await.unwrap();

    // Round trip is exact, so hashes still verify.
    let got = store.get(a[3].id).await.unwrap().expect("stored");
    assert_eq!(got, a[3]);
    assert_eq!(compute_hash(&got), got.hash);
    assert!(store.get(uuid::Uuid::now_v7()).await.unwrap().is_none());

    // Newest first, cursor pages cover everything exactly once.
    let all = query_all(
        &*store,
        EventQuery {
            limit: 4,
            ..EventQuery::default()
        },
    )
    .await;
    assert_eq!(all.len(), 32);
    assert!(
        all.windows(2)
            .all(|w| (w[0].recorded_at, w[0].id) > (w[1].recorded_at, w[1].id))
    );
    let mut ids: Vec<_> = all.iter().map(|e| e.id).collect();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 32);

    // Filters.
    let tenant_a = query_all(
        &*store,
        EventQuery {
            tenant_id: Some("a".into()),
            limit: 1000,
            ..EventQuery::default()
        },
    )
    .await;
    assert_eq!(tenant_a.len(), 13 + 4);
    assert!(
        tenant_a
            .iter()
            .all(|e| e.actor.tenant_id.as_deref() == Some("a"))
    );
    let q = EventQuery {
        action: Some("delete".into()),
        outcome: Some(OutcomeResult::Failure),
        api_key_id: Some("key-a".into()),
        limit: 1000,
        ..EventQuery::default()
    };
    let expected = a.iter().chain(&b).filter(|e| q.matches(e)).count();
    assert!(expected > 0);
    assert_eq!(query_all(&*store, q).await.len(), expected);
    let q = EventQuery {
        resource_type: Some("incident".into()),
        resource_id: Some("inc-3".into()),
        correlation_id: Some("corr-3".into()),
        limit: 10,
        ..EventQuery::default()
    };
    assert_eq!(
        query_all(&*store, q).await.len(),
        2,
        "inc-3 exists in both streams"
    );
    let q = EventQuery {
        from: Some(a[20].recorded_at),
        to: Some(a[24].recorded_at),
        limit: 10,
        ..EventQuery::default()
    };
    let window = query_all(&*store, q).await;
    assert_eq!(
        window.iter().map(|e| e.seq).collect::<Vec<_>>(),
        [24, 23, 22, 21]
    );
    assert!(
        store
            .query(&EventQuery {
                limit: 0,
                ..EventQuery::default()
            })
            .await
            .is_err()
    );
    assert!(
        store
            .query(&EventQuery {
                limit: 1001,
                ..EventQuery::default()
            })
            .await
            .is_err()
    );

    // Streams, sequence reads, existing ids.
    assert_eq!(store.streams().await.unwrap(), ["w1", "w2"]);
    let tail = store.stream_events("w1", 20, 3).await.unwrap();
    assert_eq!(tail.iter().map(|e| e.seq).collect::<Vec<_>>(), [21, 22, 23]);
    let probe = [a[0].id, uuid::Uuid::now_v7(), b[6].id];
    let have = store.existing_ids(&probe).await.unwrap();
    assert!(have.contains(&a[0].id) && have.contains(&b[6].id) && have.len() == 2);

    // Checkpoints: ordered, idempotent, and the whole trail verifies.
    let signer = CheckpointSigner::from_seed([3; 32]);
    let c1 = signer.sign_next("w1", None, 10, &a[9].hash, t0());
    let c2 = signer.sign_next("w1", Some(&c1), 25, &a[24].hash, t0());
    store.append_checkpoint(&c1).await.unwrap();
    store.append_checkpoint(&c2).await.unwrap();
    store.append_checkpoint(&c1).await.unwrap();
    assert_eq!(store.checkpoints("w1").await.unwrap(), vec![c1, c2]);
    assert!(store.checkpoints("nope").await.unwrap().is_empty());
    let opts = VerifyOptions {
        trusted_keys: vec![signer.public_key_hex().to_owned()],
        max_uncheckpointed: 0,
    };
    let report = verify(&*store, &opts).await.unwrap();
    assert!(report.ok, "{report:#?}");
    assert_eq!(report.events_checked, 32);
}

#[tokio::test]
async fn memory_store_contract() {
    contract(Arc::new(MemoryStore::new())).await;
}

#[tokio::test]
async fn sqlite_store_contract() {
    let (store, _dir) = crate::support::sqlite_store().await;
    contract(store.clone()).await;
    // The SQLite tables are append-only too: triggers abort UPDATE and DELETE.
    let conn = store.pool().get().await.unwrap();
    let refused = conn
        .interact(|c| {
            [
                "UPDATE audit_events SET action = 'x'",
                "DELETE FROM audit_events",
                "DELETE FROM audit_checkpoints",
            ]
            .iter()
            .map(|sql| c.execute(sql, []).map_err(|e| e.to_string()))
            .collect::<Vec<_>>()
        })
        .await
        .unwrap();
    for r in refused {
        assert!(r.unwrap_err().contains("append-only"));
    }
}

#[tokio::test]
async fn postgres_store_contract() {
    let (store, _db) = crate::support::pg_store().await;
    contract(store).await;
}
