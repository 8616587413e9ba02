//! [`AckStore`] over the SQL store: an acknowledgement is one insert that the unique index on
//! (incident, subscriber) keeps to the first, so replicas taking two at once record one.

use async_trait::async_trait;
use jiff::Timestamp;
use sqlx::Row;
use sqlx::any::AnyRow;

use super::rows::{ms, opt_ts, parse, ts};
use super::sql::SqlStore;
use super::{AckRow, AckStore, Acknowledged, Result};
use super::{DeskMessage, LEDGER_PAGE, LedgerRow};
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
            Some(row) => {
                // The desk knows: its ladder stops here, whichever step it had reached, and a
                // call of the incident still waiting to be placed (paced, or retried) is not
                // placed. A call is only ever a way to be heard; texts and emails still carry news.
                super::escalation_sql::stop(
                    &mut super::db::Db::tx(&mut tx),
                    incident_id,
                    subscriber_id,
                    at,
                )
                .await?;
                sqlx::query(
                    "UPDATE deliveries SET state = 'cancelled',
                            last_error = 'the desk acknowledged the incident'
                     WHERE incident_id = $1 AND channel = 'voice' AND state = 'pending'
                       AND draft_id IS NULL
                       AND address_id IN (SELECT id FROM addresses WHERE subscriber_id = $2)",
                )
                .bind(incident_id)
                .bind(subscriber_id)
                .execute(&mut *tx)
                .await?;
                Acknowledged::Recorded(ack_from_row(&row)?)
            }
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
        // The partial index `deliveries_texted` holds the sent texts by number. A text that
        // told a resolution, or about an incident since resolved, asks for nothing: a reply
        // after it is for the open incident texted last (by when it left, not when written).
        Ok(sqlx::query_as(
            "SELECT d.incident_id, d.address_id FROM deliveries d
             JOIN messages m ON m.id = d.message_id
             JOIN incident_updates u ON u.id = d.update_id
             JOIN incidents i ON i.id = d.incident_id
             WHERE d.channel = 'sms' AND d.state = 'sent' AND d.recipient = $1
               AND d.draft_id IS NULL AND d.address_id IS NOT NULL AND m.audience != 'public'
               AND u.kind != 'resolved' AND i.status != 'resolved'
             ORDER BY d.sent_at DESC, d.id DESC LIMIT 1",
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

    async fn desk_messages(&self, incident_id: i64) -> Result<Vec<DeskMessage>> {
        // `deliveries_incident` (incident, id) finds the incident's rows; the joins are by
        // primary key. Citizens and the public audience are no desks; drafts' notices go to
        // the communications office, not to a desk.
        sqlx::query(
            "SELECT a.subscriber_id, s.name, d.id, u.seq, d.channel, d.recipient, d.state,
                    d.report_status, d.report_at, d.sent_at
             FROM deliveries d
             JOIN messages m ON m.id = d.message_id
             JOIN incident_updates u ON u.id = d.update_id
             JOIN addresses a ON a.id = d.address_id
             JOIN subscribers s ON s.id = a.subscriber_id
             WHERE d.incident_id = $1 AND d.draft_id IS NULL AND m.audience != 'public'
               AND s.citizen_services IS NULL AND d.state != 'cancelled'
             ORDER BY a.subscriber_id, d.id",
        )
        .bind(incident_id)
        .fetch_all(&self.reader)
        .await?
        .iter()
        .map(|row| {
            Ok(DeskMessage {
                subscriber_id: row.try_get("subscriber_id")?,
                subscriber_name: row.try_get("name")?,
                delivery_id: row.try_get("id")?,
                update_seq: row.try_get("seq")?,
                channel: parse(row.try_get::<&str, _>("channel")?, "channel")?,
                recipient: row.try_get("recipient")?,
                state: row.try_get("state")?,
                report_status: row.try_get("report_status")?,
                report_at: opt_ts(row.try_get("report_at")?)?,
                sent_at: opt_ts(row.try_get("sent_at")?)?,
            })
        })
        .collect()
    }

    async fn ledger(&self, incident_id: i64, after: i64, limit: u32) -> Result<Vec<LedgerRow>> {
        // Keyset pages over `deliveries_incident` (incident, id): each page costs its own rows.
        sqlx::query(
            "SELECT d.id, u.seq, m.audience, d.channel, d.recipient, d.subscriber_name, d.state,
                    d.attempts, d.last_error, d.provider, d.provider_id, d.created_at, d.sent_at,
                    d.report_status, d.report_error, d.report_at, k.acked_at,
                    CAST(CASE WHEN s.citizen_services IS NULL THEN 0 ELSE 1 END AS BIGINT)
                      AS citizen
             FROM deliveries d
             JOIN messages m ON m.id = d.message_id
             JOIN incident_updates u ON u.id = d.update_id
             LEFT JOIN addresses a ON a.id = d.address_id
             LEFT JOIN subscribers s ON s.id = a.subscriber_id
             LEFT JOIN acknowledgements k
               ON k.incident_id = d.incident_id AND k.subscriber_id = a.subscriber_id
             WHERE d.incident_id = $1 AND d.draft_id IS NULL AND d.affected_id IS NULL AND d.id > $2
             ORDER BY d.id LIMIT $3",
        )
        .bind(incident_id)
        .bind(after)
        .bind(i64::from(limit.clamp(1, LEDGER_PAGE)))
        .fetch_all(&self.reader)
        .await?
        .iter()
        .map(|row| {
            Ok(LedgerRow {
                delivery_id: row.try_get("id")?,
                update_seq: row.try_get("seq")?,
                audience: row.try_get("audience")?,
                channel: parse(row.try_get::<&str, _>("channel")?, "channel")?,
                recipient: row.try_get("recipient")?,
                citizen: row.try_get::<i64, _>("citizen")? != 0,
                subscriber_name: row.try_get("subscriber_name")?,
                state: row.try_get("state")?,
                attempts: row.try_get("attempts")?,
                last_error: row.try_get("last_error")?,
                provider: row.try_get("provider")?,
                provider_id: row.try_get("provider_id")?,
                created_at: ts(row.try_get("created_at")?)?,
                sent_at: opt_ts(row.try_get("sent_at")?)?,
                report_status: row.try_get("report_status")?,
                report_error: row.try_get("report_error")?,
                report_at: opt_ts(row.try_get("report_at")?)?,
                acked_at: opt_ts(row.try_get("acked_at")?)?,
            })
        })
        .collect()
    }
}
