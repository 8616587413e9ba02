//! Voice calls: a desk's phone rings and hears the incident's short text, then "press 1 to
//! confirm"; the key pressed comes back to Banditore as the desk's acknowledgement. Calls go
//! through Twilio (TwiML) or Vonage (NCCO), tried in priority order with the failover SMS uses
//! (`channel::failover`): one that throttles or keeps failing is put aside and the next places
//! the call, each paced by its own calls per second, shared by every replica.
//!
//! A call placed is a delivery sent. Whether anyone answered — a person, an answering machine,
//! nobody, a busy line — comes later in the provider's callbacks and is recorded on the
//! delivery as its report; the outbox never calls again because a call went unanswered. Only a
//! call that could not be placed (no answer from the provider, 5xx, 429) is retried by the
//! outbox. Calling again a desk that has not confirmed is the escalation policy's decision.

pub mod links;
pub mod settings;
pub mod twilio;
pub mod vonage;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;

use self::links::{CallLinks, CallRef};
use self::settings::{VoiceProviderKeys, VoiceProviderKind, VoiceSettings};
use super::failover::{Member, Roster};
use super::sms::GatewayError;
use super::{Channel, Outgoing, Receipt, SendError};
use crate::channel::rate::RateLimiter;
use crate::domain::subscriber::ChannelKind;
use crate::store::Store;

/// Twilio's limit on inline TwiML, in characters.
pub const MAX_TWIML: usize = 4_000;

/// The longest text said in a call, in characters: a call is for a sentence or two.
pub const MAX_SPOKEN: usize = 600;

/// One call to place.
pub struct Call<'a> {
    /// E.164, with `+`.
    pub to: &'a str,
    /// What is said, already cleaned (see [`spoken`]).
    pub text: &'a str,
    /// The template's language (`it`, `en`), which picks the voice and the words around it.
    pub language: &'a str,
    pub status_url: &'a str,
    /// Where the key pressed (or none) goes, after the first and after the second time.
    pub key_urls: &'a [String; 2],
    pub ring_for: Duration,
    pub wait_for_key: Duration,
}

/// A provider that places calls; `Ok` is its id for the call (Twilio's `CallSid`, Vonage's
/// `uuid`), which its callbacks name.
#[async_trait]
pub trait Caller: Send + Sync {
    async fn call(&self, call: &Call<'_>) -> Result<String, GatewayError>;
}

/// The words said around the incident's text, in the call's language.
pub struct Words {
    /// The voice's language tag, for Twilio's `<Say language>` and Vonage's `talk`.
    pub locale: &'static str,
    /// Twilio's `<Say voice>` for that language. Without one Twilio uses the account's default
    /// voice (`man` on a new account, which speaks only en, en-gb, es, fr and de), and a voice
    /// that does not speak the language may fail the `<Say>`: the desk would hear nothing.
    pub twilio_voice: &'static str,
    pub press: &'static str,
    pub thanks: &'static str,
    pub goodbye: &'static str,
}

/// The words for a template language; English for any other than Italian.
pub fn words(language: &str) -> Words {
    if language.starts_with("it") {
        Words {
            locale: "it-IT",
            twilio_voice: "Polly.Bianca",
            press: "Premi 1 per confermare di aver ricevuto il messaggio.",
            thanks: "Grazie, la conferma è registrata. Arrivederci.",
            goodbye: "Nessuna conferma ricevuta. Arrivederci.",
        }
    } else {
        Words {
            locale: "en-GB",
            twilio_voice: "Polly.Amy",
            press: "Press 1 to confirm you have received this message.",
            thanks: "Thank you, your confirmation is recorded. Goodbye.",
            goodbye: "No confirmation received. Goodbye.",
        }
    }
}

/// Text fit to be said: control characters left out, every run of white space one space, at
/// most [`MAX_SPOKEN`] characters (cut after a word where there is one).
pub fn spoken(text: &str) -> String {
    let words: Vec<&str> = text
        .split(|c: char| c.is_whitespace() || c.is_control())
        .filter(|w| !w.is_empty())
        .collect();
    let mut out = String::new();
    for word in words {
        let word: String = word
            .chars()
            .filter(|c| !c.is_control() && *c != '\u{FFFE}' && *c != '\u{FFFF}')
            .collect();
        if word.is_empty() {
            continue;
        }
        let len = out.chars().count();
        let room = MAX_SPOKEN.saturating_sub(len + usize::from(len > 0));
        if word.chars().count() > room {
            if len == 0 {
                out = word.chars().take(MAX_SPOKEN).collect();
            }
            break;
        }
        if len > 0 {
            out.push(' ');
        }
        out.push_str(&word);
    }
    out
}

struct Phone {
    caller: Box<dyn Caller>,
}

pub struct VoiceChannel {
    providers: Roster<Phone>,
    links: Arc<CallLinks>,
    ring_for: Duration,
    wait_for_key: Duration,
}

fn voice_channel(
    settings: &VoiceSettings,
    providers: &[VoiceProviderKeys],
    store: Arc<dyn Store>,
    links: Arc<CallLinks>,
) -> Result<VoiceChannel, String> {
    let http = reqwest::Client::builder()
        .timeout(settings.timeout.get())
        .connect_timeout(settings.timeout.get().min(Duration::from_secs(5)))
        .tcp_nodelay(true)
        .pool_idle_timeout(Duration::from_secs(50))
        .user_agent(concat!("banditore/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(|e| format!("channels.voice: cannot build the HTTP client: {e}"))?;
    let mut members = Vec::new();
    for keys in providers {
        let p = &keys.settings;
        let caller: Box<dyn Caller> = match p.kind {
            VoiceProviderKind::Twilio => Box::new(twilio::Twilio::new(
                &p.name,
                &keys.base_url,
                &p.username,
                keys.password.clone(),
                &p.caller,
                http.clone(),
            )),
            VoiceProviderKind::Vonage => Box::new(vonage::Vonage::new(
                &p.name,
                &keys.base_url,
                &p.username,
                settings::signing_key(keys.password.expose())
                    .map_err(|e| format!("channels.voice.providers `{}`: {e}", p.name))?,
                &p.caller,
                http.clone(),
            )),
        };
        let limiter = RateLimiter::new(
            store.clone(),
            format!("voice:{}", p.name),
            p.calls_per_second(),
            1,
        );
        members.push(Member::new(p.name.clone(), Phone { caller }, Some(limiter)));
    }
    Ok(VoiceChannel {
        providers: Roster::new(
            ChannelKind::Voice,
            members,
            settings.put_aside_after,
            settings.put_aside_for.get(),
        ),
        links,
        ring_for: settings.ring_for.get(),
        wait_for_key: settings.wait_for_key.get(),
    })
}

#[async_trait]
impl Channel for VoiceChannel {
    fn kind(&self) -> ChannelKind {
        ChannelKind::Voice
    }

    async fn send(&self, msg: &Outgoing) -> Result<Receipt, SendError> {
        let text = spoken(&msg.text);
        let mut throttled: Vec<Option<Duration>> = Vec::new();
        let mut unavailable = false;
        let mut refused_credentials = 0;
        let mut reasons = Vec::new();
        for (provider, _slot) in self.providers.order(&[]).await {
            if let Some(limiter) = &provider.limiter {
                limiter.acquire().await;
            }
            let name = provider.name.as_str();
            let call_ref = CallRef {
                provider: name,
                incident: msg.incident_id,
                delivery: msg.delivery_id,
            };
            let status_url = self.links.status_url(call_ref);
            // A 1 pressed brings back the desk's acknowledgement token.
            let ack = msg.ack.as_ref().map(|a| a.token.as_str());
            let key_urls = [
                self.links.key_url(call_ref, &msg.language, 1, ack),
                self.links.key_url(call_ref, &msg.language, 2, ack),
            ];
            let call = Call {
                to: &msg.recipient,
                text: &text,
                language: &msg.language,
                status_url: &status_url,
                key_urls: &key_urls,
                ring_for: self.ring_for,
                wait_for_key: self.wait_for_key,
            };
            match provider.inner.caller.call(&call).await {
                Ok(id) => {
                    self.providers.succeeded(provider);
                    metrics::counter!("banditore_voice_calls_total", "provider" => name.to_owned())
                        .increment(1);
                    if !reasons.is_empty() {
                        tracing::info!(provider = name, delivery = msg.delivery_id, earlier = %reasons.join("; "), "call placed by a later provider");
                    }
                    return Ok(Receipt {
                        provider_id: Some(id),
                        provider: Some(name.to_owned()),
                        segments: None,
                    });
                }
                Err(e) => {
                    let (kind, reason) = match e {
                        GatewayError::NumberGone(reason) => {
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
                            tracing::error!(provider = name, %reason, "call provider refuses its credentials: check channels.voice.providers");
                            ("credentials", reason)
                        }
                        GatewayError::Refused(reason) | GatewayError::Partial(reason) => {
                            ("refused", reason)
                        }
                    };
                    metrics::counter!("banditore_voice_provider_errors_total", "provider" => name.to_owned(), "kind" => kind)
                        .increment(1);
                    tracing::warn!(provider = name, delivery = msg.delivery_id, kind, %reason, "call provider did not place the call");
                    reasons.push(format!("{name} {kind}: {reason}"));
                }
            }
        }
        let reason = reasons.join("; ");
        if refused_credentials > 0
            && refused_credentials == reasons.len()
            && reasons.len() == self.providers.members().len()
        {
            return Err(SendError::Credentials { reason });
        }
        if !throttled.is_empty() && !unavailable && throttled.len() == reasons.len() {
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
        Err(SendError::Reject { reason })
    }
}

/// Voice calls in the registry: the template's short text, said by the provider's voice.
pub struct Spec;

impl crate::settings::ChannelSection for Spec {
    fn kind(&self) -> ChannelKind {
        ChannelKind::Voice
    }

    fn form(&self) -> crate::render::Form {
        crate::render::Form::Text
    }

    fn validate(
        &self,
        s: &crate::settings::Settings,
        keys: &mut crate::settings::ChannelKeys,
        mut push: &mut dyn FnMut(&str, String),
    ) {
        let providers = settings::validate_voice(s, &mut push);
        keys.insert(ChannelKind::Voice, providers);
    }
}

impl super::ChannelSpec for Spec {
    fn build(
        &self,
        v: &crate::settings::Validated,
        wiring: &super::Wiring<'_>,
    ) -> Result<Option<super::Built>, super::BuildError> {
        let s = &v.settings.channels.voice;
        if !s.enabled {
            return Ok(None);
        }
        let providers: &[VoiceProviderKeys] = v
            .channels
            .get::<Vec<VoiceProviderKeys>>(ChannelKind::Voice)
            .map_or(&[], Vec::as_slice);
        let links = Arc::new(CallLinks::new(
            wiring.key,
            &v.settings.server.public_url,
            providers,
            s.wait_for_key.get(),
        ));
        let channel = voice_channel(s, providers, wiring.store.clone(), links.clone())
            .map_err(super::BuildError)?;
        Ok(Some(super::Built {
            channel: Arc::new(channel),
            concurrency: s.concurrency as usize,
            // Each provider paces itself (its calls per second), shared by every replica.
            rate: None,
            shared: Some(links),
        }))
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn spoken_text_is_one_line_of_words_within_its_length() {
        assert_eq!(spoken("  Guasto\n\nal CUP\t\u{7}ora "), "Guasto al CUP ora");
        let long = "parola ".repeat(200);
        let said = spoken(&long);
        assert!(said.chars().count() <= MAX_SPOKEN);
        assert!(said.ends_with("parola"));
        assert_eq!(spoken(&"x".repeat(900)).chars().count(), MAX_SPOKEN);
    }

    proptest! {
        #[test]
        fn spoken_text_never_holds_control_characters(text in crate::hostile::text()) {
            let said = spoken(&text);
            prop_assert!(said.chars().count() <= MAX_SPOKEN);
            prop_assert!(!said.chars().any(char::is_control));
            prop_assert!(!said.contains("  "));
        }
    }
}
