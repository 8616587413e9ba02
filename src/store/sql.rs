//! The SQL store: one implementation for SQLite and PostgreSQL, through sqlx's `Any` driver.
//!
//! Statements are written once; the few places where the two dialects differ (JSON arrays as
//! parameters, `GREATEST`, row locks, `SKIP LOCKED`) pick their text from [`Dialect`]. Times are
//! Unix milliseconds (BIGINT), label maps JSON text, flags 0/1 integers: the types both engines
//! store alike. Opening a store (files, pools, pragmas, listeners) is in `sqlite.rs` and
//! `postgres.rs`.

use std::collections::BTreeMap;
use std::fs::File;
use std::str::FromStr;

use async_trait::async_trait;
use jiff::Timestamp;
use sqlx::any::AnyRow;
use sqlx::{Any, Row, Transaction};
use sqlx::{AnyConnection, AnyPool};

use super::*;
use crate::domain::Matcher;

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

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    Sqlite,
    Postgres,
}

impl Dialect {
    /// The statement text for this dialect.
    pub(super) fn pick(self, sqlite: &'static str, postgres: &'static str) -> &'static str {
        match self {
            Dialect::Sqlite => sqlite,
            Dialect::Postgres => postgres,
        }
    }

    /// The ids in `$1`, a JSON array of integers, as a subquery.
    pub(super) fn ids(self) -> &'static str {
        self.pick(
            "SELECT value FROM json_each($1)",
            "SELECT value::bigint FROM jsonb_array_elements_text($1::jsonb) AS t(value)",
        )
    }

    /// The strings in `$1`, a JSON array of strings, as a subquery.
    fn texts(self) -> &'static str {
        self.pick(
            "SELECT value FROM json_each($1)",
            "SELECT value FROM jsonb_array_elements_text($1::jsonb) AS t(value)",
        )
    }

    /// The larger of two values.
    fn greatest(self) -> &'static str {
        self.pick("MAX", "GREATEST")
    }

    /// `a IS NOT b`, true when they differ, NULLs included.
    fn is_not(self) -> &'static str {
        self.pick("IS NOT", "IS DISTINCT FROM")
    }
}

pub struct SqlStore {
    pub(super) dialect: Dialect,
    /// PostgreSQL: where to open the connection that listens for other replicas' wake-ups.
    listen_url: Option<String>,
    /// Signs this store's announcements, so that it does not wake itself with them.
    voice: String,
    /// Write transactions. On SQLite a single connection, so writers queue instead of spinning.
    pub(super) writer: AnyPool,
    /// Reads; on PostgreSQL the same pool as writes.
    pub(super) reader: AnyPool,
    /// SQLite's exclusive lock on `<file>.lock`, held for the life of the store.
    _lock: Option<File>,
}

impl SqlStore {
    pub(super) fn new(
        dialect: Dialect,
        writer: AnyPool,
        reader: AnyPool,
        lock: Option<File>,
        listen_url: Option<String>,
    ) -> SqlStore {
        SqlStore {
            dialect,
            listen_url,
            voice: crate::ids::random_hex(6),
            writer,
            reader,
            _lock: lock,
        }
    }

    pub(super) async fn write(&self) -> Result<Transaction<'static, Any>> {
        Ok(match self.dialect {
            // IMMEDIATE takes the write lock at once: a deferred transaction that reads first
            // would fail its lock upgrade with SQLITE_BUSY instead of waiting.
            Dialect::Sqlite => self.writer.begin_with("BEGIN IMMEDIATE").await?,
            Dialect::Postgres => self.writer.begin().await?,
        })
    }
}

/// `(…), (…)` for `rows` rows of `columns` placeholders: numbered `$n` for PostgreSQL (sqlx's
/// query builder writes `?` for `Any`, which PostgreSQL refuses), anonymous `?` for SQLite, which
/// looks every numbered parameter up by name in a list, a cost that grows with the square of the
/// count and took a third of ingest throughput at 832 parameters per statement.
fn values(dialect: Dialect, rows: usize, columns: usize) -> String {
    let mut out = String::with_capacity(rows * columns * 5);
    for row in 0..rows {
        if row > 0 {
            out.push_str(", ");
        }
        out.push('(');
        for column in 0..columns {
            if column > 0 {
                out.push_str(", ");
            }
            match dialect {
                Dialect::Sqlite => out.push('?'),
                Dialect::Postgres => out.push_str(&format!("${}", row * columns + column + 1)),
            }
        }
        out.push(')');
    }
    out
}

/// A 0/1 flag column.
fn flag(row: &AnyRow, column: &str) -> Result<bool> {
    Ok(row.try_get::<i64, _>(column)? != 0)
}

pub(super) fn ms(t: Timestamp) -> i64 {
    t.as_millisecond()
}

fn opt_ms(t: Option<Timestamp>) -> Option<i64> {
    t.map(ms)
}

pub(super) fn ts(v: i64) -> Result<Timestamp> {
    Timestamp::from_millisecond(v).map_err(|e| StoreError::Corrupt(format!("timestamp {v}: {e}")))
}

pub(super) fn opt_ts(v: Option<i64>) -> Result<Option<Timestamp>> {
    v.map(ts).transpose()
}

pub(super) fn parse<T: FromStr>(value: &str, what: &str) -> Result<T>
where
    T::Err: std::fmt::Display,
{
    value
        .parse()
        .map_err(|e| StoreError::Corrupt(format!("{what} `{value}`: {e}")))
}

fn json<T: serde::Serialize>(value: &T) -> Result<String> {
    serde_json::to_string(value).map_err(|e| StoreError::Corrupt(e.to_string()))
}

fn from_json<T: serde::de::DeserializeOwned>(value: &str, what: &str) -> Result<T> {
    serde_json::from_str(value).map_err(|e| StoreError::Corrupt(format!("{what}: {e}")))
}

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

fn incident_from_row(row: &AnyRow) -> Result<IncidentRow> {
    let origin = match row.try_get::<&str, _>("origin")? {
        "manual" => IncidentOrigin::Manual,
        _ => IncidentOrigin::Signals,
    };
    let announced: Option<String> = row.try_get("announced")?;
    Ok(IncidentRow {
        id: row.try_get("id")?,
        group_key: row.try_get("group_key")?,
        title: row.try_get("title")?,
        status: parse(row.try_get::<&str, _>("status")?, "incident status")?,
        severity: parse(row.try_get::<&str, _>("severity")?, "severity")?,
        origin,
        labels: from_json(row.try_get("labels")?, "labels")?,
        opened_at: ts(row.try_get("opened_at")?)?,
        resolved_at: opt_ts(row.try_get("resolved_at")?)?,
        announced: announced
            .as_deref()
            .map(|a| from_json(a, "announced"))
            .transpose()?,
        last_announced_at: opt_ts(row.try_get("last_announced_at")?)?,
        eval_at: opt_ts(row.try_get("eval_at")?)?,
        pending_since: opt_ts(row.try_get("pending_since")?)?,
        last_seq: row.try_get("last_seq")?,
        maintenance: row.try_get("maintenance")?,
    })
}

fn alert_from_row(row: &AnyRow) -> Result<AlertRow> {
    Ok(AlertRow {
        id: row.try_get("id")?,
        incident_id: row.try_get("incident_id")?,
        fingerprint: row.try_get("fingerprint")?,
        source: parse(row.try_get::<&str, _>("source")?, "source")?,
        firing: flag(row, "firing")?,
        severity: parse(row.try_get::<&str, _>("severity")?, "severity")?,
        peak_severity: parse(row.try_get::<&str, _>("peak_severity")?, "severity")?,
        service: row.try_get("service")?,
        component: row.try_get("component")?,
        labels: from_json(row.try_get("labels")?, "labels")?,
        annotations: from_json(row.try_get("annotations")?, "annotations")?,
        summary: row.try_get("summary")?,
        url: row.try_get("url")?,
        starts_at: opt_ts(row.try_get("starts_at")?)?,
        first_seen_at: ts(row.try_get("first_seen_at")?)?,
        last_seen_at: ts(row.try_get("last_seen_at")?)?,
        resolved_at: opt_ts(row.try_get("resolved_at")?)?,
    })
}

fn update_from_row(row: &AnyRow) -> Result<UpdateRow> {
    Ok(UpdateRow {
        id: row.try_get("id")?,
        incident_id: row.try_get("incident_id")?,
        seq: row.try_get("seq")?,
        kind: parse(row.try_get::<&str, _>("kind")?, "update kind")?,
        status: parse(row.try_get::<&str, _>("status")?, "incident status")?,
        severity: parse(row.try_get::<&str, _>("severity")?, "severity")?,
        title: row.try_get("title")?,
        signals: from_json(row.try_get("signals")?, "update signals")?,
        body: row.try_get("body")?,
        author: row.try_get("author")?,
        created_at: ts(row.try_get("created_at")?)?,
        origin_at: ts(row.try_get("origin_at")?)?,
        silent: flag(row, "silent")?,
        routed_at: opt_ts(row.try_get("routed_at")?)?,
    })
}

/// The columns [`address_from_row`] reads, from `addresses a`.
pub(super) const ADDRESS_COLUMNS: &str = "a.id, a.subscriber_id, a.channel, a.address, a.unsubscribed_at, a.gone_at, a.gone_reason, a.origin, a.language AS address_language";

/// An address without its services (see [`load_services`]).
pub(super) fn address_from_row(row: &AnyRow) -> Result<AddressRow> {
    let language: Option<String> = row.try_get("address_language")?;
    Ok(AddressRow {
        id: row.try_get("id")?,
        channel: parse(row.try_get::<&str, _>("channel")?, "channel")?,
        address: row.try_get("address")?,
        unsubscribed_at: opt_ts(row.try_get("unsubscribed_at")?)?,
        gone_at: opt_ts(row.try_get("gone_at")?)?,
        gone_reason: row.try_get("gone_reason")?,
        origin: match row.try_get::<&str, _>("origin")? {
            "chat" => AddressOrigin::Chat,
            _ => AddressOrigin::Admin,
        },
        language: language
            .map(Language::try_from)
            .transpose()
            .map_err(StoreError::Corrupt)?,
        services: BTreeMap::new(),
    })
}

/// The services addresses follow or muted, for the addresses of one subscriber (or all).
pub(super) async fn load_services(
    conn: &mut AnyConnection,
    subscriber: Option<i64>,
) -> Result<BTreeMap<i64, BTreeMap<String, ServiceMode>>> {
    let rows = sqlx::query(
        "SELECT s.address_id, s.service, s.mode FROM address_services s
         JOIN addresses a ON a.id = s.address_id WHERE $1 OR a.subscriber_id = $2",
    )
    .bind(subscriber.is_none())
    .bind(subscriber.unwrap_or(-1))
    .fetch_all(&mut *conn)
    .await?;
    let mut out: BTreeMap<i64, BTreeMap<String, ServiceMode>> = BTreeMap::new();
    for row in rows {
        let mode = match row.try_get::<&str, _>("mode")? {
            "mute" => ServiceMode::Mute,
            _ => ServiceMode::Follow,
        };
        out.entry(row.try_get("address_id")?)
            .or_default()
            .insert(row.try_get("service")?, mode);
    }
    Ok(out)
}

const SIGNAL_COLUMNS: &str = "id, received_at, source, fingerprint, status, severity, service, component, labels, annotations, summary, starts_at, ends_at, url";
const INCIDENT_COLUMNS: &str = "id, group_key, title, status, severity, origin, labels, opened_at, resolved_at, announced, last_announced_at, eval_at, pending_since, last_seq, maintenance";

/// Loads subscribers with their addresses and subscriptions, from any executor.
async fn load_subscribers(
    conn: &mut AnyConnection,
    only: Option<i64>,
) -> Result<Vec<SubscriberRow>> {
    let id = only.unwrap_or(-1);
    let all = only.is_none();
    let rows = sqlx::query(
        "SELECT id, name, language, audience, origin, created_at, citizen_services FROM subscribers WHERE $1 OR id = $2 ORDER BY id",
    )
    .bind(all)
    .bind(id)
    .fetch_all(&mut *conn)
    .await?;
    let mut out: BTreeMap<i64, SubscriberRow> = BTreeMap::new();
    for row in rows {
        let sid: i64 = row.try_get("id")?;
        let citizen_services: Option<String> = row.try_get("citizen_services")?;
        let citizen_services: Option<Vec<String>> = citizen_services
            .map(|s| from_json(&s, "citizen_services"))
            .transpose()?;
        let origin = match (row.try_get::<&str, _>("origin")?, &citizen_services) {
            ("config", _) => SubscriberOrigin::Config,
            (_, Some(_)) => SubscriberOrigin::Citizen,
            _ => SubscriberOrigin::Api,
        };
        let language: String = row.try_get("language")?;
        out.insert(
            sid,
            SubscriberRow {
                id: sid,
                name: row.try_get("name")?,
                language: Language::try_from(language).map_err(StoreError::Corrupt)?,
                audience: row.try_get("audience")?,
                origin,
                created_at: ts(row.try_get("created_at")?)?,
                addresses: Vec::new(),
                subscriptions: Vec::new(),
                citizen_services: citizen_services.unwrap_or_default(),
            },
        );
    }
    let sql = format!(
        "SELECT {ADDRESS_COLUMNS} FROM addresses a WHERE $1 OR a.subscriber_id = $2 ORDER BY a.id"
    );
    let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(all)
        .bind(id)
        .fetch_all(&mut *conn)
        .await?;
    let mut services = load_services(conn, only).await?;
    for row in rows {
        let sid: i64 = row.try_get("subscriber_id")?;
        if let Some(s) = out.get_mut(&sid) {
            let mut address = address_from_row(&row)?;
            address.services = services.remove(&address.id).unwrap_or_default();
            s.addresses.push(address);
        }
    }
    let rows = sqlx::query(
        "SELECT subscriber_id, matchers, min_severity, channels FROM subscriptions WHERE $1 OR subscriber_id = $2 ORDER BY subscriber_id, position",
    )
    .bind(all)
    .bind(id)
    .fetch_all(&mut *conn)
    .await?;
    for row in rows {
        let sid: i64 = row.try_get("subscriber_id")?;
        let matchers: Vec<String> = from_json(row.try_get("matchers")?, "matchers")?;
        let matchers = matchers
            .iter()
            .map(|m| {
                m.parse::<Matcher>()
                    .map_err(|e| StoreError::Corrupt(e.to_string()))
            })
            .collect::<Result<Vec<_>>>()?;
        let subscription = Subscription {
            matchers,
            min_severity: parse(row.try_get::<&str, _>("min_severity")?, "severity")?,
            channels: from_json(row.try_get("channels")?, "channels")?,
        };
        if let Some(s) = out.get_mut(&sid) {
            s.subscriptions.push(subscription);
        }
    }
    Ok(out.into_values().collect())
}

pub(super) async fn bump_subscribers_version(tx: &mut Transaction<'static, Any>) -> Result<()> {
    sqlx::query(
        "INSERT INTO settings (key, value) VALUES ('subscribers_version', '1')
         ON CONFLICT (key) DO UPDATE SET value = CAST(CAST(settings.value AS BIGINT) + 1 AS TEXT)",
    )
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// A new subscriber with its addresses and subscriptions; `origin` is `api` or `config`.
pub(super) async fn insert_subscriber(
    tx: &mut Transaction<'static, Any>,
    s: &ValidSubscriber,
    origin: &str,
    now: Timestamp,
) -> Result<i64> {
    let id: i64 = sqlx::query_scalar(
        "INSERT INTO subscribers (name, language, audience, origin, created_at, updated_at)
         VALUES ($1, $2, $3, $4, $5, $5) RETURNING id",
    )
    .bind(&s.name)
    .bind(s.language.as_str())
    .bind(&s.audience)
    .bind(origin)
    .bind(ms(now))
    .fetch_one(&mut **tx)
    .await?;
    insert_subscriber_parts(tx, id, s, false).await?;
    Ok(id)
}

/// Writes a subscriber's addresses and subscriptions; true when that changed any.
async fn insert_subscriber_parts(
    tx: &mut Transaction<'static, Any>,
    id: i64,
    s: &ValidSubscriber,
    keep_addresses: bool,
) -> Result<bool> {
    let mut changed = false;
    if keep_addresses {
        // Keep rows (and their unsubscribe/gone marks) for addresses still wanted.
        // Chats that bound themselves stay: the file does not list them.
        let existing = sqlx::query(
            "SELECT id, channel, address FROM addresses WHERE subscriber_id = $1 AND origin = 'admin'",
        )
        .bind(id)
        .fetch_all(&mut **tx)
        .await?;
        for row in existing {
            let channel: String = row.try_get("channel")?;
            let address: String = row.try_get("address")?;
            let wanted = s
                .addresses
                .iter()
                .any(|(c, a)| c.as_str() == channel && a == &address);
            if !wanted {
                let address_id: i64 = row.try_get("id")?;
                cancel_address_deliveries(tx, address_id, "address removed from the subscriber")
                    .await?;
                sqlx::query("DELETE FROM addresses WHERE id = $1")
                    .bind(address_id)
                    .execute(&mut **tx)
                    .await?;
                changed = true;
            }
        }
    }
    for (channel, address) in &s.addresses {
        let added = sqlx::query(
            "INSERT INTO addresses (subscriber_id, channel, address) VALUES ($1, $2, $3)
             ON CONFLICT (subscriber_id, channel, address) DO NOTHING",
        )
        .bind(id)
        .bind(channel.as_str())
        .bind(address)
        .execute(&mut **tx)
        .await?
        .rows_affected();
        changed |= added > 0;
    }
    Ok(write_subscriptions(tx, id, &s.subscriptions).await? || changed)
}

/// Replaces a subscriber's subscriptions, unless they are those already stored; true when it
/// replaced them.
pub(super) async fn write_subscriptions(
    tx: &mut Transaction<'static, Any>,
    id: i64,
    subscriptions: &[Subscription],
) -> Result<bool> {
    let wanted = subscriptions
        .iter()
        .map(|sub| {
            let matchers: Vec<String> = sub.matchers.iter().map(ToString::to_string).collect();
            Ok((
                json(&matchers)?,
                sub.min_severity.as_str().to_owned(),
                json(&sub.channels)?,
            ))
        })
        .collect::<Result<Vec<_>>>()?;
    let stored: Vec<(String, String, String)> = sqlx::query_as(
        "SELECT matchers, min_severity, channels FROM subscriptions WHERE subscriber_id = $1 ORDER BY position",
    )
    .bind(id)
    .fetch_all(&mut **tx)
    .await?;
    if stored == wanted {
        return Ok(false);
    }
    sqlx::query("DELETE FROM subscriptions WHERE subscriber_id = $1")
        .bind(id)
        .execute(&mut **tx)
        .await?;
    for (position, (matchers, min_severity, channels)) in wanted.iter().enumerate() {
        sqlx::query(
            "INSERT INTO subscriptions (subscriber_id, position, matchers, min_severity, channels) VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(id)
        .bind(position as i64)
        .bind(matchers)
        .bind(min_severity)
        .bind(channels)
        .execute(&mut **tx)
        .await?;
    }
    Ok(true)
}

/// Overwrites the recipient (an email address, a phone number, a chat) of every delivery to the
/// addresses `addresses` selects (a query of one `$1` parameter), so that erasing an address
/// leaves no copy of it in the delivery history.
pub(super) async fn erase_delivered_addresses(
    tx: &mut Transaction<'static, Any>,
    addresses: &str,
    param: i64,
) -> Result<u64> {
    // A provider's error text may quote the address too (our own reasons for cancelling do not).
    let done = sqlx::query(sqlx::AssertSqlSafe(format!(
        "UPDATE deliveries SET recipient = 'erased:' || CAST(id AS TEXT), report_error = NULL,
                last_error = CASE WHEN state = 'cancelled' THEN last_error ELSE NULL END
         WHERE address_id IN ({addresses})"
    )))
    .bind(param)
    .execute(&mut **tx)
    .await?;
    Ok(done.rows_affected())
}

/// Takes an address out of the recipients drafts were frozen with, so that no copy of it stays
/// there once it is erased.
pub(super) async fn forget_in_drafts(
    tx: &mut Transaction<'static, Any>,
    address_id: i64,
) -> Result<()> {
    let parts: Vec<(i64, String)> =
        sqlx::query_as("SELECT id, recipients FROM draft_parts WHERE recipients LIKE $1")
            .bind(format!("%[{address_id},%"))
            .fetch_all(&mut **tx)
            .await?;
    for (id, recipients) in parts {
        let mut list: Vec<(i64, String, String)> = from_json(&recipients, "draft recipients")?;
        list.retain(|(a, _, _)| *a != address_id);
        sqlx::query("UPDATE draft_parts SET recipients = $2 WHERE id = $1")
            .bind(id)
            .bind(json(&list)?)
            .execute(&mut **tx)
            .await?;
    }
    Ok(())
}

pub(super) async fn cancel_address_deliveries(
    tx: &mut Transaction<'static, Any>,
    address_id: i64,
    reason: &str,
) -> Result<u64> {
    let done = sqlx::query(
        "UPDATE deliveries SET state = 'cancelled', last_error = $2, lease_until = NULL, locked_by = NULL
         WHERE address_id = $1 AND state = 'pending'",
    )
    .bind(address_id)
    .bind(reason)
    .execute(&mut **tx)
    .await?;
    Ok(done.rows_affected())
}

#[async_trait]
impl Store for SqlStore {
    async fn migrate(&self) -> Result<()> {
        match self.dialect {
            Dialect::Sqlite => {
                super::sqlite::MIGRATOR.run(&self.writer).await?;
                // The file lock guarantees no other process is alive: whatever the last one had
                // claimed is orphaned and can be sent again.
                sqlx::query(
                    "UPDATE deliveries SET state = 'pending', lease_until = NULL, locked_by = NULL WHERE state = 'sending'",
                )
                .execute(&self.writer)
                .await?;
            }
            // Other replicas may be alive: their deliveries come back when their leases end.
            // sqlx takes an advisory lock around migrations, so replicas may migrate at once.
            Dialect::Postgres => super::postgres::MIGRATOR.run(&self.writer).await?,
        }
        Ok(())
    }

    async fn ping(&self) -> Result<()> {
        sqlx::query("SELECT 1").execute(&self.reader).await?;
        Ok(())
    }

    async fn close(&self) {
        self.reader.close().await;
        let _ = sqlx::query("PRAGMA wal_checkpoint(TRUNCATE)")
            .execute(&self.writer)
            .await;
        self.writer.close().await;
    }

    async fn setting_or_insert(&self, key: &str, value: &str) -> Result<String> {
        let mut tx = self.write().await?;
        sqlx::query(
            "INSERT INTO settings (key, value) VALUES ($1, $2) ON CONFLICT (key) DO NOTHING",
        )
        .bind(key)
        .bind(value)
        .execute(&mut *tx)
        .await?;
        let stored: String = sqlx::query_scalar("SELECT value FROM settings WHERE key = $1")
            .bind(key)
            .fetch_one(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(stored)
    }

    async fn insert_signals(&self, signals: &[(Timestamp, Signal)]) -> Result<Vec<i64>> {
        let mut tx = self.write().await?;
        let mut ids = Vec::with_capacity(signals.len());
        for chunk in signals.chunks(64) {
            let sql = format!(
                "INSERT INTO signals (received_at, source, fingerprint, status, severity, service, component, labels,
                                      annotations, summary, starts_at, ends_at, url)
                 VALUES {} RETURNING id",
                values(self.dialect, chunk.len(), 13)
            );
            let mut query = sqlx::query(sqlx::AssertSqlSafe(sql));
            for (at, s) in chunk {
                query = query
                    .bind(ms(*at))
                    .bind(s.source.as_str())
                    .bind(s.fingerprint.clone())
                    .bind(s.status.as_str())
                    .bind(s.severity.as_str())
                    .bind(s.service.clone())
                    .bind(s.component.clone())
                    .bind(json(&s.labels)?)
                    .bind(json(&s.annotations)?)
                    .bind(s.summary.clone())
                    .bind(opt_ms(s.starts_at))
                    .bind(opt_ms(s.ends_at))
                    .bind(s.url.clone());
            }
            for row in query.fetch_all(&mut *tx).await? {
                ids.push(row.try_get::<i64, _>(0)?);
            }
        }
        tx.commit().await?;
        ids.sort_unstable();
        Ok(ids)
    }

    async fn begin(&self) -> Result<Box<dyn Tx>> {
        Ok(Box::new(SqlTx {
            tx: self.write().await?,
            dialect: self.dialect,
        }))
    }

    async fn claim_deliveries(
        &self,
        channel: ChannelKind,
        limit: u32,
        now: Timestamp,
        lease_until: Timestamp,
        owner: &str,
    ) -> Result<Vec<ClaimedDelivery>> {
        let mut tx = self.write().await?;
        // A delivery waits while an earlier one to the same recipient is pending or in flight.
        // On PostgreSQL, replicas claim side by side: rows another transaction is claiming are
        // skipped, not waited for.
        let skip_locked = self.dialect.pick("", "FOR UPDATE SKIP LOCKED");
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "UPDATE deliveries SET state = 'sending', attempts = attempts + 1, lease_until = $1, locked_by = $2
             WHERE id IN (
                SELECT d.id FROM deliveries d
                WHERE d.state = 'pending' AND d.channel = $3 AND d.next_attempt_at <= $4
                  AND {NEXT_FOR_RECIPIENT}
                ORDER BY d.next_attempt_at, d.id
                LIMIT $5 {skip_locked})
             RETURNING id, message_id, incident_id, channel, recipient, address_id, subscriber_name, attempts, origin_at"
        )))
        .bind(ms(lease_until))
        .bind(owner)
        .bind(channel.as_str())
        .bind(ms(now))
        .bind(limit as i64)
        .fetch_all(&mut *tx)
        .await?;
        tx.commit().await?;
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
                })
            })
            .collect::<Result<Vec<_>>>()?;
        out.sort_by_key(|d| d.id);
        Ok(out)
    }

    async fn message(&self, id: i64) -> Result<Option<MessageRow>> {
        let row = sqlx::query("SELECT id, update_id, channel, language, subject, body, html FROM messages WHERE id = $1")
            .bind(id)
            .fetch_optional(&self.reader)
            .await?;
        row.map(|row| {
            Ok(MessageRow {
                id: row.try_get("id")?,
                update_id: row.try_get("update_id")?,
                channel: parse(row.try_get::<&str, _>("channel")?, "channel")?,
                language: row.try_get("language")?,
                subject: row.try_get("subject")?,
                body: row.try_get("body")?,
                html: row.try_get("html")?,
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
        let mut tx = self.write().await?;
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
                    sqlx::query(sqlx::AssertSqlSafe(format!(
                        "UPDATE deliveries SET state = 'pending', next_attempt_at = $4, last_error = $5,
                         lease_until = NULL, locked_by = NULL WHERE {HELD}"
                    )))
                    .bind(id)
                    .bind(owner)
                    .bind(attempts)
                    .bind(ms(*at))
                    .bind(error)
                    .execute(&mut *tx)
                    .await?;
                }
                DeliveryOutcome::Failed { error } => {
                    sqlx::query(sqlx::AssertSqlSafe(format!(
                        "UPDATE deliveries SET state = 'failed', last_error = $4,
                         lease_until = NULL, locked_by = NULL WHERE {HELD}"
                    )))
                    .bind(id)
                    .bind(owner)
                    .bind(attempts)
                    .bind(error)
                    .execute(&mut *tx)
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
                    sqlx::query(sqlx::AssertSqlSafe(format!(
                        "UPDATE deliveries SET state = 'pending', attempts = {}(attempts - 1, 0),
                         next_attempt_at = COALESCE($4, next_attempt_at),
                         last_error = COALESCE($5, last_error),
                         lease_until = NULL, locked_by = NULL WHERE {HELD}",
                        self.dialect.greatest()
                    )))
                    .bind(id)
                    .bind(owner)
                    .bind(attempts)
                    .bind(at)
                    .bind(error)
                    .execute(&mut *tx)
                    .await?;
                }
                DeliveryOutcome::Gone { error } => {
                    let address_id: Option<Option<i64>> =
                        sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
                            "UPDATE deliveries SET state = 'gone', last_error = $4,
                         lease_until = NULL, locked_by = NULL WHERE {HELD} RETURNING address_id"
                        )))
                        .bind(id)
                        .bind(owner)
                        .bind(attempts)
                        .bind(error)
                        .fetch_optional(&mut *tx)
                        .await?;
                    if let Some(Some(address_id)) = address_id {
                        sqlx::query("UPDATE addresses SET gone_at = $2, gone_reason = $3 WHERE id = $1 AND gone_at IS NULL")
                            .bind(address_id)
                            .bind(ms(now))
                            .bind(error)
                            .execute(&mut *tx)
                            .await?;
                        sqlx::query(
                            "UPDATE deliveries SET state = 'gone', last_error = $2 WHERE address_id = $1 AND state = 'pending'",
                        )
                        .bind(address_id)
                        .bind(format!("address gone: {error}"))
                        .execute(&mut *tx)
                        .await?;
                        gone_addresses = true;
                    }
                }
            }
        }
        if !sent.is_empty() {
            // `$1` is a JSON array of [id, attempts, provider id, provider, segments].
            let outcomes = self.dialect.pick(
                "SELECT value ->> 0 AS id, value ->> 1 AS attempts, value ->> 2 AS provider_id,
                        value ->> 3 AS provider, value ->> 4 AS segments FROM json_each($1)",
                "SELECT (value ->> 0)::bigint AS id, (value ->> 1)::bigint AS attempts, value ->> 2 AS provider_id,
                        value ->> 3 AS provider, (value ->> 4)::integer AS segments
                 FROM jsonb_array_elements($1::jsonb) AS t(value)",
            );
            sqlx::query(sqlx::AssertSqlSafe(format!(
                "UPDATE deliveries SET state = 'sent', sent_at = $3, provider_id = j.provider_id,
                 provider = j.provider, segments = j.segments, last_error = NULL,
                 lease_until = NULL, locked_by = NULL
                 FROM ({outcomes}) AS j
                 WHERE deliveries.id = j.id AND deliveries.attempts = j.attempts
                   AND deliveries.locked_by = $2 AND deliveries.state = 'sending'"
            )))
            .bind(json(&sent)?)
            .bind(owner)
            .bind(ms(now))
            .execute(&mut *tx)
            .await?;
        }
        if gone_addresses {
            bump_subscribers_version(&mut tx).await?;
        }
        tx.commit().await?;
        Ok(())
    }

    async fn release_leases(&self, owner: &str) -> Result<u64> {
        let done = sqlx::query(sqlx::AssertSqlSafe(format!(
            "UPDATE deliveries SET state = 'pending', attempts = {}(attempts - 1, 0), lease_until = NULL, locked_by = NULL
             WHERE state = 'sending' AND locked_by = $1",
            self.dialect.greatest()
        )))
        .bind(owner)
        .execute(&self.writer)
        .await?;
        Ok(done.rows_affected())
    }

    async fn renew_leases(&self, owner: &str, ids: &[i64], lease_until: Timestamp) -> Result<u64> {
        if ids.is_empty() {
            return Ok(0);
        }
        let done = sqlx::query(sqlx::AssertSqlSafe(format!(
            "UPDATE deliveries SET lease_until = $3
             WHERE id IN ({}) AND locked_by = $2 AND state = 'sending'",
            self.dialect.ids()
        )))
        .bind(json(&ids)?)
        .bind(owner)
        .bind(ms(lease_until))
        .execute(&self.writer)
        .await?;
        Ok(done.rows_affected())
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
             WHERE d.incident_id = $1 ORDER BY d.id",
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
        let unprocessed_signals: i64 =
            sqlx::query_scalar("SELECT COUNT(*) FROM signals WHERE processed_at IS NULL")
                .fetch_one(&self.reader)
                .await?;
        let rows = sqlx::query(
            "SELECT channel, state, COUNT(*) AS n FROM deliveries GROUP BY channel, state",
        )
        .fetch_all(&self.reader)
        .await?;
        let mut deliveries = BTreeMap::new();
        for row in rows {
            deliveries.insert(
                (row.try_get("channel")?, row.try_get("state")?),
                row.try_get("n")?,
            );
        }
        Ok(Counts {
            open_incidents,
            deliveries,
            unprocessed_signals,
        })
    }

    async fn prune(&self, before: Timestamp) -> Result<PruneReport> {
        // Small batches keep the write lock short: ingest goes on while old rows go.
        let in_batches = |sql: &'static str| async move {
            let mut total = 0;
            loop {
                let done = sqlx::query(sql)
                    .bind(ms(before))
                    .execute(&self.writer)
                    .await?
                    .rows_affected();
                total += done;
                if done == 0 {
                    return Ok::<u64, StoreError>(total);
                }
            }
        };
        Ok(PruneReport {
            signals: in_batches(
                "DELETE FROM signals WHERE id IN (
                    SELECT id FROM signals WHERE processed_at IS NOT NULL AND received_at < $1 LIMIT 5000)",
            )
            .await?,
            deliveries: in_batches(
                "DELETE FROM deliveries WHERE id IN (
                    SELECT d.id FROM deliveries d JOIN incidents i ON i.id = d.incident_id
                    WHERE d.state IN ('sent', 'failed', 'gone', 'cancelled') AND d.created_at < $1
                      AND i.resolved_at IS NOT NULL
                    LIMIT 5000)",
            )
            .await?,
        })
    }

    async fn lead(
        &self,
        duty: &str,
        holder: &str,
        now: Timestamp,
        until: Timestamp,
    ) -> Result<bool> {
        // Inserted, renewed, or taken over once run out: a row comes back only for the holder.
        // On SQLite the exclusive lock file already proves that no other process runs, so a
        // lease left by a killed process is taken over at once instead of waited out.
        let statement = match self.dialect {
            Dialect::Postgres => {
                "INSERT INTO leases (name, holder, until) VALUES ($1, $2, $3)
                 ON CONFLICT (name) DO UPDATE SET holder = excluded.holder, until = excluded.until
                 WHERE leases.until < $4 OR leases.holder = excluded.holder
                 RETURNING holder"
            }
            Dialect::Sqlite => {
                "INSERT INTO leases (name, holder, until) VALUES ($1, $2, $3)
                 ON CONFLICT (name) DO UPDATE SET holder = excluded.holder, until = excluded.until
                 RETURNING holder"
            }
        };
        let query = sqlx::query(statement)
            .bind(duty)
            .bind(holder)
            .bind(ms(until));
        let query = match self.dialect {
            Dialect::Postgres => query.bind(ms(now)),
            Dialect::Sqlite => query,
        };
        let row = query.fetch_optional(&self.writer).await?;
        Ok(row.is_some())
    }

    async fn resign(&self, duty: &str, holder: &str) -> Result<()> {
        sqlx::query("DELETE FROM leases WHERE name = $1 AND holder = $2")
            .bind(duty)
            .bind(holder)
            .execute(&self.writer)
            .await?;
        Ok(())
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
        sqlx::query(
            "UPDATE deliveries SET report_status = $2, report_error = $3, report_at = $4
             WHERE id = $1 AND (report_status IS NULL
               OR report_status NOT IN ('delivered', 'undelivered', 'failed', 'expired', 'rejected', 'read'))",
        )
        .bind(id)
        .bind(&report.status)
        .bind(&report.error)
        .bind(ms(report.at))
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(true)
    }

    async fn announce(&self, topic: Topic) {
        if self.dialect != Dialect::Postgres {
            return;
        }
        let sent = sqlx::query("SELECT pg_notify('banditore', $1)")
            .bind(format!("{}:{}", topic.as_str(), self.voice))
            .execute(&self.writer)
            .await;
        if let Err(e) = sent {
            // Others still poll: a lost wake-up only costs them a poll interval.
            tracing::debug!(error = %e, topic = topic.as_str(), "cannot notify other replicas");
        }
    }

    async fn wakeups(&self) -> Result<Option<Wakeups>> {
        match &self.listen_url {
            Some(url) => Ok(Some(super::postgres::listen(url, &self.voice).await?)),
            None => Ok(None),
        }
    }

    async fn subscribers(&self) -> Result<Vec<SubscriberRow>> {
        let mut conn = self.reader.acquire().await?;
        load_subscribers(&mut conn, None).await
    }

    async fn subscriber(&self, id: i64) -> Result<Option<SubscriberRow>> {
        let mut conn = self.reader.acquire().await?;
        Ok(load_subscribers(&mut conn, Some(id))
            .await?
            .into_iter()
            .next())
    }

    async fn create_subscriber(&self, s: &ValidSubscriber, now: Timestamp) -> Result<i64> {
        let mut tx = self.write().await?;
        let id = insert_subscriber(&mut tx, s, "api", now).await?;
        bump_subscribers_version(&mut tx).await?;
        tx.commit().await?;
        Ok(id)
    }

    async fn delete_subscriber(&self, id: i64) -> Result<DeleteOutcome> {
        let mut tx = self.write().await?;
        let origin: Option<String> =
            sqlx::query_scalar("SELECT origin FROM subscribers WHERE id = $1")
                .bind(id)
                .fetch_optional(&mut *tx)
                .await?;
        match origin.as_deref() {
            None => return Ok(DeleteOutcome::NotFound),
            Some("config") => return Ok(DeleteOutcome::ManagedByConfig),
            Some(_) => {}
        }
        let cancelled = sqlx::query(
            "UPDATE deliveries SET state = 'cancelled', last_error = 'subscriber deleted'
             WHERE state = 'pending' AND address_id IN (SELECT id FROM addresses WHERE subscriber_id = $1)",
        )
        .bind(id)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        erase_delivered_addresses(
            &mut tx,
            "SELECT id FROM addresses WHERE subscriber_id = $1",
            id,
        )
        .await?;
        let addresses: Vec<i64> =
            sqlx::query_scalar("SELECT id FROM addresses WHERE subscriber_id = $1")
                .bind(id)
                .fetch_all(&mut *tx)
                .await?;
        for address in addresses {
            forget_in_drafts(&mut tx, address).await?;
        }
        sqlx::query("DELETE FROM subscribers WHERE id = $1")
            .bind(id)
            .execute(&mut *tx)
            .await?;
        bump_subscribers_version(&mut tx).await?;
        tx.commit().await?;
        Ok(DeleteOutcome::Deleted {
            cancelled_deliveries: cancelled,
        })
    }

    async fn sync_config_subscribers(
        &self,
        wanted: &[ValidSubscriber],
        now: Timestamp,
    ) -> Result<SyncReport> {
        let mut tx = self.write().await?;
        if self.dialect == Dialect::Postgres {
            // Replicas starting together take turns: each sees the others' rows.
            sqlx::query("SELECT pg_advisory_xact_lock(7261001)")
                .execute(&mut *tx)
                .await?;
        }
        let existing: Vec<(i64, String)> =
            sqlx::query_as("SELECT id, name FROM subscribers WHERE origin = 'config'")
                .fetch_all(&mut *tx)
                .await?;
        let by_name: std::collections::HashMap<&str, i64> = existing
            .iter()
            .map(|(id, name)| (name.as_str(), *id))
            .collect();
        let wanted_names: std::collections::HashSet<&str> =
            wanted.iter().map(|s| s.name.as_str()).collect();
        let mut report = SyncReport::default();
        for s in wanted {
            match by_name.get(s.name.as_str()) {
                Some(id) => {
                    // Only a subscriber that differs from the file counts as updated: every
                    // start syncs them all.
                    let parts = insert_subscriber_parts(&mut tx, *id, s, true).await?;
                    let updated = sqlx::query(
                        "UPDATE subscribers SET language = $2, audience = $3, updated_at = $4
                         WHERE id = $1 AND ($5 = 1 OR language <> $2 OR audience <> $3)",
                    )
                    .bind(id)
                    .bind(s.language.as_str())
                    .bind(&s.audience)
                    .bind(ms(now))
                    .bind(i64::from(parts))
                    .execute(&mut *tx)
                    .await?
                    .rows_affected();
                    report.updated += updated;
                }
                None => {
                    insert_subscriber(&mut tx, s, "config", now).await?;
                    report.created += 1;
                }
            }
        }
        for (id, name) in &existing {
            if !wanted_names.contains(name.as_str()) {
                sqlx::query(
                    "UPDATE deliveries SET state = 'cancelled', last_error = 'subscriber removed from the configuration'
                     WHERE state = 'pending' AND address_id IN (SELECT id FROM addresses WHERE subscriber_id = $1)",
                )
                .bind(id)
                .execute(&mut *tx)
                .await?;
                sqlx::query("DELETE FROM subscribers WHERE id = $1")
                    .bind(id)
                    .execute(&mut *tx)
                    .await?;
                report.removed += 1;
            }
        }
        bump_subscribers_version(&mut tx).await?;
        tx.commit().await?;
        Ok(report)
    }

    async fn address(&self, id: i64) -> Result<Option<AddressOwner>> {
        let sql = format!(
            "SELECT {ADDRESS_COLUMNS}, s.name, s.language
             FROM addresses a JOIN subscribers s ON s.id = a.subscriber_id WHERE a.id = $1"
        );
        let row = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(id)
            .fetch_optional(&self.reader)
            .await?;
        row.map(|row| {
            let language: String = row.try_get("language")?;
            Ok(AddressOwner {
                address: address_from_row(&row)?,
                subscriber_id: row.try_get("subscriber_id")?,
                subscriber_name: row.try_get("name")?,
                language: Language::try_from(language).map_err(StoreError::Corrupt)?,
            })
        })
        .transpose()
    }

    async fn unsubscribe_address(&self, id: i64, now: Timestamp) -> Result<bool> {
        let mut tx = self.write().await?;
        let found = sqlx::query(
            "UPDATE addresses SET unsubscribed_at = COALESCE(unsubscribed_at, $2) WHERE id = $1",
        )
        .bind(id)
        .bind(ms(now))
        .execute(&mut *tx)
        .await?
        .rows_affected()
            > 0;
        if found {
            cancel_address_deliveries(&mut tx, id, "recipient unsubscribed").await?;
            bump_subscribers_version(&mut tx).await?;
        }
        tx.commit().await?;
        Ok(found)
    }
}

pub struct SqlTx {
    tx: Transaction<'static, Any>,
    dialect: Dialect,
}

#[async_trait]
impl Tx for SqlTx {
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

    async fn mark_signals(
        &mut self,
        ids: &[i64],
        now: Timestamp,
        outcome: &str,
        incident_id: Option<i64>,
    ) -> Result<()> {
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "UPDATE signals SET processed_at = $2, outcome = $3, incident_id = $4 WHERE id IN ({})",
            self.dialect.ids()
        )))
        .bind(json(&ids)?)
        .bind(ms(now))
        .bind(outcome)
        .bind(incident_id)
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

    async fn open_incident_by_key(&mut self, key: &str) -> Result<Option<IncidentRow>> {
        let sql = format!(
            "SELECT {INCIDENT_COLUMNS} FROM incidents WHERE group_key = $1 AND resolved_at IS NULL {}",
            self.dialect.pick("", "FOR UPDATE")
        );
        let row = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(key)
            .fetch_optional(&mut *self.tx)
            .await?;
        row.as_ref().map(incident_from_row).transpose()
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

    async fn save_alert(&mut self, a: &AlertRow) -> Result<()> {
        sqlx::query(
            "INSERT INTO alerts (incident_id, fingerprint, source, firing, severity, peak_severity, service, component,
                                 labels, annotations, summary, url, starts_at, first_seen_at, last_seen_at, resolved_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16)
             ON CONFLICT (incident_id, fingerprint) DO UPDATE SET
                firing = excluded.firing, severity = excluded.severity, peak_severity = excluded.peak_severity,
                service = excluded.service, component = excluded.component, labels = excluded.labels,
                annotations = excluded.annotations, summary = excluded.summary, url = excluded.url,
                starts_at = excluded.starts_at, last_seen_at = excluded.last_seen_at, resolved_at = excluded.resolved_at",
        )
        .bind(a.incident_id)
        .bind(&a.fingerprint)
        .bind(a.source.as_str())
        .bind(i64::from(a.firing))
        .bind(a.severity.as_str())
        .bind(a.peak_severity.as_str())
        .bind(&a.service)
        .bind(&a.component)
        .bind(json(&a.labels)?)
        .bind(json(&a.annotations)?)
        .bind(&a.summary)
        .bind(&a.url)
        .bind(opt_ms(a.starts_at))
        .bind(ms(a.first_seen_at))
        .bind(ms(a.last_seen_at))
        .bind(opt_ms(a.resolved_at))
        .execute(&mut *self.tx)
        .await?;
        Ok(())
    }

    async fn alerts(&mut self, incident_id: i64) -> Result<Vec<AlertRow>> {
        let rows = sqlx::query("SELECT * FROM alerts WHERE incident_id = $1 ORDER BY id")
            .bind(incident_id)
            .fetch_all(&mut *self.tx)
            .await?;
        rows.iter().map(alert_from_row).collect()
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

    async fn next_eval_at(&mut self) -> Result<Option<Timestamp>> {
        let v: Option<i64> =
            sqlx::query_scalar("SELECT MIN(eval_at) FROM incidents WHERE eval_at IS NOT NULL")
                .fetch_one(&mut *self.tx)
                .await?;
        opt_ts(v)
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
        let v: Option<String> =
            sqlx::query_scalar("SELECT value FROM settings WHERE key = 'subscribers_version'")
                .fetch_optional(&mut *self.tx)
                .await?;
        Ok(v.and_then(|v| v.parse().ok()).unwrap_or(0))
    }

    async fn subscribers(&mut self) -> Result<Vec<SubscriberRow>> {
        load_subscribers(&mut self.tx, None).await
    }

    async fn insert_message(&mut self, m: &NewMessage) -> Result<i64> {
        let id: i64 = sqlx::query_scalar(
            "INSERT INTO messages (update_id, channel, language, audience, subject, body, html, created_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
             ON CONFLICT (update_id, channel, language, audience) DO UPDATE SET update_id = excluded.update_id
             RETURNING id",
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
        Ok(id)
    }

    async fn insert_deliveries(&mut self, new: &[NewDelivery]) -> Result<u64> {
        insert_deliveries(&mut self.tx, self.dialect, new).await
    }

    async fn hold_for_approval(&mut self, part: &NewDraftPart) -> Result<i64> {
        super::draft_sql::hold(&mut self.tx, part).await
    }

    async fn notified_addresses(&mut self, incident_id: i64) -> Result<Vec<(i64, ChannelKind)>> {
        let rows: Vec<(i64, String)> = sqlx::query_as(
            "SELECT DISTINCT address_id, channel FROM deliveries
             WHERE incident_id = $1 AND address_id IS NOT NULL AND state != 'cancelled'",
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

/// Adds deliveries, pending now; those already there (same update, channel, recipient) stay.
pub(super) async fn insert_deliveries(
    tx: &mut Transaction<'static, Any>,
    dialect: Dialect,
    new: &[NewDelivery],
) -> Result<u64> {
    let mut inserted = 0;
    for chunk in new.chunks(80) {
        let sql = format!(
            "INSERT INTO deliveries (message_id, update_id, incident_id, address_id, subscriber_name, channel,
                                     recipient, state, next_attempt_at, origin_at, created_at)
             VALUES {} ON CONFLICT (update_id, channel, recipient) DO NOTHING",
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
