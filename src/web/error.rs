//! One error type for the HTTP API, mapped to statuses in one place. Bodies are JSON:
//! `{"error": "what is wrong", "field": "where, when known"}`.

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use crate::ingest::IngestError;
use crate::store::StoreError;

#[derive(Debug)]
pub enum ApiError {
    BadRequest {
        message: String,
        field: Option<String>,
    },
    Unauthorized,
    Forbidden(String),
    NotFound(String),
    Conflict(String),
    PayloadTooLarge(usize),
    /// The body was still arriving when `server.request_timeout` ran out.
    RequestTimeout(std::time::Duration),
    UnsupportedMediaType(String),
    Unavailable(String),
    Internal(String),
}

/// The body of every error answer, 4xx and 5xx alike.
#[derive(Serialize, utoipa::ToSchema)]
#[schema(example = json!({"error": "must not be empty", "field": "title"}))]
pub struct ErrorBody {
    /// What is wrong, in words meant for the person who sent the request.
    pub error: String,
    /// The field at fault (a JSON path such as `parts[0].body`, or a query parameter), when
    /// one is.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
}

impl ApiError {
    pub fn bad(message: impl Into<String>) -> ApiError {
        ApiError::BadRequest {
            message: message.into(),
            field: None,
        }
    }

    pub fn field(field: impl Into<String>, message: impl Into<String>) -> ApiError {
        ApiError::BadRequest {
            message: message.into(),
            field: Some(field.into()),
        }
    }

    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::BadRequest { .. } => StatusCode::BAD_REQUEST,
            ApiError::Unauthorized => StatusCode::UNAUTHORIZED,
            ApiError::Forbidden(_) => StatusCode::FORBIDDEN,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::Conflict(_) => StatusCode::CONFLICT,
            ApiError::PayloadTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::RequestTimeout(_) => StatusCode::REQUEST_TIMEOUT,
            ApiError::UnsupportedMediaType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ApiError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

impl From<IngestError> for ApiError {
    fn from(e: IngestError) -> Self {
        ApiError::BadRequest {
            message: e.message,
            field: e.field,
        }
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        if e.is_unavailable() {
            // The detail (file paths, server messages) goes to the log, not to the caller.
            tracing::warn!(error = %e, "store unavailable");
            ApiError::Unavailable("the store is unavailable; try again shortly".into())
        } else {
            match e {
                StoreError::Conflict(m) => ApiError::Conflict(m),
                other => ApiError::Internal(other.to_string()),
            }
        }
    }
}

impl ApiError {
    /// What the answer says: the message meant for the sender, and the field at fault. Senders
    /// that expect another service's error shape (the drop-in receivers) are answered with these
    /// words in that shape.
    pub fn describe(&self) -> (String, Option<String>) {
        match self {
            ApiError::BadRequest { message, field } => (message.clone(), field.clone()),
            ApiError::Unauthorized => ("missing or invalid credentials".to_owned(), None),
            ApiError::Forbidden(m)
            | ApiError::NotFound(m)
            | ApiError::Conflict(m)
            | ApiError::UnsupportedMediaType(m)
            | ApiError::Unavailable(m) => (m.clone(), None),
            ApiError::PayloadTooLarge(limit) => {
                (format!("the body is larger than {limit} bytes"), None)
            }
            ApiError::RequestTimeout(limit) => (
                format!(
                    "the request did not arrive within {}",
                    humantime::format_duration(*limit)
                ),
                None,
            ),
            ApiError::Internal(m) => {
                tracing::error!(error = %m, "internal error");
                ("internal error; see the server log".to_owned(), None)
            }
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        let (message, field) = self.describe();
        let mut response = (
            status,
            Json(ErrorBody {
                error: message,
                field,
            }),
        )
            .into_response();
        let headers = response.headers_mut();
        match status {
            StatusCode::UNAUTHORIZED => {
                headers.insert(
                    header::WWW_AUTHENTICATE,
                    HeaderValue::from_static(
                        "Bearer realm=\"banditore\", Basic realm=\"banditore\"",
                    ),
                );
            }
            StatusCode::SERVICE_UNAVAILABLE => {
                headers.insert(header::RETRY_AFTER, HeaderValue::from_static("5"));
            }
            // The rest of a body too large or too slow may still be unread: the connection ends with this
            // answer, and saying so keeps the client from sending its next request on it.
            StatusCode::PAYLOAD_TOO_LARGE | StatusCode::REQUEST_TIMEOUT => {
                headers.insert(header::CONNECTION, HeaderValue::from_static("close"));
            }
            _ => {}
        }
        response
    }
}
