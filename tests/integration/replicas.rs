//! Several replicas of the real binary on one PostgreSQL database, against one real SMTP server:
//! work shared without duplicates or losses, a replica killed mid-fan-out, leadership moving,
//! a rate limit that holds for the whole deployment, migrations run side by side.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use sqlx::Connection;

use crate::support::*;

/// Config tables for `n` desks, all following CUP.
fn desks(n: usize) -> String {
    let mut extra = String::new();
    for i in 0..n {
        extra.push_str(&format!(
            "[[subscribers]]\nname = \"Sportello {i}\"\naddresses = {{ email = \"desk{i}@asl.example\" }}\nsubscriptions = [{{ matchers = ['service=~\"cup.*\"'] }}]\n"
        ));
    }
    extra
}

/// `n` replicas sharing `db`, named replica-0, replica-1…
async fn replicas(
    n: usize,
    db: &TestDatabase,
    smtp: &SmtpServer,
    extra: &str,
    env: &[(&str, &str)],
) -> Vec<TestApp> {
    let mut apps = Vec::new();
    for i in 0..n {
        let name = format!("replica-{i}");
        let mut all: Vec<(&str, &str)> = vec![
            ("BANDITORE__STORE__URL", &db.url),
            ("BANDITORE__STORE__REPLICAS", "2"),
            ("BANDITORE__CLUSTER__INSTANCE", &name),
            ("BANDITORE__CLUSTER__LEADER_LEASE", "3s"),
            ("BANDITORE__CHANNELS__EMAIL__TIMEOUT", "3s"),
        ];
        all.extend_from_slice(env);
        apps.push(TestApp::spawn(smtp, extra, &all).await);
    }
    apps
}

/// Posts "CUP backend down" to `app` and checks it was accepted.
async fn fire(app: &TestApp) {
    let body = alertmanager(
        "firing",
        "CupDown",
        &[("service", "cup-backend"), ("severity", "critical")],
        "CUP backend non risponde",
    );
    let resp = app
        .post_json("/api/v1/signals/alertmanager", Some(INGEST_TOKEN), &body)
        .await;
    assert_eq!(resp.status(), 202);
}

/// How many messages each recipient got.
fn tally(smtp: &SmtpServer) -> BTreeMap<String, usize> {
    let mut counts = BTreeMap::new();
    for mail in smtp.mails() {
        for to in mail.to {
            *counts.entry(to).or_default() += 1;
        }
    }
    counts
}

async fn sent_by(app: &TestApp) -> u64 {
    metric(
        app,
        "banditore_deliveries_total{channel=\"email\",outcome=\"sent\"} ",
    )
    .await as u64
}

/// What the replica's `banditore_leader` gauge says.
async fn leads(app: &TestApp) -> Option<bool> {
    let metrics = app.get("/metrics", None).await.text().await.ok()?;
    let value = metrics
        .lines()
        .find_map(|l| l.strip_prefix("banditore_leader "))?;
    Some(value.trim() == "1")
}

async fn wait_for_total(smtp: &SmtpServer, total: usize, within: Duration) {
    let deadline = Instant::now() + within;
    while smtp.mails().len() < total {
        assert!(
            Instant::now() < deadline,
            "only {} of {total} messages arrived",
            smtp.mails().len()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn two_replicas_share_a_fan_out_without_duplicates_or_losses() {
    let Some(db) = fresh_database().await else {
        return;
    };
    let smtp = SmtpServer::start();
    let n = 2000;
    let apps = replicas(2, &db, &smtp, &desks(n), &[]).await;
    fire(&apps[1]).await;
    wait_for_total(&smtp, n, Duration::from_secs(120)).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let counts = tally(&smtp);
    assert_eq!(counts.len(), n, "every desk got its message");
    let twice: Vec<_> = counts.iter().filter(|(_, c)| **c > 1).collect();
    assert!(twice.is_empty(), "duplicates: {twice:?}");
    let (a, b) = (sent_by(&apps[0]).await, sent_by(&apps[1]).await);
    assert_eq!(a + b, n as u64);
    assert!(a > 0 && b > 0, "both replicas sent: {a} and {b}");
}

#[tokio::test]
async fn a_replica_killed_mid_fan_out_loses_nothing() {
    let Some(db) = fresh_database().await else {
        return;
    };
    // A relay that takes 2 ms a message keeps the fan-out going long enough to kill in the middle.
    let smtp = SmtpServer::start_with(SmtpOptions {
        delay: Some(Duration::from_millis(2)),
        ..SmtpOptions::default()
    });
    let n = 3000;
    let mut apps = replicas(
        2,
        &db,
        &smtp,
        &desks(n),
        &[("BANDITORE__CHANNELS__EMAIL__POOL_SIZE", "4")],
    )
    .await;
    fire(&apps[0]).await;
    wait_for_total(&smtp, n / 5, Duration::from_secs(60)).await;
    let killed_at = smtp.mails().len();
    apps[0].kill();
    let killed = Instant::now();
    // The dead replica's claims come back when their short lease (3 s) runs out, found by the
    // survivor's look every quarter of a lease, not after a minute.
    let survivor = &apps[1];
    while !survivor
        .logs()
        .contains("reclaimed deliveries whose worker stopped")
    {
        assert!(
            killed.elapsed() < Duration::from_secs(15),
            "the dead replica's claims were not taken over"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let taken_over = killed.elapsed();
    eprintln!("the dead replica's claims were taken over {taken_over:?} after the kill");
    assert!(taken_over < Duration::from_secs(8), "{taken_over:?}");
    wait_for_total(&smtp, n, Duration::from_secs(120)).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let counts = tally(&smtp);
    assert_eq!(counts.len(), n, "no desk lost its message");
    let duplicates: usize = counts.values().map(|c| c - 1).sum();
    // The documented window: messages the relay had accepted from the killed replica before it
    // could record them (its sends in flight and its last unwritten outcomes).
    eprintln!("killed after {killed_at} of {n} messages; duplicates: {duplicates}");
    assert!(duplicates <= 64, "{duplicates} duplicates");
    let survivor = sent_by(&apps[1]).await;
    assert!(survivor > 0);
}

#[tokio::test]
async fn a_lone_replica_restarted_under_its_name_takes_back_its_hung_send() {
    let Some(db) = fresh_database().await else {
        return;
    };
    // The relay's port first holds a listener that accepts and never greets: the one send hangs
    // with its delivery leased, and the process dies there.
    let mut smtp = SmtpServer::start();
    smtp.stop();
    let silent = std::net::TcpListener::bind(smtp.addr()).expect("the relay's port");
    let env = [
        ("BANDITORE__STORE__URL", db.url.as_str()),
        ("BANDITORE__CLUSTER__INSTANCE", "cup-1"),
        ("BANDITORE__CHANNELS__EMAIL__TIMEOUT", "60s"),
    ];
    let mut app = TestApp::spawn(&smtp, &desks(1), &env).await;
    fire(&app).await;
    silent.set_nonblocking(true).expect("a listener");
    let connected = Instant::now();
    let _held = loop {
        match silent.accept() {
            Ok((stream, _)) => break stream,
            Err(_) if connected.elapsed() < Duration::from_secs(15) => {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            Err(e) => panic!("the send never connected: {e}"),
        }
    };
    app.kill();
    drop(silent);
    smtp.restart();
    // Same name, new process: the dead one's lease (3 s) runs out and the send is made again.
    app.start().await;
    let restarted = Instant::now();
    wait_for_total(&smtp, 1, Duration::from_secs(15)).await;
    eprintln!("sent {:?} after the restart", restarted.elapsed());
    eventually(|| sent_by(&app), |n| *n == 1).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(smtp.mails().len(), 1);
}

/// The leader, waiting for work, stores a monitor's alert in the step that applies it: the
/// incident is open by the time the `202` comes back. A follower stores its alert alone, and the
/// leader applies it after. Each alert is stored once, and each desk told of each once.
#[tokio::test]
async fn the_leader_applies_an_alert_before_its_202_and_a_followers_alert_after() {
    let Some(db) = fresh_database().await else {
        return;
    };
    let smtp = SmtpServer::start();
    let apps = replicas(2, &db, &smtp, &desks(3), &[]).await;
    let leader = leader(&apps).await;
    let follower = 1 - leader;
    tokio::time::sleep(Duration::from_millis(500)).await;
    fire(&apps[leader]).await;
    let incidents = apps[leader]
        .get_json("/api/v1/incidents", VIEWER_TOKEN)
        .await;
    // Unless the request came while a step was running (a safety-net poll), which is rare.
    let by_pipeline = batches_stored_by(&apps[leader], "pipeline").await;
    let by_writer = batches_stored_by(&apps[leader], "writer").await;
    assert_eq!(by_pipeline + by_writer, 1);
    if by_pipeline == 1 {
        assert_eq!(
            incidents["incidents"].as_array().map(Vec::len),
            Some(1),
            "open when the 202 came: {incidents}"
        );
    }
    let body = alertmanager(
        "firing",
        "FrontendDown",
        &[("service", "cup-frontend"), ("severity", "critical")],
        "CUP frontend non risponde",
    );
    let resp = apps[follower]
        .post_json("/api/v1/signals/alertmanager", Some(INGEST_TOKEN), &body)
        .await;
    assert_eq!(resp.status(), 202);
    assert_eq!(batches_stored_by(&apps[follower], "writer").await, 1);
    assert_eq!(batches_stored_by(&apps[follower], "pipeline").await, 0);
    eventually(
        || apps[follower].get_json("/api/v1/incidents", VIEWER_TOKEN),
        |v| v["incidents"].as_array().is_some_and(|l| l.len() == 2),
    )
    .await;
    wait_for_total(&smtp, 6, Duration::from_secs(30)).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let counts = tally(&smtp);
    assert_eq!(counts.len(), 3, "{counts:?}");
    assert!(counts.values().all(|&c| c == 2), "{counts:?}");
    let mut conn = sqlx::PgConnection::connect(&db.url).await.unwrap();
    let signals: i64 = sqlx::query_scalar("SELECT count(*) FROM signals")
        .fetch_one(&mut conn)
        .await
        .unwrap();
    assert_eq!(signals, 2, "each alert stored once");
}

/// Which of `apps` leads, once one says so in its log.
async fn leader(apps: &[TestApp]) -> usize {
    eventually(
        || async {
            apps.iter()
                .position(|a| a.logs().contains("leading: running the incident engine"))
        },
        Option::is_some,
    )
    .await
    .expect("a replica leads")
}

#[tokio::test]
async fn leadership_moves_when_the_leader_dies_or_steps_down() {
    let Some(db) = fresh_database().await else {
        return;
    };
    let smtp = SmtpServer::start();
    let mut apps = replicas(2, &db, &smtp, &desks(1), &[]).await;
    // The first started leads; the other follows.
    let leader = leader(&apps).await;
    let follower = 1 - leader;
    // `banditore_leader` says the same: the alerting rules count the replicas that lead.
    assert_eq!(leads(&apps[leader]).await, Some(true));
    assert_eq!(leads(&apps[follower]).await, Some(false));
    // Killed, the leader's lease (3 s) runs out and the follower takes over.
    apps[leader].kill();
    let killed = Instant::now();
    fire(&apps[follower]).await;
    smtp.wait_for("desk0@asl.example", 1, Duration::from_secs(20));
    let took_over = killed.elapsed();
    assert_eq!(leads(&apps[follower]).await, Some(true));
    eprintln!("after a kill, the follower led and notified within {took_over:?}");
    assert!(took_over < Duration::from_secs(3 + 3), "{took_over:?}");
    // Stopped cleanly, a leader hands over at once.
    apps[leader].start().await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let stopped = Instant::now();
    apps[follower].terminate();
    let resolved = alertmanager(
        "resolved",
        "CupDown",
        &[("service", "cup-backend"), ("severity", "critical")],
        "CUP backend non risponde",
    );
    assert_eq!(
        apps[leader]
            .post_json(
                "/api/v1/signals/alertmanager",
                Some(INGEST_TOKEN),
                &resolved
            )
            .await
            .status(),
        202
    );
    smtp.wait_for("desk0@asl.example", 2, Duration::from_secs(20));
    let handed_over = stopped.elapsed();
    eprintln!("after a clean stop, the other replica led and notified within {handed_over:?}");
    assert!(handed_over < Duration::from_secs(3), "{handed_over:?}");
}

#[tokio::test]
async fn the_rate_limit_holds_for_the_whole_deployment() {
    let Some(db) = fresh_database().await else {
        return;
    };
    let smtp = SmtpServer::start();
    let n = 100;
    let apps = replicas(
        2,
        &db,
        &smtp,
        &desks(n),
        &[("BANDITORE__CHANNELS__EMAIL__RATE_PER_SECOND", "20")],
    )
    .await;
    fire(&apps[0]).await;
    wait_for_total(&smtp, n, Duration::from_secs(60)).await;
    let mails = smtp.mails();
    let first = mails.iter().map(|m| m.received).min().unwrap();
    let last = mails.iter().map(|m| m.received).max().unwrap();
    // 20 a second with a burst of 20: the last of 100 leaves about 4 s after the first. Two
    // replicas pacing themselves separately would take half that.
    let spread = last.duration_since(first);
    eprintln!("100 messages at 20/s across two replicas took {spread:?}");
    assert!(spread >= Duration::from_millis(3500), "{spread:?}");
    let (a, b) = (sent_by(&apps[0]).await, sent_by(&apps[1]).await);
    assert_eq!(a + b, n as u64);
}

#[tokio::test]
async fn replicas_may_migrate_at_the_same_time() {
    let Some(db) = fresh_database().await else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let run = |dir: std::path::PathBuf, url: String| {
        std::thread::spawn(move || {
            std::process::Command::new(env!("CARGO_BIN_EXE_banditore"))
                .arg("migrate")
                .current_dir(dir)
                .env("BANDITORE__STORE__URL", url)
                .output()
                .unwrap()
        })
    };
    let runs: Vec<_> = (0..3)
        .map(|_| run(dir.path().to_owned(), db.url.clone()))
        .collect();
    for r in runs {
        let out = r.join().unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}
