//! Public statements to a region's citizens. The router never holds the citizens in memory: when
//! it holds a public statement for approval it only counts, in SQL, the citizens who may hear
//! it, by channel and language, and notes the highest citizen id. Once a part is approved, the
//! leader's citizen writer reads the citizens a few thousand at a time, decides who follows the
//! incident exactly as the router would, and writes their deliveries, each batch with the part's
//! cursor in one transaction: the first messages leave within a moment of the approval, a leader
//! that stops resumes where the last batch ended, and nobody is written twice.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use jiff::Timestamp;
use tokio_util::sync::CancellationToken;

use super::{Router, follows_with_choices};
use crate::cluster::Leadership;
use crate::domain::matcher::all_match;
use crate::domain::subscriber::{ChannelKind, Language};
use crate::domain::{Labels, Severity, UpdateKind};
use crate::settings::ApprovalPolicy;
use crate::store::{
    AlertRow, IncidentOrigin, IncidentRow, NewDelivery, Store, StoreError, SubscriberRow, Topic,
    Tx, UpdateRow,
};
use crate::wake::Wakers;

/// Citizens read and written per transaction: small enough to keep the write lock short, large
/// enough that writing stays well ahead of sending.
pub const CITIZEN_BATCH: u32 = 2000;

/// The citizens a held public statement reaches: (channel, template language) → about how many
/// addresses, and the highest citizen id at that moment.
pub(super) struct HeldCitizens {
    pub groups: BTreeMap<(ChannelKind, String), u64>,
    pub through: i64,
}

/// What one step of the citizen writer did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CitizenReport {
    /// Deliveries written.
    pub deliveries: u64,
    /// Whether a part was found: step again at once.
    pub more: bool,
}

/// The signals' label sets with their peak severities (and a manual incident's own labels).
fn label_sets<'a>(
    incident: &'a IncidentRow,
    alerts: &'a [AlertRow],
) -> Vec<(&'a Labels, Severity)> {
    let mut sets: Vec<(&Labels, Severity)> = alerts
        .iter()
        .map(|a| (&a.labels, a.peak_severity))
        .collect();
    if incident.origin == IncidentOrigin::Manual {
        sets.push((&incident.labels, incident.severity));
    }
    sets
}

/// Whether this citizen's address follows the incident: the router's rule for every subscriber
/// (see `Router::recipients`), for one address.
fn citizen_follows(
    subscriber: &SubscriberRow,
    address: &crate::store::AddressRow,
    label_sets: &[(&Labels, Severity)],
    notified: &BTreeSet<(i64, ChannelKind)>,
) -> bool {
    if !address.services.is_empty() {
        return follows_with_choices(subscriber, address, label_sets, notified);
    }
    notified.contains(&(address.id, address.channel))
        || subscriber
            .subscriptions
            .iter()
            .filter(|sub| sub.wants_channel(address.channel))
            .any(|sub| {
                label_sets.iter().any(|(labels, severity)| {
                    *severity >= sub.min_severity && all_match(&sub.matchers, labels)
                })
            })
}

impl Router {
    /// For a public statement about to be held: the citizens who may hear it. Those following a
    /// status-page service the incident concerns; for a later update of an incident that
    /// concerns none any more, every citizen if an earlier statement about it reached citizens
    /// (who heard it hears the rest). None when public statements are not held (citizens hear
    /// approved statements only).
    pub(super) async fn held_citizens(
        &self,
        tx: &mut dyn Tx,
        incident: &IncidentRow,
        alerts: &[AlertRow],
        update: &UpdateRow,
    ) -> Result<Option<HeldCitizens>, StoreError> {
        if self.approval.policy("public").0 == ApprovalPolicy::Auto {
            return Ok(None);
        }
        let sets = label_sets(incident, alerts);
        let labels: Vec<&Labels> = sets.iter().map(|(l, _)| *l).collect();
        let concerned: Vec<String> = crate::board::concerned(&self.status_services, &labels)
            .into_iter()
            .map(|s| s.id.clone())
            .collect();
        // The followers of the concerned services are counted; when the incident concerns none
        // any more, every citizen may have heard it (the writer asks who did, batch by batch).
        let every = concerned.is_empty()
            && update.kind != UpdateKind::Opened
            && tx.citizens_heard(incident.id).await?;
        if concerned.is_empty() && !every {
            return Ok(None);
        }
        let (found, through) = tx
            .citizen_groups((!every).then_some(concerned.as_slice()))
            .await?;
        let mut groups: BTreeMap<(ChannelKind, String), u64> = BTreeMap::new();
        for group in found {
            if !self.enabled.contains(&group.channel) {
                continue;
            }
            let Ok(wanted) = Language::try_from(group.language) else {
                continue;
            };
            if let Some(language) = self.renderer.language_for(group.channel, &wanted) {
                *groups.entry((group.channel, language)).or_default() += group.addresses;
            }
        }
        Ok((!groups.is_empty()).then_some(HeldCitizens { groups, through }))
    }

    /// Writes the next batch of citizens' deliveries of the oldest approved part that has some
    /// left. Time is a parameter: `now` is the deliveries' creation time.
    pub async fn write_citizens(&self, now: Timestamp) -> Result<CitizenReport, StoreError> {
        let Some(part) = self.store.next_citizen_part().await? else {
            return Ok(CitizenReport::default());
        };
        let batch = self
            .store
            .citizens_after(part.done, part.through, CITIZEN_BATCH)
            .await?;
        // A short batch is the last: the cursor goes to the end.
        let to = match batch.last() {
            Some(last) if batch.len() as u32 == CITIZEN_BATCH => last.id,
            _ => part.through,
        };
        let incident = self.store.incident(part.incident_id).await?;
        let mut rows = Vec::new();
        if let Some(incident) = incident {
            let alerts = self.store.incident_alerts(part.incident_id).await?;
            let sets = label_sets(&incident, &alerts);
            let candidates: Vec<i64> = batch
                .iter()
                .flat_map(|s| s.addresses.iter())
                .filter(|a| a.channel == part.channel && a.is_active())
                .map(|a| a.id)
                .collect();
            let notified: BTreeSet<(i64, ChannelKind)> = if part.update_kind == UpdateKind::Opened {
                BTreeSet::new()
            } else {
                self.store
                    .notified_among(part.incident_id, &candidates)
                    .await?
                    .into_iter()
                    .collect()
            };
            for subscriber in &batch {
                for address in &subscriber.addresses {
                    if address.channel != part.channel || !address.is_active() {
                        continue;
                    }
                    let wanted = address.language.as_ref().unwrap_or(&subscriber.language);
                    if self
                        .renderer
                        .language_for(address.channel, wanted)
                        .as_deref()
                        != Some(part.language.as_str())
                    {
                        continue;
                    }
                    if !citizen_follows(subscriber, address, &sets, &notified) {
                        continue;
                    }
                    rows.push(NewDelivery {
                        message_id: part.message_id,
                        update_id: part.update_id,
                        incident_id: part.incident_id,
                        address_id: address.id,
                        subscriber_name: subscriber.name.clone(),
                        channel: part.channel,
                        recipient: address.address.clone(),
                        origin_at: part.origin_at,
                        created_at: now,
                    });
                }
            }
        }
        let written = self
            .store
            .write_citizen_batch(part.part_id, part.done, to, &rows)
            .await?;
        if let Some(n) = written {
            metrics::counter!("banditore_citizen_deliveries_written_total").increment(n);
            if to == part.through {
                tracing::info!(
                    draft = part.draft_id,
                    channel = %part.channel,
                    language = %part.language,
                    "every citizen's delivery of the statement is written"
                );
            }
        }
        Ok(CitizenReport {
            deliveries: written.unwrap_or(0),
            more: true,
        })
    }
}

/// The leader's citizen writer: writes batches while approved parts have citizens left, and
/// then the deliveries of published statements to incidents' affected lists. Woken by its bell
/// beside the dispatchers' (rung by every decision on a draft and every upload to an affected
/// list, here or on another replica, and after a step that routed updates while the public
/// audience publishes without approval; not for a desk's message), and every `poll_interval`
/// in any case (App IO's refusals wait for it).
pub struct CitizenWriter {
    pub router: Router,
    pub store: Arc<dyn Store>,
    pub wake: Wakers,
    pub leadership: Leadership,
    pub poll_interval: Duration,
}

impl CitizenWriter {
    pub async fn run(self, shutdown: CancellationToken) {
        let bell = self.wake.dispatch.statements_bell();
        let mut leadership = self.leadership.clone();
        let mut failures: u32 = 0;
        loop {
            if !leadership.is_leader() {
                tokio::select! {
                    _ = shutdown.cancelled() => break,
                    _ = leadership.wait() => {}
                }
                continue;
            }
            if shutdown.is_cancelled() {
                break;
            }
            let step = async {
                let mut report = self.router.write_citizens(Timestamp::now()).await?;
                if !report.more {
                    report.deliveries += self.router.write_affected(Timestamp::now()).await?;
                }
                Ok::<_, StoreError>(report)
            };
            match step.await {
                Ok(report) => {
                    failures = 0;
                    if report.deliveries > 0 {
                        self.wake.dispatch.ring();
                        self.store.announce(Topic::Deliveries).await;
                    }
                    if report.more {
                        continue;
                    }
                }
                Err(e) => {
                    failures += 1;
                    tracing::warn!(error = %e, "writing citizens' deliveries failed; retrying");
                }
            }
            let wait = if failures > 0 {
                Duration::from_millis(100 * u64::from(failures.min(50)))
            } else {
                self.poll_interval
            };
            tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = bell.notified() => {}
                _ = tokio::time::sleep(wait) => {}
            }
        }
    }
}
