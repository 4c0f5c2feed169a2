//! The incident engine: pure functions from (stored state, alert events or an operation) to changes.
//!
//! Every store loads the state a delivery touches (incidents by key, standalone alerts by
//! fingerprint, already-seen event keys) inside its transaction, runs these functions, and
//! writes the [`Changes`] back in the same transaction, outbox entries included. Keeping the
//! logic here makes the three stores behave identically.
//!
//! Alert-driven timeline entries carry the alert's own times (`startsAt`, `endsAt`), so a
//! redelivery that arrives late cannot reorder history.

use std::collections::{BTreeSet, HashMap, HashSet};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use watchpost_core::{Priority, Severity};

use crate::alertmanager::{Alert, AlertStatus, EventKey, WebhookPayload};
use crate::model::{
    Actor, AlertRecord, Incident, IncidentSource, IncidentStatus, TimelineEvent, UpdateStatus,
};
use crate::outbox::{Notification, NotificationKind, Origin, OutboxEntry};
use crate::policy::IncidentPolicy;

/// Everything the engine needs besides the state.
#[derive(Debug, Clone)]
pub struct ApplyContext {
    /// Policies.
    pub policy: std::sync::Arc<IncidentPolicy>,
    /// The current time.
    pub now: DateTime<Utc>,
    /// The request that caused the change.
    pub origin: Option<Origin>,
}

/// The stored state one delivery touches.
#[derive(Debug, Default, Clone)]
pub struct Snapshot {
    /// The latest incident of each key.
    pub incidents: HashMap<String, Incident>,
    /// Standalone alerts (those that opened no incident) by fingerprint.
    pub alerts: HashMap<String, AlertRecord>,
    /// Event keys of the delivery already stored.
    pub seen: HashSet<EventKey>,
}

/// A state change the metrics observe.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Transition {
    /// An incident opened or reopened.
    Opened(Severity),
    /// An incident was acknowledged after this many seconds.
    Acknowledged(Severity, f64),
    /// An incident resolved after this many seconds.
    Resolved(Severity, f64),
}

/// What a store must write.
#[derive(Debug, Default, Clone)]
pub struct Changes {
    /// Incidents to insert or update (by id).
    pub incidents: Vec<Incident>,
    /// Ids among `incidents` that are new.
    pub new_incidents: HashSet<String>,
    /// Standalone alerts to insert or update (by fingerprint).
    pub alerts: Vec<AlertRecord>,
    /// Event keys to record.
    pub events: Vec<EventKey>,
    /// Outbox entries to insert.
    pub outbox: Vec<OutboxEntry>,
    /// For metrics.
    pub transitions: Vec<Transition>,
}

impl Changes {
    /// Whether no incident, alert or notification changed (event keys alone may still be recorded).
    pub fn is_noop(&self) -> bool {
        self.incidents.is_empty() && self.alerts.is_empty() && self.outbox.is_empty()
    }

    /// Whether nothing needs writing.
    pub fn is_empty(&self) -> bool {
        self.incidents.is_empty()
            && self.alerts.is_empty()
            && self.events.is_empty()
            && self.outbox.is_empty()
    }
}

/// How an incoming alert event relates to the stored alert with the same fingerprint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Progress {
    /// Older than what is stored (a late redelivery).
    Stale,
    /// What is stored already.
    Same,
    /// Newer.
    Advance,
}

fn progress(stored: &AlertRecord, incoming: &Alert) -> Progress {
    use std::cmp::Ordering::*;
    match incoming.starts_at.cmp(&stored.starts_at) {
        Less => Progress::Stale,
        Greater => Progress::Advance,
        Equal => match (stored.status, incoming.status) {
            (AlertStatus::Firing, AlertStatus::Resolved) => Progress::Advance,
            (AlertStatus::Resolved, AlertStatus::Firing) => Progress::Stale,
            _ => Progress::Same,
        },
    }
}

fn record_of(alert: &Alert, fingerprint: String, severity: Severity) -> AlertRecord {
    AlertRecord {
        fingerprint,
        status: alert.status,
        labels: alert.labels.clone(),
        annotations: alert.annotations.clone(),
        starts_at: alert.starts_at,
        ends_at: alert.ends_at,
        generator_url: alert.generator_url.clone(),
        severity,
    }
}

fn priority_of(record: &AlertRecord) -> Priority {
    record
        .labels
        .get("priority")
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| record.severity.default_priority())
}

/// The incident keys and fingerprints a delivery touches, for stores to load and lock.
pub fn touched(
    payload: &WebhookPayload,
    policy: &IncidentPolicy,
) -> (BTreeSet<String>, BTreeSet<String>, Vec<EventKey>) {
    let mut keys = BTreeSet::new();
    let mut fingerprints = BTreeSet::new();
    let mut events = Vec::with_capacity(payload.alerts.len());
    for alert in &payload.alerts {
        let fp = alert.fingerprint();
        keys.insert(policy.key_for(&fp, &alert.labels));
        events.push(alert.event_key());
        fingerprints.insert(fp);
    }
    (keys, fingerprints, events)
}

struct Run<'a> {
    snapshot: &'a mut Snapshot,
    ctx: &'a ApplyContext,
    actor: Actor,
    dirty_keys: Vec<String>,
    new_ids: HashSet<String>,
    dirty_alerts: BTreeSet<String>,
    events: Vec<EventKey>,
    notify: Vec<(String, NotificationKind)>,
    transitions: Vec<Transition>,
}

impl Run<'_> {
    fn dirty(&mut self, key: &str) {
        if !self.dirty_keys.iter().any(|k| k == key) {
            self.dirty_keys.push(key.to_owned());
        }
    }

    fn alert(&mut self, alert: &Alert) {
        let event = alert.event_key();
        if self.snapshot.seen.contains(&event) {
            return;
        }
        self.snapshot.seen.insert(event.clone());
        self.events.push(event);

        let policy = self.ctx.policy.clone();
        let fp = alert.fingerprint();
        let severity = policy.severity_of(&alert.labels);
        let key = policy.key_for(&fp, &alert.labels);
        let now = self.ctx.now;

        let Some(incident) = self.snapshot.incidents.get_mut(&key) else {
            if alert.status == AlertStatus::Firing && policy.opens(severity) {
                self.open(key, record_of(alert, fp, severity));
            } else {
                self.standalone(alert, fp, severity);
            }
            return;
        };

        let member = incident.alerts.iter().position(|a| a.fingerprint == fp);
        match alert.status {
            AlertStatus::Firing => {
                if let Some(i) = member
                    && progress(&incident.alerts[i], alert) != Progress::Advance
                {
                    return;
                }
                if incident.status.is_open() {
                    let record = record_of(alert, fp.clone(), severity);
                    match member {
                        Some(i) => incident.alerts[i] = record,
                        None => incident.alerts.push(record),
                    }
                    if severity > incident.severity {
                        incident.severity = severity;
                        incident.priority = incident.priority.min(severity.default_priority());
                    }
                    incident.push(
                        alert.starts_at,
                        self.actor.clone(),
                        TimelineEvent::AlertAdded { fingerprint: fp },
                    );
                    incident.updated_at = now;
                    self.dirty(&key);
                    return;
                }
                if member.is_none() && !policy.opens(severity) {
                    self.standalone(alert, fp, severity);
                    return;
                }
                let resolved_at = incident.resolved_at.unwrap_or(incident.started_at);
                let window = chrono::Duration::from_std(policy.reopen_window)
                    .unwrap_or(chrono::Duration::MAX);
                if alert.starts_at <= resolved_at + window {
                    self.reopen(&key, record_of(alert, fp, severity), member);
                } else {
                    self.open(key, record_of(alert, fp, severity));
                }
            }
            AlertStatus::Resolved => {
                let Some(i) = member else {
                    self.standalone(alert, fp, severity);
                    return;
                };
                if progress(&incident.alerts[i], alert) != Progress::Advance {
                    return;
                }
                let at = alert.ends_at.unwrap_or(now);
                let record = &mut incident.alerts[i];
                record.status = AlertStatus::Resolved;
                record.starts_at = alert.starts_at;
                record.ends_at = Some(at);
                incident.push(
                    at,
                    self.actor.clone(),
                    TimelineEvent::AlertResolved { fingerprint: fp },
                );
                incident.updated_at = now;
                let resolves = match policy.resolve {
                    crate::policy::ResolvePolicy::Any => true,
                    crate::policy::ResolvePolicy::All => incident
                        .alerts
                        .iter()
                        .all(|a| a.status == AlertStatus::Resolved),
                };
                if incident.status.is_open() && resolves {
                    incident.mark_resolved(at, self.actor.clone());
                    self.transitions.push(Transition::Resolved(
                        incident.severity,
                        incident.time_to_resolve_seconds.unwrap_or(0) as f64,
                    ));
                    if incident.notified {
                        self.notify.push((key.clone(), NotificationKind::Resolve));
                    }
                }
                self.dirty(&key);
            }
        }
    }

    /// Applies the maintenance policy to an opening or reopening incident; true when it may notify.
    fn unmuted(
        &self,
        incident: &mut Incident,
        labels: &crate::alertmanager::LabelSet,
        at: DateTime<Utc>,
    ) -> bool {
        if let Some(window) = self.ctx.policy.muting_window(labels, self.ctx.now) {
            incident.muted = true;
            incident.push(
                at,
                Actor::system("maintenance"),
                TimelineEvent::Muted {
                    window: window.name.clone(),
                },
            );
            false
        } else {
            incident.notified = true;
            true
        }
    }

    fn open(&mut self, key: String, record: AlertRecord) {
        let now = self.ctx.now;
        let at = record.starts_at;
        let mut incident = Incident {
            id: uuid::Uuid::now_v7().to_string(),
            key: key.clone(),
            title: record
                .annotations
                .get("summary")
                .or_else(|| record.labels.get("alertname"))
                .cloned()
                .unwrap_or_else(|| format!("Alert {}", record.fingerprint)),
            description: record.annotations.get("description").cloned(),
            severity: record.severity,
            priority: priority_of(&record),
            service: record.labels.get("service").cloned(),
            runbook_url: record.annotations.get("runbook_url").cloned(),
            status: IncidentStatus::Triggered,
            partial: false,
            muted: false,
            notified: false,
            source: IncidentSource::Alertmanager,
            started_at: at,
            acknowledged_at: None,
            resolved_at: None,
            updated_at: now,
            time_to_acknowledge_seconds: None,
            time_to_resolve_seconds: None,
            revision: 0,
            alerts: Vec::new(),
            alert_count: 0,
            timeline: Vec::new(),
        };
        incident.push(at, self.actor.clone(), TimelineEvent::Triggered);
        incident.push(
            at,
            self.actor.clone(),
            TimelineEvent::AlertAdded {
                fingerprint: record.fingerprint.clone(),
            },
        );
        let labels = record.labels.clone();
        incident.alerts.push(record);
        if self.unmuted(&mut incident, &labels, at) {
            self.notify.push((key.clone(), NotificationKind::Trigger));
        }
        self.transitions.push(Transition::Opened(incident.severity));
        self.new_ids.insert(incident.id.clone());
        self.snapshot.incidents.insert(key.clone(), incident);
        self.dirty(&key);
    }

    fn reopen(&mut self, key: &str, record: AlertRecord, member: Option<usize>) {
        let now = self.ctx.now;
        let Some(mut incident) = self.snapshot.incidents.remove(key) else {
            return;
        };
        let at = record.starts_at;
        incident.status = IncidentStatus::Triggered;
        incident.resolved_at = None;
        incident.acknowledged_at = None;
        incident.time_to_acknowledge_seconds = None;
        incident.time_to_resolve_seconds = None;
        incident.updated_at = now;
        incident.push(at, self.actor.clone(), TimelineEvent::Reopened);
        incident.push(
            at,
            self.actor.clone(),
            TimelineEvent::AlertAdded {
                fingerprint: record.fingerprint.clone(),
            },
        );
        let labels = record.labels.clone();
        match member {
            Some(i) => incident.alerts[i] = record,
            None => incident.alerts.push(record),
        }
        if self.unmuted(&mut incident, &labels, at) {
            self.notify.push((key.to_owned(), NotificationKind::Reopen));
        }
        self.transitions.push(Transition::Opened(incident.severity));
        self.snapshot.incidents.insert(key.to_owned(), incident);
        self.dirty(key);
    }

    fn standalone(&mut self, alert: &Alert, fp: String, severity: Severity) {
        if let Some(stored) = self.snapshot.alerts.get(&fp)
            && progress(stored, alert) != Progress::Advance
        {
            return;
        }
        let mut record = record_of(alert, fp.clone(), severity);
        if record.status == AlertStatus::Resolved && record.ends_at.is_none() {
            record.ends_at = Some(self.ctx.now);
        }
        self.snapshot.alerts.insert(fp.clone(), record);
        self.dirty_alerts.insert(fp);
    }
}

/// Builds the outbox entries for one change and bumps the incident's revision.
pub fn enqueue(
    incident: &mut Incident,
    kind: NotificationKind,
    ctx: &ApplyContext,
) -> Vec<OutboxEntry> {
    let channels = ctx.policy.routing.channels(incident.severity);
    if channels.is_empty() {
        return Vec::new();
    }
    incident.revision += 1;
    channels
        .iter()
        .map(|channel| {
            OutboxEntry::new(
                Notification::new(kind, *channel, incident, ctx.origin.clone(), ctx.now),
                incident.revision,
            )
        })
        .collect()
}

/// Applies one webhook delivery to `snapshot`; returns what to write.
pub fn apply_delivery(
    snapshot: &mut Snapshot,
    payload: &WebhookPayload,
    ctx: &ApplyContext,
) -> Changes {
    let mut run = Run {
        snapshot,
        ctx,
        actor: Actor::alertmanager(&payload.receiver),
        dirty_keys: Vec::new(),
        new_ids: HashSet::new(),
        dirty_alerts: BTreeSet::new(),
        events: Vec::new(),
        notify: Vec::new(),
        transitions: Vec::new(),
    };
    for alert in &payload.alerts {
        run.alert(alert);
    }
    if payload.truncated_alerts > 0 {
        for alert in &payload.alerts {
            let key = ctx.policy.key_for(&alert.fingerprint(), &alert.labels);
            if let Some(incident) = run.snapshot.incidents.get_mut(&key)
                && !incident.partial
            {
                incident.partial = true;
                incident.updated_at = ctx.now;
                incident.push(
                    ctx.now,
                    run.actor.clone(),
                    TimelineEvent::Partial {
                        truncated_alerts: payload.truncated_alerts,
                    },
                );
                run.dirty(&key);
            }
        }
    }
    for key in &run.dirty_keys {
        if let Some(incident) = run.snapshot.incidents.get_mut(key) {
            incident.alert_count = incident.alerts.len();
        }
    }
    let mut outbox = Vec::new();
    for (key, kind) in std::mem::take(&mut run.notify) {
        if let Some(incident) = run.snapshot.incidents.get_mut(&key) {
            outbox.extend(enqueue(incident, kind, ctx));
        }
    }
    Changes {
        incidents: run
            .dirty_keys
            .iter()
            .filter_map(|k| run.snapshot.incidents.get(k).cloned())
            .collect(),
        new_incidents: run.new_ids,
        alerts: run
            .dirty_alerts
            .iter()
            .filter_map(|fp| run.snapshot.alerts.get(fp).cloned())
            .collect(),
        events: run.events,
        outbox,
        transitions: run.transitions,
    }
}

/// A change a person (or the worker) makes to one incident.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum IncidentOp {
    /// Acknowledge.
    Acknowledge,
    /// Resolve by hand.
    Resolve,
    /// Post a status update.
    Update {
        /// Stage.
        status: UpdateStatus,
        /// Text.
        note: String,
    },
    /// Record that a notification went out (the worker).
    Notified {
        /// The channel.
        channel: crate::model::Channel,
    },
}

impl IncidentOp {
    /// A bounded label naming the operation.
    pub fn as_str(&self) -> &'static str {
        match self {
            IncidentOp::Acknowledge => "acknowledge",
            IncidentOp::Resolve => "resolve",
            IncidentOp::Update { .. } => "update",
            IncidentOp::Notified { .. } => "notified",
        }
    }
}

/// Why an operation was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OpError {
    /// A resolved incident cannot be acknowledged.
    #[error("incident is resolved; it cannot be acknowledged")]
    Resolved,
}

/// Applies `op` to `incident`; returns the changes to write (empty when the op changes nothing).
pub fn apply_op(
    incident: &mut Incident,
    op: &IncidentOp,
    actor: &Actor,
    ctx: &ApplyContext,
) -> Result<Changes, OpError> {
    let now = ctx.now;
    let mut changes = Changes::default();
    let kind = match op {
        IncidentOp::Acknowledge => match incident.status {
            IncidentStatus::Resolved => return Err(OpError::Resolved),
            IncidentStatus::Acknowledged => return Ok(changes),
            IncidentStatus::Triggered => {
                incident.status = IncidentStatus::Acknowledged;
                incident.acknowledged_at = Some(now);
                let secs = (now - incident.started_at).num_seconds().max(0);
                incident.time_to_acknowledge_seconds = Some(secs);
                incident.push(now, actor.clone(), TimelineEvent::Acknowledged);
                changes
                    .transitions
                    .push(Transition::Acknowledged(incident.severity, secs as f64));
                Some(NotificationKind::Acknowledge)
            }
        },
        IncidentOp::Resolve => {
            if !incident.status.is_open() {
                return Ok(changes);
            }
            incident.mark_resolved(now, actor.clone());
            changes.transitions.push(Transition::Resolved(
                incident.severity,
                incident.time_to_resolve_seconds.unwrap_or(0) as f64,
            ));
            Some(NotificationKind::Resolve)
        }
        IncidentOp::Update { status, note } => {
            incident.push(
                now,
                actor.clone(),
                TimelineEvent::Update {
                    status: *status,
                    note: note.clone(),
                },
            );
            Some(NotificationKind::Update)
        }
        IncidentOp::Notified { channel } => {
            incident.push(
                now,
                actor.clone(),
                TimelineEvent::Notified { channel: *channel },
            );
            None
        }
    };
    incident.updated_at = now;
    if let Some(kind) = kind
        && incident.notified
    {
        changes.outbox = enqueue(incident, kind, ctx);
    }
    changes.incidents.push(incident.clone());
    Ok(changes)
}

/// A manual incident, as `POST /incidents` takes it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct NewIncident {
    /// Title.
    pub title: String,
    /// Description.
    #[serde(default)]
    pub description: Option<String>,
    /// Severity (default critical).
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<String>))]
    pub severity: Option<Severity>,
    /// Priority (default from severity).
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<String>))]
    pub priority: Option<Priority>,
    /// Affected service (status page component).
    #[serde(default)]
    pub service: Option<String>,
    /// Runbook link.
    #[serde(default)]
    pub runbook_url: Option<String>,
}

/// Builds a manual incident and its opening notifications.
pub fn create_manual(new: &NewIncident, actor: &Actor, ctx: &ApplyContext) -> Changes {
    let now = ctx.now;
    let severity = new.severity.unwrap_or(Severity::Critical);
    let id = uuid::Uuid::now_v7().to_string();
    let mut incident = Incident {
        key: format!("manual:{id}"),
        id,
        title: new.title.clone(),
        description: new.description.clone(),
        severity,
        priority: new.priority.unwrap_or(severity.default_priority()),
        service: new.service.clone(),
        runbook_url: new.runbook_url.clone(),
        status: IncidentStatus::Triggered,
        partial: false,
        muted: false,
        notified: true,
        source: IncidentSource::Manual,
        started_at: now,
        acknowledged_at: None,
        resolved_at: None,
        updated_at: now,
        time_to_acknowledge_seconds: None,
        time_to_resolve_seconds: None,
        revision: 0,
        alerts: Vec::new(),
        alert_count: 0,
        timeline: Vec::new(),
    };
    incident.push(now, actor.clone(), TimelineEvent::Triggered);
    let mut changes = Changes {
        outbox: enqueue(&mut incident, NotificationKind::Trigger, ctx),
        transitions: vec![Transition::Opened(severity)],
        ..Changes::default()
    };
    changes.new_incidents.insert(incident.id.clone());
    changes.incidents.push(incident);
    changes
}
