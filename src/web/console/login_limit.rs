//! How many console logins may be tried, from where and for whom.
//!
//! An attempt is *reserved* before its password is checked, under one lock: it counts as a
//! failure from that moment, and only a successful login takes it back. So forty logins sent at
//! once get no more checks than forty sent one after another. Three counts, over a window:
//!
//! - per name and client address: a few failures, then that client waits for the window;
//! - per client address, whatever the names: a few more, then it waits;
//! - per name from anywhere: past a few failures the name is *slowed*, one try every so often,
//!   never locked, so that a stranger cannot lock the communications office out during an
//!   incident; a browser that logged in as that user before (a signed device cookie) is not
//!   slowed at all.
//!
//! `banditore user unlock NAME` sets the user's `unlocked_at`; failures before it no longer count
//! for that name. Time is a parameter, so the rules are tested without waiting.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::Duration;

use jiff::Timestamp;

/// Failures counted over this long.
pub const WINDOW: Duration = Duration::from_secs(15 * 60);
/// Failures allowed per (name, client address) in the window.
pub const PER_NAME_AND_CLIENT: usize = 5;
/// Failures allowed per client address, whatever the names, in the window.
pub const PER_CLIENT: usize = 20;
/// Failures per name, from anywhere, after which the name is slowed.
pub const NAME_SLOWED_AFTER: usize = 5;
/// A slowed name gets one try this often.
pub const NAME_SLOWED_EVERY: Duration = Duration::from_secs(30);

/// Who is trying.
#[derive(Debug, Clone)]
pub struct Attempt {
    /// The name as typed, lower-cased.
    pub name: String,
    pub client: String,
    /// The browser carries a device cookie of this user.
    pub known_device: bool,
    /// Failures of this name before this moment are forgiven.
    pub unlocked_at: Option<Timestamp>,
}

impl Attempt {
    fn keys(&self) -> [String; 3] {
        [
            format!("name+client:{}\0{}", self.name, self.client),
            format!("client:{}", self.client),
            format!("name:{}", self.name),
        ]
    }
}

/// A reserved attempt: a failure unless [`LoginLimits::succeeded`] takes it back.
#[derive(Debug)]
pub struct Reservation {
    keys: [String; 3],
    at: Timestamp,
}

#[derive(Default)]
pub struct LoginLimits {
    failures: Mutex<HashMap<String, VecDeque<Timestamp>>>,
}

impl LoginLimits {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, VecDeque<Timestamp>>> {
        // Lists of instants: a panic elsewhere cannot leave them inconsistent.
        self.failures.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Reserves an attempt, or says how long to wait before one.
    pub fn reserve(&self, attempt: &Attempt, now: Timestamp) -> Result<Reservation, Duration> {
        let keys = attempt.keys();
        let mut failures = self.lock();
        if failures.len() > 50_000 {
            failures.retain(|_, list| list.back().is_some_and(|t| age(now, *t) < WINDOW));
        }
        let counted = |failures: &mut HashMap<String, VecDeque<Timestamp>>,
                       key: &str,
                       forgiven: Option<Timestamp>|
         -> Vec<Timestamp> {
            let Some(list) = failures.get_mut(key) else {
                return Vec::new();
            };
            while list.front().is_some_and(|t| age(now, *t) >= WINDOW) {
                list.pop_front();
            }
            list.iter()
                .copied()
                .filter(|t| forgiven.is_none_or(|f| *t >= f))
                .collect()
        };
        let mut wait = Duration::ZERO;
        let pair = counted(&mut failures, &keys[0], attempt.unlocked_at);
        if pair.len() >= PER_NAME_AND_CLIENT {
            wait =
                wait.max(WINDOW.saturating_sub(age(now, pair[pair.len() - PER_NAME_AND_CLIENT])));
        }
        let client = counted(&mut failures, &keys[1], None);
        if client.len() >= PER_CLIENT {
            wait = wait.max(WINDOW.saturating_sub(age(now, client[client.len() - PER_CLIENT])));
        }
        if !attempt.known_device {
            let name = counted(&mut failures, &keys[2], attempt.unlocked_at);
            if name.len() >= NAME_SLOWED_AFTER
                && let Some(last) = name.last()
            {
                wait = wait.max(NAME_SLOWED_EVERY.saturating_sub(age(now, *last)));
            }
        }
        if !wait.is_zero() {
            return Err(wait.max(Duration::from_secs(1)));
        }
        for key in &keys {
            failures.entry(key.clone()).or_default().push_back(now);
        }
        Ok(Reservation { keys, at: now })
    }

    /// The password was right: the reserved attempt is no failure.
    pub fn succeeded(&self, reservation: Reservation) {
        let mut failures = self.lock();
        for key in &reservation.keys {
            if let Some(list) = failures.get_mut(key)
                && let Some(i) = list.iter().rposition(|t| *t == reservation.at)
            {
                list.remove(i);
            }
        }
    }
}

fn age(now: Timestamp, then: Timestamp) -> Duration {
    Duration::try_from(now.duration_since(then)).unwrap_or(Duration::ZERO)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: i64) -> Timestamp {
        Timestamp::from_second(1_900_000_000 + s).unwrap()
    }

    fn attempt(name: &str, client: &str) -> Attempt {
        Attempt {
            name: name.into(),
            client: client.into(),
            known_device: false,
            unlocked_at: None,
        }
    }

    #[test]
    fn attempts_at_once_get_no_more_checks_than_the_limit() {
        let limits = LoginLimits::default();
        let a = attempt("comunicazione", "198.51.100.7");
        // Forty at the same instant: reserved before any password is checked.
        let granted = (0..40).filter(|_| limits.reserve(&a, t(0)).is_ok()).count();
        assert_eq!(granted, PER_NAME_AND_CLIENT);
    }

    #[test]
    fn a_stranger_slows_a_name_down_but_cannot_lock_its_owner_out() {
        let limits = LoginLimits::default();
        // An attacker spreads guesses over many addresses.
        for i in 0..NAME_SLOWED_AFTER {
            let _ = limits.reserve(&attempt("comunicazione", &format!("203.0.113.{i}")), t(0));
        }
        // The name is slowed for everyone without the device cookie: one try each 30 s.
        let owner = attempt("comunicazione", "192.0.2.10");
        assert_eq!(
            limits.reserve(&owner, t(1)).err(),
            Some(Duration::from_secs(29))
        );
        let ok = limits.reserve(&owner, t(30)).unwrap();
        limits.succeeded(ok);
        // A browser that logged in before goes straight through.
        let known = Attempt {
            known_device: true,
            ..owner.clone()
        };
        assert!(limits.reserve(&known, t(31)).is_ok());
        // Unlocking forgives the name's failures.
        let unlocked = Attempt {
            unlocked_at: Some(t(40)),
            ..owner
        };
        assert!(limits.reserve(&unlocked, t(41)).is_ok());
    }

    #[test]
    fn one_client_is_limited_per_name_and_over_all_names() {
        let limits = LoginLimits::default();
        let a = attempt("mario", "198.51.100.7");
        for s in 0..PER_NAME_AND_CLIENT as i64 {
            limits.reserve(&a, t(s * 31)).unwrap();
        }
        let last = (PER_NAME_AND_CLIENT as i64 - 1) * 31;
        let wait = limits.reserve(&a, t(last + 31)).unwrap_err();
        assert!(wait > Duration::from_secs(10 * 60), "{wait:?}");
        // The window slides: once the first failure is old enough, one more try.
        assert!(limits.reserve(&a, t(15 * 60 + 1)).is_ok());
        // Many names from one client: stopped after PER_CLIENT failures in all.
        let spray = LoginLimits::default();
        let granted = (0..100)
            .filter(|i| {
                spray
                    .reserve(&attempt(&format!("user{i}"), "198.51.100.8"), t(*i))
                    .is_ok()
            })
            .count();
        assert_eq!(granted, PER_CLIENT);
    }

    #[test]
    fn a_success_takes_its_reservation_back() {
        let limits = LoginLimits::default();
        let a = attempt("mario", "198.51.100.7");
        for s in 0..20 {
            let r = limits.reserve(&a, t(s)).unwrap();
            limits.succeeded(r);
        }
        assert!(limits.reserve(&a, t(20)).is_ok());
    }
}
