//! [`OutboxStore`] over the SQL store: claims under a lease, outcomes fenced on the claim they
//! belong to, the shared token buckets and delivery reports.

use async_trait::async_trait;
use jiff::Timestamp;
use sqlx::Row;

use super::db::{self, Db};
use super::dialect::Dialect;
use super::rows::{from_json, json, ms, opt_ts, parse, ts};
use super::sql::SqlStore;
use super::subscriber_sql::bump_subscribers_version;
use super::{
    ClaimedDelivery, DeliveryOutcome, DeliveryReport, MessageRow, OutboxStore, Outcome, Reached,
    Result, Tokens, Unsettled,
};
use crate::domain::subscriber::ChannelKind;

/// Deliveries `d` that are next for their recipient: no earlier delivery on the same channel to
/// the same recipient is still pending or in flight, so a recipient reads messages in the order
/// they were written ("resolved" never overtakes "opened"; a deferred message holds back the
/// ones after it). A correlated MIN that both engines answer from the partial index
/// `deliveries_live`, rather than NOT EXISTS, which PostgreSQL turns into an anti-join planned
/// from statistics: right after a large fan-out those still describe an empty table, and the plan
/// scanned every delivery of the incident for each candidate (10,000 of them).
const NEXT_FOR_RECIPIENT: &str = "d.id = (
    SELECT MIN(e.id) FROM deliveries e
    WHERE e.recipient = d.recipient AND e.channel = d.channel AND e.state IN ('pending', 'sending'))";

#[async_trait]
impl OutboxStore for SqlStore {
    async fn claim_deliveries(
        &self,
        channel: ChannelKind,
        limit: u32,
        now: Timestamp,
        lease_until: Timestamp,
        owner: &str,
    ) -> Result<Vec<ClaimedDelivery>> {
        let mut tx = self.write().await?;
        let claimed = claim(
            &mut Db::tx(&mut tx),
            self.dialect,
            &Claim {
                channel,
                limit,
                now,
                lease_until,
                owner,
            },
        )
        .await?;
        tx.commit().await?;
        Ok(claimed)
    }

    async fn message(&self, id: i64) -> Result<Option<MessageRow>> {
        let row = sqlx::query(
            "SELECT m.id, m.update_id, m.channel, m.language, m.audience, m.subject, m.body,
                    m.html, m.buttons, u.kind
             FROM messages m JOIN incident_updates u ON u.id = m.update_id WHERE m.id = $1",
        )
        .bind(id)
        .fetch_optional(&self.reader)
        .await?;
        row.map(|row| {
            Ok(MessageRow {
                id: row.try_get("id")?,
                update_id: row.try_get("update_id")?,
                channel: parse(row.try_get::<&str, _>("channel")?, "channel")?,
                language: row.try_get("language")?,
                audience: row.try_get("audience")?,
                subject: row.try_get("subject")?,
                body: row.try_get("body")?,
                html: row.try_get("html")?,
                buttons: row
                    .try_get::<Option<&str>, _>("buttons")?
                    .map(|b| from_json(b, "buttons"))
                    .transpose()?,
                update_kind: parse(row.try_get::<&str, _>("kind")?, "update kind")?,
            })
        })
        .transpose()
    }

    async fn sent_provider_ids(
        &self,
        incident_id: i64,
        channel: ChannelKind,
        recipient: &str,
    ) -> Result<Vec<String>> {
        let ids = sqlx::query_scalar(
            "SELECT provider_id FROM deliveries
             WHERE incident_id = $1 AND channel = $2 AND recipient = $3
               AND state = 'sent' AND provider_id IS NOT NULL
             ORDER BY id",
        )
        .bind(incident_id)
        .bind(channel.as_str())
        .bind(recipient)
        .fetch_all(&self.reader)
        .await?;
        Ok(ids)
    }

    async fn record_outcomes(
        &self,
        owner: &str,
        outcomes: &[Outcome],
        now: Timestamp,
    ) -> Result<()> {
        if outcomes.is_empty() {
            return Ok(());
        }
        // Every statement is fenced on (owner, attempts): an outcome only lands on the claim it
        // belongs to, never on a later claim of the same row.
        const HELD: &str = "id = $1 AND locked_by = $2 AND attempts = $3 AND state = 'sending'";
        // In place on SQLite: a lone outcome is on the way of the recipient's next message.
        let mut tx = self.transaction().await?;
        let dialect = tx.dialect;
        let mut db = tx.db()?;
        let mut gone_addresses = false;
        let mut sent = Vec::new();
        for o in outcomes {
            let (id, attempts) = (o.delivery, i64::from(o.attempts));
            match &o.outcome {
                // Sent outcomes are the bulk of a fan-out: written below in one statement.
                DeliveryOutcome::Sent(r) => sent.push(serde_json::json!([
                    id,
                    attempts,
                    r.provider_id,
                    r.provider,
                    r.segments
                ])),
                DeliveryOutcome::Retry { at, error } => {
                    db::query(format!(
                        "UPDATE deliveries SET state = 'pending', next_attempt_at = $4, last_error = $5,
                         lease_until = NULL, locked_by = NULL WHERE {HELD}"
                    ))
                    .bind(id)
                    .bind(owner)
                    .bind(attempts)
                    .bind(ms(*at))
                    .bind(error)
                    .execute(&mut db)
                    .await?;
                }
                DeliveryOutcome::Failed { error } => {
                    db::query(format!(
                        "UPDATE deliveries SET state = 'failed', last_error = $4,
                         lease_until = NULL, locked_by = NULL WHERE {HELD}"
                    ))
                    .bind(id)
                    .bind(owner)
                    .bind(attempts)
                    .bind(error)
                    .execute(&mut db)
                    .await?;
                }
                DeliveryOutcome::Released
                | DeliveryOutcome::Deferred { .. }
                | DeliveryOutcome::Paused { .. } => {
                    // Not counted as an attempt; a deferred one waits until the provider's time,
                    // a paused one keeps why.
                    let (at, error) = match &o.outcome {
                        DeliveryOutcome::Deferred { at } => (Some(ms(*at)), None),
                        DeliveryOutcome::Paused { error } => (None, Some(error.as_str())),
                        _ => (None, None),
                    };
                    db::query(format!(
                        "UPDATE deliveries SET state = 'pending', attempts = {}(attempts - 1, 0),
                         next_attempt_at = COALESCE($4, next_attempt_at),
                         last_error = COALESCE($5, last_error),
                         lease_until = NULL, locked_by = NULL WHERE {HELD}",
                        dialect.greatest()
                    ))
                    .bind(id)
                    .bind(owner)
                    .bind(attempts)
                    .bind(at)
                    .bind(error)
                    .execute(&mut db)
                    .await?;
                }
                DeliveryOutcome::Gone { error } => {
                    let address_id: Option<Option<i64>> = db::query_scalar(format!(
                        "UPDATE deliveries SET state = 'gone', last_error = $4,
                         lease_until = NULL, locked_by = NULL WHERE {HELD} RETURNING address_id"
                    ))
                    .bind(id)
                    .bind(owner)
                    .bind(attempts)
                    .bind(error)
                    .fetch_optional(&mut db)
                    .await?;
                    if let Some(Some(address_id)) = address_id {
                        db::query("UPDATE addresses SET gone_at = $2, gone_reason = $3 WHERE id = $1 AND gone_at IS NULL")
                            .bind(address_id)
                            .bind(ms(now))
                            .bind(error)
                            .execute(&mut db)
                            .await?;
                        db::query(
                            "UPDATE deliveries SET state = 'gone', last_error = $2 WHERE address_id = $1 AND state = 'pending'",
                        )
                        .bind(address_id)
                        .bind(format!("address gone: {error}"))
                        .execute(&mut db)
                        .await?;
                        gone_addresses = true;
                    }
                }
            }
        }
        if !sent.is_empty() {
            // `$1` is a JSON array of [id, attempts, provider id, provider, segments].
            let outcomes = dialect.pick(
                "SELECT value ->> 0 AS id, value ->> 1 AS attempts, value ->> 2 AS provider_id,
                        value ->> 3 AS provider, value ->> 4 AS segments FROM json_each($1)",
                "SELECT (value ->> 0)::bigint AS id, (value ->> 1)::bigint AS attempts, value ->> 2 AS provider_id,
                        value ->> 3 AS provider, (value ->> 4)::integer AS segments
                 FROM jsonb_array_elements($1::jsonb) AS t(value)",
            );
            db::query(format!(
                "UPDATE deliveries SET state = 'sent', sent_at = $3, provider_id = j.provider_id,
                 provider = j.provider, segments = j.segments, last_error = NULL,
                 lease_until = NULL, locked_by = NULL
                 FROM ({outcomes}) AS j
                 WHERE deliveries.id = j.id AND deliveries.attempts = j.attempts
                   AND deliveries.locked_by = $2 AND deliveries.state = 'sending'"
            ))
            .bind(json(&sent)?)
            .bind(owner)
            .bind(ms(now))
            .execute(&mut db)
            .await?;
        }
        if gone_addresses {
            bump_subscribers_version(&mut db).await?;
        }
        tx.finish().await
    }

    async fn release_leases(&self, owner: &str, channel: ChannelKind) -> Result<u64> {
        let done = sqlx::query(sqlx::AssertSqlSafe(format!(
            "UPDATE deliveries SET state = 'pending', attempts = {}(attempts - 1, 0), lease_until = NULL, locked_by = NULL
             WHERE state = 'sending' AND locked_by = $1 AND channel = $2",
            self.dialect.greatest()
        )))
        .bind(owner)
        .bind(channel.as_str())
        .execute(&self.writer)
        .await?;
        Ok(done.rows_affected())
    }

    async fn renew_leases(
        &self,
        owner: &str,
        ids: &[i64],
        lease_until: Timestamp,
    ) -> Result<Vec<i64>> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let renewed = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
            "UPDATE deliveries SET lease_until = $3
             WHERE id IN ({}) AND locked_by = $2 AND state = 'sending'
             RETURNING id",
            self.dialect.ids()
        )))
        .bind(json(&ids)?)
        .bind(owner)
        .bind(ms(lease_until))
        .fetch_all(&self.writer)
        .await?;
        Ok(renewed)
    }

    async fn reclaim_expired_leases(&self, now: Timestamp, live_owner: &str) -> Result<u64> {
        let done = sqlx::query(sqlx::AssertSqlSafe(format!(
            "UPDATE deliveries SET state = 'pending', lease_until = NULL, locked_by = NULL,
             last_error = COALESCE(last_error, 'lease expired: the worker stopped before recording an outcome')
             WHERE state = 'sending' AND lease_until < $1 AND locked_by {} $2",
            self.dialect.is_not()
        )))
        .bind(ms(now))
        .bind(live_owner)
        .execute(&self.writer)
        .await?;
        Ok(done.rows_affected())
    }

    async fn next_attempt_at(&self, channel: ChannelKind) -> Result<Option<Timestamp>> {
        // Deliveries waiting behind an earlier one to the same recipient do not count: they
        // become due when that one is done, and the dispatcher is woken then.
        let sql = format!(
            "SELECT MIN(d.next_attempt_at) FROM deliveries d
             WHERE d.state = 'pending' AND d.channel = $1
               AND {NEXT_FOR_RECIPIENT}"
        );
        let v: Option<i64> = sqlx::query_scalar(sqlx::AssertSqlSafe(sql))
            .bind(channel.as_str())
            .fetch_one(&self.reader)
            .await?;
        opt_ts(v)
    }

    async fn take_tokens(
        &self,
        bucket: &str,
        want: u32,
        per_second: u32,
        burst: u32,
        now: Timestamp,
    ) -> Result<Tokens> {
        let mut tx = self.write().await?;
        let capacity = i64::from(burst.max(1)) * 1000;
        let now_ms = ms(now);
        // A new bucket starts full. Creating the row first gives PostgreSQL a row to lock, so
        // that concurrent takers queue on it rather than each seeing a full new bucket.
        sqlx::query(
            "INSERT INTO rate_buckets (name, millitokens, updated_at) VALUES ($1, $2, $3) ON CONFLICT (name) DO NOTHING",
        )
        .bind(bucket)
        .bind(capacity)
        .bind(now_ms)
        .execute(&mut *tx)
        .await?;
        let lock = self.dialect.pick("", "FOR UPDATE");
        let (millitokens, at): (i64, i64) = sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "SELECT millitokens, updated_at FROM rate_buckets WHERE name = $1 {lock}"
        )))
        .bind(bucket)
        .fetch_one(&mut *tx)
        .await?;
        // Refill is `per_second` tokens a second, i.e. that many thousandths of a token a
        // millisecond, up to the burst. Takers come back on whole milliseconds, a fraction of
        // one late: up to a millisecond's refill beyond the burst is kept (it never makes a
        // whole extra token), or a burst of one would lose that fraction every time and pace
        // 29 a second as 28.6.
        let elapsed = (now_ms - at).max(0);
        let available = millitokens
            .saturating_add(elapsed.saturating_mul(i64::from(per_second)))
            .min(capacity + i64::from(per_second).min(999));
        let granted = (available / 1000).min(i64::from(want));
        let left = available - granted * 1000;
        sqlx::query("UPDATE rate_buckets SET millitokens = $2, updated_at = $3 WHERE name = $1")
            .bind(bucket)
            .bind(left)
            .bind(now_ms.max(at))
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        let per_ms = i64::from(per_second.max(1));
        let next_ms = if left >= 1000 {
            0
        } else {
            (1000 - left + per_ms - 1) / per_ms
        };
        Ok(Tokens {
            granted: u32::try_from(granted).unwrap_or(0),
            next_in: std::time::Duration::from_millis(u64::try_from(next_ms).unwrap_or(0)),
        })
    }

    async fn record_report(&self, report: &DeliveryReport) -> Result<bool> {
        let mut tx = self.write().await?;
        let found: Option<i64> = sqlx::query_scalar(
            "SELECT id FROM deliveries WHERE provider = $1 AND provider_id = $2",
        )
        .bind(&report.provider)
        .bind(&report.provider_id)
        .fetch_optional(&mut *tx)
        .await?;
        let Some(id) = found else {
            return Ok(false);
        };
        // A message read was delivered first: `read` is the one final word that follows another.
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "UPDATE deliveries SET report_status = $2, report_error = $3, report_at = $4
             WHERE id = $1 AND ({NOT_FINAL} OR (report_status = 'delivered' AND $2 = 'read'))"
        )))
        .bind(id)
        .bind(&report.status)
        .bind(&report.error)
        .bind(ms(report.at))
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(true)
    }

    async fn recipients_reached(
        &self,
        channel: ChannelKind,
        recipient: &str,
        delivery_id: i64,
        since: Timestamp,
        limit: u64,
    ) -> Result<Reached> {
        // A delivery being sent counts as of now when it was claimed before this one (a lower
        // id): of two sends at once, the one claimed later sees the earlier, never the other
        // way round (see `Pace::daily_room` for what that guarantees).
        // Answered by the database, from the partial indexes `deliveries_sent` (channel,
        // sent_at, recipient: the people of the window) and `deliveries_reached` (channel,
        // recipient, sent_at: this person), plus the few deliveries being sent.
        // This person first: one index lookup, and a person already reached needs no room.
        let includes: i64 = sqlx::query_scalar(
            "SELECT CAST(CASE WHEN EXISTS (
                  SELECT 1 FROM deliveries
                   WHERE channel = $1 AND recipient = $4 AND state = 'sent' AND sent_at >= $2)
                 OR EXISTS (
                  SELECT 1 FROM deliveries
                   WHERE channel = $1 AND recipient = $4 AND state = 'sending' AND id < $3)
               THEN 1 ELSE 0 END AS BIGINT)",
        )
        .bind(channel.as_str())
        .bind(ms(since))
        .bind(delivery_id)
        .bind(recipient)
        .fetch_one(&self.reader)
        .await?;
        if includes != 0 {
            return Ok(Reached {
                people: 0,
                includes_recipient: true,
                earliest: None,
            });
        }
        let people: i64 = sqlx::query_scalar(
            "SELECT COUNT(DISTINCT r.recipient) FROM (
               SELECT recipient FROM deliveries
                WHERE channel = $1 AND state = 'sent' AND sent_at >= $2
               UNION ALL
               SELECT recipient FROM deliveries
                WHERE channel = $1 AND state = 'sending' AND id < $3) AS r",
        )
        .bind(channel.as_str())
        .bind(ms(since))
        .bind(delivery_id)
        .fetch_one(&self.reader)
        .await?;
        let includes_recipient = false;
        let people = u64::try_from(people).unwrap_or(0);
        if includes_recipient || people < limit {
            return Ok(Reached {
                people,
                includes_recipient,
                earliest: None,
            });
        }
        // Full: when the first person leaves the window (the earliest of each person's latest
        // send), read only then.
        let earliest: Option<i64> = sqlx::query_scalar(
            "SELECT MIN(g.last) FROM (
               SELECT MAX(r.at) AS last FROM (
                 SELECT recipient, sent_at AS at FROM deliveries
                  WHERE channel = $1 AND state = 'sent' AND sent_at >= $2
                 UNION ALL
                 SELECT recipient, CAST($4 AS BIGINT) AS at FROM deliveries
                  WHERE channel = $1 AND state = 'sending' AND id < $3) AS r
               GROUP BY r.recipient) AS g",
        )
        .bind(channel.as_str())
        .bind(ms(since))
        .bind(delivery_id)
        .bind(ms(Timestamp::now()))
        .fetch_one(&self.reader)
        .await?;
        Ok(Reached {
            people,
            includes_recipient,
            earliest: earliest.map(ts).transpose()?,
        })
    }

    async fn record_call_report(&self, delivery_id: i64, report: &DeliveryReport) -> Result<bool> {
        let mut tx = self.write().await?;
        // The call's own delivery: already marked sent by this provider with this call's id, or
        // still being placed (its outcome not written yet, or the process stopped before it).
        let found: Option<i64> = sqlx::query_scalar(
            "SELECT id FROM deliveries WHERE id = $1
               AND ((provider = $2 AND provider_id = $3)
                 OR (state = 'sending' AND provider_id IS NULL))",
        )
        .bind(delivery_id)
        .bind(&report.provider)
        .bind(&report.provider_id)
        .fetch_optional(&mut *tx)
        .await?;
        if found.is_none() {
            return Ok(false);
        }
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "UPDATE deliveries SET report_status = $2, report_error = $3, report_at = $4
             WHERE id = $1 AND {NOT_FINAL}"
        )))
        .bind(delivery_id)
        .bind(&report.status)
        .bind(&report.error)
        .bind(ms(report.at))
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(true)
    }

    async fn unsettled(
        &self,
        provider: &str,
        since: Timestamp,
        asked_before: Timestamp,
        limit: u32,
    ) -> Result<Vec<Unsettled>> {
        // `deliveries_sent_by_provider (provider, sent_at) WHERE state = 'sent'` keeps this to
        // the provider's sends of the window.
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT id, recipient, provider_id, sent_at FROM deliveries
             WHERE provider = $1 AND state = 'sent' AND sent_at >= $2
               AND provider_id IS NOT NULL AND COALESCE(report_at, sent_at) <= $3
               AND {NOT_FINAL}
             ORDER BY COALESCE(report_at, sent_at), id LIMIT $4"
        )))
        .bind(provider)
        .bind(ms(since))
        .bind(ms(asked_before))
        .bind(i64::from(limit))
        .fetch_all(&self.reader)
        .await?;
        rows.iter()
            .map(|row| {
                Ok(Unsettled {
                    id: row.try_get("id")?,
                    recipient: row.try_get("recipient")?,
                    provider_id: row.try_get("provider_id")?,
                    sent_at: ts(row.try_get("sent_at")?)?,
                })
            })
            .collect()
    }

    async fn report_asked(&self, provider: &str, provider_id: &str, at: Timestamp) -> Result<bool> {
        let mut tx = self.write().await?;
        let done = sqlx::query(sqlx::AssertSqlSafe(format!(
            "UPDATE deliveries SET report_at = $3
             WHERE provider = $1 AND provider_id = $2 AND state = 'sent' AND {NOT_FINAL}"
        )))
        .bind(provider)
        .bind(provider_id)
        .bind(ms(at))
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(done.rows_affected() > 0)
    }
}

/// A delivery whose report is not a provider's final word (delivered, undelivered, failed, …;
/// for a call completed, busy, no-answer, machine, …; App IO's processed), which a late
/// intermediate one (sent, queued, ringing; App IO's accepted, throttled) would otherwise
/// overwrite.
const NOT_FINAL: &str = "(report_status IS NULL
    OR report_status NOT IN ('delivered', 'undelivered', 'failed', 'expired', 'rejected', 'read',
      'processed',
      'completed', 'busy', 'no-answer', 'canceled', 'cancelled', 'unanswered', 'timeout', 'machine'))";

/// What one claim asks for: up to `limit` due deliveries of `channel`, leased to `owner` until
/// `lease_until`.
pub(super) struct Claim<'a> {
    pub channel: ChannelKind,
    pub limit: u32,
    pub now: Timestamp,
    pub lease_until: Timestamp,
    pub owner: &'a str,
}

/// Claims inside the caller's transaction: the outbox's own claim, and the pipeline's, which
/// claims in the transaction that wrote the deliveries.
pub(super) async fn claim(
    db: &mut Db<'_>,
    dialect: Dialect,
    c: &Claim<'_>,
) -> Result<Vec<ClaimedDelivery>> {
    // A delivery waits while an earlier one to the same recipient is pending or in flight.
    // On PostgreSQL, replicas claim side by side: rows another transaction is claiming are
    // skipped, not waited for.
    let skip_locked = dialect.pick("", "FOR UPDATE SKIP LOCKED");
    let rows = db::query(format!(
        "UPDATE deliveries SET state = 'sending', attempts = attempts + 1, lease_until = $1, locked_by = $2
         WHERE id IN (
            SELECT d.id FROM deliveries d
            WHERE d.state = 'pending' AND d.channel = $3 AND d.next_attempt_at <= $4
              AND {NEXT_FOR_RECIPIENT}
            ORDER BY d.next_attempt_at, d.id
            LIMIT $5 {skip_locked})
         RETURNING id, message_id, incident_id, channel, recipient, address_id, subscriber_name, attempts, origin_at, draft_id, affected_id, detail"
    ))
    .bind(ms(c.lease_until))
    .bind(c.owner)
    .bind(c.channel.as_str())
    .bind(ms(c.now))
    .bind(c.limit as i64)
    .fetch_all(db)
    .await?;
    let mut out = rows
        .iter()
        .map(|row| {
            Ok(ClaimedDelivery {
                id: row.try_get("id")?,
                message_id: row.try_get("message_id")?,
                incident_id: row.try_get("incident_id")?,
                channel: parse(row.try_get::<&str, _>("channel")?, "channel")?,
                recipient: row.try_get("recipient")?,
                address_id: row.try_get("address_id")?,
                subscriber_name: row.try_get("subscriber_name")?,
                attempts: u32::try_from(row.try_get::<i64, _>("attempts")?).unwrap_or(u32::MAX),
                origin_at: ts(row.try_get("origin_at")?)?,
                draft_id: row.try_get("draft_id")?,
                affected_id: row.try_get("affected_id")?,
                detail: row.try_get("detail")?,
            })
        })
        .collect::<Result<Vec<_>>>()?;
    out.sort_by_key(|d| d.id);
    Ok(out)
}
