//! Escalation with simulated time, on SQLite and PostgreSQL: a real store, the engine opening and
//! updating incidents by hand, and the router routing them and climbing the desks' ladders
//! (`Router::escalate`) at explicit moments. A desk with email at once and SMS after five minutes
//! is texted at 5:00 and not at 4:59, never once it acknowledged or the incident ended, hears a
//! second update by email only, and hears the resolution on every channel that carried a message;
//! a router built anew in the middle (a restart, another leader) changes nothing. Then the real
//! binary: a desk's policy through the API (its refusals naming the field) and an outage emailed
//! at once and texted two seconds later.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use banditore::domain::escalation::{EscalationPolicy, EscalationStepSpec};
use banditore::domain::incident::Timing;
use banditore::domain::subscriber::{ChannelKind, Language, SubscriberRules, SubscriberSpec};
use banditore::domain::{IncidentStatus, Labels};
use banditore::incident::{Engine, ManualIncident, ManualUpdate};
use banditore::render::Renderer;
use banditore::route::Router;
use banditore::settings::ApprovalSettings;
use banditore::store::{Acknowledged, EscalationState, NextEscalation, Store, SubscriberEdit};
use jiff::Timestamp;
use serde_json::json;

use crate::support::*;

fn at(seconds: i64) -> Timestamp {
    Timestamp::from_second(1_800_000_000 + seconds).unwrap()
}

fn it() -> Language {
    Language::try_from("it".to_owned()).unwrap()
}

/// The CUP desks' policy, shortened to what the tests need: email and Telegram at once, a text
/// after five minutes, the webhook after ten.
fn cup_policy() -> serde_json::Value {
    serde_json::json!([
        {"after": "0s", "channels": ["email", "telegram"]},
        {"after": "5m", "channels": ["sms"]},
        {"after": "10m", "channels": ["webhook"]},
    ])
}

/// The engine as these tests step it: an incident announced at once, updates a minute apart, no
/// hold-down.
pub fn engine(store: &Arc<dyn Store>) -> Engine {
    let timing = Timing {
        group_wait: Duration::from_secs(0),
        group_interval: Duration::from_secs(60),
        flap_hold_down: Duration::from_secs(0),
    };
    Engine::new(store.clone(), timing, vec!["service".into()])
}

/// A router over `store` with nothing in memory, sending on `channels`, holding what `approval`
/// (the `[approval]` table, as JSON) says, and escalating by the audiences' `policies`.
pub fn router(
    store: &Arc<dyn Store>,
    channels: &[ChannelKind],
    approval: serde_json::Value,
    policies: &Arc<BTreeMap<String, EscalationPolicy>>,
) -> Router {
    let renderer = Renderer::new(
        Path::new(""),
        &it(),
        jiff::tz::TimeZone::UTC,
        &banditore::channel::forms(),
    )
    .unwrap();
    Router::new(
        store.clone(),
        renderer,
        "https://banditore.example",
        channels.iter().copied().collect(),
        serde_json::from_value::<ApprovalSettings>(approval).unwrap(),
        Arc::new(Vec::new()),
        Arc::new(Vec::new()),
    )
    .with_escalation(policies.clone())
}

struct Desk {
    id: i64,
    /// Address ids by channel.
    addresses: BTreeMap<ChannelKind, i64>,
}

/// The engine and a router over one store, as the leader's pipeline steps them.
struct Ladder {
    store: Arc<dyn Store>,
    engine: Engine,
    router: Router,
    audiences: Arc<BTreeMap<String, EscalationPolicy>>,
}

impl Ladder {
    fn new(store: Arc<dyn Store>) -> Ladder {
        Ladder::with_audiences(store, BTreeMap::new())
    }

    fn with_audiences(
        store: Arc<dyn Store>,
        audiences: BTreeMap<String, EscalationPolicy>,
    ) -> Ladder {
        let engine = engine(&store);
        let audiences = Arc::new(audiences);
        let router = Ladder::router(&store, &audiences);
        Ladder {
            store,
            engine,
            router,
            audiences,
        }
    }

    fn router(
        store: &Arc<dyn Store>,
        audiences: &Arc<BTreeMap<String, EscalationPolicy>>,
    ) -> Router {
        router(
            store,
            &[Email, Telegram, Sms, Webhook],
            // The management's desks hear nothing the office has not approved.
            json!({"audiences": {"direzione": {"policy": "approval"}}, "notify_audience": ""}),
            audiences,
        )
    }

    /// A restart, or another replica taking the lead: a router with nothing in memory.
    fn restart(&mut self) {
        self.router = Ladder::router(&self.store, &self.audiences);
    }

    /// A desk of `audience` with one address on each of the CUP desks' four channels.
    async fn desk(&self, name: &str, audience: &str, escalation: serde_json::Value) -> Desk {
        let spec: SubscriberSpec = serde_json::from_value(serde_json::json!({
            "name": name,
            "audience": audience,
            "addresses": {
                "email": format!("{name}@asl.example"),
                "telegram": "123456789",
                "sms": "+393331234567",
                "webhook": format!("https://hooks.asl.example/{name}"),
            },
            "subscriptions": [{}],
            "escalation": escalation,
        }))
        .unwrap();
        let valid = spec.validate(&SubscriberRules::new(it())).unwrap();
        let id = self.store.create_subscriber(&valid, at(0)).await.unwrap();
        let row = self.store.subscriber(id).await.unwrap().unwrap();
        Desk {
            id,
            addresses: row.addresses.iter().map(|a| (a.channel, a.id)).collect(),
        }
    }

    /// One pipeline step at `t` seconds: route what waits, then climb what is due.
    async fn step(&self, t: i64) {
        self.engine.step(at(t)).await.unwrap();
        self.router.step(at(t)).await.unwrap();
        self.router.escalate(at(t)).await.unwrap();
    }

    async fn open(&self, t: i64) -> i64 {
        let (incident, _) = self
            .engine
            .open_manual(
                ManualIncident {
                    title: "CUP non raggiungibile".into(),
                    status: IncidentStatus::Investigating,
                    severity: banditore::domain::Severity::Major,
                    labels: Labels::from([("service".to_owned(), "cup".to_owned())]),
                    body: None,
                },
                "sala operativa",
                at(t),
            )
            .await
            .unwrap();
        self.step(t).await;
        incident.id
    }

    async fn update(&self, incident: i64, t: i64, status: Option<IncidentStatus>) {
        self.engine
            .post_update(
                incident,
                ManualUpdate {
                    status,
                    severity: None,
                    body: Some(format!("a {t} secondi")),
                },
                "sala operativa",
                at(t),
            )
            .await
            .unwrap();
        self.step(t).await;
    }

    /// The channels each update of the incident went on, in update order: (update, channel).
    async fn sent(&self, incident: i64) -> Vec<(i64, ChannelKind)> {
        let mut sent: Vec<(i64, ChannelKind)> = self
            .store
            .incident_deliveries(incident)
            .await
            .unwrap()
            .iter()
            .map(|d| (d.update_seq, d.channel))
            .collect();
        sent.sort();
        sent
    }

    async fn states(&self, incident: i64) -> Vec<(i64, EscalationState)> {
        self.store
            .escalations(incident)
            .await
            .unwrap()
            .iter()
            .map(|e| (e.step, e.state))
            .collect()
    }
}

use ChannelKind::{Email, Sms, Telegram, Webhook};

async fn without_an_acknowledgement_each_step_fires_on_time_and_the_resolution_follows_it(
    store: Arc<dyn Store>,
) {
    let ladder = Ladder::new(store);
    let desk = ladder.desk("cup-foligno", "cup", cup_policy()).await;
    assert_eq!(desk.addresses.len(), 4);
    let id = ladder.open(0).await;
    assert_eq!(ladder.sent(id).await, vec![(1, Email), (1, Telegram)]);
    assert_eq!(
        ladder.store.next_escalations(id).await.unwrap(),
        vec![NextEscalation {
            subscriber_id: desk.id,
            subscriber_name: "cup-foligno".into(),
            step: 1,
            channels: vec![Sms],
            due_at: at(300),
        }]
    );

    ladder.step(299).await;
    assert_eq!(
        ladder.sent(id).await,
        vec![(1, Email), (1, Telegram)],
        "4:59"
    );
    ladder.step(300).await;
    assert_eq!(
        ladder.sent(id).await,
        vec![(1, Email), (1, Telegram), (1, Sms)],
        "5:00: the text"
    );
    assert_eq!(
        ladder.states(id).await,
        vec![(1, EscalationState::Fired), (2, EscalationState::Waiting)]
    );
    ladder.step(301).await;
    ladder.step(599).await;
    assert_eq!(
        ladder.sent(id).await.len(),
        3,
        "one text, however often it steps"
    );
    ladder.step(600).await;
    assert_eq!(
        ladder.sent(id).await,
        vec![(1, Email), (1, Telegram), (1, Sms), (1, Webhook)]
    );
    assert!(ladder.store.next_escalations(id).await.unwrap().is_empty());

    // The resolution goes to every channel that carried a message.
    ladder.update(id, 700, Some(IncidentStatus::Resolved)).await;
    assert_eq!(
        ladder.sent(id).await,
        vec![
            (1, Email),
            (1, Telegram),
            (1, Sms),
            (1, Webhook),
            (2, Email),
            (2, Telegram),
            (2, Sms),
            (2, Webhook)
        ]
    );
}

async fn an_acknowledgement_at_three_minutes_means_no_text_ever(store: Arc<dyn Store>) {
    let ladder = Ladder::new(store);
    let desk = ladder.desk("cup-terni", "cup", cup_policy()).await;
    let id = ladder.open(0).await;
    let acked = ladder
        .store
        .acknowledge(id, desk.addresses[&Telegram], at(180))
        .await
        .unwrap();
    assert!(matches!(acked, Acknowledged::Recorded(_)), "{acked:?}");
    assert_eq!(
        ladder.states(id).await,
        vec![
            (1, EscalationState::Acknowledged),
            (2, EscalationState::Acknowledged)
        ],
        "stopped by the acknowledgement itself"
    );
    assert!(ladder.store.next_escalations(id).await.unwrap().is_empty());
    for t in [299, 300, 600, 3600] {
        ladder.step(t).await;
    }
    assert_eq!(ladder.sent(id).await, vec![(1, Email), (1, Telegram)]);
    // The resolution goes where the opening went, and nowhere else.
    ladder
        .update(id, 4000, Some(IncidentStatus::Resolved))
        .await;
    assert_eq!(
        ladder.sent(id).await,
        vec![(1, Email), (1, Telegram), (2, Email), (2, Telegram)]
    );
}

async fn a_resolution_at_three_minutes_cancels_the_text_and_goes_where_the_opening_went(
    store: Arc<dyn Store>,
) {
    let ladder = Ladder::new(store);
    ladder.desk("cup-spoleto", "cup", cup_policy()).await;
    let id = ladder.open(0).await;
    ladder.update(id, 180, Some(IncidentStatus::Resolved)).await;
    assert_eq!(
        ladder.states(id).await,
        vec![
            (1, EscalationState::Resolved),
            (2, EscalationState::Resolved)
        ]
    );
    for t in [300, 600] {
        ladder.step(t).await;
    }
    assert_eq!(
        ladder.sent(id).await,
        vec![(1, Email), (1, Telegram), (2, Email), (2, Telegram)]
    );
}

async fn a_second_update_goes_only_where_the_first_went_and_the_text_tells_the_latest(
    store: Arc<dyn Store>,
) {
    let ladder = Ladder::new(store);
    ladder.desk("cup-orvieto", "cup", cup_policy()).await;
    let id = ladder.open(0).await;
    ladder.update(id, 120, None).await;
    assert_eq!(
        ladder.sent(id).await,
        vec![(1, Email), (1, Telegram), (2, Email), (2, Telegram)]
    );
    ladder.step(300).await;
    assert_eq!(
        ladder.sent(id).await,
        vec![
            (1, Email),
            (1, Telegram),
            (2, Email),
            (2, Telegram),
            (2, Sms)
        ],
        "the text tells the incident as it stands: the latest update"
    );
    // The due time stays the first message's: a later update does not push the ladder back.
    ladder.update(id, 400, None).await;
    assert!(ladder.sent(id).await.contains(&(3, Sms)));
    assert!(!ladder.sent(id).await.contains(&(3, Webhook)));
    ladder.step(600).await;
    assert!(ladder.sent(id).await.contains(&(3, Webhook)));
}

async fn a_restart_in_the_middle_changes_nothing(store: Arc<dyn Store>) {
    let mut ladder = Ladder::new(store);
    ladder.desk("cup-narni", "cup", cup_policy()).await;
    let id = ladder.open(0).await;
    ladder.restart();
    ladder.step(299).await;
    assert_eq!(ladder.sent(id).await, vec![(1, Email), (1, Telegram)]);
    ladder.restart();
    ladder.step(300).await;
    ladder.restart();
    ladder.step(300).await;
    ladder.step(301).await;
    assert_eq!(
        ladder.sent(id).await,
        vec![(1, Email), (1, Telegram), (1, Sms)],
        "one text across restarts"
    );
    ladder.restart();
    ladder.update(id, 320, Some(IncidentStatus::Resolved)).await;
    ladder.restart();
    ladder.step(600).await;
    assert_eq!(
        ladder.sent(id).await,
        vec![
            (1, Email),
            (1, Telegram),
            (1, Sms),
            (2, Email),
            (2, Telegram),
            (2, Sms)
        ]
    );
}

async fn two_would_be_leaders_stepping_at_once_send_one_text(store: Arc<dyn Store>) {
    let ladder = Ladder::new(store);
    for i in 0..4 {
        ladder.desk(&format!("cup-{i}"), "cup", cup_policy()).await;
    }
    let id = ladder.open(0).await;
    let other = Ladder::router(&ladder.store, &ladder.audiences);
    let (mine, theirs) = tokio::join!(ladder.router.escalate(at(300)), other.escalate(at(300)));
    let (mine, theirs) = (mine.unwrap(), theirs.unwrap());
    assert_eq!(mine.fired + theirs.fired, 4, "each desk's step fired once");
    assert_eq!(
        mine.deliveries + theirs.deliveries,
        1,
        "the four desks share one number"
    );
    let texts = ladder
        .sent(id)
        .await
        .into_iter()
        .filter(|(_, c)| *c == Sms)
        .count();
    assert_eq!(texts, 1);
    assert_eq!(mine.next_due.or(theirs.next_due), Some(at(600)));
}

async fn a_step_sends_only_on_channels_the_desk_follows_the_incident_on(store: Arc<dyn Store>) {
    let ladder = Ladder::new(store);
    let spec: SubscriberSpec = serde_json::from_value(serde_json::json!({
        "name": "cup-email-only", "audience": "cup",
        "addresses": {"email": "cup@asl.example", "sms": "+393331234567"},
        "subscriptions": [{"channels": ["email"]}],
        "escalation": [{"after": "5m", "channels": ["sms"]}],
    }))
    .unwrap();
    let valid = spec.validate(&SubscriberRules::new(it())).unwrap();
    ladder.store.create_subscriber(&valid, at(0)).await.unwrap();
    let id = ladder.open(0).await;
    ladder.step(300).await;
    assert_eq!(
        ladder.states(id).await,
        vec![(0, EscalationState::Fired)],
        "the step fires"
    );
    assert_eq!(
        ladder.sent(id).await,
        vec![(1, Email)],
        "but sends no text to a desk that follows by email only"
    );
}

async fn an_audiences_policy_holds_unless_the_desk_has_its_own(store: Arc<dyn Store>) {
    let steps: Vec<EscalationStepSpec> = serde_json::from_value(serde_json::json!([
        {"after": "0s", "channels": ["email"]},
        {"after": "1m", "channels": ["sms", "telegram"]},
    ]))
    .unwrap();
    let audiences = BTreeMap::from([(
        "cup".to_owned(),
        EscalationPolicy::parse(&steps, "escalation").unwrap(),
    )]);
    let ladder = Ladder::with_audiences(store, audiences);
    let by_audience = ladder.desk("cup-a", "cup", serde_json::json!([])).await;
    let own = ladder
        .desk(
            "cup-b",
            "cup",
            serde_json::json!([{"after": "2m", "channels": ["webhook"]}]),
        )
        .await;
    ladder
        .desk("ps", "pronto-soccorso", serde_json::json!([]))
        .await;
    let id = ladder.open(0).await;
    let deliveries = ladder.store.incident_deliveries(id).await.unwrap();
    let channels_of = |name: &str| {
        let mut c: Vec<ChannelKind> = deliveries
            .iter()
            .filter(|d| d.subscriber == name)
            .map(|d| d.channel)
            .collect();
        c.sort();
        c
    };
    // The three desks share the Telegram chat and the number: each address once per message.
    assert_eq!(channels_of("cup-a"), vec![Email, Webhook], "the audience's");
    assert_eq!(channels_of("cup-b"), vec![Email, Telegram, Sms], "its own");
    assert_eq!(
        channels_of("ps"),
        vec![Email, Webhook],
        "no policy: at once (the chat and the number heard it from cup-b)"
    );
    let next = ladder.store.next_escalations(id).await.unwrap();
    assert_eq!(
        next.iter()
            .map(|n| (n.subscriber_id, n.due_at))
            .collect::<Vec<_>>(),
        vec![(by_audience.id, at(60)), (own.id, at(120))]
    );
}

/// A text held back five minutes by the policy is not a text five minutes late: its latency
/// (`banditore_signal_to_sent_seconds`) counts from the step.
async fn a_steps_delivery_counts_its_latency_from_the_step(store: Arc<dyn Store>) {
    let ladder = Ladder::new(store);
    ladder.desk("cup-orvieto", "cup", cup_policy()).await;
    ladder.open(0).await;
    ladder.step(300).await;
    let claimed = ladder
        .store
        .claim_deliveries(Sms, 10, at(301), at(400), "test")
        .await
        .unwrap();
    assert_eq!(claimed.len(), 1);
    assert_eq!(claimed[0].origin_at, at(300));
}

/// A desk moved to an audience whose messages wait for approval after its ladder started: its
/// step sends nothing, as the router would hold what it sent.
async fn a_step_never_bypasses_the_approval_of_the_desks_new_audience(store: Arc<dyn Store>) {
    let ladder = Ladder::new(store);
    let desk = ladder.desk("cup-todi", "cup", cup_policy()).await;
    let id = ladder.open(0).await;
    let edit = SubscriberEdit {
        audience: Some("direzione".into()),
        ..SubscriberEdit::default()
    };
    ladder
        .store
        .edit_subscriber(desk.id, &edit, at(60))
        .await
        .unwrap();
    ladder.step(300).await;
    assert_eq!(ladder.sent(id).await, vec![(1, Email), (1, Telegram)]);
}

/// The messages a routing step hands to the dispatchers (which then do not read them) are the
/// rows it stored, to the byte; a message held for the office is not handed over.
async fn the_messages_a_step_hands_over_are_those_it_stored(store: Arc<dyn Store>) {
    let ladder = Ladder::new(store);
    ladder.desk("cup-gubbio", "cup", cup_policy()).await;
    ladder.desk("direzione", "direzione", cup_policy()).await;
    let (incident, _) = ladder
        .engine
        .open_manual(
            ManualIncident {
                title: "CUP non raggiungibile: «prenotazioni» \u{1F6A8} <b>&</b>".into(),
                status: IncidentStatus::Investigating,
                severity: banditore::domain::Severity::Major,
                labels: Labels::from([("service".to_owned(), "cup".to_owned())]),
                body: Some("Riga uno\r\n\r\nRiga due con è, ß e 😀 <i>&amp;</i>".into()),
            },
            "sala operativa",
            at(0),
        )
        .await
        .unwrap();
    let report = ladder.router.step(at(0)).await.unwrap();
    let mut channels: Vec<ChannelKind> = report.messages.iter().map(|m| m.channel).collect();
    channels.sort();
    assert_eq!(
        channels,
        vec![Email, Telegram],
        "the desk's first step only"
    );
    for handed in &report.messages {
        let stored = ladder.store.message(handed.id).await.unwrap().unwrap();
        assert_eq!(format!("{handed:?}"), format!("{stored:?}"));
        assert_eq!(handed.audience, "cup");
    }
    assert_eq!(
        ladder.sent(incident.id).await,
        vec![(1, Email), (1, Telegram)]
    );
}

suite!(
    the_messages_a_step_hands_over_are_those_it_stored,
    without_an_acknowledgement_each_step_fires_on_time_and_the_resolution_follows_it,
    an_acknowledgement_at_three_minutes_means_no_text_ever,
    a_resolution_at_three_minutes_cancels_the_text_and_goes_where_the_opening_went,
    a_second_update_goes_only_where_the_first_went_and_the_text_tells_the_latest,
    a_restart_in_the_middle_changes_nothing,
    two_would_be_leaders_stepping_at_once_send_one_text,
    a_step_sends_only_on_channels_the_desk_follows_the_incident_on,
    an_audiences_policy_holds_unless_the_desk_has_its_own,
    a_steps_delivery_counts_its_latency_from_the_step,
    a_step_never_bypasses_the_approval_of_the_desks_new_audience,
);

/// The real binary: a desk with email at once and a text after two seconds; a monitor's outage
/// is emailed, then texted about two seconds later, and the step is counted. The safety-net poll
/// is set far beyond the step, so the text comes on time only if the pipeline wakes for it.
#[tokio::test]
async fn an_outage_is_emailed_at_once_and_texted_when_the_step_comes() {
    let smtp = SmtpServer::start();
    let double = SmsDouble::start().await;
    let app = TestApp::spawn(
        &smtp,
        &crate::sms::providers(&double, &[SmsProvider::Twilio]),
        &[
            ("BANDITORE__CHANNELS__SMS__ENABLED", "true"),
            ("BANDITORE__OUTBOX__POLL_INTERVAL", "30s"),
        ],
    )
    .await;
    let desk = "cup.foligno@asl.example";
    let id = app
        .subscribe(json!({
            "name": "CUP Foligno", "audience": "cup",
            "addresses": {"email": desk, "sms": "333 123 4567"},
            "subscriptions": [{"matchers": ["service=~\"cup.*\""]}],
            "escalation": [
                {"after": "0s", "channels": ["email"]},
                {"after": "2s", "channels": ["sms"]},
            ],
        }))
        .await;
    let shown = app
        .get_json(&format!("/api/v1/subscribers/{id}"), OPERATOR_TOKEN)
        .await;
    assert_eq!(
        shown["escalation"],
        json!([{"after": "0s", "channels": ["email"]}, {"after": "2s", "channels": ["sms"]}])
    );

    let fired = std::time::Instant::now();
    fire_alert(&app, "firing", "cup-backend", "CUP non risponde").await;
    smtp.wait_for(desk, 1, Duration::from_secs(10));
    let emailed = fired.elapsed();
    assert!(double.sent().is_empty(), "no text before its step");
    let texts = double.wait_for(1, Duration::from_secs(10)).await;
    let texted = texts[0].at.duration_since(fired);
    assert_eq!(texts[0].to, "+393331234567");
    assert!(
        texts[0].text.contains("CUP non risponde"),
        "{}",
        texts[0].text
    );
    assert!(
        texted >= Duration::from_secs(2) && texted < Duration::from_secs(8),
        "emailed after {emailed:?}, texted after {texted:?}"
    );
    eprintln!("emailed after {emailed:?}, texted after {texted:?}");
    let metrics = eventually(
        || async { app.get("/metrics", None).await.text().await.unwrap() },
        |m: &String| m.contains("banditore_escalations_total{outcome=\"fired\"} 1"),
    )
    .await;
    assert!(!metrics.contains("outcome=\"acknowledged\""));

    // The resolution goes to both: the text carried a message too.
    fire_alert(&app, "resolved", "cup-backend", "CUP non risponde").await;
    smtp.wait_for(desk, 2, Duration::from_secs(10));
    let texts = double.wait_for(2, Duration::from_secs(10)).await;
    assert!(texts[1].text.contains("RISOLTO"), "{}", texts[1].text);
}

/// A policy the API refuses names its field, and nothing is stored; one it takes is shown by the
/// API and the console, and given back to the audience's with `[]`.
#[tokio::test]
async fn a_policy_the_api_refuses_names_its_field() {
    let smtp = SmtpServer::start();
    let mut app = TestApp::spawn(&smtp, "", &[]).await;
    app.add_user("l.bianchi", "una password abbastanza lunga", "operator")
        .await;
    let desk = |escalation: serde_json::Value, audience: &str| {
        json!({
            "name": "CUP", "audience": audience,
            "addresses": {"email": "cup@asl.example"}, "escalation": escalation,
        })
    };
    for (body, field, said) in [
        (
            desk(
                json!([{"after": "5m", "channels": ["sms"]}, {"after": "1m", "channels": ["email"]}]),
                "cup",
            ),
            "escalation[1].after",
            "later than",
        ),
        (
            desk(json!([{"after": "0s", "channels": ["fax"]}]), "cup"),
            "escalation[0].channels[0]",
            "unknown channel",
        ),
        (
            desk(
                json!([{"after": "0s", "channels": ["sms"]}, {"after": "1m", "channels": ["sms"]}]),
                "cup",
            ),
            "escalation[1].channels[0]",
            "one step only",
        ),
        (
            desk(json!([{"after": "0s", "channels": []}]), "cup"),
            "escalation[0].channels",
            "at least one channel",
        ),
        (
            desk(json!([{"after": "domani", "channels": ["sms"]}]), "cup"),
            "escalation[0].after",
            "not a duration",
        ),
        (
            desk(json!([{"after": "1m", "channels": ["sms"]}]), "public"),
            "escalation",
            "never escalates",
        ),
    ] {
        let resp = app
            .post_json("/api/v1/subscribers", Some(ADMIN_TOKEN), &body)
            .await;
        assert_eq!(resp.status(), 400, "{body}");
        let answer: serde_json::Value = resp.json().await.unwrap();
        assert_eq!(answer["field"], field, "{answer}");
        assert!(answer.to_string().contains(said), "{answer}");
    }
    for body in [
        desk(
            json!([{"after": "1m", "channels": ["sms"], "repeat": true}]),
            "cup",
        ),
        desk(json!([{"after": 60, "channels": ["sms"]}]), "cup"),
        desk(json!({"after": "1m"}), "cup"),
    ] {
        let resp = app
            .post_json("/api/v1/subscribers", Some(ADMIN_TOKEN), &body)
            .await;
        assert_eq!(resp.status(), 400, "{body}");
    }
    let list = app.get_json("/api/v1/subscribers", OPERATOR_TOKEN).await;
    assert!(
        !list["subscribers"]
            .as_array()
            .unwrap()
            .iter()
            .any(|s| s["name"] == "CUP"),
        "nothing stored: {list}"
    );

    // An edit: set, shown, refused on the public audience, removed.
    let id = app.subscribe(desk(json!([]), "cup")).await;
    let path = format!("/api/v1/subscribers/{id}");
    let patch = |body: serde_json::Value| {
        app.http
            .patch(app.url(&path))
            .bearer_auth(OPERATOR_TOKEN)
            .json(&body)
            .send()
    };
    let set = patch(json!({"escalation": [{"after": "5m", "channels": ["sms"]}]}))
        .await
        .unwrap();
    assert_eq!(set.status(), 200);
    let shown: serde_json::Value = set.json().await.unwrap();
    assert_eq!(shown["escalation"][0]["after"], "5m");
    let browser = console_browser();
    console_login(&app, &browser, "l.bianchi", "una password abbastanza lunga").await;
    let html = browser
        .get(app.url(&format!("/console/subscribers/{id}")))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        html.contains("<p id=\"escalation\">Escalation finché qualcuno conferma: 5m sms</p>"),
        "{html}"
    );
    let public = patch(json!({"audience": "public"})).await.unwrap();
    assert_eq!(public.status(), 400);
    let answer: serde_json::Value = public.json().await.unwrap();
    assert_eq!(answer["field"], "escalation", "{answer}");
    let removed = patch(json!({"escalation": []})).await.unwrap();
    let shown: serde_json::Value = removed.json().await.unwrap();
    assert_eq!(shown["escalation"], json!([]));
}

/// `check-config` names every problem of the configuration's policies with its key path, and
/// takes the CUP desks' example as written.
#[test]
fn check_config_names_each_policys_problems_by_their_path() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("c.toml");
    let write = |text: &str| std::fs::write(&config, text).unwrap();
    let check = || {
        crate::cli::banditore(
            dir.path(),
            &["--config", config.to_str().unwrap(), "check-config"],
            &[],
        )
    };
    write(
        r#"
[escalation.audiences]
cup-desk = [{ after = "0s", channels = ["email", "telegram"] }, { after = "5m", channels = ["sms"] }]
public = [{ after = "1m", channels = ["sms"] }]
pronto-soccorso = [{ after = "5m", channels = ["sms"] }, { after = "2m", channels = ["fax", "sms"] }]

[[subscribers]]
name = "CUP Foligno"
audience = "cup-desk"
addresses = { email = "cup.foligno@asl.example" }
escalation = [{ after = "0s", channels = ["email"] }, { after = "presto", channels = [] }]
"#,
    );
    let (code, out, err) = check();
    assert_eq!(code, 2, "{out}{err}");
    for problem in [
        "escalation.audiences.public: the public audience never escalates",
        "escalation.audiences.pronto-soccorso[1].after: `2m` must be later than the step before it (5m)",
        "escalation.audiences.pronto-soccorso[1].channels[0]: unknown channel `fax`",
        "escalation.audiences.pronto-soccorso[1].channels[1]: `sms` is already in step 0",
        "subscribers[0].escalation[1].after: `presto` is not a duration",
        "subscribers[0].escalation[1].channels: a step needs at least one channel",
    ] {
        assert!(err.contains(problem), "missing `{problem}` in:\n{err}");
    }
    assert!(err.contains("6 problem(s)"), "{err}");
    assert!(!err.contains("cup-desk"), "the good policy passes:\n{err}");

    write(
        r#"
[escalation.audiences]
cup-desk = [{ after = "0s", channels = ["email", "telegram"] }, { after = "5m", channels = ["sms"] }, { after = "10m", channels = ["webhook"] }]
"#,
    );
    let (code, out, err) = check();
    assert_eq!(code, 0, "{out}{err}");
}
