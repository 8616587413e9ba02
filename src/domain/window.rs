//! Maintenance windows and silences: when they are open, the signals they match notify nobody.
//!
//! A window is one-off (from `starts_at` to `ends_at`) or recurring (daily, or weekly on some
//! days, from a local time for a duration, in a time zone, so that 02:00 stays 02:00 across the
//! change to summer time).
//!
//! How a `[[maintenance]]` entry becomes a window (its keys checked, its days and times read)
//! is the configuration's business: `MaintenanceSpec::window` in `settings/probes.rs`.

use jiff::civil::{Time, Weekday};
use jiff::tz::TimeZone;
use jiff::{SignedDuration, Timestamp, ToSpan, ZonedDateTime};

use crate::domain::matcher::all_match;
use crate::domain::{Labels, Matcher};

#[derive(Debug, Clone)]
pub struct Window {
    pub name: String,
    pub matchers: Vec<Matcher>,
    pub when: When,
    /// What the status page says of it, if anything.
    pub public: Option<PublicMaintenance>,
}

/// A maintenance window as the status page announces it, ahead and while it lasts.
#[derive(Debug, Clone, serde::Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct PublicMaintenance {
    /// What is done and what citizens will notice, in Italian.
    pub note: String,
    #[serde(default)]
    pub note_en: String,
    /// The `[[status.services]]` ids it concerns.
    pub services: Vec<String>,
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
