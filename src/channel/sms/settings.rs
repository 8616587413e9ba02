//! `channels.sms`: the gateways' accounts, the region numbers are read in, and the providers in
//! the order they are tried.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

use serde::Deserialize;

use crate::settings::{Dur, Secret, SecretSource, Settings, word_enum};

#[derive(Debug, Clone, Deserialize)]
pub struct SmsSettings {
    pub enabled: bool,
    /// Where phone numbers written without a country code are from (ISO 3166 code).
    pub default_region: String,
    /// Spell text in GSM-7 where a usual spelling exists, so one accent does not double the cost.
    pub fold_to_gsm7: bool,
    pub concurrency: u32,
    pub timeout: Dur,
    /// Consecutive failures after which a provider is put aside, and for how long.
    pub put_aside_after: u32,
    pub put_aside_for: Dur,
    /// Ask providers to post delivery reports to `<public_url>/api/v1/callbacks/sms/<name>`.
    pub delivery_reports: bool,
    /// A desk's reply to a text (one of `reply_words`) acknowledges the latest incident texted
    /// to its number, through `<public_url>/api/v1/callbacks/sms/<name>/inbound`.
    pub replies: bool,
    /// The words read as "seen", whatever their case and the spaces and punctuation around them.
    pub reply_words: Vec<String>,
    /// What a provider that does not sign its requests (all but Twilio) carries in the inbound
    /// URL's `token`.
    pub reply_token: Option<Secret>,
    pub reply_token_file: Option<PathBuf>,
    pub reply_token_env: Option<String>,
    /// A generic provider's inbound fields: the sender's number and the text.
    pub reply_sender_field: String,
    pub reply_text_field: String,
    pub providers: Vec<SmsProviderSettings>,
}

impl SmsSettings {
    pub fn reply_token(&self) -> SecretSource {
        SecretSource {
            value: self.reply_token.clone(),
            file: self.reply_token_file.clone(),
            env: self.reply_token_env.clone(),
        }
    }
}

word_enum! {
    pub enum SmsProviderKind {
        Twilio => "twilio",
        Vonage => "vonage",
        /// Skebby, Aruba and Esendex Italia share one API; `base_url` picks the provider.
        Skebby => "skebby",
        /// A request described in the configuration.
        Generic => "generic",
    }
}

word_enum! {
    pub enum BodyFormat {
        Form => "form",
        Json => "json",
    }
}

/// One SMS gateway account. Credentials are `username` and `password` as the provider names
/// them: Twilio's Account SID and auth token, Vonage's API key and secret, the Skebby login.
#[derive(Debug, Clone, Deserialize)]
pub struct SmsProviderSettings {
    pub name: String,
    pub kind: SmsProviderKind,
    /// Lower goes first.
    #[serde(default)]
    pub priority: i32,
    /// Empty: the provider's public API.
    #[serde(default)]
    pub base_url: String,
    #[serde(default)]
    pub username: String,
    pub password: Option<Secret>,
    pub password_file: Option<PathBuf>,
    pub password_env: Option<String>,
    /// Sender: a phone number or an alphanumeric name of at most 11 characters.
    #[serde(default)]
    pub sender: String,
    /// Messages per second for the whole deployment; 0 for no limit.
    #[serde(default = "default_sms_rate")]
    pub rate_per_second: u32,
    /// Skebby family: the message quality (`GP`, `TI`, `SI` on Skebby; `N` on Aruba; `N`, `L`,
    /// `LL` on Esendex).
    #[serde(default = "default_message_type")]
    pub message_type: String,
    /// Generic: the request. Values are templates over `to`, `to_digits`, `text`, `sender`,
    /// `username`, `password`, `callback_url`, `unicode`.
    #[serde(default = "default_method")]
    pub method: String,
    #[serde(default)]
    pub url: String,
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    #[serde(default = "default_body_format")]
    pub body_format: BodyFormat,
    #[serde(default)]
    pub body: BTreeMap<String, String>,
    /// Generic: where the message id is in a JSON answer (a JSON pointer such as `/id`).
    #[serde(default)]
    pub id_pointer: String,
}

fn default_sms_rate() -> u32 {
    10
}

fn default_message_type() -> String {
    "GP".to_owned()
}

fn default_method() -> String {
    "POST".to_owned()
}

fn default_body_format() -> BodyFormat {
    BodyFormat::Form
}

impl SmsProviderSettings {
    pub fn password(&self) -> SecretSource {
        SecretSource {
            value: self.password.clone(),
            file: self.password_file.clone(),
            env: self.password_env.clone(),
        }
    }
}

/// An SMS provider that passed its checks, with its secret read and its address settled.
#[derive(Debug, Clone)]
pub struct SmsProviderKeys {
    pub settings: SmsProviderSettings,
    pub password: Option<Secret>,
    /// Where its API is (`base_url`, or the provider's public API).
    pub base_url: url::Url,
}

/// The provider's public API, for `base_url` left empty.
fn public_api(kind: SmsProviderKind) -> &'static str {
    match kind {
        SmsProviderKind::Twilio => "https://api.twilio.com/",
        SmsProviderKind::Vonage => "https://rest.nexmo.com/",
        SmsProviderKind::Skebby => "https://api.skebby.it/API/v1.0/REST/",
        SmsProviderKind::Generic => "",
    }
}

/// A sender the networks accept: a phone number, or up to 11 letters, digits and spaces.
fn valid_sender(sender: &str) -> bool {
    let digits = sender.strip_prefix('+').unwrap_or(sender);
    let number = (3..=15).contains(&digits.len()) && digits.chars().all(|c| c.is_ascii_digit());
    let name = (1..=11).contains(&sender.chars().count())
        && sender.chars().any(|c| c.is_ascii_alphabetic())
        && sender
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == ' ' || c == '-' || c == '.');
    number || name
}

/// The region phone numbers are read in (`IT` when the key is wrong, after reporting it).
pub fn phone_region(
    settings: &Settings,
    push: &mut impl FnMut(&str, String),
) -> phonenumber::country::Id {
    let raw = settings
        .channels
        .sms
        .default_region
        .trim()
        .to_ascii_uppercase();
    raw.parse().unwrap_or_else(|_| {
        push(
            "channels.sms.default_region",
            format!("`{raw}` is not a country code such as IT, DE or GB"),
        );
        phonenumber::country::Id::IT
    })
}

/// Checks every provider and returns them in the order they are tried (priority, then order
/// of declaration). Empty when SMS is off.
pub fn validate_sms(
    settings: &Settings,
    push: &mut impl FnMut(&str, String),
) -> Vec<SmsProviderKeys> {
    let sms = &settings.channels.sms;
    if !sms.enabled {
        return Vec::new();
    }
    if sms.providers.is_empty() {
        push(
            "channels.sms.providers",
            "SMS is enabled but no [[channels.sms.providers]] is configured".into(),
        );
    }
    if sms.concurrency == 0 {
        push("channels.sms.concurrency", "must be at least 1".into());
    }
    if sms.timeout.get() > settings.outbox.send_timeout.get() / (sms.providers.len().max(1) as u32)
    {
        push(
            "channels.sms.timeout",
            "times the number of providers must stay within outbox.send_timeout (one send may try each provider)".into(),
        );
    }
    if sms.put_aside_after == 0 {
        push("channels.sms.put_aside_after", "must be at least 1".into());
    }
    if sms.replies {
        validate_replies(sms, push);
    }
    let mut names = BTreeSet::new();
    let mut keys = Vec::new();
    for (i, p) in sms.providers.iter().enumerate() {
        let at = |key: &str| format!("channels.sms.providers[{i}].{key}");
        let mut ok = true;
        let mut fail = |key: &str, msg: String| {
            ok = false;
            push(&at(key), msg);
        };
        if let Some(problem) = crate::settings::check::provider_name_problem(
            &p.name,
            &mut names,
            "the delivery-report URL",
        ) {
            fail("name", problem);
        }
        let needs_login = p.kind != SmsProviderKind::Generic;
        if needs_login && p.username.trim().is_empty() {
            fail("username", login_hint(p.kind).into());
        }
        // A password given but unreadable is said once, as such, not also as missing.
        let password = match p.password().resolve("password") {
            Ok(None) if needs_login => {
                fail(
                    "password",
                    "give `password`, `password_file` or `password_env`".into(),
                );
                None
            }
            Ok(secret) => secret,
            Err(e) => {
                fail("password", e);
                None
            }
        };
        if (p.kind != SmsProviderKind::Generic || !p.sender.is_empty()) && !valid_sender(&p.sender)
        {
            fail(
                "sender",
                format!(
                    "`{}` is not a sender: a phone number, or at most 11 letters and digits",
                    p.sender
                ),
            );
        }
        let raw_url = match (p.kind, p.base_url.is_empty()) {
            (SmsProviderKind::Generic, _) => p.url.clone(),
            (kind, true) => public_api(kind).to_owned(),
            (_, false) => p.base_url.clone(),
        };
        let base_url = match url::Url::parse(&raw_url) {
            Ok(u) if matches!(u.scheme(), "http" | "https") && u.host().is_some() => Some(u),
            _ => {
                let key = if p.kind == SmsProviderKind::Generic {
                    "url"
                } else {
                    "base_url"
                };
                fail(key, format!("`{raw_url}` is not an http(s) URL"));
                None
            }
        };
        if p.kind == SmsProviderKind::Skebby
            && !["GP", "TI", "SI", "EE", "AD", "N", "L", "LL"].contains(&p.message_type.as_str())
        {
            fail(
                "message_type",
                format!(
                    "`{}` is not a message type (Skebby: GP, TI, SI; Aruba: N; Esendex: N, L, LL)",
                    p.message_type
                ),
            );
        }
        if p.kind == SmsProviderKind::Generic {
            if p.body.is_empty() && !p.url.contains("{{") {
                fail(
                    "body",
                    "a generic provider needs a `body` table (or a `url` template) carrying {{ to }} and {{ text }}".into(),
                );
            }
            // Values are percent-encoded in the URL by construction: encoding them again would
            // send `%2520` for a space.
            if p.url.contains("urlencode") {
                fail(
                    "url",
                    "drop `| urlencode`: every value in the URL is percent-encoded already".into(),
                );
            }
            if reqwest::Method::from_bytes(p.method.to_ascii_uppercase().as_bytes()).is_err() {
                fail("method", format!("`{}` is not an HTTP method", p.method));
            }
            if !p.id_pointer.is_empty() && !p.id_pointer.starts_with('/') {
                fail(
                    "id_pointer",
                    format!("`{}` is not a JSON pointer such as /id", p.id_pointer),
                );
            }
        }
        if let (true, Some(base_url)) = (ok, base_url) {
            keys.push(SmsProviderKeys {
                settings: p.clone(),
                password,
                base_url,
            });
        }
    }
    // A stable sort keeps the order of declaration among equal priorities.
    keys.sort_by_key(|k| k.settings.priority);
    keys
}

fn login_hint(kind: SmsProviderKind) -> &'static str {
    match kind {
        SmsProviderKind::Twilio => "Twilio needs the Account SID (AC…) as `username`",
        SmsProviderKind::Vonage => "Vonage needs the API key as `username`",
        _ => "needs the account's login as `username`",
    }
}

/// Replies need words, and a token for the providers that do not sign.
fn validate_replies(sms: &SmsSettings, push: &mut impl FnMut(&str, String)) {
    if sms.reply_words.iter().all(|w| reply_word(w).is_empty()) {
        push(
            "channels.sms.reply_words",
            "replies are on but no word is read as \"seen\" (such as \"OK\")".into(),
        );
    }
    let unsigned = sms
        .providers
        .iter()
        .any(|p| p.kind != SmsProviderKind::Twilio);
    match sms.reply_token().resolve("reply_token") {
        Ok(Some(token)) if token.expose().len() < 16 => push(
            "channels.sms.reply_token",
            "must be at least 16 characters: it is all that authenticates a reply".into(),
        ),
        Ok(None) if unsigned => push(
            "channels.sms.reply_token",
            "replies through providers other than Twilio need a token for their inbound URL (`reply_token`, `reply_token_file` or `reply_token_env`)".into(),
        ),
        Err(e) => push("channels.sms.reply_token", e),
        _ => {}
    }
    for (key, field) in [
        ("reply_sender_field", &sms.reply_sender_field),
        ("reply_text_field", &sms.reply_text_field),
    ] {
        if field.trim().is_empty() {
            push(&format!("channels.sms.{key}"), "must name a field".into());
        }
    }
}

/// A reply as it is compared with the words: surrounding white space and punctuation left
/// out, upper case.
pub fn reply_word(text: &str) -> String {
    text.trim_matches(|c: char| {
        c.is_whitespace() || c.is_ascii_punctuation() || "¡¿«»“”‘’…".contains(c)
    })
    .to_uppercase()
}
