//! What a template sees. Times are RFC 3339 strings in UTC; templates show them in the
//! deployment's zone with the `localtime` filter.

use serde::Serialize;

use super::{ACK_URL, DETAIL, MANAGE_URL, RECIPIENT_NAME, UNSUBSCRIBE_URL};
use crate::domain::{Finding, UpdateKind};

/// The audience of the messages written for incidents' affected lists: the public statement,
/// with each person's own detail.
pub const AFFECTED: &str = "affected";

#[derive(Debug, Clone, Serialize)]
pub struct MessageContext {
    pub incident: IncidentView,
    pub update: UpdateView,
    /// Signals of the incident, firing ones first.
    pub signals: Vec<SignalView>,
    /// Signals left out of `signals` to keep the message within the channel's length limit.
    pub signals_omitted: usize,
    pub audience: String,
    pub public_url: String,
    /// The public status page.
    pub status_url: String,
    /// This incident on the public status page.
    pub incident_url: String,
    /// Placeholder, filled per recipient at send time.
    pub recipient_name: &'static str,
    /// Placeholder, filled per recipient at send time.
    pub unsubscribe_url: &'static str,
    /// Placeholder, filled per recipient at send time: the recipient's preferences page (a
    /// citizen's services, channel and language; for others, leaving).
    pub manage_url: &'static str,
    /// Placeholder, filled per recipient at send time: the page where a desk says it has seen
    /// the incident. Null for the `public` audience, which is asked for no acknowledgement.
    pub ack_url: Option<&'static str>,
    /// Placeholder, filled per recipient at send time: the appointment of a person on an
    /// incident's affected list (audience `affected`), on a line of its own, which is left out
    /// for a row without one. Null for every other audience.
    pub detail: Option<&'static str>,
}

#[derive(Debug, Clone, Serialize)]
pub struct IncidentView {
    pub id: i64,
    pub title: String,
    pub status: String,
    pub severity: String,
    pub services: Vec<String>,
    pub components: Vec<String>,
    pub opened_at: String,
    pub resolved_at: Option<String>,
    /// Whole minutes from opening to resolution, once resolved.
    pub duration_minutes: Option<i64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct UpdateView {
    pub seq: i64,
    pub kind: String,
    pub status: String,
    /// Text written by an operator, for updates posted by hand.
    pub body: Option<String>,
    pub author: Option<String>,
    pub at: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct SignalView {
    pub service: String,
    pub component: Option<String>,
    pub summary: String,
    pub description: Option<String>,
    pub status: String,
    pub severity: String,
    pub starts_at: Option<String>,
    pub url: Option<String>,
    /// What a probe found, as data (`kind` and its facts), for the `finding` macro of
    /// `common/<lang>.j2` to say in the reader's language; null for monitors' signals.
    pub finding: Option<Finding>,
}

impl MessageContext {
    pub fn new(
        incident: IncidentView,
        update: UpdateView,
        signals: Vec<SignalView>,
        audience: &str,
        public_url: &str,
    ) -> Self {
        let public_url = public_url.trim_end_matches('/').to_owned();
        let status_url = format!("{public_url}/status");
        MessageContext {
            incident_url: format!("{status_url}/incidents/{}", incident.id),
            status_url,
            incident,
            update,
            signals,
            signals_omitted: 0,
            audience: audience.to_owned(),
            public_url,
            recipient_name: RECIPIENT_NAME,
            unsubscribe_url: UNSUBSCRIBE_URL,
            manage_url: MANAGE_URL,
            ack_url: (audience != "public" && audience != AFFECTED).then_some(ACK_URL),
            detail: (audience == AFFECTED).then_some(DETAIL),
        }
    }
}

/// The incident that motivates Banditore, as a template test case: the regional data centre's
/// network fails and the booking desks (CUP) go dark.
pub fn sample_context(kind: UpdateKind) -> MessageContext {
    let resolved = kind == UpdateKind::Resolved;
    let signal = |component: &str, summary: &str, severity: &str| SignalView {
        service: "cup-backend".into(),
        component: Some(component.into()),
        summary: summary.into(),
        description: Some("Le prenotazioni non rispondono da tutti gli sportelli.".into()),
        status: if resolved { "resolved" } else { "firing" }.into(),
        severity: severity.into(),
        starts_at: Some("2023-07-19T09:14:00Z".into()),
        url: Some("https://prometheus.example.org/graph?g0.expr=up".into()),
        finding: None,
    };
    MessageContext::new(
        IncidentView {
            id: 42,
            title: "CUP backend non raggiungibile".into(),
            status: if resolved {
                "resolved"
            } else {
                "investigating"
            }
            .into(),
            severity: "critical".into(),
            services: vec!["cup-backend".into()],
            components: vec!["database".into(), "api".into()],
            opened_at: "2023-07-19T09:14:00Z".into(),
            resolved_at: resolved.then(|| "2023-07-19T13:02:00Z".into()),
            duration_minutes: resolved.then_some(228),
        },
        UpdateView {
            seq: match kind {
                UpdateKind::Opened => 1,
                UpdateKind::Updated => 2,
                UpdateKind::Resolved => 3,
            },
            kind: kind.as_str().into(),
            status: if resolved {
                "resolved"
            } else {
                "investigating"
            }
            .into(),
            body: (kind == UpdateKind::Updated)
                .then(|| "Guasto di rete nel data centre regionale.".into()),
            author: (kind == UpdateKind::Updated).then(|| "sala operativa".into()),
            at: "2023-07-19T09:14:00Z".into(),
        },
        vec![
            signal("database", "CUP database irraggiungibile", "critical"),
            signal("api", "API prenotazioni in errore", "major"),
        ],
        "cup-desk",
        "https://banditore.example.org",
    )
}
