//! The Cloud API's messages endpoint: `POST /{version}/{phone_number_id}/messages` with the
//! bearer token, a template message's JSON, and the answer read as Meta documents it: the
//! message's `wamid…` id, or a Graph API error whose `code` says what to do (Meta's "WhatsApp
//! error codes" page: build error handling on `code`, not on the message's words).

use std::time::Duration;

use serde_json::{Value, json};

use super::super::SendError;
use crate::settings::Secret;

/// One template message to send.
pub struct TemplateMessage<'a> {
    /// E.164 with `+`; the API takes the digits.
    pub to: &'a str,
    pub template: &'a str,
    pub language: &'a str,
    pub body: &'a [String],
    /// The dynamic end of the template's first URL button, when it has one.
    pub button: Option<&'a str>,
}

impl TemplateMessage<'_> {
    pub fn json(&self) -> Value {
        let parameters: Vec<Value> = self
            .body
            .iter()
            .map(|text| json!({"type": "text", "text": text}))
            .collect();
        let mut components = vec![json!({"type": "body", "parameters": parameters})];
        if let Some(suffix) = self.button {
            components.push(json!({
                "type": "button",
                "sub_type": "url",
                "index": "0",
                "parameters": [{"type": "text", "text": suffix}],
            }));
        }
        json!({
            "messaging_product": "whatsapp",
            "recipient_type": "individual",
            "to": self.to.trim_start_matches('+'),
            "type": "template",
            "template": {
                "name": self.template,
                "language": {"code": self.language},
                "components": components,
            },
        })
    }
}

pub struct Api {
    http: reqwest::Client,
    url: url::Url,
    token: Secret,
}

impl Api {
    pub fn new(http: reqwest::Client, url: url::Url, token: Secret) -> Api {
        Api { http, url, token }
    }

    /// Sends `msg`; `Ok` is the message's id (`wamid…`), which status webhooks name.
    pub async fn send(&self, msg: &TemplateMessage<'_>) -> Result<String, SendError> {
        let resp = self
            .http
            .post(self.url.clone())
            .bearer_auth(self.token.expose())
            .json(&msg.json())
            .send()
            .await
            .map_err(|e| SendError::Retry {
                after: None,
                reason: format!(
                    "WhatsApp {}: {e}",
                    if e.is_timeout() {
                        "did not answer in time"
                    } else {
                        "unreachable"
                    }
                ),
            })?;
        let status = resp.status().as_u16();
        let body = resp.text().await.unwrap_or_default();
        if (200..300).contains(&status) {
            let value: Value = serde_json::from_str(&body).unwrap_or(Value::Null);
            return value["messages"][0]["id"]
                .as_str()
                .map(str::to_owned)
                .ok_or_else(|| SendError::Retry {
                    after: None,
                    reason: format!(
                        "WhatsApp answered {status} without a message id: {}",
                        excerpt(&body)
                    ),
                });
        }
        Err(classify(status, &body, msg.template))
    }
}

/// How long a 131056 (one person messaged too often) is waited out: Meta's pair rate.
pub const PAIR_RATE_WAIT: Duration = Duration::from_secs(6);

fn excerpt(body: &str) -> String {
    body.chars().take(200).collect()
}

/// What a refusal means, by the Graph API error's `code` (Meta's "WhatsApp error codes"), the
/// HTTP status where the body says nothing.
pub fn classify(status: u16, body: &str, template: &str) -> SendError {
    let value: Value = serde_json::from_str(body).unwrap_or(Value::Null);
    let error = &value["error"];
    let code = error["code"].as_i64();
    let message = error["message"].as_str().unwrap_or("");
    let details = error["error_data"]["details"].as_str().unwrap_or("");
    let said = match (code, details.is_empty()) {
        (Some(code), true) => format!("{code} {message}"),
        (Some(code), false) => format!("{code} {message}: {details}"),
        (None, _) => format!("HTTP {status}: {}", excerpt(body)),
    };
    let said: String = said.chars().take(300).collect();
    let throttled = |secs: u64| SendError::Throttled {
        after: Duration::from_secs(secs),
    };
    match code {
        // Authorization: an expired or revoked token (190), no permission (10, 200-299).
        Some(0 | 190 | 10 | 200..=299) => SendError::Credentials { reason: said },
        // The account refused as a whole, whoever the message is for: a payment problem
        // (131042), the account locked (131031), blocked for policy violations (368), the
        // number not registered on the platform (133010). Every message would fail alike: the
        // channel pauses and the operators are told, as for a refused token (Meta's "WhatsApp
        // error codes").
        Some(131042 | 131031 | 368 | 133010) => SendError::Credentials { reason: said },
        // Throughput (130429), the account's rate (80007), too many API calls (4), the
        // pair rate (131056: one person messaged too often), spam rate (131048).
        Some(130429) => throttled(1),
        Some(4 | 80007) => throttled(60),
        Some(131056) => SendError::Throttled {
            after: PAIR_RATE_WAIT,
        },
        Some(131048) => throttled(600),
        // Template problems: the message as configured cannot go.
        Some(132000 | 132001 | 132005 | 132007 | 132012 | 132015 | 132016) => SendError::Reject {
            reason: format!("template `{template}`: {said}"),
        },
        // Not a WhatsApp user (or an app too old), and outside the 24-hour window for a
        // non-template: recorded, not retried.
        Some(131026 | 131047 | 131051) => SendError::Reject { reason: said },
        // Meta's own trouble: 1, 2, 131000, 131016, 133004 (server unavailable).
        Some(1 | 2 | 131000 | 131016 | 133004) => SendError::Retry {
            after: None,
            reason: said,
        },
        _ if status == 401 => SendError::Credentials { reason: said },
        _ if status == 429 => throttled(1),
        _ if status >= 500 => SendError::Retry {
            after: None,
            reason: said,
        },
        _ => SendError::Reject { reason: said },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn error(code: i64) -> String {
        json!({"error": {"message": "(#x) words", "type": "OAuthException", "code": code,
            "error_data": {"messaging_product": "whatsapp", "details": "why"}, "fbtrace_id": "A"}})
        .to_string()
    }

    #[test]
    fn an_account_refused_as_a_whole_pauses_the_channel() {
        for code in [131042, 131031, 368, 133010] {
            assert!(
                matches!(
                    classify(400, &error(code), "t"),
                    SendError::Credentials { .. }
                ),
                "{code}"
            );
        }
    }

    #[test]
    fn refusals_are_read_by_their_code() {
        assert!(matches!(
            classify(401, &error(190), "t"),
            SendError::Credentials { .. }
        ));
        assert_eq!(
            classify(400, &error(130429), "t"),
            SendError::Throttled {
                after: Duration::from_secs(1)
            }
        );
        assert_eq!(
            classify(400, &error(131056), "t"),
            SendError::Throttled {
                after: Duration::from_secs(6)
            }
        );
        assert!(matches!(
            classify(400, &error(131048), "t"),
            SendError::Throttled { .. }
        ));
        assert!(matches!(
            classify(400, &error(80007), "t"),
            SendError::Throttled { .. }
        ));
        match classify(400, &error(132001), "banditore_incidente") {
            SendError::Reject { reason } => assert!(reason.contains("banditore_incidente")),
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            classify(400, &error(131026), "t"),
            SendError::Reject { .. }
        ));
        assert!(matches!(
            classify(400, &error(131047), "t"),
            SendError::Reject { .. }
        ));
        assert!(matches!(
            classify(503, "<html>", "t"),
            SendError::Retry { .. }
        ));
        assert!(matches!(
            classify(500, &error(131000), "t"),
            SendError::Retry { .. }
        ));
        assert!(matches!(
            classify(401, "", "t"),
            SendError::Credentials { .. }
        ));
    }

    #[test]
    fn the_message_is_a_template_with_its_body_and_button() {
        let body = vec!["a".to_owned(), "b".to_owned()];
        let v = TemplateMessage {
            to: "+393331234567",
            template: "banditore",
            language: "it",
            body: &body,
            button: Some("1.2.s"),
        }
        .json();
        assert_eq!(v["to"], "393331234567");
        assert_eq!(v["template"]["language"]["code"], "it");
        assert_eq!(v["template"]["components"][0]["parameters"][1]["text"], "b");
        assert_eq!(v["template"]["components"][1]["sub_type"], "url");
    }
}
