//! A loan's subsidy register (贴息台账): each settled interest period of the loan, what was paid
//! for it and when, and the subsidy it earns ([`super::subsidy`]), recomputed from the loan's
//! journal events alone, as of a date.
//!
//! The model.
//! - **Periods.** A line is one settlement point's ordinary interest (its [`Accrual`]: segments
//!   of days, each with the principal it accrued on; segments that overlap, as two tranches
//!   paid out on one 20th leave them, add up), or the interest a full payoff or a write-off
//!   settled early, to the day before its date. Its due date is the point's date (the
//!   payoff's); it must be paid by the due date plus the contract's grace days. A point that
//!   settled no interest (penalty and compound only) has no line: penalty and compound interest
//!   are never subsidised and never appear here. Points the register's date has passed that
//!   no event recorded by then has settled (no run, no payment since) are the caller's
//!   `pending` points, settled as servicing would settle them on that date: their lines come
//!   last and say they are not recorded. A period may start on the day the one before it
//!   ended: a tranche paid out on a 20th accrues that day in the next period too.
//! - **Payments.** Servicing pays interest oldest first (overdue interest, then current), so
//!   each repayment's interest part (`overdue_interest_fen + current_interest_fen` of its
//!   allocation) is spread over the open lines in due-date order, each piece on time when paid
//!   on or before that line's deadline. The subsidy a bank netted (直补, the repayment's
//!   `subsidy_netted_fen`, at most its current interest) is the first of the current interest's
//!   pieces: each line shows what of its interest was netted. A write-off's interest part
//!   closes lines unpaid.
//! - **Standing** of a line, as of the register's date:
//!   - `OnTime`: paid in full, every piece by the deadline. Its subsidy is computed on the
//!     interest paid, by [`subsidise`] (household cap, cap rate, the ratio of each accrual day).
//!     Each period stands on its own interest: one paid on time earns while principal is
//!     overdue (an instalment's principal, or a bullet loan's at maturity), whose penalty is
//!     never subsidised anyway;
//!   - `PaidLate`: paid in full, some of it after the deadline: in arrears, nothing;
//!   - `Overdue`: not paid in full and the deadline has passed: in arrears, nothing;
//!   - `WrittenOff`: some of it written off: nothing;
//!   - `NotYetDue`: not paid in full, the deadline not passed: nothing yet, and no working (it
//!     may still be paid on time);
//!   - `Misuse`: the loan was marked misused by the register's date: nothing, for every period,
//!     whatever was paid (DESIGN.md: misused loans are not subsidised, and what was paid is
//!     clawed back).
//!
//! The policy figures ([`SubsidyPolicy`]) are the caller's: the household cap and the cap rate
//! of the version in force on the contract date, the ratios of every version by accrual date.
//! The household cap applies to each loan's own principal: a household's programme loans are
//! within it together at origination, and a loan and its renewal (续贷), which the cap's count
//! takes as one, are never outstanding together (the writer pays a renewal out only once the
//! loan it renews has no principal outstanding: README, `LOAN_NOT_DISBURSABLE`), so no day is
//! subsidised on both. Were two loans of a household outstanding above the cap together (a
//! journal written otherwise), each would be subsidised within the cap on its own: nothing here
//! apportions the cap between loans.

use chrono::NaiveDate;

use super::loan::LoanEvent;
use super::money::Fen;
use super::rate::AnnualRate;
use super::servicing::{Accrual, Allocation, SettlementPoint};
use super::subsidy::{
    BalanceStep, PaidPeriod, PeriodSubsidy, Standing, SubsidyError, SubsidyPolicy, subsidise,
};

/// Where a line stands as of the register's date (see the module doc).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LineStanding {
    OnTime,
    PaidLate,
    Overdue,
    WrittenOff,
    NotYetDue,
    Misuse,
}

/// One settled interest period of a loan, its payments and its subsidy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegisterLine {
    pub start: NaiveDate,
    pub end_inclusive: NaiveDate,
    pub due_date: NaiveDate,
    /// The last day it may be paid on time: the due date plus the contract's grace days.
    pub deadline: NaiveDate,
    /// Ordinary interest settled for the period.
    pub settled_fen: Fen,
    pub paid_on_time_fen: Fen,
    pub paid_late_fen: Fen,
    pub written_off_fen: Fen,
    /// Of the interest paid, the subsidy the bank netted (直补: the repayment's
    /// `subsidy_netted_fen`, spread over the lines its current interest paid, oldest first).
    pub netted_fen: Fen,
    /// The date of the last payment towards it.
    pub last_paid_on: Option<NaiveDate>,
    pub standing: LineStanding,
    /// The subsidy's working; `None` while the line is not yet due.
    pub working: Option<PeriodSubsidy>,
    /// While the line is not yet due: the subsidy it earns if paid in full by its deadline,
    /// what a bank paid the subsidy directly (直补) may take off the household's interest.
    pub subsidy_if_paid_on_time: Option<Fen>,
    /// Settled by an event recorded in the journal (else one of the caller's `pending` points).
    pub recorded: bool,
}

impl RegisterLine {
    /// Settled and neither paid nor written off.
    pub fn unpaid_fen(&self) -> Fen {
        Fen(self.settled_fen.0
            - self.paid_on_time_fen.0
            - self.paid_late_fen.0
            - self.written_off_fen.0)
    }

    /// The subsidy the line earns (zero unless on time).
    pub fn subsidy_fen(&self) -> Fen {
        self.working.as_ref().map_or(Fen::ZERO, |w| w.subsidy)
    }
}

/// Why a loan's events cannot be read as a register: a journal the servicing did not write.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RegisterError {
    #[error("{0}")]
    Subsidy(#[from] SubsidyError),
    #[error("the events of {date} pay or write off {fen} fen of interest that no period owes")]
    PaidMoreThanSettled { date: NaiveDate, fen: i64 },
    #[error("a period's interest segments settled on {date} end before they start")]
    BadSegments { date: NaiveDate },
}

/// A line being built: its figures, and its balances for the subsidy.
struct Open {
    line: RegisterLine,
    balances: Vec<BalanceStep>,
}

/// The register of a loan whose events (in journal order, from its contract) are `events`, as
/// of `as_of`: events value-dated after it are left out; `pending` are the points up to
/// `as_of` that no event by then settled (see the module doc). `rate` and `grace_days` are the
/// contract's.
pub fn register<'e>(
    events: impl IntoIterator<Item = &'e LoanEvent>,
    pending: &[SettlementPoint],
    rate: AnnualRate,
    grace_days: u32,
    policy: &SubsidyPolicy,
    as_of: NaiveDate,
) -> Result<Vec<RegisterLine>, RegisterError> {
    let mut lines: Vec<Open> = Vec::new();
    let mut misused = false;
    for event in events.into_iter().filter(|e| e.value_date() <= as_of) {
        for point in event.settlements() {
            if let Some(accrual) = &point.interest {
                open(&mut lines, accrual, point.date, grace_days)?;
            }
        }
        let date = event.value_date();
        match event {
            LoanEvent::Repaid { repayment, subsidy_netted_fen, .. } => {
                if let Some(accrual) = &repayment.charges.interest {
                    open(&mut lines, accrual, date, grace_days)?;
                }
                let netted = *subsidy_netted_fen;
                apply(&mut lines, &repayment.allocation, date, Take::Paid { netted })?;
            }
            LoanEvent::WrittenOff { charges, allocation, .. } => {
                if let Some(accrual) = &charges.interest {
                    open(&mut lines, accrual, date, grace_days)?;
                }
                apply(&mut lines, allocation, date, Take::WrittenOff)?;
            }
            LoanEvent::MisuseMarked { .. } => misused = true,
            _ => {}
        }
    }
    let recorded = lines.len();
    for point in pending.iter().filter(|p| p.date <= as_of) {
        if let Some(accrual) = &point.interest {
            open(&mut lines, accrual, point.date, grace_days)?;
        }
    }
    for open in &mut lines[recorded..] {
        open.line.recorded = false;
    }
    lines.into_iter().map(|open| close(open, rate, policy, as_of, misused)).collect()
}

/// Adds the line of an interest accrual settled on `due_date`, unless it settled nothing.
fn open(
    lines: &mut Vec<Open>,
    accrual: &Accrual,
    due_date: NaiveDate,
    grace_days: u32,
) -> Result<(), RegisterError> {
    if accrual.amount_fen.0 <= 0 || accrual.segments.is_empty() {
        return Ok(());
    }
    // Each day's principal is the sum of the segments over it: +base from a segment's first
    // day, -base from the day after its last; a day under none accrued on nothing.
    let mut changes: Vec<(NaiveDate, i64)> = Vec::with_capacity(2 * accrual.segments.len());
    for s in &accrual.segments {
        let after = s.to_inclusive.succ_opt().filter(|_| s.from <= s.to_inclusive);
        let Some(after) = after else { return Err(RegisterError::BadSegments { date: due_date }) };
        changes.push((s.from, s.base_fen.0));
        changes.push((after, -s.base_fen.0));
    }
    changes.sort_by_key(|&(day, _)| day);
    let start = changes[0].0;
    let end_inclusive = accrual.segments.iter().map(|s| s.to_inclusive).max().unwrap_or(start);
    let mut balances: Vec<BalanceStep> = Vec::with_capacity(accrual.segments.len());
    let mut principal = 0i64;
    for (i, &(day, change)) in changes.iter().enumerate() {
        principal = principal.saturating_add(change);
        let last_of_day = changes.get(i + 1).is_none_or(|&(next, _)| next != day);
        if !last_of_day || day > end_inclusive {
            continue;
        }
        match balances.last() {
            Some(b) if b.principal.0 == principal => {}
            _ => balances.push(BalanceStep { from: day, principal: Fen(principal) }),
        }
    }
    let deadline =
        due_date.checked_add_days(chrono::Days::new(grace_days.into())).unwrap_or(due_date);
    lines.push(Open {
        line: RegisterLine {
            start,
            end_inclusive,
            due_date,
            deadline,
            settled_fen: accrual.amount_fen,
            paid_on_time_fen: Fen::ZERO,
            paid_late_fen: Fen::ZERO,
            written_off_fen: Fen::ZERO,
            netted_fen: Fen::ZERO,
            last_paid_on: None,
            standing: LineStanding::NotYetDue,
            working: None,
            subsidy_if_paid_on_time: None,
            recorded: true,
        },
        balances,
    });
    Ok(())
}

#[derive(Clone, Copy)]
enum Take {
    /// Paid, `netted` of the current interest by the bank (直补).
    Paid {
        netted: Fen,
    },
    WrittenOff,
}

/// Spreads an allocation's interest over the open lines, oldest first: its overdue interest,
/// then its current interest, whose first `netted` fen are the subsidy the bank netted.
fn apply(
    lines: &mut [Open],
    allocation: &Allocation,
    date: NaiveDate,
    take: Take,
) -> Result<(), RegisterError> {
    let too_much = |fen| RegisterError::PaidMoreThanSettled { date, fen };
    let total = allocation.interest_fen().ok_or(too_much(i64::MAX))?.0;
    let mut left = total;
    // The netted fen's place in the spread: [netted_from, netted_to).
    let netted_from = allocation.overdue_interest_fen.0;
    let netted_to = match take {
        Take::Paid { netted } => netted_from.saturating_add(netted.0),
        Take::WrittenOff => netted_from,
    };
    for Open { line, .. } in lines.iter_mut() {
        if left <= 0 {
            break;
        }
        let share = left.min(line.unpaid_fen().0);
        if share <= 0 {
            continue;
        }
        // This share's place in the spread: [from, to).
        let (from, to) = (total - left, total - left + share);
        left -= share;
        let netted = to.min(netted_to) - from.max(netted_from);
        if netted > 0 {
            line.netted_fen.0 += netted;
        }
        match take {
            Take::WrittenOff => line.written_off_fen.0 += share,
            Take::Paid { .. } => {
                line.last_paid_on = Some(date);
                if date <= line.deadline {
                    line.paid_on_time_fen.0 += share;
                } else {
                    line.paid_late_fen.0 += share;
                }
            }
        }
    }
    if left > 0 { Err(too_much(left)) } else { Ok(()) }
}

/// The line's standing as of `as_of`, and its subsidy's working.
fn close(
    Open { mut line, balances }: Open,
    rate: AnnualRate,
    policy: &SubsidyPolicy,
    as_of: NaiveDate,
    misused: bool,
) -> Result<RegisterLine, RegisterError> {
    let paid_in_full = line.unpaid_fen() == Fen::ZERO;
    line.standing = if misused {
        LineStanding::Misuse
    } else if line.written_off_fen.0 > 0 {
        LineStanding::WrittenOff
    } else if paid_in_full && line.paid_late_fen.0 == 0 {
        LineStanding::OnTime
    } else if paid_in_full {
        LineStanding::PaidLate
    } else if as_of > line.deadline {
        LineStanding::Overdue
    } else {
        LineStanding::NotYetDue
    };
    // Not yet due: worked out as if paid in full on time (what it earns then), not kept as
    // its working.
    let not_yet_due = line.standing == LineStanding::NotYetDue;
    let paid = Fen(line.paid_on_time_fen.0 + line.paid_late_fen.0);
    let (interest_paid, standing) = match line.standing {
        LineStanding::NotYetDue => (line.settled_fen, Standing::OnTime),
        LineStanding::OnTime | LineStanding::Misuse => (paid, Standing::OnTime),
        _ => (paid, Standing::InArrears),
    };
    let period = PaidPeriod {
        start: line.start,
        end_inclusive: line.end_inclusive,
        balances,
        rate,
        interest_paid,
        standing,
    };
    let working = subsidise(std::slice::from_ref(&period), policy, misused)?.pop();
    if not_yet_due {
        line.subsidy_if_paid_on_time = working.map(|w| w.subsidy);
    } else {
        line.working = working;
    }
    Ok(line)
}

#[cfg(test)]
mod tests {
    use rust_decimal::Decimal;

    use super::*;
    use crate::domain::money::Rounding;
    use crate::domain::servicing::{Repayment, Segment};
    use crate::domain::subsidy::{RatioStep, RatioTable};

    fn d(s: &str) -> NaiveDate {
        NaiveDate::parse_from_str(s, "%Y-%m-%d").unwrap()
    }

    fn rate() -> AnnualRate {
        AnnualRate::parse("0.0385").unwrap()
    }

    fn policy() -> SubsidyPolicy {
        SubsidyPolicy {
            household_cap: SubsidyPolicy::HOUSEHOLD_CAP_DEFAULT,
            cap_rate: rate().value(),
            ratios: RatioTable::new(vec![
                RatioStep { effective_from: d("2014-12-10"), ratio: Decimal::ONE },
                RatioStep { effective_from: d("2024-01-01"), ratio: Decimal::new(7, 1) },
            ])
            .unwrap(),
        }
    }

    /// A quarter's interest on 50,000.00 yuan from `from` through `to`, settled on `date`.
    fn point(date: &str, from: &str, to: &str, amount: i64) -> SettlementPoint {
        let (from, to) = (d(from), d(to));
        let days = u32::try_from((to - from).num_days() + 1).unwrap();
        let segment = Segment {
            from,
            to_inclusive: to,
            days,
            base_fen: Fen(5_000_000),
            annual_rate: rate(),
            jishu: 5_000_000 * i64::from(days),
        };
        let interest = Accrual {
            segments: vec![segment],
            unrounded_fen: Decimal::from(amount),
            rounding: Rounding::HalfUp,
            amount_fen: Fen(amount),
            periodic: None,
        };
        SettlementPoint {
            date: d(date),
            interest: Some(interest),
            penalty: None,
            compound: None,
            principal: None,
        }
    }

    /// A point that settled nothing: the charges of a payment without any.
    fn nothing_settled(date: &str) -> SettlementPoint {
        SettlementPoint {
            date: d(date),
            interest: None,
            penalty: None,
            compound: None,
            principal: None,
        }
    }

    fn settled(date: &str, points: Vec<SettlementPoint>) -> LoanEvent {
        LoanEvent::Settled { loan_id: "L".into(), value_date: d(date), settlements: points }
    }

    fn repaid(date: &str, interest: i64) -> LoanEvent {
        let allocation =
            Allocation { current_interest_fen: Fen(interest), ..Allocation::default() };
        let charges = nothing_settled(date);
        LoanEvent::Repaid {
            loan_id: "L".into(),
            value_date: d(date),
            amount_fen: Fen(interest),
            settlements: vec![],
            repayment: Repayment { charges, allocation, payoff: false },
            subsidy_netted_fen: Fen::ZERO,
        }
    }

    fn standings(lines: &[RegisterLine]) -> Vec<LineStanding> {
        lines.iter().map(|l| l.standing).collect()
    }

    /// The worked quarters of 2021: paid on the 20th, on time, subsidised in full; one paid a
    /// day late earns nothing; the next, unpaid, is overdue after its 20th and not yet due on it.
    #[test]
    fn payments_on_time_late_and_missing() {
        let events = vec![
            settled("2021-03-20", vec![point("2021-03-20", "2021-01-25", "2021-03-20", 29_410)]),
            repaid("2021-03-20", 29_410),
            settled("2021-06-20", vec![point("2021-06-20", "2021-03-21", "2021-06-20", 49_194)]),
            repaid("2021-06-21", 49_194),
            settled("2021-09-20", vec![point("2021-09-20", "2021-06-21", "2021-09-20", 49_194)]),
        ];
        let on = |date| register(&events, &[], rate(), 0, &policy(), d(date)).unwrap();
        let lines = on("2021-09-20");
        use LineStanding::*;
        assert_eq!(standings(&lines), [OnTime, PaidLate, NotYetDue]);
        assert_eq!(lines[0].subsidy_fen(), Fen(29_410));
        assert_eq!(lines[1].subsidy_fen(), Fen::ZERO);
        assert_eq!(lines[1].paid_late_fen, Fen(49_194));
        assert_eq!(lines[1].last_paid_on, Some(d("2021-06-21")));
        assert!(lines[2].working.is_none());
        // Not yet due: what it earns if paid in full by its deadline (what a bank may net).
        assert_eq!(lines[2].subsidy_if_paid_on_time, Some(Fen(49_194)));
        assert_eq!(lines[0].subsidy_if_paid_on_time, None);
        assert_eq!(standings(&on("2021-09-21")), [OnTime, PaidLate, Overdue]);
        // As of the late payment's day the period is paid late; on its due date it was not
        // yet due.
        assert_eq!(standings(&on("2021-06-21")), [OnTime, PaidLate]);
        assert_eq!(standings(&on("2021-06-20")), [OnTime, NotYetDue]);
        // Grace days move the deadline.
        let graced = register(&events, &[], rate(), 1, &policy(), d("2021-09-21")).unwrap();
        assert_eq!(standings(&graced), [OnTime, OnTime, NotYetDue]);
        assert_eq!(graced[1].subsidy_fen(), Fen(49_194));
    }

    /// A payment is spread oldest first; part on time and the rest late is late.
    #[test]
    fn payments_pay_the_oldest_period_first() {
        let events = vec![
            settled("2021-03-20", vec![point("2021-03-20", "2021-01-25", "2021-03-20", 29_410)]),
            repaid("2021-03-20", 10_000),
            settled("2021-06-20", vec![point("2021-06-20", "2021-03-21", "2021-06-20", 49_194)]),
            repaid("2021-06-20", 60_000),
        ];
        let lines = register(&events, &[], rate(), 0, &policy(), d("2021-06-20")).unwrap();
        assert_eq!(lines[0].paid_on_time_fen, Fen(10_000));
        assert_eq!(lines[0].paid_late_fen, Fen(19_410));
        assert_eq!(lines[1].paid_on_time_fen, Fen(40_590));
        assert_eq!(lines[1].unpaid_fen(), Fen(8_604));
        use LineStanding::*;
        assert_eq!(standings(&lines), [PaidLate, NotYetDue]);
        // Paying more interest than was settled is a journal servicing never wrote.
        let mut bad = events.clone();
        bad.push(repaid("2021-06-20", 8_605));
        let e = register(&bad, &[], rate(), 0, &policy(), d("2021-06-20")).unwrap_err();
        assert_eq!(e, RegisterError::PaidMoreThanSettled { date: d("2021-06-20"), fen: 1 });
    }

    /// The subsidy a bank netted (直补) goes to the lines its repayment's current interest
    /// paid, after the overdue interest, oldest first: here 10,000 of overdue interest for the
    /// first quarter, then 49,194 of current interest for the second, 40,000 of it netted.
    #[test]
    fn netted_subsidy_goes_to_the_current_interest_lines() {
        let mut pay = repaid("2021-06-20", 59_194);
        let LoanEvent::Repaid { repayment, subsidy_netted_fen, .. } = &mut pay else {
            unreachable!()
        };
        repayment.allocation.overdue_interest_fen = Fen(10_000);
        repayment.allocation.current_interest_fen = Fen(49_194);
        *subsidy_netted_fen = Fen(40_000);
        let events = vec![
            settled("2021-03-20", vec![point("2021-03-20", "2021-01-25", "2021-03-20", 29_410)]),
            repaid("2021-03-20", 19_410),
            settled("2021-06-20", vec![point("2021-06-20", "2021-03-21", "2021-06-20", 49_194)]),
            pay,
        ];
        let lines = register(&events, &[], rate(), 0, &policy(), d("2021-06-20")).unwrap();
        let netted: Vec<i64> = lines.iter().map(|l| l.netted_fen.0).collect();
        assert_eq!(netted, [0, 40_000]);
        assert_eq!(lines[1].paid_on_time_fen, Fen(49_194));
    }

    /// The period across 2024-01-01: 11 days at 100%, 80 at 70%, rounded once.
    #[test]
    fn the_2024_step_splits_a_period_by_day() {
        let events = vec![
            settled("2024-03-20", vec![point("2024-03-20", "2023-12-21", "2024-03-20", 48_660)]),
            repaid("2024-03-20", 48_660),
        ];
        let lines = register(&events, &[], rate(), 0, &policy(), d("2024-03-20")).unwrap();
        // 48,660 × (11 × 1 + 80 × 0.7) / 91 = 35,826.59...
        assert_eq!(lines[0].subsidy_fen(), Fen(35_827));
        assert_eq!(lines[0].working.as_ref().unwrap().segments.len(), 2);
    }

    fn written_off(date: &str, interest: i64) -> LoanEvent {
        LoanEvent::WrittenOff {
            loan_id: "L".into(),
            value_date: d(date),
            settlements: vec![],
            charges: nothing_settled(date),
            allocation: Allocation { overdue_interest_fen: Fen(interest), ..Allocation::default() },
            overdue_since: None,
        }
    }

    /// A write-off closes what is unpaid, oldest first: a line partly paid on time and the
    /// rest written off earns nothing.
    #[test]
    fn a_write_off_closes_the_lines_unpaid() {
        let events = vec![
            settled("2021-03-20", vec![point("2021-03-20", "2021-01-25", "2021-03-20", 29_410)]),
            repaid("2021-03-20", 9_410),
            settled("2021-06-20", vec![point("2021-06-20", "2021-03-21", "2021-06-20", 49_194)]),
            written_off("2021-10-01", 20_000 + 49_194),
        ];
        let lines = register(&events, &[], rate(), 0, &policy(), d("2021-10-01")).unwrap();
        assert_eq!(standings(&lines), [LineStanding::WrittenOff; 2]);
        assert_eq!(
            (lines[0].paid_on_time_fen, lines[0].written_off_fen),
            (Fen(9_410), Fen(20_000))
        );
        assert_eq!(lines[1].written_off_fen, Fen(49_194));
        assert_eq!(lines.iter().map(RegisterLine::subsidy_fen).collect::<Vec<_>>(), [Fen::ZERO; 2]);
        assert!(lines.iter().all(|l| l.unpaid_fen() == Fen::ZERO));
    }

    proptest::proptest! {
        /// Whatever the payments (each at most what is owed then): every line's pieces add up
        /// to what it settled, all that was paid is on some line, a line earns only when paid
        /// in full on time and never more than was paid, and nothing earns after misuse.
        ///
        /// Paid oldest first, the pieces follow from the totals alone, worked out here without
        /// the register: with `before` the interest settled by the earlier lines, a line holds
        /// `clamp(paid − before, 0, settled)` of all that was paid, and on time that much of
        /// what was paid by its deadline (the due date plus the grace days); what the test
        /// still owes is what the lines leave unpaid; and the standing follows from those.
        #[test]
        fn the_register_accounts_for_every_fen(
            quarters in proptest::collection::vec(
                (1i64..60_000, proptest::collection::vec((0i64..120, 0i64..70_000), 0..3)),
                1..8,
            ),
            grace in 0u32..5,
            misuse_at in proptest::option::of(0i64..800),
        ) {
            let mut events = Vec::new();
            let mut owed = 0i64;
            let mut paid = 0i64;
            // (deadline, amount) of each line, and (date, fen) of each payment.
            let mut settlements: Vec<(NaiveDate, i64)> = Vec::new();
            let mut payment_days: Vec<(NaiveDate, i64)> = Vec::new();
            let mut start = d("2021-01-01");
            for (amount, payments) in &quarters {
                let end = start + chrono::Duration::days(90);
                let due = end.format("%Y-%m-%d").to_string();
                let (from, to) = (start.format("%Y-%m-%d").to_string(), due.clone());
                events.push(settled(&due, vec![point(&due, &from, &to, *amount)]));
                settlements.push((end + chrono::Duration::days(grace.into()), *amount));
                owed += amount;
                let mut day = end;
                for (after, fen) in payments {
                    day += chrono::Duration::days(*after % 30);
                    let fen = (*fen).min(owed);
                    if fen > 0 {
                        events.push(repaid(&day.format("%Y-%m-%d").to_string(), fen));
                        payment_days.push((day, fen));
                        owed -= fen;
                        paid += fen;
                    }
                }
                start = day.max(end) + chrono::Duration::days(1);
            }
            let last = events.last().unwrap().value_date();
            if let Some(at) = misuse_at {
                let date = d("2021-01-01") + chrono::Duration::days(at);
                let at = events.partition_point(|e| e.value_date() <= date);
                let mark = LoanEvent::MisuseMarked { loan_id: "L".into(), value_date: date, settlements: vec![], falsely_obtained: false };
                events.insert(at, mark);
            }
            let lines = register(&events, &[], rate(), grace, &policy(), last).unwrap();
            proptest::prop_assert_eq!(lines.len(), quarters.len());
            let mut paid_on_lines = 0;
            let mut before = 0i64;
            let misused =
                misuse_at.is_some_and(|at| d("2021-01-01") + chrono::Duration::days(at) <= last);
            for (l, &(deadline, amount)) in lines.iter().zip(&settlements) {
                let held = |total: i64| (total - before).clamp(0, amount);
                let by_deadline: i64 = payment_days
                    .iter()
                    .filter(|(day, _)| *day <= deadline)
                    .map(|(_, fen)| fen)
                    .sum();
                let (all, on_time) = (held(paid), held(by_deadline));
                proptest::prop_assert_eq!(l.settled_fen.0, amount);
                proptest::prop_assert_eq!(l.deadline, deadline);
                proptest::prop_assert_eq!(l.paid_on_time_fen.0, on_time, "line {:?}", l);
                proptest::prop_assert_eq!(l.paid_late_fen.0, all - on_time, "line {:?}", l);
                proptest::prop_assert_eq!(l.written_off_fen.0, 0);
                proptest::prop_assert_eq!(l.unpaid_fen().0, amount - all);
                let expected = if misused {
                    LineStanding::Misuse
                } else if on_time == amount {
                    LineStanding::OnTime
                } else if all == amount {
                    LineStanding::PaidLate
                } else if last > deadline {
                    LineStanding::Overdue
                } else {
                    LineStanding::NotYetDue
                };
                proptest::prop_assert_eq!(l.standing, expected, "line {:?}", l);
                before += amount;
                paid_on_lines += l.paid_on_time_fen.0 + l.paid_late_fen.0;
                let earns = l.standing == LineStanding::OnTime;
                proptest::prop_assert_eq!(earns, l.subsidy_fen() > Fen::ZERO);
                proptest::prop_assert!(l.subsidy_fen() <= l.paid_on_time_fen);
                if earns {
                    proptest::prop_assert_eq!(l.paid_on_time_fen, l.settled_fen);
                }
            }
            proptest::prop_assert_eq!(paid_on_lines, paid);
            let unpaid: i64 = lines.iter().map(|l| l.unpaid_fen().0).sum();
            proptest::prop_assert_eq!(unpaid, owed);
            let settled: i64 = lines.iter().map(|l| l.settled_fen.0).sum();
            let amounts: i64 = quarters.iter().map(|(amount, _)| amount).sum();
            proptest::prop_assert_eq!(settled, amounts);
        }
    }

    /// Two tranches paid out on one 20th leave two one-day segments on it beside the period's
    /// own: overlapping segments add up, each day weighted by the principal on it.
    #[test]
    fn overlapping_segments_add_up() {
        let segment = |from: &str, to: &str, base: i64| {
            let (from, to) = (d(from), d(to));
            let days = u32::try_from((to - from).num_days() + 1).unwrap();
            Segment {
                from,
                to_inclusive: to,
                days,
                base_fen: Fen(base),
                annual_rate: rate(),
                jishu: base * i64::from(days),
            }
        };
        let mut june = point("2021-06-20", "2021-03-20", "2021-06-20", 1_000);
        june.interest.as_mut().unwrap().segments = vec![
            segment("2021-03-20", "2021-03-20", 1_000_000),
            segment("2021-03-20", "2021-03-20", 2_000_000),
            segment("2021-03-21", "2021-06-20", 5_000_000),
        ];
        let events = vec![settled("2021-06-20", vec![june]), repaid("2021-06-20", 1_000)];
        let lines = register(&events, &[], rate(), 0, &policy(), d("2021-06-20")).unwrap();
        assert_eq!((lines[0].start, lines[0].end_inclusive), (d("2021-03-20"), d("2021-06-20")));
        let w = lines[0].working.as_ref().unwrap();
        assert_eq!(w.days, 93);
        assert_eq!(w.jishu, 3_000_000 + 5_000_000 * 92);
        assert_eq!(w.subsidy, Fen(1_000));
        // A segment that ends before it starts is a journal servicing never wrote.
        let mut bad = point("2021-06-20", "2021-03-21", "2021-06-20", 1_000);
        bad.interest.as_mut().unwrap().segments[0].to_inclusive = d("2021-03-01");
        let e = register(
            &[settled("2021-06-20", vec![bad])],
            &[],
            rate(),
            0,
            &policy(),
            d("2021-06-20"),
        );
        assert_eq!(e.unwrap_err(), RegisterError::BadSegments { date: d("2021-06-20") });
    }

    /// Points no recorded event settled come last, not recorded; those after the date not at
    /// all.
    #[test]
    fn pending_points_are_listed_unrecorded() {
        let events = vec![
            settled("2021-03-20", vec![point("2021-03-20", "2021-01-25", "2021-03-20", 29_410)]),
            repaid("2021-03-20", 29_410),
        ];
        let pending = [
            point("2021-06-20", "2021-03-21", "2021-06-20", 49_194),
            point("2021-09-20", "2021-06-21", "2021-09-20", 49_194),
        ];
        let lines = register(&events, &pending, rate(), 0, &policy(), d("2021-06-21")).unwrap();
        assert_eq!(standings(&lines), [LineStanding::OnTime, LineStanding::Overdue]);
        assert_eq!(lines.iter().map(|l| l.recorded).collect::<Vec<_>>(), [true, false]);
        assert_eq!(lines[1].unpaid_fen(), Fen(49_194));
    }

    /// Misuse takes every period's subsidy, also those paid before it was marked.
    #[test]
    fn misuse_earns_nothing() {
        let events = vec![
            settled("2021-03-20", vec![point("2021-03-20", "2021-01-25", "2021-03-20", 29_410)]),
            repaid("2021-03-20", 29_410),
            LoanEvent::MisuseMarked {
                loan_id: "L".into(),
                value_date: d("2021-04-01"),
                settlements: vec![],
                falsely_obtained: false,
            },
        ];
        let lines = register(&events, &[], rate(), 0, &policy(), d("2021-04-01")).unwrap();
        assert_eq!(standings(&lines), [LineStanding::Misuse]);
        assert_eq!(lines[0].subsidy_fen(), Fen::ZERO);
        let before = register(&events, &[], rate(), 0, &policy(), d("2021-03-31")).unwrap();
        assert_eq!(before[0].subsidy_fen(), Fen(29_410));
    }
}
