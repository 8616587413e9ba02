//! [`AffectedStore`] over the SQL store.

use async_trait::async_trait;
use jiff::Timestamp;
use sqlx::Row;

use super::dialect::values;
use super::rows::{ms, parse, ts};
use super::sql::SqlStore;
use super::{
    AffectedCounts, AffectedRow, AffectedStore, AffectedWork, Merged, NewAffected, Result,
    StoreError,
};
use crate::domain::subscriber::ChannelKind;

/// The statements published to the public, as `(incident_id, update_id)`: the approved public
/// drafts, and with `public_auto` every update routed (nothing is held then).
fn published(public_auto: bool) -> &'static str {
    if public_auto {
        "SELECT incident_id, id AS update_id FROM incident_updates
         WHERE routed_at IS NOT NULL AND silent = 0"
    } else {
        "SELECT incident_id, update_id FROM drafts WHERE audience = 'public' AND state = 'approved'"
    }
}

/// Staged rows per statement: 11 columns each, well within both engines' parameter limits.
const INSERT_CHUNK: usize = 80;

#[async_trait]
impl AffectedStore for SqlStore {
    async fn stage_affected(
        &self,
        upload: &str,
        rows: &[(i64, NewAffected)],
        now: Timestamp,
    ) -> Result<()> {
        let mut tx = self.write().await?;
        for chunk in rows.chunks(INSERT_CHUNK) {
            let sql = format!(
                "INSERT INTO affected_staging (upload, seq, digest, fiscal_code, mobile, email,
                                               language, detail, channel, recipient, created_at)
                 VALUES {}",
                values(self.dialect, chunk.len(), 11)
            );
            let mut query = sqlx::query(sqlx::AssertSqlSafe(sql));
            for (seq, r) in chunk {
                query = query
                    .bind(upload.to_owned())
                    .bind(*seq)
                    .bind(r.digest.clone())
                    .bind(r.fiscal_code.clone())
                    .bind(r.mobile.clone())
                    .bind(r.email.clone())
                    .bind(r.language.clone())
                    .bind(r.detail.clone())
                    .bind(r.channel.as_str())
                    .bind(r.recipient.clone())
                    .bind(ms(now));
            }
            query.execute(&mut *tx).await?;
        }
        tx.commit().await?;
        Ok(())
    }

    async fn merge_affected(
        &self,
        upload: &str,
        incident_id: i64,
        public_auto: bool,
        now: Timestamp,
    ) -> Result<Option<Merged>> {
        let mut tx = self.write().await?;
        // Merges into one list take turns (SQLite's writer is one already): two uploads at
        // once would otherwise both find a new person absent and the second fail on
        // `affected_once`. The incident's row is the turn; `NO KEY` leaves deliveries that
        // name it alone.
        let lock = self.dialect.pick("", "FOR NO KEY UPDATE");
        let resolved: Option<Option<i64>> = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
            "SELECT resolved_at FROM incidents WHERE id = $1 {lock}"
        )))
        .bind(incident_id)
        .fetch_optional(&mut *tx)
        .await?;
        let refusal = match resolved {
            None => Some(None),
            Some(Some(_)) => Some(Some(StoreError::Conflict(format!(
                "incident {incident_id} is resolved: its affected list can no longer grow"
            )))),
            Some(None) => None,
        };
        if let Some(refusal) = refusal {
            sqlx::query("DELETE FROM affected_staging WHERE upload = $1")
                .bind(upload)
                .execute(&mut *tx)
                .await?;
            tx.commit().await?;
            return match refusal {
                None => Ok(None),
                Some(e) => Err(e),
            };
        }
        let since: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
            "SELECT COALESCE(MAX(p.update_id), 0) FROM ({}) p WHERE p.incident_id = $1",
            published(public_auto)
        )))
        .bind(incident_id)
        .fetch_one(&mut *tx)
        .await?;
        // One person listed twice in the upload: the last row read is kept.
        let mut duplicates = sqlx::query(
            "DELETE FROM affected_staging WHERE upload = $1 AND seq < (
                SELECT MAX(t.seq) FROM affected_staging t
                WHERE t.upload = $1 AND t.digest = affected_staging.digest)",
        )
        .bind(upload)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        let unchanged: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM affected_staging s
             JOIN affected a ON a.incident_id = $2 AND a.digest = s.digest
             WHERE s.upload = $1 AND a.detail = s.detail AND a.language = s.language",
        )
        .bind(upload)
        .bind(incident_id)
        .fetch_one(&mut *tx)
        .await?;
        duplicates += u64::try_from(unchanged).unwrap_or(0);
        let changed = "SELECT 1 FROM affected_staging s WHERE s.upload = $1
                       AND s.digest = affected.digest
                       AND (s.detail != affected.detail OR s.language != affected.language)";
        let updated = sqlx::query(sqlx::AssertSqlSafe(format!(
            "UPDATE affected SET
                detail = (SELECT s.detail FROM affected_staging s
                          WHERE s.upload = $1 AND s.digest = affected.digest),
                language = (SELECT s.language FROM affected_staging s
                            WHERE s.upload = $1 AND s.digest = affected.digest),
                updated_at = $3
             WHERE incident_id = $2 AND EXISTS ({changed})"
        )))
        .bind(upload)
        .bind(incident_id)
        .bind(ms(now))
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if updated > 0 {
            // What is still to send carries the new detail.
            sqlx::query(
                "UPDATE deliveries SET detail = (SELECT a.detail FROM affected a
                                                 WHERE a.id = deliveries.affected_id)
                 WHERE state = 'pending' AND affected_id IN (
                    SELECT a.id FROM affected a JOIN affected_staging s
                      ON s.upload = $1 AND s.digest = a.digest
                    WHERE a.incident_id = $2 AND a.updated_at = $3)",
            )
            .bind(upload)
            .bind(incident_id)
            .bind(ms(now))
            .execute(&mut *tx)
            .await?;
        }
        let new = sqlx::query(
            "INSERT INTO affected (incident_id, digest, fiscal_code, mobile, email, language,
                                   detail, channel, recipient, since_update, created_at,
                                   updated_at)
             SELECT $2, s.digest, s.fiscal_code, s.mobile, s.email, s.language, s.detail,
                    s.channel, s.recipient, $3, $4, $4
             FROM affected_staging s
             WHERE s.upload = $1 AND NOT EXISTS (
                SELECT 1 FROM affected a WHERE a.incident_id = $2 AND a.digest = s.digest)
             ORDER BY s.seq",
        )
        .bind(upload)
        .bind(incident_id)
        .bind(since)
        .bind(ms(now))
        .execute(&mut *tx)
        .await?
        .rows_affected();
        sqlx::query("DELETE FROM affected_staging WHERE upload = $1")
            .bind(upload)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(Some(Merged {
            new,
            updated,
            duplicates,
        }))
    }

    async fn drop_staged(&self, upload: &str) -> Result<()> {
        sqlx::query("DELETE FROM affected_staging WHERE upload = $1")
            .bind(upload)
            .execute(&self.writer)
            .await?;
        Ok(())
    }

    async fn affected_counts(&self, incident_id: i64) -> Result<AffectedCounts> {
        let channels: Vec<(String, i64)> = sqlx::query_as(
            "SELECT channel, COUNT(*) FROM affected WHERE incident_id = $1
             GROUP BY channel ORDER BY channel",
        )
        .bind(incident_id)
        .fetch_all(&self.reader)
        .await?;
        let deliveries: Vec<(String, i64)> = sqlx::query_as(
            "SELECT d.state, COUNT(*) FROM deliveries d JOIN affected a ON a.id = d.affected_id
             WHERE a.incident_id = $1 GROUP BY d.state ORDER BY d.state",
        )
        .bind(incident_id)
        .fetch_all(&self.reader)
        .await?;
        Ok(AffectedCounts {
            rows: channels.iter().map(|(_, n)| n).sum(),
            channels: channels
                .into_iter()
                .map(|(c, n)| Ok((parse(&c, "channel")?, n)))
                .collect::<Result<_>>()?,
            deliveries,
        })
    }

    async fn affected_rows(
        &self,
        incident_id: i64,
        after: i64,
        limit: u32,
    ) -> Result<Vec<AffectedRow>> {
        sqlx::query(
            "SELECT a.id, a.fiscal_code, a.mobile, a.email, a.language, a.detail, a.channel,
                    a.recipient, a.created_at,
                    (SELECT d.state FROM deliveries d WHERE d.affected_id = a.id
                     ORDER BY d.id DESC LIMIT 1) AS state,
                    (SELECT COUNT(*) FROM deliveries d WHERE d.affected_id = a.id
                     AND d.sent_at IS NOT NULL) AS sent
             FROM affected a WHERE a.incident_id = $1 AND a.id > $2 ORDER BY a.id LIMIT $3",
        )
        .bind(incident_id)
        .bind(after)
        .bind(i64::from(limit.max(1)))
        .fetch_all(&self.reader)
        .await?
        .iter()
        .map(|row| {
            Ok(AffectedRow {
                id: row.try_get("id")?,
                fiscal_code: row.try_get("fiscal_code")?,
                mobile: row.try_get("mobile")?,
                email: row.try_get("email")?,
                language: row.try_get("language")?,
                detail: row.try_get("detail")?,
                channel: parse(row.try_get::<&str, _>("channel")?, "channel")?,
                recipient: row.try_get("recipient")?,
                created_at: ts(row.try_get("created_at")?)?,
                state: row.try_get("state")?,
                sent: row.try_get("sent")?,
            })
        })
        .collect()
    }

    async fn delete_affected(&self, incident_id: i64) -> Result<u64> {
        let mut total = 0;
        loop {
            let mut tx = self.write().await?;
            sqlx::query(
                "DELETE FROM deliveries WHERE affected_id IN (
                    SELECT id FROM affected WHERE incident_id = $1 ORDER BY id LIMIT 2000)",
            )
            .bind(incident_id)
            .execute(&mut *tx)
            .await?;
            let done = sqlx::query(
                "DELETE FROM affected WHERE id IN (
                    SELECT id FROM affected WHERE incident_id = $1 ORDER BY id LIMIT 2000)",
            )
            .bind(incident_id)
            .execute(&mut *tx)
            .await?
            .rows_affected();
            tx.commit().await?;
            total += done;
            if done == 0 {
                return Ok(total);
            }
        }
    }

    async fn prune_affected(
        &self,
        resolved_before: Timestamp,
        staged_before: Timestamp,
    ) -> Result<u64> {
        sqlx::query("DELETE FROM affected_staging WHERE created_at < $1")
            .bind(ms(staged_before))
            .execute(&self.writer)
            .await?;
        let incidents: Vec<i64> = sqlx::query_scalar(
            "SELECT DISTINCT a.incident_id FROM affected a JOIN incidents i ON i.id = a.incident_id
             WHERE i.resolved_at IS NOT NULL AND i.resolved_at < $1",
        )
        .bind(ms(resolved_before))
        .fetch_all(&self.reader)
        .await?;
        let mut total = 0;
        for id in incidents {
            total += self.delete_affected(id).await?;
        }
        Ok(total)
    }

    async fn reroute_refused(&self, sms: bool, email: bool, now: Timestamp) -> Result<u64> {
        let (sms, email) = (i64::from(sms), i64::from(email));
        Ok(sqlx::query(
            "UPDATE affected SET
                channel = CASE WHEN mobile IS NOT NULL AND $1 = 1 THEN 'sms' ELSE 'email' END,
                recipient = CASE WHEN mobile IS NOT NULL AND $1 = 1 THEN mobile ELSE email END,
                updated_at = $3
             WHERE channel = 'appio'
               AND ((mobile IS NOT NULL AND $1 = 1) OR (email IS NOT NULL AND $2 = 1))
               AND EXISTS (SELECT 1 FROM deliveries d WHERE d.affected_id = affected.id
                           AND d.channel = 'appio' AND d.state = 'failed')",
        )
        .bind(sms)
        .bind(email)
        .bind(ms(now))
        .execute(&self.writer)
        .await?
        .rows_affected())
    }

    async fn affected_fingerprint(&self, public_auto: bool) -> Result<String> {
        let (rows, changed, top): (i64, i64, i64) = sqlx::query_as(
            "SELECT COUNT(*), COALESCE(MAX(updated_at), 0), COALESCE(MAX(id), 0) FROM affected",
        )
        .fetch_one(&self.reader)
        .await?;
        if rows == 0 {
            return Ok("empty".into());
        }
        let (statements, last): (i64, i64) = sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "SELECT COUNT(*), COALESCE(MAX(update_id), 0) FROM ({}) p",
            published(public_auto)
        )))
        .fetch_one(&self.reader)
        .await?;
        Ok(format!("{rows}:{changed}:{top}:{statements}:{last}"))
    }

    async fn affected_work(
        &self,
        public_auto: bool,
        channels: &[ChannelKind],
    ) -> Result<Vec<AffectedWork>> {
        if channels.is_empty() {
            return Ok(Vec::new());
        }
        // The channels' names are the registry's own words, never input.
        let enabled = channels
            .iter()
            .map(|c| format!("'{}'", c.as_str()))
            .collect::<Vec<_>>()
            .join(", ");
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT a.incident_id, p.update_id, u.kind, u.origin_at, a.channel, a.language
             FROM affected a
             JOIN ({}) p ON p.incident_id = a.incident_id AND p.update_id >= a.since_update
             JOIN incident_updates u ON u.id = p.update_id
             WHERE a.channel IN ({enabled}) AND NOT EXISTS (SELECT 1 FROM deliveries d
                               WHERE d.affected_id = a.id AND d.update_id = p.update_id
                                 AND (d.channel = a.channel OR d.state != 'failed'))
             GROUP BY a.incident_id, p.update_id, u.kind, u.origin_at, a.channel, a.language
             ORDER BY p.update_id, a.channel, a.language LIMIT 100",
            published(public_auto)
        )))
        .fetch_all(&self.reader)
        .await?
        .iter()
        .map(|row| {
            Ok(AffectedWork {
                incident_id: row.try_get("incident_id")?,
                update_id: row.try_get("update_id")?,
                update_kind: parse(row.try_get::<&str, _>("kind")?, "update kind")?,
                origin_at: ts(row.try_get("origin_at")?)?,
                channel: parse(row.try_get::<&str, _>("channel")?, "channel")?,
                language: row.try_get("language")?,
            })
        })
        .collect()
    }

    async fn affected_message(&self, work: &AffectedWork) -> Result<Option<i64>> {
        Ok(sqlx::query_scalar(
            "SELECT id FROM messages WHERE update_id = $1 AND channel = $2 AND language = $3
             AND audience = 'affected'",
        )
        .bind(work.update_id)
        .bind(work.channel.as_str())
        .bind(&work.language)
        .fetch_optional(&self.reader)
        .await?)
    }

    async fn write_affected_batch(
        &self,
        work: &AffectedWork,
        message_id: i64,
        limit: u32,
        refused: Option<&str>,
        now: Timestamp,
    ) -> Result<u64> {
        let mut tx = self.write().await?;
        let written = sqlx::query(
            "INSERT INTO deliveries (message_id, update_id, incident_id, address_id, subscriber_name,
                                     channel, recipient, state, next_attempt_at, origin_at,
                                     created_at, affected_id, detail, last_error)
             SELECT $1, $2, a.incident_id, NULL, '', a.channel, a.recipient,
                    CASE WHEN $9 IS NULL THEN 'pending' ELSE 'cancelled' END, $3, $4, $3,
                    a.id, a.detail, $9
             FROM affected a
             WHERE a.incident_id = $5 AND a.channel = $6 AND a.language = $7
               AND a.since_update <= $2
               AND NOT EXISTS (SELECT 1 FROM deliveries d
                               WHERE d.affected_id = a.id AND d.update_id = $2
                                 AND (d.channel = a.channel OR d.state != 'failed'))
             ORDER BY a.id LIMIT $8
             ON CONFLICT DO NOTHING",
        )
        .bind(message_id)
        .bind(work.update_id)
        .bind(ms(now))
        .bind(ms(work.origin_at))
        .bind(work.incident_id)
        .bind(work.channel.as_str())
        .bind(&work.language)
        .bind(i64::from(limit.max(1)))
        .bind(refused)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        tx.commit().await?;
        Ok(written)
    }
}
