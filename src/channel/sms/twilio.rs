//! Twilio Programmable Messaging: `POST /2010-04-01/Accounts/{sid}/Messages.json`, form-encoded,
//! basic auth with the Account SID and auth token; `201` with the message, or an error JSON
//! `{"code": …, "message": …, "status": …}`.

use async_trait::async_trait;
use serde::Deserialize;

use super::{Accepted, Answer, Gateway, GatewayError, SmsMessage, unreachable};
use crate::settings::{Secret, SmsProviderKeys};

pub struct Twilio {
    name: String,
    url: String,
    account: String,
    token: Option<Secret>,
    sender: String,
    http: reqwest::Client,
}

#[derive(Deserialize)]
struct Created {
    sid: String,
    num_segments: Option<String>,
}

#[derive(Deserialize)]
struct Failure {
    code: Option<u32>,
    message: Option<String>,
}

/// Twilio's codes for a number that cannot receive SMS: invalid (21211), not a mobile (21614),
/// opted out with STOP (21610). Not 21612: that 'To' cannot be reached from this 'From' (the
/// country's or network's sender rules, no route from Twilio), which another provider, with its
/// own sender and routes, may well reach.
const NUMBER_GONE: &[u32] = &[21211, 21614, 21610];

impl Twilio {
    pub fn new(keys: &SmsProviderKeys, http: reqwest::Client) -> Twilio {
        let account = keys.settings.username.trim().to_owned();
        let url = format!(
            "{}/2010-04-01/Accounts/{account}/Messages.json",
            keys.base_url.as_str().trim_end_matches('/')
        );
        Twilio {
            name: keys.settings.name.clone(),
            url,
            account,
            token: keys.password.clone(),
            sender: keys.settings.sender.clone(),
            http,
        }
    }
}

#[async_trait]
impl Gateway for Twilio {
    async fn send(&self, msg: &SmsMessage<'_>) -> Result<Accepted, GatewayError> {
        // A Messaging Service (MG…) picks the sender itself.
        let from_key = if self.sender.starts_with("MG") {
            "MessagingServiceSid"
        } else {
            "From"
        };
        let mut form = vec![
            ("To", msg.to),
            (from_key, self.sender.as_str()),
            ("Body", msg.text),
        ];
        if let Some(url) = msg.report_url {
            form.push(("StatusCallback", url));
        }
        let resp = self
            .http
            .post(&self.url)
            .basic_auth(&self.account, self.token.as_ref().map(Secret::expose))
            .form(&form)
            .send()
            .await
            .map_err(|e| unreachable(&self.name, &e))?;
        let answer = Answer::read(resp).await;
        if answer.status.is_success() {
            let created: Created = serde_json::from_str(&answer.body).map_err(|e| {
                GatewayError::Unavailable(format!("unexpected answer ({e}): {}", answer.excerpt()))
            })?;
            return Ok(Accepted {
                id: created.sid,
                segments: created
                    .num_segments
                    .and_then(|n| n.parse().ok())
                    .filter(|n| *n > 0),
            });
        }
        let failure: Option<Failure> = serde_json::from_str(&answer.body).ok();
        let code = failure.as_ref().and_then(|f| f.code);
        let reason = match &failure {
            Some(f) => format!(
                "HTTP {} code {} {}",
                answer.status.as_u16(),
                code.map_or("-".into(), |c| c.to_string()),
                f.message.as_deref().unwrap_or("")
            ),
            None => format!("HTTP {}: {}", answer.status.as_u16(), answer.excerpt()),
        };
        Err(match (answer.status.as_u16(), code) {
            // 20429: too many requests at once, never processed. 21611: the sender's queue
            // holds more than Twilio keeps (hours of its rate), so Twilio takes no more for now.
            // Both ask to slow down; neither is about this message.
            (429, _) | (_, Some(20429 | 21611)) => GatewayError::Throttled {
                after: answer.retry_after,
                reason,
            },
            (_, Some(c)) if NUMBER_GONE.contains(&c) => GatewayError::NumberGone(reason),
            (401 | 403, _) | (_, Some(20003)) => GatewayError::Credentials(reason),
            (400..=499, _) => GatewayError::Refused(reason),
            _ => GatewayError::Unavailable(reason),
        })
    }
}
