//! [`MemoryStore`]: the incident store in process memory (tests, demos, a single replica that may lose data on restart).

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};
use watchpost_core::Severity;

use super::{
    BoxFuture, IncidentPage, IncidentQuery, IncidentStore, lease_until, matches, page_from,
};
use crate::alertmanager::{AlertStatus, EventKey, WebhookPayload};
use crate::engine::{self, ApplyContext, Changes, IncidentOp, NewIncident, Snapshot};
use crate::error::IncidentError;
use crate::model::{Actor, AlertRecord, Channel, Incident};
use crate::outbox::{DeliveryResult, Notification, NotificationKind, OutboxEntry, OutboxState};

/// A canonical (hyphenated, lower-case) UUID as 16 bytes; `None` for any other text.
fn uuid_bits(id: &str) -> Option<u128> {
    uuid::Uuid::try_parse(id)
        .ok()
        .filter(|u| u.hyphenated().to_string() == id)
        .map(|u| u.as_u128())
}

fn uuid_text(bits: u128) -> String {
    uuid::Uuid::from_u128(bits).hyphenated().to_string()
}

/// A time as nanoseconds since the epoch (exact until 2262).
fn nanos(t: DateTime<Utc>) -> i64 {
    t.timestamp_nanos_opt().unwrap_or(i64::MAX)
}

/// A delivered or failed outbox row without its notification snapshot: it is never sent again,
/// so only its identity and outcome are kept (80 bytes instead of a copy of the incident).
#[derive(Debug, Clone)]
struct SettledRow {
    id: u128,
    incident_id: u128,
    revision: u64,
    created_ns: i64,
    next_attempt_ns: i64,
    last_error: Option<Box<str>>,
    attempts: u32,
    channel: Channel,
    kind: NotificationKind,
    state: OutboxState,
}

/// The SHA-256 digest an [`EventKey`] spells in hex, as 32 bytes (half the memory of the text).
fn event_digest(event: &EventKey) -> [u8; 32] {
    let mut out = [0u8; 32];
    if hex::decode_to_slice(event.as_str(), &mut out).is_err() {
        use sha2::Digest as _;
        out.copy_from_slice(&sha2::Sha256::digest(event.as_str().as_bytes()));
    }
    out
}

/// Stands in for an incident the store no longer has (it never deletes any; kept total).
fn unknown_incident(id: String, at: DateTime<Utc>) -> Incident {
    Incident {
        key: format!("unknown:{id}"),
        id,
        title: String::new(),
        description: None,
        severity: Severity::Critical,
        priority: Severity::Critical.default_priority(),
        service: None,
        runbook_url: None,
        status: crate::model::IncidentStatus::Resolved,
        partial: false,
        muted: false,
        notified: true,
        source: crate::model::IncidentSource::Manual,
        started_at: at,
        acknowledged_at: None,
        resolved_at: None,
        updated_at: at,
        time_to_acknowledge_seconds: None,
        time_to_resolve_seconds: None,
        revision: 0,
        alerts: Vec::new(),
        alert_count: 0,
        timeline: Vec::new(),
    }
}

/// An incident as the memory store keeps it: the summary and timeline as they are, the alerts as
/// compact JSON. A label set is a `BTreeMap` whose every node has room for eleven pairs (more
/// than half a kilobyte for an alert's four labels); the JSON is a quarter of that, and only
/// incidents that are read or changed are decoded.
#[derive(Debug)]
struct StoredIncident {
    /// Every field but `alerts` (empty here).
    summary: Incident,
    /// `summary.alerts` as JSON.
    alerts: Box<str>,
}

impl StoredIncident {
    fn new(incident: &Incident) -> Self {
        let alerts = serde_json::to_string(&incident.alerts)
            .unwrap_or_else(|_| "[]".to_owned())
            .into_boxed_str();
        let mut summary = Incident {
            alerts: Vec::new(),
            timeline: Vec::with_capacity(incident.timeline.len()),
            ..incident.clone_summary()
        };
        summary.alert_count = incident.alert_count;
        summary.timeline.extend(incident.timeline.iter().cloned());
        Self { summary, alerts }
    }

    fn alerts(&self) -> Vec<AlertRecord> {
        serde_json::from_str(&self.alerts).unwrap_or_default()
    }

    /// The whole incident, alerts decoded.
    fn full(&self) -> Incident {
        let mut incident = self.summary.clone();
        incident.alerts = self.alerts();
        incident
    }

    /// The summary as a notification snapshot carries it.
    fn clone_summary(&self) -> Incident {
        let mut incident = self.summary.clone_summary();
        incident.alert_count = self.summary.alert_count;
        incident
    }
}

#[derive(Debug, Default)]
struct State {
    incidents: HashMap<String, StoredIncident>,
    latest_by_key: HashMap<String, String>,
    alerts: HashMap<String, AlertRecord>,
    events: HashMap<[u8; 32], DateTime<Utc>>,
    /// Rows still to deliver, with the notification they carry.
    pending: BTreeMap<String, OutboxEntry>,
    /// Rows delivered or given up, compacted.
    settled: Vec<SettledRow>,
    /// Rows delivered or given up whose ids are not UUIDs (none this store makes), whole.
    settled_whole: Vec<OutboxEntry>,
}

impl State {
    fn write(&mut self, changes: &Changes, now: DateTime<Utc>) {
        for incident in &changes.incidents {
            let newer = self
                .latest_by_key
                .get(&incident.key)
                .is_none_or(|id| id.as_str() <= incident.id.as_str());
            if newer {
                self.latest_by_key
                    .insert(incident.key.clone(), incident.id.clone());
            }
            self.incidents
                .insert(incident.id.clone(), StoredIncident::new(incident));
        }
        for alert in &changes.alerts {
            self.alerts.insert(alert.fingerprint.clone(), alert.clone());
        }
        self.events
            .extend(changes.events.iter().map(|e| (event_digest(e), now)));
        // Rows are unique per (incident, revision, channel) without a separate index here: every
        // write runs under the one lock and the engine bumps an incident's revision for each
        // change that notifies, so a pair can never be written twice.
        for entry in &changes.outbox {
            self.pending.insert(entry.id().to_owned(), entry.clone());
        }
    }

    fn settle(&mut self, mut entry: OutboxEntry, state: OutboxState, last_error: Option<String>) {
        let n = &entry.notification;
        match (uuid_bits(&n.id), uuid_bits(&n.incident.id)) {
            (Some(id), Some(incident_id)) => self.settled.push(SettledRow {
                id,
                incident_id,
                revision: entry.revision,
                created_ns: nanos(n.created_at),
                next_attempt_ns: nanos(entry.next_attempt_at),
                last_error: last_error.map(String::into_boxed_str),
                attempts: entry.attempts,
                channel: n.channel,
                kind: n.kind,
                state,
            }),
            // Ids this store did not make: keep the row whole.
            _ => {
                entry.state = state;
                entry.last_error = last_error;
                self.settled_whole.push(entry);
            }
        }
    }

    fn is_settled(&self, id: &str) -> bool {
        match uuid_bits(id) {
            Some(bits) => self.settled.iter().any(|row| row.id == bits),
            None => self.settled_whole.iter().any(|e| e.id() == id),
        }
    }

    /// A settled row as an [`OutboxEntry`]; its snapshot is the incident as it is now.
    fn expand(&self, row: &SettledRow) -> OutboxEntry {
        let incident_id = uuid_text(row.incident_id);
        let created_at = DateTime::from_timestamp_nanos(row.created_ns);
        let incident = self
            .incidents
            .get(&incident_id)
            .map(StoredIncident::clone_summary)
            .unwrap_or_else(|| unknown_incident(incident_id, created_at));
        OutboxEntry {
            notification: Notification {
                id: uuid_text(row.id),
                kind: row.kind,
                channel: row.channel,
                incident,
                origin: None,
                created_at,
            },
            revision: row.revision,
            attempts: row.attempts,
            state: row.state,
            next_attempt_at: DateTime::from_timestamp_nanos(row.next_attempt_ns),
            last_error: row.last_error.as_deref().map(str::to_owned),
        }
    }
}

/// The incident store in memory; cloning shares the data.
#[derive(Debug, Clone, Default)]
pub struct MemoryStore {
    state: Arc<Mutex<State>>,
}

impl MemoryStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl IncidentStore for MemoryStore {
    fn apply_delivery(
        &self,
        payload: Arc<WebhookPayload>,
        ctx: ApplyContext,
    ) -> BoxFuture<'_, Result<Changes, IncidentError>> {
        Box::pin(async move {
            let mut state = self.lock();
            let (keys, fingerprints, events) = engine::touched(&payload, &ctx.policy);
            let mut snapshot = Snapshot::default();
            for key in keys {
                if let Some(i) = state
                    .latest_by_key
                    .get(&key)
                    .and_then(|id| state.incidents.get(id))
                {
                    snapshot.incidents.insert(key, i.full());
                }
            }
            for fp in fingerprints {
                if let Some(a) = state.alerts.get(&fp) {
                    snapshot.alerts.insert(fp, a.clone());
                }
            }
            snapshot.seen = events
                .into_iter()
                .filter(|e| state.events.contains_key(&event_digest(e)))
                .collect();
            let changes = engine::apply_delivery(&mut snapshot, &payload, &ctx);
            state.write(&changes, ctx.now);
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
            self.lock().write(&changes, ctx.now);
            let incident = changes.incidents[0].clone();
            Ok((incident, changes))
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
            let mut state = self.lock();
            let mut incident = state
                .incidents
                .get(&id)
                .map(StoredIncident::full)
                .ok_or_else(|| IncidentError::NotFound(id.clone()))?;
            let changes = engine::apply_op(&mut incident, &op, &actor, &ctx)?;
            state.write(&changes, ctx.now);
            Ok((incident, changes))
        })
    }

    fn get(&self, id: String) -> BoxFuture<'_, Result<Option<Incident>, IncidentError>> {
        Box::pin(async move { Ok(self.lock().incidents.get(&id).map(StoredIncident::full)) })
    }

    fn list(&self, query: IncidentQuery) -> BoxFuture<'_, Result<IncidentPage, IncidentError>> {
        Box::pin(async move {
            let state = self.lock();
            let mut found: Vec<&StoredIncident> = state
                .incidents
                .values()
                .filter(|i| matches(&query, &i.summary))
                .collect();
            found.sort_by(|a, b| {
                b.summary
                    .started_at
                    .cmp(&a.summary.started_at)
                    .then_with(|| b.summary.id.cmp(&a.summary.id))
            });
            let items = found
                .into_iter()
                .take(query.limit + 1)
                .map(StoredIncident::full)
                .collect();
            Ok(page_from(items, query.limit))
        })
    }

    fn open_counts(&self) -> BoxFuture<'_, Result<Vec<(Severity, u64)>, IncidentError>> {
        Box::pin(async move {
            let state = self.lock();
            let mut counts: BTreeMap<Severity, u64> = BTreeMap::new();
            for i in state.incidents.values().map(|i| &i.summary) {
                if !i.status.is_open() {
                    continue;
                }
                *counts.entry(i.severity).or_default() += 1;
            }
            Ok(counts.into_iter().collect())
        })
    }

    fn firing_alerts(&self) -> BoxFuture<'_, Result<Vec<AlertRecord>, IncidentError>> {
        Box::pin(async move {
            let state = self.lock();
            let mut out: Vec<AlertRecord> = state
                .alerts
                .values()
                .filter(|a| a.status == AlertStatus::Firing)
                .cloned()
                .collect();
            for id in state.latest_by_key.values() {
                if let Some(i) = state.incidents.get(id) {
                    out.extend(
                        i.alerts()
                            .into_iter()
                            .filter(|a| a.status == AlertStatus::Firing),
                    );
                }
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
            let mut state = self.lock();
            let mut due: Vec<&mut OutboxEntry> = state
                .pending
                .values_mut()
                .filter(|e| e.next_attempt_at <= now)
                .collect();
            due.sort_by_key(|e| e.next_attempt_at);
            Ok(due
                .into_iter()
                .take(limit)
                .map(|e| {
                    e.attempts += 1;
                    e.next_attempt_at = lease_until(now, lease);
                    e.clone()
                })
                .collect())
        })
    }

    fn complete_outbox(
        &self,
        entry: OutboxEntry,
        result: DeliveryResult,
        now: DateTime<Utc>,
    ) -> BoxFuture<'_, Result<(), IncidentError>> {
        Box::pin(async move {
            let mut state = self.lock();
            if !state.pending.contains_key(entry.id()) {
                if state.is_settled(entry.id()) {
                    // Already settled (another worker after a lease expiry): record nothing twice.
                    return Ok(());
                }
                return Err(IncidentError::NotFound(entry.id().to_owned()));
            }
            match result {
                DeliveryResult::Delivered => {
                    let Some(stored) = state.pending.remove(entry.id()) else {
                        return Ok(());
                    };
                    let id = stored.notification.incident.id.clone();
                    let channel = stored.notification.channel;
                    state.settle(stored, OutboxState::Delivered, None);
                    if let Some(stored) = state.incidents.get_mut(&id) {
                        let incident = &mut stored.summary;
                        // Grow by one: the default doubling would leave room unused in each of
                        // many long-lived incidents.
                        incident.timeline.reserve_exact(1);
                        incident.push(
                            now,
                            Actor::system("outbox"),
                            crate::model::TimelineEvent::Notified { channel },
                        );
                    }
                }
                DeliveryResult::Retry { at, error } => {
                    if let Some(stored) = state.pending.get_mut(entry.id()) {
                        stored.next_attempt_at = at;
                        stored.last_error = Some(error);
                    }
                }
                DeliveryResult::Failed { error } => {
                    if let Some(stored) = state.pending.remove(entry.id()) {
                        state.settle(stored, OutboxState::Failed, Some(error));
                    }
                }
            }
            Ok(())
        })
    }

    fn prune_events(&self, before: DateTime<Utc>) -> BoxFuture<'_, Result<u64, IncidentError>> {
        Box::pin(async move {
            let mut state = self.lock();
            let n = state.events.len();
            state.events.retain(|_, at| *at >= before);
            Ok((n - state.events.len()) as u64)
        })
    }

    fn outbox(&self) -> BoxFuture<'_, Result<Vec<OutboxEntry>, IncidentError>> {
        Box::pin(async move {
            let state = self.lock();
            let mut all: Vec<OutboxEntry> = state.pending.values().cloned().collect();
            all.extend(state.settled.iter().map(|row| state.expand(row)));
            all.extend(state.settled_whole.iter().cloned());
            all.sort_by(|a, b| a.id().cmp(b.id()));
            Ok(all)
        })
    }
}
