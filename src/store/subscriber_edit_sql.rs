//! The subscribers' list as the console and the API page through it (keyset pages on the id, a
//! search, a count that loads no row), the in-place edit of a subscriber, and a subscriber's
//! recent deliveries. A region may have a million citizens subscribed: nothing here reads more
//! rows than a page holds.

use jiff::Timestamp;
use sqlx::Row;

use super::db::Db;
use super::dialect::Dialect;
use super::rows::{DELIVERY_COLUMNS, delivery_from_row, ms};
use super::sql::SqlStore;
use super::subscriber_sql::{
    Which, bump_subscribers_version, cancel_address_deliveries, forget_in_drafts, load_which,
    write_escalation, write_subscriptions,
};
use super::{
    EditOutcome, EditReport, MAX_PAGE, Result, SubscriberDelivery, SubscriberEdit,
    SubscriberFilter, SubscriberKind, SubscriberPage,
};

/// `%`, `_` and `\` in `text` made plain characters of a `LIKE … ESCAPE '\'` pattern.
fn like_escaped(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 2);
    for c in text.chars() {
        if matches!(c, '%' | '_' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// The search's two patterns: for plain columns, and for the matchers, stored as JSON text (where
/// `"` and `\` are escaped). Only ASCII letters are folded, as SQLite's `LOWER` folds them, so
/// that both back ends find the same rows.
fn patterns(q: &str) -> (String, String) {
    let folded = q.to_ascii_lowercase();
    let in_json = serde_json::to_string(&folded).unwrap_or_default();
    let in_json = in_json
        .strip_prefix('"')
        .and_then(|s| s.strip_suffix('"'))
        .unwrap_or_default();
    (
        format!("%{}%", like_escaped(&folded)),
        format!("%{}%", like_escaped(in_json)),
    )
}

/// The conditions of `filter` but its cursors, over `s` (subscribers), with the search's
/// patterns in `$3` and `$4`.
fn conditions(dialect: Dialect, filter: &SubscriberFilter) -> String {
    let mut out = String::new();
    match filter.kind {
        Some(SubscriberKind::Desk) => out.push_str(" AND s.citizen_services IS NULL"),
        Some(SubscriberKind::Citizen) => out.push_str(" AND s.citizen_services IS NOT NULL"),
        None => {}
    }
    if filter.q.is_some() {
        // PostgreSQL's LOWER folds every letter its collation knows; in "C" only ASCII, as SQLite.
        let fold = |column: &str| match dialect {
            Dialect::Sqlite => format!("LOWER({column})"),
            Dialect::Postgres => format!("LOWER({column} COLLATE \"C\")"),
        };
        // Whoever may not read a webhook's URL does not search it either.
        let hidden = if filter.hide_webhooks {
            " AND a.channel <> 'webhook'"
        } else {
            ""
        };
        out.push_str(&format!(
            " AND ({name} LIKE $3 ESCAPE '\\' OR {audience} LIKE $3 ESCAPE '\\'
                  OR EXISTS (SELECT 1 FROM addresses a WHERE a.subscriber_id = s.id{hidden} AND {address} LIKE $3 ESCAPE '\\')
                  OR EXISTS (SELECT 1 FROM subscriptions x WHERE x.subscriber_id = s.id AND {matchers} LIKE $4 ESCAPE '\\'))",
            name = fold("s.name"),
            audience = fold("s.audience"),
            address = fold("a.address"),
            matchers = fold("x.matchers"),
        ));
    }
    out
}

impl SqlStore {
    pub(super) async fn page_of_subscribers(
        &self,
        filter: &SubscriberFilter,
    ) -> Result<SubscriberPage> {
        let limit = filter.limit.clamp(1, MAX_PAGE);
        // One row more than the page says whether there are more.
        let fetch = limit + 1;
        // Before a cursor, the nearest rows first; they are put back in id order below.
        let order = if filter.before.is_some() && filter.after.is_none() {
            "DESC"
        } else {
            "ASC"
        };
        let sql = format!(
            "SELECT s.id FROM subscribers s WHERE s.id > $1 AND s.id < $2{} ORDER BY s.id {order} LIMIT {fetch}",
            conditions(self.dialect, filter)
        );
        let (plain, in_json) = patterns(filter.q.as_deref().unwrap_or_default());
        let mut query = sqlx::query_scalar::<_, i64>(sqlx::AssertSqlSafe(sql))
            .bind(filter.after.unwrap_or(i64::MIN))
            .bind(filter.before.unwrap_or(i64::MAX));
        if filter.q.is_some() {
            query = query.bind(plain).bind(in_json);
        }
        let mut conn = self.reader.acquire().await?;
        let mut ids: Vec<i64> = query.fetch_all(&mut *conn).await?;
        let more = ids.len() > limit as usize;
        ids.truncate(limit as usize);
        if ids.is_empty() {
            return Ok(SubscriberPage::default());
        }
        let rows = load_which(&mut Db::Sqlx(&mut conn), &Which::Ids(self.dialect, &ids)).await?;
        Ok(SubscriberPage { rows, more })
    }

    pub(super) async fn count_of_subscribers(&self, filter: &SubscriberFilter) -> Result<u64> {
        // The cursors' conditions stay, always true, so that the parameters keep their numbers.
        let sql = format!(
            "SELECT COUNT(*) FROM subscribers s WHERE $1 = $1 AND $2 = $2{}",
            conditions(self.dialect, filter)
        );
        let (plain, in_json) = patterns(filter.q.as_deref().unwrap_or_default());
        let mut query = sqlx::query_scalar::<_, i64>(sqlx::AssertSqlSafe(sql))
            .bind(0_i64)
            .bind(0_i64);
        if filter.q.is_some() {
            query = query.bind(plain).bind(in_json);
        }
        let n = query.fetch_one(&self.reader).await?;
        Ok(u64::try_from(n).unwrap_or_default())
    }

    pub(super) async fn edit(
        &self,
        id: i64,
        edit: &SubscriberEdit,
        now: Timestamp,
    ) -> Result<EditOutcome> {
        let mut tx = self.write().await?;
        type Stored = (String, Option<String>, String, String, String);
        let found: Option<Stored> = sqlx::query_as(
            "SELECT origin, citizen_services, name, language, audience FROM subscribers WHERE id = $1",
        )
        .bind(id)
        .fetch_optional(&mut *tx)
        .await?;
        let (name, language, audience) = match found {
            None => return Ok(EditOutcome::NotFound),
            Some((origin, ..)) if origin == "config" => return Ok(EditOutcome::ManagedByConfig),
            Some((_, Some(_), ..)) => return Ok(EditOutcome::Citizen),
            Some((_, None, name, language, audience)) => (name, language, audience),
        };
        sqlx::query(
            "UPDATE subscribers SET name = $2, language = $3, audience = $4, updated_at = $5 WHERE id = $1",
        )
        .bind(id)
        .bind(edit.name.as_deref().unwrap_or(&name))
        .bind(edit.language.as_ref().map_or(language.as_str(), |l| l.as_str()))
        .bind(edit.audience.as_deref().unwrap_or(&audience))
        .bind(ms(now))
        .execute(&mut *tx)
        .await?;
        let mut report = EditReport::default();
        for (channel, wanted) in &edit.addresses {
            let stored: Vec<(i64, String)> = sqlx::query_as(
                "SELECT id, address FROM addresses WHERE subscriber_id = $1 AND channel = $2 ORDER BY id",
            )
            .bind(id)
            .bind(channel.as_str())
            .fetch_all(&mut *tx)
            .await?;
            for (address_id, address) in &stored {
                if wanted.contains(address) {
                    continue;
                }
                // Whoever is taken off hears nothing more: neither what is queued nor what a
                // draft holds for them. What was sent stays in the incidents' history.
                report.cancelled_deliveries += cancel_address_deliveries(
                    &mut tx,
                    *address_id,
                    "address removed from the subscriber",
                )
                .await?;
                forget_in_drafts(&mut tx, *address_id).await?;
                sqlx::query("DELETE FROM addresses WHERE id = $1")
                    .bind(address_id)
                    .execute(&mut *tx)
                    .await?;
                report.removed.push(*channel);
            }
            for address in wanted {
                if stored.iter().any(|(_, a)| a == address) {
                    continue;
                }
                sqlx::query(
                    "INSERT INTO addresses (subscriber_id, channel, address) VALUES ($1, $2, $3)
                     ON CONFLICT (subscriber_id, channel, address) DO NOTHING",
                )
                .bind(id)
                .bind(channel.as_str())
                .bind(address)
                .execute(&mut *tx)
                .await?;
                report.added.push(*channel);
            }
        }
        if let Some(subscriptions) = &edit.subscriptions {
            write_subscriptions(&mut tx, id, subscriptions).await?;
        }
        if let Some(policy) = &edit.escalation {
            write_escalation(&mut tx, id, policy.as_ref()).await?;
        }
        bump_subscribers_version(&mut Db::tx(&mut tx)).await?;
        tx.commit().await?;
        Ok(EditOutcome::Edited(report))
    }

    pub(super) async fn deliveries_of_subscriber(
        &self,
        id: i64,
        limit: u32,
    ) -> Result<Vec<SubscriberDelivery>> {
        let limit = limit.clamp(1, MAX_PAGE);
        let sql = format!(
            "SELECT {DELIVERY_COLUMNS}, i.id AS incident_id, i.title AS incident_title
             FROM deliveries d JOIN incident_updates u ON u.id = d.update_id
             JOIN incidents i ON i.id = d.incident_id
             JOIN addresses a ON a.id = d.address_id
             JOIN subscribers s ON s.id = a.subscriber_id
             WHERE a.subscriber_id = $1 AND d.draft_id IS NULL
             ORDER BY d.id DESC LIMIT {limit}"
        );
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(id)
            .fetch_all(&self.reader)
            .await?;
        rows.iter()
            .map(|row| {
                Ok(SubscriberDelivery {
                    incident_id: row.try_get("incident_id")?,
                    incident_title: row.try_get("incident_title")?,
                    delivery: delivery_from_row(row)?,
                })
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wildcards_are_plain_characters_and_ascii_letters_fold() {
        assert_eq!(patterns("50%_A\\b").0, "%50\\%\\_a\\\\b%");
        // In the matchers' JSON, a quote is written `\"`, and its backslash escaped for LIKE.
        assert_eq!(patterns("a=\"B\"").1, "%a=\\\\\"b\\\\\"%");
        // Letters beyond ASCII stay as typed: SQLite would not fold them.
        assert_eq!(patterns("ÀB").0, "%Àb%");
    }
}
