//! `/unsubscribe/{token}`: the link in every message.
//!
//! `GET` shows a confirmation page (mail scanners follow links, so a GET never unsubscribes);
//! `POST` unsubscribes, whether it comes from the page's button or from a mail client's RFC 8058
//! one-click request (`List-Unsubscribe=One-Click`, no cookies, no credentials). The token is a
//! capability: it names one address and is signed, so no other check is needed.

use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use jiff::Timestamp;
use serde::Serialize;

use crate::unsubscribe::{Purpose, UnsubscribeLinks};
use crate::web::AppState;
use crate::web::body::read;
use crate::web::extract::Path;

#[derive(Serialize)]
struct Page {
    found: bool,
    done: bool,
    address: String,
    subscriber: String,
}

/// A page reached through a link that carries a token: no caching, no referrer, no scripts.
pub(crate) fn html(status: StatusCode, body: String) -> Response {
    let mut response = (status, Html(body)).into_response();
    let h = response.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static("default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; frame-ancestors 'none'"),
    );
    // The token is in the URL: never hand it to another site.
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

async fn render(state: &AppState, token: &str, act: bool) -> Response {
    let parsed = UnsubscribeLinks::parse(token);
    let owner = match &parsed {
        Some(t) => match state.store.address(t.address_id).await {
            Ok(found) => found,
            Err(e) => {
                tracing::warn!(error = %e, "unsubscribe: store unavailable");
                return (
                    StatusCode::SERVICE_UNAVAILABLE,
                    "temporarily unavailable, try again",
                )
                    .into_response();
            }
        },
        None => None,
    };
    // The signature covers the address itself: a token for another address is not valid here.
    let owner = owner.filter(|o| {
        parsed.as_ref().is_some_and(|t| {
            state.links.verify(
                Purpose::Unsubscribe,
                t,
                o.address.channel,
                &o.address.address,
            )
        })
    });
    let Some(owner) = owner else {
        let page = Page {
            found: false,
            done: false,
            address: String::new(),
            subscriber: String::new(),
        };
        return match state
            .renderer
            .page("unsubscribe", state.default_language.primary(), &page)
        {
            Ok(body) => html(StatusCode::NOT_FOUND, body),
            Err(_) => (StatusCode::NOT_FOUND, "invalid link").into_response(),
        };
    };
    let mut done = owner.address.unsubscribed_at.is_some();
    if act && !done {
        match state
            .store
            .unsubscribe_address(owner.address.id, Timestamp::now())
            .await
        {
            Ok(_) => {
                done = true;
                tracing::info!(address = owner.address.id, subscriber = %owner.subscriber_name, "recipient unsubscribed");
                metrics::counter!("banditore_unsubscribes_total").increment(1);
            }
            Err(e) => {
                tracing::warn!(error = %e, "unsubscribe failed");
                return (
                    StatusCode::SERVICE_UNAVAILABLE,
                    "temporarily unavailable, try again",
                )
                    .into_response();
            }
        }
    }
    let page = Page {
        found: true,
        done,
        address: owner.address.address,
        subscriber: owner.subscriber_name,
    };
    match state
        .renderer
        .page("unsubscribe", owner.language.primary(), &page)
    {
        Ok(body) => html(StatusCode::OK, body),
        Err(e) => {
            tracing::error!(error = %e, "unsubscribe page template failed");
            (
                StatusCode::OK,
                if done {
                    "unsubscribed"
                } else {
                    "confirm with POST"
                },
            )
                .into_response()
        }
    }
}

pub async fn show(State(state): State<AppState>, Path(token): Path<String>) -> Response {
    render(&state, &token, false).await
}

pub async fn confirm(
    State(state): State<AppState>,
    Path(token): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    // The body (the page's empty form, or `List-Unsubscribe=One-Click`) carries nothing needed;
    // it is read only to keep its size bounded.
    if read(&headers, body, 64 * 1024).await.is_err() {
        return (StatusCode::PAYLOAD_TOO_LARGE, "body too large").into_response();
    }
    render(&state, &token, true).await
}
