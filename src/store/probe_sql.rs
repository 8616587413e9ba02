//! [`ProbeStore`] over the SQL store.

use async_trait::async_trait;
use jiff::Timestamp;
use sqlx::Row;

use super::rows::{ms, ts};
use super::sql::SqlStore;
use super::{NewSilence, Observation, ProbeStore, Result, SilenceRow, StoreError, Verdict};

#[async_trait]
impl ProbeStore for SqlStore {
    async fn record_observations(&self, observations: &[Observation]) -> Result<()> {
        if observations.is_empty() {
            return Ok(());
        }
        let mut tx = self.write().await?;
        for o in observations {
            sqlx::query(
                "INSERT INTO probe_observations (probe, instance, state, detail, finding, cert_days_left, observed_at)
                 VALUES ($1, $2, $3, $4, $5, $6, $7)
                 ON CONFLICT (probe, instance) DO UPDATE SET state = excluded.state,
                   detail = excluded.detail, finding = excluded.finding,
                   cert_days_left = excluded.cert_days_left, observed_at = excluded.observed_at",
            )
            .bind(&o.probe)
            .bind(&o.instance)
            .bind(&o.state)
            .bind(&o.detail)
            .bind(
                o.finding
                    .as_ref()
                    .map(|f| serde_json::to_string(f).map_err(|e| StoreError::Corrupt(e.to_string())))
                    .transpose()?,
            )
            .bind(o.cert_days_left)
            .bind(ms(o.observed_at))
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    async fn observations(&self, since: Option<Timestamp>) -> Result<Vec<Observation>> {
        let rows = sqlx::query(
            "SELECT probe, instance, state, detail, finding, cert_days_left, observed_at
             FROM probe_observations WHERE observed_at >= $1 ORDER BY probe, instance",
        )
        .bind(since.map_or(i64::MIN, ms))
        .fetch_all(&self.reader)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(Observation {
                    probe: r.try_get("probe")?,
                    instance: r.try_get("instance")?,
                    state: r.try_get("state")?,
                    detail: r.try_get("detail")?,
                    // A finding this version cannot read (another version's) is left out: the
                    // signal then says what the probe is, without it.
                    finding: r
                        .try_get::<Option<&str>, _>("finding")?
                        .and_then(|f| serde_json::from_str(f).ok()),
                    cert_days_left: r.try_get("cert_days_left")?,
                    observed_at: ts(r.try_get("observed_at")?)?,
                })
            })
            .collect()
    }

    async fn observers(&self, since: Timestamp) -> Result<Vec<String>> {
        Ok(sqlx::query_scalar(
            "SELECT DISTINCT instance FROM probe_observations WHERE observed_at >= $1
             ORDER BY instance",
        )
        .bind(ms(since))
        .fetch_all(&self.reader)
        .await?)
    }

    async fn verdicts(&self) -> Result<Vec<Verdict>> {
        let rows = sqlx::query("SELECT subject, state, detail, changed_at FROM probe_verdicts")
            .fetch_all(&self.reader)
            .await?;
        rows.iter()
            .map(|r| {
                Ok(Verdict {
                    subject: r.try_get("subject")?,
                    state: r.try_get("state")?,
                    detail: r.try_get("detail")?,
                    changed_at: ts(r.try_get("changed_at")?)?,
                })
            })
            .collect()
    }

    async fn set_verdict(&self, v: &Verdict) -> Result<()> {
        let mut tx = self.write().await?;
        sqlx::query(
            "INSERT INTO probe_verdicts (subject, state, detail, changed_at) VALUES ($1, $2, $3, $4)
             ON CONFLICT (subject) DO UPDATE SET state = excluded.state, detail = excluded.detail,
               changed_at = excluded.changed_at",
        )
        .bind(&v.subject)
        .bind(&v.state)
        .bind(&v.detail)
        .bind(ms(v.changed_at))
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    async fn insert_silence(&self, s: &NewSilence) -> Result<i64> {
        let matchers =
            serde_json::to_string(&s.matchers).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        let mut tx = self.write().await?;
        let id: i64 = sqlx::query_scalar(
            "INSERT INTO silences (matchers, starts_at, ends_at, comment, created_by, created_at)
             VALUES ($1, $2, $3, $4, $5, $6) RETURNING id",
        )
        .bind(matchers)
        .bind(ms(s.starts_at))
        .bind(ms(s.ends_at))
        .bind(&s.comment)
        .bind(&s.created_by)
        .bind(ms(s.created_at))
        .fetch_one(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(id)
    }

    async fn silences(&self, now: Timestamp) -> Result<Vec<SilenceRow>> {
        let rows = sqlx::query(
            "SELECT id, matchers, starts_at, ends_at, comment, created_by, created_at
             FROM silences WHERE ends_at > $1 ORDER BY id DESC",
        )
        .bind(ms(now))
        .fetch_all(&self.reader)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(SilenceRow {
                    id: r.try_get("id")?,
                    matchers: serde_json::from_str(r.try_get::<&str, _>("matchers")?)
                        .map_err(|e| StoreError::Corrupt(format!("silence matchers: {e}")))?,
                    starts_at: ts(r.try_get("starts_at")?)?,
                    ends_at: ts(r.try_get("ends_at")?)?,
                    comment: r.try_get("comment")?,
                    created_by: r.try_get("created_by")?,
                    created_at: ts(r.try_get("created_at")?)?,
                })
            })
            .collect()
    }

    async fn expire_silence(&self, id: i64, now: Timestamp) -> Result<bool> {
        let mut tx = self.write().await?;
        let done = sqlx::query("UPDATE silences SET ends_at = $2 WHERE id = $1 AND ends_at > $2")
            .bind(id)
            .bind(ms(now))
            .execute(&mut *tx)
            .await?
            .rows_affected();
        tx.commit().await?;
        Ok(done > 0)
    }
}
