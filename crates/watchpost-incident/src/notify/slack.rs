//! [`SlackNotifier`]: a Block Kit message to a Slack incoming webhook.

use serde_json::json;

use super::{Notifier, NotifyError, headline, http_client, incident_url, post_json};
use crate::model::Channel;
use crate::outbox::Notification;
use crate::store::BoxFuture;

/// Posts to a Slack incoming webhook URL (`WATCHPOST_SLACK_WEBHOOK_URL`).
#[derive(Debug, Clone)]
pub struct SlackNotifier {
    url: String,
    public_url: Option<String>,
    client: reqwest::Client,
}

impl SlackNotifier {
    /// A notifier posting to `webhook_url`; links point under `public_url` when set.
    pub fn new(webhook_url: impl Into<String>, public_url: Option<String>) -> Self {
        Self {
            url: webhook_url.into(),
            public_url,
            client: http_client(),
        }
    }

    /// The Block Kit message for `n`.
    pub fn message(&self, n: &Notification) -> serde_json::Value {
        let i = &n.incident;
        let mut fields = vec![
            json!({"type": "mrkdwn", "text": format!("*Severity*\n{} ({})", i.severity, i.priority)}),
            json!({"type": "mrkdwn", "text": format!("*Status*\n{}", i.status.as_str())}),
        ];
        if let Some(service) = &i.service {
            fields.push(json!({"type": "mrkdwn", "text": format!("*Service*\n{service}")}));
        }
        let mut blocks = vec![
            json!({"type": "header", "text": {"type": "plain_text", "text": truncate(&headline(n), 150)}}),
            json!({"type": "section", "fields": fields}),
        ];
        if let Some((_, status, note)) = i
            .latest_update()
            .filter(|_| n.kind == crate::outbox::NotificationKind::Update)
        {
            blocks.push(json!({"type": "section", "text": {"type": "mrkdwn", "text": format!("*{}*: {}", status.as_str(), truncate(note, 2900))}}));
        } else if let Some(d) = &i.description {
            blocks.push(
                json!({"type": "section", "text": {"type": "mrkdwn", "text": truncate(d, 2900)}}),
            );
        }
        let mut buttons = Vec::new();
        if let Some(url) = incident_url(self.public_url.as_deref(), i) {
            buttons.push(json!({"type": "button", "text": {"type": "plain_text", "text": "Open incident"}, "url": url}));
        }
        if let Some(runbook) = &i.runbook_url {
            buttons.push(json!({"type": "button", "text": {"type": "plain_text", "text": "Runbook"}, "url": runbook}));
        }
        if !buttons.is_empty() {
            blocks.push(json!({"type": "actions", "elements": buttons}));
        }
        json!({"text": headline(n), "blocks": blocks})
    }
}

fn truncate(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        s.to_owned()
    } else {
        let mut t: String = s.chars().take(max - 1).collect();
        t.push('…');
        t
    }
}

impl Notifier for SlackNotifier {
    fn channel(&self) -> Channel {
        Channel::Slack
    }

    fn send<'a>(
        &'a self,
        n: &'a Notification,
        headers: http::HeaderMap,
    ) -> BoxFuture<'a, Result<(), NotifyError>> {
        Box::pin(async move {
            let body = serde_json::to_vec(&self.message(n))
                .map_err(|e| NotifyError::Permanent(e.to_string()))?;
            post_json(&self.client, &self.url, body, headers, n).await
        })
    }
}
