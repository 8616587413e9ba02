//! A Facebook Page: `POST /{version}/{page-id}/feed` with a Page access token.
//!
//! - Updates are comments on the incident's first post (`/{post-id}/comments`), or posts of
//!   their own (`channels.facebook.updates`).
//! - The Graph API's throttling codes (4, 17, 32, 613 and the Pages one, 80001) defer the post
//!   by `estimated_time_to_regain_access` from `X-Business-Use-Case-Usage`, or a minute.
//! - Code 506 (duplicate post) on a retry is the post an earlier attempt made before its
//!   answer was lost: it counts as posted.
//! - The token travels in the form body, never in a URL that an error message could print.

pub mod settings;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use serde::Deserialize;

use crate::channel::social::{RateGate, excerpt, header, thread, unreachable};
use crate::channel::{Channel, Outgoing, Receipt, SendError};
use crate::domain::subscriber::ChannelKind;
use crate::settings::{FacebookSettings, FacebookUpdates, Secret};
use crate::store::Store;

const KIND: ChannelKind = ChannelKind::Facebook;
const THROTTLING: [i64; 5] = [4, 17, 32, 613, 80001];

pub struct FacebookChannel {
    http: reqwest::Client,
    base: String,
    page_id: String,
    token: Secret,
    updates: FacebookUpdates,
    store: Arc<dyn Store>,
    gate: RateGate,
}

#[derive(Deserialize)]
struct Created {
    id: String,
}

#[derive(Deserialize, Default)]
struct GraphError {
    #[serde(default)]
    error: GraphErrorBody,
}

#[derive(Deserialize, Default)]
struct GraphErrorBody {
    #[serde(default)]
    message: String,
    #[serde(default)]
    code: i64,
    #[serde(default)]
    error_subcode: Option<i64>,
}

impl FacebookChannel {
    pub fn new(
        settings: &FacebookSettings,
        token: Secret,
        store: Arc<dyn Store>,
    ) -> Result<FacebookChannel, String> {
        Ok(FacebookChannel {
            http: crate::channel::social::http_client(KIND, settings.timeout.get())?,
            base: format!(
                "{}/{}",
                settings.base_url.trim_end_matches('/'),
                settings.api_version
            ),
            page_id: settings.page_id.clone(),
            token,
            updates: settings.updates,
            store,
            gate: RateGate::default(),
        })
    }
}

/// How long the Pages usage header says to wait, the largest over its entries.
fn regain_access(headers: &reqwest::header::HeaderMap) -> Option<Duration> {
    let usage: serde_json::Value =
        serde_json::from_str(header(headers, "x-business-use-case-usage")?).ok()?;
    let minutes = usage
        .as_object()?
        .values()
        .filter_map(|entries| entries.as_array())
        .flatten()
        .filter_map(|e| e["estimated_time_to_regain_access"].as_u64())
        .max()?;
    Some(Duration::from_secs(minutes * 60))
}

#[async_trait]
impl Channel for FacebookChannel {
    fn kind(&self) -> ChannelKind {
        KIND
    }

    async fn send(&self, msg: &Outgoing) -> Result<Receipt, SendError> {
        self.gate.check()?;
        let earlier = thread(&self.store, KIND, msg).await?;
        let (url, comment) = match (self.updates, earlier.first()) {
            (FacebookUpdates::Comments, Some(first)) => {
                (format!("{}/{first}/comments", self.base), true)
            }
            _ => (format!("{}/{}/feed", self.base, self.page_id), false),
        };
        let resp = self
            .http
            .post(&url)
            .form(&[
                ("message", msg.text.as_str()),
                ("access_token", self.token.expose()),
            ])
            .send()
            .await
            .map_err(|e| unreachable(KIND, &e))?;
        let status = resp.status();
        let headers = resp.headers().clone();
        let body = resp.text().await.map_err(|e| unreachable(KIND, &e))?;
        if status.is_success() {
            let created: Created = serde_json::from_str(&body).map_err(|e| SendError::Retry {
                after: None,
                reason: format!(
                    "facebook answered {status} with an unreadable body ({e}): {}",
                    excerpt(&body)
                ),
            })?;
            return Ok(Receipt {
                provider_id: Some(created.id),
                provider: Some(
                    if comment {
                        "facebook-comment"
                    } else {
                        "facebook"
                    }
                    .into(),
                ),
                segments: None,
            });
        }
        let error = serde_json::from_str::<GraphError>(&body)
            .unwrap_or_default()
            .error;
        if THROTTLING.contains(&error.code) {
            let wait = regain_access(&headers).unwrap_or(Duration::from_secs(60));
            return Err(SendError::Throttled {
                after: self.gate.close_for(wait),
            });
        }
        if error.code == 506 && msg.attempt > 1 {
            tracing::info!(channel = %KIND, delivery = msg.delivery_id,
                "facebook already has this post (an earlier attempt's answer was lost); counting it as posted");
            return Ok(Receipt {
                provider_id: None,
                provider: Some("facebook".into()),
                segments: None,
            });
        }
        let detail = if error.message.is_empty() {
            excerpt(&body)
        } else {
            match error.error_subcode {
                Some(sub) => format!("code {} ({sub}): {}", error.code, error.message),
                None => format!("code {}: {}", error.code, error.message),
            }
        };
        let reason = format!("facebook answered {status}: {detail}");
        Err(match error.code {
            // The token expired or lacks a permission: the channel is paused, so that once it is
            // renewed the statement still goes out.
            190 | 10 | 200..=299 => SendError::Credentials {
                reason: format!(
                    "{reason} (check channels.facebook.page_token and its pages_manage_posts permission)"
                ),
            },
            100 | 506 => SendError::Reject { reason },
            _ => SendError::Retry {
                after: None,
                reason,
            },
        })
    }
}

/// Facebook in the registry: the region's Page, posting approved statements.
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
        let c = &v.settings.channels.facebook;
        let (true, Some(keys)) = (c.enabled, v.channels.get::<Secret>(KIND)) else {
            return Ok(None);
        };
        let channel = FacebookChannel::new(c, keys.clone(), wiring.store.clone())
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

    #[test]
    fn usage_header_says_how_long_to_wait() {
        let mut headers = reqwest::header::HeaderMap::new();
        headers.insert(
            "x-business-use-case-usage",
            r#"{"104":[{"type":"pages","call_count":100,"total_cputime":3,"total_time":4,"estimated_time_to_regain_access":7}]}"#
                .parse()
                .unwrap(),
        );
        assert_eq!(regain_access(&headers), Some(Duration::from_secs(420)));
        assert_eq!(regain_access(&reqwest::header::HeaderMap::new()), None);
    }
}
