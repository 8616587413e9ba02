//! Subscribers as the API, the configuration file and the unsubscribe links manage them: who they
//! are, their addresses and what they subscribed to. The router reads the same rows inside its
//! transaction ([`super::Tx::subscribers`]).

use std::collections::BTreeMap;

use async_trait::async_trait;
use jiff::Timestamp;
use serde::Serialize;

use super::Result;
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
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeleteOutcome {
    Deleted { cancelled_deliveries: u64 },
    NotFound,
    ManagedByConfig,
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
    async fn subscriber(&self, id: i64) -> Result<Option<SubscriberRow>>;
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
