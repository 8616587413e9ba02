//! [`SubscriberStore`] over the SQL store, and the subscriber reads and writes the other parts
//! reuse: loading subscribers with their addresses, writing subscriptions, cancelling and erasing
//! an address's deliveries, and the version number the router's cache follows.

use std::collections::BTreeMap;

use async_trait::async_trait;
use jiff::Timestamp;
use sqlx::{Any, Row, Transaction};

use super::db::{self, Db};
use super::dialect::Dialect;
use super::rows::{ADDRESS_COLUMNS, address_from_row, from_json, json, ms, parse, ts};
use super::sql::SqlStore;
use super::{
    AddressOwner, DeleteOutcome, EditOutcome, Result, ServiceMode, StoreError, SubscriberDelivery,
    SubscriberEdit, SubscriberFilter, SubscriberOrigin, SubscriberPage, SubscriberRow,
    SubscriberStore, SyncReport,
};
use crate::domain::Matcher;
use crate::domain::escalation::{EscalationPolicy, EscalationStepSpec};
use crate::domain::subscriber::{ChannelKind, Language, Subscription, ValidSubscriber};

/// Which subscribers a load reads: every one, one, or those of a page.
pub(super) enum Which<'a> {
    All,
    /// Every subscriber but the citizens, who may be a region's worth.
    NotCitizens,
    One(i64),
    Ids(Dialect, &'a [i64]),
}

impl Which<'_> {
    /// The condition on `column` (a subscriber id), over at most one parameter, `$1`.
    fn condition(&self, column: &str) -> String {
        match self {
            Which::All => "1 = 1".to_owned(),
            Which::NotCitizens => {
                format!("{column} IN (SELECT id FROM subscribers WHERE citizen_services IS NULL)")
            }
            Which::One(_) => format!("{column} = $1"),
            Which::Ids(dialect, _) => format!("{column} IN ({})", dialect.ids()),
        }
    }

    /// `sql` with this selection's parameter bound.
    fn query(&self, sql: String) -> Result<db::Query> {
        let query = db::query(sql);
        Ok(match self {
            Which::All | Which::NotCitizens => query,
            Which::One(id) => query.bind(*id),
            Which::Ids(_, ids) => query.bind(json(ids)?),
        })
    }
}

/// The services addresses follow or muted, for the addresses of the subscribers selected.
pub(super) async fn load_services(
    conn: &mut Db<'_>,
    which: &Which<'_>,
) -> Result<BTreeMap<i64, BTreeMap<String, ServiceMode>>> {
    let rows = which
        .query(format!(
            "SELECT s.address_id, s.service, s.mode FROM address_services s
             JOIN addresses a ON a.id = s.address_id WHERE {}",
            which.condition("a.subscriber_id")
        ))?
        .fetch_all(conn)
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

/// Loads subscribers with their addresses and subscriptions, from any executor.
pub(super) async fn load_subscribers(
    conn: &mut Db<'_>,
    only: Option<i64>,
) -> Result<Vec<SubscriberRow>> {
    load_which(conn, &only.map_or(Which::All, Which::One)).await
}

/// Loads the subscribers selected, by id, with their addresses and subscriptions.
pub(super) async fn load_which(conn: &mut Db<'_>, which: &Which<'_>) -> Result<Vec<SubscriberRow>> {
    let rows = which
        .query(format!(
            "SELECT id, name, language, audience, origin, created_at, citizen_services, escalation FROM subscribers WHERE {} ORDER BY id",
            which.condition("id")
        ))?
        .fetch_all(conn)
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
        let escalation: Option<String> = row.try_get("escalation")?;
        let escalation = escalation.map(|e| read_escalation(&e)).transpose()?;
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
                escalation,
            },
        );
    }
    if out.is_empty() {
        return Ok(Vec::new());
    }
    let sql = format!(
        "SELECT {ADDRESS_COLUMNS} FROM addresses a WHERE {} ORDER BY a.id",
        which.condition("a.subscriber_id")
    );
    let rows = which.query(sql)?.fetch_all(conn).await?;
    let mut services = load_services(conn, which).await?;
    for row in rows {
        let sid: i64 = row.try_get("subscriber_id")?;
        if let Some(s) = out.get_mut(&sid) {
            let mut address = address_from_row(&row)?;
            address.services = services.remove(&address.id).unwrap_or_default();
            s.addresses.push(address);
        }
    }
    let rows = which
        .query(format!(
            "SELECT subscriber_id, matchers, min_severity, channels FROM subscriptions WHERE {} ORDER BY subscriber_id, position",
            which.condition("subscriber_id")
        ))?
        .fetch_all(conn)
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

/// The subscribers' version (0 before the first change).
pub(super) async fn subscribers_version(conn: &mut Db<'_>) -> Result<i64> {
    let version: Option<String> =
        db::query_scalar("SELECT value FROM settings WHERE key = 'subscribers_version'")
            .fetch_optional(conn)
            .await?;
    Ok(version.and_then(|v| v.parse().ok()).unwrap_or(0))
}

pub(super) async fn bump_subscribers_version(db: &mut Db<'_>) -> Result<()> {
    db::query(
        "INSERT INTO settings (key, value) VALUES ('subscribers_version', '1')
         ON CONFLICT (key) DO UPDATE SET value = CAST(CAST(settings.value AS BIGINT) + 1 AS TEXT)",
    )
    .execute(db)
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

/// A stored escalation policy, checked again as it is read.
fn read_escalation(text: &str) -> Result<EscalationPolicy> {
    let specs: Vec<EscalationStepSpec> = from_json(text, "escalation")?;
    EscalationPolicy::parse(&specs, "escalation").map_err(|errors| {
        StoreError::Corrupt(format!(
            "escalation `{text}`: {}",
            errors
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join("; ")
        ))
    })
}

/// Stores a subscriber's own escalation policy, unless it is the one already stored; true when
/// it changed.
pub(super) async fn write_escalation(
    tx: &mut Transaction<'static, Any>,
    id: i64,
    policy: Option<&EscalationPolicy>,
) -> Result<bool> {
    let wanted = policy.map(|p| json(&p.specs())).transpose()?;
    let stored: Option<Option<String>> =
        sqlx::query_scalar("SELECT escalation FROM subscribers WHERE id = $1")
            .bind(id)
            .fetch_optional(&mut **tx)
            .await?;
    if stored.flatten() == wanted {
        return Ok(false);
    }
    sqlx::query("UPDATE subscribers SET escalation = $2 WHERE id = $1")
        .bind(id)
        .bind(wanted)
        .execute(&mut **tx)
        .await?;
    Ok(true)
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
    changed |= write_escalation(tx, id, s.escalation.as_ref()).await?;
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
    // Citizens are counted, not listed, in the parts waiting for a decision: one fewer now, in
    // the parts of its channel and language held since it subscribed.
    sqlx::query(
        "UPDATE draft_parts SET citizens = citizens - 1
         WHERE state = 'pending' AND citizens > 0 AND id IN (
             SELECT p.id FROM draft_parts p, addresses a JOIN subscribers s ON s.id = a.subscriber_id
             WHERE a.id = $1 AND s.citizen_services IS NOT NULL
               AND a.unsubscribed_at IS NULL AND a.gone_at IS NULL
               AND p.state = 'pending' AND p.citizens_through >= s.id
               AND p.channel = a.channel AND p.language = COALESCE(a.language, s.language))",
    )
    .bind(address_id)
    .execute(&mut **tx)
    .await?;
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
impl SubscriberStore for SqlStore {
    async fn subscribers(&self) -> Result<Vec<SubscriberRow>> {
        let mut conn = self.reader.acquire().await?;
        load_subscribers(&mut Db::Sqlx(&mut conn), None).await
    }

    async fn subscribers_version(&self) -> Result<i64> {
        subscribers_version(&mut Db::Sqlx(&mut *self.reader.acquire().await?)).await
    }

    async fn desks(&self) -> Result<(i64, Vec<SubscriberRow>)> {
        let mut conn = self.reader.acquire().await?;
        let version = subscribers_version(&mut Db::Sqlx(&mut conn)).await?;
        Ok((
            version,
            load_which(&mut Db::Sqlx(&mut conn), &Which::NotCitizens).await?,
        ))
    }

    async fn subscriber(&self, id: i64) -> Result<Option<SubscriberRow>> {
        let mut conn = self.reader.acquire().await?;
        Ok(load_subscribers(&mut Db::Sqlx(&mut conn), Some(id))
            .await?
            .into_iter()
            .next())
    }

    async fn subscriber_page(&self, filter: &SubscriberFilter) -> Result<SubscriberPage> {
        self.page_of_subscribers(filter).await
    }

    async fn count_subscribers(&self, filter: &SubscriberFilter) -> Result<u64> {
        self.count_of_subscribers(filter).await
    }

    async fn edit_subscriber(
        &self,
        id: i64,
        edit: &SubscriberEdit,
        now: Timestamp,
    ) -> Result<EditOutcome> {
        self.edit(id, edit, now).await
    }

    async fn subscriber_deliveries(&self, id: i64, limit: u32) -> Result<Vec<SubscriberDelivery>> {
        self.deliveries_of_subscriber(id, limit).await
    }

    async fn create_subscriber(&self, s: &ValidSubscriber, now: Timestamp) -> Result<i64> {
        let mut tx = self.write().await?;
        let id = insert_subscriber(&mut tx, s, "api", now).await?;
        bump_subscribers_version(&mut Db::tx(&mut tx)).await?;
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
        bump_subscribers_version(&mut Db::tx(&mut tx)).await?;
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
        bump_subscribers_version(&mut Db::tx(&mut tx)).await?;
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
            bump_subscribers_version(&mut Db::tx(&mut tx)).await?;
        }
        tx.commit().await?;
        Ok(found)
    }

    async fn audience_addresses(
        &self,
        audience: &str,
    ) -> Result<Vec<(ChannelKind, String, String)>> {
        let rows: Vec<(String, String, String)> = sqlx::query_as(
            "SELECT a.channel, a.address, s.name FROM addresses a JOIN subscribers s ON s.id = a.subscriber_id
             WHERE s.audience = $1 AND a.unsubscribed_at IS NULL AND a.gone_at IS NULL
             ORDER BY a.id",
        )
        .bind(audience)
        .fetch_all(&self.reader)
        .await?;
        rows.into_iter()
            .map(|(c, a, s)| Ok((parse(&c, "channel")?, a, s)))
            .collect()
    }
}
