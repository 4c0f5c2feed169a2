//! [`IncidentError`]: everything that can go wrong in this crate, with what to do about it.

use crate::engine::OpError;

/// Errors of the incident crate.
#[derive(Debug, thiserror::Error)]
pub enum IncidentError {
    /// The store could not be reached or refused the work; the webhook answers 503 so Alertmanager retries.
    #[error(
        "incident store unavailable: {0}; check the database (DATABASE_URL or the SQLite file) and retry"
    )]
    Unavailable(String),
    /// A stored row could not be read back.
    #[error("stored incident data is unreadable: {0}")]
    Corrupt(String),
    /// Applying migrations failed.
    #[error(
        "cannot migrate the incident schema: {0}; check that the database user may create tables"
    )]
    Migration(String),
    /// The incident does not exist.
    #[error("incident {0} not found")]
    NotFound(String),
    /// The operation does not apply to the incident in its current state.
    #[error(transparent)]
    Conflict(#[from] OpError),
    /// A notifier or worker setting is wrong.
    #[error("invalid incident configuration: {0}")]
    Config(String),
}

impl From<serde_json::Error> for IncidentError {
    fn from(e: serde_json::Error) -> Self {
        IncidentError::Corrupt(e.to_string())
    }
}
