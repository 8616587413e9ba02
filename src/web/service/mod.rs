//! What the API and the console both do, done once: open an incident by hand and post its
//! updates, edit, approve and reject a draft, create and delete a subscriber, manage the API
//! tokens and the console users. Each operation takes typed input, the actor and the time, runs
//! every check, writes, wakes whoever must know and writes the audit log; each side only reads
//! its request (JSON or a form) and shows the result or the [`ServiceError`] its own way. A check
//! added here holds for both, so a console form can no longer skip what the API refuses.

pub mod access;
pub mod acks;
pub mod drafts;
pub mod incidents;
pub mod subscribers;

use crate::store::StoreError;
use crate::web::error::ApiError;

/// Why an operation was refused or failed.
#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    /// The input is wrong, and `field` says where.
    #[error("{field}: {message}")]
    Invalid { field: String, message: String },
    /// An edited part of a draft that its channel, a page or a feed would refuse: `index` is its
    /// place in the edit, so that each side names the field its own way.
    #[error("part {index}: {}: {}", part.field, part.message)]
    PartRefused { index: usize, part: drafts::Refused },
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Conflict(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl ServiceError {
    fn invalid(field: impl Into<String>, message: impl Into<String>) -> ServiceError {
        ServiceError::Invalid {
            field: field.into(),
            message: message.into(),
        }
    }
}

/// The API's answer; the console shows the same error on its error page. A refused part is named
/// as the API's body names it (`parts[i].field`); the console names its form field instead.
impl From<ServiceError> for ApiError {
    fn from(e: ServiceError) -> ApiError {
        match e {
            ServiceError::Invalid { field, message } => ApiError::field(field, message),
            ServiceError::PartRefused { index, part } => {
                ApiError::field(format!("parts[{index}].{}", part.field), part.message)
            }
            ServiceError::NotFound(m) => ApiError::NotFound(m),
            ServiceError::Conflict(m) => ApiError::Conflict(m),
            ServiceError::Store(e) => e.into(),
        }
    }
}
