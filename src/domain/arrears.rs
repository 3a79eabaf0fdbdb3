//! Arrears: penalty interest (罚息) on overdue or misused principal, and compound interest (复利)
//! on unpaid interest.
//!
//! The model. The penalty rate is the contract rate × (1 + uplift), the uplift being a policy
//! figure: 0.5 when overdue and 1.0 for misuse by default ([`ArrearsPolicy`]). Every charge is on
//! the day basis, amount × days × annual rate / 360, computed in one expression and rounded once.
//! Days are counted as everywhere else (算头不算尾): an amount due on `D` and paid on `P` bears
//! `P − D` days, so a payment on the due day bears none, and the ordinary interest, which stops the
//! day before maturity, and the penalty, which starts on maturity, neither leave a day out nor
//! count one twice. Unpaid interest compounds at the contract rate on days before maturity and at
//! the penalty rate from maturity on; a policy's grace days (default 0) push the start of
//! compounding back by that many days. Penalty and compound interest are separate buckets, because
//! they are paid first and never subsidised; nothing here decides the order of payment.

use chrono::NaiveDate;
use rust_decimal::Decimal;

use super::interest::interest_on_jishu;
use super::money::{Fen, Rounding};
use super::rate::AnnualRate;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ArrearsError {
    #[error("uplift must be between 0 and 10 (1000%)")]
    UpliftOutOfRange,
    #[error("grace days must be at most {}", GRACE_DAYS_MAX)]
    GraceTooLong,
    #[error("amount must not be negative")]
    NegativeAmount,
    #[error("amount overflows")]
    Overflow,
    #[error("more than {} unpaid interest items", UNPAID_ITEMS_MAX)]
    TooManyItems,
}

/// A limit on the unpaid interest settlements assessed at once: 100 years of monthly
/// settlements, far beyond any programme loan.
pub const UNPAID_ITEMS_MAX: usize = 1_200;

/// A limit on grace days: after 90 days overdue a loan is claimed against the risk-compensation
/// fund, so a longer grace on interest would make no sense.
pub const GRACE_DAYS_MAX: u32 = 90;

/// The most grace days a policy version or contract recorded by any build may hold: builds
/// before 2026-12-01 let a policy set up to 366, and what they recorded must read back.
pub const GRACE_DAYS_RECORDED_MAX: u32 = 366;

/// Grace days as recorded (a contract's terms in the journal or in a loan's row, a policy
/// version): at most [`GRACE_DAYS_RECORDED_MAX`]; more is refused as unreadable.
pub fn recorded_grace_days<'de, D: serde::Deserializer<'de>>(d: D) -> Result<u32, D::Error> {
    let days = <u32 as serde::Deserialize>::deserialize(d)?;
    if days > GRACE_DAYS_RECORDED_MAX {
        return Err(serde::de::Error::custom(format!(
            "{days} grace days: more than {GRACE_DAYS_RECORDED_MAX}"
        )));
    }
    Ok(days)
}

/// Why principal bears a penalty.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Breach {
    /// Not repaid when due.
    Overdue,
    /// Used for something other than production (挪用).
    Misuse,
}

/// The arrears figures in force: penalty rate = contract rate × (1 + uplift), and the grace days
/// after a settlement before unpaid interest starts to compound.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ArrearsPolicy {
    overdue_uplift: Decimal,
    misuse_uplift: Decimal,
    grace_days: u32,
}

impl Default for ArrearsPolicy {
    /// 50% over the contract rate when overdue, 100% for misuse, no grace.
    fn default() -> Self {
        ArrearsPolicy {
            overdue_uplift: Decimal::new(5, 1),
            misuse_uplift: Decimal::ONE,
            grace_days: 0,
        }
    }
}

impl ArrearsPolicy {
    /// Uplifts between 0 and 10: no regulation allows more than a few times the contract rate,
    /// and the bound keeps the penalty rate's arithmetic far from overflow.
    /// Grace days at most [`GRACE_DAYS_MAX`].
    pub fn new(
        overdue_uplift: Decimal,
        misuse_uplift: Decimal,
        grace_days: u32,
    ) -> Result<Self, ArrearsError> {
        for uplift in [overdue_uplift, misuse_uplift] {
            if uplift.is_sign_negative() && !uplift.is_zero() || uplift > Decimal::TEN {
                return Err(ArrearsError::UpliftOutOfRange);
            }
        }
        if grace_days > GRACE_DAYS_MAX {
            return Err(ArrearsError::GraceTooLong);
        }
        Ok(ArrearsPolicy { overdue_uplift, misuse_uplift, grace_days })
    }

    pub fn grace_days(&self) -> u32 {
        self.grace_days
    }

    pub fn overdue_uplift(&self) -> Decimal {
        self.overdue_uplift
    }

    pub fn misuse_uplift(&self) -> Decimal {
        self.misuse_uplift
    }

    /// The penalty rate for `breach` on a loan at `contract` rate.
    pub fn penalty_rate(&self, contract: AnnualRate, breach: Breach) -> AnnualRate {
        let uplift = match breach {
            Breach::Overdue => self.overdue_uplift,
            Breach::Misuse => self.misuse_uplift,
        };
        // Cannot overflow: the contract rate is below 1 and the uplift at most 10.
        contract.with_uplift(uplift)
    }
}

/// One day-basis charge with its working: `base × days × annual_rate / 360`, rounded once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Charge {
    pub base: Fen,
    pub days: u32,
    pub jishu: i64,
    pub annual_rate: AnnualRate,
    pub unrounded_fen: Decimal,
    pub rounding: Rounding,
    pub amount: Fen,
}

/// Penalty interest on `overdue_principal` for `days` days at `penalty_rate`.
pub fn penalty_interest(
    overdue_principal: Fen,
    days: u32,
    penalty_rate: AnnualRate,
    rounding: Rounding,
) -> Result<Charge, ArrearsError> {
    let (jishu, unrounded_fen) = day_basis(overdue_principal, days, penalty_rate)?;
    Ok(Charge {
        base: overdue_principal,
        days,
        jishu,
        annual_rate: penalty_rate,
        unrounded_fen,
        rounding,
        amount: Fen::from_decimal(unrounded_fen, rounding).ok_or(ArrearsError::Overflow)?,
    })
}

/// One rate's share of a compound charge, unrounded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CompoundSegment {
    pub days: u32,
    pub jishu: i64,
    pub annual_rate: AnnualRate,
    pub unrounded_fen: Decimal,
}

/// Compound interest on one unpaid interest settlement, rounded once over both segments.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CompoundInterest {
    pub unpaid_interest: Fen,
    pub due_date: NaiveDate,
    /// The first day that no longer compounds (payment or assessment day).
    pub until: NaiveDate,
    /// Days before maturity, at the contract rate.
    pub within_term: CompoundSegment,
    /// Days from maturity on, at the penalty rate.
    pub overdue: CompoundSegment,
    pub unrounded_fen: Decimal,
    pub rounding: Rounding,
    pub amount: Fen,
}

/// Compound interest on `unpaid_interest` due on `due_date`, for the days from `due_date` up to
/// `until` (excluded): at `contract_rate` before `maturity`, at `penalty_rate` from it on.
pub fn compound_interest(
    unpaid_interest: Fen,
    due_date: NaiveDate,
    until: NaiveDate,
    maturity: NaiveDate,
    contract_rate: AnnualRate,
    penalty_rate: AnnualRate,
    rounding: Rounding,
) -> Result<CompoundInterest, ArrearsError> {
    let within_days = days_between(due_date, until.min(maturity))?;
    let overdue_days = days_between(due_date.max(maturity), until)?;
    let within_term = segment(unpaid_interest, within_days, contract_rate)?;
    let overdue = segment(unpaid_interest, overdue_days, penalty_rate)?;
    let unrounded_fen = within_term
        .unrounded_fen
        .checked_add(overdue.unrounded_fen)
        .ok_or(ArrearsError::Overflow)?;
    Ok(CompoundInterest {
        unpaid_interest,
        due_date,
        until,
        within_term,
        overdue,
        unrounded_fen,
        rounding,
        amount: Fen::from_decimal(unrounded_fen, rounding).ok_or(ArrearsError::Overflow)?,
    })
}

/// An interest settlement left unpaid.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UnpaidInterest {
    pub due_date: NaiveDate,
    pub amount: Fen,
}

/// What a loan in arrears has run up by a day.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArrearsCase<'a> {
    pub contract_rate: AnnualRate,
    pub maturity: NaiveDate,
    pub breach: Breach,
    /// Principal bearing the penalty, and the first day it does (maturity when overdue, the
    /// recorded day of misuse for misuse).
    pub penalty_principal: Fen,
    pub penalty_from: NaiveDate,
    pub unpaid_interest: &'a [UnpaidInterest],
    /// The first day not charged: the payment or assessment day.
    pub until: NaiveDate,
    pub rounding: Rounding,
}

/// The two buckets, kept apart.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArrearsCharges {
    pub penalty_rate: AnnualRate,
    pub penalty: Charge,
    pub compound: Vec<CompoundInterest>,
    pub compound_total: Fen,
}

/// Assesses penalty and compound interest for `case` under `policy`.
pub fn assess_arrears(
    policy: &ArrearsPolicy,
    case: &ArrearsCase<'_>,
) -> Result<ArrearsCharges, ArrearsError> {
    if case.unpaid_interest.len() > UNPAID_ITEMS_MAX {
        return Err(ArrearsError::TooManyItems);
    }
    let penalty_rate = policy.penalty_rate(case.contract_rate, case.breach);
    let penalty_days = days_between(case.penalty_from, case.until)?;
    let penalty =
        penalty_interest(case.penalty_principal, penalty_days, penalty_rate, case.rounding)?;
    // With grace days, unpaid interest is treated as due that many days later: paid within the
    // grace it bears nothing, and after it, it compounds from the end of the grace.
    let grace = chrono::Days::new(u64::from(policy.grace_days));
    let compound = case
        .unpaid_interest
        .iter()
        .map(|item| {
            compound_interest(
                item.amount,
                item.due_date.checked_add_days(grace).ok_or(ArrearsError::Overflow)?,
                case.until,
                case.maturity,
                case.contract_rate,
                penalty_rate,
                case.rounding,
            )
        })
        .collect::<Result<Vec<_>, _>>()?;
    let compound_total =
        Fen::checked_sum(compound.iter().map(|c| c.amount)).ok_or(ArrearsError::Overflow)?;
    Ok(ArrearsCharges { penalty_rate, penalty, compound, compound_total })
}

/// Days from `from` (counted) to `until` (not counted); zero when `until` is not later.
fn days_between(from: NaiveDate, until: NaiveDate) -> Result<u32, ArrearsError> {
    let days = (until - from).num_days().max(0);
    u32::try_from(days).map_err(|_| ArrearsError::Overflow)
}

fn day_basis(base: Fen, days: u32, rate: AnnualRate) -> Result<(i64, Decimal), ArrearsError> {
    if base.is_negative() {
        return Err(ArrearsError::NegativeAmount);
    }
    let jishu = base.0.checked_mul(i64::from(days)).ok_or(ArrearsError::Overflow)?;
    // interest_on_jishu fails only on overflow.
    let unrounded = interest_on_jishu(jishu, rate).map_err(|_| ArrearsError::Overflow)?;
    Ok((jishu, unrounded))
}

fn segment(base: Fen, days: u32, rate: AnnualRate) -> Result<CompoundSegment, ArrearsError> {
    let (jishu, unrounded_fen) = day_basis(base, days, rate)?;
    Ok(CompoundSegment { days, jishu, annual_rate: rate, unrounded_fen })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Grace days read back up to 366, what builds before 2026-12-01 let a policy set (a new
    /// version is held to 90); more is refused, not read.
    #[test]
    fn recorded_grace_days_are_bounded_by_what_was_ever_allowed() {
        let read = |json: &str| recorded_grace_days(&mut serde_json::Deserializer::from_str(json));
        for ok in [0, 90, 91, 366] {
            assert_eq!(read(&ok.to_string()).unwrap(), ok);
        }
        let e = read("367").unwrap_err().to_string();
        assert_eq!(e, "367 grace days: more than 366");
    }

    fn d(y: i32, m: u32, day: u32) -> NaiveDate {
        NaiveDate::from_ymd_opt(y, m, day).unwrap()
    }

    fn rate(text: &str) -> AnnualRate {
        AnnualRate::parse(text).unwrap()
    }

    #[test]
    fn penalty_on_overdue_principal() {
        let policy = ArrearsPolicy::default();
        let penalty_rate = policy.penalty_rate(rate("0.0385"), Breach::Overdue);
        assert_eq!(penalty_rate, rate("0.05775"));
        // 5,000,000 × 30 × 0.05775 / 360 = 24,062.5 fen: 240.63 half-up, 240.62 half-even.
        let up = penalty_interest(Fen(5_000_000), 30, penalty_rate, Rounding::HalfUp).unwrap();
        assert_eq!(up.amount.to_string(), "240.63");
        assert_eq!(up.unrounded_fen, Decimal::new(240_625, 1));
        let even = penalty_interest(Fen(5_000_000), 30, penalty_rate, Rounding::HalfEven).unwrap();
        assert_eq!(even.amount.to_string(), "240.62");
        assert_eq!(policy.penalty_rate(rate("0.0385"), Breach::Misuse), rate("0.077"));
    }

    #[test]
    fn compound_splits_at_maturity() {
        // 18,715 fen of interest due 2022-01-10, maturity 2022-01-25, paid 2022-02-24:
        // 15 days at 3.85%: 18,715 × 15 × 0.0385 / 360 = 30.0217... fen;
        // 30 days at 5.775%: 18,715 × 30 × 0.05775 / 360 = 90.0659... fen; total 120.088 → 1.20.
        let c = compound_interest(
            Fen(18_715),
            d(2022, 1, 10),
            d(2022, 2, 24),
            d(2022, 1, 25),
            rate("0.0385"),
            rate("0.05775"),
            Rounding::HalfUp,
        )
        .unwrap();
        assert_eq!((c.within_term.days, c.overdue.days), (15, 30));
        assert_eq!(c.within_term.jishu, 280_725);
        assert_eq!(c.overdue.jishu, 561_450);
        assert_eq!(c.amount, Fen(120));
        // Paid on the due day: nothing.
        let none = compound_interest(
            Fen(18_715),
            d(2022, 1, 10),
            d(2022, 1, 10),
            d(2022, 1, 25),
            rate("0.0385"),
            rate("0.05775"),
            Rounding::HalfUp,
        )
        .unwrap();
        assert_eq!(none.amount, Fen::ZERO);
    }

    #[test]
    fn assessment_keeps_buckets_apart() {
        let unpaid = [UnpaidInterest { due_date: d(2022, 1, 25), amount: Fen(18_715) }];
        let case = ArrearsCase {
            contract_rate: rate("0.0385"),
            maturity: d(2022, 1, 25),
            breach: Breach::Overdue,
            penalty_principal: Fen(5_000_000),
            penalty_from: d(2022, 1, 25),
            unpaid_interest: &unpaid,
            until: d(2022, 2, 24),
            rounding: Rounding::HalfUp,
        };
        let charges = assess_arrears(&ArrearsPolicy::default(), &case).unwrap();
        assert_eq!(charges.penalty.days, 30);
        assert_eq!(charges.penalty.amount, Fen(24_063));
        // 18,715 × 30 × 0.05775 / 360 = 90.0659... → 90 fen, all at the penalty rate.
        assert_eq!(charges.compound[0].within_term.days, 0);
        assert_eq!(charges.compound_total, Fen(90));
        assert_eq!(charges.penalty_rate.to_string(), "0.05775");

        // With 10 grace days the interest compounds 20 days: 18,715 × 20 × 0.05775 / 360 =
        // 60.04... → 60 fen; the penalty on principal is unchanged.
        let graceful = ArrearsPolicy::new(Decimal::new(5, 1), Decimal::ONE, 10).unwrap();
        let charges = assess_arrears(&graceful, &case).unwrap();
        assert_eq!(charges.compound[0].overdue.days, 20);
        assert_eq!(charges.compound_total, Fen(60));
        assert_eq!(charges.penalty.amount, Fen(24_063));
    }

    #[test]
    fn bad_input_is_an_error() {
        assert_eq!(
            ArrearsPolicy::new(Decimal::new(-1, 1), Decimal::ONE, 0),
            Err(ArrearsError::UpliftOutOfRange)
        );
        assert_eq!(
            ArrearsPolicy::new(Decimal::ONE, Decimal::new(11, 0), 0),
            Err(ArrearsError::UpliftOutOfRange)
        );
        assert_eq!(
            ArrearsPolicy::new(Decimal::ONE, Decimal::ONE, 91),
            Err(ArrearsError::GraceTooLong)
        );
        assert_eq!(
            penalty_interest(Fen(-1), 1, rate("0.0385"), Rounding::HalfUp),
            Err(ArrearsError::NegativeAmount)
        );
        assert_eq!(
            penalty_interest(Fen(i64::MAX), 2, rate("0.0385"), Rounding::HalfUp),
            Err(ArrearsError::Overflow)
        );
    }
}
