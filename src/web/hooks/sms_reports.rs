//! `POST /api/v1/callbacks/sms/{provider}` (and `GET`, as Vonage may be set to): delivery
//! reports from SMS providers, recorded on the delivery they are about.

use axum::Json;
use axum::body::Body;
use axum::extract::{RawQuery, State};
use axum::http::HeaderMap;
use axum::http::header::CONTENT_TYPE;
use axum::response::IntoResponse;
use jiff::Timestamp;

use crate::channel::sms::report::fields;
use crate::store::DeliveryReport;
use crate::web::AppState;
use crate::web::body::read;
use crate::web::contract::{BadRequest, NotFound, Unauthorized};
use crate::web::error::ApiError;
use crate::web::extract::Path;

const TWILIO_SIGNATURE: &str = "x-twilio-signature";

pub(super) fn pairs(bytes: &[u8]) -> Vec<(String, String)> {
    url::form_urlencoded::parse(bytes).into_owned().collect()
}

/// The `token` a provider that does not sign carries in the query.
pub(super) fn query_token(query: &[(String, String)]) -> Option<&str> {
    query
        .iter()
        .find(|(k, _)| k == "token")
        .map(|(_, v)| v.as_str())
}

/// A provider's body as fields: a JSON object's, or a form's.
pub(super) fn body_pairs(
    headers: &HeaderMap,
    bytes: &[u8],
) -> Result<Vec<(String, String)>, ApiError> {
    let is_json = headers
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.trim_start().starts_with("application/json"));
    if is_json {
        json_pairs(bytes)
    } else {
        Ok(pairs(bytes))
    }
}

/// A JSON object's fields as text (numbers written as they are).
fn json_pairs(bytes: &[u8]) -> Result<Vec<(String, String)>, ApiError> {
    let value: serde_json::Value =
        serde_json::from_slice(bytes).map_err(|e| ApiError::BadRequest {
            message: format!("the body is not JSON: {e}"),
            field: None,
        })?;
    let object = value.as_object().ok_or_else(|| ApiError::BadRequest {
        message: "the body is not a JSON object".into(),
        field: None,
    })?;
    Ok(object
        .iter()
        .filter_map(|(k, v)| match v {
            serde_json::Value::String(s) => Some((k.clone(), s.clone())),
            serde_json::Value::Number(n) => Some((k.clone(), n.to_string())),
            _ => None,
        })
        .collect())
}

/// Whether a delivery report was recorded.
#[derive(serde::Serialize, utoipa::ToSchema)]
pub struct ReportRecorded {
    /// False for a report about a message not sent from here (or long pruned): answered, so
    /// that the provider does not retry it.
    recorded: bool,
}

/// A delivery report from an SMS provider (Twilio signs it; the others carry the token of the
/// link Banditore gave them in `token`). The path is `channel::sms::report::REPORT_PATH`.
#[utoipa::path(
    method(post, get),
    path = "/api/v1/callbacks/sms/{provider}",
    tag = "callbacks",
    params(
        ("provider" = String, Path, description = "The gateway's name in `[[channels.sms.gateways]]`."),
        ("token" = Option<String>, Query, description = "The link's token, for providers that do not sign."),
    ),
    request_body(content(
        (Object = "application/x-www-form-urlencoded"),
        (Object = "application/json"),
    ), description = "The provider's report; a GET carries it in the query."),
    security((), ("twilio_signature" = [])),
    responses(
        (status = 200, description = "Read.", body = ReportRecorded),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthorized),
        (status = 404, response = NotFound),
    )
)]
pub async fn report(
    State(state): State<AppState>,
    Path(provider): Path<String>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    body: Body,
) -> Result<impl IntoResponse, ApiError> {
    let links = state
        .callbacks
        .sms_reports
        .as_ref()
        .ok_or_else(|| ApiError::NotFound("SMS is not enabled".into()))?;
    if links.kind(&provider).is_none() {
        return Err(ApiError::NotFound(format!("no SMS provider `{provider}`")));
    }
    let query = pairs(query.unwrap_or_default().as_bytes());
    let token = query_token(&query);
    let bytes = read(&headers, body, state.max_body_bytes).await?;
    let params = body_pairs(&headers, &bytes)?;
    let signature = headers.get(TWILIO_SIGNATURE).and_then(|v| v.to_str().ok());
    if !links.verify(&provider, token, signature, &params) {
        tracing::warn!(
            provider,
            "SMS delivery report with a wrong signature or token"
        );
        return Err(ApiError::Unauthorized);
    }
    // GET reports carry their fields in the query, beside the token.
    let all: Vec<(String, String)> = params
        .into_iter()
        .chain(query.into_iter().filter(|(k, _)| k != "token"))
        .collect();
    let (provider_id, status, error) = fields(&all).ok_or_else(|| ApiError::BadRequest {
        message: "a delivery report needs the message id and its status".into(),
        field: None,
    })?;
    let report = DeliveryReport {
        provider: provider.clone(),
        provider_id,
        status,
        error,
        at: Timestamp::now(),
    };
    let recorded = state.store.record_report(&report).await?;
    metrics::counter!("banditore_sms_reports_total", "provider" => provider.clone(), "status" => report.status.clone())
        .increment(1);
    if !recorded {
        // Reports for messages not sent from here (or long pruned) are answered, not retried.
        tracing::info!(provider, id = %report.provider_id, "delivery report for an unknown message");
    }
    Ok(Json(ReportRecorded { recorded }))
}
