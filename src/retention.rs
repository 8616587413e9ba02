//! Retention: deletes processed signals and finished deliveries older than `store.retention`,
//! soon after start and then every hour, in its own task so that the pipeline never waits for
//! it. Incidents, their updates and the messages sent are kept. Citizens' personal data goes on
//! its own clock: expired sign-ups, addresses unsubscribed for longer than
//! `status.subscribe.erase_after`, and Telegram sign-ups never bound; incidents' affected lists
//! `affected.retention` after their incident ends, with their deliveries.

use std::sync::Arc;
use std::time::Duration;

use jiff::Timestamp;
use tokio_util::sync::CancellationToken;

use crate::cluster::Leadership;
use crate::store::Store;

/// How long citizens' data is kept: see [`crate::settings::SubscribeSettings`].
#[derive(Debug, Clone, Copy)]
pub struct Citizens {
    /// After an incident with an affected list is resolved (`affected.retention`).
    pub affected_for: Duration,
    /// After an address is unsubscribed.
    pub erase_after: Duration,
    /// A citizen subscriber with no address (a Telegram link never opened).
    pub unbound_for: Duration,
}

fn ago(d: Duration) -> Option<Timestamp> {
    jiff::SignedDuration::try_from(d)
        .ok()
        .and_then(|d| Timestamp::now().checked_sub(d).ok())
}

/// Deletes the affected lists of incidents resolved longer ago than `affected.retention`, with
/// their deliveries, and uploads staged a day ago that never finished.
async fn prune_affected(store: &dyn Store, c: Citizens) {
    let (Some(resolved), Some(staged)) = (ago(c.affected_for), ago(Duration::from_secs(86_400)))
    else {
        return;
    };
    match store.prune_affected(resolved, staged).await {
        Ok(0) => {}
        Ok(n) => tracing::info!(
            rows = n,
            "deleted the affected lists of incidents long over"
        ),
        Err(e) => tracing::warn!(error = %e, "cannot delete old affected lists; will try again"),
    }
}

async fn prune_citizens(store: &dyn Store, c: Citizens) {
    let (Some(unsubscribed), Some(unbound)) = (ago(c.erase_after), ago(c.unbound_for)) else {
        return;
    };
    let Some(counted) = ago(crate::citizen::LIMIT_WINDOW) else {
        return;
    };
    match store
        .prune_citizens(Timestamp::now(), counted, unsubscribed, unbound)
        .await
    {
        Ok(r) if r != crate::store::CitizenPrune::default() => tracing::info!(
            signups = r.signups,
            addresses = r.addresses,
            subscribers = r.subscribers,
            "erased citizens' expired sign-ups and unsubscribed contacts"
        ),
        Ok(_) => {}
        Err(e) => tracing::warn!(error = %e, "cannot erase citizens' old data; will try again"),
    }
}

const FIRST_RUN_AFTER: Duration = Duration::from_secs(30);
const EVERY: Duration = Duration::from_secs(3600);

/// Prunes while this replica leads (one replica prunes, not all of them).
pub async fn run(
    store: Arc<dyn Store>,
    keep: Duration,
    citizens: Citizens,
    leadership: Leadership,
    shutdown: CancellationToken,
) {
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
        prune_citizens(store.as_ref(), citizens).await;
        prune_affected(store.as_ref(), citizens).await;
        if keep.is_zero() {
            continue;
        }
        let Some(before) = ago(keep) else { continue };
        match store.prune(before).await {
            Ok(r) if r.signals > 0 || r.deliveries > 0 => {
                tracing::info!(signals = r.signals, deliveries = r.deliveries, %before, "pruned old history")
            }
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "cannot prune old history; will try again"),
        }
    }
}
