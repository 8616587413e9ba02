//! What the outbox needs from the store: deliveries claimed under a lease and the outcome of each
//! send written back, the rendered messages they carry, the token buckets that pace a channel
//! across replicas, and the providers' delivery reports. The dispatcher, the channels and the
//! delivery-report endpoints hold this trait rather than the whole store.

use async_trait::async_trait;
use jiff::Timestamp;

use super::{Announce, Result};
use crate::domain::subscriber::ChannelKind;
use crate::render::Buttons;

#[derive(Debug, Clone)]
pub struct MessageRow {
    pub id: i64,
    pub update_id: i64,
    pub channel: ChannelKind,
    pub language: String,
    /// Whom it speaks to: `public`, an internal audience (a desk's), or `approval:<draft>`.
    pub audience: String,
    pub subject: Option<String>,
    pub body: String,
    pub html: Option<String>,
    /// Shown under the text where the channel can (a draft's notice in Telegram).
    pub buttons: Option<Buttons>,
    /// What the update it carries does: a resolution asks no desk to acknowledge it.
    pub update_kind: crate::domain::UpdateKind,
}

/// A delivery claimed by a worker, with the lease it holds.
#[derive(Debug, Clone)]
pub struct ClaimedDelivery {
    pub id: i64,
    pub message_id: i64,
    pub incident_id: i64,
    pub channel: ChannelKind,
    pub recipient: String,
    pub address_id: Option<i64>,
    pub subscriber_name: String,
    /// Attempts including this one.
    pub attempts: u32,
    pub origin_at: Timestamp,
    /// The draft this delivery tells the communications office about: a notice, not a message
    /// to a subscriber, so it has no address row and no unsubscribe or preferences link.
    pub draft_id: Option<i64>,
    /// The row of an incident's affected list this delivery tells: no subscriber, no links to
    /// leave, and its own `detail` filled into the message.
    pub affected_id: Option<i64>,
    pub detail: Option<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum DeliveryOutcome {
    Sent(Receipt),
    Retry {
        at: Timestamp,
        error: String,
    },
    Failed {
        error: String,
    },
    Gone {
        error: String,
    },
    /// Claimed but never tried (it could not start in time): back to pending, the attempt
    /// not counted.
    Released,
    /// Tried, and the provider asked to wait (a rate limit): pending again from `at`, the
    /// attempt not counted.
    Deferred {
        at: Timestamp,
    },
    /// Held back because the channel is paused (its credentials were refused): pending again,
    /// the attempt not counted, the reason kept for whoever looks at the delivery.
    Paused {
        error: String,
    },
}

/// What the provider said when it accepted a message.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Receipt {
    /// The provider's id for the message (a delivery report names it).
    pub provider_id: Option<String>,
    /// Which of the channel's providers took it, when there are several (SMS).
    pub provider: Option<String>,
    /// What it cost, in SMS segments.
    pub segments: Option<u32>,
}

/// What [`OutboxStore::recipients_reached`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Reached {
    /// Counted only when `recipient` is not among them (0 when it is: it needs no room).
    pub people: u64,
    pub includes_recipient: bool,
    /// The earliest of each person's latest send in the window: read only when the limit is
    /// reached (`people >= limit` and `recipient` not among them), `None` otherwise.
    pub earliest: Option<Timestamp>,
}

/// A delivery report from a provider, about a message it accepted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeliveryReport {
    pub provider: String,
    pub provider_id: String,
    /// The provider's word, lower-cased: `delivered`, `undelivered`, `failed`, `sent`, …
    pub status: String,
    pub error: Option<String>,
    pub at: Timestamp,
}

/// A delivery a provider took whose report is not a final word yet: what a channel that reads
/// statuses back (App IO) asks the provider about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unsettled {
    pub id: i64,
    pub recipient: String,
    pub provider_id: String,
    pub sent_at: Timestamp,
}

/// What happened to one claimed delivery. `attempts` is the value its claim gave it: an
/// outcome from an older claim of the same row is ignored.
#[derive(Debug, Clone, PartialEq)]
pub struct Outcome {
    pub delivery: i64,
    pub attempts: u32,
    pub outcome: DeliveryOutcome,
}

/// What [`OutboxStore::take_tokens`] granted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tokens {
    pub granted: u32,
    /// After this grant, how long until the next whole token (for whoever asks first).
    pub next_in: std::time::Duration,
}

#[async_trait]
pub trait OutboxStore: Announce + Send + Sync {
    async fn claim_deliveries(
        &self,
        channel: ChannelKind,
        limit: u32,
        now: Timestamp,
        lease_until: Timestamp,
        owner: &str,
    ) -> Result<Vec<ClaimedDelivery>>;
    async fn message(&self, id: i64) -> Result<Option<MessageRow>>;
    /// What the provider called each message already sent about `incident_id` to `recipient`
    /// on `channel`, oldest first: the posts a social network's thread continues from.
    async fn sent_provider_ids(
        &self,
        incident_id: i64,
        channel: ChannelKind,
        recipient: &str,
    ) -> Result<Vec<String>>;
    /// Records what happened to claimed deliveries. A row no longer held by `owner` under the
    /// same claim (its lease expired and it was claimed again) is left alone.
    async fn record_outcomes(
        &self,
        owner: &str,
        outcomes: &[Outcome],
        now: Timestamp,
    ) -> Result<()>;
    /// Gives back deliveries on `channel` that `owner` claimed but did not send (shutdown).
    /// One process is one owner for every channel: each dispatcher gives back only its own, so
    /// a dispatcher that stops first never hands another's sends in flight to other replicas.
    async fn release_leases(&self, owner: &str, channel: ChannelKind) -> Result<u64>;
    /// Extends the lease of deliveries `owner` still holds (queued, in flight, or sent with the
    /// outcome not yet written), so that nobody takes them over while this worker lives; returns
    /// the ids renewed.
    async fn renew_leases(
        &self,
        owner: &str,
        ids: &[i64],
        lease_until: Timestamp,
    ) -> Result<Vec<i64>>;
    /// Makes deliveries whose lease expired claimable again, except those of `live_owner`
    /// (the caller, who knows its own are not abandoned).
    async fn reclaim_expired_leases(&self, now: Timestamp, live_owner: &str) -> Result<u64>;
    /// When the next pending delivery of `channel` becomes due.
    async fn next_attempt_at(&self, channel: ChannelKind) -> Result<Option<Timestamp>>;
    /// Takes up to `want` tokens from a bucket shared by every replica, refilled at
    /// `per_second` up to `burst`, as of `now` (which may be a moment ahead: a reservation).
    /// Returns how many were granted (possibly none) and how long after `now` the next whole
    /// token will be there.
    async fn take_tokens(
        &self,
        bucket: &str,
        want: u32,
        per_second: u32,
        burst: u32,
        now: Timestamp,
    ) -> Result<Tokens>;
    /// Records a provider's delivery report on the delivery it is about; `false` when no
    /// delivery has that provider and id. A final word (delivered, undelivered, failed, …; for
    /// a call completed, busy, no-answer, machine, …) is not overwritten by a late intermediate
    /// one (sent, queued, ringing).
    async fn record_report(&self, report: &DeliveryReport) -> Result<bool>;
    /// The people `channel` has reached since `since` (each counted once, the deliveries sent
    /// and the ones being sent that were made before `delivery_id`), whether `recipient` is one
    /// of them, and, when they are `limit` or more without `recipient`, when the first of them
    /// leaves that window: a messaging limit per rolling day. Answered with aggregates in the
    /// database, never a row per person; the people are not counted when `recipient` is one.
    async fn recipients_reached(
        &self,
        channel: ChannelKind,
        recipient: &str,
        delivery_id: i64,
        since: Timestamp,
        limit: u64,
    ) -> Result<Reached>;
    /// Records a call's progress on the delivery its callback URL names (`delivery_id`, which
    /// the URL's signed token vouches for): when that delivery was marked sent with this
    /// provider and call id, or is still being placed and its outcome not written yet (the
    /// provider's first callbacks can come before it, or the process stopped in between).
    /// `false` otherwise (another call of the same delivery, or no such delivery). A final word
    /// is kept as in [`OutboxStore::record_report`].
    async fn record_call_report(&self, delivery_id: i64, report: &DeliveryReport) -> Result<bool>;
    /// Deliveries `provider` took at or after `since` whose report is not a final word and was
    /// last written (or, without one, the delivery sent) at or before `asked_before`; the
    /// longest unasked first, at most `limit`. Recording each answer with
    /// [`OutboxStore::record_report`] moves it to the back.
    async fn unsettled(
        &self,
        provider: &str,
        since: Timestamp,
        asked_before: Timestamp,
        limit: u32,
    ) -> Result<Vec<Unsettled>>;
    /// Notes that `provider` was asked about a delivery at `at` and said nothing that could be
    /// recorded (no answer, an error): it moves to the back of [`OutboxStore::unsettled`], its
    /// status unchanged. `false` when no unsettled delivery has this id.
    async fn report_asked(&self, provider: &str, provider_id: &str, at: Timestamp) -> Result<bool>;
}
