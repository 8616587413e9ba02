//! What the HTTP side needs of the Telegram bot, so that `web/` never talks to Telegram itself:
//! the bot's username, learned once from Telegram for the links that open a chat with it
//! (subscribers' invites, the console's account link, citizens' sign-ups), and the hand-over of
//! an update Telegram posted to the webhook to the bot's dispatcher.

use std::time::Duration;

use teloxide::Bot;
use teloxide::prelude::Requester;
use teloxide::types::Update;
use tokio::sync::OnceCell;

use super::UpdateSender;
use crate::settings::Secret;

/// The bot as the web side holds it.
pub struct TelegramWeb {
    pub bot: Bot,
    /// Learned from Telegram (`getMe`) the first time an invite link is made.
    pub username: OnceCell<String>,
    pub invite_ttl: Duration,
    /// Webhook mode: the secret Telegram sends, and where updates go.
    pub webhook: Option<(Secret, UpdateSender)>,
}

/// The bot's username, asked of Telegram (`getMe`) once; `None` while Telegram cannot be
/// reached.
pub async fn bot_username(telegram: &TelegramWeb) -> Option<String> {
    let name = telegram
        .username
        .get_or_try_init(|| async {
            telegram
                .bot
                .get_me()
                .await
                .map(|me| me.username().to_owned())
        })
        .await;
    match name {
        Ok(name) => Some(name.clone()),
        Err(e) => {
            tracing::warn!(error = %e, "cannot learn the bot's username from Telegram");
            None
        }
    }
}

/// Why a webhook body could not be handed to the bot.
#[derive(Debug, thiserror::Error)]
pub enum HandOver {
    #[error("not a Telegram update: {0}")]
    NotAnUpdate(#[from] serde_json::Error),
    #[error("the bot is shutting down")]
    ShuttingDown,
}

/// Reads one update Telegram posted and hands it to the bot's dispatcher.
pub fn hand_over(updates: &UpdateSender, body: &[u8]) -> Result<(), HandOver> {
    let update: Update = serde_json::from_slice(body)?;
    updates.send(update).map_err(|_| HandOver::ShuttingDown)
}
