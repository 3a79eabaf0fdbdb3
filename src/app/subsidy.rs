//! Subsidy queries: a loan's subsidy register (贴息台账), recomputed from its journal and its
//! ledger's policy versions. [`crate::domain::subsidy_register`] has the model; this reads its
//! inputs:
//! - the loan's events, from its contract on, as the journal holds them;
//! - the policy: the household cap and the cap rate of the version in force on the contract
//!   date (a version without a cap rate caps at the LPR of the loan's tenor bucket, which
//!   origination held the contract rate within: the contract's rate is then the cap), and the
//!   subsidy ratio of every version, each from its effective date on (by accrual date).
//!
//! Nothing is recorded: the same question asked again gets the same answer, whoever asks.

use rust_decimal::Decimal;

use super::error::AppError;
use super::servicing::loan_events;
use crate::domain::date::BusinessDate;
use crate::domain::loan::{LoanEvent, LoanTerms};
use crate::domain::money::Fen;
use crate::domain::policy::{PolicyVersion, in_force};
use crate::domain::subsidy::{RatioStep, RatioTable, SubsidyPolicy};
use crate::domain::subsidy_register::{RegisterLine, register};
use crate::store::Db;
use crate::store::read::LoanHistory;

/// A loan's register and what it was computed under.
#[derive(Debug)]
pub struct LoanSubsidy {
    pub terms: LoanTerms,
    pub policy: SubsidyPolicy,
    pub misused: bool,
    pub lines: Vec<RegisterLine>,
}

/// The register of the loan whose history is `history`, as of `as_of`.
pub async fn loan_subsidy(
    db: &Db,
    loan_id: &str,
    history: LoanHistory,
    as_of: BusinessDate,
) -> Result<LoanSubsidy, AppError> {
    let ledger_id = history.ledger_id.clone();
    let events: Vec<LoanEvent> =
        loan_events(loan_id, history)?.into_iter().map(|(e, _)| e).collect();
    let Some(LoanEvent::Created { terms }) = events.first() else {
        return Err(AppError::Internal(format!(
            "journal of loan {loan_id} starts without a contract"
        )));
    };
    let terms = terms.clone();
    let versions = db.list_policies(&ledger_id).await?;
    let policy = subsidy_policy(&versions, &terms).map_err(|e| {
        AppError::Internal(format!("policy of ledger {ledger_id} for loan {loan_id}: {e}"))
    })?;
    let misused = events
        .iter()
        .any(|e| matches!(e, LoanEvent::MisuseMarked { .. }) && e.value_date() <= as_of);
    let lines = register(&events, terms.annual_rate, terms.grace_days, &policy, as_of)
        .map_err(|e| AppError::Internal(format!("journal of loan {loan_id}: {e}")))?;
    Ok(LoanSubsidy { terms, policy, misused, lines })
}

/// The subsidy figures a loan is computed under (see the module doc).
pub fn subsidy_policy(
    versions: &[PolicyVersion],
    terms: &LoanTerms,
) -> Result<SubsidyPolicy, String> {
    let at_contract = in_force(versions, terms.contract_date).ok_or_else(|| {
        format!("no version is in force on the contract date {}", terms.contract_date)
    })?;
    let mut dates: Vec<BusinessDate> = versions.iter().map(|v| v.effective_date).collect();
    dates.sort();
    dates.dedup();
    let steps = dates
        .into_iter()
        .filter_map(|date| {
            let ratio = in_force(versions, date)?.params.subsidy_ratio;
            Some(RatioStep { effective_from: date, ratio })
        })
        .collect();
    let cap_rate: Decimal =
        at_contract.params.subsidy_cap_rate.map_or(terms.annual_rate.value(), |cap| cap.value());
    Ok(SubsidyPolicy {
        household_cap: Fen(at_contract.params.household_principal_cap_fen),
        cap_rate,
        ratios: RatioTable::new(steps).map_err(|e| e.to_string())?,
    })
}
