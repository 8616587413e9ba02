//! Chats that manage themselves (Telegram): single-use invites bind a chat to a subscriber, and
//! the chat then chooses its language and the services it follows or mutes.

use async_trait::async_trait;
use jiff::Timestamp;

use super::{AddressRow, Result, ServiceMode};
use crate::domain::subscriber::{ChannelKind, Language};

/// A chat bound to a subscriber: its address row and whose it is.
#[derive(Debug, Clone)]
pub struct ChatBinding {
    pub address: AddressRow,
    pub subscriber_id: i64,
    pub subscriber_name: String,
    pub subscriber_language: Language,
}

impl ChatBinding {
    /// The language the chat is spoken to in.
    pub fn language(&self) -> &Language {
        self.address
            .language
            .as_ref()
            .unwrap_or(&self.subscriber_language)
    }
}

/// What redeeming an invite did.
#[derive(Debug, Clone)]
pub enum Redeemed {
    /// The chat is now bound to the invite's subscriber (again, if it had stopped or was gone).
    Bound(ChatBinding),
    /// The chat already belongs to another subscriber; nothing changed.
    BoundElsewhere {
        subscriber_name: String,
    },
    Expired,
    AlreadyUsed,
    Unknown,
}

#[async_trait]
pub trait ChatStore {
    /// Stores an invite for `subscriber_id` under the SHA-256 of its token; `false` when there is
    /// no such subscriber.
    async fn create_invite(
        &self,
        subscriber_id: i64,
        channel: ChannelKind,
        token_sha256: &str,
        created_by: &str,
        now: Timestamp,
        expires_at: Timestamp,
    ) -> Result<bool>;
    /// Uses up an invite and binds `chat` to its subscriber, in one transaction.
    async fn redeem_invite(
        &self,
        channel: ChannelKind,
        token_sha256: &str,
        chat: &str,
        now: Timestamp,
    ) -> Result<Redeemed>;
    /// The subscriber `chat` is bound to, if any.
    async fn chat(&self, channel: ChannelKind, chat: &str) -> Result<Option<ChatBinding>>;
    /// Stops everything for an address (pending messages cancelled), or resumes it, clearing a
    /// stop or a "gone" mark.
    async fn set_address_stopped(
        &self,
        address_id: i64,
        stopped: bool,
        now: Timestamp,
    ) -> Result<()>;
    /// The address's own language; `None` falls back to the subscriber's.
    async fn set_address_language(
        &self,
        address_id: i64,
        language: Option<&Language>,
    ) -> Result<()>;
    /// Follows or mutes `service` for an address; `None` forgets what was said about it.
    async fn set_address_service(
        &self,
        address_id: i64,
        service: &str,
        mode: Option<ServiceMode>,
    ) -> Result<()>;
    /// A chat changed its id (a Telegram group that became a supergroup): its addresses and the
    /// deliveries not yet sent follow it. Returns how many addresses moved.
    async fn move_chat(&self, channel: ChannelKind, from: &str, to: &str) -> Result<u64>;
    /// Services seen in alerts, most recent first, to suggest what can be followed.
    async fn known_services(&self, limit: u32) -> Result<Vec<String>>;
}
