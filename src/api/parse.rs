//! Parsing request fields into domain values; every error names the field.

use tonic::Status;

use super::error::invalid;
use crate::domain::date::{BusinessDate, parse_date};
use crate::domain::identity::IdNumber;
use crate::domain::ids::{check_bank_id, check_id, check_loan_id, check_loan_ref, check_text};
use crate::domain::money::Fen;
use crate::domain::rate::AnnualRate;

/// Longest request id accepted: room for a UUID with a prefix, or a bank's file name and line.
pub const REQUEST_ID_LEN_MAX: usize = 128;

pub fn request_id(value: &str) -> Result<String, Status> {
    if value.is_empty() {
        return Err(invalid(
            "request_id",
            "is required (any unique string per request, e.g. a UUID)",
        ));
    }
    if value.len() > REQUEST_ID_LEN_MAX || !value.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(invalid(
            "request_id",
            "must be 1 to 128 printable ASCII characters, without spaces",
        ));
    }
    Ok(value.to_string())
}

pub fn id(field: &str, value: &str) -> Result<String, Status> {
    check_id(value).map_err(|m| invalid(field, m))?;
    Ok(value.to_string())
}

/// An id that may be left empty (`None`), as a filter that is not set.
pub fn optional_id(field: &str, value: &str) -> Result<Option<String>, Status> {
    if value.is_empty() { Ok(None) } else { id(field, value).map(Some) }
}

/// The id of an existing loan: longer than an identifier for loans made before new loan ids were
/// held to one ([`check_loan_ref`]).
pub fn loan_id(field: &str, value: &str) -> Result<String, Status> {
    check_loan_ref(value).map_err(|m| invalid(field, m))?;
    Ok(value.to_string())
}

/// A new bank's id (without `-`: [`check_bank_id`]). Calls that name an existing bank take any
/// identifier ([`id`]), so that banks registered before the rule keep working.
pub fn bank_id(field: &str, value: &str) -> Result<String, Status> {
    check_bank_id(value).map_err(|m| invalid(field, m))?;
    Ok(value.to_string())
}

/// The loan id of a new contract, refused (naming `contract_number`) when longer than any call
/// naming the loan would take.
pub fn new_loan_id(bank_id: &str, contract_number: &str) -> Result<String, Status> {
    check_loan_id(bank_id, contract_number).map_err(|m| invalid("contract_number", m))?;
    Ok(crate::domain::ids::loan_id(bank_id, contract_number))
}

/// A new subsidy claim's id: `<bank_id>-<claim_number>` ([`crate::domain::ids::check_claim_id`]).
pub fn new_claim_id(bank_id: &str, claim_number: &str) -> Result<String, Status> {
    let claim_number = id("claim_number", claim_number)?;
    crate::domain::ids::check_claim_id(bank_id, &claim_number)
        .map_err(|m| invalid("claim_number", m))?;
    Ok(format!("{bank_id}-{claim_number}"))
}

/// Free text, trimmed, and checked as it is kept: a name padded past 200 characters in a
/// fixed-width file, 200 or fewer once trimmed, is taken.
pub fn text(field: &str, value: &str, required: bool) -> Result<String, Status> {
    let value = value.trim();
    check_text(value, required).map_err(|m| invalid(field, m))?;
    Ok(value.to_string())
}

/// [`text`], `None` when empty once trimmed (not stated).
pub fn optional_text(field: &str, value: &str) -> Result<Option<String>, Status> {
    let value = text(field, value, false)?;
    Ok((!value.is_empty()).then_some(value))
}

pub fn date(field: &str, value: &str) -> Result<BusinessDate, Status> {
    if value.is_empty() {
        return Err(invalid(field, "is required (YYYY-MM-DD)"));
    }
    parse_date(value).ok_or_else(|| {
        invalid(field, format!("is not a date in the form YYYY-MM-DD: {}", shown(value)))
    })
}

/// Days a loan write's value date may be ahead of the service's business date: a back-office
/// file may be dated by a clock ahead of the server's.
pub const VALUE_DATE_DAYS_AHEAD_MAX: i64 = 1;

/// The value date of a loan write (and a household's registration date) ([`date`]), at most [`VALUE_DATE_DAYS_AHEAD_MAX`] days after
/// `today`: a later one is refused, naming the field. Settling, writing off or repaying a loan
/// on a date to come is irreversible (a loan's value dates never go back), so that "2031-03-20"
/// typed for "2021-03-20" would settle ten years of interest on every loan of a ledger and leave
/// every genuine repayment refused as dated before the loan's last event.
pub fn value_date(field: &str, value: &str, today: BusinessDate) -> Result<BusinessDate, Status> {
    let date = date(field, value)?;
    let latest = today.checked_add_signed(chrono::Duration::days(VALUE_DATE_DAYS_AHEAD_MAX));
    if latest.is_some_and(|latest| date > latest) {
        return Err(invalid(
            field,
            format!(
                "{} is in the future: the date of an event is at most {VALUE_DATE_DAYS_AHEAD_MAX} day after today ({})",
                crate::domain::date::format_date(date),
                crate::domain::date::format_date(today)
            ),
        ));
    }
    Ok(date)
}

/// A report's `as_of` (empty: `today`), at most `today`: a report of what happened, whose
/// figures a date to come does not know yet (returns due, payments made, points settled). A
/// date to come was a subsidy register's answer streamed in part and then failed
/// `FAILED_PRECONDITION`, naming no field, at the first loan with too many points to catch up.
pub fn as_of(value: &str, today: BusinessDate) -> Result<BusinessDate, Status> {
    let Some(as_of) = optional_date("as_of", value)? else { return Ok(today) };
    if as_of > today {
        return Err(invalid(
            "as_of",
            format!(
                "{} is after today ({})",
                crate::domain::date::format_date(as_of),
                crate::domain::date::format_date(today)
            ),
        ));
    }
    Ok(as_of)
}

/// Characters of a refused value an error message shows at most.
const SHOWN_CHARS_MAX: usize = 32;

/// A refused value as an error message shows it: quoted, its first [`SHOWN_CHARS_MAX`]
/// characters and how many more there were. The message goes out twice in the answer's
/// trailers (`grpc-message` and the BadRequest details): a whole line of a file sent as a date,
/// echoed, passed the size of trailers clients accept, and the client saw the call fail
/// (tonic's as `UNAVAILABLE`) instead of the field named.
fn shown(value: &str) -> String {
    match value.char_indices().nth(SHOWN_CHARS_MAX) {
        None => format!("{value:?}"),
        Some((cut, _)) => {
            let more = value[cut..].chars().count();
            format!("{:?} and {more} more characters", &value[..cut])
        }
    }
}

pub fn optional_date(field: &str, value: &str) -> Result<Option<BusinessDate>, Status> {
    if value.is_empty() { Ok(None) } else { date(field, value).map(Some) }
}

/// A national ID number (GB 11643: its form, check digit and birth date), born by `today`: a
/// birth date to come is no real person's; of a province's region (GB/T 2260's codes 11–15,
/// 21–23, 31–37, 41–46, 50–54, 61–65, 71 Taiwan, and the residence permits' 81 Hong Kong, 82
/// Macau, 83 Taiwan; 90–99, the permanent residence cards of 2023), born in 1900 or later. A number of no region or born
/// before 1900, its check digit right by chance (one in eleven), is a typing error: stored as
/// a household's head, it would refuse the real person's registration as a head already
/// registered. Checked where requests are read: numbers recorded before are read as they were.
pub fn id_number(field: &str, value: &str, today: BusinessDate) -> Result<IdNumber, Status> {
    let id = IdNumber::parse(value).map_err(|e| invalid(field, e))?;
    if id.birth_date() > today {
        return Err(invalid(field, "has a birth date after today's"));
    }
    let province = &id.as_str()[..2];
    let of_a_province = matches!(
        province.parse::<u8>(),
        Ok(11..=15 | 21..=23 | 31..=37 | 41..=46 | 50..=54 | 61..=65 | 71 | 81..=83 | 90..=99)
    );
    if !of_a_province {
        return Err(invalid(
            field,
            format!("begins with {province}, the code of no province (GB/T 2260)"),
        ));
    }
    if chrono::Datelike::year(&id.birth_date()) < 1900 {
        return Err(invalid(field, "has a birth year before 1900"));
    }
    Ok(id)
}

pub fn rate(field: &str, value: &str) -> Result<AnnualRate, Status> {
    AnnualRate::parse(value).map_err(|e| invalid(field, e))
}

/// A journal seq a read stops at, or a tree size (the same): 0 is none (to the journal's
/// head); a seq is a positive 64-bit signed integer, and one past it is named.
pub fn through_seq(field: &str, value: u64) -> Result<Option<u64>, Status> {
    use crate::ledger::merkle::SIZE_MAX;
    match value {
        0 => Ok(None),
        seq if seq > SIZE_MAX => Err(invalid(field, format!("must be at most {SIZE_MAX}"))),
        seq => Ok(Some(seq)),
    }
}

pub fn positive_fen(field: &str, value: i64) -> Result<Fen, Status> {
    if value <= 0 {
        return Err(invalid(field, "must be a positive number of fen"));
    }
    Ok(Fen(value))
}

pub fn non_negative_fen(field: &str, value: i64) -> Result<Fen, Status> {
    if value < 0 {
        return Err(invalid(field, "must not be negative"));
    }
    Ok(Fen(value))
}

/// A repayment's `subsidy_netted_fen`, of its `amount` (parsed): not negative, and at most the
/// amount. Refused as sent, needing no loan's state: not recorded under the request id, so
/// that the request corrected is taken under it, and a batch's later items on its loan are
/// held back until it is (the domain's check of it, after the loan's own, was a refusal of the
/// rules, recorded: the file's first payment then came after its later ones).
pub fn netted_fen(value: i64, amount: Fen) -> Result<Fen, Status> {
    let netted = non_negative_fen("subsidy_netted_fen", value)?;
    if netted > amount {
        return Err(invalid(
            "subsidy_netted_fen",
            format!("must not be more than amount_fen ({} fen)", amount.0),
        ));
    }
    Ok(netted)
}

/// A proto enum field: unknown numbers and the UNSPECIFIED zero are refused, never defaulted.
pub fn enumeration<E: TryFrom<i32>>(field: &str, value: i32) -> Result<E, Status> {
    optional_enumeration(field, value)?.ok_or_else(|| invalid(field, "is required"))
}

/// An enum field that may be left out: `None` for 0 (`UNSPECIFIED`), a value it does not know
/// refused as [`enumeration`] refuses it.
pub fn optional_enumeration<E: TryFrom<i32>>(field: &str, value: i32) -> Result<Option<E>, Status> {
    if value == 0 {
        return Ok(None);
    }
    E::try_from(value).map(Some).map_err(|_| invalid(field, format!("has unknown value {value}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refused_values_are_shown_short() {
        assert_eq!(shown("2021-02-30"), r#""2021-02-30""#);
        let long = "日".repeat(40);
        assert_eq!(shown(&long), format!("{:?} and 8 more characters", "日".repeat(32)));
        let message = date("value_date", &"x".repeat(100_000)).expect_err("not a date");
        assert!(message.message().len() < 120, "{}", message.message());
    }
}
