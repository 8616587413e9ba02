//! `/api/v1/subscribers`: who is told, where, about what, and the Telegram invites that bind a
//! chat to a subscriber; the list in pages with a search, edits in place, and each subscriber's
//! recent deliveries. Operators and admins.

use std::collections::BTreeMap;

use axum::Json;
use axum::body::Body;
use axum::extract::State;
use axum::http::header::LINK;
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::IntoResponse;
use jiff::Timestamp;
use serde::{Deserialize, Serialize};

use crate::domain::subscriber::{SubscriberPatch, SubscriberSpec, Subscription};
use crate::store::{MAX_PAGE, SubscriberFilter};
use crate::web::body::{json, read};
use crate::web::error::ApiError;
use crate::web::extract::{Path, Query};
use crate::web::service;
use crate::web::{AppState, require};
use std::sync::Arc;

use base64::Engine as _;

use crate::bot::invite_digest;
use crate::bot::{TelegramWeb, bot_username};
use crate::domain::subscriber::ChannelKind;
use crate::settings::Permission;
use crate::store::{ServiceMode, SubscriberRow};

#[derive(Serialize)]
struct AddressJson {
    id: i64,
    channel: &'static str,
    address: String,
    /// active, unsubscribed or gone
    state: &'static str,
    unsubscribed_at: Option<Timestamp>,
    gone_at: Option<Timestamp>,
    gone_reason: Option<String>,
    /// `admin` (API or configuration) or `chat` (bound itself with an invite).
    origin: &'static str,
    /// The chat's own language, if it chose one.
    language: Option<String>,
    /// Services the chat follows or muted itself.
    services: BTreeMap<String, ServiceMode>,
}

#[derive(Serialize)]
pub struct SubscriberJson {
    id: i64,
    name: String,
    language: String,
    audience: String,
    origin: &'static str,
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

/// How many subscribers a page holds when the query does not say.
pub const DEFAULT_PAGE: u32 = 100;

/// The query of `GET /api/v1/subscribers`.
#[derive(Debug, Default, Deserialize)]
pub struct ListQuery {
    /// At most this many (default 100, at most 500; more is read as 500).
    pub limit: Option<u32>,
    /// Only subscribers whose id is above this one: the `next` of the page before.
    pub after: Option<i64>,
    /// Text the name, the audience, an address or a matcher contains (ASCII letters of either
    /// case alike; `%` and `_` are plain characters); at most 200 characters.
    pub q: Option<String>,
}

/// `GET /api/v1/subscribers`: a page in id order, `next` the cursor of the page after (`null` on
/// the last), also given as a `Link: <…>; rel="next"` header.
pub async fn list(
    State(state): State<AppState>,
    headers: HeaderMap,
    Query(query): Query<ListQuery>,
) -> Result<impl IntoResponse, ApiError> {
    require(&state, &headers, Permission::Subscribers)?;
    let limit = query.limit.unwrap_or(DEFAULT_PAGE).clamp(1, MAX_PAGE);
    let filter = SubscriberFilter {
        q: query.q.clone(),
        kind: None,
        after: query.after,
        before: None,
        limit,
    };
    let page = service::subscribers::page(&state, filter).await?;
    let list: Vec<SubscriberJson> = page.rows.into_iter().map(SubscriberJson::from).collect();
    let mut response_headers = HeaderMap::new();
    if let Some(next) = page.next {
        let mut link = url::form_urlencoded::Serializer::new(String::new());
        link.append_pair("limit", &limit.to_string());
        link.append_pair("after", &next.to_string());
        if let Some(q) = query.q.as_deref().filter(|q| !q.trim().is_empty()) {
            link.append_pair("q", q);
        }
        let value = format!("</api/v1/subscribers?{}>; rel=\"next\"", link.finish());
        if let Ok(value) = HeaderValue::from_str(&value) {
            response_headers.insert(LINK, value);
        }
    }
    Ok((
        response_headers,
        Json(serde_json::json!({ "subscribers": list, "next": page.next })),
    ))
}

/// `PATCH /api/v1/subscribers/{id}`: an edit in place; the fields left out stay as they are.
pub async fn edit(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<i64>,
    body: Body,
) -> Result<impl IntoResponse, ApiError> {
    let who = require(&state, &headers, Permission::Subscribers)?;
    let bytes = read(&headers, body, state.max_body_bytes).await?;
    let patch: SubscriberPatch = json(&headers, &bytes)?;
    let row = service::subscribers::edit(&state, id, patch, &who.name, Timestamp::now()).await?;
    Ok(Json(SubscriberJson::from(row)))
}

/// The query of `GET /api/v1/subscribers/{id}/deliveries`.
#[derive(Debug, Default, Deserialize)]
pub struct DeliveriesQuery {
    /// At most this many, newest first (default 50, at most 500).
    pub limit: Option<u32>,
}

/// `GET /api/v1/subscribers/{id}/deliveries`: the latest deliveries to the subscriber's
/// addresses, newest first.
pub async fn deliveries(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<i64>,
    Query(query): Query<DeliveriesQuery>,
) -> Result<impl IntoResponse, ApiError> {
    let who = require(&state, &headers, Permission::Subscribers)?;
    let limit = query.limit.unwrap_or(50).clamp(1, MAX_PAGE);
    let (_, rows) = service::subscribers::deliveries(&state, id, limit, &who).await?;
    Ok(Json(
        serde_json::json!({ "subscriber": id, "deliveries": rows }),
    ))
}

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
        Json(serde_json::json!({
            "subscriber": id,
            "link": link,
            "group_link": group_link,
            "start_command": format!("/start {token}"),
            "expires_at": expires_at,
        })),
    ))
}
