//! Shared helpers: stores for each backend and chained sample events.

use std::sync::Arc;

use chrono::{DateTime, Duration, Utc};
use serde_json::json;
use watchpost_audit::{Action, Actor, AuditEvent, AuditStore, ChainHead, NewEvent, Outcome};
use watchpost_core::Role;
use watchpost_test_support::TestDatabase;

/// A PostgreSQL pool for `url`.
pub(crate) fn pg_pool(url: &str) -> deadpool_postgres::Pool {
    let mut cfg = deadpool_postgres::Config::new();
    cfg.url = Some(url.to_owned());
    cfg.pool = Some(deadpool_postgres::PoolConfig::new(8));
    cfg.create_pool(
        Some(deadpool_postgres::Runtime::Tokio1),
        tokio_postgres::NoTls,
    )
    .expect("valid pool config")
}

/// A migrated PostgreSQL store in a fresh database (keep the database alive as long as the store).
pub(crate) async fn pg_store() -> (
    Arc<watchpost_audit::store::postgres::PostgresStore>,
    TestDatabase,
) {
    let db = TestDatabase::create().await;
    let pool = pg_pool(&db.url());
    watchpost_audit::store::postgres::migrate(&pool)
        .await
        .expect("migrate");
    (
        Arc::new(watchpost_audit::store::postgres::PostgresStore::new(pool)),
        db,
    )
}

/// A migrated SQLite store in a temporary directory.
pub(crate) async fn sqlite_store() -> (
    Arc<watchpost_audit::store::sqlite::SqliteStore>,
    tempfile::TempDir,
) {
    let dir = tempfile::tempdir().unwrap();
    let store = watchpost_audit::store::sqlite::SqliteStore::open(dir.path().join("audit.db"))
        .await
        .expect("open sqlite");
    (Arc::new(store), dir)
}

/// A fixed starting time.
pub(crate) fn t0() -> DateTime<Utc> {
    DateTime::parse_from_rfc3339("2026-11-02T10:00:00.123456Z")
        .unwrap()
        .to_utc()
}

/// `n` chained events in `stream`, one second apart, alternating tenants `a`/`b`.
pub(crate) fn chained(stream: &str, n: usize, start: DateTime<Utc>) -> Vec<AuditEvent> {
    let mut head = ChainHead::genesis(stream);
    (0..n)
        .map(|i| {
            let tenant = if i % 2 == 0 { "a" } else { "b" };
            let mut e = NewEvent::new(if i % 3 == 0 {
                Action::Delete
            } else {
                Action::Create
            })
            .actor(Actor {
                api_key_id: Some(format!("key-{tenant}")),
                key_name: Some("ci".into()),
                tenant_id: Some(tenant.into()),
                role: Some(Role::Tenant),
            })
            .resource("incident", format!("inc-{i}"))
            .outcome(if i % 4 == 0 {
                Outcome::failure()
            } else {
                Outcome::success()
            })
            .payload(json!({"i": i, "f": 1.5, "nested": {"z": [1, "é", null], "a": true}}))
            .into_event(start + Duration::seconds(i as i64));
            e.correlation_id = Some(format!("corr-{}", i % 5));
            head.seal(&mut e);
            e
        })
        .collect()
}

/// Everything a store holds for the query, following cursors.
pub(crate) async fn query_all(
    store: &dyn AuditStore,
    mut q: watchpost_audit::EventQuery,
) -> Vec<AuditEvent> {
    let mut out = Vec::new();
    loop {
        let page = store.query(&q).await.unwrap();
        out.extend(page.items);
        match page.next {
            Some(c) => q.cursor = Some(c),
            None => return out,
        }
    }
}

/// A memory store that fails every write while `down` is set.
#[derive(Debug, Default)]
pub(crate) struct FlakyStore {
    pub(crate) inner: watchpost_audit::MemoryStore,
    pub(crate) down: std::sync::atomic::AtomicBool,
}

impl FlakyStore {
    fn check(&self) -> watchpost_audit::Result<()> {
        if self.down.load(std::sync::atomic::Ordering::SeqCst) {
            Err(watchpost_audit::AuditError::Store {
                backend: "memory",
                message: "down for the test".into(),
            })
        } else {
            Ok(())
        }
    }
}

impl AuditStore for FlakyStore {
    fn backend(&self) -> &'static str {
        "memory"
    }
    fn is_durable(&self) -> bool {
        false
    }
    fn append<'a>(
        &'a self,
        events: &'a [AuditEvent],
    ) -> watchpost_audit::store::StoreFuture<'a, ()> {
        Box::pin(async move {
            self.check()?;
            self.inner.append(events).await
        })
    }
    fn append_checkpoint<'a>(
        &'a self,
        c: &'a watchpost_audit::Checkpoint,
    ) -> watchpost_audit::store::StoreFuture<'a, ()> {
        Box::pin(async move {
            self.check()?;
            self.inner.append_checkpoint(c).await
        })
    }
    fn get(&self, id: uuid::Uuid) -> watchpost_audit::store::StoreFuture<'_, Option<AuditEvent>> {
        self.inner.get(id)
    }
    fn query<'a>(
        &'a self,
        q: &'a watchpost_audit::EventQuery,
    ) -> watchpost_audit::store::StoreFuture<'a, watchpost_audit::Page> {
        self.inner.query(q)
    }
    fn stream_events<'a>(
        &'a self,
        s: &'a str,
        after: i64,
        limit: usize,
    ) -> watchpost_audit::store::StoreFuture<'a, Vec<AuditEvent>> {
        self.inner.stream_events(s, after, limit)
    }
    fn streams(&self) -> watchpost_audit::store::StoreFuture<'_, Vec<String>> {
        self.inner.streams()
    }
    fn checkpoints<'a>(
        &'a self,
        s: &'a str,
    ) -> watchpost_audit::store::StoreFuture<'a, Vec<watchpost_audit::Checkpoint>> {
        self.inner.checkpoints(s)
    }
    fn existing_ids<'a>(
        &'a self,
        ids: &'a [uuid::Uuid],
    ) -> watchpost_audit::store::StoreFuture<'a, std::collections::HashSet<uuid::Uuid>> {
        self.inner.existing_ids(ids)
    }
}

/// Options trusting `auditor`'s key and nothing else.
pub(crate) fn trust(auditor: &watchpost_audit::Auditor) -> watchpost_audit::VerifyOptions {
    watchpost_audit::VerifyOptions {
        trusted_keys: vec![auditor.public_key_hex().to_owned()],
        max_uncheckpointed: 0,
    }
}

/// A simple event for the programmatic API.
pub(crate) fn new_event(i: usize, tenant: &str) -> NewEvent {
    NewEvent::new(Action::Create)
        .actor(Actor {
            api_key_id: Some(format!("key-{tenant}")),
            key_name: Some("load".into()),
            tenant_id: Some(tenant.into()),
            role: Some(Role::Tenant),
        })
        .resource("thing", i.to_string())
        .payload(json!({"i": i, "password": "hunter2"}))
}
