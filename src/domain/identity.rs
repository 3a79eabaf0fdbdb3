//! Resident identity numbers (GB 11643-1999): 18 characters, the birth date in positions 7-14,
//! and an ISO 7064 MOD 11-2 check character (`0`-`9` or `X`).

use super::date::BusinessDate;
use chrono::NaiveDate;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdNumberError {
    #[error("must be 18 characters: 17 digits and a check digit or X")]
    Shape,
    #[error("has a birth date that does not exist")]
    BirthDate,
    #[error("has a wrong check character")]
    Checksum,
}

/// A checked identity number, upper-case.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdNumber {
    text: String,
    birth_date: BusinessDate,
}

const WEIGHTS: [u32; 17] = [7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2];
const CHECK: [u8; 11] = *b"10X98765432";

/// The check character for the first 17 digits.
pub fn check_char(first17: &[u8]) -> u8 {
    let sum: u32 = first17.iter().zip(WEIGHTS).map(|(d, w)| u32::from(d - b'0') * w).sum();
    CHECK[(sum % 11) as usize]
}

impl IdNumber {
    pub fn parse(text: &str) -> Result<Self, IdNumberError> {
        let upper = text.trim().to_ascii_uppercase();
        let bytes = upper.as_bytes();
        if bytes.len() != 18
            || !bytes[..17].iter().all(u8::is_ascii_digit)
            || !(bytes[17].is_ascii_digit() || bytes[17] == b'X')
        {
            return Err(IdNumberError::Shape);
        }
        let birth = std::str::from_utf8(&bytes[6..14]).map_err(|_| IdNumberError::Shape)?;
        let birth_date =
            NaiveDate::parse_from_str(birth, "%Y%m%d").map_err(|_| IdNumberError::BirthDate)?;
        if check_char(&bytes[..17]) != bytes[17] {
            return Err(IdNumberError::Checksum);
        }
        Ok(IdNumber { text: upper, birth_date })
    }

    pub fn as_str(&self) -> &str {
        &self.text
    }

    pub fn birth_date(&self) -> BusinessDate {
        self.birth_date
    }
}

/// Masks an identity number for roles that must not see it in full: the region prefix and the
/// last four characters stay, e.g. `450121********123X`.
pub fn mask(text: &str) -> String {
    let chars: Vec<char> = text.chars().collect();
    if chars.len() < 10 {
        return "*".repeat(chars.len());
    }
    let head: String = chars[..6].iter().collect();
    let tail: String = chars[chars.len() - 4..].iter().collect();
    format!("{head}{}{tail}", "*".repeat(chars.len() - 10))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Builds a valid number for a birth date, for tests elsewhere too.
    pub fn make(region: &str, birth: &str, serial: &str) -> String {
        let first17 = format!("{region}{birth}{serial}");
        let c = check_char(first17.as_bytes()) as char;
        format!("{first17}{c}")
    }

    #[test]
    fn the_standard_example_checks() {
        // The example number of GB 11643-1999.
        let id = IdNumber::parse("11010519491231002X").unwrap();
        assert_eq!(id.birth_date(), NaiveDate::from_ymd_opt(1949, 12, 31).unwrap());
        assert_eq!(IdNumber::parse("110105194912310021"), Err(IdNumberError::Checksum));
    }

    #[test]
    fn shapes_and_dates() {
        assert_eq!(IdNumber::parse("123"), Err(IdNumberError::Shape));
        let bad_date = make("450121", "19800230", "123");
        assert_eq!(IdNumber::parse(&bad_date), Err(IdNumberError::BirthDate));
        let ok = make("450121", "19800229", "123");
        assert!(IdNumber::parse(&ok).is_ok(), "a leap day");
        // A check character X is taken in lower case too (the standard example's).
        assert!(IdNumber::parse("11010519491231002x").is_ok());
    }

    #[test]
    fn masking_keeps_region_and_tail() {
        assert_eq!(mask("11010519491231002X"), "110105********002X");
    }
}
