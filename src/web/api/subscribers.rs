//! `/api/v1/subscribers`: who is told, where, about what, and the Telegram invites that bind a
//! chat to a subscriber. Operators and admins.

use std::collections::BTreeMap;

use axum::Json;
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use jiff::Timestamp;
use serde::Serialize;
use utoipa::ToSchema;

use crate::domain::subscriber::{SubscriberSpec, Subscription};
use crate::web::body::{json, read};
use crate::web::contract::{
    BadRequest, Conflict, Forbidden, NotFound, Unauthorized, UnsupportedMediaType,
};
use crate::web::error::ApiError;
use crate::web::extract::Path;
use crate::web::service;
use crate::web::{AppState, require};
use std::sync::Arc;

use base64::Engine as _;

use crate::bot::invite_digest;
use crate::bot::{TelegramWeb, bot_username};
use crate::domain::subscriber::ChannelKind;
use crate::settings::Permission;
use crate::store::{ServiceMode, SubscriberRow};

/// One address of a subscriber.
#[derive(Serialize, ToSchema)]
struct AddressJson {
    id: i64,
    channel: &'static str,
    address: String,
    /// active, unsubscribed or gone
    state: &'static str,
    #[schema(value_type = Option<String>, format = DateTime)]
    unsubscribed_at: Option<Timestamp>,
    #[schema(value_type = Option<String>, format = DateTime)]
    gone_at: Option<Timestamp>,
    gone_reason: Option<String>,
    /// `admin` (API or configuration) or `chat` (bound itself with an invite).
    origin: &'static str,
    /// The chat's own language, if it chose one.
    language: Option<String>,
    /// Services the chat follows or muted itself.
    services: BTreeMap<String, ServiceMode>,
}

/// A subscriber: who is told, where, about what.
#[derive(Serialize, ToSchema)]
pub struct SubscriberJson {
    id: i64,
    name: String,
    language: String,
    audience: String,
    origin: &'static str,
    #[schema(value_type = String, format = DateTime)]
    created_at: Timestamp,
    addresses: Vec<AddressJson>,
    subscriptions: Vec<Subscription>,
    /// A citizen's status-page services, which its subscriptions are written from.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    services: Vec<String>,
}

impl From<SubscriberRow> for SubscriberJson {
    fn from(s: SubscriberRow) -> Self {
        SubscriberJson {
            id: s.id,
            name: s.name,
            language: s.language.to_string(),
            audience: s.audience,
            origin: s.origin.as_str(),
            created_at: s.created_at,
            addresses: s
                .addresses
                .into_iter()
                .map(|a| AddressJson {
                    id: a.id,
                    channel: a.channel.as_str(),
                    state: if a.gone_at.is_some() {
                        "gone"
                    } else if a.unsubscribed_at.is_some() {
                        "unsubscribed"
                    } else {
                        "active"
                    },
                    address: a.address,
                    unsubscribed_at: a.unsubscribed_at,
                    gone_at: a.gone_at,
                    gone_reason: a.gone_reason,
                    origin: a.origin.as_str(),
                    language: a.language.map(|l| l.to_string()),
                    services: a.services,
                })
                .collect(),
            subscriptions: s.subscriptions,
            services: s.citizen_services,
        }
    }
}

/// Every subscriber.
#[derive(Serialize, ToSchema)]
pub struct SubscriberList {
    subscribers: Vec<SubscriberJson>,
}

/// A single-use Telegram invite.
#[derive(Serialize, ToSchema)]
pub struct TelegramInvite {
    subscriber: i64,
    /// The link that opens a private chat with the bot (absent while Telegram cannot be asked
    /// for the bot's name).
    link: Option<String>,
    /// The same, for adding the bot to a group.
    group_link: Option<String>,
    /// What the chat can type instead.
    start_command: String,
    #[schema(value_type = String, format = DateTime)]
    expires_at: Timestamp,
}

/// Create a subscriber.
#[utoipa::path(
    post,
    path = "/api/v1/subscribers",
    tag = "subscribers",
    request_body = SubscriberSpec,
    security(("token" = []), ("basic" = [])),
    responses(
        (status = 201, description = "Created.", body = SubscriberJson,
            headers(("Location" = String, description = "The subscriber's URL."))),
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
    let who = require(&state, &headers, Permission::Subscribers)?;
    let bytes = read(&headers, body, state.max_body_bytes).await?;
    let spec: SubscriberSpec = json(&headers, &bytes)?;
    let id = service::subscribers::create(&state, spec, &who.name, Timestamp::now()).await?;
    let row =
        state.store.subscriber(id).await?.ok_or_else(|| {
            ApiError::Internal(format!("subscriber {id} vanished after creation"))
        })?;
    Ok((
        StatusCode::CREATED,
        [("location", format!("/api/v1/subscribers/{id}"))],
        Json(SubscriberJson::from(row)),
    ))
}

/// List every subscriber.
#[utoipa::path(
    get,
    path = "/api/v1/subscribers",
    tag = "subscribers",
    security(("token" = []), ("basic" = [])),
    responses(
        (status = 200, description = "The subscribers.", body = SubscriberList),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
    )
)]
pub async fn list(
    State(state): State<AppState>,
    headers: HeaderMap,
) -> Result<impl IntoResponse, ApiError> {
    require(&state, &headers, Permission::Subscribers)?;
    let rows = state.store.subscribers().await?;
    let list: Vec<SubscriberJson> = rows.into_iter().map(SubscriberJson::from).collect();
    Ok(Json(SubscriberList { subscribers: list }))
}

/// Read one subscriber.
#[utoipa::path(
    get,
    path = "/api/v1/subscribers/{id}",
    tag = "subscribers",
    params(("id" = i64, Path, description = "The subscriber's id.")),
    security(("token" = []), ("basic" = [])),
    responses(
        (status = 200, description = "The subscriber.", body = SubscriberJson),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 404, response = NotFound),
    )
)]
pub async fn get(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<i64>,
) -> Result<impl IntoResponse, ApiError> {
    require(&state, &headers, Permission::Subscribers)?;
    let row = state
        .store
        .subscriber(id)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("subscriber {id} not found")))?;
    Ok(Json(SubscriberJson::from(row)))
}

/// Delete a subscriber; its pending deliveries are cancelled.
#[utoipa::path(
    delete,
    path = "/api/v1/subscribers/{id}",
    tag = "subscribers",
    params(("id" = i64, Path, description = "The subscriber's id.")),
    security(("token" = []), ("basic" = [])),
    responses(
        (status = 204, description = "Deleted."),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 404, response = NotFound),
        (status = 409, response = Conflict),
    )
)]
pub async fn delete(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<i64>,
) -> Result<impl IntoResponse, ApiError> {
    let who = require(&state, &headers, Permission::Subscribers)?;
    service::subscribers::delete(&state, id, &who.name).await?;
    Ok(StatusCode::NO_CONTENT)
}

fn telegram_enabled(state: &AppState) -> Result<&Arc<TelegramWeb>, ApiError> {
    state.telegram.as_ref().ok_or_else(|| {
        ApiError::Conflict("Telegram is not enabled (channels.telegram.enabled)".into())
    })
}

/// `POST /api/v1/subscribers/{id}/telegram-invite`: a single-use link that binds the chat that
/// opens it to the subscriber.
#[utoipa::path(
    post,
    path = "/api/v1/subscribers/{id}/telegram-invite",
    tag = "subscribers",
    params(("id" = i64, Path, description = "The subscriber's id.")),
    security(("token" = []), ("basic" = [])),
    responses(
        (status = 201, description = "The invite.", body = TelegramInvite),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 404, response = NotFound),
        (status = 409, response = Conflict),
    )
)]
pub async fn telegram_invite(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<i64>,
) -> Result<impl IntoResponse, ApiError> {
    let who = require(&state, &headers, Permission::Subscribers)?;
    let telegram = telegram_enabled(&state)?;
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
        Json(TelegramInvite {
            subscriber: id,
            link,
            group_link,
            start_command: format!("/start {token}"),
            expires_at,
        }),
    ))
}
