//! Probe observations and verdicts, and silences: what [`crate::probe`] and the router keep.

use async_trait::async_trait;
use jiff::Timestamp;
use serde::Serialize;

use super::Result;
use crate::domain::Finding;

/// What one replica last saw of one probe.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct Observation {
    pub probe: String,
    pub instance: String,
    /// `up`, `down`, or `unknown` (not counted: the replica cannot reach the network, or has
    /// just started and its thresholds have not decided yet).
    pub state: String,
    /// What the check found, in the operators' English.
    pub detail: String,
    /// The same, as data (`None` in rows written before findings were kept).
    pub finding: Option<Finding>,
    pub cert_days_left: Option<i64>,
    #[schema(value_type = String, format = DateTime)]
    pub observed_at: Timestamp,
}

/// What the leader declared about a probe (or its certificate: `<probe>#certificate`).
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct Verdict {
    pub subject: String,
    pub state: String,
    pub detail: String,
    #[schema(value_type = String, format = DateTime)]
    pub changed_at: Timestamp,
}

#[derive(Debug, Clone)]
pub struct NewSilence {
    pub matchers: Vec<String>,
    pub starts_at: Timestamp,
    pub ends_at: Timestamp,
    pub comment: String,
    pub created_by: String,
    pub created_at: Timestamp,
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct SilenceRow {
    pub id: i64,
    pub matchers: Vec<String>,
    #[schema(value_type = String, format = DateTime)]
    pub starts_at: Timestamp,
    #[schema(value_type = String, format = DateTime)]
    pub ends_at: Timestamp,
    pub comment: String,
    pub created_by: String,
    #[schema(value_type = String, format = DateTime)]
    pub created_at: Timestamp,
}

#[async_trait]
pub trait ProbeStore {
    /// Stores each replica's latest view of its probes (one row per probe and replica).
    async fn record_observations(&self, observations: &[Observation]) -> Result<()>;
    /// Observations made at or after `since` (all of them without it).
    async fn observations(&self, since: Option<Timestamp>) -> Result<Vec<Observation>>;
    /// The replicas that observed anything at or after `since`, by name.
    async fn observers(&self, since: Timestamp) -> Result<Vec<String>>;
    async fn verdicts(&self) -> Result<Vec<Verdict>>;
    async fn set_verdict(&self, verdict: &Verdict) -> Result<()>;
    async fn insert_silence(&self, silence: &NewSilence) -> Result<i64>;
    /// Silences not yet ended at `now` (those still to come included), newest first.
    async fn silences(&self, now: Timestamp) -> Result<Vec<SilenceRow>>;
    /// Ends a silence now; false if there is no such silence still running.
    async fn expire_silence(&self, id: i64, now: Timestamp) -> Result<bool>;
}
