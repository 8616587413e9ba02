//! [`ClusterStore`] over the SQL store: leases in the `leases` table.

use async_trait::async_trait;
use jiff::Timestamp;

use super::dialect::Dialect;
use super::rows::ms;
use super::sql::SqlStore;
use super::{ClusterStore, Result};

#[async_trait]
impl ClusterStore for SqlStore {
    async fn lead(
        &self,
        duty: &str,
        holder: &str,
        now: Timestamp,
        until: Timestamp,
    ) -> Result<bool> {
        // Inserted, renewed, or taken over once run out: a row comes back only for the holder.
        // On SQLite the exclusive lock file already proves that no other process runs, so a
        // lease left by a killed process is taken over at once instead of waited out.
        let statement = match self.dialect {
            Dialect::Postgres => {
                "INSERT INTO leases (name, holder, until) VALUES ($1, $2, $3)
                 ON CONFLICT (name) DO UPDATE SET holder = excluded.holder, until = excluded.until
                 WHERE leases.until < $4 OR leases.holder = excluded.holder
                 RETURNING holder"
            }
            Dialect::Sqlite => {
                "INSERT INTO leases (name, holder, until) VALUES ($1, $2, $3)
                 ON CONFLICT (name) DO UPDATE SET holder = excluded.holder, until = excluded.until
                 RETURNING holder"
            }
        };
        let query = sqlx::query(statement)
            .bind(duty)
            .bind(holder)
            .bind(ms(until));
        let query = match self.dialect {
            Dialect::Postgres => query.bind(ms(now)),
            Dialect::Sqlite => query,
        };
        let row = query.fetch_optional(&self.writer).await?;
        Ok(row.is_some())
    }

    async fn resign(&self, duty: &str, holder: &str) -> Result<()> {
        sqlx::query("DELETE FROM leases WHERE name = $1 AND holder = $2")
            .bind(duty)
            .bind(holder)
            .execute(&self.writer)
            .await?;
        Ok(())
    }
}
