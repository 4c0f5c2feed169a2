//! Alertmanager webhooks to deduplicated incidents.

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
pub use http::router;
#[cfg(feature = "openapi")]
pub use http::openapi;
pub use service::{IncidentConfig, IncidentService};
