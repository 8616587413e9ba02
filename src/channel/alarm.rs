//! What a channel has to tell the operators by itself, beside a delivery's outcome: a webhook
//! receiver disabled after failing for `channels.webhook.disable_after`, WhatsApp's daily
//! limit of people reached. A channel raises an
//! [`Alarm`]; the outbox's operators' notices (`outbox::pause::Notices`) take it and tell
//! `outbox.notify_audience` through the channels that reach people, as for a paused channel.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use jiff::Timestamp;
use tokio::sync::Notify;

/// One thing the operators must hear.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Alarm {
    /// A webhook receiver failed every send for the window and its address is now gone.
    WebhookDisabled {
        /// The receiver's host only: a chat tool's URL is its credential.
        host: String,
        since: Timestamp,
        last_error: String,
    },
    /// WhatsApp reached the number's messaging limit: the rest waits until `until`.
    WhatsAppLimit { limit: u32, until: Timestamp },
}

/// The alarms of this process not yet told, shared by the channels and the notices.
#[derive(Clone, Default)]
pub struct Alarms {
    queue: Arc<Mutex<VecDeque<Alarm>>>,
    raised: Arc<Notify>,
}

/// More than this waiting and the oldest are dropped (each is also logged when raised).
const KEEP: usize = 100;

impl Alarms {
    fn lock(&self) -> std::sync::MutexGuard<'_, VecDeque<Alarm>> {
        self.queue
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    pub fn raise(&self, alarm: Alarm) {
        let mut queue = self.lock();
        if queue.len() >= KEEP {
            queue.pop_front();
        }
        queue.push_back(alarm);
        drop(queue);
        self.raised.notify_one();
    }

    /// Every alarm raised since the last call.
    pub fn take(&self) -> Vec<Alarm> {
        self.lock().drain(..).collect()
    }

    /// Returns once an alarm may be waiting.
    pub async fn raised(&self) {
        self.raised.notified().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn alarms_are_taken_once_in_order_and_wake_the_listener() {
        let alarms = Alarms::default();
        let alarm = |host: &str| Alarm::WebhookDisabled {
            host: host.into(),
            since: Timestamp::UNIX_EPOCH,
            last_error: "503".into(),
        };
        alarms.raise(alarm("a"));
        alarms.raise(alarm("b"));
        // A permit is stored: the listener wakes although it started listening later.
        alarms.raised().await;
        assert_eq!(alarms.take(), vec![alarm("a"), alarm("b")]);
        assert!(alarms.take().is_empty());
        for i in 0..KEEP + 5 {
            alarms.raise(alarm(&i.to_string()));
        }
        let kept = alarms.take();
        assert_eq!(kept.len(), KEEP);
        assert_eq!(kept[0], alarm("5"));
    }
}
