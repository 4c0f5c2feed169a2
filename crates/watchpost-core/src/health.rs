//! [`HealthStatus`]: pass, warn, fail (draft-inadarei-api-health-check), with the seed words
//! healthy, degraded, unhealthy and the HTTP status each maps to.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// The health of a check, a component or the whole service. Ordered so that the worst wins under `max`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum HealthStatus {
    /// Working.
    Pass,
    /// Working, with a problem worth a look (a non-critical dependency failing).
    Warn,
    /// Not working.
    Fail,
}

impl HealthStatus {
    /// `pass`, `warn` or `fail`.
    pub fn as_str(self) -> &'static str {
        match self {
            HealthStatus::Pass => "pass",
            HealthStatus::Warn => "warn",
            HealthStatus::Fail => "fail",
        }
    }

    /// The seed systems' word: `healthy`, `degraded` or `unhealthy`.
    pub fn seed_word(self) -> &'static str {
        match self {
            HealthStatus::Pass => "healthy",
            HealthStatus::Warn => "degraded",
            HealthStatus::Fail => "unhealthy",
        }
    }

    /// 200 for pass and warn, 503 for fail.
    pub fn http_status(self) -> http::StatusCode {
        match self {
            HealthStatus::Pass | HealthStatus::Warn => http::StatusCode::OK,
            HealthStatus::Fail => http::StatusCode::SERVICE_UNAVAILABLE,
        }
    }

    /// The worst of the statuses; `Pass` for none.
    pub fn worst(statuses: impl IntoIterator<Item = HealthStatus>) -> HealthStatus {
        statuses.into_iter().max().unwrap_or(HealthStatus::Pass)
    }
}

impl fmt::Display for HealthStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A status word that is not known.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown health status {0:?}: expected pass, warn or fail")]
pub struct UnknownStatus(pub String);

impl FromStr for HealthStatus {
    type Err = UnknownStatus;
    /// Accepts the draft's words, the seed words and `ok`/`up`/`down`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "pass" | "healthy" | "ok" | "up" => Ok(HealthStatus::Pass),
            "warn" | "degraded" => Ok(HealthStatus::Warn),
            "fail" | "unhealthy" | "down" | "error" => Ok(HealthStatus::Fail),
            _ => Err(UnknownStatus(s.to_owned())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn worst_wins() {
        use HealthStatus::*;
        assert_eq!(HealthStatus::worst([Pass, Warn, Pass]), Warn);
        assert_eq!(HealthStatus::worst([Pass, Fail, Warn]), Fail);
        assert_eq!(HealthStatus::worst([]), Pass);
        assert_eq!(Warn.http_status(), 200);
        assert_eq!(Fail.http_status(), 503);
        assert_eq!("degraded".parse::<HealthStatus>().unwrap(), Warn);
        assert_eq!(Fail.seed_word(), "unhealthy");
    }
}
