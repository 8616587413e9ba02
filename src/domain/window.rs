//! Maintenance windows and silences: when they are open, the signals they match notify nobody.
//!
//! A window is one-off (from `starts_at` to `ends_at`) or recurring (daily, or weekly on some
//! days, from a local time for a duration, in a time zone, so that 02:00 stays 02:00 across the
//! change to summer time).

use jiff::civil::{Time, Weekday};
use jiff::tz::TimeZone;
use jiff::{SignedDuration, Timestamp, ToSpan, ZonedDateTime};

use crate::domain::matcher::all_match;
use crate::domain::{Labels, Matcher};
use crate::settings::{MaintenanceSpec, PublicMaintenance, Recurrence};

#[derive(Debug, Clone)]
pub struct Window {
    pub name: String,
    pub matchers: Vec<Matcher>,
    pub when: When,
    /// What the status page says of it, if anything.
    pub public: Option<PublicMaintenance>,
}

#[derive(Debug, Clone)]
pub enum When {
    Once {
        starts_at: Timestamp,
        ends_at: Timestamp,
    },
    Every {
        /// Empty: every day.
        days: Vec<Weekday>,
        at: Time,
        duration: SignedDuration,
        tz: TimeZone,
    },
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

/// A time written with an offset (`2026-12-01T22:00:00+01:00`, `…Z`) or, without one, in `tz`.
pub fn parse_time(raw: &str, tz: &TimeZone) -> Result<Timestamp, String> {
    if let Ok(t) = raw.parse::<Timestamp>() {
        return Ok(t);
    }
    raw.parse::<jiff::civil::DateTime>()
        .map_err(|e| format!("`{raw}` is not a date and time like 2026-12-01T22:00:00+01:00 ({e})"))
        .and_then(|dt| {
            dt.to_zoned_datetime(tz.clone())
                .map(|z| z.timestamp())
                .map_err(|e| format!("`{raw}`: {e}"))
        })
}

impl Window {
    pub fn from_spec(spec: &MaintenanceSpec, default_tz: &str) -> Result<Window, WindowError> {
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

    /// Whether the window is open at `now`.
    pub fn open_at(&self, now: Timestamp) -> bool {
        self.occurrences(now, now)
            .iter()
            .any(|(start, end)| *start <= now && now < *end)
    }

    /// The times the window is open that end after `from` and start by `until`, earliest first.
    pub fn occurrences(&self, from: Timestamp, until: Timestamp) -> Vec<(Timestamp, Timestamp)> {
        match &self.when {
            When::Once { starts_at, ends_at } => (*ends_at > from && *starts_at <= until)
                .then_some((*starts_at, *ends_at))
                .into_iter()
                .collect(),
            When::Every {
                days,
                at,
                duration,
                tz,
            } => {
                let first = from.to_zoned_datetime(tz.clone()).date();
                let last = until.to_zoned_datetime(tz.clone()).date();
                // A window that opened on one of the days before `from` may still be open.
                let back = duration.as_secs() / 86400 + 1;
                let Ok(mut day) = first.checked_sub(back.days()) else {
                    return Vec::new();
                };
                let mut out = Vec::new();
                while day <= last {
                    if days.is_empty() || days.contains(&day.weekday()) {
                        let start: Result<ZonedDateTime, _> =
                            day.to_datetime(*at).to_zoned_datetime(tz.clone());
                        if let Ok(start) = start {
                            let start = start.timestamp();
                            let end = start.checked_add(*duration).unwrap_or(start);
                            if end > from && start <= until {
                                out.push((start, end));
                            }
                        }
                    }
                    let Ok(next) = day.checked_add(1.days()) else {
                        break;
                    };
                    day = next;
                }
                out
            }
        }
    }

    /// Whether the window covers a signal with these labels.
    pub fn covers(&self, labels: &Labels) -> bool {
        all_match(&self.matchers, labels)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
        let nightly = Window::from_spec(
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
        let once = Window::from_spec(
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
        let w = Window::from_spec(
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
        let w = Window::from_spec(
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
        let err = Window::from_spec(
            &spec(r#"{"name": "x", "every": "weekly", "at": "02:00", "duration": "1h"}"#),
            "Europe/Rome",
        )
        .unwrap_err();
        assert_eq!(err.0, "days");
        let err = Window::from_spec(&spec(r#"{"name": "x"}"#), "Europe/Rome").unwrap_err();
        assert_eq!(err.0, "every");
        let err = Window::from_spec(
            &spec(r#"{"name": "x", "starts_at": "2026-12-02T00:00:00Z", "ends_at": "2026-12-01T00:00:00Z"}"#),
            "Europe/Rome",
        )
        .unwrap_err();
        assert_eq!(err.0, "ends_at");
    }
}
