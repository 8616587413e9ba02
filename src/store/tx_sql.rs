//! [`Tx`] over the SQL store: the engine's and the router's write transaction, and adding
//! deliveries (which approving a draft does too).

use async_trait::async_trait;
use jiff::Timestamp;
use sqlx::any::AnyRow;
use sqlx::{Any, Row, Transaction};

use super::dialect::{Dialect, values};
use super::escalation_sql as ladder;
use super::rows::{
    INCIDENT_COLUMNS, alert_from_row, flag, from_json, incident_from_row, json, ms, opt_ms, opt_ts,
    parse, ts, update_from_row,
};
use super::subscriber_sql::{Which, load_which};
use super::{
    AlertRow, CitizenGroup, EscalationRow, EscalationState, IncidentRow, NewDelivery, NewDraftPart,
    NewEscalationStep, NewIncident, NewMessage, NewUpdate, Result, Signal, SignalMark, StoreError,
    StoredMessage, StoredSignal, SubscriberRow, Tx, UpdateRow,
};
use crate::domain::incident::AlertState;
use crate::domain::subscriber::ChannelKind;

const SIGNAL_COLUMNS: &str = "id, received_at, source, fingerprint, status, severity, service, component, labels, annotations, summary, starts_at, ends_at, url";

fn signal_from_row(row: &AnyRow) -> Result<StoredSignal> {
    Ok(StoredSignal {
        id: row.try_get("id")?,
        received_at: ts(row.try_get("received_at")?)?,
        signal: Signal {
            source: parse(row.try_get::<&str, _>("source")?, "source")?,
            fingerprint: row.try_get("fingerprint")?,
            status: parse(row.try_get::<&str, _>("status")?, "status")?,
            severity: parse(row.try_get::<&str, _>("severity")?, "severity")?,
            service: row.try_get("service")?,
            component: row.try_get("component")?,
            labels: from_json(row.try_get("labels")?, "labels")?,
            annotations: from_json(row.try_get("annotations")?, "annotations")?,
            summary: row.try_get("summary")?,
            starts_at: opt_ts(row.try_get("starts_at")?)?,
            ends_at: opt_ts(row.try_get("ends_at")?)?,
            url: row.try_get("url")?,
        },
    })
}

pub struct SqlTx {
    pub(super) tx: Transaction<'static, Any>,
    pub(super) dialect: Dialect,
}

#[async_trait]
impl Tx for SqlTx {
    async fn claim_deliveries(
        &mut self,
        channel: ChannelKind,
        limit: u32,
        now: Timestamp,
        lease_until: Timestamp,
        owner: &str,
    ) -> Result<Vec<super::ClaimedDelivery>> {
        let c = super::outbox_sql::Claim {
            channel,
            limit,
            now,
            lease_until,
            owner,
        };
        super::outbox_sql::claim(&mut self.tx, self.dialect, &c).await
    }

    async fn start_escalation(
        &mut self,
        incident_id: i64,
        subscriber_id: i64,
        steps: &[NewEscalationStep],
        now: Timestamp,
    ) -> Result<u64> {
        ladder::start(&mut self.tx, incident_id, subscriber_id, steps, now).await
    }

    async fn escalated_desks(&mut self, incident_id: i64) -> Result<Vec<i64>> {
        ladder::desks(&mut self.tx, incident_id).await
    }

    async fn end_escalations(&mut self, incident_id: i64, now: Timestamp) -> Result<u64> {
        ladder::end(&mut self.tx, incident_id, now).await
    }

    async fn due_escalations(&mut self, now: Timestamp, limit: u32) -> Result<Vec<EscalationRow>> {
        ladder::due(&mut self.tx, now, limit).await
    }

    async fn settle_escalation(
        &mut self,
        id: i64,
        state: EscalationState,
        now: Timestamp,
    ) -> Result<bool> {
        ladder::settle(&mut self.tx, id, state, now).await
    }

    async fn next_escalation_at(&mut self) -> Result<Option<Timestamp>> {
        ladder::next_due(&mut self.tx).await
    }

    async fn desk_acknowledged(&mut self, incident_id: i64, subscriber_id: i64) -> Result<bool> {
        ladder::acknowledged(&mut self.tx, incident_id, subscriber_id).await
    }

    async fn latest_routed_update(&mut self, incident_id: i64) -> Result<Option<UpdateRow>> {
        ladder::latest_routed(&mut self.tx, incident_id).await
    }

    async fn commit(self: Box<Self>) -> Result<()> {
        self.tx.commit().await?;
        Ok(())
    }

    async fn unprocessed_signals(&mut self, limit: u32) -> Result<Vec<StoredSignal>> {
        // Locked on PostgreSQL: should two replicas ever both believe they lead, the second
        // waits, then finds the rows processed, instead of applying them twice.
        let sql = format!(
            "SELECT {SIGNAL_COLUMNS} FROM signals WHERE processed_at IS NULL ORDER BY id LIMIT $1 {}",
            self.dialect.pick("", "FOR UPDATE")
        );
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(i64::from(limit))
            .fetch_all(&mut *self.tx)
            .await?;
        rows.iter().map(signal_from_row).collect()
    }

    async fn mark_signals(&mut self, marks: &[SignalMark<'_>], now: Timestamp) -> Result<()> {
        if marks.is_empty() {
            return Ok(());
        }
        // `$1` is a JSON array of [id, outcome, incident id or null].
        let marks_sql = self.dialect.pick(
            "SELECT value ->> 0 AS id, value ->> 1 AS outcome, value ->> 2 AS incident_id
             FROM json_each($1)",
            "SELECT (value ->> 0)::bigint AS id, value ->> 1 AS outcome,
                    (value ->> 2)::bigint AS incident_id
             FROM jsonb_array_elements($1::jsonb) AS t(value)",
        );
        let rows: Vec<(i64, &str, Option<i64>)> = marks
            .iter()
            .map(|m| (m.signal, m.outcome, m.incident))
            .collect();
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "UPDATE signals SET processed_at = $2, outcome = j.outcome, incident_id = j.incident_id
             FROM ({marks_sql}) AS j WHERE signals.id = j.id"
        )))
        .bind(json(&rows)?)
        .bind(ms(now))
        .execute(&mut *self.tx)
        .await?;
        Ok(())
    }

    async fn active_alerts(&mut self, fingerprints: &[String]) -> Result<Vec<AlertRow>> {
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT a.* FROM alerts a JOIN incidents i ON i.id = a.incident_id
             WHERE a.fingerprint IN ({}) AND i.resolved_at IS NULL
             ORDER BY a.id",
            self.dialect.texts()
        )))
        .bind(json(&fingerprints)?)
        .fetch_all(&mut *self.tx)
        .await?;
        rows.iter().map(alert_from_row).collect()
    }

    async fn touch_alerts(&mut self, ids: &[i64], at: Timestamp) -> Result<()> {
        if ids.is_empty() {
            return Ok(());
        }
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "UPDATE alerts SET last_seen_at = {}(last_seen_at, $2) WHERE id IN ({})",
            self.dialect.greatest(),
            self.dialect.ids()
        )))
        .bind(json(&ids)?)
        .bind(ms(at))
        .execute(&mut *self.tx)
        .await?;
        Ok(())
    }

    async fn open_incidents_by_keys(&mut self, keys: &[&str]) -> Result<Vec<(String, i64)>> {
        if keys.is_empty() {
            return Ok(Vec::new());
        }
        let sql = format!(
            "SELECT group_key, id FROM incidents
             WHERE group_key IN ({}) AND resolved_at IS NULL ORDER BY id {}",
            self.dialect.texts(),
            self.dialect.pick("", "FOR UPDATE")
        );
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(json(&keys)?)
            .fetch_all(&mut *self.tx)
            .await?;
        rows.iter()
            .map(|row| Ok((row.try_get("group_key")?, row.try_get("id")?)))
            .collect()
    }

    async fn incidents_to_change(&mut self, ids: &[i64]) -> Result<Vec<IncidentRow>> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        // About to change: on PostgreSQL, locked so that an operator's update and the engine
        // never interleave on one.
        let sql = format!(
            "SELECT {INCIDENT_COLUMNS} FROM incidents WHERE id IN ({}) ORDER BY id {}",
            self.dialect.ids(),
            self.dialect.pick("", "FOR UPDATE")
        );
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(json(&ids)?)
            .fetch_all(&mut *self.tx)
            .await?;
        rows.iter().map(incident_from_row).collect()
    }

    async fn incident(&mut self, id: i64) -> Result<Option<IncidentRow>> {
        // Inside a write transaction the incident is about to change: on PostgreSQL, lock it so
        // that an operator's update and the engine never interleave on it.
        let sql = format!(
            "SELECT {INCIDENT_COLUMNS} FROM incidents WHERE id = $1 {}",
            self.dialect.pick("", "FOR UPDATE")
        );
        let row = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(id)
            .fetch_optional(&mut *self.tx)
            .await?;
        row.as_ref().map(incident_from_row).transpose()
    }

    async fn insert_incident(&mut self, new: &NewIncident) -> Result<IncidentRow> {
        let sql = format!(
            "INSERT INTO incidents (group_key, title, status, severity, origin, labels, opened_at, eval_at, pending_since)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) RETURNING {INCIDENT_COLUMNS}"
        );
        let row = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(&new.group_key)
            .bind(&new.title)
            .bind(new.status.as_str())
            .bind(new.severity.as_str())
            .bind(new.origin.as_str())
            .bind(json(&new.labels)?)
            .bind(ms(new.opened_at))
            .bind(opt_ms(new.eval_at))
            .bind(opt_ms(new.pending_since))
            .fetch_one(&mut *self.tx)
            .await
            .map_err(
                |e| match e.as_database_error().map(|d| d.is_unique_violation()) {
                    Some(true) => StoreError::Conflict(format!(
                        "an incident with key `{}` is already open",
                        new.group_key
                    )),
                    _ => StoreError::Database(e),
                },
            )?;
        incident_from_row(&row)
    }

    async fn save_incident(&mut self, i: &IncidentRow) -> Result<()> {
        let announced = i.announced.as_ref().map(json).transpose()?;
        sqlx::query(
            "UPDATE incidents SET title = $2, status = $3, severity = $4, labels = $5, resolved_at = $6, announced = $7,
             last_announced_at = $8, eval_at = $9, pending_since = $10, last_seq = $11 WHERE id = $1",
        )
        .bind(i.id)
        .bind(&i.title)
        .bind(i.status.as_str())
        .bind(i.severity.as_str())
        .bind(json(&i.labels)?)
        .bind(opt_ms(i.resolved_at))
        .bind(announced)
        .bind(opt_ms(i.last_announced_at))
        .bind(opt_ms(i.eval_at))
        .bind(opt_ms(i.pending_since))
        .bind(i.last_seq)
        .execute(&mut *self.tx)
        .await?;
        Ok(())
    }

    async fn save_alerts(&mut self, alerts: &[&AlertRow]) -> Result<()> {
        debug_assert!(
            alerts
                .iter()
                .map(|a| (a.incident_id, a.fingerprint.as_str()))
                .collect::<std::collections::HashSet<_>>()
                .len()
                == alerts.len(),
            "an (incident, fingerprint) twice in one upsert"
        );
        for chunk in alerts.chunks(ALERT_ROWS) {
            let sql = format!(
                "INSERT INTO alerts (incident_id, fingerprint, source, firing, severity, peak_severity, service, component,
                                     labels, annotations, summary, url, starts_at, first_seen_at, last_seen_at, resolved_at,
                                     expires_after_ms)
                 VALUES {}
                 ON CONFLICT (incident_id, fingerprint) DO UPDATE SET
                    firing = excluded.firing, severity = excluded.severity, peak_severity = excluded.peak_severity,
                    service = excluded.service, component = excluded.component, labels = excluded.labels,
                    annotations = excluded.annotations, summary = excluded.summary, url = excluded.url,
                    starts_at = excluded.starts_at, last_seen_at = excluded.last_seen_at, resolved_at = excluded.resolved_at,
                    expires_after_ms = excluded.expires_after_ms",
                values(self.dialect, chunk.len(), 17)
            );
            let mut query = sqlx::query(sqlx::AssertSqlSafe(sql));
            for a in chunk {
                query = query
                    .bind(a.incident_id)
                    .bind(a.fingerprint.clone())
                    .bind(a.source.as_str())
                    .bind(i64::from(a.firing))
                    .bind(a.severity.as_str())
                    .bind(a.peak_severity.as_str())
                    .bind(a.service.clone())
                    .bind(a.component.clone())
                    .bind(json(&a.labels)?)
                    .bind(json(&a.annotations)?)
                    .bind(a.summary.clone())
                    .bind(a.url.clone())
                    .bind(opt_ms(a.starts_at))
                    .bind(ms(a.first_seen_at))
                    .bind(ms(a.last_seen_at))
                    .bind(opt_ms(a.resolved_at))
                    .bind(a.expires_after.map(|d| d.as_millis() as i64));
            }
            query.execute(&mut *self.tx).await?;
        }
        Ok(())
    }

    async fn alerts(&mut self, incident_id: i64) -> Result<Vec<AlertRow>> {
        let rows = sqlx::query("SELECT * FROM alerts WHERE incident_id = $1 ORDER BY id")
            .bind(incident_id)
            .fetch_all(&mut *self.tx)
            .await?;
        rows.iter().map(alert_from_row).collect()
    }

    async fn alert_states(&mut self, incident_id: i64) -> Result<Vec<AlertState>> {
        let rows = sqlx::query(
            "SELECT fingerprint, firing, severity, resolved_at FROM alerts
             WHERE incident_id = $1 ORDER BY id",
        )
        .bind(incident_id)
        .fetch_all(&mut *self.tx)
        .await?;
        rows.iter()
            .map(|row| {
                Ok(AlertState {
                    fingerprint: row.try_get("fingerprint")?,
                    firing: flag(row, "firing")?,
                    severity: parse(row.try_get::<&str, _>("severity")?, "severity")?,
                    resolved_at: opt_ts(row.try_get("resolved_at")?)?,
                })
            })
            .collect()
    }

    async fn due_incidents(&mut self, now: Timestamp, limit: u32) -> Result<Vec<i64>> {
        Ok(sqlx::query_scalar(
            "SELECT id FROM incidents WHERE eval_at <= $1 ORDER BY eval_at LIMIT $2",
        )
        .bind(ms(now))
        .bind(i64::from(limit))
        .fetch_all(&mut *self.tx)
        .await?)
    }

    async fn next_eval_at(&mut self, since: Timestamp) -> Result<Option<Timestamp>> {
        // Both times in one statement: the step runs it each time, on the writer.
        let (v, expiry): (Option<i64>, Option<i64>) = sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "SELECT (SELECT MIN(eval_at) FROM incidents WHERE eval_at IS NOT NULL),
                    (SELECT MIN({}(a.last_seen_at, $1) + a.expires_after_ms) FROM alerts a
                     JOIN incidents i ON i.id = a.incident_id
                     WHERE a.firing = 1 AND a.expires_after_ms IS NOT NULL
                       AND i.resolved_at IS NULL)",
            self.dialect.pick("MAX", "GREATEST")
        )))
        .bind(ms(since))
        .fetch_one(&mut *self.tx)
        .await?;
        opt_ts(match (v, expiry) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        })
    }

    async fn expired_alerts(
        &mut self,
        now: Timestamp,
        since: Timestamp,
        limit: u32,
    ) -> Result<Vec<AlertRow>> {
        // Locked on PostgreSQL, as the signals are: should two replicas ever both believe they
        // lead, the second waits, then finds the alert resolved instead of expiring it again.
        let end = format!(
            "{}(a.last_seen_at, $3) + a.expires_after_ms",
            self.dialect.pick("MAX", "GREATEST")
        );
        let sql = format!(
            "SELECT a.* FROM alerts a JOIN incidents i ON i.id = a.incident_id
             WHERE a.firing = 1 AND a.expires_after_ms IS NOT NULL
               AND {end} <= $1 AND i.resolved_at IS NULL
             ORDER BY {end}, a.id LIMIT $2 {}",
            self.dialect.pick("", "FOR UPDATE OF a")
        );
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(ms(now))
            .bind(i64::from(limit))
            .bind(ms(since))
            .fetch_all(&mut *self.tx)
            .await?;
        rows.iter().map(alert_from_row).collect()
    }

    async fn insert_update(&mut self, new: &NewUpdate) -> Result<UpdateRow> {
        let row = sqlx::query(
            "INSERT INTO incident_updates (incident_id, seq, kind, status, severity, body, author, created_at, origin_at, silent, routed_at, title, signals)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13) RETURNING *",
        )
        .bind(new.incident_id)
        .bind(new.seq)
        .bind(new.kind.as_str())
        .bind(new.status.as_str())
        .bind(new.severity.as_str())
        .bind(&new.body)
        .bind(&new.author)
        .bind(ms(new.created_at))
        .bind(ms(new.origin_at))
        .bind(i64::from(new.silent))
        .bind(new.silent.then(|| ms(new.created_at)))
        .bind(&new.title)
        .bind(json(&new.signals)?)
        .fetch_one(&mut *self.tx)
        .await?;
        update_from_row(&row)
    }

    async fn unrouted_updates(&mut self, limit: u32) -> Result<Vec<UpdateRow>> {
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT * FROM incident_updates WHERE routed_at IS NULL ORDER BY id LIMIT $1 {}",
            self.dialect.pick("", "FOR UPDATE")
        )))
        .bind(i64::from(limit))
        .fetch_all(&mut *self.tx)
        .await?;
        rows.iter().map(update_from_row).collect()
    }

    async fn subscribers_version(&mut self) -> Result<i64> {
        super::subscriber_sql::subscribers_version(&mut self.tx).await
    }

    async fn subscribers(&mut self) -> Result<Vec<SubscriberRow>> {
        load_which(&mut self.tx, &Which::NotCitizens).await
    }

    async fn citizen_groups(
        &mut self,
        services: Option<&[String]>,
    ) -> Result<(Vec<CitizenGroup>, i64)> {
        super::fanout_sql::citizen_groups(&mut self.tx, services).await
    }

    async fn citizens_heard(&mut self, incident_id: i64) -> Result<bool> {
        super::fanout_sql::citizens_heard(&mut self.tx, incident_id).await
    }

    async fn insert_message(&mut self, m: &NewMessage) -> Result<StoredMessage> {
        let (id, subject, body, html) = sqlx::query_as(
            "INSERT INTO messages (update_id, channel, language, audience, subject, body, html, created_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
             ON CONFLICT (update_id, channel, language, audience) DO UPDATE SET update_id = excluded.update_id
             RETURNING id, subject, body, html",
        )
        .bind(m.update_id)
        .bind(m.channel.as_str())
        .bind(&m.language)
        .bind(&m.audience)
        .bind(&m.subject)
        .bind(&m.body)
        .bind(&m.html)
        .bind(ms(m.created_at))
        .fetch_one(&mut *self.tx)
        .await?;
        Ok(StoredMessage {
            id,
            subject,
            body,
            html,
        })
    }

    async fn insert_deliveries(&mut self, new: &[NewDelivery]) -> Result<u64> {
        insert_deliveries(&mut self.tx, self.dialect, new).await
    }

    async fn hold_for_approval(&mut self, part: &NewDraftPart) -> Result<i64> {
        super::draft_sql::hold(&mut self.tx, part).await
    }

    async fn notified_addresses(&mut self, incident_id: i64) -> Result<Vec<(i64, ChannelKind)>> {
        // Citizens are left out: a region's worth would not fit the router's memory, and the
        // citizen writer asks about each batch (`FanoutStore::notified_among`).
        let rows: Vec<(i64, String)> = sqlx::query_as(
            "SELECT DISTINCT d.address_id, d.channel FROM deliveries d
             JOIN addresses a ON a.id = d.address_id
             JOIN subscribers s ON s.id = a.subscriber_id AND s.citizen_services IS NULL
             WHERE d.incident_id = $1 AND d.state != 'cancelled'",
        )
        .bind(incident_id)
        .fetch_all(&mut *self.tx)
        .await?;
        rows.into_iter()
            .map(|(id, channel)| Ok((id, parse(&channel, "channel")?)))
            .collect()
    }

    async fn set_maintenance(&mut self, incident_id: i64, window: Option<&str>) -> Result<()> {
        sqlx::query("UPDATE incidents SET maintenance = $2 WHERE id = $1")
            .bind(incident_id)
            .bind(window)
            .execute(&mut *self.tx)
            .await?;
        Ok(())
    }

    async fn mark_routed(&mut self, update_id: i64, now: Timestamp) -> Result<()> {
        sqlx::query("UPDATE incident_updates SET routed_at = $2 WHERE id = $1")
            .bind(update_id)
            .bind(ms(now))
            .execute(&mut *self.tx)
            .await?;
        Ok(())
    }
}

/// Alert rows per upsert: 17 parameters each, 8,500 in all, within SQLite's 32,766 and
/// PostgreSQL's 65,535.
const ALERT_ROWS: usize = 500;

/// Delivery rows per INSERT: 11 parameters each, 5,500 in all, within SQLite's 32,766 and
/// PostgreSQL's 65,535; a hundred thousand deliveries are 200 statements.
const INSERT_ROWS: usize = 500;

/// Adds deliveries, pending now; those already there (same update, channel, recipient) stay.
/// A draft's notices to the same recipients, and messages to the rows of affected lists, are no
/// such delivery (`deliveries_once` leaves them out).
pub(super) async fn insert_deliveries(
    tx: &mut Transaction<'static, Any>,
    dialect: Dialect,
    new: &[NewDelivery],
) -> Result<u64> {
    let mut inserted = 0;
    for chunk in new.chunks(INSERT_ROWS) {
        let sql = format!(
            "INSERT INTO deliveries (message_id, update_id, incident_id, address_id, subscriber_name, channel,
                                     recipient, state, next_attempt_at, origin_at, created_at)
             VALUES {} ON CONFLICT (update_id, channel, recipient) WHERE draft_id IS NULL AND affected_id IS NULL DO NOTHING",
            values(dialect, chunk.len(), 11)
        );
        let mut query = sqlx::query(sqlx::AssertSqlSafe(sql));
        for d in chunk {
            query = query
                .bind(d.message_id)
                .bind(d.update_id)
                .bind(d.incident_id)
                .bind(d.address_id)
                .bind(d.subscriber_name.clone())
                .bind(d.channel.as_str())
                .bind(d.recipient.clone())
                .bind("pending")
                .bind(ms(d.created_at))
                .bind(ms(d.origin_at))
                .bind(ms(d.created_at));
        }
        inserted += query.execute(&mut **tx).await?.rows_affected();
    }
    Ok(inserted)
}
