//! Citizens who subscribe themselves from the status page: sign-ups waiting for their
//! confirmation, the citizen subscribers they become, and the erasure of their addresses.

use async_trait::async_trait;
use jiff::Timestamp;

use super::Result;
use crate::domain::subscriber::{ChannelKind, Language, Subscription};

/// A sign-up to store; only digests of its token and code are kept.
#[derive(Debug, Clone)]
pub struct NewSignup {
    pub token_sha256: String,
    pub channel: ChannelKind,
    pub address: String,
    /// A keyed digest of the address, to count sign-ups per address.
    pub address_key: String,
    pub language: Language,
    pub services: Vec<String>,
    pub code_sha256: Option<String>,
    pub replaces: Option<i64>,
    pub created_at: Timestamp,
    pub expires_at: Timestamp,
}

#[derive(Debug, Clone)]
pub struct Signup {
    pub id: i64,
    pub channel: ChannelKind,
    /// `None` once the sign-up is used.
    pub address: Option<String>,
    pub language: Language,
    pub services: Vec<String>,
    pub code_sha256: Option<String>,
    /// Wrong codes given so far.
    pub attempts: u32,
    pub replaces: Option<i64>,
    pub expires_at: Timestamp,
    pub used_at: Option<Timestamp>,
}

/// What a citizen subscriber is made of: written at confirmation and on each change of
/// preferences.
#[derive(Debug, Clone)]
pub struct CitizenPlan {
    pub name: String,
    pub language: Language,
    /// The ids of the status-page services followed.
    pub services: Vec<String>,
    /// One per service, with its matchers, on the citizen's channel.
    pub subscriptions: Vec<Subscription>,
}

/// What the retention task removed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CitizenPrune {
    pub signups: u64,
    pub addresses: u64,
    pub subscribers: u64,
}

#[async_trait]
pub trait CitizenStore {
    /// Stores a sign-up unless its address already has `max` sign-ups (used or not) since
    /// `since`: `None` then. Counting and storing are one transaction, so replicas taking sign-ups
    /// for one address at once stay within the limit together.
    async fn create_signup(
        &self,
        new: &NewSignup,
        since: Timestamp,
        max: u32,
    ) -> Result<Option<i64>>;
    async fn signup(&self, token_sha256: &str) -> Result<Option<Signup>>;
    /// Takes one of the sign-up's `max` tries at its code, before the code is compared, and
    /// returns how many are taken; `None` when none is left (or it is used). Concurrent guesses
    /// each take their own.
    async fn signup_attempt(&self, id: i64, max: u32) -> Result<Option<u32>>;
    /// Uses up the sign-up and subscribes its address, in one transaction: a citizen address
    /// already subscribed is updated and resumed rather than doubled, and the address the
    /// sign-up replaces is erased. `None` when the sign-up was already used or has expired.
    async fn confirm_signup(
        &self,
        id: i64,
        plan: &CitizenPlan,
        now: Timestamp,
    ) -> Result<Option<i64>>;
    /// A citizen subscriber with no address yet, and the invite a Telegram chat binds itself to
    /// it with (`token_sha256`, good until `expires_at`); when the chat binds, the contact
    /// `replaces` names is erased.
    async fn create_citizen(
        &self,
        plan: &CitizenPlan,
        token_sha256: &str,
        expires_at: Timestamp,
        replaces: Option<i64>,
        now: Timestamp,
    ) -> Result<i64>;
    /// Rewrites a citizen's language, services and subscriptions; `false` when there is no such
    /// citizen.
    async fn set_citizen(&self, subscriber_id: i64, plan: &CitizenPlan) -> Result<bool>;
    /// Removes an address and its trace in past deliveries (pending ones are cancelled); a
    /// citizen left with no address goes too. `false` when there was no such address.
    async fn erase_address(&self, address_id: i64) -> Result<bool>;
    /// Clears the address of expired sign-ups and deletes those created before `counted_since`
    /// (until then they count towards the per-address limit); erases the addresses of citizens
    /// who unsubscribed (or that were found gone) before `unsubscribed_before`, and deletes
    /// citizens who never bound an address by `unbound_before`.
    async fn prune_citizens(
        &self,
        now: Timestamp,
        counted_since: Timestamp,
        unsubscribed_before: Timestamp,
        unbound_before: Timestamp,
    ) -> Result<CitizenPrune>;
}
