//! Pacing per chat, as Telegram asks: at most one message a second in a conversation with a
//! person, twenty a minute in a group or channel; and after a 429, nothing at all until the
//! time Telegram gave. The deployment-wide rate (about 30 a second) is the outbox's shared
//! bucket; this is the part only the sending process can know. Alerts and the bot's answers
//! share one pacer, so an answer right after an alert waits its turn instead of being refused.
//!
//! The bucket spaces sends when they are due, but a process stalled by a busy CPU sends late
//! and then catches up, and sends that left a moment apart can arrive together. So the pacer
//! also keeps a window of the latest sends by the time each was *answered*, and lets a send go
//! only while fewer than `per_second` were answered within the last second or are still in
//! flight. Telegram received each message before its answer came back, so however the
//! scheduler or the network bunched them, no second at Telegram ever holds more than
//! `per_second` of them.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::Duration;

use tokio::sync::Notify;
use tokio::time::Instant;

use crate::domain::subscriber::TelegramChat;

/// A little over Telegram's figures, so that network jitter never brings two sends closer.
const PERSON: Duration = Duration::from_millis(1_100);
const GROUP: Duration = Duration::from_millis(3_100);
/// Entries older than this are forgotten once the table is large.
const FORGET_AFTER: usize = 10_000;

const SECOND: Duration = Duration::from_secs(1);

pub struct Pacer {
    /// Sends a second at most, as Telegram counts them.
    per_second: usize,
    state: Mutex<State>,
    /// Rung when a send ends, for the ones waiting for room in the window.
    ended: Notify,
}

/// The right to send one message now; hold it until Telegram has answered.
#[must_use = "the send must happen while the turn is held"]
pub struct Turn<'a>(&'a Pacer);

impl Drop for Turn<'_> {
    fn drop(&mut self) {
        let mut state = self.0.lock();
        state.in_flight = state.in_flight.saturating_sub(1);
        state.answered.push_back(Instant::now());
        drop(state);
        self.0.ended.notify_waiters();
    }
}

#[derive(Default)]
struct State {
    /// When each send of the last second was answered, oldest first.
    answered: VecDeque<Instant>,
    /// Sends not yet answered.
    in_flight: usize,
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
    pub fn new(per_second: u32) -> Pacer {
        Pacer {
            per_second: usize::try_from(per_second).unwrap_or(usize::MAX).max(1),
            state: Mutex::default(),
            ended: Notify::new(),
        }
    }

    /// Waits for this chat's turn (a few seconds at most) and for room in the last second's
    /// window, and takes them; while Telegram's `retry_after` runs, returns at once with what is
    /// left of it instead, so that a caller under a time limit does not spend it waiting.
    pub async fn turn(&self, chat: &TelegramChat) -> Result<Turn<'_>, Duration> {
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
        loop {
            let ended = self.ended.notified();
            tokio::pin!(ended);
            // Registered before looking, so that a send ending meanwhile is not missed.
            ended.as_mut().enable();
            let room_at = {
                let mut state = self.lock();
                let now = Instant::now();
                if let Some(left) = state.frozen_left(now) {
                    return Err(left);
                }
                while state.answered.front().is_some_and(|t| *t + SECOND <= now) {
                    state.answered.pop_front();
                }
                if state.answered.len() + state.in_flight < self.per_second {
                    state.in_flight += 1;
                    return Ok(Turn(self));
                }
                state.answered.front().map(|t| *t + SECOND)
            };
            match room_at {
                Some(at) => {
                    tokio::select! {
                        _ = tokio::time::sleep_until(at) => {}
                        _ = ended => {}
                    }
                }
                None => ended.await,
            }
        }
    }

    /// Waits for this chat's turn however long Telegram asked everyone to wait.
    pub async fn turn_patiently(&self, chat: &TelegramChat) -> Turn<'_> {
        loop {
            match self.turn(chat).await {
                Ok(turn) => return turn,
                Err(left) => tokio::time::sleep(left).await,
            }
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
        let pacer = Pacer::new(30);
        let person = TelegramChat::Id(42);
        let group = TelegramChat::Id(-42);
        let start = Instant::now();
        drop(pacer.turn(&person).await.unwrap());
        drop(pacer.turn(&group).await.unwrap());
        assert_eq!(
            start.elapsed(),
            Duration::ZERO,
            "different chats do not wait"
        );
        drop(pacer.turn(&person).await.unwrap());
        assert_eq!(start.elapsed(), PERSON);
        drop(pacer.turn(&group).await.unwrap());
        assert_eq!(start.elapsed(), GROUP);
        // While frozen, a turn is refused at once with what is left of the wait.
        pacer.freeze(Duration::from_secs(40));
        assert_eq!(
            pacer.turn(&TelegramChat::Id(7)).await.err(),
            Some(Duration::from_secs(40))
        );
        assert_eq!(start.elapsed(), GROUP);
        drop(pacer.turn_patiently(&TelegramChat::Id(7)).await);
        assert_eq!(start.elapsed(), GROUP + Duration::from_secs(40));
    }

    /// Sends to different chats, answered after latencies that vary as a stalled, catching-up
    /// process and a jittery network make them: wherever the sends bunch, no second holds more
    /// answers than the limit, and a steady stream still runs close to it.
    #[tokio::test(start_paused = true)]
    async fn no_second_ever_holds_more_answers_than_the_limit() {
        use std::sync::Arc;
        let pacer = Arc::new(Pacer::new(30));
        let answered = Arc::new(Mutex::new(Vec::new()));
        let start = Instant::now();
        let mut sends = Vec::new();
        for i in 0..300i64 {
            let pacer = pacer.clone();
            let answered = answered.clone();
            // Latencies from 1 ms to 150 ms in a pattern that bunches some answers.
            let latency = Duration::from_millis([1, 150, 3, 90, 40, 7, 120][i as usize % 7]);
            sends.push(tokio::spawn(async move {
                let turn = pacer.turn(&TelegramChat::Id(1_000 + i)).await.unwrap();
                tokio::time::sleep(latency).await;
                answered.lock().unwrap().push(Instant::now());
                drop(turn);
            }));
        }
        for send in sends {
            send.await.unwrap();
        }
        let mut times = answered.lock().unwrap().clone();
        times.sort();
        for (i, t) in times.iter().enumerate() {
            let within = times[i..].iter().take_while(|u| **u < *t + SECOND).count();
            assert!(
                within <= 30,
                "{within} answers within a second of {:?}",
                *t - start
            );
        }
        let rate = 300.0 / (start.elapsed().as_secs_f64());
        assert!(rate > 25.0, "{rate:.1} a second");
    }
}
