//! The domain's refusals: the contract between the rules and every caller.
//!
//! [`Reason`] codes are stable: they are sent to clients (google.rpc.ErrorInfo `reason`) and
//! never renumbered or renamed. Add new ones at the end.

/// `VALUE_DATE_OUT_OF_RANGE`'s metadata key naming the earliest date the refused command would
/// be taken on (the event it may not come before), whatever the call (since 2026-12-07; the
/// older keys, `last_value_date`, `compensated_on`, `last_inflow_on`, `rejected_on`, stay).
pub const EARLIEST_DATE: &str = "earliest_date";
/// `VALUE_DATE_OUT_OF_RANGE`'s metadata key naming the latest date the refused command would be
/// taken on (a payout: the day before maturity).
pub const LATEST_DATE: &str = "latest_date";

/// Why a well-formed command is refused by a programme rule (gRPC `FAILED_PRECONDITION`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Reason {
    HouseholdNotEligible = 1,
    HouseholdCapExceeded = 2,
    TermTooLong = 3,
    RateAboveLprCap = 4,
    NotCollateralFree = 5,
    BorrowerAgeOutOfRange = 6,
    PolicyNotInForce = 7,
    LprNotInForce = 8,
    LoanNotDisbursable = 9,
    OverDisbursement = 10,
    RepaymentExceedsOwed = 11,
    LoanNotRepayable = 12,
    ValueDateOutOfRange = 13,
    LedgerMismatch = 14,
    /// No longer answered (since 2026-12-06 a status may be dated before a household's first);
    /// kept so that its number and name stay what clients know.
    StatusDateBeforeRegistration = 15,
    PayoffRequired = 16,
    MisuseAlreadyMarked = 17,
    ExtensionNotAllowed = 18,
    LoanNotOverdue = 19,
    RenewalMismatch = 20,
    HeadAlreadyRegistered = 21,
    BorrowerOfAnotherHousehold = 22,
    ClaimStatusMismatch = 23,
    NoticeNotOver = 24,
    NoticeClosed = 25,
    SubsidyAlreadyClawedBack = 26,
    LoanNotMisused = 27,
    LoanAlreadyCompensated = 28,
    FundInsufficient = 29,
    NothingToReturn = 30,
    LendingSuspended = 31,
    FundLeverageExceeded = 32,
    PoolModeNotAllowed = 33,
    PoolMemberTaken = 34,
    PoolModeMismatch = 35,
    PoolTransferExceedsLoan = 36,
    PoolMembersOpen = 37,
    PoolSettled = 38,
    LastOperatorToken = 39,
    BackupNotConfigured = 40,
    LoanNotWrittenOff = 41,
    SubsidyNettedExceedsInterest = 42,
    RecoveredSinceClaim = 43,
    NotReversible = 44,
    PolicyChangesClaimedSubsidy = 45,
}

impl Reason {
    /// The code as sent to clients, e.g. `HOUSEHOLD_CAP_EXCEEDED`.
    pub fn code(self) -> &'static str {
        match self {
            Reason::HouseholdNotEligible => "HOUSEHOLD_NOT_ELIGIBLE",
            Reason::HouseholdCapExceeded => "HOUSEHOLD_CAP_EXCEEDED",
            Reason::TermTooLong => "TERM_TOO_LONG",
            Reason::RateAboveLprCap => "RATE_ABOVE_LPR_CAP",
            Reason::NotCollateralFree => "NOT_COLLATERAL_FREE",
            Reason::BorrowerAgeOutOfRange => "BORROWER_AGE_OUT_OF_RANGE",
            Reason::PolicyNotInForce => "POLICY_NOT_IN_FORCE",
            Reason::LprNotInForce => "LPR_NOT_IN_FORCE",
            Reason::LoanNotDisbursable => "LOAN_NOT_DISBURSABLE",
            Reason::OverDisbursement => "OVER_DISBURSEMENT",
            Reason::RepaymentExceedsOwed => "REPAYMENT_EXCEEDS_OWED",
            Reason::LoanNotRepayable => "LOAN_NOT_REPAYABLE",
            Reason::ValueDateOutOfRange => "VALUE_DATE_OUT_OF_RANGE",
            Reason::LedgerMismatch => "LEDGER_MISMATCH",
            Reason::StatusDateBeforeRegistration => "STATUS_DATE_BEFORE_REGISTRATION",
            Reason::PayoffRequired => "PAYOFF_REQUIRED",
            Reason::MisuseAlreadyMarked => "MISUSE_ALREADY_MARKED",
            Reason::ExtensionNotAllowed => "EXTENSION_NOT_ALLOWED",
            Reason::LoanNotOverdue => "LOAN_NOT_OVERDUE",
            Reason::RenewalMismatch => "RENEWAL_MISMATCH",
            Reason::HeadAlreadyRegistered => "HEAD_ALREADY_REGISTERED",
            Reason::BorrowerOfAnotherHousehold => "BORROWER_OF_ANOTHER_HOUSEHOLD",
            Reason::ClaimStatusMismatch => "CLAIM_STATUS_MISMATCH",
            Reason::NoticeNotOver => "NOTICE_NOT_OVER",
            Reason::NoticeClosed => "NOTICE_CLOSED",
            Reason::SubsidyAlreadyClawedBack => "SUBSIDY_ALREADY_CLAWED_BACK",
            Reason::LoanNotMisused => "LOAN_NOT_MISUSED",
            Reason::LoanAlreadyCompensated => "LOAN_ALREADY_COMPENSATED",
            Reason::FundInsufficient => "FUND_INSUFFICIENT",
            Reason::NothingToReturn => "NOTHING_TO_RETURN",
            Reason::LendingSuspended => "LENDING_SUSPENDED",
            Reason::FundLeverageExceeded => "FUND_LEVERAGE_EXCEEDED",
            Reason::PoolModeNotAllowed => "POOL_MODE_NOT_ALLOWED",
            Reason::PoolMemberTaken => "POOL_MEMBER_TAKEN",
            Reason::PoolModeMismatch => "POOL_MODE_MISMATCH",
            Reason::PoolTransferExceedsLoan => "POOL_TRANSFER_EXCEEDS_LOAN",
            Reason::PoolMembersOpen => "POOL_MEMBERS_OPEN",
            Reason::PoolSettled => "POOL_SETTLED",
            Reason::LastOperatorToken => "LAST_OPERATOR_TOKEN",
            Reason::BackupNotConfigured => "BACKUP_NOT_CONFIGURED",
            Reason::LoanNotWrittenOff => "LOAN_NOT_WRITTEN_OFF",
            Reason::SubsidyNettedExceedsInterest => "SUBSIDY_NETTED_EXCEEDS_INTEREST",
            Reason::RecoveredSinceClaim => "RECOVERED_SINCE_CLAIM",
            Reason::NotReversible => "NOT_REVERSIBLE",
            Reason::PolicyChangesClaimedSubsidy => "POLICY_CHANGES_CLAIMED_SUBSIDY",
        }
    }
}

/// The first broken rule of a command.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DomainError {
    /// A field is malformed (gRPC `INVALID_ARGUMENT`); `field` is the request field's name.
    #[error("{field} {message}")]
    Invalid { field: String, message: String },
    /// A named thing does not exist (gRPC `NOT_FOUND`).
    #[error("{what} {id} not found")]
    NotFound { what: &'static str, id: String },
    /// A thing with this identity exists already (gRPC `ALREADY_EXISTS`).
    #[error("{what} {id} already exists")]
    Exists { what: &'static str, id: String },
    /// A programme rule refuses the command (gRPC `FAILED_PRECONDITION`).
    #[error("{message}")]
    Refused {
        reason: Reason,
        message: String,
        /// Figures a client can act on (e.g. the amount still allowed), sent as ErrorInfo metadata.
        metadata: Vec<(String, String)>,
    },
    /// Arithmetic left the range of 64-bit fen.
    #[error("amount overflows 64-bit fen in {field}")]
    Overflow { field: String },
}

impl DomainError {
    pub fn invalid(field: impl Into<String>, message: impl Into<String>) -> Self {
        DomainError::Invalid { field: field.into(), message: message.into() }
    }

    pub fn refused(reason: Reason, message: impl Into<String>) -> Self {
        DomainError::Refused { reason, message: message.into(), metadata: Vec::new() }
    }

    /// Adds a figure to a refusal (no effect on other variants).
    pub fn with(mut self, key: &str, value: impl ToString) -> Self {
        if let DomainError::Refused { metadata, .. } = &mut self {
            metadata.push((key.to_string(), value.to_string()));
        }
        self
    }

    /// Adds a date to a refusal, if there is one ([`DomainError::with`]).
    pub fn with_date(self, key: &str, date: Option<chrono::NaiveDate>) -> Self {
        match date {
            Some(date) => self.with(key, super::date::format_date(date)),
            None => self,
        }
    }
}
