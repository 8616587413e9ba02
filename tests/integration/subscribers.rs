//! The subscribers' API and console pages against the real binary: the list in pages with a
//! search, edits in place with the checks of a creation, and each subscriber's deliveries.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::support::*;

async fn patch(app: &TestApp, id: i64, token: &str, body: &Value) -> reqwest::Response {
    app.http
        .patch(app.url(&format!("/api/v1/subscribers/{id}")))
        .bearer_auth(token)
        .json(body)
        .send()
        .await
        .expect("PATCH")
}

async fn refused(resp: reqwest::Response, status: u16, needle: &str) -> Value {
    assert_eq!(resp.status(), status);
    let body: Value = resp.json().await.unwrap();
    assert!(body.to_string().contains(needle), "{body}");
    body
}

#[tokio::test]
async fn the_list_pages_by_cursor_and_searches_text_as_text() {
    let smtp = SmtpServer::start();
    let app = TestApp::spawn(&smtp, "", &[]).await;
    let mut ids = BTreeSet::new();
    for (n, name) in [
        "Pronto soccorso 100%",
        "CUP_Gubbio",
        "D'Annunzio",
        "Città di Castello",
    ]
    .into_iter()
    .chain((0..9).map(|_| "Sportello"))
    .enumerate()
    {
        ids.insert(
            app.subscribe(
                json!({"name": name, "addresses": {"email": format!("desk{n}@asl.example")}}),
            )
            .await,
        );
    }
    // Following `next` reads every subscriber once.
    let mut seen = Vec::new();
    let mut path = "/api/v1/subscribers?limit=5".to_owned();
    loop {
        let resp = app.get(&path, Some(OPERATOR_TOKEN)).await;
        assert_eq!(resp.status(), 200);
        let link = resp
            .headers()
            .get("link")
            .map(|l| l.to_str().unwrap().to_owned());
        let body: Value = resp.json().await.unwrap();
        let page = body["subscribers"].as_array().unwrap();
        assert!(page.len() <= 5);
        seen.extend(page.iter().map(|s| s["id"].as_i64().unwrap()));
        match body["next"].as_i64() {
            Some(next) => {
                let link = link.expect("a Link header beside next");
                assert_eq!(
                    link,
                    format!("</api/v1/subscribers?limit=5&after={next}>; rel=\"next\"")
                );
                path = format!("/api/v1/subscribers?limit=5&after={next}");
            }
            None => {
                assert!(link.is_none());
                break;
            }
        }
    }
    assert_eq!(seen.len(), 13, "{seen:?}");
    assert_eq!(seen.iter().copied().collect::<BTreeSet<_>>(), ids);
    // Without a limit the first hundred come, in one page here.
    let all = app.get_json("/api/v1/subscribers", OPERATOR_TOKEN).await;
    assert_eq!(all["subscribers"].as_array().unwrap().len(), 13);
    assert!(all["next"].is_null());

    let search = |q: &'static str| {
        let app = &app;
        async move {
            let mut url = url::Url::parse(&app.url("/api/v1/subscribers")).unwrap();
            url.query_pairs_mut().append_pair("q", q);
            let path = format!("/api/v1/subscribers?{}", url.query().unwrap());
            let body = app.get_json(&path, OPERATOR_TOKEN).await;
            body["subscribers"]
                .as_array()
                .unwrap()
                .iter()
                .map(|s| s["name"].as_str().unwrap().to_owned())
                .collect::<Vec<_>>()
        }
    };
    assert_eq!(search("%").await, ["Pronto soccorso 100%"]);
    assert_eq!(search("_").await, ["CUP_Gubbio"]);
    assert_eq!(search("d'ann").await, ["D'Annunzio"]);
    assert_eq!(search("CITTà").await, ["Città di Castello"]);
    assert_eq!(search("sportello").await.len(), 9);
    assert!(search("nessuno").await.is_empty());
    // A search's `next` keeps the search.
    let resp = app
        .get(
            "/api/v1/subscribers?q=sportello&limit=4",
            Some(OPERATOR_TOKEN),
        )
        .await;
    let link = resp.headers()["link"].to_str().unwrap().to_owned();
    assert!(link.contains("&q=sportello>"), "{link}");
    let long = "x".repeat(201);
    let resp = app
        .get(
            &format!("/api/v1/subscribers?q={long}"),
            Some(OPERATOR_TOKEN),
        )
        .await;
    let body = refused(resp, 400, "200 characters").await;
    assert_eq!(body["field"], "q");
    let resp = app
        .get("/api/v1/subscribers?limit=many", Some(OPERATOR_TOKEN))
        .await;
    refused(resp, 400, "limit").await;
    // Only those allowed to manage subscribers read them.
    assert_eq!(
        app.get("/api/v1/subscribers", Some(VIEWER_TOKEN))
            .await
            .status(),
        403
    );
}

#[tokio::test]
async fn an_edit_is_checked_as_a_creation_and_keeps_the_history() {
    let smtp = SmtpServer::start();
    let extra = r#"
[[subscribers]]
name = "Ufficio comunicazione"
addresses = { email = ["comunicazione@asl.example"] }
"#;
    let app = TestApp::spawn(&smtp, extra, &[]).await;
    let id = app
        .subscribe(json!({
            "name": "CUP Foligno", "audience": "cup-desk",
            "addresses": {"email": "cup.foligno@asl.example"},
            "subscriptions": [{"matchers": ["service=~\"cup.*\""]}],
        }))
        .await;
    let resp = app
        .post_json(
            "/api/v1/incidents",
            Some(OPERATOR_TOKEN),
            &json!({"title": "CUP lento", "severity": "major",
                "labels": {"service": "cup-backend"}, "body": "Verifiche in corso."}),
        )
        .await;
    assert_eq!(resp.status(), 201);
    smtp.wait_for("cup.foligno@asl.example", 1, Duration::from_secs(10));
    let path = format!("/api/v1/subscribers/{id}/deliveries");
    let deadline = Instant::now() + Duration::from_secs(10);
    let history = loop {
        let body = app.get_json(&path, OPERATOR_TOKEN).await;
        let sent = body["deliveries"][0]["state"] == "sent";
        if sent || Instant::now() > deadline {
            break body;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let delivery = &history["deliveries"][0];
    assert_eq!(delivery["state"], "sent", "{history}");
    assert_eq!(delivery["incident_title"], "CUP lento");
    assert_eq!(delivery["recipient"], "cup.foligno@asl.example");
    assert_eq!(delivery["channel"], "email");

    let before = app
        .get_json(&format!("/api/v1/subscribers/{id}"), OPERATOR_TOKEN)
        .await;
    let email_id = before["addresses"][0]["id"].clone();
    // Refused as a creation would be, naming the field; nothing changes.
    let bad = patch(
        &app,
        id,
        OPERATOR_TOKEN,
        &json!({"addresses": {"sms": ["+39 333"]}}),
    )
    .await;
    let body = refused(bad, 400, "+39 333").await;
    assert_eq!(body["field"], "addresses.sms[0]");
    let bad = patch(&app, id, OPERATOR_TOKEN, &json!({"name": "a\nb"})).await;
    assert_eq!(refused(bad, 400, "name").await["field"], "name");
    let bad = patch(&app, id, OPERATOR_TOKEN, &json!({"colour": "red"})).await;
    refused(bad, 400, "colour").await;
    refused(
        patch(&app, id + 100, OPERATOR_TOKEN, &json!({"name": "x"})).await,
        404,
        "not found",
    )
    .await;
    let list = app
        .get_json("/api/v1/subscribers?q=comunicazione", OPERATOR_TOKEN)
        .await;
    let config = list["subscribers"][0]["id"].as_i64().unwrap();
    refused(
        patch(&app, config, OPERATOR_TOKEN, &json!({"name": "x"})).await,
        409,
        "configuration file",
    )
    .await;
    assert_eq!(
        app.get_json(&format!("/api/v1/subscribers/{id}"), OPERATOR_TOKEN)
            .await,
        before
    );

    let resp = patch(
        &app,
        id,
        OPERATOR_TOKEN,
        &json!({"name": "CUP Foligno e Spello", "addresses": {"sms": "333 123 4567"}}),
    )
    .await;
    assert_eq!(resp.status(), 200);
    let edited: Value = resp.json().await.unwrap();
    assert_eq!(edited["name"], "CUP Foligno e Spello");
    assert_eq!(edited["audience"], "cup-desk", "left alone");
    assert_eq!(edited["subscriptions"], before["subscriptions"]);
    let addresses = edited["addresses"].as_array().unwrap();
    assert_eq!(addresses.len(), 2);
    assert_eq!(addresses[0]["id"], email_id, "the email kept its row");
    assert_eq!(addresses[1]["address"], "+393331234567");
    let after = app.get_json(&path, OPERATOR_TOKEN).await;
    assert_eq!(
        after["deliveries"], history["deliveries"],
        "the history stays"
    );
    // Removing a channel's addresses with null.
    let resp = patch(
        &app,
        id,
        OPERATOR_TOKEN,
        &json!({"addresses": {"sms": null}}),
    )
    .await;
    let edited: Value = resp.json().await.unwrap();
    assert_eq!(edited["addresses"].as_array().unwrap().len(), 1);
    let audit = app
        .get_json("/api/v1/audit", VIEWER_TOKEN)
        .await
        .to_string();
    assert!(audit.contains("subscriber.edited"), "{audit}");
    assert!(
        !audit.contains("+393331234567"),
        "no contact in the audit log"
    );
    refused(
        app.get(
            &format!("/api/v1/subscribers/{}/deliveries", id + 100),
            Some(OPERATOR_TOKEN),
        )
        .await,
        404,
        "not found",
    )
    .await;
}

#[tokio::test]
async fn operators_search_page_and_edit_subscribers_in_the_console() {
    let smtp = SmtpServer::start();
    let mut app = TestApp::spawn(&smtp, "", &[]).await;
    app.add_user("l.bianchi", "una password abbastanza lunga", "operator")
        .await;
    let mut first = 0;
    for n in 0..55 {
        let id = app
            .subscribe(json!({"name": format!("Sportello {n:02}"), "addresses": {"email": format!("s{n}@asl.example")}}))
            .await;
        if n == 0 {
            first = id;
        }
    }
    let op = console_browser();
    let login = console_login(&app, &op, "l.bianchi", "una password abbastanza lunga").await;
    assert_eq!(login.status(), 303);
    let html = op
        .get(app.url("/console/subscribers"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(html.contains("Iscritti: 55."), "{html}");
    assert!(html.contains("Sportello 49") && !html.contains("Sportello 50"));
    assert!(html.contains("rel=\"next\"") && !html.contains("rel=\"prev\""));
    // The link as a browser reads it: the attribute before `rel="next"`, unescaped.
    let next = html.split(" rel=\"next\"").next().unwrap();
    let next = next.rsplit("href=\"").next().unwrap().trim_end_matches('"');
    let next = next.replace("&#x2f;", "/").replace("&amp;", "&");
    let html = op
        .get(app.url(&next))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(html.contains("Sportello 50") && !html.contains("Sportello 49"));
    assert!(html.contains("rel=\"prev\"") && !html.contains("rel=\"next\""));
    let html = op
        .get(app.url("/console/subscribers?q=sportello%200"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(html.contains("Trovati: 10."), "{html}");

    let page = op
        .get(app.url(&format!("/console/subscribers/{first}")))
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), 200);
    let html = page.text().await.unwrap();
    assert!(html.contains("id=\"edit-subscriber\"") && html.contains("Ancora nessun invio"));
    let csrf = hidden_field(&html, "csrf");
    let form = [
        ("csrf", csrf.as_str()),
        ("name", "Sportello centrale"),
        ("audience", "cup-desk"),
        ("language", "en"),
        ("email", "s0@asl.example\nnuovo@asl.example"),
        ("sms", ""),
        ("telegram", ""),
        ("subs", "0"),
        ("new_matchers", "service=~\"cup.*\""),
        ("new_min_severity", "major"),
    ];
    let bad = op
        .post(app.url(&format!("/console/subscribers/{first}/edit")))
        .form(&[("csrf", csrf.as_str()), ("name", "x"), ("sms", "+39 333")])
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), 400);
    let stale = op
        .post(app.url(&format!("/console/subscribers/{first}/edit")))
        .form(&[("csrf", "stale"), ("name", "x")])
        .send()
        .await
        .unwrap();
    assert_eq!(stale.status(), 403);
    let ok = op
        .post(app.url(&format!("/console/subscribers/{first}/edit")))
        .form(&form)
        .send()
        .await
        .unwrap();
    assert_eq!(ok.status(), 303);
    let row = app
        .get_json(&format!("/api/v1/subscribers/{first}"), ADMIN_TOKEN)
        .await;
    assert_eq!(row["name"], "Sportello centrale");
    assert_eq!(row["language"], "en");
    assert_eq!(row["addresses"].as_array().unwrap().len(), 2);
    assert_eq!(row["subscriptions"][0]["min_severity"], "major");
    assert_eq!(row["subscriptions"][0]["matchers"][0], "service=~\"cup.*\"");
}
