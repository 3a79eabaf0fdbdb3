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

use std::ops::RangeInclusive;

use rust_decimal::Decimal;

use super::error::AppError;
use super::servicing::loan_events;
use crate::domain::date::BusinessDate;
use crate::domain::loan::{LoanEvent, LoanState, LoanTerms};
use crate::domain::money::Fen;
use crate::domain::policy::{PolicyVersion, in_force};
use crate::domain::subsidy::{RatioStep, RatioTable, SubsidyPolicy};
use crate::domain::subsidy_register::{RegisterLine, register};
use crate::store::Db;
use crate::store::read::{LoanFilter, LoanHistory};

/// A loan's register and what it was computed under.
#[derive(Debug)]
pub struct LoanSubsidy {
    pub terms: LoanTerms,
    /// The household's township and village, as registered.
    pub township: String,
    pub village: String,
    pub policy: SubsidyPolicy,
    pub misused: bool,
    pub lines: Vec<RegisterLine>,
}

/// Loans read per page of a ledger's register.
pub const REGISTER_PAGE_LOANS: u32 = 500;

/// The registers of a ledger's loans (of one bank's, if given), in loan id order, each with
/// only its lines due within a range (loans with none left out), read a page of loans at a
/// time (their histories one by one): memory stays bounded whatever the size of the ledger.
pub struct LedgerRegisters {
    versions: Vec<PolicyVersion>,
    filter: LoanFilter,
    due: RangeInclusive<BusinessDate>,
    as_of: BusinessDate,
    done: bool,
}

impl LedgerRegisters {
    pub async fn open(
        db: &Db,
        ledger_id: &str,
        bank_id: Option<&str>,
        due: RangeInclusive<BusinessDate>,
        as_of: BusinessDate,
    ) -> Result<Self, AppError> {
        let filter = LoanFilter {
            ledger_id: Some(ledger_id.to_string()),
            bank_id: bank_id.map(str::to_string),
            ..LoanFilter::default()
        };
        let versions = db.list_policies(ledger_id).await?;
        Ok(LedgerRegisters { versions, filter, due, as_of, done: false })
    }

    /// The registers of the next page of loans (perhaps none of them with a line in range),
    /// or `None` once every loan has been read.
    pub async fn next_page(&mut self, db: &Db) -> Result<Option<Vec<LoanSubsidy>>, AppError> {
        if self.done {
            return Ok(None);
        }
        let page = db.list_loans(&self.filter, REGISTER_PAGE_LOANS).await?;
        self.done = page.len() < REGISTER_PAGE_LOANS as usize;
        self.filter.after_loan_id = page.last().map(|l| l.terms.loan_id.clone());
        // A loan contracted after the date has no line by then.
        let loans: Vec<&LoanState> =
            page.iter().filter(|l| l.terms.contract_date <= self.as_of).collect();
        let households: Vec<&str> = loans.iter().map(|l| l.terms.household_id.as_str()).collect();
        let places = db.household_places(&households).await?;
        let mut registers = Vec::new();
        for loan in loans {
            let loan_id = &loan.terms.loan_id;
            let Some(history) = db.loan_history(loan_id).await? else { continue };
            let mut register = compute(loan_id, history, &self.versions, self.as_of)?;
            register.lines.retain(|l| self.due.contains(&l.due_date));
            if !register.lines.is_empty() {
                // (A household may have several loans on the page: each takes a copy.)
                let place = places.get(&register.terms.household_id).cloned();
                (register.township, register.village) = place.unwrap_or_default();
                registers.push(register);
            }
        }
        Ok(Some(registers))
    }
}

/// The register of the loan whose history is `history`, as of `as_of`.
pub async fn loan_subsidy(
    db: &Db,
    loan_id: &str,
    history: LoanHistory,
    as_of: BusinessDate,
) -> Result<LoanSubsidy, AppError> {
    let versions = db.list_policies(&history.ledger_id).await?;
    let mut register = compute(loan_id, history, &versions, as_of)?;
    let household = register.terms.household_id.as_str();
    let place = db.household_places(&[household]).await?.remove(household);
    (register.township, register.village) = place.unwrap_or_default();
    Ok(register)
}

/// The register of a loan, its ledger's policy versions read (its household's place left
/// empty).
fn compute(
    loan_id: &str,
    history: LoanHistory,
    versions: &[PolicyVersion],
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
    let policy = subsidy_policy(versions, &terms).map_err(|e| {
        AppError::Internal(format!("policy of ledger {ledger_id} for loan {loan_id}: {e}"))
    })?;
    let misused = events
        .iter()
        .any(|e| matches!(e, LoanEvent::MisuseMarked { .. }) && e.value_date() <= as_of);
    let lines = register(&events, terms.annual_rate, terms.grace_days, &policy, as_of)
        .map_err(|e| AppError::Internal(format!("journal of loan {loan_id}: {e}")))?;
    Ok(LoanSubsidy {
        terms,
        township: String::new(),
        village: String::new(),
        policy,
        misused,
        lines,
    })
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
