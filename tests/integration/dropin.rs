//! PagerDuty's and Opsgenie's APIs as their senders see them: the documentation's examples,
//! changed only in URL and key, reach the desk by email and resolve; refusals come in each
//! provider's shape, naming the field.

use std::time::Duration;

use serde_json::{Value, json};

use crate::support::*;

/// The library's strangers' text, shared with its property tests.
#[path = "../../src/hostile.rs"]
#[expect(dead_code, reason = "only `text` is used here")]
pub(crate) mod hostile;

fn fixture(path: &str) -> Value {
    let bytes = std::fs::read(format!(
        "{}/tests/fixtures/ingest/{path}",
        env!("CARGO_MANIFEST_DIR")
    ))
    .unwrap();
    serde_json::from_slice(&bytes).unwrap()
}

async fn app_for(service: &str, email: &str) -> (SmtpServer, TestApp) {
    let smtp = SmtpServer::start();
    let app = TestApp::spawn(&smtp, "", &[]).await;
    app.subscribe(json!({"name": "Sala", "addresses": {"email": email}, "subscriptions": [{"matchers": [format!("service=\"{service}\"")]}]}))
        .await;
    (smtp, app)
}

async fn post(app: &TestApp, path: &str, headers: &[(&str, &str)], body: &Value) -> (u16, Value) {
    let mut req = app.http.post(app.url(path)).json(body);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let resp = req.send().await.unwrap();
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

fn with_key(mut body: Value, field: &str, key: &str) -> Value {
    body[field] = key.into();
    body
}

#[tokio::test]
async fn pagerduty_events_from_the_documentation_open_acknowledge_and_resolve() {
    let (smtp, app) = app_for("prod-datapipe", "datapipe@asl.example").await;
    let trigger = with_key(
        fixture("pagerduty/trigger.json"),
        "routing_key",
        INGEST_TOKEN,
    );
    let (status, answer) = post(&app, "/v2/enqueue", &[], &trigger).await;
    assert_eq!(status, 202, "{answer}");
    assert_eq!(
        answer,
        json!({"status": "success", "message": "Event processed", "dedup_key": "samplekeyhere"})
    );
    let mails = smtp.wait_for("datapipe@asl.example", 1, Duration::from_secs(10));
    assert!(
        mails[0]
            .text()
            .contains("Example alert on host1.example.com"),
        "{}",
        mails[0].text()
    );
    // Acknowledged: taken, and nothing changes.
    let ack = with_key(
        fixture("pagerduty/acknowledge.json"),
        "routing_key",
        INGEST_TOKEN,
    );
    let (status, answer) = post(&app, "/v2/enqueue", &[], &ack).await;
    assert_eq!(
        (status, &answer["dedup_key"]),
        (202, &json!("samplekeyhere"))
    );
    let resolve = with_key(
        fixture("pagerduty/resolve.json"),
        "routing_key",
        INGEST_TOKEN,
    );
    let (status, _) = post(&app, "/v2/enqueue", &[], &resolve).await;
    assert_eq!(status, 202);
    let mails = smtp.wait_for("datapipe@asl.example", 2, Duration::from_secs(10));
    assert!(
        mails[1].subject().starts_with("[Disservizio risolto]"),
        "{}",
        mails[1].subject()
    );
    assert_eq!(mails.len(), 2, "the acknowledgement sent nothing");
    // A trigger without a key gets one, as PagerDuty makes them.
    let mut keyless = trigger.clone();
    keyless.as_object_mut().unwrap().remove("dedup_key");
    let (status, answer) = post(&app, "/v2/enqueue", &[], &keyless).await;
    assert_eq!(status, 202);
    let made = answer["dedup_key"].as_str().unwrap();
    assert!(
        made.len() == 32 && made.chars().all(|c| c.is_ascii_hexdigit()),
        "{made}"
    );
}

#[tokio::test]
async fn pagerduty_v1_events_open_and_resolve() {
    let (smtp, app) = app_for("Sample Monitoring Service", "v1@asl.example").await;
    let path = "/generic/2010-04-15/create_event.json";
    let trigger = with_key(
        fixture("pagerduty/v1-trigger.json"),
        "service_key",
        INGEST_TOKEN,
    );
    let (status, answer) = post(&app, path, &[], &trigger).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(
        answer,
        json!({"status": "success", "message": "Event processed", "incident_key": "srv01/HTTP"})
    );
    smtp.wait_for("v1@asl.example", 1, Duration::from_secs(10));
    let resolve = with_key(
        fixture("pagerduty/v1-resolve.json"),
        "service_key",
        INGEST_TOKEN,
    );
    assert_eq!(post(&app, path, &[], &resolve).await.0, 200);
    let mails = smtp.wait_for("v1@asl.example", 2, Duration::from_secs(10));
    assert!(mails[1].subject().starts_with("[Disservizio risolto]"));
}

#[tokio::test]
async fn pagerduty_refusals_are_invalid_events_naming_the_field() {
    let smtp = SmtpServer::start();
    let app = TestApp::spawn(&smtp, "", &[]).await;
    let trigger = fixture("pagerduty/trigger.json");
    let invalid = |error: &str| json!({"status": "invalid event", "message": "Event object is invalid", "errors": [error]});
    let cases = [
        (
            trigger.clone(),
            "routing_key: is not an ingest token of this Banditore",
        ),
        (
            with_key(trigger.clone(), "routing_key", VIEWER_TOKEN),
            "routing_key: token `dashboard` may not post signals (needs the ingest role)",
        ),
        (
            with_key(
                json!({"event_action": "snooze"}),
                "routing_key",
                INGEST_TOKEN,
            ),
            "event_action: `snooze` is not one of trigger, acknowledge, resolve",
        ),
        (
            with_key(
                json!({"event_action": "resolve"}),
                "routing_key",
                INGEST_TOKEN,
            ),
            "dedup_key: missing: an acknowledgement or a resolution names the alert by its key",
        ),
        (
            with_key(
                json!({"event_action": "trigger", "payload": {"summary": "s", "source": "h", "severity": 3}}),
                "routing_key",
                INGEST_TOKEN,
            ),
            "payload.severity: `3` is not one of critical, error, warning, info",
        ),
        (
            with_key(
                json!({"event_action": "trigger", "payload": {"summary": "s", "source": "h", "severity": "fatal"}}),
                "routing_key",
                INGEST_TOKEN,
            ),
            "payload.severity: `fatal` is not one of critical, error, warning, info",
        ),
        (
            json!(["not", "an", "event"]),
            "routing_key: is not an ingest token of this Banditore",
        ),
    ];
    for (body, error) in cases {
        let (status, answer) = post(&app, "/v2/enqueue", &[], &body).await;
        assert_eq!((status, answer), (400, invalid(error)), "{body}");
    }
    let resp = app
        .post(
            "/v2/enqueue",
            None,
            "application/json",
            b"{\"routing_key\": ".to_vec(),
        )
        .await;
    assert_eq!(resp.status(), 400);
    let answer: Value = resp.json().await.unwrap();
    assert!(
        answer["errors"][0]
            .as_str()
            .unwrap()
            .contains("malformed JSON"),
        "{answer}"
    );
    let big = format!(
        "{{\"routing_key\": \"{INGEST_TOKEN}\", \"x\": \"{}\"}}",
        "x".repeat(2 << 20)
    );
    let resp = app
        .post("/v2/enqueue", None, "application/json", big.into_bytes())
        .await;
    assert_eq!(
        resp.status(),
        400,
        "PagerDuty's senders know 400, 429 and 5xx"
    );
    let answer: Value = resp.json().await.unwrap();
    assert!(
        answer["errors"][0]
            .as_str()
            .unwrap()
            .contains("larger than"),
        "{answer}"
    );
    let open = app
        .get_json("/api/v1/incidents?status=open", VIEWER_TOKEN)
        .await;
    assert!(
        open["incidents"].as_array().unwrap().is_empty(),
        "nothing refused was kept"
    );
}

#[tokio::test]
async fn opsgenie_alerts_from_the_documentation_open_and_close_by_alias() {
    let (smtp, app) = app_for("An example entity", "noc@asl.example").await;
    let genie = format!("GenieKey {INGEST_TOKEN}");
    let auth = [("Authorization", genie.as_str())];
    let (status, answer) = post(&app, "/v2/alerts", &auth, &fixture("opsgenie/create.json")).await;
    assert_eq!(status, 202, "{answer}");
    assert_eq!(answer["result"], "Request will be processed");
    assert!(answer["took"].is_f64());
    let id = answer["requestId"].as_str().unwrap();
    assert_eq!(id.len(), 36, "a UUID: {id}");
    assert_eq!(&id[14..15], "4", "a random UUID: {id}");
    let mails = smtp.wait_for("noc@asl.example", 1, Duration::from_secs(10));
    assert!(
        mails[0].text().contains("An example alert message"),
        "{}",
        mails[0].text()
    );
    let alias = "Life%20is%20too%20short%20for%20no%20alias";
    let (status, _) = post(
        &app,
        &format!("/v2/alerts/{alias}/acknowledge?identifierType=alias"),
        &auth,
        &fixture("opsgenie/close.json"),
    )
    .await;
    assert_eq!(status, 202);
    let (status, answer) = post(
        &app,
        &format!("/v2/alerts/{alias}/close?identifierType=alias"),
        &auth,
        &fixture("opsgenie/close.json"),
    )
    .await;
    assert_eq!(status, 202, "{answer}");
    let mails = smtp.wait_for("noc@asl.example", 2, Duration::from_secs(10));
    assert!(
        mails[1].subject().starts_with("[Disservizio risolto]"),
        "{}",
        mails[1].subject()
    );
}

#[tokio::test]
async fn opsgenie_refusals_come_in_opsgenies_shapes() {
    let smtp = SmtpServer::start();
    let app = TestApp::spawn(&smtp, "", &[]).await;
    let genie = format!("GenieKey {INGEST_TOKEN}");
    let viewer = format!("GenieKey {VIEWER_TOKEN}");
    let ok = [("Authorization", genie.as_str())];
    let create = fixture("opsgenie/create.json");
    let (status, answer) = post(&app, "/v2/alerts", &[], &create).await;
    assert_eq!(
        (status, &answer["message"]),
        (401, &json!("Could not authenticate"))
    );
    assert!(answer["requestId"].is_string() && answer["took"].is_number());
    let (status, _) = post(
        &app,
        "/v2/alerts",
        &[(
            "Authorization",
            "GenieKey eb243592-faa2-4ba2-a551q-1afdf565c889",
        )],
        &create,
    )
    .await;
    assert_eq!(status, 401);
    let (status, answer) = post(
        &app,
        "/v2/alerts",
        &[("Authorization", viewer.as_str())],
        &create,
    )
    .await;
    assert_eq!(status, 403);
    assert!(
        answer["message"].as_str().unwrap().contains("ingest role"),
        "{answer}"
    );
    let unprocessable = [
        (json!({"alias": "a"}), "message"),
        (json!({"message": "m", "priority": "P9"}), "priority"),
        (json!({"message": "m", "tags": "a,b"}), "tags"),
        (
            json!({"message": "m", "details": {"a": {"b": 1}}}),
            "details.a",
        ),
    ];
    for (body, field) in unprocessable {
        let (status, answer) = post(&app, "/v2/alerts", &ok, &body).await;
        assert_eq!(status, 422, "{body}: {answer}");
        assert_eq!(
            answer["message"],
            "Request body is not processable. Please check the errors."
        );
        assert!(answer["errors"][field].is_string(), "{body}: {answer}");
    }
    let (status, _) = post(
        &app,
        "/v2/alerts/x/close?identifierType=tiny",
        &ok,
        &json!({}),
    )
    .await;
    assert_eq!(status, 422);
    let resp = app
        .http
        .post(app.url("/v2/alerts"))
        .header("Authorization", genie.as_str())
        .header("content-type", "application/json")
        .body("{\"message\": ")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400, "a body that is no JSON");
    let answer: Value = resp.json().await.unwrap();
    assert!(
        answer["message"]
            .as_str()
            .unwrap()
            .contains("malformed JSON"),
        "{answer}"
    );
    let open = app
        .get_json("/api/v1/incidents?status=open", VIEWER_TOKEN)
        .await;
    assert!(
        open["incidents"].as_array().unwrap().is_empty(),
        "nothing refused was kept"
    );
}

#[tokio::test]
async fn hostile_text_in_every_field_is_taken_clean() {
    let smtp = SmtpServer::start();
    let app = TestApp::spawn(&smtp, "", &[]).await;
    app.subscribe(json!({"name": "Tutto", "addresses": {"email": "hostile@asl.example"}, "subscriptions": [{}]}))
        .await;
    let hostile = "ＣＵＰ\u{202e}\u{0007}\r\n\u{FEFF}<b>&amp;</b>\u{1F6A8}\u{FFFE}\u{2028}";
    let genie = format!("GenieKey {INGEST_TOKEN}");
    let (status, answer) = post(
        &app,
        "/v2/alerts",
        &[("Authorization", genie.as_str())],
        &json!({"message": hostile, "alias": hostile, "description": hostile, "tags": [hostile], "details": {hostile: hostile}, "entity": hostile, "source": hostile}),
    )
    .await;
    assert_eq!(status, 202, "{answer}");
    let body = json!({"routing_key": INGEST_TOKEN, "event_action": "trigger", "dedup_key": hostile,
        "payload": {"summary": hostile, "source": hostile, "severity": "critical", "component": hostile, "group": hostile, "class": hostile, "custom_details": {hostile: hostile}},
        "links": [{"href": hostile}], "client_url": hostile});
    let (status, answer) = post(&app, "/v2/enqueue", &[], &body).await;
    assert_eq!(status, 202, "{answer}");
    let mails = smtp.wait_for("hostile@asl.example", 1, Duration::from_secs(10));
    for mail in &mails {
        let unprintable = |c: char| c.is_control() && c != '\n' && c != '\r' && c != '\t';
        assert!(
            !mail.subject().chars().any(|c| c.is_control()),
            "{:?}",
            mail.subject()
        );
        assert!(!mail.text().chars().any(unprintable), "{:?}", mail.text());
        assert!(mail.text().contains("\u{1F6A8}"), "{}", mail.text());
    }
}

/// Hostile text in every field of every drop-in receiver, posted to the real binary: taken
/// (2xx) or refused in the provider's shape naming the field (4xx), never a 5xx, and a refused
/// request leaves nothing behind.
#[tokio::test]
async fn hostile_text_anywhere_is_taken_or_refused_by_field_never_a_server_error() {
    use proptest::strategy::{Strategy, ValueTree};
    let smtp = SmtpServer::start();
    let app = TestApp::spawn(&smtp, "", &[]).await;
    let mut runner = proptest::test_runner::TestRunner::deterministic();
    let texts = hostile::text();
    let mut next = || texts.new_tree(&mut runner).unwrap().current();
    let genie = format!("GenieKey {INGEST_TOKEN}");
    let mut taken = 0;
    for case in 0..32 {
        let h: Vec<String> = (0..8).map(|_| next()).collect();
        // Keys and identifiers have limits (255, 512 characters) that a long word passes.
        let key: String = h[0].chars().take(200).collect();
        let (path, headers, body): (String, Vec<(&str, &str)>, Value) = match case % 4 {
            0 => (
                "/api/v2/alerts".into(),
                vec![("Authorization", "")],
                json!([{"labels": {h[0].as_str(): h[1], "alertname": h[2]}, "annotations": {"summary": h[3], h[4].as_str(): h[5]}, "generatorURL": h[6], "startsAt": "2026-11-26T09:13:03.000Z"}]),
            ),
            1 => (
                "/v2/enqueue".into(),
                vec![],
                json!({"routing_key": INGEST_TOKEN, "event_action": "trigger", "dedup_key": key,
                    "payload": {"summary": h[1], "source": h[2], "severity": "warning", "component": h[3], "group": h[4], "class": h[5], "custom_details": {h[6].as_str(): h[7]}},
                    "links": [{"href": h[6]}], "client_url": h[7]}),
            ),
            2 => (
                "/v2/alerts".into(),
                vec![("Authorization", genie.as_str())],
                json!({"message": h[0], "alias": key, "description": h[2], "tags": [h[3]], "details": {h[4].as_str(): h[5]}, "entity": h[6], "source": h[7]}),
            ),
            _ => (
                format!("/v2/alerts/{}/close?identifierType=alias", url_escape(&key)),
                vec![("Authorization", genie.as_str())],
                json!({"note": h[1], "user": h[2], "source": h[3]}),
            ),
        };
        let mut req = app.http.post(app.url(&path)).json(&body);
        for (k, v) in headers {
            req = match v {
                "" => req.bearer_auth(INGEST_TOKEN),
                v => req.header(k, v),
            };
        }
        let resp = req.send().await.unwrap();
        let status = resp.status().as_u16();
        let answer = resp.text().await.unwrap();
        match status {
            200 | 202 => taken += 1,
            400 | 422 => assert!(
                answer.contains(':') || answer.contains("errors"),
                "{path}: {status} {answer}"
            ),
            // An identifier that is no path segment at all never reaches the receiver.
            404 if case % 4 == 3 => {}
            _ => panic!("{path}: {status} {answer} for {body}"),
        }
    }
    assert!(
        taken >= 16,
        "most hostile bodies are taken clean: {taken} of 32"
    );
    // The service is still answering, and what it keeps is printable.
    let open = app
        .get_json("/api/v1/incidents?status=open", VIEWER_TOKEN)
        .await;
    for incident in open["incidents"].as_array().unwrap() {
        let title = incident["title"].as_str().unwrap();
        assert!(!title.chars().any(char::is_control), "{title:?}");
    }
}

/// A path segment holding any text.
fn url_escape(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}
