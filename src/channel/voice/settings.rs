//! `channels.voice`: the call providers' accounts, the order they are tried in, how long a phone
//! rings and how long a key press is waited for.

use std::collections::BTreeSet;
use std::path::PathBuf;

use serde::Deserialize;

use crate::settings::{Dur, Secret, SecretSource, Settings, word_enum};

#[derive(Debug, Clone, Deserialize)]
pub struct VoiceSettings {
    pub enabled: bool,
    /// Calls being placed at once, over all providers.
    pub concurrency: u32,
    /// Longest wait for one provider's answer to placing a call; past it the next is tried.
    pub timeout: Dur,
    /// Consecutive failures after which a provider is put aside, and for how long.
    pub put_aside_after: u32,
    pub put_aside_for: Dur,
    /// How long the phone rings before the call counts as unanswered.
    pub ring_for: Dur,
    /// How long a key press is waited for after the message, each time it is said.
    pub wait_for_key: Dur,
    pub providers: Vec<VoiceProviderSettings>,
}

word_enum! {
    pub enum VoiceProviderKind {
        /// Twilio Programmable Voice (the Calls API, TwiML).
        Twilio => "twilio",
        /// Vonage Voice API (NCCO), with a Vonage application's id and private key.
        Vonage => "vonage",
    }
}

/// One call provider's account. Twilio: `username` the Account SID, `password` the auth token
/// (which also signs Twilio's callbacks). Vonage: `username` the application id, `password` the
/// application's private key (PEM), `signature_secret` the account's signature secret when
/// signed callbacks are turned on.
#[derive(Debug, Clone, Deserialize)]
pub struct VoiceProviderSettings {
    pub name: String,
    pub kind: VoiceProviderKind,
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
    pub signature_secret: Option<Secret>,
    pub signature_secret_file: Option<PathBuf>,
    pub signature_secret_env: Option<String>,
    /// The number calls come from (E.164), one the account owns.
    #[serde(default)]
    pub caller: String,
    /// Calls placed per second for the whole deployment; unset: the provider's documented
    /// default (Twilio 1, Vonage 3).
    pub calls_per_second: Option<u32>,
}

impl VoiceProviderSettings {
    pub fn password(&self) -> SecretSource {
        SecretSource {
            value: self.password.clone(),
            file: self.password_file.clone(),
            env: self.password_env.clone(),
        }
    }

    pub fn signature_secret(&self) -> SecretSource {
        SecretSource {
            value: self.signature_secret.clone(),
            file: self.signature_secret_file.clone(),
            env: self.signature_secret_env.clone(),
        }
    }

    /// Calls per second: the configured pace, or the provider's documented default (Twilio:
    /// one call per second per account; Vonage: three `POST /v1/calls` per second).
    pub fn calls_per_second(&self) -> u32 {
        self.calls_per_second.unwrap_or(match self.kind {
            VoiceProviderKind::Twilio => 1,
            VoiceProviderKind::Vonage => 3,
        })
    }
}

/// A call provider that passed its checks, with its secrets read and its address settled.
#[derive(Debug, Clone)]
pub struct VoiceProviderKeys {
    pub settings: VoiceProviderSettings,
    pub password: Secret,
    pub signature_secret: Option<Secret>,
    pub base_url: url::Url,
}

fn public_api(kind: VoiceProviderKind) -> &'static str {
    match kind {
        VoiceProviderKind::Twilio => "https://api.twilio.com/",
        VoiceProviderKind::Vonage => "https://api.nexmo.com/",
    }
}

/// Checks every provider and returns them in the order they are tried (priority, then order of
/// declaration). Empty when voice calls are off.
pub fn validate_voice(
    settings: &Settings,
    push: &mut impl FnMut(&str, String),
) -> Vec<VoiceProviderKeys> {
    let voice = &settings.channels.voice;
    if !voice.enabled {
        return Vec::new();
    }
    if voice.providers.is_empty() {
        push(
            "channels.voice.providers",
            "voice calls are enabled but no [[channels.voice.providers]] is configured".into(),
        );
    }
    if settings.server.public_url.trim().is_empty() {
        push(
            "server.public_url",
            "voice calls need it: the providers post the call's progress and the key pressed there"
                .into(),
        );
    }
    if voice.concurrency == 0 {
        push("channels.voice.concurrency", "must be at least 1".into());
    }
    if voice.timeout.get()
        > settings.outbox.send_timeout.get() / (voice.providers.len().max(1) as u32)
    {
        push(
            "channels.voice.timeout",
            "times the number of providers must stay within outbox.send_timeout (one send may try each provider)".into(),
        );
    }
    if voice.put_aside_after == 0 {
        push(
            "channels.voice.put_aside_after",
            "must be at least 1".into(),
        );
    }
    let ring = voice.ring_for.get().as_secs();
    if !(5..=600).contains(&ring) {
        push(
            "channels.voice.ring_for",
            "must be between 5s and 10m (Twilio rings at most 600 seconds)".into(),
        );
    }
    if !(1..=10).contains(&voice.wait_for_key.get().as_secs()) {
        push(
            "channels.voice.wait_for_key",
            "must be between 1s and 10s (Vonage waits at most 10 seconds for a key)".into(),
        );
    }
    let mut names = BTreeSet::new();
    let mut keys = Vec::new();
    for (i, p) in voice.providers.iter().enumerate() {
        let at = |key: &str| format!("channels.voice.providers[{i}].{key}");
        let mut ok = true;
        let mut fail = |key: &str, msg: String| {
            ok = false;
            push(&at(key), msg);
        };
        if let Some(problem) =
            crate::settings::check::provider_name_problem(&p.name, &mut names, "the callback URL")
        {
            fail("name", problem);
        }
        if p.username.trim().is_empty() {
            fail(
                "username",
                match p.kind {
                    VoiceProviderKind::Twilio => "Twilio needs the Account SID (AC…) as `username`",
                    VoiceProviderKind::Vonage => "Vonage needs the application id as `username`",
                }
                .into(),
            );
        }
        let password = match p.password().resolve("password") {
            Ok(Some(secret)) => Some(secret),
            Ok(None) => {
                fail(
                    "password",
                    match p.kind {
                        VoiceProviderKind::Twilio => "give the auth token as `password`, `password_file` or `password_env`",
                        VoiceProviderKind::Vonage => "give the application's private key (PEM) as `password`, `password_file` or `password_env`",
                    }
                    .into(),
                );
                None
            }
            Err(e) => {
                fail("password", e);
                None
            }
        };
        if let (VoiceProviderKind::Vonage, Some(pem)) = (p.kind, &password)
            && let Err(e) = signing_key(pem.expose())
        {
            fail("password", e);
        }
        let signature_secret = match p.signature_secret().resolve("signature_secret") {
            Ok(secret) => secret,
            Err(e) => {
                fail("signature_secret", e);
                None
            }
        };
        if p.kind == VoiceProviderKind::Twilio && signature_secret.is_some() {
            fail(
                "signature_secret",
                "Twilio signs its callbacks with the auth token: leave this to Vonage".into(),
            );
        }
        let digits = p.caller.strip_prefix('+').unwrap_or("");
        if !(8..=15).contains(&digits.len()) || !digits.chars().all(|c| c.is_ascii_digit()) {
            fail(
                "caller",
                format!(
                    "`{}` is not a number in E.164 (+ and the country code): calls come from a number the account owns",
                    p.caller
                ),
            );
        }
        if p.calls_per_second == Some(0) {
            fail(
                "calls_per_second",
                "must be at least 1 (leave it out for the provider's default)".into(),
            );
        }
        let raw_url = if p.base_url.is_empty() {
            public_api(p.kind).to_owned()
        } else {
            p.base_url.clone()
        };
        let base_url = match url::Url::parse(&raw_url) {
            Ok(u) if matches!(u.scheme(), "http" | "https") && u.host().is_some() => Some(u),
            _ => {
                fail("base_url", format!("`{raw_url}` is not an http(s) URL"));
                None
            }
        };
        if let (true, Some(base_url), Some(password)) = (ok, base_url, password) {
            keys.push(VoiceProviderKeys {
                settings: p.clone(),
                password,
                signature_secret,
                base_url,
            });
        }
    }
    keys.sort_by_key(|k| k.settings.priority);
    keys
}

/// A Vonage application's private key, from its PEM (PKCS #8, as the dashboard gives it), ready
/// to sign the JWTs of the Voice API (RS256).
pub fn signing_key(pem: &str) -> Result<ring::rsa::KeyPair, String> {
    use base64::Engine as _;
    let body: String = pem
        .lines()
        .map(str::trim)
        .skip_while(|l| !l.starts_with("-----BEGIN PRIVATE KEY-----"))
        .skip(1)
        .take_while(|l| !l.starts_with("-----END"))
        .collect();
    if body.is_empty() {
        return Err(
            "not a private key in PEM (-----BEGIN PRIVATE KEY-----, as Vonage's dashboard gives it)"
                .into(),
        );
    }
    let der = base64::engine::general_purpose::STANDARD
        .decode(body)
        .map_err(|e| format!("the private key's PEM is not Base64: {e}"))?;
    ring::rsa::KeyPair::from_pkcs8(&der)
        .map_err(|e| format!("not an RSA private key Vonage can verify: {e}"))
}
