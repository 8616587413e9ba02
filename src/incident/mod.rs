//! The incident engine: turns stored signals into incidents and incident updates.
//!
//! One [`Engine::step`] is one write transaction: it applies a batch of unprocessed signals to
//! the alerts and incidents they concern, then evaluates every incident whose timer is due (group
//! wait, update interval, flap hold-down) with [`crate::domain::incident::evaluate`], writing an
//! update for each announcement. Updates are picked up by the router. Because the signals are
//! marked processed in the same transaction, a crash at any point replays cleanly. A step's
//! reads and writes go many rows to a statement, and an incident that only gains new alerts
//! inside its wait is told to wait without its alerts being read
//! ([`crate::domain::incident::must_wait`]): a storm of new alerts costs a few statements a step.
//!
//! A firing alert that expires (see [`crate::domain::Signal::lease`]) and is not seen again by
//! then resolves in the first step at or after that moment, as if a resolution had arrived
//! then; `next_eval` wakes the engine for it. A lease counts from the engine's start at the
//! earliest ([`Engine::awake_since`]): re-sends refused while the process was down are not missing.
//!
//! Operators' manual incidents and updates go through [`Engine::open_manual`] and
//! [`Engine::post_update`], in their own transactions.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::Arc;

use jiff::Timestamp;
use serde::Deserialize;

use crate::domain::incident::{
    Announced, Decision, IncidentState, Timing, evaluate, must_wait, wait_ends,
};
use crate::domain::{IncidentStatus, Labels, Severity, SignalStatus, UpdateKind, text};
use crate::ingest::coalesce::{self, Coalescer};
use crate::store::{
    AlertRow, IncidentOrigin, IncidentRow, NewIncident, NewUpdate, SignalMark, SignalSnapshot,
    Store, StoreError, StoredSignal, Tx, UpdateRow, Written,
};

/// How many signals one step takes at most.
const SIGNAL_BATCH: u32 = 500;
/// How many due incidents one step evaluates at most.
const DUE_BATCH: u32 = 500;

#[derive(Debug, Clone, Default)]
pub struct StepReport {
    pub signals: usize,
    pub updates: usize,
    /// When the engine must run again even if no signal arrives.
    pub next_eval: Option<Timestamp>,
    /// True when a full batch was taken: there may be more to do right away.
    pub more: bool,
    /// Signals applied, by source.
    pub sources: BTreeMap<&'static str, u64>,
    /// Per fingerprint, the last signal applied, when its alert is left firing the digest of
    /// that signal's content, and the alert's lease (see [`Coalescer::applied`]).
    pub applied: Vec<Applied>,
    /// Fingerprints whose alert expired in this step.
    pub expired: Vec<String>,
    /// The coalescer's epoch when the step began.
    pub epoch: u64,
    /// Each incident the step wrote an update for, as it left it, by id: the router of the same
    /// transaction reads it from here.
    pub written: BTreeMap<i64, Written>,
}

/// What a step applied to one fingerprint, for [`Coalescer::applied`].
#[derive(Debug, Clone)]
pub struct Applied {
    pub fingerprint: String,
    pub through: i64,
    pub digest: Option<u64>,
    pub lease: Option<jiff::SignedDuration>,
}

#[derive(Clone)]
pub struct Engine {
    store: Arc<dyn Store>,
    timing: Timing,
    group_by: Vec<String>,
    /// Told what each step applied, so that ingest can answer re-sends that change nothing.
    coalescer: Option<Coalescer>,
    /// Since when this process has been up: no alert expires sooner than one lease after it,
    /// since re-sends that fell while it was down were refused, not missing.
    awake_since: Timestamp,
}

/// A manual incident, as posted to `POST /api/v1/incidents`.
#[derive(Debug, Clone, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ManualIncident {
    pub title: String,
    #[serde(default = "default_status")]
    pub status: IncidentStatus,
    #[serde(default = "default_severity")]
    pub severity: Severity,
    /// Labels subscriptions match on, such as `service` and `area`.
    #[serde(default)]
    #[schema(value_type = BTreeMap<String, String>)]
    pub labels: Labels,
    pub body: Option<String>,
}

fn default_status() -> IncidentStatus {
    IncidentStatus::Investigating
}

fn default_severity() -> Severity {
    Severity::Major
}

/// A manual update, as posted to `POST /api/v1/incidents/{id}/updates`.
#[derive(Debug, Clone, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ManualUpdate {
    pub status: Option<IncidentStatus>,
    pub severity: Option<Severity>,
    pub body: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum ManualError {
    #[error("{field}: {message}")]
    Invalid {
        field: &'static str,
        message: String,
    },
    #[error("incident {0} not found")]
    NotFound(i64),
    #[error("incident {0} is already resolved")]
    Resolved(i64),
    #[error(transparent)]
    Store(#[from] StoreError),
}

const MAX_TITLE: usize = 200;
const MAX_BODY: usize = 10_000;

/// Checks an operator's text: `written` is [`text::one_line`] for a title (it becomes a mail
/// subject and a feed's title), [`text::lines`] for a body.
fn check_text(
    field: &'static str,
    value: &str,
    max: usize,
    written: fn(&str) -> Result<(), text::Unwritable>,
) -> Result<(), ManualError> {
    if value.trim().is_empty() {
        return Err(ManualError::Invalid {
            field,
            message: "must not be empty".into(),
        });
    }
    if value.chars().count() > max {
        return Err(ManualError::Invalid {
            field,
            message: format!("is longer than {max} characters"),
        });
    }
    written(value).map_err(|refused| ManualError::Invalid {
        field,
        message: refused.to_string(),
    })
}

impl Engine {
    /// Once a step is committed: counts its signals as processed and tells the coalescer what
    /// it applied.
    pub fn committed(&self, report: &StepReport) {
        for (source, n) in &report.sources {
            metrics::counter!("banditore_signals_processed_total", "source" => *source)
                .increment(*n);
        }
        if !report.expired.is_empty() {
            metrics::counter!("banditore_alerts_expired_total")
                .increment(report.expired.len() as u64);
        }
        if let Some(c) = &self.coalescer {
            for a in &report.applied {
                c.applied(report.epoch, &a.fingerprint, a.through, a.digest, a.lease);
            }
            for fingerprint in &report.expired {
                c.expired(fingerprint);
            }
        }
    }

    /// Tells `coalescer` what every step applied.
    pub fn with_coalescer(mut self, coalescer: Option<Coalescer>) -> Engine {
        self.coalescer = coalescer;
        self
    }

    /// Counts alerts' leases from `started` at the earliest (see `awake_since`).
    pub fn awake_since(mut self, started: Timestamp) -> Engine {
        self.awake_since = started;
        self
    }

    pub fn new(store: Arc<dyn Store>, timing: Timing, group_by: Vec<String>) -> Engine {
        Engine {
            coalescer: None,
            awake_since: Timestamp::UNIX_EPOCH,
            store,
            timing,
            group_by,
        }
    }

    /// The group key of a signal: the values of the `group_by` labels, or its fingerprint when
    /// it has none of them.
    pub fn group_key(&self, labels: &Labels, fingerprint: &str) -> String {
        let parts: Vec<String> = self
            .group_by
            .iter()
            .filter_map(|name| labels.get(name).map(|v| format!("{name}={v}")))
            .collect();
        if parts.is_empty() {
            format!("fingerprint={fingerprint}")
        } else {
            parts.join(",")
        }
    }

    pub async fn step(&self, now: Timestamp) -> Result<StepReport, StoreError> {
        let mut tx = self.store.begin().await?;
        let report = self.step_in(tx.as_mut(), now).await?;
        tx.commit().await?;
        self.committed(&report);
        Ok(report)
    }

    /// [`Engine::step`] inside the caller's transaction (the pipeline routes and claims in the
    /// same one). The caller commits, then calls [`Engine::committed`].
    pub async fn step_in(&self, tx: &mut dyn Tx, now: Timestamp) -> Result<StepReport, StoreError> {
        let epoch = self.coalescer.as_ref().map_or(0, Coalescer::epoch);
        let signals = tx.unprocessed_signals(SIGNAL_BATCH).await?;
        let mut batch = Batch::default();
        if !signals.is_empty() {
            let fingerprints: Vec<String> = signals
                .iter()
                .map(|s| s.signal.fingerprint.clone())
                .collect::<BTreeSet<_>>()
                .into_iter()
                .collect();
            for alert in tx.active_alerts(&fingerprints).await? {
                batch.alerts.insert(alert.fingerprint.clone(), alert);
            }
            // The open incidents that the new alerts may join, in one read: each new alert's
            // first firing signal is the one that opens or joins one.
            let mut new_alerts = HashSet::new();
            let keys: BTreeSet<String> = signals
                .iter()
                .map(|s| &s.signal)
                .filter(|s| {
                    s.status == SignalStatus::Firing
                        && !batch.alerts.contains_key(&s.fingerprint)
                        && new_alerts.insert(s.fingerprint.as_str())
                })
                .map(|s| self.group_key(&s.labels, &s.fingerprint))
                .collect();
            let keys: Vec<&str> = keys.iter().map(String::as_str).collect();
            batch
                .incidents_by_key
                .extend(tx.open_incidents_by_keys(&keys).await?);
            for signal in &signals {
                self.apply(tx, &mut batch, signal).await?;
            }
            batch.write(tx, now).await?;
        }
        // While signals wait beyond this batch, one of them may be the re-send that keeps an
        // alert firing: expire nothing until they are applied.
        let mut expired = Vec::new();
        if signals.len() < SIGNAL_BATCH as usize {
            let mut ended = Vec::new();
            for mut alert in tx.expired_alerts(now, self.awake_since, DUE_BATCH).await? {
                // Forgotten before the commit as well as after it: a re-send taken meanwhile is
                // stored and applied, never answered as a repeat of an alert now resolved. One
                // answered before, whose time is not written yet, keeps it firing from then.
                let coalescer = self.coalescer.as_ref();
                if let Some(seen) =
                    coalescer.and_then(|c| c.expire(&alert.fingerprint, alert.last_seen_at))
                {
                    alert.last_seen_at = seen;
                    if alert
                        .ends_after(self.awake_since)
                        .is_some_and(|end| end > now)
                    {
                        tx.touch_alerts(&[alert.id], seen).await?;
                        continue;
                    }
                    if let Some(c) = coalescer {
                        c.expired(&alert.fingerprint);
                    }
                }
                let Some(at) = alert.expires_at() else {
                    continue;
                };
                alert.firing = false;
                alert.resolved_at = Some(at);
                batch.pend(alert.incident_id, at);
                ended.push(alert);
            }
            tx.save_alerts(&ended.iter().collect::<Vec<_>>()).await?;
            expired.extend(ended.into_iter().map(|a| a.fingerprint));
        }
        let mut due: BTreeSet<i64> = batch.pending.keys().copied().collect();
        due.extend(tx.due_incidents(now, DUE_BATCH).await?);
        // The alerts this step left firing, by incident.
        let gone: HashSet<&str> = expired.iter().map(String::as_str).collect();
        let mut firing: HashMap<i64, Vec<&str>> = HashMap::new();
        for alert in batch.alerts.values() {
            if alert.firing && !gone.contains(alert.fingerprint.as_str()) {
                firing
                    .entry(alert.incident_id)
                    .or_default()
                    .push(&alert.fingerprint);
            }
        }
        let mut written = BTreeMap::new();
        let due: Vec<i64> = due.into_iter().collect();
        for incident in tx.incidents_to_change(&due).await? {
            let id = incident.id;
            let pending = batch.pending.get(&id).copied();
            let firing = firing.get(&id).map_or(&[][..], Vec::as_slice);
            if let Some(w) = self
                .evaluate_incident(tx, incident, now, pending, firing)
                .await?
            {
                written.insert(id, w);
            }
        }
        let updates = written.len();
        let next_eval = tx.next_eval_at(self.awake_since).await?;
        let mut sources: BTreeMap<&'static str, u64> = BTreeMap::new();
        for s in &signals {
            *sources.entry(s.signal.source.as_str()).or_default() += 1;
        }
        let applied = batch
            .last
            .iter()
            .map(|(fp, (id, digest))| {
                let alert = batch.alerts.get(fp);
                let firing = alert.is_some_and(|a| a.firing);
                Applied {
                    fingerprint: fp.clone(),
                    through: *id,
                    digest: digest.filter(|_| firing),
                    lease: alert.and_then(|a| a.expires_after),
                }
            })
            .collect();
        Ok(StepReport {
            signals: signals.len(),
            updates,
            next_eval,
            more: signals.len() as u32 == SIGNAL_BATCH,
            sources,
            applied,
            expired,
            epoch,
            written,
        })
    }

    /// Applies one signal to the batch's in-memory state; new incidents are created at once so
    /// that later signals of the batch join them.
    async fn apply(
        &self,
        tx: &mut dyn Tx,
        batch: &mut Batch,
        stored: &StoredSignal,
    ) -> Result<(), StoreError> {
        let s = &stored.signal;
        let at = stored.received_at;
        let digest = (s.status == SignalStatus::Firing).then(|| coalesce::digest(s));
        let lease = s.lease(at);
        batch
            .last
            .insert(s.fingerprint.clone(), (stored.id, digest));
        if let Some(alert) = batch.alerts.get_mut(&s.fingerprint) {
            let changed = match s.status {
                SignalStatus::Firing => !alert.firing || alert.severity != s.severity,
                SignalStatus::Resolved => alert.firing,
            };
            let outcome = match (s.status, changed) {
                (SignalStatus::Firing, true) if !alert.firing => "refired",
                (SignalStatus::Firing, true) => "severity-changed",
                (SignalStatus::Firing, false) => "refreshed",
                (SignalStatus::Resolved, true) => "resolved",
                (SignalStatus::Resolved, false) => "duplicate",
            };
            // A firing signal is the sender's current description of the problem; a resolution
            // only says it is over (senders often send it with fewer labels or a bare "ok"), so
            // it never rewrites what the incident is about.
            let firing = s.status == SignalStatus::Firing;
            let details_changed = firing
                && (alert.labels != s.labels
                    || alert.annotations != s.annotations
                    || alert.summary != s.summary
                    || (s.url.is_some() && alert.url != s.url)
                    || (s.component.is_some() && alert.component != s.component)
                    || !coalesce::same_lease(alert.expires_after, lease));
            alert.firing = firing;
            alert.resolved_at = match s.status {
                SignalStatus::Resolved if changed => Some(at),
                SignalStatus::Resolved => alert.resolved_at,
                SignalStatus::Firing => None,
            };
            if firing {
                alert.severity = s.severity;
                alert.peak_severity = alert.peak_severity.max(s.severity);
                alert.labels = s.labels.clone();
                alert.annotations = s.annotations.clone();
                alert.summary = s.summary.clone();
                alert.url = s.url.clone().or(alert.url.take());
                alert.component = s.component.clone().or(alert.component.take());
                if !coalesce::same_lease(alert.expires_after, lease) {
                    alert.expires_after = lease;
                }
            }
            alert.last_seen_at = at;
            let incident = alert.incident_id;
            if changed || details_changed {
                batch.dirty.insert(s.fingerprint.clone());
            } else {
                batch.seen.insert(s.fingerprint.clone());
            }
            if changed {
                batch.pend(incident, at);
            }
            batch.mark(stored.id, outcome, Some(incident));
            return Ok(());
        }
        if s.status == SignalStatus::Resolved {
            batch.mark(stored.id, "ignored-unknown-resolved", None);
            return Ok(());
        }
        // The open incidents of the batch's new alerts were read before it was applied
        // (`step_in`): a key not among them has none.
        let key = self.group_key(&s.labels, &s.fingerprint);
        let (incident_id, outcome) = match batch.incidents_by_key.get(&key) {
            Some(id) => (*id, "joined"),
            None => {
                let new = NewIncident {
                    group_key: key.clone(),
                    title: s.summary.clone(),
                    status: IncidentStatus::Investigating,
                    severity: s.severity,
                    origin: IncidentOrigin::Signals,
                    labels: Labels::new(),
                    opened_at: at,
                    eval_at: Some(add(at, self.timing.group_wait)),
                    pending_since: Some(at),
                };
                (tx.insert_incident(&new).await?.id, "opened")
            }
        };
        batch.incidents_by_key.insert(key, incident_id);
        batch.alerts.insert(
            s.fingerprint.clone(),
            AlertRow {
                id: 0,
                incident_id,
                fingerprint: s.fingerprint.clone(),
                source: s.source,
                firing: true,
                severity: s.severity,
                peak_severity: s.severity,
                service: s.service.clone(),
                component: s.component.clone(),
                labels: s.labels.clone(),
                annotations: s.annotations.clone(),
                summary: s.summary.clone(),
                url: s.url.clone(),
                starts_at: s.starts_at,
                first_seen_at: at,
                last_seen_at: at,
                resolved_at: None,
                expires_after: lease,
            },
        );
        batch.dirty.insert(s.fingerprint.clone());
        batch.new.push(s.fingerprint.clone());
        batch.pend(incident_id, at);
        batch.mark(stored.id, outcome, Some(incident_id));
        Ok(())
    }

    /// Evaluates one incident opened by signals and persists the decision. When it wrote an
    /// update, returns the incident and its alerts as they now are in the store.
    async fn evaluate_incident(
        &self,
        tx: &mut dyn Tx,
        mut incident: IncidentRow,
        now: Timestamp,
        pending: Option<Timestamp>,
        firing: &[&str],
    ) -> Result<Option<Written>, StoreError> {
        let id = incident.id;
        let pending_before = incident.pending_since;
        if let Some(at) = pending {
            incident.pending_since = Some(incident.pending_since.map_or(at, |p| p.min(at)));
        }
        if incident.resolved_at.is_some() || incident.origin == IncidentOrigin::Manual {
            if incident.eval_at.is_some() {
                incident.eval_at = None;
                tx.save_incident(&incident).await?;
            }
            return Ok(None);
        }
        let state = IncidentState {
            opened_at: incident.opened_at,
            announced: incident.announced.clone(),
            last_announced_at: incident.last_announced_at,
        };
        // A storm of new alerts joining an incident inside its wait decides nothing but the wait,
        // whatever its other alerts are: they are not read.
        let unannounced_firing = firing.iter().any(|fp| {
            state
                .announced
                .as_ref()
                .is_none_or(|a| !a.firing.contains(*fp))
        });
        if let Some(due) = must_wait(&state, unannounced_firing, now, &self.timing) {
            // Each step of the storm finds it so: nothing to write again.
            if incident.eval_at != Some(due) || incident.pending_since != pending_before {
                incident.eval_at = Some(due);
                tx.save_incident(&incident).await?;
            }
            return Ok(None);
        }
        // Past its wait, an update is likely, which needs the alerts' whole rows: those are read
        // at once. Inside it, the decision needs four columns, not their labels and annotations.
        let wait_over = now >= wait_ends(&state, &self.timing);
        let mut alerts = Vec::new();
        let states = if wait_over {
            alerts = tx.alerts(id).await?;
            alerts.iter().map(AlertRow::state).collect()
        } else {
            tx.alert_states(id).await?
        };
        let mut wrote = false;
        match evaluate(&state, &states, now, &self.timing) {
            Decision::WaitUntil(at) => incident.eval_at = Some(at),
            Decision::Idle => {
                incident.eval_at = None;
                incident.pending_since = None;
            }
            Decision::CloseSilently => {
                if !wait_over {
                    alerts = tx.alerts(id).await?;
                }
                incident.status = IncidentStatus::Resolved;
                incident.resolved_at = Some(now);
                incident.eval_at = None;
                incident.pending_since = None;
                incident.last_seq += 1;
                // Recorded for the history, never routed: nobody had been told it opened.
                self.write_update(
                    tx,
                    &incident,
                    &alerts,
                    Note::automatic(UpdateKind::Resolved).silent(),
                    now,
                )
                .await?;
                wrote = true;
            }
            Decision::Announce { kind, announced } => {
                if !wait_over {
                    alerts = tx.alerts(id).await?;
                }
                if let Some(severity) = announced.severity {
                    incident.severity = severity;
                }
                if kind == UpdateKind::Resolved {
                    incident.status = IncidentStatus::Resolved;
                    incident.resolved_at = Some(now);
                }
                incident.title = title_for(&incident, &alerts);
                incident.announced = Some(announced);
                incident.last_announced_at = Some(now);
                incident.eval_at = None;
                incident.last_seq += 1;
                self.write_update(tx, &incident, &alerts, Note::automatic(kind), now)
                    .await?;
                incident.pending_since = None;
                wrote = true;
            }
        }
        tx.save_incident(&incident).await?;
        Ok(wrote.then(|| Written {
            incident: incident.as_stored(),
            alerts,
        }))
    }

    /// Writes the incident's next update (`incident.last_seq`), with the signals as they are
    /// now frozen into it.
    async fn write_update(
        &self,
        tx: &mut dyn Tx,
        incident: &IncidentRow,
        alerts: &[AlertRow],
        note: Note,
        now: Timestamp,
    ) -> Result<UpdateRow, StoreError> {
        tx.insert_update(&NewUpdate {
            incident_id: incident.id,
            seq: incident.last_seq,
            kind: note.kind,
            status: incident.status,
            severity: incident.severity,
            title: incident.title.clone(),
            signals: SignalSnapshot::of(alerts),
            body: note.body,
            author: note.author,
            created_at: now,
            origin_at: incident.pending_since.unwrap_or(now),
            silent: note.silent,
        })
        .await
    }

    /// Opens an incident by hand; its first update is routed at once.
    pub async fn open_manual(
        &self,
        req: ManualIncident,
        author: &str,
        now: Timestamp,
    ) -> Result<(IncidentRow, UpdateRow), ManualError> {
        check_text("title", &req.title, MAX_TITLE, text::one_line)?;
        if let Some(body) = &req.body {
            check_text("body", body, MAX_BODY, text::lines)?;
        }
        if req.status == IncidentStatus::Resolved {
            return Err(ManualError::Invalid {
                field: "status",
                message: "a new incident cannot start resolved".into(),
            });
        }
        let mut tx = self.store.begin().await?;
        let new = NewIncident {
            group_key: format!("manual:{}", crate::ids::random_hex(8)),
            title: req.title.trim().to_owned(),
            status: req.status,
            severity: req.severity,
            origin: IncidentOrigin::Manual,
            labels: req.labels,
            opened_at: now,
            eval_at: None,
            pending_since: None,
        };
        let mut incident = tx.insert_incident(&new).await?;
        incident.last_seq = 1;
        incident.announced = Some(Announced {
            severity: Some(req.severity),
            firing: BTreeSet::new(),
        });
        incident.last_announced_at = Some(now);
        let note = Note {
            kind: UpdateKind::Opened,
            body: req.body,
            author: Some(author.to_owned()),
            silent: false,
        };
        let update = self
            .write_update(tx.as_mut(), &incident, &[], note, now)
            .await?;
        tx.save_incident(&incident).await?;
        tx.commit().await?;
        Ok((incident, update))
    }

    /// Posts an operator's update to an open incident; it is routed at once.
    pub async fn post_update(
        &self,
        id: i64,
        req: ManualUpdate,
        author: &str,
        now: Timestamp,
    ) -> Result<(IncidentRow, UpdateRow), ManualError> {
        if let Some(body) = &req.body {
            check_text("body", body, MAX_BODY, text::lines)?;
        }
        if req.body.is_none() && req.status.is_none() && req.severity.is_none() {
            return Err(ManualError::Invalid {
                field: "body",
                message: "give at least a body, a status or a severity".into(),
            });
        }
        let mut tx = self.store.begin().await?;
        let mut incident = tx.incident(id).await?.ok_or(ManualError::NotFound(id))?;
        if incident.resolved_at.is_some() {
            return Err(ManualError::Resolved(id));
        }
        if let Some(status) = req.status {
            incident.status = status;
        }
        if let Some(severity) = req.severity {
            incident.severity = severity;
        }
        let kind = if incident.status == IncidentStatus::Resolved {
            incident.resolved_at = Some(now);
            incident.eval_at = None;
            UpdateKind::Resolved
        } else if incident.announced.is_none() {
            UpdateKind::Opened
        } else {
            UpdateKind::Updated
        };
        let alerts = tx.alerts(id).await?;
        // Resolving by hand an incident nobody was told about closes it quietly.
        let silent = kind == UpdateKind::Resolved && incident.announced.is_none();
        if incident.announced.is_none() || kind != UpdateKind::Resolved {
            // The operator's word is an announcement of the present state: later automatic
            // updates compare against it.
            let firing = alerts
                .iter()
                .filter(|a| a.firing)
                .map(|a| a.fingerprint.clone())
                .collect();
            let severity = alerts
                .iter()
                .filter(|a| a.firing)
                .map(|a| a.severity)
                .max()
                .or(Some(incident.severity));
            incident.announced = Some(Announced { severity, firing });
        }
        incident.last_announced_at = Some(now);
        incident.last_seq += 1;
        let note = Note {
            kind,
            body: req.body,
            author: Some(author.to_owned()),
            silent,
        };
        let update = self
            .write_update(tx.as_mut(), &incident, &alerts, note, now)
            .await?;
        incident.pending_since = None;
        tx.save_incident(&incident).await?;
        // An operator may resolve an incident whose alerts still fire: what ingest knows of
        // them no longer holds, from before the commit (the request may go while it commits)
        // to after it (a step begun meanwhile may have read the alerts firing).
        if let Some(c) = &self.coalescer {
            c.forget_all();
        }
        let forget = ForgetOnDrop(self.coalescer.as_ref());
        tx.commit().await?;
        drop(forget);
        Ok((incident, update))
    }
}

/// Forgets what the coalescer knows when dropped: after an operator's commit, even when the
/// request is gone before the code after the commit runs.
struct ForgetOnDrop<'a>(Option<&'a Coalescer>);

impl Drop for ForgetOnDrop<'_> {
    fn drop(&mut self) {
        if let Some(c) = self.0 {
            c.forget_all();
        }
    }
}

/// What an update says besides the incident's state.
struct Note {
    kind: UpdateKind,
    body: Option<String>,
    author: Option<String>,
    /// Kept for the history, never routed.
    silent: bool,
}

impl Note {
    fn automatic(kind: UpdateKind) -> Note {
        Note {
            kind,
            body: None,
            author: None,
            silent: false,
        }
    }

    fn silent(mut self) -> Note {
        self.silent = true;
        self
    }
}

/// What one engine step learned from its signals, written back in a few statements.
#[derive(Default)]
struct Batch {
    /// Active alerts of the batch's fingerprints, loaded once, changed in memory. Entries are
    /// only ever added during a step: `step_in` reads the open incidents of the new alerts'
    /// keys before applying, and relies on it.
    alerts: HashMap<String, AlertRow>,
    /// Fingerprints whose alert changed and must be saved.
    dirty: BTreeSet<String>,
    /// Fingerprints of the alerts new in this step, in the order of their first signals: their
    /// ids follow it, and an incident's first alert names it ([`title_for`]).
    new: Vec<String>,
    /// Fingerprints seen again unchanged: only their last-seen time moves.
    seen: BTreeSet<String>,
    /// Open incidents found or created in this step, by group key.
    incidents_by_key: HashMap<String, i64>,
    /// Incidents with news, and the arrival of the earliest signal behind it.
    pending: BTreeMap<i64, Timestamp>,
    /// What became of each signal.
    marks: Vec<SignalMark<'static>>,
    /// Per fingerprint, the last signal applied, with its content's digest when it fired.
    last: HashMap<String, (i64, Option<u64>)>,
}

impl Batch {
    fn pend(&mut self, incident: i64, at: Timestamp) {
        let entry = self.pending.entry(incident).or_insert(at);
        *entry = (*entry).min(at);
    }

    fn mark(&mut self, signal: i64, outcome: &'static str, incident: Option<i64>) {
        self.marks.push(SignalMark {
            signal,
            outcome,
            incident,
        });
    }

    async fn write(&self, tx: &mut dyn Tx, now: Timestamp) -> Result<(), StoreError> {
        // The alerts already stored, then the new ones in the order they came.
        let dirty: Vec<&AlertRow> = self
            .dirty
            .iter()
            .filter_map(|fp| self.alerts.get(fp))
            .filter(|a| a.id != 0)
            .chain(self.new.iter().filter_map(|fp| self.alerts.get(fp)))
            .collect();
        tx.save_alerts(&dirty).await?;
        let seen: Vec<i64> = self
            .seen
            .iter()
            .filter(|fp| !self.dirty.contains(*fp))
            .filter_map(|fp| self.alerts.get(fp))
            .map(|a| a.id)
            .collect();
        if let Some(latest) = self
            .seen
            .iter()
            .filter_map(|fp| self.alerts.get(fp))
            .map(|a| a.last_seen_at)
            .max()
        {
            tx.touch_alerts(&seen, latest).await?;
        }
        tx.mark_signals(&self.marks, now).await?;
        Ok(())
    }
}

/// An incident's title: the summary of its first signal. It is kept in no particular language
/// (summaries are the monitors' own words); templates list the other signals.
fn title_for(incident: &IncidentRow, alerts: &[AlertRow]) -> String {
    alerts
        .first()
        .map_or_else(|| incident.title.clone(), |first| first.summary.clone())
}

fn add(t: Timestamp, d: std::time::Duration) -> Timestamp {
    jiff::SignedDuration::try_from(d)
        .ok()
        .and_then(|d| t.checked_add(d).ok())
        .unwrap_or(Timestamp::MAX)
}
