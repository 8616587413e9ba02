//! The pipeline worker: runs the incident engine, then the router, whenever signals arrive or a
//! timer is due, and wakes the dispatchers when deliveries were written.
//!
//! Only the leading replica runs it (see `cluster`). Wake-ups are in-process [`Notify`]s, and
//! `NOTIFY` from other replicas on PostgreSQL; the poll interval is only the safety net.

use std::sync::Arc;
use std::time::Duration;

use jiff::Timestamp;
use tokio_util::sync::CancellationToken;

use crate::cluster::Leadership;
use crate::incident::Engine;
use crate::route::Router;
use crate::store::{Store, Topic};
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
}

impl Pipeline {
    pub async fn run(self, shutdown: CancellationToken) {
        let mut failures: u32 = 0;
        // Route once at start: updates written just before a crash are still waiting.
        let mut route = true;
        let mut last_safety_net = tokio::time::Instant::now();
        let mut leadership = self.leadership.clone();
        loop {
            if !leadership.is_leader() {
                tokio::select! {
                    _ = shutdown.cancelled() => break,
                    _ = leadership.wait() => {}
                }
                // A new leader starts from whatever the last one left.
                route = true;
                continue;
            }
            let now = Timestamp::now();
            let mut more = false;
            let mut busy = false;
            let mut next_eval = None;
            let mut ok = true;
            match self.engine.step(now).await {
                Ok(report) => {
                    more |= report.more;
                    busy = report.signals >= BUSY_SIGNALS;
                    next_eval = report.next_eval;
                    route |= report.updates > 0;
                    if report.signals > 0 || report.updates > 0 {
                        tracing::debug!(
                            signals = report.signals,
                            updates = report.updates,
                            "engine step"
                        );
                    }
                }
                Err(e) => {
                    ok = false;
                    tracing::warn!(error = %e, "incident engine step failed; retrying");
                }
            }
            route |= self.wake.take_route();
            // The poll interval doubles as a safety net for updates nobody announced.
            if last_safety_net.elapsed() >= self.poll_interval {
                route = true;
                last_safety_net = tokio::time::Instant::now();
            }
            if route {
                match self.router.step(now).await {
                    Ok(report) => {
                        route = report.more;
                        more |= report.more;
                        if report.deliveries > 0 {
                            tracing::debug!(
                                updates = report.updates,
                                deliveries = report.deliveries,
                                "routed"
                            );
                            self.wake.dispatch.ring();
                            self.store.announce(Topic::Deliveries).await;
                        }
                    }
                    Err(e) => {
                        ok = false;
                        tracing::warn!(error = %e, "router step failed; retrying");
                    }
                }
            }
            failures = if ok { 0 } else { failures + 1 };
            if more && ok {
                continue;
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
            tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = self.wake.pipeline.notified() => {
                    if busy {
                        tokio::time::sleep(BUSY_PAUSE).await;
                    }
                }
                _ = tokio::time::sleep(wait) => {}
            }
        }
    }
}
