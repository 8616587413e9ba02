//! A local stand-in for a Bluesky PDS (AT Protocol XRPC), on one loopback port:
//! - `POST /xrpc/com.atproto.server.createSession` (handle or DID + app password) → `accessJwt`
//!   and `refreshJwt`, rate limited per handle with `RateLimit-*` headers on every answer;
//! - `POST /xrpc/com.atproto.server.refreshSession` (Bearer refreshJwt) → a new pair, the old
//!   refresh token revoked;
//! - `POST /xrpc/com.atproto.repo.createRecord` (Bearer accessJwt) → `{"uri","cid","commit",
//!   "validationStatus"}` for an `app.bsky.feed.post`, validated like the lexicon (300 graphemes,
//!   3000 bytes, RFC 3339 `createdAt`, replies naming stored posts; facets as UTF-8 byte ranges
//!   inside the text that split no character, a link's `uri` a URI, a tag's `tag` without its `#`
//!   and within 64 graphemes and 640 bytes), counting 3 write points per create against 5000 an
//!   hour;
//! - `GET /xrpc/com.atproto.repo.listRecords` → the stored posts, newest first.
//!
//! Errors are XRPC's `{"error":"<Name>","message":"…"}`. Access tokens expire after a short TTL
//! (or on demand); the post-creating call can be scripted to fail, throttle (429
//! RateLimitExceeded with the `RateLimit-*` headers), or store a post and lose the reply. A bad
//! request never panics it: it gets the PDS's error. What it shares with the other networks'
//! doubles is in `double`.

// Shared by the integration tests, which each use part of it.
#![allow(dead_code)]

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::http::StatusCode;
use base64::Engine as _;
use serde_json::{Value, json};
use unicode_segmentation::UnicodeSegmentation;

pub use super::double::Scripted;
use super::double::{Common, Double, Headers, Incoming, Network, Recorded, Reply, Shared};

pub const BSKY_HANDLE: &str = "regione.bsky.social";
/// The account's app password.
pub const BSKY_PASSWORD: &str = "abcd-efgh-ijkl-mnop";
pub const BSKY_DID: &str = "did:plc:regione0000000000000000";

const POST_TYPE: &str = "app.bsky.feed.post";
const LINK_TYPE: &str = "app.bsky.richtext.facet#link";
const TAG_TYPE: &str = "app.bsky.richtext.facet#tag";
/// A tag facet's value, by the lexicon.
const MAX_TAG_GRAPHEMES: usize = 64;
const MAX_TAG_BYTES: usize = 640;
const MAX_GRAPHEMES: usize = 300;
const MAX_BYTES: usize = 3000;
const SESSION_WINDOW: Duration = Duration::from_secs(300);
const WRITE_WINDOW: Duration = Duration::from_secs(3600);
const WRITE_POINTS: u32 = 5000;
const CREATE_POINTS: u32 = 3;
/// Only for the refresh token's `exp` claim: refresh tokens here expire by rotation.
const REFRESH_TTL: Duration = Duration::from_secs(90 * 24 * 3600);
/// Base32-sortable, as TIDs use.
const TID_ALPHABET: &[u8; 32] = b"234567abcdefghijklmnopqrstuvwxyz";
/// RFC 4648 base32, lower case, as CIDv1 strings use.
const CID_ALPHABET: &[u8; 32] = b"abcdefghijklmnopqrstuvwxyz234567";

const EXPIRED: (&str, &str) = ("ExpiredToken", "Token has expired");
const INVALID_TOKEN: (&str, &str) = ("InvalidToken", "Token could not be verified");
const AUTH_REQUIRED: (&str, &str) = ("AuthenticationRequired", "Authentication Required");
const RATE_LIMITED: (&str, &str) = ("RateLimitExceeded", "Rate Limit Exceeded");

#[derive(Clone, Debug)]
pub struct BlueskyOptions {
    /// An accessJwt is refused with ExpiredToken this long after it was issued. Default 120 s.
    pub access_ttl: Duration,
    /// createSession calls per handle per sliding 5 minutes. Default 30.
    pub sessions_per_5min: u32,
    /// The window of the account's write points (5000, a create costing 3), whose end a 429's
    /// `ratelimit-reset` names. Default an hour, as "Rate Limits" in Bluesky's documentation
    /// (docs.bsky.app, advanced guides) gives it; tests shorten it to see a reset come.
    pub write_window: Duration,
}

impl Default for BlueskyOptions {
    fn default() -> Self {
        BlueskyOptions {
            access_ttl: Duration::from_secs(120),
            sessions_per_5min: 30,
            write_window: WRITE_WINDOW,
        }
    }
}

/// One stored post.
#[derive(Clone, Debug)]
pub struct BlueskyPost {
    /// `at://<did>/app.bsky.feed.post/<rkey>`.
    pub uri: String,
    pub cid: String,
    pub text: String,
    pub facets: Vec<Value>,
    /// `reply.root.uri`.
    pub reply_root: Option<String>,
    /// `reply.parent.uri`.
    pub reply_parent: Option<String>,
    pub langs: Vec<String>,
    pub created_at: String,
}

impl BlueskyPost {
    /// For every link facet feature: (the text's bytes `byteStart..byteEnd`, lossily, its `uri`).
    pub fn links(&self) -> Vec<(String, String)> {
        self.features(LINK_TYPE, "uri")
    }

    /// For every tag facet feature: (the text's bytes `byteStart..byteEnd`, lossily, its `tag`).
    pub fn tags(&self) -> Vec<(String, String)> {
        self.features(TAG_TYPE, "tag")
    }

    fn features(&self, kind: &str, value: &str) -> Vec<(String, String)> {
        let bytes = self.text.as_bytes();
        let mut found = Vec::new();
        for facet in &self.facets {
            let start = facet["index"]["byteStart"].as_u64().unwrap_or(0) as usize;
            let end = facet["index"]["byteEnd"].as_u64().unwrap_or(0) as usize;
            let slice = bytes.get(start..end).unwrap_or_default();
            for feature in facet["features"].as_array().into_iter().flatten() {
                if feature["$type"].as_str() == Some(kind) {
                    let value = feature[value].as_str().unwrap_or_default().to_owned();
                    found.push((String::from_utf8_lossy(slice).into_owned(), value));
                }
            }
        }
        found
    }
}

pub type BlueskyRequest = Recorded;

/// The Bluesky PDS double, serving on a loopback port until dropped.
pub type BlueskyDouble = Double<Bluesky>;

/// A Bluesky PDS, for `Double`.
pub struct Bluesky;

/// A stored record, as posted.
struct Stored {
    rkey: String,
    cid: String,
    value: Value,
}

#[derive(Default)]
pub struct State {
    common: Common,
    /// accessJwt → when issued (None once expired by `expire_access_tokens`).
    access: HashMap<String, Option<Instant>>,
    /// refreshJwt → not yet rotated.
    refresh: HashMap<String, bool>,
    /// createSession calls per handle (sliding 5 minutes).
    session_calls: HashMap<String, VecDeque<Instant>>,
    /// Accepted creates (sliding hour), CREATE_POINTS each.
    writes: VecDeque<Instant>,
    /// The last TID's microseconds, and this double's clock id.
    last_tid: u64,
    clock_id: u64,
    posts: Vec<BlueskyPost>,
    records: Vec<Stored>,
    sessions_created: usize,
    refreshes: usize,
}

impl Network for Bluesky {
    const NAME: &'static str = "Bluesky";
    type Options = BlueskyOptions;
    type State = State;
    type Post = BlueskyPost;

    fn fresh() -> State {
        State {
            clock_id: u64::from(rand::random::<u16>() % 1024),
            ..State::default()
        }
    }

    fn common(state: &mut State) -> &mut Common {
        &mut state.common
    }

    fn posts(state: &State) -> Vec<BlueskyPost> {
        state.posts.clone()
    }

    /// Counts every 429 as throttled.
    fn answer(shared: &Shared<Bluesky>, state: &mut State, req: &Incoming) -> Reply {
        let reply = match req.path.strip_prefix("/xrpc/") {
            None => xrpc_error(404, ("NotFound", "Not Found")),
            Some(nsid) => route(shared, state, req, nsid),
        };
        if reply.status == 429 {
            state.common.throttled += 1;
        }
        reply
    }
}

impl BlueskyDouble {
    /// Every accessJwt issued so far is now expired (refresh tokens stay valid).
    pub fn expire_access_tokens(&self) {
        for issued in self.state().access.values_mut() {
            *issued = None;
        }
    }

    /// Successful createSession calls.
    pub fn sessions_created(&self) -> usize {
        self.state().sessions_created
    }

    /// Successful refreshSession calls.
    pub fn refreshes(&self) -> usize {
        self.state().refreshes
    }
}

/// A URI as atproto's `uri` format takes one: a scheme, then no white space.
fn valid_uri(value: &str) -> bool {
    let Some((scheme, rest)) = value.split_once(':') else {
        return false;
    };
    let scheme_ok = scheme.starts_with(|c: char| c.is_ascii_alphabetic())
        && scheme
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "+-.".contains(c));
    scheme_ok && !rest.is_empty() && !value.contains(char::is_whitespace)
}

/// Grapheme clusters, as the lexicon's `maxGraphemes` counts them.
pub fn count_graphemes(text: &str) -> usize {
    text.graphemes(true).count()
}

fn unix_now() -> Duration {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
}

/// `RateLimit-*` for a sliding window holding `stamps`, each costing `cost` points.
fn window_headers(stamps: &VecDeque<Instant>, limit: u32, cost: u32, window: Duration) -> Headers {
    let now = Instant::now();
    let used = (stamps.len() as u32).saturating_mul(cost);
    let left = (stamps.front()).map_or(window, |first| {
        (*first + window).saturating_duration_since(now)
    });
    let reset = unix_now().as_secs() + left.as_secs() + u64::from(left.subsec_nanos() > 0);
    vec![
        ("ratelimit-limit", limit.to_string()),
        (
            "ratelimit-remaining",
            limit.saturating_sub(used).to_string(),
        ),
        ("ratelimit-reset", reset.to_string()),
        (
            "ratelimit-policy",
            format!("{limit};w={}", window.as_secs()),
        ),
    ]
}

/// A JWT-shaped opaque token (ES256K header, claims with `exp`, random signature).
fn jwt(typ: &str, scope: &str, ttl: Duration) -> String {
    let engine = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let now = unix_now().as_secs();
    let header = json!({"typ": typ, "alg": "ES256K"});
    let claims = json!({
        "scope": scope, "sub": BSKY_DID, "aud": "did:web:127.0.0.1", "iat": now,
        "exp": now + ttl.as_secs(), "jti": format!("{:032x}", rand::random::<u128>()),
    });
    let signature = [rand::random::<[u8; 32]>(), rand::random::<[u8; 32]>()].concat();
    let header = engine.encode(header.to_string());
    let claims = engine.encode(claims.to_string());
    format!("{header}.{claims}.{}", engine.encode(signature))
}

fn random_cid() -> String {
    let tail: String = (0..52)
        .map(|_| CID_ALPHABET[usize::from(rand::random::<u8>() % 32)] as char)
        .collect();
    format!("bafyrei{tail}")
}

/// A 13-character TID: microseconds since the epoch (strictly increasing) and the clock id.
fn next_tid(state: &mut State) -> String {
    let micros = (unix_now().as_micros() as u64).max(state.last_tid + 1);
    state.last_tid = micros;
    let value = (micros << 10) | state.clock_id;
    (0..13u32)
        .rev()
        .map(|i| TID_ALPHABET[((value >> (5 * i)) & 31) as usize] as char)
        .collect()
}

fn is_account(identifier: &str) -> bool {
    identifier == BSKY_DID || identifier.eq_ignore_ascii_case(BSKY_HANDLE)
}

/// A datetime as atproto wants it: RFC 3339, upper-case 'T', with an offset.
fn valid_datetime(value: &str) -> bool {
    value.as_bytes().get(10) == Some(&b'T') && value.parse::<jiff::Timestamp>().is_ok()
}

fn json_body(req: &Incoming) -> Result<Value, Reply> {
    match serde_json::from_slice::<Value>(&req.body) {
        Ok(value @ Value::Object(_)) => Ok(value),
        _ => Err(invalid("Input must be a JSON object")),
    }
}

fn xrpc_error(status: u16, (error, message): (&str, &str)) -> Reply {
    Reply::json(status, json!({"error": error, "message": message}))
}

fn invalid(message: &str) -> Reply {
    xrpc_error(400, ("InvalidRequest", message))
}

/// XRPC's error for `status` (name by XRPC's response types; message its reason phrase).
fn failure(status: u16) -> Reply {
    let code = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let name = match code.as_u16() {
        400 => "InvalidRequest",
        401 => AUTH_REQUIRED.0,
        403 => "Forbidden",
        404 => "NotFound",
        413 => "PayloadTooLarge",
        429 => return xrpc_error(429, RATE_LIMITED),
        501 => "MethodNotImplemented",
        502 => "UpstreamFailure",
        503 => "NotEnoughResources",
        504 => "UpstreamTimeout",
        _ => "InternalServerError",
    };
    xrpc_error(
        code.as_u16(),
        (name, code.canonical_reason().unwrap_or("Error")),
    )
}

fn route(shared: &Shared<Bluesky>, state: &mut State, req: &Incoming, nsid: &str) -> Reply {
    let expected = match nsid {
        "com.atproto.server.createSession"
        | "com.atproto.server.refreshSession"
        | "com.atproto.repo.createRecord" => "POST",
        "com.atproto.repo.listRecords" => "GET",
        _ => return xrpc_error(501, ("MethodNotImplemented", "Method Not Implemented")),
    };
    if req.method != expected {
        let message = format!("Incorrect HTTP method ({}) expected {expected}", req.method);
        return invalid(&message);
    }
    match nsid {
        "com.atproto.server.createSession" => create_session(shared, state, req),
        "com.atproto.server.refreshSession" => match req.bearer() {
            None => xrpc_error(401, AUTH_REQUIRED),
            Some(_) if state.common.revoked => xrpc_error(400, INVALID_TOKEN),
            Some(token) => match state.refresh.get(token).copied() {
                Some(true) => {
                    state.refresh.insert(token.to_owned(), false);
                    state.refreshes += 1;
                    new_session(shared, state)
                }
                Some(false) => xrpc_error(400, EXPIRED),
                None => xrpc_error(400, INVALID_TOKEN),
            },
        },
        "com.atproto.repo.createRecord" => {
            let reply = create_record(shared, state, req);
            let now = Instant::now();
            let window = shared.options.write_window;
            (state.writes).retain(|t| now.duration_since(*t) < window);
            reply.with(window_headers(
                &state.writes,
                WRITE_POINTS,
                CREATE_POINTS,
                window,
            ))
        }
        _ => list_records(state, req),
    }
}

/// Ok for a live accessJwt; else 401 (none), 400 ExpiredToken or 400 InvalidToken.
fn check_access(shared: &Shared<Bluesky>, state: &State, req: &Incoming) -> Result<(), Reply> {
    let Some(token) = req.bearer() else {
        return Err(xrpc_error(401, AUTH_REQUIRED));
    };
    if state.common.revoked {
        return Err(xrpc_error(400, INVALID_TOKEN));
    }
    match state.access.get(token) {
        Some(Some(issued)) if issued.elapsed() < shared.options.access_ttl => Ok(()),
        Some(_) => Err(xrpc_error(400, EXPIRED)),
        None => Err(xrpc_error(400, INVALID_TOKEN)),
    }
}

fn new_session(shared: &Shared<Bluesky>, state: &mut State) -> Reply {
    let access = jwt("at+jwt", "com.atproto.appPass", shared.options.access_ttl);
    let refresh = jwt("refresh+jwt", "com.atproto.refresh", REFRESH_TTL);
    state.access.insert(access.clone(), Some(Instant::now()));
    state.refresh.insert(refresh.clone(), true);
    Reply::json(
        200,
        json!({
            "did": BSKY_DID, "handle": BSKY_HANDLE, "accessJwt": access, "refreshJwt": refresh,
            "active": true,
        }),
    )
}

/// Rate limited per handle (the DID counts as the handle), every call counted.
fn create_session(shared: &Shared<Bluesky>, state: &mut State, req: &Incoming) -> Reply {
    let body = json_body(req);
    let field = |name: &str| body.as_ref().ok().and_then(|b| b[name].as_str());
    let identifier = field("identifier").unwrap_or_default();
    let key = if is_account(identifier) {
        BSKY_HANDLE.to_owned()
    } else {
        identifier.to_ascii_lowercase()
    };
    let limit = shared.options.sessions_per_5min;
    let now = Instant::now();
    let calls = state.session_calls.entry(key).or_default();
    calls.retain(|t| now.duration_since(*t) < SESSION_WINDOW);
    if calls.len() >= limit as usize {
        return xrpc_error(429, RATE_LIMITED).with(window_headers(calls, limit, 1, SESSION_WINDOW));
    }
    calls.push_back(now);
    let headers = window_headers(calls, limit, 1, SESSION_WINDOW);
    let reply = match (&body, field("identifier"), field("password")) {
        (Err(_), _, _) => invalid("Input must be a JSON object"),
        (_, None, _) => invalid("Input must have the property \"identifier\""),
        (_, _, None) => invalid("Input must have the property \"password\""),
        (_, Some(id), Some(password))
            if is_account(id) && password == BSKY_PASSWORD && !state.common.revoked =>
        {
            state.sessions_created += 1;
            new_session(shared, state)
        }
        _ => xrpc_error(
            401,
            ("AuthenticationRequired", "Invalid identifier or password"),
        ),
    };
    reply.with(headers)
}

fn create_record(shared: &Shared<Bluesky>, state: &mut State, req: &Incoming) -> Reply {
    if let Err(reply) = check_access(shared, state, req) {
        return reply;
    }
    let lost = match state.common.scripted.pop_front() {
        Some(Scripted::Fail(status)) => return failure(status),
        Some(Scripted::Throttle) => return failure(429),
        Some(Scripted::PostThenFail(status)) => Some(status),
        None => None,
    };
    let now = Instant::now();
    let window = shared.options.write_window;
    (state.writes).retain(|t| now.duration_since(*t) < window);
    if (state.writes.len() as u32 + 1) * CREATE_POINTS > WRITE_POINTS {
        return failure(429);
    }
    let body = match json_body(req) {
        Ok(body) => body,
        Err(reply) => return reply,
    };
    if let Err(message) = validate(state, &body) {
        return invalid(&message);
    }
    state.writes.push_back(now);
    let record = body["record"].clone();
    let rkey = next_tid(state);
    let cid = random_cid();
    let uri = format!("at://{BSKY_DID}/{POST_TYPE}/{rkey}");
    let text = |v: &Value| v.as_str().map(str::to_owned);
    state.posts.push(BlueskyPost {
        uri: uri.clone(),
        cid: cid.clone(),
        text: text(&record["text"]).unwrap_or_default(),
        facets: record["facets"].as_array().cloned().unwrap_or_default(),
        reply_root: text(&record["reply"]["root"]["uri"]),
        reply_parent: text(&record["reply"]["parent"]["uri"]),
        langs: (record["langs"].as_array().into_iter().flatten())
            .filter_map(text)
            .collect(),
        created_at: text(&record["createdAt"]).unwrap_or_default(),
    });
    let stored = Stored {
        rkey,
        cid: cid.clone(),
        value: record,
    };
    state.records.push(stored);
    if let Some(status) = lost {
        return failure(status);
    }
    let commit = json!({"cid": random_cid(), "rev": next_tid(state)});
    let body = json!({"uri": uri, "cid": cid, "commit": commit, "validationStatus": "valid"});
    Reply::json(200, body)
}

/// What is wrong with a createRecord body, if anything.
fn validate(state: &State, body: &Value) -> Result<(), String> {
    let repo = body["repo"]
        .as_str()
        .ok_or("Input must have the property \"repo\"")?;
    if !is_account(repo) {
        return Err(format!("Could not find repo: {repo}"));
    }
    let collection =
        (body["collection"].as_str()).ok_or("Input must have the property \"collection\"")?;
    if collection != POST_TYPE {
        return Err(format!(
            "Invalid collection: {collection} (expected {POST_TYPE})"
        ));
    }
    let record = &body["record"];
    if !record.is_object() {
        return Err("Input/record must be an object".to_owned());
    }
    validate_post(state, record).map_err(|what| format!("Invalid {POST_TYPE} record: {what}"))
}

fn validate_post(state: &State, record: &Value) -> Result<(), String> {
    if record["$type"].as_str() != Some(POST_TYPE) {
        return Err(format!("Record/$type must be {POST_TYPE}"));
    }
    let text = record["text"]
        .as_str()
        .ok_or("Record must have the property \"text\"")?;
    if count_graphemes(text) > MAX_GRAPHEMES {
        return Err(format!(
            "Record/text must not be longer than {MAX_GRAPHEMES} graphemes"
        ));
    }
    if text.len() > MAX_BYTES {
        return Err(format!(
            "Record/text must not be longer than {MAX_BYTES} characters"
        ));
    }
    let created =
        (record["createdAt"].as_str()).ok_or("Record must have the property \"createdAt\"")?;
    if !valid_datetime(created) {
        let what = "Record/createdAt must be an valid atproto datetime";
        return Err(format!("{what} (both RFC-3339 and ISO-8601)"));
    }
    let tag = |l: &Value| l.as_str().is_some_and(|l| !l.is_empty());
    match &record["langs"] {
        Value::Null => {}
        Value::Array(langs) if langs.len() <= 3 && langs.iter().all(tag) => {}
        _ => return Err("Record/langs must be an array of at most 3 language tags".to_owned()),
    }
    let empty = Vec::new();
    let facets = match &record["facets"] {
        Value::Null => &empty,
        Value::Array(facets) => facets,
        _ => return Err("Record/facets must be an array".to_owned()),
    };
    for (i, facet) in facets.iter().enumerate() {
        let index = &facet["index"];
        let (start, end) = (index["byteStart"].as_u64(), index["byteEnd"].as_u64());
        let (start, end) = match (start, end) {
            (Some(s), Some(e)) if s < e && e <= text.len() as u64 => (s as usize, e as usize),
            _ => {
                let len = text.len();
                return Err(format!(
                    "Record/facets/{i}/index must have byteStart < byteEnd <= {len} (UTF-8 bytes)"
                ));
            }
        };
        if !text.is_char_boundary(start) || !text.is_char_boundary(end) {
            return Err(format!(
                "Record/facets/{i}/index must not split a character of the UTF-8 text"
            ));
        }
        let features = (facet["features"].as_array()).ok_or(format!(
            "Record/facets/{i} must have the property \"features\""
        ))?;
        for (j, feature) in features.iter().enumerate() {
            let at = format!("Record/facets/{i}/features/{j}");
            let needs = match feature["$type"].as_str() {
                Some(LINK_TYPE) => "uri",
                Some("app.bsky.richtext.facet#mention") => "did",
                Some(TAG_TYPE) => "tag",
                Some(_) => continue,
                None => return Err(format!("{at} must have a $type")),
            };
            let Some(value) = feature[needs].as_str().filter(|v| !v.is_empty()) else {
                return Err(format!("{at} must have the property \"{needs}\""));
            };
            match needs {
                "uri" if !valid_uri(value) => return Err(format!("{at}/uri must be a uri")),
                "tag" if value.len() > MAX_TAG_BYTES => {
                    return Err(format!(
                        "{at}/tag must not be longer than {MAX_TAG_BYTES} characters"
                    ));
                }
                "tag" if count_graphemes(value) > MAX_TAG_GRAPHEMES => {
                    return Err(format!(
                        "{at}/tag must not be longer than {MAX_TAG_GRAPHEMES} graphemes"
                    ));
                }
                // The lexicon: the text has the `#`, the tag does not.
                "tag" if value.starts_with(['#', '＃']) => {
                    return Err(format!("{at}/tag must not start with #"));
                }
                _ => {}
            }
        }
    }
    let reply = &record["reply"];
    if reply.is_null() {
        return Ok(());
    }
    for part in ["root", "parent"] {
        let reference = &reply[part];
        let (Some(uri), Some(cid)) = (reference["uri"].as_str(), reference["cid"].as_str()) else {
            let what = format!("Record/reply/{part} must have the properties");
            return Err(format!("{what} \"uri\" and \"cid\""));
        };
        if !state.posts.iter().any(|p| p.uri == uri && p.cid == cid) {
            return Err(format!(
                "Record/reply/{part} names no stored post: {uri} ({cid})"
            ));
        }
    }
    Ok(())
}

/// Newest first; `cursor` is the last rkey of the page before.
fn list_records(state: &State, req: &Incoming) -> Reply {
    let params = req.query_params();
    let param = |k: &str| params.get(k).map(String::as_str).filter(|v| !v.is_empty());
    let Some(repo) = param("repo") else {
        return invalid("Params must have the property \"repo\"");
    };
    if !is_account(repo) {
        return invalid(&format!("Could not find repo: {repo}"));
    }
    let Some(collection) = param("collection") else {
        return invalid("Params must have the property \"collection\"");
    };
    let limit = match param("limit").map(str::parse::<usize>) {
        None => 50,
        Some(Ok(n)) if (1..=100).contains(&n) => n,
        Some(_) => return invalid("limit must be an integer between 1 and 100"),
    };
    let cursor = param("cursor");
    let mut records: Vec<&Stored> = match collection {
        POST_TYPE => state.records.iter().collect(),
        _ => Vec::new(),
    };
    records.reverse();
    let page: Vec<&Stored> = (records.into_iter())
        .filter(|r| cursor.is_none_or(|c| r.rkey.as_str() < c))
        .take(limit)
        .collect();
    let listed: Vec<Value> = (page.iter())
        .map(|r| {
            let uri = format!("at://{BSKY_DID}/{POST_TYPE}/{}", r.rkey);
            json!({"uri": uri, "cid": r.cid, "value": r.value})
        })
        .collect();
    let mut body = json!({ "records": listed });
    if let Some(last) = page.last() {
        body["cursor"] = json!(last.rkey);
    }
    Reply::json(200, body)
}
