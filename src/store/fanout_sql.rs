//! [`FanoutStore`] over the SQL store, and the router's questions about citizens when it holds a
//! public statement (who may hear it, counted in SQL rather than loaded).

use async_trait::async_trait;
use sqlx::Row;

use super::db::{self, Db};
use super::fanout::{CitizenGroup, CitizenPart, FanoutStore};
use super::rows::{json, parse, ts};
use super::sql::SqlStore;
use super::subscriber_sql::{Which, load_which};
use super::tx_sql::insert_deliveries;
use super::{NewDelivery, Result, SubscriberRow};
use crate::domain::subscriber::ChannelKind;

/// A `LIKE` pattern finding a service id in a citizen's JSON list of followed services.
fn follows_pattern(service: &str) -> Result<String> {
    let quoted = json(&service)?;
    // `LIKE` wildcards in an id match only themselves.
    let escaped = quoted
        .replace('\\', "\\\\")
        .replace('%', "\\%")
        .replace('_', "\\_");
    Ok(format!("%{escaped}%"))
}

/// The active addresses of citizens following one of `services` (`None`: of every citizen), by
/// channel and wanted language, and the highest citizen id.
pub(super) async fn citizen_groups(
    db: &mut Db<'_>,
    services: Option<&[String]>,
) -> Result<(Vec<CitizenGroup>, i64)> {
    let through: Option<i64> =
        db::query_scalar("SELECT MAX(id) FROM subscribers WHERE citizen_services IS NOT NULL")
            .fetch_one(db)
            .await?;
    let Some(through) = through else {
        return Ok((Vec::new(), 0));
    };
    let filter = match services {
        None => String::new(),
        Some([]) => return Ok((Vec::new(), through)),
        Some(list) => {
            let any: Vec<String> = (1..=list.len())
                .map(|n| format!("s.citizen_services LIKE ${n} ESCAPE '\\'"))
                .collect();
            format!(" AND ({})", any.join(" OR "))
        }
    };
    let sql = format!(
        "SELECT a.channel, COALESCE(a.language, s.language) AS language, COUNT(*) AS n
         FROM addresses a JOIN subscribers s ON s.id = a.subscriber_id
         WHERE s.citizen_services IS NOT NULL AND a.unsubscribed_at IS NULL AND a.gone_at IS NULL{filter}
         GROUP BY a.channel, COALESCE(a.language, s.language)"
    );
    let mut query = db::query(sql);
    for service in services.unwrap_or_default() {
        query = query.bind(follows_pattern(service)?);
    }
    let groups = query
        .fetch_all(db)
        .await?
        .iter()
        .map(|row| {
            Ok(CitizenGroup {
                channel: parse(row.try_get::<&str, _>("channel")?, "channel")?,
                language: row.try_get("language")?,
                addresses: row.try_get::<i64, _>("n")?.max(0) as u64,
            })
        })
        .collect::<Result<Vec<_>>>()?;
    Ok((groups, through))
}

/// Whether citizens were approved a statement about the incident before (they hear its later
/// updates whatever its labels have become).
pub(super) async fn citizens_heard(db: &mut Db<'_>, incident_id: i64) -> Result<bool> {
    let found: Option<i64> = db::query_scalar(
        "SELECT p.id FROM draft_parts p JOIN drafts d ON d.id = p.draft_id
         WHERE d.incident_id = $1 AND p.citizens_done IS NOT NULL LIMIT 1",
    )
    .bind(incident_id)
    .fetch_optional(db)
    .await?;
    Ok(found.is_some())
}

#[async_trait]
impl FanoutStore for SqlStore {
    async fn next_citizen_part(&self) -> Result<Option<CitizenPart>> {
        let row = sqlx::query(
            "SELECT p.id, p.draft_id, d.incident_id, d.update_id, u.kind, u.origin_at, p.message_id,
                    p.channel, p.language, p.citizens_done, p.citizens_through
             FROM draft_parts p JOIN drafts d ON d.id = p.draft_id
             JOIN incident_updates u ON u.id = d.update_id
             WHERE p.citizens_done IS NOT NULL AND p.citizens_done < p.citizens_through
             ORDER BY p.citizens_queued_at, p.id LIMIT 1",
        )
        .fetch_optional(&self.reader)
        .await?;
        let Some(row) = row else { return Ok(None) };
        Ok(Some(CitizenPart {
            part_id: row.try_get("id")?,
            draft_id: row.try_get("draft_id")?,
            incident_id: row.try_get("incident_id")?,
            update_id: row.try_get("update_id")?,
            update_kind: parse(row.try_get::<&str, _>("kind")?, "update kind")?,
            origin_at: ts(row.try_get("origin_at")?)?,
            message_id: row.try_get("message_id")?,
            channel: parse(row.try_get::<&str, _>("channel")?, "channel")?,
            language: row.try_get("language")?,
            done: row.try_get("citizens_done")?,
            through: row.try_get("citizens_through")?,
        }))
    }

    async fn citizens_after(
        &self,
        after: i64,
        through: i64,
        limit: u32,
    ) -> Result<Vec<SubscriberRow>> {
        let mut conn = self.reader.acquire().await?;
        let ids: Vec<i64> = sqlx::query_scalar(
            "SELECT id FROM subscribers WHERE citizen_services IS NOT NULL AND id > $1 AND id <= $2
             ORDER BY id LIMIT $3",
        )
        .bind(after)
        .bind(through)
        .bind(i64::from(limit))
        .fetch_all(&mut *conn)
        .await?;
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        load_which(&mut Db::Sqlx(&mut conn), &Which::Ids(self.dialect, &ids)).await
    }

    async fn notified_among(
        &self,
        incident_id: i64,
        address_ids: &[i64],
    ) -> Result<Vec<(i64, ChannelKind)>> {
        if address_ids.is_empty() {
            return Ok(Vec::new());
        }
        let rows: Vec<(i64, String)> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "SELECT DISTINCT address_id, channel FROM deliveries
             WHERE address_id IN ({}) AND incident_id = $2 AND state != 'cancelled'",
            self.dialect.ids()
        )))
        .bind(json(&address_ids)?)
        .bind(incident_id)
        .fetch_all(&self.reader)
        .await?;
        rows.into_iter()
            .map(|(id, channel)| Ok((id, parse(&channel, "channel")?)))
            .collect()
    }

    async fn write_citizen_batch(
        &self,
        part_id: i64,
        from: i64,
        to: i64,
        deliveries: &[NewDelivery],
    ) -> Result<Option<u64>> {
        let mut tx = self.write().await?;
        let moved = sqlx::query(
            "UPDATE draft_parts SET citizens_done = $3 WHERE id = $1 AND citizens_done = $2",
        )
        .bind(part_id)
        .bind(from)
        .bind(to)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if moved == 0 {
            return Ok(None);
        }
        // Read before this transaction: whoever unsubscribed or was found gone since is left out.
        let listed: Vec<i64> = deliveries.iter().map(|d| d.address_id).collect();
        let live: std::collections::HashSet<i64> = if listed.is_empty() {
            Default::default()
        } else {
            sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
                "SELECT id FROM addresses WHERE id IN ({}) AND unsubscribed_at IS NULL AND gone_at IS NULL",
                self.dialect.ids()
            )))
            .bind(json(&listed)?)
            .fetch_all(&mut *tx)
            .await?
            .into_iter()
            .collect()
        };
        let rows: Vec<NewDelivery> = deliveries
            .iter()
            .filter(|d| live.contains(&d.address_id))
            .cloned()
            .collect();
        let written = insert_deliveries(&mut Db::tx(&mut tx), self.dialect, &rows).await?;
        tx.commit().await?;
        Ok(Some(written))
    }
}
