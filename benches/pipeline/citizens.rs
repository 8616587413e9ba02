//! `citizens`: one approved public statement to a region's worth of citizens. The citizens are
//! seeded straight into the store (a sign-up each through the page would take hours): the binary
//! starts once to create the schema and stops, the rows go in with the `sqlite3` or `psql` client
//! in one statement each, then the release binary starts again, an alert opens an incident, the
//! statement is approved, and Postfix's `smtp-sink`, counting every message it receives, tells
//! when the first email arrived and when the last did.

use std::process::{Command, Stdio};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use crate::support::*;
use crate::{counting_sink, fire_cup_down, metric, mib, ms, rss_kib};

const SERVICES: &str = r#"
[[status.services]]
id = "cup"
name = "Prenotazioni (CUP)"
matchers = ['service=~"cup.*"']

[status.subscribe]
channels = ["email"]
"#;

/// The rows of `n` confirmed citizens following `cup` by email, as a sign-up writes them.
fn seed_sql(n: usize, postgres: bool) -> String {
    let now = jiff::Timestamp::now().as_millisecond();
    let matcher: banditore::domain::Matcher = "service=~\"cup.*\"".parse().unwrap();
    let matchers = serde_json::to_string(&vec![matcher.to_string()]).unwrap();
    let series = if postgres {
        format!("generate_series(1, {n}) AS g(i)")
    } else {
        format!(
            "(WITH RECURSIVE c(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM c WHERE i < {n}) SELECT i FROM c) AS g"
        )
    };
    format!(
        "BEGIN;
INSERT INTO subscribers (id, name, language, audience, origin, created_at, updated_at, citizen_services)
  SELECT 1000 + i, 'Iscrizione alla pagina di stato', 'it', 'public', 'api', {now}, {now}, '[\"cup\"]' FROM {series};
INSERT INTO addresses (id, subscriber_id, channel, address)
  SELECT 1000 + i, 1000 + i, 'email', 'cittadino' || i || '@example.org' FROM {series};
INSERT INTO subscriptions (subscriber_id, position, matchers, min_severity, channels)
  SELECT 1000 + i, 0, '{matchers}', 'info', '[\"email\"]' FROM {series};
{}
COMMIT;",
        if postgres {
            "SELECT setval(pg_get_serial_sequence('subscribers', 'id'), (SELECT MAX(id) FROM subscribers));
SELECT setval(pg_get_serial_sequence('addresses', 'id'), (SELECT MAX(id) FROM addresses));"
        } else {
            ""
        }
    )
}

fn run_client(program: &str, args: &[&str], sql: &str) {
    use std::io::Write;
    let mut child = Command::new(program)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("{program}: {e}"));
    child
        .stdin
        .take()
        .unwrap()
        .write_all(sql.as_bytes())
        .unwrap();
    let status = child.wait().unwrap();
    assert!(status.success(), "{program} failed");
}

pub async fn citizens(n: usize, replicas: usize) {
    let database = if replicas == 0 {
        None
    } else {
        match fresh_database().await {
            Some(db) => Some(db),
            None => {
                println!(
                    "citizens on PostgreSQL: skipped, no server (start one with `eval \"$(.ci/postgres start durable)\"`)"
                );
                return;
            }
        }
    };
    let Some(sink) = counting_sink(std::path::Path::new("smtp-sink")) else {
        println!("citizens: skipped, Postfix's smtp-sink is not installed");
        return;
    };
    let count = replicas.max(1).to_string();
    let mut apps = Vec::new();
    for r in 0..replicas.max(1) {
        let instance = format!("replica-{r}");
        let mut env = vec![("BANDITORE__CHANNELS__EMAIL__POOL_SIZE", "16")];
        if let Some(db) = &database {
            env.push(("BANDITORE__STORE__URL", db.url.as_str()));
            env.push(("BANDITORE__STORE__REPLICAS", count.as_str()));
            env.push(("BANDITORE__CLUSTER__INSTANCE", instance.as_str()));
        }
        let mut app = TestApp::spawn_on(sink.port, SERVICES, &env).await;
        app.terminate();
        apps.push(app);
    }
    let seeding = Instant::now();
    match &database {
        None => {
            let db = apps[0].dir.path().join("banditore.db");
            run_client("sqlite3", &[db.to_str().unwrap()], &seed_sql(n, false));
        }
        Some(db) => run_client("psql", &["-q", &db.url], &seed_sql(n, true)),
    }
    let seeded = seeding.elapsed();
    let starting = Instant::now();
    for app in &mut apps {
        app.start().await;
    }
    let startup = starting.elapsed() / apps.len() as u32;
    let app = &apps[0];
    let pids: Vec<u32> = apps.iter().filter_map(TestApp::pid).collect();
    let fired = fire_cup_down(app).await;
    let draft = app.next_draft().await;
    let drafted = fired.elapsed();
    let reach: u64 = draft["parts"]
        .as_array()
        .map(|parts| parts.iter().filter_map(|p| p["recipients"].as_u64()).sum())
        .unwrap_or(0);
    let id = draft["id"].as_i64().unwrap();
    let approving = Instant::now();
    app.approve_draft(id).await;
    let answered = approving.elapsed();
    let mut peak = 0;
    let limit = Duration::from_secs(120 + n as u64 / 500);
    loop {
        peak = peak.max(pids.iter().map(|&p| rss_kib(p)).max().unwrap_or(0));
        if sink.received.load(Ordering::Relaxed) >= n as u64 {
            break;
        }
        if approving.elapsed() > limit {
            println!(
                "citizens: gave up after {} s with {} received",
                limit.as_secs(),
                sink.received.load(Ordering::Relaxed)
            );
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let total = approving.elapsed();
    let first = sink
        .first
        .lock()
        .unwrap()
        .map(|t| t.duration_since(approving))
        .unwrap_or_default();
    let on = match replicas {
        0 => "1 replica on SQLite".to_owned(),
        r => {
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
                "{r} replicas on PostgreSQL sending {} each",
                shares.join(" / ")
            )
        }
    };
    println!(
        "citizens: 1 approved statement to {n} citizens by email into postfix smtp-sink, {on}: seeded in {:.1} s, start-up {:.1} s per replica; alert to draft {:.0} ms (draft counts {reach}); approval answered in {:.0} ms; first email {:.0} ms after the approval; all received in {:.1} s = {:.0} messages/s overall, {:.0}/s after the first; peak resident memory {:.1} MiB per replica (target: first < 1 s, < 300 MiB)",
        seeded.as_secs_f64(),
        startup.as_secs_f64(),
        ms(drafted),
        ms(answered),
        ms(first),
        total.as_secs_f64(),
        n as f64 / total.as_secs_f64(),
        n as f64 / (total - first).as_secs_f64(),
        mib(peak),
    );
    drop(apps);
}
