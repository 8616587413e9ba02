//! Signing in and out of the console, and its front door. The login form carries a
//! double-submit token; what a login costs and when it is refused is `session`'s business.

use std::net::SocketAddr;

use axum::body::Body;
use axum::extract::{ConnectInfo, State};
use axum::http::header::{RETRY_AFTER, SET_COOKIE};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use minijinja::Value;

use super::session::{self, LoginOutcome, login_token, redirect};
use super::{error_page, form, page, posted};
use crate::settings::Permission;
use crate::web::AppState;
use crate::web::client::language;

pub async fn home() -> Response {
    redirect("/console/drafts")
}

pub async fn login_page(State(state): State<AppState>, headers: HeaderMap) -> Response {
    let lang = language(&state, &headers);
    login_form(&state, &headers, &lang, StatusCode::OK, None)
}

fn login_form(
    state: &AppState,
    headers: &HeaderMap,
    lang: &str,
    status: StatusCode,
    problem: Option<Value>,
) -> Response {
    let (token, cookie) = login_token(state, headers);
    let mut response = page(
        state,
        lang,
        None,
        "login",
        status,
        minijinja::context! { login_token => token, problem => problem },
    );
    if let Some(c) = cookie {
        response.headers_mut().append(SET_COOKIE, c);
    }
    response
}

pub async fn login_submit(
    State(state): State<AppState>,
    info: ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let lang = language(&state, &headers);
    let form = match form(&state, &headers, body).await {
        Ok(f) => f,
        Err(e) => return error_page(&state, &lang, None, e),
    };
    // Behind a reverse proxy every login would come from the proxy: the client's address is
    // read as the citizens' pages read it (`status.subscribe.forwarded_for`).
    let client = crate::web::client::client(&state.citizens, &headers, info.0);
    match session::login(&state, &headers, Some(client), &form).await {
        LoginOutcome::Ok(session, device) => {
            let mut response = redirect("/console/drafts");
            response.headers_mut().append(SET_COOKIE, session);
            response.headers_mut().append(SET_COOKIE, device);
            response
        }
        LoginOutcome::Busy => {
            let mut response = login_form(
                &state,
                &headers,
                &lang,
                StatusCode::TOO_MANY_REQUESTS,
                Some(Value::from("busy")),
            );
            response
                .headers_mut()
                .insert(RETRY_AFTER, axum::http::HeaderValue::from_static("1"));
            response
        }
        LoginOutcome::Refused => login_form(
            &state,
            &headers,
            &lang,
            StatusCode::UNAUTHORIZED,
            Some(Value::from("refused")),
        ),
        LoginOutcome::Blocked(wait) => {
            let mut response = login_form(
                &state,
                &headers,
                &lang,
                StatusCode::TOO_MANY_REQUESTS,
                Some(minijinja::context! {
                    blocked_minutes => wait.as_secs().div_ceil(60),
                    blocked_seconds => wait.as_secs().max(1),
                }),
            );
            if let Ok(v) = axum::http::HeaderValue::from_str(&wait.as_secs().max(1).to_string()) {
                response.headers_mut().insert(RETRY_AFTER, v);
            }
            response
        }
        LoginOutcome::Forged => login_form(
            &state,
            &headers,
            &lang,
            StatusCode::FORBIDDEN,
            Some(Value::from("stale")),
        ),
    }
}

pub async fn logout(State(state): State<AppState>, headers: HeaderMap, body: Body) -> Response {
    let lang = language(&state, &headers);
    match posted(&state, &headers, &lang, Permission::Read, body).await {
        Ok((v, _)) => session::logout(&state, &v).await,
        Err(r) => r,
    }
}
