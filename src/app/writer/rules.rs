//! The registry rules a group's commands are checked against over the group's own view: a
//! household's and a borrower's loans as read for the group with the group's changes on top,
//! whether a loan counts against its household's cap on a date, and the refusal of a contract
//! that expired unpaid.

use super::Group;
use crate::app::error::AppError;
use crate::collections::HashMap;
use crate::domain::date::{BusinessDate, format_date};
use crate::domain::error::{DomainError, Reason};
use crate::domain::loan::{LoanState, LoanStatus};

/// The latest contract date a contract recorded in the group may have: tomorrow (value dates
/// are at most a day ahead of the business date, `api::parse::value_date`). A contract not
/// paid out whose maturity is later cannot have been passed by any contract yet.
pub(super) fn latest_contract_date(g: &Group) -> BusinessDate {
    g.recorded_on.succ_opt().unwrap_or(g.recorded_on)
}

/// A household's open loans as the group sees them: as read for the group (its contracts' and
/// its first disbursements' households, [`Writer::prefetch`](super::Writer::prefetch)) with the group's own changes on top.
pub(super) fn household_loans<'g>(
    g: &'g Group,
    household_id: &str,
) -> Result<HashMap<&'g str, &'g LoanState>, AppError> {
    let stored = g.open_loans.get(household_id).ok_or_else(|| {
        AppError::Internal(format!(
            "the open loans of household {household_id} were not read for its group"
        ))
    })?;
    Ok(with_the_groups_own(g, stored, |l| l.terms.household_id == household_id))
}

/// `stored`, loans read at a group's start, with the group's own states of the loans `theirs`
/// picks on top (its changes and its new loans).
pub(super) fn with_the_groups_own<'g>(
    g: &'g Group,
    stored: &'g [LoanState],
    theirs: impl Fn(&LoanState) -> bool,
) -> HashMap<&'g str, &'g LoanState> {
    let mut loans: HashMap<&str, &LoanState> =
        stored.iter().map(|l| (l.terms.loan_id.as_str(), l)).collect();
    for (id, l) in &g.loans {
        if theirs(l) {
            loans.insert(id.as_str(), l);
        }
    }
    loans
}

/// The programme loans of borrower `id_number` as the group sees them (open, or closed after
/// the earliest contract or value date of the group: [`Group::borrowers`]): as stored at its start with
/// the group's own loans on top.
pub(super) fn borrower_loans<'g>(
    g: &'g Group,
    id_number: &str,
) -> Result<HashMap<&'g str, &'g LoanState>, AppError> {
    let stored = g.borrowers.get(id_number).ok_or_else(|| {
        AppError::Internal("a borrower's open loans were not read for its group".into())
    })?;
    Ok(with_the_groups_own(g, stored, |l| l.terms.borrower_id_number == id_number))
}

/// The household other than the contract's (`terms`) that its borrower belongs to in
/// `ledger_id`, if any: one the borrower heads, or one they owed a loan of on the contract date
/// (open then, counted as the cap counts it: [`counts_on`]). A person belongs to one household, whose cap counts all
/// its members' loans.
pub(super) fn borrowers_other_household(
    g: &Group,
    ledger_id: &str,
    terms: &crate::domain::loan::LoanTerms,
) -> Result<Option<String>, AppError> {
    let (person, household) = (&terms.borrower_id_number, terms.household_id.as_str());
    if let Some(headed) = heads_other_household(g, ledger_id, person, household) {
        return Ok(Some(headed.clone()));
    }
    owes_for_other_household(g, ledger_id, person, Some(household), terms.contract_date)
}

/// A household of `ledger_id` that person `id_number` heads, if they head none of
/// `household_id` (a person who heads two, registered so before the one-head rule, belongs to
/// either): the first in household id order.
pub(super) fn heads_other_household<'g>(
    g: &'g Group,
    ledger_id: &str,
    id_number: &str,
    household_id: &str,
) -> Option<&'g String> {
    let key = (ledger_id.to_string(), id_number.to_string());
    g.headed.get(&key).filter(|h| !h.iter().any(|h| h == household_id)).and_then(|h| h.first())
}

/// The first household of `ledger_id` (in id order), other than `except`, that person
/// `id_number` owes a loan of on `date` as its borrower (counted as the cap counts it:
/// [`counts_on`]).
pub(super) fn owes_for_other_household(
    g: &Group,
    ledger_id: &str,
    id_number: &str,
    except: Option<&str>,
    date: BusinessDate,
) -> Result<Option<String>, AppError> {
    let mut others: Vec<&str> = borrower_loans(g, id_number)?
        .into_values()
        .filter(|l| l.terms.ledger_id == ledger_id)
        .filter(|l| except != Some(l.terms.household_id.as_str()))
        .filter(|l| counts_on(l, date))
        .map(|l| l.terms.household_id.as_str())
        .collect();
    others.sort_unstable();
    Ok(others.first().map(|h| h.to_string()))
}

/// Whether `loan` counts against its household's cap, and binds its borrower to its household,
/// for a contract dated `date`: open, or closed since by an event dated after `date` (it was open
/// on that day; closed on it, it bore no interest that day), unless a contract never paid out
/// whose maturity has come by `date`.
pub(super) fn counts_on(loan: &LoanState, date: BusinessDate) -> bool {
    (loan.status.is_open() || loan.lent_until() > date) && !loan.is_expired_contract(date)
}

/// Whether disbursing `loan` on `value_date` pays out, dated back, a contract whose maturity
/// has come by `today` (the latest contract date a group accepts): the value date on or after
/// the contract's and before its maturity (other dates are refused by the loan itself).
pub(super) fn paid_out_dated_back(
    loan: &LoanState,
    value_date: BusinessDate,
    today: BusinessDate,
) -> bool {
    loan.is_expired_contract(today)
        && !loan.is_expired_contract(value_date)
        && value_date >= loan.last_value_date
}

/// Whether disbursing `loan` on `value_date` draws, dated back before its maturity, principal
/// whose count as lending ended at that maturity, which has come by `today` (the latest contract
/// date a group accepts): the exposure on `today` no longer holds the undrawn rest
/// (`Exposure::of_loan`), so its payout is checked as new lending. A contract never paid out is
/// [`paid_out_dated_back`]'s; this is a loan paid out in part.
pub(super) fn draws_past_its_count(
    loan: &LoanState,
    value_date: BusinessDate,
    today: BusinessDate,
) -> bool {
    value_date < loan.payable_until() && loan.payable_until() <= today
}

/// Why `loan` lends on `date` or after it, if it does: paid out, and changed by an event dated
/// after `date` (repaid or closed since: it may have owed principal on that day); written off
/// with something not recovered; open with principal outstanding; or with principal it may
/// still pay out (before its maturity).
pub(super) fn still_lends(loan: &LoanState, date: BusinessDate) -> Option<String> {
    if loan.disbursed_fen.0 > 0 && loan.lent_until() > date {
        return Some(format!(
            "lent until {}, after {}",
            format_date(loan.lent_until()),
            format_date(date)
        ));
    }
    // Written off with something not recovered: the household still owes it, and a renewal
    // would roll a bad debt over (since 2026-12-07 the write-off let the renewal be paid out).
    if loan.status == LoanStatus::WrittenOff && loan.unrecovered_fen().is_positive() {
        return Some(format!("was written off with {} not recovered", loan.unrecovered_fen()));
    }
    if !loan.status.is_open() {
        return None;
    }
    if loan.principal_outstanding_fen.0 > 0 {
        return Some(format!("still owes {} of principal", loan.principal_outstanding_fen));
    }
    (loan.disbursed_fen < loan.terms.principal_fen && date < loan.payable_until())
        .then(|| "may still be paid out".to_string())
}

/// The refusal of the first disbursement of `loan`, a contract past its maturity, because
/// `later` was contracted since without it counting against the cap, by its household or by its
/// borrower for another household. Another bank's loan is named neither by its id nor by its
/// date: a bank never learns whether another bank's loan exists, or more of it than the rule
/// needs.
pub(super) fn expired_contract_refused(loan: &LoanState, later: &LoanState) -> AppError {
    let who = if later.terms.household_id == loan.terms.household_id {
        "its household".to_string()
    } else {
        format!("its borrower, for household {},", later.terms.household_id)
    };
    let what = if later.terms.bank_id == loan.terms.bank_id {
        format!("loan {} since ({})", later.terms.loan_id, format_date(later.terms.contract_date))
    } else {
        "a loan with another bank since".to_string()
    };
    DomainError::refused(
        Reason::LoanNotDisbursable,
        format!(
            "loan {} was not paid out by its maturity {}, and {who} has contracted {what} \
             without this contract counting against the cap: the contract has expired",
            loan.terms.loan_id,
            format_date(loan.terms.maturity_date),
        ),
    )
    .into()
}
