//! `POST /api/v1/callbacks/voice/{provider}/{incident}/{delivery}` (a call's progress) and
//! `…/key` (the key pressed, or none): what Twilio and Vonage post about the calls the voice
//! channel placed. Each URL carries the token the channel signed for that delivery (a wrong
//! one answers `404`, as for a call that does not exist); Twilio's signature, and Vonage's JWT
//! when signed callbacks are configured, must also be right (`401`). Progress is recorded on the
//! delivery as its provider report; a 1 pressed acknowledges the incident for that desk.

use std::collections::BTreeMap;

use axum::Json;
use axum::body::Body;
use axum::extract::{RawQuery, State};
use axum::http::HeaderMap;
use axum::http::header::{AUTHORIZATION, CONTENT_TYPE};
use axum::response::{IntoResponse, Response};
use jiff::Timestamp;

use crate::ack::Acknowledgements;
use crate::channel::voice::links::{CallLinks, CallRef, Callback};
use crate::channel::voice::settings::VoiceProviderKind;
use crate::channel::voice::{twilio, vonage};
use crate::store::{Acknowledged, DeliveryReport};
use crate::web::AppState;
use crate::web::body::read;
use crate::web::contract::{BadRequest, NotFound, Unauthorized};
use crate::web::error::ApiError;
use crate::web::extract::Path;

const TWILIO_SIGNATURE: &str = "x-twilio-signature";

/// Whether a call's progress was recorded.
#[derive(serde::Serialize, utoipa::ToSchema)]
pub struct CallReport {
    /// False for a call not placed from here (or long pruned): answered, so that the provider
    /// does not retry it.
    recorded: bool,
}

/// One action of the NCCO answered to Vonage (`talk`, `input`).
#[derive(utoipa::ToSchema)]
pub struct NccoAction {
    /// `talk`, `input`…
    #[allow(dead_code)]
    action: String,
}

/// A request that passed every check: the provider's kind and the fields it posted.
struct Checked<'a> {
    links: &'a CallLinks,
    kind: VoiceProviderKind,
    fields: BTreeMap<String, String>,
    query: Vec<(String, String)>,
}

/// Form fields as they came (Twilio), or a JSON object's fields with nested objects' fields
/// under `outer.inner` (Vonage's `dtmf.digits`).
fn fields(headers: &HeaderMap, bytes: &[u8]) -> Result<Vec<(String, String)>, ApiError> {
    let is_json = headers
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.trim_start().starts_with("application/json"));
    if !is_json {
        return Ok(url::form_urlencoded::parse(bytes).into_owned().collect());
    }
    let value: serde_json::Value = serde_json::from_slice(bytes)
        .map_err(|e| ApiError::bad(format!("the body is not JSON: {e}")))?;
    let object = value
        .as_object()
        .ok_or_else(|| ApiError::bad("the body is not a JSON object"))?;
    fn text(v: &serde_json::Value) -> Option<String> {
        match v {
            serde_json::Value::String(s) => Some(s.clone()),
            serde_json::Value::Number(n) => Some(n.to_string()),
            serde_json::Value::Bool(b) => Some(b.to_string()),
            _ => None,
        }
    }
    let mut out = Vec::new();
    for (k, v) in object {
        match v {
            serde_json::Value::Object(inner) => out.extend(
                inner
                    .iter()
                    .filter_map(|(ik, iv)| text(iv).map(|t| (format!("{k}.{ik}"), t))),
            ),
            v => out.extend(text(v).map(|t| (k.clone(), t))),
        }
    }
    Ok(out)
}

/// The checks every callback passes before anything is read or written: the provider exists,
/// the URL's token is this delivery's, the provider's own signature is right.
async fn check<'a>(
    state: &'a AppState,
    call: CallRef<'_>,
    callback: Callback,
    query: Option<String>,
    headers: &HeaderMap,
    body: Body,
) -> Result<Checked<'a>, ApiError> {
    let links = state
        .callbacks
        .voice_calls
        .as_deref()
        .ok_or_else(|| ApiError::NotFound("voice calls are not enabled".into()))?;
    let kind = links
        .kind(call.provider)
        .ok_or_else(|| ApiError::NotFound(format!("no call provider `{}`", call.provider)))?;
    let raw_query = query.unwrap_or_default();
    let query: Vec<(String, String)> = url::form_urlencoded::parse(raw_query.as_bytes())
        .into_owned()
        .collect();
    let token = query
        .iter()
        .find(|(k, _)| k == "token")
        .map(|(_, v)| v.as_str());
    if !token.is_some_and(|t| links.token_is_valid(call, t)) {
        tracing::warn!(
            provider = call.provider,
            incident = call.incident,
            delivery = call.delivery,
            "voice callback with a wrong token"
        );
        metrics::counter!("banditore_voice_callbacks_refused_total", "reason" => "token")
            .increment(1);
        return Err(ApiError::NotFound("no such call".into()));
    }
    let bytes = read(headers, body, state.max_body_bytes).await?;
    let params = fields(headers, &bytes)?;
    let header = |name| headers.get(name).and_then(|v| v.to_str().ok());
    if !links.signature_is_valid(
        call,
        callback,
        &raw_query,
        header(TWILIO_SIGNATURE),
        header(AUTHORIZATION.as_str()),
        &params,
    ) {
        tracing::warn!(
            provider = call.provider,
            incident = call.incident,
            delivery = call.delivery,
            "voice callback with a wrong signature"
        );
        metrics::counter!("banditore_voice_callbacks_refused_total", "reason" => "signature")
            .increment(1);
        return Err(ApiError::Unauthorized);
    }
    Ok(Checked {
        links,
        kind,
        fields: params.into_iter().collect(),
        query,
    })
}

/// A call's progress from its provider, recorded on the delivery: the call's status as the
/// provider words it (Twilio's `CallStatus`, Vonage's `status`), `machine` when an answering
/// machine or a fax answered (Twilio's `AnsweredBy`, named in the report's error).
#[utoipa::path(
    post,
    path = "/api/v1/callbacks/voice/{provider}/{incident}/{delivery}",
    tag = "callbacks",
    params(
        ("provider" = String, Path, description = "The provider's name in `[[channels.voice.providers]]`."),
        ("incident" = i64, Path, description = "The incident the call is about."),
        ("delivery" = i64, Path, description = "The delivery the call is."),
        ("token" = String, Query, description = "The token Banditore signed for this delivery."),
    ),
    request_body(content(
        (Object = "application/x-www-form-urlencoded"),
        (Object = "application/json"),
    ), description = "Twilio's status callback (form) or Vonage's event (JSON)."),
    security((), ("twilio_signature" = [])),
    responses(
        (status = 200, description = "Read.", body = CallReport),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthorized),
        (status = 404, response = NotFound),
    )
)]
pub async fn status(
    State(state): State<AppState>,
    Path((provider, incident, delivery)): Path<(String, i64, i64)>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    body: Body,
) -> Result<Json<CallReport>, ApiError> {
    let call = CallRef {
        provider: &provider,
        incident,
        delivery,
    };
    let checked = check(&state, call, Callback::Status, query, &headers, body).await?;
    let get = |name: &str| {
        checked
            .fields
            .get(name)
            .map(|v| v.trim().to_owned())
            .filter(|v| !v.is_empty())
    };
    let (id, status) = match checked.kind {
        VoiceProviderKind::Twilio => (get("CallSid"), get("CallStatus")),
        VoiceProviderKind::Vonage => (get("uuid"), get("status")),
    };
    let (Some(provider_id), Some(status)) = (id, status) else {
        return Err(ApiError::bad(
            "a call's progress needs the call's id and its status",
        ));
    };
    let mut status: String = status.to_ascii_lowercase().chars().take(32).collect();
    let answered_by = get("AnsweredBy").map(|a| a.chars().take(32).collect::<String>());
    let machine = answered_by
        .as_deref()
        .is_some_and(|a| a.starts_with("machine") || a == "fax");
    if machine && status != "failed" {
        status = "machine".into();
    }
    let report = DeliveryReport {
        provider: provider.clone(),
        provider_id: provider_id.chars().take(64).collect(),
        error: answered_by
            .filter(|_| machine)
            .map(|a| format!("answered by {a}")),
        status,
        at: Timestamp::now(),
    };
    // On the delivery the URL names (its token vouches for it): the first callbacks can come
    // before the delivery's outcome (the call's id) is written.
    let recorded = state.store.record_call_report(delivery, &report).await?;
    metrics::counter!("banditore_voice_reports_total", "provider" => provider.clone(), "status" => report.status.clone())
        .increment(1);
    if !recorded {
        tracing::info!(
            provider,
            delivery,
            "call progress for a call this delivery is not (or no longer) about"
        );
    }
    Ok(Json(CallReport { recorded }))
}

/// The key pressed during a call (Twilio's `<Gather>` action with `Digits`, Vonage's `input`
/// event with `dtmf.digits`), or none. A 1 acknowledges the incident for the desk called, by
/// the acknowledgement token the URL carries (once per desk; an incident resolved since is
/// acknowledged all the same and stays resolved); the answer is what the provider says next:
/// TwiML for Twilio, an NCCO for Vonage.
#[utoipa::path(
    post,
    path = "/api/v1/callbacks/voice/{provider}/{incident}/{delivery}/key",
    tag = "callbacks",
    params(
        ("provider" = String, Path, description = "The provider's name in `[[channels.voice.providers]]`."),
        ("incident" = i64, Path, description = "The incident the call is about."),
        ("delivery" = i64, Path, description = "The delivery the call is."),
        ("token" = String, Query, description = "The token Banditore signed for this delivery."),
        ("ack" = Option<String>, Query, description = "The desk's acknowledgement token, which a 1 brings back."),
        ("lang" = Option<String>, Query, description = "The call's language."),
        ("round" = Option<u8>, Query, description = "Which time the message was said (1 or 2)."),
    ),
    request_body(content(
        (Object = "application/x-www-form-urlencoded"),
        (Object = "application/json"),
    ), description = "Twilio's gather action (form) or Vonage's input event (JSON)."),
    security((), ("twilio_signature" = [])),
    responses(
        (status = 200, description = "What the call does next: TwiML (Twilio) or an NCCO (Vonage).", content(
            (String = "application/xml"),
            (Vec<NccoAction> = "application/json"),
        )),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthorized),
        (status = 404, response = NotFound),
    )
)]
pub async fn key(
    State(state): State<AppState>,
    Path((provider, incident, delivery)): Path<(String, i64, i64)>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let call = CallRef {
        provider: &provider,
        incident,
        delivery,
    };
    let checked = check(&state, call, Callback::Key, query, &headers, body).await?;
    let param = |name: &str| {
        checked
            .query
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    };
    let language = param("lang").unwrap_or("it").to_owned();
    let round = param("round")
        .and_then(|r| r.parse::<u8>().ok())
        .unwrap_or(1);
    let digits = match checked.kind {
        VoiceProviderKind::Twilio => checked.fields.get("Digits"),
        VoiceProviderKind::Vonage => checked.fields.get("dtmf.digits"),
    }
    .map(|d| d.trim().to_owned())
    .unwrap_or_default();
    // The desk's acknowledgement token must be one of ours, for this call's incident, whatever
    // key was pressed: a forged, tampered or other incident's token answers as a wrong URL does.
    let acks = Acknowledgements::new(state.store.clone(), state.links.clone());
    let ack = param("ack").map(str::to_owned);
    if let Some(token) = &ack {
        match acks.check(token).await? {
            Some(target) if target.incident_id == incident => {}
            _ => {
                tracing::warn!(
                    provider,
                    incident,
                    delivery,
                    "key pressed with a wrong acknowledgement token"
                );
                metrics::counter!("banditore_voice_callbacks_refused_total", "reason" => "token")
                    .increment(1);
                return Err(ApiError::NotFound("no such call".into()));
            }
        }
    }
    let confirmed = match (&ack, digits.as_str()) {
        (Some(token), "1") => matches!(
            acks.by_token(token, Timestamp::now()).await?,
            Acknowledged::Recorded(_) | Acknowledged::Already(_)
        ),
        _ => false,
    };
    metrics::counter!("banditore_voice_keys_total", "provider" => provider.clone(), "confirmed" => confirmed.to_string())
        .increment(1);
    Ok(match checked.kind {
        VoiceProviderKind::Twilio => (
            [(CONTENT_TYPE, "application/xml")],
            twilio::after_key(&language, confirmed),
        )
            .into_response(),
        VoiceProviderKind::Vonage => {
            let again = (digits.is_empty() && round < 2)
                .then(|| checked.links.key_url(call, &language, 2, ack.as_deref()));
            Json(vonage::after_key(
                &language,
                confirmed,
                again.as_deref(),
                checked.links.wait_for_key,
            ))
            .into_response()
        }
    })
}

#[cfg(test)]
mod tests {
    use axum::http::HeaderValue;
    use proptest::prelude::*;

    use super::*;

    fn json() -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        h
    }

    #[test]
    fn vonages_nested_fields_are_read_under_their_path() {
        let body = br#"{"uuid":"u1","dtmf":{"digits":"1","timed_out":false},"n":3,"list":[1]}"#;
        let f: BTreeMap<_, _> = fields(&json(), body).unwrap().into_iter().collect();
        assert_eq!(f["dtmf.digits"], "1");
        assert_eq!(f["dtmf.timed_out"], "false");
        assert_eq!(f["n"], "3");
        assert!(!f.contains_key("list"));
        assert!(fields(&json(), b"[1]").is_err());
        assert!(fields(&json(), b"{").is_err());
    }

    proptest! {
        #[test]
        fn any_body_is_read_or_refused_without_a_panic(
            text in crate::hostile::text(),
            bytes in proptest::collection::vec(any::<u8>(), 0..256),
        ) {
            let _ = fields(&HeaderMap::new(), text.as_bytes());
            let _ = fields(&HeaderMap::new(), &bytes);
            let _ = fields(&json(), &bytes);
            let body = serde_json::json!({"uuid": text, "dtmf": {"digits": text}}).to_string();
            let f: BTreeMap<_, _> = fields(&json(), body.as_bytes()).unwrap().into_iter().collect();
            prop_assert_eq!(&f["dtmf.digits"], &text);
        }
    }
}
