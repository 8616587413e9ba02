//! Heartbeats defined through the API, end to end through the real binary: one defined by an
//! admin falls silent and the desk is emailed; deleting it while late resolves the incident; it
//! outlives a restart; the configuration's are read-only; a second replica on PostgreSQL takes in
//! a definition and its Watchdog on its own; and wrong roles, hostile definitions and names,
//! huge and malformed bodies get a 4xx naming the problem, with nothing half written.

use std::time::Duration;

use proptest::strategy::{Strategy, ValueTree};
use proptest::test_runner::TestRunner;
use serde_json::{Value, json};

use crate::heartbeats::{DESK, config, mails_to};
use crate::support::*;

const CONFIGURED: &str = r#"
[[heartbeats]]
name = "backup-cup"
service = "cup"
period = "1h"
"#;

async fn send(
    app: &TestApp,
    method: reqwest::Method,
    path: &str,
    token: &str,
    body: Option<&Value>,
) -> reqwest::Response {
    let mut req = reqwest::Client::new()
        .request(method, app.url(path))
        .bearer_auth(token);
    if let Some(body) = body {
        req = req.json(body);
    }
    req.send().await.unwrap()
}

async fn names(app: &TestApp) -> Vec<(String, String)> {
    let list = app.get_json("/api/v1/heartbeats", VIEWER_TOKEN).await;
    list["heartbeats"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| {
            (
                h["name"].as_str().unwrap().to_owned(),
                h["origin"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

#[tokio::test]
async fn a_heartbeat_defined_by_an_admin_alarms_when_silent_and_deleting_it_resolves_the_incident()
{
    let smtp = SmtpServer::start();
    let mut app = TestApp::spawn(&smtp, &config(""), &[]).await;
    let made = app
        .post_json(
            "/api/v1/heartbeats",
            Some(ADMIN_TOKEN),
            &json!({"name": "backup-api", "service": "cup", "period": "1s", "grace": "1s",
                    "summary": "Backup notturno via API", "labels": {"area": "umbria"}}),
        )
        .await;
    assert_eq!(made.status(), 201);
    let made: Value = made.json().await.unwrap();
    assert_eq!(
        (made["origin"].as_str(), made["state"].as_str()),
        (Some("api"), Some("new")),
        "{made}"
    );
    assert_eq!(made["defined_by"], "admin");
    let pinged = app
        .get("/api/v1/heartbeats/backup-api", Some(INGEST_TOKEN))
        .await;
    assert_eq!(pinged.status(), 200);
    // Silent: late after its period and grace, and the desk is told.
    let mails = mails_to(&smtp, 1).await;
    assert!(
        mails[0].text().contains("Backup notturno via API"),
        "{}",
        mails[0].text()
    );
    let state = app
        .get_json("/api/v1/heartbeats/backup-api/state", VIEWER_TOKEN)
        .await;
    assert_eq!(state["state"], "late", "{state}");
    // Deleted while late: the incident is resolved, and the name is unknown from then on.
    let gone = send(
        &app,
        reqwest::Method::DELETE,
        "/api/v1/heartbeats/backup-api",
        ADMIN_TOKEN,
        None,
    )
    .await;
    assert_eq!(gone.status(), 204);
    let mails = mails_to(&smtp, 2).await;
    assert!(
        mails[1].subject().contains("risolto"),
        "{}",
        mails[1].subject()
    );
    let ping = app
        .get("/api/v1/heartbeats/backup-api", Some(INGEST_TOKEN))
        .await;
    assert_eq!(ping.status(), 404);
    let audit = app
        .get_json("/api/v1/audit", VIEWER_TOKEN)
        .await
        .to_string();
    assert!(
        audit.contains("heartbeat.created") && audit.contains("heartbeat.deleted"),
        "{audit}"
    );
    // One defined anew outlives a restart: a start forgets only the configuration's.
    let again = app
        .post_json(
            "/api/v1/heartbeats",
            Some(ADMIN_TOKEN),
            &json!({"name": "nightly", "service": "cup", "period": "1d"}),
        )
        .await;
    assert_eq!(again.status(), 201);
    let patched = send(
        &app,
        reqwest::Method::PATCH,
        "/api/v1/heartbeats/nightly",
        ADMIN_TOKEN,
        Some(&json!({"grace": "2h", "severity": "major"})),
    )
    .await;
    assert_eq!(patched.status(), 200);
    let patched: Value = patched.json().await.unwrap();
    assert_eq!(
        (patched["grace_ms"].as_u64(), patched["severity"].as_str()),
        (Some(7_200_000), Some("major"))
    );
    // The console tells the API's heartbeats from the configuration's.
    app.add_user("v.verdi", "una password lunga abbastanza", "viewer")
        .await;
    let b = console_browser();
    let login = console_login(&app, &b, "v.verdi", "una password lunga abbastanza").await;
    assert_eq!(login.status(), 303);
    let page = b.get(app.url("/console/heartbeats")).send().await.unwrap();
    let html = page.text().await.unwrap();
    assert!(html.contains("nightly") && html.contains("(API)"), "{html}");
    // A deleted late heartbeat is no longer counted late.
    let metrics = app.get("/metrics", None).await.text().await.unwrap();
    assert!(
        metrics.contains("banditore_heartbeat_late{heartbeat=\"backup-api\"} 0"),
        "{metrics}"
    );
    app.terminate();
    app.start().await;
    assert_eq!(names(&app).await, vec![("nightly".into(), "api".into())]);
    assert_eq!(smtp.mails_to(DESK).len(), 2);
    assert!(app.take_contract_violations().is_empty());
}

#[tokio::test]
async fn the_configurations_heartbeats_are_read_only_and_bad_requests_get_a_4xx_naming_the_problem()
{
    let smtp = SmtpServer::start();
    let app = TestApp::spawn(&smtp, &config(CONFIGURED), &[]).await;
    let body = json!({"name": "backup-cup", "service": "cup", "period": "1m"});
    for (method, path, body) in [
        (reqwest::Method::POST, "/api/v1/heartbeats", Some(&body)),
        (
            reqwest::Method::PUT,
            "/api/v1/heartbeats/backup-cup",
            Some(&body),
        ),
        (
            reqwest::Method::PATCH,
            "/api/v1/heartbeats/backup-cup",
            Some(&body),
        ),
        (
            reqwest::Method::DELETE,
            "/api/v1/heartbeats/backup-cup",
            None,
        ),
    ] {
        let resp = send(&app, method.clone(), path, ADMIN_TOKEN, body).await;
        assert_eq!(resp.status(), 409, "{method} {path}");
        let said: Value = resp.json().await.unwrap();
        assert!(
            said["error"]
                .as_str()
                .unwrap()
                .contains("defined in the configuration"),
            "{said}"
        );
    }
    // Managing heartbeats is for admins: an operator, a viewer, an ingest token are refused.
    for token in [OPERATOR_TOKEN, VIEWER_TOKEN, INGEST_TOKEN] {
        let other = json!({"name": "other", "service": "cup", "period": "1m"});
        let resp = app
            .post_json("/api/v1/heartbeats", Some(token), &other)
            .await;
        assert_eq!(resp.status(), 403);
    }
    let stranger = app.post_json("/api/v1/heartbeats", None, &json!({})).await;
    assert_eq!(stranger.status(), 401);
    let post = |body: String, kind: &'static str| {
        let app = &app;
        async move {
            app.post("/api/v1/heartbeats", Some(ADMIN_TOKEN), kind, body)
                .await
        }
    };
    assert_eq!(
        post("x".repeat(2 << 20), "application/json").await.status(),
        413
    );
    assert_eq!(post("{".into(), "application/json").await.status(), 400);
    assert_eq!(
        post("name=x".into(), "application/x-www-form-urlencoded")
            .await
            .status(),
        415
    );
    let field = |body: Value| {
        let app = &app;
        async move {
            let resp = app
                .post_json("/api/v1/heartbeats", Some(ADMIN_TOKEN), &body)
                .await;
            assert_eq!(resp.status(), 400, "{body}");
            resp.json::<Value>().await.unwrap()["field"].clone()
        }
    };
    let base = json!({"name": "job", "service": "cup", "period": "1m"});
    let with = |k: &str, v: Value| {
        let mut b = base.clone();
        b[k] = v;
        b
    };
    assert_eq!(field(with("period", json!("1ms"))).await, "period");
    assert_eq!(field(with("name", json!("a/b"))).await, "name");
    assert_eq!(
        field(with("watchdog", json!(["cluster!=\"\""]))).await,
        "watchdog"
    );
    assert_eq!(
        field(with("labels", json!({"heartbeat": "forged"}))).await,
        "labels.heartbeat"
    );

    // Definitions as a stranger could write them: refused naming a field, or made; never a 5xx.
    let mut runner = TestRunner::deterministic();
    let text = proptest::prop_oneof![
        proptest::arbitrary::any::<String>(),
        "[\\x00-\\x20<>\"'%/\\\\?#\u{202e}\u{fffe}é🚨]{0,40}",
        "[a-z]{60,70}",
    ];
    let mut made = 0;
    for _ in 0..48 {
        let mut pick = || text.new_tree(&mut runner).unwrap().current();
        let (name, service, key, value) = (pick(), pick(), pick(), pick());
        let body = json!({"name": name, "service": service, "labels": {key: value},
                          "period": "1h"});
        let resp = app
            .post_json("/api/v1/heartbeats", Some(ADMIN_TOKEN), &body)
            .await;
        let status = resp.status().as_u16();
        let said: Value = resp.json().await.unwrap();
        match status {
            201 => made += 1,
            400 => assert!(
                said["field"].is_string() || said["error"].is_string(),
                "{said}"
            ),
            409 => {}
            _ => panic!("{status} for {body}: {said}"),
        }
        // The same name in a path, for PUT and DELETE.
        if name.is_empty() || name.chars().all(|c| c == '.') {
            continue;
        }
        let encoded: String = url::form_urlencoded::byte_serialize(name.as_bytes()).collect();
        let path = format!("/api/v1/heartbeats/{}", encoded.replace('+', "%20"));
        let put = send(&app, reqwest::Method::PUT, &path, ADMIN_TOKEN, Some(&base)).await;
        assert!(
            put.status().is_client_error() || put.status() == 200,
            "{name:?}: {}",
            put.status()
        );
        let del = send(&app, reqwest::Method::DELETE, &path, ADMIN_TOKEN, None).await;
        assert!(
            del.status().is_client_error() || del.status() == 204,
            "{name:?}: {}",
            del.status()
        );
    }
    // Every heartbeat made was deleted again; the configuration's is as it was.
    let left = names(&app).await;
    assert_eq!(
        left,
        vec![("backup-cup".into(), "config".into())],
        "{made} made"
    );
    let state = app
        .get_json("/api/v1/heartbeats/backup-cup/state", VIEWER_TOKEN)
        .await;
    assert_eq!(
        (state["state"].as_str(), state["period_ms"].as_u64()),
        (Some("new"), Some(3_600_000))
    );
    assert!(smtp.mails_to(DESK).is_empty());
}

#[tokio::test]
async fn a_second_replica_takes_in_a_definition_and_its_watchdog_on_its_own() {
    let Some(db) = fresh_database().await else {
        return;
    };
    let smtp = SmtpServer::start();
    let mut apps = Vec::new();
    for i in 0..2 {
        let name = format!("replica-{i}");
        let env: Vec<(&str, &str)> = vec![
            ("BANDITORE__STORE__URL", &db.url),
            ("BANDITORE__STORE__REPLICAS", "2"),
            ("BANDITORE__CLUSTER__INSTANCE", &name),
            ("BANDITORE__CLUSTER__LEADER_LEASE", "3s"),
        ];
        apps.push(TestApp::spawn(&smtp, &config(""), &env).await);
    }
    let made = apps[0]
        .post_json(
            "/api/v1/heartbeats",
            Some(ADMIN_TOKEN),
            &json!({"name": "prometheus-marche", "service": "cup", "period": "1h",
                    "watchdog": ["alertname=\"Watchdog\"", "cluster=\"marche\""]}),
        )
        .await;
    assert_eq!(made.status(), 201);
    // The other replica's once-a-second check takes it in, with nothing asking it to.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let dog = alertmanager(
        "firing",
        "Watchdog",
        &[("cluster", "marche"), ("severity", "none")],
        "An alert that should always be firing",
    );
    let resp = apps[1]
        .post_json("/api/v1/signals/alertmanager", Some(INGEST_TOKEN), &dog)
        .await;
    assert_eq!(resp.status(), 200, "a ping, not an alert");
    let answer: Value = resp.json().await.unwrap();
    assert!(
        answer["notes"][0]
            .as_str()
            .unwrap_or_default()
            .contains("prometheus-marche"),
        "{answer}"
    );
    let state = apps[1]
        .get_json("/api/v1/heartbeats/prometheus-marche/state", VIEWER_TOKEN)
        .await;
    assert_eq!(
        (
            state["origin"].as_str(),
            state["state"].as_str(),
            state["pings"].as_i64()
        ),
        (Some("api"), Some("up"), Some(1))
    );
    // Deleted through the first: the second stops treating the Watchdog as a ping.
    let gone = send(
        &apps[0],
        reqwest::Method::DELETE,
        "/api/v1/heartbeats/prometheus-marche",
        ADMIN_TOKEN,
        None,
    )
    .await;
    assert_eq!(gone.status(), 204);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let resp = apps[1]
        .post_json("/api/v1/signals/alertmanager", Some(INGEST_TOKEN), &dog)
        .await;
    assert_eq!(resp.status(), 202, "an alert like any other again");
    // A restart of either replica keeps no ghost of it, and nobody was told of a silence.
    apps[1].terminate();
    apps[1].start().await;
    assert!(names(&apps[1]).await.is_empty());
}
