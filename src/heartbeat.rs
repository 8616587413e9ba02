//! Heartbeats: silence is a signal. A monitor that runs inside the network that fails falls
//! silent with it, so Banditore expects each configured monitor to ping every `period`; when one
//! is late by its `grace`, it raises an alarm ("monitor X has fallen silent") for the monitor's
//! service, through the usual incident path, and the next ping resolves it. A monitor may also
//! report a failure outright (`…/fail`), and Alertmanager's always-firing Watchdog alert counts
//! as a ping when its labels match a heartbeat's `watchdog` matchers, instead of becoming an
//! incident.
//!
//! The configuration says what each heartbeat is, or the API does
//! ([`crate::heartbeat::defs`]); the store keeps its clock (last ping, when it
//! is due) and state, so every replica reads the same. Raising and resolving are conditional
//! updates in the transaction that stores the alarm's signal: replicas checking at once declare a
//! silence once. Time is a parameter ([`Heartbeats::check`], [`Heartbeats::ping`]);
//! [`Heartbeats::spawn`] only adds the once-a-second loop.

pub mod defs;

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use jiff::{SignedDuration, Timestamp};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::domain::Finding;
use crate::domain::finding::FINDING_ANNOTATION;
use crate::domain::matcher::all_match;
use crate::domain::signal::NormalizeRules;
use crate::domain::{Labels, RawSignal, Signal, SignalStatus, Source};
use crate::settings::HeartbeatSpec;
use crate::store::{Beat, HeartbeatRow, Store, StoreError, Topic};
use crate::wake::Wakers;
use defs::{Catalog, Origin};

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

/// The heartbeats, configured and defined through the API, and what they need to ping, fail and
/// be checked.
pub struct Heartbeats {
    /// `[[heartbeats]]`.
    pub(crate) configured: Vec<HeartbeatSpec>,
    /// Every heartbeat known now: the configuration's and the API's, as last read from the
    /// store (every check does).
    pub(crate) catalog: RwLock<Arc<Catalog>>,
    pub(crate) store: Arc<dyn Store>,
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
            catalog: RwLock::new(Arc::new(Catalog::new(specs, &[]))),
            configured: specs.to_vec(),
            store: store.clone(),
            wake: wake.pipeline.clone(),
        })
    }

    /// Brings the stored rows in step with the configuration at `now` (see
    /// [`crate::store::HeartbeatStore::sync_heartbeats`]): new heartbeats start their clocks, and
    /// those no longer configured are forgotten, their alarms resolved.
    pub async fn sync(&self, now: Timestamp) -> Result<(), StoreError> {
        let configured: Vec<(String, Duration)> = self
            .configured
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
        let resolved = self
            .store
            .sync_heartbeats(&configured, now, &farewell)
            .await?;
        if resolved > 0 {
            self.signals_stored().await;
        }
        let cat = self.refresh().await?;
        let defined: Vec<(String, Duration)> = cat
            .entries()
            .filter(|(_, origin)| *origin == Origin::Api)
            .map(|(s, _)| (s.name.clone(), s.allowance()))
            .collect();
        self.store.restart_defined_clocks(&defined, now).await?;
        Ok(())
    }

    /// Checks every heartbeat each [`CHECK_EVERY`] until `shutdown`, after bringing the rows in
    /// step with the configuration; on every replica, since the conditional move to `late`
    /// lets only one of them declare.
    pub fn spawn(self: Arc<Self>, shutdown: CancellationToken) -> tokio::task::JoinHandle<()> {
        tokio::spawn(run(self, shutdown))
    }

    /// Every heartbeat known now, configured or defined through the API.
    pub fn catalog(&self) -> Arc<Catalog> {
        match self.catalog.read() {
            Ok(c) => c.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    /// The heartbeat named `name`; one this replica does not know yet may have been defined
    /// through another replica's API a moment ago, so the store is read again before refusing.
    pub async fn spec(&self, name: &str) -> Result<HeartbeatSpec, HeartbeatError> {
        if let Some(spec) = self.catalog().get(name) {
            return Ok(spec.clone());
        }
        // A name no heartbeat can have is not worth reading the store for.
        if !crate::settings::valid_heartbeat_name(name) {
            return Err(HeartbeatError::Unknown(name.chars().take(100).collect()));
        }
        self.refresh()
            .await?
            .get(name)
            .cloned()
            .ok_or_else(|| HeartbeatError::Unknown(name.chars().take(100).collect()))
    }

    /// A ping at `now`: the heartbeat is up, due again a period and a grace later, and its
    /// alarm, if any, resolved. Durable on return.
    pub async fn ping(&self, name: &str, now: Timestamp) -> Result<Pinged, HeartbeatError> {
        let spec = &self.spec(name).await?;
        let due = after(now, spec.allowance());
        let resolved = alarm(spec, SignalStatus::Resolved, None, now);
        let beat = self
            .store
            .record_ping(name, now, due, &resolved, self.is_configured(name))
            .await?;
        if beat.was == Beat::GONE {
            return Err(self.gone(name).await);
        }
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
        let spec = &self.spec(name).await?;
        let detail = clean(detail);
        let finding = Finding::ReportedFailure {
            cause: detail.clone(),
        };
        let firing = alarm(spec, SignalStatus::Firing, Some(finding), now);
        let beat = self
            .store
            .record_failure(name, now, &detail, &firing, self.is_configured(name))
            .await?;
        if beat.was == Beat::GONE {
            return Err(self.gone(name).await);
        }
        metrics::counter!("banditore_heartbeat_alarms_total", "heartbeat" => spec.name.clone(), "cause" => "failed")
            .increment(u64::from(beat.signal.is_some()));
        tracing::info!(heartbeat = %spec.name, was = %beat.was, "heartbeat reported a failure");
        Ok(self.done(spec, beat).await)
    }

    fn is_configured(&self, name: &str) -> bool {
        self.configured.iter().any(|s| s.name == name)
    }

    /// A heartbeat of the API deleted while it was pinged: refused as unknown, and forgotten
    /// here at once rather than at the next check.
    async fn gone(&self, name: &str) -> HeartbeatError {
        if let Err(e) = self.refresh().await {
            tracing::warn!(error = %e, "cannot read the heartbeats again");
        }
        HeartbeatError::Unknown(name.chars().take(100).collect())
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

    pub(crate) async fn signals_stored(&self) {
        self.wake.notify_one();
        self.store.announce(Topic::Signals).await;
    }

    /// The heartbeat whose Watchdog these labels (as the monitor sent them) are, if any.
    pub fn watchdog_of(&self, labels: &Labels) -> Option<String> {
        self.catalog()
            .entries()
            .map(|(s, _)| s)
            .find(|s| !s.watchdog.is_empty() && all_match(&s.watchdog, labels))
            .map(|s| s.name.clone())
    }

    /// Declares late, at `now`, every heartbeat past its period and grace, each with its alarm;
    /// returns their names. Reads the rows first, so that nothing is written while none is due.
    pub async fn check(&self, now: Timestamp) -> Result<Vec<String>, StoreError> {
        let rows = self.store.heartbeats().await?;
        let cat = self.adopt(&rows);
        for row in &rows {
            if cat.get(&row.name).is_some() {
                let down = matches!(row.state.as_str(), "late" | "failed");
                metrics::gauge!("banditore_heartbeat_late", "heartbeat" => row.name.clone())
                    .set(if down { 1.0 } else { 0.0 });
            }
        }
        let due = rows.iter().any(|r| {
            matches!(r.state.as_str(), "new" | "up")
                && r.due_at <= now
                && cat.get(&r.name).is_some()
        });
        if !due {
            return Ok(Vec::new());
        }
        let names: Vec<String> = cat.entries().map(|(s, _)| s.name.clone()).collect();
        let started: HashMap<&str, Timestamp> = rows
            .iter()
            .map(|r| (r.name.as_str(), r.created_at))
            .collect();
        let make = |name: &str, last: Option<Timestamp>| {
            let Some(spec) = cat.get(name) else {
                return RawSignal::default().normalize(
                    Source::Heartbeat,
                    &NormalizeRules::default(),
                    now,
                );
            };
            let since = last.or_else(|| started.get(name).copied()).unwrap_or(now);
            let finding = Finding::Silent {
                seconds: now.duration_since(since).as_secs().max(0),
                never: last.is_none(),
            };
            alarm(spec, SignalStatus::Firing, Some(finding), now)
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

    /// Every heartbeat, configured or defined through the API, with where it comes from and its
    /// stored row (absent only before the first start wrote it).
    pub async fn states(
        &self,
    ) -> Result<Vec<(HeartbeatSpec, Origin, Option<HeartbeatRow>)>, StoreError> {
        let rows = self.store.heartbeats().await?;
        let cat = self.adopt(&rows);
        let mut rows: HashMap<String, HeartbeatRow> =
            rows.into_iter().map(|r| (r.name.clone(), r)).collect();
        Ok(cat
            .entries()
            .map(|(s, origin)| (s.clone(), origin, rows.remove(&s.name)))
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

/// One line of what a monitor said, at most [`DETAIL_MAX`] characters, without controls,
/// direction overrides (which could make a console page read backwards) or noncharacters.
fn clean(text: &str) -> String {
    let hidden = |c: char| {
        let n = u32::from(c);
        c.is_control()
            || matches!(c, '\u{61c}' | '\u{200e}' | '\u{200f}' | '\u{feff}')
            || (0x202A..=0x202E).contains(&n)
            || (0x2066..=0x2069).contains(&n)
            || (0xFDD0..=0xFDEF).contains(&n)
            || n & 0xFFFE == 0xFFFE
    };
    let line: String = text
        .chars()
        .map(|c| if hidden(c) { ' ' } else { c })
        .take(DETAIL_MAX)
        .collect();
    line.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// The heartbeat's alarm (firing, with what was found: silence or a failure report) or its end
/// (resolved): fingerprint `heartbeat:<name>`, the heartbeat's service and labels plus
/// `heartbeat=<name>`, at its severity, titled by its `summary` or "Monitor <name>"; the finding
/// says the rest in each reader's language.
pub fn alarm(
    spec: &HeartbeatSpec,
    status: SignalStatus,
    finding: Option<Finding>,
    now: Timestamp,
) -> Signal {
    let mut labels = spec.labels.clone();
    labels.insert("heartbeat".into(), spec.name.clone());
    let mut annotations = Labels::new();
    if let Some(finding) = finding {
        annotations.insert(FINDING_ANNOTATION.into(), finding.to_annotation());
    }
    let summary = if spec.summary.trim().is_empty() {
        format!("Monitor {}", spec.name)
    } else {
        spec.summary.clone()
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

#[cfg(test)]
mod tests {
    use super::*;

    struct Bench {
        _dir: tempfile::TempDir,
        store: Arc<dyn Store>,
    }

    async fn bench() -> Bench {
        let dir = tempfile::tempdir().unwrap();
        let store = crate::store::scratch(&dir).await;
        Bench { _dir: dir, store }
    }

    fn spec(name: &str, period: u64, grace: u64) -> HeartbeatSpec {
        serde_json::from_value(serde_json::json!({
            "name": name, "service": "cup", "labels": {"area": "umbria"},
            "period": format!("{period}s"), "grace": format!("{grace}s"), "severity": "major",
            "watchdog": ["alertname=\"Watchdog\"", "cluster=\"umbria\""],
        }))
        .unwrap()
    }

    fn at(seconds: i64) -> Timestamp {
        Timestamp::from_second(1_800_000_000 + seconds).unwrap()
    }

    fn beats(b: &Bench, specs: &[HeartbeatSpec]) -> Arc<Heartbeats> {
        Heartbeats::new(specs, &b.store, &Wakers::default())
    }

    /// The signals stored and not yet applied, oldest first.
    async fn signals(store: &Arc<dyn Store>) -> Vec<Signal> {
        let mut tx = store.begin().await.unwrap();
        let stored = tx.unprocessed_signals(100).await.unwrap();
        tx.commit().await.unwrap();
        stored.into_iter().map(|s| s.signal).collect()
    }

    /// The finding an alarm carries, as templates read it.
    fn finding(signal: &Signal) -> Option<Finding> {
        Finding::from_annotation(signal.annotations.get(FINDING_ANNOTATION)?)
    }

    async fn state(store: &Arc<dyn Store>, name: &str) -> String {
        let rows = store.heartbeats().await.unwrap();
        rows.into_iter().find(|r| r.name == name).unwrap().state
    }

    #[tokio::test]
    async fn late_exactly_at_period_plus_grace_and_declared_once() {
        let b = bench().await;
        let hb = beats(&b, &[spec("backup", 60, 30)]);
        hb.sync(at(0)).await.unwrap();
        hb.ping("backup", at(10)).await.unwrap();
        assert!(hb.check(at(99)).await.unwrap().is_empty());
        assert!(
            hb.check(Timestamp::from_millisecond(at(100).as_millisecond() - 1).unwrap())
                .await
                .unwrap()
                .is_empty()
        );
        assert!(signals(&b.store).await.is_empty());
        assert_eq!(hb.check(at(100)).await.unwrap(), vec!["backup".to_owned()]);
        assert!(hb.check(at(101)).await.unwrap().is_empty());
        assert_eq!(state(&b.store, "backup").await, "late");
        let stored = signals(&b.store).await;
        assert_eq!(stored.len(), 1);
        let alarm = &stored[0];
        assert_eq!(alarm.source, Source::Heartbeat);
        assert_eq!(alarm.fingerprint, "heartbeat:backup");
        assert_eq!(alarm.status, SignalStatus::Firing);
        assert_eq!(alarm.service, "cup");
        assert_eq!(alarm.severity.as_str(), "major");
        assert_eq!(alarm.labels["heartbeat"], "backup");
        assert_eq!(alarm.labels["area"], "umbria");
        assert_eq!(alarm.summary, "Monitor backup");
        assert_eq!(
            finding(alarm),
            Some(Finding::Silent {
                seconds: 90,
                never: false
            })
        );
    }

    #[tokio::test]
    async fn the_next_ping_resolves_and_restarts_the_clock() {
        let b = bench().await;
        let hb = beats(&b, &[spec("backup", 60, 30)]);
        hb.sync(at(0)).await.unwrap();
        assert_eq!(hb.check(at(90)).await.unwrap(), vec!["backup".to_owned()]);
        let pinged = hb.ping("backup", at(200)).await.unwrap();
        assert_eq!(pinged.was, "late");
        assert!(pinged.signal.is_some());
        let stored = signals(&b.store).await;
        assert_eq!(stored.len(), 2);
        assert_eq!(stored[1].status, SignalStatus::Resolved);
        assert_eq!(stored[1].fingerprint, stored[0].fingerprint);
        // Up again: a second ping resolves nothing more.
        let again = hb.ping("backup", at(201)).await.unwrap();
        assert_eq!((again.was.as_str(), again.signal), ("up", None));
        assert!(hb.check(at(290)).await.unwrap().is_empty());
        assert_eq!(hb.check(at(291)).await.unwrap(), vec!["backup".to_owned()]);
        assert_eq!(signals(&b.store).await.len(), 3);
    }

    #[tokio::test]
    async fn a_failure_report_raises_at_once_and_once() {
        let b = bench().await;
        let hb = beats(&b, &[spec("backup", 60, 30)]);
        hb.sync(at(0)).await.unwrap();
        let failed = hb
            .fail("backup", "disk full\r\n\0 at /var", at(5))
            .await
            .unwrap();
        assert_eq!(failed.was, "new");
        assert!(failed.signal.is_some());
        assert_eq!(state(&b.store, "backup").await, "failed");
        let second = hb.fail("backup", "still full", at(6)).await.unwrap();
        assert_eq!((second.was.as_str(), second.signal), ("failed", None));
        // A failed heartbeat is not also declared late.
        assert!(hb.check(at(1000)).await.unwrap().is_empty());
        let stored = signals(&b.store).await;
        assert_eq!(stored.len(), 1);
        assert_eq!(stored[0].status, SignalStatus::Firing);
        assert_eq!(
            finding(&stored[0]),
            Some(Finding::ReportedFailure {
                cause: "disk full at /var".into()
            })
        );
        let rows = b.store.heartbeats().await.unwrap();
        assert_eq!(rows[0].detail, "still full");
        let back = hb.ping("backup", at(1001)).await.unwrap();
        assert_eq!(back.was, "failed");
        assert_eq!(signals(&b.store).await[1].status, SignalStatus::Resolved);
    }

    #[tokio::test]
    async fn a_heartbeat_never_pinged_starts_its_clock_when_first_known_and_a_restart_gives_it_time()
     {
        let b = bench().await;
        let hb = beats(&b, &[spec("backup", 60, 30)]);
        hb.sync(at(0)).await.unwrap();
        assert!(hb.check(at(89)).await.unwrap().is_empty());
        // Banditore was stopped from 89 s to an hour: pings sent meanwhile were lost, so the
        // clock starts again at the restart instead of raising an alarm at once.
        hb.sync(at(3600)).await.unwrap();
        assert!(hb.check(at(3689)).await.unwrap().is_empty());
        assert_eq!(hb.check(at(3690)).await.unwrap(), vec!["backup".to_owned()]);
        let stored = signals(&b.store).await;
        // Never pinged since its clock started, an hour and a half before.
        assert_eq!(
            finding(&stored[0]),
            Some(Finding::Silent {
                seconds: 3690,
                never: true
            })
        );
    }

    #[tokio::test]
    async fn a_restart_while_late_keeps_the_alarm_without_raising_or_resolving_it_again() {
        let b = bench().await;
        let hb = beats(&b, &[spec("backup", 60, 30)]);
        hb.sync(at(0)).await.unwrap();
        assert_eq!(hb.check(at(90)).await.unwrap(), vec!["backup".to_owned()]);
        // Stopped at 95 s, started again an hour later with the same configuration.
        let again = beats(&b, &[spec("backup", 60, 30)]);
        again.sync(at(3600)).await.unwrap();
        assert_eq!(state(&b.store, "backup").await, "late");
        assert!(again.check(at(3601)).await.unwrap().is_empty());
        assert!(again.check(at(7200)).await.unwrap().is_empty());
        assert_eq!(
            signals(&b.store).await.len(),
            1,
            "still the one alarm, firing"
        );
        let back = again.ping("backup", at(7300)).await.unwrap();
        assert_eq!(back.was, "late");
        let stored = signals(&b.store).await;
        assert_eq!(stored.len(), 2);
        assert_eq!(stored[1].status, SignalStatus::Resolved);
    }

    #[tokio::test]
    async fn a_heartbeat_removed_from_the_configuration_resolves_its_alarm() {
        let b = bench().await;
        let hb = beats(&b, &[spec("backup", 60, 30), spec("kept", 60, 30)]);
        hb.sync(at(0)).await.unwrap();
        assert_eq!(hb.check(at(90)).await.unwrap().len(), 2);
        let fewer = beats(&b, &[spec("kept", 60, 30)]);
        fewer.sync(at(100)).await.unwrap();
        let names: Vec<String> = b
            .store
            .heartbeats()
            .await
            .unwrap()
            .into_iter()
            .map(|r| r.name)
            .collect();
        assert_eq!(names, vec!["kept".to_owned()]);
        let stored = signals(&b.store).await;
        let last = stored.last().unwrap();
        assert_eq!(
            (last.fingerprint.as_str(), last.status),
            ("heartbeat:backup", SignalStatus::Resolved)
        );
    }

    #[tokio::test]
    async fn unknown_names_are_refused_and_watchdogs_match_the_labels_sent() {
        let b = bench().await;
        let hb = beats(&b, &[spec("prometheus", 60, 30)]);
        hb.sync(at(0)).await.unwrap();
        let err = hb.ping("nope", at(1)).await.unwrap_err();
        assert_eq!(err.to_string(), "no heartbeat is named `nope`");
        assert!(hb.fail("nope", "", at(1)).await.is_err());
        let labels = |pairs: &[(&str, &str)]| -> Labels {
            pairs
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect()
        };
        let watchdog = labels(&[
            ("alertname", "Watchdog"),
            ("cluster", "umbria"),
            ("severity", "none"),
        ]);
        assert_eq!(hb.watchdog_of(&watchdog).as_deref(), Some("prometheus"));
        assert_eq!(
            hb.watchdog_of(&labels(&[("alertname", "Watchdog"), ("cluster", "marche")])),
            None
        );
        assert_eq!(hb.watchdog_of(&labels(&[("alertname", "CupDown")])), None);
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(32))]
        /// Whatever a monitor writes in a failure report, the alarm carries one clean line of at
        /// most DETAIL_MAX characters, and nothing panics.
        #[test]
        fn any_failure_text_is_kept_as_one_clean_line(said in crate::hostile::text()) {
            let kept = clean(&said);
            proptest::prop_assert!(kept.chars().count() <= DETAIL_MAX);
            let overrides = kept.chars().any(|c| c.is_control() || c == '\u{202e}');
            proptest::prop_assert!(!overrides);
            let said = Finding::ReportedFailure { cause: kept };
            let signal = alarm(&spec("x", 60, 30), SignalStatus::Firing, Some(said.clone()), at(0));
            proptest::prop_assert_eq!(&signal.fingerprint, "heartbeat:x");
            proptest::prop_assert_eq!(finding(&signal), Some(said));
        }
    }
}
