//! [`ChatStore`] over the SQL store.

use async_trait::async_trait;
use jiff::Timestamp;
use sqlx::Row;
use sqlx::any::AnyRow;

use super::db::Db;
use super::dialect::Dialect;
use super::rows::{ADDRESS_COLUMNS, address_from_row, ms, ts};
use super::sql::SqlStore;
use super::subscriber_sql::{
    Which, bump_subscribers_version, cancel_address_deliveries, erase_delivered_addresses,
    forget_in_drafts, load_services,
};
use super::{AddressOrigin, ChatBinding, ChatStore, Redeemed, Result, ServiceMode, StoreError};
use crate::domain::subscriber::{ChannelKind, Language};

/// Address columns plus its subscriber's, for [`binding_from_row`].
fn binding_sql(filter: &str) -> String {
    format!(
        "SELECT {ADDRESS_COLUMNS}, s.name AS subscriber_name, s.language AS subscriber_language
         FROM addresses a JOIN subscribers s ON s.id = a.subscriber_id WHERE {filter}"
    )
}

fn binding_from_row(row: &AnyRow) -> Result<ChatBinding> {
    let language: String = row.try_get("subscriber_language")?;
    Ok(ChatBinding {
        address: address_from_row(row)?,
        subscriber_id: row.try_get("subscriber_id")?,
        subscriber_name: row.try_get("subscriber_name")?,
        subscriber_language: Language::try_from(language).map_err(StoreError::Corrupt)?,
    })
}

impl SqlStore {
    async fn binding(&self, address_id: i64) -> Result<Option<ChatBinding>> {
        let mut conn = self.reader.acquire().await?;
        let row = sqlx::query(sqlx::AssertSqlSafe(binding_sql("a.id = $1")))
            .bind(address_id)
            .fetch_optional(&mut *conn)
            .await?;
        let Some(row) = row else { return Ok(None) };
        let mut binding = binding_from_row(&row)?;
        let subscriber = Which::One(binding.subscriber_id);
        binding.address.services = load_services(&mut Db::Sqlx(&mut conn), &subscriber)
            .await?
            .remove(&address_id)
            .unwrap_or_default();
        Ok(Some(binding))
    }
}

#[async_trait]
impl ChatStore for SqlStore {
    async fn create_invite(
        &self,
        subscriber_id: i64,
        channel: ChannelKind,
        token_sha256: &str,
        created_by: &str,
        now: Timestamp,
        expires_at: Timestamp,
    ) -> Result<bool> {
        let mut tx = self.write().await?;
        let exists: Option<i64> = sqlx::query_scalar("SELECT id FROM subscribers WHERE id = $1")
            .bind(subscriber_id)
            .fetch_optional(&mut *tx)
            .await?;
        if exists.is_none() {
            return Ok(false);
        }
        sqlx::query(
            "INSERT INTO chat_invites (token_sha256, subscriber_id, channel, created_by, created_at, expires_at)
             VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(token_sha256)
        .bind(subscriber_id)
        .bind(channel.as_str())
        .bind(created_by)
        .bind(ms(now))
        .bind(ms(expires_at))
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(true)
    }

    async fn redeem_invite(
        &self,
        channel: ChannelKind,
        token_sha256: &str,
        chat: &str,
        now: Timestamp,
    ) -> Result<Redeemed> {
        let mut tx = self.write().await?;
        if self.dialect == Dialect::Postgres {
            // One redemption per chat at a time: two replicas handling two invites from the
            // same chat would otherwise both see it unbound. (SQLite has one writer.)
            sqlx::query("SELECT pg_advisory_xact_lock(hashtext($1 || ':' || $2))")
                .bind(channel.as_str())
                .bind(chat)
                .execute(&mut *tx)
                .await?;
        }
        let lock = self.dialect.pick("", "FOR UPDATE");
        let invite = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT id, subscriber_id, expires_at, used_at, used_by, replaces FROM chat_invites
             WHERE token_sha256 = $1 AND channel = $2 {lock}"
        )))
        .bind(token_sha256)
        .bind(channel.as_str())
        .fetch_optional(&mut *tx)
        .await?;
        let Some(invite) = invite else {
            return Ok(Redeemed::Unknown);
        };
        let invite_id: i64 = invite.try_get("id")?;
        let subscriber_id: i64 = invite.try_get("subscriber_id")?;
        let used_by: Option<String> = invite.try_get("used_by")?;
        let existing = sqlx::query(sqlx::AssertSqlSafe(binding_sql(
            "a.channel = $1 AND a.address = $2 ORDER BY a.id",
        )))
        .bind(channel.as_str())
        .bind(chat)
        .fetch_all(&mut *tx)
        .await?
        .iter()
        .map(binding_from_row)
        .collect::<Result<Vec<_>>>()?;
        if let Some(used_by) = used_by {
            // The same chat opening its invite again is not an error: it resumes, if stopped.
            return match existing.iter().find(|b| b.subscriber_id == subscriber_id) {
                Some(binding) if used_by == chat => {
                    let id = binding.address.id;
                    if !binding.address.is_active() {
                        sqlx::query(
                            "UPDATE addresses SET unsubscribed_at = NULL, gone_at = NULL, gone_reason = NULL WHERE id = $1",
                        )
                        .bind(id)
                        .execute(&mut *tx)
                        .await?;
                        bump_subscribers_version(&mut Db::tx(&mut tx)).await?;
                    }
                    tx.commit().await?;
                    Ok(self
                        .binding(id)
                        .await?
                        .map_or(Redeemed::AlreadyUsed, Redeemed::Bound))
                }
                _ => Ok(Redeemed::AlreadyUsed),
            };
        }
        if ts(invite.try_get("expires_at")?)? <= now {
            return Ok(Redeemed::Expired);
        }
        if let Some(other) = existing
            .iter()
            .find(|b| b.subscriber_id != subscriber_id && b.address.is_active())
        {
            return Ok(Redeemed::BoundElsewhere {
                subscriber_name: other.subscriber_name.clone(),
            });
        }
        // A chat that stopped following another subscriber moves to this one. Addresses an
        // administrator gave stay (stopped) where they are.
        for stale in existing
            .iter()
            .filter(|b| b.subscriber_id != subscriber_id && b.address.origin == AddressOrigin::Chat)
        {
            cancel_address_deliveries(
                &mut tx,
                stale.address.id,
                "chat moved to another subscriber",
            )
            .await?;
            // The chat's id leaves the old subscriber's history with it.
            erase_delivered_addresses(&mut tx, "SELECT $1", stale.address.id).await?;
            forget_in_drafts(&mut tx, stale.address.id).await?;
            sqlx::query("DELETE FROM addresses WHERE id = $1")
                .bind(stale.address.id)
                .execute(&mut *tx)
                .await?;
        }
        let address_id: i64 = match existing.iter().find(|b| b.subscriber_id == subscriber_id) {
            Some(own) => {
                sqlx::query(
                    "UPDATE addresses SET unsubscribed_at = NULL, gone_at = NULL, gone_reason = NULL WHERE id = $1",
                )
                .bind(own.address.id)
                .execute(&mut *tx)
                .await?;
                own.address.id
            }
            None => {
                sqlx::query_scalar(
                    "INSERT INTO addresses (subscriber_id, channel, address, origin) VALUES ($1, $2, $3, 'chat')
                     RETURNING id",
                )
                .bind(subscriber_id)
                .bind(channel.as_str())
                .bind(chat)
                .fetch_one(&mut *tx)
                .await?
            }
        };
        sqlx::query("UPDATE chat_invites SET used_at = $2, used_by = $3 WHERE id = $1")
            .bind(invite_id)
            .bind(ms(now))
            .bind(chat)
            .execute(&mut *tx)
            .await?;
        // A citizen moving to Telegram: the contact they leave goes once the chat is bound.
        let replaces: Option<i64> = invite.try_get("replaces")?;
        if let Some(old) = replaces.filter(|old| *old != address_id) {
            super::citizen_sql::erase(&mut tx, old).await?;
        }
        bump_subscribers_version(&mut Db::tx(&mut tx)).await?;
        tx.commit().await?;
        let binding = self.binding(address_id).await?.ok_or_else(|| {
            StoreError::Corrupt(format!("address {address_id} vanished after binding"))
        })?;
        Ok(Redeemed::Bound(binding))
    }

    async fn chat(&self, channel: ChannelKind, chat: &str) -> Result<Option<ChatBinding>> {
        let id: Option<i64> = sqlx::query_scalar(
            "SELECT id FROM addresses WHERE channel = $1 AND address = $2
             ORDER BY CASE WHEN unsubscribed_at IS NULL AND gone_at IS NULL THEN 0 ELSE 1 END, id LIMIT 1",
        )
        .bind(channel.as_str())
        .bind(chat)
        .fetch_optional(&self.reader)
        .await?;
        match id {
            Some(id) => self.binding(id).await,
            None => Ok(None),
        }
    }

    async fn set_address_stopped(
        &self,
        address_id: i64,
        stopped: bool,
        now: Timestamp,
    ) -> Result<()> {
        let mut tx = self.write().await?;
        if stopped {
            sqlx::query(
                "UPDATE addresses SET unsubscribed_at = COALESCE(unsubscribed_at, $2) WHERE id = $1",
            )
            .bind(address_id)
            .bind(ms(now))
            .execute(&mut *tx)
            .await?;
            cancel_address_deliveries(&mut tx, address_id, "the chat stopped the alerts").await?;
        } else {
            sqlx::query(
                "UPDATE addresses SET unsubscribed_at = NULL, gone_at = NULL, gone_reason = NULL WHERE id = $1",
            )
            .bind(address_id)
            .execute(&mut *tx)
            .await?;
        }
        bump_subscribers_version(&mut Db::tx(&mut tx)).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn set_address_language(
        &self,
        address_id: i64,
        language: Option<&Language>,
    ) -> Result<()> {
        let mut tx = self.write().await?;
        sqlx::query("UPDATE addresses SET language = $2 WHERE id = $1")
            .bind(address_id)
            .bind(language.map(Language::as_str))
            .execute(&mut *tx)
            .await?;
        bump_subscribers_version(&mut Db::tx(&mut tx)).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn set_address_service(
        &self,
        address_id: i64,
        service: &str,
        mode: Option<ServiceMode>,
    ) -> Result<()> {
        let mut tx = self.write().await?;
        match mode {
            None => {
                sqlx::query("DELETE FROM address_services WHERE address_id = $1 AND service = $2")
                    .bind(address_id)
                    .bind(service)
                    .execute(&mut *tx)
                    .await?;
            }
            Some(mode) => {
                sqlx::query(
                    "INSERT INTO address_services (address_id, service, mode) VALUES ($1, $2, $3)
                     ON CONFLICT (address_id, service) DO UPDATE SET mode = excluded.mode",
                )
                .bind(address_id)
                .bind(service)
                .bind(mode.as_str())
                .execute(&mut *tx)
                .await?;
            }
        }
        bump_subscribers_version(&mut Db::tx(&mut tx)).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn move_chat(&self, channel: ChannelKind, from: &str, to: &str) -> Result<u64> {
        let mut tx = self.write().await?;
        let moved =
            sqlx::query("UPDATE addresses SET address = $3 WHERE channel = $1 AND address = $2")
                .bind(channel.as_str())
                .bind(from)
                .bind(to)
                .execute(&mut *tx)
                .await?
                .rows_affected();
        sqlx::query(
            "UPDATE deliveries SET recipient = $3
             WHERE channel = $1 AND recipient = $2 AND state IN ('pending', 'sending')",
        )
        .bind(channel.as_str())
        .bind(from)
        .bind(to)
        .execute(&mut *tx)
        .await?;
        if moved > 0 {
            bump_subscribers_version(&mut Db::tx(&mut tx)).await?;
        }
        tx.commit().await?;
        Ok(moved)
    }

    async fn known_services(&self, limit: u32) -> Result<Vec<String>> {
        let rows: Vec<(String,)> = sqlx::query_as(
            "SELECT service FROM alerts GROUP BY service ORDER BY MAX(last_seen_at) DESC LIMIT $1",
        )
        .bind(i64::from(limit))
        .fetch_all(&self.reader)
        .await?;
        Ok(rows.into_iter().map(|(s,)| s).collect())
    }
}
