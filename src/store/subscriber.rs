//! Subscribers as the API, the configuration file and the unsubscribe links manage them: who they
//! are, their addresses and what they subscribed to. The router reads the same rows inside its
//! transaction ([`super::Tx::subscribers`]).

use std::collections::BTreeMap;

use async_trait::async_trait;
use jiff::Timestamp;
use serde::Serialize;

use super::Result;
use crate::domain::escalation::EscalationPolicy;
use crate::domain::subscriber::{ChannelKind, Language, Subscription, ValidSubscriber};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum SubscriberOrigin {
    Api,
    Config,
    /// A citizen who subscribed from the status page.
    Citizen,
}

impl SubscriberOrigin {
    pub fn as_str(self) -> &'static str {
        match self {
            SubscriberOrigin::Api => "api",
            SubscriberOrigin::Config => "config",
            SubscriberOrigin::Citizen => "citizen",
        }
    }
}

/// Who put an address there.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum AddressOrigin {
    /// The API or the configuration file; the file keeps its own in step.
    Admin,
    /// A chat that bound itself with an invite; only the chat or an administrator removes it.
    Chat,
}

impl AddressOrigin {
    pub fn as_str(self) -> &'static str {
        match self {
            AddressOrigin::Admin => "admin",
            AddressOrigin::Chat => "chat",
        }
    }
}

/// What a chat said about one service: follow it beyond the subscriptions, or mute it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum ServiceMode {
    Follow,
    Mute,
}

impl ServiceMode {
    pub fn as_str(self) -> &'static str {
        match self {
            ServiceMode::Follow => "follow",
            ServiceMode::Mute => "mute",
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct AddressRow {
    pub id: i64,
    pub channel: ChannelKind,
    pub address: String,
    pub unsubscribed_at: Option<Timestamp>,
    pub gone_at: Option<Timestamp>,
    pub gone_reason: Option<String>,
    pub origin: AddressOrigin,
    /// The chat's own language, over its subscriber's.
    pub language: Option<Language>,
    /// Services the chat follows or muted itself.
    pub services: BTreeMap<String, ServiceMode>,
}

impl AddressRow {
    pub fn is_active(&self) -> bool {
        self.unsubscribed_at.is_none() && self.gone_at.is_none()
    }
}

#[derive(Debug, Clone)]
pub struct AddressOwner {
    pub address: AddressRow,
    pub subscriber_id: i64,
    pub subscriber_name: String,
    pub language: Language,
}

#[derive(Debug, Clone)]
pub struct SubscriberRow {
    pub id: i64,
    pub name: String,
    pub language: Language,
    pub audience: String,
    pub origin: SubscriberOrigin,
    pub created_at: Timestamp,
    pub addresses: Vec<AddressRow>,
    pub subscriptions: Vec<Subscription>,
    /// For citizens: the ids of the status-page services they follow.
    pub citizen_services: Vec<String>,
    /// Its own escalation policy; `None`: its audience's, if any.
    pub escalation: Option<EscalationPolicy>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeleteOutcome {
    Deleted { cancelled_deliveries: u64 },
    NotFound,
    ManagedByConfig,
}

/// Which kind of subscriber a listing keeps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SubscriberKind {
    /// Desks, offices and people an administrator or the configuration file added.
    Desk,
    /// Citizens who subscribed from the status page.
    Citizen,
}

/// The most subscribers one page holds.
pub const MAX_PAGE: u32 = 500;

/// The longest search text accepted, in characters.
pub const MAX_QUERY_CHARS: usize = 200;

/// A page of subscribers in id order, or the subscribers a count counts (which ignores the
/// cursors and the limit).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SubscriberFilter {
    /// Text the name, the audience, an address or a subscription's matchers contains, with ASCII
    /// letters of either case alike; `%`, `_` and `\` are plain characters.
    pub q: Option<String>,
    pub kind: Option<SubscriberKind>,
    /// Whether the search leaves webhook addresses out: a chat tool's URL is its credential,
    /// and whoever may not read it must not find it out a character at a time.
    pub hide_webhooks: bool,
    /// Only subscribers after this id (the next page).
    pub after: Option<i64>,
    /// Only subscribers before this id, the nearest ones (the previous page).
    pub before: Option<i64>,
    /// At most this many, up to [`MAX_PAGE`].
    pub limit: u32,
}

/// A page of subscribers in id order, and whether more lie beyond it in the direction read
/// (after the last row, or before the first when reading before a cursor).
#[derive(Debug, Clone, Default)]
pub struct SubscriberPage {
    pub rows: Vec<SubscriberRow>,
    pub more: bool,
}

/// What an edit changes; a field left `None` stays as it is. Every value has passed the checks
/// a new subscriber passes.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SubscriberEdit {
    pub name: Option<String>,
    pub language: Option<Language>,
    pub audience: Option<String>,
    /// The whole list of addresses of each channel named; channels not named keep theirs. An
    /// address kept keeps its row (its delivery history, its unsubscribe or gone mark, a chat's
    /// language and services); one whose value changed is a new address.
    pub addresses: BTreeMap<ChannelKind, Vec<String>>,
    pub subscriptions: Option<Vec<Subscription>>,
    /// The desk's own escalation policy: `Some(None)` leaves it to its audience's.
    pub escalation: Option<Option<EscalationPolicy>>,
}

/// What an edit did, for the audit log.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EditReport {
    pub added: Vec<ChannelKind>,
    pub removed: Vec<ChannelKind>,
    /// Pending deliveries to removed addresses, cancelled.
    pub cancelled_deliveries: u64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EditOutcome {
    Edited(EditReport),
    NotFound,
    /// Declared in `[[subscribers]]`: the file is applied again at every start.
    ManagedByConfig,
    /// A citizen's subscription is theirs, from the status page's preferences.
    Citizen,
}

/// A delivery to one of a subscriber's addresses, with the incident it told about.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct SubscriberDelivery {
    pub incident_id: i64,
    pub incident_title: String,
    #[serde(flatten)]
    pub delivery: super::DeliveryRow,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SyncReport {
    pub created: u64,
    pub updated: u64,
    pub removed: u64,
}

#[async_trait]
pub trait SubscriberStore: Send + Sync {
    async fn subscribers(&self) -> Result<Vec<SubscriberRow>>;
    /// The subscribers' version: a number that grows with every change to a subscriber, an
    /// address or a subscription.
    async fn subscribers_version(&self) -> Result<i64>;
    /// Every subscriber but the citizens, as the router reads them, with the subscribers'
    /// version read first: the rows are never older than the version they come with.
    async fn desks(&self) -> Result<(i64, Vec<SubscriberRow>)>;
    async fn subscriber(&self, id: i64) -> Result<Option<SubscriberRow>>;
    /// One page of the subscribers `filter` keeps, in id order; never more than [`MAX_PAGE`].
    async fn subscriber_page(&self, filter: &SubscriberFilter) -> Result<SubscriberPage>;
    /// How many subscribers `filter` keeps (its cursors and limit aside), without loading them.
    async fn count_subscribers(&self, filter: &SubscriberFilter) -> Result<u64>;
    /// Changes a subscriber made through the API or the console, in one transaction.
    async fn edit_subscriber(
        &self,
        id: i64,
        edit: &SubscriberEdit,
        now: Timestamp,
    ) -> Result<EditOutcome>;
    /// The latest `limit` deliveries to the subscriber's addresses, newest first (those to an
    /// address since removed are the incidents' history, no longer the subscriber's).
    async fn subscriber_deliveries(&self, id: i64, limit: u32) -> Result<Vec<SubscriberDelivery>>;
    async fn create_subscriber(&self, s: &ValidSubscriber, now: Timestamp) -> Result<i64>;
    async fn delete_subscriber(&self, id: i64) -> Result<DeleteOutcome>;
    /// Makes the config-managed subscribers exactly `wanted`, keyed by name. Unsubscribed and
    /// gone marks of addresses that stay are kept.
    async fn sync_config_subscribers(
        &self,
        wanted: &[ValidSubscriber],
        now: Timestamp,
    ) -> Result<SyncReport>;
    /// An address with its subscriber's name and language.
    async fn address(&self, id: i64) -> Result<Option<AddressOwner>>;
    /// Marks an address unsubscribed and cancels its pending deliveries. `false` if unknown.
    async fn unsubscribe_address(&self, id: i64, now: Timestamp) -> Result<bool>;
    /// Active addresses of the subscribers of `audience`: (channel, address, subscriber name).
    async fn audience_addresses(
        &self,
        audience: &str,
    ) -> Result<Vec<(ChannelKind, String, String)>>;
}
