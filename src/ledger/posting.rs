//! Postings, and the rule that a transaction's postings sum to zero.

use std::fmt::Write as _;

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
    out.push('[');
    for (i, p) in postings.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push('[');
        if p.account.bytes().any(|b| b < 0x20 || b == b'"' || b == b'\\') {
            // A `String` always serialises (no I/O, no map keys): the text is valid JSON.
            out.push_str(&serde_json::to_string(&p.account).unwrap_or_default());
        } else {
            out.push('"');
            out.push_str(&p.account);
            out.push('"');
        }
        // Writing to a `String` cannot fail.
        let _ = write!(out, ",{}]", p.amount.0);
    }
    out.push(']');
    out
}

/// The postings of a stored journal row's text ([`pack`]'s form, any JSON spacing).
pub fn unpack(text: &str) -> Result<Vec<Posting>, serde_json::Error> {
    let pairs: Vec<(String, i64)> = serde_json::from_str(text)?;
    Ok(pairs
        .into_iter()
        .map(|(account, amount)| Posting { account, amount: Fen(amount) })
        .collect())
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

    proptest! {
        #[test]
        fn packed_postings_read_back_the_same(
            legs in proptest::collection::vec((any::<String>(), any::<i64>()), 0..6)
        ) {
            let legs: Vec<Posting> = legs.into_iter().map(|(a, x)| Posting { account: a, amount: Fen(x) }).collect();
            prop_assert_eq!(unpack(&pack(&legs)).unwrap(), legs);
        }

        #[test]
        fn transfers_always_balance(amount in 1i64..i64::MAX) {
            let p = Postings::balanced(transfer("a".into(), "b".into(), Fen(amount))).unwrap();
            prop_assert_eq!(p.as_slice().len(), 2);
        }

        #[test]
        fn any_unbalanced_set_is_refused(amounts in proptest::collection::vec(-1_000_000i64..1_000_000, 2..8)) {
            let legs: Vec<Posting> = amounts.iter().enumerate().map(|(i, a)| leg(&i.to_string(), *a)).collect();
            let sum: i128 = amounts.iter().map(|a| i128::from(*a)).sum();
            let ok = Postings::balanced(legs).is_ok();
            let nonzero = amounts.iter().filter(|a| **a != 0).count();
            prop_assert_eq!(ok, sum == 0 && (nonzero == 0 || nonzero >= 2));
        }
    }
}
