//! Citizens' own pages, linked from the status page and from every message they receive:
//!
//! - `GET/POST /status/subscribe`: the sign-up form and what follows it;
//! - `GET/POST /status/subscribe/confirm/{token}`: the link sent by email (the `GET` shows a
//!   button, since mail scanners open links; the `POST` confirms);
//! - `GET/POST /status/subscribe/code/{token}`: the code sent by SMS;
//! - `GET/POST /manage/{token}`: preferences, in `preferences.rs`.
//!
//! Plain HTML forms, no script and no cookies: the tokens in the URLs are the only credentials,
//! so there is no session for another site to ride on. Pages with a token are `no-store` and
//! `no-referrer`.

use std::net::SocketAddr;

use axum::body::Body;
use axum::extract::{ConnectInfo, RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use jiff::Timestamp;

use crate::citizen::{Citizens, Confirmation, SignupError, SignupForm, Started};
use crate::domain::subscriber::Language;
use crate::web::AppState;
use crate::web::body::read;
use crate::web::client::client;
use crate::web::extract::Path;

pub(super) type Form = Vec<(String, String)>;

pub(super) fn field<'a>(form: &'a Form, name: &str) -> &'a str {
    form.iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
        .unwrap_or("")
}

pub(super) fn all(form: &Form, name: &str) -> Vec<String> {
    form.iter()
        .filter(|(k, _)| k == name)
        .map(|(_, v)| v.clone())
        .collect()
}

pub(super) fn query(raw: Option<String>) -> Form {
    url::form_urlencoded::parse(raw.unwrap_or_default().as_bytes())
        .into_owned()
        .collect()
}

/// The page language: `lang` from the form or query, else the browser's.
pub(super) fn lang(state: &AppState, headers: &HeaderMap, form: &Form) -> String {
    match field(form, "lang") {
        l @ ("it" | "en") => l.to_owned(),
        _ => crate::web::client::language(state, headers),
    }
}

/// Renders `web/status/<name>.html.j2` with the page's common parts.
pub(super) fn render(
    state: &AppState,
    status: StatusCode,
    name: &str,
    lang: &str,
    ctx: minijinja::Value,
) -> Response {
    let s = &state.status.settings;
    let ctx = minijinja::context! {
        lang => lang,
        title => if lang == "en" { &s.title_en } else { &s.title },
        ..ctx
    };
    match state.renderer.status_page(name, &ctx) {
        Ok(html) => super::unsubscribe_page::html(status, html),
        Err(e) => {
            tracing::error!(error = %e, page = name, "citizen page template failed");
            (StatusCode::INTERNAL_SERVER_ERROR, "page unavailable").into_response()
        }
    }
}

pub(super) fn step(state: &AppState, status: StatusCode, lang: &str, step: &str) -> Response {
    render(
        state,
        status,
        "subscribe",
        lang,
        minijinja::context! { step => step, error => (), here => "/status/subscribe" },
    )
}

/// The sign-up side, when the deployment offers it.
fn citizens(state: &AppState) -> Option<&Citizens> {
    Some(&*state.citizens).filter(|c| !c.settings().channels.is_empty())
}

fn not_offered() -> Response {
    crate::web::ApiError::NotFound("citizens cannot subscribe here".into()).into_response()
}

/// The services as form choices, in the page's language.
pub(super) fn service_choices(
    c: &Citizens,
    lang: &str,
    checked: &[String],
) -> Vec<minijinja::Value> {
    c.services()
        .iter()
        .map(|s| {
            minijinja::context! {
                id => &s.id,
                name => if lang == "en" && !s.name_en.is_empty() { &s.name_en } else { &s.name },
                checked => checked.contains(&s.id),
            }
        })
        .collect()
}

/// The form, filled with what was given and the error to correct, if any.
fn form_page(
    state: &AppState,
    c: &Citizens,
    status: StatusCode,
    lang: &str,
    given: &SignupForm,
    error: Option<(&str, String)>,
) -> Response {
    let channels: Vec<&str> = c.settings().channels.iter().map(|k| k.as_str()).collect();
    let channel = if given.channel.is_empty() {
        channels.first().copied().unwrap_or("email").to_owned()
    } else {
        given.channel.clone()
    };
    // The language link keeps what the form was opened with.
    let mut here = url::form_urlencoded::Serializer::new(String::new());
    for s in &given.services {
        here.append_pair("services", s);
    }
    if !given.replaces.is_empty() {
        here.append_pair("replaces", &given.replaces);
    }
    render(
        state,
        status,
        "subscribe",
        lang,
        minijinja::context! {
            step => "form",
            here => format!("/status/subscribe?{}", here.finish()),
            services => service_choices(c, lang, &given.services),
            channels => channels,
            channel => channel,
            address => &given.address,
            replaces => &given.replaces,
            error => error.as_ref().map(|(_, m)| m.clone()),
            error_field => error.as_ref().map(|(f, _)| *f),
        },
    )
}

/// `GET /status/subscribe`: the form; `services` and `replaces` in the query fill it in.
pub async fn form(
    State(state): State<AppState>,
    headers: HeaderMap,
    RawQuery(raw): RawQuery,
) -> Response {
    let Some(c) = citizens(&state) else {
        return not_offered();
    };
    let q = query(raw);
    let lang = lang(&state, &headers, &q);
    let given = SignupForm {
        services: all(&q, "services"),
        replaces: field(&q, "replaces").to_owned(),
        ..SignupForm::default()
    };
    form_page(&state, c, StatusCode::OK, &lang, &given, None)
}

/// `POST /status/subscribe`.
pub async fn submit(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let Some(c) = citizens(&state) else {
        return not_offered();
    };
    let Ok(bytes) = read(&headers, body, 16 * 1024).await else {
        return (StatusCode::PAYLOAD_TOO_LARGE, "form too large").into_response();
    };
    let f: Form = url::form_urlencoded::parse(&bytes).into_owned().collect();
    let lang = lang(&state, &headers, &f);
    let given = SignupForm {
        channel: field(&f, "channel").to_owned(),
        // The form has a field per channel; a client may also send `address`.
        address: [
            match field(&f, "channel") {
                "sms" | "whatsapp" => "phone",
                _ => "email",
            },
            "address",
        ]
        .iter()
        .map(|name| field(&f, name))
        .find(|v| !v.trim().is_empty())
        .unwrap_or_default()
        .to_owned(),
        services: all(&f, "services"),
        language: lang.clone(),
        replaces: field(&f, "replaces").to_owned(),
    };
    let ip = client(c, &headers, peer);
    match c.start(&given, ip).await {
        Ok(Started::EmailSent) => step(&state, StatusCode::ACCEPTED, &lang, "email_sent"),
        Ok(Started::CodeSent { token }) => {
            code_page(&state, StatusCode::ACCEPTED, &lang, &token, None)
        }
        Ok(Started::Telegram { token, expires_at }) => {
            let link = match &state.telegram {
                Some(t) => crate::bot::bot_username(t)
                    .await
                    .map(|name| format!("https://t.me/{name}?start={token}")),
                None => None,
            };
            render(
                &state,
                StatusCode::ACCEPTED,
                "subscribe",
                &lang,
                minijinja::context! {
                    step => "telegram", error => (), token => token, link => link,
                    expires_at => expires_at.to_string(), here => "/status/subscribe",
                },
            )
        }
        Err(SignupError::Invalid { field, message }) => form_page(
            &state,
            c,
            StatusCode::BAD_REQUEST,
            &lang,
            &given,
            Some((field, message)),
        ),
        Err(SignupError::TooMany(wait)) => {
            let mut r = step(&state, StatusCode::TOO_MANY_REQUESTS, &lang, "too_many");
            if let Ok(v) = HeaderValue::from_str(&wait.as_secs().max(1).to_string()) {
                r.headers_mut().insert(header::RETRY_AFTER, v);
            }
            r
        }
        Err(SignupError::Unavailable(message)) => form_page(
            &state,
            c,
            StatusCode::SERVICE_UNAVAILABLE,
            &lang,
            &given,
            Some(("unavailable", message)),
        ),
        Err(e @ SignupError::Busy(wait)) => {
            let mut r = form_page(
                &state,
                c,
                StatusCode::SERVICE_UNAVAILABLE,
                &lang,
                &given,
                Some(("busy", e.to_string())),
            );
            if let Ok(v) = HeaderValue::from_str(&wait.as_secs().max(1).to_string()) {
                r.headers_mut().insert(header::RETRY_AFTER, v);
            }
            r
        }
    }
}

fn code_page(
    state: &AppState,
    status: StatusCode,
    lang: &str,
    token: &str,
    attempts_left: Option<u32>,
) -> Response {
    render(
        state,
        status,
        "subscribe",
        lang,
        minijinja::context! {
            step => "code", error => (), token => token, attempts_left => attempts_left,
            here => format!("/status/subscribe/code/{token}"),
        },
    )
}

/// What a confirmation came to, as a page.
async fn confirmed(
    state: &AppState,
    c: &Citizens,
    lang: &str,
    token: &str,
    outcome: Result<Confirmation, SignupError>,
) -> Response {
    match outcome {
        Ok(Confirmation::Subscribed { address_id }) => {
            let manage_url = match state.store.address(address_id).await {
                Ok(Some(o)) => {
                    Some(c.manage_url(address_id, o.address.channel, &o.address.address))
                }
                _ => None,
            };
            render(
                state,
                StatusCode::OK,
                "subscribe",
                lang,
                minijinja::context! { step => "done", error => (), manage_url => manage_url, here => "/status" },
            )
        }
        Ok(Confirmation::WrongCode { attempts_left }) if attempts_left > 0 => code_page(
            state,
            StatusCode::BAD_REQUEST,
            lang,
            token,
            Some(attempts_left),
        ),
        Ok(Confirmation::WrongCode { .. } | Confirmation::Expired | Confirmation::Unknown) => {
            step(state, StatusCode::NOT_FOUND, lang, "invalid")
        }
        Ok(Confirmation::Used) => step(state, StatusCode::GONE, lang, "used"),
        Err(e) => {
            tracing::warn!(error = %e, "cannot confirm a sign-up");
            step(state, StatusCode::SERVICE_UNAVAILABLE, lang, "unavailable")
        }
    }
}

/// `GET /status/subscribe/confirm/{token}`: what the link confirms, and the button.
pub async fn confirm_page(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(token): Path<String>,
    RawQuery(raw): RawQuery,
) -> Response {
    pending_page(&state, &headers, &token, raw, false).await
}

/// `GET /status/subscribe/code/{token}`: the form for the code again (after switching the
/// page's language, say).
pub async fn code_form(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(token): Path<String>,
    RawQuery(raw): RawQuery,
) -> Response {
    pending_page(&state, &headers, &token, raw, true).await
}

/// The page of a sign-up waiting for its link (`with_code` false) or its code.
async fn pending_page(
    state: &AppState,
    headers: &HeaderMap,
    token: &str,
    raw: Option<String>,
    with_code: bool,
) -> Response {
    let Some(c) = citizens(state) else {
        return not_offered();
    };
    let lang = lang(state, headers, &query(raw));
    match c.signup(token).await {
        Err(e) => {
            tracing::warn!(error = %e, "cannot read a sign-up");
            step(state, StatusCode::SERVICE_UNAVAILABLE, &lang, "unavailable")
        }
        Ok(Some(s)) if s.code_sha256.is_some() != with_code => {
            step(state, StatusCode::NOT_FOUND, &lang, "invalid")
        }
        Ok(Some(s)) if s.used_at.is_some() => step(state, StatusCode::GONE, &lang, "used"),
        Ok(Some(s)) if s.expires_at > Timestamp::now() => {
            if with_code {
                return code_page(state, StatusCode::OK, &lang, token, None);
            }
            let language = Language::try_from(lang.clone()).unwrap_or(s.language.clone());
            render(
                state,
                StatusCode::OK,
                "subscribe",
                &lang,
                minijinja::context! {
                    step => "confirm", error => (), token => token,
                    service_names => c.service_names(&s.services, &language),
                    here => format!("/status/subscribe/confirm/{token}"),
                },
            )
        }
        Ok(_) => step(state, StatusCode::NOT_FOUND, &lang, "invalid"),
    }
}

pub(super) async fn posted_form(headers: &HeaderMap, body: Body) -> Option<Form> {
    let bytes = read(headers, body, 16 * 1024).await.ok()?;
    Some(url::form_urlencoded::parse(&bytes).into_owned().collect())
}

/// `POST /status/subscribe/confirm/{token}`: the button of the emailed link.
pub async fn confirm(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(token): Path<String>,
    body: Body,
) -> Response {
    confirm_posted(&state, &headers, &token, body, false).await
}

/// `POST /status/subscribe/code/{token}`: the code sent by SMS.
pub async fn code(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(token): Path<String>,
    body: Body,
) -> Response {
    confirm_posted(&state, &headers, &token, body, true).await
}

async fn confirm_posted(
    state: &AppState,
    headers: &HeaderMap,
    token: &str,
    body: Body,
    with_code: bool,
) -> Response {
    let Some(c) = citizens(state) else {
        return not_offered();
    };
    let Some(f) = posted_form(headers, body).await else {
        return (StatusCode::PAYLOAD_TOO_LARGE, "form too large").into_response();
    };
    let lang = lang(state, headers, &f);
    let code = with_code.then(|| field(&f, "code"));
    let outcome = c.confirm(token, code).await;
    confirmed(state, c, &lang, token, outcome).await
}
