//! Banditore's own probes, run from where it is deployed, so that an outage is detected even when
//! the monitors inside the failing data centre go dark with it.
//!
//! - Every replica runs every probe, spread over its interval (a stable offset per probe, so
//!   that a thousand probes do not fire together), at most `probing.concurrency` at once.
//! - Each replica keeps a probe's state: down after `failure_threshold` failures in a row, up
//!   after `success_threshold` successes; until one of them has decided since the start, its
//!   view is `unknown`. Its latest view goes to the store (`probe_observations`), in batches.
//! - The canaries (targets outside every watched service) tell whether this replica can reach
//!   the network at all. When all of them fail, the replica raises one signal about itself and its
//!   views count as `unknown`: it declares nothing until they recover.
//! - The leader reads every replica's fresh views and declares a service down when `quorum` of
//!   them see it down, up when fewer do; with fewer views than `quorum` it declares nothing. A
//!   change becomes a signal (`probe:<name>`, firing or resolved) through the same queue as
//!   webhooks, so grouping, subscriptions, templates and approval apply unchanged. A certificate close to expiry is a warning of its own.
//! - What a check found is data ([`Finding`]: a status code, the statuses expected…), carried
//!   by the signal to the templates, which say it in each reader's language.

pub mod check;
pub mod dns;
pub mod schedule;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use jiff::Timestamp;
use serde::Serialize;
use tokio::sync::{Semaphore, mpsc, watch};
use tokio_util::sync::CancellationToken;

use crate::cluster::Leadership;
use crate::domain::finding::FINDING_ANNOTATION;
use crate::domain::signal::{NormalizeRules, RawSignal, SignalStatus, Source};
use crate::domain::{Finding, Labels, Severity};
use crate::ingest::IngestQueue;
use crate::settings::ProbeSpec;
use crate::store::{Observation, Store, Topic, Verdict};
use crate::wake::Calls;
use check::{Check, Outcome};
use schedule::{Schedule, first_at, phase};

/// How this replica sees one probe now.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct LocalView {
    pub state: &'static str,
    pub failures_in_a_row: u32,
    pub successes_in_a_row: u32,
    pub last_detail: String,
    pub last_ok: Option<bool>,
    pub last_duration_ms: Option<u128>,
    #[schema(value_type = Option<String>, format = DateTime)]
    pub last_at: Option<Timestamp>,
    pub cert_days_left: Option<i64>,
    /// Whether a threshold has decided the state since this replica started: until then its
    /// view counts for nothing. A replica restarting during an outage must not report the
    /// service up because its first failure is still under `failure_threshold`.
    #[serde(skip)]
    pub decided: bool,
}

impl Default for LocalView {
    fn default() -> Self {
        LocalView {
            // A probe is taken as up until it fails `failure_threshold` times.
            state: "up",
            failures_in_a_row: 0,
            successes_in_a_row: 0,
            last_detail: String::new(),
            last_ok: None,
            last_duration_ms: None,
            last_at: None,
            cert_days_left: None,
            decided: false,
        }
    }
}

impl LocalView {
    /// Counts one outcome; true when the state changed.
    fn observe(
        &mut self,
        outcome: &Outcome,
        failure_threshold: u32,
        success_threshold: u32,
    ) -> bool {
        if outcome.ok {
            self.successes_in_a_row += 1;
            self.failures_in_a_row = 0;
        } else {
            self.failures_in_a_row += 1;
            self.successes_in_a_row = 0;
        }
        self.last_detail = outcome.detail();
        self.last_ok = Some(outcome.ok);
        self.last_duration_ms = Some(outcome.took.as_millis());
        self.last_at = Some(Timestamp::now());
        self.cert_days_left = outcome.cert_days_left;
        let before = self.state;
        if self.state == "up" && self.failures_in_a_row >= failure_threshold {
            self.state = "down";
        } else if self.state == "down" && self.successes_in_a_row >= success_threshold {
            self.state = "up";
        }
        self.decided |= self.failures_in_a_row >= failure_threshold
            || self.successes_in_a_row >= success_threshold;
        before != self.state
    }
}

/// What the API shows and the leader shares: this replica's views, and whether it can reach the
/// network.
#[derive(Default)]
pub struct ProbeStatus {
    views: Mutex<BTreeMap<String, LocalView>>,
    network_down: AtomicBool,
    canaries: Mutex<Vec<(String, Outcome)>>,
}

impl ProbeStatus {
    pub fn views(&self) -> BTreeMap<String, LocalView> {
        self.views.lock().map(|v| v.clone()).unwrap_or_default()
    }

    pub fn network_ok(&self) -> bool {
        !self.network_down.load(Ordering::Relaxed)
    }

    /// The canaries' last outcomes: (target, ok, detail).
    pub fn canaries(&self) -> Vec<(String, bool, String)> {
        self.canaries
            .lock()
            .map(|c| {
                c.iter()
                    .map(|(t, o)| (t.clone(), o.ok, o.detail()))
                    .collect()
            })
            .unwrap_or_default()
    }
}

pub struct Prober {
    pub checks: Vec<Arc<Check>>,
    pub canaries: Vec<Arc<Check>>,
    pub canary_interval: Duration,
    pub concurrency: usize,
    pub quorum: u32,
    pub instance: String,
    /// Where this replica runs, the same across its restarts (`cluster.instance`, else the host
    /// name): what its network alarm is about, so that a restarted replica ends its own alarm.
    pub host: String,
    pub store: Arc<dyn Store>,
    pub ingest: IngestQueue,
    pub leadership: Leadership,
    pub status: Arc<ProbeStatus>,
    /// `probing.recheck_interval`, and how every probe's own is chosen.
    pub probing: crate::settings::ProbingSettings,
    /// Other replicas' calls to look at a probe now (forwarded from the store's wake-ups).
    pub calls: Calls,
}

/// How long a replica's view of a probe counts: three intervals and a timeout, at least 5 s.
pub fn freshness(spec: &ProbeSpec) -> Duration {
    (spec.interval.get() * 3 + spec.timeout.get()).max(Duration::from_secs(5))
}

impl Prober {
    pub async fn run(self, shutdown: CancellationToken) {
        if self.checks.is_empty() {
            // No probe left to run; an outage a removed one declared must still end.
            self.resolve_removed_when_leading(shutdown).await;
            return;
        }
        let permits = Arc::new(Semaphore::new(self.concurrency.max(1)));
        let (observed, to_store) = mpsc::unbounded_channel::<Observation>();
        let mut tasks = tokio::task::JoinSet::new();
        let (places, place) = watch::channel(Place { rank: 0, of: 1 });
        let seen_for = self
            .checks
            .iter()
            .map(|c| freshness(&c.spec))
            .max()
            .unwrap_or(Duration::from_secs(30));
        tasks.spawn(find_place(
            self.store.clone(),
            self.instance.clone(),
            seen_for,
            places,
            shutdown.clone(),
        ));
        for check in &self.checks {
            tasks.spawn(probe_loop(
                check.clone(),
                Looking {
                    permits: permits.clone(),
                    status: self.status.clone(),
                    observed: observed.clone(),
                    instance: self.instance.clone(),
                    recheck: self.probing.recheck(&check.spec),
                    calls: self.calls.clone(),
                    store: self.store.clone(),
                    place: place.clone(),
                },
                shutdown.clone(),
            ));
        }
        if !self.canaries.is_empty() {
            tasks.spawn(canary_loop(
                self.canaries.clone(),
                self.canary_interval,
                self.status.clone(),
                self.ingest.clone(),
                self.host.clone(),
                shutdown.clone(),
            ));
        }
        drop(observed);
        tasks.spawn(store_observations(self.store.clone(), to_store));
        let mut judge = self.judge();
        let mut leadership = self.leadership.clone();
        let mut tick = tokio::time::interval(Duration::from_millis(500));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = tick.tick() => {}
            }
            if !leadership.is_leader() {
                // Another replica judged meanwhile: start again from the store.
                judge.forget();
                tokio::select! {
                    _ = shutdown.cancelled() => break,
                    _ = leadership.wait() => continue,
                }
            }
            if let Err(e) = judge.step(Timestamp::now()).await {
                tracing::warn!(error = %e, "cannot judge the probes; trying again shortly");
            }
        }
        tasks.shutdown().await;
    }
}

impl Prober {
    fn judge(&self) -> Judge {
        Judge {
            checks: self.checks.clone(),
            quorum: self.quorum,
            store: self.store.clone(),
            ingest: self.ingest.clone(),
            seen: HashMap::new(),
            read_until: None,
            verdicts: None,
        }
    }

    /// With no probe configured: once this replica leads, one judgement, which resolves what
    /// removed probes left declared down ([`Judge::resolve_removed`]).
    async fn resolve_removed_when_leading(&self, shutdown: CancellationToken) {
        let mut judge = self.judge();
        let mut leadership = self.leadership.clone();
        loop {
            if leadership.is_leader() {
                match judge.step(Timestamp::now()).await {
                    Ok(()) => return,
                    Err(e) => {
                        tracing::warn!(error = %e, "cannot resolve the verdicts of removed probes; trying again shortly")
                    }
                }
                tokio::select! {
                    _ = shutdown.cancelled() => return,
                    _ = tokio::time::sleep(Duration::from_secs(5)) => {}
                }
            } else {
                tokio::select! {
                    _ = shutdown.cancelled() => return,
                    _ = leadership.wait() => {}
                }
            }
        }
    }
}

/// What every probe's loop shares, and its own recheck interval.
struct Looking {
    permits: Arc<Semaphore>,
    status: Arc<ProbeStatus>,
    observed: mpsc::UnboundedSender<Observation>,
    instance: String,
    recheck: Duration,
    calls: Calls,
    store: Arc<dyn Store>,
    place: watch::Receiver<Place>,
}

/// This replica's place among those probing: `rank` in the order of their names, of `of`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Place {
    rank: u32,
    of: u32,
}

/// Where the regular checks of a probe start, for this replica's place, on the wall clock.
fn first_check(spec: &ProbeSpec, place: Place) -> std::time::Instant {
    let wall_ms = u64::try_from(Timestamp::now().as_millisecond()).unwrap_or_default();
    let interval = spec.interval.get();
    first_at(
        std::time::Instant::now(),
        wall_ms,
        interval,
        phase(&spec.name, interval, place.rank, place.of),
    )
}

/// Keeps this replica's place among the replicas probing (those whose observations are fresher
/// than `seen_for`), so that each checks a probe at its own share of the interval.
async fn find_place(
    store: Arc<dyn Store>,
    instance: String,
    seen_for: Duration,
    places: watch::Sender<Place>,
    shutdown: CancellationToken,
) {
    let seen_for = jiff::SignedDuration::try_from(seen_for).unwrap_or_default();
    let mut tick = tokio::time::interval(Duration::from_secs(5));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tick.tick() => {}
        }
        let since = Timestamp::now().checked_sub(seen_for).unwrap_or_default();
        let mut names = match store.observers(since).await {
            Ok(names) => names,
            Err(e) => {
                tracing::debug!(error = %e, "cannot read which replicas probe; keeping this one's place");
                continue;
            }
        };
        if !names.contains(&instance) {
            names.push(instance.clone());
            names.sort();
        }
        let rank = names
            .iter()
            .position(|n| *n == instance)
            .unwrap_or_default();
        let place = Place {
            rank: u32::try_from(rank).unwrap_or_default(),
            of: u32::try_from(names.len()).unwrap_or(1),
        };
        places.send_if_modified(|p| {
            let changed = *p != place;
            if changed {
                tracing::info!(
                    rank = place.rank,
                    of = place.of,
                    "replicas probing changed: this one takes its share of each interval"
                );
            }
            *p = place;
            changed
        });
    }
}

async fn probe_loop(check: Arc<Check>, mut at: Looking, shutdown: CancellationToken) {
    let spec = &check.spec;
    let bell = at.calls.bell(&spec.name);
    let place = *at.place.borrow_and_update();
    let mut schedule = Schedule::new(first_check(spec, place), spec.interval.get(), at.recheck);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep_until(schedule.next().into()) => {}
            _ = bell.notified() => {
                schedule.call(std::time::Instant::now());
                continue;
            }
            Ok(()) = at.place.changed() => {
                let place = *at.place.borrow_and_update();
                schedule.rephase(first_check(spec, place));
                continue;
            }
        }
        let Ok(permit) = at.permits.acquire().await else {
            return;
        };
        let started = std::time::Instant::now();
        let outcome = tokio::select! {
            _ = shutdown.cancelled() => return,
            o = check.run() => o,
        };
        drop(permit);
        metrics::histogram!("banditore_probe_duration_seconds", "probe" => spec.name.clone())
            .record(outcome.took.as_secs_f64());
        let view = {
            let Ok(mut views) = at.status.views.lock() else {
                return;
            };
            let view = views.entry(spec.name.clone()).or_default();
            if view.observe(&outcome, spec.failure_threshold, spec.success_threshold) {
                tracing::info!(probe = %spec.name, state = view.state, detail = %outcome.detail(), "probe state changed here");
            }
            view.clone()
        };
        // The result disagrees with the state and the thresholds have not decided yet.
        let in_doubt = outcome.ok != (view.state == "up");
        schedule.checked(started, in_doubt);
        metrics::gauge!("banditore_probe_up", "probe" => spec.name.clone())
            .set(if view.state == "up" { 1.0 } else { 0.0 });
        let network_ok = at.status.network_ok();
        let state = if network_ok && view.decided {
            view.state
        } else {
            "unknown"
        };
        let _ = at.observed.send(Observation {
            probe: spec.name.clone(),
            instance: at.instance.clone(),
            state: state.to_owned(),
            detail: outcome.detail(),
            finding: Some(outcome.finding),
            cert_days_left: outcome.cert_days_left,
            observed_at: Timestamp::now(),
        });
        // The other replicas look too, at once (a replica that cannot reach the network asks
        // nobody: its doubt is about itself).
        if in_doubt && network_ok {
            tracing::debug!(probe = %spec.name, "check in doubt: looking again shortly, asking the other replicas to look now");
            at.store.announce(Topic::Probe(spec.name.clone())).await;
        }
    }
}

/// Writes observations in batches: whatever arrived while the last batch was written.
async fn store_observations(
    store: Arc<dyn Store>,
    mut to_store: mpsc::UnboundedReceiver<Observation>,
) {
    let mut batch = Vec::new();
    while to_store.recv_many(&mut batch, 1024).await > 0 {
        // One row per probe: only the latest observation of each matters.
        let mut latest: HashMap<String, Observation> = HashMap::new();
        for o in batch.drain(..) {
            latest.insert(o.probe.clone(), o);
        }
        let rows: Vec<Observation> = latest.into_values().collect();
        if let Err(e) = store.record_observations(&rows).await {
            tracing::warn!(error = %e, observations = rows.len(), "cannot store probe observations");
        }
    }
}

/// Runs the canaries every `interval`: when every one fails, this replica cannot reach the
/// network; it says so once, and its probe views count as unknown until one succeeds again.
async fn canary_loop(
    canaries: Vec<Arc<Check>>,
    interval: Duration,
    status: Arc<ProbeStatus>,
    ingest: IngestQueue,
    host: String,
    shutdown: CancellationToken,
) {
    let mut tick = tokio::time::interval(interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // The first round says where the network stands whatever it was: an alarm this replica
    // raised before a restart ends when its first round finds the network again.
    let mut first = true;
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tick.tick() => {}
        }
        let outcomes = futures_util::future::join_all(canaries.iter().map(|c| c.run())).await;
        let all_failed = outcomes.iter().all(|o| !o.ok);
        let findings: Vec<String> = canaries
            .iter()
            .zip(&outcomes)
            .map(|(c, o)| format!("{}: {}", target_of(&c.spec), o.detail()))
            .collect();
        if let Ok(mut last) = status.canaries.lock() {
            *last = canaries
                .iter()
                .zip(outcomes)
                .map(|(c, o)| (target_of(&c.spec), o))
                .collect();
        }
        let was_down = status.network_down.swap(all_failed, Ordering::Relaxed);
        metrics::gauge!("banditore_network_ok").set(if all_failed { 0.0 } else { 1.0 });
        let changed = was_down != all_failed;
        if !changed && !first {
            continue;
        }
        first = false;
        let status_now = if all_failed {
            tracing::error!(host = %host, canaries = ?findings, "every canary fails: this replica cannot reach the network; holding outage declarations");
            SignalStatus::Firing
        } else {
            if changed {
                tracing::info!(host = %host, "a canary answers again: probing resumes");
            }
            SignalStatus::Resolved
        };
        let mut labels = Labels::new();
        labels.insert("service".into(), "banditore".into());
        labels.insert("component".into(), "network".into());
        labels.insert("instance".into(), host.clone());
        let raw = RawSignal {
            fingerprint: Some(format!("network:{host}")),
            status: Some(status_now),
            severity: Some(Severity::Critical.as_str().into()),
            service: Some("banditore".into()),
            component: Some("network".into()),
            labels,
            summary: Some(format!(
                "Banditore cannot reach the network from {host}: {}",
                findings.join("; ")
            )),
            starts_at: Some(Timestamp::now()),
            ..RawSignal::default()
        };
        if let Err(e) = emit(&ingest, raw, 20).await {
            tracing::error!(error = %e, "cannot store the signal about this replica's network");
        }
    }
}

fn target_of(spec: &ProbeSpec) -> String {
    if spec.url.is_empty() {
        spec.target.clone()
    } else {
        public_url(&spec.url)
    }
}

/// A probe's URL without what may be a credential (user and password, query string), for
/// alerts and the API.
pub fn public_url(raw: &str) -> String {
    match url::Url::parse(raw) {
        Ok(mut u) => {
            let _ = u.set_username("");
            let _ = u.set_password(None);
            u.set_query(None);
            u.set_fragment(None);
            u.to_string()
        }
        Err(_) => String::new(),
    }
}

/// Stores a signal through the ingest queue (durable when it returns `Ok`), trying `tries` times.
async fn emit(
    ingest: &IngestQueue,
    raw: RawSignal,
    tries: u32,
) -> Result<(), crate::store::StoreError> {
    let now = Timestamp::now();
    let rules = NormalizeRules {
        default_severity: Severity::Warning,
    };
    let signal = raw.normalize(Source::Probe, &rules, now);
    let mut delay = Duration::from_millis(200);
    let mut tried = 0;
    loop {
        match ingest.store(vec![(now, signal.clone())]).await {
            Ok(_) => return Ok(()),
            Err(e) if tried + 1 >= tries => return Err(e),
            Err(e) => {
                tracing::warn!(error = %e, fingerprint = %signal.fingerprint, "cannot store a probe signal; retrying");
                tried += 1;
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(5));
            }
        }
    }
}

/// The leader's judgement over every replica's views.
struct Judge {
    checks: Vec<Arc<Check>>,
    quorum: u32,
    store: Arc<dyn Store>,
    ingest: IngestQueue,
    /// Every replica's latest view, kept up to date with what changed since the last read.
    seen: HashMap<(String, String), Observation>,
    read_until: Option<Timestamp>,
    /// The verdicts, as this leader stored them (read once when it starts to lead).
    verdicts: Option<HashMap<String, Verdict>>,
}

impl Judge {
    fn forget(&mut self) {
        self.seen.clear();
        self.read_until = None;
        self.verdicts = None;
    }

    async fn step(&mut self, now: Timestamp) -> Result<(), crate::store::StoreError> {
        // Rows written late (a slow replica, a clock a little behind) are caught by reading a
        // freshness window before the last read: anything older no longer counts anyway.
        let overlap = self
            .checks
            .iter()
            .map(|c| freshness(&c.spec))
            .max()
            .unwrap_or(Duration::from_secs(5));
        let overlap = jiff::SignedDuration::try_from(overlap).unwrap_or_default();
        let since = self.read_until.and_then(|t| t.checked_sub(overlap).ok());
        for o in self.store.observations(since).await? {
            self.seen.insert((o.probe.clone(), o.instance.clone()), o);
        }
        self.read_until = Some(now);
        if self.verdicts.is_none() {
            let stored = self.store.verdicts().await?;
            let mut verdicts = stored.into_iter().map(|v| (v.subject.clone(), v)).collect();
            self.resolve_removed(&mut verdicts, now).await?;
            self.verdicts = Some(verdicts);
        }
        let mut by_probe: HashMap<&str, Vec<&Observation>> = HashMap::new();
        for o in self.seen.values() {
            by_probe.entry(o.probe.as_str()).or_default().push(o);
        }
        let mut changes = Vec::new();
        for check in &self.checks {
            let spec = &check.spec;
            let fresh = jiff::SignedDuration::try_from(freshness(spec)).unwrap_or_default();
            let known: Vec<&Observation> = by_probe
                .get(spec.name.as_str())
                .into_iter()
                .flatten()
                .copied()
                .filter(|o| o.state != "unknown")
                .filter(|o| now.duration_since(o.observed_at) <= fresh)
                .collect();
            // Fewer replicas able to see the target than the quorum (the others gone, cut off
            // or just started): nothing is declared either way, and the verdict stands. Taking
            // too few views for "up" would tell the desks an outage is over while it is not.
            if known.is_empty() || (known.len() as u32) < self.quorum {
                continue;
            }
            let down: Vec<&&Observation> = known.iter().filter(|o| o.state == "down").collect();
            let is_down = down.len() as u32 >= self.quorum;
            metrics::gauge!("banditore_probe_declared_down", "probe" => spec.name.clone())
                .set(if is_down { 1.0 } else { 0.0 });
            let seen = match down.first() {
                Some(o) if is_down => **o,
                _ => known[0],
            };
            changes.push((
                check.clone(),
                spec.name.clone(),
                is_down,
                seen.detail.clone(),
                seen.finding.clone(),
            ));
            // A certificate close to its end is a warning of its own.
            let days = known.iter().filter_map(|o| o.cert_days_left).min();
            if let Some(days) = days {
                let expiring = days < i64::from(spec.warn_days);
                let subject = format!("{}#certificate", spec.name);
                let finding = if expiring {
                    Finding::CertificateExpiring {
                        target: spec.target.clone(),
                        days,
                    }
                } else {
                    Finding::CertificateValid { days }
                };
                changes.push((
                    check.clone(),
                    subject,
                    expiring,
                    finding.to_string(),
                    Some(finding),
                ));
            }
        }
        for (check, subject, down, detail, finding) in changes {
            let was_down = self
                .verdicts
                .as_ref()
                .and_then(|v| v.get(&subject))
                .is_some_and(|v| v.state == "down");
            if was_down != down {
                let verdict = self
                    .declare(&check.spec, &subject, down, &detail, finding.as_ref(), now)
                    .await?;
                if let Some(v) = self.verdicts.as_mut() {
                    v.insert(subject, verdict);
                }
            }
        }
        Ok(())
    }

    /// Ends what a probe no longer configured (removed or renamed) declared down: its resolution
    /// is signalled and its verdict set up, as a heartbeat no longer configured says farewell.
    /// Nothing else would ever end that outage: the probe is no longer checked, and a probe's
    /// alert has no lease to run out.
    async fn resolve_removed(
        &self,
        verdicts: &mut HashMap<String, Verdict>,
        now: Timestamp,
    ) -> Result<(), crate::store::StoreError> {
        let configured: HashSet<&str> = self.checks.iter().map(|c| c.spec.name.as_str()).collect();
        for verdict in verdicts.values_mut() {
            // A probe's own verdict, or its certificate's (a probe's name may hold a `#`).
            let probe = (verdict.subject.strip_suffix("#certificate")).unwrap_or(&verdict.subject);
            if verdict.state != "down" || configured.contains(probe) {
                continue;
            }
            tracing::info!(probe, subject = %verdict.subject, "a probe no longer configured had declared an outage: resolving it");
            let raw = RawSignal {
                fingerprint: Some(verdict.subject.clone()),
                status: Some(SignalStatus::Resolved),
                summary: Some(format!("Probe {probe} is no longer configured")),
                starts_at: Some(now),
                ..RawSignal::default()
            };
            emit(&self.ingest, raw, 3).await?;
            *verdict = Verdict {
                subject: verdict.subject.clone(),
                state: "up".into(),
                detail: "no longer configured".into(),
                changed_at: now,
            };
            self.store.set_verdict(verdict).await?;
        }
        Ok(())
    }

    /// Records and signals a change of `subject` (a probe, or its certificate). The signal says
    /// what the probe is (its summary, or its name) and carries the finding as data, which each
    /// message puts into its reader's words; `detail`, the finding in English, is the operators'.
    async fn declare(
        &self,
        spec: &ProbeSpec,
        subject: &str,
        down: bool,
        detail: &str,
        finding: Option<&Finding>,
        now: Timestamp,
    ) -> Result<Verdict, crate::store::StoreError> {
        let state = if down { "down" } else { "up" };
        tracing::info!(probe = %spec.name, subject, state, detail, "probe verdict changed");
        let certificate = subject.ends_with("#certificate");
        let mut labels: Labels = spec
            .labels
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        labels.insert("probe".into(), spec.name.clone());
        labels.insert("service".into(), spec.service.clone());
        if let Some(c) = &spec.component {
            labels.insert("component".into(), c.clone());
        }
        let annotations: Labels = finding
            .map(|f| (FINDING_ANNOTATION.to_owned(), f.to_annotation()))
            .into_iter()
            .collect();
        let what = if spec.summary.is_empty() {
            spec.name.clone()
        } else {
            spec.summary.clone()
        };
        let raw = RawSignal {
            fingerprint: Some(subject.to_owned()),
            status: Some(if down {
                SignalStatus::Firing
            } else {
                SignalStatus::Resolved
            }),
            severity: Some(
                if certificate {
                    Severity::Warning
                } else {
                    spec.severity
                }
                .as_str()
                .into(),
            ),
            service: Some(spec.service.clone()),
            component: spec.component.clone(),
            labels,
            annotations,
            summary: Some(what),
            starts_at: Some(now),
            url: (!spec.url.is_empty()).then(|| public_url(&spec.url)),
            ..RawSignal::default()
        };
        // Signal first, then the verdict: a crash or a failing store in between declares again
        // at the next step, never silently not.
        emit(&self.ingest, raw, 3).await?;
        let verdict = Verdict {
            subject: subject.to_owned(),
            state: state.into(),
            detail: detail.to_owned(),
            changed_at: now,
        };
        self.store.set_verdict(&verdict).await?;
        Ok(verdict)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn outcome(ok: bool) -> Outcome {
        Outcome {
            ok,
            finding: Finding::Connected,
            took: Duration::from_millis(1),
            cert_days_left: None,
        }
    }

    #[test]
    fn thresholds_decide_and_flapping_changes_nothing() {
        let mut v = LocalView::default();
        assert!(!v.observe(&outcome(false), 2, 2));
        assert!(
            v.observe(&outcome(false), 2, 2),
            "down at the second failure"
        );
        assert_eq!(v.state, "down");
        assert!(!v.observe(&outcome(true), 2, 2));
        assert!(v.observe(&outcome(true), 2, 2), "up at the second success");
        for i in 0..20 {
            assert!(
                !v.observe(&outcome(i % 2 == 0), 2, 2),
                "flapping never changes it"
            );
        }
        assert_eq!(v.state, "up");
    }

    /// A view counts only once a threshold has spoken: the first failures after a start are
    /// not "up", nor is the first success.
    #[test]
    fn a_view_is_decided_only_by_a_threshold() {
        let mut failing = LocalView::default();
        failing.observe(&outcome(false), 2, 3);
        assert!(!failing.decided, "one failure of two");
        failing.observe(&outcome(false), 2, 3);
        assert!(failing.decided && failing.state == "down");
        let mut answering = LocalView::default();
        answering.observe(&outcome(true), 2, 3);
        answering.observe(&outcome(true), 2, 3);
        assert!(!answering.decided, "two successes of three");
        answering.observe(&outcome(false), 2, 3);
        answering.observe(&outcome(true), 2, 3);
        assert!(!answering.decided, "the count starts again");
        for _ in 0..3 {
            answering.observe(&outcome(true), 2, 3);
        }
        assert!(answering.decided && answering.state == "up");
    }

    #[test]
    fn offsets_spread_probes_over_the_interval() {
        let interval = Duration::from_secs(30);
        let offsets: Vec<Duration> = (0..1000)
            .map(|i| schedule::offset(&format!("p{i}"), interval))
            .collect();
        assert!(offsets.iter().all(|o| *o < interval));
        // Each tenth of the interval gets some probes: no herd at the start.
        for tenth in 0..10 {
            let lo = interval * tenth / 10;
            let hi = interval * (tenth + 1) / 10;
            let n = offsets.iter().filter(|o| **o >= lo && **o < hi).count();
            assert!((50..=150).contains(&n), "tenth {tenth}: {n}");
        }
    }
}
