//! When a probe's next check runs. Regular checks keep a stable phase within the interval; a
//! check in doubt (a failure while the probe is up, a success while it is down) is repeated
//! after the short `recheck_interval`, so that `failure_threshold` failures in a row take seconds
//! rather than intervals; and another replica's doubt brings the next check forward to now. One
//! failed check followed by a good one still changes nothing: the thresholds decide, only sooner.
//!
//! Time is a parameter: the loop in [`super`] passes the instant, the tests pass theirs.

use std::hash::{Hash, Hasher};
use std::time::{Duration, Instant};

/// The stable offset of a probe within its interval, so that probes do not all start together.
pub fn offset(name: &str, interval: Duration) -> Duration {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    name.hash(&mut h);
    let ms = interval.as_millis().max(1) as u64;
    Duration::from_millis(h.finish() % ms)
}

/// Where replica `rank` of `of` (its place among the replicas' names in order) checks the probe
/// within its interval: the probe's offset, shifted by an equal share per replica, so that two
/// replicas together look twice an interval, three thrice.
pub fn phase(name: &str, interval: Duration, rank: u32, of: u32) -> Duration {
    let ms = interval.as_millis().max(1) as u64;
    let share = ms * u64::from(rank) / u64::from(of.max(1));
    Duration::from_millis((offset(name, interval).as_millis() as u64 + share) % ms)
}

/// The first check at `phase` within the interval, counted on the wall clock (milliseconds since
/// the Unix epoch, `wall_ms`, read at `now`), so that replicas started at different times share
/// the timetable: their clocks agree to within milliseconds.
pub fn first_at(now: Instant, wall_ms: u64, interval: Duration, phase: Duration) -> Instant {
    let ms = interval.as_millis().max(1) as u64;
    let phase = phase.as_millis() as u64 % ms;
    let into = (wall_ms % ms + ms - phase) % ms;
    let wait = if into == 0 { 0 } else { ms - into };
    now + Duration::from_millis(wait)
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
    /// The next check is a recheck or a call, not a regular slot.
    early: bool,
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
            early: false,
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
        self.early = in_doubt && at + self.recheck < regular;
        self.next = if self.early {
            at + self.recheck
        } else {
            regular
        };
    }

    /// The regular slots move to `first + k × interval` (the replicas changed); a recheck or
    /// a call already due stays.
    pub fn rephase(&mut self, first: Instant) {
        self.first = first;
        if !self.early {
            self.next = match self.last {
                Some(last) => self.slot_after(last),
                None => first,
            };
        }
    }

    /// Another replica doubts the target: look now, though never sooner than `recheck` after
    /// this replica's last look (replicas calling each other do not make a storm of checks).
    pub fn call(&mut self, now: Instant) {
        let earliest = self.last.map_or(now, |l| (l + self.recheck).max(now));
        if earliest < self.next {
            self.next = earliest;
            self.early = true;
        }
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
    fn replicas_share_the_interval_on_the_wall_clock() {
        let interval = 10 * S;
        let base = offset("cup-portale", interval);
        assert_eq!(phase("cup-portale", interval, 0, 1), base);
        let two: Vec<Duration> = (0..2)
            .map(|k| phase("cup-portale", interval, k, 2))
            .collect();
        let apart = two[1].abs_diff(two[0]);
        assert!(apart == 5 * S, "two replicas 5 s apart: {two:?}");
        // Two replicas that started at different moments find the same slots.
        let t0 = Instant::now();
        let ms = Duration::from_millis;
        let a = first_at(t0, 1_000_000_123_500, interval, 3 * S);
        let b = first_at(t0 + 2 * S, 1_000_000_125_500, interval, 3 * S);
        assert_eq!(a, t0 + ms(9500));
        assert_eq!(b, a);
        assert_eq!(
            first_at(t0, 1_000_000_123_000, interval, 3 * S),
            t0,
            "on the slot: now"
        );
    }

    #[test]
    fn new_replicas_move_the_regular_slots_but_not_a_recheck() {
        let t0 = Instant::now();
        let mut s = Schedule::new(t0, 10 * S, S);
        s.checked(t0, false);
        s.rephase(t0 + 5 * S);
        assert_eq!(s.next(), t0 + 5 * S);
        s.checked(t0 + 5 * S, true);
        s.rephase(t0 + 7 * S);
        assert_eq!(s.next(), t0 + 6 * S, "the recheck stands");
        s.checked(t0 + 6 * S, false);
        assert_eq!(s.next(), t0 + 7 * S);
    }
}
