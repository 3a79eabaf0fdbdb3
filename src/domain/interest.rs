//! Interest accrual by the accumulated-balance method (积数计息).
//!
//! The model (PBoC 银发〔2005〕129号): each calendar day accrues interest on the principal
//! outstanding that day at the annual rate / 360. A period's 积数 is the sum over its days of the
//! day's outstanding principal in fen; its interest is `积数 × annual rate / 360`, computed exactly
//! in one expression (never through a pre-rounded daily rate) and rounded to the fen once, at
//! settlement, with the rounding mode named by the caller (half-up by default in the programme).
//! Principal counts from the disbursement day and stops on the repayment day (算头不算尾): a change
//! of principal dated `D` already applies to day `D`. This module owns the principal timeline and
//! the [`PeriodInterest`] working record that lets anyone reproduce a settled figure.

use chrono::NaiveDate;
use rust_decimal::Decimal;

use super::calendar::{CalendarError, Period, SettlementFrequency, interest_periods};
use super::money::{Fen, Rounding};
use super::rate::AnnualRate;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InterestError {
    #[error("principal would be negative from {date}: more repaid than disbursed")]
    NegativePrincipal { date: NaiveDate },
    #[error("more than {} principal changes", CHANGES_MAX)]
    TooManyChanges,
    #[error("period ends on {end_inclusive}, before it starts on {start}")]
    InvertedPeriod { start: NaiveDate, end_inclusive: NaiveDate },
    #[error("amount overflows: principal, 积数 or interest out of range")]
    Overflow,
    #[error(transparent)]
    Calendar(#[from] CalendarError),
}

/// A limit on the principal changes of one loan: a repayment every day for 27 years. A programme
/// loan has a disbursement and a handful of repayments; the limit bounds work on absurd input.
pub const CHANGES_MAX: usize = 10_000;

/// One change of outstanding principal: positive for a disbursement, negative for a repayment.
/// It applies from `date` on, that day included.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PrincipalChange {
    pub date: NaiveDate,
    pub amount: Fen,
}

/// Outstanding principal as a step function of the day, never negative.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PrincipalTimeline {
    /// `(from, balance)`: the balance from `from` on, until the next step. Strictly increasing
    /// dates; before the first step the balance is zero.
    steps: Vec<(NaiveDate, Fen)>,
}

impl PrincipalTimeline {
    /// Builds the timeline from changes in any order; changes on the same day are netted.
    pub fn new(changes: &[PrincipalChange]) -> Result<Self, InterestError> {
        if changes.len() > CHANGES_MAX {
            return Err(InterestError::TooManyChanges);
        }
        let mut sorted = changes.to_vec();
        sorted.sort_by_key(|c| c.date);
        let mut steps: Vec<(NaiveDate, Fen)> = Vec::with_capacity(sorted.len());
        let mut balance = Fen::ZERO;
        for change in sorted {
            balance = balance.checked_add(change.amount).ok_or(InterestError::Overflow)?;
            match steps.last_mut() {
                Some((date, last)) if *date == change.date => *last = balance,
                _ => steps.push((change.date, balance)),
            }
        }
        if let Some((date, _)) = steps.iter().find(|(_, b)| b.is_negative()) {
            return Err(InterestError::NegativePrincipal { date: *date });
        }
        Ok(PrincipalTimeline { steps })
    }

    /// A loan disbursed once and, optionally, repaid in full on `repaid_on`.
    pub fn single(
        disbursed: NaiveDate,
        principal: Fen,
        repaid_on: Option<NaiveDate>,
    ) -> Result<Self, InterestError> {
        let mut changes = vec![PrincipalChange { date: disbursed, amount: principal }];
        if let Some(date) = repaid_on {
            let amount = principal.checked_neg().ok_or(InterestError::Overflow)?;
            changes.push(PrincipalChange { date, amount });
        }
        Self::new(&changes)
    }

    /// The principal that accrues interest on `day`: every change dated on or before it.
    pub fn balance_on(&self, day: NaiveDate) -> Fen {
        let after = self.steps.partition_point(|(from, _)| *from <= day);
        match after {
            0 => Fen::ZERO,
            n => self.steps[n - 1].1,
        }
    }

    /// 积数: the sum of the daily balances from `start` to `end_inclusive`, in fen-days.
    pub fn jishu(&self, start: NaiveDate, end_inclusive: NaiveDate) -> Result<i64, InterestError> {
        if end_inclusive < start {
            return Err(InterestError::InvertedPeriod { start, end_inclusive });
        }
        // Walk the steps inside the period segment by segment, not day by day. i128 cannot
        // overflow here: |balance| < 2^63 and a segment has < 2^32 days, over < 2^14 segments.
        let mut total: i128 = 0;
        let mut from = start;
        let mut balance = self.balance_on(start);
        let inside = self.steps.iter().filter(|(date, _)| *date > start && *date <= end_inclusive);
        for &(date, next_balance) in inside {
            total += i128::from(balance.0) * i128::from((date - from).num_days());
            from = date;
            balance = next_balance;
        }
        total += i128::from(balance.0) * i128::from((end_inclusive - from).num_days() + 1);
        i64::try_from(total).map_err(|_| InterestError::Overflow)
    }
}

/// The exact, unrounded interest in fen on a 积数 at an annual rate: `积数 × rate / 360`, one
/// multiplication and one division, so no intermediate figure is rounded.
pub fn interest_on_jishu(jishu: i64, rate: AnnualRate) -> Result<Decimal, InterestError> {
    Decimal::from(jishu)
        .checked_mul(rate.value())
        .and_then(|n| n.checked_div(Decimal::from(AnnualRate::DAYS_PER_YEAR)))
        .ok_or(InterestError::Overflow)
}

/// One day's unrounded interest in fen on `balance` (the per-day view of [`interest_on_jishu`]).
pub fn daily_accrual(balance: Fen, rate: AnnualRate) -> Result<Decimal, InterestError> {
    interest_on_jishu(balance.0, rate)
}

/// The working of one settlement: every figure needed to reproduce it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeriodInterest {
    pub start: NaiveDate,
    pub end_inclusive: NaiveDate,
    pub settlement_date: NaiveDate,
    pub days: u32,
    /// Sum over the days of the outstanding principal, in fen-days.
    pub jishu: i64,
    pub annual_rate: AnnualRate,
    /// Annual rate / 360, shown for the record; the interest is computed from the annual rate.
    pub daily_rate: Decimal,
    /// `jishu × annual_rate / 360`, in fen, before rounding.
    pub unrounded_fen: Decimal,
    pub rounding: Rounding,
    pub interest: Fen,
}

/// Accrues one period's interest on `timeline` at `rate` and rounds it once with `rounding`.
pub fn accrue(
    timeline: &PrincipalTimeline,
    rate: AnnualRate,
    period: &Period,
    rounding: Rounding,
) -> Result<PeriodInterest, InterestError> {
    let jishu = timeline.jishu(period.start, period.end_inclusive)?;
    let days = u32::try_from(period.days()).map_err(|_| InterestError::Overflow)?;
    let unrounded_fen = interest_on_jishu(jishu, rate)?;
    let interest = Fen::from_decimal(unrounded_fen, rounding).ok_or(InterestError::Overflow)?;
    Ok(PeriodInterest {
        start: period.start,
        end_inclusive: period.end_inclusive,
        settlement_date: period.settlement_date,
        days,
        jishu,
        annual_rate: rate,
        daily_rate: rate.daily(),
        unrounded_fen,
        rounding,
        interest,
    })
}

/// Accrues each of `periods`, each settlement rounded on its own.
pub fn accrue_periods(
    timeline: &PrincipalTimeline,
    rate: AnnualRate,
    periods: &[Period],
    rounding: Rounding,
) -> Result<Vec<PeriodInterest>, InterestError> {
    periods.iter().map(|p| accrue(timeline, rate, p, rounding)).collect()
}

/// The settlements of a loan's life: its interest periods from `disbursed` to `end` (maturity or
/// full repayment, excluded) at `frequency`, each accrued and rounded.
pub fn loan_interest(
    timeline: &PrincipalTimeline,
    rate: AnnualRate,
    disbursed: NaiveDate,
    end: NaiveDate,
    frequency: SettlementFrequency,
    rounding: Rounding,
) -> Result<Vec<PeriodInterest>, InterestError> {
    let periods = interest_periods(disbursed, end, frequency)?;
    accrue_periods(timeline, rate, &periods, rounding)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn d(y: i32, m: u32, day: u32) -> NaiveDate {
        NaiveDate::from_ymd_opt(y, m, day).unwrap()
    }

    fn rate(text: &str) -> AnnualRate {
        AnnualRate::parse(text).unwrap()
    }

    /// A settlement on an exact half fen: 四舍五入 takes it up, banker's rounding to the even
    /// fen, truncation down (one day on 18,000, 54,000 and 90,000 fen at 1%: 0.5, 1.5 and 2.5
    /// fen), which random figures almost never hit.
    #[test]
    fn halves_are_rounded_by_each_modes_rule() {
        let on = |principal: i64, rounding: Rounding| {
            let timeline = PrincipalTimeline::single(d(2021, 3, 20), Fen(principal), None).unwrap();
            let day = Period {
                start: d(2021, 3, 20),
                end_inclusive: d(2021, 3, 20),
                settlement_date: d(2021, 3, 20),
            };
            accrue(&timeline, rate("0.01"), &day, rounding).unwrap().interest.0
        };
        for (principal, half_up, half_even, down) in
            [(18_000, 1, 0, 0), (54_000, 2, 2, 1), (90_000, 3, 2, 2)]
        {
            let modes =
                [Rounding::HalfUp, Rounding::HalfEven, Rounding::Down].map(|r| on(principal, r));
            assert_eq!(modes, [half_up, half_even, down], "{principal}");
        }
    }

    #[test]
    fn worked_figure() {
        let timeline = PrincipalTimeline::single(d(2021, 1, 25), Fen(5_000_000), None).unwrap();
        let settlements = loan_interest(
            &timeline,
            rate("0.0385"),
            d(2021, 1, 25),
            d(2022, 1, 25),
            SettlementFrequency::Quarterly,
            Rounding::HalfUp,
        )
        .unwrap();
        let fen: Vec<i64> = settlements.iter().map(|s| s.interest.0).collect();
        assert_eq!(fen, vec![29_410, 49_194, 49_194, 48_660, 18_715]);
        let days: Vec<u32> = settlements.iter().map(|s| s.days).collect();
        assert_eq!(days, vec![55, 92, 92, 91, 35]);
        // 5,000,000 × 55 = 275,000,000; × 0.0385 / 360 = 29,409.7222... fen.
        assert_eq!(settlements[0].jishu, 275_000_000);
        let total = Fen::checked_sum(settlements.iter().map(|s| s.interest)).unwrap();
        assert_eq!(total.to_string(), "1951.73");

        // Without per-settlement rounding: 5,000,000 × 365 × 0.0385 / 360 = 195,173.6111... fen.
        let jishu: i64 = settlements.iter().map(|s| s.jishu).sum();
        let whole = interest_on_jishu(jishu, rate("0.0385")).unwrap();
        assert_eq!(Fen::from_decimal(whole, Rounding::HalfUp).unwrap().to_string(), "1951.74");
    }

    #[test]
    fn partial_repayment_mid_period() {
        // 5,000,000 fen disbursed 2021-01-25; 2,000,000 repaid on 2021-02-15; quarterly at 3.85%.
        // First period 01-25..03-20 (55 days): 01-25..02-14 is 21 days at 5,000,000 (the
        // repayment day no longer accrues on the repaid part), 02-15..03-20 is 34 days at
        // 3,000,000. 积数 = 105,000,000 + 102,000,000 = 207,000,000 fen-days.
        // Interest = 207,000,000 × 0.0385 / 360 = 7,969,500 / 360 = 22,137.5 fen, an exact half:
        // 221.38 half-up and half-even (8 is even), 221.37 down.
        let timeline = PrincipalTimeline::new(&[
            PrincipalChange { date: d(2021, 2, 15), amount: Fen(-2_000_000) },
            PrincipalChange { date: d(2021, 1, 25), amount: Fen(5_000_000) },
        ])
        .unwrap();
        let period = Period {
            start: d(2021, 1, 25),
            end_inclusive: d(2021, 3, 20),
            settlement_date: d(2021, 3, 20),
        };
        let up = accrue(&timeline, rate("0.0385"), &period, Rounding::HalfUp).unwrap();
        assert_eq!(up.jishu, 207_000_000);
        assert_eq!(up.unrounded_fen, Decimal::new(221_375, 1));
        assert_eq!(up.interest, Fen(22_138));
        let even = accrue(&timeline, rate("0.0385"), &period, Rounding::HalfEven).unwrap();
        assert_eq!(even.interest, Fen(22_138));
        let down = accrue(&timeline, rate("0.0385"), &period, Rounding::Down).unwrap();
        assert_eq!(down.interest, Fen(22_137));
        assert_eq!(timeline.balance_on(d(2021, 2, 14)), Fen(5_000_000));
        assert_eq!(timeline.balance_on(d(2021, 2, 15)), Fen(3_000_000));
        assert_eq!(timeline.balance_on(d(2021, 1, 24)), Fen(0));
    }

    #[test]
    fn bad_timelines_are_errors() {
        let over = PrincipalTimeline::new(&[
            PrincipalChange { date: d(2021, 1, 25), amount: Fen(100) },
            PrincipalChange { date: d(2021, 2, 1), amount: Fen(-101) },
        ]);
        assert_eq!(over, Err(InterestError::NegativePrincipal { date: d(2021, 2, 1) }));
        let huge = PrincipalTimeline::single(NaiveDate::MIN, Fen(i64::MAX), None).unwrap();
        assert_eq!(huge.jishu(NaiveDate::MIN, NaiveDate::MAX), Err(InterestError::Overflow));
        assert!(matches!(
            huge.jishu(d(2021, 2, 1), d(2021, 1, 1)),
            Err(InterestError::InvertedPeriod { .. })
        ));
    }

    fn arb_date() -> impl Strategy<Value = NaiveDate> {
        (0i64..3_000).prop_map(|n| d(2018, 1, 1) + chrono::Duration::days(n))
    }

    fn arb_rate() -> impl Strategy<Value = AnnualRate> {
        (0i64..99_999_999).prop_map(|n| AnnualRate::new(Decimal::new(n, 8)).unwrap())
    }

    fn arb_timeline() -> impl Strategy<Value = (NaiveDate, PrincipalTimeline)> {
        arb_changes()
            .prop_map(|changes| (changes[0].date, PrincipalTimeline::new(&changes).unwrap()))
    }

    /// A loan's principal changes: a disbursement on its first day, then up to five
    /// repayments of a share of what is left, each from 1 to 399 days on.
    fn arb_changes() -> impl Strategy<Value = Vec<PrincipalChange>> {
        (arb_date(), 1i64..100_000_000, prop::collection::vec((1i64..400, 0i64..=100), 0..6))
            .prop_map(|(start, principal, repayments)| {
                let mut changes = vec![PrincipalChange { date: start, amount: Fen(principal) }];
                let mut left = principal;
                for (offset, percent) in repayments {
                    let amount = left * percent / 100;
                    left -= amount;
                    let date = start + chrono::Duration::days(offset);
                    changes.push(PrincipalChange { date, amount: Fen(-amount) });
                }
                changes
            })
    }

    fn arb_frequency() -> impl Strategy<Value = SettlementFrequency> {
        use SettlementFrequency::*;
        prop_oneof![Just(Monthly), Just(Quarterly), Just(Yearly), Just(AtMaturity)]
    }

    proptest! {
        /// A loan's interest split into its settlements is the interest of its whole life:
        /// the periods' 积数 add up to the whole span's, worked out here from the changes alone
        /// (each change counts from its date up to the end date, excluded); their unrounded
        /// interest to the whole's; and, each settlement rounded on its own, the settlements
        /// add up to within half a fen per settlement of the whole's unrounded interest (less
        /// than a fen per settlement, never more, rounding down).
        #[test]
        fn settlements_add_up_to_the_whole_lifes_interest(
            changes in arb_changes(),
            length in 1i64..1_200,
            frequency in arb_frequency(),
            rate in arb_rate(),
        ) {
            let disbursed = changes[0].date;
            let end = disbursed + chrono::Duration::days(length);
            let timeline = PrincipalTimeline::new(&changes).unwrap();
            let whole_jishu: i64 = changes
                .iter()
                .map(|c| c.amount.0 * (end - c.date).num_days().max(0))
                .sum();
            let whole = Decimal::from(whole_jishu) * rate.value() / Decimal::from(360);
            for rounding in [Rounding::HalfUp, Rounding::HalfEven, Rounding::Down] {
                let settled =
                    loan_interest(&timeline, rate, disbursed, end, frequency, rounding).unwrap();
                let n = Decimal::from(settled.len());
                prop_assert_eq!(settled.iter().map(|s| s.jishu).sum::<i64>(), whole_jishu);
                let unrounded: Decimal = settled.iter().map(|s| s.unrounded_fen).sum();
                let drift = (unrounded - whole).abs();
                prop_assert!(drift < Decimal::new(1, 15), "drift {}", drift);
                let rounded = Decimal::from(settled.iter().map(|s| s.interest.0).sum::<i64>());
                // Against the settlements' own unrounded sum: the bound is exact there.
                let moved = rounded - unrounded;
                if rounding == Rounding::Down {
                    prop_assert!(moved <= Decimal::ZERO && -moved < n, "{} over {}", moved, n);
                } else {
                    prop_assert!(moved.abs() * Decimal::TWO <= n, "{} over {}", moved, n);
                }
            }
        }

        #[test]
        fn per_day_accruals_sum_to_the_period(
            (start, timeline) in arb_timeline(),
            days in 1i64..400,
            rate in arb_rate(),
        ) {
            let end_inclusive = start + chrono::Duration::days(days - 1);
            let period = Period { start, end_inclusive, settlement_date: end_inclusive };
            let p = accrue(&timeline, rate, &period, Rounding::HalfUp).unwrap();
            let mut jishu = 0i64;
            let mut numerators = Decimal::ZERO;
            let mut quotients = Decimal::ZERO;
            for day in start.iter_days().take(usize::try_from(days).unwrap()) {
                let balance = timeline.balance_on(day);
                jishu += balance.0;
                numerators += balance.to_decimal() * rate.value();
                quotients += daily_accrual(balance, rate).unwrap();
            }
            // Exactly: the 积数 and the numerators agree.
            prop_assert_eq!(jishu, p.jishu);
            prop_assert_eq!(numerators / Decimal::from(360), p.unrounded_fen);
            // Summing 28-digit quotients day by day can differ from the single quotient only in
            // the last digits kept by Decimal, far below a fen.
            let drift = (quotients - p.unrounded_fen).abs();
            prop_assert!(drift < Decimal::new(1, 15), "drift {}", drift);
        }

        #[test]
        fn rounding_moves_a_settlement_by_less_than_a_fen(
            (start, timeline) in arb_timeline(),
            days in 1i64..400,
            rate in arb_rate(),
        ) {
            let end_inclusive = start + chrono::Duration::days(days - 1);
            let period = Period { start, end_inclusive, settlement_date: end_inclusive };
            for rounding in [Rounding::HalfUp, Rounding::HalfEven, Rounding::Down] {
                let p = accrue(&timeline, rate, &period, rounding).unwrap();
                let moved = (p.interest.to_decimal() - p.unrounded_fen).abs();
                prop_assert!(moved < Decimal::ONE);
                if rounding != Rounding::Down {
                    prop_assert!(moved <= Decimal::new(5, 1));
                }
                prop_assert!(!p.interest.is_negative());
                // Each mode as its name says, worked out here from the whole fen below: 四舍五入
                // takes a half up, banker's rounding a half to the even fen, truncation none.
                let x = p.unrounded_fen;
                let below = x.floor();
                let half = Decimal::new(5, 1);
                let up = match rounding {
                    Rounding::Down => false,
                    Rounding::HalfUp => x - below >= half,
                    Rounding::HalfEven => {
                        x - below > half || (x - below == half && below % Decimal::TWO == Decimal::ONE)
                    }
                };
                let expected = if up { below + Decimal::ONE } else { below };
                prop_assert_eq!(p.interest.to_decimal(), expected, "{:?} of {}", rounding, x);
            }
        }

        #[test]
        fn interest_is_monotone_in_days_and_rate(
            (start, timeline) in arb_timeline(),
            days in 1i64..400,
            more_days in 0i64..100,
            a in arb_rate(),
            b in arb_rate(),
        ) {
            let (low, high) = if a <= b { (a, b) } else { (b, a) };
            let end = start + chrono::Duration::days(days - 1);
            let longer_end = end + chrono::Duration::days(more_days);
            let short = Period { start, end_inclusive: end, settlement_date: end };
            let long = Period { start, end_inclusive: longer_end, settlement_date: longer_end };
            for rounding in [Rounding::HalfUp, Rounding::HalfEven, Rounding::Down] {
                let s = accrue(&timeline, low, &short, rounding).unwrap();
                let l = accrue(&timeline, low, &long, rounding).unwrap();
                let h = accrue(&timeline, high, &short, rounding).unwrap();
                prop_assert!(s.unrounded_fen >= Decimal::ZERO);
                prop_assert!(l.unrounded_fen >= s.unrounded_fen && l.interest >= s.interest);
                prop_assert!(h.unrounded_fen >= s.unrounded_fen && h.interest >= s.interest);
            }
        }
    }
}
