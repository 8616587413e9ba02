//! A local stand-in for a Mastodon instance's posting API, on one loopback port:
//! - `POST /api/v1/statuses` (form or JSON body, `Authorization: Bearer`) → 200 with a `Status`;
//! - `GET /api/v1/statuses/{id}` → a stored `Status`;
//! - `GET /api/v1/accounts/verify_credentials` → the posting account;
//! - `GET /api/v2/instance` → `configuration.statuses.max_characters` and
//!   `characters_reserved_per_url`.
//!
//! Errors are Mastodon's `{"error":"…"}` entity with its codes: 401 invalid token, 403 scope,
//! 404 record not found, 422 validation, 429 throttled. Length is counted the way Mastodon counts
//! it (grapheme clusters of spoiler text + text, every link twitter-text finds as 23, so not one
//! without a known top-level domain nor the punctuation after it, `@user@domain` as `@user`). The
//! double honours `Idempotency-Key` for an hour, enforces the posting limit (300 per 3 hours,
//! a fixed window aligned to the epoch) and 300 posts per 5 minutes per token, sends
//! `X-RateLimit-*` on every posting answer, and can be scripted to fail, throttle, or store a post
//! and lose the reply (`Scripted::Throttle` is a 429 `{"error":"Too many requests"}` with the
//! rate-limit headers). A bad request never panics it: it gets Mastodon's error. What it shares
//! with the other networks' doubles is in `double`.

// Shared by the integration tests, which each use part of it.
#![allow(dead_code)]

use std::collections::{HashMap, VecDeque};
use std::sync::LazyLock;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::http::StatusCode;
use regex::Regex;
use serde_json::{Value, json};
use unicode_segmentation::UnicodeSegmentation;

pub use super::double::Scripted;
use super::double::{Common, Double, Headers, Incoming, Network, Recorded, Reply, Shared, form};
use super::twitter_text;

/// The token with `write:statuses` scope; any other token (but the read one) gets 401.
pub const MASTODON_TOKEN: &str = "mastodon-token-0123456789abcdef";
/// A valid token whose scope is `read` only: posting with it gets 403.
pub const MASTODON_READ_TOKEN: &str = "mastodon-read-token-0123456789ab";
/// The posting account's username (status URLs are `{url}/@regione/{id}`).
pub const MASTODON_USERNAME: &str = "regione";

const ACCOUNT_ID: &str = "109000000000000001";
/// Status ids count up from here + 1, as snowflake-like numeric strings.
const FIRST_ID: u64 = 113_000_000_000_000_000;
const URL_CHARS: usize = 23;
const IDEMPOTENCY_TTL: Duration = Duration::from_secs(3600);
const TOKEN_WINDOW: Duration = Duration::from_secs(300);
const VISIBILITIES: [&str; 4] = ["public", "unlisted", "private", "direct"];

const INVALID_TOKEN: &str = "The access token is invalid";
const OUT_OF_SCOPE: &str = "This action is outside the authorized scopes";
const NOT_FOUND: &str = "Record not found";
const TOO_MANY: &str = "Too many requests";
const BLANK: &str = "Validation failed: Text can't be blank";

#[derive(Clone, Debug)]
pub struct MastodonOptions {
    /// `configuration.statuses.max_characters`. Default 500.
    pub max_characters: usize,
    /// Posts accepted per fixed `statuses_window` (aligned to the epoch). Default 300.
    pub statuses_per_window: u32,
    /// Default 3 hours.
    pub statuses_window: Duration,
    /// Posts accepted per sliding 5 minutes for the token. Default 300.
    pub per_token_per_5min: u32,
}

impl Default for MastodonOptions {
    fn default() -> Self {
        MastodonOptions {
            max_characters: 500,
            statuses_per_window: 300,
            statuses_window: Duration::from_secs(3 * 3600),
            per_token_per_5min: 300,
        }
    }
}

/// One stored status.
#[derive(Clone, Debug)]
pub struct MastodonPost {
    pub id: String,
    /// The `status` parameter as sent.
    pub text: String,
    pub in_reply_to_id: Option<String>,
    pub visibility: String,
    pub language: Option<String>,
    pub idempotency_key: Option<String>,
    /// "" when absent.
    pub spoiler_text: String,
}

pub type MastodonRequest = Recorded;

/// The Mastodon double, serving on a loopback port until dropped.
pub type MastodonDouble = Double<Mastodon>;

/// Mastodon, for `Double`.
pub struct Mastodon;

#[derive(Default)]
pub struct State {
    common: Common,
    next_id: u64,
    posts: Vec<MastodonPost>,
    /// Status JSON by id.
    statuses: HashMap<String, Value>,
    /// Idempotency key → (first use, status id).
    idempotency: HashMap<String, (Instant, String)>,
    /// The fixed statuses window: (index since the epoch, posts accepted in it).
    window: (u64, u32),
    /// When the token's accepted posts arrived (sliding 5 minutes).
    token_posts: VecDeque<Instant>,
}

impl Network for Mastodon {
    const NAME: &'static str = "Mastodon";
    type Options = MastodonOptions;
    type State = State;
    type Post = MastodonPost;

    fn fresh() -> State {
        State {
            next_id: FIRST_ID + 1,
            ..State::default()
        }
    }

    fn common(state: &mut State) -> &mut Common {
        &mut state.common
    }

    fn posts(state: &State) -> Vec<MastodonPost> {
        state.posts.clone()
    }

    /// Counts every 429 as throttled.
    fn answer(shared: &Shared<Mastodon>, state: &mut State, req: &Incoming) -> Reply {
        let reply = route(shared, state, req);
        if reply.status == 429 {
            state.common.throttled += 1;
        }
        reply
    }
}

impl MastodonOptions {
    /// The current statuses window: (its index since the epoch, its end in ms since the epoch).
    fn statuses_window(&self) -> (u64, i64) {
        let period = (self.statuses_window.as_millis() as u64).max(1);
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        let index = now.as_millis() as u64 / period;
        (index, ((index + 1) * period) as i64)
    }

    /// `X-RateLimit-*` for the statuses window.
    fn rate_headers(&self, state: &State) -> Headers {
        let (index, reset) = self.statuses_window();
        let used = if state.window.0 == index {
            state.window.1
        } else {
            0
        };
        let limit = self.statuses_per_window;
        let reset = jiff::Timestamp::from_millisecond(reset).unwrap_or(jiff::Timestamp::UNIX_EPOCH);
        vec![
            ("x-ratelimit-limit", limit.to_string()),
            (
                "x-ratelimit-remaining",
                limit.saturating_sub(used).to_string(),
            ),
            ("x-ratelimit-reset", format!("{reset:.6}")),
        ]
    }
}

/// Mastodon's length of a status: grapheme clusters, after replacing every link twitter-text
/// finds (Mastodon's reading: a scheme and a known top-level domain) with 23 characters and
/// every `@user@domain` with `@user`. The caller joins spoiler text and text first.
pub fn count_length(text: &str) -> usize {
    let links = twitter_text::links(text, twitter_text::Network::Mastodon);
    let mut countable = String::with_capacity(text.len());
    let mut rest = text;
    let mut previous: Option<char> = None;
    while let Some(c) = rest.chars().next() {
        let at = text.len() - rest.len();
        if let Some(link) = links.iter().find(|l| l.start == at) {
            countable.extend(std::iter::repeat_n('x', URL_CHARS));
            previous = Some('x');
            rest = &text[link.end..];
            continue;
        }
        let after_word = previous.is_some_and(|p| p.is_alphanumeric() || "_=/".contains(p));
        if c == '@'
            && !after_word
            && let Some((keep, len)) = mention_at(rest)
        {
            countable.push_str(&rest[..keep]);
            previous = rest[..keep].chars().next_back();
            rest = &rest[len..];
            continue;
        }
        countable.push(c);
        previous = Some(c);
        rest = &rest[c.len_utf8()..];
    }
    countable.graphemes(true).count()
}

/// A mention starting here (`s` starts with '@'): (bytes of `@user` kept, bytes consumed
/// including `@domain`), when it has a domain and is not followed by what Mastodon reads as its
/// continuation (`@`, an accented letter, `://`).
fn mention_at(s: &str) -> Option<(usize, usize)> {
    let run = |t: &str, word: fn(char) -> bool| {
        let end = t
            .find(|c: char| !(word(c) || c == '.' || c == '-'))
            .unwrap_or(t.len());
        t[..end].trim_end_matches(['.', '-']).len()
    };
    let user = run(&s[1..], |c| c.is_ascii_alphanumeric() || c == '_');
    if user == 0 || !s[1..].starts_with(|c: char| c.is_ascii_alphanumeric() || c == '_') {
        return None;
    }
    let keep = 1 + user;
    let domain_part = s[keep..].strip_prefix('@')?;
    if !domain_part.starts_with(word) {
        return None;
    }
    let domain = run(domain_part, word);
    let consumed = keep + 1 + domain;
    let after = &s[consumed..];
    let continued = after.starts_with(['@', '＠'])
        || after.starts_with("://")
        || after.starts_with(|c: char| matches!(u32::from(c), 0xc0..=0x24f | 0x1e00..=0x1eff));
    (!continued).then_some((keep, consumed))
}

/// A character of Ruby's `[[:word:]]`: a letter, a mark, a decimal digit or a connector.
fn word(c: char) -> bool {
    static WORD: LazyLock<Regex> = LazyLock::new(|| {
        Regex::new(r"^[\p{L}\p{M}\p{Nd}\p{Pc}]$").unwrap_or_else(|e| panic!("{e}"))
    });
    WORD.is_match(c.encode_utf8(&mut [0; 4]))
}

fn escape_html(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            _ => out.push(c),
        }
    }
    out
}

/// Query parameters, overridden by the body's (JSON scalars or form fields).
fn params(req: &Incoming) -> Result<HashMap<String, String>, Reply> {
    let mut params = req.query_params();
    let content_type = req.header("content-type").unwrap_or_default();
    let is_json = content_type
        .to_ascii_lowercase()
        .starts_with("application/json");
    if is_json && !req.body.trim_ascii().is_empty() {
        let Ok(Value::Object(body)) = serde_json::from_slice::<Value>(&req.body) else {
            let message = "Error occurred while parsing request parameters";
            return Err(error(400, message));
        };
        for (key, value) in body {
            let value = match value {
                Value::String(s) => s,
                Value::Number(n) => n.to_string(),
                Value::Bool(b) => b.to_string(),
                _ => continue,
            };
            params.insert(key, value);
        }
    } else if !is_json {
        params.extend(form(&req.body));
    }
    Ok(params)
}

fn error(status: u16, message: &str) -> Reply {
    Reply::json(status, json!({ "error": message }))
}

/// Mastodon's error for `status` (any other status: its reason phrase).
fn failure(status: u16) -> Reply {
    let code = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let message = match code.as_u16() {
        401 => INVALID_TOKEN,
        403 => OUT_OF_SCOPE,
        404 => NOT_FOUND,
        422 => "Validation failed: Status could not be saved",
        429 => TOO_MANY,
        _ => code.canonical_reason().unwrap_or("Error"),
    };
    error(code.as_u16(), message)
}

fn truthy(value: Option<&str>) -> bool {
    let value = value.map(str::to_ascii_lowercase);
    value.is_some_and(|v| ["1", "true", "t", "on", "yes"].contains(&v.as_str()))
}

fn account(base: &str) -> Value {
    json!({
        "id": ACCOUNT_ID, "username": MASTODON_USERNAME, "acct": MASTODON_USERNAME,
        "display_name": "Regione", "url": format!("{base}/@{MASTODON_USERNAME}"),
        "bot": false, "locked": false,
    })
}

fn route(shared: &Shared<Mastodon>, state: &mut State, req: &Incoming) -> Reply {
    match (req.method.as_str(), req.path.as_str()) {
        ("POST", "/api/v1/statuses") => {
            post_status(shared, state, req).with(shared.options.rate_headers(state))
        }
        ("GET", "/api/v2/instance") => Reply::json(
            200,
            json!({"domain": "127.0.0.1", "configuration": {"statuses": {
                "max_characters": shared.options.max_characters,
                "characters_reserved_per_url": URL_CHARS,
            }}}),
        ),
        ("GET", "/api/v1/accounts/verify_credentials") => match req.bearer() {
            Some(MASTODON_TOKEN | MASTODON_READ_TOKEN) => Reply::json(200, account(&shared.base)),
            _ => error(401, INVALID_TOKEN),
        },
        ("GET", path) if path.starts_with("/api/v1/statuses/") => {
            let id = &path["/api/v1/statuses/".len()..];
            match state.statuses.get(id) {
                Some(status) => Reply::json(200, status.clone()),
                None => error(404, NOT_FOUND),
            }
        }
        _ => error(404, NOT_FOUND),
    }
}

/// `POST /api/v1/statuses`: auth, script, idempotency, validation, rate limits, then the post.
fn post_status(shared: &Shared<Mastodon>, state: &mut State, req: &Incoming) -> Reply {
    match req.bearer() {
        _ if state.common.revoked => return error(401, INVALID_TOKEN),
        Some(MASTODON_TOKEN) => {}
        Some(MASTODON_READ_TOKEN) => return error(403, OUT_OF_SCOPE),
        _ => return error(401, INVALID_TOKEN),
    }
    let lost = match state.common.scripted.pop_front() {
        Some(Scripted::Fail(status)) => return failure(status),
        Some(Scripted::Throttle) => return failure(429),
        Some(Scripted::PostThenFail(status)) => Some(status),
        None => None,
    };
    let answer = |status: Value| match lost {
        Some(code) => failure(code),
        None => Reply::json(200, status),
    };
    let now = Instant::now();
    state
        .idempotency
        .retain(|_, (at, _)| now.duration_since(*at) < IDEMPOTENCY_TTL);
    let key = (req.header("idempotency-key"))
        .map(str::trim)
        .filter(|k| !k.is_empty())
        .map(str::to_owned);
    let original = (key.as_ref())
        .and_then(|k| state.idempotency.get(k))
        .and_then(|(_, id)| state.statuses.get(id));
    if let Some(status) = original {
        return answer(status.clone());
    }
    let params = match params(req) {
        Ok(params) => params,
        Err(reply) => return reply,
    };
    let param = |k: &str| params.get(k).map(String::as_str).filter(|v| !v.is_empty());
    let in_reply_to = param("in_reply_to_id");
    if in_reply_to.is_some_and(|id| !state.statuses.contains_key(id)) {
        return error(404, NOT_FOUND);
    }
    let visibility = param("visibility").unwrap_or("public");
    if !VISIBILITIES.contains(&visibility) {
        return error(
            422,
            "Validation failed: Visibility is not included in the list",
        );
    }
    let text = params.get("status").map(String::as_str).unwrap_or_default();
    if text.trim().is_empty() {
        return error(422, BLANK);
    }
    let spoiler = params.get("spoiler_text").cloned().unwrap_or_default();
    let max = shared.options.max_characters;
    if count_length(&format!("{spoiler}{text}")) > max {
        let message = format!("Validation failed: Text character limit of {max} exceeded");
        return error(422, &message);
    }
    let (index, _) = shared.options.statuses_window();
    if state.window.0 != index {
        state.window = (index, 0);
    }
    (state.token_posts).retain(|t| now.duration_since(*t) < TOKEN_WINDOW);
    let per_token = shared.options.per_token_per_5min as usize;
    if state.window.1 >= shared.options.statuses_per_window || state.token_posts.len() >= per_token
    {
        return failure(429);
    }
    state.window.1 += 1;
    state.token_posts.push_back(now);
    let id = state.next_id.to_string();
    state.next_id += 1;
    let language = param("language");
    let base = &shared.base;
    let created = jiff::Timestamp::now();
    let sensitive = truthy(param("sensitive")) || !spoiler.is_empty();
    let status = json!({
        "id": id, "created_at": format!("{created:.3}"),
        "in_reply_to_id": in_reply_to, "in_reply_to_account_id": in_reply_to.map(|_| ACCOUNT_ID),
        "sensitive": sensitive,
        "spoiler_text": spoiler, "visibility": visibility, "language": language,
        "uri": format!("{base}/users/{MASTODON_USERNAME}/statuses/{id}"),
        "url": format!("{base}/@{MASTODON_USERNAME}/{id}"),
        "replies_count": 0, "reblogs_count": 0, "favourites_count": 0, "edited_at": null,
        "content": format!("<p>{}</p>", escape_html(text)),
        "reblog": null, "account": account(base), "media_attachments": [], "mentions": [],
        "tags": [], "emojis": [], "card": null, "poll": null,
    });
    state.statuses.insert(id.clone(), status.clone());
    state.posts.push(MastodonPost {
        id: id.clone(),
        text: text.to_owned(),
        in_reply_to_id: in_reply_to.map(str::to_owned),
        visibility: visibility.to_owned(),
        language: language.map(str::to_owned),
        idempotency_key: key.clone(),
        spoiler_text: spoiler.clone(),
    });
    if let Some(key) = key {
        state.idempotency.insert(key, (now, id));
    }
    answer(status)
}
