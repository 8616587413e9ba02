//! The audit log's page: who did what, most recent first.

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;

use super::{allowed, error_page, json, page};
use crate::settings::Permission;
use crate::web::AppState;
use crate::web::client::language;

pub async fn audit_page(State(state): State<AppState>, headers: HeaderMap) -> Response {
    let lang = language(&state, &headers);
    let v = or_page!(allowed(&state, &headers, &lang, Permission::Read).await);
    match state.store.audit_log(None, 200).await {
        Ok(entries) => page(
            &state,
            &lang,
            Some(&v),
            "audit",
            StatusCode::OK,
            minijinja::context! { entries => json(&entries) },
        ),
        Err(e) => error_page(&state, &lang, Some(&v), e.into()),
    }
}
