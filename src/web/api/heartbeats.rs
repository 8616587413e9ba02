//! `/api/v1/heartbeats`: monitors' pings, failure reports, and every heartbeat's state. A ping
//! (`GET` or `POST /api/v1/heartbeats/{name}`, with a token allowed to ingest) is one small
//! write, durable before the `200`, so that cron jobs, scripts and push-style monitors can call
//! it with `curl`; `…/fail` (or `?status=down`) raises the heartbeat's alarm at once. Reading
//! the states takes a token allowed to read, and never counts as a ping.

use std::collections::BTreeMap;

use axum::Json;
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, Uri};
use axum::response::IntoResponse;
use jiff::{SignedDuration, Timestamp};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::heartbeat::defs::Origin;
use crate::heartbeat::{HeartbeatError, Pinged};
use crate::settings::{HeartbeatSpec, Permission};
use crate::store::HeartbeatRow;
use crate::web::body::read;
use crate::web::contract::{BadRequest, Forbidden, NotFound, Unauthorized};
use crate::web::error::ApiError;
use crate::web::extract::{Path, query};
use crate::web::{AppState, require};

/// One heartbeat: what the configuration (or the API) says and what was last heard.
#[derive(Serialize, ToSchema)]
pub struct HeartbeatJson {
    name: String,
    /// `config` (`[[heartbeats]]`: read-only here) or `api` (defined through
    /// `POST /api/v1/heartbeats`).
    origin: &'static str,
    /// Who last defined it through the API.
    #[serde(skip_serializing_if = "Option::is_none")]
    defined_by: Option<String>,
    service: String,
    labels: BTreeMap<String, String>,
    severity: &'static str,
    /// How often pings are expected.
    period_ms: u64,
    /// How much later a ping may come before the heartbeat is late.
    grace_ms: u64,
    /// `new` (never pinged), `up`, `late` (fallen silent: its alarm is firing) or `failed`
    /// (its monitor reported a failure).
    state: String,
    /// When the state last changed; for `new`, when its clock started.
    #[schema(value_type = String, format = DateTime)]
    since: Timestamp,
    #[schema(value_type = Option<String>, format = DateTime)]
    last_ping_at: Option<Timestamp>,
    /// When the next ping is expected (while `new` or `up`).
    #[schema(value_type = Option<String>, format = DateTime)]
    next_due_at: Option<Timestamp>,
    /// When it becomes late without a ping (while `new` or `up`).
    #[schema(value_type = Option<String>, format = DateTime)]
    late_at: Option<Timestamp>,
    /// Pings counted since it was first configured.
    pings: i64,
    /// What the monitor said with its last failure report.
    detail: String,
    /// The matchers that make a signal (Alertmanager's Watchdog) a ping of this heartbeat.
    watchdog: Vec<String>,
}

/// Every heartbeat, configured or defined through the API.
#[derive(Serialize, ToSchema)]
pub struct HeartbeatsJson {
    heartbeats: Vec<HeartbeatJson>,
}

/// What a ping or a failure report did.
#[derive(Serialize, ToSchema)]
pub struct PingJson {
    heartbeat: String,
    /// `up` after a ping, `failed` after a failure report.
    state: &'static str,
    /// The state before: `new`, `up`, `late` or `failed`.
    was: String,
    /// The signal stored with it: the alarm's end (a ping of a late or failed heartbeat) or
    /// the alarm (a failure report).
    #[serde(skip_serializing_if = "Option::is_none")]
    signal: Option<i64>,
}

/// What a push-style monitor may say in the URL.
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct PingQuery {
    /// `up` (the default) or `down`: `down` reports a failure, as `…/fail` does.
    status: Option<String>,
    /// What the monitor says (kept with a failure report).
    msg: Option<String>,
}

pub(super) fn view(
    spec: &HeartbeatSpec,
    origin: Origin,
    row: Option<HeartbeatRow>,
) -> HeartbeatJson {
    let defined_by = row.as_ref().and_then(|r| r.defined_by.clone());
    let grace = SignedDuration::try_from(spec.grace.get()).unwrap_or_default();
    let (state, since, last_ping_at, late_at, pings, detail) = match row {
        Some(r) => {
            let waiting = matches!(r.state.as_str(), "new" | "up");
            let since = if r.state == "new" {
                r.created_at
            } else {
                r.changed_at
            };
            (
                r.state,
                since,
                r.last_ping_at,
                waiting.then_some(r.due_at),
                r.pings,
                r.detail,
            )
        }
        None => (
            "new".to_owned(),
            Timestamp::now(),
            None,
            None,
            0,
            String::new(),
        ),
    };
    HeartbeatJson {
        name: spec.name.clone(),
        origin: origin.as_str(),
        defined_by: defined_by.filter(|_| origin == Origin::Api),
        service: spec.service.clone(),
        labels: spec.labels.clone(),
        severity: spec.severity.as_str(),
        period_ms: spec.period.map_or(0, |p| p.get().as_millis() as u64),
        grace_ms: spec.grace.get().as_millis() as u64,
        state,
        since,
        last_ping_at,
        next_due_at: late_at.and_then(|t| t.checked_sub(grace).ok()),
        late_at,
        pings,
        detail,
        watchdog: spec.watchdog.iter().map(ToString::to_string).collect(),
    }
}

/// Every heartbeat and its state.
#[utoipa::path(
    get,
    path = "/api/v1/heartbeats",
    tag = "heartbeats",
    security(("token" = []), ("basic" = [])),
    responses(
        (status = 200, description = "The heartbeats.", body = HeartbeatsJson),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
    )
)]
pub async fn list(
    State(state): State<AppState>,
    headers: HeaderMap,
) -> Result<impl IntoResponse, ApiError> {
    require(&state, &headers, Permission::Read)?;
    Ok(Json(HeartbeatsJson {
        heartbeats: views(&state).await?,
    }))
}

/// Every heartbeat as the API and the console show it.
pub async fn views(state: &AppState) -> Result<Vec<HeartbeatJson>, ApiError> {
    Ok(state
        .heartbeats
        .states()
        .await?
        .into_iter()
        .map(|(spec, origin, row)| view(&spec, origin, row))
        .collect())
}

/// One heartbeat's state (reading it is not a ping).
#[utoipa::path(
    get,
    path = "/api/v1/heartbeats/{name}/state",
    tag = "heartbeats",
    params(("name" = String, Path, description = "The heartbeat's name.")),
    security(("token" = []), ("basic" = [])),
    responses(
        (status = 200, description = "The heartbeat.", body = HeartbeatJson),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 404, response = NotFound),
    )
)]
pub async fn get(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(name): Path<String>,
) -> Result<impl IntoResponse, ApiError> {
    require(&state, &headers, Permission::Read)?;
    state
        .heartbeats
        .states()
        .await?
        .into_iter()
        .find(|(spec, _, _)| spec.name == name)
        .map(|(spec, origin, row)| Json(view(&spec, origin, row)))
        .ok_or_else(|| unknown(&name))
}

fn unknown(name: &str) -> ApiError {
    HeartbeatError::Unknown(name.chars().take(100).collect()).into()
}

impl From<HeartbeatError> for ApiError {
    fn from(e: HeartbeatError) -> Self {
        match e {
            HeartbeatError::Unknown(_) => ApiError::NotFound(format!(
                "{e}: the configuration's [[heartbeats]] and POST /api/v1/heartbeats define them"
            )),
            HeartbeatError::Store(e) => e.into(),
        }
    }
}

fn answer(p: Pinged, state: &'static str) -> Json<PingJson> {
    Json(PingJson {
        heartbeat: p.name,
        state,
        was: p.was,
        signal: p.signal,
    })
}

/// A ping: the monitor is alive. With `?status=down`, a failure report instead.
#[utoipa::path(
    method(get, post),
    path = "/api/v1/heartbeats/{name}",
    tag = "heartbeats",
    params(("name" = String, Path, description = "The heartbeat's name."), PingQuery),
    security(("token" = []), ("basic" = [])),
    responses(
        (status = 200, description = "Counted (durable); an alarm it ends or raises is stored with it.", body = PingJson),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 404, response = NotFound),
    )
)]
pub async fn ping(
    State(state): State<AppState>,
    headers: HeaderMap,
    uri: Uri,
    Path(name): Path<String>,
) -> Result<impl IntoResponse, ApiError> {
    require(&state, &headers, Permission::Ingest)?;
    let q: PingQuery = query(&uri)?;
    let now = Timestamp::now();
    match q.status.as_deref().map(str::trim) {
        None | Some("" | "up") => Ok(answer(state.heartbeats.ping(&name, now).await?, "up")),
        Some("down") => {
            let msg = q.msg.unwrap_or_default();
            Ok(answer(
                state.heartbeats.fail(&name, &msg, now).await?,
                "failed",
            ))
        }
        Some(other) => Err(ApiError::field(
            "status",
            format!(
                "`{}` is neither `up` nor `down`",
                other.chars().take(40).collect::<String>()
            ),
        )),
    }
}

/// A failure report: the monitor ran and failed; the alarm is raised at once. A `POST`'s body
/// (text, e.g. a job's last lines of output) or `?msg=` says what happened.
#[utoipa::path(
    method(get, post),
    path = "/api/v1/heartbeats/{name}/fail",
    tag = "heartbeats",
    params(("name" = String, Path, description = "The heartbeat's name."), PingQuery),
    request_body(content = String, content_type = "text/plain", description = "What happened (optional; the first 1,000 characters are kept)."),
    security(("token" = []), ("basic" = [])),
    responses(
        (status = 200, description = "Recorded (durable), with the alarm when it was not raised already.", body = PingJson),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 404, response = NotFound),
    )
)]
pub async fn fail(
    State(state): State<AppState>,
    headers: HeaderMap,
    uri: Uri,
    Path(name): Path<String>,
    body: Body,
) -> Result<impl IntoResponse, ApiError> {
    require(&state, &headers, Permission::Ingest)?;
    let q: PingQuery = query(&uri)?;
    // Unknown names are refused before the body is read.
    state.heartbeats.spec(&name).await?;
    let bytes = read(&headers, body, state.max_body_bytes).await?;
    let said = if bytes.is_empty() {
        q.msg.unwrap_or_default()
    } else {
        String::from_utf8_lossy(&bytes).into_owned()
    };
    let now = Timestamp::now();
    Ok(answer(
        state.heartbeats.fail(&name, &said, now).await?,
        "failed",
    ))
}
