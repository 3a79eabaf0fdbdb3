//! Repayment schedules: what a borrower owes on which day, with the working of every figure.
//!
//! The model. Four repayment methods:
//! - bullet (到期还本、按期结息): interest settled on the calendar's 20ths, principal at maturity;
//! - interest with principal (利随本清): one payment of principal and all interest at maturity;
//! - equal instalments (等额本息) and equal principal (等额本金): monthly or quarterly instalments
//!   due on the same day of the month as the disbursement (对日, clamped to a shorter month's end).
//!
//! Bullet and interest-with-principal accrue on the day basis, 积数 × annual rate / 360 (see
//! [`super::interest`]), exactly as the bank settles them. The amortising methods follow the
//! periodic-rate convention under which Chinese banks quote 等额本息 and 等额本金: each instalment's
//! interest is the opening principal × annual rate / 12 (monthly) or / 4 (quarterly), whatever the
//! number of calendar days, and the level payment of 等额本息 is `P·r·(1+r)^n / ((1+r)^n − 1)`
//! rounded to the fen. Every rounding uses the terms' mode. Principal amortises to exactly zero:
//! the last instalment takes whatever principal remains (and so absorbs the rounding of the level
//! payment or of the equal principal part) and is flagged `absorbs_rounding`. For a principal so
//! small that rounded instalments would overpay it early, an instalment's principal is capped at
//! what remains, and that instalment is flagged too.

use chrono::{Datelike, NaiveDate};
use rust_decimal::Decimal;

use super::calendar::{CalendarError, SettlementFrequency, interest_periods};
use super::date::add_months;
use super::interest::{InterestError, PeriodInterest, PrincipalTimeline, accrue};
use super::money::{Fen, Rounding};
use super::rate::AnnualRate;

/// How principal and interest are repaid.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RepaymentMethod {
    /// Principal at maturity, interest at each settlement (monthly, quarterly or yearly).
    Bullet,
    /// 等额本息: a level payment each month or quarter.
    EqualInstalment,
    /// 等额本金: equal principal each month or quarter, plus interest on what remains.
    EqualPrincipal,
    /// 利随本清: principal and all interest at maturity (frequency `AtMaturity`).
    InterestWithPrincipal,
}

impl RepaymentMethod {
    /// 等额本息 and 等额本金: principal falls due in instalments.
    pub fn is_amortising(self) -> bool {
        matches!(self, RepaymentMethod::EqualInstalment | RepaymentMethod::EqualPrincipal)
    }
}

/// The length of a loan.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Term {
    /// Due on this date.
    Maturity(NaiveDate),
    /// Due this many months after disbursement (the day clamped to a shorter month's end).
    Months(u32),
}

/// What a schedule is built from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ScheduleTerms {
    pub principal: Fen,
    pub rate: AnnualRate,
    pub disbursed: NaiveDate,
    pub term: Term,
    pub method: RepaymentMethod,
    pub frequency: SettlementFrequency,
    pub rounding: Rounding,
}

/// A limit on the term: 50 years. Programme loans run at most 36 months; the limit bounds the
/// length of a schedule and the powers computed for 等额本息.
pub const TERM_MONTHS_MAX: u32 = 600;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScheduleError {
    #[error("principal must be positive")]
    NonPositivePrincipal,
    #[error("maturity {maturity} is not after disbursement {disbursed}")]
    NoTerm { disbursed: NaiveDate, maturity: NaiveDate },
    #[error("term is longer than {} months", TERM_MONTHS_MAX)]
    TermTooLong,
    #[error("{method:?} cannot settle {frequency:?}")]
    FrequencyNotAllowed { method: RepaymentMethod, frequency: SettlementFrequency },
    #[error("an amortising term must be a whole number of instalment periods (1 or 3 months)")]
    NotWholePeriods,
    #[error("amount overflows")]
    Overflow,
    #[error(transparent)]
    Calendar(#[from] CalendarError),
    #[error(transparent)]
    Interest(#[from] InterestError),
}

/// How an instalment's interest was computed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InterestWorking {
    /// Day basis: 积数 × annual rate / 360 (bullet, interest with principal).
    DayBasis(PeriodInterest),
    /// Periodic-rate basis (等额本息, 等额本金).
    Periodic(PeriodicInterest),
}

/// Interest of one amortising instalment: opening principal × annual rate / periods per year;
/// of a broken first period ([`build_schedule_paid_out`]), that pro rata to the days from the
/// payout over the period's days (`unrounded_fen` and `interest` are the pro-rata figures; the
/// days are the instalment's `period_start`, `due_date` and the payout). No answer shows a
/// broken period's working: `PreviewSchedule` schedules from a disbursement date.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeriodicInterest {
    pub opening_principal: Fen,
    pub annual_rate: AnnualRate,
    /// 12 for monthly instalments, 4 for quarterly.
    pub periods_per_year: u32,
    /// `annual_rate / periods_per_year`, shown for the record.
    pub periodic_rate: Decimal,
    /// `opening_principal × annual_rate / periods_per_year` in fen, computed in one expression.
    pub unrounded_fen: Decimal,
    pub rounding: Rounding,
    pub interest: Fen,
}

/// The level payment of 等额本息: `P·r·(1+r)^n / ((1+r)^n − 1)`, or `P / n` at a zero rate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LevelPayment {
    pub periodic_rate: Decimal,
    pub periods: u32,
    /// The formula's value in fen. `(1+r)^n` is computed by repeated multiplication in 28-digit
    /// decimal arithmetic, so this is exact to far below a fen, not to the last digit.
    pub unrounded_fen: Decimal,
    pub rounding: Rounding,
    pub payment: Fen,
}

/// One instalment of a schedule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Instalment {
    /// From 1.
    pub number: u32,
    pub period_start: NaiveDate,
    pub period_end_inclusive: NaiveDate,
    pub due_date: NaiveDate,
    pub principal_due: Fen,
    pub interest_due: Fen,
    pub total_due: Fen,
    /// Principal outstanding once this instalment is paid.
    pub remaining_principal: Fen,
    pub interest: InterestWorking,
    /// The principal here is what remained rather than the formula's part: the last instalment
    /// of an amortising schedule (and any capped one).
    pub absorbs_rounding: bool,
}

/// A loan's schedule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Schedule {
    pub maturity: NaiveDate,
    /// Present for 等额本息 only.
    pub level_payment: Option<LevelPayment>,
    pub instalments: Vec<Instalment>,
}

impl Schedule {
    pub fn total_principal(&self) -> Option<Fen> {
        Fen::checked_sum(self.instalments.iter().map(|i| i.principal_due))
    }

    pub fn total_interest(&self) -> Option<Fen> {
        Fen::checked_sum(self.instalments.iter().map(|i| i.interest_due))
    }
}

/// The maturity date the terms give, checked against [`TERM_MONTHS_MAX`].
pub fn maturity_date(disbursed: NaiveDate, term: Term) -> Result<NaiveDate, ScheduleError> {
    let maturity = match term {
        Term::Months(months) if months > TERM_MONTHS_MAX => return Err(ScheduleError::TermTooLong),
        Term::Months(months) => {
            add_months(disbursed, months).ok_or(CalendarError::DateOutOfRange)?
        }
        Term::Maturity(date) => {
            let latest =
                add_months(disbursed, TERM_MONTHS_MAX).ok_or(CalendarError::DateOutOfRange)?;
            if date > latest {
                return Err(ScheduleError::TermTooLong);
            }
            date
        }
    };
    if maturity <= disbursed {
        return Err(ScheduleError::NoTerm { disbursed, maturity });
    }
    Ok(maturity)
}

/// Builds the schedule of `terms`, validating the method against the frequency first.
pub fn build_schedule(terms: &ScheduleTerms) -> Result<Schedule, ScheduleError> {
    build_schedule_paid_out(terms, terms.disbursed)
}

/// The settlement frequency of a contract that names none: quarterly, the programme's default
/// (DESIGN.md, "Interest"), but for 利随本清, which settles at maturity only.
pub fn default_frequency(method: RepaymentMethod) -> SettlementFrequency {
    match method {
        RepaymentMethod::InterestWithPrincipal => SettlementFrequency::AtMaturity,
        RepaymentMethod::Bullet
        | RepaymentMethod::EqualInstalment
        | RepaymentMethod::EqualPrincipal => SettlementFrequency::Quarterly,
    }
}

/// Whether a repayment method can settle at a frequency: bullet loans settle monthly, quarterly
/// or yearly; 利随本清 only at maturity; the amortising methods monthly or quarterly.
pub fn check_frequency(
    method: RepaymentMethod,
    frequency: SettlementFrequency,
) -> Result<(), ScheduleError> {
    use RepaymentMethod::*;
    use SettlementFrequency::*;
    let allowed = match method {
        Bullet => matches!(frequency, Monthly | Quarterly | Yearly),
        InterestWithPrincipal => frequency == AtMaturity,
        EqualInstalment | EqualPrincipal => matches!(frequency, Monthly | Quarterly),
    };
    if allowed { Ok(()) } else { Err(ScheduleError::FrequencyNotAllowed { method, frequency }) }
}

/// The schedule of a contract whose `terms` run from its contract date (`terms.disbursed`),
/// paid out in full on `paid_out`, on or after that date and before the maturity: the
/// contract's maturity stands (a loan paid out late is not lent longer than its contract says;
/// only an extension moves a maturity). An amortising loan's instalments fall due on the
/// contract's own dates (对日 the contract date), those after the payout: the first is a broken
/// period, its interest pro rata to the days from the payout over the period's days
/// (`opening × rate × days / (periods per year × period days)`, the expression servicing
/// settles it by), and the level payment (等额本息) or the equal part (等额本金) is worked out
/// over the instalments left. Other methods are scheduled from the payout to the maturity.
/// Paid out on the contract date, it is [`build_schedule`]'s.
pub fn build_schedule_paid_out(
    terms: &ScheduleTerms,
    paid_out: NaiveDate,
) -> Result<Schedule, ScheduleError> {
    use RepaymentMethod::*;
    if !terms.principal.is_positive() {
        return Err(ScheduleError::NonPositivePrincipal);
    }
    check_frequency(terms.method, terms.frequency)?;
    let maturity = maturity_date(terms.disbursed, terms.term)?;
    let paid_out = paid_out.max(terms.disbursed);
    if maturity <= paid_out {
        return Err(ScheduleError::NoTerm { disbursed: paid_out, maturity });
    }
    match terms.method {
        Bullet | InterestWithPrincipal => day_basis_schedule(terms, paid_out, maturity),
        EqualInstalment | EqualPrincipal => amortising_schedule(terms, maturity, paid_out),
    }
}

/// The day-basis schedule of `terms`' principal paid out on `paid_out`, to `maturity`.
fn day_basis_schedule(
    terms: &ScheduleTerms,
    paid_out: NaiveDate,
    maturity: NaiveDate,
) -> Result<Schedule, ScheduleError> {
    let timeline = PrincipalTimeline::single(paid_out, terms.principal, Some(maturity))?;
    let periods = interest_periods(paid_out, maturity, terms.frequency)?;
    let last = periods.len();
    let mut instalments = Vec::with_capacity(last);
    for (index, period) in periods.iter().enumerate() {
        let working = accrue(&timeline, terms.rate, period, terms.rounding)?;
        let is_last = index + 1 == last;
        let (principal_due, remaining_principal) =
            if is_last { (terms.principal, Fen::ZERO) } else { (Fen::ZERO, terms.principal) };
        instalments.push(Instalment {
            number: instalment_number(index)?,
            period_start: period.start,
            period_end_inclusive: period.end_inclusive,
            due_date: period.settlement_date,
            principal_due,
            interest_due: working.interest,
            total_due: principal_due
                .checked_add(working.interest)
                .ok_or(ScheduleError::Overflow)?,
            remaining_principal,
            interest: InterestWorking::DayBasis(working),
            absorbs_rounding: false,
        });
    }
    Ok(Schedule { maturity, level_payment: None, instalments })
}

/// The amortising schedule of `terms` to `maturity`, its due dates 对日 `terms.disbursed`,
/// paid out on `paid_out` (`terms.disbursed` but for a contract paid out late,
/// [`build_schedule_paid_out`]): the due dates on or before it are none of its.
fn amortising_schedule(
    terms: &ScheduleTerms,
    maturity: NaiveDate,
    paid_out: NaiveDate,
) -> Result<Schedule, ScheduleError> {
    let (months_per_period, periods_per_year) = match terms.frequency {
        SettlementFrequency::Quarterly => (3u32, 4u32),
        _ => (1, 12),
    };
    let months = whole_months(terms.disbursed, maturity)?;
    if months % months_per_period != 0 {
        return Err(ScheduleError::NotWholePeriods);
    }
    let due = |k: u32| {
        add_months(terms.disbursed, k * months_per_period).ok_or(CalendarError::DateOutOfRange)
    };
    // The contract's due dates passed by the payout.
    let mut passed = 0u32;
    while passed < months / months_per_period && due(passed + 1)? <= paid_out {
        passed += 1;
    }
    let n = months / months_per_period - passed;
    if n == 0 {
        return Err(ScheduleError::NoTerm { disbursed: paid_out, maturity });
    }
    let annual = terms.rate.value();
    let per_year = Decimal::from(periods_per_year);
    let periodic_rate = annual / per_year;
    let principal = terms.principal.to_decimal();

    let level_payment = match terms.method {
        RepaymentMethod::EqualInstalment => {
            Some(level_payment(principal, periodic_rate, n, terms.rounding)?)
        }
        _ => None,
    };
    // 等额本金: the equal principal part, rounded like every other figure.
    let equal_part = Fen::from_decimal(
        principal.checked_div(Decimal::from(n)).ok_or(ScheduleError::Overflow)?,
        terms.rounding,
    )
    .ok_or(ScheduleError::Overflow)?;

    let mut instalments = Vec::with_capacity(usize::try_from(n).unwrap_or(0));
    let mut remaining = terms.principal;
    let mut period_start = due(passed)?;
    for k in 1..=n {
        let due_date = due(passed + k)?;
        let opening = remaining;
        // Interest on the periodic basis ([`periodic_interest`], as servicing settles it): a
        // whole period's is opening × annual / periods per year, whatever its days; a broken
        // first period's (paid out after its start) pro rata to its days from the payout.
        let period_days = (due_date - period_start).num_days();
        let accrued_from = if k == 1 { paid_out.max(period_start) } else { period_start };
        let interest_over = |days: i64| {
            opening
                .0
                .checked_mul(days)
                .and_then(|jishu| periodic_interest(jishu, annual, per_year, period_days))
                .ok_or(ScheduleError::Overflow)
        };
        let unrounded_fen = interest_over((due_date - accrued_from).num_days())?;
        let interest =
            Fen::from_decimal(unrounded_fen, terms.rounding).ok_or(ScheduleError::Overflow)?;
        // 等额本息's principal part is the level payment less a whole period's interest, a
        // broken first period's too (its household pays that part and the days' interest: less
        // than the level payment), so that the instalments after it are the formula's.
        let whole_period = Fen::from_decimal(interest_over(period_days)?, terms.rounding)
            .ok_or(ScheduleError::Overflow)?;
        let formula_part = match &level_payment {
            Some(level) => {
                level.payment.checked_sub(whole_period).ok_or(ScheduleError::Overflow)?
            }
            None => equal_part,
        };
        let formula_part = formula_part.max(Fen::ZERO);
        let (principal_due, absorbs_rounding) = if k == n || formula_part > remaining {
            (remaining, true)
        } else {
            (formula_part, false)
        };
        remaining = remaining.checked_sub(principal_due).ok_or(ScheduleError::Overflow)?;
        instalments.push(Instalment {
            number: k,
            period_start,
            period_end_inclusive: due_date.pred_opt().ok_or(CalendarError::DateOutOfRange)?,
            due_date,
            principal_due,
            interest_due: interest,
            total_due: principal_due.checked_add(interest).ok_or(ScheduleError::Overflow)?,
            remaining_principal: remaining,
            interest: InterestWorking::Periodic(PeriodicInterest {
                opening_principal: opening,
                annual_rate: terms.rate,
                periods_per_year,
                periodic_rate,
                unrounded_fen,
                rounding: terms.rounding,
                interest,
            }),
            absorbs_rounding,
        });
        period_start = due_date;
    }
    Ok(Schedule { maturity, level_payment, instalments })
}

/// Interest on the periodic basis of an amortising loan, unrounded: `jishu` (积数, principal ×
/// days) at one `annual` rate over a period of `period_days`, for `per_year` periods a year.
/// When the 积数 is a whole number of fen per day of the period (a whole period on one
/// balance), average principal × annual / periods per year, the schedule's own expression;
/// else 积数 × annual / (periods per year × period days). The schedule and servicing
/// ([`super::servicing::settle_periodic`]) both work it out here, so that they agree to the
/// last digit. `None` on overflow or a period of no days.
pub fn periodic_interest(
    jishu: i64,
    annual: Decimal,
    per_year: Decimal,
    period_days: i64,
) -> Option<Decimal> {
    if period_days == 0 {
        return None;
    }
    if jishu % period_days == 0 {
        Decimal::from(jishu / period_days).checked_mul(annual)?.checked_div(per_year)
    } else {
        Decimal::from(jishu)
            .checked_mul(annual)?
            .checked_div(per_year.checked_mul(Decimal::from(period_days))?)
    }
}

/// `P·r·(1+r)^n / ((1+r)^n − 1)` in fen, rounded; `P / n` when `r` is zero.
fn level_payment(
    principal: Decimal,
    periodic_rate: Decimal,
    n: u32,
    rounding: Rounding,
) -> Result<LevelPayment, ScheduleError> {
    let unrounded_fen = if periodic_rate.is_zero() {
        principal.checked_div(Decimal::from(n))
    } else {
        // (1+r)^n by repeated exact-as-possible multiplication; n ≤ TERM_MONTHS_MAX.
        let growth = Decimal::ONE + periodic_rate;
        let mut power = Decimal::ONE;
        for _ in 0..n {
            power = power.checked_mul(growth).ok_or(ScheduleError::Overflow)?;
        }
        principal
            .checked_mul(periodic_rate)
            .and_then(|x| x.checked_mul(power))
            .and_then(|x| x.checked_div(power - Decimal::ONE))
    }
    .ok_or(ScheduleError::Overflow)?;
    Ok(LevelPayment {
        periodic_rate,
        periods: n,
        unrounded_fen,
        rounding,
        payment: Fen::from_decimal(unrounded_fen, rounding).ok_or(ScheduleError::Overflow)?,
    })
}

/// The number of months from `disbursed` to `maturity`, if `maturity` is exactly that many
/// months on (as [`add_months`] counts them).
fn whole_months(disbursed: NaiveDate, maturity: NaiveDate) -> Result<u32, ScheduleError> {
    let months = (i64::from(maturity.year()) - i64::from(disbursed.year())) * 12
        + i64::from(maturity.month())
        - i64::from(disbursed.month());
    let months = u32::try_from(months).map_err(|_| ScheduleError::NotWholePeriods)?;
    if months == 0 || add_months(disbursed, months) != Some(maturity) {
        return Err(ScheduleError::NotWholePeriods);
    }
    Ok(months)
}

fn instalment_number(index: usize) -> Result<u32, ScheduleError> {
    u32::try_from(index + 1).map_err(|_| ScheduleError::Overflow)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn d(y: i32, m: u32, day: u32) -> NaiveDate {
        NaiveDate::from_ymd_opt(y, m, day).unwrap()
    }

    /// Every method's default frequency is one it may take; quarterly but for 利随本清.
    #[test]
    fn a_default_frequency_fits_its_method() {
        use RepaymentMethod::*;
        for method in [Bullet, EqualInstalment, EqualPrincipal, InterestWithPrincipal] {
            let frequency = default_frequency(method);
            assert!(check_frequency(method, frequency).is_ok(), "{method:?}: {frequency:?}");
            let at_maturity = method == InterestWithPrincipal;
            assert_eq!(frequency == SettlementFrequency::AtMaturity, at_maturity, "{method:?}");
            assert_eq!(frequency == SettlementFrequency::Quarterly, !at_maturity, "{method:?}");
        }
    }

    fn terms(method: RepaymentMethod, frequency: SettlementFrequency) -> ScheduleTerms {
        ScheduleTerms {
            principal: Fen(5_000_000),
            rate: AnnualRate::parse("0.0475").unwrap(),
            disbursed: d(2021, 1, 25),
            term: Term::Months(36),
            method,
            frequency,
            rounding: Rounding::HalfUp,
        }
    }

    #[test]
    fn equal_instalment_payment() {
        let s =
            build_schedule(&terms(RepaymentMethod::EqualInstalment, SettlementFrequency::Monthly))
                .unwrap();
        let level = s.level_payment.as_ref().unwrap();
        assert_eq!(level.payment.to_string(), "1492.94");
        assert_eq!(s.instalments.len(), 36);
        // First month: 50,000 × 0.0475 / 12 = 197.9166... → 197.92 interest, 1,295.02 principal.
        let first = &s.instalments[0];
        assert_eq!(first.interest_due, Fen(19_792));
        assert_eq!(first.principal_due, Fen(129_502));
        assert_eq!(first.due_date, d(2021, 2, 25));
        assert!(s.instalments[..35].iter().all(|i| i.total_due == level.payment));
        let last = s.instalments.last().unwrap();
        assert!(last.absorbs_rounding && last.remaining_principal == Fen::ZERO);
        assert_eq!(s.total_principal(), Some(Fen(5_000_000)));
        assert_eq!(s.maturity, d(2024, 1, 25));
    }

    #[test]
    fn equal_principal_parts() {
        let s =
            build_schedule(&terms(RepaymentMethod::EqualPrincipal, SettlementFrequency::Monthly))
                .unwrap();
        // 5,000,000 / 36 = 138,888.9 → 138,889 fen; 35 of them are 4,861,115; the last is 138,885.
        assert_eq!(s.instalments[0].principal_due, Fen(138_889));
        assert_eq!(s.instalments[35].principal_due, Fen(138_885));
        assert!(s.instalments[35].absorbs_rounding);
        // Second month's interest: (5,000,000 − 138,889) × 0.0475 / 12 = 19,242.1... → 19,242.
        assert_eq!(s.instalments[1].interest_due, Fen(19_242));
    }

    #[test]
    fn bullet_is_the_worked_figure() {
        let t = ScheduleTerms {
            rate: AnnualRate::parse("0.0385").unwrap(),
            term: Term::Maturity(d(2022, 1, 25)),
            ..terms(RepaymentMethod::Bullet, SettlementFrequency::Quarterly)
        };
        let s = build_schedule(&t).unwrap();
        let interest: Vec<i64> = s.instalments.iter().map(|i| i.interest_due.0).collect();
        assert_eq!(interest, vec![29_410, 49_194, 49_194, 48_660, 18_715]);
        assert_eq!(s.total_interest(), Some(Fen(195_173)));
        assert_eq!(s.instalments[4].principal_due, Fen(5_000_000));
        assert_eq!(s.instalments[4].due_date, d(2022, 1, 25));

        let once = ScheduleTerms {
            method: RepaymentMethod::InterestWithPrincipal,
            frequency: SettlementFrequency::AtMaturity,
            ..t
        };
        let s = build_schedule(&once).unwrap();
        assert_eq!(s.instalments.len(), 1);
        assert_eq!(s.instalments[0].interest_due, Fen(195_174));
    }

    #[test]
    fn quarterly_amortising_uses_a_quarter_rate() {
        let s = build_schedule(&terms(
            RepaymentMethod::EqualInstalment,
            SettlementFrequency::Quarterly,
        ))
        .unwrap();
        assert_eq!(s.instalments.len(), 12);
        // First quarter: 5,000,000 × 0.0475 / 4 = 59,375 fen exactly.
        assert_eq!(s.instalments[0].interest_due, Fen(59_375));
        assert_eq!(s.instalments[0].due_date, d(2021, 4, 25));
    }

    #[test]
    fn month_end_due_dates_clamp_without_drift() {
        let t = ScheduleTerms {
            disbursed: d(2024, 1, 31),
            term: Term::Months(3),
            ..terms(RepaymentMethod::EqualPrincipal, SettlementFrequency::Monthly)
        };
        let s = build_schedule(&t).unwrap();
        let due: Vec<NaiveDate> = s.instalments.iter().map(|i| i.due_date).collect();
        assert_eq!(due, vec![d(2024, 2, 29), d(2024, 3, 31), d(2024, 4, 30)]);
    }

    #[test]
    fn bad_terms_are_errors() {
        let base = terms(RepaymentMethod::Bullet, SettlementFrequency::AtMaturity);
        assert!(matches!(build_schedule(&base), Err(ScheduleError::FrequencyNotAllowed { .. })));
        let t = ScheduleTerms {
            principal: Fen(0),
            ..terms(RepaymentMethod::Bullet, SettlementFrequency::Quarterly)
        };
        assert_eq!(build_schedule(&t), Err(ScheduleError::NonPositivePrincipal));
        let t = ScheduleTerms {
            term: Term::Months(601),
            ..terms(RepaymentMethod::Bullet, SettlementFrequency::Quarterly)
        };
        assert_eq!(build_schedule(&t), Err(ScheduleError::TermTooLong));
        let t = ScheduleTerms {
            term: Term::Months(10),
            ..terms(RepaymentMethod::EqualInstalment, SettlementFrequency::Quarterly)
        };
        assert_eq!(build_schedule(&t), Err(ScheduleError::NotWholePeriods));
        let t = ScheduleTerms {
            term: Term::Maturity(d(2022, 2, 1)),
            ..terms(RepaymentMethod::EqualInstalment, SettlementFrequency::Monthly)
        };
        assert_eq!(build_schedule(&t), Err(ScheduleError::NotWholePeriods));
        let t = ScheduleTerms {
            term: Term::Maturity(d(2021, 1, 25)),
            ..terms(RepaymentMethod::Bullet, SettlementFrequency::Monthly)
        };
        assert!(matches!(build_schedule(&t), Err(ScheduleError::NoTerm { .. })));
        let t = ScheduleTerms {
            principal: Fen(i64::MAX),
            rate: AnnualRate::parse("0.99999999").unwrap(),
            term: Term::Months(600),
            ..terms(RepaymentMethod::EqualInstalment, SettlementFrequency::Monthly)
        };
        assert!(build_schedule(&t).is_err());
        let t = ScheduleTerms {
            principal: Fen(i64::MAX),
            term: Term::Months(600),
            ..terms(RepaymentMethod::Bullet, SettlementFrequency::Monthly)
        };
        assert!(build_schedule(&t).is_err());
    }

    /// 600,000 fen 等额本息 monthly, contracted 2021-01-25 for 12 months, paid out 2021-03-01:
    /// the contract's due dates after the payout (03-25 ..= 2022-01-25, 11 of them), the first a
    /// broken period of 24 of its 28 days (600,000 × 24 × 0.0385 / (12 × 28) = 1,650.00), the
    /// level payment over 11 (55,601.06 -> 55,601), whose first principal part is the level
    /// payment less a whole period's interest (1,925): 53,676.
    #[test]
    fn a_contract_paid_out_late_keeps_its_maturity_and_due_dates() {
        let contract = ScheduleTerms {
            principal: Fen(600_000),
            rate: AnnualRate::parse("0.0385").unwrap(),
            term: Term::Months(12),
            ..terms(RepaymentMethod::EqualInstalment, SettlementFrequency::Monthly)
        };
        let s = build_schedule_paid_out(&contract, d(2021, 3, 1)).unwrap();
        assert_eq!(s.maturity, d(2022, 1, 25));
        assert_eq!(s.instalments.len(), 11);
        assert_eq!(s.level_payment.as_ref().unwrap().payment, Fen(55_601));
        let first = &s.instalments[0];
        assert_eq!((first.period_start, first.due_date), (d(2021, 2, 25), d(2021, 3, 25)));
        assert_eq!((first.interest_due, first.principal_due), (Fen(1_650), Fen(53_676)));
        assert_eq!(s.instalments[1].due_date, d(2021, 4, 25));
        assert_eq!(s.instalments[1].interest_due, Fen(1_753), "546,324 × 0.0385 / 12 = 1,752.79");
        assert_eq!(s.total_principal(), Some(Fen(600_000)));
        // Paid out on a due date: that date is none of its (its period would have no day).
        let on_due = build_schedule_paid_out(&contract, d(2021, 2, 25)).unwrap();
        assert_eq!(on_due.instalments.len(), 11);
        assert_eq!(on_due.instalments[0].interest_due, Fen(1_925), "a whole period");
        // On the contract date: the contract's own schedule.
        assert_eq!(build_schedule_paid_out(&contract, d(2021, 1, 25)), build_schedule(&contract));
        // On or after the maturity: no term left.
        assert!(build_schedule_paid_out(&contract, d(2022, 1, 25)).is_err());
        // A bullet loan paid out late: from the payout to the contract's maturity.
        let bullet = ScheduleTerms {
            term: Term::Months(12),
            ..terms(RepaymentMethod::Bullet, SettlementFrequency::Quarterly)
        };
        let late = build_schedule_paid_out(&bullet, d(2021, 3, 1)).unwrap();
        assert_eq!(late.maturity, d(2022, 1, 25));
        assert_eq!(late.instalments[0].period_start, d(2021, 3, 1));
    }

    fn arb_terms() -> impl Strategy<Value = ScheduleTerms> {
        let method_frequency = prop_oneof![
            Just((RepaymentMethod::Bullet, SettlementFrequency::Monthly)),
            Just((RepaymentMethod::Bullet, SettlementFrequency::Quarterly)),
            Just((RepaymentMethod::Bullet, SettlementFrequency::Yearly)),
            Just((RepaymentMethod::InterestWithPrincipal, SettlementFrequency::AtMaturity)),
            Just((RepaymentMethod::EqualInstalment, SettlementFrequency::Monthly)),
            Just((RepaymentMethod::EqualInstalment, SettlementFrequency::Quarterly)),
            Just((RepaymentMethod::EqualPrincipal, SettlementFrequency::Monthly)),
            Just((RepaymentMethod::EqualPrincipal, SettlementFrequency::Quarterly)),
        ];
        let rounding =
            prop_oneof![Just(Rounding::HalfUp), Just(Rounding::HalfEven), Just(Rounding::Down)];
        // Any term in months (whole quarters for quarterly instalments), or, for a loan not
        // amortising, a maturity date of any day (as PreviewSchedule takes it).
        let term = (1u32..=60, 1i64..1_800, proptest::bool::ANY);
        (method_frequency, rounding, 1i64..1_000_000_000, 0i64..30_000_000, 0i64..3_000, term)
            .prop_map(|((method, frequency), rounding, principal, rate, start, term)| {
                let (months, days, by_date) = term;
                let disbursed = d(2018, 1, 1) + chrono::Duration::days(start);
                let term = if method.is_amortising() && frequency == SettlementFrequency::Quarterly
                {
                    Term::Months(months.div_ceil(3) * 3)
                } else if !method.is_amortising() && by_date {
                    Term::Maturity(disbursed + chrono::Duration::days(days))
                } else {
                    Term::Months(months)
                };
                ScheduleTerms {
                    principal: Fen(principal),
                    rate: AnnualRate::new(Decimal::new(rate, 8)).unwrap(),
                    disbursed,
                    term,
                    method,
                    frequency,
                    rounding,
                }
            })
    }

    proptest! {
        #[test]
        fn every_schedule_amortises_to_exactly_zero(t in arb_terms()) {
            let s = build_schedule(&t).unwrap();
            prop_assert_eq!(s.total_principal(), Some(t.principal));
            let mut remaining = t.principal;
            for i in &s.instalments {
                prop_assert!(!i.principal_due.is_negative());
                prop_assert!(!i.interest_due.is_negative());
                prop_assert_eq!(i.total_due, i.principal_due.checked_add(i.interest_due).unwrap());
                remaining = remaining.checked_sub(i.principal_due).unwrap();
                prop_assert_eq!(i.remaining_principal, remaining);
                prop_assert!(i.period_start <= i.period_end_inclusive);
                prop_assert!(i.period_end_inclusive <= i.due_date);
            }
            prop_assert_eq!(remaining, Fen::ZERO);
            prop_assert_eq!(s.instalments.last().unwrap().due_date, s.maturity);
            if matches!(t.method, RepaymentMethod::EqualInstalment | RepaymentMethod::EqualPrincipal) {
                prop_assert!(s.instalments.last().unwrap().absorbs_rounding);
            }
            // Amortising, paid out on its contract date: each instalment's interest is a whole
            // period's on the principal still owed (opening × rate / periods a year, rounded
            // once), and each but the last repays the formula's part: 等额本金 the principal
            // over the instalments; 等额本息 what keeps the instalment at the level payment
            // P·i·(1+i)^n / ((1+i)^n − 1), checked here in decimals (within a fen).
            if t.method.is_amortising() {
                let per_year = if t.frequency == SettlementFrequency::Quarterly { 4 } else { 12 };
                let n = s.instalments.len();
                let round = |x: Decimal| x.round_dp_with_strategy(0, t.rounding.strategy());
                let principal = t.principal.to_decimal();
                let mut opening = principal;
                let level = s.level_payment.as_ref().map(|l| l.payment);
                if t.method == RepaymentMethod::EqualInstalment {
                    // Within a fen of the formula: |L·((1+i)^n − 1) − P·i·(1+i)^n| ≤ (1+i)^n − 1,
                    // or |L·n − P| ≤ n at no rate, in decimals.
                    let i = t.rate.value() / Decimal::from(per_year);
                    let level = level.unwrap().to_decimal();
                    let count = Decimal::from(n as u32);
                    if i.is_zero() {
                        prop_assert!((level * count - principal).abs() <= count, "{}", level);
                    } else {
                        let g = (0..n).fold(Decimal::ONE, |g, _| g * (Decimal::ONE + i));
                        let off = (level * (g - Decimal::ONE) - principal * i * g).abs();
                        prop_assert!(off <= g - Decimal::ONE, "{} off by {}", level, off);
                    }
                } else {
                    prop_assert_eq!(level, None);
                }
                let equal_part = round(principal / Decimal::from(n as u32));
                for (k, i) in s.instalments.iter().enumerate() {
                    let interest = round(opening * t.rate.value() / Decimal::from(per_year));
                    prop_assert_eq!(i.interest_due.to_decimal(), interest, "instalment {}", k + 1);
                    if k + 1 < n && i.remaining_principal.is_positive() {
                        match level {
                            Some(level) => prop_assert_eq!(i.total_due, level, "instalment {}", k + 1),
                            None => prop_assert_eq!(i.principal_due.to_decimal(), equal_part),
                        }
                    }
                    opening -= i.principal_due.to_decimal();
                }
            }
        }

        /// Paid out any day after its contract and before its maturity: the contract's
        /// maturity, due dates after the payout only (the contract's own), amortised to zero.
        #[test]
        fn a_contract_paid_out_late_amortises_to_zero_by_its_maturity(
            t in arb_terms(),
            late in 1i64..1_000,
        ) {
            let contract = build_schedule(&t).unwrap();
            // Some day of the term, by a thousandth of it (terms as short as a month).
            let term = (contract.maturity - t.disbursed).num_days();
            let paid_out = t.disbursed + chrono::Duration::days((term * late / 1_000).max(1));
            prop_assume!(paid_out < contract.maturity);
            let s = build_schedule_paid_out(&t, paid_out).unwrap();
            prop_assert_eq!(s.maturity, contract.maturity);
            prop_assert_eq!(s.total_principal(), Some(t.principal));
            prop_assert_eq!(s.instalments.last().unwrap().remaining_principal, Fen::ZERO);
            // (A bullet loan paid out on a 20th owes that day's interest on it.)
            prop_assert!(s.instalments.iter().all(|i| i.due_date >= paid_out));
            prop_assert!(s.instalments.iter().all(|i| !i.interest_due.is_negative()));
            if t.method.is_amortising() {
                let dues: Vec<NaiveDate> = contract.instalments.iter().map(|i| i.due_date).collect();
                let after: Vec<NaiveDate> = dues.into_iter().filter(|d| *d > paid_out).collect();
                let own: Vec<NaiveDate> = s.instalments.iter().map(|i| i.due_date).collect();
                prop_assert_eq!(own, after);
                let first = &s.instalments[0];
                prop_assert!(first.period_start <= paid_out && paid_out < first.due_date);
                // A broken period's interest is at most a whole period's.
                let periods = if t.frequency == SettlementFrequency::Quarterly { 4 } else { 12 };
                let whole = t.principal.to_decimal() * t.rate.value() / Decimal::from(periods);
                prop_assert!(first.interest_due <= Fen::from_decimal(whole, t.rounding).unwrap());
            }
        }
    }
}
