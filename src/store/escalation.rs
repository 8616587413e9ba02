//! Escalation ladders as stored: one row per step that waits, per incident and desk, and what
//! became of it. The router writes a desk's ladder and ends an incident's with its resolution,
//! the pipeline fires what is due (both through [`super::Tx`]), an acknowledgement stops the
//! desk's ([`super::AckStore::acknowledge`]); the board reads the next step of each desk here.

use async_trait::async_trait;
use jiff::Timestamp;

use super::Result;
use crate::domain::subscriber::ChannelKind;

/// Where a step stands. It leaves `Waiting` once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EscalationState {
    /// Due at `due_at`, unless the desk acknowledges or the incident ends first.
    Waiting,
    /// Its channels were sent the incident's latest update.
    Fired,
    /// The desk said "seen" first: nothing was sent.
    Acknowledged,
    /// The incident ended first: nothing was sent.
    Resolved,
}

impl EscalationState {
    pub const ALL: [EscalationState; 4] = [
        EscalationState::Waiting,
        EscalationState::Fired,
        EscalationState::Acknowledged,
        EscalationState::Resolved,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            EscalationState::Waiting => "waiting",
            EscalationState::Fired => "fired",
            EscalationState::Acknowledged => "acknowledged",
            EscalationState::Resolved => "resolved",
        }
    }
}

impl std::str::FromStr for EscalationState {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, Self::Err> {
        EscalationState::ALL
            .into_iter()
            .find(|e| e.as_str() == s)
            .ok_or_else(|| format!("`{s}` is no escalation state"))
    }
}

/// One step of a desk's ladder for one incident.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EscalationRow {
    pub id: i64,
    pub incident_id: i64,
    pub subscriber_id: i64,
    /// Its place in the desk's policy (0 is the first step).
    pub step: i64,
    pub channels: Vec<ChannelKind>,
    pub due_at: Timestamp,
    pub state: EscalationState,
    pub changed_at: Timestamp,
}

/// A step to write when a desk's ladder starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewEscalationStep {
    pub step: i64,
    pub channels: Vec<ChannelKind>,
    pub due_at: Timestamp,
}

/// A desk's next step, for the board.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
pub struct NextEscalation {
    pub subscriber_id: i64,
    /// The desk's name now (the subscriber's), for a board that has no message of it yet.
    pub subscriber_name: String,
    pub step: i64,
    pub channels: Vec<ChannelKind>,
    #[schema(value_type = String, format = DateTime)]
    pub due_at: Timestamp,
}

#[async_trait]
pub trait EscalationStore {
    /// The earliest waiting step of each desk of the incident, soonest first.
    async fn next_escalations(&self, incident_id: i64) -> Result<Vec<NextEscalation>>;
    /// Every step of the incident's ladders, by desk and step.
    async fn escalations(&self, incident_id: i64) -> Result<Vec<EscalationRow>>;
}
