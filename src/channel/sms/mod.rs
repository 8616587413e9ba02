//! SMS through HTTP gateways, tried in priority order: when one throttles, fails or refuses a
//! message, the next sends it. Each gateway is one file; they share a [`Gateway`] trait, and
//! the failover that puts a throttling or failing provider aside is the channels' own
//! (`channel::failover`, shared with voice calls).
//!
//! A provider that does not answer within `channels.sms.timeout` is treated as failed and the
//! next one is tried: the first may still deliver, so a timeout can cost a duplicate text. For
//! an alert, a duplicate is better than silence.
//!
//! A concatenated message of which a provider took some parts and refused others reached the
//! phone incomplete. It is sent whole through the next provider, in this attempt or a later one
//! (the phone then holds the parts it had twice: better than a text cut short), but never whole
//! through that provider again, where each try would repeat the parts already delivered. When
//! every provider has taken part of it, the delivery fails, naming what reached the phone. The
//! providers that took part of a message are remembered by this process only: a retry on
//! another replica, or after a restart, may send it whole once more.

mod generic;
pub mod report;
pub mod settings;
mod skebby;
mod twilio;
mod vonage;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;

use self::report::ReportLinks;
use super::failover::{Member, Roster};
use super::{Channel, Outgoing, Receipt, SendError};
use crate::channel::rate::RateLimiter;
use crate::domain::subscriber::ChannelKind;
use crate::render::sms::{self as text, Encoding, Measure};
use crate::settings::{SmsProviderKeys, SmsProviderKind, SmsSettings};
use crate::store::Store;

/// One message for a gateway.
pub struct SmsMessage<'a> {
    /// E.164, with `+`.
    pub to: &'a str,
    pub text: &'a str,
    pub measure: Measure,
    /// Where the provider should post its delivery report.
    pub report_url: Option<&'a str>,
    /// Stable across retries: a client reference where the API has one.
    pub reference: i64,
}

impl SmsMessage<'_> {
    /// The number without `+`, as some APIs want it.
    pub fn to_digits(&self) -> &str {
        self.to.trim_start_matches('+')
    }

    pub fn is_unicode(&self) -> bool {
        self.measure.encoding == Encoding::Ucs2
    }
}

/// The provider took the message.
pub struct Accepted {
    pub id: String,
    /// What the provider says it cost, when it says.
    pub segments: Option<u32>,
}

/// Why a provider did not take a message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GatewayError {
    /// Over this provider's rate: the next provider, or later.
    Throttled {
        after: Option<Duration>,
        reason: String,
    },
    /// The provider is in trouble (5xx, no answer, credentials refused): the next provider.
    Unavailable(String),
    /// This provider refuses this message (its sender, its region, its rules): the next one may not.
    Refused(String),
    /// The number cannot receive SMS at all (invalid, not a mobile, opted out).
    NumberGone(String),
    /// The provider refuses our credentials: the next provider; when every one does, the
    /// channel is paused.
    Credentials(String),
    /// The provider took some parts of a concatenated message and refused the others: the
    /// phone holds an incomplete text. The next provider, never this one again for this message.
    Partial(String),
}

#[async_trait]
pub trait Gateway: Send + Sync {
    async fn send(&self, msg: &SmsMessage<'_>) -> Result<Accepted, GatewayError>;
}

/// What every gateway needs from an HTTP answer: its status, headers and body, read whole.
pub struct Answer {
    pub status: reqwest::StatusCode,
    pub retry_after: Option<Duration>,
    pub body: String,
}

impl Answer {
    pub async fn read(resp: reqwest::Response) -> Answer {
        let status = resp.status();
        let retry_after = resp
            .headers()
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok())
            .map(Duration::from_secs);
        let body = resp.text().await.unwrap_or_default();
        Answer {
            status,
            retry_after,
            body,
        }
    }

    /// The start of the body, for error messages.
    pub fn excerpt(&self) -> String {
        self.body.chars().take(200).collect()
    }
}

/// A request that got no answer.
pub fn unreachable(provider: &str, e: &reqwest::Error) -> GatewayError {
    let what = if e.is_timeout() {
        "no answer in time"
    } else {
        "unreachable"
    };
    // reqwest's message names the URL, never the credentials (they travel in headers or bodies).
    GatewayError::Unavailable(format!("{provider} {what}: {e}"))
}

/// Deliveries remembered as partly sent, at most; past it they are forgotten (a retry elsewhere
/// forgets them anyway), so that deliveries given up by the outbox cannot pile up.
const PARTLY_SENT_MAX: usize = 4_096;

/// What one SMS provider sends with.
struct SmsGateway {
    gateway: Box<dyn Gateway>,
    report_url: Option<String>,
}

pub struct SmsChannel {
    providers: Roster<SmsGateway>,
    fold: bool,
    /// Per delivery and recipient (notices that are not deliveries share an id), the providers
    /// that took part of its message (see the module's comment).
    partly_sent: Mutex<HashMap<(i64, String), Vec<String>>>,
}

/// Builds the gateways from validated settings.
pub fn sms_channel(
    settings: &SmsSettings,
    providers: &[SmsProviderKeys],
    store: Arc<dyn Store>,
    reports: &ReportLinks,
) -> Result<SmsChannel, String> {
    let http = reqwest::Client::builder()
        .timeout(settings.timeout.get())
        .connect_timeout(settings.timeout.get().min(Duration::from_secs(5)))
        .tcp_nodelay(true)
        .pool_idle_timeout(Duration::from_secs(50))
        .user_agent(concat!("banditore/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(|e| format!("channels.sms: cannot build the HTTP client: {e}"))?;
    let mut built = Vec::new();
    for keys in providers {
        let p = &keys.settings;
        let gateway: Box<dyn Gateway> = match p.kind {
            SmsProviderKind::Twilio => Box::new(twilio::Twilio::new(keys, http.clone())),
            SmsProviderKind::Vonage => Box::new(vonage::Vonage::new(keys, http.clone())),
            SmsProviderKind::Skebby => Box::new(skebby::Skebby::new(keys, http.clone())),
            SmsProviderKind::Generic => Box::new(generic::Generic::new(keys, http.clone())?),
        };
        built.push(Member::new(
            p.name.clone(),
            SmsGateway {
                gateway,
                report_url: settings
                    .delivery_reports
                    .then(|| reports.url(&p.name, p.kind)),
            },
            (p.rate_per_second > 0).then(|| {
                RateLimiter::new(
                    store.clone(),
                    format!("sms:{}", p.name),
                    p.rate_per_second,
                    1,
                )
            }),
        ));
    }
    Ok(SmsChannel {
        providers: Roster::new(
            ChannelKind::Sms,
            built,
            settings.put_aside_after,
            settings.put_aside_for.get(),
        ),
        fold: settings.fold_to_gsm7,
        partly_sent: Mutex::default(),
    })
}

#[async_trait]
impl Channel for SmsChannel {
    fn kind(&self) -> ChannelKind {
        ChannelKind::Sms
    }

    async fn send(&self, msg: &Outgoing) -> Result<Receipt, SendError> {
        // Rendering folded the template's text; a name filled in since may need it too. Folding
        // is there to cost less: a text it cannot make GSM-7 keeps its cut's "…" (one UTF-16
        // unit) rather than spend a segment more on "...".
        let folded = self.fold.then(|| text::fold_to_gsm7(&msg.text));
        let body = match folded {
            Some(folded)
                if text::measure(&folded).segments <= text::measure(&msg.text).segments =>
            {
                folded
            }
            _ => msg.text.clone(),
        };
        let measure = text::measure(&body);
        let mut throttled: Vec<Option<Duration>> = Vec::new();
        let mut unavailable = false;
        let mut refused_credentials = 0;
        let mut partial = false;
        let mut reasons = Vec::new();
        let partly_sent = self.partly_sent(msg);
        if !partly_sent.is_empty()
            && self
                .providers
                .members()
                .iter()
                .all(|p| partly_sent.contains(&p.name))
        {
            return Err(self.cut_short(msg, "".into()));
        }
        for (provider, _slot) in self.providers.order(&partly_sent).await {
            if let Some(limiter) = &provider.limiter {
                limiter.acquire().await;
            }
            let sms = SmsMessage {
                to: &msg.recipient,
                text: &body,
                measure,
                report_url: provider.inner.report_url.as_deref(),
                reference: msg.delivery_id,
            };
            let name = provider.name.as_str();
            match provider.inner.gateway.send(&sms).await {
                Ok(accepted) => {
                    self.forget_partly_sent(msg);
                    self.providers.succeeded(provider);
                    let segments = accepted.segments.unwrap_or(measure.segments);
                    metrics::counter!("banditore_sms_sent_total", "provider" => name.to_owned())
                        .increment(1);
                    metrics::counter!("banditore_sms_segments_total", "provider" => name.to_owned())
                        .increment(u64::from(segments));
                    if !reasons.is_empty() {
                        tracing::info!(provider = name, delivery = msg.delivery_id, earlier = %reasons.join("; "), "SMS sent by a later provider");
                    }
                    return Ok(Receipt {
                        provider_id: Some(accepted.id),
                        provider: Some(name.to_owned()),
                        segments: Some(segments),
                    });
                }
                Err(e) => {
                    let (kind, reason) = match e {
                        GatewayError::NumberGone(reason) => {
                            self.forget_partly_sent(msg);
                            return Err(SendError::RecipientGone {
                                reason: format!("{name}: {reason}"),
                            });
                        }
                        GatewayError::Throttled { after, reason } => {
                            throttled.push(after);
                            self.providers.throttled(provider, after);
                            ("throttled", reason)
                        }
                        GatewayError::Unavailable(reason) => {
                            unavailable = true;
                            self.providers.failed(provider);
                            ("unavailable", reason)
                        }
                        GatewayError::Credentials(reason) => {
                            refused_credentials += 1;
                            self.providers.failed(provider);
                            tracing::error!(provider = name, %reason, "SMS provider refuses its credentials: check channels.sms.providers");
                            ("credentials", reason)
                        }
                        GatewayError::Refused(reason) => ("refused", reason),
                        GatewayError::Partial(reason) => {
                            partial = true;
                            self.sent_in_part(msg, name);
                            ("partial", reason)
                        }
                    };
                    metrics::counter!("banditore_sms_provider_errors_total", "provider" => name.to_owned(), "kind" => kind)
                        .increment(1);
                    tracing::warn!(provider = name, delivery = msg.delivery_id, kind, %reason, "SMS provider did not take the message");
                    reasons.push(format!("{name} {kind}: {reason}"));
                }
            }
        }
        let reason = reasons.join("; ");
        if partial {
            // Never Throttled, which would send it again without counting an attempt.
            let partly_sent = self.partly_sent(msg);
            if self
                .providers
                .members()
                .iter()
                .all(|p| partly_sent.contains(&p.name))
            {
                return Err(self.cut_short(msg, reason));
            }
            return Err(SendError::Retry {
                after: None,
                reason,
            });
        }
        // Only when every provider was asked and refused: one not asked (aside, or busy on
        // trial) may still send, and pausing the channel would hold it back too.
        if refused_credentials > 0
            && refused_credentials == reasons.len()
            && reasons.len() == self.providers.members().len()
        {
            return Err(SendError::Credentials { reason });
        }
        if !throttled.is_empty() && !unavailable && throttled.len() == reasons.len() {
            // Every provider asked to slow down: wait, without counting an attempt.
            let after = throttled
                .into_iter()
                .map(|a| a.unwrap_or(Duration::from_secs(1)))
                .min()
                .unwrap_or(Duration::from_secs(1))
                .min(self.providers.put_aside_for().max(Duration::from_secs(1)));
            return Err(SendError::Throttled { after });
        }
        if unavailable || refused_credentials > 0 || !throttled.is_empty() {
            return Err(SendError::Retry {
                after: None,
                reason,
            });
        }
        self.forget_partly_sent(msg);
        Err(SendError::Reject { reason })
    }
}

impl SmsChannel {
    /// The providers that took part of this message.
    fn partly_sent(&self, msg: &Outgoing) -> Vec<String> {
        let key = (msg.delivery_id, msg.recipient.clone());
        self.sent_in_parts().get(&key).cloned().unwrap_or_default()
    }

    fn sent_in_part(&self, msg: &Outgoing, provider: &str) {
        let mut partly_sent = self.sent_in_parts();
        if partly_sent.len() >= PARTLY_SENT_MAX {
            partly_sent.clear();
        }
        let key = (msg.delivery_id, msg.recipient.clone());
        partly_sent
            .entry(key)
            .or_default()
            .push(provider.to_owned());
    }

    fn forget_partly_sent(&self, msg: &Outgoing) {
        let key = (msg.delivery_id, msg.recipient.clone());
        self.sent_in_parts().remove(&key);
    }

    fn sent_in_parts(&self) -> std::sync::MutexGuard<'_, HashMap<(i64, String), Vec<String>>> {
        // Names only: a panic elsewhere cannot leave them inconsistent.
        self.partly_sent.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Every provider took part of the message: sending it whole again would repeat what
    /// reached the phone.
    fn cut_short(&self, msg: &Outgoing, reason: String) -> SendError {
        let names = self.partly_sent(msg).join(", ");
        self.forget_partly_sent(msg);
        let reason = format!(
            "{reason}{}part of the message reached the number through {names}; not sent whole \
             again, which would repeat those parts",
            if reason.is_empty() { "" } else { "; " }
        );
        SendError::Reject { reason }
    }
}

/// SMS in the registry: text fitted to segments, through the gateways in priority order.
pub struct Spec;

impl crate::settings::ChannelSection for Spec {
    fn kind(&self) -> ChannelKind {
        ChannelKind::Sms
    }

    fn form(&self) -> crate::render::Form {
        crate::render::Form::Sms
    }

    fn validate(
        &self,
        s: &crate::settings::Settings,
        keys: &mut crate::settings::ChannelKeys,
        mut push: &mut dyn FnMut(&str, String),
    ) {
        let providers = settings::validate_sms(s, &mut push);
        keys.insert(ChannelKind::Sms, providers);
    }
}

impl super::ChannelSpec for Spec {
    fn reaches_people(&self) -> bool {
        true
    }

    fn build(
        &self,
        v: &crate::settings::Validated,
        wiring: &super::Wiring<'_>,
    ) -> Result<Option<super::Built>, super::BuildError> {
        let s = &v.settings.channels.sms;
        if !s.enabled {
            return Ok(None);
        }
        let providers: &[SmsProviderKeys] = v
            .channels
            .get::<Vec<SmsProviderKeys>>(ChannelKind::Sms)
            .map_or(&[], Vec::as_slice);
        let mut reports = ReportLinks::new(wiring.key, &v.settings.server.public_url, providers);
        if s.replies {
            let token = s
                .reply_token()
                .resolve("reply_token")
                .map_err(super::BuildError)?;
            reports = reports.with_replies(report::Replies::new(
                &s.reply_words,
                token,
                &s.reply_sender_field,
                &s.reply_text_field,
            ));
        }
        let channel =
            sms_channel(s, providers, wiring.store.clone(), &reports).map_err(super::BuildError)?;
        Ok(Some(super::Built {
            channel: Arc::new(channel),
            concurrency: s.concurrency as usize,
            // Each provider paces itself (`rate_per_second`), shared by every replica.
            rate: None,
            shared: Some(Arc::new(reports)),
        }))
    }
}
