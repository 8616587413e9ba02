//! End to end: a monitor's webhook in, an email out of a real SMTP server.

use std::time::{Duration, Instant};

use crate::support::*;
use serde_json::json;

const DESK: &str = "cup.foligno@asl.example";

async fn desk(app: &TestApp, language: &str, address: &str) -> i64 {
    app.subscribe(json!({
        "name": "CUP Foligno",
        "language": language,
        "audience": "cup-desk",
        "addresses": {"email": address},
        "subscriptions": [{"matchers": ["service=~\"cup.*\""], "min_severity": "warning"}]
    }))
    .await
}

#[tokio::test]
async fn firing_then_resolved_reaches_the_desk_in_italian() {
    let smtp = SmtpServer::start();
    let app = TestApp::spawn(&smtp, "", &[]).await;
    desk(&app, "it", DESK).await;

    let firing = alertmanager(
        "firing",
        "CupBackendDown",
        &[
            ("service", "cup-backend"),
            ("severity", "critical"),
            ("component", "db"),
        ],
        "CUP backend non risponde",
    );
    let resp = app
        .post_json("/api/v1/signals/alertmanager", Some(INGEST_TOKEN), &firing)
        .await;
    assert_eq!(resp.status(), 202);
    let body: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(body["signals"].as_array().unwrap().len(), 1);

    let mails = smtp.wait_for(DESK, 1, Duration::from_secs(10));
    let opened = &mails[0];
    assert_eq!(
        opened.subject(),
        "[Disservizio in corso] CUP backend non risponde · cup-backend"
    );
    let text = opened.text();
    assert!(text.contains("È in corso un disservizio"), "{text}");
    assert!(text.contains("Gravità:  critico"), "{text}");
    assert!(text.contains("CUP backend non risponde (db)"), "{text}");
    assert!(
        text.contains("Messaggio inviato da Banditore a CUP Foligno"),
        "{text}"
    );
    let html = opened.html();
    assert!(html.contains("<html lang=\"it\">"), "{html}");
    let unsubscribe = opened.header("List-Unsubscribe").unwrap();
    assert!(
        unsubscribe.starts_with("<https://banditore.asl.example/unsubscribe/"),
        "{unsubscribe}"
    );
    assert_eq!(
        opened.header("List-Unsubscribe-Post").as_deref(),
        Some("List-Unsubscribe=One-Click")
    );
    assert!(
        opened
            .header("Message-ID")
            .unwrap()
            .contains("@asl.example>")
    );
    assert_eq!(
        opened.header("Auto-Submitted").as_deref(),
        Some("auto-generated")
    );
    assert!(opened.header("To").unwrap().contains("CUP Foligno"));

    let resolved = alertmanager(
        "resolved",
        "CupBackendDown",
        &[
            ("service", "cup-backend"),
            ("severity", "critical"),
            ("component", "db"),
        ],
        "CUP backend non risponde",
    );
    let resp = app
        .post_json(
            "/api/v1/signals/alertmanager",
            Some(INGEST_TOKEN),
            &resolved,
        )
        .await;
    assert_eq!(resp.status(), 202);
    let mails = smtp.wait_for(DESK, 2, Duration::from_secs(10));
    assert_eq!(
        mails[1].subject(),
        "[Disservizio risolto] CUP backend non risponde · cup-backend"
    );
    assert!(mails[1].text().contains("Il disservizio è risolto"));
    assert_ne!(mails[0].header("Message-ID"), mails[1].header("Message-ID"));

    // The incident history tells the same story.
    let list = app.get_json("/api/v1/incidents", VIEWER_TOKEN).await;
    let id = list["incidents"][0]["id"].as_i64().unwrap();
    let incident = app
        .get_json(&format!("/api/v1/incidents/{id}"), VIEWER_TOKEN)
        .await;
    assert_eq!(incident["status"], "resolved");
    assert_eq!(incident["impact"], "critical");
    let kinds: Vec<_> = incident["updates"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u["kind"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(kinds, vec!["opened", "resolved"]);
    // The SMTP server may have the message a moment before its outcome is recorded.
    let path = format!("/api/v1/incidents/{id}/deliveries");
    let deliveries = eventually(
        || async { app.get_json(&path, VIEWER_TOKEN).await },
        |d| d["summary"]["email"]["sent"] == 2,
    )
    .await;
    assert_eq!(deliveries["deliveries"].as_array().unwrap().len(), 2);
}

fn cup_alert(status: &str) -> serde_json::Value {
    alertmanager(
        status,
        "CupBackendDown",
        &[
            ("service", "cup-backend"),
            ("severity", "critical"),
            ("component", "db"),
        ],
        "CUP backend non risponde",
    )
}

async fn post_alert(app: &TestApp, body: &serde_json::Value) {
    let resp = app
        .post_json("/api/v1/signals/alertmanager", Some(INGEST_TOKEN), body)
        .await;
    assert_eq!(
        resp.status(),
        202,
        "{}",
        resp.text().await.unwrap_or_default()
    );
}

/// How many deliveries of the first incident are in `state`.
async fn delivered(app: &TestApp, state: &str) -> u64 {
    let list = app.get_json("/api/v1/incidents", VIEWER_TOKEN).await;
    let Some(id) = list["incidents"]
        .as_array()
        .and_then(|l| l.last())
        .and_then(|i| i["id"].as_i64())
    else {
        return 0;
    };
    let d = app
        .get_json(&format!("/api/v1/incidents/{id}/deliveries"), VIEWER_TOKEN)
        .await;
    d["summary"]["email"][state].as_u64().unwrap_or(0)
}

#[tokio::test]
async fn english_subscribers_get_english_and_each_address_once() {
    let smtp = SmtpServer::start();
    let app = TestApp::spawn(&smtp, "", &[]).await;
    desk(&app, "en-GB", "duty.manager@asl.example").await;
    // Two subscribers sharing one mailbox: it still gets one message per update.
    desk(&app, "it", "shared@asl.example").await;
    desk(&app, "it", "shared@asl.example").await;
    post_alert(&app, &cup_alert("firing")).await;
    let mails = smtp.wait_for("duty.manager@asl.example", 1, Duration::from_secs(10));
    assert_eq!(
        mails[0].subject(),
        "[Service disruption] CUP backend non risponde · cup-backend"
    );
    assert!(
        mails[0]
            .text()
            .contains("A service disruption is under way")
    );
    assert!(mails[0].html().contains("<html lang=\"en\">"));
    smtp.wait_for("shared@asl.example", 1, Duration::from_secs(10));
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(smtp.mails_to("shared@asl.example").len(), 1);
}

#[tokio::test]
async fn the_same_payload_twice_sends_one_email() {
    let smtp = SmtpServer::start();
    let app = TestApp::spawn(&smtp, "", &[]).await;
    desk(&app, "it", DESK).await;
    post_alert(&app, &cup_alert("firing")).await;
    post_alert(&app, &cup_alert("firing")).await;
    smtp.wait_for(DESK, 1, Duration::from_secs(10));
    post_alert(&app, &cup_alert("resolved")).await;
    post_alert(&app, &cup_alert("resolved")).await;
    smtp.wait_for(DESK, 2, Duration::from_secs(10));
    // Give any duplicate time to show up.
    tokio::time::sleep(Duration::from_millis(800)).await;
    let subjects: Vec<_> = smtp.mails_to(DESK).iter().map(Mail::subject).collect();
    assert_eq!(subjects.len(), 2, "{subjects:?}");
    let incidents = app.get_json("/api/v1/incidents", VIEWER_TOKEN).await;
    assert_eq!(incidents["incidents"].as_array().unwrap().len(), 1);
}

#[tokio::test]
async fn matchers_and_minimum_severity_choose_who_hears() {
    let smtp = SmtpServer::start();
    let app = TestApp::spawn(&smtp, "", &[]).await;
    desk(&app, "it", DESK).await; // cup.*, warning or worse
    app.subscribe(json!({
        "name": "Referti", "addresses": {"email": "referti@asl.example"},
        "subscriptions": [{"matchers": ["service=\"referti\"", "area!=\"marche\""]}]
    }))
    .await;
    // Info about CUP: below the desk's threshold. Referti in Umbria: the referti office only.
    post_alert(
        &app,
        &alertmanager(
            "firing",
            "CupSlow",
            &[("service", "cup-portal"), ("severity", "info")],
            "CUP lento",
        ),
    )
    .await;
    post_alert(
        &app,
        &alertmanager(
            "firing",
            "RefertiDown",
            &[("service", "referti"), ("area", "umbria")],
            "Referti giù",
        ),
    )
    .await;
    post_alert(
        &app,
        &alertmanager(
            "firing",
            "MyCup",
            &[("service", "my-cup"), ("severity", "critical")],
            "Non CUP",
        ),
    )
    .await;
    let mails = smtp.wait_for("referti@asl.example", 1, Duration::from_secs(10));
    assert!(mails[0].subject().contains("Referti giù"));
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert!(
        smtp.mails_to(DESK).is_empty(),
        "{:?}",
        smtp.mails_to(DESK)
            .iter()
            .map(Mail::subject)
            .collect::<Vec<_>>()
    );
    // A critical CUP alert does reach the desk.
    post_alert(&app, &cup_alert("firing")).await;
    smtp.wait_for(DESK, 1, Duration::from_secs(10));
}

#[tokio::test]
async fn smtp_down_then_up_is_delivered_after_recovery() {
    let mut smtp = SmtpServer::start();
    let app = TestApp::spawn(&smtp, "", &[]).await;
    desk(&app, "it", DESK).await;
    smtp.stop();
    post_alert(&app, &cup_alert("firing")).await;
    // The send fails and is retried with backoff while the server is down.
    eventually(
        || async { app.logs() },
        |l| l.contains("delivery failed; will retry"),
    )
    .await;
    assert_eq!(delivered(&app, "sent").await, 0);
    smtp.restart();
    let mails = smtp.wait_for(DESK, 1, Duration::from_secs(15));
    assert_eq!(mails.len(), 1);
    eventually(|| delivered(&app, "sent"), |n| *n == 1).await;
}

#[tokio::test]
async fn killed_between_accept_and_send_delivers_exactly_once_after_restart() {
    let smtp = SmtpServer::start();
    // A grouping wait holds the notice back, so the process dies with the signal stored and
    // nothing sent.
    let mut app = TestApp::spawn(&smtp, "", &[("BANDITORE__ROUTING__GROUP_WAIT", "1s")]).await;
    desk(&app, "it", DESK).await;
    post_alert(&app, &cup_alert("firing")).await;
    app.kill();
    assert!(smtp.mails_to(DESK).is_empty());
    // By now the grouping wait is over: the restarted process has the notice to send at once.
    tokio::time::sleep(Duration::from_secs(1)).await;
    app.start().await;
    let listening = Instant::now();
    smtp.wait_for(DESK, 1, Duration::from_secs(15));
    let first_send = listening.elapsed();
    // The dead process's leadership lease (10 s) is not waited out: SQLite's lock file proves
    // that no other process runs. (The target is 1 s; BENCHMARKS.md has the measured figure.)
    assert!(
        first_send < Duration::from_secs(3),
        "first send {first_send:?} after the restart"
    );
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(smtp.mails_to(DESK).len(), 1);
}

#[tokio::test]
async fn killed_with_a_delivery_pending_delivers_exactly_once_after_restart() {
    let mut smtp = SmtpServer::start();
    let mut app = TestApp::spawn(
        &smtp,
        "",
        &[
            ("BANDITORE__OUTBOX__RETRY_INITIAL", "3s"),
            ("BANDITORE__OUTBOX__RETRY_MAX", "3s"),
        ],
    )
    .await;
    desk(&app, "it", DESK).await;
    smtp.stop();
    post_alert(&app, &cup_alert("firing")).await;
    eventually(
        || async { app.logs() },
        |l| l.contains("delivery failed; will retry"),
    )
    .await;
    app.kill();
    smtp.restart();
    app.start().await;
    // The pending delivery keeps its retry time across the restart and goes out when it is due.
    let mails = smtp.wait_for(DESK, 1, Duration::from_secs(15));
    assert_eq!(mails.len(), 1);
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(smtp.mails_to(DESK).len(), 1);
}

#[tokio::test]
async fn smtp_replies_decide_retry_give_up_or_gone() {
    replies_decide(SmtpServer::start(), false).await;
}

/// The same replies to commands sent in one write: each refusal decides its delivery as it did,
/// the other desks' messages (sent on fresh connections after a refusal) arrive once each.
#[tokio::test]
async fn pipelined_commands_meet_the_same_replies() {
    let smtp = SmtpServer::start_with(SmtpOptions {
        pipelining: true,
        ..SmtpOptions::default()
    });
    replies_decide(smtp, true).await;
}

/// A server that answers DATA with 354 after refusing the only recipient is in data mode: the
/// refusal still decides (gone, failed, retried) at once, not after a wait for a reply to QUIT.
#[tokio::test]
async fn a_354_after_a_refused_recipient_does_not_hold_the_refusal() {
    let smtp = SmtpServer::start_with(SmtpOptions {
        pipelining: true,
        data_despite_refusals: true,
        ..SmtpOptions::default()
    });
    replies_decide(smtp, true).await;
}

/// A relay that refuses the second EHLO asked to learn of PIPELINING still gets every message,
/// one command at a time.
#[tokio::test]
async fn a_refused_second_ehlo_means_no_pipelining() {
    let smtp = SmtpServer::start_with(SmtpOptions {
        pipelining: true,
        refuse_second_ehlo: true,
        ..SmtpOptions::default()
    });
    replies_decide(smtp, false).await;
}

async fn replies_decide(smtp: SmtpServer, pipelining: bool) {
    let app = TestApp::spawn(&smtp, "", &[]).await;
    let desks: Vec<String> = (0..12).map(|i| format!("desk{i}@asl.example")).collect();
    app.subscribe(json!({"name": "Sportelli", "addresses": {"email": desks}, "subscriptions": [{"matchers": []}]}))
        .await;
    let gone = app
        .subscribe(
            json!({"name": "Vecchio sportello", "addresses": {"email": "old@asl.example"},
        "subscriptions": [{"matchers": []}]}),
        )
        .await;
    app.subscribe(
        json!({"name": "Sportello lento", "addresses": {"email": "busy@asl.example"},
        "subscriptions": [{"matchers": []}]}),
    )
    .await;
    app.subscribe(
        json!({"name": "Filtrato", "addresses": {"email": "policy@asl.example"},
        "subscriptions": [{"matchers": []}]}),
    )
    .await;
    smtp.refuse(
        "old@asl.example",
        550,
        "5.1.1 <old@asl.example>: Recipient address rejected: User unknown",
    );
    smtp.refuse("busy@asl.example", 451, "4.7.1 Try again later");
    smtp.refuse(
        "policy@asl.example",
        554,
        "5.7.1 Message rejected by policy",
    );
    post_alert(&app, &cup_alert("firing")).await;
    eventually(|| delivered(&app, "gone"), |n| *n == 1).await;
    eventually(|| delivered(&app, "failed"), |n| *n == 1).await;
    // The 4xx recipient is retried; once the server accepts it, it is delivered.
    eventually(|| async { app.logs() }, |l| l.contains("451")).await;
    smtp.accept_again("busy@asl.example");
    smtp.wait_for("busy@asl.example", 1, Duration::from_secs(10));
    // The desks sent beside the refusals each got their message once, whole.
    for d in &desks {
        let mails = smtp.wait_for(d, 1, Duration::from_secs(10));
        assert_eq!(mails.len(), 1, "{d}");
        assert_eq!(mails[0].to, vec![d.clone()]);
        assert!(mails[0].subject().contains("cup"), "{}", mails[0].subject());
    }
    assert!(smtp.mails_to("old@asl.example").is_empty());
    assert!(smtp.mails_to("policy@asl.example").is_empty());
    assert_eq!(smtp.mails_to("busy@asl.example").len(), 1);
    assert_eq!(smtp.count(), desks.len() + 1);
    // Pipelined where the server offers it, and only there.
    if pipelining {
        assert!(smtp.pipelined() >= desks.len(), "{}", smtp.pipelined());
    } else {
        assert_eq!(smtp.pipelined(), 0);
    }
    // The gone address is marked, so the operator sees it and later incidents skip it.
    let s = app
        .get_json(&format!("/api/v1/subscribers/{gone}"), ADMIN_TOKEN)
        .await;
    assert_eq!(s["addresses"][0]["state"], "gone", "{s}");
    assert!(
        s["addresses"][0]["gone_reason"]
            .as_str()
            .unwrap()
            .contains("5.1.1")
    );
}

#[tokio::test]
async fn one_click_unsubscribe_stops_further_mail() {
    let smtp = SmtpServer::start();
    let app = TestApp::spawn(&smtp, "", &[]).await;
    let id = desk(&app, "it", DESK).await;
    post_alert(&app, &cup_alert("firing")).await;
    let mails = smtp.wait_for(DESK, 1, Duration::from_secs(10));
    let header = mails[0].header("List-Unsubscribe").unwrap();
    let link = header.trim_matches(|c| c == '<' || c == '>');
    let path = link.strip_prefix("https://banditore.asl.example").unwrap();
    // The text part carries the same link.
    assert!(mails[0].text().contains(link));

    // GET only asks for confirmation (mail scanners follow links).
    let page = app.get(path, None).await;
    assert_eq!(page.status(), 200);
    assert_eq!(page.headers()["referrer-policy"], "no-referrer");
    assert!(
        page.text()
            .await
            .unwrap()
            .contains("Conferma la disiscrizione")
    );
    let s = app
        .get_json(&format!("/api/v1/subscribers/{id}"), ADMIN_TOKEN)
        .await;
    assert_eq!(s["addresses"][0]["state"], "active");

    // The mail client's RFC 8058 one-click POST, with no cookies and no credentials.
    let resp = app
        .post(
            path,
            None,
            "application/x-www-form-urlencoded",
            "List-Unsubscribe=One-Click",
        )
        .await;
    assert_eq!(resp.status(), 200);
    assert!(
        resp.text()
            .await
            .unwrap()
            .contains("Disiscrizione completata")
    );
    let s = app
        .get_json(&format!("/api/v1/subscribers/{id}"), ADMIN_TOKEN)
        .await;
    assert_eq!(s["addresses"][0]["state"], "unsubscribed");

    // A forged token is refused; a different address id with this signature too.
    let forged = path.replacen("/unsubscribe/", "/unsubscribe/9", 1);
    assert_eq!(
        app.post(
            &forged,
            None,
            "application/x-www-form-urlencoded",
            "List-Unsubscribe=One-Click"
        )
        .await
        .status(),
        404
    );

    post_alert(&app, &cup_alert("resolved")).await;
    post_alert(
        &app,
        &alertmanager(
            "firing",
            "CupPortal",
            &[("service", "cup-portal"), ("severity", "critical")],
            "Portale giù",
        ),
    )
    .await;
    tokio::time::sleep(Duration::from_millis(1000)).await;
    assert_eq!(smtp.mails_to(DESK).len(), 1);
}

#[tokio::test]
async fn grafana_and_uptime_kuma_reach_the_desk() {
    let smtp = SmtpServer::start();
    let app = TestApp::spawn(&smtp, "", &[]).await;
    desk(&app, "it", DESK).await;
    let fixture = |p: &str| {
        std::fs::read(format!(
            "{}/tests/fixtures/ingest/{p}",
            env!("CARGO_MANIFEST_DIR")
        ))
        .unwrap()
    };
    let resp = app
        .post(
            "/api/v1/signals/grafana",
            Some(INGEST_TOKEN),
            "application/json",
            fixture("grafana/firing.json"),
        )
        .await;
    assert_eq!(resp.status(), 202);
    let mails = smtp.wait_for(DESK, 1, Duration::from_secs(10));
    assert!(
        mails[0].subject().contains("Portale CUP lento"),
        "{}",
        mails[0].subject()
    );

    let resp = app
        .post(
            "/api/v1/signals/uptime-kuma",
            Some(INGEST_TOKEN),
            "application/json",
            fixture("uptime-kuma/down.json"),
        )
        .await;
    assert_eq!(resp.status(), 202);
    // Kuma's monitor joins the open cup-portal incident: the desk is told of the change.
    let resp = app
        .post(
            "/api/v1/signals/grafana",
            Some(INGEST_TOKEN),
            "application/json",
            fixture("grafana/resolved.json"),
        )
        .await;
    assert_eq!(resp.status(), 202);
    let resp = app
        .post(
            "/api/v1/signals/uptime-kuma",
            Some(INGEST_TOKEN),
            "application/json",
            fixture("uptime-kuma/up.json"),
        )
        .await;
    assert_eq!(resp.status(), 202);
    let mails = eventually(
        || async { smtp.mails_to(DESK) },
        |m| {
            m.iter()
                .any(|m| m.subject().starts_with("[Disservizio risolto]"))
        },
    )
    .await;
    assert!(mails.len() >= 2);
}

#[tokio::test]
async fn config_subscribers_and_manual_incidents() {
    let smtp = SmtpServer::start();
    let extra = r#"
[[subscribers]]
name = "Ufficio comunicazione"
language = "it"
audience = "comms"
addresses = { email = ["comunicazione@asl.example"] }
subscriptions = [{ matchers = ['area="umbria"'], min_severity = "major" }]
"#;
    let app = TestApp::spawn(&smtp, extra, &[]).await;
    // Opening by hand needs the operator role.
    let req = json!({"title": "Rete del data centre regionale irraggiungibile", "severity": "critical",
        "labels": {"service": "cup-backend", "area": "umbria"}, "body": "Stiamo verificando con il fornitore."});
    let resp = app
        .post_json("/api/v1/incidents", Some(VIEWER_TOKEN), &req)
        .await;
    assert_eq!(resp.status(), 403);
    let resp = app
        .post_json("/api/v1/incidents", Some(OPERATOR_TOKEN), &req)
        .await;
    assert_eq!(resp.status(), 201);
    let incident: serde_json::Value = resp.json().await.unwrap();
    let id = incident["id"].as_i64().unwrap();
    let mails = smtp.wait_for("comunicazione@asl.example", 1, Duration::from_secs(10));
    assert!(
        mails[0]
            .text()
            .contains("Stiamo verificando con il fornitore."),
        "{}",
        mails[0].text()
    );

    let update = json!({"status": "identified", "body": "Guasto a un apparato di rete; intervento in corso."});
    let resp = app
        .post_json(
            &format!("/api/v1/incidents/{id}/updates"),
            Some(OPERATOR_TOKEN),
            &update,
        )
        .await;
    assert_eq!(resp.status(), 201);
    let mails = smtp.wait_for("comunicazione@asl.example", 2, Duration::from_secs(10));
    assert!(
        mails[1].text().contains("causa individuata"),
        "{}",
        mails[1].text()
    );
    assert!(
        mails[1].text().contains("sala-operativa"),
        "the author is shown: {}",
        mails[1].text()
    );

    let resp = app
        .post_json(
            &format!("/api/v1/incidents/{id}/updates"),
            Some(OPERATOR_TOKEN),
            &json!({"status": "resolved", "body": "Rete ripristinata."}),
        )
        .await;
    assert_eq!(resp.status(), 201);
    let mails = smtp.wait_for("comunicazione@asl.example", 3, Duration::from_secs(10));
    assert!(mails[2].subject().starts_with("[Disservizio risolto]"));
    // A resolved incident takes no more updates.
    let resp = app
        .post_json(
            &format!("/api/v1/incidents/{id}/updates"),
            Some(OPERATOR_TOKEN),
            &json!({"body": "ancora"}),
        )
        .await;
    assert_eq!(resp.status(), 409);
    // Config subscribers cannot be deleted through the API.
    let list = app.get_json("/api/v1/subscribers", ADMIN_TOKEN).await;
    let sid = list["subscribers"][0]["id"].as_i64().unwrap();
    assert_eq!(list["subscribers"][0]["origin"], "config");
    let resp = app
        .http
        .delete(app.url(&format!("/api/v1/subscribers/{sid}")))
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 409);
}

/// Asserts a `400` naming `field`, and the character refused in it.
async fn refused(resp: reqwest::Response, field: &str, character: &str) {
    assert_eq!(resp.status(), 400);
    let body: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(body["field"], field, "{body}");
    assert!(
        body["error"].as_str().unwrap().contains(character),
        "{body}"
    );
}

/// A name or a title is one line: a line break in one would end the header it travels in.
#[tokio::test]
async fn a_name_or_a_title_with_a_line_break_is_refused_with_the_field_named() {
    let smtp = SmtpServer::start();
    let app = TestApp::spawn(&smtp, "", &[]).await;
    let evil = json!({"name": "Evil\r\nBcc: x@y", "addresses": {"email": DESK}});
    let resp = app
        .post_json("/api/v1/subscribers", Some(ADMIN_TOKEN), &evil)
        .await;
    refused(resp, "name", "U+000D").await;
    let list = app.get_json("/api/v1/subscribers", ADMIN_TOKEN).await;
    assert_eq!(list["subscribers"].as_array().unwrap().len(), 0, "{list}");

    let open =
        |title: &str, body: &str| json!({"title": title, "severity": "critical", "body": body});
    let resp = app
        .post_json(
            "/api/v1/incidents",
            Some(OPERATOR_TOKEN),
            &open("CUP giù\r\nBcc: x@y", "Prenotazioni sospese."),
        )
        .await;
    refused(resp, "title", "U+000D").await;
    // A body may break lines, and hold nothing else of the kind.
    let resp = app
        .post_json(
            "/api/v1/incidents",
            Some(OPERATOR_TOKEN),
            &open(
                "CUP giù",
                "Prenotazioni sospese.\r\nRiprovare più tardi.\u{0}",
            ),
        )
        .await;
    refused(resp, "body", "U+0000").await;
    let resp = app
        .post_json(
            "/api/v1/incidents",
            Some(OPERATOR_TOKEN),
            &open("CUP giù", "Prenotazioni sospese.\r\nRiprovare più tardi."),
        )
        .await;
    assert_eq!(resp.status(), 201);
    let id = resp.json::<serde_json::Value>().await.unwrap()["id"]
        .as_i64()
        .unwrap();
    let resp = app
        .post_json(
            &format!("/api/v1/incidents/{id}/updates"),
            Some(OPERATOR_TOKEN),
            &json!({"body": "Ancora giù\u{1b}[2J"}),
        )
        .await;
    refused(resp, "body", "U+001B").await;
}

#[tokio::test]
async fn sigterm_finishes_cleanly() {
    let smtp = SmtpServer::start();
    let mut app = TestApp::spawn(&smtp, "", &[]).await;
    desk(&app, "it", DESK).await;
    post_alert(&app, &cup_alert("firing")).await;
    smtp.wait_for(DESK, 1, Duration::from_secs(10));
    let status = app.terminate().expect("process exits");
    assert!(status.success(), "{status:?}\n{}", app.logs());
    assert!(app.logs().contains("\"stopped\""));
}

#[tokio::test]
async fn whoever_heard_the_opening_hears_the_end_whatever_the_resolution_says() {
    let smtp = SmtpServer::start();
    let app = TestApp::spawn(&smtp, "", &[]).await;
    desk(&app, "it", DESK).await;
    // A generic sender describes the problem when it fires...
    let firing = serde_json::json!({"fingerprint": "job-42", "status": "firing", "service": "cup-backend",
        "severity": "critical", "summary": "CUP: prenotazioni bloccate"});
    let resp = app
        .post_json("/api/v1/signals/generic", Some(INGEST_TOKEN), &firing)
        .await;
    assert_eq!(resp.status(), 202);
    smtp.wait_for(DESK, 1, Duration::from_secs(10));
    // ...and only says "ok" when it resolves: no service, no severity.
    let resolved =
        serde_json::json!({"fingerprint": "job-42", "status": "resolved", "summary": "ok"});
    let resp = app
        .post_json("/api/v1/signals/generic", Some(INGEST_TOKEN), &resolved)
        .await;
    assert_eq!(resp.status(), 202);
    let mails = smtp.wait_for(DESK, 2, Duration::from_secs(10));
    assert!(
        mails[1]
            .subject()
            .starts_with("[Disservizio risolto] CUP: prenotazioni bloccate"),
        "{}",
        mails[1].subject()
    );
    // Both belong to one conversation in the desk's mail client.
    assert_eq!(mails[0].header("References"), mails[1].header("References"));
    assert!(
        mails[1]
            .header("In-Reply-To")
            .unwrap()
            .contains(".incident-")
    );
}

#[tokio::test]
async fn lowering_a_manual_incident_below_a_threshold_does_not_silence_it() {
    let smtp = SmtpServer::start();
    let app = TestApp::spawn(&smtp, "", &[]).await;
    app.subscribe(
        json!({"name": "Direzione", "addresses": {"email": "direzione@asl.example"},
        "subscriptions": [{"matchers": ["area=\"umbria\""], "min_severity": "critical"}]}),
    )
    .await;
    let req = json!({"title": "Rete regionale giù", "severity": "critical", "labels": {"area": "umbria"}});
    let resp = app
        .post_json("/api/v1/incidents", Some(OPERATOR_TOKEN), &req)
        .await;
    let id = resp.json::<serde_json::Value>().await.unwrap()["id"]
        .as_i64()
        .unwrap();
    smtp.wait_for("direzione@asl.example", 1, Duration::from_secs(10));
    let lower = json!({"severity": "warning", "body": "Servizi in parte ripristinati."});
    assert_eq!(
        app.post_json(
            &format!("/api/v1/incidents/{id}/updates"),
            Some(OPERATOR_TOKEN),
            &lower
        )
        .await
        .status(),
        201
    );
    let end = json!({"status": "resolved", "body": "Tutto ripristinato."});
    assert_eq!(
        app.post_json(
            &format!("/api/v1/incidents/{id}/updates"),
            Some(OPERATOR_TOKEN),
            &end
        )
        .await
        .status(),
        201
    );
    let mails = smtp.wait_for("direzione@asl.example", 3, Duration::from_secs(10));
    assert!(mails[2].text().contains("Tutto ripristinato."));
}
