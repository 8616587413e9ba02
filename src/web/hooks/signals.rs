//! Webhook endpoints: `POST /api/v1/signals/{alertmanager,grafana,uptime-kuma,generic}`.
//!
//! A request is authenticated (token, basic auth or HMAC signature), read within the size limit,
//! parsed by its format, normalized and handed to the group-commit writer; the 202 goes out only
//! once the signals are in the store. 5xx is answered only when retrying can help (the store is
//! unavailable), because Alertmanager retries 5xx and gives up on everything else.

use axum::Json;
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use jiff::Timestamp;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::domain::{SignalStatus, Source};
use crate::heartbeat::HeartbeatError;
use crate::ingest::{self, GenericFraming, Parsed};
use crate::settings::Permission;
use crate::web::AppState;
use crate::web::auth::Principal;
use crate::web::body::{form_field, is_json_like, media_type, multipart_field, read};
use crate::web::contract::{BadRequest, Forbidden, Unauthorized, UnsupportedMediaType};
use crate::web::error::ApiError;

/// What became of a webhook's body.
#[derive(Serialize, ToSchema)]
pub struct Accepted {
    /// `accepted` (202: signals stored) or `ok` (200: nothing to store, e.g. a test
    /// notification, or only heartbeats' watchdog signals, counted as their pings).
    status: &'static str,
    /// The ids of the signals stored.
    pub(super) signals: Vec<i64>,
    /// What was read but not taken, and why.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    notes: Vec<String>,
}

pub(super) fn count(source: Source, outcome: &'static str, n: u64) {
    metrics::counter!("banditore_signals_received_total", "source" => source.as_str(), "outcome" => outcome).increment(n);
}

pub(super) fn outcome_label(e: &ApiError) -> &'static str {
    match e {
        ApiError::Unauthorized | ApiError::Forbidden(_) => "unauthorized",
        ApiError::PayloadTooLarge(_) => "too_large",
        ApiError::UnsupportedMediaType(_) => "unsupported_media_type",
        ApiError::Unavailable(_) => "unavailable",
        ApiError::BadRequest { .. } => "invalid",
        _ => "error",
    }
}

/// An Alertmanager webhook (version 4).
#[utoipa::path(
    post,
    path = "/api/v1/signals/alertmanager",
    tag = "signals",
    request_body(content = Object, content_type = "application/json", description = "Alertmanager's webhook body."),
    security(("token" = []), ("basic" = []), ("signature" = [])),
    responses(
        (status = 202, description = "Stored as signals; the incidents follow.", body = Accepted),
        (status = 200, description = "Read, nothing to store (e.g. a test notification).", body = Accepted),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 415, response = UnsupportedMediaType),
    )
)]
pub async fn alertmanager(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    respond(
        Source::Alertmanager,
        handle(&state, Source::Alertmanager, &headers, body).await,
    )
}

/// A Grafana webhook contact point.
#[utoipa::path(
    method(post, put),
    path = "/api/v1/signals/grafana",
    tag = "signals",
    request_body(content = Object, content_type = "application/json", description = "Grafana's webhook body."),
    security(("token" = []), ("basic" = []), ("signature" = [])),
    responses(
        (status = 202, description = "Stored as signals; the incidents follow.", body = Accepted),
        (status = 200, description = "Read, nothing to store (e.g. a test notification).", body = Accepted),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 415, response = UnsupportedMediaType),
    )
)]
pub async fn grafana(State(state): State<AppState>, headers: HeaderMap, body: Body) -> Response {
    respond(
        Source::Grafana,
        handle(&state, Source::Grafana, &headers, body).await,
    )
}

/// An Uptime Kuma webhook: JSON, or a form whose `data` field holds the JSON.
#[utoipa::path(
    post,
    path = "/api/v1/signals/uptime-kuma",
    tag = "signals",
    request_body(content(
        (Object = "application/json"),
        (Object = "multipart/form-data"),
        (Object = "application/x-www-form-urlencoded"),
    ), description = "Uptime Kuma's notification."),
    security(("token" = []), ("basic" = []), ("signature" = [])),
    responses(
        (status = 202, description = "Stored as signals; the incidents follow.", body = Accepted),
        (status = 200, description = "Read, nothing to store (e.g. a test notification).", body = Accepted),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 415, response = UnsupportedMediaType),
    )
)]
pub async fn uptime_kuma(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    respond(
        Source::UptimeKuma,
        handle(&state, Source::UptimeKuma, &headers, body).await,
    )
}

/// Generic JSON, or CloudEvents (structured or batch).
#[utoipa::path(
    post,
    path = "/api/v1/signals/generic",
    tag = "signals",
    request_body(content(
        (Object = "application/json"),
        (Object = "application/cloudevents+json"),
        (Vec<Object> = "application/cloudevents-batch+json"),
    ), description = "One signal or a list of them, or CloudEvents."),
    security(("token" = []), ("basic" = []), ("signature" = [])),
    responses(
        (status = 202, description = "Stored as signals; the incidents follow.", body = Accepted),
        (status = 200, description = "Read, nothing to store (e.g. a test notification).", body = Accepted),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 415, response = UnsupportedMediaType),
    )
)]
pub async fn generic(State(state): State<AppState>, headers: HeaderMap, body: Body) -> Response {
    respond(
        Source::Generic,
        handle(&state, Source::Generic, &headers, body).await,
    )
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct KumaQuery {
    /// The notification's text.
    msg: Option<String>,
    /// The heartbeat, as JSON.
    heartbeat: Option<String>,
    /// The monitor, as JSON.
    monitor: Option<String>,
}

/// Uptime Kuma's GET mode: the notification in query parameters, read once the caller is known.
#[utoipa::path(
    get,
    path = "/api/v1/signals/uptime-kuma",
    tag = "signals",
    params(KumaQuery),
    security(("token" = []), ("basic" = []), ("signature" = [])),
    responses(
        (status = 202, description = "Stored as signals; the incidents follow.", body = Accepted),
        (status = 200, description = "Read, nothing to store (e.g. a test notification).", body = Accepted),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 415, response = UnsupportedMediaType),
    )
)]
pub async fn uptime_kuma_get(
    State(state): State<AppState>,
    headers: HeaderMap,
    uri: Uri,
) -> Response {
    let result = async {
        authenticate(&state, &headers, None)?;
        let q: KumaQuery = crate::web::extract::query(&uri)?;
        let parsed = ingest::parse_uptime_kuma_query(
            q.msg.as_deref(),
            q.heartbeat.as_deref(),
            q.monitor.as_deref(),
            &state.parse_options,
        )?;
        accept(&state, Source::UptimeKuma, parsed).await
    }
    .await;
    respond(Source::UptimeKuma, result)
}

fn respond(source: Source, result: Result<(StatusCode, Accepted), ApiError>) -> Response {
    match result {
        Ok((status, body)) => {
            count(source, "accepted", body.signals.len() as u64);
            (status, Json(body)).into_response()
        }
        Err(e) => {
            count(source, outcome_label(&e), 1);
            tracing::info!(%source, status = e.status().as_u16(), error = ?e, "webhook refused");
            e.into_response()
        }
    }
}

/// The caller, by token if one is presented, else by a body signature.
fn authenticate(
    state: &AppState,
    headers: &HeaderMap,
    body: Option<&[u8]>,
) -> Result<(), ApiError> {
    let principal = match state.auth.from_headers(headers) {
        Some(p) => Some(p),
        None => body.and_then(|b| state.auth.from_signature(headers, b, Timestamp::now())),
    };
    may_ingest(principal)
}

/// The caller, known or not, may post signals.
pub(super) fn may_ingest(principal: Option<Principal>) -> Result<(), ApiError> {
    match principal {
        None => Err(ApiError::Unauthorized),
        Some(p) if p.may(Permission::Ingest) => Ok(()),
        Some(p) => Err(ApiError::Forbidden(format!(
            "token `{}` may not post signals (needs the ingest role)",
            p.name
        ))),
    }
}

async fn handle(
    state: &AppState,
    source: Source,
    headers: &HeaderMap,
    body: Body,
) -> Result<(StatusCode, Accepted), ApiError> {
    // Refuse unauthenticated callers before reading the body, unless a signature could vouch for it.
    if !state.auth.has_hmac() && state.auth.from_headers(headers).is_none() {
        return Err(ApiError::Unauthorized);
    }
    let bytes = read(headers, body, state.max_body_bytes).await?;
    authenticate(state, headers, Some(&bytes))?;
    let media = media_type(headers);
    let parsed = match (source, media.as_deref()) {
        // Uptime Kuma's form modes carry the JSON in a `data` field.
        (
            Source::UptimeKuma,
            Some(form @ ("multipart/form-data" | "application/x-www-form-urlencoded")),
        ) => {
            let data = match form {
                "multipart/form-data" => multipart_field(headers, &bytes, "data").await?,
                _ => form_field(&bytes, "data"),
            }
            .ok_or_else(|| {
                ApiError::field(
                    "data",
                    "missing: Uptime Kuma's form modes send the JSON in a `data` field",
                )
            })?;
            ingest::parse(
                source,
                data.as_bytes(),
                GenericFraming::Json,
                &state.parse_options,
            )?
        }
        (Source::Generic, Some("application/cloudevents+json")) => ingest::parse(
            Source::Cloudevents,
            &bytes,
            GenericFraming::CloudEvent,
            &state.parse_options,
        )?,
        (Source::Generic, Some("application/cloudevents-batch+json")) => ingest::parse(
            Source::Cloudevents,
            &bytes,
            GenericFraming::CloudEventBatch,
            &state.parse_options,
        )?,
        (_, m) if is_json_like(m) => {
            ingest::parse(source, &bytes, GenericFraming::Json, &state.parse_options)?
        }
        (_, m) => {
            return Err(ApiError::UnsupportedMediaType(format!(
                "`{}` cannot be read here; send application/json{}",
                m.unwrap_or_default(),
                match source {
                    Source::Generic =>
                        ", application/cloudevents+json or application/cloudevents-batch+json",
                    Source::UptimeKuma => " or multipart/form-data with a `data` field",
                    _ => "",
                }
            )));
        }
    };
    let source = match media.as_deref() {
        Some("application/cloudevents+json" | "application/cloudevents-batch+json") => {
            Source::Cloudevents
        }
        _ => source,
    };
    accept(state, source, parsed).await
}

/// Normalizes and stores the signals. A firing signal whose labels (as the monitor sent them)
/// match a heartbeat's `watchdog` matchers is that heartbeat's ping instead, and one that
/// resolves is dropped: neither becomes an incident. Matchers are in memory; a ping is one small
/// write, durable before the answer like the signals.
pub(super) async fn accept(
    state: &AppState,
    source: Source,
    parsed: Parsed,
) -> Result<(StatusCode, Accepted), ApiError> {
    let now = Timestamp::now();
    let mut notes = parsed.notes;
    let mut watchdogs = std::collections::BTreeSet::new();
    let mut signals = Vec::with_capacity(parsed.signals.len());
    for raw in parsed.signals {
        let watchdog = state.heartbeats.watchdog_of(&raw.labels);
        let signal = raw.normalize(source, &state.normalize, now);
        match watchdog {
            Some(name) if signal.status == SignalStatus::Firing => {
                watchdogs.insert(name);
            }
            Some(name) => notes.push(format!(
                "a resolved signal of heartbeat `{name}`'s watchdog is not a ping: ignored"
            )),
            None => signals.push((now, signal)),
        }
    }
    for name in watchdogs {
        // Deleted through the API since its matchers were read here: the watchdog's signal is
        // no ping and no alert either, and the batch's other signals are still taken.
        match state.heartbeats.ping(&name, now).await {
            Ok(_) => notes.push(format!("heartbeat `{name}` pinged by its watchdog signal")),
            Err(HeartbeatError::Unknown(_)) => notes.push(format!(
                "heartbeat `{name}` was deleted meanwhile: its watchdog signal is ignored"
            )),
            Err(e) => return Err(e.into()),
        }
    }
    if signals.is_empty() {
        return Ok((
            StatusCode::OK,
            Accepted {
                status: "ok",
                signals: Vec::new(),
                notes,
            },
        ));
    }
    let ids = state.ingest.store(signals).await?;
    Ok((
        StatusCode::ACCEPTED,
        Accepted {
            status: "accepted",
            signals: ids,
            notes,
        },
    ))
}

/// `e`'s answer (its status and headers: `Retry-After`, `WWW-Authenticate`) with the error body
/// another service's clients expect.
pub(super) fn reshaped(e: ApiError, body: &serde_json::Value) -> Response {
    let mut response = e.into_response();
    response
        .headers_mut()
        .remove(axum::http::header::CONTENT_LENGTH);
    *response.body_mut() = Body::from(body.to_string());
    response
}
