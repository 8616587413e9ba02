//! The dispatcher stepped by hand against a real SQLite store, with time given explicitly: what
//! a step claims and starts, when it says the next thing is due, how leases are kept and handed
//! back, a paused channel's probe, a panicking channel, and shutdown.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use jiff::SignedDuration;
use tokio::sync::Semaphore;

use super::*;
use crate::channel::{Outgoing, Receipt, SendError};
use crate::domain::subscriber::{SubscriberRules, SubscriberSpec};
use crate::domain::{IncidentStatus, Labels, Severity, UpdateKind};
use crate::store::{IncidentOrigin, NewDelivery, NewIncident, NewMessage, NewUpdate, Store};

/// An email channel whose sends wait for a permit (none until the test gives some, unless it
/// is open), report that they began, and go through.
struct Gated {
    permits: Semaphore,
    began: mpsc::UnboundedSender<String>,
    /// Each send's recipient and text, in the order they began.
    texts: std::sync::Mutex<Vec<(String, String)>>,
}

impl Gated {
    fn new(open: bool) -> (Arc<Gated>, mpsc::UnboundedReceiver<String>) {
        let (began, receiver) = mpsc::unbounded_channel();
        let permits = if open { Semaphore::MAX_PERMITS } else { 0 };
        let gated = Gated {
            permits: Semaphore::new(permits),
            began,
            texts: std::sync::Mutex::new(Vec::new()),
        };
        (Arc::new(gated), receiver)
    }
}

#[async_trait::async_trait]
impl Channel for Gated {
    fn kind(&self) -> ChannelKind {
        ChannelKind::Email
    }

    async fn send(&self, msg: &Outgoing) -> Result<Receipt, SendError> {
        let _ = self.began.send(msg.recipient.clone());
        if let Ok(mut texts) = self.texts.lock() {
            texts.push((msg.recipient.clone(), msg.text.clone()));
        }
        if let Ok(permit) = self.permits.acquire().await {
            permit.forget();
        }
        Ok(Receipt::default())
    }
}

/// An email channel that panics on its first send and works afterwards.
struct Fragile(AtomicBool);

#[async_trait::async_trait]
impl Channel for Fragile {
    fn kind(&self) -> ChannelKind {
        ChannelKind::Email
    }

    async fn send(&self, msg: &Outgoing) -> Result<Receipt, SendError> {
        if !self.0.swap(true, Ordering::SeqCst) {
            panic!("header value for {} is invalid", msg.recipient);
        }
        Ok(Receipt::default())
    }
}

fn config(lease_ms: u64, concurrency: usize) -> OutboxConfig {
    OutboxConfig {
        lease: Duration::from_millis(lease_ms),
        send_timeout: Duration::from_secs(5),
        batch_size: 10,
        max_attempts: 3,
        backoff: Backoff {
            initial: Duration::from_secs(1),
            max: Duration::from_secs(1),
        },
        poll_interval: Duration::from_secs(60),
        concurrency,
        shutdown_timeout: Duration::from_secs(5),
    }
}

/// Now, to the millisecond the store keeps.
fn t0() -> Timestamp {
    Timestamp::from_millisecond(Timestamp::now().as_millisecond()).unwrap()
}

fn after(t: Timestamp, ms: i64) -> Timestamp {
    t + SignedDuration::from_millis(ms)
}

struct Bench {
    _dir: tempfile::TempDir,
    store: Arc<dyn Store>,
    pauses: Pauses,
}

impl Bench {
    async fn new() -> Bench {
        let dir = tempfile::tempdir().unwrap();
        let store = crate::store::scratch(&dir).await;
        Bench {
            _dir: dir,
            store,
            pauses: Pauses::new(Duration::from_secs(10), Duration::from_secs(60)),
        }
    }

    /// The workers of the replica `owner` over this store.
    fn crew(&self, owner: &str) -> Crew {
        Crew {
            store: self.store.clone(),
            owner: owner.into(),
            links: UnsubscribeLinks::new(b"key", "https://banditore.example"),
            pauses: self.pauses.clone(),
        }
    }

    fn dispatcher(&self, channel: Arc<dyn Channel>, config: OutboxConfig) -> Dispatcher {
        let crew = self.crew("replica-a");
        Dispatcher::new(&crew, channel, config, Arc::new(Notify::new()), None)
    }

    /// One email delivery to each of `recipients`, due at `due`.
    async fn seed(&self, recipients: &[&str], due: Timestamp) {
        let spec: SubscriberSpec = serde_json::from_value(serde_json::json!({
            "name": "desk", "addresses": {"email": recipients}, "subscriptions": [{}]
        }))
        .unwrap();
        let valid = spec
            .validate(&SubscriberRules::new("it".to_owned().try_into().unwrap()))
            .unwrap();
        let id = self.store.create_subscriber(&valid, due).await.unwrap();
        let row = self.store.subscriber(id).await.unwrap().unwrap();
        let mut tx = self.store.begin().await.unwrap();
        let incident = tx
            .insert_incident(&NewIncident {
                group_key: format!("service=cup-{id}"),
                title: "CUP".into(),
                status: IncidentStatus::Investigating,
                severity: Severity::Major,
                origin: IncidentOrigin::Manual,
                labels: Labels::new(),
                opened_at: due,
                eval_at: None,
                pending_since: None,
            })
            .await
            .unwrap();
        let update = tx
            .insert_update(&NewUpdate {
                incident_id: incident.id,
                seq: 1,
                kind: UpdateKind::Opened,
                status: IncidentStatus::Investigating,
                severity: Severity::Major,
                title: "CUP".into(),
                signals: Vec::new(),
                body: None,
                author: None,
                created_at: due,
                origin_at: due,
                silent: false,
            })
            .await
            .unwrap();
        let message = tx
            .insert_message(&NewMessage {
                update_id: update.id,
                channel: ChannelKind::Email,
                language: "it".into(),
                audience: "internal".into(),
                subject: Some("CUP".into()),
                body: "CUP giù".into(),
                html: None,
                created_at: due,
            })
            .await
            .unwrap()
            .id;
        let deliveries: Vec<NewDelivery> = row
            .addresses
            .iter()
            .map(|a| NewDelivery {
                message_id: message,
                update_id: update.id,
                incident_id: incident.id,
                address_id: a.id,
                subscriber_name: "desk".into(),
                channel: ChannelKind::Email,
                recipient: a.address.clone(),
                origin_at: due,
                created_at: due,
            })
            .collect();
        tx.insert_deliveries(&deliveries).await.unwrap();
        tx.commit().await.unwrap();
    }

    async fn deliveries(&self, state: &str) -> i64 {
        let counts = self.store.counts().await.unwrap();
        counts
            .deliveries
            .get(&("email".to_owned(), state.to_owned()))
            .copied()
            .unwrap_or(0)
    }
}

/// Waits for the sends in flight and records their outcomes at `now`.
async fn settle(d: &mut Dispatcher, now: Timestamp) -> Vec<Outcome> {
    let outcomes = d.finish_sends().await;
    d.record(&outcomes, now).await.unwrap();
    outcomes
}

#[tokio::test]
async fn a_step_with_nothing_due_says_when_the_next_delivery_is_due() {
    let bench = Bench::new().await;
    let (channel, _) = Gated::new(true);
    let mut d = bench.dispatcher(channel, config(60_000, 1));
    let t = t0();
    // An empty outbox: a poll interval away, never more than a quarter of a lease.
    let step = d.step(t).await.unwrap();
    let idle = Dispatched {
        next: after(t, 15_000),
        ..Dispatched::default()
    };
    assert_eq!(step, idle);
    bench.seed(&["cup@asl.example"], after(t, 10_000)).await;
    let step = d.step(t).await.unwrap();
    let waiting = Dispatched {
        next: after(t, 10_000),
        ..Dispatched::default()
    };
    assert_eq!(step, waiting, "the delivery's own time");
    let step = d.step(after(t, 10_000)).await.unwrap();
    assert_eq!((step.claimed, step.started, step.more), (1, 1, true));
    let outcomes = settle(&mut d, after(t, 10_000)).await;
    assert!(matches!(
        outcomes[..],
        [Outcome {
            outcome: DeliveryOutcome::Sent(_),
            ..
        }]
    ));
    assert_eq!(bench.deliveries("sent").await, 1);
}

#[tokio::test]
async fn a_step_with_nothing_due_leaves_the_writer_to_the_other_stages() {
    let bench = Bench::new().await;
    let (channel, _) = Gated::new(true);
    let mut d = bench.dispatcher(channel, config(60_000, 1));
    let t = t0();
    bench.seed(&["cup@asl.example"], after(t, 10_000)).await;
    // The pipeline holds the writer (on SQLite the one connection that writes): a step that
    // has nothing to claim does not queue behind it.
    let pipeline = bench.store.begin().await.unwrap();
    let step = tokio::time::timeout(Duration::from_secs(10), d.step(t))
        .await
        .expect("the step does not wait for the writer")
        .unwrap();
    let waiting = Dispatched {
        next: after(t, 10_000),
        ..Dispatched::default()
    };
    assert_eq!(
        step, waiting,
        "the delivery's own time, read beside the writer"
    );
    drop(pipeline);
    let step = d.step(after(t, 10_000)).await.unwrap();
    assert_eq!((step.claimed, step.started), (1, 1), "{step:?}");
    settle(&mut d, after(t, 10_000)).await;
    assert_eq!(bench.deliveries("sent").await, 1);
}

#[tokio::test]
async fn a_claim_not_renewed_is_reclaimable_once_its_lease_has_run_out() {
    let bench = Bench::new().await;
    let (channel, _) = Gated::new(false);
    let mut d = bench.dispatcher(channel, config(3_000, 1));
    let t = t0();
    bench.seed(&["cup@asl.example"], t).await;
    let step = d.step(t).await.unwrap();
    assert_eq!((step.claimed, step.started, step.in_flight), (1, 1, 1));
    let reclaim = |at| bench.store.reclaim_expired_leases(at, "replica-b");
    // The lease runs until `t` + 3 s: another worker takes it back only after that.
    assert_eq!(reclaim(after(t, 3_000)).await.unwrap(), 0);
    assert_eq!(reclaim(after(t, 3_001)).await.unwrap(), 1);
    assert_eq!(bench.deliveries("pending").await, 1);
}

#[tokio::test]
async fn renewal_covers_a_send_in_flight_and_lets_queued_ones_start() {
    let bench = Bench::new().await;
    let (channel, mut began) = Gated::new(false);
    let mut d = bench.dispatcher(channel.clone(), config(3_000, 1));
    let t = t0();
    bench.seed(&["a@asl.example", "b@asl.example"], t).await;
    let step = d.step(t).await.unwrap();
    assert_eq!(
        (step.claimed, step.started),
        (2, 1),
        "one slot, two claimed"
    );
    assert_eq!(began.recv().await.unwrap(), "a@asl.example");
    // Before a quarter of a lease nothing is due; at a quarter both leases are renewed, the
    // send in flight and the queued delivery alike.
    assert_eq!(d.keep_leases(after(t, 700)).await, LeaseWork::default());
    let kept = d.keep_leases(after(t, 750)).await;
    assert_eq!(kept.renewed, 2);
    let reclaim = |at| bench.store.reclaim_expired_leases(at, "replica-b");
    assert_eq!(reclaim(after(t, 3_001)).await.unwrap(), 0);
    // The send finishes; at `t` + 2 s the queued one is 2 s past its claim but only 1.25 s
    // past the renewal: it may start.
    channel.permits.add_permits(2);
    settle(&mut d, after(t, 1_000)).await;
    let step = d.step(after(t, 2_000)).await.unwrap();
    assert_eq!((step.started, step.handed_back), (1, 0));
    let outcomes = settle(&mut d, after(t, 2_000)).await;
    assert!(matches!(
        outcomes[..],
        [Outcome {
            outcome: DeliveryOutcome::Sent(_),
            ..
        }]
    ));
    assert_eq!(bench.deliveries("sent").await, 2);
    assert_eq!(
        reclaim(after(t, 3_751)).await.unwrap(),
        0,
        "nothing left held"
    );
}

#[tokio::test]
async fn a_delivery_held_past_half_a_lease_is_handed_back_uncounted() {
    let bench = Bench::new().await;
    let (channel, _) = Gated::new(true);
    let mut d = bench.dispatcher(channel, config(4_000, 1));
    let t = t0();
    bench.seed(&["a@asl.example", "b@asl.example"], t).await;
    let step = d.step(t).await.unwrap();
    assert_eq!((step.claimed, step.started), (2, 1));
    settle(&mut d, t).await;
    // No renewal since the claim, 2.001 s ago: too late to start safely.
    let step = d.step(after(t, 2_001)).await.unwrap();
    assert_eq!((step.claimed, step.started, step.handed_back), (0, 0, 1));
    assert!(step.more, "the slot is free: claim again at once");
    let outcomes = settle(&mut d, after(t, 2_001)).await;
    assert!(matches!(
        outcomes[..],
        [Outcome {
            outcome: DeliveryOutcome::Released,
            ..
        }]
    ));
    assert_eq!(bench.deliveries("pending").await, 1);
    let step = d.step(after(t, 2_001)).await.unwrap();
    assert_eq!((step.claimed, step.started), (1, 1));
    let outcomes = settle(&mut d, after(t, 2_001)).await;
    assert_eq!(outcomes.len(), 1);
    assert_eq!(outcomes[0].attempts, 1, "the hand-back did not count");
    assert_eq!(bench.deliveries("sent").await, 2);
}

#[tokio::test]
async fn a_paused_channel_claims_one_probe_at_a_time() {
    let bench = Bench::new().await;
    let (channel, mut began) = Gated::new(false);
    let mut d = bench.dispatcher(channel.clone(), config(3_000, 4));
    let t = t0();
    bench
        .seed(&["a@asl.example", "b@asl.example", "c@asl.example"], t)
        .await;
    bench
        .pauses
        .refused(ChannelKind::Email, "535 authentication failed", t);
    // Before the probe is due, nothing is claimed; the step comes back every quarter lease.
    let step = d.step(after(t, 1_000)).await.unwrap();
    let paused = Dispatched {
        next: after(t, 1_750),
        ..Dispatched::default()
    };
    assert_eq!(step, paused);
    // The probe is due (10 s after the pause): one delivery, though four slots are free.
    let step = d.step(after(t, 10_000)).await.unwrap();
    assert_eq!((step.claimed, step.started, step.more), (1, 1, false));
    assert_eq!(began.recv().await.unwrap(), "a@asl.example");
    // Not a second one while the probe is out.
    let step = d.step(after(t, 10_000)).await.unwrap();
    assert_eq!((step.claimed, step.started, step.in_flight), (0, 0, 1));
    // The probe gets through: the channel resumes and the next step claims the rest.
    channel.permits.add_permits(3);
    settle(&mut d, after(t, 10_000)).await;
    assert!(bench.pauses.get(ChannelKind::Email).is_none());
    let step = d.step(after(t, 10_000)).await.unwrap();
    assert_eq!((step.claimed, step.started), (2, 2));
    settle(&mut d, after(t, 10_000)).await;
    assert_eq!(bench.deliveries("sent").await, 3);
}

#[tokio::test]
async fn a_panic_in_a_send_fails_that_delivery_and_the_next_send_goes_out() {
    let bench = Bench::new().await;
    let mut d = bench.dispatcher(Arc::new(Fragile(AtomicBool::new(false))), config(3_000, 1));
    let t = t0();
    bench.seed(&["a@asl.example", "b@asl.example"], t).await;
    let step = d.step(t).await.unwrap();
    assert_eq!((step.claimed, step.started), (2, 1));
    let first = settle(&mut d, t).await;
    match &first[..] {
        [
            Outcome {
                outcome: DeliveryOutcome::Failed { error },
                ..
            },
        ] => {
            assert!(
                error.contains("header value for a@asl.example is invalid"),
                "{error}"
            )
        }
        other => panic!("{other:?}"),
    }
    let step = d.step(t).await.unwrap();
    assert_eq!(step.started, 1);
    let second = settle(&mut d, t).await;
    assert!(matches!(
        second[..],
        [Outcome {
            outcome: DeliveryOutcome::Sent(_),
            ..
        }]
    ));
    assert_eq!(bench.deliveries("failed").await, 1);
    assert_eq!(bench.deliveries("sent").await, 1);
}

#[tokio::test]
async fn shutdown_finishes_the_send_in_flight_and_releases_the_rest() {
    let bench = Bench::new().await;
    let (channel, mut began) = Gated::new(false);
    let d = bench.dispatcher(channel.clone(), config(3_000, 1));
    bench
        .seed(&["a@asl.example", "b@asl.example", "c@asl.example"], t0())
        .await;
    let shutdown = CancellationToken::new();
    let running = tokio::spawn(d.run(shutdown.clone()));
    assert_eq!(began.recv().await.unwrap(), "a@asl.example");
    shutdown.cancel();
    channel.permits.add_permits(1);
    running.await.unwrap();
    assert_eq!(bench.deliveries("sent").await, 1);
    assert_eq!(bench.deliveries("pending").await, 2);
    assert_eq!(bench.deliveries("sending").await, 0);
}

/// Claims what is due in a transaction of the pipeline's kind, as `owner`, and commits.
async fn claim_in_a_transaction(
    bench: &Bench,
    limit: u32,
    now: Timestamp,
    owner: &str,
) -> Vec<ClaimedDelivery> {
    let mut tx = bench.store.begin().await.unwrap();
    let claimed = tx
        .claim_deliveries(ChannelKind::Email, limit, now, after(now, 60_000), owner)
        .await
        .unwrap();
    tx.commit().await.unwrap();
    claimed
}

#[tokio::test]
async fn deliveries_handed_over_by_the_pipeline_go_out_without_a_claim_of_the_dispatchers_own() {
    let bench = Bench::new().await;
    let (channel, mut began) = Gated::new(true);
    let mut d = bench.dispatcher(channel, config(60_000, 4));
    let door = d.door();
    let handover = Handover::new(
        &bench.crew("replica-a"),
        Duration::from_secs(60),
        vec![door],
    );
    let t = t0();
    bench
        .seed(&["a@asl.example", "b@asl.example", "c@asl.example"], t)
        .await;
    let (limit, _) = handover.wants(ChannelKind::Email, t).unwrap();
    assert_eq!(limit, 4, "as many as the dispatcher starts at once");
    assert_eq!(
        handover.wants(ChannelKind::Sms, t),
        None,
        "no SMS dispatcher here"
    );
    // Two of three claimed in the pipeline's transaction, then handed over.
    let claimed = claim_in_a_transaction(&bench, 2, t, handover.owner()).await;
    assert_eq!(claimed.len(), 2);
    handover.give(vec![(ChannelKind::Email, claimed)], t, &[]);
    assert_eq!(bench.deliveries("sending").await, 2);
    assert_eq!(bench.deliveries("pending").await, 1);
    // The dispatcher starts the two it was given before asking the store for more, then, at
    // once, claims the third itself.
    let step = d.step(t).await.unwrap();
    assert_eq!((step.claimed, step.started), (2, 2), "{step:?}");
    assert!(step.more, "{step:?}");
    let step = d.step(t).await.unwrap();
    assert_eq!((step.claimed, step.started), (1, 1), "{step:?}");
    let outcomes = settle(&mut d, t).await;
    assert_eq!(outcomes.len(), 3);
    let mut sent: Vec<String> = (0..3).map(|_| began.try_recv().unwrap()).collect();
    sent.sort();
    assert_eq!(sent, ["a@asl.example", "b@asl.example", "c@asl.example"]);
    assert_eq!(bench.deliveries("sent").await, 3);
}

#[tokio::test]
async fn a_handed_over_message_is_sent_as_handed_and_the_others_are_read() {
    let bench = Bench::new().await;
    let (channel, _began) = Gated::new(true);
    let mut d = bench.dispatcher(channel.clone(), config(60_000, 4));
    let handover = Handover::new(
        &bench.crew("replica-a"),
        Duration::from_secs(60),
        vec![d.door()],
    );
    let t = t0();
    // Two incidents, a message each: the pipeline claims and hands over the first only.
    bench.seed(&["a@asl.example"], t).await;
    bench.seed(&["b@asl.example"], t).await;
    let claimed = claim_in_a_transaction(&bench, 1, t, handover.owner()).await;
    assert_eq!(claimed.len(), 1);
    let stored = bench
        .store
        .message(claimed[0].message_id)
        .await
        .unwrap()
        .unwrap();
    // Marked, so that what was sent tells which row it came from.
    let handed = MessageRow {
        body: format!("{} (handed over)", stored.body),
        ..stored.clone()
    };
    let unrelated = MessageRow {
        id: stored.id + 1_000,
        ..stored.clone()
    };
    handover.give(
        vec![(ChannelKind::Email, claimed)],
        t,
        &[Arc::new(unrelated), Arc::new(handed)],
    );
    let step = d.step(t).await.unwrap();
    assert_eq!((step.claimed, step.started), (1, 1), "{step:?}");
    let step = d.step(t).await.unwrap();
    assert_eq!((step.claimed, step.started), (1, 1), "{step:?}");
    assert_eq!(settle(&mut d, t).await.len(), 2);
    let texts = channel.texts.lock().unwrap().clone();
    assert_eq!(
        texts,
        vec![
            (
                "a@asl.example".to_owned(),
                format!("{} (handed over)", stored.body)
            ),
            ("b@asl.example".to_owned(), stored.body.clone()),
        ]
    );
    assert!(
        !d.messages.contains_key(&(stored.id + 1_000)),
        "not its delivery's"
    );
}

#[tokio::test]
async fn a_claim_in_the_pipelines_transaction_keeps_each_recipients_order() {
    let bench = Bench::new().await;
    let t = t0();
    // Two incidents, each with a delivery to the same desk: the second waits for the first.
    bench.seed(&["sala@asl.example"], t).await;
    bench.seed(&["sala@asl.example"], t).await;
    let claimed = claim_in_a_transaction(&bench, 10, t, "replica-a").await;
    assert_eq!(claimed.len(), 1, "{claimed:?}");
    assert!(
        claim_in_a_transaction(&bench, 10, t, "replica-a")
            .await
            .is_empty(),
        "the later delivery waits while the earlier one is in flight"
    );
}

#[tokio::test]
async fn deliveries_handed_to_a_stopped_dispatcher_are_taken_back_when_their_lease_runs_out() {
    // What a replica that dies between the pipeline's commit and the send leaves behind.
    let bench = Bench::new().await;
    let (channel, _) = Gated::new(true);
    let mut gone = bench.dispatcher(channel.clone(), config(1_000, 2));
    let handover = Handover::new(
        &bench.crew("replica-a"),
        Duration::from_secs(1),
        vec![gone.door()],
    );
    drop(gone);
    let t = t0();
    bench.seed(&["a@asl.example"], t).await;
    let mut tx = bench.store.begin().await.unwrap();
    let (limit, lease_until) = handover.wants(ChannelKind::Email, t).unwrap();
    let claimed = tx
        .claim_deliveries(ChannelKind::Email, limit, t, lease_until, handover.owner())
        .await
        .unwrap();
    tx.commit().await.unwrap();
    // Nobody takes them: no panic, and the claim stands until its lease runs out.
    handover.give(vec![(ChannelKind::Email, claimed)], t, &[]);
    assert_eq!(bench.deliveries("sending").await, 1);
    // Another replica takes them back once the lease has run out.
    let other_crew = bench.crew("replica-b");
    let mut other = Dispatcher::new(
        &other_crew,
        channel,
        config(1_000, 2),
        Arc::new(Notify::new()),
        None,
    );
    other.keep_leases(after(t, 500)).await;
    assert_eq!(
        bench.deliveries("sending").await,
        1,
        "not before the lease ends"
    );
    other.keep_leases(after(t, 1_500)).await;
    let step = other.step(after(t, 1_500)).await.unwrap();
    assert_eq!(step.started, 1, "{step:?}");
    settle(&mut other, after(t, 1_500)).await;
    assert_eq!(bench.deliveries("sent").await, 1);
}

/// Waits until the claim ahead has answered; fails after 5 s.
async fn until_claimed_ahead(d: &Dispatcher) {
    for _ in 0..500 {
        if d.ahead
            .as_ref()
            .is_none_or(|(answer, _, _)| !answer.is_empty())
        {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("the claim ahead did not answer within 5 s");
}

/// Sixteen desks, four slots, ten claimed at once: after two steps, four are in flight, two
/// queued and six pending.
async fn two_queued_six_pending(bench: &Bench) -> (Dispatcher, Timestamp) {
    let (channel, _) = Gated::new(true);
    let mut d = bench.dispatcher(channel, config(60_000, 4));
    let t = t0();
    let recipients: Vec<String> = (0..16).map(|i| format!("desk{i}@asl.example")).collect();
    let recipients: Vec<&str> = recipients.iter().map(String::as_str).collect();
    bench.seed(&recipients, t).await;
    let step = d.step(t).await.unwrap();
    assert_eq!((step.claimed, step.started), (10, 4));
    assert!(!d.claim_ahead(t), "six queued: more than half a claim");
    settle(&mut d, t).await;
    let step = d.step(t).await.unwrap();
    assert_eq!(
        (step.claimed, step.started),
        (0, 4),
        "the queue feeds the slots"
    );
    assert_eq!(bench.deliveries("pending").await, 6);
    (d, t)
}

#[tokio::test]
async fn the_next_claim_is_made_while_the_queue_still_feeds_the_sends() {
    let bench = Bench::new().await;
    let (mut d, t) = two_queued_six_pending(&bench).await;
    // Two queued: the rest is claimed beside the sends, once, with no step.
    assert!(d.claim_ahead(t));
    assert!(!d.claim_ahead(t), "one claim ahead at a time");
    until_claimed_ahead(&d).await;
    assert_eq!(bench.deliveries("pending").await, 0, "claimed with no step");
    settle(&mut d, t).await;
    let step = d.step(t).await.unwrap();
    assert_eq!(
        (step.claimed, step.started),
        (6, 4),
        "what was claimed ahead joins the queue, after the two already there"
    );
    settle(&mut d, t).await;
    let step = d.step(t).await.unwrap();
    assert_eq!((step.claimed, step.started), (0, 4));
    settle(&mut d, t).await;
    assert_eq!(bench.deliveries("sent").await, 16);
    assert!(
        !d.claim_ahead(t),
        "an empty queue is claimed for by the step itself"
    );
}

#[tokio::test]
async fn a_claim_ahead_that_finds_less_than_it_asked_waits_a_poll_interval() {
    let bench = Bench::new().await;
    let (mut d, t) = two_queued_six_pending(&bench).await;
    // Eight asked for, six found.
    assert!(d.claim_ahead(t));
    until_claimed_ahead(&d).await;
    settle(&mut d, t).await;
    let step = d.step(t).await.unwrap();
    assert_eq!((step.claimed, step.started), (6, 4));
    // Four queued, under half a claim: not before a poll interval (60 s here).
    assert!(!d.claim_ahead(after(t, 59_999)));
    assert!(d.claim_ahead(after(t, 60_000)));
}

#[tokio::test]
async fn no_claim_ahead_for_a_paused_channel() {
    let bench = Bench::new().await;
    let (mut d, t) = two_queued_six_pending(&bench).await;
    bench
        .pauses
        .refused(ChannelKind::Email, "535 authentication failed", t);
    assert!(!d.claim_ahead(t));
    assert_eq!(bench.deliveries("pending").await, 6);
}

#[tokio::test]
async fn a_pause_during_a_claim_ahead_hands_its_deliveries_back_uncounted() {
    let bench = Bench::new().await;
    let (mut d, t) = two_queued_six_pending(&bench).await;
    assert!(d.claim_ahead(t));
    until_claimed_ahead(&d).await;
    settle(&mut d, t).await;
    bench
        .pauses
        .refused(ChannelKind::Email, "535 authentication failed", t);
    let step = d.step(t).await.unwrap();
    assert_eq!(
        (step.claimed, step.started, step.handed_back),
        (6, 0, 8),
        "the two queued and the six claimed ahead"
    );
    settle(&mut d, t).await;
    assert_eq!(bench.deliveries("pending").await, 8);
    assert_eq!(bench.deliveries("sent").await, 8);
    // Claimed again, each is at its first attempt: the one handed back was not counted.
    let again = bench
        .store
        .claim_deliveries(ChannelKind::Email, 10, t, after(t, 60_000), "replica-b")
        .await
        .unwrap();
    assert_eq!(again.len(), 8);
    assert!(again.iter().all(|c| c.attempts == 1), "{again:?}");
}

#[test]
fn outcomes_are_gathered_only_while_other_deliveries_are_held() {
    let sent = |delivery| Outcome {
        delivery,
        attempts: 1,
        outcome: DeliveryOutcome::Sent(Receipt::default()),
    };
    let held = lease::Held::default();
    assert!(held.only(&[]), "nothing held, nothing to wait for");
    held.add([1, 2]);
    // A fan-out's first outcome: the second send is still out, so the batch waits for it.
    assert!(!held.only(&[sent(1)]));
    assert!(held.only(&[sent(1), sent(2)]));
    assert!(held.only(&[sent(2), sent(1), sent(3)]));
    held.remove(&[sent(2)]);
    // A desk's message alone: written at once, so that its next message can be claimed.
    assert!(held.only(&[sent(1)]));
    assert!(!held.only(&[sent(4)]));
}

/// A renewal that missed a delivery recorded meanwhile (gone from the hold) kept every lease;
/// one that missed a delivery still held lost it.
#[test]
fn a_renewal_is_short_only_of_what_is_still_held() {
    assert!(lease::all_held_renewed(&[1, 2, 3], &[1, 2, 3], &[1, 2, 3]));
    assert!(
        lease::all_held_renewed(&[1, 2, 3], &[2, 3], &[2, 3]),
        "1 recorded meanwhile"
    );
    assert!(
        !lease::all_held_renewed(&[1, 2, 3], &[2, 3], &[1, 2, 3]),
        "1 taken over"
    );
    assert!(
        !lease::all_held_renewed(&[1, 2, 3], &[3], &[2, 3, 4]),
        "2 taken over, 1 recorded"
    );
    assert!(lease::all_held_renewed(&[], &[], &[]));
}

/// A delivery handed back and claimed again before the first claim's outcome left the hold:
/// the second claim stays held (and so renewed) until its own outcome.
#[test]
fn a_delivery_claimed_again_stays_held_until_its_own_outcome() {
    let released = |delivery| Outcome {
        delivery,
        attempts: 0,
        outcome: DeliveryOutcome::Released,
    };
    let held = lease::Held::default();
    held.add([7]);
    held.add([7]);
    held.remove(&[released(7)]);
    assert_eq!(held.ids(), vec![7], "the second claim is still out");
    held.remove(&[released(7)]);
    assert!(held.ids().is_empty());
    held.remove(&[released(7)]);
    assert!(
        held.ids().is_empty(),
        "an outcome of nothing held changes nothing"
    );
}

#[tokio::test]
async fn a_full_claim_after_an_idle_look_lets_claims_ahead_begin_at_once() {
    let bench = Bench::new().await;
    let (channel, _) = Gated::new(true);
    let mut d = bench.dispatcher(channel, config(60_000, 4));
    let t = t0();
    // Idle: the look finds nothing due, which holds claims ahead back for a poll interval.
    let step = d.step(t).await.unwrap();
    assert_eq!((step.claimed, step.more), (0, false), "{step:?}");
    assert!(d.ahead_after.is_some_and(|after| after > t));
    // A fan-out: the step's own claim finds all ten it asks for...
    let recipients: Vec<String> = (0..16).map(|i| format!("desk{i}@asl.example")).collect();
    let recipients: Vec<&str> = recipients.iter().map(String::as_str).collect();
    bench.seed(&recipients, t).await;
    let step = d.step(t).await.unwrap();
    assert_eq!((step.claimed, step.started), (10, 4));
    settle(&mut d, t).await;
    let step = d.step(t).await.unwrap();
    assert_eq!((step.claimed, step.started), (0, 4), "two left queued");
    // ...so the rest is claimed beside the sends now, not a poll interval after the idle look.
    assert!(d.claim_ahead(t));
    until_claimed_ahead(&d).await;
    assert_eq!(bench.deliveries("pending").await, 0);
    settle(&mut d, t).await;
    let step = d.step(t).await.unwrap();
    assert_eq!((step.claimed, step.started), (6, 4));
    // Six of the eight it asked for: the hold is back, and no empty claim ahead follows.
    assert!(
        !d.claim_ahead(t),
        "after a short claim ahead, none for a poll interval"
    );
    settle(&mut d, t).await;
    d.step(t).await.unwrap();
    settle(&mut d, t).await;
    assert_eq!(bench.deliveries("sent").await, 16);
}
