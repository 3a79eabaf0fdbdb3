//! Annual interest rates as exact decimals.
//!
//! A rate is a fraction per year (`0.0385` is 3.85%), parsed from a decimal string and never held
//! as a float. The daily rate is the annual rate / 360 (PBoC 银发〔2005〕129号); it is not stored
//! rounded: interest is computed from the annual rate and the day count in one exact expression
//! and rounded once, at settlement.

use std::fmt;

use rust_decimal::Decimal;

/// An annual rate, a fraction in `[0, 1)`, with at most [`AnnualRate::SCALE_MAX`] decimals, as a
/// client sends it ([`AnnualRate::parse`]); or a rate derived from one, exactly
/// ([`AnnualRate::with_uplift`]: a penalty rate, which may have more decimals and reach 1 or
/// more). Both are recorded as computed and read back as recorded ([`AnnualRate::from_recorded`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct AnnualRate(Decimal);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RateError {
    #[error("is not a decimal number such as \"0.0385\"")]
    NotDecimal,
    #[error("must be at least 0 and below 1 (a fraction per year, \"0.0385\" is 3.85%)")]
    OutOfRange,
    #[error("has more than 8 decimal places")]
    TooPrecise,
}

impl AnnualRate {
    /// Eight decimals express a rate to a millionth of a percent, finer than any rate a bank
    /// quotes; more would only invite representation games.
    pub const SCALE_MAX: u32 = 8;

    /// Days in the interest year (银发〔2005〕129号: daily rate = annual rate / 360).
    pub const DAYS_PER_YEAR: u32 = 360;

    pub fn new(value: Decimal) -> Result<Self, RateError> {
        if value.is_sign_negative() && !value.is_zero() || value >= Decimal::ONE {
            return Err(RateError::OutOfRange);
        }
        let value = value.normalize();
        if value.scale() > Self::SCALE_MAX {
            return Err(RateError::TooPrecise);
        }
        Ok(AnnualRate(value))
    }

    pub fn parse(text: &str) -> Result<Self, RateError> {
        let text = text.trim();
        // Decimal::from_str accepts forms such as "1e-2" only through from_scientific, so a plain
        // parse is exactly "digits with an optional point".
        if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit() || b == b'.' || b == b'-') {
            return Err(RateError::NotDecimal);
        }
        // A minus sign is a negative rate, "-0" too: refused as such, not read as 0 (nor, with
        // too many places, as too precise). "0.0-1" and the like stay no decimal.
        if text.starts_with('-') && !matches!(exact_decimal(text), Err(DecimalError::NotDecimal)) {
            return Err(RateError::OutOfRange);
        }
        // Too many digits with a whole part of 1 or more: out of range before too precise.
        let whole_is_zero = text
            .trim_start_matches('-')
            .split('.')
            .next()
            .is_some_and(|w| w.bytes().all(|b| b == b'0'));
        Self::new(exact_decimal(text).map_err(|e| match e {
            DecimalError::NotDecimal => RateError::NotDecimal,
            DecimalError::TooPrecise if whole_is_zero => RateError::TooPrecise,
            DecimalError::OutOfRange | DecimalError::TooPrecise => RateError::OutOfRange,
        })?)
    }

    pub fn value(self) -> Decimal {
        self.0
    }

    /// The daily rate, exact to 28 significant digits (annual / 360).
    pub fn daily(self) -> Decimal {
        self.0 / Decimal::from(Self::DAYS_PER_YEAR)
    }

    /// This rate times `(1 + uplift)`, e.g. the penalty rate with a 50% uplift: exact, not
    /// rounded to [`AnnualRate::SCALE_MAX`] places nor kept below 1 (3.849999% × 1.5 is
    /// 5.7749985%; a policy's uplift may have up to 28 places and reach 10).
    pub fn with_uplift(self, uplift: Decimal) -> AnnualRate {
        AnnualRate((self.0 * (Decimal::ONE + uplift)).normalize())
    }

    /// A rate as recorded in the journal or a read model: any non-negative decimal, exactly as
    /// written. The limits of [`AnnualRate::parse`] are for what clients send; a recorded rate
    /// may be one derived from such a rate ([`AnnualRate::with_uplift`]), and must read back
    /// as recorded, or the events that carry it could no longer be replayed. What guards the
    /// journal's text is its hash chain, not this parser.
    ///
    /// It is bounded all the same by what a penalty rate can reach (a rate below 1 with an
    /// uplift of at most [`UPLIFT_MAX`]), so that the arithmetic on a rate read back (a
    /// journal replayed by `verify`, which may have been altered) stays far inside a decimal's
    /// range: an altered rate is reported as unreadable, not a panic.
    pub fn from_recorded(text: &str) -> Result<Self, RateError> {
        let bound = Decimal::ONE + UPLIFT_MAX;
        match exact_decimal(text) {
            Ok(value) if value.is_sign_negative() && !value.is_zero() || value >= bound => {
                Err(RateError::OutOfRange)
            }
            Ok(value) => Ok(AnnualRate(value.normalize())),
            Err(DecimalError::NotDecimal) => Err(RateError::NotDecimal),
            Err(DecimalError::TooPrecise) => Err(RateError::TooPrecise),
            Err(DecimalError::OutOfRange) => Err(RateError::OutOfRange),
        }
    }
}

/// The largest uplift a policy may set on the contract rate for its penalty rates (× 11 at
/// most: `domain::policy`).
pub const UPLIFT_MAX: Decimal = Decimal::TEN;

/// A policy uplift as recorded (a contract's terms in the journal or in a loan's row): any
/// decimal from 0 to [`UPLIFT_MAX`], as policies are checked to set (`domain::policy`). One
/// outside is refused as unreadable: the penalty rate is the contract rate times `1 + uplift`
/// ([`AnnualRate::with_uplift`]), whose arithmetic a forged uplift of 10^28 would overflow,
/// a panic of the writer or of verify's replay instead of a row reported as altered.
pub fn recorded_uplift<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Decimal, D::Error> {
    let uplift = <Decimal as serde::Deserialize>::deserialize(d)?;
    if uplift.is_sign_negative() && !uplift.is_zero() || uplift > UPLIFT_MAX {
        return Err(serde::de::Error::custom(format!(
            "an uplift of {uplift}: outside 0 to {UPLIFT_MAX}"
        )));
    }
    Ok(uplift)
}

/// Why a decimal's text is refused ([`exact_decimal`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DecimalError {
    NotDecimal,
    /// More digits than a decimal holds (its 96 bits) before the point.
    OutOfRange,
    /// More places after the point than a decimal holds (28), beyond trailing zeros.
    TooPrecise,
}

/// The decimal `text` holds, exactly: digits with an optional point (and sign), trailing zeros
/// after the point ignored. Past what a decimal holds it is refused, never rounded
/// (`Decimal::from_str` rounds past 28 places: a rate of 0.0385 with a 1 in the 32nd place read
/// as 0.0385, a tiny negative one as 0).
pub fn exact_decimal(text: &str) -> Result<Decimal, DecimalError> {
    let trimmed = match text.matches('.').count() {
        0 => text,
        // Its trailing zeros, then the point if nothing follows it ("5." is 5).
        1 => text.trim_end_matches('0').trim_end_matches('.'),
        // "0.0385.0" is no decimal (trimmed as one, it read as 0.0385).
        _ => return Err(DecimalError::NotDecimal),
    };
    if let Ok(value) = Decimal::from_str_exact(trimmed) {
        return Ok(value);
    }
    // Refused: for its form, or for its digits, before the point (the whole number does not
    // fit) or after it.
    let body = trimmed.strip_prefix('-').unwrap_or(trimmed);
    let (whole, places) = body.split_once('.').unwrap_or((body, ""));
    let digits = |t: &str| t.bytes().all(|b| b.is_ascii_digit());
    if (whole.is_empty() && places.is_empty()) || !digits(whole) || !digits(places) {
        return Err(DecimalError::NotDecimal);
    }
    match Decimal::from_str_exact(if whole.is_empty() { "0" } else { whole }) {
        Ok(_) => Err(DecimalError::TooPrecise),
        Err(_) => Err(DecimalError::OutOfRange),
    }
}

/// The canonical text: normalised decimal, e.g. `0.0385`.
impl fmt::Display for AnnualRate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// Serialised as its canonical decimal string, e.g. `"0.0385"`.
impl serde::Serialize for AnnualRate {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for AnnualRate {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        AnnualRate::from_recorded(&text).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Uplifts read back within 0 to 10, as policies set them; any other refused, not read.
    #[test]
    fn recorded_uplifts_are_bounded() {
        let read = |json: &str| {
            recorded_uplift(&mut serde_json::Deserializer::from_str(json))
                .map_err(|e| e.to_string())
        };
        for ok in [r#""0""#, r#""0.5""#, r#""1""#, r#""10""#, r#""10.000""#] {
            assert!(read(ok).is_ok(), "{ok}");
        }
        assert_eq!(read(r#""0.5""#), Ok(Decimal::new(5, 1)));
        for bad in [r#""-0.1""#, r#""10.0000001""#, r#""79228162514264337593543950335""#] {
            let e = read(bad).expect_err(bad);
            assert!(e.contains("outside 0 to 10"), "{bad}: {e}");
        }
    }

    #[test]
    fn parses_plain_decimals_only() {
        assert_eq!(AnnualRate::parse("0.0385").unwrap().to_string(), "0.0385");
        assert_eq!(AnnualRate::parse("0.03850").unwrap().to_string(), "0.0385");
        assert_eq!(AnnualRate::parse("abc"), Err(RateError::NotDecimal));
        assert_eq!(AnnualRate::parse("1e-2"), Err(RateError::NotDecimal));
        assert_eq!(AnnualRate::parse(""), Err(RateError::NotDecimal));
        assert_eq!(AnnualRate::parse("3.85"), Err(RateError::OutOfRange));
        assert_eq!(AnnualRate::parse("-0.01"), Err(RateError::OutOfRange));
        assert_eq!(AnnualRate::parse("0.000000001"), Err(RateError::TooPrecise));
        // Past a decimal's 28 places: refused, not rounded to 0.0385 or to 0.
        assert_eq!(
            AnnualRate::parse("0.03850000000000000000000000000001"),
            Err(RateError::TooPrecise)
        );
        assert_eq!(
            AnnualRate::parse("-0.00000000000000000000000000001"),
            Err(RateError::OutOfRange)
        );
        // A minus sign is refused however small the number, zero too.
        for negative in ["-0", "-0.0", "-0.", "-0.00000001"] {
            assert_eq!(AnnualRate::parse(negative), Err(RateError::OutOfRange), "{negative}");
        }
        assert_eq!(AnnualRate::parse("0.0-1"), Err(RateError::NotDecimal));
        assert_eq!(AnnualRate::parse("--0"), Err(RateError::NotDecimal));
        // Trailing zeros are no places; too many digits before the point is out of range.
        let zeros = format!("0.0385{}", "0".repeat(40));
        assert_eq!(AnnualRate::parse(&zeros).map(|r| r.to_string()).as_deref(), Ok("0.0385"));
        assert_eq!(AnnualRate::parse("3."), Err(RateError::OutOfRange));
        assert_eq!(
            exact_decimal("123456789012345678901234567890.5"),
            Err(DecimalError::OutOfRange)
        );
        assert_eq!(exact_decimal("1234567890123456789012345.12345"), Err(DecimalError::TooPrecise));
        assert_eq!(
            AnnualRate::parse("1234567890123456789012345.12345"),
            Err(RateError::OutOfRange)
        );
        assert_eq!(exact_decimal("12.5"), Ok(Decimal::new(125, 1)));
        assert_eq!(exact_decimal("abc"), Err(DecimalError::NotDecimal));
        for two_points in ["0.0385.0", "0.0385..", "0.5.", "1.2.3", ".."] {
            assert_eq!(exact_decimal(two_points), Err(DecimalError::NotDecimal), "{two_points}");
        }
        assert_eq!(exact_decimal("5."), Ok(Decimal::new(5, 0)));
    }

    #[test]
    fn penalty_uplift() {
        let r = AnnualRate::parse("0.0385").unwrap();
        assert_eq!(r.with_uplift(Decimal::new(5, 1)).to_string(), "0.05775");
    }

    /// A derived rate with more places than a client may send, or of 1 or more, is recorded
    /// as computed and read back the same; what is not a non-negative decimal is refused.
    #[test]
    fn derived_rates_read_back_as_recorded() {
        let cases = [
            ("0.03849999", Decimal::new(5, 1), "0.057749985"),
            ("0.0999", Decimal::from(10), "1.0989"),
            ("0.0385", Decimal::new(1_234_567_890_123_456_789, 19), "0.04325308637697530863765"),
        ];
        for (contract, uplift, penalty) in cases {
            let derived = AnnualRate::parse(contract).unwrap().with_uplift(uplift);
            assert_eq!(derived.to_string(), penalty);
            assert!(AnnualRate::parse(penalty).is_err(), "{penalty} is not a client's rate");
            let json = serde_json::to_string(&derived).unwrap();
            assert_eq!(serde_json::from_str::<AnnualRate>(&json).unwrap(), derived, "{json}");
        }
        let beyond = "\"11\"";
        let huge = "\"70000000000000000000000000000\"";
        for bad in ["\"-0.01\"", "\"abc\"", "\"\"", "\"1e-2\"", "0.05", beyond, huge] {
            assert!(serde_json::from_str::<AnnualRate>(bad).is_err(), "{bad}");
        }
        assert_eq!(
            serde_json::from_str::<AnnualRate>("\"0.03850\"").unwrap().to_string(),
            "0.0385"
        );
    }
}
