//! The one mapping from application errors to gRPC statuses.
//!
//! Refusals carry google.rpc.ErrorInfo (stable `reason`, domain `loanledger.v1`, and figures in
//! `metadata`); malformed input carries google.rpc.BadRequest naming the field. Internal detail
//! goes to the log only.

use std::collections::HashMap;

use tonic::{Code, Status};
use tonic_types::{ErrorDetails, StatusExt};

use crate::app::error::{AppError, Refusal, RefusalCode};

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

/// `NOT_FOUND` for a loan read through a journal seq (`through_seq`) before its contract was
/// recorded, or recorded with a date after `dated_by` (`as_of`).
pub fn no_contract_by(
    loan_id: &str,
    dated_by: Option<crate::domain::date::BusinessDate>,
    seq: u64,
) -> Status {
    let dated = dated_by.map(|d| format!(" dated by {}", crate::domain::date::format_date(d)));
    Status::not_found(format!(
        "loan {loan_id} had no contract{} recorded by seq {seq}",
        dated.unwrap_or_default()
    ))
}

pub fn status(e: AppError) -> Status {
    if let Some(refusal) = e.refusal() {
        return refused(refusal);
    }
    match e {
        AppError::Unauthenticated => Status::unauthenticated("missing or unknown bearer token"),
        e @ AppError::TokenExpired(_) => Status::unauthenticated(e.to_string()),
        AppError::RequestIdReused(id) => Status::with_error_details(
            Code::AlreadyExists,
            format!("request_id {id} was already used for a different request"),
            ErrorDetails::with_error_info("REQUEST_ID_REUSED", ERROR_DOMAIN, HashMap::new()),
        ),
        AppError::Unavailable(m) | AppError::Stale(m) => Status::unavailable(m),
        AppError::HeldBack { loan_id, refused_as_sent, message } => Status::with_error_details(
            Code::Unavailable,
            message,
            ErrorDetails::with_error_info(
                "HELD_BACK",
                ERROR_DOMAIN,
                HashMap::from([
                    ("loan_id".to_string(), loan_id),
                    ("refused_as_sent".to_string(), refused_as_sent.to_string()),
                ]),
            ),
        ),
        AppError::Internal(detail) => {
            tracing::error!(detail, "internal error");
            Status::internal(crate::app::error::INTERNAL_TEXT)
        }
        // Refusals, above.
        AppError::Domain(_) | AppError::PermissionDenied(_) | AppError::Refused(_) => {
            Status::internal(crate::app::error::INTERNAL_TEXT)
        }
    }
}

/// A refusal's status: the same whether given the first time or again from its record.
fn refused(r: Refusal) -> Status {
    let code = match r.code {
        RefusalCode::InvalidArgument => Code::InvalidArgument,
        RefusalCode::FailedPrecondition => Code::FailedPrecondition,
        RefusalCode::NotFound => Code::NotFound,
        RefusalCode::AlreadyExists => Code::AlreadyExists,
        RefusalCode::PermissionDenied => Code::PermissionDenied,
    };
    match (r.field, r.reason) {
        (Some(field), _) => Status::with_error_details(
            code,
            r.message.clone(),
            ErrorDetails::with_bad_request_violation(field, r.message),
        ),
        (None, Some(reason)) => Status::with_error_details(
            code,
            r.message,
            ErrorDetails::with_error_info(
                reason,
                ERROR_DOMAIN,
                r.metadata.into_iter().collect::<HashMap<_, _>>(),
            ),
        ),
        (None, None) => Status::new(code, r.message),
    }
}

/// The writer answered a command with an outcome of another command: a bug, answered INTERNAL.
pub fn unexpected(what: &str) -> Status {
    status(crate::app::error::AppError::Internal(format!(
        "writer answered {what} with another outcome"
    )))
}
