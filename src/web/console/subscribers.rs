//! The subscribers' page: desks listed with their addresses, citizens only counted; the forms
//! that create and delete a subscriber (the service layer's operations, shared with the API).

use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use jiff::Timestamp;

use super::session::redirect;
use super::{Form, allowed, error_page, field, json, page, posted};
use crate::domain::subscriber::ChannelKind;
use crate::settings::Permission;
use crate::web::AppState;
use crate::web::api::subscribers::SubscriberJson;
use crate::web::client::language;
use crate::web::error::ApiError;
use crate::web::extract::Path;
use crate::web::service;

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
