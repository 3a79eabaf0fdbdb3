//! The application's error: domain refusals plus what the service itself can fail with.

use crate::domain::error::DomainError;
use crate::store::StoreError;

#[derive(Debug, thiserror::Error)]
pub enum AppError {
    #[error(transparent)]
    Domain(#[from] DomainError),
    #[error("missing or unknown bearer token")]
    Unauthenticated,
    #[error("{0}")]
    PermissionDenied(String),
    /// The request id was used before for a different command.
    #[error("request_id {0} was already used for a different request")]
    RequestIdReused(String),
    /// Retryable: the database is away, or the service is shutting down.
    #[error("{0}")]
    Unavailable(String),
    /// A fault of the service; the detail is logged, the caller gets a generic message.
    #[error("internal error: {0}")]
    Internal(String),
}

impl From<StoreError> for AppError {
    fn from(e: StoreError) -> Self {
        match e {
            e if e.is_unavailable() => {
                tracing::warn!(error = %e, "database unavailable");
                AppError::Unavailable("the database is unavailable; retry later".into())
            }
            other => AppError::Internal(other.to_string()),
        }
    }
}

/// What a caller is told of an [`AppError::Internal`]: its detail goes to the server log only.
pub const INTERNAL_TEXT: &str = "internal error; the detail is in the server log";

impl AppError {
    pub fn denied(message: impl Into<String>) -> Self {
        AppError::PermissionDenied(message.into())
    }
}
