//! Heartbeats defined through the API against the `Store` trait, over SQLite and PostgreSQL: a
//! start keeps them while it forgets the configuration's removed ones, a name is taken once by
//! replicas racing to define it, the API never changes or deletes a configured heartbeat, and
//! deleting one whose alarm is raised stores the alarm's end with it.

use std::sync::Arc;
use std::time::Duration;

use banditore::domain::{Finding, SignalStatus};
use banditore::heartbeat::alarm;
use banditore::store::*;

use crate::store_heartbeats::{ALLOWANCE, at, farewell, signals, silent, spec};
use crate::support::suite;

const DEFINITION: &str = r#"{"name":"api-job","service":"cup","period":"60s","grace":"30s"}"#;

async fn row(store: &Arc<dyn Store>, name: &str) -> Option<HeartbeatRow> {
    store
        .heartbeats()
        .await
        .unwrap()
        .into_iter()
        .find(|r| r.name == name)
}

async fn a_start_keeps_the_apis_heartbeats_and_the_configuration_takes_over_a_name(
    store: Arc<dyn Store>,
) {
    let configured = [("cfg".to_owned(), ALLOWANCE)];
    store
        .sync_heartbeats(&configured, at(0), &farewell)
        .await
        .unwrap();
    let made = store
        .define_heartbeat("api-job", DEFINITION, "m.rossi", ALLOWANCE, at(1), &[])
        .await
        .unwrap();
    assert_eq!(made, Defined::Done);
    let r = row(&store, "api-job").await.unwrap();
    assert_eq!(
        (r.origin.as_str(), r.state.as_str(), r.due_at),
        ("api", "new", at(91))
    );
    assert_eq!(r.definition.as_deref(), Some(DEFINITION));
    assert_eq!(r.defined_by.as_deref(), Some("m.rossi"));
    // Late, then a start with a configuration that does not name it: kept, still late.
    store
        .declare_silent(&["api-job".to_owned()], at(91), &silent)
        .await
        .unwrap();
    let resolved = store
        .sync_heartbeats(&configured, at(100), &farewell)
        .await
        .unwrap();
    assert_eq!(resolved, 0);
    assert_eq!(row(&store, "api-job").await.unwrap().state, "late");
    assert_eq!(row(&store, "cfg").await.unwrap().origin, "config");
    // A configuration naming it makes it the configuration's; its state goes on.
    let both = [
        ("cfg".to_owned(), ALLOWANCE),
        ("api-job".to_owned(), ALLOWANCE),
    ];
    store
        .sync_heartbeats(&both, at(200), &farewell)
        .await
        .unwrap();
    let r = row(&store, "api-job").await.unwrap();
    assert_eq!(
        (r.origin.as_str(), r.state.as_str(), r.definition),
        ("config", "late", None)
    );
    // ... and the API may no longer change or delete it.
    let changed = store
        .redefine_heartbeat("api-job", DEFINITION, "x", ALLOWANCE, at(201))
        .await
        .unwrap();
    assert_eq!(changed, Defined::Configured);
    let gone = store
        .forget_heartbeat("api-job", &farewell("api-job"), at(201))
        .await
        .unwrap();
    assert_eq!(gone, Forgotten::Configured);
    assert!(row(&store, "api-job").await.is_some());
}

async fn replicas_defining_the_same_name_at_once_make_one(store: Arc<dyn Store>) {
    let mut racers = Vec::new();
    for i in 0..8 {
        let store = store.clone();
        racers.push(tokio::spawn(async move {
            store
                .define_heartbeat(
                    "api-job",
                    DEFINITION,
                    &format!("admin-{i}"),
                    ALLOWANCE,
                    at(0),
                    &[],
                )
                .await
                .unwrap()
        }));
    }
    let mut done = 0;
    for r in racers {
        if r.await.unwrap() == Defined::Done {
            done += 1;
        }
    }
    assert_eq!(done, 1);
    assert_eq!(store.heartbeats().await.unwrap().len(), 1);
    // A configured name is taken too.
    store
        .sync_heartbeats(&[("cfg".to_owned(), ALLOWANCE)], at(0), &farewell)
        .await
        .unwrap();
    let cfg = ["cfg".to_owned()];
    let taken = store
        .define_heartbeat("cfg", DEFINITION, "m.rossi", ALLOWANCE, at(1), &cfg)
        .await
        .unwrap();
    assert_eq!(taken, Defined::Missing);
    assert_eq!(row(&store, "cfg").await.unwrap().origin, "config");
    // A row of the configuration's origin that this configuration does not name (written by a
    // replica whose configuration does): racing definitions take it over once, its clock going
    // on, by the new definition's allowance (a day by the other configuration's).
    store
        .record_ping("orphan", at(5), at(86_405), &farewell("orphan"), true)
        .await
        .unwrap();
    let mut racers = Vec::new();
    for _ in 0..4 {
        let (store, cfg) = (store.clone(), cfg.clone());
        racers.push(tokio::spawn(async move {
            store
                .define_heartbeat("orphan", DEFINITION, "m.rossi", ALLOWANCE, at(6), &cfg)
                .await
                .unwrap()
        }));
    }
    let mut done = 0;
    for r in racers {
        done += usize::from(r.await.unwrap() == Defined::Done);
    }
    assert_eq!(done, 1);
    let r = row(&store, "orphan").await.unwrap();
    assert_eq!(
        (r.origin.as_str(), r.state.as_str(), r.pings, r.due_at),
        ("api", "up", 1, at(95))
    );
}

async fn a_new_definition_moves_a_waiting_clock_and_leaves_a_late_one(store: Arc<dyn Store>) {
    for name in ["waiting", "late"] {
        store
            .define_heartbeat(name, DEFINITION, "m.rossi", ALLOWANCE, at(0), &[])
            .await
            .unwrap();
    }
    store
        .record_ping("waiting", at(10), at(100), &farewell("waiting"), false)
        .await
        .unwrap();
    store
        .declare_silent(&["late".to_owned()], at(90), &silent)
        .await
        .unwrap();
    // Twice the allowance, from the last ping.
    let longer = Duration::from_secs(180);
    for name in ["waiting", "late"] {
        let done = store
            .redefine_heartbeat(name, "{}", "l.bianchi", longer, at(95))
            .await
            .unwrap();
        assert_eq!(done, Defined::Done);
    }
    let w = row(&store, "waiting").await.unwrap();
    assert_eq!((w.state.as_str(), w.due_at), ("up", at(190)));
    assert_eq!(w.defined_by.as_deref(), Some("l.bianchi"));
    let l = row(&store, "late").await.unwrap();
    assert_eq!(l.state, "late");
    // A shorter allowance whose due time is past: due from now, not at once.
    store
        .redefine_heartbeat(
            "waiting",
            "{}",
            "l.bianchi",
            Duration::from_secs(5),
            at(300),
        )
        .await
        .unwrap();
    assert_eq!(row(&store, "waiting").await.unwrap().due_at, at(305));
    let missing = store
        .redefine_heartbeat("nope", "{}", "x", ALLOWANCE, at(300))
        .await
        .unwrap();
    assert_eq!(missing, Defined::Missing);
    // A start after an outage gives a waiting clock its allowance again, as the configuration's.
    store
        .restart_defined_clocks(&[("waiting".to_owned(), ALLOWANCE)], at(1000))
        .await
        .unwrap();
    assert_eq!(row(&store, "waiting").await.unwrap().due_at, at(1090));
}

async fn deleting_a_late_heartbeat_resolves_its_alarm_once(store: Arc<dyn Store>) {
    for name in ["late", "quiet"] {
        store
            .define_heartbeat(name, DEFINITION, "m.rossi", ALLOWANCE, at(0), &[])
            .await
            .unwrap();
    }
    store
        .declare_silent(&["late".to_owned()], at(90), &silent)
        .await
        .unwrap();
    let before = signals(&store).await.len();
    let quiet = store
        .forget_heartbeat("quiet", &farewell("quiet"), at(95))
        .await
        .unwrap();
    assert_eq!(quiet, Forgotten::Done(None));
    let mut racers = Vec::new();
    for _ in 0..4 {
        let store = store.clone();
        racers.push(tokio::spawn(async move {
            store
                .forget_heartbeat("late", &farewell("late"), at(96))
                .await
                .unwrap()
        }));
    }
    let mut outcomes = Vec::new();
    for r in racers {
        outcomes.push(r.await.unwrap());
    }
    let resolved = outcomes
        .iter()
        .filter(|o| matches!(o, Forgotten::Done(Some(_))))
        .count();
    assert_eq!(resolved, 1, "{outcomes:?}");
    assert!(
        outcomes
            .iter()
            .all(|o| matches!(o, Forgotten::Done(Some(_)) | Forgotten::Missing)),
        "{outcomes:?}"
    );
    let stored = signals(&store).await;
    assert_eq!(stored.len(), before + 1);
    let last = stored.last().unwrap();
    assert_eq!(
        (last.fingerprint.as_str(), last.status),
        ("heartbeat:late", SignalStatus::Resolved)
    );
    assert!(store.heartbeats().await.unwrap().is_empty());
    // A ping or a failure report that read the catalog before the deletion (another replica's,
    // up to a second old) writes nothing: no row outliving the deletion, no alarm that nothing
    // would resolve.
    let said = Finding::ReportedFailure {
        cause: "exit 1".into(),
    };
    let firing = alarm(&spec("late"), SignalStatus::Firing, Some(said), at(97));
    let failed = store
        .record_failure("late", at(97), "exit 1", &firing, false)
        .await
        .unwrap();
    let pinged = store
        .record_ping("quiet", at(97), at(187), &farewell("quiet"), false)
        .await
        .unwrap();
    for beat in [failed, pinged] {
        assert_eq!((beat.was.as_str(), beat.signal), (Beat::GONE, None));
    }
    assert!(store.heartbeats().await.unwrap().is_empty());
    assert_eq!(signals(&store).await.len(), before + 1);
}

suite!(
    a_start_keeps_the_apis_heartbeats_and_the_configuration_takes_over_a_name,
    replicas_defining_the_same_name_at_once_make_one,
    a_new_definition_moves_a_waiting_clock_and_leaves_a_late_one,
    deleting_a_late_heartbeat_resolves_its_alarm_once,
);
