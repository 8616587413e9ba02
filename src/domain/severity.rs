//! How bad a signal or an incident is, on one ordered scale.
//!
//! Monitors speak many dialects (`page`, `P1`, `high`, `disaster`, `warn`…); they are folded into
//! four levels once, at ingest, so that subscriptions compare one thing.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    Serialize,
    Deserialize,
    utoipa::ToSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Info,
    Warning,
    Major,
    Critical,
}

impl Severity {
    pub const ALL: [Severity; 4] = [
        Severity::Info,
        Severity::Warning,
        Severity::Major,
        Severity::Critical,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Info => "info",
            Severity::Warning => "warning",
            Severity::Major => "major",
            Severity::Critical => "critical",
        }
    }

    /// The Statuspage-style impact of an incident at this severity.
    pub fn impact(self) -> &'static str {
        match self {
            Severity::Info => "none",
            Severity::Warning => "minor",
            Severity::Major => "major",
            Severity::Critical => "critical",
        }
    }

    /// Folds the vocabulary of common monitors into a level; `None` for a word it does not know.
    pub fn from_label(value: &str) -> Option<Severity> {
        let v = value.trim().to_ascii_lowercase();
        let level = match v.as_str() {
            "info" | "informational" | "information" | "notice" | "low" | "none" | "ok"
            | "debug" | "not classified" | "p5" | "sev5" | "5" => Severity::Info,
            "warning" | "warn" | "minor" | "medium" | "average" | "moderate" | "p4" | "p3"
            | "sev4" | "sev3" | "4" | "3" => Severity::Warning,
            "major" | "error" | "err" | "high" | "severe" | "p2" | "sev2" | "2" => Severity::Major,
            "critical" | "crit" | "page" | "disaster" | "emergency" | "fatal" | "alert" | "p1"
            | "p0" | "sev1" | "sev0" | "1" | "0" => Severity::Critical,
            _ => return None,
        };
        Some(level)
    }
}

impl fmt::Display for Severity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, thiserror::Error)]
#[error("unknown severity `{0}` (expected info, warning, major or critical)")]
pub struct UnknownSeverity(pub String);

impl FromStr for Severity {
    type Err = UnknownSeverity;

    /// Strict parse of the four canonical names, for configuration and the API.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Severity::ALL
            .into_iter()
            .find(|level| level.as_str() == s)
            .ok_or_else(|| UnknownSeverity(s.to_owned()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn levels_are_ordered() {
        assert!(Severity::Info < Severity::Warning);
        assert!(Severity::Warning < Severity::Major);
        assert!(Severity::Major < Severity::Critical);
    }

    #[test]
    fn folds_monitor_vocabulary() {
        assert_eq!(Severity::from_label("PAGE"), Some(Severity::Critical));
        assert_eq!(Severity::from_label(" warn "), Some(Severity::Warning));
        assert_eq!(Severity::from_label("error"), Some(Severity::Major));
        assert_eq!(Severity::from_label("Disaster"), Some(Severity::Critical));
        assert_eq!(Severity::from_label("average"), Some(Severity::Warning));
        assert_eq!(Severity::from_label("whatever"), None);
    }

    #[test]
    fn strict_parse_accepts_only_canonical_names() {
        assert_eq!("major".parse::<Severity>().ok(), Some(Severity::Major));
        assert!("page".parse::<Severity>().is_err());
    }
}
