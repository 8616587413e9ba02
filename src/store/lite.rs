//! The SQLite store's write transactions, run in place ([`super::db`]): a second connection to the
//! file, used only by [`super::Tx`], the signals' intake and the deliveries' outcomes, and only
//! while its holder also holds the sqlx writer pool's one connection. So this process's writes
//! still queue one at a time, as they did through the pool alone, and never meet SQLite's busy
//! lock among themselves. Its statements run on the task that holds the transaction, on whichever
//! Tokio worker runs it: a step keeps that thread for as long as SQLite works and syncs, and hands
//! off to no other. Another process holding the write lock (an administrator's command, a
//! `sqlite3` shell) is waited for by sleeping between attempts to begin, not inside SQLite, so the
//! worker stays free meanwhile.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use sqlx::Any;
use sqlx::pool::PoolConnection;
use tokio::sync::{Mutex, OwnedMutexGuard};

use super::{Result, StoreError};

/// The connection, shared by the store's transactions one at a time; `None` once closed.
pub(super) type Shared = Arc<Mutex<Option<rusqlite::Connection>>>;

/// Opens the second connection to a file the sqlx writer has opened (and put in WAL mode).
pub(super) fn open(path: &Path, pragmas: &str) -> Result<Shared> {
    use rusqlite::OpenFlags;
    let conn = rusqlite::Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(|e| StoreError::Unavailable(format!("cannot open {}: {e}", path.display())))?;
    conn.execute_batch(pragmas)
        .map_err(|e| StoreError::Unavailable(format!("cannot set up {}: {e}", path.display())))?;
    // Outside WAL, a commit would need every reader gone, and with no busy timeout would fail at
    // once when one is not.
    let mode: String = conn
        .query_row("PRAGMA journal_mode", [], |row| row.get(0))
        .map_err(|e| StoreError::Unavailable(format!("cannot read {}: {e}", path.display())))?;
    if !mode.eq_ignore_ascii_case("wal") {
        return Err(StoreError::Unavailable(format!(
            "{} is in journal mode `{mode}`, not WAL",
            path.display()
        )));
    }
    // Waiting for another process's write lock is `LiteTx::begin`'s, between attempts; inside
    // SQLite it would put the Tokio worker to sleep.
    conn.busy_timeout(Duration::ZERO)
        .map_err(|e| StoreError::Unavailable(format!("cannot set up {}: {e}", path.display())))?;
    // The transactions' statements, compiled once: a few dozen texts, and the multi-row inserts'
    // short ones (`db.rs` compiles long ones at each run rather than keep them).
    conn.set_prepared_statement_cache_capacity(256);
    Ok(Arc::new(Mutex::new(Some(conn))))
}

/// An open transaction on the connection. Dropped without [`LiteTx::commit`], it rolls back.
pub(super) struct LiteTx {
    conn: OwnedMutexGuard<Option<rusqlite::Connection>>,
    open: bool,
    /// The sqlx writer's connection, held only to keep its writes out meanwhile. Declared last:
    /// it goes back to the pool after the rollback of `Drop`.
    _writer: PoolConnection<Any>,
}

impl LiteTx {
    /// Takes the writer pool's connection (queueing with every other writer), then this one, and
    /// begins. IMMEDIATE takes SQLite's write lock at once, as the sqlx transactions do.
    pub(super) async fn begin(
        shared: &Shared,
        writer: &sqlx::AnyPool,
        patience: Duration,
    ) -> Result<LiteTx> {
        let writer = writer.acquire().await?;
        let conn = Arc::clone(shared).lock_owned().await;
        let mut tx = LiteTx {
            conn,
            open: false,
            _writer: writer,
        };
        let conn = tx.conn()?;
        // A transaction a failed rollback left open would make every later BEGIN fail.
        if !conn.is_autocommit() {
            conn.execute_batch("ROLLBACK").map_err(|e| {
                StoreError::Unavailable(format!("a transaction could not be rolled back: {e}"))
            })?;
        }
        let since = Instant::now();
        let mut pause = Duration::from_millis(1);
        loop {
            match tx.conn()?.execute_batch("BEGIN IMMEDIATE") {
                Ok(()) => break,
                Err(e) if busy(&e) && since.elapsed() < patience => {
                    tokio::time::sleep(pause).await;
                    pause = (pause * 2).min(Duration::from_millis(50));
                }
                Err(e) => return Err(e.into()),
            }
        }
        tx.open = true;
        Ok(tx)
    }

    pub(super) fn conn(&mut self) -> Result<&mut rusqlite::Connection> {
        self.conn
            .as_mut()
            .ok_or_else(|| StoreError::Unavailable("the store is closed".into()))
    }

    pub(super) fn commit(mut self) -> Result<()> {
        self.conn()?.execute_batch("COMMIT")?;
        self.open = false;
        Ok(())
    }
}

impl Drop for LiteTx {
    fn drop(&mut self) {
        if self.open
            && let Some(conn) = self.conn.as_mut()
            && let Err(e) = conn.execute_batch("ROLLBACK")
        {
            tracing::warn!(error = %e, "rolling back a store transaction failed");
        }
    }
}

/// Whether another connection holds the lock SQLite needed.
fn busy(e: &rusqlite::Error) -> bool {
    e.sqlite_error_code() == Some(rusqlite::ErrorCode::DatabaseBusy)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::{LiteTx, open};

    const PRAGMAS: &str = "PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL;";

    #[tokio::test]
    async fn another_process_lock_is_waited_for_as_long_as_patience_allows_then_unavailable() {
        sqlx::any::install_default_drivers();
        let dir = tempfile::tempdir().expect("a folder");
        let path = dir.path().join("lite.db");
        let shell = rusqlite::Connection::open(&path).expect("a database");
        shell.execute_batch(PRAGMAS).expect("WAL");
        let shared = open(&path, PRAGMAS).expect("the second connection");
        let writer = sqlx::any::AnyPoolOptions::new()
            .max_connections(1)
            .connect("sqlite::memory:")
            .await
            .expect("a pool");
        shell
            .execute_batch("BEGIN IMMEDIATE")
            .expect("the shell's lock");
        let refused = LiteTx::begin(&shared, &writer, Duration::from_millis(100))
            .await
            .err()
            .expect("no transaction while the shell holds the lock");
        assert!(refused.is_unavailable(), "{refused}");
        shell.execute_batch("COMMIT").expect("the shell lets go");
        // Neither the pool's connection nor this one stayed taken.
        let tx = LiteTx::begin(&shared, &writer, Duration::from_millis(100))
            .await
            .expect("a transaction once the lock is free");
        tx.commit().expect("a commit");
    }

    #[test]
    fn a_file_outside_wal_is_refused() {
        let dir = tempfile::tempdir().expect("a folder");
        let path = dir.path().join("journal.db");
        rusqlite::Connection::open(&path)
            .and_then(|c| c.execute_batch("PRAGMA journal_mode = DELETE; CREATE TABLE t (x)"))
            .expect("a database in rollback-journal mode");
        let refused = open(&path, "PRAGMA synchronous = FULL;").expect_err("refused");
        assert!(refused.to_string().contains("not WAL"), "{refused}");
    }
}
