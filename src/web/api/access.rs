//! `/api/v1/tokens` and `/api/v1/users`: API tokens and console users, managed while the service
//! runs, by admins only (the checks and the audit are the service layer's, shared with the
//! console). A token's secret is in the answer that creates it and nowhere else; users are
//! disabled, not deleted.

use axum::Json;
use axum::body::Body;
use axum::extract::State;
use axum::http::header::CACHE_CONTROL;
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::IntoResponse;
use jiff::Timestamp;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::settings::Permission;
use crate::web::body::{json, read};
use crate::web::contract::{
    BadRequest, Conflict, Forbidden, NotFound, Unauthorized, UnsupportedMediaType,
};
use crate::web::error::ApiError;
use crate::web::extract::Path;
use crate::web::service::access::{self, CreatedToken, TokenView, UserEdit, UserView};
use crate::web::{AppState, require};

/// The tokens.
#[derive(Serialize, ToSchema)]
pub struct TokenList {
    tokens: Vec<TokenView>,
}

/// The console users.
#[derive(Serialize, ToSchema)]
pub struct UserList {
    users: Vec<UserView>,
}

/// The configuration's tokens and the store's, revoked ones included; never a secret.
#[utoipa::path(
    get,
    path = "/api/v1/tokens",
    tag = "access",
    security(("token" = []), ("basic" = [])),
    responses(
        (status = 200, description = "The tokens.", body = TokenList),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
    )
)]
pub async fn list_tokens(
    State(state): State<AppState>,
    headers: HeaderMap,
) -> Result<impl IntoResponse, ApiError> {
    require(&state, &headers, Permission::Admin)?;
    let tokens = access::tokens(&state).await?;
    Ok(Json(TokenList { tokens }))
}

/// A token to make: its name (1–64 ASCII letters, digits, `.`, `_`, `-`) and roles.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewTokenRequest {
    name: String,
    roles: Vec<String>,
}

/// Make a token: the answer holds its secret, shown this once.
#[utoipa::path(
    post,
    path = "/api/v1/tokens",
    tag = "access",
    request_body = NewTokenRequest,
    security(("token" = []), ("basic" = [])),
    responses(
        (status = 201, description = "Made; `token` is the secret.", body = CreatedToken),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 409, response = Conflict),
        (status = 415, response = UnsupportedMediaType),
    )
)]
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
    // The secret is in this answer only: no cache along the way may keep it.
    Ok((
        StatusCode::CREATED,
        [(CACHE_CONTROL, HeaderValue::from_static("no-store"))],
        Json(created),
    ))
}

/// Revoke a stored token (`409` for the configuration's, which are managed there).
#[utoipa::path(
    delete,
    path = "/api/v1/tokens/{name}",
    tag = "access",
    params(("name" = String, Path, description = "The token's name.")),
    security(("token" = []), ("basic" = [])),
    responses(
        (status = 204, description = "Revoked."),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 404, response = NotFound),
        (status = 409, response = Conflict),
    )
)]
pub async fn revoke_token(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(name): Path<String>,
) -> Result<impl IntoResponse, ApiError> {
    let who = require(&state, &headers, Permission::Admin)?;
    access::revoke_token(&state, &name, &who.name, Timestamp::now()).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// The console users, disabled ones included; never a password's hash.
#[utoipa::path(
    get,
    path = "/api/v1/users",
    tag = "access",
    security(("token" = []), ("basic" = [])),
    responses(
        (status = 200, description = "The users.", body = UserList),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
    )
)]
pub async fn list_users(
    State(state): State<AppState>,
    headers: HeaderMap,
) -> Result<impl IntoResponse, ApiError> {
    require(&state, &headers, Permission::Admin)?;
    let users = access::users(&state).await?;
    Ok(Json(UserList { users }))
}

/// A console user to make.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewUserRequest {
    username: String,
    roles: Vec<String>,
    password: String,
}

/// Make a console user.
#[utoipa::path(
    post,
    path = "/api/v1/users",
    tag = "access",
    request_body = NewUserRequest,
    security(("token" = []), ("basic" = [])),
    responses(
        (status = 201, description = "Made.", body = UserView),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 409, response = Conflict),
        (status = 415, response = UnsupportedMediaType),
    )
)]
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

/// What to change about a user; a field left out stays as it is.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UserEditRequest {
    roles: Option<Vec<String>>,
    password: Option<String>,
    disabled: Option<bool>,
}

/// Change a user's roles, password or state; their sessions end. Leaving no enabled admin is
/// refused (`409`).
#[utoipa::path(
    patch,
    path = "/api/v1/users/{username}",
    tag = "access",
    params(("username" = String, Path, description = "The user's name.")),
    request_body = UserEditRequest,
    security(("token" = []), ("basic" = [])),
    responses(
        (status = 200, description = "The user as changed.", body = UserView),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 404, response = NotFound),
        (status = 409, response = Conflict),
        (status = 415, response = UnsupportedMediaType),
    )
)]
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
