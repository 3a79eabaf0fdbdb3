//! Identifiers chosen by callers: ledger (region code), bank, household, contract numbers.

/// Longest identifier accepted: long enough for any registry or contract number seen in practice,
/// short enough to keep keys and account names compact.
pub const ID_LEN_MAX: usize = 64;

/// Checks an identifier: 1 to [`ID_LEN_MAX`] characters of ASCII letters, digits, `_`, `.` and
/// `-`. Slashes are excluded because account names use them as separators.
pub fn check_id(text: &str) -> Result<(), &'static str> {
    check_id_of(text, ID_LEN_MAX, "is longer than 64 characters")
}

/// Longest loan id stored: a bank id and a contract number of [`ID_LEN_MAX`] characters each
/// and the `-` between them ([`loan_id`]), as builds before new loan ids were held to
/// [`ID_LEN_MAX`] (2026-12-01, [`check_loan_id`]) could make.
pub const LOAN_ID_LEN_MAX: usize = 2 * ID_LEN_MAX + 1;

/// Checks the id of an existing loan named in a call: an identifier's characters ([`check_id`]),
/// at most [`LOAN_ID_LEN_MAX`] of them, so that a loan made before new ids were held to
/// [`ID_LEN_MAX`] can still be read, repaid and settled.
pub fn check_loan_ref(text: &str) -> Result<(), &'static str> {
    check_id_of(text, LOAN_ID_LEN_MAX, "is longer than 129 characters")
}

fn check_id_of(text: &str, len_max: usize, too_long: &'static str) -> Result<(), &'static str> {
    if text.is_empty() {
        return Err("is required");
    }
    if text.len() > len_max {
        return Err(too_long);
    }
    if !text.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-')) {
        return Err("may contain only ASCII letters, digits, '_', '.' and '-'");
    }
    Ok(())
}

/// Checks a new bank's identifier: an identifier ([`check_id`]) without `-`, so that a loan id
/// (`<bank_id>-<contract_number>`, [`loan_id`]) names one bank and one contract: with `B1-2021`
/// allowed beside `B1`, contract `001` of the one and `2021-001` of the other would share a loan id.
pub fn check_bank_id(text: &str) -> Result<(), &'static str> {
    check_id(text)?;
    if text.contains('-') {
        return Err("may not contain '-' (a loan id is the bank id, '-' and the contract number)");
    }
    Ok(())
}

/// Checks the loan id a contract would get ([`loan_id`]): every call that names a loan takes an
/// identifier of at most [`ID_LEN_MAX`] characters, so a longer one is refused at its creation.
pub fn check_loan_id(bank_id: &str, contract_number: &str) -> Result<(), String> {
    check_bank_prefixed(("loan", "contract"), bank_id, contract_number)
}

/// Checks that a new subsidy claim's id, `<bank_id>-<claim_number>`, is within the length.
pub fn check_claim_id(bank_id: &str, claim_number: &str) -> Result<(), String> {
    check_bank_prefixed(("claim", "claim"), bank_id, claim_number)
}

/// An id made of a bank's id and the bank's own number for the thing: `(thing, number's name)`.
fn check_bank_prefixed(
    (thing, number): (&str, &str),
    bank_id: &str,
    own: &str,
) -> Result<(), String> {
    let len = bank_id.len() + 1 + own.len();
    if len > ID_LEN_MAX {
        return Err(format!(
            "makes the {thing} id {bank_id}-{own} {len} characters long; a {thing} id has at most {ID_LEN_MAX}, so a {number} number of bank {bank_id} at most {}",
            ID_LEN_MAX.saturating_sub(bank_id.len() + 1)
        ));
    }
    Ok(())
}

/// Longest free-text field (names, purposes, reasons), in characters.
pub const TEXT_LEN_MAX: usize = 200;

/// Checks free text as it is kept (the caller trims it first: padding is not counted).
pub fn check_text(text: &str, required: bool) -> Result<(), &'static str> {
    if required && text.trim().is_empty() {
        return Err("is required");
    }
    // Of the characters kept for the scripts that need them (joiners, marks, variation
    // selectors) alone, a name shows blank on an auditor's screen.
    if required && !text.chars().any(char::is_alphanumeric) {
        return Err("is required: it has no letter or digit");
    }
    if text.chars().count() > TEXT_LEN_MAX {
        return Err("is longer than 200 characters");
    }
    if text.chars().any(char::is_control) {
        return Err("contains control characters");
    }
    if text.chars().any(hides_or_turns_text) {
        return Err(
            "contains an invisible or direction-changing character (a soft hyphen, a combining grapheme joiner, a Hangul filler, a zero-width space, a word joiner or invisible operator, a byte order mark, a line or paragraph separator, a bidirectional embedding, override or isolate, a tag character)",
        );
    }
    Ok(())
}

/// Characters that make two names look alike that differ, or show a name reversed to whoever
/// reads it (an auditor's screen): soft hyphen, combining grapheme joiner, Hangul fillers,
/// zero-width space, word joiner and invisible operators, byte order mark, line and paragraph
/// separators, bidirectional embeddings, overrides and isolates, tag characters. The joiners
/// and marks some scripts need (ZWNJ, ZWJ, LRM, RLM, Mongolian's variation selectors and vowel
/// separator) are kept.
fn hides_or_turns_text(c: char) -> bool {
    matches!(
        c,
        '\u{00AD}'
            | '\u{034F}'
            | '\u{115F}'
            | '\u{1160}'
            | '\u{3164}'
            | '\u{FFA0}'
            | '\u{E0000}'..='\u{E007F}'
            | '\u{200B}'
            | '\u{2028}'
            | '\u{2029}'
            | '\u{202A}'..='\u{202E}'
            | '\u{2060}'..='\u{2064}'
            | '\u{2066}'..='\u{2069}'
            | '\u{FEFF}'
    )
}

/// The loan id a bank's contract gets: `<bank_id>-<contract_number>`.
pub fn loan_id(bank_id: &str, contract_number: &str) -> String {
    format!("{bank_id}-{contract_number}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn free_text() {
        assert_eq!(check_text("", true), Err("is required"));
        assert_eq!(check_text("", false), Ok(()));
        assert_eq!(check_text(&"韦".repeat(200), true), Ok(()));
        assert_eq!(check_text(&"韦".repeat(201), true), Err("is longer than 200 characters"));
        assert_eq!(check_text("a\tb", true), Err("contains control characters"));
        for hidden in [
            '\u{00AD}',
            '\u{3164}',
            '\u{E0041}',
            '\u{200B}',
            '\u{202E}',
            '\u{2066}',
            '\u{2069}',
            '\u{2060}',
            '\u{FEFF}',
            '\u{2028}',
        ] {
            let name = format!("韦{hidden}小宝");
            assert!(check_text(&name, true).unwrap_err().contains("invisible"), "{hidden:?}");
        }
        // What scripts need is kept: joiners, marks, Mongolian's variation selectors.
        for kept in [
            '\u{200C}', '\u{200D}', '\u{200E}', '\u{200F}', '\u{180B}', '\u{180E}', '\u{2065}',
            '\u{206A}',
        ] {
            assert_eq!(check_text(&format!("a{kept}b"), true), Ok(()), "{kept:?}");
            // Alone, or with marks and punctuation alone: no name.
            let alone = check_text(&format!("{kept}\u{0301}-"), true);
            assert_eq!(alone, Err("is required: it has no letter or digit"), "{kept:?}");
            assert_eq!(check_text(&kept.to_string(), false), Ok(()), "{kept:?}");
        }
    }

    #[test]
    fn ids() {
        assert!(check_id("450121").is_ok());
        assert!(check_id("ABC-2021.001_x").is_ok());
        assert!(check_id("").is_err());
        assert!(check_id("a/b").is_err());
        assert!(check_id(&"x".repeat(65)).is_err());
        assert!(check_loan_ref(&"x".repeat(129)).is_ok());
        assert_eq!(check_loan_ref(&"x".repeat(130)), Err("is longer than 129 characters"));
        assert!(check_loan_ref("a/b").is_err());
        assert!(check_loan_ref("").is_err());
        let longest = loan_id(&"B".repeat(ID_LEN_MAX), &"C".repeat(ID_LEN_MAX));
        assert_eq!(longest.len(), LOAN_ID_LEN_MAX);
    }

    #[test]
    fn bank_ids_have_no_hyphen() {
        assert!(check_bank_id("B1").is_ok());
        assert!(check_bank_id("ABC_450.1").is_ok());
        assert!(check_bank_id("B1-2021").is_err());
        assert!(check_bank_id("").is_err());
    }

    #[test]
    fn loan_ids_fit_the_identifier_limit() {
        assert!(check_loan_id("B1", &"x".repeat(61)).is_ok());
        let e = check_loan_id("B1", &"x".repeat(62)).unwrap_err();
        assert_eq!(
            e,
            format!(
                "makes the loan id B1-{} 65 characters long; a loan id has at most 64, so a \
                 contract number of bank B1 at most 61",
                "x".repeat(62)
            )
        );
        assert_eq!(loan_id("B1", &"x".repeat(61)).len(), ID_LEN_MAX);
    }
}
