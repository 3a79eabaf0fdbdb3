//! The postings of each loan event: one place decides how a loan's figures move money, used
//! when a command is accepted and again by `verify`, which checks the recorded postings.
//!
//! | event | postings |
//! |---|---|
//! | settlement point | interest: `loan/interest` Dr, `bank/interest_income` Cr; penalty: `loan/penalty` Dr, `bank/penalty_income` Cr; compound: `loan/compound` Dr, `bank/compound_income` Cr |
//! | disbursement | `loan/principal` Dr, `bank/cash` Cr |
//! | repayment | its settlement points, then `bank/cash` Dr the amount less the subsidy netted, `bank/subsidy_due` Dr the subsidy netted (直补); `loan/penalty`, `loan/compound`, `loan/interest`, `loan/principal` Cr by allocation |
//! | write-off | its settlement points, then `bank/loan_loss` Dr the total; each bucket Cr |
//! | reversal of a repayment | the repayment's postings, each negated ([`reversal_postings`]) |
//!
//! Legs to the same account are netted and zero legs dropped, in order of first appearance.
//!
//! An amortising loan's instalment principal falling due at a settlement point is not a money
//! movement and posts nothing: `loan/<id>/principal` holds all principal outstanding, due or
//! not, and the split lives in the loan's servicing state (and in the point's `principal`
//! figure in the journal's command).

use super::account::*;
use super::posting::{Posting, PostingError, Postings};
use crate::domain::loan::LoanEvent;
use crate::domain::money::Fen;
use crate::domain::servicing::{Allocation, SettlementPoint};

struct Legs(Vec<Posting>);

impl Legs {
    fn add(&mut self, account: String, amount: Fen) -> Result<(), PostingError> {
        if let Some(p) = self.0.iter_mut().find(|p| p.account == account) {
            p.amount = p.amount.checked_add(amount).ok_or(PostingError::Unbalanced(i128::MAX))?;
        } else {
            self.0.push(Posting { account, amount });
        }
        Ok(())
    }

    fn transfer(&mut self, debit: String, credit: String, amount: Fen) -> Result<(), PostingError> {
        // (An amount of i64::MIN fen, in an altered journal's event, has no negative.)
        let negated = amount.0.checked_neg().ok_or(PostingError::Unbalanced(i128::MAX))?;
        self.add(debit, amount)?;
        self.add(credit, Fen(negated))
    }

    fn point(&mut self, loan: &str, bank: &str, p: &SettlementPoint) -> Result<(), PostingError> {
        self.transfer(loan_interest(loan), bank_interest_income(bank), p.interest_fen())?;
        self.transfer(loan_penalty(loan), bank_penalty_income(bank), p.penalty_fen())?;
        self.transfer(loan_compound(loan), bank_compound_income(bank), p.compound_fen())
    }

    fn settle_buckets(
        &mut self,
        loan: &str,
        debit: String,
        a: &Allocation,
    ) -> Result<(), PostingError> {
        let interest = a.interest_fen().ok_or(PostingError::Unbalanced(i128::MAX))?;
        self.transfer(debit.clone(), loan_penalty(loan), a.penalty_fen)?;
        self.transfer(debit.clone(), loan_compound(loan), a.compound_fen)?;
        self.transfer(debit.clone(), loan_interest(loan), interest)?;
        self.transfer(debit, loan_principal(loan), a.principal_fen)
    }
}

/// The balanced postings of a loan event of a loan of `bank_id`.
pub fn loan_postings(event: &LoanEvent, bank_id: &str) -> Result<Postings, PostingError> {
    let loan = event.loan_id();
    let mut legs = Legs(Vec::new());
    for p in event.settlements() {
        legs.point(loan, bank_id, p)?;
    }
    match event {
        LoanEvent::Created { .. }
        | LoanEvent::Settled { .. }
        | LoanEvent::MisuseMarked { .. }
        | LoanEvent::Extended { .. } => {}
        LoanEvent::Disbursed { amount_fen, .. } => {
            legs.transfer(loan_principal(loan), bank_cash(bank_id), *amount_fen)?;
        }
        LoanEvent::Repaid { repayment, subsidy_netted_fen, .. } => {
            legs.point(loan, bank_id, &repayment.charges)?;
            legs.settle_buckets(loan, bank_cash(bank_id), &repayment.allocation)?;
            // The household paid the bank the amount less the subsidy the bank netted, which
            // the finance office owes the bank (no names built for the repayments without).
            if *subsidy_netted_fen != Fen::ZERO {
                legs.transfer(bank_subsidy_due(bank_id), bank_cash(bank_id), *subsidy_netted_fen)?;
            }
        }
        LoanEvent::WrittenOff { charges, allocation, .. } => {
            legs.point(loan, bank_id, charges)?;
            legs.settle_buckets(loan, bank_loan_loss(bank_id), allocation)?;
        }
        // What came back of the loss: the bank's cash up, its loss down.
        LoanEvent::Recovered { amount_fen, .. } => {
            legs.transfer(bank_cash(bank_id), bank_loan_loss(bank_id), *amount_fen)?;
        }
        // Not of the event alone: of the event it reverses.
        LoanEvent::Reversed { .. } => return Err(PostingError::Reversal),
    }
    Postings::balanced(legs.0)
}

/// The postings of the reversal of `reversed`, an event of a loan of `bank_id`: its own
/// postings, each leg negated, in their order. They sum to zero as the reversed ones do, and
/// with them every account is back where it was.
pub fn reversal_postings(reversed: &LoanEvent, bank_id: &str) -> Result<Postings, PostingError> {
    let legs = loan_postings(reversed, bank_id)?.into_vec();
    let negated = legs
        .into_iter()
        .map(|p| {
            let amount = p.amount.0.checked_neg().ok_or(PostingError::Unbalanced(i128::MAX))?;
            Ok(crate::ledger::posting::Posting { account: p.account, amount: Fen(amount) })
        })
        .collect::<Result<Vec<_>, PostingError>>()?;
    Postings::balanced(negated)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::collections::HashMap;
    use crate::domain::money::Rounding;
    use crate::domain::servicing::{Accrual, Repayment};
    use proptest::prelude::*;
    use rust_decimal::Decimal;

    const DATE: &str = "2021-03-20";

    fn date() -> chrono::NaiveDate {
        crate::domain::date::parse_date(DATE).expect("a date")
    }

    fn accrual(fen: i64) -> Option<Accrual> {
        (fen > 0).then(|| Accrual {
            segments: Vec::new(),
            unrounded_fen: Decimal::from(fen),
            rounding: Rounding::HalfUp,
            amount_fen: Fen(fen),
            periodic: None,
        })
    }

    /// A settlement point of `(interest, penalty, compound)` fen.
    fn point((interest, penalty, compound): (i64, i64, i64)) -> SettlementPoint {
        SettlementPoint {
            date: date(),
            interest: accrual(interest),
            penalty: accrual(penalty),
            compound: accrual(compound),
            principal: None,
        }
    }

    fn allocation([penalty, compound, overdue, current, principal]: [i64; 5]) -> Allocation {
        Allocation {
            penalty_fen: Fen(penalty),
            compound_fen: Fen(compound),
            overdue_interest_fen: Fen(overdue),
            current_interest_fen: Fen(current),
            principal_fen: Fen(principal),
            due_principal_fen: Fen::ZERO,
        }
    }

    /// Each account's net amount in `postings` (each account appears once: legs are netted).
    fn net(postings: &Postings) -> HashMap<String, i64> {
        let mut by_account = HashMap::default();
        for p in postings.as_slice() {
            assert!(by_account.insert(p.account.clone(), p.amount.0).is_none(), "{p:?} twice");
            assert_ne!(p.amount, Fen::ZERO, "a zero leg");
        }
        by_account
    }

    /// What `postings` moves on each account, zero for an account it does not name.
    fn on(by_account: &HashMap<String, i64>, account: String) -> i64 {
        by_account.get(&account).copied().unwrap_or(0)
    }

    #[test]
    fn a_disbursement_moves_the_bank_cash_to_the_loan() {
        let event = LoanEvent::Disbursed {
            loan_id: "B1-1".into(),
            value_date: date(),
            amount_fen: Fen(5_000_000),
            settlements: Vec::new(),
        };
        let postings = loan_postings(&event, "B1").expect("balanced");
        let legs: Vec<(&str, i64)> =
            postings.as_slice().iter().map(|p| (p.account.as_str(), p.amount.0)).collect();
        assert_eq!(legs, [("loan/B1-1/principal", 5_000_000), ("bank/B1/cash", -5_000_000)]);
    }

    #[test]
    fn a_recovery_after_the_write_off_moves_the_loss_back_to_the_banks_cash() {
        let event = LoanEvent::Recovered {
            loan_id: "B1-1".into(),
            value_date: date(),
            amount_fen: Fen(2_000_000),
            principal_fen: Fen(2_000_000),
        };
        let postings = loan_postings(&event, "B1").expect("balanced");
        let legs: Vec<(&str, i64)> =
            postings.as_slice().iter().map(|p| (p.account.as_str(), p.amount.0)).collect();
        assert_eq!(legs, [("bank/B1/cash", 2_000_000), ("bank/B1/loan_loss", -2_000_000)]);
    }

    #[test]
    fn a_memo_event_with_no_points_posts_nothing() {
        let event =
            LoanEvent::Settled { loan_id: "B1-1".into(), value_date: date(), settlements: vec![] };
        assert!(loan_postings(&event, "B1").expect("balanced").as_slice().is_empty());
        let settled = LoanEvent::Settled {
            loan_id: "B1-1".into(),
            value_date: date(),
            settlements: vec![point((0, 0, 0))],
        };
        assert!(loan_postings(&settled, "B1").expect("balanced").as_slice().is_empty());
    }

    proptest! {
        /// A repayment's postings, or a write-off's, whatever its points, charges and
        /// allocation: balanced, each account once, no zero leg; each bucket of the loan moves
        /// by what its points and charges accrued less what the allocation paid off it, each
        /// income account by what was accrued, and the bank's cash (or its loan loss) by what
        /// was paid, less a repayment's netted subsidy (up to its current interest), which
        /// its bank's `subsidy_due` takes.
        #[test]
        fn a_repayment_or_write_off_moves_each_bucket_by_its_figures(
            points in proptest::collection::vec((0i64..1_000_000_000, 0i64..1_000_000, 0i64..1_000_000), 0..5),
            charges in (0i64..1_000_000_000, 0i64..1_000_000, 0i64..1_000_000),
            paid in proptest::array::uniform5(0i64..1_000_000_000),
            written_off in any::<bool>(),
            netted_percent in 0i64..=100,
        ) {
            let settlements: Vec<SettlementPoint> = points.iter().copied().map(point).collect();
            let (loan_id, value_date) = ("B1-1".to_string(), date());
            let netted = if written_off { 0 } else { paid[3] * netted_percent / 100 };
            let event = if written_off {
                LoanEvent::WrittenOff {
                    loan_id, value_date, settlements,
                    charges: point(charges),
                    allocation: allocation(paid),
                    overdue_since: None,
                }
            } else {
                LoanEvent::Repaid {
                    loan_id, value_date, amount_fen: Fen(paid.iter().sum()), settlements,
                    repayment: Repayment { charges: point(charges), allocation: allocation(paid), payoff: false },
                    subsidy_netted_fen: Fen(netted),
                }
            };
            let postings = loan_postings(&event, "B1").expect("balanced");
            let sum: i128 = postings.as_slice().iter().map(|p| i128::from(p.amount.0)).sum();
            prop_assert_eq!(sum, 0);
            let by = net(&postings);
            let accrued = |f: fn(&(i64, i64, i64)) -> i64| points.iter().map(f).sum::<i64>() + f(&charges);
            let [penalty, compound, overdue, current, principal] = paid;
            prop_assert_eq!(on(&by, loan_interest("B1-1")), accrued(|p| p.0) - overdue - current);
            prop_assert_eq!(on(&by, loan_penalty("B1-1")), accrued(|p| p.1) - penalty);
            prop_assert_eq!(on(&by, loan_compound("B1-1")), accrued(|p| p.2) - compound);
            prop_assert_eq!(on(&by, loan_principal("B1-1")), -principal);
            prop_assert_eq!(on(&by, bank_interest_income("B1")), -accrued(|p| p.0));
            prop_assert_eq!(on(&by, bank_penalty_income("B1")), -accrued(|p| p.1));
            prop_assert_eq!(on(&by, bank_compound_income("B1")), -accrued(|p| p.2));
            let (paid_by, other) = if written_off {
                (bank_loan_loss("B1"), bank_cash("B1"))
            } else {
                (bank_cash("B1"), bank_loan_loss("B1"))
            };
            prop_assert_eq!(on(&by, paid_by), paid.iter().sum::<i64>() - netted);
            prop_assert_eq!(on(&by, other), 0);
            prop_assert_eq!(on(&by, bank_subsidy_due("B1")), netted);
            prop_assert!(by.len() <= 10);
            // Its negation (a reversal's, of a repayment): balanced, the same accounts each
            // negated, in the same order, so the two leave every account where it was.
            let reversal = reversal_postings(&event, "B1").expect("balanced");
            prop_assert_eq!(reversal.as_slice().len(), postings.as_slice().len());
            for (back, leg) in reversal.as_slice().iter().zip(postings.as_slice()) {
                prop_assert_eq!(&back.account, &leg.account);
                prop_assert_eq!(back.amount.0, -leg.amount.0);
            }
            let reversed = LoanEvent::Reversed {
                loan_id: "B1-1".into(), value_date: date(), reversed_seq: 3, reason: "x".into(),
            };
            prop_assert_eq!(loan_postings(&reversed, "B1"), Err(PostingError::Reversal));
        }

        /// Each other kind of event that posts, with any settlement points (a disbursement's
        /// included): balanced, each account once, no zero leg, and exactly these nets: each
        /// bucket Dr and its income account Cr by what the points accrued, the principal Dr and
        /// the bank's cash Cr by a disbursement, the cash Dr and the loan loss Cr by a
        /// recovery; no other account.
        #[test]
        fn every_other_event_moves_its_points_and_its_own_money(
            points in proptest::collection::vec(
                (0i64..1_000_000_000, 0i64..1_000_000, 0i64..1_000_000),
                0..5,
            ),
            kind in 0usize..5,
            amount in 1i64..1_000_000_000_000,
            principal_percent in 0i64..=100,
            falsely_obtained in any::<bool>(),
        ) {
            let settlements: Vec<SettlementPoint> = points.iter().copied().map(point).collect();
            let (loan_id, value_date) = ("B1-1".to_string(), date());
            let new_maturity = value_date + chrono::Duration::days(365);
            let principal_fen = Fen(amount * principal_percent / 100);
            let (event, disbursed, recovered) = match kind {
                0 => {
                    let amount_fen = Fen(amount);
                    let event =
                        LoanEvent::Disbursed { loan_id, value_date, amount_fen, settlements };
                    (event, amount, 0)
                }
                1 => (LoanEvent::Settled { loan_id, value_date, settlements }, 0, 0),
                2 => {
                    let event = LoanEvent::MisuseMarked {
                        loan_id, value_date, settlements, falsely_obtained,
                    };
                    (event, 0, 0)
                }
                3 => (LoanEvent::Extended { loan_id, value_date, new_maturity, settlements }, 0, 0),
                _ => {
                    let amount_fen = Fen(amount);
                    let event =
                        LoanEvent::Recovered { loan_id, value_date, amount_fen, principal_fen };
                    (event, 0, amount)
                }
            };
            // A recovery carries no settlement points.
            let points = if recovered > 0 { &[][..] } else { &points[..] };
            let postings = loan_postings(&event, "B1").expect("balanced");
            let sum: i128 = postings.as_slice().iter().map(|p| i128::from(p.amount.0)).sum();
            prop_assert_eq!(sum, 0);
            let accrued = |f: fn(&(i64, i64, i64)) -> i64| points.iter().map(f).sum::<i64>();
            let expected: HashMap<String, i64> = [
                (loan_interest("B1-1"), accrued(|p| p.0)),
                (loan_penalty("B1-1"), accrued(|p| p.1)),
                (loan_compound("B1-1"), accrued(|p| p.2)),
                (bank_interest_income("B1"), -accrued(|p| p.0)),
                (bank_penalty_income("B1"), -accrued(|p| p.1)),
                (bank_compound_income("B1"), -accrued(|p| p.2)),
                (loan_principal("B1-1"), disbursed),
                (bank_cash("B1"), recovered - disbursed),
                (bank_loan_loss("B1"), -recovered),
            ]
            .into_iter()
            .filter(|(_, amount)| *amount != 0)
            .collect();
            prop_assert_eq!(net(&postings), expected);
        }
    }
}
