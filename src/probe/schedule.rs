//! When a probe's next check runs. Regular checks keep a stable phase within the interval; a
//! check in doubt (a failure while the probe is up, a success while it is down) is repeated
//! after the short `recheck_interval`, so that `failure_threshold` failures in a row take seconds
//! rather than intervals; and another replica's doubt brings the next check forward to now. One
//! failed check followed by a good one still changes nothing: the thresholds decide, only sooner.
//!
//! Time is a parameter: the loop in [`super`] passes the instant, the tests pass theirs.

use std::hash::{Hash, Hasher};
use std::time::{Duration, Instant};

/// The stable offset of a probe within its interval on one replica, so that probes do not all
/// start together, and replicas (each hashing its own name in) look at a target at different
/// moments: together they see a failure sooner than any one alone.
pub fn offset(name: &str, instance: &str, interval: Duration) -> Duration {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    name.hash(&mut h);
    instance.hash(&mut h);
    let ms = interval.as_millis().max(1) as u64;
    Duration::from_millis(h.finish() % ms)
}

/// One probe's timetable on this replica.
#[derive(Debug, Clone)]
pub struct Schedule {
    interval: Duration,
    recheck: Duration,
    /// The regular checks are due at `first + k × interval`.
    first: Instant,
    next: Instant,
    last: Option<Instant>,
}

impl Schedule {
    /// Regular checks from `first` on, every `interval`; checks in doubt after `recheck` (at
    /// most `interval`).
    pub fn new(first: Instant, interval: Duration, recheck: Duration) -> Schedule {
        let interval = interval.max(Duration::from_millis(1));
        Schedule {
            interval,
            recheck: recheck.min(interval),
            first,
            next: first,
            last: None,
        }
    }

    /// When the next check is due.
    pub fn next(&self) -> Instant {
        self.next
    }

    /// A check started at `at`; `in_doubt` when its result disagrees with the replica's state
    /// and the thresholds have not yet decided. The next check is the first regular slot after
    /// it, or sooner, after `recheck`, when in doubt. A check that overran slots skips them.
    pub fn checked(&mut self, at: Instant, in_doubt: bool) {
        self.last = Some(at);
        let regular = self.slot_after(at);
        self.next = if in_doubt {
            (at + self.recheck).min(regular)
        } else {
            regular
        };
    }

    /// Another replica doubts the target: look now, though never sooner than `recheck` after
    /// this replica's last look (replicas calling each other do not make a storm of checks).
    pub fn call(&mut self, now: Instant) {
        let earliest = self.last.map_or(now, |l| (l + self.recheck).max(now));
        self.next = self.next.min(earliest);
    }

    fn slot_after(&self, at: Instant) -> Instant {
        let Some(since) = at.checked_duration_since(self.first) else {
            return self.first;
        };
        let n = since.as_nanos() / self.interval.as_nanos() + 1;
        let n = u32::try_from(n).unwrap_or(u32::MAX);
        self.first + self.interval * n
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: Duration = Duration::from_secs(1);

    #[test]
    fn regular_checks_keep_their_phase() {
        let t0 = Instant::now();
        let mut s = Schedule::new(t0 + 3 * S, 10 * S, S);
        assert_eq!(s.next(), t0 + 3 * S);
        s.checked(t0 + 3 * S, false);
        assert_eq!(s.next(), t0 + 13 * S);
        // A check that waited for a permit, or overran its slot, keeps the grid.
        s.checked(t0 + 13 * S + Duration::from_millis(700), false);
        assert_eq!(s.next(), t0 + 23 * S);
        s.checked(t0 + 35 * S, false);
        assert_eq!(s.next(), t0 + 43 * S);
    }

    #[test]
    fn a_check_in_doubt_is_repeated_after_the_recheck_and_the_phase_is_kept() {
        let t0 = Instant::now();
        let mut s = Schedule::new(t0, 10 * S, S);
        s.checked(t0 + 10 * S, true);
        assert_eq!(
            s.next(),
            t0 + 11 * S,
            "a failure while up: look again in 1 s"
        );
        s.checked(t0 + 11 * S, false);
        assert_eq!(s.next(), t0 + 20 * S, "decided: back to the regular slots");
        // A recheck never goes past the next regular slot.
        s.checked(t0 + 29 * S + Duration::from_millis(500), true);
        assert_eq!(s.next(), t0 + 30 * S);
    }

    #[test]
    fn another_replica_calls_the_check_forward_but_not_closer_than_a_recheck() {
        let t0 = Instant::now();
        let mut s = Schedule::new(t0, 10 * S, S);
        s.checked(t0, false);
        s.call(t0 + 4 * S);
        assert_eq!(s.next(), t0 + 4 * S, "at once");
        s.checked(t0 + 4 * S, true);
        // Called back 100 ms later: the recheck already planned stands.
        s.call(t0 + 4 * S + Duration::from_millis(100));
        assert_eq!(s.next(), t0 + 5 * S);
        // After a settled check, a call comes one recheck after it.
        s.checked(t0 + 5 * S, false);
        s.call(t0 + 5 * S);
        assert_eq!(s.next(), t0 + 6 * S);
        let mut fresh = Schedule::new(t0 + 7 * S, 10 * S, S);
        fresh.call(t0);
        assert_eq!(fresh.next(), t0, "before its first check, a call runs it");
    }

    #[test]
    fn a_recheck_longer_than_the_interval_is_the_interval() {
        let t0 = Instant::now();
        let mut s = Schedule::new(t0, Duration::from_millis(200), S);
        s.checked(t0, true);
        assert_eq!(s.next(), t0 + Duration::from_millis(200));
    }

    #[test]
    fn replicas_look_at_one_probe_at_different_moments() {
        let interval = 10 * S;
        let phases: std::collections::BTreeSet<Duration> = (0..10)
            .map(|i| offset("cup-portale", &format!("replica-{i}"), interval))
            .collect();
        assert!(phases.len() >= 9, "{phases:?}");
        assert!(phases.iter().all(|o| *o < interval));
    }
}
