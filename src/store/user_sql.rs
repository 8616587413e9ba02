//! [`UserStore`] over the SQL store.

use async_trait::async_trait;
use jiff::Timestamp;
use sqlx::Row;
use sqlx::any::AnyRow;

use super::dialect::Dialect;
use super::rows::{ms, ts};
use super::sql::SqlStore;
use super::{Result, SessionRow, UserChange, UserChanged, UserRow, UserStore};

fn roles(text: &str) -> Vec<String> {
    text.split(',')
        .map(str::trim)
        .filter(|r| !r.is_empty())
        .map(str::to_owned)
        .collect()
}

fn user_from_row(row: &AnyRow) -> Result<UserRow> {
    Ok(UserRow {
        id: row.try_get("id")?,
        username: row.try_get("username")?,
        password_hash: row.try_get("password_hash")?,
        roles: roles(row.try_get("roles")?),
        disabled: row.try_get::<Option<i64>, _>("disabled_at")?.is_some(),
        telegram_user: row.try_get("telegram_user")?,
        unlocked_at: row
            .try_get::<Option<i64>, _>("unlocked_at")?
            .map(ts)
            .transpose()?,
    })
}

/// Enabled users holding the admin role.
async fn enabled_admins(conn: &mut sqlx::AnyConnection) -> Result<usize> {
    let rows: Vec<String> = sqlx::query_scalar("SELECT roles FROM users WHERE disabled_at IS NULL")
        .fetch_all(&mut *conn)
        .await?;
    Ok(rows
        .iter()
        .filter(|r| roles(r).iter().any(|role| role == "admin"))
        .count())
}

#[async_trait]
impl UserStore for SqlStore {
    async fn create_user(
        &self,
        username: &str,
        password_hash: &str,
        roles: &[String],
        now: Timestamp,
    ) -> Result<bool> {
        let mut tx = self.write().await?;
        let inserted = sqlx::query(
            "INSERT INTO users (username, password_hash, roles, created_at) VALUES ($1, $2, $3, $4)
             ON CONFLICT (username) DO NOTHING",
        )
        .bind(username)
        .bind(password_hash)
        .bind(roles.join(","))
        .bind(ms(now))
        .execute(&mut *tx)
        .await?
        .rows_affected();
        tx.commit().await?;
        Ok(inserted == 1)
    }

    async fn update_user(
        &self,
        username: &str,
        password_hash: &str,
        roles: &[String],
    ) -> Result<bool> {
        let mut tx = self.write().await?;
        let id: Option<i64> = sqlx::query_scalar("SELECT id FROM users WHERE username = $1")
            .bind(username)
            .fetch_optional(&mut *tx)
            .await?;
        let Some(id) = id else { return Ok(false) };
        sqlx::query("UPDATE users SET password_hash = $2, roles = $3 WHERE id = $1")
            .bind(id)
            .bind(password_hash)
            .bind(roles.join(","))
            .execute(&mut *tx)
            .await?;
        sqlx::query("DELETE FROM sessions WHERE user_id = $1")
            .bind(id)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(true)
    }

    async fn change_user(
        &self,
        username: &str,
        change: &UserChange,
        now: Timestamp,
    ) -> Result<UserChanged> {
        let mut tx = self.write().await?;
        if self.dialect == Dialect::Postgres {
            // Two admins demoting each other at once must not both pass the check below.
            sqlx::query("SELECT pg_advisory_xact_lock(7301)")
                .execute(&mut *tx)
                .await?;
        }
        let id: Option<i64> = sqlx::query_scalar("SELECT id FROM users WHERE username = $1")
            .bind(username)
            .fetch_optional(&mut *tx)
            .await?;
        let Some(id) = id else {
            return Ok(UserChanged::NoSuchUser);
        };
        let admins_before = enabled_admins(&mut tx).await?;
        if let Some(roles) = &change.roles {
            sqlx::query("UPDATE users SET roles = $2 WHERE id = $1")
                .bind(id)
                .bind(roles.join(","))
                .execute(&mut *tx)
                .await?;
        }
        if let Some(hash) = &change.password_hash {
            sqlx::query("UPDATE users SET password_hash = $2 WHERE id = $1")
                .bind(id)
                .bind(hash)
                .execute(&mut *tx)
                .await?;
        }
        match change.disabled {
            Some(true) => {
                sqlx::query(
                    "UPDATE users SET disabled_at = $2 WHERE id = $1 AND disabled_at IS NULL",
                )
                .bind(id)
                .bind(ms(now))
                .execute(&mut *tx)
                .await?;
            }
            Some(false) => {
                sqlx::query("UPDATE users SET disabled_at = NULL WHERE id = $1")
                    .bind(id)
                    .execute(&mut *tx)
                    .await?;
            }
            None => {}
        }
        if admins_before > 0 && enabled_admins(&mut tx).await? == 0 {
            tx.rollback().await?;
            return Ok(UserChanged::LastAdmin);
        }
        sqlx::query("DELETE FROM sessions WHERE user_id = $1")
            .bind(id)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(UserChanged::Changed)
    }

    async fn user(&self, username: &str) -> Result<Option<UserRow>> {
        sqlx::query(
            "SELECT id, username, password_hash, roles, disabled_at, telegram_user, unlocked_at FROM users WHERE username = $1",
        )
        .bind(username)
        .fetch_optional(&self.reader)
        .await?
        .as_ref()
        .map(user_from_row)
        .transpose()
    }

    async fn unlock_user(&self, username: &str, now: Timestamp) -> Result<bool> {
        let changed = sqlx::query("UPDATE users SET unlocked_at = $2 WHERE username = $1")
            .bind(username)
            .bind(ms(now))
            .execute(&self.writer)
            .await?
            .rows_affected();
        Ok(changed == 1)
    }

    async fn link_telegram(&self, user_id: i64, telegram_user: Option<&str>) -> Result<bool> {
        let mut tx = self.write().await?;
        if let Some(tg) = telegram_user {
            sqlx::query("UPDATE users SET telegram_user = NULL WHERE telegram_user = $1")
                .bind(tg)
                .execute(&mut *tx)
                .await?;
        }
        let changed = sqlx::query("UPDATE users SET telegram_user = $2 WHERE id = $1")
            .bind(user_id)
            .bind(telegram_user)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        tx.commit().await?;
        Ok(changed == 1)
    }

    async fn user_by_telegram(&self, telegram_user: &str) -> Result<Option<UserRow>> {
        sqlx::query(
            "SELECT id, username, password_hash, roles, disabled_at, telegram_user, unlocked_at FROM users
             WHERE telegram_user = $1 AND disabled_at IS NULL",
        )
        .bind(telegram_user)
        .fetch_optional(&self.reader)
        .await?
        .as_ref()
        .map(user_from_row)
        .transpose()
    }

    async fn users(&self) -> Result<Vec<UserRow>> {
        sqlx::query(
            "SELECT id, username, password_hash, roles, disabled_at, telegram_user, unlocked_at FROM users ORDER BY username",
        )
        .fetch_all(&self.reader)
        .await?
        .iter()
        .map(user_from_row)
        .collect()
    }

    async fn create_session(
        &self,
        token_sha256: &str,
        user_id: i64,
        csrf: &str,
        now: Timestamp,
        expires_at: Timestamp,
    ) -> Result<()> {
        let mut tx = self.write().await?;
        // Expired sessions go as new ones come.
        sqlx::query("DELETE FROM sessions WHERE expires_at <= $1")
            .bind(ms(now))
            .execute(&mut *tx)
            .await?;
        sqlx::query(
            "INSERT INTO sessions (token_sha256, user_id, csrf, created_at, expires_at) VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(token_sha256)
        .bind(user_id)
        .bind(csrf)
        .bind(ms(now))
        .bind(ms(expires_at))
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    async fn session(&self, token_sha256: &str, now: Timestamp) -> Result<Option<SessionRow>> {
        let row = sqlx::query(
            "SELECT u.username, u.roles, s.csrf, s.expires_at FROM sessions s JOIN users u ON u.id = s.user_id
             WHERE s.token_sha256 = $1 AND s.expires_at > $2 AND u.disabled_at IS NULL",
        )
        .bind(token_sha256)
        .bind(ms(now))
        .fetch_optional(&self.reader)
        .await?;
        row.map(|row| {
            Ok(SessionRow {
                username: row.try_get("username")?,
                roles: roles(row.try_get("roles")?),
                csrf: row.try_get("csrf")?,
                expires_at: ts(row.try_get("expires_at")?)?,
            })
        })
        .transpose()
    }

    async fn delete_session(&self, token_sha256: &str) -> Result<()> {
        let mut tx = self.write().await?;
        sqlx::query("DELETE FROM sessions WHERE token_sha256 = $1")
            .bind(token_sha256)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(())
    }
}
