//! Incidents' affected lists: the people whose appointments an outage reaches hear every public
//! statement published about it (approved by the communications office, or every update when
//! the `public` audience is `auto`) from the latest one published when their row was stored,
//! resolution included, each with their own detail. The statement is rendered once per update,
//! channel and language for the audience `affected` (the public statement's words, under the
//! public title approved with it, and a detail line filled per recipient at send time); the
//! leader's citizen writer then writes the rows' deliveries a batch at a time, each batch in its
//! own transaction, and a row never gets the same statement twice on a channel
//! (`deliveries_affected_once`). A row App IO refuses (not on IO, or the service turned off)
//! moves to its next way, SMS or email, and hears the refused statement there.

use jiff::Timestamp;

use super::{Router, context};
use crate::domain::subscriber::ChannelKind;
use crate::render::{AFFECTED, DETAIL};
use crate::settings::ApprovalPolicy;
use crate::store::{AffectedWork, DraftPart, NewMessage, StoreError};

/// Rows written per transaction.
pub const AFFECTED_BATCH: u32 = 2000;

/// Why a list's delivery was written cancelled.
const REJECTED: &str = "the communications office rejected this statement on this channel";

impl Router {
    pub(super) fn public_auto(&self) -> bool {
        self.approval.policy("public").0 == ApprovalPolicy::Auto
    }

    /// Writes the deliveries of every published statement to the rows of affected lists that
    /// have not had it, a batch at a time; the deliveries written. Skips the store's scan while
    /// nothing it reads changed since a scan that found nothing.
    pub async fn write_affected(&self, now: Timestamp) -> Result<u64, StoreError> {
        let auto = self.public_auto();
        // Whom App IO refused move to their next way first (their `updated_at` moves the
        // fingerprint on).
        let moved = self
            .store
            .reroute_refused(
                self.enabled.contains(&ChannelKind::Sms),
                self.enabled.contains(&ChannelKind::Email),
                now,
            )
            .await?;
        if moved > 0 {
            metrics::counter!("banditore_affected_rerouted_total").increment(moved);
            tracing::info!(
                rows = moved,
                "affected rows App IO refused moved to their next way"
            );
        }
        let fingerprint = self.store.affected_fingerprint(auto).await?;
        let idle = self
            .affected_idle
            .lock()
            .is_ok_and(|seen| seen.as_deref() == Some(fingerprint.as_str()));
        if idle {
            return Ok(0);
        }
        let enabled: Vec<ChannelKind> = self.enabled.iter().copied().collect();
        let work = self.store.affected_work(auto, &enabled).await?;
        let mut written = 0;
        for w in &work {
            // A statement rejected on this channel is written cancelled, so that its rows are
            // done with it and it takes no room from the work behind it.
            let (words, refused) = match self.office_approved(w).await? {
                Some(words) => (words, None),
                None => (None, Some(REJECTED)),
            };
            let message_id = match self.store.affected_message(w).await? {
                Some(id) => id,
                None => self.render_affected(w, words, now).await?,
            };
            loop {
                let n = self
                    .store
                    .write_affected_batch(w, message_id, AFFECTED_BATCH, refused, now)
                    .await?;
                if refused.is_none() {
                    written += n;
                }
                if n < u64::from(AFFECTED_BATCH) {
                    break;
                }
            }
        }
        if written > 0 {
            metrics::counter!("banditore_affected_deliveries_written_total").increment(written);
        }
        if work.is_empty()
            && let Ok(mut seen) = self.affected_idle.lock()
        {
            *seen = Some(fingerprint);
        }
        Ok(written)
    }

    /// Whether the communications office approved the statement of `w` on its channel and in
    /// its language (a draft is published once every part is decided): the part for that
    /// channel and language decides when the draft has one, else the status page's part in that
    /// language; a statement published with no draft (the `auto` policy) is approved as
    /// written. `Some` with the words approved for the status page, as the office last edited
    /// them, when there are some: the statement the list hears; `None` when it was rejected.
    async fn office_approved(
        &self,
        w: &AffectedWork,
    ) -> Result<Option<Option<String>>, StoreError> {
        let updates = self.store.incident_updates(w.incident_id).await?;
        let Some(seq) = updates.iter().find(|u| u.id == w.update_id).map(|u| u.seq) else {
            // Rendering names the missing update.
            return Ok(Some(None));
        };
        let drafts = self.store.published_drafts(w.incident_id, "public").await?;
        let parts: Vec<&DraftPart> = drafts
            .iter()
            .filter(|d| d.update_seq == seq)
            .flat_map(|d| &d.parts)
            .collect();
        let part = |channel: ChannelKind| {
            parts
                .iter()
                .copied()
                .find(|p| p.channel == channel && p.language == w.language)
        };
        let status = part(ChannelKind::Status);
        let deciding = part(w.channel).or(status);
        if deciding.is_some_and(|p| p.state != "approved") {
            return Ok(None);
        }
        Ok(Some(
            status
                .filter(|p| p.state == "approved" && !p.body.trim().is_empty())
                .map(|p| p.body.clone()),
        ))
    }

    /// The statement of `work`'s update for affected lists, rendered and stored; its id. The
    /// office's approved `words` for the status page, when there are some, stand for the
    /// update's text.
    async fn render_affected(
        &self,
        w: &AffectedWork,
        words: Option<String>,
        now: Timestamp,
    ) -> Result<i64, StoreError> {
        let Some(incident) = self.store.incident(w.incident_id).await? else {
            return Err(StoreError::Corrupt(format!(
                "an affected list names incident {}, which is gone",
                w.incident_id
            )));
        };
        let updates = self.store.incident_updates(w.incident_id).await?;
        let Some(update) = updates.iter().find(|u| u.id == w.update_id) else {
            return Err(StoreError::Corrupt(format!(
                "update {} of incident {} is gone",
                w.update_id, w.incident_id
            )));
        };
        let alerts = self.store.incident_alerts(w.incident_id).await?;
        // The public's statement: no monitors' words, the page's names of the services.
        let mut ctx = context(&incident, update, "public", &self.public_url);
        self.name_services_for_the_public(&mut ctx, &incident, &alerts, &w.language);
        ctx.audience = AFFECTED.to_owned();
        ctx.ack_url = None;
        ctx.detail = Some(DETAIL);
        if let Some(words) = words {
            ctx.update.body = Some(words);
            ctx.update.author = None;
        }
        // The public title the communications office approved with this statement, if any.
        if let Some(title) = self
            .store
            .published_drafts(w.incident_id, "public")
            .await?
            .iter()
            .filter(|d| d.update_seq == update.seq)
            .flat_map(|d| &d.parts)
            .find(|p| {
                p.channel == ChannelKind::Status
                    && p.language == w.language
                    && p.state == "approved"
            })
            .and_then(|p| p.subject.clone())
            .filter(|t| !t.trim().is_empty())
        {
            ctx.incident.title = title;
        }
        let mut failures = Vec::new();
        let rendered = match self.renderer.render_in(w.channel, &w.language, &ctx) {
            Ok(r) => r,
            Err(e) => {
                tracing::error!(incident = incident.id, update = update.seq, channel = %w.channel,
                    error = %e, "template failed; sending the plain fallback text to the affected list");
                failures.push(w.channel);
                super::fallback(&ctx, &w.language)
            }
        };
        for channel in failures {
            metrics::counter!("banditore_render_failures_total", "channel" => channel.as_str())
                .increment(1);
        }
        let mut tx = self.store.begin().await?;
        let id = tx
            .insert_message(&NewMessage {
                update_id: w.update_id,
                channel: w.channel,
                language: rendered.language,
                audience: AFFECTED.to_owned(),
                subject: rendered.subject,
                body: rendered.text,
                html: rendered.html,
                created_at: now,
            })
            .await?
            .id;
        tx.commit().await?;
        Ok(id)
    }
}
