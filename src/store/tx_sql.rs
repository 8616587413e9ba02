//! [`Tx`] over the SQL store: the engine's and the router's write transaction, and adding
//! deliveries (which approving a draft does too).

use async_trait::async_trait;
use jiff::Timestamp;
use sqlx::{Any, Transaction};

use super::db::{self, Db, Row};
use super::dialect::{Dialect, values};
use super::escalation_sql as ladder;
use super::lite::LiteTx;
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

fn signal_from_row(row: &Row) -> Result<StoredSignal> {
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
    pub(super) conn: TxConn,
    pub(super) dialect: Dialect,
}

/// Where the transaction runs: through sqlx (PostgreSQL), or in place on SQLite's connection.
pub(super) enum TxConn {
    Sqlx(Transaction<'static, Any>),
    Lite(LiteTx),
}

impl SqlTx {
    /// Commits; [`Tx::commit`] for the store's own writes.
    pub(super) async fn finish(self) -> Result<()> {
        match self.conn {
            TxConn::Sqlx(tx) => tx.commit().await?,
            TxConn::Lite(tx) => tx.commit()?,
        }
        Ok(())
    }

    pub(super) fn db(&mut self) -> Result<Db<'_>> {
        Ok(match &mut self.conn {
            TxConn::Sqlx(tx) => Db::Sqlx(tx),
            TxConn::Lite(tx) => Db::Lite(tx.conn()?),
        })
    }
}

#[async_trait]
impl Tx for SqlTx {
    async fn insert_signals(&mut self, signals: &[(Timestamp, Signal)]) -> Result<Vec<i64>> {
        let dialect = self.dialect;
        super::sql::store_signals(&mut self.db()?, dialect, signals).await
    }

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
        let dialect = self.dialect;
        super::outbox_sql::claim(&mut self.db()?, dialect, &c).await
    }

    async fn start_escalation(
        &mut self,
        incident_id: i64,
        subscriber_id: i64,
        steps: &[NewEscalationStep],
        now: Timestamp,
    ) -> Result<u64> {
        ladder::start(&mut self.db()?, incident_id, subscriber_id, steps, now).await
    }

    async fn escalated_desks(&mut self, incident_id: i64) -> Result<Vec<i64>> {
        ladder::desks(&mut self.db()?, incident_id).await
    }

    async fn end_escalations(&mut self, incident_id: i64, now: Timestamp) -> Result<u64> {
        ladder::end(&mut self.db()?, incident_id, now).await
    }

    async fn due_escalations(&mut self, now: Timestamp, limit: u32) -> Result<Vec<EscalationRow>> {
        ladder::due(&mut self.db()?, now, limit).await
    }

    async fn settle_escalation(
        &mut self,
        id: i64,
        state: EscalationState,
        now: Timestamp,
    ) -> Result<bool> {
        ladder::settle(&mut self.db()?, id, state, now).await
    }

    async fn next_escalation_at(&mut self) -> Result<Option<Timestamp>> {
        ladder::next_due(&mut self.db()?).await
    }

    async fn desk_acknowledged(&mut self, incident_id: i64, subscriber_id: i64) -> Result<bool> {
        ladder::acknowledged(&mut self.db()?, incident_id, subscriber_id).await
    }

    async fn latest_routed_update(&mut self, incident_id: i64) -> Result<Option<UpdateRow>> {
        ladder::latest_routed(&mut self.db()?, incident_id).await
    }

    async fn commit(self: Box<Self>) -> Result<()> {
        self.finish().await
    }

    async fn unprocessed_signals(&mut self, limit: u32) -> Result<Vec<StoredSignal>> {
        // Locked on PostgreSQL: should two replicas ever both believe they lead, the second
        // waits, then finds the rows processed, instead of applying them twice.
        let sql = format!(
            "SELECT {SIGNAL_COLUMNS} FROM signals WHERE processed_at IS NULL ORDER BY id LIMIT $1 {}",
            self.dialect.pick("", "FOR UPDATE")
        );
        let rows = db::query(sql)
            .bind(i64::from(limit))
            .fetch_all(&mut self.db()?)
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
        db::query(format!(
            "UPDATE signals SET processed_at = $2, outcome = j.outcome, incident_id = j.incident_id
             FROM ({marks_sql}) AS j WHERE signals.id = j.id"
        ))
        .bind(json(&rows)?)
        .bind(ms(now))
        .execute(&mut self.db()?)
        .await?;
        Ok(())
    }

    async fn active_alerts(&mut self, fingerprints: &[String]) -> Result<Vec<AlertRow>> {
        let rows = db::query(format!(
            "SELECT a.* FROM alerts a JOIN incidents i ON i.id = a.incident_id
             WHERE a.fingerprint IN ({}) AND i.resolved_at IS NULL
             ORDER BY a.id",
            self.dialect.texts()
        ))
        .bind(json(&fingerprints)?)
        .fetch_all(&mut self.db()?)
        .await?;
        rows.iter().map(alert_from_row).collect()
    }

    async fn touch_alerts(&mut self, ids: &[i64], at: Timestamp) -> Result<()> {
        if ids.is_empty() {
            return Ok(());
        }
        db::query(format!(
            "UPDATE alerts SET last_seen_at = {}(last_seen_at, $2) WHERE id IN ({})",
            self.dialect.greatest(),
            self.dialect.ids()
        ))
        .bind(json(&ids)?)
        .bind(ms(at))
        .execute(&mut self.db()?)
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
        let rows = db::query(sql)
            .bind(json(&keys)?)
            .fetch_all(&mut self.db()?)
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
        let rows = db::query(sql)
            .bind(json(&ids)?)
            .fetch_all(&mut self.db()?)
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
        let row = db::query(sql)
            .bind(id)
            .fetch_optional(&mut self.db()?)
            .await?;
        row.as_ref().map(incident_from_row).transpose()
    }

    async fn insert_incident(&mut self, new: &NewIncident) -> Result<IncidentRow> {
        let sql = format!(
            "INSERT INTO incidents (group_key, title, status, severity, origin, labels, opened_at, eval_at, pending_since)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) RETURNING {INCIDENT_COLUMNS}"
        );
        let row = db::query(sql)
            .bind(&new.group_key)
            .bind(&new.title)
            .bind(new.status.as_str())
            .bind(new.severity.as_str())
            .bind(new.origin.as_str())
            .bind(json(&new.labels)?)
            .bind(ms(new.opened_at))
            .bind(opt_ms(new.eval_at))
            .bind(opt_ms(new.pending_since))
            .fetch_one(&mut self.db()?)
            .await
            .map_err(|e| {
                if e.is_unique_violation() {
                    StoreError::Conflict(format!(
                        "an incident with key `{}` is already open",
                        new.group_key
                    ))
                } else {
                    e
                }
            })?;
        incident_from_row(&row)
    }

    async fn save_incident(&mut self, i: &IncidentRow) -> Result<()> {
        let announced = i.announced.as_ref().map(json).transpose()?;
        db::query(
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
        .execute(&mut self.db()?)
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
            let mut query = db::query(sql);
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
            query.execute(&mut self.db()?).await?;
        }
        Ok(())
    }

    async fn alerts(&mut self, incident_id: i64) -> Result<Vec<AlertRow>> {
        let rows = db::query("SELECT * FROM alerts WHERE incident_id = $1 ORDER BY id")
            .bind(incident_id)
            .fetch_all(&mut self.db()?)
            .await?;
        rows.iter().map(alert_from_row).collect()
    }

    async fn alert_states(&mut self, incident_id: i64) -> Result<Vec<AlertState>> {
        let rows = db::query(
            "SELECT fingerprint, firing, severity, resolved_at FROM alerts
             WHERE incident_id = $1 ORDER BY id",
        )
        .bind(incident_id)
        .fetch_all(&mut self.db()?)
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
        Ok(db::query_scalar(
            "SELECT id FROM incidents WHERE eval_at <= $1 ORDER BY eval_at LIMIT $2",
        )
        .bind(ms(now))
        .bind(i64::from(limit))
        .fetch_all(&mut self.db()?)
        .await?)
    }

    async fn next_eval_at(&mut self, since: Timestamp) -> Result<Option<Timestamp>> {
        // Both times in one statement: the step runs it each time, on the writer.
        let row = db::query(format!(
            "SELECT (SELECT MIN(eval_at) FROM incidents WHERE eval_at IS NOT NULL),
                    (SELECT MIN({}(a.last_seen_at, $1) + a.expires_after_ms) FROM alerts a
                     JOIN incidents i ON i.id = a.incident_id
                     WHERE a.firing = 1 AND a.expires_after_ms IS NOT NULL
                       AND i.resolved_at IS NULL)",
            self.dialect.pick("MAX", "GREATEST")
        ))
        .bind(ms(since))
        .fetch_one(&mut self.db()?)
        .await?;
        let (v, expiry): (Option<i64>, Option<i64>) = (row.try_get(0)?, row.try_get(1)?);
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
        let rows = db::query(sql)
            .bind(ms(now))
            .bind(i64::from(limit))
            .bind(ms(since))
            .fetch_all(&mut self.db()?)
            .await?;
        rows.iter().map(alert_from_row).collect()
    }

    async fn insert_update(&mut self, new: &NewUpdate) -> Result<UpdateRow> {
        let row = db::query(
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
        .fetch_one(&mut self.db()?)
        .await?;
        update_from_row(&row)
    }

    async fn unrouted_updates(&mut self, limit: u32) -> Result<Vec<UpdateRow>> {
        let rows = db::query(format!(
            "SELECT * FROM incident_updates WHERE routed_at IS NULL ORDER BY id LIMIT $1 {}",
            self.dialect.pick("", "FOR UPDATE")
        ))
        .bind(i64::from(limit))
        .fetch_all(&mut self.db()?)
        .await?;
        rows.iter().map(update_from_row).collect()
    }

    async fn subscribers_version(&mut self) -> Result<i64> {
        super::subscriber_sql::subscribers_version(&mut self.db()?).await
    }

    async fn subscribers(&mut self) -> Result<Vec<SubscriberRow>> {
        load_which(&mut self.db()?, &Which::NotCitizens).await
    }

    async fn citizen_groups(
        &mut self,
        services: Option<&[String]>,
    ) -> Result<(Vec<CitizenGroup>, i64)> {
        super::fanout_sql::citizen_groups(&mut self.db()?, services).await
    }

    async fn citizens_heard(&mut self, incident_id: i64) -> Result<bool> {
        super::fanout_sql::citizens_heard(&mut self.db()?, incident_id).await
    }

    async fn insert_message(&mut self, m: &NewMessage) -> Result<StoredMessage> {
        let row = db::query(
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
        .fetch_one(&mut self.db()?)
        .await?;
        Ok(StoredMessage {
            id: row.try_get("id")?,
            subject: row.try_get("subject")?,
            body: row.try_get("body")?,
            html: row.try_get("html")?,
        })
    }

    async fn insert_deliveries(&mut self, new: &[NewDelivery]) -> Result<u64> {
        let dialect = self.dialect;
        insert_deliveries(&mut self.db()?, dialect, new).await
    }

    async fn hold_for_approval(&mut self, part: &NewDraftPart) -> Result<i64> {
        super::draft_sql::hold(&mut self.db()?, part).await
    }

    async fn notified_addresses(&mut self, incident_id: i64) -> Result<Vec<(i64, ChannelKind)>> {
        // Citizens are left out: a region's worth would not fit the router's memory, and the
        // citizen writer asks about each batch (`FanoutStore::notified_among`).
        let rows = db::query(
            "SELECT DISTINCT d.address_id, d.channel FROM deliveries d
             JOIN addresses a ON a.id = d.address_id
             JOIN subscribers s ON s.id = a.subscriber_id AND s.citizen_services IS NULL
             WHERE d.incident_id = $1 AND d.state != 'cancelled'",
        )
        .bind(incident_id)
        .fetch_all(&mut self.db()?)
        .await?;
        rows.iter()
            .map(|row| {
                let channel: &str = row.try_get("channel")?;
                Ok((row.try_get("address_id")?, parse(channel, "channel")?))
            })
            .collect()
    }

    async fn set_maintenance(&mut self, incident_id: i64, window: Option<&str>) -> Result<()> {
        db::query("UPDATE incidents SET maintenance = $2 WHERE id = $1")
            .bind(incident_id)
            .bind(window)
            .execute(&mut self.db()?)
            .await?;
        Ok(())
    }

    async fn mark_routed(&mut self, update_id: i64, now: Timestamp) -> Result<()> {
        db::query("UPDATE incident_updates SET routed_at = $2 WHERE id = $1")
            .bind(update_id)
            .bind(ms(now))
            .execute(&mut self.db()?)
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
    db: &mut Db<'_>,
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
        let mut query = db::query(sql);
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
        inserted += query.execute(db).await?.rows_affected();
    }
    Ok(inserted)
}
