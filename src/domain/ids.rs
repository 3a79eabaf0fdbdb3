//! Identifiers chosen by callers: ledger (region code), bank, household, contract numbers.

/// Longest identifier accepted: long enough for any registry or contract number seen in practice,
/// short enough to keep keys and account names compact.
pub const ID_LEN_MAX: usize = 64;

/// Checks an identifier: 1 to [`ID_LEN_MAX`] characters of ASCII letters, digits, `_`, `.` and
/// `-`. Slashes are excluded because account names use them as separators.
pub fn check_id(text: &str) -> Result<(), &'static str> {
    if text.is_empty() {
        return Err("is required");
    }
    if text.len() > ID_LEN_MAX {
        return Err("is longer than 64 characters");
    }
    if !text.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-')) {
        return Err("may contain only ASCII letters, digits, '_', '.' and '-'");
    }
    Ok(())
}

/// Longest free-text field (names, purposes, reasons), in characters.
pub const TEXT_LEN_MAX: usize = 200;

pub fn check_text(text: &str, required: bool) -> Result<(), &'static str> {
    if required && text.trim().is_empty() {
        return Err("is required");
    }
    if text.chars().count() > TEXT_LEN_MAX {
        return Err("is longer than 200 characters");
    }
    if text.chars().any(char::is_control) {
        return Err("contains control characters");
    }
    Ok(())
}

/// The loan id a bank's contract gets: `<bank_id>-<contract_number>`.
pub fn loan_id(bank_id: &str, contract_number: &str) -> String {
    format!("{bank_id}-{contract_number}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids() {
        assert!(check_id("450121").is_ok());
        assert!(check_id("ABC-2021.001_x").is_ok());
        assert!(check_id("").is_err());
        assert!(check_id("a/b").is_err());
        assert!(check_id(&"x".repeat(65)).is_err());
    }
}
