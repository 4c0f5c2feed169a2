//! Liveness, readiness and detailed health for axum services, the way Kubernetes, Spring and
//! operators expect.
//!
//! Register checks in a [`HealthRegistry`], each with a criticality, the probes it belongs to,
//! a timeout and a cache lifetime; mount [`router`] anywhere. Checks run concurrently; a run
//! that exceeds its timeout is `fail` ("timed out after N ms"); a panicking check is `fail`;
//! concurrent probes share one run in flight and results are cached, so a probe storm costs
//! one dependency query per cache lifetime. In background mode
//! ([`HealthRegistry::start_background`]) endpoints answer from the last results, and a
//! result older than three intervals is `fail` ("stale").
//!
//! Statuses are [`HealthStatus`] `pass`/`warn`/`fail` (draft-inadarei-api-health-check),
//! shown also as `healthy`/`degraded`/`unhealthy`; the worst wins; 200 for pass and warn,
//! 503 for fail. A non-critical check's failure shows as `warn`.
//!
//! # Example
//!
//! ```
//! use std::time::Duration;
//! use watchpost_health::{Check, CheckOutcome, HealthConfig, HealthRegistry, check_fn, router};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let health = HealthRegistry::new(HealthConfig::new("orders").store_backend("postgres"));
//! health.register(
//!     Check::new("queue", check_fn(|| async { CheckOutcome::pass() }))
//!         .timeout(Duration::from_millis(500))
//!         .cache_for(Duration::from_secs(2)),
//! )?;
//! health.register(Check::new("search", check_fn(|| async { CheckOutcome::fail("down") })).non_critical())?;
//!
//! let app: axum::Router = axum::Router::new().merge(router(health.clone()));
//! # let _ = app;
//!
//! // Readiness fails until start-up is complete ...
//! let report = health.probe(watchpost_health::Probe::Readiness, &[]).await;
//! assert_eq!(report.status, watchpost_health::HealthStatus::Fail);
//! health.mark_started();
//! // ... then a failing non-critical check only degrades it.
//! let report = health.probe(watchpost_health::Probe::Readiness, &[]).await;
//! assert_eq!(report.status, watchpost_health::HealthStatus::Warn);
//! // On SIGTERM: readiness fails at once, liveness stays up.
//! health.mark_shutting_down();
//! # Ok(())
//! # }
//! ```
//!
//! # Endpoints
//!
//! | path | answers |
//! | --- | --- |
//! | `GET /health` | `{"status":"ok","service":"watchpost","storeBackend":"sqlite"}` |
//! | `GET /health/live` | liveness: the checks marked for it (none by default), never the lifecycle |
//! | `GET /health/ready` | readiness; `?verbose` (Kubernetes text), `?exclude=NAME` (repeatable) |
//! | `GET /health/ready/{check}` | one check; 404 `application/problem+json` for an unknown name |
//! | `GET /ready` | `{"ok":true,"storeBackend":"postgres","db":{"ok":true}}` |
//! | `GET /health/detailed` | `application/health+json`; details for a root principal or with [`ShowDetails::Always`] |
//!
//! # Feature flags
//!
//! | feature | default | what it adds |
//! | --- | --- | --- |
//! | `postgres` | no | `checks::PostgresCheck` over a `deadpool_postgres::Pool` |
//! | `sqlite` | no | `checks::SqliteCheck` over a `deadpool_sqlite::Pool` |
//! | `redis` | no | `checks::RedisCheck` (`PING`) |
//! | `http` | no | `checks::HttpCheck` (GET, expect 2xx) via `reqwest` with rustls |
//! | `disk` | no | `checks::DiskCheck` (statvfs via `nix`) |
//! | `memory` | no | `checks::MemoryCheck` (resident memory against the cgroup limit) |
//! | `openapi` | no | `openapi()`, the OpenAPI document of [`router`] |
//!
//! # Metrics
//!
//! [`HealthRegistry::register_metrics`] registers `watchpost_health_check_status{check}`
//! (1 pass, 0.5 warn, 0 fail) and `watchpost_health_check_duration_seconds{check}`, from
//! the last run of each check.

mod body;
mod check;
pub mod checks;
mod config;
mod error;
mod lifecycle;
mod metrics;
mod process;
mod registry;
mod router;

pub use check::{
    Check, CheckFuture, CheckOutcome, DEFAULT_CACHE_TTL, DEFAULT_TIMEOUT, FnCheck, HealthCheck,
    Observation, check_fn,
};
pub use config::{HealthConfig, ShowDetails, UnknownShowDetails};
pub use error::HealthError;
pub use lifecycle::{Lifecycle, LifecyclePhase};
pub use registry::{
    CheckReport, HealthRegistry, OpenConnections, Probe, ProbeReport, RunObserver,
    STALE_AFTER_INTERVALS,
};
#[cfg(feature = "openapi")]
pub use router::openapi;
pub use router::{HEALTH_JSON, PATHS, router};
pub use watchpost_core::HealthStatus;

impl HealthRegistry {
    /// The health endpoints for this registry; same as [`router`].
    pub fn router(&self) -> axum::Router {
        router(self.clone())
    }
}
