//! [`AckStore`] over the SQL store: an acknowledgement is one insert that the unique index on
//! (incident, subscriber) keeps to the first, so replicas taking two at once record one.

use async_trait::async_trait;
use jiff::Timestamp;
use sqlx::Row;
use sqlx::any::AnyRow;

use super::rows::{ms, opt_ts, parse, ts};
use super::sql::SqlStore;
use super::{AckRow, AckStore, Acknowledged, Result};
use crate::domain::subscriber::ChannelKind;

const COLUMNS: &str = "id, incident_id, subscriber_id, subscriber_name, address_id, channel, \
                       recipient, delivery_id, first_sent_at, acked_at";

fn ack_from_row(row: &AnyRow) -> Result<AckRow> {
    Ok(AckRow {
        id: row.try_get("id")?,
        incident_id: row.try_get("incident_id")?,
        subscriber_id: row.try_get("subscriber_id")?,
        subscriber_name: row.try_get("subscriber_name")?,
        address_id: row.try_get("address_id")?,
        channel: parse(row.try_get::<&str, _>("channel")?, "channel")?,
        recipient: row.try_get("recipient")?,
        delivery_id: row.try_get("delivery_id")?,
        first_sent_at: opt_ts(row.try_get("first_sent_at")?)?,
        acked_at: ts(row.try_get("acked_at")?)?,
    })
}

#[async_trait]
impl AckStore for SqlStore {
    async fn acknowledge(
        &self,
        incident_id: i64,
        address_id: i64,
        at: Timestamp,
    ) -> Result<Acknowledged> {
        let mut tx = self.write().await?;
        // The address, its desk, and the latest desk's message of the incident it was sent.
        let found = sqlx::query(
            "SELECT a.subscriber_id, s.name, a.channel, a.address,
                    (SELECT MAX(d.id) FROM deliveries d JOIN messages m ON m.id = d.message_id
                      WHERE d.incident_id = $1 AND d.address_id = a.id AND d.draft_id IS NULL
                        AND d.state != 'cancelled' AND m.audience != 'public') AS delivery_id,
                    (SELECT MIN(d.sent_at) FROM deliveries d JOIN addresses o ON o.id = d.address_id
                      WHERE d.incident_id = $1 AND o.subscriber_id = a.subscriber_id
                        AND d.draft_id IS NULL) AS first_sent_at
             FROM addresses a JOIN subscribers s ON s.id = a.subscriber_id
             WHERE a.id = $2",
        )
        .bind(incident_id)
        .bind(address_id)
        .fetch_optional(&mut *tx)
        .await?;
        let Some(found) = found else {
            return Ok(Acknowledged::NotSent);
        };
        let Some(delivery_id) = found.try_get::<Option<i64>, _>("delivery_id")? else {
            return Ok(Acknowledged::NotSent);
        };
        let subscriber_id: i64 = found.try_get("subscriber_id")?;
        let inserted = sqlx::query(sqlx::AssertSqlSafe(format!(
            "INSERT INTO acknowledgements (incident_id, subscriber_id, subscriber_name, address_id,
                                           channel, recipient, delivery_id, first_sent_at, acked_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
             ON CONFLICT DO NOTHING RETURNING {COLUMNS}"
        )))
        .bind(incident_id)
        .bind(subscriber_id)
        .bind(found.try_get::<String, _>("name")?)
        .bind(address_id)
        .bind(found.try_get::<String, _>("channel")?)
        .bind(found.try_get::<String, _>("address")?)
        .bind(delivery_id)
        .bind(found.try_get::<Option<i64>, _>("first_sent_at")?)
        .bind(ms(at))
        .fetch_optional(&mut *tx)
        .await?;
        let outcome = match inserted {
            Some(row) => Acknowledged::Recorded(ack_from_row(&row)?),
            None => {
                let row = sqlx::query(sqlx::AssertSqlSafe(format!(
                    "SELECT {COLUMNS} FROM acknowledgements
                     WHERE incident_id = $1 AND subscriber_id = $2"
                )))
                .bind(incident_id)
                .bind(subscriber_id)
                .fetch_one(&mut *tx)
                .await?;
                Acknowledged::Already(ack_from_row(&row)?)
            }
        };
        tx.commit().await?;
        Ok(outcome)
    }

    async fn ack_address(&self, address_id: i64) -> Result<Option<(ChannelKind, String)>> {
        let row: Option<(String, String)> =
            sqlx::query_as("SELECT channel, address FROM addresses WHERE id = $1")
                .bind(address_id)
                .fetch_optional(&self.reader)
                .await?;
        row.map(|(channel, address)| Ok((parse(&channel, "channel")?, address)))
            .transpose()
    }

    async fn latest_texted(&self, number: &str) -> Result<Option<(i64, i64)>> {
        // The partial index `deliveries_texted` holds the sent texts by number.
        Ok(sqlx::query_as(
            "SELECT d.incident_id, d.address_id FROM deliveries d
             JOIN messages m ON m.id = d.message_id
             WHERE d.channel = 'sms' AND d.state = 'sent' AND d.recipient = $1
               AND d.draft_id IS NULL AND d.address_id IS NOT NULL AND m.audience != 'public'
             ORDER BY d.id DESC LIMIT 1",
        )
        .bind(number)
        .fetch_optional(&self.reader)
        .await?)
    }

    async fn acknowledgements(&self, incident_id: i64) -> Result<Vec<AckRow>> {
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {COLUMNS} FROM acknowledgements WHERE incident_id = $1 ORDER BY acked_at, id"
        )))
        .bind(incident_id)
        .fetch_all(&self.reader)
        .await?
        .iter()
        .map(ack_from_row)
        .collect()
    }
}
