//! Desks' acknowledgements against the `Store` trait, so that SQLite and PostgreSQL run the same
//! cases: a desk acknowledges an incident once whichever of its addresses answers, replicas
//! taking acknowledgements at once record one, only an address sent a desk's message about the
//! incident can acknowledge it, and a reply finds the latest incident texted to its number.

use std::sync::Arc;

use banditore::domain::subscriber::{ChannelKind, SubscriberRules, SubscriberSpec};
use banditore::domain::{IncidentStatus, Labels, Severity, UpdateKind};
use banditore::store::*;
use jiff::{SignedDuration, Timestamp};

use crate::support::suite;

pub(crate) fn at(seconds: i64) -> Timestamp {
    Timestamp::from_second(1_800_000_000 + seconds).unwrap()
}

/// A desk with these addresses (`{"email": [...], "sms": [...]}`): its id and its address ids.
pub(crate) async fn desk(
    store: &Arc<dyn Store>,
    name: &str,
    addresses: serde_json::Value,
) -> (i64, Vec<i64>) {
    let spec: SubscriberSpec = serde_json::from_value(serde_json::json!({
        "name": name, "addresses": addresses, "subscriptions": [{}]
    }))
    .unwrap();
    let valid = spec
        .validate(&SubscriberRules::new("it".to_owned().try_into().unwrap()))
        .unwrap();
    let id = store.create_subscriber(&valid, at(0)).await.unwrap();
    let row = store.subscriber(id).await.unwrap().unwrap();
    (id, row.addresses.iter().map(|a| a.id).collect())
}

/// One message of an opening: its channel, its audience, and its recipients (address id, address).
pub(crate) type Group<'a> = (ChannelKind, &'a str, Vec<(i64, String)>);

/// An incident whose opening (routed) went as one message per group, one delivery per
/// recipient, left pending; the store suites of acknowledgements, the board and escalation
/// share it.
pub(crate) async fn opening(store: &Arc<dyn Store>, groups: &[Group<'_>]) -> i64 {
    let mut tx = store.begin().await.unwrap();
    let incident = tx
        .insert_incident(&NewIncident {
            group_key: format!("service=ack-{}", banditore::ids::random_hex(4)),
            title: "CUP non raggiungibile".into(),
            status: IncidentStatus::Investigating,
            severity: Severity::Major,
            origin: IncidentOrigin::Manual,
            labels: Labels::new(),
            opened_at: at(0),
            eval_at: None,
            pending_since: None,
        })
        .await
        .unwrap();
    let update = tx
        .insert_update(&NewUpdate {
            incident_id: incident.id,
            seq: 1,
            title: "CUP non raggiungibile".into(),
            signals: Vec::new(),
            kind: UpdateKind::Opened,
            status: IncidentStatus::Investigating,
            severity: Severity::Major,
            body: None,
            author: None,
            created_at: at(0),
            origin_at: at(0),
            silent: false,
        })
        .await
        .unwrap();
    for (channel, audience, to) in groups {
        let message = tx
            .insert_message(&NewMessage {
                update_id: update.id,
                channel: *channel,
                language: "it".into(),
                audience: (*audience).into(),
                subject: None,
                body: "CUP non raggiungibile".into(),
                html: None,
                created_at: at(0),
            })
            .await
            .unwrap()
            .id;
        let rows: Vec<NewDelivery> = to
            .iter()
            .map(|(address_id, recipient)| NewDelivery {
                message_id: message,
                update_id: update.id,
                incident_id: incident.id,
                address_id: *address_id,
                subscriber_name: format!("at {recipient}"),
                channel: *channel,
                recipient: recipient.clone(),
                origin_at: at(0),
                created_at: at(0),
            })
            .collect();
        tx.insert_deliveries(&rows).await.unwrap();
    }
    tx.mark_routed(update.id, at(0)).await.unwrap();
    tx.commit().await.unwrap();
    incident.id
}

/// An incident whose opening went on `channel` to `audience`, one delivery per address.
async fn incident(
    store: &Arc<dyn Store>,
    channel: ChannelKind,
    audience: &str,
    to: &[(i64, &str)],
) -> i64 {
    let to = to.iter().map(|(a, r)| (*a, (*r).to_owned())).collect();
    opening(store, &[(channel, audience, to)]).await
}

/// Sends every pending delivery on `channel`, as a dispatcher would at `now`.
pub(crate) async fn send_all(store: &Arc<dyn Store>, channel: ChannelKind, now: Timestamp) {
    send_through(store, channel, None, now).await;
}

/// [`send_all`], the provider (when given) answering each with the id `<provider>-<id>`.
pub(crate) async fn send_through(
    store: &Arc<dyn Store>,
    channel: ChannelKind,
    provider: Option<&str>,
    now: Timestamp,
) {
    let claimed = store
        .claim_deliveries(channel, 1000, now, now + SignedDuration::from_secs(60), "w")
        .await
        .unwrap();
    let outcomes: Vec<Outcome> = claimed
        .iter()
        .map(|d| Outcome {
            delivery: d.id,
            attempts: d.attempts,
            outcome: DeliveryOutcome::Sent(Receipt {
                provider_id: provider.map(|p| format!("{p}-{}", d.id)),
                provider: provider.map(str::to_owned),
                segments: None,
            }),
        })
        .collect();
    store.record_outcomes("w", &outcomes, now).await.unwrap();
}

async fn a_desk_acknowledges_once_through_whichever_address_answers_first(store: Arc<dyn Store>) {
    let (desk_id, addresses) = desk(
        &store,
        "CUP Foligno",
        serde_json::json!({"email": ["cup@asl.example", "cup.backup@asl.example"]}),
    )
    .await;
    let id = incident(
        &store,
        ChannelKind::Email,
        "internal",
        &[
            (addresses[0], "cup@asl.example"),
            (addresses[1], "cup.backup@asl.example"),
        ],
    )
    .await;
    send_all(&store, ChannelKind::Email, at(2)).await;

    let first = store.acknowledge(id, addresses[1], at(65)).await.unwrap();
    let Acknowledged::Recorded(ack) = first else {
        panic!("the desk's first acknowledgement is recorded: {first:?}");
    };
    assert_eq!(ack.incident_id, id);
    assert_eq!(ack.subscriber_id, Some(desk_id));
    assert_eq!(ack.subscriber_name, "CUP Foligno");
    assert_eq!(ack.address_id, Some(addresses[1]));
    assert_eq!(ack.channel, ChannelKind::Email);
    assert_eq!(ack.recipient, "cup.backup@asl.example");
    assert_eq!(ack.first_sent_at, Some(at(2)));
    assert_eq!(ack.acked_at, at(65));
    assert!(ack.delivery_id.is_some());

    // The desk's other address, later: the first record stands.
    let again = store.acknowledge(id, addresses[0], at(90)).await.unwrap();
    assert_eq!(again, Acknowledged::Already(ack.clone()));
    assert_eq!(store.acknowledgements(id).await.unwrap(), vec![ack]);
}

async fn only_an_address_sent_a_desks_message_acknowledges(store: Arc<dyn Store>) {
    let (_, told) = desk(
        &store,
        "told",
        serde_json::json!({"email": ["a@asl.example"]}),
    )
    .await;
    let (_, untold) = desk(
        &store,
        "untold",
        serde_json::json!({"email": ["b@asl.example"]}),
    )
    .await;
    let (_, public) = desk(
        &store,
        "citizen",
        serde_json::json!({"email": ["c@x.example"]}),
    )
    .await;
    let id = incident(
        &store,
        ChannelKind::Email,
        "internal",
        &[(told[0], "a@asl.example")],
    )
    .await;
    let other = incident(
        &store,
        ChannelKind::Email,
        "public",
        &[(public[0], "c@x.example")],
    )
    .await;
    send_all(&store, ChannelKind::Email, at(1)).await;

    for (incident_id, address_id, why) in [
        (id, untold[0], "an address never sent the incident"),
        (other, told[0], "an address sent another incident"),
        (
            other,
            public[0],
            "a public message asks for no acknowledgement",
        ),
        (id, i64::MAX, "no such address"),
        (i64::MAX, told[0], "no such incident"),
    ] {
        assert_eq!(
            store
                .acknowledge(incident_id, address_id, at(5))
                .await
                .unwrap(),
            Acknowledged::NotSent,
            "{why}"
        );
    }
    assert!(store.acknowledgements(id).await.unwrap().is_empty());
    assert!(store.acknowledgements(other).await.unwrap().is_empty());
    // A message still pending counts: the token is made only when a send starts.
    assert!(matches!(
        store.acknowledge(id, told[0], at(6)).await.unwrap(),
        Acknowledged::Recorded(_)
    ));
    assert_eq!(
        store.ack_address(told[0]).await.unwrap(),
        Some((ChannelKind::Email, "a@asl.example".to_owned()))
    );
    assert_eq!(store.ack_address(i64::MAX).await.unwrap(), None);
}

async fn replicas_taking_acknowledgements_at_once_record_one(store: Arc<dyn Store>) {
    let emails: Vec<String> = (0..8).map(|i| format!("desk{i}@asl.example")).collect();
    let (_, addresses) = desk(&store, "CUP Terni", serde_json::json!({ "email": emails })).await;
    let to: Vec<(i64, &str)> = addresses
        .iter()
        .zip(&emails)
        .map(|(a, e)| (*a, e.as_str()))
        .collect();
    let id = incident(&store, ChannelKind::Email, "internal", &to).await;
    send_all(&store, ChannelKind::Email, at(1)).await;
    let racing: Vec<_> = addresses
        .iter()
        .enumerate()
        .map(|(i, address)| {
            let store = store.clone();
            let address = *address;
            tokio::spawn(async move { store.acknowledge(id, address, at(10 + i as i64)).await })
        })
        .collect();
    let mut recorded = 0;
    for r in racing {
        if let Acknowledged::Recorded(_) = r.await.unwrap().unwrap() {
            recorded += 1;
        }
    }
    assert_eq!(recorded, 1, "one desk, one acknowledgement");
    assert_eq!(store.acknowledgements(id).await.unwrap().len(), 1);
}

async fn a_reply_finds_the_latest_incident_texted_to_its_number(store: Arc<dyn Store>) {
    let number = "+393331234567";
    let (_, sms) = desk(
        &store,
        "CUP Spoleto",
        serde_json::json!({ "sms": [number] }),
    )
    .await;
    assert_eq!(store.latest_texted(number).await.unwrap(), None);
    let first = incident(&store, ChannelKind::Sms, "internal", &[(sms[0], number)]).await;
    assert_eq!(
        store.latest_texted(number).await.unwrap(),
        None,
        "a text not sent yet is not one to reply to"
    );
    send_all(&store, ChannelKind::Sms, at(1)).await;
    let second = incident(&store, ChannelKind::Sms, "internal", &[(sms[0], number)]).await;
    send_all(&store, ChannelKind::Sms, at(2)).await;
    assert_eq!(
        store.latest_texted(number).await.unwrap(),
        Some((second, sms[0]))
    );
    // A public statement to the same number later is not one a desk answers.
    incident(&store, ChannelKind::Sms, "public", &[(sms[0], number)]).await;
    send_all(&store, ChannelKind::Sms, at(3)).await;
    assert_eq!(
        store.latest_texted(number).await.unwrap(),
        Some((second, sms[0]))
    );
    assert_eq!(store.latest_texted("+393330000000").await.unwrap(), None);
    assert!(first < second);

    // Once the second incident is resolved, its text asks for nothing: the reply is for the
    // first, still open, even though its text left earlier.
    let mut tx = store.begin().await.unwrap();
    let mut resolved = tx.incident(second).await.unwrap().unwrap();
    resolved.status = IncidentStatus::Resolved;
    resolved.resolved_at = Some(at(4));
    tx.save_incident(&resolved).await.unwrap();
    tx.commit().await.unwrap();
    assert_eq!(
        store.latest_texted(number).await.unwrap(),
        Some((first, sms[0]))
    );
}

async fn an_acknowledgement_cancels_the_desks_calls_still_waiting(store: Arc<dyn Store>) {
    let number = "+393331234568";
    let (_, addresses) = desk(
        &store,
        "CUP Orvieto",
        serde_json::json!({"email": ["orvieto@asl.example"], "voice": [number]}),
    )
    .await;
    let (_, other) = desk(
        &store,
        "CUP Narni",
        serde_json::json!({ "voice": ["+393331234569"] }),
    )
    .await;
    let id = opening(
        &store,
        &[
            (
                ChannelKind::Email,
                "cup",
                vec![(addresses[0], "orvieto@asl.example".into())],
            ),
            (
                ChannelKind::Voice,
                "cup",
                vec![
                    (addresses[1], number.into()),
                    (other[0], "+393331234569".into()),
                ],
            ),
        ],
    )
    .await;
    send_all(&store, ChannelKind::Email, at(1)).await;
    // The calls wait (paced, or retried); the desk says seen by the email's link.
    assert!(matches!(
        store.acknowledge(id, addresses[0], at(5)).await.unwrap(),
        Acknowledged::Recorded(_)
    ));
    let calls = store
        .claim_deliveries(ChannelKind::Voice, 10, at(6), at(60), "w")
        .await
        .unwrap();
    let called: Vec<&str> = calls.iter().map(|c| c.recipient.as_str()).collect();
    assert_eq!(
        called,
        ["+393331234569"],
        "only the desk that has not said seen is called"
    );
    // The board leaves the cancelled call out: the desk was emailed, and saw it.
    let board = store.desk_messages(id).await.unwrap();
    assert!(
        board
            .iter()
            .all(|m| m.channel != ChannelKind::Voice || m.recipient != number)
    );
}

suite!(
    a_desk_acknowledges_once_through_whichever_address_answers_first,
    only_an_address_sent_a_desks_message_acknowledges,
    replicas_taking_acknowledgements_at_once_record_one,
    a_reply_finds_the_latest_incident_texted_to_its_number,
    an_acknowledgement_cancels_the_desks_calls_still_waiting,
);
