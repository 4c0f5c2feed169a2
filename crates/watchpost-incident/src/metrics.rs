//! [`IncidentMetrics`]: the incident metrics, registered into a handed-in `prometheus_client` registry.
//!
//! | metric | type | labels |
//! | --- | --- | --- |
//! | `watchpost_incidents_open` | gauge | `severity` |
//! | `watchpost_incident_time_to_acknowledge_seconds` | histogram | |
//! | `watchpost_incident_time_to_resolve_seconds` | histogram | |
//! | `watchpost_incident_webhook_requests_total` | counter | `outcome` |
//! | `watchpost_incident_notifications_sent_total` | counter | `channel` |
//! | `watchpost_incident_notifications_failed_total` | counter | `channel` |

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use watchpost_core::Severity;

use crate::engine::Transition;
use crate::model::Channel;

type Labels = Vec<(&'static str, &'static str)>;

/// How a webhook request ended (a bounded label).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WebhookOutcome {
    /// Applied and durable.
    Accepted,
    /// Nothing new in it (a redelivery or an HA duplicate).
    Duplicate,
    /// Missing or wrong credentials.
    Unauthorized,
    /// Not a version 4 payload.
    BadRequest,
    /// Over the body limit.
    TooLarge,
    /// The store failed; Alertmanager will retry.
    Unavailable,
}

impl WebhookOutcome {
    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            WebhookOutcome::Accepted => "accepted",
            WebhookOutcome::Duplicate => "duplicate",
            WebhookOutcome::Unauthorized => "unauthorized",
            WebhookOutcome::BadRequest => "bad_request",
            WebhookOutcome::TooLarge => "too_large",
            WebhookOutcome::Unavailable => "unavailable",
        }
    }
}

/// The incident metrics (clones share the values).
#[derive(Debug, Clone)]
pub struct IncidentMetrics {
    open: Family<Labels, Gauge>,
    time_to_ack: Histogram,
    time_to_resolve: Histogram,
    webhook: Family<Labels, Counter>,
    sent: Family<Labels, Counter>,
    failed: Family<Labels, Counter>,
}

impl Default for IncidentMetrics {
    fn default() -> Self {
        Self {
            open: Family::default(),
            // 10 s to about 3.8 days.
            time_to_ack: Histogram::new(exponential_buckets(10.0, 2.0, 16)),
            time_to_resolve: Histogram::new(exponential_buckets(10.0, 2.0, 16)),
            webhook: Family::default(),
            sent: Family::default(),
            failed: Family::default(),
        }
    }
}

impl IncidentMetrics {
    /// Registers every metric into `registry`.
    pub fn register(&self, registry: &mut Registry) {
        registry.register(
            "watchpost_incidents_open",
            "Open incidents by severity",
            self.open.clone(),
        );
        registry.register(
            "watchpost_incident_time_to_acknowledge_seconds",
            "Seconds from incident start to acknowledgement",
            self.time_to_ack.clone(),
        );
        registry.register(
            "watchpost_incident_time_to_resolve_seconds",
            "Seconds from incident start to resolution",
            self.time_to_resolve.clone(),
        );
        registry.register(
            "watchpost_incident_webhook_requests",
            "Alertmanager webhook requests by outcome",
            self.webhook.clone(),
        );
        registry.register(
            "watchpost_incident_notifications_sent",
            "Notifications delivered by channel",
            self.sent.clone(),
        );
        registry.register(
            "watchpost_incident_notifications_failed",
            "Notifications given up on by channel",
            self.failed.clone(),
        );
    }

    pub(crate) fn webhook(&self, outcome: WebhookOutcome) {
        self.webhook
            .get_or_create(&vec![("outcome", outcome.as_str())])
            .inc();
    }

    pub(crate) fn transitions(&self, transitions: &[Transition]) {
        for t in transitions {
            match t {
                Transition::Acknowledged(_, s) => self.time_to_ack.observe(*s),
                Transition::Resolved(severity, s) => {
                    self.time_to_resolve.observe(*s);
                    self.open
                        .get_or_create(&vec![("severity", severity.as_str())])
                        .dec();
                }
                Transition::Opened(severity) => {
                    self.open
                        .get_or_create(&vec![("severity", severity.as_str())])
                        .inc();
                }
            }
        }
    }

    pub(crate) fn set_open(&self, counts: &[(Severity, u64)]) {
        for severity in [Severity::Critical, Severity::Warning, Severity::Info] {
            let n = counts
                .iter()
                .find(|(s, _)| *s == severity)
                .map(|(_, n)| *n)
                .unwrap_or(0);
            self.open
                .get_or_create(&vec![("severity", severity.as_str())])
                .set(i64::try_from(n).unwrap_or(i64::MAX));
        }
    }

    pub(crate) fn notification(&self, channel: Channel, delivered: bool) {
        let family = if delivered { &self.sent } else { &self.failed };
        family
            .get_or_create(&vec![("channel", channel.as_str())])
            .inc();
    }
}
