//! `/api/v1/drafts`: list, read, edit, approve, reject public drafts (the edits and decisions
//! are the service layer's, shared with the console); and `/api/v1/audit`, the audit log.

use axum::Json;
use axum::body::Body;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::IntoResponse;
use jiff::Timestamp;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::domain::subscriber::ChannelKind;
use crate::render::social::Limits;
use crate::settings::Permission;
use crate::store::{AuditEntry, Draft, DraftPart, PartEdit};
use crate::web::body::{json, read};
use crate::web::contract::{
    BadRequest, Conflict, Forbidden, NotFound, Unauthorized, UnsupportedMediaType,
};
use crate::web::error::ApiError;
use crate::web::extract::{Path, Query};
use crate::web::service::drafts::{Decided, Length, measure};
use crate::web::service::{self};
use crate::web::{AppState, require};

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListQuery {
    /// pending, approved, rejected or superseded (default: all).
    #[param(pattern = "^(pending|approved|rejected|superseded)$")]
    state: Option<String>,
    /// At most this many (1 to 500; default 50).
    limit: Option<u32>,
}

/// A public draft: a statement held for the communications office, one part per channel and
/// language.
#[derive(Serialize, ToSchema)]
pub struct DraftJson {
    id: i64,
    incident_id: i64,
    incident_title: String,
    update_seq: i64,
    update_kind: String,
    audience: String,
    policy: String,
    /// `pending`, `approved`, `rejected` or `superseded`.
    state: String,
    /// When it publishes itself if nobody decides (`approval_with_timeout`).
    #[schema(value_type = Option<String>, format = DateTime)]
    publish_at: Option<Timestamp>,
    /// It replaces earlier drafts of the incident that were never published.
    combined: bool,
    #[schema(value_type = String, format = DateTime)]
    created_at: Timestamp,
    #[schema(value_type = Option<String>, format = DateTime)]
    decided_at: Option<Timestamp>,
    decided_by: Option<String>,
    reason: Option<String>,
    parts: Vec<PartJson>,
}

/// One part of a draft, with its length on its channel.
#[derive(Serialize, ToSchema)]
pub struct PartJson {
    #[serde(flatten)]
    part: DraftPart,
    length: Length,
}

/// Public drafts, newest first.
#[derive(Serialize, ToSchema)]
pub struct DraftList {
    drafts: Vec<DraftJson>,
}

/// What a decision came to.
#[derive(Serialize, ToSchema)]
pub struct DecidedJson {
    draft: i64,
    /// `approved` or `rejected`.
    decision: &'static str,
    /// Parts decided.
    parts: usize,
    /// Deliveries written to the outbox.
    deliveries: u64,
    /// About how many citizens the leader now writes deliveries for, in batches.
    citizens: u64,
}

/// The audit log, newest first.
#[derive(Serialize, ToSchema)]
pub struct AuditLog {
    entries: Vec<AuditEntry>,
}

fn with_measures(limits: &Limits, draft: &Draft) -> DraftJson {
    DraftJson {
        id: draft.id,
        incident_id: draft.incident_id,
        incident_title: draft.incident_title.clone(),
        update_seq: draft.update_seq,
        update_kind: draft.update_kind.clone(),
        audience: draft.audience.clone(),
        policy: draft.policy.clone(),
        state: draft.state.clone(),
        publish_at: draft.publish_at,
        combined: draft.combined,
        created_at: draft.created_at,
        decided_at: draft.decided_at,
        decided_by: draft.decided_by.clone(),
        reason: draft.reason.clone(),
        parts: draft
            .parts
            .iter()
            .map(|part| PartJson {
                length: measure(limits, part.channel, &part.body),
                part: part.clone(),
            })
            .collect(),
    }
}

/// List public drafts, newest first, each part with its text and its length on its channel.
#[utoipa::path(
    get,
    path = "/api/v1/drafts",
    tag = "drafts",
    params(ListQuery),
    security(("token" = []), ("basic" = [])),
    responses(
        (status = 200, description = "The drafts.", body = DraftList),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
    )
)]
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
    Ok(Json(DraftList { drafts }))
}

/// Read one draft.
#[utoipa::path(
    get,
    path = "/api/v1/drafts/{id}",
    tag = "drafts",
    params(("id" = i64, Path, description = "The draft's id.")),
    security(("token" = []), ("basic" = [])),
    responses(
        (status = 200, description = "The draft.", body = DraftJson),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 404, response = NotFound),
    )
)]
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

/// New texts for some parts of a draft.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EditRequest {
    #[schema(min_items = 1)]
    parts: Vec<EditPart>,
}

/// The new text of one part, named by its channel and language. A status part's `subject` is
/// its public title.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EditPart {
    channel: ChannelKind,
    language: String,
    #[serde(default)]
    subject: Option<String>,
    body: String,
}

/// Edit a draft's pending parts; each edit is a new version. A refused part gets `400` naming
/// `parts[i].subject` or `parts[i].body`.
#[utoipa::path(
    put,
    path = "/api/v1/drafts/{id}",
    tag = "drafts",
    params(("id" = i64, Path, description = "The draft's id.")),
    request_body = EditRequest,
    security(("token" = []), ("basic" = [])),
    responses(
        (status = 200, description = "The draft as edited.", body = DraftJson),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 404, response = NotFound),
        (status = 409, response = Conflict),
        (status = 415, response = UnsupportedMediaType),
    )
)]
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

/// What to publish: the parts of these channels, or every pending part (an empty body or no
/// `channels`).
#[derive(Deserialize, Default, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ApproveRequest {
    #[serde(default)]
    channels: Option<Vec<ChannelKind>>,
}

/// Why the draft is rejected.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RejectRequest {
    reason: String,
}

/// Approve a draft: publish every pending part, or those of the channels named.
#[utoipa::path(
    post,
    path = "/api/v1/drafts/{id}/approve",
    tag = "drafts",
    params(("id" = i64, Path, description = "The draft's id.")),
    request_body(content = Option<ApproveRequest>, description = "Optional: an empty body approves every pending part."),
    security(("token" = []), ("basic" = [])),
    responses(
        (status = 200, description = "Decided.", body = DecidedJson),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 404, response = NotFound),
        (status = 409, response = Conflict),
        (status = 415, response = UnsupportedMediaType),
    )
)]
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

/// Reject a draft, saying why.
#[utoipa::path(
    post,
    path = "/api/v1/drafts/{id}/reject",
    tag = "drafts",
    params(("id" = i64, Path, description = "The draft's id.")),
    request_body = RejectRequest,
    security(("token" = []), ("basic" = [])),
    responses(
        (status = 200, description = "Decided.", body = DecidedJson),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 404, response = NotFound),
        (status = 409, response = Conflict),
        (status = 415, response = UnsupportedMediaType),
    )
)]
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
fn decided_json(d: &Decided) -> Json<DecidedJson> {
    Json(DecidedJson {
        draft: d.draft,
        decision: d.decision,
        parts: d.parts,
        deliveries: d.deliveries,
        citizens: d.citizens,
    })
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct AuditQuery {
    /// Only the entries about this incident.
    incident: Option<i64>,
    /// At most this many (1 to 1000; default 100).
    limit: Option<u32>,
}

/// Read the audit log, newest first.
#[utoipa::path(
    get,
    path = "/api/v1/audit",
    tag = "drafts",
    params(AuditQuery),
    security(("token" = []), ("basic" = [])),
    responses(
        (status = 200, description = "The entries.", body = AuditLog),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
    )
)]
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
    Ok(Json(AuditLog { entries }))
}
