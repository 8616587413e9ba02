//! Voice calls through the Twilio and Vonage doubles: a desk hears the incident in Italian and
//! presses 1, which acknowledges it; unanswered calls and answering machines are recorded and
//! not called again; forged key presses change nothing; Twilio fails over to Vonage; calls are
//! placed at the provider's pace while the machine is busy.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use banditore::domain::subscriber::ChannelKind;
use banditore::settings::{SqliteSynchronous, StoreSettings};
use banditore::store::AckRow;
use serde_json::{Value, json};

use crate::support::voice::*;
use crate::support::*;

const CALLER_TWILIO: &str = "+390612345678";
const CALLER_VONAGE: &str = "+390612345679";

/// The voice providers as a deployment writes them, pointing at the double.
fn providers(double: &VoiceDouble, kinds: &[Voice], calls_per_second: Option<u32>) -> String {
    let mut toml = String::new();
    let pace = calls_per_second.map_or(String::new(), |n| format!("calls_per_second = {n}\n"));
    for (i, kind) in kinds.iter().enumerate() {
        let body = match kind {
            Voice::Twilio => format!(
                "name = \"twilio\"\nkind = \"twilio\"\nbase_url = \"{}\"\nusername = \"{TWILIO_SID}\"\npassword = \"{TWILIO_TOKEN}\"\ncaller = \"{CALLER_TWILIO}\"",
                double.base_url()
            ),
            Voice::Vonage => format!(
                "name = \"vonage\"\nkind = \"vonage\"\nbase_url = \"{}\"\nusername = \"{VONAGE_APPLICATION}\"\npassword_file = \"{}\"\nsignature_secret = \"{VONAGE_SIGNATURE_SECRET}\"\ncaller = \"{CALLER_VONAGE}\"",
                double.base_url(),
                vonage_key_path().display()
            ),
        };
        toml.push_str(&format!(
            "[[channels.voice.providers]]\n{body}\npriority = {i}\n{pace}\n"
        ));
    }
    toml
}

async fn app_with(double: &VoiceDouble, kinds: &[Voice], calls_per_second: Option<u32>) -> TestApp {
    let smtp = SmtpServer::start();
    let app = TestApp::spawn(
        &smtp,
        &providers(double, kinds, calls_per_second),
        &[
            ("BANDITORE__CHANNELS__VOICE__ENABLED", "true"),
            ("BANDITORE__CHANNELS__VOICE__WAIT_FOR_KEY", "2s"),
        ],
    )
    .await;
    double.deliver_callbacks_to(&app.base);
    app
}

async fn desk(app: &TestApp, name: &str, phone: &str) -> i64 {
    app.subscribe(json!({
        "name": name,
        "language": "it",
        "addresses": {"voice": [phone]},
        "subscriptions": [{"matchers": ["service=~\"cup.*\""]}],
    }))
    .await
}

/// The voice deliveries of the latest incident, and its id.
async fn deliveries(app: &TestApp) -> (i64, Vec<Value>) {
    let incidents = app.get_json("/api/v1/incidents", VIEWER_TOKEN).await;
    let id = incidents["incidents"][0]["id"]
        .as_i64()
        .expect("an incident");
    let d = app
        .get_json(&format!("/api/v1/incidents/{id}/deliveries"), VIEWER_TOKEN)
        .await;
    let voice = d["deliveries"].as_array().unwrap().iter();
    (
        id,
        voice.filter(|d| d["channel"] == "voice").cloned().collect(),
    )
}

/// The incident's acknowledgements, read from the running service's store.
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
        .expect("the service's store");
    let acks = store.acknowledgements(incident).await.unwrap();
    store.close().await;
    acks
}

async fn metrics(app: &TestApp) -> String {
    app.get("/metrics", None).await.text().await.unwrap()
}

#[tokio::test]
async fn a_desk_hears_the_incident_in_italian_and_pressing_1_acknowledges_it() {
    let double = VoiceDouble::start().await;
    let app = app_with(&double, &[Voice::Twilio, Voice::Vonage], None).await;
    desk(&app, "CUP Foligno", "0742 123456").await;
    fire_alert(
        &app,
        "firing",
        "cup-backend",
        "CUP non risponde & prenotazioni <ferme>",
    )
    .await;
    let call = double
        .wait_for_calls(1, Duration::from_secs(10))
        .await
        .remove(0);
    assert_eq!(call.provider, Voice::Twilio);
    assert_eq!(call.to, "+390742123456", "a landline, in E.164");
    assert_eq!(call.from, CALLER_TWILIO);
    assert_eq!(call.language, "it-IT");
    assert!(
        call.said[0].starts_with("Disservizio in corso: "),
        "{:?}",
        call.said
    );
    assert!(
        call.said[0].contains("CUP non risponde & prenotazioni <ferme>"),
        "{:?}",
        call.said
    );
    assert!(
        !call.said[0].contains("http"),
        "no links are read out: {:?}",
        call.said
    );
    assert_eq!(
        call.said[1],
        "Premi 1 per confermare di aver ricevuto il messaggio."
    );
    assert_eq!(call.said[2], call.said[0], "said once more if no key comes");
    assert_eq!(call.key_urls.len(), 2);
    assert!(
        call.key_urls.iter().all(|u| u.contains("ack=")),
        "{:?}",
        call.key_urls
    );

    double.wait_for_end(&call.id, Duration::from_secs(10)).await;
    let keys = double.keys();
    assert_eq!(keys.len(), 1);
    assert_eq!(keys[0].status, 200);
    assert!(
        keys[0].body.contains("Grazie, la conferma è registrata"),
        "{}",
        keys[0].body
    );
    assert!(keys[0].body.contains("<Hangup/>"), "{}", keys[0].body);

    let (incident, d) = eventually(
        || deliveries(&app),
        |(_, d)| d.len() == 1 && d[0]["report_status"] == "completed",
    )
    .await;
    assert_eq!(d[0]["state"], "sent");
    assert_eq!(d[0]["provider"], "twilio");
    assert_eq!(d[0]["provider_id"], call.id.as_str());
    let acks = acknowledgements(&app, incident).await;
    assert_eq!(acks.len(), 1, "{acks:?}");
    assert_eq!(acks[0].channel, ChannelKind::Voice);
    assert_eq!(acks[0].subscriber_name, "CUP Foligno");
    assert_eq!(acks[0].delivery_id, d[0]["id"].as_i64());
    let m = metrics(&app).await;
    assert!(
        m.contains("banditore_acknowledgements_total{channel=\"voice\"} 1"),
        "{m}"
    );
    assert!(
        m.contains("banditore_voice_calls_total{provider=\"twilio\"} 1"),
        "{m}"
    );
    assert_eq!(double.calls().len(), 1);
}

#[tokio::test]
async fn unanswered_calls_busy_lines_and_answering_machines_are_recorded_and_not_called_again() {
    let double = VoiceDouble::start().await;
    let app = app_with(&double, &[Voice::Twilio], Some(20)).await;
    for (name, phone, pickup) in [
        ("CUP Terni", "0744 123456", Pickup::NoAnswer),
        ("CUP Roma", "06 1234567", Pickup::Machine),
        ("CUP Milano", "02 12345678", Pickup::Busy),
    ] {
        desk(&app, name, phone).await;
        double.pickup(phone, pickup);
        double.pickup(&format!("+39{}", phone.replace(' ', "")), pickup);
    }
    fire_alert(&app, "firing", "cup-backend", "CUP non risponde").await;
    let calls = double.wait_for_calls(3, Duration::from_secs(10)).await;
    for call in &calls {
        double.wait_for_end(&call.id, Duration::from_secs(10)).await;
    }
    let (incident, d) = eventually(
        || deliveries(&app),
        |(_, d)| {
            d.len() == 3
                && d.iter().all(|d| {
                    d["report_status"] != Value::Null
                        && d["report_status"] != "ringing"
                        && d["report_status"] != "queued"
                        && d["report_status"] != "in-progress"
                })
        },
    )
    .await;
    let report = |number: &str| {
        d.iter()
            .find(|d| d["recipient"].as_str().is_some_and(|r| r.ends_with(number)))
            .unwrap_or_else(|| panic!("a delivery to …{number}: {d:#?}"))
    };
    assert_eq!(report("44123456")["report_status"], "no-answer");
    assert_eq!(report("61234567")["report_status"], "machine");
    assert_eq!(
        report("61234567")["report_error"],
        "answered by machine_start"
    );
    assert_eq!(report("212345678")["report_status"], "busy");
    assert!(
        d.iter().all(|d| d["state"] == "sent" && d["attempts"] == 1),
        "{d:#?}"
    );
    // The outbox retries after 200 ms in these tests: nothing is called again.
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    assert_eq!(double.calls().len(), 3, "{:#?}", double.calls());
    assert!(double.keys().is_empty());
    assert!(acknowledgements(&app, incident).await.is_empty());
}

#[tokio::test]
async fn forged_key_presses_change_nothing_and_a_genuine_one_after_them_acknowledges() {
    let double = VoiceDouble::start().await;
    let app = app_with(&double, &[Voice::Twilio], None).await;
    desk(&app, "CUP Perugia", "075 1234567").await;
    double.pickup("+390751234567", Pickup::Silent);
    fire_alert(&app, "firing", "cup-backend", "CUP non risponde").await;
    let call = double
        .wait_for_calls(1, Duration::from_secs(10))
        .await
        .remove(0);
    double.wait_for_end(&call.id, Duration::from_secs(10)).await;
    let (incident, _) = deliveries(&app).await;
    let url = call.key_urls[0].clone();
    let with = |from: &str, to: &str| url.replacen(from, to, 1);
    let token = url
        .split("token=")
        .nth(1)
        .unwrap()
        .split('&')
        .next()
        .unwrap()
        .to_owned();
    let ack = url
        .split("ack=")
        .nth(1)
        .unwrap()
        .split('&')
        .next()
        .unwrap()
        .to_owned();
    let (ack_incident, ack_rest) = ack.split_once('.').unwrap();

    // Signed with another auth token: 401.
    assert_eq!(
        double
            .twilio_key(&call, &url, &url, "1", "not-the-auth-token")
            .await,
        401
    );
    // Each forgery below is signed as Twilio would sign it: the URL's tokens refuse it.
    let forged = [
        // The last character changed: to `B` when the token already ends with `A`.
        with(
            &token,
            &format!(
                "{}{}",
                &token[..token.len() - 1],
                if token.ends_with('A') { 'B' } else { 'A' }
            ),
        ),
        with(&token, ""),
        with(&format!("/{incident}/"), &format!("/{}/", incident + 1)),
        with(
            &ack,
            &format!("{}.{ack_rest}", ack_incident.parse::<i64>().unwrap() + 1),
        ),
        with(
            &ack,
            &format!("{ack_incident}.{}", ack_rest.replacen('.', ".x", 1)),
        ),
        with("ack=", "ack=0."),
    ];
    for forged in &forged {
        let status = double
            .twilio_key(&call, forged, forged, "1", TWILIO_TOKEN)
            .await;
        assert_eq!(status, 404, "{forged}");
    }
    assert!(acknowledgements(&app, incident).await.is_empty());
    let m = metrics(&app).await;
    assert!(
        m.contains("banditore_voice_callbacks_refused_total{reason=\"signature\"} 1"),
        "{m}"
    );
    assert!(
        m.contains("banditore_voice_callbacks_refused_total{reason=\"token\"} 6"),
        "{m}"
    );
    // Another key, then the genuine 1.
    assert_eq!(
        double
            .twilio_key(&call, &url, &url, "7", TWILIO_TOKEN)
            .await,
        200
    );
    assert!(acknowledgements(&app, incident).await.is_empty());
    assert_eq!(
        double
            .twilio_key(&call, &url, &url, "1", TWILIO_TOKEN)
            .await,
        200
    );
    let acks = acknowledgements(&app, incident).await;
    assert_eq!(acks.len(), 1, "{acks:?}");
    // The same press again stands on the first.
    assert_eq!(
        double
            .twilio_key(&call, &url, &url, "1", TWILIO_TOKEN)
            .await,
        200
    );
    assert_eq!(acknowledgements(&app, incident).await, acks);
}

#[tokio::test]
async fn twilio_failing_hands_the_call_to_vonage_where_pressing_1_acknowledges() {
    let double = VoiceDouble::start().await;
    double.sign_vonage_callbacks();
    double.fail_next(Voice::Twilio, 1, 503);
    let app = app_with(&double, &[Voice::Twilio, Voice::Vonage], None).await;
    desk(&app, "CUP Spoleto", "0743 123456").await;
    fire_alert(&app, "firing", "cup-backend", "CUP non risponde").await;
    let call = double
        .wait_for_calls(1, Duration::from_secs(10))
        .await
        .remove(0);
    assert_eq!(call.provider, Voice::Vonage);
    assert_eq!(call.to, "390743123456");
    assert_eq!(call.from, CALLER_VONAGE.trim_start_matches('+'));
    assert_eq!(call.language, "it-IT");
    assert!(call.said[0].contains("CUP non risponde"), "{:?}", call.said);
    assert_eq!(
        call.said[1],
        "Premi 1 per confermare di aver ricevuto il messaggio."
    );
    double.wait_for_end(&call.id, Duration::from_secs(10)).await;
    let keys = double.keys();
    assert_eq!(keys.len(), 1, "{keys:?}");
    assert!(
        keys[0].body.contains("Grazie, la conferma è registrata"),
        "{}",
        keys[0].body
    );
    let (incident, d) = eventually(
        || deliveries(&app),
        |(_, d)| d.len() == 1 && d[0]["report_status"] == "completed",
    )
    .await;
    assert_eq!(d[0]["provider"], "vonage");
    assert_eq!(d[0]["provider_id"], call.id.as_str());
    assert_eq!(acknowledgements(&app, incident).await.len(), 1);
    let twilio: Vec<u16> = double
        .requests()
        .iter()
        .filter(|r| r.0 == Voice::Twilio)
        .map(|r| r.1)
        .collect();
    assert_eq!(twilio, [503], "Twilio was asked once");

    // Vonage's callbacks must carry the signature secret's JWT: without it, 401.
    let unsigned = app
        .http
        .post(format!(
            "{}{}",
            app.base,
            url::Url::parse(&call.key_urls[0])
                .map(|u| format!("{}?{}", u.path(), u.query().unwrap_or("")))
                .unwrap()
        ))
        .json(&json!({"uuid": call.id, "dtmf": {"digits": "1", "timed_out": false}}))
        .send()
        .await
        .unwrap();
    assert_eq!(unsigned.status(), 401);
}

#[tokio::test]
async fn a_desk_silent_on_vonage_hears_the_invitation_twice_then_goodbye() {
    let double = VoiceDouble::start().await;
    double.sign_vonage_callbacks();
    let app = app_with(&double, &[Voice::Vonage], None).await;
    desk(&app, "CUP Orvieto", "0763 123456").await;
    double.pickup("+390763123456", Pickup::Silent);
    fire_alert(&app, "firing", "cup-backend", "CUP non risponde").await;
    let call = double
        .wait_for_calls(1, Duration::from_secs(10))
        .await
        .remove(0);
    double.wait_for_end(&call.id, Duration::from_secs(10)).await;
    let call = double.calls().remove(0);
    let keys = double.keys();
    assert_eq!(keys.len(), 2, "the key awaited twice: {keys:?}");
    assert!(keys.iter().all(|k| k.status == 200));
    let press = "Premi 1 per confermare di aver ricevuto il messaggio.";
    assert_eq!(
        call.said.iter().filter(|s| *s == press).count(),
        2,
        "{:?}",
        call.said
    );
    assert_eq!(
        call.said.last().unwrap(),
        "Nessuna conferma ricevuta. Arrivederci."
    );
    let (incident, _) = deliveries(&app).await;
    assert!(acknowledgements(&app, incident).await.is_empty());
}

#[tokio::test]
async fn calls_are_placed_at_the_providers_pace_with_the_cores_kept_busy() {
    let double = VoiceDouble::start().await;
    let app = app_with(&double, &[Voice::Twilio], None).await;
    let phones = ["0742 111111", "0742 222222", "0742 333333", "0742 444444"];
    for (i, phone) in phones.iter().enumerate() {
        desk(&app, &format!("CUP {i}"), phone).await;
        double.pickup(&format!("+39{}", phone.replace(' ', "")), Pickup::NoAnswer);
    }
    let busy = Arc::new(AtomicBool::new(true));
    let burners: Vec<_> = (0..std::thread::available_parallelism().map_or(2, |n| n.get()))
        .map(|_| {
            let busy = busy.clone();
            std::thread::spawn(move || {
                let mut x = 0u64;
                while busy.load(Ordering::Relaxed) {
                    x = std::hint::black_box(x.wrapping_mul(6364136223846793005).wrapping_add(1));
                }
            })
        })
        .collect();
    fire_alert(&app, "firing", "cup-backend", "CUP non risponde").await;
    let calls = double.wait_for_calls(4, Duration::from_secs(20)).await;
    busy.store(false, Ordering::Relaxed);
    for b in burners {
        b.join().unwrap();
    }
    let gaps: Vec<Duration> = calls
        .windows(2)
        .map(|w| w[1].at.duration_since(w[0].at))
        .collect();
    let total = calls[3].at.duration_since(calls[0].at);
    eprintln!("calls placed {gaps:?} apart, {total:?} for four at one a second");
    // Twilio's default: one call a second per account; a bucket of one spaces them evenly.
    assert!(
        gaps.iter().all(|g| *g >= Duration::from_millis(900)),
        "{gaps:?}"
    );
    assert!(total < Duration::from_secs(6), "{total:?}");
}
