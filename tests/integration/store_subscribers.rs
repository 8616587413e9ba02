//! The subscribers' list in pages, its search and count, edits in place and a subscriber's
//! deliveries, against the `Store` trait so that SQLite and PostgreSQL run the same cases.

use std::collections::BTreeSet;
use std::sync::Arc;

use banditore::domain::subscriber::{ChannelKind, SubscriberRules, SubscriberSpec};
use banditore::store::*;
use jiff::Timestamp;
use proptest::strategy::{Strategy, ValueTree};
use proptest::test_runner::TestRunner;

use crate::store::{seed, subscriber};
use crate::support::suite;

async fn desk(store: &Arc<dyn Store>, spec: serde_json::Value) -> i64 {
    let spec: SubscriberSpec = serde_json::from_value(spec).unwrap();
    let valid = spec
        .validate(&SubscriberRules::new("it".to_owned().try_into().unwrap()))
        .unwrap();
    store
        .create_subscriber(&valid, Timestamp::now())
        .await
        .unwrap()
}

fn filter(
    q: Option<&str>,
    after: Option<i64>,
    before: Option<i64>,
    limit: u32,
) -> SubscriberFilter {
    SubscriberFilter {
        q: q.map(str::to_owned),
        kind: None,
        hide_webhooks: false,
        after,
        before,
        limit,
    }
}

/// Every page read forwards from the start, following `more`.
async fn read_forwards(store: &Arc<dyn Store>, q: Option<&str>, limit: u32) -> Vec<i64> {
    let mut seen = Vec::new();
    let mut after = None;
    loop {
        let page = store
            .subscriber_page(&filter(q, after, None, limit))
            .await
            .unwrap();
        assert!(page.rows.len() <= limit as usize);
        seen.extend(page.rows.iter().map(|s| s.id));
        if !page.more {
            return seen;
        }
        after = page.rows.last().map(|s| s.id);
    }
}

async fn names(store: &Arc<dyn Store>, q: &str) -> BTreeSet<String> {
    let page = store
        .subscriber_page(&filter(Some(q), None, None, MAX_PAGE))
        .await
        .unwrap();
    let count = store
        .count_subscribers(&filter(Some(q), None, None, 0))
        .await
        .unwrap();
    assert_eq!(count as usize, page.rows.len(), "count of {q:?}");
    page.rows.into_iter().map(|s| s.name).collect()
}

fn set(names: &[&str]) -> BTreeSet<String> {
    names.iter().map(|n| (*n).to_owned()).collect()
}

async fn pages_cover_every_subscriber_once_either_way(store: Arc<dyn Store>) {
    let mut ids = Vec::new();
    for n in 0..23 {
        ids.push(
            subscriber(
                &store,
                &format!("desk {n:02}"),
                &[&format!("d{n}@asl.example")],
            )
            .await
            .0,
        );
    }
    for limit in [1, 5, 7, 23, 100] {
        assert_eq!(
            read_forwards(&store, None, limit).await,
            ids,
            "limit {limit}"
        );
    }
    // Backwards from the end, each page before the first row of the one read.
    let mut seen = Vec::new();
    let mut before = Some(i64::MAX);
    loop {
        let page = store
            .subscriber_page(&filter(None, None, before, 5))
            .await
            .unwrap();
        let mut rows: Vec<i64> = page.rows.iter().map(|s| s.id).collect();
        assert!(
            rows.windows(2).all(|w| w[0] < w[1]),
            "in id order: {rows:?}"
        );
        rows.extend(seen);
        seen = rows;
        if !page.more {
            break;
        }
        before = page.rows.first().map(|s| s.id);
    }
    assert_eq!(seen, ids);
    assert_eq!(
        store
            .count_subscribers(&filter(None, None, None, 0))
            .await
            .unwrap(),
        23
    );
    // A search pages the same way: "desk 1" finds desks 10 to 19.
    let found = read_forwards(&store, Some("DESK 1"), 3).await;
    assert_eq!(found, ids[10..20].to_vec());
    // A page loads each subscriber whole.
    let page = store
        .subscriber_page(&filter(None, Some(ids[3]), None, 2))
        .await
        .unwrap();
    assert_eq!(page.rows[0].addresses[0].address, "d4@asl.example");
    assert_eq!(page.rows[0].subscriptions.len(), 1);
    // Desks and citizens are told apart.
    let desks = SubscriberFilter {
        kind: Some(SubscriberKind::Desk),
        ..filter(None, None, None, 0)
    };
    let citizens = SubscriberFilter {
        kind: Some(SubscriberKind::Citizen),
        ..desks.clone()
    };
    assert_eq!(store.count_subscribers(&desks).await.unwrap(), 23);
    assert_eq!(store.count_subscribers(&citizens).await.unwrap(), 0);
}

async fn search_takes_wildcards_quotes_and_unicode_as_text(store: Arc<dyn Store>) {
    for (name, email, matcher) in [
        ("Sicuri al 100%", "cento@asl.example", "service=\"cup\""),
        (
            "Cento per cento",
            "per_cento@asl.example",
            "service=~\"cup.*\"",
        ),
        ("Ufficio a_b", "ab@asl.example", "area=\"nord\""),
        ("Ufficio axb", "axb@asl.example", "area=\"sud\""),
        ("D'Annunzio", "dannunzio@asl.example", "service!=\"x\\\\y\""),
        ("Unità Città", "unita@asl.example", "area=\"perugia\""),
        ("ÜBER desk", "uber@asl.example", "area=\"terni\""),
    ] {
        desk(
            &store,
            serde_json::json!({
                "name": name, "audience": "cup-desk",
                "addresses": {"email": email},
                "subscriptions": [{"matchers": [matcher]}],
            }),
        )
        .await;
    }
    assert_eq!(names(&store, "%").await, set(&["Sicuri al 100%"]));
    assert_eq!(
        names(&store, "_").await,
        set(&["Ufficio a_b", "Cento per cento"]),
        "the name of one, the address of the other"
    );
    assert_eq!(names(&store, "d'a").await, set(&["D'Annunzio"]));
    assert_eq!(names(&store, "CITTà").await, set(&["Unità Città"]));
    assert_eq!(
        names(&store, "CITTÀ").await,
        set(&[]),
        "À is not à to SQLite"
    );
    // ASCII letters fold; others are found as typed, on both back ends alike.
    assert_eq!(names(&store, "über").await, set(&[]));
    assert_eq!(names(&store, "ÜBER").await, set(&["ÜBER desk"]));
    assert_eq!(names(&store, "Über").await, set(&["ÜBER desk"]));
    // Matchers are found as they are written, quotes and backslashes included.
    assert_eq!(
        names(&store, "service=\"cup\"").await,
        set(&["Sicuri al 100%"])
    );
    assert_eq!(names(&store, "\\").await, set(&["D'Annunzio"]));
    assert_eq!(names(&store, "\"sud\"").await, set(&["Ufficio axb"]));
    assert_eq!(names(&store, "CUP-DESK").await.len(), 7, "the audience");
    assert_eq!(names(&store, "nobody").await, set(&[]));
    // A webhook's URL is found by whoever may read it, and by no one else.
    desk(
        &store,
        serde_json::json!({
            "name": "Canale Slack", "audience": "cup-desk",
            "addresses": {"webhook": "slack+https://hooks.slack.com/services/T0/B0/SEGRETO"},
            "subscriptions": [{"matchers": []}],
        }),
    )
    .await;
    assert_eq!(names(&store, "/b0/seg").await, set(&["Canale Slack"]));
    let hidden = SubscriberFilter {
        hide_webhooks: true,
        ..filter(Some("/b0/seg"), None, None, MAX_PAGE)
    };
    let page = store.subscriber_page(&hidden).await.unwrap();
    assert!(page.rows.is_empty(), "{:?}", page.rows);
    assert_eq!(store.count_subscribers(&hidden).await.unwrap(), 0);
    let by_name = SubscriberFilter {
        q: Some("canale".into()),
        ..hidden
    };
    assert_eq!(store.count_subscribers(&by_name).await.unwrap(), 1);
}

/// Whether `q` is in the subscriber as the search reads it: ASCII letters folded.
fn contains(s: &SubscriberRow, q: &str) -> bool {
    let q = q.to_ascii_lowercase();
    let has = |text: &str| text.to_ascii_lowercase().contains(&q);
    has(&s.name)
        || has(&s.audience)
        || s.addresses.iter().any(|a| has(&a.address))
        || s.subscriptions
            .iter()
            .any(|x| x.matchers.iter().any(|m| has(&m.to_string())))
}

async fn any_search_text_finds_exactly_the_subscribers_containing_it(store: Arc<dyn Store>) {
    for (name, email) in [
        ("Pronto soccorso 50%", "ps_50@asl.example"),
        ("CUP \\ Gubbio", "cup.gubbio@asl.example"),
        ("Ufficio \"stampa\"", "stampa@asl.example"),
        ("Città di Castello", "castello@asl.example"),
    ] {
        desk(
            &store,
            serde_json::json!({"name": name, "addresses": {"email": email},
                "subscriptions": [{"matchers": ["service=~\"cup.*\""]}]}),
        )
        .await;
    }
    let all = store
        .subscriber_page(&filter(None, None, None, MAX_PAGE))
        .await
        .unwrap()
        .rows;
    let mut runner = TestRunner::deterministic();
    let texts = proptest::prop_oneof![
        proptest::prelude::any::<String>(),
        "[%_\\\\\"'a-zA-Zà ]{1,6}",
        proptest::sample::select(vec!["50%", "s_5", "\\", "\"stampa", "CITTÀ", "=~\"CUP"])
            .prop_map(str::to_owned),
    ];
    for _ in 0..96 {
        let q = texts.new_tree(&mut runner).unwrap().current();
        if q.trim().is_empty() || q.contains('\0') {
            // The service reads an empty search as none; PostgreSQL text holds no NUL.
            continue;
        }
        let found = store
            .subscriber_page(&filter(Some(&q), None, None, MAX_PAGE))
            .await
            .unwrap_or_else(|e| panic!("{q:?}: {e}"));
        let expected: Vec<i64> = all
            .iter()
            .filter(|s| contains(s, &q))
            .map(|s| s.id)
            .collect();
        let got: Vec<i64> = found.rows.iter().map(|s| s.id).collect();
        assert_eq!(got, expected, "{q:?}");
        let count = store
            .count_subscribers(&filter(Some(&q), None, None, 0))
            .await
            .unwrap();
        assert_eq!(count as usize, expected.len(), "{q:?}");
    }
}

fn edit(addresses: &[&str]) -> SubscriberEdit {
    SubscriberEdit {
        name: Some("CUP Foligno (nuovo)".into()),
        addresses: [(
            ChannelKind::Email,
            addresses.iter().map(|a| (*a).to_owned()).collect(),
        )]
        .into(),
        ..SubscriberEdit::default()
    }
}

async fn an_edit_keeps_what_stays_and_stops_what_goes(store: Arc<dyn Store>) {
    let (id, address_ids) = subscriber(
        &store,
        "CUP Foligno",
        &["kept@asl.example", "gone@asl.example"],
    )
    .await;
    let (kept, removed) = (address_ids[0], address_ids[1]);
    let (incident, _) = seed(
        &store,
        2,
        &[(kept, "kept@asl.example"), (removed, "gone@asl.example")],
    )
    .await;
    assert!(
        store
            .unsubscribe_address(kept, Timestamp::now())
            .await
            .unwrap()
    );
    let before = store.subscriber_deliveries(id, 50).await.unwrap();
    assert_eq!(before.len(), 4);
    assert_eq!(before[0].incident_id, incident);
    assert!(
        before
            .windows(2)
            .all(|w| w[0].delivery.id > w[1].delivery.id),
        "newest first"
    );

    let outcome = store
        .edit_subscriber(
            id,
            &edit(&["kept@asl.example", "new@asl.example"]),
            Timestamp::now(),
        )
        .await
        .unwrap();
    let EditOutcome::Edited(report) = outcome else {
        panic!("{outcome:?}")
    };
    assert_eq!(report.added, vec![ChannelKind::Email]);
    assert_eq!(report.removed, vec![ChannelKind::Email]);
    assert_eq!(
        report.cancelled_deliveries, 2,
        "the removed address's pending two"
    );

    let row = store.subscriber(id).await.unwrap().unwrap();
    assert_eq!(row.name, "CUP Foligno (nuovo)");
    assert_eq!(row.subscriptions.len(), 1, "untouched");
    let kept_row = row
        .addresses
        .iter()
        .find(|a| a.id == kept)
        .expect("same row");
    assert!(kept_row.unsubscribed_at.is_some(), "the opt-out stays");
    let new = row
        .addresses
        .iter()
        .find(|a| a.address == "new@asl.example")
        .expect("added");
    assert!(new.is_active() && new.id != removed);
    assert!(
        !row.addresses
            .iter()
            .any(|a| a.address == "gone@asl.example")
    );
    // The subscriber's history is that of the addresses they keep; the incident's is whole.
    let after = store.subscriber_deliveries(id, 50).await.unwrap();
    assert_eq!(after.len(), 2);
    assert!(
        after
            .iter()
            .all(|d| d.delivery.recipient == "kept@asl.example")
    );
    let history = store.incident_deliveries(incident).await.unwrap();
    assert_eq!(history.len(), 4);
    let gone: Vec<_> = history
        .iter()
        .filter(|d| d.recipient == "gone@asl.example")
        .collect();
    assert_eq!(gone.len(), 2);
    assert!(gone.iter().all(|d| d.state == "cancelled"), "{gone:?}");
    assert_eq!(store.subscriber_deliveries(id, 1).await.unwrap().len(), 1);

    // Subscriptions replaced; language and audience left alone.
    let sub: banditore::domain::subscriber::Subscription = serde_json::from_value(
        serde_json::json!({"matchers": ["area=\"nord\""], "min_severity": "major"}),
    )
    .unwrap();
    let only_subscriptions = SubscriberEdit {
        subscriptions: Some(vec![sub.clone()]),
        ..SubscriberEdit::default()
    };
    store
        .edit_subscriber(id, &only_subscriptions, Timestamp::now())
        .await
        .unwrap();
    let row = store.subscriber(id).await.unwrap().unwrap();
    assert_eq!(row.subscriptions, vec![sub]);
    assert_eq!(row.addresses.len(), 2);
    assert_eq!(row.audience, "internal");

    assert_eq!(
        store
            .edit_subscriber(id + 1000, &edit(&[]), Timestamp::now())
            .await
            .unwrap(),
        EditOutcome::NotFound
    );
    let spec: SubscriberSpec = serde_json::from_value(serde_json::json!({
        "name": "Dal file", "addresses": {"email": "file@asl.example"}
    }))
    .unwrap();
    let valid = spec
        .validate(&SubscriberRules::new("it".to_owned().try_into().unwrap()))
        .unwrap();
    store
        .sync_config_subscribers(&[valid], Timestamp::now())
        .await
        .unwrap();
    let config = store
        .subscriber_page(&filter(Some("Dal file"), None, None, 5))
        .await
        .unwrap()
        .rows[0]
        .id;
    assert_eq!(
        store
            .edit_subscriber(config, &edit(&[]), Timestamp::now())
            .await
            .unwrap(),
        EditOutcome::ManagedByConfig
    );
    assert_eq!(
        store
            .subscriber(config)
            .await
            .unwrap()
            .unwrap()
            .addresses
            .len(),
        1,
        "untouched"
    );
}

/// What the idle router reads ahead: every subscriber but the citizens, and a version that grows
/// with every change (a citizen's sign-up included), never older than the rows it comes with.
async fn desks_are_read_with_their_version(store: Arc<dyn Store>) {
    let v0 = store.subscribers_version().await.unwrap();
    let a = desk(
        &store,
        serde_json::json!({"name": "CUP Foligno", "addresses": {"email": "cup@asl.example"}, "subscriptions": [{}]}),
    )
    .await;
    let v1 = store.subscribers_version().await.unwrap();
    assert!(v1 > v0, "{v0} → {v1}");
    crate::store_citizens::citizens(&store, 2).await;
    let v2 = store.subscribers_version().await.unwrap();
    assert!(v2 > v1, "a citizen's sign-up moves it too: {v1} → {v2}");
    let b = desk(
        &store,
        serde_json::json!({"name": "Farmacia", "addresses": {"email": ["f1@asl.example", "f2@asl.example"]}, "subscriptions": [{}]}),
    )
    .await;
    let (version, desks) = store.desks().await.unwrap();
    assert_eq!(version, store.subscribers_version().await.unwrap());
    assert_eq!(
        desks.iter().map(|d| d.id).collect::<Vec<_>>(),
        vec![a, b],
        "citizens are left out"
    );
    assert_eq!(desks[1].addresses.len(), 2);
    store.delete_subscriber(a).await.unwrap();
    let (later, desks) = store.desks().await.unwrap();
    assert!(later > version);
    assert_eq!(desks.iter().map(|d| d.id).collect::<Vec<_>>(), vec![b]);
}

suite!(
    desks_are_read_with_their_version,
    pages_cover_every_subscriber_once_either_way,
    search_takes_wildcards_quotes_and_unicode_as_text,
    any_search_text_finds_exactly_the_subscribers_containing_it,
    an_edit_keeps_what_stays_and_stops_what_goes,
);
