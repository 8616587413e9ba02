//! The pipeline worker: runs the incident engine, then the router, whenever signals arrive or a
//! timer is due, and wakes the dispatchers when deliveries were written.
//!
//! Wake-ups are in-process [`Notify`]s; the poll interval is only the safety net.

use std::sync::Arc;
use std::time::Duration;

use jiff::Timestamp;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::incident::Engine;
use crate::route::Router;

/// In-process wake-ups between stages.
#[derive(Clone, Default)]
pub struct Wakers {
    /// New signals or manual updates: run the engine and the router.
    pub pipeline: Arc<Notify>,
    /// New deliveries: run the dispatchers.
    pub dispatch: Arc<Notify>,
}

pub struct Pipeline {
    pub engine: Engine,
    pub router: Router,
    pub wake: Wakers,
    pub poll_interval: Duration,
}

impl Pipeline {
    pub async fn run(self, shutdown: CancellationToken) {
        let mut failures: u32 = 0;
        loop {
            let now = Timestamp::now();
            let mut more = false;
            let mut next_eval = None;
            let mut ok = true;
            match self.engine.step(now).await {
                Ok(report) => {
                    more |= report.more;
                    next_eval = report.next_eval;
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
            match self.router.step(now).await {
                Ok(report) => {
                    more |= report.more;
                    if report.deliveries > 0 {
                        tracing::debug!(
                            updates = report.updates,
                            deliveries = report.deliveries,
                            "routed"
                        );
                        self.wake.dispatch.notify_one();
                    }
                }
                Err(e) => {
                    ok = false;
                    tracing::warn!(error = %e, "router step failed; retrying");
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
                _ = self.wake.pipeline.notified() => {}
                _ = tokio::time::sleep(wait) => {}
            }
        }
    }
}
