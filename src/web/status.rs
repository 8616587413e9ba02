//! `/status/incidents/{id}`: what citizens were told about one incident, the page every social
//! post links to. Only text the communications office approved for the `public` audience
//! appears (not even the incident's title, which monitors write); an incident with none is not
//! found.

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use serde::{Deserialize, Serialize};

use super::AppState;
use crate::domain::subscriber::ChannelKind;
use crate::store::Draft;

/// The parts whose text reads best on a page, best first: plain text written for the public.
const READABLE: [ChannelKind; 4] = [
    ChannelKind::Facebook,
    ChannelKind::Mastodon,
    ChannelKind::Bluesky,
    ChannelKind::X,
];

#[derive(Deserialize)]
pub struct LangQuery {
    lang: Option<String>,
}

#[derive(Serialize)]
struct Statement {
    at: String,
    kind: String,
    text: String,
}

#[derive(Serialize)]
struct Page {
    id: i64,
    resolved: bool,
    statements: Vec<Statement>,
}

/// The text of a published draft in `lang` (or any language), from its most readable part.
fn statement(draft: &Draft, lang: &str) -> Option<Statement> {
    let approved = || draft.parts.iter().filter(|p| p.state == "approved");
    let pick = |same_language: bool| {
        READABLE.iter().find_map(|channel| {
            approved().find(|p| p.channel == *channel && (!same_language || p.language == lang))
        })
    };
    let part = pick(true).or_else(|| pick(false))?;
    Some(Statement {
        at: draft.decided_at.unwrap_or(draft.created_at).to_string(),
        kind: draft.update_kind.clone(),
        text: part.body.clone(),
    })
}

pub async fn incident(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<i64>,
    Query(q): Query<LangQuery>,
) -> Response {
    let lang = match q.lang.as_deref() {
        Some(l @ ("it" | "en")) => l.to_owned(),
        _ => super::console::language(&state, &headers),
    };
    let drafts = match state.store.published_drafts(id, "public").await {
        Ok(d) => d,
        Err(e) => {
            tracing::warn!(incident = id, error = %e, "cannot read published statements");
            return (StatusCode::SERVICE_UNAVAILABLE, "try again shortly").into_response();
        }
    };
    let statements: Vec<Statement> = drafts.iter().filter_map(|d| statement(d, &lang)).collect();
    let found = !statements.is_empty();
    let page = Page {
        id,
        resolved: drafts.iter().any(|d| d.update_kind == "resolved"),
        statements,
    };
    let status = if found {
        StatusCode::OK
    } else {
        StatusCode::NOT_FOUND
    };
    let body = match state.renderer.page("status_incident", &lang, &page) {
        Ok(b) => b,
        Err(e) => {
            tracing::error!(error = %e, "status page template failed");
            return (StatusCode::INTERNAL_SERVER_ERROR, "page unavailable").into_response();
        }
    };
    let mut response = (status, Html(body)).into_response();
    let h = response.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'none'",
        ),
    );
    h.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=30"),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    response
}
