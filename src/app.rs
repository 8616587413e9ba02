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
use crate::channel::rate::RateLimiter;
use crate::channel::sms::report::ReportLinks;
use crate::channel::telegram;
use crate::cluster::{self, Leadership};
use crate::domain::incident::Timing;
use crate::domain::signal::NormalizeRules;
use crate::domain::subscriber::ChannelKind;
use crate::domain::window::Window;
use crate::ids::random_hex;
use crate::incident::Engine;
use crate::ingest::{IngestQueue, ParseOptions};
use crate::outbox::{Backoff, Crew, Dispatcher, OutboxConfig, Pauses};
use crate::pipeline::Pipeline;
use crate::probe::check::{Check, HttpClients};
use crate::probe::{ProbeStatus, Prober};
use crate::route::Router;
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
}

type TelegramBot = (
    teloxide::Bot,
    Arc<BotContext>,
    Option<(url::Url, String, UpdateReceiver)>,
);

impl Application {
    pub async fn build(v: Validated) -> anyhow::Result<Application> {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let s = &v.settings;
        raise_open_files_limit(s.server.max_connections);
        let metrics = crate::telemetry::metrics();
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
        let report = store
            .sync_config_subscribers(&v.subscribers, Timestamp::now())
            .await?;
        tracing::info!(
            created = report.created,
            updated = report.updated,
            removed = report.removed,
            "config subscribers in step"
        );

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

        // Channels whose credentials the provider refuses; read by /readyz, /metrics, the console.
        let pauses = Pauses::new(
            s.outbox.retry_initial.get(),
            s.outbox
                .retry_max
                .get()
                .min(std::time::Duration::from_secs(300)),
        );
        let crew = Crew {
            store: store.clone(),
            owner: owner.clone(),
            links: links.clone(),
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
            deployment_id: &deployment_id,
            key: key.as_bytes(),
        };
        let mut shared = BTreeMap::new();
        let mut senders = BTreeMap::new();
        for spec in crate::channel::registry() {
            let Some(built) = spec.build(&v, &wiring)? else {
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
        let sms_for_citizens = senders.get(&ChannelKind::Sms).cloned();
        let sms_reports = shared
            .remove(&ChannelKind::Sms)
            .and_then(|parts| parts.downcast::<ReportLinks>().ok());

        let approval_links = ApprovalLinks::new(key.as_bytes(), &s.server.public_url);
        let mut telegram_web = None;
        let mut bot = None;
        if let Some(parts) = shared
            .remove(&ChannelKind::Telegram)
            .and_then(|parts| parts.downcast::<telegram::Shared>().ok())
        {
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
                    let url =
                        url::Url::parse(&url).with_context(|| format!("webhook URL `{url}`"))?;
                    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
                    (
                        Some((url, secret.expose().to_owned(), rx)),
                        Some((secret.clone(), tx)),
                    )
                }
                _ => (None, None),
            };
            telegram_web = Some(Arc::new(TelegramWeb {
                bot: client.clone(),
                username: tokio::sync::OnceCell::new(),
                invite_ttl: t.invite_ttl.get(),
                webhook: endpoint,
            }));
            let context = BotContext {
                store: store.clone(),
                renderer: v.renderer.clone(),
                default_language: s.routing.default_language.clone(),
                pacer,
                approvals: Some(BotApprovals {
                    links: approval_links.clone(),
                    wake: wake.dispatch.clone(),
                }),
            };
            // Its own client: a long poll holds a request open longer than a send may take.
            let updates_client =
                telegram::bot(&keys.token, &t.api_url, t.timeout.get() + POLL_TIMEOUT)?;
            bot = Some((updates_client, Arc::new(context), webhook));
        }

        let notices = crate::outbox::pause::Notices {
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
            replica: owner.clone(),
        };
        let announcer = Some(Announcer {
            audience: s.approval.notify_audience.clone(),
            links: approval_links.clone(),
            renderer: v.renderer.clone(),
            language: s.routing.default_language.clone(),
            channels: [ChannelKind::Email, ChannelKind::Telegram]
                .into_iter()
                .filter(|c| senders.contains_key(c))
                .collect(),
        });

        let timing = Timing {
            group_wait: s.routing.group_wait.get(),
            group_interval: s.routing.group_interval.get(),
            flap_hold_down: s.routing.flap_hold_down.get(),
        };
        let engine = Engine::new(store.clone(), timing, s.routing.group_by.clone());
        let windows: Arc<Vec<Window>> = Arc::new(
            s.maintenance
                .iter()
                .map(|m| m.window(&s.server.time_zone))
                .collect::<Result<_, _>>()
                .map_err(|e| anyhow::anyhow!("maintenance.{}: {}", e.0, e.1))?,
        );
        let router = Router::new(
            store.clone(),
            v.renderer.clone(),
            &s.server.public_url,
            enabled,
            s.approval.clone(),
            windows.clone(),
            Arc::new(s.status.services.clone()),
        );
        let pipeline = Pipeline {
            engine: engine.clone(),
            router,
            wake: wake.clone(),
            poll_interval: s.outbox.poll_interval.get(),
            leadership: leadership.clone(),
            store: store.clone(),
        };
        let (ingest, ingest_writer) = IngestQueue::start(store.clone(), wake.pipeline.clone());
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
            store: store.clone(),
            ingest: ingest.clone(),
            leadership: leadership.clone(),
            status: probe_status.clone(),
        };
        let citizens = Arc::new(crate::citizen::Citizens::new(
            crate::citizen::CitizenParts {
                store: store.clone(),
                settings: s.status.subscribe.clone(),
                services: s.status.services.clone(),
                rules: v.subscriber_rules.clone(),
                links: links.clone(),
                key: key.as_bytes().to_vec(),
                public_url: s.server.public_url.clone(),
                renderer: v.renderer.clone(),
                email: email_channel.clone(),
                sms: sms_for_citizens,
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
        let state = AppState {
            pauses: pauses.clone(),
            citizens: citizens.clone(),
            store: store.clone(),
            auth: Arc::new(Authenticator::new(&v.tokens, &v.hmac)),
            ingest,
            engine,
            wake,
            links,
            renderer: v.renderer.clone(),
            metrics,
            default_language: s.routing.default_language.clone(),
            subscriber_rules: v.subscriber_rules.clone(),
            sms_reports,
            console: Arc::new(crate::web::Console::new(
                &s.server.public_url,
                key.as_bytes(),
            )),
            approval_links: approval_links.clone(),
            parse_options: ParseOptions {
                uptime_kuma_severity: s.ingest.uptime_kuma_severity.as_str().to_owned(),
            },
            normalize: NormalizeRules {
                default_severity: s.ingest.default_severity,
            },
            max_body_bytes: s.server.max_body_bytes,
            telegram: telegram_web,
            status: Arc::new(web::StatusPage::new(
                s.status.clone(),
                v.time_zone.clone(),
                &s.server.public_url,
                windows.clone(),
            )),
            probes: Arc::new(web::Probes {
                specs: s.probes.clone(),
                status: probe_status,
                quorum: s.probing.quorum,
                instance: owner.clone(),
                windows,
                time_zone: v.time_zone.clone(),
            }),
        };
        let listener = TcpListener::bind(s.server.listen)
            .await
            .with_context(|| format!("binding {}", s.server.listen))?;
        Ok(Application {
            listener,
            retention: s.store.retention.get(),
            citizens_retention: crate::retention::Citizens {
                erase_after: s.status.subscribe.erase_after.get(),
                // The invite lasts `code_ttl`; an hour more for a slow start.
                unbound_for: s.status.subscribe.code_ttl.get()
                    + std::time::Duration::from_secs(3600),
            },
            leadership,
            campaign,
            campaign_stop,
            wakeups,
            store,
            state,
            pipeline,
            dispatchers,
            ingest_writer,
            request_timeout: s.server.request_timeout.get(),
            limits: web::Limits {
                max_connections: s.server.max_connections,
                header_read_timeout: s.server.header_read_timeout.get(),
            },
            bot,
            announcer,
            prober,
            notices,
        })
    }

    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// Serves until `shutdown` is cancelled, then stops everything in order.
    pub async fn run(self, shutdown: CancellationToken) -> anyhow::Result<()> {
        // The settings and subscriber lists used to build everything are gone by now.
        release_startup_memory();
        let addr = self.local_addr()?;
        let workers = CancellationToken::new();
        let pipeline = tokio::spawn(self.pipeline.run(workers.clone()));
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
        let prober = tokio::spawn(self.prober.run(workers.clone()));
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
        let dispatchers: Vec<_> = self
            .dispatchers
            .into_iter()
            .map(|d| tokio::spawn(d.run(workers.clone())))
            .collect();
        tracing::info!(%addr, "listening");
        let app = web::router(self.state, self.request_timeout);
        web::serve(self.listener, app, self.limits, shutdown).await;
        tracing::info!("no longer accepting requests; stopping workers");
        // Every handle of the ingest writer went with the router: it stores what it holds and ends.
        let _ = self.ingest_writer.await;
        workers.cancel();
        let _ = pipeline.await;
        let _ = retention.await;
        let _ = approval.await;
        let _ = prober.await;
        let _ = notices.await;
        if let Some(bot) = bot {
            let _ = bot.await;
        }
        // Only now that the pipeline has stopped may another replica lead.
        self.campaign_stop.cancel();
        let _ = self.campaign.await;
        for d in dispatchers {
            let _ = d.await;
        }
        if let Some(task) = self.wakeups {
            task.abort();
        }
        self.store.close().await;
        tracing::info!("stopped");
        Ok(())
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
        }
    }
}

/// Descriptors left for everything but client connections: the store's connections and files,
/// SMTP and HTTP clients, probes, logs.
const RESERVED_FILES: u64 = 256;

/// Raises the soft limit on open files to the hard one: the usual soft limit of 1,024 is soon
/// reached by connections held open. Logged, with a warning when `max_connections` leaves too
/// few descriptors for the rest.
fn raise_open_files_limit(max_connections: usize) {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit and setrlimit only read and write the struct given.
    let soft = unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) != 0 {
            tracing::warn!(error = %std::io::Error::last_os_error(), "cannot read the open files limit");
            return;
        }
        let before = limit.rlim_cur;
        if limit.rlim_cur < limit.rlim_max {
            limit.rlim_cur = limit.rlim_max;
            if libc::setrlimit(libc::RLIMIT_NOFILE, &limit) != 0 {
                tracing::warn!(error = %std::io::Error::last_os_error(), "cannot raise the open files limit");
                limit.rlim_cur = before;
            }
        }
        tracing::info!(before, now = limit.rlim_cur, "open files limit");
        limit.rlim_cur
    };
    if (max_connections as u64).saturating_add(RESERVED_FILES) > soft {
        tracing::warn!(
            max_connections,
            open_files = soft,
            "server.max_connections leaves fewer than {RESERVED_FILES} open files for the store \
             and the channels: lower it, or raise the hard limit (LimitNOFILE, ulimit -Hn)"
        );
    }
}

/// Hands memory freed after start-up back to the system. Loading a configuration with thousands
/// of subscribers builds large temporary trees; glibc keeps the freed pages otherwise.
///
/// It also fixes glibc's mmap threshold at 1 MiB. Left dynamic, the threshold climbs after the
/// first large block is freed, and later ones (argon2 takes 19 MiB per password checked) come
/// from the heap and stay there: a burst of logins left the process a gigabyte bigger for good.
/// Blocks of a mebibyte or more are now mapped and unmapped, so their memory goes back at once.
fn release_startup_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only releases free heap pages and mallopt only sets a tuning
    // parameter; neither has preconditions.
    unsafe {
        libc::malloc_trim(0);
        libc::mallopt(libc::M_MMAP_THRESHOLD, 1 << 20);
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
