//! Group commit for ingest: concurrent requests hand their signals to one writer, which stores
//! everything waiting in one transaction and answers each request once its rows are durable.
//! Under load this turns thousands of small commits into a few large ones.

use std::sync::Arc;

use jiff::Timestamp;
use tokio::sync::{Notify, mpsc, oneshot};

use crate::domain::Signal;
use crate::store::{Store, StoreError, Topic};

/// Signals stored per transaction at most.
const MAX_BATCH: usize = 2000;

type Request = (
    Vec<(Timestamp, Signal)>,
    oneshot::Sender<Result<Vec<i64>, StoreError>>,
);

#[derive(Clone)]
pub struct IngestQueue {
    sender: mpsc::Sender<Request>,
}

impl IngestQueue {
    /// Starts the writer. It stops when every handle is dropped, after storing what it holds.
    pub fn start(
        store: Arc<dyn Store>,
        wake: Arc<Notify>,
    ) -> (IngestQueue, tokio::task::JoinHandle<()>) {
        let (sender, receiver) = mpsc::channel::<Request>(4096);
        let task = tokio::spawn(write(store, wake, receiver));
        (IngestQueue { sender }, task)
    }

    /// Stores signals; returns their ids once they are durable.
    pub async fn store(&self, signals: Vec<(Timestamp, Signal)>) -> Result<Vec<i64>, StoreError> {
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

async fn write(store: Arc<dyn Store>, wake: Arc<Notify>, mut receiver: mpsc::Receiver<Request>) {
    let mut requests: Vec<Request> = Vec::new();
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
}
