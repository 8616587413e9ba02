//! Heartbeats: silence is a signal. A monitor that runs inside the network that fails falls
//! silent with it, so Banditore expects each configured monitor to ping every `period`; when one
//! is late by its `grace`, it raises an alarm ("monitor X has fallen silent") for the monitor's
//! service, through the usual incident path, and the next ping resolves it. A monitor may also
//! report a failure outright (`…/fail`), and Alertmanager's always-firing Watchdog alert counts
//! as a ping when its labels match a heartbeat's `watchdog` matchers, instead of becoming an
//! incident.
//!
//! The configuration says what each heartbeat is; the store keeps its clock (last ping, when it
//! is due) and state, so every replica reads the same. Raising and resolving are conditional
//! updates in the transaction that stores the alarm's signal: replicas checking at once declare a
//! silence once. Time is a parameter ([`Heartbeats::check`], [`Heartbeats::ping`]);
//! [`Heartbeats::spawn`] only adds the once-a-second loop.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use jiff::{SignedDuration, Timestamp};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::domain::matcher::all_match;
use crate::domain::signal::NormalizeRules;
use crate::domain::{Labels, RawSignal, Signal, SignalStatus, Source};
use crate::settings::HeartbeatSpec;
use crate::store::{Beat, HeartbeatRow, Store, StoreError, Topic};
use crate::wake::Wakers;

/// How often every replica looks for heartbeats past due.
pub const CHECK_EVERY: Duration = Duration::from_secs(1);

/// How much of a failure report's text is kept, in characters.
pub const DETAIL_MAX: usize = 1000;

#[derive(Debug, thiserror::Error)]
pub enum HeartbeatError {
    #[error("no heartbeat is named `{0}`")]
    Unknown(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// The configured heartbeats and what they need to ping, fail and be checked.
pub struct Heartbeats {
    specs: Vec<HeartbeatSpec>,
    by_name: HashMap<String, usize>,
    store: Arc<dyn Store>,
    /// New signals: run the pipeline.
    wake: Arc<Notify>,
}

/// What a ping or a failure report did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pinged {
    /// The configured name.
    pub name: String,
    /// The state before it.
    pub was: String,
    /// The signal stored with it, if it raised or resolved an alarm.
    pub signal: Option<i64>,
}

impl Heartbeats {
    /// The heartbeats of the configuration; [`Heartbeats::spawn`]'s loop brings their rows in
    /// step with it first.
    pub fn new(specs: &[HeartbeatSpec], store: &Arc<dyn Store>, wake: &Wakers) -> Arc<Self> {
        Arc::new(Heartbeats {
            by_name: specs
                .iter()
                .enumerate()
                .map(|(i, s)| (s.name.clone(), i))
                .collect(),
            specs: specs.to_vec(),
            store: store.clone(),
            wake: wake.pipeline.clone(),
        })
    }

    /// Brings the stored rows in step with the configuration at `now` (see
    /// [`crate::store::HeartbeatStore::sync_heartbeats`]): new heartbeats start their clocks, and
    /// those no longer configured are forgotten, their alarms resolved.
    pub async fn sync(&self, now: Timestamp) -> Result<(), StoreError> {
        let configured: Vec<(String, Duration)> = self
            .specs
            .iter()
            .map(|s| (s.name.clone(), s.allowance()))
            .collect();
        let farewell = |name: &str| {
            RawSignal {
                fingerprint: Some(name.to_owned()),
                status: Some(SignalStatus::Resolved),
                summary: Some(format!("Heartbeat {name} is no longer configured")),
                ..RawSignal::default()
            }
            .normalize(Source::Heartbeat, &NormalizeRules::default(), now)
        };
        self.store
            .sync_heartbeats(&configured, now, &farewell)
            .await?;
        self.signals_stored().await;
        Ok(())
    }

    /// Checks every heartbeat each [`CHECK_EVERY`] until `shutdown`, after bringing the rows in
    /// step with the configuration; on every replica, since the conditional move to `late`
    /// lets only one of them declare.
    pub fn spawn(self: Arc<Self>, shutdown: CancellationToken) -> tokio::task::JoinHandle<()> {
        tokio::spawn(run(self, shutdown))
    }

    pub fn specs(&self) -> &[HeartbeatSpec] {
        &self.specs
    }

    fn spec(&self, name: &str) -> Result<&HeartbeatSpec, HeartbeatError> {
        self.by_name
            .get(name)
            .map(|&i| &self.specs[i])
            .ok_or_else(|| HeartbeatError::Unknown(name.chars().take(100).collect()))
    }

    /// A ping at `now`: the heartbeat is up, due again a period and a grace later, and its
    /// alarm, if any, resolved. Durable on return.
    pub async fn ping(&self, name: &str, now: Timestamp) -> Result<Pinged, HeartbeatError> {
        let spec = self.spec(name)?;
        let due = after(now, spec.allowance());
        let resolved = alarm(spec, SignalStatus::Resolved, false, now, String::new());
        let beat = self.store.record_ping(name, now, due, &resolved).await?;
        metrics::counter!("banditore_heartbeat_pings_total", "heartbeat" => spec.name.clone())
            .increment(1);
        if beat.signal.is_some() {
            tracing::info!(heartbeat = %spec.name, was = %beat.was, "heartbeat back: its alarm resolves");
        }
        Ok(self.done(spec, beat).await)
    }

    /// A failure reported by the monitor at `now` (with what it said, cleaned and cut to
    /// [`DETAIL_MAX`] characters): the alarm is raised at once. Durable on return.
    pub async fn fail(
        &self,
        name: &str,
        detail: &str,
        now: Timestamp,
    ) -> Result<Pinged, HeartbeatError> {
        let spec = self.spec(name)?;
        let detail = clean(detail);
        let description = if detail.is_empty() {
            "The monitor reported a failure.".to_owned()
        } else {
            format!("The monitor reported a failure: {detail}")
        };
        let firing = alarm(spec, SignalStatus::Firing, true, now, description);
        let beat = self
            .store
            .record_failure(name, now, &detail, &firing)
            .await?;
        metrics::counter!("banditore_heartbeat_alarms_total", "heartbeat" => spec.name.clone(), "cause" => "failed")
            .increment(u64::from(beat.signal.is_some()));
        tracing::info!(heartbeat = %spec.name, was = %beat.was, "heartbeat reported a failure");
        Ok(self.done(spec, beat).await)
    }

    async fn done(&self, spec: &HeartbeatSpec, beat: Beat) -> Pinged {
        if beat.signal.is_some() {
            self.signals_stored().await;
        }
        Pinged {
            name: spec.name.clone(),
            was: beat.was,
            signal: beat.signal,
        }
    }

    async fn signals_stored(&self) {
        self.wake.notify_one();
        self.store.announce(Topic::Signals).await;
    }

    /// The heartbeat whose Watchdog these labels (as the monitor sent them) are, if any.
    pub fn watchdog_of(&self, labels: &Labels) -> Option<&str> {
        self.specs
            .iter()
            .find(|s| !s.watchdog.is_empty() && all_match(&s.watchdog, labels))
            .map(|s| s.name.as_str())
    }

    /// Declares late, at `now`, every heartbeat past its period and grace, each with its alarm;
    /// returns their names. Reads the rows first, so that nothing is written while none is due.
    pub async fn check(&self, now: Timestamp) -> Result<Vec<String>, StoreError> {
        let rows = self.store.heartbeats().await?;
        for row in &rows {
            if self.by_name.contains_key(&row.name) {
                let down = matches!(row.state.as_str(), "late" | "failed");
                metrics::gauge!("banditore_heartbeat_late", "heartbeat" => row.name.clone())
                    .set(if down { 1.0 } else { 0.0 });
            }
        }
        let due = rows.iter().any(|r| {
            matches!(r.state.as_str(), "new" | "up")
                && r.due_at <= now
                && self.by_name.contains_key(&r.name)
        });
        if !due {
            return Ok(Vec::new());
        }
        let names: Vec<String> = self.specs.iter().map(|s| s.name.clone()).collect();
        let started: HashMap<&str, Timestamp> = rows
            .iter()
            .map(|r| (r.name.as_str(), r.created_at))
            .collect();
        let make = |name: &str, last: Option<Timestamp>| {
            let Ok(spec) = self.spec(name) else {
                return RawSignal::default().normalize(
                    Source::Heartbeat,
                    &NormalizeRules::default(),
                    now,
                );
            };
            let description = match last {
                Some(at) => format!(
                    "No ping since {at:.0}; expected every {}, with {} of grace.",
                    humantime::format_duration(spec.period.map_or(Duration::ZERO, |p| p.get())),
                    humantime::format_duration(spec.grace.get()),
                ),
                None => format!(
                    "Never pinged since {:.0}; expected every {}, with {} of grace.",
                    started.get(name).copied().unwrap_or(now),
                    humantime::format_duration(spec.period.map_or(Duration::ZERO, |p| p.get())),
                    humantime::format_duration(spec.grace.get()),
                ),
            };
            alarm(spec, SignalStatus::Firing, false, now, description)
        };
        let declared = self.store.declare_silent(&names, now, &make).await?;
        if declared.is_empty() {
            return Ok(Vec::new());
        }
        for (name, signal) in &declared {
            metrics::counter!("banditore_heartbeat_alarms_total", "heartbeat" => name.clone(), "cause" => "silent")
                .increment(1);
            metrics::gauge!("banditore_heartbeat_late", "heartbeat" => name.clone()).set(1.0);
            tracing::warn!(heartbeat = %name, signal, "heartbeat fell silent: alarm raised");
        }
        self.signals_stored().await;
        Ok(declared.into_iter().map(|(name, _)| name).collect())
    }

    /// Every configured heartbeat with its stored row (absent only before the first start
    /// wrote it).
    pub async fn states(&self) -> Result<Vec<(&HeartbeatSpec, Option<HeartbeatRow>)>, StoreError> {
        let mut rows: HashMap<String, HeartbeatRow> = self
            .store
            .heartbeats()
            .await?
            .into_iter()
            .map(|r| (r.name.clone(), r))
            .collect();
        Ok(self
            .specs
            .iter()
            .map(|s| (s, rows.remove(&s.name)))
            .collect())
    }
}

async fn run(beats: Arc<Heartbeats>, shutdown: CancellationToken) {
    let mut tick = tokio::time::interval(CHECK_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut synced = false;
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tick.tick() => {}
        }
        let now = Timestamp::now();
        if !synced {
            match beats.sync(now).await {
                Ok(()) => synced = true,
                Err(e) => {
                    tracing::warn!(error = %e, "cannot bring the heartbeats in step with the configuration; trying again");
                    continue;
                }
            }
        }
        if beats.specs.is_empty() {
            return;
        }
        if let Err(e) = beats.check(now).await {
            tracing::warn!(error = %e, "cannot check the heartbeats; trying again");
        }
    }
}

fn after(t: Timestamp, d: Duration) -> Timestamp {
    SignedDuration::try_from(d)
        .ok()
        .and_then(|d| t.checked_add(d).ok())
        .unwrap_or(Timestamp::MAX)
}

/// One line of what a monitor said, without controls, at most [`DETAIL_MAX`] characters.
fn clean(text: &str) -> String {
    let line: String = text
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .take(DETAIL_MAX)
        .collect();
    line.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// The heartbeat's alarm (firing) or its end (resolved): fingerprint `heartbeat:<name>`, the
/// heartbeat's service and labels plus `heartbeat=<name>`, at its severity.
/// The title says "fallen silent", or "reported a failure" when `failed`, unless the
/// heartbeat's `summary` says otherwise.
pub fn alarm(
    spec: &HeartbeatSpec,
    status: SignalStatus,
    failed: bool,
    now: Timestamp,
    description: String,
) -> Signal {
    let mut labels = spec.labels.clone();
    labels.insert("heartbeat".into(), spec.name.clone());
    let mut annotations = Labels::new();
    if !description.is_empty() {
        annotations.insert("description".into(), description);
    }
    let summary = if !spec.summary.trim().is_empty() {
        spec.summary.clone()
    } else if failed {
        format!("Monitor {} reported a failure", spec.name)
    } else {
        format!("Monitor {} has fallen silent", spec.name)
    };
    RawSignal {
        fingerprint: Some(spec.name.clone()),
        status: Some(status),
        severity: Some(spec.severity.as_str().to_owned()),
        service: Some(spec.service.clone()),
        labels,
        annotations,
        summary: Some(summary),
        ..RawSignal::default()
    }
    .normalize(Source::Heartbeat, &NormalizeRules::default(), now)
}
