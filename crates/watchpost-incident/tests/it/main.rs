//! Integration tests of watchpost-incident: store contract, HA replay property, HTTP surface,
//! notifiers against local receivers, PostgreSQL concurrency, real Alertmanager and headless Chromium.

mod alertmanager_real;
mod contract;
mod http_api;
mod notifiers;
mod postgres_replicas;
mod replay;
mod status_browser;

use std::sync::Arc;

use chrono::{DateTime, Utc};
use watchpost_core::{ManualClock, Principal, Role};
use watchpost_incident::alertmanager::{Alert, AlertStatus, LabelSet, WebhookPayload};
use watchpost_incident::store::SharedStore;
use watchpost_incident::{IncidentConfig, IncidentService};

/// A fixed instant.
pub fn t0() -> DateTime<Utc> {
    DateTime::parse_from_rfc3339("2026-01-01T00:00:00Z")
        .unwrap()
        .to_utc()
}

/// `t0` plus `minutes`.
pub fn at(minutes: i64) -> DateTime<Utc> {
    t0() + chrono::Duration::minutes(minutes)
}

/// Labels from pairs.
pub fn labels(pairs: &[(&str, &str)]) -> LabelSet {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

/// A firing alert.
pub fn firing(name: &str, severity: &str, service: &str, starts: DateTime<Utc>) -> Alert {
    Alert {
        status: AlertStatus::Firing,
        labels: labels(&[
            ("alertname", name),
            ("severity", severity),
            ("service", service),
        ]),
        annotations: labels(&[
            ("summary", &format!("{name} is failing")),
            ("runbook_url", "https://runbooks.example/x"),
        ]),
        starts_at: starts,
        ends_at: None,
        generator_url: "http://prometheus/graph".into(),
        fingerprint: None,
    }
}

/// The same alert, resolved at `ends`.
pub fn resolved(alert: &Alert, ends: DateTime<Utc>) -> Alert {
    Alert {
        status: AlertStatus::Resolved,
        ends_at: Some(ends),
        ..alert.clone()
    }
}

/// A delivery of `alerts`.
pub fn delivery(alerts: Vec<Alert>) -> WebhookPayload {
    let status = if alerts.iter().any(|a| a.status == AlertStatus::Firing) {
        AlertStatus::Firing
    } else {
        AlertStatus::Resolved
    };
    WebhookPayload {
        version: "4".into(),
        group_key: "{}:{alertname=\"x\"}".into(),
        truncated_alerts: 0,
        status,
        receiver: "watchpost".into(),
        group_labels: LabelSet::new(),
        common_labels: LabelSet::new(),
        common_annotations: LabelSet::new(),
        external_url: "http://alertmanager:9093".into(),
        alerts,
    }
}

/// A service over `store` with a manual clock at `t0`.
pub fn service_with(store: SharedStore, config: IncidentConfig) -> (IncidentService, ManualClock) {
    let clock = ManualClock::new(t0());
    let service = IncidentService::builder(store)
        .config(config)
        .clock(Arc::new(clock.clone()))
        .build();
    (service, clock)
}

/// A tenant principal for API calls.
pub fn principal() -> Principal {
    Principal::new("k1", "ci", Some("acme".into()), Role::Tenant)
}

/// The webhook token used by tests.
pub const TOKEN: &str = "am-secret-token";

/// Config with the test token.
pub fn config() -> IncidentConfig {
    IncidentConfig {
        alertmanager_token: Some(TOKEN.into()),
        ..IncidentConfig::default()
    }
}
