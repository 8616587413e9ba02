//! The SQL store: one implementation for SQLite and PostgreSQL, through sqlx's `Any` driver.
//!
//! [`SqlStore`] holds the pools and implements every part of the store; this file has what is
//! pool-level (migrations, the signals' intake, opening a write transaction, pruning, wake-ups
//! between replicas). Each part's statements are in its `<part>_sql.rs`, the dialects'
//! differences in `dialect.rs`, shared column conversions in `rows.rs`. Opening a store (files,
//! pools, pragmas, listeners) is in `sqlite.rs` and `postgres.rs`.

use std::fs::File;

use async_trait::async_trait;
use jiff::Timestamp;
use sqlx::{Any, AnyPool, Transaction};

use super::db::{self, Db};
use super::dialect::{Dialect, values};
use super::lite::{self, LiteTx};
use super::rows::{json, ms, opt_ms};
use super::tx_sql::{SqlTx, TxConn};
use super::{Announce, PruneReport, Result, Signal, Store, StoreError, Topic, Tx, Wakeups};

pub struct SqlStore {
    pub(super) dialect: Dialect,
    /// PostgreSQL: where to open the connection that listens for other replicas' wake-ups.
    listen_url: Option<String>,
    /// Signs this store's announcements, so that it does not wake itself with them.
    voice: String,
    /// Writes: transactions, and single statements that need none. On SQLite a single
    /// connection, so writers queue instead of spinning.
    pub(super) writer: AnyPool,
    /// Reads; on PostgreSQL the same pool as writes.
    pub(super) reader: AnyPool,
    /// SQLite's exclusive lock on `<file>.lock`, held for the life of the store.
    lock: Option<File>,
    /// SQLite's connection for write transactions run in place (`lite.rs`); `None` on
    /// PostgreSQL.
    pub(super) lite: Option<lite::Shared>,
}

impl SqlStore {
    pub(super) fn new(
        dialect: Dialect,
        writer: AnyPool,
        reader: AnyPool,
        lock: Option<File>,
        listen_url: Option<String>,
        lite: Option<lite::Shared>,
    ) -> SqlStore {
        SqlStore {
            dialect,
            listen_url,
            voice: crate::ids::random_hex(6),
            writer,
            reader,
            lock,
            lite,
        }
    }

    /// Whether the database has exactly the migrations this binary carries: a command opening
    /// the store beside a running service may not migrate it, nor work on another schema.
    pub(super) async fn check_schema(&self) -> Result<()> {
        let migrator = match self.dialect {
            Dialect::Sqlite => &super::sqlite::MIGRATOR,
            Dialect::Postgres => &super::postgres::MIGRATOR,
        };
        let expected: Vec<i64> = migrator
            .iter()
            .filter(|m| !m.migration_type.is_down_migration())
            .map(|m| m.version)
            .collect();
        let applied: Vec<i64> = sqlx::query_scalar(
            "SELECT version FROM _sqlx_migrations WHERE success ORDER BY version",
        )
        .fetch_all(&self.reader)
        .await
        .unwrap_or_default();
        if applied == expected {
            return Ok(());
        }
        let last = |v: &[i64]| v.last().map_or("none".to_owned(), i64::to_string);
        Err(StoreError::Conflict(format!(
            "the database is at migration {} and this binary expects {}: the service that holds \
             it runs another version; use that version's `banditore`, or stop the service and run \
             `banditore migrate`",
            last(&applied),
            last(&expected)
        )))
    }

    pub(super) async fn write(&self) -> Result<Transaction<'static, Any>> {
        Ok(match self.dialect {
            // IMMEDIATE takes the write lock at once: a deferred transaction that reads first
            // would fail its lock upgrade with SQLITE_BUSY instead of waiting.
            Dialect::Sqlite => self.writer.begin_with("BEGIN IMMEDIATE").await?,
            Dialect::Postgres => self.writer.begin().await?,
        })
    }

    /// A write transaction whose statements run in place on SQLite ([`super::lite`]), through
    /// sqlx on PostgreSQL.
    pub(super) async fn transaction(&self) -> Result<SqlTx> {
        let conn = match &self.lite {
            Some(lite) => {
                TxConn::Lite(LiteTx::begin(lite, &self.writer, super::sqlite::BUSY_TIMEOUT).await?)
            }
            None => TxConn::Sqlx(self.write().await?),
        };
        Ok(SqlTx {
            conn,
            dialect: self.dialect,
        })
    }
}

/// Signals stored per statement at most (13 parameters each).
const SIGNAL_ROWS: usize = 64;

/// Stores signals, [`SIGNAL_ROWS`] per statement; returns their ids in ascending order.
pub(super) async fn store_signals(
    db: &mut Db<'_>,
    dialect: Dialect,
    signals: &[(Timestamp, Signal)],
) -> Result<Vec<i64>> {
    let mut ids = Vec::with_capacity(signals.len());
    for chunk in signals.chunks(SIGNAL_ROWS) {
        let query = signal_rows(dialect, chunk.iter().map(|(at, s)| (*at, s)))?;
        for row in query.fetch_all(db).await? {
            ids.push(row.try_get::<i64, _>(0)?);
        }
    }
    ids.sort_unstable();
    Ok(ids)
}

/// The statement that stores `rows` (each with when it was received), at most [`SIGNAL_ROWS`]
/// of them, and returns their ids.
pub(super) fn signal_rows<'a>(
    dialect: Dialect,
    rows: impl ExactSizeIterator<Item = (Timestamp, &'a Signal)>,
) -> Result<db::Query> {
    let sql = format!(
        "INSERT INTO signals (received_at, source, fingerprint, status, severity, service, component, labels,
                              annotations, summary, starts_at, ends_at, url)
         VALUES {} RETURNING id",
        values(dialect, rows.len(), 13)
    );
    let mut query = db::query(sql);
    for (at, s) in rows {
        query = query
            .bind(ms(at))
            .bind(s.source.as_str())
            .bind(s.fingerprint.clone())
            .bind(s.status.as_str())
            .bind(s.severity.as_str())
            .bind(s.service.clone())
            .bind(s.component.clone())
            .bind(json(&s.labels)?)
            .bind(json(&s.annotations)?)
            .bind(s.summary.clone())
            .bind(opt_ms(s.starts_at))
            .bind(opt_ms(s.ends_at))
            .bind(s.url.clone());
    }
    Ok(query)
}

#[async_trait]
impl Store for SqlStore {
    async fn migrate(&self) -> Result<()> {
        match self.dialect {
            Dialect::Sqlite => {
                super::sqlite::MIGRATOR.run(&self.writer).await?;
                // The file lock guarantees no other process is alive: whatever the last one had
                // claimed is orphaned and can be sent again.
                sqlx::query(
                    "UPDATE deliveries SET state = 'pending', lease_until = NULL, locked_by = NULL WHERE state = 'sending'",
                )
                .execute(&self.writer)
                .await?;
            }
            // Other replicas may be alive: their deliveries come back when their leases end.
            // sqlx takes an advisory lock around migrations, so replicas may migrate at once.
            Dialect::Postgres => super::postgres::MIGRATOR.run(&self.writer).await?,
        }
        Ok(())
    }

    async fn ping(&self) -> Result<()> {
        sqlx::query("SELECT 1").execute(&self.reader).await?;
        Ok(())
    }

    async fn close(&self) {
        if let Some(lite) = &self.lite {
            lite.lock().await.take();
        }
        self.reader.close().await;
        // Only the process holding the file's lock empties the WAL: a command beside a running
        // service leaves that to the service.
        if self.dialect == Dialect::Sqlite && self.lock.is_some() {
            let _ = sqlx::query("PRAGMA wal_checkpoint(TRUNCATE)")
                .execute(&self.writer)
                .await;
        }
        self.writer.close().await;
    }

    async fn setting(&self, key: &str) -> Result<Option<String>> {
        Ok(
            sqlx::query_scalar("SELECT value FROM settings WHERE key = $1")
                .bind(key)
                .fetch_optional(&self.reader)
                .await?,
        )
    }

    async fn setting_or_insert(&self, key: &str, value: &str) -> Result<String> {
        let mut tx = self.write().await?;
        sqlx::query(
            "INSERT INTO settings (key, value) VALUES ($1, $2) ON CONFLICT (key) DO NOTHING",
        )
        .bind(key)
        .bind(value)
        .execute(&mut *tx)
        .await?;
        let stored: String = sqlx::query_scalar("SELECT value FROM settings WHERE key = $1")
            .bind(key)
            .fetch_one(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(stored)
    }

    async fn touch_alerts_seen(&self, fingerprints: &[String], at: Timestamp) -> Result<()> {
        if fingerprints.is_empty() {
            return Ok(());
        }
        let mut tx = self.write().await?;
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "UPDATE alerts SET last_seen_at = {}(last_seen_at, $2)
             WHERE firing = 1 AND fingerprint IN ({})
               AND incident_id IN (SELECT id FROM incidents WHERE resolved_at IS NULL)",
            self.dialect.greatest(),
            self.dialect.texts()
        )))
        .bind(json(&fingerprints)?)
        .bind(ms(at))
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    async fn set_setting(&self, key: &str, value: &str) -> Result<()> {
        let mut tx = self.write().await?;
        sqlx::query(
            "INSERT INTO settings (key, value) VALUES ($1, $2)
             ON CONFLICT (key) DO UPDATE SET value = excluded.value",
        )
        .bind(key)
        .bind(value)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    async fn insert_signals(&self, signals: &[(Timestamp, Signal)]) -> Result<Vec<i64>> {
        if signals.is_empty() {
            return Ok(Vec::new());
        }
        // On SQLite the transaction runs in place, where BEGIN and COMMIT cost no hand-off to
        // another thread. On PostgreSQL a batch that fits in one statement, atomic on its own,
        // is stored without them.
        if self.lite.is_none() && signals.len() <= SIGNAL_ROWS {
            let mut conn = self.writer.acquire().await?;
            return store_signals(&mut Db::Sqlx(&mut conn), self.dialect, signals).await;
        }
        let mut tx = self.transaction().await?;
        let ids = store_signals(&mut tx.db()?, self.dialect, signals).await?;
        tx.finish().await?;
        Ok(ids)
    }

    async fn begin(&self) -> Result<Box<dyn Tx>> {
        Ok(Box::new(self.transaction().await?))
    }

    async fn prune(&self, before: Timestamp) -> Result<PruneReport> {
        // Small batches keep the write lock short: ingest goes on while old rows go.
        let in_batches = |sql: &'static str| async move {
            let mut total = 0;
            loop {
                let done = sqlx::query(sql)
                    .bind(ms(before))
                    .execute(&self.writer)
                    .await?
                    .rows_affected();
                total += done;
                if done == 0 {
                    return Ok::<u64, StoreError>(total);
                }
            }
        };
        Ok(PruneReport {
            signals: in_batches(
                "DELETE FROM signals WHERE id IN (
                    SELECT id FROM signals WHERE processed_at IS NOT NULL AND received_at < $1 LIMIT 5000)",
            )
            .await?,
            deliveries: in_batches(
                "DELETE FROM deliveries WHERE id IN (
                    SELECT d.id FROM deliveries d JOIN incidents i ON i.id = d.incident_id
                    WHERE d.state IN ('sent', 'failed', 'gone', 'cancelled') AND d.created_at < $1
                      AND i.resolved_at IS NOT NULL AND d.affected_id IS NULL
                    LIMIT 5000)",
            )
            .await?,
        })
    }

    async fn wakeups(&self) -> Result<Option<Wakeups>> {
        match &self.listen_url {
            Some(url) => Ok(Some(super::postgres::listen(url, &self.voice).await?)),
            None => Ok(None),
        }
    }
}

#[async_trait]
impl Announce for SqlStore {
    async fn announce(&self, topic: Topic) {
        if self.dialect != Dialect::Postgres {
            return;
        }
        let sent = sqlx::query("SELECT pg_notify('banditore', $1)")
            .bind(topic.payload(&self.voice))
            .execute(&self.writer)
            .await;
        if let Err(e) = sent {
            // Others still poll: a lost wake-up only costs them a poll interval.
            tracing::debug!(error = %e, topic = ?topic, "cannot notify other replicas");
        }
    }
}
