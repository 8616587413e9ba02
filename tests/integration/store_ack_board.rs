//! Who knows and the ledger against the `Store` trait, so that SQLite and PostgreSQL run the same
//! cases: the board reads every desk's messages about an incident (no citizen, no public
//! statement) in one query, and the ledger pages through every message of the incident with
//! its provider's report and its desk's acknowledgement.

use std::sync::Arc;

use banditore::domain::subscriber::ChannelKind;
use banditore::store::*;

use crate::store_acks::{desk, opening, send_through};
use crate::store_citizens::citizens;
use crate::support::suite;

use crate::store_acks::at;

async fn the_board_and_the_ledger_tell_each_message_and_who_acknowledged(store: Arc<dyn Store>) {
    let (alfa, alfa_at) = desk(
        &store,
        "Alfa",
        serde_json::json!({"email": ["alfa@asl.example"], "sms": ["+393331234567"]}),
    )
    .await;
    let (beta, beta_at) = desk(
        &store,
        "Beta",
        serde_json::json!({"email": ["beta@asl.example"]}),
    )
    .await;
    let citizen = citizens(&store, 1).await[0];
    let id = opening(
        &store,
        &[
            (
                ChannelKind::Email,
                "internal",
                vec![
                    (alfa_at[0], "alfa@asl.example".into()),
                    (beta_at[0], "beta@asl.example".into()),
                ],
            ),
            (
                ChannelKind::Sms,
                "internal",
                vec![(alfa_at[1], "+393331234567".into())],
            ),
            (
                ChannelKind::Email,
                "public",
                vec![(citizen, "cittadino0@example.org".into())],
            ),
        ],
    )
    .await;
    let other = opening(
        &store,
        &[(
            ChannelKind::Email,
            "internal",
            vec![(beta_at[0], "beta@asl.example".into())],
        )],
    )
    .await;
    send_through(&store, ChannelKind::Email, Some("smtp"), at(2)).await;
    send_through(&store, ChannelKind::Sms, Some("twilio"), at(3)).await;
    let sms_delivery = store.ledger(id, 0, 1000).await.unwrap()[2].delivery_id;
    assert!(
        store
            .record_report(&DeliveryReport {
                provider: "twilio".into(),
                provider_id: format!("twilio-{sms_delivery}"),
                status: "delivered".into(),
                error: None,
                at: at(4),
            })
            .await
            .unwrap()
    );
    assert!(matches!(
        store.acknowledge(id, beta_at[0], at(30)).await.unwrap(),
        Acknowledged::Recorded(_)
    ));

    // The board: desks only, ordered by desk, then by delivery.
    let board = store.desk_messages(id).await.unwrap();
    let seen: Vec<(i64, &str, ChannelKind, &str)> = board
        .iter()
        .map(|m| {
            (
                m.subscriber_id,
                m.subscriber_name.as_str(),
                m.channel,
                m.recipient.as_str(),
            )
        })
        .collect();
    assert_eq!(
        seen,
        [
            (alfa, "Alfa", ChannelKind::Email, "alfa@asl.example"),
            (alfa, "Alfa", ChannelKind::Sms, "+393331234567"),
            (beta, "Beta", ChannelKind::Email, "beta@asl.example"),
        ]
    );
    let sms = &board[1];
    assert_eq!(sms.state, "sent");
    assert_eq!(sms.sent_at, Some(at(3)));
    assert_eq!(sms.report_status.as_deref(), Some("delivered"));
    assert_eq!(sms.report_at, Some(at(4)));
    assert_eq!(sms.update_seq, 1);
    assert!(store.desk_messages(i64::MAX).await.unwrap().is_empty());

    // The ledger: every message, the citizen's too, each with its desk's acknowledgement.
    let ledger = store.ledger(id, 0, 1000).await.unwrap();
    assert_eq!(ledger.len(), 4);
    assert!(
        ledger
            .windows(2)
            .all(|w| w[0].delivery_id < w[1].delivery_id)
    );
    let beta_row = ledger
        .iter()
        .find(|r| r.recipient == "beta@asl.example")
        .unwrap();
    assert_eq!(beta_row.acked_at, Some(at(30)));
    assert_eq!(beta_row.audience, "internal");
    assert_eq!(beta_row.provider.as_deref(), Some("smtp"));
    assert_eq!(
        beta_row.provider_id,
        Some(format!("smtp-{}", beta_row.delivery_id))
    );
    assert_eq!(beta_row.sent_at, Some(at(2)));
    assert_eq!(beta_row.attempts, 1);
    assert!(!beta_row.citizen);
    assert!(
        ledger
            .iter()
            .filter(|r| r.recipient != "beta@asl.example")
            .all(|r| r.acked_at.is_none())
    );
    let citizen_row = ledger.iter().find(|r| r.citizen).unwrap();
    assert_eq!(citizen_row.audience, "public");
    assert_eq!(citizen_row.recipient, "cittadino0@example.org");
    assert_eq!(ledger[2].report_status.as_deref(), Some("delivered"));
    assert_eq!(ledger[2].created_at, at(0));

    // Pages by delivery id: the same rows, none twice.
    let first = store.ledger(id, 0, 3).await.unwrap();
    let rest = store
        .ledger(id, first.last().unwrap().delivery_id, 3)
        .await
        .unwrap();
    assert_eq!((first.len(), rest.len()), (3, 1));
    assert_eq!([first, rest].concat(), ledger);
    assert!(
        store
            .ledger(id, ledger[3].delivery_id, 3)
            .await
            .unwrap()
            .is_empty()
    );
    // Another incident's ledger holds its own message only, unacknowledged there.
    let theirs = store.ledger(other, 0, 1000).await.unwrap();
    assert_eq!(theirs.len(), 1);
    assert_eq!(theirs[0].acked_at, None);
}

suite!(the_board_and_the_ledger_tell_each_message_and_who_acknowledged);
