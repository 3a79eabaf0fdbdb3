//! The application's error: domain refusals plus what the service itself can fail with.

use crate::domain::error::DomainError;
use crate::store::StoreError;

#[derive(Debug, thiserror::Error)]
pub enum AppError {
    #[error(transparent)]
    Domain(#[from] DomainError),
    #[error("missing or unknown bearer token")]
    Unauthenticated,
    /// The bearer token's term ran out at that time (RFC 3339, UTC): the caller holds its
    /// secret, so saying so tells it nothing it could not try.
    #[error("the bearer token expired at {0}: ask the operator for a new one")]
    TokenExpired(String),
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
    /// Retryable, and retried by the caller before it answers: what the command was checked
    /// against on the read pool (a claim's loans) changed before the writer took it; nothing
    /// was recorded. Answered `UNAVAILABLE` should the retries run out.
    #[error("{0}")]
    Stale(String),
    /// A refusal given again from its record under the request id ([`Refusal`]).
    #[error("{}", .0.message)]
    Refused(Refusal),
    /// A batch item not run, held back by an earlier item of its call on the same loan that
    /// went unanswered or was refused as sent (`refused_as_sent`): `UNAVAILABLE`, reason
    /// `HELD_BACK` (since 2026-12-07; before, a plain `UNAVAILABLE` told apart only by its
    /// text). Not recorded: the call sent again runs it.
    #[error("{message}")]
    HeldBack { loan_id: String, refused_as_sent: bool, message: String },
}

/// A refusal as its caller gets it, recorded under the request id like any answer (DESIGN.md:
/// same request id and same content, the same answer again), so that a retry is refused the
/// same way even once the command would pass (a repayment refused before its loan was paid
/// out, then retried after it, must not post what the bank has meanwhile booked under another
/// id). The gRPC code and message, with the `ErrorInfo` reason and metadata or the
/// `BadRequest` field of the first answer. Failures of the service (`UNAVAILABLE`, `INTERNAL`)
/// are no answers and are not recorded: the command may be tried again.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Refusal {
    pub code: RefusalCode,
    pub message: String,
    /// `ErrorInfo.reason` (a `FAILED_PRECONDITION`'s stable code).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// `ErrorInfo.metadata`, in order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub metadata: Vec<(String, String)>,
    /// The `BadRequest` field of an `INVALID_ARGUMENT`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
}

/// The gRPC codes of refusals.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RefusalCode {
    InvalidArgument,
    FailedPrecondition,
    NotFound,
    AlreadyExists,
    PermissionDenied,
}

impl RefusalCode {
    /// The gRPC code's name, as gRPC's status-code table spells it.
    pub fn name(self) -> &'static str {
        match self {
            RefusalCode::InvalidArgument => "INVALID_ARGUMENT",
            RefusalCode::FailedPrecondition => "FAILED_PRECONDITION",
            RefusalCode::NotFound => "NOT_FOUND",
            RefusalCode::AlreadyExists => "ALREADY_EXISTS",
            RefusalCode::PermissionDenied => "PERMISSION_DENIED",
        }
    }
}

impl From<StoreError> for AppError {
    fn from(e: StoreError) -> Self {
        match e {
            // Said as it is: the caller learns why its write waits (no detail of the database).
            StoreError::Claimed(m) => {
                tracing::warn!(error = %m, "the writer claim is not ours");
                AppError::Unavailable(m)
            }
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

    /// This error as its caller gets it, if it is a refusal of the command (an answer, given
    /// again to a retry); `None` for the service's own failures, a missing token and a request
    /// id used for another command (which answers no command of its own).
    pub fn refusal(&self) -> Option<Refusal> {
        let plain = |code, message: String| Refusal {
            code,
            message,
            reason: None,
            metadata: Vec::new(),
            field: None,
        };
        Some(match self {
            AppError::Domain(d) => match d {
                DomainError::Invalid { field, .. } | DomainError::Overflow { field } => Refusal {
                    field: Some(field.clone()),
                    ..plain(RefusalCode::InvalidArgument, invalid_text(d))
                },
                DomainError::NotFound { .. } => plain(RefusalCode::NotFound, d.to_string()),
                // A reason of its own, so that a client tells "the record exists" from
                // REQUEST_ID_REUSED: LOAN_EXISTS, BANK_EXISTS, LPR_ENTRY_EXISTS, ...
                DomainError::Exists { what, .. } => Refusal {
                    reason: Some(format!("{}_EXISTS", what.to_uppercase().replace(' ', "_"))),
                    ..plain(RefusalCode::AlreadyExists, d.to_string())
                },
                DomainError::Refused { reason, message, metadata } => Refusal {
                    reason: Some(reason.code().to_string()),
                    metadata: metadata.clone(),
                    ..plain(
                        RefusalCode::FailedPrecondition,
                        format!("{}: {message}", reason.code()),
                    )
                },
            },
            AppError::PermissionDenied(m) => plain(RefusalCode::PermissionDenied, m.clone()),
            AppError::Refused(r) => r.clone(),
            AppError::Unauthenticated
            | AppError::TokenExpired(_)
            | AppError::RequestIdReused(_)
            | AppError::Unavailable(_)
            | AppError::Stale(_)
            | AppError::HeldBack { .. }
            | AppError::Internal(_) => return None,
        })
    }
}

/// The message of an `INVALID_ARGUMENT` from the domain: the field, then what is wrong with it.
fn invalid_text(d: &DomainError) -> String {
    match d {
        DomainError::Overflow { field } => format!("{field} makes an amount overflow 64-bit fen"),
        other => other.to_string(),
    }
}

/// Runs `f`, a panic in it caught and given back as its message (the text `panic!` was given,
/// or empty): for the domain's planning and replay of one command or event, whose panic (a bug,
/// or a stored row altered into figures its arithmetic does not expect) must be that one's
/// failure, not the end of the task serving every other.
pub fn caught<T>(f: impl FnOnce() -> T) -> Result<T, String> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)).map_err(|panic| {
        panic
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| panic.downcast_ref::<String>().cloned())
            .unwrap_or_default()
    })
}

/// A read or a signature refused over a journal broken at `seq` of `ledger_id` (`what` the
/// transaction there does; `refused` what is not done over it): `FAILED_PRECONDITION` with
/// reason `JOURNAL_BROKEN` and `metadata.seq`, which an auditor can act on (Verify reports the
/// break), where an `INTERNAL` said nothing (since 2026-12-07 for the past balances and the
/// loans rebuilt as of a date; checkpoints since they were signed). Logged as a warning.
pub fn journal_broken(ledger_id: &str, seq: u64, what: &str, refused: &str) -> AppError {
    tracing::warn!(ledger_id, seq, what, refused, "journal broken");
    AppError::Refused(Refusal {
        code: RefusalCode::FailedPrecondition,
        message: format!(
            "JOURNAL_BROKEN: the transaction at seq {seq} of ledger {ledger_id} {what}; {refused} \
             (Verify reports it)"
        ),
        reason: Some("JOURNAL_BROKEN".into()),
        metadata: vec![("seq".into(), seq.to_string())],
        field: None,
    })
}

/// [`caught`] for the domain's planning of one command (or a loan's replay for an answer), a
/// panic in it made that command's `Internal` failure: the writer, the one task every write
/// goes through, must not end with it. The group fails and its commands run again one by one
/// (`Writer::after_failure`), the others answered as usual; the failure is not recorded under
/// its request id.
pub fn unpanicked<T>(what: &str, plan: impl FnOnce() -> T) -> Result<T, AppError> {
    caught(plan).map_err(|why| AppError::Internal(format!("{what} panicked: {why}")))
}
