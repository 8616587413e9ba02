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

/// One message of an incident to a desk, for the board of who knows: where it went and how far
/// it got.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeskMessage {
    pub subscriber_id: i64,
    /// The desk's name now (the subscriber's).
    pub subscriber_name: String,
    pub delivery_id: i64,
    pub update_seq: i64,
    pub channel: ChannelKind,
    pub recipient: String,
    /// pending, sending, sent, failed or gone (cancelled ones are left out).
    pub state: String,
    /// The provider's last delivery report (`delivered`, `undelivered`…), where it sends them.
    pub report_status: Option<String>,
    pub report_at: Option<Timestamp>,
    /// When it was handed to the provider.
    pub sent_at: Option<Timestamp>,
}

/// One line of an incident's delivery ledger: a message to one recipient, from its writing to
/// the provider's report and the desk's acknowledgement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LedgerRow {
    pub delivery_id: i64,
    pub update_seq: i64,
    /// `public`, or the desk's audience.
    pub audience: String,
    pub channel: ChannelKind,
    pub recipient: String,
    /// A citizen signed up on the status page (personal data).
    pub citizen: bool,
    /// The subscriber's name when the message was written.
    pub subscriber_name: String,
    pub state: String,
    pub attempts: i64,
    pub last_error: Option<String>,
    pub provider: Option<String>,
    pub provider_id: Option<String>,
    pub created_at: Timestamp,
    pub sent_at: Option<Timestamp>,
    pub report_status: Option<String>,
    pub report_error: Option<String>,
    pub report_at: Option<Timestamp>,
    /// When the recipient's desk acknowledged the incident, through any of its addresses.
    pub acked_at: Option<Timestamp>,
}

/// The most ledger rows one read returns.
pub const LEDGER_PAGE: u32 = 1000;

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

    /// Every message of the incident to a desk (a subscriber that is no citizen, any audience
    /// but `public`, drafts' notices and cancelled deliveries left out) whose address still
    /// exists, by desk then by delivery: the board of who knows, read in one query.
    async fn desk_messages(&self, incident_id: i64) -> Result<Vec<DeskMessage>>;

    /// The incident's ledger after delivery `after`, at most `limit` (up to [`LEDGER_PAGE`])
    /// rows in delivery order: every message to a subscriber or citizen, drafts' notices to the
    /// communications office left out, each with its desk's acknowledgement.
    async fn ledger(&self, incident_id: i64, after: i64, limit: u32) -> Result<Vec<LedgerRow>>;
}
