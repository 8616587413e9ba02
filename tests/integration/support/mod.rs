//! Test harness: the real binary, a real SMTP server, a Telegram Bot API double, and payload
//! builders.
//! Shared by the integration tests and the benchmarks, which each use part of it.
#![allow(dead_code, unused_imports, unused_macros)]

pub mod app;
pub mod appio;
pub mod bluesky;
pub mod browser;
pub mod contract;
pub mod double;
pub mod facebook;
pub mod mastodon;
pub mod networks;
pub mod postgres;
pub mod sms;
pub mod smtp;
pub mod targets;
pub mod telegram;
pub mod twitter_text;
pub mod voice;
pub mod webhook;
pub mod whatsapp;
pub mod x;

pub use app::*;
pub use browser::Browser;
pub use postgres::{TestDatabase, fresh_database};
pub use sms::*;
pub use smtp::{Mail, SmtpOptions, SmtpServer, TestTls};
pub use telegram::*;

use std::future::Future;
use std::time::{Duration, Instant};

/// Posts one critical Alertmanager alert about `service` (`firing` or `resolved`); 202 expected.
pub async fn fire_alert(app: &TestApp, status: &str, service: &str, summary: &str) {
    let body = alertmanager(
        status,
        &format!("{service}Down"),
        &[("service", service), ("severity", "critical")],
        summary,
    );
    let resp = app
        .post_json("/api/v1/signals/alertmanager", Some(INGEST_TOKEN), &body)
        .await;
    assert_eq!(resp.status(), 202);
}

/// Polls `probe` until `done` holds for its value (10 s at most), and returns that value.
pub async fn eventually<T: std::fmt::Debug, F, Fut>(probe: F, done: impl Fn(&T) -> bool) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = T>,
{
    eventually_within(Duration::from_secs(10), probe, done).await
}

/// [`eventually`] with its own limit, for what waits on a provider's back-off.
pub async fn eventually_within<T: std::fmt::Debug, F, Fut>(
    within: Duration,
    mut probe: F,
    done: impl Fn(&T) -> bool,
) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = T>,
{
    let deadline = Instant::now() + within;
    loop {
        let value = probe().await;
        if done(&value) {
            return value;
        }
        if Instant::now() > deadline {
            panic!("condition not met within {within:?}; last value: {value:?}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Runs every listed store case on SQLite and on PostgreSQL.
macro_rules! suite {
    ($($name:ident),+ $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test]
                async fn $name() {
                    let dir = tempfile::tempdir().unwrap();
                    super::$name(crate::engine::sqlite_store(&dir).await).await;
                }
            )+
        }
        mod postgres {
            $(
                #[tokio::test]
                async fn $name() {
                    let Some(db) = crate::support::fresh_database().await else { return };
                    super::$name(crate::engine::store_at(db.url.clone()).await).await;
                }
            )+
        }
    };
}
pub(crate) use suite;
