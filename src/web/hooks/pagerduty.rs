//! PagerDuty's Events API, so that every tool with a PagerDuty integration (Grafana, Zabbix,
//! Datadog, Nagios and Icinga, Checkly, cloud monitors) can post to Banditore by changing one
//! URL: v2 at `POST /v2/enqueue` and v1 at `POST /generic/2010-04-15/create_event.json`, the
//! paths PagerDuty uses. The routing key (v1: service key) is an ingest token's secret.
//!
//! Answers are PagerDuty's: 202 `{"status":"success","message":"Event processed","dedup_key":…}`
//! (v1: 200 with `incident_key`) once the event is stored, and `{"status":"invalid event",
//! "message":"Event object is invalid","errors":[…]}` otherwise, with 400 for what the sender
//! must fix (an unknown routing key among them: the Events API has no 401) and 5xx only when
//! retrying can help.

use axum::Json;
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use utoipa::ToSchema;

use super::signals::{accept, count, may_ingest, outcome_label, reshaped};
use crate::domain::Source;
use crate::ingest::pagerduty::{self, Event};
use crate::ingest::{IngestError, decode};
use crate::web::AppState;
use crate::web::body::read;
use crate::web::error::ApiError;

/// An event taken.
#[derive(Serialize, ToSchema)]
pub struct EventProcessed {
    /// `success`.
    status: &'static str,
    /// `Event processed`.
    message: &'static str,
    /// The alert's key (v2): the sender's, or the one made for a trigger without one.
    #[serde(skip_serializing_if = "Option::is_none")]
    dedup_key: Option<String>,
    /// The alert's key (v1).
    #[serde(skip_serializing_if = "Option::is_none")]
    incident_key: Option<String>,
}

/// An event refused, in PagerDuty's words.
#[derive(Serialize, ToSchema)]
pub struct InvalidEvent {
    /// `invalid event`.
    status: &'static str,
    /// `Event object is invalid`.
    message: &'static str,
    /// What is wrong, each naming the field at fault.
    errors: Vec<String>,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Version {
    V1,
    V2,
}

/// An event of PagerDuty's Events API v2.
#[utoipa::path(
    post,
    path = "/v2/enqueue",
    tag = "signals",
    request_body(content = Object, content_type = "application/json",
        description = "`routing_key` (an ingest token: the body carries the credentials, so the operation needs no header), `event_action` (trigger, acknowledge, resolve), `dedup_key`, `payload` {summary, source, severity, timestamp, component, group, class, custom_details}, `links`, `images`, `client`, `client_url`. An acknowledgement changes nothing: the desks acknowledge an incident through their messages, not a monitor."),
    security(()),
    responses(
        (status = 202, description = "Stored; the incidents follow.", body = EventProcessed),
        (status = 400, description = "Refused: malformed, invalid, an unknown routing key, a token without the ingest role, or a body larger than `server.max_body_bytes` (PagerDuty's senders know 400, 429 and 5xx only).", body = InvalidEvent),
        (status = 503, description = "The store is unavailable; send again.", body = InvalidEvent),
    )
)]
pub async fn enqueue(State(state): State<AppState>, headers: HeaderMap, body: Body) -> Response {
    handle(&state, &headers, body, Version::V2).await
}

/// An event of PagerDuty's Events API v1 (`generic/2010-04-15`).
#[utoipa::path(
    post,
    path = "/generic/2010-04-15/create_event.json",
    tag = "signals",
    request_body(content = Object, content_type = "application/json",
        description = "`service_key` (an ingest token: the body carries the credentials), `event_type` (trigger, acknowledge, resolve), `incident_key`, `description`, `details`, `client`, `client_url`."),
    security(()),
    responses(
        (status = 200, description = "Stored; the incidents follow.", body = EventProcessed),
        (status = 400, description = "Refused: malformed, invalid, an unknown service key, a token without the ingest role, or a body larger than `server.max_body_bytes`.", body = InvalidEvent),
        (status = 503, description = "The store is unavailable; send again.", body = InvalidEvent),
    )
)]
pub async fn create_event(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    handle(&state, &headers, body, Version::V1).await
}

async fn handle(state: &AppState, headers: &HeaderMap, body: Body, version: Version) -> Response {
    let source = Source::Pagerduty;
    let result = async {
        let bytes = read(headers, body, state.max_body_bytes).await?;
        let value = decode(&bytes)?;
        let (key_field, event) = match version {
            Version::V2 => ("routing_key", pagerduty::parse_v2(&value)),
            Version::V1 => ("service_key", pagerduty::parse_v1(&value)),
        };
        // The key is checked before anything else the body says.
        let key = value.get(key_field).and_then(|k| k.as_str()).unwrap_or("");
        may_ingest(state.auth.from_secret(key))?;
        let event: Event = event?;
        let (parsed, key) = event.into_parsed(|| crate::ids::random_hex(16));
        let stored = accept(state, source, parsed).await?;
        Ok::<_, ApiError>((stored.1.signals.len(), key))
    }
    .await;
    match result {
        Ok((n, key)) => {
            count(source, "accepted", n as u64);
            let (status, dedup_key, incident_key) = match version {
                Version::V2 => (StatusCode::ACCEPTED, Some(key), None),
                Version::V1 => (StatusCode::OK, None, Some(key)),
            };
            let body = EventProcessed {
                status: "success",
                message: "Event processed",
                dedup_key,
                incident_key,
            };
            (status, Json(body)).into_response()
        }
        Err(e) => {
            count(source, outcome_label(&e), 1);
            tracing::info!(%source, status = e.status().as_u16(), error = ?e, "event refused");
            let key_field = match version {
                Version::V2 => "routing_key",
                Version::V1 => "service_key",
            };
            let (message, field) = match &e {
                ApiError::Unauthorized => (
                    "is not an ingest token of this Banditore".to_owned(),
                    Some(key_field.to_owned()),
                ),
                ApiError::Forbidden(m) => (m.clone(), Some(key_field.to_owned())),
                _ => e.describe(),
            };
            let error = match field {
                Some(f) => IngestError::field(f, message).to_string(),
                None => message,
            };
            let body = InvalidEvent {
                status: "invalid event",
                message: "Event object is invalid",
                errors: vec![error],
            };
            // PagerDuty's senders know 400, 429 and 5xx: nothing else is answered.
            let e = match e.status() {
                s if s.is_server_error() => e,
                _ => ApiError::bad(""),
            };
            reshaped(e, &serde_json::to_value(body).unwrap_or_default())
        }
    }
}
