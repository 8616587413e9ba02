//! Prometheus lists Banditore in `alerting.alertmanagers`: a real `prometheus` (Debian's
//! package) on a random port fires a rule at once and posts to the real binary's
//! `POST /api/v2/alerts` with an ingest token as its bearer credentials; the desk gets the email.
//! Stopped, it sends nothing more, and the incident resolves when the alert's `endsAt` passes.

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::{Value, json};

use crate::support::*;

const PROMETHEUS: &str = "/usr/bin/prometheus";

/// A Prometheus process, stopped when dropped.
struct Prometheus {
    child: Child,
    _dir: tempfile::TempDir,
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Prometheus {
    /// Prometheus evaluating `vector(1)` every second and re-sending every second, so that its
    /// `endsAt` is 4 s ahead (4 × max(evaluation interval, resend delay)); `None` outside CI
    /// when it is not installed.
    fn start(alertmanager: &str) -> Option<Prometheus> {
        if !std::path::Path::new(PROMETHEUS).exists() {
            assert!(
                std::env::var_os("CI").is_none(),
                "CI needs Prometheus ({PROMETHEUS}): .ci/run installs the `prometheus` package"
            );
            eprintln!("skipping: no Prometheus here (apt-get install prometheus)");
            return None;
        }
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("rules.yml"),
            r#"groups:
  - name: cup
    interval: 1s
    rules:
      - alert: CupBackendDown
        expr: vector(1)
        labels:
          service: cup-backend
          severity: critical
        annotations:
          summary: Il CUP non risponde
"#,
        )
        .unwrap();
        std::fs::write(
            dir.path().join("prometheus.yml"),
            format!(
                r#"global:
  evaluation_interval: 1s
rule_files: [rules.yml]
alerting:
  alertmanagers:
    - scheme: http
      timeout: 5s
      authorization:
        credentials: {INGEST_TOKEN}
      static_configs:
        - targets: ["{alertmanager}"]
"#
            ),
        )
        .unwrap();
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .unwrap();
        let child = Command::new(PROMETHEUS)
            .arg(format!(
                "--config.file={}",
                dir.path().join("prometheus.yml").display()
            ))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .arg("--rules.alert.resend-delay=1s")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start prometheus");
        Some(Prometheus { child, _dir: dir })
    }
}

#[tokio::test]
async fn prometheus_alerts_the_desk_directly_and_a_stopped_alert_resolves_at_its_end() {
    let smtp = SmtpServer::start();
    let app = TestApp::spawn(&smtp, "", &[]).await;
    app.subscribe(json!({"name": "CUP", "addresses": {"email": "cup@asl.example"}, "subscriptions": [{"matchers": ["service=\"cup-backend\""]}]}))
        .await;
    let target = app.base.trim_start_matches("http://").trim_end_matches('/');
    let Some(mut prometheus) = Prometheus::start(target) else {
        return;
    };
    let mails = smtp.wait_for("cup@asl.example", 1, Duration::from_secs(20));
    assert!(
        mails[0].text().contains("Il CUP non risponde"),
        "{}",
        mails[0].text()
    );
    // Prometheus keeps re-sending: the alert stays firing, its re-sends cost no write.
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert_eq!(smtp.mails_to("cup@asl.example").len(), 1, "still firing");
    let incidents = app
        .get_json("/api/v1/incidents?status=open", VIEWER_TOKEN)
        .await;
    assert_eq!(incidents["incidents"].as_array().unwrap().len(), 1);
    // Stopped, it says nothing more: the alert resolves once its endsAt (4 s on) passes.
    let _ = prometheus.child.kill();
    let _ = prometheus.child.wait();
    let mails = smtp.wait_for("cup@asl.example", 2, Duration::from_secs(15));
    assert!(
        mails[1].subject().starts_with("[Disservizio risolto]"),
        "{}",
        mails[1].subject()
    );
    let metrics = app.get("/metrics", None).await.text().await.unwrap();
    assert!(
        metrics.contains("banditore_alerts_expired_total 1"),
        "{}",
        metrics
            .lines()
            .filter(|l| l.contains("expired") || l.contains("prometheus"))
            .collect::<Vec<_>>()
            .join("\n")
    );
}

/// A postable alert, as Prometheus writes it.
fn alert(summary: &str, ends_in: i64) -> Value {
    let now = jiff::Timestamp::now();
    json!([{
        "annotations": {"summary": summary},
        "endsAt": (now + jiff::SignedDuration::from_secs(ends_in)).to_string(),
        "startsAt": now.to_string(),
        "generatorURL": "http://prometheus-0:9090/graph?g0.expr=vector%281%29&g0.tab=1",
        "labels": {"alertname": "CupBackendDown", "service": "cup-backend", "severity": "critical"},
    }])
}

#[tokio::test]
async fn alertmanagers_answers_and_refusals() {
    let smtp = SmtpServer::start();
    let app = TestApp::spawn(&smtp, "", &[]).await;
    // 200 with an empty body, as Alertmanager; basic auth works as well as a bearer token.
    let resp = app
        .http
        .post(app.url("/api/v2/alerts"))
        .basic_auth("prometheus", Some(INGEST_TOKEN))
        .json(&alert("Il CUP non risponde", 240))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.text().await.unwrap(), "");
    // The fixtures, as Prometheus's notifier writes them, byte for byte.
    for name in ["firing.json", "resolved.json"] {
        let body = std::fs::read(format!(
            "{}/tests/fixtures/ingest/prometheus/{name}",
            env!("CARGO_MANIFEST_DIR")
        ))
        .unwrap();
        let resp = app
            .post(
                "/api/v2/alerts",
                Some(INGEST_TOKEN),
                "application/json",
                body,
            )
            .await;
        assert_eq!(resp.status(), 200, "{name}");
    }
    // Refusals are Alertmanager's: the reason as a JSON string, naming the field.
    let refused = |token: Option<&'static str>, body: &'static str| {
        let app = &app;
        async move {
            let resp = app
                .post(
                    "/api/v2/alerts",
                    token,
                    "application/json",
                    body.as_bytes().to_vec(),
                )
                .await;
            let status = resp.status().as_u16();
            let text: Value = resp.json().await.unwrap();
            (status, text.as_str().unwrap().to_owned())
        }
    };
    let (status, text) = refused(None, "[]").await;
    assert_eq!(
        (status, text.as_str()),
        (401, "missing or invalid credentials")
    );
    let (status, text) = refused(Some("not-a-token"), "[]").await;
    assert_eq!(status, 401, "{text}");
    let (status, text) = refused(Some(VIEWER_TOKEN), "[]").await;
    assert_eq!(status, 403);
    assert!(text.contains("ingest role"), "{text}");
    let (status, text) = refused(Some(INGEST_TOKEN), "{\"alerts\": []}").await;
    assert_eq!(status, 400);
    assert!(text.contains("JSON array"), "{text}");
    let (status, text) = refused(Some(INGEST_TOKEN), "[{\"labels\": {}}]").await;
    assert_eq!(
        (status, text.as_str()),
        (400, "[0].labels: at least one label pair required")
    );
    // As Alertmanager, an alert that fails validation costs only itself: the valid one beside
    // it is stored, and the answer is still 400, naming the invalid one.
    let (status, text) = refused(
        Some(INGEST_TOKEN),
        r#"[{"labels": {}}, {"labels": {"alertname": "PrenotazioniLente", "service": "prenotazioni"}, "annotations": {"summary": "Prenotazioni lente"}}]"#,
    )
    .await;
    assert_eq!(
        (status, text.as_str()),
        (400, "[0].labels: at least one label pair required")
    );
    let (status, text) = refused(
        Some(INGEST_TOKEN),
        "[{\"labels\": {\"a\": \"b\"}, \"endsAt\": 7}, {\"labels\": 1}]",
    )
    .await;
    assert_eq!(status, 400);
    assert!(text.starts_with("[1].labels:"), "{text}");
    let (status, text) = refused(Some(INGEST_TOKEN), "[{\"labels\": {\"a\": \"b\"").await;
    assert_eq!(status, 400);
    assert!(text.contains("malformed JSON"), "{text}");
    let big = format!("[{{\"labels\": {{\"a\": \"{}\"}}}}]", "x".repeat(2 << 20));
    let resp = app
        .post(
            "/api/v2/alerts",
            Some(INGEST_TOKEN),
            "application/json",
            big.into_bytes(),
        )
        .await;
    assert_eq!(resp.status(), 413);
    let resp = app
        .post(
            "/api/v2/alerts",
            Some(INGEST_TOKEN),
            "application/x-www-form-urlencoded",
            b"a=b".to_vec(),
        )
        .await;
    assert_eq!(resp.status(), 415);
    // The alerts taken opened three incidents (cup-backend, referti's alert without an end, and
    // the valid alert posted beside an invalid one); nothing refused left a trace.
    let open = eventually(
        || app.get_json("/api/v1/incidents?status=open", VIEWER_TOKEN),
        |v| v["incidents"].as_array().is_some_and(|i| i.len() == 3),
    )
    .await;
    let mut titles: Vec<&str> = open["incidents"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["title"].as_str().unwrap())
        .collect();
    titles.sort();
    assert_eq!(
        titles,
        [
            "Il CUP non risponde",
            "Prenotazioni lente",
            "Referti: disk almost full"
        ]
    );
}

#[tokio::test]
async fn a_storm_of_re_sends_keeps_the_alert_firing_without_a_write_each_then_it_ends() {
    let smtp = SmtpServer::start();
    let app = TestApp::spawn(&smtp, "", &[]).await;
    app.subscribe(json!({"name": "CUP", "addresses": {"email": "cup@asl.example"}, "subscriptions": [{"matchers": ["service=\"cup-backend\""]}]}))
        .await;
    let post = |body: Value| {
        let app = &app;
        async move {
            let resp = app
                .post_json("/api/v2/alerts", Some(INGEST_TOKEN), &body)
                .await;
            assert_eq!(resp.status(), 200);
        }
    };
    post(alert("Il CUP non risponde", 6)).await;
    smtp.wait_for("cup@asl.example", 1, Duration::from_secs(10));
    // Ten re-sends a second apart, each moving endsAt 6 s on: the alert outlives its first end.
    for _ in 0..10 {
        tokio::time::sleep(Duration::from_secs(1)).await;
        post(alert("Il CUP non risponde", 6)).await;
    }
    assert_eq!(
        smtp.mails_to("cup@asl.example").len(),
        1,
        "never resolved while re-sent"
    );
    let metrics = app.get("/metrics", None).await.text().await.unwrap();
    let coalesced: f64 = metrics
        .lines()
        .filter(|l| l.starts_with("banditore_signals_coalesced_total{source=\"prometheus\"}"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum();
    assert!(
        coalesced >= 9.0,
        "re-sends answered without a write: {coalesced}"
    );
    // Then silence: resolved about 6 s after the last re-send.
    let mails = smtp.wait_for("cup@asl.example", 2, Duration::from_secs(15));
    assert!(
        mails[1].subject().starts_with("[Disservizio risolto]"),
        "{}",
        mails[1].subject()
    );
}
