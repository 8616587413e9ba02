//! Citizens subscribing from the status page: email double opt-in through the real SMTP
//! server, the SMS code through the gateway double, the Telegram deep link through the bot
//! double; the limits, the answers that tell nobody who is subscribed, the preferences page,
//! and erasure.

use std::time::Duration;

use serde_json::{Value, json};

use crate::support::*;

const PUBLIC: &str = "https://banditore.asl.example";

fn config(channels: &str, limits: &str) -> String {
    format!(
        r#"
[[status.services]]
id = "cup"
name = "Prenotazioni (CUP)"
name_en = "Bookings (CUP)"
matchers = ['service=~"cup.*"']

[[status.services]]
id = "referti"
name = "Referti online"
name_en = "Medical reports"
matchers = ['service="referti"']

[status.subscribe]
channels = [{channels}]
{limits}
"#
    )
}

/// A form's fields, in order.
type Form<'a> = &'a [(&'a str, &'a str)];

/// Posts the sign-up form as a browser would.
async fn sign_up(app: &TestApp, fields: &[(&str, &str)]) -> (u16, String) {
    let body = url::form_urlencoded::Serializer::new(String::new())
        .extend_pairs(fields)
        .finish();
    let resp = app
        .post(
            "/status/subscribe",
            None,
            "application/x-www-form-urlencoded",
            body,
        )
        .await;
    (resp.status().as_u16(), resp.text().await.unwrap())
}

async fn post_form(app: &TestApp, path: &str, fields: &[(&str, &str)]) -> (u16, String) {
    let body = url::form_urlencoded::Serializer::new(String::new())
        .extend_pairs(fields)
        .finish();
    let resp = app
        .post(path, None, "application/x-www-form-urlencoded", body)
        .await;
    (resp.status().as_u16(), resp.text().await.unwrap())
}

/// `html` with the entities that links in it may hold decoded.
fn unescape(html: &str) -> String {
    html.replace("&#x2f;", "/").replace("&amp;", "&")
}

/// The first link in `text` under `prefix` (a path of the public URL), as a path.
fn link(text: &str, prefix: &str) -> String {
    let text = &unescape(text);
    let start = text
        .find(&format!("{PUBLIC}{prefix}"))
        .unwrap_or_else(|| panic!("no {prefix} link in {text}"));
    let rest = &text[start + PUBLIC.len()..];
    let end = rest
        .find(|c: char| c.is_whitespace() || c == '"' || c == '<')
        .unwrap_or(rest.len());
    rest[..end].to_owned()
}

/// Signs `who` up by email for `services`, follows the link from the mailbox, and returns the
/// path of their preferences page.
async fn subscribed_by_email(
    app: &TestApp,
    smtp: &SmtpServer,
    who: &str,
    services: &[&str],
) -> String {
    let mut form = vec![("channel", "email"), ("email", who)];
    form.extend(services.iter().map(|s| ("services", *s)));
    let (status, page) = sign_up(app, &form).await;
    assert_eq!(status, 202, "{page}");
    // The link is at the mail server when the page answers: the last mail is it.
    let mail = smtp.wait_for(who, 1, Duration::from_secs(10));
    let confirm = link(&mail[mail.len() - 1].text(), "/status/subscribe/confirm/");
    let (status, done) = post_form(app, confirm.split('?').next().unwrap(), &[]).await;
    assert_eq!(status, 200, "{done}");
    link(&done.replace("href=\"", " "), "/manage/")
}

/// The path the code form posts to, from the page that asks for the code.
fn code_action(page: &str) -> String {
    let at = page
        .find("/status/subscribe/code/")
        .unwrap_or_else(|| panic!("no code form in {page}"));
    page[at..at + page[at..].find('"').unwrap()].to_owned()
}

async fn citizens(app: &TestApp) -> Vec<Value> {
    let all = app.get_json("/api/v1/subscribers", ADMIN_TOKEN).await;
    all["subscribers"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| s["origin"] == "citizen")
        .cloned()
        .collect()
}

/// Fires an alert on `service`, approves the public draft it makes, and returns the draft.
async fn approved_statement(app: &TestApp, service: &str, summary: &str) -> Value {
    let before: Vec<i64> = app
        .pending_drafts()
        .await
        .iter()
        .filter_map(|d| d["id"].as_i64())
        .collect();
    fire_alert(app, "firing", service, summary).await;
    let drafts = eventually(
        || app.pending_drafts(),
        |d| {
            d.iter()
                .any(|d| !before.contains(&d["id"].as_i64().unwrap()))
        },
    )
    .await;
    let draft = drafts
        .into_iter()
        .find(|d| !before.contains(&d["id"].as_i64().unwrap()))
        .unwrap();
    app.approve_draft(draft["id"].as_i64().unwrap()).await;
    draft
}

#[tokio::test]
async fn a_citizen_confirms_by_email_and_hears_the_next_approved_statement() {
    let smtp = SmtpServer::start();
    let app = TestApp::spawn(&smtp, &config(r#""email""#, ""), &[]).await;
    let page = app.get("/status", None).await.text().await.unwrap();
    assert!(
        page.contains("href=\"/status/subscribe?lang=it\""),
        "{page}"
    );
    let form = app.get("/status/subscribe", None).await;
    assert_eq!(form.status(), 200);
    let form = form.text().await.unwrap();
    assert!(form.contains("value=\"cup\"") && form.contains("Referti online"));

    let (status, answer) = sign_up(
        &app,
        &[
            ("channel", "email"),
            ("address", "mario.rossi@example.org"),
            ("services", "cup"),
            ("lang", "it"),
        ],
    )
    .await;
    assert_eq!(status, 202, "{answer}");
    assert!(answer.contains("Controlla la tua email"), "{answer}");
    let mail = smtp.wait_for("mario.rossi@example.org", 1, Duration::from_secs(10));
    assert_eq!(
        mail[0].subject(),
        "Conferma l'iscrizione agli avvisi sui servizi"
    );
    let text = mail[0].text();
    assert!(
        text.contains("Prenotazioni (CUP)") && text.contains("24 ore"),
        "{text}"
    );
    assert!(
        mail[0].header("In-Reply-To").is_none(),
        "not part of a thread"
    );
    let confirm = link(&text, "/status/subscribe/confirm/");
    // Nobody is subscribed before the link is used, and opening it (as a mail scanner does)
    // confirms nothing.
    assert!(citizens(&app).await.is_empty());
    let opened = app.get(&confirm, None).await;
    assert_eq!(opened.status(), 200);
    let opened = opened.text().await.unwrap();
    assert!(opened.contains("Prenotazioni (CUP)") && opened.contains("<form method=\"post\""));
    assert!(citizens(&app).await.is_empty());
    let path = confirm.split('?').next().unwrap();
    let (status, done) = post_form(&app, path, &[("lang", "it")]).await;
    assert_eq!(status, 200, "{done}");
    assert!(done.contains("Iscrizione confermata"), "{done}");
    let manage = link(&done.replace("href=\"", " "), "/manage/");
    let list = citizens(&app).await;
    assert_eq!(list.len(), 1, "{list:?}");
    assert_eq!(list[0]["audience"], "public");
    assert_eq!(list[0]["services"], json!(["cup"]));
    assert_eq!(
        list[0]["addresses"][0]["address"],
        "mario.rossi@example.org"
    );
    assert_eq!(
        list[0]["subscriptions"][0]["matchers"],
        json!(["service=~\"cup.*\""])
    );
    // An operator reads the citizen's contact masked, in the list and alone; the admin's read
    // above is in the audit log.
    let id = list[0]["id"].as_i64().unwrap();
    let seen = app.get_json("/api/v1/subscribers", OPERATOR_TOKEN).await;
    let one = app
        .get_json(&format!("/api/v1/subscribers/{id}"), OPERATOR_TOKEN)
        .await;
    for subscriber in [
        seen["subscribers"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["id"] == id)
            .unwrap(),
        &one,
    ] {
        let shown = subscriber["addresses"][0]["address"].as_str().unwrap();
        assert_eq!(shown, "ma••••••••@example.org", "{subscriber}");
    }
    // Nor can an operator find out whether an address is subscribed by searching for it.
    let search = "/api/v1/subscribers?q=mario.rossi";
    let found = app.get_json(search, OPERATOR_TOKEN).await;
    assert_eq!(found["subscribers"], json!([]), "{found}");
    let found = app.get_json(search, ADMIN_TOKEN).await;
    let citizen = citizens(&app).await[0]["id"].clone();
    assert_eq!(found["subscribers"][0]["id"], citizen, "{found}");
    let audit = app.get_json("/api/v1/audit", ADMIN_TOKEN).await;
    assert!(audit.to_string().contains("personal_data.read"), "{audit}");
    // The link is single-use.
    let (status, _) = post_form(&app, path, &[]).await;
    assert_eq!(status, 410);

    // The next approved statement about CUP reaches the citizen, with a link to manage.
    approved_statement(&app, "cup-backend", "CUP backend: pool esaurito").await;
    let mails = smtp.wait_for("mario.rossi@example.org", 2, Duration::from_secs(15));
    let alert = &mails[1];
    let body = alert.text();
    assert!(
        !body.contains("Segnalazioni"),
        "a public statement lists no monitors' signals: {body}"
    );
    assert!(body.contains("per non ricevere più avvisi"), "{body}");
    assert_eq!(link(&body, "/manage/"), manage);
    assert!(
        alert
            .header("List-Unsubscribe")
            .is_some_and(|h| h.contains("/unsubscribe/")),
        "one-click unsubscribe stays"
    );
    let html = unescape(&alert.html());
    assert!(html.contains(&format!("{PUBLIC}{manage}")), "{html}");

    // The delivery history shows a citizen's address whole only to administrators, and their
    // reading it is audited; anyone else sees it masked.
    let incidents = app.get_json("/api/v1/incidents", VIEWER_TOKEN).await;
    let id = incidents["incidents"][0]["id"].as_i64().unwrap();
    let path = format!("/api/v1/incidents/{id}/deliveries");
    let seen = app.get_json(&path, VIEWER_TOKEN).await;
    assert!(!seen.to_string().contains("mario.rossi"), "{seen}");
    assert!(
        seen["deliveries"]
            .as_array()
            .unwrap()
            .iter()
            .any(|d| d["citizen"] == true && d["recipient"] == "ma••••••••@example.org"),
        "{seen}"
    );
    let whole = app.get_json(&path, ADMIN_TOKEN).await;
    assert!(
        whole.to_string().contains("mario.rossi@example.org"),
        "{whole}"
    );
    // Nor can an operator find out whether an address is subscribed by searching for it.
    let search = "/api/v1/subscribers?q=mario.rossi";
    let found = app.get_json(search, OPERATOR_TOKEN).await;
    assert_eq!(found["subscribers"], json!([]), "{found}");
    let found = app.get_json(search, ADMIN_TOKEN).await;
    let citizen = citizens(&app).await[0]["id"].clone();
    assert_eq!(found["subscribers"][0]["id"], citizen, "{found}");
    let audit = app.get_json("/api/v1/audit", ADMIN_TOKEN).await;
    assert!(audit.to_string().contains("personal_data.read"), "{audit}");

    // Signing up again reads exactly as a first sign-up does: the form tells nobody who is
    // subscribed.
    let ask = |address: &'static str| {
        let app = &app;
        async move {
            sign_up(
                app,
                &[
                    ("channel", "email"),
                    ("address", address),
                    ("services", "cup"),
                    ("lang", "it"),
                ],
            )
            .await
        }
    };
    assert_eq!(
        ask("mario.rossi@example.org").await,
        ask("nuovo.utente@example.org").await
    );
    // Confirming again updates the one subscription rather than making a second.
    let again = smtp.wait_for("mario.rossi@example.org", 3, Duration::from_secs(10));
    let path = link(&again[2].text(), "/status/subscribe/confirm/");
    let (status, _) = post_form(&app, path.split('?').next().unwrap(), &[]).await;
    assert_eq!(status, 200);
    assert_eq!(
        citizens(&app)
            .await
            .iter()
            .filter(|c| c["addresses"][0]["address"] == "mario.rossi@example.org")
            .count(),
        1
    );
}

#[tokio::test]
async fn the_console_counts_citizens_without_listing_their_contacts() {
    let smtp = SmtpServer::start();
    // An incident page overridden to list every delivery's recipient: even then, and even for
    // an administrator, the console shows citizens' contacts masked (the API is where an
    // administrator reads them whole, audited).
    let templates = tempfile::tempdir().unwrap();
    let page_dir = templates.path().join("web/console");
    std::fs::create_dir_all(&page_dir).unwrap();
    std::fs::write(
        page_dir.join("incident.html.j2"),
        "{% for d in page.deliveries %}[{{ d.recipient }}]{% endfor %}",
    )
    .unwrap();
    let cfg = format!(
        "{}\n[templates]\ndir = \"{}\"\n",
        config(r#""email""#, ""),
        templates.path().display()
    );
    let mut app = TestApp::spawn(&smtp, &cfg, &[]).await;
    app.add_user("l.bianchi", "una password lunga abbastanza", "operator")
        .await;
    app.add_user("a.verdi", "un'altra password lunga abbastanza", "admin")
        .await;
    subscribed_by_email(&app, &smtp, "mario.rossi@example.org", &["cup"]).await;
    let b = console_browser();
    console_login(&app, &b, "l.bianchi", "una password lunga abbastanza").await;
    let page = b
        .get(app.url("/console/subscribers"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        page.contains("Cittadini iscritti dalla pagina di stato: 1."),
        "{page}"
    );
    assert!(!page.contains("mario.rossi@example.org"), "{page}");

    approved_statement(&app, "cup-backend", "CUP backend: pool esaurito").await;
    smtp.wait_for("mario.rossi@example.org", 2, Duration::from_secs(15));
    let incidents = app.get_json("/api/v1/incidents", VIEWER_TOKEN).await;
    let id = incidents["incidents"][0]["id"].as_i64().unwrap();
    let admin = console_browser();
    console_login(
        &app,
        &admin,
        "a.verdi",
        "un'altra password lunga abbastanza",
    )
    .await;
    let page = admin
        .get(app.url(&format!("/console/incidents/{id}")))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(page.contains("[ma••••••••@example.org]"), "{page}");
    assert!(!page.contains("mario.rossi"), "{page}");
}

#[tokio::test]
async fn bad_sign_ups_are_named_and_limited_per_client_and_per_address() {
    let mut smtp = SmtpServer::start();
    let app = TestApp::spawn(
        &smtp,
        &config(r#""email""#, "per_ip = 5\nper_address = 2"),
        &[],
    )
    .await;
    let email = ("channel", "email");
    let refused: [(Form, &[&str]); 5] = [
        (
            &[
                email,
                ("address", "non è un indirizzo"),
                ("services", "cup"),
            ],
            &[
                "is not a valid email address",
                "non è valido",
                "aria-invalid=\"true\"",
            ],
        ),
        (
            &[
                email,
                ("address", "a@example.org"),
                ("services", "anagrafe"),
            ],
            &["scegli almeno uno dei servizi elencati"],
        ),
        (
            &[
                ("channel", "sms"),
                ("address", "+393331234567"),
                ("services", "cup"),
            ],
            &["scegli uno dei canali elencati"],
        ),
        (
            &[email, ("address", "a@example.org")],
            &["scegli almeno uno dei servizi elencati"],
        ),
        (
            &[
                email,
                ("address", "a@example.org"),
                ("services", "cup"),
                ("replaces", "1.AAAAAAAAAAAAAAAAAAAAAA"),
            ],
            &["da cambiare non è valido"],
        ),
    ];
    for (form, says) in refused {
        let (status, page) = sign_up(&app, form).await;
        assert_eq!(status, 400, "{form:?}");
        for said in says {
            assert!(page.contains(said), "{said} for {form:?}: {page}");
        }
    }
    assert!(smtp.mails().is_empty(), "nothing sent for a refused form");

    // The mail server down: the citizen is told at once, in their language, to try again.
    smtp.stop();
    let (status, page) = sign_up(
        &app,
        &[email, ("address", "d@example.org"), ("services", "cup")],
    )
    .await;
    assert_eq!(status, 503);
    assert!(page.contains("non è stato possibile inviare"), "{page}");
    smtp.restart();

    // Per address: the third link in an hour is not sent, and the page does not say so. An
    // address counts as its mailbox: `+tags` do not get round the limit.
    for address in [
        "anna@example.org",
        "anna+1@example.org",
        "Anna+due@example.org",
    ] {
        let form = [
            ("channel", "email"),
            ("address", address),
            ("services", "cup"),
        ];
        let (status, page) = sign_up(&app, &form).await;
        assert_eq!(status, 202, "{page}");
    }
    let to_anna = || {
        smtp.mails()
            .iter()
            .filter(|m| m.to.iter().any(|t| t.starts_with("anna")))
            .count()
    };
    eventually(|| async { to_anna() }, |n| *n >= 2).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(to_anna(), 2, "one mailbox, two links");
    // Per client (`per_ip = 5`: the form the mail server could not take, three for anna and
    // this one), the next form is refused, with a Retry-After.
    let (status, _) = sign_up(
        &app,
        &[
            ("channel", "email"),
            ("address", "b@example.org"),
            ("services", "cup"),
        ],
    )
    .await;
    assert_eq!(status, 202);
    let body = url::form_urlencoded::Serializer::new(String::new())
        .extend_pairs([
            ("channel", "email"),
            ("address", "c@example.org"),
            ("services", "cup"),
        ])
        .finish();
    let resp = app
        .post(
            "/status/subscribe",
            None,
            "application/x-www-form-urlencoded",
            body,
        )
        .await;
    assert_eq!(resp.status(), 429);
    let retry: u64 = resp.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=3600).contains(&retry), "{retry}");
    assert!(smtp.mails_to("c@example.org").is_empty());

    // Made-up and garbled links are refused alike.
    for (path, status) in [
        (
            "/status/subscribe/confirm/AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
            404,
        ),
        ("/status/subscribe/confirm/%ff", 400),
        ("/manage/1.AAAAAAAAAAAAAAAAAAAAAA", 404),
        ("/manage/x", 404),
    ] {
        assert_eq!(app.get(path, None).await.status(), status, "{path}");
    }
}

#[tokio::test]
async fn a_citizen_confirms_by_sms_code_and_the_code_has_few_tries() {
    let double = SmsDouble::start().await;
    let smtp = SmtpServer::start();
    let extra = format!(
        "{}\n{}",
        config(r#""sms""#, "code_attempts = 3"),
        crate::sms::providers(&double, &[SmsProvider::Twilio])
    );
    let app = TestApp::spawn(
        &smtp,
        &extra,
        &[("BANDITORE__CHANNELS__SMS__ENABLED", "true")],
    )
    .await;
    let (status, page) = sign_up(
        &app,
        &[
            ("channel", "sms"),
            ("phone", "333 123 4567"),
            ("services", "referti"),
            ("lang", "en"),
        ],
    )
    .await;
    assert_eq!(status, 202, "{page}");
    assert!(page.contains("Enter the code"), "{page}");
    let sent = double.wait_for(1, Duration::from_secs(10)).await;
    assert_eq!(sent[0].to, "+393331234567");
    let code: String = sent[0].text.chars().take(6).collect();
    assert!(code.chars().all(|c| c.is_ascii_digit()), "{}", sent[0].text);
    let action = code_action(&page);
    let wrong = if code == "000000" { "111111" } else { "000000" };
    // The code form comes back after switching the page's language.
    let again = app.get(&format!("{action}?lang=it"), None).await;
    assert_eq!(again.status(), 200);
    assert!(again.text().await.unwrap().contains("Inserisci il codice"));
    let (status, page) = post_form(&app, &action, &[("code", wrong), ("lang", "en")]).await;
    assert_eq!(status, 400);
    assert!(page.contains("Wrong code. Tries left: 2"), "{page}");
    let (status, page) = post_form(&app, &action, &[("code", &code), ("lang", "en")]).await;
    assert_eq!(status, 200, "{page}");
    assert!(page.contains("Subscription confirmed"));
    let list = citizens(&app).await;
    assert_eq!(list[0]["addresses"][0]["address"], "+393331234567");
    assert_eq!(list[0]["language"], "en");
    let (status, _) = post_form(&app, &action, &[("code", &code)]).await;
    assert_eq!(status, 410, "the code is single-use");

    // Texts go only to the countries the deployment pays for.
    let (status, page) = sign_up(
        &app,
        &[
            ("channel", "sms"),
            ("phone", "+44 7911 123456"),
            ("services", "cup"),
        ],
    )
    .await;
    assert_eq!(status, 400);
    assert!(page.contains("country code +39"), "{page}");
    assert_eq!(double.sent().len(), 1);
    // And only to mobiles: a code sent to a landline is money spent on nobody.
    for landline in ["+39 06 1234567", "06 1234567", "0039 02 12345678"] {
        let (status, page) = sign_up(
            &app,
            &[("channel", "sms"), ("phone", landline), ("services", "cup")],
        )
        .await;
        assert_eq!(status, 400, "{landline}: {page}");
    }
    assert_eq!(double.sent().len(), 1);

    // A second sign-up guessed at three times is void, even for the right code.
    let (_, page) = sign_up(
        &app,
        &[
            ("channel", "sms"),
            ("address", "+393471112233"),
            ("services", "cup"),
        ],
    )
    .await;
    let sent = double.wait_for(2, Duration::from_secs(10)).await;
    let code: String = sent[1].text.chars().take(6).collect();
    let action = code_action(&page);
    for _ in 0..3 {
        post_form(&app, &action, &[("code", "999999x")]).await;
    }
    let (status, _) = post_form(&app, &action, &[("code", &code)]).await;
    assert_eq!(status, 404);
    assert_eq!(citizens(&app).await.len(), 1);

    // The approved statement reaches the phone, in English, with its preferences link whole.
    approved_statement(&app, "referti", "referti: disco pieno").await;
    let sent = double.wait_for(3, Duration::from_secs(15)).await;
    let sms = &sent[2];
    assert_eq!(sms.to, "+393331234567");
    assert!(
        !sms.text.lines().any(|l| l.starts_with("- ")),
        "a public statement lists no monitors' signals: {}",
        sms.text
    );
    let manage = sms.text.lines().last().unwrap();
    assert!(
        manage.starts_with(&format!("Manage: {PUBLIC}/manage/")),
        "{}",
        sms.text
    );
    let page = app
        .get(
            manage
                .trim_start_matches("Manage: ")
                .trim_start_matches(PUBLIC),
            None,
        )
        .await;
    assert_eq!(page.status(), 200);
    assert!(page.text().await.unwrap().contains("••••••••••567"));
}

#[tokio::test]
async fn a_citizen_follows_the_telegram_link_to_the_bot() {
    let double = TelegramDouble::start().await;
    let smtp = SmtpServer::start();
    let api = double.api_url();
    let app = TestApp::spawn(
        &smtp,
        &config(r#""telegram", "email""#, ""),
        &[
            ("BANDITORE__CHANNELS__TELEGRAM__ENABLED", "true"),
            ("BANDITORE__CHANNELS__TELEGRAM__TOKEN", TELEGRAM_TOKEN),
            ("BANDITORE__CHANNELS__TELEGRAM__API_URL", &api),
        ],
    )
    .await;
    // Giulia follows CUP by email, then moves to Telegram from her preferences page.
    let manage = subscribed_by_email(&app, &smtp, "giulia@example.org", &["cup"]).await;
    let replaces = manage.trim_start_matches("/manage/").to_owned();
    let (status, page) = sign_up(
        &app,
        &[
            ("channel", "telegram"),
            ("services", "cup"),
            ("lang", "it"),
            ("replaces", &replaces),
        ],
    )
    .await;
    assert_eq!(status, 202, "{page}");
    assert_eq!(
        citizens(&app).await.len(),
        2,
        "the email stays until the chat binds"
    );
    let page = unescape(&page);
    let prefix = format!("https://t.me/{BOT_USERNAME}?start=");
    let at = page.find(&prefix).unwrap_or_else(|| panic!("{page}"));
    let token: String = page[at + prefix.len()..]
        .chars()
        .take_while(|c| c.is_ascii_alphanumeric() || *c == '_' || *c == '-')
        .collect();
    double.add_private_chat(5005, "Giulia", Some("it"));
    double
        .user_says(5005, 5005, &format!("/start {token}"))
        .await;
    let list = eventually(
        || citizens(&app),
        |l| l.len() == 1 && l[0]["addresses"][0]["address"] == "5005",
    )
    .await;
    assert_eq!(
        app.get(&manage, None).await.status(),
        404,
        "the email is erased"
    );
    assert_eq!(list[0]["services"], json!(["cup"]));
    approved_statement(&app, "cup-frontend", "CUP frontend giù").await;
    let sent = eventually(
        || async { double.sent_to("5005") },
        |m| m.iter().any(|m| m.text.contains("/manage/")),
    )
    .await;
    let alert = sent.iter().find(|m| m.text.contains("/manage/")).unwrap();
    assert!(!alert.text.contains("Segnalazioni"), "{}", alert.text);
    assert!(
        alert.text.contains(&format!("href=\"{PUBLIC}/manage/")),
        "{}",
        alert.text
    );
    // The bot greeted the chat in the citizen's language.
    assert!(
        sent[0].visible.contains("Iscrizione alla pagina di stato"),
        "{}",
        sent[0].visible
    );
}

#[tokio::test]
async fn preferences_change_services_language_channel_and_stop_then_erase() {
    let double = SmsDouble::start().await;
    let smtp = SmtpServer::start();
    let extra = format!(
        "{}\n{}",
        config(r#""email", "sms""#, ""),
        crate::sms::providers(&double, &[SmsProvider::Twilio])
    );
    let app = TestApp::spawn(
        &smtp,
        &extra,
        &[("BANDITORE__CHANNELS__SMS__ENABLED", "true")],
    )
    .await;
    let manage = subscribed_by_email(&app, &smtp, "lucia@example.org", &["cup"]).await;
    let page = app.get(&manage, None).await.text().await.unwrap();
    assert!(page.contains("lu•••@example.org"), "{page}");
    assert!(page.contains("value=\"cup\" checked"), "{page}");

    // Services and language.
    let (status, page) = post_form(
        &app,
        &manage,
        &[
            ("action", "save"),
            ("services", "referti"),
            ("services", "cup"),
            ("language", "en"),
            ("lang", "en"),
        ],
    )
    .await;
    assert_eq!(status, 200, "{page}");
    assert!(page.contains("Preferences saved."), "{page}");
    let me = &citizens(&app).await[0];
    assert_eq!(me["services"], json!(["cup", "referti"]));
    assert_eq!(me["language"], "en");
    assert_eq!(me["subscriptions"].as_array().unwrap().len(), 2);
    let (status, _) = post_form(&app, &manage, &[("action", "save"), ("lang", "en")]).await;
    assert_eq!(status, 400, "at least one service");

    // Stop, then resume: the contact stays until the grace period is over.
    let (_, page) = post_form(&app, &manage, &[("action", "stop")]).await;
    assert!(page.contains("30 giorni"), "{page}");
    assert_eq!(
        citizens(&app).await[0]["addresses"][0]["state"],
        "unsubscribed"
    );
    post_form(&app, &manage, &[("action", "resume")]).await;
    assert_eq!(citizens(&app).await[0]["addresses"][0]["state"], "active");

    // Moving to SMS: the new number is confirmed, then the email address is erased.
    let page = unescape(&app.get(&manage, None).await.text().await.unwrap());
    let change = {
        let at = page.find("/status/subscribe?").unwrap();
        page[at..at + page[at..].find('"').unwrap()].to_owned()
    };
    let form = app.get(&change, None).await.text().await.unwrap();
    assert!(form.contains("name=\"replaces\""), "{form}");
    assert!(form.contains("value=\"referti\" checked"), "{form}");
    let replaces = hidden_field(&form, "replaces");
    let (status, page) = sign_up(
        &app,
        &[
            ("channel", "sms"),
            ("address", "+393481234567"),
            ("services", "cup"),
            ("services", "referti"),
            ("replaces", &replaces),
        ],
    )
    .await;
    assert_eq!(status, 202, "{page}");
    let sent = double.wait_for(1, Duration::from_secs(10)).await;
    let code: String = sent[0].text.chars().take(6).collect();
    let action = code_action(&page);
    let (status, _) = post_form(&app, &action, &[("code", &code)]).await;
    assert_eq!(status, 200);
    let list = citizens(&app).await;
    assert_eq!(list.len(), 1, "{list:?}");
    assert_eq!(list[0]["addresses"][0]["address"], "+393481234567");
    assert_eq!(list[0]["services"], json!(["cup", "referti"]));
    assert_eq!(
        app.get(&manage, None).await.status(),
        404,
        "the old link died with its address"
    );

    // Erasing at once: the subscriber and every copy of the number go.
    approved_statement(&app, "cup-backend", "CUP giù").await;
    double.wait_for(2, Duration::from_secs(15)).await;
    let sms_manage = double.sent()[1].text.lines().last().unwrap().to_owned();
    let sms_manage = sms_manage.split(PUBLIC).nth(1).unwrap().to_owned();
    let (status, page) = post_form(&app, &sms_manage, &[("action", "erase")]).await;
    assert_eq!(status, 400, "erasing asks for its confirmation");
    assert!(
        page.contains(
            "<p role=\"alert\" class=\"error\">Per cancellare i tuoi dati spunta la conferma."
        ),
        "{page}"
    );
    assert_eq!(citizens(&app).await.len(), 1);
    let (status, page) = post_form(
        &app,
        &sms_manage,
        &[("action", "erase"), ("confirm", "yes")],
    )
    .await;
    assert_eq!(status, 200);
    assert!(page.contains("I tuoi dati sono stati cancellati"), "{page}");
    assert!(citizens(&app).await.is_empty());
    let incidents = app.get_json("/api/v1/incidents", VIEWER_TOKEN).await;
    let id = incidents["incidents"][0]["id"].as_i64().unwrap();
    let d = app
        .get_json(&format!("/api/v1/incidents/{id}/deliveries"), VIEWER_TOKEN)
        .await
        .to_string();
    assert!(
        !d.contains("+393481234567") && !d.contains("lucia@example.org"),
        "{d}"
    );
    assert!(d.contains("erased:"), "{d}");
}

#[tokio::test]
async fn deleting_a_subscriber_erases_its_addresses_from_the_history() {
    let smtp = SmtpServer::start();
    let app = TestApp::spawn(&smtp, "", &[]).await;
    let id = app
        .subscribe(json!({
            "name": "CUP Foligno", "language": "it",
            "addresses": {"email": ["cup.foligno@asl.example"]},
            "subscriptions": [{"matchers": ["service=~\"cup.*\""]}],
        }))
        .await;
    fire_alert(&app, "firing", "cup-backend", "CUP giù").await;
    smtp.wait_for("cup.foligno@asl.example", 1, Duration::from_secs(10));
    let resp = reqwest::Client::new()
        .delete(app.url(&format!("/api/v1/subscribers/{id}")))
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 204);
    let incidents = app.get_json("/api/v1/incidents", VIEWER_TOKEN).await;
    let incident = incidents["incidents"][0]["id"].as_i64().unwrap();
    let d = app
        .get_json(
            &format!("/api/v1/incidents/{incident}/deliveries"),
            VIEWER_TOKEN,
        )
        .await;
    let d = &d["deliveries"][0];
    assert_eq!(d["state"], "sent", "the history stays: {d}");
    assert!(
        d["recipient"].as_str().unwrap().starts_with("erased:"),
        "{d}"
    );
}

/// What the page fails of WCAG 2.1 AA basics, checked in the browser: images without text,
/// missing landmarks or language, form fields without labels, and text whose computed colour
/// has less contrast with its computed background than 4.5:1 (3:1 for large text).
const ACCESSIBILITY: &str = r#"
const problems = [];
for (const img of document.querySelectorAll('img')) {
  if (!img.hasAttribute('alt')) problems.push('img without alt: ' + img.outerHTML.slice(0, 80));
}
for (const el of document.querySelectorAll('[role=img]')) {
  if (!el.getAttribute('aria-label')) problems.push('role=img without a label');
}
for (const tag of ['header', 'main', 'footer']) {
  if (!document.querySelector(tag)) problems.push('no <' + tag + '> landmark');
}
if (!document.documentElement.lang) problems.push('no lang on <html>');
const first = document.querySelector('a[href], button, input:not([type=hidden])');
if (!first || first.getAttribute('href') !== '#main') problems.push('the first stop is not the skip link');
for (const input of document.querySelectorAll('input:not([type=hidden]), textarea, select')) {
  const label = input.closest('label') || (input.id && document.querySelector('label[for="' + input.id + '"]'));
  if (!label) problems.push('field without a label: ' + input.name);
}
const rgb = s => (s.match(/[\d.]+/g) || []).map(Number);
const lum = ([r, g, b]) => {
  const f = c => { c /= 255; return c <= 0.03928 ? c / 12.92 : Math.pow((c + 0.055) / 1.055, 2.4); };
  return 0.2126 * f(r) + 0.7152 * f(g) + 0.0722 * f(b);
};
const background = el => {
  for (let e = el; e; e = e.parentElement) {
    const c = rgb(getComputedStyle(e).backgroundColor);
    if (c.length >= 3 && (c.length < 4 || c[3] > 0)) return c;
  }
  return [255, 255, 255];
};
let checked = 0;
for (const el of document.querySelectorAll('body *')) {
  const own = [...el.childNodes].some(n => n.nodeType === 3 && n.textContent.trim());
  const style = getComputedStyle(el);
  if (!own || style.visibility === 'hidden' || el.getClientRects().length === 0) continue;
  if (el.classList.contains('skip')) continue;
  const a = lum(rgb(style.color)), b = lum(background(el));
  const ratio = (Math.max(a, b) + 0.05) / (Math.min(a, b) + 0.05);
  const size = parseFloat(style.fontSize), bold = parseInt(style.fontWeight) >= 700;
  const large = size >= 24 || (bold && size >= 18.66);
  checked++;
  if (ratio < (large ? 3 : 4.5)) problems.push('contrast ' + ratio.toFixed(2) + ':1 for "' + el.textContent.trim().slice(0, 30) + '"');
}
if (checked < 5) problems.push('only ' + checked + ' texts checked');
return problems;
"#;

async fn accessibility_problems(c: &fantoccini::Client) -> Vec<String> {
    let found = c.execute(ACCESSIBILITY, vec![]).await.unwrap();
    serde_json::from_value(found).unwrap()
}

#[tokio::test]
async fn a_citizen_subscribes_in_chromium_and_hears_the_next_statement() {
    use fantoccini::Locator;
    let Some(mut browser) = Browser::start("citizen_subscribes").await else {
        return;
    };
    let smtp = SmtpServer::start();
    let app = TestApp::spawn(&smtp, &config(r#""email""#, ""), &[]).await;
    // An open incident, so that every state colour on the page is on show.
    approved_statement(&app, "cup-backend", "CUP backend giù").await;
    let c = browser.client.clone();
    c.goto(&app.url("/status")).await.unwrap();
    browser.screenshot("status").await;
    assert_eq!(browser.text_of("h1").await, "Disservizio grave in corso");
    assert!(browser.text_of("main").await.contains("Prenotazioni (CUP)"));
    let problems = accessibility_problems(&c).await;
    assert!(problems.is_empty(), "status page: {problems:#?}");

    browser.click(Locator::LinkText("Ricevi gli avvisi")).await;
    c.wait().for_element(Locator::Id("email")).await.unwrap();
    let problems = accessibility_problems(&c).await;
    assert!(problems.is_empty(), "sign-up form: {problems:#?}");
    browser
        .click(Locator::Css("input[name=services][value=referti]"))
        .await;
    c.find(Locator::Id("email"))
        .await
        .unwrap()
        .send_keys("giulia.bianchi@example.org")
        .await
        .unwrap();
    browser.screenshot("form").await;
    browser.click(Locator::Css("button[type=submit]")).await;
    // The page it came from has an h1 too: wait for the next page's.
    c.wait()
        .for_element(Locator::XPath(
            "//h1[normalize-space(.) = 'Controlla la tua email']",
        ))
        .await
        .expect("Controlla la tua email");

    // The link from the mailbox, opened in the browser, then the button.
    let mail = smtp.wait_for("giulia.bianchi@example.org", 1, Duration::from_secs(10));
    let confirm = link(&mail[0].text(), "/status/subscribe/confirm/");
    c.goto(&app.url(&confirm)).await.unwrap();
    assert!(browser.text_of("main").await.contains("Referti online"));
    browser.screenshot("confirm").await;
    browser.click(Locator::Css("button[type=submit]")).await;
    // The page it came from has an h1 too: wait for the next page's.
    c.wait()
        .for_element(Locator::XPath(
            "//h1[normalize-space(.) = 'Iscrizione confermata']",
        ))
        .await
        .expect("Iscrizione confermata");
    let problems = accessibility_problems(&c).await;
    assert!(problems.is_empty(), "confirmation: {problems:#?}");
    browser.screenshot("done").await;

    // The preferences page, linked from the confirmation, passes too. (The link is under the
    // deployment's public URL; the test's server listens elsewhere.)
    let href = c
        .find(Locator::LinkText("La tua iscrizione"))
        .await
        .unwrap()
        .attr("href")
        .await
        .unwrap()
        .unwrap();
    c.goto(&app.url(href.trim_start_matches(PUBLIC)))
        .await
        .unwrap();
    c.wait().for_element(Locator::Css("form")).await.unwrap();
    let problems = accessibility_problems(&c).await;
    assert!(problems.is_empty(), "preferences: {problems:#?}");
    browser.screenshot("preferences").await;

    approved_statement(&app, "referti", "referti: archivio non raggiungibile").await;
    let mails = smtp.wait_for("giulia.bianchi@example.org", 2, Duration::from_secs(15));
    assert!(mails[1].text().contains("referti"), "{}", mails[1].text());
    browser.close().await;
}

mod store {
    use std::sync::Arc;

    use banditore::domain::subscriber::{ChannelKind, Subscription};
    use banditore::store::*;
    use jiff::{SignedDuration, Timestamp};

    use crate::support::suite;

    fn plan(services: &[&str]) -> CitizenPlan {
        CitizenPlan {
            name: "Iscrizione alla pagina di stato".into(),
            language: "it".to_owned().try_into().unwrap(),
            services: services.iter().map(|s| s.to_string()).collect(),
            subscriptions: vec![Subscription {
                matchers: vec!["service=~\"cup.*\"".parse().unwrap()],
                min_severity: banditore::domain::Severity::Info,
                channels: vec![ChannelKind::Email],
            }],
        }
    }

    async fn signup(store: &Arc<dyn Store>, token: &str, address: &str, at: Timestamp) -> i64 {
        try_signup(store, token, address, at).await.unwrap()
    }

    /// A sign-up, unless the address has had two this hour.
    async fn try_signup(
        store: &Arc<dyn Store>,
        token: &str,
        address: &str,
        at: Timestamp,
    ) -> Option<i64> {
        let new = NewSignup {
            token_sha256: token.into(),
            channel: ChannelKind::Email,
            address: address.into(),
            address_key: format!("key:{address}"),
            language: "it".to_owned().try_into().unwrap(),
            services: vec!["cup".into()],
            code_sha256: None,
            replaces: None,
            created_at: at,
            expires_at: at + SignedDuration::from_hours(24),
        };
        let since = at - SignedDuration::from_hours(1);
        store.create_signup(&new, since, 2).await.unwrap()
    }

    pub async fn a_sign_up_is_confirmed_once_and_leaves_no_address_behind(store: Arc<dyn Store>) {
        let now = Timestamp::now();
        let id = signup(&store, "t1", "anna@example.org", now).await;
        let address = store
            .confirm_signup(id, &plan(&["cup"]), now)
            .await
            .unwrap();
        assert!(address.is_some());
        assert_eq!(
            store
                .confirm_signup(id, &plan(&["cup"]), now)
                .await
                .unwrap(),
            None,
            "single-use"
        );
        let used = store.signup("t1").await.unwrap().unwrap();
        assert!(used.used_at.is_some());
        assert_eq!(
            used.address, None,
            "the address is not kept on a used sign-up"
        );
        // The same address confirmed again updates the citizen it already is.
        let again = signup(&store, "t2", "anna@example.org", now).await;
        assert_eq!(
            try_signup(&store, "t3", "anna@example.org", now).await,
            None,
            "two sign-ups an hour for one address"
        );
        assert_eq!(
            store
                .confirm_signup(again, &plan(&["cup", "referti"]), now)
                .await
                .unwrap(),
            address
        );
        let citizens: Vec<_> = store
            .subscribers()
            .await
            .unwrap()
            .into_iter()
            .filter(|s| s.origin == SubscriberOrigin::Citizen)
            .collect();
        assert_eq!(citizens.len(), 1);
        assert_eq!(citizens[0].citizen_services, ["cup", "referti"]);
    }

    pub async fn unsubscribed_citizens_are_erased_after_the_grace_period(store: Arc<dyn Store>) {
        let now = Timestamp::now();
        let day = SignedDuration::from_hours(24);
        let kept = signup(&store, "k", "kept@example.org", now).await;
        let gone = signup(&store, "g", "gone@example.org", now).await;
        let recent = signup(&store, "r", "recent@example.org", now).await;
        let kept = store
            .confirm_signup(kept, &plan(&["cup"]), now)
            .await
            .unwrap()
            .unwrap();
        let gone = store
            .confirm_signup(gone, &plan(&["cup"]), now)
            .await
            .unwrap()
            .unwrap();
        let recent = store
            .confirm_signup(recent, &plan(&["cup"]), now)
            .await
            .unwrap()
            .unwrap();
        store
            .unsubscribe_address(gone, now - day * 31)
            .await
            .unwrap();
        store.unsubscribe_address(recent, now - day).await.unwrap();
        // A Telegram sign-up never opened; an email sign-up that expired days ago, and one that
        // expired minutes ago (it still counts towards its address's limit, without the address).
        let invite_ends = now + SignedDuration::from_hours(1);
        let unbound = store
            .create_citizen(&plan(&["cup"]), "invite", invite_ends, None, now)
            .await
            .unwrap();
        signup(&store, "old", "old@example.org", now - day * 3).await;
        let minutes = SignedDuration::from_mins(30);
        let lapsed = NewSignup {
            token_sha256: "lapsed".into(),
            channel: ChannelKind::Sms,
            address: "+393331234567".into(),
            address_key: "key:+393331234567".into(),
            language: "it".to_owned().try_into().unwrap(),
            services: vec!["cup".into()],
            code_sha256: Some("code".into()),
            replaces: None,
            created_at: now - minutes,
            expires_at: now - minutes / 3,
        };
        store
            .create_signup(&lapsed, now - minutes * 2, 3)
            .await
            .unwrap()
            .unwrap();

        let report = store
            .prune_citizens(
                now,
                now - day,
                now - day * 30,
                now + SignedDuration::from_secs(1),
            )
            .await
            .unwrap();
        assert_eq!(report.addresses, 1, "{report:?}");
        assert_eq!(report.signups, 1, "{report:?}");
        assert!(report.subscribers >= 1, "{report:?}");
        assert!(store.address(gone).await.unwrap().is_none());
        assert!(
            store.address(recent).await.unwrap().is_some(),
            "still in its grace period"
        );
        assert!(store.address(kept).await.unwrap().is_some());
        assert!(store.subscriber(unbound).await.unwrap().is_none());
        assert!(store.signup("old").await.unwrap().is_none());
        let lapsed = store.signup("lapsed").await.unwrap().unwrap();
        assert_eq!(lapsed.address, None, "an expired sign-up keeps no number");
        // Erasing at once removes the citizen with its last address.
        let owner = store.address(kept).await.unwrap().unwrap();
        assert!(store.erase_address(kept).await.unwrap());
        assert!(
            store
                .subscriber(owner.subscriber_id)
                .await
                .unwrap()
                .is_none()
        );
        assert!(!store.erase_address(kept).await.unwrap());
    }

    suite!(
        a_sign_up_is_confirmed_once_and_leaves_no_address_behind,
        unsubscribed_citizens_are_erased_after_the_grace_period,
    );
}

#[tokio::test]
async fn a_draft_approved_after_a_citizen_left_goes_to_the_others_only() {
    let smtp = SmtpServer::start();
    let app = TestApp::spawn(&smtp, &config(r#""email""#, ""), &[]).await;
    let mut manage = Vec::new();
    for who in [
        "resta@example.org",
        "parte@example.org",
        "cancella@example.org",
    ] {
        manage.push(subscribed_by_email(&app, &smtp, who, &["cup"]).await);
    }
    // The draft is written for all three; then one stops and one erases, before approval.
    fire_alert(&app, "firing", "cup-backend", "CUP giù").await;
    let draft = app.next_draft().await;
    post_form(&app, &manage[1], &[("action", "stop")]).await;
    let (status, _) = post_form(&app, &manage[2], &[("action", "erase"), ("confirm", "yes")]).await;
    assert_eq!(status, 200);
    let id = draft["id"].as_i64().unwrap();
    let email_recipients = |d: &Value| {
        d["parts"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|p| p["channel"] == "email")
            .map(|p| p["recipients"].as_u64().unwrap())
            .sum::<u64>()
    };
    assert_eq!(email_recipients(&draft), 3, "{draft}");
    let pending = app
        .get_json(&format!("/api/v1/drafts/{id}"), VIEWER_TOKEN)
        .await;
    assert_eq!(
        email_recipients(&pending),
        2,
        "the erased one is forgotten: {pending}"
    );
    app.approve_draft(id).await;
    smtp.wait_for("resta@example.org", 2, Duration::from_secs(10));
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(smtp.mails_to("parte@example.org").len(), 1, "only the link");
    assert_eq!(
        smtp.mails_to("cancella@example.org").len(),
        1,
        "only the link"
    );
    let board = app.get_json("/api/v1/status", VIEWER_TOKEN).await;
    assert_eq!(board["incidents"].as_array().unwrap().len(), 1, "{board}");
}

/// A provider's reason for a gone address quotes the address: an operator reading the citizen
/// sees neither, an admin both.
#[tokio::test]
async fn a_gone_citizens_reason_is_hidden_from_operators() {
    let smtp = SmtpServer::start();
    let app = TestApp::spawn(&smtp, &config(r#""email""#, ""), &[]).await;
    let who = "mario.rossi@example.org";
    subscribed_by_email(&app, &smtp, who, &["cup"]).await;
    smtp.refuse(
        who,
        550,
        "5.1.1 <mario.rossi@example.org>: Recipient address rejected",
    );
    approved_statement(&app, "cup-backend", "CUP non raggiungibile").await;
    let gone = eventually(
        || citizens(&app),
        |list| {
            list.first()
                .is_some_and(|c| c["addresses"][0]["state"] == "gone")
        },
    )
    .await;
    let id = gone[0]["id"].as_i64().unwrap();
    assert!(
        gone[0]["addresses"][0]["gone_reason"]
            .as_str()
            .is_some_and(|r| r.contains(who)),
        "the admin reads the provider's reason whole: {}",
        gone[0]
    );
    let seen = app
        .get_json(&format!("/api/v1/subscribers/{id}"), OPERATOR_TOKEN)
        .await;
    assert!(!seen.to_string().contains("mario.rossi"), "{seen}");
    assert_eq!(seen["addresses"][0]["state"], "gone", "{seen}");
}

/// Citizens hear an incident end as they heard it open: the resolution is a statement of its own,
/// written for them in batches once approved, after the opening, and only to those who follow
/// the service.
#[tokio::test]
async fn a_citizen_who_heard_the_opening_hears_the_resolution_after_it() {
    let smtp = SmtpServer::start();
    let app = TestApp::spawn(&smtp, &config(r#""email""#, ""), &[]).await;
    subscribed_by_email(&app, &smtp, "anna@example.org", &["cup"]).await;
    subscribed_by_email(&app, &smtp, "bruno@example.org", &["referti"]).await;
    let opened = approved_statement(&app, "cup-backend", "CUP non raggiungibile").await;
    smtp.wait_for("anna@example.org", 2, Duration::from_secs(10));
    fire_alert(&app, "resolved", "cup-backend", "CUP non raggiungibile").await;
    let resolved = eventually(
        || app.pending_drafts(),
        |d| d.iter().any(|d| d["id"] != opened["id"]),
    )
    .await
    .into_iter()
    .find(|d| d["id"] != opened["id"])
    .unwrap();
    let citizens_counted: u64 = resolved["parts"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p["channel"] == "email")
        .filter_map(|p| p["recipients"].as_u64())
        .sum();
    assert_eq!(citizens_counted, 1, "anna only: {resolved}");
    app.approve_draft(resolved["id"].as_i64().unwrap()).await;
    let mails = smtp.wait_for("anna@example.org", 3, Duration::from_secs(10));
    assert!(
        !mails[1].text().contains("è risolto"),
        "{}",
        mails[1].text()
    );
    assert!(mails[2].text().contains("è risolto"), "{}", mails[2].text());
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(smtp.mails_to("bruno@example.org").len(), 1, "only the link");
    assert_eq!(smtp.mails_to("anna@example.org").len(), 3);
}

/// A service's matchers changed in the configuration: at the next start every citizen's
/// subscriptions follow the new ones (the start skips this work only while they are unchanged).
#[tokio::test]
async fn after_a_restart_with_new_matchers_citizens_follow_them() {
    let smtp = SmtpServer::start();
    let mut app = TestApp::spawn(&smtp, &config(r#""email""#, ""), &[]).await;
    subscribed_by_email(&app, &smtp, "anna@example.org", &["cup"]).await;
    app.terminate();
    app.start().await;
    app.terminate();
    let text = std::fs::read_to_string(&app.config).unwrap();
    let moved = text.replace(r#"service=~"cup.*""#, r#"service="prenotazioni""#);
    assert_ne!(moved, text);
    std::fs::write(&app.config, moved).unwrap();
    app.start().await;
    approved_statement(&app, "prenotazioni", "Prenotazioni non raggiungibili").await;
    let mails = smtp.wait_for("anna@example.org", 2, Duration::from_secs(10));
    assert!(
        mails[1].text().contains("Prenotazioni"),
        "{}",
        mails[1].text()
    );
}

/// Citizens hear public statements once approved: a deployment that switches sign-ups off and
/// lets public statements out without approval, while citizens stay subscribed, would leave them
/// without news. It is refused at start, naming the key.
#[tokio::test]
async fn public_statements_without_approval_are_refused_while_citizens_are_subscribed() {
    let smtp = SmtpServer::start();
    let mut app = TestApp::spawn(&smtp, &config(r#""email""#, ""), &[]).await;
    subscribed_by_email(&app, &smtp, "cittadina@example.org", &["cup"]).await;
    app.terminate();
    let settings = std::fs::read_to_string(&app.config).unwrap();
    let changed = settings.replace(r#"channels = ["email"]"#, "channels = []")
        + "\n[approval.audiences.public]\npolicy = \"auto\"\n";
    std::fs::write(&app.config, changed).unwrap();
    let (code, _, stderr) = app.cli(&["serve"], "");
    assert_ne!(code, 0, "{stderr}");
    assert!(
        stderr.contains("approval.audiences.public: 1 citizens are subscribed"),
        "{stderr}"
    );
}
