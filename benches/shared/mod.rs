//! What both benchmarks share: percentiles, memory read from `/proc`, a free port, a metric read
//! from `/metrics`, and the alert every fan-out starts from.

#![allow(dead_code)]

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

pub async fn metric(app: &TestApp, name: &str) -> f64 {
    let text = app
        .get("/metrics", None)
        .await
        .text()
        .await
        .unwrap_or_default();
    text.lines()
        .filter(|l| l.starts_with(name))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
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
