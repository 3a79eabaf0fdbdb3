//! The one mapping from application errors to gRPC statuses.
//!
//! Refusals carry google.rpc.ErrorInfo (stable `reason`, domain `loanledger.v1`, and figures in
//! `metadata`); malformed input carries google.rpc.BadRequest naming the field. Internal detail
//! goes to the log only.

use std::collections::HashMap;

use tonic::{Code, Status};
use tonic_types::{ErrorDetails, StatusExt};

use crate::app::error::AppError;
use crate::domain::error::DomainError;

pub const ERROR_DOMAIN: &str = "loanledger.v1";

/// `INVALID_ARGUMENT` naming one field.
pub fn invalid(field: &str, message: impl std::fmt::Display) -> Status {
    let description = format!("{field} {message}");
    Status::with_error_details(
        Code::InvalidArgument,
        description.clone(),
        ErrorDetails::with_bad_request_violation(field, description),
    )
}

pub fn status(e: AppError) -> Status {
    match e {
        AppError::Domain(d) => match d {
            DomainError::Invalid { field, message } => invalid(&field, message),
            DomainError::Overflow { field } => {
                invalid(&field, "makes an amount overflow 64-bit fen")
            }
            DomainError::NotFound { .. } => Status::not_found(d.to_string()),
            DomainError::Exists { .. } => Status::already_exists(d.to_string()),
            DomainError::Refused { reason, message, metadata } => {
                let metadata: HashMap<String, String> = metadata.into_iter().collect();
                Status::with_error_details(
                    Code::FailedPrecondition,
                    format!("{}: {message}", reason.code()),
                    ErrorDetails::with_error_info(reason.code(), ERROR_DOMAIN, metadata),
                )
            }
        },
        AppError::Unauthenticated => Status::unauthenticated("missing or unknown bearer token"),
        AppError::PermissionDenied(m) => Status::permission_denied(m),
        AppError::RequestIdReused(id) => Status::with_error_details(
            Code::AlreadyExists,
            format!("request_id {id} was already used for a different request"),
            ErrorDetails::with_error_info("REQUEST_ID_REUSED", ERROR_DOMAIN, HashMap::new()),
        ),
        AppError::Unavailable(m) => Status::unavailable(m),
        AppError::Internal(detail) => {
            tracing::error!(detail, "internal error");
            Status::internal(crate::app::error::INTERNAL_TEXT)
        }
    }
}
