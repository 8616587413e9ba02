//! WhatsApp's pace. The number's messages a second are the outbox's bucket, shared by every
//! replica; but a bucket of one lets a window of a second hold the rate and one, and a process
//! slowed by a busy CPU sends late and then catches up, so the sends of this process also keep
//! to a window, as Telegram's pacer does: one goes only while fewer than `per_second` were
//! answered within the last second or are still in flight. Beyond it, one person gets at most one message every `pair_interval` (Meta's pair rate, about 6 s, error
//! 131056), and the number reaches at most `daily_recipients` different people in a rolling 24
//! hours (its messaging limit). The pair rate is kept per process, as Telegram's per-chat pace
//! is: a person's turn is checked before the send, held while it is in flight (so two sends at
//! once cannot both pass) and the interval counted from WhatsApp's answer; a 131056 from
//! another replica's send is waited out the same way. The daily count is the
//! store's, shared by every replica: the people the deliveries sent (or being sent) in the last
//! day went to. When it is reached, the next person waits, without an attempt counted, until
//! the first of the day leaves the window, and the operators are told once.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use jiff::{SignedDuration, Timestamp};
use tokio::time::Instant;

use super::super::SendError;
use super::super::alarm::{Alarm, Alarms};
use crate::domain::subscriber::ChannelKind;
use crate::store::OutboxStore;

const SECOND: Duration = Duration::from_secs(1);
const DAY: SignedDuration = SignedDuration::from_hours(24);
/// Past this many people remembered, the ones whose wait is over are forgotten.
const FORGET_AFTER: usize = 10_000;

pub struct Pace {
    per_second: usize,
    /// When each send of the last second was answered, and the sends not answered yet.
    window: Mutex<(VecDeque<Instant>, usize)>,
    pair_interval: Duration,
    daily_recipients: u32,
    store: Arc<dyn OutboxStore>,
    alarms: Alarms,
    /// Per number: the earliest its next message may go, `None` while one is being sent.
    next: Mutex<HashMap<String, Option<Instant>>>,
    /// The people last counted today, and when.
    counted: Mutex<Option<(Instant, u64)>>,
    /// The end of the wait the operators were last told about.
    told_until: Mutex<Option<Timestamp>>,
}

/// The right to send one message now (see [`Pace::turn`]).
#[must_use = "the send must happen while the turn is held"]
pub struct Turn<'a>(&'a Pace);

impl Drop for Turn<'_> {
    fn drop(&mut self) {
        let mut window = self.0.window();
        window.1 = window.1.saturating_sub(1);
        window.0.push_back(Instant::now());
    }
}

/// One person's turn (see [`Pace::pair_turn`]).
#[must_use = "the send must happen while the turn is held"]
pub struct PairTurn<'a> {
    pace: &'a Pace,
    recipient: String,
}

impl Drop for PairTurn<'_> {
    fn drop(&mut self) {
        let at = Instant::now() + self.pace.pair_interval;
        self.pace
            .next()
            .insert(std::mem::take(&mut self.recipient), Some(at));
    }
}

impl Pace {
    pub fn new(
        per_second: u32,
        pair_interval: Duration,
        daily_recipients: u32,
        store: Arc<dyn OutboxStore>,
        alarms: Alarms,
    ) -> Pace {
        Pace {
            per_second: usize::try_from(per_second).unwrap_or(usize::MAX).max(1),
            window: Mutex::default(),
            pair_interval,
            daily_recipients,
            store,
            alarms,
            next: Mutex::default(),
            counted: Mutex::default(),
            told_until: Mutex::default(),
        }
    }

    fn window(&self) -> std::sync::MutexGuard<'_, (VecDeque<Instant>, usize)> {
        self.window.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Waits for room in the window of a second; hold the turn until WhatsApp has answered.
    pub async fn turn(&self) -> Turn<'_> {
        loop {
            let wait = {
                let now = Instant::now();
                let mut window = self.window();
                let (answered, in_flight) = &mut *window;
                while answered
                    .front()
                    .is_some_and(|at| now.duration_since(*at) >= SECOND)
                {
                    answered.pop_front();
                }
                if answered.len() + *in_flight < self.per_second {
                    *in_flight += 1;
                    return Turn(self);
                }
                answered.front().map_or(Duration::from_millis(10), |at| {
                    SECOND - now.duration_since(*at)
                })
            };
            tokio::time::sleep(wait.clamp(Duration::from_millis(1), Duration::from_millis(50)))
                .await;
        }
    }

    fn next(&self) -> std::sync::MutexGuard<'_, HashMap<String, Option<Instant>>> {
        self.next.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The turn of `recipient`: taken now, or how long to wait for it. While it is held no
    /// other message to that person goes; when it is dropped (WhatsApp's answer came back,
    /// whatever it said), the next may go `pair_interval` later. Meta counts the pair rate
    /// from the messages it received, so the interval runs from the answer, never from before
    /// the wait for the window of a second and the request.
    pub fn pair_turn(&self, recipient: &str) -> Result<PairTurn<'_>, Duration> {
        let now = Instant::now();
        let mut next = self.next();
        match next.get(recipient) {
            Some(Some(at)) if *at > now => return Err(*at - now),
            // Being sent by another task: at least an interval once it is answered.
            Some(None) => return Err(self.pair_interval),
            _ => {}
        }
        if next.len() >= FORGET_AFTER {
            next.retain(|_, at| at.is_none_or(|at| at > now));
        }
        next.insert(recipient.to_owned(), None);
        Ok(PairTurn {
            pace: self,
            recipient: recipient.to_owned(),
        })
    }

    /// Whether the number may reach `recipient` today; otherwise the wait, as a throttle.
    ///
    /// A delivery being sent counts for the ones made after it (a higher id), not for the ones
    /// made before: of two sends at once, never both wait for each other. That is all: when the
    /// one made earlier looks after the later one did (it was deferred, or claimed in a later
    /// batch), neither sees the other, and both may take the last place. The limit may thus be
    /// passed by the messages in flight at once (`concurrency` per replica), never more.
    pub async fn daily_room(&self, recipient: &str, delivery_id: i64) -> Result<(), SendError> {
        if self.daily_recipients == 0 {
            return Ok(());
        }
        let limit = u64::from(self.daily_recipients);
        // Every replica together sends at most the bucket's rate a second (and one burst), so
        // a count read less than a second ago that far from the limit still leaves room: no
        // need to ask the store again.
        let margin = 2 * self.per_second as u64;
        if self
            .counted()
            .is_some_and(|(at, people)| at.elapsed() < SECOND && people + margin < limit)
        {
            return Ok(());
        }
        let now = Timestamp::now();
        let since = now.checked_sub(DAY).unwrap_or(now);
        let reached = self
            .store
            .recipients_reached(ChannelKind::WhatsApp, recipient, delivery_id, since, limit)
            .await
            .map_err(|e| SendError::Retry {
                after: None,
                reason: format!("cannot count the people reached today: {e}"),
            })?;
        if reached.includes_recipient {
            return Ok(());
        }
        *self.counted.lock().unwrap_or_else(|e| e.into_inner()) =
            Some((Instant::now(), reached.people));
        if reached.people < limit {
            return Ok(());
        }
        let until = reached
            .earliest
            .and_then(|t| t.checked_add(DAY).ok())
            .filter(|t| *t > now)
            .unwrap_or_else(|| now.checked_add(SignedDuration::from_mins(1)).unwrap_or(now));
        self.tell(until, now);
        metrics::counter!("banditore_whatsapp_daily_limit_waits_total").increment(1);
        let wait = Duration::try_from(until.duration_since(now)).unwrap_or(Duration::ZERO);
        // Checked again a minute at most later: a person of the window may come back sooner
        // (a message to someone already counted needs no room).
        Err(SendError::Throttled {
            after: wait.clamp(Duration::from_secs(1), Duration::from_secs(60)),
        })
    }

    fn counted(&self) -> Option<(Instant, u64)> {
        *self.counted.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Tells the operators once per wait, from this replica: each replica that reaches the
    /// limit tells them too.
    fn tell(&self, until: Timestamp, now: Timestamp) {
        let mut told = self.told_until.lock().unwrap_or_else(|e| e.into_inner());
        if told.is_some_and(|t| t > now) {
            return;
        }
        *told = Some(until);
        drop(told);
        tracing::warn!(limit = self.daily_recipients, %until, "WhatsApp reached the number's daily limit of people; the rest waits");
        self.alarms.raise(Alarm::WhatsAppLimit {
            limit: self.daily_recipients,
            until,
        });
    }
}
