//! Business dates: `YYYY-MM-DD`, nothing else.

use chrono::{Datelike, NaiveDate};

pub type BusinessDate = NaiveDate;

/// Parses a strict `YYYY-MM-DD` date (four-digit year, two-digit month and day).
pub fn parse_date(text: &str) -> Option<BusinessDate> {
    let bytes = text.as_bytes();
    if bytes.len() != 10 || bytes[4] != b'-' || bytes[7] != b'-' {
        return None;
    }
    NaiveDate::parse_from_str(text, "%Y-%m-%d").ok()
}

/// The canonical text of a date, `YYYY-MM-DD`.
pub fn format_date(date: BusinessDate) -> String {
    date.format("%Y-%m-%d").to_string()
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
