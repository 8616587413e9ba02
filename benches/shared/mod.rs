//! What both benchmarks share: percentiles, memory read from `/proc`, a free port, a metric read
//! from `/metrics`, one alert timed from the webhook to its email, the alert every fan-out
//! starts from, the wait for a fan-out to finish, and Postfix's `smtp-sink` counting what it
//! receives.

#![allow(dead_code)]

use std::io::Read;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::support::*;

pub fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0)
}

pub fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

pub fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let idx = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[idx.min(sorted.len() - 1)]
}

pub fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The sink's running count of messages received, and when the first and the latest came.
pub struct Counter {
    pub received: Arc<AtomicU64>,
    pub first: Arc<Mutex<Option<Instant>>>,
    pub latest: Arc<Mutex<Option<Instant>>>,
    child: std::process::Child,
    pub port: u16,
}

impl Drop for Counter {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Postfix's `smtp-sink` at `bin` on a free port; `-c` prints `sess=… quit=… mesg=N` after every
/// message, flushed at once, which a thread reads as it comes. `None` when it cannot start.
pub fn counting_sink(bin: &Path) -> Option<Counter> {
    let port = free_port();
    let mut child = Command::new(bin)
        .args(["-c", "-u", "postfix", &format!("127.0.0.1:{port}"), "1024"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .ok()?;
    let mut out = child.stdout.take()?;
    let received = Arc::new(AtomicU64::new(0));
    let first = Arc::new(Mutex::new(None));
    let latest = Arc::new(Mutex::new(None));
    let (count, when_first, when_latest) = (received.clone(), first.clone(), latest.clone());
    std::thread::spawn(move || {
        let mut buf = [0u8; 8192];
        let mut tail = String::new();
        while let Ok(n) = out.read(&mut buf) {
            if n == 0 {
                break;
            }
            let now = Instant::now();
            tail.push_str(&String::from_utf8_lossy(&buf[..n]));
            if let Some(i) = tail.rfind("mesg=") {
                let digits: String = tail[i + 5..]
                    .chars()
                    .take_while(char::is_ascii_digit)
                    .collect();
                if let Ok(v) = digits.parse::<u64>() {
                    if v > 0 && count.load(Ordering::Relaxed) == 0 {
                        *when_first.lock().unwrap() = Some(now);
                    }
                    if v > count.load(Ordering::Relaxed) {
                        *when_latest.lock().unwrap() = Some(now);
                    }
                    count.store(v, Ordering::Relaxed);
                }
                tail = tail[i..].to_owned();
            }
        }
    });
    std::thread::sleep(Duration::from_millis(300));
    Some(Counter {
        received,
        first,
        latest,
        child,
        port,
    })
}

/// Posts the alert every fan-out scenario starts from; returns when it was posted.
pub async fn fire_cup_down(app: &TestApp) -> Instant {
    let body = alertmanager(
        "firing",
        "CupDown",
        &[("service", "cup-backend"), ("severity", "critical")],
        "CUP backend non risponde",
    );
    let started = Instant::now();
    assert_eq!(
        app.post_json("/api/v1/signals/alertmanager", Some(INGEST_TOKEN), &body)
            .await
            .status(),
        202
    );
    started
}

/// How a fan-out went, from the alert: when the first message was sent, when the last, and the
/// largest resident memory of any replica meanwhile (KiB).
pub struct FanoutRun {
    pub first: Duration,
    pub total: Duration,
    pub peak_kib: u64,
}

/// Waits until `apps` together have sent `count` emails since `started`, polling every 20 ms.
/// It reads each replica's in-memory counter, which costs the store nothing (the gauges from the
/// store are up to a second old). `None`, after saying so, when `limit` runs out first.
pub async fn wait_for_emails(
    apps: &[&TestApp],
    count: usize,
    started: Instant,
    limit: Duration,
) -> Option<FanoutRun> {
    let pids: Vec<u32> = apps.iter().filter_map(|a| a.pid()).collect();
    let mut first = None;
    let mut peak_kib = 0;
    loop {
        let mut sent = 0;
        for app in apps {
            sent += metric(
                app,
                "banditore_deliveries_total{channel=\"email\",outcome=\"sent\"}",
            )
            .await as usize;
        }
        peak_kib = peak_kib.max(pids.iter().map(|&p| rss_kib(p)).max().unwrap_or(0));
        if sent > 0 && first.is_none() {
            first = Some(started.elapsed());
        }
        if sent >= count {
            return Some(FanoutRun {
                first: first.unwrap_or_default(),
                total: started.elapsed(),
                peak_kib,
            });
        }
        if started.elapsed() > limit {
            println!(
                "fanout: gave up after {} s with {sent} of {count} sent",
                limit.as_secs()
            );
            return None;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// One alert, the `j`th (from 0), to Banditore's Alertmanager webhook: how long until its
/// email to `sala@asl.example` (the only desk) is at the SMTP server.
pub async fn webhook_to_email(app: &TestApp, smtp: &SmtpServer, j: usize) -> Duration {
    let body = alertmanager(
        "firing",
        &format!("Down{j}"),
        &[("service", &format!("svc-{j}")), ("severity", "critical")],
        &format!("bench-{j}"),
    );
    let sent = Instant::now();
    let resp = app
        .post_json("/api/v1/signals/alertmanager", Some(INGEST_TOKEN), &body)
        .await;
    assert_eq!(resp.status(), 202);
    let mails = smtp.wait_for("sala@asl.example", j + 1, Duration::from_secs(30));
    mails[j].received.duration_since(sent)
}
