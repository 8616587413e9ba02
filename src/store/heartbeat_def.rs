//! Heartbeats defined through the API: their definitions kept in the store beside their clocks,
//! so that every replica reads them, and a start leaves them alone while it brings the
//! configuration's heartbeats in step. Deleting one whose alarm is raised stores the alarm's end
//! in the same transaction, as a heartbeat leaving the configuration does.

use std::time::Duration;

use async_trait::async_trait;
use jiff::Timestamp;

use super::Result;
use crate::domain::Signal;

/// What became of a change to a heartbeat defined through the API.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Defined {
    /// Done.
    Done,
    /// No heartbeat has the name (or, creating, one already has it).
    Missing,
    /// The heartbeat is the configuration's: only the configuration changes it.
    Configured,
}

/// What a deletion did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Forgotten {
    /// Deleted; the alarm's end stored with it when its alarm was raised (the signal's id).
    Done(Option<i64>),
    Missing,
    Configured,
}

#[async_trait]
pub trait HeartbeatDefinitions {
    /// Stores a new heartbeat defined through the API (`definition` is its JSON), its clock
    /// started at `now` and due `allowance` later. `Missing` means the name is taken (by a
    /// heartbeat of either origin): the check and the insert are one statement, so of two
    /// replicas creating the same name one wins. A row of the configuration's origin whose name
    /// is not among `configured` (left by a replica with another configuration) is taken over
    /// instead, its clock going on by `allowance` as [`Self::redefine_heartbeat`]'s does.
    async fn define_heartbeat(
        &self,
        name: &str,
        definition: &str,
        by: &str,
        allowance: Duration,
        now: Timestamp,
        configured: &[String],
    ) -> Result<Defined>;

    /// Replaces the definition of a heartbeat defined through the API; while it waits for a
    /// ping (`new` or `up`), its due time is its last ping (or the start of its clock) plus the
    /// new `allowance`, or `now` plus it when that is past. A late or failed heartbeat stays so
    /// until its next ping.
    async fn redefine_heartbeat(
        &self,
        name: &str,
        definition: &str,
        by: &str,
        allowance: Duration,
        now: Timestamp,
    ) -> Result<Defined>;

    /// Deletes a heartbeat defined through the API; if it was late or failed, `farewell` is
    /// stored in the same transaction to resolve its alarm.
    async fn forget_heartbeat(
        &self,
        name: &str,
        farewell: &Signal,
        now: Timestamp,
    ) -> Result<Forgotten>;

    /// At a start: every heartbeat defined through the API among `defined` (name, allowance)
    /// still waiting for a ping whose due time has passed (pings lost while no replica ran) is
    /// due `allowance` after `now`, as a configured one is.
    async fn restart_defined_clocks(
        &self,
        defined: &[(String, Duration)],
        now: Timestamp,
    ) -> Result<()>;
}
