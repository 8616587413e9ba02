//! `/api/v1/probes`: each probe's declared state, this replica's view and every replica's latest
//! observation. `/api/v1/silences`: silences set by operators, with the configured maintenance
//! windows.

use std::sync::Arc;

use axum::Json;
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use jiff::Timestamp;
use serde::{Deserialize, Serialize};
use serde_json::json;
use utoipa::ToSchema;

use crate::domain::Matcher;
use crate::domain::window::{Window, parse_time};
use crate::probe::{LocalView, ProbeStatus};
use crate::settings::{Permission, ProbeSpec};
use crate::store::{NewSilence, Observation, SilenceRow, Verdict};
use crate::web::body::{json, read};
use crate::web::contract::{BadRequest, Forbidden, NotFound, Unauthorized, UnsupportedMediaType};
use crate::web::error::ApiError;
use crate::web::extract::Path;
use crate::web::{AppState, record_audit, require};

/// What the probe endpoints need: the probes as configured and this replica's views.
pub struct Probes {
    pub specs: Vec<ProbeSpec>,
    pub status: Arc<ProbeStatus>,
    pub quorum: u32,
    pub instance: String,
    /// Maintenance windows from the configuration.
    pub windows: Arc<Vec<Window>>,
    pub time_zone: jiff::tz::TimeZone,
}

/// The probes, as the deployment and this replica see them.
#[derive(Serialize, ToSchema)]
pub struct ProbesJson {
    /// This replica's name.
    instance: String,
    /// How many replicas must see a probe down before it is declared down.
    quorum: u32,
    /// Whether this replica reaches the network (its canaries answer).
    network_ok: bool,
    canaries: Vec<CanaryJson>,
    probes: Vec<ProbeJson>,
}

/// A target this replica checks to know whether its own network works.
#[derive(Serialize, ToSchema)]
pub struct CanaryJson {
    target: String,
    ok: bool,
    detail: String,
}

/// One probe.
#[derive(Serialize, ToSchema)]
pub struct ProbeJson {
    name: String,
    service: String,
    component: Option<String>,
    /// http, tcp, dns or tls.
    kind: &'static str,
    /// What it checks (a URL without credentials, a host and port, a name).
    target: String,
    interval_ms: u64,
    failure_threshold: u32,
    success_threshold: u32,
    /// What the deployment declared (from `quorum` replicas' views): up or down.
    state: String,
    #[schema(value_type = Option<String>, format = DateTime)]
    since: Option<Timestamp>,
    detail: Option<String>,
    /// What the deployment declared about its certificate, for a TLS probe.
    certificate: Option<Verdict>,
    /// This replica's view, once it has checked.
    here: Option<LocalView>,
    /// Every replica's latest observation.
    replicas: Vec<Observation>,
}

/// Running and future silences, with the configured maintenance windows.
#[derive(Serialize, ToSchema)]
pub struct SilencesJson {
    silences: Vec<SilenceRow>,
    maintenance: Vec<WindowJson>,
}

/// A maintenance window from the configuration.
#[derive(Serialize, ToSchema)]
pub struct WindowJson {
    name: String,
    matchers: Vec<String>,
    /// Whether it is open now.
    open: bool,
}

/// A silence just created.
#[derive(Serialize, ToSchema)]
pub struct SilenceCreated {
    id: i64,
    #[schema(value_type = String, format = DateTime)]
    starts_at: Timestamp,
    #[schema(value_type = String, format = DateTime)]
    ends_at: Timestamp,
}

/// Each probe's declared state, this replica's view, every replica's, and the canaries.
#[utoipa::path(
    get,
    path = "/api/v1/probes",
    tag = "probes",
    security(("token" = []), ("basic" = [])),
    responses(
        (status = 200, description = "The probes.", body = ProbesJson),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
    )
)]
pub async fn list(
    State(state): State<AppState>,
    headers: HeaderMap,
) -> Result<impl IntoResponse, ApiError> {
    require(&state, &headers, Permission::Read)?;
    let p = &state.probes;
    let views = p.status.views();
    let observations = state.store.observations(None).await?;
    let verdicts = state.store.verdicts().await?;
    let probes: Vec<ProbeJson> = p
        .specs
        .iter()
        .map(|spec| {
            let verdict = verdicts.iter().find(|v| v.subject == spec.name);
            let certificate = verdicts
                .iter()
                .find(|v| v.subject == format!("{}#certificate", spec.name));
            ProbeJson {
                name: spec.name.clone(),
                service: spec.service.clone(),
                component: spec.component.clone(),
                kind: spec.kind.as_str(),
                target: if spec.url.is_empty() {
                    spec.target.clone()
                } else {
                    crate::probe::public_url(&spec.url)
                },
                interval_ms: spec.interval.get().as_millis() as u64,
                failure_threshold: spec.failure_threshold,
                success_threshold: spec.success_threshold,
                state: verdict.map_or("up", |v| v.state.as_str()).to_owned(),
                since: verdict.map(|v| v.changed_at),
                detail: verdict.map(|v| v.detail.clone()),
                certificate: certificate.cloned(),
                here: views.get(&spec.name).cloned(),
                replicas: observations
                    .iter()
                    .filter(|o| o.probe == spec.name)
                    .cloned()
                    .collect(),
            }
        })
        .collect();
    let canaries: Vec<CanaryJson> = p
        .status
        .canaries()
        .into_iter()
        .map(|(target, ok, detail)| CanaryJson { target, ok, detail })
        .collect();
    Ok(Json(ProbesJson {
        instance: p.instance.clone(),
        quorum: p.quorum,
        network_ok: p.status.network_ok(),
        canaries,
        probes,
    }))
}

/// A silence: what it keeps quiet (Alertmanager matchers), from when, until when or for how
/// long, and why.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewSilenceRequest {
    /// E.g. `service="cup"`; at least one.
    #[schema(min_items = 1)]
    matchers: Vec<String>,
    /// Default: now.
    starts_at: Option<String>,
    ends_at: Option<String>,
    /// Instead of `ends_at`: how long from the start, e.g. "2h".
    duration: Option<String>,
    comment: String,
}

/// Create a silence.
#[utoipa::path(
    post,
    path = "/api/v1/silences",
    tag = "probes",
    request_body = NewSilenceRequest,
    security(("token" = []), ("basic" = [])),
    responses(
        (status = 201, description = "Created.", body = SilenceCreated),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 415, response = UnsupportedMediaType),
    )
)]
pub async fn create_silence(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Body,
) -> Result<impl IntoResponse, ApiError> {
    let who = require(&state, &headers, Permission::Incidents)?;
    let bytes = read(&headers, body, state.max_body_bytes).await?;
    let req: NewSilenceRequest = json(&headers, &bytes)?;
    if req.matchers.is_empty() {
        return Err(ApiError::field(
            "matchers",
            "name what to silence, e.g. [\"service=\\\"cup\\\"\"]; an empty list would silence everything",
        ));
    }
    for (i, m) in req.matchers.iter().enumerate() {
        if let Err(e) = m.parse::<Matcher>() {
            return Err(ApiError::field(format!("matchers[{i}]"), e.to_string()));
        }
    }
    if req.comment.trim().is_empty() {
        return Err(ApiError::field(
            "comment",
            "say why (it is shown on the incident)",
        ));
    }
    let tz = &state.probes.time_zone;
    let now = Timestamp::now();
    let starts_at = match &req.starts_at {
        Some(s) => parse_time(s, tz).map_err(|e| ApiError::field("starts_at", e))?,
        None => now,
    };
    let ends_at = match (&req.ends_at, &req.duration) {
        (Some(e), None) => parse_time(e, tz).map_err(|e| ApiError::field("ends_at", e))?,
        (None, Some(d)) => {
            let d = humantime::parse_duration(d.trim())
                .map_err(|e| ApiError::field("duration", format!("`{d}`: {e}")))?;
            let d = jiff::SignedDuration::try_from(d)
                .map_err(|e| ApiError::field("duration", e.to_string()))?;
            starts_at
                .checked_add(d)
                .map_err(|e| ApiError::field("duration", e.to_string()))?
        }
        _ => {
            return Err(ApiError::field(
                "ends_at",
                "give either ends_at or duration: a silence always ends",
            ));
        }
    };
    if ends_at <= starts_at || ends_at <= now {
        return Err(ApiError::field(
            "ends_at",
            "must be after the start and in the future",
        ));
    }
    let id = state
        .store
        .insert_silence(&NewSilence {
            matchers: req.matchers.clone(),
            starts_at,
            ends_at,
            comment: req.comment.trim().to_owned(),
            created_by: who.name.clone(),
            created_at: now,
        })
        .await?;
    record_audit(
        &state,
        &who.name,
        "silence.created",
        None,
        json!({"silence": id, "matchers": req.matchers, "starts_at": starts_at, "ends_at": ends_at}),
    )
    .await;
    tracing::info!(silence = id, by = %who.name, "silence created");
    Ok((
        StatusCode::CREATED,
        Json(SilenceCreated {
            id,
            starts_at,
            ends_at,
        }),
    ))
}

/// Running and future silences, with the maintenance windows.
#[utoipa::path(
    get,
    path = "/api/v1/silences",
    tag = "probes",
    security(("token" = []), ("basic" = [])),
    responses(
        (status = 200, description = "The silences.", body = SilencesJson),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
    )
)]
pub async fn list_silences(
    State(state): State<AppState>,
    headers: HeaderMap,
) -> Result<impl IntoResponse, ApiError> {
    require(&state, &headers, Permission::Read)?;
    let now = Timestamp::now();
    let silences = state.store.silences(now).await?;
    let windows: Vec<WindowJson> = state
        .probes
        .windows
        .iter()
        .map(|w| WindowJson {
            name: w.name.clone(),
            matchers: w.matchers.iter().map(ToString::to_string).collect(),
            open: w.open_at(now),
        })
        .collect();
    Ok(Json(SilencesJson {
        silences,
        maintenance: windows,
    }))
}

/// End a silence now.
#[utoipa::path(
    delete,
    path = "/api/v1/silences/{id}",
    tag = "probes",
    params(("id" = i64, Path, description = "The silence's id.")),
    security(("token" = []), ("basic" = [])),
    responses(
        (status = 204, description = "Ended."),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 404, response = NotFound),
    )
)]
pub async fn delete_silence(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<i64>,
) -> Result<impl IntoResponse, ApiError> {
    let who = require(&state, &headers, Permission::Incidents)?;
    if !state.store.expire_silence(id, Timestamp::now()).await? {
        return Err(ApiError::NotFound(format!(
            "silence {id} not found or already ended"
        )));
    }
    record_audit(
        &state,
        &who.name,
        "silence.ended",
        None,
        json!({"silence": id}),
    )
    .await;
    Ok(StatusCode::NO_CONTENT)
}
