//! Account names: `<owner kind>/<owner id>/<purpose>`.
//!
//! Ids never contain `/` (see `domain::ids::check_id`), so a name parses back unambiguously.
//! Debit-normal accounts (assets, receivables) have positive balances.
//!
//! | account | meaning |
//! |---|---|
//! | `loan/<loan_id>/principal` | principal the household owes the bank (debit-normal) |
//! | `bank/<bank_id>/cash` | the bank's funds lent out and received back (credit when lending) |
//! | `loan/<loan_id>/interest` | settled interest the household has not paid yet (debit-normal) |
//! | `loan/<loan_id>/penalty` | penalty interest (罚息) settled and unpaid (debit-normal) |
//! | `loan/<loan_id>/compound` | compound interest (复利) settled and unpaid (debit-normal) |
//! | `bank/<bank_id>/interest_income` | interest the bank has earned (credit-normal) |
//! | `bank/<bank_id>/penalty_income` | penalty interest earned (credit-normal) |
//! | `bank/<bank_id>/compound_income` | compound interest earned (credit-normal) |
//! | `bank/<bank_id>/loan_loss` | what the bank has written off (debit-normal) |
//! | `bank/<bank_id>/subsidy_due` | 直补: subsidy the bank took off households' interest at repayment, less the lines' subsidy claims paid to the bank passed on to their households (the netted lines'; since 2026-12-07 also the others', which the bank then holds for them). Debit: netted and not paid (awaiting a claim, or owed to the bank by the household: a line rejected, netted beyond the subsidy the period earned, a loan misused, a subsidy clawed back); credit: subsidy paid to the bank beyond what it netted of those lines, owed to their households |
//! | `finance/<ledger_id>/subsidy` | interest subsidy the ledger's finance office has paid (credit when paying) |
//! | `household/<household_id>/subsidy` | interest subsidy paid to the household: refunded (先缴后补), or paid to its bank (直补): netted by the bank, or, since 2026-12-07, held by the bank for it (debit when paid) |
//! | `riskfund/<ledger_id>/fund` | the money the ledger's risk-compensation fund holds (debit-normal) |
//! | `finance/<ledger_id>/riskfund` | what the ledger's finance office has deposited into the fund (credit when depositing) |
//! | `riskfund/<ledger_id>/interest_income` | interest the fund's money has earned (credit-normal) |
//! | `pool/<pool_id>/partner` | the members' loan money a pool's partner holds (debit-normal: it owes it back) |
//! | `household/<household_id>/pooled` | the household's loan money placed with a pool's partner (credit when handed over) |
//! | `pool/<pool_id>/returns` | returns and dividends a pool's partner has paid (credit-normal) |
//! | `household/<household_id>/pool_income` | returns and dividends the household received (debit-normal) |

pub fn loan_principal(loan_id: &str) -> String {
    name("loan/", loan_id, "/principal")
}

pub fn loan_interest(loan_id: &str) -> String {
    name("loan/", loan_id, "/interest")
}

pub fn loan_penalty(loan_id: &str) -> String {
    name("loan/", loan_id, "/penalty")
}

pub fn loan_compound(loan_id: &str) -> String {
    name("loan/", loan_id, "/compound")
}

pub fn bank_penalty_income(bank_id: &str) -> String {
    name("bank/", bank_id, "/penalty_income")
}

pub fn bank_compound_income(bank_id: &str) -> String {
    name("bank/", bank_id, "/compound_income")
}

pub fn bank_loan_loss(bank_id: &str) -> String {
    name("bank/", bank_id, "/loan_loss")
}

pub fn bank_subsidy_due(bank_id: &str) -> String {
    name("bank/", bank_id, "/subsidy_due")
}

pub fn bank_cash(bank_id: &str) -> String {
    name("bank/", bank_id, "/cash")
}

pub fn bank_interest_income(bank_id: &str) -> String {
    name("bank/", bank_id, "/interest_income")
}

pub fn household_subsidy(household_id: &str) -> String {
    name("household/", household_id, "/subsidy")
}

pub fn finance_subsidy(ledger_id: &str) -> String {
    name("finance/", ledger_id, "/subsidy")
}

pub fn risk_fund(ledger_id: &str) -> String {
    name("riskfund/", ledger_id, "/fund")
}

pub fn finance_risk_fund(ledger_id: &str) -> String {
    name("finance/", ledger_id, "/riskfund")
}

pub fn risk_fund_interest(ledger_id: &str) -> String {
    name("riskfund/", ledger_id, "/interest_income")
}

pub fn pool_partner(pool_id: &str) -> String {
    name("pool/", pool_id, "/partner")
}

pub fn household_pooled(household_id: &str) -> String {
    name("household/", household_id, "/pooled")
}

pub fn pool_returns(pool_id: &str) -> String {
    name("pool/", pool_id, "/returns")
}

pub fn household_pool_income(household_id: &str) -> String {
    name("household/", household_id, "/pool_income")
}

/// `<owner kind>/<owner id>/<purpose>`, in one allocation without the formatting machinery:
/// every posting names two or more accounts, and `verify`'s replay names them all again.
fn name(kind: &str, id: &str, purpose: &str) -> String {
    let mut name = String::with_capacity(kind.len() + id.len() + purpose.len());
    name.push_str(kind);
    name.push_str(id);
    name.push_str(purpose);
    name
}

/// The loan an account belongs to, if it is a loan account.
pub fn loan_of(account: &str) -> Option<&str> {
    let rest = account.strip_prefix("loan/")?;
    rest.split_once('/').map(|(id, _)| id)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_parse_back() {
        assert_eq!(loan_of(&loan_principal("B1-2021-001")), Some("B1-2021-001"));
        assert_eq!(loan_of(&bank_cash("B1")), None);
    }

    #[test]
    fn names_as_documented() {
        assert_eq!(loan_principal("L1"), "loan/L1/principal");
        assert_eq!(loan_interest("L1"), "loan/L1/interest");
        assert_eq!(loan_penalty("L1"), "loan/L1/penalty");
        assert_eq!(loan_compound("L1"), "loan/L1/compound");
        assert_eq!(bank_subsidy_due("B1"), "bank/B1/subsidy_due");
        assert_eq!(bank_cash("B1"), "bank/B1/cash");
        assert_eq!(bank_interest_income("B1"), "bank/B1/interest_income");
        assert_eq!(bank_penalty_income("B1"), "bank/B1/penalty_income");
        assert_eq!(bank_compound_income("B1"), "bank/B1/compound_income");
        assert_eq!(bank_loan_loss("B1"), "bank/B1/loan_loss");
        assert_eq!(risk_fund("451024"), "riskfund/451024/fund");
        assert_eq!(finance_risk_fund("451024"), "finance/451024/riskfund");
        assert_eq!(risk_fund_interest("451024"), "riskfund/451024/interest_income");
    }
}
