//! Who may use Banditore, managed while it runs: the first start's tokens, `banditore token` and
//! `banditore user` beside a running service, the admin API and console pages for tokens and
//! users, their refusals and their audit rows.

use std::io::{BufRead, BufReader, Read};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex, mpsc};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::support::*;

const PASSWORD: &str = "una password lunga abbastanza";

/// The binary started on a configuration without any token, its standard output kept.
struct Bare {
    child: Child,
    base: String,
    stdout: Arc<Mutex<String>>,
}

impl Bare {
    fn start(dir: &std::path::Path, smtp_port: u16) -> Bare {
        Bare::start_with(dir, smtp_port, &[], None)
    }

    /// Started with `env` set; with `journal`, standard output goes to that file, named in
    /// `JOURNAL_STREAM` as systemd names the journal's stream.
    fn start_with(
        dir: &std::path::Path,
        smtp_port: u16,
        env: &[(&str, &str)],
        journal: Option<&std::path::Path>,
    ) -> Bare {
        let config = dir.join("bare.toml");
        std::fs::write(
            &config,
            format!(
                "[server]\nlisten = \"127.0.0.1:0\"\npublic_url = \"https://banditore.asl.example\"\n\
                 [store]\nurl = \"sqlite://{}\"\n[channels.email]\nhost = \"127.0.0.1\"\n\
                 port = {smtp_port}\nfrom = \"Banditore <banditore@asl.example>\"\n",
                dir.join("bare.db").display()
            ),
        )
        .unwrap();
        let mut command = Command::new(env!("CARGO_BIN_EXE_banditore"));
        command
            .args(["--config", config.to_str().unwrap(), "--log-format", "json"])
            .arg("serve")
            .current_dir(dir)
            // Inherited from a shell started under systemd, it would name another stream.
            .env_remove("JOURNAL_STREAM")
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        if let Some(journal) = journal {
            use std::os::unix::fs::MetadataExt;
            let file = std::fs::File::create(journal).unwrap();
            let meta = file.metadata().unwrap();
            command
                .env("JOURNAL_STREAM", format!("{}:{}", meta.dev(), meta.ino()))
                .stdout(Stdio::from(file));
        }
        let mut child = command.spawn().expect("start banditore");
        let stdout = Arc::new(Mutex::new(String::new()));
        let mut out: Box<dyn Read + Send> = match child.stdout.take() {
            Some(out) => Box::new(out),
            None => Box::new(std::io::empty()),
        };
        let kept = stdout.clone();
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n) = out.read(&mut buf) {
                if n == 0 {
                    break;
                }
                kept.lock()
                    .unwrap()
                    .push_str(&String::from_utf8_lossy(&buf[..n]));
            }
        });
        let (tx, rx) = mpsc::channel();
        let err = child.stderr.take().unwrap();
        std::thread::spawn(move || {
            let mut tx = Some(tx);
            for line in BufReader::new(err).lines().map_while(Result::ok) {
                if let Ok(v) = serde_json::from_str::<Value>(&line)
                    && v["fields"]["message"] == "listening"
                    && let Some(tx) = tx.take()
                {
                    let _ = tx.send(v["fields"]["addr"].as_str().unwrap_or("").to_owned());
                }
            }
        });
        let addr = rx
            .recv_timeout(Duration::from_secs(30))
            .expect("banditore did not start");
        Bare {
            child,
            base: format!("http://{addr}"),
            stdout,
        }
    }

    /// Everything printed so far; the first start's message is written before "listening".
    fn printed(&self) -> String {
        std::thread::sleep(Duration::from_millis(200));
        self.stdout.lock().unwrap().clone()
    }

    fn stop(mut self) {
        unsafe {
            libc::kill(self.child.id() as i32, libc::SIGTERM);
        }
        let _ = self.child.wait();
    }
}

impl Drop for Bare {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The secret printed on the line that starts with `name`.
fn printed_secret(text: &str, name: &str) -> String {
    text.lines()
        .map(str::trim)
        .find_map(|l| l.strip_prefix(name).map(str::trim))
        .filter(|s| s.starts_with("bnd_"))
        .unwrap_or_else(|| panic!("no {name} token in:\n{text}"))
        .to_owned()
}

#[tokio::test]
async fn the_first_start_prints_two_working_tokens_and_later_starts_none() {
    let smtp = SmtpServer::start();
    let dir = tempfile::tempdir().unwrap();
    let first = Bare::start(dir.path(), smtp.addr().port());
    let text = first.printed();
    let admin = printed_secret(&text, "admin");
    let ingest = printed_secret(&text, "ingest");
    assert!(
        text.contains(&format!("{}/api/v1/signals/generic", first.base)),
        "{text}"
    );
    assert!(
        text.contains("https://banditore.asl.example/console"),
        "{text}"
    );
    let config = dir.path().join("bare.toml");
    assert!(
        text.contains(&format!("banditore --config {} user add", config.display())),
        "the commands name this deployment's configuration:\n{text}"
    );
    let http = reqwest::Client::new();
    let posted = http
        .post(format!("{}/api/v1/signals/generic", first.base))
        .bearer_auth(&ingest)
        .json(&json!({"summary": "Test", "service": "test", "severity": "info"}))
        .send()
        .await
        .unwrap();
    assert_eq!(posted.status(), 202);
    let listed = http
        .get(format!("{}/api/v1/incidents", first.base))
        .bearer_auth(&admin)
        .send()
        .await
        .unwrap();
    assert_eq!(listed.status(), 200);
    let refused = http
        .get(format!("{}/api/v1/incidents", first.base))
        .bearer_auth(&ingest)
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 403, "the ingest token only ingests");
    first.stop();

    let second = Bare::start(dir.path(), smtp.addr().port());
    let text = second.printed();
    assert!(
        !text.contains("bnd_"),
        "a second start prints no token:\n{text}"
    );
    let still = http
        .get(format!("{}/api/v1/incidents", second.base))
        .bearer_auth(&admin)
        .send()
        .await
        .unwrap();
    assert_eq!(still.status(), 200, "the stored token survives the restart");
}

/// Posts a signal with `token` until its status is `want`; how long that took.
async fn until_status(app: &TestApp, token: &str, want: u16) -> Duration {
    let started = Instant::now();
    let body = alertmanager("firing", "CupDown", &[("service", "cup")], "CUP giù");
    loop {
        let got = app
            .post_json("/api/v1/signals/alertmanager", Some(token), &body)
            .await
            .status();
        if got == want {
            return started.elapsed();
        }
        assert!(
            started.elapsed() < Duration::from_secs(15),
            "still {got} after 15 s, waiting for {want}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn tokens_and_users_made_on_the_command_line_work_while_the_service_runs() {
    let smtp = SmtpServer::start();
    let app = TestApp::spawn(&smtp, "", &[]).await;
    let (code, secret, err) = app.cli(
        &["token", "create", "--name", "grafana", "--role", "ingest"],
        "",
    );
    assert_eq!(code, 0, "{err}");
    let secret = secret.trim().to_owned();
    assert!(secret.starts_with("bnd_"), "{secret}");
    let took = until_status(&app, &secret, 202).await;
    assert!(took < Duration::from_secs(7), "took {took:?}");
    println!("a token made by the command line worked after {took:?}");

    let (code, list, _) = app.cli(&["token", "list"], "");
    assert_eq!(code, 0);
    assert!(list.contains("grafana\tingest\tstore"), "{list}");
    assert!(list.contains("admin\tadmin\tconfig"), "{list}");
    assert!(!list.contains(&secret), "the list never shows a secret");

    // A configured token's name cannot be taken, nor can a configured token be revoked here.
    let (code, _, err) = app.cli(
        &["token", "create", "--name", "admin", "--role", "admin"],
        "",
    );
    assert_ne!(code, 0);
    assert!(
        err.contains("name of a token in the configuration"),
        "{err}"
    );
    let (code, _, err) = app.cli(&["token", "revoke", "admin"], "");
    assert_ne!(code, 0);
    assert!(err.contains("token of the configuration"), "{err}");

    let (code, out, err) = app.cli(&["token", "revoke", "grafana"], "");
    assert_eq!(code, 0, "{out}{err}");
    let took = until_status(&app, &secret, 401).await;
    assert!(took < Duration::from_secs(7), "took {took:?}");
    println!("a token revoked by the command line was refused after {took:?}");
    let (_, list, _) = app.cli(&["token", "list"], "");
    assert!(
        list.contains("by command line"),
        "the revocation is listed: {list}"
    );

    // A user added while serving logs in at once.
    let (code, out, err) = app.cli(
        &["user", "add", "m.rossi", "--role", "communicator"],
        &format!("{PASSWORD}\n"),
    );
    assert_eq!(code, 0, "{out}{err}");
    let b = console_browser();
    assert_eq!(
        console_login(&app, &b, "m.rossi", PASSWORD).await.status(),
        303
    );
    let audit = app.get_json("/api/v1/audit", ADMIN_TOKEN).await;
    let actions: Vec<&str> = audit["entries"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|e| e["action"].as_str())
        .collect();
    for action in ["token.created", "token.revoked", "user.created"] {
        assert!(actions.contains(&action), "{action} in {actions:?}");
    }
}

async fn send(
    app: &TestApp,
    method: reqwest::Method,
    path: &str,
    token: &str,
    body: Option<Value>,
) -> (u16, Value) {
    let mut req = app.http.request(method, app.url(path)).bearer_auth(token);
    if let Some(b) = body {
        req = req.json(&b);
    }
    let resp = req.send().await.unwrap();
    let status = resp.status().as_u16();
    let text = resp.text().await.unwrap();
    (status, serde_json::from_str(&text).unwrap_or(Value::Null))
}

#[tokio::test]
async fn admins_manage_tokens_and_users_through_the_api() {
    use reqwest::Method;
    let smtp = SmtpServer::start();
    let app = TestApp::spawn(&smtp, "", &[]).await;
    for path in ["/api/v1/tokens", "/api/v1/users"] {
        let (status, body) = send(&app, Method::GET, path, OPERATOR_TOKEN, None).await;
        assert_eq!(status, 403, "{path}: {body}");
    }
    let (status, body) = send(
        &app,
        Method::POST,
        "/api/v1/tokens",
        OPERATOR_TOKEN,
        Some(json!({"name": "x", "roles": ["admin"]})),
    )
    .await;
    assert_eq!(status, 403, "{body}");

    let (status, created) = send(
        &app,
        Method::POST,
        "/api/v1/tokens",
        ADMIN_TOKEN,
        Some(json!({"name": "kuma", "roles": ["ingest"]})),
    )
    .await;
    assert_eq!(status, 201, "{created}");
    let secret = created["token"].as_str().unwrap().to_owned();
    assert!(secret.starts_with("bnd_"));
    let again = app
        .http
        .post(app.url("/api/v1/tokens"))
        .bearer_auth(ADMIN_TOKEN)
        .json(&json!({"name": "kuma-2", "roles": ["ingest"]}))
        .send()
        .await
        .unwrap();
    assert_eq!(again.status(), 201);
    assert_eq!(
        again.headers()["cache-control"],
        "no-store",
        "no cache may keep a secret"
    );
    // This replica reloads at once after its own change.
    assert!(until_status(&app, &secret, 202).await < Duration::from_secs(1));
    for (body, field) in [
        (json!({"name": "two words", "roles": ["ingest"]}), "name"),
        (json!({"name": "x", "roles": []}), "roles"),
        (json!({"name": "x", "roles": ["root"]}), "roles"),
    ] {
        let (status, answer) = send(
            &app,
            Method::POST,
            "/api/v1/tokens",
            ADMIN_TOKEN,
            Some(body),
        )
        .await;
        assert_eq!(status, 400, "{answer}");
        assert_eq!(answer["field"], field, "{answer}");
    }
    let (status, answer) = send(
        &app,
        Method::POST,
        "/api/v1/tokens",
        ADMIN_TOKEN,
        Some(json!({"name": "kuma", "roles": ["ingest"]})),
    )
    .await;
    assert_eq!(status, 409, "a live name: {answer}");
    let (status, answer) = send(
        &app,
        Method::POST,
        "/api/v1/tokens",
        ADMIN_TOKEN,
        Some(json!({"name": "dashboard", "roles": ["viewer"]})),
    )
    .await;
    assert_eq!(status, 409, "a configured name: {answer}");
    let (status, list) = send(&app, Method::GET, "/api/v1/tokens", ADMIN_TOKEN, None).await;
    assert_eq!(status, 200);
    let kuma = list["tokens"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["name"] == "kuma")
        .cloned()
        .unwrap();
    assert_eq!(kuma["origin"], "store");
    assert_eq!(kuma["created_by"], "admin");
    assert!(!list.to_string().contains(&secret));
    let (status, answer) = send(
        &app,
        Method::DELETE,
        "/api/v1/tokens/admin",
        ADMIN_TOKEN,
        None,
    )
    .await;
    assert_eq!(status, 409, "{answer}");
    assert!(
        answer["error"]
            .as_str()
            .unwrap()
            .contains("configuration file"),
        "{answer}"
    );
    let (status, _) = send(
        &app,
        Method::DELETE,
        "/api/v1/tokens/nobody",
        ADMIN_TOKEN,
        None,
    )
    .await;
    assert_eq!(status, 404);
    let (status, _) = send(
        &app,
        Method::DELETE,
        "/api/v1/tokens/kuma",
        ADMIN_TOKEN,
        None,
    )
    .await;
    assert_eq!(status, 204);
    assert!(until_status(&app, &secret, 401).await < Duration::from_secs(1));
    // The name of a revoked token may be given again.
    let (status, again) = send(
        &app,
        Method::POST,
        "/api/v1/tokens",
        ADMIN_TOKEN,
        Some(json!({"name": "kuma", "roles": ["ingest"]})),
    )
    .await;
    assert_eq!(status, 201, "{again}");

    // Users: checks, the last admin, sessions.
    for (body, field) in [
        (
            json!({"username": "a b", "roles": ["admin"], "password": PASSWORD}),
            "username",
        ),
        (
            json!({"username": "m.rossi", "roles": ["ingest"], "password": PASSWORD}),
            "roles",
        ),
        (
            json!({"username": "m.rossi", "roles": ["admin"], "password": "password1234"}),
            "password",
        ),
    ] {
        let (status, answer) =
            send(&app, Method::POST, "/api/v1/users", ADMIN_TOKEN, Some(body)).await;
        assert_eq!(status, 400, "{answer}");
        assert_eq!(answer["field"], field, "{answer}");
    }
    let (status, user) = send(
        &app,
        Method::POST,
        "/api/v1/users",
        ADMIN_TOKEN,
        Some(json!({"username": "m.rossi", "roles": ["admin"], "password": PASSWORD})),
    )
    .await;
    assert_eq!(status, 201, "{user}");
    let (status, _) = send(
        &app,
        Method::POST,
        "/api/v1/users",
        ADMIN_TOKEN,
        Some(json!({"username": "M.Rossi", "roles": ["viewer"], "password": PASSWORD})),
    )
    .await;
    assert_eq!(status, 409);
    let (status, answer) = send(
        &app,
        Method::PATCH,
        "/api/v1/users/m.rossi",
        ADMIN_TOKEN,
        Some(json!({"roles": ["viewer"]})),
    )
    .await;
    assert_eq!(status, 409, "the last enabled admin: {answer}");
    let (status, _) = send(
        &app,
        Method::PATCH,
        "/api/v1/users/m.rossi",
        ADMIN_TOKEN,
        Some(json!({"disabled": true})),
    )
    .await;
    assert_eq!(
        status, 409,
        "the last enabled admin cannot be disabled either"
    );
    let (status, _) = send(
        &app,
        Method::POST,
        "/api/v1/users",
        ADMIN_TOKEN,
        Some(json!({"username": "l.bianchi", "roles": ["admin"], "password": PASSWORD})),
    )
    .await;
    assert_eq!(status, 201);
    let b = console_browser();
    assert_eq!(
        console_login(&app, &b, "m.rossi", PASSWORD).await.status(),
        303
    );
    let (status, changed) = send(
        &app,
        Method::PATCH,
        "/api/v1/users/m.rossi",
        ADMIN_TOKEN,
        Some(json!({"roles": ["viewer"]})),
    )
    .await;
    assert_eq!(status, 200, "{changed}");
    assert_eq!(changed["roles"], json!(["viewer"]));
    let page = b.get(app.url("/console/drafts")).send().await.unwrap();
    assert_eq!(page.status(), 303, "the change ended the session");
    let (status, _) = send(
        &app,
        Method::PATCH,
        "/api/v1/users/nobody",
        ADMIN_TOKEN,
        Some(json!({"disabled": true})),
    )
    .await;
    assert_eq!(status, 404);
    let (status, answer) = send(
        &app,
        Method::PATCH,
        "/api/v1/users/m.rossi",
        ADMIN_TOKEN,
        Some(json!({})),
    )
    .await;
    assert_eq!(status, 400, "{answer}");
    let (status, answer) = send(
        &app,
        Method::PATCH,
        "/api/v1/users/m.rossi",
        ADMIN_TOKEN,
        Some(json!({"password": "short"})),
    )
    .await;
    assert_eq!(
        (status, answer["field"].clone()),
        (400, json!("password")),
        "{answer}"
    );
    let (status, users) = send(&app, Method::GET, "/api/v1/users", ADMIN_TOKEN, None).await;
    assert_eq!(status, 200);
    assert!(
        !users.to_string().contains("argon2"),
        "no hash is shown: {users}"
    );

    let audit = app.get_json("/api/v1/audit", ADMIN_TOKEN).await;
    let entries = audit["entries"].as_array().unwrap();
    for action in [
        "token.created",
        "token.revoked",
        "user.created",
        "user.changed",
    ] {
        assert!(
            entries
                .iter()
                .any(|e| e["action"] == action && e["actor"] == "admin"),
            "{action} by admin in {audit}"
        );
    }
    assert!(
        !audit.to_string().contains(&secret),
        "no secret in the audit log"
    );
}

#[tokio::test]
async fn admins_manage_tokens_and_users_in_the_console() {
    let smtp = SmtpServer::start();
    let mut app = TestApp::spawn(&smtp, "", &[]).await;
    app.add_user("m.rossi", PASSWORD, "admin").await;
    app.add_user("l.bianchi", PASSWORD, "operator").await;

    let operator = console_browser();
    assert_eq!(
        console_login(&app, &operator, "l.bianchi", PASSWORD)
            .await
            .status(),
        303
    );
    let html = operator
        .get(app.url("/console/drafts"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(!html.contains("/console/tokens"), "no link for a non-admin");
    for path in ["/console/users", "/console/tokens"] {
        assert_eq!(
            operator.get(app.url(path)).send().await.unwrap().status(),
            403,
            "{path}"
        );
    }

    let b = console_browser();
    assert_eq!(
        console_login(&app, &b, "m.rossi", PASSWORD).await.status(),
        303
    );
    let page = b.get(app.url("/console/tokens")).send().await.unwrap();
    assert_eq!(page.status(), 200);
    let html = page.text().await.unwrap();
    assert!(
        html.contains("href=\"/console/users\""),
        "the admin's navigation"
    );
    let csrf = hidden_field(&html, "csrf");
    let forged = b
        .post(app.url("/console/tokens"))
        .form(&[("csrf", "x"), ("name", "forged"), ("role", "admin")])
        .send()
        .await
        .unwrap();
    assert_eq!(forged.status(), 403);
    let created = b
        .post(app.url("/console/tokens"))
        .form(&[
            ("csrf", csrf.as_str()),
            ("name", "uptime"),
            ("role", "ingest"),
            ("role", "viewer"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), 201);
    let html = created.text().await.unwrap();
    let start = html
        .find("id=\"token-secret\">")
        .expect("the secret is shown")
        + 18;
    let secret = html[start..].split('<').next().unwrap().to_owned();
    assert!(secret.starts_with("bnd_"), "{secret}");
    assert!(until_status(&app, &secret, 202).await < Duration::from_secs(1));
    let list = b
        .get(app.url("/console/tokens"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        list.contains("uptime") && !list.contains(&secret),
        "listed, secret hidden"
    );
    let revoked = b
        .post(app.url("/console/tokens/uptime/revoke"))
        .form(&[("csrf", csrf.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(revoked.status(), 303);
    assert!(until_status(&app, &secret, 401).await < Duration::from_secs(1));
    let config = b
        .post(app.url("/console/tokens/admin/revoke"))
        .form(&[("csrf", csrf.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(config.status(), 409);

    // Users: add, change roles, disable, enable; the last admin stays.
    let added = b
        .post(app.url("/console/users"))
        .form(&[
            ("csrf", csrf.as_str()),
            ("username", "g.verdi"),
            ("role", "communicator"),
            ("password", PASSWORD),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(added.status(), 303);
    let weak = b
        .post(app.url("/console/users"))
        .form(&[
            ("csrf", csrf.as_str()),
            ("username", "a.neri"),
            ("role", "viewer"),
            ("password", "password1234"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(weak.status(), 400);
    assert!(weak.text().await.unwrap().contains("password"));
    let demote_self = b
        .post(app.url("/console/users/m.rossi"))
        .form(&[
            ("csrf", csrf.as_str()),
            ("action", "roles"),
            ("role", "viewer"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(demote_self.status(), 409, "the last enabled admin");
    for (action, disabled) in [("disable", true), ("enable", false)] {
        let resp = b
            .post(app.url("/console/users/l.bianchi"))
            .form(&[("csrf", csrf.as_str()), ("action", action)])
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 303, "{action}");
        let users = app.get_json("/api/v1/users", ADMIN_TOKEN).await;
        let bianchi = users["users"]
            .as_array()
            .unwrap()
            .iter()
            .find(|u| u["username"] == "l.bianchi")
            .cloned()
            .unwrap();
        assert_eq!(bianchi["disabled"], disabled, "{action}");
    }
    // Disabling ended the operator's session.
    assert_eq!(
        operator
            .get(app.url("/console/drafts"))
            .send()
            .await
            .unwrap()
            .status(),
        303
    );
    let roles = b
        .post(app.url("/console/users/g.verdi"))
        .form(&[
            ("csrf", csrf.as_str()),
            ("action", "roles"),
            ("role", "operator"),
            ("role", "viewer"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(roles.status(), 303);
    let html = b
        .get(app.url("/console/users"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(html.contains("operator, viewer"), "{html}");
    let audit = app.get_json("/api/v1/audit", ADMIN_TOKEN).await;
    let by_console = audit["entries"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["actor"] == "m.rossi")
        .filter_map(|e| e["action"].as_str())
        .collect::<Vec<_>>();
    for action in [
        "token.created",
        "token.revoked",
        "user.created",
        "user.changed",
    ] {
        assert!(by_console.contains(&action), "{action} in {by_console:?}");
    }
}

/// Under systemd, standard output is the journal, which is kept: the first start's secrets go
/// to a file in the state folder that only the service's user can read, never to the journal.
#[tokio::test]
async fn under_systemd_the_first_tokens_go_to_a_private_file_not_the_journal() {
    use std::os::unix::fs::PermissionsExt;
    let smtp = SmtpServer::start();
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    std::fs::create_dir(&state).unwrap();
    let journal = dir.path().join("journal");
    let service = Bare::start_with(
        dir.path(),
        smtp.addr().port(),
        &[
            ("STATE_DIRECTORY", state.to_str().unwrap()),
            ("USER", "banditore"),
        ],
        Some(&journal),
    );
    std::thread::sleep(Duration::from_millis(200));
    let printed = std::fs::read_to_string(&journal).unwrap();
    assert!(
        !printed.contains("bnd_"),
        "secrets on standard output:\n{printed}"
    );
    let file = state.join("first-start-tokens.txt");
    let mode = std::fs::metadata(&file).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600, "{mode:o}");
    let text = std::fs::read_to_string(&file).unwrap();
    assert!(
        text.contains("sudo -u banditore banditore --config"),
        "{text}"
    );
    let admin = printed_secret(&text, "admin");
    // Inherited from a service that started this one's shell, the variable names another
    // stream: standard output is then no journal, and the tokens are printed there.
    let elsewhere = tempfile::tempdir().unwrap();
    let inherited = Bare::start_with(
        elsewhere.path(),
        smtp.addr().port(),
        &[("JOURNAL_STREAM", "8:12345")],
        None,
    );
    printed_secret(&inherited.printed(), "admin");
    inherited.stop();
    let listed = reqwest::Client::new()
        .get(format!("{}/api/v1/incidents", service.base))
        .bearer_auth(&admin)
        .send()
        .await
        .unwrap();
    assert_eq!(listed.status(), 200);
    service.stop();
}
