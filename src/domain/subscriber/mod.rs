//! Subscribers (a desk, an office, a person), where they are reached, and what they follow.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use super::escalation::{EscalationPolicy, EscalationStepSpec};
use super::fiscal_code::{FiscalCode, SealKey};
use super::text;
use super::{Matcher, Severity};

mod address;
mod webhook;

pub use address::TelegramChat;
use address::{parse_callable, parse_phone};
/// A webhook address with all but its scheme and host hidden.
pub use webhook::masked as masked_webhook;
pub use webhook::{Network, Preset, WebhookAddress, WebhookRules, special_purpose};

/// A way to reach someone. Each kind has one adapter under `crate::channel`.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Hash,
    PartialOrd,
    Ord,
    Serialize,
    Deserialize,
    utoipa::ToSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum ChannelKind {
    Email,
    Telegram,
    Sms,
    Mastodon,
    Bluesky,
    X,
    Facebook,
    /// The public status page: its text is a part of the public draft like any channel's.
    Status,
    /// Banditore's own log: each delivery one structured line, for a SIEM to collect.
    Log,
    /// An HTTP endpoint of another system, sent a signed JSON event (Standard Webhooks) or a
    /// chat tool's incoming-webhook body.
    Webhook,
    /// A phone call that says the incident's short text and asks for a key to confirm.
    Voice,
    /// App IO, where Italian citizens receive messages from public administrations: an address
    /// is a codice fiscale, kept sealed under the deployment's key.
    AppIo,
    /// A WhatsApp message through Meta's Cloud API: an approved template, its parameters filled.
    WhatsApp,
}

impl ChannelKind {
    pub const ALL: [ChannelKind; 13] = [
        ChannelKind::Email,
        ChannelKind::Telegram,
        ChannelKind::Sms,
        ChannelKind::Mastodon,
        ChannelKind::Bluesky,
        ChannelKind::X,
        ChannelKind::Facebook,
        ChannelKind::Status,
        ChannelKind::Log,
        ChannelKind::Webhook,
        ChannelKind::Voice,
        ChannelKind::AppIo,
        ChannelKind::WhatsApp,
    ];

    /// The social networks: one account each, set in `channels.<network>`, posting public
    /// statements as threads.
    pub const SOCIAL: [ChannelKind; 4] = [
        ChannelKind::Mastodon,
        ChannelKind::Bluesky,
        ChannelKind::X,
        ChannelKind::Facebook,
    ];

    /// The name people know the channel by.
    pub fn title(self) -> &'static str {
        match self {
            ChannelKind::Email => "Email",
            ChannelKind::Telegram => "Telegram",
            ChannelKind::Sms => "SMS",
            ChannelKind::Mastodon => "Mastodon",
            ChannelKind::Bluesky => "Bluesky",
            ChannelKind::X => "X",
            ChannelKind::Facebook => "Facebook",
            ChannelKind::Status => "Status page",
            ChannelKind::Log => "Log",
            ChannelKind::Webhook => "Webhook",
            ChannelKind::Voice => "Voice call",
            ChannelKind::AppIo => "App IO",
            ChannelKind::WhatsApp => "WhatsApp",
        }
    }

    pub fn is_social(self) -> bool {
        ChannelKind::SOCIAL.contains(&self)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            ChannelKind::Email => "email",
            ChannelKind::Telegram => "telegram",
            ChannelKind::Sms => "sms",
            ChannelKind::Mastodon => "mastodon",
            ChannelKind::Bluesky => "bluesky",
            ChannelKind::X => "x",
            ChannelKind::Facebook => "facebook",
            ChannelKind::Status => "status",
            ChannelKind::Log => "log",
            ChannelKind::Webhook => "webhook",
            ChannelKind::Voice => "voice",
            ChannelKind::AppIo => "appio",
            ChannelKind::WhatsApp => "whatsapp",
        }
    }

    /// Checks an address for this channel and returns its canonical form.
    pub fn parse_address(self, raw: &str, rules: &SubscriberRules) -> Result<String, String> {
        let trimmed = raw.trim();
        match self {
            ChannelKind::Email => trimmed
                .parse::<lettre::Address>()
                .map(|a| a.to_string())
                .map_err(|e| format!("`{trimmed}` is not a valid email address ({e})")),
            ChannelKind::Telegram => TelegramChat::parse(trimmed).map(|c| c.to_string()),
            ChannelKind::Sms => parse_phone(trimmed, rules.phone_region),
            // Written and read as a number that is texted, a landline too.
            ChannelKind::Voice => parse_callable(trimmed, rules.phone_region),
            // A mobile number, read as SMS reads it: WhatsApp accounts are mobile numbers.
            ChannelKind::WhatsApp => parse_phone(trimmed, rules.phone_region)
                .map_err(|e| e.replace("SMS cannot", "WhatsApp cannot")),
            ChannelKind::Status => Err(
                "status is not a subscriber address: the status page shows what the `public` audience is approved to hear, for the services in [[status.services]]".into(),
            ),
            ChannelKind::Mastodon
            | ChannelKind::Bluesky
            | ChannelKind::X
            | ChannelKind::Facebook => Err(format!(
                "{self} is not a subscriber address: the account is set in channels.{self}, and it posts what the `public` audience is approved to hear"
            )),
            ChannelKind::Log => Err(
                "log is not a subscriber address: the process log is set in channels.log, with the audience it writes down".into(),
            ),
            ChannelKind::Webhook => {
                WebhookAddress::parse(trimmed, &rules.webhook).map(|a| a.to_string())
            }
            // Sealed where it is read, so that the whole code is never written anywhere; without
            // the key (configuration being checked, before the store gives it) it stays in memory
            // in clear until `ValidSubscriber::sealed` seals it.
            ChannelKind::AppIo => {
                let code = FiscalCode::parse(trimmed).map_err(|e| e.to_string())?;
                Ok(match &rules.seal_key {
                    Some(key) => code.seal(key.bytes()),
                    None => code.as_str().to_owned(),
                })
            }
        }
    }
}

/// What checking a subscriber needs beyond the subscriber itself.
#[derive(Debug, Clone)]
pub struct SubscriberRules {
    pub default_language: Language,
    /// Where a phone number written without `+` and a country code is from.
    pub phone_region: phonenumber::country::Id,
    /// Which webhook URLs may be saved (`channels.webhook`).
    pub webhook: WebhookRules,
    /// The deployment's key, which seals App IO addresses (codici fiscali) as they are read;
    /// `None` only while the configuration is checked, before the store is open.
    pub seal_key: Option<SealKey>,
}

impl SubscriberRules {
    pub fn new(default_language: Language) -> SubscriberRules {
        SubscriberRules {
            default_language,
            phone_region: phonenumber::country::Id::IT,
            webhook: WebhookRules::default(),
            seal_key: None,
        }
    }

    /// The same rules, sealing App IO addresses under `key`.
    pub fn sealing(&self, key: &[u8]) -> SubscriberRules {
        SubscriberRules {
            seal_key: Some(SealKey::new(key)),
            ..self.clone()
        }
    }
}

impl fmt::Display for ChannelKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for ChannelKind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        ChannelKind::ALL
            .into_iter()
            .find(|c| c.as_str() == s)
            .ok_or_else(|| {
                let known: Vec<&str> = ChannelKind::ALL.iter().map(|c| c.as_str()).collect();
                format!("unknown channel `{s}` (known: {})", known.join(", "))
            })
    }
}

/// A language tag such as `it` or `en-GB`, lower-cased primary subtag first.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Language(String);

impl Language {
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The primary subtag: `en` for `en-GB`; templates are looked up by it.
    pub fn primary(&self) -> &str {
        self.0.split('-').next().unwrap_or(&self.0)
    }
}

impl TryFrom<String> for Language {
    type Error = String;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        let mut parts = s.split('-');
        let primary = parts.next().unwrap_or("");
        let primary_ok =
            (2..=3).contains(&primary.len()) && primary.chars().all(|c| c.is_ascii_alphabetic());
        let rest_ok = parts
            .all(|p| (1..=8).contains(&p.len()) && p.chars().all(|c| c.is_ascii_alphanumeric()));
        if primary_ok && rest_ok {
            let mut out = primary.to_ascii_lowercase();
            out.push_str(&s[primary.len()..]);
            Ok(Language(out))
        } else {
            Err(format!(
                "`{s}` is not a language tag (expected e.g. `it` or `en-GB`)"
            ))
        }
    }
}

impl From<Language> for String {
    fn from(l: Language) -> String {
        l.0
    }
}

impl fmt::Display for Language {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// What a subscriber follows: incidents with a signal matching every matcher, at `min_severity`
/// or worse, on the listed channels (all the subscriber's channels when empty).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Subscription {
    #[serde(default)]
    #[schema(value_type = Vec<String>)]
    pub matchers: Vec<Matcher>,
    #[serde(default = "default_min_severity")]
    pub min_severity: Severity,
    #[serde(default)]
    pub channels: Vec<ChannelKind>,
}

fn default_min_severity() -> Severity {
    Severity::Info
}

impl Subscription {
    pub fn wants_channel(&self, channel: ChannelKind) -> bool {
        self.channels.is_empty() || self.channels.contains(&channel)
    }
}

/// One or several addresses for a channel, as written in JSON or TOML.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(untagged)]
pub enum OneOrMany {
    One(String),
    Many(Vec<String>),
}

impl OneOrMany {
    pub fn into_vec(self) -> Vec<String> {
        match self {
            OneOrMany::One(s) => vec![s],
            OneOrMany::Many(v) => v,
        }
    }
}

/// The longest subscriber name accepted, in characters.
pub const MAX_NAME_CHARS: usize = 200;

/// A subscriber as an administrator writes it, in the API or in `[[subscribers]]`.
#[derive(Debug, Clone, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SubscriberSpec {
    pub name: String,
    #[schema(value_type = Option<String>)]
    pub language: Option<Language>,
    #[serde(default = "default_audience")]
    pub audience: String,
    #[serde(default)]
    pub addresses: BTreeMap<String, OneOrMany>,
    #[serde(default)]
    pub subscriptions: Vec<Subscription>,
    /// The desk's own escalation policy, over its audience's (`[escalation.audiences]`); empty:
    /// its audience's, if any.
    #[serde(default)]
    pub escalation: Vec<EscalationStepSpec>,
}

/// An edit of a subscriber, as the API's `PATCH` body writes it: a field left out stays as it is.
/// `addresses` names the channels it changes, each with its whole new list (`null` or `[]`
/// removes that channel's addresses); channels not named keep theirs.
#[derive(Debug, Clone, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SubscriberPatch {
    pub name: Option<String>,
    #[schema(value_type = Option<String>)]
    pub language: Option<Language>,
    pub audience: Option<String>,
    /// Channel → an address, a list of addresses, or `null` (removes that channel's).
    #[schema(value_type = Option<Object>)]
    pub addresses: Option<BTreeMap<String, Option<OneOrMany>>>,
    pub subscriptions: Option<Vec<Subscription>>,
    /// The desk's own escalation policy, whole; `[]` leaves it to its audience's.
    pub escalation: Option<Vec<EscalationStepSpec>>,
}

impl SubscriberPatch {
    /// The names of the fields the edit changes, for the audit log.
    pub fn fields(&self) -> Vec<&'static str> {
        [
            ("name", self.name.is_some()),
            ("language", self.language.is_some()),
            ("audience", self.audience.is_some()),
            ("addresses", self.addresses.is_some()),
            ("subscriptions", self.subscriptions.is_some()),
            ("escalation", self.escalation.is_some()),
        ]
        .into_iter()
        .filter_map(|(field, given)| given.then_some(field))
        .collect()
    }
}

fn default_audience() -> String {
    "internal".to_owned()
}

/// The audience of citizens and the public channels, which never escalates.
pub const PUBLIC: &str = "public";

/// A subscriber spec that passed validation: addresses canonical, per channel.
#[derive(Debug, Clone, PartialEq)]
pub struct ValidSubscriber {
    pub name: String,
    pub language: Language,
    pub audience: String,
    pub addresses: Vec<(ChannelKind, String)>,
    pub subscriptions: Vec<Subscription>,
    /// Its own escalation policy; `None`: its audience's, if any.
    pub escalation: Option<EscalationPolicy>,
}

impl ValidSubscriber {
    /// The subscriber with every App IO address sealed under `key` (those read without the key,
    /// from the configuration); addresses already sealed stay as they are.
    pub fn sealed(mut self, key: &[u8]) -> ValidSubscriber {
        for (channel, address) in &mut self.addresses {
            if *channel == ChannelKind::AppIo
                && !FiscalCode::is_sealed(address)
                && let Ok(code) = FiscalCode::parse(address)
            {
                *address = code.seal(key);
            }
        }
        self
    }

    /// [`ValidSubscriber::sealed`] for each one.
    pub fn seal_all(subscribers: &[ValidSubscriber], key: &[u8]) -> Vec<ValidSubscriber> {
        subscribers.iter().map(|s| s.clone().sealed(key)).collect()
    }
}

/// A validation problem with the path of the offending field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldError {
    pub field: String,
    pub message: String,
}

impl fmt::Display for FieldError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.field, self.message)
    }
}

impl SubscriberSpec {
    pub fn validate(self, rules: &SubscriberRules) -> Result<ValidSubscriber, Vec<FieldError>> {
        let mut errors = Vec::new();
        let name = self.name.trim().to_owned();
        if name.is_empty() {
            errors.push(FieldError {
                field: "name".into(),
                message: "must not be empty".into(),
            });
        } else if name.chars().count() > MAX_NAME_CHARS {
            errors.push(FieldError {
                field: "name".into(),
                message: format!("is longer than {MAX_NAME_CHARS} characters"),
            });
        } else if let Err(refused) = text::one_line(&name) {
            // The name is the display name of every email to the subscriber (`To:`).
            errors.push(FieldError {
                field: "name".into(),
                message: refused.to_string(),
            });
        }
        let audience = self.audience.trim().to_owned();
        if audience.is_empty()
            || !audience
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        {
            errors.push(FieldError {
                field: "audience".into(),
                message: format!(
                    "`{audience}` must be a non-empty word of letters, digits, `-` or `_`"
                ),
            });
        }
        let mut addresses = Vec::new();
        for (channel_name, values) in self.addresses {
            let channel = match channel_name.parse::<ChannelKind>() {
                Ok(c) => c,
                Err(message) => {
                    errors.push(FieldError {
                        field: format!("addresses.{channel_name}"),
                        message,
                    });
                    continue;
                }
            };
            for (i, raw) in values.into_vec().into_iter().enumerate() {
                match channel.parse_address(&raw, rules) {
                    Ok(address) if !addresses.contains(&(channel, address.clone())) => {
                        addresses.push((channel, address))
                    }
                    Ok(_) => {}
                    Err(message) => errors.push(FieldError {
                        field: format!("addresses.{channel_name}[{i}]"),
                        message,
                    }),
                }
            }
        }
        if audience != PUBLIC && addresses.iter().any(|(c, _)| *c == ChannelKind::AppIo) {
            errors.push(FieldError {
                field: "addresses.appio".into(),
                message: format!(
                    "App IO carries public statements only, after approval: give this subscriber the `{PUBLIC}` audience or no appio address"
                ),
            });
        }
        let escalation = if self.escalation.is_empty() {
            None
        } else if audience == PUBLIC {
            errors.push(FieldError {
                field: "escalation".into(),
                message: "the public audience never escalates: citizens and the public channels are told once".into(),
            });
            None
        } else {
            EscalationPolicy::parse(&self.escalation, "escalation")
                .map_err(|e| errors.extend(e))
                .ok()
        };
        if errors.is_empty() {
            Ok(ValidSubscriber {
                name,
                language: self
                    .language
                    .unwrap_or_else(|| rules.default_language.clone()),
                audience,
                addresses,
                subscriptions: self.subscriptions,
                escalation,
            })
        } else {
            Err(errors)
        }
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::hostile;

    fn it() -> Language {
        Language::try_from("it".to_owned()).unwrap()
    }

    fn rules() -> SubscriberRules {
        SubscriberRules::new(it())
    }

    proptest! {
        /// A name that is stored holds no control character, line or paragraph separator or
        /// noncharacter; one that is refused is refused for its name.
        #[test]
        fn a_stored_name_is_one_line_of_text(name in hostile::text()) {
            let spec = SubscriberSpec {
                name: name.clone(),
                language: None,
                audience: default_audience(),
                addresses: BTreeMap::new(),
                subscriptions: Vec::new(),
                escalation: Vec::new(),
            };
            match spec.validate(&rules()) {
                Ok(valid) => prop_assert!(
                    !valid.name.chars().any(|c| c.is_control()
                        || matches!(c, '\u{2028}' | '\u{2029}')
                        || (0xfdd0..=0xfdef).contains(&u32::from(c))
                        || u32::from(c) & 0xfffe == 0xfffe),
                    "{name:?} stored"
                ),
                Err(errors) => prop_assert!(errors.iter().all(|e| e.field == "name"), "{errors:?}"),
            }
        }
    }

    #[test]
    fn names_with_line_breaks_or_controls_are_refused_with_the_field_named() {
        let named = |name: &str| SubscriberSpec {
            name: name.to_owned(),
            language: None,
            audience: default_audience(),
            addresses: BTreeMap::new(),
            subscriptions: Vec::new(),
            escalation: Vec::new(),
        };
        for (name, said) in [
            ("Evil\r\nBcc: x@y", "U+000D"),
            ("Evil\nBcc: x@y", "U+000A"),
            ("CUP\tFoligno", "U+0009"),
            ("CUP\u{0}", "U+0000"),
            ("CUP \u{1b}[31mrosso", "U+001B"),
            ("CUP\u{7f}", "U+007F"),
            ("CUP\u{85}Foligno", "U+0085"),
            ("CUP\u{2028}Foligno", "U+2028"),
            ("CUP\u{2029}Foligno", "U+2029"),
            ("CUP\u{fffe}", "U+FFFE"),
            ("CUP\u{ffff}", "U+FFFF"),
            ("CUP\u{1fffe}", "U+1FFFE"),
        ] {
            let errors = named(name).validate(&rules()).unwrap_err();
            assert_eq!(errors.len(), 1, "{name:?}: {errors:?}");
            assert_eq!(errors[0].field, "name");
            assert!(errors[0].message.contains(said), "{name:?}: {errors:?}");
        }
        for name in [
            "Pronto Soccorso Città di Castello",
            "مكتب الحجز",
            "CUP 🚑 Foligno",
            "Ufficio «Referti» – turno di notte",
            " spazi attorno \n",
        ] {
            assert!(named(name).validate(&rules()).is_ok(), "{name:?} refused");
        }
    }

    #[test]
    fn language_tags() {
        assert_eq!(
            Language::try_from("EN-GB".to_owned()).unwrap().as_str(),
            "en-GB"
        );
        assert_eq!(
            Language::try_from("en-GB".to_owned()).unwrap().primary(),
            "en"
        );
        assert!(Language::try_from("italiano".to_owned()).is_err());
        assert!(Language::try_from("".to_owned()).is_err());
    }

    #[test]
    fn spec_from_issue_example_validates() {
        let json = r#"{"name": "CUP Foligno", "language": "it", "audience": "cup-desk",
            "addresses": {"email": "cup.foligno@example.org"},
            "subscriptions": [{"matchers": ["service=~\"cup.*\""], "min_severity": "warning"}]}"#;
        let spec: SubscriberSpec = serde_json::from_str(json).unwrap();
        let valid = spec.validate(&rules()).unwrap();
        assert_eq!(
            valid.addresses,
            vec![(ChannelKind::Email, "cup.foligno@example.org".to_owned())]
        );
        assert_eq!(valid.subscriptions[0].min_severity, Severity::Warning);
        assert_eq!(valid.subscriptions[0].matchers.len(), 1);
    }

    #[test]
    fn validation_reports_every_field() {
        let json = r#"{"name": " ", "audience": "cup desk",
            "addresses": {"email": ["ok@example.org", "not-an-address"], "fax": "123"}}"#;
        let spec: SubscriberSpec = serde_json::from_str(json).unwrap();
        let errors = spec.validate(&rules()).unwrap_err();
        let fields: Vec<_> = errors.iter().map(|e| e.field.as_str()).collect();
        assert_eq!(
            fields,
            vec!["name", "audience", "addresses.email[1]", "addresses.fax"]
        );
    }

    #[test]
    fn bad_matcher_is_a_deserialize_error() {
        let json = r#"{"name": "x", "subscriptions": [{"matchers": ["service=~\"(\""]}]}"#;
        let err = serde_json::from_str::<SubscriberSpec>(json).unwrap_err();
        assert!(err.to_string().contains("invalid regex"), "{err}");
    }

    #[test]
    fn duplicate_addresses_are_kept_once() {
        let json = r#"{"name": "x", "addresses": {"email": ["a@example.org", " a@example.org "]}}"#;
        let spec: SubscriberSpec = serde_json::from_str(json).unwrap();
        assert_eq!(spec.validate(&rules()).unwrap().addresses.len(), 1);
    }
}
