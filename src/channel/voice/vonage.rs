//! Vonage Voice API: `POST /v1/calls` with a JWT signed (RS256) by the Vonage application's
//! private key, the call's instructions given inline as an NCCO: `talk` (the text, then the
//! invitation to press 1, with `bargeIn` so a key pressed meanwhile counts) and `input` (one
//! DTMF digit, posted to the key URL). `201` with the call's `uuid`; errors as JSON problem
//! details (`type`, `title`, `detail`, `invalid_parameters`); `429` past three calls created
//! per second.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::Deserialize;
use serde_json::{Value, json};

use super::{Call, Caller, words};
use crate::channel::sms::{Answer, GatewayError, unreachable};

pub struct Vonage {
    name: String,
    url: String,
    application_id: String,
    key: ring::rsa::KeyPair,
    caller: String,
    http: reqwest::Client,
}

#[derive(Deserialize)]
struct Created {
    uuid: String,
}

/// How long a JWT for one request lives.
const JWT_LIFETIME: Duration = Duration::from_secs(300);

impl Vonage {
    pub fn new(
        name: &str,
        base_url: &url::Url,
        application_id: &str,
        key: ring::rsa::KeyPair,
        caller: &str,
        http: reqwest::Client,
    ) -> Vonage {
        Vonage {
            name: name.to_owned(),
            url: format!("{}/v1/calls", base_url.as_str().trim_end_matches('/')),
            application_id: application_id.trim().to_owned(),
            key,
            caller: caller.trim_start_matches('+').to_owned(),
            http,
        }
    }

    /// A JWT for one request: `application_id`, `iat`, `exp` and a fresh `jti`, RS256.
    fn jwt(&self, now: SystemTime) -> Result<String, GatewayError> {
        let iat = now.duration_since(UNIX_EPOCH).unwrap_or_default().as_secs();
        let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"RS256","typ":"JWT"}"#);
        let claims = json!({
            "application_id": self.application_id,
            "iat": iat,
            "exp": iat + JWT_LIFETIME.as_secs(),
            "jti": crate::ids::random_hex(16),
        });
        let payload = URL_SAFE_NO_PAD.encode(claims.to_string());
        let signed = format!("{header}.{payload}");
        let mut signature = vec![0; self.key.public().modulus_len()];
        self.key
            .sign(
                &ring::signature::RSA_PKCS1_SHA256,
                &ring::rand::SystemRandom::new(),
                signed.as_bytes(),
                &mut signature,
            )
            .map_err(|_| GatewayError::Unavailable("cannot sign the request's JWT".into()))?;
        Ok(format!("{signed}.{}", URL_SAFE_NO_PAD.encode(signature)))
    }
}

/// The call's NCCO for the `round`th time the message is said: the text (left out when empty),
/// the invitation to press 1, and one DTMF digit awaited.
pub fn ncco(call: &Call<'_>, text: &str, round: usize) -> Value {
    let w = words(call.language);
    let talk =
        |t: &str| json!({"action": "talk", "text": t, "language": w.locale, "bargeIn": true});
    let mut actions = Vec::new();
    if !text.is_empty() {
        actions.push(talk(text));
    }
    actions.push(talk(w.press));
    actions.push(json!({
        "action": "input",
        "type": ["dtmf"],
        "dtmf": {"maxDigits": 1, "timeOut": call.wait_for_key.as_secs().clamp(1, 10)},
        "eventUrl": [call.key_urls[round.min(1)]],
        "eventMethod": "POST",
    }));
    Value::Array(actions)
}

/// The NCCO answering an `input` event: thanks when 1 was pressed and the confirmation
/// recorded; the invitation once more, awaiting a key at `again`, when no key came the first
/// time; otherwise goodbye (the call ends with its NCCO).
pub fn after_key(
    language: &str,
    confirmed: bool,
    again: Option<&str>,
    wait_for_key: Duration,
) -> Value {
    let w = words(language);
    let talk = |t: &str| json!({"action": "talk", "text": t, "language": w.locale});
    match (confirmed, again) {
        (true, _) => json!([talk(w.thanks)]),
        (false, Some(url)) => json!([
            {"action": "talk", "text": w.press, "language": w.locale, "bargeIn": true},
            {
                "action": "input",
                "type": ["dtmf"],
                "dtmf": {"maxDigits": 1, "timeOut": wait_for_key.as_secs().clamp(1, 10)},
                "eventUrl": [url],
                "eventMethod": "POST",
            },
            talk(w.goodbye),
        ]),
        (false, None) => json!([talk(w.goodbye)]),
    }
}

/// What Vonage said to a call it would not place.
fn classify(status: u16, retry_after: Option<Duration>, reason: String) -> GatewayError {
    match status {
        429 => GatewayError::Throttled {
            after: retry_after,
            reason,
        },
        401 | 403 => GatewayError::Credentials(reason),
        // Payment required: the account's balance is spent; no call goes until it is topped up.
        402 => GatewayError::Unavailable(reason),
        400..=499 => GatewayError::Refused(reason),
        _ => GatewayError::Unavailable(reason),
    }
}

#[async_trait]
impl Caller for Vonage {
    async fn call(&self, call: &Call<'_>) -> Result<String, GatewayError> {
        let body = json!({
            "to": [{"type": "phone", "number": call.to.trim_start_matches('+')}],
            "from": {"type": "phone", "number": self.caller},
            "ncco": ncco(call, call.text, 0),
            "event_url": [call.status_url],
            "event_method": "POST",
            "ringing_timer": call.ring_for.as_secs().clamp(1, 120),
            "machine_detection": "hangup",
        });
        let jwt = self.jwt(SystemTime::now())?;
        let resp = self
            .http
            .post(&self.url)
            .bearer_auth(jwt)
            .json(&body)
            .send()
            .await
            .map_err(|e| unreachable(&self.name, &e))?;
        let answer = Answer::read(resp).await;
        if answer.status.is_success() {
            let created: Created = serde_json::from_str(&answer.body).map_err(|e| {
                GatewayError::Unavailable(format!("unexpected answer ({e}): {}", answer.excerpt()))
            })?;
            return Ok(created.uuid);
        }
        let problem: Option<Value> = serde_json::from_str(&answer.body).ok();
        let said = |k: &str| {
            problem
                .as_ref()
                .and_then(|p| p.get(k))
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_owned()
        };
        let reason = match &problem {
            Some(_) => format!(
                "HTTP {} {} {}",
                answer.status.as_u16(),
                said("title"),
                said("detail")
            ),
            None => format!("HTTP {}: {}", answer.status.as_u16(), answer.excerpt()),
        };
        Err(classify(answer.status.as_u16(), answer.retry_after, reason))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_are_classified_as_vonage_documents_them() {
        let r = || "r".to_owned();
        assert!(matches!(
            classify(429, None, r()),
            GatewayError::Throttled { .. }
        ));
        assert!(matches!(
            classify(401, None, r()),
            GatewayError::Credentials(_)
        ));
        assert!(matches!(classify(400, None, r()), GatewayError::Refused(_)));
        assert!(matches!(
            classify(402, None, r()),
            GatewayError::Unavailable(_)
        ));
        assert!(matches!(
            classify(500, None, r()),
            GatewayError::Unavailable(_)
        ));
    }

    #[test]
    fn the_ncco_says_the_text_then_awaits_one_digit_at_the_rounds_url() {
        let urls = ["https://b/1".to_owned(), "https://b/2".to_owned()];
        let call = Call {
            to: "+393331234567",
            text: "Guasto",
            language: "en",
            status_url: "https://b/s",
            key_urls: &urls,
            ring_for: Duration::from_secs(30),
            wait_for_key: Duration::from_secs(8),
        };
        let n = ncco(&call, "Guasto", 1);
        assert_eq!(n[0]["action"], "talk");
        assert_eq!(n[0]["text"], "Guasto");
        assert_eq!(n[0]["language"], "en-GB");
        assert_eq!(
            n[1]["text"],
            "Press 1 to confirm you have received this message."
        );
        assert_eq!(n[2]["action"], "input");
        assert_eq!(n[2]["dtmf"]["maxDigits"], 1);
        assert_eq!(n[2]["eventUrl"][0], "https://b/2");
        assert_eq!(ncco(&call, "", 0).as_array().unwrap().len(), 2);
    }
}
