//! Loan prime rates and the tenor bucket that caps a contract's rate.
//!
//! A contract's rate may not exceed the LPR of its tenor bucket in force on the contract date:
//! terms up to one year use the 1-year LPR, longer terms the 5-year LPR.

use serde::{Deserialize, Serialize};

use super::date::BusinessDate;
use super::rate::AnnualRate;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TenorBucket {
    /// Terms of up to 12 months: the 1-year LPR.
    UpToOneYear,
    /// Terms over 12 months: the 5-year LPR.
    OverOneYear,
}

impl TenorBucket {
    pub fn for_term_months(term_months: u32) -> Self {
        if term_months <= 12 { TenorBucket::UpToOneYear } else { TenorBucket::OverOneYear }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            TenorBucket::UpToOneYear => "1y",
            TenorBucket::OverOneYear => "5y",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "1y" => Some(TenorBucket::UpToOneYear),
            "5y" => Some(TenorBucket::OverOneYear),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LprEntry {
    pub effective_from: BusinessDate,
    pub bucket: TenorBucket,
    pub rate: AnnualRate,
}

/// The LPR of `bucket` in force on `date`: the entry with the latest `effective_from` on or
/// before it.
pub fn lpr_on(entries: &[LprEntry], bucket: TenorBucket, date: BusinessDate) -> Option<AnnualRate> {
    entries
        .iter()
        .filter(|e| e.bucket == bucket && e.effective_from <= date)
        .max_by_key(|e| e.effective_from)
        .map(|e| e.rate)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::date::parse_date;

    #[test]
    fn picks_bucket_and_latest_entry() {
        let e = |d: &str, b, r: &str| LprEntry {
            effective_from: parse_date(d).unwrap(),
            bucket: b,
            rate: AnnualRate::parse(r).unwrap(),
        };
        let table = [
            e("2020-04-20", TenorBucket::UpToOneYear, "0.0385"),
            e("2021-12-20", TenorBucket::UpToOneYear, "0.038"),
            e("2020-04-20", TenorBucket::OverOneYear, "0.0465"),
        ];
        let on = |b, d: &str| lpr_on(&table, b, parse_date(d).unwrap()).map(|r| r.to_string());
        assert_eq!(TenorBucket::for_term_months(12), TenorBucket::UpToOneYear);
        assert_eq!(TenorBucket::for_term_months(13), TenorBucket::OverOneYear);
        assert_eq!(on(TenorBucket::UpToOneYear, "2021-01-25").as_deref(), Some("0.0385"));
        assert_eq!(on(TenorBucket::UpToOneYear, "2021-12-20").as_deref(), Some("0.038"));
        assert_eq!(on(TenorBucket::OverOneYear, "2022-01-01").as_deref(), Some("0.0465"));
        assert_eq!(on(TenorBucket::OverOneYear, "2019-01-01"), None);
    }
}
