//! `[status]`: the public status page and the services citizens see on it.

use serde::Deserialize;

use super::validate::check_one_line;
use super::{Dur, Settings};
use crate::domain::subscriber::{ChannelKind, Subscription, ValidSubscriber};
use crate::domain::{Matcher, Severity};

/// The config subscriber standing for the status page.
pub const STATUS_SUBSCRIBER: &str = "Pagina di stato pubblica";

/// The languages the status page is written in: it has words for them
/// (`templates/web/<lang>/status.j2`) and each service a name (`name`, `name_en`). Every public
/// draft has a status part in each.
pub const LANGUAGES: [&str; 2] = ["it", "en"];

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
        escalation: None,
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
    pub subscribe: SubscribeSettings,
}

/// `[status.subscribe]`: citizens subscribing themselves from the status page.
#[derive(Debug, Clone, Deserialize)]
pub struct SubscribeSettings {
    /// The channels offered (`email`, `sms`, `whatsapp`, `telegram`); empty: no sign-up form.
    pub channels: Vec<ChannelKind>,
    /// How long the confirmation link sent by email stays good.
    pub link_ttl: Dur,
    /// How long the code sent by SMS (and the Telegram link) stays good.
    pub code_ttl: Dur,
    /// Tries at the SMS code (the right one included) before the sign-up is void.
    pub code_attempts: u32,
    /// Sign-ups per client address per hour (an IPv6 /64 counts as one address).
    pub per_ip: u32,
    /// Country calling codes of the numbers codes are texted to (each text costs money).
    pub sms_country_codes: Vec<u16>,
    /// Sign-ups per email address or phone number per hour.
    pub per_address: u32,
    /// Take the client's address from the last `X-Forwarded-For` entry (behind a reverse proxy
    /// that sets it), not from the connection.
    pub forwarded_for: bool,
    /// How long an unsubscribed citizen's address is kept (so that a mistaken click can be
    /// undone) before it is erased.
    pub erase_after: Dur,
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

impl StatusService {
    /// The name citizens read in `language`: `name_en` in English when there is one, else `name`.
    pub fn name_in(&self, language: &str) -> &str {
        if language == "en" && !self.name_en.is_empty() {
            &self.name_en
        } else {
            &self.name
        }
    }
}

pub fn validate_status(settings: &Settings, push: &mut impl FnMut(&str, String)) {
    let s = &settings.status;
    validate_subscribe(settings, push);
    if !(1..=366).contains(&s.history_days) {
        push("status.history_days", "must be from 1 to 366".into());
    }
    if s.cap_sender.contains([' ', ',', '<', '&']) {
        push(
            "status.cap_sender",
            "must not contain spaces, commas, `<` or `&` (CAP 1.2)".into(),
        );
    }
    check_one_line("status.title", &s.title, push);
    check_one_line("status.title_en", &s.title_en, push);
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
        check_one_line(&at("name"), &service.name, push);
        check_one_line(&at("name_en"), &service.name_en, push);
        if service.matchers.is_empty() {
            push(
                &at("matchers"),
                "say which signals concern the service, e.g. ['service=~\"cup.*\"']".into(),
            );
        }
    }
}

fn validate_subscribe(settings: &Settings, push: &mut impl FnMut(&str, String)) {
    let sub = &settings.status.subscribe;
    if sub.channels.is_empty() {
        return;
    }
    let channels = &settings.channels;
    for (i, channel) in sub.channels.iter().enumerate() {
        let enabled = match channel {
            ChannelKind::Email => channels.email.enabled,
            ChannelKind::Sms => channels.sms.enabled,
            ChannelKind::Telegram => channels.telegram.enabled,
            ChannelKind::WhatsApp => {
                if channels.whatsapp.code_template.is_empty() {
                    push(
                        "channels.whatsapp.code_template",
                        "citizens sign up by WhatsApp with a code: name the approved authentication template that carries it".into(),
                    );
                }
                channels.whatsapp.enabled
            }
            _ => {
                push(
                    &format!("status.subscribe.channels[{i}]"),
                    format!(
                        "citizens subscribe by email, sms, whatsapp or telegram, not {channel}"
                    ),
                );
                continue;
            }
        };
        if !enabled {
            push(
                &format!("status.subscribe.channels[{i}]"),
                format!("{channel} is offered to citizens but channels.{channel} is not enabled"),
            );
        }
    }
    if settings.status.services.is_empty() {
        push(
            "status.subscribe.channels",
            "citizens subscribe to the services of the status page: list them in [[status.services]]".into(),
        );
    }
    if sub.channels.contains(&ChannelKind::Sms) && sub.sms_country_codes.is_empty() {
        push(
            "status.subscribe.sms_country_codes",
            "say which countries' numbers may sign up by SMS, e.g. [39]".into(),
        );
    }
    if sub.channels.contains(&ChannelKind::WhatsApp) && sub.sms_country_codes.is_empty() {
        push(
            "status.subscribe.sms_country_codes",
            "say which countries' numbers may sign up by WhatsApp, e.g. [39]".into(),
        );
    }
    let (policy, _) = settings.approval.policy("public");
    if policy == super::ApprovalPolicy::Auto {
        push(
            "status.subscribe.channels",
            "citizens hear public statements, but approval.audiences.public lets them out without approval: set its policy to \"approval\" or \"approval_with_timeout\"".into(),
        );
    }
    let minute = std::time::Duration::from_secs(60);
    if sub.link_ttl.get() < minute {
        push("status.subscribe.link_ttl", "must be at least 1m".into());
    }
    if sub.code_ttl.get() < minute {
        push("status.subscribe.code_ttl", "must be at least 1m".into());
    }
    for (key, value) in [
        ("code_attempts", sub.code_attempts),
        ("per_ip", sub.per_ip),
        ("per_address", sub.per_address),
    ] {
        if value == 0 {
            push(
                &format!("status.subscribe.{key}"),
                "must be at least 1".into(),
            );
        }
    }
}
