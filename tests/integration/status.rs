//! The public status board: each service's state from its open incidents, no internal text,
//! maintenance, history, and the JSON API with CORS and ETags. (Approved statements on the board
//! are checked with the social posts they come from, in `social.rs`.)

use serde_json::{Value, json};

use crate::support::*;

fn config() -> String {
    let now = jiff::Timestamp::now();
    // The nightly window starts twelve hours from now, so it never covers the test, whatever the
    // hour the suite runs.
    let nightly = now
        .in_tz("Europe/Rome")
        .expect("the time zone database has Europe/Rome")
        .saturating_add(jiff::SignedDuration::from_hours(12))
        .strftime("%H:%M");
    format!(
        r#"
[[status.services]]
id = "cup"
name = "Prenotazioni (CUP)"
name_en = "Bookings (CUP)"
matchers = ['service=~"cup.*"']

[[status.services]]
id = "referti"
name = "Referti online"
name_en = "Medical reports"
matchers = ['service="referti"']

[[status.services]]
id = "portale"
name = "Portale sanità"
matchers = ['service="portale"']

[[maintenance]]
name = "Migrazione referti"
matchers = ['service="referti"']
starts_at = "{}"
ends_at = "{}"

[[maintenance]]
name = "Aggiornamento notturno CUP (change 4411)"
matchers = ['service=~"cup.*"']
every = "daily"
at = "{}"
duration = "1h"
time_zone = "Europe/Rome"
public = {{ note = "Le prenotazioni online non sono disponibili.", note_en = "Online booking is unavailable.", services = ["cup"] }}

[[subscribers]]
name = "Cittadini"
audience = "public"
addresses = {{ email = "cittadini@lista.example" }}
subscriptions = [{{ matchers = [] }}]
"#,
        now - jiff::SignedDuration::from_hours(1),
        now + jiff::SignedDuration::from_hours(1),
        nightly,
    )
}

async fn status(app: &TestApp) -> Value {
    app.get_json("/api/v1/status", VIEWER_TOKEN).await
}

fn service<'a>(board: &'a Value, id: &str) -> &'a Value {
    board["services"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["id"] == id)
        .unwrap()
}

#[tokio::test]
async fn services_show_their_incidents_and_only_approved_text_is_public() {
    let smtp = SmtpServer::start();
    let app = TestApp::spawn(&smtp, &config(), &[]).await;
    let board = status(&app).await;
    assert_eq!(board["overall"], "operational");
    assert_eq!(
        service(&board, "cup")["history"].as_array().unwrap().len(),
        90
    );

    fire_alert(
        &app,
        "firing",
        "cup-backend",
        "CUP backend: pool di connessioni esaurito",
    )
    .await;
    let req = json!({"title": "Migrazione del portale referti", "severity": "major",
        "labels": {"service": "referti"}, "body": "Lavori programmati."});
    let resp = app
        .post_json("/api/v1/incidents", Some(OPERATOR_TOKEN), &req)
        .await;
    assert_eq!(resp.status(), 201);
    let board = eventually(
        || status(&app),
        |b| b["overall"] == "major_outage" && service(b, "referti")["state"] == "maintenance",
    )
    .await;
    assert_eq!(service(&board, "cup")["state"], "major_outage");
    assert_eq!(service(&board, "portale")["state"], "operational");
    // Nothing approved yet: the states show, no text does.
    assert!(board["incidents"].as_array().unwrap().is_empty(), "{board}");
    let page = app.get("/status", None).await.text().await.unwrap();
    assert!(
        page.contains("Non disponibile") && page.contains("In manutenzione"),
        "{page}"
    );
    assert!(
        !page.contains("pool di connessioni"),
        "monitors' words stay internal"
    );

    // The office edits the page's statement and approves: it appears, and nothing else does.
    let is_cup = |d: &Value| d["incident_title"].as_str().unwrap_or("").contains("CUP");
    let drafts = eventually(|| app.pending_drafts(), |d| d.iter().any(is_cup)).await;
    let draft = drafts.iter().find(|d| is_cup(d)).unwrap();
    let part = draft["parts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["channel"] == "status" && p["language"] == "it")
        .unwrap_or_else(|| panic!("no Italian status part in {draft}"));
    assert!(
        part["body"]
            .as_str()
            .unwrap()
            .contains("È in corso un disservizio"),
        "{part}"
    );
    let id = draft["id"].as_i64().unwrap();
    let text = "Le prenotazioni CUP sono sospese. Gli sportelli accettano solo le urgenze.";
    let resp = app
        .put_json(
            &format!("/api/v1/drafts/{id}"),
            COMMUNICATOR_TOKEN,
            &json!({"parts": [{"channel": "status", "language": "it", "body": text}]}),
        )
        .await;
    assert_eq!(resp.status(), 200);
    app.approve_draft(id).await;
    let board = eventually(
        || status(&app),
        |b| b["incidents"].as_array().is_some_and(|i| !i.is_empty()),
    )
    .await;
    let listed = &board["incidents"][0];
    assert_eq!(listed["services"], json!(["cup"]), "{listed}");
    let italian = listed["statements"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["language"] == "it")
        .unwrap();
    assert_eq!(italian["text"], text);
    let page = app.get("/status", None).await.text().await.unwrap();
    assert!(
        page.contains("Gli sportelli accettano solo le urgenze."),
        "{page}"
    );
    assert!(!page.contains("pool di connessioni"), "{page}");
    let incident_page = app
        .get(&format!("/status/incidents/{}", listed["id"]), None)
        .await;
    assert_eq!(incident_page.status(), 200);
    let en = app.get("/status?lang=en", None).await.text().await.unwrap();
    assert!(
        en.contains("Bookings (CUP)") && en.contains("Unavailable"),
        "{en}"
    );
}

#[tokio::test]
async fn scheduled_maintenance_is_announced_with_its_public_note_only() {
    let smtp = SmtpServer::start();
    let app = TestApp::spawn(&smtp, &config(), &[]).await;
    let board = status(&app).await;
    let planned = board["maintenance"].as_array().unwrap();
    // The nightly window, the next three times; the referti migration has no public note and
    // stays internal.
    assert_eq!(planned.len(), 3, "{board}");
    assert!(planned.iter().all(|m| m["services"] == json!(["cup"])));
    assert_eq!(
        planned[0]["note"],
        "Le prenotazioni online non sono disponibili."
    );
    let page = app.get("/status", None).await.text().await.unwrap();
    assert!(page.contains("Manutenzioni programmate"), "{page}");
    assert!(
        page.contains("Prenotazioni (CUP): Le prenotazioni online non sono disponibili."),
        "{page}"
    );
    assert!(!page.contains("change 4411") && !page.contains("Migrazione referti"));
    let en = app.get("/status?lang=en", None).await.text().await.unwrap();
    assert!(
        en.contains("Scheduled maintenance")
            && en.contains("Bookings (CUP): Online booking is unavailable."),
        "{en}"
    );
}

#[tokio::test]
async fn the_json_status_api_is_open_to_other_sites_and_cacheable() {
    let smtp = SmtpServer::start();
    let app = TestApp::spawn(&smtp, &config(), &[]).await;
    let resp = app.get("/api/v1/status", None).await;
    assert_eq!(resp.status(), 200, "no credentials needed");
    assert_eq!(resp.headers()["access-control-allow-origin"], "*");
    let etag = resp.headers()["etag"].to_str().unwrap().to_owned();
    assert!(resp.headers().contains_key("last-modified"));
    let again = app
        .http
        .get(app.url("/api/v1/status"))
        .header("If-None-Match", &etag)
        .send()
        .await
        .unwrap();
    assert_eq!(again.status(), 304);
    let page = app.get("/status", None).await;
    assert_eq!(page.status(), 200);
    let page_etag = page.headers()["etag"].to_str().unwrap().to_owned();
    let html = page.text().await.unwrap();
    assert!(html.len() < 30_000, "page weight {} bytes", html.len());
    let again = app
        .http
        .get(app.url("/status"))
        .header("If-None-Match", &page_etag)
        .send()
        .await
        .unwrap();
    assert_eq!(again.status(), 304);
    // Something changes: the ETag does too (after the board's two seconds).
    fire_alert(&app, "firing", "portale", "Portale giù").await;
    let changed = eventually(
        || async {
            let r = app.get("/api/v1/status", None).await;
            r.headers()["etag"].to_str().unwrap().to_owned()
        },
        |e| *e != etag,
    )
    .await;
    assert_ne!(changed, etag);
}

/// Runs xmllint on `xml` (with `args`); `None` when xmllint is missing outside CI.
fn xmllint(xml: &str, args: &[&str]) -> Option<(bool, String)> {
    if std::process::Command::new("xmllint")
        .arg("--version")
        .output()
        .is_err()
    {
        assert!(
            std::env::var_os("CI").is_none(),
            "CI needs xmllint (libxml2-utils): .ci/run installs it"
        );
        eprintln!("skipping the XML checks: no xmllint here (apt-get install libxml2-utils)");
        return None;
    }
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("doc.xml");
    std::fs::write(&file, xml).unwrap();
    let out = std::process::Command::new("xmllint")
        .args(args)
        .arg(&file)
        .output()
        .unwrap();
    Some((
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    ))
}

async fn approve_all(app: &TestApp) {
    app.next_draft().await;
    for d in app.pending_drafts().await {
        app.approve_draft(d["id"].as_i64().unwrap()).await;
    }
}

#[tokio::test]
async fn atom_and_cap_feeds_carry_the_approved_statements_and_cap_validates() {
    let smtp = SmtpServer::start();
    let app = TestApp::spawn(&smtp, &config(), &[]).await;
    let req = json!({"title": "CUP giù", "severity": "critical",
        "labels": {"service": "cup"}, "body": "Prenotazioni sospese <in tutta la regione> & sportelli chiusi."});
    let resp = app
        .post_json("/api/v1/incidents", Some(OPERATOR_TOKEN), &req)
        .await;
    let incident = resp.json::<Value>().await.unwrap()["id"].as_i64().unwrap();
    approve_all(&app).await;
    let first = eventually(
        || async {
            app.get("/status/cap.atom", None)
                .await
                .text()
                .await
                .unwrap()
        },
        |x| x.contains("<entry>"),
    )
    .await;
    let href = first
        .split("href=\"")
        .filter_map(|s| s.split('"').next())
        .find(|h| h.contains("/status/cap/") && h.ends_with(".xml"))
        .unwrap_or_else(|| panic!("no CAP link in {first}"))
        .to_owned();
    assert!(first.contains("type=\"application/cap+xml\""), "{first}");
    let path = &href[href.find("/status/cap/").unwrap()..];
    let resp = app.get(path, None).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["content-type"], "application/cap+xml");
    let alert = resp.text().await.unwrap();
    assert!(
        alert.contains("<msgType>Alert</msgType>") && alert.contains("<category>Infra</category>"),
        "{alert}"
    );
    assert!(
        alert.contains("-00:00</sent>") && !alert.contains("Z</sent>"),
        "{alert}"
    );
    assert!(
        alert.contains("&lt;in tutta la regione&gt; &amp; sportelli"),
        "{alert}"
    );
    let schema = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/cap/CAP-v1.2.xsd"
    );
    if let Some((ok, out)) = xmllint(&alert, &["--noout", "--schema", schema]) {
        assert!(ok, "{out}\n{alert}");
    }
    // The Atom feeds are well-formed and carry the statement.
    for path in [
        "/status/feed.atom",
        "/status/services/cup/feed.atom",
        "/status/cap.atom",
    ] {
        let feed = app.get(path, None).await.text().await.unwrap();
        for element in ["<id>", "<title>", "<updated>", "<entry>", "<link"] {
            assert!(feed.contains(element), "{path}: no {element} in {feed}");
        }
        if let Some((ok, out)) = xmllint(&feed, &["--noout"]) {
            assert!(ok, "{path}: {out}");
        }
    }
    let other = app
        .get("/status/services/portale/feed.atom", None)
        .await
        .text()
        .await
        .unwrap();
    assert!(!other.contains("<entry>"), "{other}");
    assert_eq!(
        app.get("/status/services/nessuno/feed.atom", None)
            .await
            .status(),
        404
    );

    // Resolved: a Cancel referencing the alert before it, and the index lets it go.
    let resp = app
        .post_json(
            &format!("/api/v1/incidents/{incident}/updates"),
            Some(OPERATOR_TOKEN),
            &json!({"status": "resolved", "body": "Prenotazioni riaperte."}),
        )
        .await;
    assert_eq!(resp.status(), 201);
    approve_all(&app).await;
    let index = eventually(
        || async {
            app.get("/status/cap.atom", None)
                .await
                .text()
                .await
                .unwrap()
        },
        |x| !x.contains("<entry>"),
    )
    .await;
    assert!(!index.contains("<entry>"), "{index}");
    let board = status(&app).await;
    let drafts: Vec<i64> = board["incidents"][0]["statements"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["draft"].as_i64().unwrap())
        .collect();
    let last = drafts.iter().max().unwrap();
    let cancel = app
        .get(&format!("/status/cap/{last}.xml"), None)
        .await
        .text()
        .await
        .unwrap();
    assert!(cancel.contains("<msgType>Cancel</msgType>"), "{cancel}");
    assert!(
        cancel.contains("<references>banditore@banditore.asl.example,"),
        "{cancel}"
    );
    if let Some((ok, out)) = xmllint(&cancel, &["--noout", "--schema", schema]) {
        assert!(ok, "{out}\n{cancel}");
    }
}

/// The status parts of a draft, by language.
fn status_parts(draft: &Value) -> std::collections::BTreeMap<String, Value> {
    draft["parts"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p["channel"] == "status")
        .map(|p| (p["language"].as_str().unwrap().to_owned(), p.clone()))
        .collect()
}

#[tokio::test]
async fn a_public_draft_speaks_every_language_of_the_page_under_a_public_title() {
    let smtp = SmtpServer::start();
    let app = TestApp::spawn(&smtp, &config(), &[]).await;
    fire_alert(
        &app,
        "firing",
        "cup-backend",
        "CUP backend: pool di connessioni esaurito",
    )
    .await;
    let draft = app.next_draft().await;
    let id = draft["id"].as_i64().unwrap();
    // One status part per language the page offers, each drafted from its own templates with the
    // services' display names, under a short public title.
    let parts = status_parts(&draft);
    assert_eq!(parts.keys().collect::<Vec<_>>(), ["en", "it"], "{draft:#}");
    assert_eq!(parts["it"]["subject"], "Disservizio: Prenotazioni (CUP)");
    assert_eq!(parts["en"]["subject"], "Outage: Bookings (CUP)");
    let it = parts["it"]["body"].as_str().unwrap();
    let en = parts["en"]["body"].as_str().unwrap();
    assert!(
        it.contains("È in corso un disservizio che riguarda: Prenotazioni (CUP)."),
        "{it}"
    );
    assert!(
        en.contains("An outage is affecting: Bookings (CUP)."),
        "{en}"
    );
    // The citizens' email names the service as the page does, not by its label.
    let email = draft["parts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["channel"] == "email")
        .unwrap();
    let mail = email["body"].as_str().unwrap();
    assert!(mail.contains("Prenotazioni (CUP)"), "{mail}");
    for text in [it, en, mail] {
        assert!(!text.contains("cup-backend"), "{text}");
    }

    // A title is one short line, refused otherwise with the field named.
    let edit = |subject: &str, body: &str| json!({"parts": [{"channel": "status", "language": "en", "subject": subject, "body": body}]});
    for bad in ["Outage\nBcc: x@y", " ", &"x".repeat(161)] {
        let resp = app
            .put_json(
                &format!("/api/v1/drafts/{id}"),
                COMMUNICATOR_TOKEN,
                &edit(bad, "Online booking is suspended."),
            )
            .await;
        assert_eq!(resp.status(), 400, "{bad:?}");
        let body: Value = resp.json().await.unwrap();
        assert_eq!(body["field"], "parts[0].subject", "{body}");
    }
    let text_en = "Online booking is suspended. Desks take urgent bookings only.";
    let resp = app
        .put_json(
            &format!("/api/v1/drafts/{id}"),
            COMMUNICATOR_TOKEN,
            &edit("Bookings suspended", text_en),
        )
        .await;
    assert_eq!(resp.status(), 200);
    app.approve_draft(id).await;

    // The board carries each language, its title and its text.
    let board = eventually(
        || status(&app),
        |b| b["incidents"].as_array().is_some_and(|i| !i.is_empty()),
    )
    .await;
    let incident = board["incidents"][0]["id"].as_i64().unwrap();
    let said: std::collections::BTreeMap<&str, (&str, &str)> = board["incidents"][0]["statements"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            (
                s["language"].as_str().unwrap(),
                (s["title"].as_str().unwrap(), s["text"].as_str().unwrap()),
            )
        })
        .collect();
    assert_eq!(said["en"], ("Bookings suspended", text_en), "{board}");
    assert_eq!(said["it"].0, "Disservizio: Prenotazioni (CUP)", "{board}");

    // The page heads the incident with its title in the reader's language.
    let page_en = app.get("/status?lang=en", None).await.text().await.unwrap();
    assert!(
        page_en.contains("Bookings suspended") && page_en.contains(text_en),
        "{page_en}"
    );
    let page_it = app.get("/status", None).await.text().await.unwrap();
    assert!(
        page_it.contains("Disservizio: Prenotazioni (CUP)"),
        "{page_it}"
    );
    let alone = app
        .get(&format!("/status/incidents/{incident}?lang=en"), None)
        .await
        .text()
        .await
        .unwrap();
    assert!(alone.contains("<h1>Bookings suspended</h1>"), "{alone}");
    for page in [&page_en, &page_it, &alone] {
        assert!(
            !page.contains("Incident no.") && !page.contains("Disservizio n."),
            "{page}"
        );
        assert!(!page.contains("pool di connessioni"), "{page}");
    }

    // Atom in each language, CAP with one <info> per language, each headed by its title.
    let atom_en = app
        .get("/status/feed.atom?lang=en", None)
        .await
        .text()
        .await
        .unwrap();
    assert!(
        atom_en.contains("<title>Bookings suspended</title>") && atom_en.contains(text_en),
        "{atom_en}"
    );
    let atom_it = app
        .get("/status/feed.atom", None)
        .await
        .text()
        .await
        .unwrap();
    assert!(
        atom_it.contains("<title>Disservizio: Prenotazioni (CUP)</title>"),
        "{atom_it}"
    );
    let alert = app
        .get(&format!("/status/cap/{id}.xml"), None)
        .await
        .text()
        .await
        .unwrap();
    assert_eq!(alert.matches("<info>").count(), 2, "{alert}");
    for wanted in [
        "<language>it-IT</language>",
        "<language>en-US</language>",
        "<headline>Disservizio: Prenotazioni (CUP)</headline>",
        "<headline>Bookings suspended</headline>",
    ] {
        assert!(alert.contains(wanted), "no {wanted} in {alert}");
    }
    let schema = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/cap/CAP-v1.2.xsd"
    );
    if let Some((ok, out)) = xmllint(&alert, &["--noout", "--schema", schema]) {
        assert!(ok, "{out}\n{alert}");
    }
}
