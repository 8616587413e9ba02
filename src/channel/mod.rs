//! Channels: the only code that talks to the outside world to deliver a message.
//!
//! A channel is one folder: its sender (implementing [`Channel`]), its settings section and their
//! checks (`settings.rs`), and its [`ChannelSpec`], listed once in [`registry`]. Wiring, checking
//! the configuration and the templates loop over the registry instead of naming channels; the
//! outbox calls [`Channel::send`] for one recipient and acts on the [`SendError`] class (retry
//! later, give up, or mark the address gone).

pub mod alarm;
pub mod appio;
pub mod bluesky;
pub mod email;
pub mod facebook;
pub mod failover;
pub mod log;
pub mod mastodon;
pub mod rate;
pub mod sms;
pub mod social;
pub mod status_page;
pub mod telegram;
pub mod voice;
pub mod webhook;
pub mod whatsapp;
pub mod x;

use std::any::Any;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;

use crate::domain::subscriber::ChannelKind;
use crate::render::{Buttons, Form, Markup};
use crate::settings::{ChannelSection, Validated};
use crate::store::Store;

/// Every channel Banditore has, in the order they are checked and started. Adding a channel is
/// one folder under `channel/` and one line here, with its `ChannelKind` variant (the compiler
/// then names every match to complete), its field in `settings::ChannelSettings`, its section in
/// `config/default.toml` and its templates. The store keeps a channel as a word and needs no
/// migration, except for a channel citizens may sign up by: `signups.channel` is checked to be
/// `email`, `sms` or `whatsapp`, the channels that can carry a confirmation code.
pub fn registry() -> &'static [&'static dyn ChannelSpec] {
    &[
        &email::Spec,
        &telegram::Spec,
        &sms::Spec,
        &mastodon::Spec,
        &bluesky::Spec,
        &x::Spec,
        &facebook::Spec,
        &status_page::Spec,
        &log::Spec,
        &webhook::Spec,
        &voice::Spec,
        &appio::Spec,
        &whatsapp::Spec,
    ]
}

/// The channel's entry in the registry: what it is, how its messages are rendered, how its
/// section is checked, and how its sender is built.
pub trait ChannelSpec: ChannelSection {
    /// Whether people are reached on it at an address of their own: notices to the operators
    /// (a paused channel) go through these.
    fn reaches_people(&self) -> bool {
        false
    }
    /// The sender, ready for the outbox; `None` when the channel is off.
    fn build(&self, v: &Validated, wiring: &Wiring<'_>) -> Result<Option<Built>, BuildError>;
}

/// The registry as configuration sees it: what `settings::validate` checks.
pub fn sections() -> Vec<&'static dyn ChannelSection> {
    registry()
        .iter()
        .map(|&s| s as &dyn ChannelSection)
        .collect()
}

/// How each registered channel's messages are rendered, for the template checks.
pub fn forms() -> Vec<(ChannelKind, Form)> {
    registry().iter().map(|s| (s.kind(), s.form())).collect()
}

/// The spec of `channel`, when it is registered.
pub fn spec(channel: ChannelKind) -> Option<&'static dyn ChannelSpec> {
    registry().iter().copied().find(|s| s.kind() == channel)
}

/// What a channel's sender may take from the application that builds it.
pub struct Wiring<'a> {
    pub store: Arc<dyn Store>,
    /// Stable across restarts and replicas: Message-IDs and idempotency keys carry it.
    pub deployment_id: &'a str,
    /// The deployment's key, for links the sender signs (delivery reports).
    pub key: &'a [u8],
    /// Where a sender raises what the operators must hear (a webhook receiver disabled).
    pub alarms: alarm::Alarms,
}

/// A sender and how the outbox runs it.
pub struct Built {
    pub channel: Arc<dyn Channel>,
    /// Sends in flight at once.
    pub concurrency: usize,
    /// A pace shared by every replica, `(per second, burst)`, kept in the store under the
    /// channel's name; `None` when the channel paces itself or needs no pace.
    pub rate: Option<(u32, u32)>,
    /// What other parts of the application share with the sender (Telegram's client and
    /// pacer, SMS delivery-report links), for them to take by type.
    pub shared: Option<Arc<dyn Any + Send + Sync>>,
}

impl Built {
    /// A sender with one send at a time and no shared pace.
    pub fn one_at_a_time(channel: Arc<dyn Channel>) -> Built {
        Built {
            channel,
            concurrency: 1,
            rate: None,
            shared: None,
        }
    }
}

/// A channel whose settings passed their checks could still not be built.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct BuildError(pub String);

impl BuildError {
    pub fn new(e: impl std::fmt::Display) -> BuildError {
        BuildError(e.to_string())
    }
}

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
    /// The language the message was rendered in (its template folder's: `it`, `en`…).
    pub language: String,
    pub subject: Option<String>,
    pub text: String,
    pub html: Option<String>,
    /// Empty when there is no list to leave (a draft's notice to the communications office).
    pub unsubscribe_url: String,
    /// Shown under the text by channels that can (Telegram); the others leave them out.
    pub buttons: Option<Buttons>,
    /// How this recipient says it has seen the incident, for a message to a desk (any audience
    /// but `public`): the page's link, which the templates write where they choose, and the
    /// token, for a channel that offers its own way (a Telegram button, a key pressed in a call).
    pub ack: Option<AckLink>,
}

/// A desk's way to acknowledge one incident, signed for its address (see `crate::unsubscribe`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AckLink {
    pub url: String,
    /// `<incident id>.<address id>.<signature>`, the last part of `url`.
    pub token: String,
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
    /// The recipient does not take messages on this channel, by their own choice (not on App
    /// IO, or the service turned off there): failed and not tried again, as expected rather than
    /// as a fault (logged at info, counted as `declined`). The address is kept.
    #[error("declined by the recipient: {reason}")]
    Declined { reason: String },
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
