//! Who is calling: [`Principal`], [`Role`], why authentication failed ([`AuthFailure`]) and
//! the one authorization rule every Watchpost endpoint applies ([`authorize`]).
//!
//! The server authenticates API keys and inserts either a [`Principal`] or an
//! [`AuthFailure`] into the request extensions (nothing for an anonymous request).
//! Endpoints in the feature crates call [`authorize`] with the extensions, so a
//! missing, unknown or revoked key and a wrong role get the same problem body everywhere.
//! Library users without the Watchpost server insert a [`Principal`] from their own
//! authentication.

use std::fmt;
use std::str::FromStr;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::problem::Problem;

/// What a principal may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Operators: every endpoint, every tenant's data.
    Root,
    /// A tenant's key (the seed systems' "institution"): its own tenant's data only.
    Tenant,
}

impl Role {
    /// `root` or `tenant`.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Root => "root",
            Role::Tenant => "tenant",
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A role name that is neither `root` nor `tenant`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown role {0:?}: expected root or tenant")]
pub struct UnknownRole(pub String);

impl FromStr for Role {
    type Err = UnknownRole;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "root" => Ok(Role::Root),
            "tenant" | "institution" => Ok(Role::Tenant),
            other => Err(UnknownRole(other.to_owned())),
        }
    }
}

/// An authenticated caller.
///
/// The text is shared: cloning a principal (the request context and the response extensions
/// each keep one) copies pointers, not text.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Principal {
    /// The API key's id (never the secret).
    pub key_id: Arc<str>,
    /// The API key's human name.
    pub key_name: Arc<str>,
    /// The tenant the key belongs to; `None` for the configured root key.
    pub tenant_id: Option<Arc<str>>,
    /// What the key may do.
    pub role: Role,
}

impl Principal {
    /// A principal from its parts.
    pub fn new(
        key_id: impl Into<Arc<str>>,
        key_name: impl Into<Arc<str>>,
        tenant_id: Option<String>,
        role: Role,
    ) -> Self {
        Self {
            key_id: key_id.into(),
            key_name: key_name.into(),
            tenant_id: tenant_id.map(Arc::from),
            role,
        }
    }

    /// Whether this principal has the root role.
    pub fn is_root(&self) -> bool {
        self.role == Role::Root
    }
}

/// Why a presented credential was refused; inserted into request extensions by the authenticator.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AuthFailure {
    /// No credential was sent.
    Missing,
    /// The credential was not shaped like an API key (or the header was not valid text).
    Malformed,
    /// No key with that id and secret exists.
    Unknown,
    /// The key existed but was revoked.
    Revoked,
}

impl AuthFailure {
    /// A short, stable label for metrics and logs.
    pub fn as_str(self) -> &'static str {
        match self {
            AuthFailure::Missing => "missing",
            AuthFailure::Malformed => "malformed",
            AuthFailure::Unknown => "unknown",
            AuthFailure::Revoked => "revoked",
        }
    }

    /// The 401 problem for this failure; never says more than an operator may show a caller.
    pub fn problem(self) -> Problem {
        let detail = match self {
            AuthFailure::Missing => {
                "this endpoint needs an API key: send `Authorization: Bearer <key>` or `X-API-Key: <key>`"
            }
            AuthFailure::Malformed => "the credential sent is not a well-formed API key",
            AuthFailure::Unknown => "the API key sent is not recognised",
            AuthFailure::Revoked => "the API key sent has been revoked",
        };
        Problem::new(http::StatusCode::UNAUTHORIZED)
            .with_type(crate::problem::type_uri("unauthorized"))
            .with_detail(detail)
            .with_extension("reason", self.as_str())
    }
}

/// What an endpoint requires of its caller.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Any valid API key, root or tenant.
    AnyKey,
    /// A key with the root role.
    Root,
}

/// Applies `access` to the request extensions the authenticator filled.
///
/// Returns the principal, or the 401 problem (no key, or a refused key: the reason
/// comes from the [`AuthFailure`] in the extensions) or the 403 problem (a tenant key
/// on a root-only endpoint). An endpoint is never open because nothing was configured.
pub fn authorize(extensions: &http::Extensions, access: Access) -> Result<Principal, Problem> {
    if let Some(principal) = extensions.get::<Principal>() {
        return match access {
            Access::AnyKey => Ok(principal.clone()),
            Access::Root if principal.is_root() => Ok(principal.clone()),
            Access::Root => Err(Problem::new(http::StatusCode::FORBIDDEN)
                .with_type(crate::problem::type_uri("forbidden"))
                .with_detail("this endpoint needs a key with the root role")),
        };
    }
    let failure = extensions
        .get::<AuthFailure>()
        .copied()
        .unwrap_or(AuthFailure::Missing);
    Err(failure.problem())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn authorize_matrix() {
        let mut ext = http::Extensions::new();
        let p = authorize(&ext, Access::AnyKey).unwrap_err();
        assert_eq!(p.status(), http::StatusCode::UNAUTHORIZED);
        assert_eq!(p.extension("reason"), Some(&serde_json::json!("missing")));

        ext.insert(AuthFailure::Revoked);
        let p = authorize(&ext, Access::Root).unwrap_err();
        assert_eq!(p.extension("reason"), Some(&serde_json::json!("revoked")));

        let mut ext = http::Extensions::new();
        ext.insert(Principal::new("k", "n", Some("t".into()), Role::Tenant));
        assert!(authorize(&ext, Access::AnyKey).is_ok());
        assert_eq!(
            authorize(&ext, Access::Root).unwrap_err().status(),
            http::StatusCode::FORBIDDEN
        );
        ext.insert(Principal::new("r", "root", None, Role::Root));
        assert!(authorize(&ext, Access::Root).is_ok());
    }

    #[test]
    fn roles_parse() {
        assert_eq!("root".parse::<Role>().unwrap(), Role::Root);
        assert_eq!("institution".parse::<Role>().unwrap(), Role::Tenant);
        assert!("admin".parse::<Role>().is_err());
    }
}
