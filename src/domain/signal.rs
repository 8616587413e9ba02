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
    /// Prometheus (or another client of Alertmanager's API) posting to Banditore's
    /// `POST /api/v2/alerts` as if it were an Alertmanager: its firing alerts expire.
    Prometheus,
    /// Senders of PagerDuty's Events API (v2 `/v2/enqueue`, v1 `create_event.json`).
    Pagerduty,
    /// Senders of Opsgenie's Alert API (`/v2/alerts`).
    Opsgenie,
    /// A heartbeat that fell silent or reported a failure (`[[heartbeats]]`).
    Heartbeat,
}

impl Source {
    pub const ALL: [Source; 10] = [
        Source::Alertmanager,
        Source::Grafana,
        Source::UptimeKuma,
        Source::Generic,
        Source::Cloudevents,
        Source::Probe,
        Source::Prometheus,
        Source::Pagerduty,
        Source::Opsgenie,
        Source::Heartbeat,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Source::Alertmanager => "alertmanager",
            Source::Grafana => "grafana",
            Source::UptimeKuma => "uptime-kuma",
            Source::Generic => "generic",
            Source::Cloudevents => "cloudevents",
            Source::Probe => "probe",
            Source::Prometheus => "prometheus",
            Source::Pagerduty => "pagerduty",
            Source::Opsgenie => "opsgenie",
            Source::Heartbeat => "heartbeat",
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

    /// Folds the words monitors use for "it is broken" and "it is fine again" (`no_data` reads as
    /// `no data`).
    pub fn from_word(word: &str) -> Option<SignalStatus> {
        match word.trim().to_ascii_lowercase().replace('_', " ").as_str() {
            "firing" | "alerting" | "problem" | "triggered" | "trigger" | "down" | "open"
            | "critical" | "error" | "failing" | "failed" | "fail" | "active" | "alert" | "nok"
            | "re-triggered" | "retriggered" | "warn" | "warning" | "re-warn" | "renotify"
            | "no data" | "re-no data" => Some(SignalStatus::Firing),
            "resolved" | "ok" | "recovered" | "recovery" | "up" | "closed" | "normal"
            | "resolve" | "success" | "inactive" | "cleared" | "clear" => {
                Some(SignalStatus::Resolved)
            }
            _ => None,
        }
    }

    /// The status stated by a title's leading tags: Datadog's `[Triggered on {…}]` and
    /// `[Recovered on {…}]` (after `[P1]`), Grafana's `[FIRING:2]` and `[RESOLVED]`, its legacy
    /// alerting's `[Alerting]`, `[OK]` and `[No Data]`.
    pub fn from_title(title: &str) -> Option<SignalStatus> {
        leading_tags(title).0.into_iter().find_map(tag_status)
    }
}

/// The bracketed tags at the start of a title, and the rest of it.
fn leading_tags(title: &str) -> (Vec<&str>, &str) {
    let mut tags = Vec::new();
    let mut rest = title.trim_start();
    while let Some((tag, after)) = rest
        .strip_prefix('[')
        .and_then(|inner| inner.split_once(']'))
    {
        tags.push(tag);
        rest = after.trim_start();
    }
    (tags, rest)
}

/// `Re-Warn on {host:a}` and `FIRING:9, RESOLVED:1` state their first word.
fn tag_status(tag: &str) -> Option<SignalStatus> {
    let word = tag.split(" on ").next().unwrap_or_default();
    SignalStatus::from_word(word.split([':', ',']).next().unwrap_or_default())
}

/// A title without the status its tags state, so that a trigger and its recovery read alike:
/// `[P1] [Recovered on {host:a}] CPU` becomes `[P1] {host:a} CPU`.
fn without_status_tags(title: &str) -> String {
    let (tags, rest) = leading_tags(title);
    let mut parts: Vec<String> = tags
        .into_iter()
        .map(|tag| match tag_status(tag) {
            Some(_) => tag
                .split_once(" on ")
                .map(|(_, scope)| scope.to_owned())
                .unwrap_or_default(),
            None => format!("[{tag}]"),
        })
        .collect();
    parts.push(rest.to_owned());
    parts.retain(|p| !p.is_empty());
    parts.join(" ")
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

/// How long Alertmanager keeps firing an alert posted without an end time: its default
/// `resolve_timeout`, which Banditore's Alertmanager API applies the same way.
pub const RESOLVE_TIMEOUT: jiff::SignedDuration = jiff::SignedDuration::from_secs(300);

impl Signal {
    /// How long a firing signal keeps its alert firing unless it is sent again, for senders that
    /// state an end time and re-send while the alert fires (Prometheus, through Alertmanager's
    /// API): its end time less when it was received, or [`RESOLVE_TIMEOUT`] without one. `None`
    /// for every other source, whose senders resolve their alerts themselves (an Alertmanager
    /// webhook's end time is only a guess of the sender's).
    pub fn lease(&self, received_at: Timestamp) -> Option<jiff::SignedDuration> {
        if self.source != Source::Prometheus || self.status != SignalStatus::Firing {
            return None;
        }
        Some(
            self.ends_at
                .map(|end| end.duration_since(received_at))
                .filter(|d| d.is_positive())
                .unwrap_or(RESOLVE_TIMEOUT),
        )
    }
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
    /// `component` then `instance`, severity folded, fingerprint from the sender, else from the
    /// label set, else (no labels and no service) from what the signal says, status from the
    /// sender or from `ends_at`. Text loses the characters that would break a message, a page or
    /// a feed.
    pub fn normalize(mut self, source: Source, rules: &NormalizeRules, now: Timestamp) -> Signal {
        let non_empty = |v: Option<String>| {
            v.map(|s| one_line(&s).trim().to_owned())
                .filter(|s| !s.is_empty())
        };
        let given_service = non_empty(self.service.take());
        let service = given_service
            .clone()
            .or_else(|| non_empty(self.labels.get("service").cloned()))
            .or_else(|| non_empty(self.labels.get("alertname").cloned()))
            .unwrap_or_else(|| "unknown".to_owned());
        let given_component = non_empty(self.component.clone());
        let component = given_component
            .clone()
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
        // The label fingerprint is computed before the derived labels are added and before the
        // labels are cleaned, so that it depends only on what the sender said, as it always has.
        let fingerprint = match non_empty(self.fingerprint.take()) {
            Some(fp) => fp,
            None if self.labels.is_empty() && given_service.is_none() => self
                .content_fingerprint()
                .unwrap_or_else(|| label_fingerprint(&self.labels, &service)),
            None => {
                // A service or component named beside the labels tells apart two signals whose
                // labels are the same (two services tagged `area:umbria,env:prod`, two
                // components of one service); one the labels already hold changes nothing, nor
                // does a service standing in for no labels at all.
                let labels = &self.labels;
                let named: Vec<(&str, &str)> = [
                    ("service", given_service.as_deref(), !labels.is_empty()),
                    ("component", given_component.as_deref(), true),
                ]
                .into_iter()
                .filter_map(|(key, given, counts)| {
                    let given = given?;
                    let said = labels.get(key).map(String::as_str);
                    (counts && said != Some(given)).then_some((key, given))
                })
                .collect();
                label_fingerprint_beside(labels, &service, &named)
            }
        };
        let mut labels: Labels = self
            .labels
            .into_iter()
            .map(|(k, v)| (one_line(&k), one_line(&v)))
            .collect();
        labels.insert("service".into(), service.clone());
        labels.insert("severity".into(), severity.as_str().into());
        if let Some(c) = &component {
            labels
                .entry("component".into())
                .or_insert_with(|| c.clone());
        }
        let summary = non_empty(self.summary.take())
            .or_else(|| non_empty(self.annotations.get("summary").cloned()))
            .or_else(|| non_empty(self.annotations.get("title").cloned()))
            .or_else(|| non_empty(labels.get("alertname").cloned()))
            .unwrap_or_else(|| service.clone());
        Signal {
            source,
            fingerprint: format!("{source}:{fingerprint}"),
            status,
            severity,
            service,
            component,
            labels,
            annotations: self
                .annotations
                .into_iter()
                .map(|(k, v)| (one_line(&k), free_text(&v)))
                .collect(),
            summary,
            starts_at: self.starts_at,
            ends_at: self.ends_at,
            url: self
                .url
                .map(|u| {
                    u.chars()
                        .filter(|c| !is_unprintable(*c) && !is_line_break(*c))
                        .collect::<String>()
                })
                .map(|u| u.trim().to_owned())
                .filter(|u| !u.is_empty()),
        }
    }

    /// A fingerprint from what the signal says, for one that names neither a service nor
    /// labels: its title without status tags (a recovery's title differs from its trigger's only
    /// there), its component, and its link without query or fragment (where a per-event link
    /// differs). `None` when it says none of these.
    pub fn content_fingerprint(&self) -> Option<String> {
        let title = self
            .summary
            .as_ref()
            .or(self.annotations.get("summary"))
            .or(self.annotations.get("title"))
            .map(|t| without_status_tags(t.trim()))
            .unwrap_or_default();
        let component = self.component.as_deref().unwrap_or_default().trim();
        let link = self
            .url
            .as_deref()
            .and_then(|u| u.split(['?', '#']).next())
            .unwrap_or_default()
            .trim();
        if title.is_empty() && component.is_empty() && link.is_empty() {
            return None;
        }
        let mut hasher = Sha256::new();
        // A prefix no label set starts with keeps these apart from label fingerprints.
        hasher.update(b"content\xff");
        for part in [title.as_str(), component, link] {
            hasher.update(part.as_bytes());
            hasher.update([0xfe]);
        }
        Some(hex::encode(&hasher.finalize()[..8]))
    }
}

/// Characters that break a message, a page or a feed: controls (C0, DEL, C1) and noncharacters
/// such as U+FFFE, which XML forbids.
fn is_unprintable(c: char) -> bool {
    let n = u32::from(c);
    c.is_control() || (0xFDD0..=0xFDEF).contains(&n) || n & 0xFFFE == 0xFFFE
}

fn is_line_break(c: char) -> bool {
    matches!(
        c,
        '\n' | '\r' | '\u{b}' | '\u{c}' | '\u{85}' | '\u{2028}' | '\u{2029}'
    )
}

/// Text for one line (a summary, a label): each run of line breaks and tabs becomes one space,
/// and unprintable characters go.
pub(super) fn one_line(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut gap = false;
    for c in text.chars() {
        if is_line_break(c) || c == '\t' {
            gap = true;
        } else if !is_unprintable(c) {
            if std::mem::take(&mut gap) {
                out.push(' ');
            }
            out.push(c);
        }
    }
    if gap {
        out.push(' ');
    }
    out
}

/// Text of several lines (a description): every line break becomes `\n` (CR LF one), tabs stay,
/// and unprintable characters go.
fn free_text(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\r' && chars.peek() == Some(&'\n') {
            continue;
        }
        if is_line_break(c) {
            out.push('\n');
        } else if c == '\t' || !is_unprintable(c) {
            out.push(c);
        }
    }
    out
}

/// A stable fingerprint of a label set, for senders that do not send their own: the same labels
/// in any order give the same fingerprint. With no labels at all, the service stands in.
pub fn label_fingerprint(labels: &Labels, service: &str) -> String {
    label_fingerprint_beside(labels, service, &[])
}

/// [`label_fingerprint`], with fields the sender named beside the labels, as (key, value).
fn label_fingerprint_beside(labels: &Labels, service: &str, named: &[(&str, &str)]) -> String {
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
    // 0xfd, never in UTF-8, keeps a named field apart from a label of the same key and value.
    for (key, value) in named {
        hasher.update([0xfd]);
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

    /// Fingerprints of signals with labels or a service are what running incidents are keyed on:
    /// an upgrade that changed them would split every open incident in two.
    #[test]
    fn fingerprints_of_labelled_signals_are_kept() {
        let rules = NormalizeRules::default();
        let labelled = RawSignal {
            labels: labels(&[
                ("alertname", "CupBackendDown"),
                ("service", "cup-backend"),
                ("component", "db"),
                ("area", "umbria"),
            ]),
            summary: Some("CUP backend giù".into()),
            url: Some("https://grafana.asl.example/d/cup".into()),
            ..RawSignal::default()
        };
        assert_eq!(
            labelled
                .normalize(Source::Alertmanager, &rules, Timestamp::UNIX_EPOCH)
                .fingerprint,
            "alertmanager:4730330bdebe3f51"
        );
        let with_service = RawSignal {
            service: Some("cup-backend".into()),
            labels: labels(&[("area", "umbria"), ("env", "prod")]),
            summary: Some("anything".into()),
            ..RawSignal::default()
        };
        assert_eq!(
            with_service
                .normalize(Source::Generic, &rules, Timestamp::UNIX_EPOCH)
                .fingerprint,
            // Changed once, when a service named beside the labels began to count (upgrades.md).
            "generic:734364e4ba901a3e"
        );
        let service_only = RawSignal {
            service: Some("cup-backend".into()),
            summary: Some("CUP lento".into()),
            ..RawSignal::default()
        };
        assert_eq!(
            service_only
                .normalize(Source::Generic, &rules, Timestamp::UNIX_EPOCH)
                .fingerprint,
            "generic:67a183f696e19ed5"
        );
    }

    /// Two generic senders tagging different services (or components) alike, with no
    /// fingerprint of their own: two problems, never one alert refreshed by the other.
    #[test]
    fn a_service_or_component_named_beside_the_labels_tells_signals_apart() {
        let rules = NormalizeRules::default();
        let fingerprint =
            |service: Option<&str>, component: Option<&str>, tags: &[(&str, &str)]| {
                RawSignal {
                    service: service.map(Into::into),
                    component: component.map(Into::into),
                    labels: labels(tags),
                    summary: Some("Giù".into()),
                    ..RawSignal::default()
                }
                .normalize(Source::Generic, &rules, Timestamp::UNIX_EPOCH)
                .fingerprint
            };
        let tags = [("area", "umbria"), ("env", "prod")];
        let cup = fingerprint(Some("cup-backend"), Some("db"), &tags);
        assert_ne!(cup, fingerprint(Some("referti"), Some("db"), &tags));
        assert_ne!(cup, fingerprint(Some("cup-backend"), Some("queue"), &tags));
        assert_ne!(cup, fingerprint(Some("cup-backend"), None, &tags));
        assert_eq!(cup, fingerprint(Some("cup-backend"), Some("db"), &tags));
        // With no labels the service already counts; the component now does too.
        assert_ne!(
            fingerprint(Some("cup-backend"), Some("db"), &[]),
            fingerprint(Some("cup-backend"), Some("queue"), &[])
        );
        // A field the labels already hold, with the same value, changes nothing.
        let held = [("area", "umbria"), ("service", "cup-backend")];
        assert_eq!(
            fingerprint(Some("cup-backend"), None, &held),
            fingerprint(None, None, &held)
        );
        // A field is not a label: `service` named beside differs from a label `service`.
        assert_ne!(
            fingerprint(Some("cup-backend"), None, &[("area", "umbria")]),
            fingerprint(
                None,
                None,
                &[("area", "umbria"), ("service", "cup-backend")]
            )
        );
    }

    proptest::proptest! {
        /// Over any labels and any text a sender puts in `service`, `component` and the summary:
        /// a recovery naming the same fields finds its firing signal, and two services (as
        /// they read once cleaned) are two problems.
        #[test]
        fn a_derived_fingerprint_follows_the_named_fields_and_nothing_else(
            tags in proptest::collection::btree_map("\\PC{0,8}", "\\PC{0,8}", 0..4),
            one in "[a-z]\\PC{0,11}",
            other in "[a-z]\\PC{0,11}",
            component in proptest::option::of("\\PC{0,8}"),
            summary in "\\PC{0,20}",
        ) {
            let rules = NormalizeRules::default();
            let signal = |service: &str, status: SignalStatus, summary: &str| {
                RawSignal {
                    service: Some(service.to_owned()),
                    component: component.clone(),
                    labels: tags.clone(),
                    status: Some(status),
                    summary: Some(summary.to_owned()),
                    ..RawSignal::default()
                }
                .normalize(Source::Generic, &rules, Timestamp::UNIX_EPOCH)
            };
            let firing = signal(&one, SignalStatus::Firing, &summary);
            let resolved = signal(&one, SignalStatus::Resolved, "Risolto");
            proptest::prop_assert_eq!(&firing.fingerprint, &resolved.fingerprint);
            let elsewhere = signal(&other, SignalStatus::Firing, &summary);
            if elsewhere.service != firing.service {
                proptest::prop_assert_ne!(&firing.fingerprint, &elsewhere.fingerprint);
            }
        }
    }

    #[test]
    fn signals_without_service_or_labels_are_told_apart_by_what_they_say() {
        let rules = NormalizeRules::default();
        let fingerprint = |summary: &str, url: Option<&str>| {
            RawSignal {
                summary: Some(summary.into()),
                url: url.map(Into::into),
                ..RawSignal::default()
            }
            .normalize(Source::Generic, &rules, Timestamp::UNIX_EPOCH)
            .fingerprint
        };
        let disk = fingerprint("Disco pieno su cup-db-01", None);
        let cert = fingerprint("Certificato di referti.asl.example in scadenza", None);
        assert_ne!(disk, cert, "two unrelated problems are two signals");
        assert_ne!(
            fingerprint("Sito giù", Some("https://cup.asl.example/")),
            fingerprint("Sito giù", Some("https://referti.asl.example/")),
        );
        // A recovery's title differs from the trigger's only by its status tag; the event link
        // differs only by its query.
        assert_eq!(
            fingerprint(
                "[P1] [Triggered on {host:cup-db-01}] CUP lento",
                Some("https://app.datadog.example/event/jump_to?event_id=1")
            ),
            fingerprint(
                "[P1] [Recovered on {host:cup-db-01}] CUP lento",
                Some("https://app.datadog.example/event/jump_to?event_id=2")
            ),
        );
        assert_ne!(
            fingerprint("[Triggered on {host:cup-db-01}] CUP lento", None),
            fingerprint("[Triggered on {host:cup-db-02}] CUP lento", None),
        );
        assert_eq!(
            fingerprint("[Alerting] Latenza portale", None),
            fingerprint("[OK] Latenza portale", None)
        );
        assert_eq!(
            fingerprint("[FIRING:2] Latenza portale", None),
            fingerprint("[RESOLVED] Latenza portale", None)
        );
    }

    #[test]
    fn control_characters_never_reach_a_message() {
        let raw = RawSignal {
            fingerprint: Some("fp\0\r\n1".into()),
            service: Some("cup\u{1b}[31m-backend\u{7f}".into()),
            component: Some("db\u{fffe}".into()),
            labels: labels(&[("area\n", "umbria\r\nBcc: x"), ("env", "prod\0")]),
            annotations: labels(&[("description", "riga 1\r\nriga 2\0\u{85}\tfine")]),
            summary: Some("CUP\r\ngiù\u{2028}\u{ffff}".into()),
            url: Some("https://cup.asl.example/\r\nx".into()),
            ..RawSignal::default()
        };
        let s = raw.normalize(
            Source::Generic,
            &NormalizeRules::default(),
            Timestamp::UNIX_EPOCH,
        );
        assert_eq!(s.summary, "CUP giù");
        assert_eq!(s.service, "cup[31m-backend");
        assert_eq!(s.component.as_deref(), Some("db"));
        assert_eq!(s.labels["area "], "umbria Bcc: x");
        assert_eq!(s.labels["env"], "prod");
        assert_eq!(s.annotations["description"], "riga 1\nriga 2\n\tfine");
        assert_eq!(s.url.as_deref(), Some("https://cup.asl.example/x"));
        assert_eq!(s.fingerprint, "generic:fp 1");
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
