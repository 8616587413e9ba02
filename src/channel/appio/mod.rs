//! App IO, where Italian citizens receive messages from public administrations, through PagoPA's
//! API for services (io-functions-services' OpenAPI, `https://api.io.pagopa.it/api/v1`).
//!
//! A recipient is a codice fiscale, stored sealed under the deployment's key
//! (`domain::fiscal_code`); the channel opens it only to put it in the requests. Sending follows
//! PagoPA's three steps: `POST /profiles` with the code, and when the citizen is not on IO (`404`
//! "Profile not found") or has turned the service off (`sender_allowed: false`) the delivery
//! fails with that reason and is not tried again (the address is kept: the citizen may turn the
//! service on later); then `POST /messages` with the subject and the Markdown body fitted to App
//! IO's lengths (`render::appio`), whose `201` makes the delivery sent, named by its body or its
//! `Location` (or not at all); then, in the background, `GET /messages/{fiscal_code}/{id}` reads
//! its status back (ACCEPTED, THROTTLED, then PROCESSED, FAILED or REJECTED), recorded where SMS
//! delivery reports are.
//!
//! Every request carries the service's key in `Ocp-Apim-Subscription-Key` and takes a token
//! from the deployment's shared bucket (`channels.appio.rate_per_second`); no redirect is
//! followed. PagoPA's guide asks clients to slow down on `429`: the send is deferred without
//! counting an attempt, after `Retry-After` (at most five minutes) or a second. What pauses the
//! channel is PagoPA's refusal of the key: `401`, a `403` other than "Recipient forbidden", and
//! the gateway's own `404` for a path it does not know (a wrong `base_url`) or a redirect. A
//! `403` "Recipient forbidden" (a sandbox key's non-authorised recipient) and a `400` fail that
//! message, naming PagoPA's problem without the values it quotes; `5xx` and no answer are tried
//! again. The API takes no idempotency key: a message whose `201` was lost is sent again, and the
//! citizen may read it twice.
//!
//! The status reader runs on every replica beside the dispatcher, a batch at a time through the
//! same bucket, giving way while the replica sends, each message every `status_every` (a read
//! that fails counts as asked) until its status is final or `status_for` has passed since it
//! was sent; a replica's duplicate reads only rewrite the same status.

pub mod settings;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use jiff::{SignedDuration, Timestamp};
use serde::Deserialize;
use serde_json::json;

use self::settings::AppIoSettings;
use crate::channel::rate::RateLimiter;
use crate::channel::{Channel, Outgoing, Receipt, SendError};
use crate::domain::fiscal_code::FiscalCode;
use crate::domain::subscriber::ChannelKind;
use crate::render::appio::{fit_markdown, fit_subject};
use crate::settings::Secret;
use crate::store::{DeliveryReport, OutboxStore, Unsettled};

const KIND: ChannelKind = ChannelKind::AppIo;
/// The provider's name on deliveries, which delivery reports are matched by.
pub const PROVIDER: &str = "appio";
/// The reason a delivery fails when the citizen cannot be written to.
pub const NOT_ALLOWED: &str =
    "not on App IO or has turned this service off (PagoPA's profile check); not tried again";
/// The wait after a `429` without `Retry-After`.
const THROTTLE_WAIT: Duration = Duration::from_secs(1);
/// The longest `Retry-After` obeyed: a longer one is read as this.
const RETRY_AFTER_CAP: Duration = Duration::from_secs(300);
/// Messages whose status is read in one round.
const STATUS_BATCH: u32 = 50;

/// What every request needs: the client, the API, the key and the shared pace.
struct Api {
    http: reqwest::Client,
    base: String,
    key: Secret,
    limiter: Arc<RateLimiter>,
    /// Sends under way on this replica: the status reader gives way to them.
    sending: AtomicUsize,
}

/// Counts a send as under way while it lives.
struct Sending<'a>(&'a AtomicUsize);

impl<'a> Sending<'a> {
    fn start(count: &'a AtomicUsize) -> Sending<'a> {
        count.fetch_add(1, Ordering::SeqCst);
        Sending(count)
    }
}

impl Drop for Sending<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

/// An answer read whole.
struct Answer {
    status: u16,
    retry_after: Option<Duration>,
    /// The created message's URL, which a `201` carries (`Location`).
    location: Option<String>,
    body: String,
}

/// PagoPA's error body (RFC 7807), as its functions answer; the API gateway in front of them
/// (Azure API Management) answers `{"statusCode", "message"}` instead.
#[derive(Deserialize, Default)]
struct ProblemJson {
    #[serde(default)]
    title: String,
    #[serde(default)]
    detail: String,
}

/// The title of `ResponseErrorNotFound("Profile not found", …)` in io-functions-services'
/// `utils/profile.ts`: the citizen is not on IO (or has turned IO's inbox off).
const PROFILE_NOT_FOUND: &str = "Profile not found";
/// The title of `ResponseErrorForbiddenNotAuthorizedForRecipient` (`@pagopa/ts-commons`), which
/// `canWriteMessage` and the check of an incomplete service answer: this service may not write
/// to this citizen (a sandbox key writes only to its authorised recipients), the key is fine.
const RECIPIENT_FORBIDDEN: &str = "Recipient forbidden";

#[derive(Deserialize)]
struct LimitedProfile {
    sender_allowed: bool,
}

#[derive(Deserialize)]
struct CreatedMessage {
    id: String,
}

#[derive(Deserialize)]
struct MessageStatus {
    #[serde(default)]
    status: Option<String>,
}

impl Api {
    /// One request, paced; `None` when it got no answer (the reason names no fiscal code:
    /// reqwest's error is stripped of the URL, which may hold one).
    async fn call(&self, request: reqwest::RequestBuilder) -> Result<Answer, String> {
        self.limiter.acquire().await;
        let resp = request
            .header("Ocp-Apim-Subscription-Key", self.key.expose())
            .send()
            .await
            .map_err(|e| {
                let what = if e.is_timeout() {
                    "no answer in time"
                } else {
                    "unreachable"
                };
                format!("App IO {what}: {}", e.without_url())
            })?;
        let status = resp.status().as_u16();
        let header = |name| {
            resp.headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned)
        };
        let retry_after = header(reqwest::header::RETRY_AFTER)
            .and_then(|v| crate::channel::webhook::retry_after(&v, Timestamp::now()))
            .map(|wait| wait.min(RETRY_AFTER_CAP));
        let location = header(reqwest::header::LOCATION);
        let body = resp.text().await.unwrap_or_default();
        Ok(Answer {
            status,
            retry_after,
            location,
            body,
        })
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }
}

impl Answer {
    /// PagoPA's ProblemJson, when the body is one (a title, or a detail).
    fn problem_json(&self) -> Option<ProblemJson> {
        serde_json::from_str::<ProblemJson>(&self.body)
            .ok()
            .filter(|p| !p.detail.is_empty() || !p.title.is_empty())
    }

    /// Whether the answer is PagoPA's ProblemJson with this title.
    fn titled(&self, title: &str) -> bool {
        self.problem_json().is_some_and(|p| p.title == title)
    }

    /// PagoPA's problem, in its words, or the start of the body; without the values PagoPA's
    /// validation quotes (`value ["…"] at [root.0.fiscal_code]`), which may be a fiscal code.
    fn problem(&self) -> String {
        let said = match self.problem_json() {
            Some(p) => [p.title, p.detail]
                .into_iter()
                .filter(|s| !s.is_empty())
                .collect::<Vec<_>>()
                .join(": "),
            None => self.body.chars().take(200).collect(),
        };
        strip_values(&said)
            .chars()
            .filter(|c| !c.is_control())
            .collect()
    }

    /// What an answer that is neither a success nor the step's own refusal means for the send.
    fn failure(&self, step: &str) -> SendError {
        let reason = format!(
            "App IO answered {} to {step}: {}",
            self.status,
            self.problem()
        );
        match self.status {
            429 => SendError::Throttled {
                after: self.retry_after.unwrap_or(THROTTLE_WAIT),
            },
            403 if self.titled(RECIPIENT_FORBIDDEN) => SendError::Reject {
                reason: format!(
                    "{reason} (PagoPA lets this service write only to its authorised recipients: a sandbox key, or a service whose details are not complete)"
                ),
            },
            // Azure API Management's 401 (no or a wrong key), the functions' other 403s (no
            // scope, not allowed in production, no user): the key's, not the citizen's.
            401 | 403 => SendError::Credentials {
                reason: format!(
                    "{reason} (check channels.appio.api_key and the service's subscription)"
                ),
            },
            // Not PagoPA's ProblemJson: the gateway knows no such operation, a wrong
            // `base_url` (PagoPA's guide: `{"statusCode": 404, "message": "Resource not found"}`).
            404 if self.problem_json().is_none() => SendError::Credentials {
                reason: format!(
                    "{reason} (no such operation at this address: check channels.appio.base_url)"
                ),
            },
            400 | 404 | 413 | 422 => SendError::Reject { reason },
            // No redirect is followed (it would carry the key and the code elsewhere).
            300..=399 => SendError::Credentials {
                reason: format!(
                    "{reason} (a redirect, not followed: write the API's own address in channels.appio.base_url)"
                ),
            },
            _ => SendError::Retry {
                after: self.retry_after,
                reason,
            },
        }
    }
}

/// The client: no redirect followed, since one would carry the key and the fiscal code to
/// another address.
fn http_client(timeout: Duration) -> Result<reqwest::Client, String> {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(timeout)
        .connect_timeout(timeout.min(Duration::from_secs(5)))
        .pool_idle_timeout(Duration::from_secs(50))
        .user_agent(concat!("banditore/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(|e| format!("channels.{KIND}: cannot build the HTTP client: {e}"))
}

pub struct AppIoChannel {
    api: Arc<Api>,
    /// The deployment's key, which opens the recipients.
    seal: Vec<u8>,
    /// The status reader, stopped when the channel goes.
    reader: Option<tokio::task::JoinHandle<()>>,
}

impl Drop for AppIoChannel {
    fn drop(&mut self) {
        if let Some(reader) = &self.reader {
            reader.abort();
        }
    }
}

impl AppIoChannel {
    /// The channel; with `store`, its status reader is started (within a Tokio runtime).
    pub fn new(
        settings: &AppIoSettings,
        key: Secret,
        seal: &[u8],
        store: Arc<dyn OutboxStore>,
    ) -> Result<AppIoChannel, String> {
        let api = Arc::new(Api {
            http: http_client(settings.timeout.get())?,
            base: settings.base_url.trim_end_matches('/').to_owned(),
            key,
            limiter: Arc::new(RateLimiter::new(
                store.clone(),
                KIND.as_str(),
                settings.rate_per_second,
                settings.burst,
            )),
            sending: AtomicUsize::new(0),
        });
        let reader = (!settings.status_for.get().is_zero()).then(|| {
            tokio::spawn(read_statuses(StatusReader {
                api: api.clone(),
                store,
                seal: seal.to_vec(),
                every: settings.status_every.get(),
                window: settings.status_for.get(),
            }))
        });
        Ok(AppIoChannel {
            api,
            seal: seal.to_vec(),
            reader,
        })
    }

    fn open(&self, recipient: &str) -> Result<FiscalCode, SendError> {
        FiscalCode::unseal(recipient, &self.seal).ok_or_else(|| SendError::Reject {
            reason: "the recipient is not a codice fiscale sealed under this deployment's key (was server.secret_key changed?)".into(),
        })
    }
}

#[async_trait]
impl Channel for AppIoChannel {
    fn kind(&self) -> ChannelKind {
        KIND
    }

    /// The markdown's per-recipient parts (an affected person's appointment) are escaped as
    /// Markdown words.
    fn body_markup(&self) -> crate::render::Markup {
        crate::render::Markup::Markdown
    }

    async fn send(&self, msg: &Outgoing) -> Result<Receipt, SendError> {
        let code = self.open(&msg.recipient)?;
        let api = &self.api;
        let _sending = Sending::start(&api.sending);
        let retry = |reason: String| SendError::Retry {
            after: None,
            reason,
        };
        let profile = api
            .call(
                api.http
                    .post(api.url("/profiles"))
                    .json(&json!({"fiscal_code": code.as_str()})),
            )
            .await
            .map_err(retry)?;
        match profile.status {
            200 => {
                let allowed =
                    serde_json::from_str::<LimitedProfile>(&profile.body).map_err(|e| {
                        retry(format!(
                            "App IO answered the profile check with no sender_allowed ({e})"
                        ))
                    })?;
                if !allowed.sender_allowed {
                    return Err(SendError::Declined {
                        reason: NOT_ALLOWED.into(),
                    });
                }
            }
            404 if profile.titled(PROFILE_NOT_FOUND) => {
                return Err(SendError::Declined {
                    reason: NOT_ALLOWED.into(),
                });
            }
            _ => return Err(profile.failure("the profile check")),
        }
        let subject = fit_subject(msg.subject.as_deref().unwrap_or_default(), &msg.language);
        let markdown = fit_markdown(&msg.text, &msg.language);
        let body = json!({
            "fiscal_code": code.as_str(),
            "content": {"subject": subject, "markdown": markdown},
        });
        let sent = api
            .call(api.http.post(api.url("/messages")).json(&body))
            .await
            .map_err(retry)?;
        if sent.status != 201 {
            return Err(sent.failure("the message"));
        }
        // Taken: whatever the body says, sending again would write to the citizen twice.
        let id = serde_json::from_str::<CreatedMessage>(&sent.body)
            .ok()
            .map(|created| created.id)
            .or_else(|| sent.location.as_deref().and_then(id_in_location))
            .filter(|id| !id.is_empty());
        if id.is_none() {
            tracing::warn!(
                "App IO took a message (201) without naming it: its status cannot be read back"
            );
        }
        Ok(Receipt {
            provider_id: id,
            provider: Some(PROVIDER.into()),
            segments: None,
        })
    }
}

/// What the status reader holds.
struct StatusReader {
    api: Arc<Api>,
    store: Arc<dyn OutboxStore>,
    seal: Vec<u8>,
    every: Duration,
    window: Duration,
}

/// Reads back, round after round, the status of the messages sent within `window` whose status
/// is not final, each at most every `every`. A full batch is followed at once by the next (the
/// shared bucket paces them); otherwise the reader looks again after `every`, or 5 s at most.
async fn read_statuses(reader: StatusReader) {
    let pause = reader.every.min(Duration::from_secs(5));
    let mut wait = pause;
    loop {
        tokio::time::sleep(wait).await;
        wait = pause;
        let now = Timestamp::now();
        let since = now - SignedDuration::try_from(reader.window).unwrap_or(SignedDuration::MAX);
        let asked_before = now - SignedDuration::try_from(reader.every).unwrap_or_default();
        let due = match reader
            .store
            .unsettled(PROVIDER, since, asked_before, STATUS_BATCH)
            .await
        {
            Ok(due) => due,
            Err(e) => {
                tracing::warn!(error = %e, "App IO: cannot list the messages to read back");
                continue;
            }
        };
        let full = due.len() == STATUS_BATCH as usize;
        let mut recorded = 0;
        for sent in due {
            // Sends first: an incident's news is not slowed by reading old statuses back.
            if reader.api.sending.load(Ordering::SeqCst) > 0 {
                break;
            }
            match reader.read_one(&sent).await {
                Ok(true) => recorded += 1,
                Ok(false) => {}
                Err(slow_down) => {
                    wait = slow_down;
                    break;
                }
            }
        }
        // Only a batch wholly read and recorded (each moved to the back) is followed at once.
        if full && recorded == STATUS_BATCH {
            wait = Duration::ZERO;
        }
    }
}

impl StatusReader {
    /// Moves a message whose status could not be read to the back of the queue, so that the
    /// ones whose reads keep failing do not hold the others back; whether it was moved.
    async fn asked(&self, sent: &Unsettled) -> bool {
        match self
            .store
            .report_asked(PROVIDER, &sent.provider_id, Timestamp::now())
            .await
        {
            Ok(moved) => moved,
            Err(e) => {
                tracing::warn!(error = %e, delivery = sent.id, "App IO: cannot note a status read");
                false
            }
        }
    }

    /// Reads and records one message's status: whether it moved to the back of the queue (its
    /// status recorded, or the failed read noted), or `Err(wait)` when App IO asks to slow down
    /// or refuses the key, which ends the round.
    async fn read_one(&self, sent: &Unsettled) -> Result<bool, Duration> {
        // A code sealed under another key cannot be asked about.
        let Some(code) = FiscalCode::unseal(&sent.recipient, &self.seal) else {
            return Ok(false);
        };
        let api = &self.api;
        let path = format!(
            "/messages/{}/{}",
            code.as_str(),
            crate::channel::x::percent_encode(&sent.provider_id)
        );
        let answer = match api.call(api.http.get(api.url(&path))).await {
            Ok(answer) => answer,
            Err(reason) => {
                tracing::debug!(delivery = sent.id, %reason, "App IO: status not read");
                return Ok(self.asked(sent).await);
            }
        };
        let (status, error) = match answer.status {
            200 => match serde_json::from_str::<MessageStatus>(&answer.body) {
                Ok(MessageStatus {
                    status: Some(status),
                }) => {
                    let word = status.to_ascii_lowercase();
                    let error = match word.as_str() {
                        "rejected" => Some(
                            "App IO rejected the message: the citizen does not exist or has blocked the service".to_owned(),
                        ),
                        "failed" => Some("App IO could not process the message".to_owned()),
                        _ => None,
                    };
                    (word, error)
                }
                // Not processed yet: no status to write.
                Ok(MessageStatus { status: None }) => ("accepted".to_owned(), None),
                Err(_) => return Ok(self.asked(sent).await),
            },
            404 => (
                "unknown".to_owned(),
                Some("App IO knows no message with this id yet".to_owned()),
            ),
            429 => return Err(answer.retry_after.unwrap_or(THROTTLE_WAIT)),
            401 | 403 => {
                tracing::warn!(
                    status = answer.status,
                    "App IO refused the key while reading a status back; the channel's sends will say more"
                );
                return Err(self.every);
            }
            _ => return Ok(self.asked(sent).await),
        };
        let report = DeliveryReport {
            provider: PROVIDER.into(),
            provider_id: sent.provider_id.clone(),
            status,
            error,
            at: Timestamp::now(),
        };
        match self.store.record_report(&report).await {
            Ok(found) => Ok(found),
            Err(e) => {
                tracing::warn!(error = %e, delivery = sent.id, "App IO: cannot record a status");
                Ok(false)
            }
        }
    }
}

/// The message id that ends a `Location` (`/api/v1/messages/{fiscal_code}/{id}`), unless it
/// holds something other than a ULID's letters and digits.
fn id_in_location(location: &str) -> Option<String> {
    let path = location.split(['?', '#']).next().unwrap_or_default();
    let last = path.trim_end_matches('/').rsplit('/').next()?;
    (!last.is_empty() && last.len() <= 64 && last.bytes().all(|b| b.is_ascii_alphanumeric()))
        .then(|| last.to_owned())
}

/// `text` without the values between `value [` and `] at [` that io-ts' reports quote.
fn strip_values(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(start) = rest.find("value [") {
        let Some(end) = rest[start..].find("] at [") else {
            break;
        };
        out.push_str(&rest[..start]);
        out.push_str("value at [");
        rest = &rest[start + end + "] at [".len()..];
    }
    out.push_str(rest);
    out
}

/// App IO in the registry: citizens' messages, public statements only.
pub struct Spec;

impl crate::settings::ChannelSection for Spec {
    fn kind(&self) -> ChannelKind {
        KIND
    }

    fn form(&self) -> crate::render::Form {
        crate::render::Form::AppIo
    }

    fn validate(
        &self,
        s: &crate::settings::Settings,
        keys: &mut crate::settings::ChannelKeys,
        mut push: &mut dyn FnMut(&str, String),
    ) {
        if let Some(k) = settings::validate(s, &mut push) {
            keys.insert(KIND, k);
        }
    }
}

impl crate::channel::ChannelSpec for Spec {
    fn build(
        &self,
        v: &crate::settings::Validated,
        wiring: &crate::channel::Wiring<'_>,
    ) -> Result<Option<crate::channel::Built>, crate::channel::BuildError> {
        let c = &v.settings.channels.appio;
        let (true, Some(key)) = (c.enabled, v.channels.get::<Secret>(KIND)) else {
            return Ok(None);
        };
        let channel = AppIoChannel::new(c, key.clone(), wiring.key, wiring.store.clone())
            .map_err(crate::channel::BuildError)?;
        Ok(Some(crate::channel::Built {
            channel: Arc::new(channel),
            concurrency: c.concurrency as usize,
            // The channel paces every request itself: a message costs two.
            rate: None,
            shared: None,
        }))
    }
}
