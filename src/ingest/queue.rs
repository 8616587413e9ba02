//! Group commit for ingest: concurrent requests hand their signals to one writer, which stores
//! everything waiting at once (one statement, or one transaction beyond 64 signals) and answers
//! each request once its rows are durable.
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

/// Signals stored per commit at most.
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
            return self.write(signals).await;
        }
        let mut fresh = Vec::new();
        let mut repeated = Vec::new();
        for (signal, repeat) in signals.into_iter().zip(&repeats) {
            match repeat {
                Some(_) => repeated.push(signal.1.source),
                None => fresh.push(signal),
            }
        }
        let mut ids = if fresh.is_empty() {
            Vec::new()
        } else {
            self.write(fresh).await?
        }
        .into_iter();
        for source in repeated {
            metrics::counter!("banditore_signals_coalesced_total", "source" => source.as_str())
                .increment(1);
        }
        Ok(repeats
            .into_iter()
            .map(|r| r.or_else(|| ids.next()).unwrap_or_default())
            .collect())
    }

    /// Hands signals to the writer and waits for their ids. Once handed over they are the
    /// writer's, for the coalescer too (stored or not, it says so before it answers); a request
    /// dropped before that un-queues them itself.
    async fn write(&self, signals: Vec<(Timestamp, Signal)>) -> Result<Vec<i64>, StoreError> {
        let mut unsent = self.coalescer.as_ref().map(|c| Unsent {
            coalescer: c,
            fingerprints: signals.iter().map(|(_, s)| s.fingerprint.clone()).collect(),
        });
        let (reply, answer) = oneshot::channel();
        let sent = self.sender.send((signals, reply)).await;
        if sent.is_ok()
            && let Some(u) = unsent.as_mut()
        {
            u.fingerprints.clear();
        }
        sent.map_err(|_| StoreError::Unavailable("shutting down".into()))?;
        answer
            .await
            .map_err(|_| StoreError::Unavailable("the writer stopped".into()))?
    }
}

/// Signals the [`Coalescer`] counts as queued that never reached the writer.
struct Unsent<'a> {
    coalescer: &'a Coalescer,
    fingerprints: Vec<String>,
}

impl Drop for Unsent<'_> {
    fn drop(&mut self) {
        if !self.fingerprints.is_empty() {
            self.coalescer.not_stored(&self.fingerprints);
        }
    }
}

/// Writes the last-seen times of alerts coalesced re-sends saw; they stay in memory until
/// written (the engine's expiry reads them there meanwhile), so a failed write is tried again.
async fn write_seen(store: &dyn Store, coalescer: &Coalescer) {
    if let Some((fingerprints, at)) = coalescer.take_seen() {
        match store.touch_alerts_seen(&fingerprints, at).await {
            Ok(()) => coalescer.written(&fingerprints, at),
            Err(e) => {
                tracing::warn!(error = %e, alerts = fingerprints.len(), "cannot write when alerts were last seen; trying again");
            }
        }
    }
}

async fn write(
    store: Arc<dyn Store>,
    wake: Arc<Notify>,
    mut receiver: mpsc::Receiver<Request>,
    coalescer: Option<Coalescer>,
) {
    let mut requests: Vec<Request> = Vec::new();
    // Last-seen times go in a task of their own: waiting on rows another transaction holds,
    // they must not hold back the signals' commits.
    let stop_flushing = tokio_util::sync::CancellationToken::new();
    let flusher = coalescer.clone().map(|c| {
        let store = store.clone();
        let stop = stop_flushing.clone();
        tokio::spawn(async move {
            let mut seen = tokio::time::interval(SEEN_EVERY);
            seen.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                // Stopped only between writes, so that none is cut off half done.
                tokio::select! {
                    _ = stop.cancelled() => break,
                    _ = seen.tick() => write_seen(store.as_ref(), &c).await,
                }
            }
        })
    });
    while receiver.recv_many(&mut requests, 256).await > 0 {
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
        let result = store.insert_signals(&all).await;
        if let Some(c) = &coalescer {
            match &result {
                Ok(ids) => c.stored(&all, ids),
                Err(_) => c.not_stored(
                    &all.iter()
                        .map(|(_, s)| s.fingerprint.clone())
                        .collect::<Vec<_>>(),
                ),
            }
        }
        match result {
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
    if let Some(flusher) = flusher {
        stop_flushing.cancel();
        let _ = flusher.await;
    }
    if let Some(c) = &coalescer {
        write_seen(store.as_ref(), c).await;
    }
}
