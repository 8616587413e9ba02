//! `/api/v1/incidents`: list, read, open by hand, post updates, see deliveries (opening, updates
//! and the masking of citizens' contacts are the service layer's).

use std::collections::BTreeMap;

use axum::Json;
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use jiff::Timestamp;
use serde::{Deserialize, Serialize};

use crate::domain::Labels;
use crate::incident::{ManualIncident, ManualUpdate};
use crate::settings::Permission;
use crate::store::{AlertRow, IncidentFilter, IncidentRow, UpdateRow};
use crate::web::body::{json, read};
use crate::web::error::ApiError;
use crate::web::extract::{Path, Query};
use crate::web::service;
use crate::web::{AppState, require};

#[derive(Serialize)]
pub struct IncidentJson {
    id: i64,
    title: String,
    status: String,
    severity: String,
    /// Statuspage-style impact: none, minor, major or critical.
    impact: &'static str,
    origin: &'static str,
    opened_at: Timestamp,
    resolved_at: Option<Timestamp>,
    announced: bool,
    updates: i64,
    /// The maintenance window or silence that kept its updates from being sent.
    #[serde(skip_serializing_if = "Option::is_none")]
    maintenance: Option<String>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    labels: Labels,
}

impl From<&IncidentRow> for IncidentJson {
    fn from(i: &IncidentRow) -> Self {
        IncidentJson {
            id: i.id,
            title: i.title.clone(),
            status: i.status.as_str().into(),
            severity: i.severity.as_str().into(),
            impact: i.severity.impact(),
            origin: i.origin.as_str(),
            opened_at: i.opened_at,
            resolved_at: i.resolved_at,
            announced: i.announced.is_some(),
            updates: i.last_seq,
            maintenance: i.maintenance.clone(),
            labels: i.labels.clone(),
        }
    }
}

#[derive(Serialize)]
pub struct UpdateJson {
    seq: i64,
    kind: &'static str,
    status: &'static str,
    severity: &'static str,
    body: Option<String>,
    author: Option<String>,
    created_at: Timestamp,
    /// False for the record of an incident that closed before anyone was told.
    notified: bool,
}

impl From<&UpdateRow> for UpdateJson {
    fn from(u: &UpdateRow) -> Self {
        UpdateJson {
            seq: u.seq,
            kind: u.kind.as_str(),
            status: u.status.as_str(),
            severity: u.severity.as_str(),
            body: u.body.clone(),
            author: u.author.clone(),
            created_at: u.created_at,
            notified: !u.silent,
        }
    }
}

#[derive(Serialize)]
pub struct SignalJson {
    fingerprint: String,
    source: &'static str,
    status: &'static str,
    severity: &'static str,
    service: String,
    component: Option<String>,
    summary: String,
    /// A probe's finding, as data.
    finding: Option<crate::domain::Finding>,
    labels: Labels,
    annotations: Labels,
    url: Option<String>,
    starts_at: Option<Timestamp>,
    first_seen_at: Timestamp,
    last_seen_at: Timestamp,
    resolved_at: Option<Timestamp>,
}

impl From<&AlertRow> for SignalJson {
    fn from(a: &AlertRow) -> Self {
        SignalJson {
            fingerprint: a.fingerprint.clone(),
            source: a.source.as_str(),
            status: if a.firing { "firing" } else { "resolved" },
            severity: a.severity.as_str(),
            service: a.service.clone(),
            component: a.component.clone(),
            summary: a.summary.clone(),
            finding: a.finding(),
            labels: a.labels.clone(),
            annotations: a.annotations.clone(),
            url: a.url.clone(),
            starts_at: a.starts_at,
            first_seen_at: a.first_seen_at,
            last_seen_at: a.last_seen_at,
            resolved_at: a.resolved_at,
        }
    }
}

#[derive(Deserialize)]
pub struct ListQuery {
    status: Option<String>,
    limit: Option<u32>,
    before: Option<i64>,
}

pub async fn list(
    State(state): State<AppState>,
    headers: HeaderMap,
    Query(q): Query<ListQuery>,
) -> Result<impl IntoResponse, ApiError> {
    require(&state, &headers, Permission::Read)?;
    let open = match q.status.as_deref() {
        None | Some("all") => None,
        Some("open") => Some(true),
        Some("resolved") => Some(false),
        Some(other) => {
            return Err(ApiError::field(
                "status",
                format!("`{other}`: expected open, resolved or all"),
            ));
        }
    };
    let filter = IncidentFilter {
        open,
        limit: q.limit.unwrap_or(50).clamp(1, 500),
        before: q.before,
    };
    let rows = state.store.list_incidents(&filter).await?;
    let incidents: Vec<IncidentJson> = rows.iter().map(IncidentJson::from).collect();
    Ok(Json(serde_json::json!({ "incidents": incidents })))
}

pub async fn get(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<i64>,
) -> Result<impl IntoResponse, ApiError> {
    require(&state, &headers, Permission::Read)?;
    let incident = state
        .store
        .incident(id)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("incident {id} not found")))?;
    let updates = state.store.incident_updates(id).await?;
    let alerts = state.store.incident_alerts(id).await?;
    let mut body = serde_json::to_value(IncidentJson::from(&incident))
        .map_err(|e| ApiError::Internal(e.to_string()))?;
    body["updates"] =
        serde_json::to_value(updates.iter().map(UpdateJson::from).collect::<Vec<_>>())
            .map_err(|e| ApiError::Internal(e.to_string()))?;
    body["signals"] = serde_json::to_value(alerts.iter().map(SignalJson::from).collect::<Vec<_>>())
        .map_err(|e| ApiError::Internal(e.to_string()))?;
    Ok(Json(body))
}

pub async fn deliveries(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<i64>,
) -> Result<impl IntoResponse, ApiError> {
    let principal = require(&state, &headers, Permission::Read)?;
    let rows = service::incidents::deliveries(&state, id, &principal).await?;
    let mut summary: BTreeMap<String, BTreeMap<String, u64>> = BTreeMap::new();
    for d in &rows {
        *summary
            .entry(d.channel.as_str().to_owned())
            .or_default()
            .entry(d.state.clone())
            .or_default() += 1;
    }
    Ok(Json(
        serde_json::json!({ "summary": summary, "deliveries": rows }),
    ))
}

pub async fn open(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Body,
) -> Result<impl IntoResponse, ApiError> {
    let who = require(&state, &headers, Permission::Incidents)?;
    let bytes = read(&headers, body, state.max_body_bytes).await?;
    let req: ManualIncident = json(&headers, &bytes)?;
    let (incident, update) =
        service::incidents::open(&state, req, &who.name, Timestamp::now()).await?;
    let mut body = serde_json::to_value(IncidentJson::from(&incident))
        .map_err(|e| ApiError::Internal(e.to_string()))?;
    body["update"] = serde_json::to_value(UpdateJson::from(&update))
        .map_err(|e| ApiError::Internal(e.to_string()))?;
    Ok((
        StatusCode::CREATED,
        [("location", format!("/api/v1/incidents/{}", incident.id))],
        Json(body),
    ))
}

pub async fn post_update(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<i64>,
    body: Body,
) -> Result<impl IntoResponse, ApiError> {
    let who = require(&state, &headers, Permission::Incidents)?;
    let bytes = read(&headers, body, state.max_body_bytes).await?;
    let req: ManualUpdate = json(&headers, &bytes)?;
    let update =
        service::incidents::post_update(&state, id, req, &who.name, Timestamp::now()).await?;
    Ok((StatusCode::CREATED, Json(UpdateJson::from(&update))))
}
