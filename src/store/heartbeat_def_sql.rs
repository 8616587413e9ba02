//! [`HeartbeatDefinitions`] over the SQL store: each change is conditional on the row's origin,
//! so that the API never changes a configured heartbeat, whatever another replica did meanwhile.

use std::time::Duration;

use async_trait::async_trait;
use jiff::{SignedDuration, Timestamp};

use super::heartbeat_sql::insert_signal;
use super::rows::ms;
use super::sql::SqlStore;
use super::{Defined, Forgotten, HeartbeatDefinitions, Result, StoreError};
use crate::domain::Signal;

fn after(t: Timestamp, d: Duration) -> Result<Timestamp> {
    SignedDuration::try_from(d)
        .ok()
        .and_then(|d| t.checked_add(d).ok())
        .ok_or_else(|| StoreError::Corrupt(format!("{t} plus {d:?} is out of range")))
}

fn millis(d: Duration) -> Result<i64> {
    i64::try_from(d.as_millis()).map_err(|_| StoreError::Corrupt(format!("{d:?} is out of range")))
}

/// A heartbeat waiting for a ping (`new` or `up`) is due `$3` (an allowance, in milliseconds)
/// after its last ping or the start of its clock, or at `$5` (`$4`, now, plus it) when that is
/// past; a late or failed one keeps its due time until its next ping.
const DUE_AGAIN: &str = "due_at = CASE WHEN state IN ('new', 'up') THEN
        CASE WHEN COALESCE(last_ping_at, created_at) + $3 < $4 THEN $5
             ELSE COALESCE(last_ping_at, created_at) + $3 END
        ELSE due_at END";

#[async_trait]
impl HeartbeatDefinitions for SqlStore {
    async fn define_heartbeat(
        &self,
        name: &str,
        definition: &str,
        by: &str,
        allowance: Duration,
        now: Timestamp,
        configured: &[String],
    ) -> Result<Defined> {
        let mut tx = self.write().await?;
        if !configured.iter().any(|c| c == name) {
            // An orphan of the configuration's origin: conditional, so one replica takes it.
            // Its clock goes on, but by this definition's allowance, not the one it was
            // pinged with.
            let taken = sqlx::query(sqlx::AssertSqlSafe(format!(
                "UPDATE heartbeats SET origin = 'api', definition = $1, defined_by = $2, {DUE_AGAIN}
                 WHERE name = $6 AND origin = 'config'"
            )))
            .bind(definition)
            .bind(by)
            .bind(millis(allowance)?)
            .bind(ms(now))
            .bind(ms(after(now, allowance)?))
            .bind(name)
            .execute(&mut *tx)
            .await?
            .rows_affected();
            if taken == 1 {
                tx.commit().await?;
                return Ok(Defined::Done);
            }
        }
        let made = sqlx::query(
            "INSERT INTO heartbeats (name, state, created_at, due_at, changed_at, origin, definition, defined_by)
             VALUES ($1, 'new', $2, $3, $2, 'api', $4, $5) ON CONFLICT (name) DO NOTHING",
        )
        .bind(name)
        .bind(ms(now))
        .bind(ms(after(now, allowance)?))
        .bind(definition)
        .bind(by)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        tx.commit().await?;
        Ok(if made == 1 {
            Defined::Done
        } else {
            Defined::Missing
        })
    }

    async fn redefine_heartbeat(
        &self,
        name: &str,
        definition: &str,
        by: &str,
        allowance: Duration,
        now: Timestamp,
    ) -> Result<Defined> {
        let mut tx = self.write().await?;
        let origin: Option<String> =
            sqlx::query_scalar("SELECT origin FROM heartbeats WHERE name = $1")
                .bind(name)
                .fetch_optional(&mut *tx)
                .await?;
        match origin.as_deref() {
            None => return Ok(Defined::Missing),
            Some("api") => {}
            Some(_) => return Ok(Defined::Configured),
        }
        // The due time is computed from the row as the UPDATE finds it: a ping another replica
        // commits meanwhile is counted from, not overwritten with a due time from the one before.
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "UPDATE heartbeats SET definition = $1, defined_by = $2, {DUE_AGAIN}
             WHERE name = $6 AND origin = 'api'"
        )))
        .bind(definition)
        .bind(by)
        .bind(millis(allowance)?)
        .bind(ms(now))
        .bind(ms(after(now, allowance)?))
        .bind(name)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(Defined::Done)
    }

    async fn forget_heartbeat(
        &self,
        name: &str,
        farewell: &Signal,
        now: Timestamp,
    ) -> Result<Forgotten> {
        let mut tx = self.write().await?;
        let row: Option<(String, String)> = sqlx::query_as(
            "DELETE FROM heartbeats WHERE name = $1 AND origin = 'api' RETURNING origin, state",
        )
        .bind(name)
        .fetch_optional(&mut *tx)
        .await?;
        let Some((_, state)) = row else {
            let origin: Option<String> =
                sqlx::query_scalar("SELECT origin FROM heartbeats WHERE name = $1")
                    .bind(name)
                    .fetch_optional(&mut *tx)
                    .await?;
            tx.commit().await?;
            return Ok(if origin.is_some() {
                Forgotten::Configured
            } else {
                Forgotten::Missing
            });
        };
        let signal = if state == "late" || state == "failed" {
            Some(insert_signal(&mut tx, self.dialect, now, farewell).await?)
        } else {
            None
        };
        tx.commit().await?;
        Ok(Forgotten::Done(signal))
    }

    async fn restart_defined_clocks(
        &self,
        defined: &[(String, Duration)],
        now: Timestamp,
    ) -> Result<()> {
        if defined.is_empty() {
            return Ok(());
        }
        let mut tx = self.write().await?;
        for (name, allowance) in defined {
            sqlx::query(
                "UPDATE heartbeats SET due_at = $1
                 WHERE name = $2 AND origin = 'api' AND state IN ('new', 'up') AND due_at < $3",
            )
            .bind(ms(after(now, *allowance)?))
            .bind(name)
            .bind(ms(now))
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }
}
