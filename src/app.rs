//! Wiring: builds every part from validated settings, runs them, and shuts them down in order.
//!
//! Start-up: open and migrate the store, keep config subscribers in step, bind the listener.
//! Shutdown: stop accepting requests and finish the ones in flight, store what the ingest writer
//! holds, stop the pipeline after its current step, let dispatchers finish in-flight sends and
//! release their leases, then close the store.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context;
use jiff::Timestamp;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::approval::{Announcer, ApprovalLinks};
use crate::bot::{BotApprovals, BotContext, POLL_TIMEOUT, UpdateReceiver, run_bot};
use crate::channel::Channel;
use crate::channel::rate::RateLimiter;
use crate::channel::telegram;
use crate::cluster::{self, Leadership};
use crate::domain::signal::NormalizeRules;
use crate::domain::subscriber::{ChannelKind, ValidSubscriber};
use crate::domain::window::Window;
use crate::ids::random_hex;
use crate::incident::Engine;
use crate::ingest::{Coalescer, IngestQueue, ParseOptions};
use crate::outbox::{Backoff, Crew, Dispatcher, Handover, OutboxConfig, Pauses};
use crate::pipeline::Pipeline;
use crate::probe::check::{Check, HttpClients};
use crate::probe::{ProbeStatus, Prober};
use crate::route::{Router, citizens::CitizenWriter};
use crate::settings::{TelegramKeys, TelegramMode, Validated};
use crate::store::{self, Store, Topic};
use crate::unsubscribe::UnsubscribeLinks;
use crate::wake::Wakers;
use crate::web::{self, AppState, Authenticator, TelegramWeb, WEBHOOK_PATH};

pub struct Application {
    listener: TcpListener,
    retention: std::time::Duration,
    citizens_retention: crate::retention::Citizens,
    leadership: Leadership,
    campaign: tokio::task::JoinHandle<()>,
    campaign_stop: CancellationToken,
    wakeups: Option<tokio::task::JoinHandle<()>>,
    store: Arc<dyn Store>,
    state: AppState,
    pipeline: Pipeline,
    /// Writes approved statements' deliveries to citizens in batches, on the leader.
    citizen_writer: CitizenWriter,
    dispatchers: Vec<Dispatcher>,
    ingest_writer: tokio::task::JoinHandle<()>,
    request_timeout: std::time::Duration,
    limits: web::Limits,
    /// The Telegram bot, when enabled: the client, what its handlers need, and in webhook mode
    /// the URL to register, its secret and the updates the endpoint receives.
    bot: Option<TelegramBot>,
    /// Tells the communications office about new drafts, when it has an audience.
    announcer: Option<Announcer>,
    /// Banditore's own probes.
    prober: Prober,
    /// Tells the operators when a channel of this replica is paused or resumes.
    notices: crate::outbox::pause::Notices,
    /// The tokens the first start created, to be shown once.
    first_run: Option<crate::tokens::FirstRun>,
}

type TelegramBot = (
    teloxide::Bot,
    Arc<BotContext>,
    Option<(url::Url, String, UpdateReceiver)>,
);

impl Application {
    /// Builds every part, one section after the other; the order is the order of the effects
    /// (the store is migrated before anything reads it, the listener is bound last).
    pub async fn build(v: Validated) -> anyhow::Result<Application> {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let s = &v.settings;
        crate::process::raise_open_files_limit(s.server.max_connections);
        let metrics = crate::telemetry::metrics();
        let (store, key, deployment_id) = open_store(&v).await?;
        let (ground, campaign) = join_cluster(&v, store, key).await?;
        let mut channels = ground.channels(&deployment_id)?;
        let telegram = ground.telegram(channels.telegram.take())?;
        let notices = ground.pause_notices(&channels.dispatchers);

        let approval_links = &ground.approval_links;
        let announcer = Some(Announcer {
            audience: s.approval.notify_audience.clone(),
            links: approval_links.clone(),
            renderer: v.renderer.clone(),
            language: s.routing.default_language.clone(),
            channels: [ChannelKind::Email, ChannelKind::Telegram]
                .into_iter()
                .filter(|c| channels.enabled.contains(c))
                .collect(),
        });

        // The ingest writer hands small batches to the pipeline, which stores and applies them
        // in one commit.
        let (to_pipeline, handed) = crate::ingest::handoff();
        let flow = ground.pipeline(channels.enabled.clone(), channels.handover.clone(), handed)?;
        let intake = ground.ingest_and_probes(to_pipeline)?;
        let citizens = ground
            .citizens(channels.email.clone(), channels.sms.clone())
            .await?;
        let state = ground.web_state(metrics, &channels, &telegram, &flow, &intake, citizens);
        let listener = TcpListener::bind(s.server.listen)
            .await
            .with_context(|| format!("binding {}", s.server.listen))?;
        // Made once the address is taken, so that a start that fails does not make tokens
        // nobody was shown.
        let first_tokens =
            crate::tokens::first_start(state.store.as_ref(), v.tokens.len(), Timestamp::now())
                .await
                .context("creating the first API tokens")?;
        state
            .auth
            .reload(state.store.as_ref(), Timestamp::now())
            .await
            .context("loading the API tokens kept in the store")?;
        let first_run = first_tokens.map(|issued| crate::tokens::FirstRun {
            issued,
            api: listener
                .local_addr()
                .map_or_else(|_| s.server.public_url.clone(), crate::tokens::local_base),
            public: s.server.public_url.clone(),
        });
        Ok(Application {
            listener,
            retention: s.store.retention.get(),
            citizens_retention: crate::retention::Citizens {
                affected_for: s.affected.retention.get(),
                erase_after: s.status.subscribe.erase_after.get(),
                // The invite lasts `code_ttl`; an hour more for a slow start.
                unbound_for: s.status.subscribe.code_ttl.get()
                    + std::time::Duration::from_secs(3600),
            },
            leadership: ground.leadership,
            campaign: campaign.task,
            campaign_stop: campaign.stop,
            wakeups: campaign.wakeups,
            store: ground.store,
            state,
            pipeline: flow.pipeline,
            citizen_writer: flow.citizen_writer,
            dispatchers: channels.dispatchers,
            ingest_writer: intake.writer,
            request_timeout: s.server.request_timeout.get(),
            limits: web::Limits {
                max_connections: s.server.max_connections,
                header_read_timeout: s.server.header_read_timeout.get(),
            },
            bot: telegram.map(|t| t.bot),
            announcer,
            prober: intake.prober,
            notices,
            first_run,
        })
    }

    /// What the first start of a deployment tells its operator (the tokens it created), once.
    pub fn take_first_run(&mut self) -> Option<crate::tokens::FirstRun> {
        self.first_run.take()
    }

    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// Serves until `shutdown` is cancelled, then stops everything in order.
    pub async fn run(self, shutdown: CancellationToken) -> anyhow::Result<()> {
        // The settings and subscriber lists used to build everything are gone by now.
        crate::process::release_startup_memory();
        let addr = self.local_addr()?;
        let workers = CancellationToken::new();
        let pipeline = tokio::spawn(self.pipeline.run(workers.clone()));
        let citizen_writer = tokio::spawn(self.citizen_writer.run(workers.clone()));
        let retention = tokio::spawn(crate::retention::run(
            self.store.clone(),
            self.retention,
            self.citizens_retention,
            self.leadership.clone(),
            workers.clone(),
        ));
        let approval = tokio::spawn(crate::approval::run(
            self.store.clone(),
            self.state.wake.clone(),
            self.announcer,
            self.leadership.clone(),
            workers.clone(),
        ));
        // The probes report through the ingest writer, which ends once every handle is gone:
        // they stop first.
        let probing = CancellationToken::new();
        let prober = tokio::spawn(self.prober.run(probing.clone()));
        let heartbeats = self.state.heartbeats.clone().spawn(workers.clone());
        let tokens = tokio::spawn(web::keep_reloading(
            self.state.auth.clone(),
            self.store.clone(),
            workers.clone(),
        ));
        let notices = tokio::spawn(self.notices.run(self.state.pauses.clone(), workers.clone()));
        let bot = self.bot.map(|(client, context, webhook)| {
            tokio::spawn(run_bot(
                client,
                context,
                webhook,
                self.leadership.clone(),
                workers.clone(),
            ))
        });
        // The dispatchers stop after the pipeline, whose last step may hand them deliveries.
        let sending = CancellationToken::new();
        let dispatchers: Vec<_> = self
            .dispatchers
            .into_iter()
            .map(|d| tokio::spawn(d.run(sending.clone())))
            .collect();
        tracing::info!(%addr, "listening");
        let manager = tokio::spawn(crate::systemd::run(shutdown.clone()));
        let app = web::router(self.state, self.request_timeout);
        web::serve(self.listener, app, self.limits, shutdown).await;
        tracing::info!("no longer accepting requests; stopping workers");
        // Every other handle of the ingest writer went with the router: it stores what it holds
        // and ends.
        probing.cancel();
        let _ = prober.await;
        let _ = self.ingest_writer.await;
        workers.cancel();
        let _ = (pipeline.await, heartbeats.await);
        let _ = citizen_writer.await;
        let _ = retention.await;
        let _ = approval.await;
        let _ = tokens.await;
        let _ = notices.await;
        if let Some(bot) = bot {
            let _ = bot.await;
        }
        // Only now that the pipeline has stopped may another replica lead.
        self.campaign_stop.cancel();
        let _ = self.campaign.await;
        sending.cancel();
        for d in dispatchers {
            let _ = d.await;
        }
        if let Some(task) = self.wakeups {
            task.abort();
        }
        self.store.close().await;
        manager.abort();
        tracing::info!("stopped");
        Ok(())
    }
}

/// Opens and migrates the store, takes the keys kept in it, and brings the subscribers of the
/// configuration into step. Returns the store, the secret key and the deployment id.
async fn open_store(v: &Validated) -> anyhow::Result<(Arc<dyn Store>, String, String)> {
    let s = &v.settings;
    let store = store::open(&s.store, v.store_password.as_ref())
        .await
        .context("opening the store")?;
    store.migrate().await.context("migrating the store")?;

    let key = match &v.secret_key {
        Some(configured) => configured.expose().to_owned(),
        None => {
            store
                .setting_or_insert("unsubscribe_key", &random_hex(32))
                .await?
        }
    };
    let deployment_id = store
        .setting_or_insert("deployment_id", &random_hex(6))
        .await?;
    // App IO addresses read from the configuration are sealed now that the key is known.
    let subscribers = ValidSubscriber::seal_all(&v.subscribers, key.as_bytes());
    let report = store
        .sync_config_subscribers(&subscribers, Timestamp::now())
        .await?;
    tracing::info!(
        created = report.created,
        updated = report.updated,
        removed = report.removed,
        "config subscribers in step"
    );
    Ok((store, key, deployment_id))
}

/// What the sections of [`Application::build`] share once the store is open: the settings, the
/// store, the secret key and the links it signs, and this replica among the others.
struct Ground<'v> {
    v: &'v Validated,
    store: Arc<dyn Store>,
    key: String,
    links: UnsubscribeLinks,
    approval_links: ApprovalLinks,
    /// This replica's name, in leases and in what it tells the operators.
    owner: String,
    wake: Wakers,
    leadership: Leadership,
    /// Re-sends that change nothing, answered without a write: only where this process both
    /// ingests every signal and runs the engine (one replica).
    coalescer: Option<Coalescer>,
}

/// The campaign to lead and the task forwarding other replicas' wake-ups; stopped at shutdown.
struct Campaign {
    task: tokio::task::JoinHandle<()>,
    stop: CancellationToken,
    wakeups: Option<tokio::task::JoinHandle<()>>,
}

/// Names this replica, starts its campaign to lead, and listens for the other replicas.
async fn join_cluster(
    v: &Validated,
    store: Arc<dyn Store>,
    key: String,
) -> anyhow::Result<(Ground<'_>, Campaign)> {
    let s = &v.settings;
    let wake = Wakers::default();
    let links = UnsubscribeLinks::new(key.as_bytes(), &s.server.public_url);
    let owner = match s.cluster.instance.as_str() {
        "" => format!("{}-{}", hostname(), random_hex(4)),
        name => name.to_owned(),
    };
    let campaign_stop = CancellationToken::new();
    let (leadership, campaign) = cluster::campaign(
        store.clone(),
        owner.clone(),
        s.cluster.leader_lease.get(),
        wake.leader.clone(),
        campaign_stop.clone(),
    );
    let wakeups = store
        .wakeups()
        .await
        .context("listening for other replicas")?
        .map(|rx| tokio::spawn(forward_wakeups(rx, wake.clone())));
    let approval_links = ApprovalLinks::new(key.as_bytes(), &s.server.public_url);
    let ground = Ground {
        v,
        store,
        key,
        links,
        approval_links,
        owner,
        wake,
        leadership,
        coalescer: s.store.is_sqlite().then(Coalescer::default),
    };
    let campaign = Campaign {
        task: campaign,
        stop: campaign_stop,
        wakeups,
    };
    Ok((ground, campaign))
}

/// The configured channels, each behind its dispatcher, and what other parts share with them.
struct Channels {
    /// Channels whose credentials the provider refuses; read by /readyz, /metrics, the console.
    pauses: Pauses,
    dispatchers: Vec<Dispatcher>,
    /// The pipeline's way to the dispatchers.
    handover: Handover,
    enabled: BTreeSet<ChannelKind>,
    /// The email channel, for citizens' sign-ups.
    email: Option<Arc<dyn Channel>>,
    /// The channels that carry citizens' sign-up codes (SMS, WhatsApp).
    sms: crate::citizen::CodeSenders,
    callbacks: crate::web::Callbacks,
    /// Telegram's client and pacer, for the bot.
    telegram: Option<Arc<telegram::Shared>>,
}

/// The Telegram bot and what the web shares with it.
struct Telegram {
    web: Arc<TelegramWeb>,
    bot: TelegramBot,
}

/// The way signals go: the engine that groups them, the maintenance windows, the pipeline.
struct Flow {
    engine: Engine,
    windows: Arc<Vec<Window>>,
    pipeline: Pipeline,
    citizen_writer: CitizenWriter,
}

/// What comes in: the ingest queue and its writer, and Banditore's own probes.
struct Intake {
    ingest: IngestQueue,
    writer: tokio::task::JoinHandle<()>,
    prober: Prober,
    probe_status: Arc<ProbeStatus>,
}

impl Ground<'_> {
    /// Builds every configured channel from the registry and gives each its dispatcher.
    fn channels(&self, deployment_id: &str) -> anyhow::Result<Channels> {
        let (v, store, wake) = (self.v, &self.store, &self.wake);
        let s = &v.settings;
        let pauses = Pauses::new(
            s.outbox.retry_initial.get(),
            s.outbox
                .retry_max
                .get()
                .min(std::time::Duration::from_secs(300)),
        );
        let crew = Crew {
            store: store.clone(),
            // Leases name the process: restarted under its name, it takes back its old leases.
            owner: format!("{}/{}", self.owner, random_hex(4)),
            links: self.links.clone(),
            pauses: pauses.clone(),
        };
        let mut dispatchers = Vec::new();
        let mut enabled = BTreeSet::new();
        let outbox = OutboxConfig {
            lease: s.outbox.lease.get(),
            send_timeout: s.outbox.send_timeout.get(),
            batch_size: s.outbox.batch_size,
            max_attempts: s.outbox.max_attempts,
            backoff: Backoff {
                initial: s.outbox.retry_initial.get(),
                max: s.outbox.retry_max.get(),
            },
            poll_interval: s.outbox.poll_interval.get(),
            concurrency: 1,
            shutdown_timeout: s.server.shutdown_timeout.get(),
        };
        // Every configured channel gets its dispatcher; what other parts share with a sender
        // (the email and SMS channels for citizens, Telegram's client and pacer) is kept by kind.
        let wiring = crate::channel::Wiring {
            store: store.clone(),
            deployment_id,
            key: self.key.as_bytes(),
            alarms: pauses.alarms(),
        };
        let mut shared = BTreeMap::new();
        let mut senders = BTreeMap::new();
        for spec in crate::channel::registry() {
            let Some(built) = spec.build(v, &wiring)? else {
                continue;
            };
            let kind = spec.kind();
            enabled.insert(kind);
            senders.insert(kind, built.channel.clone());
            if let Some(parts) = built.shared {
                shared.insert(kind, parts);
            }
            dispatchers.push(Dispatcher::new(
                &crew,
                built.channel,
                OutboxConfig {
                    concurrency: built.concurrency,
                    ..outbox.clone()
                },
                wake.dispatch.bell(),
                built.rate.map(|(rate, burst)| {
                    Arc::new(RateLimiter::new(store.clone(), kind.as_str(), rate, burst))
                }),
            ));
        }
        let email_channel = senders.get(&ChannelKind::Email).cloned();
        let sms_for_citizens = crate::citizen::code_senders(&senders);
        let callbacks = crate::web::Callbacks::take(&mut shared);
        let telegram = shared
            .remove(&ChannelKind::Telegram)
            .and_then(|parts| parts.downcast::<telegram::Shared>().ok());
        let doors = dispatchers.iter_mut().map(Dispatcher::door).collect();
        let handover = Handover::new(&crew, outbox.lease, doors);
        Ok(Channels {
            pauses,
            dispatchers,
            handover,
            enabled,
            email: email_channel,
            sms: sms_for_citizens,
            callbacks,
            telegram,
        })
    }

    /// Sets up the Telegram bot when the Telegram channel is enabled: its own client for updates,
    /// the webhook in webhook mode, and what its handlers need.
    fn telegram(&self, parts: Option<Arc<telegram::Shared>>) -> anyhow::Result<Option<Telegram>> {
        let Some(parts) = parts else {
            return Ok(None);
        };
        let (v, store) = (self.v, &self.store);
        let s = &v.settings;
        let t = &s.channels.telegram;
        let keys = v
            .channels
            .get::<TelegramKeys>(ChannelKind::Telegram)
            .context("channels.telegram: enabled without a token")?;
        let (client, pacer) = (parts.bot.clone(), parts.pacer.clone());
        let (webhook, endpoint) = match (t.mode, &keys.secret_token) {
            (TelegramMode::Webhook, Some(secret)) => {
                let url = format!(
                    "{}{WEBHOOK_PATH}",
                    s.server.public_url.trim_end_matches('/')
                );
                let url = url::Url::parse(&url).with_context(|| format!("webhook URL `{url}`"))?;
                let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
                (
                    Some((url, secret.expose().to_owned(), rx)),
                    Some((secret.clone(), tx)),
                )
            }
            _ => (None, None),
        };
        let telegram_web = Arc::new(TelegramWeb {
            bot: client.clone(),
            username: tokio::sync::OnceCell::new(),
            invite_ttl: t.invite_ttl.get(),
            webhook: endpoint,
        });
        let context = BotContext {
            store: store.clone(),
            renderer: v.renderer.clone(),
            default_language: s.routing.default_language.clone(),
            pacer,
            acks: crate::ack::Acknowledgements::new(store.clone(), self.links.clone()),
            approvals: Some(BotApprovals {
                links: self.approval_links.clone(),
                wake: self.wake.dispatch.clone(),
            }),
        };
        // Its own client: a long poll holds a request open longer than a send may take.
        let updates_client =
            telegram::bot(&keys.token, &t.api_url, t.timeout.get() + POLL_TIMEOUT)?;
        Ok(Some(Telegram {
            web: telegram_web,
            bot: (updates_client, Arc::new(context), webhook),
        }))
    }

    /// Tells the operators when a channel that reaches people is paused or resumes.
    fn pause_notices(&self, dispatchers: &[Dispatcher]) -> crate::outbox::pause::Notices {
        let (v, store) = (self.v, &self.store);
        let s = &v.settings;
        crate::outbox::pause::Notices {
            store: store.clone(),
            audience: s.outbox.notify_audience.clone(),
            channels: dispatchers
                .iter()
                .map(Dispatcher::channel)
                .filter(|c| crate::channel::spec(c.kind()).is_some_and(|s| s.reaches_people()))
                .map(|c| (c.kind(), c))
                .collect(),
            renderer: v.renderer.clone(),
            language: s.routing.default_language.clone(),
            replica: self.owner.clone(),
        }
    }

    /// The engine, the maintenance windows, the router to the `enabled` channels, and the
    /// pipeline that steps them.
    fn pipeline(
        &self,
        enabled: BTreeSet<ChannelKind>,
        handover: Handover,
        intake: crate::ingest::FromIntake,
    ) -> anyhow::Result<Flow> {
        let (v, store) = (self.v, &self.store);
        let s = &v.settings;
        let engine = Engine::new(
            store.clone(),
            s.routing.timing(),
            s.routing.group_by.clone(),
        )
        .with_coalescer(self.coalescer.clone())
        .awake_since(Timestamp::now());
        let windows: Arc<Vec<Window>> = Arc::new(
            s.maintenance
                .iter()
                .map(|m| m.window(&s.server.time_zone))
                .collect::<Result<_, _>>()
                .map_err(|e| anyhow::anyhow!("maintenance.{}: {}", e.0, e.1))?,
        );
        let router = || {
            Router::new(
                store.clone(),
                v.renderer.clone(),
                &s.server.public_url,
                enabled.clone(),
                s.approval.clone(),
                windows.clone(),
                Arc::new(s.status.services.clone()),
            )
            .with_escalation(Arc::new(v.escalation.clone()))
        };
        let citizen_writer = CitizenWriter {
            router: router(),
            store: store.clone(),
            wake: self.wake.clone(),
            leadership: self.leadership.clone(),
            poll_interval: s.outbox.poll_interval.get(),
        };
        let router = router();
        let pipeline = Pipeline {
            engine: engine.clone(),
            router,
            wake: self.wake.clone(),
            poll_interval: s.outbox.poll_interval.get(),
            leadership: self.leadership.clone(),
            store: store.clone(),
            handover,
            intake: Some(intake),
        };
        Ok(Flow {
            engine,
            windows,
            pipeline,
            citizen_writer,
        })
    }

    /// Starts the ingest writer and builds the probes, which report through the same queue.
    fn ingest_and_probes(&self, pipeline: crate::ingest::ToPipeline) -> anyhow::Result<Intake> {
        let (s, store, owner) = (&self.v.settings, &self.store, &self.owner);
        let (ingest, ingest_writer) = IngestQueue::start(
            store.clone(),
            self.wake.pipeline.clone(),
            self.coalescer.clone(),
            Some(pipeline),
        );
        let probe_status = Arc::new(ProbeStatus::default());
        let clients = HttpClients::new().map_err(anyhow::Error::msg)?;
        let build =
            |spec: &crate::settings::ProbeSpec| Check::new(spec.clone(), &clients).map(Arc::new);
        let prober = Prober {
            checks: s
                .probes
                .iter()
                .map(build)
                .collect::<Result<_, _>>()
                .map_err(anyhow::Error::msg)?,
            canaries: s
                .probing
                .canaries
                .iter()
                .map(build)
                .collect::<Result<_, _>>()
                .map_err(anyhow::Error::msg)?,
            canary_interval: s.probing.canary_interval.get(),
            concurrency: s.probing.concurrency as usize,
            quorum: s.probing.quorum,
            instance: owner.clone(),
            host: match s.cluster.instance.as_str() {
                "" => hostname(),
                name => name.to_owned(),
            },
            store: store.clone(),
            ingest: ingest.clone(),
            leadership: self.leadership.clone(),
            status: probe_status.clone(),
            probing: s.probing.clone(),
            calls: self.wake.probes.clone(),
        };
        Ok(Intake {
            ingest,
            writer: ingest_writer,
            prober,
            probe_status,
        })
    }

    /// Citizens' sign-ups, reached by the email and SMS channels when enabled; their
    /// subscriptions are brought up to date with the services' matchers (a failure is logged).
    async fn citizens(
        &self,
        email_channel: Option<Arc<dyn Channel>>,
        sms_for_citizens: crate::citizen::CodeSenders,
    ) -> anyhow::Result<Arc<crate::citizen::Citizens>> {
        let (v, store) = (self.v, &self.store);
        let s = &v.settings;
        // Citizens hear public statements once approved (their deliveries are written in batches
        // from the approved draft): with `auto` they would hear nothing. Sign-ups on already
        // refuse `auto`; this catches sign-ups switched off while citizens stay subscribed.
        if s.approval.policy("public").0 == crate::settings::ApprovalPolicy::Auto {
            let filter = crate::store::SubscriberFilter {
                kind: Some(crate::store::SubscriberKind::Citizen),
                limit: 1,
                ..Default::default()
            };
            let n = store.count_subscribers(&filter).await?;
            if n > 0 {
                anyhow::bail!(
                    "approval.audiences.public: {n} citizens are subscribed and hear public statements only once approved: set its policy to \"approval\" or \"approval_with_timeout\", or erase them"
                );
            }
        }
        let citizens = Arc::new(crate::citizen::Citizens::new(
            crate::citizen::CitizenParts {
                store: store.clone(),
                settings: s.status.subscribe.clone(),
                services: s.status.services.clone(),
                rules: v.subscriber_rules.sealing(self.key.as_bytes()),
                links: self.links.clone(),
                key: self.key.as_bytes().to_vec(),
                public_url: s.server.public_url.clone(),
                renderer: v.renderer.clone(),
                email: email_channel,
                codes: sms_for_citizens,
            },
        ));
        match citizens.sync().await {
            Ok(0) => {}
            Ok(n) => tracing::info!(
                citizens = n,
                "citizens' subscriptions follow the services' new matchers"
            ),
            Err(e) => tracing::warn!(error = %e, "cannot bring citizens' subscriptions up to date"),
        }
        Ok(citizens)
    }

    /// What every web handler shares.
    fn web_state(
        &self,
        metrics: metrics_exporter_prometheus::PrometheusHandle,
        channels: &Channels,
        telegram: &Option<Telegram>,
        flow: &Flow,
        intake: &Intake,
        citizens: Arc<crate::citizen::Citizens>,
    ) -> AppState {
        let (v, store, owner) = (self.v, &self.store, &self.owner);
        let s = &v.settings;
        let windows = flow.windows.clone();
        AppState::new(crate::web::Parts {
            pauses: channels.pauses.clone(),
            leadership: self.leadership.clone(),
            citizens,
            affected: crate::affected::AffectedLists::new(store, &self.key, v, &channels.enabled),
            store: store.clone(),
            auth: Arc::new(Authenticator::new(&v.tokens, &v.hmac)),
            ingest: intake.ingest.clone(),
            engine: flow.engine.clone(),
            wake: self.wake.clone(),
            links: self.links.clone(),
            renderer: v.renderer.clone(),
            metrics,
            default_language: s.routing.default_language.clone(),
            subscriber_rules: v.subscriber_rules.sealing(self.key.as_bytes()),
            callbacks: channels.callbacks.clone(),
            console: Arc::new(crate::web::Console::new(
                &s.server.public_url,
                self.key.as_bytes(),
            )),
            approval_links: self.approval_links.clone(),
            parse_options: ParseOptions {
                uptime_kuma_severity: s.ingest.uptime_kuma_severity.as_str().to_owned(),
            },
            normalize: NormalizeRules {
                default_severity: s.ingest.default_severity,
            },
            max_body_bytes: s.server.max_body_bytes,
            telegram: telegram.as_ref().map(|t| t.web.clone()),
            status: Arc::new(web::StatusPage::new(
                s.status.clone(),
                v.time_zone.clone(),
                &s.server.public_url,
                windows.clone(),
            )),
            heartbeats: crate::heartbeat::Heartbeats::new(&s.heartbeats, store, &self.wake),
            probes: Arc::new(web::Probes {
                specs: s.probes.clone(),
                status: intake.probe_status.clone(),
                quorum: s.probing.quorum,
                instance: owner.clone(),
                windows,
                time_zone: v.time_zone.clone(),
            }),
            store_counts: Default::default(),
        })
    }
}

/// Turns other replicas' announcements into local wake-ups.
async fn forward_wakeups(mut rx: crate::store::Wakeups, wake: Wakers) {
    while let Some(topic) = rx.recv().await {
        match topic {
            // Another replica stored signals or an operator's update: the leader routes too.
            Topic::Signals => wake.updates_written(),
            Topic::Deliveries => wake.dispatch.ring(),
            Topic::Leader => wake.leader.notify_one(),
            Topic::Probe(name) => wake.probes.ring(&name),
        }
    }
}

fn hostname() -> String {
    std::env::var("HOSTNAME")
        .ok()
        .filter(|h| !h.is_empty())
        .or_else(|| {
            std::fs::read_to_string("/etc/hostname")
                .ok()
                .map(|h| h.trim().to_owned())
        })
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "banditore".to_owned())
}
