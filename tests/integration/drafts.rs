//! Public statements wait for the communications office: drafted at once, edited, approved or
//! rejected, published on timeout, every step in the audit log.

use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::support::*;

const PUBLIC: &str = "cittadini@lista.asl.example";
const DESK: &str = "cup.foligno@asl.example";

async fn app_with(smtp: &SmtpServer, env: &[(&str, &str)]) -> TestApp {
    let app = TestApp::spawn(smtp, "", env).await;
    for (name, audience, email) in [
        ("Lista pubblica", "public", PUBLIC),
        ("CUP Foligno", "cup-desk", DESK),
    ] {
        app.subscribe(json!({
            "name": name, "audience": audience, "addresses": {"email": email},
            "subscriptions": [{"matchers": ["service=~\"cup.*\""]}],
        }))
        .await;
    }
    app
}

async fn pending(app: &TestApp) -> Vec<Value> {
    app.get_json("/api/v1/drafts?state=pending", VIEWER_TOKEN)
        .await["drafts"]
        .as_array()
        .unwrap()
        .clone()
}

async fn post(app: &TestApp, path: &str, token: &str, body: Value) -> (u16, Value) {
    let resp = app.post_json(path, Some(token), &body).await;
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

/// The drafts' audit entries, oldest first, as (action, actor).
async fn audit_actions(app: &TestApp) -> Vec<(String, String)> {
    let log = app.get_json("/api/v1/audit", VIEWER_TOKEN).await;
    let mut entries: Vec<(String, String)> = log["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["action"].as_str().unwrap().to_owned(),
                e["actor"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    entries.reverse();
    entries.retain(|(action, _)| action.starts_with("draft."));
    entries
}

#[tokio::test]
async fn a_public_statement_is_drafted_edited_approved_and_sent_as_approved() {
    let smtp = SmtpServer::start();
    let app = app_with(&smtp, &[]).await;
    fire_alert(&app, "firing", "cup-backend", "CUP non risponde").await;
    // Desks hear at once; the public list waits.
    smtp.wait_for(DESK, 1, Duration::from_secs(10));
    let drafts = eventually(|| pending(&app), |d| !d.is_empty()).await;
    assert!(
        smtp.mails_to(PUBLIC).is_empty(),
        "nothing public before approval"
    );
    let draft = &drafts[0];
    let id = draft["id"].as_i64().unwrap();
    assert_eq!(draft["audience"], "public");
    assert_eq!(draft["update_kind"], "opened");
    let part = &draft["parts"][0];
    assert_eq!(part["channel"], "email");
    assert_eq!(part["recipients"], 1);
    assert!(part["body"].as_str().unwrap().contains("CUP non risponde"));
    assert!(part["length"]["used"].as_u64().unwrap() > 0);

    // An operator may not decide; a communicator edits and approves.
    let (status, _) = post(
        &app,
        &format!("/api/v1/drafts/{id}/approve"),
        OPERATOR_TOKEN,
        json!({}),
    )
    .await;
    assert_eq!(status, 403);
    let edited = "Il servizio di prenotazione CUP è temporaneamente non disponibile.\nAggiornamenti su questo canale.\n";
    let resp = app
        .put_json(
            &format!("/api/v1/drafts/{id}"),
            COMMUNICATOR_TOKEN,
            &json!({"parts": [{"channel": "email", "language": "it",
                               "subject": "CUP: servizio non disponibile", "body": edited}]}),
        )
        .await;
    assert_eq!(resp.status(), 200);
    let after: Value = resp.json().await.unwrap();
    assert_eq!(after["parts"][0]["version"], 2);
    assert_eq!(after["parts"][0]["body"], edited);

    let (status, body) = post(
        &app,
        &format!("/api/v1/drafts/{id}/approve"),
        COMMUNICATOR_TOKEN,
        json!({}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["deliveries"], 1);
    let mail = &smtp.wait_for(PUBLIC, 1, Duration::from_secs(10))[0];
    assert_eq!(mail.subject(), "CUP: servizio non disponibile");
    // SMTP carries lines with CRLF and ends the body with one: the text itself is as approved.
    assert_eq!(
        mail.text().replace("\r\n", "\n").trim_end(),
        edited.trim_end(),
        "published as approved"
    );

    // Decided is decided.
    let (status, _) = post(
        &app,
        &format!("/api/v1/drafts/{id}/approve"),
        COMMUNICATOR_TOKEN,
        json!({}),
    )
    .await;
    assert_eq!(status, 409);
    let actions = audit_actions(&app).await;
    assert_eq!(
        actions,
        vec![
            ("draft.created".to_owned(), "banditore".to_owned()),
            (
                "draft.edited".to_owned(),
                "ufficio-comunicazione".to_owned()
            ),
            (
                "draft.approved".to_owned(),
                "ufficio-comunicazione".to_owned()
            ),
        ]
    );
    let log = app.get_json("/api/v1/audit", VIEWER_TOKEN).await;
    let entries = log["entries"].as_array().unwrap();
    let edit = entries
        .iter()
        .find(|e| e["action"] == "draft.edited")
        .unwrap();
    assert!(
        edit["detail"]["diff"]
            .as_str()
            .unwrap()
            .contains("+Il servizio di prenotazione"),
        "{edit}"
    );
    let approved = entries
        .iter()
        .find(|e| e["action"] == "draft.approved")
        .unwrap();
    assert_eq!(approved["detail"]["recipients"], 1);
}

/// A mailbox on the public list (held for approval, created first) and on a desk (told at
/// once): the desk's copy goes at once, and a rejected statement takes nothing from it.
#[tokio::test]
async fn a_mailbox_a_desk_shares_with_the_public_list_hears_at_once() {
    const SHARED: &str = "urp@asl.example";
    let smtp = SmtpServer::start();
    let app = TestApp::spawn(&smtp, "", &[]).await;
    for (name, audience, emails) in [
        ("Lista pubblica", "public", vec![PUBLIC, SHARED]),
        ("URP", "cup-desk", vec![SHARED]),
    ] {
        app.subscribe(json!({
            "name": name, "audience": audience, "addresses": {"email": emails},
            "subscriptions": [{"matchers": ["service=~\"cup.*\""]}],
        }))
        .await;
    }
    fire_alert(&app, "firing", "cup-backend", "CUP non risponde").await;
    smtp.wait_for(SHARED, 1, Duration::from_secs(10));
    let drafts = eventually(|| pending(&app), |d| !d.is_empty()).await;
    assert_eq!(drafts[0]["parts"][0]["recipients"], 1, "{drafts:?}");
    let id = drafts[0]["id"].as_i64().unwrap();
    let (status, _) = post(
        &app,
        &format!("/api/v1/drafts/{id}/reject"),
        COMMUNICATOR_TOKEN,
        json!({"reason": "Non per il pubblico"}),
    )
    .await;
    assert_eq!(status, 200);
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(smtp.mails_to(SHARED).len(), 1);
    assert!(smtp.mails_to(PUBLIC).is_empty());
}

#[tokio::test]
async fn a_rejected_draft_sends_nothing_and_needs_a_reason() {
    let smtp = SmtpServer::start();
    let app = app_with(&smtp, &[]).await;
    fire_alert(&app, "firing", "cup-backend", "CUP non risponde").await;
    let drafts = eventually(|| pending(&app), |d| !d.is_empty()).await;
    let id = drafts[0]["id"].as_i64().unwrap();
    let (status, body) = post(
        &app,
        &format!("/api/v1/drafts/{id}/reject"),
        COMMUNICATOR_TOKEN,
        json!({"reason": " "}),
    )
    .await;
    assert_eq!(status, 400);
    assert_eq!(body["field"], "reason");
    let (status, _) = post(
        &app,
        &format!("/api/v1/drafts/{id}/reject"),
        COMMUNICATOR_TOKEN,
        json!({"reason": "Guasto interno, nessun impatto sui cittadini"}),
    )
    .await;
    assert_eq!(status, 200);
    let draft = app
        .get_json(&format!("/api/v1/drafts/{id}"), VIEWER_TOKEN)
        .await;
    assert_eq!(draft["state"], "rejected");
    assert_eq!(
        draft["reason"],
        "Guasto interno, nessun impatto sui cittadini"
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(smtp.mails_to(PUBLIC).is_empty());
    // An edit of a decided draft is refused.
    let resp = app
        .put_json(
            &format!("/api/v1/drafts/{id}"),
            COMMUNICATOR_TOKEN,
            &json!({"parts": [{"channel": "email", "language": "it", "body": "x"}]}),
        )
        .await;
    assert_eq!(resp.status(), 409);
}

#[tokio::test]
async fn the_timeout_policy_publishes_by_itself_and_says_so() {
    let smtp = SmtpServer::start();
    let app = app_with(
        &smtp,
        &[
            (
                "BANDITORE__APPROVAL__AUDIENCES__PUBLIC__POLICY",
                "approval_with_timeout",
            ),
            ("BANDITORE__APPROVAL__AUDIENCES__PUBLIC__TIMEOUT", "2s"),
        ],
    )
    .await;
    let fired = Instant::now();
    fire_alert(&app, "firing", "cup-backend", "CUP non risponde").await;
    let drafts = eventually(|| pending(&app), |d| !d.is_empty()).await;
    assert_eq!(drafts[0]["policy"], "approval_with_timeout");
    assert!(drafts[0]["publish_at"].is_string());
    let mail = &smtp.wait_for(PUBLIC, 1, Duration::from_secs(15))[0];
    assert!(
        fired.elapsed() >= Duration::from_secs(2),
        "not before the timeout"
    );
    assert!(mail.text().contains("CUP non risponde"));
    let actions = audit_actions(&app).await;
    assert!(
        actions.contains(&(
            "draft.published_on_timeout".to_owned(),
            "policy: approval_with_timeout".to_owned()
        )),
        "{actions:?}"
    );
}

#[tokio::test]
async fn resolved_before_approval_offers_one_combined_draft() {
    let smtp = SmtpServer::start();
    let app = app_with(&smtp, &[("BANDITORE__ROUTING__FLAP_HOLD_DOWN", "0s")]).await;
    fire_alert(&app, "firing", "cup-backend", "CUP non risponde").await;
    let first = eventually(|| pending(&app), |d| !d.is_empty()).await[0]["id"]
        .as_i64()
        .unwrap();
    fire_alert(&app, "resolved", "cup-backend", "CUP non risponde").await;
    smtp.wait_for(DESK, 2, Duration::from_secs(10));
    let drafts = eventually(
        || pending(&app),
        |d| d.len() == 1 && d[0]["id"].as_i64() != Some(first),
    )
    .await;
    assert_eq!(drafts[0]["update_kind"], "resolved");
    assert_eq!(drafts[0]["combined"], true);
    let old = app
        .get_json(&format!("/api/v1/drafts/{first}"), VIEWER_TOKEN)
        .await;
    assert_eq!(old["state"], "superseded");
    let id = drafts[0]["id"].as_i64().unwrap();
    let (status, _) = post(
        &app,
        &format!("/api/v1/drafts/{id}/approve"),
        COMMUNICATOR_TOKEN,
        json!({"channels": ["email"]}),
    )
    .await;
    assert_eq!(status, 200);
    let mails = smtp.wait_for(PUBLIC, 1, Duration::from_secs(10));
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(smtp.mails_to(PUBLIC).len(), 1, "one statement, not two");
    assert!(mails[0].text().contains("risolto"), "{}", mails[0].text());
}
