//! Drafts whose audience's policy is `approval_with_timeout` publish themselves when nobody
//! decided in time: the leading replica looks every second, publishes each due draft as the
//! `timeout` actor (the audit log says so) and wakes the dispatchers.

use std::sync::Arc;
use std::time::Duration;

use jiff::Timestamp;
use tokio_util::sync::CancellationToken;

use crate::cluster::Leadership;
use crate::pipeline::Wakers;
use crate::store::{Decision, Store, StoreError, Topic};

const EVERY: Duration = Duration::from_secs(1);

/// Who publishes a draft nobody decided on, in the audit log.
pub const TIMEOUT_ACTOR: &str = "policy: approval_with_timeout";

pub async fn publish_on_timeout(
    store: Arc<dyn Store>,
    wake: Wakers,
    leadership: Leadership,
    shutdown: CancellationToken,
) {
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(EVERY) => {}
        }
        if !leadership.is_leader() {
            continue;
        }
        if let Err(e) = publish_due(&*store, &wake).await {
            tracing::warn!(error = %e, "cannot publish drafts whose time ran out; will try again");
        }
    }
}

async fn publish_due(store: &dyn Store, wake: &Wakers) -> Result<(), StoreError> {
    let now = Timestamp::now();
    for id in store.due_drafts(now).await? {
        match store
            .decide_draft(id, &Decision::TimedOut, TIMEOUT_ACTOR, now)
            .await
        {
            Ok(Some(done)) => {
                tracing::info!(
                    draft = id,
                    deliveries = done.deliveries,
                    "nobody decided in time: draft published by its policy"
                );
                metrics::counter!("banditore_drafts_decided_total", "decision" => "timeout")
                    .increment(1);
                wake.dispatch.ring();
                store.announce(Topic::Deliveries).await;
            }
            Ok(None) => {}
            // Decided by someone in the meantime.
            Err(StoreError::Conflict(_)) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}
