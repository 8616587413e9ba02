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
//! delivery it holds (queued, in flight, or sent with the outcome not yet written), and outcomes
//! are fenced by the claim they belong to. A delivery that waited in the local queue too long to
//! start safely is handed back without counting an attempt.

mod backoff;
mod rate;

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use jiff::Timestamp;
use tokio::sync::{Notify, mpsc};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

pub use backoff::Backoff;
pub use rate::RateLimiter;

use crate::channel::{Channel, Outgoing, SendError};
use crate::render::Placeholders;
use crate::store::{ClaimedDelivery, DeliveryOutcome, MessageRow, Outcome, Store, Topic};
use crate::unsubscribe::UnsubscribeLinks;

#[derive(Debug, Clone)]
pub struct OutboxConfig {
    pub lease: Duration,
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
    store: Arc<dyn Store>,
    channel: Arc<dyn Channel>,
    config: OutboxConfig,
    owner: String,
    wake: Arc<Notify>,
    links: UnsubscribeLinks,
    limiter: Option<Arc<RateLimiter>>,
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

impl Dispatcher {
    pub fn new(
        store: Arc<dyn Store>,
        channel: Arc<dyn Channel>,
        config: OutboxConfig,
        owner: String,
        wake: Arc<Notify>,
        links: UnsubscribeLinks,
        limiter: Option<Arc<RateLimiter>>,
    ) -> Dispatcher {
        Dispatcher {
            store,
            channel,
            config,
            owner,
            wake,
            links,
            limiter,
        }
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
        // Each claimed delivery with the time by which it must have started: half the lease, so a
        // send never runs while its lease could expire and another claim take it.
        let mut queue: VecDeque<(ClaimedDelivery, tokio::time::Instant)> = VecDeque::new();
        let mut maybe_more = true;
        let mut last_reclaim = tokio::time::Instant::now();
        let mut last_renewal = tokio::time::Instant::now();
        loop {
            self.keep_leases(&held, &mut last_renewal, &mut last_reclaim)
                .await;
            while in_flight.try_join_next().is_some() {}
            if maybe_more && queue.len() < concurrency.min(prefetch) {
                let want = (prefetch - queue.len()) as u32;
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
                        let start_by = tokio::time::Instant::now() + self.config.lease / 2;
                        queue.extend(claimed.into_iter().map(|d| (d, start_by)));
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
                let Some((delivery, start_by)) = queue.pop_front() else {
                    break;
                };
                if tokio::time::Instant::now() > start_by {
                    // Too late to start safely: hand it back, the attempt not counted.
                    let _ = results.send(outcome_of(&delivery, DeliveryOutcome::Released));
                    continue;
                }
                let message = self.message(&mut messages, delivery.message_id).await;
                let task = Send {
                    channel: self.channel.clone(),
                    links: self.links.clone(),
                    limiter: self.limiter.clone(),
                    config: self.config.clone(),
                    results: results.clone(),
                };
                in_flight.spawn(task.run(delivery, message));
            }
            if queue.is_empty() && maybe_more {
                continue;
            }
            let wait = if in_flight.is_empty() && queue.is_empty() {
                self.idle_wait(kind).await
            } else {
                self.config.poll_interval
            };
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

    /// Renews the leases this worker holds (every third of a lease), and takes back the
    /// deliveries of workers that stopped (every poll interval).
    async fn keep_leases(
        &self,
        held: &Held,
        last_renewal: &mut tokio::time::Instant,
        last_reclaim: &mut tokio::time::Instant,
    ) {
        let kind = self.channel.kind();
        if last_renewal.elapsed() >= self.config.lease / 3 {
            *last_renewal = tokio::time::Instant::now();
            let ids = held.ids();
            if let Err(e) = self
                .store
                .renew_leases(
                    &self.owner,
                    &ids,
                    later_by(Timestamp::now(), self.config.lease),
                )
                .await
            {
                tracing::warn!(channel = %kind, error = %e, held = ids.len(), "cannot renew leases");
            }
        }
        if last_reclaim.elapsed() >= self.config.poll_interval {
            *last_reclaim = tokio::time::Instant::now();
            match self
                .store
                .reclaim_expired_leases(Timestamp::now(), &self.owner)
                .await
            {
                Ok(0) => {}
                Ok(n) => {
                    tracing::warn!(channel = %kind, deliveries = n, "reclaimed deliveries whose worker stopped")
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

/// One send, from filling the placeholders to reporting the outcome.
struct Send {
    channel: Arc<dyn Channel>,
    links: UnsubscribeLinks,
    limiter: Option<Arc<RateLimiter>>,
    config: OutboxConfig,
    results: mpsc::UnboundedSender<Outcome>,
}

impl Send {
    async fn run(self, delivery: ClaimedDelivery, message: Option<Arc<MessageRow>>) {
        let kind = self.channel.kind();
        let outcome = match message {
            // The message row cannot be read: retry later rather than drop.
            None => self.retry_or_fail(&delivery, None, "message could not be loaded".into()),
            Some(message) => self.send(&delivery, &message).await,
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
        // Stay well inside the lease, so that nobody else takes the delivery while it is in flight.
        let budget = self.config.lease / 2;
        match tokio::time::timeout(budget, self.channel.send(&outgoing)).await {
            Ok(Ok(receipt)) => DeliveryOutcome::Sent(receipt),
            Ok(Err(SendError::Retry { after, reason })) => {
                self.retry_or_fail(delivery, after, reason)
            }
            Ok(Err(SendError::Reject { reason })) => DeliveryOutcome::Failed { error: reason },
            Ok(Err(SendError::RecipientGone { reason })) => DeliveryOutcome::Gone { error: reason },
            Ok(Err(SendError::Throttled { after })) => DeliveryOutcome::Deferred {
                at: later_by(Timestamp::now(), after),
            },
            Err(_) => self.retry_or_fail(delivery, None, format!("no answer within {budget:?}")),
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

/// Writes outcomes in batches: whatever finished while the previous batch was being written goes
/// into the next one. A failing store is retried until it answers, so no outcome is dropped.
/// Each batch written wakes the dispatcher: a delivery that waited behind one just finished (the
/// next update to the same recipient) is now due.
async fn record(
    store: Arc<dyn Store>,
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
