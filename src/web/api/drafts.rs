//! `/api/v1/drafts`: list, read, edit, approve, reject public drafts (the edits and decisions
//! are the service layer's, shared with the console); and `/api/v1/audit`, the audit log.

use axum::Json;
use axum::body::Body;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::IntoResponse;
use jiff::Timestamp;
use serde::Deserialize;

use crate::domain::subscriber::ChannelKind;
use crate::render::social::Limits;
use crate::settings::Permission;
use crate::store::{Draft, PartEdit};
use crate::web::body::{json, read};
use crate::web::error::ApiError;
use crate::web::extract::{Path, Query};
use crate::web::service::{self, drafts::Decided, drafts::measure};
use crate::web::{AppState, require};

#[derive(Deserialize)]
pub struct ListQuery {
    state: Option<String>,
    limit: Option<u32>,
}

fn with_measures(limits: &Limits, draft: &Draft) -> serde_json::Value {
    let mut value = serde_json::to_value(draft).unwrap_or_default();
    if let Some(parts) = value["parts"].as_array_mut() {
        for (json, part) in parts.iter_mut().zip(&draft.parts) {
            json["length"] = measure(limits, part.channel, &part.body);
        }
    }
    value
}

pub async fn list(
    State(state): State<AppState>,
    headers: HeaderMap,
    Query(q): Query<ListQuery>,
) -> Result<impl IntoResponse, ApiError> {
    require(&state, &headers, Permission::Read)?;
    if let Some(s) = &q.state
        && !["pending", "approved", "rejected", "superseded"].contains(&s.as_str())
    {
        return Err(ApiError::field(
            "state",
            format!("`{s}` is not one of pending, approved, rejected, superseded"),
        ));
    }
    let drafts = state
        .store
        .drafts(q.state.as_deref(), q.limit.unwrap_or(50).clamp(1, 500))
        .await?;
    let limits = state.renderer.social_limits();
    let drafts: Vec<_> = drafts.iter().map(|d| with_measures(&limits, d)).collect();
    Ok(Json(serde_json::json!({ "drafts": drafts })))
}

pub async fn get(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<i64>,
) -> Result<impl IntoResponse, ApiError> {
    require(&state, &headers, Permission::Read)?;
    let draft = state
        .store
        .draft(id)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("draft {id} not found")))?;
    Ok(Json(with_measures(&state.renderer.social_limits(), &draft)))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EditRequest {
    parts: Vec<EditPart>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EditPart {
    channel: ChannelKind,
    language: String,
    #[serde(default)]
    subject: Option<String>,
    body: String,
}

pub async fn edit(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<i64>,
    body: Body,
) -> Result<impl IntoResponse, ApiError> {
    let who = require(&state, &headers, Permission::Drafts)?;
    let bytes = read(&headers, body, state.max_body_bytes).await?;
    let req: EditRequest = json(&headers, &bytes)?;
    if req.parts.is_empty() {
        return Err(ApiError::field("parts", "must name at least one part"));
    }
    let edits: Vec<PartEdit> = req
        .parts
        .into_iter()
        .map(|p| PartEdit {
            channel: p.channel,
            language: p.language,
            subject: p.subject,
            body: p.body,
        })
        .collect();
    let draft = service::drafts::edit(&state, id, &edits, &who.name, Timestamp::now()).await?;
    Ok(Json(with_measures(&state.renderer.social_limits(), &draft)))
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct ApproveRequest {
    #[serde(default)]
    channels: Option<Vec<ChannelKind>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RejectRequest {
    reason: String,
}

pub async fn approve(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<i64>,
    body: Body,
) -> Result<impl IntoResponse, ApiError> {
    let who = require(&state, &headers, Permission::Drafts)?;
    let bytes = read(&headers, body, state.max_body_bytes).await?;
    let req: ApproveRequest = if bytes.iter().all(u8::is_ascii_whitespace) {
        ApproveRequest::default()
    } else {
        json(&headers, &bytes)?
    };
    let decided =
        service::drafts::approve(&state, id, req.channels, &who.name, Timestamp::now()).await?;
    Ok(decided_json(&decided))
}

pub async fn reject(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<i64>,
    body: Body,
) -> Result<impl IntoResponse, ApiError> {
    let who = require(&state, &headers, Permission::Drafts)?;
    let bytes = read(&headers, body, state.max_body_bytes).await?;
    let req: RejectRequest = json(&headers, &bytes)?;
    let decided =
        service::drafts::reject(&state, id, &req.reason, &who.name, Timestamp::now()).await?;
    Ok(decided_json(&decided))
}

/// The answer to a decision.
fn decided_json(d: &Decided) -> Json<serde_json::Value> {
    Json(serde_json::json!({
        "draft": d.draft, "decision": d.decision, "parts": d.parts, "deliveries": d.deliveries,
    }))
}

#[derive(Deserialize)]
pub struct AuditQuery {
    incident: Option<i64>,
    limit: Option<u32>,
}

pub async fn audit(
    State(state): State<AppState>,
    headers: HeaderMap,
    Query(q): Query<AuditQuery>,
) -> Result<impl IntoResponse, ApiError> {
    require(&state, &headers, Permission::Read)?;
    let entries = state
        .store
        .audit_log(q.incident, q.limit.unwrap_or(100).clamp(1, 1000))
        .await?;
    Ok(Json(serde_json::json!({ "entries": entries })))
}
