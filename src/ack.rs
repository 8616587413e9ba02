//! Desks saying "seen". A message to a desk carries a token signed for its address and its
//! incident (`crate::unsubscribe`): the email's link, the Telegram button and the key pressed
//! during a call bring it back, and a text's reply brings only its number, which acknowledges the
//! latest incident texted to it. Either way the store records the desk's first acknowledgement
//! once, and nothing about the incident changes. A token that is forged, tampered with or made
//! for another incident, and a reply from a number that was texted no desk's message, record
//! nothing.

use std::sync::Arc;

use jiff::Timestamp;

use crate::store::{Acknowledged, Store, StoreError};
use crate::unsubscribe::UnsubscribeLinks;

/// Takes acknowledgements from every channel's way back.
#[derive(Clone)]
pub struct Acknowledgements {
    store: Arc<dyn Store>,
    links: UnsubscribeLinks,
}

/// What a token names, once its signature holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AckTarget {
    pub incident_id: i64,
    pub address_id: i64,
}

impl Acknowledgements {
    pub fn new(store: Arc<dyn Store>, links: UnsubscribeLinks) -> Acknowledgements {
        Acknowledgements { store, links }
    }

    /// What `token` names, when it is one of ours for an address that still exists; `None`
    /// for a forged, tampered or malformed token. Records nothing (a page shown on `GET`).
    pub async fn check(&self, token: &str) -> Result<Option<AckTarget>, StoreError> {
        let Some(parsed) = UnsubscribeLinks::parse_ack(token) else {
            return Ok(None);
        };
        let Some((channel, address)) = self.store.ack_address(parsed.address_id).await? else {
            return Ok(None);
        };
        Ok(self
            .links
            .verify_ack(&parsed, channel, &address)
            .then_some(AckTarget {
                incident_id: parsed.incident_id,
                address_id: parsed.address_id,
            }))
    }

    /// Acknowledges by a token (a link, a button, a key pressed in a call).
    pub async fn by_token(&self, token: &str, now: Timestamp) -> Result<Acknowledged, StoreError> {
        match self.check(token).await? {
            Some(target) => {
                self.record(target.incident_id, target.address_id, now)
                    .await
            }
            None => Ok(Acknowledged::NotSent),
        }
    }

    /// Acknowledges by a reply from `number` (E.164): the latest incident texted to it.
    pub async fn by_reply(&self, number: &str, now: Timestamp) -> Result<Acknowledged, StoreError> {
        match self.store.latest_texted(number).await? {
            Some((incident_id, address_id)) => self.record(incident_id, address_id, now).await,
            None => Ok(Acknowledged::NotSent),
        }
    }

    async fn record(
        &self,
        incident_id: i64,
        address_id: i64,
        now: Timestamp,
    ) -> Result<Acknowledged, StoreError> {
        let outcome = self.store.acknowledge(incident_id, address_id, now).await?;
        if let Acknowledged::Recorded(ack) = &outcome {
            let channel = ack.channel.as_str();
            metrics::counter!("banditore_acknowledgements_total", "channel" => channel)
                .increment(1);
            if let Some(sent) = ack.first_sent_at {
                let took = ack.acked_at.duration_since(sent).as_secs_f64().max(0.0);
                metrics::histogram!("banditore_time_to_acknowledge_seconds", "channel" => channel)
                    .record(took);
            }
            tracing::info!(
                incident = ack.incident_id,
                desk = %ack.subscriber_name,
                %channel,
                "a desk acknowledged the incident"
            );
        }
        Ok(outcome)
    }
}
