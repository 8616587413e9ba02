//! Alertmanager's own API, `POST /api/v2/alerts`, so that Prometheus (and every other client of
//! Alertmanager) can list Banditore in `alerting.alertmanagers` directly. The caller presents an
//! ingest token as a bearer token or as basic auth's password. Answers are Alertmanager's: 200
//! with an empty body once the alerts are stored, 400 with the error as a JSON string (after
//! storing the valid alerts, when only some fail their validation), and 5xx only when retrying
//! can help (the store is unavailable).

use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};

use super::signals::{accept, count, may_ingest, outcome_label, reshaped};
use crate::domain::Source;
use crate::ingest::{self, prometheus};
use crate::web::AppState;
use crate::web::body::{is_json_like, media_type, read};
use crate::web::error::ApiError;

/// Prometheus's alerts, as Alertmanager takes them.
#[utoipa::path(
    post,
    path = "/api/v2/alerts",
    tag = "signals",
    request_body(content = Vec<Object>, content_type = "application/json",
        description = "Postable alerts: `labels` (at least one), `annotations`, `startsAt`, `endsAt`, `generatorURL`. A firing alert resolves when its `endsAt` passes without a re-send."),
    security(("token" = []), ("basic" = [])),
    responses(
        (status = 200, description = "Stored; the incidents follow. The body is empty, as Alertmanager's."),
        (status = 400, description = "Alerts cannot be used; the body is the reason, as a JSON string. When only some alerts fail their validation (no label, an end before the start), the others are stored, as Alertmanager does.", body = String, content_type = "application/json"),
        (status = 401, description = "No ingest token was presented.", body = String, content_type = "application/json"),
        (status = 403, description = "The token may not post signals.", body = String, content_type = "application/json"),
        (status = 413, description = "The body is larger than `server.max_body_bytes`.", body = String, content_type = "application/json"),
        (status = 415, description = "The body is not JSON.", body = String, content_type = "application/json"),
        (status = 503, description = "The store is unavailable; Prometheus sends again.", body = String, content_type = "application/json"),
    )
)]
pub async fn post_alerts(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let result = async {
        may_ingest(state.auth.from_headers(&headers))?;
        let bytes = read(&headers, body, state.max_body_bytes).await?;
        let media = media_type(&headers);
        if !is_json_like(media.as_deref()) {
            return Err(ApiError::UnsupportedMediaType(format!(
                "`{}` cannot be read here; send application/json",
                media.unwrap_or_default()
            )));
        }
        let (parsed, refused) = prometheus::parse_valid(&ingest::decode(&bytes)?)?;
        let (_, accepted) = accept(&state, Source::Prometheus, parsed).await?;
        Ok((accepted, refused))
    }
    .await;
    match result {
        Ok((accepted, refused)) => {
            count(
                Source::Prometheus,
                "accepted",
                accepted.signals.len() as u64,
            );
            if refused.is_empty() {
                return StatusCode::OK.into_response();
            }
            // The valid alerts are stored; the others are refused as Alertmanager refuses
            // them, their reasons joined.
            count(Source::Prometheus, "invalid", refused.len() as u64);
            let text: Vec<String> = refused.iter().map(ToString::to_string).collect();
            tracing::info!(source = %Source::Prometheus, refused = %text.join("; "), "alerts refused");
            let e = ApiError::bad(text.join("; "));
            reshaped(e, &serde_json::Value::String(text.join("; ")))
        }
        Err(e) => {
            count(Source::Prometheus, outcome_label(&e), 1);
            tracing::info!(source = %Source::Prometheus, status = e.status().as_u16(), error = ?e, "alerts refused");
            let (message, field) = e.describe();
            let text = match field {
                Some(f) => format!("{f}: {message}"),
                None => message,
            };
            reshaped(e, &serde_json::Value::String(text))
        }
    }
}
