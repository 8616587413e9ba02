//! An update for more recipients than a part (`route::PART` on one channel) is routed over
//! several steps, each in a commit of its own, on SQLite and PostgreSQL: the first step writes a
//! part on each channel and leaves the update unrouted; the next ones write the rest a part at a
//! time, then mark it routed. Every recipient gets one delivery; no later update is routed
//! before the last part, so each recipient hears updates in order; the messages a step hands
//! over are those it stored; a router that lost its parts (a restart, a new leader) routes the
//! update again from the start without writing anything twice; an address unsubscribed or a desk
//! deleted between two parts is not written; and the desks' escalation ladders start with the
//! last part, so no step falls due before the update it escalates is routed.

use std::collections::BTreeMap;
use std::sync::Arc;

use banditore::domain::escalation::{EscalationPolicy, EscalationStepSpec};
use banditore::domain::subscriber::{
    ChannelKind, Language, SubscriberRules, SubscriberSpec, ValidSubscriber,
};
use banditore::domain::{IncidentStatus, Labels, Severity};
use banditore::incident::{Engine, ManualIncident, ManualUpdate};
use banditore::route::{PART, RouteReport, Router};
use banditore::store::{DeliveryRow, NewMessage, Store};
use jiff::Timestamp;

use crate::escalation::{engine, router};
use crate::support::*;

fn at(seconds: i64) -> Timestamp {
    Timestamp::from_second(1_800_000_000 + seconds).unwrap()
}

fn it() -> Language {
    Language::try_from("it".to_owned()).unwrap()
}

/// Email desks: two and a half parts' worth, so that the rest takes two steps.
const EMAILS: usize = PART * 5 / 2;
/// Text desks: fewer than a part, all written by the first step.
const TEXTS: usize = 30;

struct Desks {
    store: Arc<dyn Store>,
    engine: Engine,
    router: Router,
    policies: Arc<BTreeMap<String, EscalationPolicy>>,
    /// The desks, as the configuration file lists them.
    listed: Vec<ValidSubscriber>,
}

impl Desks {
    /// A store holding [`EMAILS`] email addresses and [`TEXTS`] phone numbers, ten to a desk,
    /// each desk following every incident.
    async fn new(store: Arc<dyn Store>) -> Desks {
        Desks::with_escalation(store, BTreeMap::new()).await
    }

    /// The same desks, all of the audience `cup`, which escalates by `policies`.
    async fn with_escalation(
        store: Arc<dyn Store>,
        policies: BTreeMap<String, EscalationPolicy>,
    ) -> Desks {
        let rules = SubscriberRules::new(it());
        let mut desks = Vec::new();
        for d in 0..EMAILS / 10 {
            let emails: Vec<String> = (0..10)
                .map(|i| format!("sportello{}@asl.example", d * 10 + i))
                .collect();
            let mut addresses = serde_json::json!({ "email": emails });
            if d < TEXTS / 10 {
                let phones: Vec<String> = (0..10)
                    .map(|i| format!("+39333{:07}", d * 10 + i))
                    .collect();
                addresses["sms"] = serde_json::json!(phones);
            }
            let spec: SubscriberSpec = serde_json::from_value(serde_json::json!({
                "name": format!("CUP {d}"),
                "audience": "cup",
                "addresses": addresses,
                "subscriptions": [{}],
            }))
            .unwrap();
            desks.push(spec.validate(&rules).unwrap());
        }
        store.sync_config_subscribers(&desks, at(0)).await.unwrap();
        let listed = desks;
        let engine = engine(&store);
        let policies = Arc::new(policies);
        let router = Desks::router(&store, &policies);
        Desks {
            store,
            engine,
            router,
            policies,
            listed,
        }
    }

    fn router(
        store: &Arc<dyn Store>,
        policies: &Arc<BTreeMap<String, EscalationPolicy>>,
    ) -> Router {
        router(
            store,
            &[ChannelKind::Email, ChannelKind::Sms],
            serde_json::json!({"audiences": {}, "notify_audience": ""}),
            policies,
        )
    }

    /// A restart, or another replica taking the lead: a router with nothing in memory.
    fn restart(&mut self) {
        self.router = Desks::router(&self.store, &self.policies);
    }

    /// Opens an incident by hand; nothing is routed yet.
    async fn open(&self, t: i64) -> i64 {
        let (incident, _) = self
            .engine
            .open_manual(
                ManualIncident {
                    title: "CUP non raggiungibile".into(),
                    status: IncidentStatus::Investigating,
                    severity: Severity::Major,
                    labels: Labels::from([("service".to_owned(), "cup".to_owned())]),
                    body: None,
                },
                "sala operativa",
                at(t),
            )
            .await
            .unwrap();
        incident.id
    }

    async fn update(&self, incident: i64, t: i64) {
        self.engine
            .post_update(
                incident,
                ManualUpdate {
                    status: Some(IncidentStatus::Identified),
                    severity: None,
                    body: Some("guasto individuato".into()),
                },
                "sala operativa",
                at(t),
            )
            .await
            .unwrap();
    }

    /// Steps the router until nothing is left; the reports of the steps that routed something.
    async fn route_all(&self, t: i64) -> Vec<RouteReport> {
        let mut reports = Vec::new();
        loop {
            let report = self.router.step(at(t)).await.unwrap();
            let more = report.more;
            if report.updates > 0 {
                reports.push(report);
            }
            if !more {
                return reports;
            }
            assert!(reports.len() < 100, "the router never finishes");
        }
    }

    async fn deliveries(&self, incident: i64) -> Vec<DeliveryRow> {
        self.store.incident_deliveries(incident).await.unwrap()
    }

    /// The id of the address `address`.
    async fn address(&self, address: &str) -> i64 {
        let desks = self.store.subscribers().await.unwrap();
        desks
            .iter()
            .flat_map(|d| &d.addresses)
            .find(|a| a.address == address)
            .unwrap()
            .id
    }
}

/// Asserts that update 1 of `incident` reached every address once.
async fn assert_each_once(desks: &Desks, incident: i64) {
    let (counts, twice) = tally(&desks.deliveries(incident).await);
    assert!(!twice);
    assert_eq!(
        counts,
        BTreeMap::from([
            ((1, ChannelKind::Email), EMAILS),
            ((1, ChannelKind::Sms), TEXTS)
        ])
    );
}

/// (update, channel) → how many deliveries, and whether any recipient got one twice.
fn tally(rows: &[DeliveryRow]) -> (BTreeMap<(i64, ChannelKind), usize>, bool) {
    let mut counts = BTreeMap::new();
    let mut seen = std::collections::BTreeSet::new();
    let mut twice = false;
    for d in rows {
        *counts.entry((d.update_seq, d.channel)).or_default() += 1;
        twice |= !seen.insert((d.update_seq, d.channel, d.recipient.clone()));
    }
    (counts, twice)
}

async fn a_large_update_is_written_a_part_at_a_time_each_recipient_once(store: Arc<dyn Store>) {
    let desks = Desks::new(store).await;
    let id = desks.open(0).await;
    let first = desks.router.step(at(0)).await.unwrap();
    assert!(first.more, "the rest waits for the next step");
    assert_eq!(first.deliveries, (PART + TEXTS) as u64);
    let (counts, _) = tally(&desks.deliveries(id).await);
    assert_eq!(
        counts,
        BTreeMap::from([
            ((1, ChannelKind::Email), PART),
            ((1, ChannelKind::Sms), TEXTS)
        ]),
        "a part on each channel"
    );
    let rest = desks.route_all(1).await;
    let written: Vec<u64> = rest.iter().map(|r| r.deliveries).collect();
    assert_eq!(written, vec![PART as u64, (EMAILS - 2 * PART) as u64]);
    assert_each_once(&desks, id).await;
    // Routed: another step finds nothing.
    let after = desks.router.step(at(2)).await.unwrap();
    assert_eq!((after.updates, after.deliveries, after.more), (0, 0, false));
}

async fn a_later_update_waits_for_the_last_part_and_reaches_each_recipient_after(
    store: Arc<dyn Store>,
) {
    let desks = Desks::new(store).await;
    let id = desks.open(0).await;
    // A second update, and another incident's, wait with the first.
    desks.update(id, 0).await;
    let other = desks.open(0).await;
    assert_ne!(other, id, "a manual incident of its own");
    for t in 0..2 {
        let report = desks.router.step(at(t)).await.unwrap();
        assert!(report.more);
        let (counts, _) = tally(&desks.deliveries(id).await);
        assert!(
            !counts.keys().any(|(update, _)| *update == 2),
            "update 2 routed while update 1 was in parts: {counts:?}"
        );
        assert!(desks.deliveries(other).await.is_empty());
    }
    desks.route_all(2).await;
    let rows = desks.deliveries(id).await;
    let (counts, twice) = tally(&rows);
    assert!(!twice);
    for update in [1, 2] {
        assert_eq!(counts[&(update, ChannelKind::Email)], EMAILS);
        assert_eq!(counts[&(update, ChannelKind::Sms)], TEXTS);
    }
    assert_eq!(desks.deliveries(other).await.len(), EMAILS + TEXTS);
    // Each recipient's first update was written (and is claimed) before its second.
    let mut opened: BTreeMap<(ChannelKind, &str), i64> = BTreeMap::new();
    for d in rows.iter().filter(|d| d.update_seq == 1) {
        opened.insert((d.channel, d.recipient.as_str()), d.id);
    }
    for d in rows.iter().filter(|d| d.update_seq == 2) {
        let before = opened[&(d.channel, d.recipient.as_str())];
        assert!(
            before < d.id,
            "{} heard update 2 (delivery {}) before update 1 (delivery {before})",
            d.recipient,
            d.id
        );
    }
}

async fn the_messages_each_part_hands_over_are_those_it_stored(store: Arc<dyn Store>) {
    let desks = Desks::new(store).await;
    desks.open(0).await;
    let reports = desks.route_all(0).await;
    assert_eq!(reports.len(), 3);
    for report in &reports {
        let mut channels: Vec<ChannelKind> = report.messages.iter().map(|m| m.channel).collect();
        channels.sort();
        // The first part wrote both channels' deliveries, the later ones email only.
        let expected = if report.channels.contains(&ChannelKind::Sms) {
            vec![ChannelKind::Email, ChannelKind::Sms]
        } else {
            vec![ChannelKind::Email]
        };
        assert_eq!(channels, expected);
        for handed in &report.messages {
            let stored = desks.store.message(handed.id).await.unwrap().unwrap();
            assert_eq!(format!("{handed:?}"), format!("{stored:?}"));
        }
    }
    assert!(reports[0].channels.contains(&ChannelKind::Sms));
    assert_eq!(
        reports[1].messages[0].id, reports[0].messages[0].id,
        "one email message for the whole update"
    );
}

async fn a_router_that_lost_its_parts_routes_again_and_writes_nothing_twice(store: Arc<dyn Store>) {
    let mut desks = Desks::new(store).await;
    let id = desks.open(0).await;
    let first = desks.router.step(at(0)).await.unwrap();
    let email = first
        .messages
        .iter()
        .find(|m| m.channel == ChannelKind::Email)
        .unwrap()
        .clone();
    // Written again under its key, as an update routed again from the start writes it, a
    // message keeps its text, and the store says which: a router restarted with other
    // templates hands over the text the first part's recipients got.
    let mut tx = desks.store.begin().await.unwrap();
    let again = tx
        .insert_message(&NewMessage {
            update_id: email.update_id,
            channel: ChannelKind::Email,
            language: email.language.clone(),
            audience: email.audience.clone(),
            subject: Some("altro oggetto".into()),
            body: "altro testo".into(),
            html: None,
            created_at: at(1),
        })
        .await
        .unwrap();
    tx.commit().await.unwrap();
    assert_eq!(
        (again.id, &again.subject, &again.body, &again.html),
        (email.id, &email.subject, &email.body, &email.html)
    );
    desks.router.step(at(1)).await.unwrap();
    let (counts, _) = tally(&desks.deliveries(id).await);
    assert_eq!(counts[&(1, ChannelKind::Email)], 2 * PART);
    desks.restart();
    let reports = desks.route_all(2).await;
    let written: u64 = reports.iter().map(|r| r.deliveries).sum();
    assert_eq!(written, (EMAILS - 2 * PART) as u64, "only what was missing");
    assert_eq!(
        reports.len(),
        2,
        "the first part again, then all that is missing at once"
    );
    assert_each_once(&desks, id).await;
    // The message written before the restart, as written, is the one the rest carries.
    let handed: Vec<String> = reports
        .iter()
        .flat_map(|r| {
            r.messages
                .iter()
                .filter(|m| m.channel == ChannelKind::Email)
        })
        .map(|m| format!("{m:?}"))
        .collect();
    assert_eq!(handed, vec![format!("{email:?}")]);
}

async fn an_address_gone_between_two_parts_is_not_written(store: Arc<dyn Store>) {
    let desks = Desks::new(store).await;
    let id = desks.open(0).await;
    assert!(desks.router.step(at(0)).await.unwrap().more);
    // Both in the rest: one address unsubscribes, one desk of ten addresses is deleted.
    let unsubscribed = desks.address("sportello1500@asl.example").await;
    assert!(
        desks
            .store
            .unsubscribe_address(unsubscribed, at(1))
            .await
            .unwrap()
    );
    // The file no longer lists the desk: a restart deletes it.
    let kept: Vec<ValidSubscriber> = desks
        .listed
        .iter()
        .filter(|d| d.name != "CUP 240")
        .cloned()
        .collect();
    let synced = desks
        .store
        .sync_config_subscribers(&kept, at(1))
        .await
        .unwrap();
    assert_eq!(synced.removed, 1);
    let reports = desks.route_all(1).await;
    let written: Vec<u64> = reports.iter().map(|r| r.deliveries).collect();
    assert_eq!(
        written,
        vec![PART as u64, (EMAILS - 2 * PART - 11) as u64],
        "the rest written on, less the addresses gone, not routed again from the start"
    );
    let rows = desks.deliveries(id).await;
    let (counts, twice) = tally(&rows);
    assert!(!twice);
    assert_eq!(counts[&(1, ChannelKind::Email)], EMAILS - 11);
    for gone in ["sportello1500@asl.example", "sportello2405@asl.example"] {
        assert!(
            !rows.iter().any(|d| d.recipient == gone),
            "{gone} was written"
        );
    }
}

async fn the_ladders_start_with_the_last_part(store: Arc<dyn Store>) {
    let steps: Vec<EscalationStepSpec> = serde_json::from_value(serde_json::json!([
        {"after": "0s", "channels": ["email"]},
        {"after": "1s", "channels": ["sms"]},
    ]))
    .unwrap();
    let policy = EscalationPolicy::parse(&steps, "escalation").unwrap();
    let desks = Desks::with_escalation(store, BTreeMap::from([("cup".to_owned(), policy)])).await;
    let id = desks.open(0).await;
    let first = desks.router.step(at(0)).await.unwrap();
    assert_eq!(
        first.deliveries, PART as u64,
        "email only: texts wait for their step"
    );
    // Past the step's delay, with the update not yet routed: nothing is due yet.
    assert!(desks.store.next_escalations(id).await.unwrap().is_empty());
    let early = desks.router.escalate(at(5)).await.unwrap();
    assert_eq!((early.fired, early.deliveries), (0, 0));
    desks.route_all(5).await;
    let waiting = desks.store.next_escalations(id).await.unwrap();
    assert_eq!(waiting.len(), EMAILS / 10, "one ladder per desk");
    assert!(waiting.iter().all(|e| e.due_at == at(6)));
    let fired = desks.router.escalate(at(6)).await.unwrap();
    assert_eq!(fired.deliveries, TEXTS as u64);
    assert_each_once(&desks, id).await;
}

suite!(
    a_large_update_is_written_a_part_at_a_time_each_recipient_once,
    a_later_update_waits_for_the_last_part_and_reaches_each_recipient_after,
    the_messages_each_part_hands_over_are_those_it_stored,
    a_router_that_lost_its_parts_routes_again_and_writes_nothing_twice,
    an_address_gone_between_two_parts_is_not_written,
    the_ladders_start_with_the_last_part,
);
