//! `[status]`: the public status page and the services citizens see on it.

use serde::Deserialize;

use super::Settings;
use crate::domain::subscriber::{ChannelKind, Subscription, ValidSubscriber};
use crate::domain::{Matcher, Severity};

/// The config subscriber standing for the status page.
pub const STATUS_SUBSCRIBER: &str = "Pagina di stato pubblica";

/// The status page as a subscriber of the `public` audience, following the listed services: its
/// statement is part of each public draft.
pub fn status_subscriber(settings: &Settings) -> Option<ValidSubscriber> {
    let services = &settings.status.services;
    if services.is_empty() {
        return None;
    }
    Some(ValidSubscriber {
        name: STATUS_SUBSCRIBER.to_owned(),
        language: settings.routing.default_language.clone(),
        audience: "public".to_owned(),
        addresses: vec![(ChannelKind::Status, "status".to_owned())],
        subscriptions: services
            .iter()
            .map(|s| Subscription {
                matchers: s.matchers.clone(),
                min_severity: Severity::Info,
                channels: vec![ChannelKind::Status],
            })
            .collect(),
    })
}

#[derive(Debug, Clone, Deserialize)]
pub struct StatusSettings {
    pub title: String,
    pub title_en: String,
    /// Days of history shown per service.
    pub history_days: u32,
    pub services: Vec<StatusService>,
    /// CAP `sender`; empty: `banditore@<host of server.public_url>`.
    pub cap_sender: String,
    /// CAP `areaDesc`: where the services are.
    pub area: String,
}

/// A service as citizens know it ("Prenotazioni CUP"), and the signals that concern it.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StatusService {
    /// In URLs and the API: letters, digits and `-`.
    pub id: String,
    pub name: String,
    #[serde(default)]
    pub name_en: String,
    /// Signals (or labels of incidents opened by hand) matching all of these concern it.
    pub matchers: Vec<Matcher>,
}

pub fn validate_status(settings: &Settings, push: &mut impl FnMut(&str, String)) {
    let s = &settings.status;
    if !(1..=366).contains(&s.history_days) {
        push("status.history_days", "must be from 1 to 366".into());
    }
    if s.cap_sender.contains([' ', ',', '<', '&']) {
        push(
            "status.cap_sender",
            "must not contain spaces, commas, `<` or `&` (CAP 1.2)".into(),
        );
    }
    let mut ids = std::collections::BTreeSet::new();
    for (i, service) in s.services.iter().enumerate() {
        let at = |key: &str| format!("status.services[{i}].{key}");
        let id_ok = !service.id.is_empty()
            && service
                .id
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-');
        if !id_ok {
            push(
                &at("id"),
                format!(
                    "`{}` must be letters, digits and `-` (it appears in URLs)",
                    service.id
                ),
            );
        } else if !ids.insert(service.id.as_str()) {
            push(&at("id"), format!("`{}` is declared twice", service.id));
        }
        if service.name.trim().is_empty() {
            push(
                &at("name"),
                "give the name citizens know the service by".into(),
            );
        }
        if service.matchers.is_empty() {
            push(
                &at("matchers"),
                "say which signals concern the service, e.g. ['service=~\"cup.*\"']".into(),
            );
        }
    }
}
