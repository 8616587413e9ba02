//! What configuration needs to know of a channel: its kind, how its messages are rendered, how
//! its `channels.<name>` section is checked and which destinations it declares. The channels
//! implement it (`channel::ChannelSpec` builds on it) and the top of the program hands their
//! registry to [`super::validate`], so that configuration, below the channels, never names one.

use crate::domain::subscriber::{ChannelKind, ValidSubscriber};
use crate::render::Form;

use super::{ChannelKeys, Settings};

pub trait ChannelSection: Sync {
    fn kind(&self) -> ChannelKind;
    /// How its messages are rendered, and so which templates each language's folder holds.
    fn form(&self) -> Form;
    /// Checks `channels.<name>` and keeps what its sender needs (secrets read, providers in
    /// order) in `keys`; every problem is pushed with its path, none stops the check.
    fn validate(
        &self,
        settings: &Settings,
        keys: &mut ChannelKeys,
        push: &mut dyn FnMut(&str, String),
    );
    /// Config subscribers standing for the channel's own destinations (a public account).
    fn subscribers(&self, _settings: &Settings) -> Vec<ValidSubscriber> {
        Vec::new()
    }
}
