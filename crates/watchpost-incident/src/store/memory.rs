//! [`MemoryStore`]: the incident store in process memory (tests, demos, a single replica that may lose data on restart).

use std::collections::{BTreeMap, HashMap, HashSet};
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
use crate::model::{Actor, AlertRecord, Incident};
use crate::outbox::{DeliveryResult, OutboxEntry, OutboxState};

#[derive(Debug, Default)]
struct State {
    incidents: HashMap<String, Incident>,
    latest_by_key: HashMap<String, String>,
    alerts: HashMap<String, AlertRecord>,
    events: HashMap<EventKey, DateTime<Utc>>,
    outbox: BTreeMap<String, OutboxEntry>,
    outbox_unique: HashSet<(String, u64, crate::model::Channel)>,
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
            self.incidents.insert(incident.id.clone(), incident.clone());
        }
        for alert in &changes.alerts {
            self.alerts.insert(alert.fingerprint.clone(), alert.clone());
        }
        self.events
            .extend(changes.events.iter().map(|e| (e.clone(), now)));
        for entry in &changes.outbox {
            let unique = (
                entry.notification.incident.id.clone(),
                entry.revision,
                entry.notification.channel,
            );
            if self.outbox_unique.insert(unique) {
                self.outbox.insert(entry.id().to_owned(), entry.clone());
            }
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
                    snapshot.incidents.insert(key, i.clone());
                }
            }
            for fp in fingerprints {
                if let Some(a) = state.alerts.get(&fp) {
                    snapshot.alerts.insert(fp, a.clone());
                }
            }
            snapshot.seen = events
                .into_iter()
                .filter(|e| state.events.contains_key(e))
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
                .cloned()
                .ok_or_else(|| IncidentError::NotFound(id.clone()))?;
            let changes = engine::apply_op(&mut incident, &op, &actor, &ctx)?;
            state.write(&changes, ctx.now);
            Ok((incident, changes))
        })
    }

    fn get(&self, id: String) -> BoxFuture<'_, Result<Option<Incident>, IncidentError>> {
        Box::pin(async move { Ok(self.lock().incidents.get(&id).cloned()) })
    }

    fn list(&self, query: IncidentQuery) -> BoxFuture<'_, Result<IncidentPage, IncidentError>> {
        Box::pin(async move {
            let state = self.lock();
            let mut items: Vec<Incident> = state
                .incidents
                .values()
                .filter(|i| matches(&query, i))
                .cloned()
                .collect();
            items.sort_by(|a, b| {
                b.started_at
                    .cmp(&a.started_at)
                    .then_with(|| b.id.cmp(&a.id))
            });
            items.truncate(query.limit + 1);
            Ok(page_from(items, query.limit))
        })
    }

    fn open_counts(&self) -> BoxFuture<'_, Result<Vec<(Severity, u64)>, IncidentError>> {
        Box::pin(async move {
            let state = self.lock();
            let mut counts: BTreeMap<Severity, u64> = BTreeMap::new();
            for i in state.incidents.values().filter(|i| i.status.is_open()) {
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
                        i.alerts
                            .iter()
                            .filter(|a| a.status == AlertStatus::Firing)
                            .cloned(),
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
                .outbox
                .values_mut()
                .filter(|e| e.state == OutboxState::Pending && e.next_attempt_at <= now)
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
            let Some(stored) = state.outbox.get_mut(entry.id()) else {
                return Err(IncidentError::NotFound(entry.id().to_owned()));
            };
            if stored.state != OutboxState::Pending {
                // Already settled (another worker after a lease expiry): record nothing twice.
                return Ok(());
            }
            match result {
                DeliveryResult::Delivered => {
                    stored.state = OutboxState::Delivered;
                    stored.last_error = None;
                    let id = entry.notification.incident.id.clone();
                    if let Some(incident) = state.incidents.get_mut(&id) {
                        incident.push(
                            now,
                            Actor::system("outbox"),
                            crate::model::TimelineEvent::Notified {
                                channel: entry.notification.channel,
                            },
                        );
                    }
                }
                DeliveryResult::Retry { at, error } => {
                    stored.next_attempt_at = at;
                    stored.last_error = Some(error);
                }
                DeliveryResult::Failed { error } => {
                    stored.state = OutboxState::Failed;
                    stored.last_error = Some(error);
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
            let mut all: Vec<OutboxEntry> = state.outbox.values().cloned().collect();
            all.sort_by(|a, b| a.id().cmp(b.id()));
            Ok(all)
        })
    }
}
