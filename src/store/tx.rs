//! The write transaction of the stages that change several rows at once: the incident engine
//! (signals into incidents, alerts and updates), the router (updates into messages and
//! deliveries, or drafts held for approval) and manual incident updates. The rows it takes in
//! are here; the incident rows it shares with the API's reads are in `incidents.rs`.

use async_trait::async_trait;
use jiff::Timestamp;

use super::{
    AlertRow, CitizenGroup, EscalationRow, EscalationState, IncidentOrigin, IncidentRow,
    NewDraftPart, NewEscalationStep, Result, SignalSnapshot, SubscriberRow, UpdateRow,
};
use crate::domain::incident::AlertState;
use crate::domain::subscriber::ChannelKind;
use crate::domain::{IncidentStatus, Labels, Severity, Signal, UpdateKind};

/// What the engine did with one signal: its outcome (`joined`, `refreshed`…) and incident.
#[derive(Debug, Clone, Copy)]
pub struct SignalMark<'a> {
    pub signal: i64,
    pub outcome: &'a str,
    pub incident: Option<i64>,
}

/// A signal as stored, with its arrival time.
#[derive(Debug, Clone)]
pub struct StoredSignal {
    pub id: i64,
    pub received_at: Timestamp,
    pub signal: Signal,
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

/// A message as the store holds it after [`Tx::insert_message`].
#[derive(Debug, Clone)]
pub struct StoredMessage {
    pub id: i64,
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

/// A write transaction. Dropping it without [`Tx::commit`] rolls back.
#[async_trait]
pub trait Tx: Send {
    async fn commit(self: Box<Self>) -> Result<()>;

    /// Stores signals as [`super::Store::insert_signals`] does, in this transaction: the
    /// pipeline's step stores what the intake hands it and applies it in one commit.
    async fn insert_signals(&mut self, signals: &[(Timestamp, Signal)]) -> Result<Vec<i64>>;

    // Incident engine.
    async fn unprocessed_signals(&mut self, limit: u32) -> Result<Vec<StoredSignal>>;
    /// Marks signals processed, each with its outcome and incident, in one statement.
    async fn mark_signals(&mut self, marks: &[SignalMark<'_>], now: Timestamp) -> Result<()>;
    /// The alerts of these fingerprints that belong to open incidents.
    async fn active_alerts(&mut self, fingerprints: &[String]) -> Result<Vec<AlertRow>>;
    /// Moves the last-seen time of alerts that were seen again unchanged.
    async fn touch_alerts(&mut self, ids: &[i64], at: Timestamp) -> Result<()>;
    /// The open incidents of these group keys, as (key, id); on PostgreSQL locked for the
    /// transaction, in the order of their ids.
    async fn open_incidents_by_keys(&mut self, keys: &[&str]) -> Result<Vec<(String, i64)>>;
    /// These incidents, in the order of their ids; on PostgreSQL locked for the transaction, in
    /// that order.
    async fn incidents_to_change(&mut self, ids: &[i64]) -> Result<Vec<IncidentRow>>;
    async fn incident(&mut self, id: i64) -> Result<Option<IncidentRow>>;
    async fn insert_incident(&mut self, new: &NewIncident) -> Result<IncidentRow>;
    async fn save_incident(&mut self, incident: &IncidentRow) -> Result<()>;
    /// Inserts or replaces the alerts of (incident, fingerprint), in this order, several per
    /// statement. Each (incident, fingerprint) may appear once.
    async fn save_alerts(&mut self, alerts: &[&AlertRow]) -> Result<()>;
    async fn alerts(&mut self, incident_id: i64) -> Result<Vec<AlertRow>>;
    /// What the engine decides on for each alert of the incident, in the order of [`Tx::alerts`]:
    /// four columns, where the whole rows' labels and annotations would be parsed for nothing.
    async fn alert_states(&mut self, incident_id: i64) -> Result<Vec<AlertState>>;
    async fn due_incidents(&mut self, now: Timestamp, limit: u32) -> Result<Vec<i64>>;
    /// When the engine must next run: the earliest incident timer or alert expiry, leases
    /// counted from `since` at the earliest ([`AlertRow::ends_after`]).
    async fn next_eval_at(&mut self, since: Timestamp) -> Result<Option<Timestamp>>;
    /// Firing alerts of open incidents whose lease, counted from `since` at the earliest
    /// ([`AlertRow::ends_after`]), ended at or before `now`, earliest first.
    async fn expired_alerts(
        &mut self,
        now: Timestamp,
        since: Timestamp,
        limit: u32,
    ) -> Result<Vec<AlertRow>>;
    async fn insert_update(&mut self, new: &NewUpdate) -> Result<UpdateRow>;

    // Router.
    async fn unrouted_updates(&mut self, limit: u32) -> Result<Vec<UpdateRow>>;
    /// A number that changes whenever subscribers, subscriptions or addresses change.
    async fn subscribers_version(&mut self) -> Result<i64>;
    /// Every subscriber but the citizens (a region's worth: the router never holds them; see
    /// [`Tx::citizen_groups`] and [`super::FanoutStore`]).
    async fn subscribers(&mut self) -> Result<Vec<SubscriberRow>>;
    /// The active addresses of citizens following one of `services` (`None`: every citizen),
    /// counted by channel and wanted language, and the highest citizen id: who may hear a public
    /// statement, without loading them.
    async fn citizen_groups(
        &mut self,
        services: Option<&[String]>,
    ) -> Result<(Vec<CitizenGroup>, i64)>;
    /// Whether an approved statement about the incident went to citizens.
    async fn citizens_heard(&mut self, incident_id: i64) -> Result<bool>;
    /// Writes a message, or finds the one already written under its key (update, channel,
    /// language, audience), which keeps its text.
    async fn insert_message(&mut self, new: &NewMessage) -> Result<StoredMessage>;
    async fn insert_deliveries(&mut self, new: &[NewDelivery]) -> Result<u64>;
    /// Holds a message for the communications office instead of sending it: adds it as a part
    /// of the draft for its update and audience (created with the first part, which also
    /// supersedes the incident's earlier undecided drafts for that audience). Returns the draft.
    async fn hold_for_approval(&mut self, part: &NewDraftPart) -> Result<i64>;
    async fn mark_routed(&mut self, update_id: i64, now: Timestamp) -> Result<()>;
    /// Records that a maintenance window or silence kept an update of the incident quiet.
    /// `None` once an update goes out again.
    async fn set_maintenance(&mut self, incident_id: i64, window: Option<&str>) -> Result<()>;
    /// Addresses (id, channel) but citizens' that were sent an earlier update of the incident:
    /// they hear every later update, whatever the signals' labels have become.
    async fn notified_addresses(&mut self, incident_id: i64) -> Result<Vec<(i64, ChannelKind)>>;

    // Escalation (`crate::route::escalation`).
    /// Writes a desk's ladder for the incident; steps already written (by this replica or a
    /// racing one) stay as they are. Returns how many were written.
    async fn start_escalation(
        &mut self,
        incident_id: i64,
        subscriber_id: i64,
        steps: &[NewEscalationStep],
        now: Timestamp,
    ) -> Result<u64>;
    /// The desks that have a ladder for the incident.
    async fn escalated_desks(&mut self, incident_id: i64) -> Result<Vec<i64>>;
    /// Marks the incident's waiting steps resolved (its resolution was routed); how many.
    async fn end_escalations(&mut self, incident_id: i64, now: Timestamp) -> Result<u64>;
    /// Waiting steps due at `now`, earliest first, read without a lock: lock each step's
    /// incident ([`Tx::incident`]) before settling the step, as acknowledgements and resolutions
    /// take them in that order.
    async fn due_escalations(&mut self, now: Timestamp, limit: u32) -> Result<Vec<EscalationRow>>;
    /// Moves a step out of `waiting` to `state`; false when it had already left it (another
    /// would-be leader, or an acknowledgement, came first).
    async fn settle_escalation(
        &mut self,
        id: i64,
        state: EscalationState,
        now: Timestamp,
    ) -> Result<bool>;
    /// When the earliest waiting step is due.
    async fn next_escalation_at(&mut self) -> Result<Option<Timestamp>>;
    /// Whether the desk has acknowledged the incident.
    async fn desk_acknowledged(&mut self, incident_id: i64, subscriber_id: i64) -> Result<bool>;
    /// The incident's latest routed update (silent ones aside): what a step sends.
    async fn latest_routed_update(&mut self, incident_id: i64) -> Result<Option<UpdateRow>>;

    // Pipeline.
    /// Claims due deliveries of `channel` for `owner` as the outbox does
    /// ([`super::OutboxStore::claim_deliveries`]), inside this transaction: the pipeline hands
    /// the deliveries it just wrote to this replica's dispatcher without a commit of their own.
    async fn claim_deliveries(
        &mut self,
        channel: ChannelKind,
        limit: u32,
        now: Timestamp,
        lease_until: Timestamp,
        owner: &str,
    ) -> Result<Vec<super::ClaimedDelivery>>;
}
