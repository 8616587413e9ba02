//! Channels paused because their provider refused the channel's credentials.
//!
//! A revoked token is an outage of the channel, not of the messages: failing each one after
//! its attempts would lose every alert sent during a longer outage. So the dispatcher pauses the
//! channel instead: its deliveries stay pending (no attempt counted), one of them is tried as a
//! probe with back-off, and the first probe that gets through resumes the channel by itself.
//! This registry is what the dispatcher writes and what `/readyz`, `/metrics`, the console and
//! the operators' notices read; it is per process, since every replica sends and finds out
//! for itself.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use jiff::Timestamp;
use serde::Serialize;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::channel::alarm::{Alarm, Alarms};
use crate::channel::{Channel, Outgoing};
use crate::domain::subscriber::{ChannelKind, Language};
use crate::render::Renderer;
use crate::store::SubscriberStore;

/// Why and since when a channel is paused, and when it is tried next.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Pause {
    pub since: Timestamp,
    pub reason: String,
    /// Probes refused so far.
    pub probes: u32,
    pub next_probe: Timestamp,
}

/// The paused channels of this process, shared by its dispatchers and its web handlers.
#[derive(Clone)]
pub struct Pauses {
    paused: Arc<Mutex<BTreeMap<ChannelKind, Pause>>>,
    /// Bumped at every pause and resumption, for whoever reports them.
    changes: Arc<watch::Sender<u64>>,
    first_probe: Duration,
    longest_wait: Duration,
    /// What the channels raise for the operators, told by the same notices.
    alarms: Alarms,
}

/// What a change was, for the operators' notices.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    Paused(ChannelKind, Pause),
    Resumed(ChannelKind),
    /// Not a pause: what a channel raised for the operators.
    Alarm(Alarm),
}

impl Pauses {
    /// Probes come `first_probe` after the pause, then twice as long each time, at most
    /// `longest_wait` apart.
    pub fn new(first_probe: Duration, longest_wait: Duration) -> Pauses {
        Pauses {
            paused: Arc::default(),
            changes: Arc::new(watch::channel(0).0),
            first_probe,
            longest_wait: longest_wait.max(first_probe),
            alarms: Alarms::default(),
        }
    }

    /// Where the channels raise what the operators must hear.
    pub fn alarms(&self) -> Alarms {
        self.alarms.clone()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<ChannelKind, Pause>> {
        // A map of plain values: a panic elsewhere cannot leave it half-written.
        self.paused.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Pauses `channel` (or counts one more refused probe); `Some` when it was running until now.
    pub fn refused(&self, channel: ChannelKind, reason: &str, now: Timestamp) -> Option<Change> {
        let mut paused = self.lock();
        let (change, pause) = match paused.get(&channel) {
            // A send that started before the pause, refused since: not a probe, no back-off.
            Some(p) if now < p.next_probe => return None,
            Some(p) => {
                let probes = p.probes.saturating_add(1);
                let pause = Pause {
                    since: p.since,
                    reason: reason.to_owned(),
                    probes,
                    next_probe: super::later_by(now, self.wait(probes)),
                };
                (None, pause)
            }
            None => {
                let pause = Pause {
                    since: now,
                    reason: reason.to_owned(),
                    probes: 0,
                    next_probe: super::later_by(now, self.first_probe),
                };
                (Some(Change::Paused(channel, pause.clone())), pause)
            }
        };
        paused.insert(channel, pause);
        drop(paused);
        if change.is_some() {
            self.changes.send_modify(|v| *v += 1);
        }
        change
    }

    /// Resumes `channel`; `Some` when it was paused.
    pub fn accepted(&self, channel: ChannelKind) -> Option<Change> {
        let was = self.lock().remove(&channel);
        was.map(|_| {
            self.changes.send_modify(|v| *v += 1);
            Change::Resumed(channel)
        })
    }

    pub fn get(&self, channel: ChannelKind) -> Option<Pause> {
        self.lock().get(&channel).cloned()
    }

    pub fn all(&self) -> BTreeMap<ChannelKind, Pause> {
        self.lock().clone()
    }

    /// Wakes at every pause or resumption.
    pub fn watch(&self) -> watch::Receiver<u64> {
        self.changes.subscribe()
    }

    fn wait(&self, probes: u32) -> Duration {
        self.first_probe
            .saturating_mul(1 << probes.min(20))
            .min(self.longest_wait)
    }
}

/// Tells the operators (the subscribers of `outbox.notify_audience`) when a channel of this
/// replica is paused and when it resumes, through the channels that still work.
pub struct Notices {
    pub store: Arc<dyn SubscriberStore>,
    pub audience: String,
    pub channels: BTreeMap<ChannelKind, Arc<dyn Channel>>,
    pub renderer: Renderer,
    pub language: Language,
    pub replica: String,
}

impl Notices {
    pub async fn run(self, pauses: Pauses, shutdown: CancellationToken) {
        let mut changes = pauses.watch();
        let alarms = pauses.alarms();
        let mut known: BTreeMap<ChannelKind, Pause> = BTreeMap::new();
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                changed = changes.changed() => if changed.is_err() { return },
                _ = alarms.raised() => {}
            }
            let now = pauses.all();
            for alarm in alarms.take() {
                self.tell(Change::Alarm(alarm), &now).await;
            }
            for (channel, pause) in &now {
                if !known.contains_key(channel) {
                    self.tell(Change::Paused(*channel, pause.clone()), &now)
                        .await;
                }
            }
            for channel in known.keys() {
                if !now.contains_key(channel) {
                    self.tell(Change::Resumed(*channel), &now).await;
                }
            }
            known = now;
        }
    }

    async fn tell(&self, change: Change, paused: &BTreeMap<ChannelKind, Pause>) {
        if self.audience.is_empty() {
            return;
        }
        let replica = minijinja::Value::from(self.replica.clone());
        let (macro_name, args) = match &change {
            Change::Paused(channel, p) => (
                "channel_paused",
                vec![
                    minijinja::Value::from(channel.title()),
                    minijinja::Value::from(p.reason.clone()),
                    replica,
                ],
            ),
            Change::Resumed(channel) => (
                "channel_resumed",
                vec![minijinja::Value::from(channel.title()), replica],
            ),
            Change::Alarm(Alarm::WebhookDisabled {
                host,
                since,
                last_error,
            }) => (
                "webhook_disabled",
                vec![
                    minijinja::Value::from(host.clone()),
                    minijinja::Value::from(since.to_string()),
                    minijinja::Value::from(last_error.clone()),
                    replica,
                ],
            ),
            Change::Alarm(Alarm::WhatsAppLimit { limit, until }) => (
                "whatsapp_limit",
                vec![
                    minijinja::Value::from(*limit),
                    minijinja::Value::from(until.to_string()),
                    replica,
                ],
            ),
        };
        let text = match self.renderer.bot_text(&self.language, macro_name, &args) {
            Ok(text) => text,
            Err(e) => {
                tracing::error!(error = %e, "operators' notice template failed");
                return;
            }
        };
        let addresses = match self.store.audience_addresses(&self.audience).await {
            Ok(a) => a,
            Err(e) => {
                tracing::warn!(error = %e, "cannot read the operators' addresses");
                return;
            }
        };
        let id = -Timestamp::now().as_millisecond();
        for (kind, address, name) in addresses {
            let Some(channel) = self
                .channels
                .get(&kind)
                .filter(|_| !paused.contains_key(&kind))
            else {
                continue;
            };
            let body = match channel.body_markup() {
                crate::render::Markup::TelegramHtml => text.clone(),
                _ => crate::render::telegram::plain(&text),
            };
            let outgoing = Outgoing {
                delivery_id: id,
                incident_id: 0,
                attempt: 1,
                recipient: address.clone(),
                recipient_name: name,
                language: self.language.primary().to_owned(),
                subject: crate::render::telegram::plain(&text)
                    .lines()
                    .next()
                    .map(|l| l.trim().to_owned()),
                text: body,
                html: None,
                unsubscribe_url: String::new(),
                buttons: None,
                ack: None,
            };
            if let Err(e) = channel.send(&outgoing).await {
                tracing::warn!(channel = %kind, error = %e, "cannot tell an operator about a paused channel");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn probes_back_off_and_the_first_success_resumes() {
        let pauses = Pauses::new(Duration::from_secs(5), Duration::from_secs(60));
        let t = |s: i64| Timestamp::from_second(1_900_000_000 + s).unwrap();
        let first = pauses.refused(ChannelKind::Telegram, "401 Unauthorized", t(0));
        assert!(matches!(
            first,
            Some(Change::Paused(ChannelKind::Telegram, _))
        ));
        assert_eq!(pauses.get(ChannelKind::Telegram).unwrap().next_probe, t(5));
        // Sends in flight when the pause began come back refused too: they do not push the
        // probe further away.
        assert_eq!(pauses.refused(ChannelKind::Telegram, "401", t(1)), None);
        assert_eq!(pauses.refused(ChannelKind::Telegram, "401", t(2)), None);
        assert_eq!(pauses.get(ChannelKind::Telegram).unwrap().next_probe, t(5));
        assert_eq!(pauses.refused(ChannelKind::Telegram, "401", t(5)), None);
        assert_eq!(pauses.get(ChannelKind::Telegram).unwrap().next_probe, t(15));
        pauses.refused(ChannelKind::Telegram, "401", t(15));
        assert_eq!(pauses.get(ChannelKind::Telegram).unwrap().next_probe, t(35));
        pauses.refused(ChannelKind::Telegram, "401", t(35));
        assert_eq!(pauses.get(ChannelKind::Telegram).unwrap().next_probe, t(75));
        pauses.refused(ChannelKind::Telegram, "401", t(75));
        assert_eq!(
            pauses.get(ChannelKind::Telegram).unwrap().next_probe,
            t(135),
            "at most a minute apart"
        );
        assert_eq!(pauses.get(ChannelKind::Telegram).unwrap().since, t(0));
        assert!(pauses.get(ChannelKind::Email).is_none());
        assert_eq!(
            pauses.accepted(ChannelKind::Telegram),
            Some(Change::Resumed(ChannelKind::Telegram))
        );
        assert_eq!(pauses.accepted(ChannelKind::Telegram), None);
        assert!(pauses.all().is_empty());
    }
}
