//! `[[heartbeats]]`: monitors that must keep saying they are alive. Silence is a signal: when a
//! monitor runs inside the network that fails, it stops talking, and the only way to hear that
//! is to expect it to talk. Each entry names what to expect (a ping every `period`, with `grace`
//! to spare), what the alarm is about (`service`, `labels`, `severity`, `summary`) and, for
//! Alertmanager's always-firing Watchdog alert, the labels that make a signal count as a ping.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Deserialize;

use super::validate::check_one_line;
use super::{Dur, Settings};
use crate::domain::{MatchOp, Matcher, Severity};

/// The longest period or grace: a heartbeat that may stay silent for longer is not one.
pub const LONGEST: Duration = Duration::from_secs(31 * 86400);

/// Longest name, in bytes (names travel in URLs and labels).
pub const NAME_MAX: usize = 64;

/// One heartbeat.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HeartbeatSpec {
    /// Its name in ping URLs (`/api/v1/heartbeats/{name}`) and in the `heartbeat` label:
    /// letters, digits, `.`, `_` and `-`.
    #[serde(default)]
    pub name: String,
    /// The service the monitor watches: a silent monitor's alarm joins that service's incident.
    #[serde(default)]
    pub service: String,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// How often pings are expected.
    #[serde(default)]
    pub period: Option<Dur>,
    /// How much later than `period` a ping may come before the heartbeat is late.
    #[serde(default = "default_grace")]
    pub grace: Dur,
    #[serde(default = "default_severity")]
    pub severity: Severity,
    /// The alarm's title; empty: "Monitor <name>" (what was found follows it in each message,
    /// in the reader's language).
    #[serde(default)]
    pub summary: String,
    /// Label matchers (Alertmanager's syntax): a firing signal from any receiver that matches
    /// every one is a ping of this heartbeat, not an alert.
    #[serde(default)]
    pub watchdog: Vec<Matcher>,
}

impl HeartbeatSpec {
    /// How long after a ping (or the start of the clock) the heartbeat is late.
    pub fn allowance(&self) -> Duration {
        self.period.map_or(Duration::ZERO, Dur::get) + self.grace.get()
    }
}

fn default_grace() -> Dur {
    Dur(Duration::from_secs(60))
}

fn default_severity() -> Severity {
    Severity::Critical
}

/// Whether `name` may name a heartbeat: 1 to [`NAME_MAX`] bytes of ASCII letters, digits, `.`,
/// `_` and `-`, so that it reads the same in a URL, a label and a log line; not `.` or `..`,
/// which clients take for the path itself or its parent (`…/heartbeats/..` is sent as `/api/v1/`).
pub fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= NAME_MAX
        && name != "."
        && name != ".."
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

/// Checks every heartbeat.
pub fn validate_heartbeats(settings: &Settings, push: &mut impl FnMut(&str, String)) {
    let mut names = std::collections::BTreeSet::new();
    for (i, h) in settings.heartbeats.iter().enumerate() {
        let at = |key: &str| format!("heartbeats[{i}].{key}");
        if !valid_name(&h.name) {
            push(
                &at("name"),
                format!(
                    "`{}` is not a heartbeat name: 1 to {NAME_MAX} letters, digits, `.`, `_` or `-` (it goes in URLs)",
                    h.name
                ),
            );
        } else if !names.insert(h.name.clone()) {
            push(&at("name"), format!("`{}` is declared twice", h.name));
        }
        check_spec(h, &at, push);
    }
}

/// Checks one heartbeat's fields but its name (the configuration's `[[heartbeats]]` and the
/// API's definitions alike), naming each problem by `at(field)`.
pub fn check_spec(
    h: &HeartbeatSpec,
    at: &dyn Fn(&str) -> String,
    push: &mut impl FnMut(&str, String),
) {
    if h.service.trim().is_empty() {
        push(
            &at("service"),
            "name the service the monitor watches (its alarm joins that service's incident)".into(),
        );
    }
    check_one_line(&at("service"), &h.service, push);
    check_one_line(&at("summary"), &h.summary, push);
    for (key, value) in &h.labels {
        if key.trim().is_empty() {
            push(&at("labels"), "a label name is empty".into());
        }
        check_one_line(&at(&format!("labels.{key}")), value, push);
    }
    if h.labels.contains_key("heartbeat") {
        push(
            &at("labels.heartbeat"),
            "the `heartbeat` label is set by Banditore to the heartbeat's name".into(),
        );
    }
    match h.period.map(Dur::get) {
        None => push(
            &at("period"),
            "say how often the monitor pings, e.g. \"5m\"".into(),
        ),
        Some(p) if p < Duration::from_secs(1) || p > LONGEST => {
            push(&at("period"), "must be from 1s to 31 days".into());
        }
        Some(_) => {}
    }
    if h.grace.get() > LONGEST {
        push(&at("grace"), "must be at most 31 days".into());
    }
    // A watchdog that matched more than one alert would swallow real ones (`team="ops"` would
    // make every alert of the team a ping): it must name its alert.
    if !h.watchdog.is_empty()
        && !h
            .watchdog
            .iter()
            .any(|m| m.name == "alertname" && m.op == MatchOp::Equal && !m.value.is_empty())
    {
        push(
            &at("watchdog"),
            "name the alert with an equality matcher on alertname, such as alertname=\"Watchdog\": signals it matches are pings, not alerts"
                .into(),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn problems(heartbeats: serde_json::Value) -> Vec<(String, String)> {
        let mut settings = crate::settings::load::load_with_env(None, Some(vec![]))
            .0
            .unwrap();
        settings.heartbeats = serde_json::from_value(heartbeats).unwrap();
        let mut out = Vec::new();
        validate_heartbeats(&settings, &mut |p: &str, m: String| {
            out.push((p.to_owned(), m))
        });
        out
    }

    #[test]
    fn a_good_heartbeat_passes_and_its_allowance_is_period_plus_grace() {
        let beats = serde_json::json!([{
            "name": "backup-nightly", "service": "cup", "period": "1d", "grace": "30m",
            "labels": {"area": "umbria"},
            "watchdog": ["alertname=\"Watchdog\"", "cluster=~\"umbria.*\""]
        }]);
        assert_eq!(problems(beats.clone()), vec![]);
        let spec: Vec<HeartbeatSpec> = serde_json::from_value(beats).unwrap();
        assert_eq!(spec[0].allowance(), Duration::from_secs(86400 + 1800));
        assert_eq!(spec[0].severity, Severity::Critical);
    }

    #[test]
    fn every_problem_is_named_by_its_path() {
        let found = problems(serde_json::json!([
            {"name": "a b", "service": "", "grace": "40d", "labels": {"heartbeat": "x"}},
            {"name": "ok", "service": "cup", "period": "500ms", "watchdog": ["alertname=~\".*\""]},
            {"name": "ok", "service": "cup\nx", "period": "1m"},
            // Every firing alert of the team would be a ping, none an incident.
            {"name": "team", "service": "cup", "period": "1m", "watchdog": ["team=\"ops\""]},
            {"name": "empty", "service": "cup", "period": "1m", "watchdog": ["alertname=\"\"", "team=\"ops\""]},
        ]));
        let paths: Vec<&str> = found.iter().map(|(p, _)| p.as_str()).collect();
        assert_eq!(
            paths,
            vec![
                "heartbeats[0].name",
                "heartbeats[0].service",
                "heartbeats[0].labels.heartbeat",
                "heartbeats[0].period",
                "heartbeats[0].grace",
                "heartbeats[1].period",
                "heartbeats[1].watchdog",
                "heartbeats[2].name",
                "heartbeats[2].service",
                "heartbeats[3].watchdog",
                "heartbeats[4].watchdog",
            ]
        );
    }

    #[test]
    fn dot_segments_are_not_names() {
        for bad in [".", "..", "", "a/b", "a%2e", "é"] {
            assert!(!valid_name(bad), "{bad}");
        }
        for good in ["...", ".backup", "a..b", "backup-cup_1.0"] {
            assert!(valid_name(good), "{good}");
        }
        assert!(valid_name(&"a".repeat(NAME_MAX)) && !valid_name(&"a".repeat(NAME_MAX + 1)));
    }

    proptest! {
        /// Whatever a configuration says, checking it names problems and never panics, and a
        /// name it accepts is one a URL path segment carries unchanged.
        #[test]
        fn any_text_is_checked_without_panicking(
            name in crate::hostile::text(),
            service in crate::hostile::text(),
            summary in crate::hostile::text(),
            key in crate::hostile::text(),
            value in crate::hostile::text(),
        ) {
            let found = problems(serde_json::json!([{
                "name": name, "service": service, "summary": summary,
                "labels": {key: value}, "period": "1m"
            }]));
            let name_ok = !found.iter().any(|(p, _)| p == "heartbeats[0].name");
            prop_assert_eq!(name_ok, valid_name(&name));
            if name_ok {
                prop_assert!(name.bytes().all(|b| b.is_ascii_graphic() && b != b'/' && b != b'%'));
            }
        }
    }
}
