//! Group commit for ingest: concurrent requests hand their signals to one writer, which stores
//! everything waiting in one transaction and answers each request once its rows are durable.
//! Under load this turns thousands of small commits into a few large ones. With a
//! [`Coalescer`], re-sends that change nothing are answered without a write, and the writer
//! moves those alerts' last-seen times once a second.

use std::sync::Arc;
use std::time::Duration;

use jiff::Timestamp;
use tokio::sync::{Notify, mpsc, oneshot};

use super::Coalescer;
use crate::domain::Signal;
use crate::store::{Store, StoreError, Topic};

/// How often coalesced re-sends' last-seen times are written.
const SEEN_EVERY: Duration = Duration::from_secs(1);

/// Signals stored per transaction at most.
const MAX_BATCH: usize = 2000;

type Request = (
    Vec<(Timestamp, Signal)>,
    oneshot::Sender<Result<Vec<i64>, StoreError>>,
);

#[derive(Clone)]
pub struct IngestQueue {
    sender: mpsc::Sender<Request>,
    coalescer: Option<Coalescer>,
}

impl IngestQueue {
    /// Starts the writer. It stops when every handle is dropped, after storing what it holds.
    pub fn start(
        store: Arc<dyn Store>,
        wake: Arc<Notify>,
        coalescer: Option<Coalescer>,
    ) -> (IngestQueue, tokio::task::JoinHandle<()>) {
        let (sender, receiver) = mpsc::channel::<Request>(4096);
        let task = tokio::spawn(write(store, wake, receiver, coalescer.clone()));
        (IngestQueue { sender, coalescer }, task)
    }

    /// Stores signals; returns their ids once they are durable. A signal the [`Coalescer`]
    /// knows as a repeat is not stored: its id is that of the stored signal it repeats.
    pub async fn store(&self, signals: Vec<(Timestamp, Signal)>) -> Result<Vec<i64>, StoreError> {
        let Some(coalescer) = &self.coalescer else {
            return self.write(signals).await;
        };
        let repeats = coalescer.sort(&signals);
        if repeats.iter().all(Option::is_none) {
            let queued = Queued::new(coalescer, &signals);
            let ids = self.write(signals.clone()).await?;
            queued.stored(&ids);
            return Ok(ids);
        }
        for ((_, s), _) in signals.iter().zip(&repeats).filter(|(_, r)| r.is_some()) {
            metrics::counter!("banditore_signals_coalesced_total", "source" => s.source.as_str())
                .increment(1);
        }
        let fresh: Vec<(Timestamp, Signal)> = signals
            .iter()
            .zip(&repeats)
            .filter(|(_, r)| r.is_none())
            .map(|(s, _)| s.clone())
            .collect();
        let mut ids = if fresh.is_empty() {
            Vec::new()
        } else {
            let queued = Queued::new(coalescer, &fresh);
            let ids = self.write(fresh.clone()).await?;
            queued.stored(&ids);
            ids
        }
        .into_iter();
        Ok(repeats
            .into_iter()
            .map(|r| r.or_else(|| ids.next()).unwrap_or_default())
            .collect())
    }

    async fn write(&self, signals: Vec<(Timestamp, Signal)>) -> Result<Vec<i64>, StoreError> {
        let (reply, answer) = oneshot::channel();
        self.sender
            .send((signals, reply))
            .await
            .map_err(|_| StoreError::Unavailable("shutting down".into()))?;
        answer
            .await
            .map_err(|_| StoreError::Unavailable("the writer stopped".into()))?
    }
}

/// Signals a [`Coalescer`] counts as queued: told when they are stored, or that they never
/// will be (the store failed, or the request was dropped while it waited).
struct Queued<'a> {
    coalescer: &'a Coalescer,
    signals: &'a [(Timestamp, Signal)],
    done: bool,
}

impl<'a> Queued<'a> {
    fn new(coalescer: &'a Coalescer, signals: &'a [(Timestamp, Signal)]) -> Queued<'a> {
        Queued {
            coalescer,
            signals,
            done: false,
        }
    }

    fn stored(mut self, ids: &[i64]) {
        self.coalescer.stored(self.signals, ids);
        self.done = true;
    }
}

impl Drop for Queued<'_> {
    fn drop(&mut self) {
        if !self.done {
            self.coalescer.not_stored(self.signals);
        }
    }
}

/// Writes the last-seen times of alerts coalesced re-sends saw; kept for the next round when the
/// store fails.
async fn write_seen(store: &dyn Store, coalescer: &Coalescer) {
    if let Some((fingerprints, at)) = coalescer.take_seen()
        && let Err(e) = store.touch_alerts_seen(&fingerprints, at).await
    {
        tracing::warn!(error = %e, alerts = fingerprints.len(), "cannot write when alerts were last seen");
    }
}

async fn write(
    store: Arc<dyn Store>,
    wake: Arc<Notify>,
    mut receiver: mpsc::Receiver<Request>,
    coalescer: Option<Coalescer>,
) {
    let mut requests: Vec<Request> = Vec::new();
    let mut seen = tokio::time::interval(SEEN_EVERY);
    seen.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let received = tokio::select! {
            n = receiver.recv_many(&mut requests, 256) => n,
            _ = seen.tick() => {
                if let Some(c) = &coalescer {
                    write_seen(store.as_ref(), c).await;
                }
                continue;
            }
        };
        if received == 0 {
            break;
        }
        // Take more while they fit: everything that queued during the last commit.
        let mut count: usize = requests.iter().map(|(s, _)| s.len()).sum();
        while count < MAX_BATCH {
            match receiver.try_recv() {
                Ok(r) => {
                    count += r.0.len();
                    requests.push(r);
                }
                Err(_) => break,
            }
        }
        let mut all = Vec::with_capacity(count);
        let mut sizes = Vec::with_capacity(requests.len());
        let mut replies = Vec::with_capacity(requests.len());
        for (signals, reply) in requests.drain(..) {
            sizes.push(signals.len());
            all.extend(signals);
            replies.push(reply);
        }
        match store.insert_signals(&all).await {
            Ok(ids) => {
                let mut rest = ids.as_slice();
                for (size, reply) in sizes.into_iter().zip(replies) {
                    let (mine, tail) = rest.split_at(size.min(rest.len()));
                    rest = tail;
                    let _ = reply.send(Ok(mine.to_vec()));
                }
                wake.notify_one();
                store.announce(Topic::Signals).await;
            }
            Err(e) => {
                let message = e.to_string();
                let unavailable = e.is_unavailable();
                for reply in replies {
                    let err = if unavailable {
                        StoreError::Unavailable(message.clone())
                    } else {
                        StoreError::Corrupt(message.clone())
                    };
                    let _ = reply.send(Err(err));
                }
            }
        }
    }
    if let Some(c) = &coalescer {
        write_seen(store.as_ref(), c).await;
    }
}
