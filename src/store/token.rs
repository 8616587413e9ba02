//! API tokens kept in the store: created while the service runs (the first start, the command
//! line, the API, the console) beside those of the configuration, and revoked without a restart.
//! Only the SHA-256 of a secret is stored; a revoked token stays for the audit trail, and its name
//! may be given to a new one.

use async_trait::async_trait;
use jiff::Timestamp;

use super::Result;

/// A token as stored, live or revoked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenRow {
    pub id: i64,
    pub name: String,
    pub roles: Vec<String>,
    /// Hex SHA-256 of the secret.
    pub secret_sha256: String,
    pub created_at: Timestamp,
    pub created_by: String,
    pub revoked_at: Option<Timestamp>,
    pub revoked_by: Option<String>,
    /// When a replica last saw it used (written every few seconds, not on every request).
    pub last_used_at: Option<Timestamp>,
}

/// A token to store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewToken {
    pub name: String,
    pub roles: Vec<String>,
    pub secret_sha256: String,
    pub created_by: String,
}

#[async_trait]
pub trait TokenStore {
    /// Stores a token; `false` when a live token already has its name.
    async fn create_token(&self, token: &NewToken, now: Timestamp) -> Result<bool>;
    /// Stores every token of `tokens`, all or none, and only if the store never held a token
    /// (revoked ones count): `false` otherwise, or when another process stored tokens first
    /// (replicas starting together).
    async fn create_first_tokens(&self, tokens: &[NewToken], now: Timestamp) -> Result<bool>;
    /// Every token, live and revoked, by name and then newest first.
    async fn tokens(&self) -> Result<Vec<TokenRow>>;
    /// The tokens that are not revoked.
    async fn live_tokens(&self) -> Result<Vec<TokenRow>>;
    /// Revokes the live token named `name`; `false` when there is none.
    async fn revoke_token(&self, name: &str, by: &str, now: Timestamp) -> Result<bool>;
    /// Notes that the tokens `ids` were used by `now`.
    async fn mark_tokens_used(&self, ids: &[i64], now: Timestamp) -> Result<()>;
}
