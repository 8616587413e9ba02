//! The Telegram bot as the web side sees it: `POST /telegram/webhook`, where Telegram posts the
//! bot's updates in webhook mode, and the bot's username, learned once, for the links that open a
//! chat with it (subscribers' invites, the console's account link, citizens' sign-ups).

use std::time::Duration;

use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use teloxide::Bot;
use teloxide::prelude::Requester;
use teloxide::types::Update;
use tokio::sync::OnceCell;

use crate::bot::UpdateSender;
use crate::settings::Secret;
use crate::web::AppState;
use crate::web::body::read;
use crate::web::error::ApiError;

/// What the HTTP side needs of the Telegram bot.
pub struct TelegramWeb {
    pub bot: Bot,
    /// Learned from Telegram (`getMe`) the first time an invite link is made.
    pub username: OnceCell<String>,
    pub invite_ttl: Duration,
    /// Webhook mode: the secret Telegram sends, and where updates go.
    pub webhook: Option<(Secret, UpdateSender)>,
}

pub const WEBHOOK_PATH: &str = "/telegram/webhook";
const SECRET_HEADER: &str = "x-telegram-bot-api-secret-token";

/// The bot's username, asked of Telegram (`getMe`) once; `None` while Telegram cannot be
/// reached.
pub async fn bot_username(telegram: &TelegramWeb) -> Option<String> {
    let name = telegram
        .username
        .get_or_try_init(|| async {
            telegram
                .bot
                .get_me()
                .await
                .map(|me| me.username().to_owned())
        })
        .await;
    match name {
        Ok(name) => Some(name.clone()),
        Err(e) => {
            tracing::warn!(error = %e, "cannot learn the bot's username from Telegram");
            None
        }
    }
}

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
    let update: Update = serde_json::from_slice(&bytes)
        .map_err(|e| ApiError::bad(format!("not a Telegram update: {e}")))?;
    if updates.send(update).is_err() {
        return Err(ApiError::Unavailable("the bot is shutting down".into()));
    }
    Ok(StatusCode::OK)
}
