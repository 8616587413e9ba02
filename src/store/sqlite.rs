//! Opening the embedded store: one SQLite file in WAL mode.
//!
//! Writes go through one connection at a time, so they queue instead of spinning on SQLite's
//! busy lock: the sqlx writer pool's single connection, and the write transactions' own
//! connection (`lite.rs`), taken only with the first one held. Reads use a separate pool and run
//! beside the writers. An exclusive lock on `<file>.lock` keeps a second Banditore process away
//! from the same file, which is what makes it safe to hand back, at start-up, every delivery the
//! previous process had claimed. The
//! command line's user and token commands open the file beside a running service without that
//! lock ([`open_for_administration`]): WAL lets two processes share it, and they never touch the
//! deliveries.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::time::Duration;

use sqlx::Executor;
use sqlx::any::AnyPoolOptions;

use super::dialect::Dialect;
use super::sql::SqlStore;
use super::{Result, StoreError};
use crate::settings::{SqliteSynchronous, StoreSettings};

pub(super) static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/sqlite");

pub async fn open(settings: &StoreSettings) -> Result<SqlStore> {
    let path = database_path(&settings.url)?;
    create_folder(&path)?;
    let lock = lock_file(&path)?;
    open_file(settings, &path, Some(lock)).await
}

/// Opens the file for an administrator's command: with the exclusive lock when no service holds
/// it (`true`), else beside the service without it (`false`).
pub async fn open_for_administration(settings: &StoreSettings) -> Result<(SqlStore, bool)> {
    let path = database_path(&settings.url)?;
    owned_by_me(&path)?;
    create_folder(&path)?;
    let lock = try_lock_file(&path)?;
    let locked = lock.is_some();
    Ok((open_file(settings, &path, lock).await?, locked))
}

/// Refuses a command run by another user than the store's owner (the file's, else its
/// folder's): the files it would create (`-wal`, `-shm`, the lock, or the store itself) would be
/// that user's, and the service could no longer write its own store.
#[cfg(unix)]
fn owned_by_me(path: &Path) -> Result<()> {
    use std::os::unix::fs::MetadataExt;
    let Some((what, owner)) = [
        Some(path),
        path.parent().filter(|d| !d.as_os_str().is_empty()),
    ]
    .into_iter()
    .flatten()
    .find_map(|p| std::fs::metadata(p).ok().map(|m| (p, m.uid()))) else {
        return Ok(());
    };
    // SAFETY: geteuid has no preconditions and cannot fail.
    let me = unsafe { libc::geteuid() };
    if owner == me {
        return Ok(());
    }
    Err(StoreError::Unavailable(format!(
        "{} belongs to user id {owner}, and this is user id {me}: run the command as the \
         store's owner (for the Debian package, `runuser -u banditore -- banditore …`)",
        what.display()
    )))
}

#[cfg(not(unix))]
fn owned_by_me(_: &Path) -> Result<()> {
    Ok(())
}

fn create_folder(path: &Path) -> Result<()> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|e| {
            StoreError::Unavailable(format!("cannot create {}: {e}", dir.display()))
        })?;
    }
    Ok(())
}

async fn open_file(settings: &StoreSettings, path: &Path, lock: Option<File>) -> Result<SqlStore> {
    let absolute = std::path::absolute(path)
        .map_err(|e| StoreError::Unavailable(format!("{}: {e}", path.display())))?;
    let file_url = url::Url::from_file_path(&absolute).map_err(|_| {
        StoreError::Unavailable(format!("{} is not a usable path", absolute.display()))
    })?;
    let base = file_url.as_str().replacen("file://", "sqlite://", 1);
    let synchronous = match settings.sqlite_synchronous {
        SqliteSynchronous::Full => "FULL",
        SqliteSynchronous::Normal => "NORMAL",
    };
    let pragmas = move |cache_kib: i64| {
        format!(
            "PRAGMA journal_mode = WAL; PRAGMA synchronous = {synchronous}; PRAGMA foreign_keys = ON;
             PRAGMA temp_store = MEMORY; PRAGMA cache_size = -{cache_kib};
             PRAGMA busy_timeout = {};",
            // Another process holding the write lock (a backup tool, an admin shell) makes writes
            // wait this long, then fail as "unavailable" (HTTP 503, which Alertmanager retries).
            BUSY_TIMEOUT.as_millis()
        )
    };
    let writer_pragmas = pragmas(8000);
    // A connection to a file cannot drop the way a network one does, so neither pool pings it
    // before handing it out: that would be one more trip to the connection's thread for each
    // transaction and each read.
    let writer = AnyPoolOptions::new()
        .max_connections(1)
        .min_connections(1)
        .test_before_acquire(false)
        .acquire_timeout(Duration::from_secs(30))
        .after_connect(move |conn, _| {
            let sql = writer_pragmas.clone();
            Box::pin(async move {
                conn.execute(sqlx::AssertSqlSafe(sql)).await?;
                Ok(())
            })
        })
        .connect(&format!("{base}?mode=rwc"))
        .await
        .map_err(|e| StoreError::Unavailable(format!("cannot open {}: {e}", path.display())))?;
    // Readers never take a write lock, so they need no journal_mode change of their own.
    let reader_pragmas = format!(
        "PRAGMA cache_size = -2000; PRAGMA busy_timeout = {};",
        BUSY_TIMEOUT.as_millis()
    );
    let reader = AnyPoolOptions::new()
        .max_connections(settings.max_connections.max(1))
        .test_before_acquire(false)
        .acquire_timeout(Duration::from_secs(30))
        .after_connect(move |conn, _| {
            let sql = reader_pragmas.clone();
            Box::pin(async move {
                conn.execute(sqlx::AssertSqlSafe(sql)).await?;
                Ok(())
            })
        })
        .connect(&format!("{base}?mode=ro"))
        .await
        .map_err(|e| StoreError::Unavailable(format!("cannot open {}: {e}", path.display())))?;
    // Only a warning: the store works either way.
    match planner_is_stable(&writer).await {
        Ok(true) => {}
        Ok(false) => tracing::warn!(
            "this build's SQLite lacks SQLITE_ENABLE_QPSG (set by the repository's \
             .cargo/config.toml): statements are compiled again at every run, and the store is \
             slower"
        ),
        Err(e) => tracing::debug!(error = %e, "cannot read SQLite's compile options"),
    }
    let lite = super::lite::open(path, &pragmas(8000))?;
    Ok(SqlStore::new(
        Dialect::Sqlite,
        writer,
        reader,
        lock,
        None,
        Some(lite),
    ))
}

/// Whether the SQLite linked in keeps a statement's plan whatever values are bound to it
/// (`SQLITE_ENABLE_QPSG`), so that a prepared statement is not compiled again at each run.
async fn planner_is_stable(pool: &sqlx::AnyPool) -> Result<bool> {
    let found: Option<i64> = sqlx::query_scalar(
        "SELECT 1 FROM pragma_compile_options WHERE compile_options = 'ENABLE_QPSG'",
    )
    .fetch_optional(pool)
    .await?;
    Ok(found.is_some())
}

pub(super) const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// The file named by a `sqlite://path` URL (query parameters are not used).
pub fn database_path(url: &str) -> Result<PathBuf> {
    let rest = url
        .strip_prefix("sqlite://")
        .ok_or_else(|| StoreError::Unavailable(format!("`{url}` is not a sqlite:// URL")))?;
    let path = rest.split('?').next().unwrap_or(rest);
    if path.is_empty() {
        return Err(StoreError::Unavailable(
            "the sqlite:// URL names no file".into(),
        ));
    }
    Ok(PathBuf::from(path))
}

fn lock_file(db: &Path) -> Result<File> {
    try_lock_file(db)?.ok_or_else(|| {
        StoreError::Unavailable(format!(
            "{} is in use by another Banditore process (SQLite allows one; use PostgreSQL for several)",
            db.display()
        ))
    })
}

/// The lock, or `None` when another process holds it; an error when it cannot be opened.
fn try_lock_file(db: &Path) -> Result<Option<File>> {
    let mut name = db.as_os_str().to_owned();
    name.push(".lock");
    let file = File::options()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&name)
        .map_err(|e| {
            StoreError::Unavailable(format!(
                "cannot open lock file {}: {e}",
                Path::new(&name).display()
            ))
        })?;
    match file.try_lock() {
        Ok(()) => Ok(Some(file)),
        Err(std::fs::TryLockError::WouldBlock) => Ok(None),
        Err(std::fs::TryLockError::Error(e)) => Err(StoreError::Unavailable(format!(
            "cannot lock {}: {e}",
            Path::new(&name).display()
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::planner_is_stable;

    #[tokio::test]
    async fn the_sqlite_built_in_keeps_its_plans_whatever_is_bound() {
        sqlx::any::install_default_drivers();
        let pool = sqlx::any::AnyPoolOptions::new()
            .max_connections(1)
            .connect("sqlite::memory:")
            .await
            .expect("an in-memory database");
        assert!(
            planner_is_stable(&pool).await.expect("compile options"),
            "SQLite built without SQLITE_ENABLE_QPSG: is .cargo/config.toml in place?"
        );
    }
}
