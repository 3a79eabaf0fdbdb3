//! Settlement calendar: when interest is settled, and which days each settlement covers.
//!
//! The model: interest is settled (结息) on the 20th, monthly every month, quarterly on 20 March,
//! June, September and December (the default), yearly on 20 December, or only at the end of the
//! loan (利随本清). An interest period runs from its first day to a settlement 20th inclusive; the
//! next starts on the 21st. Interest counts the first day and not the last (算头不算尾): the last
//! period of a loan ends the day before the end date (maturity or full repayment) and is settled
//! on the end date (a full repayment on a settlement 20th being the exception the servicing
//! makes: that day's point is settled first, through the 20th, see [`super::servicing`]).
//! Nothing here knows amounts; [`super::interest`] accrues over these periods.

use chrono::{Datelike, Months, NaiveDate};

#[cfg(test)]
use super::date::add_months;

/// How often interest is settled.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SettlementFrequency {
    /// The 20th of every month.
    Monthly,
    /// 20 March, June, September and December: the programme's default.
    Quarterly,
    /// 20 December.
    Yearly,
    /// No periodic settlement: all interest is settled on the end date (利随本清).
    AtMaturity,
}

impl SettlementFrequency {
    /// The day of the month on which every settlement falls.
    pub const SETTLEMENT_DAY: u32 = 20;

    /// The months (1 to 12) that hold a settlement day; empty for [`Self::AtMaturity`].
    fn months(self) -> &'static [u32] {
        match self {
            SettlementFrequency::Monthly => &[1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12],
            SettlementFrequency::Quarterly => &[3, 6, 9, 12],
            SettlementFrequency::Yearly => &[12],
            SettlementFrequency::AtMaturity => &[],
        }
    }
}

/// The days that one settlement covers, both ends inclusive, and the day it is settled.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Period {
    pub start: NaiveDate,
    pub end_inclusive: NaiveDate,
    pub settlement_date: NaiveDate,
}

impl Period {
    /// The number of days in the period (at least 1 for a period built here).
    pub fn days(&self) -> i64 {
        (self.end_inclusive - self.start).num_days() + 1
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CalendarError {
    #[error("end date {end} is not after the start date {start}: no day bears interest")]
    NoDays { start: NaiveDate, end: NaiveDate },
    #[error("more than {} interest periods", PERIODS_MAX)]
    TooManyPeriods,
    #[error("date is outside the supported calendar range")]
    DateOutOfRange,
}

/// A limit on the periods of one loan: 100 years of monthly settlement. Programme loans run at
/// most 36 months, extensions included a few more; the limit only bounds work on absurd input.
pub const PERIODS_MAX: usize = 1_200;

/// The first settlement day on or after `day`, or `None` for [`SettlementFrequency::AtMaturity`]
/// (or past the end of the calendar).
pub fn settlement_on_or_after(day: NaiveDate, frequency: SettlementFrequency) -> Option<NaiveDate> {
    let months = frequency.months();
    if months.is_empty() {
        return None;
    }
    // Within 13 months from the first of `day`'s month there is always a settlement month
    // (yearly is the sparsest), and the first candidate not before `day` is the answer.
    let first_of_month = day.with_day(1)?;
    (0..=12).find_map(|offset| {
        let month_start = first_of_month.checked_add_months(Months::new(offset))?;
        if !months.contains(&month_start.month()) {
            return None;
        }
        let settlement = month_start.with_day(SettlementFrequency::SETTLEMENT_DAY)?;
        (settlement >= day).then_some(settlement)
    })
}

/// The first settlement day strictly after `after`, or `None` for
/// [`SettlementFrequency::AtMaturity`] (or past the end of the calendar).
pub fn next_settlement_date(after: NaiveDate, frequency: SettlementFrequency) -> Option<NaiveDate> {
    settlement_on_or_after(after.succ_opt()?, frequency)
}

/// The interest periods of a loan disbursed on `disbursed` whose interest stops on `end`
/// (maturity or full repayment; `end` itself bears no interest).
///
/// The first period starts on the disbursement day; each settlement 20th before the last
/// interest-bearing day (the day before `end`) closes a period; the remaining days form the last
/// period, which ends the day before `end` and is settled on `end`. So the last settlement always
/// falls on `end`, together with the principal: when `end` is the 21st, the last period ends on
/// the 20th but is settled on the 21st.
pub fn interest_periods(
    disbursed: NaiveDate,
    end: NaiveDate,
    frequency: SettlementFrequency,
) -> Result<Vec<Period>, CalendarError> {
    if end <= disbursed {
        return Err(CalendarError::NoDays { start: disbursed, end });
    }
    let last_day = end.pred_opt().ok_or(CalendarError::DateOutOfRange)?;
    let mut periods = Vec::new();
    let mut start = disbursed;
    while start < end {
        if periods.len() >= PERIODS_MAX {
            return Err(CalendarError::TooManyPeriods);
        }
        let period = match settlement_on_or_after(start, frequency) {
            Some(settlement) if settlement < last_day => {
                Period { start, end_inclusive: settlement, settlement_date: settlement }
            }
            _ => Period { start, end_inclusive: last_day, settlement_date: end },
        };
        periods.push(period);
        start = period.end_inclusive.succ_opt().ok_or(CalendarError::DateOutOfRange)?;
    }
    Ok(periods)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn d(y: i32, m: u32, day: u32) -> NaiveDate {
        NaiveDate::from_ymd_opt(y, m, day).unwrap()
    }

    #[test]
    fn worked_figure_quarterly_periods() {
        let periods =
            interest_periods(d(2021, 1, 25), d(2022, 1, 25), SettlementFrequency::Quarterly)
                .unwrap();
        let days: Vec<i64> = periods.iter().map(Period::days).collect();
        assert_eq!(days, vec![55, 92, 92, 91, 35]);
        assert_eq!(days.iter().sum::<i64>(), 365);
        assert_eq!(periods[0].start, d(2021, 1, 25));
        assert_eq!(periods[0].end_inclusive, d(2021, 3, 20));
        assert_eq!(periods[0].settlement_date, d(2021, 3, 20));
        assert_eq!(periods[1].start, d(2021, 3, 21));
        assert_eq!(periods[4].start, d(2021, 12, 21));
        assert_eq!(periods[4].end_inclusive, d(2022, 1, 24));
        assert_eq!(periods[4].settlement_date, d(2022, 1, 25));
    }

    #[test]
    fn next_settlement_dates() {
        use SettlementFrequency::*;
        assert_eq!(next_settlement_date(d(2021, 1, 19), Monthly), Some(d(2021, 1, 20)));
        assert_eq!(next_settlement_date(d(2021, 1, 20), Monthly), Some(d(2021, 2, 20)));
        assert_eq!(next_settlement_date(d(2021, 12, 25), Monthly), Some(d(2022, 1, 20)));
        assert_eq!(next_settlement_date(d(2021, 3, 20), Quarterly), Some(d(2021, 6, 20)));
        assert_eq!(next_settlement_date(d(2021, 12, 20), Quarterly), Some(d(2022, 3, 20)));
        assert_eq!(next_settlement_date(d(2021, 12, 19), Yearly), Some(d(2021, 12, 20)));
        assert_eq!(next_settlement_date(d(2021, 12, 20), Yearly), Some(d(2022, 12, 20)));
        assert_eq!(next_settlement_date(d(2021, 12, 20), AtMaturity), None);
        assert_eq!(next_settlement_date(NaiveDate::MAX, Monthly), None);
    }

    #[test]
    fn edge_periods() {
        use SettlementFrequency::*;
        // Disbursed on a settlement day: a one-day first period.
        let p = interest_periods(d(2021, 3, 20), d(2021, 4, 1), Quarterly).unwrap();
        assert_eq!(p.iter().map(Period::days).collect::<Vec<_>>(), vec![1, 11]);
        // Ending the day after a settlement day: no empty last period, and the last settlement
        // is on the end date.
        let p = interest_periods(d(2021, 1, 25), d(2021, 3, 21), Quarterly).unwrap();
        assert_eq!(p.len(), 1);
        assert_eq!(p[0].end_inclusive, d(2021, 3, 20));
        assert_eq!(p[0].settlement_date, d(2021, 3, 21));
        // Ending on a settlement day: that day bears no interest, and settles the last period.
        let p = interest_periods(d(2021, 1, 25), d(2021, 3, 20), Quarterly).unwrap();
        assert_eq!(p.len(), 1);
        assert_eq!(p[0].end_inclusive, d(2021, 3, 19));
        // 利随本清: one period.
        let p = interest_periods(d(2021, 1, 25), d(2022, 1, 25), AtMaturity).unwrap();
        assert_eq!(p.len(), 1);
        assert_eq!(p[0].days(), 365);
        assert!(matches!(
            interest_periods(d(2021, 1, 25), d(2021, 1, 25), Monthly),
            Err(CalendarError::NoDays { .. })
        ));
        assert_eq!(
            interest_periods(NaiveDate::MIN, NaiveDate::MAX, Monthly),
            Err(CalendarError::TooManyPeriods)
        );
    }

    #[test]
    fn month_arithmetic_clamps() {
        assert_eq!(add_months(d(2021, 1, 31), 1), Some(d(2021, 2, 28)));
        assert_eq!(add_months(d(2024, 1, 31), 1), Some(d(2024, 2, 29)));
        assert_eq!(add_months(d(2024, 1, 31), 2), Some(d(2024, 3, 31)));
        assert_eq!(add_months(NaiveDate::MAX, 1), None);
    }

    /// A day of 2019 to 2029: month ends, year ends and the leap Februaries of 2020, 2024 and
    /// 2028 all fall inside a loan's life.
    fn arb_day() -> impl Strategy<Value = NaiveDate> {
        (0i64..4_000).prop_map(|n| d(2019, 1, 1) + chrono::Duration::days(n))
    }

    fn arb_frequency() -> impl Strategy<Value = SettlementFrequency> {
        use SettlementFrequency::*;
        prop_oneof![Just(Monthly), Just(Quarterly), Just(Yearly), Just(AtMaturity)]
    }

    /// The module's rule, written out: the 20th of every month, of March, June, September and
    /// December, of December, or never.
    fn closes_a_period(day: NaiveDate, frequency: SettlementFrequency) -> bool {
        use SettlementFrequency::*;
        day.day() == 20
            && match frequency {
                Monthly => true,
                Quarterly => day.month().is_multiple_of(3),
                Yearly => day.month() == 12,
                AtMaturity => false,
            }
    }

    proptest! {
        /// The periods of any loan tile its interest-bearing days exactly (算头不算尾): the
        /// first starts on the disbursement day, each starts the day after the one before ends,
        /// the last ends the day before the end date and is settled on it, and their days add
        /// up to the whole span's. Every other period ends on, and is settled on, a settlement
        /// 20th; no settlement 20th lies inside a period before its last day; and there is one
        /// period more than there are settlement 20ths before the last interest-bearing day,
        /// counted day by day.
        #[test]
        fn periods_tile_the_days_from_disbursement_to_the_day_before_the_end(
            disbursed in arb_day(),
            length in prop_oneof![1i64..40, 1i64..1_200],
            frequency in arb_frequency(),
        ) {
            let end = disbursed + chrono::Duration::days(length);
            let last_day = end.pred_opt().unwrap();
            let periods = interest_periods(disbursed, end, frequency).unwrap();
            let (first, last) = (periods[0], periods[periods.len() - 1]);
            prop_assert_eq!(first.start, disbursed);
            prop_assert_eq!(last.end_inclusive, last_day);
            prop_assert_eq!(last.settlement_date, end);
            for pair in periods.windows(2) {
                prop_assert_eq!(pair[1].start, pair[0].end_inclusive.succ_opt().unwrap());
                prop_assert!(closes_a_period(pair[0].end_inclusive, frequency), "{:?}", pair[0]);
                prop_assert_eq!(pair[0].settlement_date, pair[0].end_inclusive);
            }
            for p in &periods {
                prop_assert!(p.days() >= 1, "{:?}", p);
                let before_its_last = p.start.iter_days().take_while(|day| *day < p.end_inclusive);
                for day in before_its_last {
                    prop_assert!(!closes_a_period(day, frequency), "{} inside {:?}", day, p);
                }
            }
            let closing = disbursed
                .iter_days()
                .take_while(|day| *day < last_day)
                .filter(|day| closes_a_period(*day, frequency))
                .count();
            prop_assert_eq!(periods.len(), closing + 1);
            prop_assert_eq!(periods.iter().map(Period::days).sum::<i64>(), length);
        }
    }
}
