//! The risk-compensation fund (风险补偿金) of a county: the finance office's deposits, the
//! interest they earn, the compensation it pays a bank for a loan more than 90 days overdue,
//! the bank's share of the loss, the recoveries returned to it, and the two limits it puts on
//! new lending.
//!
//! The model.
//! - **A fund** ([`Fund`]) belongs to a ledger (a county), one at most, opened by the ledger's
//!   finance office with its **share** of each loss: 80% (fund:bank 80:20) or 70% (70:30),
//!   fixed for the fund's life ([`FUND_SHARES`]). Its balance is the money it holds: deposits
//!   plus interest, less compensation paid, plus recoveries returned. It never goes negative.
//! - **Deposits** ([`DepositSource::Deposit`], from the finance office's budget) and **interest
//!   earned** on the fund's account ([`DepositSource::Interest`]) add to the balance, each a
//!   positive amount in fen, dated on or after the fund's opening.
//! - **Compensation**, claimed by the loan's bank ([`Fund::claim`]) and paid by the finance
//!   office ([`Fund::pay`]): for a live loan more than its claim days overdue on the claim's
//!   date (90 by default: [`LoanTerms::claim_overdue_days`], its contract's policy; the
//!   loan's own count, the settlement points due by then included), once a loan. The **loss** is the principal outstanding that day (interest, penalty and compound
//!   interest are the bank's: the fund covers principal only); the fund's share of it, rounded
//!   half up to the fen, is assessed with the claim, which moves no money; the payment, not
//!   dated before the claim, pays it to the bank, once, and the bank bears the rest. The
//!   payment is refused when the balance does not cover the fund's part (`FUND_INSUFFICIENT`),
//!   and dated before the latest money the fund received ([`Fund::last_inflow_on`]): the
//!   balance is then the fund's on the payment's date and after, never below zero.
//!   (Before claims and payments were two, a compensation was one event,
//!   [`FundEvent::Compensated`], planned by [`Fund::compensate`]: replayed as paid.) The
//!   household still owes the bank everything: the loan's figures are not changed, and its
//!   later repayments, or its write-off, are recorded as ever, but none dated before the
//!   compensation ([`LoanState::compensated`]; a settlement alone may be, which changes
//!   neither the principal nor the days overdue the compensation counted): what it counted
//!   stands, and what the household pays from then on is recovered. The loan is marked from
//!   the claim on, and takes no payout more.
//! - **Rejection** ([`Fund::reject`], the finance office's, of a pending claim, with its
//!   reason, not dated before it): nothing moves; the fund's share is no longer held as
//!   pending, the loan is no longer marked ([`LoanState::claim_rejected`]: its later events
//!   are recorded as if it had never been claimed), and the bank may claim it again, which
//!   replaces the rejected claim as the loan's compensation (the journal keeps both). A paid
//!   claim is not rejected.
//! - **Recoveries** ([`Fund::plan_return`], asked by the bank, once the compensation is paid):
//!   what the bank recovers of a compensated loan's principal after the claim is shared as the
//!   loss was: the fund's
//!   share of the principal repaid since, rounded half up, up to what the fund paid, less what
//!   was returned before. Computed from the cumulative figure each time, so that returns made
//!   in any number of steps add up to the share of the total, never a fen more or less.
//!   Dated on or after the loan's last event (the repayments it counts are made by then).
//!   `NOTHING_TO_RETURN` when none is due.
//! - **Lending limits** ([`check_lending`], on each new contract of a ledger with a fund):
//!   - leverage ([`check_leverage`]): the ledger's programme loans outstanding, with the
//!     principal its contracts have not paid out yet (until their maturity) and the new
//!     contract's (a renewal's above what the loan it renews counts: the two are one
//!     lending; and for every contract, a loan and its renewals not paid out yet count once,
//!     [`Exposure::renewal_overlap_fen`]), at most the policy's leverage × the balance (`FUND_LEVERAGE_EXCEEDED`;
//!     [`PolicyParams::fund_leverage`], 10 by default): checked when
//!     a loan is contracted, so that its payouts, which cannot exceed it, need no check of
//!     their own; but for a contract whose maturity has passed unpaid, which stopped counting
//!     then: a payout of it dated back before its maturity is checked as new lending, the
//!     amount paid out on top of what the ledger's loans stand at now;
//!   - the non-performing ratio ([`check_suspension`]): principal of loans more than 90 days
//!     overdue over all principal outstanding; above the policy's limit
//!     ([`PolicyParams::npl_limit_basis_points`], 3% by default) lending is suspended
//!     (`LENDING_SUSPENDED`) until the ratio falls (repayments, write-offs). Judged as of the
//!     contract date, and for a contract dated back as of the day it is recorded too: while
//!     lending is suspended, no contract is recorded, whatever its date.
//!
//!   Each limit is the ledger's policy version in force on the day judged ([`LendingLimits`]:
//!   the contract date's, the recording day's for the second judgement of the suspension),
//!   as the other caps follow the contract date. A finance office raises or lowers them from a
//!   date with a version of its own; verify does not judge them again (a limit refuses a
//!   contract, it posts nothing).
//!
//!   A ledger without a fund has neither limit: the fund is the county's to open.
//!
//! Events ([`FundEvent`]), each one journal transaction of the fund's ledger:
//! `risk_fund.opened` (memo), `risk_fund.deposited`, `risk_fund.claimed` (memo),
//! `risk_fund.paid`, `risk_fund.rejected` (memo), `risk_fund.returned` and the one-step
//! `risk_fund.compensated` of the
//! entries before claims (postings: [`crate::ledger::fund_postings`]). The writer plans them
//! with [`Fund::open`], [`Fund::deposit`], [`Fund::claim`], [`Fund::pay`], [`Fund::reject`]
//! and [`Fund::plan_return`];
//! verify plans each again from its replayed loan and fund and compares, then applies it with
//! [`Fund::apply`], as the writer did.

use chrono::NaiveDate;
use serde::{Deserialize, Serialize};

use super::date::{format_date, iso, iso_opt};
use super::error::{DomainError, EARLIEST_DATE, Reason};
#[cfg(doc)]
use super::loan::LoanTerms;
use super::loan::{LoanState, LoanStatus};
use super::money::Fen;
use super::policy::LendingLimits;
#[cfg(doc)]
use super::policy::PolicyParams;

/// The fund's share of a loss, in percent: 80 (fund:bank 80:20) or 70 (70:30).
pub const FUND_SHARES: [u8; 2] = [80, 70];

/// Where a deposit's money comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DepositSource {
    /// The finance office's budget.
    Deposit,
    /// Interest earned on the fund's account.
    Interest,
}

impl DepositSource {
    pub fn as_str(self) -> &'static str {
        match self {
            DepositSource::Deposit => "deposit",
            DepositSource::Interest => "interest",
        }
    }
}

/// A ledger's fund as its events left it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Fund {
    pub ledger_id: String,
    #[serde(with = "iso")]
    pub opened_on: NaiveDate,
    pub fund_share_percent: u8,
    pub balance_fen: Fen,
    pub deposited_fen: Fen,
    pub interest_fen: Fen,
    pub compensated_fen: Fen,
    pub returned_fen: Fen,
    pub compensations: u64,
    /// The fund's shares of the claims not paid yet: money it holds but owes, which the
    /// lending limit does not count ([`Fund::lending_limit`]).
    #[serde(default, skip_serializing_if = "Fen::is_zero")]
    pub pending_fen: Fen,
    /// The latest value date of the money the fund received (deposits, interest, returns): a
    /// payment out of it is not dated before it ([`Fund::pay`]), so that the balance it is
    /// judged against is the fund's on its date and every day after.
    #[serde(default, with = "iso_opt", skip_serializing_if = "Option::is_none")]
    pub last_inflow_on: Option<NaiveDate>,
}

/// One loan's compensation, with what was returned of it since.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Compensation {
    pub loan_id: String,
    pub bank_id: String,
    pub ledger_id: String,
    #[serde(with = "iso")]
    pub compensated_on: NaiveDate,
    pub days_overdue: i64,
    /// The principal outstanding on `compensated_on`.
    pub loss_fen: Fen,
    /// The fund's share of the loss, paid to the bank.
    pub fund_fen: Fen,
    /// The bank's share of the loss.
    pub bank_fen: Fen,
    /// The loan's principal repaid before the compensation: what is repaid after it is recovered.
    pub repaid_before_fen: Fen,
    /// The principal recovered since, as of the last return.
    pub recovered_fen: Fen,
    /// Returned to the fund so far.
    pub returned_fen: Fen,
    /// Claimed by the bank, not paid by the finance office yet ([`FundEvent::Claimed`]). A
    /// compensation recorded in one step ([`FundEvent::Compensated`], before the two) was paid
    /// as it was made.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub pending: bool,
    /// The day the finance office paid it ([`FundEvent::Paid`]); none for a one-step one
    /// (paid on `compensated_on`) and a pending one.
    #[serde(default, with = "iso_opt", skip_serializing_if = "Option::is_none")]
    pub paid_on: Option<NaiveDate>,
    /// The finance office's payment voucher.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub voucher: String,
    /// The day the finance office rejected the claim ([`FundEvent::Rejected`]), and why: the
    /// claim is then neither pending nor paid, and the loan may be claimed again.
    #[serde(default, with = "iso_opt", skip_serializing_if = "Option::is_none")]
    pub rejected_on: Option<NaiveDate>,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub rejection_reason: String,
}

impl Compensation {
    /// The latest value date of the fund's events about it: its claim, its payment or its
    /// rejection (a return is the fund's inflow, [`Fund::last_inflow_on`]).
    pub fn last_event_on(&self) -> NaiveDate {
        [self.paid_on, self.rejected_on]
            .into_iter()
            .flatten()
            .fold(self.compensated_on, NaiveDate::max)
    }

    /// The day the fund paid it, if it has.
    pub fn paid(&self) -> Option<NaiveDate> {
        (!self.pending && self.rejected_on.is_none())
            .then(|| self.paid_on.unwrap_or(self.compensated_on))
    }

    /// Its status as answered: `claimed`, `paid` or `rejected`.
    pub fn status(&self) -> &'static str {
        match (self.pending, self.rejected_on) {
            (true, _) => "claimed",
            (false, Some(_)) => "rejected",
            (false, None) => "paid",
        }
    }
}

/// What a fund's journal transactions hold.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum FundEvent {
    Opened {
        ledger_id: String,
        #[serde(with = "iso")]
        opened_on: NaiveDate,
        fund_share_percent: u8,
    },
    Deposited {
        ledger_id: String,
        #[serde(with = "iso")]
        value_date: NaiveDate,
        source: DepositSource,
        amount_fen: Fen,
        /// The finance office's voucher or the bank's interest advice.
        voucher: String,
    },
    /// A compensation claimed and paid in one step (the journal's entries before claims and
    /// payments were two), its `returned_fen` and `recovered_fen` zero. Replayed, no longer
    /// planned.
    Compensated { compensation: Compensation },
    /// The bank's claim: the compensation as assessed on its date, pending (memo).
    Claimed { compensation: Compensation },
    /// The finance office's payment of a claimed compensation: the fund's share, to the bank.
    Paid {
        ledger_id: String,
        loan_id: String,
        bank_id: String,
        #[serde(with = "iso")]
        value_date: NaiveDate,
        amount_fen: Fen,
        voucher: String,
    },
    Returned {
        ledger_id: String,
        loan_id: String,
        bank_id: String,
        #[serde(with = "iso")]
        value_date: NaiveDate,
        /// The principal recovered since the compensation, in all.
        recovered_fen: Fen,
        /// Returned now.
        amount_fen: Fen,
    },
    /// The finance office's rejection of a pending claim, with its reason (memo): the fund's
    /// share is no longer held for it, the loan is no longer marked, and the bank may claim it
    /// again.
    Rejected {
        ledger_id: String,
        loan_id: String,
        bank_id: String,
        #[serde(with = "iso")]
        value_date: NaiveDate,
        reason: String,
    },
}

impl FundEvent {
    pub fn ledger_id(&self) -> &str {
        match self {
            FundEvent::Opened { ledger_id, .. }
            | FundEvent::Deposited { ledger_id, .. }
            | FundEvent::Returned { ledger_id, .. }
            | FundEvent::Paid { ledger_id, .. }
            | FundEvent::Rejected { ledger_id, .. } => ledger_id,
            FundEvent::Compensated { compensation } | FundEvent::Claimed { compensation } => {
                &compensation.ledger_id
            }
        }
    }

    pub fn date(&self) -> NaiveDate {
        match self {
            FundEvent::Opened { opened_on, .. } => *opened_on,
            FundEvent::Deposited { value_date, .. }
            | FundEvent::Returned { value_date, .. }
            | FundEvent::Paid { value_date, .. }
            | FundEvent::Rejected { value_date, .. } => *value_date,
            FundEvent::Compensated { compensation } | FundEvent::Claimed { compensation } => {
                compensation.compensated_on
            }
        }
    }

    /// Each loan's compensation mark on `date` (`Servicing::compensated_on`) by `events` (a
    /// ledger's, in journal order), with whether its claim was pending then
    /// (`Servicing::claim_pending`): as the writer and verify's replay set it, a claim (or a
    /// compensation of the older kind, not pending) dated by then marks its loan, a payment
    /// dated by then ends the claim's pending, a rejection dated by then clears the mark. A loan
    /// no event names is unmarked. An as-of read sets it on each loan, whose stored state
    /// carries the mark as it stands now ([`LoanState::compensated`]).
    pub fn compensation_marks<'e>(
        events: impl IntoIterator<Item = &'e FundEvent>,
        date: NaiveDate,
    ) -> std::collections::HashMap<&'e str, (NaiveDate, bool)> {
        let mut marks = std::collections::HashMap::new();
        for event in events.into_iter().filter(|e| e.date() <= date) {
            match event {
                FundEvent::Compensated { compensation } => {
                    marks.insert(
                        compensation.loan_id.as_str(),
                        (compensation.compensated_on, false),
                    );
                }
                FundEvent::Claimed { compensation } => {
                    marks
                        .insert(compensation.loan_id.as_str(), (compensation.compensated_on, true));
                }
                FundEvent::Paid { loan_id, .. } => {
                    if let Some((_, pending)) = marks.get_mut(loan_id.as_str()) {
                        *pending = false;
                    }
                }
                FundEvent::Rejected { loan_id, .. } => {
                    marks.remove(loan_id.as_str());
                }
                _ => {}
            }
        }
        marks
    }

    /// The loan the event is about, if any.
    pub fn loan_id(&self) -> Option<&str> {
        match self {
            FundEvent::Compensated { compensation } | FundEvent::Claimed { compensation } => {
                Some(&compensation.loan_id)
            }
            FundEvent::Returned { loan_id, .. }
            | FundEvent::Paid { loan_id, .. }
            | FundEvent::Rejected { loan_id, .. } => Some(loan_id),
            _ => None,
        }
    }
}

/// `amount × percent / 100`, rounded half up to the fen (amounts are never negative here).
pub fn share_of(amount: Fen, percent: u8) -> Fen {
    let product = i128::from(amount.0) * i128::from(percent);
    // At most i64::MAX × 100 / 100 + 1: fits back for any amount below i64::MAX.
    Fen(i64::try_from((product + 50).div_euclid(100)).unwrap_or(i64::MAX))
}

fn add(a: Fen, b: Fen, field: &str) -> Result<Fen, DomainError> {
    a.checked_add(b).ok_or_else(|| DomainError::Overflow { field: field.to_string() })
}

fn sub(a: Fen, b: Fen, field: &str) -> Result<Fen, DomainError> {
    a.checked_sub(b).ok_or_else(|| DomainError::Overflow { field: field.to_string() })
}

fn before_opening(fund: &Fund, date: NaiveDate) -> DomainError {
    DomainError::refused(
        Reason::ValueDateOutOfRange,
        format!(
            "{} is before the risk fund of ledger {} was opened ({})",
            format_date(date),
            fund.ledger_id,
            format_date(fund.opened_on)
        ),
    )
    .with(EARLIEST_DATE, format_date(fund.opened_on))
}

/// `compensation` if it is `loan_id`'s claim by `bank_id`, pending and dated by `date`, as a
/// recorded payment or rejection of it must find it ([`Fund::apply`]); else `NOT_FOUND`.
fn pending_claim<'c>(
    compensation: Option<&'c Compensation>,
    loan_id: &str,
    bank_id: &str,
    date: NaiveDate,
) -> Result<&'c Compensation, DomainError> {
    compensation
        .filter(|c| {
            c.loan_id == loan_id && c.pending && c.bank_id == bank_id && date >= c.compensated_on
        })
        .ok_or_else(|| DomainError::NotFound {
            what: "claimed compensation",
            id: loan_id.to_string(),
        })
}

/// Refuses the payment or the rejection (dated `date`) of a claim that is not pending: paid
/// (`CLAIM_STATUS_MISMATCH` with `paid_on`, saying `rule`), rejected ([`check_not_rejected`]),
/// or claimed after `date` (`VALUE_DATE_OUT_OF_RANGE`).
fn check_pending(
    compensation: &Compensation,
    date: NaiveDate,
    rule: &str,
) -> Result<(), DomainError> {
    let loan_id = &compensation.loan_id;
    if let Some(paid) = compensation.paid() {
        return Err(DomainError::refused(
            Reason::ClaimStatusMismatch,
            format!("loan {loan_id}'s compensation was paid on {}: {rule}", format_date(paid)),
        )
        .with("paid_on", format_date(paid)));
    }
    check_not_rejected(compensation)?;
    if date < compensation.compensated_on {
        return Err(DomainError::refused(
            Reason::ValueDateOutOfRange,
            format!(
                "{} is before loan {loan_id}'s claim ({})",
                format_date(date),
                format_date(compensation.compensated_on)
            ),
        )
        .with(EARLIEST_DATE, format_date(compensation.compensated_on)));
    }
    Ok(())
}

/// Refuses a payment, a rejection or a return of a claim the finance office rejected
/// (`CLAIM_STATUS_MISMATCH` with `rejected_on`): the bank claims the loan again instead.
fn check_not_rejected(compensation: &Compensation) -> Result<(), DomainError> {
    let Some(rejected) = compensation.rejected_on else { return Ok(()) };
    Err(DomainError::refused(
        Reason::ClaimStatusMismatch,
        format!(
            "loan {}'s claim of {} was rejected on {}",
            compensation.loan_id,
            format_date(compensation.compensated_on),
            format_date(rejected)
        ),
    )
    .with("rejected_on", format_date(rejected)))
}

/// Refuses `date` before `loan`'s last event: a compensation or a return counts the loan as
/// its events left it, and they must all be dated by then.
/// A claimed loan's days overdue on `date` and its loss: a live loan's days overdue count the
/// settlement points due by `date`, recorded or not, and its loss is its principal outstanding;
/// a written-off loan (since 2026-12-07) counts its days from the day it fell overdue, as its
/// write-off recorded it, and its loss is the principal written off not recovered since. A loan
/// repaid, or written off before its write-off recorded that day, is not claimed
/// (`LOAN_NOT_REPAYABLE`, naming its status).
fn claimed_loss(loan: &LoanState, date: NaiveDate) -> Result<(i64, Fen), DomainError> {
    let loan_id = &loan.terms.loan_id;
    if loan.status != LoanStatus::WrittenOff {
        let quote = loan.quote(date)?;
        return Ok((quote.days_overdue, loan.principal_outstanding_fen));
    }
    let Some(since) = loan.servicing.written_off_overdue_since else {
        return Err(DomainError::refused(
            Reason::LoanNotRepayable,
            format!(
                "loan {loan_id} was written off before its write-off recorded the day it fell \
                 overdue (2026-12-07): its days overdue are not known, and the fund does not \
                 assess it"
            ),
        )
        .with("status", loan.status.as_str()));
    };
    let lost = loan.principal_not_repaid().unwrap_or(Fen::ZERO);
    if !lost.is_positive() {
        return Err(DomainError::refused(
            Reason::LoanNotRepayable,
            format!("loan {loan_id} is written off and its principal recovered: nothing is lost"),
        )
        .with("status", loan.status.as_str()));
    }
    Ok(((date - since).num_days() + 1, lost))
}

fn check_after_last_event(loan: &LoanState, date: NaiveDate) -> Result<(), DomainError> {
    if date < loan.last_value_date {
        return Err(DomainError::refused(
            Reason::ValueDateOutOfRange,
            format!(
                "{} is before loan {}'s last event ({})",
                format_date(date),
                loan.terms.loan_id,
                format_date(loan.last_value_date)
            ),
        )
        .with(EARLIEST_DATE, format_date(loan.last_value_date)));
    }
    Ok(())
}

/// A fund's share of a loss, one of [`FUND_SHARES`] (the API checks it as the request is read,
/// the writer again).
pub fn check_share(fund_share_percent: u32) -> Result<u8, DomainError> {
    u8::try_from(fund_share_percent).ok().filter(|share| FUND_SHARES.contains(share)).ok_or_else(
        || {
            DomainError::invalid(
                "fund_share_percent",
                format!("must be 80 (fund:bank 80:20) or 70 (70:30), not {fund_share_percent}"),
            )
        },
    )
}

impl Fund {
    /// Whether the fund as it stands, with `compensations` (all of its ledger's), holds an event
    /// dated after `date`: its opening, money received, or a claim, payment or rejection. When
    /// none does, it is the fund as it stood at the end of `date`.
    pub fn moved_after(&self, compensations: &[Compensation], date: NaiveDate) -> bool {
        self.opened_on > date
            || self.last_inflow_on.is_some_and(|on| on > date)
            || compensations.iter().any(|c| c.last_event_on() > date)
    }

    /// Plans the opening of `ledger_id`'s fund (the caller has checked it has none).
    pub fn open(
        ledger_id: &str,
        opened_on: NaiveDate,
        fund_share_percent: u8,
    ) -> Result<FundEvent, DomainError> {
        check_share(fund_share_percent.into())?;
        Ok(FundEvent::Opened { ledger_id: ledger_id.to_string(), opened_on, fund_share_percent })
    }

    /// The fund an [`FundEvent::Opened`] opens.
    pub fn opened(event: &FundEvent) -> Option<Fund> {
        match event {
            FundEvent::Opened { ledger_id, opened_on, fund_share_percent } => Some(Fund {
                ledger_id: ledger_id.clone(),
                opened_on: *opened_on,
                fund_share_percent: *fund_share_percent,
                balance_fen: Fen::ZERO,
                deposited_fen: Fen::ZERO,
                interest_fen: Fen::ZERO,
                compensated_fen: Fen::ZERO,
                returned_fen: Fen::ZERO,
                compensations: 0,
                pending_fen: Fen::ZERO,
                last_inflow_on: None,
            }),
            _ => None,
        }
    }

    /// Plans a deposit or interest of `amount` on `date`.
    pub fn deposit(
        &self,
        date: NaiveDate,
        source: DepositSource,
        amount: Fen,
        voucher: &str,
    ) -> Result<FundEvent, DomainError> {
        if !amount.is_positive() {
            return Err(DomainError::invalid("amount_fen", "must be positive"));
        }
        if date < self.opened_on {
            return Err(before_opening(self, date));
        }
        add(self.balance_fen, amount, "amount_fen")?;
        Ok(FundEvent::Deposited {
            ledger_id: self.ledger_id.clone(),
            value_date: date,
            source,
            amount_fen: amount,
            voucher: voucher.to_string(),
        })
    }

    /// Plans the bank's claim for `loan` on `date` (`existing`: its compensation, if it has
    /// one): the compensation assessed that day, pending until the finance office pays it
    /// ([`Fund::pay`]). Not refused for the fund's balance: judged when paid.
    pub fn claim(
        &self,
        loan: &LoanState,
        date: NaiveDate,
        existing: Option<&Compensation>,
    ) -> Result<FundEvent, DomainError> {
        let compensation = self.assess(loan, date, existing)?;
        Ok(FundEvent::Claimed { compensation: Compensation { pending: true, ..compensation } })
    }

    /// Plans a compensation in one step, as the journal's entries before claims and payments
    /// were two hold it ([`FundEvent::Compensated`]): for verify's replay of those.
    pub fn compensate(
        &self,
        loan: &LoanState,
        date: NaiveDate,
        existing: Option<&Compensation>,
    ) -> Result<FundEvent, DomainError> {
        let compensation = self.assess(loan, date, existing)?;
        self.check_covers(&compensation)?;
        Ok(FundEvent::Compensated { compensation })
    }

    /// Plans the finance office's payment of `compensation` (claimed, pending) on `date`
    /// with its `voucher`: the fund's share to the bank, if the fund holds it, and if the loss
    /// the claim assessed still stands, the loan's principal repaid being `principal_repaid`
    /// ([`check_loss_stands`]).
    pub fn pay(
        &self,
        compensation: &Compensation,
        principal_repaid: Fen,
        date: NaiveDate,
        voucher: &str,
    ) -> Result<FundEvent, DomainError> {
        check_pending(compensation, date, "a compensation is paid once")?;
        check_loss_stands(compensation, principal_repaid)?;
        self.check_after_last_inflow(date)?;
        self.paid(compensation, date, voucher)
    }

    /// A recorded payment planned again, for verify's replay: as [`Fund::pay`] plans it, or as
    /// builds before its date's rule (2026-12-05 evening: not dated before the latest money the
    /// fund received) planned it, judged against the balance as it stood, when the fund as of
    /// its date and of every later day through that money, rebuilt from `events` (the fund's
    /// before it, in journal order) with it, does not read below zero: what the rule keeps
    /// (since 2026-12-07 evening; the fund of its date alone took a payment that left a later
    /// payment's day below zero). Else the rule's refusal.
    pub fn pay_as_recorded(
        &self,
        events: &[FundEvent],
        compensation: &Compensation,
        date: NaiveDate,
        voucher: &str,
    ) -> Result<FundEvent, DomainError> {
        check_pending(compensation, date, "a compensation is paid once")?;
        let dated = self.check_after_last_inflow(date);
        let planned = self.paid(compensation, date, voucher)?;
        let Err(refused) = dated else { return Ok(planned) };
        // The balance changes only on the days of entries: the payment's date and the entries'
        // days after it, through the latest money received, are every day it could be lowest.
        let with_it: Vec<&FundEvent> = events.iter().chain(std::iter::once(&planned)).collect();
        let last = self.last_inflow_on.unwrap_or(date);
        let mut days: Vec<NaiveDate> = with_it
            .iter()
            .map(|e| e.date())
            .filter(|day| (date..=last).contains(day))
            .chain(std::iter::once(date))
            .collect();
        days.sort_unstable();
        days.dedup();
        for day in days {
            match Fund::as_of(with_it.iter().copied(), day) {
                Ok(Some(then)) if !then.balance_fen.is_negative() => {}
                _ => return Err(refused),
            }
        }
        Ok(planned)
    }

    /// A payment's date rule: not before the latest money the fund received, so that the
    /// balance it is judged against is the fund's on its date and every day after.
    fn check_after_last_inflow(&self, date: NaiveDate) -> Result<(), DomainError> {
        match self.last_inflow_on.filter(|received| date < *received) {
            None => Ok(()),
            Some(received) => Err(DomainError::refused(
                Reason::ValueDateOutOfRange,
                format!(
                    "{} is before the fund of ledger {} received money on {}: a payment is dated \
                     on or after the money its balance counts",
                    format_date(date),
                    self.ledger_id,
                    format_date(received)
                ),
            )
            .with("last_inflow_on", format_date(received))
            .with(EARLIEST_DATE, format_date(received))),
        }
    }

    /// The payment of `compensation` on `date`, if the fund holds its share.
    fn paid(
        &self,
        compensation: &Compensation,
        date: NaiveDate,
        voucher: &str,
    ) -> Result<FundEvent, DomainError> {
        self.check_covers(compensation)?;
        Ok(FundEvent::Paid {
            ledger_id: self.ledger_id.clone(),
            loan_id: compensation.loan_id.clone(),
            bank_id: compensation.bank_id.clone(),
            value_date: date,
            amount_fen: compensation.fund_fen,
            voucher: voucher.to_string(),
        })
    }

    /// Plans the finance office's rejection of `compensation` (claimed, pending) on `date`, for
    /// `reason`: nothing moves; the fund's share is no longer held for it.
    pub fn reject(
        &self,
        compensation: &Compensation,
        date: NaiveDate,
        reason: &str,
    ) -> Result<FundEvent, DomainError> {
        let loan_id = &compensation.loan_id;
        check_pending(compensation, date, "a paid claim is not rejected")?;
        if reason.trim().is_empty() {
            return Err(DomainError::invalid("reason", "is required"));
        }
        Ok(FundEvent::Rejected {
            ledger_id: self.ledger_id.clone(),
            loan_id: loan_id.clone(),
            bank_id: compensation.bank_id.clone(),
            value_date: date,
            reason: reason.to_string(),
        })
    }

    /// Refuses a compensation whose fund's part the balance does not cover.
    fn check_covers(&self, c: &Compensation) -> Result<(), DomainError> {
        if c.fund_fen > self.balance_fen {
            return Err(DomainError::refused(
                Reason::FundInsufficient,
                format!(
                    "the fund's {}% of loan {}'s loss of {} fen is {} fen; the fund of ledger {} \
                     holds {} fen",
                    self.fund_share_percent,
                    c.loan_id,
                    c.loss_fen.0,
                    c.fund_fen.0,
                    self.ledger_id,
                    self.balance_fen.0
                ),
            )
            .with("fund_fen", c.fund_fen.0)
            .with("balance_fen", self.balance_fen.0));
        }
        Ok(())
    }

    /// The compensation of `loan` on `date`, assessed (`existing`: its compensation, if it has
    /// one): a live loan of the fund's ledger, more than 90 days overdue, once.
    fn assess(
        &self,
        loan: &LoanState,
        date: NaiveDate,
        existing: Option<&Compensation>,
    ) -> Result<Compensation, DomainError> {
        let loan_id = &loan.terms.loan_id;
        // A rejected claim leaves the loan to be claimed again, from the rejection on.
        if let Some(rejected) = existing.and_then(|c| c.rejected_on)
            && date < rejected
        {
            return Err(DomainError::refused(
                Reason::ValueDateOutOfRange,
                format!(
                    "{} is before the rejection of loan {loan_id}'s claim ({}): a claim again is \
                     dated from it",
                    format_date(date),
                    format_date(rejected)
                ),
            )
            .with("rejected_on", format_date(rejected))
            .with(EARLIEST_DATE, format_date(rejected)));
        }
        if let Some(c) = existing.filter(|c| c.rejected_on.is_none()) {
            return Err(DomainError::refused(
                Reason::LoanAlreadyCompensated,
                format!(
                    "loan {loan_id} was compensated on {}: a loan is compensated once",
                    format_date(c.compensated_on)
                ),
            )
            .with("compensated_on", format_date(c.compensated_on)));
        }
        if loan.terms.ledger_id != self.ledger_id {
            return Err(DomainError::refused(
                Reason::LedgerMismatch,
                format!("loan {loan_id} is of ledger {}", loan.terms.ledger_id),
            ));
        }
        if date < self.opened_on {
            return Err(before_opening(self, date));
        }
        check_after_last_event(loan, date)?;
        let (days_overdue, loss) = claimed_loss(loan, date)?;
        let claim_days = loan.terms.claim_overdue_days;
        if days_overdue <= i64::from(claim_days) {
            return Err(DomainError::refused(
                Reason::LoanNotOverdue,
                format!(
                    "loan {loan_id} is {} days overdue on {}; the fund compensates it overdue \
                     more than {claim_days} days (its contract's policy)",
                    days_overdue,
                    format_date(date)
                ),
            )
            .with("days_overdue", days_overdue)
            .with("claim_overdue_days", claim_days));
        }
        let fund_part = share_of(loss, self.fund_share_percent);
        Ok(Compensation {
            loan_id: loan_id.clone(),
            bank_id: loan.terms.bank_id.clone(),
            ledger_id: self.ledger_id.clone(),
            compensated_on: date,
            days_overdue,
            loss_fen: loss,
            fund_fen: fund_part,
            bank_fen: sub(loss, fund_part, "loss")?,
            repaid_before_fen: loan.principal_repaid_fen,
            recovered_fen: Fen::ZERO,
            returned_fen: Fen::ZERO,
            pending: false,
            paid_on: None,
            voucher: String::new(),
            rejected_on: None,
            rejection_reason: String::new(),
        })
    }

    /// Plans the return to the fund of its share of what the bank recovered of `loan`'s
    /// principal since `compensation`, on `date`.
    pub fn plan_return(
        &self,
        compensation: &Compensation,
        loan: &LoanState,
        date: NaiveDate,
    ) -> Result<FundEvent, DomainError> {
        let loan_id = &loan.terms.loan_id;
        check_not_rejected(compensation)?;
        let Some(paid) = compensation.paid() else {
            return Err(DomainError::refused(
                Reason::ClaimStatusMismatch,
                format!(
                    "loan {loan_id}'s compensation is claimed, not paid yet: nothing was paid to \
                     return"
                ),
            ));
        };
        if date < paid {
            return Err(DomainError::refused(
                Reason::ValueDateOutOfRange,
                format!(
                    "{} is before the payment of loan {loan_id}'s compensation ({})",
                    format_date(date),
                    format_date(paid)
                ),
            )
            .with(EARLIEST_DATE, format_date(paid)));
        }
        // What it counts as recovered is repaid by its date: not dated before a repayment.
        check_after_last_event(loan, date)?;
        let recovered = recovered_since(compensation, loan.principal_repaid_fen)?;
        let due = return_due(compensation, recovered, self.fund_share_percent);
        if !due.is_positive() {
            return Err(DomainError::refused(
                Reason::NothingToReturn,
                format!(
                    "nothing to return for loan {loan_id}: {} fen of its principal recovered \
                     since its compensation, {} fen returned of the fund's {} fen",
                    recovered.0, compensation.returned_fen.0, compensation.fund_fen.0
                ),
            )
            .with("recovered_fen", recovered.0));
        }
        Ok(FundEvent::Returned {
            ledger_id: self.ledger_id.clone(),
            loan_id: loan_id.clone(),
            bank_id: compensation.bank_id.clone(),
            value_date: date,
            recovered_fen: recovered,
            amount_fen: due,
        })
    }

    /// Applies `event` to the fund (`compensation`: the loan's, for a return) and gives the
    /// loan's compensation after it, if the event is about one. Refuses what would leave the
    /// fund or a compensation inconsistent, for verify's replay of an altered journal.
    pub fn apply(
        &mut self,
        event: &FundEvent,
        compensation: Option<&Compensation>,
    ) -> Result<Option<Compensation>, DomainError> {
        self.apply_checked(event, compensation, true)
    }

    /// [`Fund::apply`], the fund's balance judged against each payment out of it only when
    /// `judge_balance` ([`Fund::as_of`] applies a date's events without it: see there).
    fn apply_checked(
        &mut self,
        event: &FundEvent,
        compensation: Option<&Compensation>,
        judge_balance: bool,
    ) -> Result<Option<Compensation>, DomainError> {
        let short = |amount: Fen, balance: Fen| judge_balance && amount > balance;
        if event.ledger_id() != self.ledger_id {
            return Err(DomainError::refused(
                Reason::LedgerMismatch,
                format!(
                    "an event of ledger {} for the fund of {}",
                    event.ledger_id(),
                    self.ledger_id
                ),
            ));
        }
        match event {
            FundEvent::Opened { .. } => {
                Err(DomainError::Exists { what: "risk fund", id: self.ledger_id.clone() })
            }
            FundEvent::Deposited { source, amount_fen, value_date, .. } => {
                if !amount_fen.is_positive() {
                    return Err(DomainError::invalid("amount_fen", "must be positive"));
                }
                self.received_on(*value_date);
                self.balance_fen = add(self.balance_fen, *amount_fen, "balance")?;
                match source {
                    DepositSource::Deposit => {
                        self.deposited_fen = add(self.deposited_fen, *amount_fen, "deposited")?
                    }
                    DepositSource::Interest => {
                        self.interest_fen = add(self.interest_fen, *amount_fen, "interest")?
                    }
                }
                Ok(None)
            }
            FundEvent::Compensated { compensation: c } | FundEvent::Claimed { compensation: c } => {
                if compensation.is_some_and(|before| before.rejected_on.is_none()) {
                    return Err(DomainError::Exists {
                        what: "compensation",
                        id: c.loan_id.clone(),
                    });
                }
                let claimed = matches!(event, FundEvent::Claimed { .. });
                if c.fund_fen.is_negative()
                    || !claimed && short(c.fund_fen, self.balance_fen)
                    || add(c.fund_fen, c.bank_fen, "loss")? != c.loss_fen
                    || c.fund_fen != share_of(c.loss_fen, self.fund_share_percent)
                    || c.recovered_fen != Fen::ZERO
                    || c.returned_fen != Fen::ZERO
                    || c.pending != claimed
                    || c.paid_on.is_some()
                    || !c.voucher.is_empty()
                    || c.rejected_on.is_some()
                    || !c.rejection_reason.is_empty()
                {
                    return Err(DomainError::refused(
                        Reason::FundInsufficient,
                        format!(
                            "loan {}'s compensation of {} fen does not fit the fund's {} fen \
                             and {}% share",
                            c.loan_id, c.fund_fen.0, self.balance_fen.0, self.fund_share_percent
                        ),
                    ));
                }
                if claimed {
                    self.pending_fen = add(self.pending_fen, c.fund_fen, "pending")?;
                } else {
                    self.pay_out(c.fund_fen)?;
                }
                Ok(Some(c.clone()))
            }
            FundEvent::Paid { loan_id, bank_id, value_date, amount_fen, voucher, .. } => {
                let c = pending_claim(compensation, loan_id, bank_id, *value_date)?;
                if *amount_fen != c.fund_fen || short(*amount_fen, self.balance_fen) {
                    return Err(DomainError::refused(
                        Reason::FundInsufficient,
                        format!(
                            "a payment of {} fen for loan {loan_id}'s compensation of {} fen \
                             from the fund's {} fen",
                            amount_fen.0, c.fund_fen.0, self.balance_fen.0
                        ),
                    ));
                }
                self.pay_out(*amount_fen)?;
                self.pending_fen = sub(self.pending_fen, *amount_fen, "pending")?;
                Ok(Some(Compensation {
                    pending: false,
                    paid_on: Some(*value_date),
                    voucher: voucher.clone(),
                    ..c.clone()
                }))
            }
            FundEvent::Rejected { loan_id, bank_id, value_date, reason, .. } => {
                let given = compensation.filter(|_| !reason.trim().is_empty());
                let c = pending_claim(given, loan_id, bank_id, *value_date)?;
                self.pending_fen = sub(self.pending_fen, c.fund_fen, "pending")?;
                Ok(Some(Compensation {
                    pending: false,
                    rejected_on: Some(*value_date),
                    rejection_reason: reason.clone(),
                    ..c.clone()
                }))
            }
            FundEvent::Returned { loan_id, recovered_fen, amount_fen, value_date, .. } => {
                let Some(c) = compensation.filter(|c| &c.loan_id == loan_id && c.paid().is_some())
                else {
                    return Err(DomainError::NotFound {
                        what: "compensation",
                        id: loan_id.clone(),
                    });
                };
                let returned = add(c.returned_fen, *amount_fen, "returned")?;
                if !amount_fen.is_positive()
                    || *recovered_fen < c.recovered_fen
                    || returned > c.fund_fen
                {
                    return Err(DomainError::refused(
                        Reason::NothingToReturn,
                        format!(
                            "a return of {} fen for loan {loan_id} would make {} fen of the \
                             fund's {} fen",
                            amount_fen.0, returned.0, c.fund_fen.0
                        ),
                    ));
                }
                self.balance_fen = add(self.balance_fen, *amount_fen, "balance")?;
                self.returned_fen = add(self.returned_fen, *amount_fen, "returned")?;
                self.received_on(*value_date);
                Ok(Some(Compensation {
                    recovered_fen: *recovered_fen,
                    returned_fen: returned,
                    ..c.clone()
                }))
            }
        }
    }

    /// The fund as its `events` (its ledger's, in journal order) dated by `date` left it, each
    /// applied in order with the compensation it changes: `None` when it was not open yet.
    /// An event needs only events dated no later than itself (a payment its claim, a return
    /// its payment, a claim again its rejection). The balance is not judged again: a payment
    /// is now not dated before any money the fund had received by then, but the entries of
    /// builds before that rule (one-step compensations, and payments judged against the
    /// balance as it stood) may be dated before a deposit recorded ahead of them, and the fund
    /// of such a day reads as its entries make it, below zero if so.
    pub fn as_of<'e>(
        events: impl IntoIterator<Item = &'e FundEvent>,
        date: NaiveDate,
    ) -> Result<Option<Fund>, DomainError> {
        let mut fund: Option<Fund> = None;
        let mut compensations: std::collections::HashMap<&str, Compensation> =
            std::collections::HashMap::new();
        for event in events.into_iter().filter(|e| e.date() <= date) {
            let Some(open) = fund.as_mut() else {
                fund = Fund::opened(event);
                continue;
            };
            let loan_id = event.loan_id().unwrap_or_default();
            if let Some(changed) = open.apply_checked(event, compensations.get(loan_id), false)? {
                compensations.insert(loan_id, changed);
            }
        }
        Ok(fund)
    }

    /// Money received on `date` ([`Fund::last_inflow_on`]).
    fn received_on(&mut self, date: NaiveDate) {
        self.last_inflow_on = Some(self.last_inflow_on.map_or(date, |last| last.max(date)));
    }

    /// A compensation's part paid out of the fund.
    fn pay_out(&mut self, amount: Fen) -> Result<(), DomainError> {
        self.balance_fen = sub(self.balance_fen, amount, "balance")?;
        self.compensated_fen = add(self.compensated_fen, amount, "compensated")?;
        self.compensations += 1;
        Ok(())
    }

    /// What is left under [`Fund::lending_limit`] once `exposure` is counted (0 when nothing).
    pub fn room(&self, exposure: &Exposure, limits: LendingLimits) -> Fen {
        let room = (i128::from(self.lending_limit(limits).0) - exposure.committed_fen()).max(0);
        Fen(i64::try_from(room).unwrap_or(i64::MAX))
    }

    /// The most the ledger's programme loans may stand at: the policy's leverage (10 by
    /// default) × the balance less the claims not paid yet (the fund owes those).
    pub fn lending_limit(&self, limits: LendingLimits) -> Fen {
        Fen(self.free_fen().0.saturating_mul(i64::from(limits.leverage)))
    }

    /// The balance less the claims not paid yet (none below zero): what the leverage limit
    /// multiplies.
    pub fn free_fen(&self) -> Fen {
        Fen(self.balance_fen.0.saturating_sub(self.pending_fen.0).max(0))
    }
}

/// What the bank recovered of `compensation`'s loan since it, the loan's principal repaid being
/// `principal_repaid`: the principal repaid since (none when less, as a loan read before its
/// last repayment would be).
pub fn recovered_since(
    compensation: &Compensation,
    principal_repaid: Fen,
) -> Result<Fen, DomainError> {
    Ok(sub(principal_repaid, compensation.repaid_before_fen, "recovered")?.max(Fen::ZERO))
}

/// A claim is paid for the loss it assessed only while that loss stands (since 2026-12-07): the
/// principal the bank recovered of the loan since the claim ([`recovered_since`]) refuses the
/// payment (`RECOVERED_SINCE_CLAIM`, `metadata.recovered_fen`), so that the fund does not pay
/// for principal the household has repaid, to have it returned only if the bank returns it.
/// The finance office rejects the claim and the bank claims again for the loss as it stands (a
/// loan repaid in full has none). Payments recorded before the rule are replayed as recorded
/// ([`Fund::pay_as_recorded`] does not judge it).
pub fn check_loss_stands(
    compensation: &Compensation,
    principal_repaid: Fen,
) -> Result<(), DomainError> {
    let recovered = recovered_since(compensation, principal_repaid)?;
    if !recovered.is_positive() {
        return Ok(());
    }
    Err(DomainError::refused(
        Reason::RecoveredSinceClaim,
        format!(
            "loan {} has repaid {} fen of principal since its claim on {}, which assessed a loss \
             of {} fen: reject the claim (RejectCompensation) and claim again for the loss as it \
             stands",
            compensation.loan_id,
            recovered.0,
            format_date(compensation.compensated_on),
            compensation.loss_fen.0
        ),
    )
    .with("recovered_fen", recovered.0)
    .with("loss_fen", compensation.loss_fen.0))
}

/// What the bank recovered of a paid compensation's loan since it, and the fund's share of it
/// not returned yet, the loan's principal repaid being `principal_repaid` (as it stands: what a
/// `ReturnRecovery` dated on the loan's last event or later would return). For a claim not paid,
/// or rejected, nothing is owed back (the recovered principal is still shown).
pub fn recovery_standing(
    compensation: &Compensation,
    principal_repaid: Fen,
    fund_share_percent: u8,
) -> Result<(Fen, Fen), DomainError> {
    let recovered = recovered_since(compensation, principal_repaid)?;
    let due = match compensation.paid() {
        Some(_) => return_due(compensation, recovered, fund_share_percent),
        None => Fen::ZERO,
    };
    Ok((recovered, due))
}

/// What is due to the fund of `compensation` when `recovered` of the loan's principal has been
/// recovered since it: the fund's share of it, at most what the fund paid, less what was
/// returned already (zero when nothing more is due).
pub fn return_due(compensation: &Compensation, recovered: Fen, percent: u8) -> Fen {
    let owed = share_of(recovered.max(Fen::ZERO), percent).min(compensation.fund_fen);
    Fen(owed.0.saturating_sub(compensation.returned_fen.0).max(0))
}

/// A ledger's programme loans on a date, as the lending limits read them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Exposure {
    /// Principal outstanding of the live loans.
    pub outstanding_fen: Fen,
    /// Principal contracted and not paid out yet, of contracts whose maturity has not come:
    /// lent by the time it is drawn, so counted against the leverage limit from the contract on.
    pub undrawn_fen: Fen,
    /// Of it, the principal of loans more than their claim days overdue (`OVERDUE_90`: 90 by
    /// default, [`LoanTerms::claim_overdue_days`]).
    pub non_performing_fen: Fen,
    pub live_loans: u64,
    pub non_performing_loans: u64,
    /// Of the undrawn principal, what renewals (续贷) not paid out yet have undrawn while the
    /// loans they renew still count it (their principal outstanding and undrawn): a renewal is
    /// paid out once the loan it renews owes no principal, so the two are one lending, counted
    /// once ([`Exposure::count_renewals_once`]; [`Exposure::committed_fen`] leaves it out).
    pub renewal_overlap_fen: Fen,
}

/// The renewals not paid out yet of each loan: their undrawn principal together, by the id of
/// the loan they renew ([`Exposure::count_renewals_once`]).
pub type WaitingRenewals<'a> = std::collections::HashMap<&'a str, i128>;

impl Exposure {
    /// The exposure of `loans` on `date`: each live loan's principal outstanding, and whether
    /// it is more than 90 days overdue that day (the settlement points due by then counted,
    /// recorded or not, as its quote counts them); a loan and its renewals counted once.
    pub fn of<'a>(loans: impl IntoIterator<Item = &'a LoanState>, date: NaiveDate) -> Exposure {
        let mut e = Exposure::default();
        let mut parts = std::collections::HashMap::new();
        let mut renewals = Vec::new();
        for loan in loans {
            let part = Exposure::of_loan(loan, date);
            e.add(&part);
            let id = loan.terms.loan_id.as_str();
            if let Some(parent) = loan.terms.renews_loan_id.as_deref() {
                renewals.push((id, parent));
            }
            parts.insert(id, part);
        }
        e.count_renewals_once(renewals, |id| parts.get(id).copied());
        e
    }

    /// Sets [`Exposure::renewal_overlap_fen`] from the ledger's `renewals` (each a renewal's id
    /// and the id of the loan it renews), each loan's part given by `part_of` (`None`: not
    /// live, counts nothing): for each loan renewed, the lesser of what its renewals have
    /// undrawn together and what it counts itself. Gives the renewals' undrawn principal by
    /// the loan they renew.
    pub fn count_renewals_once<'a>(
        &mut self,
        renewals: impl IntoIterator<Item = (&'a str, &'a str)>,
        part_of: impl Fn(&str) -> Option<Exposure>,
    ) -> WaitingRenewals<'a> {
        let mut waiting = WaitingRenewals::new();
        for (renewal, parent) in renewals {
            let undrawn = part_of(renewal).map_or(0, |p| i128::from(p.undrawn_fen.0));
            if undrawn > 0 {
                *waiting.entry(parent).or_default() += undrawn;
            }
        }
        let overlap: i128 = waiting
            .iter()
            .map(|(parent, undrawn)| {
                (*undrawn).min(part_of(parent).map_or(0, |p| p.committed_fen().max(0)))
            })
            .sum();
        self.renewal_overlap_fen = Fen(i64::try_from(overlap).unwrap_or(i64::MAX));
        waiting
    }

    /// One loan's part of its ledger's exposure on `date` ([`Exposure::of`]).
    pub fn of_loan(loan: &LoanState, date: NaiveDate) -> Exposure {
        let mut e = Exposure::default();
        // What is left of a contract counts while it may still be paid out: not once an
        // amortising loan's one payout fixed its schedule, nor once the fund compensated the
        // loan, nor once it was marked misused (since 2026-12-07) (each further payout refused,
        // LOAN_NOT_DISBURSABLE: it held room to its maturity; `pays_out_no_more`), nor from the
        // contract's maturity, which an extension does not move. A claim not paid yet has not
        // compensated it: the rest holds its room until the payment (since 2026-12-07 night;
        // before, a claim let it go, another contract could take it, and the rest was paid out
        // over the limit once the claim was rejected).
        if (loan.status.is_live() || loan.status == LoanStatus::Contracted)
            && !loan.pays_out_no_more()
            && date < loan.payable_until()
        {
            e.undrawn_fen =
                Fen(loan.terms.principal_fen.0.saturating_sub(loan.disbursed_fen.0).max(0));
        }
        // The quote counts the settlement points due by `date` that no event has recorded
        // yet (a loan nobody touched since its payout is overdue all the same).
        let status = loan.status_shown(loan.quote(date).ok().as_ref(), date);
        if status.is_live() {
            e.live_loans = 1;
            e.outstanding_fen = loan.principal_outstanding_fen;
            if status == LoanStatus::Overdue90 {
                e.non_performing_loans = 1;
                e.non_performing_fen = loan.principal_outstanding_fen;
            }
        }
        e
    }

    /// Principal outstanding and contracted not paid out yet, a loan and its renewals counted
    /// once: what the leverage limit holds.
    pub fn committed_fen(&self) -> i128 {
        i128::from(self.outstanding_fen.0) + i128::from(self.undrawn_fen.0)
            - i128::from(self.renewal_overlap_fen.0)
    }

    /// Adds another's figures (a loan's part, to a ledger's).
    pub fn add(&mut self, other: &Exposure) {
        self.outstanding_fen = Fen(self.outstanding_fen.0.saturating_add(other.outstanding_fen.0));
        self.undrawn_fen = Fen(self.undrawn_fen.0.saturating_add(other.undrawn_fen.0));
        self.non_performing_fen =
            Fen(self.non_performing_fen.0.saturating_add(other.non_performing_fen.0));
        self.live_loans += other.live_loans;
        self.non_performing_loans += other.non_performing_loans;
    }

    /// Takes another's figures out (a loan's part, added before).
    pub fn remove(&mut self, other: &Exposure) {
        self.outstanding_fen = Fen(self.outstanding_fen.0.saturating_sub(other.outstanding_fen.0));
        self.undrawn_fen = Fen(self.undrawn_fen.0.saturating_sub(other.undrawn_fen.0));
        self.non_performing_fen =
            Fen(self.non_performing_fen.0.saturating_sub(other.non_performing_fen.0));
        self.live_loans = self.live_loans.saturating_sub(other.live_loans);
        self.non_performing_loans =
            self.non_performing_loans.saturating_sub(other.non_performing_loans);
    }

    /// The non-performing ratio in basis points (1/100 of a percent), rounded down; 0 when
    /// nothing is outstanding.
    pub fn npl_basis_points(&self) -> i64 {
        if self.outstanding_fen.0 <= 0 {
            return 0;
        }
        let bp =
            i128::from(self.non_performing_fen.0) * 10_000 / i128::from(self.outstanding_fen.0);
        i64::try_from(bp).unwrap_or(i64::MAX)
    }

    /// Whether the non-performing ratio is above the policy's limit (3% by default), exactly
    /// (no rounding).
    pub fn lending_suspended(&self, limits: LendingLimits) -> bool {
        i128::from(self.non_performing_fen.0) * 10_000
            > i128::from(self.outstanding_fen.0) * i128::from(limits.npl_limit_basis_points)
    }
}

/// Whether `fund` lets its ledger contract a new loan of `principal` on `date`, the ledger's
/// programme loans standing at `exposure` that day (its contracts' principal not drawn yet
/// counted with what is outstanding), under the `limits` of the policy in force that day:
/// [`check_suspension`], then [`check_leverage`]. A
/// renewal (`renews`: the loan it renews, in `exposure`, and what that loan's other renewals
/// not paid out yet have undrawn together, [`Exposure::count_renewals_once`]) adds only its
/// principal above what that loan counts that day less what those take of it: it is paid out
/// once that loan owes no principal, so the two are one lending, not counted twice.
pub fn check_lending(
    fund: &Fund,
    exposure: &Exposure,
    principal: Fen,
    date: NaiveDate,
    renews: Option<(&LoanState, i128)>,
    limits: LendingLimits,
) -> Result<(), DomainError> {
    check_suspension(fund, exposure, date, limits)?;
    let Some((parent, waiting)) = renews else {
        let what = format!("a loan of {} fen", principal.0);
        return check_leverage(fund, exposure, principal, &what, limits);
    };
    // What the loan still counts, less what its other renewals not paid out yet take of it.
    let counted = (Exposure::of_loan(parent, date).committed_fen() - waiting).max(0);
    let adds = (i128::from(principal.0) - counted).max(0);
    let adds = Fen(i64::try_from(adds).unwrap_or(i64::MAX));
    let what = format!(
        "a renewal of {} fen of loan {} ({} fen more than that loan counts)",
        principal.0, parent.terms.loan_id, adds.0
    );
    check_leverage(fund, exposure, adds, &what, limits)
}

/// Refuses new lending while the ledger's non-performing ratio on `date`, its loans standing
/// at `exposure` that day, is above the `limits`' (`LENDING_SUSPENDED`).
pub fn check_suspension(
    fund: &Fund,
    exposure: &Exposure,
    date: NaiveDate,
    limits: LendingLimits,
) -> Result<(), DomainError> {
    if exposure.lending_suspended(limits) {
        let bp = exposure.npl_basis_points();
        let limit = limits.npl_limit_basis_points;
        return Err(DomainError::refused(
            Reason::LendingSuspended,
            format!(
                "lending in ledger {} is suspended: on {} its non-performing ratio is {} \
                 ({} fen of {} fen outstanding more than its claim days overdue), \
                 above the policy's {}.{:02}%",
                fund.ledger_id,
                format_date(date),
                percent_rounded_up(exposure.non_performing_fen, exposure.outstanding_fen),
                exposure.non_performing_fen.0,
                exposure.outstanding_fen.0,
                limit / 100,
                limit % 100
            ),
        )
        .with("npl_basis_points", bp)
        .with("npl_limit_basis_points", limit)
        .with("non_performing_fen", exposure.non_performing_fen.0)
        .with("outstanding_fen", exposure.outstanding_fen.0)
        .with("as_of", format_date(date)));
    }
    Ok(())
}

/// `part` of `whole` as a percentage to three decimals, rounded up: a ratio above a limit of
/// two decimals never reads as the limit (30,001 of 1,000,000 is 3.001%, not 3.00%).
fn percent_rounded_up(part: Fen, whole: Fen) -> String {
    if whole.0 <= 0 {
        return "0.000%".to_string();
    }
    let (num, den) = (i128::from(part.0) * 100_000, i128::from(whole.0));
    let milli = num / den + i128::from(num % den > 0);
    format!("{}.{:03}%", milli / 1000, milli % 1000)
}

/// Refuses `amount` of new lending (`what`, named in the refusal) that would bring the ledger's
/// programme loans, standing at `exposure`, above [`Fund::lending_limit`] under `limits`
/// (`FUND_LEVERAGE_EXCEEDED`).
pub fn check_leverage(
    fund: &Fund,
    exposure: &Exposure,
    amount: Fen,
    what: &str,
    limits: LendingLimits,
) -> Result<(), DomainError> {
    let after = exposure.committed_fen() + i128::from(amount.0);
    let limit = fund.lending_limit(limits);
    if after > i128::from(limit.0) {
        let room = fund.room(exposure, limits).0;
        let leverage = limits.leverage;
        return Err(DomainError::refused(
            Reason::FundLeverageExceeded,
            format!(
                "{what} would bring ledger {}'s programme loans (outstanding, and contracted \
                 not yet paid out) to {after} fen, above {leverage} × its risk fund's free \
                 balance ({} fen: its balance of {} fen less the claims it has not paid yet, \
                 {} fen), {} fen",
                fund.ledger_id,
                fund.free_fen().0,
                fund.balance_fen.0,
                fund.pending_fen.0,
                limit.0
            ),
        )
        .with("limit_fen", limit.0)
        .with("balance_fen", fund.balance_fen.0)
        .with("pending_fen", fund.pending_fen.0)
        .with("room_fen", room)
        .with("leverage", leverage));
    }
    Ok(())
}

#[cfg(test)]
mod tests;
