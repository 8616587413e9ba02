//! Pacing per chat, as Telegram asks: at most one message a second in a conversation with a
//! person, twenty a minute in a group or channel; and after a 429, nothing at all until the
//! time Telegram gave. The deployment-wide rate (about 30 a second) is the outbox's shared
//! bucket; this is the part only the sending process can know. Alerts and the bot's answers
//! share one pacer, so an answer right after an alert waits its turn instead of being refused.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

use crate::domain::subscriber::TelegramChat;

/// A little over Telegram's figures, so that network jitter never brings two sends closer.
const PERSON: Duration = Duration::from_millis(1_100);
const GROUP: Duration = Duration::from_millis(3_100);
/// Entries older than this are forgotten once the table is large.
const FORGET_AFTER: usize = 10_000;

#[derive(Default)]
pub struct Pacer {
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    /// The earliest moment each chat may get its next message.
    next: HashMap<TelegramChat, Instant>,
    /// After a 429: nothing goes out before this.
    frozen_until: Option<Instant>,
}

impl State {
    fn frozen_left(&self, now: Instant) -> Option<Duration> {
        self.frozen_until
            .filter(|until| *until > now)
            .map(|until| until - now)
    }
}

impl Pacer {
    /// Waits for this chat's turn (a few seconds at most) and takes it; while Telegram's
    /// `retry_after` runs, returns at once with what is left of it instead, so that a caller
    /// under a time limit does not spend it waiting.
    pub async fn turn(&self, chat: &TelegramChat) -> Result<(), Duration> {
        let at = {
            let mut state = self.lock();
            let now = Instant::now();
            if let Some(left) = state.frozen_left(now) {
                return Err(left);
            }
            if state.next.len() > FORGET_AFTER {
                state.next.retain(|_, at| *at > now);
            }
            let at = state.next.get(chat).copied().unwrap_or(now).max(now);
            let spacing = if chat.is_group() { GROUP } else { PERSON };
            state.next.insert(chat.clone(), at + spacing);
            at
        };
        tokio::time::sleep_until(at).await;
        match self.lock().frozen_left(Instant::now()) {
            Some(left) => Err(left),
            None => Ok(()),
        }
    }

    /// Waits for this chat's turn however long Telegram asked everyone to wait.
    pub async fn turn_patiently(&self, chat: &TelegramChat) {
        while let Err(left) = self.turn(chat).await {
            tokio::time::sleep(left).await;
        }
    }

    /// Holds every chat until `after` has passed (Telegram's `retry_after`).
    pub fn freeze(&self, after: Duration) {
        let until = Instant::now() + after;
        let mut state = self.lock();
        state.frozen_until = Some(state.frozen_until.map_or(until, |f| f.max(until)));
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // The state is a cache of send times: a panic elsewhere cannot leave it inconsistent.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn spaces_messages_per_chat_and_holds_all_after_a_freeze() {
        let pacer = Pacer::default();
        let person = TelegramChat::Id(42);
        let group = TelegramChat::Id(-42);
        let start = Instant::now();
        pacer.turn(&person).await.unwrap();
        pacer.turn(&group).await.unwrap();
        assert_eq!(
            start.elapsed(),
            Duration::ZERO,
            "different chats do not wait"
        );
        pacer.turn(&person).await.unwrap();
        assert_eq!(start.elapsed(), PERSON);
        pacer.turn(&group).await.unwrap();
        assert_eq!(start.elapsed(), GROUP);
        // While frozen, a turn is refused at once with what is left of the wait.
        pacer.freeze(Duration::from_secs(40));
        assert_eq!(
            pacer.turn(&TelegramChat::Id(7)).await,
            Err(Duration::from_secs(40))
        );
        assert_eq!(start.elapsed(), GROUP);
        pacer.turn_patiently(&TelegramChat::Id(7)).await;
        assert_eq!(start.elapsed(), GROUP + Duration::from_secs(40));
    }
}
