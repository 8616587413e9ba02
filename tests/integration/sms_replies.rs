//! Desks' replies to texts: "OK" through Twilio's signed inbound webhook and through Vonage's
//! acknowledges the latest incident texted to the number; a reply from a number texted nothing,
//! another word, a wrong signature or token changes nothing.

use std::time::Duration;

use banditore::domain::subscriber::ChannelKind;
use banditore::settings::{SqliteSynchronous, StoreSettings};
use banditore::store::AckRow;
use serde_json::{Value, json};

use crate::support::*;

const REPLY_TOKEN: &str = "reply-token-0123456789abcdef";
const INBOUND: &str = "/api/v1/callbacks/sms/{}/inbound";

async fn app_with(double: &SmsDouble, kinds: &[SmsProvider]) -> TestApp {
    let smtp = SmtpServer::start();
    TestApp::spawn(
        &smtp,
        &crate::sms::providers(double, kinds),
        &[
            ("BANDITORE__CHANNELS__SMS__ENABLED", "true"),
            ("BANDITORE__CHANNELS__SMS__REPLIES", "true"),
            ("BANDITORE__CHANNELS__SMS__REPLY_TOKEN", REPLY_TOKEN),
        ],
    )
    .await
}

fn inbound(provider: &str) -> String {
    INBOUND.replace("{}", provider)
}

/// The incidents, newest first.
async fn incidents(app: &TestApp) -> Vec<i64> {
    let all = app.get_json("/api/v1/incidents", VIEWER_TOKEN).await;
    all["incidents"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["id"].as_i64().unwrap())
        .collect()
}

async fn acknowledgements(app: &TestApp, incident: i64) -> Vec<AckRow> {
    let settings = StoreSettings {
        url: format!("sqlite://{}", app.dir.path().join("banditore.db").display()),
        sqlite_synchronous: SqliteSynchronous::Normal,
        max_connections: 1,
        replicas: 1,
        retention: banditore::settings::Dur(Duration::from_secs(0)),
        password: None,
        password_file: None,
        password_env: None,
    };
    let store = banditore::store::open_for_administration(&settings, None)
        .await
        .unwrap();
    let acks = store.acknowledgements(incident).await.unwrap();
    store.close().await;
    acks
}

/// Posts a Twilio inbound message from `from`, signed with `key` as Twilio signs.
async fn twilio_reply(app: &TestApp, from: &str, body: &str, key: &str) -> reqwest::Response {
    let mut params: Vec<(String, String)> = [
        ("AccountSid", TWILIO_SID),
        ("ApiVersion", "2010-04-01"),
        ("Body", body),
        ("From", from),
        ("MessageSid", "SM0123456789abcdef0123456789abcdef"),
        ("NumMedia", "0"),
        ("NumSegments", "1"),
        ("To", "+15005550006"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect();
    params.sort();
    let url = format!("https://banditore.asl.example{}", inbound("twilio"));
    let signature = twilio_signature(key, &url, &params);
    app.http
        .post(app.url(&inbound("twilio")))
        .header("X-Twilio-Signature", signature)
        .form(&params)
        .send()
        .await
        .unwrap()
}

async fn desks_texted_about_two_incidents(app: &TestApp, double: &SmsDouble) -> (i64, i64) {
    app.subscribe(json!({
        "name": "CUP Assisi",
        "language": "it",
        "addresses": {"sms": ["333 123 4567"]},
        "subscriptions": [{"matchers": ["service=~\"cup.*\""]}],
    }))
    .await;
    fire_alert(app, "firing", "cup-backend", "CUP non risponde").await;
    let sent = double.wait_for(1, Duration::from_secs(10)).await;
    assert!(
        sent[0].text.contains("Rispondi OK per confermare."),
        "the desk's text invites the reply: {}",
        sent[0].text
    );
    fire_alert(app, "firing", "cup-portale", "Portale lento").await;
    double.wait_for(2, Duration::from_secs(10)).await;
    let texted = eventually(|| incidents(app), |i: &Vec<i64>| i.len() == 2).await;
    // Both sent before the reply: the reply is for the latest.
    let _: Vec<Value> = eventually(
        || async {
            let mut all = Vec::new();
            for id in &texted {
                let d = app
                    .get_json(&format!("/api/v1/incidents/{id}/deliveries"), VIEWER_TOKEN)
                    .await;
                all.extend(d["deliveries"].as_array().unwrap().iter().cloned());
            }
            all
        },
        |d: &Vec<Value>| d.len() == 2 && d.iter().all(|d| d["state"] == "sent"),
    )
    .await;
    (texted[0], texted[1])
}

#[tokio::test]
async fn an_ok_through_twilio_acknowledges_the_latest_incident_texted_to_the_number() {
    let double = SmsDouble::start().await;
    let app = app_with(&double, &[SmsProvider::Twilio]).await;
    let (latest, earlier) = desks_texted_about_two_incidents(&app, &double).await;

    // A wrong signature, another word, another number: nothing.
    assert_eq!(
        twilio_reply(&app, "+393331234567", "OK", "not-the-auth-token")
            .await
            .status(),
        401
    );
    let other = twilio_reply(&app, "+393331234567", "ok grazie", TWILIO_TOKEN).await;
    assert_eq!(other.status(), 200);
    assert_eq!(
        twilio_reply(&app, "+393339999999", "OK", TWILIO_TOKEN)
            .await
            .status(),
        200
    );
    assert!(acknowledgements(&app, latest).await.is_empty());

    let answer = twilio_reply(&app, "+393331234567", " ok. ", TWILIO_TOKEN).await;
    assert_eq!(answer.status(), 200);
    assert!(answer.text().await.unwrap().contains("<Response/>"));
    let acks = acknowledgements(&app, latest).await;
    assert_eq!(acks.len(), 1, "{acks:?}");
    assert_eq!(acks[0].channel, ChannelKind::Sms);
    assert_eq!(acks[0].subscriber_name, "CUP Assisi");
    assert!(acknowledgements(&app, earlier).await.is_empty());
    let logs = app.logs();
    assert!(
        !logs.contains("3339999999") && !logs.contains("ok grazie"),
        "numbers masked, texts never logged"
    );
    let m = app.get("/metrics", None).await.text().await.unwrap();
    assert!(
        m.contains("banditore_acknowledgements_total{channel=\"sms\"} 1"),
        "{m}"
    );
}

#[tokio::test]
async fn an_ok_through_vonage_acknowledges_with_the_token_and_nothing_without_it() {
    let double = SmsDouble::start().await;
    let app = app_with(&double, &[SmsProvider::Vonage]).await;
    let (latest, _) = desks_texted_about_two_incidents(&app, &double).await;
    let reply = |token: &str, msisdn: &str, text: &str| {
        let url = app.url(&format!("{}?token={token}", inbound("vonage")));
        let body = json!({
            "msisdn": msisdn, "to": "393400000000", "messageId": "0A0000000123ABCD1",
            "text": text, "type": "text", "keyword": text.to_uppercase(),
            "message-timestamp": "2026-12-05 13:00:00",
        });
        let http = app.http.clone();
        async move {
            http.post(url)
                .json(&body)
                .send()
                .await
                .unwrap()
                .status()
                .as_u16()
        }
    };
    assert_eq!(reply("guess", "393331234567", "OK").await, 401);
    assert_eq!(reply("", "393331234567", "OK").await, 401);
    assert_eq!(reply(REPLY_TOKEN, "393339999999", "OK").await, 204);
    assert_eq!(reply(REPLY_TOKEN, "393331234567", "no").await, 204);
    assert!(acknowledgements(&app, latest).await.is_empty());
    assert_eq!(reply(REPLY_TOKEN, "393331234567", "Sì!").await, 204);
    assert_eq!(acknowledgements(&app, latest).await.len(), 1);
    // Vonage may be set to GET, the fields in the query.
    let get = app
        .http
        .get(app.url(&format!(
            "{}?token={REPLY_TOKEN}&msisdn=393331234567&text=OK&messageId=1",
            inbound("vonage")
        )))
        .send()
        .await
        .unwrap();
    assert_eq!(get.status(), 204);
    assert_eq!(
        acknowledgements(&app, latest).await.len(),
        1,
        "once per desk"
    );
}

#[tokio::test]
async fn an_ok_through_another_provider_is_read_from_the_configured_fields_with_the_token() {
    let double = SmsDouble::start().await;
    let app = app_with(&double, &[SmsProvider::Skebby]).await;
    let (latest, earlier) = desks_texted_about_two_incidents(&app, &double).await;
    let reply = |token: &str, fields: &[(&str, &str)]| {
        let url = app.url(&format!("{}?token={token}", inbound("skebby")));
        let form: Vec<(String, String)> = fields
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let http = app.http.clone();
        async move {
            http.post(url)
                .form(&form)
                .send()
                .await
                .unwrap()
                .status()
                .as_u16()
        }
    };
    // `reply_sender_field` and `reply_text_field` are `from` and `text` by default.
    assert_eq!(
        reply("guess", &[("from", "+393331234567"), ("text", "OK")]).await,
        401
    );
    assert_eq!(
        reply(REPLY_TOKEN, &[("sender", "+393331234567"), ("text", "OK")]).await,
        400
    );
    assert_eq!(
        reply(REPLY_TOKEN, &[("from", "+393331234567"), ("text", "forse")]).await,
        204
    );
    assert!(acknowledgements(&app, latest).await.is_empty());
    // The number as the provider writes it, national here: read as the desk's addresses are.
    assert_eq!(
        reply(REPLY_TOKEN, &[("from", "333 123 4567"), ("text", "ok")]).await,
        204
    );
    let acks = acknowledgements(&app, latest).await;
    assert_eq!(acks.len(), 1, "{acks:?}");
    assert_eq!(acks[0].channel, ChannelKind::Sms);
    assert!(acknowledgements(&app, earlier).await.is_empty());
}
