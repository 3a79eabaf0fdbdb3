//! Money: integer fen, with checked arithmetic.
//!
//! Every amount in the books is a whole number of fen (0.01 yuan) held in an `i64`. Overflow is a
//! named result (`None` from the `checked_*` methods, mapped to [`MoneyOverflow`] by callers),
//! never a wraparound. Conversions from decimals always name their rounding mode at the call site.

use std::fmt;

use rust_decimal::{Decimal, RoundingStrategy};

/// An amount of money in fen. May be negative (a credit posting, a reversal).
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    Default,
    serde::Serialize,
    serde::Deserialize,
)]
#[serde(transparent)]
pub struct Fen(pub i64);

/// An arithmetic result did not fit in `i64` fen.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("amount overflows 64-bit fen")]
pub struct MoneyOverflow;

/// How a decimal amount of fen becomes a whole fen.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Rounding {
    /// 四舍五入: halves away from zero. The programme's default.
    HalfUp,
    /// Banker's rounding: halves to the even fen.
    HalfEven,
    /// Truncation towards zero.
    Down,
}

impl Rounding {
    pub fn strategy(self) -> RoundingStrategy {
        match self {
            Rounding::HalfUp => RoundingStrategy::MidpointAwayFromZero,
            Rounding::HalfEven => RoundingStrategy::MidpointNearestEven,
            Rounding::Down => RoundingStrategy::ToZero,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Rounding::HalfUp => "half_up",
            Rounding::HalfEven => "half_even",
            Rounding::Down => "down",
        }
    }
}

impl Fen {
    pub const ZERO: Fen = Fen(0);

    pub fn checked_add(self, other: Fen) -> Option<Fen> {
        self.0.checked_add(other.0).map(Fen)
    }

    pub fn checked_sub(self, other: Fen) -> Option<Fen> {
        self.0.checked_sub(other.0).map(Fen)
    }

    pub fn checked_neg(self) -> Option<Fen> {
        self.0.checked_neg().map(Fen)
    }

    pub fn is_positive(self) -> bool {
        self.0 > 0
    }

    pub fn is_negative(self) -> bool {
        self.0 < 0
    }

    /// Whether nothing (by reference: serde's `skip_serializing_if`).
    pub fn is_zero(&self) -> bool {
        self.0 == 0
    }

    /// The amount as a decimal number of fen (exact).
    pub fn to_decimal(self) -> Decimal {
        Decimal::from(self.0)
    }

    /// Rounds a decimal number of fen to a whole fen with the given mode; `None` if it does not
    /// fit in `i64`.
    pub fn from_decimal(fen: Decimal, rounding: Rounding) -> Option<Fen> {
        let whole = fen.round_dp_with_strategy(0, rounding.strategy());
        i64::try_from(whole).ok().map(Fen)
    }

    /// Sums amounts, failing on overflow.
    pub fn checked_sum<I: IntoIterator<Item = Fen>>(items: I) -> Option<Fen> {
        items.into_iter().try_fold(Fen::ZERO, |acc, x| acc.checked_add(x))
    }
}

/// Shows yuan with two decimals, e.g. `1951.73` or `-0.05`.
impl fmt::Display for Fen {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let sign = if self.0 < 0 { "-" } else { "" };
        let abs = self.0.unsigned_abs();
        write!(f, "{sign}{}.{:02}", abs / 100, abs % 100)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_is_yuan_with_two_decimals() {
        assert_eq!(Fen(195_173).to_string(), "1951.73");
        assert_eq!(Fen(-5).to_string(), "-0.05");
        assert_eq!(Fen(0).to_string(), "0.00");
        assert_eq!(Fen(i64::MIN).to_string(), "-92233720368547758.08");
    }

    #[test]
    fn rounding_modes_differ_on_halves() {
        let half = Decimal::new(25, 1); // 2.5 fen
        assert_eq!(Fen::from_decimal(half, Rounding::HalfUp), Some(Fen(3)));
        assert_eq!(Fen::from_decimal(half, Rounding::HalfEven), Some(Fen(2)));
        assert_eq!(Fen::from_decimal(half, Rounding::Down), Some(Fen(2)));
    }

    #[test]
    fn overflow_is_named_not_wrapped() {
        assert_eq!(Fen(i64::MAX).checked_add(Fen(1)), None);
        assert_eq!(Fen(i64::MIN).checked_neg(), None);
        assert_eq!(Fen::checked_sum([Fen(i64::MAX), Fen(1)]), None);
    }
}
