//! Webhooks as a channel: each delivery one HTTP `POST` of a JSON event to a subscriber's URL,
//! signed by the Standard Webhooks specification, so that other systems (the booking software,
//! an intranet banner, a call centre's screens) can show an outage by themselves; or, for an
//! address naming a preset, the body a chat tool's incoming webhook expects (`preset.rs`).
//!
//! The body is the message the router rendered from `templates/webhook/<lang>/text.j2`, a
//! versioned event (docs: channels/webhook.md). `webhook-id` is derived from the delivery, so it
//! is the same at every retry; `webhook-timestamp` is the attempt's. Answers are classified as
//! the specification says: 2xx sent; 410 gone; any other answer (and no answer) a failure the
//! outbox retries, `Retry-After` honoured, in seconds or as an HTTP date. A chat tool's preset
//! retries only 408, 409, 425, 429 and 5xx: its other refusals are the payload's or the hook's.
//! Redirects are not followed: a redirect could lead a signed event anywhere, past the address
//! checks.
//!
//! An administrator types the URL, so every address a name resolves to is checked at each send
//! by [`WebhookRules::refusal`] (`Guard`), and the connection goes only to a checked address:
//! a name that resolved to a public address when saved and to a private one now is refused. A
//! receiver that has failed every send for `disable_after` is disabled: its address is marked
//! gone (the console shows it) and the operators are told (`alarm.rs`).

mod preset;
pub mod settings;
mod sign;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use jiff::Timestamp;
use serde_json::{Value, json};

use crate::channel::alarm::{Alarm, Alarms};
use crate::channel::{
    BuildError, Built, Channel, ChannelSpec, Outgoing, Receipt, SendError, Wiring,
};
use crate::domain::subscriber::{
    ChannelKind, Preset, WebhookAddress, WebhookRules, masked_webhook,
};

pub use sign::{SigningSecret, message_id};

/// The largest body sent; an event over it loses signals (counted in `signals_omitted`) until
/// it fits. Standard Webhooks advises keeping payloads small (under 20 KB is its example).
pub const MAX_BODY: usize = 64 * 1024;

/// What the event's format is: receivers read it to cope with later changes.
pub const EVENT_VERSION: u64 = 1;

/// How much of a refusal's body goes into the delivery's error.
const ERROR_EXCERPT: usize = 300;

/// The signing secret of a webhook address, as `banditore webhook-secret` shows it.
pub fn secret_for(key: &[u8], address: &str, rules: &WebhookRules) -> Result<String, String> {
    let address = WebhookAddress::parse(address, rules)?;
    Ok(SigningSecret::derive(key, &address).reveal())
}

/// Resolves a receiver's name and checks every address it gets before any is connected to.
struct Guard {
    rules: WebhookRules,
}

/// A name that resolved to an address a webhook may not reach.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct Refused(String);

impl reqwest::dns::Resolve for Guard {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let rules = self.rules.clone();
        Box::pin(async move {
            let host = name.as_str().to_owned();
            let addrs: Vec<SocketAddr> =
                tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            // One refused address refuses the name: a receiver has no reason to resolve into
            // the deployment's own network beside the Internet, and rebinding tricks do.
            if let Some(why) = addrs.iter().find_map(|a| rules.refusal(a.ip())) {
                return Err(Box::new(Refused(format!("{host} resolves to {why}")))
                    as Box<dyn std::error::Error + Send + Sync>);
            }
            Ok(Box::new(addrs.into_iter()) as reqwest::dns::Addrs)
        })
    }
}

/// Failures further apart than this are not one outage: a receiver that failed one send, got
/// nothing for days (no incident) and failed the next is not disabled on the spot. Svix starts
/// its clock only after several failures within a day, too.
pub const FAILURES_APART: Duration = Duration::from_secs(24 * 3600);

/// When each receiver's failures began (since its last success, with no more than
/// [`FAILURES_APART`] between two of them) and when it last failed; kept in memory, so a restart
/// starts the count again (a receiver is disabled later, never sooner).
#[derive(Default)]
pub struct Health {
    failing_since: Mutex<HashMap<String, (Timestamp, Timestamp)>>,
}

impl Health {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, (Timestamp, Timestamp)>> {
        self.failing_since
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    pub fn succeeded(&self, address: &str) {
        self.lock().remove(address);
    }

    /// Notes a failure at `now`; answers when the failures began if they have lasted
    /// `disable_after` or longer.
    pub fn failed(
        &self,
        address: &str,
        now: Timestamp,
        disable_after: Duration,
    ) -> Option<Timestamp> {
        let mut map = self.lock();
        let (since, last) = map.entry(address.to_owned()).or_insert((now, now));
        if now.duration_since(*last).as_secs_f64() > FAILURES_APART.as_secs_f64() {
            *since = now;
        }
        *last = now;
        let since = *since;
        let lasted = now.duration_since(since);
        (lasted.as_secs_f64() >= disable_after.as_secs_f64()).then(|| {
            map.remove(address);
            since
        })
    }
}

pub struct WebhookChannel {
    client: reqwest::Client,
    rules: WebhookRules,
    key: Vec<u8>,
    deployment_id: String,
    disable_after: Duration,
    health: Health,
    alarms: Alarms,
}

impl WebhookChannel {
    pub fn new(
        rules: WebhookRules,
        timeout: Duration,
        disable_after: Duration,
        key: &[u8],
        deployment_id: &str,
        alarms: Alarms,
    ) -> Result<WebhookChannel, BuildError> {
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            // Through a proxy the proxy would resolve the receiver's name, past the checks.
            .no_proxy()
            .timeout(timeout)
            .connect_timeout(timeout.min(Duration::from_secs(10)))
            .user_agent(concat!(
                "Banditore/",
                env!("CARGO_PKG_VERSION"),
                " (Standard Webhooks)"
            ))
            .dns_resolver(Arc::new(Guard {
                rules: rules.clone(),
            }))
            .build()
            .map_err(BuildError::new)?;
        Ok(WebhookChannel {
            client,
            rules,
            key: key.to_vec(),
            deployment_id: deployment_id.to_owned(),
            disable_after,
            health: Health::default(),
            alarms,
        })
    }

    /// The body for one delivery: the event the template wrote (or, when an operator's
    /// template wrote something else, an event carrying that text), within `MAX_BODY`.
    fn event(&self, msg: &Outgoing) -> Value {
        let mut event = match serde_json::from_str::<Value>(&msg.text) {
            Ok(v @ Value::Object(_)) => v,
            _ => json!({
                "type": "incident.updated",
                "version": EVENT_VERSION,
                "timestamp": Timestamp::now().to_string(),
                "data": {
                    "incident": {"id": msg.incident_id},
                    "headline": msg.subject.clone().unwrap_or_default(),
                    "summary": msg.text,
                },
            }),
        };
        while serde_json::to_vec(&event).map_or(0, |b| b.len()) > MAX_BODY {
            let Some(signals) = event
                .pointer_mut("/data/signals")
                .and_then(Value::as_array_mut)
                .filter(|s| !s.is_empty())
            else {
                break;
            };
            let keep = signals.len() / 2;
            let dropped = signals.len() - keep;
            signals.truncate(keep);
            let omitted = event
                .pointer("/data/signals_omitted")
                .and_then(Value::as_u64)
                .unwrap_or(0);
            event["data"]["signals_omitted"] = json!(omitted + dropped as u64);
        }
        event
    }

    /// A failure: given up on (the receiver is disabled) once the receiver has failed for
    /// `disable_after`, otherwise `error` as it is.
    fn failure(&self, address: &str, error: SendError) -> SendError {
        let Some(since) = self
            .health
            .failed(address, Timestamp::now(), self.disable_after)
        else {
            return error;
        };
        let host = url::Url::parse(address.split_once('+').map_or(address, |(_, u)| u))
            .ok()
            .and_then(|u| u.host_str().map(str::to_owned))
            .unwrap_or_default();
        tracing::error!(channel = "webhook", %host, failing_since = %since, last_error = %error, "webhook receiver disabled: it has failed every send for channels.webhook.disable_after; its address is marked gone");
        metrics::counter!("banditore_webhook_disabled_total").increment(1);
        self.alarms.raise(Alarm::WebhookDisabled {
            host,
            since,
            last_error: error.to_string(),
        });
        SendError::RecipientGone {
            reason: format!(
                "disabled: every send has failed since {since} (channels.webhook.disable_after); last: {error}"
            ),
        }
    }
}

/// `Retry-After` in seconds or as an HTTP date.
pub fn retry_after(value: &str, now: Timestamp) -> Option<Duration> {
    let value = value.trim();
    if let Ok(secs) = value.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let at = jiff::fmt::rfc2822::parse(value).ok()?.timestamp();
    Some(Duration::try_from(at.duration_since(now)).unwrap_or(Duration::ZERO))
}

/// A status and the start of its body, for the delivery's error.
fn refusal(status: reqwest::StatusCode, body: &str) -> String {
    let excerpt: String = body
        .chars()
        .filter(|c| !c.is_control())
        .take(ERROR_EXCERPT)
        .collect();
    if excerpt.is_empty() {
        format!("the receiver answered {status}")
    } else {
        format!("the receiver answered {status}: {excerpt}")
    }
}

/// At most `ERROR_EXCERPT` characters' worth of the answer's body.
async fn excerpt(mut resp: reqwest::Response) -> String {
    let mut bytes = Vec::new();
    while bytes.len() < ERROR_EXCERPT * 4 {
        match resp.chunk().await {
            Ok(Some(chunk)) => bytes.extend_from_slice(&chunk),
            _ => break,
        }
    }
    String::from_utf8_lossy(&bytes).into_owned()
}

/// What an answer means for the delivery. Slack answers `404` with `channel_not_found` (the
/// channel no longer exists) or `no_service` (the webhook was removed) in its body: for its
/// preset, that address is gone, as for a `410`. Any other `404` to a chat tool fails the
/// delivery only; to an event it is retried, as every answer but a 2xx or a 410.
async fn classify(resp: reqwest::Response, preset: Preset) -> Result<(), SendError> {
    let status = resp.status();
    if status.is_success() {
        return Ok(());
    }
    let after = resp
        .headers()
        .get(reqwest::header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| retry_after(v, Timestamp::now()));
    let location = resp
        .headers()
        .get(reqwest::header::LOCATION)
        .and_then(|v| v.to_str().ok())
        .map(|l| l.chars().take(200).collect::<String>());
    let said = excerpt(resp).await;
    let slack_gone =
        preset == Preset::Slack && ["channel_not_found", "no_service"].contains(&said.trim());
    let reason = refusal(status, &said);
    let reason = match location {
        Some(to) if status.is_redirection() => format!(
            "{reason}; redirected to {to}: webhooks follow no redirect, so write the new URL in the address if it moved"
        ),
        _ => reason,
    };
    match status.as_u16() {
        410 => Err(SendError::RecipientGone { reason }),
        404 if slack_gone => Err(SendError::RecipientGone { reason }),
        408 | 409 | 425 | 429 | 500..=599 => Err(SendError::Retry { after, reason }),
        // Standard Webhooks counts every other answer as a failure to retry on its schedule:
        // a receiver redeploying behind its gateway answers 404, 401 or a redirect to a
        // maintenance page for a while, and the event must still arrive. `max_attempts` and
        // `disable_after` bound a receiver that never recovers.
        _ if preset == Preset::Event => Err(SendError::Retry { after, reason }),
        // A chat tool's incoming webhook documents its other refusals as the payload's or the
        // hook's (Slack's `invalid_payload`, `action_prohibited`): sending again changes nothing.
        _ => Err(SendError::Reject { reason }),
    }
}

/// Whether a failed request was refused by the address checks, and why.
fn refused_by_guard(e: &reqwest::Error) -> Option<String> {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = source {
        if let Some(r) = err.downcast_ref::<Refused>() {
            return Some(r.0.clone());
        }
        source = err.source();
    }
    None
}

#[async_trait]
impl Channel for WebhookChannel {
    fn kind(&self) -> ChannelKind {
        ChannelKind::Webhook
    }

    async fn send(&self, msg: &Outgoing) -> Result<Receipt, SendError> {
        // The rules may have narrowed since the address was saved. The refusal quotes the
        // address, a chat tool's credential, which goes on to the delivery's error and the log.
        let address = WebhookAddress::parse(&msg.recipient, &self.rules).map_err(|reason| {
            let quoted: String = msg.recipient.trim().chars().take(200).collect();
            SendError::Reject {
                reason: reason.replace(&quoted, &masked_webhook(&msg.recipient)),
            }
        })?;
        let body = preset::shape(address.preset, &self.event(msg));
        let body = serde_json::to_vec(&body).map_err(|e| SendError::Reject {
            reason: format!("the event is not JSON: {e}"),
        })?;
        let secret = SigningSecret::derive(&self.key, &address);
        let id = message_id(&self.deployment_id, msg.delivery_id);
        let timestamp = Timestamp::now().as_second();
        let signature = secret.sign(&id, timestamp, &body);
        let sent = self
            .client
            .post(address.url.clone())
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .header("webhook-id", &id)
            .header("webhook-timestamp", timestamp.to_string())
            .header("webhook-signature", signature)
            .body(body)
            .send()
            .await;
        let outcome = match sent {
            Ok(resp) => classify(resp, address.preset).await,
            // A chat tool's URL is its credential: kept out of the error, logged and stored.
            Err(e) => {
                let e = e.without_url();
                match refused_by_guard(&e) {
                    Some(reason) => Err(SendError::Reject { reason }),
                    None => Err(SendError::Retry {
                        after: None,
                        reason: if e.is_timeout() {
                            "the receiver did not answer in time".to_owned()
                        } else if e.is_connect() {
                            format!("cannot connect to the receiver: {}", error_chain(&e))
                        } else {
                            format!("the request failed: {}", error_chain(&e))
                        },
                    }),
                }
            }
        };
        match outcome {
            Ok(()) => {
                self.health.succeeded(&msg.recipient);
                Ok(Receipt {
                    provider_id: Some(id),
                    provider: Some("webhook".into()),
                    segments: None,
                })
            }
            Err(e @ SendError::RecipientGone { .. }) => {
                self.health.succeeded(&msg.recipient);
                Err(e)
            }
            Err(e) => Err(self.failure(&msg.recipient, e)),
        }
    }
}

/// An error with its causes, for the delivery's error (reqwest's own says little).
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        out.push_str(": ");
        out.push_str(&s.to_string());
        source = s.source();
    }
    out
}

/// Webhooks in the registry: the event rendered once per update, language and audience.
pub struct Spec;

impl crate::settings::ChannelSection for Spec {
    fn kind(&self) -> ChannelKind {
        ChannelKind::Webhook
    }

    fn form(&self) -> crate::render::Form {
        crate::render::Form::Text
    }

    fn validate(
        &self,
        s: &crate::settings::Settings,
        _keys: &mut crate::settings::ChannelKeys,
        mut push: &mut dyn FnMut(&str, String),
    ) {
        settings::validate(s, &mut push);
    }

    fn subscribers(
        &self,
        _s: &crate::settings::Settings,
    ) -> Vec<crate::domain::subscriber::ValidSubscriber> {
        Vec::new()
    }
}

impl ChannelSpec for Spec {
    fn build(
        &self,
        v: &crate::settings::Validated,
        wiring: &Wiring<'_>,
    ) -> Result<Option<Built>, BuildError> {
        let w = &v.settings.channels.webhook;
        if !w.enabled {
            return Ok(None);
        }
        let channel = WebhookChannel::new(
            v.subscriber_rules.webhook.clone(),
            w.timeout.get(),
            w.disable_after.get(),
            wiring.key,
            wiring.deployment_id,
            wiring.alarms.clone(),
        )?;
        Ok(Some(Built {
            channel: Arc::new(channel),
            concurrency: w.concurrency as usize,
            rate: None,
            shared: None,
        }))
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use proptest::prelude::*;

    use super::*;
    use crate::domain::UpdateKind;
    use crate::domain::subscriber::Language;
    use crate::render::{MessageContext, Renderer, sample_context};

    fn renderer() -> Renderer {
        let it = Language::try_from("it".to_owned()).unwrap();
        let tz = jiff::tz::TimeZone::get("Europe/Rome").unwrap();
        Renderer::new(Path::new(""), &it, tz, &crate::channel::forms()).unwrap()
    }

    fn schema() -> jsonschema::Validator {
        let schema: Value = serde_json::from_str(include_str!(
            "../../../docs/src/channels/webhook-event.schema.json"
        ))
        .unwrap();
        jsonschema::options()
            .with_draft(jsonschema::Draft::Draft202012)
            .should_validate_formats(true)
            .build(&schema)
            .unwrap()
    }

    fn channel() -> WebhookChannel {
        let rules = WebhookRules::default();
        let second = Duration::from_secs(1);
        WebhookChannel::new(rules, second, second, b"k", "d", Alarms::default()).unwrap()
    }

    fn outgoing(text: String) -> Outgoing {
        Outgoing {
            delivery_id: 1,
            incident_id: 42,
            attempt: 1,
            recipient: "https://r.example/hook".into(),
            recipient_name: String::new(),
            language: "it".into(),
            subject: None,
            text,
            html: None,
            unsubscribe_url: String::new(),
            buttons: None,
            ack: None,
        }
    }

    /// The shipped templates write, in every language and for every kind of update, an event
    /// that the documented JSON Schema accepts.
    #[test]
    fn every_shipped_template_writes_an_event_the_schema_accepts() {
        let (renderer, schema) = (renderer(), schema());
        for lang in ["it", "en"] {
            for kind in [
                UpdateKind::Opened,
                UpdateKind::Updated,
                UpdateKind::Resolved,
            ] {
                for audience in ["cup-desk", "public"] {
                    let mut ctx = sample_context(kind);
                    ctx.audience = audience.into();
                    let text = renderer
                        .render_in(ChannelKind::Webhook, lang, &ctx)
                        .unwrap()
                        .text;
                    let event: Value = serde_json::from_str(&text).unwrap();
                    let errors: Vec<String> =
                        schema.iter_errors(&event).map(|e| e.to_string()).collect();
                    assert!(errors.is_empty(), "{lang} {kind:?}: {errors:?}\n{text}");
                    assert_eq!(event["type"], format!("incident.{}", kind.as_str()));
                    assert_eq!(event["data"]["language"], lang);
                    let link = event["data"]["links"]["incident"].as_str().unwrap();
                    assert_eq!(link.contains("/status/incidents/"), audience == "public");
                }
            }
        }
    }

    /// A body over `MAX_BODY` loses signals, counted, until it fits; a text that is not an
    /// event (an operator's template gone wrong) still goes, inside one.
    #[test]
    fn the_body_stays_within_its_bound_and_any_text_goes_as_an_event() {
        let renderer = renderer();
        let mut ctx: MessageContext = sample_context(UpdateKind::Opened);
        let signal = ctx.signals[0].clone();
        ctx.signals = vec![signal; 2_000];
        let text = renderer
            .render_in(ChannelKind::Webhook, "it", &ctx)
            .unwrap()
            .text;
        assert!(text.len() > MAX_BODY);
        let event = channel().event(&outgoing(text));
        assert!(serde_json::to_vec(&event).unwrap().len() <= MAX_BODY);
        let kept = event["data"]["signals"].as_array().unwrap().len();
        assert_eq!(
            kept as u64 + event["data"]["signals_omitted"].as_u64().unwrap(),
            2_000
        );

        let event = channel().event(&outgoing("Inc. 42: not JSON".into()));
        assert_eq!(event["type"], "incident.updated");
        assert_eq!(event["data"]["summary"], "Inc. 42: not JSON");
        assert_eq!(event["data"]["incident"]["id"], 42);
    }

    proptest! {
        /// Whatever monitors and operators write in an incident, its event is JSON that the
        /// schema accepts, and every preset makes a body of it.
        #[test]
        fn any_incident_text_makes_a_valid_event(
            title in crate::hostile::text(),
            summary in crate::hostile::text(),
            body in crate::hostile::text(),
            service in crate::hostile::text(),
        ) {
            let (renderer, schema) = (renderer(), schema());
            let mut ctx = sample_context(UpdateKind::Updated);
            ctx.incident.title = title.clone();
            ctx.incident.services = vec![service];
            ctx.signals[0].summary = summary.clone();
            ctx.update.body = Some(body);
            let text = renderer.render_in(ChannelKind::Webhook, "en", &ctx).unwrap().text;
            let event: Value = serde_json::from_str(&text).unwrap();
            prop_assert!(schema.is_valid(&event), "{}", text);
            prop_assert_eq!(event["data"]["incident"]["title"].as_str(), Some(title.as_str()));
            prop_assert_eq!(event["data"]["signals"][0]["summary"].as_str(), Some(summary.as_str()));
            for preset in [Preset::Slack, Preset::Mattermost, Preset::Teams] {
                prop_assert!(serde_json::to_vec(&preset::shape(preset, &event)).is_ok());
            }
        }
    }

    /// An address the rules refuse at send time (`allow_http` turned off since it was saved)
    /// is given up on with a reason that does not quote the chat tool's URL.
    #[tokio::test]
    async fn a_refused_address_is_not_quoted_in_the_error() {
        let mut msg = outgoing("{}".into());
        msg.recipient = "slack+http://hooks.example/services/T0/B0/SEGRETO".into();
        match channel().send(&msg).await {
            Err(SendError::Reject { reason }) => {
                assert!(!reason.contains("SEGRETO"), "{reason}");
                assert!(reason.contains("http://hooks.example/••••••••"), "{reason}");
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn retry_after_reads_seconds_and_http_dates() {
        let now: Timestamp = "2026-12-05T10:00:00Z".parse().unwrap();
        assert_eq!(retry_after(" 17 ", now), Some(Duration::from_secs(17)));
        assert_eq!(
            retry_after("Sat, 05 Dec 2026 10:01:30 GMT", now),
            Some(Duration::from_secs(90))
        );
        assert_eq!(
            retry_after("Sat, 05 Dec 2026 09:00:00 GMT", now),
            Some(Duration::ZERO)
        );
        assert_eq!(retry_after("soon", now), None);
    }

    #[test]
    fn a_receiver_is_disabled_only_after_failing_for_the_whole_window() {
        let health = Health::default();
        let t0: Timestamp = "2026-12-01T00:00:00Z".parse().unwrap();
        let window = Duration::from_secs(5 * 86_400);
        let hours = |h: i64| t0 + jiff::SignedDuration::from_hours(h);
        for h in (0..=108).step_by(12) {
            assert_eq!(health.failed("a", hours(h), window), None, "a at {h}");
            assert_eq!(health.failed("b", hours(h), window), None, "b at {h}");
        }
        assert_eq!(health.failed("a", hours(120), window), Some(t0));
        // A success starts the count again.
        health.succeeded("b");
        for h in (120..=228).step_by(12) {
            assert_eq!(health.failed("b", hours(h), window), None, "b at {h}");
        }
        assert_eq!(health.failed("b", hours(240), window), Some(hours(120)));
    }

    /// Two failures days apart, with nothing sent between them (no incident), are not an
    /// outage of days: the count starts again after a day without a failure.
    #[test]
    fn failures_days_apart_do_not_disable_a_receiver() {
        let health = Health::default();
        let t0: Timestamp = "2026-12-01T00:00:00Z".parse().unwrap();
        let window = Duration::from_secs(5 * 86_400);
        let day = jiff::SignedDuration::from_hours(24);
        assert_eq!(health.failed("a", t0, window), None);
        assert_eq!(health.failed("a", t0 + day * 6, window), None);
        assert_eq!(health.failed("a", t0 + day * 7, window), None);
        assert_eq!(health.failed("a", t0 + day * 11, window), None);
    }
}
