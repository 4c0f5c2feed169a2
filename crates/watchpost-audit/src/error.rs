//! [`AuditError`]: everything that can go wrong while recording, storing or verifying audit events.

use std::path::PathBuf;

/// An audit failure, with what an operator needs to act on it.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AuditError {
    /// The event, once redacted and serialised, is larger than the hard limit.
    #[error(
        "the audit event is {size} bytes, over the limit of {limit} bytes; send a smaller payload"
    )]
    EventTooLarge {
        /// Serialised size.
        size: usize,
        /// The limit.
        limit: usize,
    },
    /// The writer task is gone (the auditor was shut down).
    #[error(
        "the audit writer has stopped; events can no longer be recorded (was shutdown() called?)"
    )]
    WriterStopped,
    /// Neither the store nor the spool accepted the event.
    #[error("the audit event could not be stored durably: {0}")]
    NotDurable(String),
    /// The spool is at its size cap.
    #[error(
        "the audit spool in {dir} is full ({bytes} of {cap} bytes); restore the database connection or raise the spool cap"
    )]
    SpoolFull {
        /// Spool directory.
        dir: PathBuf,
        /// Bytes used.
        bytes: u64,
        /// The cap.
        cap: u64,
    },
    /// A file or directory could not be used.
    #[error("audit file error on {path}: {source}")]
    Io {
        /// The path involved.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// The store failed.
    #[error("audit store ({backend}) failed: {message}")]
    Store {
        /// `memory`, `sqlite` or `postgres`.
        backend: &'static str,
        /// What failed.
        message: String,
    },
    /// A store operation took too long.
    #[error(
        "audit store ({backend}) did not answer within {millis} ms; is the database reachable?"
    )]
    Timeout {
        /// The backend.
        backend: &'static str,
        /// The timeout.
        millis: u64,
    },
    /// A migration failed.
    #[error("audit schema migration failed on {backend}: {message}")]
    Migration {
        /// The backend.
        backend: &'static str,
        /// What failed.
        message: String,
    },
    /// The signing key is unusable.
    #[error(
        "audit signing key problem: {0}; configure a 32-byte Ed25519 seed as 64 hex characters"
    )]
    SigningKey(String),
    /// Data read back could not be decoded.
    #[error("audit data is corrupt: {0}")]
    Corrupt(String),
    /// Bad configuration or input.
    #[error("invalid audit configuration: {0}")]
    Config(String),
}

impl AuditError {
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Self::Io {
            path: path.into(),
            source,
        }
    }

    /// A [`AuditError::Store`] (for custom [`AuditStore`](crate::AuditStore) implementations).
    pub fn store(backend: &'static str, message: impl std::fmt::Display) -> Self {
        Self::Store {
            backend,
            message: message.to_string(),
        }
    }
}

/// Shorthand for results in this crate.
pub type Result<T, E = AuditError> = std::result::Result<T, E>;
