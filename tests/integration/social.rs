//! Approved statements on the region's social accounts: Mastodon, Bluesky, X and a Facebook
//! Page, each against a local double that counts, limits and fails the way the network does.

use std::time::Duration;

use banditore::domain::subscriber::ChannelKind;
use banditore::render::social::Limits;
use fantoccini::Locator;
use proptest::collection::vec;
use proptest::prelude::*;
use proptest::sample::select;
use serde_json::{Value, json};

use crate::support::mastodon::{MASTODON_TOKEN, MastodonDouble};
use crate::support::networks::Networks;
use crate::support::*;
use crate::support::{bluesky, facebook, mastodon, x};

const WAIT: Duration = Duration::from_secs(15);

/// Waits for the next pending draft and approves it whole; returns it as it was shown.
async fn approve_next(app: &TestApp) -> Value {
    let draft = app.next_draft().await;
    app.approve_draft(draft["id"].as_i64().unwrap()).await;
    draft
}

async fn post_update(app: &TestApp, incident: i64, status: &str, body: &str) {
    let resp = app
        .post_json(
            &format!("/api/v1/incidents/{incident}/updates"),
            Some(OPERATOR_TOKEN),
            &json!({"status": status, "body": body}),
        )
        .await;
    assert_eq!(resp.status(), 201, "{}", resp.text().await.unwrap());
}

async fn open_incident(app: &TestApp, title: &str, body: &str) -> i64 {
    let req = json!({"title": title, "severity": "critical",
        "labels": {"service": "cup-prenotazioni"}, "body": body});
    let resp = app
        .post_json("/api/v1/incidents", Some(OPERATOR_TOKEN), &req)
        .await;
    assert_eq!(resp.status(), 201);
    resp.json::<Value>().await.unwrap()["id"].as_i64().unwrap()
}

/// The deliveries of an incident on one channel.
async fn deliveries(app: &TestApp, incident: i64, channel: &str) -> Vec<Value> {
    let all = app
        .get_json(
            &format!("/api/v1/incidents/{incident}/deliveries"),
            VIEWER_TOKEN,
        )
        .await;
    all["deliveries"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|d| d["channel"] == channel)
        .cloned()
        .collect()
}

/// The path of the status-page link a post ends with.
fn status_path(text: &str) -> String {
    let url = text
        .split_whitespace()
        .find(|w| w.contains("/status/incidents/"))
        .unwrap_or_else(|| panic!("no status link in {text:?}"));
    let path = &url[url.find("/status/").unwrap()..];
    assert!(text.trim_end().ends_with(url), "the link is last: {text}");
    path.to_owned()
}

#[tokio::test]
async fn approved_statement_is_posted_on_every_network_and_updates_continue_the_thread() {
    let smtp = SmtpServer::start();
    let net = Networks::start().await;
    let app = TestApp::spawn(&smtp, &net.config(MASTODON_TOKEN), &[]).await;
    let title = "Il CUP è giù 🚨 prenotazioni sospese";
    let incident = open_incident(&app, title, "Stiamo verificando con il fornitore di rete.").await;

    // One draft, a part per network, each within its limit by that network's count.
    let draft = approve_next(&app).await;
    let parts = draft["parts"].as_array().unwrap();
    for network in ["mastodon", "bluesky", "x", "facebook"] {
        let part = parts
            .iter()
            .find(|p| p["channel"] == network)
            .unwrap_or_else(|| panic!("no {network} part in {parts:#?}"));
        let length = &part["length"];
        assert!(
            length["used"].as_u64().unwrap() <= length["limit"].as_u64().unwrap(),
            "{network}: {length}"
        );
        assert_eq!(part["recipients"], 1);
    }
    let x_part = parts.iter().find(|p| p["channel"] == "x").unwrap();
    assert_eq!(x_part["length"]["unit"], "weighted characters");
    assert_eq!(
        x_part["length"]["used"].as_u64().unwrap() as usize,
        x::weighted_length(x_part["body"].as_str().unwrap()),
        "the draft view counts as X does"
    );

    let toot = net.mastodon.wait_for(1, WAIT).await.remove(0);
    let skeet = net.bluesky.wait_for(1, WAIT).await.remove(0);
    let tweet = net.x.wait_for(1, WAIT).await.remove(0);
    let fb = net.facebook.wait_for(1, WAIT).await.remove(0);
    for text in [&toot.text, &skeet.text, &tweet.text, &fb.message] {
        assert!(text.contains(title), "{text}");
        assert!(text.contains("Stiamo verificando"), "{text}");
    }
    assert!(mastodon::count_length(&toot.text) <= 500);
    assert_eq!(toot.visibility, "public");
    assert_eq!(toot.language.as_deref(), Some("it"));
    assert!(bluesky::count_graphemes(&skeet.text) <= 300);
    assert!(x::weighted_length(&tweet.text) <= 280);
    assert_eq!(fb.parent, None);
    assert_eq!(toot.in_reply_to_id, None);
    assert_eq!(skeet.reply_root, None);
    assert_eq!(tweet.in_reply_to, None);

    // The link works: the status page shows the approved statement.
    let path = status_path(&toot.text);
    assert_eq!(path, format!("/status/incidents/{incident}"));
    let page = app.get(&path, None).await;
    assert_eq!(page.status(), 200);
    let html = page.text().await.unwrap();
    assert!(
        html.contains("Stiamo verificando con il fornitore di rete."),
        "{html}"
    );
    assert!(html.contains("<main"), "{html}");
    // Bluesky's link is a facet over the URL's UTF-8 bytes, past `è` and `🚨`.
    let links = skeet.links();
    assert_eq!(links.len(), 1, "{:?}", skeet.facets);
    assert_eq!(links[0].0, links[0].1, "the facet covers exactly the URL");
    assert!(links[0].1.ends_with(&path));

    // An update, then the resolution: replies in the same thread on each network.
    post_update(
        &app,
        incident,
        "identified",
        "Guasto a un apparato di rete; intervento in corso.",
    )
    .await;
    approve_next(&app).await;
    let toots = net.mastodon.wait_for(2, WAIT).await;
    let skeets = net.bluesky.wait_for(2, WAIT).await;
    let tweets = net.x.wait_for(2, WAIT).await;
    let comments = eventually(
        || async { net.facebook.comments_on(&fb.id) },
        |c| c.len() == 1,
    )
    .await;
    assert_eq!(toots[1].in_reply_to_id.as_deref(), Some(toot.id.as_str()));
    assert_eq!(skeets[1].reply_root.as_deref(), Some(skeet.uri.as_str()));
    assert_eq!(skeets[1].reply_parent.as_deref(), Some(skeet.uri.as_str()));
    assert_eq!(tweets[1].in_reply_to.as_deref(), Some(tweet.id.as_str()));
    assert!(comments[0].message.contains("intervento in corso"));

    post_update(
        &app,
        incident,
        "resolved",
        "Rete ripristinata, prenotazioni riaperte.",
    )
    .await;
    approve_next(&app).await;
    let toots = net.mastodon.wait_for(3, WAIT).await;
    let skeets = net.bluesky.wait_for(3, WAIT).await;
    let tweets = net.x.wait_for(3, WAIT).await;
    let comments = eventually(
        || async { net.facebook.comments_on(&fb.id) },
        |c| c.len() == 2,
    )
    .await;
    assert_eq!(
        toots[2].in_reply_to_id,
        Some(toots[1].id.clone()),
        "replies to the latest"
    );
    assert_eq!(skeets[2].reply_root.as_deref(), Some(skeet.uri.as_str()));
    assert_eq!(skeets[2].reply_parent, Some(skeets[1].uri.clone()));
    assert_eq!(tweets[2].in_reply_to, Some(tweets[1].id.clone()));
    assert!(
        toots[2].text.contains("Disservizio risolto"),
        "{}",
        toots[2].text
    );
    assert!(comments[1].message.contains("prenotazioni riaperte"));
    assert_eq!(
        net.facebook.feed().len(),
        1,
        "updates are comments, not posts"
    );
    // Bluesky logged in once for all three posts.
    assert_eq!(net.bluesky.sessions_created(), 1);

    // The post ids are kept on the deliveries, so the thread survives a restart.
    let sent = eventually(
        || deliveries(&app, incident, "mastodon"),
        |d| d.len() == 3 && d.iter().all(|d| d["state"] == "sent"),
    )
    .await;
    let ids: Vec<&str> = sent
        .iter()
        .map(|d| d["provider_id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, toots.iter().map(|t| t.id.as_str()).collect::<Vec<_>>());
}

#[tokio::test]
async fn an_over_long_statement_is_shortened_by_the_templates_never_refused() {
    let smtp = SmtpServer::start();
    let net = Networks::start().await;
    let app = TestApp::spawn(&smtp, &net.config(MASTODON_TOKEN), &[]).await;
    let long = "L'accesso alle prenotazioni è sospeso in tutta la regione — città, farmacie e sportelli 🚑. "
        .repeat(30);
    let incident = open_incident(&app, "Disservizio CUP regionale", &long).await;
    let draft = approve_next(&app).await;
    for part in draft["parts"].as_array().unwrap() {
        let length = &part["length"];
        assert!(
            length["used"].as_u64() <= length["limit"].as_u64(),
            "{}: {length}",
            part["channel"]
        );
    }
    let toot = net.mastodon.wait_for(1, WAIT).await.remove(0);
    let skeet = net.bluesky.wait_for(1, WAIT).await.remove(0);
    let tweet = net.x.wait_for(1, WAIT).await.remove(0);
    let fb = net.facebook.wait_for(1, WAIT).await.remove(0);
    assert!(mastodon::count_length(&toot.text) <= 500);
    assert!(bluesky::count_graphemes(&skeet.text) <= 300);
    assert!(x::weighted_length(&tweet.text) <= 280);
    assert!(fb.message.chars().count() <= 2000);
    for text in [&toot.text, &skeet.text, &tweet.text, &fb.message] {
        // Cut before the link, which stays whole and last.
        assert!(text.contains("…\n"), "{text}");
        assert_eq!(status_path(text), format!("/status/incidents/{incident}"));
    }
    // The cut keeps as much as fits: X's text is close to its 280.
    assert!(x::weighted_length(&tweet.text) > 240, "{}", tweet.text);
    // Nothing was refused on the way.
    for statuses in [
        net.mastodon
            .requests()
            .iter()
            .map(|r| r.status)
            .collect::<Vec<_>>(),
        net.x.requests().iter().map(|r| r.status).collect(),
        net.facebook.requests().iter().map(|r| r.status).collect(),
    ] {
        assert!(statuses.iter().all(|s| *s < 400), "{statuses:?}");
    }
    assert_eq!(skeet.links().len(), 1);
    assert_eq!(skeet.links()[0].0, skeet.links()[0].1);
}

#[tokio::test]
async fn bluesky_refreshes_an_expired_session_instead_of_logging_in_again() {
    let smtp = SmtpServer::start();
    let net = Networks::start().await;
    let app = TestApp::spawn(&smtp, &net.config(MASTODON_TOKEN), &[]).await;
    let incident = open_incident(&app, "Sito ASL non raggiungibile", "Verifiche in corso.").await;
    approve_next(&app).await;
    let first = net.bluesky.wait_for(1, WAIT).await.remove(0);
    net.bluesky.expire_access_tokens();
    post_update(
        &app,
        incident,
        "monitoring",
        "Servizio ripristinato, in osservazione.",
    )
    .await;
    approve_next(&app).await;
    let posts = net.bluesky.wait_for(2, WAIT).await;
    assert_eq!(posts[1].reply_parent.as_deref(), Some(first.uri.as_str()));
    assert_eq!(net.bluesky.sessions_created(), 1, "no second login");
    assert_eq!(net.bluesky.refreshes(), 1);
    let refused: Vec<_> = net
        .bluesky
        .requests()
        .into_iter()
        .filter(|r| r.status == 400)
        .collect();
    assert_eq!(refused.len(), 1, "one ExpiredToken answer: {refused:?}");
    assert!(refused[0].path.contains("createRecord"), "{refused:?}");
}

#[tokio::test]
async fn a_refused_token_pauses_the_channel_and_is_said_while_an_over_long_edit_is_refused() {
    let smtp = SmtpServer::start();
    let net = Networks::start().await;
    let app = TestApp::spawn(&smtp, &net.config(mastodon::MASTODON_READ_TOKEN), &[]).await;
    let incident = open_incident(&app, "Portale regionale lento", "Verifiche in corso.").await;
    let id = app.next_draft().await["id"].as_i64().unwrap();

    // An edit longer than X allows is refused, naming X's own count.
    let too_long = format!("{} https://example.org/x", "€".repeat(140));
    let resp = app
        .put_json(
            &format!("/api/v1/drafts/{id}"),
            COMMUNICATOR_TOKEN,
            &json!({"parts": [{"channel": "x", "language": "it", "body": too_long}]}),
        )
        .await;
    assert_eq!(resp.status(), 400);
    let error = resp.text().await.unwrap();
    assert!(
        error.contains("parts[0].body") && error.contains("weighted characters"),
        "{error}"
    );
    assert!(
        error.contains("304 weighted characters as X counts them"),
        "140 × € (2 each) + space + link (23): {error}"
    );

    approve_next(&app).await;
    // The token lacks write:statuses: Mastodon refuses, the channel is paused and the delivery
    // waits for a fix, no attempt counted.
    let waiting = eventually(
        || deliveries(&app, incident, "mastodon"),
        |d| {
            d.len() == 1
                && d[0]["state"] == "pending"
                && d[0]["last_error"]
                    .as_str()
                    .is_some_and(|e| e.contains("channel paused"))
        },
    )
    .await;
    assert_eq!(waiting[0]["attempts"], 0, "{waiting:?}");
    let error = waiting[0]["last_error"].as_str().unwrap_or_default();
    assert!(error.contains("write:statuses"), "{waiting:?}");
    let ready = app.get("/readyz", None).await.text().await.unwrap();
    assert!(ready.contains("channel mastodon paused"), "{ready}");
    assert!(net.mastodon.posts().is_empty());
    assert!(
        !app.logs().contains(mastodon::MASTODON_READ_TOKEN),
        "no token in the logs"
    );
    // The other networks were not held up.
    net.x.wait_for(1, WAIT).await;
}

#[tokio::test]
async fn mastodon_rate_limit_holds_posts_until_its_reset_without_counting_attempts() {
    let smtp = SmtpServer::start();
    let mut net = Networks::start().await;
    // One status per 2-second window, as Mastodon's 300 per 3 hours in miniature.
    net.mastodon = MastodonDouble::start_with(mastodon::MastodonOptions {
        statuses_per_window: 1,
        statuses_window: Duration::from_secs(2),
        ..Default::default()
    })
    .await;
    let app = TestApp::spawn(&smtp, &net.config(MASTODON_TOKEN), &[]).await;
    let incident = open_incident(&app, "CUP lento", "Verifiche in corso.").await;
    approve_next(&app).await;
    net.mastodon.wait_for(1, WAIT).await;
    post_update(&app, incident, "identified", "Causa individuata.").await;
    approve_next(&app).await;
    let toots = net.mastodon.wait_for(2, WAIT).await;
    assert_eq!(toots[1].in_reply_to_id, Some(toots[0].id.clone()));
    // The double has the post; the outcome is recorded a moment later.
    let sent = eventually(
        || deliveries(&app, incident, "mastodon"),
        |d| d.iter().all(|d| d["state"] == "sent"),
    )
    .await;
    // The first post used the window up (`X-RateLimit-Remaining: 0`): the second waited for
    // the reset instead of being refused, and waiting costs no attempt.
    assert_eq!(net.mastodon.throttled(), 0, "{:?}", net.mastodon.requests());
    assert_eq!(sent[1]["attempts"], 1, "{sent:?}");
    let statuses: Vec<u16> = net
        .mastodon
        .requests()
        .iter()
        .filter(|r| r.method == "POST")
        .map(|r| r.status)
        .collect();
    assert_eq!(
        statuses.iter().filter(|s| **s == 200).count(),
        2,
        "{statuses:?}"
    );
}

#[tokio::test]
async fn in_a_real_browser_each_network_part_counts_as_its_network_while_typing() {
    let Some(mut browser) = Browser::start("social_draft_lengths").await else {
        return;
    };
    let smtp = SmtpServer::start();
    let net = Networks::start().await;
    let mut app = TestApp::spawn(&smtp, &net.config(MASTODON_TOKEN), &[]).await;
    app.add_user("m.rossi", "una-password-lunga-abbastanza", "communicator")
        .await;
    open_incident(&app, "CUP giù", "Verifiche in corso.").await;
    let id = app.next_draft().await["id"].as_i64().unwrap();
    let c = browser.client.clone();
    c.goto(&app.url(&format!("/console/drafts/{id}")))
        .await
        .unwrap();
    c.find(Locator::Id("username"))
        .await
        .unwrap()
        .send_keys("m.rossi")
        .await
        .unwrap();
    c.find(Locator::Id("password"))
        .await
        .unwrap()
        .send_keys("una-password-lunga-abbastanza")
        .await
        .unwrap();
    browser.click(Locator::Css("button[type=submit]")).await;
    // Leaving before the login's answer arrives would abandon it: wait for the drafts page.
    c.wait()
        .for_element(Locator::XPath(
            "//h1[contains(., 'In attesa di approvazione')]",
        ))
        .await
        .expect("the drafts page after logging in");
    c.goto(&app.url(&format!("/console/drafts/{id}")))
        .await
        .unwrap();
    let text = "Guasto: 10 € di rimborso 🚑 Città https://stato.example.org/status/incidents/1";
    for (channel, expected) in [
        // X weighs € and the emoji 2 and the link 23; Mastodon counts the link 23 too.
        ("x", x::weighted_length(text)),
        ("mastodon", mastodon::count_length(text)),
        ("bluesky", bluesky::count_graphemes(text)),
        ("facebook", text.chars().count()),
    ] {
        let area = c
            .wait()
            .for_element(Locator::Id(&format!("body_{channel}_it")))
            .await
            .unwrap();
        area.clear().await.unwrap();
        area.send_keys(text).await.unwrap();
        let shown = browser.text_of(&format!("#len_{channel}_it")).await;
        assert!(
            shown.starts_with(&format!("{expected} / ")),
            "{channel}: {shown} (expected {expected})"
        );
    }
    assert!(
        browser
            .text_of("#len_x_it")
            .await
            .ends_with("/ 280 caratteri ponderati")
    );
    browser.screenshot("social-lengths").await;
    browser.close().await;
}

#[tokio::test]
async fn after_a_restart_the_thread_continues_and_facebook_can_post_updates_as_posts() {
    let smtp = SmtpServer::start();
    let net = Networks::start().await;
    let config = net.config(MASTODON_TOKEN).replace(
        &format!("page_token = \"{}\"", facebook::FB_PAGE_TOKEN),
        &format!(
            "page_token = \"{}\"\nupdates = \"posts\"",
            facebook::FB_PAGE_TOKEN
        ),
    );
    let mut app = TestApp::spawn(&smtp, &config, &[]).await;
    let incident = open_incident(&app, "Portale referti lento", "Verifiche in corso.").await;
    approve_next(&app).await;
    let first = net.mastodon.wait_for(1, WAIT).await.remove(0);
    let first_skeet = net.bluesky.wait_for(1, WAIT).await.remove(0);
    net.facebook.wait_for(1, WAIT).await;
    // A restart: the thread is read back from the store.
    app.terminate();
    app.start().await;
    post_update(&app, incident, "resolved", "Servizio ripristinato.").await;
    approve_next(&app).await;
    let toots = net.mastodon.wait_for(2, WAIT).await;
    assert_eq!(toots[1].in_reply_to_id, Some(first.id));
    let skeets = net.bluesky.wait_for(2, WAIT).await;
    assert_eq!(skeets[1].reply_root, Some(first_skeet.uri));
    // Facebook: a new post on the Page, not a comment.
    let feed = eventually(|| async { net.facebook.feed() }, |f| f.len() == 2).await;
    assert!(
        feed[1].message.contains("Servizio ripristinato"),
        "{feed:?}"
    );
    assert!(net.facebook.comments_on(&feed[0].id).is_empty());
    // A new session after the restart: one login per process, not per post.
    assert_eq!(net.bluesky.sessions_created(), 2);
}

#[tokio::test]
async fn a_long_link_at_the_cut_is_left_out_whole_on_mastodon_bluesky_and_x() {
    let smtp = SmtpServer::start();
    let net = Networks::start().await;
    let app = TestApp::spawn(&smtp, &net.config(MASTODON_TOKEN), &[]).await;
    // Long links between a few words: wherever a network's cut falls, it is most likely inside
    // one. Without a known top-level domain they count in full on every network.
    let link = |i: usize| {
        let path = format!("elenco-sportelli-cup-aperti-{i}-{}", "x".repeat(40));
        format!("https://cup.asl.example/documenti/{path}")
    };
    let body = (0..12)
        .map(|i| format!("Sportelli {i}: {} #SanitàUmbria", link(i)))
        .collect::<Vec<_>>()
        .join(" ");
    let incident = open_incident(&app, "CUP giù", &body).await;
    approve_next(&app).await;

    let toot = net.mastodon.wait_for(1, WAIT).await.remove(0);
    let skeet = net.bluesky.wait_for(1, WAIT).await.remove(0);
    let tweet = net.x.wait_for(1, WAIT).await.remove(0);
    let status = format!("/status/incidents/{incident}");
    for (network, text) in [
        ("mastodon", &toot.text),
        ("bluesky", &skeet.text),
        ("x", &tweet.text),
    ] {
        assert!(text.contains("…"), "{network}: cut: {text}");
        assert_eq!(
            status_path(text),
            status,
            "{network}: the status link is whole and last"
        );
        // Every word with a link or a hashtag is one of the statement's, whole.
        for word in text.split_whitespace() {
            if word.contains("://") && !word.ends_with(&status) {
                assert!(
                    (0..12).any(|i| word == link(i)),
                    "{network}: {word:?} in {text}"
                );
            }
            if word.contains('#') {
                assert_eq!(word, "#SanitàUmbria", "{network}: {text}");
            }
        }
    }
    // Bluesky: a link facet over each whole link, a tag facet (without `#`) over each hashtag.
    let links = skeet.links();
    assert!(links.len() >= 2, "{links:?}");
    for (covered, uri) in &links {
        assert_eq!(covered, uri);
        assert!(
            (0..12).any(|i| *uri == link(i)) || uri.ends_with(&status),
            "{uri}"
        );
    }
    let tags = skeet.tags();
    assert!(!tags.is_empty(), "{:?}", skeet.facets);
    for (covered, tag) in &tags {
        assert_eq!(
            (covered.as_str(), tag.as_str()),
            ("#SanitàUmbria", "SanitàUmbria")
        );
    }
    // Nothing was refused on the way.
    for statuses in [
        net.mastodon
            .requests()
            .iter()
            .map(|r| r.status)
            .collect::<Vec<_>>(),
        net.bluesky.requests().iter().map(|r| r.status).collect(),
        net.x.requests().iter().map(|r| r.status).collect(),
    ] {
        assert!(statuses.iter().all(|s| *s < 400), "{statuses:?}");
    }
}

/// Text made of the pieces links, mentions and their edges are made of, joined at random.
fn link_soup() -> impl Strategy<Value = String> {
    const PIECES: &[&str] = &[
        "https://",
        "http://",
        "HTTPS://",
        "gemini://",
        "www.",
        "asl",
        "regione",
        "umbria",
        ".it",
        ".com",
        ".co",
        ".example",
        ".みんな",
        "città",
        "中文",
        "/",
        "/path",
        "(",
        ")",
        ".",
        ",",
        "!",
        "?",
        "?a=1",
        "=",
        "&",
        "#",
        "#tag",
        "@",
        "@cup",
        "@social.it",
        "t.co/",
        "xn--p1ai",
        ":8080",
        " ",
        "\n",
        "-",
        "_",
        "…",
        "'",
        "\"",
        "%20",
        "~",
        "é",
        "\u{301}",
    ];
    vec(select(PIECES), 0..40).prop_map(|pieces| pieces.concat())
}

proptest! {
    /// The application's count of a post is never shorter than the network's, whichever way
    /// links and mentions are spelled, so a post cut to fit is never refused for its length.
    #[test]
    fn the_application_never_counts_a_post_shorter_than_mastodon_or_x(text in link_soup()) {
        let limits = Limits::default();
        let ours = limits.length(ChannelKind::Mastodon, &text);
        prop_assert!(ours >= mastodon::count_length(&text), "mastodon {ours}: {text:?}");
        let ours = limits.length(ChannelKind::X, &text);
        prop_assert!(ours >= x::weighted_length(&text), "x {ours}: {text:?}");
    }
}
