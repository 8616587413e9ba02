//! The public status board: each public service's state, the open incidents with the statements
//! the communications office approved, and each service's last days.
//!
//! A service's state is a fact derived from the open incidents whose signals (or labels, for an
//! incident opened by hand) match the service's matchers: `major_outage` for a critical incident,
//! `partial_outage` for a major one, `degraded` for the rest, `maintenance` when every one of them
//! is kept quiet by a maintenance window. Text shown is only approved public text, each language
//! under the public title approved with it.

use std::collections::BTreeMap;
use std::sync::Arc;

use jiff::Timestamp;
use jiff::tz::TimeZone;
use serde::Serialize;

use crate::domain::matcher::all_match;
use crate::domain::window::Window;
use crate::domain::{Labels, Severity};
use crate::settings::StatusService;
use crate::store::{IncidentFilter, IncidentOrigin, Store, StoreError};

/// States from best to worst: a day or a service shows the worst of its incidents.
pub const STATES: [&str; 5] = [
    "operational",
    "maintenance",
    "degraded",
    "partial_outage",
    "major_outage",
];

fn rank(state: &str) -> usize {
    STATES.iter().position(|s| *s == state).unwrap_or(0)
}

fn state_of(severity: Severity, maintenance: bool) -> &'static str {
    if maintenance {
        return "maintenance";
    }
    match severity {
        Severity::Critical => "major_outage",
        Severity::Major => "partial_outage",
        _ => "degraded",
    }
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Board {
    #[schema(value_type = String, format = DateTime)]
    pub generated_at: Timestamp,
    /// The worst state of any service.
    pub overall: &'static str,
    pub services: Vec<ServiceState>,
    pub incidents: Vec<PublicIncident>,
    /// Maintenance announced to citizens, in progress or in the next [`MAINTENANCE_AHEAD`],
    /// earliest first.
    pub maintenance: Vec<Scheduled>,
}

/// How far ahead the board announces maintenance.
pub const MAINTENANCE_AHEAD: jiff::SignedDuration = jiff::SignedDuration::from_hours(14 * 24);

/// One time a maintenance window with a public note is open.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Scheduled {
    #[schema(value_type = String, format = DateTime)]
    pub starts_at: Timestamp,
    #[schema(value_type = String, format = DateTime)]
    pub ends_at: Timestamp,
    pub in_progress: bool,
    /// The `[[status.services]]` ids it concerns.
    pub services: Vec<String>,
    pub note: String,
    pub note_en: String,
}

/// The announced maintenance of `windows` from `now` to [`MAINTENANCE_AHEAD`], at most three
/// times per window (a nightly window is not listed fourteen times).
pub fn scheduled(windows: &[Window], now: Timestamp) -> Vec<Scheduled> {
    let until = now.checked_add(MAINTENANCE_AHEAD).unwrap_or(now);
    let mut out: Vec<Scheduled> = windows
        .iter()
        .filter_map(|w| w.public.as_ref().map(|p| (w, p)))
        .flat_map(|(w, p)| {
            w.occurrences(now, until)
                .into_iter()
                .take(3)
                .map(|(starts_at, ends_at)| Scheduled {
                    starts_at,
                    ends_at,
                    in_progress: starts_at <= now,
                    services: p.services.clone(),
                    note: p.note.clone(),
                    note_en: if p.note_en.is_empty() {
                        p.note.clone()
                    } else {
                        p.note_en.clone()
                    },
                })
        })
        .collect();
    out.sort_by_key(|s| s.starts_at);
    out
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct ServiceState {
    pub id: String,
    pub name: String,
    pub name_en: String,
    pub state: &'static str,
    /// The worst state of each of the last days, oldest first, as (date, state).
    pub history: Vec<Day>,
    /// Share of the last days without an outage, in percent.
    pub uptime_days: f64,
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Day {
    pub date: String,
    pub state: &'static str,
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct PublicIncident {
    pub id: i64,
    pub state: &'static str,
    pub resolved: bool,
    #[schema(value_type = String, format = DateTime)]
    pub opened_at: Timestamp,
    #[schema(value_type = Option<String>, format = DateTime)]
    pub resolved_at: Option<Timestamp>,
    pub severity: Severity,
    pub services: Vec<String>,
    /// Approved statements, oldest first.
    pub statements: Vec<Statement>,
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Statement {
    /// The approved draft it comes from: one CAP alert per draft.
    pub draft: i64,
    #[schema(value_type = String, format = DateTime)]
    pub at: Timestamp,
    pub kind: String,
    pub language: String,
    /// The public title the office approved with the text (the incident's heading on the page,
    /// the feeds' entry title, CAP's `headline`), or else the text's first line.
    pub title: String,
    pub text: String,
}

/// The services of the board that any of `label_sets` concerns.
pub fn concerned<'a>(
    services: &'a [StatusService],
    label_sets: &[&Labels],
) -> Vec<&'a StatusService> {
    services
        .iter()
        .filter(|s| label_sets.iter().any(|l| all_match(&s.matchers, l)))
        .collect()
}

/// Builds the board from the store. Incidents of the last `days` count for the history; open
/// ones for the states; only incidents with an approved statement are listed.
pub async fn board(
    store: &Arc<dyn Store>,
    services: &[StatusService],
    windows: &[Window],
    days: u32,
    tz: &TimeZone,
    now: Timestamp,
) -> Result<Board, StoreError> {
    let since = now - jiff::SignedDuration::from_hours(24 * i64::from(days));
    let mut incidents = Vec::new();
    let mut before = None;
    // Newest first, until the window is left behind.
    'pages: loop {
        let page = store
            .list_incidents(&IncidentFilter {
                open: None,
                limit: 500,
                before,
            })
            .await?;
        let Some(last) = page.last() else { break };
        before = Some(last.id);
        for i in page {
            if i.resolved_at.is_some_and(|r| r < since) && i.opened_at < since {
                break 'pages;
            }
            incidents.push(i);
        }
    }
    let today = now.to_zoned_datetime(tz.clone()).date();
    let dates: Vec<jiff::civil::Date> = (0..i64::from(days))
        .rev()
        .filter_map(|back| today.checked_sub(jiff::Span::new().days(back)).ok())
        .collect();
    let mut states: BTreeMap<&str, &'static str> = BTreeMap::new();
    let mut history: BTreeMap<&str, Vec<&'static str>> = services
        .iter()
        .map(|s| (s.id.as_str(), vec!["operational"; dates.len()]))
        .collect();
    let mut public = Vec::new();
    for incident in &incidents {
        let mut label_sets: Vec<(Labels, Severity)> = store
            .incident_alerts(incident.id)
            .await?
            .into_iter()
            .map(|a| (a.labels, a.peak_severity))
            .collect();
        if incident.origin == IncidentOrigin::Manual {
            label_sets.push((incident.labels.clone(), incident.severity));
        }
        let labels: Vec<&Labels> = label_sets.iter().map(|(l, _)| l).collect();
        let affected = concerned(services, &labels);
        if affected.is_empty() {
            continue;
        }
        let state = state_of(incident.severity, incident.maintenance.is_some());
        if incident.resolved_at.is_none() {
            for s in &affected {
                let current = states.entry(s.id.as_str()).or_insert("operational");
                if rank(state) > rank(current) {
                    *current = state;
                }
            }
        }
        // Each day the incident was open shows it.
        let start = incident.opened_at.to_zoned_datetime(tz.clone()).date();
        let end = incident
            .resolved_at
            .unwrap_or(now)
            .to_zoned_datetime(tz.clone())
            .date();
        for s in &affected {
            if let Some(days) = history.get_mut(s.id.as_str()) {
                for (i, d) in dates.iter().enumerate() {
                    if *d >= start && *d <= end && rank(state) > rank(days[i]) {
                        days[i] = state;
                    }
                }
            }
        }
        let statements = statements(store, incident.id).await?;
        if !statements.is_empty() {
            public.push(PublicIncident {
                id: incident.id,
                state,
                resolved: incident.resolved_at.is_some(),
                opened_at: incident.opened_at,
                resolved_at: incident.resolved_at,
                severity: incident.severity,
                services: affected.iter().map(|s| s.id.clone()).collect(),
                statements,
            });
        }
    }
    let services: Vec<ServiceState> = services
        .iter()
        .map(|s| {
            let days = history.remove(s.id.as_str()).unwrap_or_default();
            let good = days.iter().filter(|d| rank(d) <= rank("degraded")).count();
            ServiceState {
                id: s.id.clone(),
                name: s.name.clone(),
                name_en: s.name_in("en").to_owned(),
                state: states.get(s.id.as_str()).copied().unwrap_or("operational"),
                uptime_days: if days.is_empty() {
                    100.0
                } else {
                    (1000.0 * good as f64 / days.len() as f64).round() / 10.0
                },
                history: dates
                    .iter()
                    .zip(days)
                    .map(|(d, state)| Day {
                        date: d.to_string(),
                        state,
                    })
                    .collect(),
            }
        })
        .collect();
    let overall = services
        .iter()
        .map(|s| s.state)
        .max_by_key(|s| rank(s))
        .unwrap_or("operational");
    Ok(Board {
        generated_at: now,
        overall,
        services,
        incidents: public,
        maintenance: scheduled(windows, now),
    })
}

/// The approved statements about an incident, oldest first, each language apart.
async fn statements(store: &Arc<dyn Store>, incident: i64) -> Result<Vec<Statement>, StoreError> {
    Ok(store
        .published_drafts(incident, "public")
        .await?
        .into_iter()
        .rev()
        .flat_map(|d| {
            let at = d.decided_at.unwrap_or(d.created_at);
            let kind = d.update_kind.clone();
            let draft = d.id;
            readable_parts(d.parts)
                .into_iter()
                .map(move |(language, title, text)| Statement {
                    draft,
                    at,
                    kind: kind.clone(),
                    language,
                    title,
                    text,
                })
        })
        .collect())
}

/// An incident that concerns no service on the board, for its own page: `None` until a statement
/// about it is approved.
pub async fn incident_alone(
    store: &Arc<dyn Store>,
    id: i64,
) -> Result<Option<PublicIncident>, StoreError> {
    let Some(incident) = store.incident(id).await? else {
        return Ok(None);
    };
    let statements = statements(store, id).await?;
    if statements.is_empty() {
        return Ok(None);
    }
    Ok(Some(PublicIncident {
        id,
        state: state_of(incident.severity, incident.maintenance.is_some()),
        resolved: incident.resolved_at.is_some(),
        opened_at: incident.opened_at,
        resolved_at: incident.resolved_at,
        severity: incident.severity,
        services: Vec::new(),
        statements,
    }))
}

/// The title and text of each language of an approved draft: the status page's own part (its
/// subject is the public title), or else the social post that reads best on a page (all are
/// written for the public, in plain text) under its first line.
fn readable_parts(parts: Vec<crate::store::DraftPart>) -> Vec<(String, String, String)> {
    use crate::domain::subscriber::ChannelKind;
    const READABLE: [ChannelKind; 5] = [
        ChannelKind::Status,
        ChannelKind::Facebook,
        ChannelKind::Mastodon,
        ChannelKind::Bluesky,
        ChannelKind::X,
    ];
    let mut by_language: BTreeMap<String, (usize, String, String)> = BTreeMap::new();
    for p in parts.into_iter().filter(|p| p.state == "approved") {
        let Some(rank) = READABLE.iter().position(|c| *c == p.channel) else {
            continue;
        };
        let better = by_language
            .get(&p.language)
            .is_none_or(|(r, _, _)| rank < *r);
        if better {
            let title = p
                .subject
                .filter(|t| !t.trim().is_empty())
                .unwrap_or_else(|| crate::domain::text::headline(&p.body));
            by_language.insert(p.language, (rank, title, p.body));
        }
    }
    by_language
        .into_iter()
        .map(|(language, (_, title, text))| (language, title, text))
        .collect()
}
