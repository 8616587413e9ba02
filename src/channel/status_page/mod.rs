//! The public status page as a channel: an approved statement is "delivered" by being published,
//! which the page reads from the approved drafts. Sending records that and nothing more.

use async_trait::async_trait;

use crate::channel::{Channel, Outgoing, Receipt, SendError};
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
