//! SMS through the gateway doubles: the first provider sends, the next takes over when it
//! throttles or fails, Vonage's 200-with-error is a failure, GSM-7 folding, delivery reports.

use std::time::Duration;

use serde_json::{Value, json};

use crate::support::*;

/// Providers as a deployment writes them, all pointing at the double.
pub(crate) fn providers(double: &SmsDouble, kinds: &[SmsProvider]) -> String {
    let mut toml = String::new();
    for (i, kind) in kinds.iter().enumerate() {
        let body = match kind {
            SmsProvider::Twilio => format!(
                "name = \"twilio\"\nkind = \"twilio\"\nbase_url = \"{}\"\nusername = \"{TWILIO_SID}\"\npassword = \"{TWILIO_TOKEN}\"\nsender = \"+15005550006\"",
                double.base_url()
            ),
            SmsProvider::Vonage => format!(
                "name = \"vonage\"\nkind = \"vonage\"\nbase_url = \"{}\"\nusername = \"{VONAGE_KEY}\"\npassword = \"{VONAGE_SECRET}\"\nsender = \"Regione\"",
                double.base_url()
            ),
            SmsProvider::Skebby => format!(
                "name = \"skebby\"\nkind = \"skebby\"\nbase_url = \"{}\"\nusername = \"{SKEBBY_USER}\"\npassword = \"{SKEBBY_PASSWORD}\"\nsender = \"Regione\"",
                double.skebby_base_url()
            ),
        };
        toml.push_str(&format!(
            "[[channels.sms.providers]]\n{body}\npriority = {i}\nrate_per_second = 50\n\n"
        ));
    }
    toml
}

async fn app_with(double: &SmsDouble, kinds: &[SmsProvider], env: &[(&str, &str)]) -> TestApp {
    let smtp = SmtpServer::start();
    let mut all = vec![("BANDITORE__CHANNELS__SMS__ENABLED", "true")];
    all.extend_from_slice(env);
    TestApp::spawn(&smtp, &providers(double, kinds), &all).await
}

async fn desk(app: &TestApp, phones: &[&str]) -> i64 {
    app.subscribe(json!({
        "name": "Reperibile CUP",
        "language": "it",
        "addresses": {"sms": phones},
        "subscriptions": [{"matchers": ["service=~\"cup.*\""]}],
    }))
    .await
}

/// Every delivery of every incident, oldest first.
async fn deliveries(app: &TestApp) -> Vec<Value> {
    let incidents = app.get_json("/api/v1/incidents", VIEWER_TOKEN).await;
    let mut all = Vec::new();
    for incident in incidents["incidents"].as_array().unwrap().iter().rev() {
        let id = incident["id"].as_i64().unwrap();
        let d = app
            .get_json(&format!("/api/v1/incidents/{id}/deliveries"), VIEWER_TOKEN)
            .await;
        all.extend(d["deliveries"].as_array().unwrap().iter().cloned());
    }
    all
}

async fn settled(app: &TestApp, n: usize) -> Vec<Value> {
    eventually(
        || deliveries(app),
        |d| {
            d.len() >= n
                && d.iter()
                    .all(|d| d["state"] != "pending" && d["state"] != "sending")
        },
    )
    .await
}

#[tokio::test]
async fn an_incident_is_texted_through_the_first_provider_with_its_segments() {
    let double = SmsDouble::start().await;
    let app = app_with(&double, &[SmsProvider::Twilio, SmsProvider::Vonage], &[]).await;
    desk(&app, &["333 123 4567"]).await;
    fire_alert(&app, "firing", "cup-backend", "CUP non risponde").await;
    let sent = double.wait_for(1, Duration::from_secs(10)).await;
    assert_eq!(sent[0].provider, SmsProvider::Twilio);
    assert_eq!(sent[0].to, "+393331234567", "stored and sent in E.164");
    assert_eq!(sent[0].from, "+15005550006");
    assert!(
        sent[0].text.contains("DISSERVIZIO IN CORSO"),
        "{}",
        sent[0].text
    );
    assert!(
        sent[0].text.contains("CUP non risponde"),
        "{}",
        sent[0].text
    );
    assert_eq!(sent[0].encoding, "GSM-7", "{}", sent[0].text);
    assert!(sent[0].segments <= 2);
    let d = &settled(&app, 1).await[0];
    assert_eq!(d["state"], "sent");
    assert_eq!(d["provider"], "twilio");
    assert_eq!(d["provider_id"], sent[0].id.as_str());
    assert_eq!(
        d["segments"], sent[0].segments,
        "the segments Twilio billed"
    );

    fire_alert(&app, "resolved", "cup-backend", "CUP non risponde").await;
    let sent = double.wait_for(2, Duration::from_secs(10)).await;
    assert!(
        sent[1].text.contains("DISSERVIZIO RISOLTO"),
        "{}",
        sent[1].text
    );
    assert_eq!(double.sent_via(SmsProvider::Vonage).len(), 0);
    let metrics = app.get("/metrics", None).await.text().await.unwrap();
    assert!(
        metrics.contains("banditore_sms_segments_total{provider=\"twilio\"}"),
        "segments counted in metrics"
    );
}

#[tokio::test]
async fn a_throttling_or_failing_provider_hands_the_message_to_the_next_exactly_once() {
    let double = SmsDouble::start().await;
    let app = app_with(&double, &[SmsProvider::Twilio, SmsProvider::Vonage], &[]).await;
    desk(&app, &["+393331234567"]).await;
    double.throttle_next(SmsProvider::Twilio, 1);
    fire_alert(&app, "firing", "cup-backend", "CUP non risponde").await;
    let sent = double.wait_for(1, Duration::from_secs(10)).await;
    assert_eq!(sent[0].provider, SmsProvider::Vonage);
    // A 429 puts Twilio aside for a second (it sends no Retry-After); then it is tried again.
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    double.fail_next(SmsProvider::Twilio, 1, 503);
    fire_alert(&app, "firing", "cup-portale", "Portale referti lento").await;
    let sent = double.wait_for(2, Duration::from_secs(10)).await;
    assert_eq!(sent[1].provider, SmsProvider::Vonage);
    assert!(sent[1].text.contains("Portale referti lento"));
    // Healthy again: the first provider sends.
    fire_alert(&app, "resolved", "cup-backend", "CUP non risponde").await;
    let sent = double.wait_for(3, Duration::from_secs(10)).await;
    assert_eq!(sent[2].provider, SmsProvider::Twilio);
    let d = settled(&app, 3).await;
    let providers: Vec<&str> = d.iter().map(|d| d["provider"].as_str().unwrap()).collect();
    // By incident, then by update: CUP opened (vonage) and resolved (twilio), portal (vonage).
    assert_eq!(providers, ["vonage", "twilio", "vonage"]);
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(double.sent().len(), 3, "each message sent exactly once");
    for d in &d {
        assert_eq!(d["state"], "sent", "{d}");
        assert_eq!(d["attempts"], 1, "failing over is one attempt: {d}");
    }
}

#[tokio::test]
async fn vonage_200_with_an_error_status_is_a_failure() {
    let double = SmsDouble::start().await;
    let app = app_with(&double, &[SmsProvider::Vonage], &[]).await;
    desk(&app, &["+393331234567"]).await;
    double.vonage_status_next("15", 1);
    fire_alert(&app, "firing", "cup-backend", "CUP non risponde").await;
    let d = &settled(&app, 1).await[0];
    assert_eq!(d["state"], "failed", "{d}");
    assert!(
        d["last_error"].as_str().unwrap().contains("status 15"),
        "{d}"
    );
    assert!(double.sent().is_empty());
}

#[tokio::test]
async fn accented_italian_stays_gsm7_when_folded_and_is_ucs2_when_not() {
    let summary = "È in corso un guasto: l’accesso ai referti è sospeso";
    let double = SmsDouble::start().await;
    let folded = app_with(&double, &[SmsProvider::Vonage], &[]).await;
    desk(&folded, &["+393331234567"]).await;
    fire_alert(&folded, "firing", "cup-backend", summary).await;
    let sent = double.wait_for(1, Duration::from_secs(10)).await;
    assert!(
        sent[0].text.contains("E' in corso un guasto: l'accesso"),
        "{}",
        sent[0].text
    );
    assert_eq!(sent[0].encoding, "GSM-7");
    assert!(!sent[0].unicode_flag && !sent[0].garbled);
    drop(folded);

    let double = SmsDouble::start().await;
    let kept = app_with(
        &double,
        &[SmsProvider::Vonage],
        &[("BANDITORE__CHANNELS__SMS__FOLD_TO_GSM7", "false")],
    )
    .await;
    desk(&kept, &["+393331234567"]).await;
    fire_alert(&kept, "firing", "cup-backend", summary).await;
    let sent = double.wait_for(1, Duration::from_secs(10)).await;
    assert!(sent[0].text.contains("È in corso"), "{}", sent[0].text);
    assert_eq!(sent[0].encoding, "UCS-2");
    assert!(sent[0].unicode_flag, "sent as type=unicode");
    assert!(!sent[0].garbled);
    let d = &settled(&kept, 1).await[0];
    assert_eq!(d["segments"], sent[0].segments);
}

#[tokio::test]
async fn delivery_reports_mark_the_delivery_and_forgeries_are_refused() {
    let double = SmsDouble::start().await;
    let app = app_with(&double, &[SmsProvider::Twilio], &[]).await;
    double.deliver_callbacks_to(&app.base);
    desk(&app, &["+393331234567"]).await;
    fire_alert(&app, "firing", "cup-backend", "CUP non risponde").await;
    let sent = double.wait_for(1, Duration::from_secs(10)).await;
    settled(&app, 1).await;
    assert_eq!(
        double
            .twilio_status_callback_badly_signed(&sent[0].id, "delivered")
            .await,
        401
    );
    assert_eq!(
        double
            .twilio_status_callback(&sent[0].id, "sent", None)
            .await,
        200
    );
    assert_eq!(
        double
            .twilio_status_callback(&sent[0].id, "delivered", None)
            .await,
        200
    );
    // A late intermediate report does not undo the final one.
    assert_eq!(
        double
            .twilio_status_callback(&sent[0].id, "sent", None)
            .await,
        200
    );
    let d = &deliveries(&app).await[0];
    assert_eq!(d["report_status"], "delivered", "{d}");
    assert!(d["report_at"].is_string());

    // Vonage reports carry the token of their URL.
    let double = SmsDouble::start().await;
    let app = app_with(&double, &[SmsProvider::Vonage], &[]).await;
    double.deliver_callbacks_to(&app.base);
    desk(&app, &["+393331234567"]).await;
    fire_alert(&app, "firing", "cup-backend", "CUP non risponde").await;
    let sent = double.wait_for(1, Duration::from_secs(10)).await;
    settled(&app, 1).await;
    assert_eq!(double.vonage_receipt(&sent[0].id, "failed", "6").await, 200);
    let d = &deliveries(&app).await[0];
    assert_eq!(d["report_status"], "failed", "{d}");
    assert_eq!(d["report_error"], "6", "{d}");
    let forged = app
        .post_json(
            "/api/v1/callbacks/sms/vonage?token=guess",
            None,
            &json!({"messageId": sent[0].id, "status": "delivered"}),
        )
        .await;
    assert_eq!(forged.status(), 401);
}

#[tokio::test]
async fn an_invalid_phone_number_is_refused_with_the_field_named() {
    let double = SmsDouble::start().await;
    let app = app_with(&double, &[SmsProvider::Twilio], &[]).await;
    let resp = app
        .post(
            "/api/v1/subscribers",
            Some(ADMIN_TOKEN),
            "application/json",
            json!({"name": "X", "addresses": {"sms": ["+39 333", "06 6988 1234x"]}}).to_string(),
        )
        .await;
    assert_eq!(resp.status(), 400);
    let body: Value = resp.json().await.unwrap();
    assert!(
        body["error"].as_str().unwrap().contains("+39 333"),
        "{body}"
    );
    assert_eq!(body["field"], "addresses.sms[0]", "{body}");
    let list = app.get_json("/api/v1/subscribers", ADMIN_TOKEN).await;
    assert_eq!(
        list["subscribers"].as_array().unwrap().len(),
        0,
        "nothing half-written"
    );
}

#[tokio::test]
async fn skebby_logs_in_again_when_its_session_expires() {
    let double = SmsDouble::start().await;
    let app = app_with(&double, &[SmsProvider::Skebby], &[]).await;
    desk(&app, &["+393331234567"]).await;
    fire_alert(&app, "firing", "cup-backend", "CUP non risponde").await;
    let sent = double.wait_for(1, Duration::from_secs(10)).await;
    assert_eq!(sent[0].provider, SmsProvider::Skebby);
    assert_eq!(sent[0].message_type.as_deref(), Some("GP"));
    assert_eq!(double.skebby_logins(), 1);
    double.expire_skebby_sessions();
    fire_alert(&app, "resolved", "cup-backend", "CUP non risponde").await;
    double.wait_for(2, Duration::from_secs(10)).await;
    assert_eq!(double.skebby_logins(), 2);
    let d = settled(&app, 2).await;
    assert!(
        d.iter().all(|d| d["state"] == "sent" && d["attempts"] == 1),
        "{d:#?}"
    );
}

#[tokio::test]
async fn a_provider_failing_again_and_again_is_put_aside() {
    let double = SmsDouble::start().await;
    let app = app_with(&double, &[SmsProvider::Twilio, SmsProvider::Vonage], &[]).await;
    desk(&app, &["+393331234567", "+393331234568", "+393331234569"]).await;
    double.fail_next(SmsProvider::Twilio, 3, 503);
    fire_alert(&app, "firing", "cup-backend", "CUP non risponde").await;
    double.wait_for(3, Duration::from_secs(10)).await;
    // Three failures in a row (put_aside_after = 3): the next message skips Twilio.
    fire_alert(&app, "firing", "cup-portale", "Portale referti lento").await;
    let sent = double.wait_for(6, Duration::from_secs(10)).await;
    assert!(
        sent.iter().all(|m| m.provider == SmsProvider::Vonage),
        "{sent:#?}"
    );
    assert_eq!(
        double.requests_to(SmsProvider::Twilio).len(),
        3,
        "not asked while aside"
    );
}

#[tokio::test]
async fn a_throttled_primary_is_put_aside_and_the_secondary_sends_at_its_own_rate() {
    let double = SmsDouble::start().await;
    // Twilio paced at 3 a second and answering 429 to everything; Vonage at 30 a second.
    let config = providers(&double, &[SmsProvider::Twilio, SmsProvider::Vonage])
        .replacen("rate_per_second = 50", "rate_per_second = 3", 1)
        .replacen("rate_per_second = 50", "rate_per_second = 30", 1);
    let smtp = SmtpServer::start();
    let app = TestApp::spawn(
        &smtp,
        &config,
        &[("BANDITORE__CHANNELS__SMS__ENABLED", "true")],
    )
    .await;
    let phones: Vec<String> = (0..30).map(|i| format!("+3933312345{i:02}")).collect();
    let phones: Vec<&str> = phones.iter().map(String::as_str).collect();
    desk(&app, &phones).await;
    double.throttle_next(SmsProvider::Twilio, 10_000);
    let fired = std::time::Instant::now();
    fire_alert(&app, "firing", "cup-backend", "CUP non risponde").await;
    let sent = double.wait_for(30, Duration::from_secs(30)).await;
    let took = fired.elapsed();
    assert!(sent.iter().all(|m| m.provider == SmsProvider::Vonage));
    let asked = double.requests_to(SmsProvider::Twilio).len();
    eprintln!("30 messages in {took:?}; Twilio asked {asked} times");
    // At Twilio's pace the 30 would take 10 s; at Vonage's, one. Twilio is asked again only
    // when its time aside (1 s, then 2 s…) ends.
    assert!(asked <= 4, "Twilio asked {asked} times");
    assert!(took < Duration::from_secs(5), "30 messages took {took:?}");
}

#[tokio::test]
async fn a_provider_answering_only_500_is_asked_put_aside_after_times_whatever_runs_at_once() {
    let double = SmsDouble::start().await;
    let app = app_with(
        &double,
        &[SmsProvider::Twilio, SmsProvider::Vonage],
        &[("BANDITORE__CHANNELS__SMS__CONCURRENCY", "16")],
    )
    .await;
    let phones: Vec<String> = (0..20).map(|i| format!("+3933312346{i:02}")).collect();
    let phones: Vec<&str> = phones.iter().map(String::as_str).collect();
    desk(&app, &phones).await;
    double.fail_next(SmsProvider::Twilio, 10_000, 500);
    fire_alert(&app, "firing", "cup-backend", "CUP non risponde").await;
    let sent = double.wait_for(20, Duration::from_secs(30)).await;
    assert!(sent.iter().all(|m| m.provider == SmsProvider::Vonage));
    // put_aside_after = 3: three tries, however many sends were in flight.
    assert_eq!(double.requests_to(SmsProvider::Twilio).len(), 3);
}

#[tokio::test]
async fn a_number_that_opted_out_is_marked_gone() {
    let double = SmsDouble::start().await;
    let app = app_with(&double, &[SmsProvider::Twilio, SmsProvider::Vonage], &[]).await;
    double.twilio_refuse_number("+393331234567", 21610);
    let id = desk(&app, &["+393331234567"]).await;
    fire_alert(&app, "firing", "cup-backend", "CUP non risponde").await;
    let d = &settled(&app, 1).await[0];
    assert_eq!(d["state"], "gone", "{d}");
    assert!(d["last_error"].as_str().unwrap().contains("21610"), "{d}");
    assert!(
        double.sent().is_empty(),
        "the opt-out is honoured by every provider"
    );
    let subscriber = app
        .get_json(&format!("/api/v1/subscribers/{id}"), ADMIN_TOKEN)
        .await;
    assert_eq!(subscriber["addresses"][0]["state"], "gone", "{subscriber}");
}

#[tokio::test]
async fn a_generic_provider_sends_the_request_its_configuration_describes() {
    // Twilio's API, described by hand: what a deployment does for a gateway without a `kind`.
    let double = SmsDouble::start().await;
    let generic = format!(
        r#"[[channels.sms.providers]]
name = "gateway"
kind = "generic"
url = "{}/2010-04-01/Accounts/{{{{ username }}}}/Messages.json"
username = "{TWILIO_SID}"
password = "{TWILIO_TOKEN}"
sender = "+15005550006"
headers = {{ Authorization = "Basic {{{{ (username ~ ':' ~ password) | b64encode }}}}" }}
body = {{ To = "{{{{ to }}}}", From = "{{{{ sender }}}}", Body = "{{{{ text }}}}" }}
id_pointer = "/sid"
"#,
        double.base_url()
    );
    let smtp = SmtpServer::start();
    let app = TestApp::spawn(
        &smtp,
        &generic,
        &[("BANDITORE__CHANNELS__SMS__ENABLED", "true")],
    )
    .await;
    desk(&app, &["+393331234567"]).await;
    double.throttle_next(SmsProvider::Twilio, 1);
    fire_alert(&app, "firing", "cup-backend", "CUP non risponde").await;
    let sent = double.wait_for(1, Duration::from_secs(15)).await;
    assert_eq!(sent[0].to, "+393331234567");
    assert_eq!(sent[0].from, "+15005550006");
    assert!(
        sent[0].text.contains("CUP non risponde"),
        "{}",
        sent[0].text
    );
    let d = &settled(&app, 1).await[0];
    assert_eq!(d["state"], "sent", "{d}");
    assert_eq!(d["provider"], "gateway");
    assert_eq!(d["provider_id"], sent[0].id.as_str(), "found at id_pointer");
    assert_eq!(d["attempts"], 1, "the 429 was waited out, not counted: {d}");
    assert_eq!(double.throttled().len(), 1);
}

/// The subscriber's first address.
async fn first_address(app: &TestApp, subscriber: i64) -> Value {
    let path = format!("/api/v1/subscribers/{subscriber}");
    app.get_json(&path, ADMIN_TOKEN).await["addresses"][0].clone()
}

/// Twilio's 21612 says that this 'To' cannot be reached from this 'From' (sender rules of the
/// country or network, no route): another provider, with its own sender and routes, may reach
/// it, and the number is not gone.
#[tokio::test]
async fn a_number_twilio_cannot_route_is_texted_by_the_next_provider() {
    let double = SmsDouble::start().await;
    let app = app_with(&double, &[SmsProvider::Twilio, SmsProvider::Vonage], &[]).await;
    double.twilio_refuse_number("+393331234567", 21612);
    let id = desk(&app, &["+393331234567"]).await;
    fire_alert(&app, "firing", "cup-backend", "CUP non risponde").await;
    let d = &settled(&app, 1).await[0];
    assert_eq!(d["state"], "sent", "{d}");
    assert_eq!(d["provider"], "vonage", "{d}");
    assert_eq!(double.sent_via(SmsProvider::Vonage).len(), 1);
    let address = first_address(&app, id).await;
    assert_eq!(address["state"], "active", "{address}");
}

/// Twilio's 21614 says the number is not a mobile (a landline): it cannot receive SMS from
/// anyone, so it is marked gone and no other provider is paid to try.
#[tokio::test]
async fn a_landline_is_marked_gone() {
    let double = SmsDouble::start().await;
    let app = app_with(&double, &[SmsProvider::Twilio, SmsProvider::Vonage], &[]).await;
    double.twilio_refuse_number("+393331234567", 21614);
    let id = desk(&app, &["+393331234567"]).await;
    fire_alert(&app, "firing", "cup-backend", "CUP non risponde").await;
    let d = &settled(&app, 1).await[0];
    assert_eq!(d["state"], "gone", "{d}");
    assert!(d["last_error"].as_str().unwrap().contains("21614"), "{d}");
    assert!(double.requests_to(SmsProvider::Vonage).is_empty());
    let address = first_address(&app, id).await;
    assert_eq!(address["state"], "gone", "{address}");
}

/// Twilio queues what goes over a sender's rate and refuses more (21611) once the queue is
/// longer than it keeps: that is Twilio asking to slow down, so the messages wait, without
/// counting attempts, and all go out once the queue has room.
#[tokio::test]
async fn a_full_twilio_queue_holds_messages_instead_of_failing_them() {
    let double = SmsDouble::start_with(SmsOptions {
        twilio_segments_per_second: Some(2),
        twilio_queue_limit: Duration::from_secs(1),
        ..SmsOptions::default()
    })
    .await;
    let app = app_with(&double, &[SmsProvider::Twilio], &[]).await;
    let phones: Vec<String> = (0..6).map(|i| format!("+3933312347{i:02}")).collect();
    let phones: Vec<&str> = phones.iter().map(String::as_str).collect();
    desk(&app, &phones).await;
    fire_alert(&app, "firing", "cup-backend", "CUP non risponde").await;
    double.wait_for(6, Duration::from_secs(30)).await;
    let refused = double.requests_to(SmsProvider::Twilio);
    let refused = refused.iter().filter(|r| r.status == 400).count();
    assert!(refused > 0, "the queue filled up");
    let d = settled(&app, 6).await;
    for d in &d {
        assert_eq!(d["state"], "sent", "{d}");
        assert_eq!(
            d["attempts"], 1,
            "waiting for the queue is not an attempt: {d}"
        );
    }
}

/// An alert long enough for two parts, so that one of them can fail.
const LONG_SUMMARY: &str = "CUP non risponde: le prenotazioni allo sportello e al telefono \
    sono sospese, i referti online non si scaricano e le disdette non vengono registrate; \
    rivolgersi al numero verde per le urgenze";

/// A Vonage message whose second part is refused reached the phone incomplete: it goes whole
/// through the next provider (a duplicate first part is better than a message cut short), and
/// never whole through Vonage again, even when that next provider needs another attempt.
#[tokio::test]
async fn a_vonage_message_cut_short_goes_whole_through_another_provider_not_vonage_again() {
    let double = SmsDouble::start().await;
    let app = app_with(
        &double,
        &[SmsProvider::Vonage, SmsProvider::Twilio],
        &[("BANDITORE__OUTBOX__RETRY_INITIAL", "1s")],
    )
    .await;
    desk(&app, &["+393331234567"]).await;
    double.vonage_fail_part_next(2, "5", 1);
    double.fail_next(SmsProvider::Twilio, 1, 503);
    fire_alert(&app, "firing", "cup-backend", LONG_SUMMARY).await;
    let d = &settled(&app, 1).await[0];
    assert_eq!(d["state"], "sent", "{d}");
    assert_eq!(d["provider"], "twilio", "{d}");
    let sent = double.sent_to("+393331234567");
    let providers: Vec<_> = sent
        .iter()
        .map(|m| (m.provider, m.failed_parts.clone()))
        .collect();
    assert_eq!(
        providers,
        [
            (SmsProvider::Vonage, vec![2]),
            (SmsProvider::Twilio, vec![])
        ],
        "the first part twice, the whole message once"
    );
    assert_eq!(double.requests_to(SmsProvider::Vonage).len(), 1);
}

/// With Vonage alone, a message whose second part is throttled is not sent whole again and
/// again (each time repeating its first part): it fails once, naming what reached the phone.
#[tokio::test]
async fn a_vonage_message_cut_short_is_not_repeated_when_no_other_provider_can_send_it() {
    let double = SmsDouble::start().await;
    let app = app_with(
        &double,
        &[SmsProvider::Vonage],
        &[("BANDITORE__OUTBOX__RETRY_INITIAL", "1s")],
    )
    .await;
    desk(&app, &["+393331234567"]).await;
    double.vonage_fail_part_next(2, "1", 5);
    fire_alert(&app, "firing", "cup-backend", LONG_SUMMARY).await;
    let d = &settled(&app, 1).await[0];
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(double.requests_to(SmsProvider::Vonage).len(), 1, "{d}");
    assert_eq!(d["state"], "failed", "{d}");
    let error = d["last_error"].as_str().unwrap();
    assert!(error.contains("part 2 of 2"), "{d}");
}

/// Vonage's status 33 says the number is de-activated and may not receive messages: the
/// number is gone, for every provider.
#[tokio::test]
async fn a_number_vonage_reports_deactivated_is_marked_gone() {
    let double = SmsDouble::start().await;
    let app = app_with(&double, &[SmsProvider::Vonage, SmsProvider::Twilio], &[]).await;
    double.vonage_status_next("33", 1);
    let id = desk(&app, &["+393331234567"]).await;
    fire_alert(&app, "firing", "cup-backend", "CUP non risponde").await;
    let d = &settled(&app, 1).await[0];
    assert_eq!(d["state"], "gone", "{d}");
    assert!(
        d["last_error"].as_str().unwrap().contains("status 33"),
        "{d}"
    );
    assert!(double.requests_to(SmsProvider::Twilio).is_empty());
    let address = first_address(&app, id).await;
    assert_eq!(address["state"], "gone", "{address}");
}

/// Vonage's status 8 says the account is suspended: like refused credentials, an operator must
/// act, so the channel is paused and the message waits, uncounted, until Vonage takes it.
#[tokio::test]
async fn a_suspended_vonage_account_pauses_the_channel() {
    let double = SmsDouble::start().await;
    let app = app_with(
        &double,
        &[SmsProvider::Vonage],
        &[
            ("BANDITORE__OUTBOX__RETRY_INITIAL", "1s"),
            ("BANDITORE__OUTBOX__RETRY_MAX", "1s"),
        ],
    )
    .await;
    desk(&app, &["+393331234567"]).await;
    double.vonage_status_next("8", 3);
    fire_alert(&app, "firing", "cup-backend", "CUP non risponde").await;
    eventually(|| async { app.logs() }, |l| l.contains("channel paused")).await;
    double.wait_for(1, Duration::from_secs(20)).await;
    let d = &settled(&app, 1).await[0];
    assert_eq!(d["state"], "sent", "{d}");
    assert_eq!(d["attempts"], 1, "a paused channel counts no attempt: {d}");
}
