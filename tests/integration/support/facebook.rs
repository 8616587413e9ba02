//! A local stand-in for the Facebook Graph API's Page publishing, on a loopback port:
//! - `POST /v{N}.{M}/{page_id}/feed` with `message`, optional `link` and `access_token` (form,
//!   query or JSON; the token also as `Authorization: Bearer`) → 200 `{"id":"<page>_<post>"}`;
//! - `POST /v{N}.{M}/{post_id}/comments` with `message` → 200 `{"id":"<post>_<comment>"}`.
//!
//! Errors are Graph's: HTTP 400 (5xx for server faults) with
//! `{"error":{"message","type","code","error_subcode","fbtrace_id"}}`: code 190 for a missing,
//! wrong or expired Page token, 100 for unknown objects, missing parameters and a message over
//! 63,206 UTF-16 units, 506 for the same message posted twice within 24 h, 32 and 80001 for
//! throttling. Every answer carries `X-Business-Use-Case-Usage` with the share of the Page's call
//! budget (rolling 24 h) used.
//! The double can be scripted to fail (5xx: code 2, transient), throttle (400 code 32 "Page
//! request limit reached", regain in 1 minute) or lose the reply of a stored post; its
//! `throttled()` counts code 32 (scripted) and code 80001 (by budget). A bad request never
//! panics it: it gets Graph's error. What it shares with the other networks' doubles is in
//! `double`.

// Shared by the integration tests, which each use part of it.
#![allow(dead_code)]

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

use axum::http::StatusCode;
use serde_json::{Map, Value, json};

pub use super::double::Scripted;
use super::double::{Common, Double, Incoming, Network, Recorded, Reply, Shared, form};

pub const FB_PAGE_ID: &str = "104233412345678";
pub const FB_PAGE_TOKEN: &str = "EAAGpageToken0123456789";
pub const FB_API_VERSION: &str = "v23.0";

/// The longest post or comment, in UTF-16 code units; over it Graph refuses with code 100.
/// Meta's reference gives neither the number nor the error; both are from
/// https://docs.letmepost.dev/preflight/facebook-text-max_graphemes ("Facebook's hard server-side
/// cap on a Page post is 63,206 characters … Above it, Graph API rejects with code 100 …
/// Facebook counts UTF-16 codeunits"). The error's wording here is ours.
pub const FB_MAX_MESSAGE: usize = 63_206;

/// A message's length as Facebook counts it.
pub fn message_length(text: &str) -> usize {
    text.encode_utf16().count()
}

/// Graph's refusal of a message over [`FB_MAX_MESSAGE`].
fn too_long(message: &str) -> Option<Answer> {
    let length = message_length(message);
    (length > FB_MAX_MESSAGE).then(|| {
        let text =
            format!("(#100) The message is {length} characters long; at most {FB_MAX_MESSAGE}");
        oauth_error(100, None, &text)
    })
}

const DAY: Duration = Duration::from_secs(24 * 60 * 60);
const USAGE_HEADER: &str = "x-business-use-case-usage";
/// The first post or comment number handed out.
const FIRST_NUMBER: u64 = 122_093_000_000_000_001;

#[derive(Clone, Debug)]
pub struct FacebookOptions {
    /// The Page's Business Use Case budget: calls per rolling 24 h. Default 4800 (one engaged
    /// user).
    pub calls_per_window: u32,
}

impl Default for FacebookOptions {
    fn default() -> Self {
        FacebookOptions {
            calls_per_window: 4800,
        }
    }
}

/// `Scripted`, under a name that does not clash with other doubles' when glob-imported.
pub type FbScripted = Scripted;

/// One stored feed post or comment.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FbPost {
    pub id: String,
    pub message: String,
    pub link: Option<String>,
    /// The post id, for comments.
    pub parent: Option<String>,
}

pub type FbRequest = Recorded;

/// The Graph API double, serving on a loopback port until dropped.
pub type FacebookDouble = Double<Facebook>;

/// The Facebook Graph API, for `Double`.
pub struct Facebook;

#[derive(Default)]
pub struct State {
    common: Common,
    /// Calls counted against the budget, within the last 24 h.
    calls: VecDeque<Instant>,
    /// Stored posts and comments, and when.
    posts: Vec<(FbPost, Instant)>,
    next_number: u64,
}

impl Network for Facebook {
    const NAME: &'static str = "Facebook";
    const CONTENT_TYPE: &'static str = "application/json; charset=UTF-8";
    type Options = FacebookOptions;
    type State = State;
    type Post = FbPost;

    fn fresh() -> State {
        State {
            next_number: FIRST_NUMBER,
            ..State::default()
        }
    }

    fn common(state: &mut State) -> &mut Common {
        &mut state.common
    }

    fn posts(state: &State) -> Vec<FbPost> {
        state.posts.iter().map(|(p, _)| p.clone()).collect()
    }

    /// Graph's answer, with the usage header.
    fn answer(shared: &Shared<Facebook>, state: &mut State, req: &Incoming) -> Reply {
        let now = Instant::now();
        let answer = graph(shared, state, req, now);
        let usage = usage(shared, state, now, answer.throttled);
        Reply::json(answer.status, answer.body).with(vec![(USAGE_HEADER, usage)])
    }
}

impl FacebookDouble {
    /// "http://127.0.0.1:PORT/v23.0" (`url()` stands in for "https://graph.facebook.com").
    pub fn versioned_url(&self) -> String {
        format!("{}/{FB_API_VERSION}", self.url())
    }

    /// The Page's feed posts (no comments).
    pub fn feed(&self) -> Vec<FbPost> {
        let posts = self.posts().into_iter();
        posts.filter(|p| p.parent.is_none()).collect()
    }

    pub fn comments_on(&self, post_id: &str) -> Vec<FbPost> {
        let posts = self.posts().into_iter();
        posts
            .filter(|p| p.parent.as_deref() == Some(post_id))
            .collect()
    }
}

/// Query parameters, overridden by the body's (form-encoded or a JSON object).
fn params(req: &Incoming) -> HashMap<String, String> {
    let mut params = req.query_params();
    let content_type = req.header("content-type").unwrap_or_default();
    let content_type = content_type.to_ascii_lowercase();
    if content_type.starts_with("application/x-www-form-urlencoded") {
        params.extend(form(&req.body));
    } else if content_type.starts_with("application/json") {
        let body: Value = serde_json::from_slice(&req.body).unwrap_or_default();
        for (key, value) in body.as_object().into_iter().flatten() {
            let value = match value {
                Value::String(s) => s.clone(),
                Value::Null => continue,
                other => other.to_string(),
            };
            params.insert(key.clone(), value);
        }
    }
    params
}

/// `access_token`, else an `Authorization: Bearer` (or `OAuth`) token.
fn token(req: &Incoming, params: &HashMap<String, String>) -> Option<String> {
    if let Some(token) = params.get("access_token").filter(|t| !t.is_empty()) {
        return Some(token.clone());
    }
    let (scheme, token) = req.authorization()?;
    let known = scheme.eq_ignore_ascii_case("bearer") || scheme.eq_ignore_ascii_case("oauth");
    Some(token.to_owned()).filter(|t| known && !t.is_empty())
}

/// Graph's error body for `status`.
fn graph_error(status: u16, kind: &str, code: u32, subcode: Option<u32>, message: &str) -> Answer {
    let mut error = json!({"message": message, "type": kind, "code": code});
    if let Some(subcode) = subcode {
        error["error_subcode"] = json!(subcode);
    }
    error["fbtrace_id"] = json!(fbtrace_id());
    Answer {
        status,
        body: json!({"error": error}),
        throttled: false,
    }
}

fn oauth_error(code: u32, subcode: Option<u32>, message: &str) -> Answer {
    graph_error(400, "OAuthException", code, subcode, message)
}

/// The object does not exist (or does not take this edge).
fn unsupported(method: &str, object: &str) -> Answer {
    let message = format!(
        "Unsupported {method} request. Object with ID '{object}' does not exist, cannot be loaded \
         due to missing permissions, or does not support this operation."
    );
    graph_error(400, "GraphMethodException", 100, Some(33), &message)
}

fn transient(mut answer: Answer) -> Answer {
    answer.body["error"]["is_transient"] = json!(true);
    answer
}

/// Graph's error for a scripted status.
fn failure(status: u16) -> Answer {
    let status = StatusCode::from_u16(status).map_or(500, |s| s.as_u16());
    let message = "An unexpected error has occurred. Please retry your request later.";
    match status {
        500.. => transient(graph_error(status, "OAuthException", 2, None, message)),
        403 => graph_error(403, "OAuthException", 200, None, "(#200) Permissions error"),
        _ => graph_error(
            status,
            "OAuthException",
            1,
            None,
            "An unknown error occurred",
        ),
    }
}

/// An 11-character trace id, as Graph sends in every error.
fn fbtrace_id() -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    (0..11)
        .map(|_| char::from(ALPHABET[usize::from(rand::random::<u8>()) % ALPHABET.len()]))
        .collect()
}

/// "Friday, 13-Sep-24 03:10:45 PDT", `seconds_ago` before now, Pacific time as Graph writes it.
fn graph_time(seconds_ago: i64) -> String {
    let now = jiff::Timestamp::now().as_second();
    let Ok(at) = jiff::Timestamp::from_second(now - seconds_ago) else {
        return String::new();
    };
    let format = "%A, %d-%b-%y %H:%M:%S";
    match at.in_tz("America/Los_Angeles") {
        Ok(zoned) => format!("{} {}", zoned.strftime(format), zoned.strftime("%Z")),
        Err(_) => format!("{} UTC", at.strftime(format)),
    }
}

/// `v<digits>.<digits>`.
fn is_version(segment: &str) -> bool {
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    let version = segment.strip_prefix('v').and_then(|v| v.split_once('.'));
    version.is_some_and(|(major, minor)| digits(major) && digits(minor))
}

/// An answer: status, body, and whether the usage header shows a throttle (regain in 1 min).
struct Answer {
    status: u16,
    body: Value,
    throttled: bool,
}

/// Drops calls older than 24 h from the budget.
fn prune(state: &mut State, now: Instant) {
    while state
        .calls
        .front()
        .is_some_and(|t| now.duration_since(*t) >= DAY)
    {
        state.calls.pop_front();
    }
}

/// The `X-Business-Use-Case-Usage` value: percentages of the budget used, and the minutes until
/// a call is possible again (0 while under budget; 1 for a scripted throttle).
fn usage(shared: &Shared<Facebook>, state: &mut State, now: Instant, throttled: bool) -> String {
    prune(state, now);
    let budget = shared.options.calls_per_window as usize;
    let used = state.calls.len();
    let mut percent = match budget {
        0 => 100,
        _ => (used * 100 / budget).min(100),
    };
    let mut regain = 0;
    if used >= budget {
        let oldest = state
            .calls
            .front()
            .map_or(Duration::ZERO, |t| now.duration_since(*t));
        regain = DAY.saturating_sub(oldest).as_secs().div_ceil(60).max(1);
    }
    if throttled {
        (percent, regain) = (100, 1);
    }
    let entry = json!({
        "type": "pages", "call_count": percent, "total_cputime": percent,
        "total_time": percent, "estimated_time_to_regain_access": regain,
    });
    let mut map = Map::new();
    map.insert(FB_PAGE_ID.to_owned(), json!([entry]));
    Value::Object(map).to_string()
}

/// Routes, authenticates, applies the script and the budget, then publishes.
fn graph(shared: &Shared<Facebook>, state: &mut State, req: &Incoming, now: Instant) -> Answer {
    let segments: Vec<&str> = req.path.trim_start_matches('/').split('/').collect();
    let (object, edge) = match segments.as_slice() {
        [version, object, edge @ ("feed" | "comments")] if is_version(version) => (*object, *edge),
        _ => {
            let message = format!("Unknown path components: {}", req.path);
            return oauth_error(2500, None, &message);
        }
    };
    let params = params(req);
    let Some(token) = token(req, &params) else {
        let message = "An active access token must be used to query information about the \
                       current user.";
        return oauth_error(190, None, message);
    };
    if state.common.revoked {
        // Graph's subcode 460: the session behind the token was invalidated (a password
        // changed), after Meta's "Access Token Error Codes".
        let message = "Error validating access token: The session has been invalidated because \
                       the user changed their password or Facebook has changed the session for \
                       security reasons.";
        return oauth_error(190, Some(460), message);
    }
    if token != FB_PAGE_TOKEN {
        let message = format!(
            "Error validating access token: Session has expired on {}. The current time is {}.",
            graph_time(3600),
            graph_time(0)
        );
        return oauth_error(190, Some(463), &message);
    }
    if req.method != "POST" {
        return unsupported(&req.method.to_ascii_lowercase(), object);
    }
    let lost_reply = match state.common.scripted.pop_front() {
        Some(Scripted::Fail(status)) => {
            state.calls.push_back(now);
            return failure(status);
        }
        Some(Scripted::Throttle) => {
            state.common.throttled += 1;
            let mut answer = transient(oauth_error(32, None, "Page request limit reached"));
            answer.throttled = true;
            return answer;
        }
        Some(Scripted::PostThenFail(status)) => Some(status),
        None => None,
    };
    prune(state, now);
    if state.calls.len() >= shared.options.calls_per_window as usize {
        state.common.throttled += 1;
        let message = "There have been too many calls to this Page account. Wait a bit and try \
                       again.";
        return transient(oauth_error(80001, None, message));
    }
    state.calls.push_back(now);
    let published = match edge {
        "feed" => publish(state, &params, object, now),
        _ => comment(state, &params, object, now),
    };
    match (published, lost_reply) {
        (Ok(_), Some(status)) => failure(status),
        (Ok(id), None) => Answer {
            status: 200,
            body: json!({ "id": id }),
            throttled: false,
        },
        (Err(answer), _) => answer,
    }
}

fn next_number(state: &mut State) -> u64 {
    let number = state.next_number;
    state.next_number += 1;
    number
}

/// `POST /{page_id}/feed`: the stored post's id, or Graph's refusal.
fn publish(
    state: &mut State,
    params: &HashMap<String, String>,
    object: &str,
    now: Instant,
) -> Result<String, Answer> {
    if object != FB_PAGE_ID {
        return Err(unsupported("post", object));
    }
    let message = params.get("message").cloned().unwrap_or_default();
    let link = params.get("link").filter(|l| !l.trim().is_empty()).cloned();
    if message.trim().is_empty() && link.is_none() {
        let text = "(#100) Missing message or attachment: one of message or link is required";
        return Err(oauth_error(100, None, text));
    }
    if let Some(answer) = too_long(&message) {
        return Err(answer);
    }
    if let Some(link) = &link {
        let parsed = url::Url::parse(link);
        if !parsed.is_ok_and(|u| matches!(u.scheme(), "http" | "https")) {
            return Err(oauth_error(
                100,
                None,
                "(#100) The link parameter must be a valid URL",
            ));
        }
    }
    let duplicate = (state.posts.iter()).any(|(p, at)| {
        p.parent.is_none()
            && !message.trim().is_empty()
            && p.message == message
            && now.duration_since(*at) < DAY
    });
    if duplicate {
        let mut answer = oauth_error(506, Some(1_455_006), "Duplicate status message");
        answer.body["error"]["error_user_title"] = json!("Duplicate Status Update");
        answer.body["error"]["error_user_msg"] = json!(
            "This status update is identical to the last one you posted. Try posting something \
             different, or delete your previous update."
        );
        return Err(answer);
    }
    let id = format!("{FB_PAGE_ID}_{}", next_number(state));
    let post = FbPost {
        id: id.clone(),
        message,
        link,
        parent: None,
    };
    state.posts.push((post, now));
    Ok(id)
}

/// `POST /{post_id}/comments`: the stored comment's id, or Graph's refusal.
fn comment(
    state: &mut State,
    params: &HashMap<String, String>,
    object: &str,
    now: Instant,
) -> Result<String, Answer> {
    let exists = (state.posts.iter()).any(|(p, _)| p.parent.is_none() && p.id == object);
    if !exists {
        return Err(unsupported("post", object));
    }
    let message = params.get("message").cloned().unwrap_or_default();
    if message.trim().is_empty() {
        let text = "(#100) Missing message or attachment: the message parameter is required";
        return Err(oauth_error(100, None, text));
    }
    if let Some(answer) = too_long(&message) {
        return Err(answer);
    }
    let post_number = object.split_once('_').map_or(object, |(_, n)| n);
    let id = format!("{post_number}_{}", next_number(state));
    let comment = FbPost {
        id: id.clone(),
        message,
        link: params.get("link").cloned(),
        parent: Some(object.to_owned()),
    };
    state.posts.push((comment, now));
    Ok(id)
}
