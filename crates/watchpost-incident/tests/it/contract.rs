//! The IncidentStore contract, run against memory, SQLite (tempdir) and PostgreSQL.

use std::sync::Arc;
use std::time::Duration;

use watchpost_core::Severity;
use watchpost_incident::engine::{IncidentOp, NewIncident, OpError};
use watchpost_incident::model::{Actor, Channel, IncidentStatus, TimelineEvent, UpdateStatus};
use watchpost_incident::outbox::{DeliveryResult, NotificationKind, OutboxState};
use watchpost_incident::policy::{LabelMatcher, MaintenanceWindow};
use watchpost_incident::store::{IncidentQuery, MemoryStore, SharedStore};
use watchpost_incident::{IncidentConfig, IncidentError};

use super::*;

async fn contract(store: SharedStore) {
    let (svc, clock) = service_with(store.clone(), config());

    // Fire: one incident, notifications for the critical route (PagerDuty, Slack, email).
    let a = firing("DiskFull", "critical", "db", at(0));
    let first = svc.ingest(delivery(vec![a.clone()]), None).await.unwrap();
    assert_eq!(first.incidents.len(), 1);
    assert_eq!(first.outbox.len(), 3);
    let id = first.incidents[0].id.clone();
    let incident = store.get(id.clone()).await.unwrap().unwrap();
    assert_eq!(incident.status, IncidentStatus::Triggered);
    assert_eq!(incident.title, "DiskFull is failing");
    assert_eq!(incident.service.as_deref(), Some("db"));
    assert_eq!(
        incident.runbook_url.as_deref(),
        Some("https://runbooks.example/x")
    );
    assert_eq!(incident.severity, Severity::Critical);

    // Redelivery and repeat: nothing changes, nobody is notified again.
    let again = svc.ingest(delivery(vec![a.clone()]), None).await.unwrap();
    assert!(
        again.is_empty(),
        "a redelivery must change nothing: {again:?}"
    );
    assert_eq!(store.outbox().await.unwrap().len(), 3);

    // Resolve.
    clock.advance(Duration::from_secs(600));
    let r = svc
        .ingest(delivery(vec![resolved(&a, at(10))]), None)
        .await
        .unwrap();
    assert_eq!(r.outbox.len(), 3);
    let incident = store.get(id.clone()).await.unwrap().unwrap();
    assert_eq!(incident.status, IncidentStatus::Resolved);
    assert_eq!(incident.resolved_at, Some(at(10)));
    assert_eq!(incident.time_to_resolve_seconds, Some(600));
    // A late firing copy of the same episode is stale.
    assert!(
        svc.ingest(delivery(vec![a.clone()]), None)
            .await
            .unwrap()
            .is_empty()
    );
    assert!(
        svc.ingest(delivery(vec![resolved(&a, at(10))]), None)
            .await
            .unwrap()
            .is_empty()
    );

    // Reopen inside the window: same incident.
    let again = firing("DiskFull", "critical", "db", at(20));
    let c = svc
        .ingest(delivery(vec![again.clone()]), None)
        .await
        .unwrap();
    assert_eq!(c.incidents[0].id, id);
    let incident = store.get(id.clone()).await.unwrap().unwrap();
    assert_eq!(incident.status, IncidentStatus::Triggered);
    assert!(
        incident
            .timeline
            .iter()
            .any(|e| e.event == TimelineEvent::Reopened)
    );
    svc.ingest(delivery(vec![resolved(&again, at(25))]), None)
        .await
        .unwrap();
    // Outside the window: a new incident.
    let later = firing("DiskFull", "critical", "db", at(120));
    let c = svc.ingest(delivery(vec![later]), None).await.unwrap();
    assert_ne!(c.incidents[0].id, id);
    assert!(c.new_incidents.contains(&c.incidents[0].id));

    // Warnings are kept as alerts without an incident.
    let w = firing("SlowQueries", "warning", "db", at(0));
    let c = svc.ingest(delivery(vec![w.clone()]), None).await.unwrap();
    assert!(c.incidents.is_empty());
    assert_eq!(c.alerts.len(), 1);
    let firing_now = store.firing_alerts().await.unwrap();
    assert!(firing_now.iter().any(|x| x.fingerprint == w.fingerprint()));

    // Truncation marks the incident partial.
    let mut p = delivery(vec![firing("ApiDown", "critical", "api", at(30))]);
    p.truncated_alerts = 4;
    let c = svc.ingest(p, None).await.unwrap();
    let api_id = c.incidents[0].id.clone();
    let api = store.get(api_id.clone()).await.unwrap().unwrap();
    assert!(api.partial);
    assert!(api.timeline.iter().any(|e| e.event
        == TimelineEvent::Partial {
            truncated_alerts: 4
        }));

    // Manual life cycle.
    let actor = Actor::key(&principal());
    let m = svc
        .create(
            NewIncident {
                title: "Payments slow".into(),
                description: None,
                severity: Some(Severity::Warning),
                priority: None,
                service: Some("payments".into()),
                runbook_url: None,
            },
            actor.clone(),
            None,
        )
        .await
        .unwrap();
    clock.advance(Duration::from_secs(120));
    let acked = svc
        .apply(&m.id, IncidentOp::Acknowledge, actor.clone(), None)
        .await
        .unwrap();
    assert_eq!(acked.status, IncidentStatus::Acknowledged);
    assert_eq!(acked.time_to_acknowledge_seconds, Some(120));
    let acked_again = svc
        .apply(&m.id, IncidentOp::Acknowledge, actor.clone(), None)
        .await
        .unwrap();
    assert_eq!(
        acked_again.timeline.len(),
        acked.timeline.len(),
        "acknowledging twice changes nothing"
    );
    let updated = svc
        .apply(
            &m.id,
            IncidentOp::Update {
                status: UpdateStatus::Identified,
                note: "bad deploy".into(),
            },
            actor.clone(),
            None,
        )
        .await
        .unwrap();
    assert_eq!(
        updated.latest_update().map(|(_, s, n)| (s, n.to_owned())),
        Some((UpdateStatus::Identified, "bad deploy".to_owned()))
    );
    let done = svc
        .apply(&m.id, IncidentOp::Resolve, actor.clone(), None)
        .await
        .unwrap();
    assert_eq!(done.status, IncidentStatus::Resolved);
    let err = svc
        .apply(&m.id, IncidentOp::Acknowledge, actor.clone(), None)
        .await
        .unwrap_err();
    assert!(matches!(err, IncidentError::Conflict(OpError::Resolved)));
    let err = svc
        .apply("nope", IncidentOp::Resolve, actor.clone(), None)
        .await
        .unwrap_err();
    assert!(matches!(err, IncidentError::NotFound(_)));

    // Filters and cursor paging.
    let open = store
        .list(IncidentQuery {
            status: Some(IncidentStatus::Triggered),
            limit: 50,
            ..Default::default()
        })
        .await
        .unwrap();
    assert!(
        open.items
            .iter()
            .all(|i| i.status == IncidentStatus::Triggered)
    );
    assert!(open.items.iter().any(|i| i.id == api_id));
    let by_service = store
        .list(IncidentQuery {
            service: Some("payments".into()),
            limit: 50,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(by_service.items.len(), 1);
    let mut seen = Vec::new();
    let mut cursor = None;
    loop {
        let page = store
            .list(IncidentQuery {
                limit: 1,
                cursor: cursor
                    .as_deref()
                    .and_then(watchpost_incident::store::Cursor::decode),
                ..Default::default()
            })
            .await
            .unwrap();
        seen.extend(page.items.iter().map(|i| i.id.clone()));
        match page.next_cursor {
            Some(c) => cursor = Some(c),
            None => break,
        }
    }
    let all = store
        .list(IncidentQuery {
            limit: 500,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(
        seen,
        all.items.iter().map(|i| i.id.clone()).collect::<Vec<_>>()
    );
    assert_eq!(all.items.len(), 4);
    let counts = store.open_counts().await.unwrap();
    assert_eq!(counts, vec![(Severity::Critical, 2)]);

    // Outbox: claim, lease, deliver, retry, fail.
    let now = clock.now_for_tests();
    let claimed = store
        .claim_outbox(now, Duration::from_secs(60), 100)
        .await
        .unwrap();
    let total = store.outbox().await.unwrap().len();
    assert_eq!(claimed.len(), total);
    assert!(
        store
            .claim_outbox(now, Duration::from_secs(60), 100)
            .await
            .unwrap()
            .is_empty(),
        "leased entries are skipped"
    );
    let mut it = claimed.into_iter();
    let delivered = it.next().unwrap();
    store
        .complete_outbox(delivered.clone(), DeliveryResult::Delivered, now)
        .await
        .unwrap();
    store
        .complete_outbox(delivered.clone(), DeliveryResult::Delivered, now)
        .await
        .unwrap();
    let incident = store
        .get(delivered.notification.incident.id.clone())
        .await
        .unwrap()
        .unwrap();
    let notified = incident
        .timeline
        .iter()
        .filter(|e| matches!(e.event, TimelineEvent::Notified { .. }))
        .count();
    assert_eq!(notified, 1, "a delivery is recorded once");
    let retry = it.next().unwrap();
    store
        .complete_outbox(
            retry.clone(),
            DeliveryResult::Retry {
                at: now + chrono::Duration::seconds(5),
                error: "503".into(),
            },
            now,
        )
        .await
        .unwrap();
    let failed = it.next().unwrap();
    store
        .complete_outbox(
            failed.clone(),
            DeliveryResult::Failed {
                error: "400".into(),
            },
            now,
        )
        .await
        .unwrap();
    let later = now + chrono::Duration::seconds(61);
    let reclaimed = store
        .claim_outbox(later, Duration::from_secs(60), 100)
        .await
        .unwrap();
    assert!(
        reclaimed
            .iter()
            .any(|e| e.id() == retry.id() && e.attempts == 2)
    );
    assert!(
        !reclaimed
            .iter()
            .any(|e| e.id() == delivered.id() || e.id() == failed.id())
    );
    let states: Vec<_> = store
        .outbox()
        .await
        .unwrap()
        .into_iter()
        .map(|e| (e.id().to_owned(), e.state))
        .collect();
    assert!(states.contains(&(delivered.id().to_owned(), OutboxState::Delivered)));
    assert!(states.contains(&(failed.id().to_owned(), OutboxState::Failed)));

    // Pruning event keys keeps deduplication: old redeliveries are stale for the engine.
    let pruned = store
        .prune_events(clock.now_for_tests() + chrono::Duration::seconds(1))
        .await
        .unwrap();
    assert!(pruned > 0);
    assert!(
        svc.ingest(delivery(vec![a.clone()]), None)
            .await
            .unwrap()
            .is_noop()
    );
    assert!(
        svc.ingest(delivery(vec![resolved(&a, at(10))]), None)
            .await
            .unwrap()
            .is_noop()
    );

    // Maintenance mutes notifications but records everything and never swallows a resolve.
    let notified_first = firing("QueueStuck", "critical", "queue", at(200));
    let c = svc
        .ingest(delivery(vec![notified_first.clone()]), None)
        .await
        .unwrap();
    assert_eq!(c.outbox.len(), 3);
    let window = MaintenanceWindow {
        name: "queue upgrade".into(),
        matchers: vec![LabelMatcher::eq("service", "queue")],
        starts_at: at(0),
        ends_at: at(100_000),
        service: Some("queue".into()),
    };
    let mut cfg = config();
    cfg.policy.maintenance = vec![window];
    let (muted_svc, _) = service_with(store.clone(), cfg);
    let muted_alert = firing("QueueSlow", "critical", "queue", at(200));
    let c = muted_svc
        .ingest(delivery(vec![muted_alert.clone()]), None)
        .await
        .unwrap();
    assert_eq!(c.incidents.len(), 1);
    assert!(c.outbox.is_empty(), "muted by maintenance");
    assert!(c.incidents[0].muted);
    let c = muted_svc
        .ingest(delivery(vec![resolved(&muted_alert, at(210))]), None)
        .await
        .unwrap();
    assert_eq!(c.incidents[0].status, IncidentStatus::Resolved);
    assert!(
        c.outbox.is_empty(),
        "a muted incident's resolve is not announced either"
    );
    let c = muted_svc
        .ingest(delivery(vec![resolved(&notified_first, at(210))]), None)
        .await
        .unwrap();
    assert_eq!(
        c.outbox.len(),
        3,
        "the resolve of an announced incident goes out despite maintenance"
    );
    assert!(
        c.outbox
            .iter()
            .all(|o| o.notification.kind == NotificationKind::Resolve)
    );
    assert!(
        c.outbox
            .iter()
            .any(|o| o.notification.channel == Channel::PagerDuty)
    );
}

/// `ManualClock::now` through the `Clock` trait.
trait NowForTests {
    fn now_for_tests(&self) -> chrono::DateTime<chrono::Utc>;
}

impl NowForTests for watchpost_core::ManualClock {
    fn now_for_tests(&self) -> chrono::DateTime<chrono::Utc> {
        watchpost_core::Clock::now(self)
    }
}

#[tokio::test]
async fn memory_store_meets_the_contract() {
    tokio::time::timeout(
        Duration::from_secs(20),
        contract(Arc::new(MemoryStore::new())),
    )
    .await
    .unwrap();
}

#[tokio::test]
async fn sqlite_store_meets_the_contract() {
    let dir = tempfile::tempdir().unwrap();
    let store =
        watchpost_incident::store::sqlite::SqliteStore::open(dir.path().join("incidents.db"))
            .await
            .unwrap();
    // Migrating twice is harmless.
    watchpost_incident::store::sqlite::migrate(store.pool())
        .await
        .unwrap();
    tokio::time::timeout(Duration::from_secs(30), contract(Arc::new(store)))
        .await
        .unwrap();
}

#[tokio::test]
async fn postgres_store_meets_the_contract() {
    let db = watchpost_test_support::TestDatabase::create().await;
    let store = watchpost_incident::store::postgres::PostgresStore::connect(&db.url(), 4)
        .await
        .unwrap();
    watchpost_incident::store::postgres::migrate(store.pool())
        .await
        .unwrap();
    tokio::time::timeout(Duration::from_secs(30), contract(Arc::new(store)))
        .await
        .unwrap();
    // The crate keeps its own migration history table.
    let (client, conn) = tokio_postgres::connect(&db.url(), tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(conn);
    let row = client
        .query_one("SELECT count(*) FROM watchpost_incident_migrations", &[])
        .await
        .unwrap();
    assert_eq!(row.get::<_, i64>(0), 1);
    let _ = IncidentConfig::default();
}

#[tokio::test]
async fn grouping_by_labels_and_resolve_any_policy() {
    use watchpost_incident::policy::{Grouping, ResolvePolicy};
    let mut cfg = config();
    cfg.policy.grouping = Grouping::Labels(vec!["alertname".into()]);
    let store: SharedStore = Arc::new(MemoryStore::new());
    let (svc, _) = service_with(store.clone(), cfg.clone());
    let a = firing("DbDown", "critical", "db", at(0));
    let mut b = firing("DbDown", "critical", "db", at(1));
    b.labels.insert("instance".into(), "db2".into());
    let c = svc
        .ingest(delivery(vec![a.clone(), b.clone()]), None)
        .await
        .unwrap();
    assert_eq!(c.incidents.len(), 1, "one incident for the group");
    assert_eq!(c.incidents[0].alerts.len(), 2);
    assert_eq!(
        c.outbox.len(),
        3,
        "one notification per channel for the group"
    );
    // Resolve-all (default): one resolved alert keeps the incident open.
    let c = svc
        .ingest(delivery(vec![resolved(&a, at(5)), b.clone()]), None)
        .await
        .unwrap();
    assert_eq!(c.incidents[0].status, IncidentStatus::Triggered);
    let c = svc
        .ingest(delivery(vec![resolved(&b, at(6))]), None)
        .await
        .unwrap();
    assert_eq!(c.incidents[0].status, IncidentStatus::Resolved);
    assert_eq!(c.incidents[0].resolved_at, Some(at(6)));

    // Resolve-any: the first resolved alert closes the incident.
    cfg.policy.resolve = ResolvePolicy::Any;
    let store: SharedStore = Arc::new(MemoryStore::new());
    let (svc, _) = service_with(store, cfg);
    svc.ingest(delivery(vec![a.clone(), b.clone()]), None)
        .await
        .unwrap();
    let c = svc
        .ingest(delivery(vec![resolved(&a, at(5)), b]), None)
        .await
        .unwrap();
    assert_eq!(c.incidents[0].status, IncidentStatus::Resolved);
}

#[tokio::test]
async fn reconciliation_resolves_lost_alerts_and_applies_unknown_ones() {
    use axum::routing::get;
    // A stand-in for Alertmanager's /api/v2/alerts: one active alert Watchpost never heard of.
    let unknown = firing("Unknown", "critical", "edge", at(3));
    let active = serde_json::json!([{
        "fingerprint": unknown.fingerprint(), "labels": unknown.labels, "annotations": unknown.annotations,
        "startsAt": unknown.starts_at, "endsAt": "2026-01-01T01:00:00Z", "updatedAt": "2026-01-01T00:03:00Z",
        "generatorURL": "", "receivers": [{"name": "watchpost"}],
        "status": {"state": "active", "silencedBy": [], "inhibitedBy": []}
    }]);
    let app = axum::Router::new().route(
        "/api/v2/alerts",
        get(move || async move { axum::Json(active) }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });

    let store: SharedStore = Arc::new(MemoryStore::new());
    let (svc, _) = service_with(store.clone(), config());
    // Watchpost believes this one fires, but its resolve was lost (max_alerts truncation).
    let lost = firing("Lost", "critical", "api", at(0));
    svc.ingest(delivery(vec![lost.clone()]), None)
        .await
        .unwrap();
    let reconciler =
        watchpost_incident::reconcile::Reconciler::new(svc.clone(), format!("http://{addr}/"));
    let report = reconciler.reconcile_once().await.unwrap();
    assert_eq!((report.resolved, report.fired), (1, 1));
    let all = store
        .list(IncidentQuery {
            limit: 10,
            ..Default::default()
        })
        .await
        .unwrap()
        .items;
    let lost_incident = all
        .iter()
        .find(|i| i.alerts[0].fingerprint == lost.fingerprint())
        .unwrap();
    assert_eq!(lost_incident.status, IncidentStatus::Resolved);
    assert!(
        all.iter()
            .any(|i| i.alerts[0].fingerprint == unknown.fingerprint()
                && i.status == IncidentStatus::Triggered)
    );
    // A second round finds nothing to do.
    assert_eq!(
        reconciler.reconcile_once().await.unwrap(),
        Default::default()
    );
}
