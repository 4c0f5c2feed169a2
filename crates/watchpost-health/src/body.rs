//! The JSON bodies of the endpoints (serialised by the router, described in OpenAPI).

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::Serialize;
use watchpost_core::HealthStatus;

use crate::lifecycle::LifecyclePhase;

/// `GET /health`: the seed shape.
#[derive(Debug, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub(crate) struct ServiceBody {
    /// Always `ok`: the process answers.
    pub(crate) status: &'static str,
    /// The service name.
    pub(crate) service: String,
    /// The configured store backend.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) store_backend: Option<String>,
}

/// `GET /health/live`, `/health/ready` and `/health/ready/{check}` without `?verbose`.
#[derive(Debug, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub(crate) struct ProbeBody {
    /// `pass`, `warn` or `fail`.
    #[cfg_attr(feature = "openapi", schema(value_type = String, example = "pass"))]
    pub(crate) status: HealthStatus,
    /// The same status in the seed words: `healthy`, `degraded`, `unhealthy`.
    pub(crate) health: &'static str,
    /// `starting`, `started` or `shutting_down`.
    pub(crate) phase: LifecyclePhase,
    /// Why the lifecycle fails readiness, when it does.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) reason: Option<&'static str>,
    /// Per check.
    pub(crate) checks: BTreeMap<String, ProbeCheckBody>,
    /// Names given in `exclude` that match no check.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub(crate) unknown_excludes: Vec<String>,
}

/// One check in a probe answer.
#[derive(Debug, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub(crate) struct ProbeCheckBody {
    /// The status after criticality.
    #[cfg_attr(feature = "openapi", schema(value_type = String, example = "pass"))]
    pub(crate) status: HealthStatus,
    /// Whether a failure fails the probe.
    pub(crate) critical: bool,
    /// The output line (details only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) output: Option<String>,
    /// The run's duration in milliseconds (details only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) duration_ms: Option<f64>,
}

/// `GET /ready`: the seed shape.
#[derive(Debug, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub(crate) struct ReadyBody {
    /// Whether the service is ready.
    pub(crate) ok: bool,
    /// The configured store backend.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) store_backend: Option<String>,
    /// The database check, when one is configured.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) db: Option<DbBody>,
    /// Why the lifecycle fails readiness, when it does.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) reason: Option<&'static str>,
}

/// The database part of `GET /ready`.
#[derive(Debug, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub(crate) struct DbBody {
    /// Whether the database check passes.
    pub(crate) ok: bool,
    /// Why it fails (details only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) error: Option<String>,
}

/// `GET /health/detailed`: `application/health+json` (draft-inadarei-api-health-check).
#[derive(Debug, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub(crate) struct HealthJson {
    /// `pass`, `warn` or `fail`.
    #[cfg_attr(feature = "openapi", schema(value_type = String, example = "pass"))]
    pub(crate) status: HealthStatus,
    /// The seed word: `healthy`, `degraded`, `unhealthy`.
    pub(crate) health: &'static str,
    /// The service's version.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) version: Option<String>,
    /// The release id.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) release_id: Option<String>,
    /// The service id.
    pub(crate) service_id: String,
    /// A description of the service.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) description: Option<String>,
    /// Lifecycle phase.
    pub(crate) phase: LifecyclePhase,
    /// Keyed `"<component>:<measurement>"`.
    pub(crate) checks: BTreeMap<String, Vec<HealthJsonEntry>>,
    /// Seconds since start.
    pub(crate) uptime: f64,
    /// When this answer was made.
    pub(crate) timestamp: DateTime<Utc>,
    /// Process figures (details only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) process: Option<ProcessBody>,
}

/// One measurement of one component.
#[derive(Debug, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub(crate) struct HealthJsonEntry {
    /// `datastore`, `system`, `component`, ...
    pub(crate) component_type: String,
    /// The observed value (details only).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(value_type = Object))]
    pub(crate) observed_value: Option<serde_json::Value>,
    /// The unit of the observed value (details only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) observed_unit: Option<String>,
    /// The status after criticality.
    #[cfg_attr(feature = "openapi", schema(value_type = String, example = "pass"))]
    pub(crate) status: HealthStatus,
    /// When the measurement was taken.
    pub(crate) time: DateTime<Utc>,
    /// The output line (details only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) output: Option<String>,
}

/// Process figures in the detailed view.
#[derive(Debug, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub(crate) struct ProcessBody {
    /// Resident memory in MB, where known.
    pub(crate) resident_memory_mb: Option<f64>,
    /// Open client connections, where known.
    pub(crate) open_connections: Option<u64>,
}
