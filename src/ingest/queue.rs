//! Group commit for ingest: concurrent requests hand their signals to one writer, which stores
//! everything waiting at once (one statement, or one transaction beyond 64 signals) and answers
//! each request once its rows are durable.
//! Under load this turns thousands of small commits into a few large ones. With a
//! [`Coalescer`], re-sends that change nothing are answered without a write, and the writer
//! moves those alerts' last-seen times once a second.
//!
//! While this replica leads and its pipeline waits for work, a batch of up to [`APPLY_AT_MOST`]
//! signals goes to the pipeline instead ([`Batch`]), which stores it in the transaction that
//! applies and routes it: one synced commit between an alert and its desks' first messages
//! instead of two. A larger batch, or one that comes while the pipeline is busy (a storm), is
//! stored here and applied after, so that intake keeps its own pace.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
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

/// Signals handed to the pipeline in one batch at most.
pub const APPLY_AT_MOST: usize = 64;

/// The writer's way to this replica's pipeline ([`handoff`]).
pub struct ToPipeline {
    batches: mpsc::Sender<Batch>,
    idle: Arc<AtomicBool>,
}

/// The pipeline's end of [`handoff`]: batches come here, and the pipeline says when it waits for
/// work, the only time the writer hands it any.
pub struct FromIntake {
    batches: mpsc::Receiver<Batch>,
    idle: Arc<AtomicBool>,
}

/// A way for the writer to hand batches to the pipeline.
pub fn handoff() -> (ToPipeline, FromIntake) {
    let (sender, receiver) = mpsc::channel(1);
    let idle = Arc::new(AtomicBool::new(false));
    (
        ToPipeline {
            batches: sender,
            idle: idle.clone(),
        },
        FromIntake {
            batches: receiver,
            idle,
        },
    )
}

impl FromIntake {
    /// Whether the pipeline is waiting for work: a leader between steps.
    pub fn waiting(&self, idle: bool) {
        self.idle.store(idle, Ordering::Release);
    }

    /// The next batch; `None` once the writer has stopped.
    pub async fn next(&mut self) -> Option<Batch> {
        self.batches.recv().await
    }

    /// A batch handed over already, if any.
    pub fn try_next(&mut self) -> Option<Batch> {
        self.batches.try_recv().ok()
    }
}

/// Signals the writer hands to the pipeline, which stores them in its step's transaction and
/// answers ([`Batch::stored`]) once that is committed, or tells the store is unavailable or its
/// commit in doubt ([`Batch::unavailable`]; the requests get that, as they would have from the
/// writer). A batch dropped unanswered (the replica does not lead, the step failed otherwise or
/// ran apart after a failure, the pipeline is stopping) was not stored: the writer stores it
/// itself.
pub struct Batch {
    signals: Arc<Vec<(Timestamp, Signal)>>,
    answer: oneshot::Sender<Result<Vec<i64>, StoreError>>,
    coalescer: Option<Coalescer>,
}

impl Batch {
    pub fn signals(&self) -> &[(Timestamp, Signal)] {
        &self.signals
    }

    /// The signals are committed under these ids. The [`Coalescer`] hears it here, before the
    /// engine tells it what it applied of them.
    pub fn stored(self, ids: Vec<i64>) {
        if let Some(c) = &self.coalescer {
            c.stored(&self.signals, &ids);
        }
        let _ = self.answer.send(Ok(ids));
    }

    /// The store is unavailable, or the step's commit failed and may have happened all the same:
    /// the writer must not store the signals again, and the requests are refused.
    pub fn unavailable(self, why: String) {
        let _ = self.answer.send(Err(StoreError::Unavailable(why)));
    }
}

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
    /// With `pipeline`, small batches go there to be stored and applied at once.
    pub fn start(
        store: Arc<dyn Store>,
        wake: Arc<Notify>,
        coalescer: Option<Coalescer>,
        pipeline: Option<ToPipeline>,
    ) -> (IngestQueue, tokio::task::JoinHandle<()>) {
        let (sender, receiver) = mpsc::channel::<Request>(4096);
        let writer = Writer {
            store,
            wake,
            coalescer: coalescer.clone(),
            pipeline,
        };
        let task = tokio::spawn(writer.run(receiver));
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

/// The one task that stores signals.
struct Writer {
    store: Arc<dyn Store>,
    wake: Arc<Notify>,
    coalescer: Option<Coalescer>,
    pipeline: Option<ToPipeline>,
}

impl Writer {
    /// Stores `signals`, through the pipeline when it takes them: their ids, and whether the
    /// pipeline's step stored them (and so applied them, or will in the steps right after).
    async fn store(
        &self,
        signals: &Arc<Vec<(Timestamp, Signal)>>,
    ) -> Result<(Vec<i64>, bool), StoreError> {
        if let Some(pipeline) = &self.pipeline
            && signals.len() <= APPLY_AT_MOST
            && pipeline.idle.load(Ordering::Acquire)
        {
            let (sender, answer) = oneshot::channel();
            let batch = Batch {
                signals: signals.clone(),
                answer: sender,
                coalescer: self.coalescer.clone(),
            };
            if pipeline.batches.send(batch).await.is_ok()
                && let Ok(answer) = answer.await
            {
                let stored = answer.map(|ids| (ids, true));
                if stored.is_ok() {
                    metrics::counter!("banditore_signal_batches_total", "stored_by" => "pipeline")
                        .increment(1);
                }
                return stored;
            }
        }
        let ids = self.store.insert_signals(signals).await?;
        metrics::counter!("banditore_signal_batches_total", "stored_by" => "writer").increment(1);
        Ok((ids, false))
    }

    async fn run(self, mut receiver: mpsc::Receiver<Request>) {
        let Writer {
            store, coalescer, ..
        } = &self;
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
            let all = Arc::new(all);
            let result = self.store(&all).await;
            if let Some(c) = &coalescer {
                match &result {
                    // What the pipeline stored, it told the coalescer of.
                    Ok((_, true)) => {}
                    Ok((ids, false)) => c.stored(&all, ids),
                    Err(_) => c.not_stored(
                        &all.iter()
                            .map(|(_, s)| s.fingerprint.clone())
                            .collect::<Vec<_>>(),
                    ),
                }
            }
            match result {
                Ok((ids, stepped)) => {
                    let mut rest = ids.as_slice();
                    for (size, reply) in sizes.into_iter().zip(replies) {
                        let (mine, tail) = rest.split_at(size.min(rest.len()));
                        rest = tail;
                        let _ = reply.send(Ok(mine.to_vec()));
                    }
                    // What the step stored needs no other step to wake here. The announcement
                    // stays: should another replica lead, it hears of them at once.
                    if !stepped {
                        self.wake.notify_one();
                    }
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
}

#[cfg(test)]
mod tests {
    use std::collections::{BTreeMap, VecDeque};

    use proptest::prelude::*;

    use super::*;
    use crate::domain::signal::{NormalizeRules, RawSignal, Source};
    use crate::domain::{Labels, Severity, SignalStatus};

    /// What the stand-in pipeline does with the batch it is handed.
    #[derive(Debug, Clone, Copy)]
    enum Answer {
        /// Stores it in a transaction of its own and answers with the ids, as a step does.
        Apply,
        /// Drops it unanswered, as a replica that does not lead or a failed step does.
        Drop,
        /// Answers that the store is unavailable.
        Unavailable,
        /// Stops taking batches, as a pipeline that has stopped.
        Stop,
    }

    fn signal(n: usize) -> (Timestamp, Signal) {
        let mut labels = Labels::new();
        labels.insert("alertname".into(), format!("a{n}"));
        labels.insert("service".into(), "cup".into());
        let signal = RawSignal {
            status: Some(SignalStatus::Firing),
            labels,
            ..RawSignal::default()
        }
        .normalize(
            Source::Alertmanager,
            &NormalizeRules {
                default_severity: Severity::Major,
            },
            Timestamp::UNIX_EPOCH,
        );
        (Timestamp::UNIX_EPOCH, signal)
    }

    /// Takes batches as the pipeline does, each answered as `plan` says (then applied).
    async fn pipeline(store: Arc<dyn Store>, mut handed: FromIntake, plan: Vec<Answer>) {
        let mut plan = VecDeque::from(plan);
        handed.waiting(true);
        while let Some(batch) = handed.next().await {
            match plan.pop_front().unwrap_or(Answer::Apply) {
                Answer::Apply => {
                    let mut tx = store.begin().await.expect("begin");
                    let ids = tx.insert_signals(batch.signals()).await.expect("insert");
                    tx.commit().await.expect("commit");
                    batch.stored(ids);
                }
                Answer::Drop => drop(batch),
                Answer::Unavailable => batch.unavailable("busy".into()),
                Answer::Stop => return,
            }
        }
    }

    /// What the store holds: the alert name of every stored signal by its id.
    async fn stored(store: &Arc<dyn Store>) -> BTreeMap<i64, String> {
        let mut tx = store.begin().await.expect("begin");
        let signals = tx.unprocessed_signals(100_000).await.expect("signals");
        tx.commit().await.expect("commit");
        signals
            .into_iter()
            .map(|s| (s.id, s.signal.labels["alertname"].clone()))
            .collect()
    }

    /// Sends `requests` (each a number of signals) at once, with the pipeline answering as
    /// `plan` says; returns each request's outcome and what the store holds after.
    async fn run(
        requests: &[usize],
        plan: Vec<Answer>,
    ) -> (Vec<Result<Vec<i64>, StoreError>>, BTreeMap<i64, String>) {
        let dir = tempfile::tempdir().expect("dir");
        let store = crate::store::scratch(&dir).await;
        let (to_pipeline, handed) = handoff();
        let stand_in = tokio::spawn(pipeline(store.clone(), handed, plan));
        let (queue, writer) = IngestQueue::start(
            store.clone(),
            Arc::new(Notify::new()),
            None,
            Some(to_pipeline),
        );
        let mut next = 0;
        let sends: Vec<_> = requests
            .iter()
            .map(|&size| {
                let signals: Vec<_> = (next..next + size).map(signal).collect();
                next += size;
                let queue = queue.clone();
                tokio::spawn(async move { queue.store(signals).await })
            })
            .collect();
        let mut outcomes = Vec::new();
        for send in sends {
            outcomes.push(send.await.expect("a request"));
        }
        drop(queue);
        writer.await.expect("the writer");
        stand_in.abort();
        (outcomes, stored(&store).await)
    }

    fn answer() -> impl Strategy<Value = Answer> {
        prop_oneof![
            4 => Just(Answer::Apply),
            2 => Just(Answer::Drop),
            1 => Just(Answer::Unavailable),
            1 => Just(Answer::Stop),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

        /// Whatever the pipeline does with what it is handed, a request answered with ids has
        /// each of its signals stored exactly once, under those ids in its order, and a request
        /// answered with an error has none stored.
        #[test]
        fn every_signal_answered_is_stored_once_and_no_refused_one_is(
            requests in prop::collection::vec(1usize..100, 1..12),
            plan in prop::collection::vec(answer(), 0..12),
        ) {
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .expect("a runtime");
            let (outcomes, names) = runtime.block_on(run(&requests, plan));
            let mut next = 0;
            let mut expected = BTreeMap::new();
            for (size, outcome) in requests.iter().zip(&outcomes) {
                match outcome {
                    Ok(ids) => {
                        prop_assert_eq!(ids.len(), *size);
                        for (n, id) in (next..next + size).zip(ids) {
                            expected.insert(*id, format!("a{n}"));
                        }
                    }
                    Err(e) => prop_assert!(e.is_unavailable(), "{e}"),
                }
                next += size;
            }
            prop_assert_eq!(names, expected);
        }
    }

    #[tokio::test]
    async fn a_storm_is_stored_by_the_writer_and_a_small_batch_by_the_pipeline() {
        // The stand-in would refuse anything it is handed: only what it is handed fails.
        let (outcomes, names) = run(&[APPLY_AT_MOST + 1], vec![Answer::Unavailable]).await;
        assert!(outcomes[0].is_ok(), "{:?}", outcomes[0]);
        assert_eq!(names.len(), APPLY_AT_MOST + 1);
        let (outcomes, names) = run(&[APPLY_AT_MOST], vec![Answer::Unavailable]).await;
        assert!(
            outcomes[0].as_ref().is_err_and(StoreError::is_unavailable),
            "{:?}",
            outcomes[0]
        );
        assert!(names.is_empty(), "{names:?}");
    }
}
