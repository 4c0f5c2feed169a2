//! [`RateLimitError`]: what can go wrong configuring or reaching a rate-limit store.

/// Errors of this crate.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RateLimitError {
    /// A policy cannot be enforced as written.
    #[error("rate-limit policy {name:?} is invalid: {why}")]
    InvalidPolicy {
        /// The policy's name.
        name: String,
        /// What to change.
        why: String,
    },
    /// A configuration value is out of range.
    #[error("rate-limit configuration is invalid: {0}")]
    InvalidConfig(String),
    /// The Redis URL does not parse.
    #[error(
        "cannot use Redis URL {url:?} for rate limits: {reason}; set WATCHPOST_REDIS_URL to redis://host:port/"
    )]
    RedisUrl {
        /// The URL as given (credentials removed).
        url: String,
        /// Why it was refused.
        reason: String,
    },
    /// A Redis call failed.
    #[error("rate-limit store Redis at {addr} failed: {reason}; is it running and reachable?")]
    Redis {
        /// Where Redis was expected.
        addr: String,
        /// The client's error.
        reason: String,
    },
    /// A Redis call took longer than the configured timeout.
    #[error("rate-limit store Redis at {addr} did not answer within {timeout_ms} ms")]
    RedisTimeout {
        /// Where Redis was expected.
        addr: String,
        /// The timeout.
        timeout_ms: u64,
    },
    /// The circuit breaker is open after repeated failures; Redis is not called until it closes.
    #[error("rate-limit store Redis is skipped for now after repeated failures (circuit open)")]
    CircuitOpen,
}
