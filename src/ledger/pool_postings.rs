//! The postings of a pool's events ([`crate::domain::pool`]): one place, used when an event is
//! recorded and again by `verify`.
//!
//! | event | postings |
//! |---|---|
//! | agreed, participated | none (memo) |
//! | transferred | `pool/<pool_id>/partner` Dr, `household/<household_id>/pooled` Cr, the amount |
//! | return paid | `household/<household_id>/pool_income` Dr, `pool/<pool_id>/returns` Cr |
//! | repaid | each member loan's part as its own repayment posts ([`loan_postings`]), then each hand-back: `household/<household_id>/pooled` Dr, `pool/<pool_id>/partner` Cr |
//! | settled | each hand-back, as above |

use super::account::{household_pool_income, household_pooled, pool_partner, pool_returns};
use super::loan_postings::loan_postings;
use super::posting::{Posting, PostingError, Postings, transfer};
use crate::domain::pool::{HandBack, PoolEvent};

/// The balanced postings of `event`.
pub fn pool_postings(event: &PoolEvent) -> Result<Postings, PostingError> {
    match event {
        PoolEvent::Agreed { .. } | PoolEvent::Participated { .. } => Ok(Postings::memo()),
        PoolEvent::Transferred { pool_id, household_id, amount_fen, .. } => Postings::balanced(
            transfer(pool_partner(pool_id), household_pooled(household_id), *amount_fen),
        ),
        PoolEvent::ReturnPaid { pool_id, household_id, amount_fen, .. } => Postings::balanced(
            transfer(household_pool_income(household_id), pool_returns(pool_id), *amount_fen),
        ),
        PoolEvent::Repaid { pool_id, bank_id, parts, handed_back, .. } => {
            let mut legs: Vec<Posting> = Vec::new();
            for part in parts {
                legs.extend(loan_postings(part, bank_id)?.into_vec());
            }
            legs.extend(hand_backs(pool_id, handed_back));
            Postings::balanced(legs)
        }
        PoolEvent::Settled { pool_id, handed_back, .. } => {
            Postings::balanced(hand_backs(pool_id, handed_back).collect())
        }
    }
}

fn hand_backs<'a>(
    pool_id: &'a str,
    handed_back: &'a [HandBack],
) -> impl Iterator<Item = Posting> + 'a {
    handed_back.iter().flat_map(move |b| {
        transfer(household_pooled(&b.household_id), pool_partner(pool_id), b.amount_fen)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::date::parse_date;
    use crate::domain::money::Fen;

    fn legs(event: &PoolEvent) -> Vec<(String, i64)> {
        let postings = pool_postings(event).unwrap();
        postings.as_slice().iter().map(|p| (p.account.clone(), p.amount.0)).collect()
    }

    #[test]
    fn money_moves_between_the_partner_and_the_household() {
        let day = parse_date("2021-06-20").unwrap();
        let transferred = PoolEvent::Transferred {
            pool_id: "P1".into(),
            ledger_id: "L".into(),
            loan_id: "A".into(),
            household_id: "HA".into(),
            value_date: day,
            amount_fen: Fen(5_000_000),
        };
        assert_eq!(
            legs(&transferred),
            [("pool/P1/partner".into(), 5_000_000), ("household/HA/pooled".into(), -5_000_000)]
        );
        let paid = PoolEvent::ReturnPaid {
            pool_id: "P1".into(),
            ledger_id: "L".into(),
            loan_id: "A".into(),
            household_id: "HA".into(),
            value_date: day,
            amount_fen: Fen(39_778),
        };
        assert_eq!(
            legs(&paid),
            [("household/HA/pool_income".into(), 39_778), ("pool/P1/returns".into(), -39_778)]
        );
        let settled = PoolEvent::Settled {
            pool_id: "P1".into(),
            ledger_id: "L".into(),
            value_date: day,
            handed_back: vec![HandBack {
                loan_id: "A".into(),
                household_id: "HA".into(),
                amount_fen: Fen(100),
            }],
        };
        assert_eq!(
            legs(&settled),
            [("household/HA/pooled".into(), 100), ("pool/P1/partner".into(), -100)]
        );
        let nothing = PoolEvent::Settled {
            pool_id: "P1".into(),
            ledger_id: "L".into(),
            value_date: day,
            handed_back: Vec::new(),
        };
        assert!(legs(&nothing).is_empty());
    }
}
