//! Heartbeats' clocks and states: what [`crate::heartbeat`] keeps so that every replica reads
//! the same last ping and no two declare the same silence. Each change that raises or resolves
//! an alarm stores its signal in the same transaction, so a heartbeat is never late without its
//! alarm, nor back without the alarm's end.

use std::time::Duration;

use async_trait::async_trait;
use jiff::Timestamp;

use super::Result;
use crate::domain::Signal;

/// A heartbeat as stored: its clock and what was declared.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeartbeatRow {
    pub name: String,
    /// `new`, `up`, `late` or `failed`.
    pub state: String,
    /// When its clock started: a heartbeat never pinged is late `allowance` after it.
    pub created_at: Timestamp,
    pub last_ping_at: Option<Timestamp>,
    /// When it becomes late without another ping (meaningful while `new` or `up`).
    pub due_at: Timestamp,
    pub changed_at: Timestamp,
    pub pings: i64,
    /// What its monitor said with the last failure report.
    pub detail: String,
    /// `config` (`[[heartbeats]]`) or `api` (defined through the API).
    pub origin: String,
    /// The JSON the API accepted, for a heartbeat defined through it.
    pub definition: Option<String>,
    /// Who last defined it through the API.
    pub defined_by: Option<String>,
}

/// What a ping or a failure report changed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Beat {
    /// The state before it; [`Beat::GONE`] when the heartbeat has no row and was not to be
    /// given one (nothing was stored).
    pub was: String,
    /// The signal stored with it: the alarm's end for a ping of a late or failed heartbeat,
    /// the alarm for a failure report of one that was not failed already.
    pub signal: Option<i64>,
}

impl Beat {
    /// [`Beat::was`] of a ping or failure report of a heartbeat defined through the API whose row
    /// is gone: deleted meanwhile, through another replica perhaps.
    pub const GONE: &'static str = "gone";
}

#[async_trait]
pub trait HeartbeatStore {
    /// Brings the table in step with the configuration, given as (name, period plus grace):
    /// a heartbeat defined through the API is left alone, unless the configuration now names it
    /// too, which makes it the configuration's (its clock goes on);
    /// a new heartbeat starts its clock at `now`; one not late has its due time computed anew
    /// from its last ping (or the start of its clock), and, if that time is past (pings lost
    /// while no replica ran), moved to `now` plus its allowance. A heartbeat no longer
    /// configured is forgotten, and if it was late or failed, `farewell(name)` is stored to
    /// resolve its alarm, in the same transaction. Returns how many such signals it stored.
    async fn sync_heartbeats(
        &self,
        configured: &[(String, Duration)],
        now: Timestamp,
        farewell: &(dyn for<'n> Fn(&'n str) -> Signal + Send + Sync),
    ) -> Result<usize>;

    /// A ping: the heartbeat is up and due again at `due_at`; if it was late or failed,
    /// `resolved` is stored in the same transaction. Exactly one of two racing pings resolves.
    /// A heartbeat without a row gets one when `configured` (a replica with another
    /// configuration started); one defined through the API does not, since its row is gone only
    /// when it was deleted: the answer is then [`Beat::GONE`].
    async fn record_ping(
        &self,
        name: &str,
        now: Timestamp,
        due_at: Timestamp,
        resolved: &Signal,
        configured: bool,
    ) -> Result<Beat>;

    /// A failure report: the heartbeat is failed (`detail` kept); unless it already was,
    /// `firing` is stored in the same transaction. Without a row, as [`Self::record_ping`].
    async fn record_failure(
        &self,
        name: &str,
        now: Timestamp,
        detail: &str,
        firing: &Signal,
        configured: bool,
    ) -> Result<Beat>;

    /// Declares late every heartbeat among `names` that is `new` or `up` and due at or before
    /// `now`, storing `alarm(name, last ping)` for each in the same transaction. The move is a conditional
    /// update, so of replicas declaring at once exactly one stores each alarm. Returns the names
    /// declared, with their signals' ids.
    async fn declare_silent(
        &self,
        names: &[String],
        now: Timestamp,
        alarm: &(dyn for<'n> Fn(&'n str, Option<Timestamp>) -> Signal + Send + Sync),
    ) -> Result<Vec<(String, i64)>>;

    /// Every heartbeat's row, by name.
    async fn heartbeats(&self) -> Result<Vec<HeartbeatRow>>;
}
