//! Rendering: incident updates into channel text, from the templates under `templates/`.
//!
//! Templates are `templates/<channel>/<language>/<part>.j2` (for email the parts are `subject`,
//! `text` and `html`). The ones shipped are compiled into the binary; a directory given as
//! `templates.dir` replaces any of them file by file. Rendering happens once per update, channel,
//! language and audience; the few per-recipient parts are left as placeholders that
//! [`Placeholders::fill`] substitutes at send time, so a fan-out to thousands costs one render.
//!
//! By job: `env.rs` loads the templates and sets minijinja up; `messages.rs` renders an update for
//! a channel within its length; `pages.rs` renders the console's and the status page's pages;
//! `check.rs` renders everything against samples for `check-config`; `placeholders.rs` fills the
//! per-recipient parts; `buttons.rs` is the buttons a message may carry under its text.
//! `context.rs` is what a template sees; `sms.rs`, `telegram.rs` and `social/` measure and cut
//! text as each network counts it (`social/links.rs` finds the links, mentions and hashtags);
//! `appio.rs` fits App IO's subject and Markdown body to its lengths.

pub mod appio;
mod buttons;
mod check;
mod context;
mod env;
mod messages;
mod pages;
mod placeholders;
pub mod sms;
pub mod social;
pub mod telegram;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use minijinja::Environment;

use crate::domain::subscriber::{ChannelKind, Language};

pub use buttons::{
    ACK_DATA, ACK_LABELS, Button, ButtonAction, Buttons, MAX_CALLBACK_BYTES, ack_button, ack_token,
};
pub use context::{AFFECTED, IncidentView, MessageContext, SignalView, UpdateView, sample_context};
pub use env::{Form, template_name};
pub use messages::{Post, Rendered, SMS_DEFAULT_MAX_SEGMENTS, SmsText};
pub use placeholders::{
    ACK_URL, DETAIL, MANAGE_URL, Markup, Placeholders, RECIPIENT_NAME, UNSUBSCRIBE_URL, fill_detail,
};

#[derive(Debug, thiserror::Error)]
pub enum RenderError {
    #[error("no templates for channel {0}")]
    NoTemplates(ChannelKind),
    #[error("{detail}")]
    Template { name: String, detail: String },
}

#[derive(Clone)]
pub struct Renderer {
    env: Arc<Environment<'static>>,
    /// How each channel's messages are rendered.
    forms: BTreeMap<ChannelKind, Form>,
    /// Languages with a complete template folder, per channel.
    languages: BTreeMap<ChannelKind, BTreeSet<String>>,
    fallback: Language,
    /// Spell SMS text in GSM-7 where a usual spelling exists (`È` → `E'`).
    sms_fold: bool,
    /// The social networks' limits (Mastodon's depends on the instance).
    social: social::Limits,
}

#[cfg(test)]
mod testing {
    use std::path::Path;

    use jiff::tz::TimeZone;

    use super::Renderer;
    use crate::domain::subscriber::Language;

    /// The built-in templates, Italian as the fallback, times in Rome's zone.
    pub(super) fn renderer() -> Renderer {
        let it = Language::try_from("it".to_owned()).unwrap();
        let tz = TimeZone::get("Europe/Rome").unwrap();
        Renderer::new(Path::new(""), &it, tz, &crate::channel::forms()).unwrap()
    }
}
