//! `channels.mastodon`: the region's account on a Mastodon instance, a destination of the
//! `public` audience, so it posts only what the communications office approved.

use std::path::PathBuf;

use serde::Deserialize;

use crate::domain::Severity;
use crate::domain::subscriber::{ChannelKind, ValidSubscriber};
use crate::settings::check::{check_timeout, check_url, public_account, require_approval, secret};
use crate::settings::{Dur, Secret, Settings, secret_source, word_enum};

word_enum! {
    pub enum MastodonVisibility {
        Public => "public",
        Unlisted => "unlisted",
        Private => "private",
        Direct => "direct",
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

/// Checks `channels.mastodon` when the account is enabled and reads its secret.
pub fn validate(settings: &Settings, push: &mut impl FnMut(&str, String)) -> Option<Secret> {
    let m = &settings.channels.mastodon;
    require_approval(settings, ChannelKind::Mastodon, m.enabled, push);
    if !m.enabled {
        return None;
    }
    check_url("channels.mastodon.base_url", &m.base_url, push);
    let token = secret("channels.mastodon.token", m.token(), "token", push);
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
    token
}

/// The account as a subscriber of the `public` audience; its address is the instance's host.
pub fn subscribers(settings: &Settings) -> Vec<ValidSubscriber> {
    let m = &settings.channels.mastodon;
    let host = url::Url::parse(&m.base_url)
        .ok()
        .and_then(|u| u.host_str().map(str::to_owned))
        .unwrap_or_else(|| m.base_url.clone());
    public_account(
        settings,
        ChannelKind::Mastodon,
        "Account Mastodon pubblico",
        m.enabled,
        host,
        m.min_severity,
    )
}
