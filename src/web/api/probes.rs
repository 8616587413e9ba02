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
use serde::Deserialize;
use serde_json::json;

use crate::domain::Matcher;
use crate::domain::window::{Window, parse_time};
use crate::probe::ProbeStatus;
use crate::settings::{Permission, ProbeSpec};
use crate::store::NewSilence;
use crate::web::body::{json, read};
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

pub async fn list(
    State(state): State<AppState>,
    headers: HeaderMap,
) -> Result<impl IntoResponse, ApiError> {
    require(&state, &headers, Permission::Read)?;
    let p = &state.probes;
    let views = p.status.views();
    let observations = state.store.observations(None).await?;
    let verdicts = state.store.verdicts().await?;
    let probes: Vec<serde_json::Value> = p
        .specs
        .iter()
        .map(|spec| {
            let verdict = verdicts.iter().find(|v| v.subject == spec.name);
            let certificate = verdicts
                .iter()
                .find(|v| v.subject == format!("{}#certificate", spec.name));
            json!({
                "name": spec.name,
                "service": spec.service,
                "component": spec.component,
                "kind": spec.kind.as_str(),
                "target": if spec.url.is_empty() { spec.target.clone() } else { crate::probe::public_url(&spec.url) },
                "interval_ms": spec.interval.get().as_millis() as u64,
                "failure_threshold": spec.failure_threshold,
                "success_threshold": spec.success_threshold,
                // What the deployment declared (from `quorum` replicas' views).
                "state": verdict.map_or("up", |v| v.state.as_str()),
                "since": verdict.map(|v| v.changed_at),
                "detail": verdict.map(|v| v.detail.clone()),
                "certificate": certificate,
                "here": views.get(&spec.name),
                "replicas": observations.iter().filter(|o| o.probe == spec.name).collect::<Vec<_>>(),
            })
        })
        .collect();
    let canaries: Vec<serde_json::Value> = p
        .status
        .canaries()
        .into_iter()
        .map(|(target, ok, detail)| json!({"target": target, "ok": ok, "detail": detail}))
        .collect();
    Ok(Json(json!({
        "instance": p.instance,
        "quorum": p.quorum,
        "network_ok": p.status.network_ok(),
        "canaries": canaries,
        "probes": probes,
    })))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewSilenceRequest {
    matchers: Vec<String>,
    /// Default: now.
    starts_at: Option<String>,
    ends_at: Option<String>,
    /// Instead of `ends_at`: how long from the start, e.g. "2h".
    duration: Option<String>,
    comment: String,
}

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
        Json(json!({"id": id, "starts_at": starts_at, "ends_at": ends_at})),
    ))
}

pub async fn list_silences(
    State(state): State<AppState>,
    headers: HeaderMap,
) -> Result<impl IntoResponse, ApiError> {
    require(&state, &headers, Permission::Read)?;
    let now = Timestamp::now();
    let silences = state.store.silences(now).await?;
    let windows: Vec<serde_json::Value> = state
        .probes
        .windows
        .iter()
        .map(|w| {
            json!({
                "name": w.name,
                "matchers": w.matchers.iter().map(ToString::to_string).collect::<Vec<_>>(),
                "open": w.open_at(now),
            })
        })
        .collect();
    Ok(Json(json!({"silences": silences, "maintenance": windows})))
}

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
