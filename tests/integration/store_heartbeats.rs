//! Heartbeats' clocks and states against the `Store` trait, so that SQLite and PostgreSQL run the
//! same cases: replicas racing to declare the same silence store one alarm, pings racing to bring
//! a late heartbeat back store one end of it, and failure reports racing raise it once.

use std::sync::Arc;
use std::time::Duration;

use banditore::domain::{Finding, Signal, SignalStatus};
use banditore::heartbeat::alarm;
use banditore::settings::HeartbeatSpec;
use banditore::store::*;
use jiff::{SignedDuration, Timestamp};

use crate::support::suite;

pub(crate) fn spec(name: &str) -> HeartbeatSpec {
    serde_json::from_value(serde_json::json!({
        "name": name, "service": "cup", "period": "60s", "grace": "30s"
    }))
    .unwrap()
}

pub(crate) fn at(seconds: i64) -> Timestamp {
    Timestamp::from_second(1_800_000_000 + seconds).unwrap()
}

pub(crate) const ALLOWANCE: Duration = Duration::from_secs(90);

pub(crate) fn farewell(name: &str) -> Signal {
    alarm(&spec(name), SignalStatus::Resolved, None, at(0))
}

pub(crate) fn silent(name: &str, _last: Option<Timestamp>) -> Signal {
    let found = Finding::Silent {
        seconds: 90,
        never: true,
    };
    alarm(&spec(name), SignalStatus::Firing, Some(found), at(0))
}

/// The signals stored and not yet applied, oldest first.
pub(crate) async fn signals(store: &Arc<dyn Store>) -> Vec<Signal> {
    let mut tx = store.begin().await.unwrap();
    let stored = tx.unprocessed_signals(1000).await.unwrap();
    tx.commit().await.unwrap();
    stored.into_iter().map(|s| s.signal).collect()
}

async fn states(store: &Arc<dyn Store>) -> Vec<(String, String)> {
    store
        .heartbeats()
        .await
        .unwrap()
        .into_iter()
        .map(|r| (r.name, r.state))
        .collect()
}

async fn replicas_declaring_at_once_store_one_alarm_each(store: Arc<dyn Store>) {
    let names: Vec<String> = (0..5).map(|i| format!("job-{i}")).collect();
    let configured: Vec<(String, Duration)> =
        names.iter().map(|n| (n.clone(), ALLOWANCE)).collect();
    store
        .sync_heartbeats(&configured, at(0), &farewell)
        .await
        .unwrap();
    // Not yet due: nothing is declared, nothing written.
    assert!(
        store
            .declare_silent(&names, at(89), &silent)
            .await
            .unwrap()
            .is_empty()
    );
    // Eight replicas look at the same moment.
    let mut racers = Vec::new();
    for _ in 0..8 {
        let (store, names) = (store.clone(), names.clone());
        racers.push(tokio::spawn(async move {
            store.declare_silent(&names, at(90), &silent).await.unwrap()
        }));
    }
    let mut declared = Vec::new();
    for racer in racers {
        declared.extend(racer.await.unwrap().into_iter().map(|(name, _)| name));
    }
    declared.sort();
    assert_eq!(
        declared, names,
        "each heartbeat declared by exactly one replica"
    );
    let stored = signals(&store).await;
    assert_eq!(stored.len(), 5);
    assert!(stored.iter().all(|s| s.status == SignalStatus::Firing));
    assert!(states(&store).await.iter().all(|(_, s)| s == "late"));
}

async fn racing_pings_resolve_a_late_heartbeat_once(store: Arc<dyn Store>) {
    let names = vec!["backup".to_owned()];
    store
        .sync_heartbeats(&[("backup".into(), ALLOWANCE)], at(0), &farewell)
        .await
        .unwrap();
    assert_eq!(
        store
            .declare_silent(&names, at(90), &silent)
            .await
            .unwrap()
            .len(),
        1
    );
    let resolved = farewell("backup");
    let mut pings = Vec::new();
    for i in 0..8 {
        let (store, resolved) = (store.clone(), resolved.clone());
        pings.push(tokio::spawn(async move {
            let now = at(100 + i);
            store
                .record_ping(
                    "backup",
                    now,
                    now + SignedDuration::from_secs(90),
                    &resolved,
                    true,
                )
                .await
                .unwrap()
        }));
    }
    let mut beats = Vec::new();
    for p in pings {
        beats.push(p.await.unwrap());
    }
    let resolving: Vec<&Beat> = beats.iter().filter(|b| b.signal.is_some()).collect();
    assert_eq!(resolving.len(), 1, "{beats:?}");
    assert_eq!(resolving[0].was, "late");
    assert!(
        beats
            .iter()
            .filter(|b| b.signal.is_none())
            .all(|b| b.was == "up")
    );
    let stored = signals(&store).await;
    assert_eq!(
        stored.iter().map(|s| s.status).collect::<Vec<_>>(),
        vec![SignalStatus::Firing, SignalStatus::Resolved]
    );
    let row = &store.heartbeats().await.unwrap()[0];
    assert_eq!((row.state.as_str(), row.pings), ("up", 8));
    // Due again a period and a grace after the latest ping, whichever replica wrote it last.
    assert!(row.due_at >= at(190) && row.due_at <= at(197));
}

async fn racing_failure_reports_raise_the_alarm_once(store: Arc<dyn Store>) {
    store
        .sync_heartbeats(&[("import".into(), ALLOWANCE)], at(0), &farewell)
        .await
        .unwrap();
    let said = Finding::ReportedFailure {
        cause: "exit 1".into(),
    };
    let firing = alarm(&spec("import"), SignalStatus::Firing, Some(said), at(0));
    let mut reports = Vec::new();
    for i in 0..6 {
        let (store, firing) = (store.clone(), firing.clone());
        reports.push(tokio::spawn(async move {
            store
                .record_failure("import", at(10 + i), &format!("exit {i}"), &firing, true)
                .await
                .unwrap()
        }));
    }
    let mut raised = 0;
    for r in reports {
        raised += usize::from(r.await.unwrap().signal.is_some());
    }
    assert_eq!(raised, 1);
    assert_eq!(signals(&store).await.len(), 1);
    // A failed heartbeat is never also declared silent.
    assert!(
        store
            .declare_silent(&["import".to_owned()], at(10_000), &silent)
            .await
            .unwrap()
            .is_empty()
    );
    let row = &store.heartbeats().await.unwrap()[0];
    assert_eq!(row.state, "failed");
    assert!(row.detail.starts_with("exit "));
}

async fn the_configuration_decides_which_heartbeats_are_kept(store: Arc<dyn Store>) {
    let both = [("a".to_owned(), ALLOWANCE), ("b".to_owned(), ALLOWANCE)];
    store
        .sync_heartbeats(&both, at(0), &farewell)
        .await
        .unwrap();
    store
        .declare_silent(&["a".to_owned()], at(90), &silent)
        .await
        .unwrap();
    // Pinged long ago, then a restart with a longer allowance: due from the restart.
    store
        .record_ping("b", at(10), at(100), &farewell("b"), true)
        .await
        .unwrap();
    let resolved = store
        .sync_heartbeats(&[("b".to_owned(), ALLOWANCE * 2)], at(500), &farewell)
        .await
        .unwrap();
    assert_eq!(resolved, 1);
    assert_eq!(states(&store).await, vec![("b".into(), "up".into())]);
    let row = &store.heartbeats().await.unwrap()[0];
    assert_eq!(row.due_at, at(680));
    assert_eq!(row.last_ping_at, Some(at(10)));
    let stored = signals(&store).await;
    let last = stored.last().unwrap();
    assert_eq!(
        (last.fingerprint.as_str(), last.status),
        ("heartbeat:a", SignalStatus::Resolved),
        "a heartbeat removed while late has its alarm resolved"
    );
}

/// A replica starting while another one's ping is being written: the start reads the row before
/// the ping commits and writes the due time after it. It must count from the ping it did not
/// see, not from the one before (which would declare a monitor that just pinged late, one
/// grace after its ping, on every start). PostgreSQL only: SQLite has one writer.
#[tokio::test]
async fn a_start_counts_from_a_ping_another_replica_commits_meanwhile() {
    use sqlx::{Connection, PgConnection};
    let Some(db) = crate::support::fresh_database().await else {
        return;
    };
    let store = crate::engine::store_at(db.url.clone()).await;
    let configured = [("job".to_owned(), ALLOWANCE)];
    store
        .sync_heartbeats(&configured, at(0), &farewell)
        .await
        .unwrap();
    store
        .record_ping("job", at(10), at(100), &farewell("job"), true)
        .await
        .unwrap();
    // Another replica's ping at 60 s, written and not yet committed, holds the row.
    let mut other = PgConnection::connect(&db.url).await.unwrap();
    sqlx::raw_sql("BEGIN").execute(&mut other).await.unwrap();
    sqlx::query(
        "UPDATE heartbeats SET last_ping_at = $1, due_at = $2, pings = pings + 1 WHERE name = 'job'",
    )
    .bind(at(60).as_millisecond())
    .bind(at(150).as_millisecond())
    .execute(&mut other)
    .await
    .unwrap();
    let starting = tokio::spawn({
        let store = store.clone();
        async move { store.sync_heartbeats(&configured, at(61), &farewell).await }
    });
    tokio::time::sleep(Duration::from_millis(500)).await;
    sqlx::raw_sql("COMMIT").execute(&mut other).await.unwrap();
    starting.await.unwrap().unwrap();
    let row = &store.heartbeats().await.unwrap()[0];
    assert_eq!(row.last_ping_at, Some(at(60)));
    assert_eq!(
        row.due_at,
        at(150),
        "due a period and a grace after the last ping"
    );
    let declared = store
        .declare_silent(&["job".to_owned()], at(101), &silent)
        .await
        .unwrap();
    assert!(
        declared.is_empty(),
        "a monitor that pinged at 60 s is not late at 101 s"
    );
}

suite!(
    replicas_declaring_at_once_store_one_alarm_each,
    racing_pings_resolve_a_late_heartbeat_once,
    racing_failure_reports_raise_the_alarm_once,
    the_configuration_decides_which_heartbeats_are_kept,
);
