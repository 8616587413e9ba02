//! The store's outbox and subscriber semantics, written against the `Store` trait so that every
//! back end runs the same suite.

use std::collections::BTreeSet;
use std::sync::Arc;

use banditore::domain::subscriber::{ChannelKind, SubscriberRules, SubscriberSpec};
use banditore::domain::{Finding, IncidentStatus, Labels, Severity, UpdateKind};
use banditore::store::*;
use jiff::{SignedDuration, Timestamp};

use crate::support::suite;

fn now() -> Timestamp {
    Timestamp::now()
}

fn later(seconds: i64) -> Timestamp {
    now() + SignedDuration::from_secs(seconds)
}

pub(crate) async fn subscriber(
    store: &Arc<dyn Store>,
    name: &str,
    emails: &[&str],
) -> (i64, Vec<i64>) {
    let spec: SubscriberSpec = serde_json::from_value(serde_json::json!({
        "name": name, "addresses": {"email": emails}, "subscriptions": [{}]
    }))
    .unwrap();
    let valid = spec
        .validate(&SubscriberRules::new("it".to_owned().try_into().unwrap()))
        .unwrap();
    let id = store.create_subscriber(&valid, now()).await.unwrap();
    let row = store.subscriber(id).await.unwrap().unwrap();
    (id, row.addresses.iter().map(|a| a.id).collect())
}

/// An incident with `updates` updates, one message each, delivered to every address given.
pub(crate) async fn seed(
    store: &Arc<dyn Store>,
    updates: usize,
    addresses: &[(i64, &str)],
) -> (i64, Vec<i64>) {
    let mut tx = store.begin().await.unwrap();
    let incident = tx
        .insert_incident(&NewIncident {
            group_key: format!("service=test-{}", rand_suffix()),
            title: "test".into(),
            status: IncidentStatus::Investigating,
            severity: Severity::Major,
            origin: IncidentOrigin::Manual,
            labels: Labels::new(),
            opened_at: now(),
            eval_at: None,
            pending_since: None,
        })
        .await
        .unwrap();
    let mut messages = Vec::new();
    for seq in 1..=updates as i64 {
        let update = tx
            .insert_update(&NewUpdate {
                incident_id: incident.id,
                seq,
                title: "test".into(),
                signals: Vec::new(),
                kind: if seq == 1 {
                    UpdateKind::Opened
                } else {
                    UpdateKind::Updated
                },
                status: IncidentStatus::Investigating,
                severity: Severity::Major,
                body: None,
                author: None,
                created_at: now(),
                origin_at: now(),
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
                subject: Some(format!("update {seq}")),
                body: "body".into(),
                html: None,
                created_at: now(),
            })
            .await
            .unwrap()
            .id;
        let deliveries: Vec<NewDelivery> = addresses
            .iter()
            .map(|(address_id, recipient)| NewDelivery {
                message_id: message,
                update_id: update.id,
                incident_id: incident.id,
                address_id: *address_id,
                subscriber_name: "desk".into(),
                channel: ChannelKind::Email,
                recipient: (*recipient).into(),
                origin_at: now(),
                created_at: now(),
            })
            .collect();
        assert_eq!(
            tx.insert_deliveries(&deliveries).await.unwrap(),
            addresses.len() as u64
        );
        // The same rows again are refused by the uniqueness rule, not duplicated.
        assert_eq!(tx.insert_deliveries(&deliveries).await.unwrap(), 0);
        messages.push(message);
    }
    tx.commit().await.unwrap();
    (incident.id, messages)
}

fn rand_suffix() -> String {
    banditore::ids::random_hex(4)
}

async fn deliveries_in(store: &Arc<dyn Store>, state: &str) -> Option<i64> {
    let counts = store.counts().await.unwrap();
    counts
        .deliveries
        .get(&("email".to_owned(), state.to_owned()))
        .copied()
}

fn done(d: &ClaimedDelivery, outcome: DeliveryOutcome) -> Outcome {
    Outcome {
        delivery: d.id,
        attempts: d.attempts,
        outcome,
    }
}

async fn claim(store: &Arc<dyn Store>, owner: &str, limit: u32) -> Vec<ClaimedDelivery> {
    store
        .claim_deliveries(ChannelKind::Email, limit, now(), later(60), owner)
        .await
        .unwrap()
}

pub async fn concurrent_claims_are_disjoint_and_sent_rows_stay_sent(store: Arc<dyn Store>) {
    let emails: Vec<String> = (0..200).map(|i| format!("desk{i}@asl.example")).collect();
    let refs: Vec<&str> = emails.iter().map(String::as_str).collect();
    let (_, addresses) = subscriber(&store, "many", &refs).await;
    let targets: Vec<(i64, &str)> = addresses
        .iter()
        .copied()
        .zip(refs.iter().copied())
        .collect();
    seed(&store, 1, &targets).await;
    let mut tasks = Vec::new();
    for worker in 0..8 {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            let mut mine = Vec::new();
            loop {
                let got = claim(&store, &format!("worker-{worker}"), 7).await;
                if got.is_empty() {
                    break;
                }
                let outcomes: Vec<_> = got
                    .iter()
                    .map(|d| {
                        done(
                            d,
                            DeliveryOutcome::Sent(Receipt {
                                provider_id: Some("ok".into()),
                                ..Receipt::default()
                            }),
                        )
                    })
                    .collect();
                store
                    .record_outcomes(&format!("worker-{worker}"), &outcomes, now())
                    .await
                    .unwrap();
                mine.extend(got.into_iter().map(|d| d.id));
            }
            mine
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.unwrap());
    }
    let unique: BTreeSet<_> = all.iter().collect();
    assert_eq!(all.len(), 200, "every delivery claimed");
    assert_eq!(unique.len(), 200, "no delivery claimed twice");
    assert!(claim(&store, "late", 10).await.is_empty());
    assert_eq!(deliveries_in(&store, "sent").await, Some(200));
}

pub async fn a_later_update_waits_for_the_earlier_one_to_the_same_recipient(store: Arc<dyn Store>) {
    let (_, addresses) = subscriber(&store, "desk", &["desk@asl.example"]).await;
    seed(&store, 2, &[(addresses[0], "desk@asl.example")]).await;
    let first = claim(&store, "w", 10).await;
    assert_eq!(first.len(), 1, "only the first update is claimable");
    let retry_at = later(3600);
    store
        .record_outcomes(
            "w",
            &[done(
                &first[0],
                DeliveryOutcome::Retry {
                    at: retry_at,
                    error: "451".into(),
                },
            )],
            now(),
        )
        .await
        .unwrap();
    assert!(
        claim(&store, "w", 10).await.is_empty(),
        "the second waits while the first is retrying"
    );
    assert_eq!(
        store
            .next_attempt_at(ChannelKind::Email)
            .await
            .unwrap()
            .map(|t| t.as_millisecond()),
        Some(retry_at.as_millisecond())
    );
    // Once the first is due and sent, the second follows.
    let again = store
        .claim_deliveries(ChannelKind::Email, 10, later(3601), later(3700), "w")
        .await
        .unwrap();
    assert_eq!(again.len(), 1);
    assert_eq!(again[0].id, first[0].id);
    assert_eq!(again[0].attempts, 2);
    store
        .record_outcomes(
            "w",
            &[done(&again[0], DeliveryOutcome::Sent(Receipt::default()))],
            now(),
        )
        .await
        .unwrap();
    let second = claim(&store, "w", 10).await;
    assert_eq!(second.len(), 1);
    assert_ne!(second[0].id, first[0].id);
}

pub async fn a_recipient_reads_every_incident_in_the_order_written(store: Arc<dyn Store>) {
    let (_, a) = subscriber(&store, "desk", &["desk@asl.example"]).await;
    let (_, b) = subscriber(&store, "other", &["other@asl.example"]).await;
    seed(
        &store,
        1,
        &[(a[0], "desk@asl.example"), (b[0], "other@asl.example")],
    )
    .await;
    seed(&store, 1, &[(a[0], "desk@asl.example")]).await;
    let first = claim(&store, "w", 10).await;
    let desk: Vec<_> = first
        .iter()
        .filter(|d| d.recipient == "desk@asl.example")
        .collect();
    assert_eq!(first.len(), 2, "the desk's first message and the other's");
    assert_eq!(desk.len(), 1, "the second incident waits for the first");
    let retry_at = later(3600);
    store
        .record_outcomes(
            "w",
            &[done(
                desk[0],
                DeliveryOutcome::Retry {
                    at: retry_at,
                    error: "429".into(),
                },
            )],
            now(),
        )
        .await
        .unwrap();
    assert!(
        claim(&store, "w", 10).await.is_empty(),
        "a deferred message holds back the ones after it"
    );
}

pub async fn leases_expire_only_for_stopped_workers_and_outcomes_are_fenced(store: Arc<dyn Store>) {
    let (_, addresses) = subscriber(&store, "desk", &["a@asl.example", "b@asl.example"]).await;
    seed(
        &store,
        1,
        &[
            (addresses[0], "a@asl.example"),
            (addresses[1], "b@asl.example"),
        ],
    )
    .await;
    let short = store
        .claim_deliveries(ChannelKind::Email, 1, now(), later(1), "dead-worker")
        .await
        .unwrap();
    assert_eq!(short.len(), 1);
    assert_eq!(short[0].attempts, 1);
    // A worker never takes back its own leases: it knows they are not abandoned.
    assert_eq!(
        store
            .reclaim_expired_leases(later(2), "dead-worker")
            .await
            .unwrap(),
        0
    );
    // Another takes them back once the lease has ended, not before.
    assert_eq!(
        store.reclaim_expired_leases(now(), "live").await.unwrap(),
        0
    );
    assert_eq!(
        store
            .reclaim_expired_leases(later(2), "live")
            .await
            .unwrap(),
        1
    );
    let retaken = claim(&store, "live", 10).await;
    assert_eq!(retaken.len(), 2);
    let a = retaken
        .iter()
        .find(|d| d.id == short[0].id)
        .unwrap()
        .clone();
    assert_eq!(a.attempts, 2, "one attempt by the stopped worker, one now");
    // Outcomes of the first claim land on nothing: fenced by owner and by claim.
    store
        .record_outcomes(
            "dead-worker",
            &[done(
                &short[0],
                DeliveryOutcome::Failed {
                    error: "late".into(),
                },
            )],
            now(),
        )
        .await
        .unwrap();
    let stale = Outcome {
        delivery: a.id,
        attempts: 1,
        outcome: DeliveryOutcome::Sent(Receipt::default()),
    };
    store
        .record_outcomes("live", &[stale], now())
        .await
        .unwrap();
    assert_eq!(deliveries_in(&store, "sending").await, Some(2));
    // A live worker renews its leases, so nobody takes them over.
    let ids: Vec<i64> = retaken.iter().map(|d| d.id).collect();
    let mut renewed = store.renew_leases("live", &ids, later(120)).await.unwrap();
    renewed.sort_unstable();
    let mut expected = ids.clone();
    expected.sort_unstable();
    assert_eq!(renewed, expected);
    assert_eq!(
        store
            .reclaim_expired_leases(later(90), "other")
            .await
            .unwrap(),
        0
    );
    // Handed back unstarted: pending again, the attempt not counted.
    store
        .record_outcomes("live", &[done(&a, DeliveryOutcome::Released)], now())
        .await
        .unwrap();
    // Released at shutdown: the same, by the dispatcher of its own channel only (one process
    // owns every channel's claims; another channel's dispatcher stopping first gives back none).
    assert_eq!(
        store
            .release_leases("live", ChannelKind::Sms)
            .await
            .unwrap(),
        0
    );
    assert_eq!(deliveries_in(&store, "sending").await, Some(1));
    assert_eq!(
        store
            .release_leases("live", ChannelKind::Email)
            .await
            .unwrap(),
        1
    );
    let again = claim(&store, "w", 10).await;
    assert_eq!(again.len(), 2);
    assert_eq!(again.iter().find(|d| d.id == a.id).unwrap().attempts, 2);
    assert_eq!(again.iter().find(|d| d.id != a.id).unwrap().attempts, 1);
}

pub async fn a_gone_address_is_marked_and_its_pending_deliveries_stop(store: Arc<dyn Store>) {
    let (sid, addresses) = subscriber(&store, "desk", &["old@asl.example"]).await;
    seed(&store, 2, &[(addresses[0], "old@asl.example")]).await;
    let mut tx = store.begin().await.unwrap();
    let version = tx.subscribers_version().await.unwrap();
    drop(tx);
    let first = claim(&store, "w", 10).await;
    store
        .record_outcomes(
            "w",
            &[done(
                &first[0],
                DeliveryOutcome::Gone {
                    error: "550 5.1.1 user unknown".into(),
                },
            )],
            now(),
        )
        .await
        .unwrap();
    assert!(
        claim(&store, "w", 10).await.is_empty(),
        "the later delivery to the gone address is dropped"
    );
    let row = store.subscriber(sid).await.unwrap().unwrap();
    assert!(row.addresses[0].gone_at.is_some());
    assert!(!row.addresses[0].is_active());
    let mut tx = store.begin().await.unwrap();
    assert!(
        tx.subscribers_version().await.unwrap() > version,
        "the router reloads subscribers"
    );
    assert_eq!(deliveries_in(&store, "gone").await, Some(2));
}

pub async fn unsubscribing_cancels_pending_deliveries(store: Arc<dyn Store>) {
    let (_, addresses) = subscriber(&store, "desk", &["u@asl.example"]).await;
    seed(&store, 1, &[(addresses[0], "u@asl.example")]).await;
    assert!(
        store
            .unsubscribe_address(addresses[0], now())
            .await
            .unwrap()
    );
    assert!(claim(&store, "w", 10).await.is_empty());
    assert!(!store.unsubscribe_address(999_999, now()).await.unwrap());
    let owner = store.address(addresses[0]).await.unwrap().unwrap();
    assert!(owner.address.unsubscribed_at.is_some());
    assert_eq!(owner.subscriber_name, "desk");
}

pub async fn config_subscribers_stay_in_step_and_keep_opt_outs(store: Arc<dyn Store>) {
    let spec = |name: &str, emails: &[&str]| {
        let spec: SubscriberSpec = serde_json::from_value(serde_json::json!({
            "name": name, "addresses": {"email": emails}, "subscriptions": [{"matchers": ["service=\"cup\""]}]
        }))
        .unwrap();
        spec.validate(&SubscriberRules::new("it".to_owned().try_into().unwrap()))
            .unwrap()
    };
    let file = [
        spec("CUP Foligno", &["a@asl.example", "b@asl.example"]),
        spec("Referti", &["r@asl.example"]),
    ];
    let report = store.sync_config_subscribers(&file, now()).await.unwrap();
    assert_eq!(
        report,
        SyncReport {
            created: 2,
            updated: 0,
            removed: 0
        }
    );
    // A restart with the same file changes nothing.
    let report = store.sync_config_subscribers(&file, now()).await.unwrap();
    assert_eq!(report, SyncReport::default());
    let rows = store.subscribers().await.unwrap();
    let foligno = rows.iter().find(|s| s.name == "CUP Foligno").unwrap();
    let a = foligno
        .addresses
        .iter()
        .find(|x| x.address == "a@asl.example")
        .unwrap()
        .id;
    store.unsubscribe_address(a, now()).await.unwrap();
    // Restart with a changed file: Referti removed, b replaced by c, a kept (and still opted out).
    let report = store
        .sync_config_subscribers(
            &[spec("CUP Foligno", &["a@asl.example", "c@asl.example"])],
            now(),
        )
        .await
        .unwrap();
    assert_eq!(
        report,
        SyncReport {
            created: 0,
            updated: 1,
            removed: 1
        }
    );
    // Each part of a subscriber counts: its language, its audience, its subscriptions.
    let foligno = spec("CUP Foligno", &["a@asl.example", "c@asl.example"]);
    let mut english = foligno.clone();
    english.language = "en".to_owned().try_into().unwrap();
    let mut desk = foligno.clone();
    desk.audience = "cup-desk".to_owned();
    let mut critical = foligno.clone();
    critical.subscriptions[0].min_severity = Severity::Critical;
    for changed in [english, desk, critical, foligno] {
        let report = store
            .sync_config_subscribers(std::slice::from_ref(&changed), now())
            .await
            .unwrap();
        assert_eq!(report.updated, 1, "{changed:?}");
        let report = store
            .sync_config_subscribers(std::slice::from_ref(&changed), now())
            .await
            .unwrap();
        assert_eq!(report, SyncReport::default(), "{changed:?}");
    }
    let rows = store.subscribers().await.unwrap();
    assert_eq!(rows.len(), 1);
    let emails: Vec<_> = rows[0]
        .addresses
        .iter()
        .map(|x| (x.address.as_str(), x.is_active()))
        .collect();
    assert_eq!(
        emails,
        vec![("a@asl.example", false), ("c@asl.example", true)]
    );
    assert_eq!(rows[0].origin, SubscriberOrigin::Config);
    assert_eq!(
        store.delete_subscriber(rows[0].id).await.unwrap(),
        DeleteOutcome::ManagedByConfig
    );
    assert_eq!(
        store.delete_subscriber(424242).await.unwrap(),
        DeleteOutcome::NotFound
    );
}

/// A generic monitor's firing signal about `cup`, received now.
fn signal(fingerprint: &str) -> banditore::domain::Signal {
    use banditore::domain::{RawSignal, Source};
    RawSignal {
        fingerprint: Some(fingerprint.into()),
        service: Some("cup".into()),
        ..RawSignal::default()
    }
    .normalize(Source::Generic, &Default::default(), now())
}

pub async fn old_history_is_pruned_and_open_work_kept(store: Arc<dyn Store>) {
    // The unprocessed one arrived 30 s ago: /metrics reads its age from the store.
    let waiting_since = Timestamp::from_millisecond(later(-30).as_millisecond()).unwrap();
    let ids = store
        .insert_signals(&[(now(), signal("a")), (waiting_since, signal("b"))])
        .await
        .unwrap();
    let mut tx = store.begin().await.unwrap();
    let mark = SignalMark {
        signal: ids[0],
        outcome: "test",
        incident: None,
    };
    tx.mark_signals(&[mark], now()).await.unwrap();
    tx.commit().await.unwrap();
    let counts = store.counts().await.unwrap();
    assert_eq!(counts.oldest_unprocessed_signal, Some(waiting_since));
    assert!(counts.oldest_unsent.is_empty(), "{counts:?}");
    let (_, addresses) = subscriber(&store, "desk", &["p@asl.example"]).await;
    let (incident, _) = seed(&store, 1, &[(addresses[0], "p@asl.example")]).await;
    // A delivery waiting to be sent, then being sent, counts in the outbox's backlog age.
    let written = store.counts().await.unwrap().oldest_unsent["email"];
    assert!(written > later(-60) && written <= now(), "{written}");
    let claimed = claim(&store, "w", 10).await;
    assert_eq!(
        store.counts().await.unwrap().oldest_unsent["email"],
        written
    );
    store
        .record_outcomes(
            "w",
            &[done(&claimed[0], DeliveryOutcome::Sent(Receipt::default()))],
            now(),
        )
        .await
        .unwrap();

    // Nothing is old yet.
    assert_eq!(
        store.prune(later(-60)).await.unwrap(),
        PruneReport::default()
    );
    // Later: the processed signal goes, the unprocessed one stays; the delivery of an open
    // incident stays.
    assert_eq!(
        store.prune(later(60)).await.unwrap(),
        PruneReport {
            signals: 1,
            deliveries: 0
        }
    );
    let counts = store.counts().await.unwrap();
    assert_eq!(counts.unprocessed_signals, 1);
    assert!(
        counts.oldest_unsent.is_empty(),
        "sent is not waiting: {counts:?}"
    );
    let mut tx = store.begin().await.unwrap();
    let mut row = tx.incident(incident).await.unwrap().unwrap();
    row.resolved_at = Some(now());
    tx.save_incident(&row).await.unwrap();
    tx.commit().await.unwrap();
    assert_eq!(
        store.prune(later(60)).await.unwrap(),
        PruneReport {
            signals: 0,
            deliveries: 1
        }
    );
    // Ids are never reused, even for the newest row once deleted: links and Message-IDs built
    // on them stay unique.
    let (gone, gone_addresses) = subscriber(&store, "temporary", &["t@asl.example"]).await;
    store.delete_subscriber(gone).await.unwrap();
    let (_, fresh) = subscriber(&store, "after", &["t@asl.example"]).await;
    assert!(fresh[0] > gone_addresses[0]);
    // The incident and its update remain as history.
    assert_eq!(store.incident_updates(incident).await.unwrap().len(), 1);
}

pub async fn one_replica_leads_until_its_lease_runs_out_or_it_steps_down(store: Arc<dyn Store>) {
    let t = |s: i64| Timestamp::from_second(1_900_000_000 + s).unwrap();
    assert!(store.lead("pipeline", "a", t(0), t(10)).await.unwrap());
    // SQLite has no other replicas: its lock file proves the process asking is the only one, so
    // a process restarted after a kill leads at once instead of waiting out the dead one's lease.
    if store.wakeups().await.unwrap().is_none() {
        assert!(store.lead("pipeline", "b", t(1), t(11)).await.unwrap());
        assert!(store.lead("pipeline", "b", t(2), t(12)).await.unwrap());
        return;
    }
    assert!(
        !store.lead("pipeline", "b", t(1), t(11)).await.unwrap(),
        "a holds it"
    );
    assert!(
        store.lead("pipeline", "a", t(5), t(15)).await.unwrap(),
        "a renews"
    );
    assert!(
        !store.lead("pipeline", "b", t(14), t(24)).await.unwrap(),
        "renewed: still a's"
    );
    assert!(
        store.lead("pipeline", "b", t(16), t(26)).await.unwrap(),
        "a stopped renewing: b takes over"
    );
    assert!(!store.lead("pipeline", "a", t(17), t(27)).await.unwrap());
    // Stepping down hands it over at once.
    store.resign("pipeline", "b").await.unwrap();
    assert!(store.lead("pipeline", "a", t(18), t(28)).await.unwrap());
    // Other duties are independent; resigning what one does not hold changes nothing.
    assert!(store.lead("other", "b", t(18), t(28)).await.unwrap());
    store.resign("pipeline", "b").await.unwrap();
    assert!(!store.lead("pipeline", "b", t(19), t(29)).await.unwrap());
}

pub async fn a_shared_bucket_paces_every_taker_together(store: Arc<dyn Store>) {
    let t = |ms: i64| Timestamp::from_millisecond(1_900_000_000_000 + ms).unwrap();
    let take = |bucket: &'static str, want: u32, rate: u32, burst: u32, at: i64| {
        let store = store.clone();
        async move {
            store
                .take_tokens(bucket, want, rate, burst, t(at))
                .await
                .unwrap()
        }
    };
    // 10 per second, a burst of 10: a full bucket gives 10, then nothing until it refills.
    assert_eq!(take("email", 4, 10, 10, 0).await.granted, 4);
    assert_eq!(take("email", 20, 10, 10, 0).await.granted, 6);
    // None left: the next comes when the bucket has refilled one whole token (50 ms more).
    assert_eq!(
        take("email", 5, 10, 10, 50).await,
        Tokens {
            granted: 0,
            next_in: std::time::Duration::from_millis(50)
        }
    );
    // 10 a second is one each 100 ms, whoever asks.
    assert_eq!(take("email", 5, 10, 10, 100).await.granted, 1);
    assert_eq!(take("email", 5, 10, 10, 350).await.granted, 2);
    // Never more than the burst, however long it rested.
    assert_eq!(take("email", 50, 10, 10, 60_000).await.granted, 10);
    // Buckets are separate.
    assert_eq!(take("sms", 3, 1, 3, 60_000).await.granted, 3);
    // A burst of one, taken each time the bucket says the next token is there: 29 a second
    // exactly, although each answer is rounded up to a whole millisecond.
    let mut at = 120_000;
    assert_eq!(take("telegram", 1, 29, 1, at).await.granted, 1);
    let first = at;
    for _ in 0..29 {
        let next = take("telegram", 1, 29, 1, at).await;
        assert_eq!(next.granted, 0);
        at += i64::try_from(next.next_in.as_millis()).unwrap();
        assert_eq!(take("telegram", 1, 29, 1, at).await.granted, 1);
    }
    assert!(
        (999..=1001).contains(&(at - first)),
        "29 tokens took {} ms",
        at - first
    );
    // Concurrent takers never get more than there is.
    let mut tasks = Vec::new();
    for _ in 0..8 {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            store
                .take_tokens("race", 5, 1, 20, t(0))
                .await
                .unwrap()
                .granted
        }));
    }
    let mut total = 0;
    for task in tasks {
        total += task.await.unwrap();
    }
    assert_eq!(total, 20);
}

pub async fn observations_keep_what_each_check_found_as_data(store: Arc<dyn Store>) {
    let probe = format!("cup-portale-{}", rand_suffix());
    // Stored to the millisecond.
    let at = Timestamp::from_millisecond(now().as_millisecond()).unwrap();
    let observe = |instance: &str, finding: Option<Finding>| Observation {
        probe: probe.clone(),
        instance: instance.to_owned(),
        state: "down".into(),
        detail: finding
            .as_ref()
            .map(ToString::to_string)
            .unwrap_or_default(),
        finding,
        cert_days_left: None,
        observed_at: at,
    };
    let refused = Finding::HttpStatus {
        status: 503,
        expected: vec!["2xx".into()],
    };
    let written = [
        observe("replica-a", Some(refused.clone())),
        observe("replica-b", None),
    ];
    store.record_observations(&written).await.unwrap();
    let mine = |all: Vec<Observation>| -> Vec<Observation> {
        all.into_iter().filter(|o| o.probe == probe).collect()
    };
    assert_eq!(mine(store.observations(None).await.unwrap()), written);
    // The replicas probing: those that observed since a moment.
    let observers = store.observers(at).await.unwrap();
    assert!(
        ["replica-a", "replica-b"]
            .iter()
            .all(|r| observers.iter().any(|o| o == r)),
        "{observers:?}"
    );
    let later = at + SignedDuration::from_hours(1);
    assert!(store.observers(later).await.unwrap().is_empty());
    // The next observation replaces the replica's row, finding and all.
    let silent = Finding::Timeout { ms: 1000 };
    let next = observe("replica-a", Some(silent.clone()));
    store.record_observations(&[next]).await.unwrap();
    let seen = mine(store.observations(None).await.unwrap());
    assert_eq!(seen[0].finding, Some(silent));
    assert_eq!(seen[1].finding, None);
}

/// A draft's notices go out once each, through the outbox, beside the update's own deliveries:
/// to an approver who also hears the update on the same address too, with no address row, and
/// not listed among the incident's deliveries.
async fn a_drafts_notices_are_queued_once_beside_the_updates_deliveries(store: Arc<dyn Store>) {
    let (_, addresses) = subscriber(&store, "Ufficio", &["ufficio@asl.example"]).await;
    let (incident, messages) = seed(&store, 1, &[(addresses[0], "ufficio@asl.example")]).await;
    let update = store.message(messages[0]).await.unwrap().unwrap().update_id;
    let mut tx = store.begin().await.unwrap();
    let public = tx
        .insert_message(&NewMessage {
            update_id: update,
            channel: ChannelKind::Email,
            language: "it".into(),
            audience: "public".into(),
            subject: Some("Avviso".into()),
            body: "testo pubblico".into(),
            html: None,
            created_at: now(),
        })
        .await
        .unwrap()
        .id;
    let draft = tx
        .hold_for_approval(&NewDraftPart {
            incident_id: incident,
            update_id: update,
            audience: "public".into(),
            policy: "approval",
            publish_at: None,
            message_id: public,
            channel: ChannelKind::Email,
            language: "it".into(),
            recipients: vec![(addresses[0], "ufficio@asl.example".into(), "Ufficio".into())],
            citizens: None,
            now: now(),
        })
        .await
        .unwrap();
    tx.commit().await.unwrap();
    let waiting = store.unannounced_drafts(20).await.unwrap();
    assert_eq!(waiting.iter().map(|d| d.id).collect::<Vec<_>>(), [draft]);

    let buttons = banditore::render::Buttons(vec![vec![banditore::render::Button {
        label: "Approva".into(),
        action: banditore::render::ButtonAction::Callback(format!("ap:{draft}:x")),
    }]]);
    let notices = [
        DraftNotice {
            channel: ChannelKind::Email,
            language: "it".into(),
            subject: Some("Bozza in attesa".into()),
            body: "Bozza in attesa di approvazione".into(),
            buttons: None,
            recipients: vec![
                ("ufficio@asl.example".into(), "Ufficio".into()),
                ("portavoce@asl.example".into(), "m.rossi".into()),
            ],
        },
        DraftNotice {
            channel: ChannelKind::Telegram,
            language: "it".into(),
            subject: None,
            body: "<b>Bozza</b> in attesa".into(),
            buttons: Some(buttons.clone()),
            recipients: vec![("1005".into(), "m.rossi".into())],
        },
    ];
    assert_eq!(
        store.announce_draft(draft, &notices, now()).await.unwrap(),
        3
    );
    assert!(store.unannounced_drafts(20).await.unwrap().is_empty());
    // Written again (a second leader, a retry), nothing is duplicated.
    assert_eq!(
        store.announce_draft(draft, &notices, now()).await.unwrap(),
        0
    );
    // The incident's deliveries are the update's, not the notices.
    let listed = store.incident_deliveries(incident).await.unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].recipient, "ufficio@asl.example");

    // The office's address hears the update first, then the notice; the other approver at once.
    let first = claim(&store, "w", 10).await;
    let mut seen: Vec<_> = first
        .iter()
        .map(|d| (d.recipient.as_str(), d.draft_id, d.address_id.is_some()))
        .collect();
    seen.sort();
    assert_eq!(
        seen,
        [
            ("portavoce@asl.example", Some(draft), false),
            ("ufficio@asl.example", None, true),
        ]
    );
    let outcomes: Vec<_> = first
        .iter()
        .map(|d| done(d, DeliveryOutcome::Sent(Receipt::default())))
        .collect();
    store.record_outcomes("w", &outcomes, now()).await.unwrap();
    let second = claim(&store, "w", 10).await;
    assert_eq!(second.len(), 1);
    assert_eq!(second[0].recipient, "ufficio@asl.example");
    assert_eq!(second[0].draft_id, Some(draft));
    assert_eq!(second[0].address_id, None);
    let message = store.message(second[0].message_id).await.unwrap().unwrap();
    assert_eq!(message.update_id, update);
    assert_eq!(message.subject.as_deref(), Some("Bozza in attesa"));
    assert_eq!(message.buttons, None);
    let telegram = store
        .claim_deliveries(ChannelKind::Telegram, 10, now(), later(60), "w")
        .await
        .unwrap();
    assert_eq!(telegram.len(), 1);
    assert_eq!(telegram[0].draft_id, Some(draft));
    let message = store
        .message(telegram[0].message_id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(message.buttons, Some(buttons));
}

/// A call's progress is kept as its provider reports it, and a final word (no-answer, busy,
/// machine, completed…) is never overwritten by a late one, as for SMS reports.
pub async fn a_calls_final_report_is_not_overwritten_by_a_late_one(store: Arc<dyn Store>) {
    let (_, addresses) = subscriber(&store, "call", &["call@asl.example"]).await;
    let (incident, _) = seed(&store, 1, &[(addresses[0], "call@asl.example")]).await;
    let d = claim(&store, "w", 1).await.remove(0);
    let receipt = Receipt {
        provider_id: Some("CA1".into()),
        provider: Some("twilio".into()),
        segments: None,
    };
    let sent = done(&d, DeliveryOutcome::Sent(receipt));
    store.record_outcomes("w", &[sent], now()).await.unwrap();
    let report = |id: &str, status: &str| DeliveryReport {
        provider: "twilio".into(),
        provider_id: id.into(),
        status: status.into(),
        error: (status == "machine").then(|| "answered by machine_start".into()),
        at: now(),
    };
    for (status, kept) in [
        ("ringing", "ringing"),
        ("machine", "machine"),
        ("completed", "machine"),
        ("ringing", "machine"),
    ] {
        assert!(store.record_report(&report("CA1", status)).await.unwrap());
        let rows = store.incident_deliveries(incident).await.unwrap();
        assert_eq!(
            rows[0].report_status.as_deref(),
            Some(kept),
            "after {status}"
        );
        assert_eq!(
            rows[0].report_error.as_deref(),
            Some("answered by machine_start").filter(|_| kept == "machine")
        );
    }
    assert!(
        !store
            .record_report(&report("CA2", "completed"))
            .await
            .unwrap()
    );
}

/// A call's progress lands on the delivery its URL names even when it comes before the
/// delivery's outcome is written (the provider calls back at once; the process may stop before
/// the outcome), and only there: not on another delivery, not once another call carried it.
pub async fn a_calls_progress_lands_on_its_delivery_before_its_outcome_is_written(
    store: Arc<dyn Store>,
) {
    let (_, addresses) = subscriber(&store, "desk", &["desk@asl.example"]).await;
    let (incident, _) = seed(&store, 1, &[(addresses[0], "desk@asl.example")]).await;
    let d = claim(&store, "w", 1).await.remove(0);
    let report = |provider: &str, id: &str, status: &str| DeliveryReport {
        provider: provider.into(),
        provider_id: id.into(),
        status: status.into(),
        error: None,
        at: now(),
    };
    // Still being placed: the provider's first words are kept, its final one too.
    assert!(
        store
            .record_call_report(d.id, &report("twilio", "CA1", "ringing"))
            .await
            .unwrap()
    );
    assert!(
        store
            .record_call_report(d.id, &report("twilio", "CA1", "busy"))
            .await
            .unwrap()
    );
    assert!(
        !store
            .record_call_report(d.id + 1000, &report("twilio", "CA1", "busy"))
            .await
            .unwrap()
    );
    let receipt = Receipt {
        provider_id: Some("CA1".into()),
        provider: Some("twilio".into()),
        segments: None,
    };
    let sent = done(&d, DeliveryOutcome::Sent(receipt));
    store.record_outcomes("w", &[sent], now()).await.unwrap();
    let rows = store.incident_deliveries(incident).await.unwrap();
    assert_eq!(rows[0].state, "sent");
    assert_eq!(rows[0].report_status.as_deref(), Some("busy"));
    // Once sent, only that provider's call speaks for it.
    assert!(
        store
            .record_call_report(d.id, &report("twilio", "CA1", "completed"))
            .await
            .unwrap()
    );
    assert!(
        !store
            .record_call_report(d.id, &report("twilio", "CA2", "completed"))
            .await
            .unwrap()
    );
    assert!(
        !store
            .record_call_report(d.id, &report("vonage", "CA1", "completed"))
            .await
            .unwrap()
    );
}

/// App IO's statuses are read back for the messages sent within the window whose status is not
/// final, the longest unasked first; a final status (processed, rejected) ends it and is not
/// overwritten by a late intermediate one.
pub async fn app_io_messages_are_asked_about_until_their_status_is_final(store: Arc<dyn Store>) {
    let emails = ["a@asl.example", "b@asl.example"];
    let (_, addresses) = subscriber(&store, "io", &emails).await;
    seed(
        &store,
        1,
        &[(addresses[0], emails[0]), (addresses[1], emails[1])],
    )
    .await;
    let claimed = claim(&store, "w", 2).await;
    assert_eq!(claimed.len(), 2);
    let t0 = now();
    let at = |s: i64| t0 + SignedDuration::from_secs(s);
    let sent: Vec<Outcome> = claimed
        .iter()
        .zip(["M1", "M2"])
        .map(|(d, id)| {
            done(
                d,
                DeliveryOutcome::Sent(Receipt {
                    provider_id: Some(id.into()),
                    provider: Some("appio".into()),
                    segments: None,
                }),
            )
        })
        .collect();
    store.record_outcomes("w", &sent, t0).await.unwrap();
    let ids = |rows: Vec<Unsettled>| rows.into_iter().map(|u| u.provider_id).collect::<Vec<_>>();
    let asked = |since: i64, before: i64| {
        let store = store.clone();
        async move {
            ids(store
                .unsettled("appio", at(since), at(before), 10)
                .await
                .unwrap())
        }
    };
    assert_eq!(asked(-60, 0).await, ["M1", "M2"]);
    assert!(asked(-60, -1).await.is_empty(), "sent after asked_before");
    assert!(asked(1, 0).await.is_empty(), "sent before the window");
    assert!(
        ids(store.unsettled("twilio", at(-60), at(0), 10).await.unwrap()).is_empty(),
        "another provider's"
    );
    let report = |id: &str, status: &str, s: i64| DeliveryReport {
        provider: "appio".into(),
        provider_id: id.into(),
        status: status.into(),
        error: None,
        at: at(s),
    };
    assert!(
        store
            .record_report(&report("M1", "accepted", 5))
            .await
            .unwrap()
    );
    assert_eq!(asked(-60, 1).await, ["M2"], "M1 was asked at 5 s");
    assert_eq!(
        asked(-60, 10).await,
        ["M2", "M1"],
        "the longest unasked first"
    );
    // A read that got nothing still counts as asked: M2 goes to the back, its status unchanged,
    // so that messages whose reads fail do not hold the others back.
    assert!(store.report_asked("appio", "M2", at(8)).await.unwrap());
    assert_eq!(asked(-60, 10).await, ["M1", "M2"], "M2 asked at 8 s");
    assert_eq!(asked(-60, 7).await, ["M1"], "M2 not due before 8 s");
    assert!(!store.report_asked("appio", "M9", at(8)).await.unwrap());
    assert!(
        store
            .record_report(&report("M1", "processed", 6))
            .await
            .unwrap()
    );
    assert!(
        store
            .record_report(&report("M2", "rejected", 6))
            .await
            .unwrap()
    );
    assert!(asked(-60, 100).await.is_empty(), "final statuses end it");
    assert!(
        !store.report_asked("appio", "M1", at(9)).await.unwrap(),
        "a final status is not touched"
    );
    assert!(
        store
            .record_report(&report("M1", "accepted", 7))
            .await
            .unwrap()
    );
    let rows = store
        .incident_deliveries(claimed[0].incident_id)
        .await
        .unwrap();
    let m1 = rows.iter().find(|r| r.id == claimed[0].id).unwrap();
    assert_eq!(m1.report_status.as_deref(), Some("processed"));
}

/// The people a channel reached in a rolling day, for WhatsApp's messaging limit: each person
/// once, a delivery being sent counted by the ones claimed after it (never by the earlier, so
/// two senders at once never both wait); and a message read after it was delivered says so,
/// while a late word changes neither.
pub async fn the_people_reached_today_are_counted_once_and_read_follows_delivered(
    store: Arc<dyn Store>,
) {
    let (_, addresses) = subscriber(&store, "desks", &["a@asl.example", "b@asl.example"]).await;
    let (incident, _) = seed(
        &store,
        1,
        &[
            (addresses[0], "a@asl.example"),
            (addresses[1], "b@asl.example"),
        ],
    )
    .await;
    let mut claimed = claim(&store, "w", 10).await;
    claimed.sort_by_key(|d| d.id);
    assert_eq!(claimed.len(), 2);
    let (first, second) = (&claimed[0], &claimed[1]);
    let day_ago = now() - SignedDuration::from_hours(24);
    let reached_under = |recipient: &str, delivery: i64, since: Timestamp, limit: u64| {
        let store = store.clone();
        let recipient = recipient.to_owned();
        async move {
            store
                .recipients_reached(ChannelKind::Email, &recipient, delivery, since, limit)
                .await
                .unwrap()
        }
    };
    let reached = |recipient: &str, delivery: i64, since: Timestamp| {
        reached_under(recipient, delivery, since, 1)
    };
    let r = reached(&first.recipient, first.id, day_ago).await;
    assert_eq!((r.people, r.includes_recipient), (0, false), "{r:?}");
    let r = reached(&second.recipient, second.id, day_ago).await;
    assert_eq!((r.people, r.includes_recipient), (1, false), "{r:?}");
    let receipt = Receipt {
        provider_id: Some("wamid.1".into()),
        provider: Some("whatsapp".into()),
        segments: None,
    };
    store
        .record_outcomes("w", &[done(first, DeliveryOutcome::Sent(receipt))], now())
        .await
        .unwrap();
    let r = reached(&second.recipient, second.id, day_ago).await;
    assert_eq!((r.people, r.includes_recipient), (1, false), "{r:?}");
    assert!(r.earliest.is_some_and(|t| t > day_ago), "{r:?}");
    // Below the limit, or for a person already reached, when the window frees is not read.
    let r = reached_under(&second.recipient, second.id, day_ago, 2).await;
    assert_eq!((r.people, r.earliest), (1, None), "{r:?}");
    let r = reached(&first.recipient, i64::MAX, day_ago).await;
    assert_eq!(r.earliest, None, "{r:?}");
    let r = reached(&first.recipient, i64::MAX, day_ago).await;
    assert!(r.includes_recipient, "{r:?}");
    let r = reached("someone-else", i64::MAX, day_ago).await;
    assert_eq!((r.people, r.includes_recipient), (2, false), "{r:?}");
    // Sends older than the window are not counted.
    let r = reached(&second.recipient, 0, later(60)).await;
    assert_eq!(r.people, 0, "{r:?}");

    let report = |status: &str| DeliveryReport {
        provider: "whatsapp".into(),
        provider_id: "wamid.1".into(),
        status: status.into(),
        error: None,
        at: now(),
    };
    for (status, kept) in [
        ("sent", "sent"),
        ("delivered", "delivered"),
        ("read", "read"),
        ("delivered", "read"),
        ("failed", "read"),
    ] {
        assert!(store.record_report(&report(status)).await.unwrap());
        let rows = store.incident_deliveries(incident).await.unwrap();
        let row = rows.iter().find(|r| r.id == first.id).unwrap();
        assert_eq!(row.report_status.as_deref(), Some(kept), "after {status}");
    }
}

/// An incident opened by signals about `service`, under a group key of its own.
fn by_signals(service: &str) -> NewIncident {
    NewIncident {
        group_key: format!("service={service}-{}", rand_suffix()),
        title: service.into(),
        status: IncidentStatus::Investigating,
        severity: Severity::Major,
        origin: IncidentOrigin::Signals,
        labels: Labels::new(),
        opened_at: now(),
        eval_at: None,
        pending_since: None,
    }
}

/// The engine writes a step's alerts, and what became of its signals, several rows to a
/// statement: each row lands as if written alone, in the order given.
pub async fn the_engines_rows_are_written_many_to_a_statement(store: Arc<dyn Store>) {
    let ids = store
        .insert_signals(&[
            (now(), signal("a")),
            (now(), signal("b")),
            (now(), signal("c")),
        ])
        .await
        .unwrap();
    let mut tx = store.begin().await.unwrap();
    let incident = tx.insert_incident(&by_signals("cup")).await.unwrap();
    tx.mark_signals(&[], now()).await.unwrap();
    tx.mark_signals(
        &[
            SignalMark {
                signal: ids[2],
                outcome: "joined",
                incident: Some(incident.id),
            },
            SignalMark {
                signal: ids[0],
                outcome: "ignored-unknown-resolved",
                incident: None,
            },
        ],
        now(),
    )
    .await
    .unwrap();
    let left: Vec<i64> = tx
        .unprocessed_signals(10)
        .await
        .unwrap()
        .iter()
        .map(|s| s.id)
        .collect();
    assert_eq!(left, [ids[1]]);

    // Whole milliseconds, as the store keeps them.
    let at = Timestamp::from_millisecond(now().as_millisecond()).unwrap();
    let alert = |fp: &str, firing: bool| AlertRow {
        id: 0,
        incident_id: incident.id,
        fingerprint: fp.into(),
        source: banditore::domain::Source::Generic,
        firing,
        severity: Severity::Warning,
        peak_severity: Severity::Major,
        service: "cup".into(),
        component: (fp == "z").then(|| "sportello".into()),
        labels: [("host".to_owned(), format!("h-{fp}"))]
            .into_iter()
            .collect(),
        annotations: Labels::new(),
        summary: format!("{fp} down"),
        url: None,
        starts_at: None,
        first_seen_at: at,
        last_seen_at: at,
        resolved_at: (!firing).then_some(at),
        expires_after: (fp == "m").then(|| SignedDuration::from_mins(5)),
    };
    tx.save_alerts(&[]).await.unwrap();
    // Written in the order given, not the fingerprints'.
    let (z, m, a) = (alert("z", true), alert("m", true), alert("a", true));
    tx.save_alerts(&[&z, &m, &a]).await.unwrap();
    let first = tx.alerts(incident.id).await.unwrap();
    let fingerprints: Vec<&str> = first.iter().map(|a| a.fingerprint.as_str()).collect();
    assert_eq!(fingerprints, ["z", "m", "a"]);
    for (read, written) in first.iter().zip([&z, &m, &a]) {
        assert_eq!(
            (
                &read.labels,
                &read.component,
                read.expires_after,
                &read.summary
            ),
            (
                &written.labels,
                &written.component,
                written.expires_after,
                &written.summary
            )
        );
    }
    // The same keys again replace their rows, beside a new one.
    let (m2, b) = (alert("m", false), alert("b", true));
    tx.save_alerts(&[&m2, &b]).await.unwrap();
    let second = tx.alerts(incident.id).await.unwrap();
    let rows: Vec<(i64, &str, bool)> = second
        .iter()
        .map(|a| (a.id, a.fingerprint.as_str(), a.firing))
        .collect();
    assert_eq!(
        rows,
        [
            (first[0].id, "z", true),
            (first[1].id, "m", false),
            (first[2].id, "a", true),
            (rows[3].0, "b", true),
        ]
    );
    assert_eq!(second[1].resolved_at, Some(at));
    // More than one statement's worth, in order.
    let many: Vec<AlertRow> = (0..1200)
        .map(|i| alert(&format!("n{i:04}"), i % 3 > 0))
        .collect();
    tx.save_alerts(&many.iter().collect::<Vec<_>>())
        .await
        .unwrap();
    let second: Vec<AlertRow> = tx.alerts(incident.id).await.unwrap();
    assert_eq!(second.len(), 1204);
    let tail: Vec<(&str, bool)> = second[4..]
        .iter()
        .map(|a| (a.fingerprint.as_str(), a.firing))
        .collect();
    let written: Vec<(&str, bool)> = many
        .iter()
        .map(|a| (a.fingerprint.as_str(), a.firing))
        .collect();
    assert_eq!(tail, written);
    // The engine's four columns, read alone, say what the whole rows say.
    let states = tx.alert_states(incident.id).await.unwrap();
    let expected: Vec<_> = second.iter().map(AlertRow::state).collect();
    assert_eq!(format!("{states:?}"), format!("{expected:?}"));

    // The incidents a step joins and changes, read a query each.
    let key = incident.group_key.as_str();
    assert_eq!(
        tx.open_incidents_by_keys(&[key, "service=none"])
            .await
            .unwrap(),
        [(key.to_owned(), incident.id)]
    );
    assert!(tx.open_incidents_by_keys(&[]).await.unwrap().is_empty());
    let read = tx
        .incidents_to_change(&[424242, incident.id])
        .await
        .unwrap();
    assert_eq!(read.iter().map(|i| i.id).collect::<Vec<_>>(), [incident.id]);
    let other = tx.insert_incident(&by_signals("referti")).await.unwrap();
    // In the order of their ids, whatever the order asked.
    assert_eq!(
        tx.open_incidents_by_keys(&[other.group_key.as_str(), key])
            .await
            .unwrap(),
        [
            (key.to_owned(), incident.id),
            (other.group_key.clone(), other.id)
        ]
    );
    let mut resolved = read[0].clone();
    resolved.resolved_at = Some(at);
    tx.save_incident(&resolved).await.unwrap();
    assert!(tx.open_incidents_by_keys(&[key]).await.unwrap().is_empty());
    // A resolved incident is still read to change (its timer cleared).
    let read = tx
        .incidents_to_change(&[other.id, incident.id])
        .await
        .unwrap();
    assert_eq!(
        read.iter().map(|i| i.id).collect::<Vec<_>>(),
        [incident.id, other.id]
    );
    tx.commit().await.unwrap();
}

/// Ingest stores a batch of signals in one statement when it fits, else in a transaction of
/// several: either way each signal gets its own id, in the order given, and none is lost.
pub async fn signals_are_stored_whole_in_one_statement_or_several(store: Arc<dyn Store>) {
    assert!(store.insert_signals(&[]).await.unwrap().is_empty());
    let mut stored: Vec<(i64, String)> = Vec::new();
    // Around the 64 rows a statement holds: one, one full, one over, several.
    for (batch, size) in [1usize, 64, 65, 200].into_iter().enumerate() {
        let signals: Vec<_> = (0..size)
            .map(|i| (now(), signal(&format!("batch{batch}-{i}"))))
            .collect();
        let ids = store.insert_signals(&signals).await.unwrap();
        assert_eq!(ids.len(), size, "batch of {size}");
        assert!(
            ids.windows(2).all(|w| w[0] < w[1]),
            "batch of {size}: {ids:?}"
        );
        assert!(
            stored.last().is_none_or(|(last, _)| ids[0] > *last),
            "batch of {size}"
        );
        stored.extend(
            ids.iter()
                .copied()
                .zip(signals.into_iter().map(|(_, s)| s.fingerprint)),
        );
    }
    let mut tx = store.begin().await.unwrap();
    let read: Vec<(i64, String)> = tx
        .unprocessed_signals(1000)
        .await
        .unwrap()
        .into_iter()
        .map(|s| (s.id, s.signal.fingerprint))
        .collect();
    tx.commit().await.unwrap();
    assert_eq!(read, stored);
}

/// A write transaction dropped uncommitted, or open in a task that panics, leaves nothing
/// behind, and the store's next transaction begins as usual.
pub async fn a_transaction_dropped_or_cut_by_a_panic_leaves_nothing(store: Arc<dyn Store>) {
    let mut tx = store.begin().await.unwrap();
    let dropped = tx.insert_incident(&by_signals("dropped")).await.unwrap();
    drop(tx);
    let panicked = {
        let store = store.clone();
        tokio::spawn(async move {
            let mut tx = store.begin().await.unwrap();
            let written = tx.insert_incident(&by_signals("panicked")).await.unwrap();
            assert!(written.id > 0);
            panic!("a fault in the middle of a step");
        })
    };
    assert!(panicked.await.unwrap_err().is_panic());
    let mut tx = store.begin().await.unwrap();
    assert!(tx.incident(dropped.id).await.unwrap().is_none());
    assert!(tx.incident(dropped.id + 1).await.unwrap().is_none());
    let kept = tx.insert_incident(&by_signals("kept")).await.unwrap();
    tx.commit().await.unwrap();
    let mut tx = store.begin().await.unwrap();
    assert_eq!(
        tx.incident(kept.id).await.unwrap().map(|i| i.title),
        Some("kept".into())
    );
}

/// On SQLite a write transaction runs in place on a connection of its own: every other write
/// waits for it to end instead of failing on SQLite's busy lock, and goes through after.
#[tokio::test]
async fn on_sqlite_other_writes_wait_for_an_open_transaction() {
    let dir = tempfile::tempdir().unwrap();
    let store = crate::engine::sqlite_store(&dir).await;
    let mut tx = store.begin().await.unwrap();
    let incident = tx.insert_incident(&by_signals("open")).await.unwrap();
    let writer = {
        let store = store.clone();
        tokio::spawn(async move { store.insert_signals(&[(now(), signal("meanwhile"))]).await })
    };
    let setting = {
        let store = store.clone();
        tokio::spawn(async move { store.set_setting("probe", "meanwhile").await })
    };
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    assert!(!writer.is_finished() && !setting.is_finished());
    tx.commit().await.unwrap();
    assert_eq!(writer.await.unwrap().unwrap().len(), 1);
    setting.await.unwrap().unwrap();
    let mut tx = store.begin().await.unwrap();
    assert!(tx.incident(incident.id).await.unwrap().is_some());
    assert_eq!(tx.unprocessed_signals(10).await.unwrap().len(), 1);
}

/// Another process holding SQLite's write lock (an administrator's shell) is waited for, with
/// the runtime's thread free meanwhile, and the transaction begins once the lock is let go.
#[tokio::test]
async fn on_sqlite_another_process_write_lock_is_waited_for_without_blocking_the_thread() {
    let dir = tempfile::tempdir().unwrap();
    let store = crate::engine::sqlite_store(&dir).await;
    let shell = rusqlite::Connection::open(dir.path().join("engine.db")).unwrap();
    shell.execute_batch("BEGIN IMMEDIATE").unwrap();
    let begin = {
        let store = store.clone();
        tokio::spawn(async move {
            let mut tx = store.begin().await?;
            tx.insert_incident(&by_signals("after the shell")).await?;
            tx.commit().await
        })
    };
    // This test's runtime has one thread: were the wait inside SQLite, this sleep would last as
    // long as the wait.
    let asleep = std::time::Instant::now();
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    assert!(asleep.elapsed() < std::time::Duration::from_secs(2));
    assert!(!begin.is_finished());
    shell.execute_batch("COMMIT").unwrap();
    begin.await.unwrap().unwrap();
    let titles: Vec<String> = shell
        .prepare("SELECT title FROM incidents")
        .unwrap()
        .query_map([], |row| row.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(titles, ["after the shell"]);
}

suite!(
    a_transaction_dropped_or_cut_by_a_panic_leaves_nothing,
    signals_are_stored_whole_in_one_statement_or_several,
    the_engines_rows_are_written_many_to_a_statement,
    app_io_messages_are_asked_about_until_their_status_is_final,
    the_people_reached_today_are_counted_once_and_read_follows_delivered,
    a_calls_progress_lands_on_its_delivery_before_its_outcome_is_written,
    a_calls_final_report_is_not_overwritten_by_a_late_one,
    observations_keep_what_each_check_found_as_data,
    concurrent_claims_are_disjoint_and_sent_rows_stay_sent,
    a_later_update_waits_for_the_earlier_one_to_the_same_recipient,
    a_recipient_reads_every_incident_in_the_order_written,
    leases_expire_only_for_stopped_workers_and_outcomes_are_fenced,
    a_gone_address_is_marked_and_its_pending_deliveries_stop,
    unsubscribing_cancels_pending_deliveries,
    config_subscribers_stay_in_step_and_keep_opt_outs,
    old_history_is_pruned_and_open_work_kept,
    one_replica_leads_until_its_lease_runs_out_or_it_steps_down,
    a_shared_bucket_paces_every_taker_together,
    a_drafts_notices_are_queued_once_beside_the_updates_deliveries,
);
