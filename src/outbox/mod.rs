//! The outbox dispatcher: claims due deliveries of one channel with a lease, sends them with
//! bounded concurrency and pacing, and records each outcome.
//!
//! Claim, commit, send, record: no transaction is held across a send, so a crash leaves the
//! delivery `sending` with a lease that runs out (or, on SQLite, is handed back at start-up) and
//! it is sent again. The window in which a message can go out twice is between the provider
//! accepting it and the outcome being committed; channels with idempotency keys close it, email
//! keeps the same Message-ID so mail clients can fold the copy.
//!
//! While this worker lives, nobody takes its deliveries over: it renews the lease of every
//! delivery it holds (queued, in flight, or sent with the outcome not yet written) every quarter
//! of a lease, and outcomes are fenced by the claim they belong to. The lease is short (seconds),
//! so that a dead replica's deliveries are taken over within about a lease; a send is bounded by
//! its own `send_timeout` instead. A send starts only while the worker's hold is known good (a
//! claim or a renewal less than half a lease ago); otherwise the delivery is handed back without
//! counting an attempt.
//!
//! A panic inside a channel fails that one delivery, with the panic's message as its reason; the
//! worker goes on. A provider refusing the channel's own credentials pauses the channel
//! (`pause.rs`): its deliveries stay pending, uncounted, and one at a time is tried as a probe
//! with back-off until the credentials are accepted again.
//!
//! Like the engine and the router, the work is a step with time as a parameter:
//! [`Dispatcher::step`] claims and starts what is due at `now` and says when the next thing is
//! due, [`Dispatcher::claim_ahead`] makes the next claim beside the sends while the queue still
//! feeds them, [`Dispatcher::keep_leases`] renews and reclaims leases (`lease.rs`), and
//! [`Dispatcher::record`] writes outcomes (`record.rs`); one send is `send.rs`.
//! [`Dispatcher::run`] is only the loop around them: wake-ups, sleeps and shutdown.

mod backoff;
mod lease;
pub mod pause;
mod record;
mod send;
#[cfg(test)]
mod tests;

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use jiff::Timestamp;
use tokio::sync::{Notify, mpsc, oneshot};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

pub use backoff::Backoff;
pub use lease::LeaseWork;
pub use pause::Pauses;

use crate::channel::Channel;
use crate::channel::rate::RateLimiter;
use crate::domain::subscriber::ChannelKind;
use crate::store::{
    ClaimedDelivery, DeliveryOutcome, MessageRow, OutboxStore, Outcome, StoreError, Topic,
};
use crate::unsubscribe::UnsubscribeLinks;
use lease::{Held, Leases};
use record::Recorder;
use send::Send;

#[derive(Debug, Clone)]
pub struct OutboxConfig {
    /// How long a claim lasts unless renewed; renewed every quarter of it.
    pub lease: Duration,
    /// The longest one send may take before it counts as failed (and is retried).
    pub send_timeout: Duration,
    pub batch_size: u32,
    pub max_attempts: u32,
    pub backoff: Backoff,
    pub poll_interval: Duration,
    /// Sends in flight at once for this channel.
    pub concurrency: usize,
    /// How long in-flight sends may take to finish on shutdown.
    pub shutdown_timeout: Duration,
}

/// What every dispatcher of this process shares.
#[derive(Clone)]
pub struct Crew {
    pub store: Arc<dyn OutboxStore>,
    /// This replica, as leases name it.
    pub owner: String,
    pub links: UnsubscribeLinks,
    pub pauses: Pauses,
}

pub struct Dispatcher {
    store: Arc<dyn OutboxStore>,
    channel: Arc<dyn Channel>,
    config: OutboxConfig,
    owner: String,
    wake: Arc<Notify>,
    links: UnsubscribeLinks,
    limiter: Option<Arc<RateLimiter>>,
    pauses: Pauses,
    /// Sends in flight at once, at least one.
    concurrency: usize,
    /// How many deliveries are claimed ahead of the free send slots, so that one claim serves
    /// many sends; never more than can go out well within the lease when sends are paced.
    prefetch: usize,
    /// Claimed deliveries not started yet, each with the moment it was claimed: it may start
    /// while the claim, or the last renewal of every lease this worker holds, is less than half
    /// a lease old.
    queue: VecDeque<(ClaimedDelivery, Timestamp)>,
    in_flight: JoinSet<()>,
    /// Messages read for recent sends, by id.
    messages: HashMap<i64, Arc<MessageRow>>,
    held: Held,
    leases: Leases,
    recorder: Recorder,
    /// Where sends report their outcomes.
    results: mpsc::UnboundedSender<Outcome>,
    /// What sends reported: read by the recorder task while [`Dispatcher::run`] runs, by
    /// [`Dispatcher::finish_sends`] for a caller that steps the dispatcher itself.
    received: Option<mpsc::UnboundedReceiver<Outcome>>,
    /// Deliveries the pipeline claimed for this worker (see [`Handover`]), with when.
    inbox: Option<mpsc::UnboundedReceiver<Handed>>,
    /// The queue's length after the last step, for the pipeline to claim no more than fits.
    queued: Arc<AtomicUsize>,
    /// Deliveries handed over and still in the inbox (counted by the pipeline as it gives).
    in_inbox: Arc<AtomicUsize>,
    /// Handed-over deliveries queued since the last step.
    handed: usize,
    /// A claim running beside the sends ([`Dispatcher::claim_ahead`]), with its moment and
    /// how many it asked for.
    ahead: Option<(ClaimAhead, Timestamp, usize)>,
    /// After a claim ahead found less than it asked for, or failed, none is made before this
    /// moment (the step's own claim, when the queue is empty, goes on as usual).
    ahead_after: Option<Timestamp>,
}

/// A claim running beside the sends: what it claimed, sent once it has finished (a channel
/// rather than the task's handle, which may not say so at once).
type ClaimAhead = oneshot::Receiver<Result<Vec<ClaimedDelivery>, StoreError>>;

/// The way from the pipeline to this replica's dispatchers. The leader's pipeline writes an
/// update's deliveries (a large one's, a part) and claims the first of them for this replica in
/// the same transaction,
/// then hands them over in memory: a desk's message leaves without a commit of its own for the
/// claim, and without the dispatcher's round to the store. The claim is the outbox's own (same
/// lease, same owner, same rule that an earlier delivery to a recipient goes first), so a crash
/// after the commit leaves leased deliveries that are taken back as any others.
#[derive(Clone)]
pub struct Handover {
    owner: String,
    lease: Duration,
    doors: Arc<HashMap<ChannelKind, Door>>,
    pauses: Pauses,
}

/// Deliveries claimed for a dispatcher, when, and those of their messages the pipeline wrote.
struct Handed {
    claimed: Vec<ClaimedDelivery>,
    at: Timestamp,
    messages: Vec<Arc<MessageRow>>,
}

/// One dispatcher's way in.
pub struct Door {
    kind: ChannelKind,
    /// How many to claim at most: what the dispatcher starts at once.
    limit: usize,
    /// How many wait in the dispatcher's queue, and in its inbox.
    queued: Arc<AtomicUsize>,
    in_inbox: Arc<AtomicUsize>,
    sender: mpsc::UnboundedSender<Handed>,
    bell: Arc<Notify>,
}

impl Handover {
    pub fn new(crew: &Crew, lease: Duration, doors: Vec<Door>) -> Handover {
        Handover {
            owner: crew.owner.clone(),
            lease,
            doors: Arc::new(doors.into_iter().map(|d| (d.kind, d)).collect()),
            pauses: crew.pauses.clone(),
        }
    }

    /// This replica, as leases name it.
    pub fn owner(&self) -> &str {
        &self.owner
    }

    /// How many deliveries of `kind` to claim at `now` and until when; `None` when no
    /// dispatcher of this replica sends on that channel, or the channel is paused (its
    /// dispatcher tries one delivery at a time, when its probe is due).
    pub fn wants(&self, kind: ChannelKind, now: Timestamp) -> Option<(u32, Timestamp)> {
        if self.pauses.get(kind).is_some() {
            return None;
        }
        let door = self.doors.get(&kind)?;
        let waiting = door.queued.load(Ordering::Relaxed) + door.in_inbox.load(Ordering::Relaxed);
        let room = door.limit.saturating_sub(waiting);
        (room > 0).then(|| (room as u32, later_by(now, self.lease)))
    }

    /// Gives each dispatcher what was claimed for it at `claimed_at`, once the claim is
    /// committed, with those of `messages` its deliveries carry, and wakes it. A dispatcher
    /// that has stopped leaves them leased: they are taken back when the lease runs out, or at
    /// the next start.
    pub fn give(
        &self,
        claimed: Vec<(ChannelKind, Vec<ClaimedDelivery>)>,
        claimed_at: Timestamp,
        messages: &[Arc<MessageRow>],
    ) {
        for (kind, deliveries) in claimed {
            if deliveries.is_empty() {
                continue;
            }
            if let Some(door) = self.doors.get(&kind) {
                let n = deliveries.len();
                let carried: std::collections::HashSet<i64> =
                    deliveries.iter().map(|d| d.message_id).collect();
                let messages = messages
                    .iter()
                    .filter(|m| carried.contains(&m.id))
                    .cloned()
                    .collect();
                door.in_inbox.fetch_add(n, Ordering::Relaxed);
                let handed = Handed {
                    claimed: deliveries,
                    at: claimed_at,
                    messages,
                };
                if door.sender.send(handed).is_ok() {
                    door.bell.notify_one();
                } else {
                    door.in_inbox.fetch_sub(n, Ordering::Relaxed);
                }
            }
        }
    }
}

/// What one [`Dispatcher::step`] did, and when the next one is due.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Dispatched {
    /// Deliveries claimed (a paused channel claims one at most: its probe).
    pub claimed: usize,
    /// Sends started.
    pub started: usize,
    /// Claimed deliveries handed back untried, the attempt not counted: held too long to start
    /// safely, or held back by a pause.
    pub handed_back: usize,
    /// Sends in flight after this step.
    pub in_flight: usize,
    /// When to step again if nothing happens sooner (a send finishing, outcomes recorded, a
    /// wake-up): the next due delivery, at most a poll interval away and never further than a
    /// quarter of a lease, so leases are kept.
    pub next: Timestamp,
    /// True when free slots may take more at once: step again without waiting.
    pub more: bool,
}

fn outcome_of(delivery: &ClaimedDelivery, outcome: DeliveryOutcome) -> Outcome {
    Outcome {
        delivery: delivery.id,
        attempts: delivery.attempts,
        outcome,
    }
}

fn later_by(now: Timestamp, span: Duration) -> Timestamp {
    jiff::SignedDuration::try_from(span)
        .ok()
        .and_then(|d| now.checked_add(d).ok())
        .unwrap_or(now)
}

/// How long from `since` to `now`; `None` when the clock went back.
fn elapsed(since: Timestamp, now: Timestamp) -> Option<Duration> {
    Duration::try_from(now.duration_since(since)).ok()
}

/// How long from `now` until `at`; zero when it has passed.
fn until(now: Timestamp, at: Timestamp) -> Duration {
    elapsed(now, at).unwrap_or(Duration::ZERO)
}

impl Dispatcher {
    pub fn new(
        crew: &Crew,
        channel: Arc<dyn Channel>,
        config: OutboxConfig,
        wake: Arc<Notify>,
        limiter: Option<Arc<RateLimiter>>,
    ) -> Dispatcher {
        let concurrency = config.concurrency.max(1);
        let prefetch = match &limiter {
            None => (config.batch_size as usize).max(concurrency),
            Some(l) => l
                .within(Leases::every(config.lease))
                .clamp(1, config.batch_size as usize),
        };
        let held = Held::default();
        let (results, received) = mpsc::unbounded_channel();
        Dispatcher {
            recorder: Recorder {
                store: crew.store.clone(),
                owner: crew.owner.clone(),
                wake: wake.clone(),
                held: held.clone(),
            },
            store: crew.store.clone(),
            channel,
            config,
            owner: crew.owner.clone(),
            wake,
            links: crew.links.clone(),
            limiter,
            pauses: crew.pauses.clone(),
            concurrency,
            prefetch,
            queue: VecDeque::new(),
            in_flight: JoinSet::new(),
            messages: HashMap::new(),
            held,
            leases: Leases::default(),
            results,
            received: Some(received),
            inbox: None,
            queued: Arc::new(AtomicUsize::new(0)),
            in_inbox: Arc::new(AtomicUsize::new(0)),
            handed: 0,
            ahead: None,
            ahead_after: None,
        }
    }

    /// This dispatcher's way in from the pipeline (one per dispatcher: a second call replaces
    /// the first).
    pub fn door(&mut self) -> Door {
        let (sender, inbox) = mpsc::unbounded_channel();
        self.inbox = Some(inbox);
        Door {
            kind: self.channel.kind(),
            limit: self.concurrency.min(self.prefetch),
            queued: self.queued.clone(),
            in_inbox: self.in_inbox.clone(),
            sender,
            bell: self.wake.clone(),
        }
    }

    /// Queues what the pipeline handed over, as held since its claim, and counts it for the
    /// next step (which starts it before claiming anything itself).
    fn take_handed_over(&mut self) {
        while let Some(Ok(Handed {
            claimed,
            at,
            messages,
        })) = self.inbox.as_mut().map(|i| i.try_recv())
        {
            for m in messages {
                self.remember(m);
            }
            self.in_inbox.fetch_sub(claimed.len(), Ordering::Relaxed);
            self.handed += claimed.len();
            self.leases.joined(at);
            self.held.add(claimed.iter().map(|d| d.id));
            self.queue.extend(claimed.into_iter().map(|d| (d, at)));
        }
        self.publish_queued();
    }

    /// The channel this dispatcher sends through.
    pub fn channel(&self) -> Arc<dyn Channel> {
        self.channel.clone()
    }

    /// Sends until `shutdown`: keeps the leases and steps at every send finished, batch of
    /// outcomes written, wake-up, or when the step said the next thing is due. On shutdown it
    /// finishes the sends in flight (within `shutdown_timeout`) and releases the rest.
    pub async fn run(mut self, shutdown: CancellationToken) {
        let kind = self.channel.kind();
        let recorder = self
            .received
            .take()
            .map(|received| tokio::spawn(self.recorder.clone().run(received)));
        loop {
            let now = Timestamp::now();
            self.keep_leases(now).await;
            let step = match self.step(now).await {
                Ok(step) => step,
                Err(e) => {
                    tracing::warn!(channel = %kind, error = %e, "cannot claim deliveries; retrying shortly");
                    tokio::select! {
                        _ = shutdown.cancelled() => break,
                        _ = tokio::time::sleep(Duration::from_millis(500)) => {}
                    }
                    continue;
                }
            };
            if step.more {
                continue;
            }
            self.claim_ahead(now);
            // Until the step's next moment, by its clock or by the wall clock if sooner (never
            // longer if the clock went back meanwhile).
            let wait = until(now, step.next).min(until(Timestamp::now(), step.next));
            tokio::select! {
                biased;
                _ = shutdown.cancelled() => break,
                Some(_) = self.in_flight.join_next(), if !self.in_flight.is_empty() => {}
                _ = self.wake.notified() => {}
                _ = tokio::time::sleep(wait) => {}
            }
        }
        // A claim ahead still running is let finish, so that what it claims is handed back
        // below rather than left leased.
        if let Some((claimed, _, _)) = self.ahead.take() {
            // Within the shutdown time: otherwise its leases run out on their own.
            let _ = tokio::time::timeout(self.config.shutdown_timeout, claimed).await;
        }
        if !self.queue.is_empty() {
            tracing::info!(channel = %kind, unsent = self.queue.len(), "handing back claimed deliveries not yet started");
        }
        let pending = self.in_flight.len();
        if pending > 0 {
            tracing::info!(channel = %kind, in_flight = pending, "finishing in-flight sends before shutdown");
        }
        let in_flight = &mut self.in_flight;
        let drained = tokio::time::timeout(self.config.shutdown_timeout, async {
            while in_flight.join_next().await.is_some() {}
        })
        .await;
        if drained.is_err() {
            tracing::warn!(channel = %kind, abandoned = self.in_flight.len(), "shutdown timeout: abandoning sends still in flight");
            self.in_flight.abort_all();
        }
        drop(self.results);
        if let Some(recorder) = recorder {
            let _ = recorder.await;
        }
        match self.store.release_leases(&self.owner, kind).await {
            Ok(0) => {}
            Ok(n) => {
                tracing::info!(channel = %kind, deliveries = n, "released leases of unsent deliveries");
                // Other replicas may take them at once.
                self.store.announce(Topic::Deliveries).await;
            }
            Err(e) => {
                tracing::warn!(channel = %kind, error = %e, "cannot release leases; they will expire")
            }
        }
    }

    /// One step at `now`: claims what is due (as many as the free slots and the queue take, a
    /// single probe when the channel is paused and the probe is due), starts sends in the free
    /// slots while this worker's hold is known good, and says when the next thing is due. The
    /// sends run on; their outcomes go to the recorder ([`Dispatcher::finish_sends`] when
    /// stepping by hand). A failed claim starts nothing and returns the error.
    pub async fn step(&mut self, now: Timestamp) -> Result<Dispatched, StoreError> {
        let kind = self.channel.kind();
        self.leases.start(now);
        while self.in_flight.try_join_next().is_some() {}
        self.take_handed_over();
        let ahead = self.take_claimed_ahead(now);
        let mut done = Dispatched {
            // What the pipeline claimed for this worker goes first: it was claimed first.
            claimed: std::mem::take(&mut self.handed) + ahead,
            ..Dispatched::default()
        };
        // Deliveries just handed over start before this worker asks the store for more (the
        // next step, at once, does): a desk's message does not wait for a claim of its own.
        let handed_over = done.claimed > 0;
        // While the channel is paused, one delivery at a time is claimed, when its probe is
        // due, and nothing else is sent.
        let pause = self.pauses.get(kind);
        let probe_due = pause
            .as_ref()
            .is_none_or(|p| self.in_flight.is_empty() && now >= p.next_probe);
        // A short claim does not mean the outbox is drained: other replicas may have held some
        // rows for a moment. Only an empty one stops claiming.
        // A claim ahead still running will wake this worker when it is done.
        let mut maybe_more = self.ahead.is_none();
        // When the next delivery is due, as a reader saw it before this step's claim.
        let mut peeked = None;
        if !handed_over
            && self.ahead.is_none()
            && self.queue.len() < self.concurrency.min(self.prefetch)
            && (pause.is_none() || (self.queue.is_empty() && probe_due))
            && self.due(kind, now, &mut peeked).await
        {
            let want = if pause.is_some() {
                1
            } else {
                (self.prefetch - self.queue.len()) as u32
            };
            let lease_until = later_by(now, self.config.lease);
            let claimed = self
                .store
                .claim_deliveries(kind, want, now, lease_until, &self.owner)
                .await?;
            maybe_more = !claimed.is_empty();
            // The look said something was due; what the claim found says the rest.
            peeked = None;
            if claimed.len() < want as usize {
                // Fewer were due (or free) than asked for: the next claims wait for the queue to
                // empty, as they did before claims ahead, for a poll interval.
                self.ahead_after = Some(later_by(now, self.config.poll_interval));
            } else {
                // All it asked for: more may be due, so claims ahead may begin at once, even
                // within a poll interval of an idle spell's look or empty claim.
                self.ahead_after = None;
            }
            done.claimed += claimed.len();
            self.held.add(claimed.iter().map(|d| d.id));
            self.queue.extend(claimed.into_iter().map(|d| (d, now)));
        } else if peeked.is_some() {
            // Nothing due: the claim was not made, and no claim ahead is made for a poll
            // interval, as after a claim that found less than it asked for.
            maybe_more = false;
            self.ahead_after = Some(later_by(now, self.config.poll_interval));
        }
        while self.in_flight.len() < self.concurrency {
            let Some((delivery, claimed_at)) = self.queue.pop_front() else {
                break;
            };
            let held_since = self.leases.held_since(claimed_at);
            if elapsed(held_since, now).is_some_and(|d| d > self.config.lease / 2) {
                // Too late to start safely: hand it back, the attempt not counted.
                let _ = self
                    .results
                    .send(outcome_of(&delivery, DeliveryOutcome::Released));
                done.handed_back += 1;
                continue;
            }
            if let Some(p) = self.pauses.get(kind)
                && !(self.in_flight.is_empty() && now >= p.next_probe)
            {
                let error = format!("channel paused: credentials refused: {}", p.reason);
                let _ = self
                    .results
                    .send(outcome_of(&delivery, DeliveryOutcome::Paused { error }));
                done.handed_back += 1;
                continue;
            }
            let message = self.message(delivery.message_id).await;
            let task = Send {
                channel: self.channel.clone(),
                links: self.links.clone(),
                limiter: self.limiter.clone(),
                config: self.config.clone(),
                results: self.results.clone(),
                pauses: self.pauses.clone(),
            };
            self.in_flight.spawn(task.run(delivery, message));
            done.started += 1;
        }
        done.in_flight = self.in_flight.len();
        self.publish_queued();
        if self.queue.is_empty() && maybe_more && pause.is_none() {
            done.more = true;
            done.next = now;
            return Ok(done);
        }
        let every = Leases::every(self.config.lease);
        let wait = if let Some(p) = &pause {
            // Not sooner than a quarter of a lease, even with the probe due and nothing to
            // send: a paused channel must not poll the store in a loop.
            until(now, p.next_probe).max(every)
        } else if self.in_flight.is_empty() && self.queue.is_empty() {
            match peeked {
                Some(next) => self.wait_for(next, now),
                None => self.idle_wait(kind, now).await,
            }
        } else {
            self.config.poll_interval
        }
        // Leases are renewed, and others' expired ones taken back, every quarter of a lease.
        .min(every);
        done.next = later_by(now, wait);
        Ok(done)
    }

    /// Claims the next deliveries in the background while the queue still feeds the sends, so
    /// that a fan-out's sends do not stop for each claim (a claim of hundreds of rows takes
    /// milliseconds): when the queue, not empty, has fallen under half of what is claimed at
    /// once, no claim ahead is running, the channel is not paused, and neither a short or
    /// failed claim (ahead or the step's own) nor a look that found nothing due came since the
    /// last full claim (else not before a poll interval). What it claims joins the queue at the next
    /// step, as held since `now`, and the worker is woken; a pause that began
    /// meanwhile hands it back untried, as it does the rest of the queue. [`Dispatcher::run`]
    /// calls it after every step; a caller that steps the dispatcher itself decides.
    pub fn claim_ahead(&mut self, now: Timestamp) -> bool {
        let kind = self.channel.kind();
        if self.ahead.is_some()
            || self.queue.is_empty()
            || self.queue.len() >= self.prefetch / 2
            || self.pauses.get(kind).is_some()
            || self.ahead_after.is_some_and(|after| now < after)
        {
            return false;
        }
        // What the pipeline has handed over and this worker has not taken yet counts as queued.
        let waiting = self.queue.len() + self.in_inbox.load(Ordering::Relaxed);
        let want = self.prefetch.saturating_sub(waiting) as u32;
        if want == 0 {
            return false;
        }
        let store = self.store.clone();
        let owner = self.owner.clone();
        let wake = self.wake.clone();
        let lease_until = later_by(now, self.config.lease);
        let (claimed, result) = oneshot::channel();
        tokio::spawn(async move {
            let _ = claimed.send(
                store
                    .claim_deliveries(kind, want, now, lease_until, &owner)
                    .await,
            );
            wake.notify_one();
        });
        self.ahead = Some((result, now, want as usize));
        self.ahead_after = None;
        self.publish_queued();
        true
    }

    /// Tells the pipeline how many deliveries wait here: the queue, and what a claim ahead
    /// still running asked for, so that what it hands over keeps the queue within a claim.
    fn publish_queued(&self) {
        let ahead = self.ahead.as_ref().map_or(0, |(_, _, want)| *want);
        self.queued
            .store(self.queue.len() + ahead, Ordering::Relaxed);
    }

    /// Queues what a finished claim ahead claimed, as held since its moment; returns how many.
    fn take_claimed_ahead(&mut self, now: Timestamp) -> usize {
        let Some((result, at, want)) = self.ahead.as_mut() else {
            return 0;
        };
        let (at, want) = (*at, *want);
        let claimed = match result.try_recv() {
            Err(oneshot::error::TryRecvError::Empty) => return 0,
            Ok(claimed) => claimed,
            // The task ended without a word: only a panic does that.
            Err(oneshot::error::TryRecvError::Closed) => Err(StoreError::Unavailable(
                "the claim ahead stopped before it answered".into(),
            )),
        };
        self.ahead = None;
        let poll_later = later_by(now, self.config.poll_interval);
        match claimed {
            Ok(claimed) => {
                let n = claimed.len();
                if n < want {
                    // Fewer were due (or free) than asked for: no claim ahead for a while.
                    self.ahead_after = Some(poll_later);
                }
                self.leases.joined(at);
                self.held.add(claimed.iter().map(|d| d.id));
                self.queue.extend(claimed.into_iter().map(|d| (d, at)));
                n
            }
            Err(e) => {
                tracing::warn!(channel = %self.channel.kind(), error = %e, "cannot claim deliveries ahead; claiming when the queue is empty");
                self.ahead_after = Some(poll_later);
                0
            }
        }
    }

    /// How long to wait with nothing in flight: until the next retry is due, at most the poll
    /// interval.
    async fn idle_wait(&self, kind: ChannelKind, now: Timestamp) -> Duration {
        match self.store.next_attempt_at(kind).await {
            Ok(next) => self.wait_for(next, now),
            Err(_) => self.config.poll_interval,
        }
    }

    /// How long an idle worker waits for the next delivery, due at `next`.
    fn wait_for(&self, next: Option<Timestamp>, now: Timestamp) -> Duration {
        next.map_or(self.config.poll_interval, |at| {
            until(now, at).clamp(Duration::from_millis(5), self.config.poll_interval)
        })
    }

    /// Whether a delivery is due, as a reader sees it (the next one's time goes in `peeked`):
    /// a claim takes the writer, which on SQLite is the one connection the pipeline and the
    /// outcomes also write through, even when it finds nothing. What makes a delivery due
    /// after this look rings the worker's bell, or is its own time, which the wait keeps. A
    /// reader that fails says yes: the claim will tell.
    async fn due(
        &self,
        kind: ChannelKind,
        now: Timestamp,
        peeked: &mut Option<Option<Timestamp>>,
    ) -> bool {
        match self.store.next_attempt_at(kind).await {
            Ok(next) => {
                *peeked = Some(next);
                next.is_some_and(|at| at <= now)
            }
            Err(_) => true,
        }
    }

    fn remember(&mut self, m: Arc<MessageRow>) {
        if self.messages.len() >= 256 {
            self.messages.clear();
        }
        self.messages.insert(m.id, m);
    }

    async fn message(&mut self, id: i64) -> Option<Arc<MessageRow>> {
        if let Some(m) = self.messages.get(&id) {
            return Some(m.clone());
        }
        match self.store.message(id).await {
            Ok(Some(m)) => {
                let m = Arc::new(m);
                self.remember(m.clone());
                Some(m)
            }
            Ok(None) => None,
            Err(e) => {
                tracing::warn!(message = id, error = %e, "cannot load message");
                None
            }
        }
    }
}
