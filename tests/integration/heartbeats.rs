//! Heartbeats end to end: a monitor that stops pinging opens an incident within its grace and the
//! desk is emailed; the next ping resolves it; a silent monitor and a dark service read as one
//! incident; Alertmanager's Watchdog counts as a ping; and strangers, wrong roles, unknown and
//! hostile names get a 4xx that says why, never a 5xx.

use std::time::{Duration, Instant};

use proptest::strategy::{Strategy, ValueTree};
use proptest::test_runner::TestRunner;
use serde_json::{Value, json};

use crate::support::*;

/// The desk following CUP, to which every heartbeat test's alarms go.
pub(crate) const DESK: &str = "cup.foligno@asl.example";

/// The desk, then `heartbeat` (`[[heartbeats]]` tables, or nothing).
pub(crate) fn config(heartbeat: &str) -> String {
    format!(
        r#"
[[subscribers]]
name = "CUP Foligno"
addresses = {{ email = "{DESK}" }}
subscriptions = [{{ matchers = ['service="cup"'] }}]

{heartbeat}
"#
    )
}

const BACKUP: &str = r#"
[[heartbeats]]
name = "backup-cup"
service = "cup"
labels = { area = "umbria" }
period = "1s"
grace = "1s"
summary = "Backup notturno CUP"
"#;

async fn heartbeat(app: &TestApp, name: &str) -> Value {
    app.get_json(&format!("/api/v1/heartbeats/{name}/state"), VIEWER_TOKEN)
        .await
}

async fn ping(app: &TestApp, name: &str) -> reqwest::Response {
    app.get(&format!("/api/v1/heartbeats/{name}"), Some(INGEST_TOKEN))
        .await
}

pub(crate) async fn mails_to(smtp: &SmtpServer, n: usize) -> Vec<Mail> {
    eventually(|| async { smtp.mails_to(DESK) }, |m| m.len() >= n).await
}

#[tokio::test]
async fn a_silent_heartbeat_opens_an_incident_within_its_grace_and_the_next_ping_resolves_it() {
    let smtp = SmtpServer::start();
    let app = TestApp::spawn(&smtp, &config(BACKUP), &[]).await;
    let first = ping(&app, "backup-cup").await;
    assert_eq!(first.status(), 200);
    let first: Value = first.json().await.unwrap();
    assert_eq!(first["state"], "up");
    assert_eq!(first["was"], "new");
    // Pinged every half second: never late.
    for _ in 0..6 {
        tokio::time::sleep(Duration::from_millis(500)).await;
        assert_eq!(ping(&app, "backup-cup").await.status(), 200);
    }
    let last_ping = Instant::now();
    let state = heartbeat(&app, "backup-cup").await;
    assert_eq!(state["state"], "up", "{state}");
    assert_eq!(state["pings"], 7);
    assert!(smtp.mails_to(DESK).is_empty());

    // Silence: late after the period and the grace, and the desk is told.
    let mails = mails_to(&smtp, 1).await;
    let waited = last_ping.elapsed();
    assert!(
        waited >= Duration::from_secs(2) && waited < Duration::from_secs(5),
        "declared {waited:?} after the last ping"
    );
    // The title, then what was found, in the desk's language.
    assert!(
        mails[0]
            .text()
            .contains("Backup notturno CUP: nessun segnale da "),
        "{}",
        mails[0].text()
    );
    let state = heartbeat(&app, "backup-cup").await;
    assert_eq!(state["state"], "late", "{state}");
    assert_eq!(state["late_at"], Value::Null);
    let incidents = app.get_json("/api/v1/incidents", VIEWER_TOKEN).await;
    assert_eq!(incidents["incidents"].as_array().unwrap().len(), 1);
    let metrics = app.get("/metrics", None).await.text().await.unwrap();
    assert!(
        metrics.contains("banditore_heartbeat_late{heartbeat=\"backup-cup\"} 1"),
        "{metrics}"
    );

    // The next ping brings it back and resolves the incident.
    let back: Value = ping(&app, "backup-cup").await.json().await.unwrap();
    assert_eq!(back["was"], "late", "{back}");
    assert!(back["signal"].is_i64(), "{back}");
    let mails = mails_to(&smtp, 2).await;
    assert!(
        mails[1].subject().contains("risolto"),
        "{}",
        mails[1].subject()
    );
    assert_eq!(heartbeat(&app, "backup-cup").await["state"], "up");
    assert_eq!(smtp.mails_to(DESK).len(), 2);
}

#[tokio::test]
async fn a_failure_report_raises_the_alarm_at_once_with_what_the_monitor_said() {
    let smtp = SmtpServer::start();
    let slow = BACKUP.replace("period = \"1s\"", "period = \"1h\"");
    let mut app = TestApp::spawn(&smtp, &config(&slow), &[]).await;
    let resp = app
        .post(
            "/api/v1/heartbeats/backup-cup/fail",
            Some(INGEST_TOKEN),
            "text/plain",
            "pg_dump: error: connection to server failed\r\n\u{0}\u{202e}",
        )
        .await;
    assert_eq!(resp.status(), 200);
    let answer: Value = resp.json().await.unwrap();
    assert_eq!(
        (answer["state"].as_str(), answer["was"].as_str()),
        (Some("failed"), Some("new"))
    );
    let mails = mails_to(&smtp, 1).await;
    assert!(
        mails[0].text().contains(
            "il monitor ha segnalato un errore: pg_dump: error: connection to server failed"
        ),
        "{}",
        mails[0].text()
    );
    let state = heartbeat(&app, "backup-cup").await;
    assert_eq!(state["state"], "failed");
    assert_eq!(
        state["detail"],
        "pg_dump: error: connection to server failed"
    );
    // The console shows it, in its reader's language, to anyone who may read.
    app.add_user("v.verdi", "una password lunga abbastanza", "viewer")
        .await;
    let b = console_browser();
    let login = console_login(&app, &b, "v.verdi", "una password lunga abbastanza").await;
    assert_eq!(login.status(), 303);
    let page = b.get(app.url("/console/heartbeats")).send().await.unwrap();
    assert_eq!(page.status(), 200);
    let html = page.text().await.unwrap();
    assert!(
        html.contains("backup-cup") && html.contains("in errore"),
        "{html}"
    );
    assert!(
        html.contains("pg_dump: error: connection to server failed"),
        "{html}"
    );
    // Push-style: `?status=up` brings it back.
    let up = app
        .get(
            "/api/v1/heartbeats/backup-cup?status=up&msg=OK&ping=12",
            Some(INGEST_TOKEN),
        )
        .await;
    assert_eq!(up.status(), 200);
    let mails = mails_to(&smtp, 2).await;
    assert!(
        mails[1].subject().contains("risolto"),
        "{}",
        mails[1].subject()
    );
}

#[tokio::test]
async fn a_silent_monitor_and_a_dark_service_read_as_one_incident() {
    let smtp = SmtpServer::start();
    // Never pinged: late two seconds after the start, inside the alert's grouping wait.
    let app = TestApp::spawn(
        &smtp,
        &config(BACKUP),
        &[("BANDITORE__ROUTING__GROUP_WAIT", "5s")],
    )
    .await;
    fire_alert(&app, "firing", "cup", "Portale CUP irraggiungibile").await;
    let mails = mails_to(&smtp, 1).await;
    let text = mails[0].text();
    assert!(text.contains("Portale CUP irraggiungibile"), "{text}");
    assert!(text.contains("Backup notturno CUP"), "{text}");
    let incidents = app.get_json("/api/v1/incidents", VIEWER_TOKEN).await;
    assert_eq!(
        incidents["incidents"].as_array().unwrap().len(),
        1,
        "{incidents}"
    );
    assert_eq!(heartbeat(&app, "backup-cup").await["state"], "late");
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(smtp.mails_to(DESK).len(), 1, "one message naming both");
}

#[tokio::test]
async fn alertmanagers_watchdog_is_a_ping_and_not_an_incident() {
    let smtp = SmtpServer::start();
    let watched = r#"
[[heartbeats]]
name = "prometheus-umbria"
service = "cup"
period = "1h"
watchdog = ['alertname="Watchdog"', 'cluster="umbria"']
"#;
    let app = TestApp::spawn(&smtp, &config(watched), &[]).await;
    let dog = alertmanager(
        "firing",
        "Watchdog",
        &[("cluster", "umbria"), ("severity", "none")],
        "An alert that should always be firing",
    );
    let resp = app
        .post_json("/api/v1/signals/alertmanager", Some(INGEST_TOKEN), &dog)
        .await;
    assert_eq!(resp.status(), 200);
    let answer: Value = resp.json().await.unwrap();
    assert_eq!(answer["status"], "ok");
    assert!(
        answer["notes"][0]
            .as_str()
            .unwrap()
            .contains("prometheus-umbria"),
        "{answer}"
    );
    let state = heartbeat(&app, "prometheus-umbria").await;
    assert_eq!(
        (state["state"].as_str(), state["pings"].as_i64()),
        (Some("up"), Some(1))
    );
    // Another cluster's Watchdog is an alert like any other.
    let other = alertmanager(
        "firing",
        "Watchdog",
        &[("cluster", "marche"), ("service", "cup")],
        "Watchdog delle Marche",
    );
    let resp = app
        .post_json("/api/v1/signals/alertmanager", Some(INGEST_TOKEN), &other)
        .await;
    assert_eq!(resp.status(), 202);
    let incidents = eventually(
        || async { app.get_json("/api/v1/incidents", VIEWER_TOKEN).await["incidents"].clone() },
        |i| i.as_array().is_some_and(|a| a.len() == 1),
    )
    .await;
    assert!(
        incidents.to_string().contains("Watchdog delle Marche"),
        "{incidents}"
    );
    let list = app.get_json("/api/v1/heartbeats", VIEWER_TOKEN).await;
    assert_eq!(
        list["heartbeats"][0]["watchdog"],
        json!(["alertname=\"Watchdog\"", "cluster=\"umbria\""])
    );
}

#[tokio::test]
async fn strangers_wrong_roles_unknown_and_hostile_names_get_a_4xx_that_says_why() {
    let smtp = SmtpServer::start();
    let slow = BACKUP.replace("period = \"1s\"", "period = \"1h\"");
    let app = TestApp::spawn(&smtp, &config(&slow), &[]).await;
    let path = "/api/v1/heartbeats/backup-cup";
    assert_eq!(app.get(path, None).await.status(), 401);
    assert_eq!(app.get(path, Some("bnd_not-a-token")).await.status(), 401);
    let viewer = app.get(path, Some(VIEWER_TOKEN)).await;
    assert_eq!(viewer.status(), 403, "reading may not ping");
    let ingest = app.get("/api/v1/heartbeats", Some(INGEST_TOKEN)).await;
    assert_eq!(ingest.status(), 403, "pinging may not read");
    let unknown = ping(&app, "backup-referti").await;
    assert_eq!(unknown.status(), 404);
    let body: Value = unknown.json().await.unwrap();
    assert!(
        body["error"].as_str().unwrap().contains("`backup-referti`"),
        "{body}"
    );
    let bogus = app
        .get(&format!("{path}?status=maybe"), Some(INGEST_TOKEN))
        .await;
    assert_eq!(bogus.status(), 400);
    let body: Value = bogus.json().await.unwrap();
    assert_eq!(body["field"], "status");
    let huge = app
        .post(
            &format!("{path}/fail"),
            Some(INGEST_TOKEN),
            "text/plain",
            "x".repeat(2 << 20),
        )
        .await;
    assert_eq!(huge.status(), 413);
    assert_eq!(
        heartbeat(&app, "backup-cup").await["state"],
        "new",
        "nothing half written"
    );

    // Names as a stranger could write them, percent-encoded into the path.
    let mut runner = TestRunner::deterministic();
    let names = proptest::prop_oneof![
        proptest::arbitrary::any::<String>(),
        "[\\x00-\\x20<>\"'%/\\\\?#\u{202e}\u{fffe}é🚨]{0,40}",
        "[a-z]{200,3000}",
    ];
    for _ in 0..64 {
        let name = names.new_tree(&mut runner).unwrap().current();
        // `.` and `..` are path segments a client resolves before sending.
        if name.is_empty() || name.chars().all(|c| c == '.') {
            continue;
        }
        let encoded: String = url::form_urlencoded::byte_serialize(name.as_bytes()).collect();
        let encoded = encoded.replace('+', "%20");
        for suffix in ["", "/fail"] {
            let resp = app
                .post(
                    &format!("/api/v1/heartbeats/{encoded}{suffix}"),
                    Some(INGEST_TOKEN),
                    "text/plain",
                    name.clone(),
                )
                .await;
            assert_eq!(resp.status(), 404, "{name:?}{suffix}");
            let body: Value = resp.json().await.unwrap();
            assert!(
                body["error"]
                    .as_str()
                    .unwrap()
                    .contains("no heartbeat is named"),
                "{body}"
            );
        }
        let resp = app
            .get(
                &format!("/api/v1/heartbeats/{encoded}/state"),
                Some(VIEWER_TOKEN),
            )
            .await;
        assert_eq!(resp.status(), 404, "{name:?}/state");
    }
    assert!(smtp.mails_to(DESK).is_empty());
}

#[tokio::test]
async fn a_head_request_counts_as_a_ping_as_for_healthchecks() {
    // Healthchecks.io counts HEAD, GET and POST to a ping URL (`wget --spider` pings with a
    // HEAD), and the docs say so; only with a token allowed to ingest.
    let smtp = SmtpServer::start();
    let slow = BACKUP.replace("period = \"1s\"", "period = \"1h\"");
    let app = TestApp::spawn(&smtp, &config(&slow), &[]).await;
    // Straight to the server: the contract's forwarder knows the documented methods only.
    let url = format!("http://{}/api/v1/heartbeats/backup-cup", app.addr);
    let head = |token: Option<&'static str>| {
        let mut req = app.http.head(&url);
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        req.send()
    };
    assert_eq!(head(None).await.unwrap().status(), 401);
    assert_eq!(head(Some(VIEWER_TOKEN)).await.unwrap().status(), 403);
    assert_eq!(heartbeat(&app, "backup-cup").await["pings"], 0);
    let pinged = head(Some(INGEST_TOKEN)).await.unwrap();
    assert_eq!(pinged.status(), 200);
    assert_eq!(pinged.bytes().await.unwrap().len(), 0, "a HEAD has no body");
    let state = heartbeat(&app, "backup-cup").await;
    assert_eq!(
        (state["state"].as_str(), state["pings"].as_i64()),
        (Some("up"), Some(1)),
        "{state}"
    );
}

/// The `banditore_heartbeat_alarms_total` this replica counted for `name`.
async fn alarms_counted(app: &TestApp, name: &str) -> u64 {
    let metrics = app.get("/metrics", None).await.text().await.unwrap();
    let labels = [
        format!("heartbeat=\"{name}\""),
        "cause=\"silent\"".to_owned(),
    ];
    metrics
        .lines()
        .find(|l| {
            l.starts_with("banditore_heartbeat_alarms_total{")
                && labels.iter().all(|label| l.contains(label.as_str()))
        })
        .and_then(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .map_or(0, |n| n as u64)
}

#[tokio::test]
async fn two_replicas_checking_the_same_heartbeat_raise_one_alarm() {
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
        apps.push(TestApp::spawn(&smtp, &config(BACKUP), &env).await);
    }
    // Pinged through one replica, read through the other: they share the clock.
    assert_eq!(ping(&apps[0], "backup-cup").await.status(), 200);
    assert_eq!(heartbeat(&apps[1], "backup-cup").await["state"], "up");
    let mails = mails_to(&smtp, 1).await;
    assert!(
        mails[0].text().contains("Backup notturno CUP"),
        "{}",
        mails[0].text()
    );
    // Both replicas looked every second; one of them declared.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let counted =
        alarms_counted(&apps[0], "backup-cup").await + alarms_counted(&apps[1], "backup-cup").await;
    assert_eq!(counted, 1, "one alarm over both replicas");
    assert_eq!(smtp.mails_to(DESK).len(), 1);
    let incidents = apps[1].get_json("/api/v1/incidents", VIEWER_TOKEN).await;
    assert_eq!(
        incidents["incidents"].as_array().unwrap().len(),
        1,
        "{incidents}"
    );
    // The ping through the other replica resolves it.
    let back: Value = ping(&apps[1], "backup-cup").await.json().await.unwrap();
    assert_eq!(back["was"], "late");
    let mails = mails_to(&smtp, 2).await;
    assert!(
        mails[1].subject().contains("risolto"),
        "{}",
        mails[1].subject()
    );
}
