//! The risk-compensation fund's commands ([`crate::domain::risk_fund`]) planned in the writer,
//! and the lending limits a ledger's fund puts on its new contracts.
//!
//! The fund's commands are never planned ahead of a commit (they name no loan to
//! [`Command::loan_id`], so [`Writer::may_speculate`] declines them): each reads the fund, and
//! a compensation or a return its loan's compensation, in the group's transaction, where an
//! earlier command of the group has written its own ([`Writer::apply`]).
//!
//! A contract in a ledger with a fund needs the ledger's exposure on its date: every live
//! loan's standing that day, 20 µs a loan (0.33 s at 20,000 loans in the bench), too dear for
//! each write of a contract on the writer's path. The writer keeps each live loan's part by
//! (ledger, date) across writes ([`ExposureCache`], a few dates at most): read whole once, and
//! then, as writes land, only the loans they changed worked out again (marked at
//! [`Writer::keep_loans`], the one place committed loan states pass, recomputed from the
//! writer's cache of loan states at the next contract; read whole again when one is no longer
//! there, and after a failure, when the writer forgets what it believes committed). Within a
//! write, the loans it has changed by then (its own contracts among them) count as it left
//! them.

use super::plan::check_bank;
use super::rules::latest_contract_date;
use super::{Effect, Envelope, Group, Planned, Writer};
use crate::app::auth::Principal;
use crate::app::command::Command;
use crate::app::error::AppError;
use crate::collections::{HashMap, HashSet};
use crate::domain::date::BusinessDate;
use crate::domain::date::format_date;
use crate::domain::error::DomainError;
use crate::domain::event::JournalEvent;
use crate::domain::loan::{LoanState, LoanTerms};
use crate::domain::money::Fen;
use crate::domain::policy::LendingLimits;
use crate::domain::risk_fund::{
    Compensation, Exposure, Fund, FundEvent, check_lending, check_leverage, check_suspension,
};
use crate::ledger::fund_postings::fund_postings;
use crate::store::write::WriteTx;

/// What a group's contracts read of their ledgers' funds: each ledger's fund (`None`: it has
/// none). A fund the group changes is read again ([`FundLimits::forget`]).
#[derive(Default)]
pub(super) struct FundLimits {
    funds: HashMap<String, Option<Fund>>,
}

impl FundLimits {
    pub(super) fn forget(&mut self, ledger_id: &str) {
        self.funds.remove(ledger_id);
    }
}

/// (Ledger, date) pairs whose exposure the writer keeps, at most: a contract's date is most
/// often the day's, and one county's contracts come in a season.
const EXPOSURES_KEPT: usize = 4;

/// Committed loans' parts of their ledgers' exposures, by (ledger, date), the oldest first.
#[derive(Default)]
pub(super) struct ExposureCache {
    entries: Vec<StoredExposure>,
}

struct StoredExposure {
    ledger_id: String,
    date: BusinessDate,
    by_loan: HashMap<String, Exposure>,
    /// The renewals among them: the id of the loan each renews.
    renews: HashMap<String, String>,
    total: Exposure,
    /// Loans whose committed state has changed since their part was worked out.
    dirty: HashSet<String>,
}

impl StoredExposure {
    /// The exposure with `changed` (loans of the ledger a write has changed, not landed yet)
    /// counted as they are, a loan and its renewals not paid out yet counted once; and those
    /// renewals' undrawn principal by the loan they renew ([`Exposure::count_renewals_once`]).
    fn with(
        &self,
        changed: &[&LoanState],
        date: BusinessDate,
    ) -> (Exposure, HashMap<String, i128>) {
        let mut exposure = self.total;
        let mut parts: HashMap<&str, Exposure> = HashMap::default();
        for loan in changed {
            if let Some(part) = self.by_loan.get(&loan.terms.loan_id) {
                exposure.remove(part);
            }
            let part = Exposure::of_loan(loan, date);
            exposure.add(&part);
            parts.insert(loan.terms.loan_id.as_str(), part);
        }
        let renewals = self
            .renews
            .iter()
            .filter(|(renewal, _)| !parts.contains_key(renewal.as_str()))
            .map(|(renewal, parent)| (renewal.as_str(), parent.as_str()))
            .chain(changed.iter().filter_map(|l| {
                Some((l.terms.loan_id.as_str(), l.terms.renews_loan_id.as_deref()?))
            }));
        let part_of = |id: &str| parts.get(id).or_else(|| self.by_loan.get(id)).copied();
        let waiting = exposure.count_renewals_once(renewals, part_of);
        (
            exposure,
            waiting.into_iter().map(|(parent, undrawn)| (parent.to_string(), undrawn)).collect(),
        )
    }

    /// Keeps `loan`'s part, and the loan it renews while it is open.
    fn put(&mut self, loan: &LoanState, part: Exposure) {
        let id = &loan.terms.loan_id;
        self.total.add(&part);
        self.by_loan.insert(id.clone(), part);
        // A closed renewal lends nothing: no longer kept among them.
        match &loan.terms.renews_loan_id {
            Some(parent) if loan.status.is_open() => self.renews.insert(id.clone(), parent.clone()),
            _ => self.renews.remove(id),
        };
    }
}

impl ExposureCache {
    /// Marks the parts of `loans`, whose states have just landed (or were read), to be worked
    /// out again.
    pub(super) fn landed<'a>(&mut self, loans: impl IntoIterator<Item = &'a LoanState>) {
        for loan in loans {
            for e in self.entries.iter_mut().filter(|e| e.ledger_id == loan.terms.ledger_id) {
                e.dirty.insert(loan.terms.loan_id.clone());
            }
        }
    }

    pub(super) fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub(super) fn clear(&mut self) {
        self.entries.clear();
    }

    /// The entry of (`ledger_id`, `date`) brought up to date from `committed` (the writer's
    /// loan states), or `None`: there is none, or a loan it must work out again is not there.
    fn fresh(
        &mut self,
        ledger_id: &str,
        date: BusinessDate,
        committed: &HashMap<String, LoanState>,
    ) -> Option<&StoredExposure> {
        let at = self.entries.iter().position(|e| e.ledger_id == ledger_id && e.date == date)?;
        let e = &mut self.entries[at];
        if e.dirty.iter().any(|id| !committed.contains_key(id)) {
            self.entries.remove(at);
            return None;
        }
        for id in std::mem::take(&mut e.dirty) {
            if let Some(old) = e.by_loan.remove(&id) {
                e.total.remove(&old);
            }
            let loan = &committed[&id];
            e.put(loan, Exposure::of_loan(loan, date));
        }
        Some(&self.entries[at])
    }

    /// Keeps the exposure of `ledger_id` on `date` of its live `loans` as stored.
    fn keep(&mut self, ledger_id: &str, date: BusinessDate, loans: &[LoanState]) {
        let mut e = StoredExposure {
            ledger_id: ledger_id.to_string(),
            date,
            by_loan: HashMap::default(),
            renews: HashMap::default(),
            total: Exposure::default(),
            dirty: HashSet::default(),
        };
        for loan in loans {
            e.put(loan, Exposure::of_loan(loan, date));
        }
        self.entries.retain(|x| !(x.ledger_id == ledger_id && x.date == date));
        if self.entries.len() >= EXPOSURES_KEPT {
            self.entries.remove(0);
        }
        self.entries.push(e);
    }
}

impl Writer {
    /// Plans a fund command: [`Command::OpenRiskFund`], [`Command::DepositRiskFund`],
    /// [`Command::CompensateLoan`] (the bank's claim), [`Command::PayCompensation`] (the
    /// finance office's payment of it) or [`Command::ReturnRecovery`].
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
        let mut compensated = None;
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
                return planned(fund, event, true, None, None);
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
                let event = fund.claim(&loan, *value_date, existing.as_ref())?;
                compensated = Some(Box::new(loan.compensated(*value_date, true)));
                (fund, event, existing)
            }
            Command::PayCompensation { loan_id, value_date, voucher } => {
                let (loan, fund, compensation) = self.office_claim(tx, g, actor, loan_id).await?;
                let repaid = loan.principal_repaid_fen;
                let event = fund.pay(&compensation, repaid, *value_date, voucher)?;
                compensated = Some(Box::new(loan.claim_paid()));
                (fund, event, Some(compensation))
            }
            Command::RejectCompensation { loan_id, value_date, reason } => {
                let (loan, fund, compensation) = self.office_claim(tx, g, actor, loan_id).await?;
                let event = fund.reject(&compensation, *value_date, reason)?;
                compensated = Some(Box::new(loan.claim_rejected()));
                (fund, event, Some(compensation))
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
        planned(after, event, false, changed, compensated)
    }

    /// The loan `loan_id`, its ledger's fund and its claim, for the finance office's payment
    /// or rejection of the claim: another ledger's loan is answered as a missing one, in the
    /// same words; a loan without a claim, `NOT_FOUND`.
    async fn office_claim(
        &self,
        tx: &mut WriteTx,
        g: &mut Group,
        actor: &Principal,
        loan_id: &str,
    ) -> Result<(LoanState, Fund, Compensation), AppError> {
        let loan = self.loan(tx, g, loan_id).await?.into_owned();
        let ledger_id = &loan.terms.ledger_id;
        if !actor.administers_ledger(ledger_id) {
            return Err(DomainError::NotFound { what: "loan", id: loan_id.to_string() }.into());
        }
        let fund = tx.risk_fund(ledger_id).await?.ok_or_else(|| missing_fund(ledger_id))?;
        let compensation = tx.compensation(loan_id).await?.ok_or_else(|| {
            DomainError::NotFound { what: "claimed compensation of loan", id: loan_id.to_string() }
        })?;
        Ok((loan, fund, compensation))
    }

    /// Whether the risk fund of `ledger_id`, if it has one, lets it contract `terms`
    /// ([`check_lending`] on the contract date; and, for a contract dated back, the
    /// suspension judged again on the day the group records it, [`check_suspension`]).
    pub(super) async fn check_fund_limits(
        &self,
        tx: &mut WriteTx,
        g: &mut Group,
        ledger_id: &str,
        terms: &LoanTerms,
    ) -> Result<(), AppError> {
        let Some(fund) = fund_of(tx, g, ledger_id).await? else { return Ok(()) };
        let date = terms.contract_date;
        let (exposure, waiting) = self.exposure_on(tx, g, ledger_id, date).await?;
        let renews = match &terms.renews_loan_id {
            Some(parent_id) => Some(self.loan(tx, g, parent_id).await?.into_owned()),
            None => None,
        };
        // What the loan renewed has lent to its other renewals not paid out yet.
        let taken = |parent: &LoanState| waiting.get(&parent.terms.loan_id).copied().unwrap_or(0);
        let renews = renews.as_ref().map(|parent| (parent, taken(parent)));
        let policies = g.registry.policies(tx, ledger_id).await?;
        let limits = LendingLimits::on(&policies, date);
        check_lending(&fund, &exposure, terms.principal_fen, date, renews, limits)?;
        if date < g.recorded_on {
            let today = g.recorded_on;
            let (now, _) = self.exposure_on(tx, g, ledger_id, today).await?;
            check_suspension(&fund, &now, today, LendingLimits::on(&policies, today))?;
        }
        Ok(())
    }

    /// Whether the risk fund of `loan`'s ledger, if it has one, lets it pay out `amount` of a
    /// contract whose maturity has passed by the latest contract date the group takes, dated
    /// back before that maturity, with nothing paid out before ([`paid_out_dated_back`]) or
    /// some ([`draws_past_its_count`]): what was not paid out stopped counting against the
    /// leverage limit at the maturity, so its payout is new lending, checked
    /// ([`check_leverage`]) on top of the ledger's loans as they stand on that latest date.
    ///
    /// [`paid_out_dated_back`]: super::rules::paid_out_dated_back
    /// [`draws_past_its_count`]: super::rules::draws_past_its_count
    pub(super) async fn check_payout_limits(
        &self,
        tx: &mut WriteTx,
        g: &mut Group,
        loan: &LoanState,
        amount: Fen,
        value_date: BusinessDate,
    ) -> Result<(), AppError> {
        let ledger_id = &loan.terms.ledger_id;
        let Some(fund) = fund_of(tx, g, ledger_id).await? else { return Ok(()) };
        let latest = latest_contract_date(g);
        let (now, waiting) = self.exposure_on(tx, g, ledger_id, latest).await?;
        // What its renewals not paid out yet have undrawn counts already: the payout and
        // they are one lending, as the renewals and any loan they renew.
        let taken = waiting.get(&loan.terms.loan_id).copied().unwrap_or(0);
        let adds = Fen(amount.0.saturating_sub(i64::try_from(taken).unwrap_or(i64::MAX)).max(0));
        let maturity = loan.payable_until();
        let what = format!(
            "paying out {} fen of loan {} dated {}, before its maturity ({}), which passed \
             with {} fen not paid out and ended its count as lending,",
            amount.0,
            loan.terms.loan_id,
            format_date(value_date),
            format_date(maturity),
            loan.terms.principal_fen.0.saturating_sub(loan.disbursed_fen.0)
        );
        // Not judged against today's suspension as a contract dated back is: the payout of a
        // contract agreed before it records money lent then, and a suspension stops new
        // contracts, not the payouts of those agreed (the suspension this test would judge is
        // today's, made by loans perhaps paid out after this one).
        let limits = LendingLimits::on(&g.registry.policies(tx, ledger_id).await?, latest);
        check_leverage(&fund, &now, adds, &what, limits)?;
        Ok(())
    }

    /// The exposure of `ledger_id`'s live loans on `date`, as stored but for those the group
    /// has changed, counted as it left them ([`ExposureCache`]), with the undrawn principal of
    /// the renewals not paid out yet by the loan they renew ([`StoredExposure::with`]).
    async fn exposure_on(
        &self,
        tx: &mut WriteTx,
        g: &Group,
        ledger_id: &str,
        date: BusinessDate,
    ) -> Result<(Exposure, HashMap<String, i128>), AppError> {
        // The loans the group has changed by now count as it left them.
        let changed: Vec<&LoanState> = g
            .changed
            .iter()
            .filter_map(|id| g.loans.get(id))
            .filter(|l| l.terms.ledger_id == ledger_id)
            .collect();
        let cached = self
            .exposures
            .lock()
            .map_err(poisoned)?
            .fresh(ledger_id, date, &self.loans)
            .map(|e| e.with(&changed, date));
        if let Some(exposure) = cached {
            return Ok(exposure);
        }
        let loans = tx.live_loans_of_ledger(ledger_id).await?;
        let mut cache = self.exposures.lock().map_err(poisoned)?;
        cache.keep(ledger_id, date, &loans);
        let kept = cache.fresh(ledger_id, date, &self.loans);
        kept.map(|e| e.with(&changed, date))
            .ok_or_else(|| AppError::Internal("an exposure kept is not found".into()))
    }
}

/// A ledger without a risk fund, as the fund's commands are refused for it.
fn missing_fund(ledger_id: &str) -> DomainError {
    DomainError::NotFound { what: "risk fund", id: ledger_id.to_string() }
}

/// The fund of `ledger_id` as the group sees it (`None`: it has none): read once a group, and
/// again after the group changes it ([`FundLimits::forget`]).
async fn fund_of(
    tx: &mut WriteTx,
    g: &mut Group,
    ledger_id: &str,
) -> Result<Option<Fund>, AppError> {
    if let Some(fund) = g.funds.funds.get(ledger_id) {
        return Ok(fund.clone());
    }
    let fund = tx.risk_fund(ledger_id).await?;
    g.funds.funds.insert(ledger_id.to_string(), fund.clone());
    Ok(fund)
}

fn poisoned<T>(_: std::sync::PoisonError<T>) -> AppError {
    AppError::Internal("the writer's exposure cache was poisoned".into())
}

/// The plan of a fund event: its postings, the fund and compensation after it, and the loan
/// a compensation marks.
fn planned(
    fund: Fund,
    event: FundEvent,
    opened: bool,
    compensation: Option<crate::domain::risk_fund::Compensation>,
    compensated: Option<Box<LoanState>>,
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
            compensated,
        },
    })
}
