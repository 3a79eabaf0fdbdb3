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

/// The business date at the instant `now` where the programme does business, `offset` from
/// UTC.
pub fn business_date(
    now: chrono::DateTime<chrono::Utc>,
    offset: chrono::FixedOffset,
) -> BusinessDate {
    now.with_timezone(&offset).date_naive()
}

/// The canonical text of a date, `YYYY-MM-DD`.
pub fn format_date(date: BusinessDate) -> String {
    // Written out rather than through `format("%Y-%m-%d")`, which parses its pattern on every
    // call: dates are formatted several times per command on the write path.
    let mut buf = [0u8; 10];
    match canonical_text(date, &mut buf) {
        Some(text) => text.to_string(),
        None => date.format("%Y-%m-%d").to_string(),
    }
}

/// The canonical text of a date written into `buf` for years 0 to 9999 (`None` otherwise).
fn canonical_text(date: BusinessDate, buf: &mut [u8; 10]) -> Option<&str> {
    let year = u32::try_from(date.year()).ok().filter(|y| *y <= 9999)?;
    let mut put = |at: usize, width: usize, mut n: u32| {
        for i in (at..at + width).rev() {
            // A digit (n % 10 < 10) always fits in a u8.
            buf[i] = b'0' + (n % 10) as u8;
            n /= 10;
        }
    };
    put(0, 4, year);
    put(5, 2, date.month());
    put(8, 2, date.day());
    buf[4] = b'-';
    buf[7] = b'-';
    std::str::from_utf8(buf).ok()
}

/// Serde for a date field (`#[serde(with = "iso")]`), without chrono's formatter and parser on
/// the common path: the dates of loan events and loan rows are written and read for every loan
/// a group or a settlement run touches. The text is chrono's own, byte for byte (`YYYY-MM-DD`
/// for years 0 to 9999, chrono's serialisation otherwise), and anything [`parse_date`] does not
/// read is parsed by chrono as before: what is hashed and stored does not change.
pub mod iso {
    use super::{BusinessDate, canonical_text, parse_date};
    use serde::{Deserializer, Serialize, Serializer};

    pub fn serialize<S: Serializer>(date: &BusinessDate, s: S) -> Result<S::Ok, S::Error> {
        let mut buf = [0u8; 10];
        match canonical_text(*date, &mut buf) {
            Some(text) => s.serialize_str(text),
            None => date.serialize(s),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<BusinessDate, D::Error> {
        d.deserialize_str(DateVisitor)
    }

    /// As chrono's visitor for a date, with [`parse_date`] tried first.
    struct DateVisitor;

    impl serde::de::Visitor<'_> for DateVisitor {
        type Value = BusinessDate;

        fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("a formatted date string")
        }

        fn visit_str<E: serde::de::Error>(self, text: &str) -> Result<BusinessDate, E> {
            match parse_date(text) {
                Some(date) => Ok(date),
                None => text.parse().map_err(E::custom),
            }
        }
    }
}

/// [`iso`] for an optional date (`null` when absent; give the field `#[serde(default)]` too).
pub mod iso_opt {
    use super::BusinessDate;
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    #[derive(Serialize, Deserialize)]
    #[serde(transparent)]
    struct Iso(#[serde(with = "super::iso")] BusinessDate);

    pub fn serialize<S: Serializer>(date: &Option<BusinessDate>, s: S) -> Result<S::Ok, S::Error> {
        date.map(Iso).serialize(s)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<BusinessDate>, D::Error> {
        Ok(Option::<Iso>::deserialize(d)?.map(|Iso(date)| date))
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

    /// Dates through [`iso`] and [`iso_opt`], and through chrono's own serde.
    #[derive(Debug, PartialEq, serde::Serialize, serde::Deserialize)]
    struct Fast {
        #[serde(with = "iso")]
        date: BusinessDate,
        #[serde(default, with = "iso_opt")]
        maybe: Option<BusinessDate>,
    }

    #[derive(Debug, PartialEq, serde::Serialize, serde::Deserialize)]
    struct Chrono {
        date: BusinessDate,
        maybe: Option<BusinessDate>,
    }

    /// `date` through [`iso`] and [`iso_opt`] as chrono's serde writes it, and read back.
    fn same_as_chrono(date: NaiveDate, some: bool) -> Result<(), String> {
        let maybe = some.then_some(date);
        let fast = serde_json::to_string(&Fast { date, maybe }).map_err(|e| e.to_string())?;
        let chrono = serde_json::to_string(&Chrono { date, maybe }).map_err(|e| e.to_string())?;
        if fast != chrono {
            return Err(format!("{date}: {fast} against chrono's {chrono}"));
        }
        match serde_json::from_str::<Fast>(&chrono) {
            Ok(read) if read == (Fast { date, maybe }) => Ok(()),
            other => Err(format!("{chrono} read back as {other:?}")),
        }
    }

    /// Days from 0001-01-01 (the common era's day 1) as chrono counts them.
    fn day_number(date: NaiveDate) -> i64 {
        i64::from(date.num_days_from_ce())
    }

    proptest::proptest! {
        /// The same JSON as chrono's serde, read back: mostly over years 0 to 9999 (the dates
        /// written by hand), also over chrono's whole range (handed to chrono).
        #[test]
        fn iso_writes_and_reads_what_chrono_does(
            days in proptest::prop_oneof![
                3 => day_number(NaiveDate::from_ymd_opt(0, 1, 1).unwrap())
                    ..=day_number(NaiveDate::from_ymd_opt(9999, 12, 31).unwrap()),
                1 => day_number(NaiveDate::MIN)..=day_number(NaiveDate::MAX),
            ],
            some in proptest::bool::ANY,
        ) {
            let d = NaiveDate::from_num_days_from_ce_opt(i32::try_from(days).unwrap()).unwrap();
            proptest::prop_assert_eq!(same_as_chrono(d, some), Ok(()));
        }
    }

    #[test]
    fn iso_at_the_edges_of_four_digit_years() {
        let ymd = |y, m, d| NaiveDate::from_ymd_opt(y, m, d).unwrap();
        for date in [
            NaiveDate::MIN,
            ymd(-1, 12, 31),
            ymd(0, 1, 1),
            ymd(9, 12, 31),
            ymd(99, 12, 31),
            ymd(999, 12, 31),
            ymd(1000, 1, 1),
            ymd(9999, 12, 31),
            ymd(10000, 1, 1),
            NaiveDate::MAX,
        ] {
            assert_eq!(same_as_chrono(date, true), Ok(()));
        }
    }

    #[test]
    fn iso_reads_what_chrono_reads_and_refuses_the_rest() {
        let read = |json: &str| serde_json::from_str::<Fast>(json).map(|f| (f.date, f.maybe));
        let day = |s| parse_date(s).unwrap();
        assert_eq!(read(r#"{"date":"2021-03-20"}"#).unwrap(), (day("2021-03-20"), None));
        assert_eq!(read(r#"{"date":"2021-03-20","maybe":null}"#).unwrap().1, None);
        // Not in the strict form, still a date to chrono: read as chrono reads it.
        for loose in ["+12021-03-20", "2016-7-8", "+002016-07-08"] {
            let chrono_reads: NaiveDate = loose.parse().unwrap();
            assert_eq!(read(&format!(r#"{{"date":"{loose}"}}"#)).unwrap().0, chrono_reads);
        }
        for bad in [r#"{"date":"2021-02-30"}"#, r#"{"date":"tomorrow"}"#, r#"{"date":20210320}"#] {
            let fast = read(bad).map_err(|e| e.to_string());
            let chrono = serde_json::from_str::<Chrono>(bad).map(|_| ()).map_err(|e| e.to_string());
            assert!(fast.is_err(), "{bad}");
            assert_eq!(fast.unwrap_err(), chrono.unwrap_err(), "{bad}: the same error as chrono's");
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
