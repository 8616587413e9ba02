//! Public statements to a region's citizens, written out in batches: a draft part that reaches
//! citizens does not list them (a million rows would not fit in a draft, nor in one
//! transaction at approval); once approved, the leader reads the citizens a few thousand at a
//! time and writes their deliveries, each batch with the part's cursor in one transaction.

use async_trait::async_trait;
use jiff::Timestamp;

use super::{NewDelivery, Result, SubscriberRow};
use crate::domain::UpdateKind;
use crate::domain::subscriber::ChannelKind;

/// The citizens who may hear a public statement on one channel in one wanted language, when it
/// is held: their active addresses, counted (an estimate of the part's reach; who follows
/// exactly is decided when each batch is written).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CitizenGroup {
    pub channel: ChannelKind,
    /// The address's own language, or its subscriber's.
    pub language: String,
    pub addresses: u64,
}

/// An approved draft part whose citizens are not all written yet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CitizenPart {
    pub part_id: i64,
    pub draft_id: i64,
    pub incident_id: i64,
    pub update_id: i64,
    pub update_kind: UpdateKind,
    pub origin_at: Timestamp,
    pub message_id: i64,
    pub channel: ChannelKind,
    pub language: String,
    /// Citizens with an id up to this one are written.
    pub done: i64,
    /// The highest citizen id when the part was held: later sign-ups do not hear it.
    pub through: i64,
}

#[async_trait]
pub trait FanoutStore {
    /// The oldest approved part with citizens still to write, in the order parts were approved
    /// (so that a citizen reads statements in that order).
    async fn next_citizen_part(&self) -> Result<Option<CitizenPart>>;
    /// Citizen subscribers with an id in `(after, through]`, the lowest `limit` of them, with
    /// their addresses and subscriptions.
    async fn citizens_after(
        &self,
        after: i64,
        through: i64,
        limit: u32,
    ) -> Result<Vec<SubscriberRow>>;
    /// Which of these addresses were sent an earlier update of the incident (they hear every
    /// later one).
    async fn notified_among(
        &self,
        incident_id: i64,
        address_ids: &[i64],
    ) -> Result<Vec<(i64, ChannelKind)>>;
    /// Writes one batch of a part: moves its cursor from `from` to `to` and adds the
    /// deliveries whose address is still subscribed, in one transaction. `None` when the cursor
    /// was no longer at `from` (another leader wrote this batch): nothing is written.
    async fn write_citizen_batch(
        &self,
        part_id: i64,
        from: i64,
        to: i64,
        deliveries: &[NewDelivery],
    ) -> Result<Option<u64>>;
}
