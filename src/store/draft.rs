//! Drafts: public statements held for the communications office, what it decides, and the
//! audit log of every decision.

use async_trait::async_trait;
use jiff::Timestamp;
use serde::Serialize;

use super::Result;
use crate::domain::subscriber::ChannelKind;
use crate::render::Buttons;

/// One rendered message held for approval, with whom it will go to (router side).
#[derive(Debug, Clone)]
pub struct NewDraftPart {
    pub incident_id: i64,
    pub update_id: i64,
    pub audience: String,
    /// `approval` or `approval_with_timeout`.
    pub policy: &'static str,
    /// When the draft publishes itself if nobody decides.
    pub publish_at: Option<Timestamp>,
    pub message_id: i64,
    pub channel: ChannelKind,
    pub language: String,
    /// `(address id, address, subscriber name)` of each recipient but the citizens.
    pub recipients: Vec<(i64, String, String)>,
    /// The citizens it reaches, not listed: about how many addresses, and the highest citizen id
    /// now (those who sign up later do not hear it). Written in batches once approved.
    pub citizens: Option<(u64, i64)>,
    pub now: Timestamp,
}

#[derive(Debug, Clone, Serialize)]
pub struct Draft {
    pub id: i64,
    pub incident_id: i64,
    pub incident_title: String,
    pub update_seq: i64,
    pub update_kind: String,
    pub audience: String,
    pub policy: String,
    /// `pending`, `approved`, `rejected` or `superseded`.
    pub state: String,
    pub publish_at: Option<Timestamp>,
    /// It replaces earlier drafts of the incident that were never published.
    pub combined: bool,
    pub created_at: Timestamp,
    pub decided_at: Option<Timestamp>,
    pub decided_by: Option<String>,
    pub reason: Option<String>,
    pub parts: Vec<DraftPart>,
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct DraftPart {
    pub channel: ChannelKind,
    pub language: String,
    /// `pending`, `approved` or `rejected`.
    pub state: String,
    /// 1 as rendered; each edit adds one.
    pub version: i64,
    pub subject: Option<String>,
    /// The current text: the latest edit, or the rendered message.
    pub body: String,
    pub recipients: usize,
}

/// A new text for one part of a draft.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartEdit {
    pub channel: ChannelKind,
    pub language: String,
    pub subject: Option<String>,
    pub body: String,
}

/// What tells the communications office that a draft waits, on one channel: one text (with
/// its buttons) for every recipient, sent by the outbox like any message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DraftNotice {
    pub channel: ChannelKind,
    pub language: String,
    pub subject: Option<String>,
    pub body: String,
    pub buttons: Option<Buttons>,
    /// `(address, name)` of each recipient.
    pub recipients: Vec<(String, String)>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Publish these channels' parts (all pending parts when `None`).
    Approve {
        channels: Option<Vec<ChannelKind>>,
    },
    Reject {
        reason: String,
    },
    /// Nobody decided in time and the policy publishes: every pending part.
    TimedOut,
}

/// What a decision did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Decided {
    pub parts: usize,
    /// Deliveries written to the outbox.
    pub deliveries: u64,
    /// About how many citizens the leader now writes deliveries for, batch by batch.
    pub citizens: u64,
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct AuditEntry {
    pub id: i64,
    #[schema(value_type = String, format = DateTime)]
    pub at: Timestamp,
    pub actor: String,
    pub action: String,
    pub incident_id: Option<i64>,
    pub draft_id: Option<i64>,
    #[schema(value_type = Object)]
    pub detail: serde_json::Value,
}

#[derive(Debug, Clone)]
pub struct NewAudit {
    pub actor: String,
    pub action: &'static str,
    pub incident_id: Option<i64>,
    pub draft_id: Option<i64>,
    pub detail: serde_json::Value,
    pub at: Timestamp,
}

#[async_trait]
pub trait DraftStore {
    /// Drafts, newest first; only those in `state` when given.
    async fn drafts(&self, state: Option<&str>, limit: u32) -> Result<Vec<Draft>>;
    async fn draft(&self, id: i64) -> Result<Option<Draft>>;
    /// The approved drafts of `audience` about one incident, newest first: what was published.
    async fn published_drafts(&self, incident_id: i64, audience: &str) -> Result<Vec<Draft>>;
    /// Adds a version to each edited part. `Conflict` unless the draft and the part are pending;
    /// `None` when there is no such draft.
    async fn edit_draft(
        &self,
        id: i64,
        edits: &[PartEdit],
        actor: &str,
        now: Timestamp,
    ) -> Result<Option<Draft>>;
    /// Approves (the approved version enters the outbox byte for byte), rejects, or publishes
    /// on timeout. `Conflict` when there is nothing pending to decide; `None` when there is no
    /// such draft.
    async fn decide_draft(
        &self,
        id: i64,
        decision: &Decision,
        actor: &str,
        now: Timestamp,
    ) -> Result<Option<Decided>>;
    /// Pending drafts whose policy publishes them by `now`.
    async fn due_drafts(&self, now: Timestamp) -> Result<Vec<i64>>;
    /// Pending drafts the communications office has not been told about yet, oldest first.
    async fn unannounced_drafts(&self, limit: u32) -> Result<Vec<Draft>>;
    /// Marks the draft announced and puts its notices in the outbox, in one transaction: a
    /// message per channel (audience `approval:<draft>`) and a pending delivery per recipient,
    /// each known as the draft's (`draft_id`) and sent once. Returns the deliveries written;
    /// none when the draft is gone.
    async fn announce_draft(&self, id: i64, notices: &[DraftNotice], now: Timestamp)
    -> Result<u64>;
    async fn record_audit(&self, entry: &NewAudit) -> Result<()>;
    /// The audit log, newest first, of one incident when given.
    async fn audit_log(&self, incident_id: Option<i64>, limit: u32) -> Result<Vec<AuditEntry>>;
}
