//! Mastodon: `POST /api/v1/statuses` with the account's bearer token.
//!
//! Every post carries an `Idempotency-Key` made of the deployment and the delivery, so that a
//! retry after a lost answer returns the status already made instead of posting twice (Mastodon
//! keeps keys for an hour). Updates reply to the incident's latest post (`in_reply_to_id`).
//! `X-RateLimit-Remaining` of 0 holds posting until `X-RateLimit-Reset` (ISO 8601).

pub mod settings;

use std::sync::Arc;

use async_trait::async_trait;
use jiff::Timestamp;
use serde::Deserialize;

use crate::channel::social::{RateGate, excerpt, header, header_number, thread, unreachable};
use crate::channel::{Channel, Outgoing, Receipt, SendError};
use crate::domain::subscriber::ChannelKind;
use crate::settings::{MastodonSettings, Secret};
use crate::store::Store;

const KIND: ChannelKind = ChannelKind::Mastodon;

pub struct MastodonChannel {
    http: reqwest::Client,
    url: String,
    token: Secret,
    visibility: &'static str,
    language: String,
    deployment: String,
    store: Arc<dyn Store>,
    gate: RateGate,
}

#[derive(Deserialize)]
struct Status {
    id: String,
}

#[derive(Deserialize, Default)]
struct ErrorBody {
    #[serde(default)]
    error: String,
}

impl MastodonChannel {
    pub fn new(
        settings: &MastodonSettings,
        token: Secret,
        language: &str,
        deployment: &str,
        store: Arc<dyn Store>,
    ) -> Result<MastodonChannel, String> {
        Ok(MastodonChannel {
            http: crate::channel::social::http_client(KIND, settings.timeout.get())?,
            url: format!(
                "{}/api/v1/statuses",
                settings.base_url.trim_end_matches('/')
            ),
            token,
            visibility: settings.visibility.as_str(),
            language: language.to_owned(),
            deployment: deployment.to_owned(),
            store,
            gate: RateGate::default(),
        })
    }

    /// The same for every attempt of one delivery, and unique across deployments sharing an
    /// account.
    fn idempotency_key(&self, msg: &Outgoing) -> String {
        format!("banditore-{}-{}", self.deployment, msg.delivery_id)
    }
}

fn reset(headers: &reqwest::header::HeaderMap) -> Option<Timestamp> {
    header(headers, "x-ratelimit-reset").and_then(|v| v.parse().ok())
}

#[async_trait]
impl Channel for MastodonChannel {
    fn kind(&self) -> ChannelKind {
        KIND
    }

    async fn send(&self, msg: &Outgoing) -> Result<Receipt, SendError> {
        self.gate.check()?;
        let earlier = thread(&self.store, KIND, msg).await?;
        match self.post(msg, earlier.last().map(String::as_str)).await {
            // The post the update replies to was deleted: the update starts a thread of its own.
            Err(Posting::ParentGone) => match self.post(msg, None).await {
                Err(Posting::ParentGone) => unreachable_parent(),
                Err(Posting::Failed(e)) => Err(e),
                Ok(receipt) => Ok(receipt),
            },
            Err(Posting::Failed(e)) => Err(e),
            Ok(receipt) => Ok(receipt),
        }
    }
}

enum Posting {
    ParentGone,
    Failed(SendError),
}

impl From<SendError> for Posting {
    fn from(e: SendError) -> Posting {
        Posting::Failed(e)
    }
}

fn unreachable_parent() -> Result<Receipt, SendError> {
    Err(SendError::Reject {
        reason: "mastodon answered 404 to a post that replies to nothing".into(),
    })
}

impl MastodonChannel {
    async fn post(&self, msg: &Outgoing, parent: Option<&str>) -> Result<Receipt, Posting> {
        let mut form = vec![
            ("status", msg.text.as_str()),
            ("visibility", self.visibility),
            ("language", self.language.as_str()),
        ];
        if let Some(parent) = parent {
            form.push(("in_reply_to_id", parent));
        }
        let resp = self
            .http
            .post(&self.url)
            .bearer_auth(self.token.expose())
            .header("Idempotency-Key", self.idempotency_key(msg))
            .form(&form)
            .send()
            .await
            .map_err(|e| unreachable(KIND, &e))?;
        let status = resp.status();
        let headers = resp.headers().clone();
        let remaining = header_number(&headers, "x-ratelimit-remaining");
        let body = resp.text().await.map_err(|e| unreachable(KIND, &e))?;
        if status.as_u16() == 429 {
            return Err(self.gate.throttled(reset(&headers)).into());
        }
        self.gate.observe(remaining, reset(&headers));
        if status.is_success() {
            let posted: Status = serde_json::from_str(&body).map_err(|e| SendError::Retry {
                after: None,
                reason: format!(
                    "mastodon answered {status} with a body that is not a status ({e}): {}",
                    excerpt(&body)
                ),
            })?;
            return Ok(Receipt {
                provider_id: Some(posted.id),
                provider: Some("mastodon".into()),
                segments: None,
            });
        }
        if status.as_u16() == 404 && parent.is_some() {
            return Err(Posting::ParentGone);
        }
        let error = serde_json::from_str::<ErrorBody>(&body)
            .map(|e| e.error)
            .unwrap_or_else(|_| excerpt(&body));
        let reason = format!("mastodon answered {status}: {error}");
        Err(Posting::Failed(match status.as_u16() {
            // A token revoked, short of write:statuses, or of no user (an app token, which
            // Mastodon refuses with 422): the channel is paused, so that once the token is fixed
            // the statement still goes out.
            401 | 403 => SendError::Credentials {
                reason: format!(
                    "{reason} (check channels.mastodon.token and its write:statuses scope)"
                ),
            },
            422 if error.contains("requires an authenticated user") => SendError::Credentials {
                reason: format!("{reason} (channels.mastodon.token must be a user's token)"),
            },
            400 | 404 | 422 => SendError::Reject { reason },
            _ => SendError::Retry {
                after: None,
                reason,
            },
        }))
    }
}

/// Mastodon in the registry: the region's account, posting approved statements as threads.
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
        let c = &v.settings.channels.mastodon;
        let (true, Some(keys)) = (c.enabled, v.channels.get::<Secret>(KIND)) else {
            return Ok(None);
        };
        let channel = MastodonChannel::new(
            c,
            keys.clone(),
            v.settings.routing.default_language.as_str(),
            wiring.deployment_id,
            wiring.store.clone(),
        )
        .map_err(crate::channel::BuildError)?;
        // One post at a time per account, so that each update finds the post before it.
        Ok(Some(crate::channel::Built::one_at_a_time(Arc::new(
            channel,
        ))))
    }
}
