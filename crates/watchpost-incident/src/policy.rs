//! Policies: which alerts open incidents, how alerts group, when incidents resolve and reopen,
//! maintenance windows, and which channels each severity notifies.

use std::collections::BTreeMap;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use watchpost_core::Severity;

use crate::alertmanager::{LabelSet, fingerprint};
use crate::model::Channel;

/// When an incident made of several alerts resolves.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ResolvePolicy {
    /// When every alert of the incident has resolved (the default).
    #[default]
    All,
    /// As soon as any of its alerts resolves.
    Any,
}

/// How alerts map to incident keys.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Grouping {
    /// One incident per alert fingerprint (the default).
    #[default]
    Fingerprint,
    /// One incident per value of these labels (for example `alertname` and `service`);
    /// deliberately not Alertmanager's `groupKey`, which changes when routes are edited.
    Labels(Vec<String>),
}

/// A label matcher: `name = value` or `name != value`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LabelMatcher {
    /// Label name.
    pub name: String,
    /// Value to compare with (a missing label reads as the empty string, as in Alertmanager).
    pub value: String,
    /// `true` for `!=`.
    #[serde(default)]
    pub negate: bool,
}

impl LabelMatcher {
    /// `name = value`.
    pub fn eq(name: &str, value: &str) -> Self {
        Self {
            name: name.into(),
            value: value.into(),
            negate: false,
        }
    }

    /// Whether `labels` match.
    pub fn matches(&self, labels: &LabelSet) -> bool {
        let v = labels.get(&self.name).map(String::as_str).unwrap_or("");
        (v == self.value) != self.negate
    }
}

/// A time range in which matching alerts are recorded but notify no one.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MaintenanceWindow {
    /// Name shown on the timeline and the status page.
    pub name: String,
    /// All must match.
    pub matchers: Vec<LabelMatcher>,
    /// Start, inclusive.
    pub starts_at: DateTime<Utc>,
    /// End, exclusive.
    pub ends_at: DateTime<Utc>,
    /// The status page component (service) under maintenance, if it names one.
    pub service: Option<String>,
}

impl MaintenanceWindow {
    /// Whether the window covers alerts with `labels` at `at`.
    pub fn covers(&self, labels: &LabelSet, at: DateTime<Utc>) -> bool {
        at >= self.starts_at && at < self.ends_at && self.matchers.iter().all(|m| m.matches(labels))
    }

    /// Whether the window is active at `at`.
    pub fn active_at(&self, at: DateTime<Utc>) -> bool {
        at >= self.starts_at && at < self.ends_at
    }
}

/// Which channels each severity notifies.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Routing {
    /// Severity to channels.
    pub routes: BTreeMap<Severity, Vec<Channel>>,
}

impl Default for Routing {
    /// critical: PagerDuty, Slack, email; warning: Slack; info: none.
    fn default() -> Self {
        let mut routes = BTreeMap::new();
        routes.insert(
            Severity::Critical,
            vec![Channel::PagerDuty, Channel::Slack, Channel::Email],
        );
        routes.insert(Severity::Warning, vec![Channel::Slack]);
        routes.insert(Severity::Info, vec![]);
        Self { routes }
    }
}

impl Routing {
    /// The channels for `severity`.
    pub fn channels(&self, severity: Severity) -> &[Channel] {
        self.routes.get(&severity).map(Vec::as_slice).unwrap_or(&[])
    }

    /// Keeps only `enabled` channels (those with a configured notifier).
    #[must_use]
    pub fn restricted_to(mut self, enabled: &[Channel]) -> Self {
        for channels in self.routes.values_mut() {
            channels.retain(|c| enabled.contains(c));
        }
        self
    }
}

/// Every policy the incident engine applies.
#[derive(Debug, Clone, PartialEq)]
pub struct IncidentPolicy {
    /// Severities whose alerts open incidents (default: critical); others are kept as alerts.
    pub open_on: Vec<Severity>,
    /// Severity of alerts without a readable `severity` label (default: warning).
    pub default_severity: Severity,
    /// How alerts map to incidents.
    pub grouping: Grouping,
    /// When incidents resolve.
    pub resolve: ResolvePolicy,
    /// A new firing within this time after resolution reopens the incident (default 30 minutes).
    pub reopen_window: Duration,
    /// Maintenance windows.
    pub maintenance: Vec<MaintenanceWindow>,
    /// Channels per severity.
    pub routing: Routing,
}

impl Default for IncidentPolicy {
    fn default() -> Self {
        Self {
            open_on: vec![Severity::Critical],
            default_severity: Severity::Warning,
            grouping: Grouping::Fingerprint,
            resolve: ResolvePolicy::All,
            reopen_window: Duration::from_secs(30 * 60),
            maintenance: Vec::new(),
            routing: Routing::default(),
        }
    }
}

impl IncidentPolicy {
    /// The severity of an alert with `labels`.
    pub fn severity_of(&self, labels: &LabelSet) -> Severity {
        labels
            .get("severity")
            .and_then(|s| s.parse().ok())
            .unwrap_or(self.default_severity)
    }

    /// Whether an alert of `severity` opens an incident.
    pub fn opens(&self, severity: Severity) -> bool {
        self.open_on.contains(&severity)
    }

    /// The incident key for an alert.
    pub fn key_for(&self, fingerprint_value: &str, labels: &LabelSet) -> String {
        match &self.grouping {
            Grouping::Fingerprint => format!("fp:{fingerprint_value}"),
            Grouping::Labels(names) => {
                let picked: LabelSet = names
                    .iter()
                    .map(|n| (n.clone(), labels.get(n).cloned().unwrap_or_default()))
                    .collect();
                format!("group:{}", fingerprint(&picked))
            }
        }
    }

    /// The maintenance window muting an alert with `labels` at `at`, if any.
    pub fn muting_window(
        &self,
        labels: &LabelSet,
        at: DateTime<Utc>,
    ) -> Option<&MaintenanceWindow> {
        self.maintenance.iter().find(|w| w.covers(labels, at))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matchers_and_windows() {
        let mut labels = LabelSet::new();
        labels.insert("service".into(), "api".into());
        let t0 = Utc::now();
        let w = MaintenanceWindow {
            name: "deploy".into(),
            matchers: vec![LabelMatcher::eq("service", "api")],
            starts_at: t0,
            ends_at: t0 + chrono::Duration::minutes(10),
            service: Some("api".into()),
        };
        assert!(w.covers(&labels, t0));
        assert!(!w.covers(&labels, t0 + chrono::Duration::minutes(10)));
        labels.insert("service".into(), "db".into());
        assert!(!w.covers(&labels, t0));
        assert!(
            LabelMatcher {
                negate: true,
                ..LabelMatcher::eq("service", "api")
            }
            .matches(&labels)
        );
    }

    #[test]
    fn grouping_keys_ignore_other_labels() {
        let p = IncidentPolicy {
            grouping: Grouping::Labels(vec!["alertname".into()]),
            ..IncidentPolicy::default()
        };
        let mut a = LabelSet::new();
        a.insert("alertname".into(), "Down".into());
        let mut b = a.clone();
        b.insert("instance".into(), "x".into());
        assert_eq!(p.key_for("1", &a), p.key_for("2", &b));
        assert_eq!(IncidentPolicy::default().key_for("ab", &a), "fp:ab");
    }

    #[test]
    fn default_routing_follows_the_issue() {
        let r = Routing::default();
        assert_eq!(r.channels(Severity::Warning), &[Channel::Slack]);
        assert!(r.channels(Severity::Info).is_empty());
        let r = r.restricted_to(&[Channel::Slack]);
        assert_eq!(r.channels(Severity::Critical), &[Channel::Slack]);
    }
}
