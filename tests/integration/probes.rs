//! Banditore's own probes against local services that the tests break and repair: thresholds,
//! flapping, canaries, maintenance windows and silences, certificates, and several replicas
//! that must agree.

use std::time::Duration;

use serde_json::{Value, json};

use crate::support::targets::{DnsTarget, HttpTarget, Mode, TcpTarget, TlsTarget};
use crate::support::*;

const DESK: &str = "cup.foligno@asl.example";
const OPS: &str = "sala.operativa@asl.example";

fn people() -> String {
    format!(
        r#"
[[subscribers]]
name = "CUP Foligno"
addresses = {{ email = "{DESK}" }}
subscriptions = [{{ matchers = ['service=~"cup|referti|anagrafe"'] }}]

[[subscribers]]
name = "Sala operativa"
addresses = {{ email = "{OPS}" }}
subscriptions = [{{ matchers = ['service="banditore"'] }}]
"#
    )
}

fn http_probe(name: &str, service: &str, url: &str, extra: &str) -> String {
    format!(
        r#"
[[probes]]
name = "{name}"
service = "{service}"
summary = "Portale {service}"
kind = "http"
url = "{url}"
body_contains = "Prenotazioni aperte"
interval = "200ms"
timeout = "1s"
{extra}
"#
    )
}

async fn incidents(app: &TestApp) -> Vec<Value> {
    app.get_json("/api/v1/incidents", VIEWER_TOKEN).await["incidents"]
        .as_array()
        .unwrap()
        .clone()
}

async fn probe(app: &TestApp, name: &str) -> Value {
    let all = app.get_json("/api/v1/probes", VIEWER_TOKEN).await;
    all["probes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == name)
        .cloned()
        .unwrap_or_else(|| panic!("no probe {name} in {all}"))
}

/// Waits (without blocking the targets running in this test) for `n` mails to `to`.
async fn mails_to(smtp: &SmtpServer, to: &str, n: usize) -> Vec<Mail> {
    eventually(|| async { smtp.mails_to(to) }, |m| m.len() >= n).await
}

#[tokio::test]
async fn a_site_that_fails_opens_an_incident_at_the_threshold_and_resolves_when_it_returns() {
    let smtp = SmtpServer::start();
    let site = HttpTarget::start().await;
    let extra = format!(
        "{}{}",
        people(),
        http_probe("cup-portale", "cup", &site.url(), "failure_threshold = 3")
    );
    let app = TestApp::spawn(&smtp, &extra, &[]).await;
    eventually(|| async { site.requests() }, |n| *n >= 2).await;
    assert_eq!(probe(&app, "cup-portale").await["here"]["state"], "up");

    site.set(Mode::Failing);
    eventually(|| async { site.failures() }, |n| *n >= 2).await;
    // Two failures are not three: nothing is declared yet.
    assert!(incidents(&app).await.is_empty());
    let mails = mails_to(&smtp, DESK, 1).await;
    let failures = site.failures();
    assert!(
        (3..=4).contains(&failures),
        "declared after {failures} failures"
    );
    assert!(
        mails[0].text().contains("Portale cup: HTTP 503"),
        "{}",
        mails[0].text()
    );
    let open = incidents(&app).await;
    assert_eq!(open.len(), 1);
    let p = probe(&app, "cup-portale").await;
    assert_eq!(p["state"], "down", "{p}");
    assert_eq!(p["replicas"][0]["state"], "down", "{p}");
    let metrics = app.get("/metrics", None).await.text().await.unwrap();
    assert!(
        metrics.contains("banditore_probe_up{probe=\"cup-portale\"} 0"),
        "{metrics}"
    );
    assert!(
        metrics.contains("banditore_probe_duration_seconds"),
        "{metrics}"
    );

    site.set(Mode::Up);
    let mails = mails_to(&smtp, DESK, 2).await;
    assert!(
        mails[1].subject().contains("risolto"),
        "{}",
        mails[1].subject()
    );
    assert_eq!(probe(&app, "cup-portale").await["state"], "up");
}

#[tokio::test]
async fn a_closed_port_is_an_outage_and_a_flapping_site_is_not_a_storm() {
    let smtp = SmtpServer::start();
    let site = HttpTarget::start().await;
    let mut port = TcpTarget::start().await;
    let extra = format!(
        "{}{}\n[[probes]]\nname = \"anagrafe-db\"\nservice = \"anagrafe\"\nkind = \"tcp\"\ntarget = \"{}\"\ninterval = \"200ms\"\ntimeout = \"1s\"\n",
        people(),
        http_probe("cup-portale", "cup", &site.url(), ""),
        port.addr
    );
    let app = TestApp::spawn(&smtp, &extra, &[]).await;
    // A site failing every other check never fails twice in a row.
    site.set(Mode::Flapping);
    let start = site.requests();
    eventually(|| async { site.requests() }, |n| *n >= start + 16).await;
    assert!(site.failures() >= 7);
    assert!(
        incidents(&app).await.is_empty(),
        "flapping declared nothing"
    );
    assert!(smtp.mails_to(DESK).is_empty());

    port.close();
    let mails = mails_to(&smtp, DESK, 1).await;
    assert!(
        mails[0].text().contains("anagrafe-db"),
        "{}",
        mails[0].text()
    );
    assert!(
        mails[0].text().contains("impossibile connettersi"),
        "{}",
        mails[0].text()
    );
    port.open().await;
    let mails = mails_to(&smtp, DESK, 2).await;
    assert!(
        mails[1].subject().contains("risolto"),
        "{}",
        mails[1].subject()
    );
    assert_eq!(
        smtp.mails_to(DESK).len(),
        2,
        "one incident, opened and resolved"
    );
}

#[tokio::test]
async fn a_resolver_that_fails_is_an_outage_until_it_answers_again() {
    let smtp = SmtpServer::start();
    let dns = DnsTarget::start("cup.regione.example.", [10, 1, 2, 3].into()).await;
    let extra = format!(
        "{}\n[[probes]]\nname = \"cup-dns\"\nservice = \"cup\"\nkind = \"dns\"\ntarget = \"cup.regione.example.\"\nrecord_type = \"A\"\nexpected = [\"10.1.2.3\"]\nresolver = \"{}\"\ninterval = \"200ms\"\ntimeout = \"500ms\"\n",
        people(),
        dns.addr
    );
    let app = TestApp::spawn(&smtp, &extra, &[]).await;
    let seen = eventually(|| probe(&app, "cup-dns"), |p| p["here"]["last_ok"] == true).await;
    assert!(
        seen["here"]["last_detail"]
            .as_str()
            .unwrap()
            .contains("10.1.2.3"),
        "{seen}"
    );
    dns.set(Mode::Failing);
    let mails = mails_to(&smtp, DESK, 1).await;
    assert!(
        mails[0].text().contains("SERVFAIL") || mails[0].text().contains("Server Failure"),
        "{}",
        mails[0].text()
    );
    dns.set(Mode::Up);
    mails_to(&smtp, DESK, 2).await;
}

#[tokio::test]
async fn when_the_canaries_fail_operators_hear_once_and_no_outage_is_declared() {
    let smtp = SmtpServer::start();
    let site = HttpTarget::start().await;
    let mut canary = TcpTarget::start().await;
    canary.close();
    let extra = format!(
        "{}{}\n[probing]\ncanary_interval = \"200ms\"\ncanaries = [{{ kind = \"tcp\", target = \"{}\", timeout = \"300ms\" }}, {{ kind = \"http\", url = \"http://{}/\", timeout = \"300ms\" }}]\n",
        people(),
        http_probe("cup-portale", "cup", &site.url(), ""),
        canary.addr,
        canary.addr,
    );
    site.set(Mode::Failing);
    let app = TestApp::spawn(&smtp, &extra, &[]).await;
    // Banditore cannot reach its canaries: its operators hear it once.
    let mails = mails_to(&smtp, OPS, 1).await;
    assert!(
        mails[0]
            .text()
            .contains("Banditore cannot reach the network"),
        "{}",
        mails[0].text()
    );
    // The failing site is not declared while the network is in doubt.
    eventually(|| async { site.failures() }, |n| *n >= 10).await;
    assert!(smtp.mails_to(DESK).is_empty(), "no outage declared");
    let all = app.get_json("/api/v1/probes", VIEWER_TOKEN).await;
    assert_eq!(all["network_ok"], false, "{all}");
    assert_eq!(all["probes"][0]["replicas"][0]["state"], "unknown", "{all}");
    assert_eq!(smtp.mails_to(OPS).len(), 1, "told once");

    // The network is back: the self-check resolves and the real outage is declared.
    canary.open().await;
    let mails = mails_to(&smtp, DESK, 1).await;
    assert!(mails[0].text().contains("HTTP 503"), "{}", mails[0].text());
    let ops = mails_to(&smtp, OPS, 2).await;
    assert!(ops[1].subject().contains("risolto"), "{}", ops[1].subject());
}

/// The network alarm a replica raised before a restart ends once the restarted replica reaches
/// the network: its first round of canaries says so whatever it was before.
#[tokio::test]
async fn a_network_alarm_raised_before_a_restart_ends_when_the_network_is_back() {
    let smtp = SmtpServer::start();
    let mut canary = TcpTarget::start().await;
    canary.close();
    let extra = format!(
        "{}\n[probing]\ncanary_interval = \"200ms\"\ncanaries = [{{ kind = \"tcp\", target = \"{}\", timeout = \"300ms\" }}]\n[[probes]]\nname = \"cup-portale\"\nservice = \"cup\"\nkind = \"tcp\"\ntarget = \"{}\"\n",
        people(),
        canary.addr,
        canary.addr,
    );
    let mut app = TestApp::spawn(&smtp, &extra, &[]).await;
    mails_to(&smtp, OPS, 1).await;
    app.kill();
    canary.open().await;
    app.start().await;
    // (The alarm's opening may come twice: killed before its outcome was written, it is sent
    // again under its Message-ID.)
    let resolved = |m: &Vec<Mail>| m.iter().any(|m| m.subject().contains("risolto"));
    eventually(|| async { smtp.mails_to(OPS) }, resolved).await;
}

#[tokio::test]
async fn maintenance_windows_and_silences_keep_everyone_quiet_and_show_on_the_incident() {
    let smtp = SmtpServer::start();
    let cup = HttpTarget::start().await;
    let referti = HttpTarget::start().await;
    let now = jiff::Timestamp::now();
    let extra = format!(
        "{}{}{}\n[[maintenance]]\nname = \"Aggiornamento CUP\"\nmatchers = ['service=\"cup\"']\nstarts_at = \"{}\"\nends_at = \"{}\"\n",
        people(),
        http_probe("cup-portale", "cup", &cup.url(), ""),
        http_probe("referti-portale", "referti", &referti.url(), ""),
        now - jiff::SignedDuration::from_hours(1),
        now + jiff::SignedDuration::from_hours(1),
    );
    let app = TestApp::spawn(&smtp, &extra, &[]).await;

    // A silence needs an end and matchers; each refusal names the field.
    let (status, body) = post(
        &app,
        json!({"matchers": ["service=\"referti\""], "comment": "lavori"}),
    )
    .await;
    assert_eq!(
        (status, body["field"].as_str()),
        (400, Some("ends_at")),
        "{body}"
    );
    let (status, body) = post(
        &app,
        json!({"matchers": [], "duration": "1h", "comment": "x"}),
    )
    .await;
    assert_eq!(
        (status, body["field"].as_str()),
        (400, Some("matchers")),
        "{body}"
    );
    let (status, body) = post(
        &app,
        json!({"matchers": ["service=~\"(\""], "duration": "1h", "comment": "x"}),
    )
    .await;
    assert_eq!(
        (status, body["field"].as_str()),
        (400, Some("matchers[0]")),
        "{body}"
    );
    let resp = app
        .post_json(
            "/api/v1/silences",
            Some(VIEWER_TOKEN),
            &json!({"matchers": ["service=\"referti\""], "duration": "1h", "comment": "x"}),
        )
        .await;
    assert_eq!(resp.status(), 403, "a viewer cannot silence");
    let (status, body) = post(
        &app,
        json!({"matchers": ["service=\"referti\""], "duration": "2h", "comment": "Migrazione del portale referti"}),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    let silence = body["id"].as_i64().unwrap();

    cup.set(Mode::Failing);
    referti.set(Mode::Failing);
    let quiet = eventually(
        || incidents(&app),
        |i| i.len() == 2 && i.iter().all(|i| !i["maintenance"].is_null()),
    )
    .await;
    let windows: Vec<&str> = quiet
        .iter()
        .map(|i| i["maintenance"].as_str().unwrap())
        .collect();
    assert!(windows.contains(&"Aggiornamento CUP"), "{windows:?}");
    assert!(
        windows.contains(&format!("silence {silence}: Migrazione del portale referti").as_str()),
        "{windows:?}"
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(
        smtp.mails_to(DESK).is_empty(),
        "nobody notified in maintenance"
    );
    // Both openings were silenced, and counted once their steps were committed.
    let metrics = app.get("/metrics", None).await.text().await.unwrap();
    let silenced = metrics
        .lines()
        .find_map(|l| l.strip_prefix("banditore_updates_silenced_total "))
        .and_then(|v| v.parse::<f64>().ok());
    assert!(silenced.is_some_and(|n| n >= 2.0), "{silenced:?}");
    let listed = app.get_json("/api/v1/silences", VIEWER_TOKEN).await;
    assert_eq!(listed["silences"][0]["id"], silence);
    assert_eq!(listed["maintenance"][0]["open"], true);

    // The silence ends: the next update of the outage is sent.
    let resp = app
        .http
        .delete(app.url(&format!("/api/v1/silences/{silence}")))
        .bearer_auth(OPERATOR_TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 204);
    referti.set(Mode::Up);
    let mails = mails_to(&smtp, DESK, 1).await;
    assert!(mails[0].text().contains("referti"), "{}", mails[0].text());
}

async fn post(app: &TestApp, body: Value) -> (u16, Value) {
    let resp = app
        .post_json("/api/v1/silences", Some(OPERATOR_TOKEN), &body)
        .await;
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

#[tokio::test]
async fn a_certificate_close_to_expiry_raises_a_warning() {
    let smtp = SmtpServer::start();
    let dir = tempfile::tempdir().unwrap();
    let ca = dir.path().join("ca.pem");
    let tls = TlsTarget::start(5, &ca).await;
    let extra = format!(
        "{}\n[[probes]]\nname = \"cup-https\"\nservice = \"cup\"\nkind = \"tls\"\ntarget = \"{}\"\nca_file = \"{}\"\nwarn_days = 14\ninterval = \"200ms\"\ntimeout = \"1s\"\n",
        people(),
        tls.target(),
        ca.display()
    );
    let app = TestApp::spawn(&smtp, &extra, &[]).await;
    let mails = mails_to(&smtp, DESK, 1).await;
    let text = mails[0].text();
    assert!(text.contains("scade tra 5 giorni"), "{text}");
    let incident = &incidents(&app).await[0];
    assert_eq!(incident["severity"], "warning", "{incident}");
    let p = probe(&app, "cup-https").await;
    assert_eq!(p["state"], "up", "the handshake works: {p}");
    assert_eq!(p["certificate"]["state"], "down", "{p}");
    assert_eq!(p["here"]["cert_days_left"], 5, "{p}");
}

#[tokio::test]
async fn with_three_replicas_and_quorum_two_one_replica_seeing_an_outage_declares_nothing_nor_its_end()
 {
    let Some(db) = fresh_database().await else {
        return;
    };
    let smtp = SmtpServer::start();
    let mut sites = Vec::new();
    let mut apps = Vec::new();
    for i in 0..3 {
        // Each replica watches the service from its own site: here, its own copy of it.
        let site = HttpTarget::start().await;
        let extra = format!(
            "{}{}\n[probing]\nquorum = 2\n",
            people(),
            http_probe("cup-portale", "cup", &site.url(), "")
        );
        let name = format!("replica-{i}");
        let env = [
            ("BANDITORE__STORE__URL", db.url.as_str()),
            ("BANDITORE__STORE__REPLICAS", "3"),
            ("BANDITORE__CLUSTER__INSTANCE", name.as_str()),
            ("BANDITORE__CLUSTER__LEADER_LEASE", "3s"),
        ];
        apps.push(TestApp::spawn(&smtp, &extra, &env).await);
        sites.push(site);
    }
    let replicas = |p: &Value| p["replicas"].as_array().map_or(0, Vec::len);
    eventually(|| probe(&apps[0], "cup-portale"), |p| replicas(p) == 3).await;

    sites[0].set(Mode::Failing);
    let seen = eventually(
        || probe(&apps[1], "cup-portale"),
        |p| {
            p["replicas"]
                .as_array()
                .unwrap()
                .iter()
                .any(|o| o["state"] == "down")
        },
    )
    .await;
    // Well past the threshold on replica-0: still one replica of the two needed.
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(incidents(&apps[0]).await.is_empty(), "{seen}");
    assert!(smtp.mails_to(DESK).is_empty());

    sites[1].set(Mode::Failing);
    let mails = mails_to(&smtp, DESK, 1).await;
    assert!(mails[0].text().contains("HTTP 503"), "{}", mails[0].text());
    assert_eq!(incidents(&apps[2]).await.len(), 1);
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(smtp.mails_to(DESK).len(), 1, "declared once, by the leader");

    // All three see it down; then two replicas go (the same outage may cut them off). The one
    // left still sees the service down, one view of the two needed: the verdict stands, and
    // nobody is told it is over.
    sites[2].set(Mode::Failing);
    let downs = |p: &Value| {
        p["replicas"]
            .as_array()
            .map_or(0, |r| r.iter().filter(|o| o["state"] == "down").count())
    };
    eventually(|| probe(&apps[0], "cup-portale"), |p| downs(p) == 3).await;
    apps.truncate(1);
    let stale = Duration::from_secs(5) + Duration::from_secs(3);
    tokio::time::sleep(stale + Duration::from_secs(2)).await;
    // One message, the opening (sent again under its Message-ID if a replica went before
    // writing its outcome): no resolution, and no new opening.
    let mails = smtp.mails_to(DESK);
    let ids: std::collections::BTreeSet<_> = mails.iter().map(|m| m.header("Message-ID")).collect();
    let subjects: Vec<String> = mails.iter().map(Mail::subject).collect();
    assert_eq!(ids.len(), 1, "{subjects:?}");
    let open = incidents(&apps[0]).await;
    assert_ne!(open[0]["status"], "resolved", "{open:?}");
}

/// A probe removed from the configuration during its outage: the next start ends the outage,
/// which nothing else would (the probe is no longer checked).
#[tokio::test]
async fn a_probe_removed_during_its_outage_has_the_outage_ended_at_the_next_start() {
    let store = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", store.path().join("b.db").display());
    let env = [("BANDITORE__STORE__URL", url.as_str())];
    let smtp = SmtpServer::start();
    let site = HttpTarget::start().await;
    let extra = format!(
        "{}{}",
        people(),
        http_probe("cup-portale", "cup", &site.url(), "")
    );
    let mut app = TestApp::spawn(&smtp, &extra, &env).await;
    site.set(Mode::Failing);
    mails_to(&smtp, DESK, 1).await;
    app.kill();
    let app = TestApp::spawn(&smtp, &people(), &env).await;
    let resolved = |m: &Vec<Mail>| m.iter().any(|m| m.subject().contains("risolto"));
    eventually(|| async { smtp.mails_to(DESK) }, resolved).await;
    let all = incidents(&app).await;
    assert_eq!(all[0]["status"], "resolved", "{all:?}");
}

/// A restart during an outage: the first failures after it, still under `failure_threshold`,
/// are no view at all, so the stored verdict stands and nobody hears "resolved" then "opened".
#[tokio::test]
async fn a_restart_during_an_outage_tells_nobody_it_is_over() {
    let smtp = SmtpServer::start();
    let site = HttpTarget::start().await;
    let extra = format!(
        "{}{}",
        people(),
        http_probe("cup-portale", "cup", &site.url(), "failure_threshold = 3")
    );
    let mut app = TestApp::spawn(&smtp, &extra, &[]).await;
    site.set(Mode::Failing);
    mails_to(&smtp, DESK, 1).await;
    app.kill();
    // Down long enough (a reboot) for the previous process's view to be stale (5 s).
    tokio::time::sleep(Duration::from_secs(6)).await;
    let before = site.failures();
    app.start().await;
    // Past the threshold again, and long enough for any message the judgement made to arrive.
    eventually(|| async { site.failures() }, |n| *n >= before + 6).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    // One message: the opening, perhaps twice (killed before its outcome was written, it is
    // sent again under its Message-ID, as the outbox promises for what was in flight).
    let mails = smtp.mails_to(DESK);
    let ids: std::collections::BTreeSet<_> = mails.iter().map(|m| m.header("Message-ID")).collect();
    let subjects: Vec<String> = mails.iter().map(Mail::subject).collect();
    assert_eq!(ids.len(), 1, "{subjects:?}");
    assert_ne!(incidents(&app).await[0]["status"], "resolved");
}

#[tokio::test]
async fn each_desk_reads_the_probes_verdict_in_its_own_language() {
    const ENGLISH_DESK: &str = "cup.desk.en@asl.example";
    let smtp = SmtpServer::start();
    let site = HttpTarget::start().await;
    let extra = format!(
        "{}\n[[subscribers]]\nname = \"CUP desk (English)\"\nlanguage = \"en\"\naddresses = {{ email = \"{ENGLISH_DESK}\" }}\nsubscriptions = [{{ matchers = ['service=\"cup\"'] }}]\n{}",
        people(),
        http_probe("cup-portale", "cup", &site.url(), "failure_threshold = 2")
    );
    let _app = TestApp::spawn(&smtp, &extra, &[]).await;
    site.set(Mode::Failing);
    let it = &mails_to(&smtp, DESK, 1).await[0];
    let en = &mails_to(&smtp, ENGLISH_DESK, 1).await[0];
    // The verdict is words of the desk's templates, around what the probe saw.
    assert!(
        it.text().contains("Portale cup: HTTP 503 (atteso 2xx)"),
        "{}",
        it.text()
    );
    assert!(
        en.text().contains("Portale cup: HTTP 503 (expected 2xx)"),
        "{}",
        en.text()
    );
    for english in ["expected", "HTTP 503"] {
        assert!(!it.subject().contains(english), "{}", it.subject());
    }
    assert!(!it.text().contains("expected"), "{}", it.text());
}

/// A probe checked every 5 s whose first failure is re-checked after 300 ms.
fn rechecked_probe(site: &HttpTarget) -> String {
    format!(
        "{}{}",
        people(),
        http_probe(
            "cup-portale",
            "cup",
            &site.url(),
            "interval = \"5s\"\nrecheck_interval = \"300ms\"\nfailure_threshold = 2"
        )
        .replace("interval = \"200ms\"\n", "")
    )
}

#[tokio::test]
async fn a_failed_check_is_repeated_at_once_and_the_desk_is_told_within_seconds() {
    let smtp = SmtpServer::start();
    let site = HttpTarget::start().await;
    let app = TestApp::spawn(&smtp, &rechecked_probe(&site), &[]).await;
    eventually(|| async { site.requests() }, |n| *n >= 1).await;
    site.set(Mode::Failing);
    eventually(|| async { site.failures() }, |n| *n >= 1).await;
    let first_failure = std::time::Instant::now();
    let mails = mails_to(&smtp, DESK, 1).await;
    let took = first_failure.elapsed();
    // The second failure came a recheck after the first, not an interval (5 s) after it.
    assert!(
        took < Duration::from_secs(3),
        "told {took:?} after the first failure"
    );
    assert_eq!(site.failures(), 2, "declared at the second failure");
    assert!(mails[0].text().contains("HTTP 503"), "{}", mails[0].text());
    assert_eq!(probe(&app, "cup-portale").await["state"], "down");
    eprintln!("desk told {took:?} after the first failed check");
}

#[tokio::test]
async fn one_lost_check_followed_by_a_good_one_opens_nothing() {
    let smtp = SmtpServer::start();
    let site = HttpTarget::start().await;
    let app = TestApp::spawn(&smtp, &rechecked_probe(&site), &[]).await;
    eventually(|| async { site.requests() }, |n| *n >= 1).await;
    site.set(Mode::FailingOnce);
    eventually(|| async { site.failures() }, |n| *n == 1).await;
    let lost = std::time::Instant::now();
    let after = site.requests();
    // Looked again at once (the recheck, 300 ms), and found the site up.
    eventually(|| async { site.requests() }, |n| *n > after).await;
    let looked_again = lost.elapsed();
    assert!(
        looked_again < Duration::from_secs(2),
        "looked again {looked_again:?} after the lost check"
    );
    let here = eventually(
        || probe(&app, "cup-portale"),
        |p| p["here"]["failures_in_a_row"] == 0 && p["here"]["successes_in_a_row"] == 1,
    )
    .await;
    assert_eq!(here["here"]["state"], "up", "{here}");
    // Past the recheck, and past the next regular check too: nothing was declared.
    eventually(|| async { site.requests() }, |n| *n > after + 1).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(site.failures(), 1);
    assert!(incidents(&app).await.is_empty());
    assert!(smtp.mails_to(DESK).is_empty());
    assert_eq!(probe(&app, "cup-portale").await["state"], "up");
}

#[tokio::test]
async fn with_two_replicas_one_seeing_a_failure_makes_the_other_look_at_once() {
    let Some(db) = fresh_database().await else {
        return;
    };
    let smtp = SmtpServer::start();
    let mut sites = Vec::new();
    let mut apps = Vec::new();
    for i in 0..2 {
        // Each replica watches its own copy of the service: the test sees who looked when.
        let site = HttpTarget::start().await;
        let extra = format!(
            "{}{}\n[probing]\nquorum = 2\nrecheck_interval = \"300ms\"\n",
            people(),
            http_probe("cup-portale", "cup", &site.url(), "failure_threshold = 2")
                .replace("interval = \"200ms\"", "interval = \"8s\"")
        );
        let name = format!("replica-{i}");
        let env = [
            ("BANDITORE__STORE__URL", db.url.as_str()),
            ("BANDITORE__STORE__REPLICAS", "2"),
            ("BANDITORE__CLUSTER__INSTANCE", name.as_str()),
        ];
        apps.push(TestApp::spawn(&smtp, &extra, &env).await);
        sites.push(site);
    }
    for site in &sites {
        eventually(|| async { site.requests() }, |n| *n >= 1).await;
    }
    // Each found the other, and takes its half of the interval.
    for app in &apps {
        eventually(
            || async { app.logs() },
            |l| l.contains("replicas probing changed") && l.contains("\"of\":2"),
        )
        .await;
    }
    for site in &sites {
        site.set(Mode::Failing);
    }
    let first = eventually(
        || async { sites.iter().position(|s| s.failures() >= 1) },
        Option::is_some,
    )
    .await
    .unwrap_or_default();
    let seen = std::time::Instant::now();
    let other = &sites[1 - first];
    // The other replica's own turn may be up to 8 s away: it was called to look now.
    eventually(|| async { other.failures() }, |n| *n >= 1).await;
    let confirmed = seen.elapsed();
    assert!(
        confirmed < Duration::from_millis(1500),
        "replica-{} looked {confirmed:?} after replica-{first} saw the failure",
        1 - first
    );
    let mails = mails_to(&smtp, DESK, 1).await;
    let told = seen.elapsed();
    assert!(
        told < Duration::from_secs(4),
        "quorum of 2 told the desk after {told:?}"
    );
    assert!(mails[0].text().contains("HTTP 503"), "{}", mails[0].text());
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(smtp.mails_to(DESK).len(), 1, "declared once");
    eprintln!(
        "other replica looked {confirmed:?} later; desk told {told:?} after the first failure"
    );
}
