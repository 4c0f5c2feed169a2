//! [`PostgresStore`]: the incident store in PostgreSQL (deadpool-postgres), safe with several replicas.
//!
//! A delivery's transaction first inserts (`ON CONFLICT DO NOTHING`) and locks, in sorted order,
//! one `incident_keys` row per key it touches; a second replica applying the same delivery waits
//! there, then finds the event keys already recorded and changes nothing. A unique index allows
//! one open incident per key, and outbox rows are unique per (incident, revision, channel).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio_postgres::types::ToSql;
use watchpost_core::Severity;

use super::{BoxFuture, IncidentPage, IncidentQuery, IncidentStore, lease_until, ms, page_from};
use crate::alertmanager::{AlertStatus, EventKey, WebhookPayload};
use crate::engine::{self, ApplyContext, Changes, IncidentOp, NewIncident, Snapshot};
use crate::error::IncidentError;
use crate::model::{Actor, AlertRecord, Incident, TimelineEvent};
use crate::outbox::{DeliveryResult, Notification, OutboxEntry, OutboxState};

mod embedded {
    refinery::embed_migrations!("migrations/postgres");
}

/// The refinery history table of this crate.
pub const MIGRATION_TABLE: &str = "watchpost_incident_migrations";

fn unavailable(e: impl std::fmt::Display) -> IncidentError {
    IncidentError::Unavailable(format!("PostgreSQL: {e}"))
}

/// Applies this crate's PostgreSQL migrations (idempotent).
pub async fn migrate(pool: &deadpool_postgres::Pool) -> Result<(), IncidentError> {
    let mut client = pool.get().await.map_err(|e| {
        IncidentError::Unavailable(format!(
            "cannot connect to PostgreSQL: {e}; is it running? set DATABASE_URL"
        ))
    })?;
    let client: &mut tokio_postgres::Client = &mut client;
    embedded::migrations::runner()
        .set_migration_table_name(MIGRATION_TABLE)
        .run_async(client)
        .await
        .map(|_| ())
        .map_err(|e| IncidentError::Migration(e.to_string()))
}

/// The incident store in PostgreSQL.
#[derive(Debug, Clone)]
pub struct PostgresStore {
    pool: deadpool_postgres::Pool,
}

type Tx<'a> = deadpool_postgres::Transaction<'a>;

impl PostgresStore {
    /// A store over `pool` (call [`migrate`] first).
    pub fn new(pool: deadpool_postgres::Pool) -> Self {
        Self { pool }
    }

    /// Connects to `url` (a pool of up to `max_size` connections), migrates, and returns the store.
    pub async fn connect(url: &str, max_size: usize) -> Result<Self, IncidentError> {
        let mut cfg = deadpool_postgres::Config::new();
        cfg.url = Some(url.to_owned());
        cfg.pool = Some(deadpool_postgres::PoolConfig::new(max_size.max(1)));
        let pool = cfg
            .create_pool(
                Some(deadpool_postgres::Runtime::Tokio1),
                tokio_postgres::NoTls,
            )
            .map_err(|e| IncidentError::Config(format!("DATABASE_URL is not usable: {e}")))?;
        migrate(&pool).await?;
        Ok(Self::new(pool))
    }

    /// The pool.
    pub fn pool(&self) -> &deadpool_postgres::Pool {
        &self.pool
    }

    async fn client(&self) -> Result<deadpool_postgres::Object, IncidentError> {
        self.pool.get().await.map_err(|e| {
            IncidentError::Unavailable(format!(
                "cannot connect to PostgreSQL: {e}; is it running? set DATABASE_URL"
            ))
        })
    }
}

async fn load_incident(
    tx: &Tx<'_>,
    id: &str,
    lock: bool,
) -> Result<Option<Incident>, IncidentError> {
    let q = if lock {
        "SELECT doc::text FROM incidents WHERE id = $1 FOR UPDATE"
    } else {
        "SELECT doc::text FROM incidents WHERE id = $1"
    };
    let row = tx.query_opt(q, &[&id]).await.map_err(unavailable)?;
    row.map(|r| serde_json::from_str(r.get::<_, &str>(0)).map_err(IncidentError::from))
        .transpose()
}

async fn write_changes(
    tx: &Tx<'_>,
    changes: &Changes,
    now: DateTime<Utc>,
) -> Result<(), IncidentError> {
    if !changes.incidents.is_empty() {
        let stmt = tx
            .prepare_cached(
                "INSERT INTO incidents (id, incident_key, status, severity, service, started_ms, updated_ms, doc) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8::text::jsonb) ON CONFLICT (id) DO UPDATE SET \
                 status = EXCLUDED.status, severity = EXCLUDED.severity, service = EXCLUDED.service, \
                 started_ms = EXCLUDED.started_ms, updated_ms = EXCLUDED.updated_ms, doc = EXCLUDED.doc",
            )
            .await
            .map_err(unavailable)?;
        for i in &changes.incidents {
            let doc = serde_json::to_string(i)?;
            tx.execute(
                &stmt,
                &[
                    &i.id,
                    &i.key,
                    &i.status.as_str(),
                    &i.severity.as_str(),
                    &i.service,
                    &ms(i.started_at),
                    &ms(i.updated_at),
                    &doc,
                ],
            )
            .await
            .map_err(unavailable)?;
        }
    }
    if !changes.alerts.is_empty() {
        let stmt = tx
            .prepare_cached(
                "INSERT INTO incident_alerts (fingerprint, status, doc) VALUES ($1, $2, $3::text::jsonb) \
                 ON CONFLICT (fingerprint) DO UPDATE SET status = EXCLUDED.status, doc = EXCLUDED.doc",
            )
            .await
            .map_err(unavailable)?;
        for a in &changes.alerts {
            let doc = serde_json::to_string(a)?;
            tx.execute(&stmt, &[&a.fingerprint, &a.status.as_str(), &doc])
                .await
                .map_err(unavailable)?;
        }
    }
    if !changes.events.is_empty() {
        let keys: Vec<&str> = changes.events.iter().map(EventKey::as_str).collect();
        tx.execute(
            "INSERT INTO incident_alert_events (event_key, received_ms) SELECT unnest($1::text[]), $2 \
             ON CONFLICT (event_key) DO NOTHING",
            &[&keys, &ms(now)],
        )
        .await
        .map_err(unavailable)?;
    }
    if !changes.outbox.is_empty() {
        let stmt = tx
            .prepare_cached(
                "INSERT INTO incident_outbox (id, incident_id, revision, channel, state, attempts, next_attempt_ms, \
                 last_error, created_ms, doc) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10::text::jsonb) \
                 ON CONFLICT DO NOTHING",
            )
            .await
            .map_err(unavailable)?;
        for o in &changes.outbox {
            let n = &o.notification;
            let doc = serde_json::to_string(n)?;
            let attempts = o.attempts as i32;
            tx.execute(
                &stmt,
                &[
                    &n.id,
                    &n.incident.id,
                    &(o.revision as i64),
                    &n.channel.as_str(),
                    &o.state.as_str(),
                    &attempts,
                    &ms(o.next_attempt_at),
                    &o.last_error,
                    &ms(n.created_at),
                    &doc,
                ],
            )
            .await
            .map_err(unavailable)?;
        }
    }
    Ok(())
}

fn from_ms(v: i64) -> DateTime<Utc> {
    DateTime::from_timestamp_millis(v).unwrap_or_default()
}

const OUTBOX_COLUMNS: &str = "revision, attempts, state, next_attempt_ms, last_error, doc::text";

fn outbox_entry(r: &tokio_postgres::Row) -> Result<OutboxEntry, IncidentError> {
    let notification: Notification = serde_json::from_str(r.get::<_, &str>(5))?;
    let state: &str = r.get(2);
    Ok(OutboxEntry {
        notification,
        revision: r.get::<_, i64>(0) as u64,
        attempts: r.get::<_, i32>(1) as u32,
        state: OutboxState::parse(state)
            .ok_or_else(|| IncidentError::Corrupt(format!("outbox state {state:?}")))?,
        next_attempt_at: from_ms(r.get(3)),
        last_error: r.get(4),
    })
}

impl IncidentStore for PostgresStore {
    fn apply_delivery(
        &self,
        payload: Arc<WebhookPayload>,
        ctx: ApplyContext,
    ) -> BoxFuture<'_, Result<Changes, IncidentError>> {
        Box::pin(async move {
            let mut client = self.client().await?;
            let tx = client.transaction().await.map_err(unavailable)?;
            let (keys, fingerprints, events) = engine::touched(&payload, &ctx.policy);
            let keys: Vec<String> = keys.into_iter().collect();
            // Serialise writers per key: the rows exist (unique key) and are locked in sorted order.
            tx.execute(
                "INSERT INTO incident_keys (incident_key) SELECT unnest($1::text[]) ON CONFLICT DO NOTHING",
                &[&keys],
            )
            .await
            .map_err(unavailable)?;
            tx.query(
                "SELECT incident_key FROM incident_keys WHERE incident_key = ANY($1) ORDER BY incident_key FOR UPDATE",
                &[&keys],
            )
            .await
            .map_err(unavailable)?;
            let mut snapshot = Snapshot::default();
            for row in tx
                .query(
                    "SELECT DISTINCT ON (incident_key) incident_key, doc::text FROM incidents \
                     WHERE incident_key = ANY($1) ORDER BY incident_key, id DESC",
                    &[&keys],
                )
                .await
                .map_err(unavailable)?
            {
                snapshot
                    .incidents
                    .insert(row.get(0), serde_json::from_str(row.get::<_, &str>(1))?);
            }
            let fps: Vec<String> = fingerprints.into_iter().collect();
            for row in tx
                .query("SELECT fingerprint, doc::text FROM incident_alerts WHERE fingerprint = ANY($1)", &[&fps])
                .await
                .map_err(unavailable)?
            {
                snapshot.alerts.insert(row.get(0), serde_json::from_str(row.get::<_, &str>(1))?);
            }
            let event_texts: Vec<&str> = events.iter().map(EventKey::as_str).collect();
            let seen: std::collections::HashSet<String> = tx
                .query(
                    "SELECT event_key FROM incident_alert_events WHERE event_key = ANY($1)",
                    &[&event_texts],
                )
                .await
                .map_err(unavailable)?
                .iter()
                .map(|r| r.get(0))
                .collect();
            snapshot.seen = events
                .into_iter()
                .filter(|e| seen.contains(e.as_str()))
                .collect();
            let changes = engine::apply_delivery(&mut snapshot, &payload, &ctx);
            if !changes.is_empty() {
                write_changes(&tx, &changes, ctx.now).await?;
            }
            tx.commit().await.map_err(unavailable)?;
            Ok(changes)
        })
    }

    fn create(
        &self,
        new: NewIncident,
        actor: Actor,
        ctx: ApplyContext,
    ) -> BoxFuture<'_, Result<(Incident, Changes), IncidentError>> {
        Box::pin(async move {
            let changes = engine::create_manual(&new, &actor, &ctx);
            let mut client = self.client().await?;
            let tx = client.transaction().await.map_err(unavailable)?;
            write_changes(&tx, &changes, ctx.now).await?;
            tx.commit().await.map_err(unavailable)?;
            Ok((changes.incidents[0].clone(), changes))
        })
    }

    fn apply_op(
        &self,
        id: String,
        op: IncidentOp,
        actor: Actor,
        ctx: ApplyContext,
    ) -> BoxFuture<'_, Result<(Incident, Changes), IncidentError>> {
        Box::pin(async move {
            let mut client = self.client().await?;
            let tx = client.transaction().await.map_err(unavailable)?;
            let mut incident = load_incident(&tx, &id, true)
                .await?
                .ok_or_else(|| IncidentError::NotFound(id.clone()))?;
            let changes = engine::apply_op(&mut incident, &op, &actor, &ctx)?;
            write_changes(&tx, &changes, ctx.now).await?;
            tx.commit().await.map_err(unavailable)?;
            Ok((incident, changes))
        })
    }

    fn get(&self, id: String) -> BoxFuture<'_, Result<Option<Incident>, IncidentError>> {
        Box::pin(async move {
            let client = self.client().await?;
            let row = client
                .query_opt("SELECT doc::text FROM incidents WHERE id = $1", &[&id])
                .await
                .map_err(unavailable)?;
            row.map(|r| serde_json::from_str(r.get::<_, &str>(0)).map_err(IncidentError::from))
                .transpose()
        })
    }

    fn list(&self, query: IncidentQuery) -> BoxFuture<'_, Result<IncidentPage, IncidentError>> {
        Box::pin(async move {
            let client = self.client().await?;
            let (sql, values) = super::sql_list("doc::text", &query, |n| format!("${n}"));
            let args: Vec<Box<dyn ToSql + Sync + Send>> = values
                .into_iter()
                .map(|v| -> Box<dyn ToSql + Sync + Send> {
                    match v {
                        super::SqlValue::Text(t) => Box::new(t),
                        super::SqlValue::Integer(i) => Box::new(i),
                    }
                })
                .collect();
            let params: Vec<&(dyn ToSql + Sync)> = args
                .iter()
                .map(|b| b.as_ref() as &(dyn ToSql + Sync))
                .collect();
            let rows = client.query(&sql, &params).await.map_err(unavailable)?;
            let items = rows
                .iter()
                .map(|r| serde_json::from_str(r.get::<_, &str>(0)).map_err(IncidentError::from))
                .collect::<Result<Vec<Incident>, _>>()?;
            Ok(page_from(items, query.limit))
        })
    }

    fn open_counts(&self) -> BoxFuture<'_, Result<Vec<(Severity, u64)>, IncidentError>> {
        Box::pin(async move {
            let client = self.client().await?;
            let rows = client
                .query(
                    "SELECT severity, count(*) FROM incidents WHERE status <> 'resolved' GROUP BY severity",
                    &[],
                )
                .await
                .map_err(unavailable)?;
            let mut out = BTreeMap::new();
            for r in rows {
                if let Ok(s) = r.get::<_, &str>(0).parse::<Severity>() {
                    out.insert(s, r.get::<_, i64>(1) as u64);
                }
            }
            Ok(out.into_iter().collect())
        })
    }

    fn firing_alerts(&self) -> BoxFuture<'_, Result<Vec<AlertRecord>, IncidentError>> {
        Box::pin(async move {
            let client = self.client().await?;
            let mut out = Vec::new();
            for r in client
                .query(
                    "SELECT doc::text FROM incident_alerts WHERE status = 'firing'",
                    &[],
                )
                .await
                .map_err(unavailable)?
            {
                out.push(serde_json::from_str::<AlertRecord>(r.get::<_, &str>(0))?);
            }
            for r in client
                .query(
                    "SELECT doc::text FROM incidents WHERE status <> 'resolved'",
                    &[],
                )
                .await
                .map_err(unavailable)?
            {
                let incident: Incident = serde_json::from_str(r.get::<_, &str>(0))?;
                out.extend(
                    incident
                        .alerts
                        .into_iter()
                        .filter(|a| a.status == AlertStatus::Firing),
                );
            }
            Ok(out)
        })
    }

    fn claim_outbox(
        &self,
        now: DateTime<Utc>,
        lease: Duration,
        limit: usize,
    ) -> BoxFuture<'_, Result<Vec<OutboxEntry>, IncidentError>> {
        Box::pin(async move {
            let client = self.client().await?;
            let rows = client
                .query(
                    &format!(
                        "UPDATE incident_outbox SET attempts = attempts + 1, next_attempt_ms = $1 WHERE id IN \
                         (SELECT id FROM incident_outbox WHERE state = 'pending' AND next_attempt_ms <= $2 \
                         ORDER BY next_attempt_ms LIMIT $3 FOR UPDATE SKIP LOCKED) RETURNING {OUTBOX_COLUMNS}"
                    ),
                    &[&ms(lease_until(now, lease)), &ms(now), &(limit as i64)],
                )
                .await
                .map_err(unavailable)?;
            let mut entries = rows
                .iter()
                .map(outbox_entry)
                .collect::<Result<Vec<_>, _>>()?;
            entries.sort_by(|a, b| a.id().cmp(b.id()));
            Ok(entries)
        })
    }

    fn complete_outbox(
        &self,
        entry: OutboxEntry,
        result: DeliveryResult,
        now: DateTime<Utc>,
    ) -> BoxFuture<'_, Result<(), IncidentError>> {
        Box::pin(async move {
            let mut client = self.client().await?;
            let tx = client.transaction().await.map_err(unavailable)?;
            let id = entry.id().to_owned();
            match result {
                DeliveryResult::Delivered => {
                    let changed = tx
                        .execute(
                            "UPDATE incident_outbox SET state = 'delivered', last_error = NULL WHERE id = $1 AND state = 'pending'",
                            &[&id],
                        )
                        .await
                        .map_err(unavailable)?;
                    if changed == 1
                        && let Some(mut incident) =
                            load_incident(&tx, &entry.notification.incident.id, true).await?
                    {
                        incident.push(
                            now,
                            Actor::system("outbox"),
                            TimelineEvent::Notified {
                                channel: entry.notification.channel,
                            },
                        );
                        let doc = serde_json::to_string(&incident)?;
                        tx.execute(
                            "UPDATE incidents SET doc = $2::text::jsonb WHERE id = $1",
                            &[&incident.id, &doc],
                        )
                        .await
                        .map_err(unavailable)?;
                    }
                }
                DeliveryResult::Retry { at, error } => {
                    tx.execute(
                        "UPDATE incident_outbox SET next_attempt_ms = $2, last_error = $3 WHERE id = $1 AND state = 'pending'",
                        &[&id, &ms(at), &error],
                    )
                    .await
                    .map_err(unavailable)?;
                }
                DeliveryResult::Failed { error } => {
                    tx.execute(
                        "UPDATE incident_outbox SET state = 'failed', last_error = $2 WHERE id = $1 AND state = 'pending'",
                        &[&id, &error],
                    )
                    .await
                    .map_err(unavailable)?;
                }
            }
            tx.commit().await.map_err(unavailable)
        })
    }

    fn prune_events(&self, before: DateTime<Utc>) -> BoxFuture<'_, Result<u64, IncidentError>> {
        Box::pin(async move {
            let client = self.client().await?;
            client
                .execute(
                    "DELETE FROM incident_alert_events WHERE received_ms < $1",
                    &[&ms(before)],
                )
                .await
                .map_err(unavailable)
        })
    }

    fn outbox(&self) -> BoxFuture<'_, Result<Vec<OutboxEntry>, IncidentError>> {
        Box::pin(async move {
            let client = self.client().await?;
            let rows = client
                .query(
                    &format!("SELECT {OUTBOX_COLUMNS} FROM incident_outbox ORDER BY id"),
                    &[],
                )
                .await
                .map_err(unavailable)?;
            rows.iter().map(outbox_entry).collect()
        })
    }
}
