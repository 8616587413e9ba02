//! Console sessions: login with a password (argon2), a session cookie (HttpOnly, SameSite=Lax,
//! Secure when the console is served over https) stored as its SHA-256, a CSRF token per
//! session checked on every form, logout. Logins are limited by `login_limit` (reserved before
//! the password is checked) and at most two passwords are checked at once, a few more logins
//! waiting for a turn and the rest answered `429` at once, so a flood of logins costs neither
//! memory nor the limits' worth.

use std::net::IpAddr;
use std::time::Duration;

use axum::http::header::{COOKIE, LOCATION, SET_COOKIE};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jiff::Timestamp;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use hmac::{Hmac, Mac};
use tokio::sync::Semaphore;

use super::login_limit::{Attempt, LoginLimits};
use crate::settings::Role;
use crate::users::{decoy_hash, verify_password};
use crate::web::AppState;
use crate::web::auth::Principal;

pub const SESSION_COOKIE: &str = "banditore_session";
/// Before login: the double-submit token of the login form.
const LOGIN_COOKIE: &str = "banditore_login";
/// After a login: this browser is known to belong to the user (signed; see `login_limit`).
const DEVICE_COOKIE: &str = "banditore_device";
const DEVICE_TTL: Duration = Duration::from_secs(180 * 24 * 3600);
const SESSION_TTL: Duration = Duration::from_secs(12 * 3600);
/// Passwords checked at once (argon2 takes 19 MiB and tens of milliseconds each), and logins
/// that may wait for a turn; beyond, `429` at once.
const HASHING: usize = 2;
const WAITING: usize = 16;

/// What the console needs beyond the API's state.
pub struct Console {
    /// Cookies carry `Secure` when the console is reached over https.
    pub secure_cookies: bool,
    limits: LoginLimits,
    /// Logins inside the server: hashing or waiting to.
    admitted: Semaphore,
    hashing: Semaphore,
    /// Signs device cookies.
    device_key: Vec<u8>,
}

impl Console {
    pub fn new(public_url: &str, secret_key: &[u8]) -> Console {
        let mut device_key = b"console-device\0".to_vec();
        device_key.extend_from_slice(secret_key);
        Console {
            secure_cookies: public_url.starts_with("https://"),
            limits: LoginLimits::default(),
            admitted: Semaphore::new(HASHING + WAITING),
            hashing: Semaphore::new(HASHING),
            device_key,
        }
    }

    /// A device cookie's value for `user_id`, good until `until` (Unix seconds).
    fn device_value(&self, user_id: i64, until: i64) -> String {
        let mut mac = <Hmac<Sha256> as hmac::KeyInit>::new_from_slice(&self.device_key)
            .unwrap_or_else(|_| unreachable!("HMAC takes a key of any length"));
        mac.update(format!("{user_id}.{until}").as_bytes());
        format!(
            "{user_id}.{until}.{}",
            hex::encode(mac.finalize().into_bytes())
        )
    }

    /// Whether the browser's device cookie names `user_id` and is still good.
    fn known_device(&self, headers: &HeaderMap, user_id: i64, now: Timestamp) -> bool {
        let Some(value) = cookie(headers, DEVICE_COOKIE) else {
            return false;
        };
        let mut parts = value.splitn(3, '.');
        let (Some(id), Some(until)) = (parts.next(), parts.next()) else {
            return false;
        };
        let (Ok(id), Ok(until)) = (id.parse::<i64>(), until.parse::<i64>()) else {
            return false;
        };
        id == user_id
            && until > now.as_second()
            && same_secret(value, &self.device_value(id, until))
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
    /// Logged in: go on, with the session cookie and the device cookie.
    Ok(HeaderValue, HeaderValue),
    /// Too many logins being checked at once: try again in a second.
    Busy,
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
    // Beyond the logins already inside, answer at once: no queue to fill, no memory to take.
    let Ok(_admitted) = state.console.admitted.try_acquire() else {
        metrics::counter!("banditore_console_logins_total", "outcome" => "busy").increment(1);
        return LoginOutcome::Busy;
    };
    let user = match state.store.user(username).await {
        Ok(u) => u.filter(|u| !u.disabled),
        Err(e) => {
            tracing::warn!(error = %e, "cannot read users");
            None
        }
    };
    let now = Timestamp::now();
    let attempt = Attempt {
        name: username.to_lowercase(),
        client: peer.map_or("unknown".into(), |ip| {
            crate::citizen::one_client(ip).to_string()
        }),
        known_device: user
            .as_ref()
            .is_some_and(|u| state.console.known_device(headers, u.id, now)),
        unlocked_at: user.as_ref().and_then(|u| u.unlocked_at),
    };
    let reservation = match state.console.limits.reserve(&attempt, now) {
        Ok(r) => r,
        Err(wait) => return LoginOutcome::Blocked(wait),
    };
    // A missing user costs the same time as a wrong password.
    let hash = user
        .as_ref()
        .map_or(decoy_hash(), |u| u.password_hash.as_str())
        .to_owned();
    let password = field("password").to_owned();
    let matches = match state.console.hashing.acquire().await {
        Ok(_turn) => tokio::task::spawn_blocking(move || verify_password(&hash, &password))
            .await
            .unwrap_or(false),
        Err(_) => false,
    };
    let Some(user) = user.filter(|_| matches) else {
        tracing::warn!(username, "console login refused");
        metrics::counter!("banditore_console_logins_total", "outcome" => "refused").increment(1);
        return LoginOutcome::Refused;
    };
    state.console.limits.succeeded(reservation);
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
    let until = now.as_second() + DEVICE_TTL.as_secs() as i64;
    LoginOutcome::Ok(
        state.console.cookie(SESSION_COOKIE, &token, SESSION_TTL),
        state.console.cookie(
            DEVICE_COOKIE,
            &state.console.device_value(user.id, until),
            DEVICE_TTL,
        ),
    )
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
