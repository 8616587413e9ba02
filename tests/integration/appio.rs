//! App IO: approved public statements to citizens by their codice fiscale, against a double of
//! PagoPA's API for services (`support/appio.rs`) that checks the key, the body, the lengths and
//! the rate as PagoPA documents them. The codes are sealed at rest: the database file, the log
//! and the API never show one whole.

use std::time::Duration;

use banditore::render::appio::{fit_markdown, fit_subject};
use proptest::prelude::*;
use serde_json::{Value, json};

use crate::support::appio::{
    APPIO_KEY, AppIoDouble, AppIoOptions, content_problem, fiscal_code_shape, with_check,
};
use crate::support::*;

fn allowed() -> String {
    with_check("RSSMRA85T10A562")
}

fn blocked() -> String {
    with_check("VRDGPP80A01H501")
}

fn unknown() -> String {
    with_check("BNCLRA90M41F205")
}

async fn app_for(io: &AppIoDouble, smtp: &SmtpServer) -> TestApp {
    app_at(&io.api(), smtp).await
}

async fn app_at(api: &str, smtp: &SmtpServer) -> TestApp {
    let extra = format!(
        r#"
[channels.appio]
enabled = true
base_url = "{}"
api_key = "{APPIO_KEY}"
rate_per_second = 100
burst = 10
status_every = "1s"
status_for = "1h"
"#,
        api
    );
    TestApp::spawn(smtp, &extra, &[]).await
}

async fn citizen(app: &TestApp, name: &str, code: &str) -> i64 {
    app.subscribe(json!({
        "name": name, "audience": "public", "addresses": {"appio": code},
        "subscriptions": [{"matchers": ["service=~\"cup.*\""]}],
    }))
    .await
}

/// Opens a manual incident about the CUP and approves its public draft; returns its id.
async fn announce(app: &TestApp, title: &str, body: &str) -> i64 {
    let req = json!({"title": title, "severity": "critical",
        "labels": {"service": "cup-prenotazioni"}, "body": body});
    let resp = app
        .post_json("/api/v1/incidents", Some(OPERATOR_TOKEN), &req)
        .await;
    assert_eq!(resp.status(), 201);
    let id = resp.json::<Value>().await.unwrap()["id"].as_i64().unwrap();
    let draft = app.next_draft().await;
    assert_eq!(draft["incident_id"], id);
    app.approve_draft(draft["id"].as_i64().unwrap()).await;
    id
}

async fn appio_deliveries(app: &TestApp, incident: i64) -> Vec<Value> {
    let all = app
        .get_json(
            &format!("/api/v1/incidents/{incident}/deliveries"),
            VIEWER_TOKEN,
        )
        .await;
    all["deliveries"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|d| d["channel"] == "appio")
        .cloned()
        .collect()
}

fn settled(ds: &[Value], n: usize) -> bool {
    ds.len() == n
        && ds
            .iter()
            .all(|d| d["state"] == "sent" || d["state"] == "failed")
}

#[tokio::test]
async fn a_statement_reaches_citizens_on_io_after_the_profile_check_and_its_status_is_read_back() {
    let io = AppIoDouble::start(AppIoOptions {
        accepted_reads: 1,
        ..AppIoOptions::default()
    })
    .await;
    io.add_profile(&allowed(), true);
    io.add_profile(&blocked(), false);
    let smtp = SmtpServer::start();
    let app = app_for(&io, &smtp).await;
    // Refused where it is written: no check character, not the public audience.
    let resp = app
        .post_json(
            "/api/v1/subscribers",
            Some(ADMIN_TOKEN),
            &json!({"name": "x", "audience": "public", "addresses": {"appio": "RSSMRA85T10A562A"}}),
        )
        .await;
    assert_eq!(resp.status(), 400);
    let body = resp.text().await.unwrap();
    assert!(
        body.contains("addresses.appio[0]") && body.contains("check character"),
        "{body}"
    );
    let resp = app
        .post_json(
            "/api/v1/subscribers",
            Some(ADMIN_TOKEN),
            &json!({"name": "x", "audience": "cup-desk", "addresses": {"appio": allowed()}}),
        )
        .await;
    assert_eq!(resp.status(), 400);
    let body = resp.text().await.unwrap();
    assert!(body.contains("public statements only"), "{body}");
    assert!(!body.contains(&allowed()), "{body}");

    citizen(
        &app,
        "Mario Rossi",
        &format!(" {} ", allowed().to_lowercase()),
    )
    .await;
    citizen(&app, "Giuseppe Verdi", &blocked()).await;
    citizen(&app, "Clara Bianchi", &unknown()).await;
    let incident = announce(&app, "CUP *giù* [qui](x)", "Prenotazioni sospese.").await;

    let ds = eventually(|| appio_deliveries(&app, incident), |ds| settled(ds, 3)).await;
    let messages = io.messages();
    assert_eq!(messages.len(), 1, "{messages:?}");
    let m = &messages[0];
    assert_eq!(m.fiscal_code, allowed());
    assert_eq!(content_problem(&m.subject, &m.markdown), None);
    assert!(
        m.subject.starts_with("Disservizio in corso"),
        "{}",
        m.subject
    );
    assert!(
        m.markdown.contains("Prenotazioni sospese"),
        "{}",
        m.markdown
    );
    let sent: Vec<&Value> = ds.iter().filter(|d| d["state"] == "sent").collect();
    assert_eq!(sent.len(), 1, "{ds:?}");
    assert_eq!(sent[0]["provider_id"], m.id.as_str());
    for d in ds.iter().filter(|d| d["state"] == "failed") {
        assert_eq!(d["attempts"], 1, "{d}");
        let error = d["last_error"].as_str().unwrap();
        assert!(
            error.contains("not on App IO or has turned this service off"),
            "{error}"
        );
    }
    // The citizens' own choice is no fault: logged at info as declined, not as a failure.
    let logs = app.logs();
    assert_eq!(
        logs.matches("the recipient does not take messages on this channel")
            .count(),
        2,
        "{logs}"
    );
    assert!(!logs.contains("delivery failed for good"), "{logs}");
    // The status is read back until it is final.
    let ds = eventually(
        || appio_deliveries(&app, incident),
        |ds| ds.iter().any(|d| d["report_status"] == "processed"),
    )
    .await;
    assert_eq!(
        ds.iter()
            .filter(|d| d["report_status"] == "processed")
            .count(),
        1
    );
    let reads = |io: &AppIoDouble| io.requests().iter().filter(|r| r.method == "GET").count();
    let after_final = reads(&io);
    assert!(after_final >= 2, "ACCEPTED, then PROCESSED");
    // Not tried again: neither the refused citizens nor a final status.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(reads(&io), after_final, "a final status is not asked again");
    let requests = io.requests();
    for code in [blocked(), unknown()] {
        let asked = requests
            .iter()
            .filter(|r| r.path == "/api/v1/profiles" && r.body.contains(&code))
            .count();
        assert_eq!(asked, 1, "{code} asked {asked} times");
    }
    let order: Vec<&str> = requests
        .iter()
        .filter(|r| r.body.contains(&allowed()) && r.method == "POST")
        .map(|r| r.path.as_str())
        .collect();
    assert_eq!(order, ["/api/v1/profiles", "/api/v1/messages"]);

    // No whole code in the database file, the log or the API.
    let subscribers = app
        .get("/api/v1/subscribers", Some(ADMIN_TOKEN))
        .await
        .text()
        .await
        .unwrap();
    let ledger = app
        .get(
            &format!("/api/v1/incidents/{incident}/deliveries"),
            Some(ADMIN_TOKEN),
        )
        .await
        .text()
        .await
        .unwrap();
    assert!(
        ledger.contains("cf1."),
        "the recipient is the sealed code: {ledger}"
    );
    let mut files = Vec::new();
    for entry in std::fs::read_dir(app.dir.path()).unwrap() {
        let path = entry.unwrap().path();
        if path.to_string_lossy().contains("banditore.db") {
            files.push(std::fs::read(&path).unwrap());
        }
    }
    assert!(!files.is_empty());
    let logs = app.logs();
    for code in [allowed(), blocked(), unknown()] {
        for (what, text) in [
            ("log", &logs),
            ("subscribers", &subscribers),
            ("ledger", &ledger),
        ] {
            assert!(!text.contains(&code), "{code} in the {what}");
        }
        for bytes in &files {
            assert!(
                !bytes.windows(code.len()).any(|w| w == code.as_bytes()),
                "{code} in the database"
            );
        }
    }
}

#[tokio::test]
async fn throttled_messages_wait_and_go_once_each() {
    // Three requests a second at PagoPA, a hundred on our side: 429s, no loss, no duplicate.
    let io = AppIoDouble::start(AppIoOptions {
        rate_per_second: Some(3),
        ..AppIoOptions::default()
    })
    .await;
    let codes: Vec<String> = [
        "RSSMRA85T10A56",
        "VRDGPP80A01H50",
        "BNCLRA90M41F20",
        "FRRLCU75C12D61",
    ]
    .iter()
    .map(|p| with_check(&format!("{p}1")))
    .collect();
    for code in &codes {
        io.add_profile(code, true);
    }
    let smtp = SmtpServer::start();
    let app = app_for(&io, &smtp).await;
    for (i, code) in codes.iter().enumerate() {
        citizen(&app, &format!("Cittadino {i}"), code).await;
    }
    // A body at the longest an operator may write, which the template makes longer than App
    // IO's 10,000 characters, ending in a huge word.
    let body = format!("{} {}", "parola ".repeat(1400).trim_end(), "x".repeat(190));
    assert_eq!(body.chars().count(), 9_990);
    let incident = announce(&app, "CUP non raggiungibile", &body).await;
    // Each 429 defers a send by its back-off: with the cores shared, four can take over 10 s.
    let ds = eventually_within(
        Duration::from_secs(30),
        || async {
            tokio::time::sleep(Duration::from_millis(200)).await;
            appio_deliveries(&app, incident).await
        },
        |ds| settled(ds, 4),
    )
    .await;
    assert!(ds.iter().all(|d| d["state"] == "sent"), "{ds:?}");
    assert!(io.throttled() > 0, "the double's rate was exceeded");
    let messages = io.messages();
    let mut to: Vec<&str> = messages.iter().map(|m| m.fiscal_code.as_str()).collect();
    to.sort_unstable();
    to.dedup();
    assert_eq!((messages.len(), to.len()), (4, 4), "once each");
    for m in &messages {
        assert_eq!(content_problem(&m.subject, &m.markdown), None);
        // Cut at a word before the footer, whose link to the status page stays whole.
        let (head, footer) = m.markdown.rsplit_once("\n\n").unwrap();
        assert!(head.ends_with('…'), "cut at a word");
        assert!(
            footer.starts_with("Aggiornamenti sulla pagina di stato: http")
                && footer.contains(&format!("/incidents/{incident}")),
            "{footer}"
        );
    }
}

#[tokio::test]
async fn the_double_holds_app_io_s_lengths_at_their_edges() {
    let io = AppIoDouble::start(AppIoOptions::default()).await;
    let code = allowed();
    io.add_profile(&code, true);
    let http = reqwest::Client::new();
    let post = |subject: String, markdown: String, key: &'static str| {
        let http = http.clone();
        let url = format!("{}/messages", io.api());
        let code = code.clone();
        async move {
            let resp = http
                .post(url)
                .header("Ocp-Apim-Subscription-Key", key)
                .json(&json!({"fiscal_code": code, "content": {"subject": subject, "markdown": markdown}}))
                .send()
                .await
                .unwrap();
            let status = resp.status().as_u16();
            (status, resp.json::<Value>().await.unwrap_or(Value::Null))
        }
    };
    let md = "m".repeat(80);
    for (n, ok) in [(9, false), (10, true), (120, true), (121, false)] {
        let (status, body) = post("s".repeat(n), md.clone(), APPIO_KEY).await;
        assert_eq!(status, if ok { 201 } else { 400 }, "subject of {n}: {body}");
        if !ok {
            assert!(
                body["detail"].as_str().unwrap().contains("subject"),
                "{body}"
            );
        }
    }
    for (n, ok) in [(79, false), (80, true), (10_000, true), (10_001, false)] {
        let (status, body) = post("s".repeat(10), "m".repeat(n), APPIO_KEY).await;
        assert_eq!(
            status,
            if ok { 201 } else { 400 },
            "markdown of {n}: {body}"
        );
        if !ok {
            assert!(
                body["detail"].as_str().unwrap().contains("markdown"),
                "{body}"
            );
        }
    }
    let (status, _) = post("s".repeat(10), md.clone(), "wrong-key").await;
    assert_eq!(status, 401);
    // What Banditore fits at each edge is what App IO takes.
    for n in [0, 9, 10, 120, 121, 79, 80, 10_000, 10_001] {
        let text = "a".repeat(n);
        let (subject, markdown) = (fit_subject(&text, "it"), fit_markdown(&text, "it"));
        assert_eq!(content_problem(&subject, &markdown), None, "{n}");
        let (status, body) = post(subject, markdown, APPIO_KEY).await;
        assert_eq!(status, 201, "{n}: {body}");
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// Whatever a monitor or an operator writes as the title and the text, the subject and the
    /// body Banditore sends are within App IO's lengths as the double counts them.
    #[test]
    fn arbitrary_incident_texts_always_fit(
        title in any::<String>(),
        text in prop_oneof![any::<String>(), "(\\PC{0,40}[ \n\t\r\u{0}-\u{1f}]?){0,400}", ".{9000,11000}"],
        language in "(it|en)",
    ) {
        let subject = fit_subject(&format!("Disservizio in corso: {title}"), &language);
        let markdown = fit_markdown(&text, &language);
        prop_assert_eq!(content_problem(&subject, &markdown), None);
        let bare = fit_subject(&title, &language);
        prop_assert_eq!(content_problem(&bare, &markdown), None);
    }

    /// The double reads a codice fiscale by PagoPA's pattern: every code Banditore accepts fits it.
    #[test]
    fn every_code_banditore_reads_fits_pagopa_s_pattern(raw in "[A-Za-z0-9 ]{14,18}") {
        if let Ok(code) = banditore::domain::fiscal_code::FiscalCode::parse(&raw) {
            prop_assert!(fiscal_code_shape(code.as_str()));
        }
    }
}

#[test]
fn check_config_names_every_problem_of_the_section_with_its_path() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("banditore.toml");
    std::fs::write(
        &config,
        r#"
[approval.audiences.public]
policy = "auto"

[channels.appio]
enabled = true
base_url = "api.io.pagopa.it"
rate_per_second = 0
burst = 0
concurrency = 0
timeout = "0s"
status_every = "0s"
status_for = "8d"

[[subscribers]]
name = "Errore di battitura"
audience = "public"
addresses = { appio = "RSSMRA85T10A562A" }

[[subscribers]]
name = "Sportello"
audience = "cup-desk"
addresses = { appio = "RSSMRA85T10A562S" }
"#,
    )
    .unwrap();
    let (code, out, err) = crate::cli::banditore(
        dir.path(),
        &["--config", config.to_str().unwrap(), "check-config"],
        &[],
    );
    assert_eq!(code, 2, "{out}{err}");
    let said = format!("{out}{err}");
    for path in [
        "channels.appio.enabled",
        "channels.appio.base_url",
        "channels.appio.api_key",
        "channels.appio.rate_per_second",
        "channels.appio.burst",
        "channels.appio.concurrency",
        "channels.appio.timeout",
        "channels.appio.status_every",
        "channels.appio.status_for",
        "subscribers[0].addresses.appio[0]",
        "subscribers[1].addresses.appio",
    ] {
        assert!(said.contains(path), "{path} not named:\n{said}");
    }
    assert!(
        !said.contains("RSSMRA85T10A562"),
        "a code repeated:\n{said}"
    );
}

#[tokio::test]
async fn refusals_are_told_apart_retried_failed_or_paused() {
    let io = AppIoDouble::start(AppIoOptions::default()).await;
    io.add_profile(&allowed(), true);
    let smtp = SmtpServer::start();
    let app = app_for(&io, &smtp).await;
    citizen(&app, "Mario Rossi", &allowed()).await;
    // A 503, then a 400 naming the problem: tried again, then failed with PagoPA's words.
    io.script(&[503, 400]);
    let first = announce(&app, "CUP lento", "Attese lunghe.").await;
    let ds = eventually(|| appio_deliveries(&app, first), |ds| settled(ds, 1)).await;
    assert_eq!(ds[0]["state"], "failed", "{ds:?}");
    assert_eq!(ds[0]["attempts"], 2, "{ds:?}");
    let error = ds[0]["last_error"].as_str().unwrap();
    assert!(
        error.contains("400") && error.contains("Scripted failure"),
        "{error}"
    );
    assert!(io.messages().is_empty());
    // The key refused: the channel waits, and sends once the key works again.
    io.revoke(true);
    let second = announce(&app, "CUP fermo", "Servizio sospeso.").await;
    let ds = eventually(
        || appio_deliveries(&app, second),
        |ds| {
            ds.first()
                .and_then(|d| d["last_error"].as_str())
                .is_some_and(|e| e.contains("channels.appio.api_key"))
        },
    )
    .await;
    assert_eq!(ds[0]["state"], "pending", "{ds:?}");
    io.revoke(false);
    let ds = eventually(|| appio_deliveries(&app, second), |ds| settled(ds, 1)).await;
    assert_eq!(ds[0]["state"], "sent", "{ds:?}");
    assert_eq!(io.messages().len(), 1);
}

#[tokio::test]
async fn a_taken_message_is_final_a_forbidden_recipient_fails_and_a_wrong_address_pauses() {
    let io = AppIoDouble::start(AppIoOptions::default()).await;
    io.add_profile(&allowed(), true);
    io.add_profile(&blocked(), true);
    io.forbid(&blocked());
    let smtp = SmtpServer::start();
    let app = app_for(&io, &smtp).await;
    citizen(&app, "Mario Rossi", &allowed()).await;
    citizen(&app, "Giuseppe Verdi", &blocked()).await;
    // A 201 whose body names nothing: the message is sent, once, named by its `Location`; the
    // recipient a sandbox key may not write to fails alone, and the channel goes on.
    io.bare_created(1);
    let first = announce(&app, "CUP lento", "Attese lunghe.").await;
    let ds = eventually(|| appio_deliveries(&app, first), |ds| settled(ds, 2)).await;
    let messages = io.messages();
    assert_eq!(messages.len(), 1, "{messages:?}");
    let sent: Vec<&Value> = ds.iter().filter(|d| d["state"] == "sent").collect();
    assert_eq!(sent.len(), 1, "{ds:?}");
    assert_eq!(sent[0]["attempts"], 1, "{ds:?}");
    assert_eq!(sent[0]["provider_id"], messages[0].id.as_str());
    let failed: Vec<&Value> = ds.iter().filter(|d| d["state"] == "failed").collect();
    assert_eq!(failed.len(), 1, "{ds:?}");
    assert_eq!(failed[0]["attempts"], 1);
    let error = failed[0]["last_error"].as_str().unwrap();
    assert!(
        error.contains("403") && error.contains("Recipient forbidden"),
        "{error}"
    );
    // A key without scopes: a 403 about the key pauses the channel until it works again.
    io.unscope(true);
    let second = announce(&app, "CUP fermo", "Servizio sospeso.").await;
    let ds = eventually(
        || appio_deliveries(&app, second),
        |ds| {
            ds.iter().any(|d| {
                d["last_error"]
                    .as_str()
                    .is_some_and(|e| e.contains("User has no valid scopes"))
            })
        },
    )
    .await;
    assert!(ds.iter().all(|d| d["state"] == "pending"), "{ds:?}");
    io.unscope(false);
    let ds = eventually(|| appio_deliveries(&app, second), |ds| settled(ds, 2)).await;
    assert_eq!(
        ds.iter().filter(|d| d["state"] == "sent").count(),
        1,
        "{ds:?}"
    );
    assert_eq!(io.messages().len(), 2);

    // A wrong `base_url`: the gateway's 404 is no citizen's absence; the channel pauses, and
    // nobody is failed for good.
    let wrong = AppIoDouble::start(AppIoOptions::default()).await;
    wrong.add_profile(&allowed(), true);
    let lost = app_at(&format!("{}/io/v1", wrong.base), &smtp).await;
    citizen(&lost, "Mario Rossi", &allowed()).await;
    let third = announce(&lost, "CUP lento", "Attese lunghe.").await;
    let ds = eventually(
        || appio_deliveries(&lost, third),
        |ds| {
            ds.first()
                .and_then(|d| d["last_error"].as_str())
                .is_some_and(|e| e.contains("channels.appio.base_url"))
        },
    )
    .await;
    assert_eq!(ds[0]["state"], "pending", "{ds:?}");
    let error = ds[0]["last_error"].as_str().unwrap();
    assert!(error.contains("Resource not found"), "{error}");
    assert!(wrong.messages().is_empty());
}
