//! [`HeartbeatStore`] over the SQL store. A ping is one conditional `UPDATE` in the common case
//! (the heartbeat was up): a cron job on a thousand hosts pinging every minute is some seventeen
//! small writes a second.

use std::collections::HashMap;
use std::time::Duration;

use async_trait::async_trait;
use jiff::{SignedDuration, Timestamp};
use sqlx::any::AnyRow;
use sqlx::{Any, Row, Transaction};

use super::db::Db;
use super::dialect::Dialect;
use super::rows::{json, ms, opt_ts, ts};
use super::sql::{SqlStore, signal_rows};
use super::{Beat, HeartbeatRow, HeartbeatStore, Result, StoreError};
use crate::domain::Signal;

const COLUMNS: &str = "name, state, created_at, last_ping_at, due_at, changed_at, pings, detail, origin, definition, defined_by";

fn heartbeat_from_row(row: &AnyRow) -> Result<HeartbeatRow> {
    Ok(HeartbeatRow {
        name: row.try_get("name")?,
        state: row.try_get("state")?,
        created_at: ts(row.try_get("created_at")?)?,
        last_ping_at: opt_ts(row.try_get("last_ping_at")?)?,
        due_at: ts(row.try_get("due_at")?)?,
        changed_at: ts(row.try_get("changed_at")?)?,
        pings: row.try_get("pings")?,
        detail: row.try_get("detail")?,
        origin: row.try_get("origin")?,
        definition: row.try_get("definition")?,
        defined_by: row.try_get("defined_by")?,
    })
}

fn after(t: Timestamp, d: Duration) -> Result<Timestamp> {
    SignedDuration::try_from(d)
        .ok()
        .and_then(|d| t.checked_add(d).ok())
        .ok_or_else(|| StoreError::Corrupt(format!("{t} plus {d:?} is out of range")))
}

/// Stores one signal inside `tx`, as the signals' intake does, and returns its id.
pub(super) async fn insert_signal(
    tx: &mut Transaction<'static, Any>,
    dialect: Dialect,
    at: Timestamp,
    s: &Signal,
) -> Result<i64> {
    signal_rows(dialect, std::iter::once((at, s)))?
        .fetch_one(&mut Db::tx(tx))
        .await?
        .try_get::<i64, _>(0)
}

#[async_trait]
impl HeartbeatStore for SqlStore {
    async fn sync_heartbeats(
        &self,
        configured: &[(String, Duration)],
        now: Timestamp,
        farewell: &(dyn for<'n> Fn(&'n str) -> Signal + Send + Sync),
    ) -> Result<usize> {
        let mut tx = self.write().await?;
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {COLUMNS} FROM heartbeats"
        )))
        .fetch_all(&mut *tx)
        .await?;
        let mut stored: HashMap<String, HeartbeatRow> = HashMap::new();
        for row in &rows {
            let h = heartbeat_from_row(row)?;
            stored.insert(h.name.clone(), h);
        }
        for (name, allowance) in configured {
            let stored = stored.remove(name);
            if stored.as_ref().is_some_and(|h| h.origin != "config") {
                // Defined through the API, now in the configuration too: the configuration's
                // definition holds from now on, and the clock goes on.
                sqlx::query(
                    "UPDATE heartbeats SET origin = 'config', definition = NULL, defined_by = NULL
                     WHERE name = $1",
                )
                .bind(name)
                .execute(&mut *tx)
                .await?;
            }
            match stored {
                None => {
                    // Another replica starting at the same moment may have written it.
                    sqlx::query(
                        "INSERT INTO heartbeats (name, state, created_at, due_at, changed_at)
                         VALUES ($1, 'new', $2, $3, $2) ON CONFLICT (name) DO NOTHING",
                    )
                    .bind(name)
                    .bind(ms(now))
                    .bind(ms(after(now, *allowance)?))
                    .execute(&mut *tx)
                    .await?;
                }
                Some(h) if h.state == "new" || h.state == "up" => {
                    // Computed from the row as the UPDATE finds it, not as read above: a ping
                    // another replica commits meanwhile is counted from, not overwritten with
                    // a due time from the ping before it.
                    let allowance_ms = i64::try_from(allowance.as_millis()).map_err(|_| {
                        StoreError::Corrupt(format!("{allowance:?} is out of range"))
                    })?;
                    sqlx::query(
                        "UPDATE heartbeats SET due_at = CASE
                             WHEN COALESCE(last_ping_at, created_at) + $1 < $2 THEN $3
                             ELSE COALESCE(last_ping_at, created_at) + $1 END
                         WHERE name = $4 AND state IN ('new', 'up')",
                    )
                    .bind(allowance_ms)
                    .bind(ms(now))
                    .bind(ms(after(now, *allowance)?))
                    .bind(name)
                    .execute(&mut *tx)
                    .await?;
                }
                Some(_) => {}
            }
        }
        let mut resolved = 0;
        // Heartbeats defined through the API are not the configuration's to forget.
        stored.retain(|_, h| h.origin == "config");
        for (name, h) in stored {
            if h.state == "late" || h.state == "failed" {
                insert_signal(&mut tx, self.dialect, now, &farewell(&name)).await?;
                resolved += 1;
            }
            sqlx::query("DELETE FROM heartbeats WHERE name = $1")
                .bind(&name)
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(resolved)
    }

    async fn record_ping(
        &self,
        name: &str,
        now: Timestamp,
        due_at: Timestamp,
        resolved: &Signal,
        configured: bool,
    ) -> Result<Beat> {
        let mut tx = self.write().await?;
        // The usual case, one statement: it was up (or never pinged).
        // Only a heartbeat never pinged has no ping before this one.
        let pings: Option<i64> = sqlx::query_scalar(
            "UPDATE heartbeats SET last_ping_at = $1, due_at = $2, pings = pings + 1,
                    changed_at = CASE WHEN state = 'up' THEN changed_at ELSE $1 END,
                    state = 'up'
             WHERE name = $3 AND state IN ('new', 'up')
             RETURNING pings",
        )
        .bind(ms(now))
        .bind(ms(due_at))
        .bind(name)
        .fetch_optional(&mut *tx)
        .await?;
        if let Some(pings) = pings {
            tx.commit().await?;
            let was = if pings == 1 { "new" } else { "up" };
            return Ok(Beat {
                was: was.into(),
                signal: None,
            });
        }
        // Late or failed: back, and its alarm ends with it. A racing ping finds it up by now
        // (the row is locked until this commits) and resolves nothing.
        let before: Option<String> =
            sqlx::query_scalar("SELECT state FROM heartbeats WHERE name = $1")
                .bind(name)
                .fetch_optional(&mut *tx)
                .await?;
        let back = sqlx::query(
            "UPDATE heartbeats SET last_ping_at = $1, due_at = $2, pings = pings + 1,
                    changed_at = $1, state = 'up', detail = ''
             WHERE name = $3 AND state IN ('late', 'failed')",
        )
        .bind(ms(now))
        .bind(ms(due_at))
        .bind(name)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        let beat = if back == 1 {
            Beat {
                was: before.unwrap_or_else(|| "late".into()),
                signal: Some(insert_signal(&mut tx, self.dialect, now, resolved).await?),
            }
        } else if before.is_some() {
            // Another ping brought it back first.
            sqlx::query(
                "UPDATE heartbeats SET last_ping_at = $1, due_at = $2, pings = pings + 1
                 WHERE name = $3",
            )
            .bind(ms(now))
            .bind(ms(due_at))
            .bind(name)
            .execute(&mut *tx)
            .await?;
            Beat {
                was: "up".into(),
                signal: None,
            }
        } else if !configured {
            // Defined through the API and deleted meanwhile: a row written here would outlive
            // the deletion, of the configuration's origin and in no replica's catalog.
            Beat {
                was: Beat::GONE.into(),
                signal: None,
            }
        } else {
            // Configured, but its row is gone (a replica with another configuration started).
            sqlx::query(
                "INSERT INTO heartbeats (name, state, created_at, last_ping_at, due_at, changed_at, pings)
                 VALUES ($1, 'up', $2, $2, $3, $2, 1) ON CONFLICT (name) DO NOTHING",
            )
            .bind(name)
            .bind(ms(now))
            .bind(ms(due_at))
            .execute(&mut *tx)
            .await?;
            Beat {
                was: "new".into(),
                signal: None,
            }
        };
        tx.commit().await?;
        Ok(beat)
    }

    async fn record_failure(
        &self,
        name: &str,
        now: Timestamp,
        detail: &str,
        firing: &Signal,
        configured: bool,
    ) -> Result<Beat> {
        let mut tx = self.write().await?;
        let was: Option<String> =
            sqlx::query_scalar("SELECT state FROM heartbeats WHERE name = $1")
                .bind(name)
                .fetch_optional(&mut *tx)
                .await?;
        let Some(was) = was else {
            if !configured {
                // Deleted through the API meanwhile: no alarm that nothing would ever resolve.
                tx.commit().await?;
                return Ok(Beat {
                    was: Beat::GONE.into(),
                    signal: None,
                });
            }
            sqlx::query(
                "INSERT INTO heartbeats (name, state, created_at, due_at, changed_at, detail)
                 VALUES ($1, 'failed', $2, $2, $2, $3) ON CONFLICT (name) DO NOTHING",
            )
            .bind(name)
            .bind(ms(now))
            .bind(detail)
            .execute(&mut *tx)
            .await?;
            let signal = insert_signal(&mut tx, self.dialect, now, firing).await?;
            tx.commit().await?;
            return Ok(Beat {
                was: "new".into(),
                signal: Some(signal),
            });
        };
        // Conditional, so that of two racing reports one raises the alarm.
        let moved = sqlx::query(
            "UPDATE heartbeats SET state = 'failed', changed_at = $1, detail = $2
             WHERE name = $3 AND state <> 'failed'",
        )
        .bind(ms(now))
        .bind(detail)
        .bind(name)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        let signal = if moved == 1 {
            Some(insert_signal(&mut tx, self.dialect, now, firing).await?)
        } else {
            sqlx::query("UPDATE heartbeats SET detail = $1 WHERE name = $2")
                .bind(detail)
                .bind(name)
                .execute(&mut *tx)
                .await?;
            None
        };
        tx.commit().await?;
        Ok(Beat { was, signal })
    }

    async fn declare_silent(
        &self,
        names: &[String],
        now: Timestamp,
        alarm: &(dyn for<'n> Fn(&'n str, Option<Timestamp>) -> Signal + Send + Sync),
    ) -> Result<Vec<(String, i64)>> {
        if names.is_empty() {
            return Ok(Vec::new());
        }
        let mut tx = self.write().await?;
        let sql = format!(
            "UPDATE heartbeats SET state = 'late', changed_at = $1
             WHERE state IN ('new', 'up') AND due_at <= $1 AND name IN ({})
             RETURNING name, last_ping_at",
            self.dialect.texts().replace("$1", "$2")
        );
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(ms(now))
            .bind(json(&names)?)
            .fetch_all(&mut *tx)
            .await?;
        let mut late = rows
            .iter()
            .map(|r| {
                Ok((
                    r.try_get::<String, _>("name")?,
                    opt_ts(r.try_get("last_ping_at")?)?,
                ))
            })
            .collect::<Result<Vec<_>>>()?;
        late.sort();
        let mut declared = Vec::with_capacity(late.len());
        for (name, last) in late {
            let id = insert_signal(&mut tx, self.dialect, now, &alarm(&name, last)).await?;
            declared.push((name, id));
        }
        tx.commit().await?;
        Ok(declared)
    }

    async fn heartbeats(&self) -> Result<Vec<HeartbeatRow>> {
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {COLUMNS} FROM heartbeats ORDER BY name"
        )))
        .fetch_all(&self.reader)
        .await?
        .iter()
        .map(heartbeat_from_row)
        .collect()
    }
}
