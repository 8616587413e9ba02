//! A signal: one monitor's statement that something is firing or has resolved.
//!
//! Every ingest format and every probe normalizes into this one shape before it is stored; nothing
//! downstream knows which monitor sent it except through `source`.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use jiff::Timestamp;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::Severity;

pub type Labels = BTreeMap<String, String>;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Source {
    Alertmanager,
    Grafana,
    UptimeKuma,
    Generic,
    Cloudevents,
    /// Banditore's own probes.
    Probe,
}

impl Source {
    pub const ALL: [Source; 6] = [
        Source::Alertmanager,
        Source::Grafana,
        Source::UptimeKuma,
        Source::Generic,
        Source::Cloudevents,
        Source::Probe,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Source::Alertmanager => "alertmanager",
            Source::Grafana => "grafana",
            Source::UptimeKuma => "uptime-kuma",
            Source::Generic => "generic",
            Source::Cloudevents => "cloudevents",
            Source::Probe => "probe",
        }
    }
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Source {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Source::ALL
            .into_iter()
            .find(|source| source.as_str() == s)
            .ok_or_else(|| format!("unknown signal source `{s}`"))
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SignalStatus {
    Firing,
    Resolved,
}

impl SignalStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            SignalStatus::Firing => "firing",
            SignalStatus::Resolved => "resolved",
        }
    }

    /// Folds the words monitors use for "it is broken" and "it is fine again".
    pub fn from_word(word: &str) -> Option<SignalStatus> {
        match word.trim().to_ascii_lowercase().as_str() {
            "firing" | "alerting" | "problem" | "triggered" | "trigger" | "down" | "open"
            | "critical" | "error" | "failing" | "failed" | "fail" | "active" | "alert" | "nok"
            | "re-triggered" | "retriggered" | "warn" | "re-warn" | "renotify" | "no data"
            | "re-no data" => Some(SignalStatus::Firing),
            "resolved" | "ok" | "recovered" | "recovery" | "up" | "closed" | "normal"
            | "resolve" | "success" | "inactive" | "cleared" | "clear" => {
                Some(SignalStatus::Resolved)
            }
            _ => None,
        }
    }
}

impl FromStr for SignalStatus {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "firing" => Ok(SignalStatus::Firing),
            "resolved" => Ok(SignalStatus::Resolved),
            other => Err(format!("unknown signal status `{other}`")),
        }
    }
}

/// A normalized signal, ready to be stored.
///
/// `labels` always carries `service` and `severity` (normalized), and `component` when known, so
/// that subscription matchers and the incident group key can be written against labels alone.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Signal {
    pub source: Source,
    pub fingerprint: String,
    pub status: SignalStatus,
    pub severity: Severity,
    pub service: String,
    pub component: Option<String>,
    pub labels: Labels,
    pub annotations: Labels,
    pub summary: String,
    pub starts_at: Option<Timestamp>,
    pub ends_at: Option<Timestamp>,
    pub url: Option<String>,
}

/// What a format parser extracted, before the shared normalization rules are applied.
#[derive(Debug, Clone, Default)]
pub struct RawSignal {
    pub fingerprint: Option<String>,
    pub status: Option<SignalStatus>,
    pub severity: Option<String>,
    pub service: Option<String>,
    pub component: Option<String>,
    pub labels: Labels,
    pub annotations: Labels,
    pub summary: Option<String>,
    pub starts_at: Option<Timestamp>,
    pub ends_at: Option<Timestamp>,
    pub url: Option<String>,
}

/// Knobs of normalization that a deployment chooses.
#[derive(Debug, Clone)]
pub struct NormalizeRules {
    pub default_severity: Severity,
}

impl Default for NormalizeRules {
    fn default() -> Self {
        NormalizeRules {
            default_severity: Severity::Warning,
        }
    }
}

impl RawSignal {
    /// Applies the shared rules: service from `service` then `alertname`, component from
    /// `component` then `instance`, severity folded, fingerprint from the sender or from the label
    /// set, status from the sender or from `ends_at`.
    pub fn normalize(mut self, source: Source, rules: &NormalizeRules, now: Timestamp) -> Signal {
        let non_empty =
            |v: Option<String>| v.map(|s| s.trim().to_owned()).filter(|s| !s.is_empty());
        let service = non_empty(self.service.take())
            .or_else(|| non_empty(self.labels.get("service").cloned()))
            .or_else(|| non_empty(self.labels.get("alertname").cloned()))
            .unwrap_or_else(|| "unknown".to_owned());
        let component = non_empty(self.component.take())
            .or_else(|| non_empty(self.labels.get("component").cloned()))
            .or_else(|| non_empty(self.labels.get("instance").cloned()));
        let severity = self
            .severity
            .as_deref()
            .or(self.labels.get("severity").map(String::as_str))
            .and_then(Severity::from_label)
            .unwrap_or(rules.default_severity);
        let status = self.status.unwrap_or(match self.ends_at {
            Some(end) if end <= now => SignalStatus::Resolved,
            _ => SignalStatus::Firing,
        });
        // The fingerprint is computed before the derived labels are added, so that it depends only
        // on what the sender said.
        let fingerprint = match non_empty(self.fingerprint.take()) {
            Some(fp) => format!("{source}:{fp}"),
            None => format!("{source}:{}", label_fingerprint(&self.labels, &service)),
        };
        self.labels.insert("service".into(), service.clone());
        self.labels
            .insert("severity".into(), severity.as_str().into());
        if let Some(c) = &component {
            self.labels
                .entry("component".into())
                .or_insert_with(|| c.clone());
        }
        let summary = non_empty(self.summary.take())
            .or_else(|| non_empty(self.annotations.get("summary").cloned()))
            .or_else(|| non_empty(self.annotations.get("title").cloned()))
            .or_else(|| non_empty(self.labels.get("alertname").cloned()))
            .unwrap_or_else(|| service.clone());
        Signal {
            source,
            fingerprint,
            status,
            severity,
            service,
            component,
            labels: self.labels,
            annotations: self.annotations,
            summary,
            starts_at: self.starts_at,
            ends_at: self.ends_at,
            url: non_empty(self.url),
        }
    }
}

/// A stable fingerprint of a label set, for senders that do not send their own: the same labels
/// in any order give the same fingerprint. With no labels at all, the service stands in.
pub fn label_fingerprint(labels: &Labels, service: &str) -> String {
    let mut hasher = Sha256::new();
    if labels.is_empty() {
        hasher.update(b"service\xff");
        hasher.update(service.as_bytes());
    }
    // BTreeMap iterates in key order; separators that cannot appear in UTF-8 keep
    // `a=bc` and `ab=c` apart.
    for (key, value) in labels {
        hasher.update(key.as_bytes());
        hasher.update([0xff]);
        hasher.update(value.as_bytes());
        hasher.update([0xfe]);
    }
    hex::encode(&hasher.finalize()[..8])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> Labels {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn fingerprint_ignores_label_order_and_separates_boundaries() {
        let a = labels(&[("alertname", "Down"), ("service", "cup")]);
        let b: Labels = [("service", "cup"), ("alertname", "Down")]
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        assert_eq!(label_fingerprint(&a, "x"), label_fingerprint(&b, "y"));
        let c = labels(&[("a", "bc")]);
        let d = labels(&[("ab", "c")]);
        assert_ne!(label_fingerprint(&c, "s"), label_fingerprint(&d, "s"));
        assert_eq!(label_fingerprint(&a, "s").len(), 16);
    }

    #[test]
    fn normalize_derives_service_component_severity() {
        let raw = RawSignal {
            labels: labels(&[
                ("alertname", "CupDown"),
                ("instance", "db1:5432"),
                ("severity", "page"),
            ]),
            ..RawSignal::default()
        };
        let s = raw.normalize(
            Source::Alertmanager,
            &NormalizeRules::default(),
            Timestamp::UNIX_EPOCH,
        );
        assert_eq!(s.service, "CupDown");
        assert_eq!(s.component.as_deref(), Some("db1:5432"));
        assert_eq!(s.severity, Severity::Critical);
        assert_eq!(s.labels["severity"], "critical");
        assert_eq!(s.labels["service"], "CupDown");
        assert_eq!(s.summary, "CupDown");
        assert_eq!(s.status, SignalStatus::Firing);
        assert!(s.fingerprint.starts_with("alertmanager:"));
    }

    #[test]
    fn normalize_prefers_explicit_fields_and_sender_fingerprint() {
        let raw = RawSignal {
            fingerprint: Some("abc".into()),
            service: Some("cup-backend".into()),
            severity: Some("nonsense".into()),
            labels: labels(&[("service", "other")]),
            annotations: labels(&[("summary", "CUP giù")]),
            ..RawSignal::default()
        };
        let rules = NormalizeRules {
            default_severity: Severity::Major,
        };
        let s = raw.normalize(Source::Generic, &rules, Timestamp::UNIX_EPOCH);
        assert_eq!(s.fingerprint, "generic:abc");
        assert_eq!(s.service, "cup-backend");
        assert_eq!(s.labels["service"], "cup-backend");
        assert_eq!(s.severity, Severity::Major);
        assert_eq!(s.summary, "CUP giù");
    }

    #[test]
    fn status_defaults_from_ends_at() {
        let now: Timestamp = "2026-01-01T00:00:00Z".parse().unwrap();
        let past = RawSignal {
            ends_at: Some("2025-12-31T23:00:00Z".parse().unwrap()),
            ..RawSignal::default()
        };
        let future = RawSignal {
            ends_at: Some("2026-01-01T01:00:00Z".parse().unwrap()),
            ..RawSignal::default()
        };
        let rules = NormalizeRules::default();
        assert_eq!(
            past.normalize(Source::Generic, &rules, now).status,
            SignalStatus::Resolved
        );
        assert_eq!(
            future.normalize(Source::Generic, &rules, now).status,
            SignalStatus::Firing
        );
    }

    #[test]
    fn status_words() {
        assert_eq!(
            SignalStatus::from_word("Triggered"),
            Some(SignalStatus::Firing)
        );
        assert_eq!(
            SignalStatus::from_word("RECOVERED"),
            Some(SignalStatus::Resolved)
        );
        assert_eq!(
            SignalStatus::from_word("Re-Triggered"),
            Some(SignalStatus::Firing)
        );
        assert_eq!(SignalStatus::from_word("pending"), None);
    }
}
