//! Public statements to citizens written in batches once approved, against the `Store` trait so
//! that SQLite and PostgreSQL run the same cases: the cursor moves with each batch in one
//! transaction, a writer that stopped (or lost a race to another replica) writes nothing twice,
//! and citizens who left since the draft was held are skipped.

use std::collections::BTreeSet;
use std::sync::Arc;

use banditore::domain::Severity;
use banditore::domain::subscriber::{ChannelKind, Subscription};
use banditore::store::*;
use jiff::{SignedDuration, Timestamp};

use crate::store::{seed, subscriber};
use crate::support::suite;

fn plan() -> CitizenPlan {
    CitizenPlan {
        name: "Iscrizione alla pagina di stato".into(),
        language: "it".to_owned().try_into().unwrap(),
        services: vec!["cup".into()],
        subscriptions: vec![Subscription {
            matchers: vec!["service=\"cup\"".parse().unwrap()],
            min_severity: Severity::Info,
            channels: vec![ChannelKind::Email],
        }],
    }
}

/// `n` citizens following `cup` by email, as a confirmed sign-up makes them: their address ids.
pub(crate) async fn citizens(store: &Arc<dyn Store>, n: usize) -> Vec<i64> {
    let now = Timestamp::now();
    let mut addresses = Vec::new();
    for i in 0..n {
        let address = format!("cittadino{i}@example.org");
        let new = NewSignup {
            token_sha256: format!("token-{i}-{}", banditore::ids::random_hex(4)),
            channel: ChannelKind::Email,
            address: address.clone(),
            address_key: format!("key:{address}"),
            language: "it".to_owned().try_into().unwrap(),
            services: vec!["cup".into()],
            code_sha256: None,
            replaces: None,
            created_at: now,
            expires_at: now + SignedDuration::from_hours(24),
        };
        let since = now - SignedDuration::from_hours(1);
        let id = store.create_signup(&new, since, 3).await.unwrap().unwrap();
        let address = store
            .confirm_signup(id, &plan(), now)
            .await
            .unwrap()
            .unwrap();
        addresses.push(address);
    }
    addresses
}

/// A public statement held for approval, reaching every citizen; approved. Returns the
/// incident, and how many citizens the approval said it reaches.
async fn approved_statement(store: &Arc<dyn Store>, desk: (i64, &str)) -> (i64, u64) {
    let (incident, messages) = seed(store, 1, &[]).await;
    let update = store.message(messages[0]).await.unwrap().unwrap().update_id;
    let mut tx = store.begin().await.unwrap();
    let (groups, through) = tx.citizen_groups(Some(&["cup".to_owned()])).await.unwrap();
    let reach: u64 = groups.iter().map(|g| g.addresses).sum();
    assert!(
        tx.citizen_groups(Some(&["other".to_owned()]))
            .await
            .unwrap()
            .0
            .is_empty(),
        "nobody follows `other`"
    );
    let public = tx
        .insert_message(&NewMessage {
            update_id: update,
            channel: ChannelKind::Email,
            language: "it".into(),
            audience: "public".into(),
            subject: Some("Avviso".into()),
            body: "CUP non raggiungibile".into(),
            html: None,
            created_at: Timestamp::now(),
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
            recipients: vec![(desk.0, desk.1.into(), "Ufficio stampa".into())],
            citizens: Some((reach, through)),
            now: Timestamp::now(),
        })
        .await
        .unwrap();
    tx.commit().await.unwrap();
    let held = store.draft(draft).await.unwrap().unwrap();
    assert_eq!(
        held.parts[0].recipients as u64,
        reach + 1,
        "desk and citizens"
    );
    // Nothing is written before the approval.
    let next = store.next_citizen_part().await.unwrap();
    assert!(
        next.as_ref().is_none_or(|p| p.draft_id != draft),
        "{next:?}"
    );
    let decided = store
        .decide_draft(
            draft,
            &Decision::Approve { channels: None },
            "m.rossi",
            Timestamp::now(),
        )
        .await
        .unwrap()
        .unwrap();
    assert_eq!(decided.deliveries, 1, "the listed desk, at once");
    (incident, decided.citizens)
}

/// One batch of the oldest part, written as the leader writes it: every active address.
async fn write_batch(store: &Arc<dyn Store>, limit: u32) -> Option<Option<u64>> {
    let part = store.next_citizen_part().await.unwrap()?;
    let batch = store
        .citizens_after(part.done, part.through, limit)
        .await
        .unwrap();
    let to = match batch.last() {
        Some(last) if batch.len() as u32 == limit => last.id,
        _ => part.through,
    };
    let rows = deliveries(&part, &batch);
    Some(
        store
            .write_citizen_batch(part.part_id, part.done, to, &rows)
            .await
            .unwrap(),
    )
}

fn deliveries(part: &CitizenPart, batch: &[SubscriberRow]) -> Vec<NewDelivery> {
    batch
        .iter()
        .flat_map(|s| s.addresses.iter().map(move |a| (s, a)))
        .filter(|(_, a)| a.channel == part.channel && a.is_active())
        .map(|(s, a)| NewDelivery {
            message_id: part.message_id,
            update_id: part.update_id,
            incident_id: part.incident_id,
            address_id: a.id,
            subscriber_name: s.name.clone(),
            channel: part.channel,
            recipient: a.address.clone(),
            origin_at: part.origin_at,
            created_at: Timestamp::now(),
        })
        .collect()
}

async fn recipients(store: &Arc<dyn Store>, incident: i64) -> Vec<String> {
    let mut all: Vec<String> = store
        .incident_deliveries(incident)
        .await
        .unwrap()
        .into_iter()
        .filter(|d| d.state != "cancelled")
        .map(|d| d.recipient)
        .collect();
    all.sort();
    all
}

async fn a_stopped_writer_resumes_at_its_cursor_and_writes_nobody_twice(store: Arc<dyn Store>) {
    let (_, desk) = subscriber(&store, "Ufficio stampa", &["stampa@asl.example"]).await;
    let addresses = citizens(&store, 7).await;
    let (incident, reach) = approved_statement(&store, (desk[0], "stampa@asl.example")).await;
    assert_eq!(reach, 7);
    assert_eq!(recipients(&store, incident).await, ["stampa@asl.example"]);

    // A writer reads the first batch, then stops before writing it.
    let part = store.next_citizen_part().await.unwrap().unwrap();
    assert_eq!(part.done, 0);
    let stale = store.citizens_after(0, part.through, 3).await.unwrap();
    assert_eq!(stale.len(), 3);
    // The next leader writes the first batch; one citizen leaves before the second.
    assert_eq!(write_batch(&store, 3).await, Some(Some(3)));
    assert!(
        store
            .unsubscribe_address(addresses[4], Timestamp::now())
            .await
            .unwrap()
    );
    // The stopped writer comes back with what it read: its cursor is gone, nothing is written.
    let rows = deliveries(&part, &stale);
    let late = store
        .write_citizen_batch(part.part_id, 0, stale[2].id, &rows)
        .await
        .unwrap();
    assert_eq!(late, None);
    let resumed = store.next_citizen_part().await.unwrap().unwrap();
    assert_eq!(
        resumed.done, stale[2].id,
        "the cursor is where the batch ended"
    );
    // Citizen 4 was read active by this batch's writer, and is still skipped: the write checks.
    let batch = store
        .citizens_after(resumed.done, resumed.through, 3)
        .await
        .unwrap();
    assert!(
        store
            .unsubscribe_address(addresses[5], Timestamp::now())
            .await
            .unwrap()
    );
    let rows = deliveries(&resumed, &batch);
    assert_eq!(rows.len(), 2, "citizen 4 had already left when read");
    let written = store
        .write_citizen_batch(resumed.part_id, resumed.done, batch[2].id, &rows)
        .await
        .unwrap();
    assert_eq!(
        written,
        Some(1),
        "citizen 5 left between the read and the write"
    );
    assert_eq!(write_batch(&store, 3).await, Some(Some(1)));
    assert_eq!(
        store.next_citizen_part().await.unwrap(),
        None,
        "all written"
    );
    let mut expected: Vec<String> = [0, 1, 2, 3, 6]
        .iter()
        .map(|i| format!("cittadino{i}@example.org"))
        .collect();
    expected.push("stampa@asl.example".into());
    expected.sort();
    assert_eq!(recipients(&store, incident).await, expected);
}

async fn writers_on_two_replicas_write_each_citizen_once(store: Arc<dyn Store>) {
    let (_, desk) = subscriber(&store, "Ufficio stampa", &["stampa@asl.example"]).await;
    citizens(&store, 40).await;
    let (incident, _) = approved_statement(&store, (desk[0], "stampa@asl.example")).await;
    // Two writers (a leader that has not yet noticed it lost its lease, and the new one) race
    // for every batch.
    let writer = |store: Arc<dyn Store>| async move {
        let (mut won, mut lost, mut written) = (0, 0, 0);
        while let Some(outcome) = write_batch(&store, 3).await {
            match outcome {
                Some(n) => {
                    won += 1;
                    written += n;
                }
                None => lost += 1,
            }
        }
        (won, lost, written)
    };
    let (a, b) = tokio::join!(
        tokio::spawn(writer(store.clone())),
        tokio::spawn(writer(store.clone()))
    );
    let (a, b) = (a.unwrap(), b.unwrap());
    assert_eq!(
        a.0 + b.0,
        14,
        "each of the 14 batches is written by one writer"
    );
    assert_eq!(a.2 + b.2, 40);
    let listed = recipients(&store, incident).await;
    let unique: BTreeSet<&String> = listed.iter().collect();
    assert_eq!(listed.len(), 41);
    assert_eq!(unique.len(), 41);
}

/// Statements are written out in the order they were approved, one part at a time, so that a
/// citizen's later statement is never written before the earlier one (the outbox then sends
/// them in that order).
async fn a_later_statement_waits_until_the_earlier_one_is_written(store: Arc<dyn Store>) {
    let (_, desk) = subscriber(&store, "Ufficio stampa", &["stampa@asl.example"]).await;
    citizens(&store, 5).await;
    let (first, _) = approved_statement(&store, (desk[0], "stampa@asl.example")).await;
    assert_eq!(write_batch(&store, 2).await, Some(Some(2)));
    let (second, _) = approved_statement(&store, (desk[0], "stampa@asl.example")).await;
    let mut order = Vec::new();
    while let Some(part) = store.next_citizen_part().await.unwrap() {
        order.push(part.incident_id);
        write_batch(&store, 2).await;
    }
    order.dedup();
    assert_eq!(order, [first, second]);
    assert_eq!(recipients(&store, first).await.len(), 6);
    assert_eq!(recipients(&store, second).await.len(), 6);
}

/// A citizen may sign up by WhatsApp (migration 0023 widened `signups.channel`), and the
/// sign-up's rows, ids and limits are kept by the rebuild.
async fn a_citizen_signs_up_by_whatsapp(store: Arc<dyn Store>) {
    let existing = citizens(&store, 1).await;
    let now = Timestamp::now();
    let new = NewSignup {
        token_sha256: format!("token-wa-{}", banditore::ids::random_hex(4)),
        channel: ChannelKind::WhatsApp,
        address: "+393331234567".into(),
        address_key: "key:+393331234567".into(),
        language: "it".to_owned().try_into().unwrap(),
        services: vec!["cup".into()],
        code_sha256: Some("code".into()),
        replaces: None,
        created_at: now,
        expires_at: now + SignedDuration::from_mins(10),
    };
    let since = now - SignedDuration::from_hours(1);
    let id = store.create_signup(&new, since, 3).await.unwrap().unwrap();
    let address = store
        .confirm_signup(id, &plan(), now)
        .await
        .unwrap()
        .unwrap();
    assert_ne!(address, existing[0]);
}

suite!(
    a_stopped_writer_resumes_at_its_cursor_and_writes_nobody_twice,
    writers_on_two_replicas_write_each_citizen_once,
    a_later_statement_waits_until_the_earlier_one_is_written,
    a_citizen_signs_up_by_whatsapp,
);
