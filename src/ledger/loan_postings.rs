//! The postings of each loan event: one place decides how a loan's figures move money, used
//! when a command is accepted and again by `verify`, which checks the recorded postings.
//!
//! | event | postings |
//! |---|---|
//! | settlement point | interest: `loan/interest` Dr, `bank/interest_income` Cr; penalty: `loan/penalty` Dr, `bank/penalty_income` Cr; compound: `loan/compound` Dr, `bank/compound_income` Cr |
//! | disbursement | `loan/principal` Dr, `bank/cash` Cr |
//! | repayment | its settlement points, then `bank/cash` Dr the amount; `loan/penalty`, `loan/compound`, `loan/interest`, `loan/principal` Cr by allocation |
//! | write-off | its settlement points, then `bank/loan_loss` Dr the total; each bucket Cr |
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
        self.add(debit, amount)?;
        self.add(credit, Fen(-amount.0))
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
        LoanEvent::Repaid { repayment, .. } => {
            legs.point(loan, bank_id, &repayment.charges)?;
            legs.settle_buckets(loan, bank_cash(bank_id), &repayment.allocation)?;
        }
        LoanEvent::WrittenOff { charges, allocation, .. } => {
            legs.point(loan, bank_id, charges)?;
            legs.settle_buckets(loan, bank_loan_loss(bank_id), allocation)?;
        }
    }
    Postings::balanced(legs.0)
}
