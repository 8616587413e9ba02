//! The web console over HTTP, as a browser would use it: login, sessions, CSRF, roles, drafts.

use std::time::Duration;

use serde_json::json;

use fantoccini::Locator;

use crate::support::*;

const PUBLIC: &str = "cittadini@lista.asl.example";
const PASSWORD: &str = "una password lunga abbastanza";

async fn app_with_people(smtp: &SmtpServer) -> TestApp {
    let mut app = TestApp::spawn(smtp, "", &[]).await;
    app.add_user("m.rossi", PASSWORD, "communicator").await;
    app.add_user("l.bianchi", PASSWORD, "operator").await;
    app.subscribe(json!({
        "name": "Lista pubblica", "audience": "public", "addresses": {"email": PUBLIC},
        "subscriptions": [{"matchers": ["service=~\"cup.*\""]}],
    }))
    .await;
    app
}

#[tokio::test]
async fn login_sessions_and_logout() {
    let smtp = SmtpServer::start();
    let app = app_with_people(&smtp).await;
    let b = console_browser();
    // Pages need a session.
    let resp = b.get(app.url("/console/drafts")).send().await.unwrap();
    assert_eq!(resp.status(), 303);
    assert_eq!(resp.headers()["location"], "/console/login");
    let refused = console_login(&app, &b, "m.rossi", "wrong password here").await;
    assert_eq!(refused.status(), 401);
    assert!(refused.text().await.unwrap().contains("non corretti"));
    let ok = console_login(&app, &b, "m.rossi", PASSWORD).await;
    assert_eq!(ok.status(), 303);
    let cookie = ok.headers()["set-cookie"].to_str().unwrap().to_owned();
    assert!(cookie.starts_with("banditore_session="), "{cookie}");
    assert!(
        cookie.contains("HttpOnly") && cookie.contains("SameSite=Lax"),
        "{cookie}"
    );
    let page = b.get(app.url("/console/drafts")).send().await.unwrap();
    assert_eq!(page.status(), 200);
    let html = page.text().await.unwrap();
    assert!(html.contains("m.rossi (communicator)"), "{html}");
    // Logging out needs the token too, and ends the session.
    let forged = b
        .post(app.url("/console/logout"))
        .form(&[("csrf", "x")])
        .send()
        .await
        .unwrap();
    assert_eq!(forged.status(), 403);
    let csrf = hidden_field(&html, "csrf");
    let out = b
        .post(app.url("/console/logout"))
        .form(&[("csrf", csrf.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(out.status(), 303);
    let resp = b.get(app.url("/console/drafts")).send().await.unwrap();
    assert_eq!(resp.status(), 303, "the session is gone");
}

#[tokio::test]
async fn repeated_failed_logins_are_slowed_down() {
    let smtp = SmtpServer::start();
    let app = app_with_people(&smtp).await;
    let b = console_browser();
    for _ in 0..5 {
        assert_eq!(
            console_login(&app, &b, "m.rossi", "not the password")
                .await
                .status(),
            401
        );
    }
    let blocked = console_login(&app, &b, "m.rossi", PASSWORD).await;
    assert_eq!(blocked.status(), 429, "even the right password waits");
    assert!(blocked.text().await.unwrap().contains("Troppi tentativi"));
    // A login form posted from elsewhere (no token of ours) is refused.
    let other = console_browser();
    let forged = other
        .post(app.url("/console/login"))
        .form(&[
            ("login_token", "guess"),
            ("username", "l.bianchi"),
            ("password", PASSWORD),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(forged.status(), 403);
}

/// A console browser whose connections come from `ip` (any 127.x.y.z reaches the server).
fn browser_from(ip: [u8; 4]) -> reqwest::Client {
    reqwest::Client::builder()
        .cookie_store(true)
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(60))
        .local_address(std::net::IpAddr::from(ip))
        .build()
        .unwrap()
}

#[tokio::test]
async fn logins_sent_at_once_check_no_more_passwords_than_the_limit() {
    let smtp = SmtpServer::start();
    let app = app_with_people(&smtp).await;
    // Forty login forms, then forty posts at once from one address, the right password last.
    let mut forms = Vec::new();
    for _ in 0..40 {
        let b = console_browser();
        let page = b.get(app.url("/console/login")).send().await.unwrap();
        let token = hidden_field(&page.text().await.unwrap(), "login_token");
        forms.push((b, token));
    }
    let mut posts = Vec::new();
    for (i, (b, token)) in forms.into_iter().enumerate() {
        let url = app.url("/console/login");
        let password = if i == 39 {
            PASSWORD
        } else {
            "not the password"
        };
        posts.push(tokio::spawn(async move {
            let resp = b
                .post(url)
                .form(&[
                    ("login_token", token.as_str()),
                    ("username", "m.rossi"),
                    ("password", password),
                ])
                .send()
                .await
                .unwrap();
            (
                resp.status().as_u16(),
                resp.headers().contains_key("retry-after"),
            )
        }));
    }
    let mut answers = Vec::new();
    for p in posts {
        answers.push(p.await.unwrap());
    }
    let checked = answers.iter().filter(|(s, _)| *s != 429).count();
    assert!(checked <= 5, "{checked} passwords checked: {answers:?}");
    assert!(
        answers
            .iter()
            .filter(|(s, _)| *s == 429)
            .all(|(_, retry)| *retry),
        "every 429 says when to come back"
    );
    let refused = metric(&app, "banditore_console_logins_total{outcome=\"refused\"}").await;
    let ok = metric(&app, "banditore_console_logins_total{outcome=\"ok\"}").await;
    assert!(refused + ok <= 5.0, "{refused} refused, {ok} ok");
}

#[tokio::test]
async fn a_stranger_slows_a_name_down_but_its_owners_browser_still_gets_in() {
    let smtp = SmtpServer::start();
    let app = app_with_people(&smtp).await;
    // The communicator's own browser has logged in before: it carries a device cookie.
    let own = browser_from([127, 0, 0, 1]);
    assert_eq!(
        console_login(&app, &own, "m.rossi", PASSWORD)
            .await
            .status(),
        303
    );
    // Someone guesses from five addresses, one wrong password each.
    for i in 2..7 {
        let b = browser_from([127, 0, 0, i]);
        assert_eq!(
            console_login(&app, &b, "m.rossi", "not the password")
                .await
                .status(),
            401
        );
    }
    // The name is slowed for a browser it was never used from, even with the right password…
    let new = browser_from([127, 0, 0, 9]);
    let slowed = console_login(&app, &new, "m.rossi", PASSWORD).await;
    assert_eq!(slowed.status(), 429);
    let wait: u64 = slowed.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=30).contains(&wait), "slowed, not locked: {wait} s");
    // …but not locked: the owner's known browser gets in at once.
    assert_eq!(
        console_login(&app, &own, "m.rossi", PASSWORD)
            .await
            .status(),
        303
    );
    // Other users are not touched.
    assert_eq!(
        console_login(&app, &new, "l.bianchi", PASSWORD)
            .await
            .status(),
        303
    );
}

#[tokio::test]
async fn a_communicator_edits_and_approves_in_the_console_and_an_operator_cannot() {
    let smtp = SmtpServer::start();
    let app = app_with_people(&smtp).await;
    fire_alert(&app, "firing", "cup-backend", "CUP non risponde").await;
    let drafts = eventually(
        || async {
            app.get_json("/api/v1/drafts?state=pending", VIEWER_TOKEN)
                .await["drafts"]
                .clone()
        },
        |d| d.as_array().is_some_and(|a| !a.is_empty()),
    )
    .await;
    let id = drafts[0]["id"].as_i64().unwrap();

    let operator = console_browser();
    assert_eq!(
        console_login(&app, &operator, "l.bianchi", PASSWORD)
            .await
            .status(),
        303
    );
    let html = operator
        .get(app.url(&format!("/console/drafts/{id}")))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        !html.contains("approve-button"),
        "no approve button for an operator"
    );
    let csrf = hidden_field(&html, "csrf");
    let resp = operator
        .post(app.url(&format!("/console/drafts/{id}/approve")))
        .form(&[("csrf", csrf.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 403);

    let comms = console_browser();
    assert_eq!(
        console_login(&app, &comms, "m.rossi", PASSWORD)
            .await
            .status(),
        303
    );
    let html = comms
        .get(app.url(&format!("/console/drafts/{id}")))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(html.contains("CUP non risponde"), "{html}");
    let csrf = hidden_field(&html, "csrf");
    // Without the token: refused, and nothing changes.
    let resp = comms
        .post(app.url(&format!("/console/drafts/{id}/approve")))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 403);
    let edited = "Prenotazioni CUP sospese per un guasto.\r\nVi terremo aggiornati.";
    let resp = comms
        .post(app.url(&format!("/console/drafts/{id}/edit")))
        .form(&[
            ("csrf", csrf.as_str()),
            ("subject_email_it", "CUP sospeso"),
            ("body_email_it", edited),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 303);
    let resp = comms
        .post(app.url(&format!("/console/drafts/{id}/approve")))
        .form(&[("csrf", csrf.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 303);
    let mail = &smtp.wait_for(PUBLIC, 1, Duration::from_secs(10))[0];
    assert_eq!(mail.subject(), "CUP sospeso");
    assert_eq!(
        mail.text().replace("\r\n", "\n").trim_end(),
        edited.replace("\r\n", "\n")
    );
    let audit = app.get_json("/api/v1/audit", VIEWER_TOKEN).await;
    let by: Vec<(&str, &str)> = audit["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| (e["action"].as_str().unwrap(), e["actor"].as_str().unwrap()))
        .collect();
    assert!(
        by.contains(&("draft.edited", "m.rossi")) && by.contains(&("draft.approved", "m.rossi")),
        "{by:?}"
    );
    // The other pages render.
    for path in [
        "/console/incidents",
        "/console/audit",
        "/console/incidents/1",
        "/console/drafts",
    ] {
        let resp = comms.get(app.url(path)).send().await.unwrap();
        assert_eq!(resp.status(), 200, "{path}");
    }
}

#[tokio::test]
async fn in_a_real_browser_a_draft_appears_is_edited_approved_and_delivered_as_edited() {
    let Some(mut browser) = Browser::start("console_draft_flow").await else {
        return;
    };
    let smtp = SmtpServer::start();
    let app = app_with_people(&smtp).await;
    let c = browser.client.clone();
    c.goto(&app.url("/console/drafts")).await.unwrap();
    // Not logged in: the login page, in Italian.
    c.find(Locator::Id("username"))
        .await
        .unwrap()
        .send_keys("m.rossi")
        .await
        .unwrap();
    c.find(Locator::Id("password"))
        .await
        .unwrap()
        .send_keys(PASSWORD)
        .await
        .unwrap();
    browser.screenshot("login").await;
    browser.click(Locator::Css("button[type=submit]")).await;
    // The login page has an h1 too: wait for the drafts page's, not for any.
    c.wait()
        .for_element(Locator::XPath(
            "//h1[contains(., 'In attesa di approvazione')]",
        ))
        .await
        .expect("the drafts page after logging in");

    fire_alert(&app, "firing", "cup-backend", "CUP <non> risponde").await;
    // The draft shows up in the queue (the page is reloaded, as the office would).
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let link = loop {
        c.refresh().await.unwrap();
        if let Ok(link) = c.find(Locator::Css("a[href^='/console/drafts/']")).await {
            break link;
        }
        assert!(std::time::Instant::now() < deadline, "no draft appeared");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    browser.screenshot("queue").await;
    link.click().await.unwrap();
    let area = c
        .wait()
        .for_element(Locator::Id("body_email_it"))
        .await
        .unwrap();
    let original = area.prop("value").await.unwrap().unwrap_or_default();
    assert!(original.contains("CUP <non> risponde"), "{original}");
    // Editing updates the length live.
    area.clear().await.unwrap();
    let edited = "Le prenotazioni CUP sono sospese per un guasto.\nAggiornamenti su questo canale.";
    area.send_keys(edited).await.unwrap();
    let length = browser.text_of("#len_email_it").await;
    assert!(
        length.starts_with(&format!("{} /", edited.chars().count())),
        "{length}"
    );
    let subject = c.find(Locator::Id("subject_email_it")).await.unwrap();
    subject.clear().await.unwrap();
    subject
        .send_keys("CUP: prenotazioni sospese")
        .await
        .unwrap();
    browser.screenshot("edited").await;
    browser
        .click(Locator::Css("form#edit button[type=submit]"))
        .await;
    c.wait()
        .for_element(Locator::Id("approve-button"))
        .await
        .unwrap();
    let saved = c
        .find(Locator::Id("body_email_it"))
        .await
        .unwrap()
        .prop("value")
        .await
        .unwrap()
        .unwrap_or_default();
    assert_eq!(saved, edited, "the saved version is shown");
    browser.click(Locator::Id("approve-button")).await;
    // The page before the click has a #draft-state too: wait for the one that says approved.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        if let Ok(state) = c.find(Locator::Id("draft-state")).await
            && state.text().await.is_ok_and(|t| t == "approvata")
        {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the draft was not shown approved"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    browser.screenshot("approved").await;
    let mail = &smtp.wait_for(PUBLIC, 1, Duration::from_secs(10))[0];
    assert_eq!(mail.subject(), "CUP: prenotazioni sospese");
    assert_eq!(mail.text().replace("\r\n", "\n").trim_end(), edited);
    c.goto(&app.url("/console/audit")).await.unwrap();
    let audit = browser.text_of("table").await;
    assert!(
        audit.contains("draft.approved") && audit.contains("m.rossi"),
        "{audit}"
    );
    browser.screenshot("audit").await;
    browser.close().await;
}

#[tokio::test]
async fn operators_manage_subscribers_in_the_console_and_communicators_may_not() {
    let smtp = SmtpServer::start();
    let app = app_with_people(&smtp).await;
    let comms = console_browser();
    assert_eq!(
        console_login(&app, &comms, "m.rossi", PASSWORD)
            .await
            .status(),
        303
    );
    let resp = comms
        .get(app.url("/console/subscribers"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 403);

    let op = console_browser();
    assert_eq!(
        console_login(&app, &op, "l.bianchi", PASSWORD)
            .await
            .status(),
        303
    );
    let html = op
        .get(app.url("/console/subscribers"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(html.contains("Lista pubblica"), "{html}");
    let csrf = hidden_field(&html, "csrf");
    let bad = op
        .post(app.url("/console/subscribers"))
        .form(&[
            ("csrf", csrf.as_str()),
            ("name", "CUP Gubbio"),
            ("sms", "+39 333"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), 400);
    assert!(bad.text().await.unwrap().contains("+39 333"));
    let ok = op
        .post(app.url("/console/subscribers"))
        .form(&[
            ("csrf", csrf.as_str()),
            ("name", "CUP Gubbio"),
            ("audience", "cup-desk"),
            ("email", "cup.gubbio@asl.example"),
            ("sms", "333 123 4567"),
            ("matchers", "service=~\"cup.*\""),
            ("min_severity", "warning"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(ok.status(), 303);
    let list = app.get_json("/api/v1/subscribers", ADMIN_TOKEN).await;
    let gubbio = list["subscribers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == "CUP Gubbio")
        .cloned()
        .expect("created");
    assert_eq!(gubbio["addresses"].as_array().unwrap().len(), 2);
    assert_eq!(gubbio["subscriptions"][0]["min_severity"], "warning");
    let id = gubbio["id"].as_i64().unwrap();
    let gone = op
        .post(app.url(&format!("/console/subscribers/{id}/delete")))
        .form(&[("csrf", csrf.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(gone.status(), 303);
    let list = app.get_json("/api/v1/subscribers", ADMIN_TOKEN).await;
    assert!(!list.to_string().contains("CUP Gubbio"));
    let audit = app
        .get_json("/api/v1/audit", VIEWER_TOKEN)
        .await
        .to_string();
    assert!(audit.contains("subscriber.created") && audit.contains("subscriber.deleted"));
}

#[tokio::test]
async fn an_administrator_unlocks_a_name_on_a_running_deployment() {
    let Some(db) = fresh_database().await else {
        return;
    };
    let smtp = SmtpServer::start();
    let mut app = TestApp::spawn(&smtp, "", &[("BANDITORE__STORE__URL", db.url.as_str())]).await;
    app.add_user("m.rossi", PASSWORD, "communicator").await;
    let b = console_browser();
    for _ in 0..5 {
        assert_eq!(
            console_login(&app, &b, "m.rossi", "not the password")
                .await
                .status(),
            401
        );
    }
    assert_eq!(
        console_login(&app, &b, "m.rossi", PASSWORD).await.status(),
        429
    );
    // On PostgreSQL the command runs beside the service, and every replica reads it.
    let (code, out, err) = app.cli(&["user", "unlock", "m.rossi"], "");
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("unlocked"), "{out}");
    assert_eq!(
        console_login(&app, &b, "m.rossi", PASSWORD).await.status(),
        303
    );
    let (code, _, err) = app.cli(&["user", "unlock", "nessuno"], "");
    assert_ne!(code, 0);
    assert!(err.contains("no user nessuno"), "{err}");
}

/// The nonce a console answer's `Content-Security-Policy` allows for inline scripts and styles.
fn csp_nonce(csp: &str) -> String {
    let start = csp
        .find("'nonce-")
        .unwrap_or_else(|| panic!("no nonce in {csp}"))
        + 7;
    csp[start..].split('\'').next().unwrap().to_owned()
}

#[tokio::test]
async fn console_answers_forbid_framing_caching_and_foreign_scripts() {
    let smtp = SmtpServer::start();
    let mut app = TestApp::spawn(&smtp, "", &[]).await;
    app.add_user("l.bianchi", PASSWORD, "operator").await;
    let b = console_browser();
    let anonymous = b.get(app.url("/console/drafts")).send().await.unwrap();
    assert_eq!(anonymous.status(), 303);
    let login = b.get(app.url("/console/login")).send().await.unwrap();
    assert_eq!(
        console_login(&app, &b, "l.bianchi", PASSWORD)
            .await
            .status(),
        303
    );
    let subscribers = b.get(app.url("/console/subscribers")).send().await.unwrap();
    assert_eq!(subscribers.status(), 200);
    let mut nonces = Vec::new();
    for resp in [anonymous, login, subscribers] {
        let h = resp.headers().clone();
        let csp = h["content-security-policy"].to_str().unwrap().to_owned();
        assert!(csp.contains("frame-ancestors 'none'"), "{csp}");
        assert!(csp.contains("default-src 'none'"), "{csp}");
        assert!(!csp.contains("unsafe-inline"), "{csp}");
        assert_eq!(h["x-frame-options"], "DENY");
        assert_eq!(h["cache-control"], "no-store");
        assert_eq!(h["referrer-policy"], "same-origin");
        assert_eq!(h["x-content-type-options"], "nosniff");
        if resp.status() == 200 {
            let nonce = csp_nonce(&csp);
            let html = resp.text().await.unwrap();
            // The page's own style carries the nonce, and nothing is styled outside it.
            assert!(
                html.contains(&format!("<style nonce=\"{nonce}\">")),
                "{html}"
            );
            assert!(!html.contains(" style="), "{html}");
            nonces.push(nonce);
        }
    }
    assert_eq!(nonces.len(), 2);
    assert_ne!(nonces[0], nonces[1], "a nonce is used once");
}

const STATUS_PAGE: &str = r#"
[[status.services]]
id = "cup"
name = "Prenotazioni (CUP)"
name_en = "Bookings (CUP)"
matchers = ['service=~"cup.*"']
"#;

#[tokio::test]
async fn each_language_of_the_status_part_is_edited_with_the_checks_of_the_api() {
    let smtp = SmtpServer::start();
    let mut app = TestApp::spawn(&smtp, STATUS_PAGE, &[]).await;
    app.add_user("m.rossi", PASSWORD, "communicator").await;
    fire_alert(&app, "firing", "cup-backend", "CUP non risponde").await;
    let id = app.next_draft().await["id"].as_i64().unwrap();
    let comms = console_browser();
    assert_eq!(
        console_login(&app, &comms, "m.rossi", PASSWORD)
            .await
            .status(),
        303
    );
    let html = comms
        .get(app.url(&format!("/console/drafts/{id}")))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for field in [
        "subject_status_it",
        "body_status_it",
        "subject_status_en",
        "body_status_en",
    ] {
        assert!(
            html.contains(&format!("name=\"{field}\"")),
            "{field}: {html}"
        );
    }
    assert!(html.contains("Titolo pubblico"), "{html}");
    let csrf = hidden_field(&html, "csrf");
    let edit = |fields: Vec<(&'static str, String)>| {
        let mut form = vec![("csrf", csrf.clone())];
        form.extend(fields);
        comms
            .post(app.url(&format!("/console/drafts/{id}/edit")))
            .form(&form)
            .send()
    };
    // What the API refuses, the console refuses, naming the field.
    for (field, value) in [
        ("subject_status_en", "x".repeat(161)),
        ("subject_status_en", "Outage\u{2028}Bcc".to_owned()),
        ("body_status_en", "x".repeat(20_001)),
    ] {
        let resp = edit(vec![(field, value)]).await.unwrap();
        assert_eq!(resp.status(), 400, "{field}");
        let page = resp.text().await.unwrap();
        assert!(page.contains(field), "{field}: {page}");
    }
    let resp = edit(vec![
        ("subject_status_it", "Prenotazioni sospese".to_owned()),
        (
            "body_status_it",
            "Le prenotazioni online sono sospese.".to_owned(),
        ),
        ("subject_status_en", "Bookings suspended".to_owned()),
        ("body_status_en", "Online booking is suspended.".to_owned()),
    ])
    .await
    .unwrap();
    assert_eq!(resp.status(), 303);
    let draft = app
        .get_json(&format!("/api/v1/drafts/{id}"), VIEWER_TOKEN)
        .await;
    let status: Vec<(&str, &str, &str)> = draft["parts"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p["channel"] == "status")
        .map(|p| {
            (
                p["language"].as_str().unwrap(),
                p["subject"].as_str().unwrap(),
                p["body"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        status,
        [
            ("en", "Bookings suspended", "Online booking is suspended."),
            (
                "it",
                "Prenotazioni sospese",
                "Le prenotazioni online sono sospese."
            ),
        ]
    );
}

#[tokio::test]
async fn the_console_names_states_and_severities_in_its_language() {
    let smtp = SmtpServer::start();
    let app = app_with_people(&smtp).await;
    fire_alert(&app, "firing", "cup-backend", "CUP non risponde").await;
    app.next_draft().await;
    let it = console_browser();
    assert_eq!(
        console_login(&app, &it, "l.bianchi", PASSWORD)
            .await
            .status(),
        303
    );
    let page = |b: &reqwest::Client, path: &str, lang: &str| {
        b.get(app.url(path)).header("Accept-Language", lang).send()
    };
    for path in ["/console/incidents", "/console/incidents/1"] {
        let html = page(&it, path, "it").await.unwrap().text().await.unwrap();
        assert!(
            html.contains("in verifica") && html.contains("critico"),
            "{path}: {html}"
        );
        // What the page shows, without the values its forms send.
        let shown = html
            .split("value=\"")
            .enumerate()
            .map(|(i, s)| {
                if i == 0 {
                    s
                } else {
                    s.split_once('"').map_or(s, |(_, r)| r)
                }
            })
            .collect::<String>();
        for english in ["investigating", "critical", "firing"] {
            assert!(!shown.contains(english), "{path}: {english} in {html}");
        }
        let html = page(&it, path, "en").await.unwrap().text().await.unwrap();
        assert!(
            html.contains("investigating") && html.contains("critical"),
            "{path}: {html}"
        );
    }
    let html = page(&it, "/console/incidents/1", "it")
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(html.contains("in corso"), "the signal's state: {html}");
}
