//! Incidents' affected lists through the real binary: a booking system's token uploads the
//! people whose appointments an outage reaches (CSV or JSON, read as a stream), each bad row is
//! refused by its line, a malformed upload writes nothing, a repeated upload sends nobody twice;
//! once the communications office approves the public statement, each person hears it (and the
//! resolution) through the best channel their row allows, with their own appointment; nothing of
//! the list reaches the status page, the feeds, the log or the metrics; only the `booking` role
//! and administrators touch lists, and every read is audited. The done-when test: twenty
//! thousand rows, each reached once per statement, with the time to upload and to hand over.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::support::appio::{APPIO_KEY, AppIoDouble, AppIoOptions};
use crate::support::*;

const BOOKING_TOKEN: &str = "booking-token-for-tests-0006";
/// A codice fiscale whose check character is right (the Agenzia delle Entrate's example).
const CF: &str = "RSSMRA85T10A562S";

fn config(double: &SmsDouble, extra: &str) -> String {
    format!(
        r#"
[[auth.tokens]]
name = "cup-prenotazioni"
token = "{BOOKING_TOKEN}"
roles = ["booking"]

[[status.services]]
id = "cup"
name = "Prenotazioni (CUP)"
name_en = "Bookings (CUP)"
matchers = ['service=~"cup.*"']

[channels.sms]
enabled = true
concurrency = 64

[[channels.sms.providers]]
name = "twilio"
kind = "twilio"
base_url = "{}"
username = "{TWILIO_SID}"
password = "{TWILIO_TOKEN}"
sender = "+15005550006"
priority = 0
rate_per_second = 5000

{extra}
"#,
        double.base_url()
    )
}

async fn app_with(smtp: &SmtpServer, double: &SmsDouble, env: &[(&str, &str)]) -> TestApp {
    app_configured(smtp, double, "", env).await
}

/// The app with `extra` configuration and the public audience's one subscriber.
async fn app_configured(
    smtp: &SmtpServer,
    double: &SmsDouble,
    extra: &str,
    env: &[(&str, &str)],
) -> TestApp {
    let mut all = vec![("BANDITORE__CHANNELS__EMAIL__POOL_SIZE", "16")];
    all.extend_from_slice(env);
    let app = TestApp::spawn(smtp, &config(double, extra), &all).await;
    app.subscribe(json!({
        "name": "Lista pubblica", "audience": "public",
        "addresses": {"email": "cittadini@lista.asl.example"},
        "subscriptions": [{"matchers": ["service=~\"cup.*\""]}],
    }))
    .await;
    app
}

/// Opens an incident on the CUP and returns its id.
async fn open_incident(app: &TestApp) -> i64 {
    fire_alert(app, "firing", "cup-backend", "CUP non risponde").await;
    let incidents = eventually(
        || app.get_json("/api/v1/incidents", VIEWER_TOKEN),
        |v| !v["incidents"].as_array().unwrap().is_empty(),
    )
    .await;
    incidents["incidents"][0]["id"].as_i64().unwrap()
}

async fn upload(app: &TestApp, id: i64, token: &str, media: &str, body: String) -> (u16, Value) {
    let resp = app
        .post(
            &format!("/api/v1/incidents/{id}/affected"),
            Some(token),
            media,
            body,
        )
        .await;
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

async fn list(app: &TestApp, id: i64, token: &str) -> Value {
    app.get_json(&format!("/api/v1/incidents/{id}/affected"), token)
        .await
}

/// The app with App IO enabled against the double `io`.
async fn app_with_io(smtp: &SmtpServer, double: &SmsDouble, io: &AppIoDouble) -> TestApp {
    let extra = format!(
        r#"
[channels.appio]
enabled = true
base_url = "{}"
api_key = "{APPIO_KEY}"
rate_per_second = 100
burst = 10
"#,
        io.api()
    );
    app_configured(smtp, double, &extra, &[]).await
}

/// Approves the newest pending draft.
async fn approve_next(app: &TestApp) {
    let draft = app.next_draft().await;
    app.approve_draft(draft["id"].as_i64().unwrap()).await;
}

fn mobile(i: usize) -> String {
    format!("+39347{:07}", i)
}

fn email(i: usize) -> String {
    format!("paziente{i}@example.org")
}

fn detail(i: usize) -> String {
    format!(
        "ore {:02}:{:02}, Foligno, prenotazione {i}",
        8 + i % 10,
        i % 60
    )
}

/// The messages each patient received: SMS by number, email by address.
fn received(smtp: &SmtpServer, double: &SmsDouble) -> BTreeMap<String, Vec<String>> {
    let mut by: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for sms in double.sent() {
        by.entry(sms.to.clone()).or_default().push(sms.text.clone());
    }
    for mail in smtp.mails() {
        for to in &mail.to {
            if to.starts_with("paziente") {
                by.entry(to.clone()).or_default().push(mail.text());
            }
        }
    }
    by
}

fn patients_reached(smtp: &SmtpServer, double: &SmsDouble) -> usize {
    double.sent().len()
        + smtp
            .mails()
            .iter()
            .filter(|m| m.to.iter().any(|t| t.starts_with("paziente")))
            .count()
}

async fn wait_reached(smtp: &SmtpServer, double: &SmsDouble, n: usize, within: Duration) {
    let deadline = Instant::now() + within;
    loop {
        let got = patients_reached(smtp, double);
        if got >= n {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{got} of {n} messages handed over within {within:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn a_20000_row_list_reaches_every_row_once_through_its_channel_with_its_detail_after_approval_and_its_resolution()
 {
    const ROWS: usize = 20_000;
    let smtp = SmtpServer::start();
    let double = SmsDouble::start().await;
    let app = app_with(&smtp, &double, &[]).await;
    let id = open_incident(&app).await;
    // Even rows have a mobile (SMS); odd rows an email, some with a fiscal code too (App IO is
    // not enabled in this test: email).
    let mut csv = String::from("fiscal_code,mobile,email,language,detail\r\n");
    for i in 0..ROWS {
        let (cf, m, e) = match i % 4 {
            0 | 2 => ("", mobile(i), String::new()),
            1 => (CF, String::new(), email(i)),
            _ => ("", String::new(), email(i)),
        };
        let lang = if i % 5 == 0 { "en" } else { "" };
        csv.push_str(&format!("{cf},{m},{e},{lang},\"{}\"\r\n", detail(i)));
    }
    let started = Instant::now();
    let (status, report) = upload(&app, id, BOOKING_TOKEN, "text/csv", csv).await;
    let upload_time = started.elapsed();
    assert_eq!(status, 200, "{report}");
    assert_eq!(report["accepted"], ROWS);
    assert_eq!(report["refused"], 0);
    let counts = list(&app, id, ADMIN_TOKEN).await;
    assert_eq!(counts["rows"], ROWS);
    assert_eq!(counts["channels"]["sms"], ROWS / 2);
    assert_eq!(counts["channels"]["email"], ROWS / 2);
    // Nobody hears anything before the communications office approves.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(patients_reached(&smtp, &double), 0);

    let approved = Instant::now();
    approve_next(&app).await;
    wait_reached(&smtp, &double, ROWS, Duration::from_secs(600)).await;
    let opened_time = approved.elapsed();

    fire_alert(&app, "resolved", "cup-backend", "CUP non risponde").await;
    let resolution = Instant::now();
    approve_next(&app).await;
    wait_reached(&smtp, &double, 2 * ROWS, Duration::from_secs(600)).await;
    let resolved_time = resolution.elapsed();
    // Nothing more comes.
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(patients_reached(&smtp, &double), 2 * ROWS);

    let by = received(&smtp, &double);
    assert_eq!(by.len(), ROWS, "every row reached, each on one address");
    for i in 0..ROWS {
        let to = if i % 4 == 0 || i % 4 == 2 {
            mobile(i)
        } else {
            email(i)
        };
        let texts = &by[&to];
        assert_eq!(texts.len(), 2, "{to}: once opened, once resolved");
        let sentence = if i % 5 == 0 {
            format!("Your appointment: {}.", detail(i))
        } else {
            format!("Il suo appuntamento: {}.", detail(i))
        };
        for text in texts {
            assert!(text.contains(&sentence), "{to}: {text}");
        }
        let resolved = if i % 5 == 0 { "RESOLVED" } else { "RISOLTO" };
        assert!(
            texts.iter().any(|t| t.to_uppercase().contains(resolved)),
            "{to}: {texts:?}"
        );
    }
    eventually(
        || list(&app, id, ADMIN_TOKEN),
        |state| state["deliveries"]["sent"] == 2 * ROWS,
    )
    .await;
    eprintln!(
        "affected list of {ROWS} rows: upload {:.2} s; opening handed over to all {:.2} s after approval; resolution {:.2} s after its approval",
        upload_time.as_secs_f64(),
        opened_time.as_secs_f64(),
        resolved_time.as_secs_f64()
    );
}

#[tokio::test]
async fn bad_rows_are_refused_by_line_and_a_malformed_upload_writes_nothing() {
    let smtp = SmtpServer::start();
    let double = SmsDouble::start().await;
    let app = app_with(&smtp, &double, &[]).await;
    let id = open_incident(&app).await;
    let body = "fiscal_code;mobile;email;detail\n\
                RSSMRA85T10A562T;;paziente1@example.org;ore 9\n\
                ;0742 339011;;ore 10\n\
                ;;not-an-address;ore 11\n\
                ;;;\n\
                RSSMRA85T10A562S;;;ore 12\n\
                ;3471234567;;\"ore 13; Spoleto\"\n\
                ;;paziente2@example.org;\n";
    let (status, report) = upload(&app, id, BOOKING_TOKEN, "text/csv", body.into()).await;
    assert_eq!(status, 200, "{report}");
    assert_eq!(report["accepted"], 2);
    assert_eq!(report["refused"], 5);
    let refusals: Vec<(u64, String)> = report["refusals"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["line"].as_u64().unwrap(),
                r["problem"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    let lines: Vec<u64> = refusals.iter().map(|r| r.0).collect();
    assert_eq!(lines, [2, 3, 4, 5, 6]);
    assert!(refusals[0].1.contains("check character"), "{refusals:?}");
    assert!(refusals[1].1.contains("mobile"), "{refusals:?}");
    assert!(refusals[2].1.contains("email"), "{refusals:?}");
    assert!(refusals[3].1.contains("empty"), "{refusals:?}");
    assert!(
        refusals[4].1.contains("App IO is not enabled"),
        "{refusals:?}"
    );
    let answer = report.to_string();
    for private in ["RSSMRA", "0742", "339011", "not-an-address", "paziente"] {
        assert!(!answer.contains(private), "{answer}");
    }

    // Malformed: refused whole, naming the line; nothing is added.
    for (media, body, line) in [
        (
            "text/csv",
            "email,detail\npaziente3@example.org,ore 9\npaziente4@example.org,ore \"9\"\n",
            3,
        ),
        ("text/csv", "email,telefono\npaziente3@example.org,1\n", 1),
        ("text/csv", "paziente3@example.org\n", 1),
        (
            "text/csv",
            "email,detail\npaziente3@example.org,\"ore 9\n",
            2,
        ),
        (
            "application/json",
            "[{\"email\": \"paziente3@example.org\"},\n{\"telefono\": \"1\"}]",
            2,
        ),
        (
            "application/json",
            "[{\"email\": \"paziente3@example.org\"},\n{\"email\": ",
            2,
        ),
    ] {
        let (status, err) = upload(&app, id, BOOKING_TOKEN, media, body.into()).await;
        assert_eq!(status, 400, "{body:?}: {err}");
        let message = err["error"].as_str().unwrap();
        assert!(
            message.contains(&format!("line {line}:")),
            "{body:?}: {message}"
        );
        assert!(message.contains("nothing was stored"), "{message}");
        assert!(!message.contains("paziente3"), "{message}");
    }
    let (status, _) = upload(&app, id, BOOKING_TOKEN, "text/plain", "x".into()).await;
    assert_eq!(status, 415);
    assert_eq!(list(&app, id, ADMIN_TOKEN).await["rows"], 2);

    // A JSON upload of the same people adds nobody; a resolved incident takes no list.
    let (status, report) = upload(
        &app,
        id,
        BOOKING_TOKEN,
        "application/json",
        json!([{"mobile": "+39 347 123 4567", "detail": "ore 13; Spoleto"}, {}]).to_string(),
    )
    .await;
    assert_eq!(status, 200, "{report}");
    assert_eq!(
        (report["accepted"].as_u64(), report["duplicates"].as_u64()),
        (Some(0), Some(1))
    );
    assert_eq!(report["refusals"][0]["line"], 1);
    let (status, _) = upload(&app, 999, BOOKING_TOKEN, "text/csv", "email\n".into()).await;
    assert_eq!(status, 404);
    fire_alert(&app, "resolved", "cup-backend", "CUP non risponde").await;
    let (status, err) = eventually(
        || {
            upload(
                &app,
                id,
                BOOKING_TOKEN,
                "text/csv",
                "email\npaziente5@example.org\n".into(),
            )
        },
        |(s, _)| *s == 409,
    )
    .await;
    assert!(
        err["error"].as_str().unwrap().contains("resolved"),
        "{err} {status}"
    );
}

#[tokio::test]
async fn a_repeated_upload_sends_nobody_twice_and_later_rows_hear_the_latest_statement() {
    let smtp = SmtpServer::start();
    let double = SmsDouble::start().await;
    let app = app_with(&smtp, &double, &[]).await;
    let id = open_incident(&app).await;
    let rows = "mobile,detail\n3470000001,ore 9\n3470000002,ore 10\n";
    let (_, first) = upload(&app, id, BOOKING_TOKEN, "text/csv", rows.into()).await;
    assert_eq!(first["accepted"], 2);
    approve_next(&app).await;
    double.wait_for(2, Duration::from_secs(20)).await;
    // The same rows again, one with its appointment moved, and one person new.
    let again = "mobile,detail\n3470000001,ore 9\n3470000002,ore 11\n3470000003,ore 12\n";
    let (status, second) = upload(&app, id, BOOKING_TOKEN, "text/csv", again.into()).await;
    assert_eq!(status, 200, "{second}");
    assert_eq!(
        (
            second["accepted"].as_u64(),
            second["updated"].as_u64(),
            second["duplicates"].as_u64()
        ),
        (Some(1), Some(1), Some(1))
    );
    // The new person hears the statement already published at once; nobody hears it twice.
    double.wait_for(3, Duration::from_secs(20)).await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(double.sent().len(), 3);
    assert_eq!(double.sent_to("+393470000003").len(), 1);
    assert!(double.sent_to("+393470000003")[0].text.contains("ore 12"));
    // The resolution carries the moved appointment.
    fire_alert(&app, "resolved", "cup-backend", "CUP non risponde").await;
    approve_next(&app).await;
    double.wait_for(6, Duration::from_secs(20)).await;
    let moved = double.sent_to("+393470000002");
    assert_eq!(moved.len(), 2);
    assert!(
        moved[1].text.contains("Il suo appuntamento: ore 11."),
        "{}",
        moved[1].text
    );
    // Each outcome is recorded just after its send.
    eventually(
        || list(&app, id, ADMIN_TOKEN),
        |state| state["deliveries"]["sent"] == 6,
    )
    .await;
    // A deleted list is gone with its messages.
    let resp = app
        .http
        .delete(app.url(&format!("/api/v1/incidents/{id}/affected")))
        .bearer_auth(BOOKING_TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.json::<Value>().await.unwrap()["deleted"], 3);
    let state = list(&app, id, ADMIN_TOKEN).await;
    assert_eq!(
        (
            state["rows"].as_i64(),
            state["items"].as_array().map(Vec::len)
        ),
        (Some(0), Some(0))
    );
}

/// Nothing waits for the safety-net poll (30 s here): the approval wakes the writer of the
/// list's deliveries, and so does an upload after the statement was published.
#[tokio::test]
async fn an_approval_and_a_later_upload_are_heard_at_once_not_at_the_next_poll() {
    let smtp = SmtpServer::start();
    let double = SmsDouble::start().await;
    let app = app_with(
        &smtp,
        &double,
        &[("BANDITORE__OUTBOX__POLL_INTERVAL", "30s")],
    )
    .await;
    let id = open_incident(&app).await;
    let (_, first) = upload(
        &app,
        id,
        BOOKING_TOKEN,
        "text/csv",
        "mobile,detail\n3470000001,ore 9\n".into(),
    )
    .await;
    assert_eq!(first["accepted"], 1);
    approve_next(&app).await;
    double.wait_for(1, Duration::from_secs(5)).await;
    let (_, later) = upload(
        &app,
        id,
        BOOKING_TOKEN,
        "text/csv",
        "mobile,detail\n3470000002,ore 10\n".into(),
    )
    .await;
    assert_eq!(later["accepted"], 1);
    double.wait_for(2, Duration::from_secs(5)).await;
    assert!(double.sent_to("+393470000002")[0].text.contains("ore 10"));
}

#[tokio::test]
async fn a_person_app_io_refuses_hears_the_statement_by_email_once_with_the_detail() {
    let smtp = SmtpServer::start();
    let double = SmsDouble::start().await;
    let io = AppIoDouble::start(AppIoOptions::default()).await;
    // On IO, with this service turned off: PagoPA's profile check says `sender_allowed: false`.
    io.add_profile(CF, false);
    let app = app_with_io(&smtp, &double, &io).await;
    let id = open_incident(&app).await;
    let rows = format!("fiscal_code,email,detail\n{CF},paziente1@example.org,ore 9 a Foligno\n");
    let (status, report) = upload(&app, id, BOOKING_TOKEN, "text/csv", rows).await;
    assert_eq!(
        (status, report["accepted"].as_u64()),
        (200, Some(1)),
        "{report}"
    );
    let state = list(&app, id, ADMIN_TOKEN).await;
    assert_eq!(state["items"][0]["channel"], "appio", "{state}");
    approve_next(&app).await;
    wait_reached(&smtp, &double, 1, Duration::from_secs(30)).await;
    // The next statements go to the email directly; none reaches App IO.
    fire_alert(&app, "resolved", "cup-backend", "CUP non risponde").await;
    approve_next(&app).await;
    wait_reached(&smtp, &double, 2, Duration::from_secs(30)).await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let got = received(&smtp, &double);
    let mails = &got["paziente1@example.org"];
    assert_eq!(mails.len(), 2, "each statement once: {got:?}");
    assert!(
        mails.iter().all(|m| m.contains("ore 9 a Foligno")),
        "{mails:?}"
    );
    assert!(io.messages().is_empty(), "App IO took nothing");
    let state = list(&app, id, ADMIN_TOKEN).await;
    assert_eq!(state["items"][0]["channel"], "email", "{state}");
    assert_eq!(state["deliveries"]["failed"], 1, "{state}");
    assert_eq!(state["deliveries"]["sent"], 2, "{state}");
}

/// A row with a fiscal code, on IO with the service allowed, hears the statement in App IO with
/// its appointment in the body (never in the subject, which IO shows in notifications), and its
/// resolution too; its email stays unused.
#[tokio::test]
async fn a_person_on_app_io_hears_the_statement_there_with_the_appointment() {
    let smtp = SmtpServer::start();
    let double = SmsDouble::start().await;
    let io = AppIoDouble::start(AppIoOptions::default()).await;
    io.add_profile(CF, true);
    let app = app_with_io(&smtp, &double, &io).await;
    let id = open_incident(&app).await;
    let rows = format!(
        "fiscal_code,email,detail\n{CF},paziente1@example.org,\"ore 11:30, Foligno [sportello 3]\"\n"
    );
    let (status, report) = upload(&app, id, BOOKING_TOKEN, "text/csv", rows).await;
    assert_eq!(
        (status, report["accepted"].as_u64()),
        (200, Some(1)),
        "{report}"
    );
    approve_next(&app).await;
    let opened = eventually(|| async { io.messages() }, |m| m.len() == 1).await;
    assert_eq!(opened[0].fiscal_code, CF);
    assert!(
        opened[0]
            .markdown
            .contains(r"Il suo appuntamento: ore 11:30, Foligno \[sportello 3\]."),
        "the detail, escaped as Markdown words: {}",
        opened[0].markdown
    );
    assert!(
        !opened[0].subject.contains("11:30"),
        "{}",
        opened[0].subject
    );
    fire_alert(&app, "resolved", "cup-backend", "CUP non risponde").await;
    approve_next(&app).await;
    let both = eventually(|| async { io.messages() }, |m| m.len() == 2).await;
    assert!(
        both[1].markdown.contains("Il suo appuntamento"),
        "{}",
        both[1].markdown
    );
    tokio::time::sleep(Duration::from_millis(1000)).await;
    assert_eq!(io.messages().len(), 2, "each statement once");
    assert!(!received(&smtp, &double).contains_key("paziente1@example.org"));
}

/// The office's decision holds for the lists: nothing before the draft is decided, then a
/// channel's part decides for that channel (the status page's part where the draft has none for
/// it), a rejected one keeps its rows from hearing it there, and the words the office approved
/// for the status page are the statement the list hears.
#[tokio::test]
async fn a_list_hears_only_what_the_office_approved_in_the_words_it_approved() {
    let smtp = SmtpServer::start();
    let double = SmsDouble::start().await;
    let app = app_with(&smtp, &double, &[]).await;
    // A public subscriber by SMS too, so that the draft has an SMS part of its own.
    app.subscribe(json!({
        "name": "Cittadino", "audience": "public",
        "addresses": {"sms": "+393330000999"},
        "subscriptions": [{"matchers": ["service=~\"cup.*\""]}],
    }))
    .await;
    let id = open_incident(&app).await;
    let rows = format!(
        "mobile,email,detail\n{},,ore 9\n,{},ore 10\n",
        mobile(1),
        email(2)
    );
    let (status, report) = upload(&app, id, BOOKING_TOKEN, "text/csv", rows).await;
    assert_eq!(
        (status, report["accepted"].as_u64()),
        (200, Some(2)),
        "{report}"
    );
    let draft = app.next_draft().await;
    let draft_id = draft["id"].as_i64().unwrap();
    let words = "Le visite già prenotate sono confermate: presentatevi all'orario previsto.";
    let resp = app
        .put_json(
            &format!("/api/v1/drafts/{draft_id}"),
            COMMUNICATOR_TOKEN,
            &json!({"parts": [{"channel": "status", "language": "it",
                               "subject": "Prenotazioni sospese", "body": words}]}),
        )
        .await;
    assert_eq!(
        resp.status(),
        200,
        "{}",
        resp.text().await.unwrap_or_default()
    );
    // The status page's and the email's parts approved: while the SMS part waits, the draft
    // is not published and the list hears nothing.
    let resp = app
        .post_json(
            &format!("/api/v1/drafts/{draft_id}/approve"),
            Some(COMMUNICATOR_TOKEN),
            &json!({"channels": ["status", "email"]}),
        )
        .await;
    assert_eq!(
        resp.status(),
        200,
        "{}",
        resp.text().await.unwrap_or_default()
    );
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(
        patients_reached(&smtp, &double),
        0,
        "nothing before the draft is decided"
    );
    // The SMS part rejected: the email row hears the approved words, the SMS row nothing.
    let resp = app
        .post_json(
            &format!("/api/v1/drafts/{draft_id}/reject"),
            Some(COMMUNICATOR_TOKEN),
            &json!({"reason": "troppo lungo per un SMS"}),
        )
        .await;
    assert_eq!(
        resp.status(),
        200,
        "{}",
        resp.text().await.unwrap_or_default()
    );
    let mail = eventually(
        || async { received(&smtp, &double) },
        |got: &BTreeMap<String, Vec<String>>| got.contains_key(&email(2)),
    )
    .await;
    let text = &mail[&email(2)][0];
    assert!(text.contains(words), "the approved words: {text}");
    assert!(text.contains("Il suo appuntamento: ore 10."), "{text}");
    assert!(
        !text.contains("CUP non risponde"),
        "no monitor's words: {text}"
    );
    tokio::time::sleep(Duration::from_millis(2000)).await;
    assert!(double.sent_to(&mobile(1)).is_empty(), "rejected for SMS");
    // The row on SMS is done with it: its delivery is written cancelled, so that it takes no
    // room from the statements behind it.
    eventually(
        || list(&app, id, ADMIN_TOKEN),
        |state| state["deliveries"]["cancelled"] == 1,
    )
    .await;
    assert_eq!(
        received(&smtp, &double)[&email(2)].len(),
        1,
        "the email once"
    );
}

#[tokio::test]
async fn only_booking_and_administrators_touch_lists_and_every_read_is_audited() {
    let smtp = SmtpServer::start();
    let double = SmsDouble::start().await;
    let app = app_with(&smtp, &double, &[]).await;
    let id = open_incident(&app).await;
    let path = format!("/api/v1/incidents/{id}/affected");
    let body = format!("fiscal_code,email,detail\n{CF},paziente1@example.org,ore 9\n");
    for token in [
        VIEWER_TOKEN,
        OPERATOR_TOKEN,
        COMMUNICATOR_TOKEN,
        INGEST_TOKEN,
    ] {
        let (status, _) = upload(&app, id, token, "text/csv", body.clone()).await;
        assert_eq!(status, 403, "{token}");
        assert_eq!(app.get(&path, Some(token)).await.status(), 403, "{token}");
        let resp = app
            .http
            .delete(app.url(&path))
            .bearer_auth(token)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 403, "{token}");
    }
    assert_eq!(app.get(&path, None).await.status(), 401);
    let (status, _) = upload(&app, id, BOOKING_TOKEN, "text/csv", body).await;
    assert_eq!(status, 200);
    // The booking system reads contacts masked, an administrator whole.
    let masked = list(&app, id, BOOKING_TOKEN).await;
    let item = &masked["items"][0];
    assert_eq!(masked["whole_contacts"], false);
    assert_eq!(item["fiscal_code"], "RSS***********2S");
    assert!(
        !item["email"].as_str().unwrap().contains("paziente1"),
        "{item}"
    );
    assert_eq!(item["channel"], "email");
    assert_eq!(item["detail"], "ore 9");
    let whole = list(&app, id, ADMIN_TOKEN).await;
    assert_eq!(whole["items"][0]["fiscal_code"], CF);
    assert_eq!(whole["items"][0]["recipient"], "paziente1@example.org");
    // Booking reads nothing else.
    assert_eq!(
        app.get("/api/v1/incidents", Some(BOOKING_TOKEN))
            .await
            .status(),
        403
    );
    let log = app.get_json("/api/v1/audit", ADMIN_TOKEN).await;
    let reads: Vec<&Value> = log["entries"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["action"] == "affected.read")
        .collect();
    assert_eq!(reads.len(), 2, "{log}");
    let actors: Vec<&str> = reads.iter().map(|e| e["actor"].as_str().unwrap()).collect();
    assert!(
        actors.contains(&"cup-prenotazioni") && actors.contains(&"admin"),
        "{actors:?}"
    );
    assert!(log.to_string().contains("affected.upload"));
    assert!(
        !log.to_string().contains("paziente1"),
        "the audit log holds no contact"
    );
}

#[tokio::test]
async fn nothing_of_a_list_reaches_the_status_page_the_feeds_the_log_or_the_metrics() {
    let smtp = SmtpServer::start();
    let double = SmsDouble::start().await;
    let app = app_with(&smtp, &double, &[("RUST_LOG", "trace")]).await;
    let id = open_incident(&app).await;
    let body = format!(
        "fiscal_code,mobile,email,detail\n\
         {CF},,segreto.paziente@example.org,Dettaglio-Riservato-1 <b>&\n\
         ,3479876543,,Dettaglio-Riservato-2\n\
         ,,,\n"
    );
    let (status, _) = upload(&app, id, BOOKING_TOKEN, "text/csv", body).await;
    assert_eq!(status, 200);
    approve_next(&app).await;
    double.wait_for(1, Duration::from_secs(20)).await;
    let mail = smtp.wait_for("segreto.paziente@example.org", 1, Duration::from_secs(20));
    // The detail is escaped for each part's markup.
    assert!(
        mail[0]
            .text()
            .contains("Il suo appuntamento: Dettaglio-Riservato-1 <b>&.")
    );
    assert!(
        mail[0]
            .html()
            .contains("Il suo appuntamento: Dettaglio-Riservato-1 &lt;b&gt;&amp;."),
        "{}",
        mail[0].html()
    );
    assert!(!mail[0].text().contains("@@BANDITORE"));
    let mut public = String::new();
    for path in [
        "/status",
        "/status?lang=en",
        "/status/feed.atom",
        "/status/cap.atom",
        "/status/services/cup/feed.atom",
        "/api/v1/status",
        "/metrics",
    ] {
        public.push_str(&app.get(path, None).await.text().await.unwrap());
    }
    public.push_str(
        &app.get(
            &format!("/api/v1/incidents/{id}/deliveries"),
            Some(ADMIN_TOKEN),
        )
        .await
        .text()
        .await
        .unwrap(),
    );
    public.push_str(
        &app.get(&format!("/api/v1/incidents/{id}/ledger"), Some(ADMIN_TOKEN))
            .await
            .text()
            .await
            .unwrap(),
    );
    let logs = app.logs();
    assert!(
        logs.contains("TRACE") || logs.contains("\"trace\""),
        "the log is at trace"
    );
    for secret in [
        "Dettaglio-Riservato",
        "segreto.paziente",
        "3479876543",
        "RSSMRA",
        "cf1.",
    ] {
        assert!(
            !public.contains(secret),
            "{secret} on a public page, a feed, the metrics or the deliveries"
        );
        assert!(!logs.contains(secret), "{secret} in the log");
    }
}

/// Hostile text in every field of JSON rows, posted to the real binary: each row taken or
/// refused by its line, never a 5xx, and the answer never repeats it.
#[tokio::test]
async fn hostile_text_in_any_field_is_taken_or_refused_by_line_never_a_server_error() {
    use proptest::strategy::{Strategy, ValueTree};
    let smtp = SmtpServer::start();
    let double = SmsDouble::start().await;
    let app = app_with(&smtp, &double, &[]).await;
    let id = open_incident(&app).await;
    let mut runner = proptest::test_runner::TestRunner::deterministic();
    let texts = crate::dropin::hostile::text();
    let mut next = || texts.new_tree(&mut runner).unwrap().current();
    for case in 0..24 {
        let rows: Vec<Value> = (0..8)
            .map(|r| {
                let mut row = serde_json::Map::new();
                for (i, field) in ["fiscal_code", "mobile", "email", "language", "detail"]
                    .iter()
                    .enumerate()
                {
                    if (case + r + i) % 3 != 0 {
                        row.insert((*field).into(), Value::String(next()));
                    }
                }
                if r % 2 == 0 {
                    row.insert("email".into(), json!(format!("p{case}x{r}@example.org")));
                }
                Value::Object(row)
            })
            .collect();
        let body = Value::Array(rows.clone()).to_string();
        let (status, report) = upload(&app, id, BOOKING_TOKEN, "application/json", body).await;
        assert!(
            status == 200 || status == 400 || status == 413,
            "{status}: {report}"
        );
        if status == 200 {
            let accounted = report["accepted"].as_u64().unwrap()
                + report["updated"].as_u64().unwrap()
                + report["duplicates"].as_u64().unwrap()
                + report["refused"].as_u64().unwrap();
            assert_eq!(accounted, 8, "{report}");
            for refusal in report["refusals"].as_array().unwrap() {
                let line = refusal["line"].as_u64().unwrap();
                assert_eq!(line, 1, "one line of JSON");
                let problem = refusal["problem"].as_str().unwrap();
                for row in &rows {
                    for value in row.as_object().unwrap().values() {
                        let v = value.as_str().unwrap();
                        if v.chars().count() > 6 && !v.contains("@example.org") {
                            assert!(!problem.contains(v), "{problem} repeats a value");
                        }
                    }
                }
            }
        }
    }
    assert!(
        app.get(
            &format!("/api/v1/incidents/{id}/affected"),
            Some(ADMIN_TOKEN)
        )
        .await
        .status()
        .is_success()
    );
}
