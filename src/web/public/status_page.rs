//! The public side: `/status` (the status page), `/status/incidents/{id}` (one incident, the page
//! every social post links to) and `/api/v1/status` (the same board as JSON, for other sites,
//! with CORS). Only text the communications office approved for the `public` audience appears,
//! never the monitors' own titles.
//!
//! The board is built at most once every [`FRESH_FOR`] and kept with its rendered forms and an
//! ETag, so that a crowd of citizens reloading costs one build, and a reload with the same ETag
//! gets `304`.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use jiff::Timestamp;
use serde::Deserialize;
use sha2::Digest;

use crate::board::{Board, board};
use crate::settings::StatusSettings;
use crate::web::AppState;
use crate::web::error::ApiError;
use crate::web::extract::{Path, Query};

/// How long a built board is served before it is built again.
const FRESH_FOR: Duration = Duration::from_secs(2);

/// The board as last built, and what was made of it.
struct Built {
    at: Instant,
    board: Arc<Board>,
    json: bytes::Bytes,
    etag: String,
    last_modified: String,
    html: HashMap<String, bytes::Bytes>,
}

pub struct StatusPage {
    pub settings: StatusSettings,
    pub time_zone: jiff::tz::TimeZone,
    /// `server.public_url`, without a trailing slash.
    pub base: String,
    /// CAP sender, settled.
    pub sender: String,
    /// Maintenance windows, for those announced to citizens.
    pub windows: Arc<Vec<crate::domain::window::Window>>,
    built: tokio::sync::Mutex<Option<Arc<Mutex<Built>>>>,
}

impl StatusPage {
    pub fn new(
        settings: StatusSettings,
        time_zone: jiff::tz::TimeZone,
        public_url: &str,
        windows: Arc<Vec<crate::domain::window::Window>>,
    ) -> StatusPage {
        let base = public_url.trim_end_matches('/').to_owned();
        let sender = if settings.cap_sender.is_empty() {
            let host = url::Url::parse(&base)
                .ok()
                .and_then(|u| u.host_str().map(str::to_owned))
                .unwrap_or_else(|| "localhost".into());
            format!("banditore@{host}")
        } else {
            settings.cap_sender.clone()
        };
        StatusPage {
            settings,
            time_zone,
            base,
            sender,
            windows,
            built: tokio::sync::Mutex::new(None),
        }
    }
}

#[derive(Deserialize)]
pub struct LangQuery {
    lang: Option<String>,
}

fn language(state: &AppState, headers: &HeaderMap, q: &LangQuery) -> String {
    match q.lang.as_deref() {
        Some(l) if crate::settings::STATUS_LANGUAGES.contains(&l) => l.to_owned(),
        _ => crate::web::client::language(state, headers),
    }
}

/// The current board, built again when older than [`FRESH_FOR`]. One request builds; the others
/// wait for it rather than building too.
async fn current(state: &AppState) -> Result<Arc<Mutex<Built>>, crate::store::StoreError> {
    let page = &state.status;
    let mut slot = page.built.lock().await;
    if let Some(built) = slot.as_ref()
        && built.lock().is_ok_and(|b| b.at.elapsed() < FRESH_FOR)
    {
        return Ok(built.clone());
    }
    let now = Timestamp::now();
    let board = board(
        &state.store,
        &page.settings.services,
        &page.windows,
        page.settings.history_days,
        &page.time_zone,
        now,
    )
    .await?;
    let json = serde_json::to_vec(&board).unwrap_or_default();
    // The ETag follows what the board says, not when it was built.
    let mut unstamped = board.clone();
    unstamped.generated_at = Timestamp::UNIX_EPOCH;
    let digest = sha2::Sha256::digest(serde_json::to_vec(&unstamped).unwrap_or_default());
    let etag = format!("\"{}\"", hex::encode(&digest[..12]));
    let last_modified = board
        .incidents
        .iter()
        .flat_map(|i| i.statements.iter().map(|s| s.at))
        .chain(board.incidents.iter().map(|i| i.opened_at))
        .max()
        .unwrap_or(Timestamp::UNIX_EPOCH);
    let built = Arc::new(Mutex::new(Built {
        at: Instant::now(),
        board: Arc::new(board),
        json: json.into(),
        etag,
        last_modified: http_date(last_modified),
        html: HashMap::new(),
    }));
    *slot = Some(built.clone());
    Ok(built)
}

/// An HTTP date (RFC 9110 IMF-fixdate).
fn http_date(t: Timestamp) -> String {
    t.to_zoned_datetime(jiff::tz::TimeZone::UTC)
        .strftime("%a, %d %b %Y %H:%M:%S GMT")
        .to_string()
}

fn not_modified(headers: &HeaderMap, etag: &str) -> bool {
    headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|t| t.trim() == etag || t.trim() == "*"))
}

fn cached(
    status: StatusCode,
    content_type: &'static str,
    body: bytes::Bytes,
    etag: &str,
    modified: &str,
) -> Response {
    let mut response = (status, body).into_response();
    let h = response.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    h.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=15"),
    );
    if let Ok(v) = HeaderValue::from_str(etag) {
        h.insert(header::ETAG, v);
    }
    if let Ok(v) = HeaderValue::from_str(modified) {
        h.insert(header::LAST_MODIFIED, v);
    }
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    response
}

fn unavailable(e: impl std::fmt::Display) -> Response {
    tracing::warn!(error = %e, "cannot build the status board");
    let mut r = (
        StatusCode::SERVICE_UNAVAILABLE,
        "status unavailable, try again shortly",
    )
        .into_response();
    r.headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from_static("5"));
    r
}

fn html_headers(mut response: Response) -> Response {
    response.headers_mut().insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'none'",
        ),
    );
    response
}

/// `GET /status`: the page.
pub async fn page(
    State(state): State<AppState>,
    headers: HeaderMap,
    Query(q): Query<LangQuery>,
) -> Response {
    let lang = language(&state, &headers, &q);
    let built = match current(&state).await {
        Ok(b) => b,
        Err(e) => return unavailable(e),
    };
    let Ok(mut b) = built.lock() else {
        return unavailable("poisoned");
    };
    let etag = format!("{}-{lang}\"", b.etag.trim_end_matches('"'));
    if not_modified(&headers, &etag) {
        return cached(
            StatusCode::NOT_MODIFIED,
            "text/html; charset=utf-8",
            bytes::Bytes::new(),
            &etag,
            &b.last_modified,
        );
    }
    if !b.html.contains_key(&lang) {
        let s = &state.status.settings;
        let ctx = minijinja::context! {
            lang => &lang,
            title => if lang == "en" { &s.title_en } else { &s.title },
            board => minijinja::Value::from(minijinja::value::Serde(&*b.board)),
            days => s.history_days,
            subscribe => !s.subscribe.channels.is_empty(),
        };
        match state.renderer.status_page("page", &ctx) {
            Ok(html) => {
                b.html.insert(lang.clone(), html.into());
            }
            Err(e) => {
                tracing::error!(error = %e, "status page template failed");
                return (StatusCode::INTERNAL_SERVER_ERROR, "page unavailable").into_response();
            }
        }
    }
    let body = b.html.get(&lang).cloned().unwrap_or_default();
    html_headers(cached(
        StatusCode::OK,
        "text/html; charset=utf-8",
        body,
        &etag,
        &b.last_modified,
    ))
}

/// `GET /api/v1/status`: the board as JSON, for any site (CORS).
/// `GET /api/v1/status`: the status board as JSON, for other sites (CORS), with an ETag.
#[utoipa::path(
    get,
    path = "/api/v1/status",
    tag = "public",
    params(
        ("If-None-Match" = Option<String>, Header, description = "The ETag of the board the caller has."),
    ),
    security(()),
    responses(
        (status = 200, description = "The board.", body = Board, headers(
            ("ETag" = String, description = "Changes when what the board says changes."),
            ("Last-Modified" = String, description = "The latest statement's time."),
            ("Access-Control-Allow-Origin" = String, description = "`*`."),
        )),
        (status = 304, description = "The board has not changed since the ETag given."),
    )
)]
pub async fn api(State(state): State<AppState>, headers: HeaderMap) -> Response {
    let built = match current(&state).await {
        Ok(b) => b,
        Err(e) => return unavailable(e),
    };
    let Ok(b) = built.lock() else {
        return unavailable("poisoned");
    };
    let (status, body) = if not_modified(&headers, &b.etag) {
        (StatusCode::NOT_MODIFIED, bytes::Bytes::new())
    } else {
        (StatusCode::OK, b.json.clone())
    };
    let mut response = cached(status, "application/json", body, &b.etag, &b.last_modified);
    let h = response.headers_mut();
    h.insert(
        header::ACCESS_CONTROL_ALLOW_ORIGIN,
        HeaderValue::from_static("*"),
    );
    h.insert(
        header::ACCESS_CONTROL_EXPOSE_HEADERS,
        HeaderValue::from_static("ETag, Last-Modified"),
    );
    response
}

/// `GET /status/incidents/{id}`: one incident's approved statements; 404 before there is one.
pub async fn incident(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<i64>,
    Query(q): Query<LangQuery>,
) -> Response {
    let lang = language(&state, &headers, &q);
    let built = match current(&state).await {
        Ok(b) => b,
        Err(e) => return unavailable(e),
    };
    let found = {
        let Ok(b) = built.lock() else {
            return unavailable("poisoned");
        };
        b.board.incidents.iter().find(|i| i.id == id).cloned()
    };
    // Incidents that concern no listed service are not on the board: read their statements.
    let incident = match found {
        Some(i) => Some(i),
        None => match crate::board::incident_alone(&state.store, id).await {
            Ok(i) => i,
            Err(e) => return unavailable(e),
        },
    };
    let status = if incident.is_some() {
        StatusCode::OK
    } else {
        StatusCode::NOT_FOUND
    };
    let ctx = minijinja::context! {
        lang => &lang,
        id => id,
        incident => incident.map(|i| minijinja::Value::from(minijinja::value::Serde(&i))),
    };
    match state.renderer.status_page("incident", &ctx) {
        Ok(html) => {
            let mut r = (status, axum::response::Html(html)).into_response();
            r.headers_mut().insert(
                header::CACHE_CONTROL,
                HeaderValue::from_static("public, max-age=15"),
            );
            html_headers(r)
        }
        Err(e) => {
            tracing::error!(error = %e, "status page template failed");
            (StatusCode::INTERNAL_SERVER_ERROR, "page unavailable").into_response()
        }
    }
}

fn site<'a>(page: &'a StatusPage, lang: &str) -> crate::feeds::Site<'a> {
    crate::feeds::Site {
        base: &page.base,
        title: if lang == "en" {
            &page.settings.title_en
        } else {
            &page.settings.title
        },
        sender: &page.sender,
        area: &page.settings.area,
    }
}

/// Serves a feed made from the current board, with the board's ETag.
async fn feed(
    state: &AppState,
    headers: &HeaderMap,
    content_type: &'static str,
    variant: &str,
    make: impl FnOnce(&Board, &StatusPage) -> Option<String>,
) -> Response {
    let built = match current(state).await {
        Ok(b) => b,
        Err(e) => return unavailable(e),
    };
    let (board, etag, modified) = {
        let Ok(b) = built.lock() else {
            return unavailable("poisoned");
        };
        (b.board.clone(), b.etag.clone(), b.last_modified.clone())
    };
    let etag = format!("{}-{variant}\"", etag.trim_end_matches('"'));
    if not_modified(headers, &etag) {
        return cached(
            StatusCode::NOT_MODIFIED,
            content_type,
            bytes::Bytes::new(),
            &etag,
            &modified,
        );
    }
    match make(&board, &state.status) {
        Some(body) => cached(StatusCode::OK, content_type, body.into(), &etag, &modified),
        None => (StatusCode::NOT_FOUND, "not found").into_response(),
    }
}

/// `GET /status/feed.atom`: every approved statement.
pub async fn atom(
    State(state): State<AppState>,
    headers: HeaderMap,
    Query(q): Query<LangQuery>,
) -> Response {
    let lang = language(&state, &headers, &q);
    feed(
        &state,
        &headers,
        "application/atom+xml",
        &format!("atom-{lang}"),
        |b, p| Some(crate::feeds::atom(b, &site(p, &lang), &lang, None)),
    )
    .await
}

/// `GET /status/services/{id}/feed.atom`: the statements about one service.
pub async fn service_atom(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
    Query(q): Query<LangQuery>,
) -> Response {
    let lang = language(&state, &headers, &q);
    if !state.status.settings.services.iter().any(|s| s.id == id) {
        // Not echoed: the id is whatever a stranger put in the link.
        return ApiError::NotFound("no such service on the status page".into()).into_response();
    }
    feed(
        &state,
        &headers,
        "application/atom+xml",
        &format!("atom-{id}-{lang}"),
        |b, p| Some(crate::feeds::atom(b, &site(p, &lang), &lang, Some(&id))),
    )
    .await
}

/// `GET /status/cap.atom`: the index of the CAP alerts in force.
pub async fn cap_index(State(state): State<AppState>, headers: HeaderMap) -> Response {
    feed(&state, &headers, "application/atom+xml", "cap", |b, p| {
        Some(crate::feeds::cap_index(b, &site(p, "it")))
    })
    .await
}

/// `GET /status/cap/{draft}.xml`: one CAP 1.2 alert.
pub async fn cap_alert(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(file): Path<String>,
) -> Response {
    let Some(draft) = file
        .strip_suffix(".xml")
        .and_then(|d| d.parse::<i64>().ok())
    else {
        return (StatusCode::NOT_FOUND, "not found").into_response();
    };
    feed(
        &state,
        &headers,
        "application/cap+xml",
        &format!("cap-{draft}"),
        |b, p| crate::feeds::cap_alert(b, &site(p, "it"), draft),
    )
    .await
}
