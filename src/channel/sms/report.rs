//! Delivery reports: where each provider posts them, and how they are authenticated. Twilio
//! signs its requests (`X-Twilio-Signature`: Base64 of HMAC-SHA1 with the auth token over the URL
//! and the sorted form parameters); the others are given a URL that carries a token signed with
//! the deployment's key, checked in constant time.

use std::collections::HashMap;

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use hmac::{Hmac, KeyInit, Mac};
use sha1::Sha1;
use sha2::Sha256;
use subtle::ConstantTimeEq;

use crate::settings::{Secret, SmsProviderKeys, SmsProviderKind};

pub const REPORT_PATH: &str = "/api/v1/callbacks/sms";
const TOKEN_BYTES: usize = 24;

/// Report URLs and what checks them.
#[derive(Clone)]
pub struct ReportLinks {
    base: String,
    key: Vec<u8>,
    /// Per provider name: its kind and its secret (Twilio signs with it).
    providers: HashMap<String, (SmsProviderKind, Option<Secret>)>,
}

impl ReportLinks {
    pub fn new(key: &[u8], public_url: &str, providers: &[SmsProviderKeys]) -> ReportLinks {
        ReportLinks {
            base: format!("{}{REPORT_PATH}/", public_url.trim_end_matches('/')),
            key: key.to_vec(),
            providers: providers
                .iter()
                .map(|p| {
                    (
                        p.settings.name.clone(),
                        (p.settings.kind, p.password.clone()),
                    )
                })
                .collect(),
        }
    }

    fn token(&self, provider: &str) -> String {
        // Any key length is valid for HMAC.
        let mut mac =
            <Hmac<Sha256> as KeyInit>::new_from_slice(&self.key).unwrap_or_else(|_| unreachable!());
        mac.update(format!("sms-report\0{provider}").as_bytes());
        URL_SAFE_NO_PAD.encode(&mac.finalize().into_bytes()[..TOKEN_BYTES])
    }

    /// Where `provider` posts its reports. Twilio's is plain: its signature covers it.
    pub fn url(&self, provider: &str, kind: SmsProviderKind) -> String {
        match kind {
            SmsProviderKind::Twilio => format!("{}{provider}", self.base),
            _ => format!("{}{provider}?token={}", self.base, self.token(provider)),
        }
    }

    pub fn kind(&self, provider: &str) -> Option<SmsProviderKind> {
        self.providers.get(provider).map(|(kind, _)| *kind)
    }

    /// Whether a report for `provider` is genuine: Twilio's signature over the URL and the form
    /// parameters, or the token in the URL for the others.
    pub fn verify(
        &self,
        provider: &str,
        token: Option<&str>,
        signature: Option<&str>,
        params: &[(String, String)],
    ) -> bool {
        match self.providers.get(provider) {
            Some((SmsProviderKind::Twilio, Some(auth_token))) => signature.is_some_and(|sig| {
                let expected = twilio_signature(
                    auth_token.expose(),
                    &self.url(provider, SmsProviderKind::Twilio),
                    params,
                );
                bool::from(expected.as_bytes().ct_eq(sig.trim().as_bytes()))
            }),
            Some((_, _)) => token.is_some_and(|t| {
                use sha2::Digest;
                // Digests make the comparison constant-time whatever the lengths.
                let expected = Sha256::digest(self.token(provider).as_bytes());
                bool::from(expected.ct_eq(&Sha256::digest(t.as_bytes())))
            }),
            None => false,
        }
    }
}

/// Twilio's request signature: Base64(HMAC-SHA1(auth token, URL + each parameter's name and
/// value, sorted by name)).
pub fn twilio_signature(auth_token: &str, url: &str, params: &[(String, String)]) -> String {
    let mut sorted: Vec<&(String, String)> = params.iter().collect();
    sorted.sort();
    let mut mac = <Hmac<Sha1> as KeyInit>::new_from_slice(auth_token.as_bytes())
        .unwrap_or_else(|_| unreachable!());
    mac.update(url.as_bytes());
    for (k, v) in sorted {
        mac.update(k.as_bytes());
        mac.update(v.as_bytes());
    }
    STANDARD.encode(mac.finalize().into_bytes())
}

/// A report's fields, whatever the provider called them: `(message id, status, error)`.
pub fn fields(params: &[(String, String)]) -> Option<(String, String, Option<String>)> {
    let get = |names: &[&str]| {
        names.iter().find_map(|n| {
            params
                .iter()
                .find(|(k, _)| k == n)
                .map(|(_, v)| v.trim().to_owned())
                .filter(|v| !v.is_empty())
        })
    };
    let id = get(&["MessageSid", "messageId", "message-id", "order_id", "id"])?;
    let status = get(&["MessageStatus", "status"])?.to_ascii_lowercase();
    // Vonage reports "0" for no error.
    let error = get(&["ErrorCode", "err-code", "error"]).filter(|e| e != "0");
    Some((id, status, error))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn twilio_signature_matches_twilios_documented_example() {
        // The example of Twilio's webhook security page (the value checked with Python's hmac).
        let params: Vec<(String, String)> = [
            ("CallSid", "CA1234567890ABCDE"),
            ("Caller", "+12349013030"),
            ("Digits", "1234"),
            ("From", "+12349013030"),
            ("To", "+18005551212"),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        assert_eq!(
            twilio_signature(
                "12345",
                "https://mycompany.com/myapp.php?foo=1&bar=2",
                &params
            ),
            "0/KCTR6DLpKmkAf8muzZqo1nDgQ="
        );
    }

    #[test]
    fn fields_are_found_under_each_providers_names() {
        let p = |pairs: &[(&str, &str)]| -> Vec<(String, String)> {
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect()
        };
        assert_eq!(
            fields(&p(&[("MessageSid", "SM1"), ("MessageStatus", "delivered")])),
            Some(("SM1".into(), "delivered".into(), None))
        );
        assert_eq!(
            fields(&p(&[
                ("messageId", "0C1"),
                ("status", "failed"),
                ("err-code", "6")
            ])),
            Some(("0C1".into(), "failed".into(), Some("6".into())))
        );
        assert_eq!(
            fields(&p(&[
                ("messageId", "0C1"),
                ("status", "delivered"),
                ("err-code", "0")
            ])),
            Some(("0C1".into(), "delivered".into(), None))
        );
        assert_eq!(fields(&p(&[("status", "delivered")])), None);
    }
}
