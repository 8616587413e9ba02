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
use utoipa::{IntoParams, ToSchema};

use crate::domain::escalation::EscalationStepSpec;
use crate::domain::subscriber::{SubscriberPatch, SubscriberSpec, Subscription};
use crate::store::{MAX_PAGE, SubscriberDelivery, SubscriberFilter};
use crate::web::body::{json, read};
use crate::web::contract::{
    BadRequest, Conflict, Forbidden, NotFound, Unauthorized, UnsupportedMediaType,
};
use crate::web::error::ApiError;
use crate::web::extract::{Path, Query};
use crate::web::service;
use crate::web::{AppState, record_audit, require};
use std::sync::Arc;

use base64::Engine as _;

use crate::bot::invite_digest;
use crate::bot::{TelegramWeb, bot_username};
use crate::domain::subscriber::ChannelKind;
use crate::settings::Permission;
use crate::store::{ServiceMode, SubscriberKind, SubscriberOrigin, SubscriberRow};
use crate::web::Principal;

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
    /// The desk's own escalation policy (empty: its audience's, `[escalation.audiences]`, if
    /// any).
    escalation: Vec<EscalationStepSpec>,
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
            escalation: s.escalation.map(|p| p.specs()).unwrap_or_default(),
            services: s.citizen_services,
        }
    }
}

/// A page of subscribers.
#[derive(Serialize, ToSchema)]
pub struct SubscriberList {
    subscribers: Vec<SubscriberJson>,
    /// The `after` of the next page; `null` on the last.
    next: Option<i64>,
}

/// A subscriber's latest deliveries, newest first.
#[derive(Serialize, ToSchema)]
pub struct SubscriberDeliveries {
    subscriber: i64,
    deliveries: Vec<SubscriberDelivery>,
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
    let mut row =
        state.store.subscriber(id).await?.ok_or_else(|| {
            ApiError::Internal(format!("subscriber {id} vanished after creation"))
        })?;
    service::subscribers::mask_webhooks(&who, std::slice::from_mut(&mut row));
    Ok((
        StatusCode::CREATED,
        [("location", format!("/api/v1/subscribers/{id}"))],
        Json(SubscriberJson::from(row)),
    ))
}

/// How many subscribers a page holds when the query does not say.
pub const DEFAULT_PAGE: u32 = 100;

/// The query of `GET /api/v1/subscribers`.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListQuery {
    /// At most this many (default 100, at most 500; more is read as 500).
    pub limit: Option<u32>,
    /// Only subscribers whose id is above this one: the `next` of the page before.
    pub after: Option<i64>,
    /// Text the name, the audience, an address or a matcher contains (ASCII letters of either
    /// case alike; `%` and `_` are plain characters); at most 200 characters.
    pub q: Option<String>,
}

/// A page of subscribers in id order; `next` is the cursor of the page after (`null` on the
/// last), also given as a `Link: <…>; rel="next"` header.
#[utoipa::path(
    get,
    path = "/api/v1/subscribers",
    tag = "subscribers",
    params(ListQuery),
    security(("token" = []), ("basic" = [])),
    responses(
        (status = 200, description = "A page of subscribers.", body = SubscriberList,
            headers(("Link" = String, description = "The next page, when there is one."))),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
    )
)]
pub async fn list(
    State(state): State<AppState>,
    headers: HeaderMap,
    Query(query): Query<ListQuery>,
) -> Result<impl IntoResponse, ApiError> {
    let who = require(&state, &headers, Permission::Subscribers)?;
    let limit = query.limit.unwrap_or(DEFAULT_PAGE).clamp(1, MAX_PAGE);
    // A search matches addresses: only admins may look for a citizen by their contact.
    let searching = query.q.as_deref().is_some_and(|q| !q.trim().is_empty());
    let filter = SubscriberFilter {
        q: query.q.clone(),
        kind: (searching && !who.may(Permission::Admin)).then_some(SubscriberKind::Desk),
        hide_webhooks: !who.may(Permission::Admin),
        after: query.after,
        before: None,
        limit,
    };
    let page = service::subscribers::page(&state, filter).await?;
    let rows = as_seen_by(&state, &who, page.rows, "subscribers list").await;
    let list: Vec<SubscriberJson> = rows.into_iter().map(SubscriberJson::from).collect();
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
        Json(SubscriberList {
            subscribers: list,
            next: page.next,
        }),
    ))
}

/// Edit a subscriber in place: the fields left out stay as they are; `addresses` replaces the
/// lists of the channels it names.
#[utoipa::path(
    patch,
    path = "/api/v1/subscribers/{id}",
    tag = "subscribers",
    params(("id" = i64, Path, description = "The subscriber's id.")),
    request_body = SubscriberPatch,
    security(("token" = []), ("basic" = [])),
    responses(
        (status = 200, description = "The subscriber as edited.", body = SubscriberJson),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 404, response = NotFound),
        (status = 409, response = Conflict),
        (status = 415, response = UnsupportedMediaType),
    )
)]
pub async fn edit(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<i64>,
    body: Body,
) -> Result<impl IntoResponse, ApiError> {
    let who = require(&state, &headers, Permission::Subscribers)?;
    let bytes = read(&headers, body, state.max_body_bytes).await?;
    let patch: SubscriberPatch = json(&headers, &bytes)?;
    let mut row =
        service::subscribers::edit(&state, id, patch, &who.name, Timestamp::now()).await?;
    service::subscribers::mask_webhooks(&who, std::slice::from_mut(&mut row));
    Ok(Json(SubscriberJson::from(row)))
}

/// The query of `GET /api/v1/subscribers/{id}/deliveries`.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct DeliveriesQuery {
    /// At most this many, newest first (default 50, at most 500).
    pub limit: Option<u32>,
}

/// The latest deliveries to the subscriber's addresses, newest first; a citizen's contact is
/// masked but for admins (whose read is audited).
#[utoipa::path(
    get,
    path = "/api/v1/subscribers/{id}/deliveries",
    tag = "subscribers",
    params(("id" = i64, Path, description = "The subscriber's id."), DeliveriesQuery),
    security(("token" = []), ("basic" = [])),
    responses(
        (status = 200, description = "The deliveries.", body = SubscriberDeliveries),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 404, response = NotFound),
    )
)]
pub async fn deliveries(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<i64>,
    Query(query): Query<DeliveriesQuery>,
) -> Result<impl IntoResponse, ApiError> {
    let who = require(&state, &headers, Permission::Subscribers)?;
    let limit = query.limit.unwrap_or(50).clamp(1, MAX_PAGE);
    let (_, rows) = service::subscribers::deliveries(&state, id, limit, &who).await?;
    Ok(Json(SubscriberDeliveries {
        subscriber: id,
        deliveries: rows,
    }))
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
    let who = require(&state, &headers, Permission::Subscribers)?;
    let row = state
        .store
        .subscriber(id)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("subscriber {id} not found")))?;
    let rows = as_seen_by(&state, &who, vec![row], "subscriber").await;
    let json = rows.into_iter().map(SubscriberJson::from).next();
    json.map(Json)
        .ok_or_else(|| ApiError::NotFound(format!("subscriber {id} not found")))
}

/// Subscribers as `reader` may see them: a citizen's contacts and a webhook's URL are whole for
/// administrators (and the read of a citizen's is audited), masked for everyone else, as in the
/// deliveries they read.
async fn as_seen_by(
    state: &AppState,
    reader: &Principal,
    mut rows: Vec<SubscriberRow>,
    what: &str,
) -> Vec<SubscriberRow> {
    service::subscribers::mask_webhooks(reader, &mut rows);
    let citizens: Vec<i64> = rows
        .iter()
        .filter(|r| r.origin == SubscriberOrigin::Citizen)
        .map(|r| r.id)
        .collect();
    if citizens.is_empty() {
        return rows;
    }
    if reader.may(Permission::Admin) {
        record_audit(
            state,
            &reader.name,
            "personal_data.read",
            None,
            serde_json::json!({ "what": what, "subscribers": citizens }),
        )
        .await;
        return rows;
    }
    for row in rows
        .iter_mut()
        .filter(|r| r.origin == SubscriberOrigin::Citizen)
    {
        for a in &mut row.addresses {
            a.address = service::incidents::masked(a.channel, &a.address);
            // A provider's reason for a gone address often quotes it, in any case.
            if a.gone_reason.is_some() {
                a.gone_reason = Some("(hidden: it may quote the contact)".to_owned());
            }
        }
    }
    rows
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

/// A new invite token: 24 random bytes (`draw`), URL-safe base64. Drawn again when it would
/// begin like a console user's link (`u_`, 1 in 4,096), which the bot reads as one.
fn invite_token(mut draw: impl FnMut() -> [u8; 24]) -> String {
    loop {
        let token = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(draw());
        if !token.starts_with("u_") {
            return token;
        }
    }
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
    let token = invite_token(|| {
        let mut raw = [0u8; 24];
        rand::fill(&mut raw);
        raw
    });
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_invite_never_begins_like_a_users_link() {
        // 0xBB 0xF0 encode as "u_A": that draw is refused, the next kept.
        let mut draws = [
            [
                0xBBu8, 0xF0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
            ],
            [7u8; 24],
        ]
        .into_iter();
        let token = invite_token(|| draws.next().unwrap_or([9u8; 24]));
        assert_eq!(
            token,
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode([7u8; 24])
        );
        assert_eq!(draws.len(), 0, "the first draw was refused");
    }
}
