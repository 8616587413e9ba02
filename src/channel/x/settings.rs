//! `channels.x`: the region's X account (OAuth 1.0a user context), a destination of the
//! `public` audience, so it posts only what the communications office approved.

use std::path::PathBuf;

use serde::Deserialize;

use crate::domain::Severity;
use crate::domain::subscriber::{ChannelKind, ValidSubscriber};
use crate::settings::check::{check_timeout, check_url, public_account, require_approval, secret};
use crate::settings::{Dur, Secret, Settings, secret_source};

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

/// Checks `channels.x` when the account is enabled and reads its secret.
pub fn validate(
    settings: &Settings,
    push: &mut impl FnMut(&str, String),
) -> Option<(Secret, Secret)> {
    let x = &settings.channels.x;
    require_approval(settings, ChannelKind::X, x.enabled, push);
    if !x.enabled {
        return None;
    }
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
    check_timeout("channels.x.timeout", x.timeout, settings, push);
    consumer.zip(token)
}

/// The account as a subscriber of the `public` audience; its address is the user id.
pub fn subscribers(settings: &Settings) -> Vec<ValidSubscriber> {
    let x = &settings.channels.x;
    // An access token starts with the account's user id.
    let id = x
        .access_token
        .split_once('-')
        .map_or("account", |(id, _)| id)
        .to_owned();
    public_account(
        settings,
        ChannelKind::X,
        "Account X pubblico",
        x.enabled,
        id,
        x.min_severity,
    )
}
