//! WhatsApp through Meta's Cloud API. Outside the 24 hours after a person last wrote to the
//! number, only an approved template may be sent, so every message is one: per template
//! language, `channels.whatsapp.templates.<lang>` names it and says what fills its body's
//! parameters — the parts rendered from `templates/whatsapp/<lang>/` (`title`, `services`,
//! `text`) and the recipient's own (`name`, `ack_url`, `unsubscribe_url`), made to pass
//! WhatsApp's rules (`params.rs`). A template with a URL button carries the desk's
//! acknowledgement token in it.
//!
//! The number's throughput is the outbox's bucket shared by every replica; the pair rate and
//! the daily limit of people are `pace.rs`. Refusals are read by Meta's error codes (`api.rs`).
//! Whether a message was delivered and read comes later in signed status webhooks
//! (`web::hooks::whatsapp_statuses`), recorded on the delivery by the message's `wamid`.

pub mod api;
pub mod pace;
pub mod params;
pub mod settings;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;

use self::api::{Api, TemplateMessage};
use self::pace::Pace;
use self::settings::{MAX_BODY_CHARS, WhatsAppKeys, WhatsAppTemplate};
use super::{Channel, Outgoing, Receipt, SendError};
use crate::domain::subscriber::ChannelKind;

/// The provider's name on the deliveries it sent, which status webhooks are matched by.
pub const PROVIDER: &str = "whatsapp";

/// The subject of an [`Outgoing`] whose text is a citizen's sign-up code: it goes out as
/// `channels.whatsapp.code_template`, an authentication template whose body's one parameter and
/// copy-code button both carry the code.
pub const SIGNUP_CODE: &str = "banditore:whatsapp-signup-code";

pub struct WhatsAppChannel {
    api: Api,
    /// Per template language.
    templates: BTreeMap<String, WhatsAppTemplate>,
    /// The authentication template for sign-up codes; empty for none.
    code_template: String,
    pace: Pace,
}

impl WhatsAppChannel {
    /// The template for a message rendered in `language`: its own, the one of its primary
    /// subtag, or else the first configured.
    fn template(&self, language: &str) -> Option<&WhatsAppTemplate> {
        let primary = language.split(['-', '_']).next().unwrap_or(language);
        self.templates
            .get(language)
            .or_else(|| self.templates.get(primary))
            .or_else(|| self.templates.values().next())
    }
}

#[async_trait]
impl Channel for WhatsAppChannel {
    fn kind(&self) -> ChannelKind {
        ChannelKind::WhatsApp
    }

    async fn send(&self, msg: &Outgoing) -> Result<Receipt, SendError> {
        let Some(template) = self.template(&msg.language) else {
            return Err(SendError::Reject {
                reason: "no template in channels.whatsapp.templates".into(),
            });
        };
        self.pace
            .daily_room(&msg.recipient, msg.delivery_id)
            .await?;
        if msg.subject.as_deref() == Some(SIGNUP_CODE) {
            return self.send_code(msg, template).await;
        }
        let parts = params::Parts::read(&msg.text, msg.subject.as_deref());
        let ack_url = msg.ack.as_ref().map_or("", |a| a.url.as_str());
        let values: Vec<(&str, &str)> = template
            .parameters
            .iter()
            .map(|name| {
                let value = match name.as_str() {
                    "title" => parts.title.as_str(),
                    "services" => parts.services.as_str(),
                    "text" => parts.text.as_str(),
                    "name" => msg.recipient_name.as_str(),
                    "ack_url" => ack_url,
                    "unsubscribe_url" => msg.unsubscribe_url.as_str(),
                    _ => "",
                };
                (name.as_str(), value)
            })
            .collect();
        let budget = MAX_BODY_CHARS.saturating_sub(template.body_chars);
        let body = params::fit(&values, budget);
        // A message that asks for no acknowledgement still fills the button the template has.
        let button = template
            .ack_button
            .then(|| msg.ack.as_ref().map_or(params::EMPTY, |a| a.token.as_str()));
        self.deliver(
            msg,
            &TemplateMessage {
                to: &msg.recipient,
                template: &template.name,
                language: &template.language,
                body: &body,
                button,
            },
        )
        .await
    }
}

impl WhatsAppChannel {
    /// A citizen's sign-up code, as the authentication template (in the language of the
    /// message template chosen for the citizen's language).
    async fn send_code(
        &self,
        msg: &Outgoing,
        template: &WhatsAppTemplate,
    ) -> Result<Receipt, SendError> {
        if self.code_template.is_empty() {
            return Err(SendError::Reject {
                reason: "no channels.whatsapp.code_template to send a sign-up code with".into(),
            });
        }
        // Meta: an authentication template's code is at most 15 characters.
        let code: String = params::one_line(&msg.text).chars().take(15).collect();
        let body = [code.clone()];
        self.deliver(
            msg,
            &TemplateMessage {
                to: &msg.recipient,
                template: &self.code_template,
                language: &template.language,
                body: &body,
                button: Some(&code),
            },
        )
        .await
    }

    async fn deliver(
        &self,
        msg: &Outgoing,
        message: &TemplateMessage<'_>,
    ) -> Result<Receipt, SendError> {
        let pair = self
            .pace
            .pair_turn(&msg.recipient)
            .map_err(|wait| SendError::Throttled { after: wait })?;
        let turn = self.pace.turn().await;
        let sent = self.api.send(message).await;
        drop(turn);
        // The person's next message goes an interval after this answer, whatever it said
        // (a 131056 included).
        drop(pair);
        match sent {
            Ok(id) => {
                metrics::counter!("banditore_whatsapp_sent_total").increment(1);
                Ok(Receipt {
                    provider_id: Some(id),
                    provider: Some(PROVIDER.to_owned()),
                    segments: None,
                })
            }
            Err(e) => {
                let kind = match &e {
                    SendError::Throttled { .. } => "throttled",
                    SendError::Retry { .. } => "unavailable",
                    SendError::Reject { .. } | SendError::Declined { .. } => "refused",
                    SendError::RecipientGone { .. } => "gone",
                    SendError::Credentials { reason } => {
                        tracing::error!(%reason, "WhatsApp refuses the token or the account: check channels.whatsapp.token and the account in Meta's WhatsApp Manager");
                        "credentials"
                    }
                };
                metrics::counter!("banditore_whatsapp_errors_total", "kind" => kind).increment(1);
                tracing::warn!(delivery = msg.delivery_id, kind, error = %e, "WhatsApp did not take the message");
                Err(e)
            }
        }
    }
}

/// WhatsApp in the registry: approved templates, their parameters rendered as named fields.
pub struct Spec;

impl crate::settings::ChannelSection for Spec {
    fn kind(&self) -> ChannelKind {
        ChannelKind::WhatsApp
    }

    fn form(&self) -> crate::render::Form {
        crate::render::Form::Fields
    }

    fn validate(
        &self,
        s: &crate::settings::Settings,
        keys: &mut crate::settings::ChannelKeys,
        mut push: &mut dyn FnMut(&str, String),
    ) {
        if let Some(k) = settings::validate(s, &mut push) {
            keys.insert(ChannelKind::WhatsApp, k);
        }
    }
}

impl super::ChannelSpec for Spec {
    fn reaches_people(&self) -> bool {
        true
    }

    fn build(
        &self,
        v: &crate::settings::Validated,
        wiring: &super::Wiring<'_>,
    ) -> Result<Option<super::Built>, super::BuildError> {
        let s = &v.settings.channels.whatsapp;
        if !s.enabled {
            return Ok(None);
        }
        let keys = v
            .channels
            .get::<WhatsAppKeys>(ChannelKind::WhatsApp)
            .ok_or_else(|| super::BuildError::new("channels.whatsapp: settings not checked"))?;
        let http = reqwest::Client::builder()
            .timeout(s.timeout.get())
            .connect_timeout(s.timeout.get().min(Duration::from_secs(5)))
            .tcp_nodelay(true)
            .pool_idle_timeout(Duration::from_secs(50))
            .user_agent(concat!("banditore/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| {
                super::BuildError::new(format!(
                    "channels.whatsapp: cannot build the HTTP client: {e}"
                ))
            })?;
        let channel = WhatsAppChannel {
            api: Api::new(http, keys.messages_url.clone(), keys.token.clone()),
            templates: s.templates.clone(),
            code_template: s.code_template.clone(),
            pace: Pace::new(
                s.messages_per_second,
                s.pair_interval.get(),
                s.daily_recipients,
                wiring.store.clone(),
                wiring.alarms.clone(),
            ),
        };
        Ok(Some(super::Built {
            channel: Arc::new(channel),
            concurrency: s.concurrency as usize,
            // The number's throughput, shared by every replica.
            rate: Some((s.messages_per_second, 1)),
            shared: Some(Arc::new(keys.clone())),
        }))
    }
}
