//! Loan prime rates and the tenor bucket that caps a contract's rate.
//!
//! A contract's rate may not exceed the LPR of its tenor bucket in force on the contract date:
//! terms up to one year use the 1-year LPR, longer terms the 5-year LPR.
//!
//! The table is national reference data with a chain of its own: the journal's ledger
//! [`LPR_LEDGER`], which lends nothing. Its first transaction, `lpr.chain_started`, holds the
//! table as it stood when the database was migrated (`store::lpr_chain`); each entry set
//! through `SetLpr` since is one `lpr.set` transaction there (memo, no postings), dated its
//! effective date. The stored table is that chain's read model: `verify` of the ledger rebuilds
//! it, checks the start against [`SEEDED`] (the migration's rows), and compares.

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

/// The ledger whose chain records the LPR table's entries. Not a region's books: no ledger row,
/// no banks or loans; reserved (`CreateLedger` refuses it).
pub const LPR_LEDGER: &str = "lpr";

/// The entries the schema's migration seeds (`0002_lpr_seed.sql` on both backends), as stored
/// (effective date, tenor, rate): the PBoC benchmark lending rates of 2015-10-24, which capped
/// programme loans until the LPR reform, and the loan prime rates published since 2019-08-20.
/// The chain's start holds them as seeded; verify checks it.
pub const SEEDED: &[(&str, &str, &str)] = &[
    ("2015-10-24", "1y", "0.0435"),
    ("2015-10-24", "5y", "0.0475"),
    ("2019-08-20", "1y", "0.0425"),
    ("2019-08-20", "5y", "0.0485"),
    ("2019-09-20", "1y", "0.042"),
    ("2019-11-20", "1y", "0.0415"),
    ("2019-11-20", "5y", "0.048"),
    ("2020-02-20", "1y", "0.0405"),
    ("2020-02-20", "5y", "0.0475"),
    ("2020-04-20", "1y", "0.0385"),
    ("2020-04-20", "5y", "0.0465"),
    ("2021-12-20", "1y", "0.038"),
    ("2022-01-20", "1y", "0.037"),
    ("2022-01-20", "5y", "0.046"),
    ("2022-05-20", "5y", "0.0445"),
    ("2022-08-22", "1y", "0.0365"),
    ("2022-08-22", "5y", "0.043"),
    ("2023-06-20", "1y", "0.0355"),
    ("2023-06-20", "5y", "0.042"),
    ("2023-08-21", "1y", "0.0345"),
    ("2024-02-20", "5y", "0.0395"),
    ("2024-07-22", "1y", "0.0335"),
    ("2024-07-22", "5y", "0.0385"),
    ("2024-10-21", "1y", "0.031"),
    ("2024-10-21", "5y", "0.036"),
    ("2025-05-20", "1y", "0.03"),
    ("2025-05-20", "5y", "0.035"),
];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LprEntry {
    pub effective_from: BusinessDate,
    pub bucket: TenorBucket,
    pub rate: AnnualRate,
}

/// [`SEEDED`] as entries.
pub fn seeded_entries() -> Vec<LprEntry> {
    SEEDED
        .iter()
        .filter_map(|(date, tenor, rate)| {
            Some(LprEntry {
                effective_from: super::date::parse_date(date)?,
                bucket: TenorBucket::parse(tenor)?,
                rate: AnnualRate::parse(rate).ok()?,
            })
        })
        .collect()
}

/// Serde for a tenor bucket as the table and the chain write it (`1y`, `5y`:
/// `#[serde(with = "tenor_text")]`).
pub mod tenor_text {
    use super::TenorBucket;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(bucket: &TenorBucket, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(bucket.as_str())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<TenorBucket, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        TenorBucket::parse(&text)
            .ok_or_else(|| serde::de::Error::custom(format!("unknown tenor {text:?}")))
    }
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

    /// The seeded entries in code are the migrations' rows, text for text, on both backends.
    #[test]
    fn the_seeded_entries_are_the_migrations() {
        for backend in ["sqlite", "postgres"] {
            let path =
                format!("{}/migrations/{backend}/0002_lpr_seed.sql", env!("CARGO_MANIFEST_DIR"));
            let sql = std::fs::read_to_string(&path).expect("the seed migration");
            // Each row is `('date', 'tenor', 'rate')`.
            let rows: Vec<(String, String, String)> = sql
                .split("('")
                .skip(1)
                .map(|row| {
                    let row = row.split("')").next().unwrap_or_default();
                    let fields: Vec<&str> = row.split("', '").collect();
                    assert_eq!(fields.len(), 3, "{row}");
                    (fields[0].to_string(), fields[1].to_string(), fields[2].to_string())
                })
                .collect();
            let seeded: Vec<(String, String, String)> = SEEDED
                .iter()
                .map(|(d, t, r)| (d.to_string(), t.to_string(), r.to_string()))
                .collect();
            assert_eq!(rows, seeded, "{backend}");
        }
        // Each seeded entry reads as one, its rate its own canonical text (the chain's entries
        // are stored so).
        let entries = seeded_entries();
        assert_eq!(entries.len(), SEEDED.len());
        for (entry, (date, tenor, rate)) in entries.iter().zip(SEEDED) {
            assert_eq!(crate::domain::date::format_date(entry.effective_from), *date);
            assert_eq!((entry.bucket.as_str(), entry.rate.to_string().as_str()), (*tenor, *rate));
        }
    }

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
