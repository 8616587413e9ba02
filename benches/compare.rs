//! Banditore beside the tools its speed is judged against, in one run on one machine, so that
//! every figure is a ratio of two measurements taken minutes apart under the same load:
//! Alertmanager (alert → webhook latency, and `POST /api/v2/alerts` under wrk) and Postfix's
//! `smtp-source -d` (four kept connections into the same `smtp-sink`) for the email fan-out.
//!
//! `benches/compare.sh` finds or installs the tools, builds the release binary and runs this;
//! `cargo bench --bench compare -- latency|ingest|fanout` picks rows and `-- --quick` runs smaller
//! sizes. A row whose reference is missing says so and prints Banditore's side alone. The numbers
//! are printed, never asserted.

#[path = "../tests/integration/support/mod.rs"]
mod support;

#[path = "shared/mod.rs"]
mod shared;

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use shared::*;
use support::*;
use tokio::sync::mpsc;

/// The first of `names` found on the `PATH` (or the path in the variable `var`, when set).
fn find_tool(var: &str, names: &[&str]) -> Option<PathBuf> {
    if let Some(p) = std::env::var_os(var) {
        return Some(PathBuf::from(p));
    }
    let path = std::env::var_os("PATH")?;
    for dir in std::env::split_paths(&path).chain([PathBuf::from("/usr/sbin")]) {
        for name in names {
            let candidate = dir.join(name);
            if candidate.is_file() {
                return Some(candidate);
            }
        }
    }
    None
}

fn summary(samples: &mut [Duration]) -> String {
    samples.sort();
    format!(
        "p50 {:.2} ms, p90 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
        ms(percentile(samples, 0.50)),
        ms(percentile(samples, 0.90)),
        ms(percentile(samples, 0.99)),
        ms(*samples.last().unwrap()),
    )
}

/// A process killed when dropped.
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Alertmanager on loopback, every alert its own group, sent at once (`group_wait: 0s`) to a
/// webhook receiver of the benchmark's own, which notes when each alert arrived.
struct Alertmanager {
    _process: Running,
    _dir: tempfile::TempDir,
    url: String,
    arrivals: mpsc::UnboundedReceiver<(String, Instant)>,
    version: String,
}

/// Every alert its own group, notified at once: the latency row's route.
const AT_ONCE: &str = "group_by: ['...']\n  group_wait: 0s\n  group_interval: 1m";

/// Grouped by service with Banditore's default waits, as Banditore groups the same alerts.
const BY_SERVICE: &str = "group_by: ['service']\n  group_wait: 500ms\n  group_interval: 1m";

impl Alertmanager {
    /// Alertmanager notifying the benchmark's hook, its route grouped by `grouping`.
    async fn start(binary: &PathBuf, grouping: &str) -> Alertmanager {
        let (tx, arrivals) = mpsc::unbounded_channel();
        let tx = Arc::new(Mutex::new(tx));
        let hook = axum::Router::new().fallback(move |body: axum::body::Bytes| {
            let tx = tx.clone();
            async move {
                let at = Instant::now();
                if let Ok(v) = serde_json::from_slice::<Value>(&body) {
                    for a in v["alerts"].as_array().into_iter().flatten() {
                        let name = a["labels"]["alertname"].as_str().unwrap_or("").to_owned();
                        let _ = tx.lock().unwrap().send((name, at));
                    }
                }
                "ok"
            }
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let hook_addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, hook).await });

        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("alertmanager.yml");
        std::fs::write(
            &config,
            format!(
                "route:\n  receiver: hook\n  {grouping}\n  repeat_interval: 4h\nreceivers:\n  - name: hook\n    webhook_configs:\n      - url: http://{hook_addr}/\n        send_resolved: false\n"
            ),
        )
        .unwrap();
        let port = free_port();
        let child = Command::new(binary)
            .arg(format!("--config.file={}", config.display()))
            .arg(format!("--storage.path={}", dir.path().display()))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .arg("--cluster.listen-address=")
            .arg("--log.level=warn")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("alertmanager starts");
        let url = format!("http://127.0.0.1:{port}");
        let http = reqwest::Client::new();
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if let Ok(r) = http.get(format!("{url}/-/ready")).send().await
                && r.status().is_success()
            {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let version = Command::new(binary)
            .arg("--version")
            .output()
            .map(|o| {
                let text = format!(
                    "{}{}",
                    String::from_utf8_lossy(&o.stdout),
                    String::from_utf8_lossy(&o.stderr)
                );
                text.lines().next().unwrap_or("").to_owned()
            })
            .unwrap_or_default();
        Alertmanager {
            _process: Running(child),
            _dir: dir,
            url,
            arrivals,
            version,
        }
    }
}

/// One alert, the `j`th, to Alertmanager: how long until its webhook arrives.
async fn theirs_once(am: &mut Alertmanager, http: &reqwest::Client, j: usize) -> Duration {
    let name = format!("Down{j}");
    let body = json!([{
        "labels": {"alertname": name, "service": format!("svc-{j}"), "severity": "critical"},
        "annotations": {"summary": format!("bench-{j}")},
        "generatorURL": "http://prometheus.asl.example:9090/graph?g0.expr=up",
    }]);
    let sent = Instant::now();
    let resp = http
        .post(format!("{}/api/v2/alerts", am.url))
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    loop {
        let (n, at) = tokio::time::timeout(Duration::from_secs(30), am.arrivals.recv())
            .await
            .expect("alertmanager notifies within 30 s")
            .unwrap();
        if n == name {
            return at.duration_since(sent);
        }
    }
}

/// Prints both sides of a latency row and the ratio of their p99s (of their p50s and maxima when
/// `few`: with fewer than a hundred samples, the p99 is the maximum).
fn latency_row(
    what: &str,
    ours: &mut [Duration],
    theirs: &mut [Duration],
    am: Option<&str>,
    few: bool,
) {
    println!(
        "{what}, Banditore webhook → email at the SMTP server, {} incidents, group_wait 0s, SQLite synchronous=full: {}",
        ours.len(),
        summary(ours)
    );
    match am {
        Some(version) => {
            println!(
                "{what}, {version} alert → webhook, {} alerts, group_wait 0s: {}",
                theirs.len(),
                summary(theirs)
            );
            let ratio = |q: f64| ms(percentile(ours, q)) / ms(percentile(theirs, q));
            if few {
                println!(
                    "{what} ratio: Banditore / Alertmanager p50 {:.2}, max {:.2} (no target)",
                    ratio(0.5),
                    ratio(1.0),
                );
            } else {
                println!(
                    "{what} ratio: Banditore p99 / Alertmanager p99 = {:.2} (target ≤ 2.0); p50 ratio {:.2}",
                    ratio(0.99),
                    ratio(0.5),
                );
            }
        }
        None => println!(
            "{what}: Alertmanager not found, no reference (benches/compare.sh installs it)"
        ),
    }
}

/// The floor under Banditore's side of the latency row: SQLite commits of one row in each of
/// eight tables with an index (16 pages at the median), WAL and `synchronous = full` as the store
/// runs them, SQLite's automatic checkpoint inside the commit that reaches 1,000 pages, as in the
/// store, on a file beside the binary's. A step that opens an incident and claims its first
/// delivery writes about as many (15 WAL frames at the median, counted with `strace`); its email
/// leaves only after that commit is synced.
struct Floor {
    conn: rusqlite::Connection,
    n: u64,
    /// Declared last: removed once the connection is closed.
    _dir: tempfile::TempDir,
}

impl Floor {
    fn open() -> Floor {
        let dir = tempfile::tempdir().unwrap();
        let conn = rusqlite::Connection::open(dir.path().join("floor.db")).unwrap();
        let mut schema = String::from("PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL;");
        for t in 0..8 {
            schema += &format!(
                "CREATE TABLE t{t} (id INTEGER PRIMARY KEY, k TEXT, v TEXT); CREATE INDEX t{t}_k ON t{t} (k);"
            );
        }
        conn.execute_batch(&schema).unwrap();
        Floor {
            conn,
            n: 0,
            _dir: dir,
        }
    }

    /// One commit: how long `COMMIT` took.
    fn commit(&mut self) -> Duration {
        self.n += 1;
        let key = format!("{:016x}", self.n.wrapping_mul(0x9e37_79b9_7f4a_7c15));
        self.conn.execute_batch("BEGIN IMMEDIATE").unwrap();
        for t in 0..8 {
            self.conn
                .execute(
                    &format!("INSERT INTO t{t} (k, v) VALUES (?1, ?2)"),
                    (&key, "x".repeat(200)),
                )
                .unwrap();
        }
        let at = Instant::now();
        self.conn.execute_batch("COMMIT").unwrap();
        at.elapsed()
    }
}

/// Alert → notification, one incident at a time, alternating blocks of 50 between Banditore
/// (webhook in, email out at an SMTP server in this process) and Alertmanager (alert in, webhook
/// out to a receiver in this process), so that both see the same moments of the machine. Then
/// `quiet` more alerts each, every one after a second without alerts: the first alert of an
/// incident after a calm spell, when the threads on its way have gone idle (timers and polls
/// still tick on both sides). A third block in each round times the [`Floor`]: one synced commit
/// alone.
async fn latency(rounds: usize, quiet: usize, reference: Option<&PathBuf>) {
    let smtp = SmtpServer::start();
    let app = TestApp::spawn(&smtp, "", &[]).await;
    app.subscribe(json!({"name": "Sala operativa", "addresses": {"email": "sala@asl.example"}, "subscriptions": [{}]}))
        .await;
    let mut am = match reference {
        Some(b) => Some(Alertmanager::start(b, AT_ONCE).await),
        None => None,
    };
    let http = reqwest::Client::new();
    let mut ours = Vec::with_capacity(rounds);
    let mut theirs = Vec::with_capacity(rounds);
    let mut floor = Floor::open();
    let mut commits = Vec::with_capacity(rounds);
    const BLOCK: usize = 50;
    let mut i = 0;
    while i < rounds {
        for j in i..(i + BLOCK).min(rounds) {
            ours.push(webhook_to_email(&app, &smtp, j).await);
        }
        if let Some(am) = am.as_mut() {
            for j in i..(i + BLOCK).min(rounds) {
                theirs.push(theirs_once(am, &http, j).await);
            }
        }
        for _ in i..(i + BLOCK).min(rounds) {
            commits.push(floor.commit());
        }
        i += BLOCK;
    }
    let version = am.as_ref().map(|a| a.version.clone());
    latency_row("latency", &mut ours, &mut theirs, version.as_deref(), false);
    println!(
        "latency floor, one SQLite commit of a step's size synced (WAL, synchronous=full, checkpoints included), same rounds: {}",
        summary(&mut commits)
    );
    if version.is_some() {
        println!(
            "latency floor ratio: that commit's p99 / Alertmanager p99 = {:.2} (Banditore's email leaves after one)",
            ms(percentile(&commits, 0.99)) / ms(percentile(&theirs, 0.99))
        );
    }
    let (mut ours, mut theirs) = (Vec::new(), Vec::new());
    for j in rounds..rounds + quiet {
        tokio::time::sleep(Duration::from_secs(1)).await;
        ours.push(webhook_to_email(&app, &smtp, j).await);
        if let Some(am) = am.as_mut() {
            tokio::time::sleep(Duration::from_secs(1)).await;
            theirs.push(theirs_once(am, &http, j).await);
        }
    }
    latency_row(
        "latency after 1 s of quiet",
        &mut ours,
        &mut theirs,
        version.as_deref(),
        true,
    );
}

/// wrk's requests per second and the count of answers that were not 2xx or 3xx.
fn wrk(wrk: &PathBuf, connections: usize, seconds: u64, script: &PathBuf, url: &str) -> (f64, u64) {
    let out = Command::new(wrk)
        .args([
            "-t2",
            &format!("-c{connections}"),
            &format!("-d{seconds}s"),
            "-s",
        ])
        .arg(script)
        .arg(url)
        .output()
        .expect("wrk runs");
    let text = String::from_utf8_lossy(&out.stdout);
    // A script wrk cannot read leaves it sending bare GETs: no figure is better than that one.
    let complaint = String::from_utf8_lossy(&out.stderr);
    assert!(complaint.trim().is_empty(), "wrk: {complaint}");
    let field = |prefix: &str| {
        text.lines()
            .find_map(|l| l.trim().strip_prefix(prefix).map(|r| r.trim().to_owned()))
    };
    let rate = field("Requests/sec:")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0);
    let bad = field("Non-2xx or 3xx responses:")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    (rate, bad)
}

/// Which alerts a wrk script posts, one per request, over 50 services.
#[derive(Clone, Copy)]
enum Storm {
    /// Cycling through 2,000 alerts: after the first 2,000, every request re-sends an alert
    /// already firing, as a storm of re-sends does.
    Resends,
    /// A new alert every request, never sent before by either of wrk's two threads (`-t2`:
    /// each counts by two from its own start): a data centre going dark, every host's alert at
    /// once.
    New,
}

fn wrk_script(
    dir: &std::path::Path,
    name: &str,
    token: Option<&str>,
    storm: Storm,
    template: &str,
) -> PathBuf {
    let path = dir.join(name);
    let auth = token
        .map(|t| format!("wrk.headers[\"Authorization\"] = \"Bearer {t}\"\n"))
        .unwrap_or_default();
    // `setup` gives each of wrk's threads its `thread_id` before it sends: they count apart.
    let next = match storm {
        Storm::Resends => "n = (n + 1) % 2000",
        Storm::New => "n = n + 2",
    };
    std::fs::write(
        &path,
        format!(
            "wrk.method = \"POST\"\nwrk.headers[\"Content-Type\"] = \"application/json\"\n{auth}local threads = 0\nsetup = function(thread)\n  thread:set(\"thread_id\", threads)\n  threads = threads + 1\nend\nlocal n = nil\nrequest = function()\n  n = n or thread_id\n  {next}\n  return wrk.format(nil, nil, nil, string.format([==[{template}]==], n % 50, n, n, n))\nend\n"
        ),
    )
    .unwrap();
    path
}

/// Alertmanager's webhook body with one alert: service, instance, summary and fingerprint.
const WEBHOOK: &str = r#"{"version":"4","status":"firing","receiver":"bench","groupLabels":{},"commonLabels":{},"commonAnnotations":{},"externalURL":"http://am","alerts":[{"status":"firing","labels":{"alertname":"Bench","service":"svc-%d","instance":"host-%d","severity":"warning"},"annotations":{"summary":"bench alert %d"},"startsAt":"2026-11-26T09:14:03Z","endsAt":"0001-01-01T00:00:00Z","generatorURL":"http://prometheus.example:9090/graph","fingerprint":"%016x"}]}"#;

/// Alertmanager's own `POST /api/v2/alerts` body, as Prometheus posts it.
const POSTABLE: &str = r#"[{"labels":{"alertname":"Bench","service":"svc-%d","instance":"host-%d","severity":"warning"},"annotations":{"summary":"bench alert %d (%d)"},"startsAt":"2026-11-26T09:14:03Z","generatorURL":"http://prometheus.example:9090/graph"}]"#;

/// Alerts accepted per second at 16, 64 and 128 connections, one alert per request, wrk against
/// Banditore's Alertmanager webhook (each `202` after the signal is synced to disk), against
/// Banditore's `POST /api/v2/alerts` with Alertmanager's own body (as Prometheus posts it), and
/// against Alertmanager's `POST /api/v2/alerts` (kept in memory), in turn, re-sends of 2,000
/// alerts; then every alert new, at 64 connections, Banditore's webhook against Alertmanager.
async fn ingest(seconds: u64, tools: &Tools) {
    let Some(wrk_bin) = &tools.wrk else {
        println!("ingest: wrk not found (benches/compare.sh installs it)");
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let ours_script = wrk_script(
        dir.path(),
        "banditore.lua",
        Some(INGEST_TOKEN),
        Storm::Resends,
        WEBHOOK,
    );
    let their_script = wrk_script(
        dir.path(),
        "alertmanager.lua",
        None,
        Storm::Resends,
        POSTABLE,
    );
    let our_v2_script = wrk_script(
        dir.path(),
        "banditore-v2.lua",
        Some(INGEST_TOKEN),
        Storm::Resends,
        POSTABLE,
    );
    let bad = |n: u64| {
        if n > 0 {
            format!(", {n} answers not 2xx")
        } else {
            String::new()
        }
    };
    for connections in [16, 64, 128] {
        let smtp = SmtpServer::start();
        let app = TestApp::spawn(&smtp, "", &[]).await;
        let (ours, our_bad) = wrk(
            wrk_bin,
            connections,
            seconds,
            &ours_script,
            &app.url("/api/v1/signals/alertmanager"),
        );
        let rss = app.pid().map_or(0.0, |p| mib(rss_kib(p)));
        drop(app);
        let app = TestApp::spawn(&smtp, "", &[]).await;
        let (ours_v2, our_v2_bad) = wrk(
            wrk_bin,
            connections,
            seconds,
            &our_v2_script,
            &app.url("/api/v2/alerts"),
        );
        drop(app);
        let mut line = format!(
            "ingest, {connections} connections, 1 alert per request: Banditore {ours:.0} signals/s by its webhook ({rss:.1} MiB resident{}), {ours_v2:.0}/s by /api/v2/alerts{}",
            bad(our_bad),
            bad(our_v2_bad),
        );
        if let Some(am_bin) = &tools.alertmanager {
            let am = Alertmanager::start(am_bin, AT_ONCE).await;
            let (theirs, their_bad) = wrk(
                wrk_bin,
                connections,
                seconds,
                &their_script,
                &format!("{}/api/v2/alerts", am.url),
            );
            line.push_str(&format!(
                "; Alertmanager {theirs:.0} alerts/s{}; ratios {:.2} and {:.2} (target ≥ 1.0 at 64)",
                bad(their_bad),
                ours / theirs,
                ours_v2 / theirs
            ));
        }
        println!("{line}");
    }
    // The storm no coalescing helps: each alert new, each to be stored and applied, with the
    // grouping waits a service runs with (the tests' settings announce every change at once).
    let defaults = [
        ("BANDITORE__ROUTING__GROUP_WAIT", "500ms"),
        ("BANDITORE__ROUTING__GROUP_INTERVAL", "1m"),
    ];
    let ours_new = wrk_script(
        dir.path(),
        "new.lua",
        Some(INGEST_TOKEN),
        Storm::New,
        WEBHOOK,
    );
    let their_new = wrk_script(dir.path(), "am-new.lua", None, Storm::New, POSTABLE);
    let smtp = SmtpServer::start();
    let app = TestApp::spawn(&smtp, "", &defaults).await;
    let (ours, our_bad) = wrk(
        wrk_bin,
        64,
        seconds,
        &ours_new,
        &app.url("/api/v1/signals/alertmanager"),
    );
    drop(app);
    let mut line = format!(
        "ingest, 64 connections, every alert new: Banditore {ours:.0} signals/s by its webhook{}",
        bad(our_bad)
    );
    if let Some(am_bin) = &tools.alertmanager {
        let am = Alertmanager::start(am_bin, BY_SERVICE).await;
        let (theirs, their_bad) = wrk(
            wrk_bin,
            64,
            seconds,
            &their_new,
            &format!("{}/api/v2/alerts", am.url),
        );
        line.push_str(&format!(
            "; Alertmanager {theirs:.0} alerts/s{}; ratio {:.2}",
            bad(their_bad),
            ours / theirs
        ));
    }
    println!("{line}");
}

/// The size of the email a desk gets for the fan-out's incident, as an SMTP server receives it:
/// the reference sends messages of the same size.
async fn message_size() -> usize {
    let smtp = SmtpServer::start();
    let app = TestApp::spawn(
        &smtp,
        "[[subscribers]]\nname = \"Sportello\"\naddresses = { email = \"desk@asl.example\" }\nsubscriptions = [{ matchers = ['service=~\"cup.*\"'] }]\n",
        &[],
    )
    .await;
    fire_cup_down(&app).await;
    let mails = smtp.wait_for("desk@asl.example", 1, Duration::from_secs(30));
    mails[0].raw.len()
}

/// One incident to `desks` email addresses (subscribers of ten desks each) into Postfix's
/// `smtp-sink`, then `smtp-source -d -s 4` sending as many messages of the same size into the
/// same sink over four kept connections.
async fn fanout(desks: usize, tools: &Tools) {
    let (Some(sink_bin), Some(source_bin)) = (&tools.smtp_sink, &tools.smtp_source) else {
        println!(
            "fanout: Postfix's smtp-sink and smtp-source not found (benches/compare.sh installs them)"
        );
        return;
    };
    let size = message_size().await;
    let Some(sink) = counting_sink(sink_bin) else {
        println!("fanout: smtp-sink did not start");
        return;
    };
    let port = sink.port;
    let mut extra = String::with_capacity(desks * 40);
    for s in 0..desks.div_ceil(10) {
        let list: Vec<String> = (s * 10..((s + 1) * 10).min(desks))
            .map(|i| format!("\"desk{i}@asl.example\""))
            .collect();
        extra.push_str(&format!(
            "[[subscribers]]\nname = \"Sportelli {s}\"\naddresses = {{ email = [{}] }}\nsubscriptions = [{{ matchers = ['service=~\"cup.*\"'] }}]\n",
            list.join(", ")
        ));
    }
    let app = TestApp::spawn_on(
        port,
        &extra,
        &[("BANDITORE__CHANNELS__EMAIL__POOL_SIZE", "16")],
    )
    .await;
    // As a running service is when an outage comes: its subscribers read ahead by the idle
    // pipeline (half a second for 100,000 addresses), not by the alert's own step.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let started = fire_cup_down(&app).await;
    // Counted where the reference is, at the sink: when the first and the last message came.
    // The service's own `/metrics`, read under load, answered tens of milliseconds late.
    let pid = app.pid();
    let mut peak_kib = 0;
    while sink.received.load(Ordering::Relaxed) < desks as u64 {
        peak_kib = peak_kib.max(pid.map_or(0, rss_kib));
        if started.elapsed() > Duration::from_secs(600) {
            println!(
                "fanout: gave up after 600 s with {} of {desks} received",
                sink.received.load(Ordering::Relaxed)
            );
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let since = |t: &Mutex<Option<Instant>>| {
        t.lock()
            .unwrap()
            .map(|t| t.duration_since(started))
            .unwrap_or_default()
    };
    let (first, total, peak) = (since(&sink.first), since(&sink.latest), mib(peak_kib));
    let ours = desks as f64 / total.as_secs_f64();
    drop(app);
    let began = Instant::now();
    let out = Command::new(source_bin)
        .args([
            "-d",
            "-s",
            "4",
            "-m",
            &desks.to_string(),
            "-l",
            &size.to_string(),
            &format!("127.0.0.1:{port}"),
        ])
        .output()
        .expect("smtp-source runs");
    let theirs = desks as f64 / began.elapsed().as_secs_f64();
    println!(
        "fanout, 1 incident → {desks} desks by email into smtp-sink, SQLite synchronous=full, pool_size 16: Banditore {ours:.0} messages/s from the webhook to the last at the sink (first after {:.0} ms, {:.0}/s after it, peak {peak:.1} MiB resident); smtp-source -d -s 4, {desks} messages of {size} bytes: {theirs:.0} messages/s{}; ratio {:.2} (target ≥ 0.6)",
        ms(first),
        desks as f64 / (total - first).as_secs_f64(),
        if out.status.success() {
            ""
        } else {
            " (smtp-source failed)"
        },
        ours / theirs,
    );
}

struct Tools {
    alertmanager: Option<PathBuf>,
    wrk: Option<PathBuf>,
    smtp_sink: Option<PathBuf>,
    smtp_source: Option<PathBuf>,
}

fn main() {
    // `cargo test --all-targets` runs bench binaries too, without `--bench`: figures from a debug
    // build under a test run mean nothing, so only `cargo bench` measures.
    if !std::env::args().any(|a| a == "--bench") {
        println!(
            "compare benchmark: run it with `cargo bench --bench compare` or benches/compare.sh"
        );
        return;
    }
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with("--bench"))
        .collect();
    let quick = args.iter().any(|a| a == "--quick");
    let wanted: Vec<&str> = args
        .iter()
        .map(String::as_str)
        .filter(|a| !a.starts_with("--"))
        .collect();
    let run = |name: &str| wanted.is_empty() || wanted.contains(&name);
    let tools = Tools {
        alertmanager: find_tool("ALERTMANAGER", &["alertmanager", "prometheus-alertmanager"]),
        wrk: find_tool("WRK", &["wrk"]),
        smtp_sink: find_tool("SMTP_SINK", &["smtp-sink"]),
        smtp_source: find_tool("SMTP_SOURCE", &["smtp-source"]),
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        if run("latency") {
            latency(
                if quick { 200 } else { 1000 },
                if quick { 5 } else { 50 },
                tools.alertmanager.as_ref(),
            )
            .await;
        }
        if run("ingest") {
            ingest(if quick { 3 } else { 10 }, &tools).await;
        }
        if run("fanout") {
            fanout(if quick { 2_000 } else { 10_000 }, &tools).await;
            fanout(if quick { 20_000 } else { 100_000 }, &tools).await;
        }
    });
}
