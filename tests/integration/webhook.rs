//! The webhook channel end to end: the real binary posts to a receiver that verifies every
//! signature with the Standard Webhooks reference library; retries keep their `webhook-id`,
//! `Retry-After` is honoured, `410` marks the address gone, a receiver failing for
//! `disable_after` is disabled, presets shape the body, and special-purpose addresses are refused
//! when saved and after resolution.

use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::support::webhook::{BODY, WebhookReceiver};
use crate::support::*;

/// The channel on, the test's receiver reachable on loopback by name and by number.
const ALLOW_LOOPBACK: &str = r#"
[channels.webhook]
enabled = true
allow_http = true
allow_networks = ["127.0.0.0/8", "::1/128"]
"#;

/// A subscriber with one webhook address, following `cup-backend`; returns its id.
async fn subscribe(app: &TestApp, address: &str) -> i64 {
    app.subscribe(json!({
        "name": "Schermi del call centre",
        "audience": "internal",
        "addresses": {"webhook": address},
        "subscriptions": [{"matchers": ["service=\"cup-backend\""]}],
    }))
    .await
}

/// The address's secret, as an administrator gets it to give the receiver.
fn secret(app: &TestApp, address: &str) -> String {
    let (code, out, err) = app.cli(&["webhook-secret", address], "");
    assert_eq!(code, 0, "{err}");
    let secret = out.trim().to_owned();
    assert!(secret.starts_with("whsec_"), "{out}");
    secret
}

/// The subscriber's deliveries once the first is sent, failed or gone.
async fn settled(app: &TestApp, id: i64) -> Value {
    let path = format!("/api/v1/subscribers/{id}/deliveries");
    eventually(
        || async { app.get_json(&path, OPERATOR_TOKEN).await },
        |body| {
            body["deliveries"][0]["state"]
                .as_str()
                .is_some_and(|s| ["sent", "failed", "gone"].contains(&s))
        },
    )
    .await
}

#[tokio::test]
async fn webhook_secret_makes_no_store_and_no_key_of_its_own() {
    let smtp = SmtpServer::start();
    let app = TestApp::spawn(&smtp, "", &[]).await;
    let address = "https://cup.asl.example/banditore/events";
    // Pointed at a store that is not there, as when run without the service's configuration.
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("data").join("banditore.db");
    let url = format!("sqlite://{}", missing.display());
    let run = |env: &[(&str, &str)]| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_banditore"))
            .args(["webhook-secret", address])
            .current_dir(dir.path())
            .envs(env.iter().copied())
            .output()
            .unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (code, out, err) = run(&[("BANDITORE__STORE__URL", &url)]);
    assert_ne!(code, Some(0), "{out}");
    assert!(!out.contains("whsec_"), "{out}");
    assert!(err.contains("--config"), "{err}");
    assert!(!missing.exists(), "no store made");
    // A store another command made, which the service never started on, has no key yet.
    let made = std::process::Command::new(env!("CARGO_BIN_EXE_banditore"))
        .args(["token", "list"])
        .current_dir(dir.path())
        .env("BANDITORE__STORE__URL", &url)
        .output()
        .unwrap();
    assert!(made.status.success() && missing.exists());
    let (code, out, err) = run(&[("BANDITORE__STORE__URL", &url)]);
    assert_ne!(code, Some(0), "{out}");
    assert!(err.contains("no key yet"), "{err}");
    // The service's own configuration gives the secret its receivers verify with.
    assert!(secret(&app, address).starts_with("whsec_"));
}

#[tokio::test]
async fn an_incident_arrives_as_a_signed_event_that_the_reference_library_verifies() {
    let receiver = WebhookReceiver::start().await;
    let smtp = SmtpServer::start();
    let app = TestApp::spawn(&smtp, ALLOW_LOOPBACK, &[]).await;
    let address = receiver.url("/cup/events");
    receiver.set_secret(&secret(&app, &address));
    subscribe(&app, &address).await;

    fire_alert(&app, "firing", "cup-backend", "CUP backend non risponde").await;
    let got = receiver.wait_for(1).await;
    let hook = &got[0];
    assert_eq!(hook.verified, Ok(()), "{hook:?}");
    assert_eq!(hook.path, "/cup/events");
    assert_eq!(hook.content_type, "application/json");
    assert!(
        hook.user_agent.starts_with("Banditore/"),
        "{}",
        hook.user_agent
    );
    assert!(
        hook.id.starts_with("msg_") && !hook.id.contains('.'),
        "{}",
        hook.id
    );
    let age = jiff::Timestamp::now().as_second() - hook.timestamp;
    assert!((0..30).contains(&age), "timestamp {age} s old");

    let event = hook.json();
    assert_eq!(event["type"], "incident.opened", "{event}");
    assert_eq!(event["version"], 1);
    assert!(
        event["timestamp"]
            .as_str()
            .is_some_and(|t| t.parse::<jiff::Timestamp>().is_ok())
    );
    let data = &event["data"];
    assert_eq!(data["audience"], "internal");
    assert_eq!(data["language"], "it");
    assert_eq!(data["incident"]["services"], json!(["cup-backend"]));
    assert_eq!(data["incident"]["severity"], "critical");
    assert_eq!(data["signals"][0]["summary"], "CUP backend non risponde");
    assert!(
        data["links"]["incident"]
            .as_str()
            .is_some_and(|l| l.starts_with("https://banditore.asl.example/console/incidents/")),
        "{data}"
    );

    // The reference library refuses the same request tampered with, or under another secret.
    let w = standardwebhooks::Webhook::new(&secret(&app, &receiver.url("/other"))).unwrap();
    assert!(w.verify(&hook.body, &hook.headers).is_err());
    let right = standardwebhooks::Webhook::new(&secret(&app, &address)).unwrap();
    let mut tampered = hook.body.clone();
    tampered.push(b' ');
    assert!(right.verify(&tampered, &hook.headers).is_err());
    let mut late = hook.headers.clone();
    late.insert(
        "webhook-timestamp",
        (hook.timestamp + 1).to_string().parse().unwrap(),
    );
    assert!(right.verify(&hook.body, &late).is_err());

    // Resolution is its own event, with its own id.
    fire_alert(&app, "resolved", "cup-backend", "CUP backend non risponde").await;
    let got = receiver.wait_for(2).await;
    assert_eq!(got[1].verified, Ok(()));
    assert_eq!(got[1].json()["type"], "incident.resolved");
    assert_ne!(got[1].id, hook.id);
    // The secret never reaches the log.
    assert!(!app.logs().contains(&secret(&app, &address)));
}

#[tokio::test]
async fn a_503_then_a_200_is_one_delivery_retried_with_the_same_id_after_its_retry_after() {
    let receiver = WebhookReceiver::start().await;
    receiver.script(&[(503, &[("retry-after", "1")]), (429, &[]), (200, &[])]);
    let smtp = SmtpServer::start();
    let app = TestApp::spawn(&smtp, ALLOW_LOOPBACK, &[]).await;
    let address = receiver.url("/hook");
    receiver.set_secret(&secret(&app, &address));
    let id = subscribe(&app, &address).await;

    fire_alert(&app, "firing", "cup-backend", "CUP backend non risponde").await;
    let got = receiver.wait_for(3).await;
    assert!(got.iter().all(|r| r.verified.is_ok()), "{got:?}");
    assert!(got.iter().all(|r| r.id == got[0].id), "ids differ: {got:?}");
    assert_eq!(got[0].body, got[2].body);
    // Retry-After: 1 was honoured; without it the first retry comes after about 200 ms.
    let gap = got[1].at.duration_since(got[0].at);
    assert!(gap >= Duration::from_millis(900), "retried after {gap:?}");

    let history = settled(&app, id).await;
    let d = &history["deliveries"][0];
    assert_eq!(d["state"], "sent", "{history}");
    assert_eq!(d["attempts"], 3, "{history}");
    assert_eq!(d["provider_id"], json!(got[0].id));
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(receiver.received().len(), 3, "sent again after a 200");
}

#[tokio::test]
async fn a_410_marks_the_address_gone_and_any_other_refusal_is_retried() {
    let receiver = WebhookReceiver::start().await;
    // A receiver redeploying behind its gateway: a 404, a redirect to a maintenance page, a 401,
    // then its answer. Standard Webhooks retries every failure but a 410.
    let moved: &[(&str, &str)] = &[("location", "https://maintenance.asl.example/")];
    receiver.script(&[(404, &[]), (307, moved), (401, &[]), (200, &[]), (410, &[])]);
    let smtp = SmtpServer::start();
    let app = TestApp::spawn(&smtp, ALLOW_LOOPBACK, &[]).await;
    let address = receiver.url("/hook");
    receiver.set_secret(&secret(&app, &address));
    let id = subscribe(&app, &address).await;

    fire_alert(&app, "firing", "cup-backend", "CUP backend non risponde").await;
    let got = receiver.wait_for(4).await;
    assert!(got.iter().all(|r| r.id == got[0].id), "ids differ: {got:?}");
    let history = settled(&app, id).await;
    assert_eq!(history["deliveries"][0]["state"], "sent", "{history}");
    assert_eq!(history["deliveries"][0]["attempts"], 4, "{history}");

    fire_alert(&app, "resolved", "cup-backend", "CUP backend non risponde").await;
    let path = format!("/api/v1/subscribers/{id}/deliveries");
    let history = eventually(
        || async { app.get_json(&path, OPERATOR_TOKEN).await },
        |b| {
            b["deliveries"]
                .as_array()
                .is_some_and(|d| d.iter().any(|d| d["state"] == "gone"))
        },
    )
    .await;
    assert!(
        history["deliveries"]
            .as_array()
            .unwrap()
            .iter()
            .any(|d| d["state"] == "gone"),
        "{history}"
    );
    // The address is gone: the next incident sends it nothing.
    fire_alert(&app, "firing", "cup-backend", "CUP di nuovo giù").await;
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert_eq!(receiver.received().len(), 5);
}

#[tokio::test]
async fn slacks_404_channel_not_found_marks_the_address_gone_and_another_404_does_not() {
    let receiver = WebhookReceiver::start().await;
    // Any other 404 (a wrong path, a gateway in front) is refused once, the address kept.
    receiver.script(&[(404, &[]), (404, &[(BODY, "channel_not_found")])]);
    let smtp = SmtpServer::start();
    let app = TestApp::spawn(&smtp, ALLOW_LOOPBACK, &[]).await;
    receiver.set_secret(&secret(&app, &receiver.url("/chat")));
    let id = subscribe(&app, &format!("slack+{}", receiver.url("/chat"))).await;
    fire_alert(&app, "firing", "cup-backend", "CUP backend non risponde").await;
    let history = settled(&app, id).await;
    assert_eq!(history["deliveries"][0]["state"], "failed", "{history}");
    // Slack's own word for a channel that no longer exists: the address is gone.
    fire_alert(&app, "resolved", "cup-backend", "CUP backend non risponde").await;
    let path = format!("/api/v1/subscribers/{id}/deliveries");
    let history = eventually(
        || async { app.get_json(&path, OPERATOR_TOKEN).await },
        |b| {
            b["deliveries"]
                .as_array()
                .is_some_and(|d| d.iter().any(|d| d["state"] == "gone"))
        },
    )
    .await;
    let states: Vec<&str> = history["deliveries"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|d| d["state"].as_str())
        .collect();
    assert_eq!(states.len(), 2, "{history}");
    assert!(
        states.contains(&"failed") && states.contains(&"gone"),
        "{history}"
    );
}

#[tokio::test]
async fn a_receiver_failing_for_disable_after_is_disabled_and_the_operators_are_told() {
    let receiver = WebhookReceiver::start().await;
    let none: &[(&str, &str)] = &[];
    receiver.script(&[(500, none); 40]);
    let smtp = SmtpServer::start();
    let extra = format!(
        "{ALLOW_LOOPBACK}disable_after = \"2s\"\n\n[[subscribers]]\nname = \"Sala operativa\"\naudience = \"operators\"\naddresses = {{ email = \"sala@asl.example\" }}\n"
    );
    let app = TestApp::spawn(&smtp, &extra, &[]).await;
    let address = receiver.url("/hook");
    receiver.set_secret(&secret(&app, &address));
    let id = subscribe(&app, &address).await;

    let start = Instant::now();
    fire_alert(&app, "firing", "cup-backend", "CUP backend non risponde").await;
    let path = format!("/api/v1/subscribers/{id}/deliveries");
    let history = eventually(
        || async { app.get_json(&path, OPERATOR_TOKEN).await },
        |b| b["deliveries"][0]["state"] == "gone",
    )
    .await;
    assert!(start.elapsed() >= Duration::from_secs(2));
    let error = history["deliveries"][0]["last_error"].as_str().unwrap();
    assert!(error.contains("disabled"), "{error}");
    assert!(app.logs().contains("webhook receiver disabled"));
    // The operators hear it, with the host and not the rest of the URL.
    let mail = smtp.wait_for("sala@asl.example", 1, Duration::from_secs(10));
    let parsed = mail[0].parsed();
    let text = parsed.body_text(0).unwrap_or_default();
    assert!(
        text.contains("Webhook verso localhost disattivato"),
        "{text}"
    );
    assert!(!text.contains("/hook"), "{text}");
    let sent = receiver.received().len();
    assert!(sent >= 2, "{sent} attempts");
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert_eq!(receiver.received().len(), sent, "sent after being disabled");
}

#[tokio::test]
async fn presets_shape_the_body_for_slack_mattermost_and_teams() {
    let receiver = WebhookReceiver::start().await;
    let smtp = SmtpServer::start();
    let app = TestApp::spawn(&smtp, ALLOW_LOOPBACK, &[]).await;
    // Every preset signs under the same secret as its URL alone.
    receiver.set_secret(&secret(&app, &receiver.url("/chat")));
    app.subscribe(json!({
        "name": "Chat della sala operativa",
        "addresses": {"webhook": [
            format!("slack+{}", receiver.url("/chat")),
        ]},
        "subscriptions": [{"matchers": ["service=\"cup-backend\""]}],
    }))
    .await;
    fire_alert(&app, "firing", "cup-backend", "CUP <giù> & fermo").await;
    let got = receiver.wait_for(1).await;
    assert_eq!(got[0].verified, Ok(()));
    let slack = got[0].json();
    let text = slack["text"].as_str().unwrap();
    assert!(text.starts_with('*'), "{text}");
    assert!(
        text.contains("<https://banditore.asl.example/console/incidents/"),
        "{text}"
    );
    assert_eq!(slack.as_object().unwrap().len(), 1, "{slack}");

    for (preset, check) in [("mattermost", "text"), ("teams", "attachments")] {
        let address = format!("{preset}+{}", receiver.url(&format!("/{preset}")));
        receiver.set_secret(&secret(&app, &address));
        let before = receiver.received().len();
        app.subscribe(json!({
            "name": format!("Chat {preset}"),
            "addresses": {"webhook": address},
            "subscriptions": [{"matchers": [format!("service=\"hub-{preset}\"")]}],
        }))
        .await;
        let service = format!("hub-{preset}");
        fire_alert(&app, "firing", &service, "Hub fermo").await;
        let got = receiver.wait_for(before + 1).await;
        let body = got[before].json();
        assert!(body.get(check).is_some(), "{preset}: {body}");
        if preset == "teams" {
            assert_eq!(body["type"], "message");
            assert_eq!(
                body["attachments"][0]["contentType"],
                "application/vnd.microsoft.card.adaptive"
            );
            assert_eq!(body["attachments"][0]["content"]["type"], "AdaptiveCard");
        }
        fire_alert(&app, "resolved", &service, "Hub fermo").await;
        receiver.wait_for(before + 2).await;
    }
}

#[tokio::test]
async fn special_purpose_destinations_are_refused_when_saved_and_after_resolution() {
    let receiver = WebhookReceiver::start().await;
    let smtp = SmtpServer::start();
    let app = TestApp::spawn(
        &smtp,
        "[channels.webhook]\nenabled = true\nallow_http = true\n",
        &[],
    )
    .await;
    // Written as numbers, they are refused when saved, with the reason.
    for address in [
        "http://127.0.0.1:9/hook",
        "https://169.254.169.254/latest/meta-data",
        "https://[::1]/",
        "https://10.0.0.1/",
        "https://[::ffff:192.168.1.1]/",
        "gopher://example.org/",
    ] {
        let resp = app
            .post_json(
                "/api/v1/subscribers",
                Some(ADMIN_TOKEN),
                &json!({"name": "X", "addresses": {"webhook": address}}),
            )
            .await;
        let status = resp.status();
        let body = resp.text().await.unwrap();
        assert!(status.is_client_error(), "{address}: {status} {body}");
        assert!(body.contains("webhook"), "{address}: {body}");
    }
    // A name is checked after it resolves: localhost is loopback, so nothing is sent.
    let id = subscribe(&app, &receiver.url("/hook")).await;
    fire_alert(&app, "firing", "cup-backend", "CUP backend non risponde").await;
    let history = settled(&app, id).await;
    let d = &history["deliveries"][0];
    assert_eq!(d["state"], "failed", "{history}");
    assert!(
        d["last_error"]
            .as_str()
            .is_some_and(|e| e.contains("resolves to") && e.contains("loopback")),
        "{history}"
    );
    assert!(receiver.received().is_empty());
}

#[tokio::test]
async fn the_public_audience_gets_the_statement_only_once_approved() {
    let receiver = WebhookReceiver::start().await;
    let smtp = SmtpServer::start();
    let app = TestApp::spawn(&smtp, ALLOW_LOOPBACK, &[]).await;
    let address = receiver.url("/intranet-banner");
    receiver.set_secret(&secret(&app, &address));
    app.subscribe(json!({
        "name": "Banner dell'intranet",
        "audience": "public",
        "addresses": {"webhook": address},
        "subscriptions": [{"matchers": ["service=\"cup-backend\""]}],
    }))
    .await;

    fire_alert(&app, "firing", "cup-backend", "CUP backend non risponde").await;
    let draft = app.next_draft().await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(receiver.received().is_empty(), "sent before approval");
    app.approve_draft(draft["id"].as_i64().unwrap()).await;

    let got = receiver.wait_for(1).await;
    assert_eq!(got[0].verified, Ok(()));
    let event = got[0].json();
    assert_eq!(event["type"], "incident.opened", "{event}");
    assert_eq!(event["data"]["audience"], "public");
    assert!(
        event["data"]["links"]["incident"]
            .as_str()
            .is_some_and(|l| l.starts_with("https://banditore.asl.example/status/incidents/")),
        "{event}"
    );
}

#[tokio::test]
async fn a_chat_tools_url_stays_out_of_errors_and_logs() {
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = closed.local_addr().unwrap().port();
    drop(closed);
    let smtp = SmtpServer::start();
    let app = TestApp::spawn(&smtp, ALLOW_LOOPBACK, &[]).await;
    let address = format!("slack+http://localhost:{port}/services/T0/B0/SEGRETO");
    let id = subscribe(&app, &address).await;
    fire_alert(&app, "firing", "cup-backend", "CUP backend non risponde").await;
    let path = format!("/api/v1/subscribers/{id}/deliveries");
    let history = eventually(
        || async { app.get_json(&path, OPERATOR_TOKEN).await },
        |b| b["deliveries"][0]["last_error"].is_string(),
    )
    .await;
    let error = history["deliveries"][0]["last_error"].as_str().unwrap();
    assert!(error.contains("cannot connect"), "{error}");
    assert!(!error.contains("SEGRETO"), "{error}");
    assert!(!app.logs().contains("SEGRETO"));
    // Whoever is not an administrator reads the host only.
    let recipient = &history["deliveries"][0]["recipient"];
    assert_eq!(recipient, "http://localhost/••••••••", "{history}");
    let admin = app.get_json(&path, ADMIN_TOKEN).await;
    assert_eq!(admin["deliveries"][0]["recipient"], json!(address));
}

#[test]
fn check_config_names_a_bad_network_and_a_refused_webhook_address() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("webhook.toml");
    std::fs::write(
        &config,
        r#"
[channels.webhook]
enabled = true
allow_networks = ["10.20.1.0/16", "intranet"]
disable_after = "0s"

[[subscribers]]
name = "Metadati"
addresses = { webhook = "https://169.254.169.254/latest/meta-data" }
"#,
    )
    .unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_banditore"))
        .args(["--config", config.to_str().unwrap(), "check-config"])
        .current_dir(dir.path())
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    for words in [
        "channels.webhook.allow_networks: `10.20.1.0/16` has host bits set",
        "`intranet` is not a network",
        "channels.webhook.disable_after",
        "169.254.169.254 is a link-local (cloud metadata) address",
    ] {
        assert!(err.contains(words), "{words}: {err}");
    }
}

/// A chat tool's URL is its credential: whoever is not an administrator reads the host alone in
/// the subscribers API and console, as in the deliveries, and cannot find it by searching; the
/// console's edit form leaves their webhooks alone instead of saving the mask.
#[tokio::test]
async fn a_chat_tools_url_is_read_whole_by_administrators_alone() {
    const PASSWORD: &str = "una password lunga abbastanza";
    let smtp = SmtpServer::start();
    let mut app = TestApp::spawn(&smtp, "", &[]).await;
    app.add_user("l.bianchi", PASSWORD, "operator").await;
    let url = "slack+https://hooks.slack.com/services/T0/B0/SEGRETO";
    let spec = json!({
        "name": "Canale Slack", "audience": "internal",
        "addresses": {"webhook": url, "email": "sala@asl.example"},
        "subscriptions": [{"matchers": ["service=\"cup-backend\""]}],
    });
    let created = app
        .post_json("/api/v1/subscribers", Some(OPERATOR_TOKEN), &spec)
        .await;
    assert_eq!(created.status(), 201);
    let created: Value = created.json().await.unwrap();
    assert!(!created.to_string().contains("SEGRETO"), "{created}");
    let id = created["id"].as_i64().unwrap();
    let masked = "https://hooks.slack.com/••••••••";
    let webhook_of = |s: &Value| {
        s["addresses"]
            .as_array()
            .unwrap()
            .iter()
            .find(|a| a["channel"] == "webhook")
            .map(|a| a["address"].clone())
            .unwrap()
    };
    assert_eq!(webhook_of(&created), masked);
    let one = format!("/api/v1/subscribers/{id}");
    let token = OPERATOR_TOKEN;
    assert_eq!(webhook_of(&app.get_json(&one, token).await), masked);
    let list = app.get_json("/api/v1/subscribers", token).await;
    assert!(!list.to_string().contains("SEGRETO"), "{list}");
    assert_eq!(webhook_of(&list["subscribers"][0]), masked);
    // Found by name, never by a piece of the URL.
    let by_url = app.get_json("/api/v1/subscribers?q=B0/SEG", token).await;
    assert_eq!(by_url["subscribers"], json!([]), "{by_url}");
    let by_name = app.get_json("/api/v1/subscribers?q=slack", token).await;
    assert_eq!(by_name["subscribers"][0]["id"], id);
    let edited = app
        .http
        .patch(app.url(&one))
        .bearer_auth(OPERATOR_TOKEN)
        .json(&json!({"name": "Canale Slack CUP"}))
        .send()
        .await
        .unwrap();
    assert_eq!(edited.status(), 200);
    let edited: Value = edited.json().await.unwrap();
    assert_eq!(webhook_of(&edited), masked);
    // What was read, written back whole, cannot replace the URL with its mask.
    let written_back = app
        .http
        .patch(app.url(&one))
        .bearer_auth(OPERATOR_TOKEN)
        .json(&json!({"addresses": {"webhook": masked, "email": "sala@asl.example"}}))
        .send()
        .await
        .unwrap();
    assert_eq!(written_back.status(), 400);
    let refusal = written_back.text().await.unwrap();
    assert!(refusal.contains("masked"), "{refusal}");
    // An administrator reads it whole and finds it by any piece of it.
    assert_eq!(webhook_of(&app.get_json(&one, ADMIN_TOKEN).await), url);
    let found = app
        .get_json("/api/v1/subscribers?q=B0/SEG", ADMIN_TOKEN)
        .await;
    assert_eq!(found["subscribers"][0]["id"], id);

    // The console: masked on the list and the subscriber's page, and not in the edit form, so
    // that saving the form keeps the webhook as it is.
    let op = console_browser();
    assert_eq!(
        console_login(&app, &op, "l.bianchi", PASSWORD)
            .await
            .status(),
        303
    );
    for path in [
        "/console/subscribers".to_owned(),
        "/console/subscribers?q=B0%2FSEG".to_owned(),
        format!("/console/subscribers/{id}"),
    ] {
        let html = op
            .get(app.url(&path))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        assert!(!html.contains("SEGRETO"), "{path}: {html}");
    }
    let page = op
        .get(app.url(&format!("/console/subscribers/{id}")))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        page.contains("webhook: https:&#x2f;&#x2f;hooks.slack.com&#x2f;••••••••"),
        "{page}"
    );
    assert!(!page.contains("name=\"webhook\""), "{page}");
    let csrf = hidden_field(&page, "csrf");
    let saved = op
        .post(app.url(&format!("/console/subscribers/{id}/edit")))
        .form(&[
            ("csrf", csrf.as_str()),
            ("name", "Canale Slack CUP"),
            ("email", "sala@asl.example"),
            ("subs", "1"),
            ("sub0_matchers", "service=\"cup-backend\""),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(saved.status(), 303);
    assert_eq!(webhook_of(&app.get_json(&one, ADMIN_TOKEN).await), url);
}
