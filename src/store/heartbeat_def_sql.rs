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
            let taken = sqlx::query(
                "UPDATE heartbeats SET origin = 'api', definition = $1, defined_by = $2
                 WHERE name = $3 AND origin = 'config'",
            )
            .bind(definition)
            .bind(by)
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
        let row: Option<(String, String, i64, Option<i64>)> = sqlx::query_as(
            "SELECT origin, state, created_at, last_ping_at FROM heartbeats WHERE name = $1",
        )
        .bind(name)
        .fetch_optional(&mut *tx)
        .await?;
        let Some((origin, state, created_at, last_ping_at)) = row else {
            return Ok(Defined::Missing);
        };
        if origin != "api" {
            return Ok(Defined::Configured);
        }
        let start = super::rows::ts(last_ping_at.unwrap_or(created_at))?;
        let mut due = after(start, allowance)?;
        if due < now {
            due = after(now, allowance)?;
        }
        let waiting = state == "new" || state == "up";
        sqlx::query(
            "UPDATE heartbeats SET definition = $1, defined_by = $2,
                    due_at = CASE WHEN $3 = 1 THEN $4 ELSE due_at END
             WHERE name = $5 AND origin = 'api'",
        )
        .bind(definition)
        .bind(by)
        .bind(i64::from(waiting))
        .bind(ms(due))
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
            Some(insert_signal(&mut tx, now, farewell).await?)
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
