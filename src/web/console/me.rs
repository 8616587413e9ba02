//! The visitor's own page: their roles, and the link that ties their Telegram account to them.

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use jiff::Timestamp;

use super::{allowed, error_page, page};
use crate::settings::Permission;
use crate::web::AppState;
use crate::web::client::language;
use crate::web::error::ApiError;

/// The visitor's own page: their roles, and the link that ties their Telegram account to them
/// (so that they can approve drafts from Telegram), valid for a quarter of an hour.
pub async fn me(State(state): State<AppState>, headers: HeaderMap) -> Response {
    let lang = language(&state, &headers);
    let v = or_page!(allowed(&state, &headers, &lang, Permission::Read).await);
    let user = match state.store.user(&v.principal.name).await {
        Ok(Some(u)) => u,
        Ok(None) => return error_page(&state, &lang, Some(&v), ApiError::NotFound("user".into())),
        Err(e) => return error_page(&state, &lang, Some(&v), e.into()),
    };
    let link = match &state.telegram {
        Some(telegram) if v.principal.may(Permission::Drafts) => {
            let expires = Timestamp::now().as_second() + 15 * 60;
            let payload =
                state
                    .approval_links
                    .link_payload(user.id, expires, user.telegram_user.as_deref());
            let bot = crate::bot::bot_username(telegram).await;
            Some(minijinja::context! {
                url => bot.map(|b| format!("https://t.me/{b}?start={payload}")),
                command => format!("/start {payload}"),
            })
        }
        _ => None,
    };
    page(
        &state,
        &lang,
        Some(&v),
        "me",
        StatusCode::OK,
        minijinja::context! { linked => user.telegram_user.is_some(), link => link },
    )
}
