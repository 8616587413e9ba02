//! Vonage SMS API: `POST /sms/json`, form-encoded. The answer is `200` even when the message
//! failed: `messages` has one entry per part of the (concatenated) message, each with its own
//! `status`, `"0"` for accepted. Some parts accepted and others not is a message cut short
//! ([`GatewayError::Partial`]), whatever the refused part's status says.

use std::time::Duration;

use async_trait::async_trait;
use serde::Deserialize;

use super::{Accepted, Answer, Gateway, GatewayError, SmsMessage, unreachable};
use crate::settings::{Secret, SmsProviderKeys};

pub struct Vonage {
    name: String,
    url: String,
    key: String,
    secret: Option<Secret>,
    sender: String,
    http: reqwest::Client,
}

#[derive(Deserialize)]
struct Sent {
    #[serde(rename = "message-count")]
    count: Option<String>,
    #[serde(default)]
    messages: Vec<Part>,
}

#[derive(Deserialize)]
struct Part {
    status: String,
    #[serde(rename = "message-id")]
    id: Option<String>,
    #[serde(rename = "error-text")]
    error: Option<String>,
}

impl Vonage {
    pub fn new(keys: &SmsProviderKeys, http: reqwest::Client) -> Vonage {
        Vonage {
            name: keys.settings.name.clone(),
            url: format!("{}/sms/json", keys.base_url.as_str().trim_end_matches('/')),
            key: keys.settings.username.trim().to_owned(),
            secret: keys.password.clone(),
            sender: keys.settings.sender.trim_start_matches('+').to_owned(),
            http,
        }
    }
}

/// What a non-zero `status` means for the message.
fn classify(status: &str, reason: String) -> GatewayError {
    match status {
        "1" => GatewayError::Throttled {
            after: Some(Duration::from_secs(1)),
            reason,
        },
        // A barred number (on Vonage's list of barred numbers) or a de-activated one: it may
        // not receive messages.
        "7" | "33" => GatewayError::NumberGone(reason),
        // Credentials refused (4), the account suspended (8), a signature refused (14) or
        // required instead of the secret (32): every message fails until an operator acts, as
        // with Twilio's 20003, whose causes include a suspended account.
        "4" | "8" | "14" | "32" => GatewayError::Credentials(reason),
        // Missing or invalid parameters, invalid message, too long, invalid sender, network
        // code, callback, destination not whitelisted: this message, at this provider.
        "2" | "3" | "6" | "12" | "15" | "22" | "23" | "29" => GatewayError::Refused(reason),
        // No credit, binds, HTTP not enabled, internal error: the provider, not the message.
        _ => GatewayError::Unavailable(reason),
    }
}

#[async_trait]
impl Gateway for Vonage {
    async fn send(&self, msg: &SmsMessage<'_>) -> Result<Accepted, GatewayError> {
        let reference = msg.reference.to_string();
        let mut form = vec![
            ("api_key", self.key.as_str()),
            (
                "api_secret",
                self.secret.as_ref().map_or("", Secret::expose),
            ),
            ("from", self.sender.as_str()),
            ("to", msg.to_digits()),
            ("text", msg.text),
            ("type", if msg.is_unicode() { "unicode" } else { "text" }),
            ("client-ref", reference.as_str()),
        ];
        if let Some(url) = msg.report_url {
            form.push(("callback", url));
        }
        let resp = self
            .http
            .post(&self.url)
            .form(&form)
            .send()
            .await
            .map_err(|e| unreachable(&self.name, &e))?;
        let answer = Answer::read(resp).await;
        match answer.status.as_u16() {
            200 => {}
            429 => {
                return Err(GatewayError::Throttled {
                    after: answer.retry_after,
                    reason: "HTTP 429".into(),
                });
            }
            status => {
                return Err(GatewayError::Unavailable(format!(
                    "HTTP {status}: {}",
                    answer.excerpt()
                )));
            }
        }
        let sent: Sent = serde_json::from_str(&answer.body).map_err(|e| {
            GatewayError::Unavailable(format!("unexpected answer ({e}): {}", answer.excerpt()))
        })?;
        let parts = sent.messages.len();
        let refused = (sent.messages.iter().enumerate()).find(|(_, p)| p.status != "0");
        if let Some((i, bad)) = refused {
            let error = bad.error.as_deref().unwrap_or("");
            let reason = format!("status {} {error}", bad.status);
            if sent.messages.iter().any(|p| p.status == "0") {
                let reason = format!(
                    "part {} of {parts}: {reason}; the others were accepted",
                    i + 1
                );
                return Err(GatewayError::Partial(reason));
            }
            return Err(classify(&bad.status, reason));
        }
        let id = sent
            .messages
            .first()
            .and_then(|p| p.id.clone())
            .ok_or_else(|| GatewayError::Unavailable("an answer without messages".into()))?;
        Ok(Accepted {
            id,
            segments: sent
                .count
                .and_then(|n| n.parse().ok())
                .or(u32::try_from(sent.messages.len()).ok())
                .filter(|n| *n > 0),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_are_read_as_vonage_documents_them() {
        let r = || "r".to_owned();
        assert!(matches!(classify("1", r()), GatewayError::Throttled { .. }));
        assert!(matches!(classify("7", r()), GatewayError::NumberGone(_)));
        assert!(matches!(classify("33", r()), GatewayError::NumberGone(_)));
        assert!(matches!(classify("15", r()), GatewayError::Refused(_)));
        assert!(matches!(classify("4", r()), GatewayError::Credentials(_)));
        assert!(matches!(classify("8", r()), GatewayError::Credentials(_)));
        assert!(matches!(classify("32", r()), GatewayError::Credentials(_)));
        assert!(matches!(classify("9", r()), GatewayError::Unavailable(_)));
        assert!(matches!(classify("5", r()), GatewayError::Unavailable(_)));
    }
}
