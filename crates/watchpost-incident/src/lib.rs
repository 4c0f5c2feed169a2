//! Alertmanager webhooks to deduplicated incidents, with a typed timeline, a durable
//! notification outbox (Slack, PagerDuty, email, signed webhook) and a public status page.
//!
//! Alertmanager delivers at least once: it retries, re-sends groups and HA peers duplicate on
//! purpose. This crate identifies every alert event by (fingerprint, status, startsAt, endsAt),
//! applies it inside one store transaction together with the notifications it causes, and
//! answers 2xx only once that transaction committed, so redeliveries change nothing and notify
//! no one, across replicas too (database constraints, not process locks).
//!
//! # Example
//!
//! ```
//! use std::sync::Arc;
//! use watchpost_incident::store::MemoryStore;
//! use watchpost_incident::{IncidentConfig, IncidentService};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! let service = IncidentService::builder(Arc::new(MemoryStore::new()))
//!     .config(IncidentConfig {
//!         alertmanager_token: Some("change-me".into()),
//!         ..IncidentConfig::default()
//!     })
//!     .build();
//! let mut registry = prometheus_client::registry::Registry::default();
//! service.register_metrics(&mut registry);
//! // Mount under any prefix; the server puts a `Principal` into request extensions for the API.
//! let app: axum::Router = axum::Router::new().merge(watchpost_incident::router(service.clone()));
//!
//! let payload = watchpost_incident::alertmanager::WebhookPayload::parse(br#"{
//!   "version": "4", "status": "firing", "receiver": "watchpost",
//!   "alerts": [{"status": "firing", "labels": {"alertname": "ApiDown", "severity": "critical"},
//!               "startsAt": "2026-01-01T00:00:00Z", "endsAt": "0001-01-01T00:00:00Z"}]
//! }"#).unwrap();
//! let changes = service.ingest(payload.clone(), None).await.unwrap();
//! assert_eq!(changes.incidents.len(), 1);
//! // A redelivery changes nothing.
//! assert!(service.ingest(payload, None).await.unwrap().is_empty());
//! # let _ = app;
//! # }
//! ```
//!
//! # Feature flags
//!
//! | feature | default | what it adds |
//! | --- | --- | --- |
//! | `sqlite` | no | `store::sqlite::SqliteStore` (deadpool-sqlite, WAL) and its migrations |
//! | `postgres` | no | `store::postgres::PostgresStore` (deadpool-postgres) and its migrations |
//! | `smtp` | no | `notify::SmtpNotifier` (email through lettre) |
//! | `openapi` | no | utoipa annotations and `openapi()` |
//!
//! # Modules
//!
//! | module | what lives there |
//! | --- | --- |
//! | [`alertmanager`] | the version 4 payload, Alertmanager's fingerprint, the event idempotency key |
//! | [`model`] | [`model::Incident`], its alerts and typed timeline |
//! | [`policy`] | opening, grouping, resolve, reopen, maintenance and routing policies |
//! | [`engine`] | the pure decision logic every store runs inside its transaction |
//! | [`store`] | [`store::IncidentStore`] and its memory, SQLite and PostgreSQL implementations |
//! | [`outbox`] | outbox entries and notifications |
//! | [`notify`] | Slack, PagerDuty, SMTP and webhook notifiers |
//! | [`worker`] | [`worker::OutboxWorker`]: delivery, retries, spacing |
//! | [`http`] | [`router`]: webhook, incident API, status page |
//! | [`status`] | the Statuspage-compatible summary and the HTML page |
//! | [`metrics`] | [`metrics::IncidentMetrics`] |
//! | [`reconcile`] | [`reconcile::Reconciler`] against Alertmanager's `/api/v2/alerts` |
//! | [`service`] | [`IncidentService`], [`IncidentConfig`] and the mutation hook |

pub mod alertmanager;
pub mod engine;
pub mod error;
pub mod http;
pub mod metrics;
pub mod model;
pub mod notify;
pub mod outbox;
pub mod policy;
pub mod reconcile;
pub mod service;
pub mod status;
pub mod store;
pub mod worker;

pub use error::IncidentError;
#[cfg(feature = "openapi")]
pub use http::openapi;
pub use http::router;
pub use service::{
    IncidentConfig, IncidentMutation, IncidentService, IncidentServiceBuilder, MutationHook,
};
