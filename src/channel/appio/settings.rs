//! `channels.appio`: the App IO service's API key, where PagoPA's API is, and how fast and for
//! how long it is asked. App IO carries public statements only, so that, like a public account,
//! it needs the `public` audience to wait for approval.

use std::path::PathBuf;

use serde::Deserialize;

use crate::domain::subscriber::ChannelKind;
use crate::settings::check::{
    check_timeout, check_url, is_loopback_name, require_approval, secret,
};
use crate::settings::{Dur, Secret, Settings, secret_source};

/// PagoPA's production API for public administrations' services, with its base path.
pub const PRODUCTION: &str = "https://api.io.pagopa.it/api/v1";

/// The longest PagoPA keeps trying to deliver a message (`TimeToLiveSeconds`' maximum, 7 days):
/// no status is worth reading back after it.
pub const LONGEST_STATUS_WATCH: std::time::Duration = std::time::Duration::from_secs(7 * 86_400);

#[derive(Debug, Clone, Deserialize)]
pub struct AppIoSettings {
    pub enabled: bool,
    /// The API with its base path (PagoPA's production one by default).
    pub base_url: String,
    /// The service's subscription key (`Ocp-Apim-Subscription-Key`), from the IO back office.
    pub api_key: Option<Secret>,
    pub api_key_file: Option<PathBuf>,
    pub api_key_env: Option<String>,
    /// Requests per second to App IO for the whole deployment (a message costs two: the profile
    /// and the message; a status read one), and how many may go at once after a quiet time.
    pub rate_per_second: u32,
    pub burst: u32,
    /// Messages being sent at once.
    pub concurrency: u32,
    pub timeout: Dur,
    /// How often a sent message's status is read back, and for how long after it was sent.
    pub status_every: Dur,
    pub status_for: Dur,
}

impl AppIoSettings {
    secret_source!(api_key, api_key, api_key_file, api_key_env);
}

/// Checks `channels.appio` when it is enabled and reads its key.
pub fn validate(settings: &Settings, push: &mut impl FnMut(&str, String)) -> Option<Secret> {
    let a = &settings.channels.appio;
    require_approval(settings, ChannelKind::AppIo, a.enabled, push);
    if !a.enabled {
        return None;
    }
    check_url("channels.appio.base_url", &a.base_url, push);
    // The key and citizens' fiscal codes travel in every request.
    if let Ok(u) = url::Url::parse(&a.base_url)
        && u.scheme() == "http"
        && !u
            .host_str()
            .is_some_and(|h| is_loopback_name(h.trim_start_matches('[').trim_end_matches(']')))
    {
        push(
            "channels.appio.base_url",
            "must be https (plain http only on this machine's loopback)".into(),
        );
    }
    let key = secret("channels.appio.api_key", a.api_key(), "api_key", push);
    if a.rate_per_second == 0 {
        push(
            "channels.appio.rate_per_second",
            "must be at least 1 (requests per second to App IO)".into(),
        );
    }
    if a.burst == 0 {
        push("channels.appio.burst", "must be at least 1".into());
    }
    if !(1..=64).contains(&a.concurrency) {
        push("channels.appio.concurrency", "must be from 1 to 64".into());
    }
    check_timeout("channels.appio.timeout", a.timeout, settings, push);
    if a.timeout.get() > settings.outbox.send_timeout.get() / 2 {
        push(
            "channels.appio.timeout",
            "times two must stay within outbox.send_timeout (a send asks for the profile, then sends the message)".into(),
        );
    }
    if a.status_every.get() < std::time::Duration::from_secs(1) {
        push(
            "channels.appio.status_every",
            "must be at least 1s (set status_for = \"0s\" to read no status back)".into(),
        );
    }
    if a.status_for.get() > LONGEST_STATUS_WATCH {
        push(
            "channels.appio.status_for",
            "must be at most 7 days (App IO stops trying to deliver a message after a week)".into(),
        );
    }
    key
}
