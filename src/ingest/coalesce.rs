//! Re-sends that change nothing cost no write. Monitors repeat every firing alert (Prometheus to
//! Alertmanager every minute, Alertmanager to its receivers every group interval), and in a storm
//! most requests say again what the store already holds. A firing signal is *coalesced* when the
//! engine has applied everything stored for its fingerprint, and the last of it was this same
//! content (severity, labels, annotations, summary, link, component), with the alert still
//! firing in an open incident: applying it would only move the alert's last-seen time. It is
//! answered at once, with the id of the stored signal it repeats; its time is kept in memory and
//! written for all such alerts together, at most a second later ([`Coalescer::take_seen`]), and
//! stays in memory until the write is done ([`Coalescer::written`]).
//!
//! What a `202` promises is unchanged: every change to an alert's state is durable before the
//! answer. A coalesced signal leaves no row of its own in `signals` (it is counted in
//! `banditore_signals_coalesced_total`), and a crash can lose up to a second of last-seen times.
//!
//! The engine tells the coalescer what it applied ([`Coalescer::applied`]), after its commit;
//! ingest tells it what it queued and what it stored. Both are known to run in the same process
//! only on SQLite, whose lock file admits one process. On PostgreSQL none coalesces, even with
//! `store.replicas = 1`: during a rolling restart two processes share the store for a while, and
//! the one that stopped leading would answer re-sends from what it knew before the other
//! applied a change. An operator's update forgets everything
//! known ([`Coalescer::forget_all`]), before and after its commit; an engine step that began
//! before it cannot make an alert known again.
//!
//! Alerts that expire (Prometheus's, see [`Signal::lease`]) are kept firing by their re-sends:
//! the store holds how long each lasts after it was last seen, so a re-send that moves its end
//! time forward by as much as time went by changes nothing but the last-seen time, and is
//! coalesced like any other; within [`same_lease`]'s slack, the store's end may be a little
//! earlier than a re-send asked. One that asks for a lease beyond it is stored and applied.
//! Before the engine expires an alert it asks [`Coalescer::expire`] whether a re-send saw it
//! after the store's last-seen time, not written yet: then the alert lives on from that time.

use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::sync::{Arc, Mutex};

use jiff::{SignedDuration, Timestamp};

use crate::domain::{Signal, SignalStatus};

/// How far a re-send's lease may differ from the stored one and still be the same: Prometheus
/// states its end time from the evaluation, sent a moment before it is received.
const LEASE_SLACK: SignedDuration = SignedDuration::from_secs(2);

/// Whether a re-send asking for a lease of `sent` changes nothing against a stored `stored`:
/// both absent, or within [`LEASE_SLACK`] (or a twentieth of the stored lease, if more).
pub fn same_lease(stored: Option<SignedDuration>, sent: Option<SignedDuration>) -> bool {
    match (stored, sent) {
        (None, None) => true,
        (Some(a), Some(b)) => (a - b).abs() <= LEASE_SLACK.max(a / 20),
        _ => false,
    }
}

/// What the engine last applied to a firing alert.
#[derive(Debug, Clone, Copy)]
struct Known {
    digest: u64,
    /// The last signal applied for the fingerprint.
    through: i64,
    /// How long the alert fires after it was last seen, as the store holds it.
    lease: Option<SignedDuration>,
}

#[derive(Default)]
struct State {
    /// Firing alerts, by fingerprint, as the engine last left them.
    known: HashMap<String, Known>,
    /// The last signal stored for each fingerprint, while it may not have been applied yet.
    stored: HashMap<String, i64>,
    /// Signals queued and not yet stored, by fingerprint.
    queued: HashMap<String, u32>,
    /// Alerts seen again by coalesced signals, and when last.
    seen: HashMap<String, Timestamp>,
    /// Counts [`Coalescer::forget_all`]: what a step that began before one applied is not
    /// known as firing.
    epoch: u64,
}

/// See the module's documentation. Cheap to clone: one shared state.
#[derive(Clone, Default)]
pub struct Coalescer(Arc<Mutex<State>>);

/// The content of a firing signal that, unchanged, makes a re-send change nothing.
pub fn digest(s: &Signal) -> u64 {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    s.source.as_str().hash(&mut h);
    s.severity.hash(&mut h);
    s.labels.hash(&mut h);
    s.annotations.hash(&mut h);
    s.summary.hash(&mut h);
    s.url.hash(&mut h);
    s.component.hash(&mut h);
    s.service.hash(&mut h);
    h.finish()
}

impl Coalescer {
    /// Splits `signals` (each with when it was received) into those already known, each with the
    /// id of the stored signal it repeats, and those to store, which are counted as queued until
    /// [`Coalescer::stored`] or [`Coalescer::not_stored`] is called with them.
    pub fn sort(&self, signals: &[(Timestamp, Signal)]) -> Vec<Option<i64>> {
        let Ok(mut state) = self.0.lock() else {
            return vec![None; signals.len()];
        };
        let mut out = Vec::with_capacity(signals.len());
        for (now, s) in signals {
            let fp = &s.fingerprint;
            let repeat = match (s.status, state.known.get(fp)) {
                (SignalStatus::Firing, Some(known))
                    if known.digest == digest(s)
                        && same_lease(known.lease, s.lease(*now))
                        && !state.queued.contains_key(fp)
                        && state.stored.get(fp).is_none_or(|id| *id <= known.through) =>
                {
                    Some(known.through)
                }
                _ => None,
            };
            match repeat {
                Some(_) => {
                    let at = state.seen.entry(fp.clone()).or_insert(*now);
                    *at = (*at).max(*now);
                }
                // Whatever follows waits for this one to be stored and applied.
                None => *state.queued.entry(fp.clone()).or_default() += 1,
            }
            out.push(repeat);
        }
        out
    }

    /// The signals [`Coalescer::sort`] queued are stored, with these ids.
    pub fn stored(&self, signals: &[(Timestamp, Signal)], ids: &[i64]) {
        let Ok(mut state) = self.0.lock() else {
            return;
        };
        for ((_, s), id) in signals.iter().zip(ids) {
            let last = state.stored.entry(s.fingerprint.clone()).or_insert(*id);
            *last = (*last).max(*id);
            unqueue(&mut state, &s.fingerprint);
        }
    }

    /// The signals [`Coalescer::sort`] queued, by fingerprint, were not stored (the store
    /// failed, or the request went before it reached the writer).
    pub fn not_stored(&self, fingerprints: &[String]) {
        if let Ok(mut state) = self.0.lock() {
            for fp in fingerprints {
                unqueue(&mut state, fp);
            }
        }
    }

    /// The last-seen times [`Coalescer::take_seen`] gave are written, as `at`: those no later
    /// than it are done with. Until then they stay, for [`Coalescer::expire`] to see.
    pub fn written(&self, fingerprints: &[String], at: Timestamp) {
        if let Ok(mut state) = self.0.lock() {
            for fp in fingerprints {
                if state.seen.get(fp).is_some_and(|seen| *seen <= at) {
                    state.seen.remove(fp);
                }
            }
        }
    }

    /// What [`Coalescer::applied`] needs to be given by a step that begins now.
    pub fn epoch(&self) -> u64 {
        self.0.lock().map(|s| s.epoch).unwrap_or(u64::MAX)
    }

    /// The engine committed a step, begun at `epoch`, that applied signals up to `through` for
    /// `fingerprint`, the last of them firing with `digest` and its alert firing (`Some`), or
    /// not (`None`), with `lease` stored for the alert. A step begun before an operator's update
    /// says nothing of what fires.
    pub fn applied(
        &self,
        epoch: u64,
        fingerprint: &str,
        through: i64,
        digest: Option<u64>,
        lease: Option<SignedDuration>,
    ) {
        let Ok(mut state) = self.0.lock() else {
            return;
        };
        match digest.filter(|_| epoch == state.epoch) {
            Some(digest) => {
                state.known.insert(
                    fingerprint.to_owned(),
                    Known {
                        digest,
                        through,
                        lease,
                    },
                );
            }
            None => {
                state.known.remove(fingerprint);
            }
        }
        // Nothing stored after it: the fingerprint needs no entry until the next one.
        if state
            .stored
            .get(fingerprint)
            .is_some_and(|id| *id <= through)
        {
            state.stored.remove(fingerprint);
        }
    }

    /// The engine is about to resolve the alert of `fingerprint`, last seen at `stored` as the
    /// store holds it, because it was not sent again in time. A coalesced re-send saw it later,
    /// its time not written yet: that time is returned and the alert stays known. Otherwise it
    /// is forgotten, so that a re-send from now on is stored and applied. One lock for both,
    /// so that no re-send falls between the look and the forgetting.
    pub fn expire(&self, fingerprint: &str, stored: Timestamp) -> Option<Timestamp> {
        let mut state = self.0.lock().ok()?;
        match state.seen.get(fingerprint) {
            Some(seen) if *seen > stored => Some(*seen),
            _ => {
                state.known.remove(fingerprint);
                None
            }
        }
    }

    /// The engine resolved the alert of `fingerprint` because it was not sent again in time:
    /// the next firing signal for it must be stored and applied.
    pub fn expired(&self, fingerprint: &str) {
        if let Ok(mut state) = self.0.lock() {
            state.known.remove(fingerprint);
        }
    }

    /// An operator changed incidents by hand: nothing is known any more until the engine
    /// applies signals again.
    pub fn forget_all(&self) {
        if let Ok(mut state) = self.0.lock() {
            state.known.clear();
            state.epoch += 1;
        }
    }

    /// The alerts seen again and not yet written, and the latest time among them; they stay
    /// until [`Coalescer::written`] says they are in the store.
    pub fn take_seen(&self) -> Option<(Vec<String>, Timestamp)> {
        let state = self.0.lock().ok()?;
        let latest = state.seen.values().max().copied()?;
        let fingerprints = state.seen.keys().cloned().collect();
        Some((fingerprints, latest))
    }

    /// Fingerprints known as firing (for tests and figures).
    pub fn known(&self) -> usize {
        self.0.lock().map(|s| s.known.len()).unwrap_or(0)
    }
}

fn unqueue(state: &mut State, fingerprint: &str) {
    if let Some(n) = state.queued.get_mut(fingerprint) {
        *n -= 1;
        if *n == 0 {
            state.queued.remove(fingerprint);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::signal::{NormalizeRules, RawSignal, Source};
    use crate::domain::{Labels, Severity};

    fn signal(name: &str, status: SignalStatus, summary: &str) -> Signal {
        let mut labels = Labels::new();
        labels.insert("alertname".into(), name.into());
        labels.insert("service".into(), "cup".into());
        RawSignal {
            status: Some(status),
            labels,
            summary: Some(summary.into()),
            ..RawSignal::default()
        }
        .normalize(
            Source::Alertmanager,
            &NormalizeRules {
                default_severity: Severity::Major,
            },
            Timestamp::UNIX_EPOCH,
        )
    }

    fn at(s: &Signal) -> Vec<(Timestamp, Signal)> {
        vec![(Timestamp::UNIX_EPOCH, s.clone())]
    }

    fn store(c: &Coalescer, s: &Signal, id: i64) {
        assert_eq!(c.sort(&at(s)), [None]);
        c.stored(&at(s), &[id]);
    }

    #[test]
    fn a_prometheus_re_send_is_coalesced_while_it_asks_for_the_stored_lease() {
        let c = Coalescer::default();
        let mut firing = signal("CupDown", SignalStatus::Firing, "giù");
        firing.source = Source::Prometheus;
        let received = |s: i64| Timestamp::from_second(s).unwrap();
        let ends = |s: i64| Some(Timestamp::from_second(s).unwrap());
        // Evaluated every 15 s, re-sent every minute: endsAt is 4 minutes ahead.
        firing.ends_at = ends(240);
        let lease = firing.lease(received(0));
        assert_eq!(lease, Some(SignedDuration::from_secs(240)));
        c.applied(
            c.epoch(),
            &firing.fingerprint,
            1,
            Some(digest(&firing)),
            lease,
        );
        // A minute later, endsAt moved a minute on (and a moment early): nothing to write.
        firing.ends_at = ends(299);
        assert_eq!(c.sort(&[(received(60), firing.clone())]), [Some(1)]);
        // The evaluation interval grew: the alert must last longer, so it is stored.
        firing.ends_at = ends(120 + 600);
        assert_eq!(c.sort(&[(received(120), firing.clone())]), [None]);
        c.not_stored(std::slice::from_ref(&firing.fingerprint));
        // Once the engine expired it, nothing is coalesced against it.
        firing.ends_at = ends(420);
        assert_eq!(c.sort(&[(received(180), firing.clone())]), [Some(1)]);
        c.expired(&firing.fingerprint);
        assert_eq!(c.sort(&[(received(181), firing.clone())]), [None]);
        assert!(same_lease(None, None));
        assert!(!same_lease(lease, None));
        assert!(!same_lease(None, lease));
    }

    #[test]
    fn only_a_repeat_of_what_the_engine_applied_last_is_coalesced() {
        let c = Coalescer::default();
        let firing = signal("CupDown", SignalStatus::Firing, "giù");
        // Nothing known: stored.
        store(&c, &firing, 1);
        // Stored but not applied: stored again.
        store(&c, &firing, 2);
        c.applied(
            c.epoch(),
            &firing.fingerprint,
            2,
            Some(digest(&firing)),
            None,
        );
        assert_eq!(c.sort(&at(&firing)), [Some(2)]);
        // Another summary, a resolution: stored.
        let changed = signal("CupDown", SignalStatus::Firing, "ancora giù");
        assert_eq!(c.sort(&at(&changed)), [None]);
        c.not_stored(std::slice::from_ref(&changed.fingerprint));
        let resolved = signal("CupDown", SignalStatus::Resolved, "giù");
        assert_eq!(resolved.fingerprint, firing.fingerprint);
        assert_eq!(c.sort(&at(&resolved)), [None]);
        c.stored(&at(&resolved), &[3]);
        // The firing re-send that follows the stored resolution is stored too, even before the
        // engine applies the resolution.
        assert_eq!(c.sort(&at(&firing)), [None]);
        c.stored(&at(&firing), &[4]);
        c.applied(c.epoch(), &firing.fingerprint, 3, None, None);
        assert_eq!(c.sort(&at(&firing)), [None], "4 is not applied yet");
        c.stored(&at(&firing), &[5]);
        c.applied(
            c.epoch(),
            &firing.fingerprint,
            5,
            Some(digest(&firing)),
            None,
        );
        assert_eq!(c.sort(&at(&firing)), [Some(5)]);
        // An operator's update: a step begun before it cannot make the alert known again.
        let before = c.epoch();
        c.forget_all();
        assert_eq!(c.sort(&at(&firing)), [None]);
        c.stored(&at(&firing), &[6]);
        c.applied(before, &firing.fingerprint, 6, Some(digest(&firing)), None);
        assert_eq!(c.sort(&at(&firing)), [None]);
    }

    #[test]
    fn a_repeat_queued_behind_a_change_waits_for_it() {
        let c = Coalescer::default();
        let firing = signal("CupDown", SignalStatus::Firing, "giù");
        store(&c, &firing, 1);
        c.applied(
            c.epoch(),
            &firing.fingerprint,
            1,
            Some(digest(&firing)),
            None,
        );
        // A change is queued, not stored yet: the old content that follows is not a repeat.
        let changed = signal("CupDown", SignalStatus::Firing, "ancora giù");
        assert_eq!(c.sort(&at(&changed)), [None]);
        assert_eq!(c.sort(&at(&firing)), [None]);
        let both = [at(&changed), at(&firing)].concat();
        c.stored(&both, &[2, 3]);
        // An engine step that began before them publishes what it applied: still not a repeat.
        c.applied(
            c.epoch(),
            &firing.fingerprint,
            1,
            Some(digest(&firing)),
            None,
        );
        assert_eq!(c.sort(&at(&firing)), [None]);
    }

    proptest::proptest! {
        /// Two firing signals count as repeats only when everything the engine compares is the
        /// same: whatever a monitor writes in the summary, a label or an annotation.
        #[test]
        fn only_identical_content_has_the_same_digest(
            a in crate::hostile::text(),
            b in crate::hostile::text(),
            key in crate::hostile::text(),
        ) {
            let with = |summary: &str, label: &str, annotation: &str| {
                let mut s = signal("CupDown", SignalStatus::Firing, summary);
                s.labels.insert(key.clone(), label.to_owned());
                s.annotations.insert("description".into(), annotation.to_owned());
                s
            };
            let base = with(&a, &a, &a);
            proptest::prop_assert_eq!(digest(&base), digest(&with(&a, &a, &a)));
            for other in [with(&b, &a, &a), with(&a, &b, &a), with(&a, &a, &b)] {
                let same = other.summary == base.summary
                    && other.labels == base.labels
                    && other.annotations == base.annotations;
                proptest::prop_assert_eq!(digest(&other) == digest(&base), same);
            }
        }
    }

    #[test]
    fn seen_times_are_taken_once_with_the_latest() {
        let c = Coalescer::default();
        let firing = signal("CupDown", SignalStatus::Firing, "giù");
        store(&c, &firing, 1);
        c.applied(
            c.epoch(),
            &firing.fingerprint,
            1,
            Some(digest(&firing)),
            None,
        );
        let later = Timestamp::from_second(60).unwrap();
        assert_eq!(c.sort(&[(later, firing.clone())]), [Some(1)]);
        assert_eq!(c.sort(&at(&firing)), [Some(1)]);
        let (fps, at) = c.take_seen().unwrap();
        assert_eq!(fps, vec![firing.fingerprint.clone()]);
        assert_eq!(at, later);
        // Not written yet: still there, for the engine's expiry and the next round.
        assert_eq!(c.take_seen(), Some((fps.clone(), at)));
        c.written(&fps, at);
        assert!(c.take_seen().is_none());
    }

    #[test]
    fn an_alert_seen_by_a_re_send_not_yet_written_is_not_forgotten_by_its_expiry() {
        let c = Coalescer::default();
        let firing = signal("CupDown", SignalStatus::Firing, "giù");
        store(&c, &firing, 1);
        let known = |c: &Coalescer| {
            c.applied(
                c.epoch(),
                &firing.fingerprint,
                1,
                Some(digest(&firing)),
                None,
            )
        };
        known(&c);
        let stored = Timestamp::UNIX_EPOCH;
        let later = Timestamp::from_second(60).unwrap();
        assert_eq!(c.sort(&[(later, firing.clone())]), [Some(1)]);
        // Taken for writing, not yet written: the engine still sees it.
        let (fps, taken) = c.take_seen().unwrap();
        assert_eq!(c.expire(&firing.fingerprint, stored), Some(later));
        assert_eq!(c.known(), 1);
        c.written(&fps, taken);
        // Written: the store's time is the re-send's, and the alert is forgotten.
        assert_eq!(c.expire(&firing.fingerprint, later), None);
        assert_eq!(c.known(), 0);
        assert_eq!(c.sort(&at(&firing)), [None]);
    }
}
