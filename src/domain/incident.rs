//! Incidents and their lifecycle, as pure decisions over time.
//!
//! The engine (`crate::incident`) loads an incident and its alerts, asks [`evaluate`] what to do at
//! `now`, and persists the answer. Keeping the decision pure makes the grouping wait, the update
//! interval and the flap hold-down testable without a database or a clock.

use std::collections::BTreeSet;
use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use jiff::Timestamp;
use serde::{Deserialize, Serialize};

use super::Severity;

/// Statuspage-style status of an incident.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum IncidentStatus {
    Investigating,
    Identified,
    Monitoring,
    Resolved,
}

impl IncidentStatus {
    pub const ALL: [IncidentStatus; 4] = [
        IncidentStatus::Investigating,
        IncidentStatus::Identified,
        IncidentStatus::Monitoring,
        IncidentStatus::Resolved,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            IncidentStatus::Investigating => "investigating",
            IncidentStatus::Identified => "identified",
            IncidentStatus::Monitoring => "monitoring",
            IncidentStatus::Resolved => "resolved",
        }
    }
}

impl fmt::Display for IncidentStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for IncidentStatus {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        IncidentStatus::ALL
            .into_iter()
            .find(|v| v.as_str() == s)
            .ok_or_else(|| {
                format!("unknown incident status `{s}` (expected investigating, identified, monitoring or resolved)")
            })
    }
}

/// What an update announces.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum UpdateKind {
    Opened,
    Updated,
    Resolved,
}

impl UpdateKind {
    pub fn as_str(self) -> &'static str {
        match self {
            UpdateKind::Opened => "opened",
            UpdateKind::Updated => "updated",
            UpdateKind::Resolved => "resolved",
        }
    }
}

impl FromStr for UpdateKind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "opened" => Ok(UpdateKind::Opened),
            "updated" => Ok(UpdateKind::Updated),
            "resolved" => Ok(UpdateKind::Resolved),
            other => Err(format!("unknown update kind `{other}`")),
        }
    }
}

/// What was last told to subscribers: an update is due when the present differs from it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Announced {
    pub severity: Option<Severity>,
    /// Fingerprints of the alerts that were firing when the last update went out.
    pub firing: BTreeSet<String>,
}

/// Timing rules of the engine, from `[routing]`.
#[derive(Debug, Clone, Copy)]
pub struct Timing {
    /// How long a new incident gathers signals before its first notice.
    pub group_wait: Duration,
    /// Minimum gap between two automatic updates of an incident already announced.
    pub group_interval: Duration,
    /// How long every signal must stay resolved before the incident is declared resolved; a
    /// signal firing again inside the window keeps the incident open and nobody is told either
    /// change.
    pub flap_hold_down: Duration,
}

/// The engine's view of one alert of the incident.
#[derive(Debug, Clone)]
pub struct AlertState {
    pub fingerprint: String,
    pub firing: bool,
    pub severity: Severity,
    pub resolved_at: Option<Timestamp>,
}

/// The engine's view of an incident opened by signals.
#[derive(Debug, Clone)]
pub struct IncidentState {
    pub opened_at: Timestamp,
    /// `None` until the first notice went out.
    pub announced: Option<Announced>,
    pub last_announced_at: Option<Timestamp>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Decision {
    /// Nothing to say yet; look again at this time.
    WaitUntil(Timestamp),
    /// Nothing to say, and no timer needed until a signal arrives.
    Idle,
    /// Emit an update with this kind; `announced` becomes the new baseline.
    Announce {
        kind: UpdateKind,
        announced: Announced,
    },
    /// The incident ended before anyone was told: close it without a notice.
    CloseSilently,
}

fn add(t: Timestamp, d: Duration) -> Timestamp {
    jiff::SignedDuration::try_from(d)
        .ok()
        .and_then(|d| t.checked_add(d).ok())
        .unwrap_or(Timestamp::MAX)
}

/// The end of the incident's present wait: its grouping wait until the first notice, then the
/// interval since the last one. Before it, [`evaluate`] announces neither an opening nor an
/// update (a resolution waits for the flap hold-down instead).
pub fn wait_ends(incident: &IncidentState, timing: &Timing) -> Timestamp {
    match incident.announced {
        None => add(incident.opened_at, timing.group_wait),
        Some(_) => add(
            incident.last_announced_at.unwrap_or(incident.opened_at),
            timing.group_interval,
        ),
    }
}

/// What [`evaluate`] decides, known without the incident's alerts: when one of them fires and
/// the last notice did not list it (`unannounced_firing`), the incident waits until
/// [`wait_ends`] whatever its other alerts are, if that has not come. A storm of new alerts
/// joining an incident inside its wait is decided this way.
pub fn must_wait(
    incident: &IncidentState,
    unannounced_firing: bool,
    now: Timestamp,
    timing: &Timing,
) -> Option<Timestamp> {
    let due = wait_ends(incident, timing);
    (unannounced_firing && now < due).then_some(due)
}

/// Decides what an incident opened by signals needs at `now`.
pub fn evaluate(
    incident: &IncidentState,
    alerts: &[AlertState],
    now: Timestamp,
    timing: &Timing,
) -> Decision {
    let firing: BTreeSet<String> = alerts
        .iter()
        .filter(|a| a.firing)
        .map(|a| a.fingerprint.clone())
        .collect();
    let severity = alerts.iter().filter(|a| a.firing).map(|a| a.severity).max();

    let Some(previous) = &incident.announced else {
        if firing.is_empty() {
            return Decision::CloseSilently;
        }
        let due = wait_ends(incident, timing);
        return if now >= due {
            Decision::Announce {
                kind: UpdateKind::Opened,
                announced: Announced { severity, firing },
            }
        } else {
            Decision::WaitUntil(due)
        };
    };

    if firing.is_empty() {
        let quiet_since = alerts
            .iter()
            .filter_map(|a| a.resolved_at)
            .max()
            .unwrap_or(now);
        let due = add(quiet_since, timing.flap_hold_down);
        return if now >= due {
            Decision::Announce {
                kind: UpdateKind::Resolved,
                announced: Announced {
                    severity: previous.severity,
                    firing,
                },
            }
        } else {
            Decision::WaitUntil(due)
        };
    }

    let present = Announced { severity, firing };
    if &present == previous {
        return Decision::Idle;
    }
    let due = wait_ends(incident, timing);
    if now >= due {
        Decision::Announce {
            kind: UpdateKind::Updated,
            announced: present,
        }
    } else {
        Decision::WaitUntil(due)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn ts(secs: i64) -> Timestamp {
        Timestamp::from_second(1_800_000_000 + secs).unwrap()
    }

    fn timing() -> Timing {
        Timing {
            group_wait: Duration::from_secs(5),
            group_interval: Duration::from_secs(60),
            flap_hold_down: Duration::from_secs(30),
        }
    }

    fn alert(fp: &str, firing: bool, severity: Severity, resolved_at: Option<i64>) -> AlertState {
        AlertState {
            fingerprint: fp.into(),
            firing,
            severity,
            resolved_at: resolved_at.map(ts),
        }
    }

    fn fresh() -> IncidentState {
        IncidentState {
            opened_at: ts(0),
            announced: None,
            last_announced_at: None,
        }
    }

    fn announced(fps: &[&str], severity: Severity, at: i64) -> IncidentState {
        IncidentState {
            opened_at: ts(0),
            announced: Some(Announced {
                severity: Some(severity),
                firing: fps.iter().map(|s| s.to_string()).collect(),
            }),
            last_announced_at: Some(ts(at)),
        }
    }

    #[test]
    fn new_incident_waits_for_group_wait_then_opens() {
        let alerts = [alert("a", true, Severity::Warning, None)];
        assert_eq!(
            evaluate(&fresh(), &alerts, ts(1), &timing()),
            Decision::WaitUntil(ts(5))
        );
        match evaluate(&fresh(), &alerts, ts(5), &timing()) {
            Decision::Announce { kind, announced } => {
                assert_eq!(kind, UpdateKind::Opened);
                assert_eq!(announced.severity, Some(Severity::Warning));
                assert_eq!(announced.firing.len(), 1);
            }
            other => panic!("expected an opening, got {other:?}"),
        }
    }

    #[test]
    fn zero_group_wait_opens_at_once() {
        let t = Timing {
            group_wait: Duration::ZERO,
            ..timing()
        };
        let alerts = [alert("a", true, Severity::Critical, None)];
        assert!(matches!(
            evaluate(&fresh(), &alerts, ts(0), &t),
            Decision::Announce {
                kind: UpdateKind::Opened,
                ..
            }
        ));
    }

    #[test]
    fn blip_resolved_before_announcement_closes_silently() {
        let alerts = [alert("a", false, Severity::Warning, Some(2))];
        assert_eq!(
            evaluate(&fresh(), &alerts, ts(5), &timing()),
            Decision::CloseSilently
        );
    }

    #[test]
    fn unchanged_announced_incident_is_idle() {
        let alerts = [alert("a", true, Severity::Warning, None)];
        assert_eq!(
            evaluate(
                &announced(&["a"], Severity::Warning, 5),
                &alerts,
                ts(500),
                &timing()
            ),
            Decision::Idle
        );
    }

    #[test]
    fn new_component_waits_for_group_interval() {
        let inc = announced(&["a"], Severity::Warning, 5);
        let alerts = [
            alert("a", true, Severity::Warning, None),
            alert("b", true, Severity::Warning, None),
        ];
        assert_eq!(
            evaluate(&inc, &alerts, ts(10), &timing()),
            Decision::WaitUntil(ts(65))
        );
        assert!(matches!(
            evaluate(&inc, &alerts, ts(65), &timing()),
            Decision::Announce {
                kind: UpdateKind::Updated,
                ..
            }
        ));
    }

    #[test]
    fn severity_escalation_is_an_update() {
        let inc = announced(&["a"], Severity::Warning, 5);
        let alerts = [alert("a", true, Severity::Critical, None)];
        match evaluate(&inc, &alerts, ts(100), &timing()) {
            Decision::Announce { kind, announced } => {
                assert_eq!(kind, UpdateKind::Updated);
                assert_eq!(announced.severity, Some(Severity::Critical));
            }
            other => panic!("expected an update, got {other:?}"),
        }
    }

    #[test]
    fn resolution_waits_for_the_flap_hold_down() {
        let inc = announced(&["a", "b"], Severity::Warning, 5);
        let alerts = [
            alert("a", false, Severity::Warning, Some(40)),
            alert("b", false, Severity::Warning, Some(50)),
        ];
        assert_eq!(
            evaluate(&inc, &alerts, ts(60), &timing()),
            Decision::WaitUntil(ts(80))
        );
        match evaluate(&inc, &alerts, ts(80), &timing()) {
            Decision::Announce { kind, announced } => {
                assert_eq!(kind, UpdateKind::Resolved);
                assert!(announced.firing.is_empty());
            }
            other => panic!("expected a resolution, got {other:?}"),
        }
    }

    #[test]
    fn refire_inside_hold_down_says_nothing() {
        // Resolved at 40, firing again at 45: same set as announced, so nothing is sent.
        let inc = announced(&["a"], Severity::Warning, 5);
        let alerts = [alert("a", true, Severity::Warning, None)];
        assert_eq!(evaluate(&inc, &alerts, ts(45), &timing()), Decision::Idle);
    }

    #[test]
    fn zero_hold_down_resolves_at_once() {
        let t = Timing {
            flap_hold_down: Duration::ZERO,
            ..timing()
        };
        let inc = announced(&["a"], Severity::Warning, 5);
        let alerts = [alert("a", false, Severity::Warning, Some(9))];
        assert!(matches!(
            evaluate(&inc, &alerts, ts(9), &t),
            Decision::Announce {
                kind: UpdateKind::Resolved,
                ..
            }
        ));
    }

    fn arbitrary_alert() -> impl Strategy<Value = AlertState> {
        (
            0..6u8,
            any::<bool>(),
            0..4usize,
            proptest::option::of(0..200i64),
        )
            .prop_map(|(fp, firing, sev, resolved)| AlertState {
                fingerprint: format!("fp{fp}"),
                firing,
                severity: [
                    Severity::Info,
                    Severity::Warning,
                    Severity::Major,
                    Severity::Critical,
                ][sev],
                resolved_at: if firing { None } else { resolved.map(ts) },
            })
    }

    fn arbitrary_incident() -> impl Strategy<Value = IncidentState> {
        (
            proptest::option::of((
                proptest::collection::btree_set(0..6u8, 0..6),
                0..4usize,
                0..200i64,
            )),
            0..200i64,
        )
            .prop_map(|(announced, opened)| match announced {
                None => IncidentState {
                    opened_at: ts(opened),
                    announced: None,
                    last_announced_at: None,
                },
                Some((fps, sev, at)) => IncidentState {
                    opened_at: ts(opened.min(at)),
                    announced: Some(Announced {
                        severity: [
                            None,
                            Some(Severity::Info),
                            Some(Severity::Warning),
                            Some(Severity::Critical),
                        ][sev],
                        firing: fps.iter().map(|f| format!("fp{f}")).collect(),
                    }),
                    last_announced_at: Some(ts(at)),
                },
            })
    }

    proptest! {
        /// The engine skips reading an incident's alerts when `must_wait` answers: it must
        /// answer only what `evaluate` would have decided with all of them.
        #[test]
        fn must_wait_agrees_with_evaluate(
            incident in arbitrary_incident(),
            alerts in proptest::collection::vec((arbitrary_alert(), any::<bool>()), 0..8),
            now in 0..400i64,
            wait in 0..60u64,
            interval in 0..120u64,
            hold in 0..60u64,
        ) {
            let timing = Timing {
                group_wait: Duration::from_secs(wait),
                group_interval: Duration::from_secs(interval),
                flap_hold_down: Duration::from_secs(hold),
            };
            // The engine knows only the alerts its batch touched: some of them.
            let unannounced = alerts.iter().any(|(a, in_batch)| {
                *in_batch
                    && a.firing
                    && incident
                        .announced
                        .as_ref()
                        .is_none_or(|n| !n.firing.contains(&a.fingerprint))
            });
            let alerts: Vec<AlertState> = alerts.into_iter().map(|(a, _)| a).collect();
            let decided = evaluate(&incident, &alerts, ts(now), &timing);
            match must_wait(&incident, unannounced, ts(now), &timing) {
                Some(due) => prop_assert_eq!(decided, Decision::WaitUntil(due)),
                // Without an unannounced firing alert it claims nothing; with one, past the
                // wait, a notice is due.
                None if unannounced => prop_assert!(
                    matches!(decided, Decision::Announce { .. }),
                    "{decided:?}"
                ),
                None => {}
            }
        }
    }

    #[test]
    fn statuses_parse() {
        assert_eq!(
            "monitoring".parse::<IncidentStatus>(),
            Ok(IncidentStatus::Monitoring)
        );
        assert!("fixed".parse::<IncidentStatus>().is_err());
    }
}
