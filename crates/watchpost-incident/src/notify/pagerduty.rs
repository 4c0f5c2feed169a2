//! [`PagerDutyNotifier`]: PagerDuty Events API v2 (trigger, acknowledge, resolve) with a stable `dedup_key` per incident.

use serde_json::json;

use super::{Notifier, NotifyError, http_client, incident_url, post_json};
use crate::model::Channel;
use crate::outbox::{Notification, NotificationKind};
use crate::store::BoxFuture;

/// The Events API v2 endpoint.
pub const EVENTS_URL: &str = "https://events.pagerduty.com/v2/enqueue";

/// Sends events with one routing key (`WATCHPOST_PAGERDUTY_ROUTING_KEY`).
#[derive(Debug, Clone)]
pub struct PagerDutyNotifier {
    routing_key: String,
    url: String,
    public_url: Option<String>,
    client: reqwest::Client,
}

impl PagerDutyNotifier {
    /// A notifier for `routing_key` posting to the public Events API.
    pub fn new(routing_key: impl Into<String>, public_url: Option<String>) -> Self {
        Self {
            routing_key: routing_key.into(),
            url: EVENTS_URL.to_owned(),
            public_url,
            client: http_client(),
        }
    }

    /// Posts to `url` instead (tests, proxies).
    #[must_use]
    pub fn with_url(mut self, url: impl Into<String>) -> Self {
        self.url = url.into();
        self
    }

    /// The stable deduplication key of an incident.
    pub fn dedup_key(incident_id: &str) -> String {
        format!("watchpost-{incident_id}")
    }

    /// The event for `n`; `None` for kinds PagerDuty has no event for (status updates).
    pub fn event(&self, n: &Notification) -> Option<serde_json::Value> {
        let i = &n.incident;
        let action = match n.kind {
            NotificationKind::Trigger | NotificationKind::Reopen => "trigger",
            NotificationKind::Acknowledge => "acknowledge",
            NotificationKind::Resolve => "resolve",
            NotificationKind::Update => return None,
        };
        let mut event = json!({
            "routing_key": self.routing_key,
            "event_action": action,
            "dedup_key": Self::dedup_key(&i.id),
        });
        if action == "trigger" {
            event["payload"] = json!({
                "summary": i.title.chars().take(1024).collect::<String>(),
                "source": i.service.clone().unwrap_or_else(|| "watchpost".to_owned()),
                "severity": match i.severity {
                    watchpost_core::Severity::Critical => "critical",
                    watchpost_core::Severity::Warning => "warning",
                    watchpost_core::Severity::Info => "info",
                },
                "timestamp": i.started_at,
                "component": i.service,
                "custom_details": {
                    "priority": i.priority, "description": i.description, "incident_id": i.id,
                    "alerts": i.alert_count, "partial": i.partial,
                },
            });
            event["client"] = json!("Watchpost");
            let mut links = Vec::new();
            if let Some(url) = incident_url(self.public_url.as_deref(), i) {
                event["client_url"] = json!(url.clone());
                links.push(json!({"href": url, "text": "Incident"}));
            }
            if let Some(r) = &i.runbook_url {
                links.push(json!({"href": r, "text": "Runbook"}));
            }
            event["links"] = json!(links);
        }
        Some(event)
    }
}

impl Notifier for PagerDutyNotifier {
    fn channel(&self) -> Channel {
        Channel::PagerDuty
    }

    fn send<'a>(
        &'a self,
        n: &'a Notification,
        headers: http::HeaderMap,
    ) -> BoxFuture<'a, Result<(), NotifyError>> {
        Box::pin(async move {
            let Some(event) = self.event(n) else {
                return Ok(());
            };
            let body =
                serde_json::to_vec(&event).map_err(|e| NotifyError::Permanent(e.to_string()))?;
            post_json(&self.client, &self.url, body, headers, n).await
        })
    }
}
