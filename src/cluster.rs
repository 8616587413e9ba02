//! Several replicas on one store: which one performs the singleton duties (the incident engine
//! and router, pruning), and how the others learn that there is work.
//!
//! Leadership is a time lease in the store, renewed every third of its length. A replica counts
//! itself leader only until two thirds of the lease after its last successful renewal, so it
//! stops before anyone else can start; if it dies, another takes over once the lease has run out,
//! and at once if it stepped down cleanly. On SQLite there is one process, which always leads.

use std::sync::Arc;
use std::time::Duration;

use jiff::Timestamp;
use tokio::sync::{Notify, watch};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::store::{ClusterStore, Topic};

/// The duty the engine, the router and pruning share.
pub const PIPELINE: &str = "pipeline";

/// Whether this replica leads, as of now.
#[derive(Clone)]
pub struct Leadership {
    /// Leading until this instant; `None` when not leading.
    until: watch::Receiver<Option<Instant>>,
}

impl Leadership {
    pub fn is_leader(&self) -> bool {
        self.until
            .borrow()
            .is_some_and(|until| Instant::now() < until)
    }

    /// Returns once this replica no longer leads (at once if it does not): its lease ran out or
    /// was not renewed, or the campaign ended.
    pub async fn lost(&mut self) {
        loop {
            let until = *self.until.borrow();
            match until {
                Some(until) if Instant::now() < until => {
                    tokio::select! {
                        changed = self.until.changed() => {
                            if changed.is_err() {
                                return;
                            }
                        }
                        _ = tokio::time::sleep_until(until) => {}
                    }
                }
                _ => return,
            }
        }
    }

    /// Returns once this replica leads (at once if it does).
    pub async fn wait(&mut self) {
        loop {
            if self.is_leader() {
                return;
            }
            if self.until.changed().await.is_err() {
                // The campaign ended (shutdown): never leading again.
                std::future::pending::<()>().await;
            }
        }
    }
}

/// Campaigns for leadership until `shutdown`, then steps down.
pub fn campaign(
    store: Arc<dyn ClusterStore>,
    holder: String,
    lease: Duration,
    nudge: Arc<Notify>,
    shutdown: CancellationToken,
) -> (Leadership, tokio::task::JoinHandle<()>) {
    let (tx, rx) = watch::channel(None);
    let task = tokio::spawn(async move {
        let mut leading = false;
        loop {
            let started = Instant::now();
            let now = Timestamp::now();
            let until = jiff::SignedDuration::try_from(lease)
                .ok()
                .and_then(|d| now.checked_add(d).ok())
                .unwrap_or(now);
            let won = match store.lead(PIPELINE, &holder, now, until).await {
                Ok(won) => won,
                Err(e) => {
                    tracing::warn!(error = %e, "cannot renew the leadership lease");
                    false
                }
            };
            if won != leading {
                leading = won;
                if won {
                    tracing::info!(%holder, "leading: running the incident engine and router");
                } else {
                    tracing::warn!(%holder, "no longer leading");
                }
            }
            tx.send_replace(won.then(|| started + lease * 2 / 3));
            tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = tokio::time::sleep(lease / 3) => {}
                _ = nudge.notified(), if !leading => {}
            }
        }
        tx.send_replace(None);
        if leading {
            match store.resign(PIPELINE, &holder).await {
                Ok(()) => {
                    tracing::info!(%holder, "stepped down");
                    store.announce(Topic::Leader).await;
                }
                Err(e) => tracing::warn!(error = %e, "cannot step down; the lease will run out"),
            }
        }
    });
    (Leadership { until: rx }, task)
}
