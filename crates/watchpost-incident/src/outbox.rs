//! The notification outbox: [`OutboxEntry`] rows written in the same transaction as the incident
//! change they announce, unique per (incident, revision, channel), and the [`Notification`] they carry.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::model::{Channel, Incident};

/// What changed, as a notification announces it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum NotificationKind {
    /// A new incident.
    Trigger,
    /// A resolved incident opened again.
    Reopen,
    /// Someone acknowledged it.
    Acknowledge,
    /// A status update was posted.
    Update,
    /// It resolved.
    Resolve,
}

impl NotificationKind {
    /// `trigger`, `reopen`, `acknowledge`, `update` or `resolve`.
    pub fn as_str(self) -> &'static str {
        match self {
            NotificationKind::Trigger => "trigger",
            NotificationKind::Reopen => "reopen",
            NotificationKind::Acknowledge => "acknowledge",
            NotificationKind::Update => "update",
            NotificationKind::Resolve => "resolve",
        }
    }
}

/// The request that caused a change, so notifications can carry its trace and correlation ids
/// through a caller-supplied header hook.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Origin {
    /// The request id.
    pub request_id: Option<String>,
    /// The correlation id.
    pub correlation_id: Option<String>,
    /// W3C trace id (32 hex digits).
    pub trace_id: Option<String>,
    /// W3C span id of the server span (16 hex digits).
    pub span_id: Option<String>,
    /// Whether the trace was sampled.
    pub sampled: bool,
}

impl Origin {
    /// The origin recorded from a [`watchpost_core::RequestContext`].
    pub fn from_context(ctx: &watchpost_core::RequestContext) -> Self {
        Self {
            request_id: Some(ctx.request_id.to_string()),
            correlation_id: Some(ctx.correlation_id.to_string()),
            trace_id: ctx.trace_id.map(|t| t.to_string()),
            span_id: ctx.span_id.map(|s| s.to_string()),
            sampled: ctx.sampled,
        }
    }
}

/// What a notifier receives.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Notification {
    /// The outbox entry id; stable across retries, sent as `Idempotency-Key`.
    pub id: String,
    /// What changed.
    pub kind: NotificationKind,
    /// The channel it goes to.
    pub channel: Channel,
    /// The incident as it was after the change (the timeline is cut to its last entries).
    pub incident: Incident,
    /// The request that caused the change.
    pub origin: Option<Origin>,
    /// When the change happened.
    pub created_at: DateTime<Utc>,
}

impl Notification {
    pub(crate) fn new(
        kind: NotificationKind,
        channel: Channel,
        incident: &Incident,
        origin: Option<Origin>,
        now: DateTime<Utc>,
    ) -> Self {
        // A slim snapshot: outbox rows are many and long-lived; notifiers need the summary, the
        // latest status update and the number of alerts, not every label and timeline entry.
        let mut snapshot = Incident {
            alerts: Vec::new(),
            timeline: incident
                .latest_update()
                .map(|(entry, _, _)| vec![entry.clone()])
                .unwrap_or_default(),
            ..incident.clone_summary()
        };
        snapshot.alert_count = incident.alerts.len();
        Self {
            id: uuid::Uuid::now_v7().to_string(),
            kind,
            channel,
            incident: snapshot,
            origin,
            created_at: now,
        }
    }
}

/// Delivery state of an outbox entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OutboxState {
    /// Waiting for (another) attempt.
    Pending,
    /// Delivered; never sent again.
    Delivered,
    /// Given up (a 4xx other than 429, or out of attempts).
    Failed,
}

impl OutboxState {
    /// `pending`, `delivered` or `failed`.
    pub fn as_str(self) -> &'static str {
        match self {
            OutboxState::Pending => "pending",
            OutboxState::Delivered => "delivered",
            OutboxState::Failed => "failed",
        }
    }

    /// Parses [`OutboxState::as_str`] output.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "pending" => Some(OutboxState::Pending),
            "delivered" => Some(OutboxState::Delivered),
            "failed" => Some(OutboxState::Failed),
            _ => None,
        }
    }
}

/// One row of the outbox.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OutboxEntry {
    /// The notification (its id is the row id).
    pub notification: Notification,
    /// The incident revision it announces.
    pub revision: u64,
    /// Attempts made so far (claims count as attempts).
    pub attempts: u32,
    /// Delivery state.
    pub state: OutboxState,
    /// Not before this time.
    pub next_attempt_at: DateTime<Utc>,
    /// Why the last attempt failed.
    pub last_error: Option<String>,
}

impl OutboxEntry {
    pub(crate) fn new(notification: Notification, revision: u64) -> Self {
        Self {
            next_attempt_at: notification.created_at,
            notification,
            revision,
            attempts: 0,
            state: OutboxState::Pending,
            last_error: None,
        }
    }

    /// The row id.
    pub fn id(&self) -> &str {
        &self.notification.id
    }
}

/// How one delivery attempt ended, as the worker reports it to the store.
#[derive(Debug, Clone, PartialEq)]
pub enum DeliveryResult {
    /// Delivered: mark it and record `Notified` on the incident's timeline.
    Delivered,
    /// Try again at this time.
    Retry {
        /// When.
        at: DateTime<Utc>,
        /// Why the attempt failed.
        error: String,
    },
    /// Give up.
    Failed {
        /// Why.
        error: String,
    },
}
