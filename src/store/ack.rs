//! Acknowledgements: which desks have said they saw an incident, through which address and when.
//! A desk (a subscriber) acknowledges an incident once; the first acknowledgement is kept, and
//! none changes the incident. Only an address that was sent a desk's message about the incident
//! (any audience but `public`) can acknowledge it, whatever token or reply it came with.

use async_trait::async_trait;
use jiff::Timestamp;

use super::Result;
use crate::domain::subscriber::ChannelKind;

/// One desk's acknowledgement of one incident.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AckRow {
    pub id: i64,
    pub incident_id: i64,
    /// `None` once the subscriber is deleted; its name stays.
    pub subscriber_id: Option<i64>,
    pub subscriber_name: String,
    pub address_id: Option<i64>,
    /// Through what: the channel of the address that acknowledged.
    pub channel: ChannelKind,
    /// The address, as stored (an email address, a number, a chat).
    pub recipient: String,
    /// The latest message of the incident to that address when it acknowledged.
    pub delivery_id: Option<i64>,
    /// When the desk's first message about the incident was handed to a provider, on any of its
    /// addresses: `acked_at` less this is the time it took to acknowledge.
    pub first_sent_at: Option<Timestamp>,
    pub acked_at: Timestamp,
}

/// What an acknowledgement did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Acknowledged {
    /// The desk's first: recorded now.
    Recorded(AckRow),
    /// The desk had already acknowledged the incident: this is the record that stands.
    Already(AckRow),
    /// The address was never sent a desk's message about the incident (or no longer exists):
    /// nothing is recorded.
    NotSent,
}

#[async_trait]
pub trait AckStore {
    /// Records that the desk holding `address_id` has seen `incident_id`, at `at`.
    async fn acknowledge(
        &self,
        incident_id: i64,
        address_id: i64,
        at: Timestamp,
    ) -> Result<Acknowledged>;

    /// The address an acknowledgement's token names, to check the token against: its channel
    /// and the address as stored. `None` when there is no such address.
    async fn ack_address(&self, address_id: i64) -> Result<Option<(ChannelKind, String)>>;

    /// The incident most recently texted to `number` (E.164) in a desk's message, and the
    /// address it went to: what a reply from that number acknowledges.
    async fn latest_texted(&self, number: &str) -> Result<Option<(i64, i64)>>;

    /// The acknowledgements of an incident, in the order they came.
    async fn acknowledgements(&self, incident_id: i64) -> Result<Vec<AckRow>>;
}
