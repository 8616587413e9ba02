//! Failover between a channel's providers, shared by SMS and voice calls: providers are tried in
//! priority order, one that throttles (for its `Retry-After`, or a back-off doubling from a
//! second) or fails `put_aside_after` times in a row (for `put_aside_for`) is put aside, so that
//! traffic flows to the next at that one's own pace instead of waiting on the first. A provider
//! not known to work (at start, after a failure, once back from aside) takes only as many sends
//! at once as it has failures left before being put aside: a dead provider costs that many
//! tries, however many sends are in flight, and one back from aside is tried by one send first.

use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

use crate::channel::rate::RateLimiter;
use crate::domain::subscriber::ChannelKind;

/// How long a send waits for providers on trial to give their verdict before trying one anyway.
const VERDICT_WAIT: Duration = Duration::from_secs(2);

/// One provider of a channel: its name, what sends through it, its pace and its health.
pub struct Member<T> {
    pub name: String,
    pub inner: T,
    /// Its own pace, shared by every replica.
    pub limiter: Option<RateLimiter>,
    health: Mutex<Health>,
}

#[derive(Default)]
struct Health {
    /// Failures in a row since the provider last took a message.
    failures: u32,
    /// Throttles in a row, for the back-off when the provider gives no `Retry-After`.
    throttles: u32,
    /// Whether the provider took a message since its last failure (or since the start).
    proven: bool,
    /// Sends being tried on it now.
    in_flight: u32,
    aside_until: Option<Instant>,
}

/// A send admitted to a provider; counted in flight until dropped.
pub struct Slot<'a, T>(&'a Member<T>);

impl<T> Drop for Slot<'_, T> {
    fn drop(&mut self) {
        let mut health = self.0.health();
        health.in_flight = health.in_flight.saturating_sub(1);
    }
}

impl<T> Member<T> {
    pub fn new(name: String, inner: T, limiter: Option<RateLimiter>) -> Member<T> {
        Member {
            name,
            inner,
            limiter,
            health: Mutex::new(Health::default()),
        }
    }

    /// A slot on this provider, unless it is aside or, not known to work, already has as many
    /// sends in flight as it has failures left (one, once back from aside).
    fn admit(&self, now: Instant, failures_allowed: u32) -> Option<Slot<'_, T>> {
        let mut health = self.health();
        if health.aside_until.is_some_and(|until| until > now) {
            return None;
        }
        if !health.proven {
            let left = failures_allowed.saturating_sub(health.failures).max(1);
            if health.in_flight >= left {
                return None;
            }
        }
        health.in_flight += 1;
        Some(Slot(self))
    }

    fn health(&self) -> std::sync::MutexGuard<'_, Health> {
        // Counters only: a panic elsewhere cannot leave them inconsistent.
        self.health.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// A channel's providers in the order they are tried, and the rule that puts them aside.
pub struct Roster<T> {
    channel: ChannelKind,
    members: Vec<Member<T>>,
    put_aside_after: u32,
    put_aside_for: Duration,
}

impl<T> Roster<T> {
    pub fn new(
        channel: ChannelKind,
        members: Vec<Member<T>>,
        put_aside_after: u32,
        put_aside_for: Duration,
    ) -> Roster<T> {
        Roster {
            channel,
            members,
            put_aside_after: put_aside_after.max(1),
            put_aside_for,
        }
    }

    pub fn members(&self) -> &[Member<T>] {
        &self.members
    }

    /// How long a provider may be put aside at most: the cap on a throttle's wait.
    pub fn put_aside_for(&self) -> Duration {
        self.put_aside_for
    }

    /// The providers to try for one message, in priority order, each with its slot: those put
    /// aside are skipped. One not known to work and already trying as many sends as it has
    /// failures left is skipped too, or, when no provider has room, waited for a moment: its
    /// verdict comes with its answers. When every provider is aside, the one whose time aside
    /// ends first is tried all the same (better a refusal than no try at all).
    /// Providers named in `skip` are left out.
    pub async fn order(&self, skip: &[String]) -> Vec<(&Member<T>, Option<Slot<'_, T>>)> {
        let waiting_since = Instant::now();
        let members = || self.members.iter().filter(|p| !skip.contains(&p.name));
        loop {
            let now = Instant::now();
            let admitted: Vec<_> = members()
                .filter_map(|p| {
                    p.admit(now, self.put_aside_after)
                        .map(|slot| (p, Some(slot)))
                })
                .collect();
            if !admitted.is_empty() {
                return admitted;
            }
            let all_aside =
                members().all(|p| p.health().aside_until.is_some_and(|until| until > now));
            if all_aside || now.duration_since(waiting_since) >= VERDICT_WAIT {
                let soonest = members().min_by_key(|p| p.health().aside_until.unwrap_or(now));
                return soonest.map(|p| (p, None)).into_iter().collect();
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    pub fn succeeded(&self, member: &Member<T>) {
        let mut health = member.health();
        health.failures = 0;
        health.throttles = 0;
        health.proven = true;
        health.aside_until = None;
    }

    /// Over the provider's rate: aside for as long as it asked, or a second doubling with each
    /// throttle in a row up to `put_aside_for`.
    pub fn throttled(&self, member: &Member<T>, after: Option<Duration>) {
        let mut health = member.health();
        health.throttles = health.throttles.saturating_add(1);
        let backoff = Duration::from_secs(1)
            .saturating_mul(1 << (health.throttles - 1).min(16))
            .min(self.put_aside_for.max(Duration::from_secs(1)));
        // A provider's Retry-After is believed up to `put_aside_for`, however large it says.
        let until = Instant::now()
            + after
                .map(|a| a.min(self.put_aside_for.max(Duration::from_secs(1))))
                .unwrap_or(backoff);
        health.aside_until = Some(health.aside_until.map_or(until, |u| u.max(until)));
        self.count_put_aside(&member.name);
    }

    /// One more failure in a row; enough of them put the provider aside.
    pub fn failed(&self, member: &Member<T>) {
        let mut health = member.health();
        health.failures = health.failures.saturating_add(1);
        health.proven = false;
        if health.failures >= self.put_aside_after {
            health.aside_until = Some(Instant::now() + self.put_aside_for);
            tracing::warn!(channel = %self.channel, provider = %member.name, for_ = ?self.put_aside_for, "provider put aside after repeated failures");
            self.count_put_aside(&member.name);
        }
    }

    fn count_put_aside(&self, name: &str) {
        let provider = name.to_owned();
        match self.channel {
            ChannelKind::Voice => {
                metrics::counter!("banditore_voice_put_aside_total", "provider" => provider)
                    .increment(1);
            }
            _ => {
                metrics::counter!("banditore_sms_put_aside_total", "provider" => provider)
                    .increment(1);
            }
        }
    }
}
