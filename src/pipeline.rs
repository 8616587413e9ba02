//! The pipeline worker: applies signals to incidents, routes the updates, and claims the first
//! deliveries for this replica's dispatchers, in one transaction, whenever signals arrive or a
//! timer is due (the incidents' own, or a desk's escalation step: `route::escalation`); then
//! hands those deliveries over in memory and wakes the dispatchers.
//!
//! One transaction for the three is what keeps a desk's message to two synced commits before it
//! leaves (the signal's, at ingest, then this one); to one, when the ingest writer hands the
//! signals over ([`Batch`]) and the step stores them first. What is durable when is in
//! ARCHITECTURE.md.
//! An update for more than `route::PART` addresses on one channel leaves that many per channel
//! in this transaction and the rest in the steps right after, that many each, so that the first
//! messages leave while the rest is written and no step holds the writer long.
//! After a failed step the next one runs the engine and the router in transactions of their own,
//! so that a fault in one does not hold the other back.
//!
//! Only the leading replica runs it (see `cluster`). Wake-ups are in-process [`Notify`]s, and
//! `NOTIFY` from other replicas on PostgreSQL; the poll interval is only the safety net.

use std::sync::Arc;
use std::time::Duration;

use jiff::Timestamp;
use tokio_util::sync::CancellationToken;

use crate::cluster::Leadership;
use crate::incident::{Engine, StepReport};
use crate::ingest::{Batch, FromIntake};
use crate::outbox::Handover;
use crate::route::escalation::EscalationReport;
use crate::route::{RouteReport, Router};
use crate::store::{Store, StoreError, Topic};
use crate::wake::Wakers;

/// Under load, a step that found this many signals waits a moment before the next one, so that
/// the next step takes a larger batch in the same few statements.
const BUSY_SIGNALS: usize = 8;
const BUSY_PAUSE: Duration = Duration::from_millis(5);

pub struct Pipeline {
    pub engine: Engine,
    pub router: Router,
    pub wake: Wakers,
    pub poll_interval: Duration,
    pub leadership: Leadership,
    pub store: Arc<dyn Store>,
    /// Where the deliveries claimed in the step go.
    pub handover: Handover,
    /// Signals the ingest writer hands over, to be stored in the step that applies them.
    pub intake: Option<FromIntake>,
}

/// What one [`Pipeline::step`] did.
#[derive(Debug, Default)]
pub struct Stepped {
    pub engine: StepReport,
    /// `None` when the router did not run.
    pub routed: Option<RouteReport>,
    /// The escalation steps that were due.
    pub escalated: EscalationReport,
    /// Deliveries claimed for this replica's dispatchers.
    pub claimed: usize,
}

impl Pipeline {
    pub async fn run(mut self, shutdown: CancellationToken) {
        let mut intake = self.intake.take();
        // Signals handed over and not yet stepped; dropped unanswered, they go back to the
        // writer, which stores them itself.
        let mut batch: Option<Batch> = None;
        let mut failures: u32 = 0;
        // Route once at start: updates written just before a crash are still waiting.
        let mut route = true;
        let mut last_safety_net = tokio::time::Instant::now();
        let mut leadership = self.leadership.clone();
        loop {
            if !leadership.is_leader() {
                // Whoever leads meanwhile may route what this replica had in parts.
                self.router.forget_parts();
                drop(batch.take());
                if let Some(intake) = &intake {
                    intake.waiting(false);
                }
                tokio::select! {
                    _ = shutdown.cancelled() => break,
                    _ = leadership.wait() => {}
                    handed = next_batch(&mut intake) => {
                        // Not leading: the writer stores it.
                        if handed.is_none() {
                            intake = None;
                        }
                    }
                }
                // A new leader starts from whatever the last one left.
                route = true;
                continue;
            }
            // A batch handed over while the last step ran goes in this one.
            if batch.is_none()
                && let Some(waiting) = intake.as_mut()
            {
                batch = waiting.try_next();
            }
            let now = Timestamp::now();
            route |= self.wake.take_route();
            // The poll interval doubles as a safety net for updates nobody announced.
            if last_safety_net.elapsed() >= self.poll_interval {
                route = true;
                last_safety_net = tokio::time::Instant::now();
            }
            let mut more = false;
            let mut busy = false;
            let mut next_eval = None;
            let ok = match self
                .step_or_steps(now, route, failures > 0, batch.take())
                .await
            {
                Ok(stepped) => {
                    let report = &stepped.engine;
                    more |= report.more;
                    busy = report.signals >= BUSY_SIGNALS;
                    // An escalation step due sooner than the engine's timers wakes the step.
                    next_eval = match (report.next_eval, stepped.escalated.next_due) {
                        (Some(a), Some(b)) => Some(a.min(b)),
                        (a, b) => a.or(b),
                    };
                    more |= stepped.escalated.more;
                    if stepped.escalated.deliveries > 0 {
                        self.wake.dispatch.ring_desks();
                        self.store.announce(Topic::Deliveries).await;
                    }
                    if report.signals > 0 || report.updates > 0 {
                        tracing::debug!(
                            signals = report.signals,
                            updates = report.updates,
                            "engine step"
                        );
                    }
                    // The router ran whenever the engine wrote an update; a full batch, or an
                    // update left in parts, asks for another round at once.
                    route = stepped.routed.as_ref().is_some_and(|r| r.more);
                    if let Some(routed) = &stepped.routed {
                        more |= routed.more;
                        if routed.deliveries > 0 {
                            tracing::debug!(
                                updates = routed.updates,
                                deliveries = routed.deliveries,
                                claimed = stepped.claimed,
                                "routed"
                            );
                        }
                        if routed.published {
                            self.wake.dispatch.ring();
                        } else if routed.deliveries > 0 {
                            self.wake.dispatch.ring_desks();
                        }
                        if routed.deliveries > 0 || routed.published {
                            // The rest are claimed by whichever replica is free first.
                            self.store.announce(Topic::Deliveries).await;
                        }
                    }
                    true
                }
                Err(e) => {
                    tracing::warn!(error = %e, "pipeline step failed; retrying");
                    route = true;
                    false
                }
            };
            failures = if ok { 0 } else { failures + 1 };
            if more && ok {
                continue;
            }
            // Idle: subscribers changed since the router last read them are read now, beside the
            // pipeline, rather than by the next alert's step while it holds the writer.
            if ok {
                self.router.keep_desks_warm();
            }
            let wait = if !ok {
                Duration::from_millis(100 * u64::from(failures.min(50)))
            } else {
                match next_eval {
                    Some(at) => Duration::try_from(at.duration_since(Timestamp::now()))
                        .unwrap_or(Duration::ZERO)
                        .min(self.poll_interval),
                    None => self.poll_interval,
                }
            };
            // Waiting for work: the writer may hand a batch over now (after a failure, the next
            // steps run apart and would hand it back).
            if let Some(intake) = &intake {
                intake.waiting(ok);
            }
            tokio::select! {
                _ = shutdown.cancelled() => break,
                handed = next_batch(&mut intake) => match handed {
                    Some(handed) => batch = Some(handed),
                    None => intake = None,
                },
                _ = self.wake.pipeline.notified() => {
                    if busy {
                        if let Some(intake) = &intake {
                            intake.waiting(false);
                        }
                        tokio::time::sleep(BUSY_PAUSE).await;
                    }
                }
                _ = tokio::time::sleep(wait) => {}
            }
            if let Some(intake) = &intake {
                intake.waiting(false);
            }
        }
    }

    /// One step at `now`, in one transaction: the signals handed over in `batch` are stored; the
    /// engine applies what signals wait and evaluates the incidents that are due; the router
    /// routes what is unrouted (a large update, a part), when `route` is set or the engine wrote
    /// an update; and the first deliveries of every channel that got some are claimed for this
    /// replica's dispatchers. Once committed, the batch is answered with its signals' ids and
    /// those deliveries go to the dispatchers. A step that fails answers the batch with the
    /// store's unavailability, so that the writer does not wait for it a second time, or else
    /// drops it unanswered for the writer to store.
    pub async fn step(
        &self,
        now: Timestamp,
        route: bool,
        batch: Option<Batch>,
    ) -> Result<Stepped, StoreError> {
        let mut batch = batch;
        let stepped = self.step_storing(now, route, &mut batch).await;
        if let (Err(e), Some(batch)) = (&stepped, batch)
            && e.is_unavailable()
        {
            batch.unavailable(e.to_string());
        }
        stepped
    }

    /// [`Pipeline::step`], storing the batch's signals first and answering it once committed.
    async fn step_storing(
        &self,
        now: Timestamp,
        route: bool,
        batch: &mut Option<Batch>,
    ) -> Result<Stepped, StoreError> {
        let started = std::time::Instant::now();
        let mut tx = self.store.begin().await?;
        let begun = started.elapsed();
        let stored = match batch {
            Some(batch) => tx.insert_signals(batch.signals()).await?,
            None => Vec::new(),
        };
        let stored_by = started.elapsed();
        let mut engine = self.engine.step_in(tx.as_mut(), now).await?;
        let applied = started.elapsed();
        let written = std::mem::take(&mut engine.written);
        let mut routed = if route || engine.updates > 0 {
            Some(self.router.step_in(tx.as_mut(), now, written).await?)
        } else {
            None
        };
        let escalated = self.router.escalate_in(tx.as_mut(), now).await?;
        let routed_at = started.elapsed();
        // The lease runs from the claim, not from the start of the step.
        let claimed_at = Timestamp::now();
        let mut claimed = Vec::new();
        let channels: std::collections::BTreeSet<_> = routed
            .iter()
            .flat_map(|r| r.channels.iter().copied())
            .chain(escalated.channels.iter().copied())
            .collect();
        for channel in channels {
            if let Some((limit, lease_until)) = self.handover.wants(channel, claimed_at) {
                let owner = self.handover.owner();
                let deliveries = tx
                    .claim_deliveries(channel, limit, claimed_at, lease_until, owner)
                    .await?;
                claimed.push((channel, deliveries));
            }
        }
        let claimed_by = started.elapsed();
        if let Err(e) = tx.commit().await {
            // The commit may have happened all the same: the writer must not store them again.
            if let Some(batch) = batch.take() {
                batch.unavailable(e.to_string());
            }
            return Err(e);
        }
        // Answered first: once committed, the signals must not be stored again.
        if let Some(batch) = batch.take() {
            batch.stored(stored);
        }
        if engine.signals > 0 || routed.is_some() {
            tracing::trace!(
                begin_us = begun.as_micros(),
                store_us = (stored_by - begun).as_micros(),
                engine_us = (applied - stored_by).as_micros(),
                route_us = (routed_at - applied).as_micros(),
                claim_us = (claimed_by - routed_at).as_micros(),
                commit_us = (started.elapsed() - claimed_by).as_micros(),
                "pipeline step timed"
            );
        }
        self.engine.committed(&engine);
        if let Some(routed) = &mut routed {
            self.router.committed(routed);
        }
        escalated.committed();
        let count = claimed.iter().map(|(_, d)| d.len()).sum();
        let messages = routed.as_ref().map_or(&[][..], |r| &r.messages[..]);
        self.handover.give(claimed, claimed_at, messages);
        Ok(Stepped {
            engine,
            routed,
            escalated,
            claimed: count,
        })
    }

    /// [`Pipeline::step`], or after a failure the engine and the router in transactions of their
    /// own (the dispatchers then claim for themselves), the batch left to the writer.
    async fn step_or_steps(
        &self,
        now: Timestamp,
        route: bool,
        apart: bool,
        batch: Option<Batch>,
    ) -> Result<Stepped, StoreError> {
        if !apart {
            return self.step(now, route, batch).await;
        }
        drop(batch);
        let engine = self.engine.step(now).await?;
        let routed = if route || engine.updates > 0 {
            Some(self.router.step(now).await?)
        } else {
            None
        };
        let escalated = self.router.escalate(now).await?;
        Ok(Stepped {
            engine,
            routed,
            escalated,
            claimed: 0,
        })
    }
}

/// The next batch the ingest writer hands over; `None` once it has stopped for good. Without a
/// writer, never.
async fn next_batch(intake: &mut Option<FromIntake>) -> Option<Batch> {
    match intake {
        Some(intake) => intake.next().await,
        None => std::future::pending().await,
    }
}
