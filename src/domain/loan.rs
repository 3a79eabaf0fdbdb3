//! Programme loans: origination rules, disbursement, repayment, and the loan's state.
//!
//! Model: a [`LoanState`] is the loan's contract ([`LoanTerms`]) plus its balances and status. Every
//! change is a [`LoanEvent`]; [`LoanState::apply`] is the only place a state changes, used both
//! when a command is accepted and when `verify` rebuilds the read model from the journal. The
//! `plan_*` functions check a command against the state and the policy in force and return the
//! event to record, or the first broken rule; they never change anything.
//!
//! Status: `Contracted` (nothing paid out) -> `Active` (principal outstanding) -> `Settled`
//! (principal repaid to zero). Overdue states and write-off come with computed servicing.

use serde::{Deserialize, Serialize};

use super::date::{BusinessDate, age_on, format_date};
use super::error::{DomainError, Reason};
use super::household::{StatusEntry, status_on};
use super::money::Fen;
use super::policy::PolicyParams;
use super::rate::AnnualRate;

pub use super::calendar::SettlementFrequency;
pub use super::schedule::RepaymentMethod;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LoanStatus {
    Contracted,
    Active,
    Overdue,
    Overdue90,
    Settled,
    WrittenOff,
}

macro_rules! text_enum {
    ($ty:ty { $($variant:ident => $text:literal),+ $(,)? }) => {
        impl $ty {
            pub fn as_str(self) -> &'static str {
                match self { $(<$ty>::$variant => $text),+ }
            }
            pub fn parse(text: &str) -> Option<Self> {
                match text { $($text => Some(<$ty>::$variant),)+ _ => None }
            }
        }
    };
}

text_enum!(RepaymentMethod {
    Bullet => "bullet",
    EqualInstalment => "equal_instalment",
    EqualPrincipal => "equal_principal",
    InterestWithPrincipal => "interest_with_principal",
});
text_enum!(SettlementFrequency {
    Monthly => "monthly",
    Quarterly => "quarterly",
    Yearly => "yearly",
    AtMaturity => "at_maturity",
});
text_enum!(LoanStatus {
    Contracted => "contracted",
    Active => "active",
    Overdue => "overdue",
    Overdue90 => "overdue_90",
    Settled => "settled",
    WrittenOff => "written_off",
});

impl LoanStatus {
    /// Whether the loan's contract principal still counts against the household cap.
    pub fn is_open(self) -> bool {
        !matches!(self, LoanStatus::Settled | LoanStatus::WrittenOff)
    }
}

/// The contract, as recorded. Built from a checked request; `plan_origination` applies the
/// programme rules.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LoanTerms {
    pub loan_id: String,
    pub ledger_id: String,
    pub bank_id: String,
    pub contract_number: String,
    pub household_id: String,
    pub borrower_name: String,
    pub borrower_id_number: String,
    pub borrower_birth_date: BusinessDate,
    pub principal_fen: Fen,
    pub annual_rate: AnnualRate,
    pub contract_date: BusinessDate,
    pub term_months: u32,
    pub maturity_date: BusinessDate,
    pub repayment_method: RepaymentMethod,
    pub settlement_frequency: SettlementFrequency,
    pub purpose: String,
    pub collateral_free: bool,
    pub guarantee_free: bool,
}

/// A loan's contract, balances and status.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LoanState {
    pub terms: LoanTerms,
    pub status: LoanStatus,
    pub disbursed_fen: Fen,
    pub principal_outstanding_fen: Fen,
    pub principal_repaid_fen: Fen,
    pub interest_paid_fen: Fen,
    pub disbursed_on: Option<BusinessDate>,
    /// Latest value date of any event; value dates of a loan never go backwards.
    pub last_value_date: BusinessDate,
    /// Journal sequence number of the last event applied.
    pub last_seq: u64,
}

/// What happened to a loan. The journal's `command_json` of a loan transaction is one of these.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum LoanEvent {
    Created { terms: LoanTerms },
    Disbursed { loan_id: String, value_date: BusinessDate, amount_fen: Fen },
    Repaid { loan_id: String, value_date: BusinessDate, principal_fen: Fen, interest_fen: Fen },
}

impl LoanEvent {
    pub fn loan_id(&self) -> &str {
        match self {
            LoanEvent::Created { terms } => &terms.loan_id,
            LoanEvent::Disbursed { loan_id, .. } | LoanEvent::Repaid { loan_id, .. } => loan_id,
        }
    }

    pub fn value_date(&self) -> BusinessDate {
        match self {
            LoanEvent::Created { terms } => terms.contract_date,
            LoanEvent::Disbursed { value_date, .. } | LoanEvent::Repaid { value_date, .. } => {
                *value_date
            }
        }
    }
}

impl LoanState {
    /// The state a `Created` event starts.
    pub fn new(terms: LoanTerms, seq: u64) -> Self {
        LoanState {
            last_value_date: terms.contract_date,
            terms,
            status: LoanStatus::Contracted,
            disbursed_fen: Fen::ZERO,
            principal_outstanding_fen: Fen::ZERO,
            principal_repaid_fen: Fen::ZERO,
            interest_paid_fen: Fen::ZERO,
            disbursed_on: None,
            last_seq: seq,
        }
    }

    /// Applies an accepted event. Events were checked by a `plan_*` function before they were
    /// recorded, so arithmetic cannot overflow here; a failure means the journal is corrupt and is
    /// reported as such by the caller.
    pub fn apply(&mut self, event: &LoanEvent, seq: u64) -> Result<(), DomainError> {
        let overflow = |field: &str| DomainError::Overflow { field: field.to_string() };
        match event {
            LoanEvent::Created { .. } => {
                return Err(DomainError::Exists { what: "loan", id: self.terms.loan_id.clone() });
            }
            LoanEvent::Disbursed { value_date, amount_fen, .. } => {
                self.disbursed_fen = self
                    .disbursed_fen
                    .checked_add(*amount_fen)
                    .ok_or_else(|| overflow("disbursed_fen"))?;
                self.principal_outstanding_fen = self
                    .principal_outstanding_fen
                    .checked_add(*amount_fen)
                    .ok_or_else(|| overflow("principal_outstanding_fen"))?;
                self.disbursed_on.get_or_insert(*value_date);
                self.status = LoanStatus::Active;
                self.last_value_date = *value_date;
            }
            LoanEvent::Repaid { value_date, principal_fen, interest_fen, .. } => {
                self.principal_outstanding_fen = self
                    .principal_outstanding_fen
                    .checked_sub(*principal_fen)
                    .ok_or_else(|| overflow("principal_outstanding_fen"))?;
                self.principal_repaid_fen = self
                    .principal_repaid_fen
                    .checked_add(*principal_fen)
                    .ok_or_else(|| overflow("principal_repaid_fen"))?;
                self.interest_paid_fen = self
                    .interest_paid_fen
                    .checked_add(*interest_fen)
                    .ok_or_else(|| overflow("interest_paid_fen"))?;
                if self.principal_outstanding_fen == Fen::ZERO {
                    self.status = LoanStatus::Settled;
                }
                self.last_value_date = *value_date;
            }
        }
        self.last_seq = seq;
        Ok(())
    }
}

/// What origination needs to know besides the terms.
#[derive(Debug, Clone)]
pub struct OriginationContext<'a> {
    pub bank_ledger_id: &'a str,
    pub household_ledger_id: &'a str,
    /// The household's status series, in recording order.
    pub household_statuses: &'a [StatusEntry],
    /// The policy version in force on the contract date, if any.
    pub policy: Option<&'a PolicyParams>,
    /// The LPR of the contract's tenor bucket in force on the contract date, if any.
    pub lpr_cap: Option<AnnualRate>,
    /// Contract principal of the household's open programme loans (renewals and extensions of
    /// a loan count once).
    pub household_open_principal: Fen,
}

/// Checks a new contract against the programme rules in force on its contract date.
pub fn plan_origination(
    terms: &LoanTerms,
    ctx: &OriginationContext<'_>,
) -> Result<LoanEvent, DomainError> {
    let date = format_date(terms.contract_date);
    if ctx.bank_ledger_id != ctx.household_ledger_id {
        return Err(DomainError::refused(
            Reason::LedgerMismatch,
            format!(
                "bank {} keeps books in ledger {} but household {} is registered in ledger {}",
                terms.bank_id, ctx.bank_ledger_id, terms.household_id, ctx.household_ledger_id
            ),
        ));
    }
    if !terms.collateral_free || !terms.guarantee_free {
        return Err(DomainError::refused(
            Reason::NotCollateralFree,
            "a programme loan must be collateral-free and guarantee-free",
        ));
    }
    let policy = ctx.policy.ok_or_else(|| {
        DomainError::refused(
            Reason::PolicyNotInForce,
            format!("no programme policy is in force in ledger {} on {date}", ctx.bank_ledger_id),
        )
    })?;
    if terms.term_months > policy.term_months_max {
        return Err(DomainError::refused(
            Reason::TermTooLong,
            format!(
                "term of {} months exceeds the policy maximum of {} months",
                terms.term_months, policy.term_months_max
            ),
        )
        .with("term_months_max", policy.term_months_max));
    }
    let age = age_on(terms.borrower_birth_date, terms.contract_date);
    if age < policy.borrower_age_min as i32 || age > policy.borrower_age_max as i32 {
        return Err(DomainError::refused(
            Reason::BorrowerAgeOutOfRange,
            format!(
                "borrower is {age} on {date}; the policy allows {} to {}",
                policy.borrower_age_min, policy.borrower_age_max
            ),
        )
        .with("age", age));
    }
    match status_on(ctx.household_statuses, terms.contract_date) {
        Some(status) if policy.eligible_statuses.contains(&status) => {}
        status => {
            let shown = status.map_or("unregistered", |s| s.as_str());
            return Err(DomainError::refused(
                Reason::HouseholdNotEligible,
                format!(
                    "household {} is {shown} on {date}, which the policy does not lend to",
                    terms.household_id
                ),
            )
            .with("household_status", shown));
        }
    }
    let cap = ctx.lpr_cap.ok_or_else(|| {
        DomainError::refused(
            Reason::LprNotInForce,
            format!("no LPR for a {}-month term is in force on {date}", terms.term_months),
        )
    })?;
    if terms.annual_rate > cap {
        return Err(DomainError::refused(
            Reason::RateAboveLprCap,
            format!("rate {} exceeds the LPR cap {cap} in force on {date}", terms.annual_rate),
        )
        .with("lpr_cap", cap));
    }
    let after = ctx
        .household_open_principal
        .checked_add(terms.principal_fen)
        .ok_or_else(|| DomainError::Overflow { field: "principal_fen".into() })?;
    let household_cap = policy.household_cap();
    if after > household_cap {
        let room = household_cap
            .checked_sub(ctx.household_open_principal)
            .unwrap_or(Fen::ZERO)
            .max(Fen::ZERO);
        return Err(DomainError::refused(
            Reason::HouseholdCapExceeded,
            format!(
                "household {} would owe {after} yuan of programme principal, over the cap of {household_cap}; at most {room} more may be lent",
                terms.household_id
            ),
        )
        .with("household_open_principal_fen", ctx.household_open_principal.0)
        .with("available_fen", room.0));
    }
    Ok(LoanEvent::Created { terms: terms.clone() })
}

fn check_value_date(state: &LoanState, date: BusinessDate) -> Result<(), DomainError> {
    if date < state.last_value_date {
        return Err(DomainError::refused(
            Reason::ValueDateOutOfRange,
            format!(
                "value date {} is before the loan's last recorded event on {}",
                format_date(date),
                format_date(state.last_value_date)
            ),
        ));
    }
    Ok(())
}

/// Checks a disbursement; `amount` `None` pays out all that is left of the principal.
pub fn plan_disbursement(
    state: &LoanState,
    value_date: BusinessDate,
    amount: Option<Fen>,
) -> Result<LoanEvent, DomainError> {
    if !matches!(state.status, LoanStatus::Contracted | LoanStatus::Active) {
        return Err(DomainError::refused(
            Reason::LoanNotDisbursable,
            format!(
                "loan {} is {} and cannot be disbursed",
                state.terms.loan_id,
                state.status.as_str()
            ),
        ));
    }
    check_value_date(state, value_date)?;
    if value_date >= state.terms.maturity_date {
        return Err(DomainError::refused(
            Reason::ValueDateOutOfRange,
            format!(
                "value date {} is not before the maturity date {}",
                format_date(value_date),
                format_date(state.terms.maturity_date)
            ),
        ));
    }
    let left = state
        .terms
        .principal_fen
        .checked_sub(state.disbursed_fen)
        .ok_or_else(|| DomainError::Overflow { field: "amount_fen".into() })?;
    let amount = amount.unwrap_or(left);
    if amount > left || left == Fen::ZERO {
        return Err(DomainError::refused(
            Reason::OverDisbursement,
            format!("only {left} yuan of the contract principal is left to disburse"),
        )
        .with("undisbursed_fen", left.0));
    }
    Ok(LoanEvent::Disbursed {
        loan_id: state.terms.loan_id.clone(),
        value_date,
        amount_fen: amount,
    })
}

/// Checks a repayment with the principal / interest split the bank states.
pub fn plan_repayment(
    state: &LoanState,
    value_date: BusinessDate,
    principal: Fen,
    interest: Fen,
) -> Result<LoanEvent, DomainError> {
    if !matches!(state.status, LoanStatus::Active | LoanStatus::Overdue | LoanStatus::Overdue90) {
        return Err(DomainError::refused(
            Reason::LoanNotRepayable,
            format!(
                "loan {} is {} and takes no repayment",
                state.terms.loan_id,
                state.status.as_str()
            ),
        ));
    }
    check_value_date(state, value_date)?;
    if principal > state.principal_outstanding_fen {
        return Err(DomainError::refused(
            Reason::RepaymentExceedsOutstanding,
            format!(
                "principal {principal} exceeds the outstanding principal {}",
                state.principal_outstanding_fen
            ),
        )
        .with("principal_outstanding_fen", state.principal_outstanding_fen.0));
    }
    Ok(LoanEvent::Repaid {
        loan_id: state.terms.loan_id.clone(),
        value_date,
        principal_fen: principal,
        interest_fen: interest,
    })
}
