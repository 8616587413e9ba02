//! The public status page as a channel: an approved statement is "delivered" by being published,
//! which the page reads from the approved drafts. Sending records that and nothing more.

use async_trait::async_trait;

use std::sync::Arc;

use crate::channel::{
    BuildError, Built, Channel, ChannelSpec, Outgoing, Receipt, SendError, Wiring,
};
use crate::domain::subscriber::ChannelKind;

pub struct StatusChannel;

#[async_trait]
impl Channel for StatusChannel {
    fn kind(&self) -> ChannelKind {
        ChannelKind::Status
    }

    async fn send(&self, _msg: &Outgoing) -> Result<Receipt, SendError> {
        Ok(Receipt {
            provider_id: None,
            provider: Some("status".into()),
            segments: None,
        })
    }
}

/// The status page in the registry: on when `[[status.services]]` lists a service. Its section
/// is `status` (`settings::StatusSettings`), checked with the page itself.
pub struct Spec;

impl crate::settings::ChannelSection for Spec {
    fn kind(&self) -> ChannelKind {
        ChannelKind::Status
    }

    fn form(&self) -> crate::render::Form {
        crate::render::Form::Statement
    }

    fn validate(
        &self,
        _settings: &crate::settings::Settings,
        _keys: &mut crate::settings::ChannelKeys,
        _push: &mut dyn FnMut(&str, String),
    ) {
    }

    fn subscribers(
        &self,
        settings: &crate::settings::Settings,
    ) -> Vec<crate::domain::subscriber::ValidSubscriber> {
        crate::settings::status_subscriber(settings)
            .into_iter()
            .collect()
    }
}

impl ChannelSpec for Spec {
    fn build(
        &self,
        v: &crate::settings::Validated,
        _wiring: &Wiring<'_>,
    ) -> Result<Option<Built>, BuildError> {
        Ok((!v.settings.status.services.is_empty())
            .then(|| Built::one_at_a_time(Arc::new(StatusChannel))))
    }
}
