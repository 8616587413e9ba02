//! Delivery reports and desks' replies: where each provider posts them, and how they are
//! authenticated. Twilio signs its requests (`X-Twilio-Signature`: Base64 of HMAC-SHA1 with the
//! auth token over the URL and the sorted form parameters); the others are given a report URL
//! that carries a token signed with the deployment's key, and an inbound URL that carries the
//! configured `reply_token`, both checked in constant time.

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
    /// Desks' replies, when they are on.
    replies: Option<Replies>,
}

/// What reads a desk's reply: the words that say "seen", the inbound URL's token for providers
/// that do not sign, and a generic provider's fields.
#[derive(Clone)]
pub struct Replies {
    /// As compared: see `settings::reply_word`.
    words: Vec<String>,
    token: Option<Secret>,
    sender_field: String,
    text_field: String,
}

impl Replies {
    pub fn new(
        words: &[String],
        token: Option<Secret>,
        sender_field: &str,
        text_field: &str,
    ) -> Replies {
        Replies {
            words: words
                .iter()
                .map(|w| super::settings::reply_word(w))
                .filter(|w| !w.is_empty())
                .collect(),
            token,
            sender_field: sender_field.to_owned(),
            text_field: text_field.to_owned(),
        }
    }

    /// Whether `text` is one of the words, whatever its case and the white space and
    /// punctuation around it.
    pub fn says_seen(&self, text: &str) -> bool {
        let word = super::settings::reply_word(text);
        self.words.contains(&word)
    }

    /// The sender's number as the provider wrote it, and the text: Twilio's `From` and `Body`,
    /// Vonage's `msisdn` (international digits without `+`) and `text`, the configured fields
    /// for the others.
    pub fn read(
        &self,
        kind: SmsProviderKind,
        params: &[(String, String)],
    ) -> Option<(String, String)> {
        let get = |name: &str| {
            params
                .iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.trim().to_owned())
        };
        let (from, text) = match kind {
            SmsProviderKind::Twilio => (get("From")?, get("Body")?),
            SmsProviderKind::Vonage => {
                let msisdn = get("msisdn")?;
                let number = if msisdn.starts_with('+') {
                    msisdn
                } else {
                    format!("+{msisdn}")
                };
                (number, get("text")?)
            }
            _ => (get(&self.sender_field)?, get(&self.text_field)?),
        };
        (!from.is_empty()).then_some((from, text))
    }
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
            replies: None,
        }
    }

    /// Takes desks' replies too.
    pub fn with_replies(mut self, replies: Replies) -> ReportLinks {
        self.replies = Some(replies);
        self
    }

    pub fn replies(&self) -> Option<&Replies> {
        self.replies.as_ref()
    }

    /// Whether a reply posted for `provider` is genuine: Twilio's signature over the inbound URL
    /// (with the query it came with) and the form parameters, or the configured token for the
    /// others.
    pub fn verify_reply(
        &self,
        provider: &str,
        query: &str,
        token: Option<&str>,
        signature: Option<&str>,
        params: &[(String, String)],
    ) -> bool {
        let Some(replies) = &self.replies else {
            return false;
        };
        match self.providers.get(provider) {
            Some((SmsProviderKind::Twilio, Some(auth_token))) => signature.is_some_and(|sig| {
                let mut url = format!("{}{provider}/inbound", self.base);
                if !query.is_empty() {
                    url = format!("{url}?{query}");
                }
                let expected = twilio_signature(auth_token.expose(), &url, params);
                bool::from(expected.as_bytes().ct_eq(sig.trim().as_bytes()))
            }),
            Some((_, _)) => match (&replies.token, token) {
                (Some(expected), Some(given)) => {
                    use sha2::Digest;
                    let expected = Sha256::digest(expected.expose().as_bytes());
                    bool::from(expected.ct_eq(&Sha256::digest(given.as_bytes())))
                }
                _ => false,
            },
            None => false,
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
    fn a_reply_says_seen_whatever_its_case_spaces_and_punctuation() {
        let replies = Replies::new(&["OK".into(), "sì".into()], None, "from", "text");
        for yes in ["OK", " ok ", "Ok.", "ok!!", "«OK»", "Sì", "SÌ!", "\nsì\n"] {
            assert!(replies.says_seen(yes), "{yes:?}");
        }
        for no in ["", "KO", "OK grazie", "no", "okay", "si"] {
            assert!(!replies.says_seen(no), "{no:?}");
        }
    }

    #[test]
    fn a_reply_is_read_from_each_providers_fields() {
        let p = |pairs: &[(&str, &str)]| -> Vec<(String, String)> {
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect()
        };
        let replies = Replies::new(&["OK".into()], None, "sender", "message");
        assert_eq!(
            replies.read(
                SmsProviderKind::Twilio,
                &p(&[("From", "+393331234567"), ("Body", "OK")])
            ),
            Some(("+393331234567".into(), "OK".into()))
        );
        assert_eq!(
            replies.read(
                SmsProviderKind::Vonage,
                &p(&[("msisdn", "393331234567"), ("text", "ok")])
            ),
            Some(("+393331234567".into(), "ok".into()))
        );
        assert_eq!(
            replies.read(
                SmsProviderKind::Generic,
                &p(&[("sender", "3331234567"), ("message", "OK")])
            ),
            Some(("3331234567".into(), "OK".into()))
        );
        assert_eq!(
            replies.read(SmsProviderKind::Twilio, &p(&[("Body", "OK")])),
            None
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

    proptest::proptest! {
        #[test]
        fn any_reply_is_read_without_a_panic_and_only_the_words_say_seen(
            text in crate::hostile::text(),
            from in crate::hostile::text(),
        ) {
            let replies = Replies::new(&["OK".into()], None, "from", "text");
            let params = vec![
                ("From".to_owned(), from.clone()),
                ("Body".to_owned(), text.clone()),
                ("msisdn".to_owned(), from.clone()),
                ("text".to_owned(), text.clone()),
                ("from".to_owned(), from),
            ];
            for kind in [SmsProviderKind::Twilio, SmsProviderKind::Vonage, SmsProviderKind::Generic] {
                let _ = replies.read(kind, &params);
            }
            let seen = replies.says_seen(&text);
            proptest::prop_assert_eq!(seen, super::super::settings::reply_word(&text) == "OK");
        }
    }
}
