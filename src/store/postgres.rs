//! Opening the store on PostgreSQL, for several replicas.
//!
//! One pool serves reads and writes; PostgreSQL runs them side by side. The password may come
//! from `store.password` (or `_file`, `_env`) rather than the URL, so that it is never written in
//! the configuration.

use std::time::Duration;

use sqlx::any::AnyPoolOptions;
use sqlx::postgres::PgListener;

use super::dialect::Dialect;
use super::sql::SqlStore;
use super::{Result, StoreError, Topic, Wakeups};
use crate::settings::{Secret, StoreSettings, redact_url};

pub(super) static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/postgres");

/// The connection URL with the password put in, if one is given apart.
pub fn connection_url(settings: &StoreSettings, password: Option<&Secret>) -> Result<String> {
    let mut url = url::Url::parse(&settings.url).map_err(|e| {
        StoreError::Unavailable(format!("`{}` is not a URL: {e}", redact_url(&settings.url)))
    })?;
    if let Some(password) = password {
        url.set_password(Some(password.expose()))
            .map_err(|_| StoreError::Unavailable("the store URL cannot carry a password".into()))?;
    }
    Ok(url.into())
}

pub async fn open(settings: &StoreSettings, password: Option<&Secret>) -> Result<SqlStore> {
    let url = connection_url(settings, password)?;
    let pool = AnyPoolOptions::new()
        .max_connections(settings.max_connections.max(2))
        .acquire_timeout(Duration::from_secs(30))
        .connect(&url)
        .await
        .map_err(|e| {
            StoreError::Unavailable(format!(
                "cannot connect to {}: {e}",
                redact_url(&settings.url)
            ))
        })?;
    Ok(SqlStore::new(
        Dialect::Postgres,
        pool.clone(),
        pool,
        None,
        Some(url),
        None,
    ))
}

/// Listens for other replicas' `NOTIFY banditore` on a connection of its own. The listener
/// reconnects by itself after a network failure; wake-ups sent meanwhile are lost, which only
/// costs a poll interval.
pub async fn listen(url: &str, own_voice: &str) -> Result<Wakeups> {
    let own_voice = own_voice.to_owned();
    let mut listener = PgListener::connect(url).await?;
    listener.listen("banditore").await?;
    let (tx, rx) = tokio::sync::mpsc::channel(1024);
    tokio::spawn(async move {
        loop {
            match listener.recv().await {
                Ok(notification) => {
                    // This store's own notifications are not news to it.
                    if let Some((topic, voice)) = Topic::parse(notification.payload())
                        && voice != own_voice
                    {
                        // A full queue already holds wake-ups: dropping this one loses nothing
                        // (a probe's call included: the replica still checks at its own time).
                        if let Err(tokio::sync::mpsc::error::TrySendError::Closed(_)) =
                            tx.try_send(topic)
                        {
                            return;
                        }
                    }
                }
                Err(e) => {
                    if tx.is_closed() {
                        return;
                    }
                    tracing::warn!(error = %e, "lost the PostgreSQL listener; reconnecting");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
            }
        }
    });
    Ok(rx)
}
