//! The Alertmanager webhook payload (version 4), Alertmanager's label fingerprint, and the idempotency key of an alert event.
//!
//! Unknown fields are ignored so that Alertmanager 0.25 through 0.34 (and later additions) parse.
//! A firing alert's `endsAt` is the zero time `0001-01-01T00:00:00Z` in Alertmanager's payloads;
//! it is read as "no end".

use std::collections::BTreeMap;

use chrono::{DateTime, Datelike, Utc};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// Labels or annotations: name to value, sorted by name.
pub type LabelSet = BTreeMap<String, String>;

/// Whether an alert (or a whole group) is firing or resolved.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum AlertStatus {
    /// The alert's condition holds.
    Firing,
    /// The alert's condition no longer holds.
    Resolved,
}

impl AlertStatus {
    /// `firing` or `resolved`.
    pub fn as_str(self) -> &'static str {
        match self {
            AlertStatus::Firing => "firing",
            AlertStatus::Resolved => "resolved",
        }
    }
}

/// One notification from Alertmanager's webhook receiver (`version` 4).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct WebhookPayload {
    /// Payload format version; Alertmanager sends `"4"`.
    #[serde(default)]
    pub version: String,
    /// The group's key inside Alertmanager (changes when routes are edited; not used for incident keys).
    #[serde(default)]
    pub group_key: String,
    /// How many alerts Alertmanager left out because of the receiver's `max_alerts`.
    #[serde(default)]
    pub truncated_alerts: u64,
    /// `firing` when at least one alert in the group fires.
    pub status: AlertStatus,
    /// The receiver's name in Alertmanager's configuration.
    #[serde(default)]
    pub receiver: String,
    /// The labels the group is formed by.
    #[serde(default)]
    pub group_labels: LabelSet,
    /// Labels every alert of the group shares.
    #[serde(default)]
    pub common_labels: LabelSet,
    /// Annotations every alert of the group shares.
    #[serde(default)]
    pub common_annotations: LabelSet,
    /// Alertmanager's external URL.
    #[serde(default, rename = "externalURL")]
    pub external_url: String,
    /// The alerts of the group.
    pub alerts: Vec<Alert>,
}

/// One alert inside a [`WebhookPayload`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Alert {
    /// `firing` or `resolved`.
    pub status: AlertStatus,
    /// The alert's identifying labels.
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(value_type = Object))]
    pub labels: LabelSet,
    /// Descriptive annotations (`summary`, `description`, `runbook_url`).
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(value_type = Object))]
    pub annotations: LabelSet,
    /// When the alert started firing.
    pub starts_at: DateTime<Utc>,
    /// When it resolved; `None` (the zero time on the wire) while firing.
    #[serde(default, deserialize_with = "zero_time_is_none")]
    pub ends_at: Option<DateTime<Utc>>,
    /// Link to the expression in Prometheus.
    #[serde(default, rename = "generatorURL")]
    pub generator_url: String,
    /// Alertmanager's fingerprint of the labels; computed with [`fingerprint`] when absent.
    #[serde(default)]
    pub fingerprint: Option<String>,
}

fn zero_time_is_none<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> Result<Option<DateTime<Utc>>, D::Error> {
    let value: Option<DateTime<Utc>> = Option::deserialize(d)?;
    Ok(value.filter(|t| t.year() > 1))
}

impl Alert {
    /// The fingerprint sent, or the one Alertmanager would compute from the labels.
    pub fn fingerprint(&self) -> String {
        match &self.fingerprint {
            Some(f) if !f.is_empty() => f.clone(),
            _ => fingerprint(&self.labels),
        }
    }

    /// The identity of this alert event: (fingerprint, status, startsAt, endsAt).
    pub fn event_key(&self) -> EventKey {
        EventKey::new(
            &self.fingerprint(),
            self.status,
            self.starts_at,
            self.ends_at,
        )
    }
}

const FNV_OFFSET: u64 = 14_695_981_039_346_656_037;
const FNV_PRIME: u64 = 1_099_511_628_211;
/// Prometheus' `model.SeparatorByte`.
const SEPARATOR: u8 = 255;

fn fnv_add(mut hash: u64, bytes: &[u8]) -> u64 {
    for b in bytes {
        hash ^= u64::from(*b);
        hash = hash.wrapping_mul(FNV_PRIME);
    }
    hash
}

/// The fingerprint Alertmanager computes for a label set: FNV-1a 64 over the label
/// pairs sorted by name, each name and value followed by the byte 255, as 16 lowercase hex digits.
pub fn fingerprint(labels: &LabelSet) -> String {
    format!("{:016x}", fingerprint_u64(labels))
}

/// [`fingerprint`] as a number.
pub fn fingerprint_u64(labels: &LabelSet) -> u64 {
    // A BTreeMap iterates sorted by name, which is the order Prometheus hashes in.
    labels.iter().fold(FNV_OFFSET, |hash, (name, value)| {
        let hash = fnv_add(hash, name.as_bytes());
        let hash = fnv_add(hash, &[SEPARATOR]);
        let hash = fnv_add(hash, value.as_bytes());
        fnv_add(hash, &[SEPARATOR])
    })
}

/// The idempotency key of one alert event: (fingerprint, status, startsAt, endsAt), as a SHA-256 hex digest.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct EventKey(String);

impl EventKey {
    /// The key of an event.
    pub fn new(
        fingerprint: &str,
        status: AlertStatus,
        starts_at: DateTime<Utc>,
        ends_at: Option<DateTime<Utc>>,
    ) -> Self {
        let mut h = Sha256::new();
        h.update(fingerprint.as_bytes());
        h.update([0]);
        h.update(status.as_str().as_bytes());
        h.update([0]);
        h.update(
            starts_at
                .timestamp_nanos_opt()
                .unwrap_or_default()
                .to_be_bytes(),
        );
        h.update([0]);
        h.update(
            ends_at
                .and_then(|t| t.timestamp_nanos_opt())
                .unwrap_or_default()
                .to_be_bytes(),
        );
        Self(hex::encode(h.finalize()))
    }

    /// The key as text (64 hex digits).
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Why a webhook body was refused.
#[derive(Debug, thiserror::Error)]
pub enum PayloadError {
    /// The body is not JSON of the version 4 shape.
    #[error("the body is not an Alertmanager webhook payload (version 4): {0}")]
    Json(#[from] serde_json::Error),
    /// The `version` field names another format.
    #[error(
        "unsupported Alertmanager webhook payload version {0:?}; this receiver reads version \"4\""
    )]
    Version(String),
}

impl WebhookPayload {
    /// Parses and checks a webhook body.
    pub fn parse(body: &[u8]) -> Result<Self, PayloadError> {
        let payload: WebhookPayload = serde_json::from_slice(body)?;
        if !payload.version.is_empty() && payload.version != "4" {
            return Err(PayloadError::Version(payload.version));
        }
        Ok(payload)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> LabelSet {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn fingerprint_matches_prometheus_reference_values() {
        // Values from Prometheus' model/signature_test.go (TestLabelsToSignature / fingerprint tests).
        assert_eq!(
            fingerprint_u64(&LabelSet::new()),
            14_695_981_039_346_656_037
        );
        assert_eq!(
            fingerprint_u64(&labels(&[
                ("name", "garland, briggs"),
                ("fear", "love is not enough")
            ])),
            5_799_056_148_416_392_346
        );
    }

    #[test]
    fn zero_end_time_is_none_and_unknown_fields_are_ignored() {
        let body = br#"{"version":"4","status":"firing","receiver":"r","futureField":1,
          "alerts":[{"status":"firing","labels":{"alertname":"A"},"startsAt":"2026-01-01T00:00:00Z",
          "endsAt":"0001-01-01T00:00:00Z","somethingNew":true}]}"#;
        let p = WebhookPayload::parse(body).unwrap();
        assert_eq!(p.alerts[0].ends_at, None);
        assert_eq!(
            p.alerts[0].fingerprint(),
            fingerprint(&labels(&[("alertname", "A")]))
        );
    }

    #[test]
    fn other_versions_are_refused() {
        let body = br#"{"version":"5","status":"firing","alerts":[]}"#;
        assert!(matches!(
            WebhookPayload::parse(body),
            Err(PayloadError::Version(_))
        ));
    }

    #[test]
    fn event_keys_differ_by_every_member() {
        let t = Utc::now();
        let a = EventKey::new("f", AlertStatus::Firing, t, None);
        assert_eq!(a, EventKey::new("f", AlertStatus::Firing, t, None));
        assert_ne!(a, EventKey::new("g", AlertStatus::Firing, t, None));
        assert_ne!(a, EventKey::new("f", AlertStatus::Resolved, t, None));
        assert_ne!(a, EventKey::new("f", AlertStatus::Firing, t, Some(t)));
        assert_eq!(a.as_str().len(), 64);
    }
}
