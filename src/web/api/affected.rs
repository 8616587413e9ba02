//! `/api/v1/incidents/{id}/affected`: the people whose appointments an incident affects, as a
//! booking system (a token with the `booking` role) or an administrator uploads them (CSV or
//! JSON, read as a stream, up to `affected.max_upload_bytes`), reads them back with how each
//! row's messages stand, and deletes them. Every read is written to the audit log, as the
//! ledger's are. Whole contacts (fiscal code, number, address) are shown to administrators
//! only; a booking system reads them masked, since it holds the list it sent.

use axum::Json;
use axum::body::Body;
use axum::extract::State;
use axum::http::HeaderMap;
use jiff::Timestamp;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::affected::{Format, UploadError, UploadReport};
use crate::domain::fiscal_code::FiscalCode;
use crate::domain::subscriber::ChannelKind;
use crate::settings::Permission;
use crate::store::{AffectedRow, Topic};
use crate::web::body::{media_type, within};
use crate::web::contract::{
    BadRequest, Conflict, Forbidden, NotFound, PayloadTooLarge, Unauthorized, UnsupportedMediaType,
};
use crate::web::error::ApiError;
use crate::web::extract::{Path, Query};
use crate::web::service::incidents::masked;
use crate::web::{AppState, record_audit, require};

/// Rows per page at most.
const MAX_PAGE: u32 = 1000;

impl From<UploadError> for ApiError {
    fn from(e: UploadError) -> ApiError {
        match e {
            UploadError::Malformed(m) => ApiError::bad(format!(
                "the upload is malformed and nothing was stored: {m}"
            )),
            UploadError::TooLarge(limit) => ApiError::PayloadTooLarge(limit),
            UploadError::NotFound(id) => ApiError::NotFound(format!("incident {id} not found")),
            UploadError::Body(m) => ApiError::bad(format!("cannot read the body: {m}")),
            UploadError::Store(e) => e.into(),
        }
    }
}

/// Uploads rows to an incident's affected list: CSV (`text/csv`, a header line naming the
/// columns `fiscal_code`, `mobile`, `email`, `language`, `detail`, separated by `,` or `;`) or
/// a JSON array of objects with those members. Read row by row as it arrives; a bad row (a
/// fiscal code whose check character is wrong, a number that is not a mobile, an invalid email,
/// an empty row) is refused by its line and the others are stored; a malformed upload (bad
/// quoting, bad JSON, an unknown column, no header) is refused whole, naming the line, and
/// nothing is stored. A person already on the list is not added twice; a changed detail
/// replaces the old one. The incident must be open.
#[utoipa::path(
    post,
    path = "/api/v1/incidents/{id}/affected",
    tag = "incidents",
    params(("id" = i64, Path, description = "The incident's id.")),
    request_body(
        description = "The rows, as CSV with a header line or as a JSON array of objects.",
        content(
            (String = "text/csv"),
            (Vec<AffectedUploadRow> = "application/json"),
        ),
    ),
    security(("token" = []), ("basic" = [])),
    responses(
        (status = 200, description = "What the upload did, and the refused rows' lines.", body = UploadReport),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 404, response = NotFound),
        (status = 409, response = Conflict),
        (status = 413, response = PayloadTooLarge),
        (status = 415, response = UnsupportedMediaType),
    )
)]
pub async fn upload(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<i64>,
    body: Body,
) -> Result<Json<UploadReport>, ApiError> {
    let who = require(&state, &headers, Permission::Affected)?;
    let format = match media_type(&headers).as_deref() {
        Some("text/csv") => Format::Csv,
        None | Some("") | Some("application/json") => Format::Json,
        Some(other) => {
            return Err(ApiError::UnsupportedMediaType(format!(
                "`{}` is not accepted here; send text/csv or application/json",
                other.escape_debug()
            )));
        }
    };
    let lists = &state.affected;
    let body = within(&headers, body, lists.max_upload_bytes).await?;
    let report = lists
        .upload(id, format, body.into_data_stream(), Timestamp::now())
        .await?;
    if report.accepted + report.updated > 0 {
        // The new rows hear the latest statement published: the leader's citizen writer
        // writes it (other replicas hear the announcement).
        state.wake.dispatch.ring();
        state.store.announce(Topic::Deliveries).await;
    }
    record_audit(
        &state,
        &who.name,
        "affected.upload",
        Some(id),
        serde_json::json!({
            "format": if format == Format::Csv { "csv" } else { "json" },
            "accepted": report.accepted, "updated": report.updated,
            "duplicates": report.duplicates, "refused": report.refused,
        }),
    )
    .await;
    Ok(Json(report))
}

/// One row of a JSON upload: at least one of `fiscal_code`, `mobile`, `email`.
#[derive(Deserialize, ToSchema)]
#[allow(dead_code)]
pub struct AffectedUploadRow {
    /// The person's codice fiscale (checked by its check character; stored sealed).
    fiscal_code: Option<String>,
    /// A mobile number, read as SMS reads numbers (without `+`, in the deployment's region).
    mobile: Option<String>,
    email: Option<String>,
    /// `it` or `en` (default: `routing.default_language`).
    language: Option<String>,
    /// The appointment, one line of at most 120 characters, shown in the person's messages.
    detail: Option<String>,
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListQuery {
    /// Rows with an id above this one (the previous page's `next_after`).
    after: Option<i64>,
    /// At most this many rows (1 to 1000; default 500).
    limit: Option<u32>,
}

/// An incident's affected list: its counts and a page of its rows.
#[derive(Serialize, ToSchema)]
pub struct AffectedList {
    incident_id: i64,
    /// Rows in the list.
    rows: i64,
    /// Rows per channel.
    channels: std::collections::BTreeMap<String, i64>,
    /// The rows' messages per state (pending, sending, sent, failed, gone, cancelled).
    deliveries: std::collections::BTreeMap<String, i64>,
    /// Whole for administrators, masked for everyone else.
    whole_contacts: bool,
    items: Vec<AffectedItem>,
    /// The `after` of the next page; null on the last.
    next_after: Option<i64>,
}

/// One person of the list.
#[derive(Serialize, ToSchema)]
pub struct AffectedItem {
    id: i64,
    fiscal_code: Option<String>,
    mobile: Option<String>,
    email: Option<String>,
    language: String,
    detail: String,
    /// The channel that reaches them.
    channel: ChannelKind,
    /// Their address on it.
    recipient: String,
    /// Their latest message's state; null before the first statement is written out.
    state: Option<String>,
    /// Statements handed over to the provider.
    sent: i64,
    #[schema(value_type = String, format = DateTime)]
    created_at: Timestamp,
}

fn item(row: AffectedRow, whole: bool, key: &[u8]) -> AffectedItem {
    let fiscal_code =
        row.fiscal_code
            .as_deref()
            .map(|sealed| match FiscalCode::unseal(sealed, key) {
                Some(cf) if whole => cf.as_str().to_owned(),
                Some(cf) => cf.masked(),
                None => "(sealed under another key)".to_owned(),
            });
    let show =
        |channel, value: Option<String>| value.map(|v| if whole { v } else { masked(channel, &v) });
    AffectedItem {
        id: row.id,
        fiscal_code,
        mobile: show(ChannelKind::Sms, row.mobile),
        email: show(ChannelKind::Email, row.email),
        language: row.language,
        detail: row.detail,
        recipient: if whole {
            row.recipient
        } else {
            masked(row.channel, &row.recipient)
        },
        channel: row.channel,
        state: row.state,
        sent: row.sent,
        created_at: row.created_at,
    }
}

/// Reads an incident's affected list: counts, and a page of rows with the channel that reaches
/// each and how its messages stand. Contacts are whole for administrators only. Every read is
/// written to the audit log.
#[utoipa::path(
    get,
    path = "/api/v1/incidents/{id}/affected",
    tag = "incidents",
    params(("id" = i64, Path, description = "The incident's id."), ListQuery),
    security(("token" = []), ("basic" = [])),
    responses(
        (status = 200, description = "The list.", body = AffectedList),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 404, response = NotFound),
    )
)]
pub async fn list(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<i64>,
    Query(q): Query<ListQuery>,
) -> Result<Json<AffectedList>, ApiError> {
    let reader = require(&state, &headers, Permission::Affected)?;
    let limit = q.limit.unwrap_or(500);
    if !(1..=MAX_PAGE).contains(&limit) {
        return Err(ApiError::field("limit", "from 1 to 1000"));
    }
    if state.store.incident(id).await?.is_none() {
        return Err(ApiError::NotFound(format!("incident {id} not found")));
    }
    let whole = reader.may(Permission::Admin);
    let after = q.after.unwrap_or(0);
    record_audit(
        &state,
        &reader.name,
        "affected.read",
        Some(id),
        serde_json::json!({ "after": after, "limit": limit, "whole_contacts": whole }),
    )
    .await;
    let counts = state.store.affected_counts(id).await?;
    let rows = state.store.affected_rows(id, after, limit).await?;
    let next_after = (rows.len() as u32 == limit)
        .then(|| rows.last().map(|r| r.id))
        .flatten();
    let key = &state.affected.key;
    Ok(Json(AffectedList {
        incident_id: id,
        rows: counts.rows,
        channels: counts
            .channels
            .into_iter()
            .map(|(c, n)| (c.as_str().to_owned(), n))
            .collect(),
        deliveries: counts.deliveries.into_iter().collect(),
        whole_contacts: whole,
        items: rows.into_iter().map(|r| item(r, whole, key)).collect(),
        next_after,
    }))
}

/// What a deletion did.
#[derive(Serialize, ToSchema)]
pub struct AffectedDeleted {
    /// Rows deleted, with their messages (those not yet sent are not sent).
    deleted: u64,
}

/// Deletes an incident's affected list and its messages: those not yet sent are not sent.
#[utoipa::path(
    delete,
    path = "/api/v1/incidents/{id}/affected",
    tag = "incidents",
    params(("id" = i64, Path, description = "The incident's id.")),
    security(("token" = []), ("basic" = [])),
    responses(
        (status = 200, description = "Deleted.", body = AffectedDeleted),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 404, response = NotFound),
    )
)]
pub async fn delete(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<i64>,
) -> Result<Json<AffectedDeleted>, ApiError> {
    let who = require(&state, &headers, Permission::Affected)?;
    if state.store.incident(id).await?.is_none() {
        return Err(ApiError::NotFound(format!("incident {id} not found")));
    }
    let deleted = state.store.delete_affected(id).await?;
    record_audit(
        &state,
        &who.name,
        "affected.delete",
        Some(id),
        serde_json::json!({ "deleted": deleted }),
    )
    .await;
    Ok(Json(AffectedDeleted { deleted }))
}
