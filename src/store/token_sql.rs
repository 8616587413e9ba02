//! [`TokenStore`] over the SQL store.

use async_trait::async_trait;
use jiff::Timestamp;
use sqlx::Row;
use sqlx::any::AnyRow;

use super::rows::{ms, opt_ts, ts};
use super::sql::SqlStore;
use super::{NewToken, Result, TokenRow, TokenStore};

const COLUMNS: &str =
    "id, name, roles, secret_sha256, created_at, created_by, revoked_at, revoked_by, last_used_at";

fn token_from_row(row: &AnyRow) -> Result<TokenRow> {
    Ok(TokenRow {
        id: row.try_get("id")?,
        name: row.try_get("name")?,
        roles: row
            .try_get::<String, _>("roles")?
            .split(',')
            .map(str::trim)
            .filter(|r| !r.is_empty())
            .map(str::to_owned)
            .collect(),
        secret_sha256: row.try_get("secret_sha256")?,
        created_at: ts(row.try_get("created_at")?)?,
        created_by: row.try_get("created_by")?,
        revoked_at: opt_ts(row.try_get("revoked_at")?)?,
        revoked_by: row.try_get("revoked_by")?,
        last_used_at: opt_ts(row.try_get("last_used_at")?)?,
    })
}

/// Inserts `token` unless a live token has its name (the partial unique index decides, so two
/// processes inserting at once cannot both succeed); whether it was inserted.
async fn insert(conn: &mut sqlx::AnyConnection, token: &NewToken, now: Timestamp) -> Result<bool> {
    let inserted = sqlx::query(
        "INSERT INTO api_tokens (name, roles, secret_sha256, created_at, created_by)
         VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING",
    )
    .bind(&token.name)
    .bind(token.roles.join(","))
    .bind(&token.secret_sha256)
    .bind(ms(now))
    .bind(&token.created_by)
    .execute(&mut *conn)
    .await?
    .rows_affected();
    Ok(inserted == 1)
}

#[async_trait]
impl TokenStore for SqlStore {
    async fn create_token(&self, token: &NewToken, now: Timestamp) -> Result<bool> {
        let mut tx = self.write().await?;
        let inserted = insert(&mut tx, token, now).await?;
        tx.commit().await?;
        Ok(inserted)
    }

    async fn create_first_tokens(&self, tokens: &[NewToken], now: Timestamp) -> Result<bool> {
        let mut tx = self.write().await?;
        // Ever, revoked ones included: revoking every token and restarting must not make and
        // show new ones.
        let ever: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM api_tokens")
            .fetch_one(&mut *tx)
            .await?;
        if ever > 0 {
            return Ok(false);
        }
        // Every process inserts in the same order, so on PostgreSQL the second one waits on the
        // first name's index entry and then finds it taken: nothing of it is kept.
        for token in tokens {
            if !insert(&mut tx, token, now).await? {
                tx.rollback().await?;
                return Ok(false);
            }
        }
        tx.commit().await?;
        Ok(true)
    }

    async fn tokens(&self) -> Result<Vec<TokenRow>> {
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {COLUMNS} FROM api_tokens ORDER BY name, id DESC"
        )))
        .fetch_all(&self.reader)
        .await?
        .iter()
        .map(token_from_row)
        .collect()
    }

    async fn live_tokens(&self) -> Result<Vec<TokenRow>> {
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {COLUMNS} FROM api_tokens WHERE revoked_at IS NULL ORDER BY name"
        )))
        .fetch_all(&self.reader)
        .await?
        .iter()
        .map(token_from_row)
        .collect()
    }

    async fn revoke_token(&self, name: &str, by: &str, now: Timestamp) -> Result<bool> {
        let mut tx = self.write().await?;
        let changed = sqlx::query(
            "UPDATE api_tokens SET revoked_at = $2, revoked_by = $3
             WHERE name = $1 AND revoked_at IS NULL",
        )
        .bind(name)
        .bind(ms(now))
        .bind(by)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        tx.commit().await?;
        Ok(changed > 0)
    }

    async fn mark_tokens_used(&self, ids: &[i64], now: Timestamp) -> Result<()> {
        if ids.is_empty() {
            return Ok(());
        }
        let list =
            serde_json::to_string(ids).map_err(|e| super::StoreError::Corrupt(e.to_string()))?;
        let mut tx = self.write().await?;
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "UPDATE api_tokens SET last_used_at = $2 WHERE id IN ({})",
            self.dialect.ids()
        )))
        .bind(list)
        .bind(ms(now))
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }
}
