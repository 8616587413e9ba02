//! Retention: deletes processed signals and finished deliveries older than `store.retention`,
//! soon after start and then every hour, in its own task so that the pipeline never waits for
//! it. Incidents, their updates and the messages sent are kept.

use std::sync::Arc;
use std::time::Duration;

use jiff::Timestamp;
use tokio_util::sync::CancellationToken;

use crate::cluster::Leadership;
use crate::store::Store;

const FIRST_RUN_AFTER: Duration = Duration::from_secs(30);
const EVERY: Duration = Duration::from_secs(3600);

/// Prunes while this replica leads (one replica prunes, not all of them).
pub async fn run(
    store: Arc<dyn Store>,
    keep: Duration,
    leadership: Leadership,
    shutdown: CancellationToken,
) {
    if keep.is_zero() {
        return;
    }
    let mut wait = FIRST_RUN_AFTER;
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(wait) => {}
        }
        wait = EVERY;
        if !leadership.is_leader() {
            continue;
        }
        let before = jiff::SignedDuration::try_from(keep)
            .ok()
            .and_then(|keep| Timestamp::now().checked_sub(keep).ok());
        let Some(before) = before else { continue };
        match store.prune(before).await {
            Ok(r) if r.signals > 0 || r.deliveries > 0 => {
                tracing::info!(signals = r.signals, deliveries = r.deliveries, %before, "pruned old history")
            }
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "cannot prune old history; will try again"),
        }
    }
}
