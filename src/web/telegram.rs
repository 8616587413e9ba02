//! Telegram: invite links for subscribers (admin), and the webhook Telegram posts bot updates to.

use std::sync::Arc;
use std::time::Duration;

use axum::Json;
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use base64::Engine;
use jiff::Timestamp;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use teloxide::Bot;
use teloxide::prelude::Requester;
use teloxide::types::Update;
use tokio::sync::OnceCell;

use super::body::read;
use super::error::ApiError;
use super::extract::Path;
use super::{AppState, require};
use crate::bot::{UpdateSender, invite_digest};
use crate::domain::subscriber::ChannelKind;
use crate::settings::{Permission, Secret};

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

fn enabled(state: &AppState) -> Result<&Arc<TelegramWeb>, ApiError> {
    state.telegram.as_ref().ok_or_else(|| {
        ApiError::Conflict("Telegram is not enabled (channels.telegram.enabled)".into())
    })
}

/// `POST /api/v1/subscribers/{id}/telegram-invite`: a single-use link that binds the chat that
/// opens it to the subscriber.
pub async fn invite(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<i64>,
) -> Result<impl IntoResponse, ApiError> {
    let who = require(&state, &headers, Permission::Subscribers)?;
    let telegram = enabled(&state)?;
    let mut raw = [0u8; 24];
    rand::fill(&mut raw);
    let token = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(raw);
    let now = Timestamp::now();
    let expires_at = jiff::SignedDuration::try_from(telegram.invite_ttl)
        .ok()
        .and_then(|ttl| now.checked_add(ttl).ok())
        .ok_or_else(|| ApiError::Internal("invite_ttl out of range".into()))?;
    let created = state
        .store
        .create_invite(
            id,
            ChannelKind::Telegram,
            &invite_digest(&token),
            &who.name,
            now,
            expires_at,
        )
        .await?;
    if !created {
        return Err(ApiError::NotFound(format!("subscriber {id} not found")));
    }
    tracing::info!(subscriber = id, by = %who.name, %expires_at, "Telegram invite created");
    // Without the bot's name (Telegram unreachable) the chat can still type the command.
    let (link, group_link) = match bot_username(telegram).await {
        Some(name) => (
            Some(format!("https://t.me/{name}?start={token}")),
            Some(format!("https://t.me/{name}?startgroup={token}")),
        ),
        None => (None, None),
    };
    Ok((
        StatusCode::CREATED,
        Json(serde_json::json!({
            "subscriber": id,
            "link": link,
            "group_link": group_link,
            "start_command": format!("/start {token}"),
            "expires_at": expires_at,
        })),
    ))
}

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
