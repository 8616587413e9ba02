//! The web console: server-rendered pages from `templates/web/console/`, in Italian or English,
//! for the communications office and operators. Every page needs a session; every form carries
//! the session's CSRF token; every action checks the same permissions as the API.
//!
//! Every answer forbids framing (clickjacking a decision button), caching (pages hold contacts
//! and drafts) and referrers; a page runs only the inline script and style that carry its
//! response's nonce, so markup injected past the escaping runs nothing.

/// The value, or the page that says why there is none (the login page, a 403…).
macro_rules! or_page {
    ($e:expr) => {
        match $e {
            Ok(v) => v,
            Err(page) => return page,
        }
    };
}

mod access;
mod audit;
mod drafts;
mod heartbeats;
mod incidents;
mod login;
pub mod login_limit;
mod me;
pub mod session;
mod subscribers;

use axum::body::Body;
use axum::http::header::{
    CACHE_CONTROL, CONTENT_SECURITY_POLICY, REFERRER_POLICY, X_FRAME_OPTIONS,
};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use minijinja::Value;

use crate::settings::Permission;
use crate::web::AppState;
use crate::web::body::read;
use crate::web::error::ApiError;
use session::{Visitor, csrf_ok, redirect};

type Form = Vec<(String, String)>;

/// The policy of an answer without a page: nothing may load or run.
const NO_PAGE_POLICY: &str =
    "default-src 'none'; frame-ancestors 'none'; form-action 'self'; base-uri 'none'";

/// The policy of a page whose inline script and style carry `nonce`.
fn page_policy(nonce: &str) -> String {
    format!(
        "default-src 'none'; script-src 'nonce-{nonce}'; style-src 'nonce-{nonce}'; \
         img-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
    )
}

/// The headers of every console answer; a page has set its own policy already.
pub(super) async fn guard(mut response: Response) -> Response {
    let headers = response.headers_mut();
    headers.insert(X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(REFERRER_POLICY, HeaderValue::from_static("same-origin"));
    if !headers.contains_key(CONTENT_SECURITY_POLICY) {
        headers.insert(
            CONTENT_SECURITY_POLICY,
            HeaderValue::from_static(NO_PAGE_POLICY),
        );
    }
    response
}

fn field<'a>(form: &'a Form, name: &str) -> &'a str {
    form.iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
        .unwrap_or("")
}

async fn form(state: &AppState, headers: &HeaderMap, body: Body) -> Result<Form, ApiError> {
    let bytes = read(headers, body, state.max_body_bytes).await?;
    Ok(url::form_urlencoded::parse(&bytes).into_owned().collect())
}

/// Renders `web/console/<name>.html.j2`.
fn page(
    state: &AppState,
    lang: &str,
    visitor: Option<&Visitor>,
    name: &str,
    status: StatusCode,
    ctx: Value,
) -> Response {
    let user = visitor.map(|v| {
        minijinja::context! {
            name => v.principal.name.clone(),
            roles => v.principal.roles.iter().map(|r| r.as_str()).collect::<Vec<_>>(),
            drafts => v.principal.may(Permission::Drafts),
            incidents => v.principal.may(Permission::Incidents),
            subscribers => v.principal.may(Permission::Subscribers),
            admin => v.principal.may(Permission::Admin),
        }
    });
    // Every signed-in page says which channels are paused, so nobody misses it.
    let paused: Vec<_> = visitor
        .map(|_| {
            state
                .pauses
                .all()
                .into_iter()
                .map(|(channel, p)| {
                    minijinja::context! {
                        channel => channel.title(),
                        since => p.since.to_string(),
                        reason => p.reason,
                        next_probe => p.next_probe.to_string(),
                    }
                })
                .collect()
        })
        .unwrap_or_default();
    let nonce = crate::ids::random_hex(16);
    let ctx = minijinja::context! {
        lang => lang,
        user => user,
        csrf => visitor.map(|v| v.csrf.clone()),
        paused => paused,
        nonce => &nonce,
        page => ctx,
    };
    match state.renderer.console(name, &ctx) {
        Ok(html) => {
            let policy = HeaderValue::from_str(&page_policy(&nonce))
                .unwrap_or_else(|_| HeaderValue::from_static(NO_PAGE_POLICY));
            (status, [(CONTENT_SECURITY_POLICY, policy)], Html(html)).into_response()
        }
        Err(e) => {
            tracing::error!(error = %e, page = name, "console page failed to render");
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                "console page failed to render; see the server log",
            )
                .into_response()
        }
    }
}

fn error_page(state: &AppState, lang: &str, visitor: Option<&Visitor>, e: ApiError) -> Response {
    let status = e.status();
    let message = match &e {
        ApiError::BadRequest {
            message,
            field: Some(field),
        } => format!("{field}: {message}"),
        ApiError::BadRequest { message, .. } => message.clone(),
        ApiError::Forbidden(m) | ApiError::NotFound(m) | ApiError::Conflict(m) => m.clone(),
        ApiError::Unavailable(m) => m.clone(),
        other => {
            tracing::error!(error = ?other, "console error");
            String::new()
        }
    };
    page(
        state,
        lang,
        visitor,
        "error",
        status,
        minijinja::context! { status => status.as_u16(), message => message },
    )
}

/// The visitor, or a redirect to the login page.
async fn signed_in(state: &AppState, headers: &HeaderMap) -> Result<Visitor, Response> {
    session::visitor(state, headers)
        .await
        .ok_or_else(|| redirect("/console/login"))
}

/// The visitor if allowed `needed`, else the page that says why.
async fn allowed(
    state: &AppState,
    headers: &HeaderMap,
    lang: &str,
    needed: Permission,
) -> Result<Visitor, Response> {
    let v = signed_in(state, headers).await?;
    if v.principal.may(needed) {
        Ok(v)
    } else {
        let e = ApiError::Forbidden(format!("{}: {}", v.principal.name, needed.describe()));
        Err(error_page(state, lang, Some(&v), e))
    }
}

/// A form post: signed in, allowed, and carrying this session's CSRF token (403 otherwise).
async fn posted(
    state: &AppState,
    headers: &HeaderMap,
    lang: &str,
    needed: Permission,
    body: Body,
) -> Result<(Visitor, Form), Response> {
    let v = allowed(state, headers, lang, needed).await?;
    let form = form(state, headers, body)
        .await
        .map_err(|e| error_page(state, lang, Some(&v), e))?;
    if !csrf_ok(&v, &form) {
        tracing::warn!(user = %v.principal.name, "console form without its CSRF token");
        return Err(error_page(
            state,
            lang,
            Some(&v),
            ApiError::Forbidden(
                "the form is stale or did not come from this console: reload the page".into(),
            ),
        ));
    }
    Ok((v, form))
}

fn json<T: serde::Serialize + ?Sized>(value: &T) -> Value {
    Value::from(minijinja::value::Serde(value))
}

/// The admins' pages: users and tokens.
fn access_routes() -> axum::Router<AppState> {
    use axum::routing::{get, post};
    axum::Router::new()
        .route(
            "/console/users",
            get(access::users).post(access::user_create),
        )
        .route("/console/users/{username}", post(access::user_change))
        .route(
            "/console/tokens",
            get(access::tokens).post(access::token_create),
        )
        .route("/console/tokens/{name}/revoke", post(access::token_revoke))
}

/// The console's routes, each answer with the console's headers.
pub fn routes() -> axum::Router<AppState> {
    use axum::routing::{get, post};
    axum::Router::new()
        .route("/console", get(login::home))
        .route(
            "/console/login",
            get(login::login_page).post(login::login_submit),
        )
        .route("/console/logout", post(login::logout))
        .route("/console/drafts", get(drafts::drafts))
        .route("/console/drafts/{id}", get(drafts::draft))
        .route("/console/drafts/{id}/edit", post(drafts::draft_edit))
        .route("/console/drafts/{id}/approve", post(drafts::draft_approve))
        .route("/console/drafts/{id}/reject", post(drafts::draft_reject))
        .route(
            "/console/incidents",
            get(incidents::incidents).post(incidents::incident_open),
        )
        .route("/console/incidents/{id}", get(incidents::incident))
        .route(
            "/console/incidents/{id}/acknowledgements",
            get(incidents::acknowledgements),
        )
        .route(
            "/console/incidents/{id}/updates",
            post(incidents::incident_update),
        )
        .route("/console/audit", get(audit::audit_page))
        .route("/console/heartbeats", get(heartbeats::heartbeats_page))
        .route("/console/me", get(me::me))
        .route(
            "/console/subscribers",
            get(subscribers::subscribers).post(subscribers::subscriber_create),
        )
        .route("/console/subscribers/{id}", get(subscribers::subscriber))
        .route(
            "/console/subscribers/{id}/edit",
            post(subscribers::subscriber_edit),
        )
        .route(
            "/console/subscribers/{id}/delete",
            post(subscribers::subscriber_delete),
        )
        .merge(access_routes())
        .route_layer(axum::middleware::map_response(guard))
}
