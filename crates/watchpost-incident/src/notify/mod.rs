//! Notifiers: Slack incoming webhooks, PagerDuty Events API v2, email over SMTP (feature `smtp`)
//! and a generic signed webhook, behind one [`Notifier`] trait the outbox worker drives.
//!
//! A notifier says whether a failure is worth retrying ([`NotifyError::Retryable`]: 5xx, 429,
//! network errors) or not ([`NotifyError::Permanent`]: any other 4xx). Trace and correlation
//! headers come only from a caller-supplied [`HeaderHook`].

use std::fmt::Debug;
use std::sync::Arc;
use std::time::Duration;

use crate::model::{Channel, Incident};
use crate::outbox::Notification;
use crate::store::BoxFuture;

mod pagerduty;
mod slack;
#[cfg(feature = "smtp")]
mod smtp;
mod webhook;

pub use pagerduty::{EVENTS_URL as PAGERDUTY_EVENTS_URL, PagerDutyNotifier};
pub use slack::SlackNotifier;
#[cfg(feature = "smtp")]
pub use smtp::SmtpNotifier;
pub use webhook::{SIGNATURE_HEADER, WebhookNotifier, sign};

/// Adds headers to outgoing notification requests (the server adds `traceparent` and `X-Correlation-ID` from [`Notification::origin`]).
pub type HeaderHook = Arc<dyn Fn(&Notification) -> http::HeaderMap + Send + Sync>;

/// Why a notification was not delivered.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NotifyError {
    /// Worth retrying (5xx, 429, network).
    #[error("temporary failure: {reason}")]
    Retryable {
        /// What happened.
        reason: String,
        /// The receiver's `Retry-After`, when it sent one.
        retry_after: Option<Duration>,
    },
    /// Not worth retrying (other 4xx, a bad address).
    #[error("permanent failure: {0}")]
    Permanent(String),
}

/// A destination for notifications.
pub trait Notifier: Send + Sync + Debug + 'static {
    /// The channel it serves.
    fn channel(&self) -> Channel;

    /// Sends one notification; `headers` come from the [`HeaderHook`].
    fn send<'a>(
        &'a self,
        notification: &'a Notification,
        headers: http::HeaderMap,
    ) -> BoxFuture<'a, Result<(), NotifyError>>;
}

/// The link to an incident, when a public URL is configured.
pub(crate) fn incident_url(public_url: Option<&str>, incident: &Incident) -> Option<String> {
    public_url.map(|base| format!("{}/incidents/{}", base.trim_end_matches('/'), incident.id))
}

/// Posts JSON and classifies the answer.
pub(crate) async fn post_json(
    client: &reqwest::Client,
    url: &str,
    body: Vec<u8>,
    mut headers: http::HeaderMap,
    notification: &Notification,
) -> Result<(), NotifyError> {
    headers.insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/json"),
    );
    if let Ok(v) = http::HeaderValue::from_str(&notification.id) {
        headers.insert("idempotency-key", v);
    }
    let response = client
        .post(url)
        .headers(headers)
        .body(body)
        .send()
        .await
        .map_err(|e| NotifyError::Retryable {
            reason: format!("request failed: {e}"),
            retry_after: None,
        })?;
    classify(response.status(), response.headers())
}

/// 2xx: delivered; 429 and 5xx: retry (honouring `Retry-After` seconds); other 4xx: give up.
pub(crate) fn classify(
    status: reqwest::StatusCode,
    headers: &http::HeaderMap,
) -> Result<(), NotifyError> {
    if status.is_success() {
        return Ok(());
    }
    let retry_after = headers
        .get(http::header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok())
        .map(Duration::from_secs);
    if status == reqwest::StatusCode::TOO_MANY_REQUESTS || status.is_server_error() {
        Err(NotifyError::Retryable {
            reason: format!("receiver answered {status}"),
            retry_after,
        })
    } else {
        Err(NotifyError::Permanent(format!(
            "receiver answered {status}"
        )))
    }
}

/// A reqwest client with bounded timeouts.
pub(crate) fn http_client() -> reqwest::Client {
    reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(5))
        .timeout(Duration::from_secs(10))
        .user_agent(concat!("watchpost-incident/", env!("CARGO_PKG_VERSION")))
        .build()
        .unwrap_or_default()
}

pub(crate) fn headline(n: &Notification) -> String {
    let what = match n.kind {
        crate::outbox::NotificationKind::Trigger => "Triggered",
        crate::outbox::NotificationKind::Reopen => "Reopened",
        crate::outbox::NotificationKind::Acknowledge => "Acknowledged",
        crate::outbox::NotificationKind::Update => "Update",
        crate::outbox::NotificationKind::Resolve => "Resolved",
    };
    format!(
        "[{}] {what}: {}",
        n.incident.severity.as_str().to_uppercase(),
        n.incident.title
    )
}
