//! Reading request bodies: a size limit with a clear 413, content types told apart, JSON decoded
//! with the path of the offending field.

use axum::body::Body;
use axum::http::HeaderMap;
use axum::http::header::{CONTENT_LENGTH, CONTENT_TYPE};
use bytes::Bytes;
use serde::de::DeserializeOwned;

use super::error::ApiError;

/// A body refused for the size it declares is still read, and dropped, up to this much: the
/// sender then finishes writing and reads the 413, instead of a connection reset under it.
const DRAIN_AT_MOST: u64 = 8 * 1024 * 1024;

async fn drain(mut body: Body) {
    use http_body_util::BodyExt;
    while let Some(Ok(_)) = body.frame().await {}
}

/// The body, unless it declares more than `limit` bytes (it is then drained when small enough,
/// and refused): what a handler that reads its body as a stream checks first, counting the
/// bytes as they come for a body that declares no length.
pub async fn within(headers: &HeaderMap, body: Body, limit: usize) -> Result<Body, ApiError> {
    let declared = headers
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if let Some(n) = declared
        && n > limit as u64
    {
        if n <= DRAIN_AT_MOST {
            drain(body).await;
        }
        return Err(ApiError::PayloadTooLarge(limit));
    }
    Ok(body)
}

/// Reads the whole body, refusing more than `limit` bytes.
pub async fn read(headers: &HeaderMap, body: Body, limit: usize) -> Result<Bytes, ApiError> {
    let body = within(headers, body, limit).await?;
    axum::body::to_bytes(body, limit).await.map_err(|e| {
        let too_large = std::error::Error::source(&e)
            .is_some_and(|s| s.is::<http_body_util::LengthLimitError>())
            || e.to_string().contains("length limit");
        if too_large {
            ApiError::PayloadTooLarge(limit)
        } else {
            ApiError::bad(format!("cannot read the body: {e}"))
        }
    })
}

/// The media type without parameters, lower-cased; `None` when the header is absent.
pub fn media_type(headers: &HeaderMap) -> Option<String> {
    let raw = headers.get(CONTENT_TYPE)?.to_str().ok()?;
    Some(
        raw.split(';')
            .next()
            .unwrap_or_default()
            .trim()
            .to_ascii_lowercase(),
    )
}

/// JSON, or something a sender may use for JSON without saying so.
pub fn is_json_like(media: Option<&str>) -> bool {
    match media {
        None | Some("") => true,
        Some(m) => {
            m == "application/json" || m == "text/json" || m == "text/plain" || m.ends_with("+json")
        }
    }
}

/// Decodes a JSON request body into `T`, naming the field at fault.
pub fn json<T: DeserializeOwned>(headers: &HeaderMap, bytes: &[u8]) -> Result<T, ApiError> {
    let media = media_type(headers);
    if !is_json_like(media.as_deref()) {
        return Err(ApiError::UnsupportedMediaType(format!(
            "`{}` is not accepted here; send application/json",
            media.unwrap_or_default()
        )));
    }
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let value: T = serde_path_to_error::deserialize(&mut de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        let message = if inner.is_syntax() || inner.is_eof() {
            format!("malformed JSON: {inner}")
        } else {
            strip_position(&inner.to_string())
        };
        if path == "." {
            ApiError::bad(message)
        } else {
            ApiError::field(path, message)
        }
    })?;
    de.end()
        .map_err(|e| ApiError::bad(format!("malformed JSON: {e}")))?;
    Ok(value)
}

fn strip_position(message: &str) -> String {
    match message.find(" at line ") {
        Some(i) => message[..i].to_owned(),
        None => message.to_owned(),
    }
}

/// The value of `field` in a multipart/form-data body.
pub async fn multipart_field(
    headers: &HeaderMap,
    body: &[u8],
    field: &str,
) -> Result<Option<String>, ApiError> {
    let content_type = headers
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    let boundary = multer::parse_boundary(content_type)
        .map_err(|e| ApiError::bad(format!("multipart body without a usable boundary: {e}")))?;
    let mut parts = multer::Multipart::with_reader(body, boundary);
    loop {
        match parts.next_field().await {
            Ok(Some(part)) => {
                if part.name() == Some(field) {
                    let text = part
                        .text()
                        .await
                        .map_err(|e| ApiError::bad(format!("multipart field `{field}`: {e}")))?;
                    return Ok(Some(text));
                }
            }
            Ok(None) => return Ok(None),
            Err(e) => return Err(ApiError::bad(format!("malformed multipart body: {e}"))),
        }
    }
}

/// The value of `field` in an application/x-www-form-urlencoded body.
pub fn form_field(body: &[u8], field: &str) -> Option<String> {
    url::form_urlencoded::parse(body)
        .find(|(k, _)| k == field)
        .map(|(_, v)| v.into_owned())
}
