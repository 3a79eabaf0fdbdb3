//! Postings, and the rule that a transaction's postings sum to zero.

use std::fmt::Write;

use serde::{Deserialize, Serialize};

use crate::domain::money::Fen;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Posting {
    pub account: String,
    /// Debit positive, credit negative. Never zero.
    pub amount: Fen,
}

/// The postings of one transaction: empty (a memo transaction) or two or more non-zero legs that
/// sum to exactly zero. The only constructor checks it, so a `Postings` value is always balanced.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Postings(Vec<Posting>);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PostingError {
    #[error("postings sum to {0} fen, not zero")]
    Unbalanced(i128),
    #[error("a transaction that moves money needs at least two postings")]
    SingleLeg,
    #[error("posting to {0} is zero")]
    ZeroLeg(String),
    #[error("a reversal's postings are those of the entry it reverses, negated")]
    Reversal,
}

impl Postings {
    /// A memo transaction: no money moves.
    pub fn memo() -> Self {
        Postings(Vec::new())
    }

    /// Builds balanced postings. Zero legs are dropped first (a repayment with no interest part
    /// has no interest leg), then the rest must be two or more summing to zero.
    pub fn balanced(legs: Vec<Posting>) -> Result<Self, PostingError> {
        let legs: Vec<Posting> = legs.into_iter().filter(|p| p.amount != Fen::ZERO).collect();
        Self::check(&legs)?;
        Ok(Postings(legs))
    }

    /// Checks stored postings (as read back from the journal) without filtering.
    pub fn check(legs: &[Posting]) -> Result<(), PostingError> {
        if legs.is_empty() {
            return Ok(());
        }
        if legs.len() < 2 {
            return Err(PostingError::SingleLeg);
        }
        if let Some(zero) = legs.iter().find(|p| p.amount == Fen::ZERO) {
            return Err(PostingError::ZeroLeg(zero.account.clone()));
        }
        // i128 cannot overflow for any number of i64 legs a transaction may have.
        let sum: i128 = legs.iter().map(|p| i128::from(p.amount.0)).sum();
        if sum != 0 {
            return Err(PostingError::Unbalanced(sum));
        }
        Ok(())
    }

    pub fn as_slice(&self) -> &[Posting] {
        &self.0
    }

    pub fn into_vec(self) -> Vec<Posting> {
        self.0
    }
}

/// A transaction's postings as stored in its journal row (`journal_txn.postings`): a JSON array
/// of `[account, amount_fen]` pairs in posting order, `[]` for none. JSON makes the text
/// unambiguous whatever an account's characters, and SQL can expand it (the `posting` views of
/// both backends' migrations). The hash covers the postings themselves (`TxnContent`), not this
/// text: a rewrite that reads back as the same postings changes nothing the chain protects.
pub fn pack(postings: &[Posting]) -> String {
    let mut out = String::with_capacity(2 + postings.len() * 48);
    // Writing to a `String` cannot fail.
    let _ = pack_into(postings, &mut out);
    out
}

/// Writes `postings` in [`pack`]'s form to `out`.
fn pack_into(postings: &[Posting], out: &mut impl Write) -> std::fmt::Result {
    out.write_char('[')?;
    for (i, p) in postings.iter().enumerate() {
        if i > 0 {
            out.write_char(',')?;
        }
        out.write_char('[')?;
        if needs_escape(&p.account) {
            // A `String` always serialises (no I/O, no map keys): the text is valid JSON.
            out.write_str(&serde_json::to_string(&p.account).unwrap_or_default())?;
        } else {
            out.write_char('"')?;
            out.write_str(&p.account)?;
            out.write_char('"')?;
        }
        write!(out, ",{}]", p.amount.0)?;
    }
    out.write_char(']')
}

/// Whether JSON writes `account` otherwise than between two quotes.
fn needs_escape(account: &str) -> bool {
    account.bytes().any(|b| b < 0x20 || b == b'"' || b == b'\\')
}

/// Whether `text` is `postings` as [`pack`] writes them: compared piece by piece as they would
/// be written, without writing them (verify asks it of every transaction).
pub fn is_packed(postings: &[Posting], text: &str) -> bool {
    /// The text not yet compared; a piece that does not come next fails the writing.
    struct Rest<'a>(&'a str);
    impl Write for Rest<'_> {
        fn write_str(&mut self, piece: &str) -> std::fmt::Result {
            self.0 = self.0.strip_prefix(piece).ok_or(std::fmt::Error)?;
            Ok(())
        }
    }
    let mut rest = Rest(text);
    pack_into(postings, &mut rest).is_ok() && rest.0.is_empty()
}

/// Adds each posting's amount to its account's sum in `sums` (i128: a sum of stored i64
/// amounts cannot overflow it), allocating a name only for an account not summed yet.
pub fn add_up<'p>(
    sums: &mut crate::collections::HashMap<String, i128>,
    postings: impl IntoIterator<Item = &'p Posting>,
) {
    for p in postings {
        let amount = i128::from(p.amount.0);
        match sums.get_mut(p.account.as_str()) {
            Some(sum) => *sum += amount,
            None => {
                sums.insert(p.account.clone(), amount);
            }
        }
    }
}

/// The postings of a stored journal row's text ([`pack`]'s form, any JSON spacing).
pub fn unpack(text: &str) -> Result<Vec<Posting>, serde_json::Error> {
    let pairs: Vec<(String, i64)> = serde_json::from_str(text)?;
    Ok(pairs
        .into_iter()
        .map(|(account, amount)| Posting { account, amount: Fen(amount) })
        .collect())
}

/// [`unpack`] into `out`, reusing its postings' strings when `text` is in [`pack`]'s own form
/// (verify reads every transaction's postings; read otherwise, by [`unpack`]). `out` is left
/// empty on an error.
pub fn unpack_into(text: &str, out: &mut Vec<Posting>) -> Result<(), serde_json::Error> {
    if unpack_packed(text, out).is_none() {
        out.clear();
        *out = unpack(text)?;
    }
    Ok(())
}

/// `text` read into `out` if it is as [`pack`] writes it (accounts without escapes, amounts
/// without a sign or zeros JSON refuses), `None` otherwise (`out` then holds anything).
fn unpack_packed(text: &str, out: &mut Vec<Posting>) -> Option<()> {
    let mut rest = text.strip_prefix('[')?;
    if rest == "]" {
        out.clear();
        return Some(());
    }
    let mut n = 0;
    loop {
        rest = rest.strip_prefix("[\"")?;
        let (account, after) = rest.split_once('"')?;
        if account.bytes().any(|b| b < 0x20 || b == b'\\') {
            return None;
        }
        let (amount, after) = after.strip_prefix(',')?.split_once(']')?;
        let amount = Fen(packed_amount(amount)?);
        match out.get_mut(n) {
            Some(p) => {
                p.account.clear();
                p.account.push_str(account);
                p.amount = amount;
            }
            None => out.push(Posting { account: account.to_string(), amount }),
        }
        n += 1;
        match after.strip_prefix(',') {
            Some(next) => rest = next,
            None if after == "]" => {
                out.truncate(n);
                return Some(());
            }
            None => return None,
        }
    }
}

/// A JSON integer as [`pack`] writes an amount: digits, a minus sign before them, no leading
/// zero, `0` unsigned; `None` for anything else (JSON may refuse it, or read it otherwise:
/// `-0` is a float to serde_json, refused as an amount) or past 64 bits.
fn packed_amount(text: &str) -> Option<i64> {
    let digits = text.strip_prefix('-').unwrap_or(text);
    let plain = !digits.is_empty()
        && digits.bytes().all(|b| b.is_ascii_digit())
        && (text == "0" || !digits.starts_with('0'));
    if plain { text.parse().ok() } else { None }
}

/// A debit of `amount` to `debit` and a credit to `credit`.
pub fn transfer(debit: String, credit: String, amount: Fen) -> Vec<Posting> {
    vec![Posting { account: debit, amount }, Posting { account: credit, amount: Fen(-amount.0) }]
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn leg(account: &str, amount: i64) -> Posting {
        Posting { account: account.into(), amount: Fen(amount) }
    }

    #[test]
    fn balance_rules() {
        assert!(Postings::balanced(vec![leg("a", 5), leg("b", -5)]).is_ok());
        assert_eq!(
            Postings::balanced(vec![leg("a", 5), leg("b", -4)]),
            Err(PostingError::Unbalanced(1))
        );
        assert_eq!(
            Postings::balanced(vec![leg("a", 5), leg("b", 0)]),
            Err(PostingError::SingleLeg)
        );
        assert!(Postings::balanced(vec![]).unwrap().as_slice().is_empty());
        assert_eq!(
            Postings::check(&[leg("a", 0), leg("b", 0)]),
            Err(PostingError::ZeroLeg("a".into()))
        );
    }

    #[test]
    fn packed_postings_are_a_json_array_of_pairs() {
        assert_eq!(pack(&[]), "[]");
        let legs = [leg("bank/B1/cash", -500), leg("a \"quoted\" \\ name", 500)];
        assert_eq!(pack(&legs), r#"[["bank/B1/cash",-500],["a \"quoted\" \\ name",500]]"#);
        // PostgreSQL's json_agg spaces its output: read back the same.
        assert_eq!(unpack(r#"[["bank/B1/cash", -500], ["x", 500]]"#).unwrap()[0], legs[0]);
        assert!(unpack("[[\"a\",1.5]]").is_err(), "amounts are whole fen");
        assert!(unpack("[[\"a\",1],").is_err());
    }

    /// `unpack_into` reads what `unpack` reads, into a buffer holding anything before.
    fn read_into(text: &str, before: &[Posting]) -> Result<Vec<Posting>, String> {
        let mut out = before.to_vec();
        match unpack_into(text, &mut out) {
            Ok(()) => Ok(out),
            Err(e) => {
                assert!(out.is_empty(), "{text:?}: emptied on an error");
                Err(e.to_string())
            }
        }
    }

    #[test]
    fn postings_read_into_a_buffer_as_unpack_reads_them() {
        let held = [leg("x", 1), leg("y", -1), leg("z", 0)];
        for text in [
            "[]",
            r#"[["a",5],["b",-5]]"#,
            r#"[["a", 5], ["b", -5]]"#,
            r#"[["a\"b",5]]"#,
            r#"[["a\u0041",-0]]"#,
            r#"[["a",05]]"#,
            r#"[["a",-0]]"#,
            r#"[["a",0],["b",-1]]"#,
            r#"[["a",+5]]"#,
            r#"[["a",5.0]]"#,
            r#"[["a",9223372036854775808]]"#,
            r#"[["a",-9223372036854775808]]"#,
            "[[\"a\tb\",1]]",
            r#"[["a",1]],"#,
            r#"[["a",1],]"#,
            r#"[["a",1]"#,
            r#"[["é",1]]"#,
            "",
            "[",
        ] {
            for before in [&held[..0], &held[..1], &held[..]] {
                let expected = unpack(text).map_err(|e| e.to_string());
                assert_eq!(read_into(text, before), expected, "{text:?} into {}", before.len());
            }
        }
    }

    proptest! {
        #[test]
        fn packed_postings_read_back_the_same(
            legs in proptest::collection::vec((any::<String>(), any::<i64>()), 0..6)
        ) {
            let legs: Vec<Posting> = legs.into_iter().map(|(a, x)| Posting { account: a, amount: Fen(x) }).collect();
            let text = pack(&legs);
            prop_assert!(is_packed(&legs, &text));
            prop_assert_eq!(read_into(&text, &[leg("held", 7)]), Ok(legs.clone()));
            prop_assert_eq!(unpack(&text).unwrap(), legs);
        }

        /// `is_packed` holds of `pack`'s own text only: not of the same postings spaced
        /// otherwise, nor of a text cut short, lengthened or changed in one character.
        #[test]
        fn only_packs_own_text_is_packed(
            legs in proptest::collection::vec(("[a-c\"]{0,3}", -20i64..20), 0..4),
            at in any::<proptest::sample::Index>(),
            with in r#"[a-c0-9",\\\[\] -]"#,
        ) {
            let legs: Vec<Posting> = legs.into_iter().map(|(a, x)| Posting { account: a, amount: Fen(x) }).collect();
            let text = pack(&legs);
            let i = at.index(text.len() + 1);
            let mut changed = text.clone();
            changed.replace_range(i..(i + 1).min(text.len()), &with);
            let mut inserted = text.clone();
            inserted.insert_str(i, &with);
            for other in [changed, inserted, text[..i].to_string(), text.replace(',', ", ")] {
                prop_assert_eq!(is_packed(&legs, &other), other == text, "{:?}", other);
                prop_assert_eq!(read_into(&other, &[]), unpack(&other).map_err(|e| e.to_string()));
            }
        }

        /// Any text at all is read into a buffer as `unpack` reads it.
        #[test]
        fn any_text_is_read_into_a_buffer_as_unpack_reads_it(text in r#"[\[\]",a-b0-9 .+-]{0,24}"#) {
            prop_assert_eq!(read_into(&text, &[leg("held", 7)]), unpack(&text).map_err(|e| e.to_string()));
        }

        #[test]
        fn transfers_always_balance(amount in 1i64..i64::MAX) {
            let p = Postings::balanced(transfer("a".into(), "b".into(), Fen(amount))).unwrap();
            // The debit to the first account, the credit to the second, the amount whole.
            prop_assert_eq!(p.as_slice(), &[leg("a", amount), leg("b", -amount)][..]);
        }

        /// Any set of legs is refused unless it sums to zero (random amounts practically never
        /// do), and, in half the cases, made to balance by its last leg, is accepted: its
        /// non-zero legs, in order; refused, the error names the sum.
        #[test]
        fn any_unbalanced_set_is_refused(
            mut amounts in proptest::collection::vec(-1_000_000i64..1_000_000, 2..8),
            balance in any::<bool>(),
        ) {
            if balance {
                let others: i64 = amounts[..amounts.len() - 1].iter().sum();
                *amounts.last_mut().unwrap() = -others;
            }
            let legs: Vec<Posting> =
                amounts.iter().enumerate().map(|(i, a)| leg(&i.to_string(), *a)).collect();
            let sum: i128 = amounts.iter().map(|a| i128::from(*a)).sum();
            let result = Postings::balanced(legs.clone());
            let ok = result.is_ok();
            let nonzero = amounts.iter().filter(|a| **a != 0).count();
            prop_assert_eq!(ok, sum == 0 && (nonzero == 0 || nonzero >= 2));
            let kept: Vec<Posting> = legs.into_iter().filter(|p| p.amount != Fen::ZERO).collect();
            if balance {
                prop_assert_eq!(result, Ok(Postings(kept)));
            } else if sum != 0 && nonzero >= 2 {
                prop_assert_eq!(result, Err(PostingError::Unbalanced(sum)));
            }
        }
    }
}
