//! The incident engine against a real SQLite store, with time given explicitly: grouping,
//! deduplication, the grouping wait, the update interval, the flap hold-down, and the expiry of
//! Prometheus's alerts that are not sent again by their end.

use std::sync::Arc;
use std::time::Duration;

use banditore::domain::incident::Timing;
use banditore::domain::signal::NormalizeRules;
use banditore::domain::{RawSignal, SignalStatus, Source, UpdateKind};
use banditore::incident::Engine;
use banditore::settings::{SqliteSynchronous, StoreSettings};
use banditore::store::{Store, UpdateRow};
use jiff::Timestamp;

pub async fn sqlite_store(dir: &tempfile::TempDir) -> Arc<dyn Store> {
    store_at(format!(
        "sqlite://{}",
        dir.path().join("engine.db").display()
    ))
    .await
}

/// A migrated store at `url`.
pub async fn store_at(url: String) -> Arc<dyn Store> {
    let settings = StoreSettings {
        url,
        sqlite_synchronous: SqliteSynchronous::Normal,
        max_connections: 4,
        replicas: 1,
        retention: banditore::settings::Dur(Duration::from_secs(0)),
        password: None,
        password_file: None,
        password_env: None,
    };
    let store = banditore::store::open(&settings, None).await.unwrap();
    store.migrate().await.unwrap();
    store
}

fn at(seconds: i64) -> Timestamp {
    Timestamp::from_second(1_800_000_000 + seconds).unwrap()
}

/// Which back end a case runs on.
#[derive(Clone, Copy)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// What keeps a test store alive: its folder or its database, removed when dropped.
#[expect(dead_code, reason = "held only for what its Drop does")]
enum Keep {
    Dir(tempfile::TempDir),
    Db(crate::support::TestDatabase),
}

/// A migrated store on `backend`; `None` when PostgreSQL is not reachable outside CI.
pub async fn test_store(backend: Backend) -> Option<(Arc<dyn Store>, impl Send)> {
    match backend {
        Backend::Sqlite => {
            let dir = tempfile::tempdir().unwrap();
            let store = sqlite_store(&dir).await;
            Some((store, Keep::Dir(dir)))
        }
        Backend::Postgres => {
            let db = crate::support::fresh_database().await?;
            let store = store_at(db.url.clone()).await;
            Some((store, Keep::Db(db)))
        }
    }
}

struct Bench {
    _keep: Box<dyn Send>,
    store: Arc<dyn Store>,
    engine: Engine,
}

impl Bench {
    async fn new(
        backend: Backend,
        group_wait: u64,
        group_interval: u64,
        hold_down: u64,
    ) -> Option<Bench> {
        let (store, keep) = test_store(backend).await?;
        let timing = Timing {
            group_wait: Duration::from_secs(group_wait),
            group_interval: Duration::from_secs(group_interval),
            flap_hold_down: Duration::from_secs(hold_down),
        };
        let engine = Engine::new(store.clone(), timing, vec!["service".into()]);
        Some(Bench {
            _keep: Box::new(keep),
            store,
            engine,
        })
    }

    async fn signal(&self, t: i64, fp: &str, service: &str, status: SignalStatus, severity: &str) {
        let raw = RawSignal {
            fingerprint: Some(fp.into()),
            status: Some(status),
            severity: Some(severity.into()),
            service: Some(service.into()),
            summary: Some(format!("{service} {fp}")),
            ..RawSignal::default()
        };
        let signal = raw.normalize(Source::Generic, &NormalizeRules::default(), at(t));
        self.store.insert_signals(&[(at(t), signal)]).await.unwrap();
    }

    /// Prometheus's alert `CupDown`, received at `t` with `endsAt` at `ends` (seconds).
    fn prometheus(t: i64, ends: i64) -> banditore::domain::Signal {
        let raw = RawSignal {
            labels: [
                ("alertname", "CupDown"),
                ("service", "cup"),
                ("severity", "critical"),
            ]
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect(),
            ends_at: Some(at(ends)),
            ..RawSignal::default()
        };
        raw.normalize(Source::Prometheus, &NormalizeRules::default(), at(t))
    }

    async fn step(&self, t: i64) {
        self.engine.step(at(t)).await.unwrap();
    }

    async fn incidents(&self) -> Vec<i64> {
        let filter = banditore::store::IncidentFilter {
            open: None,
            limit: 100,
            before: None,
        };
        let mut ids: Vec<i64> = self
            .store
            .list_incidents(&filter)
            .await
            .unwrap()
            .iter()
            .map(|i| i.id)
            .collect();
        ids.sort();
        ids
    }

    async fn updates(&self, incident: i64) -> Vec<UpdateRow> {
        self.store.incident_updates(incident).await.unwrap()
    }

    async fn kinds(&self, incident: i64) -> Vec<UpdateKind> {
        self.updates(incident)
            .await
            .iter()
            .filter(|u| !u.silent)
            .map(|u| u.kind)
            .collect()
    }
}

use SignalStatus::{Firing, Resolved};

/// An incident is named by its first signal's summary, also when others joined it in the same
/// step, whatever their fingerprints; its alerts are listed in the order they came.
async fn an_incident_is_named_by_its_first_signal_among_those_of_its_step(backend: Backend) {
    let Some(b) = Bench::new(backend, 0, 60, 0).await else {
        return;
    };
    // Fingerprints in the reverse of their arrival.
    for fp in ["zz-first", "mm-second", "aa-third"] {
        b.signal(0, fp, "cup", Firing, "warning").await;
    }
    b.step(0).await;
    let ids = b.incidents().await;
    assert_eq!(ids.len(), 1);
    assert_eq!(b.kinds(ids[0]).await, vec![UpdateKind::Opened]);
    let cup = b.store.incident(ids[0]).await.unwrap().unwrap();
    assert_eq!(cup.title, "cup zz-first");
    let summaries: Vec<String> = b
        .store
        .incident_alerts(ids[0])
        .await
        .unwrap()
        .into_iter()
        .map(|a| a.summary)
        .collect();
    assert_eq!(summaries, ["cup zz-first", "cup mm-second", "cup aa-third"]);
    // A later signal, first in fingerprint order, does not rename it.
    b.signal(100, "aaa-later", "cup", Firing, "critical").await;
    b.step(100).await;
    let cup = b.store.incident(ids[0]).await.unwrap().unwrap();
    assert_eq!(cup.title, "cup zz-first");
    assert_eq!(
        b.kinds(ids[0]).await.len(),
        2,
        "{:?}",
        b.kinds(ids[0]).await
    );
}

async fn signals_of_one_service_gather_into_one_incident_during_the_group_wait(backend: Backend) {
    let Some(b) = Bench::new(backend, 5, 60, 0).await else {
        return;
    };
    b.signal(0, "db", "cup-backend", Firing, "warning").await;
    b.step(0).await;
    b.signal(2, "api", "cup-backend", Firing, "critical").await;
    b.signal(3, "web", "referti", Firing, "warning").await;
    b.step(3).await;
    let ids = b.incidents().await;
    assert_eq!(ids.len(), 2, "cup-backend and referti");
    assert!(
        b.kinds(ids[0]).await.is_empty(),
        "nothing announced before the group wait ends"
    );
    b.step(5).await;
    assert_eq!(b.kinds(ids[0]).await, vec![UpdateKind::Opened]);
    let cup = b.store.incident(ids[0]).await.unwrap().unwrap();
    assert_eq!(
        cup.severity.as_str(),
        "critical",
        "the worst signal sets the severity"
    );
    assert_eq!(b.store.incident_alerts(ids[0]).await.unwrap().len(), 2);
    assert!(
        b.kinds(ids[1]).await.is_empty(),
        "referti opened at 3s waits until 8s"
    );
    b.step(8).await;
    assert_eq!(b.kinds(ids[1]).await, vec![UpdateKind::Opened]);
    // The latency clock starts at the first signal's arrival.
    assert_eq!(b.updates(ids[0]).await[0].origin_at, at(0));
}

async fn a_repeated_firing_signal_refreshes_and_does_not_duplicate(backend: Backend) {
    let Some(b) = Bench::new(backend, 0, 0, 0).await else {
        return;
    };
    for t in 0..5 {
        b.signal(t, "db", "cup", Firing, "warning").await;
        b.step(t).await;
    }
    let ids = b.incidents().await;
    assert_eq!(ids.len(), 1);
    assert_eq!(b.kinds(ids[0]).await, vec![UpdateKind::Opened]);
    let alert = &b.store.incident_alerts(ids[0]).await.unwrap()[0];
    assert_eq!(alert.last_seen_at, at(4));
    assert_eq!(alert.first_seen_at, at(0));
}

async fn an_incident_resolves_when_all_its_signals_resolve(backend: Backend) {
    let Some(b) = Bench::new(backend, 0, 0, 0).await else {
        return;
    };
    b.signal(0, "db", "cup", Firing, "warning").await;
    b.signal(0, "api", "cup", Firing, "warning").await;
    b.step(0).await;
    b.signal(10, "db", "cup", Resolved, "warning").await;
    b.step(10).await;
    let id = b.incidents().await[0];
    assert_eq!(
        b.kinds(id).await,
        vec![UpdateKind::Opened, UpdateKind::Updated],
        "one of two recovered"
    );
    b.signal(20, "api", "cup", Resolved, "warning").await;
    b.step(20).await;
    assert_eq!(
        b.kinds(id).await,
        vec![
            UpdateKind::Opened,
            UpdateKind::Updated,
            UpdateKind::Resolved
        ]
    );
    let incident = b.store.incident(id).await.unwrap().unwrap();
    assert_eq!(incident.resolved_at, Some(at(20)));
    // The next firing opens a new incident.
    b.signal(30, "db", "cup", Firing, "warning").await;
    b.step(30).await;
    assert_eq!(b.incidents().await.len(), 2);
}

async fn the_flap_hold_down_absorbs_an_open_resolve_storm(backend: Backend) {
    let Some(b) = Bench::new(backend, 0, 0, 60).await else {
        return;
    };
    b.signal(0, "db", "cup", Firing, "warning").await;
    b.step(0).await;
    // Resolve and fire again every 10 s: nobody is told anything.
    for round in 0..5 {
        let t = 10 + round * 20;
        b.signal(t, "db", "cup", Resolved, "warning").await;
        b.step(t).await;
        b.signal(t + 10, "db", "cup", Firing, "warning").await;
        b.step(t + 10).await;
    }
    let id = b.incidents().await[0];
    assert_eq!(b.kinds(id).await, vec![UpdateKind::Opened]);
    // Then it stays resolved: resolved only once the hold-down has passed.
    b.signal(200, "db", "cup", Resolved, "warning").await;
    b.step(200).await;
    b.step(259).await;
    assert_eq!(b.kinds(id).await, vec![UpdateKind::Opened]);
    b.step(260).await;
    assert_eq!(
        b.kinds(id).await,
        vec![UpdateKind::Opened, UpdateKind::Resolved]
    );
}

async fn a_blip_inside_the_group_wait_is_never_announced(backend: Backend) {
    let Some(b) = Bench::new(backend, 30, 0, 0).await else {
        return;
    };
    b.signal(0, "db", "cup", Firing, "warning").await;
    b.step(0).await;
    b.signal(5, "db", "cup", Resolved, "warning").await;
    b.step(5).await;
    b.step(30).await;
    let id = b.incidents().await[0];
    assert!(b.kinds(id).await.is_empty());
    let updates = b.updates(id).await;
    assert_eq!(updates.len(), 1, "closed, and the closure is on record");
    assert!(updates[0].silent);
    assert!(
        b.store
            .incident(id)
            .await
            .unwrap()
            .unwrap()
            .resolved_at
            .is_some()
    );
}

async fn changes_after_the_announcement_wait_for_the_group_interval_and_escalation_is_news(
    backend: Backend,
) {
    let Some(b) = Bench::new(backend, 0, 60, 0).await else {
        return;
    };
    b.signal(0, "db", "cup", Firing, "warning").await;
    b.step(0).await;
    b.signal(10, "db", "cup", Firing, "critical").await;
    b.step(10).await;
    let id = b.incidents().await[0];
    assert_eq!(b.kinds(id).await, vec![UpdateKind::Opened]);
    b.step(59).await;
    assert_eq!(b.kinds(id).await.len(), 1);
    b.step(60).await;
    assert_eq!(
        b.kinds(id).await,
        vec![UpdateKind::Opened, UpdateKind::Updated]
    );
    assert_eq!(b.updates(id).await[1].severity.as_str(), "critical");
}

async fn a_resolution_for_an_unknown_fingerprint_is_ignored(backend: Backend) {
    let Some(b) = Bench::new(backend, 0, 0, 0).await else {
        return;
    };
    b.signal(0, "ghost", "cup", Resolved, "warning").await;
    b.step(0).await;
    assert!(b.incidents().await.is_empty());
    let counts = b.store.counts().await.unwrap();
    assert_eq!(
        counts.unprocessed_signals, 0,
        "processed, with nothing to do"
    );
}

async fn an_update_keeps_the_moment_it_was_written(backend: Backend) {
    let Some(b) = Bench::new(backend, 0, 0, 0).await else {
        return;
    };
    b.signal(0, "db", "cup", Firing, "critical").await;
    b.step(0).await;
    b.signal(10, "db", "cup", Resolved, "critical").await;
    b.step(10).await;
    let id = b.incidents().await[0];
    let updates = b.updates(id).await;
    assert_eq!(updates.len(), 2);
    // Routed late, the opening still says what was true when it was written.
    assert_eq!(updates[0].status.as_str(), "investigating");
    assert!(updates[0].signals[0].firing);
    assert!(!updates[1].signals[0].firing);
    assert_eq!(updates[1].status.as_str(), "resolved");
}

async fn resolving_by_hand_before_anyone_was_told_stays_quiet(backend: Backend) {
    let Some(b) = Bench::new(backend, 30, 0, 0).await else {
        return;
    };
    b.signal(0, "db", "cup", Firing, "critical").await;
    b.step(0).await;
    let id = b.incidents().await[0];
    let update = banditore::incident::ManualUpdate {
        status: Some(banditore::domain::IncidentStatus::Resolved),
        severity: None,
        body: Some("Falso allarme".into()),
    };
    b.engine
        .post_update(id, update, "sala", at(5))
        .await
        .unwrap();
    let updates = b.updates(id).await;
    assert_eq!(updates.len(), 1);
    assert!(
        updates[0].silent,
        "nobody heard it open, so nobody hears it close"
    );
}

async fn a_prometheus_alert_not_sent_again_by_its_end_resolves_then_exactly_once(backend: Backend) {
    let Some(b) = Bench::new(backend, 0, 0, 0).await else {
        return;
    };
    // Evaluated every 15 s and re-sent every minute: each re-send moves endsAt 4 minutes on.
    for t in [0, 60, 120] {
        let signal = Bench::prometheus(t, t + 240);
        b.store.insert_signals(&[(at(t), signal)]).await.unwrap();
        b.step(t).await;
    }
    let id = b.incidents().await[0];
    let report = b.engine.step(at(300)).await.unwrap();
    assert_eq!(report.next_eval, Some(at(360)), "woken at the alert's end");
    assert!(
        b.store
            .incident(id)
            .await
            .unwrap()
            .unwrap()
            .resolved_at
            .is_none()
    );
    b.step(359).await;
    assert_eq!(b.kinds(id).await, vec![UpdateKind::Opened]);
    b.step(365).await;
    assert_eq!(
        b.kinds(id).await,
        vec![UpdateKind::Opened, UpdateKind::Resolved]
    );
    let alert = &b.store.incident_alerts(id).await.unwrap()[0];
    assert!(!alert.firing);
    assert_eq!(alert.resolved_at, Some(at(360)), "resolved when it ended");
    assert_eq!(
        b.store.incident(id).await.unwrap().unwrap().resolved_at,
        Some(at(365))
    );
    let report = b.engine.step(at(400)).await.unwrap();
    assert!(report.expired.is_empty() && report.next_eval.is_none());
    assert_eq!(b.updates(id).await.len(), 2, "once");
    // Prometheus re-sends the resolution for a while: nothing more happens.
    let resolved = Bench::prometheus(410, 360);
    assert_eq!(resolved.status, Resolved);
    b.store
        .insert_signals(&[(at(410), resolved)])
        .await
        .unwrap();
    b.step(410).await;
    assert_eq!(b.updates(id).await.len(), 2);
}

async fn after_a_restart_an_alert_has_a_whole_lease_to_be_sent_again(backend: Backend) {
    let Some(b) = Bench::new(backend, 0, 0, 0).await else {
        return;
    };
    b.store
        .insert_signals(&[(at(0), Bench::prometheus(0, 240))])
        .await
        .unwrap();
    b.step(0).await;
    let id = b.incidents().await[0];
    // Down from 30 s to 600 s: Prometheus's re-sends were refused, not missing. Its alert ended
    // at 240 s as far as the store knows, but Prometheus gets a whole lease to send it again.
    let restarted = b.engine.clone().awake_since(at(600));
    let report = restarted.step(at(601)).await.unwrap();
    assert!(report.expired.is_empty(), "no resolution at the restart");
    assert_eq!(
        report.next_eval,
        Some(at(840)),
        "woken a lease after the restart"
    );
    restarted.step(at(839)).await.unwrap();
    assert_eq!(b.kinds(id).await, vec![UpdateKind::Opened]);
    let report = restarted.step(at(840)).await.unwrap();
    assert_eq!(report.expired.len(), 1, "not sent again: it ends");
    assert_eq!(
        b.kinds(id).await,
        vec![UpdateKind::Opened, UpdateKind::Resolved]
    );
    let alert = &b.store.incident_alerts(id).await.unwrap()[0];
    assert_eq!(alert.resolved_at, Some(at(240)), "at the end it asked for");
}

async fn other_senders_alerts_fire_until_resolved_whatever_their_end_says(backend: Backend) {
    let Some(b) = Bench::new(backend, 0, 0, 0).await else {
        return;
    };
    let mut webhook = Bench::prometheus(0, 240);
    webhook.source = Source::Alertmanager;
    webhook.fingerprint = "alertmanager:cupdown".into();
    b.store.insert_signals(&[(at(0), webhook)]).await.unwrap();
    let report = b.engine.step(at(0)).await.unwrap();
    assert_eq!(report.next_eval, None, "nothing to wake for");
    b.step(3600).await;
    let id = b.incidents().await[0];
    assert_eq!(b.kinds(id).await, vec![UpdateKind::Opened]);
    assert!(b.store.incident_alerts(id).await.unwrap()[0].firing);
}

async fn re_sends_answered_without_a_write_keep_the_alert_firing(backend: Backend) {
    let Some(b) = Bench::new(backend, 0, 0, 0).await else {
        return;
    };
    let coalescer = banditore::ingest::Coalescer::default();
    let engine = b.engine.clone().with_coalescer(Some(coalescer.clone()));
    let first = Bench::prometheus(0, 240);
    let ids = b
        .store
        .insert_signals(&[(at(0), first.clone())])
        .await
        .unwrap();
    engine.step(at(0)).await.unwrap();
    // A re-send a minute for ten minutes, each as ingest would take it: answered with the
    // stored signal, its time written with the others' once a second.
    for t in (60..=600).step_by(60) {
        let resend = Bench::prometheus(t, t + 240);
        assert_eq!(coalescer.sort(&[(at(t), resend)]), [Some(ids[0])], "at {t}");
        let (fingerprints, seen) = coalescer.take_seen().unwrap();
        b.store
            .touch_alerts_seen(&fingerprints, seen)
            .await
            .unwrap();
        let report = engine.step(at(t + 1)).await.unwrap();
        assert_eq!(report.signals, 0, "no signal written at {t}");
        assert!(report.expired.is_empty(), "still firing at {t}");
    }
    let id = b.incidents().await[0];
    assert_eq!(b.kinds(id).await, vec![UpdateKind::Opened]);
    // Then Prometheus stops: it resolves 4 minutes after the last re-send.
    let report = engine.step(at(839)).await.unwrap();
    assert_eq!(report.next_eval, Some(at(840)));
    let report = engine.step(at(840)).await.unwrap();
    assert_eq!(report.expired, vec![first.fingerprint.clone()]);
    assert_eq!(
        b.kinds(id).await,
        vec![UpdateKind::Opened, UpdateKind::Resolved]
    );
    // Fired again, it is stored and opens a new incident, not answered from memory.
    let again = Bench::prometheus(900, 1140);
    assert_eq!(coalescer.sort(&[(at(900), again)]), [None]);
}

async fn a_re_send_answered_from_memory_just_before_the_end_keeps_the_alert_firing(
    backend: Backend,
) {
    let Some(b) = Bench::new(backend, 0, 0, 0).await else {
        return;
    };
    let coalescer = banditore::ingest::Coalescer::default();
    let engine = b.engine.clone().with_coalescer(Some(coalescer.clone()));
    let first = Bench::prometheus(0, 240);
    let ids = b
        .store
        .insert_signals(&[(at(0), first.clone())])
        .await
        .unwrap();
    engine.step(at(0)).await.unwrap();
    // Prometheus was late; its re-send comes a moment before the end and is answered at once.
    let resend = Bench::prometheus(239, 479);
    assert_eq!(coalescer.sort(&[(at(239), resend)]), [Some(ids[0])]);
    // The flusher has taken its time and not written it yet when the engine wakes at the end.
    let (fingerprints, seen) = coalescer.take_seen().unwrap();
    let report = engine.step(at(240)).await.unwrap();
    assert!(report.expired.is_empty(), "re-sent in time");
    assert_eq!(report.next_eval, Some(at(479)), "lives on from the re-send");
    b.store
        .touch_alerts_seen(&fingerprints, seen)
        .await
        .unwrap();
    coalescer.written(&fingerprints, seen);
    let id = b.incidents().await[0];
    assert_eq!(b.kinds(id).await, vec![UpdateKind::Opened]);
    assert!(b.store.incident_alerts(id).await.unwrap()[0].firing);
    // Not sent again: it ends four minutes after the re-send, once.
    let report = engine.step(at(479)).await.unwrap();
    assert_eq!(report.expired, vec![first.fingerprint.clone()]);
    assert_eq!(
        b.store.incident_alerts(id).await.unwrap()[0].resolved_at,
        Some(at(479))
    );
    assert_eq!(
        b.kinds(id).await,
        vec![UpdateKind::Opened, UpdateKind::Resolved]
    );
}

async fn two_replicas_that_both_believe_they_lead_expire_an_alert_once(backend: Backend) {
    let Some(b) = Bench::new(backend, 0, 0, 0).await else {
        return;
    };
    let first = Bench::prometheus(0, 240);
    b.store.insert_signals(&[(at(0), first)]).await.unwrap();
    b.step(0).await;
    let id = b.incidents().await[0];
    // The old leader's step expires the alert and has not committed when the new one's begins.
    let mut tx = b.store.begin().await.unwrap();
    let old = b.engine.step_in(tx.as_mut(), at(300)).await.unwrap();
    assert_eq!(old.expired.len(), 1);
    let engine = b.engine.clone();
    let new = tokio::spawn(async move { engine.step(at(300)).await.unwrap() });
    tokio::time::sleep(Duration::from_millis(300)).await;
    tx.commit().await.unwrap();
    let new = new.await.unwrap();
    assert!(new.expired.is_empty(), "expired by the old leader");
    assert_eq!(
        b.kinds(id).await,
        vec![UpdateKind::Opened, UpdateKind::Resolved]
    );
}

async fn what_a_step_hands_the_router_is_what_the_store_holds(backend: Backend) {
    let Some(b) = Bench::new(backend, 0, 0, 0).await else {
        return;
    };
    // Each step's clock falls between two milliseconds, as the service's does.
    let between = |t: i64| {
        at(t)
            .checked_add(jiff::SignedDuration::from_nanos(123_456_789))
            .unwrap()
    };
    let steps = [
        (0, vec![("a", Firing, "major"), ("b", Firing, "minor")]),
        (10, vec![("a", Firing, "critical")]),
        (20, vec![("a", Resolved, "critical")]),
        (30, vec![("b", Resolved, "minor")]),
    ];
    let mut handed = 0;
    for (t, signals) in steps {
        for (fp, status, severity) in signals {
            b.signal(t, fp, "cup", status, severity).await;
        }
        let mut tx = b.store.begin().await.unwrap();
        let report = b.engine.step_in(tx.as_mut(), between(t)).await.unwrap();
        for (id, written) in &report.written {
            let incident = tx.incident(*id).await.unwrap().unwrap();
            let alerts = tx.alerts(*id).await.unwrap();
            assert_eq!(format!("{:?}", written.incident), format!("{incident:?}"));
            assert_eq!(format!("{:?}", written.alerts), format!("{alerts:?}"));
            handed += 1;
        }
        tx.commit().await.unwrap();
    }
    // Opened, raised to critical, one of its two alerts resolved, and resolved.
    assert_eq!(handed, 4);
}

async fn a_signal_whose_lease_ended_while_it_waited_expires_in_its_own_step(backend: Backend) {
    let Some(b) = Bench::new(backend, 0, 0, 0).await else {
        return;
    };
    b.signal(0, "a", "cup", Firing, "major").await;
    b.step(0).await;
    // Received at 100 with an end at 200, applied only at 300.
    b.store
        .insert_signals(&[(at(100), Bench::prometheus(100, 200))])
        .await
        .unwrap();
    let report = b.engine.step(at(300)).await.unwrap();
    assert_eq!(report.expired.len(), 1);
    // Resolved as of its end, not of the step that found it (it joined the `cup` incident).
    let id = b.incidents().await[0];
    let alerts = b.store.incident_alerts(id).await.unwrap();
    let expired = alerts.iter().find(|a| a.expires_after.is_some()).unwrap();
    assert_eq!(expired.resolved_at, Some(at(200)));
}

/// A storm of new alerts, many to a step, joins an incident inside its grouping wait and then
/// inside its update interval: nothing is said until each wait ends, and then one update lists
/// every alert, those that came in the step that ends it too. Re-sends as told say nothing.
async fn a_storm_of_new_alerts_is_told_once_each_wait_ends(backend: Backend) {
    let Some(b) = Bench::new(backend, 30, 60, 0).await else {
        return;
    };
    let storm = |t: i64, from: usize, to: usize, severity: &'static str| {
        let signals: Vec<_> = (from..to)
            .map(|i| {
                let raw = RawSignal {
                    fingerprint: Some(format!("host-{i}")),
                    status: Some(Firing),
                    severity: Some(severity.into()),
                    service: Some("cup".into()),
                    summary: Some(format!("host {i} down")),
                    ..RawSignal::default()
                };
                (
                    at(t),
                    raw.normalize(Source::Generic, &NormalizeRules::default(), at(t)),
                )
            })
            .collect();
        let store = b.store.clone();
        async move { store.insert_signals(&signals).await.unwrap() }
    };
    // Three steps inside the grouping wait, the last with a resolution among the new ones.
    storm(0, 0, 200, "warning").await;
    b.step(0).await;
    storm(5, 200, 400, "warning").await;
    b.step(5).await;
    storm(10, 400, 600, "critical").await;
    b.signal(10, "host-7", "cup", Resolved, "warning").await;
    b.step(10).await;
    let id = b.incidents().await[0];
    assert_eq!(b.incidents().await.len(), 1);
    assert_eq!(
        b.store.incident(id).await.unwrap().unwrap().eval_at,
        Some(at(30)),
        "the wait is the incident's timer"
    );
    b.step(29).await;
    assert!(b.kinds(id).await.is_empty(), "told before the wait ended");
    // New ones in the step the wait ends are in the notice.
    storm(30, 600, 650, "warning").await;
    b.step(30).await;
    let updates = b.updates(id).await;
    assert_eq!(b.kinds(id).await, vec![UpdateKind::Opened]);
    let firing = updates[0].signals.iter().filter(|s| s.firing).count();
    assert_eq!((updates[0].signals.len(), firing), (650, 649));
    assert_eq!(updates[0].severity.as_str(), "critical");
    assert_eq!(updates[0].origin_at, at(0));

    // More new alerts inside the update interval, with re-sends of told ones (host-7, told
    // resolved, fires again).
    storm(40, 650, 900, "warning").await;
    storm(40, 0, 100, "warning").await;
    b.step(40).await;
    storm(50, 900, 950, "warning").await;
    b.step(50).await;
    b.step(89).await;
    assert_eq!(b.kinds(id).await.len(), 1, "told inside the interval");
    storm(90, 950, 1000, "warning").await;
    b.step(90).await;
    let updates = b.updates(id).await;
    assert_eq!(
        b.kinds(id).await,
        vec![UpdateKind::Opened, UpdateKind::Updated]
    );
    let firing = updates[1].signals.iter().filter(|s| s.firing).count();
    assert_eq!((updates[1].signals.len(), firing), (1000, 1000));
    assert_eq!(updates[1].origin_at, at(40));

    // Only re-sends of alerts as told (each with its severity): nothing more to say.
    storm(100, 0, 400, "warning").await;
    storm(100, 400, 600, "critical").await;
    storm(100, 600, 1000, "warning").await;
    b.step(100).await;
    b.step(200).await;
    assert_eq!(b.kinds(id).await.len(), 2);
}

/// An alert not yet told that expires in the step that applies it is no reason to wait: the
/// incident's decision is taken on what its alerts are after the step.
async fn a_new_alert_expired_in_its_own_step_leaves_the_incident_idle(backend: Backend) {
    let Some(b) = Bench::new(backend, 0, 600, 0).await else {
        return;
    };
    b.signal(0, "a", "cup", Firing, "major").await;
    b.step(0).await;
    let id = b.incidents().await[0];
    assert_eq!(b.kinds(id).await, vec![UpdateKind::Opened]);
    // Received at 100 with an end at 200, applied only at 300: inside the interval, and gone.
    b.store
        .insert_signals(&[(at(100), Bench::prometheus(100, 200))])
        .await
        .unwrap();
    let report = b.engine.step(at(300)).await.unwrap();
    assert_eq!(report.expired.len(), 1);
    let incident = b.store.incident(id).await.unwrap().unwrap();
    assert_eq!(incident.eval_at, None, "nothing to wait for: as told");
    assert_eq!(b.kinds(id).await, vec![UpdateKind::Opened]);
}

/// Every case runs on SQLite and on PostgreSQL.
macro_rules! on_both {
    ($($name:ident),+ $(,)?) => {
        mod sqlite {
            $( #[tokio::test] async fn $name() { super::$name(super::Backend::Sqlite).await } )+
        }
        mod postgres {
            $( #[tokio::test] async fn $name() { super::$name(super::Backend::Postgres).await } )+
        }
    };
}

on_both!(
    an_incident_is_named_by_its_first_signal_among_those_of_its_step,
    signals_of_one_service_gather_into_one_incident_during_the_group_wait,
    a_repeated_firing_signal_refreshes_and_does_not_duplicate,
    an_incident_resolves_when_all_its_signals_resolve,
    the_flap_hold_down_absorbs_an_open_resolve_storm,
    a_blip_inside_the_group_wait_is_never_announced,
    changes_after_the_announcement_wait_for_the_group_interval_and_escalation_is_news,
    a_resolution_for_an_unknown_fingerprint_is_ignored,
    an_update_keeps_the_moment_it_was_written,
    resolving_by_hand_before_anyone_was_told_stays_quiet,
    a_prometheus_alert_not_sent_again_by_its_end_resolves_then_exactly_once,
    other_senders_alerts_fire_until_resolved_whatever_their_end_says,
    re_sends_answered_without_a_write_keep_the_alert_firing,
    a_re_send_answered_from_memory_just_before_the_end_keeps_the_alert_firing,
    two_replicas_that_both_believe_they_lead_expire_an_alert_once,
    after_a_restart_an_alert_has_a_whole_lease_to_be_sent_again,
    what_a_step_hands_the_router_is_what_the_store_holds,
    a_signal_whose_lease_ended_while_it_waited_expires_in_its_own_step,
    a_storm_of_new_alerts_is_told_once_each_wait_ends,
    a_new_alert_expired_in_its_own_step_leaves_the_incident_idle,
);
