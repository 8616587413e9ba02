//! The web console: server-rendered pages from `templates/web/console/`, in Italian or English,
//! for the communications office and operators. Every page needs a session; every form carries
//! the session's CSRF token; every action checks the same permissions as the API.
//!
//! Every answer forbids framing (clickjacking a decision button), caching (pages hold contacts
//! and drafts) and referrers; a page runs only the inline script and style that carry its
//! response's nonce, so markup injected past the escaping runs nothing.

use std::collections::BTreeMap;
use std::net::SocketAddr;

use axum::body::Body;
use axum::extract::{ConnectInfo, State};
use axum::http::header::{
    ACCEPT_LANGUAGE, CACHE_CONTROL, CONTENT_SECURITY_POLICY, REFERRER_POLICY, RETRY_AFTER,
    SET_COOKIE, X_FRAME_OPTIONS,
};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use jiff::Timestamp;
use minijinja::Value;

use super::body::read;
use super::drafts::{check_part, decide, measure};
use super::error::ApiError;
use super::extract::Path;
use super::incidents::{IncidentJson, SignalJson, UpdateJson, manual_error};
use super::session::{self, LoginOutcome, Visitor, csrf_ok, login_token, redirect};
use super::subscribers::{SubscriberJson, create_from, delete_by};
use super::{AppState, record_audit};
use crate::domain::subscriber::ChannelKind;
use crate::incident::{ManualIncident, ManualUpdate};
use crate::settings::Permission;
use crate::store::{Decision, IncidentFilter, PartEdit, Topic};

type Form = Vec<(String, String)>;

/// The value, or the page that says why there is none (the login page, a 403…).
macro_rules! or_page {
    ($e:expr) => {
        match $e {
            Ok(v) => v,
            Err(page) => return page,
        }
    };
}

/// The page language: the browser's first choice we have words for, else the deployment's.
pub(super) fn language(state: &AppState, headers: &HeaderMap) -> String {
    let ours = ["it", "en"];
    headers
        .get(ACCEPT_LANGUAGE)
        .and_then(|v| v.to_str().ok())
        .into_iter()
        .flat_map(|v| v.split(','))
        .map(|l| {
            l.split(';')
                .next()
                .unwrap_or("")
                .trim()
                .to_ascii_lowercase()
        })
        .map(|l| l.split('-').next().unwrap_or("").to_owned())
        .find(|l| ours.contains(&l.as_str()))
        .unwrap_or_else(|| {
            let d = state.default_language.primary();
            if ours.contains(&d) {
                d.to_owned()
            } else {
                "en".to_owned()
            }
        })
}

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
    let client = super::citizen::client(&state.citizens, &headers, info.0);
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

pub async fn drafts(State(state): State<AppState>, headers: HeaderMap) -> Response {
    let lang = language(&state, &headers);
    let v = or_page!(allowed(&state, &headers, &lang, Permission::Read).await);
    let (pending, recent) = match (
        state.store.drafts(Some("pending"), 100).await,
        state.store.drafts(None, 30).await,
    ) {
        (Ok(p), Ok(r)) => (p, r),
        (Err(e), _) | (_, Err(e)) => return error_page(&state, &lang, Some(&v), e.into()),
    };
    let recent: Vec<_> = recent
        .into_iter()
        .filter(|d| d.state != "pending")
        .collect();
    page(
        &state,
        &lang,
        Some(&v),
        "drafts",
        StatusCode::OK,
        minijinja::context! { pending => json(&pending), recent => json(&recent) },
    )
}

pub async fn draft(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<i64>,
) -> Response {
    let lang = language(&state, &headers);
    let v = or_page!(allowed(&state, &headers, &lang, Permission::Read).await);
    let loaded = async {
        let draft = state
            .store
            .draft(id)
            .await?
            .ok_or_else(|| ApiError::NotFound(format!("draft {id}")))?;
        let incident = state.store.incident(draft.incident_id).await?;
        let alerts = state.store.incident_alerts(draft.incident_id).await?;
        let audit = state.store.audit_log(Some(draft.incident_id), 50).await?;
        Ok::<_, ApiError>((draft, incident, alerts, audit))
    }
    .await;
    let (draft, incident, alerts, audit) = match loaded {
        Ok(x) => x,
        Err(e) => return error_page(&state, &lang, Some(&v), e),
    };
    let parts: Vec<Value> = draft
        .parts
        .iter()
        .map(|p| {
            minijinja::context! {
                part => json(p),
                key => format!("{}_{}", p.channel.as_str(), p.language),
                length => json(&measure(&state.renderer.social_limits(), p.channel, &p.body)),
            }
        })
        .collect();
    page(
        &state,
        &lang,
        Some(&v),
        "draft",
        StatusCode::OK,
        minijinja::context! {
            draft => json(&draft),
            parts => parts,
            incident => incident.as_ref().map(|i| json(&IncidentJson::from(i))),
            signals => json(&alerts.iter().map(SignalJson::from).collect::<Vec<_>>()),
            audit => json(&audit.into_iter().filter(|a| a.draft_id == Some(id)).collect::<Vec<_>>()),
            counting => counting(&state.renderer.social_limits()),
        },
    )
}

pub async fn draft_edit(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<i64>,
    body: Body,
) -> Response {
    let lang = language(&state, &headers);
    let (v, form) = or_page!(posted(&state, &headers, &lang, Permission::Drafts, body).await);
    let current = match state.store.draft(id).await {
        Ok(Some(d)) => d,
        Ok(None) => {
            return error_page(
                &state,
                &lang,
                Some(&v),
                ApiError::NotFound(format!("draft {id}")),
            );
        }
        Err(e) => return error_page(&state, &lang, Some(&v), e.into()),
    };
    let mut edits = Vec::new();
    // Decided parts are shown read-only; only pending ones can change.
    for p in current.parts.iter().filter(|p| p.state == "pending") {
        let key = format!("{}_{}", p.channel.as_str(), p.language);
        let sent = |name: &str| {
            form.iter()
                .find(|(k, _)| *k == format!("{name}_{key}"))
                .map(|(_, v)| v)
        };
        // Browsers send CRLF line ends; the stored text uses LF like the rendered one.
        let body = sent("body").map(|b| b.replace("\r\n", "\n"));
        let subject = sent("subject").map(|s| s.trim().to_owned());
        if body.is_none() && subject.is_none() {
            continue;
        }
        let edit = PartEdit {
            channel: p.channel,
            language: p.language.clone(),
            subject: subject.or_else(|| p.subject.clone()),
            body: body.unwrap_or_else(|| p.body.clone()),
        };
        if let Err(r) = check_part(&state.renderer.social_limits(), &edit) {
            let e = ApiError::field(format!("{}_{key}", r.field), r.message);
            return error_page(&state, &lang, Some(&v), e);
        }
        edits.push(edit);
    }
    match state
        .store
        .edit_draft(id, &edits, &v.principal.name, Timestamp::now())
        .await
    {
        Ok(_) => redirect(&format!("/console/drafts/{id}")),
        Err(e) => error_page(&state, &lang, Some(&v), e.into()),
    }
}

pub async fn draft_approve(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<i64>,
    body: Body,
) -> Response {
    let lang = language(&state, &headers);
    let (v, form) = or_page!(posted(&state, &headers, &lang, Permission::Drafts, body).await);
    let channels: Vec<ChannelKind> = form
        .iter()
        .filter(|(k, _)| k == "channel")
        .filter_map(|(_, c)| c.parse().ok())
        .collect();
    let decision = Decision::Approve {
        channels: (!channels.is_empty()).then_some(channels),
    };
    match decide(&state, id, decision, &v.principal.name).await {
        Ok(_) => redirect(&format!("/console/drafts/{id}")),
        Err(e) => error_page(&state, &lang, Some(&v), e),
    }
}

pub async fn draft_reject(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<i64>,
    body: Body,
) -> Response {
    let lang = language(&state, &headers);
    let (v, form) = or_page!(posted(&state, &headers, &lang, Permission::Drafts, body).await);
    let reason = field(&form, "reason").trim();
    if reason.is_empty() {
        return error_page(
            &state,
            &lang,
            Some(&v),
            ApiError::field("reason", "say why the draft is rejected"),
        );
    }
    let decision = Decision::Reject {
        reason: reason.to_owned(),
    };
    match decide(&state, id, decision, &v.principal.name).await {
        Ok(_) => redirect(&format!("/console/drafts/{id}")),
        Err(e) => error_page(&state, &lang, Some(&v), e),
    }
}

pub async fn incidents(State(state): State<AppState>, headers: HeaderMap) -> Response {
    let lang = language(&state, &headers);
    let v = or_page!(allowed(&state, &headers, &lang, Permission::Read).await);
    let filter = IncidentFilter {
        open: None,
        limit: 100,
        before: None,
    };
    match state.store.list_incidents(&filter).await {
        Ok(rows) => page(
            &state,
            &lang,
            Some(&v),
            "incidents",
            StatusCode::OK,
            minijinja::context! {
                incidents => json(&rows.iter().map(IncidentJson::from).collect::<Vec<_>>()),
            },
        ),
        Err(e) => error_page(&state, &lang, Some(&v), e.into()),
    }
}

pub async fn incident(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<i64>,
) -> Response {
    let lang = language(&state, &headers);
    let v = or_page!(allowed(&state, &headers, &lang, Permission::Read).await);
    let loaded = async {
        let incident = state
            .store
            .incident(id)
            .await?
            .ok_or_else(|| ApiError::NotFound(format!("incident {id}")))?;
        let updates = state.store.incident_updates(id).await?;
        let alerts = state.store.incident_alerts(id).await?;
        let deliveries = state.store.incident_deliveries(id).await?;
        Ok::<_, ApiError>((incident, updates, alerts, deliveries))
    }
    .await;
    let (incident, updates, alerts, deliveries) = match loaded {
        Ok(x) => x,
        Err(e) => return error_page(&state, &lang, Some(&v), e),
    };
    let mut summary: BTreeMap<&str, BTreeMap<&str, u64>> = BTreeMap::new();
    for d in &deliveries {
        *summary
            .entry(d.channel.as_str())
            .or_default()
            .entry(d.state.as_str())
            .or_default() += 1;
    }
    page(
        &state,
        &lang,
        Some(&v),
        "incident",
        StatusCode::OK,
        minijinja::context! {
            incident => json(&IncidentJson::from(&incident)),
            updates => json(&updates.iter().map(UpdateJson::from).collect::<Vec<_>>()),
            signals => json(&alerts.iter().map(SignalJson::from).collect::<Vec<_>>()),
            summary => json(&summary),
            deliveries => json(&deliveries),
        },
    )
}

pub async fn incident_open(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let lang = language(&state, &headers);
    let (v, form) = or_page!(posted(&state, &headers, &lang, Permission::Incidents, body).await);
    let mut labels = crate::domain::Labels::new();
    for key in ["service", "area"] {
        let value = field(&form, key).trim();
        if !value.is_empty() {
            labels.insert(key.to_owned(), value.to_owned());
        }
    }
    let parsed = (|| -> Result<ManualIncident, ApiError> {
        Ok(ManualIncident {
            title: field(&form, "title").trim().to_owned(),
            status: crate::domain::IncidentStatus::Investigating,
            severity: field(&form, "severity").parse().map_err(
                |e: crate::domain::severity::UnknownSeverity| {
                    ApiError::field("severity", e.to_string())
                },
            )?,
            labels,
            body: Some(field(&form, "body").trim().to_owned()).filter(|b| !b.is_empty()),
        })
    })();
    let req = match parsed {
        Ok(r) => r,
        Err(e) => return error_page(&state, &lang, Some(&v), e),
    };
    match state
        .engine
        .open_manual(req, &v.principal.name, Timestamp::now())
        .await
    {
        Ok((incident, _)) => {
            state.wake.updates_written();
            state.store.announce(Topic::Signals).await;
            record_audit(
                &state,
                &v.principal.name,
                "incident.opened",
                Some(incident.id),
                serde_json::json!({
                    "title": incident.title, "severity": incident.severity.as_str(),
                }),
            )
            .await;
            redirect(&format!("/console/incidents/{}", incident.id))
        }
        Err(e) => error_page(&state, &lang, Some(&v), manual_error(e)),
    }
}

pub async fn incident_update(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<i64>,
    body: Body,
) -> Response {
    let lang = language(&state, &headers);
    let (v, form) = or_page!(posted(&state, &headers, &lang, Permission::Incidents, body).await);
    let status = match field(&form, "status") {
        "" => None,
        s => match s.parse() {
            Ok(s) => Some(s),
            Err(e) => return error_page(&state, &lang, Some(&v), ApiError::field("status", e)),
        },
    };
    let req = ManualUpdate {
        status,
        severity: None,
        body: Some(field(&form, "body").trim().to_owned()).filter(|b| !b.is_empty()),
    };
    match state
        .engine
        .post_update(id, req, &v.principal.name, Timestamp::now())
        .await
    {
        Ok((_, update)) => {
            state.wake.updates_written();
            state.store.announce(Topic::Signals).await;
            record_audit(
                &state,
                &v.principal.name,
                "incident.updated",
                Some(id),
                serde_json::json!({
                    "seq": update.seq, "status": update.status.as_str(), "body": update.body,
                }),
            )
            .await;
            redirect(&format!("/console/incidents/{id}"))
        }
        Err(e) => error_page(&state, &lang, Some(&v), manual_error(e)),
    }
}

pub async fn audit_page(State(state): State<AppState>, headers: HeaderMap) -> Response {
    let lang = language(&state, &headers);
    let v = or_page!(allowed(&state, &headers, &lang, Permission::Read).await);
    match state.store.audit_log(None, 200).await {
        Ok(entries) => page(
            &state,
            &lang,
            Some(&v),
            "audit",
            StatusCode::OK,
            minijinja::context! { entries => json(&entries) },
        ),
        Err(e) => error_page(&state, &lang, Some(&v), e.into()),
    }
}

pub async fn subscribers(State(state): State<AppState>, headers: HeaderMap) -> Response {
    let lang = language(&state, &headers);
    let v = or_page!(allowed(&state, &headers, &lang, Permission::Subscribers).await);
    match state.store.subscribers().await {
        Ok(rows) => {
            // Citizens are counted, not listed: their contacts are theirs to manage.
            let (citizens, desks): (Vec<_>, Vec<_>) = rows
                .into_iter()
                .partition(|s| s.origin == crate::store::SubscriberOrigin::Citizen);
            let list: Vec<SubscriberJson> = desks.into_iter().map(SubscriberJson::from).collect();
            page(
                &state,
                &lang,
                Some(&v),
                "subscribers",
                StatusCode::OK,
                minijinja::context! { subscribers => json(&list), citizens => citizens.len() },
            )
        }
        Err(e) => error_page(&state, &lang, Some(&v), e.into()),
    }
}

/// Addresses typed one per line or separated by commas.
fn list_field(form: &Form, name: &str) -> Vec<String> {
    field(form, name)
        .split([',', '\n'])
        .map(str::trim)
        .filter(|a| !a.is_empty())
        .map(str::to_owned)
        .collect()
}

/// What the draft page's live counter needs to count as the server does: the GSM-7 alphabet
/// and the segment sizes, and what a link weighs on Mastodon and X. Each part's limit comes with
/// its measure (`data-limit`).
fn counting(limits: &crate::render::social::Limits) -> Value {
    use crate::render::sms::{self, Encoding};
    minijinja::context! {
        gsm_basic => sms::BASIC,
        gsm_extension => sms::EXTENSION,
        gsm7 => Encoding::Gsm7.capacity(),
        ucs2 => Encoding::Ucs2.capacity(),
        mastodon_url => limits.mastodon_url,
        x_url => crate::render::social::X_URL_WEIGHT,
    }
}

pub async fn subscriber_create(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let lang = language(&state, &headers);
    let (v, form) = or_page!(posted(&state, &headers, &lang, Permission::Subscribers, body).await);
    let mut addresses = serde_json::Map::new();
    for channel in ChannelKind::ALL {
        let list = list_field(&form, channel.as_str());
        if !list.is_empty() {
            addresses.insert(channel.as_str().to_owned(), list.into());
        }
    }
    let matchers: Vec<String> = field(&form, "matchers")
        .lines()
        .map(str::trim)
        .filter(|m| !m.is_empty())
        .map(str::to_owned)
        .collect();
    let spec = serde_json::json!({
        "name": field(&form, "name"),
        "audience": Some(field(&form, "audience").trim()).filter(|a| !a.is_empty()).unwrap_or("internal"),
        "language": Some(field(&form, "language").trim()).filter(|l| !l.is_empty()),
        "addresses": addresses,
        "subscriptions": [{"matchers": matchers, "min_severity": Some(field(&form, "min_severity")).filter(|s| !s.is_empty()).unwrap_or("info")}],
    });
    let spec = match serde_json::from_value(spec) {
        Ok(s) => s,
        Err(e) => return error_page(&state, &lang, Some(&v), ApiError::bad(e.to_string())),
    };
    match create_from(&state, spec, &v.principal.name).await {
        Ok(_) => redirect("/console/subscribers"),
        Err(e) => error_page(&state, &lang, Some(&v), e),
    }
}

pub async fn subscriber_delete(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<i64>,
    body: Body,
) -> Response {
    let lang = language(&state, &headers);
    let (v, _) = or_page!(posted(&state, &headers, &lang, Permission::Subscribers, body).await);
    match delete_by(&state, id, &v.principal.name).await {
        Ok(()) => redirect("/console/subscribers"),
        Err(e) => error_page(&state, &lang, Some(&v), e),
    }
}

/// The visitor's own page: their roles, and the link that ties their Telegram account to them
/// (so that they can approve drafts from Telegram), valid for a quarter of an hour.
pub async fn me(State(state): State<AppState>, headers: HeaderMap) -> Response {
    let lang = language(&state, &headers);
    let v = or_page!(allowed(&state, &headers, &lang, Permission::Read).await);
    let user = match state.store.user(&v.principal.name).await {
        Ok(Some(u)) => u,
        Ok(None) => return error_page(&state, &lang, Some(&v), ApiError::NotFound("user".into())),
        Err(e) => return error_page(&state, &lang, Some(&v), e.into()),
    };
    let link = match &state.telegram {
        Some(telegram) if v.principal.may(Permission::Drafts) => {
            let expires = Timestamp::now().as_second() + 15 * 60;
            let payload =
                state
                    .approval_links
                    .link_payload(user.id, expires, user.telegram_user.as_deref());
            let bot = telegram
                .username
                .get_or_try_init(|| async {
                    use teloxide::prelude::Requester;
                    telegram
                        .bot
                        .get_me()
                        .await
                        .map(|me| me.username().to_owned())
                })
                .await
                .ok()
                .cloned();
            Some(minijinja::context! {
                url => bot.map(|b| format!("https://t.me/{b}?start={payload}")),
                command => format!("/start {payload}"),
            })
        }
        _ => None,
    };
    page(
        &state,
        &lang,
        Some(&v),
        "me",
        StatusCode::OK,
        minijinja::context! { linked => user.telegram_user.is_some(), link => link },
    )
}
