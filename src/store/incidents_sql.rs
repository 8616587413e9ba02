//! [`IncidentReads`] over the SQL store.

use std::collections::BTreeMap;

use async_trait::async_trait;
use jiff::Timestamp;
use sqlx::Row;

use super::rows::{
    INCIDENT_COLUMNS, alert_from_row, incident_from_row, opt_ts, parse, ts, update_from_row,
};
use super::sql::SqlStore;
use super::{
    AlertRow, Counts, DeliveryRow, IncidentFilter, IncidentReads, IncidentRow, Result, UpdateRow,
};

#[async_trait]
impl IncidentReads for SqlStore {
    async fn list_incidents(&self, filter: &IncidentFilter) -> Result<Vec<IncidentRow>> {
        let open = filter.open.map(i64::from).unwrap_or(-1);
        let sql = format!(
            "SELECT {INCIDENT_COLUMNS} FROM incidents
             WHERE ($1 = -1 OR ($1 = 1 AND resolved_at IS NULL) OR ($1 = 0 AND resolved_at IS NOT NULL))
               AND id < $2
             ORDER BY id DESC LIMIT $3"
        );
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(open)
            .bind(filter.before.unwrap_or(i64::MAX))
            .bind(i64::from(filter.limit.max(1)))
            .fetch_all(&self.reader)
            .await?;
        rows.iter().map(incident_from_row).collect()
    }

    async fn incident(&self, id: i64) -> Result<Option<IncidentRow>> {
        let sql = format!("SELECT {INCIDENT_COLUMNS} FROM incidents WHERE id = $1");
        let row = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(id)
            .fetch_optional(&self.reader)
            .await?;
        row.as_ref().map(incident_from_row).transpose()
    }

    async fn incident_updates(&self, incident_id: i64) -> Result<Vec<UpdateRow>> {
        let rows =
            sqlx::query("SELECT * FROM incident_updates WHERE incident_id = $1 ORDER BY seq")
                .bind(incident_id)
                .fetch_all(&self.reader)
                .await?;
        rows.iter().map(update_from_row).collect()
    }

    async fn incident_alerts(&self, incident_id: i64) -> Result<Vec<AlertRow>> {
        let rows = sqlx::query("SELECT * FROM alerts WHERE incident_id = $1 ORDER BY id")
            .bind(incident_id)
            .fetch_all(&self.reader)
            .await?;
        rows.iter().map(alert_from_row).collect()
    }

    async fn incident_deliveries(&self, incident_id: i64) -> Result<Vec<DeliveryRow>> {
        let rows = sqlx::query(
            "SELECT d.id, u.seq, d.channel, d.recipient, d.subscriber_name, d.state, d.attempts, d.last_error,
                    d.provider_id, d.provider, d.segments, d.report_status, d.report_error, d.report_at,
                    d.created_at, d.sent_at, d.next_attempt_at,
                    CAST(CASE WHEN s.citizen_services IS NULL THEN 0 ELSE 1 END AS BIGINT) AS citizen
             FROM deliveries d JOIN incident_updates u ON u.id = d.update_id
             LEFT JOIN addresses a ON a.id = d.address_id
             LEFT JOIN subscribers s ON s.id = a.subscriber_id
             WHERE d.incident_id = $1 AND d.draft_id IS NULL ORDER BY d.id",
        )
        .bind(incident_id)
        .fetch_all(&self.reader)
        .await?;
        rows.iter()
            .map(|row| {
                let state: String = row.try_get("state")?;
                let pending = state == "pending";
                Ok(DeliveryRow {
                    id: row.try_get("id")?,
                    update_seq: row.try_get("seq")?,
                    channel: parse(row.try_get::<&str, _>("channel")?, "channel")?,
                    recipient: row.try_get("recipient")?,
                    citizen: row.try_get::<i64, _>("citizen")? != 0,
                    subscriber: row.try_get("subscriber_name")?,
                    state,
                    attempts: row.try_get("attempts")?,
                    last_error: row.try_get("last_error")?,
                    provider_id: row.try_get("provider_id")?,
                    provider: row.try_get("provider")?,
                    segments: row.try_get("segments")?,
                    report_status: row.try_get("report_status")?,
                    report_error: row.try_get("report_error")?,
                    report_at: opt_ts(row.try_get("report_at")?)?,
                    created_at: ts(row.try_get("created_at")?)?,
                    sent_at: opt_ts(row.try_get("sent_at")?)?,
                    next_attempt_at: if pending {
                        Some(ts(row.try_get("next_attempt_at")?)?)
                    } else {
                        None
                    },
                })
            })
            .collect()
    }

    async fn counts(&self) -> Result<Counts> {
        let open_incidents: i64 =
            sqlx::query_scalar("SELECT COUNT(*) FROM incidents WHERE resolved_at IS NULL")
                .fetch_one(&self.reader)
                .await?;
        let signals = sqlx::query(
            "SELECT COUNT(*) AS n, MIN(received_at) AS oldest FROM signals \
             WHERE processed_at IS NULL",
        )
        .fetch_one(&self.reader)
        .await?;
        // One pass over the table gives the counts and, per channel, the oldest delivery still
        // to send: the outbox's backlog age costs no second scan.
        let rows = sqlx::query(
            "SELECT channel, state, COUNT(*) AS n, \
             MIN(CASE WHEN state IN ('pending', 'sending') THEN created_at END) AS oldest \
             FROM deliveries GROUP BY channel, state",
        )
        .fetch_all(&self.reader)
        .await?;
        let mut deliveries = BTreeMap::new();
        let mut oldest_unsent: BTreeMap<String, Timestamp> = BTreeMap::new();
        for row in rows {
            let channel: String = row.try_get("channel")?;
            if let Some(oldest) = opt_ts(row.try_get("oldest")?)? {
                let entry = oldest_unsent.entry(channel.clone()).or_insert(oldest);
                *entry = (*entry).min(oldest);
            }
            deliveries.insert((channel, row.try_get("state")?), row.try_get("n")?);
        }
        Ok(Counts {
            open_incidents,
            deliveries,
            oldest_unsent,
            unprocessed_signals: signals.try_get("n")?,
            oldest_unprocessed_signal: opt_ts(signals.try_get("oldest")?)?,
        })
    }
}
