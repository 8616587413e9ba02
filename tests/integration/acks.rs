//! Desks saying "seen", end to end with the real binary: the link in an email (its page shows a
//! button and records nothing until the button is pressed), the button under a Telegram message
//! (in polling and webhook mode), the board of who knows and the ledger.

use std::time::Duration;

use serde_json::{Value, json};

use crate::support::*;
use fantoccini::Locator;

const DESK: &str = "cup.foligno@asl.example";
const PUBLIC_URL: &str = "https://banditore.asl.example";

/// A desk following CUP at these addresses (`{"email": […], "telegram": […]}`).
async fn desk(app: &TestApp, name: &str, addresses: Value) -> i64 {
    app.subscribe(json!({
        "name": name,
        "language": "it",
        "audience": "cup-desk",
        "addresses": addresses,
        "subscriptions": [{"matchers": ["service=~\"cup.*\""]}],
    }))
    .await
}

/// The only open incident's id.
async fn incident_id(app: &TestApp) -> i64 {
    let list = app
        .get_json("/api/v1/incidents?status=open", VIEWER_TOKEN)
        .await;
    list["incidents"][0]["id"].as_i64().unwrap()
}

async fn board(app: &TestApp, incident: i64) -> Value {
    app.get_json(
        &format!("/api/v1/incidents/{incident}/acknowledgements"),
        VIEWER_TOKEN,
    )
    .await
}

/// The acknowledgement link in a mail's text: its path on the server.
fn ack_path(text: &str) -> String {
    let at = text
        .find(&format!("{PUBLIC_URL}/ack/"))
        .unwrap_or_else(|| panic!("no acknowledgement link in {text}"));
    let url: String = text[at..]
        .chars()
        .take_while(|c| !c.is_whitespace())
        .collect();
    url.trim_start_matches(PUBLIC_URL).to_owned()
}

/// One character of the token's signature changed.
fn edited(path: &str) -> String {
    let mut chars: Vec<char> = path.chars().collect();
    let last = chars.len() - 3;
    chars[last] = if chars[last] == 'A' { 'B' } else { 'A' };
    chars.into_iter().collect()
}

#[tokio::test]
async fn the_email_link_shows_a_button_and_only_its_post_acknowledges() {
    let smtp = SmtpServer::start();
    let app = TestApp::spawn(&smtp, "", &[]).await;
    desk(&app, "CUP Foligno", json!({"email": [DESK]})).await;
    fire_alert(&app, "firing", "cup-backend", "CUP backend non risponde").await;
    let mail = smtp.wait_for(DESK, 1, Duration::from_secs(10)).remove(0);
    let text = mail.text();
    assert!(
        text.contains(&format!("Confermate la ricezione: {PUBLIC_URL}/ack/")),
        "{text}"
    );
    let path = ack_path(&text);
    // Escaped as HTML escapes it (`/` as `&#x2f;`), which a browser reads back.
    let html = mail.html().replace("&#x2f;", "/");
    assert!(
        html.contains(&format!("href=\"{PUBLIC_URL}{path}\"")),
        "{html}"
    );
    let id = incident_id(&app).await;

    // GET, as a mail scanner would: the page and its button, nothing recorded.
    for _ in 0..2 {
        let page = app.get(&path, None).await;
        assert_eq!(page.status(), 200);
        assert_eq!(
            page.headers()["referrer-policy"].to_str().unwrap(),
            "no-referrer"
        );
        assert!(
            page.headers()["content-security-policy"]
                .to_str()
                .unwrap()
                .starts_with("default-src 'none'")
        );
        let html = page.text().await.unwrap();
        assert!(html.contains("CUP backend non risponde"), "{html}");
        assert!(html.contains(&format!("Incidente n. {id}")), "{html}");
        assert!(html.contains("CUP Foligno"), "{html}");
        assert!(html.contains("<form method=\"post\">"), "{html}");
    }
    let head = app.http.head(app.url(&path)).send().await.unwrap();
    assert_eq!(head.status(), 200);
    // The mail server has the message; its outcome is written a moment after.
    let before = eventually(
        || board(&app, id),
        |b: &Value| b["desks"][0]["messages"][0]["state"] == "sent",
    )
    .await;
    assert_eq!(before["desks_total"], 1);
    assert_eq!(before["desks_acknowledged"], 0);
    assert_eq!(before["desks"][0]["acknowledged"], Value::Null);
    assert_eq!(before["desks"][0]["next_escalation"], Value::Null);
    assert_eq!(before["desks"][0]["messages"][0]["state"], "sent");

    // A token edited by one character, or made for no incident, is not found either way.
    for bad in [
        edited(&path),
        "/ack/1.1.AAAAAAAAAAAAAAAAAAAAAA".to_owned(),
        format!("/ack/{}", "9".repeat(5000)),
        "/ack/..%2F..%2Fetc%2Fpasswd".to_owned(),
    ] {
        assert_eq!(app.get(&bad, None).await.status(), 404, "{bad}");
        let post = app
            .post(&bad, None, "application/x-www-form-urlencoded", "")
            .await;
        assert_eq!(post.status(), 404, "{bad}");
    }
    let huge = app
        .post(
            &path,
            None,
            "application/x-www-form-urlencoded",
            "a=".to_owned() + &"b".repeat(100 * 1024),
        )
        .await;
    assert_eq!(huge.status(), 413, "a body past 64 KiB records nothing");
    assert_eq!(board(&app, id).await["desks_acknowledged"], 0);
    let put = app.http.put(app.url(&path)).send().await.unwrap();
    assert_eq!(put.status(), 405);

    // The button: recorded, then already.
    let first = app
        .post(&path, None, "application/x-www-form-urlencoded", "")
        .await;
    assert_eq!(first.status(), 200);
    let html = first.text().await.unwrap();
    assert!(html.contains("Ricezione confermata alle"), "{html}");
    let again = app
        .post(&path, None, "application/x-www-form-urlencoded", "")
        .await;
    let html = again.text().await.unwrap();
    assert!(
        html.contains("Ricezione già confermata</strong> da cu••••••••@asl.example (email)"),
        "{html}"
    );
    let after = board(&app, id).await;
    assert_eq!(after["desks_acknowledged"], 1);
    let acked = &after["desks"][0]["acknowledged"];
    assert_eq!(acked["channel"], "email");
    assert_eq!(acked["recipient"], DESK);
    let metrics = app.get("/metrics", None).await.text().await.unwrap();
    assert!(
        metrics.contains("banditore_acknowledgements_total{channel=\"email\"} 1"),
        "{metrics}"
    );
    assert!(!app.logs().contains(path.trim_start_matches("/ack/")));

    // The resolution asks for nothing.
    fire_alert(&app, "resolved", "cup-backend", "CUP backend non risponde").await;
    let mails = smtp.wait_for(DESK, 2, Duration::from_secs(10));
    assert!(!mails[1].text().contains("/ack/"), "{}", mails[1].text());
    assert!(!mails[1].html().contains("/ack/"));
}

#[tokio::test]
async fn the_telegram_button_acknowledges_and_shows_who_saw_it() {
    telegram_button(&[]).await;
}

#[tokio::test]
async fn the_telegram_button_works_in_webhook_mode() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let listen = format!("127.0.0.1:{port}");
    let public = format!("http://127.0.0.1:{port}");
    telegram_button(&[
        ("BANDITORE__SERVER__LISTEN", &listen),
        ("BANDITORE__SERVER__PUBLIC_URL", &public),
        ("BANDITORE__CHANNELS__TELEGRAM__MODE", "webhook"),
        (
            "BANDITORE__CHANNELS__TELEGRAM__SECRET_TOKEN",
            "webhook-secret-0123456789",
        ),
    ])
    .await;
}

async fn telegram_button(env: &[(&str, &str)]) {
    let double = TelegramDouble::start().await;
    double.add_private_chat(1001, "Anna", Some("it"));
    let smtp = SmtpServer::start();
    let api = double.api_url();
    let mut all: Vec<(&str, &str)> = vec![
        ("BANDITORE__CHANNELS__TELEGRAM__ENABLED", "true"),
        ("BANDITORE__CHANNELS__TELEGRAM__TOKEN", TELEGRAM_TOKEN),
        ("BANDITORE__CHANNELS__TELEGRAM__API_URL", &api),
    ];
    all.extend_from_slice(env);
    let app = TestApp::spawn(&smtp, "", &all).await;
    desk(&app, "CUP Spoleto", json!({"telegram": ["1001"]})).await;
    fire_alert(&app, "firing", "cup-backend", "CUP backend non risponde").await;
    let sent = double.wait_for("1001", 1, Duration::from_secs(10)).await;
    let message = sent[0].message_id;
    let buttons = double.buttons(message);
    assert_eq!(buttons.len(), 1, "{buttons:?}");
    let (label, data) = buttons[0][0].clone();
    assert_eq!(label, "✅ Ricevuto");
    assert!(data.starts_with("ack:") && data.len() <= 64, "{data}");
    let id = incident_id(&app).await;

    // Forged data: answered, nothing recorded, the button left as it is.
    let forged = format!("{}B", &data[..data.len() - 1]);
    let forged = if forged == data {
        format!("{}A", &data[..data.len() - 1])
    } else {
        forged
    };
    double.press_button(1001, 1001, message, &forged).await;
    let answers = eventually(|| async { double.answers() }, |a| a.len() == 1).await;
    assert_eq!(
        answers[0].text.as_deref(),
        Some("Questo pulsante non è valido.")
    );
    assert_eq!(board(&app, id).await["desks_acknowledged"], 0);
    assert_eq!(double.buttons(message)[0][0].0, "✅ Ricevuto");

    // Anna presses it: recorded, answered, the button names her.
    double.press_button(1001, 1001, message, &data).await;
    let answers = eventually(|| async { double.answers() }, |a| a.len() == 2).await;
    assert_eq!(
        answers[1].text.as_deref(),
        Some("Grazie: ricezione confermata per lo sportello.")
    );
    let shown = eventually(
        || async { double.buttons(message) },
        |b| b[0][0].0 != "✅ Ricevuto",
    )
    .await;
    assert!(
        shown[0][0].0.starts_with("✅ Visto da Anna alle "),
        "{shown:?}"
    );
    assert_eq!(shown[0][0].1, data, "pressing again still answers");
    let after = board(&app, id).await;
    assert_eq!(after["desks_acknowledged"], 1);
    assert_eq!(after["desks"][0]["acknowledged"]["channel"], "telegram");

    // Again: answered with the record that stands; the button, which already says it, stays.
    double.press_button(1001, 1001, message, &data).await;
    let answers = eventually(|| async { double.answers() }, |a| a.len() == 3).await;
    let text = answers[2].text.clone().unwrap();
    assert!(
        text.starts_with("Ricezione già confermata (telegram) alle"),
        "{text}"
    );
    assert!(answers.iter().all(|a| {
        a.text
            .as_ref()
            .is_none_or(|t| t.chars().count() <= MAX_ANSWER_CHARS)
    }));
    let edits = double
        .requests()
        .iter()
        .filter(|r| r.method == "editmessagereplymarkup")
        .count();
    assert_eq!(edits, 1);

    // The resolution carries no button.
    fire_alert(&app, "resolved", "cup-backend", "CUP backend non risponde").await;
    let sent = double.wait_for("1001", 2, Duration::from_secs(10)).await;
    assert!(double.buttons(sent[1].message_id).is_empty());
}

#[tokio::test]
async fn the_board_and_the_ledger_answer_readers_as_json_and_csv() {
    let smtp = SmtpServer::start();
    let mut app = TestApp::spawn(&smtp, "", &[]).await;
    app.add_user("m.rossi", "una password lunga abbastanza", "viewer")
        .await;
    desk(
        &app,
        "=Alfa, \"sportello\"",
        json!({"email": ["alfa@asl.example"]}),
    )
    .await;
    desk(&app, "Beta", json!({"email": ["beta@asl.example"]})).await;
    fire_alert(&app, "firing", "cup-backend", "CUP backend non risponde").await;
    let mail = smtp
        .wait_for("beta@asl.example", 1, Duration::from_secs(10))
        .remove(0);
    smtp.wait_for("alfa@asl.example", 1, Duration::from_secs(10));
    let path = ack_path(&mail.text());
    let post = app
        .post(&path, None, "application/x-www-form-urlencoded", "")
        .await;
    assert_eq!(post.status(), 200);
    let id = incident_id(&app).await;

    let b = board(&app, id).await;
    assert_eq!(
        (b["desks_total"].clone(), b["desks_acknowledged"].clone()),
        (json!(2), json!(1))
    );
    let names: Vec<&str> = b["desks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        ["=Alfa, \"sportello\"", "Beta"],
        "still to see first"
    );

    // The console's page: the count, the desks still to see first, a reload every 10 s.
    let b = console_browser();
    let login = console_login(&app, &b, "m.rossi", "una password lunga abbastanza").await;
    assert_eq!(login.status(), 303);
    let incident_page = b
        .get(app.url(&format!("/console/incidents/{id}")))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(incident_page.contains(&format!("/console/incidents/{id}/acknowledgements")));
    let page = b
        .get(app.url(&format!("/console/incidents/{id}/acknowledgements")))
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), 200);
    let html = page.text().await.unwrap();
    assert!(html.contains("1 di 2 sportelli hanno visto"), "{html}");
    assert!(html.contains("<meta http-equiv=\"refresh\" content=\"10\">"));
    let alfa = html.find("=Alfa, &quot;sportello&quot;").expect("escaped");
    let beta = html.find("<td>Beta</td>").unwrap();
    assert!(alfa < beta, "the desk still to see comes first");
    assert!(html.contains("non ancora"));
    let missing = b
        .get(app.url("/console/incidents/999999/acknowledgements"))
        .send()
        .await
        .unwrap();
    assert_eq!(missing.status(), 404);

    let ledger_path = format!("/api/v1/incidents/{id}/ledger");
    for (token, status) in [(INGEST_TOKEN, 403), ("not-a-token", 401)] {
        for what in ["acknowledgements", "ledger"] {
            let resp = app
                .get(&format!("/api/v1/incidents/{id}/{what}"), Some(token))
                .await;
            assert_eq!(resp.status(), status, "{what}");
        }
    }
    assert_eq!(
        app.get(
            "/api/v1/incidents/999999/acknowledgements",
            Some(VIEWER_TOKEN)
        )
        .await
        .status(),
        404
    );
    assert_eq!(
        app.get("/api/v1/incidents/999999/ledger", Some(VIEWER_TOKEN))
            .await
            .status(),
        404
    );
    let bad = app
        .get(&format!("{ledger_path}?format=xlsx"), Some(VIEWER_TOKEN))
        .await;
    assert_eq!(bad.status(), 400);

    let json_ledger = app.get_json(&ledger_path, VIEWER_TOKEN).await;
    let rows = json_ledger["rows"].as_array().unwrap();
    assert_eq!(rows.len(), 2);
    let beta = rows.iter().find(|r| r["subscriber"] == "Beta").unwrap();
    assert_eq!(beta["provider"], Value::Null);
    assert_eq!(beta["state"], "sent");
    assert!(beta["sent_at"].is_string());
    assert!(beta["acknowledged_at"].is_string());
    assert_eq!(beta["audience"], "cup-desk");

    for (query, accept) in [("?format=csv", None), ("", Some("text/csv"))] {
        let mut req = app
            .http
            .get(app.url(&format!("{ledger_path}{query}")))
            .bearer_auth(VIEWER_TOKEN);
        if let Some(accept) = accept {
            req = req.header("accept", accept);
        }
        let resp = req.send().await.unwrap();
        assert_eq!(resp.status(), 200);
        assert!(
            resp.headers()["content-type"]
                .to_str()
                .unwrap()
                .starts_with("text/csv")
        );
        let csv = resp.text().await.unwrap();
        let lines: Vec<&str> = csv.split("\r\n").collect();
        assert!(lines[0].starts_with("delivery_id,update_seq,audience,channel,recipient"));
        assert_eq!(lines.len(), 4, "header, two rows, the last CRLF: {csv}");
        assert!(
            csv.contains(",\"'=Alfa, \"\"sportello\"\"\",sent,"),
            "formula neutralised, quoted: {csv}"
        );
    }
    let audit = app.get_json("/api/v1/audit", VIEWER_TOKEN).await;
    let reads = audit["entries"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["action"] == "ledger.read")
        .count();
    assert_eq!(reads, 3, "every read of the ledger is audited");
}

#[tokio::test]
async fn in_a_real_browser_the_board_refreshes_itself_and_the_link_page_works_without_scripts() {
    let Some(mut browser) = Browser::start("acknowledgements").await else {
        return;
    };
    let smtp = SmtpServer::start();
    let mut app = TestApp::spawn(&smtp, "", &[]).await;
    let password = "una password lunga abbastanza";
    app.add_user("m.rossi", password, "viewer").await;
    desk(&app, "CUP Foligno", json!({"email": [DESK]})).await;
    fire_alert(&app, "firing", "cup-backend", "CUP backend non risponde").await;
    let mail = smtp.wait_for(DESK, 1, Duration::from_secs(10)).remove(0);
    let path = ack_path(&mail.text());
    let id = incident_id(&app).await;

    let c = browser.client.clone();
    c.goto(&app.url("/console/login")).await.unwrap();
    for (field, value) in [("username", "m.rossi"), ("password", password)] {
        c.find(Locator::Id(field))
            .await
            .unwrap()
            .send_keys(value)
            .await
            .unwrap();
    }
    browser.click(Locator::Css("button[type=submit]")).await;
    c.wait()
        .for_element(Locator::Css("a[href='/console/me']"))
        .await
        .expect("signed in");
    c.goto(&app.url(&format!("/console/incidents/{id}")))
        .await
        .unwrap();
    browser
        .click(Locator::Css(&format!(
            "a[href='/console/incidents/{id}/acknowledgements']"
        )))
        .await;
    let count = c.wait().for_element(Locator::Css("p.count")).await.unwrap();
    assert_eq!(count.text().await.unwrap(), "0 di 1 sportelli hanno visto");
    browser.screenshot("nobody-yet").await;

    // The desk confirms elsewhere: the open page shows it within its 10 s, with no reload asked.
    let post = app
        .post(&path, None, "application/x-www-form-urlencoded", "")
        .await;
    assert_eq!(post.status(), 200);
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    loop {
        let text = browser.text_of("p.count").await;
        if text == "1 di 1 sportelli hanno visto" {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "still {text:?}");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    browser.screenshot("seen").await;

    // The link's page in the browser: no script, the record that stands.
    c.goto(&app.url(&path)).await.unwrap();
    let said = browser.text_of("p.ok").await;
    assert!(said.starts_with("Ricezione già confermata da cu"), "{said}");
    assert!(
        c.find(Locator::Css("form")).await.is_err(),
        "no button once done"
    );
    browser.screenshot("link-page").await;
    browser.close().await;
}
