//! The CUP desks' drill, end to end with the real binary and every channel's double: fifty desks
//! hear of an outage by email and Telegram; thirty say "seen" through the email's page, ten
//! through the Telegram button; the process restarts; the ten still silent are texted at the
//! first step, and five of them reply OK; the last five are called at the second step, and one
//! presses 1. The board and the ledger then tell each desk's story, and the metrics the time each
//! channel took.

use std::time::Duration;

use serde_json::{Value, json};

use crate::support::voice::{Pickup, VoiceDouble};
use crate::support::*;

const DESKS: usize = 50;
const PUBLIC_URL: &str = "https://banditore.asl.example";
const REPLY_TOKEN: &str = "reply-token-0123456789abcdef";
const SMS_AFTER: u64 = 20;
const CALL_AFTER: u64 = 35;

fn email(i: usize) -> String {
    format!("cup{i:02}@asl.example")
}

fn chat(i: usize) -> i64 {
    5000 + i as i64
}

/// Each desk's mobile, for texts and calls: `+39 333 10000<i>`.
fn mobile(i: usize) -> String {
    format!("+3933310000{i:02}")
}

/// The acknowledgement link in a mail's text, as a path on the server.
fn ack_path(text: &str) -> String {
    let at = text
        .find(&format!("{PUBLIC_URL}/ack/"))
        .unwrap_or_else(|| panic!("no acknowledgement link in {text}"));
    let url: String = text[at..]
        .chars()
        .take_while(|c| !c.is_whitespace())
        .collect();
    url.trim_start_matches(PUBLIC_URL).to_owned()
}

/// An `OK` from `from` through Twilio's inbound webhook, signed as Twilio signs.
async fn reply_ok(app: &TestApp, from: &str) -> reqwest::Response {
    let path = "/api/v1/callbacks/sms/twilio/inbound";
    let mut params: Vec<(String, String)> = [
        ("AccountSid", TWILIO_SID),
        ("Body", "ok"),
        ("From", from),
        ("MessageSid", "SM0123456789abcdef0123456789abcdef"),
        ("To", "+15005550006"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect();
    params.sort();
    let signature = twilio_signature(TWILIO_TOKEN, &format!("{PUBLIC_URL}{path}"), &params);
    app.http
        .post(app.url(path))
        .header("X-Twilio-Signature", signature)
        .form(&params)
        .send()
        .await
        .unwrap()
}

async fn board(app: &TestApp, incident: i64) -> Value {
    app.get_json(
        &format!("/api/v1/incidents/{incident}/acknowledgements"),
        VIEWER_TOKEN,
    )
    .await
}

/// How many desks acknowledged through each channel, from the board.
fn acknowledged_by(board: &Value, channel: &str) -> usize {
    board["desks"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|d| d["acknowledged"]["channel"] == channel)
        .count()
}

fn desk(board: &Value, i: usize) -> &Value {
    let name = format!("CUP {i:02}");
    board["desks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["name"] == name.as_str())
        .unwrap_or_else(|| panic!("{name} is not on the board"))
}

fn channels_of(desk: &Value) -> Vec<String> {
    let mut channels: Vec<String> = desk["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["channel"].as_str().unwrap().to_owned())
        .collect();
    channels.sort();
    channels
}

#[tokio::test]
async fn fifty_desks_say_seen_by_link_button_reply_and_key_and_the_ladder_stops_for_each() {
    let smtp = SmtpServer::start();
    let telegram = TelegramDouble::start().await;
    let sms = SmsDouble::start().await;
    let voice = VoiceDouble::start().await;
    for i in 0..DESKS {
        telegram.add_private_chat(chat(i), &format!("Sportello {i}"), Some("it"));
    }
    // Desk 45 presses 1; 46 lets it ring; 47 is busy; 48's machine answers; 49 listens, silent.
    let pickups = [
        Pickup::Press('1'),
        Pickup::NoAnswer,
        Pickup::Busy,
        Pickup::Machine,
        Pickup::Silent,
    ];
    for (i, pickup) in (45..DESKS).zip(pickups) {
        voice.pickup(&mobile(i), pickup);
    }
    let api = telegram.api_url();
    let calls = format!(
        "[[channels.voice.providers]]\nname = \"twilio\"\nkind = \"twilio\"\nbase_url = \"{}\"\nusername = \"{TWILIO_SID}\"\npassword = \"{TWILIO_TOKEN}\"\ncaller = \"+390612345678\"\npriority = 0\n",
        voice.base_url()
    );
    let extra = format!(
        "{sms}\n{calls}\n[escalation.audiences]\ncup-desk = [\n  {{ after = \"0s\", channels = [\"email\", \"telegram\"] }},\n  {{ after = \"{SMS_AFTER}s\", channels = [\"sms\"] }},\n  {{ after = \"{CALL_AFTER}s\", channels = [\"voice\"] }},\n]\n",
        sms = crate::sms::providers(&sms, &[SmsProvider::Twilio]),
    );
    let mut app = TestApp::spawn(
        &smtp,
        &extra,
        &[
            ("BANDITORE__CHANNELS__TELEGRAM__ENABLED", "true"),
            ("BANDITORE__CHANNELS__TELEGRAM__TOKEN", TELEGRAM_TOKEN),
            ("BANDITORE__CHANNELS__TELEGRAM__API_URL", &api),
            ("BANDITORE__CHANNELS__SMS__ENABLED", "true"),
            ("BANDITORE__CHANNELS__SMS__REPLIES", "true"),
            ("BANDITORE__CHANNELS__SMS__REPLY_TOKEN", REPLY_TOKEN),
            ("BANDITORE__CHANNELS__VOICE__ENABLED", "true"),
            ("BANDITORE__CHANNELS__VOICE__WAIT_FOR_KEY", "2s"),
        ],
    )
    .await;
    voice.deliver_callbacks_to(&app.base);
    for i in 0..DESKS {
        app.subscribe(json!({
            "name": format!("CUP {i:02}"),
            "language": "it",
            "audience": "cup-desk",
            "addresses": {
                "email": [email(i)],
                "telegram": [chat(i).to_string()],
                "sms": [mobile(i)],
                "voice": [mobile(i)],
            },
            "subscriptions": [{"matchers": ["service=~\"cup.*\""]}],
        }))
        .await;
    }

    fire_alert(&app, "firing", "cup-backend", "CUP non risponde").await;
    smtp.wait_for(&email(0), 1, Duration::from_secs(20));
    let incidents = app.get_json("/api/v1/incidents", VIEWER_TOKEN).await;
    let incident = incidents["incidents"][0]["id"].as_i64().unwrap();

    // Thirty desks open the email's page and press its button.
    for i in 0..30 {
        let mail = smtp.wait_for(&email(i), 1, Duration::from_secs(20));
        let path = ack_path(&mail[0].text());
        let page = app.get(&path, None).await;
        assert_eq!(page.status(), 200, "{path}");
        let posted = app
            .http
            .post(app.url(&path))
            .header("Content-Type", "application/x-www-form-urlencoded")
            .body("")
            .send()
            .await
            .unwrap();
        assert_eq!(posted.status(), 200, "{path}");
    }
    // Ten press the Telegram button.
    for i in 30..40 {
        let chat_id = chat(i).to_string();
        let sent = telegram
            .wait_for(&chat_id, 1, Duration::from_secs(20))
            .await;
        let (_, data) = telegram.buttons(sent[0].message_id)[0][0].clone();
        telegram
            .press_button(chat(i), chat(i), sent[0].message_id, &data)
            .await;
    }
    let seen = eventually(
        || board(&app, incident),
        |b: &Value| b["desks_acknowledged"] == 40,
    )
    .await;
    assert_eq!(seen["desks_total"], DESKS);
    assert_eq!(acknowledged_by(&seen, "email"), 30);
    assert_eq!(acknowledged_by(&seen, "telegram"), 10);
    // The desks not yet acknowledged come first, each waiting for its text.
    for waiting in &seen["desks"].as_array().unwrap()[..10] {
        assert!(waiting["acknowledged"].is_null(), "{waiting}");
        assert_eq!(
            waiting["next_escalation"]["channels"],
            json!(["sms"]),
            "{waiting}"
        );
    }

    // The process restarts in the middle: the ladders and the acknowledgements are the store's.
    app.kill();
    app.start().await;
    voice.deliver_callbacks_to(&app.base);
    let after = board(&app, incident).await;
    assert_eq!(after["desks_acknowledged"], 40);
    // Sends still pending may have gone since; who saw it and what waits for whom has not moved.
    let story = |board: &Value| -> Vec<Value> {
        board["desks"]
            .as_array()
            .unwrap()
            .iter()
            .map(|d| json!([d["name"], d["acknowledged"], d["next_escalation"]]))
            .collect()
    };
    assert_eq!(story(&after), story(&seen), "the restart changed nothing");

    // The ten still silent are texted at the first step, and nobody else.
    let texts = sms.wait_for(10, Duration::from_secs(SMS_AFTER + 20)).await;
    let mut texted: Vec<String> = texts.iter().map(|t| t.to.clone()).collect();
    texted.sort();
    let expected: Vec<String> = (40..DESKS).map(mobile).collect();
    assert_eq!(texted, expected);
    assert!(texts.iter().all(|t| t.text.contains("Rispondi OK")));
    // Five reply OK.
    for i in 40..45 {
        let answer = reply_ok(&app, &mobile(i)).await;
        assert!(answer.status().is_success(), "{}", answer.status());
    }
    eventually(
        || board(&app, incident),
        |b: &Value| b["desks_acknowledged"] == 45,
    )
    .await;

    // The last five are called at the second step; one presses 1.
    let calls = voice
        .wait_for_calls(5, Duration::from_secs(CALL_AFTER + 20))
        .await;
    let mut called: Vec<String> = calls.iter().map(|c| c.to.clone()).collect();
    called.sort();
    let expected: Vec<String> = (45..DESKS).map(mobile).collect();
    assert_eq!(called, expected);
    assert!(
        calls
            .iter()
            .all(|c| c.said.iter().any(|s| s.contains("CUP non risponde")))
    );
    // Until every call has said how it ended.
    let ended = [
        (46, "no-answer"),
        (47, "busy"),
        (48, "machine"),
        (49, "completed"),
    ];
    let done = eventually(
        || board(&app, incident),
        |b: &Value| {
            b["desks_acknowledged"] == 46
                && ended.iter().all(|(i, status)| {
                    desk(b, *i)["messages"]
                        .as_array()
                        .unwrap()
                        .iter()
                        .any(|m| m["channel"] == "voice" && m["report_status"] == *status)
                })
        },
    )
    .await;

    // Each desk's story on the board.
    assert_eq!(acknowledged_by(&done, "email"), 30);
    assert_eq!(acknowledged_by(&done, "telegram"), 10);
    assert_eq!(acknowledged_by(&done, "sms"), 5);
    assert_eq!(acknowledged_by(&done, "voice"), 1);
    for i in 0..40 {
        assert_eq!(
            channels_of(desk(&done, i)),
            ["email", "telegram"],
            "desk {i}"
        );
        assert!(desk(&done, i)["next_escalation"].is_null());
    }
    for i in 40..45 {
        assert_eq!(
            channels_of(desk(&done, i)),
            ["email", "sms", "telegram"],
            "desk {i}"
        );
    }
    for i in 45..DESKS {
        assert_eq!(
            channels_of(desk(&done, i)),
            ["email", "sms", "telegram", "voice"],
            "desk {i}"
        );
    }
    for i in 46..DESKS {
        let d = desk(&done, i);
        assert!(d["acknowledged"].is_null(), "{d}");
        assert!(d["next_escalation"].is_null(), "the ladder is climbed: {d}");
    }
    // The ledger lists every message: 50 emails, 50 Telegram messages, 10 texts, 5 calls.
    let ledger = app
        .get_json(
            &format!("/api/v1/incidents/{incident}/ledger"),
            VIEWER_TOKEN,
        )
        .await;
    let rows = ledger["rows"].as_array().unwrap();
    let count = |channel: &str| rows.iter().filter(|r| r["channel"] == channel).count();
    assert_eq!(
        (
            count("email"),
            count("telegram"),
            count("sms"),
            count("voice")
        ),
        (50, 50, 10, 5)
    );
    assert_eq!(rows.len(), 115);
    assert!(rows.iter().all(|r| r["state"] == "sent"), "{ledger}");
    let acknowledged = rows
        .iter()
        .filter(|r| !r["acknowledged_at"].is_null())
        .count();
    // Desks 0–44 on all their rows, desk 45 on its four.
    assert_eq!(acknowledged, 40 * 2 + 5 * 3 + 4);
    let csv = app
        .get(
            &format!("/api/v1/incidents/{incident}/ledger?format=csv"),
            Some(VIEWER_TOKEN),
        )
        .await
        .text()
        .await
        .unwrap();
    assert_eq!(csv.lines().count(), 116, "a header and a line per message");

    // Time to acknowledge, per channel.
    let metrics = app.get("/metrics", None).await.text().await.unwrap();
    let counted = |channel: &str| {
        let key = format!("banditore_time_to_acknowledge_seconds_count{{channel=\"{channel}\"}} ");
        metrics
            .lines()
            .find_map(|l| l.strip_prefix(key.as_str()))
            .map(|n| n.trim().to_owned())
    };
    // The process restarted after the email and Telegram acknowledgements: this life counted
    // the texts' and the call's.
    assert_eq!(counted("sms").as_deref(), Some("5"), "{metrics}");
    assert_eq!(counted("voice").as_deref(), Some("1"), "{metrics}");
    assert!(metrics.contains("banditore_escalations_total{outcome=\"fired\"}"));
}
