//! The API key store contract, run against memory, SQLite and PostgreSQL.

use std::sync::Arc;

use chrono::{Duration, Utc};
use watchpost_core::Role;
use watchpost_server::keys::{
    ApiKeyStore, KeyStoreError, MemoryKeyStore, RevokeOutcome, generate, parse_key,
};
use watchpost_test_support::TestDatabase;

use crate::support::{app_state, postgres_config, sqlite_config};

async fn contract(store: Arc<dyn ApiKeyStore>) {
    let t0 = Utc::now();
    let a = generate("alpha", Some("acme".into()), Role::Tenant, t0);
    let b = generate("beta", None, Role::Root, t0 + Duration::seconds(1));
    assert!(store.list().await.unwrap().is_empty());
    assert!(!store.has_active_root().await.unwrap());

    store.insert(a.record.clone()).await.unwrap();
    store.insert(b.record.clone()).await.unwrap();
    assert!(matches!(
        store.insert(a.record.clone()).await,
        Err(KeyStoreError::Duplicate(id)) if id == a.record.id
    ));

    let got = store.get(&a.record.id).await.unwrap().expect("stored");
    assert_eq!(got.name, "alpha");
    assert_eq!(got.tenant_id.as_deref(), Some("acme"));
    assert_eq!(got.role, Role::Tenant);
    assert_eq!(got.revoked_at, None);
    // Timestamps survive the round trip to the microsecond (PostgreSQL's precision).
    assert_eq!(got.created_at.timestamp_micros(), t0.timestamp_micros());
    let (_, secret) = parse_key(&a.key).unwrap();
    assert!(
        got.secret_matches(secret),
        "only the hash is stored, and it matches"
    );
    assert_ne!(got.secret_hash, secret);
    assert!(store.get("000000000000").await.unwrap().is_none());

    let ids: Vec<String> = store
        .list()
        .await
        .unwrap()
        .into_iter()
        .map(|k| k.id)
        .collect();
    assert_eq!(
        ids,
        vec![a.record.id.clone(), b.record.id.clone()],
        "oldest first"
    );
    assert!(store.has_active_root().await.unwrap());

    let at = t0 + Duration::seconds(5);
    assert_eq!(
        store.revoke(&b.record.id, at).await.unwrap(),
        RevokeOutcome::Revoked
    );
    assert_eq!(
        store.revoke(&b.record.id, at).await.unwrap(),
        RevokeOutcome::AlreadyRevoked
    );
    assert_eq!(
        store.revoke("ffffffffffff", at).await.unwrap(),
        RevokeOutcome::NotFound
    );
    let revoked = store.get(&b.record.id).await.unwrap().unwrap();
    assert_eq!(
        revoked.revoked_at.map(|t| t.timestamp_micros()),
        Some(at.timestamp_micros())
    );
    assert!(!store.has_active_root().await.unwrap());
}

#[tokio::test]
async fn memory_store_meets_the_contract() {
    contract(Arc::new(MemoryKeyStore::default())).await;
}

#[tokio::test]
async fn sqlite_store_meets_the_contract() {
    let dir = tempfile::tempdir().unwrap();
    let state = app_state(sqlite_config(dir.path())).await;
    contract(state.keys.clone()).await;
}

#[tokio::test]
async fn postgres_store_meets_the_contract() {
    let db = TestDatabase::create().await;
    let dir = tempfile::tempdir().unwrap();
    let state = app_state(postgres_config(db.url(), dir.path())).await;
    contract(state.keys.clone()).await;
    // Migrations are idempotent: running them again changes nothing.
    state.stores.migrate().await.unwrap();
    state.stores.migrate().await.unwrap();
}
