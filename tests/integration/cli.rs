//! The command line: check-config, migrate, version, and what the service says about itself.

use std::process::Command;

use crate::support::*;

pub(crate) fn banditore(
    dir: &std::path::Path,
    args: &[&str],
    env: &[(&str, &str)],
) -> (i32, String, String) {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_banditore"));
    cmd.args(args).current_dir(dir);
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().expect("run banditore");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn defaults_pass_check_config_with_a_warning() {
    let dir = tempfile::tempdir().unwrap();
    let (code, out, err) = banditore(dir.path(), &["check-config"], &[]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("configuration OK"));
    assert!(err.contains("no tokens configured"));
}

#[test]
fn check_config_reports_every_problem_with_its_key_path() {
    let dir = tempfile::tempdir().unwrap();
    let templates = dir.path().join("tpl/email/it");
    std::fs::create_dir_all(&templates).unwrap();
    std::fs::write(templates.join("subject.j2"), "{{ incident.titolo }}").unwrap();
    let config = dir.path().join("bad.toml");
    std::fs::write(
        &config,
        format!(
            r#"
[server]
listen = "localhost:http"
public_url = "not a url"
time_zone = "Europe/Atlantis"

[store]
url = "sqlite://data/b.db"
replicas = 2

[routing]
group_wait = "presto"
gruop_by = ["service"]

[templates]
dir = "{tpl}"

[channels.email]
from = "not a mailbox"
username = "banditore"

[channels.telegram]
enabled = true
token = "not-a-bot-token"
mode = "webhook"
public_channel = "@x"

[channels.sms]
enabled = true
default_region = "Atlantide"

[[channels.sms.providers]]
name = "twilio"
kind = "twilio"
sender = "a sender far too long"

[[channels.sms.providers]]
name = "twilio"
kind = "skebby"
username = "regione"
password = "skebby-secret-value"
message_type = "XX"

[channels.mastodon]
enabled = true
base_url = "mastodon.example"
visibility = "friends"

[channels.bluesky]
enabled = true
password = "bluesky-app-password"

[channels.x]
enabled = true
consumer_key = "key"
consumer_secret = "x-consumer-secret-value"

[channels.facebook]
enabled = true
page_id = "regione-umbria"
api_version = "23"
page_token = "fb-page-token-value"

[approval.audiences.public]
policy = "auto"

[status.subscribe]
channels = ["email", "x"]
code_attempts = 0
link_ttl = "10s"

[probing]
quorum = 3
recheck_interval = "2h"

[[probes]]
name = "cup"
kind = "http"
url = "cup.regione.example"
body_regex = "("
interval = "10s"
recheck_interval = "30s"

[[probes]]
name = "cup"
service = "cup"
kind = "dns"
target = "cup.regione.example"
record_type = "SRVX"
resolver = "9.9.9.9"

[[maintenance]]
name = "Backup"
every = "weekly"
at = "02:00"
duration = "2h"
public = {{ note = " ", services = ["anagrafe"] }}

[[auth.tokens]]
name = "am"
token = "short"
roles = ["ingest"]

[[subscribers]]
name = "CUP Foligno"
addresses = {{ email = "not-an-address" }}
subscriptions = [{{ matchers = ['service=~"cup('] }}]
"#,
            tpl = dir.path().join("tpl").display()
        ),
    )
    .unwrap();
    let (code, out, err) = banditore(
        dir.path(),
        &["--config", config.to_str().unwrap(), "check-config"],
        &[],
    );
    assert_eq!(code, 2, "{out}{err}");
    for path in [
        "server.listen",
        "server.public_url",
        "server.time_zone",
        "store.replicas",
        "routing.group_wait",
        "routing.gruop_by",
        "channels.email.from",
        "channels.email.password",
        "channels.telegram.token",
        "channels.telegram.secret_token",
        "channels.telegram.public_channel",
        "channels.sms.default_region",
        "channels.sms.providers[0].username",
        "channels.sms.providers[0].password",
        "channels.sms.providers[0].sender",
        "channels.sms.providers[1].name",
        "channels.sms.providers[1].message_type",
        "probing.quorum",
        "probing.recheck_interval",
        "probes[0].service",
        "probes[0].recheck_interval",
        "probes[0].url",
        "probes[0].body_regex",
        "probes[1].name",
        "probes[1].record_type",
        "probes[1].resolver",
        "maintenance[0].days",
        "maintenance[0].public.note",
        "maintenance[0].public.services",
        "channels.mastodon.enabled",
        "channels.mastodon.base_url",
        "channels.mastodon.token",
        "channels.mastodon.visibility",
        "channels.bluesky.identifier",
        "channels.x.access_token",
        "channels.x.access_token_secret",
        "channels.facebook.page_id",
        "channels.facebook.api_version",
        "auth.tokens[0].token",
        "subscribers[0]",
        "templates",
        "status.subscribe.channels[1]",
        "status.subscribe.code_attempts",
        "status.subscribe.link_ttl",
    ] {
        assert!(err.contains(&path.to_string()), "missing {path} in:\n{err}");
    }
    assert!(err.contains("email/it/subject.j2"), "{err}");
    assert!(err.contains("SQLite allows one"), "{err}");
    assert!(
        err.contains("list them in [[status.services]]")
            && err.contains("citizens hear public statements"),
        "{err}"
    );
    assert!(
        !err.contains("short\"")
            && !err.contains("not-a-bot-token")
            && !err.contains("skebby-secret-value")
            && !err.contains("bluesky-app-password")
            && !err.contains("x-consumer-secret-value")
            && !err.contains("fb-page-token-value"),
        "the token value must not be printed:\n{err}"
    );
}

#[test]
fn names_and_titles_on_two_lines_are_refused_with_their_key_paths() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("c.toml");
    std::fs::write(
        &config,
        r#"
[[subscribers]]
name = "CUP Foligno"
addresses = { email = "cup.foligno@asl.example" }

[[subscribers]]
name = "Evil\r\nBcc: x@y"
addresses = { email = "evil@asl.example" }

[[status.services]]
id = "cup"
name = "Prenotazioni\nCUP"
matchers = ['service="cup"']

[[probes]]
name = "cup\tweb"
service = "cup"
kind = "http"
url = "https://cup.asl.example/"
"#,
    )
    .unwrap();
    let (code, out, err) = banditore(
        dir.path(),
        &["--config", config.to_str().unwrap(), "check-config"],
        &[],
    );
    assert_eq!(code, 2, "{out}{err}");
    for problem in [
        "subscribers[1].name: contains a line break (U+000D) at character 5",
        "status.services[0].name: contains a line break (U+000A) at character 13",
        "probes[0].name: contains a control character (U+0009) at character 4",
    ] {
        assert!(err.contains(problem), "missing `{problem}` in:\n{err}");
    }
    assert!(err.contains("3 problem(s)"), "{err}");
    assert!(!err.contains("Bcc"), "the name is not printed:\n{err}");
}

#[test]
fn a_missing_sms_password_file_is_reported_once() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("c.toml");
    let missing = dir.path().join("skebby-password");
    std::fs::write(
        &config,
        format!(
            r#"
[channels.sms]
enabled = true

[[channels.sms.providers]]
name = "skebby"
kind = "skebby"
username = "regione"
password_file = "{}"
sender = "Regione"
"#,
            missing.display()
        ),
    )
    .unwrap();
    let (code, out, err) = banditore(
        dir.path(),
        &["--config", config.to_str().unwrap(), "check-config"],
        &[],
    );
    assert_eq!(code, 2, "{out}{err}");
    let said: Vec<&str> = err
        .lines()
        .filter(|l| l.contains("channels.sms.providers[0]"))
        .collect();
    assert_eq!(said.len(), 1, "{err}");
    assert!(
        said[0].contains(&format!(
            "channels.sms.providers[0].password: cannot read `password_file` {}",
            missing.display()
        )),
        "{err}"
    );
}

#[test]
fn a_generic_sms_url_that_encodes_its_values_twice_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("c.toml");
    std::fs::write(
        &config,
        r#"
[channels.sms]
enabled = true

[[channels.sms.providers]]
name = "gateway"
kind = "generic"
url = "https://sms.example/send?to={{ to_digits }}&text={{ text | urlencode }}"
"#,
    )
    .unwrap();
    let (code, out, err) = banditore(
        dir.path(),
        &["--config", config.to_str().unwrap(), "check-config"],
        &[],
    );
    assert_eq!(code, 2, "{out}{err}");
    assert!(
        err.contains("channels.sms.providers[0].url: drop `| urlencode`"),
        "{err}"
    );
}

#[test]
fn environment_overrides_the_file_and_secrets_come_from_files() {
    let dir = tempfile::tempdir().unwrap();
    let secret = dir.path().join("token");
    std::fs::write(&secret, "a-token-read-from-a-file-0001\n").unwrap();
    let config = dir.path().join("c.toml");
    std::fs::write(
        &config,
        format!("[[auth.tokens]]\nname = \"am\"\ntoken_file = \"{}\"\nroles = [\"ingest\"]\n[server]\nlisten = \"nonsense\"\n", secret.display()),
    )
    .unwrap();
    let (code, _, err) = banditore(
        dir.path(),
        &["--config", config.to_str().unwrap(), "check-config"],
        &[],
    );
    assert_eq!(code, 2);
    assert!(err.contains("server.listen"));
    let (code, out, err) = banditore(
        dir.path(),
        &["--config", config.to_str().unwrap(), "check-config"],
        &[("BANDITORE__SERVER__LISTEN", "127.0.0.1:9999")],
    );
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("1 token(s)"));
    assert!(!out.contains("a-token-read-from-a-file") && !err.contains("a-token-read-from-a-file"));
}

#[test]
fn migrate_and_version() {
    let dir = tempfile::tempdir().unwrap();
    let (code, out, err) = banditore(dir.path(), &["migrate"], &[]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("migrations applied"));
    assert!(
        dir.path().join("data/banditore.db").exists(),
        "the default store file and folder are created"
    );
    let (code, out, _) = banditore(dir.path(), &["version"], &[]);
    assert_eq!(code, 0);
    assert!(out.starts_with("banditore "));
}

#[tokio::test]
async fn a_second_process_on_the_same_sqlite_file_is_refused() {
    let smtp = SmtpServer::start();
    let app = TestApp::spawn(&smtp, "", &[]).await;
    let (code, _, err) = banditore(
        app.dir.path(),
        &["--config", app.config.to_str().unwrap(), "migrate"],
        &[],
    );
    assert_ne!(code, 0);
    assert!(err.contains("in use by another Banditore process"), "{err}");
}

#[tokio::test]
async fn health_readiness_and_metrics() {
    let smtp = SmtpServer::start();
    let app = TestApp::spawn(&smtp, "", &[]).await;
    assert_eq!(app.get("/healthz", None).await.status(), 200);
    assert_eq!(app.get("/readyz", None).await.status(), 200);
    app.subscribe(serde_json::json!({"name": "x", "addresses": {"email": "x@asl.example"}, "subscriptions": [{}]})).await;
    let body = alertmanager("firing", "CupDown", &[("service", "cup")], "CUP giù");
    assert_eq!(
        app.post_json("/api/v1/signals/alertmanager", Some(INGEST_TOKEN), &body)
            .await
            .status(),
        202
    );
    assert_eq!(
        app.post_json(
            "/api/v1/signals/alertmanager",
            Some("bad-token-bad-token"),
            &body
        )
        .await
        .status(),
        401
    );
    smtp.wait_for("x@asl.example", 1, std::time::Duration::from_secs(10));
    let metrics = eventually(
        || async { app.get("/metrics", None).await.text().await.unwrap() },
        |m| m.contains("banditore_deliveries{channel=\"email\",state=\"sent\"} 1"),
    )
    .await;
    for line in [
        "banditore_signals_received_total{source=\"alertmanager\",outcome=\"accepted\"} 1",
        "banditore_signals_received_total{source=\"alertmanager\",outcome=\"unauthorized\"} 1",
        "banditore_incidents_open 1",
        "banditore_signal_to_sent_seconds_bucket{channel=\"email\",le=\"1\"} 1",
        "banditore_deliveries_total{channel=\"email\",outcome=\"sent\"} 1",
        "banditore_deliveries{channel=\"email\",state=\"pending\"} 0",
    ] {
        assert!(metrics.contains(line), "missing `{line}` in:\n{metrics}");
    }
}

/// The gauges the alerting rules (`monitoring/`) read: with the mail server unreachable, the
/// outbox's backlog ages while the signal behind it is processed at once, and the only process
/// on SQLite leads.
#[tokio::test]
async fn metrics_tell_the_backlogs_age_and_who_leads() {
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    // Retried every second at most, the delivery is not failed for the test's length.
    let app = TestApp::spawn_on(closed, "", &[("BANDITORE__OUTBOX__MAX_ATTEMPTS", "100")]).await;
    app.subscribe(serde_json::json!({"name": "x", "addresses": {"email": "x@asl.example"}, "subscriptions": [{}]})).await;
    let scrape = || async { app.get("/metrics", None).await.text().await.unwrap() };
    let value = |metrics: &str, series: &str| {
        metrics.lines().find_map(|l| {
            l.strip_prefix(series)?
                .strip_prefix(' ')?
                .parse::<f64>()
                .ok()
        })
    };
    let idle = scrape().await;
    assert_eq!(value(&idle, "banditore_leader"), Some(1.0), "{idle}");
    for channel in ["email", "sms", "telegram"] {
        let series = format!("banditore_outbox_oldest_unsent_seconds{{channel=\"{channel}\"}}");
        assert_eq!(value(&idle, &series), Some(0.0), "{idle}");
    }
    let body = alertmanager("firing", "CupDown", &[("service", "cup")], "CUP giù");
    let resp = app
        .post_json("/api/v1/signals/alertmanager", Some(INGEST_TOKEN), &body)
        .await;
    assert_eq!(resp.status(), 202);
    let email = "banditore_outbox_oldest_unsent_seconds{channel=\"email\"}";
    let stuck = eventually(scrape, |m| value(m, email).is_some_and(|age| age >= 2.0)).await;
    assert_eq!(
        value(&stuck, "banditore_signals_oldest_unprocessed_seconds"),
        Some(0.0),
        "{stuck}"
    );
    assert_eq!(value(&stuck, "banditore_signals_unprocessed"), Some(0.0));
    let pending = value(
        &stuck,
        "banditore_deliveries{channel=\"email\",state=\"pending\"}",
    );
    let sending = value(
        &stuck,
        "banditore_deliveries{channel=\"email\",state=\"sending\"}",
    );
    assert_eq!(
        pending.unwrap_or(0.0) + sending.unwrap_or(0.0),
        1.0,
        "{stuck}"
    );
    // The age is the time waited, not a count: it keeps growing while nothing goes out.
    tokio::time::sleep(std::time::Duration::from_secs(1)).await;
    let later = scrape().await;
    assert!(value(&later, email) > value(&stuck, email), "{later}");
}

/// The configuration files shipped in `config/` check out as their headers say, from the
/// repository's root and with nothing else given: the example deployment with the fake secrets
/// of `config/example-secrets/` (which `serve` refuses), and the tour, whose tokens the first start makes.
#[test]
fn shipped_example_configurations_are_valid() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    // Nothing from the developer's environment may make the file pass.
    let clean = |args: &[&str], env: &[(&str, &str)]| {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_banditore"));
        cmd.args(args).current_dir(root);
        for (k, _) in std::env::vars() {
            if k.starts_with("BANDITORE") || k == "RUST_LOG" {
                cmd.env_remove(k);
            }
        }
        cmd.envs(env.iter().copied());
        let out = cmd.output().expect("run banditore");
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let header = std::fs::read_to_string(root.join("config/example.toml")).unwrap();
    assert!(
        header.contains("#   banditore check-config --config config/example.toml\n"),
        "the header no longer gives the command this test runs"
    );
    let (code, out, err) = clean(&["check-config", "--config", "config/example.toml"], &[]);
    assert_eq!(code, 0, "{out}{err}");
    // Five declared, the public Telegram channel, the four social accounts and the status page.
    assert!(out.contains("11 subscriber(s) from config"), "{out}");
    assert!(out.contains("4 token(s)"), "{out}");
    // Every secret of the example is one of the fake files, and each is named as such.
    let secrets = std::fs::read_dir(root.join("config/example-secrets")).unwrap();
    for file in secrets {
        let name = file.unwrap().file_name().into_string().unwrap();
        assert!(
            err.contains(&format!(
                "config/example-secrets/{name} holds an example value"
            )),
            "{name} is not warned about:\n{err}"
        );
    }

    // Started on them, the service would answer to an admin token anyone can read here.
    let (code, out, err) = clean(&["serve", "--config", "config/example.toml"], &[]);
    assert_eq!(code, 2, "{out}{err}");
    assert!(
        err.contains("auth.tokens[3].token_file: config/example-secrets/banditore-admin"),
        "{err}"
    );

    let (code, out, err) = clean(&["check-config", "--config", "config/tour.toml"], &[]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("0 token(s), 1 subscriber(s)"), "{out}");
}

/// `banditore user …` with `password` on standard input.
fn user_command(dir: &std::path::Path, args: &[&str], password: &str) -> (i32, String) {
    use std::io::Write;
    let mut child = Command::new(env!("CARGO_BIN_EXE_banditore"))
        .arg("user")
        .args(args)
        .current_dir(dir)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("run banditore");
    if let Some(mut stdin) = child.stdin.take() {
        let _ = writeln!(stdin, "{password}");
    }
    let out = child.wait_with_output().expect("banditore ends");
    (
        out.status.code().unwrap_or(-1),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

#[test]
fn easy_passwords_and_names_that_pass_for_others_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    for weak in ["            ", "aaaaaaaaaaaa", "password1234"] {
        let (code, out) = user_command(
            dir.path(),
            &["add", "m.rossi", "--role", "communicator"],
            weak,
        );
        assert_ne!(code, 0, "{weak:?} was taken: {out}");
        assert!(out.contains("too easy to guess"), "{out}");
    }
    let good = "una password lunga abbastanza";
    let (code, out) = user_command(
        dir.path(),
        &["add", "m.rossi", "--role", "communicator"],
        good,
    );
    assert_eq!(code, 0, "{out}");
    // The same name in other letters or another case would pass for it.
    for lookalike in ["M.Rossi", "m.r\u{43e}ssi"] {
        let (code, out) = user_command(dir.path(), &["add", lookalike, "--role", "admin"], good);
        assert_ne!(code, 0, "{lookalike} was taken: {out}");
    }
    let (code, out) = user_command(
        dir.path(),
        &["set", "m.rossi", "--role", "admin"],
        "aaaaaaaaaaaa",
    );
    assert_ne!(code, 0, "{out}");
}

#[test]
fn connection_limits_are_checked_and_unstamped_signatures_warn_of_replays() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("c.toml");
    let write = |server: &str, hmac: &str| {
        std::fs::write(
            &config,
            format!(
                "[server]\n{server}\n\n[[auth.hmac]]\nname = \"grafana\"\n\
                 secret = \"grafana-hmac-secret\"\n{hmac}\n"
            ),
        )
        .unwrap();
    };
    let check = || {
        banditore(
            dir.path(),
            &["--config", config.to_str().unwrap(), "check-config"],
            &[],
        )
    };
    write("max_connections = 0\nheader_read_timeout = \"0s\"", "");
    let (code, out, err) = check();
    assert_eq!(code, 2, "{out}{err}");
    assert!(
        err.contains("server.max_connections: must be between 1 and"),
        "{err}"
    );
    assert!(
        err.contains("server.header_read_timeout: must be between 1s and"),
        "{err}"
    );
    // A signature without a signed time proves the body, not when it was sent.
    write("", "");
    let (code, out, err) = check();
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        err.contains("warning: auth.hmac[0].timestamp_header: not set") && err.contains("replayed"),
        "{err}"
    );
    write(
        "",
        "timestamp_header = \"X-Grafana-Alerting-Signature-Timestamp\"",
    );
    let (code, out, err) = check();
    assert_eq!(code, 0, "{out}{err}");
    assert!(!err.contains("replayed"), "{err}");
}

/// An administrator's command run as another user than the store's owner is refused before it
/// touches anything: the files it would create (the store, its journal, the lock) would be that
/// user's, and the service could no longer write its own store.
#[test]
fn commands_on_a_store_owned_by_someone_else_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    // SAFETY: geteuid has no preconditions.
    let me = unsafe { libc::geteuid() };
    // Not root: a store in a folder root owns. Root: a folder given to another user.
    let folder = if me == 0 {
        let folder = dir.path().join("theirs");
        std::fs::create_dir(&folder).unwrap();
        std::os::unix::fs::chown(&folder, Some(65534), Some(65534)).unwrap();
        folder
    } else {
        std::path::PathBuf::from("/")
    };
    let db = folder.join("banditore-owner-test.db");
    let url = format!("sqlite://{}", db.display());
    let (code, out, err) = banditore(
        dir.path(),
        &["token", "list"],
        &[("BANDITORE__STORE__URL", &url)],
    );
    assert_eq!(code, 1, "{out}{err}");
    assert!(
        err.contains("run the command as the store's owner"),
        "{err}"
    );
    assert!(!db.exists(), "nothing was created");
}
