//! Re-sends that change nothing, through the real binary: answered without a write of their
//! own, the alert's last-seen time still moving, and every change (new content, a resolution,
//! an operator's resolution) still stored and applied.

use std::time::Duration;

use serde_json::{Value, json};

use crate::support::*;

async fn post(app: &TestApp, body: &Value) -> Vec<i64> {
    let resp = app
        .post_json("/api/v1/signals/alertmanager", Some(INGEST_TOKEN), body)
        .await;
    assert_eq!(resp.status(), 202);
    let answer: Value = resp.json().await.unwrap();
    answer["signals"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_i64().unwrap())
        .collect()
}

async fn coalesced(app: &TestApp) -> f64 {
    let text = app.get("/metrics", None).await.text().await.unwrap();
    text.lines()
        .filter(|l| l.starts_with("banditore_signals_coalesced_total{"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

async fn open_incidents(app: &TestApp) -> Vec<Value> {
    app.get_json("/api/v1/incidents?status=open", VIEWER_TOKEN)
        .await["incidents"]
        .as_array()
        .unwrap()
        .clone()
}

/// The incident's only signal, as the API shows it.
async fn the_alert(app: &TestApp, id: i64) -> Value {
    let detail = app
        .get_json(&format!("/api/v1/incidents/{id}"), VIEWER_TOKEN)
        .await;
    detail["signals"][0].clone()
}

#[tokio::test]
async fn unchanged_re_sends_are_answered_without_a_write_and_every_change_still_lands() {
    let smtp = SmtpServer::start();
    let app = TestApp::spawn(&smtp, "", &[]).await;
    let firing = alertmanager(
        "firing",
        "CupDown",
        &[("service", "cup"), ("severity", "critical")],
        "CUP non risponde",
    );
    let first = post(&app, &firing).await;
    let incidents = eventually(|| open_incidents(&app), |i| i.len() == 1).await;
    let id = incidents[0]["id"].as_i64().unwrap();
    let seen_first = the_alert(&app, id).await["last_seen_at"].clone();

    // Once the engine has applied it, re-sends repeat it: each answer names the stored signal.
    for _ in 0..20 {
        assert_eq!(post(&app, &firing).await, first);
    }
    assert_eq!(coalesced(&app).await, 20.0);
    // The alert's last-seen time still moves, within about a second.
    eventually(|| the_alert(&app, id), |a| a["last_seen_at"] != seen_first).await;

    // New content is stored and applied.
    let changed = alertmanager(
        "firing",
        "CupDown",
        &[("service", "cup"), ("severity", "critical")],
        "CUP non risponde da 10 minuti",
    );
    let second = post(&app, &changed).await;
    assert!(second[0] > first[0], "{second:?} after {first:?}");
    eventually(
        || the_alert(&app, id),
        |a| a["summary"] == "CUP non risponde da 10 minuti",
    )
    .await;

    // A resolution is stored; the same firing alert sent again afterwards opens a new incident.
    let resolved = alertmanager(
        "resolved",
        "CupDown",
        &[("service", "cup"), ("severity", "critical")],
        "CUP non risponde da 10 minuti",
    );
    post(&app, &resolved).await;
    eventually(|| open_incidents(&app), |i| i.is_empty()).await;
    let again = post(&app, &changed).await;
    assert!(again[0] > second[0], "stored, not coalesced: {again:?}");
    let reopened = eventually(|| open_incidents(&app), |i| i.len() == 1).await;
    let reopened = reopened[0]["id"].as_i64().unwrap();
    assert_ne!(reopened, id);

    // An operator resolves it while the monitor still says it fires: the next re-send is
    // stored, and opens an incident again.
    let mut last = post(&app, &changed).await;
    for _ in 0..500 {
        let next = post(&app, &changed).await;
        if next == last {
            break;
        }
        last = next;
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let resp = app
        .post_json(
            &format!("/api/v1/incidents/{reopened}/updates"),
            Some(OPERATOR_TOKEN),
            &json!({"status": "resolved", "body": "Risolto a mano."}),
        )
        .await;
    assert_eq!(resp.status(), 201);
    let after_operator = post(&app, &changed).await;
    assert!(after_operator[0] > last[0], "{after_operator:?}");
    let opened = eventually(|| open_incidents(&app), |i| i.len() == 1).await;
    assert_ne!(opened[0]["id"].as_i64().unwrap(), reopened);
}

#[tokio::test]
async fn a_batch_mixing_repeats_and_news_answers_each_in_its_place() {
    let smtp = SmtpServer::start();
    let app = TestApp::spawn(&smtp, "", &[]).await;
    let one = |name: &str, summary: &str| {
        alertmanager(
            "firing",
            name,
            &[("service", "cup"), ("severity", "major")],
            summary,
        )["alerts"][0]
            .clone()
    };
    let body = |alerts: Vec<Value>| json!({"version": "4", "status": "firing", "alerts": alerts});
    let first = post(&app, &body(vec![one("A", "a"), one("B", "b")])).await;
    let open = eventually(|| open_incidents(&app), |i| i.len() == 1).await;
    let id = open[0]["id"].as_i64().unwrap();
    eventually(
        || async {
            app.get_json(&format!("/api/v1/incidents/{id}"), VIEWER_TOKEN)
                .await["signals"]
                .as_array()
                .map_or(0, Vec::len)
        },
        |n| *n == 2,
    )
    .await;
    // A repeated, B changed, C new: A answers with its stored id, B and C with new ones.
    let ids = post(
        &app,
        &body(vec![one("A", "a"), one("B", "b2"), one("C", "c")]),
    )
    .await;
    assert_eq!(ids[0], first[0]);
    assert!(ids[1] > first[1] && ids[2] > ids[1], "{ids:?}");
    assert_eq!(coalesced(&app).await, 1.0);
}

#[tokio::test]
async fn on_postgresql_every_re_send_is_stored_even_with_one_replica() {
    let Some(db) = fresh_database().await else {
        return;
    };
    let smtp = SmtpServer::start();
    // One replica as configured; a rolling restart would still run two for a while.
    let app = TestApp::spawn(&smtp, "", &[("BANDITORE__STORE__URL", db.url.as_str())]).await;
    let firing = alertmanager(
        "firing",
        "CupDown",
        &[("service", "cup"), ("severity", "critical")],
        "CUP non risponde",
    );
    let mut ids = post(&app, &firing).await;
    eventually(|| open_incidents(&app), |i| i.len() == 1).await;
    for _ in 0..5 {
        let again = post(&app, &firing).await;
        assert!(again[0] > ids[ids.len() - 1], "{again:?} after {ids:?}");
        ids.extend(again);
    }
    assert_eq!(coalesced(&app).await, 0.0);
}
