//! X: `POST /2/tweets`, signed with OAuth 1.0a user context (HMAC-SHA1).
//!
//! - Updates reply to the incident's latest post (`reply.in_reply_to_tweet_id`).
//! - X refuses a text identical to a recent post with 403 "duplicate content": for a retry
//!   that is the post an earlier attempt made before its answer was lost, so it counts as
//!   posted (without an id; a later update replies to the latest post with one).
//! - 429 holds posting until `x-rate-limit-reset` (unix seconds; X sends no `Retry-After`),
//!   and so does `x-rate-limit-remaining: 0` on any answer.

pub mod settings;

use std::sync::Arc;

use async_trait::async_trait;
use base64::Engine as _;
use hmac::{Hmac, KeyInit, Mac};
use serde::Deserialize;
use serde_json::json;

use crate::channel::social::{RateGate, excerpt, header_number, reset_unix, thread, unreachable};
use crate::channel::{Channel, Outgoing, Receipt, SendError};
use crate::domain::subscriber::ChannelKind;
use crate::settings::{Secret, XSettings};
use crate::store::Store;

const KIND: ChannelKind = ChannelKind::X;

/// The OAuth 1.0a user-context credentials.
pub struct OAuth1 {
    pub consumer_key: String,
    pub consumer_secret: Secret,
    pub token: String,
    pub token_secret: Secret,
}

/// RFC 3986 percent-encoding, as OAuth 1.0a requires: everything but `A–Z a–z 0–9 - . _ ~`.
pub fn percent_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

impl OAuth1 {
    /// The signature of a request: HMAC-SHA1 over the method, the URL without query and the
    /// sorted, encoded parameters (`params`: the oauth ones and any query or form ones).
    pub fn signature(&self, method: &str, url: &str, params: &[(String, String)]) -> String {
        let mut encoded: Vec<(String, String)> = params
            .iter()
            .map(|(k, v)| (percent_encode(k), percent_encode(v)))
            .collect();
        encoded.sort();
        let joined = encoded
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join("&");
        let base = format!(
            "{}&{}&{}",
            method.to_ascii_uppercase(),
            percent_encode(url),
            percent_encode(&joined)
        );
        let key = format!(
            "{}&{}",
            percent_encode(self.consumer_secret.expose()),
            percent_encode(self.token_secret.expose())
        );
        let Ok(mut mac) = Hmac::<sha1::Sha1>::new_from_slice(key.as_bytes()) else {
            unreachable!("HMAC takes keys of any length")
        };
        mac.update(base.as_bytes());
        base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
    }

    /// The `Authorization` header for a request whose body is JSON (not signed).
    pub fn header(&self, method: &str, url: &str, nonce: &str, timestamp: i64) -> String {
        let mut params = vec![
            ("oauth_consumer_key".to_owned(), self.consumer_key.clone()),
            ("oauth_nonce".to_owned(), nonce.to_owned()),
            ("oauth_signature_method".to_owned(), "HMAC-SHA1".to_owned()),
            ("oauth_timestamp".to_owned(), timestamp.to_string()),
            ("oauth_token".to_owned(), self.token.clone()),
            ("oauth_version".to_owned(), "1.0".to_owned()),
        ];
        let signature = self.signature(method, url, &params);
        params.push(("oauth_signature".to_owned(), signature));
        params.sort();
        let fields = params
            .iter()
            .map(|(k, v)| format!("{}=\"{}\"", percent_encode(k), percent_encode(v)))
            .collect::<Vec<_>>()
            .join(", ");
        format!("OAuth {fields}")
    }
}

pub struct XChannel {
    http: reqwest::Client,
    url: String,
    oauth: OAuth1,
    store: Arc<dyn Store>,
    gate: RateGate,
}

#[derive(Deserialize)]
struct Created {
    data: Tweet,
}

#[derive(Deserialize)]
struct Tweet {
    id: String,
}

#[derive(Deserialize, Default)]
struct Problem {
    #[serde(default)]
    title: String,
    #[serde(default)]
    r#type: String,
    #[serde(default)]
    detail: String,
}

impl XChannel {
    pub fn new(
        settings: &XSettings,
        consumer_secret: Secret,
        token_secret: Secret,
        store: Arc<dyn Store>,
    ) -> Result<XChannel, String> {
        Ok(XChannel {
            http: crate::channel::social::http_client(KIND, settings.timeout.get())?,
            url: format!("{}/2/tweets", settings.base_url.trim_end_matches('/')),
            oauth: OAuth1 {
                consumer_key: settings.consumer_key.trim().to_owned(),
                consumer_secret,
                token: settings.access_token.trim().to_owned(),
                token_secret,
            },
            store,
            gate: RateGate::default(),
        })
    }
}

#[async_trait]
impl Channel for XChannel {
    fn kind(&self) -> ChannelKind {
        KIND
    }

    async fn send(&self, msg: &Outgoing) -> Result<Receipt, SendError> {
        self.gate.check()?;
        let earlier = thread(&self.store, KIND, msg).await?;
        let mut body = json!({"text": msg.text});
        if let Some(parent) = earlier.last() {
            body["reply"] = json!({"in_reply_to_tweet_id": parent});
        }
        let nonce = hex::encode(rand::random::<[u8; 16]>());
        let authorization = self.oauth.header(
            "POST",
            &self.url,
            &nonce,
            jiff::Timestamp::now().as_second(),
        );
        let resp = self
            .http
            .post(&self.url)
            .header(reqwest::header::AUTHORIZATION, authorization)
            .json(&body)
            .send()
            .await
            .map_err(|e| unreachable(KIND, &e))?;
        let status = resp.status();
        let headers = resp.headers().clone();
        let text = resp.text().await.map_err(|e| unreachable(KIND, &e))?;
        // The 15-minute window, and the 24-hour ones per user and per app: a spent window holds
        // posting until its reset, the furthest when several are spent.
        let windows = ["x-rate-limit", "x-user-limit-24hour", "x-app-limit-24hour"];
        let spent = windows
            .iter()
            .filter(|w| header_number(&headers, &format!("{w}-remaining")) == Some(0))
            .filter_map(|w| reset_unix(&headers, &format!("{w}-reset")))
            .max();
        if status.as_u16() == 429 {
            let reset = spent.or_else(|| reset_unix(&headers, "x-rate-limit-reset"));
            return Err(self.gate.throttled(reset));
        }
        if spent.is_some() {
            self.gate.observe(Some(0), spent);
        }
        if status.is_success() {
            let created: Created = serde_json::from_str(&text).map_err(|e| SendError::Retry {
                after: None,
                reason: format!(
                    "x answered {status} with an unreadable body ({e}): {}",
                    excerpt(&text)
                ),
            })?;
            return Ok(Receipt {
                provider_id: Some(created.data.id),
                provider: Some("x".into()),
                segments: None,
            });
        }
        let problem: Problem = serde_json::from_str(&text).unwrap_or_default();
        if status.as_u16() == 403 && problem.detail.contains("duplicate content") && msg.attempt > 1
        {
            tracing::info!(channel = %KIND, delivery = msg.delivery_id, attempt = msg.attempt,
                "x already has this post (an earlier attempt's answer was lost); counting it as posted");
            return Ok(Receipt {
                provider_id: None,
                provider: Some("x".into()),
                segments: None,
            });
        }
        let detail = if problem.title.is_empty() {
            excerpt(&text)
        } else {
            format!("{}: {}", problem.title, problem.detail)
        };
        let reason = format!("x answered {status}: {detail}");
        // Refused keys, or an app X does not let post (without write permission, or not in a
        // Project): the channel is paused, so that once fixed the statement still goes out.
        let credentials = status.as_u16() == 401
            || (status.as_u16() == 403
                && (problem.title.contains("Authentication")
                    || problem.r#type.contains("oauth1-permissions")
                    || problem.r#type.contains("client-forbidden")
                    || problem.title.contains("Client Forbidden")
                    || problem.detail.contains("oauth1 app permissions")));
        Err(match status.as_u16() {
            _ if credentials => SendError::Credentials {
                reason: format!("{reason} (check channels.x keys, tokens and app permissions)"),
            },
            // Pay-per-use credits spent (402, sometimes 403): retried, so that once topped up
            // the post still goes.
            402 => SendError::Retry {
                after: None,
                reason,
            },
            403 if problem.title == "CreditsDepleted" => SendError::Retry {
                after: None,
                reason,
            },
            // A text X refuses (too long, a duplicate of a recent post on a first attempt).
            400 | 403 => SendError::Reject { reason },
            _ => SendError::Retry {
                after: None,
                reason,
            },
        })
    }
}

/// X in the registry: the region's account, posting approved statements as threads.
pub struct Spec;

impl crate::settings::ChannelSection for Spec {
    fn kind(&self) -> ChannelKind {
        KIND
    }

    fn form(&self) -> crate::render::Form {
        crate::render::Form::Post
    }

    fn validate(
        &self,
        s: &crate::settings::Settings,
        keys: &mut crate::settings::ChannelKeys,
        mut push: &mut dyn FnMut(&str, String),
    ) {
        if let Some(k) = settings::validate(s, &mut push) {
            keys.insert(KIND, k);
        }
    }

    fn subscribers(
        &self,
        s: &crate::settings::Settings,
    ) -> Vec<crate::domain::subscriber::ValidSubscriber> {
        settings::subscribers(s)
    }
}

impl crate::channel::ChannelSpec for Spec {
    fn build(
        &self,
        v: &crate::settings::Validated,
        wiring: &crate::channel::Wiring<'_>,
    ) -> Result<Option<crate::channel::Built>, crate::channel::BuildError> {
        let c = &v.settings.channels.x;
        let (true, Some(keys)) = (c.enabled, v.channels.get::<(Secret, Secret)>(KIND)) else {
            return Ok(None);
        };
        let channel = XChannel::new(c, keys.0.clone(), keys.1.clone(), wiring.store.clone())
            .map_err(crate::channel::BuildError)?;
        // One post at a time per account, so that each update finds the post before it.
        Ok(Some(crate::channel::Built::one_at_a_time(Arc::new(
            channel,
        ))))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The example of X's "Creating a signature" guide.
    #[test]
    fn signature_matches_the_documented_example() {
        let oauth = OAuth1 {
            consumer_key: "xvz1evFS4wEEPTGEFPHBog".into(),
            consumer_secret: Secret::new("kAcSOqF21Fu85e7zjz7ZN2U4ZRhfV3WpwPAoE3Z7kBw"),
            token: "370773112-GmHxMAgYyLbNEtIKZeRNFsMKPR9EyMZeS9weJAEb".into(),
            token_secret: Secret::new("LswwdoUaIvS8ltyTt5jkRh4J50vUPVVHtR2YPi5kE"),
        };
        let params: Vec<(String, String)> = [
            (
                "status",
                "Hello Ladies + Gentlemen, a signed OAuth request!",
            ),
            ("include_entities", "true"),
            ("oauth_consumer_key", "xvz1evFS4wEEPTGEFPHBog"),
            ("oauth_nonce", "kYjzVBB8Y0ZFabxSWbWovY3uYSQ2pTgmZeNu2VS4cg"),
            ("oauth_signature_method", "HMAC-SHA1"),
            ("oauth_timestamp", "1318622958"),
            (
                "oauth_token",
                "370773112-GmHxMAgYyLbNEtIKZeRNFsMKPR9EyMZeS9weJAEb",
            ),
            ("oauth_version", "1.0"),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        assert_eq!(
            oauth.signature(
                "post",
                "https://api.twitter.com/1.1/statuses/update.json",
                &params
            ),
            "hCtSmYh+iHYCEqBWrE7C7hYmtUk="
        );
        assert_eq!(
            percent_encode("Ladies + Gentlemen!"),
            "Ladies%20%2B%20Gentlemen%21"
        );
        let header = oauth.header("POST", "https://api.x.com/2/tweets", "abc", 1318622958);
        assert!(header.starts_with("OAuth oauth_consumer_key=\"xvz1evFS4wEEPTGEFPHBog\", oauth_nonce=\"abc\", oauth_signature=\""), "{header}");
        assert!(!header.contains("kAcSOq"), "no secret in the header");
    }
}
