//! `POST /telegram/webhook`, where Telegram posts the bot's updates in webhook mode: the secret
//! header checked in constant time, then the update handed to the bot (`crate::bot`).

use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::bot::{HandOver, hand_over};
use crate::web::AppState;
use crate::web::body::read;
use crate::web::error::ApiError;

pub const WEBHOOK_PATH: &str = "/telegram/webhook";
const SECRET_HEADER: &str = "x-telegram-bot-api-secret-token";

/// `POST /telegram/webhook`: updates from Telegram, authenticated by the secret it was given.
pub async fn webhook(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Body,
) -> Result<impl IntoResponse, ApiError> {
    let Some((secret, updates)) = state.telegram.as_ref().and_then(|t| t.webhook.as_ref()) else {
        return Err(ApiError::NotFound("no such endpoint".into()));
    };
    let presented = headers
        .get(SECRET_HEADER)
        .map(|v| v.as_bytes())
        .unwrap_or_default();
    // Digests make the comparison constant-time whatever the lengths.
    let matches: bool = Sha256::digest(presented)
        .ct_eq(&Sha256::digest(secret.expose().as_bytes()))
        .into();
    if !matches {
        tracing::warn!("Telegram webhook call without the right secret token");
        return Err(ApiError::Unauthorized);
    }
    let bytes = read(&headers, body, state.max_body_bytes).await?;
    match hand_over(updates, &bytes) {
        Ok(()) => {}
        Err(e @ HandOver::NotAnUpdate(_)) => return Err(ApiError::bad(e.to_string())),
        Err(e @ HandOver::ShuttingDown) => return Err(ApiError::Unavailable(e.to_string())),
    }
    Ok(StatusCode::OK)
}
