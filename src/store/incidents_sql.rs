//! [`IncidentReads`] over the SQL store.

use std::collections::BTreeMap;

use async_trait::async_trait;
use jiff::Timestamp;
use sqlx::Row;

use super::rows::{
    DELIVERY_COLUMNS, INCIDENT_COLUMNS, alert_from_row, delivery_from_row, incident_from_row,
    opt_ts, update_from_row,
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
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {DELIVERY_COLUMNS} FROM deliveries d JOIN incident_updates u ON u.id = d.update_id
             LEFT JOIN addresses a ON a.id = d.address_id
             LEFT JOIN subscribers s ON s.id = a.subscriber_id
             WHERE d.incident_id = $1 AND d.draft_id IS NULL AND d.affected_id IS NULL ORDER BY d.id"
        )))
        .bind(incident_id)
        .fetch_all(&self.reader)
        .await?;
        rows.iter().map(delivery_from_row).collect()
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
