//! Where a call's providers post its progress and the key pressed, and how those requests are
//! authenticated. Every URL names the provider, the incident and the delivery, and carries a
//! token signed with the deployment's key over all three: a stranger cannot forge a key press,
//! and a token is good for its own delivery only. Twilio also signs each request
//! (`X-Twilio-Signature`, checked as for SMS); Vonage, when signed callbacks are turned on for
//! the application, sends a JWT signed with the account's signature secret (HS256).

use std::collections::HashMap;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, KeyInit, Mac};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::settings::{VoiceProviderKeys, VoiceProviderKind};
use crate::channel::sms::report::twilio_signature;
use crate::settings::Secret;

pub const CALLBACK_PATH: &str = "/api/v1/callbacks/voice";
const TOKEN_BYTES: usize = 24;

/// Which of a call's callbacks a request is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Callback {
    /// The call's progress (Twilio's status callback, Vonage's events).
    Status,
    /// The key pressed, or none (Twilio's `<Gather>` action, Vonage's `input` event).
    Key,
}

/// One delivery's callbacks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CallRef<'a> {
    pub provider: &'a str,
    pub incident: i64,
    pub delivery: i64,
}

/// Callback URLs and what checks them.
#[derive(Clone)]
pub struct CallLinks {
    base: String,
    key: Vec<u8>,
    providers: HashMap<String, (VoiceProviderKind, Secret, Option<Secret>)>,
    /// How long a key is waited for (`channels.voice.wait_for_key`), for the NCCO said again.
    pub wait_for_key: std::time::Duration,
}

impl CallLinks {
    pub fn new(
        key: &[u8],
        public_url: &str,
        providers: &[VoiceProviderKeys],
        wait_for_key: std::time::Duration,
    ) -> CallLinks {
        CallLinks {
            wait_for_key,
            base: format!("{}{CALLBACK_PATH}/", public_url.trim_end_matches('/')),
            key: key.to_vec(),
            providers: providers
                .iter()
                .map(|p| {
                    (
                        p.settings.name.clone(),
                        (
                            p.settings.kind,
                            p.password.clone(),
                            p.signature_secret.clone(),
                        ),
                    )
                })
                .collect(),
        }
    }

    pub fn kind(&self, provider: &str) -> Option<VoiceProviderKind> {
        self.providers.get(provider).map(|(kind, _, _)| *kind)
    }

    fn token(&self, call: CallRef<'_>) -> String {
        // Any key length is valid for HMAC.
        let mut mac =
            <Hmac<Sha256> as KeyInit>::new_from_slice(&self.key).unwrap_or_else(|_| unreachable!());
        mac.update(
            format!(
                "voice-call\0{}\0{}\0{}",
                call.provider, call.incident, call.delivery
            )
            .as_bytes(),
        );
        URL_SAFE_NO_PAD.encode(&mac.finalize().into_bytes()[..TOKEN_BYTES])
    }

    /// The URL without its query: what the handler rebuilds to check Twilio's signature.
    fn path(&self, call: CallRef<'_>, callback: Callback) -> String {
        let tail = match callback {
            Callback::Status => "",
            Callback::Key => "/key",
        };
        format!(
            "{}{}/{}/{}{tail}",
            self.base, call.provider, call.incident, call.delivery
        )
    }

    /// Where the provider posts the call's progress.
    pub fn status_url(&self, call: CallRef<'_>) -> String {
        format!(
            "{}?token={}",
            self.path(call, Callback::Status),
            self.token(call)
        )
    }

    /// Where the provider posts the key pressed after the message was said the `round`th time,
    /// in `language` (for the words said back), with the desk's acknowledgement token (`ack`)
    /// that a 1 brings back.
    pub fn key_url(
        &self,
        call: CallRef<'_>,
        language: &str,
        round: u8,
        ack: Option<&str>,
    ) -> String {
        let mut query = url::form_urlencoded::Serializer::new(String::new());
        query.append_pair("token", &self.token(call));
        if let Some(ack) = ack {
            query.append_pair("ack", ack);
        }
        let language: String = language
            .chars()
            .filter(|c| c.is_ascii_alphanumeric() || *c == '-')
            .take(16)
            .collect();
        query.append_pair("lang", &language);
        query.append_pair("round", &round.to_string());
        format!("{}?{}", self.path(call, Callback::Key), query.finish())
    }

    /// Whether the URL's token is this delivery's (compared in constant time, whatever its
    /// length).
    pub fn token_is_valid(&self, call: CallRef<'_>, token: &str) -> bool {
        let expected = Sha256::digest(self.token(call).as_bytes());
        bool::from(expected.ct_eq(&Sha256::digest(token.as_bytes())))
    }

    /// Whether the provider's own signature, if it signs, is right: Twilio's over the URL it
    /// was given (`query` as it came) and the form parameters; Vonage's JWT when the provider
    /// has a signature secret configured. A provider that does not sign passes (the token is
    /// checked apart).
    pub fn signature_is_valid(
        &self,
        call: CallRef<'_>,
        callback: Callback,
        query: &str,
        twilio: Option<&str>,
        bearer: Option<&str>,
        params: &[(String, String)],
    ) -> bool {
        match self.providers.get(call.provider) {
            Some((VoiceProviderKind::Twilio, auth_token, _)) => twilio.is_some_and(|sig| {
                let url = format!("{}?{query}", self.path(call, callback));
                let expected = twilio_signature(auth_token.expose(), &url, params);
                bool::from(expected.as_bytes().ct_eq(sig.trim().as_bytes()))
            }),
            Some((VoiceProviderKind::Vonage, _, Some(secret))) => {
                bearer.is_some_and(|jwt| hs256_is_valid(secret.expose(), jwt))
            }
            Some((VoiceProviderKind::Vonage, _, None)) => true,
            None => false,
        }
    }
}

/// Whether `jwt` (`header.payload.signature`) is signed with HMAC-SHA256 under `secret`, as
/// Vonage signs its callbacks, and its header says so.
pub fn hs256_is_valid(secret: &str, jwt: &str) -> bool {
    let jwt = jwt.trim();
    let jwt = jwt.strip_prefix("Bearer ").unwrap_or(jwt).trim();
    let mut parts = jwt.splitn(3, '.');
    let (Some(header), Some(payload), Some(signature)) = (parts.next(), parts.next(), parts.next())
    else {
        return false;
    };
    let alg_is_hs256 = URL_SAFE_NO_PAD
        .decode(header)
        .ok()
        .and_then(|h| serde_json::from_slice::<serde_json::Value>(&h).ok())
        .is_some_and(|h| h.get("alg").and_then(|a| a.as_str()) == Some("HS256"));
    let Ok(signature) = URL_SAFE_NO_PAD.decode(signature) else {
        return false;
    };
    let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(secret.as_bytes())
        .unwrap_or_else(|_| unreachable!());
    mac.update(header.as_bytes());
    mac.update(b".");
    mac.update(payload.as_bytes());
    alg_is_hs256 && mac.verify_slice(&signature).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::channel::voice::settings::VoiceProviderSettings;

    fn keys(name: &str, kind: VoiceProviderKind, secret: Option<&str>) -> VoiceProviderKeys {
        VoiceProviderKeys {
            settings: VoiceProviderSettings {
                name: name.into(),
                kind,
                priority: 0,
                base_url: String::new(),
                username: "AC1".into(),
                password: None,
                password_file: None,
                password_env: None,
                signature_secret: None,
                signature_secret_file: None,
                signature_secret_env: None,
                caller: "+390612345678".into(),
                calls_per_second: None,
            },
            password: Secret::new("auth-token"),
            signature_secret: secret.map(Secret::new),
            base_url: url::Url::parse("https://api.example/").unwrap(),
        }
    }

    fn links() -> CallLinks {
        CallLinks::new(
            b"deployment key",
            "https://banditore.example/",
            &[
                keys("tw", VoiceProviderKind::Twilio, None),
                keys("vo", VoiceProviderKind::Vonage, Some("sig-secret")),
            ],
            std::time::Duration::from_secs(8),
        )
    }

    #[test]
    fn a_token_is_good_for_its_own_delivery_incident_and_provider_only() {
        let l = links();
        let call = CallRef {
            provider: "tw",
            incident: 7,
            delivery: 70,
        };
        let url = l.status_url(call);
        assert!(url.starts_with("https://banditore.example/api/v1/callbacks/voice/tw/7/70?token="));
        let token = url.split("token=").nth(1).unwrap();
        assert!(l.token_is_valid(call, token));
        for other in [
            CallRef {
                incident: 8,
                ..call
            },
            CallRef {
                delivery: 71,
                ..call
            },
            CallRef {
                provider: "vo",
                ..call
            },
        ] {
            assert!(!l.token_is_valid(other, token));
        }
        assert!(!l.token_is_valid(call, ""));
        assert!(!l.token_is_valid(call, &token[1..]));
    }

    #[test]
    fn twilios_signature_is_checked_over_the_url_it_was_given() {
        let l = links();
        let call = CallRef {
            provider: "tw",
            incident: 7,
            delivery: 70,
        };
        let url = l.key_url(call, "it", 1, Some("7.70.sig"));
        let (_, query) = url.split_once('?').unwrap();
        let params = vec![
            ("CallSid".to_owned(), "CA1".to_owned()),
            ("Digits".to_owned(), "1".to_owned()),
        ];
        let sig = twilio_signature("auth-token", &url, &params);
        let check = |sig: &str, params: &[(String, String)]| {
            l.signature_is_valid(call, Callback::Key, query, Some(sig), None, params)
        };
        assert!(check(&sig, &params));
        let tampered = vec![params[0].clone(), ("Digits".to_owned(), "2".to_owned())];
        assert!(!check(&sig, &tampered));
        assert!(!check("AAAA", &params));
        assert!(!l.signature_is_valid(call, Callback::Status, query, Some(&sig), None, &params));
    }

    #[test]
    fn vonages_jwt_is_checked_with_the_signature_secret() {
        let sign = |secret: &str, header: &str| {
            let h = URL_SAFE_NO_PAD.encode(header);
            let p = URL_SAFE_NO_PAD.encode(r#"{"api_key":"k","iat":1}"#);
            let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(secret.as_bytes()).unwrap();
            mac.update(format!("{h}.{p}").as_bytes());
            let s = URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes());
            format!("{h}.{p}.{s}")
        };
        let good = sign("sig-secret", r#"{"alg":"HS256","typ":"JWT"}"#);
        assert!(hs256_is_valid("sig-secret", &good));
        assert!(hs256_is_valid("sig-secret", &format!("Bearer {good}")));
        assert!(!hs256_is_valid("other", &good));
        assert!(!hs256_is_valid(
            "sig-secret",
            &sign("sig-secret", r#"{"alg":"none"}"#)
        ));
        assert!(!hs256_is_valid("sig-secret", "a.b"));
        let l = links();
        let call = CallRef {
            provider: "vo",
            incident: 1,
            delivery: 2,
        };
        assert!(l.signature_is_valid(call, Callback::Status, "", None, Some(&good), &[]));
        assert!(!l.signature_is_valid(call, Callback::Status, "", None, None, &[]));
    }

    proptest::proptest! {
        #[test]
        fn hostile_tokens_and_jwts_are_refused_without_a_panic(text in crate::hostile::text()) {
            let l = links();
            let call = CallRef {
                provider: "vo",
                incident: 1,
                delivery: 2,
            };
            proptest::prop_assert!(!l.token_is_valid(call, &text));
            proptest::prop_assert!(!hs256_is_valid("sig-secret", &text));
            proptest::prop_assert!(!l.signature_is_valid(call, Callback::Key, &text, Some(&text), Some(&text), &[]));
        }
    }
}
