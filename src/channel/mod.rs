//! Channels: the only code that talks to the outside world to deliver a message.
//!
//! Each channel is one file implementing [`Channel`]; the outbox calls [`Channel::send`] for one
//! recipient and acts on the [`SendError`] class (retry later, give up, or mark the address gone).

pub mod bluesky;
pub mod email;
pub mod facebook;
pub mod mastodon;
pub mod sms;
pub mod social;
pub mod status_page;
pub mod telegram;
pub mod x;

use std::time::Duration;

use async_trait::async_trait;

use crate::domain::subscriber::ChannelKind;
use crate::render::Markup;

/// One message to one recipient, with the per-recipient parts already filled in.
#[derive(Debug, Clone)]
pub struct Outgoing {
    /// Stable across retries: channels use it as an idempotency key or message id.
    pub delivery_id: i64,
    /// Every message of one incident shares it: channels that thread conversations use it.
    pub incident_id: i64,
    /// Which attempt this is, from 1: a retry may follow an attempt whose answer was lost.
    pub attempt: u32,
    pub recipient: String,
    pub recipient_name: String,
    pub subject: Option<String>,
    pub text: String,
    pub html: Option<String>,
    pub unsubscribe_url: String,
}

pub use crate::store::Receipt;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SendError {
    /// Worth trying again: throttling, a 4xx SMTP reply, a 5xx HTTP status, a timeout.
    #[error("temporary failure: {reason}")]
    Retry {
        after: Option<Duration>,
        reason: String,
    },
    /// Trying again will not help: the message itself was refused.
    #[error("rejected: {reason}")]
    Reject { reason: String },
    /// The address no longer exists (unknown mailbox, blocked bot, dead number).
    #[error("recipient gone: {reason}")]
    RecipientGone { reason: String },
    /// The provider asked to slow down: try again after `after`, without counting an attempt.
    #[error("throttled by the provider for {after:?}")]
    Throttled { after: Duration },
    /// The provider refused the channel's own credentials (a revoked token, a changed
    /// password): an outage of the channel, not of the message. The outbox pauses the channel,
    /// keeps its deliveries pending and tries again with back-off until they are accepted.
    #[error("credentials refused: {reason}")]
    Credentials { reason: String },
}

#[async_trait]
pub trait Channel: Send + Sync + 'static {
    fn kind(&self) -> ChannelKind;
    /// How the message body is written, for the per-recipient parts filled into it.
    fn body_markup(&self) -> Markup {
        Markup::Plain
    }
    async fn send(&self, msg: &Outgoing) -> Result<Receipt, SendError>;
}
