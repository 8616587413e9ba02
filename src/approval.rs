//! The leader's work on drafts, every second: tell the communications office about new drafts
//! (by email, and in Telegram with Approve and Reject buttons carrying signed tokens and a link
//! to the console), and publish the drafts whose `approval_with_timeout` ran out, as the
//! `timeout` actor (the audit log says so). The notices are written to the outbox, which sends
//! them like any message: this module renders and signs, it never talks to the outside.

use std::sync::Arc;
use std::time::Duration;

use jiff::Timestamp;
use tokio_util::sync::CancellationToken;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

use crate::cluster::Leadership;
use crate::domain::subscriber::{ChannelKind, Language, TelegramChat};
use crate::render::{Button as RenderedButton, ButtonAction, Buttons, Renderer};
use crate::settings::{Permission, Role};
use crate::store::{Decision, Draft, DraftNotice, Store, StoreError, Topic};
use crate::wake::Wakers;

/// Signs Telegram buttons and builds console links for drafts.
#[derive(Clone)]
pub struct ApprovalLinks {
    key: Vec<u8>,
    console: String,
}

const TAG_BYTES: usize = 12;

impl ApprovalLinks {
    pub fn new(key: &[u8], public_url: &str) -> ApprovalLinks {
        ApprovalLinks {
            key: key.to_vec(),
            console: format!("{}/console/drafts/", public_url.trim_end_matches('/')),
        }
    }

    pub fn console_url(&self, draft: i64) -> String {
        format!("{}{draft}", self.console)
    }

    fn mac(&self, button: Button, draft: i64) -> Hmac<Sha256> {
        // Any key length is valid for HMAC.
        let mut mac =
            <Hmac<Sha256> as KeyInit>::new_from_slice(&self.key).unwrap_or_else(|_| unreachable!());
        mac.update(format!("draft-button\0{}\0{draft}", button.prefix()).as_bytes());
        mac
    }

    /// A button's callback data, `ap:<draft>:<tag>` or `rj:…`, within Telegram's 64 bytes.
    pub fn button_data(&self, button: Button, draft: i64) -> String {
        let tag = self.mac(button, draft).finalize().into_bytes();
        format!(
            "{}:{draft}:{}",
            button.prefix(),
            URL_SAFE_NO_PAD.encode(&tag[..TAG_BYTES])
        )
    }

    /// The button and draft of callback data, if its tag is ours (checked in constant time).
    pub fn verify_button(&self, data: &str) -> Option<(Button, i64)> {
        let mut parts = data.splitn(3, ':');
        let button = match parts.next()? {
            "ap" => Button::Approve,
            "rj" => Button::Reject,
            _ => return None,
        };
        let id: i64 = parts.next()?.parse().ok()?;
        let tag = URL_SAFE_NO_PAD.decode(parts.next()?).ok()?;
        (tag.len() == TAG_BYTES && self.mac(button, id).verify_truncated_left(&tag).is_ok())
            .then_some((button, id))
    }
}

impl ApprovalLinks {
    /// The `/start` payload that links the Telegram account opening it to console user
    /// `user_id`, valid until `expires` (Unix seconds): `u_<id>_<expires>_<tag>`. The tag also
    /// signs the account the user is linked to now (`linked`), so the payload is good once: as
    /// soon as it links an account, the user's link changes and the payload no longer verifies,
    /// and a second Telegram account sending it cannot take the link over.
    pub fn link_payload(&self, user_id: i64, expires: i64, linked: Option<&str>) -> String {
        let tag = self
            .link_mac(user_id, expires, linked)
            .finalize()
            .into_bytes();
        format!(
            "u_{user_id}_{expires}_{}",
            URL_SAFE_NO_PAD.encode(&tag[..TAG_BYTES])
        )
    }

    /// The user a link payload names, before its tag is checked.
    pub fn link_user(payload: &str) -> Option<i64> {
        payload.strip_prefix("u_")?.split('_').next()?.parse().ok()
    }

    /// The user a link payload is for, if it is ours, not expired at `now` (Unix seconds), and
    /// not used since: `linked` is the account the user is linked to now.
    pub fn verify_link(&self, payload: &str, now: i64, linked: Option<&str>) -> Option<i64> {
        let mut parts = payload.strip_prefix("u_")?.splitn(3, '_');
        let id: i64 = parts.next()?.parse().ok()?;
        let expires: i64 = parts.next()?.parse().ok()?;
        let tag = URL_SAFE_NO_PAD.decode(parts.next()?).ok()?;
        (expires > now
            && tag.len() == TAG_BYTES
            && self
                .link_mac(id, expires, linked)
                .verify_truncated_left(&tag)
                .is_ok())
        .then_some(id)
    }

    fn link_mac(&self, user_id: i64, expires: i64, linked: Option<&str>) -> Hmac<Sha256> {
        let mut mac =
            <Hmac<Sha256> as KeyInit>::new_from_slice(&self.key).unwrap_or_else(|_| unreachable!());
        mac.update(
            format!(
                "link-telegram\0{user_id}\0{expires}\0{}",
                linked.unwrap_or("")
            )
            .as_bytes(),
        );
        mac
    }
}

/// The buttons under a draft notice in Telegram.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Button {
    Approve,
    /// Asks for the reason, then rejects.
    Reject,
}

impl Button {
    fn prefix(self) -> &'static str {
        match self {
            Button::Approve => "ap",
            Button::Reject => "rj",
        }
    }
}

/// Whom to tell about new drafts, and how.
pub struct Announcer {
    pub audience: String,
    pub links: ApprovalLinks,
    pub renderer: Renderer,
    pub language: Language,
    /// The channels that are on, of those the office hears by (email and Telegram).
    pub channels: Vec<ChannelKind>,
}

const EVERY: Duration = Duration::from_secs(1);

/// Who publishes a draft nobody decided on, in the audit log.
pub const TIMEOUT_ACTOR: &str = "policy: approval_with_timeout";

pub async fn run(
    store: Arc<dyn Store>,
    wake: Wakers,
    announcer: Option<Announcer>,
    leadership: Leadership,
    shutdown: CancellationToken,
) {
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(EVERY) => {}
        }
        if !leadership.is_leader() {
            continue;
        }
        if let Some(announcer) = &announcer
            && let Err(e) = announcer.announce(&*store, &wake, Timestamp::now()).await
        {
            tracing::warn!(error = %e, "cannot tell the communications office about drafts; will try again");
        }
        if let Err(e) = publish_due(&*store, &wake).await {
            tracing::warn!(error = %e, "cannot publish drafts whose time ran out; will try again");
        }
    }
}

async fn publish_due(store: &dyn Store, wake: &Wakers) -> Result<(), StoreError> {
    let now = Timestamp::now();
    for id in store.due_drafts(now).await? {
        match store
            .decide_draft(id, &Decision::TimedOut, TIMEOUT_ACTOR, now)
            .await
        {
            Ok(Some(done)) => {
                tracing::info!(
                    draft = id,
                    deliveries = done.deliveries,
                    "nobody decided in time: draft published by its policy"
                );
                metrics::counter!("banditore_drafts_decided_total", "decision" => "timeout")
                    .increment(1);
                wake.dispatch.ring();
                store.announce(Topic::Deliveries).await;
            }
            Ok(None) => {}
            // Decided by someone in the meantime.
            Err(StoreError::Conflict(_)) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

impl Announcer {
    /// Tells the office about each new draft once: its notices go into the outbox, in the same
    /// transaction that marks the draft announced, and the outbox sends them (retrying like any
    /// message). The office hears by email and, in private, in Telegram (numeric chats only),
    /// on those of the two channels that are on.
    async fn announce(
        &self,
        store: &dyn Store,
        wake: &Wakers,
        now: Timestamp,
    ) -> Result<(), StoreError> {
        let drafts = store.unannounced_drafts(20).await?;
        if drafts.is_empty() {
            return Ok(());
        }
        let mut addresses = if self.audience.is_empty() {
            Vec::new()
        } else {
            store.audience_addresses(&self.audience).await?
        };
        // Console users who may decide and linked their Telegram account hear in private.
        for user in store.users().await? {
            let decides = user
                .roles
                .iter()
                .filter_map(|r| r.parse::<Role>().ok())
                .any(|r| r.allows(Permission::Drafts));
            if let (false, true, Some(tg)) = (user.disabled, decides, user.telegram_user)
                && !addresses
                    .iter()
                    .any(|(c, a, _)| *c == ChannelKind::Telegram && *a == tg)
            {
                addresses.push((ChannelKind::Telegram, tg, user.username));
            }
        }
        addresses.retain(|(channel, address, _)| {
            self.channels.contains(channel)
                && match channel {
                    ChannelKind::Email => true,
                    ChannelKind::Telegram => {
                        matches!(TelegramChat::parse(address), Ok(TelegramChat::Id(_)))
                    }
                    _ => false,
                }
        });
        for draft in drafts {
            let notices = self.notices(&draft, &addresses);
            let queued = store.announce_draft(draft.id, &notices, now).await?;
            tracing::info!(
                draft = draft.id,
                notices = queued,
                "communications office's notices of a draft queued"
            );
            if queued > 0 {
                // The office's desks: nothing for the citizen writer until a decision.
                wake.dispatch.ring_desks();
                store.announce(Topic::Deliveries).await;
            }
        }
        Ok(())
    }

    /// The draft's notice on each channel: the same text for every recipient; in Telegram with
    /// the Approve and Reject buttons (signed) and a link to the console.
    fn notices(
        &self,
        draft: &Draft,
        addresses: &[(ChannelKind, String, String)],
    ) -> Vec<DraftNotice> {
        let url = self.links.console_url(draft.id);
        let say = |name: &str, args: &[minijinja::Value]| {
            self.renderer
                .bot_text(&self.language, name, args)
                .unwrap_or_else(|e| {
                    tracing::error!(error = %e, "draft notice template failed");
                    format!("Banditore: {url}")
                })
        };
        let text = say(
            "draft_waiting",
            &[
                minijinja::Value::from(minijinja::value::Serde(draft)),
                minijinja::Value::from(url.clone()),
            ],
        );
        let to = |kind: ChannelKind| -> Vec<(String, String)> {
            addresses
                .iter()
                .filter(|(c, _, _)| *c == kind)
                .map(|(_, address, name)| (address.clone(), name.clone()))
                .collect()
        };
        let mut notices = Vec::new();
        let email = to(ChannelKind::Email);
        if !email.is_empty() {
            let body = crate::render::telegram::plain(&text);
            notices.push(DraftNotice {
                channel: ChannelKind::Email,
                language: self.language.as_str().to_owned(),
                subject: body.lines().next().map(|l| l.trim().to_owned()),
                body,
                buttons: None,
                recipients: email,
            });
        }
        let telegram = to(ChannelKind::Telegram);
        if !telegram.is_empty() {
            let decide = vec![
                RenderedButton {
                    label: say("draft_button_approve", &[]),
                    action: ButtonAction::Callback(
                        self.links.button_data(Button::Approve, draft.id),
                    ),
                },
                RenderedButton {
                    label: say("draft_button_reject", &[]),
                    action: ButtonAction::Callback(
                        self.links.button_data(Button::Reject, draft.id),
                    ),
                },
            ];
            let open = url::Url::parse(&url).ok().map(|_| {
                vec![RenderedButton {
                    label: say("draft_button_open", &[]),
                    action: ButtonAction::Url(url.clone()),
                }]
            });
            notices.push(DraftNotice {
                channel: ChannelKind::Telegram,
                language: self.language.as_str().to_owned(),
                subject: None,
                body: text.clone(),
                buttons: Some(Buttons(std::iter::once(decide).chain(open).collect())),
                recipients: telegram,
            });
        }
        notices
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn draft_buttons_are_signed() {
        let links = ApprovalLinks::new(b"0123456789abcdef0123456789abcdef", "https://b.example/");
        let data = links.button_data(Button::Approve, 42);
        assert!(data.len() <= 64, "{data}");
        assert_eq!(links.verify_button(&data), Some((Button::Approve, 42)));
        assert_eq!(links.verify_button(&data.replace("ap:42", "ap:43")), None);
        // An Approve tag does not make a Reject button, nor the reverse.
        assert_eq!(links.verify_button(&data.replacen("ap", "rj", 1)), None);
        let reject = links.button_data(Button::Reject, 42);
        assert_eq!(links.verify_button(&reject), Some((Button::Reject, 42)));
        assert_eq!(links.verify_button("ap:42:AAAAAAAAAAAAAAAA"), None);
        assert_eq!(links.verify_button("nonsense"), None);
        assert_eq!(links.console_url(42), "https://b.example/console/drafts/42");
        let other = ApprovalLinks::new(b"another key, another deployment", "https://b.example");
        assert_eq!(other.verify_button(&data), None);
    }

    #[test]
    fn telegram_link_payloads_are_signed_and_expire() {
        let links = ApprovalLinks::new(b"0123456789abcdef0123456789abcdef", "https://b.example/");
        let payload = links.link_payload(7, 1_900_000_600, None);
        assert!(payload.len() <= 64, "{payload}");
        assert!(
            payload
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
        );
        assert_eq!(ApprovalLinks::link_user(&payload), Some(7));
        assert_eq!(links.verify_link(&payload, 1_900_000_000, None), Some(7));
        assert_eq!(
            links.verify_link(&payload, 1_900_000_601, None),
            None,
            "expired"
        );
        assert_eq!(
            links.verify_link(&payload.replace("u_7_", "u_8_"), 1_900_000_000, None),
            None
        );
        // Once it has linked an account, the same payload is void.
        assert_eq!(
            links.verify_link(&payload, 1_900_000_000, Some("4242")),
            None,
            "single use"
        );
    }
}
