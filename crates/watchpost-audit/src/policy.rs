//! [`AuditPolicy`]: which requests the layer records, and how much, in the Kubernetes audit-policy style.
//!
//! Rules are tried in order; the first whose methods, routes and roles all match decides the
//! [`Level`]. An empty list matches anything. Routes are matched against the route template
//! (`/incidents/{id}`), exactly or, with a trailing `*`, by prefix. Roles are `root`,
//! `tenant` or `anonymous`. When no rule matches, the default applies: every non-GET request
//! and every request to an admin route is recorded at [`Level::Metadata`], nothing else.

use serde::{Deserialize, Serialize};
use watchpost_core::Role;

/// How much of a request to record.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Level {
    /// Nothing.
    None,
    /// Who, what, when, outcome; no body.
    Metadata,
    /// Metadata plus the request body as payload (redacted, bounded).
    Request,
}

/// One rule.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct PolicyRule {
    /// Methods (`POST`); empty matches all.
    pub methods: Vec<String>,
    /// Route templates, exact or `prefix*`; empty matches all.
    pub routes: Vec<String>,
    /// `root`, `tenant`, `anonymous`; empty matches all.
    pub roles: Vec<String>,
    /// The level when this rule matches.
    pub level: Option<Level>,
}

impl PolicyRule {
    fn matches(&self, method: &http::Method, route: Option<&str>, role: Option<Role>) -> bool {
        let method_ok = self.methods.is_empty()
            || self
                .methods
                .iter()
                .any(|m| m.eq_ignore_ascii_case(method.as_str()));
        let route_ok = self.routes.is_empty()
            || route.is_some_and(|r| {
                self.routes.iter().any(|p| match p.strip_suffix('*') {
                    Some(prefix) => r.starts_with(prefix),
                    None => p == r,
                })
            });
        let role_name = role.map_or("anonymous", Role::as_str);
        let role_ok = self.roles.is_empty() || self.roles.iter().any(|r| r == role_name);
        method_ok && route_ok && role_ok
    }
}

/// The audit policy.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct AuditPolicy {
    /// Rules, first match wins.
    pub rules: Vec<PolicyRule>,
    /// Route prefixes that count as admin routes for the default.
    pub admin_prefixes: Vec<String>,
}

impl Default for AuditPolicy {
    fn default() -> Self {
        Self {
            rules: Vec::new(),
            admin_prefixes: vec!["/admin".into()],
        }
    }
}

impl AuditPolicy {
    /// Adds a rule at the end.
    #[must_use]
    pub fn rule(mut self, rule: PolicyRule) -> Self {
        self.rules.push(rule);
        self
    }

    /// Reads a policy from JSON (`{"rules":[{"methods":["GET"],"routes":["/audit/*"],"level":"none"}]}`).
    pub fn from_json(text: &str) -> crate::Result<Self> {
        serde_json::from_str(text)
            .map_err(|e| crate::AuditError::Config(format!("audit policy: {e}")))
    }

    /// The level for a request.
    pub fn level(&self, method: &http::Method, route: Option<&str>, role: Option<Role>) -> Level {
        for rule in &self.rules {
            if rule.matches(method, route, role) {
                return rule.level.unwrap_or(Level::Metadata);
            }
        }
        let admin = route.is_some_and(|r| {
            self.admin_prefixes
                .iter()
                .any(|p| r.starts_with(p.as_str()))
        });
        if admin || !is_read(method) {
            Level::Metadata
        } else {
            Level::None
        }
    }
}

/// GET, HEAD and OPTIONS change nothing.
pub fn is_read(method: &http::Method) -> bool {
    matches!(
        *method,
        http::Method::GET | http::Method::HEAD | http::Method::OPTIONS
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::Method;

    #[test]
    fn default_records_writes_and_admin_routes() {
        let p = AuditPolicy::default();
        assert_eq!(p.level(&Method::GET, Some("/incidents"), None), Level::None);
        assert_eq!(
            p.level(&Method::POST, Some("/incidents"), None),
            Level::Metadata
        );
        assert_eq!(
            p.level(&Method::GET, Some("/admin/keys"), Some(Role::Root)),
            Level::Metadata
        );
        assert_eq!(p.level(&Method::DELETE, None, None), Level::Metadata);
    }

    #[test]
    fn first_matching_rule_wins() {
        let p = AuditPolicy::from_json(
            r#"{"rules":[
                {"routes":["/health*"],"level":"none"},
                {"methods":["POST"],"routes":["/keys"],"roles":["root"],"level":"request"},
                {"roles":["anonymous"],"methods":["GET"],"level":"metadata"}
            ]}"#,
        )
        .unwrap();
        assert_eq!(
            p.level(&Method::POST, Some("/health/ready"), None),
            Level::None
        );
        assert_eq!(
            p.level(&Method::POST, Some("/keys"), Some(Role::Root)),
            Level::Request
        );
        assert_eq!(
            p.level(&Method::POST, Some("/keys"), Some(Role::Tenant)),
            Level::Metadata
        );
        assert_eq!(p.level(&Method::GET, Some("/x"), None), Level::Metadata);
        assert_eq!(
            p.level(&Method::GET, Some("/x"), Some(Role::Tenant)),
            Level::None
        );
    }
}
