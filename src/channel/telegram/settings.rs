//! `channels.telegram`: the bot's token, how it hears updates (polling or a webhook), the
//! public channel citizens follow, and the pace Telegram allows.

use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use crate::domain::Severity;
use crate::domain::subscriber::{ChannelKind, TelegramChat, ValidSubscriber};
use crate::settings::check::{check_url, public_account};
use crate::settings::{Dur, Secret, SecretSource, Settings, word_enum};

/// Shortest secret token accepted in webhook mode, as for API tokens.
const MIN_TOKEN_LEN: usize = 16;

word_enum! {
    pub enum TelegramMode {
        /// The leading replica long-polls `getUpdates`.
        Polling => "polling",
        /// Telegram posts updates to `<public_url>/telegram/webhook`.
        Webhook => "webhook",
    }
}

#[derive(Debug, Clone, Deserialize)]
pub struct TelegramSettings {
    pub enabled: bool,
    pub token: Option<Secret>,
    pub token_file: Option<PathBuf>,
    pub token_env: Option<String>,
    pub api_url: String,
    pub mode: TelegramMode,
    /// Checked on `X-Telegram-Bot-Api-Secret-Token` in webhook mode.
    pub secret_token: Option<Secret>,
    pub secret_token_file: Option<PathBuf>,
    pub secret_token_env: Option<String>,
    pub public_channel: String,
    /// The public channel hears incidents this severe or worse, once approved.
    pub public_channel_min_severity: Severity,
    pub rate_per_second: u32,
    pub concurrency: u32,
    pub timeout: Dur,
    pub invite_ttl: Dur,
}

impl TelegramSettings {
    pub fn token(&self) -> SecretSource {
        SecretSource {
            value: self.token.clone(),
            file: self.token_file.clone(),
            env: self.token_env.clone(),
        }
    }

    pub fn secret_token(&self) -> SecretSource {
        SecretSource {
            value: self.secret_token.clone(),
            file: self.secret_token_file.clone(),
            env: self.secret_token_env.clone(),
        }
    }
}

/// The Telegram bot's secrets, resolved.
#[derive(Debug, Clone)]
pub struct TelegramKeys {
    pub token: Secret,
    /// Webhook mode: what Telegram must send in `X-Telegram-Bot-Api-Secret-Token`.
    pub secret_token: Option<Secret>,
}

/// The subscriber that stands for `channels.telegram.public_channel`.
pub const PUBLIC_CHANNEL_SUBSCRIBER: &str = "Canale Telegram pubblico";

/// `channels.telegram`: the token, the API address, webhook mode's secret, the public channel.
pub fn validate(settings: &Settings, push: &mut impl FnMut(&str, String)) -> Option<TelegramKeys> {
    let t = &settings.channels.telegram;
    if !t.enabled {
        return None;
    }
    let token = match t.token().resolve("token") {
        // @BotFather's tokens look like 123456789:AAE…; the part before the colon is the bot's id.
        Ok(Some(token))
            if token
                .expose()
                .split_once(':')
                .is_some_and(|(id, rest)| id.parse::<u64>().is_ok() && !rest.is_empty()) =>
        {
            Some(token)
        }
        Ok(Some(_)) => {
            push(
                "channels.telegram.token",
                "is not a bot token like 123456789:AAE… (from @BotFather)".into(),
            );
            None
        }
        Ok(None) => {
            push(
                "channels.telegram.token",
                "give `token`, `token_file` or `token_env`".into(),
            );
            None
        }
        Err(e) => {
            push("channels.telegram.token", e);
            None
        }
    };
    check_url("channels.telegram.api_url", &t.api_url, push);
    let secret_token = match t.secret_token().resolve("secret_token") {
        Ok(secret) => secret,
        Err(e) => {
            push("channels.telegram.secret_token", e);
            None
        }
    };
    if t.mode == TelegramMode::Webhook {
        match &secret_token {
            // Telegram's rule for setWebhook's secret_token.
            Some(s)
                if (1..=256).contains(&s.expose().len())
                    && s
                        .expose()
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-') =>
            {
                if s.expose().len() < MIN_TOKEN_LEN {
                    push(
                        "channels.telegram.secret_token",
                        format!("is shorter than {MIN_TOKEN_LEN} characters"),
                    );
                }
            }
            Some(_) => push(
                "channels.telegram.secret_token",
                "use 1–256 letters, digits, `_` or `-` (Telegram's rule)".into(),
            ),
            None => push(
                "channels.telegram.secret_token",
                "webhook mode needs `secret_token`, `secret_token_file` or `secret_token_env`, so that only Telegram can post updates".into(),
            ),
        }
    }
    if !t.public_channel.is_empty()
        && let Err(e) = TelegramChat::parse(&t.public_channel)
    {
        push("channels.telegram.public_channel", e);
    }
    if t.rate_per_second == 0 {
        push(
            "channels.telegram.rate_per_second",
            "must be at least 1 (Telegram allows about 30)".into(),
        );
    }
    if t.concurrency == 0 {
        push("channels.telegram.concurrency", "must be at least 1".into());
    }
    if t.timeout.get() > settings.outbox.send_timeout.get() {
        push(
            "channels.telegram.timeout",
            format!(
                "must be at most outbox.send_timeout ({:?})",
                settings.outbox.send_timeout.get()
            ),
        );
    }
    if t.invite_ttl.get() < Duration::from_secs(60) {
        push("channels.telegram.invite_ttl", "must be at least 1m".into());
    }
    token.map(|token| TelegramKeys {
        token,
        secret_token,
    })
}

/// The public channel as a destination of the `public` audience: what the communications office
/// approves for citizens is posted there too.
pub fn subscribers(settings: &Settings) -> Vec<ValidSubscriber> {
    let t = &settings.channels.telegram;
    match TelegramChat::parse(&t.public_channel) {
        Ok(chat) => public_account(
            settings,
            ChannelKind::Telegram,
            PUBLIC_CHANNEL_SUBSCRIBER,
            t.enabled,
            chat.to_string(),
            t.public_channel_min_severity,
        ),
        Err(_) => Vec::new(),
    }
}
