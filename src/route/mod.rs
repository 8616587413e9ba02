//! The router: incident updates × subscriptions → frozen messages and one delivery per
//! recipient, written in one transaction; for more than [`PART`] recipients on one channel, in
//! one transaction per part, the update marked routed with the last.
//!
//! A subscriber follows an incident when one of the incident's signals (or, for a manual incident,
//! its own labels) matches every matcher of one of their subscriptions at the subscription's
//! minimum severity or worse. The peak severity of each signal is used, so whoever was told an
//! incident opened is also told how it ends. A desk with an escalation policy is told at first on
//! the channels its policy sends at once; the later steps are stored as its ladder
//! ([`escalation`]).

pub mod affected;
pub mod citizens;
pub mod escalation;

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::{Arc, Mutex, PoisonError};

use jiff::Timestamp;

use crate::domain::Matcher;
use crate::domain::escalation::EscalationPolicy;
use crate::domain::matcher::all_match;
use crate::domain::subscriber::ChannelKind;
use crate::domain::window::Window;
use crate::domain::{Labels, Severity, UpdateKind};
use crate::render::{IncidentView, MessageContext, Rendered, Renderer, SignalView, UpdateView};
use crate::settings::{ApprovalPolicy, ApprovalSettings, STATUS_LANGUAGES, StatusService};
use crate::store::{
    AddressRow, AlertRow, IncidentOrigin, IncidentRow, MessageRow, NewDelivery, NewDraftPart,
    NewMessage, ServiceMode, Store, StoreError, SubscriberRow, Tx, UpdateRow, Written,
};

const UPDATE_BATCH: u32 = 16;

/// How many deliveries of one update a step writes. An update with more than this on one channel
/// is routed in parts, each in a commit of its own: the first carries this many on each channel,
/// which the pipeline claims in the same commit so that they leave at once; each next step
/// writes this many more of the rest. Ten thousand rows in one step held the writer for about
/// 100 ms on a small machine, a hundred thousand for 800 ms, while no message could leave.
pub const PART: usize = 1_000;

/// What is left to write of an update routed in parts, as its first part found its recipients
/// (the update routed at that moment); when the subscribers change meanwhile, the addresses no
/// longer active are left out of it. Held in memory only: when it is lost (a failed step, a
/// restart, a change of leader) the update, still unrouted, is routed again from the start, and
/// what was written stays written once.
struct Parted {
    update_id: i64,
    incident_id: i64,
    /// The subscribers' version the recipients were found at.
    version: i64,
    rest: std::vec::IntoIter<NewDelivery>,
    /// The messages of the rest, for the dispatchers.
    messages: Vec<Arc<MessageRow>>,
    /// The desks whose escalation ladders start with the last part: a step due meanwhile would
    /// find the update not yet routed.
    ladders: BTreeSet<i64>,
}

impl std::fmt::Debug for Parted {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Parted")
            .field("update_id", &self.update_id)
            .field("rest", &self.rest.len())
            .finish()
    }
}

#[derive(Debug, Default)]
pub struct RouteReport {
    pub updates: usize,
    pub deliveries: u64,
    /// The channels that got deliveries.
    pub channels: BTreeSet<ChannelKind>,
    /// Drafts that got new parts, waiting for the communications office.
    pub drafts: Vec<i64>,
    /// Updates were routed while the public audience publishes without approval: incidents'
    /// affected lists may have a statement to hear ([`Bells::ring`](crate::wake::Bells::ring)
    /// wakes their writer; otherwise a public statement waits for a decision, which does).
    pub published: bool,
    pub more: bool,
    /// Updates nobody heard because a maintenance window covered them.
    pub silenced: u64,
    /// The channels whose template failed, once per message sent as the plain fallback.
    pub render_failures: Vec<ChannelKind>,
    /// Waiting escalation steps that a resolution ended.
    pub escalations_ended: u64,
    /// The messages of those deliveries, as the store holds them: their dispatchers need not
    /// read them.
    pub messages: Vec<Arc<MessageRow>>,
    /// The update left to finish in the next steps, once this one is committed.
    parted: Option<Parted>,
}

impl RouteReport {
    /// Once the step is committed: counts what it silenced and the templates that failed, so a
    /// step rolled back and taken again is not counted twice.
    fn committed(&self) {
        if self.silenced > 0 {
            metrics::counter!("banditore_updates_silenced_total").increment(self.silenced);
        }
        for channel in &self.render_failures {
            metrics::counter!("banditore_render_failures_total", "channel" => channel.as_str())
                .increment(1);
        }
        escalation::count("resolved", self.escalations_ended);
    }
}

/// How often the idle pipeline may start reading the subscribers ahead.
const WARM_EVERY: std::time::Duration = std::time::Duration::from_secs(2);

/// Says, when dropped, that no read ahead runs any more.
struct Warmed(Arc<Mutex<(Option<std::time::Instant>, bool)>>);

impl Drop for Warmed {
    fn drop(&mut self) {
        if let Ok(mut w) = self.0.lock() {
            w.1 = false;
        }
    }
}

/// Subscribers but the citizens, as of a version of the subscribers table.
type DeskCache = Mutex<Option<(i64, Arc<Vec<SubscriberRow>>)>>;

/// Reads the subscribers into `cache` if their version moved since it was filled.
async fn warm(store: &dyn Store, cache: &DeskCache) -> Result<(), StoreError> {
    let cached = cache.lock().ok().and_then(|c| c.as_ref().map(|(v, _)| *v));
    if cached == Some(store.subscribers_version().await?) {
        return Ok(());
    }
    let (version, loaded) = store.desks().await?;
    keep_newest(cache, version, Arc::new(loaded));
    Ok(())
}

/// Puts subscribers read at `version` in `cache`, unless it holds a newer version already (a
/// step and a read ahead may each have read them meanwhile: the newest stays).
fn keep_newest(cache: &DeskCache, version: i64, desks: Arc<Vec<SubscriberRow>>) {
    if let Ok(mut c) = cache.lock()
        && c.as_ref().is_none_or(|(v, _)| *v < version)
    {
        *c = Some((version, desks));
    }
}

pub struct Router {
    store: Arc<dyn Store>,
    renderer: Renderer,
    public_url: String,
    enabled: BTreeSet<ChannelKind>,
    /// Which audiences wait for the communications office.
    approval: ApprovalSettings,
    /// Subscribers but the citizens, as of a version of the subscribers table; reloaded when it
    /// changes. Citizens are never loaded whole (see [`citizens`]).
    cache: Arc<DeskCache>,
    /// When [`Router::keep_desks_warm`] last started a read ahead, and whether one runs.
    warming: Arc<Mutex<(Option<std::time::Instant>, bool)>>,
    /// Maintenance windows from the configuration (silences come from the store).
    windows: Arc<Vec<Window>>,
    /// The status page's services: the public reads their names, not the monitors' labels.
    status_services: Arc<Vec<StatusService>>,
    /// Each audience's escalation policy; a subscriber's own replaces it.
    escalation: Arc<BTreeMap<String, EscalationPolicy>>,
    /// What the affected lists' writer last scanned and found nothing to do (see
    /// [`affected`]).
    affected_idle: Mutex<Option<String>>,
    /// The update being routed in parts, between two steps.
    parted: Mutex<Option<Parted>>,
}

/// One recipient of a message, borrowed from the subscribers it was found among.
struct Recipient<'a> {
    address_id: i64,
    address: &'a str,
    subscriber_name: &'a str,
}

impl Router {
    pub fn new(
        store: Arc<dyn Store>,
        renderer: Renderer,
        public_url: &str,
        enabled: BTreeSet<ChannelKind>,
        approval: ApprovalSettings,
        windows: Arc<Vec<Window>>,
        status_services: Arc<Vec<StatusService>>,
    ) -> Router {
        Router {
            windows,
            status_services,
            store,
            renderer,
            public_url: public_url.trim_end_matches('/').to_owned(),
            enabled,
            approval,
            cache: Arc::default(),
            warming: Arc::default(),
            escalation: Arc::default(),
            affected_idle: Mutex::new(None),
            parted: Mutex::default(),
        }
    }

    /// Starts reading the subscribers (but the citizens) into the cache in the background, from
    /// a reader, when their version moved, so that the next alert's step does not read them
    /// while holding the writer: a hundred thousand addresses take half a second. At most one
    /// read runs, and one starts at most every [`WARM_EVERY`]; the step still reads them itself
    /// whenever the cache is behind. The pipeline calls it when idle.
    pub fn keep_desks_warm(&self) {
        {
            let Ok(mut warming) = self.warming.lock() else {
                return;
            };
            let (last, running) = *warming;
            if running || last.is_some_and(|at| at.elapsed() < WARM_EVERY) {
                return;
            }
            *warming = (Some(std::time::Instant::now()), true);
        }
        let (store, cache, warming) =
            (self.store.clone(), self.cache.clone(), self.warming.clone());
        tokio::spawn(async move {
            // Cleared however the task ends: done, failed, panicked or cancelled.
            let _done = Warmed(warming);
            if let Err(e) = warm(&*store, &cache).await {
                tracing::debug!(error = %e, "cannot read the subscribers ahead; the next step will");
            }
        });
    }

    /// Subscribers but the citizens, from the cache while the subscribers' version holds, with
    /// that version.
    async fn desks(&self, tx: &mut dyn Tx) -> Result<(i64, Arc<Vec<SubscriberRow>>), StoreError> {
        let version = tx.subscribers_version().await?;
        let cached = self.cache.lock().ok().and_then(|c| {
            c.as_ref()
                .filter(|(v, _)| *v == version)
                .map(|(_, s)| s.clone())
        });
        let desks = match cached {
            Some(s) => s,
            None => {
                let loaded = Arc::new(tx.subscribers().await?);
                keep_newest(&self.cache, version, loaded.clone());
                loaded
            }
        };
        Ok((version, desks))
    }

    /// An update rendered for one group, or the plain fallback text when the template fails
    /// (the channel is then noted in `failures`).
    #[expect(clippy::too_many_arguments, reason = "one group's whole description")]
    fn render_group(
        &self,
        incident: &IncidentRow,
        alerts: &[AlertRow],
        update: &UpdateRow,
        channel: ChannelKind,
        language: &str,
        audience: &str,
        failures: &mut Vec<ChannelKind>,
    ) -> Rendered {
        let mut ctx = context(incident, update, audience, &self.public_url);
        if audience == "public" {
            self.name_services_for_the_public(&mut ctx, incident, alerts, language);
        }
        match self.renderer.render_in(channel, language, &ctx) {
            Ok(r) => r,
            Err(e) => {
                tracing::error!(incident = incident.id, update = update.seq, %channel, error = %e,
                    "template failed; sending the plain fallback text");
                failures.push(channel);
                fallback(&ctx, language)
            }
        }
    }

    /// The template language an address is written to in: its own (a chat's), or its
    /// subscriber's, as the channel has it. `None` when the channel has none that fits.
    fn language_of(&self, subscriber: &SubscriberRow, address: &AddressRow) -> Option<String> {
        let wanted = address.language.as_ref().unwrap_or(&subscriber.language);
        self.renderer.language_for(address.channel, wanted)
    }

    pub async fn step(&self, now: Timestamp) -> Result<RouteReport, StoreError> {
        let mut tx = self.store.begin().await?;
        let mut report = self.step_in(tx.as_mut(), now, BTreeMap::new()).await?;
        if report.updates > 0 {
            tx.commit().await?;
            self.committed(&mut report);
        }
        Ok(report)
    }

    /// Once the caller committed a step: counts what it did, and keeps what is left of an update
    /// routed in parts for the next step.
    pub fn committed(&self, report: &mut RouteReport) {
        report.committed();
        *self.parted.lock().unwrap_or_else(PoisonError::into_inner) = report.parted.take();
    }

    /// Forgets an update being routed in parts: leadership was lost, and whoever leads next
    /// starts from the store.
    pub fn forget_parts(&self) {
        self.parted
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
    }

    /// [`Router::step`] inside the caller's transaction (the pipeline applies signals and claims
    /// in the same one); the caller commits, then calls [`Router::committed`]. `known`
    /// holds incidents as an earlier stage of the transaction left them (the engine's), which
    /// are then not read again; each serves one update, since routing may change its incident.
    pub async fn step_in(
        &self,
        tx: &mut dyn Tx,
        now: Timestamp,
        mut known: BTreeMap<i64, Written>,
    ) -> Result<RouteReport, StoreError> {
        // Taken out: a step that fails or is not committed loses it (see [`Parted`]).
        let mut parted = self
            .parted
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        let updates = tx.unrouted_updates(UPDATE_BATCH).await?;
        if updates.is_empty() {
            return Ok(RouteReport::default());
        }
        let (version, subscribers) = self.desks(&mut *tx).await?;
        let mut deliveries = 0;
        let mut escalations_ended = 0;
        let mut channels = BTreeSet::new();
        let mut messages = BTreeMap::new();
        let mut drafts = BTreeSet::new();
        let (mut silenced, mut render_failures) = (0, Vec::new());
        let quiet = self.quiet_windows(now).await?;
        let (mut seen, mut left) = (0, None);
        for update in &updates {
            seen += 1;
            if let Some(mut part) = parted.take_if(|p| p.update_id == update.id) {
                if part.version != version {
                    // An address unsubscribed, stopped or deleted since is not written (a
                    // deleted one could not be).
                    let active: HashSet<i64> = subscribers
                        .iter()
                        .flat_map(|s| s.addresses.iter().filter(|a| a.is_active()))
                        .map(|a| a.id)
                        .collect();
                    let rest: Vec<NewDelivery> = part
                        .rest
                        .filter(|d| active.contains(&d.address_id))
                        .collect();
                    (part.rest, part.version) = (rest.into_iter(), version);
                }
                // A part is what is newly written: routed again from the start, an update finds
                // its first rows written.
                let mut written = 0;
                while written < PART as u64 && part.rest.len() > 0 {
                    let wanted = PART - written as usize;
                    let rows: Vec<NewDelivery> = part.rest.by_ref().take(wanted).collect();
                    let new = tx.insert_deliveries(&rows).await?;
                    if new > 0 {
                        channels.extend(rows.iter().map(|d| d.channel));
                    }
                    written += new;
                }
                deliveries += written;
                if written > 0 {
                    for m in &part.messages {
                        messages.entry(m.id).or_insert_with(|| m.clone());
                    }
                }
                if part.rest.len() > 0 {
                    left = Some(part);
                    break;
                }
                self.start_ladders(&mut *tx, part.incident_id, &part.ladders, &subscribers, now)
                    .await?;
                tx.mark_routed(update.id, now).await?;
                continue;
            }
            let mut on_channel: BTreeMap<ChannelKind, usize> = BTreeMap::new();
            let (mut rest, mut rest_messages) = (Vec::new(), Vec::new());
            let (incident, alerts) = match known.remove(&update.incident_id) {
                Some(w) => (w.incident, w.alerts),
                None => {
                    let Some(incident) = tx.incident(update.incident_id).await? else {
                        tx.mark_routed(update.id, now).await?;
                        continue;
                    };
                    let alerts = tx.alerts(incident.id).await?;
                    (incident, alerts)
                }
            };
            if let Some(window) = silenced_by(&quiet, &incident, &alerts) {
                // Whoever heard the incident open hears it end, even inside a window.
                let heard = update.kind == UpdateKind::Resolved
                    && (!tx.notified_addresses(incident.id).await?.is_empty()
                        || tx.citizens_heard(incident.id).await?);
                if !heard {
                    tracing::info!(
                        incident = incident.id,
                        update = update.seq,
                        window,
                        "in maintenance: nobody is notified"
                    );
                    silenced += 1;
                    tx.set_maintenance(incident.id, Some(window)).await?;
                    tx.mark_routed(update.id, now).await?;
                    continue;
                }
            }
            if incident.maintenance.is_some() {
                tx.set_maintenance(incident.id, None).await?;
            }
            // Whoever heard an earlier update hears this one too, whatever the labels now say.
            let notified = match update.kind {
                UpdateKind::Opened => BTreeSet::new(),
                UpdateKind::Updated | UpdateKind::Resolved => tx
                    .notified_addresses(incident.id)
                    .await?
                    .into_iter()
                    .collect(),
            };
            let (mut groups, ladders) =
                self.recipients(&incident, &alerts, &subscribers, &notified);
            if update.kind == UpdateKind::Resolved {
                escalations_ended += tx.end_escalations(incident.id, now).await?;
            }
            // Citizens hear held public statements: counted now, written in batches once
            // approved. Each of their groups gets a part, listed desks or not.
            let held = self
                .held_citizens(&mut *tx, &incident, &alerts, update)
                .await?;
            if let Some(held) = &held {
                for (channel, language) in held.groups.keys() {
                    groups
                        .entry((*channel, language.clone(), "public".to_owned()))
                        .or_default();
                }
            }
            for ((channel, group_language, audience), recipients) in groups {
                for language in self.languages_of(channel, group_language) {
                    let rendered = self.render_group(
                        &incident,
                        &alerts,
                        update,
                        channel,
                        &language,
                        &audience,
                        &mut render_failures,
                    );
                    let new = NewMessage {
                        update_id: update.id,
                        channel,
                        language: rendered.language.clone(),
                        audience: audience.clone(),
                        subject: rendered.subject,
                        body: rendered.text,
                        html: rendered.html,
                        created_at: now,
                    };
                    // Of two written under one key the store keeps the first (an update routed
                    // again after its parts were cut short finds its messages written).
                    let stored = tx.insert_message(&new).await?;
                    let message_id = stored.id;
                    let (policy, timeout) = self.approval.policy(&audience);
                    if policy != ApprovalPolicy::Auto {
                        let draft = tx
                            .hold_for_approval(&NewDraftPart {
                                incident_id: incident.id,
                                update_id: update.id,
                                audience: audience.clone(),
                                policy: policy.as_str(),
                                publish_at: timeout.map(|t| {
                                    now.checked_add(
                                        jiff::SignedDuration::try_from(t).unwrap_or_default(),
                                    )
                                    .unwrap_or(now)
                                }),
                                message_id,
                                channel,
                                language: rendered.language.clone(),
                                recipients: recipients
                                    .iter()
                                    .map(|r| {
                                        (
                                            r.address_id,
                                            r.address.to_owned(),
                                            r.subscriber_name.to_owned(),
                                        )
                                    })
                                    .collect(),
                                citizens: held.as_ref().filter(|_| audience == "public").and_then(
                                    |h| {
                                        h.groups
                                            .get(&(channel, language.clone()))
                                            .map(|n| (*n, h.through))
                                    },
                                ),
                                now,
                            })
                            .await?;
                        drafts.insert(draft);
                        continue;
                    }
                    // Each language of the status page goes to the one page: the first written
                    // is its delivery, the others are kept as messages.
                    let taken = on_channel.entry(channel).or_default();
                    let (now_part, later) =
                        recipients.split_at(PART.saturating_sub(*taken).min(recipients.len()));
                    *taken += now_part.len();
                    let rows = delivery_rows(message_id, update, channel, now_part, now);
                    let written = tx.insert_deliveries(&rows).await?;
                    let message = Arc::new(MessageRow {
                        id: message_id,
                        update_id: update.id,
                        channel,
                        language: new.language,
                        audience: new.audience,
                        subject: stored.subject,
                        body: stored.body,
                        html: stored.html,
                        buttons: None,
                        update_kind: update.kind,
                    });
                    if written > 0 {
                        channels.insert(channel);
                        messages
                            .entry(message_id)
                            .or_insert_with(|| message.clone());
                    }
                    if !later.is_empty() {
                        rest.extend(delivery_rows(message_id, update, channel, later, now));
                        rest_messages.push(message);
                    }
                    deliveries += written;
                }
            }
            if !rest.is_empty() {
                // The rest in the next steps, before any later update, so that each recipient
                // still hears an incident's updates in order.
                left = Some(Parted {
                    update_id: update.id,
                    incident_id: incident.id,
                    version,
                    rest: rest.into_iter(),
                    messages: rest_messages,
                    ladders: if update.kind == UpdateKind::Resolved {
                        BTreeSet::new()
                    } else {
                        ladders
                    },
                });
                break;
            }
            if update.kind != UpdateKind::Resolved {
                self.start_ladders(&mut *tx, incident.id, &ladders, &subscribers, now)
                    .await?;
            }
            tx.mark_routed(update.id, now).await?;
        }
        Ok(RouteReport {
            updates: seen,
            deliveries,
            channels,
            drafts: drafts.into_iter().collect(),
            published: seen > 0 && self.public_auto(),
            more: left.is_some() || updates.len() as u32 == UPDATE_BATCH,
            silenced,
            render_failures,
            escalations_ended,
            messages: messages.into_values().collect(),
            parted: left,
        })
    }

    /// The template languages a group is written in: its own, and for the status page every
    /// language the page offers (parts of one draft, approved together).
    fn languages_of(&self, channel: ChannelKind, language: String) -> Vec<String> {
        let mut languages = vec![language];
        if channel == ChannelKind::Status {
            let available = self.renderer.languages(channel);
            for offered in STATUS_LANGUAGES {
                if !languages.iter().any(|l| l == offered) && available.iter().any(|l| l == offered)
                {
                    languages.push(offered.to_owned());
                }
            }
        }
        languages
    }

    /// What the public reads of the services: the status page's names of those the incident
    /// concerns, in `language`, rather than the monitors' label values. Unchanged when no
    /// service of the page concerns it.
    fn name_services_for_the_public(
        &self,
        ctx: &mut MessageContext,
        incident: &IncidentRow,
        alerts: &[AlertRow],
        language: &str,
    ) {
        let mut label_sets: Vec<&Labels> = alerts.iter().map(|a| &a.labels).collect();
        if incident.origin == IncidentOrigin::Manual {
            label_sets.push(&incident.labels);
        }
        let names: Vec<String> = crate::board::concerned(&self.status_services, &label_sets)
            .into_iter()
            .map(|s| s.name_in(language).to_owned())
            .collect();
        if !names.is_empty() {
            ctx.incident.services = names;
        }
    }

    /// The windows and silences open at `now`: (name, matchers).
    async fn quiet_windows(
        &self,
        now: Timestamp,
    ) -> Result<Vec<(String, Vec<Matcher>)>, StoreError> {
        let mut open: Vec<(String, Vec<Matcher>)> = self
            .windows
            .iter()
            .filter(|w| w.open_at(now))
            .map(|w| (w.name.clone(), w.matchers.clone()))
            .collect();
        for s in self.store.silences(now).await? {
            if s.starts_at > now {
                continue;
            }
            let matchers: Vec<Matcher> = s.matchers.iter().filter_map(|m| m.parse().ok()).collect();
            // A silence whose matchers no longer parse silences nothing.
            if matchers.len() == s.matchers.len() && !matchers.is_empty() {
                open.push((format!("silence {}: {}", s.id, s.comment), matchers));
            }
        }
        Ok(open)
    }

    /// Who hears about this incident, grouped by what they will receive:
    /// (channel, template language, audience) → recipients, each address once per channel; and
    /// the desks with an escalation policy that follow it. Such a desk's addresses on a channel
    /// its policy holds back are left to their step, unless they heard an earlier update. An
    /// address two subscribers share goes with one whose audience is told at once, if any:
    /// a desk sharing its mailbox with a list held for approval hears at once, not once the
    /// office approves (or never, if it rejects).
    fn recipients<'a>(
        &self,
        incident: &IncidentRow,
        alerts: &[AlertRow],
        subscribers: &'a [SubscriberRow],
        notified: &BTreeSet<(i64, ChannelKind)>,
    ) -> (Groups<'a>, BTreeSet<i64>) {
        let mut ladders = BTreeSet::new();
        let label_sets = severities(incident, alerts);
        // Groups are few and addresses many: a group is found along a short list rather than
        // by a key built for each address, and a language asked for is looked up once.
        let mut found: Vec<(GroupKey, Vec<Recipient<'a>>)> = Vec::new();
        let mut languages: HashMap<(ChannelKind, &'a str), Option<String>> = HashMap::new();
        let mut seen: HashSet<(ChannelKind, &'a str)> = HashSet::new();
        let at_once =
            |s: &&SubscriberRow| self.approval.policy(&s.audience).0 == ApprovalPolicy::Auto;
        let (told_at_once, held): (Vec<&SubscriberRow>, Vec<&SubscriberRow>) =
            subscribers.iter().partition(at_once);
        for subscriber in told_at_once.into_iter().chain(held) {
            let wanted = wanted_channels(subscriber, &label_sets);
            for address in subscriber.addresses.iter().filter(|a| a.is_active()) {
                let follows = follows(subscriber, address, &wanted, &label_sets, notified);
                if !follows || !self.enabled.contains(&address.channel) {
                    continue;
                }
                if let Some(policy) = self.policy_of(subscriber) {
                    ladders.insert(subscriber.id);
                    if policy.holds_back(address.channel)
                        && !notified.contains(&(address.id, address.channel))
                    {
                        continue;
                    }
                }
                if !seen.insert((address.channel, address.address.as_str())) {
                    continue;
                }
                let asked = address.language.as_ref().unwrap_or(&subscriber.language);
                let Some(language) = languages
                    .entry((address.channel, asked.as_str()))
                    .or_insert_with(|| self.renderer.language_for(address.channel, asked))
                    .as_deref()
                else {
                    continue;
                };
                let (channel, audience) = (address.channel, subscriber.audience.as_str());
                let recipient = Recipient {
                    address_id: address.id,
                    address: &address.address,
                    subscriber_name: &subscriber.name,
                };
                match found
                    .iter_mut()
                    .find(|((c, l, a), _)| *c == channel && l == language && a == audience)
                {
                    Some((_, list)) => list.push(recipient),
                    None => found.push((
                        (channel, language.to_owned(), audience.to_owned()),
                        vec![recipient],
                    )),
                }
            }
        }
        (found.into_iter().collect(), ladders)
    }
}

/// The label sets the incident's subscribers are matched against, each with its severity: every
/// alert's at its peak, and a manual incident's own labels.
fn severities<'a>(
    incident: &'a IncidentRow,
    alerts: &'a [AlertRow],
) -> Vec<(&'a Labels, Severity)> {
    let mut label_sets: Vec<(&Labels, Severity)> = alerts
        .iter()
        .map(|a| (&a.labels, a.peak_severity))
        .collect();
    if incident.origin == IncidentOrigin::Manual {
        label_sets.push((&incident.labels, incident.severity));
    }
    label_sets
}

/// The channels on which a subscriber's subscriptions follow an incident.
fn wanted_channels(
    subscriber: &SubscriberRow,
    label_sets: &[(&Labels, Severity)],
) -> BTreeSet<ChannelKind> {
    subscriber
        .subscriptions
        .iter()
        .filter(|sub| {
            label_sets.iter().any(|(labels, severity)| {
                *severity >= sub.min_severity && all_match(&sub.matchers, labels)
            })
        })
        .flat_map(|sub| {
            ChannelKind::ALL
                .into_iter()
                .filter(move |c| sub.wants_channel(*c))
        })
        .collect()
}

/// Whether an address hears about the incident: its subscriber follows it on the address's
/// channel (or the address chose services itself), or it heard an earlier update.
fn follows(
    subscriber: &SubscriberRow,
    address: &AddressRow,
    wanted: &BTreeSet<ChannelKind>,
    label_sets: &[(&Labels, Severity)],
    notified: &BTreeSet<(i64, ChannelKind)>,
) -> bool {
    if address.services.is_empty() {
        wanted.contains(&address.channel) || notified.contains(&(address.id, address.channel))
    } else {
        follows_with_choices(subscriber, address, label_sets, notified)
    }
}

/// What a group's recipients receive alike: (channel, template language, audience).
type GroupKey = (ChannelKind, String, String);

/// Recipients grouped by what they receive.
type Groups<'a> = BTreeMap<GroupKey, Vec<Recipient<'a>>>;

/// One delivery of a message per recipient, pending from `now`.
fn delivery_rows(
    message_id: i64,
    update: &UpdateRow,
    channel: ChannelKind,
    recipients: &[Recipient],
    now: Timestamp,
) -> Vec<NewDelivery> {
    recipients
        .iter()
        .map(|r| NewDelivery {
            message_id,
            update_id: update.id,
            incident_id: update.incident_id,
            address_id: r.address_id,
            subscriber_name: r.subscriber_name.to_owned(),
            channel,
            recipient: r.address.to_owned(),
            origin_at: update.origin_at,
            created_at: now,
        })
        .collect()
}

/// The window or silence that covers every signal of the incident (and its own labels, for one
/// opened by hand), if one does.
fn silenced_by<'a>(
    quiet: &'a [(String, Vec<Matcher>)],
    incident: &IncidentRow,
    alerts: &[AlertRow],
) -> Option<&'a str> {
    if quiet.is_empty() {
        return None;
    }
    let mut label_sets: Vec<&Labels> = alerts.iter().map(|a| &a.labels).collect();
    if incident.origin == IncidentOrigin::Manual {
        label_sets.push(&incident.labels);
    }
    if label_sets.is_empty() {
        return None;
    }
    let covering = |labels: &Labels| {
        quiet
            .iter()
            .find(|(_, matchers)| all_match(matchers, labels))
            .map(|(name, _)| name.as_str())
    };
    let names: Vec<&str> = label_sets
        .iter()
        .map(|l| covering(l))
        .collect::<Option<_>>()?;
    names.first().copied()
}

/// Whether an address that chose services itself (`/subscribe`, `/unsubscribe`) follows an
/// incident: signals about muted services do not count, even for whoever heard the incident
/// open; followed services count at any severity; the subscriber's subscriptions count for the
/// rest.
fn follows_with_choices(
    subscriber: &SubscriberRow,
    address: &AddressRow,
    label_sets: &[(&Labels, Severity)],
    notified: &BTreeSet<(i64, ChannelKind)>,
) -> bool {
    let choice = |labels: &Labels| {
        labels
            .get("service")
            .and_then(|s| address.services.get(s))
            .copied()
    };
    let live: Vec<&(&Labels, Severity)> = label_sets
        .iter()
        .filter(|(labels, _)| choice(labels) != Some(ServiceMode::Mute))
        .collect();
    if live.is_empty() {
        return false;
    }
    let followed = live
        .iter()
        .any(|(labels, _)| choice(labels) == Some(ServiceMode::Follow));
    let subscribed = subscriber
        .subscriptions
        .iter()
        .filter(|sub| sub.wants_channel(address.channel))
        .any(|sub| {
            live.iter().any(|(labels, severity)| {
                *severity >= sub.min_severity && all_match(&sub.matchers, labels)
            })
        });
    followed || subscribed || notified.contains(&(address.id, address.channel))
}

fn rfc3339(t: Timestamp) -> String {
    t.to_string()
}

/// Builds what templates see for one update: the incident as the update froze it, so that a
/// message routed late still tells the moment it was written.
pub fn context(
    incident: &IncidentRow,
    update: &UpdateRow,
    audience: &str,
    public_url: &str,
) -> MessageContext {
    let mut services: Vec<String> = Vec::new();
    let mut components: Vec<String> = Vec::new();
    let add = |list: &mut Vec<String>, value: &str| {
        if !list.iter().any(|v| v == value) {
            list.push(value.to_owned());
        }
    };
    for s in &update.signals {
        add(&mut services, &s.service);
        if let Some(c) = &s.component {
            add(&mut components, c);
        }
    }
    if let Some(service) = incident.labels.get("service") {
        add(&mut services, service);
    }
    if let Some(component) = incident.labels.get("component") {
        add(&mut components, component);
    }
    let resolved_at = (update.kind == UpdateKind::Resolved).then_some(update.created_at);
    let duration_minutes =
        resolved_at.map(|end| (end.as_second() - incident.opened_at.as_second()).max(0) / 60);
    MessageContext::new(
        IncidentView {
            id: incident.id,
            title: update.title.clone(),
            status: update.status.as_str().into(),
            severity: update.severity.as_str().into(),
            services,
            components,
            opened_at: rfc3339(incident.opened_at),
            resolved_at: resolved_at.map(rfc3339),
            duration_minutes,
        },
        UpdateView {
            seq: update.seq,
            kind: update.kind.as_str().into(),
            status: update.status.as_str().into(),
            body: update.body.clone(),
            author: update.author.clone(),
            at: rfc3339(update.created_at),
        },
        // The monitors' own words (host names, error texts) are for people inside; a public
        // statement is drafted without them.
        update
            .signals
            .iter()
            .filter(|_| audience != "public")
            .map(|s| SignalView {
                service: s.service.clone(),
                component: s.component.clone(),
                summary: s.summary.clone(),
                description: s.description.clone(),
                status: if s.firing { "firing" } else { "resolved" }.into(),
                severity: s.severity.as_str().into(),
                starts_at: s.starts_at.map(rfc3339),
                url: s.url.clone(),
                finding: s.finding.clone(),
            })
            .collect(),
        audience,
        public_url,
    )
}

/// Plain text used when a template fails at run time, so that the recipient still hears.
fn fallback(ctx: &MessageContext, language: &str) -> Rendered {
    let i = &ctx.incident;
    let subject = format!("[Banditore] #{} {} ({})", i.id, i.title, ctx.update.kind);
    let mut text = format!(
        "{}\n\nincident #{}: {}\nstatus: {}\nseverity: {}\nservices: {}\nopened: {}\n",
        subject,
        i.id,
        i.title,
        i.status,
        i.severity,
        i.services.join(", "),
        i.opened_at
    );
    if let Some(body) = &ctx.update.body {
        text.push_str(&format!("\n{body}\n"));
    }
    // An affected list's row: its appointment on a line of its own (left out without one).
    if let Some(detail) = ctx.detail {
        text.push_str(&format!("\n{detail}\n"));
    }
    text.push_str(&format!("\n--\n{}\n", ctx.unsubscribe_url));
    Rendered {
        language: language.to_owned(),
        subject: Some(subject),
        text,
        html: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::UpdateKind;
    use crate::render::{DETAIL, Markup, fill_detail, sample_context};

    #[test]
    fn the_fallback_text_carries_an_affected_rows_detail() {
        let mut ctx = sample_context(UpdateKind::Opened);
        assert!(!fallback(&ctx, "it").text.contains(DETAIL));
        ctx.detail = Some(DETAIL);
        let text = fallback(&ctx, "it").text;
        assert!(fill_detail(&text, "ore 9, Foligno", Markup::Plain).contains("\nore 9, Foligno\n"));
        assert!(!fill_detail(&text, "", Markup::Plain).contains(DETAIL));
    }
}
