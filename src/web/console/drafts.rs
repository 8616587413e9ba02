//! The drafts' pages: the queue, one draft with its parts, and the forms that edit, approve and
//! reject it. The checks and the writing are the service layer's, shared with the API.

use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use jiff::Timestamp;
use minijinja::Value;

use super::session::redirect;
use super::{allowed, error_page, field, json, page, posted};
use crate::domain::subscriber::ChannelKind;
use crate::settings::Permission;
use crate::store::PartEdit;
use crate::web::AppState;
use crate::web::api::incidents::{IncidentJson, SignalJson};
use crate::web::client::language;
use crate::web::error::ApiError;
use crate::web::extract::Path;
use crate::web::service::drafts::measure;
use crate::web::service::{self, ServiceError};

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
        edits.push(edit);
    }
    match service::drafts::edit(&state, id, &edits, &v.principal.name, Timestamp::now()).await {
        // A draft gone since its page was loaded: its page says so.
        Ok(_) | Err(ServiceError::NotFound(_)) => redirect(&format!("/console/drafts/{id}")),
        // A refused part is named by its form field, `body_telegram_it` say.
        Err(ServiceError::PartRefused { index, part }) => {
            let key = edits
                .get(index)
                .map(|e| format!("_{}_{}", e.channel.as_str(), e.language))
                .unwrap_or_default();
            let e = ApiError::field(format!("{}{key}", part.field), part.message);
            error_page(&state, &lang, Some(&v), e)
        }
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
    // No box ticked approves every pending part.
    let channels = (!channels.is_empty()).then_some(channels);
    let name = &v.principal.name;
    match service::drafts::approve(&state, id, channels, name, Timestamp::now()).await {
        Ok(_) => redirect(&format!("/console/drafts/{id}")),
        Err(e) => error_page(&state, &lang, Some(&v), e.into()),
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
    let reason = field(&form, "reason");
    let name = &v.principal.name;
    match service::drafts::reject(&state, id, reason, name, Timestamp::now()).await {
        Ok(_) => redirect(&format!("/console/drafts/{id}")),
        Err(e) => error_page(&state, &lang, Some(&v), e.into()),
    }
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
