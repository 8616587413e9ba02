//! The subscribers' page: desks listed with their addresses, citizens only counted; the forms
//! that create and delete a subscriber (the service layer's operations, shared with the API).

use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::Response;
use jiff::Timestamp;
use serde::Deserialize;

use super::session::redirect;
use super::{Form, allowed, error_page, field, json, page, posted};
use crate::domain::subscriber::ChannelKind;
use crate::settings::Permission;
use crate::store::{SubscriberFilter, SubscriberKind, SubscriberOrigin};
use crate::web::AppState;
use crate::web::api::subscribers::SubscriberJson;
use crate::web::client::language;
use crate::web::error::ApiError;
use crate::web::extract::{Path, query};
use crate::web::service;

/// Desks shown on one page of the list.
const PAGE: u32 = 50;

/// Deliveries shown on a subscriber's page.
const RECENT_DELIVERIES: u32 = 50;

/// The query of the list: a search and a cursor.
#[derive(Debug, Default, Deserialize)]
struct ListQuery {
    q: Option<String>,
    after: Option<i64>,
    before: Option<i64>,
}

/// The list: a page of desks (citizens are counted, not listed: their contacts are theirs to
/// manage), a search, the count of what the search finds, and the cursors to the pages around.
pub async fn subscribers(State(state): State<AppState>, headers: HeaderMap, uri: Uri) -> Response {
    let lang = language(&state, &headers);
    let v = or_page!(allowed(&state, &headers, &lang, Permission::Subscribers).await);
    let query: ListQuery = match query(&uri) {
        Ok(q) => q,
        Err(e) => return error_page(&state, &lang, Some(&v), e),
    };
    let filter = SubscriberFilter {
        q: query.q.clone(),
        kind: Some(SubscriberKind::Desk),
        hide_webhooks: !v.principal.may(Permission::Admin),
        after: query.after,
        before: query.before,
        limit: PAGE,
    };
    let mut page_of = match service::subscribers::page(&state, filter.clone()).await {
        Ok(p) => p,
        Err(e) => return error_page(&state, &lang, Some(&v), e.into()),
    };
    let citizens = SubscriberFilter {
        kind: Some(SubscriberKind::Citizen),
        ..SubscriberFilter::default()
    };
    let counts = tokio::try_join!(
        state.store.count_subscribers(&filter),
        state.store.count_subscribers(&citizens)
    );
    let (total, citizens) = match counts {
        Ok(n) => n,
        Err(e) => return error_page(&state, &lang, Some(&v), e.into()),
    };
    service::subscribers::mask_webhooks(&v.principal, &mut page_of.rows);
    let list: Vec<SubscriberJson> = page_of.rows.into_iter().map(SubscriberJson::from).collect();
    let q = query.q.unwrap_or_default();
    let link = |cursor: &str, id: i64| {
        let mut query = url::form_urlencoded::Serializer::new(String::new());
        if !q.trim().is_empty() {
            query.append_pair("q", &q);
        }
        query.append_pair(cursor, &id.to_string());
        format!("/console/subscribers?{}", query.finish())
    };
    page(
        &state,
        &lang,
        Some(&v),
        "subscribers",
        StatusCode::OK,
        minijinja::context! {
            subscribers => json(&list),
            citizens => citizens,
            total => total,
            q => &q,
            next => page_of.next.map(|id| link("after", id)),
            previous => page_of.previous.map(|id| link("before", id)),
        },
    )
}

/// A subscriber's page: who they are, the form that edits them (for those made here), and
/// their latest deliveries.
pub async fn subscriber(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<i64>,
) -> Response {
    let lang = language(&state, &headers);
    let v = or_page!(allowed(&state, &headers, &lang, Permission::Subscribers).await);
    let (mut row, deliveries) =
        match service::subscribers::deliveries(&state, id, RECENT_DELIVERIES, &v.principal).await {
            Ok(found) => found,
            Err(e) => return error_page(&state, &lang, Some(&v), e.into()),
        };
    if row.origin == SubscriberOrigin::Citizen {
        let e = ApiError::Forbidden(format!(
            "subscriber {id} is a citizen who subscribed from the status page: their contacts are theirs to manage"
        ));
        return error_page(&state, &lang, Some(&v), e);
    }
    service::subscribers::mask_webhooks(&v.principal, std::slice::from_mut(&mut row));
    let editable = editable(&v.principal);
    let mut by_channel = serde_json::Map::new();
    for &channel in &editable {
        let list: Vec<&str> = row
            .addresses
            .iter()
            .filter(|a| a.channel == channel)
            .map(|a| a.address.as_str())
            .collect();
        by_channel.insert(channel.as_str().to_owned(), list.join("\n").into());
    }
    page(
        &state,
        &lang,
        Some(&v),
        "subscriber",
        StatusCode::OK,
        minijinja::context! {
            subscriber => json(&SubscriberJson::from(row)),
            addresses => json(&by_channel),
            channels => editable.iter().map(|c| c.as_str()).collect::<Vec<_>>(),
            deliveries => json(&deliveries),
        },
    )
}

/// The channels whose addresses the console's forms write.
const EDITABLE: [ChannelKind; 4] = [
    ChannelKind::Email,
    ChannelKind::Sms,
    ChannelKind::Telegram,
    ChannelKind::Webhook,
];

/// The channels whose addresses `who`'s edit form shows and writes: webhooks only for
/// administrators, who alone read their URLs (a form showing them masked would save the mask,
/// and one leaving them empty would remove them).
fn editable(who: &crate::web::Principal) -> Vec<ChannelKind> {
    EDITABLE
        .into_iter()
        .filter(|c| *c != ChannelKind::Webhook || who.may(Permission::Admin))
        .collect()
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
    match service::subscribers::create(&state, spec, &v.principal.name, Timestamp::now()).await {
        Ok(_) => redirect("/console/subscribers"),
        Err(e) => error_page(&state, &lang, Some(&v), e.into()),
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
    match service::subscribers::delete(&state, id, &v.principal.name).await {
        Ok(()) => redirect("/console/subscribers"),
        Err(e) => error_page(&state, &lang, Some(&v), e.into()),
    }
}

/// Matchers typed one per line.
fn matchers_field(form: &Form, name: &str) -> Vec<String> {
    field(form, name)
        .lines()
        .map(str::trim)
        .filter(|m| !m.is_empty())
        .map(str::to_owned)
        .collect()
}

/// The subscriptions of the edit form: each one shown (`sub<i>_…`) unless its "remove" box is
/// ticked, and the new one when it has matchers or its "add" box is ticked.
fn subscriptions_field(form: &Form) -> Vec<serde_json::Value> {
    let shown: usize = field(form, "subs").parse().unwrap_or(0);
    let mut out = Vec::new();
    let read = |prefix: &str| {
        let channels: Vec<String> = list_field(form, &format!("{prefix}_channels"));
        serde_json::json!({
            "matchers": matchers_field(form, &format!("{prefix}_matchers")),
            "min_severity": Some(field(form, &format!("{prefix}_min_severity"))).filter(|s| !s.is_empty()).unwrap_or("info"),
            "channels": channels,
        })
    };
    for i in 0..shown.min(100) {
        if field(form, &format!("sub{i}_remove")).is_empty() {
            out.push(read(&format!("sub{i}")));
        }
    }
    if !matchers_field(form, "new_matchers").is_empty() || !field(form, "new_add").is_empty() {
        out.push(read("new"));
    }
    out
}

/// The edit form: every field it shows is written (the addresses of email, SMS and Telegram
/// whole), checked as the API's `PATCH` checks them.
pub async fn subscriber_edit(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<i64>,
    body: Body,
) -> Response {
    let lang = language(&state, &headers);
    let (v, form) = or_page!(posted(&state, &headers, &lang, Permission::Subscribers, body).await);
    let mut addresses = serde_json::Map::new();
    for channel in editable(&v.principal) {
        addresses.insert(
            channel.as_str().to_owned(),
            list_field(&form, channel.as_str()).into(),
        );
    }
    let patch = serde_json::json!({
        "name": field(&form, "name"),
        // An emptied field keeps what was stored.
        "audience": Some(field(&form, "audience").trim()).filter(|a| !a.is_empty()),
        "language": Some(field(&form, "language").trim()).filter(|l| !l.is_empty()),
        "addresses": addresses,
        "subscriptions": subscriptions_field(&form),
    });
    let patch = match serde_json::from_value(patch) {
        Ok(p) => p,
        Err(e) => return error_page(&state, &lang, Some(&v), ApiError::bad(e.to_string())),
    };
    match service::subscribers::edit(&state, id, patch, &v.principal.name, Timestamp::now()).await {
        Ok(_) => redirect(&format!("/console/subscribers/{id}")),
        Err(e) => error_page(&state, &lang, Some(&v), e.into()),
    }
}
