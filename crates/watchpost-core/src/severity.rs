//! Alert and incident [`Severity`] (critical, warning, info) and the operator [`Priority`] (P0 to P3).

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// How bad something is, in the words Prometheus alert rules use in their `severity` label.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// Informational; nobody is paged.
    Info,
    /// Needs attention soon.
    Warning,
    /// Needs attention now.
    Critical,
}

impl Severity {
    /// `critical`, `warning` or `info`.
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Critical => "critical",
            Severity::Warning => "warning",
            Severity::Info => "info",
        }
    }

    /// The priority shown alongside: critical P1, warning P2, info P3 (P0 is reserved for
    /// critical incidents an operator escalates by hand, or that a label sets).
    pub fn default_priority(self) -> Priority {
        match self {
            Severity::Critical => Priority::P1,
            Severity::Warning => Priority::P2,
            Severity::Info => Priority::P3,
        }
    }
}

impl fmt::Display for Severity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A severity word that is not known.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown severity {0:?}: expected critical, warning or info")]
pub struct UnknownSeverity(pub String);

impl FromStr for Severity {
    type Err = UnknownSeverity;
    /// Accepts the Prometheus words and their common synonyms, case-insensitively.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "critical" | "crit" | "page" | "error" | "high" => Ok(Severity::Critical),
            "warning" | "warn" | "medium" => Ok(Severity::Warning),
            "info" | "informational" | "low" | "none" => Ok(Severity::Info),
            _ => Err(UnknownSeverity(s.to_owned())),
        }
    }
}

/// Operator priority, P0 (drop everything) to P3 (next working day).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Priority {
    /// Drop everything: a complete outage or data loss.
    P0,
    /// Urgent: a major function is down.
    P1,
    /// High: degraded service.
    P2,
    /// Normal: no user impact yet.
    P3,
}

impl Priority {
    /// `P0` to `P3`.
    pub fn as_str(self) -> &'static str {
        match self {
            Priority::P0 => "P0",
            Priority::P1 => "P1",
            Priority::P2 => "P2",
            Priority::P3 => "P3",
        }
    }
}

impl fmt::Display for Priority {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Priority {
    type Err = UnknownSeverity;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_uppercase().as_str() {
            "P0" => Ok(Priority::P0),
            "P1" => Ok(Priority::P1),
            "P2" => Ok(Priority::P2),
            "P3" => Ok(Priority::P3),
            _ => Err(UnknownSeverity(s.to_owned())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_and_order() {
        assert_eq!("CRITICAL".parse::<Severity>().unwrap(), Severity::Critical);
        assert_eq!("warn".parse::<Severity>().unwrap(), Severity::Warning);
        assert!("bogus".parse::<Severity>().is_err());
        assert!(Severity::Critical > Severity::Warning);
        assert_eq!(Severity::Warning.default_priority(), Priority::P2);
        assert_eq!("p0".parse::<Priority>().unwrap(), Priority::P0);
    }
}
