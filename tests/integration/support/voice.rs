//! A local stand-in for Twilio Programmable Voice and the Vonage Voice API, on one loopback port:
//! - Twilio `POST /2010-04-01/Accounts/{Sid}/Calls.json` (form, Basic auth with the Account SID
//!   and auth token) → `201` with the call's `sid`; errors as Twilio's JSON (`code`, `message`,
//!   `more_info`, `status`): 20003 for credentials, 21211 for an invalid 'To', 21213 for a
//!   missing 'From', 21205 for neither `Url` nor `Twiml`, 12100 for TwiML that does not parse,
//!   21211 or 21214 for a number scripted so, 429 or 5xx when scripted. Over the account's calls per second Twilio queues
//!   (it does not refuse): the double records when each call was created.
//! - Vonage `POST /v1/calls` (JSON, `Authorization: Bearer` a JWT signed RS256 by the
//!   application's private key, with `application_id`, `iat`, `exp`, `jti`) → `201` with the
//!   call's `uuid`; `401` for a JWT that does not verify, `400` with `invalid_parameters` for a
//!   body outside the schema (`to`, `from`, the NCCO's `talk` and `input`, `event_url`), `429`
//!   past three calls created in a sliding second, as Vonage documents.
//!
//! The TwiML is read by an XML parser (well-formed, a `<Response>`, a `<Say>`, a `<Gather
//! numDigits="1" action=…>`); the NCCO is checked action by action. Once a call is placed, the
//! person called does what the test scripted for the number — answers and presses a key, answers
//! and presses nothing, does not answer, is busy, or an answering machine picks up — and the
//! double posts the provider's callbacks back as the provider does: Twilio's status callbacks
//! and `<Gather>` action signed with `X-Twilio-Signature` computed from the auth token, Vonage's
//! events and `input` results as JSON, signed with an HS256 JWT under the signature secret when
//! asked. What the application answered to each key is kept for the tests.

// Shared by the integration tests, which each use part of it.
#![allow(dead_code)]

use std::collections::{HashMap, HashSet, VecDeque};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::{Request, State as AxumState};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use quick_xml::events::Event;
use serde_json::{Value, json};

use super::sms::{TWILIO_SID, TWILIO_TOKEN, twilio_signature};

pub const VONAGE_APPLICATION: &str = "aaaaaaaa-bbbb-cccc-dddd-0123456789ab";
pub const VONAGE_API_KEY: &str = "vonage01";
pub const VONAGE_SIGNATURE_SECRET: &str = "vonage-signature-secret-0123456789abcdef";

/// The Vonage application's private key the tests configure (a key made for the tests only).
pub fn vonage_key_path() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/voice/vonage-application.key")
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Voice {
    Twilio,
    Vonage,
}

/// What the person called does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Pickup {
    /// Answers, listens and presses this key while the message is said.
    Press(char),
    /// Answers and presses nothing, both times.
    Silent,
    /// Lets it ring.
    NoAnswer,
    Busy,
    /// An answering machine picks up.
    Machine,
}

/// One call the double agreed to place.
#[derive(Clone, Debug)]
pub struct PlacedCall {
    pub provider: Voice,
    /// Twilio's `CA…` sid, Vonage's uuid.
    pub id: String,
    /// As the client sent it (Twilio `+…`, Vonage digits).
    pub to: String,
    pub from: String,
    /// Every text the call says, in order (TwiML `<Say>`, NCCO `talk`).
    pub said: Vec<String>,
    /// The `<Say language>` / `talk.language`.
    pub language: String,
    pub status_url: String,
    /// The `<Gather action>`s / `input.eventUrl`s, in order.
    pub key_urls: Vec<String>,
    pub at: Instant,
}

/// What the application answered to a key (or to none).
#[derive(Clone, Debug)]
pub struct KeyAnswer {
    pub call: String,
    pub status: u16,
    pub body: String,
}

pub struct VoiceDouble {
    addr: SocketAddr,
    shared: Arc<Shared>,
    server: tokio::task::JoinHandle<()>,
}

struct Shared {
    state: Mutex<State>,
    http: reqwest::Client,
    vonage_public_key: Vec<u8>,
}

#[derive(Default)]
struct State {
    callbacks_via: Option<String>,
    pickups: HashMap<String, Pickup>,
    fail_next: HashMap<Voice, VecDeque<u16>>,
    /// Numbers Twilio refuses, with its error code (21211 invalid, 21214 unreachable).
    refused_numbers: HashMap<String, u32>,
    credentials_refused: HashSet<Voice>,
    vonage_window: VecDeque<Instant>,
    calls: Vec<PlacedCall>,
    /// Every create request: provider, status answered, when.
    requests: Vec<(Voice, u16, Instant)>,
    /// Every callback posted: call id, the status it reported (or `key:<digits>`), the answer.
    callbacks: Vec<(String, String, u16)>,
    keys: Vec<KeyAnswer>,
    sign_vonage: bool,
}

impl VoiceDouble {
    pub async fn start() -> VoiceDouble {
        let pem = std::fs::read_to_string(vonage_key_path()).expect("the test key");
        let key = banditore::channel::voice::settings::signing_key(&pem).expect("an RSA key");
        let shared = Arc::new(Shared {
            state: Mutex::new(State::default()),
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(5))
                .build()
                .expect("voice double's client"),
            vonage_public_key: key.public().as_ref().to_vec(),
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind the voice double");
        let addr = listener.local_addr().unwrap();
        let app = Router::new().fallback(handle).with_state(shared.clone());
        let server = tokio::spawn(async move {
            axum::serve(listener, app)
                .await
                .expect("voice double server");
        });
        VoiceDouble {
            addr,
            shared,
            server,
        }
    }

    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.shared.lock()
    }

    /// Callbacks go to `base` (the app's address) whatever host their URL names.
    pub fn deliver_callbacks_to(&self, base: &str) {
        self.state().callbacks_via = Some(base.trim_end_matches('/').to_owned());
    }

    /// What the person at `number` (E.164) does; `Press('1')` for numbers not scripted.
    pub fn pickup(&self, number: &str, what: Pickup) {
        self.state().pickups.insert(digits(number), what);
    }

    pub fn fail_next(&self, provider: Voice, n: usize, status: u16) {
        let mut state = self.state();
        let queue = state.fail_next.entry(provider).or_default();
        queue.extend(std::iter::repeat_n(status, n));
    }

    /// Twilio refuses calls to this number with `code`: 21211 (an invalid 'To'), 21214 ('To'
    /// cannot be reached).
    pub fn twilio_refuse_number(&self, number: &str, code: u32) {
        self.state().refused_numbers.insert(digits(number), code);
    }

    /// While `refused`, the provider refuses the account's credentials (Twilio 401 with code
    /// 20003; Vonage 401).
    pub fn refuse_credentials(&self, provider: Voice, refused: bool) {
        let mut state = self.state();
        if refused {
            state.credentials_refused.insert(provider);
        } else {
            state.credentials_refused.remove(&provider);
        }
    }

    /// Vonage's callbacks carry a JWT signed with the signature secret.
    pub fn sign_vonage_callbacks(&self) {
        self.state().sign_vonage = true;
    }

    pub fn calls(&self) -> Vec<PlacedCall> {
        self.state().calls.clone()
    }

    pub fn requests(&self) -> Vec<(Voice, u16, Instant)> {
        self.state().requests.clone()
    }

    pub fn keys(&self) -> Vec<KeyAnswer> {
        self.state().keys.clone()
    }

    pub fn callbacks(&self) -> Vec<(String, String, u16)> {
        self.state().callbacks.clone()
    }

    pub async fn wait_for_calls(&self, n: usize, timeout: Duration) -> Vec<PlacedCall> {
        let deadline = Instant::now() + timeout;
        loop {
            let calls = self.calls();
            if calls.len() >= n {
                return calls;
            }
            if Instant::now() > deadline {
                panic!(
                    "expected {n} calls within {timeout:?}, got {calls:#?}; requests {:?}",
                    self.requests()
                );
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Waits until the call has ended: its last callback (`completed`, `no-answer`, `busy`…)
    /// was answered.
    pub async fn wait_for_end(&self, call: &str, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        while !self.state().callbacks.iter().any(|(id, status, _)| {
            id == call
                && ["completed", "no-answer", "busy", "timeout", "failed"]
                    .contains(&status.as_str())
        }) {
            assert!(
                Instant::now() < deadline,
                "call {call} did not end: {:?}",
                self.callbacks()
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Posts a Twilio `<Gather>` action for `call` to `url` as Twilio would, signed with `key`
    /// over `signed_url` (normally both are the action's URL); returns the status answered.
    pub async fn twilio_key(
        &self,
        call: &PlacedCall,
        url: &str,
        signed_url: &str,
        digits: &str,
        key: &str,
    ) -> u16 {
        let params = twilio_gather_params(call, digits);
        let signature = twilio_signature(key, signed_url, &params);
        let response = self
            .shared
            .http
            .post(self.via(url))
            .header("X-Twilio-Signature", signature)
            .form(&params)
            .send()
            .await;
        response.map_or(0, |r| r.status().as_u16())
    }

    fn via(&self, url: &str) -> String {
        via(&self.state(), url)
    }
}

impl Drop for VoiceDouble {
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
}

fn via(state: &State, url: &str) -> String {
    match (&state.callbacks_via, url::Url::parse(url)) {
        (Some(base), Ok(u)) => {
            let query = u.query().map(|q| format!("?{q}")).unwrap_or_default();
            format!("{base}{}{query}", u.path())
        }
        _ => url.to_owned(),
    }
}

fn digits(number: &str) -> String {
    number.chars().filter(char::is_ascii_digit).collect()
}

async fn handle(AxumState(shared): AxumState<Arc<Shared>>, request: Request) -> Response {
    let path = request.uri().path().to_owned();
    let headers = request.headers().clone();
    let body = axum::body::to_bytes(request.into_body(), 1 << 20)
        .await
        .unwrap_or_default();
    let twilio = format!("/2010-04-01/Accounts/{TWILIO_SID}/Calls.json");
    if path == twilio {
        return twilio_create(&shared, &headers, &body);
    }
    if path.starts_with("/2010-04-01/Accounts/") {
        return twilio_error(StatusCode::UNAUTHORIZED, 20003, "Authenticate");
    }
    if path == "/v1/calls" {
        return vonage_create(&shared, &headers, &body);
    }
    (StatusCode::NOT_FOUND, "not found").into_response()
}

fn twilio_error(status: StatusCode, code: u32, message: &str) -> Response {
    (
        status,
        axum::Json(json!({
            "code": code,
            "message": message,
            "more_info": format!("https://www.twilio.com/docs/errors/{code}"),
            "status": status.as_u16(),
        })),
    )
        .into_response()
}

fn basic_auth_is(headers: &HeaderMap, user: &str, password: &str) -> bool {
    let expected = format!("Basic {}", STANDARD.encode(format!("{user}:{password}")));
    headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v == expected)
}

/// `(text, language)` of each `<Say>`, and each `<Gather>`'s attributes.
type Twiml = (Vec<(String, String)>, Vec<HashMap<String, String>>);

/// The `<Say>` texts with their language, and the `<Gather>`s' attributes, or why the TwiML is
/// not a document Twilio runs.
fn read_twiml(xml: &str) -> Result<Twiml, String> {
    let mut reader = quick_xml::Reader::from_str(xml);
    let mut says: Vec<(String, String)> = Vec::new();
    let mut gathers = Vec::new();
    let mut in_say = false;
    let mut root = None;
    let attrs = |e: &quick_xml::events::BytesStart<'_>| -> Result<HashMap<String, String>, String> {
        e.attributes()
            .map(|a| {
                let a = a.map_err(|e| e.to_string())?;
                let value = a
                    .normalized_value(quick_xml::XmlVersion::Implicit1_0)
                    .map_err(|e| e.to_string())?;
                Ok((
                    String::from_utf8_lossy(a.key.as_ref()).into_owned(),
                    value.into_owned(),
                ))
            })
            .collect()
    };
    loop {
        let event = reader.read_event().map_err(|e| e.to_string())?;
        match event {
            Event::Start(e) | Event::Empty(e) if root.is_none() => {
                root = Some(String::from_utf8_lossy(e.name().as_ref()).into_owned());
                if e.name().as_ref() != b"Response" {
                    return Err("the root element is not <Response>".into());
                }
            }
            Event::Start(e) if e.name().as_ref() == b"Say" => {
                let mut a = attrs(&e)?;
                let language = a.remove("language").unwrap_or_default();
                let voice = a.remove("voice").unwrap_or_else(|| "man".into());
                in_say = voice_speaks(&voice, &language);
                // A voice that does not speak the language: the `<Say>` fails, nothing is heard.
                let said = if in_say {
                    String::new()
                } else {
                    format!("[not said: {voice} does not speak {language}]")
                };
                says.push((said, language));
            }
            Event::End(e) if e.name().as_ref() == b"Say" => in_say = false,
            Event::Text(t) if in_say => {
                let text = t.decode().map_err(|e| e.to_string())?;
                if let Some(last) = says.last_mut() {
                    last.0.push_str(&text);
                }
            }
            Event::GeneralRef(r) if in_say => {
                let name = r.decode().map_err(|e| e.to_string())?;
                let c = match name.as_ref() {
                    "amp" => "&",
                    "lt" => "<",
                    "gt" => ">",
                    "quot" => "\"",
                    "apos" => "'",
                    other => return Err(format!("unknown entity &{other};")),
                };
                if let Some(last) = says.last_mut() {
                    last.0.push_str(c);
                }
            }
            Event::Start(e) | Event::Empty(e) if e.name().as_ref() == b"Gather" => {
                gathers.push(attrs(&e)?)
            }
            Event::Eof => break,
            _ => {}
        }
    }
    if root.is_none() {
        return Err("no <Response>".into());
    }
    Ok((says, gathers))
}

/// Whether Twilio's `<Say voice>` speaks `language`, from its `<Say>` and text-to-speech pages:
/// without a `voice` the account's default is used, `man` on a new account, which (like `woman`)
/// speaks only en, en-gb, es, fr and de; Amazon Polly's voices each speak their own locale.
/// An invalid combination may fail the `<Say>`.
fn voice_speaks(voice: &str, language: &str) -> bool {
    let language = language.to_ascii_lowercase();
    let locale = match voice {
        "man" | "woman" => {
            return ["", "en", "en-gb", "es", "fr", "de"].contains(&language.as_str());
        }
        "Polly.Bianca"
        | "Polly.Carla"
        | "Polly.Giorgio"
        | "Polly.Bianca-Neural"
        | "Polly.Adriano-Neural" => "it-it",
        "Polly.Amy" | "Polly.Emma" | "Polly.Brian" | "Polly.Amy-Neural" | "Polly.Emma-Neural"
        | "Polly.Brian-Neural" => "en-gb",
        _ => return false,
    };
    language == locale
}

fn twilio_create(shared: &Arc<Shared>, headers: &HeaderMap, body: &[u8]) -> Response {
    let now = Instant::now();
    let answer = |status: u16| {
        shared.lock().requests.push((Voice::Twilio, status, now));
    };
    let refused = shared.lock().credentials_refused.contains(&Voice::Twilio);
    if refused || !basic_auth_is(headers, TWILIO_SID, TWILIO_TOKEN) {
        answer(401);
        return twilio_error(StatusCode::UNAUTHORIZED, 20003, "Authenticate");
    }
    let scripted = (shared.lock().fail_next.get_mut(&Voice::Twilio)).and_then(VecDeque::pop_front);
    if let Some(status) = scripted {
        answer(status);
        let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        return match status.as_u16() {
            429 => twilio_error(status, 20429, "Too Many Requests"),
            _ => twilio_error(status, 20500, "Internal Server Error"),
        };
    }
    let form: Vec<(String, String)> = url::form_urlencoded::parse(body).into_owned().collect();
    let get = |k: &str| form.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
    let to = get("To").unwrap_or_default();
    let to_digits = to.strip_prefix('+').unwrap_or("");
    if !(8..=15).contains(&to_digits.len()) || !to_digits.chars().all(|c| c.is_ascii_digit()) {
        answer(400);
        return twilio_error(
            StatusCode::BAD_REQUEST,
            21211,
            &format!("Invalid 'To' Phone Number: {to}"),
        );
    }
    let Some(from) = get("From") else {
        answer(400);
        return twilio_error(
            StatusCode::BAD_REQUEST,
            21213,
            "'From' phone number is required.",
        );
    };
    let Some(twiml) = get("Twiml").or(get("Url")) else {
        answer(400);
        return twilio_error(StatusCode::BAD_REQUEST, 21205, "Url parameter is required.");
    };
    if twiml.chars().count() > 4000 {
        answer(400);
        return twilio_error(
            StatusCode::BAD_REQUEST,
            21220,
            "Twiml exceeds 4000 characters.",
        );
    }
    let (says, gathers) = match read_twiml(&twiml) {
        Ok(read) => read,
        Err(e) => {
            answer(400);
            return twilio_error(
                StatusCode::BAD_REQUEST,
                12100,
                &format!("Document parse failure: {e}"),
            );
        }
    };
    let key_urls: Vec<String> = gathers
        .iter()
        .filter(|g| g.get("numDigits").map(String::as_str) == Some("1"))
        .filter_map(|g| g.get("action").cloned())
        .collect();
    if says.is_empty() || key_urls.is_empty() {
        answer(400);
        return twilio_error(
            StatusCode::BAD_REQUEST,
            12100,
            "a <Say> and a <Gather numDigits=\"1\" action> are expected",
        );
    }
    let status_url = get("StatusCallback").unwrap_or_default();
    let events: Vec<String> = form
        .iter()
        .filter(|(k, _)| k == "StatusCallbackEvent")
        .map(|(_, v)| v.clone())
        .collect();
    if url::Url::parse(&status_url).is_err()
        || events
            .iter()
            .any(|e| !["initiated", "ringing", "answered", "completed"].contains(&e.as_str()))
    {
        answer(400);
        return twilio_error(
            StatusCode::BAD_REQUEST,
            21609,
            "Invalid StatusCallback or StatusCallbackEvent",
        );
    }
    let refused_number = shared.lock().refused_numbers.get(&digits(&to)).copied();
    if let Some(code) = refused_number {
        answer(400);
        let message = match code {
            21211 => format!("Invalid 'To' Phone Number: {to}"),
            _ => "'To' phone number cannot be reached".to_owned(),
        };
        return twilio_error(StatusCode::BAD_REQUEST, code, &message);
    }
    let sid = format!("CA{:032x}", rand::random::<u128>());
    let call = PlacedCall {
        provider: Voice::Twilio,
        id: sid.clone(),
        to: to.clone(),
        from: from.clone(),
        language: says[0].1.clone(),
        said: says.into_iter().map(|(text, _)| text).collect(),
        status_url,
        key_urls,
        at: now,
    };
    {
        let mut state = shared.lock();
        state.calls.push(call.clone());
        state.requests.push((Voice::Twilio, 201, now));
    }
    tokio::spawn(play_twilio(shared.clone(), call));
    (
        StatusCode::CREATED,
        axum::Json(json!({
            "sid": sid, "account_sid": TWILIO_SID, "to": to, "from": from,
            "status": "queued", "direction": "outbound-api", "api_version": "2010-04-01",
        })),
    )
        .into_response()
}

fn twilio_gather_params(call: &PlacedCall, digits: &str) -> Vec<(String, String)> {
    let mut params: Vec<(String, String)> = [
        ("AccountSid", TWILIO_SID),
        ("ApiVersion", "2010-04-01"),
        ("CallSid", &call.id),
        ("CallStatus", "in-progress"),
        ("Digits", digits),
        ("Direction", "outbound-api"),
        ("FinishedOnKey", ""),
        ("From", &call.from),
        ("To", &call.to),
        ("msg", "Gather End"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect();
    params.sort();
    params
}

/// The call as Twilio runs it: status callbacks in order, the first `<Gather>`'s action when a
/// key is pressed.
async fn play_twilio(shared: Arc<Shared>, call: PlacedCall) {
    let pickup = shared
        .lock()
        .pickups
        .get(&digits(&call.to))
        .copied()
        .unwrap_or(Pickup::Press('1'));
    let step = Duration::from_millis(30);
    let status = |status: &'static str, answered_by: Option<&'static str>, seq: u32| {
        let shared = shared.clone();
        let call = call.clone();
        async move {
            tokio::time::sleep(step).await;
            let mut params: Vec<(String, String)> = vec![
                ("AccountSid".into(), TWILIO_SID.into()),
                ("ApiVersion".into(), "2010-04-01".into()),
                ("CallSid".into(), call.id.clone()),
                ("CallStatus".into(), status.into()),
                ("CallbackSource".into(), "call-progress-events".into()),
                ("Direction".into(), "outbound-api".into()),
                ("From".into(), call.from.clone()),
                ("SequenceNumber".into(), seq.to_string()),
                ("To".into(), call.to.clone()),
            ];
            if let Some(by) = answered_by {
                params.push(("AnsweredBy".into(), by.into()));
            }
            params.sort();
            let signature = twilio_signature(TWILIO_TOKEN, &call.status_url, &params);
            let url = via(&shared.lock(), &call.status_url);
            let answered = shared
                .http
                .post(url)
                .header("X-Twilio-Signature", signature)
                .form(&params)
                .send()
                .await
                .map_or(0, |r| r.status().as_u16());
            shared
                .lock()
                .callbacks
                .push((call.id.clone(), status.into(), answered));
        }
    };
    status("queued", None, 0).await;
    status("ringing", None, 1).await;
    match pickup {
        Pickup::NoAnswer => status("no-answer", None, 2).await,
        Pickup::Busy => status("busy", None, 2).await,
        Pickup::Machine => {
            status("in-progress", Some("machine_start"), 2).await;
            status("completed", Some("machine_start"), 3).await;
        }
        Pickup::Silent => {
            status("in-progress", Some("human"), 2).await;
            status("completed", Some("human"), 3).await;
        }
        Pickup::Press(key) => {
            status("in-progress", Some("human"), 2).await;
            tokio::time::sleep(step).await;
            let params = twilio_gather_params(&call, &key.to_string());
            let url = call.key_urls[0].clone();
            let signature = twilio_signature(TWILIO_TOKEN, &url, &params);
            let target = via(&shared.lock(), &url);
            let response = shared
                .http
                .post(target)
                .header("X-Twilio-Signature", signature)
                .form(&params)
                .send()
                .await;
            let (code, body) = match response {
                Ok(r) => (r.status().as_u16(), r.text().await.unwrap_or_default()),
                Err(_) => (0, String::new()),
            };
            if code == 200 && read_twiml(&body).is_err() {
                panic!("the answer to a <Gather> action is not TwiML: {body}");
            }
            {
                let mut state = shared.lock();
                state
                    .callbacks
                    .push((call.id.clone(), format!("key:{key}"), code));
                state.keys.push(KeyAnswer {
                    call: call.id.clone(),
                    status: code,
                    body,
                });
            }
            status("completed", Some("human"), 3).await;
        }
    }
}

fn vonage_error(
    status: StatusCode,
    title: &str,
    detail: &str,
    invalid: Option<(&str, &str)>,
) -> Response {
    let kind = match status.as_u16() {
        401 => "unauthorized",
        429 => "throttled",
        _ => "validation",
    };
    let mut body = json!({
        "type": format!("https://developer.nexmo.com/api-errors#{kind}"),
        "title": title,
        "detail": detail,
    });
    if let Some((name, reason)) = invalid {
        body["invalid_parameters"] = json!([{"name": name, "reason": reason}]);
    }
    (status, axum::Json(body)).into_response()
}

/// Whether `jwt` is an RS256 JWT of the application, signed by its key, valid now.
fn vonage_jwt_is_valid(public_key: &[u8], jwt: &str) -> bool {
    let mut parts = jwt.split('.');
    let (Some(h), Some(p), Some(s), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return false;
    };
    let decode = |part: &str| URL_SAFE_NO_PAD.decode(part).ok();
    let (Some(header), Some(claims), Some(signature)) = (decode(h), decode(p), decode(s)) else {
        return false;
    };
    let header: Value = serde_json::from_slice(&header).unwrap_or(Value::Null);
    let claims: Value = serde_json::from_slice(&claims).unwrap_or(Value::Null);
    let key = ring::signature::UnparsedPublicKey::new(
        &ring::signature::RSA_PKCS1_2048_8192_SHA256,
        public_key,
    );
    let now = jiff::Timestamp::now().as_second();
    header["alg"] == "RS256"
        && key
            .verify(format!("{h}.{p}").as_bytes(), &signature)
            .is_ok()
        && claims["application_id"] == VONAGE_APPLICATION
        && claims["iat"].as_i64().is_some_and(|iat| iat <= now + 60)
        && claims["exp"].as_i64().is_none_or(|exp| exp > now)
        && claims["jti"].as_str().is_some_and(|j| !j.is_empty())
}

/// Why an NCCO is not one Vonage runs, checking `talk` and `input` as documented.
fn ncco_problem(ncco: &Value) -> Option<(String, String)> {
    let actions = ncco.as_array().filter(|a| !a.is_empty());
    let Some(actions) = actions else {
        return Some(("ncco".into(), "must be a non-empty array of actions".into()));
    };
    for (i, a) in actions.iter().enumerate() {
        let at = |k: &str| format!("ncco[{i}].{k}");
        match a["action"].as_str() {
            Some("talk") => {
                let text = a["text"].as_str().unwrap_or("");
                if text.is_empty() || text.chars().count() > 1500 {
                    return Some((at("text"), "1 to 1500 characters".into()));
                }
                if a.get("language").is_some_and(|l| !l.is_string()) {
                    return Some((at("language"), "a language code".into()));
                }
            }
            Some("input") => {
                if !a["type"]
                    .as_array()
                    .is_some_and(|t| t.iter().any(|t| t == "dtmf"))
                {
                    return Some((at("type"), "must include dtmf".into()));
                }
                if !a["dtmf"]["maxDigits"]
                    .as_u64()
                    .is_some_and(|n| (1..=20).contains(&n))
                {
                    return Some((at("dtmf.maxDigits"), "1 to 20".into()));
                }
                if a["dtmf"]["timeOut"].as_u64().is_some_and(|n| n > 10) {
                    return Some((at("dtmf.timeOut"), "0 to 10".into()));
                }
                let url = a["eventUrl"]
                    .as_array()
                    .and_then(|u| u.first())
                    .and_then(Value::as_str);
                if url.is_none_or(|u| url::Url::parse(u).is_err()) {
                    return Some((at("eventUrl"), "an array holding one URL".into()));
                }
            }
            Some(
                "record" | "conversation" | "connect" | "stream" | "notify" | "wait" | "transfer",
            ) => {}
            _ => return Some((at("action"), "unknown action".into())),
        }
    }
    None
}

fn vonage_create(shared: &Arc<Shared>, headers: &HeaderMap, body: &[u8]) -> Response {
    let now = Instant::now();
    let answer = |status: u16| {
        shared.lock().requests.push((Voice::Vonage, status, now));
    };
    let bearer = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    let refused = shared.lock().credentials_refused.contains(&Voice::Vonage);
    if refused || !bearer.is_some_and(|jwt| vonage_jwt_is_valid(&shared.vonage_public_key, jwt)) {
        answer(401);
        return vonage_error(
            StatusCode::UNAUTHORIZED,
            "Unauthorized",
            "Invalid Token",
            None,
        );
    }
    {
        let mut state = shared.lock();
        while state
            .vonage_window
            .front()
            .is_some_and(|t| now.duration_since(*t) >= Duration::from_secs(1))
        {
            state.vonage_window.pop_front();
        }
        if state.vonage_window.len() >= 3 {
            drop(state);
            answer(429);
            return vonage_error(
                StatusCode::TOO_MANY_REQUESTS,
                "Too Many Requests",
                "over 3 calls created per second",
                None,
            );
        }
        if let Some(status) = state
            .fail_next
            .get_mut(&Voice::Vonage)
            .and_then(VecDeque::pop_front)
        {
            drop(state);
            answer(status);
            let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            return vonage_error(status, "Internal Error", "scripted", None);
        }
        state.vonage_window.push_back(now);
    }
    let Ok(req) = serde_json::from_slice::<Value>(body) else {
        answer(400);
        return vonage_error(
            StatusCode::BAD_REQUEST,
            "Bad Request",
            "the body is not JSON",
            None,
        );
    };
    let bad = |name: &str, reason: &str| {
        answer(400);
        vonage_error(
            StatusCode::BAD_REQUEST,
            "Bad Request",
            "Invalid parameters",
            Some((name, reason)),
        )
    };
    let is_number = |v: &Value| {
        v["type"] == "phone"
            && v["number"].as_str().is_some_and(|n| {
                (7..=15).contains(&n.len()) && n.chars().all(|c| c.is_ascii_digit())
            })
    };
    if !req["to"]
        .as_array()
        .and_then(|t| t.first())
        .is_some_and(is_number)
    {
        return bad(
            "to",
            "an array of one phone endpoint whose number is digits in E.164",
        );
    }
    if !is_number(&req["from"]) {
        return bad("from", "a phone endpoint whose number is digits in E.164");
    }
    if let Some((name, reason)) = ncco_problem(&req["ncco"]) {
        return bad(&name, &reason);
    }
    let status_url = req["event_url"]
        .as_array()
        .and_then(|u| u.first())
        .and_then(Value::as_str);
    let Some(status_url) = status_url.filter(|u| url::Url::parse(u).is_ok()) else {
        return bad("event_url", "an array holding one URL");
    };
    let actions = req["ncco"].as_array().cloned().unwrap_or_default();
    let uuid = format!("{:032x}", rand::random::<u128>());
    let call = PlacedCall {
        provider: Voice::Vonage,
        id: uuid.clone(),
        to: req["to"][0]["number"].as_str().unwrap_or("").to_owned(),
        from: req["from"]["number"].as_str().unwrap_or("").to_owned(),
        said: actions
            .iter()
            .filter(|a| a["action"] == "talk")
            .filter_map(|a| a["text"].as_str().map(str::to_owned))
            .collect(),
        language: actions
            .iter()
            .find(|a| a["action"] == "talk")
            .and_then(|a| a["language"].as_str())
            .unwrap_or("")
            .to_owned(),
        status_url: status_url.to_owned(),
        key_urls: actions
            .iter()
            .filter(|a| a["action"] == "input")
            .filter_map(|a| a["eventUrl"][0].as_str().map(str::to_owned))
            .collect(),
        at: now,
    };
    {
        let mut state = shared.lock();
        state.calls.push(call.clone());
        state.requests.push((Voice::Vonage, 201, now));
    }
    tokio::spawn(play_vonage(shared.clone(), call));
    (
        StatusCode::CREATED,
        axum::Json(json!({
            "uuid": uuid, "status": "started", "direction": "outbound",
            "conversation_uuid": format!("CON-{uuid}"),
        })),
    )
        .into_response()
}

/// Posts one Vonage callback (JSON), signed when asked; the answer's status and body.
async fn vonage_post(shared: &Arc<Shared>, url: &str, body: &Value) -> (u16, String) {
    let (target, sign) = {
        let state = shared.lock();
        (via(&state, url), state.sign_vonage)
    };
    let text = body.to_string();
    let mut request = shared
        .http
        .post(target)
        .header(header::CONTENT_TYPE, "application/json")
        .body(text.clone());
    if sign {
        use hmac::{KeyInit, Mac};
        use sha2::Digest;
        let now = jiff::Timestamp::now().as_second();
        let h = URL_SAFE_NO_PAD.encode(br#"{"alg":"HS256","typ":"JWT"}"#);
        let claims = json!({
            "iat": now, "nbf": now, "exp": now + 300, "jti": format!("{:x}", rand::random::<u64>()),
            "api_key": VONAGE_API_KEY, "application_id": VONAGE_APPLICATION,
            "payload_hash": hex::encode(sha2::Sha256::digest(text.as_bytes())),
        });
        let p = URL_SAFE_NO_PAD.encode(claims.to_string());
        let mut mac = <hmac::Hmac<sha2::Sha256> as KeyInit>::new_from_slice(
            VONAGE_SIGNATURE_SECRET.as_bytes(),
        )
        .expect("any key");
        mac.update(format!("{h}.{p}").as_bytes());
        let s = URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes());
        request = request.bearer_auth(format!("{h}.{p}.{s}"));
    }
    match request.send().await {
        Ok(r) => (r.status().as_u16(), r.text().await.unwrap_or_default()),
        Err(_) => (0, String::new()),
    }
}

/// The call as Vonage runs it: events to the event URL, the `input` result to its `eventUrl`,
/// and the NCCO answered to it run in turn (a further `input` awaited again).
async fn play_vonage(shared: Arc<Shared>, call: PlacedCall) {
    let pickup = shared
        .lock()
        .pickups
        .get(&digits(&call.to))
        .copied()
        .unwrap_or(Pickup::Press('1'));
    let step = Duration::from_millis(30);
    let base = |extra: Value| {
        let mut body = json!({
            "from": call.from, "to": call.to, "uuid": call.id,
            "conversation_uuid": format!("CON-{}", call.id), "direction": "outbound",
            "timestamp": jiff::Timestamp::now().to_string(),
        });
        if let (Some(b), Some(e)) = (body.as_object_mut(), extra.as_object()) {
            b.extend(e.clone());
        }
        body
    };
    let event = |status: &'static str| {
        let shared = shared.clone();
        let body = base(json!({"status": status}));
        let call = call.clone();
        async move {
            tokio::time::sleep(step).await;
            let (code, _) = vonage_post(&shared, &call.status_url, &body).await;
            shared
                .lock()
                .callbacks
                .push((call.id.clone(), status.into(), code));
        }
    };
    event("started").await;
    event("ringing").await;
    match pickup {
        Pickup::NoAnswer => event("timeout").await,
        Pickup::Busy => event("busy").await,
        Pickup::Machine => {
            event("machine").await;
            event("completed").await;
        }
        Pickup::Silent | Pickup::Press(_) => {
            event("answered").await;
            let mut next = call.key_urls.first().cloned();
            while let Some(url) = next.take() {
                tokio::time::sleep(step).await;
                let dtmf = match pickup {
                    Pickup::Press(key) => json!({"digits": key.to_string(), "timed_out": false}),
                    _ => json!({"digits": "", "timed_out": true}),
                };
                let (code, body) = vonage_post(&shared, &url, &base(json!({"dtmf": dtmf}))).await;
                let ncco: Value = serde_json::from_str(&body).unwrap_or(Value::Null);
                if code == 200 {
                    if let Some((name, reason)) = ncco_problem(&ncco) {
                        panic!(
                            "the answer to an input event is not an NCCO ({name}: {reason}): {body}"
                        );
                    }
                    let actions = ncco.as_array().cloned().unwrap_or_default();
                    let mut state = shared.lock();
                    if let Some(c) = state.calls.iter_mut().find(|c| c.id == call.id) {
                        c.said.extend(
                            actions
                                .iter()
                                .filter_map(|a| a["text"].as_str().map(str::to_owned)),
                        );
                    }
                    next = actions
                        .iter()
                        .find(|a| a["action"] == "input")
                        .and_then(|a| a["eventUrl"][0].as_str().map(str::to_owned));
                }
                let mut state = shared.lock();
                let key = dtmf["digits"].as_str().unwrap_or("").to_owned();
                state
                    .callbacks
                    .push((call.id.clone(), format!("key:{key}"), code));
                state.keys.push(KeyAnswer {
                    call: call.id.clone(),
                    status: code,
                    body,
                });
            }
            event("completed").await;
        }
    }
}
