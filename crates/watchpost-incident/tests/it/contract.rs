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
