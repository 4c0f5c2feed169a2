//! A tamper-evident audit trail for axum services that loses nothing, at group-commit speed.
//!
//! Events are recorded three ways: the [`AuditLayer`] (a Kubernetes-style [`AuditPolicy`]
//! picks requests and the level of detail; the outcome is recorded when the response is
//! ready), the programmatic [`Auditor::record`] API, and `POST /audit/events` from the
//! [`router`]. One writer task per process seals events into a SHA-256 hash chain (a stream
//! per writer), writes them in group commits (binary `COPY` on PostgreSQL), falls back to
//! an fsynced spool on disk when the store is down and replays it in order afterwards, and
//! signs Ed25519 [`Checkpoint`]s every N events or T seconds. [`verify()`] reports the first
//! broken link, sequence gaps and missing or bad checkpoints of every stream.
//!
//! # Example
//!
//! ```
//! use std::sync::Arc;
//! use watchpost_audit::{Action, AuditLayer, Auditor, MemoryStore, NewEvent, VerifyOptions};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), watchpost_audit::AuditError> {
//! let auditor = Auditor::builder(Arc::new(MemoryStore::new())).start()?;
//!
//! // Programmatic recording: returns once the event is durable.
//! let id = auditor
//!     .record(NewEvent::new(Action::ConfigChange).resource("policy", "default"))
//!     .await?;
//!
//! // An axum app with the layer and the query/verify endpoints.
//! let app: axum::Router = axum::Router::new()
//!     .route("/things", axum::routing::post(|| async { "ok" }))
//!     .layer(AuditLayer::new(auditor.clone()))
//!     .merge(watchpost_audit::router(auditor.clone()));
//! # let _ = app;
//!
//! auditor.shutdown().await;
//! let report = watchpost_audit::verify(auditor.store().as_ref(), &VerifyOptions::default()).await?;
//! assert!(report.ok);
//! assert!(auditor.store().get(id).await?.is_some());
//! # Ok(())
//! # }
//! ```
//!
//! # Feature flags
//!
//! | feature | what it adds |
//! | --- | --- |
//! | `sqlite` | `store::sqlite::SqliteStore` (deadpool-sqlite, WAL) and its `migrate` |
//! | `postgres` | `store::postgres::PostgresStore` (partitioned append-only tables, binary `COPY`), `migrate`, `grant_append_only`, retention |
//! | `openapi` | utoipa annotations and `openapi()` |
//!
//! Without features the crate offers the memory store, console and file sinks, the layer,
//! the router and verification.

pub mod auditor;
pub mod chain;
pub mod checkpoint;
pub mod error;
pub mod event;
pub mod http;
pub mod layer;
pub mod metrics;
pub mod policy;
pub mod redact;
#[cfg(feature = "postgres")]
pub mod retention;
pub mod sink;
pub mod spool;
pub mod store;
pub mod verify;

pub use auditor::{AuditConfig, Auditor, AuditorBuilder};
pub use chain::{ChainHead, compute_hash};
pub use checkpoint::{Checkpoint, CheckpointSigner};
pub use error::{AuditError, Result};
pub use event::{Action, Actor, AuditEvent, NewEvent, Outcome, OutcomeResult};
#[cfg(feature = "openapi")]
pub use http::openapi;
pub use http::{router, router_with};
pub use layer::{Audit, AuditLayer, DeliveryMode};
pub use metrics::AuditMetrics;
pub use policy::{AuditPolicy, Level, PolicyRule};
pub use redact::Redactor;
pub use sink::{AuditSink, ConsoleSink, FileSink, FileSinkConfig};
pub use store::{AuditStore, Cursor, EventQuery, MemoryStore, Page};
pub use verify::{VerifyOptions, VerifyReport, verify};
