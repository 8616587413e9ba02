//! A consistent copy of the SQLite store, taken while the service runs (`banditore backup FILE`).
//!
//! The running service holds `<file>.lock`, so the store's own opening would refuse; the copy is
//! made on a read-only connection opened directly on the database file instead. In WAL mode a
//! reader sees one snapshot and never blocks the writer, so `VACUUM INTO` writes that snapshot,
//! compacted, to a new file while webhooks keep being stored. The copy is written beside its
//! destination under a temporary name, synced, checked with `PRAGMA integrity_check`, and only
//! then linked to its name, which must not exist: a backup never overwrites a file, and a copy cut
//! short (a full disk, a killed process) never sits under the name of a backup.

use std::path::{Path, PathBuf};
use std::time::Duration;

use sqlx::Connection;
use sqlx::sqlite::{SqliteConnectOptions, SqliteConnection};

use super::sqlite::database_path;
use super::{Result, StoreError};

/// What a backup wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackupReport {
    /// The database file copied.
    pub source: PathBuf,
    /// The size of the copy, in bytes.
    pub bytes: u64,
    /// Incidents the copy holds.
    pub incidents: i64,
}

/// How long the copy waits for a lock it needs (only a checkpoint truncating the WAL takes one).
const BUSY_TIMEOUT: Duration = Duration::from_secs(30);

/// Copies the SQLite database of `url` to `destination`, which must not exist.
pub async fn backup_sqlite(url: &str, destination: &Path) -> Result<BackupReport> {
    let source = database_path(url)?;
    if !source.is_file() {
        return Err(StoreError::Unavailable(format!(
            "no database at {} (store.url is {url})",
            source.display()
        )));
    }
    if destination.symlink_metadata().is_ok() {
        return Err(StoreError::Conflict(format!(
            "{} exists: a backup never replaces a file, give a new name",
            destination.display()
        )));
    }
    if let Some(dir) = parent_of(destination).filter(|d| !d.is_dir()) {
        return Err(StoreError::Unavailable(format!(
            "{} is not a folder: the backup's folder must exist",
            dir.display()
        )));
    }
    same_owner(&source)?;
    let partial = partial_name(destination)?;
    let result = copy_and_check(&source, &partial).await;
    let report = match result {
        Ok(incidents) => incidents,
        Err(e) => {
            let _ = std::fs::remove_file(&partial);
            return Err(e);
        }
    };
    let linked = std::fs::hard_link(&partial, destination);
    let _ = std::fs::remove_file(&partial);
    linked.map_err(|e| {
        if e.kind() == std::io::ErrorKind::AlreadyExists {
            StoreError::Conflict(format!(
                "{} appeared during the backup: a backup never replaces a file",
                destination.display()
            ))
        } else {
            StoreError::Unavailable(format!(
                "cannot name the copy {}: {e}",
                destination.display()
            ))
        }
    })?;
    if let Some(dir) = parent_of(destination) {
        // The new name must survive a power cut as the file's contents do.
        let _ = std::fs::File::open(dir).and_then(|d| d.sync_all());
    }
    let bytes = std::fs::metadata(destination)
        .map(|m| m.len())
        .map_err(|e| StoreError::Unavailable(format!("{}: {e}", destination.display())))?;
    Ok(BackupReport {
        source,
        bytes,
        incidents: report,
    })
}

/// Writes the snapshot to `partial`, syncs it and checks it; returns the incidents it holds.
async fn copy_and_check(source: &Path, partial: &Path) -> Result<i64> {
    let target = partial.to_str().ok_or_else(|| {
        StoreError::Unavailable(format!("{} is not a UTF-8 path", partial.display()))
    })?;
    let options = SqliteConnectOptions::new()
        .filename(source)
        .read_only(true)
        .busy_timeout(BUSY_TIMEOUT);
    let mut conn = SqliteConnection::connect_with(&options)
        .await
        .map_err(|e| StoreError::Unavailable(format!("cannot open {}: {e}", source.display())))?;
    // The copy holds what the store holds (contacts, the audit log): made empty first, readable
    // by its owner only, so that nobody else can open it while it is being written (SQLite
    // writes into an empty file as into a new one).
    let mut private = std::fs::OpenOptions::new();
    private.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut private, 0o600);
    private.open(partial).map_err(|e| {
        StoreError::Unavailable(format!("cannot create {}: {e}", partial.display()))
    })?;
    let copied = sqlx::query("VACUUM INTO ?")
        .bind(target)
        .execute(&mut conn)
        .await;
    let _ = conn.close().await;
    copied
        .map_err(|e| StoreError::Unavailable(format!("cannot copy {}: {e}", source.display())))?;
    // Then it gets the store's own permissions.
    std::fs::metadata(source)
        .and_then(|m| std::fs::set_permissions(partial, m.permissions()))
        .and_then(|()| std::fs::File::open(partial))
        .and_then(|f| f.sync_all())
        .map_err(|e| StoreError::Unavailable(format!("cannot sync {}: {e}", partial.display())))?;

    let options = SqliteConnectOptions::new()
        .filename(partial)
        .read_only(true);
    let mut copy = SqliteConnection::connect_with(&options).await?;
    let verdict: String = sqlx::query_scalar("PRAGMA integrity_check")
        .fetch_one(&mut copy)
        .await?;
    let incidents: std::result::Result<i64, sqlx::Error> =
        sqlx::query_scalar("SELECT COUNT(*) FROM incidents")
            .fetch_one(&mut copy)
            .await;
    let _ = copy.close().await;
    if verdict != "ok" {
        return Err(StoreError::Corrupt(format!(
            "the copy of {} fails its integrity check: {verdict}",
            source.display()
        )));
    }
    Ok(incidents?)
}

/// Refuses to open the store as anyone but its owner: even a reader of a WAL database creates
/// the `-wal` and `-shm` files when they are missing (the service stopped), and files left
/// behind by root would keep the service's own user out of its store.
#[cfg(unix)]
fn same_owner(source: &Path) -> Result<()> {
    use std::os::unix::fs::MetadataExt;
    let owner = std::fs::metadata(source)
        .map_err(|e| StoreError::Unavailable(format!("{}: {e}", source.display())))?
        .uid();
    // SAFETY: geteuid has no preconditions and cannot fail.
    let me = unsafe { libc::geteuid() };
    if owner != me {
        return Err(StoreError::Unavailable(format!(
            "{} belongs to user id {owner}, and this is user id {me}: run the backup as the \
             store's owner (for the Debian package, `runuser -u banditore -- banditore backup FILE`)",
            source.display()
        )));
    }
    Ok(())
}

#[cfg(not(unix))]
fn same_owner(_: &Path) -> Result<()> {
    Ok(())
}

/// A name beside `destination` for the copy while it is written, hidden and unique to this
/// process.
fn partial_name(destination: &Path) -> Result<PathBuf> {
    let name = destination.file_name().ok_or_else(|| {
        StoreError::Unavailable(format!("{} names no file", destination.display()))
    })?;
    let mut partial = std::ffi::OsString::from(".");
    partial.push(name);
    partial.push(format!(".partial-{}", std::process::id()));
    Ok(match parent_of(destination) {
        Some(dir) => dir.join(partial),
        None => PathBuf::from(partial),
    })
}

fn parent_of(path: &Path) -> Option<&Path> {
    path.parent().filter(|d| !d.as_os_str().is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_partial_copy_sits_hidden_beside_its_destination() {
        let partial = partial_name(Path::new("/backups/b.db")).unwrap();
        assert_eq!(partial.parent(), Some(Path::new("/backups")));
        let name = partial.file_name().unwrap().to_str().unwrap();
        assert!(name.starts_with(".b.db.partial-"), "{name}");
        assert_eq!(
            partial_name(Path::new("b.db")).unwrap().parent(),
            Some(Path::new(""))
        );
    }

    #[tokio::test]
    async fn a_backup_refuses_an_existing_file_and_a_missing_database() {
        let dir = tempfile::tempdir().unwrap();
        let existing = dir.path().join("taken.db");
        std::fs::write(&existing, b"keep me").unwrap();
        let db = dir.path().join("store.db");
        std::fs::write(&db, b"").unwrap();
        let url = format!("sqlite://{}", db.display());
        let refused = backup_sqlite(&url, &existing).await.unwrap_err();
        assert!(matches!(refused, StoreError::Conflict(_)), "{refused}");
        assert_eq!(std::fs::read(&existing).unwrap(), b"keep me");

        let missing = format!("sqlite://{}", dir.path().join("none.db").display());
        let refused = backup_sqlite(&missing, &dir.path().join("new.db"))
            .await
            .unwrap_err();
        assert!(refused.to_string().contains("no database at"), "{refused}");
        assert!(!dir.path().join("new.db").exists());
    }
}
