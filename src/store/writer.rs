//! The connection writes go through. On PostgreSQL it is a pool. On SQLite it is one connection
//! held for the life of the store behind an async lock, so that writers queue in the process
//! instead of spinning on SQLite's busy lock. A pool of one would do the queueing too, but sqlx
//! tests each connection it gets back with a round trip to the connection's thread, from a task
//! of its own, before the next writer may have it: about 0.2 ms between two transactions, which
//! every signal waits through twice on its way to a desk.
//!
//! A transaction on the lone connection is driven through sqlx's transaction manager, as sqlx's
//! own `Transaction` is: `BEGIN IMMEDIATE`, then [`WriteTx::commit`] or [`WriteTx::rollback`];
//! one dropped without either (an error, a cancelled request) has its rollback queued on the
//! connection at once. The connection's thread settles what a cancelled call left: a `BEGIN`
//! nobody received is rolled back, a `COMMIT` nobody received stands and the rollback queued
//! after it is skipped.

use std::ops::{Deref, DerefMut};
use std::sync::Arc;
use std::time::Duration;

use sqlx::any::AnyTransactionManager;
use sqlx::pool::PoolConnection;
use sqlx::{Any, AnyConnection, AnyPool, SqlSafeStr, Transaction};
use sqlx_core::transaction::TransactionManager;
use tokio::sync::{Mutex, OwnedMutexGuard};

/// How long a writer waits for the connection before giving up, as a pool's acquire would.
const WAIT: Duration = Duration::from_secs(30);

pub(super) enum Writer {
    Pool(AnyPool),
    Lone(Arc<Mutex<Lone>>),
}

pub(super) struct Lone {
    conn: AnyConnection,
    closed: bool,
}

/// A write transaction; derefs to its connection, which is the executor its statements run on.
pub(super) enum WriteTx {
    Pool(Transaction<'static, Any>),
    Lone(LoneTx),
}

/// A transaction on the lone connection; rolled back if dropped while still open.
pub(super) struct LoneTx {
    guard: OwnedMutexGuard<Lone>,
    open: bool,
}

/// The writer's connection for one statement outside a transaction.
pub(super) enum Writing {
    Pool(PoolConnection<Any>),
    Lone(OwnedMutexGuard<Lone>),
}

impl Writer {
    pub(super) fn lone(conn: AnyConnection) -> Writer {
        Writer::Lone(Arc::new(Mutex::new(Lone {
            conn,
            closed: false,
        })))
    }

    /// Opens a write transaction; on SQLite it holds the database's write lock from the start.
    pub(super) async fn begin(&self) -> Result<WriteTx, sqlx::Error> {
        match self {
            Writer::Pool(pool) => Ok(WriteTx::Pool(pool.begin().await?)),
            Writer::Lone(lone) => {
                let mut guard = locked(lone).await?;
                // IMMEDIATE takes the write lock at once: a deferred transaction that reads
                // first would fail its lock upgrade with SQLITE_BUSY (another process) instead
                // of waiting.
                AnyTransactionManager::begin(
                    &mut guard.conn,
                    Some("BEGIN IMMEDIATE".into_sql_str()),
                )
                .await?;
                Ok(WriteTx::Lone(LoneTx { guard, open: true }))
            }
        }
    }

    pub(super) async fn acquire(&self) -> Result<Writing, sqlx::Error> {
        match self {
            Writer::Pool(pool) => Ok(Writing::Pool(pool.acquire().await?)),
            Writer::Lone(lone) => Ok(Writing::Lone(locked(lone).await?)),
        }
    }

    /// Closes the pool; the lone connection takes no more work (it closes when the store goes).
    pub(super) async fn close(&self) {
        match self {
            Writer::Pool(pool) => pool.close().await,
            Writer::Lone(lone) => lone.lock().await.closed = true,
        }
    }
}

async fn locked(lone: &Arc<Mutex<Lone>>) -> Result<OwnedMutexGuard<Lone>, sqlx::Error> {
    let guard = tokio::time::timeout(WAIT, lone.clone().lock_owned())
        .await
        .map_err(|_| sqlx::Error::PoolTimedOut)?;
    if guard.closed {
        return Err(sqlx::Error::PoolClosed);
    }
    Ok(guard)
}

impl WriteTx {
    pub(super) async fn commit(self) -> Result<(), sqlx::Error> {
        match self {
            WriteTx::Pool(tx) => tx.commit().await,
            WriteTx::Lone(mut tx) => {
                AnyTransactionManager::commit(&mut tx.guard.conn).await?;
                tx.open = false;
                Ok(())
            }
        }
    }

    pub(super) async fn rollback(self) -> Result<(), sqlx::Error> {
        match self {
            WriteTx::Pool(tx) => tx.rollback().await,
            WriteTx::Lone(mut tx) => {
                AnyTransactionManager::rollback(&mut tx.guard.conn).await?;
                tx.open = false;
                Ok(())
            }
        }
    }
}

impl Drop for LoneTx {
    fn drop(&mut self) {
        if self.open {
            // Queued before the lock is let go: the next writer's first statement follows it.
            AnyTransactionManager::start_rollback(&mut self.guard.conn);
        }
    }
}

impl Deref for WriteTx {
    type Target = AnyConnection;
    fn deref(&self) -> &AnyConnection {
        match self {
            WriteTx::Pool(tx) => tx,
            WriteTx::Lone(tx) => &tx.guard.conn,
        }
    }
}

impl DerefMut for WriteTx {
    fn deref_mut(&mut self) -> &mut AnyConnection {
        match self {
            WriteTx::Pool(tx) => tx,
            WriteTx::Lone(tx) => &mut tx.guard.conn,
        }
    }
}

impl Deref for Writing {
    type Target = AnyConnection;
    fn deref(&self) -> &AnyConnection {
        match self {
            Writing::Pool(conn) => conn,
            Writing::Lone(guard) => &guard.conn,
        }
    }
}

impl DerefMut for Writing {
    fn deref_mut(&mut self) -> &mut AnyConnection {
        match self {
            Writing::Pool(conn) => conn,
            Writing::Lone(guard) => &mut guard.conn,
        }
    }
}

#[cfg(test)]
mod tests {
    use sqlx::{Connection, Executor};

    use super::*;

    async fn lone(dir: &tempfile::TempDir) -> Writer {
        sqlx::any::install_default_drivers();
        let url = format!("sqlite://{}?mode=rwc", dir.path().join("w.db").display());
        let mut conn = AnyConnection::connect(&url).await.expect("open");
        conn.execute("PRAGMA journal_mode = WAL; CREATE TABLE t (n INTEGER NOT NULL)")
            .await
            .expect("schema");
        Writer::lone(conn)
    }

    async fn count(w: &Writer) -> i64 {
        let mut conn = w.acquire().await.expect("the connection");
        sqlx::query_scalar("SELECT COUNT(*) FROM t")
            .fetch_one(&mut *conn)
            .await
            .expect("count")
    }

    #[tokio::test]
    async fn a_transaction_dropped_open_is_rolled_back_before_the_next_writer() {
        let dir = tempfile::tempdir().expect("dir");
        let w = lone(&dir).await;
        let mut tx = w.begin().await.expect("begin");
        tx.execute("INSERT INTO t VALUES (1)")
            .await
            .expect("insert");
        drop(tx);
        // The next writer finds no transaction open (BEGIN would fail inside one) and none of
        // the dropped one's rows.
        let mut tx = w.begin().await.expect("a new transaction");
        tx.execute("INSERT INTO t VALUES (2)")
            .await
            .expect("insert");
        tx.commit().await.expect("commit");
        let mut conn = w.acquire().await.expect("the connection");
        let kept: Vec<i64> = sqlx::query_scalar("SELECT n FROM t")
            .fetch_all(&mut *conn)
            .await
            .expect("read");
        assert_eq!(kept, vec![2]);
    }

    #[tokio::test]
    async fn a_request_cancelled_inside_its_transaction_leaves_nothing_behind() {
        let dir = tempfile::tempdir().expect("dir");
        let w = lone(&dir).await;
        // Cancelled after its insert, while it waits: the way a dropped HTTP request ends.
        let _ = tokio::time::timeout(Duration::from_millis(50), async {
            let mut tx = w.begin().await.expect("begin");
            tx.execute("INSERT INTO t VALUES (1)")
                .await
                .expect("insert");
            std::future::pending::<()>().await;
        })
        .await;
        assert_eq!(count(&w).await, 0);
        let mut tx = w.begin().await.expect("begin");
        tx.execute("INSERT INTO t VALUES (1)")
            .await
            .expect("insert");
        tx.rollback().await.expect("rollback");
        assert_eq!(count(&w).await, 0);
    }

    /// What another connection sees: only what was committed.
    async fn committed(dir: &tempfile::TempDir) -> i64 {
        let url = format!("sqlite://{}?mode=ro", dir.path().join("w.db").display());
        let mut reader = AnyConnection::connect(&url).await.expect("open");
        sqlx::query_scalar("SELECT COUNT(*) FROM t")
            .fetch_one(&mut reader)
            .await
            .expect("count")
    }

    #[tokio::test]
    async fn a_begin_cancelled_in_flight_leaves_no_transaction_behind() {
        let dir = tempfile::tempdir().expect("dir");
        let w = lone(&dir).await;
        for _ in 0..20 {
            // Polled once (the BEGIN goes to the connection's thread), then dropped.
            let _ = tokio::time::timeout(Duration::ZERO, w.begin()).await;
            let mut conn = w.acquire().await.expect("the connection");
            conn.execute("INSERT INTO t VALUES (1)")
                .await
                .expect("insert");
        }
        // Not one insert is trapped in a transaction nobody holds.
        assert_eq!(committed(&dir).await, 20);
        let tx = w.begin().await.expect("a transaction after them");
        tx.commit().await.expect("commit");
    }

    #[tokio::test]
    async fn a_commit_cancelled_in_flight_leaves_the_writer_usable() {
        let dir = tempfile::tempdir().expect("dir");
        let w = lone(&dir).await;
        for n in 0..20 {
            let mut tx = w.begin().await.expect("begin");
            sqlx::query("INSERT INTO t VALUES ($1)")
                .bind(n)
                .execute(&mut *tx)
                .await
                .expect("insert");
            let _ = tokio::time::timeout(Duration::ZERO, tx.commit()).await;
        }
        let mut tx = w.begin().await.expect("begin after cancelled commits");
        tx.execute("INSERT INTO t VALUES (100)")
            .await
            .expect("insert");
        tx.commit().await.expect("commit");
        // A commit the thread ran stands, one it did not is rolled back; nothing stays open.
        let all = count(&w).await;
        assert!((1..=21).contains(&all), "{all}");
        assert_eq!(committed(&dir).await, all);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_writers_queue_and_every_commit_lands() {
        let dir = tempfile::tempdir().expect("dir");
        let w = Arc::new(lone(&dir).await);
        let mut tasks = tokio::task::JoinSet::new();
        for _ in 0..8 {
            let w = w.clone();
            tasks.spawn(async move {
                for n in 0..50 {
                    let mut tx = w.begin().await.expect("begin");
                    sqlx::query("INSERT INTO t VALUES ($1)")
                        .bind(n)
                        .execute(&mut *tx)
                        .await
                        .expect("insert");
                    tokio::task::yield_now().await;
                    tx.commit().await.expect("commit");
                }
            });
        }
        while let Some(done) = tasks.join_next().await {
            done.expect("a writer");
        }
        assert_eq!(count(&w).await, 400);
    }

    #[tokio::test]
    async fn a_closed_writer_takes_no_more_work() {
        let dir = tempfile::tempdir().expect("dir");
        let w = lone(&dir).await;
        w.close().await;
        assert!(matches!(w.begin().await, Err(sqlx::Error::PoolClosed)));
        assert!(matches!(w.acquire().await, Err(sqlx::Error::PoolClosed)));
    }
}
