//! Incidents as the API, the console and the status pages read them: the incident, its alerts, its
//! updates and the deliveries they made, and the figures `/metrics` shows. The engine writes the
//! same rows through [`super::Tx`].

use std::collections::BTreeMap;

use async_trait::async_trait;
use jiff::Timestamp;
use serde::Serialize;

use super::Result;
use crate::domain::finding::FINDING_ANNOTATION;
use crate::domain::incident::{AlertState, Announced};
use crate::domain::subscriber::ChannelKind;
use crate::domain::{Finding, IncidentStatus, Labels, Severity, Source, UpdateKind};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum IncidentOrigin {
    Signals,
    Manual,
}

impl IncidentOrigin {
    pub fn as_str(self) -> &'static str {
        match self {
            IncidentOrigin::Signals => "signals",
            IncidentOrigin::Manual => "manual",
        }
    }
}

#[derive(Debug, Clone)]
pub struct IncidentRow {
    pub id: i64,
    pub group_key: String,
    pub title: String,
    pub status: IncidentStatus,
    pub severity: Severity,
    pub origin: IncidentOrigin,
    /// Labels given by hand (manual incidents); signal incidents carry theirs on their alerts.
    pub labels: Labels,
    pub opened_at: Timestamp,
    pub resolved_at: Option<Timestamp>,
    pub announced: Option<Announced>,
    pub last_announced_at: Option<Timestamp>,
    pub eval_at: Option<Timestamp>,
    pub pending_since: Option<Timestamp>,
    pub last_seq: i64,
    /// The maintenance window or silence that kept the incident's updates from being sent.
    pub maintenance: Option<String>,
}

impl IncidentRow {
    /// The row as the store gives it back: times to the millisecond, as they are kept.
    pub fn as_stored(mut self) -> IncidentRow {
        fn kept(t: Timestamp) -> Timestamp {
            super::rows::ts(super::rows::ms(t)).unwrap_or(t)
        }
        self.opened_at = kept(self.opened_at);
        for t in [
            &mut self.resolved_at,
            &mut self.last_announced_at,
            &mut self.eval_at,
            &mut self.pending_since,
        ] {
            *t = t.map(kept);
        }
        self
    }
}

/// An incident and its alerts as a transaction has just written and read them, handed to a
/// later stage of the same transaction (the engine's to the router's) instead of read again.
#[derive(Debug, Clone)]
pub struct Written {
    pub incident: IncidentRow,
    pub alerts: Vec<AlertRow>,
}

/// The state of one fingerprint within one incident.
#[derive(Debug, Clone)]
pub struct AlertRow {
    /// 0 until the row is saved.
    pub id: i64,
    pub incident_id: i64,
    pub fingerprint: String,
    pub source: Source,
    pub firing: bool,
    pub severity: Severity,
    pub peak_severity: Severity,
    pub service: String,
    pub component: Option<String>,
    pub labels: Labels,
    pub annotations: Labels,
    pub summary: String,
    pub url: Option<String>,
    pub starts_at: Option<Timestamp>,
    pub first_seen_at: Timestamp,
    pub last_seen_at: Timestamp,
    pub resolved_at: Option<Timestamp>,
    /// How long after it was last seen a firing alert resolves by itself: set for alerts whose
    /// sender states an end time and re-sends while they fire (Prometheus), `None` for those
    /// whose sender resolves them.
    pub expires_after: Option<jiff::SignedDuration>,
}

/// A signal as an update described it, frozen with the update.
#[derive(Debug, Clone, PartialEq, Serialize, serde::Deserialize)]
pub struct SignalSnapshot {
    pub service: String,
    pub component: Option<String>,
    pub summary: String,
    pub description: Option<String>,
    pub firing: bool,
    pub severity: Severity,
    pub starts_at: Option<Timestamp>,
    pub url: Option<String>,
    /// A probe's or a heartbeat's finding, which templates put into words (absent from other
    /// signals, and from updates written before findings were kept).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finding: Option<Finding>,
}

impl AlertRow {
    /// What the engine decides on ([`Tx::alert_states`](super::Tx::alert_states) reads only
    /// this).
    pub fn state(&self) -> AlertState {
        AlertState {
            fingerprint: self.fingerprint.clone(),
            firing: self.firing,
            severity: self.severity,
            resolved_at: self.resolved_at,
        }
    }

    /// When a firing alert's lease runs out, counted from `since` at the earliest: the engine
    /// expires it then unless it is seen again.
    pub fn ends_after(&self, since: Timestamp) -> Option<Timestamp> {
        let end = self.expires_at()?;
        let after = self.expires_after?;
        Some(end.max(since.checked_add(after).unwrap_or(Timestamp::MAX)))
    }

    /// When a firing alert resolves unless it is seen again: the end its sender asked for.
    pub fn expires_at(&self) -> Option<Timestamp> {
        let after = self.expires_after.filter(|_| self.firing)?;
        Some(
            self.last_seen_at
                .checked_add(after)
                .unwrap_or(Timestamp::MAX),
        )
    }

    /// What the probe or the heartbeat behind this signal found; a monitor's annotations are
    /// not read as one.
    pub fn finding(&self) -> Option<Finding> {
        if !matches!(self.source, Source::Probe | Source::Heartbeat) {
            return None;
        }
        self.annotations
            .get(FINDING_ANNOTATION)
            .and_then(|json| Finding::from_annotation(json))
    }
}

impl SignalSnapshot {
    /// The incident's signals as they are now, firing ones first, worst first.
    pub fn of(alerts: &[AlertRow]) -> Vec<SignalSnapshot> {
        let mut list: Vec<&AlertRow> = alerts.iter().collect();
        list.sort_by_key(|a| (!a.firing, std::cmp::Reverse(a.peak_severity)));
        list.into_iter()
            .map(|a| SignalSnapshot {
                service: a.service.clone(),
                component: a.component.clone(),
                summary: a.summary.clone(),
                description: a.annotations.get("description").cloned(),
                firing: a.firing,
                severity: a.peak_severity,
                starts_at: a.starts_at,
                url: a.url.clone(),
                finding: a.finding(),
            })
            .collect()
    }
}

#[derive(Debug, Clone)]
pub struct UpdateRow {
    pub id: i64,
    pub incident_id: i64,
    pub seq: i64,
    pub kind: UpdateKind,
    pub status: IncidentStatus,
    pub severity: Severity,
    pub title: String,
    pub signals: Vec<SignalSnapshot>,
    pub body: Option<String>,
    pub author: Option<String>,
    pub created_at: Timestamp,
    pub origin_at: Timestamp,
    pub silent: bool,
    pub routed_at: Option<Timestamp>,
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct DeliveryRow {
    pub id: i64,
    pub update_seq: i64,
    pub channel: ChannelKind,
    pub recipient: String,
    /// The recipient is a citizen who signed up on the status page (personal data).
    pub citizen: bool,
    pub subscriber: String,
    pub state: String,
    pub attempts: i64,
    pub last_error: Option<String>,
    pub provider_id: Option<String>,
    pub provider: Option<String>,
    pub segments: Option<i64>,
    /// The last delivery report: the provider's status, its error code, when it came.
    pub report_status: Option<String>,
    pub report_error: Option<String>,
    #[schema(value_type = Option<String>, format = DateTime)]
    pub report_at: Option<Timestamp>,
    #[schema(value_type = String, format = DateTime)]
    pub created_at: Timestamp,
    #[schema(value_type = Option<String>, format = DateTime)]
    pub sent_at: Option<Timestamp>,
    #[schema(value_type = Option<String>, format = DateTime)]
    pub next_attempt_at: Option<Timestamp>,
}

#[derive(Debug, Clone, Default)]
pub struct IncidentFilter {
    /// Only open (true) or only resolved (false) incidents.
    pub open: Option<bool>,
    pub limit: u32,
    /// Incidents with an id below this one (for paging back in time).
    pub before: Option<i64>,
}

/// Figures for `/metrics`, read at scrape time.
#[derive(Debug, Clone, Default)]
pub struct Counts {
    pub open_incidents: i64,
    /// (channel, state) → number of deliveries, drafts' notices included.
    pub deliveries: BTreeMap<(String, String), i64>,
    /// channel → when its oldest delivery not yet sent (pending or sending) was written;
    /// channels with none are absent.
    pub oldest_unsent: BTreeMap<String, Timestamp>,
    pub unprocessed_signals: i64,
    /// When the oldest signal not yet applied to incidents arrived.
    pub oldest_unprocessed_signal: Option<Timestamp>,
}

/// Reads of incidents and what was sent about them.
#[async_trait]
pub trait IncidentReads: Send + Sync {
    async fn list_incidents(&self, filter: &IncidentFilter) -> Result<Vec<IncidentRow>>;
    async fn incident(&self, id: i64) -> Result<Option<IncidentRow>>;
    async fn incident_updates(&self, incident_id: i64) -> Result<Vec<UpdateRow>>;
    async fn incident_alerts(&self, incident_id: i64) -> Result<Vec<AlertRow>>;
    /// What the incident's updates were sent as, to whom, oldest first; the notices of its
    /// drafts to the communications office are not among them.
    async fn incident_deliveries(&self, incident_id: i64) -> Result<Vec<DeliveryRow>>;
    async fn counts(&self) -> Result<Counts>;
}
