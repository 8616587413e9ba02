//! Affected lists: the people an incident's outage reaches through their appointments, stored
//! per incident in batches (each row once, by the keyed digest of who it names), read back in
//! pages with the state of each row's messages, written out as deliveries of each published
//! public statement, and deleted on request or once the incident has been over for the
//! retention.

use async_trait::async_trait;
use jiff::Timestamp;

use super::Result;
use crate::domain::UpdateKind;
use crate::domain::subscriber::ChannelKind;

/// One checked row of an upload, as the store keeps it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewAffected {
    /// The keyed digest of who the row names (`domain::affected::identity`).
    pub digest: String,
    /// Sealed (`FiscalCode::seal`).
    pub fiscal_code: Option<String>,
    pub mobile: Option<String>,
    pub email: Option<String>,
    /// The template language it is written to in.
    pub language: String,
    pub detail: String,
    /// The channel it is reached on and its address there.
    pub channel: ChannelKind,
    pub recipient: String,
}

/// What merging an upload did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Merged {
    /// Rows new to the list: each hears the latest published statement and every later one.
    pub new: u64,
    /// People already listed whose detail or language changed: the messages still to send
    /// carry the new detail.
    pub updated: u64,
    /// People already listed, or listed twice in the upload, with nothing changed (the last
    /// of an upload's repeats is the one kept).
    pub duplicates: u64,
}

/// A stored row with how its messages stand.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AffectedRow {
    pub id: i64,
    pub fiscal_code: Option<String>,
    pub mobile: Option<String>,
    pub email: Option<String>,
    pub language: String,
    pub detail: String,
    pub channel: ChannelKind,
    pub recipient: String,
    pub created_at: Timestamp,
    /// The state of its latest message (pending, sending, sent, failed, gone, cancelled), none
    /// before the first statement is written out.
    pub state: Option<String>,
    /// Statements handed over to the provider.
    pub sent: i64,
}

/// A list's counts.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AffectedCounts {
    pub rows: i64,
    /// Rows per channel.
    pub channels: Vec<(ChannelKind, i64)>,
    /// Deliveries per state.
    pub deliveries: Vec<(String, i64)>,
}

/// A published statement some rows of a list have not been written yet, on one channel and
/// in one language.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AffectedWork {
    pub incident_id: i64,
    pub update_id: i64,
    pub update_kind: UpdateKind,
    pub origin_at: Timestamp,
    pub channel: ChannelKind,
    pub language: String,
}

#[async_trait]
pub trait AffectedStore {
    /// Stages one batch of the upload `upload`, `(seq, row)` in the order read, in one
    /// transaction. Nothing is in the list until [`AffectedStore::merge_affected`].
    async fn stage_affected(
        &self,
        upload: &str,
        rows: &[(i64, NewAffected)],
        now: Timestamp,
    ) -> Result<()>;
    /// Merges a staged upload into an open incident's list in one transaction, and forgets the
    /// staging. A row new to the list hears public statements from the latest published
    /// (`public_auto`: every routed update is published) on. `None` when the incident does not
    /// exist; `Conflict` when it is resolved (the staging is forgotten either way).
    async fn merge_affected(
        &self,
        upload: &str,
        incident_id: i64,
        public_auto: bool,
        now: Timestamp,
    ) -> Result<Option<Merged>>;
    /// Forgets a staged upload (it was refused).
    async fn drop_staged(&self, upload: &str) -> Result<()>;
    async fn affected_counts(&self, incident_id: i64) -> Result<AffectedCounts>;
    /// The rows with an id above `after`, the lowest `limit` of them.
    async fn affected_rows(
        &self,
        incident_id: i64,
        after: i64,
        limit: u32,
    ) -> Result<Vec<AffectedRow>>;
    /// Deletes an incident's list, and its deliveries with it. The rows deleted.
    async fn delete_affected(&self, incident_id: i64) -> Result<u64>;
    /// Deletes the lists of incidents resolved before `resolved_before`, with their deliveries,
    /// and uploads staged before `staged_before` that never finished.
    async fn prune_affected(
        &self,
        resolved_before: Timestamp,
        staged_before: Timestamp,
    ) -> Result<u64>;
    /// Moves the rows App IO refused (a list delivery on `appio` that failed: the person is
    /// not on IO or has turned the service off) to their next way: SMS when the row has a
    /// mobile and `sms` is on, else email when it has an email and `email` is on. The statement
    /// refused is then written there (a row has had a statement when it has a delivery of it on
    /// its channel, or one not failed), and the later ones go there directly. The rows moved.
    async fn reroute_refused(&self, sms: bool, email: bool, now: Timestamp) -> Result<u64>;
    /// A fingerprint of what the writer reads (lists, published statements): while it holds,
    /// a writer that found nothing to do has nothing to do.
    async fn affected_fingerprint(&self, public_auto: bool) -> Result<String>;
    /// The published statements with rows of a list still to write on one of `channels` (the
    /// enabled ones: rows on a channel turned off since their upload wait, and take no room
    /// from the others' work), oldest first.
    async fn affected_work(
        &self,
        public_auto: bool,
        channels: &[ChannelKind],
    ) -> Result<Vec<AffectedWork>>;
    /// The message of `work` for the lists, if rendered already.
    async fn affected_message(&self, work: &AffectedWork) -> Result<Option<i64>>;
    /// Writes up to `limit` deliveries of `message_id` to the rows of `work` that do not have
    /// one yet, in one transaction; how many. With `refused` (why), they are written cancelled:
    /// the office rejected the statement on that channel, and the rows are done with it.
    async fn write_affected_batch(
        &self,
        work: &AffectedWork,
        message_id: i64,
        limit: u32,
        refused: Option<&str>,
        now: Timestamp,
    ) -> Result<u64>;
}
