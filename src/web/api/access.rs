//! `/api/v1/tokens` and `/api/v1/users`: API tokens and console users, managed while the service
//! runs, by admins only (the checks and the audit are the service layer's, shared with the
//! console). A token's secret is in the answer that creates it and nowhere else; users are
//! disabled, not deleted.

use axum::Json;
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use jiff::Timestamp;
use serde::Deserialize;

use crate::settings::Permission;
use crate::web::body::{json, read};
use crate::web::error::ApiError;
use crate::web::extract::Path;
use crate::web::service::access::{self, UserEdit};
use crate::web::{AppState, require};

/// `GET /api/v1/tokens`: the configuration's tokens and the store's, revoked ones included.
pub async fn list_tokens(
    State(state): State<AppState>,
    headers: HeaderMap,
) -> Result<impl IntoResponse, ApiError> {
    require(&state, &headers, Permission::Admin)?;
    let tokens = access::tokens(&state).await?;
    Ok(Json(serde_json::json!({ "tokens": tokens })))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewTokenRequest {
    name: String,
    roles: Vec<String>,
}

/// `POST /api/v1/tokens`: `201` with the secret, shown this once.
pub async fn create_token(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Body,
) -> Result<impl IntoResponse, ApiError> {
    let who = require(&state, &headers, Permission::Admin)?;
    let bytes = read(&headers, body, state.max_body_bytes).await?;
    let req: NewTokenRequest = json(&headers, &bytes)?;
    let created =
        access::create_token(&state, &req.name, &req.roles, &who.name, Timestamp::now()).await?;
    Ok((StatusCode::CREATED, Json(created)))
}

/// `DELETE /api/v1/tokens/{name}`: revokes a stored token (`409` for the configuration's).
pub async fn revoke_token(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(name): Path<String>,
) -> Result<impl IntoResponse, ApiError> {
    let who = require(&state, &headers, Permission::Admin)?;
    access::revoke_token(&state, &name, &who.name, Timestamp::now()).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// `GET /api/v1/users`.
pub async fn list_users(
    State(state): State<AppState>,
    headers: HeaderMap,
) -> Result<impl IntoResponse, ApiError> {
    require(&state, &headers, Permission::Admin)?;
    let users = access::users(&state).await?;
    Ok(Json(serde_json::json!({ "users": users })))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewUserRequest {
    username: String,
    roles: Vec<String>,
    password: String,
}

/// `POST /api/v1/users`: `201` with the user.
pub async fn create_user(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Body,
) -> Result<impl IntoResponse, ApiError> {
    let who = require(&state, &headers, Permission::Admin)?;
    let bytes = read(&headers, body, state.max_body_bytes).await?;
    let req: NewUserRequest = json(&headers, &bytes)?;
    let user = access::create_user(
        &state,
        &req.username,
        &req.roles,
        req.password,
        &who.name,
        Timestamp::now(),
    )
    .await?;
    Ok((StatusCode::CREATED, Json(user)))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UserEditRequest {
    roles: Option<Vec<String>>,
    password: Option<String>,
    disabled: Option<bool>,
}

/// `PATCH /api/v1/users/{username}`: new roles, password or state; their sessions end.
pub async fn change_user(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(username): Path<String>,
    body: Body,
) -> Result<impl IntoResponse, ApiError> {
    let who = require(&state, &headers, Permission::Admin)?;
    let bytes = read(&headers, body, state.max_body_bytes).await?;
    let req: UserEditRequest = json(&headers, &bytes)?;
    let edit = UserEdit {
        roles: req.roles,
        password: req.password,
        disabled: req.disabled,
    };
    let user = access::change_user(&state, &username, edit, &who.name, Timestamp::now()).await?;
    Ok(Json(user))
}
