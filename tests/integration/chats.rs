//! Chats that bind themselves with invites and choose what they follow, on both back ends.

use std::sync::Arc;

use banditore::domain::subscriber::{ChannelKind, Language, SubscriberRules, SubscriberSpec};
use banditore::store::*;
use jiff::{SignedDuration, Timestamp};

use crate::support::suite;

const TG: ChannelKind = ChannelKind::Telegram;

fn now() -> Timestamp {
    Timestamp::now()
}

fn later(seconds: i64) -> Timestamp {
    now() + SignedDuration::from_secs(seconds)
}

async fn subscriber(store: &Arc<dyn Store>, name: &str) -> i64 {
    let spec: SubscriberSpec = serde_json::from_value(serde_json::json!({
        "name": name, "language": "it", "subscriptions": [{"matchers": ["service=~\"cup.*\""]}]
    }))
    .unwrap();
    let valid = spec
        .validate(&SubscriberRules::new("it".to_owned().try_into().unwrap()))
        .unwrap();
    store.create_subscriber(&valid, now()).await.unwrap()
}

async fn invite(store: &Arc<dyn Store>, subscriber: i64, digest: &str, ttl: i64) {
    assert!(
        store
            .create_invite(subscriber, TG, digest, "admin", now(), later(ttl))
            .await
            .unwrap()
    );
}

pub async fn an_invite_binds_one_chat_once(store: Arc<dyn Store>) {
    let desk = subscriber(&store, "CUP Foligno").await;
    assert!(
        !store
            .create_invite(9_999_999, TG, "x", "admin", now(), later(60))
            .await
            .unwrap(),
        "no invite for a subscriber that does not exist"
    );
    invite(&store, desk, "d1", 3600).await;
    let Redeemed::Bound(binding) = store.redeem_invite(TG, "d1", "1001", now()).await.unwrap()
    else {
        panic!("not bound")
    };
    assert_eq!(binding.subscriber_id, desk);
    assert_eq!(binding.subscriber_name, "CUP Foligno");
    assert_eq!(binding.address.origin, AddressOrigin::Chat);
    assert!(binding.address.is_active());
    // The same chat replaying its /start is answered as bound; another chat is refused.
    assert!(matches!(
        store.redeem_invite(TG, "d1", "1001", now()).await.unwrap(),
        Redeemed::Bound(_)
    ));
    assert!(matches!(
        store.redeem_invite(TG, "d1", "1002", now()).await.unwrap(),
        Redeemed::AlreadyUsed
    ));
    assert!(matches!(
        store
            .redeem_invite(TG, "nope", "1002", now())
            .await
            .unwrap(),
        Redeemed::Unknown
    ));
    invite(&store, desk, "old", 1).await;
    assert!(matches!(
        store
            .redeem_invite(TG, "old", "1002", later(5))
            .await
            .unwrap(),
        Redeemed::Expired
    ));
    // A chat bound to one desk is not taken by another's invite while it is active…
    let other = subscriber(&store, "Referti").await;
    invite(&store, other, "o1", 3600).await;
    assert!(matches!(
        store.redeem_invite(TG, "o1", "1001", now()).await.unwrap(),
        Redeemed::BoundElsewhere { subscriber_name } if subscriber_name == "CUP Foligno"
    ));
    // …but moves once it stopped.
    store
        .set_address_stopped(binding.address.id, true, now())
        .await
        .unwrap();
    invite(&store, other, "o2", 3600).await;
    let Redeemed::Bound(moved) = store.redeem_invite(TG, "o2", "1001", now()).await.unwrap() else {
        panic!("not moved")
    };
    assert_eq!(moved.subscriber_id, other);
    let bound = store.chat(TG, "1001").await.unwrap().unwrap();
    assert_eq!(bound.subscriber_name, "Referti");
    assert!(store.chat(TG, "4242").await.unwrap().is_none());
}

pub async fn a_chat_chooses_language_services_and_pauses(store: Arc<dyn Store>) {
    let desk = subscriber(&store, "CUP Foligno").await;
    invite(&store, desk, "d", 3600).await;
    let Redeemed::Bound(b) = store.redeem_invite(TG, "d", "-2002", now()).await.unwrap() else {
        panic!("not bound")
    };
    let id = b.address.id;
    let en: Language = "en".to_owned().try_into().unwrap();
    store.set_address_language(id, Some(&en)).await.unwrap();
    store
        .set_address_service(id, "cup-backend", Some(ServiceMode::Mute))
        .await
        .unwrap();
    store
        .set_address_service(id, "portale", Some(ServiceMode::Follow))
        .await
        .unwrap();
    let b = store.chat(TG, "-2002").await.unwrap().unwrap();
    assert_eq!(b.language().as_str(), "en");
    assert_eq!(
        b.address.services.get("cup-backend"),
        Some(&ServiceMode::Mute)
    );
    assert_eq!(
        b.address.services.get("portale"),
        Some(&ServiceMode::Follow)
    );
    // The router sees the same through the subscriber list.
    let rows = store.subscribers().await.unwrap();
    let row = rows.iter().find(|s| s.id == desk).unwrap();
    assert_eq!(row.addresses[0].services.len(), 2);
    store
        .set_address_service(id, "portale", None)
        .await
        .unwrap();
    store.set_address_stopped(id, true, now()).await.unwrap();
    assert!(
        !store
            .chat(TG, "-2002")
            .await
            .unwrap()
            .unwrap()
            .address
            .is_active()
    );
    store.set_address_stopped(id, false, now()).await.unwrap();
    let b = store.chat(TG, "-2002").await.unwrap().unwrap();
    assert!(b.address.is_active());
    assert_eq!(b.address.services.len(), 1);
    // A group that became a supergroup keeps its choices under the new id.
    assert_eq!(store.move_chat(TG, "-2002", "-1002002").await.unwrap(), 1);
    let b = store.chat(TG, "-1002002").await.unwrap().unwrap();
    assert_eq!(b.address.id, id);
    assert!(store.chat(TG, "-2002").await.unwrap().is_none());
}

pub async fn the_configuration_keeps_chats_that_bound_themselves(store: Arc<dyn Store>) {
    let spec = |emails: &[&str]| {
        let spec: SubscriberSpec = serde_json::from_value(serde_json::json!({
            "name": "CUP Foligno", "addresses": {"email": emails}
        }))
        .unwrap();
        spec.validate(&SubscriberRules::new("it".to_owned().try_into().unwrap()))
            .unwrap()
    };
    store
        .sync_config_subscribers(&[spec(&["a@asl.example"])], now())
        .await
        .unwrap();
    let desk = store.subscribers().await.unwrap()[0].id;
    invite(&store, desk, "d", 3600).await;
    assert!(matches!(
        store.redeem_invite(TG, "d", "1001", now()).await.unwrap(),
        Redeemed::Bound(_)
    ));
    // A restart with a changed file replaces the file's addresses and keeps the chat.
    store
        .sync_config_subscribers(&[spec(&["b@asl.example"])], now())
        .await
        .unwrap();
    let row = &store.subscribers().await.unwrap()[0];
    let mut addresses: Vec<&str> = row.addresses.iter().map(|a| a.address.as_str()).collect();
    addresses.sort();
    assert_eq!(addresses, vec!["1001", "b@asl.example"]);
}

suite!(
    an_invite_binds_one_chat_once,
    a_chat_chooses_language_services_and_pauses,
    the_configuration_keeps_chats_that_bound_themselves,
);
