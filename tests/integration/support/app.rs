//! The real `banditore` binary, started on port 0 with a fresh SQLite file, its JSON log captured.
//! In the integration tests, requests go through the contract's forwarder (`contract.rs`): every
//! answer under `/api/v1/` is checked against `docs/openapi.json`, and a test whose answers
//! contradict it fails when its `TestApp` is dropped. The benchmarks talk to the binary directly.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::Value;

use super::contract::Forwarder;
use super::smtp::SmtpServer;

pub const INGEST_TOKEN: &str = "ingest-token-for-tests-0001";
pub const ADMIN_TOKEN: &str = "admin-token-for-tests-0002";
pub const OPERATOR_TOKEN: &str = "operator-token-for-tests-0003";
pub const VIEWER_TOKEN: &str = "viewer-token-for-tests-0004";
pub const COMMUNICATOR_TOKEN: &str = "communicator-token-for-tests-0005";

pub struct TestApp {
    pub dir: tempfile::TempDir,
    pub config: PathBuf,
    pub env: Vec<(String, String)>,
    /// The binary's own address (for tests that speak raw TCP to it).
    pub addr: SocketAddr,
    /// Where requests go: the contract's forwarder in the integration tests, else the binary.
    pub base: String,
    pub http: reqwest::Client,
    /// The process's limit on open files (soft and hard), when a test lowers it.
    pub open_files: Option<u64>,
    child: Option<Child>,
    logs: Arc<Mutex<Vec<String>>>,
    /// Checks every API answer against the contract: integration tests only, never a benchmark.
    forwarder: Option<Forwarder>,
}

/// The settings every test starts from; `extra` is appended (it may add `[[subscribers]]` and
/// other arrays of tables) and `env` overrides single keys, as an operator would.
fn base_config(dir: &std::path::Path, smtp_port: u16, extra: &str) -> String {
    format!(
        r#"
[server]
listen = "127.0.0.1:0"
public_url = "https://banditore.asl.example"
shutdown_timeout = "10s"

[store]
url = "sqlite://{db}"

[routing]
group_wait = "0s"
group_interval = "0s"
flap_hold_down = "0s"

[outbox]
retry_initial = "200ms"
retry_max = "1s"
poll_interval = "200ms"

[channels.email]
host = "127.0.0.1"
port = {smtp_port}
from = "Banditore ASL <banditore@asl.example>"
pool_size = 4
timeout = "5s"

[[auth.tokens]]
name = "alertmanager"
token = "{INGEST_TOKEN}"
roles = ["ingest"]

[[auth.tokens]]
name = "admin"
token = "{ADMIN_TOKEN}"
roles = ["admin"]

[[auth.tokens]]
name = "sala-operativa"
token = "{OPERATOR_TOKEN}"
roles = ["operator"]

[[auth.tokens]]
name = "dashboard"
token = "{VIEWER_TOKEN}"
roles = ["viewer"]

[[auth.tokens]]
name = "ufficio-comunicazione"
token = "{COMMUNICATOR_TOKEN}"
roles = ["communicator"]

{extra}
"#,
        db = dir.join("banditore.db").display(),
    )
}

/// Whether requests go through the contract's forwarder. `cargo bench` builds the benchmarks as
/// tests too (`cfg(test)`), but a benchmark (run with `--bench`) must talk to the binary itself:
/// through the forwarder, its figures were the binary's and the forwarder's together.
fn checks_contract() -> bool {
    cfg!(test) && !std::env::args().any(|a| a == "--bench")
}

impl TestApp {
    /// Starts the binary against `smtp`, with `extra` TOML and `env` overrides.
    pub async fn spawn(smtp: &SmtpServer, extra: &str, env: &[(&str, &str)]) -> TestApp {
        TestApp::spawn_on(smtp.addr().port(), extra, env).await
    }

    /// Starts the binary with email sent to any SMTP server on loopback at `smtp_port`.
    pub async fn spawn_on(smtp_port: u16, extra: &str, env: &[(&str, &str)]) -> TestApp {
        TestApp::spawn_limited(smtp_port, extra, env, None).await
    }

    /// Starts the binary as `spawn_on` does, limited to `open_files` descriptors (soft and hard),
    /// as under a shell's `ulimit -n`.
    pub async fn spawn_limited(
        smtp_port: u16,
        extra: &str,
        env: &[(&str, &str)],
        open_files: Option<u64>,
    ) -> TestApp {
        let dir = tempfile::tempdir().expect("temp dir");
        let config = dir.path().join("banditore.toml");
        std::fs::write(&config, base_config(dir.path(), smtp_port, extra)).unwrap();
        let mut app = TestApp {
            dir,
            config,
            env: env
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            addr: "127.0.0.1:0".parse().unwrap(),
            base: String::new(),
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(30))
                .build()
                .unwrap(),
            open_files,
            child: None,
            logs: Arc::new(Mutex::new(Vec::new())),
            forwarder: checks_contract().then(Forwarder::start),
        };
        app.start().await;
        app
    }

    /// Starts (or restarts) the process with the same directory and configuration.
    pub async fn start(&mut self) {
        let mut command = Command::new(env!("CARGO_BIN_EXE_banditore"));
        command
            .arg("--config")
            .arg(&self.config)
            .arg("--log-format")
            .arg("json")
            .arg("serve")
            .current_dir(self.dir.path())
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        for (k, v) in &self.env {
            command.env(k, v);
        }
        if let Some(limit) = self.open_files {
            use std::os::unix::process::CommandExt;
            // SAFETY: setrlimit is async-signal-safe and touches only the child about to exec.
            unsafe {
                command.pre_exec(move || {
                    let l = libc::rlimit {
                        rlim_cur: limit,
                        rlim_max: limit,
                    };
                    if libc::setrlimit(libc::RLIMIT_NOFILE, &l) == 0 {
                        Ok(())
                    } else {
                        Err(std::io::Error::last_os_error())
                    }
                });
            }
        }
        let mut child = command.spawn().expect("start banditore");
        let stderr = child.stderr.take().unwrap();
        let (found, listening) = mpsc::channel();
        let logs = self.logs.clone();
        std::thread::spawn(move || {
            let mut found = Some(found);
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if let Ok(v) = serde_json::from_str::<Value>(&line)
                    && v["fields"]["message"] == "listening"
                    && let (Some(tx), Some(addr)) = (found.take(), v["fields"]["addr"].as_str())
                {
                    let _ = tx.send(addr.to_owned());
                }
                logs.lock().unwrap().push(line);
            }
        });
        let addr =
            tokio::task::spawn_blocking(move || listening.recv_timeout(Duration::from_secs(30)))
                .await
                .unwrap()
                .unwrap_or_else(|_| panic!("banditore did not start; log:\n{}", self.logs()));
        self.addr = addr.parse().unwrap();
        self.base = match &self.forwarder {
            Some(f) => {
                *f.upstream.lock().unwrap() = self.addr;
                format!("http://{}", f.addr)
            }
            None => format!("http://{}", self.addr),
        };
        self.child = Some(child);
    }

    /// The process id, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    pub fn logs(&self) -> String {
        self.logs.lock().unwrap().join("\n")
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    pub async fn post(
        &self,
        path: &str,
        token: Option<&str>,
        content_type: &str,
        body: impl Into<reqwest::Body>,
    ) -> reqwest::Response {
        let mut req = self
            .http
            .post(self.url(path))
            .header("content-type", content_type)
            .body(body);
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        req.send().await.expect("request")
    }

    pub async fn post_json(
        &self,
        path: &str,
        token: Option<&str>,
        body: &Value,
    ) -> reqwest::Response {
        self.post(path, token, "application/json", body.to_string())
            .await
    }

    pub async fn put_json(&self, path: &str, token: &str, body: &Value) -> reqwest::Response {
        self.http
            .put(self.url(path))
            .bearer_auth(token)
            .json(body)
            .send()
            .await
            .expect("PUT")
    }

    pub async fn get(&self, path: &str, token: Option<&str>) -> reqwest::Response {
        let mut req = self.http.get(self.url(path));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        req.send().await.expect("request")
    }

    pub async fn get_json(&self, path: &str, token: &str) -> Value {
        let resp = self.get(path, Some(token)).await;
        assert!(resp.status().is_success(), "GET {path}: {}", resp.status());
        resp.json().await.unwrap()
    }

    /// Creates a subscriber through the API and returns its id.
    pub async fn subscribe(&self, spec: Value) -> i64 {
        let resp = self
            .post_json("/api/v1/subscribers", Some(ADMIN_TOKEN), &spec)
            .await;
        let status = resp.status();
        let body: Value = resp.json().await.unwrap();
        assert_eq!(status, 201, "{body}");
        body["id"].as_i64().unwrap()
    }

    /// The pending public drafts, newest first.
    pub async fn pending_drafts(&self) -> Vec<Value> {
        let drafts = self
            .get_json("/api/v1/drafts?state=pending", VIEWER_TOKEN)
            .await;
        drafts["drafts"].as_array().cloned().unwrap_or_default()
    }

    /// Waits (30 s at most, checking every 2 ms) for a pending draft and returns the newest.
    pub async fn next_draft(&self) -> Value {
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(draft) = self.pending_drafts().await.into_iter().next() {
                return draft;
            }
            assert!(std::time::Instant::now() < deadline, "no draft within 30 s");
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    }

    /// Approves every part of a draft as the communications office.
    pub async fn approve_draft(&self, id: i64) {
        let resp = self
            .post_json(
                &format!("/api/v1/drafts/{id}/approve"),
                Some(COMMUNICATOR_TOKEN),
                &serde_json::json!({}),
            )
            .await;
        let status = resp.status();
        assert_eq!(status, 200, "{}", resp.text().await.unwrap_or_default());
    }

    /// Ends the process with SIGKILL: no shutdown work at all.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Runs `banditore <args>` on this app's configuration, with `stdin` as its input;
    /// returns (exit code, stdout, stderr).
    pub fn cli(&self, args: &[&str], stdin: &str) -> (i32, String, String) {
        use std::io::Write;
        let mut child = Command::new(env!("CARGO_BIN_EXE_banditore"))
            .arg("--config")
            .arg(&self.config)
            .args(args)
            .current_dir(self.dir.path())
            .envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("run banditore");
        if let Some(mut input) = child.stdin.take() {
            let _ = input.write_all(stdin.as_bytes());
        }
        let out = child.wait_with_output().expect("banditore output");
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    /// Adds a console user with `banditore user add`, beside the running service (the command
    /// opens the SQLite file without the service's lock).
    pub async fn add_user(&mut self, name: &str, password: &str, roles: &str) {
        let (code, out, err) = self.cli(
            &["user", "add", name, "--role", roles],
            &format!("{password}\n"),
        );
        assert_eq!(code, 0, "user add: {out}{err}");
    }

    /// Sends SIGTERM and waits for the process to exit.
    pub fn terminate(&mut self) -> Option<ExitStatus> {
        let mut child = self.child.take()?;
        unsafe {
            libc::kill(child.id() as i32, libc::SIGTERM);
        }
        for _ in 0..300 {
            if let Ok(Some(status)) = child.try_wait() {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = child.kill();
        child.wait().ok()
    }
}

impl TestApp {
    /// What the API's answers so far contradicted in the contract, and forgets it (for a test
    /// that provokes a contradiction on purpose).
    pub fn take_contract_violations(&self) -> Vec<String> {
        self.forwarder
            .as_ref()
            .map(|f| std::mem::take(&mut *f.violations.lock().unwrap()))
            .unwrap_or_default()
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        self.kill();
        let violations = self.take_contract_violations();
        if !violations.is_empty() && !std::thread::panicking() {
            panic!(
                "{} answer(s) of the API contradict docs/openapi.json:\n{}",
                violations.len(),
                violations.join("\n")
            );
        }
    }
}

/// The sum of the samples on `app`'s `/metrics` whose lines start with `line_start` (a metric's
/// name, with its labels to pick one series); 0 when there are none, or no answer.
pub async fn metric(app: &TestApp, line_start: &str) -> f64 {
    let text = app
        .get("/metrics", None)
        .await
        .text()
        .await
        .unwrap_or_default();
    text.lines()
        .filter(|l| l.starts_with(line_start))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// Batches of signals `app` has committed so far by `by` (`pipeline` or `writer`).
pub async fn batches_stored_by(app: &TestApp, by: &str) -> u64 {
    let series = format!("banditore_signal_batches_total{{stored_by=\"{by}\"}} ");
    metric(app, &series).await as u64
}

/// An Alertmanager webhook body for one alert.
pub fn alertmanager(
    status: &str,
    alertname: &str,
    labels: &[(&str, &str)],
    summary: &str,
) -> Value {
    let mut l = serde_json::Map::new();
    l.insert("alertname".into(), alertname.into());
    for (k, v) in labels {
        l.insert((*k).into(), (*v).into());
    }
    serde_json::json!({
        "version": "4",
        "groupKey": format!("{{}}:{{alertname=\"{alertname}\"}}"),
        "truncatedAlerts": 0,
        "status": status,
        "receiver": "banditore",
        "groupLabels": {"alertname": alertname},
        "commonLabels": l,
        "commonAnnotations": {"summary": summary},
        "externalURL": "http://alertmanager.asl.example:9093",
        "alerts": [{
            "status": status,
            "labels": l,
            "annotations": {"summary": summary, "description": format!("{summary}: descrizione")},
            "startsAt": "2026-11-26T09:14:03.123456789Z",
            "endsAt": if status == "resolved" { "2026-11-26T09:44:03Z" } else { "0001-01-01T00:00:00Z" },
            "generatorURL": "http://prometheus.asl.example:9090/graph?g0.expr=up",
            "fingerprint": format!("fp-{alertname}-{}", labels.iter().map(|(k, v)| format!("{k}{v}")).collect::<String>()),
        }]
    })
}

/// A browser: keeps cookies, does not follow redirects (the tests look at them).
pub fn console_browser() -> reqwest::Client {
    reqwest::Client::builder()
        .cookie_store(true)
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap()
}

pub fn hidden_field(html: &str, name: &str) -> String {
    let marker = format!("name=\"{name}\" value=\"");
    let start = html
        .find(&marker)
        .unwrap_or_else(|| panic!("no {name} in:\n{html}"))
        + marker.len();
    html[start..].split('"').next().unwrap().to_owned()
}

pub async fn console_login(
    app: &TestApp,
    b: &reqwest::Client,
    user: &str,
    password: &str,
) -> reqwest::Response {
    let page = b.get(app.url("/console/login")).send().await.unwrap();
    assert_eq!(page.status(), 200);
    let token = hidden_field(&page.text().await.unwrap(), "login_token");
    b.post(app.url("/console/login"))
        .form(&[
            ("login_token", token.as_str()),
            ("username", user),
            ("password", password),
        ])
        .send()
        .await
        .unwrap()
}
