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
use utoipa::{IntoParams, ToSchema};

use crate::domain::Labels;
use crate::incident::{ManualIncident, ManualUpdate};
use crate::settings::Permission;
use crate::store::{AlertRow, DeliveryRow, IncidentFilter, IncidentRow, UpdateRow};
use crate::web::body::{json, read};
use crate::web::contract::{
    BadRequest, Conflict, Forbidden, NotFound, Unauthorized, UnsupportedMediaType,
};
use crate::web::error::ApiError;
use crate::web::extract::{Path, Query};
use crate::web::service;
use crate::web::{AppState, require};

/// An incident as the list shows it.
#[derive(Serialize, ToSchema)]
pub struct IncidentJson {
    id: i64,
    title: String,
    /// investigating, identified, monitoring or resolved.
    status: String,
    /// info, warning, major or critical.
    severity: String,
    /// Statuspage-style impact: none, minor, major or critical.
    impact: &'static str,
    /// `signals` (opened by the monitors) or `manual`.
    origin: &'static str,
    #[schema(value_type = String, format = DateTime)]
    opened_at: Timestamp,
    #[schema(value_type = Option<String>, format = DateTime)]
    resolved_at: Option<Timestamp>,
    /// Whether its first notice went out.
    announced: bool,
    /// How many updates it has.
    updates: i64,
    /// The maintenance window or silence that kept its updates from being sent.
    #[serde(skip_serializing_if = "Option::is_none")]
    maintenance: Option<String>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    #[schema(value_type = BTreeMap<String, String>)]
    labels: Labels,
}

/// One incident with its updates and the signals that make it.
#[derive(Serialize, ToSchema)]
pub struct IncidentDetail {
    #[serde(flatten)]
    incident: IncidentHead,
    updates: Vec<UpdateJson>,
    signals: Vec<SignalJson>,
}

/// An incident just opened by hand, with its first update.
#[derive(Serialize, ToSchema)]
pub struct IncidentOpened {
    #[serde(flatten)]
    incident: IncidentJson,
    update: UpdateJson,
}

/// An incident's own fields, as [`IncidentJson`] without the count of updates.
#[derive(Serialize, ToSchema)]
pub struct IncidentHead {
    id: i64,
    title: String,
    status: String,
    severity: String,
    impact: &'static str,
    origin: &'static str,
    #[schema(value_type = String, format = DateTime)]
    opened_at: Timestamp,
    #[schema(value_type = Option<String>, format = DateTime)]
    resolved_at: Option<Timestamp>,
    announced: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    maintenance: Option<String>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    #[schema(value_type = BTreeMap<String, String>)]
    labels: Labels,
}

impl From<IncidentJson> for IncidentHead {
    fn from(i: IncidentJson) -> Self {
        IncidentHead {
            id: i.id,
            title: i.title,
            status: i.status,
            severity: i.severity,
            impact: i.impact,
            origin: i.origin,
            opened_at: i.opened_at,
            resolved_at: i.resolved_at,
            announced: i.announced,
            maintenance: i.maintenance,
            labels: i.labels,
        }
    }
}

/// Incidents, newest first.
#[derive(Serialize, ToSchema)]
pub struct IncidentList {
    incidents: Vec<IncidentJson>,
}

/// An incident's deliveries, and how many are in each state on each channel.
#[derive(Serialize, ToSchema)]
pub struct DeliveryList {
    /// channel → state → count.
    summary: BTreeMap<String, BTreeMap<String, u64>>,
    deliveries: Vec<DeliveryRow>,
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

/// One update of an incident, as it was written.
#[derive(Serialize, ToSchema)]
pub struct UpdateJson {
    seq: i64,
    kind: &'static str,
    status: &'static str,
    severity: &'static str,
    body: Option<String>,
    author: Option<String>,
    #[schema(value_type = String, format = DateTime)]
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

/// A signal of an incident: what a monitor said, normalized.
#[derive(Serialize, ToSchema)]
pub struct SignalJson {
    fingerprint: String,
    source: &'static str,
    /// firing or resolved.
    status: &'static str,
    severity: &'static str,
    service: String,
    component: Option<String>,
    summary: String,
    /// A probe's finding, as data.
    finding: Option<crate::domain::Finding>,
    #[schema(value_type = BTreeMap<String, String>)]
    labels: Labels,
    #[schema(value_type = BTreeMap<String, String>)]
    annotations: Labels,
    url: Option<String>,
    #[schema(value_type = Option<String>, format = DateTime)]
    starts_at: Option<Timestamp>,
    #[schema(value_type = String, format = DateTime)]
    first_seen_at: Timestamp,
    #[schema(value_type = String, format = DateTime)]
    last_seen_at: Timestamp,
    #[schema(value_type = Option<String>, format = DateTime)]
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

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListQuery {
    /// open, resolved or all (the default).
    #[param(pattern = "^(open|resolved|all)$")]
    status: Option<String>,
    /// At most this many (1 to 500; default 50).
    limit: Option<u32>,
    /// Only incidents whose id is below this one, to page back in time.
    before: Option<i64>,
}

/// List incidents, newest first.
#[utoipa::path(
    get,
    path = "/api/v1/incidents",
    tag = "incidents",
    params(ListQuery),
    security(("token" = []), ("basic" = [])),
    responses(
        (status = 200, description = "Incidents, newest first.", body = IncidentList),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
    )
)]
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
    Ok(Json(IncidentList { incidents }))
}

/// Read one incident with its updates and signals.
#[utoipa::path(
    get,
    path = "/api/v1/incidents/{id}",
    tag = "incidents",
    params(("id" = i64, Path, description = "The incident's id.")),
    security(("token" = []), ("basic" = [])),
    responses(
        (status = 200, description = "The incident.", body = IncidentDetail),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 404, response = NotFound),
    )
)]
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
    Ok(Json(IncidentDetail {
        incident: IncidentJson::from(&incident).into(),
        updates: updates.iter().map(UpdateJson::from).collect(),
        signals: alerts.iter().map(SignalJson::from).collect(),
    }))
}

/// Every delivery of an incident, with a summary per channel and state. A citizen's contact
/// (`"citizen": true`) is shown whole to admins only, each such read written to the audit log,
/// and masked for everyone else.
#[utoipa::path(
    get,
    path = "/api/v1/incidents/{id}/deliveries",
    tag = "incidents",
    params(("id" = i64, Path, description = "The incident's id.")),
    security(("token" = []), ("basic" = [])),
    responses(
        (status = 200, description = "The deliveries.", body = DeliveryList),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 404, response = NotFound),
    )
)]
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
    Ok(Json(DeliveryList {
        summary,
        deliveries: rows,
    }))
}

/// Open an incident by hand; its first update is sent as any incident's.
#[utoipa::path(
    post,
    path = "/api/v1/incidents",
    tag = "incidents",
    request_body = ManualIncident,
    security(("token" = []), ("basic" = [])),
    responses(
        (status = 201, description = "Opened.", body = IncidentOpened,
            headers(("Location" = String, description = "The incident's URL."))),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 415, response = UnsupportedMediaType),
    )
)]
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
    Ok((
        StatusCode::CREATED,
        [("location", format!("/api/v1/incidents/{}", incident.id))],
        Json(IncidentOpened {
            incident: IncidentJson::from(&incident),
            update: UpdateJson::from(&update),
        }),
    ))
}

/// Post an update to an incident (status, severity, text).
#[utoipa::path(
    post,
    path = "/api/v1/incidents/{id}/updates",
    tag = "incidents",
    params(("id" = i64, Path, description = "The incident's id.")),
    request_body = ManualUpdate,
    security(("token" = []), ("basic" = [])),
    responses(
        (status = 201, description = "Posted.", body = UpdateJson),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 404, response = NotFound),
        (status = 409, response = Conflict),
        (status = 415, response = UnsupportedMediaType),
    )
)]
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
