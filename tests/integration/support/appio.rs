//! A local stand-in for PagoPA's App IO API for services (io-functions-services'
//! `openapi/index.yaml`, "IO API for Public Administration Services", base path `/api/v1`), on
//! one loopback port:
//! - `POST /api/v1/profiles` (`getProfileByPOST`, body `FiscalCodePayload`) → `200`
//!   `LimitedProfile` with `sender_allowed`, or `404` ProblemJson for a citizen not on IO;
//! - `POST /api/v1/messages` (`submitMessageforUserWithFiscalCodeInBody`, body `NewMessage`) →
//!   `201` `{id}` with a `Location` header;
//! - `GET /api/v1/messages/{fiscal_code}/{id}` (`getMessage`) → `200` with `status` (ACCEPTED
//!   at first, then PROCESSED; REJECTED for a citizen not on IO or who blocked the service, as
//!   `MessageStatusValue` describes), or `404` ProblemJson.
//!
//! What it enforces, from the specification: every call carries the service's key in
//! `Ocp-Apim-Subscription-Key` (`securityDefinitions.SubscriptionKey`; `401` without it, as Azure
//! API Management answers); a fiscal code has the shape of `FiscalCode`
//! (`@pagopa/ts-commons` `PatternString`, no check character); `content.subject` is 10 to 120
//! characters and `content.markdown` 80 to 10,000 (`MessageContentBase`): its TypeScript server
//! counts UTF-16 units, its JSON Schema characters, and the double refuses what either would;
//! a bad body is answered `400` with a ProblemJson naming the field, as
//! io-functions-commons' validation middleware does (`title` "Invalid NewMessage", `detail`
//! naming the value's path). `429` when more requests than the configured rate arrive within a
//! second (PagoPA's guide, "Inviare un messaggio": every API may answer 429, the client must
//! retry more slowly; no `Retry-After` is promised, so none is sent unless asked). A path the
//! API does not have is answered by the gateway, not as a ProblemJson (PagoPA's guide, "Errori":
//! `404` `{"statusCode": 404, "message": "Resource not found"}`). `403` comes in the two kinds
//! io-functions-services answers: "Recipient forbidden" for a code the service may not write to
//! (`canWriteMessage` for a sandbox key, `utils/profile.ts` for an incomplete service), and "User
//! has no valid scopes" for a key without scopes (io-functions-commons' `azure_api_auth`). Scripted
//! answers (a status for the next message calls), a revoked key and a `201` with an empty body
//! stand in for outages. A bad request never panics it.

#![allow(dead_code)]

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::{Request, State as AxumState};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

pub const APPIO_KEY: &str = "appio-subscription-key-0123456789";

/// What a test sets before starting the double.
#[derive(Clone, Debug, Default)]
pub struct AppIoOptions {
    /// Requests a second (over every endpoint) before `429`; `None`: no limit.
    pub rate_per_second: Option<usize>,
    /// Sent with every `429`, in seconds.
    pub retry_after: Option<u64>,
    /// Status reads answered ACCEPTED before PROCESSED.
    pub accepted_reads: usize,
}

/// A message the double took.
#[derive(Clone, Debug)]
pub struct IoMessage {
    pub id: String,
    pub fiscal_code: String,
    pub subject: String,
    pub markdown: String,
    /// REJECTED for a citizen not on IO or who turned the service off; else ACCEPTED, then
    /// PROCESSED.
    pub rejected: bool,
    pub reads: usize,
}

/// One request as answered.
#[derive(Clone, Debug)]
pub struct IoRequest {
    pub method: String,
    pub path: String,
    pub status: u16,
    pub body: String,
}

#[derive(Default)]
struct State {
    /// Citizens on IO: fiscal code → whether they allow the service.
    profiles: BTreeMap<String, bool>,
    messages: Vec<IoMessage>,
    requests: Vec<IoRequest>,
    /// Answers for the next `POST /messages` past authentication, in order.
    scripted: VecDeque<u16>,
    window: Option<(Instant, usize)>,
    throttled: usize,
    revoked: bool,
    /// Codes this service may not write to (a sandbox key's non-authorised recipients).
    forbidden: std::collections::BTreeSet<String>,
    /// The key has no scope left (`User has no valid scopes`).
    unscoped: bool,
    /// The next `201`s come with an empty body (only `Location` names the message).
    bare_created: usize,
}

struct Shared {
    options: AppIoOptions,
    state: Mutex<State>,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

pub struct AppIoDouble {
    shared: Arc<Shared>,
    /// "http://127.0.0.1:PORT".
    pub base: String,
    server: tokio::task::JoinHandle<()>,
}

impl Drop for AppIoDouble {
    fn drop(&mut self) {
        self.server.abort();
    }
}

impl AppIoDouble {
    pub async fn start(options: AppIoOptions) -> AppIoDouble {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind App IO double");
        let addr = listener.local_addr().expect("App IO double address");
        let shared = Arc::new(Shared {
            options,
            state: Mutex::new(State::default()),
        });
        let app = Router::new().fallback(handle).with_state(shared.clone());
        let server = tokio::spawn(async move {
            axum::serve(listener, app)
                .await
                .expect("App IO double server");
        });
        AppIoDouble {
            shared,
            base: format!("http://{addr}"),
            server,
        }
    }

    /// The API as `channels.appio.base_url` names it.
    pub fn api(&self) -> String {
        format!("{}/api/v1", self.base)
    }

    /// A citizen on IO, allowing the service or not.
    pub fn add_profile(&self, fiscal_code: &str, sender_allowed: bool) {
        self.shared
            .lock()
            .profiles
            .insert(fiscal_code.to_owned(), sender_allowed);
    }

    pub fn script(&self, statuses: &[u16]) {
        self.shared.lock().scripted.extend(statuses);
    }

    /// A code this service may not write to: `403` Recipient forbidden on the profile and the
    /// message, as `canWriteMessage` answers a sandbox key for a non-authorised recipient.
    pub fn forbid(&self, fiscal_code: &str) {
        self.shared.lock().forbidden.insert(fiscal_code.to_owned());
    }

    /// The key loses (or gets back) its scopes: `403` User has no valid scopes on every call.
    pub fn unscope(&self, unscoped: bool) {
        self.shared.lock().unscoped = unscoped;
    }

    /// The next `n` messages taken are answered `201` with an empty body.
    pub fn bare_created(&self, n: usize) {
        self.shared.lock().bare_created = n;
    }

    pub fn revoke(&self, revoked: bool) {
        self.shared.lock().revoked = revoked;
    }

    pub fn messages(&self) -> Vec<IoMessage> {
        self.shared.lock().messages.clone()
    }

    pub fn requests(&self) -> Vec<IoRequest> {
        self.shared.lock().requests.clone()
    }

    pub fn throttled(&self) -> usize {
        self.shared.lock().throttled
    }
}

/// A ProblemJson (RFC 7807), as PagoPA answers errors.
fn problem(status: u16, title: &str, detail: &str) -> (u16, Value) {
    (
        status,
        json!({"type": "about:blank", "title": title, "status": status, "detail": detail}),
    )
}

/// The shape of `FiscalCode` in `@pagopa/ts-commons`:
/// `^[A-Z]{6}[0-9LMNPQRSTUV]{2}[ABCDEHLMPRST][0-9LMNPQRSTUV]{2}[A-Z][0-9LMNPQRSTUV]{3}[A-Z]$`.
pub fn fiscal_code_shape(code: &str) -> bool {
    let b = code.as_bytes();
    let digit = |c: u8| c.is_ascii_digit() || b"LMNPQRSTUV".contains(&c);
    b.len() == 16
        && b[..6].iter().all(u8::is_ascii_uppercase)
        && digit(b[6])
        && digit(b[7])
        && b"ABCDEHLMPRST".contains(&b[8])
        && digit(b[9])
        && digit(b[10])
        && b[11].is_ascii_uppercase()
        && b[12..15].iter().copied().all(digit)
        && b[15].is_ascii_uppercase()
}

/// `MessageContentBase`'s lengths, refused when either reading (UTF-16 units, as the server
/// counts; characters, as the JSON Schema does) falls outside them: the problem's detail, as
/// io-ts reports a value at its path.
pub fn content_problem(subject: &str, markdown: &str) -> Option<String> {
    let outside = |text: &str, min: usize, max: usize| {
        let chars = text.chars().count();
        let units = text.encode_utf16().count();
        chars < min || units > max || units < min || chars > max
    };
    if outside(subject, 10, 120) {
        return Some(format!(
            "value [{subject:?}] at [root.0.content.0.subject] is not a valid [string of length >= 10 and < 121]"
        ));
    }
    if outside(markdown, 80, 10_000) {
        return Some(format!(
            "value of length {} at [root.0.content.0.markdown] is not a valid [string of length >= 80 and < 10001]",
            markdown.chars().count()
        ));
    }
    None
}

async fn handle(AxumState(shared): AxumState<Arc<Shared>>, req: Request) -> Response {
    let method = req.method().to_string();
    let path = req.uri().path().to_owned();
    let headers = req.headers().clone();
    let body = axum::body::to_bytes(req.into_body(), 1 << 20)
        .await
        .unwrap_or_default();
    let text = String::from_utf8_lossy(&body).into_owned();
    let mut state = shared.lock();
    let (status, answer) = answer(&shared.options, &mut state, &method, &path, &headers, &text);
    // `Location`: the created message's URL, which `getMessage` answers.
    let location = (status == 201)
        .then(|| state.messages.last())
        .flatten()
        .map(|m| format!("/api/v1/messages/{}/{}", m.fiscal_code, m.id));
    state.requests.push(IoRequest {
        method,
        path: path.clone(),
        status,
        body: text,
    });
    drop(state);
    let mut resp = (
        StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
        [(header::CONTENT_TYPE, "application/json")],
        if answer.is_null() {
            String::new()
        } else {
            answer.to_string()
        },
    )
        .into_response();
    if status == 429
        && let Some(secs) = shared.options.retry_after
        && let Ok(value) = secs.to_string().parse()
    {
        resp.headers_mut().insert(header::RETRY_AFTER, value);
    }
    if let Some(value) = location.and_then(|l| l.parse().ok()) {
        resp.headers_mut().insert(header::LOCATION, value);
    }
    resp
}

fn answer(
    options: &AppIoOptions,
    state: &mut State,
    method: &str,
    path: &str,
    headers: &HeaderMap,
    body: &str,
) -> (u16, Value) {
    // Azure API Management, before the function: the subscription key.
    let key = headers
        .get("ocp-apim-subscription-key")
        .and_then(|v| v.to_str().ok());
    if key != Some(APPIO_KEY) || state.revoked {
        return (
            401,
            json!({"statusCode": 401, "message": "Access denied due to invalid subscription key. Make sure to provide a valid key for an active subscription."}),
        );
    }
    if let Some(limit) = options.rate_per_second {
        let now = Instant::now();
        let (start, count) = match state.window {
            Some((start, count)) if now.duration_since(start) < Duration::from_secs(1) => {
                (start, count)
            }
            _ => (now, 0),
        };
        if count >= limit {
            state.throttled += 1;
            state.window = Some((start, count));
            return (
                429,
                json!({"statusCode": 429, "message": "Rate limit is exceeded."}),
            );
        }
        state.window = Some((start, count + 1));
    }
    // API Management answers a path it does not know itself, not as a ProblemJson (PagoPA's
    // guide, "Errori": `{"statusCode": 404, "message": "Resource not found"}` for a wrong path).
    let unknown = || {
        (
            404,
            json!({"statusCode": 404, "message": "Resource not found"}),
        )
    };
    let Some(rest) = path.strip_prefix("/api/v1/") else {
        return unknown();
    };
    // `ForbiddenError`s of the functions' authorisation (io-functions-commons
    // `azure_api_auth`): a key with no scope is refused on every operation.
    if state.unscoped {
        return problem(
            403,
            "User has no valid scopes",
            "You are not part of any valid scope, you should ask the administrator to give you the required permissions.",
        );
    }
    let segments: Vec<&str> = rest.split('/').collect();
    match (method, segments.as_slice()) {
        ("POST", ["profiles"]) => profile(state, body),
        ("POST", ["messages"]) => submit(state, body),
        ("GET", ["messages", code, id]) => read(options, state, code, id),
        _ => unknown(),
    }
}

fn profile(state: &mut State, body: &str) -> (u16, Value) {
    let payload: Value = match serde_json::from_str(body) {
        Ok(v) => v,
        Err(_) => return problem(400, "Invalid FiscalCodePayload", "the body is not JSON"),
    };
    let Some(code) = payload["fiscal_code"].as_str() else {
        return problem(
            400,
            "Invalid FiscalCodePayload",
            "value [undefined] at [root.0.fiscal_code] is not a valid [FiscalCode]",
        );
    };
    if !fiscal_code_shape(code) {
        return problem(
            400,
            "Invalid FiscalCodePayload",
            "value at [root.0.fiscal_code] is not a valid [FiscalCode]",
        );
    }
    // `canWriteMessage` (and the check of an incomplete service) before anything else:
    // `ResponseErrorForbiddenNotAuthorizedForRecipient` of `@pagopa/ts-commons`.
    if state.forbidden.contains(code) {
        return problem(
            403,
            "Recipient forbidden",
            "You are not allowed to issue requests for the recipient.",
        );
    }
    match state.profiles.get(code) {
        Some(&allowed) => (
            200,
            json!({"sender_allowed": allowed, "preferred_languages": ["it_IT"]}),
        ),
        None => problem(
            404,
            "Profile not found",
            "The profile you requested was not found in the system.",
        ),
    }
}

fn submit(state: &mut State, body: &str) -> (u16, Value) {
    let message: Value = match serde_json::from_str(body) {
        Ok(v) => v,
        Err(_) => return problem(400, "Invalid NewMessage", "the body is not JSON"),
    };
    let Some(code) = message["fiscal_code"].as_str() else {
        return problem(
            400,
            "Missing fiscal code",
            "the fiscal code is required in the body of this operation",
        );
    };
    if !fiscal_code_shape(code) {
        return problem(
            400,
            "Invalid NewMessage",
            "value at [root.0.fiscal_code] is not a valid [FiscalCode]",
        );
    }
    // `canWriteMessage` (and the check of an incomplete service) before anything else:
    // `ResponseErrorForbiddenNotAuthorizedForRecipient` of `@pagopa/ts-commons`.
    if state.forbidden.contains(code) {
        return problem(
            403,
            "Recipient forbidden",
            "You are not allowed to issue requests for the recipient.",
        );
    }
    let (Some(subject), Some(markdown)) = (
        message["content"]["subject"].as_str(),
        message["content"]["markdown"].as_str(),
    ) else {
        return problem(
            400,
            "Invalid NewMessage",
            "value at [root.0.content] is not a valid [MessageContent]: subject and markdown are required strings",
        );
    };
    if let Some(detail) = content_problem(subject, markdown) {
        return problem(400, "Invalid NewMessage", &detail);
    }
    if let Some(status) = state.scripted.pop_front() {
        return match status {
            429 => (
                429,
                json!({"statusCode": 429, "message": "Rate limit is exceeded."}),
            ),
            s => problem(s, "Scripted failure", "The message cannot be delivered."),
        };
    }
    let rejected = state.profiles.get(code) != Some(&true);
    let id = format!("01BX9NSMKVXXS5PSP2FA{:06}", state.messages.len() + 1);
    state.messages.push(IoMessage {
        id: id.clone(),
        fiscal_code: code.to_owned(),
        subject: subject.to_owned(),
        markdown: markdown.to_owned(),
        rejected,
        reads: 0,
    });
    if state.bare_created > 0 {
        state.bare_created -= 1;
        return (201, Value::Null);
    }
    (201, json!({"id": id}))
}

fn read(options: &AppIoOptions, state: &mut State, code: &str, id: &str) -> (u16, Value) {
    if !fiscal_code_shape(code) {
        return problem(
            400,
            "Invalid FiscalCode",
            "value at [root.0.fiscal_code] is not a valid [FiscalCode]",
        );
    }
    let Some(m) = state
        .messages
        .iter_mut()
        .find(|m| m.id == id && m.fiscal_code == code)
    else {
        return problem(
            404,
            "Message not found",
            "No message found for the provided ID.",
        );
    };
    m.reads += 1;
    let status = if m.rejected {
        "REJECTED"
    } else if m.reads <= options.accepted_reads {
        "ACCEPTED"
    } else {
        "PROCESSED"
    };
    (
        200,
        json!({
            "message": {
                "id": m.id, "fiscal_code": m.fiscal_code,
                "created_at": "2026-01-01T00:00:00.000Z",
                "content": {"subject": m.subject, "markdown": m.markdown},
                "sender_service_id": "01BX9NSMKVXXS5PSP2FATZM6QX",
                "feature_level_type": "STANDARD",
            },
            "status": status,
        }),
    )
}

/// A codice fiscale with its check character computed, from its first fifteen characters.
pub fn with_check(first: &str) -> String {
    const ODD: [u32; 26] = [
        1, 0, 5, 7, 9, 13, 15, 17, 19, 21, 2, 4, 18, 20, 11, 3, 6, 8, 12, 14, 16, 10, 22, 25, 24,
        23,
    ];
    let sum: u32 = first
        .bytes()
        .enumerate()
        .map(|(i, b)| {
            let index = if b.is_ascii_digit() {
                b - b'0'
            } else {
                b - b'A'
            } as usize;
            if i % 2 == 0 { ODD[index] } else { index as u32 }
        })
        .sum();
    format!("{first}{}", (b'A' + (sum % 26) as u8) as char)
}
