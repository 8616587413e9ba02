//! End-to-end figures of the release binary, as an operator would see them: webhook-to-SMTP
//! latency, ingest throughput with memory, email fan-out, idle memory.
//!
//! `cargo bench --bench pipeline` runs everything; `-- latency|ingest|fanout|fanout-pg|citizens|citizens-pg|telegram|sms|sms-failover|sms-render|approval|social|probe-latency|dark-to-desk|dark-to-desk-pg|probes|status|signups|abuse|restart|takeover-pg|idle`
//! picks one, and `-- --quick` runs smaller sizes. `fanout-pg` (and `dark-to-desk-pg`) run on a fresh
//! database of the PostgreSQL server named by `BANDITORE_TEST_POSTGRES`, skipping without one.
//! `citizens` sends one approved statement to 1,000,000 citizens seeded into SQLite (100,000
//! with `--quick`); `citizens-pg` the same with two replicas on PostgreSQL. Postfix's `smtp-sink` is used as the fan-out sink when it is
//! installed (Debian package `postfix`); otherwise the test suite's SMTP server stands in and the
//! report says so. The numbers are printed, never asserted.

#[path = "../tests/integration/support/mod.rs"]
mod support;

#[path = "shared/mod.rs"]
mod shared;

#[path = "pipeline/citizens.rs"]
mod citizens;
#[path = "pipeline/dark_to_desk.rs"]
mod dark_to_desk;

use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use shared::*;
use support::*;

async fn idle() {
    let smtp = SmtpServer::start();
    let app = TestApp::spawn(&smtp, "", &[]).await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let pid = app.pid().unwrap();
    println!(
        "idle: resident memory {:.1} MiB after 3 s (target < 50 MiB)",
        mib(rss_kib(pid))
    );
}

async fn latency(incidents: usize) {
    let smtp = SmtpServer::start();
    let app = TestApp::spawn(&smtp, "", &[]).await;
    app.subscribe(json!({"name": "Sala operativa", "addresses": {"email": "sala@asl.example"}, "subscriptions": [{}]}))
        .await;
    let mut samples = Vec::with_capacity(incidents);
    for i in 0..incidents {
        samples.push(webhook_to_email(&app, &smtp, i).await);
    }
    samples.sort();
    println!(
        "latency: webhook to SMTP server over {incidents} incidents (group_wait 0, synchronous=full): p50 {:.2} ms, p90 {:.2} ms, p99 {:.2} ms, max {:.2} ms (target p99 < 20 ms)",
        ms(percentile(&samples, 0.50)),
        ms(percentile(&samples, 0.90)),
        ms(percentile(&samples, 0.99)),
        ms(*samples.last().unwrap()),
    );
}

/// Webhook → draft visible to the communications office (the drafts API the console reads),
/// and approval → public email at the SMTP server, over `incidents` incidents one after another.
async fn approval(incidents: usize, group_wait: &str) {
    let smtp = SmtpServer::start();
    let app = TestApp::spawn(&smtp, "", &[("BANDITORE__ROUTING__GROUP_WAIT", group_wait)]).await;
    app.subscribe(json!({"name": "Lista pubblica", "audience": "public",
        "addresses": {"email": "cittadini@lista.example"}, "subscriptions": [{}]}))
        .await;
    let mut to_draft = Vec::with_capacity(incidents);
    let mut to_channel = Vec::with_capacity(incidents);
    for i in 0..incidents {
        let body = alertmanager(
            "firing",
            &format!("Down{i}"),
            &[("service", &format!("svc-{i}")), ("severity", "critical")],
            &format!("bench-{i}"),
        );
        let sent = Instant::now();
        let resp = app
            .post_json("/api/v1/signals/alertmanager", Some(INGEST_TOKEN), &body)
            .await;
        assert_eq!(resp.status(), 202);
        let id = app.next_draft().await["id"].as_i64().unwrap_or_default();
        to_draft.push(sent.elapsed());
        let clicked = Instant::now();
        app.approve_draft(id).await;
        let mails = smtp.wait_for("cittadini@lista.example", i + 1, Duration::from_secs(30));
        to_channel.push(mails[i].received.duration_since(clicked));
    }
    to_draft.sort();
    to_channel.sort();
    println!(
        "approval (group_wait {group_wait}, {incidents} incidents): webhook to draft visible p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms (target < 2 s); approval to the email at the SMTP server p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms (target < 1 s)",
        ms(percentile(&to_draft, 0.50)),
        ms(percentile(&to_draft, 0.99)),
        ms(*to_draft.last().unwrap()),
        ms(percentile(&to_channel, 0.50)),
        ms(percentile(&to_channel, 0.99)),
        ms(*to_channel.last().unwrap()),
    );
}

fn am_body(alerts: usize, seed: u64) -> Value {
    let list: Vec<Value> = (0..alerts)
        .map(|k| {
            let n = (seed * 7 + k as u64 * 13) % 2000;
            json!({
                "status": "firing",
                "labels": {"alertname": "Bench", "service": format!("svc-{}", n % 50), "instance": format!("host-{n}"), "severity": "warning"},
                "annotations": {"summary": format!("bench alert {n}")},
                "startsAt": "2026-11-26T09:14:03.123456789Z",
                "endsAt": "0001-01-01T00:00:00Z",
                "generatorURL": "http://prometheus.example:9090/graph",
                "fingerprint": format!("{n:016x}"),
            })
        })
        .collect();
    json!({"version": "4", "status": "firing", "receiver": "banditore", "groupLabels": {}, "commonLabels": {}, "commonAnnotations": {}, "externalURL": "http://am", "alerts": list})
}

async fn ingest(clients: usize, alerts_per_request: usize, seconds: u64) {
    let smtp = SmtpServer::start();
    let app = Arc::new(TestApp::spawn(&smtp, "", &[]).await);
    let pid = app.pid().unwrap();
    let before = rss_kib(pid);
    let stop = Arc::new(AtomicBool::new(false));
    let accepted = Arc::new(AtomicU64::new(0));
    let peak = Arc::new(AtomicU64::new(before));
    let sampler = {
        let (stop, peak) = (stop.clone(), peak.clone());
        tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                peak.fetch_max(rss_kib(pid), Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        })
    };
    let bodies: Arc<Vec<String>> = Arc::new(
        (0..64)
            .map(|s| am_body(alerts_per_request, s).to_string())
            .collect(),
    );
    let started = Instant::now();
    let mut tasks = Vec::new();
    for c in 0..clients {
        let (app, stop, accepted, bodies) =
            (app.clone(), stop.clone(), accepted.clone(), bodies.clone());
        tasks.push(tokio::spawn(async move {
            let mut i = c;
            while !stop.load(Ordering::Relaxed) {
                let resp = app
                    .post(
                        "/api/v1/signals/alertmanager",
                        Some(INGEST_TOKEN),
                        "application/json",
                        bodies[i % bodies.len()].clone(),
                    )
                    .await;
                assert_eq!(resp.status(), 202);
                accepted.fetch_add(alerts_per_request as u64, Ordering::Relaxed);
                i += clients;
            }
        }));
    }
    tokio::time::sleep(Duration::from_secs(seconds)).await;
    stop.store(true, Ordering::Relaxed);
    for t in tasks {
        t.await.unwrap();
    }
    let elapsed = started.elapsed();
    let _ = sampler.await;
    let total = accepted.load(Ordering::Relaxed);
    // Every accepted signal must be in the store: 202 means durable.
    let stored = metric(
        &app,
        "banditore_signals_received_total{source=\"alertmanager\",outcome=\"accepted\"}",
    )
    .await as u64;
    let drain_started = Instant::now();
    loop {
        if metric(&app, "banditore_signals_unprocessed").await == 0.0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let drained = drain_started.elapsed();
    tokio::time::sleep(Duration::from_secs(2)).await;
    println!(
        "ingest: {clients} clients x {alerts_per_request} alert(s)/request for {:.1} s: {:.0} signals/s accepted ({total} total, {stored} counted by the server); engine backlog drained {:.1} s after the load stopped; resident memory {:.1} MiB before, {:.1} MiB peak, {:.1} MiB after (target >= 10,000/s, < 200 MiB)",
        elapsed.as_secs_f64(),
        total as f64 / elapsed.as_secs_f64(),
        drained.as_secs_f64(),
        mib(before),
        mib(peak.load(Ordering::Relaxed)),
        mib(rss_kib(pid)),
    );
}

struct Sink {
    child: Option<Child>,
    port: u16,
    name: &'static str,
    _fallback: Option<SmtpServer>,
}

impl Drop for Sink {
    fn drop(&mut self) {
        if let Some(c) = &mut self.child {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

fn sink() -> Sink {
    let port = free_port();
    let spawned = Command::new("smtp-sink")
        .args(["-u", "postfix", &format!("127.0.0.1:{port}"), "1024"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn();
    match spawned {
        Ok(child) => {
            std::thread::sleep(Duration::from_millis(300));
            Sink {
                child: Some(child),
                port,
                name: "postfix smtp-sink",
                _fallback: None,
            }
        }
        Err(_) => {
            let server = SmtpServer::start();
            Sink {
                child: None,
                port: server.addr().port(),
                name: "test SMTP server (smtp-sink not installed)",
                _fallback: Some(server),
            }
        }
    }
}

fn smtp_source_reference(port: u16) {
    let started = Instant::now();
    let out = Command::new("smtp-source")
        .args([
            "-s",
            "4",
            "-m",
            "20000",
            "-l",
            "4000",
            &format!("127.0.0.1:{port}"),
        ])
        .output();
    if let Ok(o) = out
        && o.status.success()
    {
        let secs = started.elapsed().as_secs_f64();
        println!(
            "reference: smtp-source, 4 sessions, 20,000 messages of 4 kB into the same sink: {:.0} messages/s",
            20000.0 / secs
        );
    }
}

/// Where the fan-out's replicas keep their state.
enum Store {
    Sqlite,
    Postgres { replicas: usize },
}

async fn fanout(subscribers: usize, pool_size: u32, store: Store) {
    let database = match store {
        Store::Sqlite => None,
        Store::Postgres { .. } => match fresh_database().await {
            Some(db) => Some(db),
            None => {
                println!(
                    "fanout on PostgreSQL: skipped, no server (start one with `eval \"$(.ci/postgres start durable)\"`)"
                );
                return;
            }
        },
    };
    let replicas = match store {
        Store::Sqlite => 1,
        Store::Postgres { replicas } => replicas,
    };
    let sink = sink();
    let mut extra = String::with_capacity(subscribers * 160);
    for i in 0..subscribers {
        extra.push_str(&format!(
            "[[subscribers]]\nname = \"Sportello {i}\"\naddresses = {{ email = \"desk{i}@asl.example\" }}\nsubscriptions = [{{ matchers = ['service=~\"cup.*\"'] }}]\n"
        ));
    }
    let pool = pool_size.to_string();
    let count = replicas.to_string();
    let mut apps = Vec::new();
    let starting = Instant::now();
    for r in 0..replicas {
        let instance = format!("replica-{r}");
        let mut env = vec![("BANDITORE__CHANNELS__EMAIL__POOL_SIZE", pool.as_str())];
        if let Some(db) = &database {
            env.push(("BANDITORE__STORE__URL", db.url.as_str()));
            env.push(("BANDITORE__STORE__REPLICAS", count.as_str()));
            env.push(("BANDITORE__CLUSTER__INSTANCE", instance.as_str()));
        }
        apps.push(TestApp::spawn_on(sink.port, &extra, &env).await);
    }
    // Each replica loads the configured subscribers into the store before it reports ready.
    let startup = starting.elapsed() / replicas as u32;
    let app = &apps[0];
    let started = fire_cup_down(app).await;
    let all: Vec<&TestApp> = apps.iter().collect();
    let Some(run) = wait_for_emails(&all, subscribers, started, Duration::from_secs(300)).await
    else {
        return;
    };
    let (first, total, peak) = (run.first, run.total, run.peak_kib);
    let on = match store {
        Store::Sqlite => "1 replica on SQLite".to_owned(),
        Store::Postgres { replicas: 1 } => "1 replica on PostgreSQL".to_owned(),
        Store::Postgres { replicas } => {
            let mut shares = Vec::new();
            for a in &apps {
                let sent = metric(
                    a,
                    "banditore_deliveries_total{channel=\"email\",outcome=\"sent\"}",
                )
                .await;
                shares.push(format!("{sent:.0}"));
            }
            format!(
                "{replicas} replicas on PostgreSQL sending {} each",
                shares.join(" / ")
            )
        }
    };
    println!(
        "fanout: 1 incident to {subscribers} subscribers via {}, {on} (pool_size {pool_size}): all sent in {:.2} s = {:.0} messages/s overall; first message after {:.0} ms; {:.0} messages/s after it; peak resident memory {:.1} MiB per replica; start-up with {subscribers} configured subscribers {:.1} s per replica (target >= 5,000/s)",
        sink.name,
        total.as_secs_f64(),
        subscribers as f64 / total.as_secs_f64(),
        ms(first),
        subscribers as f64 / (total - first).as_secs_f64(),
        mib(peak),
        startup.as_secs_f64(),
    );
    if sink.child.is_some() && matches!(store, Store::Sqlite) && pool_size == 16 {
        smtp_source_reference(sink.port);
    }
}

/// Keeps `cores` cores busy from this process (a spinning thread each) until dropped or `limit`
/// has passed: what a loaded host does to the process that paces its sends.
struct Burners {
    stop: Arc<AtomicBool>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

fn burn(cores: usize, limit: Duration) -> Burners {
    let stop = Arc::new(AtomicBool::new(false));
    let threads = (0..cores)
        .map(|_| {
            let stop = stop.clone();
            std::thread::spawn(move || {
                let started = Instant::now();
                let mut x = 0u64;
                while !stop.load(Ordering::Relaxed) && started.elapsed() < limit {
                    for i in 0..10_000u64 {
                        x = std::hint::black_box(
                            x.wrapping_mul(6364136223846793005).wrapping_add(i),
                        );
                    }
                }
            })
        })
        .collect();
    Burners { stop, threads }
}

impl Drop for Burners {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

/// One incident to `chats` Telegram chats, against the Bot API double enforcing Telegram's
/// limits (30 messages/s overall, 1/s per chat): the rate achieved and the 429s received; with
/// `busy`, both cores are kept busy by spinning threads of this process the whole time.
async fn telegram(chats: usize, busy: bool) {
    let double = TelegramDouble::start_with(TelegramOptions::default()).await;
    let limit = TelegramOptions::default().overall_per_second.unwrap_or(30);
    let ids: Vec<String> = (0..chats).map(|i| (100_000 + i).to_string()).collect();
    for id in &ids {
        double.add_private_chat(id.parse().unwrap(), "Sportello", None);
    }
    let list = ids
        .iter()
        .map(|id| format!("\"{id}\""))
        .collect::<Vec<_>>()
        .join(", ");
    let extra = format!(
        "[[subscribers]]\nname = \"Sportelli CUP\"\naddresses = {{ telegram = [{list}] }}\nsubscriptions = [{{ matchers = ['service=~\"cup.*\"'] }}]\n"
    );
    let smtp = SmtpServer::start();
    let api = double.api_url();
    let app = TestApp::spawn(
        &smtp,
        &extra,
        &[
            ("BANDITORE__CHANNELS__TELEGRAM__ENABLED", "true"),
            ("BANDITORE__CHANNELS__TELEGRAM__TOKEN", TELEGRAM_TOKEN),
            ("BANDITORE__CHANNELS__TELEGRAM__API_URL", &api),
        ],
    )
    .await;
    let budget = Duration::from_secs(chats as u64 / 10 + 60);
    let burners = busy.then(|| burn(2, budget));
    let started = fire_cup_down(&app).await;
    let deadline = started + budget;
    while double.sent().len() < chats && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    drop(burners);
    let sent = double.sent();
    let (Some(first), Some(last)) = (sent.first(), sent.last()) else {
        println!("telegram: nothing sent");
        return;
    };
    let span = last.at.duration_since(first.at).as_secs_f64();
    let rate = (sent.len() - 1) as f64 / span.max(f64::EPSILON);
    let throttled = double.throttled();
    let late = throttled
        .iter()
        .filter(|t| t.duration_since(first.at) > Duration::from_secs(1))
        .count();
    let mut per_chat: std::collections::HashMap<&str, usize> = std::collections::HashMap::new();
    for m in &sent {
        *per_chat.entry(m.chat_id.as_str()).or_default() += 1;
    }
    let twice = per_chat.values().filter(|n| **n > 1).count();
    let load = if busy {
        ", both cores kept busy by 2 spinning threads"
    } else {
        ""
    };
    println!(
        "telegram: 1 incident to {chats} chats{load}, double enforcing {limit} messages/s overall and 1/s per chat: {} sent in {span:.1} s after the first (which left {:.0} ms after the webhook) = {rate:.2} messages/s, {:.3} of the limit (target >= 0.95); 429s: {} in all, {late} after the first second (target 0); chats messaged twice: {twice}",
        sent.len(),
        ms(first.at.duration_since(started)),
        rate / f64::from(limit),
        throttled.len(),
    );
}

/// SMS failover from a throttled primary: Twilio paced at 3/s and answering 429 to everything,
/// Vonage at 30/s (its documented default, which the double enforces): the rate achieved against
/// the secondary's, and how often the primary was asked.
async fn sms_failover(messages: usize) {
    let double = SmsDouble::start().await;
    let phones: Vec<String> = (0..messages)
        .map(|i| format!("\"+39333{:07}\"", 2_000_000 + i))
        .collect();
    let provider = |name: &str,
                    username: &str,
                    password: &str,
                    sender: &str,
                    rate: u32,
                    priority: u32| {
        format!(
            "[[channels.sms.providers]]\nname = \"{name}\"\nkind = \"{name}\"\nbase_url = \"{}\"\nusername = \"{username}\"\npassword = \"{password}\"\nsender = \"{sender}\"\nrate_per_second = {rate}\npriority = {priority}\n\n",
            double.base_url()
        )
    };
    let extra = format!(
        "{}{}[[subscribers]]\nname = \"Reperibili\"\naddresses = {{ sms = [{}] }}\nsubscriptions = [{{ matchers = ['service=~\"cup.*\"'] }}]\n",
        provider("twilio", TWILIO_SID, TWILIO_TOKEN, "+15005550006", 3, 0),
        provider("vonage", VONAGE_KEY, VONAGE_SECRET, "Regione", 30, 1),
        phones.join(", ")
    );
    let smtp = SmtpServer::start();
    let app = TestApp::spawn(
        &smtp,
        &extra,
        &[
            ("BANDITORE__CHANNELS__SMS__ENABLED", "true"),
            ("BANDITORE__CHANNELS__SMS__CONCURRENCY", "16"),
        ],
    )
    .await;
    double.throttle_next(SmsProvider::Twilio, 100_000);
    let started = fire_cup_down(&app).await;
    let deadline = started + Duration::from_secs(messages as u64 / 3 + 60);
    while double.sent().len() < messages && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let sent = double.sent();
    let (Some(first), Some(last)) = (sent.first(), sent.last()) else {
        println!("sms-failover: nothing sent");
        return;
    };
    let span = last.at.duration_since(first.at).as_secs_f64();
    let rate = (sent.len() - 1) as f64 / span.max(f64::EPSILON);
    let via_vonage = sent
        .iter()
        .filter(|m| m.provider == SmsProvider::Vonage)
        .count();
    println!(
        "sms-failover: {messages} messages, Twilio (paced at 3/s) answering 429 to everything, Vonage at 30/s: {} sent ({via_vonage} by Vonage) in {span:.1} s after the first (which left {:.0} ms after the webhook) = {rate:.2} messages/s, {:.3} of Vonage's rate (at Twilio's pace it would be 0.100); Twilio asked {} times",
        sent.len(),
        ms(first.at.duration_since(started)),
        rate / 30.0,
        double.requests_to(SmsProvider::Twilio).len(),
    );
}

/// `kill -9` of the only process on SQLite with a notice due, then a restart: how long after the
/// restarted process listens its first message is sent (the dead process's leadership lease is
/// 10 s).
async fn restart(runs: usize) {
    let mut after_listening = Vec::new();
    let mut after_spawn = Vec::new();
    for _ in 0..runs {
        let smtp = SmtpServer::start();
        let mut app = TestApp::spawn(&smtp, "", &[("BANDITORE__ROUTING__GROUP_WAIT", "1s")]).await;
        app.subscribe(json!({
            "name": "CUP Foligno",
            "language": "it",
            "addresses": {"email": ["cup.foligno@asl.example"]},
            "subscriptions": [{"matchers": ["service=~\"cup.*\""]}],
        }))
        .await;
        fire_cup_down(&app).await;
        app.kill();
        // The grouping wait is over by the restart: the notice is due at once.
        tokio::time::sleep(Duration::from_millis(1_200)).await;
        let spawned = Instant::now();
        app.start().await;
        let listening = Instant::now();
        smtp.wait_for("cup.foligno@asl.example", 1, Duration::from_secs(30));
        let sent = smtp.mails()[0].received;
        after_listening.push(sent.saturating_duration_since(listening));
        after_spawn.push(sent.saturating_duration_since(spawned));
    }
    after_listening.sort();
    after_spawn.sort();
    println!(
        "restart: kill -9 on SQLite with a notice due, {runs} runs: first send {:.0} ms after the restarted process listens (median; max {:.0} ms), {:.0} ms after it was started (median; max {:.0} ms) (target <= 1,000 ms)",
        ms(percentile(&after_listening, 0.5)),
        ms(*after_listening.last().unwrap_or(&Duration::ZERO)),
        ms(percentile(&after_spawn, 0.5)),
        ms(*after_spawn.last().unwrap_or(&Duration::ZERO)),
    );
}

/// Two replicas on PostgreSQL fanning one incident out to `desks` desks through an SMTP server
/// taking 2 ms a message; one is killed after a fifth: how soon the survivor takes over the dead
/// one's claimed deliveries, when the last message arrives, and how many were sent twice.
async fn takeover_pg(desks: usize) {
    let Some(db) = fresh_database().await else {
        println!(
            "takeover-pg: skipped, no server (start one with `eval \"$(.ci/postgres start durable)\"`)"
        );
        return;
    };
    let smtp = SmtpServer::start_with(SmtpOptions {
        delay: Some(Duration::from_millis(2)),
        ..SmtpOptions::default()
    });
    let mut extra = String::new();
    for i in 0..desks {
        extra.push_str(&format!(
            "[[subscribers]]\nname = \"Sportello {i}\"\naddresses = {{ email = \"desk{i}@asl.example\" }}\nsubscriptions = [{{ matchers = ['service=~\"cup.*\"'] }}]\n"
        ));
    }
    let mut apps = Vec::new();
    for r in 0..2 {
        let instance = format!("replica-{r}");
        apps.push(
            TestApp::spawn(
                &smtp,
                &extra,
                &[
                    ("BANDITORE__STORE__URL", db.url.as_str()),
                    ("BANDITORE__STORE__REPLICAS", "2"),
                    ("BANDITORE__CLUSTER__INSTANCE", instance.as_str()),
                    ("BANDITORE__CHANNELS__EMAIL__POOL_SIZE", "4"),
                ],
            )
            .await,
        );
    }
    let started = fire_cup_down(&apps[0]).await;
    while smtp.mails().len() < desks / 5 {
        if started.elapsed() > Duration::from_secs(120) {
            println!("takeover-pg: the fan-out did not start");
            return;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    apps[0].kill();
    let killed = Instant::now();
    let mut taken_over = None;
    while smtp.mails().len() < desks && killed.elapsed() < Duration::from_secs(180) {
        if taken_over.is_none()
            && apps[1]
                .logs()
                .contains("reclaimed deliveries whose worker stopped")
        {
            taken_over = Some(killed.elapsed());
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let last = smtp
        .mails()
        .iter()
        .map(|m| m.received)
        .max()
        .map(|t| t.saturating_duration_since(killed));
    let mut counts = std::collections::HashMap::new();
    for mail in smtp.mails() {
        for to in mail.to {
            *counts.entry(to).or_insert(0usize) += 1;
        }
    }
    let duplicates: usize = counts.values().map(|c| c - 1).sum();
    println!(
        "takeover-pg: 2 replicas on PostgreSQL, {desks} desks, one killed after a fifth: its claims taken over {} after the kill (target <= 5 s); last message {} after the kill; {} of {desks} desks told; {duplicates} sent twice",
        taken_over.map_or("never".to_owned(), |d| format!("{:.2} s", d.as_secs_f64())),
        last.map_or("-".to_owned(), |d| format!("{:.2} s", d.as_secs_f64())),
        counts.len(),
    );
}

/// Rendering an SMS (template, folding, fitting) and counting its segments, in this process.
fn sms_render(n: usize) {
    use banditore::domain::UpdateKind;
    use banditore::render::{Renderer, sample_context, sms};
    let it = "it".to_owned().try_into().unwrap();
    let renderer = Renderer::new(
        std::path::Path::new(""),
        &it,
        jiff::tz::TimeZone::UTC,
        &banditore::channel::forms(),
    )
    .unwrap();
    let ctx = sample_context(UpdateKind::Opened);
    let started = Instant::now();
    let mut segments = 0u64;
    for _ in 0..n {
        let out = renderer.render_sms("it", &ctx).unwrap();
        segments += u64::from(sms::measure(&out.text).segments);
    }
    let render_rate = n as f64 / started.elapsed().as_secs_f64();
    let text = renderer.render_sms("it", &ctx).unwrap().text;
    let started = Instant::now();
    for _ in 0..n * 10 {
        segments += u64::from(sms::measure(std::hint::black_box(&text)).segments);
    }
    let count_rate = (n * 10) as f64 / started.elapsed().as_secs_f64();
    println!(
        "sms-render: {render_rate:.0} messages/s rendered, folded and fitted; {count_rate:.0} texts/s segment-counted ({} characters; checksum {segments})",
        text.chars().count()
    );
}

/// Fan-out of one incident to `recipients` phones through the Twilio double, the provider paced
/// at `rate` messages/s.
async fn sms(recipients: usize, rate: u32) {
    let double = SmsDouble::start().await;
    let phones: Vec<String> = (0..recipients)
        .map(|i| format!("\"+39333{:07}\"", 1_000_000 + i))
        .collect();
    let extra = format!(
        "[[channels.sms.providers]]\nname = \"twilio\"\nkind = \"twilio\"\nbase_url = \"{}\"\nusername = \"{TWILIO_SID}\"\npassword = \"{TWILIO_TOKEN}\"\nsender = \"+15005550006\"\nrate_per_second = {rate}\n\n[[subscribers]]\nname = \"Reperibili\"\naddresses = {{ sms = [{}] }}\nsubscriptions = [{{ matchers = ['service=~\"cup.*\"'] }}]\n",
        double.base_url(),
        phones.join(", ")
    );
    let smtp = SmtpServer::start();
    let app = TestApp::spawn(
        &smtp,
        &extra,
        &[
            ("BANDITORE__CHANNELS__SMS__ENABLED", "true"),
            ("BANDITORE__CHANNELS__SMS__CONCURRENCY", "16"),
        ],
    )
    .await;
    let started = fire_cup_down(&app).await;
    let deadline = started + Duration::from_secs(recipients as u64 / u64::from(rate) * 2 + 60);
    while double.sent().len() < recipients && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let sent = double.sent();
    let (Some(first), Some(last)) = (sent.first(), sent.last()) else {
        println!("sms: nothing sent");
        return;
    };
    let span = last.at.duration_since(first.at).as_secs_f64();
    let achieved = (sent.len() - 1) as f64 / span.max(f64::EPSILON);
    let mut numbers: Vec<&str> = sent.iter().map(|m| m.to.as_str()).collect();
    numbers.sort_unstable();
    numbers.dedup();
    println!(
        "sms: 1 incident to {recipients} phones through the Twilio double, provider paced at {rate}/s: {} sent in {span:.1} s after the first (which left {:.0} ms after the webhook) = {achieved:.2} messages/s, {:.3} of the configured rate (target >= 0.95); phones texted twice: {}",
        sent.len(),
        first.at.duration_since(started).as_secs_f64() * 1000.0,
        achieved / f64::from(rate),
        sent.len() - numbers.len()
    );
}

/// Approval of a public draft to the post on each social network (their doubles on loopback),
/// for the opening post and for an update replying in the thread.
async fn social(incidents: usize) {
    use support::networks::Networks;
    let smtp = SmtpServer::start();
    let net = Networks::start().await;
    let config = net.config(support::mastodon::MASTODON_TOKEN);
    let app = TestApp::spawn(&smtp, &config, &[]).await;
    let counts = |net: &Networks| {
        [
            net.mastodon.posts().len(),
            net.bluesky.posts().len(),
            net.x.posts().len(),
            net.facebook.posts().len(),
        ]
    };
    // Per network, the time from the click to the post; and to the last of the four.
    let mut took: [Vec<Duration>; 5] = Default::default();
    let mut replies: [Vec<Duration>; 5] = Default::default();
    for i in 0..incidents {
        let req = json!({"title": format!("Servizio {i} non raggiungibile"), "severity": "critical",
            "labels": {"service": format!("svc-{i}")}, "body": "Verifiche in corso."});
        let resp = app
            .post_json("/api/v1/incidents", Some(OPERATOR_TOKEN), &req)
            .await;
        assert_eq!(resp.status(), 201);
        let incident = resp.json::<Value>().await.unwrap()["id"].as_i64().unwrap();
        for (round, into) in [&mut took, &mut replies].into_iter().enumerate() {
            if round == 1 {
                let resp = app
                    .post_json(
                        &format!("/api/v1/incidents/{incident}/updates"),
                        Some(OPERATOR_TOKEN),
                        &json!({"status": "identified", "body": "Causa individuata."}),
                    )
                    .await;
                assert_eq!(resp.status(), 201);
            }
            let id = app.next_draft().await["id"].as_i64().unwrap_or_default();
            let before = counts(&net);
            let clicked = Instant::now();
            app.approve_draft(id).await;
            let mut done = [None; 4];
            while done.iter().any(Option::is_none) {
                let now = counts(&net);
                for n in 0..4 {
                    if done[n].is_none() && now[n] > before[n] {
                        done[n] = Some(clicked.elapsed());
                    }
                }
                assert!(
                    clicked.elapsed() < Duration::from_secs(30),
                    "posts missing: {done:?}"
                );
                tokio::time::sleep(Duration::from_micros(500)).await;
            }
            let done = done.map(|d| d.unwrap_or_default());
            for n in 0..4 {
                into[n].push(done[n]);
            }
            into[4].push(done.into_iter().max().unwrap_or_default());
        }
    }
    let names = ["mastodon", "bluesky", "x", "facebook", "all four"];
    for (what, figures) in [("first post", &mut took), ("reply in thread", &mut replies)] {
        let line: Vec<String> = figures
            .iter_mut()
            .zip(names)
            .map(|(f, name)| {
                f.sort();
                format!(
                    "{name} p50 {:.1} ms, p99 {:.1} ms",
                    ms(percentile(f, 0.50)),
                    ms(percentile(f, 0.99))
                )
            })
            .collect();
        println!(
            "social ({incidents} incidents, {what}): approval to the network's post: {} (target: seconds)",
            line.join("; ")
        );
    }
    let tweets = net.x.posts();
    let threaded = tweets.iter().filter(|t| t.in_reply_to.is_some()).count();
    println!(
        "social: {} posts on X, {threaded} of them replies",
        tweets.len()
    );
}

/// CPU time (user + system) the process has used, from /proc.
fn cpu_time(pid: u32) -> Duration {
    let ticks_per_second = 100.0; // USER_HZ on Linux
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| {
            // Fields after the command name (which may hold spaces) start at ") ".
            let rest = s
                .rsplit_once(") ")?
                .1
                .split_whitespace()
                .collect::<Vec<_>>();
            let utime: f64 = rest.get(11)?.parse().ok()?;
            let stime: f64 = rest.get(12)?.parse().ok()?;
            Some(Duration::from_secs_f64((utime + stime) / ticks_per_second))
        })
        .unwrap_or_default()
}

/// Time from a watched service going dark to the desk's email, with interval 10 s and
/// threshold 2: the service answering 503 at once, and the service no longer answering at all
/// (the check waits for its 5 s timeout).
async fn probe_latency(runs: usize) {
    use support::targets::{HttpTarget, Mode};
    let smtp = SmtpServer::start();
    let site = HttpTarget::start().await;
    let extra = format!(
        r#"
[[subscribers]]
name = "CUP Foligno"
addresses = {{ email = "desk@asl.example" }}
subscriptions = [{{ matchers = ['service="cup"'] }}]

[[probes]]
name = "cup-portale"
service = "cup"
kind = "http"
url = "{}"
interval = "10s"
timeout = "5s"
failure_threshold = 2
success_threshold = 2
"#,
        site.url()
    );
    let app = TestApp::spawn(&smtp, &extra, &[]).await;
    for (mode, what) in [
        (Mode::Failing, "answering 503"),
        (Mode::Hanging, "not answering"),
    ] {
        let mut took = Vec::new();
        for _ in 0..runs {
            let before = smtp.mails_to("desk@asl.example").len();
            // Going dark at a random moment of the probe's interval.
            tokio::time::sleep(Duration::from_millis(rand::random::<u64>() % 10_000)).await;
            let dark = Instant::now();
            site.set(mode);
            loop {
                if smtp.mails_to("desk@asl.example").len() > before {
                    break;
                }
                assert!(dark.elapsed() < Duration::from_secs(90), "no email");
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            took.push(dark.elapsed());
            site.set(Mode::Up);
            // Wait for the resolution, so the next run starts from a service that is up.
            loop {
                if smtp.mails_to("desk@asl.example").len() > before + 1 {
                    break;
                }
                assert!(dark.elapsed() < Duration::from_secs(180), "no resolution");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
        took.sort();
        let secs: Vec<String> = took
            .iter()
            .map(|d| format!("{:.1}", d.as_secs_f64()))
            .collect();
        println!(
            "probe-latency ({what}, interval 10s, threshold 2, {runs} runs): service dark to the desk's email {} s; max {:.1} s (target < 30 s)",
            secs.join(", "),
            took.last().unwrap_or(&Duration::ZERO).as_secs_f64()
        );
    }
    drop(app);
}

/// The cost of 1,000 HTTP probes at a 30 s interval against a local site: CPU and memory of the
/// Banditore process over two minutes.
async fn probes_cost(probes: usize, seconds: u64) {
    use support::targets::HttpTarget;
    let smtp = SmtpServer::start();
    let site = HttpTarget::start().await;
    let mut extra = String::new();
    for i in 0..probes {
        extra.push_str(&format!(
            "[[probes]]\nname = \"p{i}\"\nservice = \"svc-{}\"\nkind = \"http\"\nurl = \"{}?p={i}\"\ninterval = \"30s\"\n",
            i % 50,
            site.url()
        ));
    }
    let app = TestApp::spawn(&smtp, &extra, &[]).await;
    let pid = app.pid().expect("the binary's pid");
    // Let every probe run once (their offsets spread them over the first interval).
    tokio::time::sleep(Duration::from_secs(31)).await;
    let (cpu0, served0, t0) = (cpu_time(pid), site.requests(), Instant::now());
    let mut peak = 0;
    while t0.elapsed() < Duration::from_secs(seconds) {
        peak = peak.max(rss_kib(pid));
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let cpu = cpu_time(pid) - cpu0;
    let wall = t0.elapsed();
    let checks = site.requests() - served0;
    println!(
        "probes ({probes} HTTP probes every 30 s, {} s measured): {checks} checks ({:.1}/s), CPU {:.2} s = {:.1} % of one core, {:.1} µs per check; memory {:.1} MiB peak, {:.1} MiB now",
        wall.as_secs(),
        checks as f64 / wall.as_secs_f64(),
        cpu.as_secs_f64(),
        100.0 * cpu.as_secs_f64() / wall.as_secs_f64(),
        1e6 * cpu.as_secs_f64() / checks.max(1) as f64,
        mib(peak),
        mib(rss_kib(pid)),
    );
    let incidents = app.get_json("/api/v1/incidents", VIEWER_TOKEN).await;
    println!(
        "probes: {} incidents opened (0 expected: the site stayed up)",
        incidents["incidents"].as_array().map_or(0, Vec::len)
    );
}

/// The public status page under load from `wrk` on loopback (a few services, an incident with an
/// approved statement): requests per second, latency, and the page's weight.
async fn status_page(seconds: u64) {
    let smtp = SmtpServer::start();
    let mut extra = String::new();
    for (id, name) in [
        ("cup", "Prenotazioni (CUP)"),
        ("referti", "Referti online"),
        ("portale", "Portale sanità"),
        ("fse", "Fascicolo sanitario"),
    ] {
        extra.push_str(&format!("[[status.services]]\nid = \"{id}\"\nname = \"{name}\"\nmatchers = ['service=\"{id}\"']\n"));
    }
    // With the sign-up button, as a deployment that offers it shows the page.
    extra.push_str("[status.subscribe]\nchannels = [\"email\"]\n");
    let mut app = TestApp::spawn(&smtp, &extra, &[]).await;
    let req = json!({"title": "CUP giù", "severity": "critical", "labels": {"service": "cup"},
        "body": "Prenotazioni sospese in tutta la regione."});
    let resp = app
        .post_json("/api/v1/incidents", Some(OPERATOR_TOKEN), &req)
        .await;
    assert_eq!(resp.status(), 201);
    let id = app.next_draft().await["id"].as_i64().unwrap_or_default();
    app.approve_draft(id).await;
    tokio::time::sleep(Duration::from_millis(2100)).await;
    let page = app
        .get("/status", None)
        .await
        .text()
        .await
        .unwrap_or_default();
    println!(
        "status page: {} bytes of HTML (target < 30 KB), no script, one inline stylesheet",
        page.len()
    );
    let url = app.url("/status");
    let out = Command::new("wrk")
        .args(["-t2", "-c64", &format!("-d{seconds}s"), "--latency", &url])
        .output();
    match out {
        Ok(out) => {
            let text = String::from_utf8_lossy(&out.stdout);
            for line in text.lines().filter(|l| {
                l.contains("Requests/sec")
                    || l.contains("99%")
                    || l.contains("50%")
                    || l.contains("requests in")
            }) {
                println!(
                    "status page under wrk (2 threads, 64 connections, {seconds} s): {}",
                    line.trim()
                );
            }
        }
        Err(e) => {
            println!("status page: wrk not available ({e}); install it (apt-get install wrk)")
        }
    }
    app.terminate();
}

/// Citizens signing up by email, one after another: how long the sign-up request takes (the
/// sign-up stored and the link accepted by the mail server, so the link is in the mailbox when
/// the page answers; checked), then confirming.
/// Abuse, bounded and on loopback: `logins` console logins sent at once from one address (an
/// unknown name and the real one), with the process's peak resident memory and how many
/// passwords it checked; then a sign-up flood of `flood` forms for one mailbox (+tags) from one
/// address, and how many links the mail server received.
async fn abuse(logins: usize, flood: usize) {
    let smtp = SmtpServer::start();
    let extra = "[[status.services]]\nid = \"cup\"\nname = \"Prenotazioni\"\nmatchers = ['service=\"cup\"']\n\
         [status.subscribe]\nchannels = [\"email\"]\n";
    let mut app = TestApp::spawn(&smtp, extra, &[]).await;
    app.add_user("m.rossi", "una password lunga abbastanza", "communicator")
        .await;
    let pid = app.pid().unwrap_or(0);
    let before = rss_kib(pid);
    // Every login needs its form's token: fetched first, then all posted at once.
    let mut forms = Vec::new();
    for _ in 0..logins {
        let b = console_browser();
        let page = b.get(app.url("/console/login")).send().await.unwrap();
        let token = hidden_field(&page.text().await.unwrap(), "login_token");
        forms.push((b, token));
    }
    let peak = Arc::new(AtomicU64::new(before));
    let sampling = Arc::new(AtomicBool::new(true));
    let sampler = {
        let (peak, sampling) = (peak.clone(), sampling.clone());
        tokio::spawn(async move {
            while sampling.load(Ordering::Relaxed) {
                peak.fetch_max(rss_kib(pid), Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
    };
    let started = Instant::now();
    let mut posts = Vec::new();
    for (i, (b, token)) in forms.into_iter().enumerate() {
        let url = app.url("/console/login");
        let name = if i % 2 == 0 { "m.rossi" } else { "nessuno" };
        posts.push(tokio::spawn(async move {
            b.post(url)
                .form(&[
                    ("login_token", token.as_str()),
                    ("username", name),
                    ("password", "indovina"),
                ])
                .send()
                .await
                .map(|r| r.status().as_u16())
                .unwrap_or(0)
        }));
    }
    let mut statuses = std::collections::BTreeMap::new();
    for p in posts {
        *statuses.entry(p.await.unwrap_or(0)).or_insert(0usize) += 1;
    }
    let took = started.elapsed();
    tokio::time::sleep(Duration::from_millis(500)).await;
    sampling.store(false, Ordering::Relaxed);
    let _ = sampler.await;
    let after = rss_kib(pid);
    let checked = metric(&app, "banditore_console_logins_total{outcome=\"refused\"}").await
        + metric(&app, "banditore_console_logins_total{outcome=\"ok\"}").await;
    println!(
        "abuse: {logins} console logins at once from one address (half for a real user, half unknown): answered in {:.2} s {statuses:?}; {checked:.0} passwords checked (limit: 5 per name and address, 20 per address); resident memory {:.1} MiB before, peak {:.1} MiB, {:.1} MiB half a second after (target: peak < 150 MiB)",
        took.as_secs_f64(),
        mib(before),
        mib(peak.load(Ordering::Relaxed)),
        mib(after),
    );
    let http = reqwest::Client::new();
    let mut accepted = 0;
    let mut limited = 0;
    for i in 0..flood {
        let body = format!("channel=email&services=cup&address=vittima%2B{i}@example.org");
        let resp = http
            .post(app.url("/status/subscribe"))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(body)
            .send()
            .await
            .unwrap();
        match resp.status().as_u16() {
            202 => accepted += 1,
            429 => limited += 1,
            _ => {}
        }
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    println!(
        "abuse: {flood} sign-up forms for one mailbox (vittima+N@) from one address: {accepted} answered 202, {limited} answered 429; links received by the mail server: {} (target: at most the per-address limit)",
        smtp.mails().len()
    );
    app.terminate();
}

async fn signups(count: usize) {
    let smtp = SmtpServer::start();
    let extra = format!(
        "[[status.services]]\nid = \"cup\"\nname = \"Prenotazioni\"\nmatchers = ['service=\"cup\"']\n\
         [status.subscribe]\nchannels = [\"email\"]\nper_ip = {}\n",
        count * 2
    );
    let mut app = TestApp::spawn(&smtp, &extra, &[]).await;
    let http = reqwest::Client::new();
    let (mut answered, mut confirmed) = (Vec::new(), Vec::new());
    for i in 0..count {
        let address = format!("cittadino{i}@example.org");
        let body = format!("channel=email&services=cup&address={address}");
        let start = Instant::now();
        let resp = http
            .post(app.url("/status/subscribe"))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(body)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 202);
        answered.push(start.elapsed());
        let text = smtp
            .mails_to(&address)
            .first()
            .map(|m| m.text())
            .expect("the link is at the mail server when the page answers");
        let path = text
            .split_whitespace()
            .find(|w| w.contains("/status/subscribe/confirm/"))
            .and_then(|l| l.split("https://banditore.asl.example").nth(1))
            .map(|p| p.split('?').next().unwrap_or(p).to_owned())
            .unwrap();
        let start = Instant::now();
        let resp = http.post(app.url(&path)).send().await.unwrap();
        assert_eq!(resp.status(), 200);
        confirmed.push(start.elapsed());
    }
    for (what, mut d) in [
        (
            "sign-up answered (stored, link accepted by the mail server)",
            answered,
        ),
        ("confirmation answered (citizen subscribed)", confirmed),
    ] {
        d.sort();
        println!(
            "signups: {what}, {count} citizens: p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
            ms(percentile(&d, 0.5)),
            ms(percentile(&d, 0.99)),
            ms(d[d.len() - 1])
        );
    }
    app.terminate();
}

fn main() {
    // `cargo test --all-targets` runs bench binaries too, without `--bench`: figures from a debug
    // build under a test run mean nothing, so only `cargo bench` measures.
    if !std::env::args().any(|a| a == "--bench") {
        println!("pipeline benchmark: run it with `cargo bench --bench pipeline`");
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
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        if run("idle") {
            idle().await;
        }
        if run("latency") {
            latency(if quick { 100 } else { 500 }).await;
        }
        if run("ingest") {
            let secs = if quick { 3 } else { 10 };
            ingest(16, 1, secs).await;
            ingest(64, 1, secs).await;
            ingest(16, 10, secs).await;
        }
        if run("fanout") {
            let n = if quick { 2000 } else { 10_000 };
            fanout(n, 16, Store::Sqlite).await;
            if !quick {
                fanout(n, 8, Store::Sqlite).await;
                fanout(n, 32, Store::Sqlite).await;
            }
        }
        if run("telegram") {
            telegram(if quick { 300 } else { 5000 }, false).await;
            telegram(if quick { 300 } else { 5000 }, true).await;
        }
        if run("sms-failover") {
            sms_failover(if quick { 150 } else { 600 }).await;
        }
        if run("restart") {
            restart(if quick { 3 } else { 10 }).await;
        }
        if run("takeover-pg") {
            takeover_pg(if quick { 1500 } else { 3000 }).await;
        }
        if run("approval") {
            let n = if quick { 20 } else { 100 };
            approval(n, "0s").await;
            approval(n, "500ms").await;
        }
        if run("probe-latency") {
            probe_latency(if quick { 1 } else { 3 }).await;
        }
        if run("dark-to-desk") {
            dark_to_desk::dark_to_desk(if quick { 2 } else { 5 }, Store::Sqlite).await;
        }
        if run("dark-to-desk-pg") {
            dark_to_desk::dark_to_desk(if quick { 2 } else { 5 }, Store::Postgres { replicas: 2 })
                .await;
        }
        if run("probes") {
            probes_cost(1000, if quick { 30 } else { 120 }).await;
        }
        if run("status") {
            status_page(if quick { 5 } else { 15 }).await;
        }
        if run("abuse") {
            abuse(if quick { 200 } else { 1000 }, if quick { 20 } else { 100 }).await;
        }
        if run("signups") {
            signups(if quick { 50 } else { 200 }).await;
        }
        if run("social") {
            social(if quick { 10 } else { 50 }).await;
        }
        if run("sms-render") {
            sms_render(if quick { 2_000 } else { 20_000 });
        }
        if run("sms") {
            sms(if quick { 1_000 } else { 10_000 }, 100).await;
        }
        if run("citizens") {
            citizens::citizens(if quick { 100_000 } else { 1_000_000 }, 0).await;
        }
        if run("citizens-pg") {
            citizens::citizens(if quick { 100_000 } else { 1_000_000 }, 2).await;
        }
        if run("fanout-pg") {
            let n = if quick { 2000 } else { 10_000 };
            fanout(n, 16, Store::Postgres { replicas: 1 }).await;
            fanout(n, 16, Store::Postgres { replicas: 2 }).await;
        }
    });
}
