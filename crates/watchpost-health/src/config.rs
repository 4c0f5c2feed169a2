//! [`HealthConfig`]: plain settings the server maps its environment onto.

use std::time::Duration;

use crate::check::DEFAULT_CACHE_TTL;

/// Who sees full details (output, observed values, process figures) in the detailed view and
/// failure reasons in probe answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ShowDetails {
    /// Nobody: statuses only.
    Never,
    /// Callers with a root [`Principal`](watchpost_core::Principal) in the request extensions.
    #[default]
    WhenAuthorized,
    /// Everyone.
    Always,
}

impl ShowDetails {
    /// `never`, `when_authorized` or `always`.
    pub fn as_str(self) -> &'static str {
        match self {
            ShowDetails::Never => "never",
            ShowDetails::WhenAuthorized => "when_authorized",
            ShowDetails::Always => "always",
        }
    }
}

/// A `show_details` value that is not known.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown show_details value {0:?}: expected never, when_authorized or always")]
pub struct UnknownShowDetails(pub String);

impl std::str::FromStr for ShowDetails {
    type Err = UnknownShowDetails;
    /// Accepts `never`, `when_authorized` (also `when-authorized`, `root`) and `always`, in any case.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "never" => Ok(ShowDetails::Never),
            "when_authorized" | "when-authorized" | "root" => Ok(ShowDetails::WhenAuthorized),
            "always" => Ok(ShowDetails::Always),
            _ => Err(UnknownShowDetails(s.to_owned())),
        }
    }
}

/// Settings of a [`HealthRegistry`](crate::HealthRegistry) and its endpoints.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct HealthConfig {
    /// The service name in `GET /health` (`service`) and the detailed view (`serviceId` when
    /// that is unset). Default `watchpost`.
    pub service: String,
    /// The store backend shown as `storeBackend` (`sqlite`, `postgres`, `memory`); omitted when `None`.
    pub store_backend: Option<String>,
    /// The check whose result is `db` in the seed `GET /ready` shape (e.g. `postgres`).
    pub db_check: Option<String>,
    /// The detailed view's `version`.
    pub version: Option<String>,
    /// The detailed view's `releaseId`.
    pub release_id: Option<String>,
    /// The detailed view's `serviceId`.
    pub service_id: Option<String>,
    /// The detailed view's `description`.
    pub description: Option<String>,
    /// Who sees details.
    pub show_details: ShowDetails,
    /// `Cache-Control: max-age` when no check is involved.
    pub default_cache_ttl: Duration,
}

impl Default for HealthConfig {
    fn default() -> Self {
        Self {
            service: "watchpost".to_owned(),
            store_backend: None,
            db_check: None,
            version: None,
            release_id: None,
            service_id: None,
            description: None,
            show_details: ShowDetails::default(),
            default_cache_ttl: DEFAULT_CACHE_TTL,
        }
    }
}

impl HealthConfig {
    /// Defaults with the given service name.
    pub fn new(service: impl Into<String>) -> Self {
        Self {
            service: service.into(),
            ..Self::default()
        }
    }

    /// Sets the store backend name.
    #[must_use]
    pub fn store_backend(mut self, backend: impl Into<String>) -> Self {
        self.store_backend = Some(backend.into());
        self
    }

    /// Names the check reported as `db` by `GET /ready`.
    #[must_use]
    pub fn db_check(mut self, name: impl Into<String>) -> Self {
        self.db_check = Some(name.into());
        self
    }

    /// Sets the version.
    #[must_use]
    pub fn version(mut self, version: impl Into<String>) -> Self {
        self.version = Some(version.into());
        self
    }

    /// Sets the release id.
    #[must_use]
    pub fn release_id(mut self, release_id: impl Into<String>) -> Self {
        self.release_id = Some(release_id.into());
        self
    }

    /// Sets the service id.
    #[must_use]
    pub fn service_id(mut self, service_id: impl Into<String>) -> Self {
        self.service_id = Some(service_id.into());
        self
    }

    /// Sets the description.
    #[must_use]
    pub fn description(mut self, description: impl Into<String>) -> Self {
        self.description = Some(description.into());
        self
    }

    /// Sets who sees details.
    #[must_use]
    pub fn show_details(mut self, show: ShowDetails) -> Self {
        self.show_details = show;
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn show_details_parses() {
        assert_eq!("Always".parse::<ShowDetails>(), Ok(ShowDetails::Always));
        assert_eq!(
            "when-authorized".parse::<ShowDetails>(),
            Ok(ShowDetails::WhenAuthorized)
        );
        assert_eq!(
            "never".parse::<ShowDetails>().map(ShowDetails::as_str),
            Ok("never")
        );
        let err = "sometimes".parse::<ShowDetails>().unwrap_err();
        assert!(
            err.to_string()
                .contains("expected never, when_authorized or always")
        );
    }
}
