//! Email over STARTTLS and implicit TLS with authentication, against a real TLS-speaking SMTP
//! server with a test certificate authority.

use std::time::Duration;

use serde_json::json;

use crate::support::*;

const PASSWORD: &str = "smtp-password-never-logged";

/// The app, and the folder holding the CA file it trusts (kept alive as long as the app).
async fn app_for(
    smtp: &SmtpServer,
    tls: &TestTls,
    mode: &str,
    password: &str,
) -> (TestApp, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let ca = dir.path().join("ca.pem");
    std::fs::write(&ca, &tls.ca_pem).unwrap();
    let port = smtp.addr().port().to_string();
    let ca_path = ca.display().to_string();
    let app = TestApp::spawn(
        smtp,
        "",
        &[
            ("BANDITORE__CHANNELS__EMAIL__HOST", "localhost"),
            ("BANDITORE__CHANNELS__EMAIL__PORT", &port),
            ("BANDITORE__CHANNELS__EMAIL__TLS", mode),
            ("BANDITORE__CHANNELS__EMAIL__CA_FILE", &ca_path),
            ("BANDITORE__CHANNELS__EMAIL__USERNAME", "banditore"),
            (
                "BANDITORE__CHANNELS__EMAIL__PASSWORD_ENV",
                "TEST_SMTP_PASSWORD",
            ),
            ("TEST_SMTP_PASSWORD", password),
        ],
    )
    .await;
    app.subscribe(
        json!({"name": "Sala", "addresses": {"email": "sala@asl.example"}, "subscriptions": [{}]}),
    )
    .await;
    (app, dir)
}

async fn fire(app: &TestApp) {
    let body = alertmanager("firing", "CupDown", &[("service", "cup")], "CUP giù");
    assert_eq!(
        app.post_json("/api/v1/signals/alertmanager", Some(INGEST_TOKEN), &body)
            .await
            .status(),
        202
    );
}

#[tokio::test]
async fn starttls_with_authentication_delivers() {
    let tls = TestTls::new();
    let smtp = SmtpServer::start_with(SmtpOptions {
        starttls: Some(tls.server.clone()),
        auth: Some(("banditore".into(), PASSWORD.into())),
        ..SmtpOptions::default()
    });
    let (app, _ca) = app_for(&smtp, &tls, "starttls", PASSWORD).await;
    fire(&app).await;
    smtp.wait_for("sala@asl.example", 1, Duration::from_secs(10));
    assert!(!app.logs().contains(PASSWORD));
}

#[tokio::test]
async fn implicit_tls_delivers() {
    let tls = TestTls::new();
    let smtp = SmtpServer::start_with(SmtpOptions {
        implicit_tls: Some(tls.server.clone()),
        auth: Some(("banditore".into(), PASSWORD.into())),
        ..SmtpOptions::default()
    });
    let (app, _ca) = app_for(&smtp, &tls, "tls", PASSWORD).await;
    fire(&app).await;
    smtp.wait_for("sala@asl.example", 1, Duration::from_secs(10));
}

#[tokio::test]
async fn starttls_is_required_never_downgraded_to_clear_text() {
    let tls = TestTls::new();
    // A server that does not offer STARTTLS.
    let smtp = SmtpServer::start();
    let (app, _ca) = app_for(&smtp, &tls, "starttls", PASSWORD).await;
    fire(&app).await;
    eventually(
        || async { app.logs() },
        |l| l.contains("does not offer STARTTLS"),
    )
    .await;
    assert!(smtp.mails().is_empty());
    assert!(!app.logs().contains(PASSWORD));
}

#[tokio::test]
async fn refused_credentials_are_retried_not_dropped() {
    let tls = TestTls::new();
    let smtp = SmtpServer::start_with(SmtpOptions {
        starttls: Some(tls.server.clone()),
        auth: Some(("banditore".into(), PASSWORD.into())),
        ..SmtpOptions::default()
    });
    let (app, _ca) = app_for(&smtp, &tls, "starttls", "wrong-password-also-secret").await;
    fire(&app).await;
    eventually(
        || async { app.logs() },
        |l| l.contains("SMTP authentication failed"),
    )
    .await;
    let list = app.get_json("/api/v1/incidents", VIEWER_TOKEN).await;
    let id = list["incidents"][0]["id"].as_i64().unwrap();
    // The refusal is logged as it happens; the delivery is handed back with the next batch of
    // outcomes.
    let path = format!("/api/v1/incidents/{id}/deliveries");
    eventually(
        || app.get_json(&path, VIEWER_TOKEN),
        |d| d["deliveries"][0]["state"] == "pending",
    )
    .await;
    assert!(!app.logs().contains("wrong-password-also-secret"));
}
