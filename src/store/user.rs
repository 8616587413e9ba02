//! Console users and their sessions.

use async_trait::async_trait;
use jiff::Timestamp;

use super::Result;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserRow {
    pub id: i64,
    pub username: String,
    pub password_hash: String,
    pub roles: Vec<String>,
    pub disabled: bool,
    /// The linked Telegram account's user id.
    pub telegram_user: Option<String>,
    /// Failed logins before this moment no longer count for this user's name.
    pub unlocked_at: Option<Timestamp>,
}

/// What to change about a user; `None` leaves it as it is.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UserChange {
    pub roles: Option<Vec<String>>,
    pub password_hash: Option<String>,
    pub disabled: Option<bool>,
}

/// What [`UserStore::change_user`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UserChanged {
    /// Changed; the user's sessions ended.
    Changed,
    NoSuchUser,
    /// Refused: no enabled user would hold the admin role any more.
    LastAdmin,
}

/// A live session and whose it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionRow {
    pub username: String,
    pub roles: Vec<String>,
    pub csrf: String,
    pub expires_at: Timestamp,
}

#[async_trait]
pub trait UserStore {
    /// `false` when the username is taken.
    async fn create_user(
        &self,
        username: &str,
        password_hash: &str,
        roles: &[String],
        now: Timestamp,
    ) -> Result<bool>;
    /// Sets a new password and roles; `false` when there is no such user. Ends their sessions.
    async fn update_user(
        &self,
        username: &str,
        password_hash: &str,
        roles: &[String],
    ) -> Result<bool>;
    /// Changes a user's roles, password or state and ends their sessions, unless that leaves no
    /// enabled admin where there was one (checked in the same transaction as the change).
    async fn change_user(
        &self,
        username: &str,
        change: &UserChange,
        now: Timestamp,
    ) -> Result<UserChanged>;
    async fn user(&self, username: &str) -> Result<Option<UserRow>>;
    /// Forgives the failed logins of `username` so far; `false` when there is no such user.
    async fn unlock_user(&self, username: &str, now: Timestamp) -> Result<bool>;
    /// Links a Telegram account to a user (unlinking it from anyone else); `None` unlinks.
    async fn link_telegram(&self, user_id: i64, telegram_user: Option<&str>) -> Result<bool>;
    /// The enabled user a Telegram account is linked to.
    async fn user_by_telegram(&self, telegram_user: &str) -> Result<Option<UserRow>>;
    async fn users(&self) -> Result<Vec<UserRow>>;
    async fn create_session(
        &self,
        token_sha256: &str,
        user_id: i64,
        csrf: &str,
        now: Timestamp,
        expires_at: Timestamp,
    ) -> Result<()>;
    /// The session if it exists, has not expired, and its user is not disabled.
    async fn session(&self, token_sha256: &str, now: Timestamp) -> Result<Option<SessionRow>>;
    async fn delete_session(&self, token_sha256: &str) -> Result<()>;
}
