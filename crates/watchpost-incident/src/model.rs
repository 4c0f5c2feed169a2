//! The incident model: [`Incident`], its alerts, and the typed timeline ([`TimelineEntry`], [`TimelineEvent`]).

use std::borrow::Cow;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use watchpost_core::{Priority, Severity};

use crate::alertmanager::{AlertStatus, LabelSet};

/// Where an incident is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum IncidentStatus {
    /// Open and nobody has acknowledged it.
    Triggered,
    /// Open and someone is on it.
    Acknowledged,
    /// Closed (it may reopen within the reopen window).
    Resolved,
}

impl IncidentStatus {
    /// `triggered`, `acknowledged` or `resolved`.
    pub fn as_str(self) -> &'static str {
        match self {
            IncidentStatus::Triggered => "triggered",
            IncidentStatus::Acknowledged => "acknowledged",
            IncidentStatus::Resolved => "resolved",
        }
    }

    /// Parses [`IncidentStatus::as_str`] output.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "triggered" => Some(IncidentStatus::Triggered),
            "acknowledged" => Some(IncidentStatus::Acknowledged),
            "resolved" => Some(IncidentStatus::Resolved),
            _ => None,
        }
    }

    /// Whether the incident is still open.
    pub fn is_open(self) -> bool {
        self != IncidentStatus::Resolved
    }
}

/// The stage an update reports (Statuspage's words).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum UpdateStatus {
    /// The cause is being looked for.
    Investigating,
    /// The cause is known.
    Identified,
    /// A fix is in place and being watched.
    Monitoring,
}

impl UpdateStatus {
    /// `investigating`, `identified` or `monitoring`.
    pub fn as_str(self) -> &'static str {
        match self {
            UpdateStatus::Investigating => "investigating",
            UpdateStatus::Identified => "identified",
            UpdateStatus::Monitoring => "monitoring",
        }
    }
}

/// A notification channel.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum Channel {
    /// PagerDuty Events API v2.
    PagerDuty,
    /// A Slack incoming webhook.
    Slack,
    /// Email over SMTP.
    Email,
    /// A generic JSON webhook signed with HMAC-SHA256.
    Webhook,
}

impl Channel {
    /// `pagerduty`, `slack`, `email` or `webhook` (a bounded metric label).
    pub fn as_str(self) -> &'static str {
        match self {
            Channel::PagerDuty => "pagerduty",
            Channel::Slack => "slack",
            Channel::Email => "email",
            Channel::Webhook => "webhook",
        }
    }

    /// Parses [`Channel::as_str`] output.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "pagerduty" => Some(Channel::PagerDuty),
            "slack" => Some(Channel::Slack),
            "email" => Some(Channel::Email),
            "webhook" => Some(Channel::Webhook),
            _ => None,
        }
    }

    /// All channels.
    pub const ALL: [Channel; 4] = [
        Channel::PagerDuty,
        Channel::Slack,
        Channel::Email,
        Channel::Webhook,
    ];
}

/// Who did something to an incident.
///
/// The fields are `Cow`s so the fixed words (`alertmanager`, `system`, `Watchpost`, ...) that
/// every timeline entry repeats cost no allocation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Actor {
    /// `alertmanager`, `system` or `key`.
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    pub kind: Cow<'static, str>,
    /// The API key id for `key`, the receiver name for `alertmanager`.
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    pub id: Cow<'static, str>,
    /// A display name.
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    pub name: Cow<'static, str>,
}

impl Actor {
    /// Alertmanager, through the named receiver.
    pub fn alertmanager(receiver: &str) -> Self {
        Self {
            kind: Cow::Borrowed("alertmanager"),
            id: Cow::Owned(receiver.to_owned()),
            name: Cow::Borrowed("Alertmanager"),
        }
    }

    /// Watchpost itself (the outbox worker, reconciliation, maintenance windows).
    pub fn system(what: &'static str) -> Self {
        Self {
            kind: Cow::Borrowed("system"),
            id: Cow::Borrowed(what),
            name: Cow::Borrowed("Watchpost"),
        }
    }

    /// The holder of an API key.
    pub fn key(principal: &watchpost_core::Principal) -> Self {
        Self {
            kind: Cow::Borrowed("key"),
            id: Cow::Owned(principal.key_id.to_string()),
            name: Cow::Owned(principal.key_name.to_string()),
        }
    }
}

/// What happened, in one timeline entry.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum TimelineEvent {
    /// The incident opened.
    Triggered,
    /// An alert joined the incident (or fired again).
    AlertAdded {
        /// The alert's fingerprint.
        fingerprint: String,
    },
    /// An alert of the incident resolved.
    AlertResolved {
        /// The alert's fingerprint.
        fingerprint: String,
    },
    /// Someone acknowledged the incident.
    Acknowledged,
    /// A status update.
    Update {
        /// The stage.
        status: UpdateStatus,
        /// The text for readers of the status page.
        note: String,
    },
    /// A notification went out.
    Notified {
        /// The channel it went out on.
        channel: Channel,
    },
    /// Notifications were muted by a maintenance window.
    Muted {
        /// The window's name.
        window: String,
    },
    /// Alertmanager left alerts out of a delivery (`max_alerts`): the alert list may be incomplete.
    Partial {
        /// How many alerts were left out.
        truncated_alerts: u64,
    },
    /// The incident closed.
    Resolved,
    /// A resolved incident opened again inside the reopen window.
    Reopened,
}

/// One entry of an incident's timeline.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct TimelineEntry {
    /// When it happened.
    pub at: DateTime<Utc>,
    /// Who did it.
    pub actor: Actor,
    /// What happened.
    pub event: TimelineEvent,
}

/// An alert as an incident (or the standalone alert list) holds it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct AlertRecord {
    /// Alertmanager's fingerprint.
    pub fingerprint: String,
    /// Current status.
    pub status: AlertStatus,
    /// Identifying labels.
    #[cfg_attr(feature = "openapi", schema(value_type = Object))]
    pub labels: LabelSet,
    /// Annotations.
    #[cfg_attr(feature = "openapi", schema(value_type = Object))]
    pub annotations: LabelSet,
    /// Start of the current firing.
    pub starts_at: DateTime<Utc>,
    /// End, once resolved.
    pub ends_at: Option<DateTime<Utc>>,
    /// Link to the expression in Prometheus.
    pub generator_url: String,
    /// The severity read from `labels.severity`.
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    pub severity: Severity,
}

/// Where an incident came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum IncidentSource {
    /// Opened by Alertmanager alerts.
    Alertmanager,
    /// Opened by a person through the API.
    Manual,
}

/// An incident with its alerts and timeline.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Incident {
    /// Time-sortable id (UUIDv7).
    pub id: String,
    /// Deduplication key: `fp:<fingerprint>` or `group:<hash>` or `manual:<id>`.
    pub key: String,
    /// From the `summary` annotation, else the `alertname` label.
    pub title: String,
    /// From the `description` annotation.
    pub description: Option<String>,
    /// Highest severity of its alerts.
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    pub severity: Severity,
    /// Shown alongside severity.
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    pub priority: Priority,
    /// From `labels.service`; becomes a status page component.
    pub service: Option<String>,
    /// From the `runbook_url` annotation.
    pub runbook_url: Option<String>,
    /// Life-cycle status.
    pub status: IncidentStatus,
    /// Whether Alertmanager truncated a delivery for it (`max_alerts`): the alert list may be incomplete.
    pub partial: bool,
    /// Whether a maintenance window muted its opening notifications.
    pub muted: bool,
    /// Whether opening notifications were enqueued (so its resolve is always announced).
    pub notified: bool,
    /// Where it came from.
    pub source: IncidentSource,
    /// When the problem started.
    pub started_at: DateTime<Utc>,
    /// When someone acknowledged it.
    pub acknowledged_at: Option<DateTime<Utc>>,
    /// When it resolved.
    pub resolved_at: Option<DateTime<Utc>>,
    /// Last change.
    pub updated_at: DateTime<Utc>,
    /// Seconds from start to acknowledgement.
    pub time_to_acknowledge_seconds: Option<i64>,
    /// Seconds from start to resolution.
    pub time_to_resolve_seconds: Option<i64>,
    /// Increases with every change that notifies; outbox entries are unique per (incident, revision, channel).
    pub revision: u64,
    /// Its alerts.
    pub alerts: Vec<AlertRecord>,
    /// How many alerts it has (kept in notification snapshots, whose alert list is left out).
    #[serde(default)]
    pub alert_count: usize,
    /// What happened, oldest first.
    pub timeline: Vec<TimelineEntry>,
}

impl Incident {
    /// The latest status update's note, if any.
    pub fn latest_update(&self) -> Option<(&TimelineEntry, UpdateStatus, &str)> {
        self.timeline.iter().rev().find_map(|e| match &e.event {
            TimelineEvent::Update { status, note } => Some((e, *status, note.as_str())),
            _ => None,
        })
    }

    /// The alert with this fingerprint.
    pub fn alert_mut(&mut self, fingerprint: &str) -> Option<&mut AlertRecord> {
        self.alerts
            .iter_mut()
            .find(|a| a.fingerprint == fingerprint)
    }

    /// A copy without the alerts and the timeline (for notification snapshots).
    pub(crate) fn clone_summary(&self) -> Incident {
        Incident {
            id: self.id.clone(),
            key: self.key.clone(),
            title: self.title.clone(),
            description: self.description.clone(),
            severity: self.severity,
            priority: self.priority,
            service: self.service.clone(),
            runbook_url: self.runbook_url.clone(),
            status: self.status,
            partial: self.partial,
            muted: self.muted,
            notified: self.notified,
            source: self.source,
            started_at: self.started_at,
            acknowledged_at: self.acknowledged_at,
            resolved_at: self.resolved_at,
            updated_at: self.updated_at,
            time_to_acknowledge_seconds: self.time_to_acknowledge_seconds,
            time_to_resolve_seconds: self.time_to_resolve_seconds,
            revision: self.revision,
            alerts: Vec::new(),
            alert_count: self.alerts.len(),
            timeline: Vec::new(),
        }
    }

    pub(crate) fn push(&mut self, at: DateTime<Utc>, actor: Actor, event: TimelineEvent) {
        self.timeline.push(TimelineEntry { at, actor, event });
    }

    pub(crate) fn mark_resolved(&mut self, at: DateTime<Utc>, actor: Actor) {
        self.status = IncidentStatus::Resolved;
        self.resolved_at = Some(at);
        self.time_to_resolve_seconds = Some((at - self.started_at).num_seconds().max(0));
        self.push(at, actor, TimelineEvent::Resolved);
    }
}
