//! Escalation ladders against the `Store` trait, so that SQLite and PostgreSQL run the same
//! cases: a desk's own policy stored, edited and kept in step with the configuration; a ladder
//! written once by racing replicas; a due step decided once by two would-be leaders at once; an
//! acknowledgement stopping the desk's waiting steps and a resolution ending the incident's.

use std::sync::Arc;

use banditore::domain::escalation::EscalationPolicy;
use banditore::domain::subscriber::{
    ChannelKind, SubscriberRules, SubscriberSpec, ValidSubscriber,
};
use banditore::store::*;
use jiff::Timestamp;

use crate::store_acks::opening;
use crate::support::suite;

fn at(seconds: i64) -> Timestamp {
    Timestamp::from_second(1_800_000_000 + seconds).unwrap()
}

fn spec(name: &str, escalation: serde_json::Value) -> ValidSubscriber {
    let spec: SubscriberSpec = serde_json::from_value(serde_json::json!({
        "name": name, "audience": "cup",
        "addresses": {"email": format!("{name}@asl.example")},
        "subscriptions": [{}], "escalation": escalation,
    }))
    .unwrap();
    spec.validate(&SubscriberRules::new("it".to_owned().try_into().unwrap()))
        .unwrap()
}

fn policy(escalation: serde_json::Value) -> EscalationPolicy {
    spec("x", escalation).escalation.unwrap()
}

/// A desk and the id of its email address.
async fn desk(store: &Arc<dyn Store>, name: &str) -> (i64, i64) {
    let id = store
        .create_subscriber(&spec(name, serde_json::json!([])), at(0))
        .await
        .unwrap();
    let row = store.subscriber(id).await.unwrap().unwrap();
    (id, row.addresses[0].id)
}

/// An incident with its opening sent by email to the `cup` audience at these (address id,
/// email) pairs.
async fn incident(store: &Arc<dyn Store>, to: &[(i64, String)]) -> i64 {
    opening(store, &[(ChannelKind::Email, "cup", to.to_vec())]).await
}

/// Text after five minutes, the webhook after ten.
fn steps() -> Vec<NewEscalationStep> {
    vec![
        NewEscalationStep {
            step: 1,
            channels: vec![ChannelKind::Sms],
            due_at: at(300),
        },
        NewEscalationStep {
            step: 2,
            channels: vec![ChannelKind::Webhook],
            due_at: at(600),
        },
    ]
}

async fn start(store: &Arc<dyn Store>, incident: i64, desk: i64, now: Timestamp) -> u64 {
    let mut tx = store.begin().await.unwrap();
    let written = tx
        .start_escalation(incident, desk, &steps(), now)
        .await
        .unwrap();
    tx.commit().await.unwrap();
    written
}

fn states(rows: &[EscalationRow], desk: i64) -> Vec<EscalationState> {
    rows.iter()
        .filter(|r| r.subscriber_id == desk)
        .map(|r| r.state)
        .collect()
}

async fn a_desks_own_policy_is_stored_edited_and_kept_in_step_with_the_file(store: Arc<dyn Store>) {
    let cup = serde_json::json!([
        {"after": "0s", "channels": ["email", "telegram"]},
        {"after": "5m", "channels": ["sms"]},
    ]);
    let id = store
        .create_subscriber(&spec("cup-api", cup.clone()), at(0))
        .await
        .unwrap();
    let row = store.subscriber(id).await.unwrap().unwrap();
    assert_eq!(row.escalation, Some(policy(cup.clone())));
    let edit = |escalation| SubscriberEdit {
        escalation: Some(escalation),
        ..SubscriberEdit::default()
    };
    let later = policy(serde_json::json!([{"after": "90s", "channels": ["sms"]}]));
    store
        .edit_subscriber(id, &edit(Some(later.clone())), at(1))
        .await
        .unwrap();
    let row = store.subscriber(id).await.unwrap().unwrap();
    assert_eq!(row.escalation, Some(later));
    assert_eq!(row.escalation.unwrap().specs()[0].after, "1m 30s");
    store.edit_subscriber(id, &edit(None), at(2)).await.unwrap();
    assert_eq!(
        store.subscriber(id).await.unwrap().unwrap().escalation,
        None
    );

    // The file's desks: written, unchanged at the next start, changed when the file changes.
    let file = vec![spec("cup-file", cup.clone())];
    assert_eq!(
        store
            .sync_config_subscribers(&file, at(3))
            .await
            .unwrap()
            .created,
        1
    );
    assert_eq!(
        store
            .sync_config_subscribers(&file, at(4))
            .await
            .unwrap()
            .updated,
        0
    );
    let changed = vec![spec("cup-file", serde_json::json!([]))];
    assert_eq!(
        store
            .sync_config_subscribers(&changed, at(5))
            .await
            .unwrap()
            .updated,
        1
    );
    let rows = store.subscribers().await.unwrap();
    let from_file = rows.iter().find(|s| s.name == "cup-file").unwrap();
    assert_eq!(from_file.escalation, None);
}

async fn racing_replicas_write_a_desks_ladder_once(store: Arc<dyn Store>) {
    let (desk_id, address) = desk(&store, "cup-racing").await;
    let id = incident(&store, &[(address, "cup-racing@asl.example".into())]).await;
    let racing: Vec<_> = (0..6)
        .map(|i| {
            let store = store.clone();
            tokio::spawn(async move { start(&store, id, desk_id, at(i)).await })
        })
        .collect();
    let mut written = 0;
    for r in racing {
        written += r.await.unwrap();
    }
    assert_eq!(written, 2, "two steps, written once");
    let rows = store.escalations(id).await.unwrap();
    assert_eq!(rows.len(), 2);
    assert_eq!(rows[0].due_at, at(300));
    let mut tx = store.begin().await.unwrap();
    assert_eq!(tx.escalated_desks(id).await.unwrap(), vec![desk_id]);
    assert_eq!(tx.next_escalation_at().await.unwrap(), Some(at(300)));
    tx.commit().await.unwrap();
}

async fn a_due_step_is_decided_once_when_two_leaders_step_at_once(store: Arc<dyn Store>) {
    let mut desks = Vec::new();
    for i in 0..5 {
        let name = format!("cup-{i}");
        let (desk_id, address) = desk(&store, &name).await;
        desks.push((desk_id, address, format!("{name}@asl.example")));
    }
    let to: Vec<(i64, String)> = desks.iter().map(|(_, a, e)| (*a, e.clone())).collect();
    let id = incident(&store, &to).await;
    for (desk_id, ..) in &desks {
        start(&store, id, *desk_id, at(0)).await;
    }
    let leaders: Vec<_> = (0..2)
        .map(|_| {
            let store = store.clone();
            tokio::spawn(async move {
                let mut tx = store.begin().await.unwrap();
                let mut fired = Vec::new();
                for step in tx.due_escalations(at(300), 64).await.unwrap() {
                    if tx
                        .settle_escalation(step.id, EscalationState::Fired, at(300))
                        .await
                        .unwrap()
                    {
                        fired.push(step.id);
                    }
                }
                tx.commit().await.unwrap();
                fired
            })
        })
        .collect();
    let mut fired = Vec::new();
    for l in leaders {
        fired.extend(l.await.unwrap());
    }
    fired.sort();
    let before = fired.len();
    fired.dedup();
    assert_eq!(before, fired.len(), "no step fired twice");
    assert_eq!(fired.len(), 5, "every due step fired");
    let mut tx = store.begin().await.unwrap();
    assert!(tx.due_escalations(at(599), 64).await.unwrap().is_empty());
    assert_eq!(tx.due_escalations(at(600), 64).await.unwrap().len(), 5);
    // A step that left `waiting` does not move again.
    assert!(
        !tx.settle_escalation(fired[0], EscalationState::Resolved, at(601))
            .await
            .unwrap()
    );
    tx.commit().await.unwrap();
}

async fn an_acknowledgement_stops_only_its_desks_waiting_steps(store: Arc<dyn Store>) {
    let (told, told_address) = desk(&store, "cup-told").await;
    let (other, other_address) = desk(&store, "cup-other").await;
    let id = incident(
        &store,
        &[
            (told_address, "cup-told@asl.example".into()),
            (other_address, "cup-other@asl.example".into()),
        ],
    )
    .await;
    start(&store, id, told, at(0)).await;
    start(&store, id, other, at(0)).await;
    let mut tx = store.begin().await.unwrap();
    let first = tx.due_escalations(at(300), 1).await.unwrap();
    assert!(
        tx.settle_escalation(first[0].id, EscalationState::Fired, at(300))
            .await
            .unwrap()
    );
    tx.commit().await.unwrap();
    let fired_desk = first[0].subscriber_id;
    let (acking, acking_address) = if fired_desk == told {
        (told, told_address)
    } else {
        (other, other_address)
    };
    let still = if acking == told { other } else { told };

    let acked = store
        .acknowledge(id, acking_address, at(400))
        .await
        .unwrap();
    assert!(matches!(acked, Acknowledged::Recorded(_)), "{acked:?}");
    let rows = store.escalations(id).await.unwrap();
    assert_eq!(
        states(&rows, acking),
        vec![EscalationState::Fired, EscalationState::Acknowledged],
        "what fired stays fired"
    );
    assert_eq!(
        states(&rows, still),
        vec![EscalationState::Waiting, EscalationState::Waiting]
    );
    assert_eq!(
        store.next_escalations(id).await.unwrap(),
        vec![NextEscalation {
            subscriber_id: still,
            subscriber_name: if still == told {
                "cup-told"
            } else {
                "cup-other"
            }
            .into(),
            step: 1,
            channels: vec![ChannelKind::Sms],
            due_at: at(300),
        }],
        "the board's next step of each desk still climbing"
    );
    let mut tx = store.begin().await.unwrap();
    assert!(tx.desk_acknowledged(id, acking).await.unwrap());
    assert!(!tx.desk_acknowledged(id, still).await.unwrap());
    tx.commit().await.unwrap();
}

async fn a_resolution_ends_the_incidents_waiting_steps(store: Arc<dyn Store>) {
    let (desk_id, address) = desk(&store, "cup-end").await;
    let id = incident(&store, &[(address, "cup-end@asl.example".into())]).await;
    let (other_desk, other_address) = desk(&store, "cup-elsewhere").await;
    let other = incident(
        &store,
        &[(other_address, "cup-elsewhere@asl.example".into())],
    )
    .await;
    start(&store, id, desk_id, at(0)).await;
    start(&store, other, other_desk, at(0)).await;
    let mut tx = store.begin().await.unwrap();
    assert_eq!(tx.end_escalations(id, at(180)).await.unwrap(), 2);
    assert_eq!(tx.end_escalations(id, at(181)).await.unwrap(), 0);
    let due: Vec<i64> = tx
        .due_escalations(at(3600), 64)
        .await
        .unwrap()
        .iter()
        .map(|e| e.incident_id)
        .collect();
    assert_eq!(
        due,
        vec![other, other],
        "another incident's ladder climbs on"
    );
    let latest = tx.latest_routed_update(id).await.unwrap().unwrap();
    assert_eq!((latest.incident_id, latest.seq), (id, 1));
    tx.commit().await.unwrap();
    let rows = store.escalations(id).await.unwrap();
    assert!(
        rows.iter()
            .all(|r| r.state == EscalationState::Resolved && r.changed_at == at(180))
    );
    assert!(store.next_escalations(id).await.unwrap().is_empty());
}

/// A desk says "seen" just as the leader decides its step, in the order `Router::escalate_in`
/// takes things: the due steps, then the incident (locked on PostgreSQL). The acknowledgement,
/// which takes the incident's key lock then the desk's steps, must not deadlock with it: both
/// finish, and the step fires only if the acknowledgement came after it.
async fn an_acknowledgement_while_the_leader_decides_the_step_does_not_deadlock(
    store: Arc<dyn Store>,
) {
    let (desk_id, address) = desk(&store, "cup-now").await;
    let id = incident(&store, &[(address, "cup-now@asl.example".into())]).await;
    start(&store, id, desk_id, at(0)).await;
    let mut tx = store.begin().await.unwrap();
    let due = tx.due_escalations(at(300), 64).await.unwrap();
    assert_eq!(due.len(), 1);
    let acking = {
        let store = store.clone();
        tokio::spawn(async move { store.acknowledge(id, address, at(300)).await })
    };
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let decided = async {
        tx.incident(id).await?;
        let acked = tx.desk_acknowledged(id, desk_id).await?;
        let state = if acked {
            EscalationState::Acknowledged
        } else {
            EscalationState::Fired
        };
        let moved = tx.settle_escalation(due[0].id, state, at(300)).await?;
        tx.commit().await?;
        Ok::<_, StoreError>((state, moved))
    }
    .await;
    let acked = acking.await.unwrap();
    let (state, moved) = decided.expect("the leader's step finishes");
    assert!(
        matches!(acked, Ok(Acknowledged::Recorded(_))),
        "the acknowledgement is recorded: {acked:?}"
    );
    let rows = store.escalations(id).await.unwrap();
    if moved && state == EscalationState::Fired {
        assert_eq!(
            states(&rows, desk_id),
            vec![EscalationState::Fired, EscalationState::Acknowledged]
        );
    } else {
        assert_eq!(
            states(&rows, desk_id),
            vec![EscalationState::Acknowledged, EscalationState::Acknowledged],
            "the acknowledgement came first: the step sends nothing"
        );
    }
}

suite!(
    a_desks_own_policy_is_stored_edited_and_kept_in_step_with_the_file,
    racing_replicas_write_a_desks_ladder_once,
    a_due_step_is_decided_once_when_two_leaders_step_at_once,
    an_acknowledgement_stops_only_its_desks_waiting_steps,
    a_resolution_ends_the_incidents_waiting_steps,
    an_acknowledgement_while_the_leader_decides_the_step_does_not_deadlock,
);
