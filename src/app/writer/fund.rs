//! The risk-compensation fund's commands ([`crate::domain::risk_fund`]) planned in the writer,
//! and the lending limits a ledger's fund puts on its new contracts.
//!
//! The fund's commands are never planned ahead of a commit (they name no loan to
//! [`Command::loan_id`], so [`Writer::may_speculate`] declines them): each reads the fund, and
//! a compensation or a return its loan's compensation, in the group's transaction, where an
//! earlier command of the group has written its own ([`Writer::apply`]).
//!
//! A contract in a ledger with a fund reads, once a group and date, the ledger's live loans as
//! stored, and keeps each one's part of the exposure ([`FundLimits`]); the loans the group has
//! changed by then (its own contracts among them) count as the group left them.

use super::plan::check_bank;
use super::{Effect, Envelope, Group, Planned, Writer};
use crate::app::command::Command;
use crate::app::error::AppError;
use crate::collections::HashMap;
use crate::domain::date::BusinessDate;
use crate::domain::error::DomainError;
use crate::domain::event::JournalEvent;
use crate::domain::loan::{LoanState, LoanTerms};
use crate::domain::risk_fund::{Exposure, Fund, FundEvent, check_lending};
use crate::ledger::fund_postings::fund_postings;
use crate::store::write::WriteTx;

/// What a group's contracts read of their ledgers' funds: each ledger's fund (`None`: it has
/// none), and by (ledger, date) each stored live loan's part of the exposure that day with
/// their sum. A fund the group changes is read again ([`FundLimits::forget`]).
#[derive(Default)]
pub(super) struct FundLimits {
    funds: HashMap<String, Option<Fund>>,
    stored: HashMap<(String, BusinessDate), StoredExposure>,
}

#[derive(Default)]
struct StoredExposure {
    by_loan: HashMap<String, Exposure>,
    total: Exposure,
}

impl FundLimits {
    pub(super) fn forget(&mut self, ledger_id: &str) {
        self.funds.remove(ledger_id);
    }
}

impl Writer {
    /// Plans a fund command: [`Command::OpenRiskFund`], [`Command::DepositRiskFund`],
    /// [`Command::CompensateLoan`] or [`Command::ReturnRecovery`].
    pub(super) async fn plan_fund(
        &self,
        tx: &mut WriteTx,
        g: &mut Group,
        env: &Envelope,
    ) -> Result<Planned, AppError> {
        let actor = &env.actor;
        let office_only = |ledger_id: &str| -> Result<(), AppError> {
            if actor.administers_ledger(ledger_id) {
                Ok(())
            } else {
                Err(AppError::denied(format!(
                    "{} may not {}: the finance office of ledger {ledger_id} keeps its risk fund",
                    actor.actor(),
                    env.command.name()
                )))
            }
        };
        let missing_fund = |ledger_id: &str| DomainError::NotFound {
            what: "risk fund",
            id: ledger_id.to_string(),
        };
        let (fund, event, compensation) = match &env.command {
            Command::OpenRiskFund { ledger_id, opened_on, fund_share_percent } => {
                office_only(ledger_id)?;
                if !g.registry.ledger_exists(tx, ledger_id).await? {
                    return Err(
                        DomainError::NotFound { what: "ledger", id: ledger_id.clone() }.into()
                    );
                }
                if tx.risk_fund(ledger_id).await?.is_some() {
                    return Err(
                        DomainError::Exists { what: "risk fund", id: ledger_id.clone() }.into()
                    );
                }
                let event = Fund::open(ledger_id, *opened_on, *fund_share_percent)?;
                let fund = Fund::opened(&event)
                    .ok_or_else(|| AppError::Internal("an opening opened no fund".into()))?;
                return planned(fund, event, true, None);
            }
            Command::DepositRiskFund { ledger_id, value_date, source, amount_fen, voucher } => {
                office_only(ledger_id)?;
                let fund = tx.risk_fund(ledger_id).await?.ok_or_else(|| missing_fund(ledger_id))?;
                let event = fund.deposit(*value_date, *source, *amount_fen, voucher)?;
                (fund, event, None)
            }
            Command::CompensateLoan { loan_id, value_date } => {
                let loan = self.loan(tx, g, loan_id).await?;
                check_bank(actor, &loan)?;
                let ledger_id = &loan.terms.ledger_id;
                let fund = tx.risk_fund(ledger_id).await?.ok_or_else(|| missing_fund(ledger_id))?;
                let existing = tx.compensation(loan_id).await?;
                let event = fund.compensate(&loan, *value_date, existing.as_ref())?;
                (fund, event, existing)
            }
            Command::ReturnRecovery { loan_id, value_date } => {
                let loan = self.loan(tx, g, loan_id).await?;
                check_bank(actor, &loan)?;
                let ledger_id = &loan.terms.ledger_id;
                let fund = tx.risk_fund(ledger_id).await?.ok_or_else(|| missing_fund(ledger_id))?;
                let compensation = tx.compensation(loan_id).await?.ok_or_else(|| {
                    DomainError::NotFound { what: "compensation of loan", id: loan_id.clone() }
                })?;
                let event = fund.plan_return(&compensation, &loan, *value_date)?;
                (fund, event, Some(compensation))
            }
            other => {
                return Err(AppError::Internal(format!("{} is not a fund command", other.name())));
            }
        };
        let mut after = fund;
        let changed = after.apply(&event, compensation.as_ref())?;
        planned(after, event, false, changed)
    }

    /// Whether the risk fund of `ledger_id`, if it has one, lets it contract `terms`
    /// ([`check_lending`]): the exposure on the contract date of the ledger's live loans, as
    /// stored but for those the group has changed, counted as it left them.
    pub(super) async fn check_fund_limits(
        &self,
        tx: &mut WriteTx,
        g: &mut Group,
        ledger_id: &str,
        terms: &LoanTerms,
    ) -> Result<(), AppError> {
        let fund = match g.funds.funds.get(ledger_id) {
            Some(fund) => fund.clone(),
            None => {
                let fund = tx.risk_fund(ledger_id).await?;
                g.funds.funds.insert(ledger_id.to_string(), fund.clone());
                fund
            }
        };
        let Some(fund) = fund else { return Ok(()) };
        let date = terms.contract_date;
        let key = (ledger_id.to_string(), date);
        if !g.funds.stored.contains_key(&key) {
            let loans = tx.live_loans_of_ledger(ledger_id).await?;
            let mut stored = StoredExposure::default();
            for loan in &loans {
                let part = Exposure::of([loan], date);
                stored.total.add(&part);
                stored.by_loan.insert(loan.terms.loan_id.clone(), part);
            }
            g.funds.stored.insert(key.clone(), stored);
        }
        let stored = &g.funds.stored[&key];
        let mut exposure = stored.total;
        let changed: Vec<&LoanState> = g
            .changed
            .iter()
            .filter_map(|id| g.loans.get(id))
            .filter(|l| l.terms.ledger_id == ledger_id)
            .collect();
        for loan in changed {
            if let Some(part) = stored.by_loan.get(&loan.terms.loan_id) {
                exposure.remove(part);
            }
            exposure.add(&Exposure::of([loan], date));
        }
        check_lending(&fund, &exposure, terms.principal_fen, date)?;
        Ok(())
    }
}

/// The plan of a fund event: its postings, and the fund and compensation after it.
fn planned(
    fund: Fund,
    event: FundEvent,
    opened: bool,
    compensation: Option<crate::domain::risk_fund::Compensation>,
) -> Result<Planned, AppError> {
    let postings =
        fund_postings(&event).map_err(|e| AppError::Internal(format!("unbalanced plan: {e}")))?;
    Ok(Planned {
        ledger_id: fund.ledger_id.clone(),
        event: JournalEvent::RiskFund(event),
        postings,
        effect: Effect::Fund {
            fund: Box::new(fund),
            opened,
            compensation: compensation.map(Box::new),
        },
    })
}
