//! Business dates: `YYYY-MM-DD`, nothing else.

use chrono::{Datelike, NaiveDate};

pub type BusinessDate = NaiveDate;

/// Parses a strict `YYYY-MM-DD` date (four-digit year, two-digit month and day).
pub fn parse_date(text: &str) -> Option<BusinessDate> {
    let bytes = text.as_bytes();
    if bytes.len() != 10 || bytes[4] != b'-' || bytes[7] != b'-' {
        return None;
    }
    // Digits read directly (no pattern parsed per call): dates are read for every loan loaded.
    let number = |range: std::ops::Range<usize>| {
        bytes[range]
            .iter()
            .try_fold(0u32, |n, b| b.is_ascii_digit().then(|| n * 10 + u32::from(b - b'0')))
    };
    let year = i32::try_from(number(0..4)?).ok()?;
    NaiveDate::from_ymd_opt(year, number(5..7)?, number(8..10)?)
}

/// The canonical text of a date, `YYYY-MM-DD`.
pub fn format_date(date: BusinessDate) -> String {
    use chrono::Datelike;
    // Written out rather than through `format("%Y-%m-%d")`, which parses its pattern on every
    // call: dates are formatted several times per command on the write path.
    match (u32::try_from(date.year()), date.month(), date.day()) {
        (Ok(y @ 0..=9999), m, d) => format!("{y:04}-{m:02}-{d:02}"),
        _ => date.format("%Y-%m-%d").to_string(),
    }
}

/// `date` plus `months` calendar months, the day clamped to the end of a shorter month
/// (2021-01-31 + 1 month = 2021-02-28).
pub fn add_months(date: BusinessDate, months: u32) -> Option<BusinessDate> {
    date.checked_add_months(chrono::Months::new(months))
}

/// Whole years of age on `on` for someone born on `birth`.
pub fn age_on(birth: BusinessDate, on: BusinessDate) -> i32 {
    let mut age = on.year() - birth.year();
    if (on.month(), on.day()) < (birth.month(), birth.day()) {
        age -= 1;
    }
    age
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strict_format() {
        assert!(parse_date("2021-01-25").is_some());
        assert!(parse_date("2021-1-25").is_none());
        assert!(parse_date("2021-02-30").is_none());
        assert!(parse_date("25/01/2021").is_none());
        assert!(parse_date("").is_none());
        assert!(parse_date("+202-01-01").is_none());
        assert!(parse_date("2021-0a-01").is_none());
        assert!(parse_date("0000-01-01").is_some());
    }

    proptest::proptest! {
        /// The hand-written formatter agrees with chrono's and reads back (hashes depend on it).
        #[test]
        fn format_matches_chrono_and_round_trips(days in -800_000i64..3_000_000) {
            let d = chrono::NaiveDate::from_ymd_opt(1, 1, 1).unwrap() + chrono::Days::new(0)
                + chrono::TimeDelta::days(days);
            proptest::prop_assert_eq!(format_date(d), d.format("%Y-%m-%d").to_string());
            if (1..=9999).contains(&chrono::Datelike::year(&d)) {
                proptest::prop_assert_eq!(parse_date(&format_date(d)), Some(d));
            }
        }
    }

    #[test]
    fn months_clamp_to_month_end() {
        let d = parse_date("2021-01-31").unwrap();
        assert_eq!(add_months(d, 1), parse_date("2021-02-28"));
        assert_eq!(add_months(d, 36), parse_date("2024-01-31"));
    }

    #[test]
    fn age_counts_birthdays() {
        let birth = parse_date("2003-01-26").unwrap();
        assert_eq!(age_on(birth, parse_date("2021-01-25").unwrap()), 17);
        assert_eq!(age_on(birth, parse_date("2021-01-26").unwrap()), 18);
    }
}
