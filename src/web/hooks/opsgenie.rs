//! Opsgenie's Alert API, for the tools that post to Opsgenie: `POST /v2/alerts` (create),
//! `POST /v2/alerts/{identifier}/close` and `…/acknowledge`, with `Authorization: GenieKey
//! <ingest token>` (a bearer token or basic auth work too). Opsgenie's REST API is announced to
//! stop in April 2027; its users point their tools here by changing the API URL.
//!
//! Answers are Opsgenie's: 202 `{"result":"Request will be processed","took":…,"requestId":…}`
//! once the request is stored (an acknowledgement changes nothing: the desks acknowledge an
//! incident through their messages, not a monitor); 400 for a body that is not JSON, 401 for an unknown key, 403 for a
//! token without the ingest role and 422 for a body Opsgenie would refuse, each as
//! `{"message":…,"took":…,"requestId":…}` (422 with `errors` by field).

use std::collections::BTreeMap;
use std::time::Instant;

use axum::Json;
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::header::AUTHORIZATION;
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::signals::{accept, count, may_ingest, outcome_label, reshaped};
use crate::domain::Source;
use crate::ingest::{decode, opsgenie};
use crate::web::AppState;
use crate::web::auth::Principal;
use crate::web::body::read;
use crate::web::error::ApiError;

/// A request taken.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct RequestAccepted {
    /// `Request will be processed`.
    result: &'static str,
    /// Seconds spent.
    took: f64,
    /// This request's id.
    request_id: String,
}

/// A request refused, in Opsgenie's words.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct OpsgenieError {
    message: String,
    /// The fields at fault (422).
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    errors: BTreeMap<String, String>,
    took: f64,
    request_id: String,
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(rename_all = "camelCase")]
pub struct Identified {
    /// `id` (the default) or `alias`: both name the alert by its alias, which Banditore uses
    /// as its id. `tiny` is refused.
    identifier_type: Option<String>,
}

/// The caller of a `GenieKey`, or of a bearer token or basic auth.
fn principal(state: &AppState, headers: &HeaderMap) -> Option<Principal> {
    let genie = headers
        .get(AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("GenieKey"))
        .map(|(_, key)| key.trim());
    match genie {
        Some(key) => state.auth.from_secret(key),
        None => state.auth.from_headers(headers),
    }
}

/// Creates (fires) an alert.
#[utoipa::path(
    post,
    path = "/v2/alerts",
    tag = "signals",
    request_body(content = Object, content_type = "application/json",
        description = "`message` (required, 130 characters kept), `alias` (the alert's identity, up to 512), `description`, `priority` (P1–P5, P3 by default), `tags`, `details`, `entity`, `source`; responders and the rest are read past."),
    security(("genie_key" = []), ("token" = []), ("basic" = [])),
    responses(
        (status = 202, description = "Stored; the incidents follow.", body = RequestAccepted),
        (status = 400, description = "The body is not JSON.", body = OpsgenieError),
        (status = 401, description = "No ingest token was presented.", body = OpsgenieError),
        (status = 403, description = "The token may not post signals.", body = OpsgenieError),
        (status = 413, description = "The body is larger than `server.max_body_bytes`.", body = OpsgenieError),
        (status = 422, description = "A field cannot be used; `errors` names it.", body = OpsgenieError),
        (status = 503, description = "The store is unavailable; send again.", body = OpsgenieError),
    )
)]
pub async fn create(State(state): State<AppState>, headers: HeaderMap, body: Body) -> Response {
    let started = Instant::now();
    let result = async {
        may_ingest(principal(&state, &headers))?;
        let bytes = read(&headers, body, state.max_body_bytes).await?;
        let parsed = opsgenie::parse_create(&decode(&bytes)?)?;
        accept(&state, Source::Opsgenie, parsed)
            .await
            .map(|a| a.1.signals.len())
    }
    .await;
    respond(result, started)
}

/// Closes (resolves) an alert.
#[utoipa::path(
    post,
    path = "/v2/alerts/{identifier}/close",
    tag = "signals",
    params(("identifier" = String, Path, description = "The alert's alias."), Identified),
    request_body(content = Option<Object>, content_type = "application/json",
        description = "Optional: `user`, `source`, `note`."),
    security(("genie_key" = []), ("token" = []), ("basic" = [])),
    responses(
        (status = 202, description = "Stored; the incident follows.", body = RequestAccepted),
        (status = 400, description = "The body is not JSON.", body = OpsgenieError),
        (status = 401, description = "No ingest token was presented.", body = OpsgenieError),
        (status = 403, description = "The token may not post signals.", body = OpsgenieError),
        (status = 422, description = "The identifier cannot be used; `errors` names it.", body = OpsgenieError),
        (status = 503, description = "The store is unavailable; send again.", body = OpsgenieError),
    )
)]
pub async fn close(
    State(state): State<AppState>,
    Path(identifier): Path<String>,
    headers: HeaderMap,
    uri: Uri,
    body: Body,
) -> Response {
    let started = Instant::now();
    let result = async {
        may_ingest(principal(&state, &headers))?;
        let query: Identified = crate::web::extract::query(&uri)?;
        let alias = opsgenie::closing_alias(&identifier, query.identifier_type.as_deref())?;
        let bytes = read(&headers, body, state.max_body_bytes).await?;
        let value = match bytes.iter().all(u8::is_ascii_whitespace) {
            true => None,
            false => Some(decode(&bytes)?),
        };
        let parsed = opsgenie::parse_close(alias, value.as_ref())?;
        accept(&state, Source::Opsgenie, parsed)
            .await
            .map(|a| a.1.signals.len())
    }
    .await;
    respond(result, started)
}

/// Acknowledges an alert: taken, and nothing changes, because the desks acknowledge an incident
/// through their messages, not a monitor.
#[utoipa::path(
    post,
    path = "/v2/alerts/{identifier}/acknowledge",
    tag = "signals",
    params(("identifier" = String, Path, description = "The alert's alias."), Identified),
    request_body(content = Option<Object>, content_type = "application/json",
        description = "Optional: `user`, `source`, `note`."),
    security(("genie_key" = []), ("token" = []), ("basic" = [])),
    responses(
        (status = 202, description = "Taken; nothing changes.", body = RequestAccepted),
        (status = 401, description = "No ingest token was presented.", body = OpsgenieError),
        (status = 403, description = "The token may not post signals.", body = OpsgenieError),
        (status = 422, description = "The identifier cannot be used; `errors` names it.", body = OpsgenieError),
    )
)]
pub async fn acknowledge(
    State(state): State<AppState>,
    Path(identifier): Path<String>,
    headers: HeaderMap,
    uri: Uri,
) -> Response {
    let started = Instant::now();
    let result = async {
        may_ingest(principal(&state, &headers))?;
        let query: Identified = crate::web::extract::query(&uri)?;
        opsgenie::closing_alias(&identifier, query.identifier_type.as_deref())?;
        Ok(0)
    }
    .await;
    respond(result, started)
}

/// A random (version 4) UUID, as Opsgenie's request ids are.
fn request_id() -> String {
    let h = crate::ids::random_hex(16);
    let variant = ["8", "9", "a", "b"][usize::from(h.as_bytes()[16] % 4)];
    format!(
        "{}-{}-4{}-{variant}{}-{}",
        &h[..8],
        &h[8..12],
        &h[13..16],
        &h[17..20],
        &h[20..]
    )
}

fn respond(result: Result<usize, ApiError>, started: Instant) -> Response {
    let source = Source::Opsgenie;
    let took = (started.elapsed().as_secs_f64() * 1000.0).round() / 1000.0;
    match result {
        Ok(n) => {
            count(source, "accepted", n as u64);
            let body = RequestAccepted {
                result: "Request will be processed",
                took,
                request_id: request_id(),
            };
            (StatusCode::ACCEPTED, Json(body)).into_response()
        }
        Err(e) => {
            count(source, outcome_label(&e), 1);
            tracing::info!(%source, status = e.status().as_u16(), error = ?e, "request refused");
            let (message, field) = e.describe();
            let (message, errors, e) = match (&e, field) {
                (ApiError::Unauthorized, _) => {
                    ("Could not authenticate".to_owned(), BTreeMap::new(), e)
                }
                // A field at fault is Opsgenie's 422, a body that is no JSON its 400.
                (ApiError::BadRequest { .. }, Some(f)) => (
                    "Request body is not processable. Please check the errors.".to_owned(),
                    BTreeMap::from([(f, message)]),
                    e,
                ),
                _ => (message, BTreeMap::new(), e),
            };
            let unprocessable = !errors.is_empty();
            let body = OpsgenieError {
                message,
                errors,
                took,
                request_id: request_id(),
            };
            let mut response = reshaped(e, &serde_json::to_value(body).unwrap_or_default());
            if unprocessable {
                *response.status_mut() = StatusCode::UNPROCESSABLE_ENTITY;
            }
            response
        }
    }
}
