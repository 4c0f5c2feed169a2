//! [`Reconciler`]: compares Watchpost's firing alerts with Alertmanager's `/api/v2/alerts` and
//! applies the difference, so resolves lost to `max_alerts` truncation (or outages) are recovered.

use std::collections::{BTreeMap, HashSet};
use std::time::Duration;

use serde::Deserialize;
use tokio_util::sync::CancellationToken;

use crate::alertmanager::{Alert, AlertStatus, LabelSet, WebhookPayload};
use crate::service::IncidentService;

/// An alert as `/api/v2/alerts` returns it (fields this crate needs; the rest is ignored).
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
struct GettableAlert {
    fingerprint: String,
    #[serde(default)]
    labels: LabelSet,
    #[serde(default)]
    annotations: LabelSet,
    starts_at: chrono::DateTime<chrono::Utc>,
    #[serde(default, rename = "generatorURL")]
    generator_url: String,
    #[serde(default)]
    status: Option<GettableStatus>,
}

#[derive(Debug, Clone, Deserialize)]
struct GettableStatus {
    state: String,
}

/// Reconciles against one Alertmanager.
#[derive(Debug, Clone)]
pub struct Reconciler {
    service: IncidentService,
    base_url: String,
    client: reqwest::Client,
}

/// What a reconciliation did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ReconcileReport {
    /// Alerts Watchpost held as firing that Alertmanager no longer has: resolved now.
    pub resolved: usize,
    /// Active alerts in Alertmanager that Watchpost did not know as firing: applied as firing.
    pub fired: usize,
}

impl Reconciler {
    /// A reconciler for the Alertmanager at `base_url` (for example `http://alertmanager:9093`).
    pub fn new(service: IncidentService, base_url: impl Into<String>) -> Self {
        Self {
            service,
            base_url: base_url.into().trim_end_matches('/').to_owned(),
            client: crate::notify::http_client(),
        }
    }

    /// One reconciliation round.
    pub async fn reconcile_once(&self) -> Result<ReconcileReport, crate::IncidentError> {
        let url = format!(
            "{}/api/v2/alerts?active=true&silenced=true&inhibited=true&unprocessed=false",
            self.base_url
        );
        let unavailable = |e: &dyn std::fmt::Display| {
            crate::IncidentError::Unavailable(format!(
                "cannot read alerts from Alertmanager at {url}: {e}; check the reconciliation URL"
            ))
        };
        let response = self
            .client
            .get(&url)
            .send()
            .await
            .map_err(|e| unavailable(&e))?;
        if !response.status().is_success() {
            return Err(unavailable(&response.status()));
        }
        let active: Vec<GettableAlert> = response.json().await.map_err(|e| unavailable(&e))?;
        let active: Vec<GettableAlert> = active
            .into_iter()
            .filter(|a| {
                a.status
                    .as_ref()
                    .is_none_or(|s| s.state == "active" || s.state == "suppressed")
            })
            .collect();
        let known: Vec<_> = self.service.store().firing_alerts().await?;
        let known_fps: HashSet<&str> = known.iter().map(|a| a.fingerprint.as_str()).collect();
        let active_fps: HashSet<&str> = active.iter().map(|a| a.fingerprint.as_str()).collect();
        let now = self.service.now();
        let mut alerts = Vec::new();
        let mut report = ReconcileReport::default();
        for a in known
            .iter()
            .filter(|a| !active_fps.contains(a.fingerprint.as_str()))
        {
            report.resolved += 1;
            alerts.push(Alert {
                status: AlertStatus::Resolved,
                labels: a.labels.clone(),
                annotations: a.annotations.clone(),
                starts_at: a.starts_at,
                ends_at: Some(now),
                generator_url: a.generator_url.clone(),
                fingerprint: Some(a.fingerprint.clone()),
            });
        }
        for a in active
            .iter()
            .filter(|a| !known_fps.contains(a.fingerprint.as_str()))
        {
            report.fired += 1;
            alerts.push(Alert {
                status: AlertStatus::Firing,
                labels: a.labels.clone(),
                annotations: a.annotations.clone(),
                starts_at: a.starts_at,
                ends_at: None,
                generator_url: a.generator_url.clone(),
                fingerprint: Some(a.fingerprint.clone()),
            });
        }
        if !alerts.is_empty() {
            let payload = WebhookPayload {
                version: "4".into(),
                group_key: String::new(),
                truncated_alerts: 0,
                status: AlertStatus::Firing,
                receiver: "reconciliation".into(),
                group_labels: BTreeMap::new(),
                common_labels: BTreeMap::new(),
                common_annotations: BTreeMap::new(),
                external_url: self.base_url.clone(),
                alerts,
            };
            self.service.ingest(payload, None).await?;
        }
        Ok(report)
    }

    /// Reconciles now and then every `every` until `stop` is cancelled.
    pub fn spawn(self, every: Duration, stop: CancellationToken) -> tokio::task::JoinHandle<()> {
        tokio::spawn(async move {
            loop {
                match self.reconcile_once().await {
                    Ok(r) if r != ReconcileReport::default() => {
                        tracing::info!(
                            resolved = r.resolved,
                            fired = r.fired,
                            "reconciled alerts with Alertmanager"
                        );
                    }
                    Ok(_) => {}
                    Err(e) => tracing::warn!(error = %e, "alert reconciliation failed"),
                }
                tokio::select! {
                    () = stop.cancelled() => break,
                    () = tokio::time::sleep(every) => {}
                }
            }
        })
    }
}
