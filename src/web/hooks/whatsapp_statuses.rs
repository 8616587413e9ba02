//! `GET` and `POST /api/v1/callbacks/whatsapp`: Meta's webhook for the WhatsApp number. The
//! `GET` is the subscription handshake (`hub.mode=subscribe`, `hub.verify_token`,
//! `hub.challenge`), answered with the challenge when the token is `channels.whatsapp.verify_token`.
//! The `POST`s carry `X-Hub-Signature-256: sha256=<hex HMAC-SHA256 of the raw body with the app
//! secret>`; a missing or wrong signature is refused (`401`) and logged, and nothing is read.
//! Their `entry[].changes[].value.statuses[]` (`sent`, `delivered`, `read`, `failed` with its
//! `errors`) are recorded on the deliveries by the message's `wamid`; the rest (people's
//! messages, account updates) is answered and left aside. A status of a message not known here,
//! told less than ten minutes ago, is refused with `503`: Meta posts it within milliseconds of
//! the send, sometimes before the wamid is written, and posts again a webhook not answered
//! `200`. Older, it is answered as unknown (another sender on the number, or pruned).

use axum::Json;
use axum::body::Body;
use axum::extract::{RawQuery, State};
use axum::http::HeaderMap;
use axum::response::IntoResponse;
use hmac::{Hmac, KeyInit, Mac};
use jiff::Timestamp;
use sha2::Sha256;
use subtle::ConstantTimeEq;

use crate::channel::whatsapp::PROVIDER;
use crate::channel::whatsapp::settings::WhatsAppKeys;
use crate::store::DeliveryReport;
use crate::web::AppState;
use crate::web::body::read;
use crate::web::contract::{BadRequest, NotFound, Unauthorized, Unavailable};
use crate::web::error::ApiError;

const SIGNATURE: &str = "x-hub-signature-256";

/// What a status webhook changed.
#[derive(serde::Serialize, utoipa::ToSchema)]
pub struct StatusesRecorded {
    /// Statuses recorded on a delivery sent from here.
    recorded: usize,
    /// Statuses about messages not sent from here (or long pruned), told more than ten
    /// minutes ago, answered all the same so that Meta does not send them again.
    unknown: usize,
}

fn keys(state: &AppState) -> Result<&WhatsAppKeys, ApiError> {
    state
        .callbacks
        .whatsapp
        .as_deref()
        .ok_or_else(|| ApiError::NotFound("WhatsApp is not enabled".into()))
}

/// Meta's subscription handshake: the challenge, as plain text, for the right verify token.
#[utoipa::path(
    get,
    path = "/api/v1/callbacks/whatsapp",
    tag = "callbacks",
    params(
        ("hub.mode" = String, Query, description = "`subscribe`."),
        ("hub.verify_token" = String, Query, description = "`channels.whatsapp.verify_token`."),
        ("hub.challenge" = String, Query, description = "Answered back."),
    ),
    security(()),
    responses(
        (status = 200, description = "The challenge.", body = String, content_type = "text/plain"),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthorized),
        (status = 404, response = NotFound),
    )
)]
pub async fn subscribe(
    State(state): State<AppState>,
    RawQuery(query): RawQuery,
) -> Result<impl IntoResponse, ApiError> {
    let keys = keys(&state)?;
    let query: Vec<(String, String)> =
        url::form_urlencoded::parse(query.unwrap_or_default().as_bytes())
            .into_owned()
            .collect();
    let get = |name: &str| {
        query
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    };
    if get("hub.mode") != Some("subscribe") {
        return Err(ApiError::BadRequest {
            message: "hub.mode must be `subscribe`".into(),
            field: Some("hub.mode".into()),
        });
    }
    let challenge = get("hub.challenge").unwrap_or_default();
    if challenge.is_empty() || challenge.len() > 256 {
        return Err(ApiError::BadRequest {
            message: "hub.challenge must be given (at most 256 characters)".into(),
            field: Some("hub.challenge".into()),
        });
    }
    let given = get("hub.verify_token").unwrap_or_default();
    let right = keys
        .verify_token
        .as_ref()
        .is_some_and(|t| bool::from(t.expose().as_bytes().ct_eq(given.as_bytes())));
    if !right {
        tracing::warn!("WhatsApp webhook subscription with a wrong verify token");
        return Err(ApiError::Unauthorized);
    }
    tracing::info!("WhatsApp webhook subscription verified");
    Ok((
        [(
            axum::http::header::CONTENT_TYPE,
            "text/plain; charset=utf-8",
        )],
        challenge.to_owned(),
    ))
}

/// Whether `header` is `sha256=` and the hex HMAC-SHA256 of `body` with `secret`.
pub fn signed(secret: &[u8], body: &[u8], header: Option<&str>) -> bool {
    let Some(hex_sig) = header.and_then(|h| h.trim().strip_prefix("sha256=")) else {
        return false;
    };
    let Ok(given) = hex::decode(hex_sig) else {
        return false;
    };
    let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(secret) else {
        return false;
    };
    mac.update(body);
    mac.verify_slice(&given).is_ok()
}

/// One status of a message, as recorded.
fn report(status: &serde_json::Value) -> Option<DeliveryReport> {
    let id = status["id"].as_str()?;
    let word = status["status"].as_str()?;
    let error = status["errors"].as_array().and_then(|errors| {
        let said: Vec<String> = errors
            .iter()
            .map(|e| {
                let code = e["code"]
                    .as_i64()
                    .map(|c| c.to_string())
                    .unwrap_or_default();
                let title = e["title"].as_str().unwrap_or("");
                let details = e["error_data"]["details"].as_str().unwrap_or("");
                format!(
                    "{code} {title}{}{details}",
                    if details.is_empty() { "" } else { ": " }
                )
                .trim()
                .to_owned()
            })
            .collect();
        (!said.is_empty()).then(|| said.join("; ").chars().take(500).collect())
    });
    Some(DeliveryReport {
        provider: PROVIDER.to_owned(),
        provider_id: id.chars().take(200).collect(),
        status: word.chars().take(40).collect::<String>().to_lowercase(),
        error,
        at: Timestamp::now(),
    })
}

/// How long after Meta's `timestamp` a status of a message not known here is refused (`503`, so
/// that Meta posts it again) rather than answered as unknown: the send that made it may not
/// have written its wamid yet. Past it, the message is taken as not sent from here.
const EARLY: jiff::SignedDuration = jiff::SignedDuration::from_mins(10);

/// When Meta says the status happened: `timestamp`, Unix seconds as a string.
fn told_at(status: &serde_json::Value) -> Option<Timestamp> {
    let t = &status["timestamp"];
    let secs = t
        .as_str()
        .and_then(|s| s.trim().parse::<i64>().ok())
        .or_else(|| t.as_i64())?;
    Timestamp::from_second(secs).ok()
}

/// Statuses of the messages the WhatsApp channel sent: signed by Meta with the app secret.
#[utoipa::path(
    post,
    path = "/api/v1/callbacks/whatsapp",
    tag = "callbacks",
    request_body(content = Object, content_type = "application/json",
        description = "Meta's webhook: `object`, `entry[].changes[].value.statuses[]`."),
    security(("hub_signature" = [])),
    responses(
        (status = 200, description = "Read.", body = StatusesRecorded),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthorized),
        (status = 404, response = NotFound),
        (status = 503, response = Unavailable),
    )
)]
pub async fn statuses(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Body,
) -> Result<impl IntoResponse, ApiError> {
    let keys = keys(&state)?;
    let bytes = read(&headers, body, state.max_body_bytes).await?;
    let header = headers.get(SIGNATURE).and_then(|v| v.to_str().ok());
    let right = keys
        .app_secret
        .as_ref()
        .is_some_and(|s| signed(s.expose().as_bytes(), &bytes, header));
    if !right {
        tracing::warn!(
            signed = header.is_some(),
            "WhatsApp webhook with a missing or wrong signature; nothing recorded"
        );
        metrics::counter!("banditore_whatsapp_webhooks_refused_total").increment(1);
        return Err(ApiError::Unauthorized);
    }
    let value: serde_json::Value = serde_json::from_slice(&bytes)
        .map_err(|e| ApiError::bad(format!("the body is not JSON: {e}")))?;
    // Read whole before anything is written: a malformed part refuses the lot.
    let mut reports = Vec::new();
    for entry in value["entry"].as_array().into_iter().flatten() {
        for change in entry["changes"].as_array().into_iter().flatten() {
            for status in change["value"]["statuses"].as_array().into_iter().flatten() {
                let said = report(status).ok_or_else(|| ApiError::BadRequest {
                    message: "a status needs its message `id` and its `status`".into(),
                    field: Some("entry[].changes[].value.statuses[]".into()),
                })?;
                reports.push((said, told_at(status)));
            }
        }
    }
    let (mut recorded, mut unknown, mut early) = (0, 0, 0);
    let now = Timestamp::now();
    for (report, at) in &reports {
        if state.store.record_report(report).await? {
            recorded += 1;
            metrics::counter!("banditore_whatsapp_statuses_total", "status" => report.status.clone())
                .increment(1);
        } else if at.is_some_and(|at| now.duration_since(at) < EARLY) {
            // Meta tells `sent` and `delivered` within milliseconds, sometimes before the send's
            // answer (its wamid) is written: refused, so that Meta posts it again later.
            early += 1;
        } else {
            unknown += 1;
        }
    }
    if early > 0 {
        metrics::counter!("banditore_whatsapp_statuses_early_total").increment(early as u64);
        tracing::debug!(
            early,
            recorded,
            "WhatsApp statuses of messages not recorded yet; Meta will post them again"
        );
        return Err(ApiError::Unavailable(format!(
            "{early} statuses are about messages whose sending is not recorded yet; post them again"
        )));
    }
    Ok(Json(StatusesRecorded { recorded, unknown }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_signature_is_the_hex_hmac_of_the_raw_body() {
        let mut mac = Hmac::<Sha256>::new_from_slice(b"app-secret").unwrap();
        mac.update(b"{\"a\":1}");
        let hex_sig = hex::encode(mac.finalize().into_bytes());
        assert!(signed(
            b"app-secret",
            b"{\"a\":1}",
            Some(&format!("sha256={hex_sig}"))
        ));
        assert!(!signed(
            b"app-secret",
            b"{\"a\": 1}",
            Some(&format!("sha256={hex_sig}"))
        ));
        assert!(!signed(
            b"other",
            b"{\"a\":1}",
            Some(&format!("sha256={hex_sig}"))
        ));
        assert!(!signed(b"app-secret", b"{\"a\":1}", Some(&hex_sig)));
        assert!(!signed(b"app-secret", b"{\"a\":1}", None));
    }

    #[test]
    fn a_failed_status_keeps_its_errors() {
        let status = serde_json::json!({"id": "wamid.X", "status": "failed", "timestamp": "1",
            "recipient_id": "39333", "errors": [{"code": 131026, "title": "Message undeliverable",
            "error_data": {"details": "not on WhatsApp"}}]});
        let r = report(&status).unwrap();
        assert_eq!(r.status, "failed");
        assert_eq!(
            r.error.as_deref(),
            Some("131026 Message undeliverable: not on WhatsApp")
        );
        assert!(report(&serde_json::json!({"status": "read"})).is_none());
    }
}
