//! `[probing]`, `[[probes]]` and `[[maintenance]]`: Banditore's own checks of the services
//! people depend on, run from where it is deployed, and the windows in which their signals
//! notify nobody.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::{Deserialize, Deserializer};

use super::validate::check_one_line;
use super::{Dur, Settings};
use jiff::SignedDuration;
use jiff::civil::{Time, Weekday};
use jiff::tz::TimeZone;

use crate::domain::window::{When, Window, parse_time};
use crate::domain::{Matcher, Severity, text};

pub use crate::domain::window::PublicMaintenance;

word_enum! {
    pub enum ProbeKind {
        Http => "http",
        Tcp => "tcp",
        Dns => "dns",
        Tls => "tls",
    }
}

word_enum! {
    pub enum Recurrence {
        Daily => "daily",
        Weekly => "weekly",
    }
}

#[derive(Debug, Clone, Deserialize)]
pub struct ProbingSettings {
    /// Checks in flight at once, over every probe.
    pub concurrency: u32,
    /// Replicas that must see a service down before it is declared down.
    pub quorum: u32,
    /// Targets outside every watched service (a public resolver, well-known sites): when all of
    /// them fail, the problem is Banditore's own network, and outages are not declared.
    pub canaries: Vec<ProbeSpec>,
    pub canary_interval: Dur,
    /// How soon a check in doubt is repeated (a failure while up, a success while down), for
    /// probes that give no `recheck_interval` of their own; never later than their `interval`.
    pub recheck_interval: Dur,
}

impl ProbingSettings {
    /// How soon `spec`'s check is repeated when in doubt: its own `recheck_interval`, or this
    /// default, and at most its interval.
    pub fn recheck(&self, spec: &ProbeSpec) -> std::time::Duration {
        spec.recheck_interval
            .unwrap_or(self.recheck_interval)
            .get()
            .min(spec.interval.get())
    }
}

/// One check. The fields used depend on `kind`; `check-config` says which are missing.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProbeSpec {
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub service: String,
    #[serde(default)]
    pub component: Option<String>,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    pub kind: ProbeKind,
    /// What people read in the alert: the incident's title. The check's finding follows it in
    /// each message, in the reader's language.
    #[serde(default)]
    pub summary: String,
    #[serde(default = "default_interval")]
    pub interval: Dur,
    #[serde(default = "default_timeout")]
    pub timeout: Dur,
    /// How soon a check in doubt is repeated; `None`: `probing.recheck_interval`.
    #[serde(default)]
    pub recheck_interval: Option<Dur>,
    #[serde(default = "default_threshold")]
    pub failure_threshold: u32,
    #[serde(default = "default_threshold")]
    pub success_threshold: u32,
    #[serde(default = "default_severity")]
    pub severity: Severity,
    // http
    #[serde(default)]
    pub url: String,
    #[serde(default = "default_method")]
    pub method: String,
    /// Accepted statuses: numbers, or classes such as `"2xx"`.
    #[serde(default = "default_statuses", deserialize_with = "statuses")]
    pub expected_status: Vec<StatusSet>,
    #[serde(default)]
    pub body_contains: String,
    #[serde(default)]
    pub body_regex: String,
    pub max_latency: Option<Dur>,
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    #[serde(default = "yes")]
    pub follow_redirects: bool,
    // tcp, tls
    #[serde(default)]
    pub target: String,
    // dns
    #[serde(default)]
    pub record_type: String,
    #[serde(default)]
    pub expected: Vec<String>,
    /// `ip:port` of the resolver to ask; empty: the system's.
    #[serde(default)]
    pub resolver: String,
    // tls
    #[serde(default)]
    pub server_name: String,
    #[serde(default = "default_warn_days")]
    pub warn_days: u32,
    /// Extra certificate authority (PEM) the certificate may chain to.
    pub ca_file: Option<PathBuf>,
}

/// An accepted HTTP status: one code or a class (`2xx`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StatusSet {
    Code(u16),
    Class(u16),
}

impl StatusSet {
    pub fn accepts(self, status: u16) -> bool {
        match self {
            StatusSet::Code(c) => c == status,
            StatusSet::Class(c) => status / 100 == c,
        }
    }
}

impl std::fmt::Display for StatusSet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StatusSet::Code(c) => write!(f, "{c}"),
            StatusSet::Class(c) => write!(f, "{c}xx"),
        }
    }
}

fn statuses<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<StatusSet>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum One {
        Code(u16),
        Text(String),
    }
    let raw = Vec::<One>::deserialize(d)?;
    raw.into_iter()
        .map(|one| match one {
            One::Code(c) if (100..600).contains(&c) => Ok(StatusSet::Code(c)),
            One::Text(t) => {
                let t = t.trim().to_ascii_lowercase();
                match t.as_bytes() {
                    [d @ b'1'..=b'5', b'x', b'x'] => Ok(StatusSet::Class(u16::from(d - b'0'))),
                    _ => t
                        .parse::<u16>()
                        .ok()
                        .filter(|c| (100..600).contains(c))
                        .map(StatusSet::Code)
                        .ok_or_else(|| {
                            serde::de::Error::custom(format!(
                                "`{t}` is not an HTTP status or a class like \"2xx\""
                            ))
                        }),
                }
            }
            One::Code(c) => Err(serde::de::Error::custom(format!(
                "{c} is not an HTTP status"
            ))),
        })
        .collect()
}

fn default_interval() -> Dur {
    Dur(std::time::Duration::from_secs(30))
}
fn default_timeout() -> Dur {
    Dur(std::time::Duration::from_secs(10))
}
fn default_threshold() -> u32 {
    2
}
fn default_severity() -> Severity {
    Severity::Critical
}
fn default_method() -> String {
    "GET".to_owned()
}
fn default_statuses() -> Vec<StatusSet> {
    vec![StatusSet::Class(2)]
}
fn yes() -> bool {
    true
}
fn default_warn_days() -> u32 {
    14
}

/// A window in which matching signals notify nobody: one-off (`starts_at`, `ends_at`) or
/// recurring (`every`, `days`, `at`, `duration`, in `time_zone`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MaintenanceSpec {
    pub name: String,
    #[serde(default)]
    pub matchers: Vec<Matcher>,
    #[serde(default)]
    pub starts_at: Option<String>,
    #[serde(default)]
    pub ends_at: Option<String>,
    pub every: Option<Recurrence>,
    /// Weekly: `mon` … `sun`.
    #[serde(default)]
    pub days: Vec<String>,
    /// `HH:MM`, local time.
    #[serde(default)]
    pub at: String,
    pub duration: Option<Dur>,
    /// Empty: `server.time_zone`.
    #[serde(default)]
    pub time_zone: String,
    /// What citizens are told of it on the status page; without it the window is internal.
    #[serde(default)]
    pub public: Option<PublicMaintenance>,
}

/// A problem with a window's key: (key, message).
#[derive(Debug)]
pub struct WindowError(pub &'static str, pub String);

fn weekday(raw: &str) -> Option<Weekday> {
    Some(match raw.trim().to_ascii_lowercase().get(..3)? {
        "mon" | "lun" => Weekday::Monday,
        "tue" | "mar" => Weekday::Tuesday,
        "wed" | "mer" => Weekday::Wednesday,
        "thu" | "gio" => Weekday::Thursday,
        "fri" | "ven" => Weekday::Friday,
        "sat" | "sab" => Weekday::Saturday,
        "sun" | "dom" => Weekday::Sunday,
        _ => return None,
    })
}

impl MaintenanceSpec {
    /// The window this entry describes, or the key that is wrong and why.
    pub fn window(&self, default_tz: &str) -> Result<Window, WindowError> {
        let spec = self;
        let tz = if spec.time_zone.is_empty() {
            // server.time_zone, checked (and reported) on its own.
            TimeZone::get(default_tz).unwrap_or(TimeZone::UTC)
        } else {
            TimeZone::get(&spec.time_zone)
                .map_err(|e| WindowError("time_zone", format!("`{}`: {e}", spec.time_zone)))?
        };
        if spec.name.trim().is_empty() {
            return Err(WindowError(
                "name",
                "give the window a name (it is shown on incidents)".into(),
            ));
        }
        let when = match (&spec.every, &spec.starts_at, &spec.ends_at) {
            (None, Some(start), Some(end)) => {
                let starts_at = parse_time(start, &tz).map_err(|e| WindowError("starts_at", e))?;
                let ends_at = parse_time(end, &tz).map_err(|e| WindowError("ends_at", e))?;
                if ends_at <= starts_at {
                    return Err(WindowError("ends_at", "must be after starts_at".into()));
                }
                When::Once { starts_at, ends_at }
            }
            (Some(every), None, None) => {
                let at: Time = spec.at.trim().parse().map_err(|_| {
                    WindowError(
                        "at",
                        format!("`{}` is not a local time like 02:00", spec.at),
                    )
                })?;
                let duration = spec
                    .duration
                    .map(|d| d.get())
                    .filter(|d| !d.is_zero() && *d <= std::time::Duration::from_secs(7 * 86400))
                    .ok_or_else(|| {
                        WindowError("duration", "give a duration from 1s to 7d".into())
                    })?;
                let duration = SignedDuration::try_from(duration)
                    .map_err(|e| WindowError("duration", e.to_string()))?;
                let days = spec
                    .days
                    .iter()
                    .map(|d| {
                        weekday(d).ok_or_else(|| {
                            WindowError("days", format!("`{d}` is not a day (mon … sun)"))
                        })
                    })
                    .collect::<Result<Vec<_>, _>>()?;
                if *every == Recurrence::Weekly && days.is_empty() {
                    return Err(WindowError("days", "a weekly window names its days".into()));
                }
                When::Every {
                    days,
                    at,
                    duration,
                    tz,
                }
            }
            _ => {
                return Err(WindowError(
                    "every",
                    "give either starts_at and ends_at (one-off) or every, at and duration (recurring)"
                        .into(),
                ));
            }
        };
        Ok(Window {
            name: spec.name.trim().to_owned(),
            matchers: spec.matchers.clone(),
            when,
            public: spec.public.clone(),
        })
    }
}

/// Checks every probe, canary and maintenance window.
pub fn validate_probes(settings: &Settings, push: &mut impl FnMut(&str, String)) {
    let longest = settings.outbox.send_timeout.get();
    let mut names = std::collections::BTreeSet::new();
    let specs = settings
        .probes
        .iter()
        .enumerate()
        .map(|(i, p)| (format!("probes[{i}]"), p, true))
        .chain(
            settings
                .probing
                .canaries
                .iter()
                .enumerate()
                .map(|(i, p)| (format!("probing.canaries[{i}]"), p, false)),
        );
    for (path, p, named) in specs {
        let at = |key: &str| format!("{path}.{key}");
        if named {
            if p.name.trim().is_empty() {
                push(
                    &at("name"),
                    "give the probe a name (it identifies its alerts)".into(),
                );
            } else if !names.insert(p.name.trim().to_owned()) {
                push(&at("name"), format!("`{}` is declared twice", p.name));
            }
            if p.service.trim().is_empty() {
                push(&at("service"), "name the service the probe watches".into());
            }
            // They make its alerts' service and summary, and so incident titles.
            check_one_line(&at("name"), &p.name, push);
            check_one_line(&at("service"), &p.service, push);
            check_one_line(&at("summary"), &p.summary, push);
        }
        if p.interval.get() < std::time::Duration::from_millis(100)
            || p.interval.get() > std::time::Duration::from_secs(86400)
        {
            push(&at("interval"), "must be from 100ms to 1 day".into());
        }
        if !named && p.recheck_interval.is_some() {
            push(
                &at("recheck_interval"),
                "a canary is not re-checked: it runs every probing.canary_interval".into(),
            );
        } else if let Some(recheck) = p.recheck_interval
            && (recheck.get() < std::time::Duration::from_millis(100)
                || recheck.get() > p.interval.get())
        {
            push(
                &at("recheck_interval"),
                "must be from 100ms to the probe's interval".into(),
            );
        }
        if p.timeout.get().is_zero() || p.timeout.get() > longest {
            push(
                &at("timeout"),
                "must be more than 0 and at most outbox.send_timeout".into(),
            );
        }
        if p.failure_threshold == 0 || p.success_threshold == 0 {
            push(
                &at("failure_threshold"),
                "thresholds must be at least 1".into(),
            );
        }
        match p.kind {
            ProbeKind::Http => {
                super::check::check_url(&at("url"), &p.url, push);
                if reqwest::Method::from_bytes(p.method.as_bytes()).is_err() {
                    push(
                        &at("method"),
                        format!("`{}` is not an HTTP method", p.method),
                    );
                }
                if !p.body_regex.is_empty()
                    && let Err(e) = regex::Regex::new(&p.body_regex)
                {
                    // The regex crate's message spans lines; one line reads better here.
                    let e = e
                        .to_string()
                        .split_whitespace()
                        .collect::<Vec<_>>()
                        .join(" ");
                    push(&at("body_regex"), format!("does not compile: {e}"));
                }
                for name in p.headers.keys() {
                    if reqwest::header::HeaderName::from_bytes(name.as_bytes()).is_err() {
                        push(&at("headers"), format!("`{name}` is not a header name"));
                    }
                }
            }
            ProbeKind::Tcp | ProbeKind::Tls => {
                if !host_port(&p.target) {
                    push(&at("target"), format!("`{}` is not host:port", p.target));
                }
            }
            ProbeKind::Dns => {
                if p.target.trim().is_empty() {
                    push(&at("target"), "name the DNS name to resolve".into());
                }
                if !["", "A", "AAAA", "CNAME", "MX", "TXT", "NS"]
                    .contains(&p.record_type.to_ascii_uppercase().as_str())
                {
                    push(
                        &at("record_type"),
                        format!(
                            "`{}` is not one of A, AAAA, CNAME, MX, TXT, NS",
                            p.record_type
                        ),
                    );
                }
                if !p.resolver.is_empty() && p.resolver.parse::<std::net::SocketAddr>().is_err() {
                    push(
                        &at("resolver"),
                        format!("`{}` is not ip:port, like 9.9.9.9:53", p.resolver),
                    );
                }
            }
        }
        if let Some(ca) = &p.ca_file
            && let Err(e) = std::fs::metadata(ca)
        {
            push(&at("ca_file"), format!("{}: {e}", ca.display()));
        }
    }
    let probing = &settings.probing;
    let canary = probing.canary_interval.get();
    if canary < std::time::Duration::from_millis(100)
        || canary > std::time::Duration::from_secs(86400)
    {
        push(
            "probing.canary_interval",
            "must be from 100ms to 1 day".into(),
        );
    }
    let recheck = probing.recheck_interval.get();
    if recheck < std::time::Duration::from_millis(100)
        || recheck > std::time::Duration::from_secs(3600)
    {
        push(
            "probing.recheck_interval",
            "must be from 100ms to 1 hour".into(),
        );
    }
    if probing.concurrency == 0 {
        push("probing.concurrency", "must be at least 1".into());
    }
    if probing.quorum == 0 || probing.quorum > settings.store.replicas.max(1) {
        push(
            "probing.quorum",
            format!(
                "must be from 1 to store.replicas ({}): that many replicas must see a service down",
                settings.store.replicas
            ),
        );
    }
    for (i, m) in settings.maintenance.iter().enumerate() {
        let at = |key: &str| format!("maintenance[{i}].{key}");
        if let Err(e) = m.window(&settings.server.time_zone) {
            push(&at(e.0), e.1);
        }
        check_one_line(&at("name"), &m.name, push);
        if let Some(public) = &m.public {
            if public.note.trim().is_empty() {
                push(
                    &at("public.note"),
                    "say what citizens will notice (it is shown on the status page)".into(),
                );
            }
            for (key, note) in [
                ("public.note", &public.note),
                ("public.note_en", &public.note_en),
            ] {
                if let Err(refused) = text::lines(note) {
                    push(&at(key), refused.to_string());
                }
            }
            if public.services.is_empty() {
                push(
                    &at("public.services"),
                    "name the status page services it concerns".into(),
                );
            }
            for id in &public.services {
                if !settings.status.services.iter().any(|s| &s.id == id) {
                    push(
                        &at("public.services"),
                        format!("`{id}` is not the id of a [[status.services]] entry"),
                    );
                }
            }
        }
    }
}

fn host_port(target: &str) -> bool {
    target
        .rsplit_once(':')
        .is_some_and(|(host, port)| !host.is_empty() && port.parse::<u16>().is_ok_and(|p| p > 0))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::Labels;
    use jiff::Timestamp;

    fn spec(toml_text: &str) -> MaintenanceSpec {
        toml_like(toml_text)
    }

    fn toml_like(json: &str) -> MaintenanceSpec {
        serde_json::from_str(json).unwrap()
    }

    fn at(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    #[test]
    fn occurrences_list_the_times_ahead_and_the_one_in_progress() {
        let nightly = MaintenanceSpec::window(
            &spec(r#"{"name": "Backup", "every": "daily", "at": "23:30", "duration": "2h", "time_zone": "Europe/Rome"}"#),
            "UTC",
        )
        .unwrap();
        // 00:10 in Rome: last night's is still open, then one a night.
        let now = at("2026-12-01T23:10:00Z");
        let ahead = nightly.occurrences(now, now + SignedDuration::from_hours(48));
        assert_eq!(
            ahead,
            vec![
                (at("2026-12-01T22:30:00Z"), at("2026-12-02T00:30:00Z")),
                (at("2026-12-02T22:30:00Z"), at("2026-12-03T00:30:00Z")),
                (at("2026-12-03T22:30:00Z"), at("2026-12-04T00:30:00Z")),
            ]
        );
        assert!(nightly.open_at(now));
        let once = MaintenanceSpec::window(
            &spec(r#"{"name": "CUP", "starts_at": "2026-12-10T22:00:00Z", "ends_at": "2026-12-11T02:00:00Z"}"#),
            "UTC",
        )
        .unwrap();
        assert!(
            once.occurrences(now, now + SignedDuration::from_hours(48))
                .is_empty()
        );
        assert_eq!(
            once.occurrences(now, now + SignedDuration::from_hours(14 * 24))
                .len(),
            1
        );
    }

    #[test]
    fn one_off_window_is_open_between_its_ends() {
        let w = MaintenanceSpec::window(
            &spec(r#"{"name": "CUP", "matchers": ["service=\"cup\""], "starts_at": "2026-12-01T22:00:00", "ends_at": "2026-12-02T02:00:00"}"#),
            "Europe/Rome",
        )
        .unwrap();
        // 22:00 in Rome is 21:00 UTC in winter.
        assert!(!w.open_at(at("2026-12-01T20:59:59Z")));
        assert!(w.open_at(at("2026-12-01T21:00:00Z")));
        assert!(w.open_at(at("2026-12-02T00:59:59Z")));
        assert!(!w.open_at(at("2026-12-02T01:00:00Z")));
        let mut labels = Labels::new();
        labels.insert("service".into(), "cup".into());
        assert!(w.covers(&labels));
        labels.insert("service".into(), "referti".into());
        assert!(!w.covers(&labels));
    }

    #[test]
    fn weekly_window_keeps_local_time_across_summer_time_and_midnight() {
        let w = MaintenanceSpec::window(
            &spec(r#"{"name": "Domenica", "every": "weekly", "days": ["sun"], "at": "23:00", "duration": "2h"}"#),
            "Europe/Rome",
        )
        .unwrap();
        // Sunday 29 March 2026 (summer time from that morning): 23:00 local = 21:00 UTC.
        assert!(w.open_at(at("2026-03-29T21:30:00Z")));
        // Still open past midnight, on Monday.
        assert!(w.open_at(at("2026-03-29T22:59:00Z")));
        assert!(!w.open_at(at("2026-03-29T23:00:00Z")));
        // Sunday 22 March (winter time): 23:00 local = 22:00 UTC.
        assert!(!w.open_at(at("2026-03-22T21:30:00Z")));
        assert!(w.open_at(at("2026-03-22T22:30:00Z")));
        // Not on Saturdays.
        assert!(!w.open_at(at("2026-03-28T22:30:00Z")));
    }

    #[test]
    fn a_window_without_its_times_names_the_key() {
        let err = MaintenanceSpec::window(
            &spec(r#"{"name": "x", "every": "weekly", "at": "02:00", "duration": "1h"}"#),
            "Europe/Rome",
        )
        .unwrap_err();
        assert_eq!(err.0, "days");
        let err = MaintenanceSpec::window(&spec(r#"{"name": "x"}"#), "Europe/Rome").unwrap_err();
        assert_eq!(err.0, "every");
        let err = MaintenanceSpec::window(
            &spec(r#"{"name": "x", "starts_at": "2026-12-02T00:00:00Z", "ends_at": "2026-12-01T00:00:00Z"}"#),
            "Europe/Rome",
        )
        .unwrap_err();
        assert_eq!(err.0, "ends_at");
    }
}
