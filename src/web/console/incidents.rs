//! The incidents' pages: the list, one incident with its timeline, signals and deliveries, who
//! has seen it (the board of `service::acks`, as the API answers it), and the forms that open an
//! incident by hand and post an update to it (the service layer's operations, shared with the
//! API).

use std::collections::BTreeMap;

use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use jiff::Timestamp;

use super::session::redirect;
use super::{allowed, error_page, field, json, page, posted};
use crate::incident::{ManualIncident, ManualUpdate};
use crate::settings::Permission;
use crate::store::IncidentFilter;
use crate::web::AppState;
use crate::web::api::incidents::{IncidentJson, SignalJson, UpdateJson};
use crate::web::client::language;
use crate::web::error::ApiError;
use crate::web::extract::Path;
use crate::web::service;

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
        // The page shows counts; a template that lists deliveries gets citizens' contacts
        // masked, whoever reads (an administrator reads them whole, audited, from the API).
        let mut deliveries = state.store.incident_deliveries(id).await?;
        crate::web::service::incidents::mask_citizens(&mut deliveries);
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

/// Who has seen the incident: the desks, those still to acknowledge first, and the count.
pub async fn acknowledgements(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<i64>,
) -> Response {
    let lang = language(&state, &headers);
    let v = or_page!(allowed(&state, &headers, &lang, Permission::Read).await);
    let board = match service::acks::board(&state, id, &v.principal).await {
        Ok(board) => board,
        Err(e) => return error_page(&state, &lang, Some(&v), e.into()),
    };
    let title = match state.store.incident(id).await {
        Ok(found) => found.map(|i| i.title).unwrap_or_default(),
        Err(e) => return error_page(&state, &lang, Some(&v), e.into()),
    };
    page(
        &state,
        &lang,
        Some(&v),
        "acks",
        StatusCode::OK,
        minijinja::context! { board => json(&board), title => title },
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
    match service::incidents::open(&state, req, &v.principal.name, Timestamp::now()).await {
        Ok((incident, _)) => redirect(&format!("/console/incidents/{}", incident.id)),
        Err(e) => error_page(&state, &lang, Some(&v), e.into()),
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
    let name = &v.principal.name;
    match service::incidents::post_update(&state, id, req, name, Timestamp::now()).await {
        Ok(_) => redirect(&format!("/console/incidents/{id}")),
        Err(e) => error_page(&state, &lang, Some(&v), e.into()),
    }
}
