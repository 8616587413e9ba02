//! Heartbeats managed through the API, by admins: `POST /api/v1/heartbeats` defines one,
//! `PUT`/`PATCH /api/v1/heartbeats/{name}` change it and `DELETE` removes it (its alarm, if
//! raised, resolved). A Watchdog matcher turns every alert it matches into a ping, for as long as
//! it stays, which is more than a silence: hence admins only. The configuration's heartbeats are
//! read-only here (`409`, naming the configuration). Every change is audited
//! (`heartbeat.created`, `heartbeat.changed`, `heartbeat.deleted`); the other replicas take it
//! in within a second.

use std::collections::BTreeMap;

use axum::Json;
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use jiff::Timestamp;
use serde::Deserialize;
use serde_json::{Value, json as object};
use utoipa::ToSchema;

use super::heartbeats::{HeartbeatJson, view};
use crate::heartbeat::defs::DefineError;
use crate::settings::{HeartbeatSpec, Permission};
use crate::web::body::{json, read};
use crate::web::contract::{
    BadRequest, Conflict, Forbidden, NotFound, Unauthorized, UnsupportedMediaType,
};
use crate::web::error::ApiError;
use crate::web::extract::Path;
use crate::web::{AppState, record_audit, require};

/// A heartbeat's definition: the fields of `[[heartbeats]]`, checked the same way. With `PATCH`,
/// only the fields to change (`null` takes one back to its default).
#[allow(dead_code)]
#[derive(Deserialize, ToSchema)]
pub struct HeartbeatDefinition {
    /// 1 to 64 ASCII letters, digits, `.`, `_` or `-` (it goes in ping URLs). With `PUT` and
    /// `PATCH`, left out or the same: a heartbeat keeps its name.
    name: String,
    /// The service the monitor watches: its alarm joins that service's incident.
    service: String,
    /// At most 64; `heartbeat` is set by Banditore.
    labels: Option<BTreeMap<String, String>>,
    /// How often pings are expected, from `1s` to `31d` (e.g. `"5m"`, `"1d"`).
    period: String,
    /// How much later a ping may come before the heartbeat is late; default `"1m"`, at most
    /// `31d`.
    grace: Option<String>,
    /// `critical` (the default), `major`, `minor`, `warning` or `info`.
    severity: Option<String>,
    /// The alarm's title; empty: "Monitor <name>".
    summary: Option<String>,
    /// Label matchers (Alertmanager's syntax), at least one an equality with a value: a firing
    /// signal matching every one is a ping of this heartbeat, not an alert.
    watchdog: Option<Vec<String>>,
}

impl From<DefineError> for ApiError {
    fn from(e: DefineError) -> ApiError {
        match e {
            DefineError::Invalid { field, message } => match field {
                Some(f) => ApiError::field(f, message),
                None => ApiError::bad(message),
            },
            DefineError::Configured(_) | DefineError::Taken(_) => ApiError::Conflict(e.to_string()),
            DefineError::Unknown(_) => ApiError::NotFound(e.to_string()),
            DefineError::Store(e) => e.into(),
        }
    }
}

/// The heartbeat `name` as `GET …/state` shows it.
async fn shown(state: &AppState, name: &str) -> Result<HeartbeatJson, ApiError> {
    state
        .heartbeats
        .states()
        .await?
        .into_iter()
        .find(|(spec, _, _)| spec.name == name)
        .map(|(spec, origin, row)| view(&spec, origin, row))
        .ok_or_else(|| ApiError::NotFound(format!("no heartbeat is named `{name}`")))
}

fn audited(spec: &HeartbeatSpec) -> Value {
    object!({
        "name": spec.name,
        "service": spec.service,
        "labels": spec.labels,
        "period": spec.period.map(|p| p.get().as_secs()),
        "grace": spec.grace.get().as_secs(),
        "severity": spec.severity.as_str(),
        "watchdog": spec.watchdog.iter().map(ToString::to_string).collect::<Vec<_>>(),
    })
}

/// Define a heartbeat: its clock starts now.
#[utoipa::path(
    post,
    path = "/api/v1/heartbeats",
    tag = "heartbeats",
    request_body = HeartbeatDefinition,
    security(("token" = []), ("basic" = [])),
    responses(
        (status = 201, description = "Defined; its clock started.", body = HeartbeatJson),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 409, response = Conflict),
        (status = 415, response = UnsupportedMediaType),
    )
)]
pub async fn create(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Body,
) -> Result<impl IntoResponse, ApiError> {
    let who = require(&state, &headers, Permission::Admin)?;
    let bytes = read(&headers, body, state.max_body_bytes).await?;
    let body: Value = json(&headers, &bytes)?;
    let spec = state
        .heartbeats
        .define(&body, &who.name, Timestamp::now())
        .await?;
    record_audit(&state, &who.name, "heartbeat.created", None, audited(&spec)).await;
    Ok((StatusCode::CREATED, Json(shown(&state, &spec.name).await?)))
}

async fn change(
    state: AppState,
    headers: HeaderMap,
    name: String,
    body: Body,
    patch: bool,
) -> Result<Json<HeartbeatJson>, ApiError> {
    let who = require(&state, &headers, Permission::Admin)?;
    let bytes = read(&headers, body, state.max_body_bytes).await?;
    let body: Value = json(&headers, &bytes)?;
    let spec = state
        .heartbeats
        .redefine(&name, &body, patch, &who.name, Timestamp::now())
        .await?;
    record_audit(&state, &who.name, "heartbeat.changed", None, audited(&spec)).await;
    Ok(Json(shown(&state, &spec.name).await?))
}

/// Replace a heartbeat's definition (one defined through the API; `409` for the
/// configuration's). Its clock goes on: a waiting heartbeat is due its new period and grace after
/// its last ping; a late one stays late until its next ping.
#[utoipa::path(
    put,
    path = "/api/v1/heartbeats/{name}",
    tag = "heartbeats",
    params(("name" = String, Path, description = "The heartbeat's name.")),
    request_body = HeartbeatDefinition,
    security(("token" = []), ("basic" = [])),
    responses(
        (status = 200, description = "The heartbeat as changed.", body = HeartbeatJson),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 404, response = NotFound),
        (status = 409, response = Conflict),
        (status = 415, response = UnsupportedMediaType),
    )
)]
pub async fn replace(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(name): Path<String>,
    body: Body,
) -> Result<impl IntoResponse, ApiError> {
    change(state, headers, name, body, false).await
}

/// Change some fields of a heartbeat's definition (JSON merge patch); as `PUT` otherwise.
#[utoipa::path(
    patch,
    path = "/api/v1/heartbeats/{name}",
    tag = "heartbeats",
    params(("name" = String, Path, description = "The heartbeat's name.")),
    request_body = HeartbeatDefinition,
    security(("token" = []), ("basic" = [])),
    responses(
        (status = 200, description = "The heartbeat as changed.", body = HeartbeatJson),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 404, response = NotFound),
        (status = 409, response = Conflict),
        (status = 415, response = UnsupportedMediaType),
    )
)]
pub async fn patch(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(name): Path<String>,
    body: Body,
) -> Result<impl IntoResponse, ApiError> {
    change(state, headers, name, body, true).await
}

/// Delete a heartbeat defined through the API; its alarm, if raised, is resolved (`409` for the
/// configuration's).
#[utoipa::path(
    delete,
    path = "/api/v1/heartbeats/{name}",
    tag = "heartbeats",
    params(("name" = String, Path, description = "The heartbeat's name.")),
    security(("token" = []), ("basic" = [])),
    responses(
        (status = 204, description = "Deleted; its alarm, if it was raised, resolved."),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 404, response = NotFound),
        (status = 409, response = Conflict),
    )
)]
pub async fn delete(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(name): Path<String>,
) -> Result<impl IntoResponse, ApiError> {
    let who = require(&state, &headers, Permission::Admin)?;
    let (spec, resolved) = state.heartbeats.forget(&name, Timestamp::now()).await?;
    let mut detail = audited(&spec);
    detail["resolved"] = Value::Bool(resolved);
    record_audit(&state, &who.name, "heartbeat.deleted", None, detail).await;
    Ok(StatusCode::NO_CONTENT)
}
