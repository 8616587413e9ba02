//! Telegram through teloxide: HTML messages to chats, groups and channels, with the buttons a
//! message carries (a draft's notice: Approve, Reject, Open) as an inline keyboard. The bot that
//! lets a desk bind its chat and choose what it follows is an input and lives in `crate::bot`;
//! it shares this channel's client construction (`bot`) and pacer.
//!
//! Telegram's answers decide the outcome: a 429 holds every chat for `retry_after` and defers
//! the message without counting an attempt; a chat that blocked the bot, left, or no longer
//! exists is gone; a message Telegram refuses (markup, length) is failed; a refused bot token
//! pauses the channel; anything else, including 5xx and network errors, is retried with
//! backoff.

mod pace;
pub mod settings;

use std::time::Duration;

use async_trait::async_trait;
use teloxide::payloads::SendMessageSetters;
use teloxide::prelude::Requester;
use teloxide::types::{
    ChatId, InlineKeyboardButton, InlineKeyboardMarkup, LinkPreviewOptions, ParseMode, Recipient,
};
use teloxide::{ApiError, Bot, RequestError};

pub use pace::Pacer;

use super::{Channel, Outgoing, Receipt, SendError};
use crate::domain::subscriber::{ChannelKind, TelegramChat};
use crate::render::{ButtonAction, Buttons, Markup, telegram};
use crate::settings::Secret;
use std::sync::Arc;

#[derive(Debug, thiserror::Error)]
pub enum TelegramSetupError {
    #[error("channels.telegram.api_url: `{0}` is not a URL")]
    ApiUrl(String),
    #[error("channels.telegram: cannot build the HTTP client: {0}")]
    Client(String),
}

/// A teloxide bot talking to `api_url` (the real Bot API, or a local one).
pub fn bot(token: &Secret, api_url: &str, timeout: Duration) -> Result<Bot, TelegramSetupError> {
    let url = url::Url::parse(api_url).map_err(|_| TelegramSetupError::ApiUrl(api_url.into()))?;
    let client = teloxide::net::default_reqwest_settings()
        .timeout(timeout)
        .build()
        .map_err(|e| TelegramSetupError::Client(e.to_string()))?;
    Ok(Bot::with_client(token.expose(), client).set_api_url(url))
}

pub struct TelegramChannel {
    bot: Bot,
    pacer: Arc<Pacer>,
}

impl TelegramChannel {
    pub fn new(bot: Bot, pacer: Arc<Pacer>) -> TelegramChannel {
        TelegramChannel { bot, pacer }
    }
}

/// Where teloxide sends a message for an address.
pub fn recipient(chat: &TelegramChat) -> Recipient {
    match chat {
        TelegramChat::Id(id) => Recipient::Id(ChatId(*id)),
        TelegramChat::Username(name) => Recipient::ChannelUsername(format!("@{name}")),
    }
}

#[async_trait]
impl Channel for TelegramChannel {
    fn kind(&self) -> ChannelKind {
        ChannelKind::Telegram
    }

    fn body_markup(&self) -> Markup {
        Markup::TelegramHtml
    }

    async fn send(&self, msg: &Outgoing) -> Result<Receipt, SendError> {
        let chat =
            TelegramChat::parse(&msg.recipient).map_err(|reason| SendError::Reject { reason })?;
        // Rendering already kept the text within the limit; a long name filled in since may not.
        let text = telegram::truncate(&msg.text, telegram::MAX_LEN);
        // Telegram's retry_after can outlast the outbox's time limit for a send: give the
        // delivery back (uncounted) rather than wait it out here.
        // Held until Telegram has answered, so that the pacer knows when the message arrived.
        let _turn = self
            .pacer
            .turn(&chat)
            .await
            .map_err(|after| SendError::Throttled { after })?;
        let keyboard = msg.buttons.as_ref().map(keyboard);
        let mut to = recipient(&chat);
        let mut moved = false;
        loop {
            let mut request = self
                .bot
                .send_message(to.clone(), text.clone())
                .parse_mode(ParseMode::Html)
                .link_preview_options(LinkPreviewOptions {
                    is_disabled: true,
                    url: None,
                    prefer_small_media: false,
                    prefer_large_media: false,
                    show_above_text: false,
                });
            if let Some(keyboard) = &keyboard {
                request = request.reply_markup(keyboard.clone());
            }
            let sent = request.await;
            match sent {
                Ok(message) => {
                    return Ok(Receipt {
                        provider_id: Some(message.id.0.to_string()),
                        ..Receipt::default()
                    });
                }
                // The group became a supergroup: send there now; the bot moves the address when
                // it sees the migration message.
                Err(RequestError::MigrateToChatId(new)) if !moved => {
                    tracing::info!(from = %msg.recipient, to = %new, "group moved to a supergroup; sending there");
                    to = Recipient::Id(new);
                    moved = true;
                }
                Err(e) => return Err(self.classify(e)),
            }
        }
    }
}

/// Whether Telegram takes `url` for a button: the Bot API asks for an "HTTP or tg:// URL", and
/// its servers refuse the whole message for a web host without a dot (`http://localhost`, an
/// intranet name as `server.public_url`), as bot authors have long reported.
fn telegram_opens(url: &url::Url) -> bool {
    match url.scheme() {
        "http" | "https" => url.host_str().is_some_and(|h| h.contains('.')),
        "tg" => true,
        _ => false,
    }
}

/// A message's buttons as Telegram's inline keyboard. A link Telegram would refuse is left out
/// (the text carries it too), so that the message still goes.
fn keyboard(buttons: &Buttons) -> InlineKeyboardMarkup {
    let rows = buttons.0.iter().map(|row| {
        row.iter()
            .filter_map(|b| match &b.action {
                ButtonAction::Callback(data) => Some(InlineKeyboardButton::callback(
                    b.label.clone(),
                    data.clone(),
                )),
                ButtonAction::Url(url) => url::Url::parse(url)
                    .ok()
                    .filter(telegram_opens)
                    .map(|u| InlineKeyboardButton::url(b.label.clone(), u)),
            })
            .collect::<Vec<_>>()
    });
    InlineKeyboardMarkup::new(rows.filter(|row| !row.is_empty()))
}

impl TelegramChannel {
    fn classify(&self, e: RequestError) -> SendError {
        match e {
            RequestError::RetryAfter(after) => {
                let after = after.duration().max(Duration::from_secs(1));
                self.pacer.freeze(after);
                SendError::Throttled { after }
            }
            RequestError::MigrateToChatId(to) => SendError::Retry {
                after: None,
                reason: format!("the group moved twice, last to {to}"),
            },
            RequestError::Api(api) => classify_api(api),
            RequestError::Network(e) => SendError::Retry {
                after: None,
                reason: format!("Telegram unreachable: {e}"),
            },
            RequestError::InvalidJson { raw, .. } => SendError::Retry {
                after: None,
                reason: format!(
                    "Telegram answered something that is not the Bot API: {}",
                    raw.chars().take(200).collect::<String>()
                ),
            },
            RequestError::Io(e) => SendError::Retry {
                after: None,
                reason: e.to_string(),
            },
        }
    }
}

/// Telegram's own errors: gone recipients, refused messages, and the rest worth retrying.
fn classify_api(api: ApiError) -> SendError {
    let reason = api.to_string();
    match api {
        ApiError::BotBlocked
        | ApiError::UserDeactivated
        | ApiError::BotKicked
        | ApiError::BotKickedFromSupergroup
        | ApiError::BotKickedFromChannel
        | ApiError::ChatNotFound
        | ApiError::UserNotFound
        | ApiError::GroupDeactivated
        | ApiError::CantInitiateConversation
        | ApiError::CantTalkWithBots
        | ApiError::NotEnoughRightsToPostMessages => SendError::RecipientGone { reason },
        ApiError::MessageIsTooLong
        | ApiError::MessageTextIsEmpty
        | ApiError::CantParseEntities(_) => SendError::Reject { reason },
        ApiError::Unknown(text) if text.starts_with("Forbidden:") => {
            SendError::RecipientGone { reason: text }
        }
        ApiError::Unknown(text) if text.starts_with("Bad Request:") => {
            SendError::Reject { reason: text }
        }
        ApiError::InvalidToken => SendError::Credentials {
            reason: format!(
                "Telegram refuses the bot token ({reason}): check channels.telegram.token"
            ),
        },
        _ => SendError::Retry {
            after: None,
            reason,
        },
    }
}

/// What the bot shares with the Telegram sender: the client and the pace of each chat.
pub struct Shared {
    pub bot: Bot,
    pub pacer: Arc<Pacer>,
}

/// Telegram in the registry: HTML messages to chats, and the bot's answers.
pub struct Spec;

impl crate::settings::ChannelSection for Spec {
    fn kind(&self) -> ChannelKind {
        ChannelKind::Telegram
    }

    fn form(&self) -> crate::render::Form {
        crate::render::Form::Telegram
    }

    fn validate(
        &self,
        s: &crate::settings::Settings,
        keys: &mut crate::settings::ChannelKeys,
        mut push: &mut dyn FnMut(&str, String),
    ) {
        if let Some(k) = settings::validate(s, &mut push) {
            keys.insert(ChannelKind::Telegram, k);
        }
    }

    fn subscribers(
        &self,
        s: &crate::settings::Settings,
    ) -> Vec<crate::domain::subscriber::ValidSubscriber> {
        settings::subscribers(s)
    }
}

impl super::ChannelSpec for Spec {
    fn reaches_people(&self) -> bool {
        true
    }

    fn build(
        &self,
        v: &crate::settings::Validated,
        _wiring: &super::Wiring<'_>,
    ) -> Result<Option<super::Built>, super::BuildError> {
        let t = &v.settings.channels.telegram;
        if !t.enabled {
            return Ok(None);
        }
        let keys = v
            .channels
            .get::<settings::TelegramKeys>(ChannelKind::Telegram)
            .ok_or_else(|| super::BuildError::new("channels.telegram: enabled without a token"))?;
        let client =
            bot(&keys.token, &t.api_url, t.timeout.get()).map_err(super::BuildError::new)?;
        let pacer = Arc::new(Pacer::new(t.rate_per_second));
        Ok(Some(super::Built {
            channel: Arc::new(TelegramChannel::new(client.clone(), pacer.clone())),
            concurrency: t.concurrency as usize,
            // Telegram counts per second: sends evenly spaced, never a burst.
            rate: Some((t.rate_per_second, 1)),
            shared: Some(Arc::new(Shared { bot: client, pacer })),
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_link_button_goes_only_where_telegram_opens_it() {
        let opens = |u: &str| telegram_opens(&url::Url::parse(u).unwrap());
        assert!(opens("https://banditore.asl.example/console/drafts/1"));
        assert!(opens("tg://resolve?domain=regione_avvisi"));
        assert!(!opens("http://localhost:8080/console/drafts/1"));
        assert!(!opens("https://banditore/console"));
        assert!(!opens("ftp://files.asl.example/"));
        assert!(!opens("mailto:urp@asl.example"));
    }

    #[test]
    fn telegram_errors_are_classified() {
        assert!(matches!(
            classify_api(ApiError::BotBlocked),
            SendError::RecipientGone { .. }
        ));
        assert!(matches!(
            classify_api(ApiError::ChatNotFound),
            SendError::RecipientGone { .. }
        ));
        assert!(matches!(
            classify_api(ApiError::MessageIsTooLong),
            SendError::Reject { .. }
        ));
        assert!(matches!(
            classify_api(ApiError::Unknown(
                "Forbidden: bot can't initiate conversation with a user".into()
            )),
            SendError::RecipientGone { .. }
        ));
        assert!(matches!(
            classify_api(ApiError::Unknown("Internal Server Error".into())),
            SendError::Retry { .. }
        ));
        assert!(matches!(
            classify_api(ApiError::InvalidToken),
            SendError::Credentials { .. }
        ));
    }
}
