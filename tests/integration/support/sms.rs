//! A local stand-in for three SMS gateways at once, on one loopback port:
//! - Twilio `POST /2010-04-01/Accounts/{Sid}/Messages.json` (form, Basic auth) → 201 Message JSON;
//! - Vonage `POST /sms/json` (form; api_key/api_secret or Basic) → always HTTP 200, per-message
//!   `status`, every value a string;
//! - Skebby / Aruba / Esendex-IT under `/API/v1.0/REST/`: `login` → `USER_KEY;SESSION_KEY`,
//!   `token` → `USER_KEY;ACCESS_TOKEN`, `POST sms` (JSON, `user_key` + `Session_key` or
//!   `Access_token` headers) → 201.
//!
//! Codes, bodies and error texts are the providers' documented ones. The
//! double counts GSM-7/UCS-2 segments itself, enforces Vonage's 30 requests a sliding second,
//! queues Twilio's messages at the sender's segments a second and refuses them once the queue is
//! longer than its limit (21611, as Twilio's error pages describe: Twilio queues what goes over
//! a sender's rate, it does not answer 429 for it), can be scripted to fail or throttle, refuses
//! numbers with Twilio's documented codes, fails one part of a Vonage concatenated message while
//! the others are accepted, can accept a message and lose the answer, refuses credentials on
//! demand, and calls the app back (Twilio status callbacks, Vonage delivery
//! receipts). A bad request never panics it: it gets the provider's error.

// Shared by the integration tests, which each use part of it.
#![allow(dead_code)]

use std::collections::{HashMap, HashSet, VecDeque};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::{Request, State as AxumState};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use serde_json::{Value, json};

pub const TWILIO_SID: &str = "AC00000000000000000000000000000001";
pub const TWILIO_TOKEN: &str = "twilio-auth-token-0123456789abcdef";
pub const VONAGE_KEY: &str = "vonage01";
pub const VONAGE_SECRET: &str = "vonage-secret-01";
pub const SKEBBY_USER: &str = "regione-umbria";
pub const SKEBBY_PASSWORD: &str = "skebby-password-01";

const SECOND: Duration = Duration::from_secs(1);
const SKEBBY_BASE: &str = "/API/v1.0/REST/";
const SKEBBY_TYPES: [&str; 8] = ["GP", "TI", "SI", "N", "L", "LL", "EE", "AD"];
const VONAGE_NETWORK: &str = "22201";
/// Vonage's price per segment in 1e-8 units ("0.03330000").
const VONAGE_PRICE: u64 = 3_330_000;

/// GSM 03.38 basic set (ESC included), one septet each.
const GSM_BASIC: &str = "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞ\u{1b}ÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?\
                         ¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà";
/// GSM 03.38 extension table (ESC + code), two septets each.
const GSM_EXTENSION: &str = "\u{c}^{}\\[~]|€";

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum SmsProvider {
    Twilio,
    Vonage,
    Skebby,
}

#[derive(Clone, Debug)]
pub struct SmsOptions {
    /// Twilio's sender rate in message segments a second (a US long code: 1); None = unlimited.
    /// Over it, Twilio queues; it answers 429 (20429) only to too many concurrent requests,
    /// which `throttle_next` scripts.
    pub twilio_segments_per_second: Option<u32>,
    /// How long a sender's queue may be before Twilio refuses more with 400 21611. Default 10 h,
    /// as error 21611's page says.
    pub twilio_queue_limit: Duration,
    /// Requests per sliding second before status "1"; default Some(30), as Vonage documents.
    pub vonage_per_second: Option<u32>,
    /// Requests per sliding second before 429 (not documented by Skebby: off by default).
    pub skebby_per_second: Option<u32>,
    /// Skebby session keys expire after this long without use. Default 60 s.
    pub skebby_session_idle: Duration,
}

impl Default for SmsOptions {
    fn default() -> Self {
        SmsOptions {
            twilio_segments_per_second: None,
            twilio_queue_limit: Duration::from_secs(10 * 3600),
            vonage_per_second: Some(30),
            skebby_per_second: None,
            skebby_session_idle: Duration::from_secs(60),
        }
    }
}

/// One accepted message (Skebby: one per recipient).
#[derive(Clone, Debug)]
pub struct SmsSent {
    pub provider: SmsProvider,
    /// As the client sent it.
    pub to: String,
    /// Twilio From (or MessagingServiceSid), Vonage from, Skebby sender ("" when absent).
    pub from: String,
    pub text: String,
    /// Twilio "SM"+32 hex, Vonage 16 upper hex (the first segment's), Skebby order_id.
    pub id: String,
    /// "GSM-7" or "UCS-2" by the GSM 03.38 rules (Vonage `type=unicode` forces "UCS-2").
    pub encoding: &'static str,
    pub segments: u32,
    /// Vonage: `type=unicode` was sent.
    pub unicode_flag: bool,
    /// Vonage: the text needs UCS-2 but `type=unicode` was not sent.
    pub garbled: bool,
    /// Vonage: the parts (from 1) that were refused while the others went out; the recipient
    /// holds an incomplete concatenated message.
    pub failed_parts: Vec<u32>,
    /// Twilio StatusCallback / Vonage callback.
    pub callback: Option<String>,
    /// Skebby message_type.
    pub message_type: Option<String>,
    pub at: Instant,
}

/// One request as received (path with its query string) and the HTTP status answered.
#[derive(Clone, Debug)]
pub struct SmsRequest {
    pub provider: SmsProvider,
    pub method: String,
    pub path: String,
    pub status: u16,
    pub body: String,
    pub at: Instant,
}

/// The SMS gateways double, serving on a loopback port until dropped.
pub struct SmsDouble {
    addr: SocketAddr,
    shared: Arc<Shared>,
    server: tokio::task::JoinHandle<()>,
}

struct Shared {
    options: SmsOptions,
    state: Mutex<State>,
    http: reqwest::Client,
}

/// A scripted outcome for one send request (also what the rate limit yields: `Throttle`).
#[derive(Clone, Debug)]
enum Scripted {
    Fail(u16),
    Throttle,
    VonageStatus(String),
    /// Vonage: this part (from 1) of a concatenated message gets this status, the others "0".
    VonagePart(u32, String),
    /// The message is accepted as usual, and the answer lost on the way back.
    LoseReply,
}

#[derive(Default)]
struct State {
    /// Where callbacks really go (the app's address), when the URL the app gave names its
    /// public address: they are signed over the URL as given, as behind a reverse proxy.
    callbacks_via: Option<String>,
    scripted: HashMap<SmsProvider, VecDeque<Scripted>>,
    /// When accepted send requests arrived, per provider (the sliding windows).
    accepted: HashMap<SmsProvider, VecDeque<Instant>>,
    /// Numbers Twilio refuses, without '+', with the error code it answers.
    twilio_refused: HashMap<String, u32>,
    /// Per Twilio sender: when its queue will have been sent.
    twilio_queue: HashMap<String, Instant>,
    skebby_user_key: String,
    /// Skebby session key → last use.
    sessions: HashMap<String, Instant>,
    access_tokens: HashSet<String>,
    logins: usize,
    vonage_balance: u64,
    skebby_credits: u64,
    sent: Vec<SmsSent>,
    /// Every Vonage segment's message-id → index in `sent`.
    vonage_parts: HashMap<String, usize>,
    requests: Vec<SmsRequest>,
    throttled: Vec<(SmsProvider, Instant)>,
    /// The request being answered was scripted to lose its answer.
    losing: bool,
    /// Providers refusing the account's credentials, each in its own words.
    credentials_refused: HashSet<SmsProvider>,
}

impl SmsDouble {
    pub async fn start() -> SmsDouble {
        SmsDouble::start_with(SmsOptions::default()).await
    }

    pub async fn start_with(options: SmsOptions) -> SmsDouble {
        let state = State {
            skebby_user_key: format!("{:08X}", rand::random::<u32>()),
            vonage_balance: 1_553_590_000,
            skebby_credits: 1234,
            ..State::default()
        };
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(5))
            .build();
        let shared = Arc::new(Shared {
            options,
            state: Mutex::new(state),
            http: http.expect("SMS double callback client"),
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind SMS double");
        let addr = listener.local_addr().unwrap();
        let app = Router::new().fallback(handle).with_state(shared.clone());
        let server = tokio::spawn(async move {
            axum::serve(listener, app).await.expect("SMS double server");
        });
        SmsDouble {
            addr,
            shared,
            server,
        }
    }

    /// Twilio and Vonage base URL, "http://127.0.0.1:PORT" (no trailing slash).
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// "http://127.0.0.1:PORT/API/v1.0/REST/".
    pub fn skebby_base_url(&self) -> String {
        format!("http://{}{SKEBBY_BASE}", self.addr)
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.shared.lock()
    }

    /// Queued after whatever is already scripted for `provider`.
    fn script(&self, provider: SmsProvider, n: usize, what: Scripted) {
        let mut state = self.state();
        let queue = state.scripted.entry(provider).or_default();
        queue.extend(std::iter::repeat_n(what, n));
    }

    /// The next `n` send requests to `provider` fail with HTTP `status` (Twilio code 20500 for
    /// 5xx; Skebby a short text body). Vonage: HTTP 200 with status "5" "Internal Error".
    pub fn fail_next(&self, provider: SmsProvider, n: usize, status: u16) {
        self.script(provider, n, Scripted::Fail(status));
    }

    /// The next `n` send requests to `provider` are throttled (Twilio 429 code 20429, Vonage
    /// status "1", Skebby 429).
    pub fn throttle_next(&self, provider: SmsProvider, n: usize) {
        self.script(provider, n, Scripted::Throttle);
    }

    /// The next `n` send requests to `provider` are accepted (the message is recorded in
    /// `sent()`) and their answer is lost: the connection is cut before it ends. None of the
    /// three APIs takes an idempotency key for a new message, so a client cannot tell whether
    /// such a message went.
    pub fn lose_reply_next(&self, provider: SmsProvider, n: usize) {
        self.script(provider, n, Scripted::LoseReply);
    }

    /// While `refused`, `provider` refuses the account's credentials as it refuses wrong ones:
    /// Twilio 401 with code 20003, Vonage status "4" "Bad Credentials", Skebby 401 to `login`,
    /// `token` and `sms` (its sessions ended).
    pub fn refuse_credentials(&self, provider: SmsProvider, refused: bool) {
        let mut state = self.state();
        if refused {
            state.credentials_refused.insert(provider);
            if provider == SmsProvider::Skebby {
                state.sessions.clear();
                state.access_tokens.clear();
            }
        } else {
            state.credentials_refused.remove(&provider);
        }
    }

    /// The next `n` Vonage sends answer 200 with status `code` and its documented error-text.
    pub fn vonage_status_next(&self, code: &str, n: usize) {
        let what = Scripted::VonageStatus(code.to_owned());
        self.script(SmsProvider::Vonage, n, what);
    }

    /// The next `n` Vonage sends of a concatenated message have part `part` (from 1) refused
    /// with `code` while the other parts are accepted and charged, as the SMS API's answer (one
    /// object per part, each with its own status) allows. A message of fewer parts goes whole.
    pub fn vonage_fail_part_next(&self, part: u32, code: &str, n: usize) {
        let what = Scripted::VonagePart(part, code.to_owned());
        self.script(SmsProvider::Vonage, n, what);
    }

    /// Twilio refuses this number at create time with HTTP 400 and `code`, one of its documented
    /// refusals of a 'To': 21211 (not a valid phone number), 21610 (replied STOP), 21612 (this
    /// 'To' and 'From' cannot be connected: sender rules, network, no route) or 21614 (not a
    /// mobile number: a landline).
    pub fn twilio_refuse_number(&self, number: &str, code: u32) {
        let number = number.trim_start_matches('+').to_owned();
        self.state().twilio_refused.insert(number, code);
    }

    /// Every Skebby session key becomes invalid now (access tokens stay valid).
    pub fn expire_skebby_sessions(&self) {
        self.state().sessions.clear();
    }

    pub fn sent(&self) -> Vec<SmsSent> {
        self.state().sent.clone()
    }

    pub fn sent_via(&self, provider: SmsProvider) -> Vec<SmsSent> {
        let sent = self.sent().into_iter();
        sent.filter(|m| m.provider == provider).collect()
    }

    /// Messages to `number`, ignoring a leading '+' on either side.
    pub fn sent_to(&self, number: &str) -> Vec<SmsSent> {
        let number = number.trim_start_matches('+');
        let sent = self.sent().into_iter();
        sent.filter(|m| m.to.trim_start_matches('+') == number)
            .collect()
    }

    /// Waits until at least `n` messages were accepted in all and returns them; panics after
    /// `timeout`, listing what was sent and requested.
    pub async fn wait_for(&self, n: usize, timeout: Duration) -> Vec<SmsSent> {
        let deadline = Instant::now() + timeout;
        loop {
            let sent = self.sent();
            if sent.len() >= n {
                return sent;
            }
            if Instant::now() > deadline {
                let all: Vec<_> = sent
                    .iter()
                    .map(|m| format!("{:?} {}: {:?}", m.provider, m.to, m.text))
                    .collect();
                let requests: Vec<_> = self
                    .requests()
                    .iter()
                    .map(|r| format!("{:?} {} {} → {}", r.provider, r.method, r.path, r.status))
                    .collect();
                panic!(
                    "expected {n} SMS within {timeout:?}, got {}: {all:#?}; requests: {requests:#?}",
                    sent.len()
                );
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    pub fn requests(&self) -> Vec<SmsRequest> {
        self.state().requests.clone()
    }

    pub fn requests_to(&self, provider: SmsProvider) -> Vec<SmsRequest> {
        let requests = self.requests().into_iter();
        requests.filter(|r| r.provider == provider).collect()
    }

    /// Successful Skebby logins (`login`, not `token`).
    pub fn skebby_logins(&self) -> usize {
        self.state().logins
    }

    /// Throttled answers given so far (any provider, scripted or by rate), with when.
    pub fn throttled(&self) -> Vec<(SmsProvider, Instant)> {
        self.state().throttled.clone()
    }

    /// Posts a signed Twilio status callback for `sid` to its StatusCallback; returns the status
    /// the app answered (0 if unreachable). Panics if no such message had a StatusCallback.
    pub async fn twilio_status_callback(
        &self,
        sid: &str,
        status: &str,
        error_code: Option<u32>,
    ) -> u16 {
        self.twilio_callback(sid, status, error_code, TWILIO_TOKEN)
            .await
    }

    /// Same, signed with a wrong token.
    pub async fn twilio_status_callback_badly_signed(&self, sid: &str, status: &str) -> u16 {
        self.twilio_callback(sid, status, None, "not-the-auth-token")
            .await
    }

    async fn twilio_callback(&self, sid: &str, status: &str, error: Option<u32>, key: &str) -> u16 {
        let (message, url) = self.callback_of(SmsProvider::Twilio, sid);
        let mut params: Vec<(String, String)> = [
            ("MessageSid", sid),
            ("MessageStatus", status),
            ("AccountSid", TWILIO_SID),
            ("From", &message.from),
            ("To", &message.to),
            ("ApiVersion", "2010-04-01"),
            ("SmsSid", sid),
            ("SmsStatus", status),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
        if let Some(code) = error {
            params.push(("ErrorCode".to_owned(), code.to_string()));
        }
        params.sort();
        let signature = twilio_signature(key, &url, &params);
        let request = self.shared.http.post(self.via(&url)).form(&params);
        let response = request.header("X-Twilio-Signature", signature).send().await;
        response.map_or(0, |r| r.status().as_u16())
    }

    /// Posts a Vonage delivery receipt (JSON) for `message_id` (any segment's) to the callback
    /// given with it; returns the status the app answered (0 if unreachable).
    pub async fn vonage_receipt(&self, message_id: &str, status: &str, err_code: &str) -> u16 {
        let (message, url) = self.callback_of(SmsProvider::Vonage, message_id);
        let now = jiff::Timestamp::now();
        let body = json!({
            "msisdn": message.to.trim_start_matches('+'), "to": message.from,
            "network-code": VONAGE_NETWORK, "messageId": message_id,
            "price": price(VONAGE_PRICE), "status": status,
            "scts": now.strftime("%y%m%d%H%M").to_string(), "err-code": err_code,
            "api-key": VONAGE_KEY,
            "message-timestamp": now.strftime("%Y-%m-%d %H:%M:%S").to_string(),
        });
        let response = self
            .shared
            .http
            .post(self.via(&url))
            .json(&body)
            .send()
            .await;
        response.map_or(0, |r| r.status().as_u16())
    }

    /// The message with this id and the callback URL it was sent with.
    /// Callbacks go to `base` (e.g. the app's "http://127.0.0.1:PORT") whatever host their URL
    /// names.
    pub fn deliver_callbacks_to(&self, base: &str) {
        self.state().callbacks_via = Some(base.trim_end_matches('/').to_owned());
    }

    fn via(&self, url: &str) -> String {
        match (self.state().callbacks_via.clone(), url::Url::parse(url)) {
            (Some(base), Ok(u)) => {
                let query = u.query().map(|q| format!("?{q}")).unwrap_or_default();
                format!("{base}{}{query}", u.path())
            }
            _ => url.to_owned(),
        }
    }

    fn callback_of(&self, provider: SmsProvider, id: &str) -> (SmsSent, String) {
        let state = self.state();
        let index = match provider {
            SmsProvider::Vonage => state.vonage_parts.get(id).copied(),
            _ => (state.sent.iter()).position(|m| m.provider == provider && m.id == id),
        };
        let message = index.and_then(|i| state.sent.get(i)).cloned();
        match message.as_ref().and_then(|m| m.callback.clone()) {
            Some(url) => (message.unwrap(), url),
            None => panic!("no {provider:?} message {id} was sent with a callback URL"),
        }
    }
}

impl Drop for SmsDouble {
    fn drop(&mut self) {
        self.server.abort();
    }
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The scripted outcome for a send request past authentication, else `Throttle` if the
    /// provider's sliding second is full. Throttles are recorded.
    fn gate(&self, state: &mut State, provider: SmsProvider, now: Instant) -> Option<Scripted> {
        let limit = match provider {
            // Twilio queues what goes over a sender's rate (see `twilio_enqueue`).
            SmsProvider::Twilio => None,
            SmsProvider::Vonage => self.options.vonage_per_second,
            SmsProvider::Skebby => self.options.skebby_per_second,
        };
        let stamps = state.accepted.entry(provider).or_default();
        while stamps
            .front()
            .is_some_and(|t| now.duration_since(*t) >= SECOND)
        {
            stamps.pop_front();
        }
        let full = limit.is_some_and(|limit| stamps.len() >= limit as usize);
        let gate = match state
            .scripted
            .get_mut(&provider)
            .and_then(VecDeque::pop_front)
        {
            Some(Scripted::VonageStatus(code)) if code == "1" => Some(Scripted::Throttle),
            Some(Scripted::VonageStatus(code)) if code == "0" => None,
            Some(Scripted::LoseReply) => {
                state.losing = true;
                None
            }
            None if full => Some(Scripted::Throttle),
            scripted => scripted,
        };
        if matches!(gate, Some(Scripted::Throttle)) {
            state.throttled.push((provider, now));
        }
        gate
    }
}

/// Base64(HMAC-SHA1(token, url + key1 + value1 + key2 + value2 …)), params sorted by key.
pub fn twilio_signature(token: &str, url: &str, sorted: &[(String, String)]) -> String {
    let mut data = url.to_owned();
    for (key, value) in sorted {
        data.push_str(key);
        data.push_str(value);
    }
    let mac = hmac_sha1(token.as_bytes(), data.as_bytes());
    base64::engine::general_purpose::STANDARD.encode(mac)
}

fn hmac_sha1(key: &[u8], data: &[u8]) -> [u8; 20] {
    use hmac::{KeyInit, Mac};
    let mut mac = <hmac::Hmac<sha1::Sha1> as KeyInit>::new_from_slice(key).expect("any key length");
    mac.update(data);
    mac.finalize().into_bytes().into()
}

/// `(encoding, segments)` by the GSM 03.38 rules: GSM-7 if every char is in the basic or extension
/// set (160 septets single, 153 per part; extension chars cost 2), else UCS-2 over UTF-16 units
/// (70 single, 67 per part).
pub fn sms_encoding(text: &str) -> (&'static str, u32) {
    let mut septets = 0;
    for c in text.chars() {
        if GSM_BASIC.contains(c) {
            septets += 1;
        } else if GSM_EXTENSION.contains(c) {
            septets += 2;
        } else {
            return ("UCS-2", ucs2_segments(text));
        }
    }
    ("GSM-7", parts(septets, 160, 153))
}

fn ucs2_segments(text: &str) -> u32 {
    parts(text.encode_utf16().count(), 70, 67)
}

fn parts(units: usize, single: usize, each: usize) -> u32 {
    if units <= single {
        1
    } else {
        units.div_ceil(each) as u32
    }
}

/// A request, read whole.
struct Incoming {
    method: String,
    path: String,
    query: String,
    headers: HeaderMap,
    body: Vec<u8>,
}

impl Incoming {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    fn is_form(&self) -> bool {
        let content_type = self.header("content-type").unwrap_or_default();
        content_type
            .to_ascii_lowercase()
            .starts_with("application/x-www-form-urlencoded")
    }

    /// The form body's parameters (none unless the body is form-encoded), over the query's.
    fn params(&self) -> HashMap<String, String> {
        let mut params = form(self.query.as_bytes());
        if self.is_form() {
            params.extend(form(&self.body));
        }
        params
    }

    /// `(user, password)` from an `Authorization: Basic` header.
    fn basic_auth(&self) -> Option<(String, String)> {
        let (scheme, encoded) = self.header("authorization")?.trim().split_once(' ')?;
        if !scheme.eq_ignore_ascii_case("basic") {
            return None;
        }
        let engine = base64::engine::general_purpose::STANDARD;
        let decoded = String::from_utf8(engine.decode(encoded.trim()).ok()?).ok()?;
        let (user, password) = decoded.split_once(':')?;
        Some((user.to_owned(), password.to_owned()))
    }
}

fn form(bytes: &[u8]) -> HashMap<String, String> {
    url::form_urlencoded::parse(bytes).into_owned().collect()
}

/// An answer: status, content type, body.
type Reply = (u16, &'static str, String);

fn json_reply(status: u16, body: Value) -> Reply {
    (status, "application/json", body.to_string())
}

fn text_reply(status: u16, body: &str) -> Reply {
    (status, "text/plain", body.to_owned())
}

async fn handle(AxumState(shared): AxumState<Arc<Shared>>, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    let body = axum::body::to_bytes(body, 8 << 20)
        .await
        .unwrap_or_default();
    let req = Incoming {
        method: parts.method.as_str().to_owned(),
        path: parts.uri.path().to_owned(),
        query: parts.uri.query().unwrap_or_default().to_owned(),
        headers: parts.headers,
        body: body.to_vec(),
    };
    let (provider, reply) = if req.path.starts_with("/2010-04-01/") {
        (Some(SmsProvider::Twilio), twilio(&shared, &req))
    } else if req.path == "/sms/json" {
        (Some(SmsProvider::Vonage), vonage(&shared, &req))
    } else if let Some(endpoint) = req.path.strip_prefix(SKEBBY_BASE) {
        (Some(SmsProvider::Skebby), skebby(&shared, &req, endpoint))
    } else {
        (None, text_reply(404, "Not Found"))
    };
    let lost = std::mem::take(&mut shared.lock().losing);
    if let Some(provider) = provider {
        let path = match req.query.as_str() {
            "" => req.path.clone(),
            query => format!("{}?{query}", req.path),
        };
        shared.lock().requests.push(SmsRequest {
            provider,
            method: req.method.clone(),
            path,
            status: reply.0,
            body: String::from_utf8_lossy(&req.body).into_owned(),
            at: Instant::now(),
        });
    }
    if lost {
        return super::double::lost_reply();
    }
    let status = StatusCode::from_u16(reply.0).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    (status, [(header::CONTENT_TYPE, reply.1)], reply.2).into_response()
}

/// An accepted message with the provider-specific fields unset.
fn accepted(provider: SmsProvider, to: &str, from: &str, text: &str, id: &str) -> SmsSent {
    let (encoding, segments) = sms_encoding(text);
    SmsSent {
        provider,
        to: to.to_owned(),
        from: from.to_owned(),
        text: text.to_owned(),
        id: id.to_owned(),
        encoding,
        segments,
        unicode_flag: false,
        garbled: false,
        failed_parts: Vec::new(),
        callback: None,
        message_type: None,
        at: Instant::now(),
    }
}

fn all_digits(text: &str) -> bool {
    !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit())
}

/// A number with an optional leading '+' and `min..=15` digits.
fn is_number(number: &str, min: usize) -> bool {
    let digits = number.strip_prefix('+').unwrap_or(number);
    all_digits(digits) && (min..=15).contains(&digits.len())
}

/// An absolute http(s) URL of at most 4000 chars whose host has no underscore (Twilio 21609).
fn valid_callback(url: &str) -> bool {
    let Ok(parsed) = url::Url::parse(url) else {
        return false;
    };
    let host_ok = parsed
        .host_str()
        .is_some_and(|h| !h.is_empty() && !h.contains('_'));
    url.len() <= 4000 && matches!(parsed.scheme(), "http" | "https") && host_ok
}

/// A sender: 1–11 ASCII letters and digits, or a number of 3–15 digits (optional '+').
fn valid_sender(sender: &str) -> bool {
    let alphanumeric = sender.bytes().all(|b| b.is_ascii_alphanumeric());
    (alphanumeric && (1..=11).contains(&sender.len())) || is_number(sender, 3)
}

// Twilio ---------------------------------------------------------------------------------------

fn twilio_error(status: u16, code: u32, message: &str) -> Reply {
    let more_info = format!("https://www.twilio.com/docs/errors/{code}");
    let body = json!({"code": code, "message": message, "more_info": more_info, "status": status});
    json_reply(status, body)
}

fn twilio(shared: &Shared, req: &Incoming) -> Reply {
    let rest = req.path.strip_prefix("/2010-04-01/Accounts/");
    let (sid, tail) = rest.and_then(|r| r.split_once('/')).unwrap_or_default();
    let credentials = Some((TWILIO_SID.to_owned(), TWILIO_TOKEN.to_owned()));
    let refused = shared
        .lock()
        .credentials_refused
        .contains(&SmsProvider::Twilio);
    if sid != TWILIO_SID || req.basic_auth() != credentials || refused {
        return twilio_error(401, 20003, "Authenticate");
    }
    if tail != "Messages.json" || req.method != "POST" {
        let message = format!("The requested resource {} was not found", req.path);
        return twilio_error(404, 20404, &message);
    }
    let params = if req.is_form() {
        form(&req.body)
    } else {
        HashMap::new()
    };
    let param = |key: &str| {
        params
            .get(key)
            .map(String::as_str)
            .filter(|v| !v.is_empty())
    };
    let now = Instant::now();
    let mut state = shared.lock();
    match shared.gate(&mut state, SmsProvider::Twilio, now) {
        Some(Scripted::Throttle) => return twilio_error(429, 20429, "Too Many Requests"),
        Some(Scripted::Fail(status)) => {
            let status = StatusCode::from_u16(status).map_or(500, |s| s.as_u16());
            return match status {
                500.. => twilio_error(status, 20500, "Internal Server Error"),
                401 => twilio_error(401, 20003, "Authenticate"),
                429 => twilio_error(429, 20429, "Too Many Requests"),
                _ => twilio_error(status, 20000 + u32::from(status), "Error"),
            };
        }
        Some(Scripted::VonageStatus(_) | Scripted::VonagePart(..) | Scripted::LoseReply) | None => {
        }
    }
    let Some(to) = param("To") else {
        return twilio_error(400, 21604, "A 'To' phone number is required.");
    };
    if !to.starts_with('+') || !is_number(to, 8) {
        let message = format!("The 'To' number {to} is not a valid phone number.");
        return twilio_error(400, 21211, &message);
    }
    let service = param("MessagingServiceSid");
    let Some(from) = param("From").or(service) else {
        return twilio_error(400, 21603, "A 'From' phone number is required.");
    };
    let text = param("Body").unwrap_or_default();
    if text.is_empty() && param("MediaUrl").is_none() && param("ContentSid").is_none() {
        return twilio_error(400, 21602, "Message body is required.");
    }
    if text.chars().count() > 1600 {
        let message = "The concatenated message body exceeds the 1600 character limit.";
        return twilio_error(400, 21617, message);
    }
    let callback = param("StatusCallback");
    if callback.is_some_and(|url| !valid_callback(url)) {
        return twilio_error(400, 21609, "Invalid StatusCallback url");
    }
    if let Some(&code) = state.twilio_refused.get(to.trim_start_matches('+')) {
        return twilio_error(400, code, &twilio_refusal(code, to));
    }
    let id = format!("SM{:032x}", rand::random::<u128>());
    let message = SmsSent {
        callback: callback.map(str::to_owned),
        ..accepted(SmsProvider::Twilio, to, from, text, &id)
    };
    if !twilio_enqueue(&shared.options, &mut state, from, message.segments, now) {
        let text = "This 'From' number has exceeded the maximum number of queued messages";
        return twilio_error(400, 21611, text);
    }
    state
        .accepted
        .entry(SmsProvider::Twilio)
        .or_default()
        .push_back(now);
    // With only a Messaging Service: "accepted" and "0" segments until a sender is assigned.
    let sender = param("From");
    let (status, segments) = match sender {
        Some(_) => ("queued", message.segments.to_string()),
        None => ("accepted", "0".to_owned()),
    };
    state.sent.push(message);
    let date = jiff::Timestamp::now()
        .strftime("%a, %d %b %Y %H:%M:%S +0000")
        .to_string();
    let uri = format!("/2010-04-01/Accounts/{TWILIO_SID}/Messages/{id}");
    json_reply(
        201,
        json!({
            "sid": id, "account_sid": TWILIO_SID, "messaging_service_sid": service,
            "to": to, "from": sender, "body": text, "status": status, "num_segments": segments,
            "num_media": "0", "direction": "outbound-api", "api_version": "2010-04-01",
            "price": null, "price_unit": "USD", "error_code": null, "error_message": null,
            "date_created": date, "date_updated": date, "date_sent": null,
            "uri": format!("{uri}.json"),
            "subresource_uris": {"media": format!("{uri}/Media.json")},
        }),
    )
}

/// The message of Twilio's documented refusal of a 'To' number.
fn twilio_refusal(code: u32, to: &str) -> String {
    match code {
        21211 => format!("The 'To' number {to} is not a valid phone number."),
        21610 => "Attempt to send to unsubscribed recipient".into(),
        21612 => "Message cannot be sent with the current combination of 'To' and/or 'From' \
                  parameters"
            .into(),
        21614 => "'To' number is not a valid mobile number".into(),
        _ => "Error".into(),
    }
}

/// Queues `segments` behind what `from` already has queued, at the sender's rate, unless the
/// queue is already longer than Twilio keeps (then 21611: the caller refuses the message).
fn twilio_enqueue(
    options: &SmsOptions,
    state: &mut State,
    from: &str,
    segments: u32,
    now: Instant,
) -> bool {
    let Some(rate) = options.twilio_segments_per_second.filter(|r| *r > 0) else {
        return true;
    };
    let drained = state
        .twilio_queue
        .get(from)
        .copied()
        .unwrap_or(now)
        .max(now);
    if drained - now > options.twilio_queue_limit {
        return false;
    }
    let sending = Duration::from_secs(u64::from(segments)) / rate;
    state
        .twilio_queue
        .insert(from.to_owned(), drained + sending);
    true
}

// Vonage ---------------------------------------------------------------------------------------

fn vonage_error_text(code: &str) -> &'static str {
    match code {
        "1" => "Throughput Rate Exceeded - please wait [ 1000 ] and retry",
        "2" => "Missing Parameters",
        "3" => "Invalid Parameters",
        "4" => "Bad Credentials",
        "5" => "Internal Error",
        "6" => "Invalid Message",
        "7" => "Number Barred",
        "8" => "Partner Account Barred",
        "9" => "Quota Exceeded - rejected",
        "10" => "Too Many Existing Binds",
        "11" => "Account Not Enabled For HTTP",
        "12" => "Message Too Long",
        "14" => "Invalid Signature",
        "15" => "Illegal Sender Address - rejected",
        "22" => "Invalid Network Code",
        "23" => "Invalid Callback Url",
        "29" => "Non White-listed Destination - rejected",
        "32" => "Signature And API Secret Disallowed",
        "33" => "Number De-activated",
        _ => "Unknown Error",
    }
}

/// HTTP 200 with one failed message: `status` and `error-text` (and `to`, when given).
fn vonage_failure(to: Option<&str>, code: &str, text: &str) -> Reply {
    let mut message = json!({"status": code, "error-text": text});
    if let Some(to) = to {
        message["to"] = json!(to.trim_start_matches('+'));
    }
    json_reply(200, json!({"message-count": "1", "messages": [message]}))
}

fn price(units: u64) -> String {
    format!("{}.{:08}", units / 100_000_000, units % 100_000_000)
}

fn vonage(shared: &Shared, req: &Incoming) -> Reply {
    if req.method != "POST" && req.method != "GET" {
        return text_reply(405, "Method Not Allowed");
    }
    let params = req.params();
    let param = |key: &str| {
        params
            .get(key)
            .map(String::as_str)
            .filter(|v| !v.is_empty())
    };
    let to = param("to");
    let basic = req.basic_auth();
    let basic = basic.as_ref().map(|(k, s)| (k.as_str(), Some(s.as_str())));
    let Some((key, secret)) = param("api_key").map(|k| (k, param("api_secret"))).or(basic) else {
        return vonage_failure(to, "2", "Missing api_key");
    };
    let refused = shared
        .lock()
        .credentials_refused
        .contains(&SmsProvider::Vonage);
    if key != VONAGE_KEY || secret != Some(VONAGE_SECRET) || refused {
        return vonage_failure(to, "4", vonage_error_text("4"));
    }
    let now = Instant::now();
    let mut state = shared.lock();
    let mut failing_part = None;
    match shared.gate(&mut state, SmsProvider::Vonage, now) {
        Some(Scripted::Fail(_)) => return vonage_failure(to, "5", vonage_error_text("5")),
        Some(Scripted::Throttle) => return vonage_failure(to, "1", vonage_error_text("1")),
        Some(Scripted::VonageStatus(code)) => {
            return vonage_failure(to, &code, vonage_error_text(&code));
        }
        Some(Scripted::VonagePart(part, code)) => failing_part = Some((part, code)),
        Some(Scripted::LoseReply) | None => {}
    }
    let (Some(from), Some(to), Some(text)) = (param("from"), to, param("text")) else {
        let missing = ["from", "to", "text"]
            .into_iter()
            .find(|k| param(k).is_none());
        let message = format!("Missing {} param", missing.unwrap_or("text"));
        return vonage_failure(to, "2", &message);
    };
    if !is_number(to, 7) {
        return vonage_failure(Some(to), "3", "Invalid to param");
    }
    if !valid_sender(from) {
        return vonage_failure(Some(to), "15", vonage_error_text("15"));
    }
    let callback = param("callback");
    if callback.is_some_and(|url| !valid_callback(url)) {
        return vonage_failure(Some(to), "23", vonage_error_text("23"));
    }
    state
        .accepted
        .entry(SmsProvider::Vonage)
        .or_default()
        .push_back(now);
    let unicode_flag = param("type") == Some("unicode");
    let mut message = SmsSent {
        callback: callback.map(str::to_owned),
        unicode_flag,
        ..accepted(SmsProvider::Vonage, to, from, text, "")
    };
    message.garbled = message.encoding == "UCS-2" && !unicode_flag;
    if unicode_flag {
        (message.encoding, message.segments) = ("UCS-2", ucs2_segments(text));
    }
    let mut parts = Vec::new();
    for part in 1..=message.segments {
        if let Some((_, code)) = failing_part.as_ref().filter(|(p, _)| *p == part) {
            let error = vonage_error_text(code);
            let to = to.trim_start_matches('+');
            parts.push(json!({"to": to, "status": code, "error-text": error}));
            message.failed_parts.push(part);
            continue;
        }
        let id = format!("{:016X}", rand::random::<u64>());
        state.vonage_balance = state.vonage_balance.saturating_sub(VONAGE_PRICE);
        parts.push(json!({
            "to": to.trim_start_matches('+'), "message-id": id, "status": "0",
            "remaining-balance": price(state.vonage_balance),
            "message-price": price(VONAGE_PRICE), "network": VONAGE_NETWORK,
        }));
        if message.id.is_empty() {
            message.id = id.clone();
        }
        let index = state.sent.len();
        state.vonage_parts.insert(id, index);
    }
    let count = message.segments.to_string();
    state.sent.push(message);
    json_reply(200, json!({"message-count": count, "messages": parts}))
}

// Skebby / Aruba / Esendex-IT ------------------------------------------------------------------

fn skebby(shared: &Shared, req: &Incoming, endpoint: &str) -> Reply {
    match (req.method.as_str(), endpoint) {
        ("GET" | "POST", "login") => skebby_login(shared, req, false),
        ("GET" | "POST", "token") => skebby_login(shared, req, true),
        ("POST", "sms") => skebby_send(shared, req),
        (_, "login" | "token" | "sms") => text_reply(405, "Method Not Allowed"),
        _ => text_reply(404, "Not Found"),
    }
}

/// `login` (query, form or Basic) → `USER_KEY;SESSION_KEY`; `token` → `USER_KEY;ACCESS_TOKEN`.
fn skebby_login(shared: &Shared, req: &Incoming, token: bool) -> Reply {
    let params = req.params();
    let credentials = match (params.get("username"), params.get("password")) {
        (Some(user), Some(password)) => Some((user.clone(), password.clone())),
        _ => req.basic_auth(),
    };
    let refused = shared
        .lock()
        .credentials_refused
        .contains(&SmsProvider::Skebby);
    if credentials != Some((SKEBBY_USER.to_owned(), SKEBBY_PASSWORD.to_owned())) || refused {
        return text_reply(401, "");
    }
    let key = format!("{:032x}", rand::random::<u128>());
    let mut state = shared.lock();
    if token {
        state.access_tokens.insert(key.clone());
    } else {
        state.logins += 1;
        state.sessions.insert(key.clone(), Instant::now());
    }
    text_reply(200, &format!("{};{key}", state.skebby_user_key))
}

fn skebby_send(shared: &Shared, req: &Incoming) -> Reply {
    let now = Instant::now();
    let idle = shared.options.skebby_session_idle;
    let mut state = shared.lock();
    let user_ok = req.header("user_key") == Some(state.skebby_user_key.as_str());
    let session = req
        .header("session_key")
        .and_then(|key| state.sessions.get_mut(key));
    let session_ok = match session {
        Some(last_used) if now.duration_since(*last_used) <= idle => {
            *last_used = now;
            true
        }
        _ => false,
    };
    let token = req.header("access_token");
    if !user_ok || !(session_ok || token.is_some_and(|t| state.access_tokens.contains(t))) {
        return text_reply(401, "");
    }
    match shared.gate(&mut state, SmsProvider::Skebby, now) {
        Some(Scripted::Fail(status)) => {
            let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            return text_reply(
                status.as_u16(),
                status.canonical_reason().unwrap_or("Error"),
            );
        }
        Some(Scripted::Throttle) => return text_reply(429, "Too Many Requests"),
        Some(Scripted::VonageStatus(_) | Scripted::VonagePart(..) | Scripted::LoseReply) | None => {
        }
    }
    let body: Value = serde_json::from_slice(&req.body).unwrap_or_default();
    if !body.is_object() {
        return text_reply(400, "Bad Request: the body is not a JSON object");
    }
    let message_type = body["message_type"].as_str().unwrap_or_default();
    if !SKEBBY_TYPES.contains(&message_type) {
        return text_reply(400, "Bad Request: invalid message_type");
    }
    let text = body["message"].as_str().unwrap_or_default();
    if text.is_empty() {
        return text_reply(400, "Bad Request: missing message");
    }
    let recipients = body["recipient"].as_array().cloned().unwrap_or_default();
    let numbers: Vec<String> = recipients
        .iter()
        .filter_map(|r| match r {
            Value::String(s) => Some(s.clone()),
            Value::Number(n) => Some(n.to_string()),
            _ => None,
        })
        .filter(|n| is_number(n, 8))
        .collect();
    if numbers.is_empty() || numbers.len() != recipients.len() {
        return text_reply(400, "Bad Request: invalid recipient");
    }
    let sender = match &body["sender"] {
        Value::Null => "",
        Value::String(s) if valid_sender(s) => s.as_str(),
        _ => return text_reply(400, "Bad Request: invalid sender"),
    };
    state
        .accepted
        .entry(SmsProvider::Skebby)
        .or_default()
        .push_back(now);
    let order_id = match body["order_id"].as_str().filter(|s| !s.is_empty()) {
        Some(id) => id.to_owned(),
        None => (rand::random::<u64>() % 1_000_000_000_000).to_string(),
    };
    for number in &numbers {
        let message = SmsSent {
            message_type: Some(message_type.to_owned()),
            ..accepted(SmsProvider::Skebby, number, sender, text, &order_id)
        };
        let cost = u64::from(message.segments);
        state.skebby_credits = state.skebby_credits.saturating_sub(cost);
        state.sent.push(message);
    }
    json_reply(
        201,
        json!({
            "result": "OK", "order_id": order_id, "total_sent": numbers.len(),
            "internal_order_id": format!("{:016x}", rand::random::<u64>()),
            "remaining_credits": state.skebby_credits,
        }),
    )
}
