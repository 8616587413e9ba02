//! The escalation ladder: a desk that has not said "seen" is reached on more channels as time goes
//! by. When the router first sends a desk with a policy a message about an incident, the steps
//! that wait are stored as the desk's ladder for it (timers in the store, like the incident's own,
//! so they survive a restart and move with the leader). The leader's pipeline climbs them
//! ([`Router::escalate_in`], time a parameter): a due step is marked `resolved` when the incident
//! has ended, `acknowledged` when the desk has said "seen", and otherwise `fired`, writing the
//! incident's latest update to the desk's addresses on the step's channels, rendered as the router
//! renders it. Each step leaves `waiting` by one conditional update, so two replicas that both
//! believe they lead fire it once. An acknowledgement stops the desk's ladder in its own
//! transaction (`AckStore::acknowledge`), and routing the resolution ends the incident's.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use jiff::{SignedDuration, Timestamp};

use super::{Recipient, Router, delivery_rows, follows, severities, wanted_channels};
use crate::domain::IncidentStatus;
use crate::domain::escalation::EscalationPolicy;
use crate::domain::subscriber::{ChannelKind, PUBLIC};
use crate::settings::ApprovalPolicy;
use crate::store::{
    EscalationRow, EscalationState, IncidentRow, NewEscalationStep, NewMessage, StoreError,
    SubscriberRow, Tx,
};

/// Due steps decided in one step of the pipeline; more are taken at once after.
const STEP_BATCH: u32 = 64;

/// What one [`Router::escalate_in`] did.
#[derive(Debug, Clone, Default)]
pub struct EscalationReport {
    /// Steps that sent their channels.
    pub fired: u64,
    /// Steps that found the desk had acknowledged.
    pub acknowledged: u64,
    /// Steps that found the incident ended.
    pub resolved: u64,
    pub deliveries: u64,
    /// The channels that got deliveries.
    pub channels: BTreeSet<ChannelKind>,
    /// A full batch was due: step again at once.
    pub more: bool,
    /// When the earliest step still waiting is due.
    pub next_due: Option<Timestamp>,
    /// The channels whose template failed, once per message sent as the plain fallback.
    pub render_failures: Vec<ChannelKind>,
}

impl EscalationReport {
    /// Once the step is committed: counts the steps by outcome, so that a step rolled back and
    /// taken again is not counted twice.
    pub fn committed(&self) {
        count("fired", self.fired);
        count("acknowledged", self.acknowledged);
        count("resolved", self.resolved);
        for channel in &self.render_failures {
            metrics::counter!("banditore_render_failures_total", "channel" => channel.as_str())
                .increment(1);
        }
    }
}

/// Counts escalation steps that left `waiting`, by `outcome`.
pub fn count(outcome: &'static str, steps: u64) {
    if steps > 0 {
        metrics::counter!("banditore_escalations_total", "outcome" => outcome).increment(steps);
    }
}

impl Router {
    /// Gives each audience's escalation policy (`[escalation.audiences]`); a subscriber's own
    /// replaces its audience's.
    pub fn with_escalation(mut self, policies: Arc<BTreeMap<String, EscalationPolicy>>) -> Router {
        self.escalation = policies;
        self
    }

    /// The policy a desk climbs: its own, or its audience's. None for the public audience
    /// (citizens and the public channels are told once) and for an audience whose messages wait
    /// for approval (a step never sends what nobody approved).
    pub(super) fn policy_of<'a>(&'a self, desk: &'a SubscriberRow) -> Option<&'a EscalationPolicy> {
        if !self.escalates(&desk.audience) {
            return None;
        }
        desk.escalation
            .as_ref()
            .or_else(|| self.escalation.get(&desk.audience))
    }

    /// Whether an audience's desks may climb a ladder: not the public, nor an audience whose
    /// messages wait for approval.
    fn escalates(&self, audience: &str) -> bool {
        audience != PUBLIC && self.approval.policy(audience).0 == ApprovalPolicy::Auto
    }

    /// Writes the ladder of each desk in `desks` that has none yet for the incident: its steps
    /// that wait, due at `now` plus their delay.
    pub(super) async fn start_ladders(
        &self,
        tx: &mut dyn Tx,
        incident_id: i64,
        desks: &BTreeSet<i64>,
        subscribers: &[SubscriberRow],
        now: Timestamp,
    ) -> Result<(), StoreError> {
        if desks.is_empty() {
            return Ok(());
        }
        let started: BTreeSet<i64> = tx.escalated_desks(incident_id).await?.into_iter().collect();
        for desk in subscribers
            .iter()
            .filter(|s| desks.contains(&s.id) && !started.contains(&s.id))
        {
            let Some(policy) = self.policy_of(desk) else {
                continue;
            };
            let steps: Vec<NewEscalationStep> = policy
                .later_steps()
                .map(|(i, step)| NewEscalationStep {
                    step: i as i64,
                    channels: step.channels.clone(),
                    due_at: SignedDuration::try_from(step.after)
                        .ok()
                        .and_then(|after| now.checked_add(after).ok())
                        .unwrap_or(now),
                })
                .collect();
            tx.start_escalation(incident_id, desk.id, &steps, now)
                .await?;
        }
        Ok(())
    }

    /// [`Router::escalate_in`] in a transaction of its own.
    pub async fn escalate(&self, now: Timestamp) -> Result<EscalationReport, StoreError> {
        let mut tx = self.store.begin().await?;
        let report = self.escalate_in(tx.as_mut(), now).await?;
        tx.commit().await?;
        report.committed();
        Ok(report)
    }

    /// Decides every step due at `now` inside the caller's transaction (the pipeline's); the
    /// caller commits, then calls [`EscalationReport::committed`].
    pub async fn escalate_in(
        &self,
        tx: &mut dyn Tx,
        now: Timestamp,
    ) -> Result<EscalationReport, StoreError> {
        // Most steps find none due: the earliest step's time says so in one statement.
        let next_due = tx.next_escalation_at().await?;
        if next_due.is_none_or(|at| at > now) {
            return Ok(EscalationReport {
                next_due,
                ..EscalationReport::default()
            });
        }
        let due = tx.due_escalations(now, STEP_BATCH).await?;
        let mut report = EscalationReport {
            more: due.len() == STEP_BATCH as usize,
            ..EscalationReport::default()
        };
        if !due.is_empty() {
            let (_, subscribers) = self.desks(&mut *tx).await?;
            for step in &due {
                let incident = tx.incident(step.incident_id).await?;
                let outcome = match &incident {
                    Some(i) if i.status != IncidentStatus::Resolved && i.resolved_at.is_none() => {
                        if tx
                            .desk_acknowledged(step.incident_id, step.subscriber_id)
                            .await?
                        {
                            EscalationState::Acknowledged
                        } else {
                            EscalationState::Fired
                        }
                    }
                    _ => EscalationState::Resolved,
                };
                if !tx.settle_escalation(step.id, outcome, now).await? {
                    // Another would-be leader, or an acknowledgement, came first.
                    continue;
                }
                match (outcome, incident) {
                    (EscalationState::Fired, Some(incident)) => {
                        report.fired += 1;
                        self.fire(&mut *tx, step, &incident, &subscribers, now, &mut report)
                            .await?;
                    }
                    (EscalationState::Acknowledged, _) => report.acknowledged += 1,
                    _ => report.resolved += 1,
                }
            }
        }
        report.next_due = tx.next_escalation_at().await?;
        Ok(report)
    }

    /// Sends the incident's latest routed update to the desk's active addresses on the step's
    /// channels, one message per (channel, language) as the router writes them.
    async fn fire(
        &self,
        tx: &mut dyn Tx,
        step: &EscalationRow,
        incident: &IncidentRow,
        subscribers: &[SubscriberRow],
        now: Timestamp,
        report: &mut EscalationReport,
    ) -> Result<(), StoreError> {
        let Some(desk) = subscribers.iter().find(|s| s.id == step.subscriber_id) else {
            return Ok(());
        };
        if !self.escalates(&desk.audience) {
            // The desk was moved to such an audience after its ladder started: what it is sent
            // now waits for approval, which a step never bypasses.
            tracing::info!(desk = %desk.name, incident = incident.id, step = step.step,
                audience = %desk.audience, "escalation step sends nothing: the desk's audience no longer escalates");
            return Ok(());
        }
        let Some(update) = tx.latest_routed_update(incident.id).await? else {
            return Ok(());
        };
        let alerts = tx.alerts(incident.id).await?;
        // The router's rule: only where the desk follows the incident (a subscription limited to
        // email sends no text; a chat that muted the service hears nothing).
        let label_sets = severities(incident, &alerts);
        let wanted = wanted_channels(desk, &label_sets);
        let none = BTreeSet::new();
        let mut groups: BTreeMap<(ChannelKind, String), Vec<Recipient>> = BTreeMap::new();
        for address in desk.addresses.iter().filter(|a| {
            a.is_active()
                && step.channels.contains(&a.channel)
                && self.enabled.contains(&a.channel)
                && follows(desk, a, &wanted, &label_sets, &none)
        }) {
            let Some(language) = self.language_of(desk, address) else {
                continue;
            };
            groups
                .entry((address.channel, language))
                .or_default()
                .push(Recipient {
                    address_id: address.id,
                    address: &address.address,
                    subscriber_name: &desk.name,
                });
        }
        let mut written = 0;
        for ((channel, language), recipients) in groups {
            let rendered = self.render_group(
                incident,
                &alerts,
                &update,
                channel,
                &language,
                &desk.audience,
                &mut report.render_failures,
            );
            let message_id = tx
                .insert_message(&NewMessage {
                    update_id: update.id,
                    channel,
                    language: rendered.language.clone(),
                    audience: desk.audience.clone(),
                    subject: rendered.subject,
                    body: rendered.text,
                    html: rendered.html,
                    created_at: now,
                })
                .await?
                .id;
            // Its latency counts from the step, not from the signal: a text held back five
            // minutes by the policy is not a text five minutes late
            // (`banditore_signal_to_sent_seconds`).
            let mut rows = delivery_rows(message_id, &update, channel, &recipients, now);
            for row in &mut rows {
                row.origin_at = step.due_at;
            }
            let n = tx.insert_deliveries(&rows).await?;
            if n > 0 {
                report.channels.insert(channel);
            }
            written += n;
        }
        report.deliveries += written;
        let channels: Vec<&str> = step.channels.iter().map(|c| c.as_str()).collect();
        tracing::info!(
            desk = %desk.name,
            incident = incident.id,
            step = step.step,
            channels = %channels.join(","),
            deliveries = written,
            "escalation step fired: nobody at the desk has acknowledged yet"
        );
        Ok(())
    }
}
