//! One send, from filling the message's placeholders to reporting its outcome: paced by the
//! channel's shared bucket, bounded by `send_timeout`, classified (sent, retry with back-off,
//! failed, gone, deferred by a provider's throttle, paused on refused credentials), and shielded
//! from a panic in the channel, which fails that one delivery and nothing else.

use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::Duration;

use futures_util::FutureExt;
use jiff::Timestamp;
use tokio::sync::mpsc;

use super::{OutboxConfig, Pauses, later_by, outcome_of, pause};
use crate::channel::rate::RateLimiter;
use crate::channel::{AckLink, Channel, Outgoing, SendError};
use crate::render::{Markup, Placeholders, fill_detail};
use crate::store::{ClaimedDelivery, DeliveryOutcome, MessageRow, Outcome};
use crate::unsubscribe::UnsubscribeLinks;

/// One send, from filling the placeholders to reporting the outcome.
pub(super) struct Send {
    pub(super) channel: Arc<dyn Channel>,
    pub(super) links: UnsubscribeLinks,
    pub(super) limiter: Option<Arc<RateLimiter>>,
    pub(super) config: OutboxConfig,
    pub(super) results: mpsc::UnboundedSender<Outcome>,
    pub(super) pauses: Pauses,
}

impl Send {
    pub(super) async fn run(self, delivery: ClaimedDelivery, message: Option<Arc<MessageRow>>) {
        let kind = self.channel.kind();
        let (outcome, declined) = match message {
            // The message row cannot be read: retry later rather than drop.
            None => (
                self.retry_or_fail(&delivery, None, "message could not be loaded".into()),
                false,
            ),
            // A panic in a channel (or in filling the message) fails this delivery only.
            Some(message) => AssertUnwindSafe(self.send(&delivery, &message))
                .catch_unwind()
                .await
                .unwrap_or_else(|panic| {
                    let error = format!("the {kind} channel failed: {}", panic_message(&*panic));
                    (DeliveryOutcome::Failed { error }, false)
                }),
        };
        let label = match &outcome {
            // The recipient's own choice: expected, not a fault of the channel.
            DeliveryOutcome::Failed { error } if declined => {
                tracing::info!(delivery = delivery.id, channel = %kind, %error, "the recipient does not take messages on this channel; not tried again");
                "declined"
            }
            // A draft's notice does not follow from a signal: it stays out of that latency.
            DeliveryOutcome::Sent { .. } if delivery.draft_id.is_some() => "sent",
            DeliveryOutcome::Sent { .. } => {
                let latency = Timestamp::now()
                    .duration_since(delivery.origin_at)
                    .as_secs_f64()
                    .max(0.0);
                metrics::histogram!("banditore_signal_to_sent_seconds", "channel" => kind.as_str())
                    .record(latency);
                "sent"
            }
            DeliveryOutcome::Retry { error, .. } => {
                tracing::warn!(delivery = delivery.id, channel = %kind, attempt = delivery.attempts, %error, "delivery failed; will retry");
                "retry"
            }
            DeliveryOutcome::Failed { error } => {
                tracing::error!(delivery = delivery.id, channel = %kind, attempt = delivery.attempts, %error, "delivery failed for good");
                "failed"
            }
            DeliveryOutcome::Gone { error } => {
                tracing::warn!(delivery = delivery.id, channel = %kind, %error, "recipient address is gone");
                "gone"
            }
            DeliveryOutcome::Released => "released",
            DeliveryOutcome::Paused { .. } => "paused",
            DeliveryOutcome::Deferred { .. } => {
                tracing::info!(delivery = delivery.id, channel = %kind, "provider asked to slow down; deferred");
                "deferred"
            }
        };
        metrics::counter!("banditore_deliveries_total", "channel" => kind.as_str(), "outcome" => label).increment(1);
        let _ = self.results.send(outcome_of(&delivery, outcome));
    }

    /// The outcome, and whether the recipient declined the channel ([`SendError::Declined`]).
    async fn send(
        &self,
        delivery: &ClaimedDelivery,
        message: &MessageRow,
    ) -> (DeliveryOutcome, bool) {
        let outgoing = match self.outgoing(delivery, message) {
            Ok(outgoing) => outgoing,
            Err(error) => return (DeliveryOutcome::Failed { error }, false),
        };
        if let Some(limiter) = &self.limiter {
            limiter.acquire().await;
        }
        // The lease is renewed while the send runs; this bounds a send that never ends.
        let budget = self.config.send_timeout;
        let result = tokio::time::timeout(budget, self.channel.send(&outgoing)).await;
        let declined = matches!(result, Ok(Err(SendError::Declined { .. })));
        let outcome = match result {
            Ok(Ok(receipt)) => {
                self.resumed();
                DeliveryOutcome::Sent(receipt)
            }
            Ok(Err(SendError::Retry { after, reason })) => {
                self.retry_or_fail(delivery, after, reason)
            }
            Ok(Err(SendError::Reject { reason })) => DeliveryOutcome::Failed { error: reason },
            Ok(Err(SendError::Declined { reason })) => {
                // The provider looked the recipient up: it took the credentials.
                self.resumed();
                DeliveryOutcome::Failed { error: reason }
            }
            Ok(Err(SendError::RecipientGone { reason })) => {
                // The provider looked the recipient up: it took the credentials.
                self.resumed();
                DeliveryOutcome::Gone { error: reason }
            }
            Ok(Err(SendError::Throttled { after })) => DeliveryOutcome::Deferred {
                at: later_by(Timestamp::now(), after),
            },
            Ok(Err(SendError::Credentials { reason })) => {
                let kind = self.channel.kind();
                if let Some(pause::Change::Paused(_, p)) =
                    self.pauses.refused(kind, &reason, Timestamp::now())
                {
                    tracing::error!(channel = %kind, %reason, next_probe = %p.next_probe, "channel paused: the provider refuses its credentials; deliveries stay pending and are tried again when they are accepted");
                    metrics::gauge!("banditore_channel_paused", "channel" => kind.as_str())
                        .set(1.0);
                    metrics::counter!("banditore_channel_pauses_total", "channel" => kind.as_str())
                        .increment(1);
                }
                DeliveryOutcome::Paused {
                    error: format!("channel paused: credentials refused: {reason}"),
                }
            }
            Err(_) => self.retry_or_fail(delivery, None, format!("no answer within {budget:?}")),
        };
        (outcome, declined)
    }

    /// The message for this delivery's recipient. A message to a subscriber gets its name and its
    /// unsubscribe and preferences links filled in (and, to a desk, its acknowledgement link); a draft's notice to the communications
    /// office goes as it was written, with no list to leave.
    fn outgoing(
        &self,
        delivery: &ClaimedDelivery,
        message: &MessageRow,
    ) -> Result<Outgoing, String> {
        let mut outgoing = Outgoing {
            delivery_id: delivery.id,
            incident_id: delivery.incident_id,
            attempt: delivery.attempts,
            recipient: delivery.recipient.clone(),
            recipient_name: delivery.subscriber_name.clone(),
            language: message.language.clone(),
            subject: message.subject.clone(),
            text: message.body.clone(),
            html: message.html.clone(),
            unsubscribe_url: String::new(),
            buttons: message.buttons.clone(),
            ack: None,
        };
        if delivery.draft_id.is_some() {
            return Ok(outgoing);
        }
        // A row of an affected list subscribed to nothing: no list to leave, nobody asked to
        // acknowledge; its own detail, or no detail line at all.
        if delivery.affected_id.is_some() {
            let fill = Placeholders {
                recipient_name: "",
                unsubscribe_url: "",
                manage_url: "",
                ack_url: "",
            };
            let detail = delivery.detail.as_deref().unwrap_or_default();
            let markup = self.channel.body_markup();
            outgoing.subject = message
                .subject
                .as_deref()
                .map(|s| fill.fill(&fill_detail(s, detail, Markup::Plain)));
            outgoing.text = fill.fill_as(&fill_detail(&message.body, detail, markup), markup);
            outgoing.html = message
                .html
                .as_deref()
                .map(|h| fill.fill_html(&fill_detail(h, detail, Markup::Html)));
            outgoing.recipient_name = String::new();
            return Ok(outgoing);
        }
        let Some(address_id) = delivery.address_id else {
            return Err("the subscriber was deleted".into());
        };
        let unsubscribe_url = self
            .links
            .url(address_id, delivery.channel, &delivery.recipient);
        let manage_url = self
            .links
            .manage_url(address_id, delivery.channel, &delivery.recipient);
        // A desk is asked to say it has seen the incident; the public is not.
        let ack = (message.audience != "public").then(|| {
            let token = self.links.ack_token(
                delivery.incident_id,
                address_id,
                delivery.channel,
                &delivery.recipient,
            );
            AckLink {
                url: self.links.ack_url_of(&token),
                token,
            }
        });
        let fill = Placeholders {
            recipient_name: &delivery.subscriber_name,
            unsubscribe_url: &unsubscribe_url,
            manage_url: &manage_url,
            ack_url: ack.as_ref().map_or("", |a| a.url.as_str()),
        };
        outgoing.subject = message.subject.as_deref().map(|s| fill.fill(s));
        outgoing.text = fill.fill_as(&message.body, self.channel.body_markup());
        outgoing.html = message.html.as_deref().map(|h| fill.fill_html(h));
        outgoing.unsubscribe_url = unsubscribe_url;
        // A channel that shows buttons (Telegram) offers "seen" above the message's own; a
        // resolution asks for no acknowledgement.
        if let Some(a) = &ack
            && message.update_kind != crate::domain::UpdateKind::Resolved
        {
            let seen = crate::render::ack_button(&message.language, &a.token, &a.url);
            outgoing
                .buttons
                .get_or_insert_default()
                .0
                .insert(0, vec![seen]);
        }
        outgoing.ack = ack;
        Ok(outgoing)
    }

    /// The provider took the channel's credentials: a pause, if any, is over.
    fn resumed(&self) {
        let kind = self.channel.kind();
        if self.pauses.accepted(kind).is_some() {
            tracing::warn!(channel = %kind, "channel resumed: the provider accepts its credentials again");
            metrics::gauge!("banditore_channel_paused", "channel" => kind.as_str()).set(0.0);
        }
    }

    fn retry_or_fail(
        &self,
        delivery: &ClaimedDelivery,
        after: Option<Duration>,
        reason: String,
    ) -> DeliveryOutcome {
        if delivery.attempts >= self.config.max_attempts {
            return DeliveryOutcome::Failed {
                error: format!("gave up after {} attempts: {reason}", delivery.attempts),
            };
        }
        let delay = self.config.backoff.delay(delivery.attempts, after);
        DeliveryOutcome::Retry {
            at: later_by(Timestamp::now(), delay),
            error: reason,
        }
    }
}

/// What a panic said, for the delivery's error.
fn panic_message(panic: &(dyn std::any::Any + std::marker::Send)) -> String {
    let text = panic
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a panic without a message".into());
    format!(
        "internal error: {}",
        text.chars().take(300).collect::<String>()
    )
}
