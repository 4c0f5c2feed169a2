//! A tamper-evident audit trail for axum services that loses nothing, at group-commit speed.

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
