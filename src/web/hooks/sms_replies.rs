//! `POST /api/v1/callbacks/sms/{provider}/inbound` (and `GET`, as Vonage may be set to): texts
//! that desks send back. A reply that is one of `channels.sms.reply_words` ("OK") acknowledges
//! the latest incident texted to that number in a desk's message (`ack::Acknowledgements::
//! by_reply`). Twilio signs its requests; the others carry `channels.sms.reply_token` in the
//! URL's `token`. A reply from a number texted no incident, another word, or a wrong signature
//! changes nothing and is logged, with the number masked and never the text.

use axum::body::Body;
use axum::extract::{RawQuery, State};
use axum::http::HeaderMap;
use axum::http::StatusCode;
use axum::http::header::CONTENT_TYPE;
use axum::response::{IntoResponse, Response};
use jiff::Timestamp;

use super::sms_reports::{body_pairs, pairs, query_token};
use crate::ack::Acknowledgements;
use crate::domain::subscriber::ChannelKind;
use crate::settings::SmsProviderKind;
use crate::store::Acknowledged;
use crate::web::AppState;
use crate::web::body::read;
use crate::web::contract::{BadRequest, NotFound, Unauthorized};
use crate::web::error::ApiError;
use crate::web::extract::Path;

const TWILIO_SIGNATURE: &str = "x-twilio-signature";

/// A number as logs may show it: its last three digits.
fn masked(number: &str) -> String {
    let digits: Vec<char> = number.chars().filter(char::is_ascii_digit).collect();
    let tail: String = digits[digits.len().saturating_sub(3)..].iter().collect();
    format!("…{tail}")
}

/// A desk's reply to a text. Twilio is answered with empty TwiML (no reply is sent back); the
/// others with `204`.
#[utoipa::path(
    method(post, get),
    path = "/api/v1/callbacks/sms/{provider}/inbound",
    tag = "callbacks",
    params(
        ("provider" = String, Path, description = "The provider's name in `[[channels.sms.providers]]`."),
        ("token" = Option<String>, Query, description = "`channels.sms.reply_token`, for providers that do not sign."),
    ),
    request_body(content(
        (Object = "application/x-www-form-urlencoded"),
        (Object = "application/json"),
    ), description = "The provider's inbound message; a GET carries it in the query."),
    security((), ("twilio_signature" = [])),
    responses(
        (status = 200, description = "Read (Twilio): no message back.", content_type = "application/xml", body = String),
        (status = 204, description = "Read."),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthorized),
        (status = 404, response = NotFound),
    )
)]
pub async fn inbound(
    State(state): State<AppState>,
    Path(provider): Path<String>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let links = state
        .callbacks
        .sms_reports
        .as_ref()
        .ok_or_else(|| ApiError::NotFound("SMS is not enabled".into()))?;
    let replies = links
        .replies()
        .ok_or_else(|| ApiError::NotFound("SMS replies are not enabled".into()))?;
    let kind = links
        .kind(&provider)
        .ok_or_else(|| ApiError::NotFound(format!("no SMS provider `{provider}`")))?;
    let raw_query = query.unwrap_or_default();
    let query = pairs(raw_query.as_bytes());
    let token = query_token(&query);
    let bytes = read(&headers, body, state.max_body_bytes).await?;
    let params = body_pairs(&headers, &bytes)?;
    let signature = headers.get(TWILIO_SIGNATURE).and_then(|v| v.to_str().ok());
    if !links.verify_reply(&provider, &raw_query, token, signature, &params) {
        tracing::warn!(provider, "SMS reply with a wrong signature or token");
        metrics::counter!("banditore_sms_replies_total", "provider" => provider.clone(), "outcome" => "refused")
            .increment(1);
        return Err(ApiError::Unauthorized);
    }
    // A GET carries its fields in the query, beside the token.
    let all: Vec<(String, String)> = params
        .into_iter()
        .chain(query.into_iter().filter(|(k, _)| k != "token"))
        .collect();
    let (from, text) = replies
        .read(kind, &all)
        .ok_or_else(|| ApiError::bad("an inbound message needs its sender and its text"))?;
    let outcome = match ChannelKind::Sms.parse_address(&from, &state.subscriber_rules) {
        Err(_) => "unknown_number",
        Ok(_) if !replies.says_seen(&text) => "other_text",
        Ok(number) => {
            let acks = Acknowledgements::new(state.store.clone(), state.links.clone());
            match acks.by_reply(&number, Timestamp::now()).await? {
                Acknowledged::Recorded(_) => "acknowledged",
                Acknowledged::Already(_) => "already",
                Acknowledged::NotSent => "unknown_number",
            }
        }
    };
    metrics::counter!("banditore_sms_replies_total", "provider" => provider.clone(), "outcome" => outcome)
        .increment(1);
    if !matches!(outcome, "acknowledged" | "already") {
        tracing::info!(provider, from = %masked(&from), outcome, "SMS reply that acknowledges nothing");
    }
    Ok(match kind {
        SmsProviderKind::Twilio => (
            [(CONTENT_TYPE, "application/xml")],
            r#"<?xml version="1.0" encoding="UTF-8"?><Response/>"#,
        )
            .into_response(),
        _ => StatusCode::NO_CONTENT.into_response(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_are_masked_to_their_last_three_digits() {
        assert_eq!(masked("+393331234567"), "…567");
        assert_eq!(masked("12"), "…12");
        assert_eq!(masked("ab"), "…");
    }
}
