//! The postings of a subsidy claim's steps ([`crate::domain::subsidy_claim`]): one place,
//! used when a payment is recorded and again by `verify`.
//!
//! | event | postings |
//! |---|---|
//! | submitted, reviewed, objected | none (memo) |
//! | paid to the bank (直补) | `bank/<bank_id>/cash` Dr the amount; and each approved line its part `household/<household_id>/subsidy` Dr, `bank/<bank_id>/subsidy_due` Cr (one leg an account): of a line whose subsidy the bank netted at repayment (its recomputed `netted_fen`, since 2026-12-06), the subsidy the bank advanced, passed to the household; of a line not netted (the household paid the bank in full), the bank holding it for the household (since 2026-12-07, the payment's `owes_households`; a payment recorded before moved nothing more for such a line) |
//! | paid to the households (先缴后补) | `household/<household_id>/subsidy` Dr each approved line's part (one leg a household) |
//! | paid, either way | `finance/<ledger_id>/subsidy` Cr the amount (no postings if it is zero) |
//! | clawed back | the reverse of the line's part: `finance/<ledger_id>/subsidy` Dr, the payee's accounts Cr (a netted line paid to the bank: its cash Cr, the household's subsidy Cr, the bank's `subsidy_due` Dr: the household owes it back to the bank) |

use super::account::{bank_cash, bank_subsidy_due, finance_subsidy, household_subsidy};
use super::posting::{Posting, PostingError, Postings};
use crate::collections::{HashMap, HashSet};
use crate::domain::money::Fen;
use crate::domain::subsidy_claim::{Claim, ClaimEvent, Payee};

/// One leg an account, in the order of the account's first leg (a map from account to leg: a
/// claim may pay thousands of households).
#[derive(Default)]
struct Legs {
    legs: Vec<Posting>,
    at: HashMap<String, usize>,
}

impl Legs {
    fn add(&mut self, account: String, amount: Fen) -> Result<(), PostingError> {
        match self.at.get(&account) {
            Some(&at) => {
                let leg = &mut self.legs[at];
                leg.amount =
                    leg.amount.checked_add(amount).ok_or(PostingError::Unbalanced(i128::MAX))?;
            }
            None => {
                self.at.insert(account.clone(), self.legs.len());
                self.legs.push(Posting { account, amount });
            }
        }
        Ok(())
    }

    /// What paying `part` of line `line` to `payee` moves, negated for a clawback; paid to the
    /// bank, a line not netted is its household's too when the payment `owes_households`.
    fn line(
        &mut self,
        claim: &Claim,
        (payee, owes_households): (Payee, bool),
        line: usize,
        part: Fen,
    ) -> Result<(), PostingError> {
        let line = claim.lines.get(line);
        let household = || household_subsidy(line.map_or("", |l| l.household_id.as_str()));
        let netted = line.is_some_and(|l| l.netted_fen() > Fen::ZERO);
        match payee {
            Payee::Households => self.add(household(), part),
            Payee::Bank if netted || owes_households => {
                let negated = part.checked_neg().ok_or(PostingError::Unbalanced(i128::MAX))?;
                self.add(bank_cash(&claim.bank_id), part)?;
                self.add(bank_subsidy_due(&claim.bank_id), negated)?;
                self.add(household(), part)
            }
            Payee::Bank => self.add(bank_cash(&claim.bank_id), part),
        }
    }
}

/// The balanced postings of a step of `claim` (as it stood before the step).
pub fn claim_postings(event: &ClaimEvent, claim: &Claim) -> Result<Postings, PostingError> {
    let negated = |f: Fen| f.checked_neg().ok_or(PostingError::Unbalanced(i128::MAX));
    match event {
        ClaimEvent::Paid { amount_fen, payee, withheld, owes_households, .. } => {
            let withheld: HashSet<usize> = withheld.iter().map(|w| w.line as usize).collect();
            let mut legs = Legs::default();
            for (i, line) in claim.lines.iter().enumerate() {
                let part = line.approved_fen();
                if part == Fen::ZERO || withheld.contains(&i) {
                    continue;
                }
                legs.line(claim, (*payee, *owes_households), i, part)?;
            }
            legs.add(finance_subsidy(&claim.ledger_id), negated(*amount_fen)?)?;
            Postings::balanced(legs.legs)
        }
        ClaimEvent::ClawedBack { amount_fen, line, .. } => {
            let paid = claim
                .payment
                .as_ref()
                .map_or((Payee::Bank, false), |p| (p.payee, p.owes_households));
            let mut legs = Legs::default();
            legs.add(finance_subsidy(&claim.ledger_id), *amount_fen)?;
            legs.line(claim, paid, *line as usize, negated(*amount_fen)?)?;
            Postings::balanced(legs.legs)
        }
        ClaimEvent::Reviewed { .. } | ClaimEvent::Objected { .. } => Ok(Postings::memo()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::subsidy_claim::{ClaimLine, ClaimStatus, ClaimedLine, Decision, Rejection};

    /// A paid claim's lines: two approved of 29,410 fen each (households H1 and H2), one of
    /// H1 again of 100 fen, one rejected.
    fn claim() -> Claim {
        let rejected = Decision::Rejected { reason: "r".into() };
        Claim {
            claim_id: "B1-Q1".into(),
            ledger_id: "450121".into(),
            bank_id: "B1".into(),
            due_from: "2021-01-01".parse().unwrap(),
            due_to: "2021-03-31".parse().unwrap(),
            submitted_on: "2021-04-01".parse().unwrap(),
            status: ClaimStatus::Noticed,
            lines: vec![
                line("H1", 29_410, Decision::Approved),
                line("H2", 29_410, Decision::Approved),
                line("H1", 100, Decision::Approved),
                line("H3", 500, rejected),
            ],
            review: None,
            objections: Vec::new(),
            payment: None,
        }
    }

    /// A claim line of `household`'s whose subsidy is `fen`, with `decision`.
    fn line(household: &str, fen: i64, decision: Decision) -> ClaimLine {
        ClaimLine {
            claimed: ClaimedLine::of(
                &format!("B1-{household}-{fen}"),
                "2021-03-20".parse().unwrap(),
                Fen(fen),
                Fen(fen),
            ),
            household_id: household.into(),
            township: String::new(),
            village: String::new(),
            principal_fen: Fen(5_000_000),
            recomputed: Some(crate::domain::subsidy_claim::Recomputed {
                start: "2021-01-25".parse().unwrap(),
                end_inclusive: "2021-03-20".parse().unwrap(),
                settled_fen: Fen(fen),
                paid_on_time_fen: Fen(fen),
                subsidy_fen: Fen(fen),
                standing: crate::domain::subsidy_register::LineStanding::OnTime,
                days: 55,
                jishu: 0,
                netted_fen: Fen::ZERO,
            }),
            differences: Vec::new(),
            claimed_by: None,
            decision: Some(decision),
            clawback: None,
        }
    }

    /// [`claim`] paid 589.20 yuan to `payee` on 2021-04-20.
    fn paid_to(payee: Payee, owes_households: bool) -> Claim {
        let mut paid = claim();
        paid.payment = Some(crate::domain::subsidy_claim::Payment {
            paid_on: "2021-04-20".parse().unwrap(),
            voucher: "V1".into(),
            amount_fen: Fen(58_920),
            payee,
            owes_households,
        });
        paid
    }

    /// The clawback of line 1's 294.10 yuan on 2021-05-02.
    fn clawback_of_line_1() -> ClaimEvent {
        ClaimEvent::ClawedBack {
            claim_id: "B1-Q1".into(),
            clawed_back_on: "2021-05-02".parse().unwrap(),
            line: 1,
            reason: "misused".into(),
            amount_fen: Fen(29_410),
            loan_id: None,
        }
    }

    fn legs(postings: &Postings) -> Vec<(&str, i64)> {
        postings.as_slice().iter().map(|p| (p.account.as_str(), p.amount.0)).collect()
    }

    #[test]
    fn a_payment_moves_the_subsidy_from_the_finance_office_to_its_payee() {
        let paid = |fen, payee| ClaimEvent::Paid {
            claim_id: "B1-Q1".into(),
            paid_on: "2021-04-20".parse().unwrap(),
            voucher: "V1".into(),
            amount_fen: Fen(fen),
            payee,
            withheld: Vec::new(),
            owes_households: false,
        };
        let to_bank = claim_postings(&paid(58_920, Payee::Bank), &claim()).unwrap();
        assert_eq!(legs(&to_bank), [("bank/B1/cash", 58_920), ("finance/450121/subsidy", -58_920)]);
        let to_households = claim_postings(&paid(58_920, Payee::Households), &claim()).unwrap();
        assert_eq!(
            legs(&to_households),
            [
                ("household/H1/subsidy", 29_510),
                ("household/H2/subsidy", 29_410),
                ("finance/450121/subsidy", -58_920)
            ]
        );
        // Lines 0 and 1 netted by the bank at repayment (直补), line 2 not: their parts move
        // from the bank's subsidy_due to their households.
        let mut netted = claim();
        for i in [0, 1] {
            netted.lines[i].recomputed.as_mut().unwrap().netted_fen = Fen(29_410);
        }
        let to_bank_netted = claim_postings(&paid(58_920, Payee::Bank), &netted).unwrap();
        assert_eq!(
            legs(&to_bank_netted),
            [
                ("bank/B1/cash", 58_920),
                ("bank/B1/subsidy_due", -58_820),
                ("household/H1/subsidy", 29_410),
                ("household/H2/subsidy", 29_410),
                ("finance/450121/subsidy", -58_920)
            ]
        );
        let mut nothing = claim();
        nothing.lines.truncate(0);
        assert_eq!(claim_postings(&paid(0, Payee::Bank), &nothing).unwrap(), Postings::memo());
        // A clawback reverses its line's part, from the payee the claim was paid to.
        let mut paid_claim = paid_to(Payee::Households, false);
        let clawed = clawback_of_line_1();
        let back = claim_postings(&clawed, &paid_claim).unwrap();
        assert_eq!(
            legs(&back),
            [("finance/450121/subsidy", 29_410), ("household/H2/subsidy", -29_410)]
        );
        // A netted line paid to the bank: the bank returns it, and the household owes it back
        // to the bank. A line not netted: the bank's cash alone.
        netted.payment = paid_claim.payment.clone();
        netted.payment.as_mut().unwrap().payee = Payee::Bank;
        let back = claim_postings(&clawed, &netted).unwrap();
        assert_eq!(
            legs(&back),
            [
                ("finance/450121/subsidy", 29_410),
                ("bank/B1/cash", -29_410),
                ("bank/B1/subsidy_due", 29_410),
                ("household/H2/subsidy", -29_410)
            ]
        );
        paid_claim.payment.as_mut().unwrap().payee = Payee::Bank;
        let back = claim_postings(&clawed, &paid_claim).unwrap();
        assert_eq!(legs(&back), [("finance/450121/subsidy", 29_410), ("bank/B1/cash", -29_410)]);
    }

    /// Paid to the bank since 2026-12-07 (`owes_households`), every approved line is its
    /// household's, netted or not: the lines not netted leave the bank owing their households
    /// (`subsidy_due` Cr), and a clawback of one takes it back from the bank's cash and from
    /// the household, the bank owing it nothing more.
    #[test]
    fn a_payment_to_the_bank_owes_the_households_the_lines_it_did_not_net() {
        let paid = ClaimEvent::Paid {
            claim_id: "B1-Q1".into(),
            paid_on: "2021-04-20".parse().unwrap(),
            voucher: "V1".into(),
            amount_fen: Fen(58_920),
            payee: Payee::Bank,
            withheld: Vec::new(),
            owes_households: true,
        };
        // Line 0 netted (H1), lines 1 (H2) and 2 (H1 again, 100 fen) not.
        let mut mixed = claim();
        mixed.lines[0].recomputed.as_mut().unwrap().netted_fen = Fen(29_410);
        for c in [claim(), mixed] {
            assert_eq!(
                legs(&claim_postings(&paid, &c).unwrap()),
                [
                    ("bank/B1/cash", 58_920),
                    ("bank/B1/subsidy_due", -58_920),
                    ("household/H1/subsidy", 29_510),
                    ("household/H2/subsidy", 29_410),
                    ("finance/450121/subsidy", -58_920)
                ]
            );
        }
        let paid_claim = paid_to(Payee::Bank, true);
        assert_eq!(
            legs(&claim_postings(&clawback_of_line_1(), &paid_claim).unwrap()),
            [
                ("finance/450121/subsidy", 29_410),
                ("bank/B1/cash", -29_410),
                ("bank/B1/subsidy_due", 29_410),
                ("household/H2/subsidy", -29_410)
            ]
        );
    }

    proptest::proptest! {
        /// Whatever the lines (households, parts, approved or not, netted or not), the payee and
        /// the rule the payment was recorded under: the payment's postings balance; each
        /// household's subsidy takes the parts of its approved lines the rule gives it (all,
        /// paid to the households or to the bank owing them; the netted ones only, paid to the
        /// bank before 2026-12-07), the bank's `subsidy_due` the negation of what it passed on;
        /// and a clawback of an approved line is the exact reverse of that line paid alone.
        #[test]
        fn a_payment_balances_and_a_clawback_reverses_its_line(
            lines in proptest::collection::vec(
                (0..3usize, 1..1_000_000i64, proptest::bool::ANY, proptest::bool::ANY, proptest::bool::ANY),
                1..8,
            ),
            to_bank in proptest::bool::ANY,
            owes_households in proptest::bool::ANY,
        ) {
            let payee = if to_bank { Payee::Bank } else { Payee::Households };
            let mut c = claim();
            c.lines = lines
                .iter()
                .map(|&(h, fen, approved, netted, _)| {
                    let decision = if approved {
                        Decision::Approved
                    } else {
                        Decision::Rejected { reason: "r".into() }
                    };
                    let mut l = line(&format!("H{h}"), fen, decision);
                    if netted {
                        l.recomputed.as_mut().unwrap().netted_fen = Fen(fen);
                    }
                    l
                })
                .collect();
            // Approved lines withheld at payment (their loans marked misused since the review)
            // move nothing.
            let withheld: Vec<Rejection> = lines
                .iter()
                .enumerate()
                .filter(|(_, l)| l.2 && l.4)
                .map(|(i, _)| Rejection { line: i as u32, reason: "misused".into() })
                .collect();
            let paid_line = |&(_, _, ok, _, held): &(usize, i64, bool, bool, bool)| ok && !held;
            let approved: i64 =
                lines.iter().filter(|l| paid_line(l)).map(|&(_, fen, ..)| fen).sum();
            let paid = ClaimEvent::Paid {
                claim_id: "B1-Q1".into(),
                paid_on: "2021-04-20".parse().unwrap(),
                voucher: "V1".into(),
                amount_fen: Fen(approved),
                payee,
                withheld,
                owes_households,
            };
            let postings = claim_postings(&paid, &c).unwrap();
            let leg = |account: &str| -> i64 {
                postings.as_slice().iter().filter(|p| p.account == account).map(|p| p.amount.0).sum()
            };
            let mut passed_on = 0;
            for h in 0..3 {
                let household = format!("H{h}");
                let expected: i64 = lines
                    .iter()
                    .filter(|l| {
                        let &(lh, _, _, netted, _) = *l;
                        lh == h && paid_line(l) && (!to_bank || owes_households || netted)
                    })
                    .map(|&(_, fen, ..)| fen)
                    .sum();
                proptest::prop_assert_eq!(leg(&format!("household/{household}/subsidy")), expected);
                passed_on += expected;
            }
            proptest::prop_assert_eq!(leg("finance/450121/subsidy"), -approved);
            let (cash, due) = if to_bank { (approved, -passed_on) } else { (0, 0) };
            proptest::prop_assert_eq!(leg("bank/B1/cash"), cash);
            proptest::prop_assert_eq!(leg("bank/B1/subsidy_due"), due);

            c.payment = Some(crate::domain::subsidy_claim::Payment {
                paid_on: "2021-04-20".parse().unwrap(),
                voucher: "V1".into(),
                amount_fen: Fen(approved),
                payee,
                owes_households,
            });
            for (i, l) in c.lines.iter().enumerate().filter(|(_, l)| l.approved_fen().0 > 0) {
                let part = l.approved_fen();
                let clawed = ClaimEvent::ClawedBack {
                    claim_id: "B1-Q1".into(),
                    clawed_back_on: "2021-05-02".parse().unwrap(),
                    line: i as u32,
                    reason: "misused".into(),
                    amount_fen: part,
                    loan_id: None,
                };
                let back = claim_postings(&clawed, &c).unwrap();
                let mut alone = c.clone();
                for (j, other) in alone.lines.iter_mut().enumerate() {
                    if j != i {
                        other.decision = Some(Decision::Rejected { reason: "r".into() });
                    }
                }
                let paid_alone = ClaimEvent::Paid {
                    claim_id: "B1-Q1".into(),
                    paid_on: "2021-04-20".parse().unwrap(),
                    voucher: "V1".into(),
                    amount_fen: part,
                    payee,
                    withheld: Vec::new(),
                    owes_households,
                };
                let forth = claim_postings(&paid_alone, &alone).unwrap();
                let mut sum: std::collections::BTreeMap<&str, i64> = Default::default();
                for p in forth.as_slice().iter().chain(back.as_slice()) {
                    *sum.entry(p.account.as_str()).or_default() += p.amount.0;
                }
                proptest::prop_assert!(sum.values().all(|&v| v == 0), "line {}: {:?}", i, sum);
            }
        }
    }
}
