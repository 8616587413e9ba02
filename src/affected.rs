//! Incidents' affected lists, as they are uploaded: the body is read as a stream, parsed row by
//! row (`read.rs`), each row checked (`domain::affected`) and given its channel, and the good
//! rows staged in the store in batches, each batch a transaction; a bad row is refused by its
//! line and problem and the rest go on. Only once the whole body has been read and found well
//! formed is the staging merged into the incident's list, in one transaction: a malformed upload
//! (bad quoting, bad JSON, an unknown column, no header) writes nothing. The fiscal code is
//! stored sealed; a person is found again by a keyed digest of who the row names, so an upload
//! repeated sends nobody twice. Nothing of a row is logged.

pub mod read;

use std::sync::Arc;

use bytes::Bytes;
use futures_util::{Stream, StreamExt};
use jiff::Timestamp;
use serde::Serialize;

use crate::domain::affected::{Via, check, choose, identity};
use crate::domain::subscriber::{ChannelKind, SubscriberRules};
use crate::render::Renderer;
use crate::store::{Merged, NewAffected, Store, StoreError};
use read::{CsvReader, JsonReader, Malformed, Reader};

/// Rows staged per transaction.
pub const STAGE_BATCH: usize = 1000;

/// The refused rows listed in an answer at most (all are counted).
pub const MAX_REFUSALS_LISTED: usize = 10_000;

/// What an upload is written in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Csv,
    Json,
}

/// A row refused: its line and the problem, never its contents.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct Refusal {
    pub line: u64,
    pub problem: String,
}

/// What an upload did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct UploadReport {
    /// Rows new to the list.
    pub accepted: u64,
    /// People already listed whose detail or language changed.
    pub updated: u64,
    /// People already listed (or listed twice in this upload) with nothing changed: nobody is
    /// sent anything twice.
    pub duplicates: u64,
    /// Rows refused, each listed in `refusals` (the first 10,000).
    pub refused: u64,
    pub refusals: Vec<Refusal>,
}

#[derive(Debug, thiserror::Error)]
pub enum UploadError {
    #[error("{0}")]
    Malformed(#[from] Malformed),
    #[error("the upload is larger than affected.max_upload_bytes ({0} bytes)")]
    TooLarge(usize),
    #[error("incident {0} not found")]
    NotFound(i64),
    #[error("cannot read the body: {0}")]
    Body(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// What uploads need: the store, the deployment's key (sealing fiscal codes, keying the rows'
/// digests), how numbers are read, the channels enabled and the templates' languages.
pub struct AffectedLists {
    pub store: Arc<dyn Store>,
    pub key: Vec<u8>,
    pub rules: SubscriberRules,
    pub vias: Vec<Via>,
    pub renderer: Renderer,
    /// Public statements are not held (`approval.audiences.public` is `auto`).
    pub public_auto: bool,
    pub max_upload_bytes: usize,
}

impl AffectedLists {
    /// What uploads need, from the validated settings and the channels `enabled`.
    pub fn new(
        store: &Arc<dyn Store>,
        key: &str,
        v: &crate::settings::Validated,
        enabled: &std::collections::BTreeSet<ChannelKind>,
    ) -> Arc<AffectedLists> {
        let s = &v.settings;
        Arc::new(AffectedLists {
            store: store.clone(),
            key: key.as_bytes().to_vec(),
            rules: v.subscriber_rules.clone(),
            vias: Via::enabled(enabled),
            renderer: v.renderer.clone(),
            public_auto: s.approval.policy("public").0 == crate::settings::ApprovalPolicy::Auto,
            max_upload_bytes: s.affected.max_upload_bytes,
        })
    }

    /// Reads, checks and stores an upload to an open incident's list.
    pub async fn upload<S, E>(
        &self,
        incident_id: i64,
        format: Format,
        body: S,
        now: Timestamp,
    ) -> Result<UploadReport, UploadError>
    where
        S: Stream<Item = Result<Bytes, E>> + Unpin,
        E: std::fmt::Display,
    {
        let incident = self
            .store
            .incident(incident_id)
            .await?
            .ok_or(UploadError::NotFound(incident_id))?;
        if incident.resolved_at.is_some() {
            return Err(StoreError::Conflict(format!(
                "incident {incident_id} is resolved: its affected list can no longer grow"
            ))
            .into());
        }
        let upload = crate::ids::random_hex(12);
        let result = self.stage(&upload, format, body, now).await;
        let mut report = match result {
            Ok(report) => report,
            Err(e) => {
                if let Err(dropped) = self.store.drop_staged(&upload).await {
                    tracing::warn!(error = %dropped, "cannot forget a refused upload's rows; retention will");
                }
                return Err(e);
            }
        };
        let merged = self
            .store
            .merge_affected(&upload, incident_id, self.public_auto, now)
            .await?
            .ok_or(UploadError::NotFound(incident_id))?;
        let Merged {
            new,
            updated,
            duplicates,
        } = merged;
        report.accepted = new;
        report.updated = updated;
        report.duplicates = duplicates;
        metrics::counter!("banditore_affected_rows_total", "outcome" => "accepted").increment(new);
        metrics::counter!("banditore_affected_rows_total", "outcome" => "refused")
            .increment(report.refused);
        tracing::info!(
            incident = incident_id,
            accepted = new,
            updated,
            duplicates,
            refused = report.refused,
            "affected list uploaded"
        );
        Ok(report)
    }

    async fn stage<S, E>(
        &self,
        upload: &str,
        format: Format,
        mut body: S,
        now: Timestamp,
    ) -> Result<UploadReport, UploadError>
    where
        S: Stream<Item = Result<Bytes, E>> + Unpin,
        E: std::fmt::Display,
    {
        let mut reader: Box<dyn Reader> = match format {
            Format::Csv => Box::new(CsvReader::default()),
            Format::Json => Box::new(JsonReader::default()),
        };
        let mut report = UploadReport::default();
        let mut read = Vec::new();
        let mut batch: Vec<(i64, NewAffected)> = Vec::with_capacity(STAGE_BATCH);
        let mut seen = 0usize;
        let mut seq = 0i64;
        loop {
            let chunk = body.next().await;
            match &chunk {
                Some(Ok(bytes)) => {
                    seen += bytes.len();
                    if seen > self.max_upload_bytes {
                        return Err(UploadError::TooLarge(self.max_upload_bytes));
                    }
                    reader.feed(bytes, &mut read)?;
                }
                Some(Err(e)) => return Err(UploadError::Body(e.to_string())),
                None => reader.finish(&mut read)?,
            }
            for (line, row) in read.drain(..) {
                seq += 1;
                match self.row(row.as_ref()) {
                    Ok(row) => batch.push((seq, row)),
                    Err(problem) => {
                        report.refused += 1;
                        if report.refusals.len() < MAX_REFUSALS_LISTED {
                            report.refusals.push(Refusal {
                                line,
                                problem: problem.to_string(),
                            });
                        }
                    }
                }
            }
            if batch.len() >= STAGE_BATCH || (chunk.is_none() && !batch.is_empty()) {
                self.store.stage_affected(upload, &batch, now).await?;
                batch.clear();
            }
            if chunk.is_none() {
                return Ok(report);
            }
        }
    }

    /// One row checked, its channel chosen, its fiscal code sealed.
    fn row(
        &self,
        raw: Option<&crate::domain::affected::RawRow>,
    ) -> Result<NewAffected, crate::domain::affected::Problem> {
        use crate::domain::affected::Problem;
        let raw = raw.ok_or(Problem::Empty)?;
        let row = check(raw, &self.rules)?;
        let reach = choose(&row, &self.vias)?;
        let channel = reach.via.channel();
        let language = self
            .renderer
            .language_for(channel, &row.language)
            .ok_or(Problem::NoChannel("no template language fits"))?;
        let fiscal_code = row.fiscal_code.as_ref().map(|cf| cf.seal(&self.key));
        // App IO's recipient is the sealed code, as every fiscal code at rest; its channel
        // opens it to send.
        let recipient = match (reach.via, &fiscal_code) {
            (Via::AppIo, Some(sealed)) => sealed.clone(),
            _ => reach.address,
        };
        Ok(NewAffected {
            digest: identity(&row, &self.key),
            fiscal_code,
            mobile: row.mobile.clone(),
            email: row.email.clone(),
            language,
            detail: row.detail.clone(),
            channel,
            recipient,
        })
    }
}
