//! Persistence. The only module that speaks SQL.
//!
//! The store is split by who uses it: each user holds the trait of its part, in domain terms
//! ([`OutboxStore`] for the dispatchers and channels, [`SubscriberStore`], [`IncidentReads`] for
//! the API and pages, [`ClusterStore`] for leadership, [`AckStore`] for the desks'
//! acknowledgements, and the chat, citizen, draft, probe, token and user stores), and [`Store`] is their sum plus what only the service as a whole does. [`Tx`] is
//! the write transaction of the stages that must change several rows at once (the incident
//! engine, the router, manual incident updates). Each trait's SQL sits beside it in `<part>_sql.rs`,
//! written once for SQLite (the embedded default) and PostgreSQL.

mod ack;
mod ack_sql;
mod affected;
mod affected_sql;
mod backup;
mod chat;
mod chat_sql;
mod citizen;
mod citizen_sql;
mod cluster;
mod cluster_sql;
mod db;
mod dialect;
mod draft;
mod draft_sql;
mod escalation;
mod escalation_sql;
mod fanout;
mod fanout_sql;
mod heartbeat;
mod heartbeat_def;
mod heartbeat_def_sql;
mod heartbeat_sql;
mod incidents;
mod incidents_sql;
mod lite;
mod outbox;
mod outbox_sql;
pub mod postgres;
mod probe;
mod probe_sql;
mod rows;
mod sql;
pub mod sqlite;
mod subscriber;
mod subscriber_edit_sql;
mod subscriber_sql;
mod token;
mod token_sql;
mod tx;
mod tx_sql;
mod user;
mod user_sql;

pub use ack::{AckRow, AckStore, Acknowledged, DeskMessage, LEDGER_PAGE, LedgerRow};
pub use affected::{AffectedCounts, AffectedRow, AffectedStore, AffectedWork, Merged, NewAffected};
pub use backup::{BackupReport, backup_sqlite};
pub use chat::{ChatBinding, ChatStore, Redeemed};
pub use citizen::{CitizenPlan, CitizenPrune, CitizenStore, NewSignup, Signup};
pub use cluster::ClusterStore;
pub use draft::{
    AuditEntry, Decided, Decision, Draft, DraftNotice, DraftPart, DraftStore, NewAudit,
    NewDraftPart, PartEdit,
};
pub use escalation::{
    EscalationRow, EscalationState, EscalationStore, NewEscalationStep, NextEscalation,
};
pub use fanout::{CitizenGroup, CitizenPart, FanoutStore};
pub use heartbeat::{Beat, HeartbeatRow, HeartbeatStore};
pub use heartbeat_def::{Defined, Forgotten, HeartbeatDefinitions};
pub use incidents::{
    AlertRow, Counts, DeliveryRow, IncidentFilter, IncidentOrigin, IncidentReads, IncidentRow,
    SignalSnapshot, UpdateRow, Written,
};
pub use outbox::{
    ClaimedDelivery, DeliveryOutcome, DeliveryReport, MessageRow, OutboxStore, Outcome, Reached,
    Receipt, Tokens, Unsettled,
};
pub use probe::{NewSilence, Observation, ProbeStore, SilenceRow, Verdict};
pub use subscriber::{
    AddressOrigin, AddressOwner, AddressRow, DeleteOutcome, EditOutcome, EditReport, MAX_PAGE,
    MAX_QUERY_CHARS, ServiceMode, SubscriberDelivery, SubscriberEdit, SubscriberFilter,
    SubscriberKind, SubscriberOrigin, SubscriberPage, SubscriberRow, SubscriberStore, SyncReport,
};
pub use token::{NewToken, TokenRow, TokenStore};
pub use tx::{
    NewDelivery, NewIncident, NewMessage, NewUpdate, SignalMark, StoredMessage, StoredSignal, Tx,
};
pub use user::{SessionRow, UserChange, UserChanged, UserRow, UserStore};

use async_trait::async_trait;
use jiff::Timestamp;

use crate::domain::Signal;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database unavailable: {0}")]
    Unavailable(String),
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
    /// From a statement run in place on SQLite's connection (`db.rs`).
    #[error("database error: {0}")]
    Sqlite(#[from] rusqlite::Error),
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
            StoreError::Sqlite(rusqlite::Error::SqliteFailure(e, _)) => {
                unavailable_code(&e.extended_code.to_string())
            }
            _ => false,
        }
    }
}

impl StoreError {
    /// Whether a unique index refused the write.
    fn is_unique_violation(&self) -> bool {
        match self {
            StoreError::Database(e) => e
                .as_database_error()
                .is_some_and(sqlx::error::DatabaseError::is_unique_violation),
            StoreError::Sqlite(rusqlite::Error::SqliteFailure(e, _)) => matches!(
                e.extended_code,
                rusqlite::ffi::SQLITE_CONSTRAINT_UNIQUE
                    | rusqlite::ffi::SQLITE_CONSTRAINT_PRIMARYKEY
            ),
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

/// A wake-up other replicas hear (PostgreSQL `NOTIFY`); in-process wake-ups need none.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Topic {
    /// Signals or manual updates were stored: the leader's pipeline has work.
    Signals,
    /// Deliveries became due: every dispatcher may claim.
    Deliveries,
    /// A leader stepped down: another may take over now.
    Leader,
    /// A replica's check of this probe is in doubt (a failure while up, a success while down):
    /// the others look at it now, so that the quorum decides within a recheck.
    Probe(String),
}

impl Topic {
    /// The payload of the notification, `<topic>:<voice>` or `probe:<voice>:<name>`, where
    /// `voice` (hexadecimal) tells a store its own notifications.
    pub fn payload(&self, voice: &str) -> String {
        match self {
            Topic::Signals => format!("signals:{voice}"),
            Topic::Deliveries => format!("deliveries:{voice}"),
            Topic::Leader => format!("leader:{voice}"),
            Topic::Probe(name) => format!("probe:{voice}:{name}"),
        }
    }

    /// Reads a payload: the topic and the voice that sent it. Versions that do not know a
    /// topic ignore it.
    pub fn parse(payload: &str) -> Option<(Topic, &str)> {
        let (topic, rest) = payload.split_once(':').unwrap_or((payload, ""));
        Some(match topic {
            "signals" => (Topic::Signals, rest),
            "deliveries" => (Topic::Deliveries, rest),
            "leader" => (Topic::Leader, rest),
            "probe" => {
                let (voice, name) = rest.split_once(':')?;
                (Topic::Probe(name.to_owned()), voice)
            }
            _ => return None,
        })
    }
}

/// Wake-ups from other replicas, as they arrive.
pub type Wakeups = tokio::sync::mpsc::Receiver<Topic>;

/// What [`Store::prune`] deleted.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PruneReport {
    pub signals: u64,
    pub deliveries: u64,
}

/// The whole store, as the service opens it: the sum of what each of its users needs, plus what
/// only the service as a whole does (migrations, the signals' intake, the write transaction,
/// pruning, wake-ups between replicas). Callers that need only a part hold that part's trait.
#[async_trait]
pub trait Store:
    AckStore
    + AffectedStore
    + ChatStore
    + EscalationStore
    + CitizenStore
    + ClusterStore
    + DraftStore
    + FanoutStore
    + HeartbeatStore
    + HeartbeatDefinitions
    + IncidentReads
    + OutboxStore
    + ProbeStore
    + SubscriberStore
    + TokenStore
    + UserStore
    + Announce
    + Send
    + Sync
    + 'static
{
    async fn migrate(&self) -> Result<()>;
    async fn ping(&self) -> Result<()>;
    async fn close(&self);

    /// Returns the stored value for `key`, storing `value` first if there is none.
    async fn setting_or_insert(&self, key: &str, value: &str) -> Result<String>;
    /// The setting `key`, if it was ever stored.
    async fn setting(&self, key: &str) -> Result<Option<String>>;

    /// Stores `value` for `key`, replacing what was there.
    async fn set_setting(&self, key: &str, value: &str) -> Result<()>;

    /// Stores signals, all or none (one statement up to 64, one transaction beyond), and returns
    /// their ids in order. Durable on return.
    async fn insert_signals(&self, signals: &[(Timestamp, Signal)]) -> Result<Vec<i64>>;

    /// Moves to `at` the last-seen time of the firing alerts of open incidents with these
    /// fingerprints (seen again by re-sends that changed nothing else), unless it is later.
    async fn touch_alerts_seen(&self, fingerprints: &[String], at: Timestamp) -> Result<()>;

    async fn begin(&self) -> Result<Box<dyn Tx>>;

    /// Deletes processed signals received before `before`, and finished deliveries of resolved
    /// incidents created before it, in small batches.
    async fn prune(&self, before: Timestamp) -> Result<PruneReport>;

    /// Wake-ups from the other replicas; `None` when there can be none (SQLite).
    async fn wakeups(&self) -> Result<Option<Wakeups>>;
}

/// Wake-ups for the other replicas. A trait of its own because the outbox and the cluster
/// announce too, through their narrower traits.
#[async_trait]
pub trait Announce: Send + Sync {
    /// Tells the other replicas (no-op on SQLite, where there are none).
    async fn announce(&self, topic: Topic);
}

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

/// Opens the store for an administrator's command (users, tokens) that may run beside the
/// service. On SQLite, when a service holds the file's lock, the store is opened without it and
/// nothing is migrated: the schema must already be the one this binary expects, or the command
/// is refused. Otherwise (no service running, or PostgreSQL, where replicas share the store) the
/// pending migrations are applied as `migrate` does.
pub async fn open_for_administration(
    settings: &crate::settings::StoreSettings,
    password: Option<&crate::settings::Secret>,
) -> Result<std::sync::Arc<dyn Store>> {
    sqlx::any::install_default_drivers();
    if settings.url.starts_with("sqlite://") {
        let (store, locked) = sqlite::open_for_administration(settings).await?;
        if locked {
            store.migrate().await?;
        } else if let Err(e) = store.check_schema().await {
            store.close().await;
            return Err(e);
        }
        Ok(std::sync::Arc::new(store))
    } else {
        let store = postgres::open(settings, password).await?;
        store.migrate().await?;
        Ok(std::sync::Arc::new(store))
    }
}

/// A migrated SQLite store in `dir`, for the unit tests of the store's users.
#[cfg(test)]
pub async fn scratch(dir: &tempfile::TempDir) -> std::sync::Arc<dyn Store> {
    use crate::settings::{Dur, SqliteSynchronous, StoreSettings};
    let settings = StoreSettings {
        url: format!("sqlite://{}", dir.path().join("scratch.db").display()),
        sqlite_synchronous: SqliteSynchronous::Normal,
        max_connections: 4,
        replicas: 1,
        retention: Dur(std::time::Duration::ZERO),
        password: None,
        password_file: None,
        password_env: None,
    };
    let store = open(&settings, None).await.expect("a scratch store");
    store.migrate().await.expect("a migrated scratch store");
    store
}

#[cfg(test)]
mod tests {
    use super::{Topic, unavailable_code};

    #[test]
    fn notification_payloads_read_back_with_their_voice() {
        for topic in [
            Topic::Signals,
            Topic::Deliveries,
            Topic::Leader,
            Topic::Probe("cup:portale".into()),
        ] {
            let payload = topic.payload("a1b2c3");
            assert_eq!(Topic::parse(&payload), Some((topic, "a1b2c3")));
        }
        // What a newer version may send is ignored, not misread.
        assert_eq!(Topic::parse("drafts:a1b2c3"), None);
        assert_eq!(Topic::parse("probe:a1b2c3"), None);
    }

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
