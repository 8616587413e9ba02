//! The store's API tokens and console users' changes, written against the `Store` trait so that
//! SQLite and PostgreSQL run the same cases.

use std::sync::Arc;

use banditore::store::*;
use jiff::{SignedDuration, Timestamp};

use crate::support::suite;

fn token(name: &str, secret: &str) -> NewToken {
    NewToken {
        name: name.into(),
        roles: vec!["ingest".into()],
        secret_sha256: banditore::tokens::digest_hex(secret),
        created_by: "test".into(),
    }
}

async fn tokens_are_unique_among_the_live_and_revoked_ones_stay(store: Arc<dyn Store>) {
    let now = Timestamp::now();
    assert!(
        store
            .create_token(&token("grafana", "s1"), now)
            .await
            .unwrap()
    );
    assert!(
        !store
            .create_token(&token("grafana", "s2"), now)
            .await
            .unwrap(),
        "a live token has the name"
    );
    assert!(store.revoke_token("grafana", "m.rossi", now).await.unwrap());
    assert!(!store.revoke_token("grafana", "m.rossi", now).await.unwrap());
    assert!(store.live_tokens().await.unwrap().is_empty());
    assert!(
        store
            .create_token(&token("grafana", "s3"), now)
            .await
            .unwrap(),
        "a revoked token's name may be given again"
    );
    let all = store.tokens().await.unwrap();
    assert_eq!(all.len(), 2, "the revoked row stays: {all:?}");
    let revoked = all.iter().find(|t| t.revoked_at.is_some()).unwrap();
    assert_eq!(revoked.revoked_by.as_deref(), Some("m.rossi"));
    assert_eq!(revoked.secret_sha256, banditore::tokens::digest_hex("s1"));
    let live = store.live_tokens().await.unwrap();
    assert_eq!(live.len(), 1);
    assert_eq!(live[0].roles, vec!["ingest"]);
    let later = now + SignedDuration::from_secs(30);
    store.mark_tokens_used(&[live[0].id], later).await.unwrap();
    let used = store.live_tokens().await.unwrap();
    assert_eq!(
        used[0].last_used_at.map(|t| t.as_millisecond()),
        Some(later.as_millisecond())
    );
}

async fn the_first_tokens_are_made_once_whoever_starts_first(store: Arc<dyn Store>) {
    let now = Timestamp::now();
    let first = |secret: &str| {
        vec![
            token("admin", &format!("{secret}a")),
            token("ingest", &format!("{secret}i")),
        ]
    };
    // Two replicas starting together: exactly one stores its pair, whole.
    let (one, two) = (first("one"), first("two"));
    let (a, b) = tokio::join!(
        store.create_first_tokens(&one, now),
        store.create_first_tokens(&two, now)
    );
    assert!(a.unwrap() ^ b.unwrap(), "one and only one");
    let mut live: Vec<String> = store
        .live_tokens()
        .await
        .unwrap()
        .into_iter()
        .map(|t| t.secret_sha256)
        .collect();
    live.sort();
    let pair = |p: &[NewToken]| {
        let mut d: Vec<String> = p.iter().map(|t| t.secret_sha256.clone()).collect();
        d.sort();
        d
    };
    assert!(
        live == pair(&one) || live == pair(&two),
        "both from the same start"
    );
    assert!(
        !store
            .create_first_tokens(&first("three"), now)
            .await
            .unwrap()
    );
    // With every token revoked, a start is still not a first one: it shows no new secret.
    for name in ["admin", "ingest"] {
        assert!(store.revoke_token(name, "m.rossi", now).await.unwrap());
    }
    assert!(store.live_tokens().await.unwrap().is_empty());
    assert!(
        !store
            .create_first_tokens(&first("four"), now)
            .await
            .unwrap()
    );
}

async fn the_last_enabled_admin_is_kept(store: Arc<dyn Store>) {
    let now = Timestamp::now();
    let roles = |r: &str| Some(vec![r.to_owned()]);
    assert!(
        store
            .create_user("m.rossi", "hash", &["admin".into()], now)
            .await
            .unwrap()
    );
    let demote = UserChange {
        roles: roles("viewer"),
        ..UserChange::default()
    };
    assert_eq!(
        store.change_user("m.rossi", &demote, now).await.unwrap(),
        UserChanged::LastAdmin
    );
    let disable = UserChange {
        disabled: Some(true),
        ..UserChange::default()
    };
    assert_eq!(
        store.change_user("m.rossi", &disable, now).await.unwrap(),
        UserChanged::LastAdmin
    );
    assert_eq!(
        store.user("m.rossi").await.unwrap().unwrap().roles,
        vec!["admin"]
    );
    assert_eq!(
        store.change_user("nobody", &disable, now).await.unwrap(),
        UserChanged::NoSuchUser
    );
    assert!(
        store
            .create_user("l.bianchi", "hash", &["admin".into()], now)
            .await
            .unwrap()
    );
    assert_eq!(
        store.change_user("m.rossi", &demote, now).await.unwrap(),
        UserChanged::Changed
    );
    assert_eq!(
        store.change_user("l.bianchi", &disable, now).await.unwrap(),
        UserChanged::LastAdmin
    );
    let password = UserChange {
        password_hash: Some("other".into()),
        ..UserChange::default()
    };
    store
        .create_session(
            "s",
            store.user("l.bianchi").await.unwrap().unwrap().id,
            "c",
            now,
            now + SignedDuration::from_secs(60),
        )
        .await
        .unwrap();
    assert_eq!(
        store
            .change_user("l.bianchi", &password, now)
            .await
            .unwrap(),
        UserChanged::Changed
    );
    assert!(
        store.session("s", now).await.unwrap().is_none(),
        "sessions end"
    );
    assert_eq!(
        store
            .user("l.bianchi")
            .await
            .unwrap()
            .unwrap()
            .password_hash,
        "other"
    );
    assert_eq!(
        store.change_user("m.rossi", &disable, now).await.unwrap(),
        UserChanged::Changed
    );
    assert!(store.user("m.rossi").await.unwrap().unwrap().disabled);
}

suite!(
    tokens_are_unique_among_the_live_and_revoked_ones_stay,
    the_first_tokens_are_made_once_whoever_starts_first,
    the_last_enabled_admin_is_kept,
);
