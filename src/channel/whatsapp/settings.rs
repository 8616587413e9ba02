//! `channels.whatsapp`: the Cloud API number and its token, the app secret that signs status
//! webhooks and the token of the subscription handshake, the number's pace (messages a second,
//! unique recipients a day, the wait between two messages to one person), and per template
//! language the approved template and what fills its body's parameters.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use crate::settings::check::check_url;
use crate::settings::{Dur, Secret, SecretSource, Settings};

/// What may fill a template's body parameter: a part rendered from `templates/whatsapp/<lang>/`
/// or a part of the recipient's own.
pub const PARAMETERS: [&str; 6] = [
    "title",
    "services",
    "text",
    "name",
    "ack_url",
    "unsubscribe_url",
];

/// WhatsApp's limit on a template body once its parameters are filled in, in characters
/// (Meta's message-template guidelines: "1024 characters"; error 132005 past it).
pub const MAX_BODY_CHARS: usize = 1024;

#[derive(Debug, Clone, Deserialize)]
pub struct WhatsAppSettings {
    pub enabled: bool,
    /// The Graph API's address and version: `POST <api_url><api_version>/<phone_number_id>/messages`.
    pub api_url: String,
    pub api_version: String,
    /// The business number's id in the Cloud API (not the number itself).
    pub phone_number_id: String,
    /// A system user's access token with `whatsapp_business_messaging`.
    pub token: Option<Secret>,
    pub token_file: Option<PathBuf>,
    pub token_env: Option<String>,
    /// The Meta app's secret, which signs status webhooks (`X-Hub-Signature-256`).
    pub app_secret: Option<Secret>,
    pub app_secret_file: Option<PathBuf>,
    pub app_secret_env: Option<String>,
    /// What Meta's subscription handshake must carry in `hub.verify_token`.
    pub verify_token: Option<Secret>,
    pub verify_token_file: Option<PathBuf>,
    pub verify_token_env: Option<String>,
    /// The number's throughput: 80 by default, 1,000 once Meta upgrades it.
    pub messages_per_second: u32,
    /// The messaging limit: unique people messaged in a rolling 24 hours (250, 1000, 2000,
    /// 10000, 100000); 0 for unlimited. Meta sets it per business portfolio, shared by all its
    /// numbers: this deployment's share of it.
    pub daily_recipients: u32,
    /// The least time between two messages to one person (Meta's pair rate: about 6 s).
    pub pair_interval: Dur,
    pub concurrency: u32,
    pub timeout: Dur,
    /// The authentication template that carries a citizen's sign-up code (its body's one
    /// parameter and its copy-code button); empty: citizens cannot sign up by WhatsApp.
    pub code_template: String,
    /// Per template language (`it`, `en`): the approved template messages go out as.
    pub templates: BTreeMap<String, WhatsAppTemplate>,
}

/// One approved message template, in one language.
#[derive(Debug, Clone, Deserialize)]
pub struct WhatsAppTemplate {
    /// Its name in WhatsApp Manager.
    pub name: String,
    /// Its language code there (`it`, `en`, `en_GB`).
    pub language: String,
    /// What fills `{{1}}`, `{{2}}`… in order (see [`PARAMETERS`]).
    pub parameters: Vec<String>,
    /// The characters of the approved body's own words, without its `{{n}}`: the parameters
    /// share what is left of WhatsApp's 1024.
    pub body_chars: usize,
    /// The template has a URL button whose link ends in `{{1}}`: it carries the desk's
    /// acknowledgement token (the button's URL is `<public_url>/ack/{{1}}`).
    #[serde(default)]
    pub ack_button: bool,
}

impl WhatsAppSettings {
    pub fn token(&self) -> SecretSource {
        SecretSource {
            value: self.token.clone(),
            file: self.token_file.clone(),
            env: self.token_env.clone(),
        }
    }

    pub fn app_secret(&self) -> SecretSource {
        SecretSource {
            value: self.app_secret.clone(),
            file: self.app_secret_file.clone(),
            env: self.app_secret_env.clone(),
        }
    }

    pub fn verify_token(&self) -> SecretSource {
        SecretSource {
            value: self.verify_token.clone(),
            file: self.verify_token_file.clone(),
            env: self.verify_token_env.clone(),
        }
    }
}

/// The channel's secrets, read, and its endpoint.
#[derive(Debug, Clone)]
pub struct WhatsAppKeys {
    pub token: Secret,
    pub app_secret: Option<Secret>,
    pub verify_token: Option<Secret>,
    /// `<api_url><api_version>/<phone_number_id>/messages`.
    pub messages_url: url::Url,
}

/// Checks `channels.whatsapp`; `None` when it is off or wrong.
pub fn validate(settings: &Settings, push: &mut impl FnMut(&str, String)) -> Option<WhatsAppKeys> {
    let w = &settings.channels.whatsapp;
    if !w.enabled {
        return None;
    }
    let mut ok = true;
    let mut fail = |key: &str, msg: String| {
        ok = false;
        push(&format!("channels.whatsapp.{key}"), msg);
    };
    let mut secret =
        |key: &str, source: SecretSource, needed: Option<&str>| match source.resolve(key) {
            Ok(Some(s)) => Some(s),
            Ok(None) => {
                if let Some(why) = needed {
                    fail(
                        key,
                        format!("give `{key}`, `{key}_file` or `{key}_env`: {why}"),
                    );
                }
                None
            }
            Err(e) => {
                fail(key, e);
                None
            }
        };
    let token = secret("token", w.token(), Some("the Cloud API's access token"));
    let app_secret = secret(
        "app_secret",
        w.app_secret(),
        Some("it checks the status webhooks' signature"),
    );
    let verify_token = secret(
        "verify_token",
        w.verify_token(),
        Some("Meta's webhook subscription must present it"),
    );
    let mut fail = |key: &str, msg: String| {
        ok = false;
        push(&format!("channels.whatsapp.{key}"), msg);
    };
    if w.phone_number_id.is_empty() || !w.phone_number_id.chars().all(|c| c.is_ascii_digit()) {
        fail(
            "phone_number_id",
            format!(
                "`{}` is not a phone number id (the digits WhatsApp Manager shows beside the number, not the number)",
                w.phone_number_id
            ),
        );
    }
    let version_ok = w
        .api_version
        .strip_prefix('v')
        .is_some_and(|v| !v.is_empty() && v.chars().all(|c| c.is_ascii_digit() || c == '.'));
    if !version_ok {
        fail(
            "api_version",
            format!(
                "`{}` is not a Graph API version such as v23.0",
                w.api_version
            ),
        );
    }
    let mut url_problem = None;
    check_url("channels.whatsapp.api_url", &w.api_url, &mut |p, m| {
        url_problem = Some((p.to_owned(), m));
    });
    if let Some((_, m)) = url_problem {
        fail("api_url", m);
    }
    if !(1..=1_000).contains(&w.messages_per_second) {
        fail(
            "messages_per_second",
            "must be from 1 to 1000 (80 unless Meta has upgraded the number)".into(),
        );
    }
    if w.concurrency == 0 {
        fail("concurrency", "must be at least 1".into());
    }
    if w.pair_interval.get() > Duration::from_secs(60) {
        fail(
            "pair_interval",
            "must be at most 1m (Meta's pair rate is about 6s)".into(),
        );
    }
    if w.timeout.get() > settings.outbox.send_timeout.get() {
        fail("timeout", "must stay within outbox.send_timeout".into());
    }
    if w.templates.is_empty() {
        fail(
            "templates",
            "WhatsApp is enabled but no [channels.whatsapp.templates.<language>] says which approved template to send".into(),
        );
    }
    for (lang, t) in &w.templates {
        let mut fail = |key: &str, msg: String| fail(&format!("templates.{lang}.{key}"), msg);
        if !valid_template_name(&t.name) {
            fail(
                "name",
                format!(
                    "`{}` is not a template name (lower-case letters, digits and `_`, at most 512)",
                    t.name
                ),
            );
        }
        if !valid_language_code(&t.language) {
            fail(
                "language",
                format!(
                    "`{}` is not a WhatsApp language code such as it, en or en_GB",
                    t.language
                ),
            );
        }
        if t.parameters.is_empty() {
            fail(
                "parameters",
                "name what fills the template's {{1}}, {{2}}…".into(),
            );
        }
        let mut seen = BTreeSet::new();
        for p in &t.parameters {
            if !PARAMETERS.contains(&p.as_str()) {
                fail(
                    "parameters",
                    format!("`{p}` is not one of {}", PARAMETERS.join(", ")),
                );
            } else if !seen.insert(p.as_str()) {
                fail("parameters", format!("`{p}` is given twice"));
            }
        }
        if t.body_chars + 10 * t.parameters.len() > MAX_BODY_CHARS {
            fail(
                "body_chars",
                format!(
                    "{} characters of the template's own leave too little of WhatsApp's {MAX_BODY_CHARS} for {} parameters",
                    t.body_chars,
                    t.parameters.len()
                ),
            );
        }
    }
    if !w.code_template.is_empty() && !valid_template_name(&w.code_template) {
        fail(
            "code_template",
            format!("`{}` is not a template name", w.code_template),
        );
    }
    let messages_url = url::Url::parse(&w.api_url)
        .and_then(|base| base.join(&format!("{}/{}/messages", w.api_version, w.phone_number_id)))
        .ok();
    match (ok, token, messages_url) {
        (true, Some(token), Some(messages_url)) => Some(WhatsAppKeys {
            token,
            app_secret,
            verify_token,
            messages_url,
        }),
        _ => None,
    }
}

/// A template name as WhatsApp Manager allows it.
fn valid_template_name(name: &str) -> bool {
    (1..=512).contains(&name.len())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
}

/// `it`, `en`, `en_GB`, `pt_BR`, `zh_HK`: two or three letters, then an optional region.
fn valid_language_code(code: &str) -> bool {
    let (lang, region) = code.split_once('_').unwrap_or((code, ""));
    (2..=3).contains(&lang.len())
        && lang.chars().all(|c| c.is_ascii_lowercase())
        && (region.is_empty()
            || (2..=4).contains(&region.len()) && region.chars().all(|c| c.is_ascii_alphanumeric()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn template_names_and_language_codes_are_read_as_whatsapp_writes_them() {
        assert!(valid_template_name("banditore_incidente_1"));
        assert!(!valid_template_name("Banditore"));
        assert!(!valid_template_name(""));
        assert!(valid_language_code("it"));
        assert!(valid_language_code("en_GB"));
        assert!(!valid_language_code("en-GB"));
        assert!(!valid_language_code("english"));
    }
}
