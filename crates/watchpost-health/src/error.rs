//! [`HealthError`]: what can go wrong while setting up health checks.

/// Errors from registering or configuring health checks.
///
/// Running a check never returns an error: a failing dependency is a `fail` result.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum HealthError {
    /// Two checks were registered under one name.
    #[error("a health check named {0:?} is already registered; give each check its own name")]
    DuplicateCheck(String),
    /// A check name that cannot be used as a URL segment, metric label and health+json key.
    #[error(
        "health check name {0:?} is invalid: use 1 to 64 characters from a-z, A-Z, 0-9, '-', '_' and '.'"
    )]
    InvalidName(String),
    /// Background mode asked for with a zero interval.
    #[error("the background health-check interval must be greater than zero")]
    ZeroInterval,
    /// Background mode started twice.
    #[error(
        "background health checks are already running; call shutdown() before starting them again"
    )]
    BackgroundRunning,
    /// Background mode needs a Tokio runtime.
    #[error("background health checks need a Tokio runtime: call start_background from inside one")]
    NoRuntime,
    /// The HTTP client for an HTTP dependency check could not be built.
    #[cfg(feature = "http")]
    #[error("cannot build the HTTP client for the health check of {url}: {source}")]
    HttpClient {
        /// The URL the check was for.
        url: String,
        /// Why the client could not be built.
        #[source]
        source: reqwest::Error,
    },
    /// The URL of an HTTP dependency check is not a valid absolute http(s) URL.
    #[cfg(feature = "http")]
    #[error("the health-check URL {url:?} is not a valid http:// or https:// URL: {reason}")]
    InvalidUrl {
        /// The URL given.
        url: String,
        /// Why it was refused.
        reason: String,
    },
    /// Disk-space thresholds that do not make sense.
    #[cfg(feature = "disk")]
    #[error(
        "disk check thresholds are invalid: fail below {fail_below}% must be at most warn below {warn_below}%, both within 0 to 100"
    )]
    InvalidThresholds {
        /// The warn threshold (percent free).
        warn_below: f64,
        /// The fail threshold (percent free).
        fail_below: f64,
    },
}

/// Whether `name` is usable as a check name.
pub(crate) fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}
