//! `channels.facebook`: the region's Facebook Page, a destination of the `public` audience,
//! so it posts only what the communications office approved.

use std::path::PathBuf;

use serde::Deserialize;

use crate::domain::Severity;
use crate::domain::subscriber::{ChannelKind, ValidSubscriber};
use crate::settings::check::{check_timeout, check_url, public_account, require_approval, secret};
use crate::settings::{Dur, Secret, Settings, secret_source, word_enum};

word_enum! {
    pub enum FacebookUpdates {
        /// Updates are comments on the incident's first post.
        Comments => "comments",
        /// Every update is a post of its own on the Page.
        Posts => "posts",
    }
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

/// Checks `channels.facebook` when the account is enabled and reads its secret.
pub fn validate(settings: &Settings, push: &mut impl FnMut(&str, String)) -> Option<Secret> {
    let f = &settings.channels.facebook;
    require_approval(settings, ChannelKind::Facebook, f.enabled, push);
    if !f.enabled {
        return None;
    }
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
            !a.is_empty() && !b.is_empty() && a.chars().chain(b.chars()).all(|c| c.is_ascii_digit())
        });
    if !version_ok {
        push(
            "channels.facebook.api_version",
            format!("`{}` is not a Graph API version like v23.0", f.api_version),
        );
    }
    let page_token = secret(
        "channels.facebook.page_token",
        f.page_token(),
        "page_token",
        push,
    );
    check_timeout("channels.facebook.timeout", f.timeout, settings, push);
    page_token
}

/// The Page as a subscriber of the `public` audience; its address is the Page id.
pub fn subscribers(settings: &Settings) -> Vec<ValidSubscriber> {
    let f = &settings.channels.facebook;
    public_account(
        settings,
        ChannelKind::Facebook,
        "Pagina Facebook pubblica",
        f.enabled,
        f.page_id.clone(),
        f.min_severity,
    )
}
