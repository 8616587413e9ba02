//! Checks of meaning, after the types are right: every problem is collected, none stops the check.

use std::any::Any;
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use jiff::tz::TimeZone;

use super::check::is_loopback_name;
use super::{ChannelSection, Problem, Role, Secret, Settings};
use crate::channel::sms::settings::phone_region;
use crate::domain::escalation::EscalationPolicy;
use crate::domain::subscriber::{ChannelKind, PUBLIC, SubscriberRules, ValidSubscriber};
use crate::domain::text;
use crate::render::Renderer;

/// Refuses a line break, a control character or a noncharacter in a one-line setting (a name, a
/// title): such settings reach mail headers, feeds and pages.
pub(super) fn check_one_line(path: &str, value: &str, push: &mut impl FnMut(&str, String)) {
    if let Err(refused) = text::one_line(value) {
        push(path, refused.to_string());
    }
}

/// An API token, resolved.
#[derive(Debug, Clone)]
pub struct TokenKey {
    pub name: String,
    pub secret: Secret,
    pub roles: Vec<Role>,
}

/// An HMAC scheme, resolved.
#[derive(Debug, Clone)]
pub struct HmacKey {
    pub name: String,
    pub secret: Secret,
    pub header: String,
    pub timestamp_header: Option<String>,
    pub tolerance: Duration,
    pub prefix: String,
}

/// Settings that passed every check, with secrets read and subscribers parsed.
#[derive(Clone)]
pub struct Validated {
    pub settings: Settings,
    /// The configured key for unsubscribe links; `None`: one is generated and kept in the store.
    pub secret_key: Option<Secret>,
    /// PostgreSQL's password, when given apart from the URL.
    pub store_password: Option<Secret>,
    pub tokens: Vec<TokenKey>,
    pub hmac: Vec<HmacKey>,
    /// What each channel's check read for its sender (secrets, SMS providers in order).
    pub channels: ChannelKeys,
    /// How subscribers from the API are checked (language, phone region).
    pub subscriber_rules: SubscriberRules,
    pub subscribers: Vec<ValidSubscriber>,
    /// Each audience's escalation policy (`[escalation.audiences]`).
    pub escalation: BTreeMap<String, EscalationPolicy>,
    pub time_zone: TimeZone,
    pub renderer: Renderer,
    /// Things worth knowing that do not stop the service.
    pub warnings: Vec<Problem>,
}

const MIN_TOKEN_LEN: usize = 16;

/// What each channel's check kept for its sender, by channel; each channel stores and takes
/// its own type, so one channel's keys never reach another.
#[derive(Clone, Default)]
pub struct ChannelKeys(BTreeMap<ChannelKind, Arc<dyn Any + Send + Sync>>);

impl ChannelKeys {
    pub fn insert<T: Any + Send + Sync>(&mut self, channel: ChannelKind, keys: T) {
        self.0.insert(channel, Arc::new(keys));
    }

    /// What `channel` stored, when it stored a `T`.
    pub fn get<T: Any>(&self, channel: ChannelKind) -> Option<&T> {
        self.0.get(&channel)?.downcast_ref()
    }
}

/// Validates everything and returns either usable settings or every problem found. `channels`
/// are the registered channels (`channel::sections()`), whose sections are checked in turn.
///
/// The sections are checked one after the other, always in the same order, so the problems of
/// a configuration are reported in the same order every time.
pub fn validate(
    settings: Settings,
    channels: &[&dyn ChannelSection],
) -> Result<Validated, Vec<Problem>> {
    let mut problems = Vec::new();
    let mut warnings = settings.example_secrets.clone();
    let mut push = |path: &str, msg: String| problems.push(Problem::new(path, msg));

    let (time_zone, secret_key) = validate_server(&settings, &mut warnings, &mut push);
    let store_password = validate_store(&settings, &mut warnings, &mut push);
    validate_cluster(&settings, &mut push);
    validate_log(&settings, &mut push);
    let (tokens, hmac) = validate_auth(&settings, &mut warnings, &mut push);
    validate_routing(&settings, &mut push);
    validate_outbox(&settings, &mut push);
    let sections = channels;
    let channels = validate_channels(&settings, sections, &mut push);
    super::probes::validate_probes(&settings, &mut push);
    super::heartbeats::validate_heartbeats(&settings, &mut push);
    super::status_page::validate_status(&settings, &mut push);
    let subscriber_rules = SubscriberRules {
        default_language: settings.routing.default_language.clone(),
        phone_region: phone_region(&settings, &mut push),
        webhook: crate::channel::webhook::settings::rules(&settings, &mut push),
        // The key may still be in the store: the application seals with it once open.
        seal_key: None,
    };
    let subscribers = validate_subscribers(&settings, sections, &subscriber_rules, &mut push);
    let escalation = validate_escalation(&settings, &mut push);
    let renderer = validate_templates(&settings, sections, &time_zone, &mut push);

    match renderer {
        Some(renderer) if problems.is_empty() => Ok(Validated {
            settings,
            secret_key,
            store_password,
            tokens,
            hmac,
            channels,
            subscriber_rules,
            subscribers,
            escalation,
            time_zone,
            renderer,
            warnings,
        }),
        _ => Err(problems),
    }
}

/// `[server]`: the public URL, the limits on requests, the time zone and the secret key.
/// Returns the time zone (UTC when it is unknown) and the key, when one is configured.
fn validate_server(
    settings: &Settings,
    warnings: &mut Vec<Problem>,
    push: &mut impl FnMut(&str, String),
) -> (TimeZone, Option<Secret>) {
    match url::Url::parse(&settings.server.public_url) {
        Ok(u) if matches!(u.scheme(), "http" | "https") && u.host().is_some() => {
            if u.scheme() == "http" && !is_loopback_host(&u) {
                warnings.push(Problem::new(
                    "server.public_url",
                    "is plain http: one-click unsubscribe (RFC 8058) needs https",
                ));
            }
        }
        _ => push(
            "server.public_url",
            format!("`{}` is not an http(s) URL", settings.server.public_url),
        ),
    }
    if settings.server.max_body_bytes < 1024 {
        push("server.max_body_bytes", "must be at least 1024".into());
    }
    if settings.affected.max_upload_bytes < 1024 {
        push("affected.max_upload_bytes", "must be at least 1024".into());
    }
    let header_read = settings.server.header_read_timeout.get();
    if header_read < Duration::from_secs(1) || header_read > Duration::from_secs(300) {
        push(
            "server.header_read_timeout",
            "must be between 1s and 5m".into(),
        );
    }
    if !(1..=1_000_000).contains(&settings.server.max_connections) {
        push(
            "server.max_connections",
            "must be between 1 and 1000000".into(),
        );
    }
    let time_zone = match TimeZone::get(&settings.server.time_zone) {
        Ok(tz) => tz,
        Err(e) => {
            push(
                "server.time_zone",
                format!("`{}`: {e}", settings.server.time_zone),
            );
            TimeZone::UTC
        }
    };
    let secret_key = match settings.server.secret_key().resolve("secret_key") {
        Ok(Some(key)) if key.expose().len() < 32 => {
            push(
                "server.secret_key",
                "must be at least 32 characters (or left out to generate one)".into(),
            );
            None
        }
        Ok(key) => key,
        Err(e) => {
            push("server.secret_key", e);
            None
        }
    };
    (time_zone, secret_key)
}

/// `[store]`: the database URL, its password and the pool. Returns the password, when one is
/// given apart from the URL.
fn validate_store(
    settings: &Settings,
    warnings: &mut Vec<Problem>,
    push: &mut impl FnMut(&str, String),
) -> Option<Secret> {
    let url = &settings.store.url;
    if let Some(path) = url.strip_prefix("sqlite://") {
        if path.is_empty() {
            push("store.url", "names no database file".into());
        }
        if settings.store.replicas > 1 {
            push(
                "store.replicas",
                format!(
                    "{} replicas cannot share SQLite: SQLite allows one Banditore process; use PostgreSQL for several",
                    settings.store.replicas
                ),
            );
        }
    } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        match url::Url::parse(url) {
            Ok(u) if u.host_str().is_some_and(|h| !h.is_empty()) => {
                if u.password().is_some() {
                    warnings.push(Problem::new(
                        "store.url",
                        "carries a password: give it as store.password_file or store.password_env instead",
                    ));
                }
            }
            _ => push(
                "store.url",
                format!(
                    "`{}` is not a postgres://user@host/database URL",
                    redact_url(url)
                ),
            ),
        }
    } else {
        push(
            "store.url",
            format!(
                "`{}`: expected sqlite://path or postgres://user@host/database",
                redact_url(url)
            ),
        );
    }
    let store_password = match settings.store.password().resolve("password") {
        Ok(p) => p,
        Err(e) => {
            push("store.password", e);
            None
        }
    };
    if store_password.is_some() && settings.store.is_sqlite() {
        push("store.password", "SQLite takes no password".into());
    }
    if settings.store.max_connections == 0 {
        push("store.max_connections", "must be at least 1".into());
    }
    if settings.store.replicas == 0 {
        push("store.replicas", "must be at least 1".into());
    }
    store_password
}

/// `[cluster]`: the leader's lease and this replica's name.
fn validate_cluster(settings: &Settings, push: &mut impl FnMut(&str, String)) {
    let lease = settings.cluster.leader_lease.get();
    if lease < Duration::from_secs(3) || lease > Duration::from_secs(300) {
        push("cluster.leader_lease", "must be between 3s and 5m".into());
    }
    if !settings
        .cluster
        .instance
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
    {
        push(
            "cluster.instance",
            "use letters, digits, `-`, `_` and `.` only".into(),
        );
    }
}

/// `[log]`: the level, as a filter the log accepts.
fn validate_log(settings: &Settings, push: &mut impl FnMut(&str, String)) {
    if let Err(e) = tracing_subscriber::EnvFilter::try_new(&settings.log.level) {
        push("log.level", format!("`{}`: {e}", settings.log.level));
    }
}

/// `[auth]`: the API tokens and the HMAC schemes, with their secrets read.
fn validate_auth(
    settings: &Settings,
    warnings: &mut Vec<Problem>,
    push: &mut impl FnMut(&str, String),
) -> (Vec<TokenKey>, Vec<HmacKey>) {
    let mut tokens = Vec::new();
    let mut names = BTreeSet::new();
    let mut values = BTreeSet::new();
    for (i, t) in settings.auth.tokens.iter().enumerate() {
        let path = format!("auth.tokens[{i}]");
        if t.name.trim().is_empty() {
            push(&format!("{path}.name"), "must not be empty".into());
        } else if !names.insert(t.name.clone()) {
            push(
                &format!("{path}.name"),
                format!("`{}` is used by another token", t.name),
            );
        }
        if t.roles.is_empty() {
            push(
                &format!("{path}.roles"),
                "give at least one role (ingest, viewer, operator, admin)".into(),
            );
        }
        match t.secret().resolve("token") {
            Ok(Some(secret)) => {
                if secret.expose().chars().count() < MIN_TOKEN_LEN {
                    push(
                        &format!("{path}.token"),
                        format!(
                            "is shorter than {MIN_TOKEN_LEN} characters (try `openssl rand -hex 32`)"
                        ),
                    );
                } else if !values.insert(secret.expose().to_owned()) {
                    push(
                        &format!("{path}.token"),
                        "is the same as another token's".into(),
                    );
                }
                tokens.push(TokenKey {
                    name: t.name.clone(),
                    secret,
                    roles: t.roles.clone(),
                });
            }
            Ok(None) => push(
                &format!("{path}.token"),
                "give `token`, `token_file` or `token_env`".into(),
            ),
            Err(e) => push(&format!("{path}.token"), e),
        }
    }
    let mut hmac = Vec::new();
    for (i, h) in settings.auth.hmac.iter().enumerate() {
        let path = format!("auth.hmac[{i}]");
        if h.name.trim().is_empty() {
            push(&format!("{path}.name"), "must not be empty".into());
        }
        for (key, header) in [
            ("header", Some(&h.header)),
            ("timestamp_header", h.timestamp_header.as_ref()),
        ] {
            if let Some(header) = header
                && axum::http::HeaderName::from_bytes(header.as_bytes()).is_err()
            {
                push(
                    &format!("{path}.{key}"),
                    format!("`{header}` is not a valid header name"),
                );
            }
        }
        if h.timestamp_header.is_none() {
            warnings.push(Problem::new(
                format!("{path}.timestamp_header"),
                "not set: the signature proves the body but not when it was sent, so a \
                 request caught on the way can be replayed for ever; if the sender signs a \
                 timestamp (Grafana's `timestampHeader`), name its header here",
            ));
        }
        match h.secret().resolve("secret") {
            Ok(Some(secret)) => hmac.push(HmacKey {
                name: h.name.clone(),
                secret,
                header: h.header.clone(),
                timestamp_header: h.timestamp_header.clone(),
                tolerance: h.tolerance.get(),
                prefix: h.prefix.clone(),
            }),
            Ok(None) => push(
                &format!("{path}.secret"),
                "give `secret`, `secret_file` or `secret_env`".into(),
            ),
            Err(e) => push(&format!("{path}.secret"), e),
        }
    }
    if tokens.is_empty() && hmac.is_empty() {
        warnings.push(Problem::new(
            "auth.tokens",
            "no tokens configured: the first `banditore serve` creates an `admin` and an `ingest` \
             token in the store and prints them once; `banditore token list` shows them",
        ));
    }
    (tokens, hmac)
}

/// `[routing]`: the labels incidents are grouped by.
fn validate_routing(settings: &Settings, push: &mut impl FnMut(&str, String)) {
    if settings.routing.group_by.is_empty() {
        push("routing.group_by", "name at least one label".into());
    }
    for (i, label) in settings.routing.group_by.iter().enumerate() {
        if label.trim().is_empty() {
            push(&format!("routing.group_by[{i}]"), "is empty".into());
        }
    }
}

/// `[outbox]`: the lease, the batches, the attempts and their timing.
fn validate_outbox(settings: &Settings, push: &mut impl FnMut(&str, String)) {
    let o = &settings.outbox;
    if o.lease.get() > Duration::from_secs(3600) {
        push("outbox.lease", "must be at most 1h".into());
    }
    if !(1..=1000).contains(&o.batch_size) {
        push("outbox.batch_size", "must be between 1 and 1000".into());
    }
    if o.max_attempts == 0 {
        push("outbox.max_attempts", "must be at least 1".into());
    }
    if o.retry_initial.get() > o.retry_max.get() {
        push(
            "outbox.retry_initial",
            "is longer than outbox.retry_max".into(),
        );
    }
    if o.lease.get() < Duration::from_secs(2) {
        push("outbox.lease", "must be at least 2s".into());
    }
    if o.send_timeout.get() < Duration::from_secs(1)
        || o.send_timeout.get() > Duration::from_secs(3600)
    {
        push("outbox.send_timeout", "must be between 1s and 1h".into());
    }
    if o.poll_interval.get() < Duration::from_millis(100) {
        push("outbox.poll_interval", "must be at least 100ms".into());
    }
}

/// `[channels.*]`: each registered channel checks its own section and keeps what its sender
/// will need.
fn validate_channels(
    settings: &Settings,
    sections: &[&dyn ChannelSection],
    push: &mut impl FnMut(&str, String),
) -> ChannelKeys {
    let mut channels = ChannelKeys::default();
    for section in sections {
        section.validate(settings, &mut channels, push);
    }
    channels
}

/// `[[subscribers]]`: each one parsed by `rules`, names unique; then the channels' own
/// destinations (public accounts, the status page) follow the subscribers written in the
/// configuration.
fn validate_subscribers(
    settings: &Settings,
    sections: &[&dyn ChannelSection],
    subscriber_rules: &SubscriberRules,
    push: &mut impl FnMut(&str, String),
) -> Vec<ValidSubscriber> {
    let mut subscribers = Vec::new();
    let mut subscriber_names = BTreeSet::new();
    for (i, spec) in settings.subscribers.iter().enumerate() {
        match spec.clone().validate(subscriber_rules) {
            Ok(valid) => {
                if !subscriber_names.insert(valid.name.clone()) {
                    push(
                        &format!("subscribers[{i}].name"),
                        format!(
                            "`{}` is declared twice (the name identifies a subscriber from config)",
                            valid.name
                        ),
                    );
                }
                subscribers.push(valid);
            }
            Err(errors) => {
                for err in errors {
                    push(&format!("subscribers[{i}].{}", err.field), err.message);
                }
            }
        }
    }

    for section in sections {
        subscribers.extend(section.subscribers(settings));
    }
    subscribers
}

/// `[escalation.audiences]`: each audience's policy, checked as a subscriber's is; the public
/// audience never escalates.
fn validate_escalation(
    settings: &Settings,
    push: &mut impl FnMut(&str, String),
) -> BTreeMap<String, EscalationPolicy> {
    let mut policies = BTreeMap::new();
    for (audience, specs) in &settings.escalation.audiences {
        let field = format!("escalation.audiences.{audience}");
        if audience == PUBLIC {
            push(
                &field,
                "the public audience never escalates: citizens and the public channels are told once"
                    .into(),
            );
            continue;
        }
        match EscalationPolicy::parse(specs, &field) {
            Ok(policy) => {
                policies.insert(audience.clone(), policy);
            }
            Err(errors) => {
                for e in errors {
                    push(&e.field, e.message);
                }
            }
        }
    }
    policies
}

/// `[templates]`: loads them with every channel's form and renders each against samples.
/// Returns the renderer when the templates load.
fn validate_templates(
    settings: &Settings,
    sections: &[&dyn ChannelSection],
    time_zone: &TimeZone,
    push: &mut impl FnMut(&str, String),
) -> Option<Renderer> {
    let forms: Vec<_> = sections.iter().map(|s| (s.kind(), s.form())).collect();
    match Renderer::new(
        &settings.templates.dir,
        &settings.templates.fallback_language,
        time_zone.clone(),
        &forms,
    ) {
        Ok(r) => {
            let m = &settings.channels.mastodon;
            let r = r
                .with_sms_fold(settings.channels.sms.fold_to_gsm7)
                .with_sms_reply_word({
                    let sms = &settings.channels.sms;
                    (sms.enabled && sms.replies)
                        .then(|| sms.reply_words.first().cloned())
                        .flatten()
                })
                .with_social_limits(crate::render::social::Limits {
                    mastodon_max: m.max_characters,
                    mastodon_url: m.characters_reserved_per_url,
                });
            for msg in r.check() {
                push("templates", msg);
            }
            Some(r)
        }
        Err(errors) => {
            for msg in errors {
                push("templates", msg);
            }
            None
        }
    }
}

fn is_loopback_host(url: &url::Url) -> bool {
    match url.host() {
        Some(url::Host::Domain(d)) => is_loopback_name(d),
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        None => false,
    }
}

/// Hides a password in a database URL before it is printed.
pub fn redact_url(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut u) if u.password().is_some() => {
            let _ = u.set_password(Some("redacted"));
            u.to_string()
        }
        _ => url.to_owned(),
    }
}

/// Used by `check-config` and tests to validate a file on disk in one call.
pub fn load_and_validate(
    file: Option<&Path>,
    channels: &[&dyn ChannelSection],
) -> Result<Validated, Vec<Problem>> {
    let (settings, mut problems) = super::load(file);
    match settings {
        Some(s) if problems.is_empty() => validate(s, channels),
        Some(s) => {
            if let Err(more) = validate(s, channels) {
                problems.extend(more);
            }
            Err(problems)
        }
        None => Err(problems),
    }
}
