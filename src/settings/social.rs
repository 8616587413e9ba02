//! `channels.mastodon`, `channels.bluesky`, `channels.x`, `channels.facebook`: the region's
//! accounts. Each enabled account is a destination of the `public` audience, so it posts only
//! what the communications office approved.

use std::path::PathBuf;

use serde::{Deserialize, Deserializer};

use super::{Dur, Secret, SecretSource, Settings};
use crate::domain::Severity;
use crate::domain::subscriber::{ChannelKind, Subscription, ValidSubscriber};

macro_rules! secret_source {
    ($name:ident, $value:ident, $file:ident, $env:ident) => {
        pub fn $name(&self) -> SecretSource {
            SecretSource {
                value: self.$value.clone(),
                file: self.$file.clone(),
                env: self.$env.clone(),
            }
        }
    };
}

word_enum! {
    pub enum MastodonVisibility {
        Public => "public",
        Unlisted => "unlisted",
        Private => "private",
        Direct => "direct",
    }
}

word_enum! {
    pub enum FacebookUpdates {
        /// Updates are comments on the incident's first post.
        Comments => "comments",
        /// Every update is a post of its own on the Page.
        Posts => "posts",
    }
}

#[derive(Debug, Clone, Deserialize)]
pub struct MastodonSettings {
    pub enabled: bool,
    /// The instance, e.g. `https://mastodon.example`.
    pub base_url: String,
    pub token: Option<Secret>,
    pub token_file: Option<PathBuf>,
    pub token_env: Option<String>,
    pub visibility: MastodonVisibility,
    /// The instance's `configuration.statuses.max_characters`.
    pub max_characters: usize,
    pub characters_reserved_per_url: usize,
    pub min_severity: Severity,
    pub timeout: Dur,
}

impl MastodonSettings {
    secret_source!(token, token, token_file, token_env);
}

#[derive(Debug, Clone, Deserialize)]
pub struct BlueskySettings {
    pub enabled: bool,
    /// The account's PDS (`https://bsky.social` for most accounts).
    pub base_url: String,
    /// The handle (`regione.bsky.social`), its email or its DID.
    pub identifier: String,
    /// An app password, not the account's own.
    pub password: Option<Secret>,
    pub password_file: Option<PathBuf>,
    pub password_env: Option<String>,
    pub min_severity: Severity,
    pub timeout: Dur,
}

impl BlueskySettings {
    secret_source!(password, password, password_file, password_env);
}

#[derive(Debug, Clone, Deserialize)]
pub struct XSettings {
    pub enabled: bool,
    pub base_url: String,
    /// OAuth 1.0a user context: the app's key and secret, the account's token and secret.
    pub consumer_key: String,
    pub consumer_secret: Option<Secret>,
    pub consumer_secret_file: Option<PathBuf>,
    pub consumer_secret_env: Option<String>,
    pub access_token: String,
    pub access_token_secret: Option<Secret>,
    pub access_token_secret_file: Option<PathBuf>,
    pub access_token_secret_env: Option<String>,
    pub min_severity: Severity,
    pub timeout: Dur,
}

impl XSettings {
    secret_source!(
        consumer_secret,
        consumer_secret,
        consumer_secret_file,
        consumer_secret_env
    );
    secret_source!(
        access_token_secret,
        access_token_secret,
        access_token_secret_file,
        access_token_secret_env
    );
}

#[derive(Debug, Clone, Deserialize)]
pub struct FacebookSettings {
    pub enabled: bool,
    pub base_url: String,
    /// The Graph API version in paths, `v23.0`.
    pub api_version: String,
    pub page_id: String,
    /// A Page access token (from `GET /{user-id}/accounts`).
    pub page_token: Option<Secret>,
    pub page_token_file: Option<PathBuf>,
    pub page_token_env: Option<String>,
    pub updates: FacebookUpdates,
    pub min_severity: Severity,
    pub timeout: Dur,
}

impl FacebookSettings {
    secret_source!(page_token, page_token, page_token_file, page_token_env);
}

/// The accounts' secrets, read; `None` for a network that is off.
#[derive(Debug, Clone, Default)]
pub struct SocialKeys {
    pub mastodon: Option<Secret>,
    pub bluesky: Option<Secret>,
    /// Consumer secret and access token secret.
    pub x: Option<(Secret, Secret)>,
    pub facebook: Option<Secret>,
}

/// Reports `raw` at `path` unless it is an http(s) URL with a host.
pub(super) fn check_url(path: &str, raw: &str, push: &mut impl FnMut(&str, String)) {
    match url::Url::parse(raw) {
        Ok(u) if matches!(u.scheme(), "http" | "https") && u.host().is_some() => {}
        _ => push(path, format!("`{raw}` is not an http(s) URL")),
    }
}

fn secret(
    path: &str,
    source: SecretSource,
    key: &str,
    push: &mut impl FnMut(&str, String),
) -> Option<Secret> {
    match source.resolve(key) {
        Ok(Some(s)) => Some(s),
        Ok(None) => {
            push(path, format!("give `{key}`, `{key}_file` or `{key}_env`"));
            None
        }
        Err(e) => {
            push(path, e);
            None
        }
    }
}

fn check_timeout(
    path: &str,
    timeout: Dur,
    settings: &Settings,
    push: &mut impl FnMut(&str, String),
) {
    if timeout.get().is_zero() || timeout.get() > settings.outbox.send_timeout.get() {
        push(
            path,
            "must be more than 0 and at most outbox.send_timeout (a send must end within it)"
                .into(),
        );
    }
}

/// Checks every enabled account and reads its secrets.
pub fn validate_social(settings: &Settings, push: &mut impl FnMut(&str, String)) -> SocialKeys {
    let c = &settings.channels;
    let mut keys = SocialKeys::default();
    // The accounts post what the `public` audience hears: that must wait for the office.
    let (policy, _) = settings.approval.policy("public");
    for (channel, enabled) in [
        ("mastodon", c.mastodon.enabled),
        ("bluesky", c.bluesky.enabled),
        ("x", c.x.enabled),
        ("facebook", c.facebook.enabled),
    ] {
        if enabled && policy == super::ApprovalPolicy::Auto {
            push(
                &format!("channels.{channel}.enabled"),
                "the account posts public statements, but approval.audiences.public lets them out without approval: set its policy to \"approval\" or \"approval_with_timeout\"".into(),
            );
        }
    }
    if c.mastodon.enabled {
        let m = &c.mastodon;
        check_url("channels.mastodon.base_url", &m.base_url, push);
        keys.mastodon = secret("channels.mastodon.token", m.token(), "token", push);
        if m.max_characters < 100 {
            push(
                "channels.mastodon.max_characters",
                "must be at least 100 (Mastodon's default is 500)".into(),
            );
        }
        if m.characters_reserved_per_url == 0 {
            push(
                "channels.mastodon.characters_reserved_per_url",
                "must be at least 1 (Mastodon's default is 23)".into(),
            );
        }
        check_timeout("channels.mastodon.timeout", m.timeout, settings, push);
    }
    if c.bluesky.enabled {
        let b = &c.bluesky;
        check_url("channels.bluesky.base_url", &b.base_url, push);
        if b.identifier.trim().is_empty() {
            push(
                "channels.bluesky.identifier",
                "give the account's handle (regione.bsky.social), email or DID".into(),
            );
        }
        keys.bluesky = secret("channels.bluesky.password", b.password(), "password", push);
        check_timeout("channels.bluesky.timeout", b.timeout, settings, push);
    }
    if c.x.enabled {
        let x = &c.x;
        check_url("channels.x.base_url", &x.base_url, push);
        for (key, value) in [
            ("consumer_key", &x.consumer_key),
            ("access_token", &x.access_token),
        ] {
            if value.trim().is_empty() {
                push(
                    &format!("channels.x.{key}"),
                    "is empty (OAuth 1.0a user context needs the app's consumer key and the account's access token)".into(),
                );
            }
        }
        let consumer = secret(
            "channels.x.consumer_secret",
            x.consumer_secret(),
            "consumer_secret",
            push,
        );
        let token = secret(
            "channels.x.access_token_secret",
            x.access_token_secret(),
            "access_token_secret",
            push,
        );
        keys.x = consumer.zip(token);
        check_timeout("channels.x.timeout", x.timeout, settings, push);
    }
    if c.facebook.enabled {
        let f = &c.facebook;
        check_url("channels.facebook.base_url", &f.base_url, push);
        if f.page_id.is_empty() || !f.page_id.chars().all(|c| c.is_ascii_digit()) {
            push(
                "channels.facebook.page_id",
                format!("`{}` is not a Page id (digits only)", f.page_id),
            );
        }
        let version_ok = f
            .api_version
            .strip_prefix('v')
            .and_then(|v| v.split_once('.'))
            .is_some_and(|(a, b)| {
                !a.is_empty()
                    && !b.is_empty()
                    && a.chars().chain(b.chars()).all(|c| c.is_ascii_digit())
            });
        if !version_ok {
            push(
                "channels.facebook.api_version",
                format!("`{}` is not a Graph API version like v23.0", f.api_version),
            );
        }
        keys.facebook = secret(
            "channels.facebook.page_token",
            f.page_token(),
            "page_token",
            push,
        );
        check_timeout("channels.facebook.timeout", f.timeout, settings, push);
    }
    keys
}

/// The name of the config subscriber standing for a network's account.
pub fn account_subscriber(channel: ChannelKind) -> &'static str {
    match channel {
        ChannelKind::Mastodon => "Account Mastodon pubblico",
        ChannelKind::Bluesky => "Account Bluesky pubblico",
        ChannelKind::X => "Account X pubblico",
        _ => "Pagina Facebook pubblica",
    }
}

/// Each enabled account as a subscriber of the `public` audience: what the communications
/// office approves for citizens is posted there. Its address names the account.
pub fn account_subscribers(settings: &Settings) -> Vec<ValidSubscriber> {
    let c = &settings.channels;
    let host = |raw: &str| {
        url::Url::parse(raw)
            .ok()
            .and_then(|u| u.host_str().map(str::to_owned))
            .unwrap_or_else(|| raw.to_owned())
    };
    let accounts = [
        (
            ChannelKind::Mastodon,
            c.mastodon.enabled,
            host(&c.mastodon.base_url),
            c.mastodon.min_severity,
        ),
        (
            ChannelKind::Bluesky,
            c.bluesky.enabled,
            c.bluesky.identifier.trim().to_owned(),
            c.bluesky.min_severity,
        ),
        (
            ChannelKind::X,
            c.x.enabled,
            // An access token starts with the account's user id.
            c.x.access_token
                .split_once('-')
                .map_or("account", |(id, _)| id)
                .to_owned(),
            c.x.min_severity,
        ),
        (
            ChannelKind::Facebook,
            c.facebook.enabled,
            c.facebook.page_id.clone(),
            c.facebook.min_severity,
        ),
    ];
    accounts
        .into_iter()
        .filter(|(_, enabled, address, _)| *enabled && !address.is_empty())
        .map(|(channel, _, address, min_severity)| ValidSubscriber {
            name: account_subscriber(channel).to_owned(),
            language: settings.routing.default_language.clone(),
            audience: "public".to_owned(),
            addresses: vec![(channel, address)],
            subscriptions: vec![Subscription {
                matchers: Vec::new(),
                min_severity,
                channels: vec![channel],
            }],
        })
        .collect()
}
