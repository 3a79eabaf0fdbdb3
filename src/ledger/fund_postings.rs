//! The postings of a risk-compensation fund's events ([`crate::domain::risk_fund`]): one
//! place, used when an event is recorded and again by `verify`.
//!
//! | event | postings |
//! |---|---|
//! | opened | none (memo) |
//! | deposited from the budget | `riskfund/<ledger_id>/fund` Dr, `finance/<ledger_id>/riskfund` Cr |
//! | interest earned | `riskfund/<ledger_id>/fund` Dr, `riskfund/<ledger_id>/interest_income` Cr |
//! | claimed (the bank's claim) | none (memo) |
//! | paid (the finance office's payment of a claim) | `bank/<bank_id>/cash` Dr the fund's share, `riskfund/<ledger_id>/fund` Cr |
//! | compensated (claimed and paid in one step: entries before the two) | as paid |
//! | returned | `riskfund/<ledger_id>/fund` Dr the amount, `bank/<bank_id>/cash` Cr |
//!
//! The bank's share of a loss is not posted when the fund pays: the household still owes the
//! loan, and what the bank does not recover is its loss when it writes the loan off.

use super::account::{bank_cash, finance_risk_fund, risk_fund, risk_fund_interest};
use super::posting::{PostingError, Postings, transfer};
use crate::domain::risk_fund::{DepositSource, FundEvent};

/// The balanced postings of `event`.
pub fn fund_postings(event: &FundEvent) -> Result<Postings, PostingError> {
    match event {
        FundEvent::Opened { .. } => Ok(Postings::memo()),
        FundEvent::Deposited { ledger_id, source, amount_fen, .. } => {
            let credit = match source {
                DepositSource::Deposit => finance_risk_fund(ledger_id),
                DepositSource::Interest => risk_fund_interest(ledger_id),
            };
            Postings::balanced(transfer(risk_fund(ledger_id), credit, *amount_fen))
        }
        FundEvent::Compensated { compensation: c } => {
            Postings::balanced(transfer(bank_cash(&c.bank_id), risk_fund(&c.ledger_id), c.fund_fen))
        }
        FundEvent::Claimed { .. } | FundEvent::Rejected { .. } => Ok(Postings::memo()),
        FundEvent::Paid { ledger_id, bank_id, amount_fen, .. } => {
            Postings::balanced(transfer(bank_cash(bank_id), risk_fund(ledger_id), *amount_fen))
        }
        FundEvent::Returned { ledger_id, bank_id, amount_fen, .. } => {
            Postings::balanced(transfer(risk_fund(ledger_id), bank_cash(bank_id), *amount_fen))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::date::parse_date;
    use crate::domain::money::Fen;
    use crate::domain::risk_fund::Compensation;
    use crate::ledger::posting::Posting;

    fn legs(event: &FundEvent) -> Vec<(String, i64)> {
        let postings = fund_postings(event).unwrap();
        postings.as_slice().iter().map(|p: &Posting| (p.account.clone(), p.amount.0)).collect()
    }

    #[test]
    fn each_event_moves_the_funds_money_by_its_amount() {
        let day = parse_date("2021-06-20").unwrap();
        let deposit = |source| FundEvent::Deposited {
            ledger_id: "451024".into(),
            value_date: day,
            source,
            amount_fen: Fen(1_000_000),
            voucher: "V".into(),
        };
        assert_eq!(
            legs(&deposit(DepositSource::Deposit)),
            [
                ("riskfund/451024/fund".into(), 1_000_000),
                ("finance/451024/riskfund".into(), -1_000_000)
            ]
        );
        assert_eq!(
            legs(&deposit(DepositSource::Interest))[1],
            ("riskfund/451024/interest_income".into(), -1_000_000)
        );
        let compensation = Compensation {
            loan_id: "L1".into(),
            bank_id: "B1".into(),
            ledger_id: "451024".into(),
            compensated_on: day,
            days_overdue: 92,
            loss_fen: Fen(5_000_000),
            fund_fen: Fen(4_000_000),
            bank_fen: Fen(1_000_000),
            repaid_before_fen: Fen::ZERO,
            recovered_fen: Fen::ZERO,
            returned_fen: Fen::ZERO,
            pending: false,
            paid_on: None,
            voucher: String::new(),
            rejected_on: None,
            rejection_reason: String::new(),
        };
        let paid =
            [("bank/B1/cash".into(), 4_000_000), ("riskfund/451024/fund".into(), -4_000_000)];
        assert_eq!(legs(&FundEvent::Compensated { compensation: compensation.clone() }), paid);
        // Claimed, nothing moves; paid, the fund's share.
        let claimed = Compensation { pending: true, ..compensation };
        assert!(legs(&FundEvent::Claimed { compensation: claimed }).is_empty());
        let rejected = FundEvent::Rejected {
            ledger_id: "451024".into(),
            loan_id: "L1".into(),
            bank_id: "B1".into(),
            value_date: day,
            reason: "the loan was not in the programme".into(),
        };
        assert!(legs(&rejected).is_empty(), "a rejection moves nothing");
        let payment = FundEvent::Paid {
            ledger_id: "451024".into(),
            loan_id: "L1".into(),
            bank_id: "B1".into(),
            value_date: day,
            amount_fen: Fen(4_000_000),
            voucher: "V".into(),
        };
        assert_eq!(legs(&payment), paid);
        let returned = FundEvent::Returned {
            ledger_id: "451024".into(),
            loan_id: "L1".into(),
            bank_id: "B1".into(),
            value_date: day,
            recovered_fen: Fen(100),
            amount_fen: Fen(80),
        };
        assert_eq!(
            legs(&returned),
            [("riskfund/451024/fund".into(), 80), ("bank/B1/cash".into(), -80)]
        );
        let opened = FundEvent::Opened {
            ledger_id: "451024".into(),
            opened_on: day,
            fund_share_percent: 80,
        };
        assert!(legs(&opened).is_empty());
    }
}
