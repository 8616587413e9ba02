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

mod backoff;
pub mod pause;

use std::collections::{HashMap, HashSet, VecDeque};
use std::panic::AssertUnwindSafe;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::FutureExt;
use jiff::Timestamp;
use tokio::sync::{Notify, mpsc};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

pub use backoff::Backoff;
pub use pause::Pauses;

use crate::channel::rate::RateLimiter;
use crate::channel::{Channel, Outgoing, SendError};
use crate::render::Placeholders;
use crate::store::{ClaimedDelivery, DeliveryOutcome, MessageRow, OutboxStore, Outcome, Topic};
use crate::unsubscribe::UnsubscribeLinks;

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

pub struct Dispatcher {
    store: Arc<dyn OutboxStore>,
    channel: Arc<dyn Channel>,
    config: OutboxConfig,
    owner: String,
    wake: Arc<Notify>,
    links: UnsubscribeLinks,
    limiter: Option<Arc<RateLimiter>>,
    pauses: Pauses,
}

/// Deliveries this worker holds a lease on and has not yet recorded an outcome for.
#[derive(Clone, Default)]
struct Held(Arc<Mutex<HashSet<i64>>>);

impl Held {
    fn add(&self, ids: impl IntoIterator<Item = i64>) {
        if let Ok(mut held) = self.0.lock() {
            held.extend(ids);
        }
    }

    fn remove(&self, outcomes: &[Outcome]) {
        if let Ok(mut held) = self.0.lock() {
            for o in outcomes {
                held.remove(&o.delivery);
            }
        }
    }

    fn ids(&self) -> Vec<i64> {
        self.0
            .lock()
            .map(|held| held.iter().copied().collect())
            .unwrap_or_default()
    }
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

/// What every dispatcher of this process shares.
#[derive(Clone)]
pub struct Crew {
    pub store: Arc<dyn OutboxStore>,
    /// This replica, as leases name it.
    pub owner: String,
    pub links: UnsubscribeLinks,
    pub pauses: Pauses,
}

impl Dispatcher {
    pub fn new(
        crew: &Crew,
        channel: Arc<dyn Channel>,
        config: OutboxConfig,
        wake: Arc<Notify>,
        limiter: Option<Arc<RateLimiter>>,
    ) -> Dispatcher {
        Dispatcher {
            store: crew.store.clone(),
            channel,
            config,
            owner: crew.owner.clone(),
            wake,
            links: crew.links.clone(),
            limiter,
            pauses: crew.pauses.clone(),
        }
    }

    /// The channel this dispatcher sends through.
    pub fn channel(&self) -> Arc<dyn Channel> {
        self.channel.clone()
    }

    pub async fn run(self, shutdown: CancellationToken) {
        let kind = self.channel.kind();
        let (results, received) = mpsc::unbounded_channel::<Outcome>();
        let held = Held::default();
        let recorder = tokio::spawn(record(
            self.store.clone(),
            self.owner.clone(),
            received,
            self.wake.clone(),
            held.clone(),
        ));
        let mut in_flight: JoinSet<()> = JoinSet::new();
        let mut messages: HashMap<i64, Arc<MessageRow>> = HashMap::new();
        let concurrency = self.config.concurrency.max(1);
        // Deliveries are claimed ahead of the free send slots, so that one claim serves many
        // sends; never more than can go out well within the lease when sends are paced.
        let prefetch = match &self.limiter {
            None => (self.config.batch_size as usize).max(concurrency),
            Some(l) => l
                .within(self.config.lease / 4)
                .clamp(1, self.config.batch_size as usize),
        };
        // Each claimed delivery with the moment it was claimed: it may start while the claim, or the
        // last renewal of every lease this worker holds, is less than half a lease old.
        let mut queue: VecDeque<(ClaimedDelivery, tokio::time::Instant)> = VecDeque::new();
        let mut maybe_more = true;
        let mut leases = Leases::new(tokio::time::Instant::now());
        loop {
            self.keep_leases(&held, &mut leases).await;
            while in_flight.try_join_next().is_some() {}
            // While the channel is paused, one delivery at a time is claimed, when its probe is
            // due, and nothing else is sent.
            let pause = self.pauses.get(kind);
            let probe_due = |in_flight: &JoinSet<()>| {
                pause
                    .as_ref()
                    .is_none_or(|p| in_flight.is_empty() && Timestamp::now() >= p.next_probe)
            };
            if maybe_more
                && queue.len() < concurrency.min(prefetch)
                && (pause.is_none() || (queue.is_empty() && probe_due(&in_flight)))
            {
                let want = if pause.is_some() {
                    1
                } else {
                    (prefetch - queue.len()) as u32
                };
                let now = Timestamp::now();
                let lease_until = later_by(now, self.config.lease);
                match self
                    .store
                    .claim_deliveries(kind, want, now, lease_until, &self.owner)
                    .await
                {
                    Ok(claimed) => {
                        // A short claim does not mean the outbox is drained: other replicas may
                        // have held some rows for a moment. Only an empty one stops claiming.
                        maybe_more = !claimed.is_empty();
                        held.add(claimed.iter().map(|d| d.id));
                        let claimed_at = tokio::time::Instant::now();
                        queue.extend(claimed.into_iter().map(|d| (d, claimed_at)));
                    }
                    Err(e) => {
                        tracing::warn!(channel = %kind, error = %e, "cannot claim deliveries; retrying shortly");
                        tokio::select! {
                            _ = shutdown.cancelled() => break,
                            _ = tokio::time::sleep(Duration::from_millis(500)) => {}
                        }
                        continue;
                    }
                }
            }
            while in_flight.len() < concurrency {
                let Some((delivery, claimed_at)) = queue.pop_front() else {
                    break;
                };
                let held_since = claimed_at.max(leases.renewed);
                if held_since.elapsed() > self.config.lease / 2 {
                    // Too late to start safely: hand it back, the attempt not counted.
                    let _ = results.send(outcome_of(&delivery, DeliveryOutcome::Released));
                    continue;
                }
                if let Some(p) = self.pauses.get(kind)
                    && !(in_flight.is_empty() && Timestamp::now() >= p.next_probe)
                {
                    let error = format!("channel paused: credentials refused: {}", p.reason);
                    let _ = results.send(outcome_of(&delivery, DeliveryOutcome::Paused { error }));
                    continue;
                }
                let message = self.message(&mut messages, delivery.message_id).await;
                let task = Send {
                    channel: self.channel.clone(),
                    links: self.links.clone(),
                    limiter: self.limiter.clone(),
                    config: self.config.clone(),
                    results: results.clone(),
                    pauses: self.pauses.clone(),
                };
                in_flight.spawn(task.run(delivery, message));
            }
            if queue.is_empty() && maybe_more && pause.is_none() {
                continue;
            }
            let wait = if let Some(p) = &pause {
                // Not sooner than a quarter of a lease, even with the probe due and nothing to
                // send: a paused channel must not poll the store in a loop.
                Duration::try_from(p.next_probe.duration_since(Timestamp::now()))
                    .unwrap_or(Duration::ZERO)
                    .max(Leases::every(self.config.lease))
            } else if in_flight.is_empty() && queue.is_empty() {
                self.idle_wait(kind).await
            } else {
                self.config.poll_interval
            }
            // Leases are renewed, and others' expired ones taken back, every quarter of a lease.
            .min(Leases::every(self.config.lease));
            tokio::select! {
                biased;
                _ = shutdown.cancelled() => break,
                Some(_) = in_flight.join_next(), if !in_flight.is_empty() => maybe_more = true,
                _ = self.wake.notified() => maybe_more = true,
                _ = tokio::time::sleep(wait) => maybe_more = true,
            }
        }
        if !queue.is_empty() {
            tracing::info!(channel = %kind, unsent = queue.len(), "handing back claimed deliveries not yet started");
        }
        let pending = in_flight.len();
        if pending > 0 {
            tracing::info!(channel = %kind, in_flight = pending, "finishing in-flight sends before shutdown");
        }
        let drained = tokio::time::timeout(self.config.shutdown_timeout, async {
            while in_flight.join_next().await.is_some() {}
        })
        .await;
        if drained.is_err() {
            tracing::warn!(channel = %kind, abandoned = in_flight.len(), "shutdown timeout: abandoning sends still in flight");
            in_flight.abort_all();
        }
        drop(results);
        let _ = recorder.await;
        match self.store.release_leases(&self.owner).await {
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

    /// Renews the leases this worker holds, and takes back the deliveries of workers that
    /// stopped, every quarter of a lease: a dead replica's claims are sent by another within
    /// about a lease and a quarter.
    async fn keep_leases(&self, held: &Held, leases: &mut Leases) {
        let kind = self.channel.kind();
        let every = Leases::every(self.config.lease);
        let started = tokio::time::Instant::now();
        if started.duration_since(leases.renewed) >= every {
            let ids = held.ids();
            if ids.is_empty() {
                leases.renewed = started;
            } else {
                match self
                    .store
                    .renew_leases(
                        &self.owner,
                        &ids,
                        later_by(Timestamp::now(), self.config.lease),
                    )
                    .await
                {
                    // Every lease still ours: the queue may go on starting. One missing (taken
                    // over while this worker stalled, or just recorded) and queued deliveries
                    // start only within half a lease of their own claim.
                    Ok(n) if n as usize >= ids.len() => leases.renewed = started,
                    Ok(_) => {}
                    Err(e) => {
                        tracing::warn!(channel = %kind, error = %e, held = ids.len(), "cannot renew leases")
                    }
                }
            }
        }
        if started.duration_since(leases.reclaimed) >= every {
            leases.reclaimed = started;
            match self
                .store
                .reclaim_expired_leases(Timestamp::now(), &self.owner)
                .await
            {
                Ok(0) => {}
                Ok(n) => {
                    tracing::warn!(channel = %kind, deliveries = n, "reclaimed deliveries whose worker stopped");
                    self.store.announce(Topic::Deliveries).await;
                }
                Err(e) => {
                    tracing::warn!(channel = %kind, error = %e, "cannot reclaim expired leases")
                }
            }
        }
    }

    /// How long to sleep with nothing in flight: until the next retry is due, at most the poll
    /// interval.
    async fn idle_wait(&self, kind: crate::domain::subscriber::ChannelKind) -> Duration {
        match self.store.next_attempt_at(kind).await {
            Ok(Some(at)) => {
                let until = at.duration_since(Timestamp::now());
                let until = Duration::try_from(until).unwrap_or(Duration::ZERO);
                until.clamp(Duration::from_millis(5), self.config.poll_interval)
            }
            _ => self.config.poll_interval,
        }
    }

    async fn message(
        &self,
        cache: &mut HashMap<i64, Arc<MessageRow>>,
        id: i64,
    ) -> Option<Arc<MessageRow>> {
        if let Some(m) = cache.get(&id) {
            return Some(m.clone());
        }
        match self.store.message(id).await {
            Ok(Some(m)) => {
                if cache.len() >= 256 {
                    cache.clear();
                }
                let m = Arc::new(m);
                cache.insert(id, m.clone());
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

/// When this worker last made sure of its leases.
struct Leases {
    /// The last renewal that succeeded (or found nothing to renew), as of when it started.
    renewed: tokio::time::Instant,
    /// The last look for other workers' expired leases.
    reclaimed: tokio::time::Instant,
}

impl Leases {
    fn new(now: tokio::time::Instant) -> Leases {
        Leases {
            renewed: now,
            reclaimed: now,
        }
    }

    fn every(lease: Duration) -> Duration {
        lease / 4
    }
}

/// One send, from filling the placeholders to reporting the outcome.
struct Send {
    channel: Arc<dyn Channel>,
    links: UnsubscribeLinks,
    limiter: Option<Arc<RateLimiter>>,
    config: OutboxConfig,
    results: mpsc::UnboundedSender<Outcome>,
    pauses: Pauses,
}

impl Send {
    async fn run(self, delivery: ClaimedDelivery, message: Option<Arc<MessageRow>>) {
        let kind = self.channel.kind();
        let outcome = match message {
            // The message row cannot be read: retry later rather than drop.
            None => self.retry_or_fail(&delivery, None, "message could not be loaded".into()),
            // A panic in a channel (or in filling the message) fails this delivery only.
            Some(message) => AssertUnwindSafe(self.send(&delivery, &message))
                .catch_unwind()
                .await
                .unwrap_or_else(|panic| DeliveryOutcome::Failed {
                    error: format!("the {kind} channel failed: {}", panic_message(&*panic)),
                }),
        };
        let label = match &outcome {
            DeliveryOutcome::Sent { .. } => {
                let latency = Timestamp::now()
                    .duration_since(delivery.origin_at)
                    .as_secs_f64()
                    .max(0.0);
                metrics::histogram!("banditore_signal_to_sent_seconds", "channel" => kind.as_str())
                    .record(latency);
                "sent"
            }
            DeliveryOutcome::Retry { error, .. } => {
                tracing::warn!(delivery = delivery.id, channel = %kind, attempt = delivery.attempts, %error, "delivery failed; will retry");
                "retry"
            }
            DeliveryOutcome::Failed { error } => {
                tracing::error!(delivery = delivery.id, channel = %kind, attempt = delivery.attempts, %error, "delivery failed for good");
                "failed"
            }
            DeliveryOutcome::Gone { error } => {
                tracing::warn!(delivery = delivery.id, channel = %kind, %error, "recipient address is gone");
                "gone"
            }
            DeliveryOutcome::Released => "released",
            DeliveryOutcome::Paused { .. } => "paused",
            DeliveryOutcome::Deferred { .. } => {
                tracing::info!(delivery = delivery.id, channel = %kind, "provider asked to slow down; deferred");
                "deferred"
            }
        };
        metrics::counter!("banditore_deliveries_total", "channel" => kind.as_str(), "outcome" => label).increment(1);
        let _ = self.results.send(outcome_of(&delivery, outcome));
    }

    async fn send(&self, delivery: &ClaimedDelivery, message: &MessageRow) -> DeliveryOutcome {
        let Some(address_id) = delivery.address_id else {
            return DeliveryOutcome::Failed {
                error: "the subscriber was deleted".into(),
            };
        };
        let unsubscribe_url = self
            .links
            .url(address_id, delivery.channel, &delivery.recipient);
        let manage_url = self
            .links
            .manage_url(address_id, delivery.channel, &delivery.recipient);
        let fill = Placeholders {
            recipient_name: &delivery.subscriber_name,
            unsubscribe_url: &unsubscribe_url,
            manage_url: &manage_url,
        };
        let outgoing = Outgoing {
            delivery_id: delivery.id,
            incident_id: delivery.incident_id,
            attempt: delivery.attempts,
            recipient: delivery.recipient.clone(),
            recipient_name: delivery.subscriber_name.clone(),
            subject: message.subject.as_deref().map(|s| fill.fill(s)),
            text: fill.fill_as(&message.body, self.channel.body_markup()),
            html: message.html.as_deref().map(|h| fill.fill_html(h)),
            unsubscribe_url,
        };
        if let Some(limiter) = &self.limiter {
            limiter.acquire().await;
        }
        // The lease is renewed while the send runs; this bounds a send that never ends.
        let budget = self.config.send_timeout;
        match tokio::time::timeout(budget, self.channel.send(&outgoing)).await {
            Ok(Ok(receipt)) => {
                self.resumed();
                DeliveryOutcome::Sent(receipt)
            }
            Ok(Err(SendError::Retry { after, reason })) => {
                self.retry_or_fail(delivery, after, reason)
            }
            Ok(Err(SendError::Reject { reason })) => DeliveryOutcome::Failed { error: reason },
            Ok(Err(SendError::RecipientGone { reason })) => {
                // The provider looked the recipient up: it took the credentials.
                self.resumed();
                DeliveryOutcome::Gone { error: reason }
            }
            Ok(Err(SendError::Throttled { after })) => DeliveryOutcome::Deferred {
                at: later_by(Timestamp::now(), after),
            },
            Ok(Err(SendError::Credentials { reason })) => {
                let kind = self.channel.kind();
                if let Some(pause::Change::Paused(_, p)) =
                    self.pauses.refused(kind, &reason, Timestamp::now())
                {
                    tracing::error!(channel = %kind, %reason, next_probe = %p.next_probe, "channel paused: the provider refuses its credentials; deliveries stay pending and are tried again when they are accepted");
                    metrics::gauge!("banditore_channel_paused", "channel" => kind.as_str())
                        .set(1.0);
                    metrics::counter!("banditore_channel_pauses_total", "channel" => kind.as_str())
                        .increment(1);
                }
                DeliveryOutcome::Paused {
                    error: format!("channel paused: credentials refused: {reason}"),
                }
            }
            Err(_) => self.retry_or_fail(delivery, None, format!("no answer within {budget:?}")),
        }
    }

    /// The provider took the channel's credentials: a pause, if any, is over.
    fn resumed(&self) {
        let kind = self.channel.kind();
        if self.pauses.accepted(kind).is_some() {
            tracing::warn!(channel = %kind, "channel resumed: the provider accepts its credentials again");
            metrics::gauge!("banditore_channel_paused", "channel" => kind.as_str()).set(0.0);
        }
    }

    fn retry_or_fail(
        &self,
        delivery: &ClaimedDelivery,
        after: Option<Duration>,
        reason: String,
    ) -> DeliveryOutcome {
        if delivery.attempts >= self.config.max_attempts {
            return DeliveryOutcome::Failed {
                error: format!("gave up after {} attempts: {reason}", delivery.attempts),
            };
        }
        let delay = self.config.backoff.delay(delivery.attempts, after);
        DeliveryOutcome::Retry {
            at: later_by(Timestamp::now(), delay),
            error: reason,
        }
    }
}

/// What a panic said, for the delivery's error.
fn panic_message(panic: &(dyn std::any::Any + std::marker::Send)) -> String {
    let text = panic
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a panic without a message".into());
    format!(
        "internal error: {}",
        text.chars().take(300).collect::<String>()
    )
}

/// Writes outcomes in batches: whatever finished while the previous batch was being written goes
/// into the next one. A failing store is retried until it answers, so no outcome is dropped.
/// Each batch written wakes the dispatcher: a delivery that waited behind one just finished (the
/// next update to the same recipient) is now due.
async fn record(
    store: Arc<dyn OutboxStore>,
    owner: String,
    mut received: mpsc::UnboundedReceiver<Outcome>,
    wake: Arc<Notify>,
    held: Held,
) {
    let mut batch = Vec::with_capacity(256);
    while received.recv_many(&mut batch, 256).await > 0 {
        let mut delay = Duration::from_millis(100);
        loop {
            match store
                .record_outcomes(&owner, &batch, Timestamp::now())
                .await
            {
                Ok(()) => {
                    held.remove(&batch);
                    wake.notify_one();
                    break;
                }
                Err(e) => {
                    tracing::warn!(error = %e, outcomes = batch.len(), "cannot record delivery outcomes; retrying");
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(Duration::from_secs(5));
                }
            }
        }
        batch.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::channel::Receipt;
    use crate::domain::subscriber::ChannelKind;

    /// A channel that panics on its first send and works afterwards.
    struct Fragile(std::sync::atomic::AtomicBool);

    #[async_trait::async_trait]
    impl Channel for Fragile {
        fn kind(&self) -> ChannelKind {
            ChannelKind::Email
        }

        async fn send(&self, msg: &Outgoing) -> Result<Receipt, SendError> {
            if !self.0.swap(true, std::sync::atomic::Ordering::SeqCst) {
                panic!("header value for {} is invalid", msg.recipient);
            }
            Ok(Receipt::default())
        }
    }

    fn delivery(id: i64) -> ClaimedDelivery {
        ClaimedDelivery {
            id,
            message_id: 1,
            incident_id: 1,
            channel: ChannelKind::Email,
            recipient: "cup@asl.example".into(),
            address_id: Some(1),
            subscriber_name: "CUP".into(),
            attempts: 1,
            origin_at: Timestamp::now(),
        }
    }

    #[tokio::test]
    async fn a_panic_in_a_send_fails_that_delivery_and_the_next_send_goes_out() {
        let (results, mut received) = mpsc::unbounded_channel();
        let channel: Arc<dyn Channel> = Arc::new(Fragile(Default::default()));
        let message = Arc::new(MessageRow {
            id: 1,
            update_id: 1,
            channel: ChannelKind::Email,
            language: "it".into(),
            subject: Some("CUP".into()),
            body: "CUP giù".into(),
            html: None,
        });
        let send = || Send {
            channel: channel.clone(),
            links: UnsubscribeLinks::new(b"key", "https://banditore.example"),
            limiter: None,
            config: OutboxConfig {
                lease: Duration::from_secs(3),
                send_timeout: Duration::from_secs(5),
                batch_size: 10,
                max_attempts: 3,
                backoff: Backoff {
                    initial: Duration::from_secs(1),
                    max: Duration::from_secs(1),
                },
                poll_interval: Duration::from_secs(1),
                concurrency: 1,
                shutdown_timeout: Duration::from_secs(1),
            },
            results: results.clone(),
            pauses: Pauses::new(Duration::from_secs(1), Duration::from_secs(1)),
        };
        send().run(delivery(1), Some(message.clone())).await;
        send().run(delivery(2), Some(message)).await;
        let first = received.recv().await.unwrap();
        assert_eq!(first.delivery, 1);
        match first.outcome {
            DeliveryOutcome::Failed { error } => {
                assert!(
                    error.contains("header value for cup@asl.example is invalid"),
                    "{error}"
                )
            }
            other => panic!("{other:?}"),
        }
        let second = received.recv().await.unwrap();
        assert_eq!(second.delivery, 2);
        assert!(matches!(second.outcome, DeliveryOutcome::Sent(_)));
    }
}
