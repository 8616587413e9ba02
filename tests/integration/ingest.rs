//! The webhook endpoints as monitors see them: authentication, limits, formats, errors.

use std::time::Duration;

use base64::Engine as _;
use serde_json::{Value, json};

use crate::support::*;

fn fixture(path: &str) -> Vec<u8> {
    std::fs::read(format!(
        "{}/tests/fixtures/ingest/{path}",
        env!("CARGO_MANIFEST_DIR")
    ))
    .unwrap()
}

async fn app() -> (SmtpServer, TestApp) {
    let smtp = SmtpServer::start();
    let app = TestApp::spawn(&smtp, "", &[]).await;
    (smtp, app)
}

#[tokio::test]
async fn every_fixture_of_every_sender_is_accepted() {
    let (_smtp, app) = app().await;
    let dir = format!("{}/tests/fixtures/ingest", env!("CARGO_MANIFEST_DIR"));
    let mut seen = 0;
    for (folder, endpoint) in [
        ("alertmanager", "alertmanager"),
        ("grafana", "grafana"),
        ("uptime-kuma", "uptime-kuma"),
        ("generic", "generic"),
        ("cloudevents", "generic"),
    ] {
        for entry in std::fs::read_dir(format!("{dir}/{folder}")).unwrap() {
            let path = entry.unwrap().path();
            let body = std::fs::read(&path).unwrap();
            let content_type = match (folder, body.first()) {
                ("cloudevents", Some(b'[')) => "application/cloudevents-batch+json",
                ("cloudevents", _) => "application/cloudevents+json",
                _ => "application/json",
            };
            let resp = app
                .post(
                    &format!("/api/v1/signals/{endpoint}"),
                    Some(INGEST_TOKEN),
                    content_type,
                    body,
                )
                .await;
            let status = resp.status();
            let text = resp.text().await.unwrap();
            // string-data.json may be refused with a clear 400; everything else is taken.
            if path.ends_with("string-data.json") {
                assert!(
                    status == 202 || status == 400,
                    "{}: {status} {text}",
                    path.display()
                );
            } else {
                assert!(
                    status == 202 || status == 200,
                    "{}: {status} {text}",
                    path.display()
                );
            }
            seen += 1;
        }
    }
    assert!(seen >= 20, "only {seen} fixtures");
}

#[tokio::test]
async fn authentication_is_required_and_checked() {
    let (_smtp, app) = app().await;
    let body = fixture("alertmanager/firing.json");
    let resp = app
        .post(
            "/api/v1/signals/alertmanager",
            None,
            "application/json",
            body.clone(),
        )
        .await;
    assert_eq!(resp.status(), 401);
    assert!(
        resp.headers()["www-authenticate"]
            .to_str()
            .unwrap()
            .contains("Bearer")
    );
    let resp = app
        .post(
            "/api/v1/signals/alertmanager",
            Some("wrong-token-wrong-token"),
            "application/json",
            body.clone(),
        )
        .await;
    assert_eq!(resp.status(), 401);
    let err: Value = resp.json().await.unwrap();
    assert!(err["error"].as_str().unwrap().contains("credentials"));
    // Alertmanager's and Grafana's basic auth: the password is the token.
    let basic =
        base64::engine::general_purpose::STANDARD.encode(format!("alertmanager:{INGEST_TOKEN}"));
    let resp = app
        .http
        .post(app.url("/api/v1/signals/alertmanager"))
        .header("authorization", format!("Basic {basic}"))
        .header("content-type", "application/json")
        .body(body.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 202);
    // An admin token may ingest; an ingest token may not read or manage.
    assert_eq!(
        app.post(
            "/api/v1/signals/alertmanager",
            Some(ADMIN_TOKEN),
            "application/json",
            body
        )
        .await
        .status(),
        202
    );
    assert_eq!(
        app.get("/api/v1/incidents", Some(INGEST_TOKEN))
            .await
            .status(),
        403
    );
    // Subscribers are the operators' (and admins'); the communications office decides drafts.
    assert_eq!(
        app.get("/api/v1/subscribers", Some(COMMUNICATOR_TOKEN))
            .await
            .status(),
        403
    );
    assert_eq!(
        app.get("/api/v1/subscribers", Some(OPERATOR_TOKEN))
            .await
            .status(),
        200
    );
    assert_eq!(app.get("/api/v1/incidents", None).await.status(), 401);
    // The token never reaches the log.
    assert!(!app.logs().contains(INGEST_TOKEN));
    assert!(!app.logs().contains("wrong-token-wrong-token"));
}

#[tokio::test]
async fn grafana_hmac_signature_authenticates() {
    let smtp = SmtpServer::start();
    let extra = r#"
[[auth.hmac]]
name = "grafana"
secret_env = "TEST_GRAFANA_SECRET"
timestamp_header = "X-Grafana-Alerting-Signature-Timestamp"
"#;
    let app = TestApp::spawn(
        &smtp,
        extra,
        &[("TEST_GRAFANA_SECRET", "grafana-hmac-secret")],
    )
    .await;
    let body = fixture("grafana/firing.json");
    let now = jiff::Timestamp::now().as_second().to_string();
    let sign = |ts: &str, body: &[u8]| {
        use hmac::{KeyInit, Mac};
        let mut mac =
            <hmac::Hmac<sha2::Sha256> as KeyInit>::new_from_slice(b"grafana-hmac-secret").unwrap();
        mac.update(ts.as_bytes());
        mac.update(b":");
        mac.update(body);
        hex::encode(mac.finalize().into_bytes())
    };
    let send = |sig: String, ts: String, body: Vec<u8>| {
        app.http
            .post(app.url("/api/v1/signals/grafana"))
            .header("content-type", "application/json")
            .header("X-Grafana-Alerting-Signature", sig)
            .header("X-Grafana-Alerting-Signature-Timestamp", ts)
            .body(body)
            .send()
    };
    assert_eq!(
        send(sign(&now, &body), now.clone(), body.clone())
            .await
            .unwrap()
            .status(),
        202
    );
    let mut tampered = body.clone();
    tampered[10] ^= 1;
    assert_eq!(
        send(sign(&now, &body), now.clone(), tampered)
            .await
            .unwrap()
            .status(),
        401
    );
    let old = (jiff::Timestamp::now().as_second() - 3600).to_string();
    assert_eq!(
        send(sign(&old, &body), old, body.clone())
            .await
            .unwrap()
            .status(),
        401
    );
    assert!(!app.logs().contains("grafana-hmac-secret"));
}

#[tokio::test]
async fn bad_bodies_get_a_400_that_names_the_problem() {
    let (_smtp, app) = app().await;
    let post = |body: &'static str| {
        app.post(
            "/api/v1/signals/alertmanager",
            Some(INGEST_TOKEN),
            "application/json",
            body,
        )
    };
    let resp = post("{\"alerts\": [").await;
    assert_eq!(resp.status(), 400);
    let err: Value = resp.json().await.unwrap();
    assert!(
        err["error"].as_str().unwrap().contains("malformed JSON"),
        "{err}"
    );

    let resp = post("{\"version\": \"4\"}").await;
    assert_eq!(resp.status(), 400);
    let err: Value = resp.json().await.unwrap();
    assert_eq!(err["field"], "alerts", "{err}");

    let resp = post(r#"{"alerts": [{"labels": {"alertname": "x"}, "startsAt": "ieri"}]}"#).await;
    let err: Value = resp.json().await.unwrap();
    assert_eq!(err["field"], "alerts[0].startsAt", "{err}");
    assert!(err["error"].as_str().unwrap().contains("ieri"));

    let resp = post("").await;
    assert_eq!(resp.status(), 400);
    let resp = app
        .post(
            "/api/v1/signals/grafana",
            Some(INGEST_TOKEN),
            "application/json",
            "{\"text\": \"custom template\"}",
        )
        .await;
    let err: Value = resp.json().await.unwrap();
    assert!(
        err["error"]
            .as_str()
            .unwrap()
            .contains("custom payload template"),
        "{err}"
    );
    // Nothing half-written: no incident exists.
    let incidents = app.get_json("/api/v1/incidents", VIEWER_TOKEN).await;
    assert!(incidents["incidents"].as_array().unwrap().is_empty());
}

#[tokio::test]
async fn oversize_bodies_get_413_and_foreign_media_types_415() {
    let smtp = SmtpServer::start();
    let app = TestApp::spawn(&smtp, "", &[("BANDITORE__SERVER__MAX_BODY_BYTES", "4096")]).await;
    let big = format!("{{\"alerts\": [], \"pad\": \"{}\"}}", "x".repeat(5000));
    let resp = app
        .post(
            "/api/v1/signals/alertmanager",
            Some(INGEST_TOKEN),
            "application/json",
            big.clone(),
        )
        .await;
    assert_eq!(resp.status(), 413);
    let err: Value = resp.json().await.unwrap();
    assert!(err["error"].as_str().unwrap().contains("4096"));
    // Without a Content-Length (chunked), the limit still holds.
    let stream = futures_stream(big.into_bytes());
    let resp = app
        .http
        .post(app.url("/api/v1/signals/alertmanager"))
        .bearer_auth(INGEST_TOKEN)
        .header("content-type", "application/json")
        .body(reqwest::Body::wrap_stream(stream))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 413);
    // The connection ends with a 413 and says so, so the next request goes on a new one.
    assert_eq!(resp.headers()["connection"], "close");
    let resp = app
        .post(
            "/api/v1/signals/alertmanager",
            Some(INGEST_TOKEN),
            "application/x-www-form-urlencoded",
            "a=b",
        )
        .await;
    assert_eq!(resp.status(), 415);
    let resp = app
        .post(
            "/api/v1/signals/alertmanager",
            Some(INGEST_TOKEN),
            "application/xml",
            "<a/>",
        )
        .await;
    assert_eq!(resp.status(), 415);
}

fn futures_stream(
    bytes: Vec<u8>,
) -> impl futures_core::Stream<Item = Result<Vec<u8>, std::io::Error>> {
    let chunks: Vec<Result<Vec<u8>, std::io::Error>> =
        bytes.chunks(1000).map(|c| Ok(c.to_vec())).collect();
    tokio_stream::iter(chunks)
}

#[tokio::test]
async fn uptime_kuma_json_form_data_get_and_test_notifications() {
    let (smtp, app) = app().await;
    app.subscribe(json!({"name": "Portale", "addresses": {"email": "portale@asl.example"}, "subscriptions": [{"matchers": ["service=\"cup-portal\""]}]})).await;
    // The "Test" button: accepted, nothing opened.
    let resp = app
        .post(
            "/api/v1/signals/uptime-kuma",
            Some(INGEST_TOKEN),
            "application/json",
            fixture("uptime-kuma/test-notification.json"),
        )
        .await;
    assert_eq!(resp.status(), 200);
    let body: Value = resp.json().await.unwrap();
    assert!(
        body["notes"][0]
            .as_str()
            .unwrap()
            .contains("test notification")
    );
    // form-data mode: the JSON in a `data` field.
    let form = reqwest::multipart::Form::new().text(
        "data",
        String::from_utf8(fixture("uptime-kuma/down.json")).unwrap(),
    );
    let resp = app
        .http
        .post(app.url("/api/v1/signals/uptime-kuma"))
        .bearer_auth(INGEST_TOKEN)
        .multipart(form)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 202, "{}", resp.text().await.unwrap());
    smtp.wait_for("portale@asl.example", 1, Duration::from_secs(10));
    // GET mode: the same fields as query parameters.
    let up: Value = serde_json::from_slice(&fixture("uptime-kuma/up.json")).unwrap();
    let resp = app
        .http
        .get(app.url("/api/v1/signals/uptime-kuma"))
        .bearer_auth(INGEST_TOKEN)
        .query(&[
            ("msg", up["msg"].as_str().unwrap()),
            ("heartbeat", &up["heartbeat"].to_string()),
            ("monitor", &up["monitor"].to_string()),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 202);
    let mails = smtp.wait_for("portale@asl.example", 2, Duration::from_secs(10));
    assert!(
        mails[1].subject().starts_with("[Disservizio risolto]"),
        "{}",
        mails[1].subject()
    );
}

#[tokio::test]
async fn cloudevents_and_generic_bodies() {
    let (smtp, app) = app().await;
    app.subscribe(json!({"name": "Tutto", "addresses": {"email": "tutto@asl.example"}, "subscriptions": [{}]})).await;
    for (content_type, body) in [
        ("application/cloudevents+json", "cloudevents/single.json"),
        (
            "application/cloudevents-batch+json; charset=utf-8",
            "cloudevents/batch.json",
        ),
        ("application/json", "generic/zabbix.json"),
    ] {
        let resp = app
            .post(
                "/api/v1/signals/generic",
                Some(INGEST_TOKEN),
                content_type,
                fixture(body),
            )
            .await;
        assert_eq!(resp.status(), 202, "{body}");
    }
    let mails = smtp.wait_for("tutto@asl.example", 3, Duration::from_secs(10));
    let subjects: Vec<_> = mails.iter().map(Mail::subject).collect();
    assert!(
        subjects
            .iter()
            .any(|s| s.contains("database non raggiungibile")),
        "{subjects:?}"
    );
    assert!(
        subjects.iter().any(|s| s.contains("troppe connessioni")),
        "{subjects:?}"
    );
    let incidents = app
        .get_json("/api/v1/incidents?status=open", VIEWER_TOKEN)
        .await;
    let signals: Vec<String> = {
        let mut out = Vec::new();
        for i in incidents["incidents"].as_array().unwrap() {
            let detail = app
                .get_json(&format!("/api/v1/incidents/{}", i["id"]), VIEWER_TOKEN)
                .await;
            for s in detail["signals"].as_array().unwrap() {
                out.push(format!(
                    "{}|{}",
                    s["source"].as_str().unwrap(),
                    s["service"].as_str().unwrap()
                ));
            }
        }
        out
    };
    assert!(
        signals.contains(&"cloudevents|cup-backend".to_owned()),
        "{signals:?}"
    );
    assert!(signals.contains(&"generic|cup".to_owned()), "{signals:?}");
}

/// A lone replica leads. While its pipeline waits for work, it stores an alert in the step that
/// applies it, so the incident is open by the time the `202` comes back.
#[tokio::test]
async fn an_alert_stored_by_the_pipeline_has_its_incident_open_at_the_202() {
    let smtp = SmtpServer::start();
    // No safety-net step (every 200 ms in the tests' settings) in the way of the requests.
    let app = TestApp::spawn(&smtp, "", &[("BANDITORE__OUTBOX__POLL_INTERVAL", "5s")]).await;
    let mut by_pipeline = 0;
    for i in 0..5 {
        tokio::time::sleep(Duration::from_millis(150)).await;
        let before = batches_stored_by(&app, "pipeline").await;
        let body = alertmanager(
            "firing",
            "Down",
            &[
                ("service", &format!("service-{i}")),
                ("severity", "critical"),
            ],
            "down",
        );
        let resp = app
            .post_json("/api/v1/signals/alertmanager", Some(INGEST_TOKEN), &body)
            .await;
        assert_eq!(resp.status(), 202);
        let incidents = app.get_json("/api/v1/incidents", VIEWER_TOKEN).await;
        if batches_stored_by(&app, "pipeline").await > before {
            by_pipeline += 1;
            assert_eq!(
                incidents["incidents"].as_array().map(Vec::len),
                Some(i + 1),
                "open when the 202 came: {incidents}"
            );
        }
    }
    assert!(
        by_pipeline >= 4,
        "{by_pipeline} of 5 stored by the pipeline"
    );
    assert_eq!(
        batches_stored_by(&app, "pipeline").await + batches_stored_by(&app, "writer").await,
        5
    );
}

#[tokio::test]
async fn a_store_that_cannot_write_gets_503_and_nothing_is_lost() {
    use sqlx::Connection;
    let (_smtp, app) = app().await;
    let body = fixture("alertmanager/firing.json");
    // Another process takes SQLite's write lock and keeps it (an admin shell, a backup tool).
    let db = app.dir.path().join("banditore.db");
    let mut other = sqlx::SqliteConnection::connect(&format!("sqlite://{}", db.display()))
        .await
        .unwrap();
    sqlx::query("BEGIN IMMEDIATE")
        .execute(&mut other)
        .await
        .unwrap();
    let resp = app
        .post(
            "/api/v1/signals/alertmanager",
            Some(INGEST_TOKEN),
            "application/json",
            body.clone(),
        )
        .await;
    assert_eq!(resp.status(), 503, "Alertmanager retries 5xx");
    assert_eq!(resp.headers()["retry-after"], "5");
    let err: Value = resp.json().await.unwrap();
    assert!(
        err["error"].as_str().unwrap().contains("unavailable"),
        "{err}"
    );
    assert_eq!(
        app.get("/readyz", None).await.status(),
        200,
        "reads still work: the store is up, busy"
    );
    sqlx::query("ROLLBACK").execute(&mut other).await.unwrap();
    drop(other);
    // The sender retries and the signal is taken.
    let resp = app
        .post(
            "/api/v1/signals/alertmanager",
            Some(INGEST_TOKEN),
            "application/json",
            body,
        )
        .await;
    assert_eq!(resp.status(), 202);
    let incidents = eventually(
        || app.get_json("/api/v1/incidents", VIEWER_TOKEN),
        |v| v["incidents"].as_array().is_some_and(|l| l.len() == 1),
    )
    .await;
    assert_eq!(incidents["incidents"][0]["status"], "investigating");
}

/// A Datadog monitor with the webhook's default payload says firing or recovered only in its
/// title, and names neither a service nor labels; an unrelated problem posted the same way is
/// another signal, which the recovery leaves firing.
#[tokio::test]
async fn a_datadog_recovery_resolves_its_signal_and_leaves_unrelated_ones_firing() {
    let (_smtp, app) = app().await;
    for body in [
        fixture("generic/datadog-default-triggered.json"),
        serde_json::to_vec(&json!({"summary": "Certificato di referti.asl.example in scadenza"}))
            .unwrap(),
    ] {
        let resp = app
            .post(
                "/api/v1/signals/generic",
                Some(INGEST_TOKEN),
                "application/json",
                body,
            )
            .await;
        assert_eq!(resp.status(), 202);
    }
    let signals = |status: &'static str| {
        let app = &app;
        async move {
            let list = app
                .get_json(&format!("/api/v1/incidents?status={status}"), VIEWER_TOKEN)
                .await;
            let mut out = Vec::new();
            for i in list["incidents"].as_array().unwrap() {
                let detail = app
                    .get_json(&format!("/api/v1/incidents/{}", i["id"]), VIEWER_TOKEN)
                    .await;
                for s in detail["signals"].as_array().unwrap() {
                    out.push(format!(
                        "{}|{}",
                        s["status"].as_str().unwrap(),
                        s["summary"].as_str().unwrap()
                    ));
                }
            }
            out.sort();
            out
        }
    };
    let firing = eventually(|| signals("open"), |s: &Vec<String>| s.len() == 2).await;
    assert!(
        firing.iter().all(|s| s.starts_with("firing|")),
        "{firing:?}"
    );
    let resp = app
        .post(
            "/api/v1/signals/generic",
            Some(INGEST_TOKEN),
            "application/json",
            fixture("generic/datadog-default-recovered.json"),
        )
        .await;
    assert_eq!(resp.status(), 202);
    let after = eventually(
        || signals("open"),
        |s: &Vec<String>| s.iter().any(|s| s.starts_with("resolved|")),
    )
    .await;
    assert_eq!(
        after,
        vec![
            "firing|Certificato di referti.asl.example in scadenza".to_owned(),
            "resolved|[P1] [Triggered on {host:cup-db-01}] CUP backend lento".to_owned(),
        ]
    );
}
