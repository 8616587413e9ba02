//! The dispatcher's hold on what it claimed: the deliveries it holds until their outcome is
//! written, when it last made sure of their leases, and the renewal (every quarter of a lease)
//! that keeps anyone else from taking them over while this worker lives, beside the look for
//! other workers' expired leases that gives a dead replica's claims to the living.
//!
//! A claim's lease is short (seconds), so a send starts only while this worker's hold is known
//! good: claimed, or every lease it holds renewed, less than half a lease ago. Time is a
//! parameter: [`Dispatcher::keep_leases`] is called with `now` by the loop and by tests alike.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use jiff::Timestamp;

use super::{Dispatcher, elapsed, later_by};
use crate::store::{Outcome, Topic};

/// Deliveries this worker holds a lease on and has not yet recorded an outcome for (queued, in
/// flight, or sent with the outcome not yet written), each with the number of its claims not yet
/// recorded. A delivery handed back (`Released`, due again at once) may be claimed again between
/// the commit of that outcome and its removal here: the new claim must stay held, or its lease
/// would go unrenewed and another replica would take it over and send it a second time.
#[derive(Clone, Default)]
pub(super) struct Held(Arc<Mutex<HashMap<i64, u32>>>);

impl Held {
    pub(super) fn add(&self, ids: impl IntoIterator<Item = i64>) {
        if let Ok(mut held) = self.0.lock() {
            for id in ids {
                *held.entry(id).or_default() += 1;
            }
        }
    }

    pub(super) fn remove(&self, outcomes: &[Outcome]) {
        if let Ok(mut held) = self.0.lock() {
            for o in outcomes {
                if let Some(claims) = held.get_mut(&o.delivery) {
                    *claims -= 1;
                    if *claims == 0 {
                        held.remove(&o.delivery);
                    }
                }
            }
        }
    }

    /// Whether these outcomes are all this worker holds: no other send is in flight or queued,
    /// so no other outcome is on its way.
    pub(super) fn only(&self, outcomes: &[Outcome]) -> bool {
        self.0.lock().is_ok_and(|held| {
            held.len() <= outcomes.len()
                && held
                    .keys()
                    .all(|id| outcomes.iter().any(|o| o.delivery == *id))
        })
    }

    pub(super) fn ids(&self) -> Vec<i64> {
        self.0
            .lock()
            .map(|held| held.keys().copied().collect())
            .unwrap_or_default()
    }
}

/// When this worker last made sure of its leases. The clock starts at the worker's first step
/// or look at its leases, as at a worker's start: nothing to renew or reclaim yet.
#[derive(Default)]
pub(super) struct Leases {
    /// The last renewal that succeeded (or found nothing to renew), as of when it started.
    renewed: Option<Timestamp>,
    /// The last look for other workers' expired leases.
    reclaimed: Option<Timestamp>,
}

impl Leases {
    pub(super) fn every(lease: Duration) -> Duration {
        lease / 4
    }

    /// Starts the clock at `now`, unless it runs already.
    pub(super) fn start(&mut self, now: Timestamp) {
        self.renewed.get_or_insert(now);
        self.reclaimed.get_or_insert(now);
    }

    /// Since when this worker's hold on a delivery claimed at `claimed_at` is known good.
    pub(super) fn held_since(&self, claimed_at: Timestamp) -> Timestamp {
        self.renewed.map_or(claimed_at, |r| r.max(claimed_at))
    }

    /// Deliveries claimed elsewhere at `claimed_at` (by the pipeline) join what this worker
    /// holds: a renewal made since then did not cover them, so none counts until the next.
    pub(super) fn joined(&mut self, claimed_at: Timestamp) {
        if let Some(r) = self.renewed.as_mut() {
            *r = (*r).min(claimed_at);
        }
    }

    /// Whether the look last made at `last` is due again at `now`: a quarter of a lease later,
    /// or at once if the clock went back.
    fn due(last: Option<Timestamp>, now: Timestamp, every: Duration) -> bool {
        last.is_none_or(|t| elapsed(t, now).is_none_or(|d| d >= every))
    }
}

/// Whether a renewal of the leases `asked` for kept every one this worker still holds
/// (`held_now`, read after it): a delivery whose outcome was recorded while the renewal ran
/// (a fan-out records outcomes all the time) has left the hold and needs no lease. Counting it
/// as lost made every renewal look short during a fan-out, so that the dispatcher renewed on
/// every turn and handed its queue back. Nothing joins the hold while a renewal runs (claims
/// are added by the dispatcher itself, which is the one waiting on the renewal), so every
/// delivery that may start is among those asked for.
pub(super) fn all_held_renewed(asked: &[i64], renewed: &[i64], held_now: &[i64]) -> bool {
    let renewed: HashSet<i64> = renewed.iter().copied().collect();
    let held: HashSet<i64> = held_now.iter().copied().collect();
    asked
        .iter()
        .all(|id| renewed.contains(id) || !held.contains(id))
}

/// What [`Dispatcher::keep_leases`] did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LeaseWork {
    /// Leases renewed (every delivery still held, when the renewal succeeded).
    pub renewed: u64,
    /// Other workers' expired deliveries made claimable again.
    pub reclaimed: u64,
}

impl Dispatcher {
    /// Renews the leases this worker holds, and takes back the deliveries of workers that
    /// stopped, when a quarter of a lease has gone by since the last time: a dead replica's
    /// claims are sent by another within about a lease and a quarter. Failures are logged and
    /// tried again at the next call.
    pub async fn keep_leases(&mut self, now: Timestamp) -> LeaseWork {
        let kind = self.channel.kind();
        let every = Leases::every(self.config.lease);
        let mut work = LeaseWork::default();
        self.leases.start(now);
        // What the pipeline handed over is renewed with the rest (the clock started first, so
        // that their claim pulls it back).
        self.take_handed_over();
        if Leases::due(self.leases.renewed, now, every) {
            let ids = self.held.ids();
            if ids.is_empty() {
                self.leases.renewed = Some(now);
            } else {
                match self
                    .store
                    .renew_leases(&self.owner, &ids, later_by(now, self.config.lease))
                    .await
                {
                    // Every lease still held renewed: the queue may go on starting. One held
                    // and not renewed (taken over while this worker stalled, or, rarely, an
                    // outcome committed whose removal from the hold is still to come) and
                    // queued deliveries start only within half a lease of their own claim.
                    Ok(renewed) => {
                        work.renewed = renewed.len() as u64;
                        if all_held_renewed(&ids, &renewed, &self.held.ids()) {
                            self.leases.renewed = Some(now);
                        }
                    }
                    Err(e) => {
                        tracing::warn!(channel = %kind, error = %e, held = ids.len(), "cannot renew leases")
                    }
                }
            }
        }
        if Leases::due(self.leases.reclaimed, now, every) {
            self.leases.reclaimed = Some(now);
            match self.store.reclaim_expired_leases(now, &self.owner).await {
                Ok(0) => {}
                Ok(n) => {
                    tracing::warn!(channel = %kind, deliveries = n, "reclaimed deliveries whose worker stopped");
                    self.store.announce(Topic::Deliveries).await;
                    work.reclaimed = n;
                }
                Err(e) => {
                    tracing::warn!(channel = %kind, error = %e, "cannot reclaim expired leases")
                }
            }
        }
        work
    }
}
