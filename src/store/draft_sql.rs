//! [`DraftStore`] over the SQL store, and holding messages for approval inside the router's
//! transaction.

use std::collections::BTreeSet;

use async_trait::async_trait;
use jiff::Timestamp;
use sqlx::any::{Any, AnyRow};
use sqlx::{Row, Transaction};

use super::db::{self, Db};
use super::rows::{json, ms, opt_ts, parse, ts};
use super::sql::SqlStore;
use super::tx_sql::insert_deliveries;
use super::{
    AuditEntry, Decided, Decision, Draft, DraftNotice, DraftPart, DraftStore, NewAudit,
    NewDelivery, NewDraftPart, PartEdit, Result, StoreError,
};
use crate::domain::subscriber::ChannelKind;

type Tx = Transaction<'static, Any>;

async fn audit(db: &mut Db<'_>, e: &NewAudit) -> Result<()> {
    db::query(
        "INSERT INTO audit_log (at, actor, action, incident_id, draft_id, detail)
         VALUES ($1, $2, $3, $4, $5, $6)",
    )
    .bind(ms(e.at))
    .bind(&e.actor)
    .bind(e.action)
    .bind(e.incident_id)
    .bind(e.draft_id)
    .bind(e.detail.to_string())
    .execute(db)
    .await?;
    Ok(())
}

/// Router side: see [`super::Tx::hold_for_approval`].
pub(super) async fn hold(db: &mut Db<'_>, p: &NewDraftPart) -> Result<i64> {
    let existing: Option<i64> =
        db::query_scalar("SELECT id FROM drafts WHERE update_id = $1 AND audience = $2")
            .bind(p.update_id)
            .bind(&p.audience)
            .fetch_optional(db)
            .await?;
    let draft_id = match existing {
        Some(id) => id,
        None => {
            // Earlier drafts of the incident nobody decided are replaced by this one.
            let superseded: Vec<i64> = db::query_scalar(
                "SELECT id FROM drafts WHERE incident_id = $1 AND audience = $2 AND state = 'pending'
                 ORDER BY id",
            )
            .bind(p.incident_id)
            .bind(&p.audience)
            .fetch_all(db)
            .await?;
            for id in &superseded {
                db::query("UPDATE drafts SET state = 'superseded', decided_at = $2 WHERE id = $1")
                    .bind(id)
                    .bind(ms(p.now))
                    .execute(db)
                    .await?;
                db::query(
                    "UPDATE draft_parts SET state = 'rejected' WHERE draft_id = $1 AND state = 'pending'",
                )
                .bind(id)
                .execute(db)
                .await?;
            }
            let id: i64 = db::query_scalar(
                "INSERT INTO drafts (incident_id, update_id, audience, policy, state, publish_at, combined, created_at)
                 VALUES ($1, $2, $3, $4, 'pending', $5, $6, $7) RETURNING id",
            )
            .bind(p.incident_id)
            .bind(p.update_id)
            .bind(&p.audience)
            .bind(p.policy)
            .bind(p.publish_at.map(ms))
            .bind(i64::from(!superseded.is_empty()))
            .bind(ms(p.now))
            .fetch_one(db)
            .await?;
            audit(
                db,
                &NewAudit {
                    actor: "banditore".into(),
                    action: "draft.created",
                    incident_id: Some(p.incident_id),
                    draft_id: Some(id),
                    detail: serde_json::json!({
                        "audience": p.audience, "policy": p.policy,
                        "publish_at": p.publish_at, "supersedes": superseded,
                    }),
                    at: p.now,
                },
            )
            .await?;
            id
        }
    };
    db::query(
        "INSERT INTO draft_parts (draft_id, message_id, channel, language, recipients, state,
                                  citizens, citizens_through)
         VALUES ($1, $2, $3, $4, $5, 'pending', $6, $7)
         ON CONFLICT (draft_id, channel, language) DO NOTHING",
    )
    .bind(draft_id)
    .bind(p.message_id)
    .bind(p.channel.as_str())
    .bind(&p.language)
    .bind(serde_json::to_string(&p.recipients).map_err(|e| StoreError::Corrupt(e.to_string()))?)
    .bind(
        p.citizens
            .map_or(0, |(n, _)| i64::try_from(n).unwrap_or(i64::MAX)),
    )
    .bind(p.citizens.map(|(_, through)| through))
    .execute(db)
    .await?;
    Ok(draft_id)
}

const DRAFT_COLUMNS: &str =
    "d.id, d.incident_id, i.title, u.seq, u.kind, d.audience, d.policy, d.state,
    d.publish_at, d.combined, d.created_at, d.decided_at, d.decided_by, d.reason";

const PART_COLUMNS: &str =
    "p.id, p.draft_id, p.channel, p.language, p.state, p.version, p.recipients,
    p.message_id, p.citizens, p.citizens_through, COALESCE(v.subject, m.subject) AS subject, COALESCE(v.body, m.body) AS body";

/// Parts with their current text: the latest version, or the rendered message.
fn parts_sql(filter: &str) -> String {
    format!(
        "SELECT {PART_COLUMNS} FROM draft_parts p JOIN messages m ON m.id = p.message_id
         LEFT JOIN draft_versions v ON v.part_id = p.id AND v.version = p.version
         WHERE {filter} ORDER BY p.channel, p.language"
    )
}

struct PartRow {
    id: i64,
    message_id: i64,
    part: DraftPart,
    recipients: Vec<(i64, String, String)>,
    /// About how many citizens, not listed; `None` when it reaches none.
    citizens: Option<u64>,
}

fn part_from_row(row: &AnyRow) -> Result<PartRow> {
    let recipients: Vec<(i64, String, String)> =
        serde_json::from_str(row.try_get::<&str, _>("recipients")?)
            .map_err(|e| StoreError::Corrupt(format!("draft recipients: {e}")))?;
    let citizens = row
        .try_get::<Option<i64>, _>("citizens_through")?
        .map(|_| row.try_get::<i64, _>("citizens").map(|n| n.max(0) as u64))
        .transpose()?;
    Ok(PartRow {
        id: row.try_get("id")?,
        message_id: row.try_get("message_id")?,
        part: DraftPart {
            channel: parse(row.try_get::<&str, _>("channel")?, "channel")?,
            language: row.try_get("language")?,
            state: row.try_get("state")?,
            version: row.try_get("version")?,
            subject: row.try_get("subject")?,
            body: row.try_get("body")?,
            recipients: recipients.len() + citizens.map_or(0, |n| n as usize),
        },
        recipients,
        citizens,
    })
}

fn draft_from_row(row: &AnyRow, parts: Vec<DraftPart>) -> Result<Draft> {
    Ok(Draft {
        id: row.try_get("id")?,
        incident_id: row.try_get("incident_id")?,
        incident_title: row.try_get("title")?,
        update_seq: row.try_get("seq")?,
        update_kind: row.try_get("kind")?,
        audience: row.try_get("audience")?,
        policy: row.try_get("policy")?,
        state: row.try_get("state")?,
        publish_at: opt_ts(row.try_get("publish_at")?)?,
        combined: row.try_get::<i64, _>("combined")? != 0,
        created_at: ts(row.try_get("created_at")?)?,
        decided_at: opt_ts(row.try_get("decided_at")?)?,
        decided_by: row.try_get("decided_by")?,
        reason: row.try_get("reason")?,
        parts,
    })
}

impl SqlStore {
    async fn load_drafts(
        &self,
        filter: &str,
        bind: Option<&str>,
        id: Option<i64>,
        limit: u32,
    ) -> Result<Vec<Draft>> {
        let sql = format!(
            "SELECT {DRAFT_COLUMNS} FROM drafts d JOIN incidents i ON i.id = d.incident_id
             JOIN incident_updates u ON u.id = d.update_id
             WHERE {filter} ORDER BY d.id DESC LIMIT $2"
        );
        let mut query = sqlx::query(sqlx::AssertSqlSafe(sql));
        query = match (bind, id) {
            (Some(state), _) => query.bind(state.to_owned()),
            (None, Some(id)) => query.bind(id),
            (None, None) => query.bind(0_i64),
        };
        let rows = query.bind(i64::from(limit)).fetch_all(&self.reader).await?;
        let mut drafts = Vec::with_capacity(rows.len());
        for row in &rows {
            let draft_id: i64 = row.try_get("id")?;
            let parts = sqlx::query(sqlx::AssertSqlSafe(parts_sql("p.draft_id = $1")))
                .bind(draft_id)
                .fetch_all(&self.reader)
                .await?
                .iter()
                .map(|r| part_from_row(r).map(|p| p.part))
                .collect::<Result<Vec<_>>>()?;
            drafts.push(draft_from_row(row, parts)?);
        }
        Ok(drafts)
    }
}

/// A unified diff of an edit, for the audit log.
fn diff(old: &str, new: &str) -> String {
    similar::TextDiff::from_lines(old, new)
        .unified_diff()
        .context_radius(2)
        .header("before", "after")
        .to_string()
}

#[async_trait]
impl DraftStore for SqlStore {
    async fn drafts(&self, state: Option<&str>, limit: u32) -> Result<Vec<Draft>> {
        match state {
            Some(state) => {
                self.load_drafts("d.state = $1", Some(state), None, limit)
                    .await
            }
            None => self.load_drafts("$1 = 0", None, None, limit).await,
        }
    }

    async fn draft(&self, id: i64) -> Result<Option<Draft>> {
        Ok(self
            .load_drafts("d.id = $1", None, Some(id), 1)
            .await?
            .into_iter()
            .next())
    }

    async fn published_drafts(&self, incident_id: i64, audience: &str) -> Result<Vec<Draft>> {
        let ids: Vec<i64> = sqlx::query_scalar(
            "SELECT id FROM drafts WHERE incident_id = $1 AND audience = $2 AND state = 'approved'
             ORDER BY id DESC LIMIT 100",
        )
        .bind(incident_id)
        .bind(audience)
        .fetch_all(&self.reader)
        .await?;
        let mut drafts = Vec::with_capacity(ids.len());
        for id in ids {
            drafts.extend(self.draft(id).await?);
        }
        Ok(drafts)
    }

    async fn edit_draft(
        &self,
        id: i64,
        edits: &[PartEdit],
        actor: &str,
        now: Timestamp,
    ) -> Result<Option<Draft>> {
        let mut tx = self.write().await?;
        let Some((state, incident_id)) = lock_draft(&mut tx, self, id).await? else {
            return Ok(None);
        };
        if state != "pending" {
            return Err(StoreError::Conflict(format!(
                "draft {id} is {state}: only a pending draft can be edited"
            )));
        }
        for edit in edits {
            let row = sqlx::query(sqlx::AssertSqlSafe(parts_sql(
                "p.draft_id = $1 AND p.channel = $2 AND p.language = $3",
            )))
            .bind(id)
            .bind(edit.channel.as_str())
            .bind(&edit.language)
            .fetch_optional(&mut *tx)
            .await?;
            let Some(row) = row else {
                return Err(StoreError::Conflict(format!(
                    "draft {id} has no {} part in `{}`",
                    edit.channel, edit.language
                )));
            };
            let part = part_from_row(&row)?;
            if part.part.state != "pending" {
                return Err(StoreError::Conflict(format!(
                    "the {} part of draft {id} is already {}",
                    edit.channel, part.part.state
                )));
            }
            if part.part.body == edit.body && part.part.subject == edit.subject {
                continue;
            }
            let version = part.part.version + 1;
            sqlx::query(
                "INSERT INTO draft_versions (part_id, version, subject, body, edited_by, created_at)
                 VALUES ($1, $2, $3, $4, $5, $6)",
            )
            .bind(part.id)
            .bind(version)
            .bind(&edit.subject)
            .bind(&edit.body)
            .bind(actor)
            .bind(ms(now))
            .execute(&mut *tx)
            .await?;
            sqlx::query("UPDATE draft_parts SET version = $2 WHERE id = $1")
                .bind(part.id)
                .bind(version)
                .execute(&mut *tx)
                .await?;
            audit(
                &mut Db::tx(&mut tx),
                &NewAudit {
                    actor: actor.to_owned(),
                    action: "draft.edited",
                    incident_id: Some(incident_id),
                    draft_id: Some(id),
                    detail: serde_json::json!({
                        "channel": edit.channel, "language": edit.language, "version": version,
                        "diff": diff(&part.part.body, &edit.body),
                        "subject": (part.part.subject != edit.subject).then_some(&edit.subject),
                    }),
                    at: now,
                },
            )
            .await?;
        }
        tx.commit().await?;
        self.draft(id).await
    }

    async fn decide_draft(
        &self,
        id: i64,
        decision: &Decision,
        actor: &str,
        now: Timestamp,
    ) -> Result<Option<Decided>> {
        let mut tx = self.write().await?;
        let Some((state, incident_id)) = lock_draft(&mut tx, self, id).await? else {
            return Ok(None);
        };
        if state != "pending" {
            return Err(StoreError::Conflict(format!(
                "draft {id} is already {state}"
            )));
        }
        let parts = sqlx::query(sqlx::AssertSqlSafe(parts_sql(
            "p.draft_id = $1 AND p.state = 'pending'",
        )))
        .bind(id)
        .fetch_all(&mut *tx)
        .await?
        .iter()
        .map(part_from_row)
        .collect::<Result<Vec<_>>>()?;
        let chosen: Vec<&PartRow> = match decision {
            Decision::Approve {
                channels: Some(channels),
            } => {
                let wanted: BTreeSet<ChannelKind> = channels.iter().copied().collect();
                parts
                    .iter()
                    .filter(|p| wanted.contains(&p.part.channel))
                    .collect()
            }
            _ => parts.iter().collect(),
        };
        if chosen.is_empty() {
            return Err(StoreError::Conflict(format!(
                "draft {id} has no pending part on those channels"
            )));
        }
        let mut decided = Decided {
            parts: chosen.len(),
            deliveries: 0,
            citizens: 0,
        };
        let (action, part_state) = match decision {
            Decision::Reject { .. } => ("draft.rejected", "rejected"),
            Decision::Approve { .. } => ("draft.approved", "approved"),
            Decision::TimedOut => ("draft.published_on_timeout", "approved"),
        };
        if part_state == "approved" {
            let (update_id, origin_at): (i64, i64) = sqlx::query_as(
                "SELECT u.id, u.origin_at FROM drafts d JOIN incident_updates u ON u.id = d.update_id
                 WHERE d.id = $1",
            )
            .bind(id)
            .fetch_one(&mut *tx)
            .await?;
            // Recipients were frozen with the draft; those who left since (unsubscribed, erased,
            // deleted, gone) are not written to.
            let listed: Vec<i64> = chosen
                .iter()
                .flat_map(|p| p.recipients.iter().map(|(a, _, _)| *a))
                .collect();
            let live: std::collections::HashSet<i64> = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
                "SELECT id FROM addresses WHERE id IN ({}) AND unsubscribed_at IS NULL AND gone_at IS NULL",
                self.dialect.ids()
            )))
            .bind(serde_json::to_string(&listed).map_err(|e| StoreError::Corrupt(e.to_string()))?)
            .fetch_all(&mut *tx)
            .await?
            .into_iter()
            .collect();
            for part in &chosen {
                // What goes out is the approved version, byte for byte.
                if part.part.version > 1 {
                    sqlx::query(
                        "UPDATE messages SET subject = $2, body = $3, html = NULL WHERE id = $1",
                    )
                    .bind(part.message_id)
                    .bind(&part.part.subject)
                    .bind(&part.part.body)
                    .execute(&mut *tx)
                    .await?;
                }
                let rows: Vec<NewDelivery> = part
                    .recipients
                    .iter()
                    .filter(|(address_id, _, _)| live.contains(address_id))
                    .map(|(address_id, address, subscriber)| NewDelivery {
                        message_id: part.message_id,
                        update_id,
                        incident_id,
                        address_id: *address_id,
                        subscriber_name: subscriber.clone(),
                        channel: part.part.channel,
                        recipient: address.clone(),
                        origin_at: ts(origin_at).unwrap_or(now),
                        created_at: now,
                    })
                    .collect();
                decided.deliveries +=
                    insert_deliveries(&mut Db::tx(&mut tx), self.dialect, &rows).await?;
                // Citizens are written by the leader in batches, starting now: the decision
                // commits at once and the first messages leave while the rest are written.
                if let Some(citizens) = part.citizens {
                    sqlx::query(
                        "UPDATE draft_parts SET citizens_done = 0, citizens_queued_at = $2 WHERE id = $1",
                    )
                    .bind(part.id)
                    .bind(ms(now))
                    .execute(&mut *tx)
                    .await?;
                    decided.citizens += citizens;
                }
            }
        }
        for part in &chosen {
            sqlx::query("UPDATE draft_parts SET state = $2 WHERE id = $1")
                .bind(part.id)
                .bind(part_state)
                .execute(&mut *tx)
                .await?;
        }
        let left = parts.len() - chosen.len();
        if left == 0 {
            let any_approved: i64 = sqlx::query_scalar(
                "SELECT COUNT(*) FROM draft_parts WHERE draft_id = $1 AND state = 'approved'",
            )
            .bind(id)
            .fetch_one(&mut *tx)
            .await?;
            let reason = match decision {
                Decision::Reject { reason } => Some(reason.as_str()),
                _ => None,
            };
            sqlx::query(
                "UPDATE drafts SET state = $2, decided_at = $3, decided_by = $4, reason = $5 WHERE id = $1",
            )
            .bind(id)
            .bind(if any_approved > 0 { "approved" } else { "rejected" })
            .bind(ms(now))
            .bind(actor)
            .bind(reason)
            .execute(&mut *tx)
            .await?;
        }
        let channels: Vec<ChannelKind> = chosen.iter().map(|p| p.part.channel).collect();
        let versions: Vec<i64> = chosen.iter().map(|p| p.part.version).collect();
        audit(
            &mut Db::tx(&mut tx),
            &NewAudit {
                actor: actor.to_owned(),
                action,
                incident_id: Some(incident_id),
                draft_id: Some(id),
                detail: serde_json::json!({
                    "channels": channels, "versions": versions,
                    "recipients": decided.deliveries, "citizens": decided.citizens, "parts_left": left,
                    "reason": match decision { Decision::Reject { reason } => Some(reason), _ => None },
                }),
                at: now,
            },
        )
        .await?;
        tx.commit().await?;
        Ok(Some(decided))
    }

    async fn due_drafts(&self, now: Timestamp) -> Result<Vec<i64>> {
        Ok(sqlx::query_scalar(
            "SELECT id FROM drafts WHERE state = 'pending' AND publish_at IS NOT NULL AND publish_at <= $1
             ORDER BY id",
        )
        .bind(ms(now))
        .fetch_all(&self.reader)
        .await?)
    }

    async fn unannounced_drafts(&self, limit: u32) -> Result<Vec<Draft>> {
        let mut drafts = self
            .load_drafts(
                "d.announced_at IS NULL AND d.state = 'pending' AND $1 = 0",
                None,
                None,
                limit,
            )
            .await?;
        drafts.reverse();
        Ok(drafts)
    }

    async fn announce_draft(
        &self,
        id: i64,
        notices: &[DraftNotice],
        now: Timestamp,
    ) -> Result<u64> {
        let mut tx = self.write().await?;
        let found: Option<(i64, i64, i64)> = sqlx::query_as(
            "SELECT d.update_id, d.incident_id, u.origin_at
             FROM drafts d JOIN incident_updates u ON u.id = d.update_id WHERE d.id = $1",
        )
        .bind(id)
        .fetch_optional(&mut *tx)
        .await?;
        let Some((update_id, incident_id, origin_at)) = found else {
            return Ok(0);
        };
        let mut written = 0;
        for notice in notices.iter().filter(|n| !n.recipients.is_empty()) {
            // A notice written before (by a leader that stopped before marking the draft) is
            // found again, not duplicated.
            let message_id: i64 = sqlx::query_scalar(
                "INSERT INTO messages (update_id, channel, language, audience, subject, body, html, buttons, created_at)
                 VALUES ($1, $2, $3, $4, $5, $6, NULL, $7, $8)
                 ON CONFLICT (update_id, channel, language, audience) DO UPDATE SET update_id = excluded.update_id
                 RETURNING id",
            )
            .bind(update_id)
            .bind(notice.channel.as_str())
            .bind(&notice.language)
            .bind(format!("approval:{id}"))
            .bind(&notice.subject)
            .bind(&notice.body)
            .bind(notice.buttons.as_ref().map(json).transpose()?)
            .bind(ms(now))
            .fetch_one(&mut *tx)
            .await?;
            for (recipient, name) in &notice.recipients {
                written += sqlx::query(
                    "INSERT INTO deliveries (message_id, update_id, incident_id, address_id, subscriber_name, channel,
                                             recipient, state, next_attempt_at, origin_at, created_at, draft_id)
                     VALUES ($1, $2, $3, NULL, $4, $5, $6, 'pending', $7, $8, $7, $9)
                     ON CONFLICT (draft_id, channel, recipient) WHERE draft_id IS NOT NULL DO NOTHING",
                )
                .bind(message_id)
                .bind(update_id)
                .bind(incident_id)
                .bind(name)
                .bind(notice.channel.as_str())
                .bind(recipient)
                .bind(ms(now))
                .bind(origin_at)
                .bind(id)
                .execute(&mut *tx)
                .await?
                .rows_affected();
            }
        }
        sqlx::query("UPDATE drafts SET announced_at = $2 WHERE id = $1")
            .bind(id)
            .bind(ms(now))
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(written)
    }

    async fn record_audit(&self, entry: &NewAudit) -> Result<()> {
        let mut tx = self.write().await?;
        audit(&mut Db::tx(&mut tx), entry).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn audit_log(&self, incident_id: Option<i64>, limit: u32) -> Result<Vec<AuditEntry>> {
        let rows = sqlx::query(
            "SELECT id, at, actor, action, incident_id, draft_id, detail FROM audit_log
             WHERE ($1 = 0 OR incident_id = $1) ORDER BY id DESC LIMIT $2",
        )
        .bind(incident_id.unwrap_or(0))
        .bind(i64::from(limit))
        .fetch_all(&self.reader)
        .await?;
        rows.iter()
            .map(|row| {
                Ok(AuditEntry {
                    id: row.try_get("id")?,
                    at: ts(row.try_get("at")?)?,
                    actor: row.try_get("actor")?,
                    action: row.try_get("action")?,
                    incident_id: row.try_get("incident_id")?,
                    draft_id: row.try_get("draft_id")?,
                    detail: serde_json::from_str(row.try_get::<&str, _>("detail")?)
                        .unwrap_or(serde_json::Value::Null),
                })
            })
            .collect()
    }
}

/// The draft's state and incident, locked for the rest of the transaction on PostgreSQL.
async fn lock_draft(tx: &mut Tx, store: &SqlStore, id: i64) -> Result<Option<(String, i64)>> {
    let lock = store.dialect.pick("", "FOR UPDATE");
    Ok(sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT state, incident_id FROM drafts WHERE id = $1 {lock}"
    )))
    .bind(id)
    .fetch_optional(&mut **tx)
    .await?)
}
