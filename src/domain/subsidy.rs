//! Interest subsidy (贴息): how much of the interest a household paid the finance office refunds.
//!
//! The model. Only ordinary interest actually paid, on time, is subsidisable; penalty and compound
//! interest never reach this module (they live in their own buckets, see [`super::servicing`]), a
//! period paid in arrears earns nothing, and a misused loan earns nothing at all.
//!
//! The interest paid for a period is its days' interest, each day's in proportion to that day's
//! principal P_d (积数: the period's interest is Σ P_d × r / 360). A day's share counts only on
//! principal within the household cap (default 50,000.00 yuan) and at a rate no higher than the
//! policy's cap rate, at the subsidy ratio in force on that day (the accrual date):
//!
//! subsidy = paid × Σ_d min(P_d, cap) × ratio_d / Σ_d P_d × min(r, cap rate) / r
//!
//! P_d is the principal as given ([`PaidPeriod::balances`], the household's principal under the
//! cap; a caller with several loans of one household apportions the cap before calling). With
//! one principal over the period this is paid × min(P, cap)/P × min(r, cap rate)/r × Σ ratio_d /
//! days; a repayment within the period weights each day by its own balance, so that the days
//! before a ratio boundary on a larger balance count for more. Each period's subsidy is computed
//! in one expression, a single division, and rounded half-up to the fen once; the per-ratio
//! amounts are shown unrounded as working.

use chrono::NaiveDate;
use rust_decimal::Decimal;

use super::money::{Fen, Rounding};
use super::rate::AnnualRate;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SubsidyError {
    #[error("subsidy ratio table is empty")]
    NoRatios,
    #[error("subsidy ratio table has more than {} steps", RATIO_STEPS_MAX)]
    TooManyRatios,
    #[error("subsidy ratio dates must strictly increase; {date} does not")]
    RatiosOutOfOrder { date: NaiveDate },
    #[error("subsidy ratio {ratio} is outside 0 to 1")]
    RatioOutOfRange { ratio: Decimal },
    #[error("no subsidy ratio is in force on {date}")]
    NoRatioOn { date: NaiveDate },
    #[error("cap rate and household cap must not be negative")]
    NegativeCap,
    #[error("period ends on {end_inclusive}, before it starts on {start}")]
    InvertedPeriod { start: NaiveDate, end_inclusive: NaiveDate },
    #[error("principal and interest paid must not be negative")]
    NegativeAmount,
    #[error("a period's balances must start on its first day, in date order, within the period")]
    BadBalances,
    #[error("more than {} periods", PERIODS_MAX)]
    TooManyPeriods,
    #[error("amount overflows")]
    Overflow,
}

/// A limit on ratio changes: policy changes the ratio every few years; a hundred steps is ample.
pub const RATIO_STEPS_MAX: usize = 100;

/// A limit on the periods subsidised in one call: 100 years of monthly settlement for one loan.
pub const PERIODS_MAX: usize = 1_200;

/// A subsidy ratio in force from a date on (until the next step).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RatioStep {
    pub effective_from: NaiveDate,
    /// A fraction between 0 and 1, e.g. `0.70`.
    pub ratio: Decimal,
}

/// Dated subsidy ratios, validated: non-empty, strictly increasing dates, ratios in `[0, 1]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RatioTable {
    steps: Vec<RatioStep>,
}

impl RatioTable {
    pub fn new(steps: Vec<RatioStep>) -> Result<Self, SubsidyError> {
        if steps.is_empty() {
            return Err(SubsidyError::NoRatios);
        }
        if steps.len() > RATIO_STEPS_MAX {
            return Err(SubsidyError::TooManyRatios);
        }
        for step in &steps {
            if step.ratio < Decimal::ZERO || step.ratio > Decimal::ONE {
                return Err(SubsidyError::RatioOutOfRange { ratio: step.ratio });
            }
        }
        if let Some(pair) = steps.windows(2).find(|w| w[1].effective_from <= w[0].effective_from) {
            return Err(SubsidyError::RatiosOutOfOrder { date: pair[1].effective_from });
        }
        Ok(RatioTable { steps })
    }

    pub fn steps(&self) -> &[RatioStep] {
        &self.steps
    }

    /// The ratio in force on `date`.
    pub fn ratio_on(&self, date: NaiveDate) -> Option<Decimal> {
        let after = self.steps.partition_point(|s| s.effective_from <= date);
        after.checked_sub(1).map(|i| self.steps[i].ratio)
    }

    /// The days of `start..=end_inclusive` under each ratio, in date order.
    fn split(
        &self,
        start: NaiveDate,
        end_inclusive: NaiveDate,
    ) -> Result<Vec<(NaiveDate, NaiveDate, Decimal)>, SubsidyError> {
        if self.ratio_on(start).is_none() {
            return Err(SubsidyError::NoRatioOn { date: start });
        }
        let mut parts = Vec::new();
        for (i, step) in self.steps.iter().enumerate() {
            let from = start.max(step.effective_from);
            let to = match self.steps.get(i + 1) {
                Some(next) => match next.effective_from.pred_opt() {
                    Some(day) => end_inclusive.min(day),
                    None => continue,
                },
                None => end_inclusive,
            };
            if from <= to {
                parts.push((from, to, step.ratio));
            }
        }
        Ok(parts)
    }
}

/// The policy figures a subsidy is computed under.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubsidyPolicy {
    /// Principal per household that earns a subsidy.
    pub household_cap: Fen,
    /// The highest annual rate subsidised (a fraction, e.g. the LPR in force).
    pub cap_rate: Decimal,
    pub ratios: RatioTable,
}

impl SubsidyPolicy {
    /// 50,000.00 yuan, the programme's household cap.
    pub const HOUSEHOLD_CAP_DEFAULT: Fen = Fen(5_000_000);
}

/// Whether a period's interest was paid when due.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Standing {
    OnTime,
    InArrears,
}

/// The principal outstanding from a date on (until the next step or the period's end).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BalanceStep {
    pub from: NaiveDate,
    pub principal: Fen,
}

/// One settled interest period as paid.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PaidPeriod {
    pub start: NaiveDate,
    pub end_inclusive: NaiveDate,
    /// The principal of each day: the first step from `start`, dates strictly increasing.
    pub balances: Vec<BalanceStep>,
    pub rate: AnnualRate,
    /// Ordinary interest paid for the period, penalty and compound interest excluded.
    pub interest_paid: Fen,
    pub standing: Standing,
}

/// Why a period earns nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Exclusion {
    InArrears,
    Misuse,
}

/// The days of a period under one ratio, and their unrounded share of the subsidy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RatioSegment {
    pub from: NaiveDate,
    pub to_inclusive: NaiveDate,
    pub days: u32,
    pub ratio: Decimal,
    /// Σ min(P_d, cap) over these days.
    pub jishu_within_cap: i128,
    pub subsidy_unrounded_fen: Decimal,
}

/// The working of one period's subsidy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeriodSubsidy {
    pub start: NaiveDate,
    pub end_inclusive: NaiveDate,
    pub days: u32,
    /// Σ P_d over the period's days (积数).
    pub jishu: i128,
    /// Σ min(P_d, cap) over the period's days.
    pub jishu_within_cap: i128,
    pub rate: AnnualRate,
    pub rate_within_cap: Decimal,
    pub interest_paid: Fen,
    pub excluded: Option<Exclusion>,
    /// `paid × Σ min(P_d, cap) / Σ P_d × min(r, cap rate)/r`, zero when excluded.
    pub subsidisable_unrounded_fen: Decimal,
    pub subsidisable: Fen,
    pub segments: Vec<RatioSegment>,
    /// `paid × Σ min(P_d, cap) × ratio_d / Σ P_d × min(r, cap rate)/r`, zero when excluded.
    pub subsidy_unrounded_fen: Decimal,
    /// Rounded half-up, once.
    pub subsidy: Fen,
}

/// Computes the subsidy of each paid period of a loan; `misused` excludes them all.
pub fn subsidise(
    periods: &[PaidPeriod],
    policy: &SubsidyPolicy,
    misused: bool,
) -> Result<Vec<PeriodSubsidy>, SubsidyError> {
    if periods.len() > PERIODS_MAX {
        return Err(SubsidyError::TooManyPeriods);
    }
    if policy.household_cap.is_negative() || policy.cap_rate < Decimal::ZERO {
        return Err(SubsidyError::NegativeCap);
    }
    periods.iter().map(|p| subsidise_period(p, policy, misused)).collect()
}

fn subsidise_period(
    period: &PaidPeriod,
    policy: &SubsidyPolicy,
    misused: bool,
) -> Result<PeriodSubsidy, SubsidyError> {
    let PaidPeriod { start, end_inclusive, ref balances, rate, interest_paid, standing } = *period;
    if end_inclusive < start {
        return Err(SubsidyError::InvertedPeriod { start, end_inclusive });
    }
    if balances.iter().any(|b| b.principal.is_negative()) || interest_paid.is_negative() {
        return Err(SubsidyError::NegativeAmount);
    }
    let ordered = balances.windows(2).all(|w| w[0].from < w[1].from);
    if balances.first().map(|b| b.from) != Some(start)
        || !ordered
        || balances.iter().any(|b| b.from > end_inclusive)
    {
        return Err(SubsidyError::BadBalances);
    }
    let excluded = if misused {
        Some(Exclusion::Misuse)
    } else if standing == Standing::InArrears {
        Some(Exclusion::InArrears)
    } else {
        None
    };
    let days = day_count(start, end_inclusive)?;
    let rate_within_cap = rate.value().min(policy.cap_rate);
    // Σ over the days of `from..=to` of f(P_d), from the balance steps.
    let sum_over = |from: NaiveDate, to: NaiveDate, f: &dyn Fn(Fen) -> i128| -> i128 {
        let mut sum = 0i128;
        for (i, step) in balances.iter().enumerate() {
            let step_end =
                balances.get(i + 1).and_then(|next| next.from.pred_opt()).unwrap_or(end_inclusive);
            let (a, b) = (from.max(step.from), to.min(step_end));
            if a <= b {
                sum += i128::from((b - a).num_days() + 1) * f(step.principal);
            }
        }
        sum
    };
    let cap = policy.household_cap;
    let jishu = sum_over(start, end_inclusive, &|p| i128::from(p.0));
    let jishu_within_cap = sum_over(start, end_inclusive, &|p| i128::from(p.min(cap).0));
    let decimal =
        |x: i128| Decimal::try_from_i128_with_scale(x, 0).map_err(|_| SubsidyError::Overflow);

    // Everything is one fraction over `denominator` = Σ P_d × r, so the subsidy is one
    // division: paid × min(r, cap rate) × Σ min(P_d, cap) × ratio_d / (Σ P_d × r). No
    // principal or a zero rate means nothing subsidisable (and, consistently, nothing paid).
    let counts = excluded.is_none() && jishu > 0 && !rate.value().is_zero();
    let base = if counts {
        interest_paid.to_decimal().checked_mul(rate_within_cap).ok_or(SubsidyError::Overflow)?
    } else {
        Decimal::ZERO
    };
    let denominator = if counts {
        decimal(jishu)?.checked_mul(rate.value()).ok_or(SubsidyError::Overflow)?
    } else {
        Decimal::ONE
    };
    let fraction = |weight: Decimal| {
        base.checked_mul(weight)
            .and_then(|numerator| numerator.checked_div(denominator))
            .ok_or(SubsidyError::Overflow)
    };

    let mut segments = Vec::new();
    let mut weighted = Decimal::ZERO;
    for (from, to_inclusive, ratio) in policy.ratios.split(start, end_inclusive)? {
        let part_jishu = sum_over(from, to_inclusive, &|p| i128::from(p.min(cap).0));
        let weight = decimal(part_jishu)?.checked_mul(ratio).ok_or(SubsidyError::Overflow)?;
        weighted = weighted.checked_add(weight).ok_or(SubsidyError::Overflow)?;
        segments.push(RatioSegment {
            from,
            to_inclusive,
            days: day_count(from, to_inclusive)?,
            ratio,
            jishu_within_cap: part_jishu,
            subsidy_unrounded_fen: fraction(weight)?,
        });
    }
    let subsidisable_unrounded_fen = fraction(decimal(jishu_within_cap)?)?;
    let subsidy_unrounded_fen = fraction(weighted)?;
    let round = |x: Decimal| Fen::from_decimal(x, Rounding::HalfUp).ok_or(SubsidyError::Overflow);
    Ok(PeriodSubsidy {
        start,
        end_inclusive,
        days,
        jishu,
        jishu_within_cap,
        rate,
        rate_within_cap,
        interest_paid,
        excluded,
        subsidisable: round(subsidisable_unrounded_fen)?,
        subsidisable_unrounded_fen,
        segments,
        subsidy: round(subsidy_unrounded_fen)?,
        subsidy_unrounded_fen,
    })
}

fn day_count(start: NaiveDate, end_inclusive: NaiveDate) -> Result<u32, SubsidyError> {
    u32::try_from((end_inclusive - start).num_days() + 1).map_err(|_| SubsidyError::Overflow)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn d(y: i32, m: u32, day: u32) -> NaiveDate {
        NaiveDate::from_ymd_opt(y, m, day).unwrap()
    }

    fn policy(cap_rate: &str) -> SubsidyPolicy {
        SubsidyPolicy {
            household_cap: SubsidyPolicy::HOUSEHOLD_CAP_DEFAULT,
            cap_rate: cap_rate.parse().unwrap(),
            ratios: RatioTable::new(vec![
                RatioStep { effective_from: d(2014, 1, 1), ratio: Decimal::ONE },
                RatioStep { effective_from: d(2024, 1, 1), ratio: Decimal::new(70, 2) },
            ])
            .unwrap(),
        }
    }

    fn paid(
        start: NaiveDate,
        end_inclusive: NaiveDate,
        principal: i64,
        rate: &str,
        interest: i64,
    ) -> PaidPeriod {
        PaidPeriod {
            start,
            end_inclusive,
            balances: vec![BalanceStep { from: start, principal: Fen(principal) }],
            rate: AnnualRate::parse(rate).unwrap(),
            interest_paid: Fen(interest),
            standing: Standing::OnTime,
        }
    }

    #[test]
    fn period_split_across_the_2024_ratio_boundary() {
        // 2023-12-21..2024-03-20 is 91 days: 11 in December 2023 at 100%, 80 in 2024 at 70%.
        // Interest paid: 5,000,000 × 91 × 0.0385 / 360 = 48,659.72 → 48,660 fen.
        // Subsidy = 48,660 × (11 × 1.00 + 80 × 0.70) / 91 = 48,660 × 67 / 91 = 3,260,220 / 91
        //         = 35,826.593... → 35,827 fen (358.27 yuan); the parts are 48,660 × 11 / 91 =
        //         5,881.978... at 100% and 48,660 × 56 / 91 = 29,944.615... at 70%.
        let p = paid(d(2023, 12, 21), d(2024, 3, 20), 5_000_000, "0.0385", 48_660);
        let s = subsidise(&[p], &policy("0.0385"), false).unwrap();
        let s = &s[0];
        assert_eq!(s.days, 91);
        assert_eq!(s.subsidisable, Fen(48_660));
        let days: Vec<(u32, Decimal)> = s.segments.iter().map(|g| (g.days, g.ratio)).collect();
        assert_eq!(days, vec![(11, Decimal::ONE), (80, Decimal::new(70, 2))]);
        assert_eq!(s.segments[1].from, d(2024, 1, 1));
        assert_eq!(s.subsidy, Fen(35_827));
        assert_eq!(s.segments[0].subsidy_unrounded_fen.round_dp(3), Decimal::new(5_881_978, 3));
        assert_eq!(s.segments[1].subsidy_unrounded_fen.round_dp(3), Decimal::new(29_944_615, 3));
    }

    /// A repayment within a period: each day counts with its own balance. 5,000,000 at 3.85%
    /// from 2023-12-21 to 2024-03-20 (91 days), 4,000,000 repaid on 2024-01-01: 11 days on
    /// 5,000,000 at 100%, 80 on 1,000,000 at 70%. 积数 135,000,000; interest paid 14,437.5 ->
    /// 14,438. Subsidy 14,438 × (55,000,000 × 1.0 + 80,000,000 × 0.7) / 135,000,000 = 14,438 ×
    /// 111 / 135 = 11,871.24 -> 11,871 (weighting the days alike would give 14,438 × 67 / 91 =
    /// 10,630).
    #[test]
    fn a_balance_changed_within_the_period_weights_its_days() {
        let mut p = paid(d(2023, 12, 21), d(2024, 3, 20), 5_000_000, "0.0385", 14_438);
        p.balances.push(BalanceStep { from: d(2024, 1, 1), principal: Fen(1_000_000) });
        let s = &subsidise(&[p], &policy("0.0385"), false).unwrap()[0];
        assert_eq!((s.jishu, s.jishu_within_cap), (135_000_000, 135_000_000));
        assert_eq!(s.subsidisable, Fen(14_438));
        assert_eq!(s.subsidy, Fen(11_871));
        let parts: Vec<i128> = s.segments.iter().map(|g| g.jishu_within_cap).collect();
        assert_eq!(parts, [55_000_000, 80_000_000]);
        // Through the household cap: 6,000,000 for the first 11 days, 1,000,000 after. Only
        // 5,000,000 of the first days' principal counts: 积数 within the cap 135,000,000 of
        // 146,000,000. Interest 146,000,000 × 0.0385 / 360 = 15,613.89 -> 15,614; subsidisable
        // 15,614 × 135/146 = 14,437.66 -> 14,438; subsidy 15,614 × 111/146 = 11,870.84 ->
        // 11,871.
        let mut p = paid(d(2023, 12, 21), d(2024, 3, 20), 6_000_000, "0.0385", 15_614);
        p.balances.push(BalanceStep { from: d(2024, 1, 1), principal: Fen(1_000_000) });
        let s = &subsidise(&[p], &policy("0.0385"), false).unwrap()[0];
        assert_eq!((s.jishu, s.jishu_within_cap), (146_000_000, 135_000_000));
        assert_eq!((s.subsidisable, s.subsidy), (Fen(14_438), Fen(11_871)));
        // Balances that do not start on the period's first day, or out of order: refused.
        let mut late = paid(d(2023, 12, 21), d(2024, 3, 20), 5_000_000, "0.0385", 1);
        late.balances[0].from = d(2023, 12, 22);
        assert_eq!(subsidise(&[late], &policy("0.0385"), false), Err(SubsidyError::BadBalances));
        let mut back = paid(d(2023, 12, 21), d(2024, 3, 20), 5_000_000, "0.0385", 1);
        back.balances.push(BalanceStep { from: d(2023, 12, 21), principal: Fen(1) });
        assert_eq!(subsidise(&[back], &policy("0.0385"), false), Err(SubsidyError::BadBalances));
    }

    #[test]
    fn caps_on_principal_and_rate() {
        // 6,000,000 fen at 4.35%, 2023-03-21..2023-06-20 (92 days): paid 6,000,000 × 92 × 0.0435
        // / 360 = 66,700 fen exactly. Within the caps: 66,700 × 5/6 × 0.0385/0.0435 =
        // 49,194.44... → 49,194, which is 5,000,000 × 92 × 0.0385 / 360, as it should be.
        let p = paid(d(2023, 3, 21), d(2023, 6, 20), 6_000_000, "0.0435", 66_700);
        let s = &subsidise(&[p], &policy("0.0385"), false).unwrap()[0];
        assert_eq!((s.jishu, s.jishu_within_cap), (6_000_000 * 92, 5_000_000 * 92));
        assert_eq!(s.rate_within_cap, Decimal::new(385, 4));
        assert_eq!(s.subsidisable, Fen(49_194));
        assert_eq!(s.subsidy, Fen(49_194));
    }

    #[test]
    fn arrears_and_misuse_earn_nothing() {
        let mut p = paid(d(2023, 3, 21), d(2023, 6, 20), 5_000_000, "0.0385", 49_194);
        let s = &subsidise(&[p.clone()], &policy("0.0385"), true).unwrap()[0];
        assert_eq!((s.excluded, s.subsidy), (Some(Exclusion::Misuse), Fen::ZERO));
        p.standing = Standing::InArrears;
        let s = &subsidise(&[p], &policy("0.0385"), false).unwrap()[0];
        assert_eq!((s.excluded, s.subsidy), (Some(Exclusion::InArrears), Fen::ZERO));
        assert_eq!(s.segments[0].days, 92);
    }

    #[test]
    fn bad_tables_and_periods_are_errors() {
        let step = |y, ratio| RatioStep { effective_from: d(y, 1, 1), ratio };
        assert_eq!(RatioTable::new(vec![]), Err(SubsidyError::NoRatios));
        assert!(matches!(
            RatioTable::new(vec![step(2024, Decimal::ONE), step(2024, Decimal::ONE)]),
            Err(SubsidyError::RatiosOutOfOrder { .. })
        ));
        assert!(matches!(
            RatioTable::new(vec![step(2024, Decimal::TWO)]),
            Err(SubsidyError::RatioOutOfRange { .. })
        ));
        let early = paid(d(2013, 12, 21), d(2014, 3, 20), 5_000_000, "0.0385", 1);
        assert!(matches!(
            subsidise(&[early], &policy("0.0385"), false),
            Err(SubsidyError::NoRatioOn { .. })
        ));
        let inverted = paid(d(2023, 3, 21), d(2023, 3, 20), 5_000_000, "0.0385", 1);
        assert!(matches!(
            subsidise(&[inverted], &policy("0.0385"), false),
            Err(SubsidyError::InvertedPeriod { .. })
        ));
        let huge = paid(d(2023, 3, 21), d(2023, 6, 20), i64::MAX, "0.99999999", i64::MAX);
        let mut rich = policy("0.9");
        rich.household_cap = Fen(i64::MAX);
        assert!(subsidise(&[huge], &rich, false).is_err());
    }

    /// A period of `days` from `start` over one principal, at `rate` (in 1e-8), paid on time.
    fn on_time(
        start: NaiveDate,
        days: i64,
        principal: i64,
        rate: i64,
        interest: i64,
    ) -> PaidPeriod {
        PaidPeriod {
            start,
            end_inclusive: start + chrono::Duration::days(days - 1),
            balances: vec![BalanceStep { from: start, principal: Fen(principal) }],
            rate: AnnualRate::new(Decimal::new(rate, 8)).unwrap(),
            interest_paid: Fen(interest),
            standing: Standing::OnTime,
        }
    }

    /// The tests' policy with its cap rate at `cap_rate` (in 1e-8).
    fn at_cap_rate(cap_rate: i64) -> SubsidyPolicy {
        let mut pol = policy("0");
        pol.cap_rate = Decimal::new(cap_rate, 8);
        pol
    }

    proptest! {
        #[test]
        fn subsidy_never_exceeds_what_was_paid(
            start in 0i64..4_000,
            days in 1i64..400,
            principal in 0i64..20_000_000,
            rate in 0i64..10_000_000,
            cap_rate in 0i64..10_000_000,
            interest in 0i64..2_000_000,
        ) {
            let start = d(2014, 1, 1) + chrono::Duration::days(start);
            let p = on_time(start, days, principal, rate, interest);
            let pol = at_cap_rate(cap_rate);
            let s = &subsidise(std::slice::from_ref(&p), &pol, false).unwrap()[0];
            prop_assert!(s.subsidy >= Fen::ZERO);
            prop_assert!(s.subsidy <= s.subsidisable);
            prop_assert!(s.subsidisable <= s.interest_paid);
            let segment_days: u32 = s.segments.iter().map(|g| g.days).sum();
            prop_assert_eq!(segment_days, s.days);
            // The same principal given in two steps is the same period.
            let mid = days / 2;
            if mid > 0 {
                let mut split = p.clone();
                let from = start + chrono::Duration::days(mid);
                split.balances.push(BalanceStep { from, principal: Fen(principal) });
                let t = &subsidise(&[split], &pol, false).unwrap()[0];
                prop_assert_eq!((t.subsidy, t.subsidisable), (s.subsidy, s.subsidisable));
                prop_assert_eq!(t.subsidy_unrounded_fen, s.subsidy_unrounded_fen);
            }
        }

        /// One principal over a period paid on time, against the module's formula worked out
        /// here from the period's dates alone: with d1 of its days before 2024-01-01 (the
        /// policy's step from 100% to 70%) and d2 from it on, subsidy = paid × min(P, cap)/P ×
        /// min(r, cap rate)/r × (d1 × 1 + d2 × 0.7) / days, and subsidisable the same without
        /// the ratios, each rounded half-up once (one exact fraction, a single division here).
        /// Within both caps and before 2024 that is all that was paid.
        #[test]
        fn subsidy_is_the_paid_interest_at_the_ratio_of_each_day(
            start in prop_oneof![0i64..6_000, 3_500i64..3_700],
            days in 1i64..400,
            principal in prop_oneof![1i64..=5_000_000, 1i64..20_000_000],
            rate in 1i64..10_000_000,
            cap_rate in prop_oneof![Just(10_000_000i64), 0i64..10_000_000],
            interest in 0i64..2_000_000,
        ) {
            let start = d(2014, 1, 1) + chrono::Duration::days(start);
            let p = on_time(start, days, principal, rate, interest);
            let end_inclusive = p.end_inclusive;
            let pol = at_cap_rate(cap_rate);
            let s = &subsidise(std::slice::from_ref(&p), &pol, false).unwrap()[0];
            let step = d(2024, 1, 1);
            let d1 = (step.min(end_inclusive + chrono::Duration::days(1)) - start).num_days();
            let d1 = d1.max(0);
            let d2 = days - d1;
            // In whole units: principal 5,000,000 fen at most, rates in 1e-8, ratios in tenths.
            let within = Decimal::from(principal.min(5_000_000) * rate.min(cap_rate));
            let whole = Decimal::from(principal) * Decimal::from(rate);
            let paid = Decimal::from(interest);
            let tenths = Decimal::from(d1 * 10 + d2 * 7);
            let subsidy = paid * within * tenths / (whole * Decimal::from(days * 10));
            let subsidisable = paid * within / whole;
            let half_up = |x: Decimal| {
                Fen(i64::try_from((x + Decimal::new(5, 1)).floor().mantissa()).unwrap())
            };
            prop_assert_eq!(s.subsidy, half_up(subsidy), "{} of {}", subsidy, interest);
            prop_assert_eq!(s.subsidisable, half_up(subsidisable), "{}", subsidisable);
            if principal <= 5_000_000 && rate <= cap_rate && d2 == 0 {
                prop_assert_eq!(s.subsidy, Fen(interest));
            }
        }
    }
}
