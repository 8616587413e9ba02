//! The process log as a channel: each delivery is written as one structured line (JSON when
//! `log.format = "json"`) under the target `banditore::delivery`, for deployments that forward
//! their logs to a SIEM. Writing cannot fail, so every delivery is sent at its first attempt.

pub mod settings;

use std::sync::Arc;

use async_trait::async_trait;

use crate::channel::{
    BuildError, Built, Channel, ChannelSpec, Outgoing, Receipt, SendError, Wiring,
};
use crate::domain::subscriber::ChannelKind;

/// Where deliveries are written: a log filter or a collector can pick them out by it.
pub const TARGET: &str = "banditore::delivery";

pub struct LogChannel;

#[async_trait]
impl Channel for LogChannel {
    fn kind(&self) -> ChannelKind {
        ChannelKind::Log
    }

    async fn send(&self, msg: &Outgoing) -> Result<Receipt, SendError> {
        tracing::info!(
            target: TARGET,
            channel = "log",
            delivery_id = msg.delivery_id,
            incident_id = msg.incident_id,
            attempt = msg.attempt,
            recipient = msg.recipient.as_str(),
            subject = msg.subject.as_deref().unwrap_or(""),
            text = msg.text.as_str(),
            "delivery"
        );
        Ok(Receipt {
            provider_id: None,
            provider: Some("log".into()),
            segments: None,
        })
    }
}

/// The log in the registry: one plain text per delivery, whole.
pub struct Spec;

impl crate::settings::ChannelSection for Spec {
    fn kind(&self) -> ChannelKind {
        ChannelKind::Log
    }

    fn form(&self) -> crate::render::Form {
        crate::render::Form::Text
    }

    fn validate(
        &self,
        s: &crate::settings::Settings,
        _keys: &mut crate::settings::ChannelKeys,
        mut push: &mut dyn FnMut(&str, String),
    ) {
        settings::validate(s, &mut push);
    }

    fn subscribers(
        &self,
        s: &crate::settings::Settings,
    ) -> Vec<crate::domain::subscriber::ValidSubscriber> {
        settings::subscribers(s)
    }
}

impl ChannelSpec for Spec {
    fn build(
        &self,
        v: &crate::settings::Validated,
        _wiring: &Wiring<'_>,
    ) -> Result<Option<Built>, BuildError> {
        Ok(v.settings
            .channels
            .log
            .enabled
            .then(|| Built::one_at_a_time(Arc::new(LogChannel))))
    }
}
