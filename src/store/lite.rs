//! The SQLite store's write transactions, run in place ([`super::db`]): a second connection to the
//! file, used only by [`super::Tx`], and only while its holder also holds the sqlx writer pool's
//! one connection. So writes still queue one at a time, as they did through the pool alone, and
//! SQLite's busy lock never comes into play between the two. Its statements run on the task that
//! holds the transaction: a step blocks its thread for as long as SQLite works and syncs, and
//! hands off to no other thread.

use std::path::Path;
use std::sync::Arc;

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
    // Every statement the transactions run, compiled once: a few dozen texts, and the multi-row
    // inserts' one per row count.
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
    pub(super) async fn begin(shared: &Shared, writer: &sqlx::AnyPool) -> Result<LiteTx> {
        let writer = writer.acquire().await?;
        let conn = Arc::clone(shared).lock_owned().await;
        let mut tx = LiteTx {
            conn,
            open: false,
            _writer: writer,
        };
        tx.conn()?.execute_batch("BEGIN IMMEDIATE")?;
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
