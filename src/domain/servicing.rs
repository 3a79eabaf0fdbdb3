//! Loan servicing: what a disbursed loan owes on any day, computed from its own record.
//!
//! Model. Besides its principal, a loan carries three receivable buckets, each its own account:
//! settled interest not yet paid (as [`DueItem`]s, each with its due date), penalty interest
//! (罚息) and compound interest (复利). Between settlements, three accrual lists collect
//! [`Segment`]s, runs of days with one base and one rate, so that every settled figure keeps its
//! days, 积数, rate and unrounded amount:
//!
//! - interest: principal, at the contract rate, on each day before maturity (and before misuse);
//! - penalty: principal, at the penalty rate (contract × (1 + uplift)), on each day from maturity
//!   on, or from the misuse date on with the misuse uplift;
//! - compound: unpaid settled interest, from its due date plus grace days on, at the contract rate
//!   before maturity and the penalty rate after. Penalty and compound never compound themselves.
//!
//! A day `d` accrues on the balances as they stand on `d` after every event dated `d`
//! (算头不算尾: a disbursement on `d` accrues on `d`, a repayment on `d` stops accrual on `d`).
//! Settlement points are the calendar's 20ths before maturity (the period ends on the 20th
//! inclusive), maturity itself (the last period ends the day before), and after maturity the
//! calendar's 20ths again, where penalty and compound are settled. At each point the accrued
//! lists are summed in one exact expression and rounded once with the loan's rounding mode.
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
//! Amounts become overdue on the day after their due date (plus grace days for interest). A loan
//! whose oldest overdue amount has been overdue for more than 90 days is `overdue_90`.

use chrono::{Duration, NaiveDate};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

use super::calendar::{SettlementFrequency, settlement_on_or_after};
use super::money::{Fen, Rounding};
use super::rate::AnnualRate;

/// Days overdue after which a loan may be claimed against the risk-compensation fund.
pub const OVERDUE_CLAIM_DAYS: i64 = 90;

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
}

/// A run of days with one base and one rate.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Segment {
    pub from: NaiveDate,
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
}

/// What one settlement point settled.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SettlementPoint {
    pub date: NaiveDate,
    pub interest: Option<Accrual>,
    pub penalty: Option<Accrual>,
    pub compound: Option<Accrual>,
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
}

/// Settled interest not yet paid.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DueItem {
    pub due_date: NaiveDate,
    pub amount_fen: Fen,
}

/// How a payment (or a write-off) is split over the buckets.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Allocation {
    pub penalty_fen: Fen,
    pub compound_fen: Fen,
    pub overdue_interest_fen: Fen,
    pub current_interest_fen: Fen,
    pub principal_fen: Fen,
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
    pub frequency: SettlementFrequency,
    pub overdue_uplift: Decimal,
    pub misuse_uplift: Decimal,
    pub grace_days: u32,
    pub rounding: Rounding,
}

/// The servicing state of a disbursed loan.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Servicing {
    /// Current maturity (the contract's, or the extended one).
    pub maturity_date: Option<NaiveDate>,
    /// Accruals cover the days before this date.
    pub accrued_through: Option<NaiveDate>,
    /// The next settlement point not yet settled.
    pub next_point: Option<NaiveDate>,
    pub principal_fen: Fen,
    pub interest_segments: Vec<Segment>,
    pub penalty_segments: Vec<Segment>,
    pub compound_segments: Vec<Segment>,
    pub interest_due: Vec<DueItem>,
    pub penalty_fen: Fen,
    pub compound_fen: Fen,
    pub misuse_since: Option<NaiveDate>,
    pub extensions: u32,
    /// Totals over the loan's life.
    pub interest_settled_fen: Fen,
    pub penalty_settled_fen: Fen,
    pub compound_settled_fen: Fen,
    pub penalty_paid_fen: Fen,
    pub compound_paid_fen: Fen,
    pub written_off_fen: Fen,
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
            last.days += days;
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
    }))
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

    fn maturity(&self) -> NaiveDate {
        self.maturity_date.unwrap_or(NaiveDate::MAX)
    }

    /// The first settlement point on or after `date`.
    fn first_point_from(&self, terms: &ServicingTerms, date: NaiveDate) -> NaiveDate {
        let maturity = self.maturity();
        if date <= maturity {
            match settlement_on_or_after(date, terms.frequency) {
                Some(s) if s < maturity => s,
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

    fn penalty_rate(&self, terms: &ServicingTerms, day: NaiveDate) -> AnnualRate {
        if self.misuse_since.is_some_and(|m| day >= m) {
            terms.rate.with_uplift(terms.misuse_uplift)
        } else {
            terms.rate.with_uplift(terms.overdue_uplift)
        }
    }

    fn compound_from(&self, terms: &ServicingTerms, item: &DueItem) -> NaiveDate {
        item.due_date
            .checked_add_signed(Duration::days(i64::from(terms.grace_days)))
            .unwrap_or(NaiveDate::MAX)
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
            let breached = from >= maturity || self.misuse_since.is_some_and(|m| from >= m);
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
                push_segment(
                    &mut self.interest_segments,
                    from,
                    next,
                    self.principal_fen,
                    terms.rate,
                )?;
            }
            let unpaid = Fen::checked_sum(
                self.interest_due
                    .iter()
                    .filter(|i| self.compound_from(terms, i) <= from)
                    .map(|i| i.amount_fen),
            )
            .ok_or(ServicingError::Overflow)?;
            let compound_rate = if breached { penalty_rate } else { terms.rate };
            push_segment(&mut self.compound_segments, from, next, unpaid, compound_rate)?;
            from = next;
        }
        self.accrued_through = Some(self.accrued_through.map_or(to, |a| a.max(to)));
        Ok(())
    }

    /// Settles penalty and compound accrued so far into their buckets.
    fn settle_charges(
        &mut self,
        terms: &ServicingTerms,
    ) -> Result<(Option<Accrual>, Option<Accrual>), ServicingError> {
        let penalty = settle_segments(&std::mem::take(&mut self.penalty_segments), terms.rounding)?;
        let compound =
            settle_segments(&std::mem::take(&mut self.compound_segments), terms.rounding)?;
        if let Some(p) = &penalty {
            self.penalty_fen = add(self.penalty_fen, p.amount_fen)?;
            self.penalty_settled_fen = add(self.penalty_settled_fen, p.amount_fen)?;
        }
        if let Some(c) = &compound {
            self.compound_fen = add(self.compound_fen, c.amount_fen)?;
            self.compound_settled_fen = add(self.compound_settled_fen, c.amount_fen)?;
        }
        Ok((penalty, compound))
    }

    /// Settles the running period's interest as an item due on `due`.
    fn settle_interest(
        &mut self,
        terms: &ServicingTerms,
        due: NaiveDate,
    ) -> Result<Option<Accrual>, ServicingError> {
        let interest =
            settle_segments(&std::mem::take(&mut self.interest_segments), terms.rounding)?;
        if let Some(i) = &interest {
            if i.amount_fen.is_positive() {
                self.interest_due.push(DueItem { due_date: due, amount_fen: i.amount_fen });
            }
            self.interest_settled_fen = add(self.interest_settled_fen, i.amount_fen)?;
        }
        Ok(interest)
    }

    fn settle_point(
        &mut self,
        terms: &ServicingTerms,
        point: NaiveDate,
    ) -> Result<SettlementPoint, ServicingError> {
        let maturity = self.maturity();
        // The maturity period ends the day before maturity; other points include their day.
        let accrue_to = if point == maturity { point } else { day_after(point)? };
        self.advance(terms, accrue_to)?;
        let interest = self.settle_interest(terms, point)?;
        let (penalty, compound) = self.settle_charges(terms)?;
        self.next_point = Some(self.first_point_from(terms, day_after(point)?));
        Ok(SettlementPoint { date: point, interest, penalty, compound })
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
            if date > self.compound_from(terms, i) {
                overdue = add(overdue, i.amount_fen)?;
            } else {
                current = add(current, i.amount_fen)?;
            }
        }
        Ok((overdue, current))
    }

    /// The first day on which something owed is overdue, if anything is.
    pub fn overdue_since(&self, terms: &ServicingTerms) -> Option<NaiveDate> {
        let principal =
            (self.principal_fen.is_positive()).then(|| self.maturity().succ_opt()).flatten();
        let interest =
            self.interest_due.iter().filter_map(|i| self.compound_from(terms, i).succ_opt()).min();
        let charges = (self.penalty_fen.is_positive() || self.compound_fen.is_positive())
            .then(|| principal.or(interest))
            .flatten();
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
        let (penalty, compound) = self.settle_charges(terms)?;
        let early = settle_segments(&self.interest_segments, terms.rounding)?;
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
        let mut take = |owed: Fen| {
            let x = owed.min(left);
            left = Fen(left.0 - x.0);
            x
        };
        let allocation = Allocation {
            penalty_fen: take(self.penalty_fen),
            compound_fen: take(self.compound_fen),
            overdue_interest_fen: take(overdue),
            current_interest_fen: take(current),
            principal_fen: take(self.principal_fen),
        };
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
        let mut interest_left = allocation.interest_fen().ok_or(ServicingError::Overflow)?;
        // Oldest first: overdue items are the oldest.
        for item in &mut self.interest_due {
            let x = item.amount_fen.min(interest_left);
            item.amount_fen = Fen(item.amount_fen.0 - x.0);
            interest_left = Fen(interest_left.0 - x.0);
        }
        self.interest_due.retain(|i| i.amount_fen.is_positive());
        self.principal_fen = sub(self.principal_fen, allocation.principal_fen)?;
        if full {
            self.interest_segments.clear();
            self.compound_segments.clear();
            self.penalty_segments.clear();
            self.next_point = None;
        }
        Ok(Repayment {
            charges: SettlementPoint { date, interest: early_interest, penalty, compound },
            allocation,
            payoff: full,
        })
    }

    /// Writes off everything owed on `date`, after [`Self::settle_through`]`(date)`.
    pub fn write_off(
        &mut self,
        terms: &ServicingTerms,
        date: NaiveDate,
    ) -> Result<(SettlementPoint, Allocation), ServicingError> {
        self.advance(terms, date)?;
        let interest = self.settle_interest(terms, date)?;
        let (penalty, compound) = self.settle_charges(terms)?;
        let (overdue, current) = self.interest_owed(terms, date)?;
        let allocation = Allocation {
            penalty_fen: self.penalty_fen,
            compound_fen: self.compound_fen,
            overdue_interest_fen: overdue,
            current_interest_fen: current,
            principal_fen: self.principal_fen,
        };
        self.written_off_fen = allocation.total().ok_or(ServicingError::Overflow)?;
        self.penalty_fen = Fen::ZERO;
        self.compound_fen = Fen::ZERO;
        self.interest_due.clear();
        self.principal_fen = Fen::ZERO;
        self.next_point = None;
        Ok((SettlementPoint { date, interest, penalty, compound }, allocation))
    }

    /// Adds principal disbursed on `date` (after accruing the days before it).
    pub fn add_principal(
        &mut self,
        terms: &ServicingTerms,
        date: NaiveDate,
        amount: Fen,
    ) -> Result<(), ServicingError> {
        self.advance(terms, date)?;
        self.principal_fen = add(self.principal_fen, amount)?;
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
        self.maturity_date = Some(new_maturity);
        self.extensions += 1;
        let from = self.accrued_through.unwrap_or(date);
        self.next_point = Some(self.first_point_from(terms, from));
        Ok(())
    }

    /// Marks misuse from `date` on: principal accrues penalty at the misuse uplift instead of
    /// interest.
    pub fn mark_misuse(
        &mut self,
        terms: &ServicingTerms,
        date: NaiveDate,
    ) -> Result<(), ServicingError> {
        self.advance(terms, date)?;
        self.misuse_since = Some(date);
        Ok(())
    }

    /// What paying everything off on `date` would take, without changing anything.
    pub fn quote(&self, terms: &ServicingTerms, date: NaiveDate) -> Result<Quote, ServicingError> {
        let mut s = self.clone();
        let points = s.settle_through(terms, date)?;
        s.advance(terms, date)?;
        let (penalty, compound) = s.settle_charges(terms)?;
        let accrued = settle_segments(&s.interest_segments, terms.rounding)?
            .map_or(Fen::ZERO, |a| a.amount_fen);
        let (overdue, current) = s.interest_owed(terms, date)?;
        let _ = (points, penalty, compound);
        let q = Quote {
            penalty_fen: s.penalty_fen,
            compound_fen: s.compound_fen,
            overdue_interest_fen: overdue,
            current_interest_fen: current,
            accrued_interest_fen: accrued,
            principal_fen: s.principal_fen,
            days_overdue: s.days_overdue(terms, date),
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
    pub principal_fen: Fen,
    pub days_overdue: i64,
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
            frequency: SettlementFrequency::Quarterly,
            overdue_uplift: Decimal::new(5, 1),
            misuse_uplift: Decimal::ONE,
            grace_days: 0,
            rounding: Rounding::HalfUp,
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

    #[test]
    fn misuse_switches_principal_to_the_misuse_rate() {
        let t = terms();
        let mut s = Servicing::start(&t, d("2021-01-25"), d("2022-01-25"), Fen(5_000_000));
        s.settle_through(&t, d("2021-02-28")).unwrap();
        s.mark_misuse(&t, d("2021-03-01")).unwrap();
        let p = s.settle_through(&t, d("2021-03-20")).unwrap();
        // Interest 01-25..02-28 (35 days) at 3.85%: 18,715.28 -> 18,715; penalty 03-01..03-20
        // (20 days) at 7.7%: 5,000,000 × 20 × 0.077 / 360 = 21,388.89 -> 21,389.
        assert_eq!(p[0].interest_fen(), Fen(18_715));
        assert_eq!(p[0].penalty_fen(), Fen(21_389));
    }
}
