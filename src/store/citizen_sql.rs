//! [`CitizenStore`] over the SQL store.

use async_trait::async_trait;
use jiff::Timestamp;
use sqlx::{Any, Row, Transaction};

use super::citizen::{CitizenPlan, CitizenPrune, CitizenStore, NewSignup, Signup};
use super::db::Db;
use super::dialect::Dialect;
use super::rows::{ms, opt_ts, parse, ts};
use super::sql::SqlStore;
use super::subscriber_sql::{
    bump_subscribers_version, cancel_address_deliveries, erase_delivered_addresses,
    forget_in_drafts, insert_subscriber, write_subscriptions,
};
use super::{Result, StoreError};
use crate::domain::subscriber::{ChannelKind, Language, ValidSubscriber};

fn json<T: serde::Serialize>(value: &T) -> Result<String> {
    serde_json::to_string(value).map_err(|e| StoreError::Corrupt(e.to_string()))
}

/// Erases one address in `tx` (see [`CitizenStore::erase_address`]).
pub(super) async fn erase(tx: &mut Transaction<'static, Any>, address_id: i64) -> Result<bool> {
    let owner: Option<(i64, Option<String>)> = sqlx::query_as(
        "SELECT s.id, s.citizen_services FROM addresses a JOIN subscribers s ON s.id = a.subscriber_id
         WHERE a.id = $1",
    )
    .bind(address_id)
    .fetch_optional(&mut **tx)
    .await?;
    let Some((subscriber, citizen)) = owner else {
        return Ok(false);
    };
    cancel_address_deliveries(tx, address_id, "address erased").await?;
    erase_delivered_addresses(tx, "SELECT $1", address_id).await?;
    forget_in_drafts(tx, address_id).await?;
    sqlx::query("DELETE FROM addresses WHERE id = $1")
        .bind(address_id)
        .execute(&mut **tx)
        .await?;
    if citizen.is_some() {
        sqlx::query(
            "DELETE FROM subscribers WHERE id = $1
             AND NOT EXISTS (SELECT 1 FROM addresses WHERE subscriber_id = $1)",
        )
        .bind(subscriber)
        .execute(&mut **tx)
        .await?;
    }
    bump_subscribers_version(&mut Db::tx(tx)).await?;
    Ok(true)
}

async fn write_citizen(
    tx: &mut Transaction<'static, Any>,
    subscriber_id: i64,
    plan: &CitizenPlan,
) -> Result<bool> {
    let found = sqlx::query(
        "UPDATE subscribers SET name = $2, language = $3, citizen_services = $4
         WHERE id = $1 AND citizen_services IS NOT NULL",
    )
    .bind(subscriber_id)
    .bind(&plan.name)
    .bind(plan.language.as_str())
    .bind(json(&plan.services)?)
    .execute(&mut **tx)
    .await?
    .rows_affected()
        > 0;
    if found {
        write_subscriptions(tx, subscriber_id, &plan.subscriptions).await?;
        bump_subscribers_version(&mut Db::tx(tx)).await?;
    }
    Ok(found)
}

async fn insert_citizen(
    tx: &mut Transaction<'static, Any>,
    plan: &CitizenPlan,
    addresses: Vec<(ChannelKind, String)>,
    now: Timestamp,
) -> Result<i64> {
    let valid = ValidSubscriber {
        name: plan.name.clone(),
        language: plan.language.clone(),
        audience: "public".to_owned(),
        addresses,
        subscriptions: plan.subscriptions.clone(),
        escalation: None,
    };
    let id = insert_subscriber(tx, &valid, "api", now).await?;
    sqlx::query("UPDATE subscribers SET citizen_services = $2 WHERE id = $1")
        .bind(id)
        .bind(json(&plan.services)?)
        .execute(&mut **tx)
        .await?;
    bump_subscribers_version(&mut Db::tx(tx)).await?;
    Ok(id)
}

#[async_trait]
impl CitizenStore for SqlStore {
    async fn create_signup(
        &self,
        new: &NewSignup,
        since: Timestamp,
        max: u32,
    ) -> Result<Option<i64>> {
        let mut tx = self.write().await?;
        if self.dialect == Dialect::Postgres {
            sqlx::query("SELECT pg_advisory_xact_lock(hashtext('signup:' || $1))")
                .bind(&new.address_key)
                .execute(&mut *tx)
                .await?;
        }
        let recent: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM signups WHERE address_key = $1 AND created_at >= $2",
        )
        .bind(&new.address_key)
        .bind(ms(since))
        .fetch_one(&mut *tx)
        .await?;
        if recent >= i64::from(max) {
            return Ok(None);
        }
        let id: i64 = sqlx::query_scalar(
            "INSERT INTO signups (token_sha256, channel, address, address_key, language, services,
                                  code_sha256, replaces, created_at, expires_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) RETURNING id",
        )
        .bind(&new.token_sha256)
        .bind(new.channel.as_str())
        .bind(&new.address)
        .bind(&new.address_key)
        .bind(new.language.as_str())
        .bind(json(&new.services)?)
        .bind(new.code_sha256.as_deref())
        .bind(new.replaces)
        .bind(ms(new.created_at))
        .bind(ms(new.expires_at))
        .fetch_one(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(Some(id))
    }

    async fn signup(&self, token_sha256: &str) -> Result<Option<Signup>> {
        let row = sqlx::query(
            "SELECT id, channel, address, language, services, code_sha256, attempts, replaces,
                    expires_at, used_at
             FROM signups WHERE token_sha256 = $1",
        )
        .bind(token_sha256)
        .fetch_optional(&self.reader)
        .await?;
        let Some(row) = row else { return Ok(None) };
        let language: String = row.try_get("language")?;
        let services: String = row.try_get("services")?;
        Ok(Some(Signup {
            id: row.try_get("id")?,
            channel: parse(row.try_get::<&str, _>("channel")?, "channel")?,
            address: row.try_get("address")?,
            language: Language::try_from(language).map_err(StoreError::Corrupt)?,
            services: serde_json::from_str(&services)
                .map_err(|e| StoreError::Corrupt(format!("signup services: {e}")))?,
            code_sha256: row.try_get("code_sha256")?,
            attempts: row.try_get::<i64, _>("attempts")?.max(0) as u32,
            replaces: row.try_get("replaces")?,
            expires_at: ts(row.try_get("expires_at")?)?,
            used_at: opt_ts(row.try_get("used_at")?)?,
        }))
    }

    async fn signup_attempt(&self, id: i64, max: u32) -> Result<Option<u32>> {
        let mut tx = self.write().await?;
        let n: Option<i64> = sqlx::query_scalar(
            "UPDATE signups SET attempts = attempts + 1
             WHERE id = $1 AND attempts < $2 AND used_at IS NULL RETURNING attempts",
        )
        .bind(id)
        .bind(i64::from(max))
        .fetch_optional(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(n.map(|n| n.max(0) as u32))
    }

    async fn confirm_signup(
        &self,
        id: i64,
        plan: &CitizenPlan,
        now: Timestamp,
    ) -> Result<Option<i64>> {
        let mut tx = self.write().await?;
        let lock = self.dialect.pick("", "FOR UPDATE");
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT channel, address, replaces FROM signups
             WHERE id = $1 AND used_at IS NULL AND expires_at >= $2 {lock}"
        )))
        .bind(id)
        .bind(ms(now))
        .fetch_optional(&mut *tx)
        .await?;
        let Some(row) = row else { return Ok(None) };
        let channel: ChannelKind = parse(row.try_get::<&str, _>("channel")?, "channel")?;
        let Some(address): Option<String> = row.try_get("address")? else {
            return Ok(None);
        };
        let replaces: Option<i64> = row.try_get("replaces")?;
        sqlx::query("UPDATE signups SET used_at = $2, address = NULL WHERE id = $1")
            .bind(id)
            .bind(ms(now))
            .execute(&mut *tx)
            .await?;
        if self.dialect == Dialect::Postgres {
            // Two confirmations for one address on two replicas would each see it missing.
            sqlx::query("SELECT pg_advisory_xact_lock(hashtext('citizen:' || $1 || ':' || $2))")
                .bind(channel.as_str())
                .bind(&address)
                .execute(&mut *tx)
                .await?;
        }
        let existing: Option<(i64, i64)> = sqlx::query_as(
            "SELECT a.id, s.id FROM addresses a JOIN subscribers s ON s.id = a.subscriber_id
             WHERE a.channel = $1 AND a.address = $2 AND s.citizen_services IS NOT NULL
             ORDER BY a.id LIMIT 1",
        )
        .bind(channel.as_str())
        .bind(&address)
        .fetch_optional(&mut *tx)
        .await?;
        let address_id = match existing {
            Some((address_id, subscriber_id)) => {
                write_citizen(&mut tx, subscriber_id, plan).await?;
                sqlx::query(
                    "UPDATE addresses SET unsubscribed_at = NULL, gone_at = NULL, gone_reason = NULL
                     WHERE id = $1",
                )
                .bind(address_id)
                .execute(&mut *tx)
                .await?;
                address_id
            }
            None => {
                let subscriber =
                    insert_citizen(&mut tx, plan, vec![(channel, address.clone())], now).await?;
                sqlx::query_scalar("SELECT id FROM addresses WHERE subscriber_id = $1")
                    .bind(subscriber)
                    .fetch_one(&mut *tx)
                    .await?
            }
        };
        if let Some(old) = replaces.filter(|old| *old != address_id) {
            erase(&mut tx, old).await?;
        }
        tx.commit().await?;
        Ok(Some(address_id))
    }

    async fn create_citizen(
        &self,
        plan: &CitizenPlan,
        token_sha256: &str,
        expires_at: Timestamp,
        replaces: Option<i64>,
        now: Timestamp,
    ) -> Result<i64> {
        let mut tx = self.write().await?;
        let id = insert_citizen(&mut tx, plan, Vec::new(), now).await?;
        sqlx::query(
            "INSERT INTO chat_invites (token_sha256, subscriber_id, channel, created_by, created_at,
                                       expires_at, replaces)
             VALUES ($1, $2, 'telegram', 'status page', $3, $4, $5)",
        )
        .bind(token_sha256)
        .bind(id)
        .bind(ms(now))
        .bind(ms(expires_at))
        .bind(replaces)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(id)
    }

    async fn set_citizen(&self, subscriber_id: i64, plan: &CitizenPlan) -> Result<bool> {
        let mut tx = self.write().await?;
        let found = write_citizen(&mut tx, subscriber_id, plan).await?;
        tx.commit().await?;
        Ok(found)
    }

    async fn erase_address(&self, address_id: i64) -> Result<bool> {
        let mut tx = self.write().await?;
        let found = erase(&mut tx, address_id).await?;
        tx.commit().await?;
        Ok(found)
    }

    async fn prune_citizens(
        &self,
        now: Timestamp,
        counted_since: Timestamp,
        unsubscribed_before: Timestamp,
        unbound_before: Timestamp,
    ) -> Result<CitizenPrune> {
        let mut tx = self.write().await?;
        sqlx::query(
            "UPDATE signups SET address = NULL WHERE expires_at < $1 AND address IS NOT NULL",
        )
        .bind(ms(now))
        .execute(&mut *tx)
        .await?;
        let signups = sqlx::query("DELETE FROM signups WHERE expires_at < $1 AND created_at < $2")
            .bind(ms(now))
            .bind(ms(counted_since))
            .execute(&mut *tx)
            .await?
            .rows_affected();
        let leaving: Vec<i64> = sqlx::query_scalar(
            "SELECT a.id FROM addresses a JOIN subscribers s ON s.id = a.subscriber_id
             WHERE s.citizen_services IS NOT NULL
               AND (a.unsubscribed_at < $1 OR a.gone_at < $1)",
        )
        .bind(ms(unsubscribed_before))
        .fetch_all(&mut *tx)
        .await?;
        let mut addresses = 0;
        for id in leaving {
            addresses += u64::from(erase(&mut tx, id).await?);
        }
        let subscribers = sqlx::query(
            "DELETE FROM subscribers WHERE citizen_services IS NOT NULL AND created_at < $1
             AND NOT EXISTS (SELECT 1 FROM addresses a WHERE a.subscriber_id = subscribers.id)",
        )
        .bind(ms(unbound_before))
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if subscribers > 0 {
            bump_subscribers_version(&mut Db::tx(&mut tx)).await?;
        }
        tx.commit().await?;
        Ok(CitizenPrune {
            signups,
            addresses,
            subscribers,
        })
    }
}
