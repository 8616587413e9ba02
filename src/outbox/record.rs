//! Writing what happened to each claimed delivery. Sends report their outcomes as they finish;
//! the recorder writes them in batches, fenced by this worker's name and each claim's attempt
//! number, so an outcome lands only on the claim it belongs to. Every batch written lets go of
//! those deliveries' leases and wakes the dispatcher: a delivery that waited behind one just
//! finished (the next update to the same recipient) is now due.

use std::sync::Arc;
use std::time::Duration;

use jiff::Timestamp;
use tokio::sync::{Notify, mpsc};

use super::Dispatcher;
use super::lease::Held;
use crate::store::{OutboxStore, Outcome, StoreError};

/// A batch of outcomes this small waits a moment for more before it is written.
const GATHER: usize = 32;
const GATHER_FOR: Duration = Duration::from_millis(2);

/// What writing outcomes needs, apart from the dispatcher so that it can run as a task of its own.
#[derive(Clone)]
pub(super) struct Recorder {
    pub(super) store: Arc<dyn OutboxStore>,
    pub(super) owner: String,
    pub(super) wake: Arc<Notify>,
    pub(super) held: Held,
}

impl Recorder {
    /// Writes one batch of outcomes as of `now`.
    pub(super) async fn write(
        &self,
        outcomes: &[Outcome],
        now: Timestamp,
    ) -> Result<(), StoreError> {
        self.store
            .record_outcomes(&self.owner, outcomes, now)
            .await?;
        self.held.remove(outcomes);
        self.wake.notify_one();
        Ok(())
    }

    /// Writes outcomes in batches until every sender is gone: whatever finished while the
    /// previous batch was being written goes into the next one, and a batch smaller than
    /// [`GATHER`] waits [`GATHER_FOR`] for more, so that a fan-out writes its outcomes in a few
    /// large commits rather than many small ones. A batch that holds every delivery this worker
    /// holds is written at once: nothing else is coming, and the recipient's next message (the
    /// next incident to the same desk) waits for this outcome before it can be claimed. A
    /// failing store is retried until it answers, so no outcome is dropped.
    pub(super) async fn run(self, mut received: mpsc::UnboundedReceiver<Outcome>) {
        let mut batch = Vec::with_capacity(256);
        while received.recv_many(&mut batch, 256).await > 0 {
            if batch.len() < GATHER && !self.held.only(&batch) {
                tokio::time::sleep(GATHER_FOR).await;
                while batch.len() < 256
                    && let Ok(more) = received.try_recv()
                {
                    batch.push(more);
                }
            }
            let mut delay = Duration::from_millis(100);
            while let Err(e) = self.write(&batch, Timestamp::now()).await {
                tracing::warn!(error = %e, outcomes = batch.len(), "cannot record delivery outcomes; retrying");
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(5));
            }
            batch.clear();
        }
    }
}

impl Dispatcher {
    /// Records what happened to claimed deliveries, as of `now`: what [`Dispatcher::run`]'s
    /// recorder does with every batch, for a caller that steps the dispatcher itself.
    pub async fn record(&self, outcomes: &[Outcome], now: Timestamp) -> Result<(), StoreError> {
        self.recorder.write(outcomes, now).await
    }

    /// Waits for every send in flight to finish, and returns the outcomes reported since the
    /// last call (hand-backs included), not yet recorded. For a caller that steps the
    /// dispatcher itself; [`Dispatcher::run`] records them as they come.
    pub async fn finish_sends(&mut self) -> Vec<Outcome> {
        while self.in_flight.join_next().await.is_some() {}
        let mut outcomes = Vec::new();
        if let Some(received) = self.received.as_mut() {
            while let Ok(o) = received.try_recv() {
                outcomes.push(o);
            }
        }
        outcomes
    }
}
