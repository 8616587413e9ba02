//! Console sessions: login with a password (argon2), a session cookie (HttpOnly, SameSite=Lax,
//! Secure when the console is served over https) stored as its SHA-256, a CSRF token per
//! session checked on every form, failed logins limited per name and per address, logout.

use std::collections::{HashMap, VecDeque};
use std::net::{IpAddr, SocketAddr};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use axum::extract::ConnectInfo;
use axum::http::header::{COOKIE, LOCATION, SET_COOKIE};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jiff::Timestamp;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::AppState;
use super::auth::Principal;
use crate::settings::Role;
use crate::users::{decoy_hash, verify_password};

pub const SESSION_COOKIE: &str = "banditore_session";
/// Before login: the double-submit token of the login form.
const LOGIN_COOKIE: &str = "banditore_login";
const SESSION_TTL: Duration = Duration::from_secs(12 * 3600);
/// Failed logins allowed per name, and per client address, in `FAILURE_WINDOW`.
const MAX_FAILURES: usize = 5;
const FAILURE_WINDOW: Duration = Duration::from_secs(15 * 60);

/// What the console needs beyond the API's state.
pub struct Console {
    /// Cookies carry `Secure` when the console is reached over https.
    pub secure_cookies: bool,
    failures: Mutex<HashMap<String, VecDeque<Instant>>>,
}

impl Console {
    pub fn new(public_url: &str) -> Console {
        Console {
            secure_cookies: public_url.starts_with("https://"),
            failures: Mutex::new(HashMap::new()),
        }
    }

    fn failures(&self) -> std::sync::MutexGuard<'_, HashMap<String, VecDeque<Instant>>> {
        // Counters only: a panic elsewhere cannot leave them inconsistent.
        self.failures.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// How long until `keys` may try again, if any of them failed too often lately.
    fn blocked(&self, keys: &[String]) -> Option<Duration> {
        let now = Instant::now();
        let mut failures = self.failures();
        keys.iter()
            .filter_map(|k| {
                let list = failures.get_mut(k)?;
                while list
                    .front()
                    .is_some_and(|t| now.duration_since(*t) > FAILURE_WINDOW)
                {
                    list.pop_front();
                }
                (list.len() >= MAX_FAILURES)
                    .then(|| {
                        list.front()
                            .map(|t| FAILURE_WINDOW.saturating_sub(now.duration_since(*t)))
                    })
                    .flatten()
            })
            .max()
    }

    fn failed(&self, keys: &[String]) {
        let mut failures = self.failures();
        if failures.len() > 10_000 {
            let now = Instant::now();
            failures.retain(|_, l| {
                l.back()
                    .is_some_and(|t| now.duration_since(*t) < FAILURE_WINDOW)
            });
        }
        for k in keys {
            failures
                .entry(k.clone())
                .or_default()
                .push_back(Instant::now());
        }
    }

    fn cookie(&self, name: &str, value: &str, max_age: Duration) -> HeaderValue {
        let secure = if self.secure_cookies { "; Secure" } else { "" };
        let text = format!(
            "{name}={value}; Path=/console; HttpOnly; SameSite=Lax; Max-Age={}{secure}",
            max_age.as_secs()
        );
        HeaderValue::from_str(&text).unwrap_or_else(|_| HeaderValue::from_static(""))
    }
}

/// Someone logged in to the console.
#[derive(Debug, Clone)]
pub struct Visitor {
    pub principal: Principal,
    pub csrf: String,
    token_sha256: String,
}

fn random_token() -> String {
    let mut raw = [0u8; 32];
    rand::fill(&mut raw);
    URL_SAFE_NO_PAD.encode(raw)
}

fn digest(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

pub fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

/// Constant-time comparison of two secrets of any length.
pub fn same_secret(a: &str, b: &str) -> bool {
    bool::from(Sha256::digest(a.as_bytes()).ct_eq(&Sha256::digest(b.as_bytes())))
}

/// The visitor whose session cookie this is, if it is live.
pub async fn visitor(state: &AppState, headers: &HeaderMap) -> Option<Visitor> {
    let token = cookie(headers, SESSION_COOKIE)?;
    let token_sha256 = digest(token);
    let session = match state.store.session(&token_sha256, Timestamp::now()).await {
        Ok(s) => s?,
        Err(e) => {
            tracing::warn!(error = %e, "cannot read the session");
            return None;
        }
    };
    let roles = session
        .roles
        .iter()
        .filter_map(|r| r.parse::<Role>().ok())
        .collect();
    Some(Visitor {
        principal: Principal {
            name: session.username,
            roles,
        },
        csrf: session.csrf,
        token_sha256,
    })
}

/// Whether a form's `csrf` field is this session's token.
pub fn csrf_ok(visitor: &Visitor, form: &[(String, String)]) -> bool {
    form.iter()
        .find(|(k, _)| k == "csrf")
        .is_some_and(|(_, v)| same_secret(v, &visitor.csrf))
}

pub fn redirect(to: &str) -> Response {
    (StatusCode::SEE_OTHER, [(LOCATION, to.to_owned())]).into_response()
}

/// A login form's token, set as a cookie beside the page (double submit: a form posted from
/// elsewhere cannot know it).
pub fn login_token(state: &AppState, headers: &HeaderMap) -> (String, Option<HeaderValue>) {
    match cookie(headers, LOGIN_COOKIE) {
        Some(t) if t.len() >= 32 => (t.to_owned(), None),
        _ => {
            let t = random_token();
            let c = state
                .console
                .cookie(LOGIN_COOKIE, &t, Duration::from_secs(3600));
            (t, Some(c))
        }
    }
}

pub enum LoginOutcome {
    /// Logged in: go on, with this cookie.
    Ok(HeaderValue),
    /// Wrong name or password (one message for both).
    Refused,
    /// Too many failures lately: try again after this.
    Blocked(Duration),
    /// The form did not come from our login page.
    Forged,
}

/// Checks a login form and opens a session.
pub async fn login(
    state: &AppState,
    headers: &HeaderMap,
    peer: Option<IpAddr>,
    form: &[(String, String)],
) -> LoginOutcome {
    let field = |name: &str| {
        form.iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
            .unwrap_or("")
    };
    let presented = field("login_token");
    if !cookie(headers, LOGIN_COOKIE).is_some_and(|c| !c.is_empty() && same_secret(c, presented)) {
        return LoginOutcome::Forged;
    }
    let username = field("username").trim();
    let keys = vec![
        format!("user:{}", username.to_lowercase()),
        format!("addr:{}", peer.map_or("unknown".into(), |p| p.to_string())),
    ];
    if let Some(wait) = state.console.blocked(&keys) {
        return LoginOutcome::Blocked(wait);
    }
    let user = match state.store.user(username).await {
        Ok(u) => u.filter(|u| !u.disabled),
        Err(e) => {
            tracing::warn!(error = %e, "cannot read users");
            None
        }
    };
    // A missing user costs the same time as a wrong password.
    let hash = user
        .as_ref()
        .map_or(decoy_hash(), |u| u.password_hash.as_str());
    let password = field("password").to_owned();
    let hash = hash.to_owned();
    let matches = tokio::task::spawn_blocking(move || verify_password(&hash, &password))
        .await
        .unwrap_or(false);
    let Some(user) = user.filter(|_| matches) else {
        state.console.failed(&keys);
        tracing::warn!(username, "console login refused");
        metrics::counter!("banditore_console_logins_total", "outcome" => "refused").increment(1);
        return LoginOutcome::Refused;
    };
    let token = random_token();
    let now = Timestamp::now();
    let expires = now
        .checked_add(jiff::SignedDuration::from_secs(SESSION_TTL.as_secs() as i64))
        .unwrap_or(now);
    if let Err(e) = state
        .store
        .create_session(&digest(&token), user.id, &random_token(), now, expires)
        .await
    {
        tracing::warn!(error = %e, "cannot open a session");
        return LoginOutcome::Refused;
    }
    tracing::info!(username, "console login");
    metrics::counter!("banditore_console_logins_total", "outcome" => "ok").increment(1);
    LoginOutcome::Ok(state.console.cookie(SESSION_COOKIE, &token, SESSION_TTL))
}

/// Ends the session and clears the cookie.
pub async fn logout(state: &AppState, visitor: &Visitor) -> Response {
    if let Err(e) = state.store.delete_session(&visitor.token_sha256).await {
        tracing::warn!(error = %e, "cannot delete the session");
    }
    let mut response = redirect("/console/login");
    response.headers_mut().insert(
        SET_COOKIE,
        state.console.cookie(SESSION_COOKIE, "", Duration::ZERO),
    );
    response
}

/// The client's address, for login limits.
pub fn peer(info: Option<ConnectInfo<SocketAddr>>) -> Option<IpAddr> {
    info.map(|ConnectInfo(addr)| addr.ip())
}
