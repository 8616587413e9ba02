//! Who may use Banditore, managed while it runs: API tokens (listed with the configuration's,
//! created with their secret shown once, revoked) and console users (created, given roles, a new
//! password, disabled or enabled again). Only admins reach these; every change is audited, and a
//! change to the tokens takes effect on this replica at once, on the others within
//! [`crate::web::RELOAD_EVERY`].
//!
//! Users are disabled rather than deleted: the name stays taken, so the audit log's entries under
//! it can never be read as another person's.

use jiff::Timestamp;
use serde::Serialize;

use super::ServiceError;
use crate::settings::Role;
use crate::store::{UserChange, UserChanged, UserRow};
use crate::tokens::{self, TokenError};
use crate::users::{UserError, check_password, check_roles, check_username, hash_password};
use crate::web::{AppState, record_audit};

/// A token as the API and the console show it; never its secret.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct TokenView {
    pub name: String,
    pub roles: Vec<String>,
    /// `config` (the configuration file; managed there) or `store`.
    pub origin: &'static str,
    #[schema(value_type = Option<String>, format = DateTime)]
    pub created_at: Option<Timestamp>,
    pub created_by: Option<String>,
    #[schema(value_type = Option<String>, format = DateTime)]
    pub last_used_at: Option<Timestamp>,
    #[schema(value_type = Option<String>, format = DateTime)]
    pub revoked_at: Option<Timestamp>,
    pub revoked_by: Option<String>,
}

/// A token just made, with its secret: shown once.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct CreatedToken {
    pub name: String,
    pub roles: Vec<String>,
    pub token: String,
}

/// A console user as the API and the console show them; never their password's hash.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct UserView {
    pub username: String,
    pub roles: Vec<String>,
    pub disabled: bool,
    pub telegram_linked: bool,
}

impl From<UserRow> for UserView {
    fn from(u: UserRow) -> UserView {
        UserView {
            username: u.username,
            roles: u.roles,
            disabled: u.disabled,
            telegram_linked: u.telegram_user.is_some(),
        }
    }
}

/// What to change about a user; `None` leaves it.
#[derive(Debug, Clone, Default)]
pub struct UserEdit {
    pub roles: Option<Vec<String>>,
    pub password: Option<String>,
    pub disabled: Option<bool>,
}

fn token_refused(e: TokenError) -> ServiceError {
    match e {
        TokenError::Name(_) => ServiceError::invalid("name", e.to_string()),
        TokenError::ConfigName(_) => ServiceError::Conflict(e.to_string()),
        TokenError::NoRole | TokenError::Role(_) => ServiceError::invalid("roles", e.to_string()),
    }
}

fn user_refused(e: UserError) -> ServiceError {
    match e {
        UserError::Username(_) => ServiceError::invalid("username", e.to_string()),
        UserError::ShortPassword | UserError::WeakPassword(_) => {
            ServiceError::invalid("password", e.to_string())
        }
        UserError::NoRole | UserError::IngestRole => ServiceError::invalid("roles", e.to_string()),
        UserError::Hash(m) => ServiceError::Store(crate::store::StoreError::Corrupt(m)),
    }
}

/// The configuration's tokens, then the store's, revoked ones included.
pub async fn tokens(state: &AppState) -> Result<Vec<TokenView>, ServiceError> {
    let mut list: Vec<TokenView> = state
        .auth
        .config_tokens()
        .into_iter()
        .map(|(name, roles)| TokenView {
            name,
            roles: roles.iter().map(|r| r.as_str().to_owned()).collect(),
            origin: "config",
            created_at: None,
            created_by: None,
            last_used_at: None,
            revoked_at: None,
            revoked_by: None,
        })
        .collect();
    list.extend(state.store.tokens().await?.into_iter().map(|t| TokenView {
        name: t.name,
        roles: t.roles,
        origin: "store",
        created_at: Some(t.created_at),
        created_by: Some(t.created_by),
        last_used_at: t.last_used_at,
        revoked_at: t.revoked_at,
        revoked_by: t.revoked_by,
    }));
    Ok(list)
}

/// Reloads this replica's tokens after a change, so that it holds here at once.
async fn reload(state: &AppState, now: Timestamp) {
    if let Err(e) = state.auth.reload(state.store.as_ref(), now).await {
        tracing::warn!(error = %e, "cannot reload the API tokens; the periodic reload will");
    }
}

/// Makes a token; its secret is in the answer and nowhere else.
pub async fn create_token(
    state: &AppState,
    name: &str,
    roles: &[String],
    actor: &str,
    now: Timestamp,
) -> Result<CreatedToken, ServiceError> {
    tokens::check_name(name).map_err(token_refused)?;
    let roles = tokens::parse_roles(roles).map_err(token_refused)?;
    if state.auth.is_config_token(name) {
        return Err(token_refused(TokenError::ConfigName(name.to_owned())));
    }
    let issued = tokens::issue(name, &roles, actor);
    if !state.store.create_token(&issued.token, now).await? {
        return Err(ServiceError::Conflict(format!(
            "a live token is named `{name}`: revoke it first, or choose another name"
        )));
    }
    reload(state, now).await;
    tracing::info!(token = name, by = %actor, "API token created");
    record_audit(
        state,
        actor,
        "token.created",
        None,
        serde_json::json!({"name": name, "roles": issued.token.roles}),
    )
    .await;
    Ok(CreatedToken {
        name: name.to_owned(),
        roles: issued.token.roles,
        token: issued.secret,
    })
}

/// Revokes a stored token; the configuration's cannot be revoked here.
pub async fn revoke_token(
    state: &AppState,
    name: &str,
    actor: &str,
    now: Timestamp,
) -> Result<(), ServiceError> {
    if state.auth.is_config_token(name) {
        return Err(ServiceError::Conflict(format!(
            "`{name}` is a token of the configuration file: remove it there and restart the \
             service to revoke it"
        )));
    }
    if !state.store.revoke_token(name, actor, now).await? {
        return Err(ServiceError::NotFound(format!(
            "no live token named `{name}`"
        )));
    }
    reload(state, now).await;
    tracing::info!(token = name, by = %actor, "API token revoked");
    record_audit(
        state,
        actor,
        "token.revoked",
        None,
        serde_json::json!({"name": name}),
    )
    .await;
    Ok(())
}

pub async fn users(state: &AppState) -> Result<Vec<UserView>, ServiceError> {
    Ok(state
        .store
        .users()
        .await?
        .into_iter()
        .map(UserView::from)
        .collect())
}

/// The roles of a console user, as typed.
fn user_roles(raw: &[String]) -> Result<Vec<String>, ServiceError> {
    let roles: Vec<Role> = tokens::parse_roles(raw).map_err(token_refused)?;
    check_roles(&roles).map_err(user_refused)?;
    Ok(roles.iter().map(|r| r.as_str().to_owned()).collect())
}

/// Checks a password for `username` and hashes it, away from the request threads (argon2 and
/// zxcvbn take tens of milliseconds).
async fn password_hash(password: String, username: &str) -> Result<String, ServiceError> {
    let username = username.to_owned();
    tokio::task::spawn_blocking(move || {
        check_password(&password, &username)?;
        hash_password(&password)
    })
    .await
    .map_err(|e| ServiceError::Store(crate::store::StoreError::Corrupt(e.to_string())))?
    .map_err(user_refused)
}

pub async fn create_user(
    state: &AppState,
    username: &str,
    roles: &[String],
    password: String,
    actor: &str,
    now: Timestamp,
) -> Result<UserView, ServiceError> {
    check_username(username).map_err(user_refused)?;
    let roles = user_roles(roles)?;
    if let Some(other) = state
        .store
        .users()
        .await?
        .into_iter()
        .find(|u| u.username.eq_ignore_ascii_case(username))
    {
        return Err(ServiceError::Conflict(format!(
            "user `{}` exists: names differing only in case would pass for each other",
            other.username
        )));
    }
    let hash = password_hash(password, username).await?;
    if !state
        .store
        .create_user(username, &hash, &roles, now)
        .await?
    {
        return Err(ServiceError::Conflict(format!("user `{username}` exists")));
    }
    tracing::info!(user = username, by = %actor, "console user created");
    record_audit(
        state,
        actor,
        "user.created",
        None,
        serde_json::json!({"username": username, "roles": roles}),
    )
    .await;
    Ok(UserView {
        username: username.to_owned(),
        roles,
        disabled: false,
        telegram_linked: false,
    })
}

/// Changes a user's roles, password or state; their sessions end. Refused when no enabled admin
/// would be left.
pub async fn change_user(
    state: &AppState,
    username: &str,
    edit: UserEdit,
    actor: &str,
    now: Timestamp,
) -> Result<UserView, ServiceError> {
    if edit.roles.is_none() && edit.password.is_none() && edit.disabled.is_none() {
        return Err(ServiceError::invalid(
            "roles",
            "nothing to change: give roles, password or disabled",
        ));
    }
    let roles = edit.roles.as_deref().map(user_roles).transpose()?;
    let password_hash = match edit.password {
        Some(p) => Some(password_hash(p, username).await?),
        None => None,
    };
    let change = UserChange {
        roles: roles.clone(),
        password_hash,
        disabled: edit.disabled,
    };
    match state.store.change_user(username, &change, now).await? {
        UserChanged::Changed => {}
        UserChanged::NoSuchUser => {
            return Err(ServiceError::NotFound(format!("no user `{username}`")));
        }
        UserChanged::LastAdmin => {
            return Err(ServiceError::Conflict(format!(
                "`{username}` is the last enabled admin: give another user the admin role first"
            )));
        }
    }
    tracing::info!(user = username, by = %actor, "console user changed; their sessions ended");
    record_audit(
        state,
        actor,
        "user.changed",
        None,
        serde_json::json!({
            "username": username, "roles": roles, "password": change.password_hash.is_some(),
            "disabled": edit.disabled,
        }),
    )
    .await;
    let user = state
        .store
        .user(username)
        .await?
        .ok_or_else(|| ServiceError::NotFound(format!("no user `{username}`")))?;
    Ok(user.into())
}
