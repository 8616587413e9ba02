//! The admins' pages: console users (add, change roles, set a new password, disable and enable)
//! and API tokens (create, with the secret shown once on the answer page, and revoke). The forms
//! carry the session's CSRF token and go through the service layer, as the API does.

use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use jiff::Timestamp;

use super::session::redirect;
use super::{Form, allowed, error_page, field, json, page, posted};
use crate::settings::Permission;
use crate::web::AppState;
use crate::web::client::language;
use crate::web::error::ApiError;
use crate::web::extract::Path;
use crate::web::service::access::{self, UserEdit};

/// Roles a console user may hold, in the order the forms offer them.
const USER_ROLES: [&str; 4] = ["admin", "communicator", "operator", "viewer"];
/// Roles a token may hold.
const TOKEN_ROLES: [&str; 5] = ["ingest", "viewer", "operator", "communicator", "admin"];

/// Every `role` the form ticked.
fn roles(form: &Form) -> Vec<String> {
    form.iter()
        .filter(|(k, _)| k == "role")
        .map(|(_, v)| v.clone())
        .collect()
}

pub async fn users(State(state): State<AppState>, headers: HeaderMap) -> Response {
    let lang = language(&state, &headers);
    let v = or_page!(allowed(&state, &headers, &lang, Permission::Admin).await);
    match access::users(&state).await {
        Ok(list) => page(
            &state,
            &lang,
            Some(&v),
            "users",
            StatusCode::OK,
            minijinja::context! { users => json(&list), roles => USER_ROLES },
        ),
        Err(e) => error_page(&state, &lang, Some(&v), e.into()),
    }
}

pub async fn user_create(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let lang = language(&state, &headers);
    let (v, form) = or_page!(posted(&state, &headers, &lang, Permission::Admin, body).await);
    let created = access::create_user(
        &state,
        field(&form, "username").trim(),
        &roles(&form),
        field(&form, "password").to_owned(),
        &v.principal.name,
        Timestamp::now(),
    )
    .await;
    match created {
        Ok(_) => redirect("/console/users"),
        Err(e) => error_page(&state, &lang, Some(&v), e.into()),
    }
}

/// One of a user's forms, told apart by `action`: `roles`, `password`, `disable`, `enable`.
pub async fn user_change(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(username): Path<String>,
    body: Body,
) -> Response {
    let lang = language(&state, &headers);
    let (v, form) = or_page!(posted(&state, &headers, &lang, Permission::Admin, body).await);
    let edit = match field(&form, "action") {
        "roles" => UserEdit {
            roles: Some(roles(&form)),
            ..UserEdit::default()
        },
        "password" => UserEdit {
            password: Some(field(&form, "password").to_owned()),
            ..UserEdit::default()
        },
        "disable" => UserEdit {
            disabled: Some(true),
            ..UserEdit::default()
        },
        "enable" => UserEdit {
            disabled: Some(false),
            ..UserEdit::default()
        },
        other => {
            let e = ApiError::field(
                "action",
                format!("`{other}` is not one of roles, password, disable, enable"),
            );
            return error_page(&state, &lang, Some(&v), e);
        }
    };
    match access::change_user(&state, &username, edit, &v.principal.name, Timestamp::now()).await {
        Ok(_) => redirect("/console/users"),
        Err(e) => error_page(&state, &lang, Some(&v), e.into()),
    }
}

pub async fn tokens(State(state): State<AppState>, headers: HeaderMap) -> Response {
    let lang = language(&state, &headers);
    let v = or_page!(allowed(&state, &headers, &lang, Permission::Admin).await);
    match access::tokens(&state).await {
        Ok(list) => page(
            &state,
            &lang,
            Some(&v),
            "tokens",
            StatusCode::OK,
            minijinja::context! {
                tokens => json(&list),
                roles => TOKEN_ROLES,
                reload_seconds => crate::web::RELOAD_EVERY.as_secs(),
            },
        ),
        Err(e) => error_page(&state, &lang, Some(&v), e.into()),
    }
}

/// Creates a token and shows its secret on the answer page, the only time it is shown.
pub async fn token_create(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let lang = language(&state, &headers);
    let (v, form) = or_page!(posted(&state, &headers, &lang, Permission::Admin, body).await);
    let created = access::create_token(
        &state,
        field(&form, "name").trim(),
        &roles(&form),
        &v.principal.name,
        Timestamp::now(),
    )
    .await;
    match created {
        Ok(created) => page(
            &state,
            &lang,
            Some(&v),
            "token_created",
            StatusCode::CREATED,
            minijinja::context! { created => json(&created) },
        ),
        Err(e) => error_page(&state, &lang, Some(&v), e.into()),
    }
}

pub async fn token_revoke(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(name): Path<String>,
    body: Body,
) -> Response {
    let lang = language(&state, &headers);
    let (v, _) = or_page!(posted(&state, &headers, &lang, Permission::Admin, body).await);
    match access::revoke_token(&state, &name, &v.principal.name, Timestamp::now()).await {
        Ok(()) => redirect("/console/tokens"),
        Err(e) => error_page(&state, &lang, Some(&v), e.into()),
    }
}
