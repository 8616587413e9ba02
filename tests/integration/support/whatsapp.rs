//! A double of Meta's WhatsApp Cloud API, written from Meta's documentation, not from
//! Banditore's code:
//!
//! - `POST /{version}/{phone_number_id}/messages` with `Authorization: Bearer <token>`; a wrong
//!   or missing token is `401` with Graph error 190 (Meta, "WhatsApp error codes":
//!   authorization errors 0, 190).
//! - The body of a template message (Meta, "Send message templates"): `messaging_product:
//!   "whatsapp"`, `recipient_type: "individual"`, `to`, `type: "template"`, `template: {name,
//!   language: {code}, components: [{type: "body", parameters: [{type: "text", text}]},
//!   {type: "button", sub_type: "url", index: "0", parameters: [{type: "text", text}]}]}`.
//!   Accepted: `{messaging_product, contacts: [{input, wa_id}], messages: [{id: "wamid…"}]}`.
//! - Template rules: an unknown template or translation is 132001; a number of body (or
//!   button) parameters other than the template's is 132000; an empty text parameter is 131008
//!   (required parameter missing); a parameter with a new-line or a tab or more than 4
//!   consecutive spaces is 100 ("Param text cannot have new-line/tab characters or more than 4
//!   consecutive spaces", reported by many integrators); a body longer than 1024 characters
//!   once filled in is 132005 (message-template guidelines: the body holds 1024 characters).
//! - Throughput (Meta, "Throughput"): 80 messages a second per number by default; past it,
//!   130429. The pair rate (Meta, "Messaging limits" / error 131056): about one message every 6
//!   seconds to one person. The messaging limit: different people reached in a rolling 24
//!   hours (250, then 1K/2K, 10K, 100K, unlimited); Meta documents no error code for going past
//!   it, so the double records it as a violation for the tests to assert on.
//! - Errors are Graph API errors, `{"error": {message, type, code, error_data: {messaging_product,
//!   details}, fbtrace_id}}`, with HTTP 400 (401 for credentials, 5xx for Meta's own trouble).
//! - Status webhooks (Meta, "Webhooks" / "Status messages"): `POST` of
//!   `{object: "whatsapp_business_account", entry: [{id, changes: [{field: "messages", value:
//!   {messaging_product, metadata, statuses: [{id, status, timestamp, recipient_id, errors}]}}]}]}`
//!   signed `X-Hub-Signature-256: sha256=<hex HMAC-SHA256 of the raw body with the app secret>`;
//!   the subscription handshake is a `GET ?hub.mode=subscribe&hub.verify_token=…&hub.challenge=…`
//!   that must answer the challenge.

#![allow(dead_code)]

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use hmac::{Hmac, KeyInit, Mac};
use serde_json::{Value, json};
use sha2::Sha256;

pub const WA_TOKEN: &str = "EAAG-test-system-user-token-0123456789";
pub const WA_PHONE_NUMBER_ID: &str = "106540352242922";
pub const WA_APP_SECRET: &str = "0123456789abcdef0123456789abcdef";
pub const WA_VERIFY_TOKEN: &str = "verifica-banditore-0123456789";
pub const WA_VERSION: &str = "v23.0";

/// Meta's limit on a template body once filled in.
pub const MAX_BODY: usize = 1024;
pub const PAIR_INTERVAL: Duration = Duration::from_secs(6);

/// An approved template in one language.
#[derive(Clone, Debug)]
pub struct Approved {
    pub name: String,
    pub language: String,
    /// The body with `{{1}}`, `{{2}}`…
    pub body: String,
    /// Whether it has a URL button with a dynamic suffix.
    pub url_button: bool,
}

impl Approved {
    pub fn parameters(&self) -> usize {
        (1..20)
            .take_while(|n| self.body.contains(&format!("{{{{{n}}}}}")))
            .count()
    }

    /// The characters of its own words, without its `{{n}}`.
    pub fn own_chars(&self) -> usize {
        let mut text = self.body.clone();
        for n in 1..=self.parameters() {
            text = text.replace(&format!("{{{{{n}}}}}"), "");
        }
        text.chars().count()
    }
}

/// One message WhatsApp accepted.
#[derive(Clone, Debug)]
pub struct Accepted {
    pub id: String,
    pub to: String,
    pub template: String,
    pub language: String,
    pub parameters: Vec<String>,
    pub button: Option<String>,
    /// The body as the person reads it.
    pub body: String,
    pub at: Instant,
}

/// One answer given, refusals included.
#[derive(Clone, Debug)]
pub struct Answered {
    pub status: u16,
    pub code: Option<i64>,
    pub at: Instant,
}

pub struct Options {
    pub templates: Vec<Approved>,
    pub per_second: usize,
    /// People a rolling day; 0 for unlimited.
    pub tier: usize,
}

#[derive(Default)]
pub struct Inner {
    accepted: Vec<Accepted>,
    answered: Vec<Answered>,
    /// Codes to answer with next (HTTP status, Graph code), in order.
    scripted: VecDeque<(u16, i64)>,
    violations: Vec<String>,
    revoked: bool,
    next_id: u64,
}

struct Shared {
    options: Options,
    inner: Mutex<Inner>,
}

pub struct WhatsAppDouble {
    shared: Arc<Shared>,
    pub base: String,
    server: tokio::task::JoinHandle<()>,
}

impl Drop for WhatsAppDouble {
    fn drop(&mut self) {
        self.server.abort();
    }
}

fn graph_error(status: u16, code: i64, message: &str, details: &str) -> Response {
    let body = json!({"error": {
        "message": format!("(#{code}) {message}"),
        "type": "OAuthException",
        "code": code,
        "error_data": {"messaging_product": "whatsapp", "details": details},
        "fbtrace_id": "AbCdEfGhIjK",
    }});
    (
        StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_REQUEST),
        axum::Json(body),
    )
        .into_response()
}

/// Meta's rule for a text parameter, or what is wrong with it.
fn parameter_problem(text: &str) -> Option<(i64, &'static str)> {
    if text.is_empty() {
        return Some((131008, "Required parameter is missing"));
    }
    if text.contains(['\n', '\t']) || text.contains("     ") {
        return Some((
            100,
            "Param text cannot have new-line/tab characters or more than 4 consecutive spaces",
        ));
    }
    None
}

impl WhatsAppDouble {
    pub async fn start(options: Options) -> WhatsAppDouble {
        let shared = Arc::new(Shared {
            options,
            inner: Mutex::default(),
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let app = Router::new().fallback(handle).with_state(shared.clone());
        let server = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        WhatsAppDouble {
            shared,
            base,
            server,
        }
    }

    fn inner(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.shared.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn accepted(&self) -> Vec<Accepted> {
        self.inner().accepted.clone()
    }

    pub fn answered(&self) -> Vec<Answered> {
        self.inner().answered.clone()
    }

    pub fn violations(&self) -> Vec<String> {
        self.inner().violations.clone()
    }

    /// The next answers are these Graph errors, in order.
    pub fn script(&self, errors: &[(u16, i64)]) {
        self.inner().scripted.extend(errors.iter().copied());
    }

    /// The token is revoked (or expired): 401, code 190.
    pub fn revoke(&self, revoked: bool) {
        self.inner().revoked = revoked;
    }

    pub async fn wait_for(&self, n: usize, within: Duration) -> Vec<Accepted> {
        let deadline = Instant::now() + within;
        loop {
            let accepted = self.accepted();
            if accepted.len() >= n {
                return accepted;
            }
            if Instant::now() > deadline {
                panic!(
                    "{} WhatsApp messages accepted of {n} within {within:?}: {accepted:#?}\nanswers: {:?}",
                    accepted.len(),
                    self.answered()
                );
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

async fn handle(State(shared): State<Arc<Shared>>, req: Request) -> Response {
    let now = Instant::now();
    let path = req.uri().path().to_owned();
    let auth = req
        .headers()
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let bytes = axum::body::to_bytes(req.into_body(), 1 << 20)
        .await
        .unwrap_or_default();
    let mut inner = shared.inner.lock().unwrap_or_else(|e| e.into_inner());
    let (response, code, accepted) = answer(&shared.options, &mut inner, &path, auth, &bytes, now);
    inner.answered.push(Answered {
        status: response.status().as_u16(),
        code,
        at: now,
    });
    if let Some(a) = accepted {
        inner.accepted.push(a);
    }
    response
}

/// The double's answer to one request, as the server gives it (also for property tests that
/// ask it directly).
pub fn answer(
    options: &Options,
    inner: &mut Inner,
    path: &str,
    auth: Option<String>,
    bytes: &[u8],
    now: Instant,
) -> (Response, Option<i64>, Option<Accepted>) {
    let refuse = |status: u16, code: i64, message: &str, details: &str| {
        (
            graph_error(status, code, message, details),
            Some(code),
            None,
        )
    };
    if path != format!("/{WA_VERSION}/{WA_PHONE_NUMBER_ID}/messages") {
        return refuse(
            400,
            100,
            "Unsupported post request",
            "Object does not exist or does not support this operation",
        );
    }
    if inner.revoked || auth.as_deref() != Some(&format!("Bearer {WA_TOKEN}")) {
        return refuse(
            401,
            190,
            "Error validating access token: Session has expired",
            "",
        );
    }
    if let Some((status, code)) = inner.scripted.pop_front() {
        return refuse(status, code, "Scripted", "scripted by the test");
    }
    let Ok(body) = serde_json::from_slice::<Value>(bytes) else {
        return refuse(400, 100, "Invalid parameter", "the body is not JSON");
    };
    if body["messaging_product"] != "whatsapp" {
        return refuse(
            400,
            100,
            "Invalid parameter",
            "messaging_product must be whatsapp",
        );
    }
    if !body["recipient_type"].is_null() && body["recipient_type"] != "individual" {
        return refuse(400, 100, "Invalid parameter", "recipient_type");
    }
    let to = body["to"].as_str().unwrap_or("");
    if to.is_empty()
        || !to
            .trim_start_matches('+')
            .chars()
            .all(|c| c.is_ascii_digit())
    {
        return refuse(400, 100, "Invalid parameter", "to must be a phone number");
    }
    let to = to.trim_start_matches('+').to_owned();
    if body["type"] != "template" {
        // Outside the 24-hour window only a template may be sent.
        return refuse(
            400,
            131047,
            "Re-engagement message",
            "More than 24 hours have passed since the recipient last replied",
        );
    }
    let template = &body["template"];
    let name = template["name"].as_str().unwrap_or("");
    let language = template["language"]["code"].as_str().unwrap_or("");
    let Some(approved) = options
        .templates
        .iter()
        .find(|t| t.name == name && t.language == language)
    else {
        return refuse(
            404,
            132001,
            "Template name does not exist in the translation",
            &format!("template name ({name}) does not exist in {language}"),
        );
    };
    let components = template["components"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let mut body_params: Vec<String> = Vec::new();
    let mut button: Option<String> = None;
    for c in &components {
        match c["type"].as_str() {
            Some("body") => {
                for p in c["parameters"].as_array().into_iter().flatten() {
                    if p["type"] != "text" {
                        return refuse(400, 100, "Invalid parameter", "parameter type");
                    }
                    let Some(text) = p["text"].as_str() else {
                        return refuse(400, 131008, "Required parameter is missing", "text");
                    };
                    body_params.push(text.to_owned());
                }
            }
            Some("button") => {
                if c["sub_type"] != "url" || c["index"] != "0" {
                    return refuse(
                        400,
                        132000,
                        "Number of parameters does not match the expected number of params",
                        "button",
                    );
                }
                let params = c["parameters"].as_array().cloned().unwrap_or_default();
                if params.len() != 1 {
                    return refuse(
                        400,
                        132000,
                        "Number of parameters does not match the expected number of params",
                        "button",
                    );
                }
                button = params[0]["text"].as_str().map(str::to_owned);
            }
            _ => return refuse(400, 100, "Invalid parameter", "component type"),
        }
    }
    if body_params.len() != approved.parameters() || button.is_some() != approved.url_button {
        return refuse(
            400,
            132000,
            "Number of parameters does not match the expected number of params",
            &format!(
                "body: expected number of params ({}) does not match received number of params ({})",
                approved.parameters(),
                body_params.len()
            ),
        );
    }
    for text in body_params.iter().chain(button.iter()) {
        if let Some((code, message)) = parameter_problem(text) {
            return refuse(400, code, message, message);
        }
    }
    let mut filled = approved.body.clone();
    for (i, text) in body_params.iter().enumerate() {
        filled = filled.replace(&format!("{{{{{}}}}}", i + 1), text);
    }
    if filled.chars().count() > MAX_BODY {
        return refuse(
            400,
            132005,
            "Translated text too long",
            "Translated text is too long",
        );
    }
    // Throughput: messages of the last second, as Meta counts them on arrival.
    let last_second = inner
        .accepted
        .iter()
        .filter(|a| now.duration_since(a.at) < Duration::from_secs(1))
        .count();
    if last_second >= options.per_second {
        return refuse(
            400,
            130429,
            "Rate limit hit",
            "Cloud API message throughput has been reached",
        );
    }
    if inner
        .accepted
        .iter()
        .any(|a| a.to == to && now.duration_since(a.at) < PAIR_INTERVAL)
    {
        return refuse(
            400,
            131056,
            "(Business Account, Consumer Account) pair rate limit hit",
            "Message failed to send because there were too many messages sent from this phone number to the same phone number in a short period of time",
        );
    }
    if options.tier > 0 {
        let mut people: Vec<&str> = inner.accepted.iter().map(|a| a.to.as_str()).collect();
        people.sort();
        people.dedup();
        if !people.contains(&to.as_str()) && people.len() >= options.tier {
            inner.violations.push(format!(
                "{to}: a person beyond the messaging limit of {} a day",
                options.tier
            ));
        }
    }
    inner.next_id += 1;
    let id = format!("wamid.HBgLMzkzMzMxMjM0NTY3FQIAERgS{:012X}", inner.next_id);
    let accepted = Accepted {
        id: id.clone(),
        to: to.clone(),
        template: name.to_owned(),
        language: language.to_owned(),
        parameters: body_params,
        button,
        body: filled,
        at: now,
    };
    let reply = json!({
        "messaging_product": "whatsapp",
        "contacts": [{"input": to, "wa_id": to}],
        "messages": [{"id": id}],
    });
    (axum::Json(reply).into_response(), None, Some(accepted))
}

/// A status webhook as Meta posts it, for message `id` sent to `to`.
pub fn status_webhook(id: &str, to: &str, status: &str, error: Option<(i64, &str)>) -> String {
    let mut s = json!({
        "id": id,
        "status": status,
        "timestamp": "1733400000",
        "recipient_id": to,
    });
    if let Some((code, title)) = error {
        s["errors"] = json!([{"code": code, "title": title, "message": title,
            "error_data": {"details": title}}]);
    }
    json!({
        "object": "whatsapp_business_account",
        "entry": [{"id": "102290129340398", "changes": [{"field": "messages", "value": {
            "messaging_product": "whatsapp",
            "metadata": {"display_phone_number": "390612345678", "phone_number_id": WA_PHONE_NUMBER_ID},
            "statuses": [s],
        }}]}],
    })
    .to_string()
}

/// `X-Hub-Signature-256` for `body`, signed with `secret`.
pub fn hub_signature(secret: &str, body: &str) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(body.as_bytes());
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

/// The approved incident template of the tests, in Italian: four parameters and, if asked, the
/// acknowledgement button.
pub fn incident_template(language: &str, url_button: bool) -> Approved {
    Approved {
        name: "banditore_incidente".into(),
        language: language.into(),
        body: "*{{1}}*\nServizi: {{2}}\n{{3}}\nConferma la ricezione: {{4}}".into(),
        url_button,
    }
}

/// The double's options with Meta's defaults: 80 a second, no daily limit.
pub fn options(templates: Vec<Approved>) -> Options {
    Options {
        templates,
        per_second: 80,
        tier: 0,
    }
}
