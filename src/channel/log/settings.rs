//! `channels.log`: which audience's messages are written to the process log, and from which
//! severity.

use serde::Deserialize;

use crate::domain::Severity;
use crate::domain::subscriber::{ChannelKind, Subscription, ValidSubscriber};
use crate::settings::Settings;

/// The subscriber standing for the process log.
pub const LOG_SUBSCRIBER: &str = "Registro eventi";

#[derive(Debug, Clone, Deserialize)]
pub struct LogChannelSettings {
    pub enabled: bool,
    /// Whose messages are written: the audience's, as its subscribers hear them.
    pub audience: String,
    pub min_severity: Severity,
}

/// Checks `channels.log` when enabled.
pub fn validate(settings: &Settings, push: &mut impl FnMut(&str, String)) {
    let l = &settings.channels.log;
    if l.enabled
        && (l.audience.is_empty()
            || !l
                .audience
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_'))
    {
        push(
            "channels.log.audience",
            format!(
                "`{}` must be a non-empty word of letters, digits, `-` or `_`",
                l.audience
            ),
        );
    }
}

/// The log as a subscriber of its audience, following every incident at `min_severity` or
/// worse; its one address is `log`.
pub fn subscribers(settings: &Settings) -> Vec<ValidSubscriber> {
    let l = &settings.channels.log;
    if !l.enabled {
        return Vec::new();
    }
    vec![ValidSubscriber {
        name: LOG_SUBSCRIBER.to_owned(),
        language: settings.routing.default_language.clone(),
        audience: l.audience.clone(),
        addresses: vec![(ChannelKind::Log, "log".to_owned())],
        subscriptions: vec![Subscription {
            matchers: Vec::new(),
            min_severity: l.min_severity,
            channels: vec![ChannelKind::Log],
        }],
        escalation: None,
    }]
}
