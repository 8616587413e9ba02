//! WhatsApp through the Cloud API double: a desk gets the incident as the approved template,
//! its parameters passing WhatsApp's rules whatever the monitor wrote; signed statuses are
//! recorded (a forged one changes nothing) and the subscription handshake is answered; refusals
//! are read by Meta's codes; messages go at the number's pace, one person at most every six
//! seconds, and no more people a day than the number's limit, with the cores kept busy.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use banditore::channel::whatsapp::api::TemplateMessage;
use banditore::channel::whatsapp::params::{Parts, fit};
use proptest::prelude::*;
use serde_json::{Value, json};

use crate::support::whatsapp::*;
use crate::support::*;

/// `channels.whatsapp` as a deployment writes it, pointing at the double.
fn config(double: &WhatsAppDouble, template: &Approved, extra: &str) -> String {
    format!(
        r#"
[channels.whatsapp]
enabled = true
api_url = "{base}/"
api_version = "{WA_VERSION}"
phone_number_id = "{WA_PHONE_NUMBER_ID}"
token = "{WA_TOKEN}"
app_secret = "{WA_APP_SECRET}"
verify_token = "{WA_VERIFY_TOKEN}"
{extra}

[channels.whatsapp.templates.it]
name = "{name}"
language = "{language}"
parameters = ["title", "services", "text", "ack_url"]
body_chars = {own}
ack_button = {button}
"#,
        base = double.base,
        name = template.name,
        language = template.language,
        own = template.own_chars(),
        button = template.url_button,
    )
}

async fn app_with(double: &WhatsAppDouble, template: &Approved, extra: &str) -> TestApp {
    let smtp = SmtpServer::start();
    TestApp::spawn(&smtp, &config(double, template, extra), &[]).await
}

async fn desk(app: &TestApp, name: &str, phone: &str, services: &str) -> i64 {
    app.subscribe(json!({
        "name": name,
        "language": "it",
        "addresses": {"whatsapp": [phone]},
        "subscriptions": [{"matchers": [format!("service=~\"{services}\"")]}],
    }))
    .await
}

/// The WhatsApp deliveries of every incident, newest incident first.
async fn deliveries(app: &TestApp) -> Vec<Value> {
    let incidents = app.get_json("/api/v1/incidents", VIEWER_TOKEN).await;
    let mut out = Vec::new();
    for incident in incidents["incidents"].as_array().into_iter().flatten() {
        let id = incident["id"].as_i64().unwrap();
        let d = app
            .get_json(&format!("/api/v1/incidents/{id}/deliveries"), VIEWER_TOKEN)
            .await;
        out.extend(
            d["deliveries"]
                .as_array()
                .unwrap()
                .iter()
                .filter(|d| d["channel"] == "whatsapp")
                .cloned(),
        );
    }
    out
}

async fn post_status(app: &TestApp, body: &str, signature: Option<&str>) -> reqwest::Response {
    let mut req = app
        .http
        .post(app.url("/api/v1/callbacks/whatsapp"))
        .header("content-type", "application/json")
        .body(body.to_owned());
    if let Some(s) = signature {
        req = req.header("x-hub-signature-256", s);
    }
    req.send().await.unwrap()
}

async fn metrics(app: &TestApp) -> String {
    app.get("/metrics", None).await.text().await.unwrap()
}

#[tokio::test]
async fn a_desk_gets_the_approved_template_and_its_signed_statuses_are_recorded() {
    let template = incident_template("it", false);
    let double = WhatsAppDouble::start(options(vec![template.clone()])).await;
    let app = app_with(&double, &template, "").await;
    desk(&app, "CUP Foligno", "333 123 4567", "cup.*").await;
    fire_alert(
        &app,
        "firing",
        "cup-backend",
        "CUP\tnon risponde\n\nprenotazioni      ferme & <bloccate>",
    )
    .await;
    let sent = double.wait_for(1, Duration::from_secs(10)).await.remove(0);
    assert_eq!(sent.to, "393331234567", "the number in E.164, as digits");
    assert_eq!(sent.template, "banditore_incidente");
    assert_eq!(sent.language, "it");
    assert!(
        sent.parameters[0].starts_with("Disservizio in corso: "),
        "{:?}",
        sent.parameters
    );
    assert!(
        sent.parameters[1].contains("cup-backend"),
        "{:?}",
        sent.parameters
    );
    assert!(
        sent.parameters[2].contains("CUP non risponde prenotazioni ferme & <bloccate>"),
        "one line, its spaces collapsed: {:?}",
        sent.parameters
    );
    assert!(
        sent.parameters[3].starts_with("https://banditore.asl.example/ack/"),
        "{:?}",
        sent.parameters
    );
    eprintln!("what the desk reads:\n{}", sent.body);

    let d = eventually(
        || deliveries(&app),
        |d| d.len() == 1 && d[0]["state"] == "sent",
    )
    .await;
    assert_eq!(d[0]["provider"], "whatsapp");
    assert_eq!(d[0]["provider_id"], sent.id.as_str());

    // Statuses, signed with the app secret: delivered, then read.
    for status in ["delivered", "read"] {
        let body = status_webhook(&sent.id, &sent.to, status, None);
        let resp = post_status(&app, &body, Some(&hub_signature(WA_APP_SECRET, &body))).await;
        assert_eq!(resp.status(), 200);
        let answer: Value = resp.json().await.unwrap();
        assert_eq!(answer["recorded"], 1, "{answer}");
    }
    let d = eventually(|| deliveries(&app), |d| d[0]["report_status"] == "read").await;
    assert_eq!(d[0]["state"], "sent");

    // Forged, unsigned and signed with another secret: refused, nothing changed.
    let forged = status_webhook(
        &sent.id,
        &sent.to,
        "failed",
        Some((131026, "Message undeliverable")),
    );
    for signature in [
        None,
        Some(hub_signature("not-the-app-secret", &forged)),
        Some("sha256=00".to_owned()),
        Some(hub_signature(WA_APP_SECRET, &format!("{forged} "))),
    ] {
        let resp = post_status(&app, &forged, signature.as_deref()).await;
        assert_eq!(resp.status(), 401, "{signature:?}");
    }
    let d = deliveries(&app).await;
    assert_eq!(d[0]["report_status"], "read");
    assert!(d[0]["report_error"].is_null(), "{}", d[0]);
    assert!(
        app.logs()
            .contains("WhatsApp webhook with a missing or wrong signature"),
        "refusals are logged"
    );

    // A status about a message not sent from here is answered, not recorded.
    let other = status_webhook("wamid.unknown", &sent.to, "delivered", None);
    let resp = post_status(&app, &other, Some(&hub_signature(WA_APP_SECRET, &other))).await;
    let answer: Value = resp.json().await.unwrap();
    assert_eq!(answer["unknown"], 1, "{answer}");
    // Told just now, it may be a send whose answer is not written yet: refused, so that Meta
    // posts it again (it does so for a webhook not answered 200), and nothing recorded.
    let just_now = jiff::Timestamp::now().as_second().to_string();
    let early = other.replace("1733400000", &just_now);
    assert_ne!(early, other);
    let resp = post_status(&app, &early, Some(&hub_signature(WA_APP_SECRET, &early))).await;
    assert_eq!(resp.status(), 503);
    let d = deliveries(&app).await;
    assert_eq!(d[0]["report_status"], "read");
    // Posted again once the wamid is known, it is recorded.
    let again = status_webhook(&sent.id, &sent.to, "read", None).replace("1733400000", &just_now);
    let resp = post_status(&app, &again, Some(&hub_signature(WA_APP_SECRET, &again))).await;
    assert_eq!(resp.status(), 200);
    let answer: Value = resp.json().await.unwrap();
    assert_eq!(answer["recorded"], 1, "{answer}");

    // The subscription handshake.
    let challenge = "1158201444";
    let resp = app
        .get(
            &format!(
                "/api/v1/callbacks/whatsapp?hub.mode=subscribe&hub.verify_token={WA_VERIFY_TOKEN}&hub.challenge={challenge}"
            ),
            None,
        )
        .await;
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.text().await.unwrap(), challenge);
    let resp = app
        .get(
            &format!("/api/v1/callbacks/whatsapp?hub.mode=subscribe&hub.verify_token=wrong&hub.challenge={challenge}"),
            None,
        )
        .await;
    assert_eq!(resp.status(), 401);
    assert!(double.violations().is_empty(), "{:?}", double.violations());
    let m = metrics(&app).await;
    assert!(m.contains("banditore_whatsapp_sent_total 1"), "{m}");
}

#[tokio::test]
async fn whatever_the_monitor_writes_the_parameters_pass_whatsapps_rules() {
    // The title is the alert's summary: control characters, runs of spaces, huge words,
    // right-to-left text, emoji, nothing at all.
    let template = incident_template("it", true);
    let double = WhatsAppDouble::start(options(vec![template.clone()])).await;
    let app = app_with(&double, &template, "").await;
    for i in 0..5 {
        desk(
            &app,
            &format!("CUP {i}"),
            &format!("+39 333 123456{i}"),
            &format!("svc-{i}"),
        )
        .await;
    }
    let huge = "x".repeat(5_000);
    let summaries = [
        "\u{0}\u{7}\u{1b}[31m rosso \u{7f}\u{85}",
        "                                        ",
        &huge,
        "שלום عليكم 🚑🏥 \u{200b}\u{2028}\u{2029}",
        "a\r\nb\tc     d",
    ];
    for (i, summary) in summaries.iter().enumerate() {
        fire_alert(&app, "firing", &format!("svc-{i}"), summary).await;
    }
    let sent = double
        .wait_for(summaries.len(), Duration::from_secs(20))
        .await;
    for s in &sent {
        assert_eq!(s.parameters.len(), 4);
        assert!(
            s.body.chars().count() <= MAX_BODY,
            "{}",
            s.body.chars().count()
        );
        let button = s.button.as_deref().expect("the acknowledgement button");
        assert!(
            button.split('.').count() == 3,
            "the token the ack page takes: {button}"
        );
    }
    let refused: Vec<_> = double
        .answered()
        .into_iter()
        .filter(|a| a.status != 200)
        .collect();
    assert!(refused.is_empty(), "{refused:?}");
    // The acknowledgement button's token opens the desk's page.
    let token = sent[0].button.clone().unwrap();
    let page = app.get(&format!("/ack/{token}"), None).await;
    assert_eq!(page.status(), 200);
}

#[tokio::test]
async fn refusals_are_read_by_metas_codes() {
    let template = incident_template("it", false);
    let double = WhatsAppDouble::start(options(vec![template.clone()])).await;
    let app = app_with(&double, &template, "pair_interval = \"0s\"").await;
    desk(&app, "CUP Foligno", "333 123 4567", "cup.*").await;
    // Meta's trouble is retried; a number that is not on WhatsApp is recorded, not retried.
    double.script(&[(500, 131000), (400, 131026)]);
    fire_alert(&app, "firing", "cup-backend", "CUP non risponde").await;
    let d = eventually(
        || deliveries(&app),
        |d| d.len() == 1 && d[0]["state"] == "failed",
    )
    .await;
    assert_eq!(d[0]["attempts"], 2, "{}", d[0]);
    assert!(
        d[0]["last_error"].as_str().unwrap().contains("131026"),
        "{}",
        d[0]
    );
    assert!(double.accepted().is_empty());

    // Throughput and the pair rate: waited out, not counted as attempts.
    double.script(&[(400, 130429), (400, 131056)]);
    fire_alert(&app, "firing", "cup-frontend", "CUP lento").await;
    double.wait_for(1, Duration::from_secs(20)).await;
    let d = eventually(
        || deliveries(&app),
        |d| d.iter().any(|d| d["state"] == "sent"),
    )
    .await;
    let sent = d.iter().find(|d| d["state"] == "sent").unwrap();
    assert_eq!(sent["attempts"], 1, "{sent}");

    // The account refused as a whole (a payment problem): the channel pauses and says so,
    // the message stays pending rather than failing.
    double.script(&[(400, 131042)]);
    fire_alert(&app, "firing", "cup-db", "CUP database lento").await;
    let d = eventually(
        || deliveries(&app),
        |d| {
            d.iter().any(|d| {
                d["state"] == "pending"
                    && d["last_error"]
                        .as_str()
                        .is_some_and(|e| e.contains("131042"))
            })
        },
    )
    .await;
    assert!(
        d.iter().all(|d| d["state"] != "failed"
            || d["last_error"]
                .as_str()
                .is_some_and(|e| e.contains("131026"))),
        "{d:?}"
    );
    assert!(
        app.logs().contains("channel paused"),
        "the operators are told"
    );
}

#[tokio::test]
async fn a_template_whatsapp_does_not_know_is_refused_naming_it() {
    let approved = incident_template("it", false);
    let double = WhatsAppDouble::start(options(vec![approved.clone()])).await;
    let mut configured = approved.clone();
    configured.name = "banditore_sbagliato".into();
    let app = app_with(&double, &configured, "").await;
    desk(&app, "CUP Foligno", "333 123 4567", "cup.*").await;
    fire_alert(&app, "firing", "cup-backend", "CUP non risponde").await;
    let d = eventually(
        || deliveries(&app),
        |d| d.len() == 1 && d[0]["state"] == "failed",
    )
    .await;
    let error = d[0]["last_error"].as_str().unwrap();
    assert!(error.contains("banditore_sbagliato"), "{error}");
    assert!(error.contains("132001"), "{error}");
    assert_eq!(d[0]["attempts"], 1);
}

/// Burns every core until dropped.
struct Burners(Arc<AtomicBool>, Vec<std::thread::JoinHandle<()>>);

impl Burners {
    fn start() -> Burners {
        let busy = Arc::new(AtomicBool::new(true));
        let threads = (0..std::thread::available_parallelism().map_or(2, |n| n.get()))
            .map(|_| {
                let busy = busy.clone();
                std::thread::spawn(move || {
                    let mut x = 0u64;
                    while busy.load(Ordering::Relaxed) {
                        x = std::hint::black_box(
                            x.wrapping_mul(6364136223846793005).wrapping_add(1),
                        );
                    }
                })
            })
            .collect();
        Burners(busy, threads)
    }
}

impl Drop for Burners {
    fn drop(&mut self) {
        self.0.store(false, Ordering::Relaxed);
        for t in self.1.drain(..) {
            let _ = t.join();
        }
    }
}

#[tokio::test]
async fn messages_go_at_the_numbers_pace_and_one_person_waits_six_seconds_with_the_cores_busy() {
    let template = incident_template("it", false);
    let mut opts = options(vec![template.clone()]);
    opts.per_second = 2;
    let double = WhatsAppDouble::start(opts).await;
    let app = app_with(&double, &template, "messages_per_second = 2").await;
    for i in 0..6 {
        desk(
            &app,
            &format!("CUP {i}"),
            &format!("333 123 456{i}"),
            "cup.*",
        )
        .await;
    }
    let burners = Burners::start();
    fire_alert(&app, "firing", "cup-backend", "CUP non risponde").await;
    let sent = double.wait_for(6, Duration::from_secs(20)).await;
    // A second message to the first desk: not before six seconds after the first.
    fire_alert(&app, "firing", "cup-frontend", "CUP lento").await;
    let sent_again = double.wait_for(12, Duration::from_secs(30)).await;
    drop(burners);
    let gaps: Vec<Duration> = sent
        .windows(2)
        .map(|w| w[1].at.duration_since(w[0].at))
        .collect();
    eprintln!("six messages at two a second, {gaps:?} apart");
    let refused: Vec<_> = double
        .answered()
        .into_iter()
        .filter(|a| a.status != 200)
        .collect();
    assert!(refused.is_empty(), "no 130429 nor 131056: {refused:?}");
    for person in sent.iter().map(|s| s.to.clone()) {
        let times: Vec<_> = sent_again
            .iter()
            .filter(|s| s.to == person)
            .map(|s| s.at)
            .collect();
        assert_eq!(times.len(), 2, "{person}");
        let apart = times[1].duration_since(times[0]);
        eprintln!("{person}: second message {apart:?} after the first");
        assert!(apart >= PAIR_INTERVAL, "{person}: {apart:?}");
    }
}

#[tokio::test]
async fn past_the_daily_limit_of_people_the_rest_waits_and_the_operators_are_told() {
    let template = incident_template("it", false);
    let mut opts = options(vec![template.clone()]);
    opts.tier = 2;
    let double = WhatsAppDouble::start(opts).await;
    let app = app_with(&double, &template, "daily_recipients = 2").await;
    for i in 0..3 {
        desk(
            &app,
            &format!("CUP {i}"),
            &format!("333 123 456{i}"),
            "cup.*",
        )
        .await;
    }
    fire_alert(&app, "firing", "cup-backend", "CUP non risponde").await;
    double.wait_for(2, Duration::from_secs(10)).await;
    let m = eventually(
        || metrics(&app),
        |m| m.contains("banditore_whatsapp_daily_limit_waits_total"),
    )
    .await;
    assert!(
        m.contains("banditore_whatsapp_daily_limit_waits_total"),
        "{m}"
    );
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(double.accepted().len(), 2);
    let d = deliveries(&app).await;
    let waiting: Vec<_> = d.iter().filter(|d| d["state"] == "pending").collect();
    assert_eq!(waiting.len(), 1, "{d:?}");
    assert_eq!(waiting[0]["attempts"], 0, "a wait, not an attempt: {d:?}");
    assert!(
        app.logs()
            .contains("WhatsApp reached the number's daily limit of people"),
        "the operators are told"
    );
    assert!(double.violations().is_empty(), "{:?}", double.violations());
}

#[tokio::test]
async fn a_citizen_signs_up_by_whatsapp_with_a_code_sent_as_the_authentication_template() {
    let template = incident_template("it", false);
    // Meta's authentication templates: the code in the body and in the copy-code button.
    let code_template = Approved {
        name: "banditore_codice".into(),
        language: "it".into(),
        body: "*{{1}}* è il tuo codice di verifica.".into(),
        url_button: true,
    };
    let double = WhatsAppDouble::start(options(vec![template.clone(), code_template])).await;
    let extra = r#"code_template = "banditore_codice"

[[status.services]]
id = "cup"
name = "Prenotazioni (CUP)"
matchers = ['service=~"cup.*"']

[status.subscribe]
channels = ["whatsapp"]
"#;
    // The status sections go after the channel's; its templates table stays last.
    let config = config(&double, &template, "").replace(
        "\n[channels.whatsapp.templates.it]",
        &format!("{extra}\n[channels.whatsapp.templates.it]"),
    );
    let smtp = SmtpServer::start();
    let app = TestApp::spawn(&smtp, &config, &[]).await;
    let body = url::form_urlencoded::Serializer::new(String::new())
        .extend_pairs([
            ("channel", "whatsapp"),
            ("phone", "333 765 4321"),
            ("services", "cup"),
            ("lang", "it"),
        ])
        .finish();
    let resp = app
        .post(
            "/status/subscribe",
            None,
            "application/x-www-form-urlencoded",
            body,
        )
        .await;
    let status = resp.status().as_u16();
    let page = resp.text().await.unwrap();
    assert_eq!(status, 202, "{page}");
    let sent = double.wait_for(1, Duration::from_secs(10)).await.remove(0);
    assert_eq!(sent.template, "banditore_codice");
    assert_eq!(sent.to, "393337654321");
    let code = sent.parameters[0].clone();
    assert!(
        code.len() == 6 && code.chars().all(|c| c.is_ascii_digit()),
        "{code}"
    );
    assert_eq!(sent.button.as_deref(), Some(code.as_str()));
    let at = page.find("/status/subscribe/code/").expect("the code form");
    let action = page[at..at + page[at..].find('"').unwrap()].to_owned();
    let body = url::form_urlencoded::Serializer::new(String::new())
        .extend_pairs([("code", code.as_str()), ("lang", "it")])
        .finish();
    let resp = app
        .post(&action, None, "application/x-www-form-urlencoded", body)
        .await;
    assert_eq!(resp.status(), 200);
    let all = app.get_json("/api/v1/subscribers", ADMIN_TOKEN).await;
    let citizen = all["subscribers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["origin"] == "citizen")
        .cloned()
        .expect("the citizen");
    assert_eq!(citizen["addresses"][0]["channel"], "whatsapp", "{citizen}");
    assert_eq!(citizen["addresses"][0]["address"], "+393337654321");

    // Another code to the same number within Meta's pair rate: held back, and the form says
    // to try again in a moment rather than a generic failure.
    let body = url::form_urlencoded::Serializer::new(String::new())
        .extend_pairs([
            ("channel", "whatsapp"),
            ("phone", "333 765 4321"),
            ("services", "cup"),
            ("lang", "it"),
        ])
        .finish();
    let resp = app
        .post(
            "/status/subscribe",
            None,
            "application/x-www-form-urlencoded",
            body,
        )
        .await;
    let status = resp.status().as_u16();
    let retry_after = resp.headers().get("retry-after").cloned();
    let page = resp.text().await.unwrap();
    assert_eq!(status, 503, "{page}");
    assert!(page.contains("Riprova tra qualche secondo"), "{page}");
    let wait: u64 = retry_after
        .and_then(|v| v.to_str().ok().and_then(|v| v.parse().ok()))
        .expect("Retry-After");
    assert!((1..=6).contains(&wait), "{wait}");
    assert_eq!(double.accepted().len(), 1, "nothing more sent");
}

/// Any text at all: any character (controls, line and paragraph separators, non-characters),
/// runs of white space, huge words, nothing.
fn hostile() -> impl Strategy<Value = String> {
    proptest::collection::vec(
        prop_oneof![
            any::<char>().prop_map(String::from),
            "[ \t\n\r\u{a0}\u{2028}\u{3000}]{1,12}",
            "[a-zà-ÿ]{1,12}",
            "[a-z]{900,3000}",
            Just(String::new()),
        ],
        0..30,
    )
    .prop_map(|pieces| pieces.concat())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// Whatever a monitor, an operator or a citizen wrote — any Unicode, control characters,
    /// huge words, nothing at all — the body the channel builds is one the double, holding
    /// Meta's rules, accepts.
    #[test]
    fn every_message_the_channel_builds_passes_the_cloud_apis_rules(
        title in hostile(),
        services in hostile(),
        text in hostile(),
        name in hostile(),
        notice in any::<bool>(),
        button in any::<bool>(),
    ) {
        let approved = incident_template("it", button);
        let options = options(vec![approved.clone()]);
        // As rendered (one field a line), or an operators' notice written freely.
        let rendered = if notice {
            text.clone()
        } else {
            let line = |v: &str| v.split(|c: char| c.is_whitespace() || c.is_control())
                .filter(|w| !w.is_empty()).collect::<Vec<_>>().join(" ");
            format!("title: {}\nservices: {}\ntext: {}", line(&title), line(&services), line(&text))
        };
        let parts = Parts::read(&rendered, notice.then_some(title.as_str()));
        let values = [
            ("title", parts.title.as_str()),
            ("services", parts.services.as_str()),
            ("text", parts.text.as_str()),
            ("name", name.as_str()),
        ];
        let body = fit(&values, MAX_BODY - approved.own_chars());
        let message = TemplateMessage {
            to: "+393331234567",
            template: &approved.name,
            language: &approved.language,
            body: &body,
            button: button.then_some("42.7.Qz0MawFYytr4k7oAZNN9WA"),
        };
        let bytes = serde_json::to_vec(&message.json()).unwrap();
        let mut inner = Default::default();
        let (response, code, accepted) = answer(
            &options,
            &mut inner,
            &format!("/{WA_VERSION}/{WA_PHONE_NUMBER_ID}/messages"),
            Some(format!("Bearer {WA_TOKEN}")),
            &bytes,
            std::time::Instant::now(),
        );
        prop_assert_eq!(response.status().as_u16(), 200, "{:?} {:?}", code, body);
        let accepted = accepted.unwrap();
        prop_assert!(accepted.body.chars().count() <= MAX_BODY);
    }
}
