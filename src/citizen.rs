//! Citizens subscribe themselves from the status page to the services listed there.
//!
//! - **Email**: double opt-in. The address gets a link that confirms it, good for
//!   `status.subscribe.link_ttl` and once.
//! - **SMS**: the number gets a six-digit code, good for `code_ttl` and `code_attempts` tries.
//! - **WhatsApp**: as SMS, the code sent as `channels.whatsapp.code_template`.
//! - **Telegram**: a citizen subscriber is made without an address, with a one-time invite; the
//!   chat that opens the bot with its deep link binds itself (the bot's `/start`).
//!
//! Every answer to a sign-up reads the same whether the address is known or not, so the form
//! tells nobody who is subscribed. Sign-ups are limited per client address (in memory, per
//! replica) and per email address or number (in the store, across replicas). Confirmation
//! messages go through the same channel code as alerts, directly rather than through the outbox:
//! the citizen is waiting for them, and a failure is reported on the page at once.

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, KeyInit, Mac};
use jiff::{SignedDuration, Timestamp};
use sha2::{Digest, Sha256};

use crate::channel::{Channel, Outgoing, SendError};
use crate::domain::subscriber::{ChannelKind, Language, SubscriberRules, Subscription};
use crate::domain::{Matcher, Severity};
use crate::render::Renderer;
use crate::settings::{StatusService, SubscribeSettings};
use crate::store::{CitizenPlan, NewSignup, Signup, Store, StoreError, SubscriberRow};
use crate::unsubscribe::UnsubscribeLinks;

/// Citizens read at a time when their subscriptions are brought in step with the services.
const SYNC_BATCH: u32 = 500;

/// The setting holding [`Citizens::services_digest`] as of the last complete sync.
const SYNCED_KEY: &str = "citizen_services_synced";

/// How far back the sign-up limits look.
pub const LIMIT_WINDOW: Duration = Duration::from_secs(3600);

#[derive(Debug, thiserror::Error)]
pub enum SignupError {
    /// The form is wrong: `field` names what, the message says how.
    #[error("{message}")]
    Invalid {
        field: &'static str,
        message: String,
    },
    /// Too many sign-ups from this client or for this address.
    #[error("too many sign-ups; try again in {} minutes", .0.as_secs().div_ceil(60))]
    TooMany(Duration),
    /// The confirmation could not be sent, or the store is unavailable: nothing was subscribed.
    #[error("{0}")]
    Unavailable(String),
    /// The channel's pace holds the code back for a moment (WhatsApp's throughput, its pair
    /// rate, its daily limit): nothing was subscribed, and the citizen may try again after
    /// the wait.
    #[error("the code cannot be sent right now; try again in {} seconds", .0.as_secs().max(1))]
    Busy(Duration),
}

impl From<StoreError> for SignupError {
    fn from(e: StoreError) -> Self {
        SignupError::Unavailable(format!("store: {e}"))
    }
}

/// What a citizen asked for on the form.
#[derive(Debug, Clone, Default)]
pub struct SignupForm {
    pub channel: String,
    pub address: String,
    pub services: Vec<String>,
    pub language: String,
    /// The preferences token of the address this one replaces (changing channel).
    pub replaces: String,
}

/// What the citizen is told next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Started {
    /// A link is on its way to the mailbox (or nothing is, when the address is over its limit
    /// of sign-ups: the page reads the same).
    EmailSent,
    /// A code is on its way; the page with the form for it is at this token.
    CodeSent { token: String },
    /// Open the bot with this payload.
    Telegram {
        token: String,
        expires_at: Timestamp,
    },
}

/// What confirming did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Confirmation {
    Subscribed { address_id: i64 },
    WrongCode { attempts_left: u32 },
    Expired,
    Used,
    Unknown,
}

pub struct Citizens {
    p: CitizenParts,
    per_ip: Mutex<HashMap<IpAddr, VecDeque<Instant>>>,
}

/// What [`Citizens`] works with.
pub struct CitizenParts {
    pub store: Arc<dyn Store>,
    pub settings: SubscribeSettings,
    pub services: Vec<StatusService>,
    pub rules: SubscriberRules,
    pub links: UnsubscribeLinks,
    pub key: Vec<u8>,
    pub public_url: String,
    pub renderer: Renderer,
    pub email: Option<Arc<dyn Channel>>,
    /// The channels a code goes out by (SMS, WhatsApp), the ones enabled.
    pub codes: CodeSenders,
}

/// The senders of sign-up codes, by channel.
pub type CodeSenders = std::collections::BTreeMap<ChannelKind, Arc<dyn Channel>>;

/// The enabled senders that can carry a sign-up code.
pub fn code_senders(
    senders: &std::collections::BTreeMap<ChannelKind, Arc<dyn Channel>>,
) -> CodeSenders {
    senders
        .iter()
        .filter(|(kind, _)| matches!(kind, ChannelKind::Sms | ChannelKind::WhatsApp))
        .map(|(kind, sender)| (*kind, sender.clone()))
        .collect()
}

/// A sign-up token: 32 random bytes, with a `c` before them so that a Telegram `/start` payload
/// never reads as another kind (a console user's link starts `u_`).
pub fn random_token() -> String {
    let mut raw = [0u8; 32];
    rand::fill(&mut raw);
    format!("c{}", URL_SAFE_NO_PAD.encode(raw))
}

/// The mailbox an email address reaches, for counting: lower case, without the `+tag` of its
/// local part (`victim+1@example.org` is `victim@example.org`).
fn mailbox(address: &str) -> String {
    let address = address.to_lowercase();
    match address.rsplit_once('@') {
        Some((local, domain)) => {
            let base = local.split(['+']).next().unwrap_or(local);
            let base = if base.is_empty() { local } else { base };
            format!("{base}@{domain}")
        }
        None => address,
    }
}

/// The address that stands for a client in per-client limits: an IPv4 address (also when it
/// comes IPv4-mapped), or an IPv6 /64, which one client usually holds whole.
pub fn one_client(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6(std::net::Ipv6Addr::from(
                u128::from(v6) & !((1u128 << 64) - 1),
            )),
        },
        v4 => v4,
    }
}

pub fn digest(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

fn code_digest(token: &str, code: &str) -> String {
    digest(&format!("{token}\0{code}"))
}

fn after(now: Timestamp, d: Duration) -> Timestamp {
    SignedDuration::try_from(d)
        .ok()
        .and_then(|d| now.checked_add(d).ok())
        .unwrap_or(Timestamp::MAX)
}

impl Citizens {
    pub fn new(mut parts: CitizenParts) -> Citizens {
        parts.public_url = parts.public_url.trim_end_matches('/').to_owned();
        Citizens {
            p: parts,
            per_ip: Mutex::new(HashMap::new()),
        }
    }

    pub fn settings(&self) -> &SubscribeSettings {
        &self.p.settings
    }

    pub fn services(&self) -> &[StatusService] {
        &self.p.services
    }

    pub fn offers(&self, channel: ChannelKind) -> bool {
        self.p.settings.channels.contains(&channel)
    }

    /// A keyed digest of an address: counts sign-ups without keeping the address. An email
    /// address counts as its mailbox, so `victim+1@` and `victim+2@` share one count.
    fn address_key(&self, channel: ChannelKind, address: &str) -> String {
        let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(&self.p.key)
            .unwrap_or_else(|_| unreachable!());
        let counted = match channel {
            ChannelKind::Email => mailbox(address),
            _ => address.to_owned(),
        };
        mac.update(format!("signup\0{}\0{counted}", channel.as_str()).as_bytes());
        hex::encode(mac.finalize().into_bytes())
    }

    /// Counts a sign-up from `ip`, or says how long until it may try again.
    fn admit(&self, ip: IpAddr) -> Result<(), SignupError> {
        let ip = one_client(ip);
        let now = Instant::now();
        let mut map = self.per_ip.lock().unwrap_or_else(|e| e.into_inner());
        if map.len() > 10_000 {
            map.retain(|_, l| {
                l.back()
                    .is_some_and(|t| now.duration_since(*t) < LIMIT_WINDOW)
            });
        }
        let list = map.entry(ip).or_default();
        while list
            .front()
            .is_some_and(|t| now.duration_since(*t) >= LIMIT_WINDOW)
        {
            list.pop_front();
        }
        if list.len() >= self.p.settings.per_ip as usize {
            let wait = list.front().map_or(LIMIT_WINDOW, |t| {
                LIMIT_WINDOW.saturating_sub(now.duration_since(*t))
            });
            metrics::counter!("banditore_signups_refused_total", "why" => "per_ip").increment(1);
            return Err(SignupError::TooMany(wait));
        }
        list.push_back(now);
        Ok(())
    }

    /// The address as given, checked and written the one way it is stored: an email address in
    /// lower case (so that one mailbox is one citizen), a number in E.164 from one of the
    /// countries texts may go to.
    fn address(&self, channel: ChannelKind, raw: &str) -> Result<String, SignupError> {
        let invalid = |message: String| SignupError::Invalid {
            field: "address",
            message,
        };
        let address = channel.parse_address(raw, &self.p.rules).map_err(invalid)?;
        match channel {
            ChannelKind::Email => Ok(address.to_lowercase()),
            ChannelKind::Sms | ChannelKind::WhatsApp
                if !self
                    .p
                    .settings
                    .sms_country_codes
                    .iter()
                    .any(|c| address.starts_with(&format!("+{c}"))) =>
            {
                Err(invalid(format!(
                    "codes are sent only to numbers with country code {}",
                    self.p
                        .settings
                        .sms_country_codes
                        .iter()
                        .map(|c| format!("+{c}"))
                        .collect::<Vec<_>>()
                        .join(", ")
                )))
            }
            _ => Ok(address),
        }
    }

    /// The services asked for, checked against the status page's, each once.
    pub fn chosen(&self, asked: &[String]) -> Result<Vec<String>, SignupError> {
        let mut chosen = BTreeSet::new();
        for id in asked {
            if !self.p.services.iter().any(|s| &s.id == id) {
                return Err(SignupError::Invalid {
                    field: "services",
                    message: format!("`{id}` is not a service of this status page"),
                });
            }
            chosen.insert(id.clone());
        }
        if chosen.is_empty() {
            return Err(SignupError::Invalid {
                field: "services",
                message: "choose at least one service".into(),
            });
        }
        Ok(chosen.into_iter().collect())
    }

    fn language(&self, asked: &str) -> Language {
        match asked {
            "it" | "en" => Language::try_from(asked.to_owned())
                .unwrap_or_else(|_| self.p.rules.default_language.clone()),
            _ => self.p.rules.default_language.clone(),
        }
    }

    /// What a citizen following `services` on `channel` is made of.
    pub fn plan(
        &self,
        services: &[String],
        channel: ChannelKind,
        language: Language,
    ) -> CitizenPlan {
        let subscriptions = self
            .p
            .services
            .iter()
            .filter(|s| services.contains(&s.id))
            .map(|s| Subscription {
                matchers: s.matchers.clone(),
                min_severity: Severity::Info,
                channels: vec![channel],
            })
            .collect();
        let name = if language.primary() == "en" {
            "Status page subscription"
        } else {
            "Iscrizione alla pagina di stato"
        };
        CitizenPlan {
            name: name.to_owned(),
            language,
            services: services.to_vec(),
            subscriptions,
        }
    }

    /// Starts a sign-up: checks the form and the limits, stores it, sends the link or the code.
    pub async fn start(&self, form: &SignupForm, ip: IpAddr) -> Result<Started, SignupError> {
        let channel = match form.channel.as_str() {
            "email" => ChannelKind::Email,
            "sms" => ChannelKind::Sms,
            "whatsapp" => ChannelKind::WhatsApp,
            "telegram" => ChannelKind::Telegram,
            other => {
                return Err(SignupError::Invalid {
                    field: "channel",
                    message: format!("`{other}` is not a way to subscribe here"),
                });
            }
        };
        if !self.offers(channel) {
            return Err(SignupError::Invalid {
                field: "channel",
                message: format!("{} is not offered here", channel.title()),
            });
        }
        let services = self.chosen(&form.services)?;
        let language = self.language(&form.language);
        let replaces = self.replaces(&form.replaces).await?;
        if channel == ChannelKind::Telegram {
            self.admit(ip)?;
            return self.start_telegram(&services, language, replaces).await;
        }
        let address = self.address(channel, &form.address)?;
        self.admit(ip)?;
        let now = Timestamp::now();
        let key = self.address_key(channel, &address);
        let token = random_token();
        let code = matches!(channel, ChannelKind::Sms | ChannelKind::WhatsApp)
            .then(|| format!("{:06}", rand::random_range(0..1_000_000u32)));
        let ttl = if code.is_some() {
            self.p.settings.code_ttl.get()
        } else {
            self.p.settings.link_ttl.get()
        };
        let stored = self
            .p
            .store
            .create_signup(
                &NewSignup {
                    token_sha256: digest(&token),
                    channel,
                    address: address.clone(),
                    address_key: key,
                    language: language.clone(),
                    services: services.clone(),
                    code_sha256: code.as_deref().map(|c| code_digest(&token, c)),
                    replaces,
                    created_at: now,
                    expires_at: after(now, ttl),
                },
                now.checked_sub(LIMIT_WINDOW).unwrap_or(now),
                self.p.settings.per_address,
            )
            .await?;
        let Some(id) = stored else {
            metrics::counter!("banditore_signups_refused_total", "why" => "per_address")
                .increment(1);
            if channel == ChannelKind::Email {
                // Say nothing that tells this address from any other.
                tracing::info!("email sign-up over its per-address limit; nothing sent");
                return Ok(Started::EmailSent);
            }
            return Err(SignupError::TooMany(LIMIT_WINDOW));
        };
        let (name, args, sender) = match &code {
            Some(code) => (
                "code_sms",
                vec![minijinja::Value::from(code.as_str())],
                self.p.codes.get(&channel).cloned(),
            ),
            None => (
                "confirm_email",
                vec![
                    minijinja::Value::from(format!(
                        "{}/status/subscribe/confirm/{token}?lang={}",
                        self.p.public_url,
                        language.primary()
                    )),
                    minijinja::Value::from(self.service_names(&services, &language)),
                    minijinja::Value::from(ttl.as_secs() / 3600),
                ],
                self.p.email.clone(),
            ),
        };
        let Some(sender) = sender else {
            return Err(SignupError::Unavailable(format!(
                "{} is not enabled",
                channel.title()
            )));
        };
        let text = self
            .p
            .renderer
            .citizen_text(&language, name, &args)
            .map_err(|e| SignupError::Unavailable(e.to_string()))?;
        let (subject, text) = match (text.split_once('\n'), &code) {
            (Some((subject, body)), _) if channel == ChannelKind::Email => {
                (Some(subject.trim().to_owned()), body.trim().to_owned())
            }
            // WhatsApp sends the code alone, in its authentication template.
            (_, Some(code)) if channel == ChannelKind::WhatsApp => (
                Some(crate::channel::whatsapp::SIGNUP_CODE.to_owned()),
                code.clone(),
            ),
            _ => (None, text.trim().to_owned()),
        };
        let outgoing = Outgoing {
            // Not a delivery: negative, and with no incident (see `EmailChannel::build`).
            delivery_id: -id,
            incident_id: 0,
            attempt: 1,
            recipient: address,
            recipient_name: String::new(),
            language: language.primary().to_owned(),
            subject,
            text,
            html: None,
            unsubscribe_url: String::new(),
            buttons: None,
            ack: None,
        };
        match sender.send(&outgoing).await {
            Ok(_) => {
                metrics::counter!("banditore_signups_total", "channel" => channel.as_str())
                    .increment(1);
                tracing::info!(signup = id, channel = %channel, "sign-up confirmation sent");
                Ok(match code {
                    Some(_) => Started::CodeSent { token },
                    None => Started::EmailSent,
                })
            }
            Err(SendError::Throttled { after }) => {
                tracing::info!(signup = id, channel = %channel, wait = ?after, "sign-up confirmation held back by the channel's pace");
                metrics::counter!("banditore_signups_refused_total", "why" => "throttled")
                    .increment(1);
                Err(SignupError::Busy(after))
            }
            Err(e) => {
                // The provider's words may quote the address: only their kind is logged.
                let kind = match e {
                    SendError::Retry { .. } => "temporary failure",
                    SendError::Reject { .. } | SendError::Declined { .. } => "refused",
                    SendError::RecipientGone { .. } => "recipient unknown",
                    SendError::Throttled { .. } => "throttled",
                    SendError::Credentials { .. } => "credentials refused",
                };
                tracing::warn!(signup = id, channel = %channel, kind, "cannot send the sign-up confirmation");
                Err(SignupError::Unavailable(format!(
                    "the {} could not be sent; try again in a few minutes",
                    if code.is_some() { "code" } else { "link" }
                )))
            }
        }
    }

    async fn start_telegram(
        &self,
        services: &[String],
        language: Language,
        replaces: Option<i64>,
    ) -> Result<Started, SignupError> {
        let now = Timestamp::now();
        let plan = self.plan(services, ChannelKind::Telegram, language);
        let token = random_token();
        let expires_at = after(now, self.p.settings.code_ttl.get());
        let subscriber = self
            .p
            .store
            .create_citizen(&plan, &digest(&token), expires_at, replaces, now)
            .await?;
        metrics::counter!("banditore_signups_total", "channel" => "telegram").increment(1);
        tracing::info!(subscriber, "Telegram sign-up link made");
        Ok(Started::Telegram { token, expires_at })
    }

    /// The address id a preferences token names, when it is a citizen's (a desk's address is
    /// the operators' to move).
    async fn replaces(&self, token: &str) -> Result<Option<i64>, SignupError> {
        if token.is_empty() {
            return Ok(None);
        }
        match self.manage(token).await? {
            Some((address, s)) if s.origin == crate::store::SubscriberOrigin::Citizen => {
                Ok(Some(address))
            }
            _ => Err(SignupError::Invalid {
                field: "replaces",
                message: "the link to the subscription being changed is not valid".into(),
            }),
        }
    }

    pub fn service_names(&self, ids: &[String], language: &Language) -> Vec<String> {
        self.p
            .services
            .iter()
            .filter(|s| ids.contains(&s.id))
            .map(|s| {
                if language.primary() == "en" && !s.name_en.is_empty() {
                    s.name_en.clone()
                } else {
                    s.name.clone()
                }
            })
            .collect()
    }

    /// The sign-up a token names, if any.
    pub async fn signup(&self, token: &str) -> Result<Option<Signup>, StoreError> {
        self.p.store.signup(&digest(token)).await
    }

    /// Confirms a sign-up: by its link (email) or its code (SMS).
    pub async fn confirm(
        &self,
        token: &str,
        code: Option<&str>,
    ) -> Result<Confirmation, SignupError> {
        let Some(signup) = self.signup(token).await? else {
            return Ok(Confirmation::Unknown);
        };
        let now = Timestamp::now();
        // A link is no code, and a code no link: each confirms only its own kind of sign-up.
        if signup.code_sha256.is_some() != code.is_some() {
            return Ok(Confirmation::Unknown);
        }
        if signup.used_at.is_some() {
            return Ok(Confirmation::Used);
        }
        if signup.expires_at < now {
            return Ok(Confirmation::Expired);
        }
        if let Some(expected) = &signup.code_sha256 {
            // The try is taken before the code is compared: guesses sent at once each use one.
            let max = self.p.settings.code_attempts;
            let Some(taken) = self.p.store.signup_attempt(signup.id, max).await? else {
                return Ok(Confirmation::Expired);
            };
            let given = code.unwrap_or_default().trim();
            let matches: bool = subtle::ConstantTimeEq::ct_eq(
                code_digest(token, given).as_bytes(),
                expected.as_bytes(),
            )
            .into();
            if !matches {
                return Ok(Confirmation::WrongCode {
                    attempts_left: max.saturating_sub(taken),
                });
            }
        }
        let services: Vec<String> = signup
            .services
            .iter()
            .filter(|id| self.p.services.iter().any(|s| &s.id == *id))
            .cloned()
            .collect();
        let plan = self.plan(&services, signup.channel, signup.language.clone());
        match self.p.store.confirm_signup(signup.id, &plan, now).await? {
            Some(address_id) => {
                metrics::counter!("banditore_signups_confirmed_total", "channel" => signup.channel.as_str())
                    .increment(1);
                tracing::info!(
                    signup = signup.id,
                    address = address_id,
                    "citizen subscribed"
                );
                Ok(Confirmation::Subscribed { address_id })
            }
            None => Ok(Confirmation::Used),
        }
    }

    /// The address and its subscriber a preferences token names, if the token is good.
    pub async fn manage(&self, token: &str) -> Result<Option<(i64, SubscriberRow)>, StoreError> {
        let Some(parsed) = UnsubscribeLinks::parse(token) else {
            return Ok(None);
        };
        let Some(owner) = self.p.store.address(parsed.address_id).await? else {
            return Ok(None);
        };
        let a = &owner.address;
        if !self.p.links.verify(
            crate::unsubscribe::Purpose::Manage,
            &parsed,
            a.channel,
            &a.address,
        ) {
            return Ok(None);
        }
        let subscriber = self.p.store.subscriber(owner.subscriber_id).await?;
        Ok(subscriber.map(|s| (a.id, s)))
    }

    /// The preferences link of an address.
    pub fn manage_url(&self, address_id: i64, channel: ChannelKind, address: &str) -> String {
        self.p.links.manage_url(address_id, channel, address)
    }

    /// Rewrites every citizen's subscriptions from the services' current matchers (run at
    /// start: the configuration may have changed them). Services no longer listed are dropped.
    /// Citizens are read a batch at a time: there may be a region's worth. Skipped when the
    /// services' ids and matchers are those of the last complete run: every citizen written
    /// since was written from them.
    pub async fn sync(&self) -> Result<u64, StoreError> {
        let services = self.services_digest();
        if self.p.store.setting_or_insert(SYNCED_KEY, "").await? == services {
            return Ok(0);
        }
        let mut changed = 0;
        let mut after = 0;
        loop {
            let batch = self
                .p
                .store
                .citizens_after(after, i64::MAX, SYNC_BATCH)
                .await?;
            let Some(last) = batch.last() else {
                self.p.store.set_setting(SYNCED_KEY, &services).await?;
                return Ok(changed);
            };
            after = last.id;
            for s in &batch {
                changed += u64::from(self.sync_one(s).await?);
            }
        }
    }

    /// A digest of what citizens' subscriptions are made from: each service's id and matchers.
    fn services_digest(&self) -> String {
        let mut text = String::new();
        for s in &self.p.services {
            text.push_str(&s.id);
            for m in &s.matchers {
                text.push('\0');
                text.push_str(&m.to_string());
            }
            text.push('\n');
        }
        digest(&text)
    }

    /// Rewrites one citizen's subscriptions when they differ from the services' matchers.
    async fn sync_one(&self, s: &SubscriberRow) -> Result<bool, StoreError> {
        if s.origin != crate::store::SubscriberOrigin::Citizen {
            return Ok(false);
        }
        let channel = s
            .subscriptions
            .first()
            .and_then(|x| x.channels.first().copied())
            .or_else(|| s.addresses.first().map(|a| a.channel))
            .unwrap_or(ChannelKind::Telegram);
        let services: Vec<String> = s
            .citizen_services
            .iter()
            .filter(|id| self.p.services.iter().any(|x| &x.id == *id))
            .cloned()
            .collect();
        let plan = self.plan(&services, channel, s.language.clone());
        let same = plan.services == s.citizen_services
            && plan.subscriptions.len() == s.subscriptions.len()
            && plan
                .subscriptions
                .iter()
                .zip(&s.subscriptions)
                .all(|(a, b)| {
                    matchers_text(&a.matchers) == matchers_text(&b.matchers)
                        && a.channels == b.channels
                });
        if !same {
            self.p.store.set_citizen(s.id, &plan).await?;
        }
        Ok(!same)
    }
}

fn matchers_text(m: &[Matcher]) -> Vec<String> {
    m.iter().map(ToString::to_string).collect()
}

#[cfg(test)]
mod tests {
    use super::mailbox;

    #[test]
    fn plus_tags_reach_one_mailbox() {
        assert_eq!(mailbox("Victim+1@Example.org"), "victim@example.org");
        assert_eq!(mailbox("victim+a+b@example.org"), "victim@example.org");
        assert_eq!(mailbox("victim@example.org"), "victim@example.org");
        assert_eq!(mailbox("+x@example.org"), "+x@example.org");
        assert_eq!(
            mailbox("mario-rossi@example.org"),
            "mario-rossi@example.org"
        );
    }
}
