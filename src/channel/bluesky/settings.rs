//! `channels.bluesky`: the region's Bluesky account, a destination of the `public` audience,
//! so it posts only what the communications office approved.

use std::path::PathBuf;

use serde::Deserialize;

use crate::domain::Severity;
use crate::domain::subscriber::{ChannelKind, ValidSubscriber};
use crate::settings::check::{check_timeout, check_url, public_account, require_approval, secret};
use crate::settings::{Dur, Secret, Settings, secret_source};

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

/// Checks `channels.bluesky` when the account is enabled and reads its secret.
pub fn validate(settings: &Settings, push: &mut impl FnMut(&str, String)) -> Option<Secret> {
    let b = &settings.channels.bluesky;
    require_approval(settings, ChannelKind::Bluesky, b.enabled, push);
    if !b.enabled {
        return None;
    }
    check_url("channels.bluesky.base_url", &b.base_url, push);
    if b.identifier.trim().is_empty() {
        push(
            "channels.bluesky.identifier",
            "give the account's handle (regione.bsky.social), email or DID".into(),
        );
    }
    let password = secret("channels.bluesky.password", b.password(), "password", push);
    check_timeout("channels.bluesky.timeout", b.timeout, settings, push);
    password
}

/// The account as a subscriber of the `public` audience; its address is the handle.
pub fn subscribers(settings: &Settings) -> Vec<ValidSubscriber> {
    let b = &settings.channels.bluesky;
    let handle = b.identifier.trim().to_owned();
    public_account(
        settings,
        ChannelKind::Bluesky,
        "Account Bluesky pubblico",
        b.enabled,
        handle,
        b.min_severity,
    )
}
