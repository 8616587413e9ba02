//! `dark-to-desk`: four services watched by Banditore's own probes (HTTP, every 10 s, threshold
//! 2, the default 1 s recheck) go dark together at a random moment of the interval, and 400
//! desks are told over email, Telegram and SMS. Per desk: the time from the sites going dark to
//! its first message. Then one lost check on every site, which must open nothing.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use crate::support::targets::{HttpTarget, Mode};
use crate::support::*;
use crate::{Store, percentile};

const SERVICES: [&str; 4] = ["cup", "referti", "anagrafe", "pagamenti"];
const EMAIL_DESKS: usize = 240;
const TELEGRAM_DESKS: usize = 80;
const SMS_DESKS: usize = 80;

/// Every desk's address on its channel.
fn desks() -> (Vec<String>, Vec<String>, Vec<String>) {
    (
        (0..EMAIL_DESKS)
            .map(|i| format!("desk{i}@asl.example"))
            .collect(),
        (0..TELEGRAM_DESKS)
            .map(|i| (200_000 + i).to_string())
            .collect(),
        (0..SMS_DESKS)
            .map(|i| format!("+39335{:07}", 2_000_000 + i))
            .collect(),
    )
}

fn config(sites: &[HttpTarget], sms_url: &str) -> String {
    let (emails, chats, phones) = desks();
    let quoted = |v: &[String]| {
        v.iter()
            .map(|a| format!("\"{a}\""))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let matchers = format!("['service=~\"{}\"']", SERVICES.join("|"));
    let mut extra = format!(
        "[[channels.sms.providers]]\nname = \"twilio\"\nkind = \"twilio\"\nbase_url = \"{sms_url}\"\nusername = \"{TWILIO_SID}\"\npassword = \"{TWILIO_TOKEN}\"\nsender = \"+15005550006\"\nrate_per_second = 100\n\n[[subscribers]]\nname = \"Reperibili\"\naddresses = {{ sms = [{}] }}\nsubscriptions = [{{ matchers = {matchers} }}]\n\n[[subscribers]]\nname = \"Sportelli\"\naddresses = {{ telegram = [{}] }}\nsubscriptions = [{{ matchers = {matchers} }}]\n",
        quoted(&phones),
        quoted(&chats),
    );
    for (i, email) in emails.iter().enumerate() {
        extra.push_str(&format!(
            "\n[[subscribers]]\nname = \"Sportello {i}\"\naddresses = {{ email = \"{email}\" }}\nsubscriptions = [{{ matchers = {matchers} }}]\n"
        ));
    }
    for (service, site) in SERVICES.iter().zip(sites) {
        extra.push_str(&format!(
            "\n[[probes]]\nname = \"{service}-portale\"\nservice = \"{service}\"\nsummary = \"Portale {service}\"\nkind = \"http\"\nurl = \"{}\"\ninterval = \"10s\"\ntimeout = \"5s\"\nfailure_threshold = 2\nsuccess_threshold = 2\n",
            site.url()
        ));
    }
    extra
}

/// The service a message speaks of, by its probe's summary.
fn service_of(text: &str) -> &'static str {
    SERVICES
        .iter()
        .find(|s| text.contains(&format!("Portale {s}")))
        .copied()
        .unwrap_or("?")
}

/// Messages taken by all three channels so far, without copying them.
fn count(smtp: &SmtpServer, telegram: &TelegramDouble, sms: &SmsDouble) -> usize {
    smtp.count() + telegram.sent().len() + sms.sent().len()
}

/// Every message taken at or after `since`: (desk, service, when).
fn told_since(
    smtp: &SmtpServer,
    telegram: &TelegramDouble,
    sms: &SmsDouble,
    since: Instant,
) -> Vec<(String, &'static str, Instant)> {
    let mut all = Vec::new();
    for m in smtp.mails().into_iter().filter(|m| m.received >= since) {
        let service = service_of(&format!("{}\n{}", m.subject(), m.text()));
        for to in &m.to {
            all.push((to.clone(), service, m.received));
        }
    }
    for m in telegram.sent().into_iter().filter(|m| m.at >= since) {
        all.push((m.chat_id, service_of(&m.visible), m.at));
    }
    for m in sms.sent().into_iter().filter(|m| m.at >= since) {
        all.push((m.to, service_of(&m.text), m.at));
    }
    all
}

/// Waits until no channel has taken a message for `quiet`.
async fn drained(smtp: &SmtpServer, telegram: &TelegramDouble, sms: &SmsDouble, quiet: Duration) {
    let mut last = usize::MAX;
    let mut since = Instant::now();
    loop {
        let n = count(smtp, telegram, sms);
        if n != last {
            last = n;
            since = Instant::now();
        } else if since.elapsed() >= quiet {
            return;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

async fn all_probes(app: &TestApp, state: &str) -> bool {
    let all = app.get_json("/api/v1/probes", VIEWER_TOKEN).await;
    all["probes"]
        .as_array()
        .is_some_and(|p| p.len() == SERVICES.len() && p.iter().all(|p| p["state"] == state))
}

fn secs(d: Duration) -> String {
    format!("{:.1}", d.as_secs_f64())
}

pub async fn dark_to_desk(runs: usize, store: Store) {
    let (database, replicas) = match store {
        Store::Sqlite => (None, 1),
        Store::Postgres { replicas } => match fresh_database().await {
            Some(db) => (Some(db), replicas),
            None => {
                println!(
                    "dark-to-desk on PostgreSQL: skipped, no server (start one with `eval \"$(.ci/postgres start durable)\"`)"
                );
                return;
            }
        },
    };
    let smtp = SmtpServer::start();
    let telegram = TelegramDouble::start_with(TelegramOptions::default()).await;
    let sms = SmsDouble::start().await;
    let (_, chats, _) = desks();
    for id in &chats {
        telegram.add_private_chat(id.parse().unwrap_or_default(), "Sportello", None);
    }
    let mut sites = Vec::new();
    for _ in SERVICES {
        sites.push(HttpTarget::start().await);
    }
    let extra = config(&sites, &sms.base_url());
    let api = telegram.api_url();
    let replica_count = replicas.to_string();
    let quorum = format!("\n[probing]\nquorum = {replicas}\n");
    let mut apps = Vec::new();
    for r in 0..replicas {
        let instance = format!("replica-{r}");
        let mut env = vec![
            ("BANDITORE__CHANNELS__TELEGRAM__ENABLED", "true"),
            ("BANDITORE__CHANNELS__TELEGRAM__TOKEN", TELEGRAM_TOKEN),
            ("BANDITORE__CHANNELS__TELEGRAM__API_URL", api.as_str()),
            ("BANDITORE__CHANNELS__SMS__ENABLED", "true"),
            ("BANDITORE__CHANNELS__SMS__CONCURRENCY", "16"),
        ];
        if let Some(db) = &database {
            env.push(("BANDITORE__STORE__URL", db.url.as_str()));
            env.push(("BANDITORE__STORE__REPLICAS", replica_count.as_str()));
            env.push(("BANDITORE__CLUSTER__INSTANCE", instance.as_str()));
        }
        apps.push(TestApp::spawn(&smtp, &format!("{extra}{quorum}"), &env).await);
    }
    let desks_n = EMAIL_DESKS + TELEGRAM_DESKS + SMS_DESKS;
    let on = match store {
        Store::Sqlite => "1 replica on SQLite".to_owned(),
        Store::Postgres { replicas } => {
            format!("{replicas} replicas on PostgreSQL, quorum {replicas}")
        }
    };
    // Every probe has looked once: the runs start from services seen up.
    while !all_probes(&apps[0], "up").await || sites.iter().any(|s| s.requests() < replicas) {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let mut everyone = Vec::new();
    let mut per_run = Vec::new();
    for run in 0..runs {
        // Going dark at a random moment of the probes' interval.
        tokio::time::sleep(Duration::from_millis(rand::random::<u64>() % 10_000)).await;
        let failures: Vec<usize> = sites.iter().map(HttpTarget::failures).collect();
        let dark = Instant::now();
        for site in &sites {
            site.set(Mode::Failing);
        }
        let before = count(&smtp, &telegram, &sms);
        let mut first_failure = None;
        // Each desk hears of each service once while it is down.
        while count(&smtp, &telegram, &sms) < before + desks_n * SERVICES.len()
            && dark.elapsed() < Duration::from_secs(90)
        {
            if first_failure.is_none()
                && sites.iter().zip(&failures).any(|(s, f)| s.failures() > *f)
            {
                first_failure = Some(dark.elapsed());
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let mut firsts: HashMap<(String, &str), Instant> = HashMap::new();
        let mut desk_firsts: HashMap<String, Instant> = HashMap::new();
        for (desk, service, at) in told_since(&smtp, &telegram, &sms, dark) {
            let first = firsts.entry((desk.clone(), service)).or_insert(at);
            *first = (*first).min(at);
            let first = desk_firsts.entry(desk).or_insert(at);
            *first = (*first).min(at);
        }
        let unknown = firsts.keys().filter(|(_, s)| *s == "?").count();
        // The same, channel by channel (a desk's address says its channel).
        let mut by_channel: Vec<String> = Vec::new();
        for (channel, is) in [
            ("email", (|d: &str| d.contains('@')) as fn(&str) -> bool),
            ("Telegram", |d: &str| {
                !d.contains('@') && !d.starts_with('+')
            }),
            ("SMS", |d: &str| d.starts_with('+')),
        ] {
            let mut t: Vec<Duration> = firsts
                .iter()
                .filter(|((desk, _), _)| is(desk))
                .map(|(_, at)| at.duration_since(dark))
                .collect();
            t.sort();
            if let Some(max) = t.last() {
                by_channel.push(format!(
                    "{channel} p50 {} s, max {} s",
                    secs(percentile(&t, 0.5)),
                    secs(*max)
                ));
            }
        }
        let mut took: Vec<Duration> = firsts.values().map(|at| at.duration_since(dark)).collect();
        took.sort();
        let mut desk_took: Vec<Duration> = desk_firsts
            .values()
            .map(|at| at.duration_since(dark))
            .collect();
        desk_took.sort();
        let (Some(first), Some(last)) = (took.first().copied(), took.last().copied()) else {
            println!("dark-to-desk run {}: nobody told within 90 s", run + 1);
            return;
        };
        let p50 = percentile(&took, 0.5);
        println!(
            "dark-to-desk run {}: first failed check {} s after dark; each desk told of each service: first {} s, p50 {} s, max {} s ({} of {}{}); each desk's first message: p50 {} s, max {} s; {}",
            run + 1,
            first_failure.map_or("-".to_owned(), secs),
            secs(first),
            secs(p50),
            secs(last),
            took.len(),
            desks_n * SERVICES.len(),
            if unknown > 0 {
                format!(", {unknown} not recognised")
            } else {
                String::new()
            },
            secs(percentile(&desk_took, 0.5)),
            secs(desk_took.last().copied().unwrap_or_default()),
            by_channel.join(", "),
        );
        per_run.push((first_failure.unwrap_or_default(), p50, last));
        everyone.extend(took);
        for site in &sites {
            site.set(Mode::Up);
        }
        // Back up, and every resolution sent, before the next run goes dark.
        while !all_probes(&apps[0], "up").await {
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        drained(&smtp, &telegram, &sms, Duration::from_secs(3)).await;
    }
    everyone.sort();
    if let Some(max) = everyone.last() {
        let worst_p50 = per_run.iter().map(|r| r.1).max().unwrap_or_default();
        println!(
            "dark-to-desk: {on}; 4 HTTP probes (interval 10 s, threshold 2, recheck 1 s) going dark together at a random moment, {desks_n} desks ({EMAIL_DESKS} email, {TELEGRAM_DESKS} Telegram, {SMS_DESKS} SMS), {runs} runs: each desk told of each service, over all runs p50 {} s, max {} s; worst run's p50 {} s (target max <= 10 s, p50 <= 6 s); first failed check after dark: {}",
            secs(percentile(&everyone, 0.5)),
            secs(*max),
            secs(worst_p50),
            per_run
                .iter()
                .map(|r| format!("{} s", secs(r.0)))
                .collect::<Vec<_>>()
                .join(", "),
        );
    }

    // One lost check on every site: looked at again at once, found up, nothing opened.
    let before_incidents = apps[0].get_json("/api/v1/incidents", VIEWER_TOKEN).await["incidents"]
        .as_array()
        .map_or(0, Vec::len);
    let before_told = count(&smtp, &telegram, &sms);
    let failures: Vec<usize> = sites.iter().map(HttpTarget::failures).collect();
    let requests: Vec<usize> = sites.iter().map(HttpTarget::requests).collect();
    for site in &sites {
        site.set(Mode::FailingOnce);
    }
    let lost = Instant::now();
    // Each site fails once, then answers the recheck(s) and the next regular checks.
    while sites
        .iter()
        .zip(&requests)
        .any(|(s, r)| s.requests() < r + 2 * replicas + 1)
        && lost.elapsed() < Duration::from_secs(40)
    {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let lost_checks: usize = sites
        .iter()
        .zip(&failures)
        .map(|(s, f)| s.failures() - f)
        .sum();
    let after_incidents = apps[0].get_json("/api/v1/incidents", VIEWER_TOKEN).await["incidents"]
        .as_array()
        .map_or(0, Vec::len);
    println!(
        "dark-to-desk, one lost check: {lost_checks} checks lost over the 4 sites (one each), {} incidents opened and {} messages sent (0 and 0 expected)",
        after_incidents - before_incidents,
        count(&smtp, &telegram, &sms) - before_told,
    );
}
