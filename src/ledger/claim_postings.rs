//! The postings of a subsidy claim's steps ([`crate::domain::subsidy_claim`]): one place,
//! used when a payment is recorded and again by `verify`.
//!
//! | event | postings |
//! |---|---|
//! | submitted, reviewed, objected | none (memo) |
//! | paid | `bank/<bank_id>/cash` Dr, `finance/<ledger_id>/subsidy` Cr, the amount (none if zero) |
//! | clawed back | the reverse of a line's part: `finance/<ledger_id>/subsidy` Dr, `bank/<bank_id>/cash` Cr |

use super::account::{bank_cash, finance_subsidy};
use super::posting::{Posting, PostingError, Postings};
use crate::domain::money::Fen;
use crate::domain::subsidy_claim::ClaimEvent;

/// The balanced postings of a step of a claim of `bank_id` in `ledger_id`.
pub fn claim_postings(
    event: &ClaimEvent,
    ledger_id: &str,
    bank_id: &str,
) -> Result<Postings, PostingError> {
    match event {
        ClaimEvent::Paid { amount_fen, .. } => {
            let negated = amount_fen.0.checked_neg().ok_or(PostingError::Unbalanced(i128::MAX))?;
            Postings::balanced(vec![
                Posting { account: bank_cash(bank_id), amount: *amount_fen },
                Posting { account: finance_subsidy(ledger_id), amount: Fen(negated) },
            ])
        }
        ClaimEvent::ClawedBack { amount_fen, .. } => {
            let negated = amount_fen.0.checked_neg().ok_or(PostingError::Unbalanced(i128::MAX))?;
            Postings::balanced(vec![
                Posting { account: finance_subsidy(ledger_id), amount: *amount_fen },
                Posting { account: bank_cash(bank_id), amount: Fen(negated) },
            ])
        }
        ClaimEvent::Reviewed { .. } | ClaimEvent::Objected { .. } => Ok(Postings::memo()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_payment_moves_the_subsidy_from_the_finance_office_to_the_bank() {
        let paid = |fen| ClaimEvent::Paid {
            claim_id: "B1-Q1".into(),
            paid_on: "2021-04-20".parse().unwrap(),
            voucher: "V1".into(),
            amount_fen: Fen(fen),
        };
        let postings = claim_postings(&paid(29_410), "450121", "B1").unwrap();
        let legs: Vec<(&str, i64)> =
            postings.as_slice().iter().map(|p| (p.account.as_str(), p.amount.0)).collect();
        assert_eq!(legs, [("bank/B1/cash", 29_410), ("finance/450121/subsidy", -29_410)]);
        assert_eq!(claim_postings(&paid(0), "450121", "B1").unwrap(), Postings::memo());
    }
}
