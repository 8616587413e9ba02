//! Telegram end to end: the real binary against the Bot API double, in polling and webhook mode.

use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::support::*;

/// The binary with Telegram on, talking to `double`, plus `env`.
async fn app_with(double: &TelegramDouble, smtp: &SmtpServer, env: &[(&str, &str)]) -> TestApp {
    let api = double.api_url();
    let mut all: Vec<(&str, &str)> = vec![
        ("BANDITORE__CHANNELS__TELEGRAM__ENABLED", "true"),
        ("BANDITORE__CHANNELS__TELEGRAM__TOKEN", TELEGRAM_TOKEN),
        ("BANDITORE__CHANNELS__TELEGRAM__API_URL", &api),
    ];
    all.extend_from_slice(env);
    TestApp::spawn(smtp, "", &all).await
}

/// A desk following CUP, reached at the given Telegram chats.
async fn desk(app: &TestApp, name: &str, chats: &[&str]) -> i64 {
    app.subscribe(json!({
        "name": name,
        "language": "it",
        "addresses": {"telegram": chats},
        "subscriptions": [{"matchers": ["service=~\"cup.*\""]}],
    }))
    .await
}

/// An invite for `subscriber`: its token and the whole answer.
async fn invite(app: &TestApp, subscriber: i64) -> (String, Value) {
    let resp = app
        .post(
            &format!("/api/v1/subscribers/{subscriber}/telegram-invite"),
            Some(ADMIN_TOKEN),
            "application/json",
            "",
        )
        .await;
    assert_eq!(resp.status(), 201);
    let body: Value = resp.json().await.unwrap();
    let command = body["start_command"].as_str().unwrap();
    let token = command.strip_prefix("/start ").unwrap().to_owned();
    (token, body)
}

async fn subscriber_json(app: &TestApp, id: i64) -> Value {
    app.get_json(&format!("/api/v1/subscribers/{id}"), ADMIN_TOKEN)
        .await
}

/// What `chat` was sent, visible text only.
fn texts(double: &TelegramDouble, chat: &str) -> Vec<String> {
    double
        .sent_to(chat)
        .into_iter()
        .map(|m| m.visible)
        .collect()
}

#[tokio::test]
async fn an_invite_binds_a_chat_and_alerts_follow_formatted_and_escaped() {
    invite_and_alerts(&[]).await;
}

#[tokio::test]
async fn on_postgresql_an_invite_binds_a_chat_and_alerts_follow() {
    let Some(db) = fresh_database().await else {
        return;
    };
    invite_and_alerts(&[("BANDITORE__STORE__URL", &db.url)]).await;
}

async fn invite_and_alerts(env: &[(&str, &str)]) {
    let double = TelegramDouble::start().await;
    double.add_private_chat(1001, "Anna", Some("it"));
    double.add_group(-2002, "CUP Foligno sportelli");
    double.add_private_chat(1003, "Bruno", Some("it"));
    let smtp = SmtpServer::start();
    let app = app_with(&double, &smtp, env).await;
    let id = desk(&app, "CUP Foligno", &[]).await;

    let (token, body) = invite(&app, id).await;
    assert_eq!(
        body["link"],
        format!("https://t.me/{BOT_USERNAME}?start={token}")
    );
    assert_eq!(
        body["group_link"],
        format!("https://t.me/{BOT_USERNAME}?startgroup={token}")
    );
    assert!(body["expires_at"].is_string());
    double
        .user_says(1001, 1001, &format!("/start {token}"))
        .await;
    let welcome = double.wait_for("1001", 1, Duration::from_secs(10)).await;
    assert!(
        welcome[0].visible.contains("collegata a CUP Foligno"),
        "{}",
        welcome[0].visible
    );
    assert_eq!(welcome[0].parse_mode.as_deref(), Some("HTML"));

    // The same invite does not work twice; a group joins with its own.
    double
        .user_says(1003, 1003, &format!("/start {token}"))
        .await;
    let refused = double.wait_for("1003", 1, Duration::from_secs(10)).await;
    assert!(
        refused[0].visible.contains("già stato usato"),
        "{}",
        refused[0].visible
    );
    let (group_token, _) = invite(&app, id).await;
    double
        .user_says(-2002, 1001, &format!("/start@{BOT_USERNAME} {group_token}"))
        .await;
    double.wait_for("-2002", 1, Duration::from_secs(10)).await;

    let addresses = subscriber_json(&app, id).await["addresses"].clone();
    let chats: Vec<(&str, &str)> = addresses
        .as_array()
        .unwrap()
        .iter()
        .map(|a| {
            (
                a["address"].as_str().unwrap(),
                a["origin"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(chats, vec![("1001", "chat"), ("-2002", "chat")]);

    // Summaries with markup characters and emoji arrive as written, not as markup.
    let summary = "CUP <backend> non risponde & i referti 🚨 \"tardano\"";
    fire_alert(&app, "firing", "cup-backend", summary).await;
    for chat in ["1001", "-2002"] {
        let sent = double.wait_for(chat, 2, Duration::from_secs(10)).await;
        let alert = &sent[1];
        assert_eq!(alert.parse_mode.as_deref(), Some("HTML"));
        assert!(alert.visible.contains(summary), "{}", alert.visible);
        assert!(alert.visible.contains("Disservizio in corso"));
        assert!(
            alert
                .text
                .contains("CUP &lt;backend&gt; non risponde &amp; i referti")
        );
        assert_eq!(
            alert.body["link_preview_options"]["is_disabled"], true,
            "no link previews"
        );
    }
    fire_alert(&app, "resolved", "cup-backend", summary).await;
    for chat in ["1001", "-2002"] {
        let sent = double.wait_for(chat, 3, Duration::from_secs(10)).await;
        assert!(
            sent[2].visible.contains("Disservizio risolto"),
            "{}",
            sent[2].visible
        );
    }
    assert!(
        double.sent_to("1003").len() == 1,
        "the refused chat hears nothing"
    );

    // A chat that stopped and opens its old invite again is bound, and hears alerts again.
    double.user_says(1001, 1001, "/stop").await;
    double.wait_for("1001", 4, Duration::from_secs(10)).await;
    double
        .user_says(1001, 1001, &format!("/start {token}"))
        .await;
    let again = double.wait_for("1001", 5, Duration::from_secs(10)).await;
    assert!(
        again[4].visible.contains("collegata a CUP Foligno"),
        "{}",
        again[4].visible
    );
    fire_alert(&app, "firing", "cup-portale", "Portale referti lento").await;
    let sent = double.wait_for("1001", 6, Duration::from_secs(10)).await;
    assert!(
        sent[5].visible.contains("Portale referti lento"),
        "{}",
        sent[5].visible
    );
}

#[tokio::test]
async fn a_chat_that_blocked_the_bot_is_marked_gone_and_others_still_hear() {
    let double = TelegramDouble::start().await;
    double.add_private_chat(1001, "Anna", None);
    double.add_private_chat(1002, "Bruno", None);
    double.refuse(1002, Refusal::Blocked);
    let smtp = SmtpServer::start();
    let app = app_with(&double, &smtp, &[]).await;
    let id = desk(&app, "CUP Foligno", &["1001", "1002", "4040"]).await;
    fire_alert(&app, "firing", "cup-backend", "CUP non risponde").await;
    double.wait_for("1001", 1, Duration::from_secs(10)).await;
    let subscriber = eventually(
        || subscriber_json(&app, id),
        |s| {
            s["addresses"]
                .as_array()
                .unwrap()
                .iter()
                .filter(|a| a["state"] == "gone")
                .count()
                == 2
        },
    )
    .await;
    let gone = |chat: &str| {
        subscriber["addresses"]
            .as_array()
            .unwrap()
            .iter()
            .find(|a| a["address"] == chat)
            .unwrap()["gone_reason"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    assert!(gone("1002").contains("blocked"), "{}", gone("1002"));
    assert!(gone("4040").contains("not found"), "{}", gone("4040"));
    // Gone chats are not tried again.
    fire_alert(&app, "resolved", "cup-backend", "CUP non risponde").await;
    double.wait_for("1001", 2, Duration::from_secs(10)).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let tries_to_1002 = double
        .requests()
        .iter()
        .filter(|r| r.method == "sendmessage" && r.body["chat_id"] == 1002)
        .count();
    assert_eq!(tries_to_1002, 1);
}

/// Every refusal Telegram gives for a chat that can no longer be reached marks that address
/// gone with Telegram's words, and the others still hear.
#[tokio::test]
async fn chats_telegram_refuses_are_marked_gone_with_its_reason() {
    let double = TelegramDouble::start().await;
    double.add_private_chat(1001, "Anna", None);
    double.add_private_chat(1002, "Bruno", None);
    double.add_private_chat(1003, "Carla", None);
    double.add_group(-4002, "CUP Spoleto");
    double.add_group(-1_000_000_004_003, "CUP Terni");
    double.add_group(-4004, "CUP Orvieto");
    double.add_channel("cup_avvisi", -1_000_000_004_005);
    double.refuse(1002, Refusal::UserDeactivated);
    double.refuse(1003, Refusal::NeverStarted);
    double.refuse(-4002, Refusal::Kicked);
    double.refuse(-1_000_000_004_003, Refusal::Kicked);
    double.refuse(-4004, Refusal::GroupDeactivated);
    double.refuse(-1_000_000_004_005, Refusal::NotAdmin);
    let smtp = SmtpServer::start();
    let app = app_with(&double, &smtp, &[]).await;
    let chats = [
        "1001",
        "1002",
        "1003",
        "-4002",
        "-1000000004003",
        "-4004",
        "@cup_avvisi",
    ];
    let id = desk(&app, "CUP Umbria", &chats).await;
    fire_alert(&app, "firing", "cup-backend", "CUP non risponde").await;
    double.wait_for("1001", 1, Duration::from_secs(10)).await;
    let subscriber = eventually(
        || subscriber_json(&app, id),
        |s| {
            let addresses = s["addresses"].as_array().unwrap();
            addresses.iter().filter(|a| a["state"] == "gone").count() == chats.len() - 1
        },
    )
    .await;
    let reason = |chat: &str| {
        let addresses = subscriber["addresses"].as_array().unwrap();
        let address = addresses.iter().find(|a| a["address"] == chat).unwrap();
        address["gone_reason"]
            .as_str()
            .unwrap_or_default()
            .to_owned()
    };
    for (chat, words) in [
        ("1002", "user is deactivated"),
        ("1003", "can't initiate conversation"),
        ("-4002", "kicked from the group chat"),
        ("-1000000004003", "kicked from the supergroup chat"),
        ("-4004", "group is deactivated"),
        ("@cup_avvisi", "need administrator rights"),
    ] {
        assert!(reason(chat).contains(words), "{chat}: {}", reason(chat));
    }
    assert_eq!(double.sent().len(), 1, "only Anna's chat took the alert");
}

/// A group that became a supergroup answers 400 with the new id: the alert goes there at once,
/// and the address follows when the bot sees the service message, so later alerts go straight
/// to the supergroup.
#[tokio::test]
async fn a_group_moved_to_a_supergroup_is_followed_and_its_address_moves() {
    let double = TelegramDouble::start().await;
    double.add_group(-4001, "CUP Foligno sportelli");
    let smtp = SmtpServer::start();
    let app = app_with(&double, &smtp, &[]).await;
    let id = desk(&app, "CUP Foligno", &["-4001"]).await;
    double.migrate(-4001, -1_000_000_004_001);
    fire_alert(&app, "firing", "cup-backend", "CUP non risponde").await;
    let sent = double
        .wait_for("-1000000004001", 1, Duration::from_secs(10))
        .await;
    assert!(sent[0].visible.contains("CUP non risponde"));
    let to_old = |double: &TelegramDouble| {
        (double.requests().iter())
            .filter(|r| r.method == "sendmessage" && r.body["chat_id"] == -4001)
            .map(|r| r.status)
            .collect::<Vec<_>>()
    };
    assert_eq!(to_old(&double), [400]);
    let incidents = app.get_json("/api/v1/incidents", VIEWER_TOKEN).await;
    let incident = incidents["incidents"][0]["id"].as_i64().unwrap();
    let path = format!("/api/v1/incidents/{incident}/deliveries");
    let deliveries = eventually(
        || app.get_json(&path, VIEWER_TOKEN),
        |d| d["deliveries"][0]["state"] == "sent",
    )
    .await;
    assert_eq!(deliveries["deliveries"][0]["attempts"], 1);

    double
        .announce_migration(-4001, -1_000_000_004_001, 1001)
        .await;
    eventually(
        || subscriber_json(&app, id),
        |s| s["addresses"][0]["address"] == "-1000000004001",
    )
    .await;
    fire_alert(&app, "resolved", "cup-backend", "CUP non risponde").await;
    let sent = double
        .wait_for("-1000000004001", 2, Duration::from_secs(10))
        .await;
    assert!(sent[1].visible.contains("risolto"), "{}", sent[1].visible);
    assert_eq!(to_old(&double), [400], "the old id is not asked again");
}

/// Telegram's one message a second applies inside a group too, besides its twenty a minute:
/// alerts in a row reach a group spaced out, never refused.
#[tokio::test]
async fn alerts_in_a_row_reach_a_group_without_a_429() {
    let double = TelegramDouble::start().await;
    double.add_group(-4001, "CUP Foligno sportelli");
    let smtp = SmtpServer::start();
    let app = app_with(&double, &smtp, &[]).await;
    desk(&app, "CUP Foligno", &["-4001"]).await;
    fire_alert(&app, "firing", "cup-backend", "CUP non risponde").await;
    fire_alert(&app, "firing", "cup-portale", "Portale referti lento").await;
    fire_alert(&app, "firing", "cup-prenotazioni", "Prenotazioni ferme").await;
    let sent = double.wait_for("-4001", 3, Duration::from_secs(20)).await;
    assert!(double.throttled().is_empty(), "no 429 given");
    for pair in sent.windows(2) {
        assert!(pair[1].at - pair[0].at >= Duration::from_secs(1));
    }
}

#[tokio::test]
async fn a_429_storm_delays_but_delivers_every_message_once_in_order() {
    let double = TelegramDouble::start().await;
    let chats = ["1001", "1002", "1003"];
    for (i, _) in chats.iter().enumerate() {
        double.add_private_chat(1001 + i as i64, "Sportello", None);
    }
    let smtp = SmtpServer::start();
    let app = app_with(&double, &smtp, &[]).await;
    desk(&app, "CUP Foligno", &chats).await;
    double.flood_until(Instant::now() + Duration::from_secs(2), 1);
    fire_alert(&app, "firing", "cup-backend", "CUP non risponde").await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    fire_alert(&app, "firing", "cup-portale", "Portale referti lento").await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    fire_alert(&app, "resolved", "cup-backend", "CUP non risponde").await;
    for chat in chats {
        double.wait_for(chat, 3, Duration::from_secs(30)).await;
    }
    assert!(!double.throttled().is_empty(), "the storm was felt");
    tokio::time::sleep(Duration::from_secs(1)).await;
    for chat in chats {
        let got = texts(&double, chat);
        assert_eq!(got.len(), 3, "{chat} got {got:#?}");
        assert!(got[0].contains("CUP non risponde") && got[0].contains("in corso"));
        assert!(got[1].contains("Portale referti lento"));
        assert!(got[2].contains("CUP non risponde") && got[2].contains("risolto"));
    }
    // Waiting for Telegram is not a failed attempt.
    let incidents = app.get_json("/api/v1/incidents", VIEWER_TOKEN).await;
    for incident in incidents["incidents"].as_array().unwrap() {
        let id = incident["id"].as_i64().unwrap();
        let deliveries = app
            .get_json(&format!("/api/v1/incidents/{id}/deliveries"), VIEWER_TOKEN)
            .await;
        for d in deliveries["deliveries"].as_array().unwrap() {
            assert_eq!(d["state"], "sent", "{d}");
            assert_eq!(d["attempts"], 1, "{d}");
        }
    }
}

#[tokio::test]
async fn a_retry_after_longer_than_a_send_may_take_costs_no_attempt() {
    let double = TelegramDouble::start().await;
    let chats = ["1001", "1002", "1003", "1004"];
    for i in 0..chats.len() {
        double.add_private_chat(1001 + i as i64, "Sportello", None);
    }
    let smtp = SmtpServer::start();
    // A send may take 4 s; Telegram asks for 6 s. (Margins for a loaded CI machine.)
    let app = app_with(
        &double,
        &smtp,
        &[
            ("BANDITORE__OUTBOX__SEND_TIMEOUT", "4s"),
            ("BANDITORE__CHANNELS__TELEGRAM__TIMEOUT", "3s"),
            ("BANDITORE__CHANNELS__EMAIL__TIMEOUT", "3s"),
        ],
    )
    .await;
    desk(&app, "CUP Foligno", &chats).await;
    double.flood_until(Instant::now() + Duration::from_secs(3), 6);
    let fired = Instant::now();
    fire_alert(&app, "firing", "cup-backend", "CUP non risponde").await;
    for chat in chats {
        double.wait_for(chat, 1, Duration::from_secs(30)).await;
    }
    assert!(!double.throttled().is_empty(), "the 429 was felt");
    assert!(
        fired.elapsed() >= Duration::from_secs(6),
        "retry_after was honoured"
    );
    let incidents = app.get_json("/api/v1/incidents", VIEWER_TOKEN).await;
    let id = incidents["incidents"][0]["id"].as_i64().unwrap();
    // The double has the messages; their outcome reaches the store a moment later.
    let path = format!("/api/v1/incidents/{id}/deliveries");
    let deliveries = eventually(
        || app.get_json(&path, VIEWER_TOKEN),
        |d| {
            d["deliveries"]
                .as_array()
                .is_some_and(|l| l.iter().all(|d| d["state"] != "sending"))
        },
    )
    .await;
    for d in deliveries["deliveries"].as_array().unwrap() {
        assert_eq!(d["state"], "sent", "{d}");
        assert_eq!(
            d["attempts"], 1,
            "waiting for Telegram is not an attempt: {d}"
        );
    }
    for chat in chats {
        assert_eq!(texts(&double, chat).len(), 1, "{chat} got one message");
    }
}

#[tokio::test]
async fn unsubscribe_mutes_a_service_and_subscribe_brings_it_back() {
    let double = TelegramDouble::start().await;
    double.add_private_chat(1001, "Anna", None);
    double.add_private_chat(1002, "Bruno", None);
    let smtp = SmtpServer::start();
    let app = app_with(&double, &smtp, &[]).await;
    desk(&app, "CUP Foligno", &["1001", "1002"]).await;

    double
        .user_says(1001, 1001, "/unsubscribe cup-backend")
        .await;
    let reply = double.wait_for("1001", 1, Duration::from_secs(10)).await;
    assert!(
        reply[0]
            .visible
            .contains("non riceverà più avvisi su cup-backend")
    );
    fire_alert(&app, "firing", "cup-backend", "CUP non risponde").await;
    double.wait_for("1002", 1, Duration::from_secs(10)).await;
    // Another service the desk follows still reaches the muted chat.
    fire_alert(&app, "firing", "cup-portale", "Portale lento").await;
    let sent = double.wait_for("1001", 2, Duration::from_secs(10)).await;
    assert!(
        sent[1].visible.contains("Portale lento"),
        "{}",
        sent[1].visible
    );
    fire_alert(&app, "resolved", "cup-backend", "CUP non risponde").await;
    double.wait_for("1002", 3, Duration::from_secs(10)).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        texts(&double, "1001")
            .iter()
            .filter(|t| t.contains("CUP non risponde"))
            .count(),
        0,
        "nothing about the muted service"
    );

    // Following it again, and following a service outside the desk's subscriptions.
    double.user_says(1001, 1001, "/subscribe cup-backend").await;
    double.user_says(1001, 1001, "/subscribe anagrafe").await;
    double.wait_for("1001", 4, Duration::from_secs(10)).await;
    fire_alert(&app, "firing", "cup-backend", "CUP di nuovo giù").await;
    fire_alert(&app, "firing", "anagrafe", "Anagrafe giù").await;
    let sent = double.wait_for("1001", 6, Duration::from_secs(15)).await;
    let all: String = sent.iter().map(|m| m.visible.clone()).collect();
    assert!(all.contains("CUP di nuovo giù"));
    assert!(all.contains("Anagrafe giù"));
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(
        !texts(&double, "1002")
            .iter()
            .any(|t| t.contains("Anagrafe")),
        "the other chat did not ask for it"
    );
}

#[tokio::test]
async fn the_bot_answers_status_language_stop_and_strangers() {
    let double = TelegramDouble::start().await;
    double.add_private_chat(1001, "Anna", Some("it"));
    double.add_private_chat(3003, "Stranger", Some("en"));
    double.add_group(-2002, "Chiacchiere");
    let smtp = SmtpServer::start();
    let app = app_with(&double, &smtp, &[]).await;
    desk(&app, "CUP Foligno", &["1001"]).await;

    fire_alert(&app, "firing", "cup-backend", "CUP non risponde").await;
    double.wait_for("1001", 1, Duration::from_secs(10)).await;
    double.user_says(1001, 1001, "/status").await;
    let sent = double.wait_for("1001", 2, Duration::from_secs(10)).await;
    assert!(
        sent[1].visible.contains("Disservizi in corso"),
        "{}",
        sent[1].visible
    );
    assert!(
        sent[1].visible.contains("cup-backend"),
        "{}",
        sent[1].visible
    );

    double.user_says(1001, 1001, "/lingua en").await;
    let sent = double.wait_for("1001", 3, Duration::from_secs(10)).await;
    assert_eq!(sent[2].visible, "From now on I write in English.");
    fire_alert(&app, "firing", "cup-portale", "Portal slow").await;
    let sent = double.wait_for("1001", 4, Duration::from_secs(10)).await;
    assert!(
        sent[3].visible.contains("Service disruption"),
        "{}",
        sent[3].visible
    );

    double.user_says(1001, 1001, "/stop").await;
    let sent = double.wait_for("1001", 5, Duration::from_secs(10)).await;
    assert!(sent[4].visible.contains("paused"), "{}", sent[4].visible);
    fire_alert(&app, "resolved", "cup-portale", "Portal slow").await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(double.sent_to("1001").len(), 5, "nothing after /stop");
    double.user_says(1001, 1001, "/start").await;
    let sent = double.wait_for("1001", 6, Duration::from_secs(10)).await;
    assert!(sent[5].visible.contains("resumed"), "{}", sent[5].visible);

    // Strangers get an explanation in their language, never an error; groups are left alone.
    double.user_says(3003, 3003, "hello?").await;
    double.user_says(3003, 3003, "/status").await;
    double.user_says(3003, 3003, "/frobnicate").await;
    let sent = double.wait_for("3003", 3, Duration::from_secs(10)).await;
    assert!(
        sent[0]
            .visible
            .contains("ask your administrator for an invite")
    );
    assert!(
        sent[1]
            .visible
            .contains("ask your administrator for an invite")
    );
    assert!(sent[2].visible.contains("do not know this command"));
    double.user_says(-2002, 3003, "ciao a tutti").await;
    double.user_says(-2002, 3003, "/start@another_bot").await;
    double.user_says(3003, 3003, "/start not+a+token").await;
    double.wait_for("3003", 4, Duration::from_secs(10)).await;
    assert!(
        double.sent_to("-2002").is_empty(),
        "the bot stays quiet in groups"
    );
}

#[tokio::test]
async fn webhook_mode_takes_updates_only_with_the_secret() {
    let double = TelegramDouble::start().await;
    double.add_private_chat(1001, "Anna", None);
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let listen = format!("127.0.0.1:{port}");
    let public = format!("http://127.0.0.1:{port}");
    let secret = "webhook-secret-0123456789";
    let smtp = SmtpServer::start();
    let app = app_with(
        &double,
        &smtp,
        &[
            ("BANDITORE__SERVER__LISTEN", &listen),
            ("BANDITORE__SERVER__PUBLIC_URL", &public),
            ("BANDITORE__CHANNELS__TELEGRAM__MODE", "webhook"),
            ("BANDITORE__CHANNELS__TELEGRAM__SECRET_TOKEN", secret),
        ],
    )
    .await;
    let webhook = eventually(|| async { double.webhook() }, Option::is_some)
        .await
        .unwrap();
    assert_eq!(webhook.0, format!("{public}/telegram/webhook"));
    assert_eq!(webhook.1.as_deref(), Some(secret));

    let id = desk(&app, "CUP Foligno", &[]).await;
    let (token, _) = invite(&app, id).await;
    let update = double
        .user_says(1001, 1001, &format!("/start {token}"))
        .await;
    let sent = double.wait_for("1001", 1, Duration::from_secs(10)).await;
    assert!(sent[0].visible.contains("collegata a CUP Foligno"));
    assert!(double.webhook_deliveries().contains(&(update, 200)));
    assert!(
        !double.requests().iter().any(|r| r.method == "getupdates"),
        "no polling in webhook mode"
    );

    // Only Telegram, which knows the secret, may post updates.
    let forged = json!({"update_id": 1, "message": {"message_id": 1, "date": 0,
        "chat": {"id": 1001, "type": "private", "first_name": "Anna"}, "text": "/stop"}});
    for header in [None, Some("wrong-secret")] {
        let mut req = app.http.post(app.url("/telegram/webhook")).json(&forged);
        if let Some(h) = header {
            req = req.header("X-Telegram-Bot-Api-Secret-Token", h);
        }
        assert_eq!(req.send().await.unwrap().status(), 401);
    }
    let garbage = app
        .http
        .post(app.url("/telegram/webhook"))
        .header("X-Telegram-Bot-Api-Secret-Token", secret)
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(garbage.status(), 400);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let subscriber = subscriber_json(&app, id).await;
    assert_eq!(
        subscriber["addresses"][0]["state"], "active",
        "the forged /stop did nothing"
    );
}

#[tokio::test]
async fn an_incident_with_hundreds_of_signals_fits_one_message() {
    let double = TelegramDouble::start().await;
    double.add_private_chat(1001, "Anna", None);
    let smtp = SmtpServer::start();
    let app = app_with(&double, &smtp, &[]).await;
    desk(&app, "CUP Foligno", &["1001"]).await;
    let alerts: Vec<Value> = (0..300)
        .map(|i| {
            json!({
                "status": "firing",
                "labels": {"alertname": "SportelloDown", "service": "cup-backend", "instance": format!("sportello-{i}")},
                "annotations": {"summary": format!("Lo sportello {i} non raggiunge il CUP <timeout> & riprova")},
                "startsAt": "2026-11-26T09:14:03Z",
                "endsAt": "0001-01-01T00:00:00Z",
                "fingerprint": format!("fp-{i:04}"),
            })
        })
        .collect();
    let body =
        json!({"version": "4", "status": "firing", "receiver": "banditore", "alerts": alerts});
    let resp = app
        .post_json("/api/v1/signals/alertmanager", Some(INGEST_TOKEN), &body)
        .await;
    assert_eq!(resp.status(), 202);
    let sent = double.wait_for("1001", 1, Duration::from_secs(15)).await;
    let text = &sent[0].visible;
    assert!(text.encode_utf16().count() <= 4096, "{}", text.len());
    assert!(text.contains("e altre"), "says how many were left out");
    assert!(
        text.contains("Incidente n."),
        "the end of the message is kept"
    );
}

#[tokio::test]
async fn on_postgresql_one_replica_polls_and_another_takes_over() {
    let Some(db) = fresh_database().await else {
        return;
    };
    let double = TelegramDouble::start().await;
    double.add_private_chat(1001, "Anna", None);
    let smtp = SmtpServer::start();
    let mut apps = Vec::new();
    for i in 0..2 {
        let name = format!("replica-{i}");
        apps.push(
            app_with(
                &double,
                &smtp,
                &[
                    ("BANDITORE__STORE__URL", &db.url),
                    ("BANDITORE__STORE__REPLICAS", "2"),
                    ("BANDITORE__CLUSTER__INSTANCE", &name),
                    ("BANDITORE__CLUSTER__LEADER_LEASE", "3s"),
                ],
            )
            .await,
        );
    }
    let id = desk(&apps[0], "CUP Foligno", &[]).await;
    let (token, _) = invite(&apps[1], id).await;
    double
        .user_says(1001, 1001, &format!("/start {token}"))
        .await;
    let bound = double.wait_for("1001", 1, Duration::from_secs(10)).await;
    assert!(
        bound[0].visible.contains("collegata a CUP Foligno"),
        "invite {token}: {}",
        bound[0].visible
    );
    tokio::time::sleep(Duration::from_secs(2)).await;
    let conflicts = |double: &TelegramDouble| {
        double
            .requests()
            .iter()
            .filter(|r| r.method == "getupdates" && r.status == 409)
            .count()
    };
    assert_eq!(conflicts(&double), 0, "only one replica polls");
    // The leader dies; the other takes over polling within the lease and answers.
    let leader = if apps[0].logs().contains("polling Telegram for bot updates") {
        0
    } else {
        1
    };
    apps[leader].kill();
    double.user_says(1001, 1001, "/status").await;
    let sent = double.wait_for("1001", 2, Duration::from_secs(20)).await;
    assert!(
        sent[1].visible.contains("Nessun disservizio"),
        "{}",
        sent[1].visible
    );
    assert!(
        apps[1 - leader]
            .logs()
            .contains("polling Telegram for bot updates")
    );
    assert_eq!(conflicts(&double), 0);
}

#[tokio::test]
async fn a_polling_replica_stops_promptly() {
    let double = TelegramDouble::start().await;
    let smtp = SmtpServer::start();
    let mut app = app_with(&double, &smtp, &[]).await;
    eventually(
        || async { double.requests().iter().any(|r| r.method == "getupdates") },
        |polling| *polling,
    )
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    // A long poll is in flight; stopping must not wait for it to time out.
    let started = Instant::now();
    let status = app.terminate().expect("exit status");
    assert!(status.success(), "{status:?}");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "took {:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn the_public_channel_gets_what_the_communications_office_approves() {
    let double = TelegramDouble::start().await;
    double.add_channel("regione_avvisi", -1_009_000);
    double.add_private_chat(1001, "Anna", None);
    let smtp = SmtpServer::start();
    let app = app_with(
        &double,
        &smtp,
        &[(
            "BANDITORE__CHANNELS__TELEGRAM__PUBLIC_CHANNEL",
            "@regione_avvisi",
        )],
    )
    .await;
    desk(&app, "CUP Foligno", &["1001"]).await;
    fire_alert(&app, "firing", "cup-backend", "CUP non risponde").await;
    // The desk hears at once; the channel waits for approval.
    double.wait_for("1001", 1, Duration::from_secs(10)).await;
    let drafts = eventually(
        || async {
            app.get_json("/api/v1/drafts?state=pending", VIEWER_TOKEN)
                .await["drafts"]
                .clone()
        },
        |d| d.as_array().is_some_and(|a| !a.is_empty()),
    )
    .await;
    assert!(double.sent_to("@regione_avvisi").is_empty());
    let draft = &drafts[0];
    assert_eq!(draft["parts"][0]["channel"], "telegram");
    assert_eq!(draft["parts"][0]["length"]["limit"], 4096);
    let id = draft["id"].as_i64().unwrap();
    let resp = app
        .post_json(
            &format!("/api/v1/drafts/{id}/approve"),
            Some(COMMUNICATOR_TOKEN),
            &json!({}),
        )
        .await;
    assert_eq!(resp.status(), 200);
    let posted = double
        .wait_for("@regione_avvisi", 1, Duration::from_secs(10))
        .await;
    assert!(
        posted[0].visible.contains("CUP non risponde"),
        "{}",
        posted[0].visible
    );
}

/// `server.public_url` on an intranet name without a dot: Telegram would refuse the whole notice
/// for its "open in the console" button, so the button is left out and the notice goes, with
/// Approve and Reject.
#[tokio::test]
async fn a_draft_notice_goes_without_a_link_button_telegram_would_refuse() {
    let double = TelegramDouble::start().await;
    double.add_private_chat(1005, "Ufficio", None);
    let smtp = SmtpServer::start();
    let app = app_with(
        &double,
        &smtp,
        &[("BANDITORE__SERVER__PUBLIC_URL", "http://banditore:8080")],
    )
    .await;
    // The office follows nothing itself: its one message is the draft's notice.
    for (name, audience, addresses, service) in [
        (
            "Ufficio stampa",
            "comms",
            json!({"telegram": "1005"}),
            "stampa",
        ),
        (
            "Lista pubblica",
            "public",
            json!({"email": "lista@asl.example"}),
            "cup.*",
        ),
    ] {
        app.subscribe(json!({
            "name": name, "audience": audience, "addresses": addresses,
            "subscriptions": [{"matchers": [format!("service=~\"{service}\"")]}],
        }))
        .await;
    }
    fire_alert(&app, "firing", "cup-backend", "CUP non risponde").await;
    let notice = double.wait_for("1005", 1, Duration::from_secs(10)).await;
    let buttons = notice[0].body["reply_markup"]["inline_keyboard"].to_string();
    assert!(buttons.contains("callback_data"), "{buttons}");
    assert!(!buttons.contains("\"url\""), "{buttons}");
}

#[tokio::test]
async fn the_office_is_told_of_a_draft_and_approves_it_with_the_telegram_button() {
    let double = TelegramDouble::start().await;
    double.add_private_chat(1005, "Ufficio", None);
    double.add_private_chat(1006, "Sportello", None);
    double.add_private_chat(1007, "Stagista", None);
    let smtp = SmtpServer::start();
    let mut app = app_with(&double, &smtp, &[]).await;
    // m.rossi (communicator) links her Telegram account, 1005, from the console.
    app.add_user("m.rossi", "una password lunga abbastanza", "communicator")
        .await;
    let browser = console_browser();
    let resp = console_login(&app, &browser, "m.rossi", "una password lunga abbastanza").await;
    assert_eq!(resp.status(), 303);
    let me = browser
        .get(app.url("/console/me"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
        // HTML escapes `/`.
        .replace("&#x2f;", "/");
    let start = me
        .split("<code id=\"telegram-command\">")
        .nth(1)
        .and_then(|rest| rest.split('<').next())
        .unwrap_or_else(|| panic!("no link command in:\n{me}"))
        .to_owned();
    assert!(
        me.contains(&format!("https://t.me/{BOT_USERNAME}?start=u_")),
        "{me}"
    );
    double.user_says(1005, 1005, &start).await;
    let linked = double.wait_for("1005", 1, Duration::from_secs(10)).await;
    assert!(
        linked[0].visible.contains("collegato al tuo utente"),
        "{}",
        linked[0].visible
    );
    // The link is good once: another account sending it (a screenshot, a shared screen) is
    // refused, and the link stays with 1005, written to the audit log.
    double.add_private_chat(1008, "Curioso", None);
    double.user_says(1008, 1008, &start).await;
    let refused = double.wait_for("1008", 1, Duration::from_secs(10)).await;
    assert!(
        !refused[0].visible.contains("collegato al tuo utente"),
        "{}",
        refused[0].visible
    );
    let audit = app.get_json("/api/v1/audit", ADMIN_TOKEN).await.to_string();
    assert!(
        audit.contains("user.telegram_linked") && audit.contains("1005"),
        "{audit}"
    );
    assert!(!audit.contains("\"telegram:1008\""), "{audit}");
    // The office's shared chat, 1007, is not anyone's console account.
    app.subscribe(json!({
        "name": "Ufficio comunicazione", "audience": "comms",
        "addresses": {"telegram": ["1007"], "email": ["comunicazione@regione.example"]},
        "subscriptions": [{"matchers": ["service=\"nothing\""]}],
    }))
    .await;
    desk(&app, "CUP Foligno", &["1006"]).await;
    app.subscribe(json!({
        "name": "Lista pubblica", "audience": "public", "addresses": {"email": "cittadini@lista.example"},
        "subscriptions": [{"matchers": ["service=~\"cup.*\""]}],
    }))
    .await;
    fire_alert(&app, "firing", "cup-backend", "CUP non risponde").await;
    double.wait_for("1007", 1, Duration::from_secs(10)).await;
    let notice = double.wait_for("1005", 2, Duration::from_secs(10)).await[1..].to_vec();
    assert!(
        notice[0].visible.contains("in attesa di approvazione"),
        "{}",
        notice[0].visible
    );
    assert!(notice[0].visible.contains("CUP non risponde"));
    let keyboard = &notice[0].body["reply_markup"]["inline_keyboard"][0];
    let data = keyboard[0]["callback_data"].as_str().unwrap().to_owned();
    assert!(data.starts_with("ap:"), "{keyboard}");
    assert!(
        notice[0].body["reply_markup"]["inline_keyboard"][1][0]["url"]
            .as_str()
            .unwrap()
            .contains("/console/drafts/")
    );
    let mail = &eventually(
        || async { smtp.mails_to("comunicazione@regione.example") },
        |m| !m.is_empty(),
    )
    .await[0];
    assert!(mail.text().contains("/console/drafts/"), "{}", mail.text());
    assert!(mail.header("List-Unsubscribe").is_none());

    // Only a linked user who may decide can approve: not a desk, not the shared office chat's
    // unlinked member, not a forged button.
    double.press_button(1006, 1006, 1, &data).await;
    double.press_button(1007, 1007, 1, &data).await;
    double
        .press_button(1005, 1005, notice[0].message_id, "ap:1:AAAAAAAAAAAAAAAA")
        .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let pending = app
        .get_json("/api/v1/drafts?state=pending", VIEWER_TOKEN)
        .await;
    assert_eq!(
        pending["drafts"].as_array().unwrap().len(),
        1,
        "still pending"
    );
    assert!(smtp.mails_to("cittadini@lista.example").is_empty());

    double
        .press_button(1005, 1005, notice[0].message_id, &data)
        .await;
    // The double runs on this test's runtime: wait without blocking it.
    let public = eventually(
        || async { smtp.mails_to("cittadini@lista.example") },
        |m| !m.is_empty(),
    )
    .await;
    assert!(public[0].text().contains("CUP non risponde"));
    let edits: Vec<_> = double
        .requests()
        .into_iter()
        .filter(|r| r.method.eq_ignore_ascii_case("editmessagetext"))
        .collect();
    assert!(
        edits.iter().any(|r| r.body["text"]
            .as_str()
            .unwrap_or("")
            .contains("approvata da m.rossi")),
        "{:?}",
        edits.iter().map(|r| r.body.to_string()).collect::<Vec<_>>()
    );
    let audit = app
        .get_json("/api/v1/audit", VIEWER_TOKEN)
        .await
        .to_string();
    assert!(audit.contains("telegram: m.rossi"), "{audit}");

    // Reject asks why; the reply rejects with that reason.
    fire_alert(&app, "firing", "cup-portale", "Portale lento").await;
    let notice = eventually(
        || async { double.sent_to("1005") },
        |m| m.iter().any(|m| m.visible.contains("Portale lento")),
    )
    .await
    .into_iter()
    .rev()
    .find(|m| m.visible.contains("Portale lento"))
    .unwrap();
    let reject = notice.body["reply_markup"]["inline_keyboard"][0][1]["callback_data"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(reject.starts_with("rj:"), "{reject}");
    double
        .press_button(1005, 1005, notice.message_id, &reject)
        .await;
    let prompt = eventually(
        || async { double.sent_to("1005") },
        |m| {
            m.last()
                .is_some_and(|m| m.visible.contains("Perché rifiuti la bozza #"))
        },
    )
    .await
    .pop()
    .unwrap();
    assert_eq!(prompt.body["reply_markup"]["force_reply"], true);
    double
        .user_replies(
            1005,
            1005,
            prompt.message_id,
            "Rallentamento interno, nessun disservizio",
        )
        .await;
    eventually(
        || async { double.sent_to("1005") },
        |m| {
            m.last()
                .is_some_and(|m| m.visible.contains("rifiutata da m.rossi"))
        },
    )
    .await;
    let rejected = app
        .get_json("/api/v1/drafts?state=rejected", VIEWER_TOKEN)
        .await;
    assert_eq!(
        rejected["drafts"][0]["reason"],
        "Rallentamento interno, nessun disservizio"
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        smtp.mails_to("cittadini@lista.example").len(),
        1,
        "nothing more published"
    );
}

#[tokio::test]
async fn a_draft_notice_that_fails_once_is_sent_again_and_arrives_once() {
    let double = TelegramDouble::start().await;
    double.add_private_chat(1007, "Ufficio", None);
    let smtp = SmtpServer::start();
    let app = app_with(&double, &smtp, &[]).await;
    app.subscribe(json!({
        "name": "Ufficio comunicazione", "audience": "comms",
        "addresses": {"telegram": ["1007"], "email": ["comunicazione@regione.example"]},
        "subscriptions": [{"matchers": ["service=\"nothing\""]}],
    }))
    .await;
    app.subscribe(json!({
        "name": "Lista pubblica", "audience": "public", "addresses": {"email": "cittadini@lista.example"},
        "subscriptions": [{"matchers": ["service=~\"cup.*\""]}],
    }))
    .await;
    // The notice is the only Telegram message: Telegram answers its first try with a 500 (which
    // teloxide holds for ten seconds), and the mail server its first with a 451.
    double.fail_next(1);
    smtp.refuse_once(
        "comunicazione@regione.example",
        451,
        "4.7.1 Try again later",
    );
    fire_alert(&app, "firing", "cup-backend", "CUP non risponde").await;
    let mails = eventually(
        || async { smtp.mails_to("comunicazione@regione.example") },
        |m| !m.is_empty(),
    )
    .await;
    assert!(
        mails[0].text().contains("/console/drafts/"),
        "{}",
        mails[0].text()
    );
    assert!(mails[0].header("List-Unsubscribe").is_none());
    assert_eq!(smtp.rcpt_tries("comunicazione@regione.example"), 2);
    let notice = double.wait_for("1007", 1, Duration::from_secs(30)).await;
    assert!(
        notice[0].visible.contains("in attesa di approvazione"),
        "{}",
        notice[0].visible
    );
    let keyboard = &notice[0].body["reply_markup"]["inline_keyboard"];
    assert!(
        keyboard[0][0]["callback_data"]
            .as_str()
            .unwrap()
            .starts_with("ap:"),
        "{keyboard}"
    );
    assert!(
        keyboard[1][0]["url"]
            .as_str()
            .unwrap()
            .contains("/console/drafts/")
    );
    let tries: Vec<u16> = double
        .requests()
        .into_iter()
        .filter(|r| r.method == "sendmessage")
        .map(|r| r.status)
        .collect();
    assert_eq!(tries, [500, 200]);
    // Sent once: the leader does not tell the office again, nor the outbox send it twice.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(double.sent_to("1007").len(), 1);
    assert_eq!(smtp.mails_to("comunicazione@regione.example").len(), 1);
    // The notices are no deliveries of the incident's updates.
    let incident = app.get_json("/api/v1/incidents", VIEWER_TOKEN).await["incidents"][0]["id"]
        .as_i64()
        .unwrap();
    let deliveries = app
        .get_json(
            &format!("/api/v1/incidents/{incident}/deliveries"),
            VIEWER_TOKEN,
        )
        .await
        .to_string();
    assert!(
        !deliveries.contains("1007") && !deliveries.contains("comunicazione@"),
        "{deliveries}"
    );
}

#[tokio::test]
async fn a_partly_approved_draft_can_still_be_edited_in_the_console() {
    let double = TelegramDouble::start().await;
    double.add_channel("regione_avvisi", -1_009_000);
    let smtp = SmtpServer::start();
    let mut app = app_with(
        &double,
        &smtp,
        &[(
            "BANDITORE__CHANNELS__TELEGRAM__PUBLIC_CHANNEL",
            "@regione_avvisi",
        )],
    )
    .await;
    app.add_user("m.rossi", "una password lunga abbastanza", "communicator")
        .await;
    app.subscribe(json!({
        "name": "Lista pubblica", "audience": "public", "addresses": {"email": "cittadini@lista.example"},
        "subscriptions": [{"matchers": ["service=~\"cup.*\""]}],
    }))
    .await;
    fire_alert(&app, "firing", "cup-backend", "CUP non risponde").await;
    // This test failed twice in full runs on a loaded machine with no draft after 10 s, right
    // after the restart that adds the user; it passes alone. Wait a lease's length longer, and
    // show the logs if even that is not enough.
    let deadline = std::time::Instant::now() + Duration::from_secs(25);
    let drafts = loop {
        let d = app
            .get_json("/api/v1/drafts?state=pending", VIEWER_TOKEN)
            .await["drafts"]
            .clone();
        if d[0]["parts"].as_array().is_some_and(|p| p.len() == 2) {
            break d;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no draft with two parts: {d}\n{}",
            app.logs()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let id = drafts[0]["id"].as_i64().unwrap();
    // The channel goes out now; the email waits for a better text.
    let resp = app
        .post_json(
            &format!("/api/v1/drafts/{id}/approve"),
            Some(COMMUNICATOR_TOKEN),
            &json!({"channels": ["telegram"]}),
        )
        .await;
    assert_eq!(resp.status(), 200);
    let browser = console_browser();
    let resp = console_login(&app, &browser, "m.rossi", "una password lunga abbastanza").await;
    assert_eq!(resp.status(), 303);
    let html = browser
        .get(app.url(&format!("/console/drafts/{id}")))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let csrf = hidden_field(&html, "csrf");
    // The form posts every part, the approved one read-only: only the pending one changes.
    let telegram_body = drafts[0]["parts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["channel"] == "telegram")
        .unwrap()["body"]
        .as_str()
        .unwrap()
        .to_owned();
    let resp = browser
        .post(app.url(&format!("/console/drafts/{id}/edit")))
        .form(&[
            ("csrf", csrf.as_str()),
            ("body_email_it", "Prenotazioni sospese."),
            ("body_telegram_it", telegram_body.as_str()),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 303);
    let draft = app
        .get_json(&format!("/api/v1/drafts/{id}"), VIEWER_TOKEN)
        .await;
    let email = draft["parts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["channel"] == "email")
        .unwrap()
        .clone();
    assert_eq!(email["version"], 2);
    assert_eq!(email["body"], "Prenotazioni sospese.");
}

#[tokio::test]
async fn a_revoked_token_pauses_the_channel_and_every_alert_goes_out_once_it_works_again() {
    let double = TelegramDouble::start().await;
    let chats = ["2001", "2002", "2003"];
    for (i, _) in chats.iter().enumerate() {
        double.add_private_chat(2001 + i as i64, "Sportello", None);
    }
    let smtp = SmtpServer::start();
    // Probes after 1 s, then 2 s…; two attempts would fail a message for good if they counted.
    let app = app_with(
        &double,
        &smtp,
        &[
            ("BANDITORE__OUTBOX__RETRY_INITIAL", "1s"),
            ("BANDITORE__OUTBOX__RETRY_MAX", "2s"),
            ("BANDITORE__OUTBOX__MAX_ATTEMPTS", "2"),
        ],
    )
    .await;
    desk(&app, "CUP Foligno", &chats).await;
    app.subscribe(json!({
        "name": "Reperibile Banditore",
        "audience": "operators",
        "addresses": {"email": ["reperibile@asl.example"]},
        "subscriptions": [],
    }))
    .await;
    double.revoke_token(true);
    fire_alert(&app, "firing", "cup-backend", "CUP non risponde").await;
    eventually(|| async { app.logs() }, |l| l.contains("channel paused")).await;
    let ready = app.get("/readyz", None).await;
    assert_eq!(ready.status(), 200, "the replica still takes signals");
    let body = ready.text().await.unwrap();
    assert!(body.contains("channel telegram paused"), "{body}");
    let notice = smtp.wait_for("reperibile@asl.example", 1, Duration::from_secs(15));
    assert!(
        notice[0].text().contains("Telegram"),
        "{}",
        notice[0].text()
    );
    // Several probes are refused; nothing is lost, no attempt is counted.
    tokio::time::sleep(Duration::from_secs(4)).await;
    fire_alert(&app, "firing", "cup-portale", "Portale referti lento").await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let incidents = app.get_json("/api/v1/incidents", VIEWER_TOKEN).await;
    let mut paths = Vec::new();
    for incident in incidents["incidents"].as_array().unwrap() {
        let id = incident["id"].as_i64().unwrap();
        paths.push(format!("/api/v1/incidents/{id}/deliveries"));
    }
    assert_eq!(paths.len(), 2);
    for path in &paths {
        let d = app.get_json(path, VIEWER_TOKEN).await;
        for d in d["deliveries"].as_array().unwrap() {
            assert!(d["state"] == "pending" || d["state"] == "sending", "{d}");
        }
    }
    assert!(double.sent().is_empty());
    let refused = double
        .requests()
        .iter()
        .filter(|r| r.method == "sendmessage" && r.status == 401)
        .count();
    assert!(
        (2..=6).contains(&refused),
        "one probe at a time with back-off, not every message: {refused}"
    );
    // The token works again: everything goes out, each message once, as its first attempt.
    double.revoke_token(false);
    for chat in chats {
        double.wait_for(chat, 2, Duration::from_secs(20)).await;
    }
    for path in &paths {
        let d = eventually(
            || app.get_json(path, VIEWER_TOKEN),
            |d| {
                d["deliveries"]
                    .as_array()
                    .is_some_and(|l| l.iter().all(|d| d["state"] == "sent"))
            },
        )
        .await;
        for d in d["deliveries"].as_array().unwrap() {
            assert_eq!(d["attempts"], 1, "{d}");
        }
    }
    assert_eq!(double.sent().len(), 6);
    let body = app.get("/readyz", None).await.text().await.unwrap();
    assert_eq!(body, "ready\n");
    let notices = smtp.wait_for("reperibile@asl.example", 2, Duration::from_secs(15));
    assert!(
        notices[1].subject().contains("Telegram"),
        "{}",
        notices[1].subject()
    );
}
