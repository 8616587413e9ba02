//! The heartbeats' page: every monitor that must keep pinging, its state, its last ping and when
//! it becomes late, as `/api/v1/heartbeats` shows them.

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;

use super::{allowed, error_page, json, page};
use crate::settings::Permission;
use crate::web::AppState;
use crate::web::api::heartbeats::views;
use crate::web::client::language;

pub async fn heartbeats_page(State(state): State<AppState>, headers: HeaderMap) -> Response {
    let lang = language(&state, &headers);
    let v = or_page!(allowed(&state, &headers, &lang, Permission::Read).await);
    match views(&state).await {
        Ok(heartbeats) => page(
            &state,
            &lang,
            Some(&v),
            "heartbeats",
            StatusCode::OK,
            minijinja::context! { heartbeats => json(&heartbeats) },
        ),
        Err(e) => error_page(&state, &lang, Some(&v), e),
    }
}
