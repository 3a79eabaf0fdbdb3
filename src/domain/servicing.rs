//! Loan servicing: what a disbursed loan owes on any day, computed from its own record.
//!
//! Model. Besides its principal, a loan carries three receivable buckets, each its own account:
//! settled interest not yet paid (as [`DueItem`]s, each with its due date), penalty interest
//! (罚息) and compound interest (复利). Between settlements, three accrual lists collect
//! [`Segment`]s, runs of days with one base and one rate, so that every settled figure keeps its
//! days, 积数, rate and unrounded amount:
//!
//! - interest: principal not yet due, at the contract rate, on each day before maturity (and
//!   before misuse);
//! - penalty: principal, at the penalty rate (contract × (1 + uplift)), on each day from maturity
//!   on, or from the misuse date on with the misuse uplift; and, before maturity, instalment
//!   principal due and unpaid (amortising loans, below), at the overdue uplift;
//! - compound: unpaid settled interest, from the day after its period plus grace days on (a
//!   20th's from the 21st, an instalment's or maturity's from its due date: see
//!   `Servicing::compound_from`), at the contract rate before maturity and the penalty rate
//!   after. Penalty and compound never compound themselves.
//!
//! A day `d` accrues on the balances as they stand on `d` after every event dated `d`
//! (算头不算尾: a disbursement on `d` accrues on `d`, a repayment on `d` stops accrual on `d`),
//! except a settlement 20th, whose point an event that day settles first, on the balances as the
//! day began (so that a repayment can pay the interest settled that day, and a payoff quoted on
//! the day owes the same whether the day's settlement run came first or not).
//! Settlement points are the calendar's 20ths before the day before maturity (the period ends
//! on the 20th inclusive), maturity itself (the last period ends the day before: with maturity on
//! a 21st, on the 20th, settled with the principal, as the schedule has it), and after maturity the
//! calendar's 20ths again, where penalty and compound are settled. At each point the accrued
//! lists are summed in one exact expression and rounded once with the loan's rounding mode.
//! 利随本清 (frequency `AtMaturity`) has no 20ths: its one period runs from disbursement to the
//! day before maturity and is settled at maturity, as [`super::schedule`] schedules it (after
//! maturity its penalty and compound settle on the quarterly 20ths).
//!
//! Amortising loans (等额本息 `EqualInstalment`, 等额本金 `EqualPrincipal`). At the (single)
//! disbursement the schedule of [`super::schedule::build_schedule_paid_out`] for the disbursed
//! principal fixes the instalments: their periods, due dates (对日 the contract date, those
//! after the payout) and principal parts, kept in [`Servicing::instalments`] until each falls
//! due, and maturity (the contract's, the last due date). The settlement points before
//! maturity are the due dates, not the 20ths; each instalment period runs from the previous
//! due date to the day before its due date. A loan paid out within a period (after its
//! contract date) accrues from the payout: its first period is broken, settled on the periodic
//! basis pro rata to its days ([`settle_periodic`] over the period's days).
//! At a due date:
//!
//! - the period's interest is settled on the periodic-rate basis of the schedule: the annual
//!   rate / 12 (monthly) or / 4 (quarterly) applied to the period's average daily principal not
//!   yet due, that is Σ 积数 × annual rate / (periods per year × days of the period), rounded
//!   once ([`settle_periodic`]). A borrower who pays on time has one base all period, the
//!   opening principal, and so is charged exactly the schedule's interest; so is one who is
//!   behind, since unpaid instalment principal has left the interest base for the penalty base;
//!   a prepayment during the period lowers that period's interest pro rata by day;
//! - the instalment's principal part falls due: it moves to [`Servicing::principal_due`] (it
//!   stays part of `principal_fen`, and of the `loan/<id>/principal` account: falling due is no
//!   money movement and posts nothing). The last instalment takes all principal left. From its
//!   due date on, unpaid instalment principal bears penalty (not interest) at the penalty rate,
//!   per day, in segments, exactly as all principal does from maturity on; it is overdue (for
//!   status and days overdue) from the day after its due date. Grace days apply to interest
//!   only, as for a bullet loan's principal at maturity.
//!
//! Payments keep the order below; "principal" pays instalment principal due first (oldest
//! first), then principal not yet due. Such a prepayment shortens the schedule: it is taken off
//! the last instalments' parts first, so the next instalments keep their scheduled principal and
//! the parts left always sum to the principal not yet due. A payment made before a due date is
//! a prepayment, not a payment of that instalment (banks record instalments on their due date).
//! An early full payoff settles the running period's interest pro rata by day on the periodic
//! basis. An amortising loan is disbursed once (a second disbursement is refused: the schedule
//! is fixed by the first, for the amount paid out then) and is not extended (refused in
//! [`super::loan`]); after maturity its penalty and compound settle on the 20ths of its
//! frequency.
//!
//! Every event at date `D` first settles the points it has passed: points up to and including
//! `D`, except a disbursement (points before `D`), misuse and extension (points before `D`, since
//! they change rates or maturity from `D` on). So a repayment on a settlement day can pay the
//! interest settled that day. A repayment then accrues penalty and compound to `D`, settles them,
//! and pays, in order: penalty, compound, overdue interest, current interest, principal. Paying
//! the whole payoff amount settles the running period's interest early (to the day before `D`)
//! and closes the loan; paying more is refused with the payoff amount; a partial payment must
//! leave principal outstanding.
//!
//! Amounts become overdue on the day after their due date (plus grace days for interest, and for
//! the penalty and compound settled at a point: [`Servicing::charges_due`]). A loan
//! whose oldest overdue amount has been overdue for more than 90 days is `overdue_90`.

use chrono::{Duration, NaiveDate};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

use super::calendar::{SettlementFrequency, settlement_on_or_after};
use super::date::{iso, iso_opt};
use super::money::{Fen, Rounding};
use super::rate::AnnualRate;
use super::schedule::{RepaymentMethod, Schedule, periodic_interest};

/// Settlement points one event may catch up, at most: 36 months of monthly points and a decade
/// of quarterly points after maturity, far beyond a programme loan's life.
pub const POINTS_PER_EVENT_MAX: usize = 240;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ServicingError {
    #[error("amount overflows 64-bit fen")]
    Overflow,
    #[error("more than {POINTS_PER_EVENT_MAX} settlement points to catch up")]
    TooManyPoints,
    #[error("date out of range")]
    DateOutOfRange,
    #[error("the schedule does not amortise the disbursed principal")]
    ScheduleMismatch,
}

/// A run of days with one base and one rate.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Segment {
    #[serde(with = "iso")]
    pub from: NaiveDate,
    #[serde(with = "iso")]
    pub to_inclusive: NaiveDate,
    pub days: u32,
    pub base_fen: Fen,
    pub annual_rate: AnnualRate,
    /// base × days.
    pub jishu: i64,
}

/// One bucket's settled figure: its segments, the exact sum and the rounded amount.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Accrual {
    pub segments: Vec<Segment>,
    /// Σ 积数 × rate / 360 over the segments, in fen, before rounding.
    pub unrounded_fen: Decimal,
    pub rounding: Rounding,
    pub amount_fen: Fen,
    /// Present for the interest of an amortising loan: the periodic rate applied to the period's
    /// average daily principal, Σ 积数 × annual rate / (periods per year × days of the period).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub periodic: Option<PeriodicBasis>,
}

/// The periodic-rate basis of an amortising loan's instalment interest.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct PeriodicBasis {
    /// The instalment whose period this is.
    pub instalment: u32,
    /// 12 for monthly instalments, 4 for quarterly.
    pub periods_per_year: u32,
    /// Calendar days of the whole instalment period (from the previous due date, or the
    /// disbursement, to the day before the due date).
    pub period_days: u32,
}

/// Principal of an instalment falling due at a settlement point.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct InstalmentPrincipal {
    pub instalment: u32,
    pub amount_fen: Fen,
}

/// What one settlement point settled.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SettlementPoint {
    #[serde(with = "iso")]
    pub date: NaiveDate,
    pub interest: Option<Accrual>,
    pub penalty: Option<Accrual>,
    pub compound: Option<Accrual>,
    /// The instalment principal that fell due here (amortising loans only). Not a money
    /// movement: the principal stays in `loan/<id>/principal`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub principal: Option<InstalmentPrincipal>,
}

impl SettlementPoint {
    pub fn interest_fen(&self) -> Fen {
        self.interest.as_ref().map_or(Fen::ZERO, |a| a.amount_fen)
    }
    pub fn penalty_fen(&self) -> Fen {
        self.penalty.as_ref().map_or(Fen::ZERO, |a| a.amount_fen)
    }
    pub fn compound_fen(&self) -> Fen {
        self.compound.as_ref().map_or(Fen::ZERO, |a| a.amount_fen)
    }
    /// Instalment principal that fell due here.
    pub fn principal_due_fen(&self) -> Fen {
        self.principal.map_or(Fen::ZERO, |p| p.amount_fen)
    }
}

/// Settled interest, or instalment principal, not yet paid.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DueItem {
    #[serde(with = "iso")]
    pub due_date: NaiveDate,
    pub amount_fen: Fen,
    /// Interest due at a maturity that an extension then moved on: its period ended the day
    /// before its due date, which may be a 20th now before maturity (set by
    /// [`Servicing::extend`]; left out of the stored state when not set).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub at_old_maturity: bool,
}

/// How a payment (or a write-off) is split over the buckets.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Allocation {
    pub penalty_fen: Fen,
    pub compound_fen: Fen,
    pub overdue_interest_fen: Fen,
    pub current_interest_fen: Fen,
    /// All principal paid: due instalment principal first, then principal not yet due.
    pub principal_fen: Fen,
    /// The part of `principal_fen` that paid instalment principal already due (amortising
    /// loans); the rest is prepayment.
    #[serde(default, skip_serializing_if = "Fen::is_zero")]
    pub due_principal_fen: Fen,
}

impl Allocation {
    pub fn interest_fen(&self) -> Option<Fen> {
        self.overdue_interest_fen.checked_add(self.current_interest_fen)
    }
    pub fn total(&self) -> Option<Fen> {
        Fen::checked_sum([
            self.penalty_fen,
            self.compound_fen,
            self.overdue_interest_fen,
            self.current_interest_fen,
            self.principal_fen,
        ])
    }
}

/// The contract figures servicing needs, fixed at origination.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ServicingTerms {
    pub rate: AnnualRate,
    pub method: RepaymentMethod,
    pub frequency: SettlementFrequency,
    pub overdue_uplift: Decimal,
    pub misuse_uplift: Decimal,
    pub grace_days: u32,
    pub rounding: Rounding,
}

/// The servicing state of a disbursed loan.
///
/// Stored as JSON in the loan's read model (`loan.servicing_json`; also in the answers that
/// versions before the brief stored answers kept whole): the lists that are empty and the
/// figures that are zero are left out, and read back as empty and zero, so that the row a loan
/// rewrites at every event is about half as wide (a typical settled loan's 450 bytes fall to
/// about 200; BENCHMARKS-HISTORY.md, 78). Rows written with every field, by earlier versions, read back
/// the same. Earlier versions cannot read the rows written now: the migrations that came with
/// this form (SQLite's 0005, PostgreSQL's 0008) make them refuse the database instead.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Servicing {
    /// Current maturity (the contract's, or the extended one).
    #[serde(default, with = "iso_opt")]
    pub maturity_date: Option<NaiveDate>,
    /// Accruals cover the days before this date.
    #[serde(default, with = "iso_opt")]
    pub accrued_through: Option<NaiveDate>,
    /// The next settlement point not yet settled.
    #[serde(default, with = "iso_opt")]
    pub next_point: Option<NaiveDate>,
    pub principal_fen: Fen,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub interest_segments: Vec<Segment>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub penalty_segments: Vec<Segment>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub compound_segments: Vec<Segment>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub interest_due: Vec<DueItem>,
    #[serde(default, skip_serializing_if = "Fen::is_zero")]
    pub penalty_fen: Fen,
    #[serde(default, skip_serializing_if = "Fen::is_zero")]
    pub compound_fen: Fen,
    /// The penalty and compound interest settled and not yet paid, by the date each was
    /// settled (its due date), oldest first: their amounts sum to `penalty_fen` and
    /// `compound_fen` together. Unpaid, they are overdue from the day after, as interest is
    /// (a misused loan accrues penalty alone, and its unpaid penalty makes it overdue). Stored
    /// only when not empty; a state stored before 2026-12-02 has none (its charges then make
    /// nothing overdue, as they did then).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub charges_due: Vec<DueItem>,
    #[serde(default, with = "iso_opt", skip_serializing_if = "Option::is_none")]
    pub misuse_since: Option<NaiveDate>,
    /// The misuse mark's own date where it is before `misuse_since` (a mark on a settlement 20th
    /// whose point was settled first takes the misuse rate from the 21st): a clawback dated on
    /// the mark's day is after the mark ([`Servicing::misuse_marked_on`]). Stored only then.
    #[serde(default, with = "iso_opt", skip_serializing_if = "Option::is_none")]
    pub marked_on: Option<NaiveDate>,
    /// The misuse mark says falsely obtained (骗贷), not used against its purpose (a label: the
    /// effects are the same).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub falsely_obtained: bool,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub extensions: u32,
    /// Totals over the loan's life.
    #[serde(default, skip_serializing_if = "Fen::is_zero")]
    pub interest_settled_fen: Fen,
    #[serde(default, skip_serializing_if = "Fen::is_zero")]
    pub penalty_settled_fen: Fen,
    #[serde(default, skip_serializing_if = "Fen::is_zero")]
    pub compound_settled_fen: Fen,
    #[serde(default, skip_serializing_if = "Fen::is_zero")]
    pub penalty_paid_fen: Fen,
    #[serde(default, skip_serializing_if = "Fen::is_zero")]
    pub compound_paid_fen: Fen,
    #[serde(default, skip_serializing_if = "Fen::is_zero")]
    pub written_off_fen: Fen,
    /// Of `written_off_fen`, what was recovered since (`LoanEvent::Recovered`).
    #[serde(default, skip_serializing_if = "Fen::is_zero")]
    pub recovered_fen: Fen,
    /// Of the interest paid, the subsidy the bank netted (直补; `LoanEvent::Repaid`).
    #[serde(default, skip_serializing_if = "Fen::is_zero")]
    pub subsidy_netted_fen: Fen,
    /// The day a closed loan closed (repaid or written off), kept once a later event (a
    /// recovery, a misuse mark) dates its last event after it (`LoanState::lent_until`); none
    /// before such an event.
    #[serde(default, with = "iso_opt", skip_serializing_if = "Option::is_none")]
    pub closed_on: Option<NaiveDate>,
    /// Amortising loans: the instalments not yet due, with their scheduled principal parts.
    /// Their parts always sum to the principal not yet due (see the module doc).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub instalments: Vec<PlannedInstalment>,
    /// Amortising loans: instalment principal fallen due and unpaid, oldest first. Part of
    /// `principal_fen`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub principal_due: Vec<DueItem>,
    /// The day the county's risk fund compensated the bank for the loan
    /// ([`crate::domain::risk_fund`]), if it did: set by the compensation, not by an event of
    /// the loan. No event but a settlement may be dated before it
    /// ([`crate::domain::loan::LoanState::plan`]): the compensation's days overdue and loss
    /// were worked out from the loan as it stood that day, and what the household pays after
    /// it is what the bank recovers. Stored only when set.
    #[serde(default, with = "iso_opt", skip_serializing_if = "Option::is_none")]
    pub compensated_on: Option<NaiveDate>,
    /// Whether the mark of `compensated_on` is a bank's claim the finance office has neither
    /// paid nor rejected yet ([`crate::domain::risk_fund::FundEvent::Claimed`]; since
    /// 2026-12-07 night): set by the claim, cleared by its payment or its rejection (which
    /// clears the mark too). While it is set, what the contract has not paid out still holds
    /// room under the fund's leverage limit ([`crate::domain::risk_fund::Exposure::of_loan`]):
    /// a rejected claim lets the loan pay it out again. Stored only when set.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub claim_pending: bool,
    /// The day of the last collective repayment of the loan's pool ([`crate::domain::pool`];
    /// since 2026-12-07 night): set on every member by the pool's repayment, not by an event
    /// of the loan. No event but a settlement is dated before it
    /// ([`crate::domain::loan::LoanState::plan`]): the repayment was split by what each member
    /// owed that day, and a member's event dated before it, recorded after it (a payout of a
    /// member that owed nothing then, a repayment of one whose part came to nothing), would
    /// change what it owed. Stored only when set.
    #[serde(default, with = "iso_opt", skip_serializing_if = "Option::is_none")]
    pub pool_repaid_on: Option<NaiveDate>,
    /// The day of the last transfer of the loan's money to its pool's partner
    /// ([`crate::domain::pool::PoolEvent::Transferred`]; since 2026-12-07 late night): set by the pool's
    /// transfer, not by an event of the loan. No event but a settlement is dated before it
    /// ([`crate::domain::loan::LoanState::plan`]): the transfer was held within the principal
    /// the loan had outstanding that day, and a repayment or a write-off dated before it,
    /// recorded after it, would have the partner hold money the household no longer had.
    /// Stored only when set.
    #[serde(default, with = "iso_opt", skip_serializing_if = "Option::is_none")]
    pub pool_transferred_on: Option<NaiveDate>,
    /// A written-off loan's day it fell overdue ([`Self::overdue_since`] on its write-off's
    /// date, before its dues were cleared), from which the risk fund counts its days overdue
    /// when it is claimed after the write-off (since 2026-12-07; none for a write-off recorded
    /// before, whose event does not record it). Stored only when set.
    #[serde(default, with = "iso_opt", skip_serializing_if = "Option::is_none")]
    pub written_off_overdue_since: Option<NaiveDate>,
}

/// An instalment of an amortising loan not yet due.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlannedInstalment {
    pub number: u32,
    /// The period's first day: the previous due date of the contract's (the contract date for
    /// the first), before the payout for a loan paid out within its first period.
    #[serde(with = "iso")]
    pub period_start: NaiveDate,
    #[serde(with = "iso")]
    pub due_date: NaiveDate,
    /// The principal that falls due on `due_date`, as scheduled less any prepayment (which
    /// shortens the schedule from its end).
    pub principal_fen: Fen,
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

/// Pays `amount` off `items`, oldest first, and drops those paid in full (what is left past
/// them, where items stored before they were kept are missing, pays nothing more).
fn pay_oldest_first(items: &mut Vec<DueItem>, amount: Fen) -> Result<(), ServicingError> {
    let mut left = amount;
    for item in items.iter_mut() {
        let x = item.amount_fen.min(left);
        item.amount_fen = sub(item.amount_fen, x)?;
        left = sub(left, x)?;
    }
    items.retain(|i| i.amount_fen.is_positive());
    Ok(())
}

fn add(a: Fen, b: Fen) -> Result<Fen, ServicingError> {
    a.checked_add(b).ok_or(ServicingError::Overflow)
}

fn sub(a: Fen, b: Fen) -> Result<Fen, ServicingError> {
    a.checked_sub(b).ok_or(ServicingError::Overflow)
}

fn day_after(d: NaiveDate) -> Result<NaiveDate, ServicingError> {
    d.succ_opt().ok_or(ServicingError::DateOutOfRange)
}

fn push_segment(
    list: &mut Vec<Segment>,
    from: NaiveDate,
    to: NaiveDate,
    base: Fen,
    rate: AnnualRate,
) -> Result<(), ServicingError> {
    if base.0 <= 0 || to <= from {
        return Ok(());
    }
    let days = u32::try_from((to - from).num_days()).map_err(|_| ServicingError::Overflow)?;
    let to_inclusive = to.pred_opt().ok_or(ServicingError::DateOutOfRange)?;
    if let Some(last) = list.last_mut() {
        let contiguous = last.to_inclusive.succ_opt() == Some(from);
        if contiguous && last.base_fen == base && last.annual_rate == rate {
            last.days = last.days.checked_add(days).ok_or(ServicingError::Overflow)?;
            last.to_inclusive = to_inclusive;
            last.jishu = last
                .jishu
                .checked_add(base.0.checked_mul(i64::from(days)).ok_or(ServicingError::Overflow)?)
                .ok_or(ServicingError::Overflow)?;
            return Ok(());
        }
    }
    list.push(Segment {
        from,
        to_inclusive,
        days,
        base_fen: base,
        annual_rate: rate,
        jishu: base.0.checked_mul(i64::from(days)).ok_or(ServicingError::Overflow)?,
    });
    Ok(())
}

/// Sums segments exactly (Σ 积数 × rate, divided by 360 once) and rounds; `None` when empty.
pub fn settle_segments(
    segments: &[Segment],
    rounding: Rounding,
) -> Result<Option<Accrual>, ServicingError> {
    if segments.is_empty() {
        return Ok(None);
    }
    let mut numerator = Decimal::ZERO;
    for s in segments {
        numerator = Decimal::from(s.jishu)
            .checked_mul(s.annual_rate.value())
            .and_then(|x| numerator.checked_add(x))
            .ok_or(ServicingError::Overflow)?;
    }
    let unrounded = numerator
        .checked_div(Decimal::from(AnnualRate::DAYS_PER_YEAR))
        .ok_or(ServicingError::Overflow)?;
    let amount = Fen::from_decimal(unrounded, rounding).ok_or(ServicingError::Overflow)?;
    Ok(Some(Accrual {
        segments: segments.to_vec(),
        unrounded_fen: unrounded.normalize(),
        rounding,
        amount_fen: amount,
        periodic: None,
    }))
}

/// Sums segments on the periodic-rate basis of an amortising loan: Σ 积数 × rate /
/// (periods per year × days of the period), rounded once; `None` when empty.
///
/// When the segments hold one rate and their 积数 is a whole number of fen per day of the
/// period (always so for a borrower who pays on time: one base for the whole period), this is
/// computed as average principal × rate / periods per year, the very expression of
/// [`super::schedule`], so that the figure equals the schedule's to the last digit.
pub fn settle_periodic(
    segments: &[Segment],
    basis: PeriodicBasis,
    rounding: Rounding,
) -> Result<Option<Accrual>, ServicingError> {
    let Some(first) = segments.first() else { return Ok(None) };
    if basis.period_days == 0 || basis.periods_per_year == 0 {
        return Err(ServicingError::Overflow);
    }
    let mut jishu: i64 = 0;
    let mut numerator = Decimal::ZERO;
    for s in segments {
        jishu = jishu.checked_add(s.jishu).ok_or(ServicingError::Overflow)?;
        numerator = Decimal::from(s.jishu)
            .checked_mul(s.annual_rate.value())
            .and_then(|x| numerator.checked_add(x))
            .ok_or(ServicingError::Overflow)?;
    }
    let per_year = Decimal::from(basis.periods_per_year);
    let days = i64::from(basis.period_days);
    let one_rate = segments.iter().all(|s| s.annual_rate == first.annual_rate);
    let unrounded = if one_rate {
        periodic_interest(jishu, first.annual_rate.value(), per_year, days)
    } else {
        per_year.checked_mul(Decimal::from(days)).and_then(|d| numerator.checked_div(d))
    }
    .ok_or(ServicingError::Overflow)?;
    let amount = Fen::from_decimal(unrounded, rounding).ok_or(ServicingError::Overflow)?;
    Ok(Some(Accrual {
        segments: segments.to_vec(),
        unrounded_fen: unrounded.normalize(),
        rounding,
        amount_fen: amount,
        periodic: Some(basis),
    }))
}

/// Instalment periods per year of an amortising loan: 12 for monthly, 4 for quarterly.
fn periods_per_year(frequency: SettlementFrequency) -> u32 {
    match frequency {
        SettlementFrequency::Quarterly => 4,
        _ => 12,
    }
}

impl Servicing {
    /// The state right after the first disbursement on `date`.
    pub fn start(
        terms: &ServicingTerms,
        date: NaiveDate,
        maturity: NaiveDate,
        amount: Fen,
    ) -> Servicing {
        let mut s = Servicing {
            maturity_date: Some(maturity),
            accrued_through: Some(date),
            principal_fen: amount,
            ..Servicing::default()
        };
        s.next_point = Some(s.first_point_from(terms, date));
        s
    }

    /// The state right after the disbursement of an amortising loan on `date`, whose schedule
    /// (built by [`super::schedule::build_schedule_paid_out`] for the disbursed principal paid
    /// out on `date`) fixes the instalments and maturity.
    pub fn start_instalments(
        terms: &ServicingTerms,
        date: NaiveDate,
        amount: Fen,
        schedule: &Schedule,
    ) -> Result<Servicing, ServicingError> {
        let instalments: Vec<PlannedInstalment> = schedule
            .instalments
            .iter()
            .map(|i| PlannedInstalment {
                number: i.number,
                period_start: i.period_start,
                due_date: i.due_date,
                principal_fen: i.principal_due,
            })
            .collect();
        let scheduled = Fen::checked_sum(instalments.iter().map(|i| i.principal_fen))
            .ok_or(ServicingError::Overflow)?;
        if scheduled != amount || instalments.is_empty() {
            return Err(ServicingError::ScheduleMismatch);
        }
        let mut s = Servicing {
            maturity_date: Some(schedule.maturity),
            accrued_through: Some(date),
            principal_fen: amount,
            instalments,
            ..Servicing::default()
        };
        s.next_point = Some(s.first_point_from(terms, date));
        Ok(s)
    }

    fn maturity(&self) -> NaiveDate {
        self.maturity_date.unwrap_or(NaiveDate::MAX)
    }

    /// Instalment principal due and unpaid.
    pub fn principal_due_fen(&self) -> Result<Fen, ServicingError> {
        Fen::checked_sum(self.principal_due.iter().map(|i| i.amount_fen))
            .ok_or(ServicingError::Overflow)
    }

    /// The first settlement point on or after `date`.
    fn first_point_from(&self, terms: &ServicingTerms, date: NaiveDate) -> NaiveDate {
        let maturity = self.maturity();
        if let Some(next) = self.instalments.first() {
            // Amortising: the next instalment's due date (instalments are removed as they fall
            // due, so the first one left is the next).
            return next.due_date;
        }
        if date <= maturity {
            // A 20th before the last interest-bearing day (the day before maturity) closes a
            // period; the last period is settled at maturity, with the principal, also when it
            // ends on a 20th (maturity on the 21st), as the schedule has it
            // ([`super::calendar::interest_periods`]).
            match settlement_on_or_after(date, terms.frequency) {
                Some(s) if s.succ_opt().is_some_and(|next| next < maturity) => s,
                _ => maturity,
            }
        } else {
            // After maturity penalty and compound settle on the calendar's 20ths; a loan with no
            // calendar (利随本清) settles them quarterly.
            let freq = match terms.frequency {
                SettlementFrequency::AtMaturity => SettlementFrequency::Quarterly,
                f => f,
            };
            settlement_on_or_after(date, freq).unwrap_or(NaiveDate::MAX)
        }
    }

    /// Whether the loan's principal bears penalty instead of interest on `day`: past maturity,
    /// or misused.
    fn breached_on(&self, day: NaiveDate) -> bool {
        day >= self.maturity() || self.is_misused_on(day)
    }

    fn is_misused_on(&self, day: NaiveDate) -> bool {
        self.misuse_since.is_some_and(|m| day >= m)
    }

    fn penalty_rate(&self, terms: &ServicingTerms, day: NaiveDate) -> AnnualRate {
        if self.is_misused_on(day) {
            terms.rate.with_uplift(terms.misuse_uplift)
        } else {
            terms.rate.with_uplift(terms.overdue_uplift)
        }
    }

    /// The first day unpaid `item` compounds: the day after its period's last day, plus the
    /// grace days. A 20th's period ends on its due date: it compounds from the 21st, with two
    /// days of grace from the 23rd. An instalment's or maturity's period ends the day before
    /// its due date: it compounds from the due date on, as principal falling due that day bears
    /// penalty from it (days = payment date − due date), with two days of grace from two days
    /// later. (Until 2026-12 the grace days counted from the due date for 20ths too, so that a
    /// day of grace kept no day of compound off.)
    fn compound_from(&self, terms: &ServicingTerms, item: &DueItem) -> NaiveDate {
        // A 20th's: interest of a loan settled on 20ths, due before maturity, but for the
        // interest due at a maturity an extension moved on (marked by `extend`).
        let period_ends_on_due_date = !terms.method.is_amortising()
            && terms.frequency != SettlementFrequency::AtMaturity
            && !item.at_old_maturity
            && item.due_date < self.maturity();
        let days = i64::from(terms.grace_days) + i64::from(period_ends_on_due_date);
        item.due_date.checked_add_signed(Duration::days(days)).unwrap_or(NaiveDate::MAX)
    }

    /// The first day `item` is overdue: the day after its due date and grace days.
    fn overdue_from(&self, terms: &ServicingTerms, item: &DueItem) -> Option<NaiveDate> {
        item.due_date.checked_add_signed(Duration::days(i64::from(terms.grace_days) + 1))
    }

    /// Accrues the days from `accrued_through` to `to` (exclusive).
    pub fn advance(&mut self, terms: &ServicingTerms, to: NaiveDate) -> Result<(), ServicingError> {
        let Some(mut from) = self.accrued_through else { return Ok(()) };
        let maturity = self.maturity();
        while from < to {
            let mut next = to;
            let mut cut = |b: NaiveDate| {
                if b > from && b < next {
                    next = b;
                }
            };
            cut(maturity);
            if let Some(m) = self.misuse_since {
                cut(m);
            }
            for item in &self.interest_due {
                cut(self.compound_from(terms, item));
            }
            let breached = self.breached_on(from);
            let penalty_rate = self.penalty_rate(terms, from);
            if breached {
                push_segment(
                    &mut self.penalty_segments,
                    from,
                    next,
                    self.principal_fen,
                    penalty_rate,
                )?;
            } else {
                // Instalment principal due (all of it past its due date, since items fall due
                // at points the accrual has reached) bears penalty instead of interest.
                let due = self.principal_due_fen()?;
                let current = sub(self.principal_fen, due)?;
                push_segment(&mut self.interest_segments, from, next, current, terms.rate)?;
                push_segment(&mut self.penalty_segments, from, next, due, penalty_rate)?;
            }
            let unpaid = Fen::checked_sum(
                self.interest_due
                    .iter()
                    .filter(|i| self.compound_from(terms, i) <= from)
                    .map(|i| i.amount_fen),
            )
            .ok_or(ServicingError::Overflow)?;
            // DESIGN.md: unpaid interest compounds at the contract rate within the term and at
            // the penalty rate once overdue. Within the term misuse changes the penalty on
            // principal, not this; past maturity this is the loan's penalty rate, a misused
            // loan's the misuse rate (the higher of the two where both apply, as the PBoC's
            // rules on penalty interest have it).
            let compound_rate = if from >= maturity { penalty_rate } else { terms.rate };
            push_segment(&mut self.compound_segments, from, next, unpaid, compound_rate)?;
            from = next;
        }
        self.accrued_through = Some(self.accrued_through.map_or(to, |a| a.max(to)));
        Ok(())
    }

    /// Settles penalty and compound accrued so far into their buckets, due on `due`.
    fn settle_charges(
        &mut self,
        terms: &ServicingTerms,
        due: NaiveDate,
    ) -> Result<(Option<Accrual>, Option<Accrual>), ServicingError> {
        let penalty = settle_segments(&std::mem::take(&mut self.penalty_segments), terms.rounding)?;
        let compound =
            settle_segments(&std::mem::take(&mut self.compound_segments), terms.rounding)?;
        let mut settled = Fen::ZERO;
        if let Some(p) = &penalty {
            self.penalty_fen = add(self.penalty_fen, p.amount_fen)?;
            self.penalty_settled_fen = add(self.penalty_settled_fen, p.amount_fen)?;
            settled = add(settled, p.amount_fen)?;
        }
        if let Some(c) = &compound {
            self.compound_fen = add(self.compound_fen, c.amount_fen)?;
            self.compound_settled_fen = add(self.compound_settled_fen, c.amount_fen)?;
            settled = add(settled, c.amount_fen)?;
        }
        if settled.is_positive() {
            match self.charges_due.last_mut() {
                Some(last) if last.due_date == due => {
                    last.amount_fen = add(last.amount_fen, settled)?
                }
                _ => self.charges_due.push(DueItem {
                    due_date: due,
                    amount_fen: settled,
                    at_old_maturity: false,
                }),
            }
        }
        Ok((penalty, compound))
    }

    /// Settles the running period's interest as an item due on `due`.
    fn settle_interest(
        &mut self,
        terms: &ServicingTerms,
        due: NaiveDate,
    ) -> Result<Option<Accrual>, ServicingError> {
        let segments = std::mem::take(&mut self.interest_segments);
        let interest = self.interest_accrual(terms, &segments)?;
        if let Some(i) = &interest {
            if i.amount_fen.is_positive() {
                self.interest_due.push(DueItem {
                    due_date: due,
                    amount_fen: i.amount_fen,
                    at_old_maturity: false,
                });
            }
            self.interest_settled_fen = add(self.interest_settled_fen, i.amount_fen)?;
        }
        Ok(interest)
    }

    /// The running period's interest from `segments`: on the periodic-rate basis for an
    /// amortising loan within its instalments, else on the day basis.
    fn interest_accrual(
        &self,
        terms: &ServicingTerms,
        segments: &[Segment],
    ) -> Result<Option<Accrual>, ServicingError> {
        match self.instalments.first() {
            Some(next) if terms.method.is_amortising() => {
                let days = (next.due_date - next.period_start).num_days();
                let basis = PeriodicBasis {
                    instalment: next.number,
                    periods_per_year: periods_per_year(terms.frequency),
                    period_days: u32::try_from(days).map_err(|_| ServicingError::Overflow)?,
                };
                settle_periodic(segments, basis, terms.rounding)
            }
            _ => settle_segments(segments, terms.rounding),
        }
    }

    fn settle_point(
        &mut self,
        terms: &ServicingTerms,
        point: NaiveDate,
    ) -> Result<SettlementPoint, ServicingError> {
        let maturity = self.maturity();
        let instalment_due = self.instalments.first().is_some_and(|i| i.due_date == point);
        // The maturity period and instalment periods end the day before their point; other
        // points include their day.
        let accrue_to = if point == maturity || instalment_due { point } else { day_after(point)? };
        self.advance(terms, accrue_to)?;
        let interest = self.settle_interest(terms, point)?;
        let (penalty, compound) = self.settle_charges(terms, point)?;
        let principal = if instalment_due {
            let instalment = self.instalments.remove(0);
            let current = sub(self.principal_fen, self.principal_due_fen()?)?;
            // The last instalment takes all that is left.
            let amount = if self.instalments.is_empty() {
                current
            } else {
                instalment.principal_fen.min(current)
            };
            if amount.is_positive() {
                self.principal_due.push(DueItem {
                    due_date: point,
                    amount_fen: amount,
                    at_old_maturity: false,
                });
            }
            Some(InstalmentPrincipal { instalment: instalment.number, amount_fen: amount })
        } else {
            None
        };
        self.next_point = Some(self.first_point_from(terms, day_after(point)?));
        Ok(SettlementPoint { date: point, interest, penalty, compound, principal })
    }

    /// Settles every point up to `through` (inclusive).
    pub fn settle_through(
        &mut self,
        terms: &ServicingTerms,
        through: NaiveDate,
    ) -> Result<Vec<SettlementPoint>, ServicingError> {
        let mut points = Vec::new();
        while let Some(p) = self.next_point {
            if p > through || self.is_closed() {
                break;
            }
            if points.len() == POINTS_PER_EVENT_MAX {
                return Err(ServicingError::TooManyPoints);
            }
            points.push(self.settle_point(terms, p)?);
        }
        Ok(points)
    }

    fn is_closed(&self) -> bool {
        self.principal_fen == Fen::ZERO
            && self.principal_due.is_empty()
            && self.interest_due.is_empty()
            && self.penalty_fen == Fen::ZERO
            && self.compound_fen == Fen::ZERO
    }

    /// Settled interest due on `date`: (overdue, current).
    pub fn interest_owed(
        &self,
        terms: &ServicingTerms,
        date: NaiveDate,
    ) -> Result<(Fen, Fen), ServicingError> {
        let mut overdue = Fen::ZERO;
        let mut current = Fen::ZERO;
        for i in &self.interest_due {
            if self.overdue_from(terms, i).is_some_and(|from| date >= from) {
                overdue = add(overdue, i.amount_fen)?;
            } else {
                current = add(current, i.amount_fen)?;
            }
        }
        Ok((overdue, current))
    }

    /// Principal due on `date`: (overdue, current). Instalment principal by its due date, and
    /// the principal not in an instalment (all of a bullet or 利随本清 loan's) at the maturity
    /// in force: due on it, overdue after it. Until 2026-12-06 the latter was left out, so a
    /// bullet loan unpaid past its maturity showed no principal overdue.
    pub fn principal_owed(&self, date: NaiveDate) -> Result<(Fen, Fen), ServicingError> {
        let mut overdue = Fen::ZERO;
        let mut current = Fen::ZERO;
        for i in &self.principal_due {
            if date > i.due_date {
                overdue = add(overdue, i.amount_fen)?;
            } else {
                current = add(current, i.amount_fen)?;
            }
        }
        // What is not instalment principal fallen due falls due at the maturity.
        let at_maturity = sub(self.principal_fen, add(overdue, current)?)?;
        let maturity = self.maturity();
        if date > maturity {
            overdue = add(overdue, at_maturity)?;
        } else if date == maturity {
            current = add(current, at_maturity)?;
        }
        Ok((overdue, current))
    }

    /// The first day on which something owed is overdue, if anything is.
    pub fn overdue_since(&self, terms: &ServicingTerms) -> Option<NaiveDate> {
        let at_maturity =
            (self.principal_fen.is_positive()).then(|| self.maturity().succ_opt()).flatten();
        let instalments = self.principal_due.iter().filter_map(|i| i.due_date.succ_opt()).min();
        let principal = [at_maturity, instalments].into_iter().flatten().min();
        let interest = self.interest_due.iter().filter_map(|i| self.overdue_from(terms, i)).min();
        let charges = self.charges_due.iter().filter_map(|i| self.overdue_from(terms, i)).min();
        [principal, interest, charges].into_iter().flatten().min()
    }

    /// Days overdue on `date` (0 when nothing is overdue then).
    pub fn days_overdue(&self, terms: &ServicingTerms, date: NaiveDate) -> i64 {
        match self.overdue_since(terms) {
            Some(since) if since <= date => (date - since).num_days() + 1,
            _ => 0,
        }
    }

    /// Pays `amount` on `date`, after [`Self::settle_through`]`(date)`. Returns the charges
    /// settled at `date`, the early-settled interest (on a full payoff), and the allocation.
    pub fn repay(
        &mut self,
        terms: &ServicingTerms,
        date: NaiveDate,
        amount: Fen,
    ) -> Result<Repayment, RepayError> {
        self.advance(terms, date)?;
        let (penalty, compound) = self.settle_charges(terms, date)?;
        let early = self.interest_accrual(terms, &self.interest_segments)?;
        let early_fen = early.as_ref().map_or(Fen::ZERO, |a| a.amount_fen);
        let (overdue, current) = self.interest_owed(terms, date)?;
        let before_principal =
            Fen::checked_sum([self.penalty_fen, self.compound_fen, overdue, current])
                .ok_or(ServicingError::Overflow)?;
        let payoff = Fen::checked_sum([before_principal, early_fen, self.principal_fen])
            .ok_or(ServicingError::Overflow)?;
        if amount > payoff {
            return Err(RepayError::ExceedsPayoff { payoff });
        }
        let full = amount == payoff;
        let early_interest = if full { self.settle_interest(terms, date)? } else { None };
        let (overdue, current) = self.interest_owed(terms, date)?;
        let mut left = amount;
        // Each share between 0 and what is left (a bucket is never negative but as read back
        // from an altered row), so that `left` stays between 0 and `amount`.
        let mut take = |owed: Fen| {
            let x = owed.max(Fen::ZERO).min(left);
            left = Fen(left.0 - x.0);
            x
        };
        let mut allocation = Allocation {
            penalty_fen: take(self.penalty_fen),
            compound_fen: take(self.compound_fen),
            overdue_interest_fen: take(overdue),
            current_interest_fen: take(current),
            principal_fen: take(self.principal_fen),
            due_principal_fen: Fen::ZERO,
        };
        allocation.due_principal_fen = allocation.principal_fen.min(self.principal_due_fen()?);
        if !full
            && allocation.principal_fen == self.principal_fen
            && self.principal_fen.is_positive()
        {
            return Err(RepayError::PayoffRequired { payoff });
        }
        self.penalty_fen = sub(self.penalty_fen, allocation.penalty_fen)?;
        self.compound_fen = sub(self.compound_fen, allocation.compound_fen)?;
        self.penalty_paid_fen = add(self.penalty_paid_fen, allocation.penalty_fen)?;
        self.compound_paid_fen = add(self.compound_paid_fen, allocation.compound_fen)?;
        // Charges left by a state stored before the items were kept are the oldest: paid
        // first, before the items.
        let paid = add(allocation.penalty_fen, allocation.compound_fen)?;
        let owed_before = Fen::checked_sum([self.penalty_fen, self.compound_fen, paid])
            .ok_or(ServicingError::Overflow)?;
        let items = Fen::checked_sum(self.charges_due.iter().map(|i| i.amount_fen))
            .ok_or(ServicingError::Overflow)?;
        let untracked = sub(owed_before, items)?.max(Fen::ZERO);
        pay_oldest_first(&mut self.charges_due, sub(paid, paid.min(untracked))?)?;
        // Oldest first: overdue items are the oldest.
        let interest = allocation.interest_fen().ok_or(ServicingError::Overflow)?;
        pay_oldest_first(&mut self.interest_due, interest)?;
        self.pay_principal(allocation.principal_fen)?;
        if full {
            self.instalments.clear();
            self.interest_segments.clear();
            self.compound_segments.clear();
            self.penalty_segments.clear();
            self.next_point = None;
        }
        Ok(Repayment {
            charges: SettlementPoint {
                date,
                interest: early_interest,
                penalty,
                compound,
                principal: None,
            },
            allocation,
            payoff: full,
        })
    }

    /// Reduces principal by `amount`: instalment principal due first (oldest first), then the
    /// principal not yet due, taken from the last instalments first (a prepayment shortens the
    /// schedule and leaves the earlier instalments' principal as scheduled).
    fn pay_principal(&mut self, amount: Fen) -> Result<(), ServicingError> {
        self.principal_fen = sub(self.principal_fen, amount)?;
        let mut left = sub(amount, self.principal_due_fen()?)?.max(Fen::ZERO);
        pay_oldest_first(&mut self.principal_due, amount)?;
        for instalment in self.instalments.iter_mut().rev() {
            let x = instalment.principal_fen.min(left);
            instalment.principal_fen = sub(instalment.principal_fen, x)?;
            left = sub(left, x)?;
        }
        Ok(())
    }

    /// Writes off everything owed on `date`, after [`Self::settle_through`]`(date)`.
    pub fn write_off(
        &mut self,
        terms: &ServicingTerms,
        date: NaiveDate,
    ) -> Result<(SettlementPoint, Allocation), ServicingError> {
        self.advance(terms, date)?;
        let interest = self.settle_interest(terms, date)?;
        let (penalty, compound) = self.settle_charges(terms, date)?;
        let (overdue, current) = self.interest_owed(terms, date)?;
        let allocation = Allocation {
            penalty_fen: self.penalty_fen,
            compound_fen: self.compound_fen,
            overdue_interest_fen: overdue,
            current_interest_fen: current,
            principal_fen: self.principal_fen,
            due_principal_fen: self.principal_due_fen()?,
        };
        self.written_off_fen = allocation.total().ok_or(ServicingError::Overflow)?;
        self.penalty_fen = Fen::ZERO;
        self.compound_fen = Fen::ZERO;
        self.charges_due.clear();
        self.interest_due.clear();
        self.principal_due.clear();
        self.instalments.clear();
        self.principal_fen = Fen::ZERO;
        self.next_point = None;
        Ok((SettlementPoint { date, interest, penalty, compound, principal: None }, allocation))
    }

    /// Adds principal disbursed on `date` (after accruing the days before it). The tranche bears
    /// interest from `date` on (算头). When the accrual has passed `date` already (a settlement
    /// 20th, whose point accrues the day itself and was settled first, by the day's run or by
    /// this disbursement), the tranche's days it passed are accrued into the running period,
    /// so that a tranche paid out on a 20th bears that day whether the run came first or not.
    pub fn add_principal(
        &mut self,
        terms: &ServicingTerms,
        date: NaiveDate,
        amount: Fen,
    ) -> Result<(), ServicingError> {
        self.advance(terms, date)?;
        if let Some(through) = self.accrued_through
            && through > date
        {
            self.accrue_passed_days(terms, date, through, amount)?;
        }
        self.principal_fen = add(self.principal_fen, amount)?;
        Ok(())
    }

    /// Accrues `base` of principal over the days from `from` to `to` (exclusive), which the
    /// accrual has passed already, into the running period: as interest, or as penalty on the
    /// days the loan was past maturity or misused, as [`Servicing::advance`] would have.
    fn accrue_passed_days(
        &mut self,
        terms: &ServicingTerms,
        from: NaiveDate,
        to: NaiveDate,
        base: Fen,
    ) -> Result<(), ServicingError> {
        let maturity = self.maturity();
        let mut day = from;
        while day < to {
            let next = [Some(maturity), self.misuse_since]
                .into_iter()
                .flatten()
                .filter(|&b| b > day && b < to)
                .min()
                .unwrap_or(to);
            if self.breached_on(day) {
                let rate = self.penalty_rate(terms, day);
                push_segment(&mut self.penalty_segments, day, next, base, rate)?;
            } else {
                push_segment(&mut self.interest_segments, day, next, base, terms.rate)?;
            }
            day = next;
        }
        Ok(())
    }

    /// Moves maturity to `new_maturity` from `date` on.
    pub fn extend(
        &mut self,
        terms: &ServicingTerms,
        date: NaiveDate,
        new_maturity: NaiveDate,
    ) -> Result<(), ServicingError> {
        self.advance(terms, date)?;
        // Interest already settled at the maturity being moved (an extension recorded on the
        // maturity day, after that day's settlement) keeps its period's end.
        let old = self.maturity();
        for item in self.interest_due.iter_mut().filter(|i| i.due_date == old) {
            item.at_old_maturity = true;
        }
        self.maturity_date = Some(new_maturity);
        self.extensions = self.extensions.checked_add(1).ok_or(ServicingError::Overflow)?;
        // On the maturity day the accrual stands at that day, its point settled. The day itself
        // now bears interest in the next period: when maturity was a settlement 20th, a point
        // looked for from it would be that 20th again, a one-day period due the day it was
        // extended, overdue from the next, which nobody was asked to pay.
        let from = match self.accrued_through {
            Some(through) if through == old => through.succ_opt().unwrap_or(through),
            Some(through) => through,
            None => date,
        };
        self.next_point = Some(self.first_point_from(terms, from));
        Ok(())
    }

    /// Marks misuse from `date` on: principal accrues penalty at the misuse uplift instead of
    /// interest, from the first day the accrual has not passed, which `misuse_since` records:
    /// the day after a settlement 20th marked that day (its point, settled first, accrued the
    /// day as interest), so that a tranche paid out that day bears the day as interest too,
    /// whichever of the two was recorded first.
    pub fn mark_misuse(
        &mut self,
        terms: &ServicingTerms,
        date: NaiveDate,
    ) -> Result<(), ServicingError> {
        self.advance(terms, date)?;
        let since = self.accrued_through.map_or(date, |through| through.max(date));
        self.misuse_since = Some(since);
        self.marked_on = (date < since).then_some(date);
        Ok(())
    }

    /// The day the loan was marked misused, if it was: the mark's own date, which a clawback
    /// may be dated on (`misuse_since` may be the day after it).
    pub fn misuse_marked_on(&self) -> Option<NaiveDate> {
        self.marked_on.or(self.misuse_since)
    }

    /// What a misuse mark says the loan was, as messages name it.
    pub fn misuse_label(&self) -> &'static str {
        if self.falsely_obtained { "falsely obtained" } else { "misused" }
    }

    /// What paying everything off on `date` would take, without changing anything.
    pub fn quote(&self, terms: &ServicingTerms, date: NaiveDate) -> Result<Quote, ServicingError> {
        let mut s = self.clone();
        // Settle on a copy what the date has passed, so that the quote shows it as owed.
        s.settle_through(terms, date)?;
        s.advance(terms, date)?;
        s.settle_charges(terms, date)?;
        let accrued =
            s.interest_accrual(terms, &s.interest_segments)?.map_or(Fen::ZERO, |a| a.amount_fen);
        let (overdue, current) = s.interest_owed(terms, date)?;
        let (overdue_principal, current_principal) = s.principal_owed(date)?;
        let q = Quote {
            overdue_principal_fen: overdue_principal,
            current_principal_fen: current_principal,
            penalty_fen: s.penalty_fen,
            compound_fen: s.compound_fen,
            overdue_interest_fen: overdue,
            current_interest_fen: current,
            accrued_interest_fen: accrued,
            principal_fen: s.principal_fen,
            days_overdue: s.days_overdue(terms, date),
            next_point: s.next_point,
        };
        q.total().ok_or(ServicingError::Overflow)?;
        Ok(q)
    }
}

/// A payoff quote: everything owed on a date, by bucket.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Quote {
    pub penalty_fen: Fen,
    pub compound_fen: Fen,
    pub overdue_interest_fen: Fen,
    pub current_interest_fen: Fen,
    /// Interest of the running period, to the day before the date, that paying off would settle.
    pub accrued_interest_fen: Fen,
    /// All principal outstanding, instalment principal due included.
    pub principal_fen: Fen,
    /// Of `principal_fen`, principal past its due date: an instalment's, or at the maturity
    /// ([`Servicing::principal_owed`]).
    pub overdue_principal_fen: Fen,
    /// Of `principal_fen`, principal due on the date itself: an instalment's, or on the
    /// maturity day.
    pub current_principal_fen: Fen,
    pub days_overdue: i64,
    /// The first settlement point after the date (none once the loan has no more): the points
    /// the date has passed are counted above whether a run has recorded them or not.
    #[serde(skip)]
    pub next_point: Option<NaiveDate>,
}

impl Quote {
    pub fn total(&self) -> Option<Fen> {
        Fen::checked_sum([
            self.penalty_fen,
            self.compound_fen,
            self.overdue_interest_fen,
            self.current_interest_fen,
            self.accrued_interest_fen,
            self.principal_fen,
        ])
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Repayment {
    /// Penalty and compound settled on the repayment date, and the early-settled interest of a
    /// full payoff.
    pub charges: SettlementPoint,
    pub allocation: Allocation,
    pub payoff: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RepayError {
    #[error("the payment exceeds the {payoff} owed")]
    ExceedsPayoff { payoff: Fen },
    #[error("the payment would repay all principal but not all that is owed ({payoff})")]
    PayoffRequired { payoff: Fen },
    #[error(transparent)]
    Servicing(#[from] ServicingError),
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::date::parse_date;

    fn d(s: &str) -> NaiveDate {
        parse_date(s).unwrap()
    }

    fn terms() -> ServicingTerms {
        ServicingTerms {
            rate: AnnualRate::parse("0.0385").unwrap(),
            method: RepaymentMethod::Bullet,
            frequency: SettlementFrequency::Quarterly,
            overdue_uplift: Decimal::new(5, 1),
            misuse_uplift: Decimal::ONE,
            grace_days: 0,
            rounding: Rounding::HalfUp,
        }
    }

    use crate::domain::schedule::{ScheduleTerms, Term, build_schedule};
    use proptest::prelude::*;

    /// A settled loan's state as versions before change 78 stored it: every field written.
    const STORED_WHOLE: &str = r#"{"maturity_date":"2022-01-25","accrued_through":"2021-03-21","next_point":"2021-06-20","principal_fen":4999400,"interest_segments":[],"penalty_segments":[],"compound_segments":[],"interest_due":[{"due_date":"2021-03-20","amount_fen":29407}],"penalty_fen":0,"compound_fen":0,"misuse_since":null,"extensions":0,"interest_settled_fen":29407,"penalty_settled_fen":0,"compound_settled_fen":0,"penalty_paid_fen":0,"compound_paid_fen":0,"written_off_fen":0}"#;

    #[test]
    fn the_stored_state_leaves_out_empty_lists_and_zeros_and_reads_older_rows() {
        let old: Servicing = serde_json::from_str(STORED_WHOLE).unwrap();
        assert_eq!(old.principal_fen, Fen(4_999_400));
        assert_eq!(old.interest_settled_fen, Fen(29_407));
        assert_eq!(
            old.interest_due,
            vec![DueItem {
                due_date: d("2021-03-20"),
                amount_fen: Fen(29_407),
                at_old_maturity: false
            }]
        );
        let stored = serde_json::to_string(&old).unwrap();
        assert_eq!(
            stored,
            r#"{"maturity_date":"2022-01-25","accrued_through":"2021-03-21","next_point":"2021-06-20","principal_fen":4999400,"interest_due":[{"due_date":"2021-03-20","amount_fen":29407}],"interest_settled_fen":29407}"#
        );
        assert_eq!(serde_json::from_str::<Servicing>(&stored).unwrap(), old);

        // Every field that may be left out, set: written and read back.
        let segment = Segment {
            from: d("2021-03-21"),
            to_inclusive: d("2021-03-31"),
            days: 11,
            base_fen: Fen(5),
            annual_rate: AnnualRate::parse("0.05").unwrap(),
            jishu: 55,
        };
        let due = DueItem { due_date: d("2021-06-20"), amount_fen: Fen(7), at_old_maturity: true };
        let full = Servicing {
            interest_segments: vec![segment.clone()],
            penalty_segments: vec![segment.clone()],
            compound_segments: vec![segment],
            interest_due: vec![due.clone()],
            penalty_fen: Fen(1),
            compound_fen: Fen(2),
            misuse_since: Some(d("2021-04-01")),
            extensions: 1,
            penalty_settled_fen: Fen(3),
            compound_settled_fen: Fen(4),
            penalty_paid_fen: Fen(5),
            compound_paid_fen: Fen(6),
            written_off_fen: Fen(8),
            principal_due: vec![due],
            compensated_on: Some(d("2021-09-20")),
            claim_pending: true,
            pool_repaid_on: Some(d("2021-09-21")),
            pool_transferred_on: Some(d("2021-09-22")),
            written_off_overdue_since: Some(d("2021-06-21")),
            falsely_obtained: true,
            ..old
        };
        let stored = serde_json::to_string(&full).unwrap();
        assert_eq!(serde_json::from_str::<Servicing>(&stored).unwrap(), full);
        assert_eq!(
            serde_json::from_str::<Servicing>("{\"principal_fen\":0}").unwrap(),
            Servicing::default()
        );
    }

    fn schedule_terms(t: &ServicingTerms, principal: Fen, months: u32) -> ScheduleTerms {
        schedule_terms_on(t, principal, months, d("2021-01-25"))
    }

    fn schedule_terms_on(
        t: &ServicingTerms,
        principal: Fen,
        months: u32,
        disbursed: NaiveDate,
    ) -> ScheduleTerms {
        ScheduleTerms {
            principal,
            rate: t.rate,
            disbursed,
            term: Term::Months(months),
            method: t.method,
            frequency: t.frequency,
            rounding: t.rounding,
        }
    }

    /// 50,000.00 at 4.75% over 36 months from 2021-01-25, with `method` and `frequency`.
    fn amortising(
        method: RepaymentMethod,
        frequency: SettlementFrequency,
    ) -> (ServicingTerms, Schedule, Servicing) {
        let t = ServicingTerms {
            rate: AnnualRate::parse("0.0475").unwrap(),
            method,
            frequency,
            ..terms()
        };
        let schedule = build_schedule(&schedule_terms(&t, Fen(5_000_000), 36)).unwrap();
        let s =
            Servicing::start_instalments(&t, d("2021-01-25"), Fen(5_000_000), &schedule).unwrap();
        (t, schedule, s)
    }

    #[test]
    fn equal_instalments_paid_on_time_are_the_schedule() {
        let (t, schedule, mut s) =
            amortising(RepaymentMethod::EqualInstalment, SettlementFrequency::Monthly);
        assert_eq!(s.next_point, Some(d("2021-02-25")));
        assert_eq!(s.maturity_date, Some(d("2024-01-25")));
        // Each instalment 1,492.94. Interest = opening principal × 0.0475 / 12:
        // 5,000,000 → 19,791.67 → 19,792; 4,870,498 → 19,279.05 → 19,279;
        // 4,740,483 → 18,764.41 → 18,764. Principal = 149,294 − interest.
        let hand = [
            ("2021-02-25", 19_792, 129_502, 4_870_498),
            ("2021-03-25", 19_279, 130_015, 4_740_483),
            ("2021-04-25", 18_764, 130_530, 4_609_953),
        ];
        for (k, (due, interest, principal, remaining)) in hand.into_iter().enumerate() {
            let planned = &schedule.instalments[k];
            assert_eq!(
                (planned.interest_due.0, planned.principal_due.0, planned.remaining_principal.0),
                (interest, principal, remaining)
            );
            // Nothing falls due on the 20th: settlement points are the due dates.
            assert!(s.settle_through(&t, d(due).pred_opt().unwrap()).unwrap().is_empty());
            let points = s.settle_through(&t, d(due)).unwrap();
            assert_eq!(points.len(), 1);
            let p = &points[0];
            assert_eq!(
                (p.date, p.interest_fen().0, p.principal_due_fen().0),
                (d(due), interest, principal)
            );
            let working = p.interest.as_ref().unwrap();
            assert_eq!(working.periodic.unwrap().periods_per_year, 12);
            assert_eq!(working.segments.len(), 1);
            assert_eq!(p.penalty, None);
            let q = s.quote(&t, d(due)).unwrap();
            assert_eq!(q.total(), Some(Fen(149_294 + remaining)));
            assert_eq!((q.current_principal_fen.0, q.days_overdue), (principal, 0));
            let r = s.repay(&t, d(due), Fen(149_294)).unwrap();
            assert_eq!(r.allocation.current_interest_fen, Fen(interest));
            assert_eq!(r.allocation.principal_fen, Fen(principal));
            assert_eq!(r.allocation.due_principal_fen, Fen(principal));
            assert_eq!(s.principal_fen, Fen(remaining));
            assert!(s.principal_due.is_empty() && s.interest_due.is_empty());
            assert_eq!((s.penalty_fen, s.compound_fen), (Fen::ZERO, Fen::ZERO));
        }
        assert_eq!(s.next_point, Some(d("2021-05-25")));
    }

    /// The principal due a quote shows, left unpaid throughout: a bullet loan's all of it on
    /// its maturity day and overdue after it, none before; an amortising loan's instalments
    /// by their due dates, the last on the maturity, never counted twice (the principal not in
    /// an instalment is none once the last has fallen due).
    #[test]
    fn principal_owed_falls_due_at_the_maturity_or_by_instalment_never_twice() {
        let t = terms();
        let bullet = Servicing::start(&t, d("2021-01-25"), d("2022-01-25"), Fen(5_000_000));
        let owed = |s: &Servicing, t: &ServicingTerms, on: &str| {
            let q = s.quote(t, d(on)).unwrap();
            (q.overdue_principal_fen.0, q.current_principal_fen.0)
        };
        assert_eq!(owed(&bullet, &t, "2022-01-24"), (0, 0));
        assert_eq!(owed(&bullet, &t, "2022-01-25"), (0, 5_000_000));
        assert_eq!(owed(&bullet, &t, "2022-01-26"), (5_000_000, 0));
        let (t, schedule, s) =
            amortising(RepaymentMethod::EqualPrincipal, SettlementFrequency::Monthly);
        let parts: Vec<i64> = schedule.instalments.iter().map(|i| i.principal_due.0).collect();
        assert_eq!(owed(&s, &t, "2021-02-24"), (0, 0));
        assert_eq!(owed(&s, &t, "2021-02-25"), (0, parts[0]));
        assert_eq!(owed(&s, &t, "2021-03-25"), (parts[0], parts[1]));
        let last = schedule.instalments.len() - 1;
        let before_last: i64 = parts[..last].iter().sum();
        assert_eq!(owed(&s, &t, "2024-01-25"), (before_last, parts[last]), "the maturity");
        assert_eq!(owed(&s, &t, "2024-01-26"), (5_000_000, 0), "all of it, once");
    }

    #[test]
    fn an_instalment_paid_ten_days_late_bears_penalty_and_compound() {
        let (t, _, mut s) =
            amortising(RepaymentMethod::EqualInstalment, SettlementFrequency::Monthly);
        s.settle_through(&t, d("2021-02-25")).unwrap();
        assert_eq!(s.days_overdue(&t, d("2021-02-25")), 0);
        assert_eq!(s.days_overdue(&t, d("2021-02-26")), 1);
        s.settle_through(&t, d("2021-03-07")).unwrap();
        assert_eq!(s.days_overdue(&t, d("2021-03-07")), 10);
        // Unpaid 02-25 ..= 03-06 (10 days). Penalty on the principal part at 4.75% × 1.5:
        // 129,502 × 10 × 0.07125 / 360 = 256.31 → 256. Compound on the interest at 4.75%:
        // 19,792 × 10 × 0.0475 / 360 = 26.11 → 26.
        let q = s.quote(&t, d("2021-03-07")).unwrap();
        assert_eq!((q.penalty_fen, q.compound_fen), (Fen(256), Fen(26)));
        assert_eq!((q.overdue_interest_fen, q.overdue_principal_fen), (Fen(19_792), Fen(129_502)));
        // The running period's interest is on 4,870,498 only: the due part bears penalty.
        assert_eq!(q.principal_fen, Fen(5_000_000));
        let r = s.repay(&t, d("2021-03-07"), Fen(149_294 + 256 + 26)).unwrap();
        assert_eq!(r.charges.penalty_fen(), Fen(256));
        let penalty = r.charges.penalty.as_ref().unwrap();
        assert_eq!(penalty.segments[0].days, 10);
        assert_eq!(penalty.segments[0].base_fen, Fen(129_502));
        assert_eq!(
            r.allocation,
            Allocation {
                penalty_fen: Fen(256),
                compound_fen: Fen(26),
                overdue_interest_fen: Fen(19_792),
                current_interest_fen: Fen::ZERO,
                principal_fen: Fen(129_502),
                due_principal_fen: Fen(129_502),
            }
        );
        assert_eq!(s.days_overdue(&t, d("2021-03-07")), 0);
        // The next instalment is the schedule's: the late part bore penalty, not interest.
        let p = s.settle_through(&t, d("2021-03-25")).unwrap();
        assert_eq!((p[0].interest_fen(), p[0].principal_due_fen()), (Fen(19_279), Fen(130_015)));
        assert_eq!(p[0].penalty, None);
    }

    #[test]
    fn equal_principal_quarterly_and_a_prepayment_that_shortens_the_schedule() {
        let (t, schedule, mut s) =
            amortising(RepaymentMethod::EqualPrincipal, SettlementFrequency::Quarterly);
        // 5,000,000 / 12 = 416,666.67 → 416,667 a quarter; the last takes 416,663.
        // Interest = opening × 0.0475 / 4: 5,000,000 → 59,375 exactly.
        assert_eq!(schedule.instalments.len(), 12);
        let p = s.settle_through(&t, d("2021-04-25")).unwrap();
        assert_eq!(p.len(), 1);
        assert_eq!((p[0].interest_fen(), p[0].principal_due_fen()), (Fen(59_375), Fen(416_667)));
        assert_eq!(p[0].interest.as_ref().unwrap().periodic.unwrap().periods_per_year, 4);
        s.repay(&t, d("2021-04-25"), Fen(59_375 + 416_667)).unwrap();
        // 2021-05-10: 1,000,000 prepaid, taken from the last instalments (416,663 + 416,667 +
        // 166,670 of the tenth); the next instalments keep their 416,667.
        let r = s.repay(&t, d("2021-05-10"), Fen(1_000_000)).unwrap();
        assert_eq!(
            (r.allocation.principal_fen, r.allocation.due_principal_fen),
            (Fen(1_000_000), Fen::ZERO)
        );
        let parts: Vec<i64> = s.instalments.iter().map(|i| i.principal_fen.0).collect();
        assert_eq!(
            parts,
            vec![
                416_667, 416_667, 416_667, 416_667, 416_667, 416_667, 416_667, 416_667, 249_997, 0,
                0
            ]
        );
        // Quarter 04-25 ..= 07-24 (91 days): 4,583,333 × 15 + 3,583,333 × 76 = 341,083,303
        // fen-days; × 0.0475 / (4 × 91) = 44,509.50 → 44,509 (the schedule had 54,427).
        let p = s.settle_through(&t, d("2021-07-25")).unwrap();
        let i = p[0].interest.as_ref().unwrap();
        assert_eq!(i.segments.iter().map(|s| s.jishu).sum::<i64>(), 341_083_303);
        assert_eq!(i.periodic.unwrap().period_days, 91);
        assert_eq!((i.amount_fen, p[0].principal_due_fen()), (Fen(44_509), Fen(416_667)));
        assert_eq!(schedule.instalments[1].interest_due, Fen(54_427));
    }

    #[test]
    fn early_payoff_of_an_instalment_loan_settles_the_period_pro_rata() {
        let (t, _, mut s) =
            amortising(RepaymentMethod::EqualInstalment, SettlementFrequency::Monthly);
        // 01-25 ..= 02-09 is 16 of the period's 31 days:
        // 5,000,000 × 16 × 0.0475 / (12 × 31) = 10,215.05 → 10,215.
        let q = s.quote(&t, d("2021-02-10")).unwrap();
        assert_eq!((q.accrued_interest_fen, q.total()), (Fen(10_215), Some(Fen(5_010_215))));
        let r = s.repay(&t, d("2021-02-10"), Fen(5_010_215)).unwrap();
        assert!(r.payoff && s.is_closed());
        assert!(s.instalments.is_empty() && s.next_point.is_none());
    }

    #[test]
    fn unpaid_instalments_after_maturity_bear_penalty_on_all_principal() {
        let t = ServicingTerms {
            rate: AnnualRate::parse("0.0475").unwrap(),
            method: RepaymentMethod::EqualPrincipal,
            frequency: SettlementFrequency::Monthly,
            ..terms()
        };
        let schedule = build_schedule(&schedule_terms(&t, Fen(300_000), 3)).unwrap();
        let mut s =
            Servicing::start_instalments(&t, d("2021-01-25"), Fen(300_000), &schedule).unwrap();
        let p = s.settle_through(&t, d("2021-04-25")).unwrap();
        assert_eq!(p.len(), 3);
        assert_eq!(s.principal_due_fen(), Ok(Fen(300_000)));
        assert!(s.instalments.is_empty());
        // After maturity the points are the 20ths; the principal overdue since 02-26.
        assert_eq!(s.next_point, Some(d("2021-05-20")));
        assert_eq!(s.days_overdue(&t, d("2021-04-25")), 59);
        // Penalty 02-25 ..= 03-24 on 100,000; 03-25 ..= 04-24 on 200,000 (settled at the due
        // dates), then 04-25 ..= 05-20 on 300,000 at 7.125%.
        let p = s.settle_through(&t, d("2021-05-20")).unwrap();
        let pen = p[0].penalty.as_ref().unwrap();
        assert_eq!(pen.segments[0].base_fen, Fen(300_000));
        assert_eq!(pen.segments[0].days, 26);
    }

    #[test]
    fn interest_with_principal_is_one_period_settled_at_maturity() {
        let t = ServicingTerms {
            method: RepaymentMethod::InterestWithPrincipal,
            frequency: SettlementFrequency::AtMaturity,
            ..terms()
        };
        let schedule = build_schedule(&ScheduleTerms {
            term: Term::Maturity(d("2022-01-25")),
            ..schedule_terms(&t, Fen(5_000_000), 12)
        })
        .unwrap();
        let mut s = Servicing::start(&t, d("2021-01-25"), d("2022-01-25"), Fen(5_000_000));
        assert_eq!(s.next_point, Some(d("2022-01-25")));
        assert!(s.settle_through(&t, d("2022-01-24")).unwrap().is_empty());
        let p = s.settle_through(&t, d("2022-01-25")).unwrap();
        // 365 days on the day basis, rounded once: 195,173.61 → 195,174.
        assert_eq!(p[0].interest_fen(), schedule.instalments[0].interest_due);
        assert_eq!(p[0].interest_fen(), Fen(195_174));
        assert_eq!(p[0].principal, None);
        let r = s.repay(&t, d("2022-01-25"), Fen(5_195_174)).unwrap();
        assert!(r.payoff && s.is_closed());
    }

    /// An amortising loan's terms, principal, term in months and payout day: any day of
    /// 2020–2023 (a leap February, month ends whose day the next months lack, 20ths).
    fn arb_amortising() -> impl Strategy<Value = (ServicingTerms, Fen, u32, NaiveDate)> {
        let method = prop_oneof![
            Just(RepaymentMethod::EqualInstalment),
            Just(RepaymentMethod::EqualPrincipal)
        ];
        let frequency =
            prop_oneof![Just(SettlementFrequency::Monthly), Just(SettlementFrequency::Quarterly)];
        let rounding =
            prop_oneof![Just(Rounding::HalfUp), Just(Rounding::HalfEven), Just(Rounding::Down)];
        let money = (1i64..10_000_000, 0i64..10_000_000, 1u32..=12, 0i64..1_461);
        (method, frequency, rounding, money).prop_map(
            |(method, frequency, rounding, (principal, rate, quarters, day))| {
                let t = ServicingTerms {
                    rate: AnnualRate::new(Decimal::new(rate, 8)).unwrap(),
                    method,
                    frequency,
                    rounding,
                    ..terms()
                };
                let paid_out = d("2020-01-01") + chrono::Duration::days(day);
                (t, Fen(principal), quarters * 3, paid_out)
            },
        )
    }

    proptest! {
        #[test]
        fn paying_every_instalment_on_time_reproduces_the_schedule(
            (t, principal, months, paid_out) in arb_amortising()
        ) {
            let terms = schedule_terms_on(&t, principal, months, paid_out);
            let schedule = build_schedule(&terms).unwrap();
            let mut s = Servicing::start_instalments(&t, paid_out, principal, &schedule).unwrap();
            let mut interest = Fen::ZERO;
            for i in &schedule.instalments {
                if s.is_closed() {
                    // Only after a capped instalment took the last principal.
                    prop_assert_eq!(i.total_due, Fen::ZERO);
                    continue;
                }
                let points = s.settle_through(&t, i.due_date).unwrap();
                prop_assert_eq!(points.len(), 1);
                prop_assert_eq!(points[0].date, i.due_date);
                prop_assert_eq!(points[0].interest_fen(), i.interest_due);
                prop_assert_eq!(points[0].principal_due_fen(), i.principal_due);
                prop_assert_eq!(points[0].penalty_fen(), Fen::ZERO);
                prop_assert_eq!(points[0].compound_fen(), Fen::ZERO);
                interest = interest.checked_add(i.interest_due).unwrap();
                if i.total_due.is_positive() {
                    let r = s.repay(&t, i.due_date, i.total_due).unwrap();
                    prop_assert_eq!(r.allocation.principal_fen, i.principal_due);
                    prop_assert_eq!(r.allocation.current_interest_fen, i.interest_due);
                    prop_assert_eq!(r.payoff, i.remaining_principal == Fen::ZERO);
                }
                prop_assert_eq!(s.principal_fen, i.remaining_principal);
                prop_assert_eq!(s.days_overdue(&t, i.due_date), 0);
                // As stored in the loan's read model, whatever is left out.
                let stored = serde_json::to_string(&s).unwrap();
                prop_assert_eq!(&serde_json::from_str::<Servicing>(&stored).unwrap(), &s);
            }
            prop_assert!(s.is_closed());
            prop_assert_eq!(s.principal_fen, Fen::ZERO);
            prop_assert!(s.principal_due.is_empty() && s.interest_due.is_empty());
            prop_assert!(s.instalments.is_empty());
            prop_assert_eq!((s.penalty_fen, s.compound_fen), (Fen::ZERO, Fen::ZERO));
            prop_assert_eq!((s.penalty_settled_fen, s.compound_settled_fen), (Fen::ZERO, Fen::ZERO));
            prop_assert_eq!(s.interest_settled_fen, interest);
            prop_assert_eq!(Some(interest), schedule.total_interest());
        }
    }

    /// A bullet loan (利随本清 for the frequency `AtMaturity`) disbursed on any day, for any term.
    /// A bullet loan's terms (any frequency, rate and rounding), payout day (any of 2020–2023),
    /// term in months and principal.
    fn arb_bullet() -> impl Strategy<Value = (ServicingTerms, NaiveDate, u32, Fen)> {
        let frequency = prop_oneof![
            Just(SettlementFrequency::Monthly),
            Just(SettlementFrequency::Quarterly),
            Just(SettlementFrequency::Yearly),
            Just(SettlementFrequency::AtMaturity)
        ];
        let rounding =
            prop_oneof![Just(Rounding::HalfUp), Just(Rounding::HalfEven), Just(Rounding::Down)];
        let money = (1i64..10_000_000, 0i64..10_000_000);
        (frequency, rounding, money, 0i64..1_461, 1u32..=36).prop_map(
            |(frequency, rounding, (principal, rate), offset, months)| {
                let method = match frequency {
                    SettlementFrequency::AtMaturity => RepaymentMethod::InterestWithPrincipal,
                    _ => RepaymentMethod::Bullet,
                };
                let t = ServicingTerms {
                    method,
                    frequency,
                    rounding,
                    rate: AnnualRate::new(Decimal::new(rate, 8)).unwrap(),
                    ..terms()
                };
                (t, d("2020-01-01") + Duration::days(offset), months, Fen(principal))
            },
        )
    }

    proptest! {
        /// The servicing settles a bullet loan when and as its schedule (PreviewSchedule) says:
        /// one point on each due date, with the schedule's interest, and a borrower who pays
        /// each instalment on its due date is never overdue (also when maturity falls on the
        /// 21st: the last period then ends on the 20th and is due with the principal).
        #[test]
        fn paying_a_bullet_loans_schedule_on_time_keeps_it_current(
            (t, disbursed, months, principal) in arb_bullet()
        ) {
            let schedule =
                build_schedule(&schedule_terms_on(&t, principal, months, disbursed)).unwrap();
            let mut s = Servicing::start(&t, disbursed, schedule.maturity, principal);
            for i in &schedule.instalments {
                let points = s.settle_through(&t, i.due_date).unwrap();
                let dates: Vec<NaiveDate> = points.iter().map(|p| p.date).collect();
                prop_assert_eq!(dates, vec![i.due_date]);
                prop_assert_eq!(points[0].interest_fen(), i.interest_due);
                prop_assert_eq!(s.days_overdue(&t, i.due_date), 0);
                let r = s.repay(&t, i.due_date, i.total_due).unwrap();
                prop_assert_eq!(r.payoff, i.remaining_principal == Fen::ZERO);
                prop_assert_eq!(s.days_overdue(&t, i.due_date), 0);
            }
            prop_assert!(s.is_closed());
        }
    }

    #[test]
    fn a_year_of_quarterly_settlements_gives_the_worked_figure() {
        let t = terms();
        let mut s = Servicing::start(&t, d("2021-01-25"), d("2022-01-25"), Fen(5_000_000));
        let mut got = Vec::new();
        for (date, pay) in [
            ("2021-03-20", 29_410),
            ("2021-06-20", 49_194),
            ("2021-09-20", 49_194),
            ("2021-12-20", 48_660),
        ] {
            let points = s.settle_through(&t, d(date)).unwrap();
            assert_eq!(points.len(), 1);
            got.push((
                points[0].interest.as_ref().unwrap().segments[0].days,
                points[0].interest_fen().0,
            ));
            let r = s.repay(&t, d(date), Fen(pay)).unwrap();
            assert_eq!(r.allocation.current_interest_fen, Fen(pay));
        }
        let points = s.settle_through(&t, d("2022-01-25")).unwrap();
        got.push((
            points[0].interest.as_ref().unwrap().segments[0].days,
            points[0].interest_fen().0,
        ));
        assert_eq!(got, vec![(55, 29_410), (92, 49_194), (92, 49_194), (91, 48_660), (35, 18_715)]);
        let r = s.repay(&t, d("2022-01-25"), Fen(5_018_715)).unwrap();
        assert!(r.payoff);
        assert_eq!(r.allocation.principal_fen, Fen(5_000_000));
        assert!(s.is_closed());
        assert_eq!(s.interest_settled_fen, Fen(195_173));
    }

    #[test]
    fn overdue_principal_bears_penalty_and_unpaid_interest_compounds() {
        let t = terms();
        let mut s = Servicing::start(&t, d("2021-01-25"), d("2022-01-25"), Fen(5_000_000));
        s.settle_through(&t, d("2022-01-25")).unwrap();
        // Nothing paid all year: interest items of 294.10 (03-20), 491.94 (06-20, 09-20),
        // 486.60 (12-20) and 187.15 (01-25) are unpaid. 30 days after maturity:
        let q = s.quote(&t, d("2022-02-24")).unwrap();
        // Penalty: 5,000,000 × 30 × 0.05775 / 360 = 24,062.5 -> 24,063 (240.63 yuan).
        assert_eq!(q.penalty_fen, Fen(24_063));
        // The oldest unpaid amount, the interest due 2021-03-20, is overdue since 2021-03-21.
        assert_eq!(q.days_overdue, 341);
        assert!(q.compound_fen.is_positive());
        assert_eq!(q.overdue_interest_fen, Fen(195_173));
        assert_eq!(s.days_overdue(&t, d("2021-03-21")), 1);
    }

    /// Each day of grace keeps a day of compound off: the interest due 2021-03-20 (294.10),
    /// unpaid, compounds from 03-21 with no grace and from 03-23 with two days, and is overdue
    /// from the same day (DESIGN.md: overdue the day after its due date and grace days).
    #[test]
    fn grace_days_delay_compound_on_interest_due_on_a_20th() {
        // 29,410 × days × 0.0385 / 360, to 03-24 (paid on 03-25).
        for (grace, days, compound) in [(0, 4, 13), (1, 3, 9), (2, 2, 6)] {
            let t = ServicingTerms { grace_days: grace, ..terms() };
            let mut s = Servicing::start(&t, d("2021-01-25"), d("2022-01-25"), Fen(5_000_000));
            s.settle_through(&t, d("2021-03-20")).unwrap();
            // Current through its last day of grace, overdue from the next.
            let last = d("2021-03-20") + Duration::days(i64::from(grace));
            assert_eq!(s.interest_owed(&t, last), Ok((Fen::ZERO, Fen(29_410))), "grace {grace}");
            let first = last + Duration::days(1);
            assert_eq!(s.interest_owed(&t, first), Ok((Fen(29_410), Fen::ZERO)), "grace {grace}");
            assert_eq!(s.days_overdue(&t, first), 1, "grace {grace}");
            let q = s.quote(&t, d("2021-03-25")).unwrap();
            assert_eq!(q.overdue_interest_fen, Fen(29_410));
            assert_eq!(q.compound_fen, Fen(compound), "grace {grace}: {days} days of compound");
            assert_eq!(s.days_overdue(&t, d("2021-03-24")), days, "grace {grace}");
        }
    }

    /// The interest due at a maturity on the 25th keeps compounding from its due date after an
    /// extension recorded that day moves maturity on; a 20th's from the day after.
    #[test]
    fn an_extension_keeps_the_maturity_interests_compound_day() {
        let t = terms();
        let mut s = Servicing::start(&t, d("2021-01-25"), d("2022-01-25"), Fen(5_000_000));
        s.settle_through(&t, d("2022-01-25")).unwrap();
        s.extend(&t, d("2022-01-25"), d("2022-07-25")).unwrap();
        let item = |due: &str| s.interest_due.iter().find(|i| i.due_date == d(due)).unwrap();
        assert_eq!(item("2022-01-25").amount_fen, Fen(18_715));
        assert_eq!(s.compound_from(&t, item("2022-01-25")), d("2022-01-25"));
        assert_eq!(s.compound_from(&t, item("2021-12-20")), d("2021-12-21"));
        // A maturity on a 20th, extended the same day after its settlement: its interest is
        // marked, and keeps its day (a 20th's would compound from the day after).
        let mut s = Servicing::start(&t, d("2021-03-20"), d("2022-03-20"), Fen(5_000_000));
        s.settle_through(&t, d("2022-03-20")).unwrap();
        s.extend(&t, d("2022-03-20"), d("2022-09-20")).unwrap();
        let item = |due: &str| s.interest_due.iter().find(|i| i.due_date == d(due)).unwrap();
        assert!(item("2022-03-20").at_old_maturity && !item("2021-12-20").at_old_maturity);
        assert_eq!(s.compound_from(&t, item("2022-03-20")), d("2022-03-20"));
        assert_eq!(s.compound_from(&t, item("2021-12-20")), d("2021-12-21"));
        // The maturity day bears interest in the next quarter's period, not in one of its own.
        assert_eq!(s.next_point, Some(d("2022-06-20")));
        let stored = serde_json::to_string(&s).unwrap();
        assert_eq!(stored.matches("\"at_old_maturity\":true").count(), 1, "{stored}");
        assert_eq!(serde_json::from_str::<Servicing>(&stored).unwrap(), s);
    }

    /// The largest loan any policy allows, at the highest rate and uplifts, misused and never
    /// paid: a century of penalty and compound interest stays in range (what
    /// [`crate::domain::policy::HOUSEHOLD_CAP_FEN_BOUND`] is for).
    #[test]
    fn the_largest_loan_a_policy_allows_cannot_overflow() {
        let t = ServicingTerms {
            rate: AnnualRate::parse("0.99999999").unwrap(),
            overdue_uplift: Decimal::from(10),
            misuse_uplift: Decimal::from(10),
            frequency: SettlementFrequency::Yearly,
            ..terms()
        };
        let principal = Fen(crate::domain::policy::HOUSEHOLD_CAP_FEN_BOUND);
        let mut s = Servicing::start(&t, d("2021-01-25"), d("2024-01-25"), principal);
        s.settle_through(&t, d("2021-02-28")).unwrap();
        s.mark_misuse(&t, d("2021-03-01")).unwrap();
        s.settle_through(&t, d("2120-12-20")).unwrap();
        let q = s.quote(&t, d("2121-01-25")).unwrap();
        assert!(q.penalty_fen.is_positive() && q.compound_fen.is_positive(), "{q:?}");
        assert!(q.total().is_some(), "{q:?}");
        // A million times the bound overflows: the bound is what keeps it in range.
        let mut s =
            Servicing::start(&t, d("2021-01-25"), d("2024-01-25"), Fen(principal.0 * 1_000_000));
        s.settle_through(&t, d("2021-02-28")).unwrap();
        s.mark_misuse(&t, d("2021-03-01")).unwrap();
        let far = s.settle_through(&t, d("2120-12-20")).and_then(|_| s.quote(&t, d("2121-01-25")));
        assert_eq!(far.err(), Some(ServicingError::Overflow));
    }

    #[test]
    fn early_payoff_settles_interest_to_the_day_before() {
        let t = terms();
        let mut s = Servicing::start(&t, d("2021-01-25"), d("2022-01-25"), Fen(5_000_000));
        s.settle_through(&t, d("2021-02-14")).unwrap();
        // 2021-01-25 .. 2021-02-14: 21 days: 5,000,000 × 21 × 0.0385 / 360 = 11,229.17 -> 11,229.
        let q = s.quote(&t, d("2021-02-15")).unwrap();
        assert_eq!(q.accrued_interest_fen, Fen(11_229));
        assert_eq!(q.total(), Some(Fen(5_011_229)));
        assert!(matches!(
            s.clone().repay(&t, d("2021-02-15"), Fen(5_011_230)),
            Err(RepayError::ExceedsPayoff { payoff: Fen(5_011_229) })
        ));
        assert!(matches!(
            s.clone().repay(&t, d("2021-02-15"), Fen(5_000_000)),
            Err(RepayError::PayoffRequired { .. })
        ));
        let r = s.repay(&t, d("2021-02-15"), Fen(5_011_229)).unwrap();
        assert!(r.payoff);
        assert_eq!(r.charges.interest_fen(), Fen(11_229));
        assert!(s.is_closed());
    }

    #[test]
    fn partial_principal_changes_the_rest_of_the_period() {
        let t = terms();
        let mut s = Servicing::start(&t, d("2021-01-25"), d("2022-01-25"), Fen(5_000_000));
        s.settle_through(&t, d("2021-02-15")).unwrap();
        let r = s.repay(&t, d("2021-02-15"), Fen(2_000_000)).unwrap();
        assert_eq!(r.allocation.principal_fen, Fen(2_000_000));
        let p = s.settle_through(&t, d("2021-03-20")).unwrap();
        // 5,000,000 × 21 + 3,000,000 × 34 = 207,000,000 fen-days; × 0.0385 / 360 = 22,137.5 -> 22,138.
        let i = p[0].interest.as_ref().unwrap();
        assert_eq!(i.segments.iter().map(|s| s.jishu).sum::<i64>(), 207_000_000);
        assert_eq!(i.amount_fen, Fen(22_138));
    }

    /// The standard loan marked misused on 2021-03-01 and settled on 03-20, nothing paid.
    fn misused_and_settled() -> (ServicingTerms, Servicing, SettlementPoint) {
        let t = terms();
        let mut s = Servicing::start(&t, d("2021-01-25"), d("2022-01-25"), Fen(5_000_000));
        s.settle_through(&t, d("2021-02-28")).unwrap();
        s.mark_misuse(&t, d("2021-03-01")).unwrap();
        let mut p = s.settle_through(&t, d("2021-03-20")).unwrap();
        assert_eq!(p.len(), 1);
        (t, s, p.remove(0))
    }

    #[test]
    fn misuse_switches_principal_to_the_misuse_rate() {
        let (_, _, p) = misused_and_settled();
        // Interest 01-25..02-28 (35 days) at 3.85%: 18,715.28 -> 18,715; penalty 03-01..03-20
        // (20 days) at 7.7%: 5,000,000 × 20 × 0.077 / 360 = 21,388.89 -> 21,389.
        assert_eq!(p.interest_fen(), Fen(18_715));
        assert_eq!(p.penalty_fen(), Fen(21_389));
    }

    /// DESIGN.md: unpaid amounts are overdue from the day after their due date. A misused loan
    /// accrues penalty alone; its penalty settled on a 20th and left unpaid makes it overdue
    /// from the 21st (it made nothing overdue before maturity until 2026-12-02). Payments take
    /// the oldest charges first; the charges' items always sum to the two buckets.
    #[test]
    fn unpaid_misuse_penalty_is_overdue_from_the_day_after_its_settlement() {
        let (t, mut s, _) = misused_and_settled();
        let items = |s: &Servicing| -> Vec<(NaiveDate, i64)> {
            s.charges_due.iter().map(|i| (i.due_date, i.amount_fen.0)).collect()
        };
        assert_eq!(items(&s), [(d("2021-03-20"), 21_389)]);
        // Interest and penalty of 03-20 paid: nothing is overdue.
        let r = s.repay(&t, d("2021-03-20"), Fen(18_715 + 21_389)).unwrap();
        assert_eq!(
            (r.allocation.penalty_fen, r.allocation.current_interest_fen),
            (Fen(21_389), Fen(18_715))
        );
        assert!(s.charges_due.is_empty(), "{s:?}");
        assert_eq!(s.overdue_since(&t), Some(d("2022-01-26")), "only principal at maturity");
        // 06-20 settles penalty only: 5,000,000 × 92 × 0.077 / 360 = 98,388.89 -> 98,389.
        let p = s.settle_through(&t, d("2021-06-20")).unwrap();
        assert_eq!((p[0].interest_fen(), p[0].penalty_fen()), (Fen::ZERO, Fen(98_389)));
        assert_eq!(items(&s), [(d("2021-06-20"), 98_389)]);
        assert_eq!(s.days_overdue(&t, d("2021-06-20")), 0);
        assert_eq!(s.days_overdue(&t, d("2021-06-21")), 1);
        assert_eq!(s.days_overdue(&t, d("2021-09-18")), 90);
        // 09-20 adds its quarter; 06-20's paid in part, the oldest stays overdue, then paid off.
        s.settle_through(&t, d("2021-09-20")).unwrap();
        let second = s.penalty_fen.0 - 98_389;
        assert_eq!(items(&s), [(d("2021-06-20"), 98_389), (d("2021-09-20"), second)]);
        s.repay(&t, d("2021-09-22"), Fen(50_000)).unwrap();
        let owed = s.penalty_fen.0 + s.compound_fen.0;
        assert_eq!(s.charges_due.iter().map(|i| i.amount_fen.0).sum::<i64>(), owed);
        assert_eq!(s.charges_due[0].due_date, d("2021-06-20"));
        assert_eq!(s.days_overdue(&t, d("2021-09-22")), 94);
        s.repay(&t, d("2021-09-23"), Fen(s.penalty_fen.0 + s.compound_fen.0)).unwrap();
        assert_eq!(s.charges_due[0].due_date, d("2021-09-23"), "{:?}", s.charges_due);
        assert_eq!(s.days_overdue(&t, d("2021-09-23")), 0);
    }

    /// A state stored before the charges' items were kept holds charges without them: they are
    /// the oldest, and paid first; the items after them.
    #[test]
    fn charges_of_an_older_state_are_paid_first() {
        let (t, mut s, _) = misused_and_settled();
        // As stored by an earlier build: 03-20's penalty owed, no item.
        s.charges_due.clear();
        assert_eq!(s.penalty_fen, Fen(21_389));
        s.settle_through(&t, d("2021-06-20")).unwrap();
        // 06-20's penalty, 98,389, and compound on 03-20's unpaid interest, 184.
        assert_eq!(s.charges_due.iter().map(|i| i.amount_fen.0).sum::<i64>(), 98_389 + 184);
        // 50,000 pays the old 21,389 first, then 28,611 of 06-20's.
        s.repay(&t, d("2021-06-20"), Fen(50_000)).unwrap();
        let items: Vec<(NaiveDate, i64)> =
            s.charges_due.iter().map(|i| (i.due_date, i.amount_fen.0)).collect();
        assert_eq!(items, [(d("2021-06-20"), 98_389 + 184 - (50_000 - 21_389))]);
        assert_eq!(s.penalty_fen.0 + s.compound_fen.0, items[0].1);
    }

    proptest! {
        /// Whatever is paid when, misused or not, the charges' items sum to the penalty and
        /// compound interest owed, one item a due date, oldest first.
        #[test]
        fn the_charges_items_sum_to_the_charges_owed(
            misuse in prop::option::of(1i64..500),
            payments in prop::collection::vec((1i64..800, 1i64..6_000_000), 0..8),
        ) {
            let t = terms();
            let start = d("2021-01-25");
            let mut s = Servicing::start(&t, start, d("2022-01-25"), Fen(5_000_000));
            let mut events: Vec<(i64, Option<i64>)> =
                payments.iter().map(|&(day, amount)| (day, Some(amount))).collect();
            events.extend(misuse.map(|day| (day, None)));
            events.sort_by_key(|e| e.0);
            for (day, amount) in events {
                let date = start + Duration::days(day);
                // As the loan's commands do it: a refused one changes nothing.
                let mut next = s.clone();
                let done = match amount {
                    None => next.settle_through(&t, date - Duration::days(1)).is_ok()
                        && next.mark_misuse(&t, date).is_ok(),
                    Some(amount) => next.settle_through(&t, date).is_ok()
                        && next.repay(&t, date, Fen(amount)).is_ok(),
                };
                if done {
                    s = next;
                }
                let owed = s.penalty_fen.0 + s.compound_fen.0;
                prop_assert_eq!(s.charges_due.iter().map(|i| i.amount_fen.0).sum::<i64>(), owed);
                prop_assert!(s.charges_due.iter().all(|i| i.amount_fen.is_positive()));
                prop_assert!(s.charges_due.windows(2).all(|w| w[0].due_date < w[1].due_date));
            }
        }
    }

    /// DESIGN.md: unpaid interest compounds at the contract rate within the term (misuse
    /// changes the penalty on principal, not the compound rate).
    #[test]
    fn unpaid_interest_compounds_at_the_contract_rate_within_the_term_after_misuse() {
        let (t, mut s, p) = misused_and_settled();
        assert_eq!(p.interest_fen(), Fen(18_715));
        // 18,715 fen unpaid for 03-21..06-20 (92 days) at 3.85%: 184.14 -> 184 (at the misuse
        // rate, 7.7%, it would be 368).
        let p = s.settle_through(&t, d("2021-06-20")).unwrap();
        assert_eq!(p[0].compound_fen(), Fen(184));
    }
}
