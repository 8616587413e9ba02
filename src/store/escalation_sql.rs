//! [`EscalationStore`] over the SQL store, and the ladder's statements the router's and the
//! pipeline's transaction ([`super::Tx`]) run: steps written once (the unique index on incident,
//! desk and step keeps the first ladder when replicas race), and every step out of `waiting` a
//! conditional update, so that a step fires, stops or ends once however many would-be leaders
//! step at once.

use async_trait::async_trait;
use jiff::Timestamp;
use sqlx::Row;

use super::db::{self, Db};
use super::rows::{from_json, json, ms, parse, ts, update_from_row};
use super::sql::SqlStore;
use super::{
    EscalationRow, EscalationState, EscalationStore, NewEscalationStep, NextEscalation, Result,
    UpdateRow,
};

const COLUMNS: &str = "id, incident_id, subscriber_id, step, channels, due_at, state, changed_at";

fn escalation_from_row(row: &impl db::Cols) -> Result<EscalationRow> {
    Ok(EscalationRow {
        id: row.try_get("id")?,
        incident_id: row.try_get("incident_id")?,
        subscriber_id: row.try_get("subscriber_id")?,
        step: row.try_get("step")?,
        channels: from_json(row.try_get("channels")?, "channels")?,
        due_at: ts(row.try_get("due_at")?)?,
        state: parse(row.try_get::<&str, _>("state")?, "escalation state")?,
        changed_at: ts(row.try_get("changed_at")?)?,
    })
}

/// Writes a desk's ladder for an incident; steps already written stay as they are. Returns how
/// many were written.
pub(super) async fn start(
    conn: &mut Db<'_>,
    incident_id: i64,
    subscriber_id: i64,
    steps: &[NewEscalationStep],
    now: Timestamp,
) -> Result<u64> {
    let mut written = 0;
    for s in steps {
        written += db::query(
            "INSERT INTO escalations (incident_id, subscriber_id, step, channels, due_at, state, changed_at)
             VALUES ($1, $2, $3, $4, $5, 'waiting', $6)
             ON CONFLICT (incident_id, subscriber_id, step) DO NOTHING",
        )
        .bind(incident_id)
        .bind(subscriber_id)
        .bind(s.step)
        .bind(json(&s.channels)?)
        .bind(ms(s.due_at))
        .bind(ms(now))
        .execute(conn)
        .await?
        .rows_affected();
    }
    Ok(written)
}

/// The desks of the incident with a ladder, whatever its steps became.
pub(super) async fn desks(conn: &mut Db<'_>, incident_id: i64) -> Result<Vec<i64>> {
    db::query_scalar("SELECT DISTINCT subscriber_id FROM escalations WHERE incident_id = $1")
        .bind(incident_id)
        .fetch_all(conn)
        .await
}

/// Marks the incident's waiting steps resolved; how many.
pub(super) async fn end(conn: &mut Db<'_>, incident_id: i64, now: Timestamp) -> Result<u64> {
    Ok(db::query(
        "UPDATE escalations SET state = 'resolved', changed_at = $2
         WHERE incident_id = $1 AND state = 'waiting'",
    )
    .bind(incident_id)
    .bind(ms(now))
    .execute(conn)
    .await?
    .rows_affected())
}

/// Marks a desk's waiting steps for the incident acknowledged; how many.
pub(super) async fn stop(
    conn: &mut Db<'_>,
    incident_id: i64,
    subscriber_id: i64,
    now: Timestamp,
) -> Result<u64> {
    Ok(db::query(
        "UPDATE escalations SET state = 'acknowledged', changed_at = $3
         WHERE incident_id = $1 AND subscriber_id = $2 AND state = 'waiting'",
    )
    .bind(incident_id)
    .bind(subscriber_id)
    .bind(ms(now))
    .execute(conn)
    .await?
    .rows_affected())
}

/// Waiting steps due at `now`, earliest first. Read without a lock: the leader then locks each
/// step's incident before its step (`Tx::incident`), the order in which an acknowledgement (the
/// incident's key, then the desk's steps) and the routing of a resolution take them, so none of
/// them deadlocks with it; the conditional update of [`settle`] is what makes a step fire once
/// when two would-be leaders read the same steps.
pub(super) async fn due(
    conn: &mut Db<'_>,
    now: Timestamp,
    limit: u32,
) -> Result<Vec<EscalationRow>> {
    db::query(format!(
        "SELECT {COLUMNS} FROM escalations WHERE state = 'waiting' AND due_at <= $1
         ORDER BY due_at, id LIMIT $2"
    ))
    .bind(ms(now))
    .bind(i64::from(limit))
    .fetch_all(conn)
    .await?
    .iter()
    .map(escalation_from_row)
    .collect()
}

/// Moves a step out of `waiting`; false when it had already left it.
pub(super) async fn settle(
    conn: &mut Db<'_>,
    id: i64,
    state: EscalationState,
    now: Timestamp,
) -> Result<bool> {
    let moved = db::query(
        "UPDATE escalations SET state = $2, changed_at = $3 WHERE id = $1 AND state = 'waiting'",
    )
    .bind(id)
    .bind(state.as_str())
    .bind(ms(now))
    .execute(conn)
    .await?
    .rows_affected();
    Ok(moved == 1)
}

/// When the earliest waiting step is due.
pub(super) async fn next_due(conn: &mut Db<'_>) -> Result<Option<Timestamp>> {
    let at: Option<i64> =
        db::query_scalar("SELECT MIN(due_at) FROM escalations WHERE state = 'waiting'")
            .fetch_one(conn)
            .await?;
    at.map(ts).transpose()
}

/// Whether the desk has acknowledged the incident.
pub(super) async fn acknowledged(
    conn: &mut Db<'_>,
    incident_id: i64,
    subscriber_id: i64,
) -> Result<bool> {
    let found: Option<i64> = db::query_scalar(
        "SELECT id FROM acknowledgements WHERE incident_id = $1 AND subscriber_id = $2",
    )
    .bind(incident_id)
    .bind(subscriber_id)
    .fetch_optional(conn)
    .await?;
    Ok(found.is_some())
}

/// The incident's latest update that was routed: what a step sends.
pub(super) async fn latest_routed(
    conn: &mut Db<'_>,
    incident_id: i64,
) -> Result<Option<UpdateRow>> {
    db::query(
        "SELECT * FROM incident_updates WHERE incident_id = $1 AND routed_at IS NOT NULL AND silent = 0
         ORDER BY seq DESC LIMIT 1",
    )
    .bind(incident_id)
    .fetch_optional(conn)
    .await?
    .as_ref()
    .map(update_from_row)
    .transpose()
}

#[async_trait]
impl EscalationStore for SqlStore {
    async fn next_escalations(&self, incident_id: i64) -> Result<Vec<NextEscalation>> {
        sqlx::query(
            "SELECT e.subscriber_id, s.name, e.step, e.channels, e.due_at FROM escalations e
             JOIN subscribers s ON s.id = e.subscriber_id
             WHERE e.incident_id = $1 AND e.state = 'waiting'
               AND e.step = (SELECT MIN(w.step) FROM escalations w
                             WHERE w.incident_id = e.incident_id
                               AND w.subscriber_id = e.subscriber_id AND w.state = 'waiting')
             ORDER BY e.due_at, e.subscriber_id",
        )
        .bind(incident_id)
        .fetch_all(&self.reader)
        .await?
        .iter()
        .map(|row| {
            Ok(NextEscalation {
                subscriber_id: row.try_get("subscriber_id")?,
                subscriber_name: row.try_get("name")?,
                step: row.try_get("step")?,
                channels: from_json(row.try_get("channels")?, "channels")?,
                due_at: ts(row.try_get("due_at")?)?,
            })
        })
        .collect()
    }

    async fn escalations(&self, incident_id: i64) -> Result<Vec<EscalationRow>> {
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {COLUMNS} FROM escalations WHERE incident_id = $1 ORDER BY subscriber_id, step"
        )))
        .bind(incident_id)
        .fetch_all(&self.reader)
        .await?
        .iter()
        .map(escalation_from_row)
        .collect()
    }
}
