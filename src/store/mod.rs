//! Persistence. The only module that speaks SQL.
//!
//! [`Store`] holds the operations the rest of the service needs, in domain terms; [`Tx`] is a
//! write transaction for the stages that must change several rows at once (the incident engine,
//! the router, manual incident updates). SQLite is the embedded default
//! ([`sqlite::SqliteStore`]).

mod chat;
mod chat_sql;
mod citizen;
mod citizen_sql;
mod draft;
mod draft_sql;
pub mod postgres;
mod probe;
mod probe_sql;
mod sql;
pub mod sqlite;
mod user;
mod user_sql;

pub use chat::{ChatBinding, ChatStore, Redeemed};
pub use citizen::{CitizenPlan, CitizenPrune, CitizenStore, NewSignup, Signup};
pub use draft::{
    AuditEntry, Decided, Decision, Draft, DraftPart, DraftStore, NewAudit, NewDraftPart, PartEdit,
};
pub use probe::{NewSilence, Observation, ProbeStore, SilenceRow, Verdict};
pub use user::{SessionRow, UserRow, UserStore};

use std::collections::BTreeMap;

use async_trait::async_trait;
use jiff::Timestamp;
use serde::Serialize;

use crate::domain::finding::FINDING_ANNOTATION;
use crate::domain::incident::Announced;
use crate::domain::subscriber::{ChannelKind, Language, Subscription, ValidSubscriber};
use crate::domain::{Finding, IncidentStatus, Labels, Severity, Signal, Source, UpdateKind};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database unavailable: {0}")]
    Unavailable(String),
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
    #[error("migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("stored data is corrupt: {0}")]
    Corrupt(String),
    #[error("conflict: {0}")]
    Conflict(String),
}

impl StoreError {
    /// Whether retrying later can help (the database is busy, down or unreachable), as opposed to
    /// a fault in the request or the data.
    pub fn is_unavailable(&self) -> bool {
        match self {
            StoreError::Unavailable(_) => true,
            StoreError::Database(e) => {
                matches!(
                    e,
                    sqlx::Error::Io(_)
                        | sqlx::Error::PoolTimedOut
                        | sqlx::Error::PoolClosed
                        | sqlx::Error::WorkerCrashed
                        | sqlx::Error::Tls(_)
                ) || e
                    .as_database_error()
                    .and_then(|d| d.code())
                    .is_some_and(|c| unavailable_code(&c))
            }
            _ => false,
        }
    }
}

/// Database error codes that mean "try again later". SQLite reports extended result codes
/// (the primary code is the low byte): BUSY, LOCKED, READONLY, IOERR, FULL, CANTOPEN, PROTOCOL.
/// PostgreSQL reports SQLSTATEs: connection exceptions, insufficient resources, operator
/// intervention, system errors.
fn unavailable_code(code: &str) -> bool {
    // SQLSTATEs are always five characters; SQLite's codes are numbers below 10,000.
    if code.len() == 5 {
        return ["08", "53", "57P", "58"]
            .iter()
            .any(|class| code.starts_with(class));
    }
    code.parse::<i32>()
        .is_ok_and(|n| matches!(n & 0xff, 5 | 6 | 8 | 10 | 13 | 14 | 15))
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// A signal as stored, with its arrival time.
#[derive(Debug, Clone)]
pub struct StoredSignal {
    pub id: i64,
    pub received_at: Timestamp,
    pub signal: Signal,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum IncidentOrigin {
    Signals,
    Manual,
}

impl IncidentOrigin {
    pub fn as_str(self) -> &'static str {
        match self {
            IncidentOrigin::Signals => "signals",
            IncidentOrigin::Manual => "manual",
        }
    }
}

#[derive(Debug, Clone)]
pub struct IncidentRow {
    pub id: i64,
    pub group_key: String,
    pub title: String,
    pub status: IncidentStatus,
    pub severity: Severity,
    pub origin: IncidentOrigin,
    /// Labels given by hand (manual incidents); signal incidents carry theirs on their alerts.
    pub labels: Labels,
    pub opened_at: Timestamp,
    pub resolved_at: Option<Timestamp>,
    pub announced: Option<Announced>,
    pub last_announced_at: Option<Timestamp>,
    pub eval_at: Option<Timestamp>,
    pub pending_since: Option<Timestamp>,
    pub last_seq: i64,
    /// The maintenance window or silence that kept the incident's updates from being sent.
    pub maintenance: Option<String>,
}

#[derive(Debug, Clone)]
pub struct NewIncident {
    pub group_key: String,
    pub title: String,
    pub status: IncidentStatus,
    pub severity: Severity,
    pub origin: IncidentOrigin,
    pub labels: Labels,
    pub opened_at: Timestamp,
    pub eval_at: Option<Timestamp>,
    pub pending_since: Option<Timestamp>,
}

/// The state of one fingerprint within one incident.
#[derive(Debug, Clone)]
pub struct AlertRow {
    /// 0 until the row is saved.
    pub id: i64,
    pub incident_id: i64,
    pub fingerprint: String,
    pub source: Source,
    pub firing: bool,
    pub severity: Severity,
    pub peak_severity: Severity,
    pub service: String,
    pub component: Option<String>,
    pub labels: Labels,
    pub annotations: Labels,
    pub summary: String,
    pub url: Option<String>,
    pub starts_at: Option<Timestamp>,
    pub first_seen_at: Timestamp,
    pub last_seen_at: Timestamp,
    pub resolved_at: Option<Timestamp>,
}

/// A signal as an update described it, frozen with the update.
#[derive(Debug, Clone, PartialEq, Serialize, serde::Deserialize)]
pub struct SignalSnapshot {
    pub service: String,
    pub component: Option<String>,
    pub summary: String,
    pub description: Option<String>,
    pub firing: bool,
    pub severity: Severity,
    pub starts_at: Option<Timestamp>,
    pub url: Option<String>,
    /// A probe's finding, which templates put into words (absent from other signals, and from
    /// updates written before findings were kept).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finding: Option<Finding>,
}

impl AlertRow {
    /// What the probe behind this signal found; a monitor's annotations are not read as one.
    pub fn finding(&self) -> Option<Finding> {
        if self.source != Source::Probe {
            return None;
        }
        self.annotations
            .get(FINDING_ANNOTATION)
            .and_then(|json| Finding::from_annotation(json))
    }
}

impl SignalSnapshot {
    /// The incident's signals as they are now, firing ones first, worst first.
    pub fn of(alerts: &[AlertRow]) -> Vec<SignalSnapshot> {
        let mut list: Vec<&AlertRow> = alerts.iter().collect();
        list.sort_by_key(|a| (!a.firing, std::cmp::Reverse(a.peak_severity)));
        list.into_iter()
            .map(|a| SignalSnapshot {
                service: a.service.clone(),
                component: a.component.clone(),
                summary: a.summary.clone(),
                description: a.annotations.get("description").cloned(),
                firing: a.firing,
                severity: a.peak_severity,
                starts_at: a.starts_at,
                url: a.url.clone(),
                finding: a.finding(),
            })
            .collect()
    }
}

#[derive(Debug, Clone)]
pub struct UpdateRow {
    pub id: i64,
    pub incident_id: i64,
    pub seq: i64,
    pub kind: UpdateKind,
    pub status: IncidentStatus,
    pub severity: Severity,
    pub title: String,
    pub signals: Vec<SignalSnapshot>,
    pub body: Option<String>,
    pub author: Option<String>,
    pub created_at: Timestamp,
    pub origin_at: Timestamp,
    pub silent: bool,
    pub routed_at: Option<Timestamp>,
}

#[derive(Debug, Clone)]
pub struct NewUpdate {
    pub incident_id: i64,
    pub seq: i64,
    pub kind: UpdateKind,
    pub status: IncidentStatus,
    pub severity: Severity,
    pub title: String,
    pub signals: Vec<SignalSnapshot>,
    pub body: Option<String>,
    pub author: Option<String>,
    pub created_at: Timestamp,
    pub origin_at: Timestamp,
    /// Kept for the history but never routed (an incident closed before anyone was told).
    pub silent: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum SubscriberOrigin {
    Api,
    Config,
    /// A citizen who subscribed from the status page.
    Citizen,
}

impl SubscriberOrigin {
    pub fn as_str(self) -> &'static str {
        match self {
            SubscriberOrigin::Api => "api",
            SubscriberOrigin::Config => "config",
            SubscriberOrigin::Citizen => "citizen",
        }
    }
}

/// Who put an address there.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum AddressOrigin {
    /// The API or the configuration file; the file keeps its own in step.
    Admin,
    /// A chat that bound itself with an invite; only the chat or an administrator removes it.
    Chat,
}

impl AddressOrigin {
    pub fn as_str(self) -> &'static str {
        match self {
            AddressOrigin::Admin => "admin",
            AddressOrigin::Chat => "chat",
        }
    }
}

/// What a chat said about one service: follow it beyond the subscriptions, or mute it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ServiceMode {
    Follow,
    Mute,
}

impl ServiceMode {
    pub fn as_str(self) -> &'static str {
        match self {
            ServiceMode::Follow => "follow",
            ServiceMode::Mute => "mute",
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct AddressRow {
    pub id: i64,
    pub channel: ChannelKind,
    pub address: String,
    pub unsubscribed_at: Option<Timestamp>,
    pub gone_at: Option<Timestamp>,
    pub gone_reason: Option<String>,
    pub origin: AddressOrigin,
    /// The chat's own language, over its subscriber's.
    pub language: Option<Language>,
    /// Services the chat follows or muted itself.
    pub services: BTreeMap<String, ServiceMode>,
}

impl AddressRow {
    pub fn is_active(&self) -> bool {
        self.unsubscribed_at.is_none() && self.gone_at.is_none()
    }
}

#[derive(Debug, Clone)]
pub struct AddressOwner {
    pub address: AddressRow,
    pub subscriber_id: i64,
    pub subscriber_name: String,
    pub language: Language,
}

#[derive(Debug, Clone)]
pub struct SubscriberRow {
    pub id: i64,
    pub name: String,
    pub language: Language,
    pub audience: String,
    pub origin: SubscriberOrigin,
    pub created_at: Timestamp,
    pub addresses: Vec<AddressRow>,
    pub subscriptions: Vec<Subscription>,
    /// For citizens: the ids of the status-page services they follow.
    pub citizen_services: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeleteOutcome {
    Deleted { cancelled_deliveries: u64 },
    NotFound,
    ManagedByConfig,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SyncReport {
    pub created: u64,
    pub updated: u64,
    pub removed: u64,
}

#[derive(Debug, Clone)]
pub struct NewMessage {
    pub update_id: i64,
    pub channel: ChannelKind,
    pub language: String,
    pub audience: String,
    pub subject: Option<String>,
    pub body: String,
    pub html: Option<String>,
    pub created_at: Timestamp,
}

#[derive(Debug, Clone)]
pub struct MessageRow {
    pub id: i64,
    pub update_id: i64,
    pub channel: ChannelKind,
    pub language: String,
    pub subject: Option<String>,
    pub body: String,
    pub html: Option<String>,
}

#[derive(Debug, Clone)]
pub struct NewDelivery {
    pub message_id: i64,
    pub update_id: i64,
    pub incident_id: i64,
    pub address_id: i64,
    pub subscriber_name: String,
    pub channel: ChannelKind,
    pub recipient: String,
    pub origin_at: Timestamp,
    pub created_at: Timestamp,
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

/// What happened to one claimed delivery. `attempts` is the value its claim gave it: an
/// outcome from an older claim of the same row is ignored.
#[derive(Debug, Clone, PartialEq)]
pub struct Outcome {
    pub delivery: i64,
    pub attempts: u32,
    pub outcome: DeliveryOutcome,
}

#[derive(Debug, Clone, Serialize)]
pub struct DeliveryRow {
    pub id: i64,
    pub update_seq: i64,
    pub channel: ChannelKind,
    pub recipient: String,
    /// The recipient is a citizen who signed up on the status page (personal data).
    pub citizen: bool,
    pub subscriber: String,
    pub state: String,
    pub attempts: i64,
    pub last_error: Option<String>,
    pub provider_id: Option<String>,
    pub provider: Option<String>,
    pub segments: Option<i64>,
    /// The last delivery report: the provider's status, its error code, when it came.
    pub report_status: Option<String>,
    pub report_error: Option<String>,
    pub report_at: Option<Timestamp>,
    pub created_at: Timestamp,
    pub sent_at: Option<Timestamp>,
    pub next_attempt_at: Option<Timestamp>,
}

#[derive(Debug, Clone, Default)]
pub struct IncidentFilter {
    /// Only open (true) or only resolved (false) incidents.
    pub open: Option<bool>,
    pub limit: u32,
    /// Incidents with an id below this one (for paging back in time).
    pub before: Option<i64>,
}

/// Figures for `/metrics`, read at scrape time.
#[derive(Debug, Clone, Default)]
pub struct Counts {
    pub open_incidents: i64,
    /// (channel, state) → number of deliveries.
    pub deliveries: BTreeMap<(String, String), i64>,
    pub unprocessed_signals: i64,
}

/// A wake-up other replicas hear (PostgreSQL `NOTIFY`); in-process wake-ups need none.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Topic {
    /// Signals or manual updates were stored: the leader's pipeline has work.
    Signals,
    /// Deliveries became due: every dispatcher may claim.
    Deliveries,
    /// A leader stepped down: another may take over now.
    Leader,
}

impl Topic {
    pub fn as_str(self) -> &'static str {
        match self {
            Topic::Signals => "signals",
            Topic::Deliveries => "deliveries",
            Topic::Leader => "leader",
        }
    }

    pub fn parse(s: &str) -> Option<Topic> {
        match s {
            "signals" => Some(Topic::Signals),
            "deliveries" => Some(Topic::Deliveries),
            "leader" => Some(Topic::Leader),
            _ => None,
        }
    }
}

/// Wake-ups from other replicas, as they arrive.
pub type Wakeups = tokio::sync::mpsc::Receiver<Topic>;

/// What [`Store::take_tokens`] granted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tokens {
    pub granted: u32,
    /// After this grant, how long until the next whole token (for whoever asks first).
    pub next_in: std::time::Duration,
}

/// What [`Store::prune`] deleted.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PruneReport {
    pub signals: u64,
    pub deliveries: u64,
}

#[async_trait]
pub trait Store:
    ChatStore + CitizenStore + DraftStore + ProbeStore + UserStore + Send + Sync + 'static
{
    async fn migrate(&self) -> Result<()>;
    async fn ping(&self) -> Result<()>;
    async fn close(&self);

    /// Returns the stored value for `key`, storing `value` first if there is none.
    async fn setting_or_insert(&self, key: &str, value: &str) -> Result<String>;

    /// Stores signals in one transaction and returns their ids in order. Durable on return.
    async fn insert_signals(&self, signals: &[(Timestamp, Signal)]) -> Result<Vec<i64>>;

    async fn begin(&self) -> Result<Box<dyn Tx>>;

    // Outbox.
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
    /// Gives back deliveries `owner` claimed but did not send (shutdown).
    async fn release_leases(&self, owner: &str) -> Result<u64>;
    /// Extends the lease of deliveries `owner` still holds (queued, in flight, or sent with the
    /// outcome not yet written), so that nobody takes them over while this worker lives.
    async fn renew_leases(&self, owner: &str, ids: &[i64], lease_until: Timestamp) -> Result<u64>;
    /// Makes deliveries whose lease expired claimable again, except those of `live_owner`
    /// (the caller, who knows its own are not abandoned).
    async fn reclaim_expired_leases(&self, now: Timestamp, live_owner: &str) -> Result<u64>;
    /// When the next pending delivery of `channel` becomes due.
    async fn next_attempt_at(&self, channel: ChannelKind) -> Result<Option<Timestamp>>;

    // Reads for the API.
    async fn list_incidents(&self, filter: &IncidentFilter) -> Result<Vec<IncidentRow>>;
    async fn incident(&self, id: i64) -> Result<Option<IncidentRow>>;
    async fn incident_updates(&self, incident_id: i64) -> Result<Vec<UpdateRow>>;
    async fn incident_alerts(&self, incident_id: i64) -> Result<Vec<AlertRow>>;
    async fn incident_deliveries(&self, incident_id: i64) -> Result<Vec<DeliveryRow>>;
    async fn counts(&self) -> Result<Counts>;
    /// Deletes processed signals received before `before`, and finished deliveries of resolved
    /// incidents created before it, in small batches.
    async fn prune(&self, before: Timestamp) -> Result<PruneReport>;

    // Several replicas.
    /// Takes or renews the lease on a singleton duty until `until`; true while `holder` has it.
    /// A lease held by someone else is taken only once it has run out at `now`; on SQLite,
    /// where the lock file proves the caller is the only process, at once.
    async fn lead(
        &self,
        duty: &str,
        holder: &str,
        now: Timestamp,
        until: Timestamp,
    ) -> Result<bool>;
    /// Gives a duty up, so that another replica takes it at once.
    async fn resign(&self, duty: &str, holder: &str) -> Result<()>;
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
    /// delivery has that provider and id. A final word (delivered, undelivered, failed, …) is
    /// not overwritten by a late intermediate one (sent, queued).
    async fn record_report(&self, report: &DeliveryReport) -> Result<bool>;
    /// Tells the other replicas (no-op on SQLite, where there are none).
    async fn announce(&self, topic: Topic);
    /// Wake-ups from the other replicas; `None` when there can be none (SQLite).
    async fn wakeups(&self) -> Result<Option<Wakeups>>;

    // Subscribers.
    async fn subscribers(&self) -> Result<Vec<SubscriberRow>>;
    async fn subscriber(&self, id: i64) -> Result<Option<SubscriberRow>>;
    async fn create_subscriber(&self, s: &ValidSubscriber, now: Timestamp) -> Result<i64>;
    async fn delete_subscriber(&self, id: i64) -> Result<DeleteOutcome>;
    /// Makes the config-managed subscribers exactly `wanted`, keyed by name. Unsubscribed and
    /// gone marks of addresses that stay are kept.
    async fn sync_config_subscribers(
        &self,
        wanted: &[ValidSubscriber],
        now: Timestamp,
    ) -> Result<SyncReport>;
    /// An address with its subscriber's name and language.
    async fn address(&self, id: i64) -> Result<Option<AddressOwner>>;
    /// Marks an address unsubscribed and cancels its pending deliveries. `false` if unknown.
    async fn unsubscribe_address(&self, id: i64, now: Timestamp) -> Result<bool>;
}

/// A write transaction. Dropping it without [`Tx::commit`] rolls back.
#[async_trait]
pub trait Tx: Send {
    async fn commit(self: Box<Self>) -> Result<()>;

    // Incident engine.
    async fn unprocessed_signals(&mut self, limit: u32) -> Result<Vec<StoredSignal>>;
    /// Marks signals processed, all with the same outcome and incident.
    async fn mark_signals(
        &mut self,
        ids: &[i64],
        now: Timestamp,
        outcome: &str,
        incident_id: Option<i64>,
    ) -> Result<()>;
    /// The alerts of these fingerprints that belong to open incidents.
    async fn active_alerts(&mut self, fingerprints: &[String]) -> Result<Vec<AlertRow>>;
    /// Moves the last-seen time of alerts that were seen again unchanged.
    async fn touch_alerts(&mut self, ids: &[i64], at: Timestamp) -> Result<()>;
    async fn open_incident_by_key(&mut self, key: &str) -> Result<Option<IncidentRow>>;
    async fn incident(&mut self, id: i64) -> Result<Option<IncidentRow>>;
    async fn insert_incident(&mut self, new: &NewIncident) -> Result<IncidentRow>;
    async fn save_incident(&mut self, incident: &IncidentRow) -> Result<()>;
    /// Inserts or replaces the alert of (incident, fingerprint).
    async fn save_alert(&mut self, alert: &AlertRow) -> Result<()>;
    async fn alerts(&mut self, incident_id: i64) -> Result<Vec<AlertRow>>;
    async fn due_incidents(&mut self, now: Timestamp, limit: u32) -> Result<Vec<i64>>;
    async fn next_eval_at(&mut self) -> Result<Option<Timestamp>>;
    async fn insert_update(&mut self, new: &NewUpdate) -> Result<UpdateRow>;

    // Router.
    async fn unrouted_updates(&mut self, limit: u32) -> Result<Vec<UpdateRow>>;
    /// A number that changes whenever subscribers, subscriptions or addresses change.
    async fn subscribers_version(&mut self) -> Result<i64>;
    async fn subscribers(&mut self) -> Result<Vec<SubscriberRow>>;
    async fn insert_message(&mut self, new: &NewMessage) -> Result<i64>;
    async fn insert_deliveries(&mut self, new: &[NewDelivery]) -> Result<u64>;
    /// Holds a message for the communications office instead of sending it: adds it as a part
    /// of the draft for its update and audience (created with the first part, which also
    /// supersedes the incident's earlier undecided drafts for that audience). Returns the draft.
    async fn hold_for_approval(&mut self, part: &NewDraftPart) -> Result<i64>;
    async fn mark_routed(&mut self, update_id: i64, now: Timestamp) -> Result<()>;
    /// Records that a maintenance window or silence kept an update of the incident quiet.
    /// `None` once an update goes out again.
    async fn set_maintenance(&mut self, incident_id: i64, window: Option<&str>) -> Result<()>;
    /// Addresses (id, channel) that were sent an earlier update of the incident: they hear every
    /// later update, whatever the signals' labels have become.
    async fn notified_addresses(&mut self, incident_id: i64) -> Result<Vec<(i64, ChannelKind)>>;
}

/// Opens the store named by `url`.
/// Opens the store named by `store.url`: `sqlite://…` or `postgres://…`.
pub async fn open(
    settings: &crate::settings::StoreSettings,
    password: Option<&crate::settings::Secret>,
) -> Result<std::sync::Arc<dyn Store>> {
    sqlx::any::install_default_drivers();
    let store = if settings.url.starts_with("sqlite://") {
        sqlite::open(settings).await?
    } else {
        postgres::open(settings, password).await?
    };
    Ok(std::sync::Arc::new(store))
}

#[cfg(test)]
mod tests {
    use super::unavailable_code;

    #[test]
    fn extended_sqlite_codes_and_sqlstates() {
        assert!(unavailable_code("5")); // SQLITE_BUSY
        assert!(unavailable_code("517")); // SQLITE_BUSY_SNAPSHOT
        assert!(unavailable_code("773")); // SQLITE_BUSY_TIMEOUT
        assert!(unavailable_code("778")); // SQLITE_IOERR_WRITE
        assert!(unavailable_code("13")); // SQLITE_FULL
        assert!(unavailable_code("1032")); // SQLITE_READONLY_DBMOVED
        assert!(!unavailable_code("2067")); // SQLITE_CONSTRAINT_UNIQUE
        assert!(!unavailable_code("19")); // SQLITE_CONSTRAINT
        assert!(unavailable_code("08006")); // connection failure
        assert!(unavailable_code("57P01")); // admin shutdown
        assert!(!unavailable_code("23505")); // unique violation
    }
}
