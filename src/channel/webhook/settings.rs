//! `channels.webhook`: how long a receiver may take, which special-purpose networks a webhook may
//! reach (none by default), whether `http://` is accepted, and after how long a receiver that
//! keeps failing is disabled.

use serde::Deserialize;

use crate::domain::subscriber::{Network, WebhookRules};
use crate::settings::check::check_timeout;
use crate::settings::{Dur, Settings};

#[derive(Debug, Clone, Deserialize)]
pub struct WebhookSettings {
    pub enabled: bool,
    /// For one request, from connecting to the end of the answer.
    pub timeout: Dur,
    /// Sends in flight at once, over every receiver.
    pub concurrency: u32,
    /// Networks in CIDR notation a webhook may reach although they are private or otherwise
    /// special-purpose (an intranet's, `10.20.0.0/16`).
    pub allow_networks: Vec<String>,
    /// Whether `http://` URLs are accepted (for receivers inside `allow_networks`).
    pub allow_http: bool,
    /// A receiver that has answered nothing but failures for this long, its failures less than
    /// a day apart, is disabled (its address marked gone) and the operators are told.
    pub disable_after: Dur,
}

/// The rules webhook addresses are saved and sent by; the networks that do not read are
/// reported at `channels.webhook.allow_networks` and left out.
pub fn rules(settings: &Settings, push: &mut impl FnMut(&str, String)) -> WebhookRules {
    let w = &settings.channels.webhook;
    let mut allow_networks = Vec::new();
    for raw in &w.allow_networks {
        match raw.parse::<Network>() {
            Ok(n) => allow_networks.push(n),
            Err(e) => push("channels.webhook.allow_networks", e),
        }
    }
    WebhookRules {
        allow_networks,
        allow_http: w.allow_http,
    }
}

/// Checks `channels.webhook` when enabled.
pub fn validate(settings: &Settings, push: &mut impl FnMut(&str, String)) {
    let w = &settings.channels.webhook;
    if !w.enabled {
        return;
    }
    check_timeout("channels.webhook.timeout", w.timeout, settings, push);
    if w.concurrency == 0 {
        push("channels.webhook.concurrency", "must be at least 1".into());
    }
    if w.disable_after.get().is_zero() {
        push(
            "channels.webhook.disable_after",
            "must be more than 0: a receiver failing once is not gone".into(),
        );
    }
}
